//! The run store: every run is an immutable directory `runs/<run-id>/` holding a manifest
//! (`run.yaml`) and Parquet tables that DuckDB reads in place. Runs are also the cache: a new
//! run looks its cache keys up in the cells of earlier runs and copies the hits in.
//!
//! ```text
//! runs/<run-id>/
//!   run.yaml                 manifest: resolved experiment, model fingerprints, counts, status
//!   images.parquet           one row per image (content hash, path, size, labelled)
//!   ground_truth.parquet     one row per image × ground-truth source × tag
//!   cells/part-*.parquet     one row per finished cell (variant × image × repeat) with its key
//!   outputs/part-*.parquet   one row per cell × tag with its score
//!   image_loras.parquet      one row per image × LoRA its generation metadata names
//!   texts/part-*.parquet     one row per prompted cell: prompt, raw answer, caption, mapping
//!   judgments/part-*.parquet one row per judge verdict (judge × cell × side)
//!   failures/part-*.parquet  one row per failed cell or unreadable input
//!   failures/judges-*.parquet one row per failed verdict
//!   metrics.json             metrics per variant and threshold (as `iw-lab metrics --json`)
//! .iw-lab/index/              the dataset scans' hash index (path, size, mtime → hash; `hashing`)
//! .iw-lab/thumbs/             report thumbnails cached by content hash
//! ```
//!
//! Parts are written to a temporary name and renamed, outputs before cells, so a cell is
//! visible to later runs only once its outputs are complete; a run killed at any instant loses
//! only the cells in flight. Layout documented in `docs/runs.md`.
//!
//! Every SQL statement in iw-lab lives here (the architecture test checks it): `writer` and
//! `judgments` write parts; `lookup` is the one cache lookup, for every kind of cached output
//! (tagger scores, prompted answers, ensemble outputs, verdicts, predictions); `reads` reads
//! the run being written; `tables` opens finished runs as DuckDB views, and typed reads return
//! plain rows for the analyses and products: `counts` (metric counts), `scores` (a variant's
//! scores and labels), `truth`, `images`, `cells` (and failures) and `texts`.

pub mod cells;
pub mod counts;
pub mod duck;
pub mod faces;
pub mod images;
pub mod judgments;
pub mod lookup;
pub mod manifest;
pub mod reads;
pub mod scores;
pub mod studio;
pub mod tables;
pub mod texts;
pub mod truth;
pub mod writer;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Opens an in-memory DuckDB with the settings every command's work uses: a bounded memory
/// (DuckDB spills beyond it) and no insertion order to keep.
pub fn open_db() -> Result<duck::Database> {
    let db = duck::Database::memory()?;
    {
        let conn = db.connect()?;
        conn.execute("SET memory_limit = '256MB'; SET preserve_insertion_order = false;")?;
    }
    Ok(db)
}

pub use manifest::Manifest;

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

