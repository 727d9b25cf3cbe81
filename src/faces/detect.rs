//! YuNet's output decoding and non-maximum suppression, in the letterboxed frame, and the
//! mapping back to the image.
//!
//! YuNet (2023mar) sees a 640×640 canvas; the image is scaled to fit it, kept at the top
//! left, the rest black ([`Letterbox`]). For each of its three strides (8, 16, 32) it gives,
//! per grid cell, a class and an objectness score, a box as offsets and log-sizes in units of
//! the stride, and five landmarks as offsets. A candidate's score is √(cls·obj), both clamped
//! to 0–1 — the decoding of OpenCV's `FaceDetectorYN`, which `tests/reference/faces_reference.py`
//! restates in NumPy.

/// The detector's input side.
pub const SIDE: u32 = 640;

/// The strides of YuNet's three heads, in output order.
pub const STRIDES: [u32; 3] = [8, 16, 32];

/// Candidates below this score are dropped before suppression (they could only ever lower a
/// count's confidence by less than 5%).
pub const CANDIDATE_FLOOR: f32 = 0.05;

/// How an image sits on the detector's canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// The image's size.
    pub width: u32,
    pub height: u32,
    /// Its size on the canvas.
    pub scaled_w: u32,
    pub scaled_h: u32,
}

impl Letterbox {
    /// Fits `width × height` into the canvas, keeping its aspect (scaled up or down).
    pub fn fit(width: u32, height: u32) -> Letterbox {
        let (w, h) = (width.max(1) as f64, height.max(1) as f64);
        let scale = (SIDE as f64 / w).min(SIDE as f64 / h);
        let side = |v: f64| ((v * scale + 0.5).floor() as u32).clamp(1, SIDE);
        Letterbox {
            width: width.max(1),
            height: height.max(1),
            scaled_w: side(w),
            scaled_h: side(h),
        }
    }

    fn sx(&self) -> f32 {
        self.scaled_w as f32 / self.width as f32
    }

    fn sy(&self) -> f32 {
        self.scaled_h as f32 / self.height as f32
    }
}

/// One candidate face, in canvas or image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub score: f32,
    pub landmarks: [f32; 10],
}

/// One head's outputs: `cls` and `obj` (one value per cell), `bbox` (4 per cell), `kps` (10
/// per cell).
pub struct Head<'a> {
    pub stride: u32,
    pub cls: &'a [f32],
    pub obj: &'a [f32],
    pub bbox: &'a [f32],
    pub kps: &'a [f32],
}

