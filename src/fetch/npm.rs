//! Files inside package tarballs on the npm registry (used for DuckDB's prebuilt library).
//!
//! Cache layout: `<cache>/npm/<scope+name>/<version>/package.tgz` and the extracted
//! `<cache>/npm/<scope+name>/<version>/files/<path/in/tarball>`.

use std::path::{Path, PathBuf};

use base64::Engine;

use super::download::{self, Expect};
use super::{FetchError, Fetcher};

fn registry() -> String {
    ["IW_LAB_NPM_REGISTRY", "npm_config_registry"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "https://registry.npmjs.org".to_string())
        .trim_end_matches('/')
        .to_string()
}

pub(super) fn get(
    f: &Fetcher,
    package: &str,
    version: &str,
    path: &str,
    sha256: Option<&str>,
    tarball_sha256: Option<&str>,
) -> Result<PathBuf, FetchError> {
    let bad = |reason: String| FetchError::BadSource {
        source_str: format!("npm://{package}@{version}/{path}"),
        reason,
    };
    for part in package.trim_start_matches('@').split('/') {
        super::check_name("package name", part).map_err(bad)?;
    }
    super::check_name("version", version).map_err(bad)?;
    super::check_inner_path(path).map_err(bad)?;
    let dir = f
        .cache_dir
        .join("npm")
        .join(package.trim_start_matches('@').replace('/', "+"))
        .join(version);
    let target = dir.join("files").join(path);
    if target.is_file() {
        return Ok(target);
    }
    let tarball = dir.join("package.tgz");
    if !tarball.is_file() {
        if f.offline {
            return Err(FetchError::Offline {
                what: format!("npm://{package}@{version}/{path}"),
                cache: dir,
            });
        }
        download_tarball(package, version, &tarball, tarball_sha256)?;
    }
    extract(&tarball, path, &target)?;
    if let Some(expected) = sha256 {
        if let Err(e) = super::verify_sha256(&target, expected) {
            let _ = std::fs::remove_file(&target);
            return Err(e);
        }
    }
    Ok(target)
}

fn download_tarball(
    package: &str,
    version: &str,
    dest: &Path,
    pinned_sha256: Option<&str>,
) -> Result<(), FetchError> {
    let reg = registry();
    let name = package.rsplit('/').next().unwrap_or(package);
    let (url, sha512) = if pinned_sha256.is_some() {
        (format!("{reg}/{package}/-/{name}-{version}.tgz"), None)
    } else {
        let meta_url = format!("{reg}/{}/{version}", package.replace('/', "%2f"));
        let doc: serde_json::Value = serde_json::from_str(&download::get_text(&meta_url)?)
            .map_err(|e| FetchError::Package {
                package: package.into(),
                version: version.into(),
                reason: format!("bad registry document: {e}"),
            })?;
        let url = doc
            .pointer("/dist/tarball")
            .and_then(|v| v.as_str())
            .ok_or_else(|| FetchError::Package {
                package: package.into(),
                version: version.into(),
                reason: "registry document has no dist.tarball".into(),
            })?
            .to_string();
        let sha512 = doc
            .pointer("/dist/integrity")
            .and_then(|v| v.as_str())
            .and_then(|s| s.strip_prefix("sha512-"))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        (url, sha512)
    };
    let expect = Expect {
        sha256: pinned_sha256,
        sha512,
    };
    download::download(&url, dest, expect, name).map(drop)
}

fn extract(tarball: &Path, path: &str, target: &Path) -> Result<(), FetchError> {
    let file = std::fs::File::open(tarball).map_err(FetchError::io(tarball))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut seen = Vec::new();
    for entry in archive.entries().map_err(FetchError::io(tarball))? {
        let mut entry = entry.map_err(FetchError::io(tarball))?;
        let name = entry
            .path()
            .map_err(FetchError::io(tarball))?
            .to_string_lossy()
            .into_owned();
        if name == path {
            return download::write_atomic(target, &mut entry);
        }
        seen.push(name);
    }
    Err(FetchError::MissingInArchive {
        archive: tarball.display().to_string(),
        path: path.to_string(),
        suggestions: super::similar_paths(path, seen.iter().map(String::as_str)),
    })
}
