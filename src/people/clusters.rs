//! Clusters of unknown faces: made from a run's faces by `crate::faces::cluster`'s rule, kept
//! in `.iw-lab/faces/clusters.parquet` (the faces, their clusters and embeddings) and
//! `clusters.json` (the next free id and the names given), so ids stay
//! stable across runs; named (the cluster's faces enrolled as a person), merged and split.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::{faces_dir, lock};
use crate::config::Project;
use crate::faces::cluster::Params;
use crate::faces::name_key;
use crate::store::faces::{self as stored, ClusterFace, GalleryRow};
use crate::store::RunDir;

/// The small part of the state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub next_id: u32,
    /// Cluster id → the person it was named as.
    #[serde(default)]
    pub names: BTreeMap<u32, String>,
}

fn state_file(project: &Project) -> PathBuf {
    faces_dir(project).join("clusters.json")
}

fn faces_file(project: &Project) -> PathBuf {
    faces_dir(project).join("clusters.parquet")
}

/// Cluster ids stay below this (they are stored as 32-bit signed integers).
const MAX_ID: u32 = i32::MAX as u32;

/// The state with `next_id` past every id the faces file holds, so a state file lost,
/// edited, or left behind by a kill between the two files never hands out an id in use.
fn reconciled(mut state: State, faces: &[ClusterFace]) -> Result<State> {
    let top = faces.iter().filter_map(|f| f.cluster).max();
    if let Some(top) = top {
        state.next_id = state.next_id.max(top.saturating_add(1));
    }
    if state.next_id >= MAX_ID {
        bail!("cluster ids have reached {MAX_ID}; delete the cluster files under .iw-lab/faces to cluster afresh");
    }
    Ok(state)
}

fn load_state(project: &Project) -> Result<State> {
    let path = state_file(project);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is damaged (not the cluster state JSON); delete it and the clusters.parquet beside it to cluster afresh", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_state(project: &Project, state: &State) -> Result<()> {
    let path = state_file(project);
    crate::atomic::write(&path, &serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One cluster, for printing.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub id: u32,
    pub faces: usize,
    pub name: Option<String>,
    /// Up to five of its images.
    pub examples: Vec<String>,
}

/// What a clustering gave.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub clusters: Vec<Cluster>,
    /// Faces in no cluster.
    pub unclustered: usize,
    /// Faces this run added.
    pub new_faces: usize,
    pub params: Params,
}

/// The recogniser fingerprint of the run's `faces` model.
fn run_recognizer(run: &RunDir) -> Result<String> {
    let m = crate::store::Manifest::read(&run.manifest_path())?;
    m.models
        .values()
        .filter(|r| r.kind == "faces")
        .flat_map(|r| r.files.iter())
        .find(|f| f.role == "recognizer")
        .map(|f| f.blake3.clone())
        .with_context(|| format!("run {} has no `faces` model with a recogniser: its faces have no embeddings to cluster", run.id))
}

/// Clusters the unrecognised faces of `run` with those clustered before.
pub fn cluster(project: &Project, run: &RunDir, params: &Params) -> Result<Summary> {
    let recognizer = run_recognizer(run)?;
    let _lock = lock(project)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let mut faces = stored::read_cluster_faces(&conn, &faces_file(project))?;
    let mut state = reconciled(load_state(project)?, &faces)?;
    if let Some(f) = faces.iter().find(|f| f.recognizer != recognizer) {
        bail!("the faces clustered so far ({}) were embedded by another recogniser; delete {} to cluster afresh", f.path, faces_file(project).display());
    }
    let mut known: std::collections::HashSet<String> =
        faces.iter().map(|f| f.face.clone()).collect();
    let found = stored::read_faces(&conn, run, true)?;
    // A face any variant recognised is not unknown.
    let recognised: std::collections::HashSet<String> = found
        .iter()
        .filter(|r| r.person.is_some())
        .map(|r| r.key())
        .collect();
    let mut new_faces = 0;
    for r in found {
        let Some(embedding) = r.embedding.clone() else {
            continue;
        };
        let key = r.key();
        if r.skipped.is_some() || recognised.contains(&key) || !known.insert(key) {
            continue;
        }
        new_faces += 1;
        faces.push(ClusterFace {
            face: r.key(),
            run_id: run.id.clone(),
            path: r.path.clone(),
            image_hash: r.image_hash.clone(),
            bbox: r.bbox,
            cluster: None,
            recognizer: recognizer.clone(),
            embedding,
        });
    }
    faces.sort_by(|a, b| a.face.cmp(&b.face));
    let dim = faces.first().map_or(0, |f| f.embedding.len());
    if faces.iter().any(|f| f.embedding.len() != dim) {
        bail!(
            "the faces' embeddings differ in length; delete {} to cluster afresh",
            faces_file(project).display()
        );
    }
    if dim > 0 {
        let flat: Vec<f32> = faces
            .iter()
            .flat_map(|f| f.embedding.iter().copied())
            .collect();
        let previous: Vec<Option<u32>> = faces.iter().map(|f| f.cluster).collect();
        let out =
            crate::faces::cluster::cluster(&flat, dim, &previous, &mut state.next_id, params)?;
        for (f, c) in faces.iter_mut().zip(out) {
            f.cluster = c;
        }
    }
    // The state first: a kill between the two leaves a higher next id, which is harmless.
    save_state(project, &state)?;
    stored::write_cluster_faces(&conn, &faces_file(project), &faces)?;
    Ok(summarise(&faces, &state, new_faces, params))
}

