//! A variant's stored scores and ground truth, loaded once from a run's tables (DuckDB) into
//! memory, for the analyses (`sweep`, `policy`, `bootstrap`, `diff`, `stats`, `group`).
//!
//! The same decisions as `load` (and `docs/metrics.md`): the sample is an image *file*; only
//! files with a finished cell are loaded (and, for scoring, ground truth in the scored source);
//! a tag is predicted when its float32 score ≥ the threshold as float32; ratings (category
//! `rating`) are predicted by argmax (ties: the smaller tag name), whatever the threshold.

use std::collections::HashMap;

use anyhow::Result;

use crate::config::Category;
use crate::store::duck::{lit, Connection};

/// One (image, tag) pair with a stored score or a ground-truth label (or both).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Index into [`VariantScores::tags`].
    pub tag: u32,
    /// The stored score (0 when none was stored).
    pub score: f32,
    /// In the ground truth.
    pub y: bool,
}

/// One image file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub path: String,
    pub image_hash: String,
    /// Has ground truth in the scored source.
    pub labelled: bool,
}

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

/// Loads `variant` from the run whose views are open on `conn`
/// (`crate::store::tables::open_run`). With `labelled_only`, only images with ground truth
/// in `source` are loaded (the scored images of `iw-lab metrics`); otherwise every image with
/// a finished cell (unlabelled ones have no `y`).
pub fn load_variant(
    conn: &Connection<'_>,
    source: Option<&str>,
    variant: &str,
    labelled_only: bool,
) -> Result<VariantScores> {
    let v = lit(variant);
    let src = lit(source.unwrap_or(""));
    let filter = if labelled_only { "AND i.labelled" } else { "" };
    let labelled = if source.is_some() {
        "coalesce(i.labelled, false)"
    } else {
        "false"
    };
    conn.execute(&format!(
        "CREATE OR REPLACE TEMP TABLE a_img AS
           SELECT path, any_value(image_hash) AS image_hash, bool_or(labelled) AS labelled,
                  (row_number() OVER (ORDER BY path)) - 1 AS id
           FROM (SELECT DISTINCT c.path, i.image_hash, {labelled} AS labelled
                 FROM cells c JOIN images i ON i.path = c.path
                 WHERE c.variant = {v} {filter})
           GROUP BY path"
    ))?;
    let mut images = Vec::new();
    conn.query("SELECT path, image_hash, labelled FROM a_img ORDER BY id")?
        .for_each_row(|r| {
            images.push(ImageInfo {
                path: r.str(0)?.unwrap_or_default().to_string(),
                image_hash: r.str(1)?.unwrap_or_default().to_string(),
                labelled: r.bool(2)?.unwrap_or(false),
            });
            Ok(())
        })?;
    // Tags are interned here in first-seen order, then renumbered in name order.
    let mut names: Vec<String> = Vec::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut intern = |t: &str| -> u32 {
        if let Some(&k) = ids.get(t) {
            return k;
        }
        let k = names.len() as u32;
        names.push(t.to_string());
        ids.insert(t.to_string(), k);
        k
    };
    let mut cats: HashMap<u32, Option<Category>> = HashMap::new();
    let mut entries: Vec<Vec<Entry>> = vec![Vec::new(); images.len()];
    conn.query(&format!(
        "SELECT e.id, o.tag, max(o.score)::FLOAT, any_value(o.category)
         FROM outputs o JOIN a_img e ON o.path = e.path
         SEMI JOIN cells c ON o.variant = c.variant AND o.path = c.path AND o.cache_key = c.cache_key
         WHERE o.variant = {v} AND o.tag IS NOT NULL
         GROUP BY e.id, o.tag"
    ))?
    .for_each_row(|r| {
        let i = r.i64(0)?.unwrap_or(0) as usize;
        let t = intern(r.str(1)?.unwrap_or_default());
        cats.entry(t)
            .or_insert_with(|| r.str(3).ok().flatten().and_then(Category::parse));
        entries[i].push(Entry {
            tag: t,
            score: r.f64(2)?.unwrap_or(0.0) as f32,
            y: false,
        });
        Ok(())
    })?;
    for es in &mut entries {
        es.sort_by_key(|e| e.tag);
    }
    let mut truth: Vec<(usize, u32)> = Vec::new();
    conn.query(&format!(
        "SELECT DISTINCT e.id, g.tag FROM ground_truth g JOIN a_img e ON e.path = g.path
         WHERE g.source = {src} AND g.tag IS NOT NULL AND e.labelled"
    ))?
    .for_each_row(|r| {
        truth.push((
            r.i64(0)?.unwrap_or(0) as usize,
            intern(r.str(1)?.unwrap_or_default()),
        ));
        Ok(())
    })?;
    conn.execute("DROP TABLE a_img")?;
    let mut extra: Vec<Vec<Entry>> = vec![Vec::new(); images.len()];
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
    // renumber in name order
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
    let mut new_id = vec![0u32; names.len()];
    for (n, &old) in order.iter().enumerate() {
        new_id[old as usize] = n as u32;
    }
    let categories: Vec<Option<Category>> = order
        .iter()
        .map(|&old| cats.get(&old).copied().flatten())
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
    Ok(out)
}
