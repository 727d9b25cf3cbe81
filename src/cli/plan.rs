//! `iw-lab plan EXPERIMENT`: the cells, with cache hits and misses; runs nothing.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::table::Table;
use super::Env;
use crate::engine::Context;
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
    let ctx = Context::new(env.fetcher.clone());
    crate::store::duck::ensure(&ctx.fetcher)?;
    let staged = runner::stage(&env.project, exp, &ctx, args.limit, false)?;
    let db = runner::open_db()?;
    let conn = db.connect()?;
    let keys = staged.keys();
    let hits = lookup::find_hits(
        &conn,
        &env.project.runs_dir(),
        lookup::Scope::Except(""),
        &keys,
    )?;
    let exp = &staged.exp;
    let n_images = staged.images().len();
    let mut rows = Vec::new();
    let mut misses_keys = std::collections::HashSet::new();
    for (vi, v) in exp.variants.iter().enumerate() {
        let identified = !staged.plan.unidentified.contains(&vi);
        let cells: Vec<&crate::plan::Cell> = staged
            .plan
            .cells
            .iter()
            .filter(|c| c.variant == vi)
            .collect();
        let hit = cells.iter().filter(|c| hits.contains_key(&c.key)).count();
        for c in cells.iter().filter(|c| !hits.contains_key(&c.key)) {
            misses_keys.insert(c.key.as_str());
        }
        let total = if identified { cells.len() } else { n_images };
        rows.push(json!({
            "variant": v.name, "model": v.model.name, "cells": total,
            "cache_hits": hit, "cache_misses": total - hit, "identified": identified,
            "thresholds": v.thresholds,
        }));
        if env.verbose {
            for c in &cells {
                let img = &staged.images()[c.image];
                let spelled = staged
                    .plan
                    .key(&staged.plan_inputs(), c.variant, c.image, c.repeat)
                    .map(|k| k.canonical())
                    .unwrap_or_default();
                let state = if hits.contains_key(&c.key) {
                    "hit"
                } else {
                    "miss"
                };
                ui::note(format!(
                    "{} {} {state} {}\n  {spelled}",
                    v.name, img.rel, c.key
                ));
            }
        }
    }
    let unidentified_cells: usize = staged.plan.unidentified.len() * n_images;
    let cells = staged.plan.cells.len() + unidentified_cells;
    let cache_hits = staged
        .plan
        .cells
        .iter()
        .filter(|c| hits.contains_key(&c.key))
        .count();
    let inferences = misses_keys.len() + unidentified_cells;
    if args.json {
        ui::json_line(&json!({
            "experiment": exp.name,
            "dataset": exp.dataset.name,
            "images": n_images,
            "cells": cells,
            "cache_hits": cache_hits,
            "cache_misses": cells - cache_hits,
            "inferences": inferences,
            "variants": rows,
        }));
    } else {
        let mut t = Table::new(&["variant", "model", "cells", "hits", "misses", "thresholds"]);
        for r in &rows {
            let mut model = r["model"].as_str().unwrap_or_default().to_string();
            if r["identified"] == false {
                model.push_str(" (not downloaded)");
            }
            t.row(vec![
                r["variant"].as_str().unwrap_or_default().into(),
                model,
                r["cells"].to_string(),
                r["cache_hits"].to_string(),
                r["cache_misses"].to_string(),
                r["thresholds"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            ]);
        }
        ui::out(t.render());
        ui::out(format!(
            "\n{} images, {cells} cells: {cache_hits} cached, {} to compute ({inferences} inferences)",
            n_images,
            cells - cache_hits
        ));
    }
    Ok(ExitCode::SUCCESS)
}
