//! Judge statistics: verdict rows in, text metrics and agreement out. Pure.
//!
//! A cell's judge score is the mean of its valid verdicts (a pairwise judge gives two, one per
//! order); a judge's score for a variant is the mean over the variant's judged cells, with a
//! 95% bootstrap interval. Agreement is Krippendorff's alpha (interval) between judges on the
//! cells they share, Pearson's r of a judge's scores against each cell's F1 on the ground truth
//! (tag outputs), and both against human scores when a judge has them.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use super::agreement;
use super::bootstrap::{percentile, SplitMix64};
use super::metrics::{GenerationStats, JudgeSummary, TextMetrics};
use crate::config::{Judge, Verdict};
use crate::store::judgments::{Generation, Verdict as Row};

/// (judge, variant, path, repeat).
pub type CellId = (String, String, String, u32);

/// Verdicts gathered per judged cell.
#[derive(Debug, Default)]
pub struct Tallied {
    /// The scores of each cell's valid verdicts.
    pub cells: BTreeMap<CellId, Vec<f64>>,
    /// (judge, variant) → (valid, invalid) verdicts.
    pub counts: BTreeMap<(String, String), (u64, u64)>,
}

impl Tallied {
    /// Gathers verdict rows.
    pub fn of(rows: &[Row]) -> Tallied {
        let mut t = Tallied::default();
        for r in rows {
            let e = t
                .counts
                .entry((r.judge.clone(), r.variant.clone()))
                .or_default();
            if !r.valid {
                e.1 += 1;
                continue;
            }
            e.0 += 1;
            if let Some(s) = r.score {
                t.cells
                    .entry((r.judge.clone(), r.variant.clone(), r.path.clone(), r.repeat))
                    .or_default()
                    .push(s);
            }
        }
        t
    }

    /// A cell's score: the mean of its verdicts.
    pub fn score(&self, id: &CellId) -> Option<f64> {
        self.cells.get(id).map(|s| mean(s))
    }

    /// The cell scores of `judge` on `variant`, by path and repeat.
    fn of_variant(&self, judge: &str, variant: &str) -> Vec<f64> {
        self.cells
            .range((judge.to_string(), variant.to_string(), String::new(), 0)..)
            .take_while(|((j, v, _, _), _)| j == judge && v == variant)
            .map(|(_, s)| mean(s))
            .collect()
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn mean_of(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| mean(xs))
}

/// Each variant's judge summaries, with its overall judge score (the mean over LLM judges)
/// and caption similarity (the mean over similarity judges). `failures` are judge failures
/// counted by (judge, variant).
pub fn summaries(
    judges: &[Judge],
    rows: &[Row],
    failures: &[(String, String, u64)],
) -> BTreeMap<String, TextMetrics> {
    let t = Tallied::of(rows);
    let mut out: BTreeMap<String, TextMetrics> = BTreeMap::new();
    for judge in judges {
        for v in &judge.variants {
            let per_cell = t.of_variant(&judge.name, v);
            let (valid, invalid) = t
                .counts
                .get(&(judge.name.clone(), v.clone()))
                .copied()
                .unwrap_or_default();
            let failed = failures
                .iter()
                .filter(|(j, vv, _)| j == &judge.name && vv == v)
                .map(|(_, _, n)| n)
                .sum();
            let s = JudgeSummary {
                mean: mean_of(&per_cell),
                ci: bootstrap_mean_ci(&per_cell),
                valid,
                invalid,
                failed,
                consistency: judge
                    .pairwise
                    .as_ref()
                    .map(|_| pairwise_consistency(rows, &judge.name, v)),
            };
            out.entry(v.clone())
                .or_default()
                .judges
                .insert(judge.name.clone(), s);
        }
    }
    let similarity: HashSet<&str> = judges
        .iter()
        .filter(|j| matches!(j.verdict, Verdict::Similarity))
        .map(|j| j.name.as_str())
        .collect();
    for tm in out.values_mut() {
        let means = |sim: bool| -> Vec<f64> {
            tm.judges
                .iter()
                .filter(|(j, _)| similarity.contains(j.as_str()) == sim)
                .filter_map(|(_, s)| s.mean)
                .collect()
        };
        tm.judge_score = mean_of(&means(false));
        tm.caption_similarity = mean_of(&means(true));
    }
    out
}

/// Adds each variant's generation totals.
pub fn add_generation(out: &mut BTreeMap<String, TextMetrics>, rows: &[Generation]) {
    for g in rows {
        out.entry(g.variant.clone()).or_default().generation = Some(GenerationStats {
            outputs: g.outputs,
            prompt_tokens: g.prompt_tokens,
            completion_tokens: g.completion_tokens,
            cost: g.cost,
        });
    }
}

/// The share of a pairwise judge's comparisons (cells with both orders valid) whose two
/// orders gave the same score; 0 when there is none.
pub fn pairwise_consistency(rows: &[Row], judge: &str, variant: &str) -> f64 {
    let mut by_cell: BTreeMap<(&str, u32), Vec<f64>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.judge == judge && r.variant == variant && r.valid)
    {
        by_cell
            .entry((r.path.as_str(), r.repeat))
            .or_default()
            .extend(r.score);
    }
    let same: Vec<f64> = by_cell
        .values()
        .filter(|s| s.len() == 2)
        .map(|s| f64::from(u8::from((s[0] - s[1]).abs() < 1e-9)))
        .collect();
    mean_of(&same).unwrap_or(0.0)
}

