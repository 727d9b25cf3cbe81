//! Learned sorting: which folder of a library a new image belongs in, learned from the images
//! already filed there ([`learn`]: naive Bayes over features, with k-nearest neighbours).
//!
//! An image's features are its tags from the chosen taggers (any model, run through the
//! cached pass: a promoted tagger, a `faces` model that recognises people), and its
//! generation metadata (generator, checkpoint, LoRAs, prompt tags); with a `clip` model, its
//! image embedding (cached like any vector) adds a k-nearest-neighbour vote. `apply` moves or copies
//! images only when confirmed, writing a journal first (`ROOT/.iw-lab/sort/journal.jsonl`) so
//! `undo` can put every file back; learning reads only images that sit in the library
//! (placed by the user, or by a confirmed `apply`), never unconfirmed suggestions, and gives
//! the placements the user corrected (chose another folder than suggested) double weight.

pub mod journal;
pub mod learn;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::config::{Model, Project};
use crate::dataset::ImageEntry;
use crate::engine::Context;
use learn::{Example, Options};

/// What the features are made from.
pub struct Features<'a> {
    pub project: &'a Project,
    pub ctx: &'a Context,
    /// Taggers whose tags are features.
    pub models: &'a [Model],
    /// Tags scoring below this are not features.
    pub min_score: f32,
    /// A `clip` model whose image embeddings feed the k-nearest-neighbour vote.
    pub embedder: Option<&'a Model>,
}

/// One image with its features.
#[derive(Debug, Clone)]
pub struct Described {
    pub image: ImageEntry,
    pub features: Vec<String>,
    /// Its unit-length image embedding, when an embedder was given and it has one.
    pub embedding: Option<Vec<f32>>,
}

/// Scans `root` (every image under it, hidden folders left out).
pub fn scan(project: &Project, root: &Path) -> Result<Vec<ImageEntry>> {
    if !root.is_dir() {
        bail!("{} is not a folder", root.display());
    }
    // Absolute, so the journal's paths hold from any working folder.
    let root =
        &std::fs::canonicalize(root).with_context(|| format!("cannot open {}", root.display()))?;
    let ds = crate::config::resolve::folder_dataset(root);
    let scan = crate::dataset::scan::scan(&ds, &project.state_dir(), None)
        .with_context(|| format!("scanning {}", root.display()))?;
    for (path, why) in &scan.unreadable {
        crate::ui::warn(format!("{}: {why}; left out", root.join(path).display()));
    }
    Ok(scan
        .images
        .into_iter()
        .filter(|i| !i.rel.split('/').any(|part| part.starts_with('.')))
        .collect())
}

/// The features of each image: `tag:T` per tag at or above the floor from each model,
/// `gen:`, `model:`, `lora:` and `prompt:` from its generation metadata.
pub fn describe(f: &Features<'_>, images: Vec<ImageEntry>) -> Result<Vec<Described>> {
    let files: Vec<PathBuf> = images.iter().map(|i| i.abs.clone()).collect();
    let mut tags: Vec<Vec<String>> = vec![Vec::new(); images.len()];
    for model in f.models {
        let predicted = crate::runner::predict::predict(f.project, model, &files, f.ctx)?;
        for (slot, p) in tags.iter_mut().zip(predicted) {
            if let Some(e) = &p.error {
                crate::ui::warn(format!("{}: {}: {e}", p.file, model.name));
            }
            slot.extend(
                p.tags
                    .iter()
                    .filter(|(_, s, _)| *s >= f.min_score)
                    .map(|(t, _, _)| format!("tag:{t}")),
            );
        }
    }
    let mut embeddings: Vec<Option<Vec<f32>>> = vec![None; images.len()];
    if let Some(model) = f.embedder {
        let v = crate::runner::vectors::vectors_cached(f.project, model, &images, f.ctx, "sort")?;
        for (slot, (r, img)) in embeddings.iter_mut().zip(v.per_image.iter().zip(&images)) {
            match r.as_deref() {
                Ok(crate::words::Vector::Embedding(e)) => *slot = Some(e.clone()),
                Ok(_) => {}
                Err(e) => crate::ui::warn(format!("{}: {}: {e}", img.abs.display(), model.name)),
            }
        }
    }
    Ok(images
        .into_iter()
        .zip(tags)
        .zip(embeddings)
        .map(|((image, mut features), embedding)| {
            features.extend(meta_features(&image));
            features.sort();
            features.dedup();
            Described {
                image,
                features,
                embedding,
            }
        })
        .collect())
}

