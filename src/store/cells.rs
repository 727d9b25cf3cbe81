//! The cells and failures of one run, read from its views (`tables::open_run`: `cells`,
//! `failures`): each cell's cache key, each variant's cells and inference time, the failures.

use std::collections::HashMap;

use anyhow::Result;

use super::duck::Connection;
use super::writer::FailureRow;

/// Cells and inference time of a variant.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Speed {
    pub cells: u64,
    /// Cells copied from an earlier run's cache.
    pub cached: u64,
    /// Mean inference time per image (ms) over the cells computed in this run; `None` when all
    /// were cached.
    pub ms_per_image: Option<f64>,
    /// Mean over all cells, cached ones included (their original computation).
    pub ms_per_image_all: Option<f64>,
    /// Failed cells.
    pub failures: u64,
}

/// A cell's cache key, spelled out.
#[derive(Debug, Clone)]
pub struct CellKey {
    pub variant: String,
    pub path: String,
    pub cache_key: String,
    /// The key's parts, as JSON.
    pub key_json: String,
}

/// Every cell's cache key, by variant and path.
pub fn cell_keys(conn: &Connection<'_>) -> Result<Vec<CellKey>> {
    let mut out = Vec::new();
    conn.query("SELECT variant, path, cache_key, key_json FROM cells ORDER BY variant, path")?
        .for_each_row(|r| {
            out.push(CellKey {
                variant: r.str(0)?.unwrap_or_default().to_string(),
                path: r.str(1)?.unwrap_or_default().to_string(),
                cache_key: r.str(2)?.unwrap_or_default().to_string(),
                key_json: r.str(3)?.unwrap_or_default().to_string(),
            });
            Ok(())
        })?;
    Ok(out)
}

/// Each variant's cells, inference time and failed cells.
pub fn speeds(conn: &Connection<'_>) -> Result<HashMap<String, Speed>> {
    let mut out: HashMap<String, Speed> = HashMap::new();
    conn.query(
        "SELECT variant, count(*), count(*) FILTER (WHERE origin_run <> run_id),
                avg(infer_ms) FILTER (WHERE origin_run = run_id), avg(infer_ms)
         FROM cells GROUP BY variant",
    )?
    .for_each_row(|r| {
        let s = out
            .entry(r.str(0)?.unwrap_or_default().to_string())
            .or_default();
        s.cells = r.i64(1)?.unwrap_or(0) as u64;
        s.cached = r.i64(2)?.unwrap_or(0) as u64;
        s.ms_per_image = r.f64(3)?;
        s.ms_per_image_all = r.f64(4)?;
        Ok(())
    })?;
    conn.query(
        "SELECT variant, count(*) FROM failures WHERE variant IS NOT NULL GROUP BY variant",
    )?
    .for_each_row(|r| {
        let s = out
            .entry(r.str(0)?.unwrap_or_default().to_string())
            .or_default();
        s.failures = r.i64(1)?.unwrap_or(0) as u64;
        Ok(())
    })?;
    Ok(out)
}

/// Every failure, by path then variant.
pub fn failures(conn: &Connection<'_>) -> Result<Vec<FailureRow>> {
    let mut out = Vec::new();
    conn.query(
        "SELECT variant, image_hash, path, stage, reason FROM failures ORDER BY path, variant",
    )?
    .for_each_row(|r| {
        out.push(FailureRow {
            variant: r.str(0)?.map(str::to_string),
            image_hash: r.str(1)?.map(str::to_string),
            path: r.str(2)?.unwrap_or_default().to_string(),
            stage: r.str(3)?.unwrap_or_default().to_string(),
            reason: r.str(4)?.unwrap_or_default().to_string(),
        });
        Ok(())
    })?;
    Ok(out)
}
