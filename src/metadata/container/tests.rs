//! Container-layer tests: hand-built byte fixtures for each rule, synthetic stealth images,
//! truncation at every prefix, and the real files under `tests/fixtures/genmeta/`.

use super::exif::tests::build_tiff;
use super::stealth::tests::{embed, stream};
use super::*;
use crate::metadata::Carrier;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

fn read(bytes: &[u8]) -> Carriers {
    read_carriers(&mut Cursor::new(bytes)).expect("readable")
}

fn entries(c: &Carriers) -> Vec<(&str, &str, &str)> {
    c.entries
        .iter()
        .map(|e| (e.key.as_str(), e.location.as_str(), e.value.as_str()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Builders

fn png_chunk(ty: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend(ty);
    v.extend(data);
    let mut crc = flate2::Crc::new();
    crc.update(ty);
    crc.update(data);
    v.extend(crc.sum().to_be_bytes());
    v
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn ihdr(w: u32, h: u32, color_type: u8) -> Vec<u8> {
    let mut d = w.to_be_bytes().to_vec();
    d.extend(h.to_be_bytes());
    d.extend([8, color_type, 0, 0, 0]);
    png_chunk(b"IHDR", &d)
}

/// A 1x1 grey PNG with the given chunks before and after its IDAT.
fn png(before: &[Vec<u8>], after: &[Vec<u8>]) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(ihdr(1, 1, 0));
    before.iter().for_each(|c| v.extend(c));
    v.extend(png_chunk(b"IDAT", &zlib(&[0, 0])));
    after.iter().for_each(|c| v.extend(c));
    v.extend(png_chunk(b"IEND", b""));
    v
}

fn jpeg_segment(marker: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, marker];
    v.extend(((data.len() + 2) as u16).to_be_bytes());
    v.extend(data);
    v
}

fn jpeg(segments: &[Vec<u8>], w: u16, h: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    segments.iter().for_each(|s| v.extend(s));
    let mut sof = vec![8];
    sof.extend(h.to_be_bytes());
    sof.extend(w.to_be_bytes());
    sof.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    v.extend(jpeg_segment(0xC0, &sof));
    v.extend(jpeg_segment(0xDA, &[3, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3f, 0]));
    v.extend(vec![0x55; 100_000]); // "entropy-coded data"
    v.extend([0xFF, 0xD9]);
    v
}

fn riff(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (fourcc, data) in chunks {
        body.extend(*fourcc);
        body.extend((data.len() as u32).to_le_bytes());
        body.extend(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut v = b"RIFF".to_vec();
    v.extend((body.len() as u32).to_le_bytes());
    v.extend(body);
    v
}

fn vp8x(flags: u8, w: u32, h: u32) -> Vec<u8> {
    let mut d = vec![flags, 0, 0, 0];
    d.extend(&(w - 1).to_le_bytes()[..3]);
    d.extend(&(h - 1).to_le_bytes()[..3]);
    d
}

fn unicode_comment(s: &str, be: bool) -> Vec<u8> {
    let mut v = b"UNICODE\0".to_vec();
    v.extend(
        s.encode_utf16()
            .flat_map(|u| if be { u.to_be_bytes() } else { u.to_le_bytes() }),
    );
    v
}

// ---------------------------------------------------------------------------------------
// Sniffing, empty and unknown files

#[test]
fn empty_file_is_ok_and_unknown() {
    let c = read(b"");
    assert_eq!(c.container, Some(Container::Unknown));
    assert_eq!(c.pixel_width, None);
    assert_eq!(c.warnings, vec!["empty file".to_string()]);
}

#[test]
fn unknown_bytes_are_malformed() {
    assert!(matches!(
        read_carriers(&mut Cursor::new(b"hello, world")),
        Err(MetaError::Malformed(_))
    ));
}

#[test]
fn magic_decides_not_extension_and_truncated_magic_is_recognised() {
    assert_eq!(read(b"\x89PNG").container, Some(Container::Png));
    assert_eq!(read(b"\xff\xd8").container, Some(Container::Jpeg));
    assert_eq!(read(b"RIFF\x10\0\0\0WEB").container, Some(Container::Webp));
    assert!(!read(b"\x89PNG").warnings.is_empty());
    let gif = read(b"GIF89a\x40\x01\xf0\x00\x00\x00\x00");
    assert_eq!(
        (gif.container, gif.pixel_width, gif.pixel_height),
        (Some(Container::Gif), Some(320), Some(240))
    );
    let mut bmp = b"BM".to_vec();
    bmp.extend([0; 12]);
    bmp.extend(40u32.to_le_bytes());
    bmp.extend(640i32.to_le_bytes());
    bmp.extend((-480i32).to_le_bytes());
    bmp.extend([0; 30]);
    let b = read(&bmp);
    assert_eq!(
        (b.container, b.pixel_width, b.pixel_height),
        (Some(Container::Bmp), Some(640), Some(480))
    );
}

#[test]
fn tiff_file_size_and_tags() {
    let tiff = build_tiff(
        false,
        &[
            (0x0100, 4, 1024u32.to_le_bytes().to_vec()),
            (0x0101, 4, 768u32.to_le_bytes().to_vec()),
            (0x010E, 2, b"a cat\0".to_vec()),
        ],
        &[],
    );
    let c = read(&tiff);
    assert_eq!(c.container, Some(Container::Tiff));
    assert_eq!((c.pixel_width, c.pixel_height), (Some(1024), Some(768)));
    assert_eq!(c.value("exif:ImageDescription"), Some("a cat"));
}

// ---------------------------------------------------------------------------------------
// PNG

#[test]
fn png_text_chunks_in_file_order_with_locations() {
    let mut itxt_plain = b"parameters\0\0\0\0\0".to_vec();
    itxt_plain.extend("1girl, テスト".as_bytes());
    let mut itxt_z = b"workflow\0\x01\0en\0Workflow\0".to_vec();
    itxt_z.extend(zlib("{\"nodes\": [\"ノード\"]}".as_bytes()));
    let mut ztxt = b"parameters\0\0".to_vec();
    ztxt.extend(zlib(b"after idat"));
    let file = png(
        &[
            png_chunk(b"tEXt", b"Comment\0caf\xe9"),
            png_chunk(
                b"tEXt",
                "generation_data\0{\"prompt\":\"テスト\"}\0".as_bytes(),
            ),
            png_chunk(b"iTXt", &itxt_plain),
            png_chunk(b"iTXt", &itxt_z),
        ],
        &[
            png_chunk(b"zTXt", &ztxt),
            png_chunk(b"tEXt", b"parameters\0dup"),
        ],
    );
    let c = read(&file);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!((c.pixel_width, c.pixel_height), (Some(1), Some(1)));
    assert_eq!(
        entries(&c),
        vec![
            ("Comment", "png:tEXt", "café"),
            ("generation_data", "png:tEXt", "{\"prompt\":\"テスト\"}\0"),
            ("parameters", "png:iTXt", "1girl, テスト"),
            ("workflow", "png:iTXt", "{\"nodes\": [\"ノード\"]}"),
            ("parameters", "png:zTXt (after IDAT)", "after idat"),
            ("parameters", "png:tEXt (after IDAT)", "dup"),
        ]
    );
    // Only the header, the text chunks and chunk headers were read, not the IDAT body.
    assert!(c.bytes_read < file.len() as u64);
}

#[test]
fn png_bad_zlib_and_odd_chunks_warn() {
    let file = png(
        &[
            png_chunk(b"zTXt", b"parameters\0\0not zlib at all"),
            png_chunk(b"zTXt", b"k\0\x05xx"),
            png_chunk(b"iTXt", b"k\0\x01\0\0\0\x78\x9c\x01"),
            png_chunk(b"tEXt", b"no separator"),
            png_chunk(b"tEXt", b"ok\0fine"),
        ],
        &[],
    );
    let c = read(&file);
    assert_eq!(entries(&c), vec![("ok", "png:tEXt", "fine")]);
    assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("bad compressed data"),
        "{:?}",
        c.warnings
    );
    assert!(c.warnings[2].contains("truncated"), "{:?}", c.warnings);
}

#[test]
fn png_truncated_zlib_keeps_the_decoded_part() {
    let mut z = b"parameters\0\0".to_vec();
    let long: String = (0..3000)
        .map(|i| format!("Steps: {}, ", i * 7919 % 10007))
        .collect();
    let comp = zlib(long.as_bytes());
    z.extend(&comp[..comp.len() / 2]);
    let c = read(&png(&[png_chunk(b"zTXt", &z)], &[]));
    let v = c.value("parameters").unwrap();
    assert!(!v.is_empty() && long.starts_with(v));
    assert!(
        c.warnings.iter().any(|w| w.contains("truncated")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn png_zip_bomb_is_cut_at_the_limit() {
    let big = vec![b'a'; (MAX_CHUNK + 1000) as usize];
    let mut z = b"parameters\0\0".to_vec();
    z.extend(zlib(&big));
    drop(big);
    let c = read(&png(&[png_chunk(b"zTXt", &z)], &[]));
    assert_eq!(c.value("parameters").unwrap().len() as u64, MAX_CHUNK);
    assert!(
        c.warnings.iter().any(|w| w.contains("limit")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn png_absurd_lengths_do_not_allocate() {
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend(ihdr(100, 100, 2));
    file.extend(0x7FFF_FFF0u32.to_be_bytes());
    file.extend(b"tEXt");
    file.extend(b"k\0v");
    let c = read(&file);
    assert!(c.entries.is_empty() || c.value("k") == Some("v"));
    assert!(!c.warnings.is_empty());
    // Length over 2^31: corrupt header.
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend(ihdr(1, 1, 2));
    file.extend(0xFFFF_FFFFu32.to_be_bytes());
    file.extend(b"zTXt");
    let c = read(&file);
    assert!(
        c.warnings.iter().any(|w| w.contains("corrupt")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn png_exif_chunk() {
    let tiff = build_tiff(
        false,
        &[],
        &[(0x9286, 7, unicode_comment("a cat\nSteps: 20", true))],
    );
    let c = read(&png(&[png_chunk(b"eXIf", &tiff)], &[]));
    assert_eq!(
        entries(&c),
        vec![("exif:UserComment", "exif:ExifIFD", "a cat\nSteps: 20")]
    );
}

#[test]
fn png_c2pa_summary() {
    let mut j = b"\0\0\0\x20jumb\0\0\0\x10jumdc2pa".to_vec();
    j.extend(b"\x6fclaim_generator\x6aGemini 2.5");
    let c = read(&png(&[png_chunk(b"caBX", &j)], &[]));
    assert_eq!(
        entries(&c),
        vec![(
            "c2pa",
            "png:caBX",
            "C2PA manifest; claim_generator=Gemini 2.5"
        )]
    );
}

// ---------------------------------------------------------------------------------------
// JPEG

#[test]
fn jpeg_exif_both_orders_xmp_comment_and_size() {
    for be in [true, false] {
        let tiff = build_tiff(
            be,
            &[(0x010F, 2, b"Prompt:{\"a\":1}\0".to_vec())],
            &[(0x9286, 7, unicode_comment("masterpiece\nSteps: 20", !be))],
        );
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff);
        let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
        xmp.extend(b"<x:xmpmeta xmp:CreatorTool=\"Draw Things\"/>");
        let file = jpeg(
            &[
                jpeg_segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"),
                jpeg_segment(0xE1, &app1),
                jpeg_segment(0xE1, &xmp),
                jpeg_segment(0xE1, b"http://ns.adobe.com/xmp/extension/\0ignored"),
                jpeg_segment(0xE2, &[0u8; 5000]),
                jpeg_segment(0xFE, "GIMPで保存\0".as_bytes()),
            ],
            1536,
            1024,
        );
        let c = read(&file);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.container, Some(Container::Jpeg));
        assert_eq!((c.pixel_width, c.pixel_height), (Some(1536), Some(1024)));
        assert_eq!(
            entries(&c),
            vec![
                ("exif:Make", "exif:IFD0", "Prompt:{\"a\":1}"),
                ("exif:UserComment", "exif:ExifIFD", "masterpiece\nSteps: 20"),
                (
                    "xmp",
                    "jpeg:APP1",
                    "<x:xmpmeta xmp:CreatorTool=\"Draw Things\"/>"
                ),
                ("jpeg:comment", "jpeg:COM", "GIMPで保存"),
            ]
        );
        // Stops at SOS; the ICC segment and the extended XMP are skipped.
        assert!(c.bytes_read < 2000, "{}", c.bytes_read);
    }
}

#[test]
fn jpeg_garbage_and_truncation_warn() {
    let c = read(b"\xff\xd8\x00\x00");
    assert!(
        c.warnings[0].contains("expected a marker"),
        "{:?}",
        c.warnings
    );
    let c = read(b"\xff\xd8\xff\xe1\x00\x01");
    assert!(c.warnings[0].contains("length 1"), "{:?}", c.warnings);
    let c = read(b"\xff\xd8\xff\xe1\xff\xf0Exif\0\0MM\0*");
    assert!(
        c.warnings.iter().any(|w| w.contains("truncated")),
        "{:?}",
        c.warnings
    );
}

// ---------------------------------------------------------------------------------------
// WebP

#[test]
fn webp_chunks_and_sizes() {
    let tiff = build_tiff(
        true,
        &[
            (0x010E, 2, b"\0\0\0\x001girl, solo\0".to_vec()),
            (0x0131, 2, b"NovelAI Diffusion V4.5\0".to_vec()),
        ],
        &[(0x9286, 7, b"ASCII\0\0\0{\"Comment\":\"x\"}".to_vec())],
    );
    let mut exif_prefixed = b"Exif\0\0".to_vec();
    exif_prefixed.extend(&tiff);
    // VP8X + lossy frame + EXIF with an Exif\0\0 prefix + XMP.
    let mut vp8 = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
    vp8.extend(848u16.to_le_bytes());
    vp8.extend(480u16.to_le_bytes());
    vp8.extend([0; 20]);
    let file = riff(&[
        (b"VP8X", vp8x(0x08 | 0x04, 2048, 3072)),
        (b"VP8 ", vp8.clone()),
        (b"EXIF", exif_prefixed),
        (b"XMP ", b"<xmp/>".to_vec()),
    ]);
    let c = read(&file);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        (c.container, c.pixel_width, c.pixel_height),
        (Some(Container::Webp), Some(2048), Some(3072))
    );
    assert_eq!(
        entries(&c),
        vec![
            ("exif:ImageDescription", "exif:IFD0", "1girl, solo"),
            ("exif:Software", "exif:IFD0", "NovelAI Diffusion V4.5"),
            ("exif:UserComment", "exif:ExifIFD", "{\"Comment\":\"x\"}"),
            ("xmp", "webp:XMP", "<xmp/>"),
        ]
    );
    // Simple lossy: the size from the frame header.
    let c = read(&riff(&[(b"VP8 ", vp8), (b"EXIF", tiff)]));
    assert_eq!((c.pixel_width, c.pixel_height), (Some(848), Some(480)));
    assert_eq!(c.value("exif:Software"), Some("NovelAI Diffusion V4.5"));
    // Simple lossless: 14-bit width-1 / height-1.
    let v: u32 = 831 | (1215 << 14);
    let mut vp8l = vec![0x2f];
    vp8l.extend(v.to_le_bytes());
    vp8l.extend([0; 10]);
    let c = read(&riff(&[(b"VP8L", vp8l)]));
    assert_eq!((c.pixel_width, c.pixel_height), (Some(832), Some(1216)));
}

// ---------------------------------------------------------------------------------------
// Stealth

fn encode(px: &[[u8; 4]], w: u32, h: u32, format: image::ImageFormat, alpha: bool) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    if alpha {
        let raw: Vec<u8> = px.iter().flatten().copied().collect();
        image::RgbaImage::from_raw(w, h, raw)
            .unwrap()
            .write_to(&mut out, format)
            .unwrap();
    } else {
        let raw: Vec<u8> = px.iter().flat_map(|p| [p[0], p[1], p[2]]).collect();
        image::RgbImage::from_raw(w, h, raw)
            .unwrap()
            .write_to(&mut out, format)
            .unwrap();
    }
    out.into_inner()
}

#[test]
fn stealth_alpha_and_rgb_in_png_and_webp() {
    let text = "a circle\nNegative prompt: a square\nSteps: 20, Sampler: Euler, Seed: 1, テスト";
    let cases = [
        ("stealth_pngcomp", true, gzip(text.as_bytes())),
        ("stealth_pnginfo", true, text.as_bytes().to_vec()),
        ("stealth_rgbcomp", false, gzip(text.as_bytes())),
        ("stealth_rgbinfo", false, text.as_bytes().to_vec()),
    ];
    for (sig, alpha_mode, data) in cases {
        let bits = stream(sig, &data);
        // Tall image: the payload spans several columns; short image: h < 120.
        for (w, h) in [(24u32, 150u32), (300, 7)] {
            let px = embed(w as usize, h as usize, &bits, alpha_mode);
            for format in [image::ImageFormat::Png, image::ImageFormat::WebP] {
                let file = encode(&px, w, h, format, true);
                let c = read(&file);
                let mode = if alpha_mode { "alpha" } else { "rgb" };
                assert_eq!(
                    c.entries,
                    vec![Carrier {
                        key: "stealth".into(),
                        location: format!("stealth:{mode}:{sig}"),
                        value: text.into()
                    }],
                    "{sig} {w}x{h} {format:?}: {:?}",
                    c.warnings
                );
            }
            if !alpha_mode {
                // RGB mode also works in an RGB (no alpha) PNG or lossless WebP.
                for format in [image::ImageFormat::Png, image::ImageFormat::WebP] {
                    let file = encode(&px, w, h, format, false);
                    assert_eq!(
                        read(&file).value("stealth"),
                        Some(text),
                        "{sig} rgb-only {format:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn lossless_webp_without_payload_is_decoded_only_to_the_signature_rows() {
    let (w, h) = (512u32, 1024u32);
    // Noise, so the file does not compress to nothing.
    let px: Vec<[u8; 4]> = (0..w * h)
        .map(|i| {
            let v = (i.wrapping_mul(2654435761) >> 13) as u8;
            [v, v.rotate_left(3), v ^ 0x5a, 255]
        })
        .collect();
    let file = encode(&px, w, h, image::ImageFormat::WebP, true);
    let c = read(&file);
    assert!(c.entries.is_empty(), "{:?}", c.entries);
    assert!(
        c.bytes_read * 4 < file.len() as u64,
        "read {} of {} bytes",
        c.bytes_read,
        file.len()
    );
}

#[test]
fn stealth_in_16_bit_and_grey_alpha_png() {
    let text = "Steps: 20, Sampler: Euler";
    let bits = stream("stealth_pngcomp", &gzip(text.as_bytes()));
    let (w, h) = (16u32, 130u32);
    let px = embed(w as usize, h as usize, &bits, true);
    // 16-bit: the reference readers see the high byte of each sample.
    let raw16: Vec<u16> = px
        .iter()
        .flatten()
        .map(|&v| (v as u16) << 8 | 0x5a)
        .collect();
    let mut file = Cursor::new(Vec::new());
    image::ImageBuffer::<image::Rgba<u16>, _>::from_raw(w, h, raw16)
        .unwrap()
        .write_to(&mut file, image::ImageFormat::Png)
        .unwrap();
    assert_eq!(read(file.get_ref()).value("stealth"), Some(text));
    // Grey + alpha.
    let raw: Vec<u8> = px.iter().flat_map(|p| [p[0], p[3]]).collect();
    let mut file = Cursor::new(Vec::new());
    image::GrayAlphaImage::from_raw(w, h, raw)
        .unwrap()
        .write_to(&mut file, image::ImageFormat::Png)
        .unwrap();
    assert_eq!(read(file.get_ref()).value("stealth"), Some(text));
}

#[test]
fn stealth_is_skipped_when_text_exists_and_absent_payload_reads_little() {
    let text = "Steps: 20";
    let bits = stream("stealth_pnginfo", text.as_bytes());
    let px = embed(40, 40, &bits, true);
    let file = encode(&px, 40, 40, image::ImageFormat::Png, true);
    // Insert a `parameters` tEXt after IHDR: the stealth copy is not read.
    let mut with_text = file[..33].to_vec();
    with_text.extend(png_chunk(b"tEXt", b"parameters\0from text"));
    with_text.extend(&file[33..]);
    let c = read(&with_text);
    assert_eq!(entries(&c), vec![("parameters", "png:tEXt", "from text")]);
    // A large noisy image without a payload: only the first 120 rows are decoded.
    let (w, h) = (256u32, 1200u32);
    let px: Vec<[u8; 4]> = (0..w * h)
        .map(|i| {
            let v = (i.wrapping_mul(2654435761) >> 13) as u8;
            [v, v ^ 0x5a, v.rotate_left(3), v | 1]
        })
        .collect();
    let file = encode(&px, w, h, image::ImageFormat::Png, false);
    let c = read(&file);
    assert!(
        c.entries.is_empty() && c.warnings.is_empty(),
        "{:?}",
        c.warnings
    );
    assert!(
        c.bytes_read * 4 < file.len() as u64,
        "{} of {}",
        c.bytes_read,
        file.len()
    );
}

#[test]
fn stealth_bad_payloads_warn() {
    // Bit count larger than the image.
    let mut bits = stream("stealth_pngcomp", b"");
    bits.truncate(120);
    bits.extend((0..32).map(|i| u8::from(i < 4)));
    let px = embed(20, 20, &bits, true);
    let c = read(&encode(&px, 20, 20, image::ImageFormat::Png, true));
    assert!(c.entries.is_empty());
    assert!(
        c.warnings.iter().any(|w| w.contains("exceeds")),
        "{:?}",
        c.warnings
    );
    // Not gzip.
    let bits = stream("stealth_pngcomp", b"plain text, not gzip");
    let px = embed(20, 20, &bits, true);
    let c = read(&encode(&px, 20, 20, image::ImageFormat::Png, true));
    assert!(c.entries.is_empty());
    assert!(
        c.warnings.iter().any(|w| w.contains("gzip")),
        "{:?}",
        c.warnings
    );
}

// ---------------------------------------------------------------------------------------
// Real fixtures

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/genmeta")
}

fn read_file(rel: &str) -> (Vec<u8>, Carriers) {
    let bytes = std::fs::read(fixtures().join(rel)).unwrap();
    let c = read_carriers(&mut std::io::BufReader::new(
        std::fs::File::open(fixtures().join(rel)).unwrap(),
    ))
    .unwrap();
    (bytes, c)
}

/// Where `expected.json` is known to be wrong about the container facts: (file, why).
const EXPECTED_JSON_ERRATA: &[(&str, &str)] = &[(
    "no-metadata/empty.webp",
    "a simple-format lossless WebP (VP8L, no VP8X): its frame header says 832x1216 (as exiftool \
     and Pillow do); expected.json has null",
)];

#[test]
fn real_fixtures_container_facts() {
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    for exp in &expected {
        let file = exp["file"].as_str().unwrap();
        let (bytes, c) = read_file(file);
        let container = c
            .container
            .filter(|&c| c != Container::Unknown)
            .map(Container::as_str);
        let got = (
            container,
            c.pixel_width.map(u64::from),
            c.pixel_height.map(u64::from),
        );
        let want = (
            exp["container"].as_str(),
            exp["pixel_width"].as_u64(),
            exp["pixel_height"].as_u64(),
        );
        if got != want && !EXPECTED_JSON_ERRATA.iter().any(|(f, _)| *f == file) {
            failures.push(format!("{file}: expected {want:?}, got {got:?}"));
        }
        let has_stealth = c.get("stealth").is_some();
        if bytes.len() > 1_000_000 && !has_stealth && c.bytes_read * 4 >= bytes.len() as u64 {
            failures.push(format!(
                "{file}: read {} of {} bytes",
                c.bytes_read,
                bytes.len()
            ));
        }
        if !c.warnings.is_empty() && !file.ends_with("empty_file.png") {
            failures.push(format!("{file}: warnings {:?}", c.warnings));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (_, c) = read_file("no-metadata/empty.webp");
    assert_eq!((c.pixel_width, c.pixel_height), (Some(832), Some(1216)));
}

#[test]
fn real_fixtures_carriers() {
    let (_, c) = read_file("a1111/text_after_idat.png");
    let p = c.get("parameters").unwrap();
    assert_eq!(p.location, "png:zTXt (after IDAT)");
    assert!(p.value.contains("Steps:"), "{}", p.value);

    let (_, c) = read_file("a1111/automatic1111_stealth.png");
    let s = c.get("stealth").unwrap();
    assert_eq!(s.location, "stealth:alpha:stealth_pngcomp");
    assert!(
        s.value
            .starts_with("a circle\nNegative prompt: a square\nSteps: 20"),
        "{}",
        s.value
    );

    // forge.png has both; the iTXt wins and the stealth copy is not read.
    let (_, c) = read_file("forge/forge.png");
    assert!(c.value("parameters").unwrap().contains("テスト"));
    assert!(c.get("stealth").is_none());

    // UTF-16BE inside an II TIFF (Civitai), UTF-16LE inside II (SwarmUI).
    let (_, c) = read_file("civitai/civitai.jpeg");
    assert!(c
        .value("exif:UserComment")
        .unwrap()
        .contains("hatsune miku, #テスト\nNegative prompt:"));
    assert_eq!(c.value("exif:Artist"), Some("ai"));
    let (_, c) = read_file("swarmui/swarmui.jpg");
    assert!(c
        .value("exif:UserComment")
        .unwrap()
        .contains("\"sui_image_params\""));
    let (_, c) = read_file("sdnext/briaai--Fibo-Edit.jpg");
    assert!(c.value("exif:UserComment").unwrap().contains("Steps:"));
    let (_, c) = read_file("a1111/sd-webui.jpg");
    assert!(c.value("exif:UserComment").unwrap().contains("テスト"));

    // IFD0 UserComment without a header (ComfyUI SaveImagePlus).
    let (_, c) = read_file("comfyui/comfyui-saveimage-plus.jpg");
    let u = c.get("exif:UserComment").unwrap();
    assert_eq!(u.location, "exif:IFD0");
    assert!(u.value.starts_with("{\"prompt\": {"));

    // NovelAI WebP: ImageDescription after 4 NULs, ASCII-header UserComment.
    let (_, c) = read_file("novelai/novelai-curated.webp");
    assert!(c
        .value("exif:ImageDescription")
        .unwrap()
        .starts_with("1girl, solo, hatsune miku"));
    assert!(c
        .value("exif:UserComment")
        .unwrap()
        .starts_with("{\"Comment\":"));
    assert_eq!(
        c.value("exif:DocumentName"),
        Some("NovelAI generated image")
    );

    // ComfyUI WebP: Make/Model, the animated one with an Exif\0\0 prefix.
    let (_, c) = read_file("comfyui/comfyui-animated-webp.webp");
    assert!(c.value("exif:Make").unwrap().starts_with("workflow:{"));
    assert!(c.value("exif:Model").unwrap().starts_with("prompt:{"));
    let (_, c) = read_file("comfyui/mochi_simple_checkpoint.webp");
    assert!(c.value("exif:Make").is_some());

    let (_, c) = read_file("no-metadata/gimp.jpg");
    assert_eq!(c.value("jpeg:comment"), Some("GIMPで再保存しただけ"));

    let (_, c) = read_file("c2pa/chatgpt-image2.png");
    assert_eq!(
        c.value("c2pa"),
        Some("C2PA manifest; claim_generator=OpenAI Media Service API; software_agent=gpt-image 2.0; digital_source_type=trainedAlgorithmicMedia")
    );

    let (_, c) = read_file("tensorart/tensorart.png");
    assert!(c.value("generation_data").unwrap().ends_with("}\0"));
    let (_, c) = read_file("invokeai/invokeai.png");
    assert_eq!(c.get("invokeai_metadata").unwrap().location, "png:iTXt");
}

#[test]
fn every_prefix_of_real_files_is_safe() {
    let small = [
        "a1111/automatic1111_stealth.png",
        "a1111/text_after_idat.png",
        "invokeai/invokeai_sdmeta1.png",
        "novelai/novelai1_cropped.png",
        "sdnext/logo-bg-0.jpg",
    ];
    for rel in small {
        let bytes = std::fs::read(fixtures().join(rel)).unwrap();
        for n in 0..=bytes.len() {
            let prefix = &bytes[..n];
            match read_carriers(&mut Cursor::new(prefix)) {
                Ok(c) => {
                    // (A PNG cut inside the IEND CRC is complete enough.)
                    if n > 0 && n + 4 < bytes.len() && rel.ends_with(".png") {
                        assert!(!c.warnings.is_empty(), "{rel}[..{n}]: no warning");
                    }
                }
                // One byte is not enough to recognise anything.
                Err(MetaError::Malformed(_)) if n < 2 => {}
                Err(e) => panic!("{rel}[..{n}]: {e}"),
            }
        }
    }
    // Larger files: a stride of prefixes, including every one over the metadata.
    for rel in [
        "no-metadata/gimp.webp",
        "novelai/novelai-curated.webp",
        "comfyui/comfyui-saveimage-plus.jpg",
        "civitai/civitai.jpeg",
    ] {
        let bytes = std::fs::read(fixtures().join(rel)).unwrap();
        let len = bytes.len();
        // Every prefix over the head (JPEG metadata, WebP headers), a stride over the rest,
        // a finer one over the tail (WebP EXIF).
        let lengths = (2..4096.min(len))
            .chain((4096..len).step_by(49_999))
            .chain((len.saturating_sub(4096)..=len).step_by(97));
        for n in lengths {
            read_carriers(&mut Cursor::new(&bytes[..n])).unwrap();
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip bytes all over small real files (deterministic pseudo-random).
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for rel in [
        "a1111/automatic1111_stealth.png",
        "a1111/text_after_idat.png",
        "sdnext/logo-bg-0.jpg",
        "fooocus/fooocus1_cropped.png",
    ] {
        let bytes = std::fs::read(fixtures().join(rel)).unwrap();
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 8 {
                let i = (next() % b.len() as u64) as usize;
                b[i] = next() as u8;
            }
            let _ = read_carriers(&mut Cursor::new(&b));
        }
    }
}

/// `cargo test --lib metadata::container::tests::dump_fixtures -- --ignored --nocapture`:
/// what the container layer finds in every fixture, and how much of it it reads.
#[test]
#[ignore]
fn dump_fixtures() {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(fixtures())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_file()
                && !e
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json" || x == "md")
        })
        .map(|e| e.into_path())
        .collect();
    files.sort();
    let mut all = serde_json::Map::new();
    for path in files {
        let rel = path.strip_prefix(fixtures()).unwrap().display().to_string();
        let size = std::fs::metadata(&path).unwrap().len();
        let t = std::time::Instant::now();
        let c = read_carriers(&mut std::io::BufReader::new(
            std::fs::File::open(&path).unwrap(),
        ))
        .unwrap();
        println!(
            "{rel}: {:?} {:?}x{:?} read {}/{} ({:.1}%) in {:?}",
            c.container,
            c.pixel_width,
            c.pixel_height,
            c.bytes_read,
            size,
            100.0 * c.bytes_read as f64 / size.max(1) as f64,
            t.elapsed()
        );
        for e in &c.entries {
            let v: String = e.value.chars().take(70).collect();
            println!(
                "    {} @ {} = {:?}{}",
                e.key,
                e.location,
                v,
                if e.value.chars().count() > 70 {
                    "…"
                } else {
                    ""
                }
            );
        }
        for w in &c.warnings {
            println!("    WARNING {w}");
        }
        all.insert(rel, serde_json::to_value(&c).unwrap());
    }
    // CARRIERS_JSON=/path: also write every file's carriers there, to compare with exiftool.
    if let Ok(out) = std::env::var("CARRIERS_JSON") {
        std::fs::write(out, serde_json::to_string_pretty(&all).unwrap()).unwrap();
    }
}

/// A reader that counts the bytes the OS was asked for (to see what a `BufReader` in front of
/// the container layer really reads).
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R: std::io::Seek> std::io::Seek for Counting<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// `cargo test --lib metadata::container::tests::io_per_buffer_size -- --ignored --nocapture`:
/// bytes requested from the file per `BufReader` capacity, for a few large fixtures.
#[test]
#[ignore]
fn io_per_buffer_size() {
    for rel in [
        "comfyui/comfyui-comfyroll.png",
        "forge/forge.png",
        "swarmui/sdxl.jpg",
        "c2pa/chatgpt-image2.png",
        "no-metadata/empty.png",
    ] {
        let size = std::fs::metadata(fixtures().join(rel)).unwrap().len();
        let mut line = format!("{rel} ({size} bytes):");
        for cap in [0usize, 4 << 10, 8 << 10, 64 << 10] {
            let file = std::fs::File::open(fixtures().join(rel)).unwrap();
            let mut counting = Counting {
                inner: file,
                bytes: 0,
            };
            let c = if cap == 0 {
                read_carriers(&mut counting).unwrap()
            } else {
                read_carriers(&mut std::io::BufReader::with_capacity(cap, &mut counting)).unwrap()
            };
            line += &format!(" cap {cap}: {} (parser {})", counting.bytes, c.bytes_read);
        }
        println!("{line}");
    }
}
