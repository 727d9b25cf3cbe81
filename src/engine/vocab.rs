//! Mapping free-text tags (from captioning models, other tools, people) onto a ground-truth
//! vocabulary, so they can be scored against it.
//!
//! Owns the order of the attempts — exact match after [`crate::tags::normalise`], then the
//! alias table, then embedding similarity at or above a threshold — and the record of which
//! one decided ([`Mapping`]). Does not own the embeddings themselves
//! ([`crate::engine::embedding`]) or where vocabularies and aliases come from (config and
//! ground truth).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::engine::embedding::cosine;
use crate::engine::Engine;
use crate::tags::normalise;

/// The similarity at or above which an embedding match counts, chosen for all-MiniLM-L6-v2.
///
/// Cosines measured with that model on short tags: synonyms score 0.79–0.92 (kitten/cat
/// 0.788, puppy/dog 0.804, woods/forest 0.817, smiling/smile 0.831, kitty/cat 0.842,
/// eyeglasses/glasses 0.841, couch/sofa 0.856, automobile/car 0.865, ocean/sea 0.871,
/// bike/bicycle 0.920); different things in the same family score up to 0.75 (sofa/chair
/// 0.610, cat/dog 0.661, blue eyes/blue hair 0.676, truck/car 0.689, red hair/blue hair
/// 0.695, red/blue 0.729, tree/forest 0.750); unrelated words stay under 0.4 (banana/car
/// 0.390, keyboard/cat 0.337, spreadsheet/anything 0.10–0.21). 0.78 sits between the two
/// groups. Looser synonyms fall below it (longhair/long hair 0.772, spectacles/glasses 0.745,
/// grin/smile 0.677, seashore/beach 0.673, jumper/sweater 0.424): that is what the alias
/// table is for. No threshold separates opposite attributes (long hair/short hair 0.867), so
/// a vocabulary should hold both sides of such a pair, where the exact match wins.
pub const DEFAULT_THRESHOLD: f32 = 0.78;

/// Which attempt decided a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The normalised tag is in the vocabulary.
    Exact,
    /// The alias table names a vocabulary tag for it.
    Alias,
    /// The most similar vocabulary tag scored at or above the threshold.
    Embedding,
    /// None of the above.
    Unmapped,
}

/// One raw tag and what it became.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapping {
    pub raw: String,
    /// The vocabulary tag, spelled as the vocabulary spells it; `None` when unmapped.
    pub tag: Option<String>,
    pub method: Method,
    /// The cosine similarity to the nearest vocabulary tag, when embeddings were consulted
    /// (also for unmapped tags, to show how near they came).
    pub similarity: Option<f32>,
}

/// A ground-truth vocabulary ready for mapping, with its tags embedded once.
pub struct Vocabulary {
    /// The vocabulary as given (first spelling wins among tags that normalise alike).
    tags: Vec<String>,
    /// Normalised tag → index into `tags`.
    index: HashMap<String, usize>,
    /// Normalised alias → index of its canonical tag (aliases to tags outside the
    /// vocabulary are dropped: they could never map onto it).
    aliases: HashMap<String, usize>,
    embedder: Option<Arc<dyn Engine>>,
    /// One unit vector per entry of `tags` (empty without an embedder).
    vectors: Vec<Vec<f32>>,
    threshold: f32,
}

impl Vocabulary {
    /// Builds a vocabulary. `aliases` maps alias → canonical tag (both normalised here);
    /// `embedder` enables the similarity step, with matches at `threshold` or above (see
    /// [`DEFAULT_THRESHOLD`]). Tags are embedded in their normalised text form, where
    /// underscores are spaces.
    ///
    /// Errors: a threshold that is not a number, or a failure embedding the tags.
    pub fn new(
        tags: Vec<String>,
        aliases: &BTreeMap<String, String>,
        embedder: Option<Arc<dyn Engine>>,
        threshold: f32,
    ) -> Result<Vocabulary> {
        ensure!(
            !threshold.is_nan(),
            "the similarity threshold is not a number"
        );
        let mut kept = Vec::new();
        let mut index = HashMap::new();
        for tag in tags {
            let Some(norm) = normalise(&tag) else {
                continue;
            };
            if let Entry::Vacant(slot) = index.entry(norm) {
                slot.insert(kept.len());
                kept.push(tag);
            }
        }
        let aliases = aliases
            .iter()
            .filter_map(|(a, c)| Some((normalise(a)?, *index.get(&normalise(c)?)?)))
            .collect();
        let vectors = match &embedder {
            Some(e) => {
                let texts: Vec<String> = kept.iter().filter_map(|t| embed_text(t)).collect();
                e.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())?
            }
            None => Vec::new(),
        };
        Ok(Vocabulary {
            tags: kept,
            index,
            aliases,
            embedder,
            vectors,
            threshold,
        })
    }

    /// Maps each raw tag, in order. The tags that neither match nor have an alias are
    /// embedded together in one batched call.
    pub fn map(&self, raw: &[String]) -> Result<Vec<Mapping>> {
        let mut out: Vec<Mapping> = raw.iter().map(|r| self.lookup(r)).collect();
        let Some(embedder) = &self.embedder else {
            return Ok(out);
        };
        let pending: Vec<(usize, String)> = out
            .iter()
            .enumerate()
            .filter(|(_, m)| m.method == Method::Unmapped)
            .filter_map(|(i, m)| Some((i, embed_text(&m.raw)?)))
            .collect();
        if pending.is_empty() || self.tags.is_empty() {
            return Ok(out);
        }
        let queries: Vec<&str> = pending.iter().map(|(_, t)| t.as_str()).collect();
        for ((i, _), vector) in pending.iter().zip(embedder.embed(&queries)?) {
            let (best, similarity) = self.nearest(&vector);
            out[*i].similarity = Some(similarity);
            if similarity >= self.threshold {
                out[*i].tag = Some(self.tags[best].clone());
                out[*i].method = Method::Embedding;
            }
        }
        Ok(out)
    }

    /// The exact and alias steps.
    fn lookup(&self, raw: &str) -> Mapping {
        let norm = normalise(raw);
        let found = norm.as_ref().and_then(|n| {
            (self.index.get(n).map(|&i| (i, Method::Exact)))
                .or_else(|| self.aliases.get(n).map(|&i| (i, Method::Alias)))
        });
        Mapping {
            raw: raw.to_string(),
            tag: found.map(|(i, _)| self.tags[i].clone()),
            method: found.map_or(Method::Unmapped, |(_, m)| m),
            similarity: None,
        }
    }

    /// The most similar vocabulary tag (the first, on ties) and its similarity.
    fn nearest(&self, vector: &[f32]) -> (usize, f32) {
        self.vectors
            .iter()
            .map(|v| cosine(v, vector))
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
                if s > best.1 {
                    (i, s)
                } else {
                    best
                }
            })
    }
}

