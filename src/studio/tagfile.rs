//! Tag sidecars as the studio edits them: a kohya-style `.txt` (`tag, tag, tag`) read with
//! its version, written only when the caller names the version it edited, and an append-only
//! edit log of every accepted write.
//!
//! A version is the blake3 of the file's bytes (`absent` when there is no file), so an edit
//! made meanwhile by another tab, another person or another program is detected the same way:
//! the bytes changed. Writes go through `crate::atomic`; a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// The version of a file that does not exist.
pub const ABSENT: &str = "absent";

/// A sidecar's tags as read, with the version they were read at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagFile {
    pub tags: Vec<String>,
    pub version: String,
}

/// Why a sidecar cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TagFileError {
    #[error("{path} is not UTF-8 text (byte {offset}); it is left as it is")]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed since it was read (the edit was made on version {expected})")]
    Stale {
        path: PathBuf,
        expected: String,
        current: Box<TagFile>,
    },
    #[error("{0}")]
    BadTag(String),
}

/// The version of some bytes.
pub fn version_of(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => ABSENT.to_string(),
        Some(b) => blake3::hash(b).to_hex()[..16].to_string(),
    }
}

/// Splits a tag file's text: the separator (its non-blank part, so `, ` also splits `a,b`)
/// and newlines separate; tags are trimmed; empties and repeats (ignoring case) are dropped.
/// Tags keep the writer's spelling: a kohya file is the user's, not ours to normalise.
pub fn parse(text: &str, separator: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let sep = match separator.trim() {
        "" => separator,
        s => s,
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = if sep.is_empty() || sep == "\n" {
            vec![line]
        } else {
            line.split(sep).collect()
        };
        for part in parts {
            let tag = part.trim();
            if !tag.is_empty() && seen.insert(tag.to_lowercase()) {
                out.push(tag.to_string());
            }
        }
    }
    out
}

/// Joins tags in order with the separator, as kohya trainers read them (no trailing newline).
pub fn render(tags: &[String], separator: &str) -> String {
    tags.join(separator)
}

/// Checks a tag typed or accepted by a user: trimmed, inner blanks collapsed; refused when
/// empty, holding a control character or the separator, or over 200 characters.
pub fn check_tag(raw: &str, separator: &str) -> Result<String, TagFileError> {
    // A byte-order mark is invisible and a reader drops it at the start of a file: never part
    // of a tag.
    let tag = raw
        .replace('\u{feff}', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let sep = separator.trim();
    if tag.is_empty() {
        return Err(TagFileError::BadTag("a tag cannot be empty".into()));
    }
    if tag.chars().any(char::is_control) {
        return Err(TagFileError::BadTag(format!(
            "the tag {tag:?} holds a control character"
        )));
    }
    if !sep.is_empty() && tag.contains(sep) {
        return Err(TagFileError::BadTag(format!(
            "the tag {tag:?} holds the separator {sep:?}; it would split into several tags"
        )));
    }
    if tag.chars().count() > 200 {
        return Err(TagFileError::BadTag(format!(
            "the tag {:?}… is over 200 characters",
            tag.chars().take(40).collect::<String>()
        )));
    }
    Ok(tag)
}

/// Checks a whole list: each tag, and no tag twice (ignoring case).
pub fn check_tags(raw: &[String], separator: &str) -> Result<Vec<String>, TagFileError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let t = check_tag(r, separator)?;
        if seen.insert(t.to_lowercase()) {
            out.push(t);
        }
    }
    if out.len() > 10_000 {
        return Err(TagFileError::BadTag(format!(
            "{} tags for one image; at most 10000",
            out.len()
        )));
    }
    Ok(out)
}

/// Reads a sidecar; a missing file is an empty list at version [`ABSENT`].
pub fn read(path: &Path, separator: &str) -> Result<TagFile, TagFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TagFile {
                tags: Vec::new(),
                version: ABSENT.to_string(),
            })
        }
        Err(source) => {
            return Err(TagFileError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| TagFileError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.valid_up_to(),
    })?;
    Ok(TagFile {
        tags: parse(text, separator),
        version: version_of(Some(&bytes)),
    })
}

/// One accepted write, as the edit log keeps it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Edit {
    /// UTC, `2026-12-07T10:15:00Z`.
    pub time: String,
    /// The file written, relative to the root being served.
    pub file: String,
    pub old: Vec<String>,
    pub new: Vec<String>,
    pub old_version: String,
    pub new_version: String,
    /// What made the edit: `tag`, `accept`, `remove`, `undo`, `rename`…
    pub action: String,
}

/// One write the studio wants to make.
pub struct Change<'a> {
    pub path: &'a Path,
    /// `path` relative to the served root, for the log.
    pub rel: &'a str,
    /// The version the edit was made on.
    pub expected: &'a str,
    pub content: &'a [u8],
    pub old: Vec<String>,
    pub new: Vec<String>,
    pub action: &'a str,
}

