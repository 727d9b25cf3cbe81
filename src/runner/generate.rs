//! The generation step: prompted variants (LLMs and VLMs) and ensembles, after the image
//! models have run. Each cell's prompt is rendered from the image's context, sent through the
//! model's engine by a pool of workers (as many as the model allows in flight), and its
//! answer parsed into a caption or tags. Tags are mapped onto the ground-truth vocabulary and
//! post-processed; the raw answer, the prompt, the parameters and the tokens are kept in the
//! `texts` table. A call that fails or an answer that cannot be parsed is a failure: recorded,
//! never cached, never guessed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Result;
use serde_json::{json, Value};

use super::engines::Engines;
use super::Staged;
use crate::config::files::{EnsembleMethod, OutputKind};
use crate::config::{Category, Variant};
use crate::dataset::ImageEntry;
use crate::engine::{output, seed_of, Answer, Call, Context, Engine, TagScore};
use crate::plan::Cell;
use crate::store::duck::Connection;
use crate::store::writer::{FailureRow, PartWriter, TextRow};
use crate::store::RunDir;
use crate::ui;

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

/// The context of a generative variant's prompt: the image's, the variant's parameters, and
/// `inputs` (other variants' outputs, or placeholders naming them when planning).
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

/// Placeholder inputs for planning: each input variant's outputs stand for themselves.
pub fn placeholder_inputs(v: &Variant) -> Value {
    let mut m = serde_json::Map::new();
    for name in v.gen.iter().flat_map(|g| &g.inputs) {
        m.insert(
            name.clone(),
            json!({"tags": [format!("<tags of {name}>")], "caption": format!("<caption of {name}>")}),
        );
    }
    Value::Object(m)
}

/// blake3 of each generative variant's prompt for each image (the prompt part of the cache
/// key); a template that cannot render for an image gets a key of its error (the call will
/// fail the same way and be recorded).
pub fn prompt_ids(staged_without_plan: &Staged) -> HashMap<(usize, usize), String> {
    let s = staged_without_plan;
    let mut out = HashMap::new();
    for (vi, v) in s.exp.variants.iter().enumerate() {
        let Some(g) = &v.gen else { continue };
        let inputs = placeholder_inputs(v);
        for ii in 0..s.images().len() {
            let c = variant_context(s, v, ii, inputs.clone());
            let text = match (g.prompt.render(&c), g.system.as_ref().map(|t| t.render(&c))) {
                (Ok(u), None) => u,
                (Ok(u), Some(Ok(sys))) => format!("{sys}\u{0}{u}"),
                (Err(e), _) | (_, Some(Err(e))) => format!("error\u{0}{e:#}"),
            };
            out.insert((vi, ii), blake3::hash(text.as_bytes()).to_hex().to_string());
        }
    }
    out
}

/// A variant's outputs in this run: (path, repeat) → (tags with scores, caption).
pub type Outputs = HashMap<(String, u32), Output>;

/// One cell's tags with scores and caption.
pub type Output = (Vec<(String, f32)>, Option<String>);

/// Reads a variant's outputs from the run's tables (what it computed and what was copied
/// from the cache).
pub fn read_outputs(conn: &Connection<'_>, run: &RunDir, variant: &str) -> Result<Outputs> {
    crate::store::tables::open_run(conn, run)?;
    let mut out: Outputs = HashMap::new();
    let lit = crate::store::duck::lit(variant);
    conn.query(&format!(
        "SELECT path, repeat, tag, score FROM outputs WHERE variant = {lit} ORDER BY path, repeat, score DESC, tag"
    ))?
    .for_each_row(|r| {
        let key = (r.str(0)?.unwrap_or_default().to_string(), r.i64(1)?.unwrap_or(0) as u32);
        let tag = r.str(2)?.unwrap_or_default().to_string();
        let score = r.f64(3)?.unwrap_or(0.0) as f32;
        out.entry(key).or_default().0.push((tag, score));
        Ok(())
    })?;
    conn.query(&format!(
        "SELECT path, repeat, caption FROM texts WHERE variant = {lit}"
    ))?
    .for_each_row(|r| {
        let key = (
            r.str(0)?.unwrap_or_default().to_string(),
            r.i64(1)?.unwrap_or(0) as u32,
        );
        let caption = r.str(2)?.map(str::to_string);
        out.entry(key).or_default().1 = caption;
        Ok(())
    })?;
    Ok(out)
}

