//! The grid every listing mode shares (filter, sort, group, page, tag counts, facets,
//! autocomplete, export), and browsing a plain folder (`iw-lab serve FOLDER`): its images,
//! their generation metadata and their `.txt` tags, editable with versions like any sidecar.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::answer::{ApiError, ApiResult, Body, P, Q};
use super::tagfile::{self, Change, Writer};
use super::{App, Mode};
use crate::dataset::ImageEntry;
use crate::store::duck::Database;
use crate::store::studio::{self as grid, Filter, Group, ItemRow, Sort};

/// Images loaded into the listing tables, by id (the index into `files`).
pub struct Listing {
    db: Database,
    /// Per id: (root number, path relative to that root, content hash).
    pub files: Vec<(usize, String, String)>,
    /// (root, path) → id.
    index: std::collections::HashMap<(usize, String), usize>,
    /// Per id (as rows come in): what a duplicate group's keeper is chosen by.
    pub facts: Vec<Facts>,
    /// Perceptual hashes and embeddings of the listed images, once asked for.
    pub looks: super::looks::Looks,
}

/// What the keeper of a duplicate group is chosen by.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<String>,
    /// The file carries generation metadata.
    pub has_meta: bool,
}

impl Listing {
    /// An empty listing of `files` (ids are their index), with tag categories (normalised tag,
    /// category). Rows come with [`Listing::append`], then [`Listing::finish`].
    pub fn new(
        files: Vec<(usize, String, String)>,
        categories: &[(String, String)],
    ) -> anyhow::Result<Listing> {
        let db = crate::store::open_db()?;
        {
            let conn = db.connect()?;
            grid::create(&conn)?;
            grid::load_categories(&conn, categories)?;
        }
        let index = files
            .iter()
            .enumerate()
            .map(|(id, (root, rel, _))| ((*root, rel.clone()), id))
            .collect();
        Ok(Listing {
            db,
            facts: vec![Facts::default(); files.len()],
            files,
            index,
            looks: Default::default(),
        })
    }

    /// Adds rows (in chunks, so a large folder is never all in memory twice).
    pub fn append(&mut self, rows: &[ItemRow]) -> anyhow::Result<()> {
        for r in rows {
            if let Some(f) = usize::try_from(r.id)
                .ok()
                .and_then(|i| self.facts.get_mut(i))
            {
                *f = Facts {
                    width: r.width,
                    height: r.height,
                    format: r.format.clone(),
                    has_meta: r.generator.is_some(),
                };
            }
        }
        let conn = self.db.connect()?;
        grid::load(&conn, rows)
    }

    /// Counts the tags, once every row is in.
    pub fn finish(&self) -> anyhow::Result<()> {
        let conn = self.db.connect()?;
        grid::summarise(&conn)
    }

    /// Whether the listing holds `rel` under root `root`.
    pub fn has(&self, root: usize, rel: &str) -> bool {
        self.index.contains_key(&(root, rel.to_string()))
    }

    /// Runs `f` on a fresh connection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&crate::store::duck::Connection<'_>) -> anyhow::Result<T>,
    ) -> ApiResult<T> {
        let conn = self.db.connect().map_err(ApiError::internal)?;
        f(&conn).map_err(|e| ApiError::internal(format!("{e:#}")))
    }

    pub fn file(&self, id: i64) -> ApiResult<&(usize, String, String)> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.files.get(i))
            .ok_or_else(|| ApiError::not_found(format!("no image {id}")))
    }
}

/// The listing of the mode being served.
pub fn listing(mode: &Mode) -> ApiResult<&Listing> {
    match mode {
        Mode::Browse(b) => Ok(&b.listing),
        Mode::Review(r) => Ok(r.listing()),
        Mode::Tag(_) | Mode::Pick => Err(ApiError::not_found("no grid is being served")),
    }
}

/// A folder being browsed.
pub struct Browse {
    pub root: PathBuf,
    pub listing: Listing,
    separator: String,
    writer: Writer,
}

pub use crate::config::resolve::folder_dataset;

