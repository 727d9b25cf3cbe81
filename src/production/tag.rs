//! The production pass (`iw-lab tag`): a promoted config over real folders, writing sidecars
//! safely and incrementally.
//!
//! Images already tagged under the same content hash and config hash (with their sidecars
//! still there) are skipped without being read. The model's files must still have the promoted
//! fingerprint. Inference goes through the run cache (`runner::predict::infer_cached`), so
//! images an experiment already scored cost nothing, and the new outputs are recorded as a run.
//! Every sidecar is written atomically; source images are only ever read; an image whose
//! sidecars cannot be written is reported and the pass goes on.

use super::state;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use rayon::prelude::*;
use serde::Serialize;

use super::writers::{self, encoding::Encoding, json::Provenance, Rendered, WriterKind};
use crate::config::Project;
use crate::dataset::ImageEntry;
use crate::engine::Context;
use crate::postprocess::{self, Excluder};
use crate::production::promote::Loaded;

/// What `iw-lab tag` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub paths: Vec<PathBuf>,
    /// Sidecars to write (default: the config's `writers.write`).
    pub write: Option<Vec<WriterKind>>,
    pub dry_run: bool,
    pub force: bool,
    pub allow_drift: bool,
}

/// One sidecar change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub writer: WriterKind,
    pub path: PathBuf,
    pub created: bool,
    pub unchanged: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// What happened to one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub file: PathBuf,
    /// `tagged`, `unchanged`, `would-change` (dry run), or `failed`.
    pub status: &'static str,
    pub tags: Vec<String>,
    pub changes: Vec<Change>,
    pub errors: Vec<String>,
}

/// The end summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub images: usize,
    pub tagged: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
    pub written: BTreeMap<&'static str, usize>,
    pub inferences: usize,
    pub run_id: Option<String>,
    pub config_hash: String,
    pub dry_run: bool,
    pub seconds: f64,
}

/// Whether `path` has the extension of an image format iw-lab reads.
fn is_image_name(path: &Path) -> bool {
    let exts = crate::config::resolve::DEFAULT_EXTENSIONS;
    path.extension()
        .is_some_and(|x| exts.contains(&x.to_string_lossy().to_lowercase().as_str()))
}

