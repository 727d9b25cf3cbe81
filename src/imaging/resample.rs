//! Pillow-compatible resampling of 8-bit RGB images.
//!
//! Taggers were trained on images resized by Pillow (`Image.resize`), and their reference code
//! resizes that way, so we reproduce Pillow's `ImagingResample` exactly: separable convolution
//! with the filter's support scaled by the downscale factor (antialiasing), coefficients
//! normalised to 22-bit fixed point, a horizontal pass over just the rows the vertical pass
//! needs, then a vertical pass, rounding to 8 bits in between. Tests compare against Pillow.

use image::{GrayImage, RgbImage};

use crate::words::Filter;

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn support(filter: Filter) -> f64 {
    match filter {
        Filter::Nearest | Filter::Box => 0.5,
        Filter::Bilinear | Filter::Hamming => 1.0,
        Filter::Bicubic => 2.0,
        Filter::Lanczos => 3.0,
    }
}

fn kernel(filter: Filter, x: f64) -> f64 {
    match filter {
        Filter::Nearest | Filter::Box => {
            if x > -0.5 && x <= 0.5 {
                1.0
            } else {
                0.0
            }
        }
        Filter::Bilinear => {
            let x = x.abs();
            if x < 1.0 {
                1.0 - x
            } else {
                0.0
            }
        }
        Filter::Hamming => {
            let x = x.abs();
            if x == 0.0 {
                1.0
            } else if x >= 1.0 {
                0.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
            }
        }
        Filter::Bicubic => {
            let a = -0.5;
            let x = x.abs();
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        }
        Filter::Lanczos => {
            if (-3.0..3.0).contains(&x) {
                sinc(x) * sinc(x / 3.0)
            } else {
                0.0
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// Fixed-point coefficients for one axis: per output pixel, the first input index, the count,
/// and `ksize` coefficients.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    kk: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let (in0, in1) = (0.0f32, in_size as f32);
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support(filter) * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = kernel(filter, (x as f64 + xmin as f64 - center + 0.5) * inv);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(n) {
            let v = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = v * (1u32 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if v < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs { ksize, bounds, kk }
}

#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `src` to `out_w × out_h` exactly as Pillow's `Image.resize(size, filter)` does
/// for an RGB image.
pub fn resize(src: &RgbImage, out_w: u32, out_h: u32, filter: Filter) -> RgbImage {
    resize_padded(src, None, out_w, out_h, filter)
}

/// An input image virtually padded to a centred canvas of colour `fill` (no padding when
/// the canvas is the image's own size).
struct PaddedInput<'a> {
    src_raw: &'a [u8],
    /// The image's size.
    w: usize,
    h: usize,
    /// The canvas's size.
    in_w: usize,
    in_h: usize,
    /// Where the image sits in the canvas.
    off_x: usize,
    off_y: usize,
    fill: [u8; 3],
}

impl<'a> PaddedInput<'a> {
    /// `src` on a centred square canvas of colour `pad` (when given), else as it is.
    fn new(src: &'a RgbImage, pad: Option<[u8; 3]>) -> PaddedInput<'a> {
        let (w, h) = (src.width() as usize, src.height() as usize);
        let (in_w, in_h) = match pad {
            Some(_) => (w.max(h), w.max(h)),
            None => (w, h),
        };
        let (off_x, off_y) = ((in_w - w) / 2, (in_h - h) / 2);
        let fill = pad.unwrap_or([0; 3]);
        PaddedInput {
            src_raw: src.as_raw(),
            w,
            h,
            in_w,
            in_h,
            off_x,
            off_y,
            fill,
        }
    }

    /// Row `y` of the (virtually) padded input, written into `line` when it holds content.
    fn content_row(&self, y: usize, line: &mut Vec<u8>) -> bool {
        let (w, h, off_x, off_y) = (self.w, self.h, self.off_x, self.off_y);
        if y < off_y || y >= off_y + h {
            return false;
        }
        line.clear();
        for _ in 0..off_x {
            line.extend_from_slice(&self.fill);
        }
        line.extend_from_slice(&self.src_raw[(y - off_y) * w * 3..(y - off_y + 1) * w * 3]);
        while line.len() < self.in_w * 3 {
            line.extend_from_slice(&self.fill);
        }
        true
    }

    /// Horizontal pass over rows [first, last) into a temporary image `out_w` wide; padding
    /// rows are a constant row, computed once.
    fn horizontal_pass(&self, first: usize, last: usize, out_w: usize, filter: Filter) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.in_w * 3);
        let horiz = precompute(self.in_w, out_w, filter);
        let rows = last - first;
        let mut tmp = vec![0u8; out_w * rows * 3];
        let mut pad_row: Option<Vec<u8>> = None;
        for yy in 0..rows {
            let out = &mut tmp[yy * out_w * 3..(yy + 1) * out_w * 3];
            if self.content_row(yy + first, &mut line) {
                horizontal_row(&line, out, &horiz);
            } else {
                let row = pad_row.get_or_insert_with(|| {
                    let constant: Vec<u8> = (0..self.in_w).flat_map(|_| self.fill).collect();
                    let mut r = vec![0u8; out_w * 3];
                    horizontal_row(&constant, &mut r, &horiz);
                    r
                });
                out.copy_from_slice(row);
            }
        }
        tmp
    }

    /// The whole padded canvas, for when no horizontal pass is needed.
    fn canvas_rows(&self) -> Vec<u8> {
        let (in_w, in_h) = (self.in_w, self.in_h);
        let mut line = Vec::with_capacity(in_w * 3);
        let mut full = vec![0u8; in_w * in_h * 3];
        for y in 0..in_h {
            let out = &mut full[y * in_w * 3..(y + 1) * in_w * 3];
            if self.content_row(y, &mut line) {
                out.copy_from_slice(&line);
            } else {
                for px in out.chunks_exact_mut(3) {
                    px.copy_from_slice(&self.fill);
                }
            }
        }
        full
    }
}

/// The result when no convolution is needed: the sizes already match (just pad), or the
/// filter is nearest neighbour (pad, then pick pixels). `None` otherwise.
fn resize_without_convolution(
    src: &RgbImage,
    pad: Option<[u8; 3]>,
    input: &PaddedInput<'_>,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Option<RgbImage> {
    let (w, h, in_w, in_h) = (input.w, input.h, input.in_w, input.in_h);
    if (in_w, in_h) == (out_w, out_h) || filter == Filter::Nearest {
        let canvas = match pad {
            Some(c) if (in_w, in_h) != (w, h) => super::pad_square(src, c),
            _ => src.clone(),
        };
        return Some(if (in_w, in_h) == (out_w, out_h) {
            canvas
        } else {
            nearest(&canvas, out_w, out_h)
        });
    }
    None
}

/// The vertical pass over `tmp` (rows of `stride` bytes, starting at input row `row_offset`)
/// into `out_h` rows.
fn vertical_pass(
    tmp: &[u8],
    stride: usize,
    row_offset: usize,
    vert: &Coeffs,
    out_h: usize,
) -> Vec<u8> {
    // Vertical pass: accumulate whole rows tap by tap (contiguous, vectorisable).
    let mut out = vec![0u8; stride * out_h];
    let mut acc = vec![0i32; stride];
    for yy in 0..out_h {
        let (ymin, n) = vert.bounds[yy];
        let ymin = ymin - row_offset;
        let k = &vert.kk[yy * vert.ksize..yy * vert.ksize + n];
        vertical_row(
            &tmp[ymin * stride..(ymin + n) * stride],
            k,
            &mut acc,
            &mut out[yy * stride..(yy + 1) * stride],
        );
    }
    out
}

/// Pads `src` to a centred square of colour `pad` (when given), then resizes, with the same
/// result as `resize(&pad_square(src, pad), ...)` but without building the padded canvas:
/// rows that are all padding are filled with their known constant.
pub fn resize_padded(
    src: &RgbImage,
    pad: Option<[u8; 3]>,
    out_w: u32,
    out_h: u32,
    filter: Filter,
) -> RgbImage {
    let input = PaddedInput::new(src, pad);
    let (in_w, in_h) = (input.in_w, input.in_h);
    let (out_w, out_h) = (out_w as usize, out_h as usize);
    if let Some(done) = resize_without_convolution(src, pad, &input, out_w, out_h, filter) {
        return done;
    }
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    let vert = precompute(in_h, out_h, filter);
    let first = vert.bounds[0].0;
    let last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;

    let (tmp, tmp_w, row_offset): (Vec<u8>, usize, usize) = if need_h {
        (
            input.horizontal_pass(first, last, out_w, filter),
            out_w,
            first,
        )
    } else {
        (input.canvas_rows(), in_w, 0)
    };
    if !need_v {
        return RgbImage::from_raw(tmp_w as u32, out_h as u32, tmp).expect("buffer size matches");
    }
    let out = vertical_pass(&tmp, tmp_w * 3, row_offset, &vert, out_h);
    RgbImage::from_raw(tmp_w as u32, out_h as u32, out).expect("buffer size matches")
}

/// One row of the vertical pass: `rows` are the `k.len()` input rows it reads.
fn vertical_row(rows: &[u8], k: &[i32], acc: &mut [i32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { vertical_row_avx2(rows, k, acc, out) };
        }
    }
    vertical_row_impl(rows, k, acc, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vertical_row_avx2(rows: &[u8], k: &[i32], acc: &mut [i32], out: &mut [u8]) {
    vertical_row_impl(rows, k, acc, out)
}

#[inline(always)]
fn vertical_row_impl(rows: &[u8], k: &[i32], acc: &mut [i32], out: &mut [u8]) {
    let stride = out.len();
    acc.fill(1i32 << (PRECISION_BITS - 1));
    for (row, &ky) in rows.chunks_exact(stride).zip(k) {
        for (a, &p) in acc.iter_mut().zip(row) {
            *a = a.wrapping_add((p as i32).wrapping_mul(ky));
        }
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = clip8(a);
    }
}

/// One row of the horizontal pass: `line` is an input row (RGB), `out` an output row.
/// Pixels are widened to four i32 lanes (RGB + a spare) so the taps run as 4-lane vector
/// arithmetic; AVX2 is used when the CPU has it (same integer results either way).
fn horizontal_row(line: &[u8], out: &mut [u8], horiz: &Coeffs) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { horizontal_row_avx2(line, out, horiz) };
        }
    }
    horizontal_row_impl(line, out, horiz)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_row_avx2(line: &[u8], out: &mut [u8], horiz: &Coeffs) {
    horizontal_row_impl(line, out, horiz)
}

#[inline(always)]
fn horizontal_row_impl(line: &[u8], out: &mut [u8], horiz: &Coeffs) {
    let half = 1i32 << (PRECISION_BITS - 1);
    let wide: Vec<[i32; 4]> = line
        .chunks_exact(3)
        .map(|p| [p[0] as i32, p[1] as i32, p[2] as i32, 0])
        .collect();
    for (xx, o) in out.chunks_exact_mut(3).enumerate() {
        let (xmin, n) = horiz.bounds[xx];
        let k = &horiz.kk[xx * horiz.ksize..xx * horiz.ksize + n];
        let mut acc = [half; 4];
        for (p, &kx) in wide[xmin..xmin + n].iter().zip(k) {
            for c in 0..4 {
                acc[c] = acc[c].wrapping_add(p[c].wrapping_mul(kx));
            }
        }
        o[0] = clip8(acc[0]);
        o[1] = clip8(acc[1]);
        o[2] = clip8(acc[2]);
    }
}

/// Resizes a greyscale image exactly as Pillow's `Image.resize(size, filter)` does for an
/// `L` image (the same passes as [`resize`], one channel).
pub fn resize_gray(src: &GrayImage, out_w: u32, out_h: u32, filter: Filter) -> GrayImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);
    if (in_w, in_h) == (ow, oh) || in_w == 0 || in_h == 0 || ow == 0 || oh == 0 {
        return if (in_w, in_h) == (ow, oh) {
            src.clone()
        } else {
            GrayImage::new(out_w, out_h)
        };
    }
    if filter == Filter::Nearest {
        return GrayImage::from_fn(out_w, out_h, |x, y| {
            let sy = (((y as f64 + 0.5) * in_h as f64 / oh as f64) as u32).min(in_h as u32 - 1);
            let sx = (((x as f64 + 0.5) * in_w as f64 / ow as f64) as u32).min(in_w as u32 - 1);
            *src.get_pixel(sx, sy)
        });
    }
    let raw = src.as_raw();
    let vert = precompute(in_h, oh, filter);
    let (first, last) = if oh != in_h {
        let (a, n) = vert.bounds[oh - 1];
        (vert.bounds[0].0, a + n)
    } else {
        (0, in_h)
    };
    let (tmp, tmp_w) = if ow != in_w {
        let horiz = precompute(in_w, ow, filter);
        let split = Split::new(&horiz);
        let mut tmp = vec![0u8; ow * (last - first)];
        for (y, out) in (first..last).zip(tmp.chunks_exact_mut(ow)) {
            gray_row(&raw[y * in_w..(y + 1) * in_w], out, &horiz, &split);
        }
        (tmp, ow)
    } else {
        (raw[first * in_w..last * in_w].to_vec(), in_w)
    };
    if oh == in_h {
        return GrayImage::from_raw(tmp_w as u32, oh as u32, tmp).expect("buffer size matches");
    }
    let out = vertical_pass(&tmp, tmp_w, first, &vert, oh);
    GrayImage::from_raw(tmp_w as u32, oh as u32, out).expect("buffer size matches")
}

