//! Planning: expands an experiment into cells — variant × image × repeat — each with its cache
//! key. Pure: it is given the images, the adapters' identities and per-image inputs, and does
//! no I/O, so `iw-lab plan` costs nothing.

use std::collections::HashMap;

use serde::Serialize;

use crate::adapter::Identity;
use crate::cache::{CacheKey, SCHEMA};
use crate::config::Experiment;
use crate::dataset::ImageEntry;

/// One unit of work.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub variant: usize,
    pub image: usize,
    pub repeat: u32,
    /// blake3 of the canonical key.
    pub key: String,
}

/// The cells of an experiment.
#[derive(Debug, Default)]
pub struct Plan {
    pub cells: Vec<Cell>,
    /// Variants whose model identity is unknown (remote files not downloaded yet); their cells
    /// are not in `cells` and would all be misses.
    pub unidentified: Vec<usize>,
}

/// Builds the cache key of one cell.
pub fn cache_key(
    identity: &Identity,
    image_hash: &str,
    input: Option<&str>,
    floor: f64,
    repeat: u32,
) -> CacheKey {
    CacheKey {
        schema: SCHEMA,
        adapter: identity.kind.to_string(),
        adapter_version: identity.version,
        model: identity.fingerprint.clone(),
        spec: identity.spec.clone(),
        image: image_hash.to_string(),
        input: input.map(str::to_string),
        prompt: None,
        params: serde_json::json!({ "score_floor": floor }),
        repeat,
    }
}

/// Expands `exp` over `images`. `identities` maps model name → identity; `inputs` maps
/// (model name, image index) → per-image input identity.
pub fn plan(
    exp: &Experiment,
    images: &[ImageEntry],
    identities: &HashMap<String, Identity>,
    inputs: &HashMap<(String, usize), String>,
) -> Plan {
    let mut out = Plan::default();
    for (vi, v) in exp.variants.iter().enumerate() {
        let Some(identity) = identities.get(&v.model.name) else {
            out.unidentified.push(vi);
            continue;
        };
        for (ii, img) in images.iter().enumerate() {
            let input = inputs.get(&(v.model.name.clone(), ii)).map(String::as_str);
            let key = cache_key(identity, &img.hash, input, v.score_floor, 0).hash();
            out.cells.push(Cell {
                variant: vi,
                image: ii,
                repeat: 0,
                key,
            });
        }
    }
    out
}
