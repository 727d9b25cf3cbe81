//! `iw-lab promote RUN VARIANT [--alias A]`, `--list`, `--rollback`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::table::{num, Table};
use super::Env;
use crate::production::promote;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run (id, prefix, `latest`).
    pub run: Option<String>,
    /// The variant to promote.
    pub variant: Option<String>,
    /// Production alias (default `production`).
    #[arg(long, default_value = "production")]
    pub alias: String,
    /// Threshold to freeze (default: the variant's best by the run's goal).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// List aliases and their history.
    #[arg(long, conflicts_with_all = ["run", "variant", "rollback", "threshold"])]
    pub list: bool,
    /// Restore the alias's previous promotion.
    #[arg(long, conflicts_with_all = ["run", "variant", "threshold"])]
    pub rollback: bool,
    /// With --rollback: restore this history entry instead.
    #[arg(long, requires = "rollback", value_name = "ENTRY")]
    pub to: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    if args.list {
        return list(env, &args);
    }
    if args.rollback {
        let h = promote::rollback(&env.project, &args.alias, args.to.as_deref())?;
        if args.json {
            ui::json_line(&json!({ "alias": args.alias, "current": h }));
        } else {
            ui::out(format!(
                "{}: rolled back to entry {} ({} from run {}, threshold {})",
                args.alias, h.entry, h.variant, h.run_id, h.threshold
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(run), Some(variant)) = (args.run.as_deref(), args.variant.as_deref()) else {
        bail!("give a run and a variant (iw-lab promote RUN VARIANT), or --list / --rollback");
    };
    let ctx = env.engine_context()?;
    let req = promote::Request {
        run,
        variant,
        alias: &args.alias,
        threshold: args.threshold,
    };
    let (config, path) = promote::promote(&env.project, &ctx, &req)?;
    if args.json {
        ui::json_line(&json!({
            "alias": config.alias, "path": path, "config_hash": config.hash(),
            "run_id": config.from.run_id, "variant": config.from.variant,
            "threshold": config.postprocess.threshold, "metrics": config.from.metrics,
            "model": config.model.name, "fingerprint": config.model.fingerprint,
        }));
    } else {
        ui::out(format!(
            "promoted {} from run {} as `{}` (threshold {}) → {}",
            config.from.variant,
            config.from.run_id,
            config.alias,
            config.postprocess.threshold,
            path.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(env: &Env, args: &Args) -> Result<ExitCode> {
    let aliases = promote::aliases(&env.project);
    let mut docs = Vec::new();
    for a in &aliases {
        docs.push((a.clone(), promote::history(&env.project, a)?));
    }
    if args.json {
        let v: Vec<_> = docs
            .iter()
            .map(|(a, h)| json!({ "alias": a, "current": h.iter().find(|e| e.current).map(|e| &e.entry), "history": h }))
            .collect();
        ui::json_line(&json!({ "aliases": v }));
        return Ok(ExitCode::SUCCESS);
    }
    if docs.is_empty() {
        ui::out("no promotions yet; promote a variant with: iw-lab promote RUN VARIANT");
        return Ok(ExitCode::SUCCESS);
    }
    for (alias, history) in docs {
        let mut t = Table::new(&[
            "",
            "entry",
            "promoted",
            "run",
            "variant",
            "threshold",
            "f1_micro",
            "config",
        ]);
        for h in history.iter().rev() {
            t.row(vec![
                if h.current { "*".into() } else { String::new() },
                h.entry.clone(),
                h.promoted_at.clone(),
                h.run_id.clone(),
                h.variant.clone(),
                format!("{}", h.threshold),
                num(h.metrics.get("f1_micro").copied()),
                h.config_hash[..12].to_string(),
            ]);
        }
        ui::out(format!("{alias}\n{}\n", t.render()));
    }
    Ok(ExitCode::SUCCESS)
}
