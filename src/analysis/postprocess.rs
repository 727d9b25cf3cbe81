//! Post-processing variants evaluated from one inference's stored scores: a global threshold,
//! per-category and per-tag thresholds, MCut, top-k and a global threshold with a cap on the
//! number of tags. Threshold, per-category, top-k and max-tags decisions are made by the
//! production pass's own `crate::postprocess::decide` (so what is measured here is what
//! `iw-lab tag` would write); ratings are always predicted by argmax. Pure.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use super::eval::{count, scores, Scores};
use super::scores::VariantScores;
use super::sweep::{best_f1, curve_of, pairs, TagCurve};
use crate::config::Category;
use crate::postprocess::{decide, Excluder, PostProcess};

/// A post-processing rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Policy {
    /// Score ≥ threshold.
    Threshold { threshold: f64 },
    /// Per-category thresholds (`default` for the other categories).
    CategoryThresholds {
        default: f64,
        thresholds: BTreeMap<Category, f64>,
    },
    /// Per-tag thresholds (`default` for tags without one).
    TagThresholds { default: f64, tags: usize },
    /// MCut: cut each image's descending scores at their largest gap.
    Mcut,
    /// The k highest-scoring tags.
    TopK { k: usize },
    /// Score ≥ threshold, at most `max` tags (highest first).
    MaxTags { threshold: f64, max: usize },
}

/// A policy with its display name and whether it was tuned on the evaluated images.
pub type NamedPolicy = (String, Policy, bool);

/// A policy's scores.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    pub name: String,
    pub policy: Policy,
    /// Its parameters were tuned on the same images (in-sample: optimistic).
    pub tuned: bool,
    #[serde(flatten)]
    pub scores: Scores,
}

/// MCut (Largeron et al., 2012) over one image's scores: sorted descending s₁ ≥ … ≥ sₙ, the
/// first i of largest gap sᵢ − sᵢ₊₁ keeps the top i (n = 1 keeps it, n = 0 nothing).
/// Returns how many to keep.
pub fn mcut(sorted_desc: &[f32]) -> usize {
    if sorted_desc.len() < 2 {
        return sorted_desc.len();
    }
    let mut best = (0usize, f32::NEG_INFINITY);
    for i in 0..sorted_desc.len() - 1 {
        let gap = sorted_desc[i] - sorted_desc[i + 1];
        if gap > best.1 {
            best = (i, gap);
        }
    }
    best.0 + 1
}

/// The image's stored (non-zero) scores as the production pass sees them.
fn stored(v: &VariantScores, img: usize) -> Vec<(String, f32, Category)> {
    v.entries[img]
        .iter()
        .filter(|e| e.score > 0.0 || v.is_rating(e.tag))
        .filter_map(|e| {
            v.categories[e.tag as usize].map(|c| (v.tags[e.tag as usize].clone(), e.score, c))
        })
        .collect()
}

/// What `decide_image` needs besides the scores, built once per variant.
pub struct Prepared<'a> {
    index: HashMap<&'a str, u32>,
    excluder: Excluder,
    /// Per image: its stored scores as the production pass sees them (built on first use).
    stored: Vec<std::sync::OnceLock<Vec<(String, f32, Category)>>>,
}

