//! Tag statistics: frequencies in ground truth and predictions, ground-truth co-occurrence
//! with PMI and lift, the most frequent false positives and false negatives, and vocabulary
//! coverage (ground-truth tags a variant never output at all, apart from ordinary misses).

use serde::Serialize;

use super::eval::{at_threshold, count};
use super::scores::VariantScores;
use crate::store::truth::PairCounts;

/// A tag's frequency.
#[derive(Debug, Clone, Serialize)]
pub struct Frequency {
    pub tag: String,
    /// Labelled images with the tag in the ground truth.
    pub truth: u64,
    /// Labelled images the variant predicts it for (at the threshold).
    pub predicted: u64,
}

/// A tag with a count.
#[derive(Debug, Clone, Serialize)]
pub struct TagCount {
    pub tag: String,
    pub count: u64,
}

/// Ground-truth tags the variant never output (no stored score for any image).
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// Distinct ground-truth tags over the labelled images.
    pub truth_tags: usize,
    /// Those the variant output for at least one image.
    pub covered: usize,
    /// The others, with their support, largest first.
    pub never_output: Vec<TagCount>,
    /// False negatives on never-output tags.
    pub misses_never_output: u64,
    /// All other false negatives.
    pub misses_ordinary: u64,
}

/// A variant's tag statistics at one threshold.
#[derive(Debug, Clone, Serialize)]
pub struct TagStats {
    pub variant: String,
    pub threshold: f64,
    /// The `top` most frequent in ground truth or predictions (by truth + predicted).
    pub frequencies: Vec<Frequency>,
    pub false_positives: Vec<TagCount>,
    pub false_negatives: Vec<TagCount>,
    pub coverage: Coverage,
}

fn top_counts(mut v: Vec<TagCount>, top: usize) -> Vec<TagCount> {
    v.retain(|c| c.count > 0);
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.tag.cmp(&b.tag)));
    v.truncate(top);
    v
}

/// Tag statistics over the labelled images.
pub fn tag_stats(v: &VariantScores, threshold: f64, top: usize) -> TagStats {
    let images = v.labelled();
    let c = count(v, &images, |img| at_threshold(v, img, threshold));
    let mut freq: Vec<Frequency> = c
        .tags
        .iter()
        .map(|t| Frequency {
            tag: t.tag.clone(),
            truth: t.tp + t.fn_,
            predicted: t.tp + t.fp,
        })
        .filter(|f| f.truth + f.predicted > 0)
        .collect();
    freq.sort_by(|a, b| {
        (b.truth + b.predicted)
            .cmp(&(a.truth + a.predicted))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    freq.truncate(top);
    let fp = top_counts(
        c.tags
            .iter()
            .map(|t| TagCount {
                tag: t.tag.clone(),
                count: t.fp,
            })
            .collect(),
        top,
    );
    let fn_ = top_counts(
        c.tags
            .iter()
            .map(|t| TagCount {
                tag: t.tag.clone(),
                count: t.fn_,
            })
            .collect(),
        top,
    );
    let mut never = Vec::new();
    let (mut truth_tags, mut m_never, mut m_ord) = (0, 0, 0);
    for (k, t) in c.tags.iter().enumerate() {
        if t.tp + t.fn_ == 0 {
            continue;
        }
        truth_tags += 1;
        if v.categories[k].is_none() {
            never.push(TagCount {
                tag: t.tag.clone(),
                count: t.tp + t.fn_,
            });
            m_never += t.fn_;
        } else {
            m_ord += t.fn_;
        }
    }
    let never = top_counts(never, usize::MAX);
    TagStats {
        variant: v.variant.clone(),
        threshold,
        frequencies: freq,
        false_positives: fp,
        false_negatives: fn_,
        coverage: Coverage {
            truth_tags,
            covered: truth_tags - never.len(),
            never_output: never,
            misses_never_output: m_never,
            misses_ordinary: m_ord,
        },
    }
}

/// Two ground-truth tags that occur together.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    /// Labelled images with both.
    pub count: u64,
    pub count_a: u64,
    pub count_b: u64,
    /// ln(p(a,b) / (p(a)·p(b))), p = count / labelled images.
    pub pmi: f64,
    /// p(a,b) / (p(a)·p(b)).
    pub lift: f64,
}

/// Ground-truth co-occurrence over the labelled images.
#[derive(Debug, Clone, Serialize)]
pub struct Cooccurrence {
    /// Labelled images (N in the formulas).
    pub images: u64,
    /// Pairs counted in at least `min_count` images.
    pub min_count: u64,
    /// The `top` pairs by count (ties: by a, then b).
    pub pairs: Vec<Pair>,
}

/// Sample standard deviation (n − 1 in the denominator); 0 for fewer than two values.
pub fn sample_sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// Lift and PMI from counts (`n` images).
pub fn lift_pmi(count: u64, count_a: u64, count_b: u64, n: u64) -> (f64, f64) {
    let lift = (count as f64 * n as f64) / (count_a as f64 * count_b as f64);
    (lift, lift.ln())
}

/// Co-occurrence, with lift and PMI, from the pairs the store counted (`store::truth`) in at
/// least `min_count` images.
pub fn cooccurrence(counted: PairCounts, min_count: u64) -> Cooccurrence {
    let n = counted.images;
    let pairs = counted
        .pairs
        .into_iter()
        .map(|p| {
            let (lift, pmi) = lift_pmi(p.count, p.count_a, p.count_b, n);
            Pair {
                a: p.a,
                b: p.b,
                count: p.count,
                count_a: p.count_a,
                count_b: p.count_b,
                pmi,
                lift,
            }
        })
        .collect();
    Cooccurrence {
        images: n,
        min_count,
        pairs,
    }
}
