//! `iw-lab analyze RUN`: threshold sweeps, post-processing comparison, bootstrap intervals, tag
//! statistics and per-group metrics, all from the run's stored outputs
//! (definitions in docs/metrics.md, JSON shape in docs/runs.md).

use std::process::ExitCode;

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde::Serialize;

use super::table::{num, Table};
use super::Env;
use crate::analysis::{
    bootstrap, group, postprocess, scores, stats,
    sweep::{self, Sweep, TagCurve},
};
use crate::runner::scoring::load_variant;
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
    /// Only these variants (default: all, in experiment order).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub variant: Option<Vec<String>>,
    /// The threshold for the fixed-threshold parts (tag statistics, groups, bootstrap, the
    /// plain-threshold post-processing entry); default: each variant's experiment thresholds
    /// (the first for the fixed-threshold parts).
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
    /// Metrics per group of images: folder, generator, sampler, model or lora.
    #[arg(long, value_name = "ATTR")]
    pub by: Option<String>,
    /// Bootstrap resamples (over images) for intervals of micro F1 and mAP; 0 = none.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub bootstrap: usize,
    /// Seed of the bootstrap's draws.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Confidence level of the bootstrap's percentile intervals.
    #[arg(long, default_value_t = 0.95, value_name = "C")]
    pub confidence: f64,
    /// Rows per list (tags, pairs) in the output.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Co-occurrence pairs must occur in at least this many images.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub min_count: u64,
    /// Include every tag's precision–recall curve in the JSON (`tag_curves`).
    #[arg(long)]
    pub curves: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One variant's analyses.
#[derive(Debug, Serialize)]
pub struct VariantAnalysis {
    pub variant: String,
    pub threshold: f64,
    pub images: usize,
    pub sweeps: Vec<Sweep>,
    pub postprocess: Vec<postprocess::PolicyResult>,
    pub tag_stats: stats::TagStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<group::Groups>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_curves: Option<Vec<TagCurve>>,
}

/// `iw-lab analyze --json`.
#[derive(Debug, Serialize)]
pub struct Analysis {
    pub run_id: String,
    pub ground_truth: String,
    pub variants: Vec<VariantAnalysis>,
    pub cooccurrence: stats::Cooccurrence,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<bootstrap::Bootstrap>,
}

pub(crate) fn check_threshold(t: f64) -> Result<()> {
    if !(t > 0.0 && t <= 1.0) {
        bail!("threshold {t} is out of range; expected a number in (0, 1]");
    }
    Ok(())
}

/// Fails (exit 2) for a bootstrap confidence level out of (0, 1).
pub(crate) fn check_confidence(c: f64) -> Result<()> {
    if !(c > 0.0 && c < 1.0) {
        bail!("confidence {c} is out of range; expected a number in (0, 1)");
    }
    Ok(())
}

/// The variant's default threshold (its first), or `explicit`.
pub(crate) fn threshold_of(m: &Manifest, variant: &str, explicit: Option<f64>) -> f64 {
    explicit.unwrap_or_else(|| {
        m.variants
            .iter()
            .find(|v| v.name == variant)
            .and_then(|v| v.thresholds.first().copied())
            .unwrap_or(0.5)
    })
}

/// Fails (exit 2) for a variant the run does not have.
pub(crate) fn check_variant(m: &Manifest, name: &str) -> Result<()> {
    if !m.variants.iter().any(|v| v.name == name) {
        let names: Vec<&str> = m.variants.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "run {} has no variant `{name}` (it has: {})",
            m.run_id,
            names.join(", ")
        );
    }
    Ok(())
}

