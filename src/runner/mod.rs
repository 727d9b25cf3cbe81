//! The runner: turns a resolved experiment into a finished run directory.
//!
//! Steps: scan the dataset and read its ground truth; identify every model (downloading its
//! files once); plan the cells; look their keys up in earlier runs and copy the hits in;
//! compute the misses, one model at a time, through the pipeline; record every failure and go
//! on; score the run; write the manifest. `stage` (everything before any inference) is shared
//! with `iw-lab plan`.

pub mod engines;
pub mod generate;
pub mod judge;
pub mod pipeline;
pub mod predict;
pub mod scoring;
pub mod truth;
pub mod vectors;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::analysis::load::Scored;
use crate::analysis::{self, VariantMetrics};
use crate::config::files::Direction;
use crate::config::{Experiment, Project};
use crate::dataset::{self, ground_truth, ImageEntry, Scan};
use crate::engine::TagScore;
use crate::engine::{self, Context, Identity};
use crate::plan::{self, Plan};
use crate::store::duck::Connection;
use crate::store::manifest::{
    Best, Counts, DatasetRecord, FileRecord, Manifest, ModelRecord, Status, VariantInfo,
};
use crate::store::writer::{self, CellRow, FailureRow, PartWriter};
use crate::store::{self, lookup, tables, RunDir};
use crate::ui;

/// Everything known before any inference.
pub struct Staged {
    pub exp: Experiment,
    pub scan: Scan,
    /// Per ground-truth source name, per image: tags or unlabelled.
    pub ground_truth: Vec<(String, Vec<Option<Vec<String>>>)>,
    /// Problems reading ground truth: (file, reason).
    pub gt_problems: Vec<(String, String)>,
    pub identities: HashMap<String, Identity>,
    pub inputs: HashMap<(String, usize), String>,
    /// (variant, image) → blake3 of the rendered prompt (generative variants).
    pub prompts: HashMap<(usize, usize), String>,
    /// Every tag of the scored ground truth, most frequent first (the vocabulary templates
    /// see and free-text tags are mapped onto).
    pub vocabulary: Vec<String>,
    pub plan: Plan,
    pub scan_s: f64,
}

impl Staged {
    pub fn images(&self) -> &[ImageEntry] {
        &self.scan.images
    }

    /// Image index by path (relative to the dataset root).
    pub fn index_by_path(&self) -> std::collections::HashMap<&str, usize> {
        self.images()
            .iter()
            .enumerate()
            .map(|(i, im)| (im.rel.as_str(), i))
            .collect()
    }

    /// The scored ground truth of image `i` (None when unlabelled).
    pub fn truth(&self, i: usize) -> Option<&[String]> {
        let source = self.exp.ground_truth.as_deref()?;
        let (_, tags) = self.ground_truth.iter().find(|(n, _)| n == source)?;
        tags.get(i)?.as_deref()
    }

    /// What cache keys are made of.
    pub fn plan_inputs(&self) -> plan::Inputs<'_> {
        plan::Inputs {
            exp: &self.exp,
            images: &self.scan.images,
            identities: &self.identities,
            inputs: &self.inputs,
            prompts: &self.prompts,
        }
    }

    /// Whether each image has ground truth in the scored source.
    pub fn labelled(&self) -> Vec<bool> {
        let source = self.exp.ground_truth.as_deref();
        match self
            .ground_truth
            .iter()
            .find(|(n, _)| Some(n.as_str()) == source)
        {
            Some((_, tags)) => tags.iter().map(Option::is_some).collect(),
            None => vec![false; self.scan.images.len()],
        }
    }

    /// Distinct keys of the plan (cells keyed when planned).
    pub fn keys(&self) -> Vec<&str> {
        let mut seen = std::collections::HashSet::new();
        self.plan
            .cells
            .iter()
            .filter_map(|c| c.key.as_deref())
            .filter(|k| seen.insert(*k))
            .collect()
    }
}

