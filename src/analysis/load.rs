//! Counting in DuckDB: turns a run's stored outputs and ground truth into the counts the pure
//! metric functions need. Never re-runs a model.
//!
//! Decisions, stated once: a tag is predicted when its float32 score ≥ the threshold (compared
//! in float32, as NumPy 2 compares a float32 array with a Python float); a rating (category
//! `rating`) is predicted when it is the image's top-scoring rating, whatever the threshold;
//! the unit scored is the image *file* (two files with the same content are two samples);
//! only files with ground truth in the scored source and a finished cell are scored.
//!
//! A variant run `repeats: N` times is scored, by default, as the mean of its N per-repeat
//! metrics, with their standard deviation ([`RepeatStats`]); `score_repeats: union` scores the
//! union of the repeats' answers instead (a tag's highest score over the repeats), which favours
//! recall over what one repeat would give.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use super::metrics::{
    assemble, average_precision, NegativeRate, Prf, RepeatStats, SampleCounts, TagCounts,
    VariantMetrics,
};
use crate::store::duck::{lit, Connection};

/// What to score of one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub variant: String,
    pub thresholds: Vec<f64>,
    /// Times each image was run.
    pub repeats: u32,
    /// Score the union of the repeats' answers instead of the mean of per-repeat metrics.
    pub union: bool,
}

impl Scored {
    /// One repeat (or the union of several).
    pub fn new(variant: &str, thresholds: Vec<f64>) -> Scored {
        Scored {
            variant: variant.to_string(),
            thresholds,
            repeats: 1,
            union: false,
        }
    }

    /// A run's variant, as its manifest records it, at `thresholds`.
    pub fn of(v: &crate::store::manifest::VariantInfo, thresholds: Vec<f64>) -> Scored {
        Scored {
            variant: v.name.clone(),
            thresholds,
            repeats: v.repeats,
            union: v.score_repeats == crate::config::files::ScoreRepeats::Union,
        }
    }

    /// Whether each repeat is scored apart (then averaged).
    fn per_repeat(&self) -> bool {
        self.repeats > 1 && !self.union
    }
}

/// The name a repeat is scored under while its metrics are counted.
fn repeat_name(variant: &str, repeat: u32) -> String {
    format!("{variant}\u{1f}{repeat}")
}

/// Metrics for each (variant, threshold) of a run whose views are open on `conn`
/// (`crate::store::tables::open_run`). With `only`, only those image paths are scored.
pub fn run_metrics(
    conn: &Connection<'_>,
    source: &str,
    variants: &[Scored],
    only: Option<&[String]>,
) -> Result<Vec<VariantMetrics>> {
    // Each repeat of a variant scored per repeat is a variant of its own while counting.
    let mut units: Vec<(String, Vec<f64>, String, Option<u32>)> = Vec::new();
    for s in variants {
        if s.per_repeat() {
            for r in 0..s.repeats {
                let name = repeat_name(&s.variant, r);
                units.push((name, s.thresholds.clone(), s.variant.clone(), Some(r)));
            }
        } else {
            units.push((
                s.variant.clone(),
                s.thresholds.clone(),
                s.variant.clone(),
                None,
            ));
        }
    }
    let counted = count_metrics(conn, source, &units, only)?;
    Ok(combine_repeats(variants, counted))
}

/// The per-unit metrics of [`run_metrics`], before repeats are averaged.
fn count_metrics(
    conn: &Connection<'_>,
    source: &str,
    units: &[(String, Vec<f64>, String, Option<u32>)],
    only: Option<&[String]>,
) -> Result<Vec<VariantMetrics>> {
    prepare(conn, source, units, only)?;
    let variants: Vec<(String, Vec<f64>)> = units
        .iter()
        .map(|(n, t, _, _)| (n.clone(), t.clone()))
        .collect();
    let variants = &variants;
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
        "DROP TABLE IF EXISTS m_thr; DROP TABLE IF EXISTS m_ev; DROP TABLE IF EXISTS m_j; DROP TABLE IF EXISTS m_unit; DROP TABLE IF EXISTS m_only;",
    )?;
    Ok(out)
}

/// Averages the per-repeat metrics of variants scored per repeat (mean of each metric, with
/// the standard deviation of the headline ones); other variants pass through.
fn combine_repeats(variants: &[Scored], mut counted: Vec<VariantMetrics>) -> Vec<VariantMetrics> {
    let mut out = Vec::new();
    for s in variants {
        if !s.per_repeat() {
            if let Some(i) = counted.iter().position(|m| m.variant == s.variant) {
                out.extend(
                    counted
                        .extract_if(i.., |m| m.variant == s.variant)
                        .map(|mut m| {
                            if s.repeats > 1 {
                                m.repeats = Some(RepeatStats::union(s.repeats));
                            }
                            m
                        }),
                );
            }
            continue;
        }
        for &t in &s.thresholds {
            let names: Vec<String> = (0..s.repeats).map(|r| repeat_name(&s.variant, r)).collect();
            let per: Vec<&VariantMetrics> = counted
                .iter()
                .filter(|m| m.threshold == t && names.contains(&m.variant))
                .collect();
            if !per.is_empty() {
                out.push(mean_of(&s.variant, t, &per));
            }
        }
    }
    out
}

