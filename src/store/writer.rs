//! Writing a run's tables as Parquet parts through an in-memory DuckDB.
//!
//! Rows are buffered in Rust and appended in bulk at each flush; each table's buffered rows
//! become one part file, written under a temporary name, fsynced and renamed. Outputs are
//! committed before the cells that own them, so a reader that sees a cell always finds its
//! outputs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::RunDir;
use crate::engine::TagScore;
use crate::store::duck::{path_lit, Appender, Connection};

/// DuckDB column definitions of the run tables.
pub const CELLS_SCHEMA: &str = "run_id VARCHAR, variant VARCHAR, path VARCHAR, image_hash VARCHAR, repeat INTEGER, cache_key VARCHAR, key_json VARCHAR, origin_run VARCHAR, n_tags INTEGER, infer_ms DOUBLE, created_at VARCHAR, fallback BOOLEAN";
pub const OUTPUTS_SCHEMA: &str = "run_id VARCHAR, variant VARCHAR, path VARCHAR, image_hash VARCHAR, repeat INTEGER, cache_key VARCHAR, tag VARCHAR, score FLOAT, category VARCHAR";
pub const FAILURES_SCHEMA: &str =
    "run_id VARCHAR, variant VARCHAR, image_hash VARCHAR, path VARCHAR, stage VARCHAR, reason VARCHAR, created_at VARCHAR";
pub const IMAGES_SCHEMA: &str = "path VARCHAR, image_hash VARCHAR, bytes BIGINT, format VARCHAR, width INTEGER, height INTEGER, labelled BOOLEAN, folder VARCHAR, generator VARCHAR, model VARCHAR, model_hash VARCHAR, sampler VARCHAR, scheduler VARCHAR, seed UBIGINT, steps INTEGER, cfg DOUBLE, gen_width INTEGER, gen_height INTEGER, vae VARCHAR, clip_skip INTEGER, denoise DOUBLE, prompt VARCHAR, negative_prompt VARCHAR";
/// One row per image × LoRA its generation metadata names.
pub const IMAGE_LORAS_SCHEMA: &str =
    "path VARCHAR, image_hash VARCHAR, lora VARCHAR, weight DOUBLE";
/// What generative variants wrote: one row per cell (raw answer, parsed caption, prompt,
/// parameters, tokens, cost, and how free-text tags were mapped onto the vocabulary).
pub const TEXTS_SCHEMA: &str = "run_id VARCHAR, variant VARCHAR, path VARCHAR, image_hash VARCHAR, repeat INTEGER, cache_key VARCHAR, prompt_name VARCHAR, prompt_hash VARCHAR, prompt VARCHAR, params VARCHAR, raw VARCHAR, caption VARCHAR, mapping VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, cost DOUBLE, finish VARCHAR, attempts INTEGER, note VARCHAR";
/// Judges' verdicts: one row per (judge, judged cell, order).
pub const JUDGMENTS_SCHEMA: &str = "run_id VARCHAR, judge VARCHAR, variant VARCHAR, path VARCHAR, image_hash VARCHAR, repeat INTEGER, target_key VARCHAR, cache_key VARCHAR, side VARCHAR, prompt VARCHAR, raw VARCHAR, verdict VARCHAR, score DOUBLE, valid BOOLEAN, error VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, ms DOUBLE, origin_run VARCHAR";
/// What vector engines gave: one row per cell and hash method (`hash`, hex), or one row per
/// cell with its `embedding`.
pub const VECTORS_SCHEMA: &str = "run_id VARCHAR, variant VARCHAR, path VARCHAR, image_hash VARCHAR, repeat INTEGER, cache_key VARCHAR, method VARCHAR, hash VARCHAR, embedding FLOAT[]";
/// The same, as the writer's staging table holds it (embeddings as text until committed).
const VECTORS_STAGING: &str = "run_id VARCHAR, variant VARCHAR, path VARCHAR, image_hash VARCHAR, repeat INTEGER, cache_key VARCHAR, method VARCHAR, hash VARCHAR, embedding VARCHAR";
/// What detectors found: one row per cell and region (a face), with its box, landmarks,
/// score, sharpness, embedding, recognised person and why it was skipped, if it was.
pub const REGIONS_SCHEMA: &str = "run_id VARCHAR, variant VARCHAR, path VARCHAR, image_hash VARCHAR, repeat INTEGER, cache_key VARCHAR, region INTEGER, x FLOAT, y FLOAT, w FLOAT, h FLOAT, score FLOAT, landmarks FLOAT[], blur FLOAT, person VARCHAR, similarity FLOAT, skipped VARCHAR, embedding FLOAT[], image_w INTEGER, image_h INTEGER";
/// The same, as the writer's staging table holds it (lists as text until committed).
const REGIONS_STAGING: &str = "run_id VARCHAR, variant VARCHAR, path VARCHAR, image_hash VARCHAR, repeat INTEGER, cache_key VARCHAR, region INTEGER, x FLOAT, y FLOAT, w FLOAT, h FLOAT, score FLOAT, landmarks VARCHAR, blur FLOAT, person VARCHAR, similarity FLOAT, skipped VARCHAR, embedding VARCHAR, image_w INTEGER, image_h INTEGER";
pub const GROUND_TRUTH_SCHEMA: &str =
    "path VARCHAR, image_hash VARCHAR, source VARCHAR, tag VARCHAR";

