//! `iw-lab predict --model MODEL IMAGE...`: every tag score for each image (cached).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::Env;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model file, or a name in models/.
    #[arg(long, short)]
    pub model: String,
    /// Print only scores at or above this (ratings are always printed); default: the model's
    /// score floor.
    #[arg(long, value_name = "X")]
    pub min_score: Option<f32>,
    /// One JSON object per line: {"file", "hash", "tags": {"tag": score}}.
    #[arg(long)]
    pub json: bool,
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub(crate) fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let exts = crate::config::resolve::DEFAULT_EXTENSIONS;
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .sort_by_file_name()
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .filter(|f| {
                    f.extension().is_some_and(|e| {
                        exts.contains(&e.to_string_lossy().to_lowercase().as_str())
                    })
                })
                .collect();
            out.append(&mut found);
        } else {
            out.push(p.clone());
        }
    }
    out
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    let path = env.project.model_path(&args.model)?;
    let model = crate::config::resolve::load_model(&env.project, &path)?;
    let files = expand(&args.images);
    let ctx = env.engine_context()?;
    let results = crate::runner::predict::predict(&env.project, &model, &files, &ctx)?;
    let min = args.min_score.unwrap_or(model.score_floor as f32);
    let mut failed = false;
    for r in &results {
        let keep = r
            .tags
            .iter()
            .filter(|(_, s, c)| *s >= min || *c == crate::config::Category::Rating);
        if args.json {
            let mut tags = Map::new();
            for (t, s, _) in keep {
                tags.insert(t.clone(), json!(round6(*s)));
            }
            let mut obj = json!({ "file": r.file, "hash": r.hash, "tags": Value::Object(tags) });
            if let Some(e) = &r.error {
                obj["error"] = json!(e);
            }
            ui::json_line(&obj);
        } else {
            let mut lines = vec![r.file.clone()];
            if let Some(e) = &r.error {
                lines.push(format!("  error: {e}"));
            }
            for (t, s, c) in keep {
                let cat = match c {
                    crate::config::Category::General => String::new(),
                    other => format!("  ({})", other.as_str()),
                };
                lines.push(format!("  {s:.4}  {t}{cat}"));
            }
            ui::out(lines.join("\n"));
        }
        failed |= r.error.is_some();
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Scores are float32; print them without float64 noise.
fn round6(x: f32) -> f64 {
    let v: f64 = format!("{x}").parse().unwrap_or(x as f64);
    v
}
