//! `iw-lab similar IMAGE` and `iw-lab search "TEXT"`: the images of a set nearest an image
//! or a text query in a CLIP/SigLIP model's embedding space, ranked by cosine distance, with a
//! cut-off so a query with no good match returns nothing rather than everything.
//!
//! The set's embeddings come from the run store (cached by content and model). Up to
//! [`EXACT_MAX`] images are searched exactly; larger sets by a fast scan of product-quantised
//! codes with an exact re-rank (`similarity::pq`), and near-duplicate search (each image's
//! neighbours) through an HNSW index; both kept under `.iw-lab/index/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::collections::HashMap;

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::target::{self, Target};
use super::Env;
use crate::config::Model;
use crate::engine::{Context, Vector};
use crate::similarity::{exact, index, pq};
use crate::ui;

/// Default cosine-distance cut-off of a text search with a CLIP model: cosine similarity
/// 0.25, a little under the 0.28 LAION-5B kept image–caption pairs above with ViT-B/32 (a
/// search phrase is shorter than a caption). docs/similarity.md.
pub const CLIP_TEXT_MAX_DISTANCE: f32 = 0.75;

/// A SigLIP text search keeps the images its own calibrated probability puts at or above
/// this (docs/similarity.md).
pub const SIGLIP_MIN_PROBABILITY: f32 = 0.01;

#[derive(Debug, clap::Args)]
pub struct SimilarArgs {
    /// The image to match: a file inside the set or anywhere else.
    pub image: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// What to look for, in words ("dramatic lighting at sunset").
    pub query: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// A `clip` model file (or name in models/).
    #[arg(long, value_name = "NAME")]
    pub model: String,
    /// The images to search: a folder, a dataset or a run (default: the current folder).
    #[arg(long = "in", value_name = "TARGET", default_value = ".")]
    pub within: String,
    /// How many results at most.
    #[arg(short = 'k', long = "top", default_value_t = 20, value_name = "K")]
    pub k: usize,
    /// Largest cosine distance (1 − cosine similarity, 0–2) of a result. `search` has a
    /// default per model family; `similar` has none.
    #[arg(long, value_name = "X")]
    pub max_distance: Option<f32>,
    /// One JSON object: {"results": [{"file", "distance", "similarity"}], ...}.
    #[arg(long)]
    pub json: bool,
}

/// Sets of up to this many distinct images are searched exactly; larger ones by the fast scan
/// (one query) or the HNSW index (a query per image; benches/vector_index.rs).
pub const EXACT_MAX: usize = 50_000;

