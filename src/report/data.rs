//! Gathers what a report shows from one or more runs' stored tables: the leaderboard (every
//! variant × threshold), each variant's scores loaded once ([`VariantScores`]), the images with
//! their ground truth, generation metadata and failures, and per-variant speed. Nothing is
//! re-run; the analyses are the same functions `iw-lab analyze` uses.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::analysis::metrics::TextMetrics;
use crate::analysis::{group, load, scores, VariantMetrics};
use crate::config::files::Direction;
use crate::store::duck::{lit, Connection};
use crate::store::{self, Manifest, RunDir};

/// One run, loaded.
pub struct LoadedRun {
    pub manifest: Manifest,
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
    pub attributes: Vec<(String, HashMap<String, Vec<String>>)>,
    /// Judge scores, caption similarity, stability and costs per variant (from `metrics.json`,
    /// with or without ground truth); empty when the run has no generative variant or judge.
    pub text: HashMap<String, TextMetrics>,
    /// `judge_agreement` of `metrics.json` (Krippendorff's alpha between judges, agreement
    /// with ground truth and with human scores).
    pub agreement: Option<serde_json::Value>,
    /// Generated captions and text outputs with their verdicts, by variant, path and repeat.
    pub texts: Vec<TextRow>,
}

/// One generated output (a caption, or the raw text of a tag/JSON answer) and the judges'
/// verdicts on it.
#[derive(Debug, Clone)]
pub struct TextRow {
    pub variant: String,
    pub path: String,
    pub hash: String,
    pub repeat: u32,
    pub text: String,
    /// (judge, side of a pairwise comparison or empty, verdict, score when valid).
    pub verdicts: Vec<(String, String, Option<String>, Option<f64>)>,
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

/// Cells and inference time of a variant.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Speed {
    pub cells: u64,
    /// Cells copied from an earlier run's cache.
    pub cached: u64,
    /// Mean inference time per image (ms) over the cells computed in this run; `None` when all
    /// were cached.
    pub ms_per_image: Option<f64>,
    /// Mean over all cells, cached ones included (their original computation).
    pub ms_per_image_all: Option<f64>,
    /// Failed cells.
    pub failures: u64,
}

/// One image file of a run, with its generation metadata.
#[derive(Debug, Clone, Default)]
pub struct ImageRow {
    pub path: String,
    pub hash: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub format: Option<String>,
    pub labelled: bool,
    pub meta: Vec<(String, String)>,
    pub prompt: Option<String>,
    pub negative: Option<String>,
}

/// One failure row.
#[derive(Debug, Clone)]
pub struct FailureRow {
    pub variant: Option<String>,
    pub path: String,
    pub stage: String,
    pub reason: String,
}

