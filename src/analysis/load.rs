//! Metrics of a run from its counts: what to score of each variant ([`Scored`]), the units
//! counted for them ([`units`], counted in DuckDB by `store::counts`, where the decisions of
//! what is predicted and what is scored are stated), and the metrics assembled from the
//! counts ([`metrics`]). Pure.
//!
//! A variant run `repeats: N` times is scored, by default, as the mean of its N per-repeat
//! metrics, with their standard deviation ([`RepeatStats`]); `score_repeats: union` scores the
//! union of the repeats' answers instead (a tag's highest score over the repeats), which favours
//! recall over what one repeat would give.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use super::bootstrap::LEADERBOARD as LEADERBOARD_CI;
use super::metrics::{assemble, average_precision, NegativeRate, Prf, RepeatStats, VariantMetrics};
use crate::store::counts::{Counted, NegativeCounts, ScoreGroup, Unit};

/// What to score of one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub variant: String,
    pub thresholds: Vec<f64>,
    /// Times each image was run.
    pub repeats: u32,
    /// Score the union of the repeats' answers instead of the mean of per-repeat metrics.
    pub union: bool,
}

impl Scored {
    /// One repeat (or the union of several).
    pub fn new(variant: &str, thresholds: Vec<f64>) -> Scored {
        Scored {
            variant: variant.to_string(),
            thresholds,
            repeats: 1,
            union: false,
        }
    }

    /// A run's variant, as its manifest records it, at `thresholds`.
    pub fn of(v: &crate::store::manifest::VariantInfo, thresholds: Vec<f64>) -> Scored {
        Scored {
            variant: v.name.clone(),
            thresholds,
            repeats: v.repeats,
            union: v.score_repeats == crate::config::files::ScoreRepeats::Union,
        }
    }

    /// Whether each repeat is scored apart (then averaged).
    fn per_repeat(&self) -> bool {
        self.repeats > 1 && !self.union
    }
}

/// The name a repeat is scored under while its metrics are counted.
fn repeat_name(variant: &str, repeat: u32) -> String {
    format!("{variant}\u{1f}{repeat}")
}

/// The units counted for `variants` (`store::counts::count`): each repeat of a variant scored
/// per repeat is a unit of its own; any other variant is one unit.
pub fn units(variants: &[Scored]) -> Vec<Unit> {
    let mut units = Vec::new();
    for s in variants {
        let repeats: Vec<Option<u32>> = if s.per_repeat() {
            (0..s.repeats).map(Some).collect()
        } else {
            vec![None]
        };
        units.extend(repeats.into_iter().map(|repeat| Unit {
            name: repeat.map_or_else(|| s.variant.clone(), |r| repeat_name(&s.variant, r)),
            thresholds: s.thresholds.clone(),
            variant: s.variant.clone(),
            repeat,
        }));
    }
    units
}

/// Metrics for each (variant, threshold) of `variants`, from the counts of their [`units`];
/// with `intervals`, each with its leaderboard interval of micro F1 (`f1_micro_ci`; not for
/// repeats scored as a mean, which show their spread instead).
pub fn metrics(variants: &[Scored], counted: &Counted, intervals: bool) -> Vec<VariantMetrics> {
    let mut out = combine_repeats(variants, unit_metrics(&units(variants), counted));
    if intervals {
        // one resampling per row, 200 × images draws each: side by side
        out.par_iter_mut()
            .filter(|m| m.repeats.as_ref().is_none_or(|r| r.scored_as == "union"))
            .for_each(|m| {
                let key = (m.variant.clone(), m.threshold.to_bits());
                let samples = counted.samples.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                m.f1_micro_ci = super::bootstrap::f1_micro_interval(samples, LEADERBOARD_CI)
                    .map(|i| [i.low, i.high]);
            });
    }
    out
}

/// The metrics of each unit and threshold, before repeats are averaged.
fn unit_metrics(units: &[Unit], counted: &Counted) -> Vec<VariantMetrics> {
    let ap = tag_ap(counted);
    let empty = HashMap::new();
    let mut out = Vec::new();
    for unit in units {
        for &t in &unit.thresholds {
            let key = (unit.name.clone(), t.to_bits());
            let tags = counted.tags.get(&key).cloned().unwrap_or_default();
            let samples = counted.samples.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let n = counted.images.get(&unit.name).copied().unwrap_or(0);
            let unit_ap = ap.get(&unit.name).unwrap_or(&empty);
            let mut m = assemble(&unit.name, t, tags, samples, n, unit_ap);
            if let Some(rates) = &counted.negative {
                m.negative = Some(negative_rate(rates.get(&key).copied().unwrap_or_default()));
            }
            out.push(m);
        }
    }
    out
}

/// The false-positive rate on negative tags.
fn negative_rate(c: NegativeCounts) -> NegativeRate {
    NegativeRate {
        pairs: c.pairs,
        predicted: c.predicted,
        fp_rate: if c.pairs == 0 {
            0.0
        } else {
            c.predicted as f64 / c.pairs as f64
        },
    }
}

