//! Bootstrap confidence intervals over images (seeded), for micro F1 at a threshold and mAP,
//! and a paired bootstrap for the difference between two variants. Pure.
//!
//! Method (`docs/metrics.md`): B resamples of the n scored images, drawn with replacement from
//! one SplitMix64 stream seeded with the seed (resample 0's n draws first, then resample 1's,
//! ...), a draw being `(next() · n) >> 64` (128-bit product); each statistic is recomputed
//! on every resample (an image drawn k times counts k times); the interval is the percentile
//! interval at `(1 − confidence)/2` and `(1 + confidence)/2`, interpolated linearly between
//! order statistics (NumPy's default `percentile`). The paired bootstrap uses the same draws
//! for both variants over the images both scored.

use rayon::prelude::*;
use serde::Serialize;

use super::eval::at_threshold;
use super::scores::VariantScores;

/// SplitMix64 (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// An estimate with its percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The statistic on the original images.
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// A variant's intervals.
#[derive(Debug, Clone, Serialize)]
pub struct VariantCi {
    pub variant: String,
    pub threshold: f64,
    pub images: usize,
    pub f1_micro: Interval,
    pub map: Option<Interval>,
}

/// B − A for one statistic under the paired bootstrap.
#[derive(Debug, Clone, Serialize)]
pub struct PairedDiff {
    pub a: String,
    pub b: String,
    pub metric: String,
    /// Images both variants scored (the resampled set).
    pub images: usize,
    /// The difference B − A on the original images, and its interval.
    pub diff: Interval,
    /// The fraction of resamples in which B's statistic is greater than A's.
    pub b_better: f64,
}

/// The bootstrap section of `iw-lab analyze`.
#[derive(Debug, Clone, Serialize)]
pub struct Bootstrap {
    pub resamples: usize,
    pub seed: u64,
    pub confidence: f64,
    pub variants: Vec<VariantCi>,
    pub paired: Vec<PairedDiff>,
}

/// NumPy's default (linear) percentile of sorted values, `q` in [0, 1].
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(estimate: f64, mut values: Vec<f64>, confidence: f64) -> Interval {
    values.retain(|x| !x.is_nan());
    values.sort_by(f64::total_cmp);
    let a = (1.0 - confidence) / 2.0;
    Interval {
        estimate,
        low: percentile(&values, a),
        high: percentile(&values, 1.0 - a),
    }
}

/// The leaderboard's interval: resamples, seed and confidence of the report's default
/// bootstrap, so both show the same interval for the same variant.
pub const LEADERBOARD: (usize, u64, f64) = (200, 0, 0.95);

/// The percentile interval of micro F1 from per-image counts, in the order the images are
/// drawn from (path order): the same draws, and so the same interval, as [`bootstrap`] over
/// the same images. `None` for fewer than two images.
pub fn f1_micro_interval(
    images: &[crate::store::counts::SampleCounts],
    (resamples, seed, confidence): (usize, u64, f64),
) -> Option<Interval> {
    let n = images.len();
    if n < 2 || resamples == 0 {
        return None;
    }
    let f1 = |tp: u64, pred: u64, truth: u64| super::metrics::prf(tp, pred - tp, truth - tp).f1;
    let total = images.iter().fold((0, 0, 0), |a, c| {
        (a.0 + c.tp, a.1 + c.pred.max(c.tp), a.2 + c.truth.max(c.tp))
    });
    let mut rng = SplitMix64(seed);
    let values = (0..resamples)
        .map(|_| {
            let (mut tp, mut pred, mut truth) = (0u64, 0u64, 0u64);
            for _ in 0..n {
                let c = &images[rng.below(n)];
                tp += c.tp;
                pred += c.pred.max(c.tp);
                truth += c.truth.max(c.tp);
            }
            f1(tp, pred, truth)
        })
        .collect();
    Some(interval(f1(total.0, total.1, total.2), values, confidence))
}

/// Multiplicity vectors of `count` resamples of `n` images, continuing `rng`'s stream.
fn draws(rng: &mut SplitMix64, n: usize, count: usize) -> Vec<Vec<u32>> {
    (0..count)
        .map(|_| {
            let mut w = vec![0u32; n];
            for _ in 0..n {
                w[rng.below(n)] += 1;
            }
            w
        })
        .collect()
}

