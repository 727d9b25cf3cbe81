//! Planning: expands an experiment into cells (variant × image × repeat), each with its cache
//! key. Pure: it is given the images, the engines' identities, per-image inputs and rendered
//! prompts, and does no I/O, so `iw-lab plan` costs nothing.
//!
//! A cell whose work reads other variants' outputs (a prompt with `inputs:`, an ensemble) is
//! keyed by what it actually reads, which is known only once those outputs exist: its key is
//! `None` here, and the runner builds it with [`key`] when its inputs have run.

pub mod key;

use std::collections::HashMap;

use serde::Serialize;

use crate::config::{Experiment, Variant};
use crate::dataset::ImageEntry;
use crate::words::Identity;
pub use key::CacheKey;

/// One unit of work.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub variant: usize,
    pub image: usize,
    pub repeat: u32,
    /// blake3 of the canonical key; `None` until the cell's inputs have run (see the module
    /// docs).
    pub key: Option<String>,
}

/// The cells of an experiment.
#[derive(Debug, Default)]
pub struct Plan {
    pub cells: Vec<Cell>,
    /// Variants whose model identity is unknown (remote files not downloaded yet); their cells
    /// are not in `cells` and would all be misses.
    pub unidentified: Vec<usize>,
}

/// What keys are made of, besides the experiment.
pub struct Inputs<'a> {
    pub exp: &'a Experiment,
    pub images: &'a [ImageEntry],
    pub identities: &'a HashMap<String, Identity>,
    /// (model name, image index) → per-image input identity (sidecar files).
    pub inputs: &'a HashMap<(String, usize), String>,
    /// (variant index, image index) → [`key::prompt_id`] of the prompt rendered for that image
    /// (prompted variants without `inputs:`).
    pub prompts: &'a HashMap<(usize, usize), String>,
}

/// Whether a variant's cells are keyed by other variants' outputs (see the module docs).
pub fn derived(v: &Variant) -> bool {
    v.ensemble.is_some() || v.gen.as_ref().is_some_and(|g| !g.inputs.is_empty())
}

impl Inputs<'_> {
    /// The key of (variant, image, repeat) when it is known before anything runs: `None` for
    /// an unidentified model or a derived variant.
    pub fn key(&self, vi: usize, ii: usize, repeat: u32) -> Option<CacheKey> {
        let v = &self.exp.variants[vi];
        let identity = self.identities.get(&v.model.name)?;
        let img = &self.images[ii];
        if derived(v) {
            return None;
        }
        if let Some(g) = &v.gen {
            let prompt = self.prompts.get(&(vi, ii))?;
            return Some(key::prompted(identity, g, &img.hash, prompt, repeat));
        }
        let input = self
            .inputs
            .get(&(v.model.name.clone(), ii))
            .map(String::as_str);
        Some(key::tagger(
            identity,
            &img.hash,
            input,
            v.score_floor,
            repeat,
        ))
    }
}

/// Expands the experiment over the images: one cell per variant × image × repeat, in
/// variant order (so a variant's inputs are planned, and run, before it).
pub fn plan(inp: &Inputs<'_>) -> Plan {
    let mut out = Plan::default();
    for (vi, v) in inp.exp.variants.iter().enumerate() {
        if !inp.identities.contains_key(&v.model.name) {
            out.unidentified.push(vi);
            continue;
        }
        for ii in 0..inp.images.len() {
            for repeat in 0..v.repeats.max(1) {
                let key = inp.key(vi, ii, repeat).map(|k| k.hash());
                if key.is_none() && !derived(v) {
                    continue;
                }
                out.cells.push(Cell {
                    variant: vi,
                    image: ii,
                    repeat,
                    key,
                });
            }
        }
    }
    out
}