/// One finished cell.
#[derive(Debug, Clone)]
pub struct CellRow {
    pub variant: String,
    /// The image file, relative to the dataset root.
    pub path: String,
    pub image_hash: String,
    pub repeat: u32,
    pub cache_key: String,
    pub key_json: String,
    pub origin_run: String,
    pub n_tags: usize,
    pub infer_ms: f64,
    /// The output is a configured fallback (an LLM merge that fell back to the union), or
    /// was computed from one: it is scored in this run but never served from the cache.
    pub fallback: bool,
}

/// What a generative cell wrote besides its tags.
#[derive(Debug, Clone, Default)]
pub struct TextRow {
    pub prompt_name: String,
    pub prompt_hash: String,
    pub prompt: String,
    pub params: String,
    pub raw: String,
    pub caption: Option<String>,
    /// JSON list of {raw, tag, method, similarity}.
    pub mapping: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Option<f64>,
    pub finish: String,
    pub attempts: u32,
    pub note: Option<String>,
}

/// One failure: a cell (variant set) or an input (variant unset).
#[derive(Debug, Clone)]
pub struct FailureRow {
    pub variant: Option<String>,
    pub image_hash: Option<String>,
    pub path: String,
    pub stage: String,
    pub reason: String,
}

/// Buffers rows and writes Parquet parts.
pub struct PartWriter<'c, 'db> {
    conn: &'c Connection<'db>,
    run: RunDir,
    seq: usize,
    cells: Vec<CellRow>,
    outputs: Vec<(usize, Vec<TagScore>)>,
    failures: Vec<FailureRow>,
    texts: Vec<(usize, TextRow)>,
    vectors: Vec<(usize, crate::words::Vector)>,
    regions: Vec<(usize, Vec<crate::words::Region>)>,
    last_flush: Instant,
    /// Flush after this many cells (`IW_LAB_FLUSH_CELLS`, default 512)...
    pub max_cells: usize,
    /// ...or this long after the last flush (`IW_LAB_FLUSH_SECONDS`, default 2).
    pub max_age: Duration,
}

impl<'c, 'db> PartWriter<'c, 'db> {
    pub fn new(conn: &'c Connection<'db>, run: RunDir) -> Result<Self> {
        conn.execute(&format!(
            "CREATE TEMP TABLE w_cells ({CELLS_SCHEMA}); CREATE TEMP TABLE w_outputs ({OUTPUTS_SCHEMA}); CREATE TEMP TABLE w_failures ({FAILURES_SCHEMA}); CREATE TEMP TABLE w_texts ({TEXTS_SCHEMA}); CREATE TEMP TABLE w_vectors ({VECTORS_STAGING}); CREATE TEMP TABLE w_regions ({REGIONS_STAGING});"
        ))?;
        Ok(PartWriter {
            conn,
            run,
            seq: 0,
            cells: Vec::new(),
            outputs: Vec::new(),
            failures: Vec::new(),
            texts: Vec::new(),
            vectors: Vec::new(),
            regions: Vec::new(),
            last_flush: Instant::now(),
            max_cells: env_or("IW_LAB_FLUSH_CELLS", 512.0) as usize,
            max_age: Duration::from_secs_f64(env_or("IW_LAB_FLUSH_SECONDS", 2.0)),
        })
    }