/// A variant's statistics over a fixed list of images, recomputable under weights.
pub struct Stat {
    /// Per listed image: (tp, fp, fn) at the threshold.
    counts: Vec<(u64, u64, u64)>,
    /// Per tag with entries: (position in the list, score, y), scores descending.
    tags: Vec<Vec<(u32, f32, bool)>>,
}

impl Stat {
    /// `images`: indices into `v.images` (the resampled list, in order).
    pub fn new(v: &VariantScores, images: &[usize], threshold: f64) -> Stat {
        let mut tags: Vec<Vec<(u32, f32, bool)>> = vec![Vec::new(); v.tags.len()];
        let counts = images
            .iter()
            .enumerate()
            .map(|(pos, &img)| {
                let pred = at_threshold(v, img, threshold);
                let mut c = (0, 0, 0);
                for e in &v.entries[img] {
                    tags[e.tag as usize].push((pos as u32, e.score, e.y));
                    let p = pred.contains(&e.tag);
                    match (p, e.y) {
                        (true, true) => c.0 += 1,
                        (true, false) => c.1 += 1,
                        (false, true) => c.2 += 1,
                        _ => {}
                    }
                }
                c
            })
            .collect();
        for t in &mut tags {
            t.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        tags.retain(|t| t.iter().any(|e| e.2));
        Stat { counts, tags }
    }

    /// Micro F1 under weights.
    pub fn f1(&self, w: &[u32]) -> f64 {
        let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
        for (c, &k) in self.counts.iter().zip(w) {
            let k = k as u64;
            tp += c.0 * k;
            fp += c.1 * k;
            fn_ += c.2 * k;
        }
        super::metrics::prf(tp, fp, fn_).f1
    }

    /// mAP under weights (NaN when no tag has a positive).
    pub fn map(&self, w: &[u32]) -> f64 {
        let n: u64 = w.iter().map(|&k| k as u64).sum();
        let (mut sum, mut tags) = (0.0, 0usize);
        let mut groups: Vec<(u64, u64)> = Vec::new();
        for entries in &self.tags {
            groups.clear();
            let (mut seen, mut pos_scored, mut pos_zero) = (0u64, 0u64, 0u64);
            let mut last = f32::NAN;
            for &(p, s, y) in entries {
                let k = w[p as usize] as u64;
                if k == 0 {
                    continue;
                }
                if s <= 0.0 {
                    pos_zero += k * y as u64;
                    continue;
                }
                if s != last || groups.is_empty() {
                    groups.push((0, 0));
                    last = s;
                }
                let g = groups.last_mut().expect("pushed");
                g.0 += k;
                g.1 += k * y as u64;
                seen += k;
                pos_scored += k * y as u64;
            }
            let zero = n - seen;
            if zero > 0 {
                groups.push((zero, pos_zero));
            }
            if let Some(ap) = super::metrics::average_precision(groups.iter().copied())
                .filter(|_| pos_scored + pos_zero > 0)
            {
                sum += ap;
                tags += 1;
            }
        }
        if tags == 0 {
            f64::NAN
        } else {
            sum / tags as f64
        }
    }
}

/// The bootstrap's settings, shared by every resampling.
#[derive(Debug, Clone, Copy)]
struct Settings {
    resamples: usize,
    seed: u64,
    confidence: f64,
}

/// A variant's labelled images, its statistic over them and their resampled values.
struct Resampled {
    images: Vec<usize>,
    stat: Stat,
    f1s: Vec<f64>,
    maps: Vec<f64>,
}

/// Per-variant intervals and paired differences against the first variant.
/// `variants`: (scores, threshold).
pub fn bootstrap(
    variants: &[(&VariantScores, f64)],
    resamples: usize,
    seed: u64,
    confidence: f64,
) -> Bootstrap {
    let s = Settings {
        resamples,
        seed,
        confidence,
    };
    let mut cis = Vec::new();
    // per variant: its labelled images, statistic and resampled values, reused by the paired
    // comparisons whose common images are exactly both variants' labelled images (same n,
    // same seed: the same draws, so the same numbers as recomputing them)
    let mut per = Vec::new();
    for (v, t) in variants {
        let (ci, r) = variant_ci(v, *t, s);
        cis.push(ci);
        per.push(r);
    }
    let mut paired = Vec::new();
    if let Some(((a, ta), rest)) = variants.split_first() {
        for (k, (b, tb)) in rest.iter().enumerate() {
            paired.extend(paired_diffs((a, *ta, &per[0]), (b, *tb, &per[k + 1]), s));
        }
    }
    Bootstrap {
        resamples,
        seed,
        confidence,
        variants: cis,
        paired,
    }
}

/// A variant's intervals over its labelled images, and what the paired comparisons reuse.
fn variant_ci(v: &VariantScores, t: f64, s: Settings) -> (VariantCi, Resampled) {
    let images = v.labelled();
    let stat = Stat::new(v, &images, t);
    let ones = vec![1u32; images.len()];
    let (mut f1s, mut maps) = run(&[&stat], images.len(), s.resamples, s.seed);
    let map_est = stat.map(&ones);
    let (f1s, maps) = (f1s.remove(0), maps.remove(0));
    let ci = VariantCi {
        variant: v.variant.clone(),
        threshold: t,
        images: images.len(),
        f1_micro: interval(stat.f1(&ones), f1s.clone(), s.confidence),
        map: (!map_est.is_nan()).then(|| interval(map_est, maps.clone(), s.confidence)),
    };
    (
        ci,
        Resampled {
            images,
            stat,
            f1s,
            maps,
        },
    )
}

/// B − A of micro F1 and (when defined) mAP over the images both scored, reusing each
/// variant's resamples when those are exactly its labelled images; none when no image is shared.
fn paired_diffs(
    (a, ta, pa): (&VariantScores, f64, &Resampled),
    (b, tb, pb): (&VariantScores, f64, &Resampled),
    s: Settings,
) -> Vec<PairedDiff> {
    // images both scored, by path
    let (ia, ib) = common(a, b);
    if ia.is_empty() {
        return Vec::new();
    }
    let (sa, sb, f1s, maps);
    let fresh;
    if ia == pa.images && ib == pb.images {
        (sa, sb) = (&pa.stat, &pb.stat);
        f1s = [pa.f1s.clone(), pb.f1s.clone()];
        maps = [pa.maps.clone(), pb.maps.clone()];
    } else {
        fresh = (Stat::new(a, &ia, ta), Stat::new(b, &ib, tb));
        (sa, sb) = (&fresh.0, &fresh.1);
        let (mut f, mut m) = run(&[sa, sb], ia.len(), s.resamples, s.seed);
        f1s = [f.remove(0), f.remove(0)];
        maps = [m.remove(0), m.remove(0)];
    }
    Pair {
        a: &a.variant,
        b: &b.variant,
        images: ia.len(),
        stats: [sa, sb],
        f1s,
        maps,
    }
    .diffs(s.confidence)
}

/// Two variants over their common images: statistics and resampled values, A then B.
struct Pair<'a> {
    a: &'a str,
    b: &'a str,
    images: usize,
    stats: [&'a Stat; 2],
    f1s: [Vec<f64>; 2],
    maps: [Vec<f64>; 2],
}

impl Pair<'_> {
    /// B − A of micro F1, then of mAP when it is defined on the original images.
    fn diffs(&self, confidence: f64) -> Vec<PairedDiff> {
        let ones = vec![1u32; self.images];
        let [sa, sb] = self.stats;
        let mut paired = Vec::new();
        let (d, better) = differences(&self.f1s[0], &self.f1s[1]);
        paired.push(self.diff(
            "f1_micro",
            interval(sb.f1(&ones) - sa.f1(&ones), d, confidence),
            better,
        ));
        let est = sb.map(&ones) - sa.map(&ones);
        if !est.is_nan() {
            let (d, better) = differences(&self.maps[0], &self.maps[1]);
            paired.push(self.diff("map", interval(est, d, confidence), better));
        }
        paired
    }

