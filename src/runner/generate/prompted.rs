//! A prompted variant: its prompts rendered (with its inputs' outputs), keyed, the cached
//! answers served, the rest asked, and every answer read into this run's outputs.

use anyhow::Result;

use super::answer::Reader;
use super::{failure, fallback_note, Derived, Group, Groups, Step};
use crate::config::Variant;
use crate::dataset::ImageEntry;
use crate::engine::{seed_of, Call};
use crate::plan::{key, Cell};
use crate::store::lookup::CachedAnswer;
use crate::store::writer::TextRow;

/// One call: what is asked, and the prompt as the `texts` table keeps it.
pub(super) struct Ask<'a> {
    call: Call,
    image: Option<&'a ImageEntry>,
    prompt: String,
}

/// An answer with where it came from.
struct Answered {
    answer: CachedAnswer,
    origin_run: String,
    ms: f64,
}

impl<'s> Step<'s, '_, '_> {
    /// Runs a prompted variant's cells.
    pub(super) fn prompted(
        &mut self,
        v: &Variant,
        cells: &[&'s Cell],
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        let g = v.gen.as_ref().expect("generative variant");
        let inputs = Derived::read(self.conn, self.run, &g.inputs)?;
        let groups = self.asks(v, cells, &inputs, bar);
        let reader = Reader::new(self, v)?;
        let hits = self.hits(&groups.keys())?;
        let answers = crate::store::lookup::read_answers(self.conn, &hits)?;
        let mut misses = Vec::new();
        for group in groups.0 {
            let served = hits.get(&group.key.hash).zip(answers.get(&group.key.hash));
            match served {
                Some((hit, answer)) => {
                    self.tally.cache_hits += group.cells.len();
                    let answered = Answered {
                        answer: answer.clone(),
                        origin_run: hit.origin_run.clone(),
                        ms: hit.infer_ms,
                    };
                    self.write_answer(v, &reader, &group, answered);
                    bar.inc(group.cells.len() as u64);
                    self.writer.maybe_flush()?;
                }
                None => misses.push(group),
            }
        }
        self.ask(v, &reader, misses, bar)
    }

    /// Renders each cell's prompt and keys it; cells whose inputs failed, or whose prompt
    /// does not render, are failures.
    fn asks(
        &mut self,
        v: &Variant,
        cells: &[&'s Cell],
        inputs: &Derived,
        bar: &indicatif::ProgressBar,
    ) -> Groups<'s, Ask<'s>> {
        let staged = self.staged;
        let g = v.gen.as_ref().expect("generative variant");
        let identity = &staged.identities[&v.model.name];
        let mut groups = Groups(Vec::new());
        let mut index = std::collections::HashMap::new();
        for &c in cells {
            let img = &staged.images()[c.image];
            let Some(fallback) = self.inputs_ready(v, inputs, &g.inputs, c, bar) else {
                continue;
            };
            let value = inputs.template_value(staged, &img.rel, c.repeat);
            let context = super::variant_context(staged, v, c.image, value);
            let (system, user) = match super::render(v, &context) {
                Ok(r) => r,
                Err(e) => {
                    self.writer
                        .add_failure(failure(v, img, "prompt", format!("{e:#}")));
                    self.tally.failures += 1;
                    bar.inc(1);
                    continue;
                }
            };
            let prompt = key::prompt_id(system.as_deref(), &user);
            let k = key::prompted(identity, g, &img.hash, &prompt, c.repeat).into();
            groups.add(&mut index, k, (c, fallback), || Ask {
                call: Call {
                    system,
                    user: user.clone(),
                    image: g.image.then_some(c.image),
                    params: g.params.clone(),
                    seed: seed_of(&g.params, c.repeat),
                    choices: None,
                },
                image: g.image.then_some(img),
                prompt: user,
            });
        }
        groups
    }

    /// Asks the model the groups not served from the cache.
    fn ask(
        &mut self,
        v: &Variant,
        reader: &Reader<'_>,
        misses: Vec<Group<'_, Ask<'_>>>,
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        if misses.is_empty() {
            return Ok(());
        }
        let engine = self.engines.get(&v.model, self.staged, self.ctx)?;
        let prices = engine.prices();
        let jobs: Vec<(Call, Option<&ImageEntry>)> = misses
            .iter()
            .map(|g| (g.work.call.clone(), g.work.image))
            .collect();
        let max_pixels = self.staged.exp.dataset.max_pixels;
        super::run_calls(engine.as_ref(), jobs, max_pixels, |i, result| {
            let group = &misses[i];
            self.tally.inferences += 1;
            self.tally.shared += group.cells.len() - 1;
            match result {
                Ok(a) => {
                    let answered = Answered {
                        answer: CachedAnswer {
                            cost: a.cost(prices),
                            raw: a.text,
                            prompt_tokens: a.prompt_tokens,
                            completion_tokens: a.completion_tokens,
                            finish: a.finish,
                            attempts: a.attempts,
                        },
                        origin_run: self.run.id.clone(),
                        ms: a.ms,
                    };
                    self.write_answer(v, reader, group, answered);
                }
                Err((stage, e)) => self.fail_group(v, group, stage, &e),
            }
            bar.inc(group.cells.len() as u64);
            self.writer.maybe_flush()
        })
    }

    /// Reads an answer into this run's outputs, for every cell of its group; an answer that
    /// does not parse fails them.
    fn write_answer(
        &mut self,
        v: &Variant,
        reader: &Reader<'_>,
        group: &Group<'_, Ask<'_>>,
        answered: Answered,
    ) {
        let a = &answered.answer;
        let parsed = match reader.read(&a.raw) {
            Ok(p) => p,
            Err(e) => {
                let snippet: String = a.raw.chars().take(200).collect();
                let reason = format!("{e} (answer: {snippet:?})");
                return self.fail_group(v, group, "parse", &reason);
            }
        };
        let g = v.gen.as_ref().expect("generative variant");
        for (c, fallback) in &group.cells {
            let mut row = super::super::cell_row(
                self.staged,
                c,
                &group.key,
                answered.origin_run.clone(),
                parsed.tags.len(),
                answered.ms,
            );
            row.fallback = fallback.is_some();
            let text = TextRow {
                prompt_name: g.prompt.name.clone(),
                prompt_hash: g.prompt.hash.clone(),
                prompt: group.work.prompt.clone(),
                params: serde_json::to_string(&g.params).unwrap_or_default(),
                raw: a.raw.clone(),
                caption: parsed.caption.clone(),
                mapping: parsed.mapping.clone(),
                prompt_tokens: a.prompt_tokens,
                completion_tokens: a.completion_tokens,
                cost: a.cost,
                finish: a.finish.clone(),
                attempts: a.attempts,
                note: fallback.as_deref().map(fallback_note),
            };
            self.writer.add_text_cell(row, parsed.tags.clone(), text);
        }
    }
}
