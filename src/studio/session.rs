//! A hand-tagging session: the output folder of sequentially named copies, its session file,
//! and the tag counts behind the page's chips.
//!
//! ```text
//! OUT/
//!   img_0001.png  img_0001.txt     copies (or moved originals) and their kohya tag files
//!   tags.txt                       every tag used, one per line, most used first
//!   iw-lab-session.json            settings, original → new names, position, done, skipped
//!   iw-lab-edits.jsonl             append-only log of every accepted tag write
//! ```
//!
//! Preparing is resumable and idempotent: names are assigned and the session saved before any
//! file is copied, so a preparation killed at any instant is finished by the next start, and
//! an image already in the session is never renumbered.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::tagfile::{self, TagFile, TagFileError};

pub const SESSION_FILE: &str = "iw-lab-session.json";
pub const EDIT_LOG: &str = "iw-lab-edits.jsonl";
pub const MASTER_TAGS: &str = "tags.txt";
const FORMAT: u32 = 1;

/// How a session names and writes its files (kept in the session file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// The folder the images come from.
    pub source: PathBuf,
    pub prefix: String,
    /// Digits of the sequence number (`img_0001` has 4).
    pub width: usize,
    /// Between tags in a `.txt` file.
    pub separator: String,
    /// Originals were moved rather than copied.
    #[serde(default)]
    pub moved: bool,
    /// The model or promoted config whose tags are suggested.
    #[serde(default)]
    pub suggest: Option<String>,
}

/// One image of the session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// The name in the output folder (`img_0001.png`).
    pub name: String,
    /// The original, relative to the source folder (`/` separators).
    pub original: String,
    #[serde(default)]
    pub copied: bool,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub skipped: bool,
}

/// The session file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub format: u32,
    pub settings: Settings,
    /// The image shown last (index into `items`).
    pub position: usize,
    pub items: Vec<Item>,
    /// Tags most recently added, newest first.
    #[serde(default)]
    pub recent: Vec<String>,
}

impl Session {
    pub fn done(&self) -> usize {
        self.items.iter().filter(|i| i.done).count()
    }

    /// The first image neither done nor skipped (where a resumed session starts).
    pub fn first_unfinished(&self) -> Option<usize> {
        self.items.iter().position(|i| !i.done && !i.skipped)
    }

    pub fn txt_name(&self, index: usize) -> Option<String> {
        let item = self.items.get(index)?;
        let stem = Path::new(&item.name).file_stem()?.to_string_lossy();
        Some(format!("{stem}.txt"))
    }

    /// Adds `tags` to the front of the recently used row (at most 20, no repeats).
    pub fn touch_recent(&mut self, tags: &[String]) {
        for t in tags.iter().rev() {
            self.recent.retain(|r| !r.eq_ignore_ascii_case(t));
            self.recent.insert(0, t.clone());
        }
        self.recent.truncate(20);
    }
}

pub const LOCK_FILE: &str = "iw-lab-session.lock";

/// Takes the session's lock (held while the returned file is open): one studio per output
/// folder, so two never prepare or number images at once.
pub fn lock(out: &Path) -> Result<std::fs::File> {
    let path = out.join(LOCK_FILE);
    match crate::atomic::try_lock(&path).with_context(|| format!("cannot lock {}", path.display()))? {
        Some(f) => Ok(f),
        None => bail!(
            "another iw-lab studio is tagging into {} (it holds {}); stop it or choose another --out",
            out.display(),
            path.display()
        ),
    }
}

