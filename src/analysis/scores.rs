//! A variant's scores and ground truth in memory, assembled once from what the store read of a
//! run (`store::scores`), for the analyses (`sweep`, `policy`, `bootstrap`, `diff`, `stats`,
//! `group`).
//!
//! The same decisions as `load` (and `docs/metrics.md`): the sample is an image *file*; only
//! files with a finished cell are loaded (and, for scoring, ground truth in the scored source);
//! a tag is predicted when its float32 score ≥ the threshold as float32; ratings (category
//! `rating`) are predicted by argmax (ties: the smaller tag name), whatever the threshold.

use std::collections::HashMap;

use crate::config::Category;
use crate::store::scores::StoredScores;

pub use crate::store::scores::{Entry, ImageInfo};

/// A variant's scores over its images.
#[derive(Debug, Clone, Default)]
pub struct VariantScores {
    pub variant: String,
    /// Sorted by path.
    pub images: Vec<ImageInfo>,
    /// Sorted by name.
    pub tags: Vec<String>,
    /// The category the variant stored the tag under; `None` for a ground-truth tag the variant
    /// never output.
    pub categories: Vec<Option<Category>>,
    /// Per image (same order as `images`): its entries, by tag index.
    pub entries: Vec<Vec<Entry>>,
    /// Per image: the top-scoring rating (argmax, ties to the smaller name), if any.
    pub top_rating: Vec<Option<u32>>,
}

impl VariantScores {
    pub fn is_rating(&self, tag: u32) -> bool {
        self.categories[tag as usize] == Some(Category::Rating)
    }

    /// Whether `e` (of image `img`) is predicted at threshold `t` (ratings by argmax).
    pub fn predicted(&self, img: usize, e: &Entry, t: f64) -> bool {
        if self.is_rating(e.tag) {
            self.top_rating[img] == Some(e.tag)
        } else {
            e.score > 0.0 && e.score >= t as f32
        }
    }

    /// Tag index by name.
    pub fn tag_index(&self) -> HashMap<&str, u32> {
        self.tags
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect()
    }

    /// Indices of the labelled images.
    pub fn labelled(&self) -> Vec<usize> {
        (0..self.images.len())
            .filter(|&i| self.images[i].labelled)
            .collect()
    }

    fn finish(&mut self) {
        for e in &mut self.entries {
            e.sort_by_key(|e| e.tag);
        }
        self.top_rating = self
            .entries
            .iter()
            .map(|es| {
                let mut best: Option<&Entry> = None;
                for e in es
                    .iter()
                    .filter(|e| self.categories[e.tag as usize] == Some(Category::Rating))
                {
                    // tags are in name order, so the first of equal scores is the smaller name
                    if best.is_none_or(|b| e.score > b.score) {
                        best = Some(e);
                    }
                }
                best.map(|b| b.tag)
            })
            .collect();
    }
}

impl VariantScores {
    /// `variant`'s scores from what the store read of it: labels marked on the scored entries
    /// (a label with no stored score is an entry of score 0), tags numbered in name order,
    /// each image's top rating found.
    pub fn from_stored(variant: &str, stored: StoredScores) -> VariantScores {
        let StoredScores {
            images,
            tags: names,
            categories: stored_categories,
            mut entries,
            truth,
        } = stored;
        for es in &mut entries {
            es.sort_by_key(|e| e.tag);
        }
        let extra = mark_truth(&mut entries, truth);
        let order = name_order(&names);
        let mut new_id = vec![0u32; names.len()];
        for (n, &old) in order.iter().enumerate() {
            new_id[old as usize] = n as u32;
        }
        let categories: Vec<Option<Category>> = order
            .iter()
            .map(|&old| stored_categories[old as usize])
            .collect();
        let tags: Vec<String> = order
            .iter()
            .map(|&old| names[old as usize].clone())
            .collect();
        for (es, more) in entries.iter_mut().zip(extra) {
            es.extend(more);
            for e in es.iter_mut() {
                e.tag = new_id[e.tag as usize];
            }
        }
        let mut out = VariantScores {
            variant: variant.to_string(),
            images,
            tags,
            categories,
            entries,
            top_rating: Vec::new(),
        };
        out.finish();
        out
    }
}

/// Marks the labels `(image, tag)` on the image's entries (sorted by tag); returns, per image,
/// the labels with no stored score, as entries of score 0.
fn mark_truth(entries: &mut [Vec<Entry>], truth: Vec<(usize, u32)>) -> Vec<Vec<Entry>> {
    let mut extra: Vec<Vec<Entry>> = vec![Vec::new(); entries.len()];
    for (i, t) in truth {
        match entries[i].binary_search_by_key(&t, |e| e.tag) {
            Ok(k) => entries[i][k].y = true,
            Err(_) => extra[i].push(Entry {
                tag: t,
                score: 0.0,
                y: true,
            }),
        }
    }
    extra
}

/// Tag numbers in the order of their names.
fn name_order(names: &[String]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
    order
}
