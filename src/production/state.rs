//! What the production pass has already done, per alias: an append-only log
//! (`.iw-lab/tag-state/<alias>.jsonl`) of images tagged, with the content hash and config hash
//! they were tagged under, the sidecars written, and the tags iw-lab added to `.txt` files
//! (so a later pass can replace its own tags and keep the user's).
//!
//! Ownership is recorded before a sidecar changes: before an image's new sidecars are renamed
//! into place, a *pending* line is appended and fsynced, naming as iw-lab's every tag it added
//! before or is adding now. Once the sidecars are in place, a final line names only the new
//! ones. A pass killed at any moment therefore leaves a log that never calls iw-lab's tags the
//! user's: at worst a pending line, whose image the next pass redoes (a pending line never
//! counts as done). A torn last line is ignored.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::production::writers::WriterKind;

/// One tagged image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: String,
    pub config_hash: String,
    pub writers: Vec<WriterKind>,
    pub sidecars: BTreeMap<WriterKind, PathBuf>,
    #[serde(default)]
    pub txt_ours: Vec<String>,
    pub at: String,
    /// Written just before the sidecars were renamed into place; whether they got there is
    /// unknown, so the image is not done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl Entry {
    /// The pending line recorded before this entry's sidecars are put in place: the tags
    /// iw-lab added before (`previous`) and now both count as its own, and nothing is done.
    pub fn pending(&self, previous: Option<&Entry>) -> Entry {
        let mut ours = previous.map(|p| p.txt_ours.clone()).unwrap_or_default();
        for t in &self.txt_ours {
            if !ours.contains(t) {
                ours.push(t.clone());
            }
        }
        Entry {
            txt_ours: ours,
            config_hash: String::new(),
            pending: true,
            ..self.clone()
        }
    }
}

fn ends_without_newline(f: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The state of one alias.
pub struct State {
    file: PathBuf,
    pub entries: HashMap<PathBuf, Entry>,
    lines: usize,
    out: Option<std::io::BufWriter<std::fs::File>>,
    pending: usize,
}

impl State {
    pub fn open(state_dir: &Path, alias: &str) -> State {
        let file = state_dir.join("tag-state").join(format!("{alias}.jsonl"));
        let mut entries = HashMap::new();
        let mut lines = 0;
        if let Ok(text) = std::fs::read_to_string(&file) {
            for line in text.lines() {
                if let Ok(e) = serde_json::from_str::<Entry>(line) {
                    lines += 1;
                    entries.insert(e.path.clone(), e);
                }
            }
        }
        State {
            file,
            entries,
            lines,
            out: None,
            pending: 0,
        }
    }

    /// Records an image; lines are fsynced every 64 records and by [`State::finish`].
    pub fn record(&mut self, entry: Entry) -> std::io::Result<()> {
        if self.out.is_none() {
            if let Some(dir) = self.file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.file)?;
            // A pass killed mid-line left a torn last line: end it, so ours starts clean.
            if ends_without_newline(&mut f)? {
                f.write_all(b"\n")?;
            }
            self.out = Some(std::io::BufWriter::new(f));
        }
        let out = self.out.as_mut().expect("opened above");
        serde_json::to_writer(&mut *out, &entry).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        self.lines += 1;
        self.pending += 1;
        self.entries.insert(entry.path.clone(), entry);
        if self.pending >= 64 {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes every recorded line durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.flush()?;
            out.get_ref().sync_data()?;
        }
        self.pending = 0;
        Ok(())
    }

    /// Flushes, and rewrites the log compactly when it holds many superseded lines.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.sync()?;
        self.out = None;
        if self.lines > 2 * self.entries.len() + 100 {
            let mut text = Vec::new();
            for e in self.entries.values() {
                serde_json::to_writer(&mut text, e).map_err(std::io::Error::other)?;
                text.push(b'\n');
            }
            crate::atomic::write(&self.file, &text)?;
        }
        Ok(())
    }
}