/// Image files under `paths`: files as given, folders recursively (hidden entries skipped).
///
/// Links: a symlinked *file* is tagged where the link is (its sidecars go beside the link,
/// inside the folder given); a symlinked *folder* below a given folder is not followed, so
/// the pass never writes outside the folders it was given. Paths are made absolute without
/// resolving links.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
        if p.is_dir() {
            let walker = walkdir::WalkDir::new(&p)
                .follow_links(false)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
                });
            for e in walker {
                let e = e.with_context(|| format!("walking {}", p.display()))?;
                let path = e.path();
                if !is_image_name(path) {
                    continue;
                }
                let target = std::fs::metadata(path);
                if e.path_is_symlink() && target.as_ref().is_ok_and(|m| m.is_dir()) {
                    crate::ui::note(format!(
                        "not following the folder link {} (a pass never writes outside the folders it is given)",
                        path.display()
                    ));
                }
                let is_file = e.file_type().is_file()
                    || (e.path_is_symlink() && target.is_ok_and(|m| m.is_file()));
                if is_file {
                    out.push(path.to_path_buf());
                }
            }
        } else if p.is_file() {
            out.push(p);
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A case-insensitive key for a path: two sidecars whose keys are equal would be one file on
/// a case-insensitive file system (macOS, Windows), so they count as one everywhere.
fn fold_case(path: &Path) -> Vec<u8> {
    match path.to_str() {
        Some(s) => s.to_lowercase().into_bytes(),
        None => path.as_os_str().as_encoded_bytes().to_ascii_lowercase(),
    }
}

/// Images whose sidecars would be another image's too (`a.jpg` and `a.png` both map to
/// `a.txt`; `A.png` and `a.png` do on a case-insensitive file system), with the reason. Every
/// image file in the folders of `images` counts, tagged in this pass or not: nothing is
/// written for either of a pair.
fn conflicts(
    images: &[PathBuf],
    writers: &[WriterKind],
    w: &writers::Writers,
) -> BTreeMap<PathBuf, String> {
    let dirs: std::collections::BTreeSet<&Path> =
        images.iter().filter_map(|i| i.parent()).collect();
    let mut owners: std::collections::HashMap<(WriterKind, Vec<u8>), Vec<PathBuf>> =
        std::collections::HashMap::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let path = e.path();
            if !is_image_name(&path) {
                continue;
            }
            for &kind in writers {
                let side = match kind {
                    WriterKind::Xmp => w.xmp.path_with(&path, |p| p.exists()),
                    _ => sidecar_path(kind, &path, w),
                };
                owners
                    .entry((kind, fold_case(&side)))
                    .or_default()
                    .push(path.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    for img in images {
        for &kind in writers {
            let side = match kind {
                WriterKind::Xmp => w.xmp.path_with(img, |p| p.exists()),
                _ => sidecar_path(kind, img, w),
            };
            let Some(all) = owners.get(&(kind, fold_case(&side))) else {
                continue;
            };
            let others: Vec<String> = all
                .iter()
                .filter(|o| *o != img)
                .map(|o| o.display().to_string())
                .collect();
            if !others.is_empty() {
                out.entry(img.clone()).or_insert_with(|| {
                    format!(
                        "{} would also be the sidecar of {}: two images map to one sidecar, so neither is written (rename one of them)",
                        side.display(),
                        others.join(", ")
                    )
                });
            }
        }
    }
    out
}

/// The current text of a sidecar about to be replaced, decoded exactly; `None` when there is
/// none. Errors (the file is then left untouched): unreadable, a symbolic link, an image, or
/// text in an encoding iw-lab cannot write back losslessly.
fn read_existing(
    path: &Path,
    image: &Path,
    kind: WriterKind,
    on_disk: bool,
) -> Result<Option<writers::encoding::Decoded>, String> {
    if !on_disk {
        return Ok(None);
    }
    if fold_case(path) == fold_case(image) {
        return Err(format!(
            "{} is the image itself; a sidecar never replaces it",
            path.display()
        ));
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{} is a symbolic link; iw-lab does not replace links (left untouched)",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if crate::imaging::decode::sniff(&bytes).is_some() {
        return Err(format!(
            "{} holds an image; iw-lab never replaces an image with a sidecar (left untouched)",
            path.display()
        ));
    }
    let rules = match kind {
        WriterKind::Xmp => writers::encoding::Kind::Xml,
        _ => writers::encoding::Kind::Text,
    };
    writers::encoding::decode(&bytes, rules)
        .map(Some)
        .map_err(|why| {
            format!(
                "{} was left untouched: {why} (convert it to UTF-8 to let iw-lab update it)",
                path.display()
            )
        })
}

fn stat(path: &Path) -> Option<(u64, i64)> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos() as i64;
    Some((m.len(), mtime))
}

fn sidecar_path(kind: WriterKind, image: &Path, w: &writers::Writers) -> PathBuf {
    match kind {
        WriterKind::Txt => w.txt.path(image),
        WriterKind::Xmp => w.xmp.path(image),
        WriterKind::Json => w.json.path(image),
    }
}

/// Which files exist, one directory listing per folder (instead of a failed open per
/// sidecar that is not there yet).
#[derive(Default)]
struct Listings(std::sync::Mutex<std::collections::HashMap<PathBuf, HashSet<std::ffi::OsString>>>);

impl Listings {
    fn exists(&self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return path.exists();
        };
        let mut map = lock(&self.0);
        let names = map.entry(dir.to_path_buf()).or_insert_with(|| {
            std::fs::read_dir(dir)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
                .unwrap_or_default()
        });
        names.contains(name)
    }
}

/// Images whose sidecars are committed together (measured: 32 beats 1 and 256 here).
const GROUP: usize = 32;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every image of a pass shares.
struct Job<'a> {
    cfg: &'a crate::production::promote::ProductionConfig,
    excluder: &'a Excluder,
    writers: &'a [WriterKind],
    alias: &'a str,
    config_hash: &'a str,
    model_name: &'a str,
    fingerprint: &'a str,
    dry_run: bool,
    now: String,
    listings: Listings,
}

