//! Which ground truth a finished run is scored against. A run's `ground_truth.parquet` is the
//! snapshot of when it ran; after the studio (or anything else) edits the dataset's sidecars,
//! `metrics`, `analyze`, `report` and the studio score against the dataset's *current* ground
//! truth by default, read again from its source, and `--ground-truth snapshot` scores against
//! the run's copy. No model runs again: ground truth is in no cache key.

use anyhow::Result;

use crate::config::Project;
use crate::dataset::ImageEntry;
use crate::store::duck::Connection;
use crate::store::{self, Manifest, RunDir};
use crate::words::GroundTruthKind;

/// The ground truth asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Choice {
    /// The dataset's ground truth as it is now (read again from its source).
    #[default]
    Current,
    /// The run's own copy, from when it ran.
    Snapshot,
}

/// The ground truth used, for the output to say.
#[derive(Debug, Clone, PartialEq)]
pub enum Used {
    /// Read from the dataset now; `changed` when it differs from the run's snapshot.
    Current { source: String, changed: bool },
    /// The run's copy; with the reason when the current one was asked for but unavailable.
    Snapshot { why: Option<String> },
}

impl Used {
    pub fn changed(&self) -> bool {
        matches!(self, Used::Current { changed: true, .. })
    }

    /// One line: which ground truth, and why.
    pub fn describe(&self) -> String {
        match self {
            Used::Current { source, changed: true } => format!(
                "ground truth: current (`{source}` read from the dataset now; it differs from the run's snapshot)"
            ),
            Used::Current { source, changed: false } => format!(
                "ground truth: current (`{source}` read from the dataset now; same as the run's snapshot)"
            ),
            Used::Snapshot { why: None } => "ground truth: the run's snapshot".to_string(),
            Used::Snapshot { why: Some(w) } => {
                format!("ground truth: the run's snapshot ({w})")
            }
        }
    }
}

/// Opens `run`'s views on `conn` with the ground truth `choice` asks for.
pub fn choose(
    conn: &Connection<'_>,
    project: &Project,
    run: &RunDir,
    choice: Choice,
) -> Result<Used> {
    store::tables::open_run(conn, run)?;
    if choice == Choice::Snapshot {
        return Ok(Used::Snapshot { why: None });
    }
    let snapshot = |why: String| Ok(Used::Snapshot { why: Some(why) });
    let m = Manifest::read(&run.manifest_path())?;
    let Some(source) = m.dataset.ground_truth.clone() else {
        return snapshot("the dataset has no ground truth".into());
    };
    let ds = match crate::config::resolve::load_dataset(project, &m.dataset.file) {
        Ok(ds) => ds,
        Err(e) => return snapshot(format!("cannot read the dataset now: {e}")),
    };
    let Some(gt) = ds.ground_truth.iter().find(|g| g.name == source) else {
        return snapshot(format!("the dataset no longer has the source `{source}`"));
    };
    if gt.kind == GroundTruthKind::Prompt {
        return snapshot("prompt ground truth comes from the images themselves".into());
    }
    if !ds.root.is_dir() {
        return snapshot(format!("{} is not there", ds.root.display()));
    }
    let images = store::images::images(conn, true)?;
    let entries: Vec<ImageEntry> = images
        .iter()
        .map(|i| ImageEntry {
            rel: i.path.clone(),
            abs: ds.root.join(crate::dataset::names::rel_path(&i.path)),
            size: 0,
            mtime_ns: 0,
            hash: i.hash.clone(),
            format: i.format.clone(),
            width: None,
            height: None,
            meta: None,
        })
        .collect();
    let loaded = crate::dataset::ground_truth::load(&ds, gt, &entries);
    let mut rows = Vec::new();
    for (img, tags) in images.iter().zip(&loaded.tags) {
        match tags {
            Some(t) if t.is_empty() => rows.push((img.path.clone(), img.hash.clone(), None)),
            Some(t) => rows.extend(
                t.iter()
                    .map(|tag| (img.path.clone(), img.hash.clone(), Some(tag.clone()))),
            ),
            None => {}
        }
    }
    let changed = store::truth::replace_source(conn, run, &source, &rows)?;
    Ok(Used::Current { source, changed })
}
