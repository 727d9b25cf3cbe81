//! Planning: expands an experiment into cells — variant × image × repeat — each with its cache
//! key. Pure: it is given the images, the adapters' identities and per-image inputs, and does
//! no I/O, so `iw-lab plan` costs nothing.

use std::collections::HashMap;

use serde::Serialize;

use crate::words::Identity;
pub mod key;

use crate::config::Experiment;
use crate::dataset::ImageEntry;
use key::{CacheKey, SCHEMA};

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
    /// (variant, image, repeat) → index in `cells`.
    pub index: HashMap<(usize, usize, u32), usize>,
}

/// What keys are made of, besides the experiment.
pub struct Inputs<'a> {
    pub exp: &'a Experiment,
    pub images: &'a [ImageEntry],
    pub identities: &'a HashMap<String, Identity>,
    /// (model name, image index) → per-image input identity (sidecar files).
    pub inputs: &'a HashMap<(String, usize), String>,
    /// (variant index, image index) → blake3 of the prompt rendered for that image (generative
    /// variants; other variants' outputs appear in it as placeholders).
    pub prompts: &'a HashMap<(usize, usize), String>,
}

/// Builds the cache key of one cell of an image-model variant (taggers, sidecars).
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

impl Plan {
    /// The key of (variant, image, repeat), given the keys of earlier cells.
    pub fn key(&self, inp: &Inputs<'_>, vi: usize, ii: usize, repeat: u32) -> Option<CacheKey> {
        let v = &inp.exp.variants[vi];
        let identity = inp.identities.get(&v.model.name)?;
        let img = &inp.images[ii];
        let earlier = |name: &str| -> Option<String> {
            let si = inp.exp.variants.iter().position(|x| x.name == name)?;
            let r = repeat.min(inp.exp.variants[si].repeats.saturating_sub(1));
            let ci = self.index.get(&(si, ii, r))?;
            Some(self.cells[*ci].key.clone())
        };
        if let Some(g) = &v.gen {
            let mut sources = Vec::new();
            for name in &g.inputs {
                sources.push(format!("{name}={}", earlier(name)?));
            }
            let params = serde_json::json!({
                "params": g.params,
                "output": g.output,
                "schema": g.schema,
                "system": g.system.as_ref().map(|t| &t.hash),
                "image": g.image,
                "vocabulary": g.vocabulary.as_ref().map(|voc| serde_json::json!({
                    "embedding": voc.embedding.as_ref().and_then(|m| inp.identities.get(&m.name)).map(|i| &i.fingerprint),
                    "threshold": voc.threshold,
                    "aliases": voc.aliases,
                    "keep_unmapped": voc.keep_unmapped,
                })),
                "postprocess": g.postprocess,
            });
            return Some(CacheKey {
                schema: SCHEMA,
                adapter: identity.kind.to_string(),
                adapter_version: identity.version,
                model: identity.fingerprint.clone(),
                spec: identity.spec.clone(),
                image: img.hash.clone(),
                input: (!sources.is_empty()).then(|| sources.join(";")),
                prompt: Some(inp.prompts.get(&(vi, ii))?.clone()),
                params,
                repeat,
            });
        }
        if let Some(e) = &v.ensemble {
            let mut members = Vec::new();
            for name in &e.members {
                members.push(format!("{name}={}", earlier(name).unwrap_or_default()));
            }
            let merge = e
                .merge_model
                .as_ref()
                .and_then(|m| inp.identities.get(&m.name));
            return Some(CacheKey {
                schema: SCHEMA,
                adapter: identity.kind.to_string(),
                adapter_version: identity.version,
                model: identity.fingerprint.clone(),
                spec: serde_json::to_value(e).unwrap_or_default(),
                image: img.hash.clone(),
                input: Some(members.join(";")),
                prompt: e.merge_prompt.as_ref().map(|t| t.hash.clone()),
                params: serde_json::json!({ "merge_model": merge.map(|i| &i.fingerprint) }),
                repeat,
            });
        }
        let input = inp
            .inputs
            .get(&(v.model.name.clone(), ii))
            .map(String::as_str);
        Some(cache_key(identity, &img.hash, input, v.score_floor, repeat))
    }
}

/// Expands the experiment over the images: one cell per variant × image × repeat, in
/// variant order (so a variant's inputs are planned before it).
pub fn plan(inp: &Inputs<'_>) -> Plan {
    let mut out = Plan::default();
    for (vi, v) in inp.exp.variants.iter().enumerate() {
        if !inp.identities.contains_key(&v.model.name) {
            out.unidentified.push(vi);
            continue;
        }
        for ii in 0..inp.images.len() {
            for repeat in 0..v.repeats.max(1) {
                let Some(key) = out.key(inp, vi, ii, repeat) else {
                    continue;
                };
                out.index.insert((vi, ii, repeat), out.cells.len());
                out.cells.push(Cell {
                    variant: vi,
                    image: ii,
                    repeat,
                    key: key.hash(),
                });
            }
        }
    }
    out
}
