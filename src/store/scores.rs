//! A variant's stored scores and ground-truth labels, read from the views of one run
//! (`tables::open_run`: `cells`, `images`, `outputs`, `ground_truth`) for the in-memory
//! analyses (`analysis::scores::VariantScores`).
//!
//! The same decisions as `counts` (and `docs/metrics.md`): the sample is an image *file*; only
//! files with a finished cell are read (and, for scoring, ground truth in the scored source);
//! a tag's score is its highest over the cell's repeats.

use std::collections::HashMap;

use anyhow::Result;

use super::duck::{lit, Connection};
use crate::config::Category;

/// One (image, tag) pair with a stored score or a ground-truth label (or both).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Index into the variant's tags.
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

/// A variant's scores and labels as stored, tags numbered in the order they were first read.
#[derive(Debug, Clone, Default)]
pub struct StoredScores {
    /// Sorted by path.
    pub images: Vec<ImageInfo>,
    /// Tag names, by number.
    pub tags: Vec<String>,
    /// Per tag number: the category the variant stored the tag under; `None` for a
    /// ground-truth tag the variant never output.
    pub categories: Vec<Option<Category>>,
    /// Per image (same order as `images`): its stored scores (`y` false), in no order.
    pub entries: Vec<Vec<Entry>>,
    /// (image, tag number) of each ground-truth label of a labelled image.
    pub truth: Vec<(usize, u32)>,
}

/// A variant's scores being read, with its tags' numbers by name.
#[derive(Default)]
struct Reading {
    out: StoredScores,
    numbers: HashMap<String, u32>,
}

impl Reading {
    /// The tag's number, a new one (stored under `category`) for a tag not read yet.
    fn number(&mut self, tag: &str, category: impl FnOnce() -> Option<Category>) -> u32 {
        if let Some(&k) = self.numbers.get(tag) {
            return k;
        }
        let k = self.out.tags.len() as u32;
        self.out.tags.push(tag.to_string());
        self.out.categories.push(category());
        self.numbers.insert(tag.to_string(), k);
        k
    }
}

/// Reads `variant` from the run whose views are open on `conn`. With `labelled_only`, only
/// images with ground truth in `source` are read (the scored images of `iw-lab metrics`);
/// otherwise every image with a finished cell (unlabelled ones have no labels).
pub fn variant_scores(
    conn: &Connection<'_>,
    source: Option<&str>,
    variant: &str,
    labelled_only: bool,
) -> Result<StoredScores> {
    select_images(conn, source.is_some(), variant, labelled_only)?;
    let mut reading = Reading::default();
    reading.out.images = images(conn)?;
    read_outputs(conn, variant, &mut reading)?;
    read_truth(conn, source.unwrap_or(""), &mut reading)?;
    conn.execute("DROP TABLE a_img")?;
    Ok(reading.out)
}

/// The images read, numbered in path order (`a_img`).
fn select_images(
    conn: &Connection<'_>,
    has_source: bool,
    variant: &str,
    labelled_only: bool,
) -> Result<()> {
    let filter = if labelled_only { "AND i.labelled" } else { "" };
    let labelled = if has_source {
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
                 WHERE c.variant = {} {filter})
           GROUP BY path",
        lit(variant)
    ))?;
    Ok(())
}

/// The images of `a_img`, in order.
fn images(conn: &Connection<'_>) -> Result<Vec<ImageInfo>> {
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
    Ok(images)
}

/// The variant's scores of finished cells, per image of `a_img`.
fn read_outputs(conn: &Connection<'_>, variant: &str, reading: &mut Reading) -> Result<()> {
    reading.out.entries = vec![Vec::new(); reading.out.images.len()];
    conn.query(&format!(
        "SELECT e.id, o.tag, max(o.score)::FLOAT, any_value(o.category)
         FROM outputs o JOIN a_img e ON o.path = e.path
         SEMI JOIN cells c ON o.variant = c.variant AND o.path = c.path AND o.cache_key = c.cache_key
         WHERE o.variant = {} AND o.tag IS NOT NULL
         GROUP BY e.id, o.tag",
        lit(variant)
    ))?
    .for_each_row(|r| {
        let i = r.i64(0)?.unwrap_or(0) as usize;
        let t = reading.number(r.str(1)?.unwrap_or_default(), || {
            r.str(3).ok().flatten().and_then(Category::parse)
        });
        reading.out.entries[i].push(Entry {
            tag: t,
            score: r.f64(2)?.unwrap_or(0.0) as f32,
            y: false,
        });
        Ok(())
    })?;
    Ok(())
}

/// The ground-truth labels in `source` of the labelled images of `a_img`.
fn read_truth(conn: &Connection<'_>, source: &str, reading: &mut Reading) -> Result<()> {
    conn.query(&format!(
        "SELECT DISTINCT e.id, g.tag FROM ground_truth g JOIN a_img e ON e.path = g.path
         WHERE g.source = {} AND g.tag IS NOT NULL AND e.labelled",
        lit(source)
    ))?
    .for_each_row(|r| {
        let i = r.i64(0)?.unwrap_or(0) as usize;
        let t = reading.number(r.str(1)?.unwrap_or_default(), || None);
        reading.out.truth.push((i, t));
        Ok(())
    })?;
    Ok(())
}