/// A variant's scores, loaded, with its fixed threshold and its experiment thresholds (or
/// `--threshold`).
struct Loaded {
    scores: scores::VariantScores,
    threshold: f64,
    thresholds: Vec<f64>,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    let run = store::resolve_run(&env.project.runs_dir(), &args.run)?;
    let m = Manifest::read(&run.manifest_path())?;
    let Some(source) = m.dataset.ground_truth.clone() else {
        bail!("run {} has no ground truth to analyse against (its dataset names no ground_truth source)", m.run_id);
    };
    check_args(&args)?;
    let names = variant_names(&m, args.variant.as_deref())?;
    crate::store::duck::ensure(&env.fetcher)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let used = crate::runner::truth::choose(&conn, &env.project, &run, args.ground_truth)?;
    ui::note(used.describe());
    let attr = match &args.by {
        Some(by) => Some(store::images::attribute_values(&conn, by)?),
        None => None,
    };
    let t0 = std::time::Instant::now();
    let loaded = load_variants(&conn, &m, &source, &names, args.threshold)?;
    let t1 = std::time::Instant::now();
    let variants: Vec<VariantAnalysis> = loaded
        .par_iter()
        .map(|l| analyse(l, &args, attr.as_ref()))
        .collect();
    let t2 = std::time::Instant::now();
    let pairs = store::truth::pair_counts(&conn, &source, args.top, args.min_count)?;
    let cooccurrence = stats::cooccurrence(pairs, args.min_count);
    let boot = (args.bootstrap > 0).then(|| {
        let refs: Vec<(&scores::VariantScores, f64)> =
            loaded.iter().map(|l| (&l.scores, l.threshold)).collect();
        bootstrap::bootstrap(&refs, args.bootstrap, args.seed, args.confidence)
    });
    if env.verbose {
        ui::note(format!(
            "timings: load {:.3} s, sweeps/post-processing/tag statistics {:.3} s, co-occurrence and bootstrap {:.3} s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            t2.elapsed().as_secs_f64()
        ));
    }
    let analysis = Analysis {
        run_id: m.run_id.clone(),
        ground_truth: source,
        variants,
        cooccurrence,
        bootstrap: boot,
    };
    if args.json {
        ui::json_line(&analysis);
    } else {
        ui::out(render(&analysis, args.top));
    }
    Ok(ExitCode::SUCCESS)
}

/// Fails (exit 2) for a threshold, confidence or grouping attribute out of range.
fn check_args(args: &Args) -> Result<()> {
    if let Some(t) = args.threshold {
        check_threshold(t)?;
    }
    check_confidence(args.confidence)?;
    if let Some(by) = &args.by {
        if !group::ATTRIBUTES.contains(&by.as_str()) {
            bail!(
                "cannot group by `{by}`; expected one of: {}",
                group::ATTRIBUTES.join(", ")
            );
        }
    }
    Ok(())
}

/// The variants analysed, in experiment order: all, or those of `--variant` (each checked).
fn variant_names(m: &Manifest, only: Option<&[String]>) -> Result<Vec<String>> {
    let mut names: Vec<String> = m.variants.iter().map(|v| v.name.clone()).collect();
    if let Some(only) = only {
        for n in only {
            check_variant(m, n)?;
        }
        names.retain(|n| only.contains(n));
    }
    Ok(names)
}

/// Loads each variant's scored images, with its thresholds.
fn load_variants(
    conn: &crate::store::duck::Connection<'_>,
    m: &Manifest,
    source: &str,
    names: &[String],
    threshold: Option<f64>,
) -> Result<Vec<Loaded>> {
    let mut loaded = Vec::new();
    for name in names {
        let scores = load_variant(conn, Some(source), name, true)?;
        let thresholds = match threshold {
            Some(t) => vec![t],
            None => m
                .variants
                .iter()
                .find(|x| &x.name == name)
                .map(|x| x.thresholds.clone())
                .unwrap_or_default(),
        };
        loaded.push(Loaded {
            scores,
            threshold: threshold_of(m, name, threshold),
            thresholds,
        });
    }
    Ok(loaded)
}