/// One listing row from a scanned image and its tags (as written).
pub fn item_row(id: usize, img: &ImageEntry, tags: &[String]) -> ItemRow {
    let meta = img.meta.as_deref();
    ItemRow {
        id: id as i64,
        path: img.rel.clone(),
        hash: Some(img.hash.clone()),
        width: img.width,
        height: img.height,
        format: img.format.clone(),
        generator: meta.and_then(|m| m.generator.clone()),
        sampler: meta.and_then(|m| m.sampler.clone()),
        model: meta.and_then(|m| m.model.clone()),
        loras: meta
            .map(|m| m.loras.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default(),
        error: img
            .format
            .is_none()
            .then(|| "not an image iw-lab can read".to_string()),
        tags: tags
            .iter()
            .map(|t| t.replace(char::is_control, "\u{fffd}"))
            .filter_map(|t| crate::tags::normalise(&t).map(|k| (k, t)))
            .collect(),
        flags: Vec::new(),
        values: Vec::new(),
    }
}

impl Browse {
    /// Scans `root` (hashes cached in the project's index) and loads the listing.
    pub fn open(root: PathBuf, state_dir: &Path, separator: String) -> anyhow::Result<Browse> {
        let ds = folder_dataset(&root);
        let scan = crate::dataset::scan::scan(&ds, state_dir, None)?;
        for (file, why) in &scan.unreadable {
            crate::ui::warn(format!("{file}: {why}"));
        }
        let files = scan
            .images
            .iter()
            .map(|img| (0, img.rel.clone(), img.hash.clone()))
            .collect();
        let mut listing = Listing::new(files, &[])?;
        let mut id = 0;
        for chunk in scan.images.chunks(4096) {
            let first = id;
            let rows: Vec<ItemRow> = chunk
                .iter()
                .map(|img| {
                    let tags = sidecar(&root, &img.rel)
                        .and_then(|p| tagfile::read(&p, &separator).ok())
                        .map(|f| f.tags)
                        .unwrap_or_default();
                    id += 1;
                    item_row(id - 1, img, &tags)
                })
                .collect();
            listing.append(&rows)?;
            // Any generation metadata counts, not only a known generator (as `iw-lab dupes`).
            for (f, img) in listing.facts[first..].iter_mut().zip(chunk) {
                f.has_meta = img.meta.is_some();
            }
        }
        drop(scan);
        listing.finish()?;
        let key = blake3::hash(root.to_string_lossy().as_bytes()).to_hex();
        let logs = state_dir.join("studio");
        std::fs::create_dir_all(&logs)?;
        Ok(Browse {
            writer: Writer::new(logs.join(format!("edits-{}.jsonl", &key[..12]))),
            root,
            listing,
            separator,
        })
    }

    pub fn info(&self) -> Value {
        json!({"root": self.root.display().to_string(), "images": self.listing.files.len(),
               "edit_log": self.writer.log_path().display().to_string()})
    }
}

/// The `.txt` beside an image (`stem.txt`, else `name.ext.txt`; the first when neither exists).
pub fn sidecar(root: &Path, rel: &str) -> Option<PathBuf> {
    let c = crate::dataset::ground_truth::sidecar_candidates(root, None, rel, "txt");
    c.iter().find(|p| p.is_file()).or(c.first()).cloned()
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/grid/page", get(page))
        .route("/api/grid/tags", get(tags))
        .route("/api/grid/facets", get(facets))
        .route("/api/grid/complete", get(complete))
        .route("/api/grid/export", get(export))
        .route("/api/browse/items/{id}", get(item).put(save))
}

/// The grid's query string.
#[derive(Debug, Default, Deserialize)]
pub struct GridQuery {
    /// Tags: `cat dog -outdoors` (underscores or spaces; `-` excludes).
    pub q: Option<String>,
    /// `any` or `all` (default) of the tags.
    pub mode: Option<String>,
    pub generator: Option<String>,
    pub sampler: Option<String>,
    pub model: Option<String>,
    pub lora: Option<String>,
    pub folder: Option<String>,
    /// Comma-separated flags: `error`, `failed`, `disagree`.
    pub flags: Option<String>,
    pub name: Option<String>,
    /// `name`, `tags` (most first), `shared:<id>` (most shared first), `f1` (worst first),
    /// `score:<tag>` (highest first).
    pub sort: Option<String>,
    /// `none`, `tag`, `category:NAME`, `sampler`, `generator`, `model`, `lora`, `folder`.
    pub group: Option<String>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

/// Refuses text with control characters (a NUL cannot reach SQL, a newline means nothing in a
/// filter).
fn plain(what: &str, s: &Option<String>) -> ApiResult<()> {
    match s {
        Some(v) if v.chars().any(char::is_control) => {
            Err(ApiError::bad(format!("`{what}` holds a control character")))
        }
        _ => Ok(()),
    }
}

impl GridQuery {
    pub fn filter(&self) -> ApiResult<Filter> {
        for (what, v) in [
            ("q", &self.q),
            ("generator", &self.generator),
            ("sampler", &self.sampler),
            ("model", &self.model),
            ("lora", &self.lora),
            ("folder", &self.folder),
            ("name", &self.name),
            ("sort", &self.sort),
        ] {
            plain(what, v)?;
        }
        let mut f = Filter {
            any: match self.mode.as_deref() {
                None | Some("all") | Some("") => false,
                Some("any") => true,
                Some(m) => return Err(ApiError::bad(format!("mode {m:?}: use any or all"))),
            },
            generator: nonempty(&self.generator),
            sampler: nonempty(&self.sampler),
            model: nonempty(&self.model),
            lora: nonempty(&self.lora),
            folder: nonempty(&self.folder),
            name: nonempty(&self.name),
            ..Filter::default()
        };
        for word in self.q.as_deref().unwrap_or("").split_whitespace() {
            let (neg, raw) = match word.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, word),
            };
            let Some(tag) = crate::tags::normalise(raw) else {
                continue;
            };
            if neg {
                f.without.push(tag);
            } else {
                f.tags.push(tag);
            }
        }
        for flag in self.flags.as_deref().unwrap_or("").split(',') {
            match flag.trim() {
                "" => {}
                x @ ("error" | "failed" | "disagree") => f.flags.push(x.to_string()),
                x => {
                    return Err(ApiError::bad(format!(
                        "flag {x:?}: use error, failed or disagree"
                    )))
                }
            }
        }
        Ok(f)
    }

    pub fn sort(&self) -> ApiResult<Sort> {
        let s = self.sort.as_deref().unwrap_or("name");
        Ok(match s {
            "name" | "" => Sort::Name,
            "tags" => Sort::TagCount,
            "f1" => Sort::Value {
                key: "f1".into(),
                ascending: true,
            },
            _ => {
                if let Some(id) = s.strip_prefix("shared:") {
                    Sort::Shared(
                        id.parse()
                            .map_err(|_| ApiError::bad(format!("sort {s:?}: shared:<image id>")))?,
                    )
                } else if let Some(tag) = s.strip_prefix("score:") {
                    let tag = crate::tags::normalise(tag)
                        .ok_or_else(|| ApiError::bad("sort score: needs a tag"))?;
                    Sort::Value {
                        key: format!("score:{tag}"),
                        ascending: false,
                    }
                } else {
                    return Err(ApiError::bad(format!(
                        "sort {s:?}: use name, tags, f1, score:<tag> or shared:<id>"
                    )));
                }
            }
        })
    }

    pub fn group(&self) -> ApiResult<Group> {
        Ok(match self.group.as_deref().unwrap_or("none") {
            "none" | "" => Group::None,
            "tag" => Group::DominantTag,
            "sampler" => Group::Sampler,
            "generator" => Group::Generator,
            "model" => Group::Model,
            "lora" => Group::Lora,
            "folder" => Group::Folder,
            g if g.starts_with("category:") => {
                let c = &g["category:".len()..];
                if crate::config::Category::parse(c).is_none() {
                    return Err(ApiError::bad(format!(
                        "group {g:?}: the category is one of general, character, rating, artist, copyright, meta"
                    )));
                }
                Group::Category(c.to_string())
            }
            g => {
                return Err(ApiError::bad(format!(
                    "group {g:?}: use none, tag, sampler, generator, model, lora or folder"
                )))
            }
        })
    }
}

