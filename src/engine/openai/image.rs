//! Images for vision-language models: resized so the longest side is at most `max_side`
//! (Pillow-compatible antialiased resampling, never enlarged), re-encoded as JPEG or PNG, and
//! sent as a `data:` URL. A JPEG over the byte cap is re-encoded at lower qualities, then at
//! smaller sizes, until it fits; an image that cannot fit is an error, not a silent crop.

use base64::Engine;
use image::{ImageEncoder, RgbImage};

use crate::imaging::resample;
use crate::words::{Filter, Format, ImageSpec};

/// The encoded image: bytes and MIME type, and the size sent.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
}

impl Encoded {
    pub fn data_url(&self) -> String {
        format!(
            "data:{};base64,{}",
            self.mime,
            base64::engine::general_purpose::STANDARD.encode(&self.bytes)
        )
    }
}

fn encode_once(img: &RgbImage, format: Format, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match format {
        Format::Jpeg => return crate::imaging::encode_jpeg(img, quality),
        Format::Png => {
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(
                    img.as_raw(),
                    img.width(),
                    img.height(),
                    image::ExtendedColorType::Rgb8,
                )
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// Resizes and encodes `img` under `spec`.
pub fn encode(img: &RgbImage, spec: &ImageSpec) -> Result<Encoded, String> {
    let mut side = spec.max_side.max(16);
    loop {
        let (w, h) = crate::imaging::fit_longest_side(img.width(), img.height(), side);
        let resized;
        let src = if (w, h) == img.dimensions() {
            img
        } else {
            resized = resample::resize(img, w, h, Filter::Bicubic);
            &resized
        };
        let qualities: &[u8] = match spec.format {
            Format::Jpeg => &[spec.quality, 80, 70, 60],
            Format::Png => &[0],
        };
        for &q in qualities {
            if spec.format == Format::Jpeg && q > spec.quality {
                continue;
            }
            let bytes = encode_once(src, spec.format, q)?;
            if bytes.len() <= spec.max_bytes {
                return Ok(Encoded {
                    bytes,
                    mime: match spec.format {
                        Format::Jpeg => "image/jpeg",
                        Format::Png => "image/png",
                    },
                    width: w,
                    height: h,
                });
            }
        }
        if side <= 64 {
            return Err(format!(
                "cannot encode the image under {} bytes even at {side} px",
                spec.max_bytes
            ));
        }
        side = (side as f64 * 0.75) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: u32, h: u32) -> RgbImage {
        let mut s = 0x1234_5678_9abc_def0u64;
        RgbImage::from_fn(w, h, |_, _| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            image::Rgb([s as u8, (s >> 8) as u8, (s >> 16) as u8])
        })
    }

    #[test]
    fn resized_to_the_longest_side_never_enlarged() {
        let spec = ImageSpec {
            max_side: 256,
            ..ImageSpec::default()
        };
        let e = encode(&noise(1000, 500), &spec).unwrap();
        assert_eq!((e.width, e.height), (256, 128));
        let decoded = crate::imaging::decode_rgb(&e.bytes, u64::MAX).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (256, 128));
        assert!(e.data_url().starts_with("data:image/jpeg;base64,/9j/"));
        let small = encode(&noise(100, 40), &spec).unwrap();
        assert_eq!((small.width, small.height), (100, 40));
        let png = encode(
            &noise(300, 300),
            &ImageSpec {
                max_side: 128,
                format: Format::Png,
                ..ImageSpec::default()
            },
        )
        .unwrap();
        assert!(png.data_url().starts_with("data:image/png;base64,iVBOR"));
        assert_eq!((png.width, png.height), (128, 128));
    }

    #[test]
    fn the_byte_cap_lowers_quality_then_size() {
        let img = noise(1024, 1024);
        let spec = ImageSpec {
            max_side: 1024,
            max_bytes: 120_000,
            ..ImageSpec::default()
        };
        let e = encode(&img, &spec).unwrap();
        assert!(e.bytes.len() <= 120_000, "{}", e.bytes.len());
        assert!(e.width < 1024, "noise at 1024 px cannot fit 120 kB");
        let impossible = ImageSpec {
            max_bytes: 100,
            ..spec
        };
        assert!(encode(&img, &impossible)
            .unwrap_err()
            .contains("cannot encode"));
    }
}
