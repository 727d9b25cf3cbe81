//! `iw-lab report`: one HTML file showing which variant wins, where, and why — leaderboard
//! with bootstrap intervals, charts (plotters, inline SVG), the image grid with each
//! variant's tags coloured against ground truth, and a diff view. Everything is read from the
//! runs' stored tables; nothing is re-run. Page layout and formats: docs/report.md.
//!
//! The page is server-rendered where it is static (leaderboard, charts, interval tables) and
//! client-rendered where it is large (the image grid and the diff view, from one JSON block,
//! one page of cards at a time). User text reaches the page only HTML-escaped (server side) or
//! through `textContent` (client side); the JSON block escapes `<`, `>` and `&`.

pub mod charts;
pub mod data;
pub mod html;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use rayon::prelude::*;
use serde::Serialize;

use crate::analysis::{bootstrap, group, stats, sweep};
use data::{LoadedRun, LoadedVariant};

/// Where thumbnails go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThumbMode {
    /// `embed` up to 2,000 images, `folder` beyond (10,000 embedded thumbnails made an 86 MB
    /// page in benches/report.py).
    Auto,
    /// Inside the HTML file (base64 JPEG): one file to share.
    Embed,
    /// JPEG files in a folder beside the HTML file (`NAME_files/`): a smaller page.
    Folder,
    /// No thumbnails (file names only).
    None,
}

/// `--thumbs auto` embeds thumbnails up to this many images.
pub const EMBED_MAX: usize = 2000;

/// Report options.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub title: Option<String>,
    pub threshold: Option<f64>,
    pub bootstrap: usize,
    pub seed: u64,
    pub confidence: f64,
    pub thumbs: ThumbMode,
    pub thumb_size: u32,
    pub page_size: usize,
    /// `.iw-lab/thumbs` of the project.
    pub thumb_cache: PathBuf,
}

/// What `build` did.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub out: PathBuf,
    pub runs: Vec<String>,
    pub variants: usize,
    pub images: usize,
    pub thumbnails: usize,
    pub thumbnails_missing: usize,
    pub bytes: u64,
    pub seconds: f64,
    /// Seconds per step (load, analyses, bootstrap, grid data and thumbnails, page, write).
    pub steps: Vec<(String, f64)>,
}

/// Per-variant analyses shown on the page.
pub struct VariantView {
    pub sweeps: Vec<sweep::Sweep>,
    pub tag_stats: stats::TagStats,
    pub groups: Vec<group::Groups>,
}

/// Everything the page shows.
pub struct Page<'a> {
    pub title: String,
    pub runs: &'a [LoadedRun],
    pub variants: Vec<&'a LoadedVariant>,
    pub views: Vec<VariantView>,
    /// Indices into `variants`, best first (by the first run's goal at the chosen thresholds).
    pub ranking: Vec<usize>,
    pub bootstrap: Option<bootstrap::Bootstrap>,
    pub cooccurrence: Option<charts::Heatmap>,
    pub truth_frequency: Vec<(String, u64)>,
    pub data_json: String,
    pub thumbs_json: Option<String>,
    pub warnings: Vec<String>,
}

