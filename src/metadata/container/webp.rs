//! WebP: walks the RIFF chunks, reading `VP8X` and the first bytes of the first `VP8 `/`VP8L`
//! frame (size), `EXIF` (a bare TIFF, or one behind `Exif\0\0`), `XMP ` and `C2PA`; frame
//! payloads, `ANMF`, `ALPH`, `ICCP` are skipped by their length.

use super::{c2pa, exif, stealth, text, Body, Budget, Input, MAX_CHUNK};
use crate::metadata::{Carrier, Carriers};
use std::io::{self, Read, Seek};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Frame {
    Lossy,
    Lossless,
}

/// A chunk's header: where it starts, its FourCC (and as text), its size and its size with
/// the pad byte.
struct Chunk {
    at: u64,
    fourcc: [u8; 4],
    name: String,
    size: u64,
    padded: u64,
}

/// What the walk gathers across chunks.
#[derive(Default)]
struct Walk {
    /// Flags, width and height.
    vp8x: Option<(u8, u32, u32)>,
    first_frame: Option<Frame>,
    frame_size: Option<(u32, u32)>,
}

pub(crate) fn read<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    budget: &mut Budget,
) -> io::Result<()> {
    // The RIFF size (bytes 4..8) is not trusted: the file's real length bounds the walk.
    let mut walk = Walk::default();
    let mut chunks = 0u32;
    loop {
        if input.remaining() == 0 {
            if chunks == 0 {
                out.warnings.push("webp: no chunks (file truncated)".into());
            }
            break;
        }
        let Some(chunk) = chunk_header(input, out)? else {
            break;
        };
        chunks += 1;
        let body = read_chunk(input, out, &mut walk, &chunk)?;
        if body != Body::Complete {
            let Chunk { at, size, .. } = chunk;
            // A missing pad byte after the last chunk is harmless.
            let only_pad = input.remaining() == 0 && input.pos() == at + 8 + size && size & 1 == 1;
            if body != Body::TruncatedWarned && !only_pad {
                out.warnings.push(format!(
                    "webp: {} chunk at offset {at} truncated",
                    chunk.name.trim_end()
                ));
            }
            break;
        }
    }
    let (w, h) = match (walk.vp8x, walk.frame_size) {
        (Some((_, w, h)), _) => (Some(w), Some(h)),
        (None, Some((w, h))) => (Some(w), Some(h)),
        (None, None) => (None, None),
    };
    out.pixel_width = w;
    out.pixel_height = h;
    let animated = walk.vp8x.is_some_and(|(flags, _, _)| flags & 0x02 != 0);
    if let (Some(Frame::Lossless), Some(w), Some(h), false) = (walk.first_frame, w, h, animated) {
        if stealth::worth_trying(out) {
            stealth::from_webp(input, w, h, out, budget)?;
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
            .push(format!("webp: chunk header at offset {at} truncated"));
        return Ok(None);
    }
    let fourcc: [u8; 4] = [h[0], h[1], h[2], h[3]];
    let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    if !fourcc
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b' ')
    {
        out.warnings.push(format!(
            "webp: corrupt chunk header at offset {at} ({fourcc:02x?}); stopped"
        ));
        return Ok(None);
    }
    Ok(Some(Chunk {
        at,
        fourcc,
        name: text::latin1(&fourcc),
        size,
        padded: size + (size & 1),
    }))
}

/// Reads the body of one chunk, skipping the chunks that hold no metadata.
fn read_chunk<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    walk: &mut Walk,
    chunk: &Chunk,
) -> io::Result<Body> {
    let complete = match &chunk.fourcc {
        b"VP8X" => read_vp8x(input, &mut walk.vp8x, chunk)?,
        b"VP8 " | b"VP8L" => read_frame_header(input, out, walk, chunk)?,
        b"EXIF" | b"XMP " | b"C2PA" => return read_carrier_chunk(input, out, chunk),
        _ => input.skip(chunk.padded)?,
    };
    Ok(Body::of(complete))
}