/// The experiment with its zero-shot models' `vocabulary: dataset` filled in: the
/// ground truth's tags, most frequent first.
fn with_dataset_vocabulary(mut exp: Experiment, vocabulary: &[String]) -> Experiment {
    use crate::config::Vocabulary;
    for v in &mut exp.variants {
        if let Some(z) = &v.model.zero_shot {
            if matches!(z.vocabulary, Vocabulary::Dataset) {
                let mut m = (*v.model).clone();
                if let Some(z) = &mut m.zero_shot {
                    z.vocabulary = Vocabulary::Tags(vocabulary.to_vec());
                }
                v.model = std::sync::Arc::new(m);
            }
        }
    }
    exp
}

/// Scans, reads ground truth, identifies models and plans. With `download` false, models
/// whose files are not cached stay unidentified (for `plan`).
pub fn stage(
    project: &Project,
    exp: Experiment,
    ctx: &Context,
    limit: Option<usize>,
    download: bool,
) -> Result<Staged> {
    let t = Instant::now();
    let limit = limit.or(exp.limit);
    let scan = dataset::scan(&exp.dataset, &project.state_dir(), limit)
        .with_context(|| format!("scanning {}", exp.dataset.root.display()))?;
    let mut gt_problems = Vec::new();
    let mut ground_truth = Vec::new();
    for g in &exp.dataset.ground_truth {
        let loaded = ground_truth::load(&exp.dataset, g, &scan.images);
        gt_problems.extend(loaded.problems);
        ground_truth.push((g.name.clone(), loaded.tags));
        if let Some(negative) = loaded.negative {
            ground_truth.push((ground_truth::negative_source(&g.name), negative));
        }
    }
    let vocabulary: Vec<String> = {
        let mut freq: HashMap<&str, usize> = HashMap::new();
        if let Some((_, tags)) = exp
            .ground_truth
            .as_deref()
            .and_then(|s| ground_truth.iter().find(|(n, _)| n == s))
        {
            for t in tags.iter().flatten().flatten() {
                *freq.entry(t.as_str()).or_default() += 1;
            }
        }
        let mut v: Vec<(&str, usize)> = freq.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter().map(|(t, _)| t.to_string()).collect()
    };
    let exp = with_dataset_vocabulary(exp, &vocabulary);
    let scan_s = t.elapsed().as_secs_f64();
    let mut identities = HashMap::new();
    for model in exp.models() {
        if let Some(id) = engine::identify(&model, ctx, download)? {
            identities.insert(model.name.clone(), id);
        }
    }
    let mut inputs = HashMap::new();
    for model in exp.variant_models() {
        for (i, input) in engine::cell_inputs(&model, &scan.images) {
            inputs.insert((model.name.clone(), i), input);
        }
    }
    let mut staged = Staged {
        exp,
        scan,
        ground_truth,
        gt_problems,
        identities,
        inputs,
        prompts: HashMap::new(),
        vocabulary,
        plan: Plan::default(),
        scan_s,
    };
    staged.prompts = generate::prompt_ids(&staged);
    staged.plan = plan::plan(&staged.plan_inputs());
    Ok(staged)
}

/// Options of `iw-lab run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub no_cache: bool,
    pub limit: Option<usize>,
    pub command: Vec<String>,
    /// Where to cache report thumbnails of the images decoded ([`run_thumbs`]).
    pub thumbs: Option<std::path::PathBuf>,
}

/// A finished run.
pub struct Finished {
    pub run: RunDir,
    pub manifest: Manifest,
    pub metrics: Vec<VariantMetrics>,
}

/// Where runs cache report thumbnails of the images they decode: `.iw-lab/thumbs`, unless
/// `IW_LAB_NO_THUMBS` is set.
pub fn run_thumbs(project: &Project) -> Option<std::path::PathBuf> {
    std::env::var_os("IW_LAB_NO_THUMBS")
        .is_none()
        .then(|| project.state_dir().join("thumbs"))
}

/// Keeps every template version the experiment uses in `prompts/.history`.
fn record_templates(project: &Project, exp: &Experiment) -> Result<()> {
    let store = crate::config::generative::store(&project.root);
    let now = store::time_now().iso();
    let by = format!("experiment {}", exp.name);
    let mut all = Vec::new();
    for v in &exp.variants {
        if let Some(g) = &v.gen {
            all.push(&g.prompt);
            all.extend(g.system.as_ref());
        }
        if let Some(t) = v.ensemble.as_ref().and_then(|e| e.merge_prompt.as_ref()) {
            all.push(t);
        }
    }
    all.extend(exp.judges.iter().filter_map(|j| j.rubric.as_ref()));
    for t in all {
        store
            .record(t, &by, &now)
            .with_context(|| format!("recording prompt {} in prompts/.history", t.id()))?;
    }
    Ok(())
}

