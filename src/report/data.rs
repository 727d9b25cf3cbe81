//! Gathers what a report shows from one or more runs' stored tables: the leaderboard (every
//! variant × threshold), each variant's scores loaded once ([`VariantScores`]), the images with
//! their ground truth, generation metadata and failures, and per-variant speed. Nothing is
//! re-run; the analyses are the same functions `iw-lab analyze` uses, and the store reads the
//! tables (`store::cells`, `images`, `truth`, `texts`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::analysis::load::Scored;
use crate::analysis::metrics::TextMetrics;
use crate::analysis::{group, scores, VariantMetrics};
use crate::config::files::Direction;
use crate::runner::scoring::{load_variant, run_metrics};
use crate::store::duck::Connection;
use crate::store::{self, Manifest, RunDir};

pub use crate::store::cells::Speed;
pub use crate::store::images::ImageRow;
pub use crate::store::texts::TextRow;
pub use crate::store::writer::FailureRow;

/// An image attribute: its name, and its values per path.
pub type Attribute = (String, HashMap<String, Vec<String>>);

/// One run, loaded.
pub struct LoadedRun {
    pub manifest: Manifest,
    /// The ground truth scored against (current or the run's snapshot).
    pub truth_used: crate::runner::truth::Used,
    pub dir: RunDir,
    /// Short label used in front of variant names when a report compares several runs.
    pub label: String,
    /// The scored ground-truth source, if the dataset has one.
    pub source: Option<String>,
    /// Every (variant, threshold) of the experiment (empty without ground truth).
    pub metrics: Vec<VariantMetrics>,
    pub variants: Vec<LoadedVariant>,
    pub images: Vec<ImageRow>,
    /// Ground-truth tags per labelled path (absent: unlabelled).
    pub truth: HashMap<String, Vec<String>>,
    pub failures: Vec<FailureRow>,
    /// Image attributes with at least two distinct values: (name, path → values).
    pub attributes: Vec<Attribute>,
    /// Judge scores, caption similarity, stability and costs per variant (from `metrics.json`,
    /// with or without ground truth); empty when the run has no generative variant or judge.
    pub text: HashMap<String, TextMetrics>,
    /// `judge_agreement` of `metrics.json` (Krippendorff's alpha between judges, agreement
    /// with ground truth and with human scores).
    pub agreement: Option<serde_json::Value>,
    /// Generated captions and text outputs with their verdicts, by variant, path and repeat.
    pub texts: Vec<TextRow>,
    /// The faces its `faces` variants found (without embeddings), for the grid's boxes.
    pub regions: Vec<store::faces::FaceRow>,
}

/// One variant of a run, loaded.
pub struct LoadedVariant {
    /// The name shown (`variant`, or `label:variant` when several runs are compared).
    pub key: String,
    pub name: String,
    pub run: usize,
    /// The threshold the image grid, tag statistics, groups and intervals use.
    pub threshold: f64,
    pub scores: scores::VariantScores,
    pub speed: Speed,
    /// False for a variant that writes captions: tag analyses (intervals, mistakes, charts)
    /// leave it out.
    pub tags: bool,
}

/// Loads `run` whose views are open on `conn`.
pub fn load_run(
    conn: &Connection<'_>,
    dir: RunDir,
    index: usize,
    several: bool,
    threshold: Option<f64>,
    truth: (&crate::config::Project, crate::runner::truth::Choice),
) -> Result<LoadedRun> {
    let manifest = Manifest::read(&dir.manifest_path())?;
    let truth_used = crate::runner::truth::choose(conn, truth.0, &dir, truth.1)?;
    let source = manifest.dataset.ground_truth.clone();
    let label = run_label(&manifest.run_id, index);
    let file = read_metrics_file(&dir);
    // Stored tag metrics hold only while the ground truth is the run's own.
    let stored = file.as_ref().filter(|_| !truth_used.changed());
    let metrics = match &source {
        Some(src) => tag_metrics(conn, &manifest, src, stored, threshold)?,
        None => Vec::new(),
    };
    let speeds = store::cells::speeds(conn)?;
    let (text, captions, agreement) = text_metrics(file);
    let variants = load_variants(
        conn,
        &RunView {
            manifest: &manifest,
            source: source.as_deref(),
            label: &label,
            index,
            several,
            threshold,
            metrics: &metrics,
            speeds: &speeds,
            captions: &captions,
        },
    )?;
    let images = store::images::images(conn, source.is_some())?;
    let truth = match &source {
        Some(src) => store::truth::labelled_tags(conn, src)?,
        None => HashMap::new(),
    };
    let failures = store::cells::failures(conn)?;
    let attributes = attributes(conn)?;
    let texts = store::texts::texts(conn)?;
    let regions = store::faces::read_faces(conn, &dir, false)?;
    Ok(LoadedRun {
        truth_used,
        manifest,
        dir,
        label,
        source,
        metrics,
        variants,
        images,
        truth,
        failures,
        attributes,
        text,
        agreement,
        texts,
        regions,
    })
}