/// Loads the session file of `out`, if there is one.
pub fn load(out: &Path) -> Result<Option<Session>> {
    let path = out.join(SESSION_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let s: Session = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a session file iw-lab can read", path.display()))?;
    if s.format != FORMAT {
        bail!(
            "{} has session format {}; this iw-lab reads format {FORMAT}",
            path.display(),
            s.format
        );
    }
    Ok(Some(s))
}

/// Saves the session file atomically.
pub fn save(out: &Path, s: &Session) -> Result<()> {
    let path = out.join(SESSION_FILE);
    let bytes = serde_json::to_vec_pretty(s)?;
    crate::atomic::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// What preparing did.
#[derive(Debug, Default)]
pub struct Prepared {
    pub added: usize,
    pub total: usize,
    /// Originals that could not be copied: (original, reason).
    pub problems: Vec<(String, String)>,
}

/// The images under `source` (sorted, hidden folders and `out` skipped), relative paths.
fn originals(source: &Path, out: &Path) -> Result<Vec<String>> {
    let out_real = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    let source_real = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let exts = crate::config::resolve::DEFAULT_EXTENSIONS;
    let mut found = Vec::new();
    let walker = walkdir::WalkDir::new(source)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || (!e.file_name().to_string_lossy().starts_with('.')
                    && std::fs::canonicalize(e.path()).map_or(true, |p| p != out_real))
        });
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot list {}", source.display()))?;
        // A symlink is followed only to a file inside the source folder: the studio serves
        // the copies, and must not serve what lies outside what the user pointed it at.
        let is_file = entry.file_type().is_file()
            || (entry.file_type().is_symlink()
                && std::fs::canonicalize(entry.path())
                    .is_ok_and(|p| p.is_file() && p.starts_with(&source_real)));
        let ext = entry
            .path()
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if !is_file || !exts.contains(&ext.as_str()) {
            continue;
        }
        if let Ok(rel) = entry.path().strip_prefix(source) {
            found.push(crate::dataset::names::rel_text(rel));
        }
    }
    Ok(found)
}

/// Creates or extends the session in `out`: assigns new names to images not yet in it, saves
/// the session, then copies (or moves) what is not copied yet and creates empty `.txt` files.
pub fn prepare(settings: &Settings, out: &Path) -> Result<(Session, Prepared)> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut session = match load(out)? {
        Some(mut s) => {
            if s.settings.source != settings.source {
                bail!(
                    "{} belongs to a session tagging {}, not {}; choose another --out",
                    out.join(SESSION_FILE).display(),
                    s.settings.source.display(),
                    settings.source.display()
                );
            }
            s.settings.separator = settings.separator.clone();
            s.settings.suggest = settings.suggest.clone();
            s
        }
        None => Session {
            format: FORMAT,
            settings: settings.clone(),
            position: 0,
            items: Vec::new(),
            recent: Vec::new(),
        },
    };
    let known: std::collections::HashSet<String> =
        session.items.iter().map(|i| i.original.clone()).collect();
    let taken: std::collections::HashSet<String> = session
        .items
        .iter()
        .map(|i| i.name.to_lowercase())
        .collect();
    let mut next = next_number(&session);
    let mut report = Prepared::default();
    for original in originals(&settings.source, out)? {
        if known.contains(&original) {
            continue;
        }
        let ext = Path::new(&original)
            .extension()
            .map(|e| e.to_string_lossy().to_string())
            .unwrap_or_default();
        let name = loop {
            let s = &session.settings;
            let candidate = format!("{}_{:0w$}.{ext}", s.prefix, next, w = s.width);
            next += 1;
            // A file of that name (or a `.txt` of that stem) left by something else is never
            // overwritten or adopted.
            let txt = format!("{}_{:0w$}.txt", s.prefix, next - 1, w = s.width);
            let stem_busy = out.join(&candidate).exists() || out.join(txt).exists();
            if !taken.contains(&candidate.to_lowercase()) && !stem_busy {
                break candidate;
            }
        };
        session.items.push(Item {
            name,
            original,
            copied: false,
            done: false,
            skipped: false,
        });
        report.added += 1;
    }
    save(out, &session)?;
    copy_pending(&mut session, out, &mut report)?;
    report.total = session.items.len();
    Ok((session, report))
}

fn next_number(s: &Session) -> usize {
    let prefix = format!("{}_", s.settings.prefix);
    s.items
        .iter()
        .filter_map(|i| {
            let stem = Path::new(&i.name)
                .file_stem()?
                .to_string_lossy()
                .to_string();
            stem.strip_prefix(&prefix)?.parse::<usize>().ok()
        })
        .max()
        .map_or(1, |n| n + 1)
}

