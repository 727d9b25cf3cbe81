//! What identifies a model's outputs: its kind, version, fingerprint and files. Cache keys
//! and run manifests are made of it.

use std::path::PathBuf;

use serde::Serialize;

/// Everything that identifies an engine's outputs, for cache keys and run manifests.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub kind: &'static str,
    /// Bumped when the engine's preprocessing or parsing changes.
    pub version: u32,
    /// blake3 over the content of the model's files and everything that shapes its outputs.
    pub fingerprint: String,
    /// Preprocessing and other settings that enter the cache key.
    pub spec: serde_json::Value,
    pub files: Vec<FileInfo>,
}

/// A file an engine depends on.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub role: &'static str,
    pub source: String,
    pub path: PathBuf,
    pub blake3: String,
    pub sha256: String,
}
