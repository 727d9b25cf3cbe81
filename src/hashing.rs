//! Content hashes, and the one index that remembers them: path → a file's [`Stamp`] (size,
//! mtime, inode, ctime) → what was computed from its bytes, so an unchanged file is never read
//! again (like git's index). The inode and ctime catch a file replaced in place (a new file
//! renamed over it, or rewritten with its size and mtime set back), which size and mtime alone
//! would miss. A stamp within two seconds of the time it was taken is "racily clean" (the file
//! may change again within the clock's granularity) and is never trusted.
//!
//! [`Index`] is the index, generic over what it remembers; it is saved atomically as JSON
//! lines. Its users: the model-file digests ([`FileHashes`], `<cache>/file-hashes.jsonl`) and
//! the dataset scan (hash, format, size and generation metadata per image,
//! `.iw-lab/index/`). [`content_hash`] is the one image-content hash.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The content hash of a file's bytes: blake3, hex. Images are known by it everywhere (cache
/// keys, tables, thumbnails), never by their path.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Serialises `v` with sorted object keys (serde_json preserves insertion order here).
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v)).expect("JSON values serialise")
}

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    /// Inode and status-change time (Unix; 0 elsewhere).
    #[serde(default)]
    pub ino: u64,
    #[serde(default)]
    pub ctime_ns: i64,
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        #[cfg(unix)]
        let (ino, ctime_ns) = {
            use std::os::unix::fs::MetadataExt;
            (
                meta.ino(),
                meta.ctime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(meta.ctime_nsec()),
            )
        };
        #[cfg(not(unix))]
        let (ino, ctime_ns) = (0, 0);
        Stamp {
            size: meta.len(),
            mtime_ns,
            ino,
            ctime_ns,
        }
    }

    /// Whether the file changed within two seconds of `now_ns`: it may change again without
    /// its stamp changing, so what was computed from it is not remembered.
    pub fn racy(&self, now_ns: i64) -> bool {
        now_ns - self.mtime_ns.max(self.ctime_ns) < 2_000_000_000
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// One line of an index file.
#[derive(Serialize, Deserialize)]
struct Line<V> {
    path: String,
    #[serde(flatten)]
    stamp: Stamp,
    /// Taken within two seconds of a change: kept (what the path held) but not trusted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    racy: bool,
    value: V,
}

/// Path → (stamp, value) for files whose value was computed from their bytes.
pub struct Index<V> {
    file: PathBuf,
    entries: HashMap<String, (Stamp, bool, V)>,
}

impl<V: Serialize + DeserializeOwned + Clone> Index<V> {
    /// Loads `file` (missing or unreadable lines: an empty or partial index).
    pub fn load(file: &Path) -> Index<V> {
        let entries = std::fs::read_to_string(file)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str::<Line<V>>(l).ok())
                    .map(|l| (l.path, (l.stamp, l.racy, l.value)))
                    .collect()
            })
            .unwrap_or_default();
        Index {
            file: file.to_path_buf(),
            entries,
        }
    }

    /// The value remembered for `path`, when the file's stamp is still `stamp` and was not
    /// racy when taken.
    pub fn get(&self, path: &str, stamp: &Stamp) -> Option<&V> {
        self.entries
            .get(path)
            .filter(|(s, racy, _)| s == stamp && !racy)
            .map(|(_, _, v)| v)
    }

    /// Remembers `value` for `path` (a racy stamp is kept, marked, and never trusted).
    pub fn insert(&mut self, path: String, stamp: Stamp, value: V, now_ns: i64) {
        let racy = stamp.racy(now_ns);
        self.entries.insert(path, (stamp, racy, value));
    }

    /// Keeps only the paths `keep` says so of.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|p, _| keep(p));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every remembered (path, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.entries.iter().map(|(p, (_, _, v))| (p.as_str(), v))
    }

    /// Writes the index atomically.
    pub fn save(&self) -> std::io::Result<()> {
        crate::atomic::write_with(&self.file, |f| {
            let mut w = std::io::BufWriter::new(f);
            for (path, (stamp, racy, value)) in &self.entries {
                let line = Line {
                    path: path.clone(),
                    stamp: *stamp,
                    racy: *racy,
                    value: value.clone(),
                };
                serde_json::to_writer(&mut w, &line).map_err(std::io::Error::other)?;
                w.write_all(b"\n")?;
            }
            w.flush()
        })
    }
}

