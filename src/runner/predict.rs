//! One model over loose image files, cached like any run: `iw-lab predict` and the
//! production pass (`iw-lab tag`) share it. Hits are read from earlier runs; misses are
//! computed and, unless asked not to, stored as a run of their own (experiment `LABEL`), so
//! the next call finds them.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::pipeline::{self, Job, Outcome};
use crate::config::resolve::{Goal, DEFAULT_MAX_PIXELS};
use crate::config::{Model, Project};
use crate::dataset::ImageEntry;
use crate::engine::{self, Context, Identity};
use crate::plan::key;
use crate::store::duck::Connection;
use crate::store::manifest::{Counts, DatasetRecord, Manifest, Status, VariantInfo};
use crate::store::writer::{CellRow, FailureRow, PartWriter};
use crate::store::{self, lookup};

/// Stored (tag, score, category) rows.
pub use crate::store::lookup::Scores;

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
pub(super) fn spelled_keys(
    model: &Model,
    identity: &Identity,
    images: &[ImageEntry],
) -> Vec<(String, String)> {
    let inputs: std::collections::HashMap<usize, String> =
        engine::cell_inputs(model, images).into_iter().collect();
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let input = inputs.get(&i).map(String::as_str);
            let k = key::tagger(identity, &img.hash, input, model.score_floor, 0);
            (k.hash(), k.canonical())
        })
        .collect()
}

