//! "Stealth pnginfo" payloads hidden in pixel LSBs (spec A1.5).
//!
//! Pixels are taken column-major (x outer, y inner), bits MSB-first. Alpha mode: one bit per
//! pixel (`alpha & 1`), signatures `stealth_pnginfo` / `stealth_pngcomp`; RGB mode: three bits
//! per pixel (R, G, B LSBs) as one continuous stream, signatures `stealth_rgbinfo` /
//! `stealth_rgbcomp`. Then a 32-bit big-endian bit count and the payload (gzip for `comp`).
//!
//! Non-interlaced PNGs are decoded row by row here (inflate + unfilter), so a file without a
//! payload costs only the first 120 rows (the signature's pixels are the first 120 of column
//! 0); interlaced PNGs and lossless WebPs go through the `image` crate (whole file).

use super::png::Ihdr;
use super::{gunzip, Budget, Input, MAX_CHUNK};
use crate::metadata::{Carrier, Carriers};
use std::io::{self, Read, Seek};

/// The largest file read whole for a stealth decode (interlaced PNG, lossless WebP).
const MAX_WHOLE_FILE: u64 = 256 << 20;
/// Signature length in bits.
const SIG_BITS: u64 = 120;

/// Whether no carrier that the generator table (spec A2) reads was found, so a stealth
/// payload is worth looking for.
pub(crate) fn worth_trying(c: &Carriers) -> bool {
    !c.entries.iter().any(|e| {
        if e.value.trim().is_empty() {
            return false;
        }
        match e.key.as_str() {
            "parameters"
            | "prompt"
            | "workflow"
            | "Comment"
            | "invokeai_metadata"
            | "invokeai_graph"
            | "invokeai_workflow"
            | "sd-metadata"
            | "Dream"
            | "generation_data"
            | "parameters-json"
            | "smproj"
            | "fooocus_scheme"
            | "use_stable_diffusion_model"
            | "Stable Diffusion model"
            | "exif:UserComment" => true,
            "exif:Make" | "exif:Model" | "exif:ImageDescription" => {
                let v = e.value.trim_start();
                ["prompt:", "workflow:", "Prompt:", "Workflow:"]
                    .iter()
                    .any(|p| v.starts_with(p))
                    || v.contains("sui_image_params")
            }
            _ => false,
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Alpha,
    Rgb,
}

/// Per-pixel LSBs (`r<<3 | g<<2 | b<<1 | a`), row-major, for the rows decoded so far.
struct Planes {
    w: u64,
    h: u64,
    has_alpha: bool,
    rows: u64,
    px: Vec<u8>,
}

impl Planes {
    fn new(w: u32, h: u32, has_alpha: bool) -> Self {
        Planes {
            w: w as u64,
            h: h as u64,
            has_alpha,
            rows: 0,
            px: Vec::new(),
        }
    }

    /// The LSBs of the `k`-th pixel in column-major order, if its row was decoded.
    fn pixel(&self, k: u64) -> Option<u8> {
        let (x, y) = (k / self.h, k % self.h);
        if x >= self.w || y >= self.rows {
            return None;
        }
        self.px.get((y * self.w + x) as usize).copied()
    }

    fn bits(&self, mode: Mode) -> u64 {
        let n = self.w * self.h;
        match mode {
            Mode::Alpha => n,
            Mode::Rgb => n * 3,
        }
    }

    fn bit(&self, mode: Mode, k: u64) -> Option<u8> {
        match mode {
            Mode::Alpha => self.pixel(k).map(|p| p & 1),
            Mode::Rgb => self.pixel(k / 3).map(|p| (p >> (3 - k % 3)) & 1),
        }
    }

    /// `n` bytes from bit `start` of the stream, MSB first.
    fn bytes(&self, mode: Mode, start: u64, n: u64) -> Option<Vec<u8>> {
        if start + n * 8 > self.bits(mode) {
            return None;
        }
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut byte = 0u8;
            for j in 0..8 {
                byte = (byte << 1) | self.bit(mode, start + i * 8 + j)?;
            }
            out.push(byte);
        }
        Some(out)
    }

    /// Appends the LSBs of one unfiltered PNG row (of 8- or 16-bit samples).
    fn push_png_row(&mut self, row: &[u8], layout: &PngLayout) {
        self.px.reserve(self.w as usize);
        for px in row.chunks_exact(layout.bpp) {
            let s = |c: usize| px[c * layout.bps]; // the high byte of 16-bit samples
            let (r, g, b, a) = match layout.color_type {
                2 => (s(0), s(1), s(2), 0),
                4 => (s(0), s(0), s(0), s(1)),
                _ => (s(0), s(1), s(2), s(3)),
            };
            self.px
                .push(((r & 1) << 3) | ((g & 1) << 2) | ((b & 1) << 1) | (a & 1));
        }
        self.rows += 1;
    }

    /// The signature, as the reference reader checks it: RGB first (its 120 bits end at
    /// pixel 40), then alpha (pixel 120).
    fn signature(&self) -> Option<(Mode, &'static str)> {
        if let Some(sig) = self.bytes(Mode::Rgb, 0, SIG_BITS / 8) {
            for s in ["stealth_rgbinfo", "stealth_rgbcomp"] {
                if sig == s.as_bytes() {
                    return Some((Mode::Rgb, s));
                }
            }
        }
        if self.has_alpha {
            if let Some(sig) = self.bytes(Mode::Alpha, 0, SIG_BITS / 8) {
                for s in ["stealth_pnginfo", "stealth_pngcomp"] {
                    if sig == s.as_bytes() {
                        return Some((Mode::Alpha, s));
                    }
                }
            }
        }
        None
    }
}

/// Reads the payload after a found signature and adds the `stealth` carrier.
fn extract(p: &Planes, mode: Mode, sig: &str, out: &mut Carriers, budget: &mut Budget) {
    let Some(len) = p.bytes(mode, SIG_BITS, 4) else {
        out.warnings
            .push(format!("stealth: {sig} signature without a length"));
        return;
    };
    let nbits = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as u64;
    let start = SIG_BITS + 32;
    if start + nbits > p.bits(mode) {
        out.warnings.push(format!(
            "stealth: {sig} payload of {nbits} bits exceeds the image; skipped"
        ));
        return;
    }
    let Some(payload) = p.bytes(mode, start, nbits / 8) else {
        out.warnings.push(format!(
            "stealth: {sig} payload could not be read (pixel data incomplete)"
        ));
        return;
    };
    let value = if sig.ends_with("comp") {
        let (raw, problem) = gunzip(&payload, budget);
        if let Some(problem) = problem {
            out.warnings.push(format!("stealth: {sig}: {problem}"));
            if raw.is_empty() {
                return;
            }
        }
        String::from_utf8_lossy(&raw).into_owned()
    } else {
        String::from_utf8_lossy(&payload).into_owned()
    };
    let mode_name = match mode {
        Mode::Alpha => "alpha",
        Mode::Rgb => "rgb",
    };
    out.entries.push(Carrier {
        key: "stealth".into(),
        location: format!("stealth:{mode_name}:{sig}"),
        value,
    });
}

/// Reads the consecutive `IDAT` chunks from the first one on as one stream.
struct IdatReader<'a, 'r, R> {
    input: &'a mut Input<'r, R>,
    left: u64,
    done: bool,
}

impl<R: Read + Seek> Read for IdatReader<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            let h = self.input.read_up_to(8)?;
            if h.len() < 8 || &h[4..8] != b"IDAT" {
                self.done = true;
                return Ok(0);
            }
            self.left = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
            if self.left == 0 {
                self.input.skip(4)?;
            }
        }
        let n = (buf.len() as u64).min(self.left) as usize;
        let got = self.input.read_into(&mut buf[..n])?;
        if got == 0 {
            self.done = true;
            return Ok(0);
        }
        self.left -= got as u64;
        if self.left == 0 {
            self.input.skip(4)?; // CRC
        }
        Ok(got)
    }
}

