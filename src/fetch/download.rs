//! HTTP downloads into the cache: streamed to a temporary file in the destination folder,
//! hashed on the way, verified, then renamed into place — so a killed download never leaves a
//! file that looks complete.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256, Sha512};

use super::FetchError;

/// The HTTP agent: proxies from the environment, generous timeouts for large files.
pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .try_proxy_from_env(true)
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .user_agent(concat!("iw-lab/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// GET `url` as text (JSON API documents).
pub(crate) fn get_text(url: &str) -> Result<String, FetchError> {
    let resp = agent().get(url).call().map_err(|e| http_error(url, e))?;
    resp.into_string().map_err(|e| FetchError::Http {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn http_error(url: &str, e: ureq::Error) -> FetchError {
    let reason = match e {
        ureq::Error::Status(code, _) => format!("HTTP status {code}"),
        ureq::Error::Transport(t) => t.to_string(),
    };
    FetchError::Http {
        url: url.to_string(),
        reason,
    }
}

/// What a finished download must hash to.
#[derive(Default)]
pub(crate) struct Expect<'a> {
    pub sha256: Option<&'a str>,
    /// Raw sha512 digest (npm `integrity`).
    pub sha512: Option<Vec<u8>>,
}

/// Downloads `url` to `dest` (atomically), checking hashes. Returns `dest`.
pub(crate) fn download(
    url: &str,
    dest: &Path,
    expect: Expect<'_>,
    label: &str,
) -> Result<PathBuf, FetchError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(FetchError::io(dir))?;
    let resp = agent().get(url).call().map_err(|e| http_error(url, e))?;
    let len = resp
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok());
    let bar = crate::ui::download_progress(len, label);
    let mut reader = resp.into_reader();
    let mut tmp = crate::atomic::stage_new(dest, &[], false).map_err(FetchError::io(dir))?;
    let mut sha256 = Sha256::new();
    let mut sha512 = Sha512::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| FetchError::Http {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        if expect.sha512.is_some() {
            sha512.update(&buf[..n]);
        }
        tmp.file()
            .write_all(&buf[..n])
            .map_err(FetchError::io(dest))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let actual = hex::encode(sha256.finalize());
    if let Some(expected) = expect.sha256 {
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(FetchError::Sha256Mismatch {
                path: PathBuf::from(url),
                expected: expected.to_lowercase(),
                actual,
            });
        }
    }
    if let Some(expected) = expect.sha512 {
        if sha512.finalize().as_slice() != expected.as_slice() {
            return Err(FetchError::Http {
                url: url.to_string(),
                reason: "sha512 integrity check failed".into(),
            });
        }
    }
    tmp.commit().map_err(FetchError::io(dest))?;
    Ok(dest.to_path_buf())
}

/// Writes what `reader` gives to `dest` atomically and durably.
pub(crate) fn write_atomic(dest: &Path, reader: &mut dyn Read) -> Result<(), FetchError> {
    crate::atomic::write_with(dest, |f| std::io::copy(reader, f).map(drop))
        .map_err(FetchError::io(dest))
}

/// The hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = std::fs::File::open(path).map_err(FetchError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(FetchError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Resolves a possibly relative link (`../../packages/...`) against the page it came from.
pub(crate) fn join_url(base: &str, link: &str) -> Result<String, FetchError> {
    let base = url::Url::parse(base).map_err(|e| FetchError::Http {
        url: base.to_string(),
        reason: e.to_string(),
    })?;
    base.join(link)
        .map(|u| u.to_string())
        .map_err(|e| FetchError::Http {
            url: link.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_relative_links() {
        assert_eq!(
            join_url(
                "https://pypi.org/pypi/onnxruntime/json",
                "../../packages/packages/b4/x.whl"
            )
            .unwrap(),
            "https://pypi.org/packages/packages/b4/x.whl"
        );
        assert_eq!(
            join_url(
                "https://pypi.org/pypi/x/json",
                "https://files.pythonhosted.org/a.whl"
            )
            .unwrap(),
            "https://files.pythonhosted.org/a.whl"
        );
    }
}
