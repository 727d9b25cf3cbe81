//! A run's stored outputs turned into numbers, in two steps: the store reads or counts
//! (`store::counts`, `store::scores`), then analysis computes (`analysis::load`,
//! `analysis::scores`). Shared by the runner, `iw-lab metrics`, `analyze`, `diff` and the
//! report.

use anyhow::Result;

use crate::analysis::load::{self, Scored};
use crate::analysis::scores::VariantScores;
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
    // a subset (the images every variant shares) only picks the winner: no intervals
    Ok(load::metrics(variants, &counted, only.is_none()))
}

/// Loads `variant` from the run whose views are open on `conn`. With `labelled_only`, only
/// images with ground truth in `source` are loaded (the scored images of `iw-lab metrics`);
/// otherwise every image with a finished cell (unlabelled ones have no `y`).
pub fn load_variant(
    conn: &Connection<'_>,
    source: Option<&str>,
    variant: &str,
    labelled_only: bool,
) -> Result<VariantScores> {
    let stored = store::scores::variant_scores(conn, source, variant, labelled_only)?;
    Ok(VariantScores::from_stored(variant, stored))
}
