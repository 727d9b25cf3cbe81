//! JPEG decoding with libjpeg-turbo's decoder (the copy vendored by `mozjpeg-sys`, built from
//! C with no assembly): the ISLOW integer IDCT and "fancy" chroma upsampling, exactly as
//! Pillow decodes, so pixels are bit-for-bit Pillow's for baseline and progressive files and
//! every chroma subsampling. CMYK files are read as Pillow reads them (Adobe polarity,
//! inverted) and converted to RGB with Pillow's integer formula.
//!
//! libjpeg reports fatal errors through a handler that must not return: ours unwinds (the
//! crate is built with `-fexceptions`), and [`decode`] turns that into a [`DecodeError`].
//! Warnings (corrupt data that still decodes) are ignored, as Pillow ignores them. Called only
//! by [`super::decode`], after the pixel count has been checked against the limit.

use std::ffi::CStr;

use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg_sys::*;

use super::error::DecodeError;

/// A fatal libjpeg error, carried by the unwinding error handler.
struct LibjpegError(String);

unsafe extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    let buffer = [0u8; 80];
    // SAFETY: `err` is the error manager installed in `Decompress::new`; libjpeg's
    // `format_message` writes a NUL-terminated message of at most 80 bytes into the buffer.
    unsafe {
        if let Some(format) = (*cinfo.err).format_message {
            format(cinfo, &buffer);
        }
    }
    let message = CStr::from_bytes_until_nul(&buffer)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown libjpeg error".into());
    std::panic::panic_any(LibjpegError(message));
}

unsafe extern "C-unwind" fn ignore_message(_cinfo: &mut jpeg_common_struct) {}

/// A decompressor over bytes in memory; destroyed when dropped.
struct Decompress<'a> {
    cinfo: Box<jpeg_decompress_struct>,
    _err: Box<jpeg_error_mgr>,
    _bytes: &'a [u8],
}

impl<'a> Decompress<'a> {
    /// Creates the decompressor and reads the header.
    fn new(bytes: &'a [u8]) -> Decompress<'a> {
        // SAFETY: both structs are zeroed C structs that libjpeg initialises; they are boxed so
        // the pointer from `cinfo` to `err` stays valid; `bytes` outlives the decompressor.
        unsafe {
            let mut err: Box<jpeg_error_mgr> = Box::new(std::mem::zeroed());
            jpeg_std_error(&mut err);
            err.error_exit = Some(error_exit);
            err.output_message = Some(ignore_message);
            let mut cinfo: Box<jpeg_decompress_struct> = Box::new(std::mem::zeroed());
            cinfo.common.err = &mut *err;
            let mut d = Decompress {
                cinfo,
                _err: err,
                _bytes: bytes,
            };
            jpeg_create_decompress(&mut *d.cinfo);
            jpeg_mem_src(&mut d.cinfo, bytes.as_ptr(), bytes.len() as _);
            jpeg_read_header(&mut d.cinfo, 1);
            d
        }
    }
}

impl Drop for Decompress<'_> {
    fn drop(&mut self) {
        // SAFETY: created by `jpeg_create_decompress`; destroying is valid in any state.
        unsafe { jpeg_destroy_decompress(&mut self.cinfo) }
    }
}

/// Runs `f` on libjpeg; its fatal errors become [`DecodeError::Corrupt`].
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, DecodeError> {
    crate::panics::catch_payload(f).map_err(|payload| {
        let message = match payload.downcast::<LibjpegError>() {
            Ok(e) => e.0,
            Err(other) => other
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| other.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the decoder failed".into()),
        };
        DecodeError::Corrupt {
            format: "jpeg".into(),
            message,
        }
    })
}

/// Decodes the whole image, reduced `1/denom` in each dimension by the IDCT (`denom` 1, 2, 4
/// or 8; 1 for full size, as Pillow decodes). Grey files give a grey image, colour and CMYK
/// files an RGB one.
pub fn decode(bytes: &[u8], denom: u32) -> Result<DynamicImage, DecodeError> {
    guarded(|| {
        let mut d = Decompress::new(bytes);
        let c = &mut *d.cinfo;
        let (channels, space) = match c.num_components {
            1 => (1, J_COLOR_SPACE::JCS_GRAYSCALE),
            3 => (3, J_COLOR_SPACE::JCS_RGB),
            4 => (4, J_COLOR_SPACE::JCS_CMYK),
            n => std::panic::panic_any(LibjpegError(format!("{n} components are not supported"))),
        };
        c.out_color_space = space;
        c.dct_method = J_DCT_METHOD::JDCT_ISLOW;
        c.do_fancy_upsampling = 1;
        c.do_block_smoothing = 1;
        c.scale_num = 1;
        c.scale_denom = denom.max(1);
        // SAFETY: the header was read; the row pointers point into `px`, which holds
        // `output_height` rows of `output_width * channels` bytes.
        let (w, h, px) = unsafe {
            jpeg_start_decompress(c);
            let (w, h) = (c.output_width, c.output_height);
            let stride = w as usize * channels;
            let mut px = vec![0u8; stride * h as usize];
            while c.output_scanline < h {
                let mut row = [px.as_mut_ptr().add(c.output_scanline as usize * stride)];
                if jpeg_read_scanlines(c, row.as_mut_ptr(), 1) == 0 {
                    break;
                }
            }
            jpeg_finish_decompress(c);
            (w, h, px)
        };
        match channels {
            1 => DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, px).expect("size")),
            3 => DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, px).expect("size")),
            _ => DynamicImage::ImageRgb8(cmyk_to_rgb(w, h, &px)),
        }
    })
}

/// Pillow's CMYK → RGB of a JPEG's samples: read with Adobe polarity (`CMYK;I`: each value
/// inverted), then `r = clip(255 − k − c·(255 − k)/255)` with its rounded integer division.
fn cmyk_to_rgb(w: u32, h: u32, px: &[u8]) -> RgbImage {
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for p in px.chunks_exact(4) {
        let [c, m, y, k] = [p[0], p[1], p[2], p[3]].map(|v| 255 - v as i32);
        let nk = 255 - k;
        for v in [c, m, y] {
            out.push((nk - muldiv255(v, nk)).clamp(0, 255) as u8);
        }
    }
    RgbImage::from_raw(w, h, out).expect("size")
}