/// Copies (or moves) every item not copied yet, creates its empty `.txt`, and saves.
fn copy_pending(session: &mut Session, out: &Path, report: &mut Prepared) -> Result<()> {
    let source = session.settings.source.clone();
    let moved = session.settings.moved;
    let mut changed = false;
    for i in 0..session.items.len() {
        if session.items[i].copied {
            continue;
        }
        let item = &session.items[i];
        let from = source.join(crate::dataset::names::rel_path(&item.original));
        let to = out.join(&item.name);
        let result = place(&from, &to, moved);
        match result {
            Ok(()) => {
                let txt = out.join(session.txt_name(i).unwrap_or_default());
                if !txt.exists() {
                    crate::atomic::write(&txt, b"")
                        .with_context(|| format!("cannot create {}", txt.display()))?;
                }
                session.items[i].copied = true;
                changed = true;
            }
            Err(e) => report.problems.push((item.original.clone(), e)),
        }
    }
    if changed {
        save(out, session)?;
    }
    Ok(())
}

/// Copies `from` to `to` atomically (or moves it); a `to` already there with the same bytes
/// (a copy finished before a kill) counts as done.
fn place(from: &Path, to: &Path, moved: bool) -> Result<(), String> {
    if moved {
        if !from.exists() && to.exists() {
            return Ok(());
        }
        if std::fs::rename(from, to).is_ok() {
            return Ok(());
        }
    }
    let bytes = std::fs::read(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    if let Ok(existing) = std::fs::read(to) {
        if existing != bytes {
            return Err(format!(
                "{} exists with other content; it is left as it is",
                to.display()
            ));
        }
    } else {
        crate::atomic::write(to, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    }
    if moved {
        std::fs::remove_file(from).map_err(|e| format!("cannot remove {}: {e}", from.display()))?;
    }
    Ok(())
}

/// Tag counts over a session's `.txt` files: tag → (count, spelling first seen).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    by_key: HashMap<String, (usize, String)>,
    /// The sorted list, kept until the next change (autocomplete asks often, saves are rarer).
    sorted: Option<std::sync::Arc<Vec<Counted>>>,
}

/// A tag as written, its count, and its lowercase form (what completion matches).
pub type Counted = (String, usize, String);

impl Counts {
    fn key(tag: &str) -> String {
        tag.to_lowercase()
    }

    pub fn add(&mut self, tags: &[String]) {
        if !tags.is_empty() {
            self.sorted = None;
        }
        for t in tags {
            let e = self
                .by_key
                .entry(Self::key(t))
                .or_insert_with(|| (0, t.clone()));
            e.0 += 1;
        }
    }

    pub fn remove(&mut self, tags: &[String]) {
        if !tags.is_empty() {
            self.sorted = None;
        }
        for t in tags {
            let k = Self::key(t);
            if let Some(e) = self.by_key.get_mut(&k) {
                e.0 = e.0.saturating_sub(1);
                if e.0 == 0 {
                    self.by_key.remove(&k);
                }
            }
        }
    }

    /// (tag, count, lowercase tag), most used first, then by tag; computed once per change.
    pub fn sorted(&mut self) -> std::sync::Arc<Vec<Counted>> {
        if let Some(s) = &self.sorted {
            return s.clone();
        }
        let mut v: Vec<Counted> = self
            .by_key
            .iter()
            .map(|(k, (c, t))| (t.clone(), *c, k.clone()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let v = std::sync::Arc::new(v);
        self.sorted = Some(v.clone());
        v
    }

    /// The master `tags.txt`: one tag per line, most used first (sorted by reference: a save
    /// rewrites it without copying every tag).
    pub fn master(&self) -> String {
        let mut v: Vec<(&String, usize)> = self.by_key.values().map(|(c, t)| (t, *c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut s = String::with_capacity(v.iter().map(|(t, _)| t.len() + 1).sum());
        for (t, _) in v {
            s.push_str(t);
            s.push('\n');
        }
        s
    }
}

/// Reads every item's `.txt`: the counts, and per item its tags or the reason it is unreadable.
pub fn read_all(
    session: &Session,
    out: &Path,
) -> (Counts, BTreeMap<usize, Result<TagFile, String>>) {
    let mut counts = Counts::default();
    let mut files = BTreeMap::new();
    for i in 0..session.items.len() {
        let Some(txt) = session.txt_name(i) else {
            continue;
        };
        let r = tagfile::read(&out.join(txt), &session.settings.separator);
        if let Ok(f) = &r {
            counts.add(&f.tags);
        }
        files.insert(i, r.map_err(|e: TagFileError| e.to_string()));
    }
    (counts, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(src: &Path) -> Settings {
        Settings {
            source: src.to_path_buf(),
            prefix: "img".into(),
            width: 4,
            separator: ", ".into(),
            moved: false,
            suggest: None,
        }
    }

    #[test]
    fn prepares_once_and_extends_without_renumbering() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("b.png"), b"b").unwrap();
        std::fs::write(src.join("a.JPG"), b"a").unwrap();
        std::fs::write(src.join("notes.txt"), b"x").unwrap();
        let out = src.join("out");
        let (s, r) = prepare(&settings(&src), &out).unwrap();
        assert_eq!(r.added, 2);
        assert_eq!(s.items[0].name, "img_0001.JPG");
        assert_eq!(s.items[1].name, "img_0002.png");
        assert_eq!(std::fs::read(out.join("img_0002.png")).unwrap(), b"b");
        assert_eq!(std::fs::read(out.join("img_0001.txt")).unwrap(), b"");
        assert!(src.join("b.png").exists(), "originals stay");
        std::fs::write(out.join("img_0001.txt"), "x, y").unwrap();
        std::fs::write(src.join("sub/0.png"), b"c").unwrap();
        let (s2, r2) = prepare(&settings(&src), &out).unwrap();
        assert_eq!(r2.added, 1);
        assert_eq!(s2.items[..2], s.items[..2]);
        assert_eq!(s2.items[2].name, "img_0003.png");
        assert_eq!(s2.items[2].original, "sub/0.png");
        assert_eq!(
            std::fs::read_to_string(out.join("img_0001.txt")).unwrap(),
            "x, y"
        );
        let (_, r3) = prepare(&settings(&src), &out).unwrap();
        assert_eq!((r3.added, r3.total), (0, 3));
    }

    #[test]
    fn a_preparation_killed_before_copying_finishes_next_time() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.png"), b"a").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut s = Session {
            format: FORMAT,
            settings: settings(&src),
            position: 0,
            items: vec![Item {
                name: "img_0001.png".into(),
                original: "a.png".into(),
                copied: false,
                done: false,
                skipped: false,
            }],
            recent: vec![],
        };
        save(&out, &s).unwrap();
        let (s2, r) = prepare(&settings(&src), &out).unwrap();
        assert_eq!(r.added, 0);
        assert!(s2.items[0].copied);
        s.items[0].copied = true;
        assert_eq!(s2.items, s.items);
        assert!(out.join("img_0001.txt").exists());
    }

    #[test]
    fn moving_takes_the_originals_once() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.png"), b"a").unwrap();
        let out = dir.path().join("out");
        let mut set = settings(&src);
        set.moved = true;
        let (s, _) = prepare(&set, &out).unwrap();
        assert!(!src.join("a.png").exists(), "moved, not copied");
        assert_eq!(std::fs::read(out.join("img_0001.png")).unwrap(), b"a");
        let (s2, r2) = prepare(&set, &out).unwrap();
        assert_eq!((r2.added, s2.items.clone()), (0, s.items));
    }

    #[test]
    fn counts_make_the_master_list() {
        let mut c = Counts::default();
        c.add(&["b".into(), "a".into()]);
        c.add(&["B".into()]);
        assert_eq!(c.master(), "b\na\n");
        c.remove(&["b".into(), "b".into()]);
        assert_eq!(c.master(), "a\n");
    }
}