fn meta_features(image: &ImageEntry) -> Vec<String> {
    let Some(meta) = image.meta.as_deref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let lower = |s: &str| s.trim().to_lowercase();
    if let Some(g) = &meta.generator {
        out.push(format!("gen:{}", lower(g)));
    }
    if let Some(m) = &meta.model {
        out.push(format!("model:{}", lower(m)));
    }
    for (l, _) in &meta.loras {
        out.push(format!("lora:{}", lower(l)));
    }
    let aliases = crate::tags::Aliases::default();
    if let Some((positive, _)) = crate::dataset::ground_truth::prompt_tags(meta, 0.0, &aliases) {
        out.extend(positive.into_iter().map(|t| format!("prompt:{t}")));
    }
    out
}

/// The folder of a library image: its parent, relative to the root (`None` at the root
/// itself: an image not filed yet).
pub fn folder_of(rel: &str) -> Option<String> {
    rel.rsplit_once('/').map(|(dir, _)| dir.to_string())
}

/// Training examples from the library's images, weighted by the journal's corrections.
pub fn examples(library: &[Described], corrected: &HashMap<String, String>) -> Vec<Example> {
    library
        .iter()
        .filter_map(|d| {
            let label = folder_of(&d.image.rel)?;
            let weight = match corrected.get(&d.image.hash) {
                Some(folder) if *folder == label => 2.0,
                _ => 1.0,
            };
            Some(Example {
                label,
                features: d.features.clone(),
                embedding: d.embedding.clone(),
                weight,
            })
        })
        .collect()
}

/// One suggestion for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Suggested {
    /// The image's absolute path, as `dataset::names::rel_text` writes it.
    pub file: String,
    pub hash: String,
    /// Best first: the folder (relative to the library) and the confidence.
    pub folders: Vec<(String, f32)>,
    /// Features that weighed most for the first folder.
    pub reasons: Vec<String>,
    /// Where `apply` will put it: the first folder, unless edited.
    pub folder: Option<String>,
}

/// The model learned from the library.
pub fn train(library: &[Described], corrected: &HashMap<String, String>) -> Result<learn::Model> {
    let ex = examples(library, corrected);
    if ex.is_empty() {
        bail!("the library holds no filed images (images in its sub-folders) to learn from");
    }
    Ok(learn::Model::train(&ex, &Options::default()))
}

/// Suggests a folder for each of `new`.
pub fn suggest(model: &learn::Model, new: &[Described], top: usize) -> Vec<Suggested> {
    new.iter()
        .map(|d| {
            let e = model.suggest(&d.features, d.embedding.as_deref(), top.max(1));
            let folders: Vec<(String, f32)> = e
                .suggestions
                .into_iter()
                .map(|s| (s.label, s.confidence))
                .collect();
            Suggested {
                file: crate::dataset::names::rel_text(&d.image.abs),
                hash: d.image.hash.clone(),
                folder: folders.first().map(|f| f.0.clone()),
                folders,
                reasons: e.reasons.into_iter().map(|(f, _)| f).collect(),
            }
        })
        .collect()
}

/// Top-1 and top-3 accuracy on a held-out share of the library, with the baselines.
pub fn evaluate(library: &[Described], test_share: f64, seed: u64) -> learn::Evaluation {
    let ex = examples(library, &HashMap::new());
    // `ex` holds the filed images in library order; a fixed shuffle of them, by a hash of the
    // seed and each image's content.
    let filed = library.iter().filter(|d| folder_of(&d.image.rel).is_some());
    let mut order: Vec<(blake3::Hash, usize)> = filed
        .enumerate()
        .map(|(k, d)| {
            let mut h = blake3::Hasher::new();
            h.update(&seed.to_le_bytes());
            h.update(d.image.hash.as_bytes());
            (h.finalize(), k)
        })
        .collect();
    order.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    let n_test = ((ex.len() as f64) * test_share.clamp(0.0, 1.0)).round() as usize;
    let test: Vec<usize> = order.iter().take(n_test).map(|(_, k)| *k).collect();
    let mut train: Vec<usize> = order.iter().skip(n_test).map(|(_, k)| *k).collect();
    train.sort_unstable();
    let pick = |idx: &[usize]| idx.iter().map(|&i| ex[i].clone()).collect::<Vec<_>>();
    learn::evaluate(&pick(&train), &pick(&test), &Options::default())
}
