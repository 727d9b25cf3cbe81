//! `iw-lab plan EXPERIMENT`: the cells, with cache hits and misses; runs nothing.

use std::process::ExitCode;

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use serde_json::json;

use super::table::Table;
use super::Env;
use crate::runner;
use crate::store::lookup;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment file, or a name in experiments/.
    pub experiment: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Use only the first N images (sorted by path).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    let path = env.project.experiment_path(&args.experiment)?;
    let exp = crate::config::load_experiment(
        &env.project,
        &path,
        &crate::prompt_scores::FromRuns(&env.project.root),
    )?;
    let ctx = env.engine_context()?;
    crate::store::duck::ensure(&ctx.fetcher)?;
    let staged = runner::stage(&env.project, exp, &ctx, args.limit, false)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let hits = lookup::find_hits(
        &conn,
        &env.project.runs_dir(),
        lookup::Scope::Except(""),
        &staged.keys(),
    )?;
    let counted = Counted::of(&staged, &hits);
    if env.verbose {
        explain(&staged, &hits);
    }
    if args.json {
        ui::json_line(&counted.json(&staged));
    } else {
        ui::out(counted.table(&staged));
    }
    Ok(ExitCode::SUCCESS)
}

/// One variant's cells.
#[derive(Default)]
struct Cells {
    total: usize,
    hits: usize,
    /// Keyed by their inputs' outputs: known once those have run.
    pending: usize,
}

impl Cells {
    fn misses(&self) -> usize {
        self.total - self.hits - self.pending
    }
}

/// The plan counted against the cache.
struct Counted {
    variants: Vec<Cells>,
    /// Distinct keys to compute, and cells of models not downloaded yet.
    inferences: usize,
}

impl Counted {
    fn of(staged: &runner::Staged, hits: &HashMap<String, lookup::Hit>) -> Counted {
        let n_images = staged.images().len();
        let mut variants: Vec<Cells> = staged
            .exp
            .variants
            .iter()
            .map(|_| Cells::default())
            .collect();
        let mut to_compute = HashSet::new();
        for c in &staged.plan.cells {
            let v = &mut variants[c.variant];
            v.total += 1;
            match &c.key {
                None => v.pending += 1,
                Some(k) if hits.contains_key(k) => v.hits += 1,
                Some(k) => {
                    to_compute.insert(k.as_str());
                }
            }
        }
        for &vi in &staged.plan.unidentified {
            variants[vi].total = n_images;
        }
        Counted {
            inferences: to_compute.len() + staged.plan.unidentified.len() * n_images,
            variants,
        }
    }

    fn sum(&self, f: impl Fn(&Cells) -> usize) -> usize {
        self.variants.iter().map(f).sum()
    }

    fn json(&self, staged: &runner::Staged) -> serde_json::Value {
        let exp = &staged.exp;
        let rows: Vec<serde_json::Value> = exp
            .variants
            .iter()
            .zip(&self.variants)
            .enumerate()
            .map(|(vi, (v, c))| {
                json!({
                    "variant": v.name, "model": v.model.name, "cells": c.total,
                    "cache_hits": c.hits, "cache_misses": c.misses(), "pending": c.pending,
                    "identified": !staged.plan.unidentified.contains(&vi),
                    "thresholds": v.thresholds,
                })
            })
            .collect();
        json!({
            "experiment": exp.name,
            "dataset": exp.dataset.name,
            "images": staged.images().len(),
            "cells": self.sum(|c| c.total),
            "cache_hits": self.sum(|c| c.hits),
            "cache_misses": self.sum(Cells::misses),
            "pending": self.sum(|c| c.pending),
            "inferences": self.inferences,
            "variants": rows,
        })
    }

    fn table(&self, staged: &runner::Staged) -> String {
        let exp = &staged.exp;
        let mut t = Table::new(&["variant", "model", "cells", "hits", "misses", "thresholds"]);
        for (vi, (v, c)) in exp.variants.iter().zip(&self.variants).enumerate() {
            let mut model = v.model.name.clone();
            if staged.plan.unidentified.contains(&vi) {
                model.push_str(" (not downloaded)");
            }
            let misses = match c.pending {
                0 => c.misses().to_string(),
                n => format!("{} (+{n} after inputs)", c.misses()),
            };
            let thresholds: Vec<String> = v.thresholds.iter().map(|x| x.to_string()).collect();
            t.row(vec![
                v.name.clone(),
                model,
                c.total.to_string(),
                c.hits.to_string(),
                misses,
                thresholds.join(", "),
            ]);
        }
        let pending = match self.sum(|c| c.pending) {
            0 => String::new(),
            n => format!(", {n} keyed once their inputs have run"),
        };
        format!(
            "{}\n{} images, {} cells: {} cached, {} to compute{pending} ({} inferences)",
            t.render(),
            staged.images().len(),
            self.sum(|c| c.total),
            self.sum(|c| c.hits),
            self.sum(Cells::misses),
            self.inferences
        )
    }
}

/// With `--verbose`: each cell, hit or miss, with its key spelled out.
fn explain(staged: &runner::Staged, hits: &HashMap<String, lookup::Hit>) {
    let inputs = staged.plan_inputs();
    for c in &staged.plan.cells {
        let v = &staged.exp.variants[c.variant];
        let img = &staged.images()[c.image];
        let Some(key) = &c.key else {
            ui::note(format!(
                "{} {} keyed once its inputs have run",
                v.name, img.rel
            ));
            continue;
        };
        let spelled = inputs
            .key(c.variant, c.image, c.repeat)
            .map(|k| k.canonical())
            .unwrap_or_default();
        let state = if hits.contains_key(key) {
            "hit"
        } else {
            "miss"
        };
        ui::note(format!("{} {} {state} {key}\n  {spelled}", v.name, img.rel));
    }
}
