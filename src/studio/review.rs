//! Reviewing runs against ground truth (`iw-lab serve --run RUN…`): the grid of the run's
//! images with their current ground truth, flags (`error`, `failed`, `disagree`) and sort keys
//! (`f1`, `score:<tag>`); an image's page with each variant's tags as true positive, false
//! positive or missed; and edits of the dataset's ground-truth `.txt` sidecars (accept a
//! predicted tag, remove a wrong one), versioned and logged like every studio write.
//!
//! Runs stay immutable: edits go to the dataset's sidecars, never to a run's
//! `ground_truth.parquet`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::answer::{ApiError, ApiResult, Body, P};
use super::browse::Listing;
use super::tagfile::{self, Change, Writer};
use super::{App, Mode};
use crate::config::Project;
use crate::dataset::GroundTruth;
use crate::report::data::{LoadedRun, LoadedVariant};
use crate::store::studio::ItemRow;
use crate::words::GroundTruthKind;

/// Runs being reviewed.
pub struct Review {
    listing: Listing,
    runs: Vec<LoadedRun>,
    variants: Vec<LoadedVariant>,
    /// The first run's dataset root (where images and sidecars are).
    root: PathBuf,
    /// The scored ground-truth source as configured now, when its sidecars can be edited.
    source: Option<GroundTruth>,
    /// The dataset's aliases (renames add to them while the studio runs).
    aliases: std::sync::RwLock<crate::tags::Aliases>,
    /// The dataset file, and the alias file it names (if any).
    dataset_file: PathBuf,
    alias_file: Option<PathBuf>,
    writer: Writer,
}

impl Review {
    pub fn listing(&self) -> &Listing {
        &self.listing
    }

    pub fn roots(&self) -> Vec<PathBuf> {
        vec![self.root.clone()]
    }

    pub fn info(&self) -> Value {
        json!({
            "runs": self.runs.iter().map(|r| json!({"id": r.manifest.run_id, "experiment": r.manifest.experiment})).collect::<Vec<_>>(),
            "variants": self.variants.iter().map(|v| json!({"key": v.key, "threshold": v.threshold})).collect::<Vec<_>>(),
            "root": self.root.display().to_string(),
            "source": self.source.as_ref().map(|s| s.name.clone()),
            "editable": self.editable().is_ok(),
            "edit_log": self.writer.log_path().display().to_string(),
        })
    }

    fn editable(&self) -> Result<&GroundTruth, String> {
        match &self.source {
            Some(gt) if gt.kind == GroundTruthKind::Txt => Ok(gt),
            Some(gt) => Err(format!(
                "the ground truth `{}` is a {:?} source; the studio edits .txt sidecars",
                gt.name, gt.kind
            )),
            None => Err("the run's dataset has no ground truth to edit".into()),
        }
    }

    /// Loads the runs (their views scored against the dataset's current ground truth).
    pub fn open(project: &Project, runs: Vec<crate::store::RunDir>) -> anyhow::Result<Review> {
        let db = crate::store::open_db()?;
        let conn = db.connect()?;
        let several = runs.len() > 1;
        let mut loaded = Vec::new();
        for (i, dir) in runs.into_iter().enumerate() {
            let id = dir.id.clone();
            let truth = (project, crate::runner::truth::Choice::Current);
            let run = crate::report::data::load_run(&conn, dir, i, several, None, truth)?;
            crate::ui::note(format!("{id}: {}", run.truth_used.describe()));
            loaded.push(run);
        }
        drop(conn);
        let first = &loaded[0];
        let root = first.manifest.dataset.root.clone();
        let dataset_file = first.manifest.dataset.file.clone();
        let ds = crate::config::resolve::load_dataset(project, &first.manifest.dataset.file).ok();
        let source = ds.as_ref().and_then(|d| {
            let name = first.manifest.dataset.ground_truth.as_deref()?;
            d.ground_truth.iter().find(|g| g.name == name).cloned()
        });
        let alias_file = ds.as_ref().and_then(|d| d.alias_file.clone());
        let aliases = ds.map(|d| d.aliases).unwrap_or_default();
        let mut variants = Vec::new();
        for r in &mut loaded {
            variants.append(&mut r.variants);
        }
        let rows = rows(&loaded[0], &variants);
        let files = loaded[0]
            .images
            .iter()
            .map(|i| (0, i.path.clone(), i.hash.clone()))
            .collect();
        let mut listing = Listing::new(files, &categories(&variants))?;
        for chunk in rows.chunks(4096) {
            listing.append(chunk)?;
        }
        listing.finish()?;
        let logs = project.state_dir().join("studio");
        std::fs::create_dir_all(&logs)?;
        let key = blake3::hash(root.to_string_lossy().as_bytes()).to_hex();
        Ok(Review {
            listing,
            runs: loaded,
            variants,
            root,
            source,
            aliases: std::sync::RwLock::new(aliases),
            dataset_file,
            alias_file,
            writer: Writer::new(logs.join(format!("edits-{}.jsonl", &key[..12]))),
        })
    }
}

