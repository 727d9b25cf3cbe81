//! Report thumbnails: JPEG, longest side `size` px, made from the image file (EXIF rotation
//! applied, transparency on white, antialiased bilinear downscale as Pillow's) and cached by content hash under
//! `.iw-lab/thumbs/<size>/<ab>/<blake3>.jpg`, so a second report of the same images reads
//! small files only. A file whose bytes no longer hash to the run's recorded hash gets no
//! thumbnail (the report would otherwise show a different picture than the one scored).

use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use crate::config::files::Filter;
use crate::imaging::decode::decode_rgb;
use crate::imaging::resample;

/// One thumbnail, or why there is none.
pub enum Thumb {
    Jpeg(Vec<u8>),
    Missing(String),
}

/// Thumbnails for `(file, blake3 hex)` pairs, in order, in parallel.
pub fn make_all(cache: &Path, files: &[(PathBuf, String)], size: u32) -> Vec<Thumb> {
    files
        .par_iter()
        .map(|(file, hash)| make(cache, file, hash, size))
        .collect()
}

fn cache_path(cache: &Path, hash: &str, size: u32) -> Option<PathBuf> {
    let ok = hash.len() >= 16 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| {
        cache
            .join(size.to_string())
            .join(&hash[..2])
            .join(format!("{hash}.jpg"))
    })
}

fn make(cache: &Path, file: &Path, hash: &str, size: u32) -> Thumb {
    let cached = cache_path(cache, hash, size);
    if let Some(p) = &cached {
        if let Ok(bytes) = std::fs::read(p) {
            if bytes.starts_with(&[0xFF, 0xD8]) {
                return Thumb::Jpeg(bytes);
            }
        }
    }
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return Thumb::Missing(format!("cannot read {}: {e}", file.display())),
    };
    if blake3::hash(&bytes).to_hex().as_str() != hash {
        return Thumb::Missing(format!(
            "{} has changed since the run (its content hash differs)",
            file.display()
        ));
    }
    let (img, full) = match jpeg_scaled(&bytes, size) {
        Some(x) => x,
        None => match decode_rgb(&bytes, 400_000_000) {
            Ok(i) => {
                let d = i.dimensions();
                (i, d)
            }
            Err(e) => return Thumb::Missing(format!("cannot decode {}: {e}", file.display())),
        },
    };
    let (tw, th) = target(full, size);
    let jpeg = match encode_to(&img, tw, th) {
        Ok(j) => j,
        Err(e) => {
            return Thumb::Missing(format!(
                "cannot encode a thumbnail of {}: {e}",
                file.display()
            ))
        }
    };
    if let Some(p) = cached {
        // best effort: a cache that cannot be written only costs time next report
        let _ = write_atomic(&p, &jpeg);
    }
    Thumb::Jpeg(jpeg)
}

/// A JPEG decoded at the smallest DCT scale (1/2, 1/4 or 1/8 of each side) that still leaves
/// its longest side at least `size`, upright (EXIF orientation applied): a 24-megapixel photo
/// costs a fraction of a full decode. `None` (use the full decoder) when the file is not a
/// baseline/progressive 8-bit grey or YCbCr JPEG, is truncated, or would not shrink.
/// Returns the image and its full (upright) size.
fn jpeg_scaled(bytes: &[u8], size: u32) -> Option<(RgbImage, (u32, u32))> {
    use crate::imaging::decode;
    if decode::sniff(bytes) != Some(image::ImageFormat::Jpeg) || decode::jpeg_truncated(bytes) {
        return None;
    }
    // jpeg-decoder panics on some malformed headers (e.g. two components): fall back instead
    let decoded = std::panic::catch_unwind(|| -> Option<(RgbImage, (u32, u32))> {
        let mut d = jpeg_decoder::Decoder::new(bytes);
        d.set_max_decoding_buffer_size(1 << 30);
        d.read_info().ok()?;
        let info = d.info()?;
        let (w, h) = (info.width as u32, info.height as u32);
        if w.max(h) < size * 2
            || !matches!(
                info.pixel_format,
                jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8
            )
        {
            return None;
        }
        let f = size as f64 / w.max(h) as f64;
        let rw = ((w as f64 * f).ceil() as u16).max(1);
        let rh = ((h as f64 * f).ceil() as u16).max(1);
        let (sw, sh) = d.scale(rw, rh).ok()?;
        let px = d.decode().ok()?;
        let (sw, sh) = (sw as u32, sh as u32);
        let img = match d.info()?.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(sw, sh, px),
            jpeg_decoder::PixelFormat::L8 => {
                RgbImage::from_raw(sw, sh, px.iter().flat_map(|&v| [v, v, v]).collect())
            }
            _ => None,
        }?;
        Some((img, (w, h)))
    })
    .ok()
    .flatten()?;
    let orientation =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg)
            .into_decoder()
            .ok()
            .and_then(|mut d| image::ImageDecoder::orientation(&mut d).ok())
            .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::ImageRgb8(decoded.0);
    img.apply_orientation(orientation);
    let (w, h) = decoded.1;
    let full = match orientation {
        image::metadata::Orientation::Rotate90
        | image::metadata::Orientation::Rotate270
        | image::metadata::Orientation::Rotate90FlipH
        | image::metadata::Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    };
    Some((img.into_rgb8(), full))
}