fn summarise(faces: &[ClusterFace], state: &State, new_faces: usize, params: &Params) -> Summary {
    let mut by: BTreeMap<u32, Vec<&ClusterFace>> = BTreeMap::new();
    for f in faces {
        if let Some(c) = f.cluster {
            by.entry(c).or_default().push(f);
        }
    }
    let mut clusters: Vec<Cluster> = by
        .into_iter()
        .map(|(id, fs)| {
            let mut examples: Vec<String> = fs.iter().map(|f| f.path.clone()).collect();
            examples.dedup();
            examples.truncate(5);
            Cluster {
                id,
                faces: fs.len(),
                name: state.names.get(&id).cloned(),
                examples,
            }
        })
        .collect();
    clusters.sort_by(|a, b| b.faces.cmp(&a.faces).then(a.id.cmp(&b.id)));
    Summary {
        unclustered: faces.iter().filter(|f| f.cluster.is_none()).count(),
        clusters,
        new_faces,
        params: *params,
    }
}

/// The current clusters.
pub fn list(project: &Project) -> Result<Summary> {
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let faces = stored::read_cluster_faces(&conn, &faces_file(project))?;
    Ok(summarise(
        &faces,
        &load_state(project)?,
        0,
        &Params::default(),
    ))
}

fn need_cluster(faces: &[ClusterFace], id: u32) -> Result<()> {
    if !faces.iter().any(|f| f.cluster == Some(id)) {
        bail!("there is no cluster {id}; `iw-lab faces clusters` lists them");
    }
    Ok(())
}

/// Enrols cluster `id`'s faces as `name` (a new person, or more faces of an enrolled one).
/// Returns the name as the gallery spells it and the faces added.
pub fn name(project: &Project, id: u32, name: &str) -> Result<(String, usize)> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        bail!("{name:?} is not a usable person name");
    }
    let _lock = lock(project)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let faces = stored::read_cluster_faces(&conn, &faces_file(project))?;
    need_cluster(&faces, id)?;
    let gallery = stored::gallery_file(&project.state_dir());
    let mut rows = stored::read_gallery(&conn, &gallery)?;
    let members: Vec<&ClusterFace> = faces.iter().filter(|f| f.cluster == Some(id)).collect();
    if let Some(r) = rows.iter().find(|r| r.recognizer != members[0].recognizer) {
        bail!("the gallery's faces (such as {}'s) were embedded by another recogniser than this cluster's", r.person);
    }
    let shown = rows
        .iter()
        .find(|r| name_key(&r.person) == name_key(name))
        .map_or(name.to_string(), |r| r.person.clone());
    let source = format!("cluster:{id}");
    // Naming again renames: the cluster's enrolled faces are this person now.
    for r in rows.iter_mut().filter(|r| r.source == source) {
        r.person = shown.clone();
    }
    let before = rows.len();
    for f in &members {
        if rows.iter().any(|r| {
            r.source == source
                && r.photo_hash == f.image_hash
                && r.photo == f.path
                && r.embedding == f.embedding
        }) {
            continue;
        }
        rows.push(GalleryRow {
            person: shown.clone(),
            photo: f.path.clone(),
            photo_hash: f.image_hash.clone(),
            source: source.clone(),
            score: 1.0,
            sharpness: None,
            recognizer: f.recognizer.clone(),
            added_at: crate::store::time_now().iso(),
            embedding: f.embedding.clone(),
        });
    }
    let added = rows.len() - before;
    stored::write_gallery(&conn, &gallery, &rows)?;
    let mut state = load_state(project)?;
    state.names.insert(id, shown.clone());
    save_state(project, &state)?;
    Ok((shown, added))
}

