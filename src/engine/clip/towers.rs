//! The two towers of a CLIP or SigLIP model on candle: building them from a Hugging Face
//! `config.json` and `model.safetensors`, and running images and token ids through them.
//!
//! CLIP (transformers' `CLIPModel`): the image tower's class token through
//! `visual_projection`; the text tower's hidden state at the end-of-text token (the first
//! largest id, as transformers picks it for OpenAI's configs) through `text_projection`.
//! SigLIP (`SiglipModel`): the image tower's attention-pooling head; the text tower's last
//! position through its head, over ids padded to the full context with the pad token.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use candle_transformers::models::siglip;
use serde::Deserialize;
use serde_json::Value;

/// Which family a model folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Clip,
    Siglip,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Clip => "clip",
            Family::Siglip => "siglip",
        }
    }
}

/// The loaded towers.
pub enum Towers {
    Clip(Box<ClipTowers>),
    Siglip(Box<siglip::Model>),
}

/// CLIP's towers and projections.
pub struct ClipTowers {
    text: ClipTextTransformer,
    vision: ClipVisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
}

/// What the rest of the engine needs to know of a model's configuration.
#[derive(Debug, Clone)]
pub struct Shape {
    pub family: Family,
    /// Token ids per text (CLIP: at most; SigLIP: exactly, padded).
    pub context: usize,
    pub pad_id: u32,
    /// CLIP: the end-of-text id pooled at, when the config names a real one (not
    /// transformers' legacy 2, which means "the largest id").
    pub eos_id: Option<u32>,
    /// The image side the vision tower was built for.
    pub image_size: usize,
    pub vocab_size: usize,
}

/// The `model_type` of a `config.json`.
pub fn family_of(config: &Value) -> Result<Family> {
    match config.get("model_type").and_then(Value::as_str) {
        Some("clip") => Ok(Family::Clip),
        Some("siglip") => Ok(Family::Siglip),
        Some(other) => bail!(
            "`model_type` is `{other}`: the clip engine runs `clip` and `siglip` models (transformers' CLIPModel and SiglipModel)"
        ),
        None => bail!("no `model_type` (expected `clip` or `siglip`)"),
    }
}

/// Loads the towers of `dir` (its `config.json` and `model.safetensors`).
pub fn load(dir: &Path, device: &Device) -> Result<(Towers, Shape, f32, Option<f32>)> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let family = family_of(&config).with_context(|| format!("in {}", path.display()))?;
    let weights = dir.join("model.safetensors");
    // SAFETY: the weights are memory-mapped read-only; the cache never rewrites a file in
    // place (downloads land under a temporary name and are renamed).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
        .with_context(|| format!("reading {}", weights.display()))?;
    let loaded = match family {
        Family::Clip => load_clip(&config, vb),
        Family::Siglip => load_siglip(&config, vb),
    };
    loaded.with_context(|| {
        format!(
            "loading the {} model of {} and {}",
            family.name(),
            path.display(),
            weights.display()
        )
    })
}

/// transformers' `CLIPTextConfig`, every field optional (configs leave defaults out, and
/// OpenAI's write nulls).
#[derive(Deserialize, Default)]
struct HfText {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    max_position_embeddings: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
    eos_token_id: Option<u32>,
}

/// transformers' `CLIPVisionConfig`.
#[derive(Deserialize, Default)]
struct HfVision {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_channels: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
}

/// A sub-config (`text_config`, or the older `text_config_dict`), defaults when absent
/// (or null).
fn sub<T: for<'de> Deserialize<'de> + Default>(config: &Value, key: &str) -> Result<T> {
    let v = config
        .get(key)
        .filter(|v| !v.is_null())
        .or_else(|| config.get(format!("{key}_dict")).filter(|v| !v.is_null()));
    match v {
        Some(v) => serde_json::from_value(v.clone()).with_context(|| format!("`{key}`")),
        None => Ok(T::default()),
    }
}

/// Attention heads must divide the width they split.
fn check_heads(width: usize, heads: usize, tower: &str) -> Result<()> {
    if heads == 0 || !width.is_multiple_of(heads) {
        bail!("the {tower} tower's {heads} attention heads do not divide its width {width}");
    }
    Ok(())
}

