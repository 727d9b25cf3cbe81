//! Scanning a dataset folder: which images there are and their content hashes.
//!
//! The content hash is blake3 of the file bytes. An index of path, size and mtime → hash
//! (like git's index) avoids re-reading unchanged files; entries whose mtime is within two
//! seconds of the scan are not trusted next time ("racily clean"), so an edit made in the same
//! instant as a scan is still noticed.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Dataset;
use crate::hashing::{Index, Stamp};

/// One image file of a dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Path relative to the dataset root, with `/` separators.
    pub rel: String,
    #[serde(skip)]
    pub abs: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    /// blake3 of the file bytes, hex.
    pub hash: String,
    /// Sniffed from the bytes: png, jpeg, webp, gif, bmp, tiff; `None` when not an image.
    pub format: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Generation metadata embedded in the file (AI images), when there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<ImageMeta>>,
}

/// The generation metadata kept with each scanned image: what `metadata::GenMeta` says,
/// without the raw carriers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub generator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Character / area prompts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_prompts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_hash: Option<String>,
    /// (name, weight).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<(String, Option<f64>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_skip: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denoise: Option<f64>,
}

impl ImageMeta {
    /// The summary of a file's metadata; `None` when it carries no generation metadata.
    pub fn from_gen(m: &crate::metadata::GenMeta) -> Option<ImageMeta> {
        if m.generator.is_none() && m.prompt.is_none() {
            return None;
        }
        Some(ImageMeta {
            generator: m.generator.clone(),
            prompt: m.prompt.clone(),
            negative_prompt: m.negative_prompt.clone(),
            extra_prompts: m.extra_prompts.iter().map(|e| e.prompt.clone()).collect(),
            seed: m.seed,
            steps: m.steps,
            sampler: m.sampler.clone(),
            scheduler: m.scheduler.clone(),
            cfg: m.cfg,
            width: m.width,
            height: m.height,
            model: m.model.clone(),
            model_hash: m.model_hash.clone(),
            loras: m
                .loras
                .iter()
                .flatten()
                .map(|l| (l.name.clone(), l.weight))
                .collect(),
            vae: m.vae.clone(),
            clip_skip: m.clip_skip,
            denoise: m.denoise,
        })
    }

    /// Reads the metadata of an image held in memory; pixels (for stealth payloads) are
    /// decoded only when the image has at most `max_pixels`.
    pub fn read(bytes: &[u8], max_pixels: u64) -> Option<Box<ImageMeta>> {
        crate::metadata::read_bytes_limited(bytes, max_pixels)
            .ok()
            .and_then(|m| ImageMeta::from_gen(&m))
            .map(Box::new)
    }
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub images: Vec<ImageEntry>,
    /// Files read and hashed this time.
    pub hashed: usize,
    /// Files whose hash came from the index.
    pub reused: usize,
    /// Files that could not be read (path, reason).
    pub unreadable: Vec<(String, String)>,
    /// What the previous scan's index held: (path, hash), sorted by path.
    pub previous: Vec<(String, String)>,
}

/// Version of what the index holds per image (the metadata reader's output included); a
/// value written by an older version is computed again.
const INDEX_VERSION: u32 = 2;

/// What the scan remembers of an image in the hash index (`crate::hashing::Index`).
#[derive(Clone, Serialize, Deserialize)]
struct Scanned {
    /// Content hash.
    h: String,
    #[serde(default)]
    f: Option<String>,
    #[serde(default)]
    w: Option<u32>,
    #[serde(default)]
    ht: Option<u32>,
    /// Generation metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    g: Option<Box<ImageMeta>>,
    /// [`INDEX_VERSION`] when written.
    #[serde(default)]
    v: u32,
}

impl Scanned {
    fn of(img: &ImageEntry) -> Scanned {
        Scanned {
            h: img.hash.clone(),
            f: img.format.clone(),
            w: img.width,
            ht: img.height,
            g: img.meta.clone(),
            v: INDEX_VERSION,
        }
    }
}

/// Lists the dataset's image files (sorted by relative path), without reading them.
pub fn list_files(ds: &Dataset) -> Result<Vec<(String, PathBuf)>, std::io::Error> {
    let mut exclude = globset::GlobSetBuilder::new();
    for pattern in &ds.exclude {
        if let Ok(g) = globset::Glob::new(pattern) {
            exclude.add(g);
        }
    }
    let exclude = exclude
        .build()
        .unwrap_or_else(|_| globset::GlobSet::empty());
    let mut walker = walkdir::WalkDir::new(&ds.root)
        .follow_links(true)
        .sort_by_file_name();
    if !ds.recursive {
        walker = walker.max_depth(1);
    }
    let mut out = Vec::new();
    let iter = walker
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in iter {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.depth() > 0 => {
                crate::ui::warn(format!(
                    "skipping {}: {e}",
                    e.path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ));
                continue;
            }
            Err(e) => return Err(std::io::Error::other(e)),
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if !ds.extensions.contains(&ext) {
            continue;
        }
        let Ok(rel) = path.strip_prefix(&ds.root) else {
            continue;
        };
        // Exact, even for names that are not UTF-8 (see `names`).
        let rel = super::names::rel_text(rel);
        if exclude.is_match(&rel) {
            continue;
        }
        out.push((rel, path.to_path_buf()));
    }
    Ok(out)
}

