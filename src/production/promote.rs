//! Promotion: freezing an experiment variant into a production config, with a history per
//! alias and rollback.
//!
//! ```text
//! promoted/<alias>.yaml                      the current config (review it in a pull request)
//! promoted/history/<alias>/NNNN.yaml         every promotion, immutable
//! promoted/history/<alias>/log.jsonl         promote / rollback events; the last names the current entry
//! ```
//!
//! A production config embeds everything the production pass needs — the model definition
//! (source, sha256, preprocessing, labels, aliases), its content fingerprint, parameters,
//! threshold and post-processing, writer options — and where it came from (run, variant,
//! metrics). It does not refer back to `models/`, so editing the experiment later never
//! changes production.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::atomic::write as write_atomic;
use crate::config::files::ModelFile;
use crate::config::production::Writers;
pub use crate::config::production::{Params, ProductionConfig, PromotedFrom, PromotedModel};
use crate::config::{ConfigError, Model, Project};
use crate::postprocess::PostProcess;
use crate::store::manifest::{ModelRecord, VariantInfo};
use crate::store::{self, Manifest};

/// A loaded production config and its file.
pub struct Loaded {
    pub config: ProductionConfig,
    pub path: PathBuf,
    pub text: String,
}

fn promoted_dir(project: &Project) -> PathBuf {
    project.root.join("promoted")
}

fn history_dir(project: &Project, alias: &str) -> PathBuf {
    promoted_dir(project).join("history").join(alias)
}

/// Loads a config by alias (`promoted/<alias>.yaml`) or path, and checks it: its alias, the
/// model's fingerprint and the writer options (see [`check`]).
pub fn load(project: &Project, alias_or_path: &str) -> Result<Loaded> {
    let direct = PathBuf::from(alias_or_path);
    let path = if direct.is_file() {
        direct
    } else {
        // A name becomes a file name only when it is a plain alias: never `../x` or `/x`.
        if validate_alias(alias_or_path).is_err() {
            bail!(
                "no production config file {} (and `{alias_or_path}` is not an alias: aliases are letters, digits, `-`, `_` or `.`)",
                direct.display()
            );
        }
        let p = promoted_dir(project).join(format!("{alias_or_path}.yaml"));
        if !p.is_file() {
            let known = aliases(project);
            bail!(
                "no production config `{alias_or_path}` (looked for {} and {})\nhint: {}",
                direct.display(),
                p.display(),
                if known.is_empty() {
                    "promote a variant first: iw-lab promote RUN VARIANT".to_string()
                } else {
                    format!("promoted aliases: {}", known.join(", "))
                }
            );
        }
        p
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: ProductionConfig = crate::config::error::parse_str(&path, &text)?;
    if config.version != 1 {
        bail!(
            "{}: production config version {} is not supported (this iw-lab reads version 1)",
            path.display(),
            config.version
        );
    }
    crate::postprocess::Excluder::new(&config.postprocess.exclude)
        .with_context(|| format!("{}: key `postprocess.exclude`", path.display()))?;
    if let Err((key, msg)) = check(&config) {
        return Err(ConfigError::invalid(&path, Some(&text), &key, msg).into());
    }
    Ok(Loaded { config, path, text })
}

/// What serde's types do not check in a production config: `(key, problem)`.
fn check(config: &ProductionConfig) -> std::result::Result<(), (String, String)> {
    if !config.alias.is_empty() {
        if let Err(e) = validate_alias(&config.alias) {
            return Err(("alias".into(), e.to_string()));
        }
    }
    let fp = &config.model.fingerprint;
    if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((
            "model.fingerprint".into(),
            format!("`{fp}` is not a fingerprint (64 hex digits, as `iw-lab promote` writes)"),
        ));
    }
    let t = config.postprocess.threshold;
    if !(t > 0.0 && t <= 1.0) {
        return Err((
            "postprocess.threshold".into(),
            format!("threshold {t} is out of range; expected (0, 1]"),
        ));
    }
    for (c, t) in &config.postprocess.category_thresholds {
        if !(*t > 0.0 && *t <= 1.0) {
            return Err((
                format!("postprocess.category_thresholds.{}", c.as_str()),
                format!("threshold {t} is out of range; expected (0, 1]"),
            ));
        }
    }
    if !(0.0..=1.0).contains(&config.params.score_floor) {
        return Err((
            "params.score_floor".into(),
            format!(
                "{} is out of range; expected 0 to 1",
                config.params.score_floor
            ),
        ));
    }
    config.writers.check()
}

