//! Hand-tagging endpoints (`iw-lab serve --tag FOLDER`): the session, one image's tags, saving
//! them with the version they were made on, the tags used so far, and a model's suggestions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::answer::{ApiError, ApiResult, Body, P, Q};
use super::session::{self, Counts, Session};
use super::tagfile::{self, Change, TagFileError, Writer};
use super::{App, Mode};

/// Suggests tags for one image file: (tag, score), best first.
pub type Suggester = dyn Fn(&std::path::Path) -> Result<Vec<(String, f32)>, String> + Send + Sync;

/// A running hand-tagging session.
pub struct Tagging {
    pub out: PathBuf,
    state: Mutex<State_>,
    writer: Writer,
    suggester: Option<Arc<Suggester>>,
    suggestions: Mutex<HashMap<usize, Vec<(String, f32)>>>,
    /// The session's lock, held while the studio runs.
    _lock: Option<std::fs::File>,
}

struct State_ {
    session: Session,
    counts: Counts,
}

impl Tagging {
    /// Opens a prepared session in `out`.
    pub fn new(
        out: PathBuf,
        session: Session,
        suggester: Option<Arc<Suggester>>,
        lock: Option<std::fs::File>,
    ) -> Tagging {
        let (counts, _) = session::read_all(&session, &out);
        let writer = Writer::new(out.join(session::EDIT_LOG));
        Tagging {
            out,
            state: Mutex::new(State_ { session, counts }),
            writer,
            suggester,
            suggestions: Mutex::new(HashMap::new()),
            _lock: lock,
        }
    }

    /// Whether `name` is one of the session's images.
    pub fn has_image(&self, name: &str) -> bool {
        self.lock().session.items.iter().any(|i| i.name == name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn info(&self) -> Value {
        let st = self.lock();
        json!({
            "out": self.out.display().to_string(),
            "total": st.session.items.len(),
            "done": st.session.done(),
            "suggest": st.session.settings.suggest,
        })
    }

    fn save_session(&self, s: &Session) -> ApiResult<()> {
        session::save(&self.out, s).map_err(|e| ApiError::internal(format!("{e:#}")))
    }

    /// Writes `tags.txt` from the `.txt` files as they are now (at start: it is derived, so a
    /// studio killed between a save and its `tags.txt` leaves nothing stale).
    pub fn write_master(&self) -> ApiResult<()> {
        let st = self.lock();
        self.save_master(&st.counts)
    }

    /// Rewrites `tags.txt` from the counts.
    fn save_master(&self, counts: &Counts) -> ApiResult<()> {
        let path = self.out.join(session::MASTER_TAGS);
        crate::atomic::write(&path, counts.master().as_bytes())
            .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))
    }
}

fn tagging(mode: &Mode) -> ApiResult<&Tagging> {
    match mode {
        Mode::Tag(t) => Ok(t),
        _ => Err(ApiError::not_found("the studio is not tagging a folder")),
    }
}

fn item_json(t: &Tagging, s: &Session, i: usize) -> ApiResult<Value> {
    let item = s.items.get(i).ok_or_else(|| {
        ApiError::not_found(format!("no image {i}; the session has {}", s.items.len()))
    })?;
    let txt = s.txt_name(i).unwrap_or_default();
    let mut v = json!({
        "index": i,
        "name": item.name,
        "original": item.original,
        "txt": txt,
        "done": item.done,
        "skipped": item.skipped,
        "url": format!("/files/0/{}", encode_path(&item.name)),
    });
    match tagfile::read(&t.out.join(&txt), &s.settings.separator) {
        Ok(f) => {
            v["tags"] = json!(f.tags);
            v["version"] = json!(f.version);
        }
        Err(e) => v["error"] = json!(e.to_string()),
    }
    if !t.out.join(&item.name).is_file() {
        v["image_error"] = json!(format!("{} is missing from {}", item.name, t.out.display()));
    }
    Ok(v)
}

