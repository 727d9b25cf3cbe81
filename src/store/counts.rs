//! Metric counts, counted in DuckDB over the views of one run (`tables::open_run`): its
//! `cells`, `outputs`, `images` and `ground_truth`. Per unit scored (a variant, or one repeat
//! of it) and threshold: confusion counts per tag and per image, the images scored, the score
//! groups average precision is computed from, and the negative-tag pairs; `analysis::load`
//! turns them into metrics.
//!
//! Decisions, stated once (`docs/metrics.md`): a tag is predicted when its float32 score ≥ the
//! threshold (compared in float32, as NumPy 2 compares a float32 array with a Python float); a
//! rating (category `rating`) is predicted when it is the image's top-scoring rating, whatever
//! the threshold; the unit scored is the image *file* (two files with the same content are two
//! samples); only files with ground truth in the scored source and a finished cell are scored.

use std::collections::HashMap;

use anyhow::Result;

use super::duck::{self, lit, Connection, Row};

/// Counts for one tag at one threshold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagCounts {
    pub tag: String,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

/// Counts for one image at one threshold (per unit and threshold, every scored image in path
/// order).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleCounts {
    pub tp: u64,
    pub pred: u64,
    pub truth: u64,
}

/// One unit counted: a variant, or one repeat of a variant scored per repeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The name its counts are keyed by.
    pub name: String,
    pub thresholds: Vec<f64>,
    /// The variant whose cells and outputs it counts.
    pub variant: String,
    /// Only this repeat's (`None`: every repeat's).
    pub repeat: Option<u32>,
}

/// A unit's name and a threshold's bits: the key of counts at a threshold.
pub type AtThreshold = (String, u64);

/// Images of one score (all with no stored score are in the score-0 group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreGroup {
    pub score: f64,
    pub images: u64,
    /// Those with the tag in the ground truth.
    pub positives: u64,
}

/// The stored scores of one tag of one unit, grouped, highest score first; only for tags with
/// at least one positive.
#[derive(Debug, Clone, PartialEq)]
pub struct TagScores {
    pub unit: String,
    pub tag: String,
    pub groups: Vec<ScoreGroup>,
}

/// (Image, negative tag) pairs over the scored images, and how many were predicted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NegativeCounts {
    pub pairs: u64,
    pub predicted: u64,
}

/// Everything counted for a set of units.
#[derive(Debug, Clone, Default)]
pub struct Counted {
    /// Scored images per unit.
    pub images: HashMap<String, usize>,
    /// Per (unit, threshold): counts per tag.
    pub tags: HashMap<AtThreshold, Vec<TagCounts>>,
    /// Per (unit, threshold): counts per scored image.
    pub samples: HashMap<AtThreshold, Vec<SampleCounts>>,
    /// Per unit and tag with a positive: its stored scores, grouped.
    pub ap_groups: Vec<TagScores>,
    /// Per (unit, threshold): negative-tag pairs; `None` when the source has no negative
    /// tags stored.
    pub negative: Option<HashMap<AtThreshold, NegativeCounts>>,
}

/// Counts `units` against ground-truth `source` in the run whose views are open on `conn`.
/// With `only`, only those image paths are scored.
pub fn count(
    conn: &Connection<'_>,
    source: &str,
    units: &[Unit],
    only: Option<&[String]>,
) -> Result<Counted> {
    fill_units(conn, units, only)?;
    join_scores_and_truth(conn, source, only.is_some())?;
    let images = count_images(conn)?;
    let ap_groups = tag_scores(conn)?;
    let counted = Counted {
        tags: tag_counts(conn)?,
        samples: sample_counts(conn)?,
        negative: negative_counts(conn, source)?,
        images,
        ap_groups,
    };
    conn.execute(
        "DROP TABLE IF EXISTS m_thr; DROP TABLE IF EXISTS m_ev; DROP TABLE IF EXISTS m_j; DROP TABLE IF EXISTS m_unit; DROP TABLE IF EXISTS m_only;",
    )?;
    Ok(counted)
}

/// Image paths that have ground truth in the scored source and a finished cell of `variant`,
/// sorted (the images a variant is scored on).
pub fn scored_images(conn: &Connection<'_>, variant: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    conn.query(&format!(
        "SELECT DISTINCT c.path FROM cells c JOIN images i ON i.path = c.path
         WHERE i.labelled AND c.variant = {} ORDER BY 1",
        lit(variant)
    ))?
    .for_each_row(|r| {
        out.push(r.str(0)?.unwrap_or_default().to_string());
        Ok(())
    })?;
    Ok(out)
}

