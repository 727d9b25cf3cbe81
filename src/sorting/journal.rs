//! The journal of `sort apply` (`ROOT/.iw-lab/sort/journal.jsonl`): one JSON line per file
//! placed, written and fsynced *before* the file is moved, so a kill at any moment leaves a
//! journal that `undo` can follow (it checks each file's content before touching it). A
//! `failed` line marks a placement that did not happen; an `undone` line closes a batch once
//! every file of it is back. Paths are written as `dataset::names` text, so a name that is
//! not UTF-8 is kept exactly. `apply` and `undo` hold `ROOT/.iw-lab/sort/lock`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// One placement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub batch: String,
    /// `move` or `copy`.
    pub op: String,
    /// Absolute paths, as `dataset::names::rel_text` writes them.
    pub from: String,
    pub to: String,
    /// BLAKE3 of the file's bytes.
    pub hash: String,
    /// The folder chosen, relative to the library.
    pub folder: String,
    /// The folder suggested first, when there was a suggestion.
    pub suggested: Option<String>,
    pub confidence: Option<f32>,
    pub at: String,
}

impl Entry {
    pub fn from_path(&self) -> PathBuf {
        crate::dataset::names::rel_path(&self.from)
    }

    pub fn to_path(&self) -> PathBuf {
        crate::dataset::names::rel_path(&self.to)
    }
}

/// A journal line: a placement, a placement that failed, or a batch undone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Line {
    Placed(Entry),
    Failed { failed: String, to: String },
    Undone { undone: String, at: String },
}

/// Holds the journal's lock while alive: one `apply` or `undo` per library at a time.
pub struct Locked {
    _file: std::fs::File,
}

/// Takes the journal's lock, waiting for another `apply` or `undo` to finish.
pub fn lock(root: &Path) -> Result<Locked> {
    let path = root.join(".iw-lab").join("sort").join("lock");
    let file =
        crate::atomic::lock(&path).with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(Locked { _file: file })
}

/// The placements that happened (not marked failed), in order, with the batches undone.
fn placed(lines: &[Line]) -> (Vec<&Entry>, std::collections::HashSet<&str>) {
    let mut failed = std::collections::HashSet::new();
    let mut undone = std::collections::HashSet::new();
    for l in lines {
        match l {
            Line::Failed { failed: b, to } => {
                failed.insert((b.as_str(), to.as_str()));
            }
            Line::Undone { undone: b, .. } => {
                undone.insert(b.as_str());
            }
            Line::Placed(_) => {}
        }
    }
    let entries = lines
        .iter()
        .filter_map(|l| match l {
            Line::Placed(e) if !failed.contains(&(e.batch.as_str(), e.to.as_str())) => Some(e),
            _ => None,
        })
        .collect();
    (entries, undone)
}

pub fn path(root: &Path) -> PathBuf {
    root.join(".iw-lab").join("sort").join("journal.jsonl")
}

/// Every readable line (a damaged line, as a kill mid-write may leave, is skipped).
pub fn read(root: &Path) -> Result<Vec<Line>> {
    let p = path(root);
    let text = match std::fs::read(&p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Appends one line durably.
pub fn append(root: &Path, line: &Line) -> Result<()> {
    let p = path(root);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&p)
        .with_context(|| format!("cannot open {}", p.display()))?;
    let mut text = String::new();
    if !ends_with_newline(&mut f)? {
        // A line torn by a failed write ends here, so the new one starts on its own line.
        text.push('\n');
    }
    text.push_str(&serde_json::to_string(line)?);
    text.push('\n');
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", p.display()))
}

/// Whether the file is empty or ends with a newline.
fn ends_with_newline(f: &mut std::fs::File) -> Result<bool> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Placements not undone, by content hash: the folder each was last put in where it differs
/// from the first suggestion (a correction).
pub fn corrections(lines: &[Line]) -> std::collections::HashMap<String, String> {
    let (entries, undone) = placed(lines);
    entries
        .into_iter()
        .filter(|e| !undone.contains(e.batch.as_str()))
        .filter(|e| e.suggested.as_deref().is_some_and(|s| s != e.folder))
        .map(|e| (e.hash.clone(), e.folder.clone()))
        .collect()
}

/// The last batch not undone, with its placements.
pub fn last_batch(lines: &[Line]) -> Option<(String, Vec<Entry>)> {
    let (entries, undone) = placed(lines);
    let batch = entries
        .iter()
        .rev()
        .find(|e| !undone.contains(e.batch.as_str()))?
        .batch
        .clone();
    let of_batch = entries
        .into_iter()
        .filter(|e| e.batch == batch)
        .cloned()
        .collect();
    Some((batch, of_batch))
}

fn hash_of(p: &Path) -> Option<String> {
    std::fs::read(p)
        .ok()
        .map(|b| blake3::hash(&b).to_hex().to_string())
}

/// Places `from` at `to` (never over an existing file): a rename, or a copy (fsynced) and,
/// for a move, the removal of the original once the copy is durable.
pub fn place(from: &Path, to: &Path, copy: bool) -> Result<()> {
    if to.exists() {
        bail!("{} exists; not overwritten", to.display());
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if !copy && std::fs::hard_link(from, to).is_ok() {
        return std::fs::remove_file(from)
            .with_context(|| format!("cannot remove {}", from.display()));
    }
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", to.display()))?;
    if !copy {
        std::fs::remove_file(from).with_context(|| format!("cannot remove {}", from.display()))?;
    }
    Ok(())
}

/// Undoes one batch, last placement first: a moved file goes back when it is still where it
/// was put with the same content and its old place is free; a copy is removed when it is
/// unchanged. Returns (undone, left alone with the reason).
pub fn undo(root: &Path, batch: &str, entries: &[Entry]) -> Result<(usize, Vec<String>)> {
    let mut done = 0;
    let mut left = Vec::new();
    for e in entries.iter().rev() {
        let (from, to) = (e.from_path(), e.to_path());
        match hash_of(&to) {
            Some(h) if h == e.hash => {}
            Some(_) => {
                left.push(format!(
                    "{}: changed since it was placed; left there",
                    to.display()
                ));
                continue;
            }
            // A copy already removed, or a move that never happened or was already undone.
            None if e.op == "copy" => continue,
            None if hash_of(&from).as_deref() == Some(e.hash.as_str()) => continue,
            None => {
                left.push(format!("{}: no longer there", to.display()));
                continue;
            }
        }
        let result = if e.op == "copy" {
            std::fs::remove_file(&to).with_context(|| format!("cannot remove {}", to.display()))
        } else {
            place(&to, &from, false)
        };
        match result {
            Ok(()) => done += 1,
            Err(err) => left.push(format!("{err:#}")),
        }
    }
    // The batch closes only when every file is back: a retry finishes what is left.
    if left.is_empty() {
        append(
            root,
            &Line::Undone {
                undone: batch.to_string(),
                at: crate::store::time_now().iso(),
            },
        )?;
    }
    Ok((done, left))
}