/// Both digests of one file, hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Digests {
    pub blake3: String,
    pub sha256: String,
}

/// The digests of model and label files, remembered in `<cache>/file-hashes.jsonl`.
pub struct FileHashes {
    index: Mutex<Index<Digests>>,
}

impl FileHashes {
    pub fn open(cache_dir: &Path) -> FileHashes {
        FileHashes {
            index: Mutex::new(Index::load(&cache_dir.join("file-hashes.jsonl"))),
        }
    }

    /// The digests of `path`, from the memo when the file is unchanged.
    pub fn digests(&self, path: &Path) -> std::io::Result<Digests> {
        let abs = std::fs::canonicalize(path)?;
        let stamp = Stamp::of(&std::fs::metadata(&abs)?);
        let key = abs.to_string_lossy().into_owned();
        if let Some(d) = self.lock().get(&key, &stamp) {
            return Ok(d.clone());
        }
        let digests = hash_file(&abs)?;
        let now = now_ns();
        if !stamp.racy(now) {
            let mut index = self.lock();
            index.insert(key, stamp, digests.clone(), now);
            // best effort: a memo that cannot be saved only costs a re-hash next time
            let _ = index.save();
        }
        Ok(digests)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index<Digests>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// blake3 and sha256 of a file in one read.
pub fn hash_file(path: &Path) -> std::io::Result<Digests> {
    let mut file = std::fs::File::open(path)?;
    let mut b3 = blake3::Hasher::new();
    let mut s2 = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        b3.update(&buf[..n]);
        s2.update(&buf[..n]);
    }
    Ok(Digests {
        blake3: b3.finalize().to_hex().to_string(),
        sha256: hex::encode(s2.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_returns_same_digests() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.bin");
        std::fs::write(&f, b"hello").unwrap();
        let hashes = FileHashes::open(dir.path());
        let a = hashes.digests(&f).unwrap();
        assert_eq!(
            a.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(a.blake3, blake3::hash(b"hello").to_hex().to_string());
        let b = hashes.digests(&f).unwrap();
        assert_eq!(a.blake3, b.blake3);
    }

    /// A file replaced with one of the same size and mtime (renamed over it, or rewritten in
    /// place with its mtime set back) is hashed again, even by a fresh memo from disk.
    #[test]
    fn a_file_replaced_in_place_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.bin");
        std::fs::write(&f, b"hello").unwrap();
        // Past the racily-clean window, so the digest is remembered.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let first = FileHashes::open(dir.path()).digests(&f).unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let same_stamp = |p: &Path| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        };
        // Renamed over it: a new inode.
        let tmp = dir.path().join("new.bin");
        std::fs::write(&tmp, b"world").unwrap();
        same_stamp(&tmp);
        std::fs::rename(&tmp, &f).unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        assert_eq!((meta.len(), meta.modified().unwrap()), (5, mtime));
        let second = FileHashes::open(dir.path()).digests(&f).unwrap();
        assert_eq!(second.blake3, blake3::hash(b"world").to_hex().to_string());
        assert_ne!(second.blake3, first.blake3);
        // Rewritten in place, mtime set back: the same inode, a new ctime.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let memo = FileHashes::open(dir.path());
        assert_eq!(memo.digests(&f).unwrap().blake3, second.blake3);
        std::fs::write(&f, b"again").unwrap();
        same_stamp(&f);
        let third = FileHashes::open(dir.path()).digests(&f).unwrap();
        assert_eq!(third.blake3, blake3::hash(b"again").to_hex().to_string());
    }
}
