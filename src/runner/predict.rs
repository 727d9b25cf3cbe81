//! One model over loose image files, cached like any run: `iw-lab predict` and the
//! production pass (`iw-lab tag`) share it. Hits are read from earlier runs; misses are
//! computed and, unless asked not to, stored as a run of their own (experiment `LABEL`), so
//! the next call finds them.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::pipeline::{self, Job, Outcome};
use crate::config::resolve::{Goal, DEFAULT_MAX_PIXELS};
use crate::config::{Category, Model, Project};
use crate::dataset::ImageEntry;
use crate::engine::{self, Context, Identity};
use crate::plan::cache_key;
use crate::store::duck::{path_list, Connection};
use crate::store::manifest::{Counts, DatasetRecord, Manifest, Status, VariantInfo};
use crate::store::writer::{CellRow, FailureRow, PartWriter};
use crate::store::{self, lookup};

/// Stored (tag, score, category) rows.
pub type Scores = Vec<(String, f32, Category)>;

/// The outcome for one image of `iw-lab predict`.
pub struct Predicted {
    pub file: String,
    pub hash: Option<String>,
    /// Highest score first.
    pub tags: Scores,
    pub error: Option<String>,
}

/// Receives each distinct key's result as soon as it is known (cache hits first, then as
/// inference finishes): the key, its scores or failure reason, and the run that computed it.
pub type Sink<'a> = &'a mut dyn FnMut(&str, Result<Scores, String>, &str);

/// Results of [`infer_cached`].
pub struct Inferred {
    /// Per image, in order: its cache key.
    pub keys: Vec<String>,
    pub scores: HashMap<String, Scores>,
    /// Keys whose inference failed, with the reason.
    pub errors: HashMap<String, String>,
    /// The run that stored new outputs (none when everything was cached or nothing persisted).
    pub run_id: Option<String>,
    /// Per key, the run that computed its outputs (for provenance). With a sink, `scores`
    /// stays empty: the sink received them.
    pub origins: HashMap<String, String>,
    /// Distinct keys computed now.
    pub inferences: usize,
}

/// An entry for a loose file (hashing its bytes; no generation metadata is read).
pub fn entry(path: &PathBuf) -> Result<ImageEntry, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    Ok(ImageEntry::from_bytes(
        crate::dataset::names::rel_text(path),
        path.clone(),
        &bytes,
        0,
        None,
    ))
}

/// Predicts every tag score of `model` for `files`, in order.
pub fn predict(
    project: &Project,
    model: &Model,
    files: &[PathBuf],
    ctx: &Context,
) -> Result<Vec<Predicted>> {
    let identity = engine::identify(model, ctx, true)?.context("model identity")?;
    let mut images: Vec<ImageEntry> = Vec::new();
    let mut slots: Vec<Result<usize, String>> = Vec::new();
    for f in files {
        match entry(f) {
            Ok(e) => {
                slots.push(Ok(images.len()));
                images.push(e);
            }
            Err(reason) => slots.push(Err(reason)),
        }
    }
    let inferred = infer_cached(
        project,
        model,
        &identity,
        &images,
        ctx,
        &format!("predict-{}", model.name),
        true,
        None,
    )?;
    let mut out = Vec::new();
    for (f, slot) in files.iter().zip(slots) {
        out.push(match slot {
            Err(reason) => Predicted {
                file: f.display().to_string(),
                hash: None,
                tags: Vec::new(),
                error: Some(reason),
            },
            Ok(i) => {
                let key = &inferred.keys[i];
                let mut tags = inferred.scores.get(key).cloned().unwrap_or_default();
                tags.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                Predicted {
                    file: f.display().to_string(),
                    hash: Some(images[i].hash.clone()),
                    error: inferred.errors.get(key).cloned(),
                    tags,
                }
            }
        });
    }
    Ok(out)
}

/// The cache key of each image (hash and spelled-out form).
fn spelled_keys(
    model: &Model,
    identity: &Identity,
    images: &[ImageEntry],
) -> Vec<(String, String)> {
    images
        .iter()
        .map(|img| {
            let input = engine::cell_input(model, img);
            let k = cache_key(identity, &img.hash, input.as_deref(), model.score_floor, 0);
            (k.hash(), k.canonical())
        })
        .collect()
}

/// The cache key of each image, as [`infer_cached`] computes them.
pub fn cache_keys(model: &Model, identity: &Identity, images: &[ImageEntry]) -> Vec<String> {
    spelled_keys(model, identity, images)
        .into_iter()
        .map(|k| k.0)
        .collect()
}

