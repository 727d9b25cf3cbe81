//! The text encodings of existing sidecars: what iw-lab reads it decodes exactly, and what it
//! writes back goes out in the same encoding, so a sidecar is never rewritten lossily.
//!
//! - `.txt` and JSON: UTF-8 (a byte-order mark is kept), or UTF-16 with a byte-order mark.
//! - XMP: the same, plus the encodings an XML declaration may name that iw-lab can decode
//!   exactly: ISO-8859-1 (Latin-1) and US-ASCII. Characters those cannot hold are written as
//!   XML character references (`&#x4E2D;`), which every XMP reader resolves.
//!
//! Anything else (invalid UTF-8 with no declaration, Windows-1252, Shift_JIS...) is an error
//! for that file, which is then left untouched.

/// How a sidecar's bytes encode its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8 {
        bom: bool,
    },
    Utf16Le,
    Utf16Be,
    /// ISO-8859-1: each byte is the code point of the same number (XML only).
    Latin1,
    /// US-ASCII (XML only).
    Ascii,
}

/// Which rules apply: XML may declare an encoding, other sidecars may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Xml,
}

/// A decoded sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    pub encoding: Encoding,
}

/// Decodes a sidecar's bytes; the error says why they cannot be decoded exactly.
pub fn decode(bytes: &[u8], kind: Kind) -> Result<Decoded, String> {
    let utf16 = |rest: &[u8], le: bool| -> Result<String, String> {
        if !rest.len().is_multiple_of(2) {
            return Err("it is UTF-16 with an odd number of bytes".into());
        }
        let units = rest.chunks_exact(2).map(|p| {
            if le {
                u16::from_le_bytes([p[0], p[1]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| "it is UTF-16 with an unpaired surrogate".to_string())
    };
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return Ok(Decoded {
            text: utf16(rest, true)?,
            encoding: Encoding::Utf16Le,
        });
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return Ok(Decoded {
            text: utf16(rest, false)?,
            encoding: Encoding::Utf16Be,
        });
    }
    let declared = match kind {
        Kind::Xml => declared_encoding(bytes),
        Kind::Text => None,
    };
    match declared.as_deref() {
        None | Some("utf-8") | Some("utf8") => utf8(bytes, false),
        Some("iso-8859-1") | Some("latin1") | Some("latin-1") | Some("iso_8859-1")
        | Some("l1") | Some("iso-ir-100") | Some("cp819") => Ok(Decoded {
            text: bytes.iter().map(|&b| b as char).collect(),
            encoding: Encoding::Latin1,
        }),
        Some("us-ascii") | Some("ascii") => {
            if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
                return Err(format!(
                    "it declares US-ASCII but byte {i} is 0x{:02X}",
                    bytes[i]
                ));
            }
            Ok(Decoded {
                text: String::from_utf8_lossy(bytes).into_owned(),
                encoding: Encoding::Ascii,
            })
        }
        Some(other) => Err(format!(
            "it declares the encoding `{other}`, which iw-lab does not rewrite (UTF-8, UTF-16, ISO-8859-1 and US-ASCII are supported)"
        )),
    }
}

fn utf8(bytes: &[u8], bom: bool) -> Result<Decoded, String> {
    match std::str::from_utf8(bytes) {
        Ok(t) => Ok(Decoded {
            text: t.to_string(),
            encoding: Encoding::Utf8 { bom },
        }),
        Err(e) => Err(format!(
            "it is not UTF-8 (invalid byte 0x{:02X} at offset {})",
            bytes[e.valid_up_to()],
            e.valid_up_to()
        )),
    }
}

/// The `encoding` of an XML declaration (`<?xml version="1.0" encoding="ISO-8859-1"?>`),
/// lower-cased; `None` when there is no declaration or it names none.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = bytes.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = String::from_utf8_lossy(&head[..end]).into_owned();
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    let close = value.find(quote)?;
    Some(value[..close].trim().to_ascii_lowercase())
}

/// Encodes `text` as `encoding`. Characters that ISO-8859-1 or US-ASCII cannot hold become
/// XML character references (only XML sidecars are ever in those encodings).
pub fn encode(text: &str, encoding: Encoding) -> Vec<u8> {
    let limited = |max: u32| -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            if (c as u32) <= max {
                out.push(c as u32 as u8);
            } else {
                out.extend_from_slice(format!("&#x{:X};", c as u32).as_bytes());
            }
        }
        out
    };
    match encoding {
        Encoding::Utf8 { bom } => {
            let mut out = Vec::with_capacity(text.len() + 3);
            if bom {
                out.extend_from_slice(b"\xEF\xBB\xBF");
            }
            out.extend_from_slice(text.as_bytes());
            out
        }
        Encoding::Utf16Le => std::iter::once(0xFEFFu16)
            .chain(text.encode_utf16())
            .flat_map(u16::to_le_bytes)
            .collect(),
        Encoding::Utf16Be => std::iter::once(0xFEFFu16)
            .chain(text.encode_utf16())
            .flat_map(u16::to_be_bytes)
            .collect(),
        Encoding::Latin1 => limited(0xFF),
        Encoding::Ascii => limited(0x7F),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom_round_trips() {
        for bytes in [
            "café 🐥\n".as_bytes().to_vec(),
            b"\xEF\xBB\xBFcaf\xC3\xA9".to_vec(),
        ] {
            let d = decode(&bytes, Kind::Text).unwrap();
            assert_eq!(encode(&d.text, d.encoding), bytes);
        }
        assert_eq!(decode(b"\xEF\xBB\xBFa", Kind::Text).unwrap().text, "a");
    }

    #[test]
    fn latin1_text_is_refused_not_guessed() {
        let e = decode(b"caf\xE9, tag", Kind::Text).unwrap_err();
        assert!(e.contains("not UTF-8") && e.contains("0xE9"), "{e}");
    }

    #[test]
    fn utf16_with_a_bom() {
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("café".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let d = decode(&le, Kind::Text).unwrap();
        assert_eq!((d.text.as_str(), d.encoding), ("café", Encoding::Utf16Le));
        assert_eq!(encode(&d.text, d.encoding), le);
        assert!(decode(&[0xFE, 0xFF, 0xD8, 0x00], Kind::Text).is_err());
    }

    #[test]
    fn xml_declarations() {
        let x = b"<?xml version='1.0' encoding='ISO-8859-1'?><x>Jos\xE9 M\xFCller</x>";
        let d = decode(x, Kind::Xml).unwrap();
        assert_eq!(
            d.text,
            "<?xml version='1.0' encoding='ISO-8859-1'?><x>José Müller</x>"
        );
        assert_eq!(encode(&d.text, d.encoding), x.to_vec());
        // What Latin-1 cannot hold becomes a character reference.
        assert_eq!(encode("é中", Encoding::Latin1), b"\xE9&#x4E2D;".to_vec());
        // The same bytes with no declaration are not UTF-8.
        assert!(decode(b"<x>Jos\xE9</x>", Kind::Xml).is_err());
        // In a .txt, a declaration means nothing.
        assert!(decode(x, Kind::Text).is_err());
        let e = decode(
            b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><x/>",
            Kind::Xml,
        )
        .unwrap_err();
        assert!(e.contains("shift_jis"), "{e}");
        assert!(decode(b"<?xml encoding=\"us-ascii\"?>\xE9", Kind::Xml).is_err());
        assert_eq!(
            decode(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><x/>", Kind::Xml)
                .unwrap()
                .encoding,
            Encoding::Utf8 { bom: false }
        );
    }
}
