//! Scores of prompt versions across runs (placeholder; replaced by the full module).
use std::path::Path;

pub struct BestVersion {
    pub hash: String,
    pub metric: String,
    pub value: f64,
    pub run_id: String,
    pub variant: String,
}

pub fn best_version(_root: &Path, _name: &str) -> anyhow::Result<Option<BestVersion>> {
    Ok(None)
}
