//! Reads of the run being written: what its earlier steps committed, for the steps that build
//! on them (prompts that show other variants' outputs, ensembles, judges, the run's scores).
//! Each opens the run's views first (`tables::open_run`), so it sees every part committed so
//! far.

use std::collections::HashMap;

use anyhow::Result;

use super::duck::{lit, Connection};
use super::{tables, RunDir};

/// One cell's tags with scores (highest first) and caption.
pub type Output = (Vec<(String, f32)>, Option<String>);

/// A variant's outputs: (path, repeat) → output.
pub type Outputs = HashMap<(String, u32), Output>;

/// A variant's finished cells: (path, repeat) → whether its output is a fallback.
pub type Finished = HashMap<(String, u32), bool>;

/// A variant's outputs in `run` (what it computed and what was copied from the cache).
pub fn outputs(conn: &Connection<'_>, run: &RunDir, variant: &str) -> Result<Outputs> {
    tables::open_run(conn, run)?;
    let mut out: Outputs = HashMap::new();
    let v = lit(variant);
    conn.query(&format!(
        "SELECT path, repeat, tag, score FROM outputs WHERE variant = {v} ORDER BY path, repeat, score DESC, tag"
    ))?
    .for_each_row(|r| {
        let key = (r.str(0)?.unwrap_or_default().to_string(), r.i64(1)?.unwrap_or(0) as u32);
        let tag = r.str(2)?.unwrap_or_default().to_string();
        let score = r.f64(3)?.unwrap_or(0.0) as f32;
        out.entry(key).or_default().0.push((tag, score));
        Ok(())
    })?;
    conn.query(&format!(
        "SELECT path, repeat, caption FROM texts WHERE variant = {v}"
    ))?
    .for_each_row(|r| {
        let key = (
            r.str(0)?.unwrap_or_default().to_string(),
            r.i64(1)?.unwrap_or(0) as u32,
        );
        out.entry(key).or_default().1 = r.str(2)?.map(str::to_string);
        Ok(())
    })?;
    Ok(out)
}

/// Which cells of `variant` finished in `run` (computed or copied from the cache).
pub fn finished(conn: &Connection<'_>, run: &RunDir, variant: &str) -> Result<Finished> {
    tables::open_run(conn, run)?;
    let mut out = Finished::new();
    conn.query(&format!(
        "SELECT path, repeat, bool_or(coalesce(fallback, false)) FROM cells WHERE variant = {} GROUP BY ALL",
        lit(variant)
    ))?
    .for_each_row(|r| {
        let key = (r.str(0)?.unwrap_or_default().to_string(), r.i64(1)?.unwrap_or(0) as u32);
        out.insert(key, r.bool(2)?.unwrap_or(false));
        Ok(())
    })?;
    Ok(out)
}

/// The cells of `variant` in `run`: (path, repeat, cache key), by path and repeat.
pub fn cells(
    conn: &Connection<'_>,
    run: &RunDir,
    variant: &str,
) -> Result<Vec<(String, u32, String)>> {
    tables::open_run(conn, run)?;
    let mut out = Vec::new();
    conn.query(&format!(
        "SELECT path, repeat, cache_key FROM cells WHERE variant = {} ORDER BY path, repeat",
        lit(variant)
    ))?
    .for_each_row(|r| {
        out.push((
            r.str(0)?.unwrap_or_default().to_string(),
            r.i64(1)?.unwrap_or(0) as u32,
            r.str(2)?.unwrap_or_default().to_string(),
        ));
        Ok(())
    })?;
    Ok(out)
}
