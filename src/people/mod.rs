//! People in a collection: enrolling them from a folder per person into the project's face
//! gallery, forgetting them, and grouping the faces nobody is enrolled for into clusters that
//! can be named, merged and split ([`clusters`]).
//!
//! The gallery is `.iw-lab/faces/gallery.parquet` (`store::faces`); every change to it or to
//! the cluster state holds `.iw-lab/faces/lock`, so two commands never interleave, and every
//! file is replaced atomically, so a killed command leaves the old state or the new one.

pub mod clusters;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::config::{Model, Project};
use crate::dataset::ImageEntry;
use crate::engine::{self, Context};
use crate::faces::name_key;
use crate::runner::pipeline;
use crate::store::faces::{self as stored, GalleryRow};

/// The folder of the faces state.
pub fn faces_dir(project: &Project) -> PathBuf {
    project.state_dir().join("faces")
}

/// Holds the faces state's lock while alive.
pub struct Locked {
    _file: std::fs::File,
}

/// Takes the faces state's lock, waiting for another command to finish.
pub fn lock(project: &Project) -> Result<Locked> {
    let path = faces_dir(project).join("lock");
    let file =
        crate::atomic::lock(&path).with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(Locked { _file: file })
}

/// What an enrolment did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Enrolled {
    /// (person, photo) added.
    pub added: Vec<(String, String)>,
    /// Photos already in the gallery for that person.
    pub known: usize,
    /// Photos not enrolled, or enrolled with a caveat, and why.
    pub warnings: Vec<String>,
    /// The people the gallery holds now, with their photo counts.
    pub people: Vec<(String, usize)>,
}

/// One person's folder.
struct PersonDir {
    name: String,
    images: Vec<ImageEntry>,
}

