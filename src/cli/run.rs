//! `iw-lab run EXPERIMENT`: runs an experiment and prints its leaderboard.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::table::{num, Table};
use super::Env;
use crate::adapter::Context;
use crate::analysis::VariantMetrics;
use crate::runner::{self, RunOptions};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment file, or a name in experiments/.
    pub experiment: String,
    /// Print one JSON object (with `run_id`) instead of the leaderboard.
    #[arg(long)]
    pub json: bool,
    /// Ignore earlier runs: compute every cell again.
    #[arg(long)]
    pub no_cache: bool,
    /// Use only the first N images (sorted by path).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    let path = env.project.experiment_path(&args.experiment)?;
    let exp = crate::config::load_experiment(&env.project, &path)?;
    let ctx = Context::new(env.fetcher.clone());
    let opts = RunOptions {
        no_cache: args.no_cache,
        limit: args.limit,
        command: std::env::args().collect(),
        thumbs: runner::run_thumbs(&env.project),
    };
    let finished = runner::run(&env.project, exp, &ctx, &opts)?;
    let m = &finished.manifest;
    if env.verbose {
        print_keys(&finished.run)?;
    }
    if args.json {
        ui::json_line(&json!({
            "run_id": m.run_id,
            "run_dir": finished.run.path,
            "status": m.status,
            "counts": m.counts,
            "cells": m.counts.cells,
            "cache_hits": m.counts.cache_hits,
            "inferences": m.counts.inferences,
            "failures": m.counts.failures,
            "timings": m.timings,
            "best": m.best,
            "leaderboard": finished.metrics.iter().map(summary).collect::<Vec<_>>(),
        }));
    } else {
        ui::out(leaderboard(&finished.metrics, m.best.as_ref()));
        let c = &m.counts;
        ui::out(format!(
            "\nrun {}: {} images, {} cells ({} cached, {} inferences, {} shared), {} failures, {:.1}s",
            m.run_id, c.images, c.cells, c.cache_hits, c.inferences, c.shared, c.failures, m.timings.total_s
        ));
        if c.failures > 0 {
            ui::out(format!(
                "see the failures with: iw-lab runs show {}",
                m.run_id
            ));
        }
    }
    Ok(if m.counts.failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn summary(m: &VariantMetrics) -> serde_json::Value {
    json!({
        "variant": m.variant, "threshold": m.threshold,
        "micro": m.micro, "macro": m.macro_, "samples": m.samples, "map": m.map,
        "images": m.images, "labels": m.labels,
    })
}

/// The leaderboard: one row per variant and threshold, the goal's winner starred.
pub fn leaderboard(
    metrics: &[VariantMetrics],
    best: Option<&crate::store::manifest::Best>,
) -> String {
    if metrics.is_empty() {
        return "no scores: the dataset has no ground truth for these images".into();
    }
    let mut t = Table::new(&[
        "",
        "variant",
        "threshold",
        "F1 micro",
        "P micro",
        "R micro",
        "F1 macro",
        "F1 samples",
        "mAP",
        "images",
    ]);
    for m in metrics {
        let star = best.is_some_and(|b| b.variant == m.variant && b.threshold == m.threshold);
        t.row(vec![
            if star { "*".into() } else { String::new() },
            m.variant.clone(),
            format!("{}", m.threshold),
            num(Some(m.micro.f1)),
            num(Some(m.micro.precision)),
            num(Some(m.micro.recall)),
            num(Some(m.macro_.f1)),
            num(Some(m.samples.f1)),
            num(m.map),
            m.images.to_string(),
        ]);
    }
    let mut out = t.render();
    if let Some(b) = best {
        out.push_str(&format!(
            "\n* best by {}: {} at {} ({:.4})",
            b.metric, b.variant, b.threshold, b.value
        ));
    }
    out
}

/// `-v`: every cell's cache key, spelled out.
fn print_keys(run: &crate::store::RunDir) -> Result<()> {
    let db = runner::open_db()?;
    let conn = db.connect()?;
    crate::store::tables::open_run(&conn, run)?;
    let mut lines = Vec::new();
    conn.query("SELECT variant, path, cache_key, key_json FROM cells ORDER BY variant, path")?
        .for_each_row(|r| {
            lines.push(format!(
                "{} {} {}\n  {}",
                r.str(0)?.unwrap_or_default(),
                r.str(1)?.unwrap_or_default(),
                r.str(2)?.unwrap_or_default(),
                r.str(3)?.unwrap_or_default()
            ));
            Ok(())
        })?;
    for l in lines {
        ui::note(l);
    }
    Ok(())
}