/// Aliases with a current config.
pub fn aliases(project: &Project) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(promoted_dir(project))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension().is_some_and(|x| x == "yaml"))
                        .then(|| p.file_stem()?.to_str().map(str::to_string))?
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// How to promote.
pub struct Request<'a> {
    pub run: &'a str,
    pub variant: &'a str,
    pub alias: &'a str,
    pub threshold: Option<f64>,
}

fn metrics_for(
    run: &store::RunDir,
    variant: &str,
    threshold: f64,
) -> (BTreeMap<String, f64>, Option<u64>) {
    let Ok(text) = std::fs::read_to_string(run.file("metrics.json")) else {
        return (BTreeMap::new(), None);
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
        return (BTreeMap::new(), None);
    };
    let entries: Vec<&serde_json::Value> = doc["variants"]
        .as_array()
        .map(|v| v.iter().filter(|e| e["variant"] == variant).collect())
        .unwrap_or_default();
    // Images scored do not depend on the threshold.
    let images = entries.iter().find_map(|e| e["images"].as_u64());
    let Some(e) = entries
        .iter()
        .find(|e| e["threshold"].as_f64() == Some(threshold))
    else {
        return (BTreeMap::new(), images);
    };
    let mut m = BTreeMap::new();
    for avg in ["micro", "macro", "samples"] {
        for k in ["precision", "recall", "f1"] {
            if let Some(v) = e[avg][k].as_f64() {
                m.insert(format!("{k}_{avg}"), v);
            }
        }
    }
    if let Some(v) = e["map"].as_f64() {
        m.insert("map".into(), v);
    }
    (m, e["images"].as_u64())
}

/// The best threshold of a variant by the run's goal, from `metrics.json`.
fn best_threshold(run: &store::RunDir, manifest: &Manifest, variant: &str) -> Option<f64> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.file("metrics.json")).ok()?).ok()?;
    let metric = manifest.goal.metric.name();
    let maximize = matches!(
        manifest.goal.direction,
        crate::config::files::Direction::Maximize
    );
    let mut best: Option<(f64, f64)> = None;
    for e in doc["variants"]
        .as_array()?
        .iter()
        .filter(|e| e["variant"] == variant)
    {
        let (avg, name) = match metric.rsplit_once('_') {
            Some((m, avg)) if metric != "map" => (avg, m),
            _ => ("", "map"),
        };
        let value = if avg.is_empty() {
            e["map"].as_f64()
        } else {
            e[avg][name].as_f64()
        };
        let (Some(v), Some(t)) = (value, e["threshold"].as_f64()) else {
            continue;
        };
        let better = best.is_none_or(|(bv, _)| if maximize { v > bv } else { v < bv });
        if better {
            best = Some((v, t));
        }
    }
    best.map(|(_, t)| t)
}

/// The run's variant named `name` and the record of the model it used.
fn variant_and_model<'m>(
    manifest: &'m Manifest,
    name: &str,
) -> Result<(&'m VariantInfo, &'m ModelRecord)> {
    let Some(variant) = manifest.variants.iter().find(|v| v.name == name) else {
        let names: Vec<&str> = manifest.variants.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "run {} has no variant `{}` (it has: {})",
            manifest.run_id,
            name,
            names.join(", ")
        );
    };
    let Some(record) = manifest.models.get(&variant.model) else {
        bail!(
            "run {} does not record model `{}`",
            manifest.run_id,
            variant.model
        );
    };
    Ok((variant, record))
}

/// The threshold to promote at: the requested one, else the variant's best, first or the
/// default; never below the variant's score floor.
fn choose_threshold(
    requested: Option<f64>,
    run: &store::RunDir,
    manifest: &Manifest,
    variant: &VariantInfo,
) -> Result<f64> {
    let threshold = match requested {
        Some(t) if !(t > 0.0 && t <= 1.0) => {
            bail!("threshold {t} is out of range; expected (0, 1]")
        }
        Some(t) => t,
        None => best_threshold(run, manifest, &variant.name)
            .or_else(|| variant.thresholds.first().copied())
            .unwrap_or(crate::config::resolve::DEFAULT_THRESHOLD),
    };
    if threshold < variant.score_floor {
        bail!(
            "threshold {threshold} is below the variant's score floor {}",
            variant.score_floor
        );
    }
    Ok(threshold)
}

