//! Files on the Hugging Face hub, through `hf-hub`, in the hub's own cache layout
//! (`<cache>/models--owner--repo/{blobs,refs,snapshots}`), shared with Python tools.
//!
//! The cache folder follows `huggingface_hub`: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`. Offline mode (`--offline` or `HF_HUB_OFFLINE=1`) reads only the
//! cache, including snapshots pinned by commit hash.

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::{FetchError, Fetcher};

/// The hub cache folder, by `huggingface_hub`'s precedence.
pub(crate) fn hub_cache() -> Cache {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = env("HF_HUB_CACHE") {
        return Cache::new(PathBuf::from(dir));
    }
    if let Some(home) = env("HF_HOME") {
        return Cache::new(PathBuf::from(home).join("hub"));
    }
    Cache::from_env()
}

fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
}

fn is_commit_hash(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn get(
    f: &Fetcher,
    repo: &str,
    revision: &str,
    file: &str,
    dataset: bool,
    sha256: Option<&str>,
) -> Result<PathBuf, FetchError> {
    let cache = hub_cache();
    let kind = if dataset {
        RepoType::Dataset
    } else {
        RepoType::Model
    };
    let hub_repo = Repo::with_revision(repo.to_string(), kind, revision.to_string());
    let cached = cache.repo(hub_repo.clone()).get(file).or_else(|| {
        // A revision that is itself a commit hash has a snapshot folder but no ref file.
        let p = cache
            .path()
            .join(hub_repo.folder_name())
            .join("snapshots")
            .join(revision)
            .join(file);
        (is_commit_hash(revision) && p.is_file()).then_some(p)
    });
    let was_cached = cached.is_some();
    let path = match cached {
        Some(p) => p,
        None if f.offline || hub_offline() => {
            return Err(FetchError::Offline {
                what: format!("hf://{repo}@{revision}/{file}"),
                cache: cache.path().join(hub_repo.folder_name()),
            })
        }
        None => {
            let mut builder = ApiBuilder::from_cache(cache).with_progress(
                !crate::ui::quiet() && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            );
            if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
                builder = builder.with_token(Some(token));
            }
            let api = builder
                .build()
                .map_err(|e| FetchError::Hub(e.to_string()))?;
            api.repo(hub_repo)
                .get(file)
                .map_err(|e| FetchError::Hub(format!("hf://{repo}@{revision}/{file}: {e}")))?
        }
    };
    if let (Some(expected), false) = (sha256, was_cached) {
        super::verify_sha256(&path, expected)?;
    }
    Ok(path)
}
