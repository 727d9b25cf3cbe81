//! Multi-label metrics with exactly scikit-learn's definitions, computed from counts.
//!
//! Pure. With `zero_division=0`:
//! - per tag: precision = tp/(tp+fp), recall = tp/(tp+fn), F1 = 2PR/(P+R), each 0 when its
//!   denominator is 0; labels are those present in ground truth or predictions;
//! - micro: the same formulas over summed counts; macro: unweighted means over labels;
//! - samples: per image P = tp/|pred|, R = tp/|truth|, F1 = 2tp/(|pred|+|truth|), each 0 when
//!   its denominator is 0, averaged over all scored images;
//! - AP: `average_precision_score` (step-wise area under the precision–recall curve over
//!   distinct scores, missing scores = 0), mAP: mean AP over tags with at least one positive.
//!
//! Tests compare these against scikit-learn (`tests/metrics_parity.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::store::counts::{SampleCounts, TagCounts};

/// Precision, recall and F1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn div(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// P, R, F1 from counts (one tag, or summed counts for micro).
pub fn prf(tp: u64, fp: u64, fn_: u64) -> Prf {
    let (tp, fp, fn_) = (tp as f64, fp as f64, fn_ as f64);
    let precision = div(tp, tp + fp);
    let recall = div(tp, tp + fn_);
    Prf {
        precision,
        recall,
        f1: div(2.0 * tp, 2.0 * tp + fp + fn_),
    }
}

/// Micro average: P, R, F1 of the summed counts.
pub fn micro(tags: &[TagCounts]) -> Prf {
    let (tp, fp, fn_) = tags
        .iter()
        .fold((0, 0, 0), |(a, b, c), t| (a + t.tp, b + t.fp, c + t.fn_));
    prf(tp, fp, fn_)
}

/// Macro average: the mean of per-tag P, R, F1 over tags present in truth or predictions.
pub fn macro_avg(tags: &[TagCounts]) -> Prf {
    let present: Vec<Prf> = tags
        .iter()
        .filter(|t| t.tp + t.fp + t.fn_ > 0)
        .map(|t| prf(t.tp, t.fp, t.fn_))
        .collect();
    mean(&present)
}

/// Samples average over `n_images` images; images absent from `images` count as empty.
pub fn samples(images: &[SampleCounts], n_images: usize) -> Prf {
    if n_images == 0 {
        return Prf::default();
    }
    let mut sum = Prf::default();
    for s in images {
        let (tp, pred, truth) = (s.tp as f64, s.pred as f64, s.truth as f64);
        sum.precision += div(tp, pred);
        sum.recall += div(tp, truth);
        sum.f1 += div(2.0 * tp, pred + truth);
    }
    let n = n_images as f64;
    Prf {
        precision: sum.precision / n,
        recall: sum.recall / n,
        f1: sum.f1 / n,
    }
}

fn mean(items: &[Prf]) -> Prf {
    if items.is_empty() {
        return Prf::default();
    }
    let n = items.len() as f64;
    Prf {
        precision: items.iter().map(|p| p.precision).sum::<f64>() / n,
        recall: items.iter().map(|p| p.recall).sum::<f64>() / n,
        f1: items.iter().map(|p| p.f1).sum::<f64>() / n,
    }
}

