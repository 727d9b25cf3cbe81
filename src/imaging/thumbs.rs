//! Report thumbnails: JPEG, longest side `size` px, made from the image file (EXIF rotation
//! applied, transparency on white, antialiased bilinear downscale as Pillow's) and cached by content hash under
//! `.iw-lab/thumbs/<size>/<ab>/<blake3>.jpg`, so a second report of the same images reads
//! small files only. A file whose bytes no longer hash to the run's recorded hash gets no
//! thumbnail (the report would otherwise show a different picture than the one scored).

use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use crate::imaging::decode::decode_rgb_reduced;
use crate::imaging::resample;
use crate::words::Filter;

/// One thumbnail, or why there is none.
pub enum Thumb {
    Jpeg(Vec<u8>),
    Missing(String),
}

/// Thumbnails for `(file, blake3 hex, pixel limit)`, in order, in parallel. Images over
/// their dataset's pixel limit are not decoded: they get no thumbnail, with the reason.
pub fn make_all(cache: &Path, files: &[(PathBuf, String, u64)], size: u32) -> Vec<Thumb> {
    files
        .par_iter()
        .map(|(file, hash, max_pixels)| make(cache, file, hash, size, *max_pixels))
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

fn make(cache: &Path, file: &Path, hash: &str, size: u32, max_pixels: u64) -> Thumb {
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
    if crate::hashing::content_hash(&bytes) != hash {
        return Thumb::Missing(format!(
            "{} has changed since the run (its content hash differs)",
            file.display()
        ));
    }
    // A large JPEG is reduced by the IDCT while it is decoded.
    let (img, full) = match decode_rgb_reduced(&bytes, max_pixels, size) {
        Ok(x) => x,
        Err(e) => return Thumb::Missing(format!("cannot decode {}: {e}", file.display())),
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
        let _ = crate::atomic::write(&p, &jpeg);
    }
    Thumb::Jpeg(jpeg)
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
        let _ = crate::atomic::write(&p, &jpeg);
    }
}

/// The thumbnail size a run caches and `iw-lab report` uses by default.
pub const DEFAULT_SIZE: u32 = 224;

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
            let (fast, dims) = decode_rgb_reduced(&bytes, u64::MAX, size).unwrap();
            assert!(fast.width().max(fast.height()) >= size, "{name}");
            assert!(fast.width() < dims.0, "{name}: reduced");
            let full = crate::imaging::decode_rgb(&bytes, u64::MAX).unwrap();
            assert_eq!(dims, full.dimensions(), "{name}");
            let (tw, th) = target(dims, size);
            let (a, b) = (
                encode_to(&fast, tw, th).unwrap(),
                encode(&full, size).unwrap(),
            );
            let a = crate::imaging::decode_rgb(&a, u64::MAX).unwrap();
            let b = crate::imaging::decode_rgb(&b, u64::MAX).unwrap();
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
    fn small_images_and_other_formats_decode_whole() {
        for (name, size) in [("retina_exif_rot6.jpg", 1000), ("brick_tiny.png", 16)] {
            let (img, dims) = decode_rgb_reduced(&fixture(name), u64::MAX, size).unwrap();
            assert_eq!(img.dimensions(), dims, "{name}");
        }
        // truncated: refused, as by the full decoder
        let b = fixture("retina_wide.jpg");
        assert!(decode_rgb_reduced(&b[..b.len() / 2], u64::MAX, 96).is_err());
    }

    /// The pixel limit holds for thumbnails: a small file with huge dimensions is refused
    /// from its header, never decoded.
    #[test]
    fn thumbnails_respect_the_pixel_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.jpg");
        let bytes = fixture("retina_wide.jpg");
        std::fs::write(&file, &bytes).unwrap();
        let hash = blake3::hash(&bytes).to_hex().to_string();
        match make(dir.path(), &file, &hash, 64, 1_000_000) {
            Thumb::Missing(why) => assert!(why.contains("exceeds the limit"), "{why}"),
            Thumb::Jpeg(_) => panic!("a thumbnail of an image over the limit"),
        }
    }
}
