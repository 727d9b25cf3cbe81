//! `iw-lab analyze` and `iw-lab diff` agree with an independent oracle
//! (`tests/reference/analyses_case.py`: scikit-learn's `precision_recall_curve`,
//! `precision_recall_fscore_support`, `f1_score`, `average_precision_score`, NumPy's
//! `percentile`, its own SplitMix64 for the bootstrap draws) recomputing every number from the
//! run's stored scores, which it reads through `iw-lab query`. The case mixes a WD-shaped ONNX
//! tagger (general, character and rating categories) with two sidecar taggers, images in
//! folders, with and without A1111 generation parameters, unlabelled and empty-truth images,
//! exact ties and scores exactly at thresholds. Tolerance: 1e-9 (both sides in float64 from the
//! same float32 scores). Also: bad input exits 2 with a clear message.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn setup(seed: u32) -> (Project, String) {
    let p = Project::new();
    let data = p.path().join("data");
    let status = Command::new(python())
        .arg(repo().join("tests/reference/analyses_case.py"))
        .args(["make", "--out", data.to_str().unwrap()])
        .args(["--seed", &seed.to_string(), "--images", "60"])
        .status()
        .unwrap();
    assert!(status.success());
    p.write(
        "datasets/d.yaml",
        "path: ../data/images\nground_truth:\n  - source: txt\n",
    );
    p.write(
        "datasets/o.yaml",
        "path: ../data/other\nground_truth:\n  - source: txt\n",
    );
    p.wd_model("wd", "");
    p.write(
        "models/side-a.yaml",
        "kind: sidecar\npath: ../data/preds_a\nscore_floor: 0.0\n",
    );
    p.write(
        "models/side-b.yaml",
        "kind: sidecar\npath: ../data/preds_b\nscore_floor: 0.0\n",
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n    thresholds: [0.3, 0.5]\n  - model: side-a\n    thresholds: [0.3, 0.5]\n  - model: side-b\n    thresholds: [0.5]\n",
    );
    p.write(
        "experiments/o.yaml",
        "dataset: o\nvariants:\n  - model: side-a\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 0);
    let id = run["run_id"].as_str().unwrap().to_string();
    (p, id)
}

/// Writes the run's tables as JSON lines for the oracle.
fn dump(p: &Project, run: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let tables = [
        (
            "outputs",
            "SELECT variant, path, tag, score::DOUBLE AS score, category FROM outputs",
        ),
        ("cells", "SELECT DISTINCT variant, path FROM cells"),
        (
            "ground_truth",
            "SELECT path, tag FROM ground_truth WHERE source = 'txt'",
        ),
        (
            "images",
            "SELECT path, image_hash, labelled, folder, sampler, generator, model FROM images",
        ),
        ("loras", "SELECT path, lora FROM image_loras"),
    ];
    for (name, sql) in tables {
        let out = p.expect(&["query", run, sql, "--json"], 0);
        std::fs::write(dir.join(format!("{name}.jsonl")), out).unwrap();
    }
    std::fs::write(
        dir.join("run.json"),
        r#"{"wd": [0.3, 0.5], "side-a": [0.3, 0.5], "side-b": [0.5]}"#,
    )
    .unwrap();
}

fn save(p: &Project, args: &[&str], file: &str) -> std::path::PathBuf {
    let out = p.expect(args, 0);
    let path = p.path().join(file);
    std::fs::write(&path, out).unwrap();
    path
}

