//! The generation step: prompted variants (LLMs and VLMs) and ensembles, after the image
//! models have run, in experiment order (a variant's inputs run before it).
//!
//! A prompted variant's cell is keyed by the prompt as rendered for its image (with its
//! inputs' outputs, when it has `inputs:`), the model and the parameters. What is cached is
//! the model's raw answer; this run's output form, vocabulary mapping and post-processing turn
//! it into tags or a caption ([`answer`]), whether the answer was asked now or served from an
//! earlier run. So editing `ban:` asks nothing again, and a variant whose prompt shows
//! another's tags is asked again only for the images whose prompt changed.
//!
//! An ensemble's cell is keyed by its members' outputs for the image. A call that fails or an
//! answer that cannot be parsed is a failure: recorded, never cached, never guessed. Work
//! derived from a failed input fails too (naming it); work derived from a fallback is computed
//! but not cached.

mod answer;
mod ensemble;
mod prompted;

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use serde_json::{json, Value};

use super::engines::Engines;
use super::{Key, Staged};
use crate::config::Variant;
use crate::dataset::ImageEntry;
use crate::engine::{Answer, Call, Context, Engine};
use crate::plan::{key, Cell};
use crate::store::duck::Connection;
use crate::store::lookup::{self, Scope};
use crate::store::reads::{self, Finished, Outputs};
use crate::store::writer::{FailureRow, PartWriter};
use crate::store::RunDir;

/// The variables a prompt template sees for one image (documented in docs/prompts.md).
pub fn image_context(staged: &Staged, ii: usize) -> serde_json::Map<String, Value> {
    let img = &staged.images()[ii];
    let (folder, name) = img.rel.rsplit_once('/').unwrap_or(("", img.rel.as_str()));
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let truth = staged.truth(ii);
    let meta = img
        .meta
        .as_deref()
        .map(|m| serde_json::to_value(m).unwrap_or_default())
        .unwrap_or_else(|| json!({}));
    let mut c = serde_json::Map::new();
    c.insert("file".into(), json!(img.rel));
    c.insert("name".into(), json!(name));
    c.insert("stem".into(), json!(stem));
    c.insert("folder".into(), json!(folder));
    c.insert("width".into(), json!(img.width));
    c.insert("height".into(), json!(img.height));
    c.insert("meta".into(), meta);
    c.insert("truth".into(), json!(truth.unwrap_or(&[])));
    c.insert("truth_text".into(), json!(truth.unwrap_or(&[]).join(", ")));
    c.insert("vocabulary".into(), json!(staged.vocabulary));
    c
}

/// The context of a prompted variant's prompt: the image's, the variant's parameters, and
/// `inputs` (other variants' outputs for the image).
pub fn variant_context(
    staged: &Staged,
    v: &Variant,
    ii: usize,
    inputs: Value,
) -> serde_json::Map<String, Value> {
    let mut c = image_context(staged, ii);
    let g = v.gen.as_ref().expect("generative variant");
    c.insert("variant".into(), json!(v.name));
    c.insert("params".into(), json!(g.params));
    c.insert("inputs".into(), inputs);
    c
}

/// A variant's prompt for one image: (system, user), rendered in `context`.
fn render(
    v: &Variant,
    context: &serde_json::Map<String, Value>,
) -> Result<(Option<String>, String)> {
    let g = v.gen.as_ref().expect("generative variant");
    let user = g.prompt.render(context)?;
    let system = match &g.system {
        Some(t) => Some(t.render(context)?),
        None => None,
    };
    Ok((system, user))
}

/// [`key::prompt_id`] of each prompted variant's prompt for each image, for the variants
/// keyed before anything runs (those without `inputs:`). A template that cannot render for an
/// image gets an id of its error: the call fails the same way and is recorded.
pub fn prompt_ids(staged_without_plan: &Staged) -> HashMap<(usize, usize), String> {
    let s = staged_without_plan;
    let mut out = HashMap::new();
    for (vi, v) in s.exp.variants.iter().enumerate() {
        if v.gen.is_none() || crate::plan::derived(v) {
            continue;
        }
        for ii in 0..s.images().len() {
            let c = variant_context(s, v, ii, json!({}));
            let id = match render(v, &c) {
                Ok((system, user)) => key::prompt_id(system.as_deref(), &user),
                Err(e) => key::digest(&format!("error\u{0}{e:#}")),
            };
            out.insert((vi, ii), id);
        }
    }
    out
}

/// The state of a derived cell's inputs (template inputs or ensemble members).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inputs {
    /// Every input has an output.
    Ready,
    /// This input has no output for the image: it failed, so the derived cell fails too.
    Failed(String),
    /// This input's output is a fallback: the derived cell is computed but not cached.
    Fallback(String),
}

