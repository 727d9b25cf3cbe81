//! TIFF / EXIF: both byte orders, IFD0 and the Exif SubIFD (pointer 0x8769). Emits the text
//! tags that carry generation data as `exif:<TagName>` carriers located `exif:IFD0` or
//! `exif:ExifIFD`. Counts and offsets are bounded by the data, IFD loops are cut by a visited
//! set, and nothing panics on malformed input.

use super::text;
use super::{Input, MAX_CHUNK};
use crate::metadata::{Carrier, Carriers};
use std::io::{self, Read, Seek};

/// Random access to the bytes of one TIFF structure (an in-memory EXIF block, or a TIFF file).
pub(crate) trait Source {
    fn len(&self) -> u64;
    /// Up to `n` bytes at `off`; fewer at the end of the data.
    fn read_at(&mut self, off: u64, n: usize) -> io::Result<Vec<u8>>;
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&mut self, off: u64, n: usize) -> io::Result<Vec<u8>> {
        let start = usize::try_from(off)
            .unwrap_or(usize::MAX)
            .min(<[u8]>::len(self));
        let end = start.saturating_add(n).min(<[u8]>::len(self));
        Ok(self[start..end].to_vec())
    }
}

/// A whole TIFF file read through the streaming input (offsets are absolute in the file).
pub(crate) struct FileSource<'i, 'r, R> {
    pub input: &'i mut Input<'r, R>,
}

impl<R: Read + Seek> Source for FileSource<'_, '_, R> {
    fn len(&self) -> u64 {
        self.input.len()
    }
    fn read_at(&mut self, off: u64, n: usize) -> io::Result<Vec<u8>> {
        self.input.seek_to(off)?;
        self.input.read_up_to(n as u64)
    }
}

/// The tags read as carriers, with their `exif:` names.
fn tag_name(tag: u16) -> Option<&'static str> {
    Some(match tag {
        0x010D => "DocumentName",
        0x010E => "ImageDescription",
        0x010F => "Make",
        0x0110 => "Model",
        0x0131 => "Software",
        0x013B => "Artist",
        0x9286 => "UserComment",
        0x927C => "MakerNote",
        _ => return None,
    })
}

fn type_size(typ: u16) -> Option<u64> {
    Some(match typ {
        1 | 2 | 6 | 7 | 129 => 1, // BYTE, ASCII, SBYTE, UNDEFINED, UTF-8 (EXIF 3.0)
        3 | 8 => 2,               // SHORT, SSHORT
        4 | 9 | 11 | 13 => 4,     // LONG, SLONG, FLOAT, IFD
        5 | 10 | 12 => 8,         // RATIONAL, SRATIONAL, DOUBLE
        16..=18 => 8,             // BigTIFF LONG8/SLONG8/IFD8
        _ => return None,
    })
}

struct Tiff {
    be: bool,
}

impl Tiff {
    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.be {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
    /// Decodes a 12-byte IFD entry.
    fn entry<'e>(&self, e: &'e [u8]) -> Entry<'e> {
        Entry {
            tag: self.u16(&e[0..2]),
            typ: self.u16(&e[2..4]),
            cnt: self.u32(&e[4..8]) as u64,
            field: &e[8..12],
        }
    }
}

/// What a TIFF parse gives beyond the carriers: the image size (for TIFF files).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TiffInfo {
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Strips an optional `Exif\0\0` prefix (WebP `EXIF` chunks, PNG `eXIf` from some writers).
pub(crate) fn strip_exif_prefix(data: &[u8]) -> &[u8] {
    if data.starts_with(b"Exif\0") && data.len() >= 6 {
        &data[6..]
    } else {
        data
    }
}

/// Parses one TIFF structure and appends its text tags to `out`. Problems become warnings
/// (prefixed `exif:`); only I/O errors of the underlying reader are returned.
pub(crate) fn parse_tiff<S: Source>(src: &mut S, out: &mut Carriers) -> io::Result<TiffInfo> {
    let info = TiffInfo::default();
    let head = src.read_at(0, 8)?;
    if head.len() < 8 {
        out.warnings.push(format!(
            "exif: TIFF header truncated ({} bytes)",
            head.len()
        ));
        return Ok(info);
    }
    let t = match &head[..4] {
        b"II*\0" => Tiff { be: false },
        b"MM\0*" => Tiff { be: true },
        b"II+\0" | b"MM\0+" => {
            out.warnings.push("exif: BigTIFF is not supported".into());
            return Ok(info);
        }
        other => {
            out.warnings
                .push(format!("exif: not a TIFF header ({other:02x?})"));
            return Ok(info);
        }
    };
    let ifd0 = t.u32(&head[4..8]) as u64;
    let mut parser = Parser {
        src,
        t,
        visited: Vec::new(),
        out,
        info,
    };
    if let Some(off) = parser.parse_ifd(ifd0, "IFD0")? {
        parser.parse_ifd(off, "ExifIFD")?;
    }
    Ok(parser.info)
}