/// The category each variant's labels give a tag (`character`, `rating`…).
fn categories(variants: &[LoadedVariant]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in variants {
        for (tag, cat) in v.scores.tags.iter().zip(&v.scores.categories) {
            if let Some(c) = cat {
                out.push((tag.clone(), c.as_str().to_string()));
            }
        }
    }
    out
}

/// Per variant, the predicted tags of image `path` at its threshold, with scores.
fn predicted(v: &LoadedVariant, path: &str) -> Option<Vec<(String, f32)>> {
    let s = &v.scores;
    let img = s
        .images
        .binary_search_by(|i| i.path.as_str().cmp(path))
        .ok()?;
    let mut out: Vec<(String, f32)> = s.entries[img]
        .iter()
        .filter(|e| s.predicted(img, e, v.threshold))
        .map(|e| (s.tags[e.tag as usize].clone(), e.score))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Some(out)
}

fn f1(pred: &BTreeSet<&str>, truth: &BTreeSet<&str>) -> f64 {
    if pred.is_empty() && truth.is_empty() {
        return 1.0;
    }
    let tp = pred.intersection(truth).count() as f64;
    2.0 * tp / (pred.len() + truth.len()) as f64
}

fn rows(run: &LoadedRun, variants: &[LoadedVariant]) -> Vec<ItemRow> {
    let mut fails: HashMap<&str, (bool, bool)> = HashMap::new();
    for f in &run.failures {
        let e = fails.entry(f.path.as_str()).or_default();
        if f.variant.is_some() {
            e.1 = true;
        } else {
            e.0 = true;
        }
    }
    run.images
        .iter()
        .enumerate()
        .map(|(id, img)| {
            let truth = run.truth.get(&img.path);
            let mut row = ItemRow {
                id: id as i64,
                path: img.path.clone(),
                hash: Some(img.hash.clone()),
                width: img.width.and_then(|w| u32::try_from(w).ok()),
                height: img.height.and_then(|h| u32::try_from(h).ok()),
                format: img.format.clone(),
                tags: truth
                    .map(|t| t.iter().map(|x| (x.clone(), x.clone())).collect())
                    .unwrap_or_default(),
                ..ItemRow::default()
            };
            for (k, v) in &img.meta {
                match k.as_str() {
                    "generator" => row.generator = Some(v.clone()),
                    "sampler" => row.sampler = Some(v.clone()),
                    "model" => row.model = Some(v.clone()),
                    "loras" => row.loras = v.split(", ").map(lora_name).collect(),
                    _ => {}
                }
            }
            if let Some((err, failed)) = fails.get(img.path.as_str()) {
                if *err {
                    row.flags.push("error".into());
                }
                if *failed {
                    row.flags.push("failed".into());
                }
            }
            let truth_set: BTreeSet<&str> =
                truth.into_iter().flatten().map(String::as_str).collect();
            let mut sets = Vec::new();
            let mut best: HashMap<String, f64> = HashMap::new();
            for v in variants.iter().filter(|v| v.tags) {
                let Some(p) = predicted(v, &img.path) else {
                    continue;
                };
                for (t, s) in &p {
                    let e = best.entry(format!("score:{t}")).or_insert(0.0);
                    *e = e.max(*s as f64);
                }
                let set: BTreeSet<String> = p.into_iter().map(|x| x.0).collect();
                sets.push(set);
            }
            if sets.windows(2).any(|w| w[0] != w[1]) {
                row.flags.push("disagree".into());
            }
            if truth.is_some() && !sets.is_empty() {
                let mean = sets
                    .iter()
                    .map(|s| f1(&s.iter().map(String::as_str).collect(), &truth_set))
                    .sum::<f64>()
                    / sets.len() as f64;
                row.values.push(("f1".into(), mean));
            }
            row.values.extend(best);
            row
        })
        .collect()
}