/// candle's CLIP is built for OpenAI's variant: quick-GELU activations and layer norms
/// with ε = 1e-5. Anything else would run and silently compute something else.
fn check_clip_variant(act: Option<&str>, eps: Option<f64>, tower: &str) -> Result<()> {
    if let Some(a) = act.filter(|a| *a != "quick_gelu") {
        bail!("the {tower} tower's `hidden_act` is `{a}`: this engine runs CLIP models with `quick_gelu` (OpenAI's); SigLIP models are supported with any activation");
    }
    if let Some(e) = eps.filter(|e| (e - 1e-5).abs() > 1e-12) {
        bail!("the {tower} tower's `layer_norm_eps` is {e}: this engine's CLIP needs 1e-5");
    }
    Ok(())
}

/// Sizes must be sane before candle allocates anything from them.
fn size(v: Option<usize>, default: usize, what: &str) -> Result<usize> {
    let n = v.unwrap_or(default);
    if n == 0 || n > 1 << 20 {
        bail!("`{what}` is {n}: out of range");
    }
    Ok(n)
}

/// candle's CLIP configurations from a transformers `config.json`, checked.
fn clip_configs(config: &Value) -> Result<(HfText, ClipTextConfig, ClipVisionConfig)> {
    let t: HfText = sub(config, "text_config")?;
    let v: HfVision = sub(config, "vision_config")?;
    check_clip_variant(t.hidden_act.as_deref(), t.layer_norm_eps, "text")?;
    check_clip_variant(v.hidden_act.as_deref(), v.layer_norm_eps, "image")?;
    let projection = match config.get("projection_dim") {
        None | Some(Value::Null) => 512,
        Some(v) => match v.as_u64() {
            Some(n) => size(Some(n as usize), 512, "projection_dim")?,
            None => bail!("`projection_dim` is {v}: expected a whole number"),
        },
    };
    let text_cfg = ClipTextConfig {
        vocab_size: size(t.vocab_size, 49408, "text_config.vocab_size")?,
        embed_dim: size(t.hidden_size, 512, "text_config.hidden_size")?,
        activation: Activation::QuickGelu,
        intermediate_size: size(t.intermediate_size, 2048, "text_config.intermediate_size")?,
        max_position_embeddings: size(t.max_position_embeddings, 77, "max_position_embeddings")?,
        pad_with: None,
        num_hidden_layers: size(t.num_hidden_layers, 12, "text_config.num_hidden_layers")?,
        num_attention_heads: size(t.num_attention_heads, 8, "text_config.num_attention_heads")?,
        projection_dim: projection,
    };
    let vision_cfg = ClipVisionConfig {
        embed_dim: size(v.hidden_size, 768, "vision_config.hidden_size")?,
        activation: Activation::QuickGelu,
        intermediate_size: size(v.intermediate_size, 3072, "vision_config.intermediate_size")?,
        num_hidden_layers: size(v.num_hidden_layers, 12, "vision_config.num_hidden_layers")?,
        num_attention_heads: size(
            v.num_attention_heads,
            12,
            "vision_config.num_attention_heads",
        )?,
        projection_dim: projection,
        num_channels: size(v.num_channels, 3, "vision_config.num_channels")?,
        image_size: size(v.image_size, 224, "vision_config.image_size")?,
        patch_size: size(v.patch_size, 32, "vision_config.patch_size")?,
    };
    check_heads(text_cfg.embed_dim, text_cfg.num_attention_heads, "text")?;
    check_heads(
        vision_cfg.embed_dim,
        vision_cfg.num_attention_heads,
        "image",
    )?;
    if !vision_cfg.image_size.is_multiple_of(vision_cfg.patch_size) {
        bail!(
            "`image_size` {} is not a multiple of `patch_size` {}",
            vision_cfg.image_size,
            vision_cfg.patch_size
        );
    }
    if let Some(e) = t
        .eos_token_id
        .filter(|&e| e != 2 && e as usize >= text_cfg.vocab_size)
    {
        bail!(
            "`eos_token_id` {e} is outside the vocabulary of {}",
            text_cfg.vocab_size
        );
    }
    if vision_cfg.num_channels != 3 {
        bail!(
            "the image tower takes {} channels; only RGB (3) is supported",
            vision_cfg.num_channels
        );
    }
    Ok((t, text_cfg, vision_cfg))
}

