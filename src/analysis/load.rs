//! Counting in DuckDB: turns a run's stored outputs and ground truth into the counts the pure
//! metric functions need. Never re-runs a model.
//!
//! Decisions, stated once: a tag is predicted when its float32 score ≥ the threshold (compared
//! in float32, as NumPy 2 compares a float32 array with a Python float); a rating (category
//! `rating`) is predicted when it is the image's top-scoring rating, whatever the threshold;
//! the unit scored is the image *file* (two files with the same content are two samples);
//! only files with ground truth in the scored source and a finished cell are scored.

use std::collections::HashMap;

use anyhow::Result;

use super::metrics::{
    assemble, average_precision, NegativeRate, SampleCounts, TagCounts, VariantMetrics,
};
use crate::duck::{lit, Connection};

/// Metrics for each (variant, threshold) of a run whose views are open on `conn`
/// (`crate::store::tables::open_run`).
pub fn run_metrics(
    conn: &Connection<'_>,
    source: &str,
    variants: &[(String, Vec<f64>)],
) -> Result<Vec<VariantMetrics>> {
    prepare(conn, source, variants)?;
    let n_images = count_images(conn)?;
    let ap = tag_ap(conn, &n_images)?;
    let tag_counts = tag_counts(conn)?;
    let sample_counts = sample_counts(conn)?;
    let negative = negative_rates(conn, source)?;
    let mut out = Vec::new();
    for (variant, thresholds) in variants {
        for &t in thresholds {
            let key = (variant.clone(), t.to_bits());
            let tags = tag_counts.get(&key).cloned().unwrap_or_default();
            let samples = sample_counts.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let n = n_images.get(variant).copied().unwrap_or(0);
            let empty = HashMap::new();
            let mut m = assemble(
                variant,
                t,
                tags,
                samples,
                n,
                ap.get(variant).unwrap_or(&empty),
            );
            if let Some(rates) = &negative {
                let (pairs, predicted) = rates.get(&key).copied().unwrap_or((0, 0));
                m.negative = Some(NegativeRate {
                    pairs,
                    predicted,
                    fp_rate: if pairs == 0 {
                        0.0
                    } else {
                        predicted as f64 / pairs as f64
                    },
                });
            }
            out.push(m);
        }
    }
    conn.execute(
        "DROP TABLE IF EXISTS m_thr; DROP TABLE IF EXISTS m_ev; DROP TABLE IF EXISTS m_j;",
    )?;
    Ok(out)
}

