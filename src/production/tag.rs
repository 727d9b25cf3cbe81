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
use crate::config::{Model, Project};
use crate::dataset::ImageEntry;
use crate::engine::{Context, Identity};
use crate::postprocess::{self, Excluder};
use crate::production::promote::Loaded;
use crate::runner::predict::Scores;

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

impl ImageReport {
    /// The report of an image that failed before any sidecar was rendered.
    fn failed(file: PathBuf, error: String) -> ImageReport {
        ImageReport {
            file,
            status: "failed",
            tags: Vec::new(),
            changes: Vec::new(),
            errors: vec![error],
        }
    }
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
    model: &'a Model,
    identity: &'a Identity,
    dry_run: bool,
    now: String,
    listings: Listings,
}

/// One image's outcome: its report, the state entry to record once its sidecars are in
/// place, and the staged sidecars.
type Processed = (
    ImageReport,
    Option<state::Entry>,
    Vec<(WriterKind, crate::atomic::Staged)>,
);

/// One image being processed, with the tags decided for it.
struct Image<'a> {
    img: &'a ImageEntry,
    scores: &'a Scores,
    decided: Vec<postprocess::Decided>,
    provenance: Provenance,
    /// Its state entry from earlier passes.
    previous: Option<&'a state::Entry>,
}

/// What the writer thread shares with the end of the pass.
struct Shared {
    state: state::State,
    reports: Vec<ImageReport>,
    summary: Summary,
}