/// The temporary tables of what is counted: thresholds per unit (`m_thr`), the units
/// (`m_unit`) and the paths scored when not all are (`m_only`).
fn fill_units(conn: &Connection<'_>, units: &[Unit], only: Option<&[String]>) -> Result<()> {
    conn.execute(
        "DROP TABLE IF EXISTS m_thr; CREATE TEMP TABLE m_thr (variant VARCHAR, threshold DOUBLE);
         DROP TABLE IF EXISTS m_unit; CREATE TEMP TABLE m_unit (unit VARCHAR, variant VARCHAR, rep INTEGER);
         DROP TABLE IF EXISTS m_only; CREATE TEMP TABLE m_only (path VARCHAR);",
    )?;
    let mut app = conn.appender("m_thr")?;
    for u in units {
        for t in &u.thresholds {
            app.str(&u.name)?.f64(*t)?;
            app.end_row()?;
        }
    }
    app.finish()?;
    let mut app = conn.appender("m_unit")?;
    for u in units {
        app.str(&u.name)?.str(&u.variant)?;
        match u.repeat {
            Some(r) => app.i32(r as i32)?,
            None => app.null()?,
        };
        app.end_row()?;
    }
    app.finish()?;
    if let Some(paths) = only {
        let mut app = conn.appender("m_only")?;
        for p in paths {
            app.str(p)?;
            app.end_row()?;
        }
        app.finish()?;
    }
    Ok(())
}

/// The scored (unit, image) pairs (`m_ev`), and every (unit, image, tag) with a stored score
/// or a ground-truth label (`m_j`).
fn join_scores_and_truth(conn: &Connection<'_>, source: &str, only: bool) -> Result<()> {
    let src = lit(source);
    let only_filter = if only {
        "AND c.path IN (SELECT path FROM m_only)"
    } else {
        ""
    };
    // `variant` below is the unit scored: a variant, or one repeat of it.
    conn.execute(&format!(
        "CREATE OR REPLACE TEMP TABLE m_ev AS
           SELECT DISTINCT u.unit AS variant, c.path FROM cells c
           JOIN m_unit u ON c.variant = u.variant AND (u.rep IS NULL OR c.repeat = u.rep)
           JOIN images i ON i.path = c.path
           WHERE i.labelled {only_filter};
         CREATE OR REPLACE TEMP TABLE m_j AS
         WITH sc AS (
           SELECT u.unit AS variant, o.path, o.tag, max(o.score) AS score, any_value(o.category) = 'rating' AS is_rating
           FROM outputs o
           JOIN m_unit u ON o.variant = u.variant AND (u.rep IS NULL OR o.repeat = u.rep)
           SEMI JOIN m_ev e ON u.unit = e.variant AND o.path = e.path
           SEMI JOIN cells c ON o.variant = c.variant AND o.path = c.path AND o.cache_key = c.cache_key AND o.repeat = c.repeat
           GROUP BY ALL
         ), ranked AS (
           SELECT *, is_rating AND row_number() OVER (
               PARTITION BY variant, path, is_rating ORDER BY score DESC, tag) = 1 AS top_rating
           FROM sc
         ), gt AS (
           SELECT e.variant, g.path, g.tag
           FROM (SELECT DISTINCT path, tag FROM ground_truth WHERE source = {src} AND tag IS NOT NULL) g
           JOIN m_ev e ON e.path = g.path
         )
         SELECT coalesce(s.variant, g.variant) AS variant,
                coalesce(s.path, g.path) AS path,
                coalesce(s.tag, g.tag) AS tag,
                coalesce(s.score, 0)::FLOAT AS score,
                coalesce(s.is_rating, false) AS is_rating,
                coalesce(s.top_rating, false) AS top_rating,
                g.tag IS NOT NULL AS y
         FROM ranked s FULL OUTER JOIN gt g
           ON s.variant = g.variant AND s.path = g.path AND s.tag = g.tag;"
    ))?;
    Ok(())
}

/// Whether a (unit, image, tag) of `m_j` (as `j`) is predicted at threshold `t.threshold`.
const PRED: &str = "CASE WHEN j.is_rating THEN j.top_rating ELSE j.score >= t.threshold::FLOAT END";

/// The key of a row whose first two columns are a unit and a threshold.
fn at_threshold(r: &Row<'_>) -> duck::Result<AtThreshold> {
    Ok((
        r.str(0)?.unwrap_or_default().to_string(),
        r.f64(1)?.unwrap_or(0.0).to_bits(),
    ))
}

/// Per (unit, threshold): negative-tag pairs over the scored images and how many of them were
/// predicted; `None` when the source has no negative tags stored.
fn negative_counts(
    conn: &Connection<'_>,
    source: &str,
) -> Result<Option<HashMap<AtThreshold, NegativeCounts>>> {
    let neg = lit(&crate::dataset::ground_truth::negative_source(source));
    let mut any = false;
    conn.query(&format!(
        "SELECT count(*) FROM ground_truth WHERE source = {neg}"
    ))?
    .for_each_row(|r| {
        any = r.i64(0)?.unwrap_or(0) > 0;
        Ok(())
    })?;
    if !any {
        return Ok(None);
    }
    let sql = format!(
        "WITH neg AS (
           SELECT DISTINCT e.variant, g.path, g.tag
           FROM ground_truth g JOIN m_ev e ON e.path = g.path
           WHERE g.source = {neg} AND g.tag IS NOT NULL)
         SELECT t.variant, t.threshold, count(n.tag),
                count(*) FILTER (WHERE j.tag IS NOT NULL AND {PRED})
         FROM m_thr t
         LEFT JOIN neg n ON n.variant = t.variant
         LEFT JOIN m_j j ON j.variant = n.variant AND j.path = n.path AND j.tag = n.tag
         GROUP BY ALL"
    );
    let mut out = HashMap::new();
    conn.query(&sql)?.for_each_row(|r| {
        let counts = NegativeCounts {
            pairs: r.i64(2)?.unwrap_or(0) as u64,
            predicted: r.i64(3)?.unwrap_or(0) as u64,
        };
        out.insert(at_threshold(r)?, counts);
        Ok(())
    })?;
    Ok(Some(out))
}

