//! The studio's "similar images" (on an image's page) and its duplicates view, over the images
//! being served.
//!
//! Both need a value per image that is computed once: the 64-bit pHash of every image (the
//! duplicates view, and "similar" when no model is given) and, with `serve --similar MODEL`,
//! every image's embedding. They go through the same cached vector pass as `iw-lab dupes` and
//! `iw-lab similar` (`crate::runner::vectors`), so what one computed the other finds. The first
//! request that needs them starts the pass on a thread of its own and is answered 202
//! (`{"state": "computing"}`); the page asks again until the answer is there. Nothing here
//! moves or deletes a file: a pair marked "not a duplicate" goes into the project's list, the
//! same one `iw-lab dupes --not-duplicate` writes.

use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::answer::{ApiError, ApiResult, Body, P, Q};
use super::browse::{listing, Listing};
use super::guard::Tokened;
use super::looks::{Embedded, Hashed, Job, Looks};
use super::tagging::encode_path;
use super::{App, Mode};
use crate::config::{Model, Project};
use crate::dataset::ImageEntry;
use crate::engine::{Context, Vector};
use crate::imaging::perceptual;
use crate::similarity::dupes::{self, Found, NotDuplicates};

/// The hash of the duplicates view, and of "similar" when no model is given.
const METHOD: &str = "phash";
/// Most neighbours one request may ask for.
const MAX_K: usize = 200;
/// Most groups one page of the duplicates view holds.
const MAX_GROUPS: usize = 500;

/// What the studio measures similarity with.
pub struct Setup {
    pub project: Project,
    pub ctx: Context,
    /// An embedding model (`serve --similar MODEL`, a `clip` model); none: perceptual hashes.
    pub model: Option<Model>,
}

impl Setup {
    /// How "similar" is measured, for the page.
    pub fn describe(&self) -> Value {
        match &self.model {
            Some(m) => json!({"by": m.name, "distance": "cosine"}),
            None => json!({"by": METHOD, "distance": "bits of 64"}),
        }
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/similar/{id}", get(similar))
        .route("/api/dupes", get(groups))
        .route("/api/dupes/not-duplicate", post(not_duplicate))
}

/// The answer while a job runs: 202 and what is being computed.
fn computing(what: &str, since: Instant) -> ApiError {
    ApiError {
        status: StatusCode::ACCEPTED,
        body: json!({"state": "computing", "what": what,
                     "seconds": since.elapsed().as_secs()}),
    }
}

/// After a failure, the job is tried again when asked this much later.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The result of the job `pick` chooses in `mode`'s listing; starts it with `compute` when
/// nothing has asked yet (only a request that carries the token starts work).
fn ready<T: Send + Sync + 'static>(
    app: &App,
    mode: &Arc<Mode>,
    start: bool,
    pick: fn(&Looks) -> &Mutex<Job<T>>,
    what: &str,
    compute: fn(&Setup, &[ImageEntry]) -> Result<T, String>,
) -> ApiResult<Arc<T>> {
    let l = listing(mode)?;
    let mut job = pick(&l.looks).lock().unwrap_or_else(|p| p.into_inner());
    match &*job {
        Job::Ready(t) => return Ok(t.clone()),
        Job::Failed(e, at) if at.elapsed() < RETRY_AFTER => {
            return Err(ApiError::internal(format!("{what}: {e}")))
        }
        Job::Running(since) => return Err(computing(what, *since)),
        Job::Idle | Job::Failed(..) => {}
    }
    if !start {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("computing the {what} of every image needs the studio's token"),
        ));
    }
    let since = Instant::now();
    *job = Job::Running(since);
    drop(job);
    let setup = app.similar.clone();
    let served = mode.clone();
    let spawned = std::thread::Builder::new()
        .name("studio-looks".into())
        .spawn(move || {
            let Ok(l) = listing(&served) else { return };
            let result = crate::panics::catch(|| {
                let images = entries(l, &served.roots());
                compute(&setup, &images)
            })
            .and_then(|r| r)
            .map_or_else(
                |e| Job::Failed(e, Instant::now()),
                |t| Job::Ready(Arc::new(t)),
            );
            *pick(&l.looks).lock().unwrap_or_else(|p| p.into_inner()) = result;
        });
    if let Err(e) = spawned {
        let why = format!("cannot start a thread: {e}");
        *pick(&l.looks).lock().unwrap_or_else(|p| p.into_inner()) =
            Job::Failed(why.clone(), Instant::now());
        return Err(ApiError::internal(why));
    }
    Err(computing(what, since))
}

