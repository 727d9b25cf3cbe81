//! Decoding image bytes into upright 8-bit RGB, the same way for every model: the one gate
//! every image decode in the program passes through (runs, `predict`, `tag`, report
//! thumbnails, the stealth-metadata reader), so the pixel limit is enforced everywhere.
//!
//! The container is sniffed from magic bytes (never the extension). The pixel count is checked
//! from the header before any pixel is decoded (decompression bombs). JPEGs are decoded by
//! libjpeg-turbo's decoder ([`super::jpeg`]) and WebPs by libwebp ([`super::webp`]), bit-exact
//! with Pillow; other formats (and animated WebPs) by the `image` crate. EXIF orientation is
//! applied. Transparency (alpha, palette or colour-key) is composited on white with Pillow's
//! integer arithmetic; 16-bit grey is scaled to 8 bits by rounding v/257; CMYK JPEGs are
//! converted to RGB as Pillow converts them. Anything that cannot be decoded becomes a
//! [`DecodeError`] with a reason.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

pub use super::error::DecodeError;

/// Image formats iw-lab decodes, by magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    let fmt = image::guess_format(bytes).ok()?;
    matches!(
        fmt,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    )
    .then_some(fmt)
}

pub fn format_name(fmt: ImageFormat) -> &'static str {
    match fmt {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Tiff => "tiff",
        _ => "other",
    }
}

/// Reads the format and pixel size from the header only.
pub fn probe(bytes: &[u8]) -> Result<(ImageFormat, u32, u32), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let fmt = sniff(bytes).ok_or_else(|| {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        DecodeError::UnknownFormat(head.join(" "))
    })?;
    let reader = ImageReader::with_format(Cursor::new(bytes), fmt);
    let (w, h) = reader.into_dimensions().map_err(|e| corrupt(fmt, e))?;
    Ok((fmt, w, h))
}

fn corrupt(fmt: ImageFormat, e: image::ImageError) -> DecodeError {
    let message = match &e {
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            return DecodeError::Truncated(format_name(fmt).into());
        }
        other => other.to_string(),
    };
    if message.to_lowercase().contains("unexpected end") || message.to_lowercase().contains("eof") {
        return DecodeError::Truncated(format_name(fmt).into());
    }
    DecodeError::Corrupt {
        format: format_name(fmt).into(),
        message,
    }
}

/// A JPEG whose last scan is not followed by an end-of-image marker was cut short. (In
/// entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so SOS and EOI
/// byte pairs only occur as markers.)
pub(crate) fn jpeg_truncated(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    match (last_sos, last_eoi) {
        (Some(s), Some(e)) => e < s,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The gate: the format and size from the header, checked against `max_pixels` (and for
/// zero size and truncation) before a single pixel is decoded.
fn admit(bytes: &[u8], max_pixels: u64) -> Result<(ImageFormat, u32, u32), DecodeError> {
    let (fmt, w, h) = probe(bytes)?;
    if w == 0 || h == 0 {
        return Err(DecodeError::ZeroSize {
            format: format_name(fmt).into(),
        });
    }
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(DecodeError::TooLarge {
            format: format_name(fmt).into(),
            width: w,
            height: h,
            pixels,
            limit: max_pixels,
        });
    }
    if fmt == ImageFormat::Jpeg && jpeg_truncated(bytes) {
        return Err(DecodeError::Truncated("jpeg".into()));
    }
    Ok((fmt, w, h))
}

/// The EXIF orientation of an image (from its header; no pixels are decoded).
fn orientation(bytes: &[u8], fmt: ImageFormat) -> image::metadata::Orientation {
    ImageReader::with_format(Cursor::new(bytes), fmt)
        .into_decoder()
        .ok()
        .and_then(|mut d| d.orientation().ok())
        .unwrap_or(image::metadata::Orientation::NoTransforms)
}

/// Decodes the pixels as stored (no orientation, no compositing), through the gate. JPEGs
/// may be reduced `1/denom` by the IDCT; other formats ignore `denom`.
fn decode_stored(
    bytes: &[u8],
    max_pixels: u64,
    denom: u32,
) -> Result<(DynamicImage, ImageFormat), DecodeError> {
    let (fmt, w, h) = admit(bytes, max_pixels)?;
    if fmt == ImageFormat::Jpeg {
        return Ok((super::jpeg::decode(bytes, denom)?, fmt));
    }
    if fmt == ImageFormat::WebP {
        if let Some(img) = super::webp::decode(bytes) {
            return Ok((img, fmt));
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), fmt);
    let mut limits = image::Limits::default();
    // We have checked the pixel count; allow the buffers that many pixels need (16-bit RGBA).
    let pixels = w as u64 * h as u64;
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(1 << 26));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| corrupt(fmt, e))?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(fmt, e))?;
    Ok((img, fmt))
}

/// Decodes the pixels as stored, alpha included, with no orientation applied (for readers of
/// the pixels themselves, such as stealth metadata), through the gate.
pub fn decode_pixels(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, DecodeError> {
    decode_stored(bytes, max_pixels, 1).map(|(img, _)| img)
}

/// Decodes `bytes` into upright RGB (see the module docs for the rules).
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    let (mut img, fmt) = decode_stored(bytes, max_pixels, 1)?;
    img.apply_orientation(orientation(bytes, fmt));
    Ok(to_rgb_on_white(img))
}

