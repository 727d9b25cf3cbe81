//! Images to tensors: decoding (`decode`), Pillow-compatible resizing (`resample`), and the
//! preprocessing spec — data, not code — that turns an upright RGB image into a model's input.
//!
//! Pure apart from the bytes it is given. The spec is part of every cache key, so a change to
//! how an image is prepared can never reuse stale outputs.

pub mod decode;
mod jpeg;
pub mod resample;

use image::RgbImage;
use serde::Serialize;

use crate::config::files::{
    ChannelOrder, Filter, Layout, OutputActivation, PadFile, PadName, PreprocessFile, Preset,
};

pub use decode::{decode_rgb, probe, DecodeError};

const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

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

    /// The preset overlaid with explicit fields.
    pub fn from_config(preset: Option<Preset>, fields: Option<&PreprocessFile>) -> PreprocessSpec {
        let mut s = Self::preset(preset);
        let Some(f) = fields else { return s };
        if let Some(v) = f.size {
            s.size = Some(v.0 as u32);
        }
        if let Some(p) = &f.pad {
            s.pad = match p {
                PadFile::Named(PadName::White) => Some([255; 3]),
                PadFile::Named(PadName::Black) => Some([0; 3]),
                PadFile::Named(PadName::None) => None,
                PadFile::Rgb(c) => Some(*c),
            };
        }
        if let Some(v) = f.resize_filter {
            s.filter = v;
        }
        if let Some(v) = f.resize {
            s.resize = Some(v.0 as u32);
        }
        if let Some(v) = f.jpeg_quality {
            s.jpeg_quality = Some(v.clamp(1, 100));
        }
        if let Some(v) = f.channels {
            s.channels = v;
        }
        if let Some(v) = f.layout {
            s.layout = v;
        }
        if let Some(v) = f.scale {
            s.scale = v;
        }
        if let Some(v) = f.mean {
            s.mean = v;
        }
        if let Some(v) = f.std {
            s.std = v;
        }
        if let Some(v) = f.output {
            s.output = v;
        }
        s
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

    /// Prepares one upright RGB image, appending its tensor to `out`.
    /// `size` must be set (see [`Self::size`]).
    pub fn apply(&self, img: &RgbImage, out: &mut Vec<f32>) {
        let size = self.size.expect("input size resolved before preprocessing");
        let target = self.resize.unwrap_or(size).max(size);
        let pad = self.pad.filter(|_| img.width() != img.height());
        let mut resized = resample::resize_padded(img, pad, target, target, self.filter);
        if let Some(q) = self.jpeg_quality {
            resized = jpeg_round_trip(&resized, q);
        }
        let off = ((target - size) / 2) as usize;
        self.write_tensor(&resized, off, size as usize, out);
    }

    fn write_tensor(&self, img: &RgbImage, off: usize, size: usize, out: &mut Vec<f32>) {
        let order: [usize; 3] = match self.channels {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        // (v * scale - mean) / std as one multiply-add per value.
        let a: [f32; 3] = std::array::from_fn(|c| self.scale / self.std[c]);
        let b: [f32; 3] = std::array::from_fn(|c| -self.mean[c] / self.std[c]);
        let stride = img.width() as usize * 3;
        let raw = img.as_raw();
        let rows = (0..size)
            .map(|y| &raw[(y + off) * stride + off * 3..(y + off) * stride + (off + size) * 3]);
        let start = out.len();
        match self.layout {
            Layout::Nhwc => {
                out.reserve(size * size * 3);
                for row in rows {
                    for px in row.chunks_exact(3) {
                        for c in 0..3 {
                            out.push(px[order[c]] as f32 * a[c] + b[c]);
                        }
                    }
                }
            }
            Layout::Nchw => {
                out.resize(start + size * size * 3, 0.0);
                let plane = size * size;
                for (y, row) in rows.enumerate() {
                    for (x, px) in row.chunks_exact(3).enumerate() {
                        for c in 0..3 {
                            out[start + c * plane + y * size + x] =
                                px[order[c]] as f32 * a[c] + b[c];
                        }
                    }
                }
            }
        }
        debug_assert_eq!(out.len() - start, size * size * 3);
    }
}

/// The size of a `w`×`h` image scaled so its longest side is at most `max_side` (never
/// enlarged; each side at least 1).
pub fn fit_longest_side(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let scale = (max_side as f64 / w.max(h).max(1) as f64).min(1.0);
    (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    )
}

/// Encodes RGB as a baseline JPEG (jpeg-encoder's defaults) at `quality`.
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, String> {
    let (w, h) = img.dimensions();
    if w > u16::MAX as u32 || h > u16::MAX as u32 {
        return Err(format!("{w}×{h} is too large for JPEG"));
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(
            img.as_raw(),
            w as u16,
            h as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Centres `img` on a square canvas of `color` (Pillow's `paste` at `((s-w)//2, (s-h)//2)`).
pub fn pad_square(img: &RgbImage, color: [u8; 3]) -> RgbImage {
    let (w, h) = img.dimensions();
    let side = w.max(h);
    let mut canvas = RgbImage::from_pixel(side, side, image::Rgb(color));
    image::imageops::replace(
        &mut canvas,
        img,
        ((side - w) / 2) as i64,
        ((side - h) / 2) as i64,
    );
    canvas
}

/// Encodes as baseline JPEG at `quality` and decodes again, like Pillow's default save
/// (libjpeg quality scaling of the standard tables, 4:2:0 chroma subsampling).
pub fn jpeg_round_trip(img: &RgbImage, quality: u8) -> RgbImage {
    let mut buf = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut buf, quality);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    let (w, h) = img.dimensions();
    if enc
        .encode(
            img.as_raw(),
            w as u16,
            h as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .is_err()
    {
        return img.clone();
    }
    decode::decode_rgb(&buf, u64::from(w) * u64::from(h)).unwrap_or_else(|_| img.clone())
}

/// Applies the spec's output activation to raw model outputs, in place.
pub fn activate(output: OutputActivation, values: &mut [f32]) {
    match output {
        OutputActivation::Probabilities => {}
        OutputActivation::Logits => {
            for v in values.iter_mut() {
                *v = 1.0 / (1.0 + (-*v).exp());
            }
        }
        OutputActivation::SoftmaxLogits => {
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = values.iter().map(|v| (v - max).exp()).sum();
            for v in values.iter_mut() {
                *v = (*v - max).exp() / sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_centred() {
        let img = RgbImage::from_pixel(3, 1, image::Rgb([0, 0, 0]));
        let p = pad_square(&img, [255, 255, 255]);
        assert_eq!(p.dimensions(), (3, 3));
        assert_eq!(p.get_pixel(0, 0).0, [255; 3]);
        assert_eq!(p.get_pixel(1, 1).0, [0; 3]);
        assert_eq!(p.get_pixel(2, 2).0, [255; 3]);
    }

    #[test]
    fn wd_tensor_is_bgr_nhwc_0_255() {
        let mut spec = PreprocessSpec::preset(Some(Preset::Wd));
        spec.size = Some(2);
        let img = RgbImage::from_pixel(2, 2, image::Rgb([10, 20, 30]));
        let mut out = Vec::new();
        spec.apply(&img, &mut out);
        assert_eq!(&out[..3], &[30.0, 20.0, 10.0]);
        assert_eq!(out.len(), 12);
    }

    #[test]
    fn joytag_tensor_is_rgb_nchw_normalised() {
        let mut spec = PreprocessSpec::preset(Some(Preset::Joytag));
        spec.size = Some(1);
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 0]));
        let mut out = Vec::new();
        spec.apply(&img, &mut out);
        assert!((out[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-5);
        assert!((out[1] - (0.0 - CLIP_MEAN[1]) / CLIP_STD[1]).abs() < 1e-5);
    }

    #[test]
    fn activations() {
        let mut v = [0.0f32, 2.0];
        activate(OutputActivation::Logits, &mut v);
        assert!((v[0] - 0.5).abs() < 1e-6);
        let mut v = [1.0f32, 1.0];
        activate(OutputActivation::SoftmaxLogits, &mut v);
        assert!((v[0] - 0.5).abs() < 1e-6);
    }
}