/// Scores of `model` for `images`: cached ones from earlier runs, the rest computed (and
/// stored as a run named `label` when `persist`). With a `sink`, results stream to it instead
/// of being kept (constant memory, and the caller's work overlaps inference).
#[allow(clippy::too_many_arguments)]
pub fn infer_cached(
    project: &Project,
    model: &Model,
    identity: &Identity,
    images: &[ImageEntry],
    ctx: &Context,
    label: &str,
    persist: bool,
    mut sink: Option<Sink<'_>>,
) -> Result<Inferred> {
    crate::store::duck::ensure(&ctx.fetcher)?;
    let keys = spelled_keys(model, identity, images);
    let db = super::open_db()?;
    let conn = db.connect()?;
    let key_refs: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let hits = lookup::find_hits(
        &conn,
        &project.runs_dir(),
        lookup::Scope::Except(""),
        &key_refs,
    )?;
    let mut scores = read_hits(&conn, &hits)?;
    if let Some(sink) = sink.as_mut() {
        for (k, s) in scores.drain() {
            sink(&k, Ok(s), &hits[&k].origin_run);
        }
    }
    let mut errors = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let misses: Vec<Job> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| !hits.contains_key(&k.0) && seen.insert(k.0.clone()))
        .map(|(i, k)| Job {
            key: k.0.clone(),
            image: i,
        })
        .collect();
    let mut origins: HashMap<String, String> = hits
        .iter()
        .map(|(k, h)| (k.clone(), h.origin_run.clone()))
        .collect();
    let mut run_id = None;
    if !misses.is_empty() {
        run_id = compute(
            project,
            model,
            identity,
            images,
            &keys,
            &misses,
            ctx,
            &conn,
            label,
            persist,
            &mut scores,
            &mut errors,
            sink,
        )?;
        if let Some(id) = &run_id {
            for j in &misses {
                origins.insert(j.key.clone(), id.clone());
            }
        }
    }
    Ok(Inferred {
        keys: keys.into_iter().map(|k| k.0).collect(),
        scores,
        errors,
        run_id,
        origins,
        inferences: misses.len(),
    })
}

fn read_hits(
    conn: &Connection<'_>,
    hits: &HashMap<String, lookup::Hit>,
) -> Result<HashMap<String, Scores>> {
    let mut by_run: HashMap<&PathBuf, Vec<(&str, &str)>> = HashMap::new();
    for (k, h) in hits {
        by_run.entry(&h.run).or_default().push((k, &h.variant));
    }
    let mut out: HashMap<String, Scores> = HashMap::new();
    for (run, keys) in by_run {
        let files = store::list_parquet(&run.join("outputs"));
        if files.is_empty() {
            continue;
        }
        conn.execute("CREATE OR REPLACE TEMP TABLE p_keys (cache_key VARCHAR, variant VARCHAR)")?;
        {
            let mut app = conn.appender("p_keys")?;
            for (k, v) in &keys {
                app.str(k)?.str(v)?;
                app.end_row()?;
            }
            app.finish()?;
        }
        let sql = format!(
            "SELECT o.cache_key, o.tag, any_value(o.score), any_value(o.category) FROM read_parquet({}, union_by_name = true) o
             SEMI JOIN p_keys k ON o.cache_key = k.cache_key AND o.variant = k.variant
             GROUP BY o.cache_key, o.tag",
            path_list(&files)
        );
        conn.query(&sql)?.for_each_row(|r| {
            out.entry(r.str(0)?.unwrap_or_default().to_string())
                .or_default()
                .push((
                    r.str(1)?.unwrap_or_default().to_string(),
                    r.f64(2)?.unwrap_or(0.0) as f32,
                    Category::parse(r.str(3)?.unwrap_or_default()).unwrap_or(Category::General),
                ));
            Ok(())
        })?;
    }
    for k in hits.keys() {
        out.entry(k.clone()).or_default();
    }
    Ok(out)
}

