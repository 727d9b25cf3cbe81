//! `iw-lab metrics` agrees with scikit-learn: precision/recall/F1 (micro, macro, samples) with
//! zero_division=0 over the labels present in ground truth or predictions, per-tag numbers,
//! per-tag average precision (missing scores = 0) and mAP. Cases are random (several seeds)
//! and include empty ground truth, images with no predictions, unlabelled images, exact ties
//! and scores exactly at a threshold. Tolerance: 1e-9 (both sides compute in float64 from the
//! same float32 scores).

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;

const TOL: f64 = 1e-9;

fn close(ours: &serde_json::Value, theirs: &serde_json::Value, what: &str) {
    match (ours.as_f64(), theirs.as_f64()) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= TOL,
            "{what}: iw-lab {x} vs scikit-learn {y}"
        ),
        _ => assert_eq!(ours, theirs, "{what}"),
    }
}

fn case(seed: u32) {
    let p = Project::new();
    let data = p.path().join("data");
    let status = Command::new(python())
        .arg(repo().join("tests/reference/metrics_case.py"))
        .args([
            "--out",
            data.to_str().unwrap(),
            "--seed",
            &seed.to_string(),
            "--images",
            "60",
        ])
        .args(["--thresholds", "0.25,0.3,0.5,0.75"])
        .status()
        .unwrap();
    assert!(status.success());
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("expected.json")).unwrap())
            .unwrap();

    p.write(
        "datasets/d.yaml",
        "path: ../data/images\nground_truth:\n  - source: txt\n",
    );
    p.write(
        "models/other-tool.yaml",
        "kind: sidecar\npath: ../data/preds\nscore_floor: 0.0\n",
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: other-tool\n    thresholds: [0.25, 0.3, 0.5, 0.75]\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(run["inferences"], 60);
    let got = p.json(&["metrics", run["run_id"].as_str().unwrap(), "--json"], 0);

    let ours = got["variants"].as_array().unwrap();
    let theirs = expected["variants"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(theirs) {
        let th = t["threshold"].as_f64().unwrap();
        assert_eq!(o["threshold"].as_f64().unwrap(), th);
        assert_eq!(o["variant"], "other-tool");
        assert_eq!(o["images"], t["images"], "scored images @ {th}");
        for avg in ["micro", "macro", "samples"] {
            for m in ["precision", "recall", "f1"] {
                close(
                    &o[avg][m],
                    &t[avg][m],
                    &format!("seed {seed} @ {th}: {avg} {m}"),
                );
            }
        }
        close(&o["map"], &t["map"], &format!("seed {seed}: mAP"));
        let mine: HashMap<&str, &serde_json::Value> = o["per_tag"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["tag"].as_str().unwrap(), r))
            .collect();
        let rows = t["per_tag"].as_array().unwrap();
        assert_eq!(mine.len(), rows.len(), "seed {seed} @ {th}: labels");
        for r in rows {
            let tag = r["tag"].as_str().unwrap();
            let m = mine
                .get(tag)
                .unwrap_or_else(|| panic!("seed {seed} @ {th}: no row for `{tag}`"));
            for k in ["precision", "recall", "f1", "support", "ap"] {
                close(&m[k], &r[k], &format!("seed {seed} @ {th}: `{tag}` {k}"));
            }
        }
    }
}

#[test]
fn metrics_match_scikit_learn_seed_0() {
    case(0);
}

#[test]
fn metrics_match_scikit_learn_seed_1() {
    case(1);
}

#[test]
fn metrics_match_scikit_learn_seed_7() {
    case(7);
}