/// Serialises the studio's writes: a version check and its write happen as one step, and the
/// edit log gets one line per accepted write, in the order of the writes.
pub struct Writer {
    lock: Mutex<()>,
    log: PathBuf,
}

impl Writer {
    /// A writer whose edit log is `log` (JSON lines, appended, created when absent).
    pub fn new(log: PathBuf) -> Writer {
        Writer {
            lock: Mutex::new(()),
            log,
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Writes the change when the file's current version is the one it was made on; records
    /// the edit. Returns the new version. `reread` reads the current tags for a stale answer.
    pub fn write_if(
        &self,
        c: Change<'_>,
        reread: impl Fn(&Path) -> Result<TagFile, TagFileError>,
    ) -> Result<String, TagFileError> {
        let Change {
            path,
            rel,
            expected,
            content,
            old,
            new,
            action,
        } = c;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(TagFileError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let current_version = version_of(current.as_deref());
        if current_version != expected {
            return Err(TagFileError::Stale {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                current: Box::new(reread(path)?),
            });
        }
        crate::atomic::write(path, content).map_err(|source| TagFileError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        let new_version = version_of(Some(content));
        let edit = Edit {
            time: now_iso(),
            file: rel.to_string(),
            old,
            new,
            old_version: current_version,
            new_version: new_version.clone(),
            action: action.to_string(),
        };
        self.append(&edit).map_err(|source| TagFileError::Write {
            path: self.log.clone(),
            source,
        })?;
        Ok(new_version)
    }

    /// Appends one line to the edit log and syncs it.
    pub fn append(&self, edit: &Edit) -> std::io::Result<()> {
        let mut line = serde_json::to_string(edit).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }
}

/// Now, as `2026-12-07T10:15:00Z`.
pub fn now_iso() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::store::Utc::from_unix(secs).iso()
}

/// Reads an edit log; lines that do not parse (a torn last line after a crash) are skipped.
pub fn read_log(path: &Path) -> Vec<Edit> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_kohya_lists() {
        assert_eq!(parse("a, b,c\nd , A", ", "), vec!["a", "b", "c", "d"]);
        assert_eq!(parse("\u{feff}x y, z", ", "), vec!["x y", "z"]);
        assert_eq!(parse("a|b", "|"), vec!["a", "b"]);
        assert!(parse("", ", ").is_empty());
        assert_eq!(render(&["a".into(), "b c".into()], ", "), "a, b c");
    }

    #[test]
    fn refuses_tags_that_would_not_round_trip() {
        assert!(check_tag("", ", ").is_err());
        assert!(check_tag("a, b", ", ").is_err());
        assert!(check_tag("a\u{7}b", ", ").is_err());
        assert_eq!(check_tag("  blue   eyes ", ", ").unwrap(), "blue eyes");
        assert_eq!(check_tag("<img src=x>", ", ").unwrap(), "<img src=x>");
        assert!(check_tag("\u{feff}", ", ").is_err());
        assert_eq!(check_tag("\u{feff}a", ", ").unwrap(), "a");
    }

    proptest! {
        #[test]
        fn checked_tags_round_trip(raw in proptest::collection::vec(crate::testing::hostile_text(), 0..8)) {
            if let Ok(tags) = check_tags(&raw, ", ") {
                let text = render(&tags, ", ");
                prop_assert_eq!(parse(&text, ", "), tags);
            }
        }

        #[test]
        fn parses_any_text(raw in crate::testing::hostile_text(), sep in "[,;| ]{1,2}") {
            let _ = parse(&raw, &sep);
        }
    }

    #[test]
    fn stale_writes_are_refused_and_accepted_ones_logged() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        let w = Writer::new(dir.path().join("edits.jsonl"));
        let rd = |p: &Path| read(p, ", ");
        let change = |expected: &'static str, content: &'static [u8]| Change {
            path: &f,
            rel: "a.txt",
            expected,
            content,
            old: vec![],
            new: parse(std::str::from_utf8(content).unwrap(), ", "),
            action: "tag",
        };
        let v1 = w.write_if(change(ABSENT, b"x"), rd).unwrap();
        let err = w.write_if(change(ABSENT, b"y"), rd).unwrap_err();
        match err {
            TagFileError::Stale { current, .. } => assert_eq!(current.tags, vec!["x"]),
            e => panic!("{e}"),
        }
        std::fs::write(&f, "z").unwrap();
        let v1: &'static str = Box::leak(v1.into_boxed_str());
        assert!(w.write_if(change(v1, b"w"), rd).is_err());
        let log = read_log(w.log_path());
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].new, vec!["x"]);
        assert_eq!(log[0].old_version, ABSENT);
    }
}