fn unfilter(filter: u8, cur: &mut [u8], prev: &[u8], bpp: usize) -> Result<(), String> {
    let n = cur.len();
    match filter {
        0 => {}
        1 => {
            for i in bpp..n {
                cur[i] = cur[i].wrapping_add(cur[i - bpp]);
            }
        }
        2 => {
            for i in 0..n {
                cur[i] = cur[i].wrapping_add(prev[i]);
            }
        }
        3 => {
            for i in 0..n {
                let a = if i >= bpp { cur[i - bpp] } else { 0 };
                cur[i] = cur[i].wrapping_add(((a as u16 + prev[i] as u16) / 2) as u8);
            }
        }
        4 => {
            for i in 0..n {
                let a = if i >= bpp { cur[i - bpp] as i16 } else { 0 };
                let b = prev[i] as i16;
                let c = if i >= bpp { prev[i - bpp] as i16 } else { 0 };
                let p = a + b - c;
                let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                let pred = if pa <= pb && pa <= pc {
                    a
                } else if pb <= pc {
                    b
                } else {
                    c
                };
                cur[i] = cur[i].wrapping_add(pred as u8);
            }
        }
        f => return Err(format!("unknown PNG filter type {f}")),
    }
    Ok(())
}

/// How a PNG's rows are laid out, as far as the stealth decode needs.
struct PngLayout {
    color_type: u8,
    has_alpha: bool,
    /// Bytes per sample (1 or 2).
    bps: usize,
    /// Bytes per pixel.
    bpp: usize,
    /// Bytes per row, without the filter byte.
    stride: u64,
    /// The rows holding the signature's pixels.
    sig_rows: u64,
}

