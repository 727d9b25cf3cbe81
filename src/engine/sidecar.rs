//! `sidecar`: predictions made by another tool, read from files, so any tagger's output can
//! be scored beside ours.
//!
//! Per image, in the model's `path:` folder: `<rel-path-stem>.txt` (comma-separated tags,
//! score 1.0) or `<rel-path-stem>.json` (`{"tags": {"tag": score}}`, or a list with score 1.0),
//! matched by the image's path relative to the dataset root, falling back to its file stem at
//! the top of the folder. The file's content hash enters the cache key, so edited predictions
//! are re-read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::{Capabilities, Engine, EngineError, Identity, Prepared, TagScore};
use crate::config::files::SidecarFormat;
use crate::config::{Category, Model};
use crate::dataset::ImageEntry;
use crate::tags;

pub const VERSION: u32 = 1;

/// The factory's entry for `sidecar`: its cells also read the sidecar file, so that file's
/// content is part of each cell's key.
pub(super) struct Kind;

impl super::Maker for Kind {
    fn identify(
        &self,
        model: &Model,
        _ctx: &super::Context,
        _download: bool,
    ) -> anyhow::Result<Option<Identity>> {
        Ok(Some(identify(model)))
    }

    fn capabilities(&self, _model: &Model) -> Capabilities {
        capabilities()
    }

    fn cell_inputs(&self, model: &Model, images: &[ImageEntry]) -> Vec<(usize, String)> {
        use rayon::prelude::*;
        let engine = Sidecar::new(model);
        images
            .par_iter()
            .enumerate()
            .filter_map(|(i, img)| Some((i, engine.cell_input(img)?)))
            .collect()
    }

    fn load(
        &self,
        model: &Model,
        _identity: &Identity,
        _ctx: &super::Context,
    ) -> anyhow::Result<std::sync::Arc<dyn Engine>> {
        Ok(std::sync::Arc::new(Sidecar::new(model)))
    }
}

fn identify(model: &Model) -> Identity {
    let src = format!(
        "sidecar/{VERSION}\nformat:{:?}\naliases:{}\n",
        model.sidecar_format,
        serde_json::to_string(&model.aliases).unwrap_or_default()
    );
    Identity {
        kind: "sidecar",
        version: VERSION,
        fingerprint: blake3::hash(src.as_bytes()).to_hex().to_string(),
        spec: serde_json::json!({ "format": model.sidecar_format }),
        files: Vec::new(),
    }
}

/// What a sidecar model can do: tags, read from files, no pixels needed.
fn capabilities() -> Capabilities {
    Capabilities {
        tags: true,
        max_batch: 64,
        ..Capabilities::default()
    }
}

pub struct Sidecar {
    dir: PathBuf,
    format: SidecarFormat,
    aliases: tags::Aliases,
}

impl Sidecar {
    pub fn new(model: &Model) -> Sidecar {
        Sidecar {
            dir: model.sidecar_dir.clone().unwrap_or_default(),
            format: model.sidecar_format,
            aliases: model.aliases.clone(),
        }
    }

    fn extensions(&self) -> &'static [&'static str] {
        match self.format {
            SidecarFormat::Auto => &["json", "txt"],
            SidecarFormat::Txt => &["txt"],
            SidecarFormat::Json => &["json"],
        }
    }

    /// Candidate prediction files for an image, in order of preference.
    fn candidates(&self, rel: &str) -> Vec<PathBuf> {
        // The exact file name, also when it is not UTF-8.
        let rel_path = crate::dataset::names::rel_path(rel);
        let stem = rel_path.file_stem().unwrap_or_default().to_os_string();
        let mut out = Vec::new();
        // A loose file's path (`iw-lab predict /abs/a.png`, `../a.png`) is not relative to
        // the predictions folder: joined, it would name the image's own sibling files.
        let inside = rel_path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        for ext in self.extensions().iter().filter(|_| inside) {
            out.push(self.dir.join(&rel_path).with_extension(ext));
            let mut full = self.dir.join(&rel_path).into_os_string();
            full.push(format!(".{ext}"));
            out.push(PathBuf::from(full));
        }
        for ext in self.extensions() {
            let mut name = stem.clone();
            name.push(format!(".{ext}"));
            out.push(self.dir.join(name));
        }
        out.dedup();
        out
    }

    fn find(&self, rel: &str) -> Option<PathBuf> {
        self.candidates(rel).into_iter().find(|p| p.is_file())
    }

    fn parse(&self, path: &Path, text: &str) -> Result<Vec<TagScore>, String> {
        let is_json = path.extension().is_some_and(|e| e == "json");
        let raw: Vec<(String, f32)> = if is_json {
            parse_json_scores(text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            text.split([',', '\n'])
                .map(|t| (t.to_string(), 1.0))
                .collect()
        };
        let scores = raw.into_iter().filter_map(|(t, s)| {
            let tag = self.aliases.apply(tags::normalise(&t)?);
            Some(TagScore {
                tag: Arc::from(tag),
                score: s,
                category: Category::General,
            })
        });
        Ok(super::filter_scores(scores, f32::MIN))
    }
}

