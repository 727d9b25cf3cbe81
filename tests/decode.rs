//! Decoding corner cases: every fixture decodes to the same upright RGB pixels as Pillow
//! (through the Python reference's own loader), and broken inputs become recorded failures
//! with a reason while the run goes on.

mod common;

use common::*;
use iw_lab::imaging::{decode_rgb, DecodeError};

/// Largest and mean per-channel difference allowed: none. Lossless formats, lossy WebP and
/// JPEG (libjpeg-turbo's ISLOW IDCT and fancy upsampling, as Pillow; baseline, progressive,
/// 4:2:0, 4:2:2, 4:4:4, CMYK, EXIF-rotated) all match Pillow bit for bit.
fn tolerance(_name: &str) -> (u8, f64) {
    (0, 0.0)
}

#[test]
fn fixtures_decode_like_pillow() {
    let out = tempfile::tempdir().unwrap();
    let images = fixture_images();
    let mut args = vec![
        repo()
            .join("tests/reference/decode_reference.py")
            .display()
            .to_string(),
        out.path().display().to_string(),
    ];
    args.extend(images.iter().map(|p| p.display().to_string()));
    let sizes = python_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for path in &images {
        let name = path.file_name().unwrap().to_str().unwrap();
        let ours = decode_rgb(&std::fs::read(path).unwrap(), 1 << 30)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (w, h) = (
            sizes[name][0].as_u64().unwrap() as u32,
            sizes[name][1].as_u64().unwrap() as u32,
        );
        assert_eq!(ours.dimensions(), (w, h), "{name}: size (orientation?)");
        let theirs = std::fs::read(out.path().join(format!("{name}.rgb"))).unwrap();
        let diffs: Vec<u8> = ours
            .as_raw()
            .iter()
            .zip(&theirs)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().map(|d| *d as f64).sum::<f64>() / diffs.len() as f64;
        eprintln!("{name}: max diff {max}, mean {mean:.4}");
        let (max_ok, mean_ok) = tolerance(name);
        assert!(
            max <= max_ok && mean <= mean_ok,
            "{name}: max diff {max}, mean diff {mean:.3}"
        );
    }
}

#[test]
fn exif_rotation_turns_a_wide_jpeg_tall() {
    // A 40x20 JPEG with an APP1 EXIF segment saying orientation 6 (rotate 90° clockwise).
    let img = image::RgbImage::from_fn(40, 20, |x, _| image::Rgb([(x * 6) as u8, 0, 0]));
    let mut jpeg = Vec::new();
    img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
        &mut jpeg, 95,
    ))
    .unwrap();
    let tiff: Vec<u8> = [
        b"MM\0\x2a\0\0\0\x08".as_slice(), // big-endian TIFF header, IFD at 8
        &[0, 1],                          // one entry
        &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0], // Orientation SHORT 1 = 6
        &[0, 0, 0, 0],
    ]
    .concat();
    let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
    let len = (payload.len() + 2) as u16;
    let app1 = [&[0xFF, 0xE1], &len.to_be_bytes()[..], &payload].concat();
    let with_exif = [&jpeg[..2], &app1[..], &jpeg[2..]].concat();
    let decoded = decode_rgb(&with_exif, 1 << 20).unwrap();
    assert_eq!(decoded.dimensions(), (20, 40));
    // The left edge (dark) of the original is now the top.
    assert!(decoded.get_pixel(10, 0).0[0] < decoded.get_pixel(10, 39).0[0]);
}

/// A PNG of `w`×`h` whose IDAT is a tiny valid zlib stream (decoding it would fail), for
/// checking that the pixel limit is enforced from the header alone.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let body = [kind, data].concat();
        [
            &(data.len() as u32).to_be_bytes()[..],
            &body,
            &crc32(&body).to_be_bytes(),
        ]
        .concat()
    }
    let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 2, 0, 0, 0]].concat();
    [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        chunk(b"IHDR", &ihdr),
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
        chunk(b"IEND", &[]),
    ]
    .concat()
}