/// Runs an experiment to completion.
pub fn run(
    project: &Project,
    exp: Experiment,
    ctx: &Context,
    opts: &RunOptions,
) -> Result<Finished> {
    let t0 = Instant::now();
    crate::store::duck::ensure(&ctx.fetcher)?;
    let staged = stage(project, exp, ctx, opts.limit, true)?;
    record_templates(project, &staged.exp)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let run = store::create_run(&project.runs_dir(), &staged.exp.name)?;
    let mut manifest = new_manifest(&staged, &run, opts);
    manifest.write(&run.manifest_path())?;
    let result = execute(&staged, &run, &conn, ctx, &mut manifest, opts, t0);
    if let Err(e) = &result {
        manifest.status = Status::Failed;
        manifest.error = Some(format!("{e:#}"));
        manifest.finished_at = Some(store::time_now().iso());
        let _ = manifest.write(&run.manifest_path());
    }
    let metrics = result?;
    Ok(Finished {
        run,
        manifest,
        metrics,
    })
}

/// A run at work: what its steps share.
struct Work<'a, 'c, 'db> {
    staged: &'a Staged,
    run: &'a RunDir,
    conn: &'c Connection<'db>,
    ctx: &'a Context,
    opts: &'a RunOptions,
    writer: PartWriter<'c, 'db>,
    counts: Counts,
}

fn execute(
    staged: &Staged,
    run: &RunDir,
    conn: &Connection<'_>,
    ctx: &Context,
    manifest: &mut Manifest,
    opts: &RunOptions,
    t0: Instant,
) -> Result<Vec<VariantMetrics>> {
    write_inputs(conn, run, staged)?;
    let counts = Counts {
        images: staged.images().len(),
        labelled: staged.labelled().iter().filter(|l| **l).count(),
        cells: staged.plan.cells.len(),
        ..Counts::default()
    };
    manifest.counts = counts.clone();
    manifest.write(&run.manifest_path())?;
    let mut work = Work {
        staged,
        run,
        conn,
        ctx,
        opts,
        writer: PartWriter::new(conn, run.clone())?,
        counts,
    };
    let t_lookup = Instant::now();
    let misses = work.serve_tagger_hits()?;
    let lookup_s = t_lookup.elapsed().as_secs_f64();
    work.record_input_failures();
    let t_infer = Instant::now();
    work.run_taggers(&misses)?;
    let mut engines = engines::Engines::default();
    work.generate(&mut engines)?;
    work.judge(&mut engines)?;
    let infer_s = t_infer.elapsed().as_secs_f64();
    let t_metrics = Instant::now();
    let metrics = score(conn, run, staged, ctx, &mut engines)?;
    manifest.best = best(&metrics, &staged.exp);
    manifest.counts = work.counts;
    manifest.timings = crate::store::manifest::Timings {
        scan_s: staged.scan_s,
        lookup_s,
        infer_s,
        metrics_s: t_metrics.elapsed().as_secs_f64(),
        total_s: t0.elapsed().as_secs_f64(),
    };
    manifest.status = Status::Complete;
    manifest.finished_at = Some(store::time_now().iso());
    manifest.write(&run.manifest_path())?;
    Ok(metrics)
}

/// The tagger cells still to compute, by (model, score floor) and then by key (cells sharing
/// a key are computed once).
type TaggerMisses<'a> = BTreeMap<(String, u64), BTreeMap<String, Vec<&'a plan::Cell>>>;

