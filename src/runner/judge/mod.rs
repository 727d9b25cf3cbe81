//! Judges: after the variants, each judge scores the outputs of the variants it judges.
//! LLM judges get a rubric rendered with the output (and the image for vision judges) and
//! answer with a named choice or a number on a scale; embedding judges score a caption's
//! cosine similarity to a reference. A verdict that does not parse is stored as invalid and
//! counted, never scored. Verdicts are cached by a key over the judge model, the rendered
//! rubric, the image (when sent), the parameters and the side; failed calls are failures,
//! never cached. Pairwise judges compare each variant with a baseline in both orders.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::{json, Value};

mod summary;

pub use summary::summarise;

use super::engines::Engines;
use super::generate::{self, image_context};
use super::Staged;
use crate::config::files::Reference;
use crate::config::{Judge, Verdict};
use crate::engine::{output, seed_of, Call, Context, Engine};
use crate::plan::key;
use crate::store::duck::Connection;
use crate::store::judgments::{Judgment as Row, JudgmentWriter};
use crate::store::writer::FailureRow;
use crate::store::{lookup, reads, RunDir};
use crate::ui;

/// Counters for the manifest.
#[derive(Default)]
pub struct Judged {
    pub inferences: usize,
    pub failures: usize,
    pub cached: usize,
}

/// A judged cell: variant, image, repeat, its key, and its output.
struct Target {
    variant: String,
    image: usize,
    repeat: u32,
    key: String,
    tags: Vec<String>,
    caption: Option<String>,
}

fn output_text(t: &Target) -> String {
    t.caption.clone().unwrap_or_else(|| t.tags.join(", "))
}

/// The judged cells of `variant` in this run, with their outputs.
fn targets(
    staged: &Staged,
    conn: &Connection<'_>,
    run: &RunDir,
    variant: &str,
) -> Result<Vec<Target>> {
    let outs = reads::outputs(conn, run, variant)?;
    let by_path = staged.index_by_path();
    let mut out = Vec::new();
    for (path, repeat, key) in reads::cells(conn, run, variant)? {
        let Some(&image) = by_path.get(path.as_str()) else {
            continue;
        };
        let (tags, caption) = outs.get(&(path, repeat)).cloned().unwrap_or_default();
        out.push(Target {
            variant: variant.to_string(),
            image,
            repeat,
            key,
            tags: tags.into_iter().map(|(t, _)| t).collect(),
            caption,
        });
    }
    Ok(out)
}

/// Normalises a verdict to 0–1.
fn parse_verdict(verdict: &Verdict, text: &str) -> Result<(String, f64), String> {
    match verdict {
        Verdict::Choices(choices) => {
            let (label, v) = output::parse_choice(text, choices)?;
            let lo = choices.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
            let hi = choices
                .iter()
                .map(|c| c.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let s = if hi > lo { (v - lo) / (hi - lo) } else { v };
            Ok((label, s))
        }
        Verdict::Scale { min, max } => {
            let x = output::parse_scale(text, *min, *max)?;
            Ok((format!("{x}"), (x - min) / (max - min)))
        }
        Verdict::Similarity => Err("not an LLM verdict".into()),
    }
}

/// Targets are judged in chunks of this many: prompts are rendered, looked up and asked
/// chunk by chunk, so memory does not grow with the number of verdicts.
const CHUNK: usize = 256;

/// Runs every judge; verdicts and failures are committed as they arrive.
pub fn run_judges(
    staged: &Staged,
    run: &RunDir,
    conn: &Connection<'_>,
    ctx: &Context,
    engines: &mut Engines,
    no_cache: bool,
) -> Result<Judged> {
    let mut tally = Judged::default();
    let mut out = JudgmentWriter::new(conn, run.clone());
    for judge in &staged.exp.judges {
        let mut targets: Vec<Target> = Vec::new();
        for v in &judge.variants {
            targets.extend(self::targets(staged, conn, run, v)?);
        }
        let mut j = JudgeRun {
            staged,
            run,
            conn,
            judge,
            no_cache,
            out: &mut out,
            tally: &mut tally,
        };
        match judge.verdict {
            Verdict::Similarity => j.similarity(ctx, engines, &targets)?,
            _ => j.llm(ctx, engines, &targets)?,
        }
        out.flush()?;
    }
    Ok(tally)
}

/// One judge at work.
struct JudgeRun<'a, 'c, 'db> {
    staged: &'a Staged,
    run: &'a RunDir,
    conn: &'c Connection<'db>,
    judge: &'a Judge,
    no_cache: bool,
    out: &'a mut JudgmentWriter<'c, 'db>,
    tally: &'a mut Judged,
}