pub async fn page(State(app): State<Arc<App>>, Q(q): Q<GridQuery>) -> ApiResult<Json<Value>> {
    let (f, s, g) = (q.filter()?, q.sort()?, q.group()?);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0).min(1 << 40);
    let app2 = app.clone();
    let page = tokio::task::spawn_blocking(move || {
        let mode = app2.mode();
        let l = listing(&mode)?;
        l.with(|c| grid::page(c, &f, &s, g, (offset, limit), 12))
    })
    .await
    .map_err(ApiError::internal)??;
    let mode = app.mode();
    let l = listing(&mode)?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|it| {
            let (root, rel) = l
                .file(it.id)
                .map(|(r, p, _)| (*r, p.clone()))
                .unwrap_or((0, it.path.clone()));
            let mut v = serde_json::to_value(it).unwrap_or_default();
            v["thumb"] = json!(format!(
                "/thumbs/{root}/{}",
                super::tagging::encode_path(&rel)
            ));
            v
        })
        .collect();
    Ok(Json(
        json!({"total": page.total, "offset": offset, "items": items}),
    ))
}

pub async fn tags(State(app): State<Arc<App>>, Q(q): Q<GridQuery>) -> ApiResult<Json<Value>> {
    let f = q.filter()?;
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let rows = tokio::task::spawn_blocking(move || {
        listing(&app.mode())?.with(|c| grid::tag_counts(c, &f, limit))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({ "tags": rows })))
}

pub async fn facets(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let f = tokio::task::spawn_blocking(move || listing(&app.mode())?.with(grid::facets))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!(f)))
}