    /// Buffers a finished cell and its outputs.
    pub fn add_cell(&mut self, cell: CellRow, outputs: Vec<TagScore>) {
        self.outputs.push((self.cells.len(), outputs));
        self.cells.push(cell);
    }

    /// Buffers a finished generative cell, its tags and its text.
    pub fn add_text_cell(&mut self, cell: CellRow, outputs: Vec<TagScore>, text: TextRow) {
        self.texts.push((self.cells.len(), text));
        self.add_cell(cell, outputs);
    }

    /// Buffers a finished cell of a detector: its tags and the regions they came from.
    pub fn add_region_cell(
        &mut self,
        cell: CellRow,
        outputs: Vec<TagScore>,
        regions: Vec<crate::words::Region>,
    ) {
        if !regions.is_empty() {
            self.regions.push((self.cells.len(), regions));
        }
        self.add_cell(cell, outputs);
    }

    /// Buffers a finished cell of a vector engine and its vector.
    pub fn add_vector_cell(&mut self, cell: CellRow, vector: crate::words::Vector) {
        self.vectors.push((self.cells.len(), vector));
        self.cells.push(cell);
    }

    /// Buffers a cell whose outputs are already in the run (copied cache hits).
    pub fn add_cell_without_outputs(&mut self, cell: CellRow) {
        self.cells.push(cell);
    }

    pub fn add_failure(&mut self, f: FailureRow) {
        self.failures.push(f);
    }

    /// Flushes when enough rows or time have accumulated.
    pub fn maybe_flush(&mut self) -> Result<()> {
        if self.cells.len() + self.failures.len() >= self.max_cells
            || self.last_flush.elapsed() >= self.max_age
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered rows as one part per table: outputs and texts, then the cells that own
    /// them, then failures.
    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        if self.cells.is_empty() && self.failures.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        let name = format!("part-{:06}.parquet", self.seq);
        let now = super::time_now().iso();
        if self.outputs.iter().any(|(_, o)| !o.is_empty()) {
            self.append_outputs()?;
            self.commit("w_outputs", "outputs", &name, "")?;
        }
        if !self.texts.is_empty() {
            self.append_texts()?;
            self.commit("w_texts", "texts", &name, "")?;
        }
        if !self.vectors.is_empty() {
            self.append_vectors()?;
            let replace = "REPLACE (embedding::FLOAT[] AS embedding)";
            self.commit("w_vectors", "vectors", &name, replace)?;
        }
        if !self.regions.is_empty() {
            self.append_regions()?;
            let replace =
                "REPLACE (landmarks::FLOAT[] AS landmarks, embedding::FLOAT[] AS embedding)";
            self.commit("w_regions", "regions", &name, replace)?;
        }
        if !self.cells.is_empty() {
            self.append_cells(&now)?;
            let replace = "REPLACE (created_at::TIMESTAMP AS created_at)";
            self.commit("w_cells", "cells", &name, replace)?;
        }
        if !self.failures.is_empty() {
            self.append_failures(&now)?;
            let replace = "REPLACE (created_at::TIMESTAMP AS created_at)";
            self.commit("w_failures", "failures", &name, replace)?;
        }
        self.cells.clear();
        self.outputs.clear();
        self.texts.clear();
        self.vectors.clear();
        self.regions.clear();
        self.failures.clear();
        Ok(())
    }

