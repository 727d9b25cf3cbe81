//! `predict`: one model over loose image files, cached like any run. Hits are read from
//! earlier runs; misses are computed and stored as a run of their own (experiment
//! `predict-<model>`), so the next call finds them.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::pipeline::{self, Job, Outcome};
use crate::adapter::{self, Context};
use crate::config::resolve::{Goal, DEFAULT_MAX_PIXELS};
use crate::config::{Model, Project};
use crate::dataset::ImageEntry;
use crate::duck::{path_list, Connection};
use crate::plan::cache_key;
use crate::store::manifest::{Counts, DatasetRecord, Manifest, Status, VariantInfo};
use crate::store::writer::{self, CellRow, FailureRow, PartWriter};
use crate::store::{self, lookup};

/// Predicted (tag, score, category) triples per cache key.
type ScoresByKey = HashMap<String, Vec<(String, f32, String)>>;

/// The outcome for one image.
pub struct Predicted {
    pub file: String,
    pub hash: Option<String>,
    /// (tag, score, category), highest score first.
    pub tags: Vec<(String, f32, String)>,
    pub error: Option<String>,
}

fn entry(path: &PathBuf) -> Result<ImageEntry, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let probed = crate::imaging::probe(&bytes).ok();
    Ok(ImageEntry {
        rel: path.display().to_string(),
        abs: path.clone(),
        size: bytes.len() as u64,
        mtime_ns: 0,
        hash: blake3::hash(&bytes).to_hex().to_string(),
        format: probed.map(|p| crate::imaging::decode::format_name(p.0).to_string()),
        width: probed.map(|p| p.1),
        height: probed.map(|p| p.2),
    })
}