fn unit(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

/// The candidates of one head scoring at least `floor`, in canvas pixels. Cells beyond what
/// every output holds are ignored; non-finite geometry drops the candidate.
pub fn decode(head: &Head<'_>, floor: f32, out: &mut Vec<Candidate>) {
    let s = head.stride as f32;
    let cols = (SIDE / head.stride.max(1)) as usize;
    let cells = head
        .cls
        .len()
        .min(head.obj.len())
        .min(head.bbox.len() / 4)
        .min(head.kps.len() / 10);
    for i in 0..cells {
        let score = (unit(head.cls[i]) * unit(head.obj[i])).sqrt();
        if score < floor {
            continue;
        }
        let (row, col) = ((i / cols) as f32, (i % cols) as f32);
        let b = &head.bbox[i * 4..i * 4 + 4];
        let (cx, cy) = ((col + b[0]) * s, (row + b[1]) * s);
        let (w, h) = (b[2].exp() * s, b[3].exp() * s);
        let mut landmarks = [0f32; 10];
        for (k, l) in landmarks.iter_mut().enumerate() {
            let offset = if k % 2 == 0 { col } else { row };
            *l = (head.kps[i * 10 + k] + offset) * s;
        }
        let c = Candidate {
            x: cx - w / 2.0,
            y: cy - h / 2.0,
            w,
            h,
            score,
            landmarks,
        };
        if [c.x, c.y, c.w, c.h].iter().all(|v| v.is_finite())
            && landmarks.iter().all(|v| v.is_finite())
        {
            out.push(c);
        }
    }
}

/// Intersection over union of two boxes.
pub fn iou(a: &Candidate, b: &Candidate) -> f32 {
    let ix = ((a.x + a.w).min(b.x + b.w) - a.x.max(b.x)).max(0.0);
    let iy = ((a.y + a.h).min(b.y + b.h) - a.y.max(b.y)).max(0.0);
    let inter = ix * iy;
    let union = a.w * a.h + b.w * b.h - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Candidates considered by suppression, strongest first, and faces kept after it (OpenCV's
/// `top_k` and `keep_top_k` for YuNet): a detector gone wrong cannot make an image cost
/// millions of comparisons and recogniser runs.
pub const TOP_K: usize = 5000;
pub const KEEP_TOP_K: usize = 750;

/// Greedy non-maximum suppression: by descending score (ties keep decoding order), a
/// candidate overlapping a kept one by more than `threshold` IoU is dropped; at most
/// [`TOP_K`] candidates in, [`KEEP_TOP_K`] out.
pub fn suppress(mut candidates: Vec<Candidate>, threshold: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(TOP_K);
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.len() == KEEP_TOP_K {
            break;
        }
        if kept.iter().all(|k| iou(k, &c) <= threshold) {
            kept.push(c);
        }
    }
    kept
}

/// Maps a canvas candidate onto the image: scaled back, its box clipped to the image.
pub fn to_image(c: &Candidate, lb: &Letterbox) -> Candidate {
    let (sx, sy) = (lb.sx(), lb.sy());
    let (w_img, h_img) = (lb.width as f32, lb.height as f32);
    let (x, y) = (c.x / sx, c.y / sy);
    let (x2, y2) = ((x + c.w / sx).min(w_img), (y + c.h / sy).min(h_img));
    let (x1, y1) = (x.max(0.0), y.max(0.0));
    let mut landmarks = c.landmarks;
    for (k, l) in landmarks.iter_mut().enumerate() {
        *l /= if k % 2 == 0 { sx } else { sy };
    }
    Candidate {
        x: x1,
        y: y1,
        w: (x2 - x1).max(0.0),
        h: (y2 - y1).max(0.0),
        score: c.score,
        landmarks,
    }
}

/// The confidence that exactly `n` faces are present, given the scores of every candidate
/// that survived suppression in descending order: the weakest kept face must be a face and
/// the strongest rejected one must not, `min(s_n, 1 − s_{n+1})` (with `s_0 = 1` and a
/// missing `s_{n+1}` counting as 0).
pub fn count_confidence(scores: &[f32], n: usize) -> f32 {
    let kept = if n == 0 {
        1.0
    } else {
        scores.get(n - 1).copied().map_or(0.0, unit)
    };
    let next = scores.get(n).copied().map_or(0.0, unit);
    kept.min(1.0 - next)
}

/// The count tag of `n` faces: `no face`, `1 face`, `2 faces`, …
pub fn count_tag(n: usize) -> String {
    match n {
        0 => "no face".to_string(),
        1 => "1 face".to_string(),
        n => format!("{n} faces"),
    }
}

/// The count tag of `n` counted faces and its confidence ([`count_confidence`]), given the
/// descending scores of the candidates. With `cap`, counts from `cap` up are one tag, `CAP+
/// faces`, scored by the confidence that at least `cap` faces are present, `s_cap`.
pub fn count(scores: &[f32], n: usize, cap: Option<usize>) -> (String, f32) {
    match cap {
        Some(c) if c > 0 && n >= c => (
            format!("{c}+ faces"),
            scores.get(c - 1).copied().map_or(0.0, unit),
        ),
        _ => (count_tag(n), count_confidence(scores, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(x: f32, y: f32, w: f32, h: f32, score: f32) -> Candidate {
        Candidate {
            x,
            y,
            w,
            h,
            score,
            landmarks: [0.0; 10],
        }
    }

    #[test]
    fn counts_from_the_cap_up_share_one_tag() {
        let s = [0.95, 0.9, 0.8, 0.7, 0.2];
        assert_eq!(
            count(&s, 2, Some(4)),
            ("2 faces".into(), 0.8f32.min(1.0 - 0.8))
        );
        assert_eq!(count(&s, 4, Some(4)), ("4+ faces".into(), 0.7));
        assert_eq!(count(&s, 4, None), ("4 faces".into(), 0.7f32.min(0.8)));
        assert_eq!(count(&s, 1, Some(1)), ("1+ faces".into(), 0.95));
        assert_eq!(count(&s, 0, Some(1)), ("no face".into(), 1.0 - 0.95));
        // a cap of 0 is refused when the file is read; here it means no cap
        assert_eq!(count(&[], 0, Some(0)), ("no face".into(), 1.0));
    }

    #[test]
    fn letterbox_fits_the_longer_side() {
        let lb = Letterbox::fit(1280, 720);
        assert_eq!((lb.scaled_w, lb.scaled_h), (640, 360));
        let lb = Letterbox::fit(100, 50);
        assert_eq!((lb.scaled_w, lb.scaled_h), (640, 320));
        let lb = Letterbox::fit(1, 100_000);
        assert_eq!((lb.scaled_w, lb.scaled_h), (1, 640));
        let lb = Letterbox::fit(0, 0);
        assert_eq!((lb.width, lb.scaled_w), (1, 640));
    }

    #[test]
    fn decoding_follows_the_grid() {
        // One cell of the stride-32 head: row 1, col 2 of a 20-column grid.
        let cells = 400;
        let i = 22;
        let mut cls = vec![0.0; cells];
        let mut obj = vec![0.0; cells];
        let mut bbox = vec![0.0; cells * 4];
        let mut kps = vec![0.0; cells * 10];
        cls[i] = 0.81;
        obj[i] = 1.0;
        bbox[i * 4..i * 4 + 4].copy_from_slice(&[0.5, 0.5, 0.0, (2f32).ln()]);
        kps[i * 10] = 0.25;
        kps[i * 10 + 1] = 0.75;
        let head = Head {
            stride: 32,
            cls: &cls,
            obj: &obj,
            bbox: &bbox,
            kps: &kps,
        };
        let mut out = Vec::new();
        decode(&head, 0.5, &mut out);
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert!((c.score - 0.9).abs() < 1e-6);
        // Centre (2.5, 1.5) × 32 = (80, 48); size 32 × 64.
        assert_eq!((c.x, c.y, c.w, c.h), (64.0, 16.0, 32.0, 64.0));
        assert_eq!((c.landmarks[0], c.landmarks[1]), (72.0, 56.0));
    }

    #[test]
    fn decoding_survives_short_or_hostile_outputs() {
        let nan = [f32::NAN; 3];
        let head = Head {
            stride: 8,
            cls: &[1.0, f32::INFINITY, 1.0],
            obj: &[1.0, 1.0, f32::NAN],
            bbox: &[0.0, 0.0, 1e30, 0.0, 0.0],
            kps: &nan,
        };
        let mut out = Vec::new();
        decode(&head, 0.0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn suppression_keeps_the_best_of_overlaps() {
        let kept = suppress(
            vec![
                cand(0.0, 0.0, 10.0, 10.0, 0.8),
                cand(1.0, 1.0, 10.0, 10.0, 0.9),
                cand(50.0, 50.0, 10.0, 10.0, 0.7),
            ],
            0.3,
        );
        let scores: Vec<f32> = kept.iter().map(|c| c.score).collect();
        assert_eq!(scores, vec![0.9, 0.7]);
    }

    #[test]
    fn mapping_back_clips_the_box() {
        let lb = Letterbox::fit(320, 160);
        let c = to_image(&cand(-10.0, 300.0, 100.0, 40.0, 0.9), &lb);
        assert_eq!((c.x, c.y), (0.0, 150.0));
        assert_eq!((c.w, c.h), (45.0, 10.0));
    }

    #[test]
    fn count_confidence_is_the_weaker_margin() {
        let s = [0.95, 0.7, 0.2];
        assert!((count_confidence(&s, 2) - 0.7).abs() < 1e-6);
        assert!((count_confidence(&s, 1) - 0.3).abs() < 1e-6);
        assert!((count_confidence(&s, 0) - 0.05).abs() < 1e-6);
        assert_eq!(count_confidence(&[], 0), 1.0);
        assert_eq!(count_tag(0), "no face");
        assert_eq!(count_tag(3), "3 faces");
    }
}