/// The text a tag is embedded as: its normalised form with underscores as spaces (the
/// normaliser keeps them only in kaomoji).
fn embed_text(tag: &str) -> Option<String> {
    Some(normalise(tag)?.replace('_', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tags: &[&str], aliases: &[(&str, &str)]) -> Vocabulary {
        let aliases = aliases
            .iter()
            .map(|(a, c)| (a.to_string(), c.to_string()))
            .collect();
        let tags = tags.iter().map(|t| t.to_string()).collect();
        Vocabulary::new(tags, &aliases, None, DEFAULT_THRESHOLD).unwrap()
    }

    fn map(v: &Vocabulary, raw: &[&str]) -> Vec<(Option<String>, Method)> {
        let raw: Vec<String> = raw.iter().map(|r| r.to_string()).collect();
        v.map(&raw)
            .unwrap()
            .into_iter()
            .map(|m| (m.tag, m.method))
            .collect()
    }

    #[test]
    fn exact_matches_after_normalising() {
        let v = vocab(&["long_hair", "cat"], &[]);
        assert_eq!(
            map(&v, &["Long Hair", "  CAT ", "long_hair"]),
            vec![
                (Some("long_hair".into()), Method::Exact),
                (Some("cat".into()), Method::Exact),
                (Some("long_hair".into()), Method::Exact),
            ]
        );
    }

    #[test]
    fn aliases_come_after_exact_matches() {
        let v = vocab(
            &["cat", "kitty", "car"],
            &[("Kitty", "cat"), ("Auto_Mobile", "car")],
        );
        assert_eq!(
            map(&v, &["kitty", "auto mobile"]),
            vec![
                (Some("kitty".into()), Method::Exact),
                (Some("car".into()), Method::Alias),
            ]
        );
    }

    #[test]
    fn unmapped_without_an_embedder() {
        let v = vocab(&["cat"], &[("kitten", "lion")]);
        let raw = vec!["kitten".to_string(), "   ".to_string()];
        let out = v.map(&raw).unwrap();
        assert_eq!(out.len(), 2);
        for (m, r) in out.iter().zip(&raw) {
            assert_eq!(
                (m.raw.as_str(), &m.tag, m.method, m.similarity),
                (r.as_str(), &None, Method::Unmapped, None)
            );
        }
    }

    #[test]
    fn duplicate_spellings_keep_the_first() {
        let v = vocab(&["Red_Hair", "red hair"], &[]);
        assert_eq!(
            map(&v, &["red hair"]),
            vec![(Some("Red_Hair".into()), Method::Exact)]
        );
    }

    #[test]
    fn methods_serialise_in_snake_case() {
        let m = Mapping {
            raw: "x".into(),
            tag: None,
            method: Method::Unmapped,
            similarity: None,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"raw":"x","tag":null,"method":"unmapped","similarity":null}"#
        );
    }

    proptest::proptest! {
        /// Any free text maps to a vocabulary tag or to nothing, one mapping per input.
        #[test]
        fn maps_any_text(raw in proptest::collection::vec(crate::testing::hostile_text(), 0..12)) {
            let v = vocab(&["cat", "é🐥", "long_hair", "中文"], &[("kitty", "cat"), ("🐥", "é🐥")]);
            let out = v.map(&raw).unwrap();
            proptest::prop_assert_eq!(out.len(), raw.len());
            for (m, r) in out.iter().zip(&raw) {
                proptest::prop_assert_eq!(&m.raw, r);
                proptest::prop_assert_eq!(m.tag.is_some(), m.method != Method::Unmapped);
            }
        }
    }

    #[test]
    fn rejects_a_nan_threshold() {
        assert!(Vocabulary::new(vec![], &BTreeMap::new(), None, f32::NAN).is_err());
    }
}
