//! The project's face gallery (`.iw-lab/faces/gallery.parquet`: one row per enrolled photo)
//! and the faces a run's detector found (its `regions` table), read for enrolment,
//! recognition and clustering. Schema in `docs/faces.md`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::duck::{path_list, path_lit, Connection};
use super::lookup::parse_float_list;
use super::writer::{float_list, write_table_as};
use super::RunDir;
use crate::faces::{name_key, Gallery, Person};

/// Columns of the gallery file.
pub const GALLERY_SCHEMA: &str = "person VARCHAR, photo VARCHAR, photo_hash VARCHAR, source VARCHAR, score FLOAT, sharpness FLOAT, recognizer VARCHAR, added_at VARCHAR, embedding FLOAT[]";

/// One enrolled face.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryRow {
    /// The person's name as enrolled.
    pub person: String,
    /// The photo it came from (as given), or the run image for a named cluster.
    pub photo: String,
    pub photo_hash: String,
    /// `photo` (enrolled from a folder) or `cluster:N` (a named cluster).
    pub source: String,
    pub score: f32,
    pub sharpness: Option<f32>,
    /// The fingerprint (BLAKE3) of the recogniser that made the embedding.
    pub recognizer: String,
    pub added_at: String,
    pub embedding: Vec<f32>,
}

/// The embeddings are appended as text and written as lists of floats.
const AS_LIST: &str = "REPLACE (embedding::FLOAT[] AS embedding)";

/// Where a project's gallery lives.
pub fn gallery_file(state_dir: &Path) -> PathBuf {
    state_dir.join("faces").join("gallery.parquet")
}

/// The gallery's rows (none when the file does not exist), in file order.
pub fn read_gallery(conn: &Connection<'_>, file: &Path) -> Result<Vec<GalleryRow>> {
    if !file.is_file() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT person, photo, photo_hash, source, score, sharpness, recognizer, added_at, embedding::VARCHAR FROM read_parquet({})",
        path_lit(file)
    );
    let mut out = Vec::new();
    conn.query(&sql)
        .with_context(|| format!("reading the face gallery {}", file.display()))?
        .for_each_row(|r| {
            out.push(GalleryRow {
                person: r.str(0)?.unwrap_or_default().to_string(),
                photo: r.str(1)?.unwrap_or_default().to_string(),
                photo_hash: r.str(2)?.unwrap_or_default().to_string(),
                source: r.str(3)?.unwrap_or_default().to_string(),
                score: r.f64(4)?.unwrap_or(0.0) as f32,
                sharpness: r.f64(5)?.map(|v| v as f32),
                recognizer: r.str(6)?.unwrap_or_default().to_string(),
                added_at: r.str(7)?.unwrap_or_default().to_string(),
                embedding: r.str(8)?.map(parse_float_list).unwrap_or_default(),
            });
            Ok(())
        })
        .with_context(|| format!("reading the face gallery {}", file.display()))?;
    Ok(out)
}

/// Writes the whole gallery atomically (a reader sees the old file or the new one).
pub fn write_gallery(conn: &Connection<'_>, file: &Path, rows: &[GalleryRow]) -> Result<()> {
    write_table_as(
        conn,
        file,
        &GALLERY_SCHEMA.replace("FLOAT[]", "VARCHAR"),
        AS_LIST,
        |app| {
            for r in rows {
                app.str(&r.person)?
                    .str(&r.photo)?
                    .str(&r.photo_hash)?
                    .str(&r.source)?
                    .f32(r.score)?;
                match r.sharpness {
                    Some(s) => app.f32(s)?,
                    None => app.null()?,
                };
                app.str(&r.recognizer)?
                    .str(&r.added_at)?
                    .str(&float_list(&r.embedding))?;
                app.end_row()?;
            }
            Ok(())
        },
    )
    .with_context(|| format!("writing the face gallery {}", file.display()))
}

/// The people of `rows`, grouped case-insensitively under the first spelling enrolled, in
/// name order; `None` when there are none.
pub fn gallery_of(rows: &[GalleryRow]) -> Option<Gallery> {
    let mut people: Vec<Person> = Vec::new();
    for r in rows {
        let key = name_key(&r.person);
        match people.iter_mut().find(|p| name_key(&p.name) == key) {
            Some(p) => p.embeddings.push(r.embedding.clone()),
            None => people.push(Person {
                name: r.person.clone(),
                embeddings: vec![r.embedding.clone()],
            }),
        }
    }
    people.sort_by_key(|p| name_key(&p.name));
    let recognizer = rows.first()?.recognizer.clone();
    Some(Gallery { people, recognizer })
}

/// The project's gallery, if it has one.
pub fn load_gallery(state_dir: &Path) -> Result<Option<Gallery>> {
    let file = gallery_file(state_dir);
    if !file.is_file() {
        return Ok(None);
    }
    let db = super::open_db()?;
    let conn = db.connect()?;
    Ok(gallery_of(&read_gallery(&conn, &file)?))
}

/// One face of a run's `regions` table.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRow {
    pub variant: String,
    pub path: String,
    pub image_hash: String,
    pub region: u32,
    pub bbox: [f32; 4],
    pub score: f32,
    pub blur: Option<f32>,
    pub person: Option<String>,
    pub skipped: Option<String>,
    pub embedding: Option<Vec<f32>>,
    /// The upright image's size the box is in (`None` in regions written before it was kept).
    pub frame: Option<(u32, u32)>,
}