/// `VP8X`: the first one gives the flags and the canvas size.
fn read_vp8x<R: Read + Seek>(
    input: &mut Input<'_, R>,
    vp8x: &mut Option<(u8, u32, u32)>,
    chunk: &Chunk,
) -> io::Result<bool> {
    let d = input.read_up_to(chunk.size.min(10))?;
    if d.len() != 10 {
        return Ok(false);
    }
    let w = 1 + u32::from_le_bytes([d[4], d[5], d[6], 0]);
    let h = 1 + u32::from_le_bytes([d[7], d[8], d[9], 0]);
    if vp8x.is_none() {
        *vp8x = Some((d[0], w, h));
    }
    input.skip(chunk.padded - 10)
}

/// `VP8 ` / `VP8L`: the first frame's kind and the size in its header.
fn read_frame_header<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    walk: &mut Walk,
    chunk: &Chunk,
) -> io::Result<bool> {
    let (frame, want) = if &chunk.fourcc == b"VP8 " {
        (Frame::Lossy, 10)
    } else {
        (Frame::Lossless, 5)
    };
    let d = input.read_up_to(chunk.size.min(want))?;
    if walk.first_frame.is_none() {
        walk.first_frame = Some(frame);
        walk.frame_size = frame_header_size(frame, &d);
        if walk.frame_size.is_none() {
            out.warnings.push(format!(
                "webp: {} frame header unreadable",
                chunk.name.trim_end()
            ));
        }
    }
    Ok(d.len() as u64 == chunk.size.min(want) && input.skip(chunk.padded - d.len() as u64)?)
}

/// `EXIF`, `XMP ` and `C2PA`: read (within [`MAX_CHUNK`]) and turned into carriers.
fn read_carrier_chunk<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    chunk: &Chunk,
) -> io::Result<Body> {
    let Chunk {
        at,
        fourcc,
        name,
        size,
        padded,
    } = chunk;
    let (at, size, padded) = (*at, *size, *padded);
    if size > MAX_CHUNK {
        out.warnings.push(format!(
            "webp: {name} chunk of {size} bytes skipped (over the limit)"
        ));
        return Ok(Body::of(input.skip(padded)?));
    }
    let d = input.read_up_to(size)?;
    let complete = d.len() as u64 == size;
    if !complete {
        out.warnings.push(format!(
            "webp: {} chunk at offset {at} truncated ({} of {size} bytes)",
            name.trim_end(),
            d.len()
        ));
    }
    match fourcc {
        b"EXIF" => {
            exif::parse_tiff(&mut exif::strip_exif_prefix(&d), out)?;
        }
        b"XMP " => out.entries.push(Carrier {
            key: "xmp".into(),
            location: "webp:XMP".into(),
            value: String::from_utf8_lossy(text::trim_trailing_nuls(&d)).into_owned(),
        }),
        _ => out.entries.push(Carrier {
            key: "c2pa".into(),
            location: "webp:C2PA".into(),
            value: c2pa::summary(&d),
        }),
    }
    if !complete {
        return Ok(Body::TruncatedWarned);
    }
    Ok(Body::of(input.skip(padded - size)?))
}

/// The size in a `VP8 ` (key frame: start code `9d 01 2a`, 14-bit sizes) or `VP8L` (signature
/// 0x2f, 14-bit width-1 and height-1) frame header.
fn frame_header_size(frame: Frame, d: &[u8]) -> Option<(u32, u32)> {
    match frame {
        Frame::Lossy => {
            if d.len() < 10 || d[3..6] != [0x9d, 0x01, 0x2a] {
                return None;
            }
            let w = u16::from_le_bytes([d[6], d[7]]) & 0x3fff;
            let h = u16::from_le_bytes([d[8], d[9]]) & 0x3fff;
            Some((w as u32, h as u32))
        }
        Frame::Lossless => {
            if d.len() < 5 || d[0] != 0x2f {
                return None;
            }
            let v = u32::from_le_bytes([d[1], d[2], d[3], d[4]]);
            Some(((v & 0x3fff) + 1, ((v >> 14) & 0x3fff) + 1))
        }
    }
}
