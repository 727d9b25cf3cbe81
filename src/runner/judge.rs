//! Judges: after the variants, each judge scores the outputs of the variants it judges.
//! LLM judges get a rubric rendered with the output (and the image for vision judges) and
//! answer with a named choice or a number on a scale; embedding judges score a caption's
//! cosine similarity to a reference. A verdict that does not parse is stored as invalid and
//! counted, never scored. Verdicts are cached by a key over the judge model, the rendered
//! rubric, the image (when sent), the parameters and the side; failed calls are failures,
//! never cached. Pairwise judges compare each variant with a baseline in both orders.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use serde_json::{json, Value};

use super::engines::Engines;
use super::generate::{self, image_context};
use super::Staged;
use crate::analysis::agreement;
use crate::analysis::metrics::{GenerationStats, JudgeSummary, TextMetrics};
use crate::config::files::Reference;
use crate::config::{Judge, Verdict};
use crate::engine::{output, seed_of, Call, Context, Engine};
use crate::store::duck::{path_list, Connection};
use crate::store::writer::{self, FailureRow, JUDGMENTS_SCHEMA};
use crate::store::{lookup, RunDir};
use crate::ui;

/// Counters for the manifest.
#[derive(Default)]
pub struct Judged {
    pub inferences: usize,
    pub failures: usize,
    pub cached: usize,
}