impl<'a> Work<'a, '_, '_> {
    /// Copies the cached cells of the taggers (image models and sidecars) into the run and
    /// returns the rest. Prompted variants and ensembles look theirs up in the generation
    /// step, which applies this run's post-processing to cached answers.
    fn serve_tagger_hits(&mut self) -> Result<TaggerMisses<'a>> {
        let staged = self.staged;
        let exp = &staged.exp;
        let tagged: Vec<&plan::Cell> = staged
            .plan
            .cells
            .iter()
            .filter(|c| engine::capabilities_of(&exp.variants[c.variant].model).tags)
            .collect();
        let keys: Vec<&str> = tagged.iter().filter_map(|c| c.key.as_deref()).collect();
        let hits = if self.opts.no_cache {
            HashMap::new()
        } else {
            let runs_dir = self.run.path.parent().unwrap_or(&self.run.path);
            lookup::find_hits(
                self.conn,
                runs_dir,
                lookup::Scope::Except(&self.run.id),
                &keys,
            )?
        };
        let mut served = Vec::new();
        let mut misses = TaggerMisses::new();
        for c in tagged {
            let hash = c.key.clone().expect("taggers are keyed when planned");
            if hits.contains_key(&hash) {
                served.push((c, tagger_key(staged, c)));
                continue;
            }
            let v = &exp.variants[c.variant];
            misses
                .entry((v.model.name.clone(), v.score_floor.to_bits()))
                .or_default()
                .entry(hash)
                .or_default()
                .push(c);
        }
        let copied: Vec<(&plan::Cell, &Key, bool)> =
            served.iter().map(|(c, k)| (*c, k, false)).collect();
        copy_hits(
            staged,
            self.run,
            self.conn,
            &mut self.writer,
            &copied,
            &hits,
        )?;
        self.counts.cache_hits += copied.len();
        self.writer.flush()?;
        Ok(misses)
    }

    /// Unreadable files and ground-truth problems are failures of the input, not of a cell.
    fn record_input_failures(&mut self) {
        let staged = self.staged;
        let problems = staged
            .scan
            .unreadable
            .iter()
            .map(|p| ("read", p))
            .chain(staged.gt_problems.iter().map(|p| ("ground_truth", p)));
        for (stage, (path, reason)) in problems {
            self.writer.add_failure(FailureRow {
                variant: None,
                image_hash: None,
                path: path.clone(),
                stage: stage.into(),
                reason: reason.clone(),
            });
            self.counts.failures += 1;
        }
    }

    /// Computes the tagger misses, one model (and floor) at a time, through the pipeline.
    fn run_taggers(&mut self, misses: &TaggerMisses<'_>) -> Result<()> {
        for ((model_name, floor_bits), by_key) in misses {
            let staged = self.staged;
            let exp = &staged.exp;
            let model = exp
                .models()
                .into_iter()
                .find(|m| &m.name == model_name)
                .expect("model of a variant");
            let identity = &staged.identities[model_name];
            let engine = engine::load(&model, identity, self.ctx)
                .with_context(|| format!("loading model `{model_name}`"))?;
            let jobs: Vec<pipeline::Job> = by_key
                .iter()
                .map(|(key, cells)| pipeline::Job {
                    key: key.clone(),
                    image: cells[0].image,
                })
                .collect();
            let bar = ui::progress(jobs.len() as u64, &variant_label(exp, model_name));
            let settings = pipeline::Settings {
                max_pixels: exp.dataset.max_pixels,
                floor: f64::from_bits(*floor_bits) as f32,
                workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
                thumbs: self.opts.thumbs.clone(),
                vectors: false,
            };
            pipeline::execute(
                engine.as_ref(),
                &jobs,
                staged.images(),
                &settings,
                |job, outcome| {
                    self.tagger_outcome(&by_key[job.key.as_str()], outcome);
                    bar.inc(1);
                    self.writer.maybe_flush()
                },
            )?;
            bar.finish_and_clear();
        }
        Ok(())
    }

    /// Writes one computed key's outcome for each of its cells.
    fn tagger_outcome(&mut self, cells: &[&plan::Cell], outcome: pipeline::Outcome) {
        let staged = self.staged;
        self.counts.inferences += 1;
        self.counts.shared += cells.len() - 1;
        match outcome {
            pipeline::Outcome::Done {
                tags,
                regions,
                infer_ms,
            } => {
                let tags = normalised(tags);
                for c in cells {
                    let key = tagger_key(staged, c);
                    let row = cell_row(staged, c, &key, self.run.id.clone(), tags.len(), infer_ms);
                    self.writer
                        .add_region_cell(row, tags.clone(), regions.clone());
                }
            }
            pipeline::Outcome::Vector { .. } => self.tagger_outcome(
                cells,
                pipeline::Outcome::Failed {
                    stage: "infer",
                    reason: "the model gives image vectors, not tags".into(),
                },
            ),
            pipeline::Outcome::Failed { stage, reason } => {
                for c in cells {
                    let img = &staged.images()[c.image];
                    self.writer.add_failure(FailureRow {
                        variant: Some(staged.exp.variants[c.variant].name.clone()),
                        image_hash: Some(img.hash.clone()),
                        path: img.rel.clone(),
                        stage: stage.to_string(),
                        reason: reason.clone(),
                    });
                    self.counts.failures += 1;
                }
            }
        }
    }

    /// Prompted variants and ensembles.
    fn generate(&mut self, engines: &mut engines::Engines) -> Result<()> {
        let mut step = generate::Step {
            staged: self.staged,
            run: self.run,
            conn: self.conn,
            writer: &mut self.writer,
            ctx: self.ctx,
            engines,
            no_cache: self.opts.no_cache,
            tally: generate::Tally::default(),
        };
        step.run_variants()?;
        let tally = step.tally;
        self.counts.inferences += tally.inferences;
        self.counts.failures += tally.failures;
        self.counts.cache_hits += tally.cache_hits;
        self.counts.shared += tally.shared;
        self.writer.flush()
    }

    /// The judges, once every variant has its outputs.
    fn judge(&mut self, engines: &mut engines::Engines) -> Result<()> {
        self.writer.flush()?;
        let judged = judge::run_judges(
            self.staged,
            self.run,
            self.conn,
            self.ctx,
            engines,
            self.opts.no_cache,
        )?;
        self.counts.judge_calls += judged.inferences;
        self.counts.failures += judged.failures;
        self.counts.judge_cached += judged.cached;
        Ok(())
    }
}