impl Job<'_> {
    /// Decides one image's tags, renders its sidecars and (unless a dry run) stages them.
    /// Returns the report, the state entry to record once they are in place, and the staged
    /// sidecars.
    fn process(
        &self,
        img: &ImageEntry,
        result: Result<std::sync::Arc<crate::runner::predict::Scores>, String>,
        origin: &str,
        previous: Option<&state::Entry>,
    ) -> (
        ImageReport,
        Option<state::Entry>,
        Vec<(WriterKind, crate::atomic::Staged)>,
    ) {
        let cfg = self.cfg;
        let scores = match result {
            Ok(s) => s,
            Err(e) => {
                let rep = ImageReport {
                    file: img.abs.clone(),
                    status: "failed",
                    tags: Vec::new(),
                    changes: Vec::new(),
                    errors: vec![e],
                };
                return (rep, None, Vec::new());
            }
        };
        let decided = postprocess::decide(&scores, &cfg.postprocess, self.excluder);
        let provenance = Provenance {
            config: self.alias.to_string(),
            config_hash: self.config_hash.to_string(),
            model: self.model_name.to_string(),
            model_fingerprint: self.fingerprint.to_string(),
            run_id: (!origin.is_empty()).then(|| origin.to_string()),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let mut rep = ImageReport {
            file: img.abs.clone(),
            status: "tagged",
            tags: decided.iter().map(|d| d.tag.clone()).collect(),
            changes: Vec::new(),
            errors: Vec::new(),
        };
        let mut sidecars = BTreeMap::new();
        let mut txt_ours = Vec::new();
        let mut staged = Vec::new();
        for &kind in self.writers {
            let path = match kind {
                WriterKind::Xmp => cfg
                    .writers
                    .xmp
                    .path_with(&img.abs, |p| self.listings.exists(p)),
                _ => sidecar_path(kind, &img.abs, &cfg.writers),
            };
            let on_disk = self.listings.exists(&path);
            let existing = match read_existing(&path, &img.abs, kind, on_disk) {
                Ok(x) => x,
                Err(e) => {
                    rep.errors.push(e);
                    continue;
                }
            };
            let encoding = existing.as_ref().map(|d| d.encoding);
            let existing = existing.map(|d| d.text);
            let rendered: Result<Rendered, String> = match kind {
                WriterKind::Txt => {
                    let prev: &[String] = previous.map(|p| p.txt_ours.as_slice()).unwrap_or(&[]);
                    Ok(writers::txt::render(
                        &img.abs,
                        existing.as_deref(),
                        prev,
                        &decided,
                        &cfg.writers.txt,
                    ))
                }
                WriterKind::Xmp => {
                    writers::xmp::render(&img.abs, existing.as_deref(), &decided, &cfg.writers.xmp)
                        .map_err(|e| e.to_string())
                }
                WriterKind::Json => {
                    let doc = writers::json::document(
                        &img.abs,
                        &img.hash,
                        &decided,
                        &scores,
                        None,
                        &provenance,
                    );
                    writers::json::render(&img.abs, existing.as_deref(), &doc, &cfg.writers.json)
                        .map_err(|e| e.to_string())
                }
            };
            let mut r = match rendered {
                Ok(r) => r,
                Err(e) => {
                    rep.errors.push(e);
                    continue;
                }
            };
            // Written back in the encoding it was read in (new files: UTF-8).
            if let Some(enc) = encoding.filter(|e| *e != Encoding::Utf8 { bom: false }) {
                let text = String::from_utf8_lossy(&r.content).into_owned();
                r.content = writers::encoding::encode(&text, enc);
            }
            if !self.dry_run && !r.unchanged {
                match crate::atomic::stage_new(&r.path, &r.content, on_disk) {
                    Ok(st) => staged.push((kind, st)),
                    Err(e) => {
                        rep.errors
                            .push(format!("cannot write {}: {e}", r.path.display()));
                        continue;
                    }
                }
            }
            if kind == WriterKind::Txt {
                txt_ours = r.ours.clone();
            }
            sidecars.insert(kind, r.path.clone());
            rep.changes.push(Change {
                writer: kind,
                created: existing.is_none(),
                unchanged: r.unchanged,
                path: r.path,
                added: r.added,
                removed: r.removed,
            });
        }
        if !rep.errors.is_empty() {
            rep.status = "failed";
        } else if rep.changes.iter().all(|c| c.unchanged) {
            rep.status = "unchanged";
        } else if self.dry_run {
            rep.status = "would-change";
        }
        if !rep.errors.is_empty() || self.dry_run {
            return (rep, None, staged);
        }
        let mut all_writers: HashSet<WriterKind> = self.writers.iter().copied().collect();
        // Sidecars written earlier under the same config still count as done.
        if let Some(p) =
            previous.filter(|p| p.config_hash == self.config_hash && p.hash == img.hash)
        {
            for (k, path) in &p.sidecars {
                if path.exists() && all_writers.insert(*k) {
                    sidecars.insert(*k, path.clone());
                }
            }
        }
        let mut ws: Vec<WriterKind> = all_writers.into_iter().collect();
        ws.sort();
        if !self.writers.contains(&WriterKind::Txt) {
            txt_ours = previous.map(|p| p.txt_ours.clone()).unwrap_or_default();
        }
        let entry = state::Entry {
            path: img.abs.clone(),
            size: img.size,
            mtime_ns: img.mtime_ns,
            hash: img.hash.clone(),
            config_hash: self.config_hash.to_string(),
            writers: ws,
            sidecars,
            txt_ours,
            at: self.now.clone(),
            pending: false,
        };
        (rep, Some(entry), staged)
    }
}