impl FaceRow {
    /// A stable key of the face: its image's content and its box in whole pixels (one face
    /// found by two variants of one detector is one face).
    pub fn key(&self) -> String {
        let [x, y, w, h] = self.bbox.map(|v| v.round() as i64);
        format!("{}:{x},{y},{w},{h}", self.image_hash)
    }
}

/// The faces a run found, in path and region order (one row per image and region, whatever
/// the repeats).
/// `embeddings` false leaves them out (cheaper, for drawing boxes).
pub fn read_faces(conn: &Connection<'_>, run: &RunDir, embeddings: bool) -> Result<Vec<FaceRow>> {
    let parts = run.parts("regions");
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let embedding = if embeddings {
        "any_value(embedding::VARCHAR)"
    } else {
        "NULL::VARCHAR"
    };
    let sql = format!(
        "SELECT variant, path, any_value(image_hash), region, any_value(x), any_value(y), any_value(w), any_value(h),
                any_value(score), any_value(blur), any_value(person), any_value(skipped), {embedding},
                any_value(image_w), any_value(image_h)
         FROM (SELECT * FROM read_parquet({}, union_by_name = true) UNION ALL BY NAME {})
         GROUP BY variant, path, region ORDER BY path, variant, region",
        path_list(&parts),
        super::tables::empty_select(super::writer::REGIONS_SCHEMA)
    );
    let mut out = Vec::new();
    conn.query(&sql)?.for_each_row(|r| {
        let f = |i| -> super::duck::Result<f32> { Ok(r.f64(i)?.unwrap_or(0.0) as f32) };
        out.push(FaceRow {
            variant: r.str(0)?.unwrap_or_default().to_string(),
            path: r.str(1)?.unwrap_or_default().to_string(),
            image_hash: r.str(2)?.unwrap_or_default().to_string(),
            region: r.i64(3)?.unwrap_or(0).max(0) as u32,
            bbox: [f(4)?, f(5)?, f(6)?, f(7)?],
            score: f(8)?,
            blur: r.f64(9)?.map(|v| v as f32),
            person: r.str(10)?.map(str::to_string),
            skipped: r.str(11)?.map(str::to_string),
            embedding: r.str(12)?.map(parse_float_list),
            frame: match (r.i64(13)?, r.i64(14)?) {
                (Some(w), Some(h)) if w > 0 && h > 0 => Some((w as u32, h as u32)),
                _ => None,
            },
        });
        Ok(())
    })?;
    Ok(out)
}

/// Columns of the clustered faces file (`.iw-lab/faces/clusters.parquet`).
pub const CLUSTER_FACES_SCHEMA: &str = "face VARCHAR, run_id VARCHAR, path VARCHAR, image_hash VARCHAR, x FLOAT, y FLOAT, w FLOAT, h FLOAT, cluster INTEGER, recognizer VARCHAR, embedding FLOAT[]";

/// One face clustering has seen: its key, where it is, its cluster (none: noise).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterFace {
    pub face: String,
    pub run_id: String,
    pub path: String,
    pub image_hash: String,
    pub bbox: [f32; 4],
    pub cluster: Option<u32>,
    pub recognizer: String,
    pub embedding: Vec<f32>,
}

/// The clustered faces (none when the file does not exist).
pub fn read_cluster_faces(conn: &Connection<'_>, file: &Path) -> Result<Vec<ClusterFace>> {
    if !file.is_file() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT face, run_id, path, image_hash, x, y, w, h, cluster, recognizer, embedding::VARCHAR FROM read_parquet({}) ORDER BY face",
        path_lit(file)
    );
    let mut out = Vec::new();
    conn.query(&sql)
        .with_context(|| format!("reading {}", file.display()))?
        .for_each_row(|r| {
            let f = |i| -> super::duck::Result<f32> { Ok(r.f64(i)?.unwrap_or(0.0) as f32) };
            out.push(ClusterFace {
                face: r.str(0)?.unwrap_or_default().to_string(),
                run_id: r.str(1)?.unwrap_or_default().to_string(),
                path: r.str(2)?.unwrap_or_default().to_string(),
                image_hash: r.str(3)?.unwrap_or_default().to_string(),
                bbox: [f(4)?, f(5)?, f(6)?, f(7)?],
                cluster: r.i64(8)?.and_then(|c| u32::try_from(c).ok()),
                recognizer: r.str(9)?.unwrap_or_default().to_string(),
                embedding: r.str(10)?.map(parse_float_list).unwrap_or_default(),
            });
            Ok(())
        })
        .with_context(|| format!("reading {}", file.display()))?;
    Ok(out)
}

/// Writes the clustered faces atomically.
pub fn write_cluster_faces(conn: &Connection<'_>, file: &Path, rows: &[ClusterFace]) -> Result<()> {
    write_table_as(
        conn,
        file,
        &CLUSTER_FACES_SCHEMA.replace("FLOAT[]", "VARCHAR"),
        AS_LIST,
        |app| {
            for r in rows {
                app.str(&r.face)?
                    .str(&r.run_id)?
                    .str(&r.path)?
                    .str(&r.image_hash)?;
                for v in r.bbox {
                    app.f32(v)?;
                }
                app.opt_i32(r.cluster)?
                    .str(&r.recognizer)?
                    .str(&float_list(&r.embedding))?;
                app.end_row()?;
            }
            Ok(())
        },
    )
    .with_context(|| format!("writing {}", file.display()))
}
