//! Scoring a set of decisions (predicted tags per image) over some of a variant's images, with
//! the metric definitions of `metrics` (scikit-learn's, `zero_division=0`). Pure.

use serde::Serialize;

use super::metrics::{macro_avg, micro, samples, Prf, SampleCounts, TagCounts};
use super::scores::VariantScores;

/// Micro, macro and samples averages of one set of decisions.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub micro: Prf,
    #[serde(rename = "macro")]
    pub macro_: Prf,
    pub samples: Prf,
    /// Scored images.
    pub images: usize,
    /// Tags present in truth or predictions.
    pub labels: usize,
    /// Mean number of predicted tags per image (ratings included).
    pub mean_tags: f64,
}

/// Per-tag counts (by tag index) and per-image counts of one set of decisions.
pub struct Counts {
    pub tags: Vec<TagCounts>,
    pub images: Vec<SampleCounts>,
}

/// Counts over `images` (indices into `v.images`); `decide(img)` returns the predicted tag
/// indices of image `img` (each at most once).
pub fn count(v: &VariantScores, images: &[usize], decide: impl Fn(usize) -> Vec<u32>) -> Counts {
    let mut tags: Vec<TagCounts> = v
        .tags
        .iter()
        .map(|t| TagCounts {
            tag: t.clone(),
            ..Default::default()
        })
        .collect();
    let mut per_image = Vec::with_capacity(images.len());
    let mut mark = vec![false; v.tags.len()];
    for &img in images {
        let pred = decide(img);
        for &p in &pred {
            mark[p as usize] = true;
        }
        let mut s = SampleCounts {
            pred: pred.len() as u64,
            ..Default::default()
        };
        for e in &v.entries[img] {
            if e.y {
                s.truth += 1;
                if mark[e.tag as usize] {
                    s.tp += 1;
                    tags[e.tag as usize].tp += 1;
                } else {
                    tags[e.tag as usize].fn_ += 1;
                }
            }
        }
        for &p in &pred {
            if mark[p as usize] {
                // a predicted tag without y in the entries is a false positive
                let y = v.entries[img]
                    .binary_search_by_key(&p, |e| e.tag)
                    .is_ok_and(|k| v.entries[img][k].y);
                if !y {
                    tags[p as usize].fp += 1;
                }
                mark[p as usize] = false;
            }
        }
        per_image.push(s);
    }
    Counts {
        tags,
        images: per_image,
    }
}

/// The averages of some counts.
pub fn scores(c: &Counts) -> Scores {
    let n = c.images.len();
    Scores {
        micro: micro(&c.tags),
        macro_: macro_avg(&c.tags),
        samples: samples(&c.images, n),
        images: n,
        labels: c.tags.iter().filter(|t| t.tp + t.fp + t.fn_ > 0).count(),
        mean_tags: if n == 0 {
            0.0
        } else {
            c.images.iter().map(|s| s.pred as f64).sum::<f64>() / n as f64
        },
    }
}

/// The tags predicted for image `img` at threshold `t` (ratings by argmax), as `iw-lab metrics`.
pub fn at_threshold(v: &VariantScores, img: usize, t: f64) -> Vec<u32> {
    v.entries[img]
        .iter()
        .filter(|e| v.predicted(img, e, t))
        .map(|e| e.tag)
        .collect()
}