/// Average precision from groups of equal score, in *descending* score order:
/// `(count, positives)` per distinct score. `None` when there are no positives.
pub fn average_precision(groups: impl IntoIterator<Item = (u64, u64)>) -> Option<f64> {
    let groups: Vec<(u64, u64)> = groups.into_iter().collect();
    let total_pos: u64 = groups.iter().map(|g| g.1).sum();
    if total_pos == 0 {
        return None;
    }
    let (mut tp, mut seen) = (0u64, 0u64);
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for (n, pos) in groups {
        tp += pos;
        seen += n;
        if pos == 0 {
            continue;
        }
        let recall = tp as f64 / total_pos as f64;
        let precision = tp as f64 / seen as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// Per-tag numbers in a report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerTag {
    pub tag: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
    pub ap: Option<f64>,
}

/// Everything for one variant at one threshold (`iw-lab metrics --json` entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantMetrics {
    pub variant: String,
    pub threshold: f64,
    pub micro: Prf,
    #[serde(rename = "macro")]
    pub macro_: Prf,
    pub samples: Prf,
    pub map: Option<f64>,
    /// Scored images.
    pub images: usize,
    /// Tags present in truth or predictions at this threshold.
    pub labels: usize,
    /// Must-not-predict tags (a prompt source's negative prompt), when the source has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative: Option<NegativeRate>,
    pub per_tag: Vec<PerTag>,
    /// 95% percentile bootstrap interval of micro F1 over the scored images (200 resamples,
    /// seed 0: the report's; `analysis::load`); none for fewer than two images or repeats
    /// scored as a mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1_micro_ci: Option<[f64; 2]>,
    /// False for variants that write captions: the tag metrics above do not apply to them.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub scores_tags: bool,
    /// Generative variants: what the judges and the other text metrics say.
    #[serde(default, flatten, skip_serializing_if = "TextMetrics::is_empty")]
    pub text: TextMetrics,
    /// Variants run `repeats: N > 1` times: how the repeats were scored, and the spread of
    /// the per-repeat metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<RepeatStats>,
    /// When the run's variants were scored on different images (some failed on some), the
    /// goal metric on the images every variant shares: what picks the winner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedScore>,
}

/// How a variant's repeats were scored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RepeatStats {
    /// Repeats scored.
    pub n: u32,
    /// `mean` (of per-repeat metrics, the default) or `union` (of the repeats' answers).
    pub scored_as: String,
    /// Sample standard deviation of per-repeat metrics (`f1_micro`, ...); empty for `union`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sd: BTreeMap<String, f64>,
}

impl RepeatStats {
    /// Repeats scored as the union of their answers.
    pub fn union(n: u32) -> RepeatStats {
        RepeatStats {
            n,
            scored_as: "union".into(),
            sd: BTreeMap::new(),
        }
    }
}

/// The goal metric on the images every variant of the run was scored on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharedScore {
    /// The goal metric's name.
    pub metric: String,
    pub value: f64,
    /// Images shared by every variant.
    pub images: usize,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// Judge scores, caption similarity, stability across repeats and generation costs of a
/// variant (the same for each of its thresholds).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextMetrics {
    /// Mean over the judges of each judge's mean score (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_score: Option<f64>,
    /// Per judge: mean score, interval, valid and invalid verdicts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub judges: BTreeMap<String, JudgeSummary>,
    /// Mean cosine similarity of captions to their reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption_similarity: Option<f64>,
    /// Agreement of an image's repeats: mean pairwise Jaccard of tag sets, or mean pairwise
    /// caption similarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// Calls, tokens and cost of the variant's own outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationStats>,
}

impl TextMetrics {
    pub fn is_empty(&self) -> bool {
        *self == TextMetrics::default()
    }

    /// A text metric (`None` for tag metrics and for what was not measured).
    pub fn get(&self, metric: crate::config::Metric) -> Option<f64> {
        use crate::config::Metric::*;
        match metric {
            JudgeScore => self.judge_score,
            CaptionSimilarity => self.caption_similarity,
            Stability => self.stability,
            _ => None,
        }
    }
}

/// One judge's verdicts on one variant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JudgeSummary {
    /// Mean score of the valid verdicts (0–1); `None` when there is none.
    pub mean: Option<f64>,
    /// 95% bootstrap interval of the mean over the judged outputs (image × repeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<[f64; 2]>,
    /// Verdicts that parsed.
    pub valid: u64,
    /// Verdicts that did not parse: counted, never scored.
    pub invalid: u64,
    /// Judge calls that failed (transport, server errors).
    #[serde(default)]
    pub failed: u64,
    /// Pairwise judges: answers that picked the same output in both orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<f64>,
}

