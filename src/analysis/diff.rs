//! Diffs between two variants (of one run or two runs): images are matched by content hash
//! (the first file in path order stands for files with the same content); per image the tags
//! gained and lost; per tag the change in precision, recall and support; the images whose
//! result changed most. Pure.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::eval::at_threshold;
use super::metrics::{prf, Prf};
use super::scores::VariantScores;

/// One side of a diff.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub run_id: String,
    pub variant: String,
    pub threshold: f64,
    /// Images with a finished cell.
    pub images: usize,
    /// Micro P/R/F1 over the shared images labelled on this side.
    pub micro: Prf,
}

/// Per-tag changes (B − A).
#[derive(Debug, Clone, Serialize)]
pub struct TagChange {
    pub tag: String,
    /// Shared images where B predicts the tag and A does not.
    pub gained: u64,
    /// Shared images where A predicts the tag and B does not.
    pub lost: u64,
    pub precision_a: f64,
    pub precision_b: f64,
    pub recall_a: f64,
    pub recall_b: f64,
    pub support_a: u64,
    pub support_b: u64,
    pub d_precision: f64,
    pub d_recall: f64,
    pub d_support: i64,
}

/// Per-image changes.
#[derive(Debug, Clone, Serialize)]
pub struct ImageChange {
    pub image_hash: String,
    pub path_a: String,
    pub path_b: String,
    pub gained: Vec<String>,
    pub lost: Vec<String>,
    /// Per-image F1 (2·tp/(|pred|+|truth|), 0 when both are empty) on each side, when labelled.
    pub f1_a: Option<f64>,
    pub f1_b: Option<f64>,
}

/// `iw-lab diff --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub a: Side,
    pub b: Side,
    pub shared_images: usize,
    pub only_a: usize,
    pub only_b: usize,
    pub images_changed: usize,
    pub tags_gained: u64,
    pub tags_lost: u64,
    /// Tags with any change, most changed (gained + lost) first.
    pub tags: Vec<TagChange>,
    /// The `top` images that changed most (gained + lost, then |ΔF1|), most first.
    pub images: Vec<ImageChange>,
}

fn by_hash(v: &VariantScores) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for (i, im) in v.images.iter().enumerate() {
        m.entry(im.image_hash.as_str()).or_insert(i);
    }
    m
}

struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
}

/// Micro P/R/F1 over per-tag counts.
fn micro(c: &[Counts]) -> Prf {
    let (tp, fp, fn_) = c
        .iter()
        .fold((0, 0, 0), |s, x| (s.0 + x.tp, s.1 + x.fp, s.2 + x.fn_));
    prf(tp, fp, fn_)
}

/// The tags of both sides, sorted and deduplicated, each with its global index.
struct TagIndex<'a> {
    names: Vec<&'a str>,
    idx: HashMap<&'a str, usize>,
}

impl<'a> TagIndex<'a> {
    /// The union of the tags of `va` and `vb`.
    fn new(va: &'a VariantScores, vb: &'a VariantScores) -> Self {
        let mut names: Vec<&str> = va
            .tags
            .iter()
            .chain(vb.tags.iter())
            .map(String::as_str)
            .collect();
        names.sort();
        names.dedup();
        let idx: HashMap<&str, usize> = names.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        TagIndex { names, idx }
    }

    /// Zeroed counts, one per tag.
    fn new_counts(&self) -> Vec<Counts> {
        (0..self.names.len())
            .map(|_| Counts {
                tp: 0,
                fp: 0,
                fn_: 0,
            })
            .collect()
    }

    /// The names of global tag indices.
    fn names_of(&self, ts: &[usize]) -> Vec<String> {
        ts.iter().map(|&t| self.names[t].to_string()).collect()
    }

    /// Per side: predicted and true tags (global indices) of an image, counting into `c`;
    /// returns the sorted predictions and, when labelled, the per-image F1.
    fn side(
        &self,
        v: &VariantScores,
        img: usize,
        t: f64,
        c: &mut [Counts],
    ) -> (Vec<usize>, Option<f64>) {
        let map = |k: u32| self.idx[v.tags[k as usize].as_str()];
        let mut pred: Vec<usize> = at_threshold(v, img, t).into_iter().map(map).collect();
        pred.sort();
        if !v.images[img].labelled {
            return (pred, None);
        }
        let truth: Vec<usize> = v.entries[img]
            .iter()
            .filter(|e| e.y)
            .map(|e| map(e.tag))
            .collect();
        let mut tp = 0;
        for &p in &pred {
            if truth.contains(&p) {
                c[p].tp += 1;
                tp += 1;
            } else {
                c[p].fp += 1;
            }
        }
        for &g in &truth {
            if pred.binary_search(&g).is_err() {
                c[g].fn_ += 1;
            }
        }
        let denom = (pred.len() + truth.len()) as f64;
        (
            pred,
            Some(if denom == 0.0 {
                0.0
            } else {
                2.0 * tp as f64 / denom
            }),
        )
    }
}

/// The items of `x` (sorted) that are not in `y` (sorted).
fn missing_from(x: &[usize], y: &[usize]) -> Vec<usize> {
    x.iter()
        .copied()
        .filter(|t| y.binary_search(t).is_err())
        .collect()
}