/// One variant's analyses; `attr`: the values of `--by` per path.
fn analyse(
    l: &Loaded,
    args: &Args,
    attr: Option<&std::collections::HashMap<String, Vec<String>>>,
) -> VariantAnalysis {
    let (v, t) = (&l.scores, l.threshold);
    let curves = sweep::tag_curves(v);
    let (policies, tag_thresholds) = postprocess::default_policies(v, &l.thresholds, &curves);
    VariantAnalysis {
        variant: v.variant.clone(),
        threshold: t,
        images: v.labelled().len(),
        sweeps: sweep::sweeps(v),
        postprocess: postprocess::evaluate(v, &policies, &tag_thresholds),
        tag_stats: stats::tag_stats(v, t, args.top),
        groups: attr.map(|a| group::groups(v, t, args.by.as_deref().unwrap_or(""), a)),
        tag_curves: args.curves.then_some(curves),
    }
}

fn opt(x: Option<f64>) -> String {
    num(x)
}

/// The human report: each variant's sections, the co-occurrence table and the bootstrap.
fn render(a: &Analysis, top: usize) -> String {
    let mut out = Vec::new();
    for v in &a.variants {
        render_variant(&mut out, v, top);
    }
    out.push(cooccurrence_section(&a.cooccurrence));
    if let Some(b) = &a.bootstrap {
        render_bootstrap(&mut out, b);
    }
    out.join("\n")
}

/// One variant's sections: heading, sweep, post-processing, tag statistics and groups.
fn render_variant(out: &mut Vec<String>, v: &VariantAnalysis, top: usize) {
    out.push(format!(
        "{} — {} scored images (fixed-threshold parts at {})",
        v.variant, v.images, v.threshold
    ));
    out.push(format!("\nthreshold sweep\n{}", sweep_table(&v.sweeps)));
    out.push(format!(
        "\npost-processing (* tuned on these images: optimistic)\n{}",
        postprocess_table(&v.postprocess)
    ));
    out.extend(tag_stats_lines(&v.tag_stats, top));
    if let Some(g) = &v.groups {
        out.push(format!("\nby {}\n{}", g.by, groups_table(g)));
    }
    out.push(String::new());
}

/// The threshold sweep table, one row per category.
fn sweep_table(sweeps: &[Sweep]) -> String {
    let mut t = Table::new(&[
        "category",
        "positives",
        "break-even t",
        "P=R",
        "best-F1 t",
        "precision",
        "recall",
        "f1",
    ]);
    for s in sweeps {
        t.row(vec![
            s.category.clone(),
            s.positives.to_string(),
            opt(s.break_even.map(|b| b.threshold)),
            opt(s.break_even.map(|b| b.value)),
            opt(s.best_f1.map(|b| b.threshold)),
            opt(s.best_f1.map(|b| b.precision)),
            opt(s.best_f1.map(|b| b.recall)),
            opt(s.best_f1.map(|b| b.f1)),
        ]);
    }
    t.render()
}

/// The post-processing table, tuned policies marked `*`.
fn postprocess_table(policies: &[postprocess::PolicyResult]) -> String {
    let mut t = Table::new(&[
        "post-processing",
        "micro P",
        "micro R",
        "micro F1",
        "macro F1",
        "samples F1",
        "tags/image",
    ]);
    for p in policies {
        let name = if p.tuned {
            format!("{} *", p.name)
        } else {
            p.name.clone()
        };
        t.row(vec![
            name,
            num(Some(p.scores.micro.precision)),
            num(Some(p.scores.micro.recall)),
            num(Some(p.scores.micro.f1)),
            num(Some(p.scores.macro_.f1)),
            num(Some(p.scores.samples.f1)),
            format!("{:.2}", p.scores.mean_tags),
        ]);
    }
    t.render()
}

