//! One vector model (perceptual hashes, image embeddings) over a set of images, cached like
//! any output: vectors are found in earlier runs' `vectors` tables by cell key (model identity
//! × image content), and the misses are computed and stored as a run of their own, so the
//! next call finds them. A kill loses only the cells not yet flushed.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::pipeline::{self, Job, Outcome};
use super::predict::{distinct_misses, Stored};
use crate::config::resolve::DEFAULT_MAX_PIXELS;
use crate::config::{Model, Project};
use crate::dataset::ImageEntry;
use crate::engine::{self, Context, Identity, Vector};
use crate::store::manifest::Status;
use crate::store::writer::{CellRow, FailureRow};
use crate::store::{self, lookup};

/// What [`vectors_cached`] found and computed.
pub struct Vectors {
    /// Per image, in order: its vector, or why it has none.
    pub per_image: Vec<Result<Arc<Vector>, String>>,
    /// The run that stored new vectors (none when everything was cached).
    pub run_id: Option<String>,
    /// Distinct images computed now.
    pub computed: usize,
    /// Distinct images served from earlier runs.
    pub cached: usize,
}

/// The vectors of `model` for `images`: cached ones from earlier runs, the rest computed and
/// stored as a run named `label`.
pub fn vectors_cached(
    project: &Project,
    model: &Model,
    images: &[ImageEntry],
    ctx: &Context,
    label: &str,
) -> Result<Vectors> {
    crate::store::duck::ensure(&ctx.fetcher)?;
    let model = &for_vectors(model);
    let identity = engine::identify(model, ctx, true)?.context("model identity")?;
    let keys: Vec<(String, String)> = images
        .iter()
        .map(|img| {
            let k = crate::plan::key::vector(&identity, &img.hash);
            (k.hash(), k.canonical())
        })
        .collect();
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let key_refs: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let hits = lookup::find_hits(
        &conn,
        &project.runs_dir(),
        lookup::Scope::Except(""),
        &key_refs,
    )?;
    let found: HashMap<String, Arc<Vector>> = lookup::read_vectors(&conn, &hits)?
        .into_iter()
        .map(|(k, v)| (k, Arc::new(v)))
        .collect();
    let cached = found.len();
    let misses = distinct_misses(&keys, |k| found.contains_key(k));
    let mut work = Work {
        model,
        images,
        keys: &keys,
        found,
        errors: HashMap::new(),
        failures: 0,
    };
    let mut run_id = None;
    if !misses.is_empty() {
        let mut stored = Stored::create(project, &conn, model, images, label, &misses)?;
        if let Some(img) = images.first() {
            // The folder the images' paths are relative to (the run's dataset root).
            let mut root = img.abs.clone();
            for _ in std::path::Path::new(&img.rel).components() {
                root.pop();
            }
            stored.manifest.dataset.root = root;
        }
        work.compute(&identity, ctx, &misses, &mut stored)?;
        stored.writer.flush()?;
        if work.failures == misses.len() {
            // Nothing computed (every miss failed, as it will again next time): no run to
            // keep; the failures are the caller's to report.
            let path = stored.run.path.clone();
            drop(stored);
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing the empty run {}", path.display()))?;
            return Ok(finish(&keys, work, None, 0, cached));
        }
        stored.manifest.counts.inferences = misses.len();
        stored.manifest.counts.failures = work.failures;
        stored.manifest.status = Status::Complete;
        stored.manifest.finished_at = Some(store::time_now().iso());
        stored.manifest.write(&stored.run.manifest_path())?;
        run_id = Some(stored.run.id.clone());
    }
    let computed = misses.len();
    Ok(finish(&keys, work, run_id, computed, cached))
}

/// The model as a vector pass uses it: a zero-shot model's vocabulary, template and
/// calibration change its tags, not its embeddings, so they are left out (of the identity,
/// and of loading: no vocabulary is embedded).
pub fn for_vectors(model: &Model) -> Model {
    let mut m = model.clone();
    m.zero_shot = None;
    m
}

fn finish(
    keys: &[(String, String)],
    work: Work<'_>,
    run_id: Option<String>,
    computed: usize,
    cached: usize,
) -> Vectors {
    let per_image = keys
        .iter()
        .map(|(k, _)| match work.found.get(k) {
            Some(v) => Ok(v.clone()),
            None => Err(work
                .errors
                .get(k)
                .cloned()
                .unwrap_or_else(|| "no vector".into())),
        })
        .collect();
    Vectors {
        per_image,
        run_id,
        computed,
        cached,
    }
}

/// Vectors being computed: where they go.
struct Work<'a> {
    model: &'a Model,
    images: &'a [ImageEntry],
    keys: &'a [(String, String)],
    found: HashMap<String, Arc<Vector>>,
    errors: HashMap<String, String>,
    failures: usize,
}

impl Work<'_> {
    fn compute(
        &mut self,
        identity: &Identity,
        ctx: &Context,
        jobs: &[Job],
        stored: &mut Stored<'_, '_>,
    ) -> Result<()> {
        let engine = engine::load(self.model, identity, ctx)?;
        let settings = pipeline::Settings {
            max_pixels: DEFAULT_MAX_PIXELS,
            floor: 0.0,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            thumbs: None,
            vectors: true,
        };
        let bar = crate::ui::progress(jobs.len() as u64, &self.model.name);
        let run_id = stored.run.id.clone();
        pipeline::execute(
            engine.as_ref(),
            jobs,
            self.images,
            &settings,
            |job, outcome| {
                let img = &self.images[job.image];
                match outcome {
                    Outcome::Vector { vector, infer_ms } => {
                        let row = CellRow {
                            variant: self.model.name.clone(),
                            path: img.rel.clone(),
                            image_hash: img.hash.clone(),
                            repeat: 0,
                            cache_key: job.key.clone(),
                            key_json: self.keys[job.image].1.clone(),
                            origin_run: run_id.clone(),
                            n_tags: 0,
                            infer_ms,
                            fallback: false,
                        };
                        stored.writer.add_vector_cell(row, vector.clone());
                        self.found.insert(job.key.clone(), Arc::new(vector));
                    }
                    Outcome::Done { .. } => self.fail(
                        stored,
                        job,
                        "infer",
                        "the model gave tags, not vectors".into(),
                    ),
                    Outcome::Failed { stage, reason } => self.fail(stored, job, stage, reason),
                }
                bar.inc(1);
                stored.writer.maybe_flush()
            },
        )?;
        bar.finish_and_clear();
        Ok(())
    }

    fn fail(&mut self, stored: &mut Stored<'_, '_>, job: &Job, stage: &str, reason: String) {
        self.failures += 1;
        let img = &self.images[job.image];
        self.errors
            .insert(job.key.clone(), format!("{stage}: {reason}"));
        stored.writer.add_failure(FailureRow {
            variant: Some(self.model.name.clone()),
            image_hash: Some(img.hash.clone()),
            path: img.rel.clone(),
            stage: stage.into(),
            reason,
        });
    }
}