/// Looks for a stealth payload in a PNG whose chunks were already walked.
pub(crate) fn from_png<R: Read + Seek>(
    input: &mut Input<'_, R>,
    first_idat: u64,
    idat_total: u64,
    ihdr: Ihdr,
    out: &mut Carriers,
    budget: &mut Budget,
) -> io::Result<()> {
    let Some(layout) = png_layout(&ihdr, idat_total, out, budget) else {
        return Ok(());
    };
    if ihdr.interlace != 0 {
        return from_whole_file(input, image::ImageFormat::Png, out, budget);
    }
    input.seek_to(first_idat)?;
    let (planes, found) = png_rows(input, &ihdr, &layout, out);
    if let Some((mode, sig)) = found {
        extract(&planes, mode, sig, out, budget);
    }
    Ok(())
}

/// The layout of a PNG worth checking; `None` for the images the reference readers cannot
/// read, ones too small for a signature, and (with a warning) ones too large or whose pixel
/// data is too short.
fn png_layout(
    ihdr: &Ihdr,
    idat_total: u64,
    out: &mut Carriers,
    budget: &Budget,
) -> Option<PngLayout> {
    let channels: u64 = match ihdr.color_type {
        2 => 3,
        4 => 2,
        6 => 4,
        _ => return None, // grey and palette images: the reference readers cannot read them
    };
    if !matches!(ihdr.bit_depth, 8 | 16) {
        return None;
    }
    let (w, h) = (ihdr.width as u64, ihdr.height as u64);
    let has_alpha = ihdr.color_type != 2;
    if w * h < 40 {
        return None; // too small for any signature
    }
    let bps = ihdr.bit_depth as u64 / 8;
    let bpp = (channels * bps) as usize;
    let stride = w * bpp as u64;
    if w * h > budget.max_pixels || stride > MAX_CHUNK {
        out.warnings
            .push(format!("stealth: {w}x{h} image is too large to check"));
        return None;
    }
    // Deflate expands at most ~1032:1: pixel data far too short for the rows is not decoded.
    // The rows holding the signature's pixels: the first 120 (alpha) or 40 (RGB) pixels in
    // column-major order.
    let sig_rows = h.min(if has_alpha { SIG_BITS } else { SIG_BITS / 3 });
    if (stride + 1) * sig_rows / 1032 > idat_total + 64 {
        out.warnings
            .push("stealth: pixel data too short for the image size; not checked".into());
        return None;
    }
    Some(PngLayout {
        color_type: ihdr.color_type,
        has_alpha,
        bps: bps as usize,
        bpp,
        stride,
        sig_rows,
    })
}

