//! Who may do what, and which files may be served.
//!
//! - Every response carries a strict Content-Security-Policy (scripts and styles only from the
//!   studio itself, no inline code, nothing framed), `nosniff` and `no-referrer` (the token is
//!   in the URL).
//! - The `Host` header must name the address being served (or `localhost` on loopback), so a
//!   DNS-rebinding page cannot talk to the studio under another name.
//! - On loopback, pages and files may be read without the token; on any other address every
//!   request needs it (401 otherwise).
//! - A request that changes state needs the token, and an `Origin` equal to the studio's own.
//! - The token may come as `?token=`, the `X-IW-Token` header, or the `iw_token_PORT` cookie that a
//!   tokened page load sets (`HttpOnly`, `SameSite=Strict`), so `<img>` loads work off loopback.
//! - A file path is relative to a served root: `..`, absolute paths, NUL, and anything that
//!   resolves (through symlinks) outside the root are refused.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub const TOKEN_HEADER: &str = "x-iw-token";
pub const TOKEN_COOKIE: &str = "iw_token";

/// What the guard knows about the server.
#[derive(Debug, Clone)]
pub struct Policy {
    pub token: String,
    pub addr: SocketAddr,
}

/// The guard's answer to one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// 401 with the reason.
    Unauthorised(&'static str),
    /// 403 with the reason.
    Forbidden(&'static str),
}

/// The parts of a request the guard looks at.
#[derive(Debug, Default)]
pub struct Seen<'a> {
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// The token offered by query, header or cookie.
    pub token: Option<&'a str>,
}

