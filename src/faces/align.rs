//! Face alignment for the recogniser: the similarity transform (rotation, uniform scale,
//! translation) that best maps a face's five landmarks onto the standard 112×112 ArcFace
//! template, least squares (Umeyama's solution, which for 2-d points reduces to a closed
//! form), and the bilinear warp of the image through it, with black outside the image — as
//! OpenCV's `FaceRecognizerSF::alignCrop` does. Then the crop's sharpness: the variance of
//! its Laplacian.

use image::RgbImage;

/// The aligned crop's side.
pub const SIZE: u32 = 112;

/// Where the five landmarks go in the 112×112 crop (the ArcFace template).
pub const TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// `[a, -b, tx; b, a, ty]`: a point (x, y) of the image goes to (a·x − b·y + tx, b·x + a·y + ty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

/// The least-squares similarity mapping `landmarks` (x, y pairs) onto [`TEMPLATE`]; `None`
/// when the landmarks are degenerate (all at one point) or not finite.
pub fn estimate(landmarks: &[f32; 10]) -> Option<Similarity> {
    let src: Vec<[f64; 2]> = (0..5)
        .map(|k| [landmarks[2 * k] as f64, landmarks[2 * k + 1] as f64])
        .collect();
    if src.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let mean = |pts: &mut dyn Iterator<Item = [f64; 2]>| {
        let (mut x, mut y) = (0.0, 0.0);
        for p in pts {
            x += p[0] / 5.0;
            y += p[1] / 5.0;
        }
        [x, y]
    };
    let ms = mean(&mut src.iter().copied());
    let md = mean(&mut TEMPLATE.iter().map(|p| [p[0] as f64, p[1] as f64]));
    let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(TEMPLATE.iter()) {
        let (px, py) = (s[0] - ms[0], s[1] - ms[1]);
        let (qx, qy) = (d[0] as f64 - md[0], d[1] as f64 - md[1]);
        num_a += px * qx + py * qy;
        num_b += px * qy - py * qx;
        den += px * px + py * py;
    }
    if den <= 1e-12 {
        return None;
    }
    let (a, b) = (num_a / den, num_b / den);
    Some(Similarity {
        a,
        b,
        tx: md[0] - (a * ms[0] - b * ms[1]),
        ty: md[1] - (b * ms[0] + a * ms[1]),
    })
}

/// The 112×112 crop through `t`: each crop pixel (u, v) samples the image at `t⁻¹(u, v)`,
/// bilinearly, neighbours outside the image counting as black; rounded to 8 bits.
pub fn warp(img: &RgbImage, t: &Similarity) -> RgbImage {
    let det = t.a * t.a + t.b * t.b;
    let mut out = RgbImage::new(SIZE, SIZE);
    if det <= 0.0 || !det.is_finite() {
        return out;
    }
    let (w, h) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let (ia, ib) = (t.a / det, t.b / det);
    for v in 0..SIZE {
        for u in 0..SIZE {
            let (dx, dy) = (u as f64 - t.tx, v as f64 - t.ty);
            let sx = ia * dx + ib * dy;
            let sy = -ib * dx + ia * dy;
            if !(sx.is_finite() && sy.is_finite()) {
                continue;
            }
            let (x0, y0) = (floor(sx), floor(sy));
            let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
            let mut acc = [0f64; 3];
            for (xx, yy, wt) in [
                (x0, y0, (1.0 - fx) * (1.0 - fy)),
                (x0 + 1, y0, fx * (1.0 - fy)),
                (x0, y0 + 1, (1.0 - fx) * fy),
                (x0 + 1, y0 + 1, fx * fy),
            ] {
                if xx < 0 || yy < 0 || xx >= w || yy >= h {
                    continue;
                }
                let i = ((yy * w + xx) * 3) as usize;
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += wt * raw[i + c] as f64;
                }
            }
            let px = out.get_pixel_mut(u, v);
            for (o, a) in px.0.iter_mut().zip(acc) {
                *o = floor(a + 0.5).clamp(0, 255) as u8;
            }
        }
    }
    out
}

/// `v.floor()` as an integer, without a libm call (saturating far outside the image).
fn floor(v: f64) -> i64 {
    let t = v as i64;
    if (t as f64) > v {
        t - 1
    } else {
        t
    }
}

/// The variance of the Laplacian (kernel 0 1 0 / 1 −4 1 / 0 1 0, interior pixels) of the
/// crop in grey (0.299 R + 0.587 G + 0.114 B): near 0 for a blurred face, hundreds for a
/// sharp one.
pub fn sharpness(crop: &RgbImage) -> f32 {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let grey: Vec<f64> = crop
        .pixels()
        .map(|p| 0.299 * p.0[0] as f64 + 0.587 * p.0[1] as f64 + 0.114 * p.0[2] as f64)
        .collect();
    let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            let l = grey[i - 1] + grey[i + 1] + grey[i - w] + grey[i + w] - 4.0 * grey[i];
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum2 / n - mean * mean).max(0.0) as f32
}

/// The recogniser's input: the crop as planar R, G, B floats 0–255.
pub fn tensor(crop: &RgbImage) -> Vec<f32> {
    let n = (crop.width() * crop.height()) as usize;
    let mut out = vec![0f32; n * 3];
    for (i, p) in crop.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = p.0[c] as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_landmarks(scale: f32, dx: f32, dy: f32) -> [f32; 10] {
        let mut l = [0f32; 10];
        for (k, p) in TEMPLATE.iter().enumerate() {
            l[2 * k] = p[0] * scale + dx;
            l[2 * k + 1] = p[1] * scale + dy;
        }
        l
    }

    #[test]
    fn the_template_maps_onto_itself() {
        let t = estimate(&template_landmarks(1.0, 0.0, 0.0)).unwrap();
        assert!((t.a - 1.0).abs() < 1e-6 && t.b.abs() < 1e-6);
        assert!(t.tx.abs() < 1e-3 && t.ty.abs() < 1e-3);
    }

    #[test]
    fn a_scaled_shifted_face_is_undone() {
        let t = estimate(&template_landmarks(2.0, 100.0, 50.0)).unwrap();
        assert!((t.a - 0.5).abs() < 1e-6 && t.b.abs() < 1e-6);
        assert!((t.tx + 50.0).abs() < 1e-3 && (t.ty + 25.0).abs() < 1e-3);
    }

    #[test]
    fn degenerate_landmarks_give_none() {
        assert!(estimate(&[3.0; 10]).is_none());
        let mut l = template_landmarks(1.0, 0.0, 0.0);
        l[4] = f32::NAN;
        assert!(estimate(&l).is_none());
    }

    #[test]
    fn identity_warp_copies_and_pads_black() {
        let img = RgbImage::from_fn(60, 200, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let t = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        };
        let crop = warp(&img, &t);
        assert_eq!(crop.get_pixel(10, 20).0, [10, 20, 7]);
        assert_eq!(crop.get_pixel(100, 20).0, [0, 0, 0]);
    }

    #[test]
    fn sharpness_is_zero_for_flat_and_high_for_edges() {
        let flat = RgbImage::from_pixel(112, 112, image::Rgb([90, 90, 90]));
        assert_eq!(sharpness(&flat), 0.0);
        let checks = RgbImage::from_fn(112, 112, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        assert!(sharpness(&checks) > 10_000.0);
        assert_eq!(sharpness(&RgbImage::new(2, 2)), 0.0);
    }
}
