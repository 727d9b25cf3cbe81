//! `iw-lab run EXPERIMENT`: runs an experiment and prints its leaderboard.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::table::{num, Table};
use super::Env;
use crate::analysis::VariantMetrics;
use crate::config::Metric;
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
    let exp = crate::config::load_experiment(
        &env.project,
        &path,
        &crate::prompt_scores::FromRuns(&env.project.root),
    )?;
    let ctx = env.engine_context()?;
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
        let judged = if c.judge_calls + c.judge_cached > 0 {
            format!(
                ", {} judge verdicts ({} cached)",
                c.judge_calls + c.judge_cached,
                c.judge_cached
            )
        } else {
            String::new()
        };
        ui::out(format!(
            "\nrun {}: {} images, {} cells ({} cached, {} inferences, {} shared){judged}, {} failures, {:.1}s",
            m.run_id, c.images, c.cells, c.cache_hits, c.inferences, c.shared, c.failures, m.timings.total_s
        ));
        if c.failures > 0 {
            ui::out(format!(
                "see the failures with: iw-lab runs show {}",
                m.run_id
            ));
        }
        if !ui::quiet() {
            ui::out(next_steps(&env.project.root));
        }
    }
    Ok(if m.counts.failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What to try after a run, printed under its leaderboard (with `--project` when the project
/// is not the current folder, so the commands can be pasted as they are).
fn next_steps(root: &std::path::Path) -> String {
    let here = std::env::current_dir().and_then(|d| d.canonicalize()).ok();
    let project = match root.canonicalize() {
        Ok(r) if Some(&r) != here.as_ref() => format!(
            " --project {}",
            String::from_utf8_lossy(&super::dupes::sh_quote(&super::dupes::os_bytes(&r)))
        ),
        _ => String::new(),
    };
    format!(
        "\nnext:\n  iw-lab report latest{project}         # the comparison as a web page: intervals, charts, every image\n  iw-lab serve --run latest{project}    # review it in the studio: each variant's tags on each image, fix the ground truth"
    )
}

fn summary(m: &VariantMetrics) -> serde_json::Value {
    json!({
        "variant": m.variant, "threshold": m.threshold,
        "micro": m.micro, "f1_micro_ci": m.f1_micro_ci,
        "macro": m.macro_, "samples": m.samples, "map": m.map,
        "images": m.images, "labels": m.labels,
    })
}

/// The leaderboard: one row per tag-scoring variant and threshold, then one per variant with
/// judge or text metrics; the goal's winner starred.
pub fn leaderboard(
    metrics: &[VariantMetrics],
    best: Option<&crate::store::manifest::Best>,
) -> String {
    let tagged: Vec<&VariantMetrics> = metrics.iter().filter(|m| m.scores_tags).collect();
    let texts = text_variants(metrics);
    if tagged.is_empty() && texts.is_empty() {
        return "no scores: the dataset has no ground truth for these images".into();
    }
    let mut parts = Vec::new();
    if !tagged.is_empty() {
        parts.push(tag_table(&tagged, best));
        let notes = leaderboard_notes(&tagged);
        if !notes.is_empty() {
            parts.push(notes.join("\n"));
        }
    }
    if !texts.is_empty() {
        parts.push(text_table(&texts, best));
    }
    let mut out = parts.join("\n\n");
    if let Some(b) = best {
        out.push_str(&best_line(b));
    }
    out
}

/// The variants with judge or text metrics, each once (its first entry), in order.
fn text_variants(metrics: &[VariantMetrics]) -> Vec<&VariantMetrics> {
    let mut texts: Vec<&VariantMetrics> = Vec::new();
    for m in metrics.iter().filter(|m| !m.text.is_empty()) {
        if !texts.iter().any(|t| t.variant == m.variant) {
            texts.push(m);
        }
    }
    texts
}

/// The tag table: one row per tag-scoring variant and threshold, a column per tag metric of
/// the leaderboard (`Metric::LEADERBOARD`).
fn tag_table(tagged: &[&VariantMetrics], best: Option<&crate::store::manifest::Best>) -> String {
    let mut headers = vec!["", "variant", "threshold"];
    let mut columns = Metric::columns(false).map(|(_, h)| h);
    headers.extend(columns.next());
    headers.push("95% CI");
    headers.extend(columns);
    headers.push("images");
    let mut t = Table::new(&headers);
    for m in tagged {
        let star = best.is_some_and(|b| b.variant == m.variant && b.threshold == m.threshold);
        let mut row = vec![
            if star { "*".into() } else { String::new() },
            m.variant.clone(),
            format!("{}", m.threshold),
        ];
        for (i, (metric, _)) in Metric::columns(false).enumerate() {
            let value = num(m.get(metric));
            // Repeats scored as a mean show the headline's spread: `0.612 ±0.031`.
            let sd = m.repeats.as_ref().and_then(|r| r.sd.get(metric.name()));
            row.push(match sd {
                Some(sd) if i == 0 => format!("{value} ±{}", num(Some(*sd))),
                _ => value,
            });
            if i == 0 {
                // the headline's bootstrap interval over images (the report's)
                row.push(m.f1_micro_ci.map_or_else(
                    || "-".into(),
                    |[lo, hi]| format!("{}–{}", num(Some(lo)), num(Some(hi))),
                ));
            }
        }
        row.push(m.images.to_string());
        t.row(row);
    }
    t.render()
}

/// The text table: one row per variant with judge or text metrics, a column per text metric
/// of the leaderboard, then the counts behind them.
fn text_table(texts: &[&VariantMetrics], best: Option<&crate::store::manifest::Best>) -> String {
    let mut headers = vec!["", "variant"];
    headers.extend(Metric::columns(true).map(|(_, h)| h));
    headers.extend(["verdicts", "invalid", "outputs", "tokens"]);
    let mut t = Table::new(&headers);
    for m in texts {
        let star = best.is_some_and(|b| b.variant == m.variant && is_text_metric(&b.metric));
        let x = &m.text;
        let (verdicts, invalid) = x
            .judges
            .values()
            .fold((0, 0), |(n, i), j| (n + j.valid + j.invalid, i + j.invalid));
        let generation = x.generation.as_ref();
        let mut row = vec![
            if star { "*".into() } else { String::new() },
            m.variant.clone(),
        ];
        row.extend(Metric::columns(true).map(|(metric, _)| num(x.get(metric))));
        row.extend([
            verdicts.to_string(),
            invalid.to_string(),
            generation.map_or_else(|| "-".into(), |g| g.outputs.to_string()),
            generation.map_or_else(
                || "-".into(),
                |g| (g.prompt_tokens + g.completion_tokens).to_string(),
            ),
        ]);
        t.row(row);
    }
    t.render()
}

/// The footnote naming the goal's winner (with its threshold for tag metrics).
fn best_line(b: &crate::store::manifest::Best) -> String {
    let at = if is_text_metric(&b.metric) {
        String::new()
    } else {
        format!(" at {}", b.threshold)
    };
    format!(
        "\n* best by {}: {}{at} ({:.4})",
        b.metric, b.variant, b.value
    )
}

/// What the tag table needs said: how repeats were scored, and whether the variants were
/// scored on different images (the goal then compares them on the images they share).
fn leaderboard_notes(tagged: &[&VariantMetrics]) -> Vec<String> {
    let mut notes = Vec::new();
    let repeated: Vec<String> = tagged
        .iter()
        .filter_map(|m| m.repeats.as_ref().map(|r| (m, r)))
        .map(|(m, r)| format!("{} ({} repeats, {})", m.variant, r.n, r.scored_as))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !repeated.is_empty() {
        notes.push(format!(
            "repeats: {}; `mean` scores each repeat and averages (± standard deviation), `union` scores the repeats' answers together",
            repeated.join(", ")
        ));
    }
    let counts: std::collections::BTreeSet<usize> = tagged.iter().map(|m| m.images).collect();
    if counts.len() > 1 {
        let shared = tagged.iter().find_map(|m| m.shared.as_ref());
        notes.push(match shared {
            Some(s) => format!(
                "the variants were scored on different images (some failed on some); the goal compares them on the {} images all of them share ({} there: {})",
                s.images,
                s.metric,
                tagged
                    .iter()
                    .filter_map(|m| m.shared.as_ref().map(|s| format!("{} @ {} {}", m.variant, m.threshold, num(Some(s.value)))))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "the variants were scored on different images (some failed on some), and no image is shared by all of them".into(),
        });
    }
    notes
}

/// Whether a goal's metric, by name, scores text (no threshold).
fn is_text_metric(name: &str) -> bool {
    serde_json::from_value::<Metric>(json!(name)).is_ok_and(Metric::of_text)
}

/// `-v`: every cell's cache key, spelled out.
fn print_keys(run: &crate::store::RunDir) -> Result<()> {
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    crate::store::tables::open_run(&conn, run)?;
    for k in crate::store::cells::cell_keys(&conn)? {
        ui::note(format!(
            "{} {} {}\n  {}",
            k.variant, k.path, k.cache_key, k.key_json
        ));
    }
    Ok(())
}