/// The mean similarity of an image's repeats: pairwise cosine of unit vectors.
pub fn mean_pairwise_cosine(vectors: &[Vec<f32>]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0.0;
    for a in 0..vectors.len() {
        for b in a + 1..vectors.len() {
            sum += crate::engine::embedding::cosine(&vectors[a], &vectors[b]) as f64;
            n += 1.0;
        }
    }
    sum / n
}

/// A caption's words, lowercased, without surrounding punctuation (for stability without an
/// embedding model).
pub fn caption_words(caption: &str) -> HashSet<String> {
    caption
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|ch: char| !ch.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// One judged cell of a tag-writing variant, with the image's ground truth.
pub struct TagCell<'a> {
    pub variant: &'a str,
    pub path: &'a str,
    pub repeat: u32,
    pub tags: Vec<&'a str>,
    pub truth: &'a [String],
}

/// F1 of a tag set against the truth (1 when both are empty).
fn f1(pred: &HashSet<&str>, truth: &HashSet<&str>) -> f64 {
    if pred.len() + truth.len() == 0 {
        return 1.0;
    }
    let tp = pred.intersection(truth).count() as f64;
    2.0 * tp / (pred.len() + truth.len()) as f64
}

/// One row of a judge's human scores: the file, the variant (when the file names one), and
/// the score on the judge's scale.
pub struct HumanScore {
    pub file: String,
    pub variant: Option<String>,
    pub score: f64,
}

