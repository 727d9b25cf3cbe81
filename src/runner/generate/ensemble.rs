//! An ensemble variant: its members' outputs gathered per image and keyed, the cached
//! combinations copied, the rest combined by the ensemble engine, or merged by an LLM with
//! the union as the fallback (a fallback is scored in this run, marked in `cells.fallback`
//! and `texts.note`, and never cached, so the next run asks again).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use serde_json::{json, Value};

use super::{fallback_note, Derived, Group, Groups, Step};
use crate::config::{Category, Variant};
use crate::engine::{output, seed_of, Answer, Call, Engine, TagScore};
use crate::plan::{key, Cell};
use crate::store::writer::TextRow;

/// One image's member outputs, in member order.
type Members = Vec<Option<Vec<(String, f32)>>>;

/// Tags with scores as outputs.
fn to_scores(tags: Vec<(String, f32)>) -> Vec<TagScore> {
    tags.into_iter()
        .map(|(t, s)| TagScore {
            tag: Arc::from(t.as_str()),
            score: s.clamp(0.0, 1.0),
            category: Category::General,
        })
        .collect()
}

impl<'s> Step<'s, '_, '_> {
    /// Runs an ensemble variant's cells.
    pub(super) fn ensemble(
        &mut self,
        v: &Variant,
        cells: &[&'s Cell],
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        let e = v.ensemble.as_ref().expect("ensemble");
        let inputs = Derived::read(self.conn, self.run, &e.members)?;
        let groups = self.member_groups(v, cells, &inputs, bar);
        let hits = self.hits(&groups.keys())?;
        let (served, misses): (Vec<_>, Vec<_>) = groups
            .0
            .into_iter()
            .partition(|g| hits.contains_key(&g.key.hash));
        let mut copied = Vec::new();
        for g in &served {
            self.tally.cache_hits += g.cells.len();
            copied.extend(
                g.cells
                    .iter()
                    .map(|(c, fallback)| (*c, &g.key, fallback.is_some())),
            );
        }
        super::super::copy_hits(
            self.staged,
            self.run,
            self.conn,
            self.writer,
            &copied,
            &hits,
        )?;
        bar.inc(copied.len() as u64);
        let engine = self.engines.get(&v.model, self.staged, self.ctx)?;
        if e.method == crate::config::files::EnsembleMethod::Llm {
            self.merge(v, engine.as_ref(), misses, bar)
        } else {
            self.combine(v, engine.as_ref(), misses, bar)
        }
    }

    /// Gathers each cell's member outputs and keys them; cells with a failed member are
    /// failures.
    fn member_groups(
        &mut self,
        v: &Variant,
        cells: &[&'s Cell],
        inputs: &Derived,
        bar: &indicatif::ProgressBar,
    ) -> Groups<'s, Members> {
        let staged = self.staged;
        let e = v.ensemble.as_ref().expect("ensemble");
        let identity = &staged.identities[&v.model.name];
        let merge = e
            .merge_model
            .as_ref()
            .and_then(|m| staged.identities.get(&m.name));
        let mut groups = Groups(Vec::new());
        let mut index = std::collections::HashMap::new();
        for &c in cells {
            let img = &staged.images()[c.image];
            let Some(fallback) = self.inputs_ready(v, inputs, &e.members, c, bar) else {
                continue;
            };
            let members: Members = e
                .members
                .iter()
                .map(|m| Some(inputs.output(staged, m, &img.rel, c.repeat).0))
                .collect();
            let id = key::members_id(&members);
            let k = key::ensemble(identity, e, merge, &img.hash, &id, c.repeat).into();
            groups.add(&mut index, k, (c, fallback), || members);
        }
        groups
    }

    /// Combines each group's member outputs with the ensemble engine.
    fn combine(
        &mut self,
        v: &Variant,
        engine: &dyn Engine,
        misses: Vec<Group<'_, Members>>,
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        let how = v.ensemble.as_ref().expect("ensemble").combine();
        for group in misses {
            self.tally.inferences += 1;
            self.tally.shared += group.cells.len() - 1;
            let combined = crate::panics::catch(|| {
                engine.combine(&how, &group.work).map_err(|e| e.to_string())
            })
            .and_then(|r| r);
            match combined {
                Ok(tags) => {
                    let tags = to_scores(tags);
                    for (c, fallback) in &group.cells {
                        let mut row = self.row(c, &group, tags.len(), 0.0);
                        row.fallback = fallback.is_some();
                        self.writer.add_cell(row, tags.clone());
                    }
                }
                Err(err) => self.fail_group(v, &group, "combine", &err),
            }
            bar.inc(group.cells.len() as u64);
            self.writer.maybe_flush()?;
        }
        Ok(())
    }

    /// A cell row of this run for a cell of `group`.
    fn row<T>(
        &self,
        c: &Cell,
        group: &Group<'_, T>,
        n_tags: usize,
        ms: f64,
    ) -> crate::store::writer::CellRow {
        super::super::cell_row(self.staged, c, &group.key, self.run.id.clone(), n_tags, ms)
    }

    /// Asks the merge model to merge each group's member outputs; the union stands in when the
    /// prompt does not render, the call fails or the answer has no tags.
    fn merge(
        &mut self,
        v: &Variant,
        engine: &dyn Engine,
        misses: Vec<Group<'_, Members>>,
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        let e = v.ensemble.as_ref().expect("ensemble");
        let how = e.combine();
        let merge_model = e.merge_model.as_ref().expect("merge model");
        let template = e.merge_prompt.as_ref().expect("merge prompt");
        let params: BTreeMap<String, Value> = merge_model.params.clone();
        let llm = self.engines.get(merge_model, self.staged, self.ctx)?;
        let mut jobs = Vec::new();
        let mut asked = Vec::new();
        for group in misses {
            let union = engine.combine(&how, &group.work).unwrap_or_default();
            let (c, _) = group.cells[0];
            let mut context = super::image_context(self.staged, c.image);
            context.insert("members".into(), members_value(&e.members, &group.work));
            match template.render(&context) {
                Ok(user) => {
                    let call = Call {
                        system: None,
                        user: user.clone(),
                        image: None,
                        params: params.clone(),
                        seed: seed_of(&params, c.repeat),
                        choices: None,
                    };
                    jobs.push((call, None));
                    asked.push((group, union, user));
                }
                Err(err) => {
                    let why = format!("the merge prompt did not render: {err:#}");
                    let merged = Merged::fallback(&union, String::new(), why, None);
                    self.write_merged(v, &group, merged, String::new());
                    bar.inc(group.cells.len() as u64);
                }
            }
        }
        let max_pixels = self.staged.exp.dataset.max_pixels;
        super::run_calls(llm.as_ref(), jobs, max_pixels, |i, result| {
            let (group, union, prompt) = &asked[i];
            self.tally.inferences += 1;
            self.tally.shared += group.cells.len() - 1;
            let mut merged = merge_answer(result, union);
            merged.cost = merged.answer.as_ref().and_then(|a| a.cost(llm.prices()));
            self.write_merged(v, group, merged, prompt.clone());
            bar.inc(group.cells.len() as u64);
            self.writer.maybe_flush()
        })
    }

    /// Writes a merge's outputs for every cell of its group.
    fn write_merged(
        &mut self,
        v: &Variant,
        group: &Group<'_, Members>,
        merged: Merged,
        prompt: String,
    ) {
        let e = v.ensemble.as_ref().expect("ensemble");
        let template = e.merge_prompt.as_ref().expect("merge prompt");
        let merge_model = e.merge_model.as_ref().expect("merge model");
        let tags: Vec<(String, f32)> = merged
            .tags
            .into_iter()
            .filter_map(|(t, s)| Some((crate::tags::normalise(&t)?, s)))
            .collect();
        let tags = to_scores(tags);
        let a = merged.answer.unwrap_or_default();
        for (c, input_fallback) in &group.cells {
            let note = merged
                .note
                .clone()
                .or_else(|| input_fallback.as_deref().map(fallback_note));
            let text = TextRow {
                prompt_name: template.name.clone(),
                prompt_hash: template.hash.clone(),
                prompt: prompt.clone(),
                params: serde_json::to_string(&merge_model.params).unwrap_or_default(),
                raw: merged.raw.clone(),
                caption: None,
                mapping: None,
                prompt_tokens: a.prompt_tokens,
                completion_tokens: a.completion_tokens,
                cost: merged.cost,
                finish: a.finish.clone(),
                attempts: a.attempts,
                note: note.clone(),
            };
            let mut row = self.row(c, group, tags.len(), a.ms);
            row.fallback = note.is_some();
            self.writer.add_text_cell(row, tags.clone(), text);
        }
    }
}

/// `members` as the merge prompt sees them: each member's name and tags.
fn members_value(names: &[String], members: &Members) -> Value {
    Value::Array(
        names
            .iter()
            .zip(members)
            .map(|(name, t)| {
                json!({"variant": name, "tags": t.as_ref().map(|t| t.iter().map(|(x, _)| x.clone()).collect::<Vec<_>>())})
            })
            .collect(),
    )
}

/// What an LLM merge gave: its tags, or the union when the call or its answer failed.
struct Merged {
    tags: Vec<(String, f32)>,
    raw: String,
    /// Why the union was used instead (the output is then a fallback).
    note: Option<String>,
    answer: Option<Answer>,
    cost: Option<f64>,
}

impl Merged {
    /// The union in place of a merge, saying why.
    fn fallback(
        union: &[(String, f32)],
        raw: String,
        why: String,
        answer: Option<Answer>,
    ) -> Merged {
        Merged {
            tags: union.to_vec(),
            raw,
            note: Some(format!("fallback: union ({why})")),
            answer,
            cost: None,
        }
    }
}

fn merge_answer(result: Result<Answer, (&'static str, String)>, union: &[(String, f32)]) -> Merged {
    match result {
        Ok(a) => match crate::panics::catch(|| output::parse_tags(&a.text)).and_then(|r| r) {
            Ok(t) if !t.is_empty() => Merged {
                tags: t.into_iter().map(|x| (x, 1.0)).collect(),
                raw: a.text.clone(),
                note: None,
                answer: Some(a),
                cost: None,
            },
            Ok(_) => Merged::fallback(
                union,
                a.text.clone(),
                "the merge answer had no tags".into(),
                Some(a),
            ),
            Err(err) => Merged::fallback(
                union,
                a.text.clone(),
                format!("the merge answer did not parse: {err}"),
                Some(a),
            ),
        },
        Err((_, err)) => Merged::fallback(
            union,
            String::new(),
            format!("the merge call failed: {err}"),
            None,
        ),
    }
}