impl RunDir {
    pub fn manifest_path(&self) -> PathBuf {
        self.path.join("run.yaml")
    }

    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.path.join(table)
    }

    /// The committed Parquet parts of a multi-part table.
    pub fn parts(&self, table: &str) -> Vec<PathBuf> {
        list_parquet(&self.table_dir(table))
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// `*.parquet` files in a folder, sorted.
pub fn list_parquet(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A new run id: UTC time to the second, experiment name, and a six-hex suffix: the fraction
/// of the second (three hex digits, 1/4096 s) then three random ones, so ids are unique and
/// [`list_runs`] orders runs started within one second too.
pub fn new_run_id(experiment: &str) -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = Utc::from_unix(since_epoch.as_secs() as i64);
    let slug: String = experiment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let fraction = (u64::from(since_epoch.subsec_nanos()) * 4096 / 1_000_000_000).min(4095);
    let nonce = blake3::hash(
        format!(
            "{:?}{}{:?}",
            since_epoch,
            std::process::id(),
            std::thread::current().id()
        )
        .as_bytes(),
    )
    .to_hex();
    format!("{}-{slug}-{fraction:03x}{}", now.compact(), &nonce[..3])
}

/// How runs sort, oldest first: by the time in the id, then its suffix (the fraction of the
/// second), then the whole id.
fn run_order(id: &str) -> (&str, &str, &str) {
    let time = id.get(..15).unwrap_or(id);
    let suffix = id.rsplit_once('-').map_or("", |(_, s)| s);
    (time, suffix, id)
}

/// Creates a fresh run directory.
pub fn create_run(runs_dir: &Path, experiment: &str) -> Result<RunDir> {
    std::fs::create_dir_all(runs_dir)?;
    for _ in 0..5 {
        let id = new_run_id(experiment);
        let path = runs_dir.join(&id);
        match std::fs::create_dir(&path) {
            Ok(()) => {
                for t in ["cells", "outputs", "failures"] {
                    std::fs::create_dir_all(path.join(t))?;
                }
                return Ok(RunDir { id, path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!(
        "could not create a unique run directory in {}",
        runs_dir.display()
    )
}

/// All runs with a manifest, oldest first.
pub fn list_runs(runs_dir: &Path) -> Vec<RunDir> {
    let mut runs: Vec<RunDir> = std::fs::read_dir(runs_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("run.yaml").is_file())
                .map(|e| RunDir {
                    id: e.file_name().to_string_lossy().into_owned(),
                    path: e.path(),
                })
                .collect()
        })
        .unwrap_or_default();
    runs.sort_by(|a, b| run_order(&a.id).cmp(&run_order(&b.id)));
    runs
}

/// The labels of the runs that cache vectors for `dupes` (`dupes-MODEL`), `similar` and
/// `search` (`embed-MODEL`).
pub const VECTOR_CACHE_PREFIXES: &[&str] = &["dupes-", "embed-"];

/// Whether a run id (`DATE-TIME-LABEL-SUFFIX`) is one of a vector cache's runs.
pub fn is_vector_cache(id: &str) -> bool {
    let label = id.splitn(3, '-').nth(2).unwrap_or("");
    VECTOR_CACHE_PREFIXES.iter().any(|p| label.starts_with(p))
}

/// Finds a run by id, unique prefix, `latest` (the newest that is not a vector cache), or a
/// path to a run directory.
pub fn resolve_run(runs_dir: &Path, reference: &str) -> Result<RunDir> {
    let as_path = Path::new(reference);
    if as_path.join("run.yaml").is_file() {
        let path = std::fs::canonicalize(as_path)?;
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(RunDir { id, path });
    }
    let runs = list_runs(runs_dir);
    if runs.is_empty() {
        bail!(
            "no runs in {}; start one with `iw-lab run EXPERIMENT`",
            runs_dir.display()
        );
    }
    if reference == "latest" || reference == "last" {
        // The newest run of an experiment: runs that only cache hashes or embeddings for
        // `dupes`, `similar` and `search` are not what `latest` means.
        let newest = runs.iter().rev().find(|r| !is_vector_cache(&r.id));
        return Ok(newest.unwrap_or(runs.last().expect("non-empty")).clone());
    }
    if let Some(r) = runs.iter().find(|r| r.id == reference) {
        return Ok(r.clone());
    }
    let matches: Vec<&RunDir> = runs
        .iter()
        .filter(|r| r.id.starts_with(reference) || r.id.ends_with(reference))
        .collect();
    match matches.len() {
        1 => Ok(matches[0].clone()),
        0 => bail!(
            "no run `{reference}` in {}\nhint: `iw-lab runs list` shows the runs; `latest` names the newest",
            runs_dir.display()
        ),
        n => bail!(
            "`{reference}` matches {n} runs ({}...); give more of the id",
            matches.iter().take(3).map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A UTC timestamp without pulling in a date library.
#[derive(Debug, Clone, Copy)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    pub fn from_unix(secs: i64) -> Utc {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Utc {
            year: if m <= 2 { y + 1 } else { y },
            month: m,
            day: d,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `2026-11-23T10:15:00Z`
    pub fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `20261123-101500`
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

pub fn time_now() -> Utc {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Utc::from_unix(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(Utc::from_unix(0).iso(), "1970-01-01T00:00:00Z");
        assert_eq!(Utc::from_unix(1_795_427_700).iso(), "2026-11-23T09:55:00Z");
        assert_eq!(Utc::from_unix(951_782_400).iso(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn run_ids_are_unique_and_sortable() {
        let a = new_run_id("demo");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_run_id("alpha");
        assert_ne!(a, b);
        assert!(a.contains("-demo-"));
        // Within one second, the later run sorts last whatever its experiment's name.
        if a[..15] == b[..15] {
            assert!(run_order(&a) < run_order(&b), "{a} {b}");
        }
        assert!(run_order("20261123-101500-zz-fff000") < run_order("20261123-101501-aa-000000"));
    }
}