/// The thumbnail size of a `(w, h)` image: longest side at most `size`.
fn target((w, h): (u32, u32), size: u32) -> (u32, u32) {
    crate::imaging::fit_longest_side(w, h, size)
}

/// The thumbnail of a decoded image: JPEG, longest side at most `size`.
pub fn encode(img: &RgbImage, size: u32) -> Result<Vec<u8>, String> {
    let (tw, th) = target(img.dimensions(), size);
    encode_to(img, tw, th)
}

fn encode_to(img: &RgbImage, tw: u32, th: u32) -> Result<Vec<u8>, String> {
    let (w, h) = img.dimensions();
    let resized;
    let small = if (tw, th) == (w, h) {
        img
    } else {
        resized = resample::resize(img, tw, th, Filter::Bilinear);
        &resized
    };
    crate::imaging::encode_jpeg(small, 75)
}

/// Caches the thumbnail of an image a run has just decoded (its blake3 `hash`), unless one is
/// cached already, so the report after a run does not decode the images again. Best effort:
/// errors are ignored.
pub fn store(cache: &Path, hash: &str, img: &RgbImage, size: u32) {
    let Some(p) = cache_path(cache, hash, size) else {
        return;
    };
    if p.exists() {
        return;
    }
    if let Ok(jpeg) = encode(img, size) {
        let _ = write_atomic(&p, &jpeg);
    }
}

/// The thumbnail size a run caches and `iw-lab report` uses by default.
pub const DEFAULT_SIZE: u32 = 224;

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images")
            .join(name);
        std::fs::read(p).unwrap()
    }

    /// The reduced-scale JPEG decode gives the same picture as the full decoder, upright:
    /// same thumbnail size, mean absolute difference under 6 levels of 255 (2.4%: the two
    /// differ by their low-pass filter — IDCT scaling then bilinear, or bilinear alone — which
    /// shows on fine detail at a 19× reduction, and both pass through JPEG at quality 75).
    #[test]
    fn scaled_jpeg_matches_the_full_decode() {
        for (name, size) in [
            ("retina_exif_rot6.jpg", 224),
            ("retina_wide.jpg", 224),
            ("retina_wide.jpg", 96),
        ] {
            let bytes = fixture(name);
            let (fast, dims) = jpeg_scaled(&bytes, size).expect("scaled decode");
            assert!(fast.width().max(fast.height()) >= size, "{name}");
            let full = decode_rgb(&bytes, 400_000_000).unwrap();
            assert_eq!(dims, full.dimensions(), "{name}");
            let (tw, th) = target(dims, size);
            let (a, b) = (
                encode_to(&fast, tw, th).unwrap(),
                encode(&full, size).unwrap(),
            );
            let a = image::load_from_memory(&a).unwrap().to_rgb8();
            let b = image::load_from_memory(&b).unwrap().to_rgb8();
            assert_eq!(a.dimensions(), b.dimensions(), "{name}");
            let diff: u64 = a
                .as_raw()
                .iter()
                .zip(b.as_raw())
                .map(|(x, y)| x.abs_diff(*y) as u64)
                .sum();
            let mean = diff as f64 / a.as_raw().len() as f64;
            assert!(mean < 6.0, "{name} at {size}: mean difference {mean}");
        }
    }

    #[test]
    fn scaled_jpeg_declines_what_it_cannot_shrink() {
        // CMYK: the full decoder's conversion; small images: nothing to gain; not a JPEG
        assert!(jpeg_scaled(&fixture("horse_cmyk.jpg"), 100).is_none());
        assert!(jpeg_scaled(&fixture("retina_exif_rot6.jpg"), 1000).is_none());
        assert!(jpeg_scaled(&fixture("brick_tiny.png"), 16).is_none());
        // truncated: the full decoder refuses it, so must this
        let b = fixture("retina_wide.jpg");
        assert!(jpeg_scaled(&b[..b.len() / 2], 96).is_none());
    }
}
