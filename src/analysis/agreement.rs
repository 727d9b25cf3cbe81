//! Agreement between raters (LLM judges, humans) and stability across repeats.
//!
//! Krippendorff's alpha from the coincidence matrix (Krippendorff, *Computing Krippendorff's
//! Alpha-Reliability*, 2011): for every unit with at least two values, each ordered pair of
//! its values from different raters adds `1 / (m_u − 1)` to `o[c][k]`; with `n_c` the row sums
//! and `n` their total, `α = 1 − (n − 1) · Σ o_ck δ²_ck / Σ n_c n_k δ²_ck`. The difference
//! functions δ² are nominal (0 or 1), ordinal (the squared count of values between c and k,
//! halving the ends), interval ((c − k)²) and ratio (((c − k) / (c + k))²). Checked against the
//! `krippendorff` Python package.

use std::collections::HashSet;

/// The level of measurement of the ratings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Nominal,
    Ordinal,
    Interval,
    Ratio,
}

/// Krippendorff's alpha of `data` (raters × units; `None` = no rating). `None` when it is not
/// defined: fewer than two pairable values, or a single value throughout (no expected
/// disagreement).
pub fn krippendorff_alpha(data: &[Vec<Option<f64>>], level: Level) -> Option<f64> {
    let units = data.iter().map(Vec::len).max().unwrap_or(0);
    // the distinct values, sorted
    let mut values: Vec<f64> = data
        .iter()
        .flatten()
        .filter_map(|v| *v)
        .filter(|v| v.is_finite())
        .collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let index = |x: f64| values.binary_search_by(|v| v.total_cmp(&x)).ok();
    let k = values.len();
    if k == 0 {
        return None;
    }
    let mut o = vec![vec![0.0f64; k]; k];
    for u in 0..units {
        let vals: Vec<usize> = data
            .iter()
            .filter_map(|r| r.get(u).copied().flatten())
            .filter(|v| v.is_finite())
            .filter_map(index)
            .collect();
        let m = vals.len();
        if m < 2 {
            continue;
        }
        let w = 1.0 / (m as f64 - 1.0);
        for (i, &a) in vals.iter().enumerate() {
            for (j, &b) in vals.iter().enumerate() {
                if i != j {
                    o[a][b] += w;
                }
            }
        }
    }
    let nc: Vec<f64> = o.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = nc.iter().sum();
    if n < 2.0 {
        return None;
    }
    let delta = |c: usize, d: usize| -> f64 {
        match level {
            Level::Nominal => (c != d) as u8 as f64,
            Level::Interval => (values[c] - values[d]).powi(2),
            Level::Ratio => {
                let s = values[c] + values[d];
                if s == 0.0 {
                    0.0
                } else {
                    ((values[c] - values[d]) / s).powi(2)
                }
            }
            Level::Ordinal => {
                let (lo, hi) = if c <= d { (c, d) } else { (d, c) };
                let between: f64 = nc[lo..=hi].iter().sum();
                (between - (nc[lo] + nc[hi]) / 2.0).powi(2)
            }
        }
    };
    let (mut observed, mut expected) = (0.0, 0.0);
    for c in 0..k {
        for d in 0..k {
            let dd = delta(c, d);
            observed += o[c][d] * dd;
            expected += nc[c] * nc[d] * dd;
        }
    }
    if expected == 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * observed / expected)
}

/// Mean Jaccard similarity over all pairs of sets (repeats of one cell); 1 for fewer than two
/// sets; two empty sets agree (1).
pub fn mean_pairwise_jaccard<T: Eq + std::hash::Hash>(sets: &[HashSet<T>]) -> f64 {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            let inter = sets[i].intersection(&sets[j]).count();
            let union = sets[i].len() + sets[j].len() - inter;
            sum += if union == 0 {
                1.0
            } else {
                inter as f64 / union as f64
            };
            pairs += 1;
        }
    }
    if pairs == 0 {
        1.0
    } else {
        sum / pairs as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[Option<f64>]) -> Vec<Option<f64>> {
        v.to_vec()
    }

    /// Krippendorff (2011), the example with 4 coders, 12 units and missing values:
    /// nominal α = 0.743, ordinal 0.815, interval 0.849, ratio 0.797.
    #[test]
    fn the_papers_example() {
        let n = None;
        let data = vec![
            s(&[
                Some(1.),
                Some(2.),
                Some(3.),
                Some(3.),
                Some(2.),
                Some(1.),
                Some(4.),
                Some(1.),
                Some(2.),
                n,
                n,
                n,
            ]),
            s(&[
                Some(1.),
                Some(2.),
                Some(3.),
                Some(3.),
                Some(2.),
                Some(2.),
                Some(4.),
                Some(1.),
                Some(2.),
                Some(5.),
                n,
                Some(3.),
            ]),
            s(&[
                n,
                Some(3.),
                Some(3.),
                Some(3.),
                Some(2.),
                Some(3.),
                Some(4.),
                Some(2.),
                Some(2.),
                Some(5.),
                Some(1.),
                n,
            ]),
            s(&[
                Some(1.),
                Some(2.),
                Some(3.),
                Some(3.),
                Some(2.),
                Some(4.),
                Some(4.),
                Some(1.),
                Some(2.),
                Some(5.),
                Some(1.),
                n,
            ]),
        ];
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        assert_eq!(r(krippendorff_alpha(&data, Level::Nominal).unwrap()), 0.743);
        assert_eq!(r(krippendorff_alpha(&data, Level::Ordinal).unwrap()), 0.815);
        assert_eq!(
            r(krippendorff_alpha(&data, Level::Interval).unwrap()),
            0.849
        );
        assert_eq!(r(krippendorff_alpha(&data, Level::Ratio).unwrap()), 0.797);
    }

    #[test]
    fn undefined_cases() {
        assert_eq!(krippendorff_alpha(&[], Level::Nominal), None);
        // one value throughout: no expected disagreement
        let same = vec![s(&[Some(1.), Some(1.)]), s(&[Some(1.), Some(1.)])];
        assert_eq!(krippendorff_alpha(&same, Level::Nominal), None);
        // no unit rated twice
        let lone = vec![s(&[Some(1.), None]), s(&[None, Some(2.)])];
        assert_eq!(krippendorff_alpha(&lone, Level::Nominal), None);
    }

    #[test]
    fn jaccard() {
        let a: HashSet<u32> = [1, 2, 3].into();
        let b: HashSet<u32> = [2, 3, 4].into();
        let e: HashSet<u32> = HashSet::new();
        assert_eq!(mean_pairwise_jaccard(&[a.clone(), b.clone()]), 0.5);
        assert_eq!(mean_pairwise_jaccard(std::slice::from_ref(&a)), 1.0);
        assert_eq!(mean_pairwise_jaccard(&[e.clone(), e.clone()]), 1.0);
        assert!((mean_pairwise_jaccard(&[a, b, e]) - 0.5 / 3.0).abs() < 1e-12);
    }
}