/// The key of a tagger's cell, spelled out.
/// Tags in their canonical spelling (engines may keep a name's case for display, `person:Amy
/// H`; runs store what scoring compares), duplicates merged by their highest score.
pub(crate) fn normalised(tags: Vec<TagScore>) -> Vec<TagScore> {
    let mut out: Vec<TagScore> = Vec::with_capacity(tags.len());
    let mut index: HashMap<std::sync::Arc<str>, usize> = HashMap::with_capacity(tags.len());
    for t in tags {
        let tag: std::sync::Arc<str> = match crate::tags::normalise(&t.tag) {
            Some(n) if *n != *t.tag => n.into(),
            Some(_) => t.tag,
            None => continue,
        };
        match index.get(&tag) {
            Some(&i) => out[i].score = out[i].score.max(t.score),
            None => {
                index.insert(tag.clone(), out.len());
                out.push(TagScore { tag, ..t });
            }
        }
    }
    out
}

fn tagger_key(staged: &Staged, c: &plan::Cell) -> Key {
    staged
        .plan_inputs()
        .key(c.variant, c.image, c.repeat)
        .expect("taggers are keyed when planned")
        .into()
}

/// Commits `cells` (each with its key, and whether it derives from a fallback) as copies of
/// their `hits`: outputs and texts copied into this run, then the cells themselves, which keep
/// the run that first computed them as their origin.
pub(crate) fn copy_hits(
    staged: &Staged,
    run: &RunDir,
    conn: &Connection<'_>,
    writer: &mut PartWriter<'_, '_>,
    cells: &[(&plan::Cell, &Key, bool)],
    hits: &HashMap<String, lookup::Hit>,
) -> Result<()> {
    let exp = &staged.exp;
    let images = staged.images();
    let cached: Vec<lookup::CachedCell<'_>> = cells
        .iter()
        .map(|(c, key, _)| lookup::CachedCell {
            variant: &exp.variants[c.variant].name,
            path: &images[c.image].rel,
            repeat: c.repeat,
            key: &key.hash,
            hit: &hits[&key.hash],
        })
        .collect();
    lookup::copy_outputs(conn, run, &cached)?;
    for (c, key, from_fallback) in cells {
        let hit = &hits[&key.hash];
        let mut row = cell_row(
            staged,
            c,
            key,
            hit.origin_run.clone(),
            hit.n_tags as usize,
            hit.infer_ms,
        );
        row.fallback = hit.fallback || *from_fallback;
        writer.add_cell_without_outputs(row);
    }
    Ok(())
}