/// Percent-encodes each segment of a relative path for a URL.
pub fn encode_path(rel: &str) -> String {
    rel.split('/')
        .map(|seg| {
            url::form_urlencoded::byte_serialize(seg.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub async fn session(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let t = tagging(&mode)?;
    let st = t.lock();
    let s = &st.session;
    let items: Vec<Value> = s
        .items
        .iter()
        .map(|i| json!({"name": i.name, "done": i.done, "skipped": i.skipped}))
        .collect();
    Ok(Json(json!({
        "settings": s.settings,
        "position": s.position.min(s.items.len().saturating_sub(1)),
        "resume_at": s.first_unfinished(),
        "total": s.items.len(),
        "done": s.done(),
        "items": items,
        "recent": s.recent,
    })))
}

pub async fn item(State(app): State<Arc<App>>, P(i): P<usize>) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let t = tagging(&mode)?;
    let st = t.lock();
    Ok(Json(item_json(t, &st.session, i)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveBody {
    tags: Vec<String>,
    /// The version the edit was made on (`absent` for a missing file).
    version: String,
    /// Mark the image done (Enter).
    #[serde(default)]
    done: bool,
    /// What made the edit, for the log: `tag`, `accept`, `reject`, `undo`.
    #[serde(default)]
    action: Option<String>,
}

/// Saves one image's tags when the file is still at the version the edit was made on;
/// otherwise 409 with the current tags and version.
pub async fn save(
    State(app): State<Arc<App>>,
    P(i): P<usize>,
    Body(body): Body<SaveBody>,
) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let t = tagging(&mode)?;
    let mut st = t.lock();
    let sep = st.session.settings.separator.clone();
    let txt = st
        .session
        .txt_name(i)
        .ok_or_else(|| ApiError::not_found(format!("no image {i}")))?;
    let tags = tagfile::check_tags(&body.tags, &sep).map_err(|e| ApiError::bad(e.to_string()))?;
    let path = t.out.join(&txt);
    let old = tagfile::read(&path, &sep).map_err(conflict_or_error)?;
    let content = tagfile::render(&tags, &sep);
    let action = body.action.as_deref().unwrap_or("tag");
    if !matches!(action, "tag" | "accept" | "reject" | "undo" | "done") {
        return Err(ApiError::bad(format!("unknown action {action:?}")));
    }
    let version = if old.tags == tags && old.version == body.version {
        old.version.clone()
    } else {
        t.writer
            .write_if(
                Change {
                    path: &path,
                    rel: &txt,
                    expected: &body.version,
                    content: content.as_bytes(),
                    old: old.tags.clone(),
                    new: tags.clone(),
                    action,
                },
                |p| tagfile::read(p, &sep),
            )
            .map_err(conflict_or_error)?
    };
    st.counts.remove(&old.tags);
    st.counts.add(&tags);
    let added: Vec<String> = tags
        .iter()
        .filter(|x| !old.tags.iter().any(|o| o.eq_ignore_ascii_case(x)))
        .cloned()
        .collect();
    let State_ { session, counts } = &mut *st;
    session.touch_recent(&added);
    session.position = i;
    if body.done {
        session.items[i].done = true;
        session.items[i].skipped = false;
    }
    t.save_master(counts)?;
    t.save_session(session)?;
    Ok(Json(json!({
        "tags": tags,
        "version": version,
        "done": session.done(),
        "total": session.items.len(),
        "recent": session.recent,
    })))
}

/// A stale write → 409 with the current tags; an unreadable file → 409 naming it (it is
/// never overwritten blindly); anything else → 500.
pub fn conflict_or_error(e: TagFileError) -> ApiError {
    match e {
        TagFileError::Stale { current, .. } => ApiError {
            status: StatusCode::CONFLICT,
            body: json!({
                "error": "this image's tags changed since you loaded them (another tab or another program); here are the current ones",
                "tags": current.tags,
                "version": current.version,
            }),
        },
        TagFileError::NotUtf8 { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        TagFileError::BadTag(m) => ApiError::bad(m),
        other => ApiError::internal(other),
    }
}

pub async fn skip(State(app): State<Arc<App>>, P(i): P<usize>) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let t = tagging(&mode)?;
    let mut st = t.lock();
    let s = &mut st.session;
    let item = s
        .items
        .get_mut(i)
        .ok_or_else(|| ApiError::not_found(format!("no image {i}")))?;
    item.skipped = true;
    item.done = false;
    s.position = i;
    t.save_session(s)?;
    Ok(Json(json!({"done": s.done(), "total": s.items.len()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionBody {
    position: usize,
}

pub async fn position(
    State(app): State<Arc<App>>,
    Body(body): Body<PositionBody>,
) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let t = tagging(&mode)?;
    let mut st = t.lock();
    let s = &mut st.session;
    if body.position >= s.items.len() {
        return Err(ApiError::bad(format!(
            "position {} is past the last image ({})",
            body.position,
            s.items.len()
        )));
    }
    s.position = body.position;
    t.save_session(s)?;
    Ok(Json(json!({"position": s.position})))
}

#[derive(Deserialize)]
pub struct TagsQuery {
    /// Only tags containing this (ignoring case); prefix matches first.
    q: Option<String>,
    limit: Option<usize>,
}

/// Tags used so far, most used first; with `q`, the autocomplete for it.
pub async fn tags(State(app): State<Arc<App>>, Q(q): Q<TagsQuery>) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let t = tagging(&mode)?;
    let sorted = t.lock().counts.sorted();
    let sorted = sorted.as_slice();
    let limit = q.limit.unwrap_or(200).min(5000);
    let list = complete(sorted, q.q.as_deref().unwrap_or(""), limit);
    let list: Vec<Value> = list
        .into_iter()
        .map(|(t, c)| json!({"tag": t, "count": c}))
        .collect();
    Ok(Json(json!({"tags": list, "distinct": sorted.len()})))
}

/// Tags containing `q` (ignoring case): those starting with it first, each group by count.
pub fn complete(sorted: &[session::Counted], q: &str, limit: usize) -> Vec<(String, usize)> {
    let q = q.trim().to_lowercase();
    if q.is_empty() {
        return sorted
            .iter()
            .take(limit)
            .map(|(t, c, _)| (t.clone(), *c))
            .collect();
    }
    let mut prefix = Vec::new();
    let mut inner = Vec::new();
    for (tag, c, low) in sorted {
        if low.starts_with(&q) {
            prefix.push((tag.clone(), *c));
            if prefix.len() >= limit {
                break;
            }
        } else if inner.len() < limit && low.contains(&q) {
            inner.push((tag.clone(), *c));
        }
    }
    prefix.extend(inner);
    prefix.truncate(limit);
    prefix
}

/// The suggester's tags for one image, as pending chips (cached for the session).
pub async fn suggest(State(app): State<Arc<App>>, P(i): P<usize>) -> ApiResult<Json<Value>> {
    let mode = app.mode();
    let t = tagging(&mode)?;
    let Some(suggester) = t.suggester.clone() else {
        return Ok(Json(json!({"tags": [], "model": null})));
    };
    let (file, model) = {
        let st = t.lock();
        let item = st
            .session
            .items
            .get(i)
            .ok_or_else(|| ApiError::not_found(format!("no image {i}")))?;
        (t.out.join(&item.name), st.session.settings.suggest.clone())
    };
    let cached = t
        .suggestions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&i)
        .cloned();
    let list = match cached {
        Some(l) => l,
        None => {
            let l = tokio::task::spawn_blocking(move || suggester(&file))
                .await
                .map_err(ApiError::internal)?
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
            t.suggestions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(i, l.clone());
            l
        }
    };
    // A suggestion that could not be saved (it holds the separator…) is not offered.
    let sep = t.lock().session.settings.separator.clone();
    let tags: Vec<Value> = list
        .iter()
        .filter(|(tag, _)| tagfile::check_tag(tag, &sep).is_ok())
        .map(|(t, s)| json!({"tag": t, "score": s}))
        .collect();
    Ok(Json(json!({"tags": tags, "model": model})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_puts_prefixes_first() {
        let sorted: Vec<session::Counted> = [
            ("long hair", 9),
            ("hair ribbon", 5),
            ("hat", 3),
            ("Hair bow", 1),
        ]
        .iter()
        .map(|(t, c)| (t.to_string(), *c, t.to_lowercase()))
        .collect();
        let got: Vec<String> = complete(&sorted, "hai", 10)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(got, vec!["hair ribbon", "Hair bow", "long hair"]);
        assert_eq!(complete(&sorted, "", 2).len(), 2);
        assert!(complete(&sorted, "zzz", 10).is_empty());
    }

    #[test]
    fn paths_are_encoded_per_segment() {
        assert_eq!(encode_path("a b/c#d.png"), "a%20b/c%23d.png");
        assert_eq!(encode_path("é.png"), "%C3%A9.png");
    }
}