/// The pHash of every listed image (see [`ready`]).
fn hashed(app: &App, mode: &Arc<Mode>, start: bool) -> ApiResult<Arc<Hashed>> {
    ready(
        app,
        mode,
        start,
        |l| &l.hashed,
        "perceptual hashes",
        compute_hashes,
    )
}

/// The listed files as scanned images (paths from the served roots; size and time read now).
fn entries(l: &Listing, roots: &[PathBuf]) -> Vec<ImageEntry> {
    l.files
        .iter()
        .zip(&l.facts)
        .map(|((root, rel, hash), f)| {
            let abs = roots
                .get(*root)
                .map(|r| r.join(crate::dataset::names::rel_path(rel)))
                .unwrap_or_default();
            let meta = std::fs::metadata(&abs).ok();
            let mtime_ns = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            ImageEntry {
                rel: rel.clone(),
                abs,
                size: meta.map_or(0, |m| m.len()),
                mtime_ns,
                hash: hash.clone(),
                format: f.format.clone(),
                width: f.width,
                height: f.height,
                // Only whether the file has generation metadata (a keeper is chosen by it).
                meta: f.has_meta.then(Default::default),
            }
        })
        .collect()
}

/// The pHash of every image (cached in the project's runs like `iw-lab dupes`).
fn compute_hashes(setup: &Setup, images: &[ImageEntry]) -> Result<Hashed, String> {
    let model = crate::config::resolve::builtin_phash(&setup.project, METHOD);
    let label = format!("dupes-{}", model.name);
    let v =
        crate::runner::vectors::vectors_cached(&setup.project, &model, images, &setup.ctx, &label)
            .map_err(|e| format!("{e:#}"))?;
    let mut out = Hashed {
        items: Vec::new(),
        ids: Vec::new(),
        item_of: vec![None; images.len()],
        failed: Vec::new(),
        found: Mutex::new(None),
    };
    // A file reached twice (through a link) is one item, found from either path.
    let mut seen: HashMap<PathBuf, usize> = HashMap::new();
    for (id, (img, r)) in images.iter().zip(&v.per_image).enumerate() {
        let real = std::fs::canonicalize(&img.abs).unwrap_or(img.abs.clone());
        if let Some(&item) = seen.get(&real) {
            out.item_of[id] = Some(item);
            continue;
        }
        let words = match r {
            Ok(v) => v.hash(METHOD).and_then(perceptual::parse_hex),
            Err(e) => {
                out.failed.push((img.rel.clone(), e.clone()));
                continue;
            }
        };
        let Some(words) = words else {
            out.failed
                .push((img.rel.clone(), format!("no {METHOD} hash stored")));
            continue;
        };
        seen.insert(real, out.items.len());
        out.item_of[id] = Some(out.items.len());
        out.ids.push(id);
        out.items.push(dupes::Item::of(img, words));
    }
    Ok(out)
}

