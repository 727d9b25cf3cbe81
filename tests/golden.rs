//! Golden files for each sidecar writer: fixed tags in, exact bytes out. A change to a format
//! shows up here as a diff; regenerate deliberately with `IW_LAB_BLESS=1 scripts/test golden`.

mod common;

use std::path::Path;

use common::*;
use iw_lab::config::Category;
use iw_lab::postprocess::Decided;
use iw_lab::production::writers::{
    json, txt, xmp, JsonOptions, RatingPlacement, TxtOptions, XmpOptions,
};

fn decided() -> Vec<Decided> {
    let d = |tag: &str, score: f32, category| Decided {
        tag: tag.into(),
        score,
        category,
    };
    vec![
        d("1girl", 0.98, Category::General),
        d("general", 0.91, Category::Rating),
        d("saber (fate)", 0.87, Category::Character),
        d("long hair", 0.74, Category::General),
        d("^_^", 0.52, Category::General),
        d("fish & chips <3", 0.41, Category::General),
    ]
}

fn check(name: &str, actual: &[u8]) {
    let path = fixtures().join("golden").join(name);
    if std::env::var("IW_LAB_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} missing; run with IW_LAB_BLESS=1", path.display()));
    assert_eq!(
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(&expected),
        "{name} differs from its golden file"
    );
}

#[test]
fn txt_captions() {
    let img = Path::new("/photos/img.png");
    check(
        "caption-default.txt",
        &txt::render(img, None, &[], &decided(), &TxtOptions::default()).content,
    );
    let opts = TxtOptions {
        trigger_words: vec!["mystyle".into()],
        rating: RatingPlacement::First,
        underscores: true,
        escape_parentheses: true,
        ..Default::default()
    };
    check(
        "caption-booru.txt",
        &txt::render(img, None, &[], &decided(), &opts).content,
    );
    let kept = txt::render(
        img,
        Some("my own tag, old tag\n"),
        &["old tag".into()],
        &decided(),
        &TxtOptions::default(),
    );
    check("caption-keep.txt", &kept.content);
}

#[test]
fn xmp_sidecars() {
    let img = Path::new("/photos/img.jpg");
    check(
        "new.xmp",
        &xmp::render(img, None, &decided(), &XmpOptions::default())
            .unwrap()
            .content,
    );
    for name in ["exiv2-darktable.xmp", "lightroom-style.xmp"] {
        let user = std::fs::read_to_string(fixtures().join("xmp").join(name)).unwrap();
        let merged = xmp::render(img, Some(&user), &decided(), &XmpOptions::default()).unwrap();
        check(&format!("merged-{name}"), &merged.content);
    }
}

#[test]
fn json_documents() {
    let img = Path::new("/photos/img.png");
    let scores: Vec<(String, f32, Category)> = decided()
        .iter()
        .map(|d| (d.tag.clone(), d.score, d.category))
        .chain([("solo".into(), 0.2, Category::General)])
        .collect();
    let provenance = json::Provenance {
        config: "production".into(),
        config_hash: "c".repeat(64),
        model: "wd-v3".into(),
        model_fingerprint: "f".repeat(64),
        run_id: Some("20261123-101500-demo-3fa2c1".into()),
        tool_version: "0.1.0".into(),
    };
    let doc = json::document(img, &"a".repeat(64), &decided(), &scores, None, &provenance);
    check(
        "doc.json",
        &json::render(img, None, &doc, &JsonOptions::default())
            .unwrap()
            .content,
    );
}
