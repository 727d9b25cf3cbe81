//! The inference pipeline for one engine: worker threads read, verify, decode and prepare
//! images in parallel while the calling thread batches the prepared inputs through the
//! engine and hands each outcome to a callback. A bounded channel keeps memory flat
//! whatever the number of images.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Result;

use crate::dataset::ImageEntry;
use crate::engine::{Engine, EngineError, Prepared, Region, TagScore, Vector};

/// One distinct cache key to compute.
#[derive(Debug, Clone)]
pub struct Job {
    pub key: String,
    pub image: usize,
}

/// What happened to a job.
#[derive(Debug)]
pub enum Outcome {
    Done {
        tags: Vec<TagScore>,
        /// The regions the tags came from (a detector's faces); empty for other engines.
        regions: Vec<Region>,
        infer_ms: f64,
    },
    /// A vector engine's output (perceptual hashes, an embedding).
    Vector {
        vector: Vector,
        infer_ms: f64,
    },
    Failed {
        stage: &'static str,
        reason: String,
    },
}

/// Settings of one pipeline pass.
pub struct Settings {
    pub max_pixels: u64,
    pub floor: f32,
    pub workers: usize,
    /// Where to cache report thumbnails of the images decoded (`.iw-lab/thumbs`), if anywhere.
    pub thumbs: Option<std::path::PathBuf>,
    /// Whether the pass wants a vector per image ([`Engine::vectors`]) rather than tags (an
    /// engine may do both: a zero-shot CLIP model).
    pub vectors: bool,
}

/// Reads, decodes and prepares one image; a panic anywhere in it is a failure of the stage
/// it happened in.
fn prepare_one(
    engine: &dyn Engine,
    img: &ImageEntry,
    settings: &Settings,
) -> Result<Prepared, (&'static str, String)> {
    let stage = std::cell::Cell::new("read");
    crate::panics::catch(|| prepare_stages(engine, img, settings, &stage))
        .unwrap_or_else(|panic| Err((stage.get(), panic)))
}

fn prepare_stages(
    engine: &dyn Engine,
    img: &ImageEntry,
    settings: &Settings,
    stage: &std::cell::Cell<&'static str>,
) -> Result<Prepared, (&'static str, String)> {
    let max_pixels = settings.max_pixels;
    if !engine.capabilities().needs_pixels {
        stage.set("prepare");
        crate::panics::failpoint("engine.prepare", &img.rel);
        return engine
            .prepare(img, None)
            .map_err(|e| ("prepare", e.to_string()));
    }
    let bytes = img.read_verified().map_err(|e| ("read", e))?;
    stage.set("decode");
    let rgb =
        crate::imaging::decode_rgb(&bytes, max_pixels).map_err(|e| ("decode", e.to_string()))?;
    drop(bytes);
    if let Some(dir) = &settings.thumbs {
        crate::imaging::thumbs::store(dir, &img.hash, &rgb, crate::imaging::thumbs::DEFAULT_SIZE);
    }
    stage.set("prepare");
    crate::panics::failpoint("engine.prepare", &img.rel);
    engine
        .prepare_owned(img, rgb)
        .map_err(|e| ("prepare", e.to_string()))
}

/// Runs `jobs` through `engine`, calling `on_done` for each (in completion order).
/// An error from `on_done` stops the pass and is returned.
pub fn execute(
    engine: &dyn Engine,
    jobs: &[Job],
    images: &[ImageEntry],
    settings: &Settings,
    mut on_done: impl FnMut(&Job, Outcome) -> Result<()>,
) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let max_batch = engine.capabilities().max_batch.max(1);
    let workers = settings.workers.clamp(1, jobs.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::bounded::<(usize, Result<Prepared, (&'static str, String)>)>(
        max_batch * 2 + workers,
    );
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let prepared = prepare_one(engine, &images[job.image], settings);
                if tx.send((i, prepared)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut batch: Vec<(usize, Prepared)> = Vec::with_capacity(max_batch);
        let pass = Pass {
            engine,
            jobs,
            images,
            settings,
        };
        let result = (|| -> Result<()> {
            for (i, prepared) in rx.iter() {
                match prepared {
                    Ok(p) => {
                        batch.push((i, p));
                        if batch.len() >= max_batch {
                            pass.run_batch(&mut batch, &mut on_done)?;
                        }
                    }
                    Err((stage, reason)) => on_done(&jobs[i], Outcome::Failed { stage, reason })?,
                }
            }
            pass.run_batch(&mut batch, &mut on_done)
        })();
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
            for _ in rx.iter() {}
        }
        result
    })
}

/// One pass's inputs, for running its batches.
struct Pass<'a> {
    engine: &'a dyn Engine,
    jobs: &'a [Job],
    images: &'a [ImageEntry],
    settings: &'a Settings,
}

impl Pass<'_> {
    /// Runs the prepared inputs of `batch` through the engine and hands each outcome on. A
    /// panic in the engine fails the batch's cells, not the run.
    fn run_batch(
        &self,
        batch: &mut Vec<(usize, Prepared)>,
        on_done: &mut dyn FnMut(&Job, Outcome) -> Result<()>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (idx, inputs): (Vec<usize>, Vec<Prepared>) = batch.drain(..).unzip();
        let start = Instant::now();
        let n = idx.len();
        let vectors = self.settings.vectors;
        let outcomes: Vec<Result<Outcome, EngineError>> = crate::panics::catch(|| {
            for &i in &idx {
                crate::panics::failpoint("engine.infer", &self.images[self.jobs[i].image].rel);
            }
            if vectors {
                let r = self.engine.vectors(inputs);
                let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
                r.into_iter()
                    .map(|r| {
                        r.map(|vector| Outcome::Vector {
                            vector,
                            infer_ms: ms,
                        })
                    })
                    .collect()
            } else {
                let r = self.engine.detect(inputs, self.settings.floor);
                let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
                r.into_iter()
                    .map(|r| {
                        r.map(|d| Outcome::Done {
                            tags: d.tags,
                            regions: d.regions,
                            infer_ms: ms,
                        })
                    })
                    .collect()
            }
        })
        .unwrap_or_else(|panic| {
            (0..n)
                .map(|_| Err(EngineError::Model(panic.clone())))
                .collect()
        });
        let mut outcomes = outcomes;
        outcomes.resize_with(n, || {
            Err(EngineError::Model("the engine gave no result".into()))
        });
        for (i, r) in idx.into_iter().zip(outcomes) {
            let outcome = r.unwrap_or_else(|e| Outcome::Failed {
                stage: "infer",
                reason: e.to_string(),
            });
            on_done(&self.jobs[i], outcome)?;
        }
        Ok(())
    }
}
