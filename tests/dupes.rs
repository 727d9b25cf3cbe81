//! `iw-lab dupes`: perceptual hashes bit for bit as Python's `imagehash` and blockhash.io's
//! reference compute them, duplicate groups with keepers on a folder of transformed copies,
//! the not-a-duplicate memory, the move script, the cache, and hostile file names.

mod common;

use std::path::Path;

use common::*;

const METHODS: &[&str] = &[
    "phash",
    "phash16",
    "dhash",
    "dhash16",
    "ahash",
    "ahash16",
    "blockhash",
    "blockhash16",
];

#[test]
fn hashes_match_imagehash_and_blockhash_bit_for_bit() {
    let p = Project::new();
    let images = fixtures().join("images");
    let reference = python_json(&[
        repo()
            .join("tests/reference/phash_reference.py")
            .to_str()
            .unwrap(),
        images.to_str().unwrap(),
    ]);
    let folder = images.to_str().unwrap();
    for method in METHODS {
        let out = p.json(
            &["dupes", folder, "--method", method, "--hashes", "--json"],
            0,
        );
        let ours = out["hashes"].as_array().unwrap();
        assert_eq!(
            ours.len(),
            reference.as_object().unwrap().len(),
            "{method}: image count"
        );
        for h in ours {
            let file = h["file"].as_str().unwrap();
            assert_eq!(
                h["hash"], reference[file][method],
                "{method} of {file}: ours vs the reference"
            );
        }
    }
}

/// A photo, transformed copies of it, a byte-for-byte copy, another photo, a broken file,
/// and names that are hostile to shells and file systems.
fn make_folder(dir: &Path) {
    let photo = image::open(fixtures().join("images/retina_wide.jpg"))
        .unwrap()
        .to_rgb8();
    let other = image::open(fixtures().join("images/horse_cmyk.jpg"))
        .unwrap()
        .to_rgb8();
    std::fs::create_dir_all(dir.join("sub dir")).unwrap();
    photo.save(dir.join("original.png")).unwrap();
    let half = image::imageops::resize(
        &photo,
        photo.width() / 2,
        photo.height() / 2,
        image::imageops::FilterType::Triangle,
    );
    half.save(dir.join("sub dir/it's half \u{1F600}.jpg"))
        .unwrap();
    let brighter = image::RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        let p = photo.get_pixel(x, y);
        image::Rgb(p.0.map(|c| c.saturating_add(12)))
    });
    brighter.save(dir.join("Brighter.webp")).unwrap();
    std::fs::copy(dir.join("original.png"), dir.join("ORIGINAL copy.png")).unwrap();
    other.save(dir.join("horse.png")).unwrap();
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
}

#[test]
fn groups_copies_suggests_keepers_and_remembers_dismissals() {
    let p = Project::new();
    let folder = p.path().join("photos");
    make_folder(&folder);
    let f = folder.to_str().unwrap();
    // A broken file is reported (exit 1) and the rest still compared.
    let out = p.json(&["dupes", f, "--json"], 1);
    assert_eq!(out["method"], "phash");
    assert_eq!(out["bits"], 64);
    assert_eq!(out["unreadable"][0]["file"], "broken.png", "{out}");
    let groups = out["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{out}");
    let g = &groups[0];
    let files: Vec<&str> = g["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "Brighter.webp",
            "ORIGINAL copy.png",
            "original.png",
            "sub dir/it's half \u{1F600}.jpg"
        ]
    );
    assert_eq!(g["exact"], false);
    // Full size and lossless: one of the two identical PNGs (the shorter name).
    assert_eq!(g["keeper"], "original.png");
    let exact: Vec<_> = out["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["exact"] == true)
        .collect();
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0]["distance"], 0);
    // The cache: a second call computes nothing and adds no run.
    let runs = || std::fs::read_dir(p.path().join("runs")).unwrap().count();
    let before = runs();
    let again = p.json(&["dupes", f, "--json"], 1);
    assert_eq!(again["groups"], out["groups"]);
    assert_eq!(runs(), before, "cached hashes need no new run");
    // Dismiss the brighter copy against the original: that pair is gone, the others stay.
    p.expect(
        &[
            "dupes",
            "--not-duplicate",
            &format!("{f}/Brighter.webp"),
            &format!("{f}/original.png"),
        ],
        0,
    );
    let after = p.json(&["dupes", f, "--json"], 1);
    assert_eq!(after["dismissed"], 1, "{after}");
    let still = after["pairs"].as_array().unwrap();
    assert!(!still
        .iter()
        .any(|x| x["a"] == "Brighter.webp" && x["b"] == "original.png"));
    // Identical bytes can never be marked apart.
    let same = p.run(&[
        "dupes",
        "--not-duplicate",
        &format!("{f}/original.png"),
        &format!("{f}/ORIGINAL copy.png"),
    ]);
    assert_eq!(same.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&same.stderr).contains("same bytes"));
}