/// Decodes a non-interlaced PNG's rows from the first `IDAT` on, stopping after the
/// signature's rows when they hold none. Returns the LSB planes and the signature found.
fn png_rows<R: Read + Seek>(
    input: &mut Input<'_, R>,
    ihdr: &Ihdr,
    layout: &PngLayout,
    out: &mut Carriers,
) -> (Planes, Option<(Mode, &'static str)>) {
    let idat = IdatReader {
        input,
        left: 0,
        done: false,
    };
    let mut z = flate2::read::ZlibDecoder::new(idat);
    let mut planes = Planes::new(ihdr.width, ihdr.height, layout.has_alpha);
    let mut prev = vec![0u8; layout.stride as usize];
    let mut cur = vec![0u8; layout.stride as usize + 1];
    let mut found = None;
    for y in 0..ihdr.height as u64 {
        if let Err(e) = z.read_exact(&mut cur) {
            out.warnings
                .push(format!("stealth: pixel data unreadable at row {y}: {e}"));
            break;
        }
        let (filter, row) = cur.split_first_mut().expect("row has a filter byte");
        if let Err(e) = unfilter(*filter, row, &prev, layout.bpp) {
            out.warnings.push(format!("stealth: row {y}: {e}"));
            break;
        }
        planes.push_png_row(row, layout);
        prev.copy_from_slice(row);
        if planes.rows == layout.sig_rows {
            found = planes.signature();
            if found.is_none() {
                break;
            }
        }
    }
    (planes, found)
}

/// Looks for a stealth payload in a lossless WebP of the given size.
///
/// libwebp's incremental decoder is fed the file 16 KiB at a time and stops as soon as the
/// rows holding the signature (the first 120 pixels of column 0) are decoded; only a file that
/// carries a signature is decoded (and read) to the end.
pub(crate) fn from_webp<R: Read + Seek>(
    input: &mut Input<'_, R>,
    w: u32,
    h: u32,
    out: &mut Carriers,
    budget: &mut Budget,
) -> io::Result<()> {
    let px = w as u64 * h as u64;
    if px < 40 {
        return Ok(());
    }
    if px > budget.max_pixels {
        out.warnings
            .push(format!("stealth: {w}x{h} image is too large to check"));
        return Ok(());
    }
    if !small_enough_to_read_whole(input, out) {
        return Ok(());
    }
    input.seek_to(0)?;
    let mut dec = match WebpRows::new() {
        Some(d) => d,
        None => return Ok(()),
    };
    let signature_rows = SIG_BITS.min(h as u64);
    let mut head = Vec::new();
    let mut has_alpha = None;
    loop {
        let chunk = input.read_up_to(16 * 1024)?;
        if chunk.is_empty() {
            break;
        }
        if has_alpha.is_none() {
            head.extend_from_slice(&chunk);
            has_alpha = webp_has_alpha(&head);
        }
        match dec.append(&chunk) {
            Step::More => {}
            Step::Done => break,
            Step::Failed(e) => {
                out.warnings
                    .push(format!("stealth: pixels could not be decoded: {e}"));
                return Ok(());
            }
        }
        if dec.rows() >= signature_rows {
            // Enough for the signature: decide whether the rest is worth decoding.
            let planes = dec.planes(has_alpha.unwrap_or(true));
            if planes.signature().is_none() {
                return Ok(());
            }
            if dec.rows() < h as u64 {
                decode_rest(input, &mut dec, out)?;
            }
            break;
        }
    }
    let planes = dec.planes(has_alpha.unwrap_or(true));
    if let Some((mode, sig)) = planes.signature() {
        extract(&planes, mode, sig, out, budget);
    }
    Ok(())
}

/// A payload was found: decodes (and reads) the rest of the file.
fn decode_rest<R: Read + Seek>(
    input: &mut Input<'_, R>,
    dec: &mut WebpRows,
    out: &mut Carriers,
) -> io::Result<()> {
    loop {
        let chunk = input.read_up_to(64 * 1024)?;
        if chunk.is_empty() {
            break;
        }
        match dec.append(&chunk) {
            Step::More => {}
            Step::Done => break,
            Step::Failed(e) => {
                out.warnings
                    .push(format!("stealth: pixels could not be decoded: {e}"));
                break;
            }
        }
    }
    Ok(())
}

/// Whether the file is small enough to be read whole for a decode; warns when not.
fn small_enough_to_read_whole<R: Read + Seek>(input: &Input<'_, R>, out: &mut Carriers) -> bool {
    if input.len() > MAX_WHOLE_FILE {
        out.warnings
            .push("stealth: file too large to decode; not checked".into());
        return false;
    }
    true
}

/// Whether a WebP has an alpha channel, from its first bytes (`None`: need more bytes).
fn webp_has_alpha(head: &[u8]) -> Option<bool> {
    let mut features = std::mem::MaybeUninit::<libwebp_sys::WebPBitstreamFeatures>::zeroed();
    // SAFETY: pointer and length describe `head`; `features` is written by the call.
    let status =
        unsafe { libwebp_sys::WebPGetFeatures(head.as_ptr(), head.len(), features.as_mut_ptr()) };
    match status {
        libwebp_sys::VP8StatusCode::VP8_STATUS_OK => {
            // SAFETY: initialised by a successful WebPGetFeatures.
            Some(unsafe { features.assume_init() }.has_alpha != 0)
        }
        libwebp_sys::VP8StatusCode::VP8_STATUS_NOT_ENOUGH_DATA if head.len() < 4096 => None,
        _ => Some(true),
    }
}

enum Step {
    More,
    Done,
    Failed(String),
}

/// libwebp's incremental decoder into RGBA (memory owned by the decoder).
struct WebpRows {
    idec: *mut libwebp_sys::WebPIDecoder,
}

impl WebpRows {
    fn new() -> Option<Self> {
        // SAFETY: a null buffer asks libwebp to allocate the output itself.
        let idec = unsafe {
            libwebp_sys::WebPINewRGB(
                libwebp_sys::WEBP_CSP_MODE::MODE_RGBA,
                std::ptr::null_mut(),
                0,
                0,
            )
        };
        (!idec.is_null()).then_some(WebpRows { idec })
    }

    fn append(&mut self, data: &[u8]) -> Step {
        // SAFETY: idec is live; libwebp copies what it needs from `data`.
        let status = unsafe { libwebp_sys::WebPIAppend(self.idec, data.as_ptr(), data.len()) };
        match status {
            libwebp_sys::VP8StatusCode::VP8_STATUS_OK => Step::Done,
            libwebp_sys::VP8StatusCode::VP8_STATUS_SUSPENDED => Step::More,
            other => Step::Failed(format!("{other:?}")),
        }
    }

    /// (pointer, width, height, stride, rows decoded so far).
    fn view(&self) -> Option<(*const u8, u64, u64, u64, u64)> {
        let (mut last_y, mut w, mut h, mut stride) = (0, 0, 0, 0);
        // SAFETY: idec is live; the out-pointers are valid.
        let p = unsafe {
            libwebp_sys::WebPIDecGetRGB(self.idec, &mut last_y, &mut w, &mut h, &mut stride)
        };
        if p.is_null() || w <= 0 || h <= 0 || stride < w * 4 || last_y < 0 {
            return None;
        }
        Some((
            p,
            w as u64,
            h as u64,
            stride as u64,
            (last_y as u64).min(h as u64),
        ))
    }

    fn rows(&self) -> u64 {
        self.view().map_or(0, |v| v.4)
    }

    /// The LSB planes of the rows decoded so far.
    fn planes(&self, has_alpha: bool) -> Planes {
        let Some((p, w, h, stride, rows)) = self.view() else {
            return Planes::new(0, 0, has_alpha);
        };
        let mut planes = Planes::new(w as u32, h as u32, has_alpha);
        planes.rows = rows;
        planes.px.reserve((w * rows) as usize);
        for y in 0..rows {
            // SAFETY: rows < last_y are decoded; each holds `stride` ≥ 4·w bytes.
            let row = unsafe {
                std::slice::from_raw_parts(p.add((y * stride) as usize), (w * 4) as usize)
            };
            planes.px.extend(
                row.chunks_exact(4).map(|q| {
                    ((q[0] & 1) << 3) | ((q[1] & 1) << 2) | ((q[2] & 1) << 1) | (q[3] & 1)
                }),
            );
        }
        planes
    }
}

impl Drop for WebpRows {
    fn drop(&mut self) {
        // SAFETY: idec came from WebPINewRGB and is deleted once.
        unsafe { libwebp_sys::WebPIDelete(self.idec) }
    }
}

/// Decodes the whole file with the `image` crate and looks for a payload.
fn from_whole_file<R: Read + Seek>(
    input: &mut Input<'_, R>,
    format: image::ImageFormat,
    out: &mut Carriers,
    budget: &mut Budget,
) -> io::Result<()> {
    if !small_enough_to_read_whole(input, out) {
        return Ok(());
    }
    input.seek_to(0)?;
    let bytes = input.read_up_to(input.len())?;
    let _ = format;
    // Through the one decoding gate, which refuses images over the limit from the header.
    let img = match crate::imaging::decode::decode_pixels(&bytes, budget.max_pixels) {
        Ok(img) => img,
        Err(e) => {
            out.warnings
                .push(format!("stealth: pixels could not be decoded: {e}"));
            return Ok(());
        }
    };
    drop(bytes);
    let (w, h) = (img.width(), img.height());
    let has_alpha = img.color().has_alpha();
    let mut planes = Planes::new(w, h, has_alpha);
    planes.rows = h as u64;
    if has_alpha {
        let rgba = img.into_rgba8();
        planes.px = rgba
            .pixels()
            .map(|p| ((p[0] & 1) << 3) | ((p[1] & 1) << 2) | ((p[2] & 1) << 1) | (p[3] & 1))
            .collect();
    } else {
        let rgb = img.into_rgb8();
        planes.px = rgb
            .pixels()
            .map(|p| ((p[0] & 1) << 3) | ((p[1] & 1) << 2) | ((p[2] & 1) << 1))
            .collect();
    }
    if let Some((mode, sig)) = planes.signature() {
        extract(&planes, mode, sig, out, budget);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    /// The LSB bit stream of a payload as the writers build it: signature, 32-bit bit count,
    /// data.
    pub fn stream(sig: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = sig.as_bytes().to_vec();
        bytes.extend(((data.len() * 8) as u32).to_be_bytes());
        bytes.extend(data);
        bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
            .collect()
    }

    /// RGBA pixels (row-major) of a `w`x`h` image carrying `bits` column-major in the alpha
    /// LSBs (alpha mode) or the RGB LSBs (rgb mode); other LSBs random-ish.
    pub fn embed(w: usize, h: usize, bits: &[u8], alpha: bool) -> Vec<[u8; 4]> {
        let mut px: Vec<[u8; 4]> = (0..w * h)
            .map(|i| {
                let v = (i * 37 % 251) as u8;
                [v, v.wrapping_mul(3), v.wrapping_add(11), 254 | (v & 1)]
            })
            .collect();
        // Pixels after the payload: alpha 255 (A1111 calls putalpha(255) first).
        for p in px.iter_mut() {
            p[3] = 255;
        }
        let per = if alpha { 1 } else { 3 };
        assert!(bits.len() <= w * h * per, "image too small");
        for (k, &bit) in bits.iter().enumerate() {
            let pixel = k / per;
            let (x, y) = (pixel / h, pixel % h);
            let c = if alpha { 3 } else { k % 3 };
            let p = &mut px[y * w + x][c];
            *p = (*p & !1) | bit;
        }
        px
    }
}