impl Policy {
    pub fn loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }

    /// The host names the studio answers to (`Host` header values).
    fn hosts(&self) -> Vec<String> {
        let port = self.addr.port();
        let mut v = vec![match self.addr {
            SocketAddr::V4(a) => format!("{}:{port}", a.ip()),
            SocketAddr::V6(a) => format!("[{}]:{port}", a.ip()),
        }];
        if self.loopback() {
            v.push(format!("localhost:{port}"));
            v.push(format!("127.0.0.1:{port}"));
            v.push(format!("[::1]:{port}"));
        }
        v
    }

    /// Listening on every address (`0.0.0.0`, `::`): any IP literal with our port names this
    /// studio (a DNS-rebinding page can only reach it under a domain name, which is refused).
    fn any_address_host(&self, host: &str) -> bool {
        if !self.addr.ip().is_unspecified() {
            return false;
        }
        host.parse::<SocketAddr>()
            .is_ok_and(|a| a.port() == self.addr.port())
    }

    /// Whether `offered` is the token.
    pub fn token_ok(&self, offered: Option<&str>) -> bool {
        !self.token.is_empty()
            && offered.is_some_and(|t| constant_time_eq(t.as_bytes(), self.token.as_bytes()))
    }

    /// The cookie that carries the token: named after the port, so studios on other ports of
    /// the same host keep their own.
    pub fn cookie_name(&self) -> String {
        format!("{TOKEN_COOKIE}_{}", self.addr.port())
    }

    /// Decides one request.
    pub fn check(&self, r: &Seen<'_>) -> Verdict {
        let hosts = self.hosts();
        let host_ok = r.host.is_some_and(|h| {
            hosts.iter().any(|x| x.eq_ignore_ascii_case(h)) || self.any_address_host(h)
        });
        if !host_ok {
            return Verdict::Forbidden("the Host header does not name this studio");
        }
        let token_ok = self.token_ok(r.token);
        let reads = matches!(r.method, "GET" | "HEAD");
        if !token_ok && (!reads || !self.loopback()) {
            return Verdict::Unauthorised(
                "this needs the studio's token: open the URL the server printed",
            );
        }
        if !reads {
            let own = format!("http://{}", r.host.unwrap_or(""));
            if !r.origin.is_some_and(|o| o.eq_ignore_ascii_case(&own)) {
                return Verdict::Forbidden("a change must come from the studio's own page");
            }
        }
        Verdict::Allow
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Marks a request that carried the token (loopback reads need none; what starts work does).
#[derive(Debug, Clone, Copy)]
pub struct Tokened;

/// A fresh random token (128 bits from the OS, hex).
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    if bytes == [0u8; 16] {
        // No /dev/urandom: mix the time, the process and an address.
        let seed = format!(
            "{:?}{}{:p}",
            std::time::SystemTime::now(),
            std::process::id(),
            &bytes
        );
        bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
    }
    hex::encode(bytes)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_token<'a>(cookie: &'a str, name: &str) -> Option<&'a str> {
    cookie.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Checks a token given by the user: at least 16 characters, all URL-safe (it goes into the
/// printed URL as it is).
pub fn check_token(t: &str) -> Result<(), String> {
    if t.chars().count() < 16 {
        return Err("the token must be at least 16 characters".into());
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    {
        return Err("the token may hold only letters, digits, `-`, `_`, `.` and `~`".into());
    }
    Ok(())
}

/// Why a file path is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    #[error("the path is not relative to the served folder")]
    NotRelative,
    #[error("the path leaves the served folder")]
    Escapes,
    #[error("no such file")]
    Missing,
}

/// Resolves `rel` (already percent-decoded; spelled as iw-lab spells relative paths, so a name
/// that is not UTF-8 comes back to its bytes) under `root`: only plain components, and the
/// real path (symlinks followed) must stay inside the real root.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, PathRefused> {
    if rel.is_empty() || rel.contains('\0') || rel.contains('\\') {
        return Err(PathRefused::NotRelative);
    }
    let p = crate::dataset::names::rel_path(rel);
    let p = p.as_path();
    for c in p.components() {
        match c {
            Component::Normal(_) => {}
            Component::CurDir => {}
            Component::ParentDir => return Err(PathRefused::Escapes),
            Component::RootDir | Component::Prefix(_) => return Err(PathRefused::NotRelative),
        }
    }
    let real_root = std::fs::canonicalize(root).map_err(|_| PathRefused::Missing)?;
    let real = std::fs::canonicalize(root.join(p)).map_err(|_| PathRefused::Missing)?;
    if !real.starts_with(&real_root) {
        return Err(PathRefused::Escapes);
    }
    if !real.is_file() {
        return Err(PathRefused::Missing);
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(addr: &str) -> Policy {
        Policy {
            token: "secret".into(),
            addr: addr.parse().unwrap(),
        }
    }

    fn seen<'a>(
        method: &'a str,
        host: &'a str,
        origin: Option<&'a str>,
        token: Option<&'a str>,
    ) -> Seen<'a> {
        Seen {
            method,
            host: Some(host),
            origin,
            token,
        }
    }

    #[test]
    fn loopback_reads_are_open_and_writes_need_token_and_origin() {
        let p = policy("127.0.0.1:8000");
        assert_eq!(
            p.check(&seen("GET", "127.0.0.1:8000", None, None)),
            Verdict::Allow
        );
        assert_eq!(
            p.check(&seen("GET", "localhost:8000", None, None)),
            Verdict::Allow
        );
        assert!(matches!(
            p.check(&seen("GET", "evil.example:8000", None, None)),
            Verdict::Forbidden(_)
        ));
        assert!(matches!(
            p.check(&seen(
                "PUT",
                "127.0.0.1:8000",
                Some("http://127.0.0.1:8000"),
                None
            )),
            Verdict::Unauthorised(_)
        ));
        assert!(matches!(
            p.check(&seen(
                "PUT",
                "127.0.0.1:8000",
                Some("http://evil.example"),
                Some("secret")
            )),
            Verdict::Forbidden(_)
        ));
        assert!(matches!(
            p.check(&seen("PUT", "127.0.0.1:8000", None, Some("secret"))),
            Verdict::Forbidden(_)
        ));
        assert!(matches!(
            p.check(&seen(
                "PUT",
                "127.0.0.1:8000",
                Some("http://localhost:8000"),
                Some("secret")
            )),
            Verdict::Forbidden(_)
        ));
        assert_eq!(
            p.check(&seen(
                "PUT",
                "127.0.0.1:8000",
                Some("http://127.0.0.1:8000"),
                Some("secret")
            )),
            Verdict::Allow
        );
        assert!(matches!(
            p.check(&seen(
                "PUT",
                "127.0.0.1:8000",
                Some("http://127.0.0.1:8000"),
                Some("secreT")
            )),
            Verdict::Unauthorised(_)
        ));
    }

    #[test]
    fn off_loopback_everything_needs_the_token() {
        let p = policy("192.168.1.5:8000");
        assert!(matches!(
            p.check(&seen("GET", "192.168.1.5:8000", None, None)),
            Verdict::Unauthorised(_)
        ));
        assert_eq!(
            p.check(&seen("GET", "192.168.1.5:8000", None, Some("secret"))),
            Verdict::Allow
        );
        assert!(matches!(
            p.check(&seen("GET", "localhost:8000", None, Some("secret"))),
            Verdict::Forbidden(_)
        ));
        let any = policy("0.0.0.0:8000");
        assert_eq!(
            any.check(&seen("GET", "10.1.2.3:8000", None, Some("secret"))),
            Verdict::Allow
        );
        assert!(matches!(
            any.check(&seen("GET", "10.1.2.3:8000", None, None)),
            Verdict::Unauthorised(_)
        ));
        assert!(matches!(
            any.check(&seen("GET", "rebind.example:8000", None, Some("secret"))),
            Verdict::Forbidden(_)
        ));
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.png"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"x").unwrap();
        assert!(resolve(&root, "sub/a.png").is_ok());
        assert_eq!(resolve(&root, "../secret.txt"), Err(PathRefused::Escapes));
        assert_eq!(
            resolve(&root, "sub/../../secret.txt"),
            Err(PathRefused::Escapes)
        );
        assert_eq!(
            resolve(&root, dir.path().join("secret.txt").to_str().unwrap()),
            Err(PathRefused::NotRelative)
        );
        assert_eq!(resolve(&root, "sub/missing.png"), Err(PathRefused::Missing));
        assert_eq!(resolve(&root, "a\0b"), Err(PathRefused::NotRelative));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.png"))
                .unwrap();
            assert_eq!(resolve(&root, "link.png"), Err(PathRefused::Escapes));
        }
    }

    #[test]
    fn tokens_are_random_and_found_in_cookies() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 32);
        assert_eq!(
            cookie_token("a=b; iw_token_80=xyz; c=d", "iw_token_80"),
            Some("xyz")
        );
        assert_eq!(cookie_token("a=b", "iw_token_80"), None);
        assert!(check_token(&new_token()).is_ok());
        assert!(check_token("").is_err());
        assert!(check_token("short").is_err());
        assert!(check_token("a+b&c#d%e f0123456789").is_err());
        let empty = Policy {
            token: String::new(),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        assert!(!empty.token_ok(Some("")));
    }
}
