//! Runs as the cache: finding a plan's keys in earlier runs' cells, and copying the hits'
//! outputs into the new run so every run directory stays self-contained.
//!
//! Only committed cells are visible (their part files exist under a final name), so a cell
//! of a run that was killed is reused exactly when its outputs were complete. Failures are
//! never cells, and fallback cells (`cells.fallback`) are skipped, so neither is ever served
//! from the cache.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::writer::copy_to_parquet;
use super::{list_parquet, list_runs, RunDir};
use crate::store::duck::{path_list, Connection, Row};
use crate::words::Category;

/// Where a cached cell lives.
#[derive(Debug, Clone)]
pub struct Hit {
    pub run: PathBuf,
    pub variant: String,
    pub origin_run: String,
    pub n_tags: i64,
    pub infer_ms: f64,
    /// A fallback output (found only within one run: [`Scope::Only`]).
    pub fallback: bool,
}

/// Which runs a lookup reads.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every run under the runs directory except this one (`""`: every run).
    Except(&'a str),
    /// This run alone.
    Only(&'a str),
}

/// The part files of `table` in the runs under `runs_dir` that `scope` selects.
pub fn table_files(runs_dir: &Path, scope: Scope<'_>, table: &str) -> Vec<PathBuf> {
    list_runs(runs_dir)
        .into_iter()
        .filter(|run| match scope {
            Scope::Except(id) => run.id != id,
            Scope::Only(id) => run.id == id,
        })
        .flat_map(|run| list_parquet(&run.table_dir(table)))
        .collect()
}

/// Runs `f` while a temporary table `wanted (cache_key VARCHAR)` holds `keys`; queries in `f`
/// semi-join their tables on it.
pub fn with_wanted<T>(
    conn: &Connection<'_>,
    keys: &[&str],
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    conn.execute("DROP TABLE IF EXISTS wanted; CREATE TEMP TABLE wanted (cache_key VARCHAR)")?;
    {
        let mut app = conn.appender("wanted")?;
        for k in keys {
            app.str(k)?;
            app.end_row()?;
        }
        app.finish()?;
    }
    let out = f();
    conn.execute("DROP TABLE wanted")?;
    out
}

/// The newest row per wanted key among `files`, read with `columns` (over `c`, the rows of
/// `files` with their `filename`), kept by `filter`; each row goes to `f`. The one query every
/// lookup of this module runs.
fn newest_by_key(
    conn: &Connection<'_>,
    files: &[PathBuf],
    keys: &[&str],
    query: &Newest<'_>,
    mut f: impl FnMut(&Row<'_>) -> crate::store::duck::Result<()>,
) -> Result<()> {
    if files.is_empty() || keys.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT {columns} FROM (
           SELECT *, row_number() OVER (PARTITION BY c.cache_key ORDER BY {order}) AS rn
           FROM (SELECT * FROM read_parquet({files}, filename = true, union_by_name = true)
                 UNION ALL BY NAME {missing}) c
           SEMI JOIN wanted w ON c.cache_key = w.cache_key
           WHERE {filter}
         ) c WHERE rn = 1",
        columns = query.columns,
        order = query.order,
        files = path_list(files),
        missing = query.missing,
        filter = query.filter,
    );
    with_wanted(conn, keys, || Ok(conn.query(&sql)?.for_each_row(&mut f)?))
}

/// What [`newest_by_key`] reads.
struct Newest<'a> {
    columns: &'a str,
    /// Newest first.
    order: &'a str,
    /// An empty select naming columns that older parts may lack (`NULL::T AS name WHERE false`).
    missing: &'a str,
    filter: &'a str,
}

