//! A run's stored outputs turned into numbers, in two steps: the store counts
//! (`store::counts`), then analysis computes (`analysis::load`). Shared by the runner,
//! `iw-lab metrics` and the report.

use anyhow::Result;

use crate::analysis::load::{self, Scored};
use crate::analysis::VariantMetrics;
use crate::store::{self, duck::Connection};

/// Metrics for each (variant, threshold) of the run whose views are open on `conn`
/// (`store::tables::open_run`), scored against ground-truth `source`. With `only`, only those
/// image paths are scored.
pub fn run_metrics(
    conn: &Connection<'_>,
    source: &str,
    variants: &[Scored],
    only: Option<&[String]>,
) -> Result<Vec<VariantMetrics>> {
    let counted = store::counts::count(conn, source, &load::units(variants), only)?;
    Ok(load::metrics(variants, &counted))
}
