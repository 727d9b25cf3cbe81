//! The `judgments` table: one row per verdict (a judge on one cell, one side), committed in
//! parts as verdicts arrive, with the judges' failures beside them in `failures/`; and the
//! reads a run's text metrics are computed from.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::duck::Connection;
use super::writer::{self, FailureRow, FAILURES_SCHEMA, JUDGMENTS_SCHEMA};
use super::{tables, RunDir};

/// One verdict row.
#[derive(Debug, Clone, Default)]
pub struct Judgment {
    pub judge: String,
    pub variant: String,
    pub path: String,
    pub image_hash: String,
    pub repeat: u32,
    /// The key of the judged cell.
    pub target_key: String,
    /// The key of the verdict.
    pub cache_key: String,
    pub side: String,
    pub prompt: String,
    pub raw: String,
    pub verdict: Option<String>,
    pub score: Option<f64>,
    pub valid: bool,
    pub error: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub ms: f64,
    pub origin_run: String,
}

/// Verdicts and judge failures on their way to disk: committed in parts as they arrive (every
/// 64 rows or `IW_LAB_FLUSH_SECONDS`, default 1 s), as cells are, so a run killed at any
/// moment loses only the verdicts in flight and the uncommitted tail.
pub struct JudgmentWriter<'c, 'db> {
    conn: &'c Connection<'db>,
    run: RunDir,
    seq: usize,
    rows: Vec<Judgment>,
    failures: Vec<FailureRow>,
    last_flush: Instant,
    max_rows: usize,
    max_age: Duration,
}

impl<'c, 'db> JudgmentWriter<'c, 'db> {
    pub fn new(conn: &'c Connection<'db>, run: RunDir) -> Self {
        let age = std::env::var("IW_LAB_FLUSH_SECONDS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(1.0);
        JudgmentWriter {
            conn,
            run,
            seq: 0,
            rows: Vec::new(),
            failures: Vec::new(),
            last_flush: Instant::now(),
            max_rows: 64,
            max_age: Duration::from_secs_f64(age.min(3600.0)),
        }
    }

    pub fn push(&mut self, row: Judgment) {
        self.rows.push(row);
    }

    pub fn fail(&mut self, f: FailureRow) {
        self.failures.push(f);
    }

    pub fn maybe_flush(&mut self) -> Result<()> {
        if self.rows.len() + self.failures.len() >= self.max_rows
            || self.last_flush.elapsed() >= self.max_age
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered verdicts as `judgments/part-NNNNNN.parquet` and the failures as
    /// `failures/judges-NNNNNN.parquet`, each atomically.
    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        if self.rows.is_empty() && self.failures.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        if !self.rows.is_empty() {
            let dest = self
                .run
                .table_dir("judgments")
                .join(format!("part-{:06}.parquet", self.seq));
            write_rows(self.conn, &self.run, &dest, &self.rows)?;
            self.rows.clear();
        }
        if !self.failures.is_empty() {
            let dest = self
                .run
                .table_dir("failures")
                .join(format!("judges-{:06}.parquet", self.seq));
            write_failures(self.conn, &self.run, &dest, &self.failures)?;
            self.failures.clear();
        }
        Ok(())
    }
}

fn write_rows(conn: &Connection<'_>, run: &RunDir, dest: &Path, rows: &[Judgment]) -> Result<()> {
    writer::write_table(conn, dest, JUDGMENTS_SCHEMA, |app| {
        for r in rows {
            app.str(&run.id)?
                .str(&r.judge)?
                .str(&r.variant)?
                .str(&r.path)?
                .str(&r.image_hash)?
                .i32(r.repeat as i32)?;
            app.str(&r.target_key)?
                .str(&r.cache_key)?
                .str(&r.side)?
                .str(&r.prompt)?
                .str(&r.raw)?
                .opt_str(r.verdict.as_deref())?;
            match r.score {
                Some(s) => app.f64(s)?,
                None => app.null()?,
            };
            app.bool(r.valid)?
                .opt_str(r.error.as_deref())?
                .i64(r.prompt_tokens as i64)?
                .i64(r.completion_tokens as i64)?
                .f64(r.ms)?
                .str(&r.origin_run)?;
            app.end_row()?;
        }
        Ok(())
    })
}

fn write_failures(
    conn: &Connection<'_>,
    run: &RunDir,
    dest: &Path,
    failures: &[FailureRow],
) -> Result<()> {
    let now = super::time_now().iso();
    conn.execute(&format!(
        "DROP TABLE IF EXISTS j_failures; CREATE TEMP TABLE j_failures ({FAILURES_SCHEMA})"
    ))?;
    {
        let mut app = conn.appender("j_failures")?;
        for f in failures {
            app.str(&run.id)?
                .opt_str(f.variant.as_deref())?
                .opt_str(f.image_hash.as_deref())?;
            app.str(&f.path)?.str(&f.stage)?.str(&f.reason)?.str(&now)?;
            app.end_row()?;
        }
        app.finish()?;
    }
    writer::copy_to_parquet(
        conn,
        "SELECT * REPLACE (created_at::TIMESTAMP AS created_at) FROM j_failures",
        dest,
    )?;
    conn.execute("DROP TABLE j_failures")?;
    Ok(())
}

/// A verdict as the text metrics read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub judge: String,
    pub variant: String,
    pub path: String,
    pub repeat: u32,
    pub side: String,
    pub score: Option<f64>,
    pub valid: bool,
}

