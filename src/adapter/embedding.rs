//! Sentence embeddings: NOT IMPLEMENTED YET. The interface is fixed here; loading a model
//! fails with a clear error until the candle BERT adapter lands.
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub struct Embedder;
impl Embedder {
    pub fn load(dir: &Path) -> Result<Embedder> {
        bail!(
            "{}: the `embedding` adapter is not implemented yet",
            dir.display()
        )
    }
    pub fn fetch(_f: &crate::fetch::Fetcher, source: &str) -> Result<PathBuf> {
        bail!("{source}: the `embedding` adapter is not implemented yet")
    }
    pub fn dim(&self) -> usize {
        0
    }
    pub fn embed(&self, _t: &[&str]) -> Result<Vec<Vec<f32>>> {
        bail!("the `embedding` adapter is not implemented yet")
    }
}
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