/// Agreement between judges (with two or more), of each judge with the ground truth (over
/// `tagged`, tag outputs of judged variants with truth), and with humans (`human`, per judge
/// name).
pub fn agreement(
    judges: &[Judge],
    rows: &[Row],
    tagged: &[TagCell<'_>],
    human: &BTreeMap<String, Vec<HumanScore>>,
) -> Value {
    let t = Tallied::of(rows);
    let mut doc = json!({});
    if judges.len() >= 2 {
        let (alpha, units) = between_judges(judges, &t);
        doc["judge_alpha"] = json!(alpha);
        doc["judges"] = json!(judges.iter().map(|j| &j.name).collect::<Vec<_>>());
        doc["units"] = json!(units);
    }
    let mut with_truth = serde_json::Map::new();
    for judge in judges {
        let (xs, ys) = against_truth(judge, &t, tagged);
        if xs.len() >= 3 {
            with_truth.insert(
                judge.name.clone(),
                json!({"pearson_vs_f1": pearson(&xs, &ys), "cells": xs.len()}),
            );
        }
        if let Some(scores) = human.get(&judge.name) {
            doc["judge_vs_human"][&judge.name] = against_humans(judge, &t, scores);
        }
    }
    if !with_truth.is_empty() {
        doc["judge_vs_truth"] = Value::Object(with_truth);
    }
    doc
}

/// Krippendorff's alpha (interval, on 0–1 scores) between judges over the cells any of them
/// judged, and the number of those cells.
fn between_judges(judges: &[Judge], t: &Tallied) -> (Option<f64>, usize) {
    let mut units: BTreeMap<(&str, &str, u32), Vec<Option<f64>>> = BTreeMap::new();
    for (ji, j) in judges.iter().enumerate() {
        for ((jn, v, p, r), s) in &t.cells {
            if jn == &j.name {
                let e = units
                    .entry((v, p, *r))
                    .or_insert_with(|| vec![None; judges.len()]);
                e[ji] = Some(mean(s));
            }
        }
    }
    let data: Vec<Vec<Option<f64>>> = (0..judges.len())
        .map(|ji| units.values().map(|u| u[ji]).collect())
        .collect();
    (
        agreement::krippendorff_alpha(&data, agreement::Level::Interval),
        units.len(),
    )
}

/// A judge's cell scores paired with the cells' F1 on the truth.
fn against_truth(judge: &Judge, t: &Tallied, tagged: &[TagCell<'_>]) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for c in tagged
        .iter()
        .filter(|c| judge.variants.iter().any(|v| v == c.variant))
    {
        let id = (
            judge.name.clone(),
            c.variant.to_string(),
            c.path.to_string(),
            c.repeat,
        );
        let Some(s) = t.score(&id) else {
            continue;
        };
        let pred: HashSet<&str> = c.tags.iter().copied().collect();
        let truth: HashSet<&str> = c.truth.iter().map(String::as_str).collect();
        xs.push(s);
        ys.push(f1(&pred, &truth));
    }
    (xs, ys)
}

/// Alpha and Pearson's r of a judge's cell scores against human scores (normalised to 0–1 on
/// the judge's scale), over the cells both scored.
fn against_humans(judge: &Judge, t: &Tallied, scores: &[HumanScore]) -> Value {
    let (lo, hi) = match &judge.verdict {
        Verdict::Choices(c) => (
            c.iter().map(|x| x.1).fold(f64::INFINITY, f64::min),
            c.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max),
        ),
        Verdict::Scale { min, max } => (*min, *max),
        Verdict::Similarity => (0.0, 1.0),
    };
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for h in scores {
        let y = if hi > lo {
            (h.score - lo) / (hi - lo)
        } else {
            h.score
        };
        for ((j, v, p, _), s) in &t.cells {
            if j == &judge.name && p == &h.file && h.variant.as_ref().is_none_or(|hv| hv == v) {
                xs.push(mean(s));
                ys.push(y);
            }
        }
    }
    let data = vec![
        xs.iter().map(|x| Some(*x)).collect(),
        ys.iter().map(|y| Some(*y)).collect(),
    ];
    json!({
        "alpha": agreement::krippendorff_alpha(&data, agreement::Level::Interval),
        "pearson": pearson(&xs, &ys),
        "cells": xs.len(),
    })
}

/// Pearson's correlation; `None` for fewer than 2 pairs or a constant side.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// 95% percentile bootstrap interval of the mean over images: 1,000 resamples, seed 0, with
/// the generator and percentiles of `analysis::bootstrap`.
pub fn bootstrap_mean_ci(xs: &[f64]) -> Option<[f64; 2]> {
    if xs.len() < 2 {
        return None;
    }
    let mut rng = SplitMix64(0);
    let mut means: Vec<f64> = (0..1000)
        .map(|_| (0..xs.len()).map(|_| xs[rng.below(xs.len())]).sum::<f64>() / xs.len() as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Some([percentile(&means, 0.025), percentile(&means, 0.975)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_of_a_mean_matches_the_normal_approximation() {
        // 100 verdicts, half 1 and half 0: the mean's standard error is 0.05, so the 95%
        // interval is about 0.5 ± 0.098 (a 1,000-resample percentile interval is within
        // ±0.02 of that).
        let xs: Vec<f64> = (0..100).map(|i| (i % 2) as f64).collect();
        let [lo, hi] = bootstrap_mean_ci(&xs).unwrap();
        assert!(
            (lo - 0.402).abs() < 0.02 && (hi - 0.598).abs() < 0.02,
            "{lo} {hi}"
        );
        // constant verdicts: no spread; one verdict: no interval
        assert_eq!(bootstrap_mean_ci(&[0.5; 7]), Some([0.5, 0.5]));
        assert_eq!(bootstrap_mean_ci(&[1.0]), None);
    }

    fn row(path: &str, side: &str, score: f64, valid: bool) -> Row {
        Row {
            judge: "j".into(),
            variant: "v".into(),
            path: path.into(),
            repeat: 0,
            side: side.into(),
            score: Some(score),
            valid,
        }
    }

    #[test]
    fn consistency_counts_cells_whose_two_orders_agree() {
        let rows = vec![
            row("a", "ab", 1.0, true),
            row("a", "ba", 1.0, true),
            row("b", "ab", 1.0, true),
            row("b", "ba", 0.0, true),
            // one order invalid: not a comparison
            row("c", "ab", 1.0, true),
            row("c", "ba", 0.0, false),
        ];
        assert_eq!(pairwise_consistency(&rows, "j", "v"), 0.5);
        assert_eq!(pairwise_consistency(&rows, "j", "other"), 0.0);
    }

    #[test]
    fn pearson_of_a_line_is_one_and_of_a_constant_is_none() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), None);
    }
}
