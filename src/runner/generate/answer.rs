//! From a prompted model's raw answer to this run's output: parsed under the variant's output
//! form, mapped onto the ground-truth vocabulary, and post-processed (bans, the tag limit,
//! spellings). Applied to every answer, asked now or served from the cache, so none of it is
//! in the cache key.

use std::sync::Arc;

use anyhow::Result;
use serde_json::Value;

use super::Step;
use crate::config::files::OutputKind;
use crate::config::{Category, Generation, Variant};
use crate::engine::vocab::Vocabulary;
use crate::engine::{output, TagScore};

/// What one answer became.
pub(super) struct Parsed {
    pub tags: Vec<TagScore>,
    pub caption: Option<String>,
    /// The vocabulary mapping of each raw tag, as JSON (with a vocabulary).
    pub mapping: Option<String>,
}

/// A variant's way from answers to outputs, prepared once.
pub(super) struct Reader<'a> {
    g: &'a Generation,
    vocab: Option<Vocabulary>,
    keep_unmapped: bool,
    post: Option<crate::textpost::Prepared>,
}

impl<'a> Reader<'a> {
    /// Prepares `v`'s vocabulary (loading its embedding model, when it has one) and
    /// post-processing (reading its word lists).
    pub fn new(step: &mut Step<'_, '_, '_>, v: &'a Variant) -> Result<Reader<'a>> {
        let g = v.gen.as_ref().expect("generative variant");
        let vocab = match &g.vocabulary {
            Some(spec) => {
                let emb = match &spec.embedding {
                    Some(m) => Some(step.engines.get(m, step.staged, step.ctx)?),
                    None => None,
                };
                Some(Vocabulary::new(
                    step.staged.vocabulary.clone(),
                    &spec.aliases,
                    emb,
                    spec.threshold as f32,
                )?)
            }
            None => None,
        };
        let post = match &g.postprocess {
            Some(p) => Some(p.prepare(&g.base)?),
            None => None,
        };
        Ok(Reader {
            g,
            vocab,
            keep_unmapped: g.vocabulary.as_ref().is_some_and(|s| s.keep_unmapped),
            post,
        })
    }

    /// Turns an answer into tags or a caption; a panic anywhere in it is an error.
    pub fn read(&self, text: &str) -> Result<Parsed, String> {
        crate::panics::catch(|| {
            crate::panics::failpoint("parse", text);
            self.read_inner(text)
        })
        .and_then(|r| r)
    }

    fn read_inner(&self, text: &str) -> Result<Parsed, String> {
        let (raw_tags, caption) = self.parse(text)?;
        let (tags, mapping) = self.map(raw_tags)?;
        let tags = match &self.post {
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

    /// The answer's raw tags (score 1 unless the answer gives one) and caption.
    #[allow(clippy::type_complexity)]
    fn parse(&self, text: &str) -> Result<(Vec<(String, f32)>, Option<String>), String> {
        Ok(match self.g.output {
            OutputKind::Caption => (Vec::new(), Some(output::parse_caption(text)?)),
            OutputKind::Tags => (
                output::parse_tags(text)?
                    .into_iter()
                    .map(|t| (t, 1.0))
                    .collect(),
                None,
            ),
            OutputKind::Json => {
                let value = output::parse_json(text, self.g.schema.as_ref())?;
                let tags = json_tags(&value);
                let caption = value
                    .get("caption")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if tags.is_empty() && caption.is_none() {
                    return Err("the JSON answer has neither `tags` nor `caption`".into());
                }
                (tags, caption)
            }
        })
    }

    /// Maps raw tags onto the vocabulary (with one): mapped tags keep their scores; unmapped
    /// ones are dropped, or kept normalised with `keep_unmapped`.
    #[allow(clippy::type_complexity)]
    fn map(
        &self,
        tags: Vec<(String, f32)>,
    ) -> Result<(Vec<(String, f32)>, Option<String>), String> {
        let Some(vocab) = &self.vocab else {
            return Ok((tags, None));
        };
        let raws: Vec<String> = tags.iter().map(|(t, _)| t.clone()).collect();
        let maps = vocab
            .map(&raws)
            .map_err(|e| format!("vocabulary mapping: {e:#}"))?;
        let mut mapped = Vec::new();
        for ((_, score), m) in tags.iter().zip(&maps) {
            match &m.tag {
                Some(t) => mapped.push((t.clone(), *score)),
                None if self.keep_unmapped => {
                    if let Some(n) = crate::tags::normalise(&m.raw) {
                        mapped.push((n, *score));
                    }
                }
                None => {}
            }
        }
        Ok((
            mapped,
            Some(serde_json::to_string(&maps).unwrap_or_default()),
        ))
    }
}

/// The tags of a JSON answer's `tags`: a list of names or of `{tag|name, score|confidence}`,
/// or an object of name → score.
fn json_tags(value: &Value) -> Vec<(String, f32)> {
    match value.get("tags") {
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
    }
}