/// The run directory of a part file (`.../runs/<id>/cells/part.parquet` → `.../runs/<id>`).
fn run_of(part: &str) -> PathBuf {
    Path::new(part)
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Looks `keys` up in the cells of the runs under `runs_dir` that `scope` selects; for each
/// key found, the most recent committed cell.
pub fn find_hits(
    conn: &Connection<'_>,
    runs_dir: &Path,
    scope: Scope<'_>,
    keys: &[&str],
) -> Result<HashMap<String, Hit>> {
    let files = table_files(runs_dir, scope, "cells");
    // Fallback outputs are scored where they were made but never reused by another run;
    // parts written before the column existed have none.
    let query = Newest {
        columns:
            "cache_key, filename, variant, origin_run, n_tags, infer_ms, coalesce(fallback, false)",
        order: "c.created_at DESC, c.filename DESC",
        missing: "SELECT NULL::BOOLEAN AS fallback WHERE false",
        filter: match scope {
            Scope::Except(_) => "NOT coalesce(c.fallback, false)",
            Scope::Only(_) => "true",
        },
    };
    let mut hits = HashMap::new();
    newest_by_key(conn, &files, keys, &query, |row| {
        hits.insert(
            row.str(0)?.unwrap_or_default().to_string(),
            Hit {
                run: run_of(row.str(1)?.unwrap_or_default()),
                variant: row.str(2)?.unwrap_or_default().to_string(),
                origin_run: row.str(3)?.unwrap_or_default().to_string(),
                n_tags: row.i64(4)?.unwrap_or(0),
                infer_ms: row.f64(5)?.unwrap_or(0.0),
                fallback: row.bool(6)?.unwrap_or(false),
            },
        );
        Ok(())
    })?;
    Ok(hits)
}

/// A verdict served from an earlier run.
#[derive(Debug, Clone, Default)]
pub struct CachedVerdict {
    pub raw: String,
    pub verdict: Option<String>,
    pub score: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub ms: f64,
    pub origin_run: String,
}

/// Looks verdict `keys` up in the judgments of the runs under `runs_dir` that `scope`
/// selects. Only *valid* verdicts are served: an answer that did not parse is kept in its run
/// for the record, and the next run asks again.
pub fn find_verdicts(
    conn: &Connection<'_>,
    runs_dir: &Path,
    scope: Scope<'_>,
    keys: &[&str],
) -> Result<HashMap<String, CachedVerdict>> {
    let files = table_files(runs_dir, scope, "judgments");
    let query = Newest {
        columns: "cache_key, raw, verdict, score, prompt_tokens, completion_tokens, ms, origin_run",
        order: "c.filename DESC",
        missing: "SELECT NULL::VARCHAR AS cache_key WHERE false",
        filter: "c.valid AND c.cache_key <> ''",
    };
    let mut out = HashMap::new();
    newest_by_key(conn, &files, keys, &query, |r| {
        out.insert(
            r.str(0)?.unwrap_or_default().to_string(),
            CachedVerdict {
                raw: r.str(1)?.unwrap_or_default().to_string(),
                verdict: r.str(2)?.map(str::to_string),
                score: r.f64(3)?,
                prompt_tokens: r.i64(4)?.unwrap_or(0) as u64,
                completion_tokens: r.i64(5)?.unwrap_or(0) as u64,
                ms: r.f64(6)?.unwrap_or(0.0),
                origin_run: r.str(7)?.unwrap_or_default().to_string(),
            },
        );
        Ok(())
    })?;
    Ok(out)
}

/// A prompted model's answer served from an earlier run: what was said, and what it cost.
#[derive(Debug, Clone, Default)]
pub struct CachedAnswer {
    pub raw: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Option<f64>,
    pub finish: String,
    pub attempts: u32,
}

/// The raw answers of `hits` (prompted models' cells), read from the runs that hold them.
pub fn read_answers(
    conn: &Connection<'_>,
    hits: &HashMap<String, Hit>,
) -> Result<HashMap<String, CachedAnswer>> {
    let mut out = HashMap::new();
    for (run, keys) in by_run(hits) {
        let query = Newest {
            columns: "cache_key, raw, prompt_tokens, completion_tokens, cost, finish, attempts",
            order: "c.filename DESC",
            missing: "SELECT NULL::VARCHAR AS cache_key WHERE false",
            filter: "c.raw IS NOT NULL",
        };
        newest_by_key(
            conn,
            &list_parquet(&run.join("texts")),
            &keys,
            &query,
            |r| {
                out.insert(
                    r.str(0)?.unwrap_or_default().to_string(),
                    CachedAnswer {
                        raw: r.str(1)?.unwrap_or_default().to_string(),
                        prompt_tokens: r.i64(2)?.unwrap_or(0) as u64,
                        completion_tokens: r.i64(3)?.unwrap_or(0) as u64,
                        cost: r.f64(4)?,
                        finish: r.str(5)?.unwrap_or_default().to_string(),
                        attempts: r.i64(6)?.unwrap_or(0) as u32,
                    },
                );
                Ok(())
            },
        )?;
    }
    Ok(out)
}

/// Stored (tag, score, category) rows of one cell.
pub type Scores = Vec<(String, f32, Category)>;

/// The scores of `hits` (taggers' cells), read from the runs that hold them; a hit with no
/// tags gets an empty list.
pub fn read_scores(
    conn: &Connection<'_>,
    hits: &HashMap<String, Hit>,
) -> Result<HashMap<String, Scores>> {
    let mut out: HashMap<String, Scores> = HashMap::new();
    for (run, keys) in by_run(hits) {
        let files = list_parquet(&run.join("outputs"));
        if files.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT o.cache_key, o.tag, any_value(o.score), any_value(o.category)
             FROM read_parquet({}, union_by_name = true) o
             SEMI JOIN wanted w ON o.cache_key = w.cache_key
             GROUP BY o.cache_key, o.tag",
            path_list(&files)
        );
        with_wanted(conn, &keys, || {
            Ok(conn.query(&sql)?.for_each_row(|r| {
                out.entry(r.str(0)?.unwrap_or_default().to_string())
                    .or_default()
                    .push((
                        r.str(1)?.unwrap_or_default().to_string(),
                        r.f64(2)?.unwrap_or(0.0) as f32,
                        Category::parse(r.str(3)?.unwrap_or_default()).unwrap_or(Category::General),
                    ));
                Ok(())
            })?)
        })?;
    }
    for k in hits.keys() {
        out.entry(k.clone()).or_default();
    }
    Ok(out)
}

