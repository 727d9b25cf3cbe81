//! Threshold sweeps: micro precision, recall and F1 against the threshold, per variant and per
//! category, with the precision = recall break-even point and the best-F1 threshold; per-tag
//! precision–recall curves. Pure, from a variant's loaded scores.
//!
//! The exact curve has one point per distinct stored score s > 0, in descending order:
//! predicted pairs are those with score ≥ s, so for `general` and `character` precision,
//! recall (and thresholds) are exactly scikit-learn's `precision_recall_curve` over the
//! (image, tag) pairs, without its threshold-0 point and its final (precision 1, recall 0)
//! point.
//!
//! The `all` sweep counts every tag, ratings included, as the leaderboard does: a rating is
//! predicted by argmax whatever the threshold, so the ratings add the same true and false
//! positives at every point (and their ground truth to the positives). At a grid threshold
//! its F1 is the leaderboard's micro F1. `general` is the general tags alone.

use serde::Serialize;

use super::scores::VariantScores;
use crate::config::Category;

/// One point of a curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Where precision equals recall (linearly interpolated between curve points).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreakEven {
    pub threshold: f64,
    /// Precision = recall there.
    pub value: f64,
}

/// A sweep over one set of (image, tag) pairs.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// `all` (every tag; ratings by argmax, as the leaderboard), `general` or `character`.
    pub category: String,
    /// Positive pairs (ground truth), scored or not.
    pub positives: u64,
    /// The curve at thresholds 0.01, 0.02, ..., 0.99.
    pub grid: Vec<Point>,
    pub break_even: Option<BreakEven>,
    /// The point of highest F1 on the exact curve (ties: the highest threshold).
    pub best_f1: Option<Point>,
    /// Points on the exact curve (distinct scores).
    pub curve_points: usize,
}

/// A per-tag precision–recall curve.
#[derive(Debug, Clone, Serialize)]
pub struct TagCurve {
    pub tag: String,
    pub positives: u64,
    pub best_f1: Option<Point>,
    pub break_even: Option<BreakEven>,
    /// Exact curve points, thresholds descending.
    pub points: Vec<Point>,
}

/// What a curve is drawn from: the thresholded `(score, y)` pairs, every positive pair, and
/// the pairs predicted at every threshold (ratings, by argmax).
#[derive(Debug, Clone, Default)]
pub struct Pairs {
    pub pairs: Vec<(f32, bool)>,
    pub positives: u64,
    /// True and false positives that do not depend on the threshold.
    pub fixed: (u64, u64),
}

/// The exact curve from thresholded `(score, y)` pairs (those with score 0 are never
/// predicted and only count as positives) and the number of positive pairs.
pub fn curve(pairs: Vec<(f32, bool)>, positives: u64) -> Vec<Point> {
    curve_of(&Pairs {
        pairs,
        positives,
        fixed: (0, 0),
    })
}