#[derive(Deserialize)]
pub struct CompleteQuery {
    q: String,
    limit: Option<u64>,
}

pub async fn complete(
    State(app): State<Arc<App>>,
    Q(q): Q<CompleteQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(20).clamp(1, 200);
    plain("q", &Some(q.q.clone()))?;
    let key = crate::tags::normalise(&q.q).unwrap_or_default();
    let rows = tokio::task::spawn_blocking(move || {
        listing(&app.mode())?.with(|c| grid::complete(c, &key, limit))
    })
    .await
    .map_err(ApiError::internal)??;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(t, n)| json!({"tag": t, "count": n}))
        .collect();
    Ok(Json(json!({ "tags": list })))
}

/// The filtered selection as a prompt for generation UIs (its most frequent tags, and the
/// excluded ones as the negative) and as a file list.
pub async fn export(State(app): State<Arc<App>>, Q(q): Q<GridQuery>) -> ApiResult<Json<Value>> {
    let f = q.filter()?;
    let without = f.without.clone();
    let (counts, paths) = tokio::task::spawn_blocking(move || {
        listing(&app.mode())?
            .with(|c| Ok((grid::tag_counts(c, &f, 40)?, grid::paths(c, &f, 100_000)?)))
    })
    .await
    .map_err(ApiError::internal)??;
    let total = paths.len().max(1) as f64;
    // Tags on at least a third of the selection make the prompt, most frequent first.
    let positive: Vec<String> = counts
        .iter()
        .filter(|c| c.count as f64 / total >= 1.0 / 3.0)
        .map(|c| c.tag.clone())
        .collect();
    Ok(Json(json!({
        "positive": positive.join(", "),
        "negative": without.join(", "),
        "files": paths,
    })))
}

fn browsing(mode: &Mode) -> ApiResult<&Browse> {
    match mode {
        Mode::Browse(b) => Ok(b),
        _ => Err(ApiError::not_found("the studio is not browsing a folder")),
    }
}

/// One image of a browsed folder: its file, metadata and `.txt` tags with their version.
pub async fn item(State(app): State<Arc<App>>, P(id): P<i64>) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let b = browsing(&mode)?;
    let (_, rel, hash) = b.listing.file(id)?.clone();
    let path = b.root.join(crate::dataset::names::rel_path(&rel));
    let mut v = json!({
        "id": id, "path": rel, "hash": hash,
        "url": format!("/files/0/{}", super::tagging::encode_path(&rel)),
    });
    let meta = std::fs::read(&path).ok().and_then(|bytes| {
        crate::dataset::ImageMeta::read(&bytes, crate::config::resolve::DEFAULT_MAX_PIXELS)
    });
    v["meta"] = json!(meta);
    if let Some(txt) = sidecar(&b.root, &rel) {
        v["txt"] = json!(txt
            .strip_prefix(&b.root)
            .map(|p| p.display().to_string())
            .unwrap_or_default());
        match tagfile::read(&txt, &b.separator) {
            Ok(f) => {
                v["tags"] = json!(f.tags);
                v["version"] = json!(f.version);
            }
            Err(e) => v["error"] = json!(e.to_string()),
        }
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveBody {
    tags: Vec<String>,
    version: String,
}

/// Saves a browsed image's `.txt` tags when still at the version the edit was made on.
pub async fn save(
    State(app): State<Arc<App>>,
    P(id): P<i64>,
    Body(body): Body<SaveBody>,
) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let b = browsing(&mode)?;
    let (_, rel, _) = b.listing.file(id)?.clone();
    let txt =
        sidecar(&b.root, &rel).ok_or_else(|| ApiError::bad("this image has no sidecar path"))?;
    let sep = b.separator.clone();
    let tags = tagfile::check_tags(&body.tags, &sep).map_err(|e| ApiError::bad(e.to_string()))?;
    let old = tagfile::read(&txt, &sep).map_err(super::tagging::conflict_or_error)?;
    let content = tagfile::render(&tags, &sep);
    let rel_txt = txt
        .strip_prefix(&b.root)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let version = b
        .writer
        .write_if(
            Change {
                path: &txt,
                rel: &rel_txt,
                expected: &body.version,
                content: content.as_bytes(),
                old: old.tags,
                new: tags.clone(),
                action: "tag",
            },
            |p| tagfile::read(p, &sep),
        )
        .map_err(super::tagging::conflict_or_error)?;
    let keyed: Vec<(String, String)> = tags
        .iter()
        .filter_map(|t| crate::tags::normalise(t).map(|k| (k, t.clone())))
        .collect();
    b.listing.with(|c| grid::set_tags(c, id, &keyed))?;
    Ok(Json(json!({"tags": tags, "version": version})))
}