    /// One statistic's paired difference.
    fn diff(&self, metric: &str, diff: Interval, b_better: f64) -> PairedDiff {
        PairedDiff {
            a: self.a.to_string(),
            b: self.b.to_string(),
            metric: metric.into(),
            images: self.images,
            diff,
            b_better,
        }
    }
}

/// Per resample B − A, and the fraction of resamples (with a defined difference) where it is
/// positive.
fn differences(xa: &[f64], xb: &[f64]) -> (Vec<f64>, f64) {
    let d: Vec<f64> = xa.iter().zip(xb).map(|(x, y)| y - x).collect();
    let valid: Vec<&f64> = d.iter().filter(|x| !x.is_nan()).collect();
    let better = if valid.is_empty() {
        f64::NAN
    } else {
        valid.iter().filter(|x| ***x > 0.0).count() as f64 / valid.len() as f64
    };
    (d, better)
}

/// Labelled images scored by both variants, matched by path: indices into each.
pub fn common(a: &VariantScores, b: &VariantScores) -> (Vec<usize>, Vec<usize>) {
    let (mut ia, mut ib) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.images.len() && j < b.images.len() {
        match a.images[i].path.cmp(&b.images[j].path) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if a.images[i].labelled && b.images[j].labelled {
                    ia.push(i);
                    ib.push(j);
                }
                i += 1;
                j += 1;
            }
        }
    }
    (ia, ib)
}