    /// Appends the columns every per-cell table starts with.
    fn cell_columns(&self, app: &mut Appender<'_>, c: &CellRow) -> crate::store::duck::Result<()> {
        app.str(&self.run.id)?
            .str(&c.variant)?
            .str(&c.path)?
            .str(&c.image_hash)?
            .i32(c.repeat as i32)?
            .str(&c.cache_key)?;
        Ok(())
    }

    fn append_outputs(&self) -> Result<()> {
        let mut app = self.conn.appender("w_outputs")?;
        for (ci, scores) in &self.outputs {
            for s in scores {
                self.cell_columns(&mut app, &self.cells[*ci])?;
                app.str(&s.tag)?.f32(s.score)?.str(s.category.as_str())?;
                app.end_row()?;
            }
        }
        app.finish()?;
        Ok(())
    }

    fn append_texts(&self) -> Result<()> {
        let mut app = self.conn.appender("w_texts")?;
        for (ci, t) in &self.texts {
            self.cell_columns(&mut app, &self.cells[*ci])?;
            app.str(&t.prompt_name)?
                .str(&t.prompt_hash)?
                .str(&t.prompt)?
                .str(&t.params)?
                .str(&t.raw)?
                .opt_str(t.caption.as_deref())?
                .opt_str(t.mapping.as_deref())?
                .i64(t.prompt_tokens as i64)?
                .i64(t.completion_tokens as i64)?;
            match t.cost {
                Some(c) => app.f64(c)?,
                None => app.null()?,
            };
            app.str(&t.finish)?
                .i32(t.attempts as i32)?
                .opt_str(t.note.as_deref())?;
            app.end_row()?;
        }
        app.finish()?;
        Ok(())
    }

    fn append_vectors(&self) -> Result<()> {
        let mut app = self.conn.appender("w_vectors")?;
        for (ci, v) in &self.vectors {
            match v {
                crate::words::Vector::Hashes(hashes) => {
                    for (method, hex) in hashes {
                        self.cell_columns(&mut app, &self.cells[*ci])?;
                        app.str(method)?.str(hex)?.null()?;
                        app.end_row()?;
                    }
                }
                crate::words::Vector::Embedding(values) => {
                    self.cell_columns(&mut app, &self.cells[*ci])?;
                    app.str("embedding")?.null()?.str(&float_list(values))?;
                    app.end_row()?;
                }
            }
        }
        app.finish()?;
        Ok(())
    }

    fn append_regions(&self) -> Result<()> {
        let mut app = self.conn.appender("w_regions")?;
        for (ci, regions) in &self.regions {
            for (i, r) in regions.iter().enumerate() {
                self.cell_columns(&mut app, &self.cells[*ci])?;
                app.i32(i as i32)?
                    .f32(r.x)?
                    .f32(r.y)?
                    .f32(r.w)?
                    .f32(r.h)?
                    .f32(r.score)?
                    .str(&float_list(&r.landmarks))?;
                match r.blur {
                    Some(b) => app.f32(b)?,
                    None => app.null()?,
                };
                app.opt_str(r.person.as_ref().map(|p| p.0.as_str()))?;
                match &r.person {
                    Some((_, s)) => app.f32(*s)?,
                    None => app.null()?,
                };
                app.opt_str(r.skipped.as_deref())?;
                match &r.embedding {
                    Some(e) => app.str(&float_list(e))?,
                    None => app.null()?,
                };
                app.opt_i32(Some(r.frame.0))?.opt_i32(Some(r.frame.1))?;
                app.end_row()?;
            }
        }
        app.finish()?;
        Ok(())
    }

    fn append_cells(&self, now: &str) -> Result<()> {
        let mut app = self.conn.appender("w_cells")?;
        for c in &self.cells {
            self.cell_columns(&mut app, c)?;
            app.str(&c.key_json)?
                .str(&c.origin_run)?
                .i32(c.n_tags as i32)?
                .f64(c.infer_ms)?
                .str(now)?
                .bool(c.fallback)?;
            app.end_row()?;
        }
        app.finish()?;
        Ok(())
    }

