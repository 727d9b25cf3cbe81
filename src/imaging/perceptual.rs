//! Perceptual hashes, bit-exact with Python's `imagehash` (pHash, dHash, aHash) and the
//! `blockhash` reference (blockhash.io's "precise" method) on the same decoded pixels.
//!
//! Every hash starts from Pillow's `convert("L")` ([`grey`]) and Pillow's Lanczos resize
//! ([`super::resample::resize_gray`]), as `imagehash` does; pHash's DCT is computed in f64
//! like SciPy's (values may differ in the last bits, which changes a hash only when a
//! coefficient ties with the median: flat images). Pixels are the stored ones: `imagehash`
//! applies no EXIF orientation and neither do we. Bits are laid out row by row, the first
//! bit most significant, and printed as `imagehash` prints them ([`to_hex`]).

use image::{DynamicImage, GrayImage};

use super::resample::resize_gray;
use crate::words::Filter;

/// A hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// DCT of a 4×-oversized grey image; bits above the median of the low frequencies.
    Phash,
    /// Horizontal gradient: each pixel brighter than its left neighbour.
    Dhash,
    /// Each pixel of a tiny grey image brighter than the mean.
    Ahash,
    /// blockhash.io: block sums of R+G+B against the median of their band.
    Blockhash,
}

/// A hash method: an algorithm at a grid size (bits = size²).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub name: &'static str,
    pub algorithm: Algorithm,
    pub size: u32,
}

impl Method {
    pub fn bits(&self) -> u32 {
        self.size * self.size
    }
}

/// Every method, in the order they are stored.
pub const METHODS: &[Method] = &[
    Method {
        name: "phash",
        algorithm: Algorithm::Phash,
        size: 8,
    },
    Method {
        name: "phash16",
        algorithm: Algorithm::Phash,
        size: 16,
    },
    Method {
        name: "dhash",
        algorithm: Algorithm::Dhash,
        size: 8,
    },
    Method {
        name: "dhash16",
        algorithm: Algorithm::Dhash,
        size: 16,
    },
    Method {
        name: "ahash",
        algorithm: Algorithm::Ahash,
        size: 8,
    },
    Method {
        name: "ahash16",
        algorithm: Algorithm::Ahash,
        size: 16,
    },
    Method {
        name: "blockhash",
        algorithm: Algorithm::Blockhash,
        size: 8,
    },
    Method {
        name: "blockhash16",
        algorithm: Algorithm::Blockhash,
        size: 16,
    },
];

/// The method called `name`.
pub fn method(name: &str) -> Option<Method> {
    METHODS.iter().copied().find(|m| m.name == name)
}

/// Pillow's `convert("L")` of a decoded image: `L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`,
/// alpha ignored; 16-bit grey clamped to 255 as Pillow clamps `I;16`; other 16-bit images
/// take the high byte, as Pillow reads them.
pub fn grey(img: &DynamicImage) -> GrayImage {
    let l24 = |r: u8, g: u8, b: u8| -> u8 {
        ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
    };
    let (w, h) = (img.width(), img.height());
    let data: Vec<u8> = match img {
        DynamicImage::ImageLuma8(l) => return l.clone(),
        DynamicImage::ImageLumaA8(la) => la.as_raw().chunks_exact(2).map(|p| p[0]).collect(),
        DynamicImage::ImageLuma16(l) => l.as_raw().iter().map(|&v| v.min(255) as u8).collect(),
        DynamicImage::ImageLumaA16(la) => la
            .as_raw()
            .chunks_exact(2)
            .map(|p| (p[0] >> 8) as u8)
            .collect(),
        DynamicImage::ImageRgb8(rgb) => luma_of(rgb.as_raw(), 3),
        DynamicImage::ImageRgba8(rgba) => luma_of(rgba.as_raw(), 4),
        DynamicImage::ImageRgb16(rgb) => rgb
            .as_raw()
            .chunks_exact(3)
            .map(|p| l24((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8))
            .collect(),
        DynamicImage::ImageRgba16(rgba) => rgba
            .as_raw()
            .chunks_exact(4)
            .map(|p| l24((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8))
            .collect(),
        other => other
            .to_rgb8()
            .as_raw()
            .chunks_exact(3)
            .map(|p| l24(p[0], p[1], p[2]))
            .collect(),
    };
    GrayImage::from_raw(w, h, data).expect("one byte per pixel")
}

/// Pillow's `L` of 8-bit pixels of `stride` bytes (3: RGB, 4: RGBA; alpha ignored).
fn luma_of(raw: &[u8], stride: usize) -> Vec<u8> {
    let mut out = vec![0u8; raw.len() / stride];
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            done = unsafe { luma_avx2(raw, stride, &mut out) };
        }
    }
    for (o, p) in out[done..]
        .iter_mut()
        .zip(raw[done * stride..].chunks_exact(stride))
    {
        *o =
            ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8;
    }
    out
}

