//! Post-processing: from stored scores to the tags a sidecar gets. Pure.
//!
//! Scores are stored, decisions are made here: a global threshold, per-category thresholds,
//! ratings by argmax (never thresholded), excluded tags (exact or `/regex/`), and a cap on the
//! number of tags. The result is ordered by score, highest first.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::words::Category;

/// Post-processing settings (part of a production config, and of its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostProcess {
    /// A tag is kept when its score ≥ this (ratings excepted).
    pub threshold: f64,
    /// Per-category thresholds overriding `threshold` (e.g. `character: 0.85`).
    #[serde(default)]
    pub category_thresholds: BTreeMap<Category, f64>,
    /// Keep the top-scoring rating (argmax) as a tag.
    #[serde(default = "yes")]
    pub ratings: bool,
    /// Tags never written: exact tags, or `/regex/` patterns (matched on the normalised tag).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Keep at most this many tags (highest scores first; the rating is not counted).
    #[serde(default)]
    pub max_tags: Option<usize>,
}

fn yes() -> bool {
    true
}

impl PostProcess {
    pub fn with_threshold(threshold: f64) -> PostProcess {
        PostProcess {
            threshold,
            category_thresholds: BTreeMap::new(),
            ratings: true,
            exclude: Vec::new(),
            max_tags: None,
        }
    }
}

/// One decided tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decided {
    pub tag: String,
    pub score: f32,
    pub category: Category,
}

/// Errors in post-processing settings.
#[derive(Debug, thiserror::Error)]
#[error("exclude pattern `{pattern}` is not a valid regular expression: {reason}")]
pub struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

/// Compiled exclusion rules.
pub struct Excluder {
    exact: std::collections::HashSet<String>,
    patterns: Vec<regex::Regex>,
}

impl Excluder {
    pub fn new(rules: &[String]) -> Result<Excluder, BadPattern> {
        let mut exact = std::collections::HashSet::new();
        let mut patterns = Vec::new();
        for r in rules {
            match r.strip_prefix('/').and_then(|p| p.strip_suffix('/')) {
                Some(p) => patterns.push(regex::Regex::new(p).map_err(|e| BadPattern {
                    pattern: r.clone(),
                    reason: e.to_string(),
                })?),
                None => {
                    if let Some(t) = crate::tags::normalise(r) {
                        exact.insert(t);
                    }
                }
            }
        }
        Ok(Excluder { exact, patterns })
    }

    pub fn excludes(&self, tag: &str) -> bool {
        self.exact.contains(tag) || self.patterns.iter().any(|p| p.is_match(tag))
    }
}

/// Decides the tags of one image from its stored `(tag, score, category)` rows.
pub fn decide(
    scores: &[(String, f32, Category)],
    pp: &PostProcess,
    excluder: &Excluder,
) -> Vec<Decided> {
    let mut rating: Option<&(String, f32, Category)> = None;
    let mut kept: Vec<Decided> = Vec::new();
    for s in scores {
        if s.2 == Category::Rating {
            if rating.is_none_or(|r| s.1 > r.1 || (s.1 == r.1 && s.0 < r.0)) {
                rating = Some(s);
            }
            continue;
        }
        let t = pp
            .category_thresholds
            .get(&s.2)
            .copied()
            .unwrap_or(pp.threshold);
        if s.1 >= t as f32 && !excluder.excludes(&s.0) {
            kept.push(Decided {
                tag: s.0.clone(),
                score: s.1,
                category: s.2,
            });
        }
    }
    kept.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.tag.cmp(&b.tag)));
    if let Some(n) = pp.max_tags {
        kept.truncate(n);
    }
    if let (true, Some(r)) = (pp.ratings, rating) {
        if !excluder.excludes(&r.0) {
            kept.push(Decided {
                tag: r.0.clone(),
                score: r.1,
                category: Category::Rating,
            });
            kept.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.tag.cmp(&b.tag)));
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(tag: &str, score: f32, c: Category) -> (String, f32, Category) {
        (tag.into(), score, c)
    }

    #[test]
    fn thresholds_ratings_exclusions_and_caps() {
        let scores = vec![
            s("1girl", 0.99, Category::General),
            s("smile", 0.40, Category::General),
            s("solo", 0.30, Category::General),
            s("hatsune miku", 0.70, Category::Character),
            s("general", 0.20, Category::Rating),
            s("sensitive", 0.75, Category::Rating),
            s("watermark", 0.90, Category::General),
        ];
        let mut pp = PostProcess::with_threshold(0.35);
        pp.category_thresholds.insert(Category::Character, 0.8);
        pp.exclude = vec!["/^water/".into()];
        let ex = Excluder::new(&pp.exclude).unwrap();
        let tags: Vec<String> = decide(&scores, &pp, &ex)
            .into_iter()
            .map(|d| d.tag)
            .collect();
        assert_eq!(tags, ["1girl", "sensitive", "smile"]);
        pp.max_tags = Some(1);
        pp.ratings = false;
        let tags: Vec<String> = decide(&scores, &pp, &ex)
            .into_iter()
            .map(|d| d.tag)
            .collect();
        assert_eq!(tags, ["1girl"]);
        assert!(Excluder::new(&["/(/".into()]).is_err());
    }
}
