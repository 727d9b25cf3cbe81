//! How an image becomes a model's input: resampling filters, channel orders, layouts, output
//! activations, the preprocessing spec (data, part of every cache key), and how images are
//! sent to vision-language models.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Filter {
    Nearest,
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Nhwc,
    Nchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OutputActivation {
    Probabilities,
    Logits,
    SoftmaxLogits,
}

pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// How an image becomes a tensor. Steps, in order: pad to a square (optional), resize to
/// `resize` (default `size`), JPEG round trip (optional), centre crop to `size`, reorder
/// channels, then `(value * scale - mean) / std` per channel, in `layout`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreprocessSpec {
    /// Input side; `None` until read from the model graph.
    pub size: Option<u32>,
    pub pad: Option<[u8; 3]>,
    pub filter: Filter,
    pub resize: Option<u32>,
    pub jpeg_quality: Option<u8>,
    pub channels: ChannelOrder,
    pub layout: Layout,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub output: OutputActivation,
    /// Always true: EXIF orientation is applied before anything else.
    pub exif_transpose: bool,
    /// Always "white": transparency is composited on white.
    pub alpha: &'static str,
}

/// Preprocessing presets. A new preset is a variant here and its arm in
/// [`PreprocessSpec::preset`]; nothing else names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// WD v1.4/v2/v3: white pad to square, bicubic, BGR, NHWC, 0–255.
    Wd,
    /// JoyTag: white pad, bicubic, RGB, NCHW, /255, CLIP mean/std, sigmoid.
    Joytag,
    /// Yahoo open_nsfw: resize 256 bilinear, JPEG round trip, centre crop 224, BGR, mean subtraction.
    OpenNsfw,
}

impl PreprocessSpec {
    /// A preset's spec, or the base for explicit fields (RGB, NCHW, /255, no padding).
    pub fn preset(preset: Option<Preset>) -> PreprocessSpec {
        let base = PreprocessSpec {
            size: None,
            pad: None,
            filter: Filter::Bicubic,
            resize: None,
            jpeg_quality: None,
            channels: ChannelOrder::Rgb,
            layout: Layout::Nchw,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            output: OutputActivation::Probabilities,
            exif_transpose: true,
            alpha: "white",
        };
        match preset {
            None => base,
            Some(Preset::Wd) => PreprocessSpec {
                pad: Some([255; 3]),
                channels: ChannelOrder::Bgr,
                layout: Layout::Nhwc,
                scale: 1.0,
                ..base
            },
            Some(Preset::Joytag) => PreprocessSpec {
                pad: Some([255; 3]),
                mean: CLIP_MEAN,
                std: CLIP_STD,
                output: OutputActivation::Logits,
                ..base
            },
            Some(Preset::OpenNsfw) => PreprocessSpec {
                filter: Filter::Bilinear,
                resize: Some(256),
                jpeg_quality: Some(75),
                channels: ChannelOrder::Bgr,
                layout: Layout::Nhwc,
                scale: 1.0,
                mean: [104.0, 117.0, 123.0],
                ..base
            },
        }
    }

    /// Number of floats one image takes.
    pub fn tensor_len(&self) -> usize {
        let side = self.size.unwrap_or(0) as usize;
        side * side * 3
    }

    /// The model input's shape for a batch of `n`.
    pub fn shape(&self, n: usize) -> [usize; 4] {
        let side = self.size.unwrap_or(0) as usize;
        match self.layout {
            Layout::Nhwc => [n, side, side, 3],
            Layout::Nchw => [n, 3, side, side],
        }
    }
}

/// The encoding sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
}

/// How images are sent (part of the cache key: a different size is a different input).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub max_side: u32,
    pub format: Format,
    /// JPEG quality to start from.
    pub quality: u8,
    /// The most bytes the encoded image may take (before base64).
    pub max_bytes: usize,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            max_side: 1024,
            format: Format::Jpeg,
            quality: 90,
            max_bytes: 4 << 20,
        }
    }
}