/// A variant's finished cells in this run: (path, repeat) → whether the output is a fallback.
pub type Finished = HashMap<(String, u32), bool>;

/// Reads which cells of `variant` finished in this run (computed or copied from the cache).
pub fn read_finished(conn: &Connection<'_>, run: &RunDir, variant: &str) -> Result<Finished> {
    crate::store::tables::open_run(conn, run)?;
    let mut out = Finished::new();
    conn.query(&format!(
        "SELECT path, repeat, bool_or(coalesce(fallback, false)) FROM cells WHERE variant = {} GROUP BY ALL",
        crate::store::duck::lit(variant)
    ))?
    .for_each_row(|r| {
        let key = (
            r.str(0)?.unwrap_or_default().to_string(),
            r.i64(1)?.unwrap_or(0) as u32,
        );
        out.insert(key, r.bool(2)?.unwrap_or(false));
        Ok(())
    })?;
    Ok(out)
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

/// Checks the inputs `names` of a cell on `path`, repeat `repeat` (an input with fewer
/// repeats gives its last).
fn input_state(
    staged: &Staged,
    names: &[String],
    finished: &BTreeMap<String, Finished>,
    path: &str,
    repeat: u32,
) -> Inputs {
    let mut state = Inputs::Ready;
    for name in names {
        let reps = staged
            .exp
            .variants
            .iter()
            .find(|x| &x.name == name)
            .map_or(1, |x| x.repeats.max(1));
        let key = (path.to_string(), repeat.min(reps - 1));
        match finished.get(name).and_then(|f| f.get(&key)) {
            None => return Inputs::Failed(name.clone()),
            Some(true) if state == Inputs::Ready => state = Inputs::Fallback(name.clone()),
            Some(_) => {}
        }
    }
    state
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

/// What a derived variant reads of its inputs (template inputs or ensemble members).
struct Derived {
    outputs: BTreeMap<String, Outputs>,
    finished: BTreeMap<String, Finished>,
}

/// What became of one answer.
struct Parsed {
    tags: Vec<TagScore>,
    caption: Option<String>,
    mapping: Option<String>,
}

/// Turns an answer into tags or a caption under the variant's output spec.
fn parse_answer(
    v: &Variant,
    text: &str,
    vocab: Option<&crate::engine::vocab::Vocabulary>,
    post: Option<&crate::textpost::Prepared>,
    keep_unmapped: bool,
) -> Result<Parsed, String> {
    let g = v.gen.as_ref().expect("generative variant");
    let (raw_tags, caption): (Vec<(String, f32)>, Option<String>) = match g.output {
        OutputKind::Caption => (Vec::new(), Some(output::parse_caption(text)?)),
        OutputKind::Tags => (
            output::parse_tags(text)?
                .into_iter()
                .map(|t| (t, 1.0))
                .collect(),
            None,
        ),
        OutputKind::Json => {
            let value = output::parse_json(text, g.schema.as_ref())?;
            let tags = match value.get("tags") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|t| match t {
                        Value::String(s) => Some((s.clone(), 1.0)),
                        Value::Object(o) => Some((
                            o.get("tag")
                                .or_else(|| o.get("name"))?
                                .as_str()?
                                .to_string(),
                            o.get("score")
                                .or_else(|| o.get("confidence"))
                                .and_then(Value::as_f64)
                                .unwrap_or(1.0) as f32,
                        )),
                        _ => None,
                    })
                    .collect(),
                Some(Value::Object(o)) => o
                    .iter()
                    .filter_map(|(k, s)| Some((k.clone(), s.as_f64()? as f32)))
                    .collect(),
                _ => Vec::new(),
            };
            let caption = value
                .get("caption")
                .and_then(Value::as_str)
                .map(str::to_string);
            if tags.is_empty() && caption.is_none() {
                return Err("the JSON answer has neither `tags` nor `caption`".into());
            }
            (tags, caption)
        }
    };
    let mut mapping = None;
    let mut tags = raw_tags;
    if let Some(vocab) = vocab {
        let raws: Vec<String> = tags.iter().map(|(t, _)| t.clone()).collect();
        let maps = vocab
            .map(&raws)
            .map_err(|e| format!("vocabulary mapping: {e:#}"))?;
        let mut mapped = Vec::new();
        for ((_, score), m) in tags.iter().zip(&maps) {
            match &m.tag {
                Some(t) => mapped.push((t.clone(), *score)),
                None if keep_unmapped => {
                    if let Some(n) = crate::tags::normalise(&m.raw) {
                        mapped.push((n, *score));
                    }
                }
                None => {}
            }
        }
        mapping = Some(serde_json::to_string(&maps).unwrap_or_default());
        tags = mapped;
    }
    let tags = match post {
        Some(p) => p.apply(tags),
        None => tags
            .into_iter()
            .filter_map(|(t, s)| Some((crate::tags::normalise(&t)?, s)))
            .collect(),
    };
    let mut seen = std::collections::HashSet::new();
    let tags = tags
        .into_iter()
        .filter(|(t, _)| seen.insert(t.clone()))
        .map(|(t, s)| TagScore {
            tag: Arc::from(t.as_str()),
            score: s.clamp(0.0, 1.0),
            category: Category::General,
        })
        .collect();
    Ok(Parsed {
        tags,
        caption,
        mapping,
    })
}