/// The people of `folder`: one sub-folder each, named after the person.
fn person_dirs(
    project: &Project,
    folder: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<PersonDir>> {
    let entries = std::fs::read_dir(folder)
        .with_context(|| format!("cannot read the enrolment folder {}", folder.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let raw = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if raw.starts_with('.') {
            continue;
        }
        let Some(name) = person_name(&dir) else {
            warnings.push(format!(
                "{}: the folder's name is not a usable person name (not UTF-8, or blank); skipped",
                dir.display()
            ));
            continue;
        };
        let ds = crate::config::resolve::folder_dataset(&dir);
        let scan = crate::dataset::scan::scan(&ds, &project.state_dir(), None)
            .with_context(|| format!("scanning {}", dir.display()))?;
        for (path, why) in &scan.unreadable {
            warnings.push(format!("{}/{path}: {why}", dir.display()));
        }
        if scan.images.is_empty() {
            warnings.push(format!("{}: no images; {name} not enrolled", dir.display()));
        }
        out.push(PersonDir {
            name,
            images: scan.images,
        });
    }
    Ok(out)
}

/// A folder's name as a person's name: valid UTF-8, trimmed, not blank, no control chars.
fn person_name(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?.trim();
    (!name.is_empty() && !name.chars().any(char::is_control)).then(|| name.to_string())
}

/// The model enrolment embeds with: the `faces` model, recognition off (the gallery is what
/// is being made), with a recogniser.
fn embedding_model(model: &Model) -> Result<Model> {
    let mut m = model.clone();
    let Some(f) = m.faces.as_mut() else {
        bail!("model `{}` is not a `faces` model", model.name);
    };
    if f.recognizer_parsed.is_none() {
        bail!(
            "model `{}` has no `faces.recognizer:`; enrolment needs the recogniser that embeds faces",
            model.name
        );
    }
    f.recognize = false;
    Ok(m)
}

/// Enrols the people of `folder` (`folder/NAME/*.jpg`): the best face of each new photo.
pub fn enroll(project: &Project, ctx: &Context, model: &Model, folder: &Path) -> Result<Enrolled> {
    let model = embedding_model(model)?;
    let mut done = Enrolled::default();
    let people = person_dirs(project, folder, &mut done.warnings)?;
    if people.iter().all(|p| p.images.is_empty()) {
        bail!(
            "{} holds no images in person folders: expected one folder per person, such as {}",
            folder.display(),
            folder.join("Amy H").join("photo.jpg").display()
        );
    }
    let identity = engine::identify(&model, ctx, true)?.context("the model's files")?;
    let recognizer = identity
        .files
        .get(1)
        .context("the recogniser's file")?
        .blake3
        .clone();
    let _lock = lock(project)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let file = stored::gallery_file(&project.state_dir());
    let mut rows = stored::read_gallery(&conn, &file)?;
    if let Some(r) = rows.iter().find(|r| r.recognizer != recognizer) {
        bail!(
            "the gallery {} holds faces embedded by another recogniser ({}, enrolled as {}); forget everyone or use that model",
            file.display(),
            r.recognizer.get(..12).unwrap_or(&r.recognizer),
            r.person
        );
    }
    let engine = engine::load(&model, &identity, ctx)?;
    for person in &people {
        let name = rows
            .iter()
            .find(|r| name_key(&r.person) == name_key(&person.name))
            .map_or(person.name.clone(), |r| r.person.clone());
        let known: std::collections::HashSet<&str> = rows
            .iter()
            .filter(|r| name_key(&r.person) == name_key(&name))
            .map(|r| r.photo_hash.as_str())
            .collect();
        let new: Vec<&ImageEntry> = person
            .images
            .iter()
            .filter(|i| !known.contains(i.hash.as_str()))
            .collect();
        done.known += person.images.len() - new.len();
        let found = embed_photos(engine.as_ref(), &new, &mut done.warnings)?;
        for (img, region) in found {
            let shown = folder
                .join(&person.name)
                .join(&img.rel)
                .display()
                .to_string();
            done.added.push((name.clone(), shown.clone()));
            rows.push(GalleryRow {
                person: name.clone(),
                photo: shown,
                photo_hash: img.hash.clone(),
                source: "photo".into(),
                score: region.score,
                sharpness: region.blur,
                recognizer: recognizer.clone(),
                added_at: crate::store::time_now().iso(),
                embedding: region.embedding.clone().unwrap_or_default(),
            });
        }
    }
    if !done.added.is_empty() {
        stored::write_gallery(&conn, &file, &rows)?;
    }
    done.people = people_counts(&rows);
    Ok(done)
}

/// Each person of the gallery rows with their photo count, in name order.
pub fn people_counts(rows: &[GalleryRow]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for r in rows {
        match out
            .iter_mut()
            .find(|(n, _)| name_key(n) == name_key(&r.person))
        {
            Some((_, c)) => *c += 1,
            None => out.push((r.person.clone(), 1)),
        }
    }
    out.sort_by_key(|(n, _)| name_key(n));
    out
}

/// The best face of each photo (the largest that counts), with a warning for a photo with
/// none or several.
fn embed_photos<'a>(
    engine: &dyn engine::Engine,
    images: &[&'a ImageEntry],
    warnings: &mut Vec<String>,
) -> Result<Vec<(&'a ImageEntry, crate::words::Region)>> {
    let owned: Vec<ImageEntry> = images.iter().map(|i| (*i).clone()).collect();
    let jobs: Vec<pipeline::Job> = (0..owned.len())
        .map(|i| pipeline::Job {
            key: i.to_string(),
            image: i,
        })
        .collect();
    let settings = pipeline::Settings {
        max_pixels: crate::config::resolve::DEFAULT_MAX_PIXELS,
        floor: 0.0,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        thumbs: None,
        vectors: false,
    };
    let mut out = Vec::new();
    pipeline::execute(engine, &jobs, &owned, &settings, |job, outcome| {
        let img = images[job.image];
        let shown = img.abs.display();
        match outcome {
            pipeline::Outcome::Done { regions, .. } => {
                let mut faces: Vec<_> = regions
                    .into_iter()
                    .filter(|r| r.skipped.is_none() && r.embedding.is_some())
                    .collect();
                faces.sort_by(|a, b| (b.w * b.h).total_cmp(&(a.w * a.h)));
                match faces.len() {
                    0 => warnings.push(format!(
                        "{shown}: no face found (or only small or blurry ones); skipped"
                    )),
                    1 => {}
                    n => warnings.push(format!("{shown}: {n} faces; enrolled the largest")),
                }
                if let Some(f) = faces.into_iter().next() {
                    out.push((img, f));
                }
            }
            pipeline::Outcome::Failed { stage, reason } => {
                warnings.push(format!("{shown}: {stage}: {reason}; skipped"));
            }
            pipeline::Outcome::Vector { .. } => {}
        }
        Ok(())
    })?;
    out.sort_by(|a, b| a.0.rel.cmp(&b.0.rel));
    Ok(out)
}

/// Removes a person (matched case-insensitively) from the gallery and the names of clusters;
/// returns the name as enrolled and how many photos went.
pub fn forget(project: &Project, name: &str) -> Result<(String, usize)> {
    let _lock = lock(project)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let file = stored::gallery_file(&project.state_dir());
    let rows = stored::read_gallery(&conn, &file)?;
    let key = name_key(name);
    let (gone, kept): (Vec<GalleryRow>, Vec<GalleryRow>) =
        rows.into_iter().partition(|r| name_key(&r.person) == key);
    let Some(first) = gone.first() else {
        let known: Vec<String> = people_counts(&kept).into_iter().map(|(n, _)| n).collect();
        bail!(
            "nobody called {name:?} is enrolled{}",
            if known.is_empty() {
                String::new()
            } else {
                format!(" (enrolled: {})", known.join(", "))
            }
        );
    };
    let shown = first.person.clone();
    stored::write_gallery(&conn, &file, &kept)?;
    clusters::unname(project, &shown)?;
    Ok((shown, gone.len()))
}

/// The gallery's people and photo counts.
pub fn list(project: &Project) -> Result<Vec<(String, usize)>> {
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let rows = stored::read_gallery(&conn, &stored::gallery_file(&project.state_dir()))?;
    Ok(people_counts(&rows))
}
