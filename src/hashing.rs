//! Content hashes of model and label files, remembered by path, size, mtime, inode and ctime
//! so a large model is hashed once, not on every run. The inode and ctime catch a file
//! replaced in place (a new file renamed over it, or rewritten with its size and mtime set
//! back), which size and mtime alone would miss.
//!
//! The memo lives at `<cache>/file-hashes.jsonl`; it is rewritten atomically, and entries whose
//! mtime is within two seconds of the time of hashing are not kept (see `dataset::scan`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::Digest;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    path: PathBuf,
    size: u64,
    mtime_ns: i64,
    /// Inode and status-change time (Unix; 0 elsewhere). Entries written before these were
    /// recorded have none and are hashed again.
    #[serde(default)]
    ino: u64,
    #[serde(default)]
    ctime_ns: i64,
    blake3: String,
    sha256: String,
}

/// What identifies a file's version without reading it: (size, mtime, inode, ctime).
fn stamp(meta: &std::fs::Metadata) -> (u64, i64, u64, i64) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    #[cfg(unix)]
    let (ino, ctime) = {
        use std::os::unix::fs::MetadataExt;
        (
            meta.ino(),
            meta.ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        )
    };
    #[cfg(not(unix))]
    let (ino, ctime) = (0, 0);
    (meta.len(), mtime, ino, ctime)
}

/// The memo of file hashes.
pub struct FileHashes {
    file: PathBuf,
    entries: Mutex<HashMap<PathBuf, Entry>>,
}

/// Both digests of one file, hex.
#[derive(Debug, Clone)]
pub struct Digests {
    pub blake3: String,
    pub sha256: String,
}

impl FileHashes {
    pub fn open(cache_dir: &Path) -> FileHashes {
        let file = cache_dir.join("file-hashes.jsonl");
        let entries = std::fs::read_to_string(&file)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
                    .map(|e| (e.path.clone(), e))
                    .collect()
            })
            .unwrap_or_default();
        FileHashes {
            file,
            entries: Mutex::new(entries),
        }
    }

    /// The digests of `path`, from the memo when the file is unchanged.
    pub fn digests(&self, path: &Path) -> std::io::Result<Digests> {
        let abs = std::fs::canonicalize(path)?;
        let meta = std::fs::metadata(&abs)?;
        let (size, mtime, ino, ctime) = stamp(&meta);
        if let Some(e) = self
            .lock()
            .get(&abs)
            .filter(|e| (e.size, e.mtime_ns, e.ino, e.ctime_ns) == (size, mtime, ino, ctime))
        {
            return Ok(Digests {
                blake3: e.blake3.clone(),
                sha256: e.sha256.clone(),
            });
        }
        let digests = hash_file(&abs)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        // Racily clean: a file changed within 2 s of hashing may change again unnoticed.
        if now - mtime.max(ctime) > 2_000_000_000 {
            self.lock().insert(
                abs.clone(),
                Entry {
                    path: abs,
                    size,
                    mtime_ns: mtime,
                    ino,
                    ctime_ns: ctime,
                    blake3: digests.blake3.clone(),
                    sha256: digests.sha256.clone(),
                },
            );
            self.save();
        }
        Ok(digests)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self) {
        let Some(dir) = self.file.parent() else {
            return;
        };
        let _ = std::fs::create_dir_all(dir);
        let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
            return;
        };
        let ok = {
            let entries = self.lock();
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            entries
                .values()
                .try_for_each(|e| {
                    serde_json::to_writer(&mut w, e)
                        .map_err(std::io::Error::other)
                        .and_then(|_| w.write_all(b"\n"))
                })
                .and_then(|_| w.flush())
                .is_ok()
        };
        if ok {
            let _ = tmp.persist(&self.file);
        }
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
