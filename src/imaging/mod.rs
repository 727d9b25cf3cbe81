//! Images to tensors: decoding (`decode`), Pillow-compatible resizing (`resample`), and the
//! preprocessing spec — data, not code — that turns an upright RGB image into a model's input.
//!
//! Pure apart from the bytes it is given. The spec is part of every cache key, so a change to
//! how an image is prepared can never reuse stale outputs.

pub mod decode;
pub mod error;
mod jpeg;
pub mod perceptual;
pub mod resample;
pub mod thumbs;
mod webp;

use image::RgbImage;

use crate::words::{ChannelOrder, Layout, OutputActivation, PreprocessSpec};

pub use decode::{decode_rgb, probe, DecodeError};

/// Prepares one upright RGB image, appending its tensor to `out`.
/// `size` must be set (see [`Self::size`]).
pub fn preprocess(spec: &PreprocessSpec, img: &RgbImage, out: &mut Vec<f32>) {
    let size = spec.size.expect("input size resolved before preprocessing");
    let target = spec.resize.unwrap_or(size).max(size);
    let pad = spec.pad.filter(|_| img.width() != img.height());
    let mut resized = resample::resize_padded(img, pad, target, target, spec.filter);
    if let Some(q) = spec.jpeg_quality {
        resized = jpeg_round_trip(&resized, q);
    }
    let off = ((target - size) / 2) as usize;
    write_tensor(spec, &resized, off, size as usize, out);
}

fn write_tensor(
    spec: &PreprocessSpec,
    img: &RgbImage,
    off: usize,
    size: usize,
    out: &mut Vec<f32>,
) {
    let order: [usize; 3] = match spec.channels {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    // (v * scale - mean) / std as one multiply-add per value.
    let a: [f32; 3] = std::array::from_fn(|c| spec.scale / spec.std[c]);
    let b: [f32; 3] = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
    let stride = img.width() as usize * 3;
    let raw = img.as_raw();
    let rows = (0..size)
        .map(|y| &raw[(y + off) * stride + off * 3..(y + off) * stride + (off + size) * 3]);
    let start = out.len();
    match spec.layout {
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
                        out[start + c * plane + y * size + x] = px[order[c]] as f32 * a[c] + b[c];
                    }
                }
            }
        }
    }
    debug_assert_eq!(out.len() - start, size * size * 3);
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
    use crate::words::image::{CLIP_MEAN, CLIP_STD};
    use crate::words::Preset;

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
        preprocess(&spec, &img, &mut out);
        assert_eq!(&out[..3], &[30.0, 20.0, 10.0]);
        assert_eq!(out.len(), 12);
    }

    #[test]
    fn joytag_tensor_is_rgb_nchw_normalised() {
        let mut spec = PreprocessSpec::preset(Some(Preset::Joytag));
        spec.size = Some(1);
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 0]));
        let mut out = Vec::new();
        preprocess(&spec, &img, &mut out);
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