fn oracle(args: &[&str]) {
    let out = Command::new(python())
        .arg(repo().join("tests/reference/analyses_case.py"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the oracle disagrees:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn case(seed: u32) {
    let (p, run) = setup(seed);
    let d = p.path().join("dump");
    dump(&p, &run, &d);
    let a1 = save(
        &p,
        &[
            "analyze",
            &run,
            "--json",
            "--by",
            "folder",
            "--bootstrap",
            "30",
            "--seed",
            "3",
            "--top",
            "1000",
            "--min-count",
            "1",
            "--curves",
        ],
        "a1.json",
    );
    let a2 = save(
        &p,
        &[
            "analyze",
            &run,
            "--json",
            "--by",
            "sampler",
            "--variant",
            "side-b,wd",
            "--threshold",
            "0.4",
            "--top",
            "1000",
            "--min-count",
            "2",
            "--curves",
        ],
        "a2.json",
    );
    let a3 = save(
        &p,
        &[
            "analyze",
            &run,
            "--json",
            "--by",
            "model",
            "--variant",
            "wd",
            "--top",
            "1000",
            "--min-count",
            "3",
            "--curves",
        ],
        "a3.json",
    );
    let d1 = save(
        &p,
        &[
            "diff",
            &format!("{run}:side-a"),
            &format!("{run}:side-b"),
            "--json",
            "--top",
            "1000",
        ],
        "d1.json",
    );
    let d2 = save(
        &p,
        &[
            "diff",
            &format!("{run}:wd"),
            &format!("{run}:side-a"),
            "--json",
            "--threshold",
            "0.4",
            "--top",
            "5",
        ],
        "d2.json",
    );
    let s = |x: &std::path::PathBuf| x.to_str().unwrap().to_string();
    oracle(&[
        "--dump",
        &s(&d),
        "--analyze",
        &s(&a1),
        "--analyze",
        &s(&a2),
        "--analyze",
        &s(&a3),
        "--diff",
        &s(&d1),
        "--diff",
        &s(&d2),
    ]);

    // The plain-threshold post-processing is `iw-lab metrics` exactly.
    let a1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a1).unwrap()).unwrap();
    let metrics = p.json(&["metrics", &run, "--json"], 0);
    for m in metrics["variants"].as_array().unwrap() {
        let v = a1["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant"] == m["variant"])
            .unwrap();
        let pol = v["postprocess"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| {
                x["policy"]["kind"] == "threshold"
                    && x["policy"]["threshold"] == m["threshold"]
                    && x["tuned"] == false
            })
            .unwrap();
        for avg in ["micro", "macro", "samples"] {
            for k in ["precision", "recall", "f1"] {
                let (x, y) = (pol[avg][k].as_f64().unwrap(), m[avg][k].as_f64().unwrap());
                // the same counts, summed over tags or images in another order
                assert!(
                    (x - y).abs() <= 1e-12,
                    "{} @ {}: {avg} {k}: analyze {x} vs metrics {y}",
                    m["variant"],
                    m["threshold"]
                );
            }
        }
        assert_eq!(pol["labels"], m["labels"]);
    }

    // Two runs: the same images by content hash, the same diff as within one run.
    let run2 = p.json(&["run", "e", "--json", "--quiet"], 0)["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cross = p.json(
        &[
            "diff",
            &format!("{run}:side-a"),
            &format!("{run2}:side-b"),
            "--json",
            "--top",
            "1000",
        ],
        0,
    );
    let within: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&d1).unwrap()).unwrap();
    for k in [
        "shared_images",
        "tags",
        "images",
        "tags_gained",
        "tags_lost",
    ] {
        assert_eq!(cross[k], within[k], "cross-run diff: {k}");
    }
    // The text output runs too.
    let text = p.expect(&["analyze", &run, "--by", "lora", "--bootstrap", "5"], 0);
    assert!(
        text.contains("threshold sweep") && text.contains("paired bootstrap"),
        "{text}"
    );
    let text = p.expect(
        &["diff", &format!("{run}:side-a"), &format!("{run}:side-b")],
        0,
    );
    assert!(text.contains("shared images"), "{text}");
}

#[test]
fn analyses_match_the_oracle_seed_0() {
    case(0);
}

#[test]
fn analyses_match_the_oracle_seed_5() {
    case(5);
}

#[test]
fn bad_input_exits_2() {
    let (p, run) = setup(1);
    let other = p.json(&["run", "o", "--json", "--quiet"], 0)["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let err = |args: &[&str], needle: &str| {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    };
    err(&["analyze", "no-such-run"], "no-such-run");
    err(&["analyze", &run, "--variant", "nope"], "no variant `nope`");
    err(
        &["analyze", &run, "--by", "colour"],
        "cannot group by `colour`",
    );
    err(&["analyze", &run, "--threshold", "1.5"], "out of range");
    err(&["diff", &format!("{run}:nope"), &run], "no variant `nope`");
    err(&["diff", "no-such-run", &run], "no-such-run");
    err(
        &["diff", &format!("{run}:side-a"), &format!("{other}:side-a")],
        "share no images",
    );
}

/// The `all` sweep counts what the leaderboard counts: ratings included, by argmax. At each
/// variant's own thresholds its precision, recall and F1 are `metrics`' micro numbers, for a
/// tagger whose ratings matter; `general` is the general tags alone.
#[test]
fn the_all_sweep_is_the_leaderboard_at_every_threshold() {
    let (p, run) = setup(7);
    let a = p.json(&["analyze", &run, "--json", "--bootstrap", "0"], 0);
    let m = p.json(&["metrics", &run, "--json"], 0);
    let mut checked = 0;
    for entry in m["variants"].as_array().unwrap() {
        let name = entry["variant"].as_str().unwrap();
        let t = entry["threshold"].as_f64().unwrap();
        let va = a["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant"] == name)
            .unwrap();
        let all = va["sweeps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["category"] == "all")
            .unwrap();
        let point = all["grid"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| (g["threshold"].as_f64().unwrap() - t).abs() < 1e-12)
            .unwrap();
        for k in ["precision", "recall", "f1"] {
            let (ours, board) = (
                point[k].as_f64().unwrap(),
                entry["micro"][k].as_f64().unwrap(),
            );
            assert!(
                (ours - board).abs() < 1e-12,
                "{name} @ {t} {k}: sweep {ours}, leaderboard {board}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 5);
    // The case's WD tagger outputs ratings, so the general series differs from the headline.
    let wd = a["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == "wd")
        .unwrap();
    let positives = |cat: &str| {
        wd["sweeps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["category"] == cat)
            .unwrap()["positives"]
            .as_u64()
            .unwrap()
    };
    assert!(positives("all") > positives("general"));
}
