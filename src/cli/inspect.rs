//! `iw-lab inspect FILE... [--json]`: the generation metadata embedded in image files.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use rayon::prelude::*;
use serde_json::{json, Value};

use super::Env;
use crate::metadata::{self, GenMeta};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object per line: `file` and the fields of docs/metadata.md (null when absent).
    #[arg(long)]
    pub json: bool,
    /// Print the raw carriers (every text found, where) in the human-readable form too.
    #[arg(long)]
    pub raw: bool,
    /// After the files, print to stderr how many bytes were read against the files' size.
    #[arg(long)]
    pub stats: bool,
    /// Image files, or folders (searched recursively for image files).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

struct Inspected {
    file: String,
    result: Result<(GenMeta, u64), String>,
    size: u64,
}

fn inspect_one(path: &std::path::Path) -> Inspected {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let result = (|| {
        // Unbuffered, as in `metadata::read_path`: only headers and metadata are read.
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let carriers = metadata::container::read_carriers(&mut file).map_err(|e| e.to_string())?;
        let bytes = carriers.bytes_read;
        Ok((metadata::generators::parse(&carriers), bytes))
    })();
    Inspected {
        file: path.display().to_string(),
        result,
        size,
    }
}

/// The `--json` object: `file`, then the metadata fields.
pub fn json_object(file: &str, meta: &GenMeta) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("file".into(), json!(file));
    if let Value::Object(fields) = serde_json::to_value(meta).unwrap_or(Value::Null) {
        obj.extend(fields);
    }
    Value::Object(obj)
}

fn fmt_num(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The human-readable form being built: the file name, then aligned `key value` lines.
struct Lines(String);

impl Lines {
    /// Adds one `key value` line; a value's further lines are indented under its first.
    fn line(&mut self, k: &str, v: String) {
        let v = v.trim_end().replace('\n', "\n                  ");
        self.0.push_str(&format!("  {:<16}{v}\n", format!("{k} ")));
    }

    /// The generator and the prompts (positive, negative, extra).
    fn prompts(&mut self, m: &GenMeta) {
        self.line(
            "generator",
            m.generator.clone().unwrap_or_else(|| "(none)".into()),
        );
        if let Some(p) = &m.prompt {
            self.line("prompt", p.clone());
        }
        if let Some(p) = m.negative_prompt.as_deref().filter(|p| !p.is_empty()) {
            self.line("negative prompt", p.to_string());
        }
        for e in &m.extra_prompts {
            let region = e
                .region
                .as_deref()
                .map(|r| format!(" [{r}]"))
                .unwrap_or_default();
            self.line(
                &format!("{} prompt", e.kind),
                format!("{}{region}", e.prompt),
            );
        }
    }

    /// The sampling settings on one line, when any is known.
    fn settings(&mut self, m: &GenMeta) {
        let mut settings = Vec::new();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                settings.push(format!("{k}: {v}"));
            }
        };
        push("seed", m.seed.map(|s| s.to_string()));
        push("steps", m.steps.map(|s| s.to_string()));
        push("sampler", m.sampler.clone());
        push("scheduler", m.scheduler.clone());
        push("cfg", m.cfg.map(fmt_num));
        push("denoise", m.denoise.map(fmt_num));
        push("clip skip", m.clip_skip.map(|s| s.to_string()));
        if !settings.is_empty() {
            self.line("settings", settings.join(", "));
        }
    }

    /// The model (with its hash), the VAE and the LoRAs (with their weights).
    fn models(&mut self, m: &GenMeta) {
        if let Some(model) = &m.model {
            let hash = m
                .model_hash
                .as_deref()
                .map(|h| format!(" [{h}]"))
                .unwrap_or_default();
            self.line("model", format!("{model}{hash}"));
        }
        if let Some(v) = &m.vae {
            self.line("vae", v.clone());
        }
        for l in m.loras.iter().flatten() {
            let w = match (l.weight, l.clip_weight) {
                (Some(w), Some(c)) => format!(" model {} clip {}", fmt_num(w), fmt_num(c)),
                (Some(w), None) => format!(" {}", fmt_num(w)),
                (None, Some(c)) => format!(" clip {}", fmt_num(c)),
                (None, None) => String::new(),
            };
            self.line("lora", format!("{}{w}", l.name));
        }
    }

    /// The generation size, with the file's pixel size when it differs.
    fn size(&mut self, m: &GenMeta) {
        let size = |w: Option<u32>, h: Option<u32>| match (w, h) {
            (Some(w), Some(h)) => Some(format!("{w}×{h}")),
            _ => None,
        };
        let gen = size(m.width, m.height);
        let px = size(m.pixel_width, m.pixel_height);
        match (gen, px) {
            (Some(g), Some(p)) if g != p => self.line("size", format!("{g} (file {p})")),
            (_, Some(p)) => self.line("size", p),
            (Some(g), None) => self.line("size", g),
            _ => {}
        }
    }

    /// The other parameters, the raw carriers (or their keys unless `raw`), and the warnings.
    fn rest(&mut self, m: &GenMeta, raw: bool) {
        for (k, v) in &m.params {
            self.line(&format!("· {k}"), v.clone());
        }
        if raw {
            for r in &m.raw {
                let v: String = r.value.chars().take(200).collect();
                self.line(&format!("raw {}", r.key), format!("({}) {v}", r.location));
            }
        } else if !m.raw.is_empty() {
            let keys: Vec<&str> = m.raw.iter().map(|r| r.key.as_str()).collect();
            self.line("unmapped", format!("{} (see --raw)", keys.join(", ")));
        }
        for w in &m.warnings {
            self.line("warning", w.clone());
        }
    }
}

/// The human-readable form of one file's metadata.
fn human(file: &str, m: &GenMeta, raw: bool) -> String {
    let mut out = Lines(format!("{file}\n"));
    out.prompts(m);
    out.settings(m);
    out.models(m);
    out.size(m);
    out.rest(m, raw);
    out.0
}

pub fn run(_env: &Env, args: Args) -> Result<ExitCode> {
    let files = super::predict::expand(&args.files);
    if files.is_empty() {
        anyhow::bail!("no image files found in the given paths");
    }
    let results: Vec<Inspected> = files.par_iter().map(|p| inspect_one(p)).collect();
    let mut failed = 0;
    let (mut read, mut total) = (0u64, 0u64);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for r in &results {
        total += r.size;
        match &r.result {
            Ok((meta, bytes)) => {
                read += bytes;
                if args.json {
                    serde_json::to_writer(&mut out, &json_object(&r.file, meta))?;
                    writeln!(out)?;
                } else {
                    // Text from the file is shown, never obeyed by the terminal.
                    write!(
                        out,
                        "{}",
                        crate::ui::visible(&human(&r.file, meta, args.raw))
                    )?;
                }
            }
            Err(e) => {
                failed += 1;
                out.flush()?;
                crate::ui::error_line(format!("error: {}: {e}", r.file));
            }
        }
    }
    out.flush()?;
    if args.stats {
        eprintln!(
            "{} files, {failed} unreadable; read {read} of {total} bytes ({:.2}%)",
            results.len(),
            100.0 * read as f64 / total.max(1) as f64
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