/// What a derived variant reads of its inputs (template inputs or ensemble members), in this
/// run.
struct Derived {
    outputs: BTreeMap<String, Outputs>,
    finished: BTreeMap<String, Finished>,
}

impl Derived {
    /// Reads the outputs of `names` committed so far in `run`.
    fn read(conn: &Connection<'_>, run: &RunDir, names: &[String]) -> Result<Derived> {
        let mut d = Derived {
            outputs: BTreeMap::new(),
            finished: BTreeMap::new(),
        };
        for name in names {
            d.outputs
                .insert(name.clone(), reads::outputs(conn, run, name)?);
            d.finished
                .insert(name.clone(), reads::finished(conn, run, name)?);
        }
        Ok(d)
    }

    /// The (path, repeat) an input is read at: an input with fewer repeats gives its last.
    fn at(staged: &Staged, name: &str, path: &str, repeat: u32) -> (String, u32) {
        let reps = staged
            .exp
            .variants
            .iter()
            .find(|x| x.name == name)
            .map_or(1, |x| x.repeats.max(1));
        (path.to_string(), repeat.min(reps - 1))
    }

    /// The state of inputs `names` for a cell on `path`, repeat `repeat`.
    fn state(&self, staged: &Staged, names: &[String], path: &str, repeat: u32) -> Inputs {
        let mut state = Inputs::Ready;
        for name in names {
            let at = Self::at(staged, name, path, repeat);
            match self.finished.get(name).and_then(|f| f.get(&at)) {
                None => return Inputs::Failed(name.clone()),
                Some(true) if state == Inputs::Ready => state = Inputs::Fallback(name.clone()),
                Some(_) => {}
            }
        }
        state
    }

    /// Input `name`'s output for a cell (empty when it has none).
    fn output(&self, staged: &Staged, name: &str, path: &str, repeat: u32) -> reads::Output {
        self.outputs
            .get(name)
            .and_then(|o| o.get(&Self::at(staged, name, path, repeat)))
            .cloned()
            .unwrap_or_default()
    }

    /// `inputs` as a prompt template sees them for a cell.
    fn template_value(&self, staged: &Staged, path: &str, repeat: u32) -> Value {
        let mut m = serde_json::Map::new();
        for name in self.outputs.keys() {
            let (tags, caption) = self.output(staged, name, path, repeat);
            m.insert(
                name.clone(),
                json!({
                    "tags": tags.iter().map(|(t, _)| t).collect::<Vec<_>>(),
                    "scores": tags.iter().map(|(t, s)| json!({"tag": t, "score": s})).collect::<Vec<_>>(),
                    "caption": caption,
                }),
            );
        }
        Value::Object(m)
    }
}

/// The failure of a cell whose input has no output.
fn input_failure(v: &Variant, img: &ImageEntry, input: &str) -> FailureRow {
    failure(
        v,
        img,
        "input",
        format!("input `{input}` has no output for this image (it failed); nothing was computed from it"),
    )
}

/// The note of an output computed from a fallback input.
fn fallback_note(input: &str) -> String {
    format!("computed from input `{input}`, whose output is a fallback: not cached")
}

fn failure(v: &Variant, img: &ImageEntry, stage: &str, reason: String) -> FailureRow {
    FailureRow {
        variant: Some(v.name.clone()),
        image_hash: Some(img.hash.clone()),
        path: img.rel.clone(),
        stage: stage.to_string(),
        reason,
    }
}

/// The cells that share one key: computed (or served) once, written for each. Each cell
/// carries the input that was a fallback, if any.
struct Group<'a, T> {
    key: Key,
    cells: Vec<(&'a Cell, Option<String>)>,
    /// What the key's work needs (a call, member outputs).
    work: T,
}

/// Cells grouped by key, in first-seen order.
struct Groups<'a, T>(Vec<Group<'a, T>>);

impl<'a, T> Groups<'a, T> {
    /// Adds a cell under `key`; `work` is built only for a new key.
    fn add(
        &mut self,
        index: &mut HashMap<String, usize>,
        key: Key,
        cell: (&'a Cell, Option<String>),
        work: impl FnOnce() -> T,
    ) {
        match index.get(&key.hash) {
            Some(&i) => self.0[i].cells.push(cell),
            None => {
                index.insert(key.hash.clone(), self.0.len());
                self.0.push(Group {
                    key,
                    cells: vec![cell],
                    work: work(),
                });
            }
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|g| g.key.hash.as_str()).collect()
    }
}

/// Counters the runner adds to the manifest.
#[derive(Default)]
pub struct Tally {
    /// Calls made (or combinations computed) now.
    pub inferences: usize,
    pub failures: usize,
    /// Cells served from earlier work (earlier runs, or earlier variants of this run).
    pub cache_hits: usize,
    /// Cells that shared a key computed now for another cell.
    pub shared: usize,
}

/// What the generation step works with.
pub struct Step<'a, 'c, 'db> {
    pub staged: &'a Staged,
    pub run: &'a RunDir,
    pub conn: &'c Connection<'db>,
    pub writer: &'a mut PartWriter<'c, 'db>,
    pub ctx: &'a Context,
    pub engines: &'a mut Engines,
    pub no_cache: bool,
    pub tally: Tally,
}