/// What a run's variants are loaded with.
struct RunView<'a> {
    manifest: &'a Manifest,
    source: Option<&'a str>,
    label: &'a str,
    index: usize,
    /// Several runs are compared (variant keys carry the run's label).
    several: bool,
    /// The threshold asked for (else each variant's best under the goal).
    threshold: Option<f64>,
    metrics: &'a [VariantMetrics],
    speeds: &'a HashMap<String, Speed>,
    /// The variants that write captions.
    captions: &'a HashSet<String>,
}

/// Each variant of the run, its scores loaded.
fn load_variants(conn: &Connection<'_>, run: &RunView<'_>) -> Result<Vec<LoadedVariant>> {
    let mut variants = Vec::new();
    for v in &run.manifest.variants {
        let t = run
            .threshold
            .unwrap_or_else(|| chosen_threshold(run.manifest, run.metrics, &v.name));
        let mut scores = load_variant(conn, run.source, &v.name, false)?;
        let key = if run.several {
            format!("{}:{}", run.label, v.name)
        } else {
            v.name.clone()
        };
        // analyses label their results with this name
        scores.variant = key.clone();
        variants.push(LoadedVariant {
            key,
            name: v.name.clone(),
            run: run.index,
            threshold: t,
            scores,
            speed: run.speeds.get(&v.name).cloned().unwrap_or_default(),
            tags: !run.captions.contains(&v.name),
        });
    }
    Ok(variants)
}

/// Every (variant, threshold) of the experiment (and `threshold`), in experiment order,
/// thresholds ascending within a variant: the run's own scores (`metrics.json`, written when
/// it finished: runs are immutable), recomputed from the tables only when missing (an
/// interrupted run).
fn tag_metrics(
    conn: &Connection<'_>,
    manifest: &Manifest,
    source: &str,
    file: Option<&MetricsFile>,
    threshold: Option<f64>,
) -> Result<Vec<VariantMetrics>> {
    let stored = file
        .filter(|f| f.ground_truth.as_deref() == Some(source))
        .map(|f| f.variants.clone());
    let todo = missing_metrics(manifest, stored.as_deref(), threshold);
    let mut metrics = stored.unwrap_or_default();
    if !todo.is_empty() {
        metrics.extend(run_metrics(conn, source, &todo, None)?);
    }
    let order: HashMap<&str, usize> = manifest
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), i))
        .collect();
    metrics.retain(|m| order.contains_key(m.variant.as_str()));
    metrics.sort_by(|a, b| {
        order[a.variant.as_str()]
            .cmp(&order[b.variant.as_str()])
            .then(a.threshold.total_cmp(&b.threshold))
    });
    Ok(metrics)
}

/// The (variant, thresholds) of the experiment (and `threshold`) that `stored` lacks.
fn missing_metrics(
    manifest: &Manifest,
    stored: Option<&[VariantMetrics]>,
    threshold: Option<f64>,
) -> Vec<Scored> {
    let mut todo = Vec::new();
    for v in &manifest.variants {
        let mut ts = v.thresholds.clone();
        if let Some(t) = threshold {
            if !ts.contains(&t) {
                ts.push(t);
            }
        }
        let missing: Vec<f64> = ts
            .into_iter()
            .filter(|t| {
                !stored.is_some_and(|s| s.iter().any(|m| m.variant == v.name && m.threshold == *t))
            })
            .collect();
        if !missing.is_empty() {
            todo.push(Scored::of(v, missing));
        }
    }
    todo
}

