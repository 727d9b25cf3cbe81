//! `run.yaml`: what a run was (the fully resolved experiment, model fingerprints, tool
//! version) and what happened (status, counts, timings, the winner). Written when the run
//! starts and rewritten atomically when it ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Run status. `running` with a dead process reads as `interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Complete,
    Failed,
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Complete => "complete",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub images: usize,
    /// Images with ground truth in the scored source.
    pub labelled: usize,
    /// Variant × image × repeat.
    pub cells: usize,
    /// Cells whose outputs came from earlier runs.
    pub cache_hits: usize,
    /// Distinct cache keys computed by an adapter in this run.
    pub inferences: usize,
    /// Cells that reused another variant's inference in this same run.
    pub shared: usize,
    /// Failed cells plus unreadable inputs.
    pub failures: usize,
    /// Judge verdicts asked of a model in this run (judges' calls, not cells).
    #[serde(default)]
    pub judge_calls: usize,
    /// Judge verdicts served from earlier runs.
    #[serde(default)]
    pub judge_cached: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub scan_s: f64,
    pub lookup_s: f64,
    pub infer_s: f64,
    pub metrics_s: f64,
    pub total_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantInfo {
    pub name: String,
    pub model: String,
    pub thresholds: Vec<f64>,
    pub score_floor: f64,
    /// The prompt template version a generative variant used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptRecord>,
    /// Generation parameters of a generative variant (one point of a sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// Times each image was run (distinct seeds); 1 unless the experiment asks for more.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repeats: u32,
    /// How the repeats are scored (`mean` unless the experiment says `union`).
    #[serde(default, skip_serializing_if = "is_mean")]
    pub score_repeats: crate::config::files::ScoreRepeats,
}

fn is_mean(x: &crate::config::files::ScoreRepeats) -> bool {
    *x == crate::config::files::ScoreRepeats::Mean
}

fn one() -> u32 {
    1
}

fn is_one(x: &u32) -> bool {
    *x == 1
}

/// A template version as a run records it: `prompts/NAME.j2` at blake3 `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRecord {
    pub name: String,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub role: String,
    pub source: String,
    pub path: PathBuf,
    pub blake3: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRecord {
    pub file: PathBuf,
    pub kind: String,
    pub adapter_version: u32,
    pub fingerprint: String,
    pub spec: serde_json::Value,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Best {
    pub variant: String,
    pub threshold: f64,
    pub metric: String,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub name: String,
    pub file: PathBuf,
    pub root: PathBuf,
    pub ground_truth: Option<String>,
    /// The dataset's pixel limit (runs before it was recorded: the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<u64>,
}

/// The manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub experiment: String,
    pub experiment_file: PathBuf,
    pub status: Status,
    pub tool_version: String,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    pub pid: u32,
    pub host: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub no_cache: bool,
    #[serde(default)]
    pub limit: Option<usize>,
    pub dataset: DatasetRecord,
    pub goal: crate::config::resolve::Goal,
    pub variants: Vec<VariantInfo>,
    pub models: BTreeMap<String, ModelRecord>,
    #[serde(default)]
    pub counts: Counts,
    #[serde(default)]
    pub timings: Timings,
    #[serde(default)]
    pub best: Option<Best>,
    #[serde(default)]
    pub error: Option<String>,
    /// The experiment as resolved (dataset, models with presets expanded, variants).
    #[serde(default)]
    pub resolved: serde_yaml::Value,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Manifest> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text)
            .with_context(|| format!("{}: not a valid run manifest", path.display()))
    }

    /// Writes atomically (temporary file in the same folder, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_yaml::to_string(self)?;
        Ok(crate::atomic::write(path, text.as_bytes())?)
    }

    /// The status, with a `running` run whose process is gone read as `interrupted`.
    pub fn effective_status(&self) -> Status {
        if self.status == Status::Running && self.host == hostname() && !process_alive(self.pid) {
            Status::Interrupted
        } else {
            self.status
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}
