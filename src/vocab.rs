//! Mapping free-text tags onto a vocabulary: exact, then the alias table. (The embedding
//! similarity step is not implemented yet: with an embedder given, unmatched tags stay
//! unmapped.)
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::adapter::embedding::Embedder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Exact,
    Alias,
    Embedding,
    Unmapped,
}
#[derive(Debug, Clone, Serialize)]
pub struct Mapping {
    pub raw: String,
    pub tag: Option<String>,
    pub method: Method,
    pub similarity: Option<f32>,
}
pub struct Vocabulary {
    tags: Vec<String>,
    aliases: BTreeMap<String, String>,
}
impl Vocabulary {
    pub fn new(
        tags: Vec<String>,
        aliases: &BTreeMap<String, String>,
        _e: Option<Arc<Embedder>>,
        _t: f32,
    ) -> anyhow::Result<Vocabulary> {
        Ok(Vocabulary {
            tags,
            aliases: aliases.clone(),
        })
    }
    pub fn map(&self, raw: &[String]) -> anyhow::Result<Vec<Mapping>> {
        Ok(raw
            .iter()
            .map(|r| {
                let n = crate::tags::normalise(r).unwrap_or_default();
                if self.tags.contains(&n) {
                    Mapping {
                        raw: r.clone(),
                        tag: Some(n),
                        method: Method::Exact,
                        similarity: None,
                    }
                } else if let Some(a) = self.aliases.get(&n) {
                    Mapping {
                        raw: r.clone(),
                        tag: Some(a.clone()),
                        method: Method::Alias,
                        similarity: None,
                    }
                } else {
                    Mapping {
                        raw: r.clone(),
                        tag: None,
                        method: Method::Unmapped,
                        similarity: None,
                    }
                }
            })
            .collect())
    }
}
