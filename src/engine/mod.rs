//! Adapters: one small trait, many backends, chosen by a model's `kind:` through one factory.
//!
//! An adapter has two halves. Its *identity* ([`identify`]) — kind, version, a fingerprint of
//! its files and its preprocessing spec — is known without loading anything heavy, so `plan`
//! can compute cache keys for free. Its *engine* ([`load`]) prepares inputs on worker threads
//! and runs inference on batches. The rest of the program sees only [`Adapter`]; model quirks
//! live inside their adapter.

pub mod embedding;
pub mod gguf;
pub mod labels;
mod onnx_tagger;
pub mod openai;
pub mod output;
mod sidecar;
pub mod vocab;

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use image::RgbImage;

use crate::config::Model;
use crate::dataset::ImageEntry;
use crate::fetch::Fetcher;
use crate::hashing::FileHashes;
pub use crate::words::{Category, FileInfo, Identity, ModelKind, TagScore};

/// An input made ready on a worker thread.
pub enum Prepared {
    /// A model input tensor for one image.
    Tensor(Vec<f32>),
    /// Predictions already complete (adapters that read them rather than compute them).
    Done(Vec<TagScore>),
}

/// What an adapter can do. Defaults are the safe answer for a new adapter.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Whether `prepare` needs decoded pixels (false: the runner never decodes for it).
    pub needs_pixels: bool,
    /// Images per `infer` call.
    pub max_batch: usize,
}

/// The identity of an engine without model files (a server, an ensemble): identified by its
/// settings, fingerprinted by their canonical JSON.
fn identity_of_spec(kind: &'static str, spec: serde_json::Value) -> Identity {
    Identity {
        kind,
        version: 1,
        fingerprint: blake3::hash(crate::plan::key::canonical_json(&spec).as_bytes())
            .to_hex()
            .to_string(),
        spec,
        files: Vec::new(),
    }
}

/// The shared services adapters need: downloads and file digests.
pub struct Context {
    pub fetcher: Fetcher,
    pub hashes: FileHashes,
}

impl Context {
    pub fn new(fetcher: Fetcher) -> Context {
        let hashes = FileHashes::open(&fetcher.cache_dir);
        Context { fetcher, hashes }
    }

    /// Resolves a source (downloading when `download`), digests it, and checks its sha256.
    /// `Ok(None)` when the file is remote, not cached, and `download` is false.
    pub(crate) fn file(
        &self,
        role: &'static str,
        model: &Model,
        source: &crate::fetch::Source,
        sha256: Option<&str>,
        download: bool,
    ) -> Result<Option<FileInfo>> {
        let path = if download {
            self.fetcher.resolve(source, sha256).with_context(|| {
                format!(
                    "model `{}` ({}): getting its {role} file",
                    model.name,
                    model.file.display()
                )
            })?
        } else {
            match self.fetcher.cached(source) {
                Some(p) => p,
                None => return Ok(None),
            }
        };
        let digests = self
            .hashes
            .digests(&path)
            .with_context(|| format!("model `{}`: reading {}", model.name, path.display()))?;
        if let Some(expected) = sha256 {
            if !digests.sha256.eq_ignore_ascii_case(expected) {
                bail!(
                    "model `{}` ({}): sha256 mismatch for its {role} file {}: expected {expected}, got {}",
                    model.name,
                    model.file.display(),
                    path.display(),
                    digests.sha256
                );
            }
        }
        Ok(Some(FileInfo {
            role,
            source: source.to_string(),
            path,
            blake3: digests.blake3,
            sha256: digests.sha256,
        }))
    }
}

/// An adapter's engine.
pub trait Adapter: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    /// Identity of a per-image input that is not the image itself (e.g. a predictions file),
    /// for the cache key. Default: none.
    fn cell_input(&self, _image: &ImageEntry) -> Option<String> {
        None
    }

    /// Prepares one image (runs on worker threads, in parallel).
    fn prepare(&self, image: &ImageEntry, pixels: Option<&RgbImage>) -> Result<Prepared, String>;

    /// Runs a batch; one result per input, in order. Scores below `floor` are dropped, except
    /// for ratings, which are always kept (they are decided by argmax).
    fn infer(&self, batch: Vec<Prepared>, floor: f32) -> Vec<Result<Vec<TagScore>, String>>;
}