fn new_manifest(run: &store::RunDir, model: &Model, label: &str, n: usize) -> Manifest {
    Manifest {
        run_id: run.id.clone(),
        experiment: label.to_string(),
        experiment_file: model.file.clone(),
        status: Status::Running,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: store::time_now().iso(),
        finished_at: None,
        pid: std::process::id(),
        host: store::manifest::hostname(),
        command: std::env::args().collect(),
        no_cache: false,
        limit: None,
        dataset: DatasetRecord {
            name: "(files)".into(),
            file: PathBuf::new(),
            root: std::env::current_dir().unwrap_or_default(),
            ground_truth: None,
            max_pixels: None,
        },
        goal: Goal::default(),
        variants: vec![VariantInfo {
            score_repeats: Default::default(),
            name: model.name.clone(),
            model: model.name.clone(),
            thresholds: Vec::new(),
            score_floor: model.score_floor,
            prompt: None,
            params: None,
            repeats: 1,
        }],
        models: Default::default(),
        counts: Counts {
            images: n,
            cells: n,
            ..Counts::default()
        },
        timings: Default::default(),
        best: None,
        error: None,
        resolved: serde_yaml::to_value(model).unwrap_or_default(),
    }
}

#[allow(clippy::too_many_arguments)]
fn compute(
    project: &Project,
    model: &Model,
    identity: &Identity,
    images: &[ImageEntry],
    keys: &[(String, String)],
    jobs: &[Job],
    ctx: &Context,
    conn: &Connection<'_>,
    label: &str,
    persist: bool,
    found: &mut HashMap<String, Scores>,
    errors: &mut HashMap<String, String>,
    mut sink: Option<Sink<'_>>,
) -> Result<Option<String>> {
    let engine = engine::load(model, identity, ctx)?;
    let stored = if persist {
        let run = store::create_run(&project.runs_dir(), label)?;
        let manifest = new_manifest(&run, model, label, jobs.len());
        manifest.write(&run.manifest_path())?;
        super::write_images(conn, &run, jobs.iter().map(|j| (&images[j.image], false)))?;
        let w = PartWriter::new(conn, run.clone())?;
        Some((run, manifest, w))
    } else {
        None
    };
    let (run, mut manifest, mut w) = match stored {
        Some((r, m, w)) => (Some(r), Some(m), Some(w)),
        None => (None, None, None),
    };
    let settings = pipeline::Settings {
        max_pixels: DEFAULT_MAX_PIXELS,
        floor: model.score_floor as f32,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        thumbs: None,
    };
    let bar = crate::ui::progress(jobs.len() as u64, &model.name);
    let mut failures = 0;
    let run_id = run.as_ref().map(|r| r.id.clone()).unwrap_or_default();
    pipeline::execute(engine.as_ref(), jobs, images, &settings, |job, outcome| {
        let img = &images[job.image];
        match outcome {
            Outcome::Done { tags, infer_ms } => {
                let scores: Scores = tags
                    .iter()
                    .map(|t| (t.tag.to_string(), t.score, t.category))
                    .collect();
                match sink.as_mut() {
                    Some(sink) => sink(&job.key, Ok(scores), &run_id),
                    None => {
                        found.insert(job.key.clone(), scores);
                    }
                }
                if let Some(w) = w.as_mut() {
                    let row = CellRow {
                        variant: model.name.clone(),
                        path: img.rel.clone(),
                        image_hash: img.hash.clone(),
                        repeat: 0,
                        cache_key: job.key.clone(),
                        key_json: keys[job.image].1.clone(),
                        origin_run: run_id.clone(),
                        n_tags: tags.len(),
                        infer_ms,
                        fallback: false,
                    };
                    w.add_cell(row, tags);
                }
            }
            Outcome::Failed { stage, reason } => {
                failures += 1;
                if let Some(sink) = sink.as_mut() {
                    sink(&job.key, Err(format!("{stage}: {reason}")), &run_id);
                }
                errors.insert(job.key.clone(), format!("{stage}: {reason}"));
                if let Some(w) = w.as_mut() {
                    w.add_failure(FailureRow {
                        variant: Some(model.name.clone()),
                        image_hash: Some(img.hash.clone()),
                        path: img.rel.clone(),
                        stage: stage.into(),
                        reason,
                    });
                }
            }
        }
        bar.inc(1);
        match w.as_mut() {
            Some(w) => w.maybe_flush(),
            None => Ok(()),
        }
    })?;
    bar.finish_and_clear();
    if let (Some(run), Some(manifest), Some(mut w)) = (run, manifest.as_mut(), w) {
        w.flush()?;
        manifest.counts.inferences = jobs.len();
        manifest.counts.failures = failures;
        manifest.status = Status::Complete;
        manifest.finished_at = Some(store::time_now().iso());
        manifest.write(&run.manifest_path())?;
        return Ok(Some(run.id));
    }
    Ok(None)
}