/// The embedding of every image by the `--similar` model (cached like `iw-lab similar`).
fn compute_embeddings(setup: &Setup, images: &[ImageEntry]) -> Result<Embedded, String> {
    let Some(model) = &setup.model else {
        return Err("no --similar model".into());
    };
    let label = format!("embed-{}", model.name);
    let v =
        crate::runner::vectors::vectors_cached(&setup.project, model, images, &setup.ctx, &label)
            .map_err(|e| format!("{e:#}"))?;
    let mut out = Embedded {
        dim: 0,
        data: Vec::new(),
        ids: Vec::new(),
        row_of: vec![None; images.len()],
        failed: Vec::new(),
    };
    let mut row_of_content: HashMap<&str, u32> = HashMap::new();
    for (id, (img, r)) in images.iter().zip(&v.per_image).enumerate() {
        let e = match r.as_deref() {
            Ok(Vector::Embedding(e)) => e,
            Ok(Vector::Hashes(_)) => {
                return Err(format!(
                    "model `{}` gave hashes, not embeddings",
                    model.name
                ))
            }
            Err(why) => {
                out.failed.push((img.rel.clone(), why.clone()));
                continue;
            }
        };
        if let Some(&row) = row_of_content.get(img.hash.as_str()) {
            out.ids[row as usize].push(id);
            out.row_of[id] = Some(row);
            continue;
        }
        if out.ids.is_empty() {
            out.dim = e.len();
        }
        if e.is_empty() || e.len() != out.dim || e.iter().any(|x| !x.is_finite()) {
            out.failed.push((
                img.rel.clone(),
                format!(
                    "an embedding of {} values, not {}, or not finite",
                    e.len(),
                    out.dim
                ),
            ));
            continue;
        }
        let row = u32::try_from(out.ids.len()).map_err(|_| "more than 2³² images")?;
        row_of_content.insert(&img.hash, row);
        out.data.extend_from_slice(e);
        out.ids.push(vec![id]);
        out.row_of[id] = Some(row);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub struct SimilarQuery {
    pub k: Option<usize>,
}

/// `GET /api/similar/{id}?k=N`: the `k` images nearest to image `id`, nearest first.
pub async fn similar(
    State(app): State<Arc<App>>,
    tokened: Option<Extension<Tokened>>,
    P(id): P<i64>,
    Q(q): Q<SimilarQuery>,
) -> ApiResult<Json<Value>> {
    let k = q.k.unwrap_or(12);
    if k == 0 || k > MAX_K {
        return Err(ApiError::bad(format!("k={k}: ask for 1 to {MAX_K}")));
    }
    let mode = app.mode();
    let l = listing(&mode)?;
    let (_, rel, _) = l.file(id)?;
    let (id, start) = (id as usize, tokened.is_some());
    let near = if app.similar.model.is_some() {
        let e = ready(
            &app,
            &mode,
            start,
            |l| &l.embedded,
            "embeddings",
            compute_embeddings,
        )?;
        let Some(row) = e.row_of[id] else {
            return Err(unmeasured(rel, &e.failed));
        };
        let e2 = e.clone();
        tokio::task::spawn_blocking(move || by_embedding(&e2, id, row, k))
            .await
            .map_err(ApiError::internal)??
    } else {
        let h = hashed(&app, &mode, start)?;
        let Some(item) = h.item_of[id] else {
            return Err(unmeasured(rel, &h.failed));
        };
        by_hash(&h, id, item, k)
    };
    let items: Vec<Value> = near
        .into_iter()
        .filter_map(|(other, d)| Some(file_json(l, other)?.with("distance", d)))
        .collect();
    Ok(Json(
        json!({"state": "ready", "id": id, "measure": app.similar.describe(), "items": items}),
    ))
}

/// Why image `rel` has no value to compare.
fn unmeasured(rel: &str, failed: &[(String, String)]) -> ApiError {
    let why = failed
        .iter()
        .find(|(f, _)| f == rel)
        .map_or("it has none", |(_, w)| w.as_str());
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("{rel}: cannot be compared: {why}"),
    )
}

/// Bits in which two hashes differ.
fn bits(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// The `k` images nearest to item `item` by Hamming distance (never image `id` itself, nor
/// another path to its file); at one distance, copies with the same bytes first, then by id.
fn by_hash(h: &Hashed, id: usize, item: usize, k: usize) -> Vec<(usize, Value)> {
    let me = &h.items[item];
    // The k best so far, worst on top.
    let mut best: BinaryHeap<(u32, bool, usize)> = BinaryHeap::with_capacity(k + 1);
    for (x, (it, &other)) in h.items.iter().zip(&h.ids).enumerate() {
        if x == item || other == id {
            continue;
        }
        let key = (bits(&it.hash, &me.hash), it.content != me.content, other);
        if best.len() < k {
            best.push(key);
        } else if best.peek().is_some_and(|top| key < *top) {
            best.pop();
            best.push(key);
        }
    }
    best.into_sorted_vec()
        .into_iter()
        .map(|(d, _, other)| (other, json!(d)))
        .collect()
}

/// The `k` images nearest to row `row` (listing id `id`) by cosine distance (exact search).
fn by_embedding(e: &Embedded, id: usize, row: u32, k: usize) -> ApiResult<Vec<(usize, Value)>> {
    let dim = e.dim;
    let q = &e.data[row as usize * dim..(row as usize + 1) * dim];
    // Copies of one content share a row: one more row than files asked for covers the query's.
    let hits = crate::similarity::exact::top_k(&e.data, dim, q, k + 1)
        .map_err(|x| ApiError::internal(format!("{x:#}")))?;
    let mut out = Vec::new();
    for (r, d) in hits {
        let d = if r == row { 0.0 } else { d.max(0.0) };
        for &other in &e.ids[r as usize] {
            if other != id && out.len() < k {
                out.push((other, json!((f64::from(d) * 1e6).round() / 1e6)));
            }
        }
    }
    Ok(out)
}

/// An image of the listing as the page shows it.
fn file_json(l: &Listing, id: usize) -> Option<Value> {
    let (root, rel, content) = l.files.get(id)?;
    let f = l.facts.get(id).cloned().unwrap_or_default();
    Some(json!({
        "id": id, "path": rel, "content": content,
        "thumb": format!("/thumbs/{root}/{}", encode_path(rel)),
        "width": f.width, "height": f.height, "format": f.format,
    }))
}

trait With {
    fn with(self, key: &str, v: Value) -> Value;
}

impl With for Value {
    fn with(mut self, key: &str, v: Value) -> Value {
        self[key] = v;
        self
    }
}

#[derive(Debug, Deserialize)]
pub struct GroupsQuery {
    pub offset: Option<usize>,
    pub limit: Option<usize>,
    pub max_distance: Option<u32>,
}

/// The largest distance the studio groups at, and the most near pairs it lists (expected
/// for hashes as spread as random ones; real collections have more).
const MAX_DISTANCE: u32 = 24;
const MAX_EXPECTED_PAIRS: f64 = 20_000_000.0;

/// The distance asked for, checked: `n` hashes at `d` must not make an absurd number of pairs.
fn checked_distance(d: Option<u32>, n: usize) -> ApiResult<u32> {
    let d = d.unwrap_or(dupes::default_distance(METHOD));
    if d > MAX_DISTANCE {
        return Err(ApiError::bad(format!(
            "max_distance={d}: the studio groups within 0 to {MAX_DISTANCE} bits of 64 (`iw-lab dupes --max-distance` takes more)"
        )));
    }
    // P(two random 64-bit hashes differ in at most d bits) × the pairs of n hashes.
    let p: f64 = (0..=d as u64)
        .map(|k| crate::similarity::hamming::choose(64, k))
        .sum::<f64>()
        / 2f64.powi(64);
    let expected = p * n as f64 * n.saturating_sub(1) as f64 / 2.0;
    if expected > MAX_EXPECTED_PAIRS {
        return Err(ApiError::bad(format!(
            "max_distance={d}: {n} images would give about {expected:.0} near pairs; ask for less"
        )));
    }
    Ok(d)
}

/// Files of a group shown at once; unreadable files listed at once.
const FILES_SHOWN: usize = 60;
const UNREADABLE_SHOWN: usize = 100;

/// `GET /api/dupes?offset&limit&max_distance`: a page of the duplicate groups, byte copies
/// first, then the largest groups; every group with its suggested keeper.
pub async fn groups(
    State(app): State<Arc<App>>,
    tokened: Option<Extension<Tokened>>,
    Q(q): Q<GroupsQuery>,
) -> ApiResult<Json<Value>> {
    let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(50));
    if limit == 0 || limit > MAX_GROUPS {
        return Err(ApiError::bad(format!("limit={limit}: 1 to {MAX_GROUPS}")));
    }
    let mode = app.mode();
    let start = tokened.is_some();
    let h = hashed(&app, &mode, start)?;
    let max_distance = checked_distance(q.max_distance, h.items.len())?;
    let (setup, h2) = (app.similar.clone(), h.clone());
    let found = tokio::task::spawn_blocking(move || found(&setup, &h2, max_distance))
        .await
        .map_err(ApiError::internal)??;
    let l = listing(&mode)?;
    let page: Vec<Value> = found
        .groups
        .iter()
        .skip(offset)
        .take(limit)
        .map(|g| group_json(l, &h, g))
        .collect();
    let unreadable: Vec<Value> = h
        .failed
        .iter()
        .take(UNREADABLE_SHOWN)
        .map(|(f, w)| json!({"file": f, "error": w}))
        .collect();
    Ok(Json(json!({
        "state": "ready", "method": METHOD, "max_distance": max_distance,
        "total": found.groups.len(), "offset": offset, "groups": page,
        "files_in_groups": found.groups.iter().map(|g| g.items.len()).sum::<usize>(),
        "dismissed": found.dismissed, "complete": found.complete,
        "unreadable": unreadable, "unreadable_total": h.failed.len(),
    })))
}

/// The groups at `max_distance` (kept until a pair is dismissed; one distance at a time).
fn found(setup: &Setup, h: &Hashed, max_distance: u32) -> ApiResult<Arc<Found>> {
    let mut cached = h.found.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((d, f)) = &*cached {
        if *d == max_distance {
            return Ok(f.clone());
        }
    }
    let file = dupes::not_duplicates_file(&setup.project.state_dir());
    let not_dupes = NotDuplicates::load(&file)
        .map_err(|e| ApiError::internal(format!("reading {}: {e}", file.display())))?;
    let mut f = dupes::find(&h.items, max_distance, &not_dupes);
    // Byte copies first, then the largest groups; ties by their first file.
    f.groups.sort_by(|a, b| {
        (b.exact, b.items.len(), &h.items[a.items[0]].file).cmp(&(
            a.exact,
            a.items.len(),
            &h.items[b.items[0]].file,
        ))
    });
    let f = Arc::new(f);
    *cached = Some((max_distance, f.clone()));
    Ok(f)
}

/// A group: its keeper first, then the rest nearest first (at most [`FILES_SHOWN`]).
fn group_json(l: &Listing, h: &Hashed, g: &dupes::Group) -> Value {
    let keeper = &h.items[g.keeper];
    let mut order: Vec<(bool, u32, usize)> = g
        .items
        .iter()
        .map(|&i| (i != g.keeper, bits(&h.items[i].hash, &keeper.hash), i))
        .collect();
    order.sort_unstable();
    let files: Vec<Value> = order
        .iter()
        .take(FILES_SHOWN)
        .filter_map(|&(_, d, i)| {
            let same = h.items[i].content == keeper.content;
            Some(
                file_json(l, h.ids[i])?
                    .with("distance", json!(d))
                    .with("same_bytes", json!(same)),
            )
        })
        .collect();
    json!({
        "exact": g.exact, "max_distance": g.max_distance,
        "keeper": h.ids[g.keeper], "size": g.items.len(), "files": files,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotDuplicateBody {
    /// The image, and its content hash as the page showed it.
    pub file: i64,
    pub content: String,
    /// The distance of the groups the page showed.
    pub max_distance: u32,
}

/// `POST /api/dupes/not-duplicate {"file", "content", "max_distance"}`: the image is not a
/// duplicate of any image of its group. Every pair it makes there within the distance is
/// remembered (by content, in the project's list that `iw-lab dupes` reads), so it leaves the
/// group; byte copies of it stay with it.
pub async fn not_duplicate(
    State(app): State<Arc<App>>,
    Body(b): Body<NotDuplicateBody>,
) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let l = listing(&mode)?;
    let (_, rel, content) = l.file(b.file)?;
    if *content != b.content {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{rel} is not the image the page showed: reload the page"),
        ));
    }
    // Only the hashes already computed: the groups this answers were shown from them.
    let h = hashed(&app, &mode, false)?;
    let max_distance = checked_distance(Some(b.max_distance), h.items.len())?;
    let item = h.item_of[b.file as usize].ok_or_else(|| unmeasured(rel, &h.failed))?;
    let (setup, h2) = (app.similar.clone(), h.clone());
    let path = dupes::not_duplicates_file(&setup.project.state_dir());
    let remembered = tokio::task::spawn_blocking(move || -> ApiResult<usize> {
        let found = found(&setup, &h2, max_distance)?;
        let pairs = pairs_in_group(&h2, &found, item, max_distance);
        let at = crate::store::time_now().iso();
        let me = &h2.items[item];
        for &other in &pairs {
            let o = &h2.items[other];
            NotDuplicates::remember(&path, (&me.content, &me.file), (&o.content, &o.file), &at)
                .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))?;
        }
        *h2.found.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(pairs.len())
    })
    .await
    .map_err(ApiError::internal)??;
    if remembered == 0 {
        return Err(ApiError::bad(format!(
            "{rel} is in no group at {max_distance} bits, or only with its own byte copies"
        )));
    }
    let file = dupes::not_duplicates_file(&app.similar.project.state_dir());
    Ok(Json(
        json!({"remembered": remembered, "file": file.display().to_string()}),
    ))
}