/// Like [`decode_rgb`], but a JPEG whose longest side is at least twice `at_least` is
/// reduced by the IDCT (1/2, 1/4 or 1/8 per side) as far as its longest side stays at least
/// `at_least`: a 24-megapixel photo costs a fraction of a full decode (for thumbnails).
/// Returns the image and the full image's upright size.
pub fn decode_rgb_reduced(
    bytes: &[u8],
    max_pixels: u64,
    at_least: u32,
) -> Result<(RgbImage, (u32, u32)), DecodeError> {
    let (fmt, w, h) = admit(bytes, max_pixels)?;
    let denom = if fmt == ImageFormat::Jpeg {
        let longest = w.max(h) as u64;
        [8u32, 4, 2]
            .into_iter()
            .find(|d| longest.div_ceil(*d as u64) >= at_least.max(1) as u64)
            .unwrap_or(1)
    } else {
        1
    };
    let (mut img, fmt) = decode_stored(bytes, max_pixels, denom)?;
    let o = orientation(bytes, fmt);
    img.apply_orientation(o);
    use image::metadata::Orientation::*;
    let full = match o {
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH => (h, w),
        _ => (w, h),
    };
    Ok((to_rgb_on_white(img), full))
}

/// Flattens any decoded image to 8-bit RGB, compositing transparency on white like Pillow's
/// `alpha_composite` onto an opaque white canvas.
pub fn to_rgb_on_white(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) => {
            composite(rgba.width(), rgba.height(), rgba.as_raw(), 4, |p| {
                [p[0], p[1], p[2], p[3]]
            })
        }
        DynamicImage::ImageLuma8(l) => {
            let (w, h) = l.dimensions();
            RgbImage::from_raw(
                w,
                h,
                l.into_raw().into_iter().flat_map(|v| [v, v, v]).collect(),
            )
            .expect("size")
        }
        DynamicImage::ImageLumaA8(la) => composite(la.width(), la.height(), la.as_raw(), 2, |p| {
            [p[0], p[0], p[0], p[1]]
        }),
        DynamicImage::ImageLuma16(l) => {
            let (w, h) = l.dimensions();
            let data = l.into_raw().into_iter().flat_map(|v| {
                let g = ((v as f64) / 257.0).round().clamp(0.0, 255.0) as u8;
                [g, g, g]
            });
            RgbImage::from_raw(w, h, data.collect()).expect("size")
        }
        DynamicImage::ImageLumaA16(la) => {
            let raw: Vec<u8> = la.as_raw().iter().map(|v| (v >> 8) as u8).collect();
            composite(la.width(), la.height(), &raw, 2, |p| {
                [p[0], p[0], p[0], p[1]]
            })
        }
        DynamicImage::ImageRgb16(rgb) => {
            let (w, h) = rgb.dimensions();
            RgbImage::from_raw(
                w,
                h,
                rgb.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
            )
            .expect("size")
        }
        DynamicImage::ImageRgba16(rgba) => {
            let raw: Vec<u8> = rgba.as_raw().iter().map(|v| (v >> 8) as u8).collect();
            composite(rgba.width(), rgba.height(), &raw, 4, |p| {
                [p[0], p[1], p[2], p[3]]
            })
        }
        other => {
            let rgba = other.to_rgba8();
            composite(rgba.width(), rgba.height(), rgba.as_raw(), 4, |p| {
                [p[0], p[1], p[2], p[3]]
            })
        }
    }
}

/// Pillow's `ImagingAlphaComposite` of `src` over opaque white (7 bits of extra precision,
/// rounded divisions by 255).
fn composite(
    w: u32,
    h: u32,
    raw: &[u8],
    channels: usize,
    rgba: impl Fn(&[u8]) -> [u8; 4],
) -> RgbImage {
    const PREC: u32 = 7;
    let shift_div255 = |a: u32| ((a >> 8) + a) >> 8;
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in raw.chunks_exact(channels) {
        let [r, g, b, a] = rgba(px);
        if a == 0 {
            out.extend_from_slice(&[255, 255, 255]);
            continue;
        }
        let a = a as u32;
        let blend = 255 * (255 - a);
        let outa255 = a * 255 + blend;
        let coef1 = a * 255 * 255 * (1 << PREC) / outa255;
        let coef2 = 255 * (1 << PREC) - coef1;
        for c in [r, g, b] {
            let tmp = c as u32 * coef1 + 255 * coef2;
            out.push((shift_div255(tmp + (0x80 << PREC)) >> PREC) as u8);
        }
    }
    RgbImage::from_raw(w, h, out).expect("size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_matches_pillow_values() {
        // Pillow: alpha_composite(white, (r,g,b,a)) for a few pixels.
        let raw = [0u8, 0, 0, 128, 255, 0, 0, 255, 10, 200, 30, 1, 9, 9, 9, 0];
        let rgb = composite(4, 1, &raw, 4, |p| [p[0], p[1], p[2], p[3]]);
        assert_eq!(
            rgb.as_raw(),
            &[127, 127, 127, 255, 0, 0, 254, 255, 254, 255, 255, 255]
        );
    }

    #[test]
    fn rejects_empty_and_non_images() {
        assert_eq!(decode_rgb(b"", 100), Err(DecodeError::Empty));
        assert!(matches!(
            decode_rgb(b"<html>hello</html>", 100),
            Err(DecodeError::UnknownFormat(_))
        ));
    }

    #[test]
    fn detects_truncated_jpeg_markers() {
        assert!(jpeg_truncated(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3]));
        assert!(!jpeg_truncated(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3, 0xFF, 0xD9
        ]));
        assert!(!jpeg_truncated(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0xD9, 0, 0
        ]));
    }
}
