//! File names in tables: a dataset path relative to its root, as text that names exactly one
//! file. Names that are valid UTF-8 are written as they are (`/` between components). Bytes
//! that are not UTF-8 (possible on Linux) are written as U+FFFD and two hex digits, and a
//! literal U+FFFD as U+FFFD and `~`, so two different names never share a text and
//! [`rel_path`] gives the exact file back: `caf\xE9.png` is `caf�e9.png`.

use std::path::{Path, PathBuf};

/// Marks an escaped byte (followed by two hex digits) or a literal U+FFFD (followed by `~`).
const MARK: char = '\u{FFFD}';

/// The table text of a path (its components joined by `/`; an absolute path keeps its
/// leading `/`).
pub fn rel_text(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| match c {
            std::path::Component::RootDir => String::new(),
            other => component_text(other.as_os_str()),
        })
        .collect();
    parts.join("/")
}

/// The text of one file name.
pub fn component_text(name: &std::ffi::OsStr) -> String {
    let bytes = name.as_encoded_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(c);
            if c == MARK {
                out.push('~');
            }
        }
        for b in chunk.invalid() {
            out.push(MARK);
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// The relative path a table text names (the inverse of [`rel_text`]).
pub fn rel_path(text: &str) -> PathBuf {
    if !text.contains(MARK) {
        return PathBuf::from(text);
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != MARK {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        if chars.peek() == Some(&'~') {
            chars.next();
            bytes.extend_from_slice(MARK.to_string().as_bytes());
            continue;
        }
        let hex: String = chars.by_ref().take(2).collect();
        match u8::from_str_radix(&hex, 16) {
            Ok(b) if hex.len() == 2 => bytes.push(b),
            // Not written by `rel_text`: keep the text as it stands.
            _ => {
                bytes.extend_from_slice(MARK.to_string().as_bytes());
                bytes.extend_from_slice(hex.as_bytes());
            }
        }
    }
    path_from_bytes(bytes)
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn os(bytes: &[u8]) -> PathBuf {
        path_from_bytes(bytes.to_vec())
    }

    #[test]
    fn utf8_names_are_unchanged() {
        for n in ["a.png", "sub/dir/é 🐥.jpg", "x%ff.png", "\\x.png"] {
            assert_eq!(rel_text(Path::new(n)), n);
            assert_eq!(rel_path(n), PathBuf::from(n));
        }
    }

    #[cfg(unix)]
    #[test]
    fn other_bytes_round_trip_and_never_collide() {
        let names: Vec<PathBuf> = [
            &b"caf\xe9.png"[..],
            b"caf\xe8.png",
            "caf\u{FFFD}e9.png".as_bytes(),
            "caf\u{FFFD}.png".as_bytes(),
            b"caf\xef\xbf\xbd~.png",
            b"d\xff/e\xfe.png",
        ]
        .iter()
        .map(|b| os(b))
        .collect();
        let texts: Vec<String> = names.iter().map(|n| rel_text(n)).collect();
        assert_eq!(texts[0], "caf\u{FFFD}e9.png");
        let distinct: std::collections::HashSet<&String> = texts.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{texts:?}");
        for (n, t) in names.iter().zip(&texts) {
            assert_eq!(&rel_path(t), n, "{t}");
        }
    }

    proptest::proptest! {
        #[cfg(unix)]
        #[test]
        fn any_bytes_round_trip(raw in proptest::collection::vec(1u8..=255, 1..24)) {
            let raw: Vec<u8> = raw.into_iter().filter(|b| *b != b'/').collect();
            proptest::prop_assume!(!raw.is_empty() && raw != b"." && raw != b"..");
            let p = os(&raw);
            proptest::prop_assert_eq!(rel_path(&rel_text(&p)), p);
        }
    }
}