/// Per stat: the F1 and mAP of each resample.
#[allow(clippy::type_complexity)]
fn run(stats: &[&Stat], n: usize, resamples: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut rng = SplitMix64(seed);
    let mut f1s = vec![Vec::with_capacity(resamples); stats.len()];
    let mut maps = vec![Vec::with_capacity(resamples); stats.len()];
    if n == 0 {
        return (f1s, maps);
    }
    let mut done = 0;
    while done < resamples {
        let batch = (resamples - done).min(64);
        let ws = draws(&mut rng, n, batch);
        let results: Vec<Vec<(f64, f64)>> = ws
            .par_iter()
            .map(|w| stats.iter().map(|s| (s.f1(w), s.map(w))).collect())
            .collect();
        for r in results {
            for (k, (f, m)) in r.into_iter().enumerate() {
                f1s[k].push(f);
                maps[k].push(m);
            }
        }
        done += batch;
    }
    (f1s, maps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaderboard's interval, from per-image counts, is the full bootstrap's: random
    /// variants with images that have neither a label nor a prediction, and ratings.
    #[test]
    fn the_leaderboard_interval_is_the_bootstrap_over_the_same_images() {
        use crate::store::counts::SampleCounts;
        use crate::store::scores::{Entry, ImageInfo, StoredScores};
        let mut rng = SplitMix64(7);
        for case in 0..40 {
            let n = 2 + rng.below(30);
            let tags = 1 + rng.below(6);
            let mut stored = StoredScores {
                images: (0..n)
                    .map(|i| ImageInfo {
                        path: format!("{i:03}.png"),
                        image_hash: String::new(),
                        labelled: true,
                    })
                    .collect(),
                tags: (0..tags).map(|t| format!("t{t}")).collect(),
                categories: vec![Some(crate::config::Category::General); tags],
                entries: vec![Vec::new(); n],
                truth: Vec::new(),
            };
            for img in 0..n {
                for tag in 0..tags as u32 {
                    match rng.below(4) {
                        0 => {}
                        1 => stored.truth.push((img, tag)),
                        _ => {
                            let score = (rng.below(1000) as f32 + 1.0) / 1000.0;
                            stored.entries[img].push(Entry {
                                tag,
                                score,
                                y: false,
                            });
                            if rng.below(2) == 0 {
                                stored.truth.push((img, tag));
                            }
                        }
                    }
                }
            }
            let v = VariantScores::from_stored("v", stored);
            let t = 0.5;
            let samples: Vec<SampleCounts> = (0..n)
                .map(|img| {
                    let pred = at_threshold(&v, img, t);
                    let es = &v.entries[img];
                    SampleCounts {
                        tp: es.iter().filter(|e| e.y && pred.contains(&e.tag)).count() as u64,
                        pred: pred.len() as u64,
                        truth: es.iter().filter(|e| e.y).count() as u64,
                    }
                })
                .collect();
            let full = bootstrap(&[(&v, t)], 200, 0, 0.95).variants[0].f1_micro;
            let ours = f1_micro_interval(&samples, LEADERBOARD).unwrap();
            assert_eq!(ours, full, "case {case}");
        }
        assert_eq!(
            f1_micro_interval(&[SampleCounts::default()], LEADERBOARD),
            None
        );
    }

    #[test]
    fn splitmix_and_percentile() {
        // reference values of SplitMix64 seeded with 0
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.025), 1.075);
    }
}
