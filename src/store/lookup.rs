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
use crate::store::duck::{path_list, Connection};

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

/// Looks `keys` up in the cells of the runs under `runs_dir` that `scope` selects; for each
/// key found, the most recent committed cell.
pub fn find_hits(
    conn: &Connection<'_>,
    runs_dir: &Path,
    scope: Scope<'_>,
    keys: &[&str],
) -> Result<HashMap<String, Hit>> {
    let files = table_files(runs_dir, scope, "cells");
    if files.is_empty() || keys.is_empty() {
        return Ok(HashMap::new());
    }
    // Fallback outputs are scored where they were made but never reused by another run;
    // parts written before the column existed have none.
    let reuse = match scope {
        Scope::Except(_) => "WHERE NOT coalesce(c.fallback, false)",
        Scope::Only(_) => "",
    };
    let sql = format!(
        "SELECT cache_key, filename, variant, origin_run, n_tags, infer_ms, fallback FROM (
           SELECT c.cache_key, c.filename, c.variant, c.origin_run, c.n_tags, c.infer_ms,
                  coalesce(c.fallback, false) AS fallback,
                  row_number() OVER (PARTITION BY c.cache_key ORDER BY c.created_at DESC, c.filename DESC) AS rn
           FROM (SELECT * FROM read_parquet({}, filename = true, union_by_name = true)
                 UNION ALL BY NAME SELECT NULL::BOOLEAN AS fallback WHERE false) c
           SEMI JOIN wanted w ON c.cache_key = w.cache_key
           {reuse}
         ) WHERE rn = 1",
        path_list(&files)
    );
    with_wanted(conn, keys, || {
        let mut hits = HashMap::new();
        conn.query(&sql)?.for_each_row(|row| {
            let key = row.str(0)?.unwrap_or_default().to_string();
            let file = PathBuf::from(row.str(1)?.unwrap_or_default());
            // .../runs/<id>/cells/part.parquet → .../runs/<id>
            let run = file
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            hits.insert(
                key,
                Hit {
                    run,
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
    })
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
        if files.is_empty() && list_parquet(&source.join("texts")).is_empty() {
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
        conn.execute("DROP TABLE hits")?;
    }
    Ok(())
}

/// The first `{prefix}-NNN.parquet` in `dir` that does not exist yet: copies made by separate
/// calls within one run never overwrite each other.
fn free_part(dir: &Path, prefix: &str) -> PathBuf {
    (1..)
        .map(|i| dir.join(format!("{prefix}-{i:03}.parquet")))
        .find(|p| !p.exists())
        .expect("an unused part name")
}