/// The model's definition to freeze, once its files and preprocessing are checked to be
/// still the ones the run used.
fn unchanged_definition(
    model: &Model,
    ctx: &crate::engine::Context,
    record: &ModelRecord,
    manifest: &Manifest,
) -> Result<ModelFile> {
    // The model's files and preprocessing must still be the ones the run used.
    let id = crate::engine::identify(model, ctx, true)?.context("model identity")?;
    if id.fingerprint != record.fingerprint || id.spec != record.spec {
        bail!(
            "model `{}` ({}) has changed since run {}: its files or preprocessing differ; rerun the experiment before promoting",
            model.name,
            record.file.display(),
            manifest.run_id
        );
    }
    Ok(crate::config::resolve::model_file_of(model, &id.files))
}

/// Post-processing and writer options for `alias`, carried over from its current config,
/// with the new `threshold`.
fn carried_over(project: &Project, alias: &str, threshold: f64) -> (PostProcess, Writers) {
    // Post-processing and writer options carry over from the alias's current config.
    let previous = load(project, alias).ok().map(|l| l.config);
    let mut postprocess = previous
        .as_ref()
        .map(|p| p.postprocess.clone())
        .unwrap_or_else(|| PostProcess::with_threshold(threshold));
    postprocess.threshold = threshold;
    let writers = previous
        .as_ref()
        .map(|p| p.writers.clone())
        .unwrap_or_default();
    (postprocess, writers)
}

/// The variant's metrics at `threshold` and its image count; an error when it was scored on
/// no image.
fn scored_metrics(
    run: &store::RunDir,
    manifest: &Manifest,
    variant: &VariantInfo,
    threshold: f64,
) -> Result<(BTreeMap<String, f64>, Option<u64>)> {
    let (metrics, images) = metrics_for(run, &variant.name, threshold);
    if images.unwrap_or(0) == 0 {
        bail!(
            "variant `{}` of run {} was scored on 0 images (none has both ground truth and an output), so there is nothing to promote it on\nhint: check the run's failures (`iw-lab runs show {}`) and its ground truth",
            variant.name,
            manifest.run_id,
            manifest.run_id
        );
    }
    Ok((metrics, images))
}

/// Freezes a run's variant into `promoted/<alias>.yaml` and records it in the history.
pub fn promote(
    project: &Project,
    ctx: &crate::engine::Context,
    req: &Request<'_>,
) -> Result<(ProductionConfig, PathBuf)> {
    validate_alias(req.alias)?;
    let run = store::resolve_run(&project.runs_dir(), req.run)?;
    let manifest = Manifest::read(&run.manifest_path())?;
    let (variant, record) = variant_and_model(&manifest, req.variant)?;
    let model = crate::config::resolve::load_model(project, &record.file).with_context(|| {
        format!(
            "reading model `{}` recorded by run {}",
            variant.model, manifest.run_id
        )
    })?;
    let threshold = choose_threshold(req.threshold, &run, &manifest, variant)?;
    let definition = unchanged_definition(&model, ctx, record, &manifest)?;
    let (postprocess, writers) = carried_over(project, req.alias, threshold);
    let (metrics, images) = scored_metrics(&run, &manifest, variant, threshold)?;
    let config = ProductionConfig {
        version: 1,
        alias: req.alias.to_string(),
        promoted_at: store::time_now().iso(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        from: PromotedFrom {
            run_id: manifest.run_id.clone(),
            experiment: manifest.experiment.clone(),
            variant: variant.name.clone(),
            metrics,
            images,
        },
        model: PromotedModel {
            name: model.name.clone(),
            fingerprint: record.fingerprint.clone(),
            adapter_version: record.adapter_version,
            definition,
        },
        prompt: None,
        params: Params {
            score_floor: variant.score_floor,
        },
        postprocess,
        writers,
    };
    let path = record_promotion(project, &config)?;
    Ok((config, path))
}

fn validate_alias(alias: &str) -> Result<()> {
    if alias.is_empty()
        || !alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || alias.starts_with('.')
    {
        bail!("alias `{alias}` must be letters, digits, `-`, `_` or `.`");
    }
    Ok(())
}

/// One history event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub at: String,
    pub action: String,
    pub entry: String,
}

/// One promotion in an alias's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub entry: String,
    pub promoted_at: String,
    pub run_id: String,
    pub variant: String,
    pub model: String,
    pub threshold: f64,
    pub metrics: BTreeMap<String, f64>,
    pub config_hash: String,
    pub current: bool,
}

