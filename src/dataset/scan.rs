//! Scanning a dataset folder: which images there are and their content hashes.
//!
//! The content hash is blake3 of the file bytes. An index of path, size and mtime → hash
//! (like git's index) avoids re-reading unchanged files; entries whose mtime is within two
//! seconds of the scan are not trusted next time ("racily clean"), so an edit made in the same
//! instant as a scan is still noticed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::Dataset;

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

/// Version of the metadata reader whose results the index holds; an index line written by an
/// older reader is re-read.
const META_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct IndexLine {
    p: String,
    s: u64,
    m: i64,
    h: String,
    #[serde(default)]
    f: Option<String>,
    #[serde(default)]
    w: Option<u32>,
    #[serde(default, rename = "ht")]
    ht: Option<u32>,
    /// Generation metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    g: Option<Box<ImageMeta>>,
    /// Metadata reader version (0: none read).
    #[serde(default)]
    mv: u32,
    /// Racily clean: modified within 2 s of the scan, so not trusted for reuse.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    r: bool,
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

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Where the index of a dataset lives.
pub fn index_path(state_dir: &Path, ds: &Dataset) -> PathBuf {
    let root_hash = blake3::hash(ds.root.to_string_lossy().as_bytes()).to_hex();
    state_dir
        .join("index")
        .join(format!("{}-{}.jsonl", ds.name, &root_hash[..12]))
}

fn load_index(path: &Path) -> HashMap<String, IndexLine> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<IndexLine>(l).ok())
        .map(|l| (l.p.clone(), l))
        .collect()
}

fn save_index(path: &Path, images: &[ImageEntry]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        for img in images {
            let line = IndexLine {
                p: img.rel.clone(),
                s: img.size,
                m: img.mtime_ns,
                h: img.hash.clone(),
                f: img.format.clone(),
                w: img.width,
                ht: img.height,
                g: img.meta.clone(),
                mv: META_VERSION,
                // Racily clean: a file modified within 2 s of now may change again unnoticed.
                r: now_ns - img.mtime_ns < 2_000_000_000,
            };
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Hashes and probes one file, or reuses its index line when it is unchanged.
fn scan_one(
    rel: &str,
    abs: &Path,
    index: &HashMap<String, IndexLine>,
    max_pixels: u64,
) -> Result<(ImageEntry, bool), (String, String)> {
    let meta = std::fs::metadata(abs).map_err(|e| (rel.to_string(), e.to_string()))?;
    let (size, mtime) = (meta.len(), mtime_ns(&meta));
    if let Some(line) = index
        .get(rel)
        .filter(|l| l.s == size && l.m == mtime && !l.r && l.mv == META_VERSION)
    {
        return Ok((
            ImageEntry {
                rel: rel.to_string(),
                abs: abs.to_path_buf(),
                size,
                mtime_ns: mtime,
                hash: line.h.clone(),
                format: line.f.clone(),
                width: line.w,
                height: line.ht,
                meta: line.g.clone(),
            },
            false,
        ));
    }
    crate::panics::failpoint("scan.read", rel);
    let bytes = std::fs::read(abs).map_err(|e| (rel.to_string(), e.to_string()))?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let probed = crate::imaging::probe(&bytes).ok();
    Ok((
        ImageEntry {
            rel: rel.to_string(),
            abs: abs.to_path_buf(),
            size: bytes.len() as u64,
            mtime_ns: mtime,
            hash,
            format: probed.map(|(f, _, _)| crate::imaging::decode::format_name(f).to_string()),
            width: probed.map(|(_, w, _)| w),
            height: probed.map(|(_, _, h)| h),
            meta: ImageMeta::read(&bytes, max_pixels),
        },
        true,
    ))
}

/// Scans the dataset: lists files, reuses index hashes for unchanged files, hashes the rest
/// in parallel, and rewrites the index. `limit` keeps the first N images by path.
pub fn scan(ds: &Dataset, state_dir: &Path, limit: Option<usize>) -> Result<Scan, std::io::Error> {
    let mut files = list_files(ds)?;
    if let Some(n) = limit {
        files.truncate(n);
    }
    let index_file = index_path(state_dir, ds);
    let index = load_index(&index_file);
    let bar = crate::ui::progress(files.len() as u64, "scanning");
    let results: Vec<Result<(ImageEntry, bool), (String, String)>> = files
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
    let mut previous: Vec<(String, String)> =
        index.values().map(|l| (l.p.clone(), l.h.clone())).collect();
    previous.sort();
    let mut scan = Scan {
        previous,
        ..Scan::default()
    };
    for r in results {
        match r {
            Ok((entry, fresh)) => {
                if fresh {
                    scan.hashed += 1;
                } else {
                    scan.reused += 1;
                }
                scan.images.push(entry);
            }
            Err(e) => scan.unreadable.push(e),
        }
    }
    if scan.hashed > 0 || index.len() != scan.images.len() {
        if let Err(e) = save_index(&index_file, &scan.images) {
            crate::ui::warn(format!(
                "could not save the hash index {}: {e}",
                index_file.display()
            ));
        }
    }
    Ok(scan)
}
