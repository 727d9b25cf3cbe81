//! Analyses computed from stored outputs only, never by re-running a model.
//!
//! `metrics` is pure (counts in, numbers out, scikit-learn's definitions); `load` counts in
//! DuckDB over a run's tables. Callers: `iw-lab run` (leaderboard at the end) and
//! `iw-lab metrics`.

pub mod agreement;
pub mod bootstrap;
pub mod diff;
pub mod eval;
pub mod group;
pub mod judges;
pub mod load;
pub mod metrics;
pub mod postprocess;
pub mod scores;
pub mod stats;
pub mod sweep;

pub use metrics::VariantMetrics;