/// `name:0.8` → `name` (a name holding `:` keeps it when no weight follows).
fn lora_name(s: &str) -> String {
    match s.rsplit_once(':') {
        Some((n, w)) if w.parse::<f64>().is_ok() => n.to_string(),
        _ => s.to_string(),
    }
}

fn reviewing(mode: &Mode) -> ApiResult<&Review> {
    match mode {
        Mode::Review(r) => Ok(r),
        _ => Err(ApiError::not_found("the studio is not reviewing a run")),
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/review/items/{id}", get(item))
        .route("/api/review/items/{id}/truth", post(edit_truth))
        .route("/api/review/items/{id}/undo", post(undo_truth))
        .route("/api/review/rename", post(rename))
}

/// The ground-truth sidecar of an image, its raw tags and version.
fn truth_file(r: &Review, rel: &str) -> Result<(PathBuf, tagfile::TagFile), ApiError> {
    let gt = r.editable().map_err(ApiError::bad)?;
    let cands = crate::dataset::ground_truth::sidecar_candidates(
        &r.root,
        gt.dir.as_deref(),
        rel,
        &gt.extension,
    );
    let path = cands
        .iter()
        .find(|p| p.is_file())
        .or(cands.first())
        .cloned()
        .ok_or_else(|| ApiError::bad("no sidecar path"))?;
    let f = tagfile::read(&path, &gt.separator).map_err(super::tagging::conflict_or_error)?;
    Ok((path, f))
}

/// The key a tag is compared by: normalised, then through the dataset's aliases.
fn key(r: &Review, tag: &str) -> Option<String> {
    let aliases = r.aliases.read().unwrap_or_else(|p| p.into_inner());
    crate::tags::normalise(tag).map(|t| aliases.apply(t))
}

/// The faces variant `variant` found in image `rel`, boxes as fractions of the upright image
/// (regions stored without the image's size are left out).
fn regions_of(run: &LoadedRun, rel: &str, variant: &str) -> Vec<Value> {
    run.regions
        .iter()
        .filter(|f| f.path == rel && f.variant == variant)
        .filter_map(|f| {
            let (w, h) = f.frame?;
            let (w, h) = (w as f32, h as f32);
            let [x, y, bw, bh] = f.bbox;
            Some(
                json!({"x": x / w, "y": y / h, "w": bw / w, "h": bh / h, "score": f.score,
                "person": f.person, "skipped": f.skipped}),
            )
        })
        .collect()
}

pub async fn item(State(app): State<Arc<App>>, P(id): P<i64>) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let r = reviewing(&mode)?;
    let (_, rel, hash) = r.listing.file(id)?.clone();
    let run = &r.runs[0];
    let img = run.images.iter().find(|i| i.path == rel);
    let (truth, truth_meta) = match truth_file(r, &rel) {
        Ok((path, f)) => {
            let keys: Vec<String> = f.tags.iter().filter_map(|t| key(r, t)).collect();
            let labelled = f.version != tagfile::ABSENT;
            (
                keys,
                json!({"version": f.version, "file": path.strip_prefix(&r.root).map(|p| p.display().to_string()).unwrap_or_default(), "labelled": labelled, "editable": true}),
            )
        }
        Err(e) => (
            run.truth.get(&rel).cloned().unwrap_or_default(),
            json!({"editable": false, "error": e.body["error"]}),
        ),
    };
    let truth_set: BTreeSet<&str> = truth.iter().map(String::as_str).collect();
    let variants: Vec<Value> = r
        .variants
        .iter()
        .map(|v| {
            let pred = predicted(v, &rel).unwrap_or_default();
            let mut tags: Vec<Value> = pred
                .iter()
                .map(|(t, s)| json!({"tag": t, "score": s, "status": if truth_set.contains(t.as_str()) {"tp"} else {"fp"}}))
                .collect();
            for t in &truth {
                if !pred.iter().any(|(p, _)| p == t) {
                    tags.push(json!({"tag": t, "score": null, "status": "fn"}));
                }
            }
            let failed: Vec<&str> = run
                .failures
                .iter()
                .filter(|f| f.path == rel && f.variant.as_deref() == Some(v.name.as_str()))
                .map(|f| f.reason.as_str())
                .collect();
            let regions = regions_of(run, &rel, &v.name);
            json!({"key": v.key, "threshold": v.threshold, "tags": tags, "failed": failed, "is_tagger": v.tags, "regions": regions})
        })
        .collect();
    let captions: Vec<Value> = run
        .texts
        .iter()
        .filter(|t| t.path == rel)
        .map(|t| json!({"variant": t.variant, "repeat": t.repeat, "text": t.text,
            "verdicts": t.verdicts.iter().map(|(j, side, verdict, score)| json!({"judge": j, "side": side, "verdict": verdict, "score": score})).collect::<Vec<_>>()}))
        .collect();
    let prompt_tags = img.and_then(|i| i.prompt.as_deref()).map(|p| {
        let gen = img
            .and_then(|i| i.meta.iter().find(|(k, _)| k == "generator"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let d = crate::prompt::Dialect::for_generator(gen);
        crate::prompt::parse(p, d)
            .tags
            .into_iter()
            .map(|t| t.tag)
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({
        "id": id, "path": rel, "hash": hash,
        "url": format!("/files/0/{}", super::tagging::encode_path(&rel)),
        "meta": img.map(|i| i.meta.clone()),
        "prompt": img.and_then(|i| i.prompt.clone()),
        "negative": img.and_then(|i| i.negative.clone()),
        "prompt_tags": prompt_tags,
        "truth": truth, "truth_file": truth_meta,
        "variants": variants, "captions": captions,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruthEdit {
    /// Accept this tag into the ground truth.
    #[serde(default)]
    add: Option<String>,
    /// Remove this tag (compared after normalising and aliases).
    #[serde(default)]
    remove: Option<String>,
    /// The version of the sidecar the edit was made on.
    version: String,
}

/// Undoes the last edit of an image's ground-truth sidecar, from the edit log: its old tags
/// are written back when the file is still as that edit left it (otherwise 409).
pub async fn undo_truth(State(app): State<Arc<App>>, P(id): P<i64>) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let r = reviewing(&mode)?;
    let (_, rel, _) = r.listing.file(id)?.clone();
    let gt = r.editable().map_err(ApiError::bad)?;
    let (path, current) = truth_file(r, &rel)?;
    let rel_file = path
        .strip_prefix(&r.root)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let last = tagfile::read_log(r.writer.log_path())
        .into_iter()
        .rev()
        .find(|e| e.file == rel_file && e.action != "undo")
        .ok_or_else(|| ApiError::bad(format!("{rel_file} has no edit to undo")))?;
    if last.new_version != current.version {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            body: json!({"error": format!("{rel_file} changed after its last studio edit; not undone"),
                         "tags": current.tags, "version": current.version}),
        });
    }
    let version = write_truth(
        r,
        gt,
        &path,
        &current.version,
        (current.tags.clone(), last.old.clone()),
        "undo",
    )?;
    let truth = relist(r, id, &last.old)?;
    Ok(Json(json!({"truth": truth, "version": version})))
}

/// Accepts a predicted tag into, or removes a tag from, an image's ground-truth sidecar.
pub async fn edit_truth(
    State(app): State<Arc<App>>,
    P(id): P<i64>,
    Body(e): Body<TruthEdit>,
) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let r = reviewing(&mode)?;
    let (_, rel, _) = r.listing.file(id)?.clone();
    let gt = r.editable().map_err(ApiError::bad)?;
    let (path, current) = truth_file(r, &rel)?;
    let mut tags = current.tags.clone();
    let action = match (&e.add, &e.remove) {
        (Some(add), None) => {
            let add =
                tagfile::check_tag(add, &gt.separator).map_err(|x| ApiError::bad(x.to_string()))?;
            let k = key(r, &add);
            if !tags.iter().any(|t| key(r, t) == k) {
                tags.push(add);
            }
            "accept"
        }
        (None, Some(rm)) => {
            let k = key(r, rm);
            tags.retain(|t| key(r, t) != k);
            "remove"
        }
        _ => return Err(ApiError::bad("give exactly one of `add` and `remove`")),
    };
    let version = write_truth(
        r,
        gt,
        &path,
        &e.version,
        (current.tags, tags.clone()),
        action,
    )?;
    let truth = relist(r, id, &tags)?;
    Ok(Json(
        json!({"truth": truth, "version": version, "status": StatusCode::OK.as_u16()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    from: String,
    to: String,
    /// Without it, only the preview: the files that would be rewritten.
    #[serde(default)]
    confirm: bool,
}

/// Renames or merges a tag across the dataset (`red_hair` → `redhead`): the preview lists the
/// ground-truth sidecars holding it; on confirmation the pair goes into the dataset's alias
/// file (created, and named in the dataset file, when absent) and each sidecar is rewritten,
/// versioned and logged like any edit.
pub async fn rename(
    State(app): State<Arc<App>>,
    Body(b): Body<RenameBody>,
) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let r = reviewing(&mode)?;
    let gt = r.editable().map_err(ApiError::bad)?;
    let from = key(r, &b.from).ok_or_else(|| ApiError::bad("`from` is empty"))?;
    let to = tagfile::check_tag(&b.to, &gt.separator).map_err(|e| ApiError::bad(e.to_string()))?;
    let to_key = crate::tags::normalise(&to).unwrap_or_default();
    if from == to_key {
        return Err(ApiError::bad("`from` and `to` are the same tag"));
    }
    let mut affected = Vec::new();
    for (id, (_, rel, _)) in r.listing.files.iter().enumerate() {
        if let Ok((path, f)) = truth_file(r, rel) {
            if f.tags
                .iter()
                .any(|t| key(r, t).as_deref() == Some(from.as_str()))
            {
                affected.push((id as i64, path, f));
            }
        }
    }
    let files: Vec<String> = affected
        .iter()
        .map(|(_, p, _)| p.strip_prefix(&r.root).unwrap_or(p).display().to_string())
        .collect();
    let alias_file = r
        .alias_file
        .clone()
        .unwrap_or_else(|| default_alias_file(&r.dataset_file));
    if !b.confirm {
        return Ok(Json(
            json!({"files": files, "alias_file": alias_file.display().to_string(),
            "pair": [from, to_key], "confirmed": false}),
        ));
    }
    // The alias is checked (no cycle) before any sidecar is touched, and recorded after them,
    // so the sidecars are matched by the aliases they were read with.
    check_alias(&alias_file, &from, &to_key)?;
    let mut rewritten = 0;
    let mut conflicts = Vec::new();
    for (id, path, f) in affected {
        match rename_in(r, id, &path, f, &from, &to) {
            Ok(()) => rewritten += 1,
            Err(e) => conflicts.push(format!("{}: {}", path.display(), e.body["error"])),
        }
    }
    add_alias(r, &alias_file, &from, &to_key)?;
    Ok(Json(
        json!({"files": files, "alias_file": alias_file.display().to_string(),
        "pair": [from, to_key], "confirmed": true, "rewritten": rewritten, "conflicts": conflicts}),
    ))
}

/// What goes between tags written to a ground-truth sidecar: a one-character separator is
/// written kohya-style, with a space after it.
fn joiner(gt: &GroundTruth) -> String {
    match gt.separator.trim() {
        s if s.chars().count() == 1 => format!("{s} "),
        _ => gt.separator.clone(),
    }
}

/// `datasets/NAME.yaml` → `datasets/NAME.aliases.yaml`.
fn default_alias_file(dataset_file: &std::path::Path) -> PathBuf {
    let stem = dataset_file
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "dataset".into());
    dataset_file.with_file_name(format!("{stem}.aliases.yaml"))
}

/// Where `from` goes when renamed to `to` in `table`: `to` followed to its own canonical tag;
/// refused when that is `from` itself (a cycle).
fn alias_target(
    table: &std::collections::BTreeMap<String, String>,
    from: &str,
    to: &str,
) -> ApiResult<String> {
    let norm = |t: &str| crate::tags::normalise(t).unwrap_or_default();
    let target = table
        .iter()
        .find(|(a, _)| norm(a) == to)
        .map(|(_, c)| norm(c))
        .unwrap_or_else(|| to.to_string());
    if target == from {
        return Err(ApiError::bad(format!(
            "`{to}` is already an alias of `{from}`: renaming `{from}` to it would make a cycle"
        )));
    }
    Ok(target)
}

/// Refuses a rename that would make the alias table cycle.
fn check_alias(file: &std::path::Path, from: &str, to: &str) -> ApiResult<()> {
    let table = crate::config::resolve::read_alias_file(file).map_err(ApiError::bad)?;
    alias_target(&table, from, to).map(drop)
}

/// Adds `from: to` to the alias file (written whole, atomically) without chains or cycles:
/// `to` is followed to its own canonical tag first, and aliases that pointed at `from` now
/// point there too. Names the file in the dataset file when it names none yet.
fn add_alias(r: &Review, file: &std::path::Path, from: &str, to: &str) -> ApiResult<()> {
    let mut table = crate::config::resolve::read_alias_file(file).map_err(ApiError::bad)?;
    let norm = |t: &str| crate::tags::normalise(t).unwrap_or_default();
    let target = alias_target(&table, from, to)?;
    for canonical in table.values_mut() {
        if norm(canonical) == from {
            *canonical = target.clone();
        }
    }
    table.insert(from.to_string(), target.clone());
    {
        let mut live = r.aliases.write().unwrap_or_else(|p| p.into_inner());
        for canonical in live.0.values_mut() {
            if *canonical == from {
                *canonical = target.clone();
            }
        }
        live.0.insert(from.to_string(), target.clone());
    }
    let text = serde_yaml::to_string(&table).map_err(ApiError::internal)?;
    crate::atomic::write(file, text.as_bytes())
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", file.display())))?;
    if r.alias_file.is_none() {
        let mut yaml = std::fs::read_to_string(&r.dataset_file).map_err(|e| {
            ApiError::internal(format!("cannot read {}: {e}", r.dataset_file.display()))
        })?;
        if !yaml.lines().any(|l| l.starts_with("alias_file:")) {
            if !yaml.ends_with('\n') && !yaml.is_empty() {
                yaml.push('\n');
            }
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            yaml.push_str(&format!("alias_file: {name}\n"));
            crate::atomic::write(&r.dataset_file, yaml.as_bytes()).map_err(|e| {
                ApiError::internal(format!("cannot write {}: {e}", r.dataset_file.display()))
            })?;
        }
    }
    Ok(())
}

/// Rewrites one sidecar: `from` becomes `to` (once), at the version it was read at.
fn rename_in(
    r: &Review,
    id: i64,
    path: &std::path::Path,
    f: tagfile::TagFile,
    from: &str,
    to: &str,
) -> ApiResult<()> {
    let gt = r.editable().map_err(ApiError::bad)?;
    let mut tags: Vec<String> = Vec::new();
    for t in &f.tags {
        let replaced = if key(r, t).as_deref() == Some(from) {
            to.to_string()
        } else {
            t.clone()
        };
        let k = crate::tags::normalise(&replaced);
        if !tags.iter().any(|x| crate::tags::normalise(x) == k) {
            tags.push(replaced);
        }
    }
    write_truth(
        r,
        gt,
        path,
        &f.version,
        (f.tags.clone(), tags.clone()),
        "rename",
    )?;
    relist(r, id, &tags).map(drop)
}

/// Writes a ground-truth sidecar's new tags when it is still at `expected`, logging the edit
/// (`change`: old and new tags). Returns the new version; a stale file is a 409.
fn write_truth(
    r: &Review,
    gt: &GroundTruth,
    path: &std::path::Path,
    expected: &str,
    change: (Vec<String>, Vec<String>),
    action: &str,
) -> ApiResult<String> {
    let content = tagfile::render(&change.1, &joiner(gt));
    let rel = path
        .strip_prefix(&r.root)
        .unwrap_or(path)
        .display()
        .to_string();
    let sep = gt.separator.clone();
    r.writer
        .write_if(
            Change {
                path,
                rel: &rel,
                expected,
                content: content.as_bytes(),
                old: change.0,
                new: change.1,
                action,
            },
            |p| tagfile::read(p, &sep),
        )
        .map_err(super::tagging::conflict_or_error)
}

/// Puts an image's new ground-truth tags into the listing (as compared: normalised, through
/// the aliases); returns them.
fn relist(r: &Review, id: i64, tags: &[String]) -> ApiResult<Vec<String>> {
    let keyed: Vec<(String, String)> = tags
        .iter()
        .filter_map(|t| key(r, t).map(|k| (k.clone(), k)))
        .collect();
    r.listing
        .with(|c| crate::store::studio::set_tags(c, id, &keyed))?;
    Ok(keyed.into_iter().map(|x| x.0).collect())
}