impl Job<'_> {
    /// Decides one image's tags, renders its sidecars and (unless a dry run) stages them.
    fn process(
        &self,
        img: &ImageEntry,
        result: Result<std::sync::Arc<Scores>, String>,
        origin: &str,
        previous: Option<&state::Entry>,
    ) -> Processed {
        let scores = match result {
            Ok(s) => s,
            Err(e) => return (ImageReport::failed(img.abs.clone(), e), None, Vec::new()),
        };
        let it = Image {
            img,
            scores: &scores,
            decided: postprocess::decide(&scores, &self.cfg.postprocess, self.excluder),
            provenance: self.provenance(origin),
            previous,
        };
        let mut rep = ImageReport {
            file: img.abs.clone(),
            status: "tagged",
            tags: it.decided.iter().map(|d| d.tag.clone()).collect(),
            changes: Vec::new(),
            errors: Vec::new(),
        };
        let mut sidecars = BTreeMap::new();
        let mut txt_ours = Vec::new();
        let mut staged = Vec::new();
        for &kind in self.writers {
            let (r, created) = match self.sidecar(&it, kind, &mut staged) {
                Ok(x) => x,
                Err(e) => {
                    rep.errors.push(e);
                    continue;
                }
            };
            if kind == WriterKind::Txt {
                txt_ours = r.ours.clone();
            }
            sidecars.insert(kind, r.path.clone());
            rep.changes.push(Change {
                writer: kind,
                created,
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
        let entry = self.state_entry(img, previous, sidecars, txt_ours);
        (rep, Some(entry), staged)
    }

    /// Where an image's tags came from, for the JSON sidecar.
    fn provenance(&self, origin: &str) -> Provenance {
        Provenance {
            config: self.alias.to_string(),
            config_hash: self.config_hash.to_string(),
            model: self.model.name.to_string(),
            model_fingerprint: self.identity.fingerprint.to_string(),
            run_id: (!origin.is_empty()).then(|| origin.to_string()),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Renders one sidecar of an image and (unless a dry run, or it is unchanged) stages it.
    /// Returns it and whether it is a new file; an error leaves the sidecar alone.
    fn sidecar(
        &self,
        it: &Image<'_>,
        kind: WriterKind,
        staged: &mut Vec<(WriterKind, crate::atomic::Staged)>,
    ) -> Result<(Rendered, bool), String> {
        let abs = &it.img.abs;
        let path = match kind {
            WriterKind::Xmp => self
                .cfg
                .writers
                .xmp
                .path_with(abs, |p| self.listings.exists(p)),
            _ => sidecar_path(kind, abs, &self.cfg.writers),
        };
        let on_disk = self.listings.exists(&path);
        let existing = read_existing(&path, abs, kind, on_disk)?;
        let encoding = existing.as_ref().map(|d| d.encoding);
        let existing = existing.map(|d| d.text);
        let mut r = self.render(it, kind, existing.as_deref())?;
        // Written back in the encoding it was read in (new files: UTF-8).
        if let Some(enc) = encoding.filter(|e| *e != Encoding::Utf8 { bom: false }) {
            let text = String::from_utf8_lossy(&r.content).into_owned();
            r.content = writers::encoding::encode(&text, enc);
        }
        if !self.dry_run && !r.unchanged {
            let st = crate::atomic::stage_new(&r.path, &r.content, on_disk)
                .map_err(|e| format!("cannot write {}: {e}", r.path.display()))?;
            staged.push((kind, st));
        }
        Ok((r, existing.is_none()))
    }

    /// One sidecar's new content, given its current text.
    fn render(
        &self,
        it: &Image<'_>,
        kind: WriterKind,
        existing: Option<&str>,
    ) -> Result<Rendered, String> {
        let (abs, w) = (&it.img.abs, &self.cfg.writers);
        match kind {
            WriterKind::Txt => {
                let prev: &[String] = it.previous.map(|p| p.txt_ours.as_slice()).unwrap_or(&[]);
                Ok(writers::txt::render(
                    abs,
                    existing,
                    prev,
                    &it.decided,
                    &w.txt,
                ))
            }
            WriterKind::Xmp => {
                writers::xmp::render(abs, existing, &it.decided, &w.xmp).map_err(|e| e.to_string())
            }
            WriterKind::Json => {
                let doc = writers::json::document(
                    abs,
                    &it.img.hash,
                    &it.decided,
                    it.scores,
                    None,
                    &it.provenance,
                );
                writers::json::render(abs, existing, &doc, &w.json).map_err(|e| e.to_string())
            }
        }
    }

    /// The state entry of an image whose sidecars were all written.
    fn state_entry(
        &self,
        img: &ImageEntry,
        previous: Option<&state::Entry>,
        mut sidecars: BTreeMap<WriterKind, PathBuf>,
        txt_ours: Vec<String>,
    ) -> state::Entry {
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
        let txt_ours = if self.writers.contains(&WriterKind::Txt) {
            txt_ours
        } else {
            previous.map(|p| p.txt_ours.clone()).unwrap_or_default()
        };
        state::Entry {
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
        }
    }

    /// Infers the images (through the run cache) and streams each result to one writer
    /// thread, which renders and commits the sidecars (they wait on fsync, so they overlap
    /// inference instead of following it).
    fn infer_and_write(
        &self,
        project: &Project,
        ctx: &Context,
        images: &[ImageEntry],
        shared: &std::sync::Mutex<Shared>,
    ) -> Result<crate::runner::predict::Inferred> {
        let keys = crate::runner::predict::cache_keys(self.model, self.identity, images);
        let mut by_key: std::collections::HashMap<&str, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            by_key.entry(k.as_str()).or_default().push(i);
        }
        let (tx, rx) = crossbeam_channel::bounded::<Item>(256);
        std::thread::scope(|scope| -> Result<crate::runner::predict::Inferred> {
            let writer = scope.spawn(move || self.write_results(rx, images, shared));
            let names = enrolled_names(ctx);
            let mut sink = |key: &str, result: Result<Scores, String>, origin: &str| {
                let result = result.map(|mut scores| {
                    for (tag, _, _) in scores.iter_mut() {
                        if let Some(n) = names.get(tag.as_str()) {
                            tag.clone_from(n);
                        }
                    }
                    std::sync::Arc::new(scores)
                });
                for &i in by_key.get(key).map(Vec::as_slice).unwrap_or(&[]) {
                    let _ = tx.send((i, result.clone(), origin.to_string()));
                }
            };
            let inferred = crate::runner::predict::infer_cached(
                project,
                self.model,
                self.identity,
                images,
                ctx,
                &format!("tag-{}", self.alias),
                !self.dry_run,
                Some(&mut sink),
            );
            drop(tx);
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("the sidecar writer thread panicked"))??;
            inferred
        })
    }

    /// The writer thread: sidecars are staged as results arrive and committed in groups
    /// (fsync all, then rename all), which keeps file-system work from competing with
    /// decoding.
    fn write_results(
        &self,
        rx: crossbeam_channel::Receiver<Item>,
        images: &[ImageEntry],
        shared: &std::sync::Mutex<Shared>,
    ) -> Result<()> {
        let mut pending: Vec<Processed> = Vec::new();
        for (i, result, origin) in rx {
            let img = &images[i];
            let previous = lock(shared).state.entries.get(&img.abs).cloned();
            pending.push(self.process(img, result, &origin, previous.as_ref()));
            if pending.len() >= GROUP {
                commit_group(&mut pending, shared)?;
            }
        }
        commit_group(&mut pending, shared)
    }
}

/// `person:` tags as runs store them (`person:amy h`) → as enrolled (`person:Amy H`): sidecars
/// keep the enrolled name's case.
fn enrolled_names(ctx: &Context) -> std::collections::HashMap<String, String> {
    ctx.gallery
        .iter()
        .flat_map(|g| g.people.iter())
        .map(|p| {
            let key = crate::faces::name_key(&p.name);
            (format!("person:{key}"), format!("person:{}", p.name))
        })
        .collect()
}

/// One inference result on its way to the writer thread: the image's index, its scores (or
/// why there are none) and the run that computed them.
type Item = (usize, Result<std::sync::Arc<Scores>, String>, String);

/// Commits a group of processed images: syncs their staged sidecars, durably records
/// iw-lab's tags in them, renames them into place, then records each image as done.
fn commit_group(pending: &mut Vec<Processed>, shared: &std::sync::Mutex<Shared>) -> Result<()> {
    for (rep, _, files) in pending.iter_mut() {
        for (_, st) in files.iter() {
            if let Err(e) = st.sync() {
                rep.errors
                    .push(format!("cannot write {}: {e}", st.dest().display()));
            }
        }
    }
    let mut guard = lock(shared);
    let Shared {
        state,
        reports,
        summary,
    } = &mut *guard;
    record_intents(state, pending)?;
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
}

/// Ownership first: before any sidecar of the group is renamed into place, the log durably
/// names iw-lab's tags in it, old and new.
fn record_intents(state: &mut state::State, pending: &[Processed]) -> Result<()> {
    let mut intents = 0;
    for (rep, entry, files) in pending {
        if let (true, Some(e), false) = (rep.errors.is_empty(), entry, files.is_empty()) {
            let p = e.pending(state.entries.get(&e.path));
            state.record(p)?;
            intents += 1;
        }
    }
    if intents > 0 {
        state.sync()?;
    }
    Ok(())
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
    let writers = writers_to_write(loaded, req)?;
    let model = cfg.resolve_model(project, &loaded.path, &loaded.text)?;
    let excluder = Excluder::new(&cfg.postprocess.exclude)?;
    let identity = promoted_identity(loaded, &model, ctx, req.allow_drift)?;
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
    drop_clashes(&mut files, &clashes, &mut summary, &mut report);
    let (todo, skipped) = to_do(&files, &state, &config_hash, &writers, req.force);
    summary.skipped += skipped;
    if todo.is_empty() {
        summary.seconds = start.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let images = hashed_images(&todo, &mut summary, &mut report);
    if !req.dry_run {
        clean_stale_temps(&images);
    }
    let job = Job {
        cfg,
        excluder: &excluder,
        writers: &writers,
        alias,
        config_hash: &config_hash,
        model: &model,
        identity: &identity,
        dry_run: req.dry_run,
        now: crate::store::time_now().iso(),
        listings: Listings::default(),
    };
    let shared = std::sync::Mutex::new(Shared {
        state,
        reports: Vec::new(),
        summary,
    });
    let inferred = job.infer_and_write(project, ctx, &images, &shared)?;
    let Shared {
        state,
        mut reports,
        mut summary,
    } = shared.into_inner().unwrap_or_else(|e| e.into_inner());
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

/// Leaves out the files whose sidecars would be another image's too, reporting them as failed.
fn drop_clashes(
    files: &mut Vec<PathBuf>,
    clashes: &BTreeMap<PathBuf, String>,
    summary: &mut Summary,
    report: &mut impl FnMut(&ImageReport),
) {
    files.retain(|f| match clashes.get(f) {
        None => true,
        Some(why) => {
            summary.failed += 1;
            report(&ImageReport::failed(f.clone(), why.clone()));
            false
        }
    });
}

/// Removes the temporary files an interrupted pass left in the images' folders.
fn clean_stale_temps(images: &[ImageEntry]) {
    let dirs: std::collections::BTreeSet<&Path> =
        images.iter().filter_map(|i| i.abs.parent()).collect();
    for d in dirs {
        crate::atomic::clean_stale_temps(d);
    }
}

/// The sidecars to write: those asked for, else the config's; at least one.
fn writers_to_write(loaded: &Loaded, req: &Request) -> Result<Vec<WriterKind>> {
    let mut w = req
        .write
        .clone()
        .unwrap_or_else(|| loaded.config.writers.write.clone());
    w.sort();
    w.dedup();
    if w.is_empty() {
        bail!(
            "no sidecars to write: pass --write txt,xmp,json or set `writers.write` in {}",
            loaded.path.display()
        );
    }
    Ok(w)
}

/// The model's identity now. The model must be the promoted one, unless drift is allowed.
fn promoted_identity(
    loaded: &Loaded,
    model: &Model,
    ctx: &Context,
    allow_drift: bool,
) -> Result<Identity> {
    let cfg = &loaded.config;
    let identity = crate::engine::identify(model, ctx, true)?.context("model identity")?;
    let drifted = identity.fingerprint != cfg.model.fingerprint
        || identity.version != cfg.model.adapter_version;
    if drifted && !allow_drift {
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
    Ok(identity)
}

/// A file that may need tagging: its hash when the state knows the file unchanged, its size
/// and modification time (0 when they could not be read).
struct Todo {
    path: PathBuf,
    hash: Option<String>,
    size: u64,
    mtime: i64,
}

/// Skips what is done (same content and config, sidecars still there; unless `force`) and
/// reuses the known hashes of unchanged files. Returns the rest and how many were skipped.
fn to_do(
    files: &[PathBuf],
    state: &state::State,
    config_hash: &str,
    writers: &[WriterKind],
    force: bool,
) -> (Vec<Todo>, usize) {
    let mut todo = Vec::new();
    let mut skipped = 0;
    for f in files {
        let Some((size, mtime)) = stat(f) else {
            todo.push(Todo {
                path: f.clone(),
                hash: None,
                size: 0,
                mtime: 0,
            });
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
        if done && !force {
            skipped += 1;
            continue;
        }
        todo.push(Todo {
            path: f.clone(),
            hash: known.map(|e| e.hash.clone()),
            size,
            mtime,
        });
    }
    (todo, skipped)
}

/// The image entries of the files to do, hashing (in parallel) those whose hash is not
/// known; a file that cannot be read is reported as failed.
fn hashed_images(
    todo: &[Todo],
    summary: &mut Summary,
    report: &mut impl FnMut(&ImageReport),
) -> Vec<ImageEntry> {
    let bar = crate::ui::progress(todo.len() as u64, "hashing");
    let entries: Vec<Result<ImageEntry, (PathBuf, String)>> = todo
        .par_iter()
        .inspect(|_| bar.inc(1))
        .map(|t| match &t.hash {
            Some(h) => Ok(ImageEntry {
                rel: crate::dataset::names::rel_text(&t.path),
                abs: t.path.clone(),
                size: t.size,
                mtime_ns: t.mtime,
                hash: h.clone(),
                format: None,
                width: None,
                height: None,
                meta: None,
            }),
            None => crate::runner::predict::entry(&t.path)
                .map(|mut e| {
                    e.mtime_ns = t.mtime;
                    e
                })
                .map_err(|r| (t.path.clone(), r)),
        })
        .collect();
    bar.finish_and_clear();
    let mut images = Vec::new();
    for e in entries {
        match e {
            Ok(img) => images.push(img),
            Err((path, reason)) => {
                summary.failed += 1;
                report(&ImageReport::failed(path, reason));
            }
        }
    }
    images
}
