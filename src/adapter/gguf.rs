//! In-process GGUF LLMs: NOT IMPLEMENTED YET. The interface the runner calls is fixed here;
//! loading a model fails with a clear error until the candle-based adapter lands.
use std::path::Path;

use anyhow::{bail, Result};

pub struct Gguf;
pub struct Sampling {
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub max_tokens: usize,
    pub seed: u64,
    pub stop: Vec<String>,
}
pub struct Generated {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: String,
    pub ms: f64,
}
impl Gguf {
    pub fn load(path: &Path) -> Result<Gguf> {
        bail!(
            "{}: the `gguf` adapter is not implemented yet in this build of iw-lab",
            path.display()
        )
    }
    pub fn generate(&self, _m: &[(String, String)], _s: &Sampling) -> Result<Generated> {
        bail!("the `gguf` adapter is not implemented yet")
    }
}