/// Builds the report of `runs` (already resolved) and writes it to `opts.out`.
pub fn build(
    conn: &crate::store::duck::Connection<'_>,
    dirs: Vec<crate::store::RunDir>,
    opts: &Options,
) -> Result<Summary> {
    let t0 = std::time::Instant::now();
    let several = dirs.len() > 1;
    let mut runs = Vec::new();
    for (i, d) in dirs.into_iter().enumerate() {
        let id = d.id.clone();
        runs.push(
            data::load_run(conn, d, i, several, opts.threshold)
                .with_context(|| format!("cannot read run {id}"))?,
        );
    }
    let variants: Vec<&LoadedVariant> = runs.iter().flat_map(|r| r.variants.iter()).collect();
    let mut timings = vec![("load", t0.elapsed().as_secs_f64())];
    let views: Vec<VariantView> = variants
        .par_iter()
        .map(|v| {
            let attrs = &runs[v.run].attributes;
            VariantView {
                sweeps: sweep::sweeps(&v.scores),
                tag_stats: stats::tag_stats(&v.scores, v.threshold, 30),
                groups: attrs
                    .iter()
                    .map(|(by, values)| group::groups(&v.scores, v.threshold, by, values))
                    .collect(),
            }
        })
        .collect();
    timings.push(("analyses", t0.elapsed().as_secs_f64()));
    let ranking = rank(&runs, &variants);
    let has_truth = runs.iter().any(|r| r.source.is_some());
    // caption variants have no tag scores to resample
    let ordered: Vec<(&crate::analysis::scores::VariantScores, f64)> = ranking
        .iter()
        .filter(|&&i| variants[i].tags)
        .map(|&i| (&variants[i].scores, variants[i].threshold))
        .collect();
    let bootstrap = (has_truth && opts.bootstrap > 0 && !ordered.is_empty())
        .then(|| bootstrap::bootstrap(&ordered, opts.bootstrap, opts.seed, opts.confidence));
    let truth_run = runs.iter().find(|r| r.source.is_some());
    let (cooccurrence, truth_frequency) = match truth_run {
        Some(r) => (Some(charts::heatmap_of(&r.truth, 20)), frequency(&r.truth)),
        None => (None, Vec::new()),
    };
    let mut warnings = Vec::new();
    timings.push(("bootstrap", t0.elapsed().as_secs_f64()));
    let (client, thumbs_json, n_thumbs, n_missing) =
        client_data(&runs, &variants, &ranking, opts, &mut warnings)?;
    let data_json = script_json(&serde_json::to_string(&client)?);
    let title = opts.title.clone().unwrap_or_else(|| {
        let names: Vec<&str> = runs.iter().map(|r| r.manifest.run_id.as_str()).collect();
        format!("iw-lab report — {}", names.join(" vs "))
    });
    let page = Page {
        title,
        runs: &runs,
        variants,
        views,
        ranking,
        bootstrap,
        cooccurrence,
        truth_frequency,
        data_json,
        thumbs_json,
        warnings,
    };
    timings.push(("grid data and thumbnails", t0.elapsed().as_secs_f64()));
    let html = html::render(&page);
    timings.push(("page", t0.elapsed().as_secs_f64()));
    if let Some(dir) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    crate::atomic::write(&opts.out, html.as_bytes())
        .with_context(|| format!("cannot write {}", opts.out.display()))?;
    readable(&opts.out);
    timings.push(("write", t0.elapsed().as_secs_f64()));
    let mut prev = 0.0;
    let steps: Vec<(String, f64)> = timings
        .into_iter()
        .map(|(k, t)| {
            let d = t - prev;
            prev = t;
            (k.to_string(), (d * 1000.0).round() / 1000.0)
        })
        .collect();
    Ok(Summary {
        steps,
        out: opts.out.clone(),
        runs: runs.iter().map(|r| r.manifest.run_id.clone()).collect(),
        variants: page.variants.len(),
        images: client.images.len(),
        thumbnails: n_thumbs,
        thumbnails_missing: n_missing,
        bytes: html.len() as u64,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Variants best first: by the goal metric of each variant's row at its chosen threshold;
/// variants without a score keep their order after the scored ones.
fn rank(runs: &[LoadedRun], variants: &[&LoadedVariant]) -> Vec<usize> {
    let goal = runs[0].manifest.goal;
    let value = |v: &LoadedVariant| -> Option<f64> {
        let run = &runs[v.run];
        let x = if goal.metric.of_text() {
            // judge scores and similarities need no ground truth
            run.text.get(&v.name).and_then(|t| t.get(goal.metric))
        } else {
            run.metrics
                .iter()
                .find(|m| m.variant == v.name && m.threshold == v.threshold && m.images > 0)
                .and_then(|m| m.get(goal.metric))
        };
        x.filter(|x| !x.is_nan())
    };
    let mut idx: Vec<usize> = (0..variants.len()).collect();
    idx.sort_by(|&a, &b| {
        let (va, vb) = (value(variants[a]), value(variants[b]));
        match (va, vb) {
            (Some(x), Some(y)) => {
                let o = y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal);
                let o = match goal.direction {
                    crate::config::files::Direction::Maximize => o,
                    crate::config::files::Direction::Minimize => o.reverse(),
                };
                o.then(a.cmp(&b))
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(&b),
        }
    });
    idx
}

fn frequency(truth: &HashMap<String, Vec<String>>) -> Vec<(String, u64)> {
    let mut c: HashMap<&str, u64> = HashMap::new();
    for tags in truth.values() {
        for t in tags {
            *c.entry(t).or_default() += 1;
        }
    }
    let mut v: Vec<(String, u64)> = c.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// JSON made safe inside a `<script>` element: no `<`, `>`, `&` or line separators left raw
/// (they occur only inside JSON strings, where the `\u` forms mean the same).
pub fn script_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 50);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The grid's data, as the page's script reads it (docs/report.md, "Data").
#[derive(Serialize)]
pub struct ClientData {
    pub variants: Vec<ClientVariant>,
    pub tags: Vec<String>,
    pub images: Vec<ClientImage>,
    pub page_size: usize,
    pub thumbs: &'static str,
    pub thumb_size: u32,
    /// Indices into `variants`, best first.
    pub ranking: Vec<usize>,
}

#[derive(Serialize)]
pub struct ClientVariant {
    pub key: String,
    pub threshold: f64,
    /// The variant's run has ground truth.
    pub truth: bool,
}

/// One card. Per variant `v[k]` is `null` (no finished cell) or a flat list of
/// `tag, score‰, class` triples: class 0 true positive, 1 false positive, 2 missed (in the
/// ground truth, not predicted; score‰ is the stored score, 0 when none), 3 predicted on an
/// unlabelled image. Predicted tags first by score, then missed ones.
#[derive(Serialize)]
pub struct ClientImage {
    pub p: String,
    pub h: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub w: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ht: Option<i64>,
    /// Ground-truth tag ids (`null`: unlabelled).
    pub gt: Option<Vec<u32>>,
    pub v: Vec<Option<Vec<u32>>>,
    /// Failures: [variant index or -1, stage, reason].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub f: Vec<(i64, String, String)>,
    /// Generation metadata: prompt, negative prompt, settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m: Option<ClientMeta>,
    /// Thumbnail URL (folder mode), relative to the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t: Option<String>,
    /// Generated text per variant (`null`: none): one entry per repeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<Vec<Option<Vec<ClientText>>>>,
}

/// One generated output on a card: `[repeat, text, [[judge, verdict, score or null], ...]]`
/// (a pairwise judge's name carries the order, `judge (ab)`).
#[derive(Serialize)]
pub struct ClientText(
    pub u32,
    pub String,
    pub Vec<(String, Option<String>, Option<f64>)>,
);

#[derive(Serialize)]
pub struct ClientMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative: Option<String>,
    pub settings: Vec<(String, String)>,
}

type ClientParts = (ClientData, Option<String>, usize, usize);

fn client_data(
    runs: &[LoadedRun],
    variants: &[&LoadedVariant],
    ranking: &[usize],
    opts: &Options,
    warnings: &mut Vec<String>,
) -> Result<ClientParts> {
    let mut tag_ids: HashMap<String, u32> = HashMap::new();
    let mut tags: Vec<String> = Vec::new();
    let mut intern = |t: &str| -> u32 {
        if let Some(&k) = tag_ids.get(t) {
            return k;
        }
        let k = tags.len() as u32;
        tags.push(t.to_string());
        tag_ids.insert(t.to_string(), k);
        k
    };
    // cards: the union of the runs' image files, keyed by (path, hash)
    let mut cards: Vec<ClientImage> = Vec::new();
    let mut card_files: Vec<(PathBuf, String, u64)> = Vec::new();
    let mut by_key: HashMap<(String, String), usize> = HashMap::new();
    let mut by_hash: HashMap<String, usize> = HashMap::new();
    for run in runs {
        let root = data::dataset_root(run);
        // The dataset's own pixel limit holds for thumbnails too.
        let max_pixels = run
            .manifest
            .dataset
            .max_pixels
            .unwrap_or(crate::config::resolve::DEFAULT_MAX_PIXELS);
        for img in &run.images {
            let key = (img.path.clone(), img.hash.clone());
            if by_key.contains_key(&key) || (runs.len() > 1 && by_hash.contains_key(&img.hash)) {
                continue;
            }
            let k = cards.len();
            by_key.insert(key, k);
            by_hash.entry(img.hash.clone()).or_insert(k);
            let gt = run
                .truth
                .get(&img.path)
                .map(|ts| ts.iter().map(|t| intern(t)).collect());
            let meta = (img.prompt.is_some() || img.negative.is_some() || !img.meta.is_empty())
                .then(|| ClientMeta {
                    prompt: img.prompt.clone(),
                    negative: img.negative.clone(),
                    settings: img.meta.clone(),
                });
            let mut meta = meta;
            if let (Some(w), Some(h)) = (img.width, img.height) {
                let m = meta.get_or_insert_with(|| ClientMeta {
                    prompt: None,
                    negative: None,
                    settings: Vec::new(),
                });
                let fmt = img.format.clone().unwrap_or_default();
                m.settings
                    .insert(0, ("file".into(), format!("{fmt} {w}×{h}")));
            }
            cards.push(ClientImage {
                p: img.path.clone(),
                h: img.hash.clone(),
                w: img.width,
                ht: img.height,
                gt,
                v: vec![None; variants.len()],
                f: Vec::new(),
                m: meta,
                t: None,
                x: None,
            });
            card_files.push((
                root.join(crate::dataset::names::rel_path(&img.path)),
                img.hash.clone(),
                max_pixels,
            ));
        }
    }
    let find = |path: &str, hash: &str| -> Option<usize> {
        by_key
            .get(&(path.to_string(), hash.to_string()))
            .or_else(|| by_hash.get(hash))
            .copied()
    };
    for (k, v) in variants.iter().enumerate() {
        let s = &v.scores;
        let labelled_run = runs[v.run].source.is_some();
        for (i, info) in s.images.iter().enumerate() {
            let Some(c) = find(&info.path, &info.image_hash) else {
                continue;
            };
            let mut predicted: Vec<(f32, u32, u32)> = Vec::new();
            let mut missed: Vec<(f32, u32, u32)> = Vec::new();
            for e in &s.entries[i] {
                let pred = s.predicted(i, e, v.threshold);
                let id = intern(&s.tags[e.tag as usize]);
                let class = match (info.labelled && labelled_run, pred, e.y) {
                    (true, true, true) => 0,
                    (true, true, false) => 1,
                    (true, false, true) => 2,
                    (false, true, _) => 3,
                    _ => continue,
                };
                if class == 2 {
                    missed.push((e.score, id, class));
                } else {
                    predicted.push((e.score, id, class));
                }
            }
            let order =
                |a: &(f32, u32, u32), b: &(f32, u32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            predicted.sort_by(order);
            missed.sort_by(order);
            let flat = predicted
                .into_iter()
                .chain(missed)
                .flat_map(|(score, id, class)| {
                    [id, (score.clamp(0.0, 1.0) * 1000.0).round() as u32, class]
                })
                .collect();
            cards[c].v[k] = Some(flat);
        }
    }
    // generated text and verdicts
    for (k, v) in variants.iter().enumerate() {
        for row in runs[v.run].texts.iter().filter(|t| t.variant == v.name) {
            let Some(c) = find(&row.path, &row.hash) else {
                continue;
            };
            let slots = cards[c].x.get_or_insert_with(|| {
                std::iter::repeat_with(|| None)
                    .take(variants.len())
                    .collect()
            });
            let verdicts = row
                .verdicts
                .iter()
                .map(|(judge, side, verdict, score)| {
                    let name = if side.is_empty() {
                        judge.clone()
                    } else {
                        format!("{judge} ({side})")
                    };
                    (name, verdict.clone(), *score)
                })
                .collect();
            slots[k].get_or_insert_with(Vec::new).push(ClientText(
                row.repeat,
                row.text.clone(),
                verdicts,
            ));
        }
    }
    let card_of_path: HashMap<&str, usize> = cards
        .iter()
        .enumerate()
        .map(|(k, c)| (c.p.as_str(), k))
        .collect();
    let mut on_cards: Vec<(usize, (i64, String, String))> = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        let hash_of: HashMap<&str, &str> = run
            .images
            .iter()
            .map(|i| (i.path.as_str(), i.hash.as_str()))
            .collect();
        for f in &run.failures {
            let Some(c) = hash_of
                .get(f.path.as_str())
                .and_then(|h| find(&f.path, h))
                .or_else(|| card_of_path.get(f.path.as_str()).copied())
            else {
                continue;
            };
            let vi = f
                .variant
                .as_ref()
                .and_then(|name| variants.iter().position(|v| v.run == ri && &v.name == name))
                .map_or(-1, |i| i as i64);
            on_cards.push((c, (vi, f.stage.clone(), f.reason.clone())));
        }
    }
    drop(card_of_path);
    for (c, f) in on_cards {
        cards[c].f.push(f);
    }
    // thumbnails
    let mut thumbs_json = None;
    let (mut n_ok, mut n_missing) = (0, 0);
    let mode = match opts.thumbs {
        ThumbMode::Auto if cards.len() <= EMBED_MAX => ThumbMode::Embed,
        ThumbMode::Auto => ThumbMode::Folder,
        m => m,
    };
    if mode != ThumbMode::None {
        let made =
            crate::imaging::thumbs::make_all(&opts.thumb_cache, &card_files, opts.thumb_size);
        let mut missing_reasons = Vec::new();
        match mode {
            ThumbMode::Embed => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let list: Vec<Option<String>> = made
                    .into_iter()
                    .map(|t| match t {
                        crate::imaging::thumbs::Thumb::Jpeg(b) => {
                            n_ok += 1;
                            Some(b64.encode(b))
                        }
                        crate::imaging::thumbs::Thumb::Missing(why) => {
                            n_missing += 1;
                            missing_reasons.push(why);
                            None
                        }
                    })
                    .collect();
                thumbs_json = Some(serde_json::to_string(&list)?);
            }
            ThumbMode::Folder => {
                let dir = folder_of(&opts.out);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let dir_name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                for (c, t) in made.into_iter().enumerate() {
                    match t {
                        crate::imaging::thumbs::Thumb::Jpeg(b) => {
                            let name = format!("{}.jpg", cards[c].h);
                            let p = dir.join(&name);
                            if std::fs::read(&p).ok().as_deref() != Some(&b[..]) {
                                // content-named: a partial file is rewritten next time
                                std::fs::write(&p, &b)
                                    .with_context(|| format!("cannot write {}", p.display()))?;
                            }
                            cards[c].t = Some(format!("{}/{name}", url_escape(&dir_name)));
                            n_ok += 1;
                        }
                        crate::imaging::thumbs::Thumb::Missing(why) => {
                            n_missing += 1;
                            missing_reasons.push(why);
                        }
                    }
                }
            }
            ThumbMode::None | ThumbMode::Auto => {}
        }
        if !missing_reasons.is_empty() {
            warnings.push(format!(
                "{} image(s) have no thumbnail; first: {}",
                missing_reasons.len(),
                missing_reasons[0]
            ));
        }
    }
    let client = ClientData {
        variants: variants
            .iter()
            .map(|v| ClientVariant {
                key: v.key.clone(),
                threshold: v.threshold,
                truth: runs[v.run].source.is_some(),
            })
            .collect(),
        tags,
        images: cards,
        page_size: opts.page_size,
        thumbs: match mode {
            ThumbMode::Embed => "embed",
            ThumbMode::Folder => "folder",
            ThumbMode::None | ThumbMode::Auto => "none",
        },
        thumb_size: opts.thumb_size,
        ranking: ranking.to_vec(),
    };
    Ok((client, thumbs_json, n_ok, n_missing))
}

/// Reports are for sharing: rw-r--r-- like any file the user writes (temporary files, which
/// the atomic write renames, are created rw-------).
fn readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// `reports/demo.html` → `reports/demo_files`.
pub fn folder_of(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "report".into());
    out.with_file_name(format!("{stem}_files"))
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
