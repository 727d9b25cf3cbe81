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
    /// The project (whose datasets hold the current ground truth).
    pub project: crate::config::Project,
    /// Score against the dataset's current ground truth or each run's snapshot.
    pub ground_truth: crate::runner::truth::Choice,
    /// Show duplicate groups, hashing images through this fetcher's cache (`None`: no
    /// duplicates section).
    pub dupes: Option<crate::fetch::Fetcher>,
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
    let runs = load_runs(conn, dirs, opts)?;
    let variants: Vec<&LoadedVariant> = runs.iter().flat_map(|r| r.variants.iter()).collect();
    let mut timings = vec![("load", t0.elapsed().as_secs_f64())];
    let views = analyse(&runs, &variants);
    timings.push(("analyses", t0.elapsed().as_secs_f64()));
    let ranking = rank(&runs, &variants);
    let bootstrap = bootstrap_of(&runs, &variants, &ranking, opts);
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
    let page = Page {
        title: title_of(&runs, opts),
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
    write_page(&opts.out, &html)?;
    timings.push(("write", t0.elapsed().as_secs_f64()));
    Ok(Summary {
        steps: step_seconds(timings),
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

/// Loads every run of `dirs`, in order.
fn load_runs(
    conn: &crate::store::duck::Connection<'_>,
    dirs: Vec<crate::store::RunDir>,
    opts: &Options,
) -> Result<Vec<LoadedRun>> {
    let several = dirs.len() > 1;
    let mut runs = Vec::new();
    for (i, d) in dirs.into_iter().enumerate() {
        let id = d.id.clone();
        let run = data::load_run(
            conn,
            d,
            i,
            several,
            opts.threshold,
            (&opts.project, opts.ground_truth),
        )
        .with_context(|| format!("cannot read run {id}"))?;
        crate::ui::note(format!("{id}: {}", run.truth_used.describe()));
        runs.push(run);
    }
    Ok(runs)
}

/// Sweeps, tag statistics and groups of each variant, in parallel.
fn analyse(runs: &[LoadedRun], variants: &[&LoadedVariant]) -> Vec<VariantView> {
    variants
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
        .collect()
}

/// Bootstrap intervals of the tag variants in ranking order (none without ground truth).
fn bootstrap_of(
    runs: &[LoadedRun],
    variants: &[&LoadedVariant],
    ranking: &[usize],
    opts: &Options,
) -> Option<bootstrap::Bootstrap> {
    let has_truth = runs.iter().any(|r| r.source.is_some());
    // caption variants have no tag scores to resample; repeats scored as a mean are shown as
    // the mean of per-repeat metrics, which resampling the repeats' union would not match
    // (the leaderboard shows their spread instead)
    let mean_of_repeats = |v: &LoadedVariant| {
        runs[v.run].metrics.iter().any(|m| {
            m.variant == v.name && m.repeats.as_ref().is_some_and(|r| r.scored_as == "mean")
        })
    };
    let ordered: Vec<(&crate::analysis::scores::VariantScores, f64)> = ranking
        .iter()
        .filter(|&&i| variants[i].tags && !mean_of_repeats(variants[i]))
        .map(|&i| (&variants[i].scores, variants[i].threshold))
        .collect();
    (has_truth && opts.bootstrap > 0 && !ordered.is_empty())
        .then(|| bootstrap::bootstrap(&ordered, opts.bootstrap, opts.seed, opts.confidence))
}

/// The page title: `--title`, or the run ids compared.
fn title_of(runs: &[LoadedRun], opts: &Options) -> String {
    opts.title.clone().unwrap_or_else(|| {
        let names: Vec<&str> = runs.iter().map(|r| r.manifest.run_id.as_str()).collect();
        format!("iw-lab report — {}", names.join(" vs "))
    })
}

/// Writes the page to `out` (creating its folder), readable by all.
fn write_page(out: &Path, html: &str) -> Result<()> {
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    crate::atomic::write(out, html.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    readable(out);
    Ok(())
}

/// Seconds per step (rounded to the millisecond) from the elapsed time at each step's end.
fn step_seconds(timings: Vec<(&str, f64)>) -> Vec<(String, f64)> {
    let mut prev = 0.0;
    timings
        .into_iter()
        .map(|(k, t)| {
            let d = t - prev;
            prev = t;
            (k.to_string(), (d * 1000.0).round() / 1000.0)
        })
        .collect()
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
    /// Duplicate groups among the cards (`null`: not looked for).
    pub dupes: Option<Vec<ClientGroup>>,
    /// How duplicates were found, for the section's note.
    pub dupes_by: &'static str,
}

/// One group of duplicate images: card indices, the suggested keeper's card, whether all
/// have the same bytes, and the largest Hamming distance inside it.
#[derive(Serialize)]
pub struct ClientGroup {
    pub i: Vec<usize>,
    pub k: usize,
    pub x: bool,
    pub d: u32,
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
    /// Regions (faces) found by variants, to draw on the thumbnail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub r: Vec<ClientRegion>,
}

/// One region on a card: `[variant index, left, top, width, height (fractions of the image),
/// score × 1000, label (the person, or why it was skipped; "" for a plain face)]`.
#[derive(Serialize)]
pub struct ClientRegion(
    pub usize,
    pub f32,
    pub f32,
    pub f32,
    pub f32,
    pub u32,
    pub String,
);

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
    let mut grid = Grid::default();
    // cards: the union of the runs' image files, keyed by (path, hash)
    for run in runs {
        grid.add_run_images(run, runs.len() > 1, variants.len());
    }
    for (k, v) in variants.iter().enumerate() {
        grid.add_scores(k, v, runs[v.run].source.is_some());
    }
    // generated text and verdicts
    for (k, v) in variants.iter().enumerate() {
        grid.add_texts(k, v, &runs[v.run], variants.len());
    }
    grid.add_failures(runs, variants);
    grid.add_regions(runs, variants);
    // thumbnails
    let mode = match opts.thumbs {
        ThumbMode::Auto if grid.cards.len() <= EMBED_MAX => ThumbMode::Embed,
        ThumbMode::Auto => ThumbMode::Folder,
        m => m,
    };
    let (thumbs_json, n_ok, n_missing) = grid.thumbnails(mode, opts, warnings)?;
    let dupes = match &opts.dupes {
        Some(fetcher) => Some(grid.duplicates(opts, fetcher, warnings)?),
        None => None,
    };
    let mut client = grid.into_client(runs, variants, ranking, opts, mode);
    client.dupes = dupes;
    Ok((client, thumbs_json, n_ok, n_missing))
}

/// The grid's cards as they are built, with the tags they refer to by id.
#[derive(Default)]
struct Grid {
    tag_ids: HashMap<String, u32>,
    tags: Vec<String>,
    cards: Vec<ClientImage>,
    /// Per card: (image file, hash, pixel limit), for its thumbnail.
    card_files: Vec<(PathBuf, String, u64)>,
    by_key: HashMap<(String, String), usize>,
    by_hash: HashMap<String, usize>,
}

impl Grid {
    /// The id of tag `t`, given the next free one when new.
    fn intern(&mut self, t: &str) -> u32 {
        if let Some(&k) = self.tag_ids.get(t) {
            return k;
        }
        let k = self.tags.len() as u32;
        self.tags.push(t.to_string());
        self.tag_ids.insert(t.to_string(), k);
        k
    }

    /// The card of an image, by (path, hash), else by hash alone.
    fn find(&self, path: &str, hash: &str) -> Option<usize> {
        self.by_key
            .get(&(path.to_string(), hash.to_string()))
            .or_else(|| self.by_hash.get(hash))
            .copied()
    }

    /// Adds a card for each of `run`'s images not already on the grid (when `several` runs
    /// are compared, an image with the same hash counts as already there).
    fn add_run_images(&mut self, run: &LoadedRun, several: bool, n_variants: usize) {
        let root = data::dataset_root(run);
        // The dataset's own pixel limit holds for thumbnails too.
        let max_pixels = run
            .manifest
            .dataset
            .max_pixels
            .unwrap_or(crate::config::resolve::DEFAULT_MAX_PIXELS);
        for img in &run.images {
            let key = (img.path.clone(), img.hash.clone());
            if self.by_key.contains_key(&key) || (several && self.by_hash.contains_key(&img.hash)) {
                continue;
            }
            let k = self.cards.len();
            self.by_key.insert(key, k);
            self.by_hash.entry(img.hash.clone()).or_insert(k);
            let gt = run
                .truth
                .get(&img.path)
                .map(|ts| ts.iter().map(|t| self.intern(t)).collect());
            self.cards.push(ClientImage {
                p: img.path.clone(),
                h: img.hash.clone(),
                w: img.width,
                ht: img.height,
                gt,
                v: vec![None; n_variants],
                f: Vec::new(),
                m: card_meta(img),
                t: None,
                x: None,
                r: Vec::new(),
            });
            self.card_files.push((
                root.join(crate::dataset::names::rel_path(&img.path)),
                img.hash.clone(),
                max_pixels,
            ));
        }
    }

    /// Adds the runs' face boxes to the cards of their images (regions written before their
    /// image size was kept are left out: they could not be placed).
    fn add_regions(&mut self, runs: &[LoadedRun], variants: &[&LoadedVariant]) {
        for (ri, run) in runs.iter().enumerate() {
            for f in &run.regions {
                let Some(k) = variants
                    .iter()
                    .position(|v| v.run == ri && v.name == f.variant)
                else {
                    continue;
                };
                let (Some(c), Some((w, h))) = (self.find(&f.path, &f.image_hash), f.frame) else {
                    continue;
                };
                let (w, h) = (w as f32, h as f32);
                let [x, y, bw, bh] = f.bbox;
                let label = f
                    .person
                    .clone()
                    .or_else(|| f.skipped.as_ref().map(|s| format!("skipped: {s}")))
                    .unwrap_or_default();
                let score = (f.score.clamp(0.0, 1.0) * 1000.0).round() as u32;
                self.cards[c]
                    .r
                    .push(ClientRegion(k, x / w, y / h, bw / w, bh / h, score, label));
            }
        }
    }

    /// Fills variant `k`'s tag triples on the cards of the images it scored.
    fn add_scores(&mut self, k: usize, v: &LoadedVariant, labelled_run: bool) {
        let s = &v.scores;
        for (i, info) in s.images.iter().enumerate() {
            let Some(c) = self.find(&info.path, &info.image_hash) else {
                continue;
            };
            let flat = self.classified_tags(v, i, info.labelled && labelled_run);
            self.cards[c].v[k] = Some(flat);
        }
    }

    /// Image `i`'s `tag, score‰, class` triples for variant `v`: predicted tags first by
    /// score, then missed ones (`labelled`: the image has ground truth in its run).
    fn classified_tags(&mut self, v: &LoadedVariant, i: usize, labelled: bool) -> Vec<u32> {
        let s = &v.scores;
        let mut predicted: Vec<(f32, u32, u32)> = Vec::new();
        let mut missed: Vec<(f32, u32, u32)> = Vec::new();
        for e in &s.entries[i] {
            let pred = s.predicted(i, e, v.threshold);
            let id = self.intern(&s.tags[e.tag as usize]);
            let class = match (labelled, pred, e.y) {
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
        predicted
            .into_iter()
            .chain(missed)
            .flat_map(|(score, id, class)| {
                [id, (score.clamp(0.0, 1.0) * 1000.0).round() as u32, class]
            })
            .collect()
    }

    /// Adds variant `k`'s generated texts, with their verdicts, to the cards.
    fn add_texts(&mut self, k: usize, v: &LoadedVariant, run: &LoadedRun, n_variants: usize) {
        for row in run.texts.iter().filter(|t| t.variant == v.name) {
            let Some(c) = self.find(&row.path, &row.hash) else {
                continue;
            };
            let slots = self.cards[c]
                .x
                .get_or_insert_with(|| std::iter::repeat_with(|| None).take(n_variants).collect());
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

    /// Adds the runs' failures to the cards of their images.
    fn add_failures(&mut self, runs: &[LoadedRun], variants: &[&LoadedVariant]) {
        let card_of_path: HashMap<&str, usize> = self
            .cards
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
                    .and_then(|h| self.find(&f.path, h))
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
            self.cards[c].f.push(f);
        }
    }

    /// Makes the cards' thumbnails as `mode` says: the embedded list's JSON (embed mode), the
    /// number made and the number missing (with a warning naming the first reason).
    fn thumbnails(
        &mut self,
        mode: ThumbMode,
        opts: &Options,
        warnings: &mut Vec<String>,
    ) -> Result<(Option<String>, usize, usize)> {
        let mut thumbs_json = None;
        let mut made = Made::default();
        if mode != ThumbMode::None {
            let thumbs = crate::imaging::thumbs::make_all(
                &opts.thumb_cache,
                &self.card_files,
                opts.thumb_size,
            );
            match mode {
                ThumbMode::Embed => thumbs_json = Some(made.embed(thumbs)?),
                ThumbMode::Folder => self.write_thumbs(thumbs, &opts.out, &mut made)?,
                ThumbMode::None | ThumbMode::Auto => {}
            }
            if !made.missing_reasons.is_empty() {
                warnings.push(format!(
                    "{} image(s) have no thumbnail; first: {}",
                    made.missing_reasons.len(),
                    made.missing_reasons[0]
                ));
            }
        }
        Ok((thumbs_json, made.ok, made.missing))
    }

    /// Writes the thumbnails to the folder beside the page `out` and points the cards at them.
    fn write_thumbs(
        &mut self,
        thumbs: Vec<crate::imaging::thumbs::Thumb>,
        out: &Path,
        made: &mut Made,
    ) -> Result<()> {
        let dir = folder_of(out);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for (c, t) in thumbs.into_iter().enumerate() {
            match t {
                crate::imaging::thumbs::Thumb::Jpeg(b) => {
                    let name = format!("{}.jpg", self.cards[c].h);
                    let p = dir.join(&name);
                    if std::fs::read(&p).ok().as_deref() != Some(&b[..]) {
                        // content-named: a partial file is rewritten next time
                        std::fs::write(&p, &b)
                            .with_context(|| format!("cannot write {}", p.display()))?;
                    }
                    self.cards[c].t = Some(format!("{}/{name}", url_escape(&dir_name)));
                    made.ok += 1;
                }
                crate::imaging::thumbs::Thumb::Missing(why) => made.missed(why),
            }
        }
        Ok(())
    }

    /// The finished data block.
    fn into_client(
        self,
        runs: &[LoadedRun],
        variants: &[&LoadedVariant],
        ranking: &[usize],
        opts: &Options,
        mode: ThumbMode,
    ) -> ClientData {
        ClientData {
            variants: variants
                .iter()
                .map(|v| ClientVariant {
                    key: v.key.clone(),
                    threshold: v.threshold,
                    truth: runs[v.run].source.is_some(),
                })
                .collect(),
            tags: self.tags,
            images: self.cards,
            page_size: opts.page_size,
            thumbs: match mode {
                ThumbMode::Embed => "embed",
                ThumbMode::Folder => "folder",
                ThumbMode::None | ThumbMode::Auto => "none",
            },
            thumb_size: opts.thumb_size,
            ranking: ranking.to_vec(),
            dupes: None,
            dupes_by: DUPES_BY,
        }
    }

    /// The duplicate groups among the cards, by 64-bit pHash within its default distance
    /// (as `iw-lab dupes` finds them, pairs marked "not a duplicate" left out). Hashes are
    /// cached in the run store like `dupes`'. Images whose files changed are left out.
    fn duplicates(
        &self,
        opts: &Options,
        fetcher: &crate::fetch::Fetcher,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<ClientGroup>> {
        use crate::similarity::dupes;
        let images: Vec<crate::dataset::ImageEntry> = self
            .cards
            .iter()
            .zip(&self.card_files)
            .map(|(c, (abs, hash, _))| crate::dataset::ImageEntry {
                rel: c.p.clone(),
                abs: abs.clone(),
                size: 0,
                mtime_ns: 0,
                hash: hash.clone(),
                format: format_of(abs),
                width: c.w.map(|w| w as u32),
                height: c.ht.map(|h| h as u32),
                meta: None,
            })
            .collect();
        let model = crate::config::resolve::builtin_phash(&opts.project, "phash");
        let ctx = crate::engine::Context::new(fetcher.clone());
        let v = crate::runner::vectors::vectors_cached(
            &opts.project,
            &model,
            &images,
            &ctx,
            "dupes-phash",
        )?;
        let (mut items, mut cards) = (Vec::new(), Vec::new());
        for (k, (img, r)) in images.iter().zip(&v.per_image).enumerate() {
            let words = r
                .as_ref()
                .ok()
                .and_then(|v| v.hash("phash"))
                .and_then(crate::imaging::perceptual::parse_hex);
            let Some(words) = words else { continue };
            items.push(dupes::Item {
                file: img.rel.clone(),
                content: img.hash.clone(),
                hash: words,
                pixels: u64::from(img.width.unwrap_or(0)) * u64::from(img.height.unwrap_or(0)),
                format: img.format.clone(),
                has_meta: false,
            });
            cards.push(k);
        }
        if items.len() < images.len() {
            warnings.push(format!(
                "duplicates: {} image(s) could not be hashed (moved or changed since the run)",
                images.len() - items.len()
            ));
        }
        let not =
            dupes::NotDuplicates::load(&opts.project.state_dir().join("not-duplicates.jsonl"))
                .unwrap_or_default();
        let found = dupes::find(&items, DUPES_DISTANCE, &not);
        Ok(found
            .groups
            .into_iter()
            .map(|g| ClientGroup {
                i: g.items.iter().map(|&i| cards[i]).collect(),
                k: cards[g.keeper],
                x: g.exact,
                d: g.max_distance as u32,
            })
            .collect())
    }
}

/// The pHash distance of the report's duplicate groups (`iw-lab dupes`' default).
const DUPES_DISTANCE: u32 = 14;

/// The duplicates section's note.
const DUPES_BY: &str = "64-bit pHash within 14 bits, as `iw-lab dupes` finds them";

/// An image's format from its file name, for choosing a keeper.
fn format_of(path: &std::path::Path) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "jpeg".into(),
        "tif" | "tiff" => "tiff".into(),
        other => other.to_string(),
    })
}

/// A card's generation metadata: prompt, negative prompt and settings, the file's format and
/// size first (`None` when there is nothing to show).
fn card_meta(img: &data::ImageRow) -> Option<ClientMeta> {
    let meta =
        (img.prompt.is_some() || img.negative.is_some() || !img.meta.is_empty()).then(|| {
            ClientMeta {
                prompt: img.prompt.clone(),
                negative: img.negative.clone(),
                settings: img.meta.clone(),
            }
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
    meta
}

/// Thumbnails made and missing so far.
#[derive(Default)]
struct Made {
    ok: usize,
    missing: usize,
    missing_reasons: Vec<String>,
}

impl Made {
    /// Counts a thumbnail that could not be made.
    fn missed(&mut self, why: String) {
        self.missing += 1;
        self.missing_reasons.push(why);
    }

    /// The thumbnails as a JSON list of base64 JPEGs (`null`: none).
    fn embed(&mut self, thumbs: Vec<crate::imaging::thumbs::Thumb>) -> Result<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let list: Vec<Option<String>> = thumbs
            .into_iter()
            .map(|t| match t {
                crate::imaging::thumbs::Thumb::Jpeg(b) => {
                    self.ok += 1;
                    Some(b64.encode(b))
                }
                crate::imaging::thumbs::Thumb::Missing(why) => {
                    self.missed(why);
                    None
                }
            })
            .collect();
        Ok(serde_json::to_string(&list)?)
    }
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
