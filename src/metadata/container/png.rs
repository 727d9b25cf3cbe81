//! PNG: walks every chunk to `IEND`, reading only `IHDR`, the text chunks (`tEXt`, `zTXt`,
//! `iTXt`, also after `IDAT`), `eXIf` and `caBX`; everything else (pixel data) is skipped by
//! its length. CRCs are not verified.

use super::{c2pa, exif, inflate, stealth, text, Body, Budget, Input, MAX_CHUNK};
use crate::metadata::{Carrier, Carriers};
use std::io::{self, Read, Seek};

/// The header fields the stealth decoder needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ihdr {
    pub width: u32,
    pub height: u32,
    pub bit_depth: u8,
    pub color_type: u8,
    pub interlace: u8,
}

/// The most of a `caBX` chunk read to summarise the C2PA manifest.
const MAX_C2PA: u64 = 4 << 20;

/// A chunk's header: where it starts, its type (and the type as text) and its length.
struct Chunk {
    at: u64,
    ty: [u8; 4],
    name: String,
    len: u64,
}

/// What the walk gathers across chunks.
#[derive(Default)]
struct Walk {
    ihdr: Option<Ihdr>,
    after_idat: bool,
    first_idat: Option<u64>,
    idat_total: u64,
    seen_c2pa: bool,
}

pub(crate) fn read<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    budget: &mut Budget,
) -> io::Result<()> {
    let mut walk = Walk::default();
    let mut first = true;
    loop {
        if input.remaining() == 0 {
            out.warnings.push(if first {
                "png: file truncated after the signature".to_string()
            } else {
                "png: file ends without an IEND chunk (truncated)".to_string()
            });
            break;
        }
        let Some(chunk) = chunk_header(input, out)? else {
            break;
        };
        if first && &chunk.ty != b"IHDR" {
            out.warnings
                .push(format!("png: first chunk is {}, not IHDR", chunk.name));
        }
        first = false;
        if &chunk.ty == b"IEND" {
            break;
        }
        let body = read_chunk(input, out, budget, &mut walk, &chunk)?;
        // The CRC.
        if body != Body::Complete || !input.skip(4)? {
            if body != Body::TruncatedWarned {
                out.warnings.push(format!(
                    "png: {} chunk at offset {} truncated",
                    chunk.name, chunk.at
                ));
            }
            break;
        }
    }
    let Some(ihdr) = walk.ihdr else {
        if !first {
            out.warnings.push("png: no IHDR chunk".into());
        }
        return Ok(());
    };
    if let Some(first_idat) = walk.first_idat {
        if stealth::worth_trying(out) {
            stealth::from_png(input, first_idat, walk.idat_total, ihdr, out, budget)?;
        }
    }
    Ok(())
}

/// Reads a chunk header; `None` (with a warning) when it is truncated or corrupt.
fn chunk_header<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
) -> io::Result<Option<Chunk>> {
    let at = input.pos();
    let h = input.read_up_to(8)?;
    if h.len() < 8 {
        out.warnings
            .push(format!("png: chunk header at offset {at} truncated"));
        return Ok(None);
    }
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
    let ty: [u8; 4] = [h[4], h[5], h[6], h[7]];
    if len > 0x7FFF_FFFF || !ty.iter().all(u8::is_ascii_alphabetic) {
        out.warnings.push(format!(
            "png: corrupt chunk header at offset {at} (type {:02x?}, length {len}); stopped",
            ty
        ));
        return Ok(None);
    }
    let name = text::latin1(&ty);
    Ok(Some(Chunk { at, ty, name, len }))
}

/// Reads the body of one chunk (other than `IEND`), skipping the chunks that hold no
/// metadata.
fn read_chunk<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    budget: &mut Budget,
    walk: &mut Walk,
    chunk: &Chunk,
) -> io::Result<Body> {
    let complete = match &chunk.ty {
        b"IHDR" => read_ihdr(input, out, &mut walk.ihdr, chunk.len)?,
        b"IDAT" => {
            walk.after_idat = true;
            walk.first_idat.get_or_insert(chunk.at);
            walk.idat_total = walk.idat_total.saturating_add(chunk.len);
            input.skip(chunk.len)?
        }
        b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"caBX" => {
            return read_carrier_chunk(input, out, budget, walk, chunk)
        }
        _ => input.skip(chunk.len)?,
    };
    Ok(Body::of(complete))
}

/// `IHDR`: the first one gives the image size and the header the stealth decoder needs.
fn read_ihdr<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    ihdr: &mut Option<Ihdr>,
    len: u64,
) -> io::Result<bool> {
    let d = input.read_up_to(len.min(13))?;
    if d.len() >= 13 {
        let h = Ihdr {
            width: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
            height: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            bit_depth: d[8],
            color_type: d[9],
            interlace: d[12],
        };
        if ihdr.is_none() {
            out.pixel_width = Some(h.width);
            out.pixel_height = Some(h.height);
            *ihdr = Some(h);
        }
    } else {
        out.warnings
            .push(format!("png: IHDR too short ({} bytes)", d.len()));
    }
    input.skip(len - d.len() as u64)
}