fn variant_label(exp: &Experiment, model: &str) -> String {
    let names: Vec<&str> = exp
        .variants
        .iter()
        .filter(|v| v.model.name == model)
        .map(|v| v.name.as_str())
        .collect();
    names.join(",")
}

/// A cell's key, hashed and spelled out (the row keeps both).
pub struct Key {
    pub hash: String,
    pub json: String,
}

impl From<plan::CacheKey> for Key {
    fn from(k: plan::CacheKey) -> Key {
        let json = k.canonical();
        Key {
            hash: plan::key::digest(&json),
            json,
        }
    }
}

pub(crate) fn cell_row(
    staged: &Staged,
    c: &plan::Cell,
    key: &Key,
    origin_run: String,
    n_tags: usize,
    infer_ms: f64,
) -> CellRow {
    let v = &staged.exp.variants[c.variant];
    let img = &staged.scan.images[c.image];
    CellRow {
        variant: v.name.clone(),
        path: img.rel.clone(),
        image_hash: img.hash.clone(),
        repeat: c.repeat,
        cache_key: key.hash.clone(),
        key_json: key.json.clone(),
        origin_run,
        n_tags,
        infer_ms,
        fallback: false,
    }
}

/// Writes `images.parquet` and `ground_truth.parquet`.
fn write_inputs(conn: &Connection<'_>, run: &RunDir, staged: &Staged) -> Result<()> {
    let labelled = staged.labelled();
    write_images(
        conn,
        run,
        staged.images().iter().zip(labelled.iter().copied()),
    )?;
    writer::write_table(
        conn,
        &run.file("ground_truth.parquet"),
        writer::GROUND_TRUTH_SCHEMA,
        |app| {
            for (source, per_image) in &staged.ground_truth {
                for (img, tags) in staged.images().iter().zip(per_image) {
                    for t in tags.iter().flatten() {
                        app.str(&img.rel)?.str(&img.hash)?.str(source)?.str(t)?;
                        app.end_row()?;
                    }
                }
            }
            Ok(())
        },
    )
}

/// Writes `images.parquet` (with each image's generation metadata) and `image_loras.parquet`.
pub(crate) fn write_images<'a>(
    conn: &Connection<'_>,
    run: &RunDir,
    images: impl Iterator<Item = (&'a ImageEntry, bool)> + Clone,
) -> Result<()> {
    writer::write_table(
        conn,
        &run.file("images.parquet"),
        writer::IMAGES_SCHEMA,
        |app| {
            for (img, labelled) in images.clone() {
                app.str(&img.rel)?
                    .str(&img.hash)?
                    .i64(img.size as i64)?
                    .opt_str(img.format.as_deref())?;
                match (img.width, img.height) {
                    (Some(w), Some(h)) => app.i32(w as i32)?.i32(h as i32)?,
                    _ => app.null()?.null()?,
                };
                app.bool(labelled)?;
                let folder = img.rel.rsplit_once('/').map_or("", |(d, _)| d);
                app.str(folder)?;
                let m = img.meta.as_deref().cloned().unwrap_or_default();
                let int = |app: &mut crate::store::duck::Appender<'_>, x: Option<u32>| match x {
                    Some(x) => app.i32(x.min(i32::MAX as u32) as i32).map(drop),
                    None => app.null().map(drop),
                };
                let float = |app: &mut crate::store::duck::Appender<'_>, x: Option<f64>| match x {
                    Some(x) => app.f64(x).map(drop),
                    None => app.null().map(drop),
                };
                app.opt_str(m.generator.as_deref())?
                    .opt_str(m.model.as_deref())?
                    .opt_str(m.model_hash.as_deref())?
                    .opt_str(m.sampler.as_deref())?
                    .opt_str(m.scheduler.as_deref())?;
                match m.seed {
                    Some(s) => app.u64(s)?,
                    None => app.null()?,
                };
                int(app, m.steps)?;
                float(app, m.cfg)?;
                int(app, m.width)?;
                int(app, m.height)?;
                app.opt_str(m.vae.as_deref())?;
                int(app, m.clip_skip)?;
                float(app, m.denoise)?;
                app.opt_str(m.prompt.as_deref())?
                    .opt_str(m.negative_prompt.as_deref())?;
                app.end_row()?;
            }
            Ok(())
        },
    )?;
    writer::write_table(
        conn,
        &run.file("image_loras.parquet"),
        writer::IMAGE_LORAS_SCHEMA,
        |app| {
            for (img, _) in images {
                for (name, weight) in img.meta.iter().flat_map(|m| &m.loras) {
                    app.str(&img.rel)?.str(&img.hash)?.str(name)?;
                    match weight {
                        Some(w) => app.f64(*w)?,
                        None => app.null()?,
                    };
                    app.end_row()?;
                }
            }
            Ok(())
        },
    )
}

