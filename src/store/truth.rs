//! The ground truth of one run, read from its views (`tables::open_run`: `images`,
//! `ground_truth`): the tags of each labelled image, and how often tags occur together.

use std::collections::HashMap;

use anyhow::Result;

use super::duck::{lit, Connection};

/// Two ground-truth tags that occur together, with their counts.
#[derive(Debug, Clone, PartialEq)]
pub struct PairCount {
    pub a: String,
    pub b: String,
    /// Labelled images with both.
    pub count: u64,
    /// Labelled images with `a`.
    pub count_a: u64,
    /// Labelled images with `b`.
    pub count_b: u64,
}

/// Pairs of ground-truth tags over the labelled images.
#[derive(Debug, Clone, PartialEq)]
pub struct PairCounts {
    /// Labelled images.
    pub images: u64,
    /// The `top` pairs in at least `min_count` images, by count (ties: by a, then b).
    pub pairs: Vec<PairCount>,
}

/// Counts pairs of `source`'s tags over the labelled images of the run whose views are open on
/// `conn`: the `top` pairs that occur in at least `min_count` images.
pub fn pair_counts(
    conn: &Connection<'_>,
    source: &str,
    top: usize,
    min_count: u64,
) -> Result<PairCounts> {
    let src = lit(source);
    let mut images = 0u64;
    conn.query("SELECT count(*) FROM (SELECT DISTINCT path FROM images WHERE labelled)")?
        .for_each_row(|r| {
            images = r.i64(0)?.unwrap_or(0) as u64;
            Ok(())
        })?;
    let sql = format!(
        "WITH g AS (
           SELECT DISTINCT g.path, g.tag FROM ground_truth g
           SEMI JOIN (SELECT path FROM images WHERE labelled) i ON i.path = g.path
           WHERE g.source = {src} AND g.tag IS NOT NULL),
         f AS (SELECT tag, count(*) AS c FROM g GROUP BY tag),
         p AS (SELECT x.tag AS a, y.tag AS b, count(*) AS c
               FROM g x JOIN g y ON x.path = y.path AND x.tag < y.tag
               GROUP BY ALL HAVING count(*) >= {min_count}
               ORDER BY c DESC, a, b LIMIT {top})
         SELECT p.a, p.b, p.c, fa.c, fb.c FROM p
         JOIN f fa ON fa.tag = p.a JOIN f fb ON fb.tag = p.b
         ORDER BY p.c DESC, p.a, p.b"
    );
    let mut pairs = Vec::new();
    conn.query(&sql)?.for_each_row(|r| {
        pairs.push(PairCount {
            a: r.str(0)?.unwrap_or_default().to_string(),
            b: r.str(1)?.unwrap_or_default().to_string(),
            count: r.i64(2)?.unwrap_or(0) as u64,
            count_a: r.i64(3)?.unwrap_or(0) as u64,
            count_b: r.i64(4)?.unwrap_or(0) as u64,
        });
        Ok(())
    })?;
    Ok(PairCounts { images, pairs })
}

/// The ground-truth tags in `source` of each labelled path, sorted (a labelled image without
/// tags has none; an unlabelled one is absent).
pub fn labelled_tags(conn: &Connection<'_>, source: &str) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    conn.query("SELECT path FROM images WHERE labelled")?
        .for_each_row(|r| {
            out.entry(r.str(0)?.unwrap_or_default().to_string())
                .or_default();
            Ok(())
        })?;
    conn.query(&format!(
        "SELECT DISTINCT path, tag FROM ground_truth WHERE source = {} AND tag IS NOT NULL ORDER BY path, tag",
        lit(source)
    ))?
    .for_each_row(|r| {
        let path = r.str(0)?.unwrap_or_default();
        if let Some(tags) = out.get_mut(path) {
            tags.push(r.str(1)?.unwrap_or_default().to_string());
        }
        Ok(())
    })?;
    Ok(out)
}

/// Scores the run whose views are open on `conn` against other ground truth for `source`:
/// `rows` (path, image hash, tag; `None` for a labelled image with no tags) replace that
/// source's rows in the `ground_truth` view, and `images.labelled` follows them. Other sources
/// keep the run's rows. The run's files are not touched. Returns whether anything differs from
/// what the run stored.
pub fn replace_source(
    conn: &Connection<'_>,
    run: &super::RunDir,
    source: &str,
    rows: &[(String, String, Option<String>)],
) -> Result<bool> {
    let src = lit(source);
    let images = run.file("images.parquet");
    if !images.is_file() {
        return Ok(false);
    }
    conn.execute(&format!(
        "CREATE OR REPLACE TABLE iw_truth_now AS SELECT path, image_hash, source, tag
         FROM ground_truth WHERE source <> {src};
         CREATE OR REPLACE TABLE iw_truth_new (path VARCHAR, image_hash VARCHAR, tag VARCHAR);"
    ))?;
    let mut a = conn.appender("iw_truth_new")?;
    for (path, hash, tag) in rows {
        a.str(path)?.str(hash)?.opt_str(tag.as_deref())?.end_row()?;
    }
    a.finish()?;
    let mut differs = false;
    conn.query(&format!(
        "SELECT count(*) FROM (
           (SELECT DISTINCT path, coalesce(tag, '') FROM ground_truth WHERE source = {src}
            EXCEPT SELECT DISTINCT path, coalesce(tag, '') FROM iw_truth_new)
           UNION ALL
           (SELECT DISTINCT path, coalesce(tag, '') FROM iw_truth_new
            EXCEPT SELECT DISTINCT path, coalesce(tag, '') FROM ground_truth WHERE source = {src}))"
    ))?
    .for_each_row(|r| {
        differs = r.i64(0)?.unwrap_or(0) > 0;
        Ok(())
    })?;
    conn.execute(&format!(
        "INSERT INTO iw_truth_now SELECT path, image_hash, {src}, tag FROM iw_truth_new;
         CREATE OR REPLACE VIEW ground_truth AS SELECT * FROM iw_truth_now;
         CREATE OR REPLACE VIEW images AS SELECT * REPLACE (
           path IN (SELECT path FROM iw_truth_now WHERE source = {src}) AS labelled)
         FROM read_parquet({});",
        super::duck::path_lit(&images)
    ))?;
    Ok(differs)
}
