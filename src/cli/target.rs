//! The images a similarity command works on: a folder, a dataset (file or name in
//! datasets/), or a run (id, unique prefix, `latest`, or a run folder).

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::Env;
use crate::dataset::ImageEntry;

/// Images to compare, with where they live.
pub struct Target {
    /// The folder paths are relative to.
    pub root: PathBuf,
    pub images: Vec<ImageEntry>,
    /// Files that could not be read (path, reason).
    pub unreadable: Vec<(String, String)>,
}

/// The largest image file a command reads whole (1 GiB).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Reads an image file named on the command line: a regular file (through links) of at
/// most [`MAX_FILE_BYTES`]; a folder, FIFO or device is refused rather than read forever.
pub fn read_regular(path: &std::path::Path) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    if meta.len() > MAX_FILE_BYTES {
        anyhow::bail!(
            "{} is {} bytes; images over {MAX_FILE_BYTES} bytes are refused",
            path.display(),
            meta.len()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Resolves `arg` as a folder, then a dataset, then a run.
pub fn resolve(env: &Env, arg: &str) -> Result<Target> {
    let direct = PathBuf::from(arg);
    if direct.is_dir() && !direct.join("run.yaml").is_file() {
        let root = std::fs::canonicalize(&direct)
            .with_context(|| format!("cannot open {}", direct.display()))?;
        let mut ds = crate::studio::browse::folder_dataset(&root);
        // Where `dupes --script` sets copies aside: never input again.
        ds.exclude.push("duplicates/**".into());
        return scanned(env, ds);
    }
    if let Ok(path) = env.project.dataset_path(arg) {
        if path.is_file() {
            let ds = crate::config::resolve::load_dataset(&env.project, &path)?;
            return scanned(env, ds);
        }
    }
    crate::store::duck::ensure(&env.fetcher)?;
    let run = crate::store::resolve_run(&env.project.runs_dir(), arg).with_context(|| {
        format!("`{arg}` is not a folder, a dataset (datasets/{arg}.yaml) or a run")
    })?;
    let manifest = crate::store::Manifest::read(&run.manifest_path())?;
    if crate::store::VECTOR_CACHE_PREFIXES
        .iter()
        .any(|p| manifest.experiment.starts_with(p))
    {
        anyhow::bail!(
            "run {} holds the hashes or embeddings of an earlier `dupes`, `similar` or `search` call, not a set of images; give its folder instead",
            run.id
        );
    }
    let root = manifest.dataset.root.clone();
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    crate::store::tables::open_run(&conn, &run)?;
    let rows = crate::store::images::images(&conn, false)?;
    let images = rows
        .into_iter()
        .map(|r| ImageEntry {
            abs: root.join(&r.path),
            rel: r.path,
            size: 0,
            mtime_ns: 0,
            hash: r.hash,
            format: r.format,
            width: r.width.map(|w| w as u32),
            height: r.height.map(|h| h as u32),
            meta: r.meta.iter().any(|(k, _)| k == "generator").then(|| {
                Box::new(crate::dataset::ImageMeta {
                    generator: Some("(from the run)".into()),
                    ..Default::default()
                })
            }),
        })
        .collect();
    Ok(Target {
        root,
        images,
        unreadable: Vec::new(),
    })
}

fn scanned(env: &Env, ds: crate::dataset::Dataset) -> Result<Target> {
    let scan = crate::dataset::scan(&ds, &env.project.state_dir(), None)
        .with_context(|| format!("scanning {}", ds.root.display()))?;
    Ok(Target {
        root: ds.root.clone(),
        images: scan.images,
        unreadable: scan.unreadable,
    })
}
