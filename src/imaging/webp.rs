//! WebP decoding with libwebp (the copy vendored by `libwebp-sys`, with its SIMD paths), the
//! library Pillow decodes with: RGBA when the file has alpha, RGB otherwise, with libwebp's
//! default (fancy) chroma upsampling. Animated files are left to the `image` crate (first
//! frame). Called only by [`super::decode`], after the pixel count has been checked.

use image::{DynamicImage, RgbImage, RgbaImage};

/// The decoded still image, or `None` when libwebp's simple decoder does not take the file
/// (animated, or not something it can read: the caller falls back).
pub fn decode(bytes: &[u8]) -> Option<DynamicImage> {
    // SAFETY: libwebp reads `bytes` within its length and writes only the features struct.
    let mut features: libwebp_sys::WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    let status =
        unsafe { libwebp_sys::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut features) };
    if status != libwebp_sys::VP8StatusCode::VP8_STATUS_OK || features.has_animation != 0 {
        return None;
    }
    let alpha = features.has_alpha != 0;
    let (mut w, mut h) = (0i32, 0i32);
    // SAFETY: as above; the returned buffer (w*h*channels bytes) is owned by libwebp until
    // `WebPFree`, which is called once, after it has been copied.
    let ptr = unsafe {
        if alpha {
            libwebp_sys::WebPDecodeRGBA(bytes.as_ptr(), bytes.len(), &mut w, &mut h)
        } else {
            libwebp_sys::WebPDecodeRGB(bytes.as_ptr(), bytes.len(), &mut w, &mut h)
        }
    };
    if ptr.is_null() || w <= 0 || h <= 0 {
        if !ptr.is_null() {
            unsafe { libwebp_sys::WebPFree(ptr.cast()) };
        }
        return None;
    }
    let channels = if alpha { 4 } else { 3 };
    let len = w as usize * h as usize * channels;
    let data = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    unsafe { libwebp_sys::WebPFree(ptr.cast()) };
    let (w, h) = (w as u32, h as u32);
    Some(if alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, data)?)
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, data)?)
    })
}
