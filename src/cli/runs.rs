//! `iw-lab runs list` and `iw-lab runs show RUN`.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::table::{num, Table};
use super::Env;
use crate::store::{self, Manifest};
use crate::ui;

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// All runs, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One run: manifest, counts, failures.
    Show {
        /// Run id, unique prefix, `latest`, or a run folder.
        run: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(env: &Env, cmd: RunsCommand) -> Result<ExitCode> {
    match cmd {
        RunsCommand::List { json } => list(env, json),
        RunsCommand::Show { run, json } => show(env, &run, json),
    }
}

fn list(env: &Env, as_json: bool) -> Result<ExitCode> {
    let runs = store::list_runs(&env.project.runs_dir());
    let manifests: Vec<(store::RunDir, Manifest)> = runs
        .into_iter()
        .filter_map(|r| match Manifest::read(&r.manifest_path()) {
            Ok(m) => Some((r, m)),
            Err(e) => {
                ui::warn(format!("{e:#}"));
                None
            }
        })
        .collect();
    if as_json {
        let items: Vec<_> = manifests
            .iter()
            .map(|(r, m)| {
                json!({
                    "run_id": m.run_id, "experiment": m.experiment, "status": m.effective_status(),
                    "started_at": m.started_at, "finished_at": m.finished_at, "dataset": m.dataset.name,
                    "images": m.counts.images, "cells": m.counts.cells, "cache_hits": m.counts.cache_hits,
                    "inferences": m.counts.inferences, "failures": m.counts.failures, "best": m.best,
                    "path": r.path,
                })
            })
            .collect();
        ui::json_line(&json!({ "runs": items }));
        return Ok(ExitCode::SUCCESS);
    }
    if manifests.is_empty() {
        ui::out(format!("no runs in {}", env.project.runs_dir().display()));
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "run",
        "experiment",
        "status",
        "started",
        "images",
        "cells",
        "cached",
        "inferred",
        "failed",
        "best",
    ]);
    for (_, m) in &manifests {
        let best = m.best.as_ref().map_or_else(String::new, |b| {
            format!(
                "{} {}@{} = {}",
                b.metric,
                b.variant,
                b.threshold,
                num(Some(b.value))
            )
        });
        t.row(vec![
            m.run_id.clone(),
            m.experiment.clone(),
            m.effective_status().as_str().into(),
            m.started_at.clone(),
            m.counts.images.to_string(),
            m.counts.cells.to_string(),
            m.counts.cache_hits.to_string(),
            m.counts.inferences.to_string(),
            m.counts.failures.to_string(),
            best,
        ]);
    }
    ui::out(t.render());
    Ok(ExitCode::SUCCESS)
}

/// A run's failures: (file, variant, stage, reason, image hash).
pub fn failures(env: &Env, run: &store::RunDir) -> Result<Vec<serde_json::Value>> {
    crate::store::duck::ensure(&env.fetcher)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    crate::store::tables::open_run(&conn, run)?;
    Ok(store::cells::failures(&conn)?
        .into_iter()
        .map(|f| {
            json!({
                "file": f.path, "variant": f.variant, "stage": f.stage,
                "reason": f.reason, "hash": f.image_hash,
            })
        })
        .collect())
}

fn show(env: &Env, reference: &str, as_json: bool) -> Result<ExitCode> {
    let run = store::resolve_run(&env.project.runs_dir(), reference)?;
    let m = Manifest::read(&run.manifest_path())?;
    let failed = failures(env, &run)?;
    if as_json {
        let mut doc = serde_json::to_value(&m)?;
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("status".into(), json!(m.effective_status()));
            obj.insert("run_dir".into(), json!(run.path));
            for (k, v) in [
                ("images", m.counts.images),
                ("cells", m.counts.cells),
                ("cache_hits", m.counts.cache_hits),
                ("inferences", m.counts.inferences),
                ("failures", m.counts.failures),
            ] {
                obj.insert(k.into(), json!(v));
            }
            obj.insert("failed".into(), json!(failed));
            obj.remove("resolved");
        }
        ui::json_line(&doc);
        return Ok(ExitCode::SUCCESS);
    }
    let c = &m.counts;
    let mut lines = vec![
        format!("run        {}", m.run_id),
        format!("status     {}", m.effective_status().as_str()),
        format!("experiment {} ({})", m.experiment, m.experiment_file.display()),
        format!("dataset    {} ({}), ground truth: {}", m.dataset.name, m.dataset.root.display(), m.dataset.ground_truth.as_deref().unwrap_or("none")),
        format!("started    {}  finished {}", m.started_at, m.finished_at.as_deref().unwrap_or("-")),
        format!("tool       iw-lab {}", m.tool_version),
        format!(
            "counts     {} images ({} labelled), {} cells: {} cached, {} inferences, {} shared, {} failures",
            c.images, c.labelled, c.cells, c.cache_hits, c.inferences, c.shared, c.failures
        ),
        format!(
            "timings    scan {:.2}s, lookup {:.2}s, inference {:.2}s, metrics {:.2}s, total {:.2}s",
            m.timings.scan_s, m.timings.lookup_s, m.timings.infer_s, m.timings.metrics_s, m.timings.total_s
        ),
    ];
    for (name, rec) in &m.models {
        lines.push(format!(
            "model      {name}: {} v{} fingerprint {}",
            rec.kind,
            rec.adapter_version,
            &rec.fingerprint[..16.min(rec.fingerprint.len())]
        ));
        for f in &rec.files {
            lines.push(format!(
                "             {} {} sha256 {}",
                f.role, f.source, f.sha256
            ));
        }
    }
    if let Some(b) = &m.best {
        lines.push(format!(
            "best       {} at {}: {} = {:.4}",
            b.variant, b.threshold, b.metric, b.value
        ));
    }
    if let Some(e) = &m.error {
        lines.push(format!("error      {e}"));
    }
    ui::out(lines.join("\n"));
    if !failed.is_empty() {
        let mut t = Table::new(&["file", "variant", "stage", "reason"]);
        for f in &failed {
            let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
            t.row(vec![s("file"), s("variant"), s("stage"), s("reason")]);
        }
        ui::out(format!("\nfailures\n{}", t.render()));
    }
    Ok(ExitCode::SUCCESS)
}