#[test]
fn the_script_moves_copies_aside_and_never_overwrites() {
    let p = Project::new();
    let folder = p.path().join("photos");
    make_folder(&folder);
    let script = p.expect(&["dupes", folder.to_str().unwrap(), "--script"], 1);
    assert!(script.starts_with("#!/bin/sh"));
    // Nothing moved yet: iw-lab only prints.
    assert!(folder.join("Brighter.webp").exists());
    let path = p.path().join("move.sh");
    std::fs::write(&path, &script).unwrap();
    for _ in 0..2 {
        let status = std::process::Command::new("sh")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success() || folder.join("duplicates").exists());
    }
    assert!(folder.join("original.png").exists(), "the keeper stays");
    assert!(folder.join("horse.png").exists(), "not a duplicate");
    for moved in [
        "Brighter.webp",
        "ORIGINAL copy.png",
        "sub dir/it's half \u{1F600}.jpg",
    ] {
        assert!(!folder.join(moved).exists(), "{moved} moved");
        assert!(
            folder.join("duplicates").join(moved).exists(),
            "{moved} in duplicates/"
        );
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let p = Project::new();
    let f = fixtures().join("images");
    let f = f.to_str().unwrap();
    let out = p.run(&["dupes", f, "--method", "sha1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown --method `sha1`"));
    let out = p.run(&["dupes", f, "--max-distance", "65"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than the 64 bits"));
    let out = p.run(&["dupes", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a folder, a dataset"));
}

#[test]
fn a_phash_model_is_not_an_experiment_variant() {
    let p = Project::new();
    p.copy(&fixtures().join("images/brick_tiny.png"), "imgs/a.png");
    p.write("datasets/demo.yaml", "path: ../imgs\n");
    p.write("models/hashes.yaml", "kind: phash\n");
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: hashes\n",
    );
    let out = p.run(&["plan", "e"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`variants[0].model`") && err.contains("use `iw-lab dupes`"),
        "{err}"
    );
    // As `--model`, it computes every method at once; the built-in one computes one.
    let imgs = p.path().join("imgs");
    let all = p.json(
        &[
            "dupes",
            imgs.to_str().unwrap(),
            "--model",
            "hashes",
            "--method",
            "dhash16",
            "--hashes",
            "--json",
        ],
        0,
    );
    assert_eq!(all["hashes"][0]["hash"].as_str().unwrap().len(), 64);
}

#[test]
fn links_are_not_duplicates_and_the_script_never_reaches_outside() {
    let p = Project::new();
    let folder = p.path().join("pics");
    let outside = p.path().join("outside");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let photo = fixtures().join("images/retina_wide.jpg");
    std::fs::copy(&photo, outside.join("out.jpg")).unwrap();
    std::fs::copy(&photo, folder.join("mine.jpg")).unwrap();
    std::os::unix::fs::symlink(folder.join("mine.jpg"), folder.join("link.jpg")).unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("outdir")).unwrap();
    let out = p.json(&["dupes", folder.to_str().unwrap(), "--json"], 0);
    let files: Vec<&str> = out["groups"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "a link to a file is that file, once: {out}");
    let script = p.expect(&["dupes", folder.to_str().unwrap(), "--script"], 0);
    let path = p.path().join("move.sh");
    std::fs::write(&path, &script).unwrap();
    assert!(std::process::Command::new("sh")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    assert!(
        outside.join("out.jpg").exists(),
        "nothing outside the folder moves:\n{script}"
    );
}

#[test]
fn a_cut_short_line_never_swallows_a_remembered_pair() {
    let p = Project::new();
    let f = p.path().join("photos");
    make_folder(&f);
    std::fs::create_dir_all(p.path().join(".iw-lab")).unwrap();
    std::fs::write(
        p.path().join(".iw-lab/not-duplicates.jsonl"),
        "{\"a\":\"trunc",
    )
    .unwrap();
    let (a, b) = (f.join("Brighter.webp"), f.join("original.png"));
    p.expect(
        &[
            "dupes",
            "--not-duplicate",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        0,
    );
    let out = p.json(&["dupes", f.to_str().unwrap(), "--json"], 1);
    assert_eq!(out["dismissed"], 1, "{out}");
}