/// Scores a run's stored outputs (tags against the ground truth; judges, similarity,
/// stability and costs for generative variants) and writes `metrics.json`.
fn score(
    conn: &Connection<'_>,
    run: &RunDir,
    staged: &Staged,
    ctx: &Context,
    engines: &mut engines::Engines,
) -> Result<Vec<VariantMetrics>> {
    let generative = staged
        .exp
        .variants
        .iter()
        .any(|v| v.gen.is_some() || v.ensemble.is_some());
    let source = staged.exp.ground_truth.as_deref();
    if source.is_none() && !generative {
        return Ok(Vec::new());
    }
    tables::open_run(conn, run)?;
    let variants: Vec<Scored> = staged
        .exp
        .variants
        .iter()
        .map(|v| Scored {
            variant: v.name.clone(),
            thresholds: v.thresholds.clone(),
            repeats: v.repeats,
            union: v.score_repeats == crate::config::files::ScoreRepeats::Union,
        })
        .collect();
    let mut metrics = match source {
        Some(source) => {
            let mut m = scoring::run_metrics(conn, source, &variants, None)?;
            shared_goal(conn, source, staged, &variants, &mut m)?;
            m
        }
        None => variants
            .iter()
            .map(|v| {
                analysis::metrics::assemble(&v.variant, 0.0, Vec::new(), &[], 0, &HashMap::new())
            })
            .collect(),
    };
    let mut agreement = serde_json::Value::Null;
    if generative || !staged.exp.judges.is_empty() {
        let (text, agree) = judge::summarise(conn, run, staged, ctx, engines)?;
        agreement = agree;
        for m in &mut metrics {
            if let Some(v) = staged.exp.variants.iter().find(|v| v.name == m.variant) {
                m.scores_tags = !v.captions();
                if !m.scores_tags {
                    m.f1_micro_ci = None;
                }
            }
            if let Some(t) = text.get(&m.variant) {
                m.text = t.clone();
            }
        }
    }
    let mut doc = serde_json::json!({ "ground_truth": source, "variants": metrics });
    if !agreement.is_null() && agreement.as_object().is_some_and(|o| !o.is_empty()) {
        doc["judge_agreement"] = agreement;
    }
    crate::atomic::write(
        &run.file("metrics.json"),
        serde_json::to_string_pretty(&doc)?.as_bytes(),
    )?;
    Ok(metrics)
}

/// When the tag-scored variants were scored on different images (some failed on some), adds
/// to each the goal metric on the images all of them share: the goal compares them there.
fn shared_goal(
    conn: &Connection<'_>,
    source: &str,
    staged: &Staged,
    variants: &[Scored],
    metrics: &mut [VariantMetrics],
) -> Result<()> {
    let goal = staged.exp.goal.metric;
    if goal.of_text() {
        return Ok(());
    }
    let tagged: Vec<Scored> = variants
        .iter()
        .filter(|s| {
            staged
                .exp
                .variants
                .iter()
                .any(|v| v.name == s.variant && !v.captions())
        })
        .cloned()
        .collect();
    let mut sets = Vec::new();
    for s in &tagged {
        sets.push(store::counts::scored_images(conn, &s.variant)?);
    }
    if sets.len() < 2 || sets.windows(2).all(|w| w[0] == w[1]) {
        return Ok(());
    }
    let mut shared: Vec<String> = sets[0].clone();
    for s in &sets[1..] {
        let keep: std::collections::HashSet<&String> = s.iter().collect();
        shared.retain(|p| keep.contains(p));
    }
    if shared.is_empty() {
        return Ok(());
    }
    let on_shared = scoring::run_metrics(conn, source, &tagged, Some(&shared))?;
    for m in metrics.iter_mut() {
        let Some(s) = on_shared
            .iter()
            .find(|x| x.variant == m.variant && x.threshold == m.threshold)
        else {
            continue;
        };
        m.shared = s.get(goal).map(|value| analysis::metrics::SharedScore {
            metric: goal.name().to_string(),
            value,
            images: shared.len(),
        });
    }
    Ok(())
}