/// Image attributes with at least two distinct values: (name, path → values).
fn attributes(conn: &Connection<'_>) -> Result<Vec<Attribute>> {
    let mut attributes = Vec::new();
    for by in group::ATTRIBUTES {
        let values = store::images::attribute_values(conn, by)?;
        let mut distinct: Vec<&str> = values.values().flatten().map(String::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() >= 2 {
            attributes.push((by.to_string(), values));
        }
    }
    Ok(attributes)
}

/// A run's `metrics.json`.
struct MetricsFile {
    /// The source the tag metrics were scored against (`None`: no ground truth).
    ground_truth: Option<String>,
    variants: Vec<VariantMetrics>,
    judge_agreement: Option<serde_json::Value>,
}

/// `metrics.json`, parsed once (absent or unreadable: `None`).
fn read_metrics_file(dir: &RunDir) -> Option<MetricsFile> {
    let text = std::fs::read_to_string(dir.file("metrics.json")).ok()?;
    let mut doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(MetricsFile {
        ground_truth: doc
            .get("ground_truth")
            .and_then(|s| s.as_str())
            .map(str::to_string),
        variants: serde_json::from_value(doc.get_mut("variants")?.take()).ok()?,
        judge_agreement: doc.get_mut("judge_agreement").map(serde_json::Value::take),
    })
}

/// What `metrics.json` says of generated text: text metrics by variant, the variants that
/// write captions, and the judges' agreement (no file: none).
fn text_metrics(
    file: Option<MetricsFile>,
) -> (
    HashMap<String, TextMetrics>,
    HashSet<String>,
    Option<serde_json::Value>,
) {
    let Some(file) = file else {
        return Default::default();
    };
    let captions = file
        .variants
        .iter()
        .filter(|m| !m.scores_tags)
        .map(|m| m.variant.clone())
        .collect();
    let text = file
        .variants
        .into_iter()
        .filter(|m| !m.text.is_empty())
        .map(|m| (m.variant, m.text))
        .collect();
    (text, captions, file.judge_agreement)
}

/// The run id's random suffix (`20261123-101500-demo-3fa2c1` → `3fa2c1`), or `runN`.
fn run_label(run_id: &str, index: usize) -> String {
    match run_id.rsplit_once('-') {
        Some((_, s)) if !s.is_empty() && s.len() <= 12 => s.to_string(),
        _ => format!("run{}", index + 1),
    }
}

/// Among the variant's experiment thresholds, the one best under the run's goal (ties: the
/// first); the first threshold when nothing is scored.
fn chosen_threshold(m: &Manifest, metrics: &[VariantMetrics], variant: &str) -> f64 {
    let first = m
        .variants
        .iter()
        .find(|v| v.name == variant)
        .and_then(|v| v.thresholds.first().copied())
        .unwrap_or(0.5);
    let mut best: Option<(f64, f64)> = None;
    for vm in metrics
        .iter()
        .filter(|x| x.variant == variant && x.images > 0)
    {
        let Some(value) = vm.get(m.goal.metric) else {
            continue;
        };
        let better = match best {
            None => true,
            Some((_, b)) => match m.goal.direction {
                Direction::Maximize => value > b,
                Direction::Minimize => value < b,
            },
        };
        if better {
            best = Some((vm.threshold, value));
        }
    }
    best.map_or(first, |(t, _)| t)
}

/// Resolves the run references; fails on a duplicate.
pub fn resolve(runs_dir: &std::path::Path, refs: &[String]) -> Result<Vec<RunDir>> {
    let mut out: Vec<RunDir> = Vec::new();
    for r in refs {
        let dir = store::resolve_run(runs_dir, r)?;
        if out.iter().any(|d| d.path == dir.path) {
            bail!("run `{r}` is named twice");
        }
        out.push(dir);
    }
    Ok(out)
}

/// The dataset root of a run (where thumbnails are read from).
pub fn dataset_root(run: &LoadedRun) -> PathBuf {
    run.manifest.dataset.root.clone()
}