/// One question for a judge: a target, the side (pairwise: `ab` or `ba`), the rendered
/// prompt (for similarity judges, the reference) and the cache key.
struct Task {
    target: usize,
    side: String,
    prompt: String,
    key: String,
}

impl JudgeRun<'_, '_, '_> {
    fn runs_dir(&self) -> &std::path::Path {
        self.run.path.parent().unwrap_or(&self.run.path)
    }

    fn hits(&self, tasks: &[Task]) -> Result<HashMap<String, lookup::CachedVerdict>> {
        if self.no_cache {
            return Ok(HashMap::new());
        }
        let keys: Vec<&str> = tasks.iter().map(|t| t.key.as_str()).collect();
        let scope = lookup::Scope::Except(&self.run.id);
        lookup::find_verdicts(self.conn, self.runs_dir(), scope, &keys)
    }

    /// The row of a task, before its verdict.
    fn base_row(&self, t: &Target, task: &Task) -> Row {
        let img = &self.staged.images()[t.image];
        Row {
            judge: self.judge.name.clone(),
            variant: t.variant.clone(),
            path: img.rel.clone(),
            image_hash: img.hash.clone(),
            repeat: t.repeat,
            target_key: t.key.clone(),
            cache_key: task.key.clone(),
            side: task.side.clone(),
            prompt: task.prompt.clone(),
            origin_run: self.run.id.clone(),
            ..Row::default()
        }
    }

    /// Serves the cached tasks; returns the rest.
    fn serve_cached(&mut self, targets: &[Target], tasks: Vec<Task>) -> Result<Vec<Task>> {
        let hits = self.hits(&tasks)?;
        let mut misses = Vec::new();
        for task in tasks {
            let Some(h) = hits.get(&task.key) else {
                misses.push(task);
                continue;
            };
            self.tally.cached += 1;
            let base = self.base_row(&targets[task.target], &task);
            self.out.push(Row {
                raw: h.raw.clone(),
                verdict: h.verdict.clone(),
                score: h.score,
                valid: true,
                prompt_tokens: h.prompt_tokens,
                completion_tokens: h.completion_tokens,
                ms: h.ms,
                origin_run: h.origin_run.clone(),
                ..base
            });
        }
        self.out.maybe_flush()?;
        Ok(misses)
    }

    /// An embedding judge: cosine similarity of each output to its reference, cached by a key
    /// over the model, the output and the reference.
    fn similarity(
        &mut self,
        ctx: &Context,
        engines: &mut Engines,
        targets: &[Target],
    ) -> Result<()> {
        let judge = self.judge;
        let identity = &self.staged.identities[&judge.model.name];
        let bar = ui::progress(targets.len() as u64, &format!("judge {}", judge.name));
        for (c, chunk) in targets.chunks(CHUNK).enumerate() {
            let mut tasks = Vec::new();
            for (k, t) in chunk.iter().enumerate() {
                let img = &self.staged.images()[t.image];
                let reference = match judge.reference {
                    Reference::Truth => self.staged.truth(t.image).map(|tags| tags.join(", ")),
                    Reference::Prompt => img.meta.as_ref().and_then(|m| m.prompt.clone()),
                };
                let Some(r) = reference.filter(|r| !r.trim().is_empty()) else {
                    bar.inc(1);
                    continue;
                };
                let asked = json!({"output": output_text(t), "reference": r});
                let key = key::verdict(identity, judge, &asked, None, "").hash();
                tasks.push(Task {
                    target: c * CHUNK + k,
                    side: String::new(),
                    prompt: r,
                    key,
                });
            }
            let asked = tasks.len();
            let misses = self.serve_cached(targets, tasks)?;
            bar.inc((asked - misses.len()) as u64);
            if misses.is_empty() {
                continue;
            }
            let emb = engines.get(&judge.model, self.staged, ctx)?;
            let mut texts: Vec<String> = misses
                .iter()
                .map(|t| output_text(&targets[t.target]))
                .collect();
            texts.extend(misses.iter().map(|t| t.prompt.clone()));
            let all: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vecs =
                crate::panics::catch(|| emb.embed(&all).map_err(|e| e.to_string())).and_then(|r| r);
            let vecs = match vecs {
                Ok(v) => v,
                Err(e) => {
                    for task in &misses {
                        let t = &targets[task.target];
                        self.out
                            .fail(jfail(judge, t, self.staged, "embed", format!("{e:#}")));
                        self.tally.failures += 1;
                        bar.inc(1);
                    }
                    self.out.maybe_flush()?;
                    continue;
                }
            };
            let n = misses.len();
            for (k, task) in misses.iter().enumerate() {
                let t = &targets[task.target];
                let sim = crate::engine::embedding::cosine(&vecs[k], &vecs[k + n]) as f64;
                self.tally.inferences += 1;
                let base = self.base_row(t, task);
                self.out.push(Row {
                    raw: format!("{sim:.6}"),
                    verdict: Some("similarity".into()),
                    score: Some(sim),
                    valid: sim.is_finite(),
                    ..base
                });
                bar.inc(1);
            }
            self.out.maybe_flush()?;
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// The prompts of a chunk of targets (pairwise judges: both orders against the
    /// baseline); a rubric that does not render is a failure of that target.
    fn tasks(
        &mut self,
        targets: &[Target],
        first: usize,
        baseline: Option<&HashMap<(usize, u32), Target>>,
    ) -> Vec<Task> {
        let judge = self.judge;
        let rubric = judge.rubric.as_ref().expect("llm judge rubric");
        let identity = &self.staged.identities[&judge.model.name];
        let images = self.staged.images();
        let mut out = Vec::new();
        for (k, t) in targets.iter().enumerate() {
            let mut c = image_context(self.staged, t.image);
            c.insert("variant".into(), json!(t.variant));
            c.insert("caption".into(), json!(t.caption));
            c.insert("tags".into(), json!(t.tags));
            c.insert("tags_text".into(), json!(t.tags.join(", ")));
            c.insert("output".into(), json!(output_text(t)));
            let sides: Vec<(&str, serde_json::Map<String, Value>)> = match baseline {
                None => vec![("", c)],
                Some(base) => {
                    if Some(&t.variant) == judge.pairwise.as_ref() {
                        continue;
                    }
                    let Some(b) = base
                        .get(&(t.image, t.repeat))
                        .or_else(|| base.get(&(t.image, 0)))
                    else {
                        continue;
                    };
                    ["ab", "ba"]
                        .into_iter()
                        .map(|side| {
                            let (a, bb) = if side == "ab" { (t, b) } else { (b, t) };
                            let mut c = c.clone();
                            c.insert("a".into(), json!(output_text(a)));
                            c.insert("b".into(), json!(output_text(bb)));
                            (side, c)
                        })
                        .collect()
                }
            };
            for (side, c) in sides {
                match rubric.render(&c) {
                    Ok(prompt) => {
                        let image = judge.image.then(|| images[t.image].hash.as_str());
                        let key = key::verdict(identity, judge, &json!(prompt), image, side).hash();
                        out.push(Task {
                            target: first + k,
                            side: side.to_string(),
                            prompt,
                            key,
                        });
                    }
                    Err(e) => {
                        self.out
                            .fail(jfail(judge, t, self.staged, "rubric", format!("{e:#}")));
                        self.tally.failures += 1;
                    }
                }
            }
        }
        out
    }

    /// An LLM judge: cached verdicts served, the rest asked chunk by chunk.
    fn llm(&mut self, ctx: &Context, engines: &mut Engines, targets: &[Target]) -> Result<()> {
        let judge = self.judge;
        let baseline: Option<HashMap<(usize, u32), Target>> = match &judge.pairwise {
            Some(b) => Some(
                self::targets(self.staged, self.conn, self.run, b)?
                    .into_iter()
                    .map(|t| ((t.image, t.repeat), t))
                    .collect(),
            ),
            None => None,
        };
        let sides = if baseline.is_some() { 2 } else { 1 };
        let bar = ui::progress(
            (targets.len() * sides) as u64,
            &format!("judge {}", judge.name),
        );
        for (c, chunk) in targets.chunks(CHUNK).enumerate() {
            let tasks = self.tasks(chunk, c * CHUNK, baseline.as_ref());
            let asked = tasks.len();
            let misses = self.serve_cached(targets, tasks)?;
            bar.inc((asked - misses.len()) as u64);
            if misses.is_empty() {
                continue;
            }
            let model = engines.get(&judge.model, self.staged, ctx)?;
            self.ask(model.as_ref(), targets, misses, &bar)?;
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Asks the judge model `tasks`; each verdict (or failure) is written as it arrives.
    fn ask(
        &mut self,
        model: &dyn Engine,
        targets: &[Target],
        tasks: Vec<Task>,
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        let judge = self.judge;
        let images = self.staged.images();
        let jobs: Vec<(Call, Option<&crate::dataset::ImageEntry>)> = tasks
            .iter()
            .map(|task| {
                let t = &targets[task.target];
                (
                    Call {
                        system: None,
                        user: task.prompt.clone(),
                        image: judge.image.then_some(t.image),
                        params: judge.params.clone(),
                        seed: seed_of(&judge.params, 0),
                        choices: match &judge.verdict {
                            Verdict::Choices(c) if judge.likelihood => {
                                Some(c.iter().map(|(name, _)| name.clone()).collect())
                            }
                            _ => None,
                        },
                    },
                    judge.image.then_some(&images[t.image]),
                )
            })
            .collect();
        let max_pixels = self.staged.exp.dataset.max_pixels;
        generate::run_calls(model, jobs, max_pixels, |i, result| {
            let task = &tasks[i];
            let t = &targets[task.target];
            self.tally.inferences += 1;
            match result {
                Ok(a) => {
                    let row = verdict_row(judge, self.base_row(t, task), a);
                    self.out.push(row);
                }
                Err((stage, e)) => {
                    self.out.fail(jfail(judge, t, self.staged, stage, e));
                    self.tally.failures += 1;
                }
            }
            bar.inc(1);
            self.out.maybe_flush()
        })
    }
}

/// A verdict row from an answer: parsed (a panic in the parser is an invalid verdict), scored
/// 0–1, and for pairwise judges turned into the judged variant's score.
fn verdict_row(judge: &Judge, base: Row, a: crate::engine::Answer) -> Row {
    let parsed = crate::panics::catch(|| parse_verdict(&judge.verdict, &a.text)).and_then(|r| r);
    let (verdict, score, valid, error) = match parsed {
        Ok((label, s)) => (Some(label), Some(s), true, None),
        Err(e) => (None, None, false, Some(e)),
    };
    // A choice by likelihood keeps every choice's log-probability.
    let raw = if judge.likelihood {
        format!("{} ({})", a.text, a.finish)
    } else {
        a.text
    };
    let mut row = Row {
        raw,
        verdict,
        score,
        valid,
        error,
        prompt_tokens: a.prompt_tokens,
        completion_tokens: a.completion_tokens,
        ms: a.ms,
        ..base
    };
    if judge.pairwise.is_some() && row.valid {
        row.score = Some(pairwise_score(&row));
    }
    row
}

fn jfail(judge: &Judge, t: &Target, staged: &Staged, stage: &str, reason: String) -> FailureRow {
    let img = &staged.images()[t.image];
    FailureRow {
        variant: Some(t.variant.clone()),
        image_hash: Some(img.hash.clone()),
        path: img.rel.clone(),
        stage: format!("judge {} ({stage})", judge.name),
        reason,
    }
}

/// Pairwise verdicts name a side (`a`, `b`, `tie`): the judged variant's score is 1 when it
/// won, 0.5 for a tie, 0 when the baseline won, whichever side it was shown on.
fn pairwise_score(r: &Row) -> f64 {
    let label = r.verdict.clone().unwrap_or_default().to_lowercase();
    let variant_is_a = r.side == "ab";
    match (label.as_str(), variant_is_a) {
        ("a", true) | ("b", false) => 1.0,
        ("a", false) | ("b", true) => 0.0,
        _ => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any verdict text gives a score in 0–1 or an error, never a panic.
        #[test]
        fn verdicts_from_any_text(text in crate::testing::hostile_text()) {
            let choices = Verdict::Choices(vec![
                ("good".into(), 10.0),
                ("ok".into(), 5.0),
                ("🐥".into(), 0.0),
            ]);
            let scale = Verdict::Scale { min: 1.0, max: 10.0 };
            for verdict in [&choices, &scale] {
                if let Ok((label, score)) = parse_verdict(verdict, &text) {
                    proptest::prop_assert!(!label.is_empty());
                    proptest::prop_assert!((0.0..=1.0).contains(&score), "{score}");
                }
            }
        }
    }
}