#[test]
fn broken_inputs_have_reasons() {
    let good = std::fs::read(fixtures().join("images/brick_tiny.png")).unwrap();
    let jpeg = std::fs::read(fixtures().join("images/horse_cmyk.jpg")).unwrap();
    assert_eq!(decode_rgb(b"", 1 << 20), Err(DecodeError::Empty));
    assert!(matches!(
        decode_rgb(b"hello, world", 1 << 20),
        Err(DecodeError::UnknownFormat(_))
    ));
    assert!(matches!(
        decode_rgb(&good[..good.len() / 2], 1 << 20),
        Err(DecodeError::Truncated(_) | DecodeError::Corrupt { .. })
    ));
    assert!(matches!(
        decode_rgb(&jpeg[..jpeg.len() / 2], 1 << 20),
        Err(DecodeError::Truncated(_))
    ));
    match decode_rgb(&png_header_only(50_000, 50_000), 178_956_970) {
        Err(DecodeError::TooLarge { pixels, .. }) => assert_eq!(pixels, 2_500_000_000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        decode_rgb(&good, 100),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn a_run_records_broken_images_and_goes_on() {
    let p = Project::new();
    let good = std::fs::read(fixtures().join("images/brick_tiny.png")).unwrap();
    let jpeg = std::fs::read(fixtures().join("images/horse_cmyk.jpg")).unwrap();
    p.copy(&fixtures().join("images/camera_alpha.png"), "imgs/ok.png");
    std::fs::write(p.path().join("imgs/empty.png"), b"").unwrap();
    std::fs::write(
        p.path().join("imgs/notes.jpg"),
        b"this is a text file, not a JPEG",
    )
    .unwrap();
    std::fs::write(p.path().join("imgs/cut.png"), &good[..good.len() / 2]).unwrap();
    std::fs::write(p.path().join("imgs/cut.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(
        p.path().join("imgs/bomb.png"),
        png_header_only(40_000, 40_000),
    )
    .unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 64] {
        *b ^= 0x5A;
    }
    std::fs::write(p.path().join("imgs/garbled.png"), &flipped).unwrap();
    p.write("datasets/d.yaml", "path: ../imgs\n");
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 1);
    assert_eq!(run["cells"], 7);
    assert_eq!(run["failures"], 6);
    let show = p.json(
        &["runs", "show", run["run_id"].as_str().unwrap(), "--json"],
        0,
    );
    let failed = show["failed"].as_array().unwrap();
    let reason = |file: &str| -> String {
        failed
            .iter()
            .find(|f| f["file"] == file)
            .unwrap_or_else(|| panic!("no failure for {file}: {failed:?}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("empty.png").contains("empty file"));
    assert!(reason("notes.jpg").contains("not an image"));
    assert!(
        reason("cut.png").contains("truncated") || reason("cut.png").contains("corrupt"),
        "{}",
        reason("cut.png")
    );
    assert!(reason("cut.jpg").contains("truncated"));
    assert!(reason("bomb.png").contains("exceeds the limit"));
    assert!(
        reason("garbled.png").contains("corrupt") || reason("garbled.png").contains("truncated"),
        "{}",
        reason("garbled.png")
    );
    // The good image was tagged.
    let q = p.expect(
        &[
            "query",
            "latest",
            "--json",
            "SELECT count(*) AS n FROM cells",
        ],
        0,
    );
    assert!(q.contains("\"n\":1"), "{q}");
}

#[test]
fn the_pixel_limit_is_configurable() {
    let p = Project::new();
    p.copy(&fixtures().join("images/brick_tiny.png"), "imgs/tiny.png"); // 64x40
    p.copy(&fixtures().join("images/camera_alpha.png"), "imgs/big.png"); // 512x512
    p.write("datasets/d.yaml", "path: ../imgs\nmax_pixels: 10000\n");
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 1);
    assert_eq!(run["failures"], 1);
    let show = p.json(&["runs", "show", "latest", "--json"], 0);
    assert_eq!(show["failed"][0]["file"], "big.png");
    assert!(show["failed"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("limit of 10000"));
}

/// Formats and modes the shared fixtures lack, made here: an animated GIF (first frame), BMP,
/// TIFF, grey + alpha PNG and 16-bit RGB(A) PNG — each decoded like Pillow decodes it.
#[test]
fn more_formats_decode_like_pillow() {
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rgb = image::RgbImage::from_fn(33, 21, |x, y| {
        Rgb([(x * 7) as u8, (y * 11) as u8, ((x * y) % 256) as u8])
    });
    rgb.save(d.join("plain.bmp")).unwrap();
    rgb.save(d.join("plain.tiff")).unwrap();
    let la: ImageBuffer<LumaA<u8>, Vec<u8>> =
        ImageBuffer::from_fn(20, 30, |x, y| LumaA([(x * 12) as u8, (y * 8) as u8]));
    la.save(d.join("grey_alpha.png")).unwrap();
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(17, 9, |x, y| Luma([(x * 3000 + y * 700) as u16]));
    g16.save(d.join("grey16.png")).unwrap();
    let rgba16: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_fn(12, 12, |x, y| {
        Rgba([
            (x * 5000) as u16,
            (y * 5000) as u16,
            30000,
            ((x + y) * 2700) as u16,
        ])
    });
    rgba16.save(d.join("rgba16.png")).unwrap();
    {
        let file = std::fs::File::create(d.join("anim.gif")).unwrap();
        let mut enc = image::codecs::gif::GifEncoder::new(file);
        let red = image::RgbaImage::from_pixel(10, 8, Rgba([255, 0, 0, 255]));
        let mut blue = image::RgbaImage::from_pixel(10, 8, Rgba([0, 0, 255, 255]));
        blue.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        let frames = vec![image::Frame::new(red), image::Frame::new(blue)];
        enc.encode_frames(frames).unwrap();
    }
    let names = [
        "plain.bmp",
        "plain.tiff",
        "grey_alpha.png",
        "grey16.png",
        "rgba16.png",
        "anim.gif",
    ];
    let out = d.join("ref");
    let mut args = vec![
        repo()
            .join("tests/reference/decode_reference.py")
            .display()
            .to_string(),
        out.display().to_string(),
    ];
    args.extend(names.iter().map(|n| d.join(n).display().to_string()));
    let sizes = python_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for name in names {
        let ours = decode_rgb(&std::fs::read(d.join(name)).unwrap(), 1 << 20)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            ours.width() as u64,
            sizes[name][0].as_u64().unwrap(),
            "{name}"
        );
        let theirs = std::fs::read(out.join(format!("{name}.rgb"))).unwrap();
        let max = ours
            .as_raw()
            .iter()
            .zip(&theirs)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        // 16-bit alpha: Pillow composites the 8-bit truncation, as we do; allow one level.
        assert!(max <= 1, "{name}: max diff {max}");
    }
    let gif = decode_rgb(&std::fs::read(d.join("anim.gif")).unwrap(), 1 << 20).unwrap();
    assert_eq!(gif.get_pixel(5, 5).0, [255, 0, 0], "the first frame");
}

/// One gate: image pixels are decoded only in `imaging::decode` (and its JPEG back end), where
/// the pixel limit is checked from the header first. The stealth-metadata reader streams rows
/// of PNG and WebP itself, after checking the caller's limit (`Budget::max_pixels`).
#[test]
fn every_image_decode_goes_through_the_gate() {
    let decoders = [
        "ImageReader",
        "load_from_memory",
        "image::open(",
        "DynamicImage::from_decoder",
        "mozjpeg_sys",
        "jpeg_decoder",
        "zune_jpeg",
    ];
    let allowed = ["src/imaging/decode.rs", "src/imaging/jpeg.rs"];
    let mut found = Vec::new();
    for e in walkdir::WalkDir::new(repo().join("src"))
        .into_iter()
        .flatten()
    {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let rel = path
            .strip_prefix(repo())
            .unwrap()
            .to_string_lossy()
            .to_string();
        if allowed.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if let Some(d) = decoders.iter().find(|d| line.contains(*d)) {
                found.push(format!("{rel}:{}: {d}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "image decodes outside imaging::decode:\n{}",
        found.join("\n")
    );
}
