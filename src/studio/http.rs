//! The router: the guard in front of everything, the page and its assets, served files and
//! thumbnails, and each mode's endpoints.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::answer::{ApiError, ApiResult, P, Q};
use super::guard::{self, Seen, Verdict};
use super::{App, Mode};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/studio.js");
const STYLE: &str = include_str!("assets/studio.css");

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/", get(index))
        .route("/static/studio.js", get(script))
        .route("/static/studio.css", get(style))
        .route("/api/info", get(info))
        .route("/files/{root}/{*path}", get(file))
        .route("/thumbs/{root}/{*path}", get(thumb))
        .route("/api/tag/session", get(super::tagging::session))
        .route("/api/tag/position", post(super::tagging::position))
        .route("/api/tag/tags", get(super::tagging::tags))
        .route(
            "/api/tag/items/{i}",
            get(super::tagging::item).put(super::tagging::save),
        )
        .route("/api/tag/items/{i}/skip", post(super::tagging::skip))
        .route("/api/tag/items/{i}/suggest", get(super::tagging::suggest))
        .merge(super::browse::routes())
        .merge(super::review::routes())
        .merge(super::picker::routes())
        .merge(super::similar::routes());
    api.fallback(|| async { ApiError::not_found("no such page or endpoint") })
        .layer(middleware::from_fn_with_state(app.clone(), guard_layer))
        .with_state(app)
}

/// The guard, plus the headers every answer carries.
async fn guard_layer(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let h = req.headers();
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let query_token = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let cookie_name = app.policy.cookie_name();
    let cookie = text("cookie").and_then(|c| guard::cookie_token(c, &cookie_name));
    let token = query_token
        .as_deref()
        .or(text(guard::TOKEN_HEADER))
        .or(cookie);
    let seen = Seen {
        method: req.method().as_str(),
        host: text("host"),
        origin: text("origin"),
        token,
    };
    let verdict = app.policy.check(&seen);
    let tokened = app.policy.token_ok(token);
    let set_cookie =
        query_token.as_deref() == Some(app.policy.token.as_str()) && *req.method() == Method::GET;
    if tokened {
        req.extensions_mut().insert(guard::Tokened);
    }
    let mut resp = match verdict {
        Verdict::Allow => next.run(req).await,
        Verdict::Unauthorised(why) => ApiError::new(StatusCode::UNAUTHORIZED, why).into_response(),
        Verdict::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, why).into_response(),
    };
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(guard::CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if set_cookie {
        let c = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            app.policy.cookie_name(),
            app.policy.token
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            headers.insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn info(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let mode = app.mode();
    let detail = match &*mode {
        Mode::Tag(t) => t.info(),
        Mode::Browse(b) => b.info(),
        Mode::Review(r) => r.info(),
        Mode::Pick => json!({}),
    };
    Json(json!({
        "mode": mode.name(),
        "version": env!("CARGO_PKG_VERSION"),
        "loopback": app.policy.loopback(),
        "picker": app.picker.is_some(),
        "similar": super::similar::info(&app),
        "detail": detail,
    }))
}

/// The folders files may come from, by number.
fn roots(app: &App) -> Vec<std::path::PathBuf> {
    app.mode().roots()
}

fn served(app: &App, root: &str, path: &str) -> ApiResult<std::path::PathBuf> {
    let roots = roots(app);
    let n = root.parse::<usize>().ok();
    let root = n
        .and_then(|i| roots.get(i))
        .ok_or_else(|| ApiError::not_found("no such served folder"))?;
    // Only the images being served: never a sidecar, a session file, or anything else that
    // happens to sit in the folder.
    if !n.is_some_and(|n| app.mode().serves(n, path)) {
        return Err(ApiError::not_found(format!(
            "{path} is not one of the images being served"
        )));
    }
    guard::resolve(root, path).map_err(|e| match e {
        guard::PathRefused::Missing => ApiError::not_found(e.to_string()),
        _ => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
    })
}

async fn file(
    State(app): State<Arc<App>>,
    P((root, path)): P<(String, String)>,
) -> ApiResult<Response> {
    let real = served(&app, &root, &path)?;
    let bytes = tokio::fs::read(&real)
        .await
        .map_err(|e| ApiError::not_found(format!("cannot read {path}: {e}")))?;
    let mime = match crate::imaging::probe(&bytes) {
        Ok((f, _, _)) => image_mime(crate::imaging::decode::format_name(f)),
        Err(_) => "application/octet-stream",
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response())
}

fn image_mime(format: &str) -> &'static str {
    match format {
        "png" => "image/png",
        "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tiff" => "image/tiff",
        _ => "application/octet-stream",
    }
}

#[derive(Deserialize)]
struct ThumbQuery {
    size: Option<u32>,
}

/// A JPEG thumbnail from the project's thumbnail cache (made on first request).
async fn thumb(
    State(app): State<Arc<App>>,
    P((root, path)): P<(String, String)>,
    Q(q): Q<ThumbQuery>,
) -> ApiResult<Response> {
    let real = served(&app, &root, &path)?;
    let size = match q.size.unwrap_or(256) {
        s @ (128 | 256 | 512) => s,
        s => {
            return Err(ApiError::bad(format!(
                "thumbnail size {s}: use 128, 256 or 512"
            )))
        }
    };
    let cache = app.thumbs.clone();
    let made = tokio::task::spawn_blocking(move || thumbnail(&cache, &real, size))
        .await
        .map_err(ApiError::internal)?;
    match made {
        Ok(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            bytes,
        )
            .into_response()),
        Err(why) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why)),
    }
}

/// The pixel limit for thumbnails: as a dataset's default.
const THUMB_MAX_PIXELS: u64 = 100_000_000;

fn thumbnail(
    cache: &std::path::Path,
    file: &std::path::Path,
    size: u32,
) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let hash = crate::hashing::content_hash(&bytes);
    drop(bytes);
    let made = crate::imaging::thumbs::make_all(
        cache,
        &[(file.to_path_buf(), hash, THUMB_MAX_PIXELS)],
        size,
    );
    match made.into_iter().next() {
        Some(crate::imaging::thumbs::Thumb::Jpeg(b)) => Ok(b),
        Some(crate::imaging::thumbs::Thumb::Missing(why)) => Err(why),
        None => Err("no thumbnail".into()),
    }
}
