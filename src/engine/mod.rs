//! Engines: one trait for every model kind, chosen by a model's `kind:` through one factory.
//!
//! An engine has two halves. Its *identity* ([`identify`]): kind, version, a fingerprint of
//! its files and its preprocessing spec, known without loading anything heavy, so `plan` can
//! compute cache keys for free; and its *capabilities* ([`capabilities_of`]), known from the
//! model's settings, so the runner can route its cells before loading it. Then the engine
//! itself ([`load`]): the one [`Engine`] trait, whose methods cover the four things models do
//! here (tags with scores from an image, text from a prompt, a choice among options,
//! embeddings of texts) plus combining other variants' tags. A method an engine lacks answers
//! [`EngineError::Unsupported`]. Model quirks (a server's request shape, a tagger's layout,
//! a tokenizer's template) stay inside their engine.
//!
//! Where a new model kind goes: a module here with its engine (`impl Engine`) and its unit
//! `Kind` (`impl Maker`: identity, capabilities, loading), and one arm in [`maker`].

pub mod call;
pub mod clip;
pub mod embedding;
mod ensemble;
mod faces;
pub mod gguf;
pub mod labels;
mod onnx_tagger;
pub mod openai;
pub mod output;
mod phash;
mod sidecar;
pub mod vocab;

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use image::RgbImage;

use crate::config::Model;
use crate::dataset::ImageEntry;
use crate::ensemble::Combine;
use crate::fetch::Fetcher;
use crate::hashing::FileHashes;
pub use crate::words::{Category, FileInfo, Identity, ModelKind, Region, TagScore, Vector};
pub use call::{seed_of, Answer, Call, DEFAULT_MAX_TOKENS};

/// An input made ready on a worker thread.
pub enum Prepared {
    /// A model input tensor for one image.
    Tensor(Vec<f32>),
    /// Predictions already complete (engines that read them rather than compute them).
    Done(Vec<TagScore>),
    /// A vector already complete (perceptual hashes are computed on the worker threads).
    Vector(Vector),
    /// An engine's own input, made on a worker (a detector's canvas with the image it came
    /// from); only the engine that made it reads it.
    Staged(Box<dyn std::any::Any + Send>),
}

/// An image's tags with the regions they came from (a detector's faces).
#[derive(Debug, Clone, Default)]
pub struct Detection {
    pub tags: Vec<TagScore>,
    pub regions: Vec<Region>,
}

/// What an engine can do. The default is nothing: each engine names what it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Tags with scores for an image ([`Engine::prepare`] and [`Engine::infer`]).
    pub tags: bool,
    /// Text from a prompt ([`Engine::generate`]).
    pub text: bool,
    /// Reads an image with the prompt ([`Engine::image_url`]).
    pub vision: bool,
    /// Chooses among named options by likelihood (a [`Call`] with `choices`).
    pub choose: bool,
    /// Embeds texts ([`Engine::embed`]).
    pub embed: bool,
    /// A vector per image: perceptual hashes or an embedding ([`Engine::vectors`]).
    pub vectors: bool,
    /// Combines other variants' tags ([`Engine::combine`]).
    pub combine: bool,
    /// Gives regions with its tags ([`Engine::detect`]).
    pub regions: bool,
    /// Whether `prepare` needs decoded pixels (false: the runner never decodes for it).
    pub needs_pixels: bool,
    /// Images per `infer` call.
    pub max_batch: usize,
    /// Calls in flight at once.
    pub parallelism: usize,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            tags: false,
            text: false,
            vision: false,
            choose: false,
            embed: false,
            vectors: false,
            combine: false,
            regions: false,
            needs_pixels: false,
            max_batch: 1,
            parallelism: 1,
        }
    }
}

/// Why an engine gave no result. The runner records the message as the cell's failure, under
/// the stage it was in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot do this (asked for text from a tagger, say).
    #[error("a `{kind}` model cannot {what}")]
    Unsupported {
        kind: &'static str,
        what: &'static str,
    },
    /// The input could not be made ready: unreadable, changed since the scan, malformed.
    #[error("{0}")]
    Input(String),
    /// The model ran and failed.
    #[error("{0}")]
    Model(String),
    /// A server call failed after its retries.
    #[error("{0}")]
    Call(String),
}