/// One job per distinct key that `known` does not have, at its first image.
pub(super) fn distinct_misses(keys: &[(String, String)], known: impl Fn(&str) -> bool) -> Vec<Job> {
    let mut seen = std::collections::HashSet::new();
    keys.iter()
        .enumerate()
        .filter(|(_, k)| !known(&k.0) && seen.insert(k.0.as_str()))
        .map(|(i, k)| Job {
            key: k.0.clone(),
            image: i,
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
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let key_refs: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let scope = lookup::Scope::Except("");
    let hits = lookup::find_hits(&conn, &project.runs_dir(), scope, &key_refs)?;
    let mut scores = lookup::read_scores(&conn, &hits)?;
    if let Some(sink) = sink.as_mut() {
        for (k, s) in scores.drain() {
            sink(&k, Ok(s), &hits[&k].origin_run);
        }
    }
    let misses = distinct_misses(&keys, |k| hits.contains_key(k));
    let mut origins: HashMap<String, String> = hits
        .iter()
        .map(|(k, h)| (k.clone(), h.origin_run.clone()))
        .collect();
    let mut work = Computation {
        model,
        images,
        keys: &keys,
        sink,
        scores,
        errors: HashMap::new(),
        stored: None,
        failures: 0,
    };
    let mut run_id = None;
    if !misses.is_empty() {
        if persist {
            work.stored = Some(Stored::create(
                project, &conn, model, images, label, &misses,
            )?);
        }
        work.compute(identity, ctx, &misses)?;
        run_id = work.finish(misses.len())?;
        if let Some(id) = &run_id {
            for j in &misses {
                origins.insert(j.key.clone(), id.clone());
            }
        }
    }
    let (scores, errors) = (work.scores, work.errors);
    Ok(Inferred {
        keys: keys.into_iter().map(|k| k.0).collect(),
        scores,
        errors,
        run_id,
        origins,
        inferences: misses.len(),
    })
}

/// The run new predictions are stored in.
pub(super) struct Stored<'c, 'db> {
    pub(super) run: store::RunDir,
    pub(super) manifest: Manifest,
    pub(super) writer: PartWriter<'c, 'db>,
}

impl<'c, 'db> Stored<'c, 'db> {
    /// Creates the run `label` for the images of `jobs`.
    pub(super) fn create(
        project: &Project,
        conn: &'c Connection<'db>,
        model: &Model,
        images: &[ImageEntry],
        label: &str,
        jobs: &[Job],
    ) -> Result<Self> {
        let run = store::create_run(&project.runs_dir(), label)?;
        let manifest = new_manifest(&run, model, label, jobs.len());
        manifest.write(&run.manifest_path())?;
        super::write_images(conn, &run, jobs.iter().map(|j| (&images[j.image], false)))?;
        let writer = PartWriter::new(conn, run.clone())?;
        Ok(Stored {
            run,
            manifest,
            writer,
        })
    }
}

/// Predictions being computed: where they go.
struct Computation<'a, 's, 'c, 'db> {
    model: &'a Model,
    images: &'a [ImageEntry],
    /// Per image: its key, hashed and spelled out.
    keys: &'a [(String, String)],
    sink: Option<Sink<'s>>,
    scores: HashMap<String, Scores>,
    errors: HashMap<String, String>,
    stored: Option<Stored<'c, 'db>>,
    failures: usize,
}

impl Computation<'_, '_, '_, '_> {
    /// Runs `jobs` through the model's engine.
    fn compute(&mut self, identity: &Identity, ctx: &Context, jobs: &[Job]) -> Result<()> {
        let engine = engine::load(self.model, identity, ctx)?;
        let settings = pipeline::Settings {
            max_pixels: DEFAULT_MAX_PIXELS,
            floor: self.model.score_floor as f32,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            thumbs: None,
            vectors: false,
        };
        let bar = crate::ui::progress(jobs.len() as u64, &self.model.name);
        pipeline::execute(
            engine.as_ref(),
            jobs,
            self.images,
            &settings,
            |job, outcome| {
                match outcome {
                    Outcome::Done {
                        tags,
                        regions,
                        infer_ms,
                    } => self.done(job, tags, regions, infer_ms),
                    Outcome::Failed { stage, reason } => self.failed(job, stage, reason),
                    Outcome::Vector { .. } => self.failed(
                        job,
                        "infer",
                        "the model gives image vectors, not tags".into(),
                    ),
                }
                bar.inc(1);
                match self.stored.as_mut() {
                    Some(s) => s.writer.maybe_flush(),
                    None => Ok(()),
                }
            },
        )?;
        bar.finish_and_clear();
        Ok(())
    }

    fn run_id(&self) -> String {
        self.stored
            .as_ref()
            .map(|s| s.run.id.clone())
            .unwrap_or_default()
    }

    /// Keeps one computed key's tags, and stores them with the regions they came from (a
    /// detector's faces), so a run served from this cache has its faces too.
    fn done(
        &mut self,
        job: &Job,
        tags: Vec<crate::engine::TagScore>,
        regions: Vec<crate::words::Region>,
        infer_ms: f64,
    ) {
        // As runs store them, so a result reads the same computed or cached.
        let tags = super::normalised(tags);
        let run_id = self.run_id();
        let scores: Scores = tags
            .iter()
            .map(|t| (t.tag.to_string(), t.score, t.category))
            .collect();
        match self.sink.as_mut() {
            Some(sink) => sink(&job.key, Ok(scores), &run_id),
            None => {
                self.scores.insert(job.key.clone(), scores);
            }
        }
        let img = &self.images[job.image];
        if let Some(s) = self.stored.as_mut() {
            let row = CellRow {
                variant: self.model.name.clone(),
                path: img.rel.clone(),
                image_hash: img.hash.clone(),
                repeat: 0,
                cache_key: job.key.clone(),
                key_json: self.keys[job.image].1.clone(),
                origin_run: run_id,
                n_tags: tags.len(),
                infer_ms,
                fallback: false,
            };
            s.writer.add_region_cell(row, tags, regions);
        }
    }

    fn failed(&mut self, job: &Job, stage: &str, reason: String) {
        self.failures += 1;
        let run_id = self.run_id();
        let message = format!("{stage}: {reason}");
        if let Some(sink) = self.sink.as_mut() {
            sink(&job.key, Err(message.clone()), &run_id);
        }
        self.errors.insert(job.key.clone(), message);
        let img = &self.images[job.image];
        if let Some(s) = self.stored.as_mut() {
            s.writer.add_failure(FailureRow {
                variant: Some(self.model.name.clone()),
                image_hash: Some(img.hash.clone()),
                path: img.rel.clone(),
                stage: stage.into(),
                reason,
            });
        }
    }

    /// Commits the stored run, if any, and returns its id.
    fn finish(&mut self, inferences: usize) -> Result<Option<String>> {
        let Some(mut s) = self.stored.take() else {
            return Ok(None);
        };
        s.writer.flush()?;
        s.manifest.counts.inferences = inferences;
        s.manifest.counts.failures = self.failures;
        s.manifest.status = Status::Complete;
        s.manifest.finished_at = Some(store::time_now().iso());
        s.manifest.write(&s.run.manifest_path())?;
        Ok(Some(s.run.id))
    }
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