/// [`luma_of`] eight pixels at a time; returns how many pixels it wrote (the rest are left).
///
/// Each 128-bit lane takes four pixels and spreads them into 16-bit (R, G) and (G, B) pairs;
/// two `madd`s give `19595 R + 32767 G` and `5703 G + 7471 B` (38470 does not fit a signed
/// 16-bit factor; 32767 + 5703 does), exactly Pillow's sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn luma_avx2(raw: &[u8], stride: usize, out: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    let z = -1i8;
    let s = stride as i8;
    // Byte indices of R, G (then G, B) of the lane's four pixels, each followed by a zero.
    let rg = |c: i8| {
        _mm_setr_epi8(
            c,
            z,
            c + 1,
            z,
            s + c,
            z,
            s + c + 1,
            z,
            2 * s + c,
            z,
            2 * s + c + 1,
            z,
            3 * s + c,
            z,
            3 * s + c + 1,
            z,
        )
    };
    let (m_rg, m_gb) = (rg(0), rg(1));
    let (m_rg, m_gb) = (_mm256_set_m128i(m_rg, m_rg), _mm256_set_m128i(m_gb, m_gb));
    let c_rg = _mm256_set1_epi32(19595 | (32767 << 16));
    let c_gb = _mm256_set1_epi32(5703 | (7471 << 16));
    let round = _mm256_set1_epi32(0x8000);
    let n = out.len();
    let mut i = 0;
    // Each load reads 16 bytes at pixel i and at pixel i + 4: stop where that would pass the end.
    while i + 8 <= n && (i + 4) * stride + 16 <= raw.len() {
        // SAFETY: both 16-byte loads end within `raw` (the loop condition).
        let lo = _mm_loadu_si128(raw.as_ptr().add(i * stride).cast());
        let hi = _mm_loadu_si128(raw.as_ptr().add((i + 4) * stride).cast());
        let px = _mm256_set_m128i(hi, lo);
        let a = _mm256_madd_epi16(_mm256_shuffle_epi8(px, m_rg), c_rg);
        let b = _mm256_madd_epi16(_mm256_shuffle_epi8(px, m_gb), c_gb);
        let l = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(a, b), round), 16);
        let mut v = [0i32; 8];
        _mm256_storeu_si256(v.as_mut_ptr().cast(), l);
        for (o, x) in out[i..i + 8].iter_mut().zip(v) {
            *o = x as u8;
        }
        i += 8;
    }
    i
}

/// The hashes of `methods` for one decoded image: `(method, hex)` in that order.
/// `palette`: the file stores palette colours (PNG colour type 3, GIF), whose transparency
/// blockhash's reference drops when it converts them to RGB.
pub fn hash_all(img: &DynamicImage, palette: bool, methods: &[Method]) -> Vec<(String, String)> {
    let g = match img {
        DynamicImage::ImageLuma8(l) => std::borrow::Cow::Borrowed(l),
        other => std::borrow::Cow::Owned(grey(other)),
    };
    let opaque;
    let for_blocks = match img {
        DynamicImage::ImageRgba8(rgba) if palette => {
            opaque = DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba.clone()).to_rgb8());
            &opaque
        }
        other => other,
    };
    methods
        .iter()
        .map(|m| {
            let source = if m.algorithm == Algorithm::Blockhash {
                for_blocks
            } else {
                img
            };
            (m.name.to_string(), to_hex(&hash_bits(source, &g, *m)))
        })
        .collect()
}

