//! Containers: sniff the file type from magic bytes and collect every text carrier, reading
//! only the bytes that hold metadata (pixel data is skipped by seeking over its length).
//!
//! * PNG ([`png`]): `tEXt`/`zTXt`/`iTXt` anywhere in the file (also after `IDAT`), `eXIf`,
//!   `caBX` (C2PA); size from `IHDR`.
//! * JPEG ([`jpeg`]): APP1 EXIF and XMP, APP11 C2PA, `COM`; size from SOFn; stops at SOS.
//! * WebP ([`webp`]): `EXIF`, `XMP `, `C2PA` chunks; size from `VP8X`/`VP8 `/`VP8L`.
//! * TIFF: the file's IFD0/Exif tags ([`exif`]) and its size; GIF and BMP: the size only.
//! * Stealth LSB payloads ([`stealth`]) in PNG and lossless WebP when no generation text was
//!   found.
//!
//! Every length read from the file is bounded by the bytes that are left and by a cap
//! ([`MAX_CHUNK`] per chunk, [`MAX_INFLATE_TOTAL`] decompressed per file, [`MAX_PIXELS`] for a
//! stealth decode). Malformed input gives a partial result with warnings.

mod c2pa;
pub(crate) mod exif;
mod jpeg;
mod png;
mod stealth;
pub(crate) mod text;
mod webp;

use super::{Carriers, Container, MetaError};
use std::io::{self, Read, Seek, SeekFrom};

/// The most bytes read for one chunk, segment or tag.
pub(crate) const MAX_CHUNK: u64 = 64 << 20;
/// The most bytes decompressed (zlib, gzip) for one file, all carriers together.
pub(crate) const MAX_INFLATE_TOTAL: u64 = 256 << 20;
/// The largest image (in pixels) decoded to look for a stealth payload.
pub(crate) const MAX_PIXELS: u64 = 100_000_000;

/// The file being read: tracks the position, the length, and the bytes actually read
/// (seeking is free). Reads never go past the end the file had when it was opened.
pub(crate) struct Input<'r, R> {
    r: &'r mut R,
    /// Where the file starts in `r`.
    base: u64,
    len: u64,
    pos: u64,
    read: u64,
}

