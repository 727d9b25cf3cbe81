//! A dataset as the config files define it, resolved: the image folder, what to scan, the
//! pixel limit and the ground-truth sources. Built by `config`, read by `scan` and
//! `ground_truth`.

use std::path::PathBuf;

use serde::Serialize;

use crate::tags::Aliases;
use crate::words::GroundTruthKind;

/// A resolved dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub name: String,
    pub file: PathBuf,
    pub root: PathBuf,
    pub recursive: bool,
    pub extensions: Vec<String>,
    pub exclude: Vec<String>,
    pub max_pixels: u64,
    pub ground_truth: Vec<GroundTruth>,
    pub aliases: Aliases,
    /// The file of more aliases the dataset names (`alias_file:`), whether or not it exists.
    pub alias_file: Option<PathBuf>,
}

/// A resolved ground-truth source.
#[derive(Debug, Clone, Serialize)]
pub struct GroundTruth {
    pub name: String,
    pub kind: GroundTruthKind,
    pub dir: Option<PathBuf>,
    pub extension: String,
    pub separator: String,
    pub file: Option<PathBuf>,
    /// For `prompt`: read negative-prompt tags as must-not-predict.
    pub negative: bool,
    /// For `prompt`: the least prompt weight that counts as asked for.
    pub min_weight: f64,
}