/// Every verdict of `run`, by judge, variant, path, repeat and side.
pub fn verdicts(conn: &Connection<'_>, run: &RunDir) -> Result<Vec<Verdict>> {
    tables::open_run(conn, run)?;
    let mut out = Vec::new();
    conn.query(
        "SELECT judge, variant, path, repeat, coalesce(side, ''), score, valid FROM judgments
         ORDER BY judge, variant, path, repeat, side",
    )?
    .for_each_row(|r| {
        out.push(Verdict {
            judge: r.str(0)?.unwrap_or_default().to_string(),
            variant: r.str(1)?.unwrap_or_default().to_string(),
            path: r.str(2)?.unwrap_or_default().to_string(),
            repeat: r.i64(3)?.unwrap_or(0) as u32,
            side: r.str(4)?.unwrap_or_default().to_string(),
            score: r.f64(5)?,
            valid: r.bool(6)?.unwrap_or(false),
        });
        Ok(())
    })?;
    Ok(out)
}

/// Judge failures of `run` counted by (judge, variant). A judge failure's stage reads
/// `judge NAME (STAGE)`.
pub fn failure_counts(conn: &Connection<'_>, run: &RunDir) -> Result<Vec<(String, String, u64)>> {
    tables::open_run(conn, run)?;
    let mut out = Vec::new();
    conn.query(
        "SELECT stage, variant, count(*) FROM failures WHERE stage LIKE 'judge %' GROUP BY ALL",
    )?
    .for_each_row(|r| {
        let stage = r.str(0)?.unwrap_or_default();
        let judge = stage
            .trim_start_matches("judge ")
            .split(" (")
            .next()
            .unwrap_or_default()
            .to_string();
        out.push((
            judge,
            r.str(1)?.unwrap_or_default().to_string(),
            r.i64(2)?.unwrap_or(0) as u64,
        ));
        Ok(())
    })?;
    Ok(out)
}

/// Generation totals of one variant: outputs, tokens, and the cost when any answer had one.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub variant: String,
    pub outputs: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Option<f64>,
}

/// Generation totals of every variant of `run` with texts.
pub fn generation(conn: &Connection<'_>, run: &RunDir) -> Result<Vec<Generation>> {
    tables::open_run(conn, run)?;
    let mut out = Vec::new();
    conn.query(
        "SELECT variant, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost), count(cost)
         FROM texts GROUP BY variant",
    )?
    .for_each_row(|r| {
        let n_cost = r.i64(5)?.unwrap_or(0);
        out.push(Generation {
            variant: r.str(0)?.unwrap_or_default().to_string(),
            outputs: r.i64(1)?.unwrap_or(0) as u64,
            prompt_tokens: r.f64(2)?.unwrap_or(0.0) as u64,
            completion_tokens: r.f64(3)?.unwrap_or(0.0) as u64,
            cost: (n_cost > 0).then(|| r.f64(4).ok().flatten().unwrap_or(0.0)),
        });
        Ok(())
    })?;
    Ok(out)
}