/// The identity of an engine without model files (a server, an ensemble): identified by its
/// settings, fingerprinted by their canonical JSON.
pub(crate) fn identity_of_spec(kind: &'static str, spec: serde_json::Value) -> Identity {
    Identity {
        kind,
        version: 1,
        fingerprint: blake3::hash(crate::hashing::canonical_json(&spec).as_bytes())
            .to_hex()
            .to_string(),
        spec,
        files: Vec::new(),
    }
}

/// The shared services engines need: downloads and file digests, and the project's face
/// gallery (read by the caller, which owns the store).
pub struct Context {
    pub fetcher: Fetcher,
    pub hashes: FileHashes,
    pub gallery: Option<Arc<crate::faces::Gallery>>,
}

impl Context {
    pub fn new(fetcher: Fetcher) -> Context {
        let hashes = FileHashes::open(&fetcher.cache_dir);
        Context {
            fetcher,
            hashes,
            gallery: None,
        }
    }

    /// With the project's face gallery (for recognising variants).
    pub fn with_gallery(mut self, gallery: Option<crate::faces::Gallery>) -> Context {
        self.gallery = gallery.map(Arc::new);
        self
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

/// A loaded model of any kind. Every method but `capabilities` and `kind` has a default that
/// answers [`EngineError::Unsupported`]; an engine overrides what its capabilities promise.
pub trait Engine: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    /// The model kind, as configs spell it (for messages).
    fn kind(&self) -> &'static str;

    /// The error of a method this engine lacks.
    fn unsupported(&self, what: &'static str) -> EngineError {
        EngineError::Unsupported {
            kind: self.kind(),
            what,
        }
    }

    /// Identity of a per-image input that is not the image itself (e.g. a predictions file),
    /// for the cache key. Default: none.
    fn cell_input(&self, _image: &ImageEntry) -> Option<String> {
        None
    }

    /// Prepares one image for [`Engine::infer`] (runs on worker threads, in parallel).
    fn prepare(
        &self,
        _image: &ImageEntry,
        _pixels: Option<&RgbImage>,
    ) -> Result<Prepared, EngineError> {
        Err(self.unsupported("tag images"))
    }

    /// [`Engine::prepare`] given the decoded pixels to keep: an engine that needs the image
    /// after `prepare` (a detector cropping faces) takes it instead of copying it.
    fn prepare_owned(&self, image: &ImageEntry, pixels: RgbImage) -> Result<Prepared, EngineError> {
        self.prepare(image, Some(&pixels))
    }

    /// Runs a batch; one result per input, in order. Scores below `floor` are dropped, except
    /// for ratings, which are always kept (they are decided by argmax).
    fn infer(&self, batch: Vec<Prepared>, _floor: f32) -> Vec<Result<Vec<TagScore>, EngineError>> {
        batch
            .iter()
            .map(|_| Err(self.unsupported("tag images")))
            .collect()
    }

    /// Like [`Engine::infer`], with the regions each image's tags came from. The default is
    /// `infer`'s tags with no regions.
    fn detect(&self, batch: Vec<Prepared>, floor: f32) -> Vec<Result<Detection, EngineError>> {
        self.infer(batch, floor)
            .into_iter()
            .map(|r| {
                r.map(|tags| Detection {
                    tags,
                    regions: Vec::new(),
                })
            })
            .collect()
    }

    /// Answers one call; `image_url` is the image's data URL when the call sends one.
    fn generate(&self, _call: &Call, _image_url: Option<&str>) -> Result<Answer, EngineError> {
        Err(self.unsupported("write text"))
    }

    /// Reads, checks and encodes an image for a call.
    fn image_url(&self, _image: &ImageEntry, _max_pixels: u64) -> Result<String, EngineError> {
        Err(self.unsupported("read images"))
    }

    /// Runs a batch of prepared images into one [`Vector`] each, in order.
    fn vectors(&self, batch: Vec<Prepared>) -> Vec<Result<Vector, EngineError>> {
        batch
            .iter()
            .map(|_| Err(self.unsupported("give image vectors")))
            .collect()
    }

    /// One unit-length vector per text, in order.
    fn embed(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
        Err(self.unsupported("embed texts"))
    }

    /// The learned scale and bias that turn a text–image cosine into a probability,
    /// `σ(scale·cos + bias)`, for a model trained that way (SigLIP). Default: none.
    fn text_calibration(&self) -> Option<(f32, f32)> {
        None
    }

    /// Combines one image's member outputs (`None`: the member failed on it) under `how`.
    fn combine(
        &self,
        _how: &Combine,
        _members: &[Option<Vec<(String, f32)>>],
    ) -> Result<Vec<(String, f32)>, EngineError> {
        Err(self.unsupported("combine tags"))
    }

    /// Prices per million input and output tokens, when known.
    fn prices(&self) -> Option<(f64, f64)> {
        None
    }
}

/// How the factory makes one model kind's engine. Each engine module has a unit `Kind`
/// implementing it; [`maker`] is the one place a `kind:` is matched.
pub(crate) trait Maker: Sync {
    /// The engine's identity (see [`identify`]).
    fn identify(&self, model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>>;

    /// What the engine can do from the model's settings alone (see [`capabilities_of`]).
    fn capabilities(&self, model: &Model) -> Capabilities;

    /// The per-image input identities of cells (see [`Engine::cell_input`]), as `(image
    /// index, input)` for the images that have one. None by default: a cell's key is the
    /// image's content alone.
    fn cell_inputs(&self, _model: &Model, _images: &[ImageEntry]) -> Vec<(usize, String)> {
        Vec::new()
    }

    /// Loads the engine.
    fn load(&self, model: &Model, identity: &Identity, ctx: &Context) -> Result<Arc<dyn Engine>>;
}

/// The factory: a model kind's maker.
fn maker(kind: ModelKind) -> &'static dyn Maker {
    match kind {
        ModelKind::OnnxTagger => &onnx_tagger::Kind,
        ModelKind::Sidecar => &sidecar::Kind,
        ModelKind::Gguf => &gguf::engine::Kind,
        ModelKind::Embedding => &embedding::Kind,
        ModelKind::Openai => &openai::engine::Kind,
        ModelKind::Ensemble => &ensemble::Kind,
        ModelKind::Phash => &phash::Kind,
        ModelKind::Clip => &clip::Kind,
        ModelKind::Faces => &faces::Kind,
    }
}

/// The identity of a model's engine. With `download` false, remote files that are not cached
/// give `Ok(None)` (for `plan`, which must not download).
pub fn identify(model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
    maker(model.kind).identify(model, ctx, download)
}

/// What a model's engine can do, from its settings alone (nothing is loaded): the runner
/// routes cells by it. A loaded engine's [`Engine::capabilities`] may refine the numbers (a
/// tagger whose graph has a fixed batch of 1).
pub fn capabilities_of(model: &Model) -> Capabilities {
    maker(model.kind).capabilities(model)
}

/// The per-image input identities of `model`'s cells (see [`Engine::cell_input`]), without
/// loading the model: `(image index, input)` for the images that have one.
pub fn cell_inputs(model: &Model, images: &[ImageEntry]) -> Vec<(usize, String)> {
    maker(model.kind).cell_inputs(model, images)
}

/// Loads a model's engine.
pub fn load(model: &Model, identity: &Identity, ctx: &Context) -> Result<Arc<dyn Engine>> {
    maker(model.kind).load(model, identity, ctx)
}

/// An ONNX Runtime session on `path` with `threads` intra-op threads, as every ONNX engine
/// here runs one: idle threads do not spin (decoding workers share the cores). Memory-pattern
/// planning pre-allocates every activation of a run at once: worth it for a graph always run
/// at one shape (`fixed_shape`), not for a tagger's batches (~90 MB more for a 448 px batch of
/// 8, for no measurable speed).
pub(crate) fn onnx_session(
    ctx: &Context,
    path: &std::path::Path,
    threads: usize,
    fixed_shape: bool,
) -> Result<ort::session::Session> {
    let env = crate::libs::ensure_ort(&ctx.fetcher)?;
    fn err(e: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{e}")
    }
    ort::session::Session::builder(env)
        .map_err(err)
        .and_then(|b| b.with_intra_threads(threads).map_err(err))
        .and_then(|b| b.with_intra_op_spinning(false).map_err(err))
        .and_then(|b| b.with_memory_pattern(fixed_shape).map_err(err))
        .and_then(|mut b| b.commit_from_file(path).map_err(err))
        .with_context(|| format!("loading {}", path.display()))
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