/// Calls, tokens and cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GenerationStats {
    pub outputs: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// In the currency of the model's `prices` (absent without prices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// How often a variant predicts tags the prompt's negative prompt asked to keep out.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct NegativeRate {
    /// (image, negative tag) pairs over the scored images.
    pub pairs: u64,
    /// Those pairs whose tag the variant predicted.
    pub predicted: u64,
    /// `predicted / pairs` (0 when there are no pairs): the false-positive rate.
    pub fp_rate: f64,
}

impl VariantMetrics {
    /// A named metric (`f1_micro`, `map`, ...).
    pub fn get(&self, metric: crate::config::Metric) -> Option<f64> {
        use crate::config::Metric::*;
        if metric.of_text() {
            return self.text.get(metric);
        }
        if !self.scores_tags {
            // A caption variant's tag metrics are not scores of anything.
            return None;
        }
        Some(match metric {
            F1Micro => self.micro.f1,
            F1Macro => self.macro_.f1,
            F1Samples => self.samples.f1,
            PrecisionMicro => self.micro.precision,
            PrecisionMacro => self.macro_.precision,
            PrecisionSamples => self.samples.precision,
            RecallMicro => self.micro.recall,
            RecallMacro => self.macro_.recall,
            RecallSamples => self.samples.recall,
            Map => return self.map,
            JudgeScore | CaptionSimilarity | Stability => {
                unreachable!("text metrics returned above")
            }
        })
    }
}

/// Assembles one entry from its counts and the variant's per-tag APs.
pub fn assemble(
    variant: &str,
    threshold: f64,
    mut tags: Vec<TagCounts>,
    images: &[SampleCounts],
    n_images: usize,
    ap: &std::collections::HashMap<String, f64>,
) -> VariantMetrics {
    tags.retain(|t| t.tp + t.fp + t.fn_ > 0);
    let map = if ap.is_empty() {
        None
    } else {
        Some(ap.values().sum::<f64>() / ap.len() as f64)
    };
    let mut per_tag: Vec<PerTag> = tags
        .iter()
        .map(|t| {
            let p = prf(t.tp, t.fp, t.fn_);
            PerTag {
                tag: t.tag.clone(),
                precision: p.precision,
                recall: p.recall,
                f1: p.f1,
                support: t.tp + t.fn_,
                ap: ap.get(&t.tag).copied(),
            }
        })
        .collect();
    per_tag.sort_by(|a, b| b.support.cmp(&a.support).then_with(|| a.tag.cmp(&b.tag)));
    VariantMetrics {
        variant: variant.to_string(),
        threshold,
        micro: micro(&tags),
        macro_: macro_avg(&tags),
        samples: samples(images, n_images),
        map,
        images: n_images,
        labels: tags.len(),
        negative: None,
        per_tag,
        f1_micro_ci: None,
        scores_tags: true,
        text: TextMetrics::default(),
        repeats: None,
        shared: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // scores 0.9(+) 0.8(-) 0.7(+) 0.0(+): P at recalls 1/3, 2/3, 1: 1, 2/3, 3/4
        let ap = average_precision([(1, 1), (1, 0), (1, 1), (1, 1)]).unwrap();
        assert!(close(ap, (1.0 + 2.0 / 3.0 + 0.75) / 3.0));
        // a tie group containing a positive and a negative
        let ap = average_precision([(2, 1), (1, 1)]).unwrap();
        assert!(close(ap, 0.5 * 0.5 + 0.5 * (2.0 / 3.0)));
        assert_eq!(average_precision([(3, 0)]), None);
    }

    #[test]
    fn zero_division_is_zero() {
        assert_eq!(
            prf(0, 0, 3),
            Prf {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0
            }
        );
        let s = samples(
            &[SampleCounts {
                tp: 0,
                pred: 0,
                truth: 0,
            }],
            2,
        );
        assert_eq!(s, Prf::default());
    }
}