/// The vectors of `hits` (vector engines' cells: perceptual hashes or an embedding), read
/// from the runs that hold them. A hit whose vector rows are missing is left out.
pub fn read_vectors(
    conn: &Connection<'_>,
    hits: &HashMap<String, Hit>,
) -> Result<HashMap<String, crate::words::Vector>> {
    use crate::words::Vector;
    let mut out: HashMap<String, Vector> = HashMap::new();
    for (run, keys) in by_run(hits) {
        let files = list_parquet(&run.join("vectors"));
        if files.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT v.cache_key, v.method, any_value(v.hash), any_value(v.embedding::VARCHAR)
             FROM read_parquet({}, union_by_name = true) v
             SEMI JOIN wanted w ON v.cache_key = w.cache_key
             GROUP BY v.cache_key, v.method ORDER BY v.cache_key, v.method",
            path_list(&files)
        );
        with_wanted(conn, &keys, || {
            Ok(conn.query(&sql)?.for_each_row(|r| {
                let key = r.str(0)?.unwrap_or_default().to_string();
                let method = r.str(1)?.unwrap_or_default();
                if let Some(hex) = r.str(2)? {
                    match out.entry(key).or_insert_with(|| Vector::Hashes(Vec::new())) {
                        Vector::Hashes(h) => h.push((method.to_string(), hex.to_string())),
                        Vector::Embedding(_) => {}
                    }
                } else if let Some(list) = r.str(3)? {
                    out.insert(key, Vector::Embedding(parse_float_list(list)));
                }
                Ok(())
            })?)
        })?;
    }
    Ok(out)
}

/// `[1.5, -2.0, ...]` as DuckDB prints a `FLOAT[]`.
pub(crate) fn parse_float_list(s: &str) -> Vec<f32> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| x.trim().parse::<f32>().unwrap_or(0.0))
        .collect()
}

/// The keys of `hits` by the run that holds them.
fn by_run(hits: &HashMap<String, Hit>) -> BTreeMap<&Path, Vec<&str>> {
    let mut out: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for (k, h) in hits {
        out.entry(h.run.as_path()).or_default().push(k);
    }
    out
}

/// A cell of the new run served from the cache.
#[derive(Debug, Clone)]
pub struct CachedCell<'a> {
    pub variant: &'a str,
    pub path: &'a str,
    pub repeat: u32,
    pub key: &'a str,
    pub hit: &'a Hit,
}