/// Scored images per unit.
fn count_images(conn: &Connection<'_>) -> Result<HashMap<String, usize>> {
    let mut out = HashMap::new();
    conn.query("SELECT variant, count(*) FROM m_ev GROUP BY variant")?
        .for_each_row(|r| {
            out.insert(
                r.str(0)?.unwrap_or_default().to_string(),
                r.i64(1)?.unwrap_or(0) as usize,
            );
            Ok(())
        })?;
    Ok(out)
}

/// Per (unit, threshold): true positives, false positives and false negatives per tag.
fn tag_counts(conn: &Connection<'_>) -> Result<HashMap<AtThreshold, Vec<TagCounts>>> {
    let sql = format!(
        "SELECT variant, threshold, tag,
                count(*) FILTER (WHERE pred AND y), count(*) FILTER (WHERE pred AND NOT y), count(*) FILTER (WHERE NOT pred AND y)
         FROM (SELECT j.variant, t.threshold, j.tag, j.y, {PRED} AS pred FROM m_j j JOIN m_thr t ON j.variant = t.variant)
         GROUP BY ALL"
    );
    let mut out: HashMap<AtThreshold, Vec<TagCounts>> = HashMap::new();
    conn.query(&sql)?.for_each_row(|r| {
        out.entry(at_threshold(r)?).or_default().push(TagCounts {
            tag: r.str(2)?.unwrap_or_default().to_string(),
            tp: r.i64(3)?.unwrap_or(0) as u64,
            fp: r.i64(4)?.unwrap_or(0) as u64,
            fn_: r.i64(5)?.unwrap_or(0) as u64,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Per (unit, threshold): true positives, predictions and labels per scored image.
fn sample_counts(conn: &Connection<'_>) -> Result<HashMap<AtThreshold, Vec<SampleCounts>>> {
    // every scored image, those with neither a prediction nor a label as zeros, in path
    // order: the order the bootstrap over images draws from (`analysis::bootstrap`)
    let sql = format!(
        "SELECT variant, threshold,
                count(*) FILTER (WHERE pred AND y), count(*) FILTER (WHERE pred), count(*) FILTER (WHERE y)
         FROM (SELECT e.variant, t.threshold, e.path, j.y, {PRED} AS pred
               FROM m_ev e JOIN m_thr t ON e.variant = t.variant
               LEFT JOIN m_j j ON j.variant = e.variant AND j.path = e.path)
         GROUP BY variant, threshold, path
         ORDER BY variant, threshold, path"
    );
    let mut out: HashMap<AtThreshold, Vec<SampleCounts>> = HashMap::new();
    conn.query(&sql)?.for_each_row(|r| {
        out.entry(at_threshold(r)?).or_default().push(SampleCounts {
            tp: r.i64(2)?.unwrap_or(0) as u64,
            pred: r.i64(3)?.unwrap_or(0) as u64,
            truth: r.i64(4)?.unwrap_or(0) as u64,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The stored scores of each (unit, tag) with at least one positive, grouped by score,
/// highest first (images without a stored score for the tag are not counted here).
fn tag_scores(conn: &Connection<'_>) -> Result<Vec<TagScores>> {
    let sql = "WITH pos AS (SELECT DISTINCT variant, tag FROM m_j WHERE y)
               SELECT j.variant, j.tag, j.score, count(*), count(*) FILTER (WHERE j.y)
               FROM m_j j SEMI JOIN pos p ON j.variant = p.variant AND j.tag = p.tag
               GROUP BY ALL ORDER BY j.variant, j.tag, j.score DESC";
    let mut out: Vec<TagScores> = Vec::new();
    conn.query(sql)?.for_each_row(|r| {
        let unit = r.str(0)?.unwrap_or_default();
        let tag = r.str(1)?.unwrap_or_default();
        if out.last().is_none_or(|s| s.unit != unit || s.tag != tag) {
            out.push(TagScores {
                unit: unit.to_string(),
                tag: tag.to_string(),
                groups: Vec::new(),
            });
        }
        out.last_mut().expect("pushed").groups.push(ScoreGroup {
            score: r.f64(2)?.unwrap_or(0.0),
            images: r.i64(3)?.unwrap_or(0) as u64,
            positives: r.i64(4)?.unwrap_or(0) as u64,
        });
        Ok(())
    })?;
    Ok(out)
}