/// Moves every face of cluster `from` into cluster `into`; returns how many moved.
pub fn merge(project: &Project, into: u32, from: u32) -> Result<usize> {
    if into == from {
        bail!("cannot merge cluster {into} with itself");
    }
    let _lock = lock(project)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let mut faces = stored::read_cluster_faces(&conn, &faces_file(project))?;
    need_cluster(&faces, into)?;
    need_cluster(&faces, from)?;
    let mut moved = 0;
    for f in faces.iter_mut().filter(|f| f.cluster == Some(from)) {
        f.cluster = Some(into);
        moved += 1;
    }
    let mut state = load_state(project)?;
    if let Some(n) = state.names.remove(&from) {
        state.names.entry(into).or_insert(n);
    }
    // Faces enrolled from the merged cluster belong to the cluster they joined, and to its
    // person when it has one.
    let person = state.names.get(&into).cloned();
    let (old, new) = (format!("cluster:{from}"), format!("cluster:{into}"));
    edit_gallery(&conn, project, |rows| {
        for r in rows.iter_mut().filter(|r| r.source == old) {
            r.source = new.clone();
            if let Some(p) = &person {
                r.person = p.clone();
            }
        }
    })?;
    save_state(project, &state)?;
    stored::write_cluster_faces(&conn, &faces_file(project), &faces)?;
    Ok(moved)
}

/// Rewrites the gallery through `edit`, when it changed anything.
fn edit_gallery(
    conn: &crate::store::duck::Connection<'_>,
    project: &Project,
    edit: impl FnOnce(&mut Vec<GalleryRow>),
) -> Result<()> {
    let file = stored::gallery_file(&project.state_dir());
    let mut rows = stored::read_gallery(conn, &file)?;
    let before = rows.clone();
    edit(&mut rows);
    if rows != before {
        stored::write_gallery(conn, &file, &rows)?;
    }
    Ok(())
}

/// Splits cluster `id` by clustering its faces again with `max_distance` (tighter than the
/// one that made it): the largest part keeps the id, the others get new ids, and faces that
/// fit no part leave the cluster. Returns the resulting clusters' ids and sizes.
pub fn split(project: &Project, id: u32, max_distance: f32) -> Result<Vec<(u32, usize)>> {
    let _lock = lock(project)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let mut faces = stored::read_cluster_faces(&conn, &faces_file(project))?;
    need_cluster(&faces, id)?;
    let members: Vec<usize> = (0..faces.len())
        .filter(|&i| faces[i].cluster == Some(id))
        .collect();
    let dim = faces[members[0]].embedding.len();
    let flat: Vec<f32> = members
        .iter()
        .flat_map(|&i| faces[i].embedding.iter().copied())
        .collect();
    let params = Params {
        max_distance,
        min_faces: 2,
    };
    let mut local = 0u32;
    let parts = crate::faces::cluster::cluster(&flat, dim, &[], &mut local, &params)?;
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for p in parts.iter().flatten() {
        *sizes.entry(*p).or_default() += 1;
    }
    let largest = sizes
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(k, _)| *k);
    let mut state = reconciled(load_state(project)?, &faces)?;
    let mut ids: BTreeMap<u32, u32> = BTreeMap::new();
    for part in sizes.keys() {
        let new = if Some(*part) == largest {
            id
        } else {
            let n = state.next_id;
            state.next_id = n.saturating_add(1);
            n
        };
        ids.insert(*part, new);
    }
    for (&i, part) in members.iter().zip(&parts) {
        faces[i].cluster = part.and_then(|p| ids.get(&p).copied());
    }
    // Faces that left a named cluster leave its person too.
    let source = format!("cluster:{id}");
    let gone: Vec<(&str, &[f32])> = members
        .iter()
        .filter(|&&i| faces[i].cluster != Some(id))
        .map(|&i| (faces[i].path.as_str(), faces[i].embedding.as_slice()))
        .collect();
    edit_gallery(&conn, project, |rows| {
        rows.retain(|r| {
            r.source != source || !gone.iter().any(|(p, e)| r.photo == *p && r.embedding == *e)
        })
    })?;
    save_state(project, &state)?;
    stored::write_cluster_faces(&conn, &faces_file(project), &faces)?;
    Ok(sizes.iter().map(|(p, n)| (ids[p], *n)).collect())
}

/// Forgets a person's name on the clusters named after it.
pub fn unname(project: &Project, person: &str) -> Result<()> {
    let mut state = load_state(project)?;
    let before = state.names.len();
    state.names.retain(|_, n| name_key(n) != name_key(person));
    if state.names.len() != before {
        save_state(project, &state)?;
    }
    Ok(())
}