/// One TIFF structure being parsed: its bytes and byte order, the IFDs already read (to cut
/// loops), and where its carriers, warnings and size go.
struct Parser<'a, S> {
    src: &'a mut S,
    t: Tiff,
    visited: Vec<u64>,
    out: &'a mut Carriers,
    info: TiffInfo,
}

/// One 12-byte IFD entry.
struct Entry<'e> {
    tag: u16,
    typ: u16,
    cnt: u64,
    /// The value itself when it fits in 4 bytes, else its offset.
    field: &'e [u8],
}

impl<S: Source> Parser<'_, S> {
    /// Reads the IFD at `off`; returns the Exif SubIFD's offset when IFD0 points to one.
    fn parse_ifd(&mut self, off: u64, name: &str) -> io::Result<Option<u64>> {
        let len = self.src.len();
        let Some(n) = self.entry_count(off, name, len)? else {
            return Ok(None);
        };
        let entries = self.src.read_at(off + 2, (n * 12) as usize)?;
        let mut exif_ifd = None;
        for e in entries.chunks_exact(12) {
            let entry = self.t.entry(e);
            if name == "IFD0" && self.ifd0_tag(&entry, &mut exif_ifd) {
                continue;
            }
            self.text_tag(&entry, name, len)?;
        }
        Ok(exif_ifd)
    }

    /// How many entries of the IFD at `off` to read: `None` (with a warning) when it was
    /// already read or lies outside the data; fewer than it claims when they don't fit.
    fn entry_count(&mut self, off: u64, name: &str, len: u64) -> io::Result<Option<u64>> {
        if self.visited.contains(&off) {
            self.out.warnings.push(format!(
                "exif: {name} at offset {off} points back to an IFD already read (loop)"
            ));
            return Ok(None);
        }
        self.visited.push(off);
        if off < 8 || off.saturating_add(2) > len {
            self.out.warnings.push(format!(
                "exif: {name} offset {off} is outside the data ({len} bytes)"
            ));
            return Ok(None);
        }
        let c = self.src.read_at(off, 2)?;
        if c.len() < 2 {
            self.out.warnings.push(format!("exif: {name} truncated"));
            return Ok(None);
        }
        let count = self.t.u16(&c) as u64;
        let fits = (len - off - 2) / 12;
        if count > fits {
            self.out.warnings.push(format!(
                "exif: {name} claims {count} entries, only {fits} fit in the data"
            ));
        }
        Ok(Some(count.min(fits)))
    }

    /// IFD0's structural tags: the Exif SubIFD pointer and the image size. False for any
    /// other tag.
    fn ifd0_tag(&mut self, e: &Entry<'_>, exif_ifd: &mut Option<u64>) -> bool {
        let t = &self.t;
        match e.tag {
            0x8769 => *exif_ifd = Some(t.u32(e.field) as u64),
            0x0100 | 0x0101 => {
                let v = match e.typ {
                    3 => Some(t.u16(e.field) as u32),
                    4 => Some(t.u32(e.field)),
                    _ => None,
                };
                if e.tag == 0x0100 {
                    self.info.width = v;
                } else {
                    self.info.height = v;
                }
            }
            _ => return false,
        }
        true
    }

    /// A tag read as a carrier (see [`tag_name`]), when it holds text.
    fn text_tag(&mut self, e: &Entry<'_>, name: &str, len: u64) -> io::Result<()> {
        let Some(tag_name) = tag_name(e.tag) else {
            return Ok(());
        };
        let (tag, typ) = (e.tag, e.typ);
        let Some(size) = type_size(typ).and_then(|s| s.checked_mul(e.cnt)) else {
            self.out.warnings.push(format!(
                "exif: {name} tag 0x{tag:04x} has unknown type {typ}"
            ));
            return Ok(());
        };
        if !matches!(typ, 1 | 2 | 7 | 129) {
            return Ok(()); // a text tag written as numbers: nothing to read as text
        }
        let bytes = if size <= 4 {
            e.field[..size as usize].to_vec()
        } else {
            match self.value_at_offset(e, tag_name, size, len)? {
                Some(b) => b,
                None => return Ok(()),
            }
        };
        let value = match (tag, typ) {
            (0x9286, _) => Some(text::user_comment(&bytes, self.t.be)),
            (0x927C, 7 | 1) => text::strict_text(&bytes),
            (_, 129) => {
                Some(String::from_utf8_lossy(text::trim_trailing_nuls(&bytes)).into_owned())
            }
            _ => Some(text::exif_ascii(&bytes)),
        };
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.out.entries.push(Carrier {
                key: format!("exif:{tag_name}"),
                location: format!("exif:{name}"),
                value,
            });
        }
        Ok(())
    }

    /// The bytes of a value too long for its entry, read at the offset the entry holds;
    /// `None` (with a warning) when over [`MAX_CHUNK`] or outside the data.
    fn value_at_offset(
        &mut self,
        e: &Entry<'_>,
        tag_name: &str,
        size: u64,
        len: u64,
    ) -> io::Result<Option<Vec<u8>>> {
        let voff = self.t.u32(e.field) as u64;
        if size > MAX_CHUNK {
            self.out
                .warnings
                .push(format!("exif: {tag_name} claims {size} bytes; skipped"));
            return Ok(None);
        }
        if voff >= len {
            self.out.warnings.push(format!(
                "exif: {tag_name} value offset {voff} is outside the data ({len} bytes)"
            ));
            return Ok(None);
        }
        let b = self.src.read_at(voff, size as usize)?;
        if (b.len() as u64) < size {
            self.out.warnings.push(format!(
                "exif: {tag_name} truncated ({} of {size} bytes)",
                b.len()
            ));
        }
        Ok(Some(b))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a TIFF with the given IFD0 and Exif-IFD entries `(tag, type, value bytes)`.
    pub fn build_tiff(
        be: bool,
        ifd0: &[(u16, u16, Vec<u8>)],
        exif: &[(u16, u16, Vec<u8>)],
    ) -> Vec<u8> {
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut ifd0: Vec<(u16, u16, Vec<u8>)> = ifd0.to_vec();
        let has_exif = !exif.is_empty();
        if has_exif {
            ifd0.push((0x8769, 4, vec![0; 4])); // patched below
        }
        let ifd_size = |n: usize| 2 + 12 * n + 4;
        let ifd0_off = 8usize;
        let exif_off = ifd0_off + ifd_size(ifd0.len());
        let mut data_off = exif_off + if has_exif { ifd_size(exif.len()) } else { 0 };
        let mut out = Vec::new();
        out.extend(if be { b"MM\0*" } else { b"II*\0" });
        out.extend(w32(ifd0_off as u32));
        let mut blobs = Vec::new();
        let mut write_ifd =
            |out: &mut Vec<u8>, entries: &[(u16, u16, Vec<u8>)], blobs: &mut Vec<u8>| {
                out.extend(w16(entries.len() as u16));
                for (tag, typ, val) in entries {
                    out.extend(w16(*tag));
                    out.extend(w16(*typ));
                    let count = if *typ == 4 { val.len() / 4 } else { val.len() };
                    out.extend(w32(count as u32));
                    if *tag == 0x8769 {
                        out.extend(w32(exif_off as u32));
                    } else if val.len() <= 4 {
                        let mut v = val.clone();
                        v.resize(4, 0);
                        out.extend(v);
                    } else {
                        out.extend(w32(data_off as u32));
                        data_off += val.len();
                        blobs.extend(val);
                    }
                }
                out.extend(w32(0));
            };
        write_ifd(&mut out, &ifd0, &mut blobs);
        if has_exif {
            write_ifd(&mut out, exif, &mut blobs);
        }
        out.extend(blobs);
        out
    }

    fn parse(data: &[u8]) -> Carriers {
        let mut out = Carriers::default();
        parse_tiff(&mut &data[..], &mut out).unwrap();
        out
    }

    fn utf16(s: &str, be: bool) -> Vec<u8> {
        let mut v = b"UNICODE\0".to_vec();
        v.extend(
            s.encode_utf16()
                .flat_map(|u| if be { u.to_be_bytes() } else { u.to_le_bytes() }),
        );
        v
    }

    #[test]
    fn both_byte_orders_ifd0_and_exif_ifd() {
        for be in [false, true] {
            let tiff = build_tiff(
                be,
                &[
                    (0x010F, 2, b"workflow:{\"a\":1}\0".to_vec()),
                    (0x0131, 2, b"NovelAI\0".to_vec()),
                    (0x013B, 2, b"ai\0".to_vec()),
                ],
                &[(0x9286, 7, utf16("1girl, テスト\nSteps: 20", true))],
            );
            let c = parse(&tiff);
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
            let got: Vec<_> = c
                .entries
                .iter()
                .map(|e| (e.key.as_str(), e.location.as_str(), e.value.as_str()))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("exif:Make", "exif:IFD0", "workflow:{\"a\":1}"),
                    ("exif:Software", "exif:IFD0", "NovelAI"),
                    ("exif:Artist", "exif:IFD0", "ai"),
                    (
                        "exif:UserComment",
                        "exif:ExifIFD",
                        "1girl, テスト\nSteps: 20"
                    ),
                ]
            );
        }
    }

    #[test]
    fn user_comment_be_and_le_inside_ii() {
        for text_be in [true, false] {
            let tiff = build_tiff(
                false,
                &[],
                &[(0x9286, 7, utf16("Steps: 20, Sampler: Euler", text_be))],
            );
            assert_eq!(
                parse(&tiff).value("exif:UserComment"),
                Some("Steps: 20, Sampler: Euler")
            );
        }
    }

    #[test]
    fn ifd0_user_comment_without_header_and_makernote() {
        let tiff = build_tiff(
            true,
            &[
                (0x9286, 2, b"{\"prompt\": {}}\0".to_vec()),
                (0x0131, 2, b"Fooocus v2.5\0".to_vec()),
                (0x927C, 7, b"fooocus".to_vec()),
            ],
            &[(0x927C, 7, vec![0x4e, 0x69, 0x00, 0x02, 0x10, 0x00, 0xff])],
        );
        let c = parse(&tiff);
        assert_eq!(c.get("exif:UserComment").unwrap().location, "exif:IFD0");
        assert_eq!(c.value("exif:UserComment"), Some("{\"prompt\": {}}"));
        assert_eq!(c.value("exif:MakerNote"), Some("fooocus"));
        // The binary maker note is not text.
        assert_eq!(
            c.entries
                .iter()
                .filter(|e| e.key == "exif:MakerNote")
                .count(),
            1
        );
    }

    #[test]
    fn novelai_description_leading_nuls() {
        let tiff = build_tiff(
            true,
            &[(0x010E, 2, b"\0\0\0\x001girl, solo\0".to_vec())],
            &[],
        );
        assert_eq!(
            parse(&tiff).value("exif:ImageDescription"),
            Some("1girl, solo")
        );
    }

    #[test]
    fn ifd_loop_and_bad_offsets_warn() {
        // Exif pointer back to IFD0.
        let mut tiff = build_tiff(
            false,
            &[(0x0131, 2, b"x\0".to_vec())],
            &[(0x0131, 2, b"y\0".to_vec())],
        );
        // Patch the 0x8769 value (second IFD0 entry) to point at IFD0 (offset 8).
        let p = 8 + 2 + 12 + 8;
        tiff[p..p + 4].copy_from_slice(&8u32.to_le_bytes());
        let c = parse(&tiff);
        assert_eq!(c.value("exif:Software"), Some("x"));
        assert!(
            c.warnings.iter().any(|w| w.contains("loop")),
            "{:?}",
            c.warnings
        );

        // Huge count, value offset past the end.
        let mut t = b"II*\0\x08\0\0\0".to_vec();
        t.extend(0xFFFFu16.to_le_bytes());
        t.extend(0x9286u16.to_le_bytes());
        t.extend(7u16.to_le_bytes());
        t.extend(0xFFFF_FFF0u32.to_le_bytes());
        t.extend(0x7FFF_0000u32.to_le_bytes());
        let c = parse(&t);
        assert!(c.entries.is_empty());
        assert!(!c.warnings.is_empty());
        // Garbage and truncation.
        assert!(!parse(b"II*").warnings.is_empty());
        assert!(!parse(b"XX*\0\0\0\0\0").warnings.is_empty());
        assert!(!parse(b"MM\0*\xff\xff\xff\xff").warnings.is_empty());
    }

    #[test]
    fn every_prefix_of_a_tiff_is_safe() {
        let tiff = build_tiff(
            true,
            &[(0x010F, 2, b"a long make value\0".to_vec())],
            &[(0x9286, 7, utf16("abc", true))],
        );
        for n in 0..tiff.len() {
            let _ = parse(&tiff[..n]);
        }
    }
}