/// The items of `item`'s group within `max_distance` of it, one per content other than its own.
fn pairs_in_group(h: &Hashed, found: &Found, item: usize, max_distance: u32) -> Vec<usize> {
    let Some(g) = found.groups.iter().find(|g| g.items.contains(&item)) else {
        return Vec::new();
    };
    let me = &h.items[item];
    let mut contents = std::collections::HashSet::new();
    g.items
        .iter()
        .copied()
        .filter(|&i| {
            let o = &h.items[i];
            o.content != me.content
                && bits(&o.hash, &me.hash) <= max_distance
                && contents.insert(o.content.as_str())
        })
        .collect()
}

/// What `/api/info` says about similarity.
pub fn info(app: &App) -> Value {
    app.similar.describe()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::similarity::dupes::Item;

    fn item(file: &str, hash: u64) -> Item {
        Item {
            file: file.into(),
            content: file.into(),
            hash: vec![hash],
            pixels: 1,
            format: None,
            has_meta: false,
        }
    }

    #[test]
    fn nearest_by_hash_leaves_the_image_out_and_ranks_by_bits_then_id() {
        let mut items = vec![
            item("a", 0),
            item("b", 0b111),
            item("c", 0b1),
            item("d", 0),
            item("e", 0),
        ];
        // "e" has the bytes of "a": at distance 0 it comes before "d".
        items[4].content = "a".into();
        let h = Hashed {
            ids: vec![0, 1, 2, 3, 4],
            item_of: (0..5).map(Some).collect(),
            items,
            failed: Vec::new(),
            found: Mutex::new(None),
        };
        let got: Vec<(usize, Value)> = by_hash(&h, 0, 0, 3);
        assert_eq!(got, vec![(4, json!(0)), (3, json!(0)), (2, json!(1))]);
        let all = by_hash(&h, 0, 0, 10);
        assert_eq!(
            all.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![4, 3, 2, 1],
            "four others, nearest first"
        );
    }

    #[test]
    fn nearest_by_embedding_lists_copies_of_one_content_and_never_the_image() {
        // Rows: [1,0] held by ids 0 and 2 (copies), [0.6,0.8] by 1, [0,1] by 3.
        let e = Embedded {
            dim: 2,
            data: vec![1.0, 0.0, 0.6, 0.8, 0.0, 1.0],
            ids: vec![vec![0, 2], vec![1], vec![3]],
            row_of: vec![Some(0), Some(1), Some(0), Some(2)],
            failed: Vec::new(),
        };
        let got = by_embedding(&e, 0, 0, 3).unwrap();
        let ids: Vec<usize> = got.iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![2, 1, 3]);
        assert_eq!(got[0].1, json!(0.0));
        assert!((got[1].1.as_f64().unwrap() - 0.4).abs() < 1e-6);
        assert!((got[2].1.as_f64().unwrap() - 1.0).abs() < 1e-6);
    }
}
