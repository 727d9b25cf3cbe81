//! PNG: walks every chunk to `IEND`, reading only `IHDR`, the text chunks (`tEXt`, `zTXt`,
//! `iTXt`, also after `IDAT`), `eXIf` and `caBX`; everything else (pixel data) is skipped by
//! its length. CRCs are not verified.

use super::{c2pa, exif, inflate, stealth, text, Budget, Input, MAX_CHUNK};
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

pub(crate) fn read<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    budget: &mut Budget,
) -> io::Result<()> {
    let mut ihdr: Option<Ihdr> = None;
    let mut after_idat = false;
    let mut first_idat: Option<u64> = None;
    let mut idat_total: u64 = 0;
    let mut seen_c2pa = false;
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
        let at = input.pos();
        let h = input.read_up_to(8)?;
        if h.len() < 8 {
            out.warnings
                .push(format!("png: chunk header at offset {at} truncated"));
            break;
        }
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
        let ty: [u8; 4] = [h[4], h[5], h[6], h[7]];
        let name = text::latin1(&ty);
        if len > 0x7FFF_FFFF || !ty.iter().all(u8::is_ascii_alphabetic) {
            out.warnings.push(format!(
                "png: corrupt chunk header at offset {at} (type {:02x?}, length {len}); stopped",
                ty
            ));
            break;
        }
        if first && &ty != b"IHDR" {
            out.warnings
                .push(format!("png: first chunk is {name}, not IHDR"));
        }
        first = false;
        let mut reported = false;
        let body_ok = match &ty {
            b"IHDR" => {
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
                        ihdr = Some(h);
                    }
                } else {
                    out.warnings
                        .push(format!("png: IHDR too short ({} bytes)", d.len()));
                }
                input.skip(len - d.len() as u64)?
            }
            b"IDAT" => {
                after_idat = true;
                first_idat.get_or_insert(at);
                idat_total = idat_total.saturating_add(len);
                input.skip(len)?
            }
            b"IEND" => break,
            b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"caBX" => {
                if len > MAX_CHUNK {
                    out.warnings.push(format!(
                        "png: {name} chunk of {len} bytes skipped (over the limit)"
                    ));
                    input.skip(len)?
                } else if &ty == b"caBX" && seen_c2pa {
                    input.skip(len)?
                } else {
                    let want = if &ty == b"caBX" {
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
                        reported = true;
                    }
                    let location = if after_idat {
                        format!("png:{name} (after IDAT)")
                    } else {
                        format!("png:{name}")
                    };
                    match &ty {
                        b"eXIf" => {
                            exif::parse_tiff(&mut exif::strip_exif_prefix(&data), out)?;
                        }
                        b"caBX" => {
                            seen_c2pa = true;
                            out.entries.push(Carrier {
                                key: "c2pa".into(),
                                location,
                                value: c2pa::summary(&data),
                            });
                        }
                        _ => text_chunk(&ty, &data, location, out, budget),
                    }
                    complete && input.skip(len - want)?
                }
            }
            _ => input.skip(len)?,
        };
        // The CRC.
        if !body_ok || !input.skip(4)? {
            if !reported {
                out.warnings
                    .push(format!("png: {name} chunk at offset {at} truncated"));
            }
            break;
        }
    }
    let Some(ihdr) = ihdr else {
        if !first {
            out.warnings.push("png: no IHDR chunk".into());
        }
        return Ok(());
    };
    if let Some(first_idat) = first_idat {
        if stealth::worth_trying(out) {
            stealth::from_png(input, first_idat, idat_total, ihdr, out, budget)?;
        }
    }
    Ok(())
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
        b"tEXt" => text::utf8_or_latin1(rest),
        b"zTXt" => {
            let Some((&method, z)) = rest.split_first() else {
                out.warnings
                    .push(format!("png: zTXt '{key}' has no compression method"));
                return;
            };
            if method != 0 {
                out.warnings.push(format!(
                    "png: zTXt '{key}' has unknown compression method {method}"
                ));
                return;
            }
            let (raw, problem) = inflate(z, true, budget);
            if let Some(p) = problem {
                out.warnings.push(format!("png: zTXt '{key}': {p}"));
                if raw.is_empty() {
                    return;
                }
            }
            text::utf8_or_latin1(&raw)
        }
        _ => {
            // iTXt: flag, method, language \0, translated keyword \0, text.
            if rest.len() < 2 {
                out.warnings.push(format!("png: iTXt '{key}' truncated"));
                return;
            }
            let (flag, method) = (rest[0], rest[1]);
            let mut tail = &rest[2..];
            for _ in 0..2 {
                match tail.iter().position(|&b| b == 0) {
                    Some(i) => tail = &tail[i + 1..],
                    None => {
                        out.warnings
                            .push(format!("png: iTXt '{key}' truncated in its header"));
                        return;
                    }
                }
            }
            if flag == 0 {
                String::from_utf8_lossy(tail).into_owned()
            } else {
                if method != 0 {
                    out.warnings.push(format!(
                        "png: iTXt '{key}' has unknown compression method {method}"
                    ));
                    return;
                }
                let (raw, problem) = inflate(tail, true, budget);
                if let Some(p) = problem {
                    out.warnings.push(format!("png: iTXt '{key}': {p}"));
                    if raw.is_empty() {
                        return;
                    }
                }
                String::from_utf8_lossy(&raw).into_owned()
            }
        }
    };
    out.entries.push(Carrier {
        key,
        location,
        value,
    });
}