/// AP per (unit, tag) for tags with at least one positive; images without a stored score for
/// the tag join the score-0 group.
fn tag_ap(counted: &Counted) -> HashMap<String, HashMap<String, f64>> {
    let mut out: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for s in &counted.ap_groups {
        let mut groups = s.groups.clone();
        let seen: u64 = groups.iter().map(|g| g.images).sum();
        let images = counted.images.get(&s.unit).copied().unwrap_or(0) as u64;
        let missing = images.saturating_sub(seen);
        if missing > 0 {
            match groups.last_mut() {
                Some(last) if last.score <= 0.0 => last.images += missing,
                _ => groups.push(ScoreGroup {
                    score: 0.0,
                    images: missing,
                    positives: 0,
                }),
            }
        }
        if let Some(ap) = average_precision(groups.iter().map(|g| (g.images, g.positives))) {
            out.entry(s.unit.clone())
                .or_default()
                .insert(s.tag.clone(), ap);
        }
    }
    out
}

/// Averages the per-repeat metrics of variants scored per repeat (mean of each metric, with
/// the standard deviation of the headline ones); other variants pass through.
fn combine_repeats(variants: &[Scored], mut per_unit: Vec<VariantMetrics>) -> Vec<VariantMetrics> {
    let mut out = Vec::new();
    for s in variants {
        if !s.per_repeat() {
            if let Some(i) = per_unit.iter().position(|m| m.variant == s.variant) {
                out.extend(
                    per_unit
                        .extract_if(i.., |m| m.variant == s.variant)
                        .map(|mut m| {
                            if s.repeats > 1 {
                                m.repeats = Some(RepeatStats::union(s.repeats));
                            }
                            m
                        }),
                );
            }
            continue;
        }
        for &t in &s.thresholds {
            let names: Vec<String> = (0..s.repeats).map(|r| repeat_name(&s.variant, r)).collect();
            let per: Vec<&VariantMetrics> = per_unit
                .iter()
                .filter(|m| m.threshold == t && names.contains(&m.variant))
                .collect();
            if !per.is_empty() {
                out.push(mean_of(&s.variant, t, &per));
            }
        }
    }
    out
}

/// The mean of per-repeat metrics (see `docs/metrics.md`, "Repeats").
fn mean_of(variant: &str, threshold: f64, per: &[&VariantMetrics]) -> VariantMetrics {
    let n = per.len() as f64;
    let mean = |f: &dyn Fn(&VariantMetrics) -> f64| per.iter().map(|m| f(m)).sum::<f64>() / n;
    let prf = |f: &dyn Fn(&VariantMetrics) -> Prf| Prf {
        precision: mean(&|m| f(m).precision),
        recall: mean(&|m| f(m).recall),
        f1: mean(&|m| f(m).f1),
    };
    let maps: Vec<f64> = per.iter().filter_map(|m| m.map).collect();
    let mut tags: BTreeMap<&str, (f64, f64, f64, u64, Vec<f64>)> = BTreeMap::new();
    for m in per {
        for t in &m.per_tag {
            let e = tags.entry(t.tag.as_str()).or_default();
            e.0 += t.precision;
            e.1 += t.recall;
            e.2 += t.f1;
            e.3 = e.3.max(t.support);
            e.4.extend(t.ap);
        }
    }
    let mut per_tag: Vec<super::metrics::PerTag> = tags
        .into_iter()
        .map(|(tag, (p, r, f, support, aps))| super::metrics::PerTag {
            tag: tag.to_string(),
            precision: p / n,
            recall: r / n,
            f1: f / n,
            support,
            ap: (!aps.is_empty()).then(|| aps.iter().sum::<f64>() / aps.len() as f64),
        })
        .collect();
    per_tag.sort_by(|a, b| b.support.cmp(&a.support).then_with(|| a.tag.cmp(&b.tag)));
    let negative = per[0].negative.map(|first| NegativeRate {
        pairs: first.pairs,
        predicted: mean(&|m| m.negative.map_or(0.0, |x| x.predicted as f64)).round() as u64,
        fp_rate: mean(&|m| m.negative.map_or(0.0, |x| x.fp_rate)),
    });
    let values = |f: &dyn Fn(&VariantMetrics) -> f64| per.iter().map(|m| f(m)).collect::<Vec<_>>();
    let mut sd = BTreeMap::new();
    for (name, xs) in [
        ("f1_micro", values(&|m| m.micro.f1)),
        ("f1_macro", values(&|m| m.macro_.f1)),
        ("f1_samples", values(&|m| m.samples.f1)),
        ("precision_micro", values(&|m| m.micro.precision)),
        ("recall_micro", values(&|m| m.micro.recall)),
    ] {
        sd.insert(name.to_string(), super::stats::sample_sd(&xs));
    }
    if maps.len() == per.len() {
        sd.insert("map".into(), super::stats::sample_sd(&maps));
    }
    VariantMetrics {
        variant: variant.to_string(),
        threshold,
        micro: prf(&|m| m.micro),
        macro_: prf(&|m| m.macro_),
        samples: prf(&|m| m.samples),
        map: (!maps.is_empty()).then(|| maps.iter().sum::<f64>() / maps.len() as f64),
        images: per.iter().map(|m| m.images).max().unwrap_or(0),
        labels: mean(&|m| m.labels as f64).round() as usize,
        negative,
        per_tag,
        f1_micro_ci: None,
        scores_tags: true,
        text: Default::default(),
        repeats: Some(RepeatStats {
            n: per.len() as u32,
            scored_as: "mean".into(),
            sd,
        }),
        shared: None,
    }
}
