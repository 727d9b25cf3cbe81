//! Sidecar writers for the production pass: `.txt` (LoRA training captions), XMP (photo
//! tools) and JSON (scores and provenance).
//!
//! Each writer is pure: given the image, the sidecar's current content (if any), what iw-lab
//! wrote there last time and the decided tags, it returns the new content and the tags gained
//! and lost. The production pass puts content on disk with `crate::atomic` (temporary file in
//! the same folder, fsync, rename), so a sidecar is never half-written. Formats are documented in `docs/outputs.md`.

pub mod encoding;
pub mod json;
pub mod txt;
pub mod xmp;

use std::path::PathBuf;

pub use crate::config::production::{
    ExistingMode, JsonOptions, RatingPlacement, TxtOptions, WriterKind, Writers, XmpNaming,
    XmpOptions,
};

/// A writer's result for one image.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub path: PathBuf,
    pub content: Vec<u8>,
    /// Tags the sidecar gains and loses (normalised), for `--dry-run`.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Tags iw-lab itself put there beyond what was already present (remembered so a later
    /// pass can replace them and keep the user's own).
    pub ours: Vec<String>,
    /// Whether the content is byte-identical to what is on disk.
    pub unchanged: bool,
}

/// Tags in `new` and not in `old`, and the reverse, by normalised form, in order.
pub fn diff(old: &[String], new: &[String]) -> (Vec<String>, Vec<String>) {
    let norm = |t: &String| crate::tags::normalise(t).unwrap_or_default();
    let old_n: std::collections::HashSet<String> = old.iter().map(norm).collect();
    let new_n: std::collections::HashSet<String> = new.iter().map(norm).collect();
    let added = new
        .iter()
        .filter(|t| !old_n.contains(&norm(t)))
        .cloned()
        .collect();
    let removed = old
        .iter()
        .filter(|t| !new_n.contains(&norm(t)))
        .cloned()
        .collect();
    (added, removed)
}
