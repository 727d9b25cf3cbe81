//! JPEG: walks the marker segments up to the first SOS (metadata precedes the entropy-coded
//! data), reading only APP1 (EXIF, XMP), APP11 (C2PA JUMBF), `COM` and the first bytes of
//! SOFn; every other segment is skipped by its length.

use super::{c2pa, exif, text, Budget, Input};
use crate::metadata::{Carrier, Carriers};
use std::io::{self, Read, Seek};

const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// The most APP11 (C2PA) bytes gathered for the summary.
const MAX_C2PA: usize = 4 << 20;

/// A segment's marker, where its marker starts, and its payload length (without the length
/// field).
struct Segment {
    marker: u8,
    at: u64,
    plen: u64,
}

/// What the walk gathers across segments.
#[derive(Default)]
struct Walk {
    c2pa_bytes: Vec<u8>,
    seen_sof: bool,
    seen_sos: bool,
}

/// What the bytes at a marker position turned out to be.
enum Marker {
    /// A segment with a length field follows.
    Segment(u8),
    /// A marker without a length (SOI, TEM, RSTn).
    Standalone,
    /// Start of scan: the metadata is over.
    Scan,
    /// End of image, end of file, or bytes that are not a marker.
    Stop,
}

pub(crate) fn read<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    _budget: &mut Budget,
) -> io::Result<()> {
    let mut walk = Walk::default();
    loop {
        let at = input.pos();
        let marker = match next_marker(input, out, at)? {
            Marker::Segment(m) => m,
            Marker::Standalone => continue,
            Marker::Scan => {
                walk.seen_sos = true;
                break;
            }
            Marker::Stop => break,
        };
        let Some(plen) = payload_length(input, out, marker, at)? else {
            break;
        };
        let seg = Segment { marker, at, plen };
        if !read_segment(input, out, &mut walk, &seg)? {
            warn_truncated(out, &seg);
            break;
        }
    }
    if !walk.c2pa_bytes.is_empty() && memchr(&walk.c2pa_bytes, b"c2pa") {
        out.entries.push(Carrier {
            key: "c2pa".into(),
            location: "jpeg:APP11".into(),
            value: c2pa::summary(&walk.c2pa_bytes),
        });
    }
    if walk.seen_sos && !walk.seen_sof {
        out.warnings
            .push("jpeg: no frame header (SOF) before the scan".into());
    }
    Ok(())
}

/// Reads the marker at `at` (skipping fill bytes) and classifies it, warning when the file
/// ends or holds no marker there.
fn next_marker<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    at: u64,
) -> io::Result<Marker> {
    let b = input.read_up_to(2)?;
    if b.len() < 2 {
        out.warnings.push(format!(
            "jpeg: file ends at offset {at} before the image data (truncated)"
        ));
        return Ok(Marker::Stop);
    }
    if b[0] != 0xFF {
        out.warnings.push(format!(
            "jpeg: expected a marker at offset {at}, found 0x{:02x}; stopped",
            b[0]
        ));
        return Ok(Marker::Stop);
    }
    let mut m = b[1];
    // Fill bytes: any number of 0xFF before the marker code.
    while m == 0xFF {
        match input.read_up_to(1)?.first() {
            Some(&n) => m = n,
            None => break,
        }
    }
    Ok(match m {
        0xFF => {
            out.warnings
                .push("jpeg: file ends inside a marker (truncated)".into());
            Marker::Stop
        }
        0xD8 | 0x01 | 0xD0..=0xD7 => Marker::Standalone,
        0xD9 => Marker::Stop, // EOI before any scan
        0xDA => Marker::Scan,
        _ => Marker::Segment(m),
    })
}

/// Reads a segment's length field: the payload length, or `None` (with a warning) when it is
/// truncated or too small.
fn payload_length<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    m: u8,
    at: u64,
) -> io::Result<Option<u64>> {
    let l = input.read_up_to(2)?;
    if l.len() < 2 {
        out.warnings
            .push(format!("jpeg: segment 0x{m:02x} at offset {at} truncated"));
        return Ok(None);
    }
    let len = u16::from_be_bytes([l[0], l[1]]) as u64;
    if len < 2 {
        out.warnings.push(format!(
            "jpeg: segment 0x{m:02x} at offset {at} has length {len}; stopped"
        ));
        return Ok(None);
    }
    Ok(Some(len - 2))
}