/// Loads `run` whose views are open on `conn`.
pub fn load_run(
    conn: &Connection<'_>,
    dir: RunDir,
    index: usize,
    several: bool,
    threshold: Option<f64>,
) -> Result<LoadedRun> {
    let manifest = Manifest::read(&dir.manifest_path())?;
    store::tables::open_run(conn, &dir)?;
    let source = manifest.dataset.ground_truth.clone();
    let label = run_label(&manifest.run_id, index);
    let file = read_metrics_file(&dir);
    let mut metrics = Vec::new();
    if let Some(src) = &source {
        // the run's own scores (metrics.json, written when it finished: runs are immutable),
        // recomputed from the tables only when missing (an interrupted run)
        let stored = file
            .as_ref()
            .filter(|f| f.ground_truth.as_deref() == Some(src.as_str()))
            .map(|f| f.variants.clone());
        let mut todo: Vec<load::Scored> = Vec::new();
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
                    !stored
                        .as_ref()
                        .is_some_and(|s| s.iter().any(|m| m.variant == v.name && m.threshold == *t))
                })
                .collect();
            if !missing.is_empty() {
                todo.push(load::Scored::of(v, missing));
            }
        }
        metrics = stored.unwrap_or_default();
        if !todo.is_empty() {
            metrics.extend(crate::runner::scoring::run_metrics(conn, src, &todo, None)?);
        }
        // experiment order, thresholds ascending within a variant
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
    }
    let speeds = speeds(conn)?;
    let (text, captions, agreement) = text_metrics(file);
    let mut variants = Vec::new();
    for v in &manifest.variants {
        let t = threshold.unwrap_or_else(|| chosen_threshold(&manifest, &metrics, &v.name));
        let mut scores = scores::load_variant(conn, source.as_deref(), &v.name, false)?;
        let key = if several {
            format!("{label}:{}", v.name)
        } else {
            v.name.clone()
        };
        // analyses label their results with this name
        scores.variant = key.clone();
        variants.push(LoadedVariant {
            key,
            name: v.name.clone(),
            run: index,
            threshold: t,
            scores,
            speed: speeds.get(&v.name).cloned().unwrap_or_default(),
            tags: !captions.contains(&v.name),
        });
    }
    let images = images(conn, source.is_some())?;
    let truth = match &source {
        Some(src) => truth(conn, src)?,
        None => HashMap::new(),
    };
    let failures = failures(conn)?;
    let mut attributes = Vec::new();
    for by in group::ATTRIBUTES {
        let values = group::load_attribute(conn, by)?;
        let mut distinct: Vec<&str> = values.values().flatten().map(String::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() >= 2 {
            attributes.push((by.to_string(), values));
        }
    }
    let texts = texts(conn)?;
    Ok(LoadedRun {
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
    })
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
    std::collections::HashSet<String>,
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

/// Every stored text output with its verdicts.
fn texts(conn: &Connection<'_>) -> Result<Vec<TextRow>> {
    let mut out: Vec<TextRow> = Vec::new();
    let mut index: HashMap<(String, String, u32), usize> = HashMap::new();
    conn.query(
        "SELECT variant, path, image_hash, repeat, coalesce(caption, raw, '')
         FROM texts ORDER BY variant, path, repeat",
    )?
    .for_each_row(|r| {
        let row = TextRow {
            variant: r.str(0)?.unwrap_or_default().to_string(),
            path: r.str(1)?.unwrap_or_default().to_string(),
            hash: r.str(2)?.unwrap_or_default().to_string(),
            repeat: r.i64(3)?.unwrap_or(0) as u32,
            text: r.str(4)?.unwrap_or_default().to_string(),
            verdicts: Vec::new(),
        };
        index.insert(
            (row.variant.clone(), row.path.clone(), row.repeat),
            out.len(),
        );
        out.push(row);
        Ok(())
    })?;
    // verdicts on outputs without text (a tagger's tags) get a row of their own
    conn.query(
        "SELECT judge, variant, path, repeat, coalesce(side, ''), verdict, score, valid, image_hash
         FROM judgments ORDER BY judge, variant, path, repeat, side",
    )?
    .for_each_row(|r| {
        let key = (
            r.str(1)?.unwrap_or_default().to_string(),
            r.str(2)?.unwrap_or_default().to_string(),
            r.i64(3)?.unwrap_or(0) as u32,
        );
        let k = match index.get(&key) {
            Some(&k) => k,
            None => {
                out.push(TextRow {
                    variant: key.0.clone(),
                    path: key.1.clone(),
                    hash: r.str(8)?.unwrap_or_default().to_string(),
                    repeat: key.2,
                    text: String::new(),
                    verdicts: Vec::new(),
                });
                index.insert(key, out.len() - 1);
                out.len() - 1
            }
        };
        let valid = r.bool(7)?.unwrap_or(false);
        out[k].verdicts.push((
            r.str(0)?.unwrap_or_default().to_string(),
            r.str(4)?.unwrap_or_default().to_string(),
            r.str(5)?.map(str::to_string),
            if valid { r.f64(6)? } else { None },
        ));
        Ok(())
    })?;
    Ok(out)
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

fn speeds(conn: &Connection<'_>) -> Result<HashMap<String, Speed>> {
    let mut out: HashMap<String, Speed> = HashMap::new();
    conn.query(
        "SELECT variant, count(*), count(*) FILTER (WHERE origin_run <> run_id),
                avg(infer_ms) FILTER (WHERE origin_run = run_id), avg(infer_ms)
         FROM cells GROUP BY variant",
    )?
    .for_each_row(|r| {
        let s = out
            .entry(r.str(0)?.unwrap_or_default().to_string())
            .or_default();
        s.cells = r.i64(1)?.unwrap_or(0) as u64;
        s.cached = r.i64(2)?.unwrap_or(0) as u64;
        s.ms_per_image = r.f64(3)?;
        s.ms_per_image_all = r.f64(4)?;
        Ok(())
    })?;
    conn.query(
        "SELECT variant, count(*) FROM failures WHERE variant IS NOT NULL GROUP BY variant",
    )?
    .for_each_row(|r| {
        let s = out
            .entry(r.str(0)?.unwrap_or_default().to_string())
            .or_default();
        s.failures = r.i64(1)?.unwrap_or(0) as u64;
        Ok(())
    })?;
    Ok(out)
}

fn images(conn: &Connection<'_>, has_truth: bool) -> Result<Vec<ImageRow>> {
    let mut loras: HashMap<String, Vec<String>> = HashMap::new();
    conn.query("SELECT path, lora, weight FROM image_loras ORDER BY path, lora")?
        .for_each_row(|r| {
            let name = r.str(1)?.unwrap_or_default();
            let w = r.f64(2)?;
            loras
                .entry(r.str(0)?.unwrap_or_default().to_string())
                .or_default()
                .push(match w {
                    Some(w) => format!("{name}:{}", trim_num(w)),
                    None => name.to_string(),
                });
            Ok(())
        })?;
    let mut out = Vec::new();
    // Columns after `prompt`/`negative_prompt` are shown as "name value" settings, in order.
    const SETTINGS: &[&str] = &[
        "generator",
        "model",
        "model_hash",
        "sampler",
        "scheduler",
        "seed",
        "steps",
        "cfg",
        "size",
        "vae",
        "clip_skip",
        "denoise",
    ];
    conn.query(
        "SELECT path, image_hash, width, height, format, labelled, prompt, negative_prompt,
                generator, model, model_hash, sampler, scheduler, CAST(seed AS VARCHAR),
                CAST(steps AS VARCHAR), CAST(cfg AS DOUBLE),
                CASE WHEN gen_width IS NOT NULL THEN gen_width || '×' || gen_height END,
                vae, CAST(clip_skip AS VARCHAR), CAST(denoise AS DOUBLE)
         FROM images ORDER BY path",
    )?
    .for_each_row(|r| {
        let path = r.str(0)?.unwrap_or_default().to_string();
        let mut meta = Vec::new();
        for (k, name) in SETTINGS.iter().enumerate() {
            let col = 8 + k;
            let value = match *name {
                "cfg" | "denoise" => r.f64(col)?.map(trim_num),
                _ => r.str(col)?.map(str::to_string),
            };
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                meta.push((name.to_string(), v));
            }
        }
        if let Some(ls) = loras.get(&path) {
            meta.push(("loras".into(), ls.join(", ")));
        }
        out.push(ImageRow {
            hash: r.str(1)?.unwrap_or_default().to_string(),
            width: r.i64(2)?,
            height: r.i64(3)?,
            format: r.str(4)?.map(str::to_string),
            labelled: has_truth && r.bool(5)?.unwrap_or(false),
            prompt: r.str(6)?.map(str::to_string),
            negative: r.str(7)?.map(str::to_string),
            meta,
            path,
        });
        Ok(())
    })?;
    Ok(out)
}

fn trim_num(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn truth(conn: &Connection<'_>, source: &str) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    conn.query("SELECT path FROM images WHERE labelled")?
        .for_each_row(|r| {
            out.entry(r.str(0)?.unwrap_or_default().to_string())
                .or_default();
            Ok(())
        })?;
    conn.query(&format!(
        "SELECT DISTINCT path, tag FROM ground_truth WHERE source = {} AND tag IS NOT NULL ORDER BY path, tag",
        lit(source)
    ))?
    .for_each_row(|r| {
        let path = r.str(0)?.unwrap_or_default();
        if let Some(tags) = out.get_mut(path) {
            tags.push(r.str(1)?.unwrap_or_default().to_string());
        }
        Ok(())
    })?;
    Ok(out)
}

fn failures(conn: &Connection<'_>) -> Result<Vec<FailureRow>> {
    let mut out = Vec::new();
    conn.query("SELECT variant, path, stage, reason FROM failures ORDER BY path, variant")?
        .for_each_row(|r| {
            out.push(FailureRow {
                variant: r.str(0)?.map(str::to_string),
                path: r.str(1)?.unwrap_or_default().to_string(),
                stage: r.str(2)?.unwrap_or_default().to_string(),
                reason: r.str(3)?.unwrap_or_default().to_string(),
            });
            Ok(())
        })?;
    Ok(out)
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
