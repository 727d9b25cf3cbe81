//! `iw-lab schema [KIND] [--out DIR]`: JSON Schemas for editors (YAML language server).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::config;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `dataset`, `model` or `experiment`; all three (as one JSON object) when omitted.
    pub kind: Option<String>,
    /// Write `<kind>.schema.json` files into this folder instead of printing.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let kinds: Vec<&str> = match &args.kind {
        Some(k) if config::KINDS.contains(&k.as_str()) => vec![k.as_str()],
        Some(k) => bail!(
            "unknown config kind `{k}`; expected one of {}",
            config::KINDS.join(", ")
        ),
        None => config::KINDS.to_vec(),
    };
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        for k in &kinds {
            let path = dir.join(format!("{k}.schema.json"));
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&config::schema(k).expect("known kind"))?,
            )?;
            ui::note(format!("wrote {}", path.display()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let doc = if kinds.len() == 1 {
        config::schema(kinds[0]).expect("known kind")
    } else {
        serde_json::Value::Object(
            kinds
                .iter()
                .map(|k| (k.to_string(), config::schema(k).expect("known kind")))
                .collect(),
        )
    };
    ui::out(serde_json::to_string_pretty(&doc)?);
    Ok(ExitCode::SUCCESS)
}