fn log_path(project: &Project, alias: &str) -> PathBuf {
    history_dir(project, alias).join("log.jsonl")
}

fn events(project: &Project, alias: &str) -> Vec<Event> {
    std::fs::read_to_string(log_path(project, alias))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn append_event(project: &Project, alias: &str, action: &str, entry: &str) -> Result<()> {
    use std::io::Write;
    let path = log_path(project, alias);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let e = Event {
        at: store::time_now().iso(),
        action: action.into(),
        entry: entry.into(),
    };
    writeln!(f, "{}", serde_json::to_string(&e)?)?;
    f.sync_all()?;
    Ok(())
}

fn entries(project: &Project, alias: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(history_dir(project, alias))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".yaml").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn render(config: &ProductionConfig) -> Result<String> {
    let header = format!(
        "# iw-lab production config `{}`: {} from run {} (experiment {}), promoted {}.\n\
         # Used by `iw-lab tag PATH... --config {}`. Edit post-processing and writer options freely;\n\
         # the model block is frozen (its files must keep this fingerprint). See docs/outputs.md.\n",
        config.alias, config.from.variant, config.from.run_id, config.from.experiment, config.promoted_at, config.alias
    );
    Ok(format!("{header}{}", serde_yaml::to_string(config)?))
}

fn record_promotion(project: &Project, config: &ProductionConfig) -> Result<PathBuf> {
    let dir = history_dir(project, &config.alias);
    std::fs::create_dir_all(&dir)?;
    let next = entries(project, &config.alias)
        .last()
        .and_then(|e| e.parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    let entry = format!("{next:04}");
    let text = render(config)?;
    write_atomic(&dir.join(format!("{entry}.yaml")), text.as_bytes())?;
    let current = promoted_dir(project).join(format!("{}.yaml", config.alias));
    write_atomic(&current, text.as_bytes())?;
    append_event(project, &config.alias, "promote", &entry)?;
    Ok(current)
}

fn current_entry(project: &Project, alias: &str) -> Option<String> {
    events(project, alias).last().map(|e| e.entry.clone())
}

/// The history of an alias, oldest first.
pub fn history(project: &Project, alias: &str) -> Result<Vec<HistoryEntry>> {
    let current = current_entry(project, alias);
    let mut out = Vec::new();
    for entry in entries(project, alias) {
        let path = history_dir(project, alias).join(format!("{entry}.yaml"));
        let text = std::fs::read_to_string(&path)?;
        let c: ProductionConfig = crate::config::error::parse_str(&path, &text)?;
        out.push(HistoryEntry {
            current: current.as_deref() == Some(entry.as_str()),
            config_hash: c.hash(),
            entry,
            promoted_at: c.promoted_at,
            run_id: c.from.run_id,
            variant: c.from.variant,
            model: c.model.name,
            threshold: c.postprocess.threshold,
            metrics: c.from.metrics,
        });
    }
    Ok(out)
}

/// Restores the promotion before the current one (or `to`, an entry number).
pub fn rollback(project: &Project, alias: &str, to: Option<&str>) -> Result<HistoryEntry> {
    let all = entries(project, alias);
    if all.is_empty() {
        bail!("alias `{alias}` has no promotions");
    }
    let current =
        current_entry(project, alias).unwrap_or_else(|| all.last().cloned().unwrap_or_default());
    let target = match to {
        Some(t) => {
            let t = format!(
                "{:04}",
                t.parse::<u32>()
                    .with_context(|| format!("`{t}` is not an entry number"))?
            );
            if !all.contains(&t) {
                bail!(
                    "alias `{alias}` has no entry {t} (it has {})",
                    all.join(", ")
                );
            }
            t
        }
        None => {
            let pos = all
                .iter()
                .position(|e| *e == current)
                .unwrap_or(all.len() - 1);
            if pos == 0 {
                bail!("alias `{alias}` is at its first promotion ({current}); there is nothing to roll back to");
            }
            all[pos - 1].clone()
        }
    };
    let text = std::fs::read_to_string(history_dir(project, alias).join(format!("{target}.yaml")))?;
    write_atomic(
        &promoted_dir(project).join(format!("{alias}.yaml")),
        text.as_bytes(),
    )?;
    append_event(project, alias, "rollback", &target)?;
    history(project, alias)?
        .into_iter()
        .find(|h| h.entry == target)
        .context("rolled-back entry")
}