/// Whether `bytes` are a palette image (a PNG of colour type 3, or a GIF).
pub fn is_palette(bytes: &[u8]) -> bool {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    (bytes.starts_with(PNG) && bytes.len() > 25 && bytes[25] == 3) || bytes.starts_with(b"GIF8")
}

/// One method's bits (`g` is `img` in grey).
pub fn hash_bits(img: &DynamicImage, g: &GrayImage, m: Method) -> Vec<bool> {
    let n = m.size;
    match m.algorithm {
        Algorithm::Phash => phash(g, n),
        Algorithm::Dhash => {
            let small = resize_gray(g, n + 1, n, Filter::Lanczos);
            let (w, raw) = (n as usize + 1, small.as_raw());
            (0..n as usize)
                .flat_map(|y| (0..n as usize).map(move |x| raw[y * w + x + 1] > raw[y * w + x]))
                .collect()
        }
        Algorithm::Ahash => {
            let small = resize_gray(g, n, n, Filter::Lanczos);
            let raw = small.as_raw();
            let sum: u64 = raw.iter().map(|&p| p as u64).sum();
            // numpy: pixels > mean, i.e. p * count > sum exactly.
            raw.iter()
                .map(|&p| p as u64 * raw.len() as u64 > sum)
                .collect()
        }
        Algorithm::Blockhash => blockhash(img, n as usize),
    }
}

/// `imagehash.phash`: Lanczos to 4n×4n, a 2-D DCT-II (SciPy's unnormalised `fftpack.dct`,
/// along rows then columns), and the top-left n×n coefficients against their median.
fn phash(g: &GrayImage, n: u32) -> Vec<bool> {
    let big = (n * 4) as usize;
    let n = n as usize;
    let small = resize_gray(g, big as u32, big as u32, Filter::Lanczos);
    let x = small.as_raw();
    // cos(pi k (2m+1) / 2N) for k < n, m < N.
    let table: Vec<f64> = (0..n)
        .flat_map(|k| {
            (0..big).map(move |m| {
                (std::f64::consts::PI * k as f64 * (2 * m + 1) as f64 / (2 * big) as f64).cos()
            })
        })
        .collect();
    // Along axis 0 (down each column): a[k][col].
    let mut a = vec![0f64; n * big];
    for k in 0..n {
        for col in 0..big {
            let mut s = 0.0;
            for m in 0..big {
                s += x[m * big + col] as f64 * table[k * big + m];
            }
            a[k * big + col] = 2.0 * s;
        }
    }
    // Along axis 1 (across each row of a): d[k][l].
    let mut d = vec![0f64; n * n];
    for k in 0..n {
        for l in 0..n {
            let mut s = 0.0;
            for c in 0..big {
                s += a[k * big + c] * table[l * big + c];
            }
            d[k * n + l] = 2.0 * s;
        }
    }
    let med = median(&d);
    d.iter().map(|&v| v > med).collect()
}

/// numpy's median: the middle value, or the mean of the two middle values.
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let len = s.len();
    if len % 2 == 1 {
        s[len / 2]
    } else {
        (s[len / 2 - 1] + s[len / 2]) / 2.0
    }
}

/// R+G+B of each pixel as blockhash sees it (fully transparent: white, 765).
fn block_values(img: &DynamicImage) -> Vec<f64> {
    match img {
        DynamicImage::ImageRgba8(rgba) => rgba
            .as_raw()
            .chunks_exact(4)
            .map(|p| {
                if p[3] == 0 {
                    765.0
                } else {
                    (p[0] as u32 + p[1] as u32 + p[2] as u32) as f64
                }
            })
            .collect(),
        DynamicImage::ImageLumaA8(la) => la
            .as_raw()
            .chunks_exact(2)
            .map(|p| if p[1] == 0 { 765.0 } else { 3.0 * p[0] as f64 })
            .collect(),
        DynamicImage::ImageRgb8(rgb) => rgb
            .as_raw()
            .chunks_exact(3)
            .map(|p| (p[0] as u32 + p[1] as u32 + p[2] as u32) as f64)
            .collect(),
        other => grey_or_rgb(other),
    }
}