/// The exact curve of `p`: the fixed predictions are added at every point.
pub fn curve_of(p: &Pairs) -> Vec<Point> {
    let positives = p.positives;
    let mut pairs: Vec<(f32, bool)> = p.pairs.iter().copied().filter(|x| x.0 > 0.0).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = Vec::new();
    let (mut tp, mut fp) = p.fixed;
    let mut i = 0;
    while i < pairs.len() {
        let s = pairs[i].0;
        while i < pairs.len() && pairs[i].0 == s {
            if pairs[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push(point(s as f64, tp, fp, positives));
    }
    out
}

fn point(threshold: f64, tp: u64, fp: u64, positives: u64) -> Point {
    let p = super::metrics::prf(tp, fp, positives.saturating_sub(tp));
    Point {
        threshold,
        precision: p.precision,
        recall: p.recall,
        f1: p.f1,
    }
}

/// The curve at fixed thresholds (each compared as float32), read off the exact curve
/// (thresholds descending): the point of the smallest curve threshold ≥ t, or, above every
/// score, only the fixed predictions (none: precision, recall, F1 0).
pub fn at_thresholds(exact: &[Point], p: &Pairs, thresholds: &[f64]) -> Vec<Point> {
    thresholds
        .iter()
        .map(|&t| {
            let t32 = t as f32;
            let k = exact.partition_point(|p| p.threshold as f32 >= t32);
            match k {
                0 => point(t, p.fixed.0, p.fixed.1, p.positives),
                _ => Point {
                    threshold: t,
                    ..exact[k - 1]
                },
            }
        })
        .collect()
}

/// Break-even: scanning the curve from the highest threshold down, the first point where
/// precision − recall is 0, else the first sign change from > 0 to < 0, interpolated linearly
/// (in threshold and value) between the two points around it. `None` when there is none.
pub fn break_even(points: &[Point]) -> Option<BreakEven> {
    let d = |p: &Point| p.precision - p.recall;
    for (i, p) in points.iter().enumerate() {
        if d(p) == 0.0 && p.recall > 0.0 {
            return Some(BreakEven {
                threshold: p.threshold,
                value: p.precision,
            });
        }
        if i > 0 {
            let q = &points[i - 1];
            if d(q) > 0.0 && d(p) < 0.0 {
                let lambda = d(q) / (d(q) - d(p));
                return Some(BreakEven {
                    threshold: q.threshold + lambda * (p.threshold - q.threshold),
                    value: q.precision + lambda * (p.precision - q.precision),
                });
            }
        }
    }
    None
}

/// The highest-F1 point (first, i.e. highest threshold, among equals); `None` when F1 is 0
/// everywhere.
pub fn best_f1(points: &[Point]) -> Option<Point> {
    let mut best: Option<Point> = None;
    for p in points {
        if p.f1 > best.map_or(0.0, |b| b.f1) {
            best = Some(*p);
        }
    }
    best
}

/// The grid 0.01, ..., 0.99.
pub fn grid() -> Vec<f64> {
    (1..100).map(|i| i as f64 / 100.0).collect()
}

/// Whether a tag belongs to a sweep category (`all` = every tag, ratings included).
pub fn in_category(v: &VariantScores, tag: u32, category: &str) -> bool {
    let c = v.categories[tag as usize];
    match category {
        "all" => true,
        "general" => c == Some(Category::General),
        "character" => c == Some(Category::Character),
        _ => false,
    }
}

/// The pairs of a category over `images`: ratings (in `all`) are predicted by argmax, the
/// same at every threshold.
pub fn pairs(v: &VariantScores, images: &[usize], category: &str) -> Pairs {
    let keep: Vec<bool> = (0..v.tags.len() as u32)
        .map(|t| in_category(v, t, category))
        .collect();
    let mut out = Pairs::default();
    for &img in images {
        for e in &v.entries[img] {
            if !keep[e.tag as usize] {
                continue;
            }
            out.positives += e.y as u64;
            if v.is_rating(e.tag) {
                if v.top_rating[img] == Some(e.tag) {
                    if e.y {
                        out.fixed.0 += 1;
                    } else {
                        out.fixed.1 += 1;
                    }
                }
            } else {
                out.pairs.push((e.score, e.y));
            }
        }
    }
    out
}

/// Sweeps for `all`, `general` and `character` over the labelled images.
pub fn sweeps(v: &VariantScores) -> Vec<Sweep> {
    let images = v.labelled();
    ["all", "general", "character"]
        .iter()
        .map(|cat| {
            let p = pairs(v, &images, cat);
            let exact = curve_of(&p);
            let grid = at_thresholds(&exact, &p, &grid());
            Sweep {
                category: cat.to_string(),
                positives: p.positives,
                grid,
                break_even: break_even(&exact),
                best_f1: best_f1(&exact),
                curve_points: exact.len(),
            }
        })
        .collect()
}

/// Per-tag curves (non-rating tags with at least one positive among the labelled images).
pub fn tag_curves(v: &VariantScores) -> Vec<TagCurve> {
    let mut per: Vec<(Vec<(f32, bool)>, u64)> = vec![(Vec::new(), 0); v.tags.len()];
    for img in v.labelled() {
        for e in &v.entries[img] {
            let slot = &mut per[e.tag as usize];
            slot.0.push((e.score, e.y));
            slot.1 += e.y as u64;
        }
    }
    per.into_iter()
        .enumerate()
        .filter(|(t, (_, pos))| *pos > 0 && !v.is_rating(*t as u32))
        .map(|(t, (pairs, positives))| {
            let points = curve(pairs, positives);
            TagCurve {
                tag: v.tags[t].clone(),
                positives,
                best_f1: best_f1(&points),
                break_even: break_even(&points),
                points,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_break_even_and_best_f1() {
        // 0.9(+) 0.8(-) 0.7(+) 0.1(-), one unscored positive: 3 positives
        let pts = curve(
            vec![
                (0.9, true),
                (0.8, false),
                (0.7, true),
                (0.1, false),
                (0.0, true),
            ],
            3,
        );
        assert_eq!(pts.len(), 4);
        assert_eq!((pts[0].precision, pts[0].recall), (1.0, 1.0 / 3.0));
        assert_eq!((pts[2].precision, pts[2].recall), (2.0 / 3.0, 2.0 / 3.0));
        let be = break_even(&pts).unwrap();
        assert_eq!(be.threshold, 0.699999988079071); // f32 0.7, exactly equal there
        assert!((be.value - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(best_f1(&pts).unwrap().threshold, pts[2].threshold);
        // interpolation: d = +0.5 at 0.9 (P 1, R .5), d = -1/6 at 0.8 (P 2/3... )
        let pts = curve(vec![(0.9, true), (0.8, true), (0.5, false)], 2);
        assert_eq!(break_even(&pts).unwrap().value, 1.0);
    }
}