impl<'r, R: Read + Seek> Input<'r, R> {
    fn new(r: &'r mut R) -> io::Result<Self> {
        let base = r.stream_position()?;
        let end = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(base))?;
        Ok(Self {
            r,
            base,
            len: end.saturating_sub(base),
            pos: 0,
            read: 0,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Up to `n` bytes from the current position; fewer at the end of the file.
    pub(crate) fn read_up_to(&mut self, n: u64) -> io::Result<Vec<u8>> {
        let n = n.min(self.remaining());
        let mut buf = Vec::with_capacity(n.min(1 << 20) as usize);
        (&mut *self.r).take(n).read_to_end(&mut buf)?;
        let got = buf.len() as u64;
        self.pos += got;
        self.read += got;
        if got < n {
            // The file is shorter than it was (or than the reader said).
            self.len = self.pos;
        }
        Ok(buf)
    }

    /// Reads into `buf` as far as the file goes; returns how many bytes were read.
    pub(crate) fn read_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.remaining()) as usize;
        let mut got = 0;
        while got < want {
            match self.r.read(&mut buf[got..want]) {
                Ok(0) => {
                    self.len = self.pos + got as u64;
                    break;
                }
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos += got as u64;
        self.read += got as u64;
        Ok(got)
    }

    /// Skips `n` bytes; false when the file ends first (the position is then the end).
    pub(crate) fn skip(&mut self, n: u64) -> io::Result<bool> {
        let k = n.min(self.remaining());
        if k > 0 {
            self.r.seek_relative(k as i64)?;
        }
        self.pos += k;
        Ok(k == n)
    }

    /// Moves to `pos` (clamped to the end of the file).
    pub(crate) fn seek_to(&mut self, pos: u64) -> io::Result<()> {
        let pos = pos.min(self.len);
        if pos != self.pos {
            self.r.seek(SeekFrom::Start(self.base + pos))?;
            self.pos = pos;
        }
        Ok(())
    }
}

/// Decompression allowance left for this file.
pub(crate) struct Budget {
    pub inflate_left: u64,
    /// The largest image (in pixels) whose pixels are decoded for a stealth payload: the
    /// smaller of [`MAX_PIXELS`] and the caller's limit (a dataset's `max_pixels`).
    pub max_pixels: u64,
}

/// How reading a chunk's body ended (PNG, WebP).
#[derive(PartialEq)]
enum Body {
    Complete,
    Truncated,
    /// Truncated, and the reader has already said so.
    TruncatedWarned,
}

impl Body {
    /// `Complete` or `Truncated`.
    fn of(complete: bool) -> Self {
        if complete {
            Body::Complete
        } else {
            Body::Truncated
        }
    }
}

/// The container a file's first bytes announce, and the magic's length. A file shorter than
/// the magic that is a prefix of it counts as that (truncated) container.
fn sniff(head: &[u8]) -> Option<(Container, u64)> {
    const MAGICS: &[(&[u8], Container)] = &[
        (b"\x89PNG\r\n\x1a\n", Container::Png),
        (b"\xff\xd8", Container::Jpeg),
        (b"GIF87a", Container::Gif),
        (b"GIF89a", Container::Gif),
        (b"II*\0", Container::Tiff),
        (b"MM\0*", Container::Tiff),
        (b"BM", Container::Bmp),
    ];
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Some((Container::Webp, 12));
    }
    for (magic, c) in MAGICS {
        if head.starts_with(magic) {
            return Some((*c, magic.len() as u64));
        }
    }
    // A truncated file: a strict prefix (of at least 2 bytes) of a magic.
    if head.len() >= 2 {
        if head.len() < 12
            && b"RIFF\0\0\0\0WEBP"
                .iter()
                .zip(head)
                .enumerate()
                .all(|(i, (m, h))| (4..8).contains(&i) || m == h)
        {
            return Some((Container::Webp, head.len() as u64));
        }
        for (magic, c) in MAGICS {
            if head.len() < magic.len() && magic.starts_with(head) {
                return Some((*c, head.len() as u64));
            }
        }
    }
    None
}

/// Reads the carriers of one file, reading only the bytes it needs.
///
/// Returns `Ok` with whatever was found (and warnings) for any recognised container, however
/// damaged, and for an empty file (`Container::Unknown`, warning `empty file`);
/// `Err(Malformed)` only for bytes of no known image type; `Err(Io)` when the reader fails.
pub fn read_carriers<R: Read + Seek>(reader: &mut R) -> Result<Carriers, MetaError> {
    read_carriers_limited(reader, MAX_PIXELS)
}

/// [`read_carriers`], decoding pixels (for stealth payloads) only of images of at most
/// `max_pixels` pixels.
pub fn read_carriers_limited<R: Read + Seek>(
    reader: &mut R,
    max_pixels: u64,
) -> Result<Carriers, MetaError> {
    let mut input = Input::new(reader)?;
    let mut out = Carriers::default();
    let mut budget = Budget {
        inflate_left: MAX_INFLATE_TOTAL,
        max_pixels: max_pixels.min(MAX_PIXELS),
    };
    let head = input.read_up_to(32)?;
    if head.is_empty() {
        out.container = Some(Container::Unknown);
        out.warnings.push("empty file".into());
        out.bytes_read = input.read;
        return Ok(out);
    }
    let Some((container, magic_len)) = sniff(&head) else {
        return Err(MetaError::Malformed(format!(
            "unrecognised file type (starts with {:02x?})",
            &head[..head.len().min(8)]
        )));
    };
    out.container = Some(container);
    match container {
        Container::Png => {
            input.seek_to(magic_len)?;
            png::read(&mut input, &mut out, &mut budget)?;
        }
        Container::Jpeg => {
            input.seek_to(magic_len)?;
            jpeg::read(&mut input, &mut out, &mut budget)?;
        }
        Container::Webp => {
            input.seek_to(magic_len)?;
            webp::read(&mut input, &mut out, &mut budget)?;
        }
        Container::Tiff => {
            let info = exif::parse_tiff(&mut exif::FileSource { input: &mut input }, &mut out)?;
            out.pixel_width = info.width;
            out.pixel_height = info.height;
        }
        Container::Gif => {
            if head.len() >= 10 {
                out.pixel_width = Some(u16::from_le_bytes([head[6], head[7]]) as u32);
                out.pixel_height = Some(u16::from_le_bytes([head[8], head[9]]) as u32);
            } else {
                out.warnings.push("gif: header truncated".into());
            }
        }
        Container::Bmp => read_bmp_size(&head, &mut out),
        Container::Unknown => {}
    }
    out.bytes_read = input.read;
    Ok(out)
}

/// BMP: the size from the DIB header (BITMAPCOREHEADER or a later one).
fn read_bmp_size(head: &[u8], out: &mut Carriers) {
    if head.len() < 26 {
        out.warnings.push("bmp: header truncated".into());
        return;
    }
    let dib = u32::from_le_bytes([head[14], head[15], head[16], head[17]]);
    if dib == 12 {
        out.pixel_width = Some(u16::from_le_bytes([head[18], head[19]]) as u32);
        out.pixel_height = Some(u16::from_le_bytes([head[20], head[21]]) as u32);
    } else {
        let w = i32::from_le_bytes([head[18], head[19], head[20], head[21]]);
        let h = i32::from_le_bytes([head[22], head[23], head[24], head[25]]);
        out.pixel_width = Some(w.unsigned_abs());
        out.pixel_height = Some(h.unsigned_abs());
    }
}

/// Inflates a zlib (`zlib = true`) or raw deflate stream, within the file's budget and
/// [`MAX_CHUNK`]. Returns what was decompressed and, when incomplete, why.
pub(crate) fn inflate(data: &[u8], zlib: bool, budget: &mut Budget) -> (Vec<u8>, Option<String>) {
    use flate2::{Decompress, FlushDecompress, Status};
    let limit = budget.inflate_left.min(MAX_CHUNK) as usize;
    let mut d = Decompress::new(zlib);
    let mut out: Vec<u8> = Vec::with_capacity(
        data.len()
            .saturating_mul(4)
            .clamp(64, 1 << 20)
            .min(limit.max(1)),
    );
    let problem = loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                break Some(format!(
                    "decompressed text exceeds the {limit}-byte limit; cut"
                ));
            }
            let grow = out.len().max(64 << 10).min(limit - out.len());
            out.reserve_exact(grow);
        }
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let consumed = (in_before as usize).min(data.len());
        match d.decompress_vec(&data[consumed..], &mut out, FlushDecompress::None) {
            Ok(Status::StreamEnd) => break None,
            Ok(_) => {
                if d.total_in() == in_before && d.total_out() == out_before {
                    break Some("compressed stream is truncated".to_string());
                }
            }
            Err(e) => break Some(format!("bad compressed data: {e}")),
        }
    };
    out.truncate(limit);
    budget.inflate_left = budget.inflate_left.saturating_sub(out.len() as u64);
    (out, problem)
}

/// Decompresses a gzip stream (stealth `comp` payloads) within the budget.
pub(crate) fn gunzip(data: &[u8], budget: &mut Budget) -> (Vec<u8>, Option<String>) {
    let limit = budget.inflate_left.min(MAX_CHUNK);
    let mut out = Vec::new();
    let mut problem = flate2::read::MultiGzDecoder::new(data)
        .take(limit + 1)
        .read_to_end(&mut out)
        .err()
        .map(|e| format!("bad gzip data: {e}"));
    if out.len() as u64 > limit {
        out.truncate(limit as usize);
        problem = Some(format!(
            "decompressed text exceeds the {limit}-byte limit; cut"
        ));
    }
    budget.inflate_left = budget.inflate_left.saturating_sub(out.len() as u64);
    (out, problem)
}

#[cfg(test)]
mod tests;