/// `{"tags": {"tag": score}}`, `{"tags": ["tag"]}`, `{"tag": score}` or `["tag"]`.
fn parse_json_scores(text: &str) -> Result<Vec<(String, f32)>, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let inner = match &v {
        Value::Object(o) if o.contains_key("tags") => &o["tags"],
        other => other,
    };
    match inner {
        Value::Object(o) => o
            .iter()
            .map(|(k, s)| {
                s.as_f64()
                    .map(|s| (k.clone(), s as f32))
                    .ok_or_else(|| format!("score of `{k}` is not a number"))
            })
            .collect(),
        Value::Array(a) => Ok(a
            .iter()
            .filter_map(|t| t.as_str())
            .map(|t| (t.to_string(), 1.0))
            .collect()),
        _ => Err("expected {\"tags\": {\"tag\": score}} or a list of tags".into()),
    }
}

impl Engine for Sidecar {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    fn kind(&self) -> &'static str {
        "sidecar"
    }

    fn cell_input(&self, image: &ImageEntry) -> Option<String> {
        let Some(path) = self.find(&image.rel) else {
            return Some("missing".into());
        };
        let bytes = std::fs::read(&path).ok()?;
        Some(format!(
            "{}:{}",
            path.extension()
                .map(|e| e.to_string_lossy())
                .unwrap_or_default(),
            blake3::hash(&bytes).to_hex()
        ))
    }

    fn prepare(
        &self,
        image: &ImageEntry,
        _pixels: Option<&RgbImage>,
    ) -> Result<Prepared, EngineError> {
        let Some(path) = self.find(&image.rel) else {
            let looked: Vec<String> = self
                .candidates(&image.rel)
                .iter()
                .take(2)
                .map(|p| p.display().to_string())
                .collect();
            return Err(EngineError::Input(format!(
                "no prediction file (looked for {})",
                looked.join(", ")
            )));
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| EngineError::Input(format!("cannot read {}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&bytes);
        self.parse(&path, &text)
            .map(Prepared::Done)
            .map_err(EngineError::Input)
    }

    fn infer(&self, batch: Vec<Prepared>, floor: f32) -> Vec<Result<Vec<TagScore>, EngineError>> {
        batch
            .into_iter()
            .map(|p| match p {
                Prepared::Done(scores) => {
                    Ok(scores.into_iter().filter(|s| s.score >= floor).collect())
                }
                Prepared::Tensor(_) | Prepared::Vector(_) | Prepared::Staged(_) => {
                    Err(EngineError::Input("a sidecar model got a tensor".into()))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_forms() {
        assert_eq!(
            parse_json_scores(r#"{"tags": {"a": 0.5}}"#).unwrap(),
            vec![("a".to_string(), 0.5)]
        );
        assert_eq!(
            parse_json_scores(r#"{"tags": ["a"]}"#).unwrap(),
            vec![("a".to_string(), 1.0)]
        );
        assert_eq!(
            parse_json_scores(r#"{"b": 1}"#).unwrap(),
            vec![("b".to_string(), 1.0)]
        );
        assert!(parse_json_scores(r#"{"tags": {"a": "x"}}"#).is_err());
    }

    #[test]
    fn candidates_by_relative_path_then_stem() {
        let s = Sidecar {
            dir: PathBuf::from("/p"),
            format: SidecarFormat::Txt,
            aliases: Default::default(),
        };
        assert_eq!(
            s.candidates("sub/img.png"),
            vec![
                PathBuf::from("/p/sub/img.txt"),
                PathBuf::from("/p/sub/img.png.txt"),
                PathBuf::from("/p/img.txt")
            ]
        );
        // A loose file named by an absolute or parent path is found by its stem only, never
        // by its own sibling `.txt`.
        assert_eq!(
            s.candidates("/data/img.png"),
            vec![PathBuf::from("/p/img.txt")]
        );
        assert_eq!(
            s.candidates("../img.png"),
            vec![PathBuf::from("/p/img.txt")]
        );
    }
}