fn load_clip(config: &Value, vb: VarBuilder) -> Result<(Towers, Shape, f32, Option<f32>)> {
    let (t, text_cfg, vision_cfg) = clip_configs(config)?;
    let projection = text_cfg.projection_dim;
    let text = ClipTextTransformer::new(vb.pp("text_model"), &text_cfg)?;
    let vision = ClipVisionTransformer::new(vb.pp("vision_model"), &vision_cfg)?;
    let text_projection =
        candle_nn::linear_no_bias(text_cfg.embed_dim, projection, vb.pp("text_projection"))?;
    let visual_projection =
        candle_nn::linear_no_bias(vision_cfg.embed_dim, projection, vb.pp("visual_projection"))?;
    let scale = if vb.contains_tensor("logit_scale") {
        vb.get(&[], "logit_scale")?.to_scalar::<f32>()?
    } else {
        config
            .get("logit_scale_init_value")
            .and_then(Value::as_f64)
            .unwrap_or(2.6592) as f32
    };
    let shape = Shape {
        family: Family::Clip,
        context: text_cfg.max_position_embeddings,
        // After the end-of-text token, under the causal mask, padding changes nothing.
        pad_id: (t.eos_token_id.filter(|&e| e != 2).unwrap_or(49407) as usize)
            .min(text_cfg.vocab_size - 1) as u32,
        eos_id: t.eos_token_id.filter(|&e| e != 2),
        image_size: vision_cfg.image_size,
        vocab_size: text_cfg.vocab_size,
    };
    let towers = Towers::Clip(Box::new(ClipTowers {
        text,
        vision,
        text_projection,
        visual_projection,
    }));
    Ok((towers, shape, scale, None))
}

fn load_siglip(config: &Value, vb: VarBuilder) -> Result<(Towers, Shape, f32, Option<f32>)> {
    let cfg: siglip::Config = serde_json::from_value(config.clone()).context("the config")?;
    let t = &cfg.text_config;
    let v = &cfg.vision_config;
    for (n, what) in [
        (t.vocab_size, "text_config.vocab_size"),
        (t.hidden_size, "text_config.hidden_size"),
        (t.intermediate_size, "text_config.intermediate_size"),
        (t.num_hidden_layers, "text_config.num_hidden_layers"),
        (
            t.max_position_embeddings,
            "text_config.max_position_embeddings",
        ),
        (v.hidden_size, "vision_config.hidden_size"),
        (v.intermediate_size, "vision_config.intermediate_size"),
        (v.num_hidden_layers, "vision_config.num_hidden_layers"),
        (v.patch_size, "vision_config.patch_size"),
        (v.image_size, "vision_config.image_size"),
    ] {
        size(Some(n), 0, what)?;
    }
    check_heads(t.hidden_size, t.num_attention_heads, "text")?;
    check_heads(v.hidden_size, v.num_attention_heads, "image")?;
    if !v.image_size.is_multiple_of(v.patch_size) {
        bail!(
            "`image_size` {} is not a multiple of `patch_size` {}",
            v.image_size,
            v.patch_size
        );
    }
    if t.pad_token_id as usize >= t.vocab_size {
        bail!(
            "`pad_token_id` {} is outside the vocabulary of {}",
            t.pad_token_id,
            t.vocab_size
        );
    }
    if !(t.layer_norm_eps > 0.0 && v.layer_norm_eps > 0.0) {
        bail!("`layer_norm_eps` must be positive");
    }
    if v.num_channels != 3 {
        bail!(
            "the image tower takes {} channels; only RGB (3) is supported",
            v.num_channels
        );
    }
    let model = siglip::Model::new(&cfg, vb.clone())?;
    let scale = vb.get(&[1], "logit_scale")?.to_vec1::<f32>()?[0];
    let bias = vb.get(&[1], "logit_bias")?.to_vec1::<f32>()?[0];
    let shape = Shape {
        family: Family::Siglip,
        context: t.max_position_embeddings,
        pad_id: t.pad_token_id,
        eos_id: None,
        image_size: v.image_size,
        vocab_size: t.vocab_size,
    };
    Ok((Towers::Siglip(Box::new(model)), shape, scale, Some(bias)))
}

impl Towers {
    /// Image features (not normalised) of a batch of `3 × side × side` inputs.
    pub fn images(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Towers::Clip(c) => c.vision.forward(pixels)?.apply(&c.visual_projection)?,
            Towers::Siglip(m) => m.get_image_features(pixels)?,
        })
    }

    /// Text features (not normalised) of a batch of padded id rows; `pool` is, for CLIP, the
    /// position of each row's end-of-text token.
    pub fn texts(&self, ids: &Tensor, pool: &[usize]) -> Result<Tensor> {
        match self {
            Towers::Clip(c) => {
                let hidden = c.text.forward_with_mask(ids, usize::MAX)?;
                let rows = pool
                    .iter()
                    .enumerate()
                    .map(|(b, &p)| hidden.i((b, p)).and_then(|r| r.unsqueeze(0)))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Ok(Tensor::cat(&rows, 0)?.apply(&c.text_projection)?)
            }
            Towers::Siglip(m) => Ok(m.get_text_features(ids)?),
        }
    }
}