fn grey_or_rgb(img: &DynamicImage) -> Vec<f64> {
    match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageLuma16(_) => {
            grey(img).as_raw().iter().map(|&v| 3.0 * v as f64).collect()
        }
        other => other
            .to_rgb8()
            .as_raw()
            .chunks_exact(3)
            .map(|p| (p[0] as u32 + p[1] as u32 + p[2] as u32) as f64)
            .collect(),
    }
}

/// Python's float `%` (the sign of the divisor) for positive operands: C's `fmod`.
fn py_mod(a: f64, b: f64) -> f64 {
    let m = a % b;
    if m != 0.0 && (b < 0.0) != (m < 0.0) {
        m + b
    } else {
        m
    }
}

/// Python's float `//`.
fn py_floordiv(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && (b < 0.0) != (m < 0.0) {
        div -= 1.0;
    }
    if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 {
            f + 1.0
        } else {
            f
        }
    } else {
        0.0
    }
}

/// Which blocks a pixel row (or column) `i` of `len` feeds, with its weights, as the
/// blockhash reference computes them.
fn block_span(i: usize, len: usize, block: f64, even: bool) -> (usize, usize, f64, f64) {
    let fi = i as f64;
    if even {
        let b = py_floordiv(fi, block) as usize;
        return (b, b, 1.0, 0.0);
    }
    let r = py_mod(fi + 1.0, block);
    let (frac, int) = (r.fract(), r.trunc());
    let (w1, w2) = (1.0 - frac, frac);
    if int > 0.0 || i + 1 == len {
        let b = py_floordiv(fi, block) as usize;
        (b, b, w1, w2)
    } else {
        let lo = py_floordiv(fi, block) as usize;
        let hi = (-py_floordiv(-fi, block)) as usize;
        (lo, hi, w1, w2)
    }
}

/// blockhash.io's hash on a `bits`×`bits` grid (the reference's `blockhash`: the even method
/// when the size divides evenly, else fractional block weights).
fn blockhash(img: &DynamicImage, bits: usize) -> Vec<bool> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let values = block_values(img);
    let (even_x, even_y) = (w % bits == 0, h % bits == 0);
    let mut blocks = vec![0f64; bits * bits];
    let pixels_per_block;
    if even_x && even_y {
        let (bx, by) = (w / bits, h / bits);
        for y in 0..bits {
            for x in 0..bits {
                let mut v = 0f64;
                for iy in 0..by {
                    for ix in 0..bx {
                        v += values[(y * by + iy) * w + x * bx + ix];
                    }
                }
                blocks[y * bits + x] = v;
            }
        }
        pixels_per_block = (bx * by) as f64;
    } else {
        let bw = w as f64 / bits as f64;
        let bh = h as f64 / bits as f64;
        let clamp = |b: usize| b.min(bits - 1);
        for y in 0..h {
            let (top, bottom, wt, wb) = block_span(y, h, bh, even_y);
            let (top, bottom) = (clamp(top), clamp(bottom));
            for x in 0..w {
                let v = values[y * w + x];
                let (left, right, wl, wr) = block_span(x, w, bw, even_x);
                let (left, right) = (clamp(left), clamp(right));
                blocks[top * bits + left] += v * wt * wl;
                blocks[top * bits + right] += v * wt * wr;
                blocks[bottom * bits + left] += v * wb * wl;
                blocks[bottom * bits + right] += v * wb * wr;
            }
        }
        pixels_per_block = bw * bh;
    }
    let half = pixels_per_block * 256.0 * 3.0 / 2.0;
    let band = blocks.len() / 4;
    let mut out = Vec::with_capacity(blocks.len());
    for i in 0..4 {
        let slice = &blocks[i * band..(i + 1) * band];
        let m = median(slice);
        out.extend(
            slice
                .iter()
                .map(|&v| v > m || ((v - m).abs() < 1.0 && m > half)),
        );
    }
    out
}

