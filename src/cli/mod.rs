//! The command line: argument parsing and one file per command, each a function from parsed
//! arguments to an exit status. Printing goes through `crate::ui`.
//!
//! Exit codes: 0 all good; 1 some items failed; 2 bad input or configuration.

mod analyze;
mod diff;
mod dupes;
mod faces;
mod inspect;
mod metrics;
mod plan;
mod predict;
mod promote;
mod prompts;
mod query;
mod report;
mod run;
mod runs;
mod scan;
mod schema;
mod serve;
mod similar;
mod sort;
pub(crate) mod table;
mod tag;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Project;
use crate::fetch::Fetcher;

/// A command-line lab for AI image tagging: YAML experiments, cached runs, metrics.
#[derive(Debug, Parser)]
#[command(name = "iw-lab", version, about, propagate_version = true)]
pub struct Cli {
    /// Project folder (holding datasets/, models/, experiments/, runs/); default: current folder.
    #[arg(long, global = true, env = "IW_LAB_PROJECT", value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Use only cached model files and libraries; never download.
    #[arg(long, global = true)]
    pub offline: bool,
    /// No progress bars or notes (results still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Print more (cache keys spelled out).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment: every cell cached by content, stored as a run, scored.
    Run(run::Args),
    /// Show an experiment's cells with cache hits and misses, without running anything.
    Plan(plan::Args),
    /// List or inspect runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Precision, recall, F1 (micro, macro, samples) and AP per variant and threshold.
    Metrics(metrics::Args),
    /// Tag images with one model and print every score (cached).
    Predict(predict::Args),
    /// Ad-hoc SQL (DuckDB) over a run's tables and all runs.
    Query(query::Args),
    /// Threshold sweeps, post-processing, bootstrap intervals, tag statistics, groups.
    Analyze(analyze::Args),
    /// Tags gained and lost between two variants of one run or two runs.
    Diff(diff::Args),
    /// One HTML file: leaderboard with intervals, charts, image grid, diff view.
    Report(report::Args),
    /// Index a dataset (hashes, generation metadata); report new, deleted, moved files.
    Scan(scan::Args),
    /// The generation metadata (prompt, seed, sampler, model, LoRAs...) embedded in images.
    Inspect(inspect::Args),
    /// Print the JSON Schema of a config file kind (dataset, model, experiment, production).
    Schema(schema::Args),
    /// Freeze a run's variant into a production config; list or roll back promotions.
    Promote(promote::Args),
    /// Tag folders with a production config, writing .txt / XMP / JSON sidecars.
    Tag(tag::Args),
    /// The studio: hand-tag a folder, review runs against ground truth, browse a folder.
    Serve(serve::Args),
    /// Exact and near-duplicate images by perceptual hash, grouped, with a keeper each.
    Dupes(dupes::Args),
    /// The images nearest an image in a CLIP/SigLIP model's embedding space.
    Similar(similar::SimilarArgs),
    /// The images that best match a text, by a CLIP/SigLIP model, with a relevance cut-off.
    Search(similar::SearchArgs),
    /// Prompt templates (prompts/NAME.j2): versions, their scores, diffs, rollback.
    #[command(subcommand)]
    Prompts(prompts::PromptsCommand),
    /// People: enrol, forget, cluster unknown faces, name, merge and split clusters.
    #[command(subcommand)]
    Faces(faces::FacesCommand),
    /// Learned sorting: suggest library folders for new images, apply, undo, evaluate.
    #[command(subcommand)]
    Sort(sort::SortCommand),
}

/// Shared state for commands.
pub struct Env {
    pub project: Project,
    pub fetcher: Fetcher,
    pub verbose: bool,
}

impl Env {
    /// What engines need: downloads, digests, and the project's face gallery when it has one.
    pub fn engine_context(&self) -> Result<crate::engine::Context> {
        let state = self.project.state_dir();
        if crate::store::faces::gallery_file(&state).is_file() {
            crate::store::duck::ensure(&self.fetcher)?;
        }
        let gallery = crate::store::faces::load_gallery(&state)?;
        Ok(crate::engine::Context::new(self.fetcher.clone()).with_gallery(gallery))
    }
}

/// Parses arguments, runs the command, prints errors, returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::ui::set_quiet(cli.quiet);
    let root = cli.project.clone().unwrap_or_else(|| PathBuf::from("."));
    let env = Env {
        project: Project::new(root),
        fetcher: Fetcher::new(cli.offline),
        verbose: cli.verbose,
    };
    let result = match cli.command {
        Command::Run(a) => run::run(&env, a),
        Command::Plan(a) => plan::run(&env, a),
        Command::Runs(c) => runs::run(&env, c),
        Command::Metrics(a) => metrics::run(&env, a),
        Command::Predict(a) => predict::run(&env, a),
        Command::Query(a) => query::run(&env, a),
        Command::Analyze(a) => analyze::run(&env, a),
        Command::Diff(a) => diff::run(&env, a),
        Command::Report(a) => report::run(&env, a),
        Command::Schema(a) => schema::run(a),
        Command::Inspect(a) => inspect::run(&env, a),
        Command::Scan(a) => scan::run(&env, a),
        Command::Promote(a) => promote::run(&env, a),
        Command::Tag(a) => tag::run(&env, a),
        Command::Prompts(c) => prompts::run(&env, c),
        Command::Faces(c) => faces::run(&env, c),
        Command::Sort(c) => sort::run(&env, c),
        Command::Serve(a) => serve::run(&env, a),
        Command::Dupes(a) => dupes::run(&env, a),
        Command::Similar(a) => similar::run_similar(&env, a),
        Command::Search(a) => similar::run_search(&env, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            ExitCode::from(2)
        }
    }
}

/// `error:` then `caused by:` lines; `hint:` lines kept apart and printed last.
pub fn print_error(e: &anyhow::Error) {
    let mut hints = Vec::new();
    let mut first = true;
    for cause in e.chain() {
        let text = cause.to_string();
        let mut lines = Vec::new();
        for line in text.lines() {
            match line.strip_prefix("hint: ") {
                Some(h) => hints.push(h.to_string()),
                None => lines.push(line),
            }
        }
        let msg = lines.join("\n  ");
        if first {
            crate::ui::error_line(format!("error: {msg}"));
            first = false;
        } else {
            crate::ui::error_line(format!("  caused by: {msg}"));
        }
    }
    for h in hints {
        crate::ui::error_line(format!("hint: {h}"));
    }
}
