//! iw-lab: a command-line lab for AI image tagging and captioning.
//!
//! The pipeline, module by module: `config` (typed YAML) → `plan` (cells and cache keys,
//! pure) → `runner` (cache lookup, `adapter`s, failures recorded) → `store` (run directories
//! of Parquet tables that DuckDB reads in place) → `analysis` (metrics from stored outputs).
//! `dataset` scans image folders and reads ground truth; `imaging` decodes and preprocesses;
//! `fetch` and `libs` bring model files and native libraries into the cache; `ui` prints.

pub mod analysis;
pub mod atomic;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod ensemble;
pub mod faces;
pub mod fetch;
pub mod hashing;
pub mod imaging;
pub mod libs;
pub mod metadata;
pub mod panics;
pub mod people;
pub mod plan;
pub mod postprocess;
pub mod production;
pub mod prompt;
pub mod prompt_scores;
pub mod report;
pub mod runner;
pub mod similarity;
pub mod sorting;
pub mod store;
pub mod studio;
pub mod tags;
pub mod templates;
#[cfg(test)]
pub(crate) mod testing;
pub mod textpost;
pub mod ui;
pub mod words;

/// Runs the command line; returns the process exit code.
pub fn run() -> std::process::ExitCode {
    cli::main()
}