/// Where the index of a dataset lives.
pub fn index_path(state_dir: &Path, ds: &Dataset) -> PathBuf {
    let root_hash = blake3::hash(ds.root.to_string_lossy().as_bytes()).to_hex();
    state_dir
        .join("index")
        .join(format!("{}-{}.jsonl", ds.name, &root_hash[..12]))
}

impl ImageEntry {
    /// The file's bytes, checked against the content hash of the scan (a file rewritten since
    /// must not be computed under its old key). Errors say which.
    pub fn read_verified(&self) -> Result<Vec<u8>, String> {
        let bytes = std::fs::read(&self.abs).map_err(|e| format!("cannot read: {e}"))?;
        if crate::hashing::content_hash(&bytes) != self.hash {
            return Err("file changed since it was scanned; run again".into());
        }
        Ok(bytes)
    }

    /// The entry of an image file whose bytes are in memory: content hash, format and size
    /// from the header, and generation metadata (pixels, for stealth payloads, decoded only up
    /// to `max_pixels`; `None` skips reading metadata). The one place an image is hashed.
    pub fn from_bytes(
        rel: String,
        abs: PathBuf,
        bytes: &[u8],
        mtime_ns: i64,
        max_pixels: Option<u64>,
    ) -> ImageEntry {
        let probed = crate::imaging::probe(bytes).ok();
        ImageEntry {
            rel,
            abs,
            size: bytes.len() as u64,
            mtime_ns,
            hash: crate::hashing::content_hash(bytes),
            format: probed.map(|(f, _, _)| crate::imaging::decode::format_name(f).to_string()),
            width: probed.map(|(_, w, _)| w),
            height: probed.map(|(_, _, h)| h),
            meta: max_pixels.and_then(|limit| ImageMeta::read(bytes, limit)),
        }
    }

    fn from_index(rel: &str, abs: &Path, stamp: &Stamp, s: &Scanned) -> ImageEntry {
        ImageEntry {
            rel: rel.to_string(),
            abs: abs.to_path_buf(),
            size: stamp.size,
            mtime_ns: stamp.mtime_ns,
            hash: s.h.clone(),
            format: s.f.clone(),
            width: s.w,
            height: s.ht,
            meta: s.g.clone(),
        }
    }
}

/// Hashes and probes one file, or takes it from the index when it is unchanged. Returns the
/// entry, its stamp, and whether it was read.
fn scan_one(
    rel: &str,
    abs: &Path,
    index: &Index<Scanned>,
    max_pixels: u64,
) -> Result<(ImageEntry, Stamp, bool), (String, String)> {
    let stamp = std::fs::metadata(abs)
        .map(|m| Stamp::of(&m))
        .map_err(|e| (rel.to_string(), e.to_string()))?;
    if let Some(s) = index.get(rel, &stamp).filter(|s| s.v == INDEX_VERSION) {
        return Ok((ImageEntry::from_index(rel, abs, &stamp, s), stamp, false));
    }
    crate::panics::failpoint("scan.read", rel);
    let bytes = std::fs::read(abs).map_err(|e| (rel.to_string(), e.to_string()))?;
    let entry = ImageEntry::from_bytes(
        rel.to_string(),
        abs.to_path_buf(),
        &bytes,
        stamp.mtime_ns,
        Some(max_pixels),
    );
    Ok((entry, stamp, true))
}

/// Scans the dataset: lists files, reuses index hashes for unchanged files, hashes the rest
/// in parallel, and rewrites the index. `limit` keeps the first N images by path.
pub fn scan(ds: &Dataset, state_dir: &Path, limit: Option<usize>) -> Result<Scan, std::io::Error> {
    let mut files = list_files(ds)?;
    if let Some(n) = limit {
        files.truncate(n);
    }
    let index_file = index_path(state_dir, ds);
    let mut index: Index<Scanned> = Index::load(&index_file);
    let bar = crate::ui::progress(files.len() as u64, "scanning");
    let results: Vec<_> = files
        .par_iter()
        .inspect(|_| bar.inc(1))
        .map(|(rel, abs)| {
            // A panic while reading one file (a metadata reader's bug) makes that file
            // unreadable, with the panic as its reason; the scan goes on.
            crate::panics::catch(|| scan_one(rel, abs, &index, ds.max_pixels))
                .unwrap_or_else(|panic| Err((rel.clone(), panic)))
        })
        .collect();
    bar.finish_and_clear();
    let mut previous: Vec<(String, String)> = index
        .iter()
        .map(|(p, v)| (p.to_string(), v.h.clone()))
        .collect();
    previous.sort();
    let mut scan = Scan {
        previous,
        ..Scan::default()
    };
    let before = index.len();
    let now = crate::hashing::now_ns();
    for r in results {
        match r {
            Ok((entry, stamp, fresh)) => {
                if fresh {
                    scan.hashed += 1;
                    index.insert(entry.rel.clone(), stamp, Scanned::of(&entry), now);
                } else {
                    scan.reused += 1;
                }
                scan.images.push(entry);
            }
            Err(e) => scan.unreadable.push(e),
        }
    }
    // A limited scan keeps what it did not look at.
    if limit.is_none() {
        let present: std::collections::HashSet<&str> =
            scan.images.iter().map(|i| i.rel.as_str()).collect();
        index.retain(|p| present.contains(p));
    }
    if scan.hashed > 0 || index.len() != before {
        if let Err(e) = index.save() {
            crate::ui::warn(format!(
                "could not save the hash index {}: {e}",
                index_file.display()
            ));
        }
    }
    Ok(scan)
}