/// Reads (or skips) one segment's payload; false when the file ends inside it.
fn read_segment<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    walk: &mut Walk,
    seg: &Segment,
) -> io::Result<bool> {
    match seg.marker {
        0xE1 => read_app1(input, out, seg),
        0xEB if walk.c2pa_bytes.len() < MAX_C2PA => read_app11(input, seg, &mut walk.c2pa_bytes),
        0xFE => read_comment(input, out, seg),
        0xC0..=0xCF if !matches!(seg.marker, 0xC4 | 0xC8 | 0xCC) => {
            read_sof(input, out, seg, &mut walk.seen_sof)
        }
        _ => input.skip(seg.plen),
    }
}

/// APP1: EXIF or XMP. Peeks at the identifier and reads the rest only for those two.
fn read_app1<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    seg: &Segment,
) -> io::Result<bool> {
    let (at, plen) = (seg.at, seg.plen);
    let head = input.read_up_to(plen.min(XMP_HEADER.len() as u64))?;
    let is_exif = head.starts_with(b"Exif\0");
    let is_xmp = head.starts_with(XMP_HEADER);
    if !is_exif && !is_xmp {
        let got = head.len() as u64;
        return Ok(got == plen.min(XMP_HEADER.len() as u64) && input.skip(plen - got)?);
    }
    let mut data = head;
    let rest_len = plen - data.len() as u64;
    data.extend(input.read_up_to(rest_len)?);
    let complete = data.len() as u64 == plen;
    if !complete {
        out.warnings.push(format!(
            "jpeg: APP1 segment at offset {at} truncated ({} of {plen} bytes)",
            data.len()
        ));
    }
    if is_exif {
        let tiff = data.get(6..).unwrap_or_default();
        exif::parse_tiff(&mut &tiff[..], out)?;
    } else {
        let xmp = text::trim_trailing_nuls(&data[XMP_HEADER.len()..]);
        out.entries.push(Carrier {
            key: "xmp".into(),
            location: "jpeg:APP1".into(),
            value: String::from_utf8_lossy(xmp).into_owned(),
        });
    }
    Ok(complete)
}

/// APP11: gathers JUMBF boxes (C2PA) up to [`MAX_C2PA`] bytes.
fn read_app11<R: Read + Seek>(
    input: &mut Input<'_, R>,
    seg: &Segment,
    c2pa_bytes: &mut Vec<u8>,
) -> io::Result<bool> {
    let data = input.read_up_to(seg.plen)?;
    let complete = data.len() as u64 == seg.plen;
    if data.starts_with(b"JP") {
        let room = MAX_C2PA - c2pa_bytes.len();
        c2pa_bytes.extend(&data[..data.len().min(room)]);
    }
    Ok(complete)
}

/// `COM`: a non-empty comment becomes a carrier.
fn read_comment<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    seg: &Segment,
) -> io::Result<bool> {
    let data = input.read_up_to(seg.plen)?;
    let complete = data.len() as u64 == seg.plen;
    let value = text::utf8_or_latin1(text::trim_trailing_nuls(&data));
    if !value.is_empty() {
        out.entries.push(Carrier {
            key: "jpeg:comment".into(),
            location: "jpeg:COM".into(),
            value,
        });
    }
    Ok(complete)
}

/// SOFn: the image size from the first frame header; the rest of the segment is skipped.
fn read_sof<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    seg: &Segment,
    seen_sof: &mut bool,
) -> io::Result<bool> {
    let d = input.read_up_to(seg.plen.min(5))?;
    if d.len() != 5 {
        return Ok(false);
    }
    if !*seen_sof {
        let h = u16::from_be_bytes([d[1], d[2]]) as u32;
        let w = u16::from_be_bytes([d[3], d[4]]) as u32;
        out.pixel_width = Some(w);
        out.pixel_height = (h != 0).then_some(h); // 0: defined later by DNL
    }
    *seen_sof = true;
    input.skip(seg.plen - 5)
}

/// Warns that a segment ends early, unless its reader already said so.
fn warn_truncated(out: &mut Carriers, seg: &Segment) {
    let at = seg.at;
    if !out
        .warnings
        .iter()
        .any(|w| w.contains(&format!("offset {at} truncated")))
    {
        out.warnings.push(format!(
            "jpeg: segment 0x{:02x} at offset {at} truncated",
            seg.marker
        ));
    }
}

fn memchr(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
