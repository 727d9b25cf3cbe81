//! `iw-lab tag PATH... --config ALIAS`: the production pass.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::Env;
use crate::production::writers::WriterKind;
use crate::production::{self, ImageReport};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images or folders (searched recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Production alias (promoted/<alias>.yaml) or config file.
    #[arg(long, default_value = "production")]
    pub config: String,
    /// Sidecars to write: txt, xmp, json (default: the config's `writers.write`).
    #[arg(long, value_delimiter = ',')]
    pub write: Option<Vec<String>>,
    /// Write nothing; show what each sidecar would gain and lose (`-v` shows it for a real
    /// pass too; otherwise only failures are listed).
    #[arg(long)]
    pub dry_run: bool,
    /// Tag images again even when already tagged with this config.
    #[arg(long)]
    pub force: bool,
    /// Tag even when the model's files differ from the promoted ones.
    #[arg(long)]
    pub allow_drift: bool,
    /// Print one JSON object: the summary and every image not skipped.
    #[arg(long)]
    pub json: bool,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    let write = match &args.write {
        None => None,
        Some(list) => {
            let mut out = Vec::new();
            for w in list {
                match WriterKind::parse(w) {
                    Some(k) => out.push(k),
                    None => {
                        bail!("unknown sidecar kind `{w}` in --write; expected txt, xmp or json")
                    }
                }
            }
            Some(out)
        }
    };
    let loaded = crate::production::promote::load(&env.project, &args.config)?;
    let ctx = env.engine_context()?;
    let req = production::Request {
        paths: args.paths.clone(),
        write,
        dry_run: args.dry_run,
        force: args.force,
        allow_drift: args.allow_drift,
    };
    let mut reports: Vec<ImageReport> = Vec::new();
    let summary = production::tag(&env.project, &loaded, &ctx, &req, |r| {
        if args.json {
            reports.push(r.clone());
        } else if args.dry_run || env.verbose || r.status == "failed" {
            print_report(r, args.dry_run);
        }
    })?;
    if args.json {
        let mut doc = serde_json::to_value(&summary)?;
        doc["images_reported"] = json!(reports);
        ui::json_line(&doc);
    } else {
        let written: Vec<String> = summary
            .written
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let verb = if args.dry_run {
            "would change"
        } else {
            "tagged"
        };
        ui::out(format!(
            "{} images: {} {verb}{}, {} unchanged, {} skipped (already tagged), {} failed; {} inferences, {:.1}s",
            summary.images,
            summary.tagged,
            if written.is_empty() { String::new() } else { format!(" ({} written)", written.join(", ")) },
            summary.unchanged,
            summary.skipped,
            summary.failed,
            summary.inferences,
            summary.seconds
        ));
    }
    Ok(if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(r: &ImageReport, dry_run: bool) {
    if r.status == "unchanged" && !dry_run {
        return;
    }
    let mut lines = vec![format!("{} [{}]", r.file.display(), r.status)];
    for c in &r.changes {
        if c.unchanged {
            continue;
        }
        let mut diff: Vec<String> = c.added.iter().map(|t| format!("+{t}")).collect();
        diff.extend(c.removed.iter().map(|t| format!("-{t}")));
        lines.push(format!(
            "  {:4} {}{}  {}",
            c.writer.name(),
            c.path.display(),
            if c.created { " (new)" } else { "" },
            diff.join(" ")
        ));
    }
    for e in &r.errors {
        lines.push(format!("  error: {e}"));
    }
    ui::out(lines.join("\n"));
}
