//! JPEG: walks the marker segments up to the first SOS (metadata precedes the entropy-coded
//! data), reading only APP1 (EXIF, XMP), APP11 (C2PA JUMBF), `COM` and the first bytes of
//! SOFn; every other segment is skipped by its length.

use super::{c2pa, exif, text, Budget, Input};
use crate::metadata::{Carrier, Carriers};
use std::io::{self, Read, Seek};

const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// The most APP11 (C2PA) bytes gathered for the summary.
const MAX_C2PA: usize = 4 << 20;

pub(crate) fn read<R: Read + Seek>(
    input: &mut Input<'_, R>,
    out: &mut Carriers,
    _budget: &mut Budget,
) -> io::Result<()> {
    let mut c2pa_bytes: Vec<u8> = Vec::new();
    let mut seen_sof = false;
    let mut seen_sos = false;
    loop {
        let at = input.pos();
        let b = input.read_up_to(2)?;
        if b.len() < 2 {
            out.warnings.push(format!(
                "jpeg: file ends at offset {at} before the image data (truncated)"
            ));
            break;
        }
        if b[0] != 0xFF {
            out.warnings.push(format!(
                "jpeg: expected a marker at offset {at}, found 0x{:02x}; stopped",
                b[0]
            ));
            break;
        }
        let mut m = b[1];
        // Fill bytes: any number of 0xFF before the marker code.
        while m == 0xFF {
            match input.read_up_to(1)?.first() {
                Some(&n) => m = n,
                None => break,
            }
        }
        match m {
            0xFF => {
                out.warnings
                    .push("jpeg: file ends inside a marker (truncated)".into());
                break;
            }
            0xD8 | 0x01 | 0xD0..=0xD7 => continue, // no length
            0xD9 => break,                         // EOI before any scan
            0xDA => {
                seen_sos = true;
                break;
            }
            _ => {}
        }
        let l = input.read_up_to(2)?;
        if l.len() < 2 {
            out.warnings
                .push(format!("jpeg: segment 0x{m:02x} at offset {at} truncated"));
            break;
        }
        let len = u16::from_be_bytes([l[0], l[1]]) as u64;
        if len < 2 {
            out.warnings.push(format!(
                "jpeg: segment 0x{m:02x} at offset {at} has length {len}; stopped"
            ));
            break;
        }
        let plen = len - 2;
        let complete = match m {
            0xE1 => {
                // Peek at the identifier, read the rest only for EXIF and XMP.
                let head = input.read_up_to(plen.min(XMP_HEADER.len() as u64))?;
                let is_exif = head.starts_with(b"Exif\0");
                let is_xmp = head.starts_with(XMP_HEADER);
                if is_exif || is_xmp {
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
                    complete
                } else {
                    let got = head.len() as u64;
                    got == plen.min(XMP_HEADER.len() as u64) && input.skip(plen - got)?
                }
            }
            0xEB if c2pa_bytes.len() < MAX_C2PA => {
                let data = input.read_up_to(plen)?;
                let complete = data.len() as u64 == plen;
                if data.starts_with(b"JP") {
                    let room = MAX_C2PA - c2pa_bytes.len();
                    c2pa_bytes.extend(&data[..data.len().min(room)]);
                }
                complete
            }
            0xFE => {
                let data = input.read_up_to(plen)?;
                let complete = data.len() as u64 == plen;
                let value = text::utf8_or_latin1(text::trim_trailing_nuls(&data));
                if !value.is_empty() {
                    out.entries.push(Carrier {
                        key: "jpeg:comment".into(),
                        location: "jpeg:COM".into(),
                        value,
                    });
                }
                complete
            }
            0xC0..=0xCF if !matches!(m, 0xC4 | 0xC8 | 0xCC) => {
                let d = input.read_up_to(plen.min(5))?;
                if d.len() == 5 {
                    if !seen_sof {
                        let h = u16::from_be_bytes([d[1], d[2]]) as u32;
                        let w = u16::from_be_bytes([d[3], d[4]]) as u32;
                        out.pixel_width = Some(w);
                        out.pixel_height = (h != 0).then_some(h); // 0: defined later by DNL
                    }
                    seen_sof = true;
                    input.skip(plen - 5)?
                } else {
                    false
                }
            }
            _ => input.skip(plen)?,
        };
        if !complete {
            if !out
                .warnings
                .iter()
                .any(|w| w.contains(&format!("offset {at} truncated")))
            {
                out.warnings
                    .push(format!("jpeg: segment 0x{m:02x} at offset {at} truncated"));
            }
            break;
        }
    }
    if !c2pa_bytes.is_empty() && memchr(&c2pa_bytes, b"c2pa") {
        out.entries.push(Carrier {
            key: "c2pa".into(),
            location: "jpeg:APP11".into(),
            value: c2pa::summary(&c2pa_bytes),
        });
    }
    if seen_sos && !seen_sof {
        out.warnings
            .push("jpeg: no frame header (SOF) before the scan".into());
    }
    Ok(())
}

fn memchr(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
