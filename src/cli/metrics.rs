//! `iw-lab metrics RUN`: scores a run from its stored outputs.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::table::{num, Table};
use super::Env;
use crate::analysis::load::Scored;
use crate::store::{self, Manifest};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run id, unique prefix, `latest`, or a run folder.
    pub run: String,
    /// Ground truth to score against: the dataset's as it is now (`current`, after studio
    /// edits) or the run's own copy from when it ran (`snapshot`).
    #[arg(long, value_enum, default_value = "current", value_name = "WHICH")]
    pub ground_truth: crate::runner::truth::Choice,
    /// Print one JSON object: {"variants": [...]}.
    #[arg(long)]
    pub json: bool,
    /// Score at these thresholds instead of the experiment's (from the stored scores).
    #[arg(long, value_delimiter = ',', value_name = "T,...")]
    pub thresholds: Option<Vec<f64>>,
    /// Only these variants.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub variant: Option<Vec<String>>,
    /// Tags shown per variant in the text output.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    let run = store::resolve_run(&env.project.runs_dir(), &args.run)?;
    let m = Manifest::read(&run.manifest_path())?;
    let Some(source) = m.dataset.ground_truth.clone() else {
        bail!("run {} has no ground truth to score against (its dataset names no ground_truth source)", m.run_id);
    };
    if let Some(ts) = &args.thresholds {
        if let Some(t) = ts.iter().find(|t| !(**t > 0.0 && **t <= 1.0)) {
            bail!("threshold {t} is out of range; expected a number in (0, 1]");
        }
    }
    let variants = chosen_variants(&m, &args)?;
    crate::store::duck::ensure(&env.fetcher)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let used = crate::runner::truth::choose(&conn, &env.project, &run, args.ground_truth)?;
    let mut metrics = crate::runner::scoring::run_metrics(&conn, &source, &variants, None)?;
    let agreement = add_run_metrics(&run, &mut metrics);
    if args.json {
        let mut doc = json!({ "run_id": m.run_id, "ground_truth": source,
            "ground_truth_used": used.describe(), "variants": metrics });
        if let Some(a) = agreement {
            doc["judge_agreement"] = a;
        }
        ui::json_line(&doc);
        return Ok(ExitCode::SUCCESS);
    }
    ui::out(used.describe());
    ui::out(super::run::leaderboard(&metrics, m.best.as_ref()));
    for vm in &metrics {
        print_tags(vm, args.top);
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's variants to score (all, or `--variant`'s), at `--thresholds` or their own.
fn chosen_variants(m: &Manifest, args: &Args) -> Result<Vec<Scored>> {
    let mut variants: Vec<Scored> = m
        .variants
        .iter()
        .map(|v| {
            Scored::of(
                v,
                args.thresholds
                    .clone()
                    .unwrap_or_else(|| v.thresholds.clone()),
            )
        })
        .collect();
    if let Some(only) = &args.variant {
        for name in only {
            if !variants.iter().any(|v| &v.variant == name) {
                let names: Vec<&str> = variants.iter().map(|v| v.variant.as_str()).collect();
                bail!(
                    "run {} has no variant `{name}` (it has: {})",
                    m.run_id,
                    names.join(", ")
                );
            }
        }
        variants.retain(|v| only.contains(&v.variant));
    }
    Ok(variants)
}

/// Adds what the run computed itself (judge scores, similarity, stability and costs, some of
/// which need its models; the goal on shared images) from its `metrics.json`; returns the
/// judges' agreement recorded there.
fn add_run_metrics(
    run: &store::RunDir,
    metrics: &mut [crate::analysis::VariantMetrics],
) -> Option<serde_json::Value> {
    let doc: serde_json::Value = std::fs::read(run.file("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())?;
    let rows: Vec<crate::analysis::VariantMetrics> = doc
        .get("variants")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for vm in metrics.iter_mut() {
        if let Some(r) = rows.iter().find(|r| r.variant == vm.variant) {
            vm.text = r.text.clone();
            vm.scores_tags = r.scores_tags;
            if !vm.scores_tags {
                vm.f1_micro_ci = None;
            }
        }
        // The goal on shared images was measured at the run's thresholds.
        if let Some(r) = rows
            .iter()
            .find(|r| r.variant == vm.variant && r.threshold == vm.threshold)
        {
            vm.shared = r.shared.clone();
        }
    }
    doc.get("judge_agreement").cloned()
}

/// A variant's `top` tags by support, as a table (nothing when it has none).
fn print_tags(vm: &crate::analysis::VariantMetrics, top: usize) {
    let mut t = Table::new(&["tag", "precision", "recall", "f1", "support", "ap"]);
    for p in vm.per_tag.iter().take(top) {
        t.row(vec![
            p.tag.clone(),
            num(Some(p.precision)),
            num(Some(p.recall)),
            num(Some(p.f1)),
            p.support.to_string(),
            num(p.ap),
        ]);
    }
    if !t.is_empty() {
        ui::out(format!(
            "\n{} @ {} — top {} of {} tags by support\n{}",
            vm.variant,
            vm.threshold,
            top.min(vm.per_tag.len()),
            vm.per_tag.len(),
            t.render()
        ));
    }
}
