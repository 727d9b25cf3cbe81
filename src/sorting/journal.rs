//! The journal of `sort apply` (`ROOT/.iw-lab/sort/journal.jsonl`): one JSON line per file
//! placed, written and fsynced *before* the file is moved, so a kill at any moment leaves a
//! journal that `undo` can follow (it checks each file's content before touching it). An
//! `undone` line closes a batch.

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
    pub from: PathBuf,
    pub to: PathBuf,
    /// BLAKE3 of the file's bytes.
    pub hash: String,
    /// The folder chosen, relative to the library.
    pub folder: String,
    /// The folder suggested first, when there was a suggestion.
    pub suggested: Option<String>,
    pub confidence: Option<f32>,
    pub at: String,
}

/// A journal line: a placement, or a batch undone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Line {
    Placed(Entry),
    Undone { undone: String, at: String },
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
        .open(&p)
        .with_context(|| format!("cannot open {}", p.display()))?;
    let mut text = serde_json::to_string(line)?;
    text.push('\n');
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", p.display()))
}

/// Placements not undone, by content hash: the folder each was last put in where it differs
/// from the first suggestion (a correction).
pub fn corrections(lines: &[Line]) -> std::collections::HashMap<String, String> {
    let undone: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Undone { undone, .. } => Some(undone.as_str()),
            Line::Placed(_) => None,
        })
        .collect();
    lines
        .iter()
        .filter_map(|l| match l {
            Line::Placed(e) if !undone.contains(e.batch.as_str()) => Some(e),
            _ => None,
        })
        .filter(|e| e.suggested.as_deref().is_some_and(|s| s != e.folder))
        .map(|e| (e.hash.clone(), e.folder.clone()))
        .collect()
}

/// The last batch not undone, with its entries.
pub fn last_batch(lines: &[Line]) -> Option<(String, Vec<Entry>)> {
    let undone: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Undone { undone, .. } => Some(undone.as_str()),
            Line::Placed(_) => None,
        })
        .collect();
    let batch = lines.iter().rev().find_map(|l| match l {
        Line::Placed(e) if !undone.contains(e.batch.as_str()) => Some(e.batch.clone()),
        _ => None,
    })?;
    let entries = lines
        .iter()
        .filter_map(|l| match l {
            Line::Placed(e) if e.batch == batch => Some(e.clone()),
            _ => None,
        })
        .collect();
    Some((batch, entries))
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
        match hash_of(&e.to) {
            Some(h) if h == e.hash => {}
            Some(_) => {
                left.push(format!(
                    "{}: changed since it was placed; left there",
                    e.to.display()
                ));
                continue;
            }
            None if e.op == "move" && hash_of(&e.from).as_deref() == Some(e.hash.as_str()) => {
                continue; // the move never happened (interrupted)
            }
            None => {
                left.push(format!("{}: no longer there", e.to.display()));
                continue;
            }
        }
        let result = if e.op == "copy" {
            std::fs::remove_file(&e.to).with_context(|| format!("cannot remove {}", e.to.display()))
        } else {
            place(&e.to, &e.from, false)
        };
        match result {
            Ok(()) => done += 1,
            Err(err) => left.push(format!("{err:#}")),
        }
    }
    append(
        root,
        &Line::Undone {
            undone: batch.to_string(),
            at: crate::store::time_now().iso(),
        },
    )?;
    Ok((done, left))
}
