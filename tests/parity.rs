//! The `onnx-tagger` adapter agrees with the independent Python reference pipeline
//! (`tests/reference/tagger_reference.py`: Pillow + NumPy + onnxruntime) on every decoding
//! fixture: per-tag probabilities within 1e-3, for `wd` and `joytag` models made by
//! `make_tagger_model.py`. The models are spatially and channel sensitive, so a wrong channel
//! order, padding colour, orientation, alpha handling or resize shows up here.

mod common;

use std::collections::HashMap;

use common::*;

const TOLERANCE: f64 = 1e-3;

fn check(preset: &str, labels: &str) {
    let p = Project::new();
    match preset {
        "wd" => p.wd_model("m", "score_floor: 0.0\n"),
        _ => p.joytag_model("m", "score_floor: 0.0\n"),
    }
    let images = fixture_images();
    let model_dir = fixtures().join("models").join(preset);
    let mut args: Vec<String> = vec![
        repo()
            .join("tests/reference/tagger_reference.py")
            .display()
            .to_string(),
        "--preset".into(),
        preset.into(),
        "--model".into(),
        model_dir.join("model.onnx").display().to_string(),
        "--tags".into(),
        model_dir.join(labels).display().to_string(),
    ];
    args.extend(images.iter().map(|i| i.display().to_string()));
    let reference = python_json(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let mut cmd_args = vec!["predict", "--model", "m", "--json", "--min-score", "0"];
    let image_args: Vec<String> = images.iter().map(|i| i.display().to_string()).collect();
    cmd_args.extend(image_args.iter().map(String::as_str));
    let out = p.expect(&cmd_args, 0);
    let ours: HashMap<String, serde_json::Value> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["file"].as_str().unwrap().to_string(), v)
        })
        .collect();

    let mut worst = 0.0f64;
    for img in reference["images"].as_array().unwrap() {
        let path = img["path"].as_str().unwrap();
        let mine = &ours[path]["tags"];
        let probs = img["probs"].as_object().unwrap();
        assert!(!probs.is_empty());
        for (name, p) in probs {
            let ours_p = mine[norm(name).as_str()]
                .as_f64()
                .unwrap_or_else(|| panic!("{path}: no score for `{name}`"));
            let d = (ours_p - p.as_f64().unwrap()).abs();
            worst = worst.max(d);
            assert!(
                d <= TOLERANCE,
                "{preset} {path} `{name}`: ours {ours_p} vs reference {p} (diff {d:.2e})"
            );
        }
    }
    eprintln!(
        "{preset}: worst difference {worst:.2e} over {} images",
        images.len()
    );
}

#[test]
fn wd_matches_the_python_reference() {
    check("wd", "selected_tags.csv");
}

#[test]
fn joytag_matches_the_python_reference() {
    check("joytag", "top_tags.txt");
}