/// What the shared images add up to: per-tag counts on each side, per-tag gains and losses,
/// and the images whose result changed.
struct Tally<'a> {
    tags: TagIndex<'a>,
    ca: Vec<Counts>,
    cb: Vec<Counts>,
    gained: Vec<u64>,
    lost: Vec<u64>,
    images: Vec<ImageChange>,
}

impl<'a> Tally<'a> {
    /// An empty tally over `tags`.
    fn new(tags: TagIndex<'a>) -> Self {
        let n = tags.names.len();
        Tally {
            ca: tags.new_counts(),
            cb: tags.new_counts(),
            gained: vec![0u64; n],
            lost: vec![0u64; n],
            images: Vec::new(),
            tags,
        }
    }

    /// Compares shared image `(h, i, j)`: image `i` of `a` against image `j` of `b`.
    fn add(
        &mut self,
        (va, ta): (&VariantScores, f64),
        (vb, tb): (&VariantScores, f64),
        (h, i, j): (&str, usize, usize),
    ) {
        let (pa, fa) = self.tags.side(va, i, ta, &mut self.ca);
        let (pb, fb) = self.tags.side(vb, j, tb, &mut self.cb);
        let g = missing_from(&pb, &pa);
        let l = missing_from(&pa, &pb);
        for &t in &g {
            self.gained[t] += 1;
        }
        for &t in &l {
            self.lost[t] += 1;
        }
        if !g.is_empty() || !l.is_empty() || fa != fb {
            self.images.push(ImageChange {
                image_hash: h.to_string(),
                path_a: va.images[i].path.clone(),
                path_b: vb.images[j].path.clone(),
                gained: self.tags.names_of(&g),
                lost: self.tags.names_of(&l),
                f1_a: fa,
                f1_b: fb,
            });
        }
    }

    /// Tags with any change, most changed (gained + lost) first.
    fn tag_changes(&self) -> Vec<TagChange> {
        let mut tags: Vec<TagChange> = self
            .tags
            .names
            .iter()
            .enumerate()
            .filter_map(|(k, t)| {
                let (a, b) = (&self.ca[k], &self.cb[k]);
                let (pa, pb) = (prf(a.tp, a.fp, a.fn_), prf(b.tp, b.fp, b.fn_));
                let (sa, sb) = (a.tp + a.fn_, b.tp + b.fn_);
                let changed = self.gained[k] + self.lost[k] > 0 || sa != sb || pa != pb;
                changed.then(|| TagChange {
                    tag: t.to_string(),
                    gained: self.gained[k],
                    lost: self.lost[k],
                    precision_a: pa.precision,
                    precision_b: pb.precision,
                    recall_a: pa.recall,
                    recall_b: pb.recall,
                    support_a: sa,
                    support_b: sb,
                    d_precision: pb.precision - pa.precision,
                    d_recall: pb.recall - pa.recall,
                    d_support: sb as i64 - sa as i64,
                })
            })
            .collect();
        tags.sort_by(|x, y| {
            (y.gained + y.lost)
                .cmp(&(x.gained + x.lost))
                .then_with(|| x.tag.cmp(&y.tag))
        });
        tags
    }
}

/// Sorts changed images most changed (gained + lost, then |ΔF1|) first and keeps the `top`.
fn top_images(mut images: Vec<ImageChange>, top: usize) -> Vec<ImageChange> {
    let dist = |c: &ImageChange| match (c.f1_a, c.f1_b) {
        (Some(x), Some(y)) => (y - x).abs(),
        _ => 0.0,
    };
    images.sort_by(|x, y| {
        (y.gained.len() + y.lost.len())
            .cmp(&(x.gained.len() + x.lost.len()))
            .then_with(|| dist(y).total_cmp(&dist(x)))
            .then_with(|| x.path_a.cmp(&y.path_a))
    });
    images.truncate(top);
    images
}

/// One side's summary from its counts.
fn side(v: &VariantScores, run_id: &str, threshold: f64, c: &[Counts]) -> Side {
    Side {
        run_id: run_id.to_string(),
        variant: v.variant.clone(),
        threshold,
        images: v.images.len(),
        micro: micro(c),
    }
}

/// Diffs `b` against `a`, each at its threshold (ratings by argmax). `None` when no image is
/// shared.
pub fn diff(
    a: (&VariantScores, &str, f64),
    b: (&VariantScores, &str, f64),
    top: usize,
) -> Option<Diff> {
    let (va, run_a, ta) = a;
    let (vb, run_b, tb) = b;
    let ha = by_hash(va);
    let hb = by_hash(vb);
    let shared: Vec<(&str, usize, usize)> = ha
        .iter()
        .filter_map(|(h, &i)| hb.get(h).map(|&j| (*h, i, j)))
        .collect();
    if shared.is_empty() {
        return None;
    }
    let mut tally = Tally::new(TagIndex::new(va, vb));
    for &s in &shared {
        tally.add((va, ta), (vb, tb), s);
    }
    let tags = tally.tag_changes();
    let images = std::mem::take(&mut tally.images);
    let images_changed = images.len();
    Some(Diff {
        a: side(va, run_a, ta, &tally.ca),
        b: side(vb, run_b, tb, &tally.cb),
        shared_images: shared.len(),
        only_a: ha.len() - shared.len(),
        only_b: hb.len() - shared.len(),
        images_changed,
        tags_gained: tally.gained.iter().sum(),
        tags_lost: tally.lost.iter().sum(),
        tags,
        images: top_images(images, top),
    })
}