/// Predicts every tag score of `model` for `files`, in order.
pub fn predict(
    project: &Project,
    model: &Model,
    files: &[PathBuf],
    ctx: &Context,
) -> Result<Vec<Predicted>> {
    crate::libs::ensure_duckdb(&ctx.fetcher)?;
    let identity = adapter::identify(model, ctx, true)?.context("model identity")?;
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
    let keys: Vec<(String, String)> = images
        .iter()
        .map(|img| {
            let input = adapter::cell_input(model, img);
            let k = cache_key(&identity, &img.hash, input.as_deref(), model.score_floor, 0);
            (k.hash(), k.canonical())
        })
        .collect();
    let db = super::open_db()?;
    let conn = db.connect()?;
    let key_refs: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let hits = lookup::find_hits(&conn, &project.runs_dir(), "", &key_refs)?;
    let mut found: HashMap<String, Vec<(String, f32, String)>> = read_hits(&conn, &hits)?;
    let mut errors: HashMap<String, String> = HashMap::new();
    let misses: Vec<Job> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| !hits.contains_key(&k.0))
        .map(|(i, k)| Job {
            key: k.0.clone(),
            image: i,
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let misses: Vec<Job> = misses
        .into_iter()
        .filter(|j| seen.insert(j.key.clone()))
        .collect();
    if !misses.is_empty() {
        compute(
            project,
            model,
            &identity,
            &images,
            &keys,
            &misses,
            ctx,
            &conn,
            &mut found,
            &mut errors,
        )?;
    }
    let mut out = Vec::new();
    for (f, slot) in files.iter().zip(slots) {
        match slot {
            Err(reason) => out.push(Predicted {
                file: f.display().to_string(),
                hash: None,
                tags: Vec::new(),
                error: Some(reason),
            }),
            Ok(i) => {
                let key = &keys[i].0;
                let mut tags = found.get(key).cloned().unwrap_or_default();
                tags.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                out.push(Predicted {
                    file: f.display().to_string(),
                    hash: Some(images[i].hash.clone()),
                    error: errors.get(key).cloned(),
                    tags,
                });
            }
        }
    }
    Ok(out)
}

fn read_hits(conn: &Connection<'_>, hits: &HashMap<String, lookup::Hit>) -> Result<ScoresByKey> {
    let mut by_run: HashMap<&PathBuf, Vec<(&str, &str)>> = HashMap::new();
    for (k, h) in hits {
        by_run.entry(&h.run).or_default().push((k, &h.variant));
    }
    let mut out: HashMap<String, Vec<(String, f32, String)>> = HashMap::new();
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
                    r.str(3)?.unwrap_or_default().to_string(),
                ));
            Ok(())
        })?;
    }
    for k in hits.keys() {
        out.entry(k.clone()).or_default();
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn compute(
    project: &Project,
    model: &Model,
    identity: &adapter::Identity,
    images: &[ImageEntry],
    keys: &[(String, String)],
    jobs: &[Job],
    ctx: &Context,
    conn: &Connection<'_>,
    found: &mut HashMap<String, Vec<(String, f32, String)>>,
    errors: &mut HashMap<String, String>,
) -> Result<()> {
    let engine = adapter::load(model, identity, ctx)?;
    let run = store::create_run(&project.runs_dir(), &format!("predict-{}", model.name))?;
    let mut manifest = Manifest {
        run_id: run.id.clone(),
        experiment: format!("predict-{}", model.name),
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
        },
        goal: Goal::default(),
        variants: vec![VariantInfo {
            name: model.name.clone(),
            model: model.name.clone(),
            thresholds: Vec::new(),
            score_floor: model.score_floor,
        }],
        models: Default::default(),
        counts: Counts::default(),
        timings: Default::default(),
        best: None,
        error: None,
        resolved: serde_yaml::to_value(model).unwrap_or_default(),
    };
    manifest.write(&run.manifest_path())?;
    writer::write_table(
        conn,
        &run.file("images.parquet"),
        writer::IMAGES_SCHEMA,
        |app| {
            for img in jobs.iter().map(|j| &images[j.image]) {
                app.str(&img.rel)?
                    .str(&img.hash)?
                    .i64(img.size as i64)?
                    .opt_str(img.format.as_deref())?;
                app.null()?.null()?.bool(false)?;
                app.end_row()?;
            }
            Ok(())
        },
    )?;
    let mut w = PartWriter::new(conn, run.clone())?;
    let settings = pipeline::Settings {
        max_pixels: DEFAULT_MAX_PIXELS,
        floor: model.score_floor as f32,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let bar = crate::ui::progress(jobs.len() as u64, &model.name);
    let mut counts = Counts {
        images: jobs.len(),
        cells: jobs.len(),
        ..Counts::default()
    };
    pipeline::execute(engine.as_ref(), jobs, images, &settings, |job, outcome| {
        let img = &images[job.image];
        counts.inferences += 1;
        match outcome {
            Outcome::Done { tags, infer_ms } => {
                found.insert(
                    job.key.clone(),
                    tags.iter()
                        .map(|t| (t.tag.to_string(), t.score, t.category.as_str().to_string()))
                        .collect(),
                );
                let row = CellRow {
                    variant: model.name.clone(),
                    path: img.rel.clone(),
                    image_hash: img.hash.clone(),
                    repeat: 0,
                    cache_key: job.key.clone(),
                    key_json: keys[job.image].1.clone(),
                    origin_run: run.id.clone(),
                    n_tags: tags.len(),
                    infer_ms,
                };
                w.add_cell(row, tags);
            }
            Outcome::Failed { stage, reason } => {
                counts.failures += 1;
                errors.insert(job.key.clone(), format!("{stage}: {reason}"));
                w.add_failure(FailureRow {
                    variant: Some(model.name.clone()),
                    image_hash: Some(img.hash.clone()),
                    path: img.rel.clone(),
                    stage: stage.into(),
                    reason,
                });
            }
        }
        bar.inc(1);
        w.maybe_flush()
    })?;
    bar.finish_and_clear();
    w.flush()?;
    manifest.counts = counts;
    manifest.status = Status::Complete;
    manifest.finished_at = Some(store::time_now().iso());
    manifest.write(&run.manifest_path())?;
    Ok(())
}