    fn append_failures(&self, now: &str) -> Result<()> {
        let mut app = self.conn.appender("w_failures")?;
        for f in &self.failures {
            app.str(&self.run.id)?
                .opt_str(f.variant.as_deref())?
                .opt_str(f.image_hash.as_deref())?;
            app.str(&f.path)?.str(&f.stage)?.str(&f.reason)?.str(now)?;
            app.end_row()?;
        }
        app.finish()?;
        Ok(())
    }

    fn commit(&self, table: &str, dir: &str, name: &str, replace: &str) -> Result<()> {
        let dest = self.run.table_dir(dir).join(name);
        copy_to_parquet(
            self.conn,
            &format!("SELECT * {replace} FROM {table}"),
            &dest,
        )?;
        // DELETE would keep the rows' memory until a checkpoint; a fresh table frees it.
        let schema = match table {
            "w_outputs" => OUTPUTS_SCHEMA,
            "w_cells" => CELLS_SCHEMA,
            "w_texts" => TEXTS_SCHEMA,
            "w_vectors" => VECTORS_STAGING,
            "w_regions" => REGIONS_STAGING,
            _ => FAILURES_SCHEMA,
        };
        self.conn.execute(&format!(
            "DROP TABLE {table}; CREATE TEMP TABLE {table} ({schema})"
        ))?;
        Ok(())
    }
}

impl Drop for PartWriter<'_, '_> {
    fn drop(&mut self) {
        let _ = self.conn.execute("DROP TABLE IF EXISTS w_cells; DROP TABLE IF EXISTS w_outputs; DROP TABLE IF EXISTS w_failures; DROP TABLE IF EXISTS w_texts; DROP TABLE IF EXISTS w_vectors; DROP TABLE IF EXISTS w_regions;");
    }
}

/// Writes the result of `select` to `dest` as Parquet, atomically (temporary name in the same
/// folder, fsync, rename).
pub fn copy_to_parquet(conn: &Connection<'_>, select: &str, dest: &Path) -> Result<()> {
    let staged = crate::atomic::stage_new(dest, &[], false)
        .with_context(|| format!("writing {}", dest.display()))?;
    conn.execute(&format!(
        "COPY ({select}) TO {} (FORMAT parquet, COMPRESSION zstd)",
        path_lit(staged.path())
    ))
    .with_context(|| format!("writing {}", dest.display()))?;
    staged
        .commit_written()
        .with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(())
}

/// Writes a whole single-file table from rows appended by `fill`.
pub fn write_table(
    conn: &Connection<'_>,
    dest: &Path,
    schema: &str,
    fill: impl FnOnce(&mut crate::store::duck::Appender<'_>) -> crate::store::duck::Result<()>,
) -> Result<()> {
    write_table_as(conn, dest, schema, "", fill)
}

/// [`write_table`] with the rows staged as `schema` and converted on the way out by `replace`
/// (`REPLACE (embedding::FLOAT[] AS embedding)`: lists are appended as text).
pub fn write_table_as(
    conn: &Connection<'_>,
    dest: &Path,
    schema: &str,
    replace: &str,
    fill: impl FnOnce(&mut crate::store::duck::Appender<'_>) -> crate::store::duck::Result<()>,
) -> Result<()> {
    let table = "w_single";
    conn.execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TEMP TABLE {table} ({schema})"
    ))?;
    {
        let mut app = conn.appender(table)?;
        fill(&mut app)?;
        app.finish()?;
    }
    copy_to_parquet(conn, &format!("SELECT * {replace} FROM {table}"), dest)?;
    conn.execute(&format!("DROP TABLE {table}"))?;
    Ok(())
}

/// `[v, v, ...]` with every f32 written so it reads back exactly (non-finite values, which no
/// engine should give, become 0).
pub fn float_list(values: &[f32]) -> String {
    let mut s = String::with_capacity(values.len() * 12 + 2);
    s.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = if v.is_finite() { *v } else { 0.0 };
        s.push_str(&format!("{v:?}"));
    }
    s.push(']');
    s
}

/// A positive number from the environment (tuning knobs documented in `docs/runs.md`).
fn env_or(key: &str, default: f64) -> f64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(default)
}