fn prepare(conn: &Connection<'_>, source: &str, variants: &[(String, Vec<f64>)]) -> Result<()> {
    conn.execute(
        "DROP TABLE IF EXISTS m_thr; CREATE TEMP TABLE m_thr (variant VARCHAR, threshold DOUBLE)",
    )?;
    {
        let mut app = conn.appender("m_thr")?;
        for (v, ts) in variants {
            for t in ts {
                app.str(v)?.f64(*t)?;
                app.end_row()?;
            }
        }
        app.finish()?;
    }
    let src = lit(source);
    conn.execute(&format!(
        "CREATE OR REPLACE TEMP TABLE m_ev AS
           SELECT DISTINCT c.variant, c.path FROM cells c
           JOIN images i ON i.path = c.path
           WHERE i.labelled AND c.variant IN (SELECT variant FROM m_thr);
         CREATE OR REPLACE TEMP TABLE m_j AS
         WITH sc AS (
           SELECT o.variant, o.path, o.tag, max(o.score) AS score, any_value(o.category) = 'rating' AS is_rating
           FROM outputs o
           SEMI JOIN m_ev e ON o.variant = e.variant AND o.path = e.path
           SEMI JOIN cells c ON o.variant = c.variant AND o.path = c.path AND o.cache_key = c.cache_key
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

/// Per (variant, threshold): (image, negative tag) pairs over the scored images and how many
/// of them were predicted; `None` when the source has no negative tags stored.
#[allow(clippy::type_complexity)]
fn negative_rates(
    conn: &Connection<'_>,
    source: &str,
) -> Result<Option<HashMap<(String, u64), (u64, u64)>>> {
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
        let key = (
            r.str(0)?.unwrap_or_default().to_string(),
            r.f64(1)?.unwrap_or(0.0).to_bits(),
        );
        out.insert(
            key,
            (r.i64(2)?.unwrap_or(0) as u64, r.i64(3)?.unwrap_or(0) as u64),
        );
        Ok(())
    })?;
    Ok(Some(out))
}

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

const PRED: &str = "CASE WHEN j.is_rating THEN j.top_rating ELSE j.score >= t.threshold::FLOAT END";

fn tag_counts(conn: &Connection<'_>) -> Result<HashMap<(String, u64), Vec<TagCounts>>> {
    let sql = format!(
        "SELECT variant, threshold, tag,
                count(*) FILTER (WHERE pred AND y), count(*) FILTER (WHERE pred AND NOT y), count(*) FILTER (WHERE NOT pred AND y)
         FROM (SELECT j.variant, t.threshold, j.tag, j.y, {PRED} AS pred FROM m_j j JOIN m_thr t ON j.variant = t.variant)
         GROUP BY ALL"
    );
    let mut out: HashMap<(String, u64), Vec<TagCounts>> = HashMap::new();
    conn.query(&sql)?.for_each_row(|r| {
        let key = (
            r.str(0)?.unwrap_or_default().to_string(),
            r.f64(1)?.unwrap_or(0.0).to_bits(),
        );
        out.entry(key).or_default().push(TagCounts {
            tag: r.str(2)?.unwrap_or_default().to_string(),
            tp: r.i64(3)?.unwrap_or(0) as u64,
            fp: r.i64(4)?.unwrap_or(0) as u64,
            fn_: r.i64(5)?.unwrap_or(0) as u64,
        });
        Ok(())
    })?;
    Ok(out)
}

fn sample_counts(conn: &Connection<'_>) -> Result<HashMap<(String, u64), Vec<SampleCounts>>> {
    let sql = format!(
        "SELECT variant, threshold,
                count(*) FILTER (WHERE pred AND y), count(*) FILTER (WHERE pred), count(*) FILTER (WHERE y)
         FROM (SELECT j.variant, t.threshold, j.path, j.y, {PRED} AS pred FROM m_j j JOIN m_thr t ON j.variant = t.variant)
         GROUP BY variant, threshold, path"
    );
    let mut out: HashMap<(String, u64), Vec<SampleCounts>> = HashMap::new();
    conn.query(&sql)?.for_each_row(|r| {
        let key = (
            r.str(0)?.unwrap_or_default().to_string(),
            r.f64(1)?.unwrap_or(0.0).to_bits(),
        );
        out.entry(key).or_default().push(SampleCounts {
            tp: r.i64(2)?.unwrap_or(0) as u64,
            pred: r.i64(3)?.unwrap_or(0) as u64,
            truth: r.i64(4)?.unwrap_or(0) as u64,
        });
        Ok(())
    })?;
    Ok(out)
}

/// AP per (variant, tag) for tags with at least one positive; images without a stored score
/// for the tag join the score-0 group.
fn tag_ap(
    conn: &Connection<'_>,
    n_images: &HashMap<String, usize>,
) -> Result<HashMap<String, HashMap<String, f64>>> {
    let sql = "WITH pos AS (SELECT DISTINCT variant, tag FROM m_j WHERE y)
               SELECT j.variant, j.tag, j.score, count(*), count(*) FILTER (WHERE j.y)
               FROM m_j j SEMI JOIN pos p ON j.variant = p.variant AND j.tag = p.tag
               GROUP BY ALL ORDER BY j.variant, j.tag, j.score DESC";
    let mut out: HashMap<String, HashMap<String, f64>> = HashMap::new();
    let mut current: Option<(String, String)> = None;
    let mut groups: Vec<(f64, u64, u64)> = Vec::new();
    let finish = |key: &Option<(String, String)>,
                  groups: &mut Vec<(f64, u64, u64)>,
                  out: &mut HashMap<String, HashMap<String, f64>>| {
        if let Some((v, t)) = key {
            let seen: u64 = groups.iter().map(|g| g.1).sum();
            let missing = (n_images.get(v).copied().unwrap_or(0) as u64).saturating_sub(seen);
            if missing > 0 {
                match groups.last_mut() {
                    Some(last) if last.0 <= 0.0 => last.1 += missing,
                    _ => groups.push((0.0, missing, 0)),
                }
            }
            if let Some(ap) = average_precision(groups.iter().map(|g| (g.1, g.2))) {
                out.entry(v.clone()).or_default().insert(t.clone(), ap);
            }
        }
        groups.clear();
    };
    conn.query(sql)?.for_each_row(|r| {
        let v = r.str(0)?.unwrap_or_default();
        let t = r.str(1)?.unwrap_or_default();
        if current.as_ref().is_none_or(|(cv, ct)| cv != v || ct != t) {
            finish(&current, &mut groups, &mut out);
            current = Some((v.to_string(), t.to_string()));
        }
        groups.push((
            r.f64(2)?.unwrap_or(0.0),
            r.i64(3)?.unwrap_or(0) as u64,
            r.i64(4)?.unwrap_or(0) as u64,
        ));
        Ok(())
    })?;
    finish(&current, &mut groups, &mut out);
    Ok(out)
}