/// The mean of per-repeat metrics (see `docs/metrics.md`, "Repeats").
fn mean_of(variant: &str, threshold: f64, per: &[&VariantMetrics]) -> VariantMetrics {
    let n = per.len() as f64;
    let mean = |f: &dyn Fn(&VariantMetrics) -> f64| per.iter().map(|m| f(m)).sum::<f64>() / n;
    let prf = |f: &dyn Fn(&VariantMetrics) -> Prf| Prf {
        precision: mean(&|m| f(m).precision),
        recall: mean(&|m| f(m).recall),
        f1: mean(&|m| f(m).f1),
    };
    let maps: Vec<f64> = per.iter().filter_map(|m| m.map).collect();
    let mut tags: BTreeMap<&str, (f64, f64, f64, u64, Vec<f64>)> = BTreeMap::new();
    for m in per {
        for t in &m.per_tag {
            let e = tags.entry(t.tag.as_str()).or_default();
            e.0 += t.precision;
            e.1 += t.recall;
            e.2 += t.f1;
            e.3 = e.3.max(t.support);
            e.4.extend(t.ap);
        }
    }
    let mut per_tag: Vec<super::metrics::PerTag> = tags
        .into_iter()
        .map(|(tag, (p, r, f, support, aps))| super::metrics::PerTag {
            tag: tag.to_string(),
            precision: p / n,
            recall: r / n,
            f1: f / n,
            support,
            ap: (!aps.is_empty()).then(|| aps.iter().sum::<f64>() / aps.len() as f64),
        })
        .collect();
    per_tag.sort_by(|a, b| b.support.cmp(&a.support).then_with(|| a.tag.cmp(&b.tag)));
    let negative = per[0].negative.map(|first| NegativeRate {
        pairs: first.pairs,
        predicted: mean(&|m| m.negative.map_or(0.0, |x| x.predicted as f64)).round() as u64,
        fp_rate: mean(&|m| m.negative.map_or(0.0, |x| x.fp_rate)),
    });
    let values = |f: &dyn Fn(&VariantMetrics) -> f64| per.iter().map(|m| f(m)).collect::<Vec<_>>();
    let mut sd = BTreeMap::new();
    for (name, xs) in [
        ("f1_micro", values(&|m| m.micro.f1)),
        ("f1_macro", values(&|m| m.macro_.f1)),
        ("f1_samples", values(&|m| m.samples.f1)),
        ("precision_micro", values(&|m| m.micro.precision)),
        ("recall_micro", values(&|m| m.micro.recall)),
    ] {
        sd.insert(name.to_string(), super::stats::sample_sd(&xs));
    }
    if maps.len() == per.len() {
        sd.insert("map".into(), super::stats::sample_sd(&maps));
    }
    VariantMetrics {
        variant: variant.to_string(),
        threshold,
        micro: prf(&|m| m.micro),
        macro_: prf(&|m| m.macro_),
        samples: prf(&|m| m.samples),
        map: (!maps.is_empty()).then(|| maps.iter().sum::<f64>() / maps.len() as f64),
        images: per.iter().map(|m| m.images).max().unwrap_or(0),
        labels: mean(&|m| m.labels as f64).round() as usize,
        negative,
        per_tag,
        scores_tags: true,
        text: Default::default(),
        repeats: Some(RepeatStats {
            n: per.len() as u32,
            scored_as: "mean".into(),
            sd,
        }),
        shared: None,
    }
}

/// Image paths that have ground truth in `source` and a finished cell of `variant`, sorted
/// (the images a variant is scored on).
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

fn prepare(
    conn: &Connection<'_>,
    source: &str,
    units: &[(String, Vec<f64>, String, Option<u32>)],
    only: Option<&[String]>,
) -> Result<()> {
    conn.execute(
        "DROP TABLE IF EXISTS m_thr; CREATE TEMP TABLE m_thr (variant VARCHAR, threshold DOUBLE);
         DROP TABLE IF EXISTS m_unit; CREATE TEMP TABLE m_unit (unit VARCHAR, variant VARCHAR, rep INTEGER);
         DROP TABLE IF EXISTS m_only; CREATE TEMP TABLE m_only (path VARCHAR);",
    )?;
    {
        let mut app = conn.appender("m_thr")?;
        for (v, ts, _, _) in units {
            for t in ts {
                app.str(v)?.f64(*t)?;
                app.end_row()?;
            }
        }
        app.finish()?;
    }
    {
        let mut app = conn.appender("m_unit")?;
        for (unit, _, variant, rep) in units {
            app.str(unit)?.str(variant)?;
            match rep {
                Some(r) => app.i32(*r as i32)?,
                None => app.null()?,
            };
            app.end_row()?;
        }
        app.finish()?;
    }
    if let Some(paths) = only {
        let mut app = conn.appender("m_only")?;
        for p in paths {
            app.str(p)?;
            app.end_row()?;
        }
        app.finish()?;
    }
    let src = lit(source);
    let only_filter = if only.is_some() {
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
