//! Analyses computed from stored outputs only, never by re-running a model. Pure: rows in,
//! numbers out; the store (`crate::store`) reads and counts the run's tables.
//!
//! `metrics` has scikit-learn's definitions (counts in, numbers out); `load` assembles a run's
//! metrics from the counts of `store::counts`; `scores` holds a variant's scores from
//! `store::scores` for the other analyses. Callers: `iw-lab run` (leaderboard at the end),
//! `iw-lab metrics`, `analyze`, `diff` and the report.

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