/// Runs `jobs` through `llm` with up to `llm.parallelism()` in flight; `on_done` gets each
/// result on the calling thread, in completion order.
pub fn run_calls(
    llm: &dyn Engine,
    jobs: Vec<(Call, Option<&ImageEntry>)>,
    max_pixels: u64,
    mut on_done: impl FnMut(usize, Result<Answer, (&'static str, String)>) -> Result<()>,
) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let workers = llm.capabilities().parallelism.clamp(1, jobs.len());
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
                let result = call_one(llm, call, *img, max_pixels);
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
    llm: &dyn Engine,
    call: &Call,
    img: Option<&ImageEntry>,
    max_pixels: u64,
) -> Result<Answer, (&'static str, String)> {
    let url = match img {
        Some(img) => Some(
            crate::panics::catch(|| llm.image_url(img, max_pixels).map_err(|e| e.to_string()))
                .and_then(|r| r)
                .map_err(|e| ("decode", e))?,
        ),
        None => None,
    };
    crate::panics::catch(|| {
        crate::panics::failpoint("llm.call", &call.user);
        llm.generate(call, url.as_deref())
            .map_err(|e| e.to_string())
    })
    .and_then(|r| r)
    .map_err(|e| ("call", e))
}

/// Counters the runner adds to the manifest.
#[derive(Default)]
pub struct Tally {
    pub inferences: usize,
    pub failures: usize,
}

/// Runs the misses of generative and ensemble variants, in experiment order.
#[allow(clippy::too_many_arguments)]
pub fn run_variants(
    staged: &Staged,
    run: &RunDir,
    conn: &Connection<'_>,
    writer: &mut PartWriter<'_, '_>,
    ctx: &Context,
    engines: &mut Engines,
    misses: &[&Cell],
    tally: &mut Tally,
) -> Result<()> {
    let exp = &staged.exp;
    for (vi, v) in exp.variants.iter().enumerate() {
        if v.gen.is_none() && v.ensemble.is_none() {
            continue;
        }
        let cells: Vec<&Cell> = misses.iter().copied().filter(|c| c.variant == vi).collect();
        if cells.is_empty() {
            continue;
        }
        writer.flush()?;
        let mut inputs: BTreeMap<String, Outputs> = BTreeMap::new();
        let mut finished: BTreeMap<String, Finished> = BTreeMap::new();
        let needed: Vec<String> = match (&v.gen, &v.ensemble) {
            (Some(g), _) => g.inputs.clone(),
            (_, Some(e)) => e.members.clone(),
            _ => Vec::new(),
        };
        for name in needed {
            inputs.insert(name.clone(), read_outputs(conn, run, &name)?);
            finished.insert(name.clone(), read_finished(conn, run, &name)?);
        }
        let inputs = Derived {
            outputs: inputs,
            finished,
        };
        let bar = ui::progress(cells.len() as u64, &v.name);
        if v.gen.is_some() {
            generate_variant(
                staged, run, writer, ctx, engines, v, &cells, &inputs, tally, &bar,
            )?;
        } else {
            ensemble_variant(
                staged, run, writer, ctx, engines, v, &cells, &inputs, tally, &bar,
            )?;
        }
        bar.finish_and_clear();
        writer.flush()?;
    }
    Ok(())
}

fn input_value(
    inputs: &BTreeMap<String, Outputs>,
    path: &str,
    repeat: u32,
    staged: &Staged,
) -> Value {
    let mut m = serde_json::Map::new();
    for (name, outs) in inputs {
        let reps = staged
            .exp
            .variants
            .iter()
            .find(|x| &x.name == name)
            .map_or(1, |x| x.repeats.max(1));
        let r = repeat.min(reps - 1);
        let (tags, caption) = outs
            .get(&(path.to_string(), r))
            .cloned()
            .unwrap_or_default();
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

#[allow(clippy::too_many_arguments)]
fn generate_variant(
    staged: &Staged,
    run: &RunDir,
    writer: &mut PartWriter<'_, '_>,
    ctx: &Context,
    engines: &mut Engines,
    v: &Variant,
    cells: &[&Cell],
    inputs: &Derived,
    tally: &mut Tally,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let g = v.gen.as_ref().expect("generative");
    let images = staged.images();
    let llm = engines.get(&v.model, staged, ctx)?;
    let vocab = match &g.vocabulary {
        Some(spec) => {
            let emb = match &spec.embedding {
                Some(m) => Some(engines.get(m, staged, ctx)?),
                None => None,
            };
            Some(crate::engine::vocab::Vocabulary::new(
                staged.vocabulary.clone(),
                &spec.aliases,
                emb,
                spec.threshold as f32,
            )?)
        }
        None => None,
    };
    let keep_unmapped = g.vocabulary.as_ref().is_some_and(|s| s.keep_unmapped);
    let post = match &g.postprocess {
        Some(p) => Some(p.prepare(&g.base)?),
        None => None,
    };
    let params_json = serde_json::to_string(&g.params).unwrap_or_default();
    let mut jobs = Vec::new();
    let mut job_cells = Vec::new();
    let mut job_fallback: Vec<Option<String>> = Vec::new();
    let mut prompts = Vec::new();
    for c in cells {
        let img = &images[c.image];
        let fallback = match input_state(staged, &g.inputs, &inputs.finished, &img.rel, c.repeat) {
            Inputs::Failed(name) => {
                writer.add_failure(input_failure(v, img, &name));
                tally.failures += 1;
                bar.inc(1);
                continue;
            }
            Inputs::Fallback(name) => Some(name),
            Inputs::Ready => None,
        };
        let inp = input_value(&inputs.outputs, &img.rel, c.repeat, staged);
        let context = variant_context(staged, v, c.image, inp);
        let rendered = g.prompt.render(&context).and_then(|u| {
            let sys = match &g.system {
                Some(t) => Some(t.render(&context)?),
                None => None,
            };
            Ok((sys, u))
        });
        match rendered {
            Ok((system, user)) => {
                prompts.push(user.clone());
                jobs.push((
                    Call {
                        system,
                        user,
                        image: g.image.then_some(c.image),
                        params: g.params.clone(),
                        seed: seed_of(&g.params, c.repeat),
                        choices: None,
                    },
                    g.image.then_some(img),
                ));
                job_cells.push(*c);
                job_fallback.push(fallback);
            }
            Err(e) => {
                writer.add_failure(failure(v, img, "prompt", format!("{e:#}")));
                tally.failures += 1;
                bar.inc(1);
            }
        }
    }
    let prices = llm.prices();
    run_calls(
        llm.as_ref(),
        jobs,
        staged.exp.dataset.max_pixels,
        |i, result| {
            let c = job_cells[i];
            let img = &images[c.image];
            tally.inferences += 1;
            match result {
                Ok(answer) => match crate::panics::catch(|| {
                    crate::panics::failpoint("parse", &answer.text);
                    parse_answer(
                        v,
                        &answer.text,
                        vocab.as_ref(),
                        post.as_ref(),
                        keep_unmapped,
                    )
                })
                .and_then(|r| r)
                {
                    Ok(p) => {
                        let mut row =
                            super::cell_row(staged, c, run.id.clone(), p.tags.len(), answer.ms);
                        row.fallback = job_fallback[i].is_some();
                        let text = TextRow {
                            prompt_name: g.prompt.name.clone(),
                            prompt_hash: g.prompt.hash.clone(),
                            prompt: prompts[i].clone(),
                            params: params_json.clone(),
                            raw: answer.text.clone(),
                            caption: p.caption,
                            mapping: p.mapping,
                            prompt_tokens: answer.prompt_tokens,
                            completion_tokens: answer.completion_tokens,
                            cost: answer.cost(prices),
                            finish: answer.finish.clone(),
                            attempts: answer.attempts,
                            note: job_fallback[i].as_deref().map(fallback_note),
                        };
                        writer.add_text_cell(row, p.tags, text);
                    }
                    Err(e) => {
                        let snippet: String = answer.text.chars().take(200).collect();
                        writer.add_failure(failure(
                            v,
                            img,
                            "parse",
                            format!("{e} (answer: {snippet:?})"),
                        ));
                        tally.failures += 1;
                    }
                },
                Err((stage, e)) => {
                    writer.add_failure(failure(v, img, stage, e));
                    tally.failures += 1;
                }
            }
            bar.inc(1);
            writer.maybe_flush()
        },
    )
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

#[allow(clippy::too_many_arguments)]
fn ensemble_variant(
    staged: &Staged,
    run: &RunDir,
    writer: &mut PartWriter<'_, '_>,
    ctx: &Context,
    engines: &mut Engines,
    v: &Variant,
    cells: &[&Cell],
    inputs: &Derived,
    tally: &mut Tally,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let e = v.ensemble.as_ref().expect("ensemble");
    let images = staged.images();
    // Called once every member has finished: a member with no tags gives an empty list.
    let member_outputs = |c: &Cell| -> Vec<Option<Vec<(String, f32)>>> {
        let path = &images[c.image].rel;
        e.members
            .iter()
            .map(|m| {
                let reps = staged
                    .exp
                    .variants
                    .iter()
                    .find(|x| &x.name == m)
                    .map_or(1, |x| x.repeats.max(1));
                let tags = inputs
                    .outputs
                    .get(m)
                    .and_then(|o| o.get(&(path.clone(), c.repeat.min(reps - 1))))
                    .map(|(t, _)| t.clone());
                Some(tags.unwrap_or_default())
            })
            .collect()
    };
    // Cells whose members all finished, and the member that was a fallback, if any.
    let mut ready: Vec<(&Cell, Option<String>)> = Vec::new();
    for c in cells {
        let img = &images[c.image];
        match input_state(staged, &e.members, &inputs.finished, &img.rel, c.repeat) {
            Inputs::Failed(name) => {
                writer.add_failure(input_failure(v, img, &name));
                tally.failures += 1;
                bar.inc(1);
            }
            Inputs::Fallback(name) => ready.push((c, Some(name))),
            Inputs::Ready => ready.push((c, None)),
        }
    }
    let combine = e.combine();
    let ensemble = engines.get(&v.model, staged, ctx)?;
    let to_scores = |tags: Vec<(String, f32)>| -> Vec<TagScore> {
        tags.into_iter()
            .map(|(t, s)| TagScore {
                tag: Arc::from(t.as_str()),
                score: s.clamp(0.0, 1.0),
                category: Category::General,
            })
            .collect()
    };
    if e.method != EnsembleMethod::Llm {
        for (c, fallback) in ready {
            let img = &images[c.image];
            tally.inferences += 1;
            let combined = crate::panics::catch(|| {
                ensemble
                    .combine(&combine, &member_outputs(c))
                    .map_err(|e| e.to_string())
            })
            .and_then(|r| r);
            match combined {
                Ok(tags) => {
                    let tags = to_scores(tags);
                    let mut row = super::cell_row(staged, c, run.id.clone(), tags.len(), 0.0);
                    row.fallback = fallback.is_some();
                    writer.add_cell(row, tags);
                }
                Err(err) => {
                    writer.add_failure(failure(v, img, "combine", err));
                    tally.failures += 1;
                }
            }
            bar.inc(1);
            writer.maybe_flush()?;
        }
        return Ok(());
    }
    // An LLM merge, with the union as the fallback: a fallback output is scored in this run,
    // marked (`cells.fallback`, `texts.note`), and never cached, so the next run asks again.
    let merge_model = e.merge_model.as_ref().expect("merge model");
    let template = e.merge_prompt.as_ref().expect("merge prompt");
    let llm = engines.get(merge_model, staged, ctx)?;
    let params: BTreeMap<String, Value> = merge_model.params.clone();
    let mut jobs = Vec::new();
    let mut job_cells = Vec::new();
    let mut unions = Vec::new();
    let mut prompts = Vec::new();
    for (c, input_fallback) in ready {
        let members = member_outputs(c);
        let union = ensemble.combine(&combine, &members).unwrap_or_default();
        let mut context = image_context(staged, c.image);
        context.insert(
            "members".into(),
            Value::Array(
                e.members
                    .iter()
                    .zip(&members)
                    .map(|(name, t)| json!({"variant": name, "tags": t.as_ref().map(|t| t.iter().map(|(x, _)| x.clone()).collect::<Vec<_>>())}))
                    .collect(),
            ),
        );
        match template.render(&context) {
            Ok(user) => {
                prompts.push(user.clone());
                jobs.push((
                    Call {
                        system: None,
                        user,
                        image: None,
                        params: params.clone(),
                        seed: seed_of(&params, c.repeat),
                        choices: None,
                    },
                    None,
                ));
                job_cells.push((c, input_fallback));
                unions.push(union);
            }
            Err(err) => {
                let tags = to_scores(union);
                let text = TextRow {
                    prompt_name: template.name.clone(),
                    prompt_hash: template.hash.clone(),
                    note: Some(format!(
                        "fallback: union (the merge prompt did not render: {err:#})"
                    )),
                    ..TextRow::default()
                };
                let mut row = super::cell_row(staged, c, run.id.clone(), tags.len(), 0.0);
                row.fallback = true;
                writer.add_text_cell(row, tags, text);
                bar.inc(1);
            }
        }
    }
    run_calls(
        llm.as_ref(),
        jobs,
        staged.exp.dataset.max_pixels,
        |i, result| {
            let (c, input_fallback) = &job_cells[i];
            tally.inferences += 1;
            let merged = merge_answer(result, &unions[i]);
            let note = merged
                .note
                .or_else(|| input_fallback.as_deref().map(fallback_note));
            let tags: Vec<(String, f32)> = merged
                .tags
                .into_iter()
                .filter_map(|(t, s)| Some((crate::tags::normalise(&t)?, s)))
                .collect();
            let tags = to_scores(tags);
            let a = merged.answer.unwrap_or_default();
            let text = TextRow {
                prompt_name: template.name.clone(),
                prompt_hash: template.hash.clone(),
                prompt: prompts[i].clone(),
                params: serde_json::to_string(&params).unwrap_or_default(),
                raw: merged.raw,
                caption: None,
                mapping: None,
                prompt_tokens: a.prompt_tokens,
                completion_tokens: a.completion_tokens,
                cost: a.cost(llm.prices()),
                finish: a.finish.clone(),
                attempts: a.attempts,
                note: note.clone(),
            };
            let mut row = super::cell_row(staged, c, run.id.clone(), tags.len(), a.ms);
            row.fallback = note.is_some();
            writer.add_text_cell(row, tags, text);
            bar.inc(1);
            writer.maybe_flush()
        },
    )
}

/// What an LLM merge gave: its tags, or the union when the call or its answer failed.
struct Merged {
    tags: Vec<(String, f32)>,
    raw: String,
    /// Why the union was used instead (the output is then a fallback).
    note: Option<String>,
    answer: Option<Answer>,
}

fn merge_answer(result: Result<Answer, (&'static str, String)>, union: &[(String, f32)]) -> Merged {
    let fallback = |raw: String, why: String, answer: Option<Answer>| Merged {
        tags: union.to_vec(),
        raw,
        note: Some(format!("fallback: union ({why})")),
        answer,
    };
    match result {
        Ok(a) => match crate::panics::catch(|| output::parse_tags(&a.text)).and_then(|r| r) {
            Ok(t) if !t.is_empty() => Merged {
                tags: t.into_iter().map(|x| (x, 1.0)).collect(),
                raw: a.text.clone(),
                note: None,
                answer: Some(a),
            },
            Ok(_) => fallback(
                a.text.clone(),
                "the merge answer had no tags".into(),
                Some(a),
            ),
            Err(err) => fallback(
                a.text.clone(),
                format!("the merge answer did not parse: {err}"),
                Some(a),
            ),
        },
        Err((_, err)) => fallback(String::new(), format!("the merge call failed: {err}"), None),
    }
}