/// The bits as `imagehash` prints them: hex, most significant first, ⌈n/4⌉ digits.
pub fn to_hex(bits: &[bool]) -> String {
    let mut out = String::with_capacity(bits.len().div_ceil(4));
    let pad = (4 - bits.len() % 4) % 4;
    let padded: Vec<bool> = std::iter::repeat_n(false, pad)
        .chain(bits.iter().copied())
        .collect();
    for nibble in padded.chunks(4) {
        let v = nibble.iter().fold(0u32, |a, &b| a << 1 | b as u32);
        out.push(char::from_digit(v, 16).expect("a nibble"));
    }
    out
}

/// A hex hash as 64-bit words (most significant first; the last word left-aligned). `None`
/// for anything but hex digits.
pub fn parse_hex(hex: &str) -> Option<Vec<u64>> {
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(
        hex.as_bytes()
            .chunks(16)
            .map(|c| {
                let s = std::str::from_utf8(c).expect("ascii");
                u64::from_str_radix(s, 16).expect("hex") << (4 * (16 - c.len()))
            })
            .collect(),
    )
}

/// The number of differing bits.
pub fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_luma_equals_pillows_formula_for_every_length() {
        let mut seed = 7u64;
        let mut byte = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        };
        for stride in [3, 4] {
            for n in [0, 1, 7, 8, 9, 15, 16, 17, 33, 1000, 1001] {
                let mut raw: Vec<u8> = (0..n * stride).map(|_| byte()).collect();
                // Extremes too: all 0 and all 255 pixels.
                if n > 2 {
                    raw[..stride].fill(255);
                    raw[stride..2 * stride].fill(0);
                }
                let want: Vec<u8> = raw
                    .chunks_exact(stride)
                    .map(|p| {
                        ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000)
                            >> 16) as u8
                    })
                    .collect();
                assert_eq!(luma_of(&raw, stride), want, "stride {stride}, {n} pixels");
            }
        }
    }
    use proptest::prelude::*;

    #[test]
    fn hex_is_imagehash_formatting() {
        let mut bits = vec![false; 64];
        bits[0] = true;
        bits[63] = true;
        assert_eq!(to_hex(&bits), "8000000000000001");
        assert_eq!(to_hex(&[true, false, true]), "5");
        assert_eq!(
            parse_hex("8000000000000001"),
            Some(vec![0x8000_0000_0000_0001])
        );
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(""), None);
    }

    #[test]
    fn flat_images_hash_without_panicking() {
        for (w, h) in [(1, 1), (1, 7), (3, 2), (64, 64), (65, 17)] {
            let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(w, h, image::Luma([7])));
            let hashes = hash_all(&img, false, METHODS);
            assert_eq!(hashes.len(), METHODS.len());
            for ((name, hex), m) in hashes.iter().zip(METHODS) {
                assert_eq!(name, m.name);
                assert_eq!(hex.len() as u32, m.bits() / 4);
            }
        }
    }

    #[test]
    fn python_float_division_rules() {
        assert_eq!(py_floordiv(7.0, 2.5), 2.0);
        assert_eq!(py_floordiv(-7.0, 2.5), -3.0);
        assert_eq!(py_mod(7.0, 2.5), 2.0);
    }

    proptest! {
        #[test]
        fn hex_round_trips(words in proptest::collection::vec(any::<u64>(), 1..5)) {
            let bits: Vec<bool> = words
                .iter()
                .flat_map(|w| (0..64).rev().map(move |i| w >> i & 1 == 1))
                .collect();
            let hex = to_hex(&bits);
            prop_assert_eq!(parse_hex(&hex), Some(words.clone()));
            prop_assert_eq!(hamming(&words, &words), 0);
        }

        #[test]
        fn any_small_image_hashes(w in 1u32..40, h in 1u32..40, seed in any::<u64>()) {
            let img = image::RgbaImage::from_fn(w, h, |x, y| {
                let v = (seed ^ ((x as u64) << 8 | y as u64)).wrapping_mul(0x9E3779B97F4A7C15);
                image::Rgba([(v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8, (v >> 32) as u8])
            });
            let hashes = hash_all(&DynamicImage::ImageRgba8(img), seed % 2 == 0, METHODS);
            prop_assert_eq!(hashes.len(), METHODS.len());
        }
    }
}
