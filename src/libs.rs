//! The two native libraries iw-lab loads at run time: ONNX Runtime and DuckDB.
//!
//! Owns: finding each library (an environment variable first, else a pinned package from a
//! registry, downloaded once into the cache) and loading it. Callers ask for
//! [`crate::store::duck::ensure`] or [`ensure_ort`] before they use the library; both are
//! idempotent.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::fetch::{Fetcher, Source};

/// ONNX Runtime version the `ort` crate is built against (API 31 = 1.31).
pub const ORT_VERSION: &str = "1.31.1";

/// DuckDB version whose prebuilt library we load.
pub const DUCKDB_NPM_VERSION: &str = "1.5.6-r.1";

/// sha256 of `@duckdb/node-bindings-linux-x64-1.5.6-r.1.tgz` (other platforms are checked
/// against the registry's sha512 integrity instead).
const DUCKDB_LINUX_X64_TGZ_SHA256: &str =
    "1b9f82478539bb9a1d1df44bd103121a12ae52142c07158dc52b97d2ec1d69ff";

fn ort_wheel_path() -> Option<String> {
    let v = ORT_VERSION;
    match std::env::consts::OS {
        "linux" => Some(format!("onnxruntime/capi/libonnxruntime.so.{v}")),
        "macos" => Some(format!("onnxruntime/capi/libonnxruntime.{v}.dylib")),
        _ => None,
    }
}

/// sha256 of the ONNX Runtime library inside the wheel iw-lab picks on each platform (the
/// cp311 wheel of onnxruntime 1.31.1), pinned as model files are: a library that does not
/// match is refused, whether freshly downloaded or already in the cache.
fn ort_sha256() -> Option<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => {
            Some("fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3")
        }
        ("linux", "aarch64") => {
            Some("8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467")
        }
        ("macos", "aarch64") => {
            Some("f8b06155feece624e55e49124340eea279da812529ae6fbc46a9f2be9c9cad2e")
        }
        _ => None,
    }
}

/// Checks `path` against the pinned digest (through the memo of file hashes, so an unchanged
/// library is not re-read on every start).
fn verify_ort(fetcher: &Fetcher, path: &std::path::Path) -> Result<()> {
    let Some(expected) = ort_sha256() else {
        return Ok(());
    };
    let actual = crate::hashing::FileHashes::open(&fetcher.cache_dir)
        .digests(path)
        .with_context(|| format!("hashing {}", path.display()))?
        .sha256;
    if actual != expected {
        bail!(
            "the ONNX Runtime library {} does not match its pinned sha256 (expected {expected}, got {actual})\nhint: delete it to download it again, or set ORT_DYLIB_PATH to a library of your own",
            path.display()
        );
    }
    Ok(())
}

/// Where the ONNX Runtime library is: `$ORT_DYLIB_PATH`, else the `onnxruntime` wheel.
pub fn ort_library(fetcher: &Fetcher) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "ORT_DYLIB_PATH points at {}, which is not a file",
                p.display()
            );
        }
        return Ok(p);
    }
    let Some(path) = ort_wheel_path() else {
        bail!(
            "no pinned ONNX Runtime download for {}; set ORT_DYLIB_PATH to your onnxruntime library",
            std::env::consts::OS
        );
    };
    let source = Source::Pypi {
        package: "onnxruntime".into(),
        version: ORT_VERSION.into(),
        path,
    };
    let path = fetcher
        .resolve(&source, ort_sha256())
        .with_context(|| format!("getting the ONNX Runtime library ({source})"))?;
    verify_ort(fetcher, &path)?;
    Ok(path)
}

fn duckdb_npm_package() -> Option<(&'static str, &'static str, Option<&'static str>)> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some((
            "@duckdb/node-bindings-linux-x64",
            "package/libduckdb.so",
            Some(DUCKDB_LINUX_X64_TGZ_SHA256),
        )),
        ("linux", "aarch64") => Some((
            "@duckdb/node-bindings-linux-arm64",
            "package/libduckdb.so",
            None,
        )),
        ("macos", "aarch64") => Some((
            "@duckdb/node-bindings-darwin-arm64",
            "package/libduckdb.dylib",
            None,
        )),
        ("macos", "x86_64") => Some((
            "@duckdb/node-bindings-darwin-x64",
            "package/libduckdb.dylib",
            None,
        )),
        _ => None,
    }
}

/// Where the DuckDB library is: `$IW_LAB_DUCKDB_LIB`, else the npm package of DuckDB's Node
/// bindings, which ships the prebuilt `libduckdb`.
pub fn duckdb_library(fetcher: &Fetcher) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("IW_LAB_DUCKDB_LIB").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "IW_LAB_DUCKDB_LIB points at {}, which is not a file",
                p.display()
            );
        }
        return Ok(p);
    }
    let Some((package, path, sha)) = duckdb_npm_package() else {
        bail!(
            "no pinned DuckDB download for {}-{}; set IW_LAB_DUCKDB_LIB to a libduckdb 1.5 library",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    };
    let res = match sha {
        Some(sha) => fetcher.npm_pinned(package, DUCKDB_NPM_VERSION, path, sha),
        None => fetcher.resolve(
            &Source::Npm {
                package: package.into(),
                version: DUCKDB_NPM_VERSION.into(),
                path: path.into(),
            },
            None,
        ),
    };
    res.with_context(|| format!("getting the DuckDB library (npm {package}@{DUCKDB_NPM_VERSION})"))
}

static ORT_ENV: OnceLock<ort::environment::Environment> = OnceLock::new();

/// Finds and loads ONNX Runtime once per process, and returns its global environment.
pub fn ensure_ort(fetcher: &Fetcher) -> Result<&'static ort::environment::Environment> {
    if let Some(env) = ORT_ENV.get() {
        return Ok(env);
    }
    let path = ort_library(fetcher)?;
    let builder = ort::init_from(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading ONNX Runtime from {}", path.display()))?;
    let env = builder
        .with_name("iw-lab")
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("creating the ONNX Runtime environment")?;
    Ok(ORT_ENV.get_or_init(|| env))
}