impl<'a> Prepared<'a> {
    pub fn new(v: &'a VariantScores) -> Prepared<'a> {
        Prepared {
            index: v.tag_index(),
            excluder: Excluder::new(&[]).expect("no patterns"),
            stored: (0..v.images.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }
}

/// The tags `policy` predicts for image `img` (ratings by argmax included).
pub fn decide_image(
    v: &VariantScores,
    prep: &Prepared<'_>,
    img: usize,
    policy: &Policy,
    tag_thresholds: &HashMap<u32, f64>,
) -> Vec<u32> {
    let rating = v.top_rating[img];
    let by_pp = |pp: PostProcess| -> Vec<u32> {
        let rows = prep.stored[img].get_or_init(|| stored(v, img));
        decide(rows, &pp, &prep.excluder)
            .iter()
            .map(|d| prep.index[d.tag.as_str()])
            .collect()
    };
    let general = || -> Vec<(u32, f32)> {
        v.entries[img]
            .iter()
            .filter(|e| {
                e.score > 0.0 && v.categories[e.tag as usize].is_some() && !v.is_rating(e.tag)
            })
            .map(|e| (e.tag, e.score))
            .collect()
    };
    let with_rating = |mut tags: Vec<u32>| {
        tags.extend(rating);
        tags
    };
    match policy {
        Policy::Threshold { threshold } => by_pp(PostProcess::with_threshold(*threshold)),
        Policy::CategoryThresholds {
            default,
            thresholds,
        } => {
            let mut pp = PostProcess::with_threshold(*default);
            pp.category_thresholds = thresholds.clone();
            by_pp(pp)
        }
        Policy::MaxTags { threshold, max } => {
            let mut pp = PostProcess::with_threshold(*threshold);
            pp.max_tags = Some(*max);
            by_pp(pp)
        }
        Policy::TopK { k } => {
            let mut pp = PostProcess::with_threshold(0.0);
            pp.max_tags = Some(*k);
            by_pp(pp)
        }
        Policy::TagThresholds { default, .. } => with_rating(
            general()
                .iter()
                .filter(|(t, s)| *s >= tag_thresholds.get(t).copied().unwrap_or(*default) as f32)
                .map(|(t, _)| *t)
                .collect(),
        ),
        Policy::Mcut => {
            let mut g = general();
            g.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let scores: Vec<f32> = g.iter().map(|x| x.1).collect();
            let k = mcut(&scores);
            with_rating(g[..k].iter().map(|x| x.0).collect())
        }
    }
}

/// The same decisions as [`decide_image`] (which runs the production pass's `decide`), from
/// tag indices instead of strings: per image, the non-rating stored scores sorted once by score
/// descending then name (tag indices are in name order), then a filtered prefix. A unit test
/// holds the two equal; this one is what `evaluate` uses, being several times faster.
pub struct Fast {
    /// Per image: (tag, score, category) of the stored non-rating scores, best first.
    sorted: Vec<Vec<(u32, f32, Category)>>,
}

impl Fast {
    pub fn new(v: &VariantScores) -> Fast {
        let sorted = (0..v.images.len())
            .map(|img| {
                let mut xs: Vec<(u32, f32, Category)> = v.entries[img]
                    .iter()
                    .filter(|e| e.score > 0.0 && !v.is_rating(e.tag))
                    .filter_map(|e| v.categories[e.tag as usize].map(|c| (e.tag, e.score, c)))
                    .collect();
                xs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                xs
            })
            .collect();
        Fast { sorted }
    }

    pub fn decide(
        &self,
        v: &VariantScores,
        img: usize,
        policy: &Policy,
        tag_thresholds: &HashMap<u32, f64>,
    ) -> Vec<u32> {
        let xs = &self.sorted[img];
        let keep = |limit: Option<usize>, pass: &dyn Fn(&(u32, f32, Category)) -> bool| {
            let mut out: Vec<u32> = xs
                .iter()
                .filter(|x| pass(x))
                .take(limit.unwrap_or(usize::MAX))
                .map(|x| x.0)
                .collect();
            out.extend(v.top_rating[img]);
            out
        };
        match policy {
            Policy::Threshold { threshold } => {
                let t = *threshold as f32;
                keep(None, &|x| x.1 >= t)
            }
            Policy::CategoryThresholds {
                default,
                thresholds,
            } => keep(None, &|x| {
                x.1 >= thresholds.get(&x.2).copied().unwrap_or(*default) as f32
            }),
            Policy::MaxTags { threshold, max } => {
                let t = *threshold as f32;
                keep(Some(*max), &|x| x.1 >= t)
            }
            Policy::TopK { k } => keep(Some(*k), &|_| true),
            Policy::TagThresholds { default, .. } => keep(None, &|x| {
                x.1 >= tag_thresholds.get(&x.0).copied().unwrap_or(*default) as f32
            }),
            Policy::Mcut => {
                let scores: Vec<f32> = xs.iter().map(|x| x.1).collect();
                keep(Some(mcut(&scores)), &|_| true)
            }
        }
    }
}

/// Evaluates `policies` over the labelled images. `tag_thresholds` (by tag index) serves
/// `TagThresholds`.
pub fn evaluate(
    v: &VariantScores,
    policies: &[NamedPolicy],
    tag_thresholds: &HashMap<u32, f64>,
) -> Vec<PolicyResult> {
    let fast = Fast::new(v);
    let images = v.labelled();
    policies
        .par_iter()
        .map(|(name, policy, tuned)| {
            let c = count(v, &images, |img| {
                fast.decide(v, img, policy, tag_thresholds)
            });
            PolicyResult {
                name: name.clone(),
                policy: policy.clone(),
                tuned: *tuned,
                scores: scores(&c),
            }
        })
        .collect()
}

/// The default comparison: the experiment's thresholds; per-category best-F1 thresholds
/// (general, character; tuned); per-tag best-F1 thresholds (tuned); MCut; top 5/10/20; the
/// first threshold capped at 10 and 20 tags.
pub fn default_policies(
    v: &VariantScores,
    thresholds: &[f64],
    tag_curves: &[TagCurve],
) -> (Vec<NamedPolicy>, HashMap<u32, f64>) {
    let mut out = Vec::new();
    for &t in thresholds {
        out.push((
            format!("threshold {t}"),
            Policy::Threshold { threshold: t },
            false,
        ));
    }
    let images = v.labelled();
    let best = |cat: &str| best_f1(&curve_of(&pairs(v, &images, cat))).map(|b| b.threshold);
    let all_best = best("all").unwrap_or(thresholds.first().copied().unwrap_or(0.5));
    let mut cats = BTreeMap::new();
    for (name, c) in [
        ("general", Category::General),
        ("character", Category::Character),
    ] {
        if let Some(t) = best(name) {
            cats.insert(c, t);
        }
    }
    out.push((
        "best-F1 threshold".into(),
        Policy::Threshold {
            threshold: all_best,
        },
        true,
    ));
    out.push((
        "per-category best-F1".into(),
        Policy::CategoryThresholds {
            default: all_best,
            thresholds: cats,
        },
        true,
    ));
    let index = v.tag_index();
    let tag_thresholds: HashMap<u32, f64> = tag_curves
        .iter()
        .filter_map(|c| Some((index[c.tag.as_str()], c.best_f1?.threshold)))
        .collect();
    out.push((
        "per-tag best-F1".into(),
        Policy::TagThresholds {
            default: all_best,
            tags: tag_thresholds.len(),
        },
        true,
    ));
    out.push(("MCut".into(), Policy::Mcut, false));
    for k in [5, 10, 20] {
        out.push((format!("top {k}"), Policy::TopK { k }, false));
    }
    let first = thresholds.first().copied().unwrap_or(0.35);
    for max in [10, 20] {
        out.push((
            format!("threshold {first}, max {max}"),
            Policy::MaxTags {
                threshold: first,
                max,
            },
            false,
        ));
    }
    (out, tag_thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::scores::{Entry, ImageInfo};

    /// Images in the fixture.
    const IMAGES: usize = 200;

    /// The fixture's tags: t00–t11, t00/t01 ratings, t02/t03 characters, t11 ground truth only.
    fn fixture_tags() -> (Vec<String>, Vec<Option<Category>>) {
        let tags: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
        let mut categories = vec![Some(Category::General); 12];
        categories[0] = Some(Category::Rating);
        categories[1] = Some(Category::Rating);
        categories[2] = Some(Category::Character);
        categories[3] = Some(Category::Character);
        categories[11] = None; // ground truth only
        (tags, categories)
    }

    /// One image's entries from the xorshift stream `rnd`: about 60% of the tags present.
    fn random_entries(rnd: &mut impl FnMut() -> u64) -> Vec<Entry> {
        let mut es = Vec::new();
        for t in 0..12u32 {
            let r = rnd() % 100;
            if r < 60 {
                // coarse scores: many ties; some exactly at thresholds
                let score = if t == 11 { 0.0 } else { (r % 9) as f32 / 8.0 };
                es.push(Entry {
                    tag: t,
                    score,
                    y: r.is_multiple_of(2),
                });
            }
        }
        es
    }

    /// The highest-scored rating tag among `es` (the first of equal scores), if any.
    fn top_rating_of(es: &[Entry]) -> Option<u32> {
        es.iter()
            .filter(|e| e.tag < 2)
            .fold(None::<&Entry>, |b, e| match b {
                Some(b) if b.score >= e.score => Some(b),
                _ => Some(e),
            })
            .map(|e| e.tag)
    }

    /// A variant of `IMAGES` labelled images with seeded pseudo-random coarse scores.
    fn fixture_scores() -> VariantScores {
        let (tags, categories) = fixture_tags();
        let mut state = 7u64;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut entries = Vec::new();
        let mut top_rating = Vec::new();
        for _ in 0..IMAGES {
            let es = random_entries(&mut rnd);
            top_rating.push(top_rating_of(&es));
            entries.push(es);
        }
        VariantScores {
            variant: "v".into(),
            images: (0..IMAGES)
                .map(|i| ImageInfo {
                    path: format!("{i}"),
                    image_hash: format!("{i}"),
                    labelled: true,
                })
                .collect(),
            tags,
            categories,
            entries,
            top_rating,
        }
    }

    /// One policy of each kind, with the per-tag thresholds `TagThresholds` uses.
    fn fixture_policies() -> ([Policy; 6], HashMap<u32, f64>) {
        let mut cats = BTreeMap::new();
        cats.insert(Category::Character, 0.625);
        let tag_thresholds: HashMap<u32, f64> = [(4, 0.25), (5, 0.875)].into_iter().collect();
        let policies = [
            Policy::Threshold { threshold: 0.375 },
            Policy::CategoryThresholds {
                default: 0.25,
                thresholds: cats,
            },
            Policy::TagThresholds {
                default: 0.5,
                tags: 2,
            },
            Policy::Mcut,
            Policy::TopK { k: 3 },
            Policy::MaxTags {
                threshold: 0.25,
                max: 2,
            },
        ];
        (policies, tag_thresholds)
    }

    #[test]
    fn fast_decisions_equal_the_production_decide() {
        let v = fixture_scores();
        let (policies, tag_thresholds) = fixture_policies();
        let prep = Prepared::new(&v);
        let fast = Fast::new(&v);
        for p in &policies {
            for img in 0..IMAGES {
                let mut a = decide_image(&v, &prep, img, p, &tag_thresholds);
                let mut b = fast.decide(&v, img, p, &tag_thresholds);
                a.sort();
                b.sort();
                assert_eq!(a, b, "{p:?} image {img}");
            }
        }
    }

    #[test]
    fn mcut_cuts_at_the_largest_gap() {
        assert_eq!(mcut(&[0.9, 0.85, 0.3, 0.2]), 2);
        assert_eq!(mcut(&[0.75, 0.5, 0.25]), 1); // equal gaps: the first
        assert_eq!(mcut(&[0.4]), 1);
        assert_eq!(mcut(&[]), 0);
    }
}