/// One verdict row.
#[derive(Debug, Clone, Default)]
struct Row {
    judge: String,
    variant: String,
    path: String,
    image_hash: String,
    repeat: u32,
    target_key: String,
    cache_key: String,
    side: String,
    prompt: String,
    raw: String,
    verdict: Option<String>,
    score: Option<f64>,
    valid: bool,
    error: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
    ms: f64,
    origin_run: String,
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

fn targets(
    staged: &Staged,
    conn: &Connection<'_>,
    run: &RunDir,
    variant: &str,
) -> Result<Vec<Target>> {
    let outs = generate::read_outputs(conn, run, variant)?;
    let mut out = Vec::new();
    let by_path = staged.index_by_path();
    let lit = crate::store::duck::lit(variant);
    conn.query(&format!(
        "SELECT path, repeat, cache_key FROM cells WHERE variant = {lit} ORDER BY path, repeat"
    ))?
    .for_each_row(|r| {
        let path = r.str(0)?.unwrap_or_default().to_string();
        let repeat = r.i64(1)?.unwrap_or(0) as u32;
        let key = r.str(2)?.unwrap_or_default().to_string();
        if let Some(&image) = by_path.get(path.as_str()) {
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
        Ok(())
    })?;
    Ok(out)
}

/// Earlier *valid* verdicts by cache key. An invalid verdict (an answer that did not parse)
/// is kept in its run for the record but never served as an answer: the next run asks again.
fn cached(
    conn: &Connection<'_>,
    runs_dir: &std::path::Path,
    exclude: &str,
    keys: &[String],
) -> Result<HashMap<String, Row>> {
    let files = lookup::table_files(runs_dir, lookup::Scope::Except(exclude), "judgments");
    let mut out = HashMap::new();
    if files.is_empty() || keys.is_empty() {
        return Ok(out);
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    lookup::with_wanted(conn, &keys, || {
        conn.query(&format!(
            "SELECT cache_key, raw, verdict, score, valid, error, prompt_tokens, completion_tokens, ms, origin_run
             FROM read_parquet({}, union_by_name = true) SEMI JOIN wanted USING (cache_key)
             WHERE valid AND cache_key <> ''
             QUALIFY row_number() OVER (PARTITION BY cache_key) = 1",
            path_list(&files)
        ))?
        .for_each_row(|r| {
            let key = r.str(0)?.unwrap_or_default().to_string();
            out.insert(
                key.clone(),
                Row {
                    cache_key: key,
                    raw: r.str(1)?.unwrap_or_default().to_string(),
                    verdict: r.str(2)?.map(str::to_string),
                    score: r.f64(3)?,
                    valid: r.bool(4)?.unwrap_or(false),
                    error: r.str(5)?.map(str::to_string),
                    prompt_tokens: r.i64(6)?.unwrap_or(0) as u64,
                    completion_tokens: r.i64(7)?.unwrap_or(0) as u64,
                    ms: r.f64(8)?.unwrap_or(0.0),
                    origin_run: r.str(9)?.unwrap_or_default().to_string(),
                    ..Row::default()
                },
            );
            Ok(())
        })?;
        Ok(())
    })?;
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

/// Verdicts and judge failures on their way to disk: committed in parts as they arrive (every
/// `max_rows` rows or `max_age`), as cells are, so a run killed at any moment loses only the
/// verdicts in flight and the uncommitted tail.
struct JudgmentWriter<'c, 'db> {
    conn: &'c Connection<'db>,
    run: RunDir,
    seq: usize,
    rows: Vec<Row>,
    failures: Vec<FailureRow>,
    last_flush: std::time::Instant,
    max_rows: usize,
    max_age: std::time::Duration,
}

impl<'c, 'db> JudgmentWriter<'c, 'db> {
    fn new(conn: &'c Connection<'db>, run: RunDir) -> Self {
        let age = std::env::var("IW_LAB_FLUSH_SECONDS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(1.0);
        JudgmentWriter {
            conn,
            run,
            seq: 0,
            rows: Vec::new(),
            failures: Vec::new(),
            last_flush: std::time::Instant::now(),
            max_rows: 64,
            max_age: std::time::Duration::from_secs_f64(age.min(3600.0)),
        }
    }

    fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    fn fail(&mut self, f: FailureRow) {
        self.failures.push(f);
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.rows.len() + self.failures.len() >= self.max_rows
            || self.last_flush.elapsed() >= self.max_age
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered verdicts as `judgments/part-NNNNNN.parquet` and the failures as
    /// `failures/judges-NNNNNN.parquet`, each atomically.
    fn flush(&mut self) -> Result<()> {
        self.last_flush = std::time::Instant::now();
        if self.rows.is_empty() && self.failures.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        if !self.rows.is_empty() {
            let dest = self
                .run
                .table_dir("judgments")
                .join(format!("part-{:06}.parquet", self.seq));
            write_rows(self.conn, &self.run, &dest, &self.rows)?;
            self.rows.clear();
        }
        if !self.failures.is_empty() {
            let dest = self
                .run
                .table_dir("failures")
                .join(format!("judges-{:06}.parquet", self.seq));
            write_failures(self.conn, &self.run, &dest, &self.failures)?;
            self.failures.clear();
        }
        Ok(())
    }
}

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

    fn hits(&self, tasks: &[Task]) -> Result<HashMap<String, Row>> {
        if self.no_cache {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = tasks.iter().map(|t| t.key.clone()).collect();
        cached(self.conn, self.runs_dir(), &self.run.id, &keys)
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
                valid: h.valid,
                error: h.error.clone(),
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
                let key = judge_key(
                    identity,
                    judge,
                    &json!({"output": output_text(t), "reference": r}),
                    None,
                    "",
                );
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
                        let key = judge_key(identity, judge, &json!(prompt), image, side);
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

/// The cache key of one verdict: the judge model, the verdict kind, what was asked (the
/// rendered rubric, or the output and reference of a similarity judge), the image when sent,
/// the parameters and the side.
fn judge_key(
    identity: &crate::engine::Identity,
    judge: &Judge,
    asked: &Value,
    image: Option<&str>,
    side: &str,
) -> String {
    let mut k = json!({
        "judge_model": identity.fingerprint,
        "kind": identity.kind,
        "version": identity.version,
        "verdict": judge.verdict,
        "prompt": asked,
        "image": image,
        "params": judge.params,
        "side": side,
    });
    if judge.likelihood {
        k["choose_by"] = json!("likelihood");
    }
    blake3::hash(crate::plan::key::canonical_json(&k).as_bytes())
        .to_hex()
        .to_string()
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

fn write_rows(
    conn: &Connection<'_>,
    run: &RunDir,
    dest: &std::path::Path,
    rows: &[Row],
) -> Result<()> {
    writer::write_table(conn, dest, JUDGMENTS_SCHEMA, |app| {
        for r in rows {
            app.str(&run.id)?
                .str(&r.judge)?
                .str(&r.variant)?
                .str(&r.path)?
                .str(&r.image_hash)?
                .i32(r.repeat as i32)?;
            app.str(&r.target_key)?
                .str(&r.cache_key)?
                .str(&r.side)?
                .str(&r.prompt)?
                .str(&r.raw)?
                .opt_str(r.verdict.as_deref())?;
            match r.score {
                Some(s) => app.f64(s)?,
                None => app.null()?,
            };
            app.bool(r.valid)?
                .opt_str(r.error.as_deref())?
                .i64(r.prompt_tokens as i64)?
                .i64(r.completion_tokens as i64)?
                .f64(r.ms)?
                .str(&r.origin_run)?;
            app.end_row()?;
        }
        Ok(())
    })
}

fn write_failures(
    conn: &Connection<'_>,
    run: &RunDir,
    dest: &std::path::Path,
    failures: &[FailureRow],
) -> Result<()> {
    let now = crate::store::time_now().iso();
    conn.execute(&format!(
        "DROP TABLE IF EXISTS j_failures; CREATE TEMP TABLE j_failures ({})",
        writer::FAILURES_SCHEMA
    ))?;
    {
        let mut app = conn.appender("j_failures")?;
        for f in failures {
            app.str(&run.id)?
                .opt_str(f.variant.as_deref())?
                .opt_str(f.image_hash.as_deref())?;
            app.str(&f.path)?.str(&f.stage)?.str(&f.reason)?.str(&now)?;
            app.end_row()?;
        }
        app.finish()?;
    }
    writer::copy_to_parquet(
        conn,
        "SELECT * REPLACE (created_at::TIMESTAMP AS created_at) FROM j_failures",
        dest,
    )?;
    conn.execute("DROP TABLE j_failures")?;
    Ok(())
}

/// Text metrics of every variant from the run's tables, and the judges' agreement.
pub fn summarise(
    conn: &Connection<'_>,
    run: &RunDir,
    staged: &Staged,
    ctx: &Context,
    engines: &mut Engines,
) -> Result<(BTreeMap<String, TextMetrics>, Value)> {
    crate::store::tables::open_run(conn, run)?;
    let exp = &staged.exp;
    let mut out: BTreeMap<String, TextMetrics> = BTreeMap::new();
    // Verdicts: (judge, variant, path, repeat) → mean score of the valid sides.
    let mut cell_scores: BTreeMap<(String, String, String, u32), Vec<f64>> = BTreeMap::new();
    let mut counts: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    conn.query("SELECT judge, variant, path, repeat, score, valid FROM judgments ORDER BY judge, variant, path, repeat, side")?
        .for_each_row(|r| {
            let j = r.str(0)?.unwrap_or_default().to_string();
            let v = r.str(1)?.unwrap_or_default().to_string();
            let p = r.str(2)?.unwrap_or_default().to_string();
            let rep = r.i64(3)?.unwrap_or(0) as u32;
            let valid = r.bool(5)?.unwrap_or(false);
            let e = counts.entry((j.clone(), v.clone())).or_default();
            if valid {
                e.0 += 1;
                if let Some(s) = r.f64(4)? {
                    cell_scores.entry((j, v, p, rep)).or_default().push(s);
                }
            } else {
                e.1 += 1;
            }
            Ok(())
        })?;
    let mut failed: BTreeMap<(String, String), u64> = BTreeMap::new();
    conn.query(
        "SELECT stage, variant, count(*) FROM failures WHERE stage LIKE 'judge %' GROUP BY ALL",
    )?
    .for_each_row(|r| {
        let stage = r.str(0)?.unwrap_or_default();
        let judge = stage
            .trim_start_matches("judge ")
            .split(" (")
            .next()
            .unwrap_or_default()
            .to_string();
        failed.insert(
            (judge, r.str(1)?.unwrap_or_default().to_string()),
            r.i64(2)?.unwrap_or(0) as u64,
        );
        Ok(())
    })?;
    let similarity_judges: Vec<&str> = exp
        .judges
        .iter()
        .filter(|j| matches!(j.verdict, Verdict::Similarity))
        .map(|j| j.name.as_str())
        .collect();
    for judge in &exp.judges {
        for v in &judge.variants {
            let per_image: Vec<f64> = cell_scores
                .range((judge.name.clone(), v.clone(), String::new(), 0)..)
                .take_while(|((j, vv, _, _), _)| j == &judge.name && vv == v)
                .map(|(_, s)| s.iter().sum::<f64>() / s.len() as f64)
                .collect();
            let (valid, invalid) = counts
                .get(&(judge.name.clone(), v.clone()))
                .copied()
                .unwrap_or_default();
            let mean = (!per_image.is_empty())
                .then(|| per_image.iter().sum::<f64>() / per_image.len() as f64);
            let consistency = judge
                .pairwise
                .as_ref()
                .map(|_| pairwise_consistency(conn, &judge.name, v).unwrap_or(0.0));
            let s = JudgeSummary {
                mean,
                ci: bootstrap_mean_ci(&per_image),
                valid,
                invalid,
                failed: failed
                    .get(&(judge.name.clone(), v.clone()))
                    .copied()
                    .unwrap_or(0),
                consistency,
            };
            out.entry(v.clone())
                .or_default()
                .judges
                .insert(judge.name.clone(), s);
        }
    }
    for tm in out.values_mut() {
        let llm: Vec<f64> = tm
            .judges
            .iter()
            .filter(|(j, _)| !similarity_judges.contains(&j.as_str()))
            .filter_map(|(_, s)| s.mean)
            .collect();
        tm.judge_score = (!llm.is_empty()).then(|| llm.iter().sum::<f64>() / llm.len() as f64);
        let sims: Vec<f64> = tm
            .judges
            .iter()
            .filter(|(j, _)| similarity_judges.contains(&j.as_str()))
            .filter_map(|(_, s)| s.mean)
            .collect();
        tm.caption_similarity =
            (!sims.is_empty()).then(|| sims.iter().sum::<f64>() / sims.len() as f64);
    }
    // Generation stats.
    conn.query("SELECT variant, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost), count(cost) FROM texts GROUP BY variant")?
        .for_each_row(|r| {
            let v = r.str(0)?.unwrap_or_default().to_string();
            let n_cost = r.i64(5)?.unwrap_or(0);
            out.entry(v).or_default().generation = Some(GenerationStats {
                outputs: r.i64(1)?.unwrap_or(0) as u64,
                prompt_tokens: r.f64(2)?.unwrap_or(0.0) as u64,
                completion_tokens: r.f64(3)?.unwrap_or(0.0) as u64,
                cost: (n_cost > 0).then(|| r.f64(4).ok().flatten().unwrap_or(0.0)),
            });
            Ok(())
        })?;
    // Stability across repeats.
    let embedder = exp
        .models()
        .into_iter()
        .find(|m| crate::engine::capabilities_of(m).embed)
        .and_then(|m| engines.get(&m, staged, ctx).ok());
    for v in exp.variants.iter().filter(|v| v.repeats > 1) {
        let outs = generate::read_outputs(conn, run, &v.name)?;
        let mut by_path: BTreeMap<&str, Vec<&generate::Output>> = BTreeMap::new();
        for ((p, _), o) in &outs {
            by_path.entry(p.as_str()).or_default().push(o);
        }
        let mut per_image = Vec::new();
        for group in by_path.values().filter(|g| g.len() >= 2) {
            if v.captions() {
                let caps: Vec<&str> = group.iter().filter_map(|(_, c)| c.as_deref()).collect();
                if caps.len() < 2 {
                    continue;
                }
                per_image.push(match &embedder {
                    Some(e) => {
                        let vecs = e.embed(&caps)?;
                        let mut sum = 0.0;
                        let mut n = 0.0;
                        for a in 0..vecs.len() {
                            for b in a + 1..vecs.len() {
                                sum += crate::engine::embedding::cosine(&vecs[a], &vecs[b]) as f64;
                                n += 1.0;
                            }
                        }
                        sum / n
                    }
                    None => {
                        let sets: Vec<std::collections::HashSet<String>> = caps
                            .iter()
                            .map(|c| {
                                c.split_whitespace()
                                    .map(|w| {
                                        w.trim_matches(|ch: char| !ch.is_alphanumeric())
                                            .to_lowercase()
                                    })
                                    .filter(|w| !w.is_empty())
                                    .collect()
                            })
                            .collect();
                        agreement::mean_pairwise_jaccard(&sets)
                    }
                });
            } else {
                let sets: Vec<std::collections::HashSet<String>> = group
                    .iter()
                    .map(|(t, _)| t.iter().map(|(x, _)| x.clone()).collect())
                    .collect();
                per_image.push(agreement::mean_pairwise_jaccard(&sets));
            }
        }
        if !per_image.is_empty() {
            out.entry(v.name.clone()).or_default().stability =
                Some(per_image.iter().sum::<f64>() / per_image.len() as f64);
        }
    }
    // Agreement between judges (Krippendorff's alpha, interval, on 0–1 scores) and with truth.
    let mut agreement_doc = json!({});
    let llm_judges: Vec<&Judge> = exp.judges.iter().collect();
    if llm_judges.len() >= 2 {
        let mut units: BTreeMap<(String, String, u32), Vec<Option<f64>>> = BTreeMap::new();
        for (ji, j) in llm_judges.iter().enumerate() {
            for ((jn, v, p, r), s) in &cell_scores {
                if jn == &j.name {
                    let e = units
                        .entry((v.clone(), p.clone(), *r))
                        .or_insert_with(|| vec![None; llm_judges.len()]);
                    e[ji] = Some(s.iter().sum::<f64>() / s.len() as f64);
                }
            }
        }
        let data: Vec<Vec<Option<f64>>> = (0..llm_judges.len())
            .map(|ji| units.values().map(|u| u[ji]).collect())
            .collect();
        agreement_doc["judge_alpha"] = json!(agreement::krippendorff_alpha(
            &data,
            agreement::Level::Interval
        ));
        agreement_doc["judges"] = json!(llm_judges.iter().map(|j| &j.name).collect::<Vec<_>>());
        agreement_doc["units"] = json!(units.len());
    }
    // With ground truth: per cell, the judge's score against the cell's F1 on the truth (tag
    // outputs only).
    let mut with_truth = serde_json::Map::new();
    let image_of = staged.index_by_path();
    let mut tag_outputs: HashMap<&str, generate::Outputs> = HashMap::new();
    for v in exp
        .variants
        .iter()
        .filter(|v| !v.captions() && exp.judges.iter().any(|j| j.variants.contains(&v.name)))
    {
        tag_outputs.insert(&v.name, generate::read_outputs(conn, run, &v.name)?);
    }
    for judge in &exp.judges {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for v in judge.variants.iter() {
            let Some(outs) = tag_outputs.get(v.as_str()) else {
                continue;
            };
            for ((p, r), (tags, _)) in outs {
                let Some(&ii) = image_of.get(p.as_str()) else {
                    continue;
                };
                let Some(truth) = staged.truth(ii) else {
                    continue;
                };
                let Some(s) = cell_scores.get(&(judge.name.clone(), v.clone(), p.clone(), *r))
                else {
                    continue;
                };
                let pred: std::collections::HashSet<&str> =
                    tags.iter().map(|(t, _)| t.as_str()).collect();
                let tr: std::collections::HashSet<&str> =
                    truth.iter().map(String::as_str).collect();
                let tp = pred.intersection(&tr).count() as f64;
                let f1 = if pred.len() + tr.len() == 0 {
                    1.0
                } else {
                    2.0 * tp / (pred.len() + tr.len()) as f64
                };
                xs.push(s.iter().sum::<f64>() / s.len() as f64);
                ys.push(f1);
            }
        }
        if xs.len() >= 3 {
            with_truth.insert(
                judge.name.clone(),
                json!({"pearson_vs_f1": pearson(&xs, &ys), "cells": xs.len()}),
            );
        }
        if let Some(h) = &judge.human {
            if let Ok(doc) = human_agreement(h, judge, &cell_scores) {
                agreement_doc["judge_vs_human"][&judge.name] = doc;
            }
        }
    }
    if !with_truth.is_empty() {
        agreement_doc["judge_vs_truth"] = Value::Object(with_truth);
    }
    Ok((out, agreement_doc))
}

/// The share of pairwise comparisons whose two orders gave the same score.
fn pairwise_consistency(conn: &Connection<'_>, judge: &str, variant: &str) -> Result<f64> {
    let mut share = 0.0;
    conn.query(&format!(
        "SELECT coalesce(avg(CASE WHEN max_s - min_s < 1e-9 THEN 1.0 ELSE 0.0 END), 0.0) FROM (
           SELECT max(score) AS max_s, min(score) AS min_s FROM judgments
           WHERE judge = {} AND variant = {} AND valid
           GROUP BY path, repeat HAVING count(*) = 2
         )",
        crate::store::duck::lit(judge),
        crate::store::duck::lit(variant)
    ))?
    .for_each_row(|r| {
        share = r.f64(0)?.unwrap_or(0.0);
        Ok(())
    })?;
    Ok(share)
}

fn human_agreement(
    path: &std::path::Path,
    judge: &Judge,
    cell_scores: &BTreeMap<(String, String, String, u32), Vec<f64>>,
) -> Result<Value> {
    let mut rdr = csv::Reader::from_path(path)?;
    let headers = rdr.headers()?.clone();
    let col = |n: &str| headers.iter().position(|h| h.trim() == n);
    let (Some(fc), Some(sc)) = (col("file"), col("score")) else {
        anyhow::bail!("{}: needs `file` and `score` columns", path.display());
    };
    let vc = col("variant");
    let (lo, hi) = match &judge.verdict {
        Verdict::Choices(c) => (
            c.iter().map(|x| x.1).fold(f64::INFINITY, f64::min),
            c.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max),
        ),
        Verdict::Scale { min, max } => (*min, *max),
        Verdict::Similarity => (0.0, 1.0),
    };
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for rec in rdr.records() {
        let rec = rec?;
        let file = rec.get(fc).unwrap_or_default();
        let Ok(h) = rec.get(sc).unwrap_or_default().trim().parse::<f64>() else {
            continue;
        };
        let h = if hi > lo { (h - lo) / (hi - lo) } else { h };
        for ((j, v, p, _), s) in cell_scores {
            if j == &judge.name && p == file && vc.is_none_or(|c| rec.get(c) == Some(v.as_str())) {
                xs.push(s.iter().sum::<f64>() / s.len() as f64);
                ys.push(h);
            }
        }
    }
    let data = vec![
        xs.iter().map(|x| Some(*x)).collect(),
        ys.iter().map(|y| Some(*y)).collect(),
    ];
    Ok(json!({
        "alpha": agreement::krippendorff_alpha(&data, agreement::Level::Interval),
        "pearson": pearson(&xs, &ys),
        "cells": xs.len(),
    }))
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// 95% percentile bootstrap interval of the mean over images: 1,000 resamples, seed 0, with
/// the generator and percentiles of `analysis::bootstrap`.
fn bootstrap_mean_ci(xs: &[f64]) -> Option<[f64; 2]> {
    use crate::analysis::bootstrap::{percentile, SplitMix64};
    if xs.len() < 2 {
        return None;
    }
    let mut rng = SplitMix64(0);
    let mut means: Vec<f64> = (0..1000)
        .map(|_| (0..xs.len()).map(|_| xs[rng.below(xs.len())]).sum::<f64>() / xs.len() as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Some([percentile(&means, 0.025), percentile(&means, 0.975)])
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

    #[test]
    fn bootstrap_interval_of_a_mean_matches_the_normal_approximation() {
        // 100 verdicts, half 1 and half 0: the mean's standard error is 0.05, so the 95%
        // interval is about 0.5 ± 0.098 (a 1,000-resample percentile interval is within
        // ±0.02 of that).
        let xs: Vec<f64> = (0..100).map(|i| (i % 2) as f64).collect();
        let [lo, hi] = bootstrap_mean_ci(&xs).unwrap();
        assert!(
            (lo - 0.402).abs() < 0.02 && (hi - 0.598).abs() < 0.02,
            "{lo} {hi}"
        );
        // constant verdicts: no spread; one verdict: no interval
        assert_eq!(bootstrap_mean_ci(&[0.5; 7]), Some([0.5, 0.5]));
        assert_eq!(bootstrap_mean_ci(&[1.0]), None);
    }
}