/// The most frequent errors and the vocabulary coverage (at most `top` never-output tags).
fn tag_stats_lines(s: &stats::TagStats, top: usize) -> [String; 2] {
    let list = |xs: &[stats::TagCount]| {
        xs.iter()
            .map(|c| format!("{} ({})", c.tag, c.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    [
        format!(
            "\nmost frequent false positives: {}\nmost frequent false negatives: {}",
            list(&s.false_positives),
            list(&s.false_negatives)
        ),
        format!(
            "vocabulary: {} of {} ground-truth tags output at least once; {} misses on tags never output, {} ordinary misses{}",
            s.coverage.covered,
            s.coverage.truth_tags,
            s.coverage.misses_never_output,
            s.coverage.misses_ordinary,
            if s.coverage.never_output.is_empty() {
                String::new()
            } else {
                format!(
                    "\n  never output: {}",
                    list(&s.coverage.never_output[..s.coverage.never_output.len().min(top)])
                )
            }
        ),
    ]
}

/// The per-group metrics table (`--by`).
fn groups_table(g: &group::Groups) -> String {
    let mut t = Table::new(&[
        &g.by,
        "images",
        "micro P",
        "micro R",
        "micro F1",
        "samples F1",
    ]);
    for x in &g.groups {
        t.row(vec![
            if x.value.is_empty() {
                "(root)".into()
            } else {
                x.value.clone()
            },
            x.scores.images.to_string(),
            num(Some(x.scores.micro.precision)),
            num(Some(x.scores.micro.recall)),
            num(Some(x.scores.micro.f1)),
            num(Some(x.scores.samples.f1)),
        ]);
    }
    t.render()
}

/// The ground-truth co-occurrence section.
fn cooccurrence_section(c: &stats::Cooccurrence) -> String {
    let mut t = Table::new(&["tag a", "tag b", "images", "pmi", "lift"]);
    for p in &c.pairs {
        t.row(vec![
            p.a.clone(),
            p.b.clone(),
            p.count.to_string(),
            format!("{:.3}", p.pmi),
            format!("{:.3}", p.lift),
        ]);
    }
    format!(
        "ground-truth co-occurrence ({} labelled images)\n{}",
        c.images,
        t.render()
    )
}

/// The bootstrap sections: per-variant intervals, then the paired differences if any.
fn render_bootstrap(out: &mut Vec<String>, b: &bootstrap::Bootstrap) {
    out.push(format!(
        "\nbootstrap: {} resamples over images, seed {}, {}% percentile intervals\n{}",
        b.resamples,
        b.seed,
        b.confidence * 100.0,
        bootstrap_table(b)
    ));
    if !b.paired.is_empty() {
        out.push(format!(
            "\npaired bootstrap (same draws for both)\n{}",
            paired_table(b)
        ));
    }
}

/// Per-variant bootstrap estimates and intervals of micro F1 and mAP.
fn bootstrap_table(b: &bootstrap::Bootstrap) -> String {
    let mut t = Table::new(&[
        "variant", "images", "micro F1", "interval", "mAP", "interval",
    ]);
    let iv = |i: &bootstrap::Interval| format!("{:.4} – {:.4}", i.low, i.high);
    for v in &b.variants {
        t.row(vec![
            v.variant.clone(),
            v.images.to_string(),
            format!("{:.4}", v.f1_micro.estimate),
            iv(&v.f1_micro),
            v.map.map_or("-".into(), |m| format!("{:.4}", m.estimate)),
            v.map.as_ref().map_or("-".into(), iv),
        ]);
    }
    t.render()
}

/// Paired bootstrap differences (B − A).
fn paired_table(b: &bootstrap::Bootstrap) -> String {
    let mut t = Table::new(&["B − A", "metric", "difference", "interval", "B better in"]);
    for p in &b.paired {
        t.row(vec![
            format!("{} − {}", p.b, p.a),
            p.metric.clone(),
            format!("{:+.4}", p.diff.estimate),
            format!("{:+.4} – {:+.4}", p.diff.low, p.diff.high),
            format!("{:.1}%", p.b_better * 100.0),
        ]);
    }
    t.render()
}
