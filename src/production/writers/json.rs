//! JSON sidecars: the decided tags, every stored score, the caption if any, and provenance.
//! A JSON file that iw-lab did not write is never overwritten.

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::{JsonOptions, Rendered};
use crate::postprocess::Decided;

/// Where a sidecar's tags came from.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub config: String,
    pub config_hash: String,
    pub model: String,
    pub model_fingerprint: String,
    pub run_id: Option<String>,
    pub tool_version: String,
}

/// The document for one image. `scores` are every stored score, highest first.
pub fn document(
    image: &Path,
    image_hash: &str,
    decided: &[Decided],
    scores: &[(String, f32, crate::config::Category)],
    caption: Option<&str>,
    provenance: &Provenance,
) -> serde_json::Value {
    let mut sorted: Vec<&(String, f32, crate::config::Category)> = scores.iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut all = serde_json::Map::new();
    for (t, s, _) in sorted {
        all.insert(t.clone(), json!(round(*s)));
    }
    json!({
        "generator": "iw-lab",
        "file": image.file_name().map(|n| n.to_string_lossy().into_owned()),
        "image_hash": image_hash,
        "tags": decided.iter().map(|d| d.tag.clone()).collect::<Vec<_>>(),
        "categories": decided.iter().map(|d| (d.tag.clone(), json!(d.category))).collect::<serde_json::Map<_, _>>(),
        "scores": all,
        "caption": caption,
        "provenance": provenance,
    })
}

fn round(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

/// Errors that stop a JSON sidecar from being written.
#[derive(Debug, thiserror::Error)]
#[error("{path} exists and was not written by iw-lab; refusing to overwrite it")]
pub struct Foreign {
    pub path: String,
}

/// Renders the JSON sidecar of `image` (refusing to replace a file iw-lab did not write).
pub fn render(
    image: &Path,
    existing: Option<&str>,
    doc: &serde_json::Value,
    opts: &JsonOptions,
) -> Result<Rendered, Foreign> {
    let path = opts.path(image);
    let old: Option<serde_json::Value> = match existing {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.get("generator").and_then(|g| g.as_str()) == Some("iw-lab") => Some(v),
            _ => {
                return Err(Foreign {
                    path: path.display().to_string(),
                })
            }
        },
    };
    let tags_of = |v: &serde_json::Value| -> Vec<String> {
        v.get("tags")
            .and_then(|t| t.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let new_tags = tags_of(doc);
    let old_tags = old.as_ref().map(tags_of).unwrap_or_default();
    let (added, removed) = super::diff(&old_tags, &new_tags);
    let content = format!(
        "{}\n",
        serde_json::to_string_pretty(doc).expect("JSON values serialise")
    );
    Ok(Rendered {
        path,
        unchanged: existing == Some(content.as_str()),
        content: content.into_bytes(),
        added,
        removed,
        ours: new_tags,
    })
}