/// Copies the outputs of `cells` from their source runs into `run` (one part per source run).
/// The caller then commits the cells themselves.
pub fn copy_outputs(conn: &Connection<'_>, run: &RunDir, cells: &[CachedCell<'_>]) -> Result<()> {
    let mut by_source: BTreeMap<&Path, Vec<&CachedCell<'_>>> = BTreeMap::new();
    for c in cells {
        by_source.entry(c.hit.run.as_path()).or_default().push(c);
    }
    for (source, cells) in by_source {
        let files = list_parquet(&source.join("outputs"));
        let regions = list_parquet(&source.join("regions"));
        if files.is_empty() && regions.is_empty() && list_parquet(&source.join("texts")).is_empty()
        {
            continue;
        }
        conn.execute(
            "DROP TABLE IF EXISTS hits; CREATE TEMP TABLE hits (variant VARCHAR, path VARCHAR, repeat INTEGER, cache_key VARCHAR, source_variant VARCHAR)",
        )?;
        {
            let mut app = conn.appender("hits")?;
            for c in &cells {
                app.str(c.variant)?
                    .str(c.path)?
                    .i32(c.repeat as i32)?
                    .str(c.key)?
                    .str(&c.hit.variant)?;
                app.end_row()?;
            }
            app.finish()?;
        }
        if !files.is_empty() {
            // A source cell's outputs, once (the source may hold duplicate files with that key).
            let select = format!(
                "WITH src AS (
                   SELECT cache_key, variant, image_hash, tag, score, category
                   FROM read_parquet({files}, union_by_name = true)
                   WHERE cache_key IN (SELECT cache_key FROM hits)
                   QUALIFY row_number() OVER (PARTITION BY cache_key, variant, tag) = 1
                 )
                 SELECT {run_id} AS run_id, h.variant, h.path, o.image_hash, h.repeat, o.cache_key, o.tag, o.score, o.category
                 FROM src o JOIN hits h ON o.cache_key = h.cache_key AND o.variant = h.source_variant",
                files = path_list(&files),
                run_id = crate::store::duck::lit(&run.id),
            );
            copy_to_parquet(
                conn,
                &select,
                &free_part(&run.table_dir("outputs"), "cached"),
            )?;
        }
        let texts = list_parquet(&source.join("texts"));
        if !texts.is_empty() {
            let select = format!(
                "WITH src AS (
                   SELECT * EXCLUDE (run_id, variant, path, repeat), variant AS source_variant
                   FROM read_parquet({files}, union_by_name = true)
                   WHERE cache_key IN (SELECT cache_key FROM hits)
                   QUALIFY row_number() OVER (PARTITION BY cache_key, variant) = 1
                 )
                 SELECT {run_id} AS run_id, h.variant, h.path, o.image_hash, h.repeat, o.cache_key,
                        o.prompt_name, o.prompt_hash, o.prompt, o.params, o.raw, o.caption, o.mapping,
                        o.prompt_tokens, o.completion_tokens, o.cost, o.finish, o.attempts, o.note
                 FROM src o JOIN hits h ON o.cache_key = h.cache_key AND o.source_variant = h.source_variant",
                files = path_list(&texts),
                run_id = crate::store::duck::lit(&run.id),
            );
            copy_to_parquet(conn, &select, &free_part(&run.table_dir("texts"), "cached"))?;
        }
        if !regions.is_empty() {
            copy_regions(conn, run, &regions)?;
        }
        conn.execute("DROP TABLE hits")?;
    }
    Ok(())
}

/// Copies the regions of the cells in the `hits` table from a source run's `files`.
fn copy_regions(conn: &Connection<'_>, run: &RunDir, files: &[PathBuf]) -> Result<()> {
    let select = format!(
        "WITH src AS (
           SELECT * EXCLUDE (run_id, variant, path, repeat), variant AS source_variant
           FROM read_parquet({files}, union_by_name = true)
           WHERE cache_key IN (SELECT cache_key FROM hits)
           QUALIFY row_number() OVER (PARTITION BY cache_key, variant, region) = 1
         )
         SELECT {run_id} AS run_id, h.variant, h.path, o.image_hash, h.repeat, o.cache_key,
                o.region, o.x, o.y, o.w, o.h, o.score, o.landmarks, o.blur, o.person,
                o.similarity, o.skipped, o.embedding, o.image_w, o.image_h
         FROM src o JOIN hits h ON o.cache_key = h.cache_key AND o.source_variant = h.source_variant",
        files = path_list(files),
        run_id = crate::store::duck::lit(&run.id),
    );
    copy_to_parquet(
        conn,
        &select,
        &free_part(&run.table_dir("regions"), "cached"),
    )
}

/// The first `{prefix}-NNN.parquet` in `dir` that does not exist yet: copies made by separate
/// calls within one run never overwrite each other.
fn free_part(dir: &Path, prefix: &str) -> PathBuf {
    (1..)
        .map(|i| dir.join(format!("{prefix}-{i:03}.parquet")))
        .find(|p| !p.exists())
        .expect("an unused part name")
}