/// The text, `eXIf` and `caBX` chunks: read (within the caps) and turned into carriers.
fn read_carrier_chunk<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    budget: &mut Budget,
    walk: &mut Walk,
    chunk: &Chunk,
) -> io::Result<Body> {
    let Chunk { at, ty, name, len } = chunk;
    let (at, len) = (*at, *len);
    if len > MAX_CHUNK {
        out.warnings.push(format!(
            "png: {name} chunk of {len} bytes skipped (over the limit)"
        ));
        return Ok(Body::of(input.skip(len)?));
    }
    if ty == b"caBX" && walk.seen_c2pa {
        return Ok(Body::of(input.skip(len)?));
    }
    let want = if ty == b"caBX" {
        len.min(MAX_C2PA)
    } else {
        len
    };
    let data = input.read_up_to(want)?;
    let complete = data.len() as u64 == want;
    if !complete {
        out.warnings.push(format!(
            "png: {name} chunk at offset {at} truncated ({} of {len} bytes)",
            data.len()
        ));
    }
    let location = if walk.after_idat {
        format!("png:{name} (after IDAT)")
    } else {
        format!("png:{name}")
    };
    match ty {
        b"eXIf" => {
            exif::parse_tiff(&mut exif::strip_exif_prefix(&data), out)?;
        }
        b"caBX" => {
            walk.seen_c2pa = true;
            out.entries.push(Carrier {
                key: "c2pa".into(),
                location,
                value: c2pa::summary(&data),
            });
        }
        _ => text_chunk(ty, &data, location, out, budget),
    }
    if !complete {
        return Ok(Body::TruncatedWarned);
    }
    Ok(Body::of(input.skip(len - want)?))
}

/// `tEXt` / `zTXt` / `iTXt` (spec A1.1).
fn text_chunk(
    ty: &[u8; 4],
    data: &[u8],
    location: String,
    out: &mut Carriers,
    budget: &mut Budget,
) {
    let name = text::latin1(ty);
    let Some(nul) = data.iter().position(|&b| b == 0) else {
        out.warnings.push(format!(
            "png: {name} chunk without a keyword terminator; skipped"
        ));
        return;
    };
    let key = text::utf8_or_latin1(&data[..nul]);
    let rest = &data[nul + 1..];
    let value = match ty {
        b"tEXt" => Some(text::utf8_or_latin1(rest)),
        b"zTXt" => ztxt_value(&key, rest, out, budget),
        _ => itxt_value(&key, rest, out, budget),
    };
    if let Some(value) = value {
        out.entries.push(Carrier {
            key,
            location,
            value,
        });
    }
}

/// The text of a `zTXt` chunk after its keyword: a method byte and zlib data.
fn ztxt_value(key: &str, rest: &[u8], out: &mut Carriers, budget: &mut Budget) -> Option<String> {
    let Some((&method, z)) = rest.split_first() else {
        out.warnings
            .push(format!("png: zTXt '{key}' has no compression method"));
        return None;
    };
    let raw = inflate_text("zTXt", key, method, z, out, budget)?;
    Some(text::utf8_or_latin1(&raw))
}

/// The text of an `iTXt` chunk after its keyword: flag, method, language \0, translated
/// keyword \0, text.
fn itxt_value(key: &str, rest: &[u8], out: &mut Carriers, budget: &mut Budget) -> Option<String> {
    if rest.len() < 2 {
        out.warnings.push(format!("png: iTXt '{key}' truncated"));
        return None;
    }
    let (flag, method) = (rest[0], rest[1]);
    let mut tail = &rest[2..];
    for _ in 0..2 {
        match tail.iter().position(|&b| b == 0) {
            Some(i) => tail = &tail[i + 1..],
            None => {
                out.warnings
                    .push(format!("png: iTXt '{key}' truncated in its header"));
                return None;
            }
        }
    }
    if flag == 0 {
        return Some(String::from_utf8_lossy(tail).into_owned());
    }
    let raw = inflate_text("iTXt", key, method, tail, out, budget)?;
    Some(String::from_utf8_lossy(&raw).into_owned())
}

/// Decompresses a compressed text chunk's text; `None` (with a warning) for an unknown
/// method or when nothing could be inflated.
fn inflate_text(
    kind: &str,
    key: &str,
    method: u8,
    z: &[u8],
    out: &mut Carriers,
    budget: &mut Budget,
) -> Option<Vec<u8>> {
    if method != 0 {
        out.warnings.push(format!(
            "png: {kind} '{key}' has unknown compression method {method}"
        ));
        return None;
    }
    let (raw, problem) = inflate(z, true, budget);
    if let Some(p) = problem {
        out.warnings.push(format!("png: {kind} '{key}': {p}"));
        if raw.is_empty() {
            return None;
        }
    }
    Some(raw)
}