/// The horizontal coefficients cut in two 16-bit halves, `k = 256·hi + lo` (`hi = k >> 8`,
/// `lo = k & 255`): 22-bit coefficients do not fit one 16-bit multiply, their halves do, and
/// `Σ p·k = 256·Σ p·hi + Σ p·lo` exactly.
struct Split {
    hi: Vec<i16>,
    lo: Vec<i16>,
}

impl Split {
    fn new(c: &Coeffs) -> Split {
        // |k| ≤ 2^22 (a normalised weight ≤ 1, a little more for rounding), so k >> 8 fits.
        let hi = c.kk.iter().map(|&k| (k >> 8) as i16).collect();
        let lo = c.kk.iter().map(|&k| (k & 255) as i16).collect();
        Split { hi, lo }
    }
}

/// One row of a greyscale horizontal pass: Pillow's `clip8(2^21 + Σ p·k)` per output.
fn gray_row(line: &[u8], out: &mut [u8], horiz: &Coeffs, split: &Split) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { gray_row_avx2(line, out, horiz, split) };
            return;
        }
    }
    let half = 1i32 << (PRECISION_BITS - 1);
    for (xx, o) in out.iter_mut().enumerate() {
        let (xmin, n) = horiz.bounds[xx];
        let k = &horiz.kk[xx * horiz.ksize..xx * horiz.ksize + n];
        *o = clip8(half.wrapping_add(dot_u8_i32(&line[xmin..xmin + n], k)));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gray_row_avx2(line: &[u8], out: &mut [u8], horiz: &Coeffs, split: &Split) {
    use std::arch::x86_64::*;
    let half = 1i32 << (PRECISION_BITS - 1);
    for (xx, o) in out.iter_mut().enumerate() {
        let (xmin, n) = horiz.bounds[xx];
        let base = xx * horiz.ksize;
        let p = &line[xmin..xmin + n];
        let (hi, lo) = (&split.hi[base..base + n], &split.lo[base..base + n]);
        let (mut acc_hi, mut acc_lo) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let whole = n / 16 * 16;
        let mut i = 0;
        while i < whole {
            // SAFETY: i + 16 ≤ n, the length of p, hi and lo.
            let px = _mm256_cvtepu8_epi16(_mm_loadu_si128(p.as_ptr().add(i).cast()));
            let kh = _mm256_loadu_si256(hi.as_ptr().add(i).cast());
            let kl = _mm256_loadu_si256(lo.as_ptr().add(i).cast());
            acc_hi = _mm256_add_epi32(acc_hi, _mm256_madd_epi16(px, kh));
            acc_lo = _mm256_add_epi32(acc_lo, _mm256_madd_epi16(px, kl));
            i += 16;
        }
        let lanes = |v: __m256i| -> i32 {
            let mut a = [0i32; 8];
            _mm256_storeu_si256(a.as_mut_ptr().cast(), v);
            a.iter().fold(0i32, |x, &y| x.wrapping_add(y))
        };
        let mut ss = lanes(acc_hi).wrapping_mul(256).wrapping_add(lanes(acc_lo));
        for (&px, &k) in p[whole..].iter().zip(&horiz.kk[base + whole..base + n]) {
            ss = ss.wrapping_add((px as i32).wrapping_mul(k));
        }
        *o = clip8(half.wrapping_add(ss));
    }
}

/// `Σ p·k` with wrapping integer arithmetic (exact in any order), eight taps at a time so
/// it runs as vector code; AVX2 when the CPU has it.
fn dot_u8_i32(p: &[u8], k: &[i32]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { dot_avx2(p, k) };
        }
    }
    dot_impl(p, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(p: &[u8], k: &[i32]) -> i32 {
    dot_impl(p, k)
}

#[inline(always)]
fn dot_impl(p: &[u8], k: &[i32]) -> i32 {
    let mut lanes = [0i32; 8];
    let (pc, kc) = (p.chunks_exact(8), k.chunks_exact(8));
    let (pr, kr) = (pc.remainder(), kc.remainder());
    for (a, b) in pc.zip(kc) {
        for i in 0..8 {
            lanes[i] = lanes[i].wrapping_add((a[i] as i32).wrapping_mul(b[i]));
        }
    }
    let mut acc = lanes.iter().fold(0i32, |x, &y| x.wrapping_add(y));
    for (&a, &b) in pr.iter().zip(kr) {
        acc = acc.wrapping_add((a as i32).wrapping_mul(b));
    }
    acc
}

/// Nearest neighbour: each output pixel takes the input pixel under its centre.
fn nearest(src: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let mut out = RgbImage::new(out_w as u32, out_h as u32);
    for y in 0..out_h {
        let sy = (((y as f64 + 0.5) * in_h as f64 / out_h as f64) as usize).min(in_h - 1);
        for x in 0..out_w {
            let sx = (((x as f64 + 0.5) * in_w as f64 / out_w as f64) as usize).min(in_w - 1);
            out.put_pixel(x as u32, y as u32, *src.get_pixel(sx as u32, sy as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_resize_equals_resize_of_the_padded_canvas() {
        let img = RgbImage::from_fn(37, 11, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 23) as u8, ((x + y) * 5) as u8])
        });
        for f in [
            Filter::Bicubic,
            Filter::Bilinear,
            Filter::Lanczos,
            Filter::Nearest,
        ] {
            for (w, h) in [(16, 16), (37, 37), (50, 50), (8, 20)] {
                let canvas = crate::imaging::pad_square(&img, [255, 255, 255]);
                assert_eq!(
                    resize_padded(&img, Some([255, 255, 255]), w, h, f),
                    resize(&canvas, w, h, f),
                    "{f:?} {w}x{h}"
                );
            }
        }
        let tall = RgbImage::from_fn(5, 40, |x, y| image::Rgb([x as u8 * 40, y as u8 * 6, 9]));
        let canvas = crate::imaging::pad_square(&tall, [0, 10, 20]);
        assert_eq!(
            resize_padded(&tall, Some([0, 10, 20]), 12, 12, Filter::Bicubic),
            resize(&canvas, 12, 12, Filter::Bicubic)
        );
    }

    #[test]
    fn identity_and_constant_images() {
        let img = RgbImage::from_pixel(10, 7, image::Rgb([200, 100, 50]));
        assert_eq!(resize(&img, 10, 7, Filter::Bicubic), img);
        for f in [
            Filter::Bicubic,
            Filter::Bilinear,
            Filter::Lanczos,
            Filter::Box,
            Filter::Hamming,
            Filter::Nearest,
        ] {
            let r = resize(&img, 4, 13, f);
            assert_eq!(r.dimensions(), (4, 13));
            assert!(r.pixels().all(|p| p.0 == [200, 100, 50]), "{f:?}");
        }
    }

    #[test]
    fn the_vector_grey_row_equals_the_scalar_one_at_every_scale() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut byte = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        };
        for (in_w, out_w) in [
            (4233, 32),
            (4233, 33),
            (640, 32),
            (31, 32),
            (7, 64),
            (100, 99),
            (1, 5),
            (3000, 1),
        ] {
            for filter in [
                Filter::Lanczos,
                Filter::Bicubic,
                Filter::Bilinear,
                Filter::Box,
                Filter::Hamming,
            ] {
                let line: Vec<u8> = (0..in_w).map(|_| byte()).collect();
                let horiz = precompute(in_w, out_w, filter);
                let split = Split::new(&horiz);
                let mut fast = vec![0u8; out_w];
                gray_row(&line, &mut fast, &horiz, &split);
                let half = 1i32 << (PRECISION_BITS - 1);
                let slow: Vec<u8> = (0..out_w)
                    .map(|xx| {
                        let (xmin, n) = horiz.bounds[xx];
                        let k = &horiz.kk[xx * horiz.ksize..xx * horiz.ksize + n];
                        let ss = line[xmin..xmin + n]
                            .iter()
                            .zip(k)
                            .fold(half, |a, (&p, &k)| a.wrapping_add(p as i32 * k));
                        clip8(ss)
                    })
                    .collect();
                assert_eq!(fast, slow, "{in_w} → {out_w} {filter:?}");
            }
        }
    }

    #[test]
    fn matches_pillow_on_a_small_gradient() {
        // Pillow 13.0: Image.frombytes("RGB", (5, 3), bytes(range(45))).resize((w, h), filter)
        let img = RgbImage::from_raw(5, 3, (0u8..45).collect()).unwrap();
        let cases: [(u32, u32, Filter, Vec<u8>); 4] = [
            (
                3,
                2,
                Filter::Bicubic,
                vec![
                    6, 7, 8, 11, 12, 13, 16, 17, 18, 26, 27, 28, 31, 32, 33, 36, 37, 38,
                ],
            ),
            (
                7,
                4,
                Filter::Bicubic,
                vec![
                    0, 0, 1, 0, 1, 2, 3, 4, 5, 5, 6, 7, 7, 8, 9, 10, 11, 12, 11, 12, 13, 8, 9, 10,
                    9, 10, 11, 12, 13, 14, 14, 15, 16, 16, 17, 18, 19, 20, 21, 20, 21, 22, 22, 23,
                    24, 23, 24, 25, 26, 27, 28, 28, 29, 30, 30, 31, 32, 33, 34, 35, 34, 35, 36, 31,
                    32, 33, 32, 33, 34, 35, 36, 37, 37, 38, 39, 39, 40, 41, 42, 43, 44, 43, 44, 45,
                ],
            ),
            (
                2,
                5,
                Filter::Bilinear,
                vec![
                    3, 4, 5, 9, 10, 11, 9, 10, 11, 15, 16, 17, 18, 19, 20, 24, 25, 26, 27, 28, 29,
                    33, 34, 35, 33, 34, 35, 39, 40, 41,
                ],
            ),
            (
                3,
                2,
                Filter::Lanczos,
                vec![
                    5, 6, 7, 10, 11, 12, 15, 16, 17, 27, 28, 29, 32, 33, 34, 37, 38, 39,
                ],
            ),
        ];
        for (w, h, f, expected) in cases {
            assert_eq!(resize(&img, w, h, f).as_raw(), &expected, "{w}x{h} {f:?}");
        }
    }
}
