//! Analyses computed from stored outputs only, never by re-running a model.
//!
//! `metrics` is pure (counts in, numbers out, scikit-learn's definitions); `load` counts in
//! DuckDB over a run's tables. Callers: `iw-lab run` (leaderboard at the end) and
//! `iw-lab metrics`.

pub mod load;
pub mod metrics;

pub use metrics::VariantMetrics;