/// [`EXACT_MAX`], or the `IW_LAB_EXACT_MAX` environment variable (for tests of the index on
/// small sets).
fn exact_max() -> usize {
    std::env::var("IW_LAB_EXACT_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EXACT_MAX)
}

/// Most results a query may ask for.
const MAX_K: usize = 100_000;

/// The embeddings of a set: one row per distinct content, and the files of each row.
pub(super) struct Embedded {
    pub dim: usize,
    pub data: Vec<f32>,
    /// Per row: content hash and the images (indices into the target) holding it.
    pub rows: Vec<(String, Vec<usize>)>,
    pub failed: Vec<(String, String)>,
}

/// Loads a model that gives image embeddings (a `clip` model).
pub(super) fn embedding_model(env: &Env, name: &str) -> Result<Model> {
    let path = env.project.model_path(name)?;
    let m = crate::config::resolve::load_model(&env.project, &path)?;
    let caps = crate::engine::capabilities_of(&m);
    if !(caps.vectors && caps.embed) {
        bail!(
            "model `{}` is a `{}` model, which gives no image embeddings; use a `clip` model",
            m.name,
            m.kind.name()
        );
    }
    Ok(m)
}

fn check_common(c: &Common) -> Result<()> {
    if c.k == 0 || c.k > MAX_K {
        bail!("-k {} is out of range: ask for 1 to {MAX_K} results", c.k);
    }
    if let Some(d) = c.max_distance {
        if !(0.0..=2.0).contains(&d) {
            bail!("--max-distance {d} is out of range: a cosine distance is from 0 to 2");
        }
    }
    Ok(())
}

/// The embeddings of every image of `target`, computed or taken from the store.
pub(super) fn embed_target(
    env: &Env,
    model: &Model,
    target: &Target,
    ctx: &Context,
) -> Result<Embedded> {
    let label = format!("embed-{}", model.name);
    let v =
        crate::runner::vectors::vectors_cached(&env.project, model, &target.images, ctx, &label)?;
    let mut out = Embedded {
        dim: 0,
        data: Vec::new(),
        rows: Vec::new(),
        failed: target.unreadable.clone(),
    };
    let mut row_of: HashMap<&str, usize> = Default::default();
    for (i, (img, r)) in target.images.iter().zip(&v.per_image).enumerate() {
        let e = match r.as_deref() {
            Ok(Vector::Embedding(e)) => e,
            Ok(Vector::Hashes(_)) => bail!("model `{}` gave hashes, not an embedding", model.name),
            Err(why) => {
                out.failed.push((img.rel.clone(), why.clone()));
                continue;
            }
        };
        if let Some(&row) = row_of.get(img.hash.as_str()) {
            out.rows[row].1.push(i);
            continue;
        }
        if out.dim == 0 {
            out.dim = e.len();
        } else if e.len() != out.dim {
            bail!(
                "model `{}` gave embeddings of {} and {} values",
                model.name,
                out.dim,
                e.len()
            );
        }
        row_of.insert(&img.hash, out.rows.len());
        out.rows.push((img.hash.clone(), vec![i]));
        out.data.extend_from_slice(e);
    }
    Ok(out)
}

/// The index key of a content hash: its first 64 bits.
fn key_of(hash: &str) -> u64 {
    u64::from_str_radix(hash.get(..16).unwrap_or(hash), 16).unwrap_or_else(|_| {
        let h = blake3::hash(hash.as_bytes());
        u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
    })
}

/// The set's HNSW index (created or brought up to date; a killed build resumes), and the
/// row of each key.
fn open_index(
    env: &Env,
    fingerprint: &str,
    root: &Path,
    set: &Embedded,
) -> Result<(index::VectorIndex, HashMap<u64, usize>)> {
    let where_ = index_path(env, fingerprint, root);
    let params = index::IndexParams::default();
    let mut idx = match index::VectorIndex::open_or_create(&where_, set.dim, params) {
        // Stale entries (images gone from the set) beyond a quarter: rebuild rather than
        // wade through them at every query.
        Ok(idx) if idx.len() <= set.rows.len() + set.rows.len() / 4 + 1000 => idx,
        opened => {
            if let Err(e) = &opened {
                ui::warn(format!("{e:#}; rebuilding it"));
            }
            drop(opened);
            std::fs::remove_file(&where_)
                .with_context(|| format!("removing the index {}", where_.display()))?;
            index::VectorIndex::open_or_create(&where_, set.dim, params)
                .with_context(|| format!("creating the index {}", where_.display()))?
        }
    };
    let keys: Vec<u64> = set.rows.iter().map(|(h, _)| key_of(h)).collect();
    let bar = ui::progress(keys.len() as u64, "index");
    idx.add_missing(&keys, &set.data, 50_000, |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let row_of = keys.iter().enumerate().map(|(i, &k)| (k, i)).collect();
    Ok((idx, row_of))
}

/// The `want` nearest rows of the set through the index. The index may hold images no longer
/// in the set: ask for more until `want` of the set's come back or the index is exhausted.
fn live_hits(
    idx: &index::VectorIndex,
    row_of: &HashMap<u64, usize>,
    query: &[f32],
    want: usize,
) -> Result<Vec<(usize, f32)>> {
    let mut ask = want + want / 2 + 16;
    loop {
        let hits = idx.search(query, ask.min(idx.len()))?;
        let exhausted = hits.len() < ask.min(idx.len()) || ask >= idx.len();
        let live: Vec<(usize, f32)> = hits
            .into_iter()
            .filter_map(|(k, d)| row_of.get(&k).map(|&r| (r, d)))
            .take(want)
            .collect();
        if live.len() >= want || exhausted {
            return Ok(live);
        }
        ask *= 4;
    }
}

/// Neighbours each row is compared with when looking for near duplicates.
const K_NEAR: usize = 16;

/// Pairs of rows within `max_distance` (cosine), from each row's nearest (at least
/// [`K_NEAR`], more while they are all near): exact for small sets, through the index for
/// large ones.
pub(super) fn near_rows(
    env: &Env,
    fingerprint: &str,
    root: &Path,
    set: &Embedded,
    max_distance: f32,
) -> Result<Vec<(usize, usize, f64)>> {
    use rayon::prelude::*;
    let (n, dim) = (set.rows.len(), set.dim);
    if n < 2 {
        return Ok(Vec::new());
    }
    let index = if n > exact_max() {
        Some(open_index(env, fingerprint, root, set)?)
    } else {
        None
    };
    // Each row's nearest; a row whose every neighbour is near asks again for four times as
    // many, so a large group of copies is listed in full.
    let search = |i: usize, k: usize| -> Result<Vec<(usize, f32)>> {
        let q = &set.data[i * dim..(i + 1) * dim];
        match &index {
            None => Ok(exact::top_k(&set.data, dim, q, k)?
                .into_iter()
                .map(|(r, d)| (r as usize, d))
                .collect()),
            Some((idx, row_of)) => live_hits(idx, row_of, q, k),
        }
    };
    let lists: Vec<Vec<(usize, f32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut k = (K_NEAR + 1).min(n);
            loop {
                let list = search(i, k)?;
                let full = list.len() == k && list.last().is_some_and(|l| l.1 <= max_distance);
                if !full || k >= n {
                    return Ok(list);
                }
                k = (k * 4).min(n);
            }
        })
        .collect::<Result<_>>()?;
    let mut pairs: std::collections::BTreeMap<(usize, usize), f64> = Default::default();
    for (i, list) in lists.iter().enumerate() {
        for &(j, d) in list {
            if j != i && d <= max_distance {
                pairs.insert((i.min(j), i.max(j)), f64::from(d));
            }
        }
    }
    Ok(pairs.into_iter().map(|((a, b), d)| (a, b, d)).collect())
}

/// The rows nearest `query` (at most `want`), nearest first, as (row, distance): exact for
/// small sets, by the fast scan of the set's product-quantised codes and an exact re-rank for
/// large ones (it keeps its recall on vectors of any spread, where HNSW's graph can lose it;
/// the HNSW index serves the many queries of near-duplicate search).
fn nearest(
    env: &Env,
    fingerprint: &str,
    target: &Target,
    set: &Embedded,
    query: &[f32],
    want: usize,
) -> Result<(Vec<(usize, f32)>, &'static str)> {
    let n = set.rows.len();
    if n == 0 {
        return Ok((Vec::new(), "exact"));
    }
    if n <= exact_max() {
        let hits = exact::top_k(&set.data, set.dim, query, want)?;
        return Ok((
            hits.into_iter().map(|(r, d)| (r as usize, d)).collect(),
            "exact",
        ));
    }
    let (codes, row_for) = open_codes(env, fingerprint, &target.root, set)?;
    let dim = set.dim;
    let row = |i: u32| row_for.get(i as usize).copied().flatten();
    // Images gone from the set (or with no usable embedding) are never results.
    let hits = codes.search(
        query,
        want,
        rerank_depth(n, want),
        |i| row(i).is_some(),
        |i| {
            row(i).map_or(f32::NAN, |r| {
                exact::dot(&set.data[r * dim..(r + 1) * dim], query)
            })
        },
    )?;
    let hits = hits
        .into_iter()
        .filter_map(|(i, d)| Some((row_for.get(i as usize).copied().flatten()?, d)))
        .collect();
    Ok((hits, "scan"))
}

/// How many of the fast scan's best are re-ranked exactly: 0.2% of the set, at least 1,000
/// and twice the results asked for (benches/README.md: recall@10 ≥ 0.95 on clustered and
/// uniform vectors at 1,000,000).
fn rerank_depth(n: usize, want: usize) -> usize {
    (n / 500).max(1_000).max(want.saturating_mul(2))
}

/// The set's product-quantised codes (`similarity::pq`), learned once and brought up to date
/// with the set's new images (saved beside the HNSW index); and the set's row of each code
/// (none for images gone from the set).
fn open_codes(
    env: &Env,
    fingerprint: &str,
    root: &Path,
    set: &Embedded,
) -> Result<(pq::Codes, Vec<Option<usize>>)> {
    let where_ = index_path(env, fingerprint, root).with_extension("pq");
    let n = set.rows.len();
    let keys: Vec<u64> = set.rows.iter().map(|(h, _)| key_of(h)).collect();
    let row_of: HashMap<u64, usize> = keys.iter().enumerate().map(|(i, &k)| (k, i)).collect();
    let loaded = match pq::Codes::load(&where_) {
        Ok(c) if c.dim() == set.dim => {
            // Codes of images gone from the set beyond a quarter: learn again.
            let stale = c.keys().iter().filter(|k| !row_of.contains_key(k)).count();
            (stale * 4 <= c.len()).then_some(c)
        }
        Ok(_) => None,
        Err(e) => {
            if where_.exists() {
                ui::warn(format!("{e:#}; rebuilding it"));
            }
            None
        }
    };
    let mut codes = match loaded {
        Some(c) => c,
        None => {
            // Learn from rows spread over the whole set (finite ones).
            let step = n.div_ceil(32_768).max(1);
            let sample: Vec<f32> = (0..n)
                .step_by(step)
                .map(|r| &set.data[r * set.dim..(r + 1) * set.dim])
                .filter(|v| v.iter().all(|x| x.is_finite()))
                .flatten()
                .copied()
                .collect();
            pq::Codes::train(&sample, set.dim, 0x1D)?
        }
    };
    let mut have = vec![false; n];
    for k in codes.keys() {
        if let Some(&r) = row_of.get(k) {
            have[r] = true;
        }
    }
    // A row that is not finite (a broken embedding) is never encoded, nor found.
    let finite = |r: usize| {
        set.data[r * set.dim..(r + 1) * set.dim]
            .iter()
            .all(|x| x.is_finite())
    };
    let missing: Vec<usize> = (0..n).filter(|&r| !have[r] && finite(r)).collect();
    if !missing.is_empty() {
        let bar = ui::progress(missing.len() as u64, "codes");
        for chunk in missing.chunks(65_536) {
            let rows: Vec<f32> = chunk
                .iter()
                .flat_map(|&r| set.data[r * set.dim..(r + 1) * set.dim].iter().copied())
                .collect();
            let ks: Vec<u64> = chunk.iter().map(|&r| keys[r]).collect();
            codes.add_keyed(&ks, &rows)?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        if let Some(dir) = where_.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        codes.save(&where_)?;
    }
    let row_for = codes
        .keys()
        .iter()
        .map(|k| row_of.get(k).copied())
        .collect();
    Ok((codes, row_for))
}

/// Where the set's index files live: `.iw-lab/index/MODEL-ROOT.usearch` (and `.pq`).
fn index_path(env: &Env, fingerprint: &str, root: &Path) -> std::path::PathBuf {
    env.project.state_dir().join("index").join(format!(
        "{}-{}.usearch",
        &fingerprint[..16.min(fingerprint.len())],
        &blake3::hash(root.to_string_lossy().as_bytes()).to_hex()[..16]
    ))
}

pub fn run_similar(env: &Env, args: SimilarArgs) -> Result<ExitCode> {
    check_common(&args.common)?;
    let model = embedding_model(env, &args.common.model)?;
    let bytes = target::read_regular(&args.image)?;
    let abs = std::fs::canonicalize(&args.image).unwrap_or_else(|_| args.image.clone());
    let name = abs
        .file_name()
        .map_or("image".into(), |n| n.to_string_lossy().into_owned());
    let query = crate::dataset::ImageEntry::from_bytes(name, abs.clone(), &bytes, 0, None);
    drop(bytes);
    let target = target::resolve(env, &args.common.within)?;
    let ctx = env.engine_context()?;
    let label = format!("embed-{}", model.name);
    let q = crate::runner::vectors::vectors_cached(&env.project, &model, &[query], &ctx, &label)?;
    let q = match q.per_image.into_iter().next() {
        Some(Ok(v)) => match v.as_ref() {
            Vector::Embedding(e) => e.clone(),
            Vector::Hashes(_) => bail!("model `{}` gave hashes, not an embedding", model.name),
        },
        Some(Err(why)) => bail!("{}: {why}", args.image.display()),
        None => bail!("{}: no embedding", args.image.display()),
    };
    let set = embed_target(env, &model, &target, &ctx)?;
    let plain = crate::runner::vectors::for_vectors(&model);
    let identity = crate::engine::identify(&plain, &ctx, true)?.context("model identity")?;
    // The query itself comes back first: ask for one more and leave its own file out.
    let k = args.common.k;
    let (hits, method) = nearest(env, &identity.fingerprint, &target, &set, &q, k + 1)?;
    let cut = args.common.max_distance.unwrap_or(2.0);
    let results: Vec<(PathBuf, f32)> = expand(&target, &set, &hits, cut)
        .into_iter()
        .filter(|(p, _)| canonical(p) != abs)
        .take(k)
        .collect();
    let query_json = json!({"image": args.image.display().to_string()});
    report(
        &args.common,
        &target,
        &set,
        query_json,
        &results,
        cut,
        method,
        None,
    )
}

pub fn run_search(env: &Env, args: SearchArgs) -> Result<ExitCode> {
    check_common(&args.common)?;
    if args.query.trim().is_empty() {
        bail!("the search text is empty");
    }
    let model = embedding_model(env, &args.common.model)?;
    let target = target::resolve(env, &args.common.within)?;
    let ctx = env.engine_context()?;
    let plain = crate::runner::vectors::for_vectors(&model);
    let identity = crate::engine::identify(&plain, &ctx, true)?.context("model identity")?;
    let engine = crate::engine::load(&plain, &identity, &ctx)?;
    let q = engine
        .embed(&[args.query.as_str()])
        .map_err(|e| anyhow::anyhow!("embedding the query: {e}"))?
        .pop()
        .context("no query embedding")?;
    let calibration = engine.text_calibration();
    drop(engine);
    let set = embed_target(env, &model, &target, &ctx)?;
    let cut = match (args.common.max_distance, calibration) {
        (Some(d), _) => d,
        (None, Some((scale, bias))) => siglip_cut(scale, bias),
        (None, None) => CLIP_TEXT_MAX_DISTANCE,
    };
    let (hits, method) = nearest(env, &identity.fingerprint, &target, &set, &q, args.common.k)?;
    let results = expand(&target, &set, &hits, cut);
    let results: Vec<(PathBuf, f32)> = results.into_iter().take(args.common.k).collect();
    let query_json = json!({"text": args.query});
    report(
        &args.common,
        &target,
        &set,
        query_json,
        &results,
        cut,
        method,
        calibration,
    )
}

/// The cosine distance at which SigLIP's probability `σ(s·cos + b)` falls to
/// [`SIGLIP_MIN_PROBABILITY`].
fn siglip_cut(scale: f32, bias: f32) -> f32 {
    let p = SIGLIP_MIN_PROBABILITY;
    let cos = ((p / (1.0 - p)).ln() - bias) / scale.max(1e-6);
    (1.0 - cos).clamp(0.0, 2.0)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Rows to files within the cut-off, nearest first (identical copies side by side).
fn expand(target: &Target, set: &Embedded, hits: &[(usize, f32)], cut: f32) -> Vec<(PathBuf, f32)> {
    let mut out = Vec::new();
    for &(row, d) in hits {
        if d > cut {
            break;
        }
        for &i in &set.rows[row].1 {
            out.push((target.images[i].abs.clone(), d));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn report(
    c: &Common,
    target: &Target,
    set: &Embedded,
    query: serde_json::Value,
    results: &[(PathBuf, f32)],
    cut: f32,
    method: &str,
    calibration: Option<(f32, f32)>,
) -> Result<ExitCode> {
    let rel = |p: &Path| {
        p.strip_prefix(&target.root)
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let score = |d: f32| calibration.map(|(s, b)| 1.0 / (1.0 + (-(s * (1.0 - d) + b)).exp()));
    if c.json {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|(p, d)| {
                let mut o =
                    json!({"file": rel(p), "distance": round6(*d), "similarity": round6(1.0 - d)});
                if let Some(s) = score(*d) {
                    o["probability"] = json!(round6(s));
                }
                o
            })
            .collect();
        let failed: Vec<serde_json::Value> = set
            .failed
            .iter()
            .map(|(f, why)| json!({"file": f, "error": why}))
            .collect();
        ui::json_line(&json!({
            "query": query, "model": c.model, "searched": set.rows.len(), "method": method,
            "max_distance": round6(cut), "results": list, "failed": failed,
        }));
    } else {
        for (p, d) in results {
            ui::out(format!("{d:.4}  {}", rel(p)));
        }
        if results.is_empty() {
            ui::note(format!(
                "nothing within cosine distance {cut:.3} of the query among {} images (--max-distance widens it)",
                set.rows.len()
            ));
        }
        for (f, why) in &set.failed {
            ui::warn(format!("{f}: {why}"));
        }
    }
    Ok(if set.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn round6(x: f32) -> f64 {
    (f64::from(x) * 1e6).round() / 1e6
}