/// Runs the production pass, calling `report` for every image that was not skipped.
pub fn tag(
    project: &Project,
    loaded: &Loaded,
    ctx: &Context,
    req: &Request,
    mut report: impl FnMut(&ImageReport),
) -> Result<Summary> {
    let start = Instant::now();
    let cfg = &loaded.config;
    let writers: Vec<WriterKind> = {
        let mut w = req
            .write
            .clone()
            .unwrap_or_else(|| cfg.writers.write.clone());
        w.sort();
        w.dedup();
        w
    };
    if writers.is_empty() {
        bail!(
            "no sidecars to write: pass --write txt,xmp,json or set `writers.write` in {}",
            loaded.path.display()
        );
    }
    let model = cfg.resolve_model(project, &loaded.path, &loaded.text)?;
    let excluder = Excluder::new(&cfg.postprocess.exclude)?;

    // The model must be the promoted one.
    let identity = crate::engine::identify(&model, ctx, true)?.context("model identity")?;
    let drifted = identity.fingerprint != cfg.model.fingerprint
        || identity.version != cfg.model.adapter_version;
    if drifted && !req.allow_drift {
        bail!(
            "model `{}` differs from the one promoted in {}: fingerprint {} (adapter v{}) now, {} (v{}) promoted\nhint: re-promote after checking the new model, or pass --allow-drift to tag with it anyway",
            model.name,
            loaded.path.display(),
            identity.fingerprint.get(..16).unwrap_or(&identity.fingerprint),
            identity.version,
            cfg.model.fingerprint.get(..16).unwrap_or(&cfg.model.fingerprint),
            cfg.model.adapter_version
        );
    }
    let mut effective = cfg.clone();
    effective.model.fingerprint = identity.fingerprint.clone();
    let config_hash = effective.hash();

    let mut files = collect(&req.paths)?;
    let clashes = conflicts(&files, &writers, &cfg.writers);
    let alias = if cfg.alias.is_empty() {
        "default"
    } else {
        cfg.alias.as_str()
    };
    let state = state::State::open(&project.state_dir(), alias);
    let mut summary = Summary {
        images: files.len(),
        config_hash: config_hash.clone(),
        dry_run: req.dry_run,
        ..Summary::default()
    };
    files.retain(|f| match clashes.get(f) {
        None => true,
        Some(why) => {
            summary.failed += 1;
            report(&ImageReport {
                file: f.clone(),
                status: "failed",
                tags: Vec::new(),
                changes: Vec::new(),
                errors: vec![why.clone()],
            });
            false
        }
    });

    // Skip what is done; reuse known hashes of unchanged files.
    let mut todo: Vec<(PathBuf, Option<String>, u64, i64)> = Vec::new();
    for f in &files {
        let Some((size, mtime)) = stat(f) else {
            todo.push((f.clone(), None, 0, 0));
            continue;
        };
        let known = state
            .entries
            .get(f)
            .filter(|e| e.size == size && e.mtime_ns == mtime);
        let done = known.is_some_and(|e| {
            e.config_hash == config_hash
                && writers
                    .iter()
                    .all(|w| e.writers.contains(w) && e.sidecars.get(w).is_some_and(|p| p.exists()))
        });
        if done && !req.force {
            summary.skipped += 1;
            continue;
        }
        todo.push((f.clone(), known.map(|e| e.hash.clone()), size, mtime));
    }
    if todo.is_empty() {
        summary.seconds = start.elapsed().as_secs_f64();
        return Ok(summary);
    }

    // Hash what we must, in parallel.
    let bar = crate::ui::progress(todo.len() as u64, "hashing");
    let entries: Vec<Result<ImageEntry, (PathBuf, String)>> = todo
        .par_iter()
        .inspect(|_| bar.inc(1))
        .map(|(path, hash, size, mtime)| match hash {
            Some(h) => Ok(ImageEntry {
                rel: crate::dataset::names::rel_text(path),
                abs: path.clone(),
                size: *size,
                mtime_ns: *mtime,
                hash: h.clone(),
                format: None,
                width: None,
                height: None,
                meta: None,
            }),
            None => crate::runner::predict::entry(path)
                .map(|mut e| {
                    e.mtime_ns = *mtime;
                    e
                })
                .map_err(|r| (path.clone(), r)),
        })
        .collect();
    bar.finish_and_clear();
    let mut images = Vec::new();
    for e in entries {
        match e {
            Ok(img) => images.push(img),
            Err((path, reason)) => {
                summary.failed += 1;
                report(&ImageReport {
                    file: path,
                    status: "failed",
                    tags: Vec::new(),
                    changes: Vec::new(),
                    errors: vec![reason],
                });
            }
        }
    }
    // Results stream from inference to writer threads (sidecar writes wait on fsync, so they
    // overlap inference instead of following it).
    let keys = crate::runner::predict::cache_keys(&model, &identity, &images);
    let mut by_key: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        by_key.entry(k.as_str()).or_default().push(i);
    }
    if !req.dry_run {
        let dirs: std::collections::BTreeSet<&Path> =
            images.iter().filter_map(|i| i.abs.parent()).collect();
        for d in dirs {
            crate::atomic::clean_stale_temps(d);
        }
    }
    let job = Job {
        cfg,
        excluder: &excluder,
        writers: &writers,
        alias,
        config_hash: &config_hash,
        model_name: &model.name,
        fingerprint: &identity.fingerprint,
        dry_run: req.dry_run,
        now: crate::store::time_now().iso(),
        listings: Listings::default(),
    };
    let shared = std::sync::Mutex::new((state, Vec::<ImageReport>::new(), summary));
    type Item = (
        usize,
        Result<std::sync::Arc<crate::runner::predict::Scores>, String>,
        String,
    );
    let (tx, rx) = crossbeam_channel::bounded::<Item>(256);
    let inferred = std::thread::scope(|scope| -> Result<crate::runner::predict::Inferred> {
        // One writer: sidecars are staged as results arrive and committed in groups (fsync all,
        // then rename all), which keeps file-system work from competing with decoding.
        let writer = {
            let (job, images, shared) = (&job, &images, &shared);
            let rx = rx.clone();
            scope.spawn(move || -> Result<()> {
                type Pending = (
                    ImageReport,
                    Option<state::Entry>,
                    Vec<(WriterKind, crate::atomic::Staged)>,
                );
                let flush = |pending: &mut Vec<Pending>| -> Result<()> {
                    for (rep, _, files) in pending.iter_mut() {
                        for (_, st) in files.iter() {
                            if let Err(e) = st.sync() {
                                rep.errors
                                    .push(format!("cannot write {}: {e}", st.dest().display()));
                            }
                        }
                    }
                    let mut guard = lock(shared);
                    let (state, reports, summary) = &mut *guard;
                    // Ownership first: before any sidecar of the group is renamed into place,
                    // the log durably names iw-lab's tags in it, old and new.
                    let mut intents = 0;
                    for (rep, entry, files) in pending.iter() {
                        if let (true, Some(e), false) =
                            (rep.errors.is_empty(), entry, files.is_empty())
                        {
                            let p = e.pending(state.entries.get(&e.path));
                            state.record(p)?;
                            intents += 1;
                        }
                    }
                    if intents > 0 {
                        state.sync()?;
                    }
                    crate::panics::failpoint("tag.rename", "");
                    for (mut rep, entry, files) in pending.drain(..) {
                        let synced = rep.errors.is_empty();
                        for (kind, st) in files {
                            if !synced {
                                continue; // dropped: the temporary file is removed
                            }
                            let dest = st.dest().to_path_buf();
                            match st.rename() {
                                Ok(()) => *summary.written.entry(kind.name()).or_default() += 1,
                                Err(e) => rep
                                    .errors
                                    .push(format!("cannot write {}: {e}", dest.display())),
                            }
                        }
                        if !rep.errors.is_empty() {
                            rep.status = "failed";
                        }
                        match rep.status {
                            "failed" => summary.failed += 1,
                            "unchanged" => summary.unchanged += 1,
                            _ => summary.tagged += 1,
                        }
                        if let (true, Some(e)) = (rep.errors.is_empty(), entry) {
                            state.record(e)?;
                        }
                        reports.push(rep);
                    }
                    Ok(())
                };
                let mut pending: Vec<Pending> = Vec::new();
                for (i, result, origin) in rx {
                    let img = &images[i];
                    let previous = lock(shared).0.entries.get(&img.abs).cloned();
                    pending.push(job.process(img, result, &origin, previous.as_ref()));
                    if pending.len() >= GROUP {
                        flush(&mut pending)?;
                    }
                }
                flush(&mut pending)
            })
        };
        drop(rx);
        let mut sink =
            |key: &str, result: Result<crate::runner::predict::Scores, String>, origin: &str| {
                let result = result.map(std::sync::Arc::new);
                for &i in by_key.get(key).map(Vec::as_slice).unwrap_or(&[]) {
                    let _ = tx.send((i, result.clone(), origin.to_string()));
                }
            };
        let inferred = crate::runner::predict::infer_cached(
            project,
            &model,
            &identity,
            &images,
            ctx,
            &format!("tag-{alias}"),
            !req.dry_run,
            Some(&mut sink),
        );
        drop(tx);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the sidecar writer thread panicked"))??;
        inferred
    })?;
    let (state, mut reports, mut summary) = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.inferences = inferred.inferences;
    summary.run_id = inferred.run_id.clone();
    reports.sort_by(|a, b| a.file.cmp(&b.file));
    for r in &reports {
        report(r);
    }
    state.finish()?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