impl Step<'_, '_, '_> {
    /// Whether a derived cell can be computed: `None` when one of its `inputs` has no output
    /// for the image (the cell's failure is recorded, naming it), else the input whose
    /// output is a fallback, if any.
    fn inputs_ready(
        &mut self,
        v: &Variant,
        inputs: &Derived,
        names: &[String],
        c: &Cell,
        bar: &indicatif::ProgressBar,
    ) -> Option<Option<String>> {
        let img = &self.staged.images()[c.image];
        match inputs.state(self.staged, names, &img.rel, c.repeat) {
            Inputs::Failed(name) => {
                self.writer.add_failure(input_failure(v, img, &name));
                self.tally.failures += 1;
                bar.inc(1);
                None
            }
            Inputs::Fallback(name) => Some(Some(name)),
            Inputs::Ready => Some(None),
        }
    }

    /// Where this step looks keys up: every run, this one included (an earlier variant of
    /// this run may have done the same work); with `--no-cache`, this run alone.
    fn scope(&self) -> Scope<'_> {
        if self.no_cache {
            Scope::Only(&self.run.id)
        } else {
            Scope::Except("")
        }
    }

    fn runs_dir(&self) -> &std::path::Path {
        self.run.path.parent().unwrap_or(&self.run.path)
    }

    /// Looks `keys` up.
    fn hits(&self, keys: &[&str]) -> Result<HashMap<String, lookup::Hit>> {
        lookup::find_hits(self.conn, self.runs_dir(), self.scope(), keys)
    }

    /// Records a failure of every cell of a group.
    fn fail_group<T>(&mut self, v: &Variant, g: &Group<'_, T>, stage: &str, reason: &str) {
        for (c, _) in &g.cells {
            let img = &self.staged.images()[c.image];
            self.writer
                .add_failure(failure(v, img, stage, reason.to_string()));
            self.tally.failures += 1;
        }
    }

    /// Runs every prompted variant and ensemble, in experiment order.
    pub fn run_variants(&mut self) -> Result<()> {
        let staged = self.staged;
        for (vi, v) in staged.exp.variants.iter().enumerate() {
            if v.gen.is_none() && v.ensemble.is_none() {
                continue;
            }
            let cells: Vec<&Cell> = staged
                .plan
                .cells
                .iter()
                .filter(|c| c.variant == vi)
                .collect();
            if cells.is_empty() {
                continue;
            }
            self.writer.flush()?;
            let bar = crate::ui::progress(cells.len() as u64, &v.name);
            if v.gen.is_some() {
                self.prompted(v, &cells, &bar)?;
            } else {
                self.ensemble(v, &cells, &bar)?;
            }
            bar.finish_and_clear();
            self.writer.flush()?;
        }
        Ok(())
    }
}

/// Runs `jobs` through `engine` with up to its parallelism in flight; `on_done` gets each
/// result on the calling thread, in completion order.
pub fn run_calls(
    engine: &dyn Engine,
    jobs: Vec<(Call, Option<&ImageEntry>)>,
    max_pixels: u64,
    mut on_done: impl FnMut(usize, Result<Answer, (&'static str, String)>) -> Result<()>,
) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let workers = engine.capabilities().parallelism.clamp(1, jobs.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..workers {
            let tx = tx.clone();
            let (jobs, next, stop) = (&jobs, &next, &stop);
            s.spawn(move || loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((call, img)) = jobs.get(i) else {
                    break;
                };
                let result = call_one(engine, call, *img, max_pixels);
                if tx.send((i, result)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, r) in rx.iter() {
            if let Err(e) = on_done(i, r) {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    })
}

/// One call: the image read and encoded (when sent), then the model asked. A panic in
/// either is a failure of that stage.
fn call_one(
    engine: &dyn Engine,
    call: &Call,
    img: Option<&ImageEntry>,
    max_pixels: u64,
) -> Result<Answer, (&'static str, String)> {
    let url = match img {
        Some(img) => Some(
            crate::panics::catch(|| engine.image_url(img, max_pixels).map_err(|e| e.to_string()))
                .and_then(|r| r)
                .map_err(|e| ("decode", e))?,
        ),
        None => None,
    };
    crate::panics::catch(|| {
        crate::panics::failpoint("llm.call", &call.user);
        engine
            .generate(call, url.as_deref())
            .map_err(|e| e.to_string())
    })
    .and_then(|r| r)
    .map_err(|e| ("call", e))
}
