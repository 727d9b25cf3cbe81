//! Opening run tables in DuckDB, in place: views named after the tables of one run
//! (`images`, `image_loras`, `ground_truth`, `cells`, `outputs`, `failures`, `texts`,
//! `judgments`, `regions`) and of all runs (`all_cells`,
//! `all_outputs`, `all_failures`, `all_regions`, `runs`). A table with no parts yet is an empty view of the
//! right shape, so queries never fail for want of files.

use std::path::Path;

use anyhow::Result;

use super::writer::{
    CELLS_SCHEMA, FAILURES_SCHEMA, GROUND_TRUTH_SCHEMA, IMAGES_SCHEMA, IMAGE_LORAS_SCHEMA,
    JUDGMENTS_SCHEMA, OUTPUTS_SCHEMA, REGIONS_SCHEMA, TEXTS_SCHEMA,
};
use super::{list_parquet, list_runs, Manifest, RunDir};
use crate::store::duck::{path_list, path_lit, Connection};

/// A query with no rows and every column of `schema`: unioned by name with a table's parts,
/// it gives the columns that parts written by an older iw-lab lack (as NULL).
pub fn empty_select(schema: &str) -> String {
    let cols: Vec<String> = schema
        .split(", ")
        .map(|c| {
            let (n, t) = c.split_once(' ').unwrap_or((c, "VARCHAR"));
            let t = if n == "created_at" { "TIMESTAMP" } else { t };
            format!("NULL::{t} AS {n}")
        })
        .collect();
    format!("SELECT {} WHERE false", cols.join(", "))
}

fn empty_view(conn: &Connection<'_>, name: &str, schema: &str) -> Result<()> {
    conn.execute(&format!(
        "CREATE OR REPLACE VIEW {name} AS {}",
        empty_select(schema)
    ))?;
    Ok(())
}

fn parts_view(
    conn: &Connection<'_>,
    name: &str,
    files: &[std::path::PathBuf],
    schema: &str,
) -> Result<()> {
    if files.is_empty() {
        return empty_view(conn, name, schema);
    }
    conn.execute(&format!(
        "CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({}, union_by_name = true) UNION ALL BY NAME {}",
        path_list(files),
        empty_select(schema)
    ))?;
    Ok(())
}

fn file_view(conn: &Connection<'_>, name: &str, file: &Path, schema: &str) -> Result<()> {
    if !file.is_file() {
        return empty_view(conn, name, schema);
    }
    conn.execute(&format!(
        "CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({})",
        path_lit(file)
    ))?;
    Ok(())
}

/// Creates the one-run views.
pub fn open_run(conn: &Connection<'_>, run: &RunDir) -> Result<()> {
    file_view(conn, "images", &run.file("images.parquet"), IMAGES_SCHEMA)?;
    file_view(
        conn,
        "image_loras",
        &run.file("image_loras.parquet"),
        IMAGE_LORAS_SCHEMA,
    )?;
    file_view(
        conn,
        "ground_truth",
        &run.file("ground_truth.parquet"),
        GROUND_TRUTH_SCHEMA,
    )?;
    parts_view(conn, "cells", &run.parts("cells"), CELLS_SCHEMA)?;
    parts_view(conn, "outputs", &run.parts("outputs"), OUTPUTS_SCHEMA)?;
    parts_view(conn, "failures", &run.parts("failures"), FAILURES_SCHEMA)?;
    parts_view(conn, "texts", &run.parts("texts"), TEXTS_SCHEMA)?;
    parts_view(conn, "judgments", &run.parts("judgments"), JUDGMENTS_SCHEMA)?;
    parts_view(conn, "regions", &run.parts("regions"), REGIONS_SCHEMA)?;
    Ok(())
}

/// Creates the all-runs views, and `runs` from the manifests.
pub fn open_all(conn: &Connection<'_>, runs_dir: &Path) -> Result<()> {
    let runs = list_runs(runs_dir);
    let gather = |table: &str| -> Vec<std::path::PathBuf> {
        runs.iter()
            .flat_map(|r| list_parquet(&r.table_dir(table)))
            .collect()
    };
    parts_view(conn, "all_cells", &gather("cells"), CELLS_SCHEMA)?;
    parts_view(conn, "all_outputs", &gather("outputs"), OUTPUTS_SCHEMA)?;
    parts_view(conn, "all_failures", &gather("failures"), FAILURES_SCHEMA)?;
    parts_view(conn, "all_texts", &gather("texts"), TEXTS_SCHEMA)?;
    parts_view(conn, "all_regions", &gather("regions"), REGIONS_SCHEMA)?;
    parts_view(
        conn,
        "all_judgments",
        &gather("judgments"),
        JUDGMENTS_SCHEMA,
    )?;
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE runs (run_id VARCHAR, experiment VARCHAR, status VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, dataset VARCHAR, images BIGINT, cells BIGINT, cache_hits BIGINT, inferences BIGINT, failures BIGINT, best_variant VARCHAR, best_threshold DOUBLE, best_metric VARCHAR, best_value DOUBLE, path VARCHAR)",
    )?;
    let mut app = conn.appender("runs")?;
    for r in &runs {
        let Ok(m) = Manifest::read(&r.manifest_path()) else {
            continue;
        };
        let ts = |s: &str| s.trim_end_matches('Z').replace('T', " ");
        app.str(&m.run_id)?
            .str(&m.experiment)?
            .str(m.effective_status().as_str())?
            .str(&ts(&m.started_at))?;
        app.opt_str(m.finished_at.as_deref().map(ts).as_deref())?
            .str(&m.dataset.name)?;
        app.i64(m.counts.images as i64)?
            .i64(m.counts.cells as i64)?
            .i64(m.counts.cache_hits as i64)?;
        app.i64(m.counts.inferences as i64)?
            .i64(m.counts.failures as i64)?;
        match &m.best {
            Some(b) => {
                app.str(&b.variant)?
                    .f64(b.threshold)?
                    .str(&b.metric)?
                    .f64(b.value)?;
            }
            None => {
                app.null()?.null()?.null()?.null()?;
            }
        }
        app.str(&r.path.to_string_lossy())?;
        app.end_row()?;
    }
    app.finish()?;
    Ok(())
}