/// The identity of a model's adapter. With `download` false, remote files that are not cached
/// give `Ok(None)` (for `plan`, which must not download).
pub fn identify(model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
    match model.kind {
        ModelKind::OnnxTagger => onnx_tagger::identify(model, ctx, download),
        ModelKind::Sidecar => Ok(Some(sidecar::identify(model))),
        ModelKind::Gguf => {
            let source = model.source_parsed.as_ref().expect("resolved gguf source");
            let Some(file) = ctx.file("model", model, source, model.sha256.as_deref(), download)?
            else {
                return Ok(None);
            };
            Ok(Some(Identity {
                kind: "gguf",
                version: 1,
                fingerprint: file.blake3.clone(),
                spec: serde_json::json!({}),
                files: vec![file],
            }))
        }
        ModelKind::Embedding => {
            let source = model.source.as_deref().expect("resolved embedding source");
            if !download {
                return Ok(None);
            }
            let dir = embedding::Embedder::fetch(&ctx.fetcher, source)
                .with_context(|| format!("model `{}`: getting its files", model.name))?;
            let mut files = Vec::new();
            let mut h = blake3::Hasher::new();
            for name in [
                "config.json",
                "tokenizer.json",
                "model.safetensors",
                "1_Pooling/config.json",
            ] {
                let p = dir.join(name);
                if !p.is_file() {
                    continue;
                }
                let d = ctx.hashes.digests(&p)?;
                h.update(name.as_bytes());
                h.update(d.blake3.as_bytes());
                files.push(FileInfo {
                    role: "embedding",
                    source: format!(
                        "{}{}",
                        source.trim_end_matches('/'),
                        format_args!("/{name}")
                    ),
                    path: p,
                    blake3: d.blake3,
                    sha256: d.sha256,
                });
            }
            Ok(Some(Identity {
                kind: "embedding",
                version: 1,
                fingerprint: h.finalize().to_hex().to_string(),
                spec: serde_json::json!({}),
                files,
            }))
        }
        ModelKind::Openai => {
            let o = model.openai.as_ref().expect("resolved openai spec");
            let spec = serde_json::json!({
                "base_url": o.base_url,
                "model": o.model,
                "image": o.image,
            });
            Ok(Some(identity_of_spec("openai", spec)))
        }
        ModelKind::Ensemble => {
            let spec = serde_json::to_value(&model.ensemble).unwrap_or_default();
            Ok(Some(identity_of_spec("ensemble", spec)))
        }
    }
}

/// The per-image input identity of a cell (see [`Adapter::cell_input`]), without loading
/// the model.
pub fn cell_input(model: &Model, image: &ImageEntry) -> Option<String> {
    match model.kind {
        ModelKind::Sidecar => sidecar::Sidecar::new(model).cell_input(image),
        _ => None,
    }
}

/// Loads a model's engine.
pub fn load(model: &Model, identity: &Identity, ctx: &Context) -> Result<Box<dyn Adapter>> {
    match model.kind {
        ModelKind::OnnxTagger => Ok(Box::new(onnx_tagger::OnnxTagger::load(
            model, identity, ctx,
        )?)),
        ModelKind::Sidecar => Ok(Box::new(sidecar::Sidecar::new(model))),
        other => bail!(
            "model `{}` is a `{other:?}` model: it is run by the generation step, not the image pipeline",
            model.name
        ),
    }
}

/// Keeps scores at or above `floor` (and all ratings), merging duplicate tags by max score.
pub(crate) fn filter_scores(scores: impl Iterator<Item = TagScore>, floor: f32) -> Vec<TagScore> {
    let mut out: Vec<TagScore> = Vec::new();
    let mut index: std::collections::HashMap<Arc<str>, usize> = std::collections::HashMap::new();
    for s in scores {
        if s.score < floor && s.category != Category::Rating {
            continue;
        }
        match index.get(&s.tag) {
            Some(&i) => {
                if s.score > out[i].score {
                    out[i].score = s.score;
                }
            }
            None => {
                index.insert(s.tag.clone(), out.len());
                out.push(s);
            }
        }
    }
    out
}