/// The winning (variant, threshold) under the experiment's goal, compared on the images every
/// variant shares when they were scored on different ones; ties keep the first in experiment
/// order.
pub fn best(metrics: &[VariantMetrics], exp: &Experiment) -> Option<Best> {
    let goal = exp.goal;
    let better = |a: f64, b: f64| match goal.direction {
        Direction::Maximize => a > b,
        Direction::Minimize => a < b,
    };
    let mut winner: Option<(&VariantMetrics, f64)> = None;
    for m in metrics.iter().filter(|m| m.images > 0) {
        let shared = m.shared.as_ref().map(|s| s.value);
        let Some(v) = shared.or_else(|| m.get(goal.metric)) else {
            continue;
        };
        if winner.is_none_or(|(_, w)| better(v, w)) {
            winner = Some((m, v));
        }
    }
    winner.map(|(m, v)| Best {
        variant: m.variant.clone(),
        threshold: m.threshold,
        metric: goal.metric.name().to_string(),
        value: v,
    })
}

fn new_manifest(staged: &Staged, run: &RunDir, opts: &RunOptions) -> Manifest {
    let exp = &staged.exp;
    let models = model_records(staged);
    let resolved_models: BTreeMap<String, Arc<crate::config::Model>> = exp
        .models()
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect();
    let resolved = serde_yaml::to_value(serde_json::json!({
        "experiment": exp,
        "models": resolved_models,
    }))
    .unwrap_or_default();
    Manifest {
        run_id: run.id.clone(),
        experiment: exp.name.clone(),
        experiment_file: exp.file.clone(),
        status: Status::Running,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: store::time_now().iso(),
        finished_at: None,
        pid: std::process::id(),
        host: crate::store::manifest::hostname(),
        command: opts.command.clone(),
        no_cache: opts.no_cache,
        limit: opts.limit,
        dataset: DatasetRecord {
            name: exp.dataset.name.clone(),
            file: exp.dataset.file.clone(),
            root: exp.dataset.root.clone(),
            ground_truth: exp.ground_truth.clone(),
            max_pixels: Some(exp.dataset.max_pixels),
        },
        goal: exp.goal,
        variants: exp.variants.iter().map(variant_info).collect(),
        models,
        counts: Counts::default(),
        timings: Default::default(),
        best: None,
        error: None,
        resolved,
    }
}

/// Each identified model as the manifest records it: kind, version, fingerprint and files.
fn model_records(staged: &Staged) -> BTreeMap<String, ModelRecord> {
    let exp = &staged.exp;
    exp.models()
        .iter()
        .filter_map(|m| {
            let id = staged.identities.get(&m.name)?;
            let files = id
                .files
                .iter()
                .map(|f| FileRecord {
                    role: f.role.to_string(),
                    source: f.source.clone(),
                    path: f.path.clone(),
                    blake3: f.blake3.clone(),
                    sha256: f.sha256.clone(),
                })
                .collect();
            let record = ModelRecord {
                file: m.file.clone(),
                kind: id.kind.to_string(),
                adapter_version: id.version,
                fingerprint: id.fingerprint.clone(),
                spec: id.spec.clone(),
                files,
            };
            Some((m.name.clone(), record))
        })
        .collect()
}

/// A variant as the manifest records it.
fn variant_info(v: &crate::config::Variant) -> VariantInfo {
    VariantInfo {
        name: v.name.clone(),
        model: v.model.name.clone(),
        thresholds: v.thresholds.clone(),
        score_floor: v.score_floor,
        prompt: v
            .gen
            .as_ref()
            .map(|g| crate::store::manifest::PromptRecord {
                name: g.prompt.name.clone(),
                hash: g.prompt.hash.clone(),
            }),
        params: v.gen.as_ref().map(|g| serde_json::json!(g.params)),
        repeats: v.repeats,
        score_repeats: v.score_repeats,
    }
}
