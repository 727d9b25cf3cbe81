//! The commands' machine-readable shapes (`--json`) and exit codes, as documented.

mod common;

use common::*;

fn tagged_project() -> Project {
    let p = Project::new();
    for (name, tags) in [
        ("brick_tiny.png", "1girl, smile, general"),
        ("camera_alpha.png", "cat, no humans, sensitive"),
        ("grass_gray.png", ""),
    ] {
        p.copy(
            &fixtures().join("images").join(name),
            &format!("imgs/{name}"),
        );
        p.write(&format!("imgs/{}", name.replace(".png", ".txt")), tags);
    }
    p.copy(
        &fixtures().join("images/gravel_gray16.png"),
        "imgs/unlabelled.png",
    );
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    p.wd_model("wd", "");
    p.joytag_model("joy", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n    thresholds: [0.35, 0.5]\n  - model: joy\n    thresholds: [0.4]\ngoal: {metric: f1_micro, direction: maximize}\n",
    );
    p
}

#[test]
fn run_plan_metrics_and_runs_json() {
    let p = tagged_project();
    let plan = p.json(&["plan", "e", "--json"], 0);
    assert_eq!(
        (
            plan["cells"].as_u64(),
            plan["cache_hits"].as_u64(),
            plan["cache_misses"].as_u64()
        ),
        (Some(8), Some(0), Some(8))
    );
    assert_eq!(plan["variants"].as_array().unwrap().len(), 2);

    let run = p.json(&["run", "e", "--json"], 0);
    let id = run["run_id"].as_str().unwrap().to_string();
    assert!(p.path().join("runs").join(&id).join("run.yaml").is_file());
    assert_eq!(run["inferences"], 8);
    assert_eq!(run["best"]["metric"], "f1_micro");

    let m = p.json(&["metrics", &id, "--json"], 0);
    let variants = m["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 3, "one entry per variant and threshold");
    for v in variants {
        for k in [
            "variant",
            "threshold",
            "micro",
            "macro",
            "samples",
            "map",
            "per_tag",
        ] {
            assert!(v.get(k).is_some(), "missing {k}: {v}");
        }
        for avg in ["micro", "macro", "samples"] {
            for k in ["precision", "recall", "f1"] {
                assert!(v[avg][k].is_f64(), "{avg}.{k}");
            }
        }
        assert_eq!(v["images"], 3, "the unlabelled image is not scored");
        for t in v["per_tag"].as_array().unwrap() {
            for k in ["tag", "precision", "recall", "f1", "support", "ap"] {
                assert!(t.get(k).is_some(), "per_tag missing {k}");
            }
        }
    }
    assert_eq!(variants[0]["variant"], "wd");
    assert_eq!(variants[0]["threshold"], 0.35);
    assert_eq!(variants[2]["variant"], "joy");
    // Extra thresholds from stored scores, without re-running anything.
    let m2 = p.json(
        &[
            "metrics",
            &id,
            "--json",
            "--thresholds",
            "0.1,0.9",
            "--variant",
            "wd",
        ],
        0,
    );
    assert_eq!(m2["variants"].as_array().unwrap().len(), 2);

    let list = p.json(&["runs", "list", "--json"], 0);
    assert_eq!(list["runs"][0]["run_id"], id.as_str());
    let show = p.json(&["runs", "show", &id, "--json"], 0);
    for k in ["cells", "cache_hits", "inferences", "failures"] {
        assert!(show[k].is_u64(), "runs show lacks {k}");
    }
    assert_eq!(show["failed"].as_array().unwrap().len(), 0);
    assert_eq!(show["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(show["models"]["wd"]["kind"], "onnx-tagger");
    assert_eq!(
        show["models"]["wd"]["files"][0]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    // Prefixes and `latest` resolve.
    assert_eq!(
        p.json(&["runs", "show", "latest", "--json"], 0)["run_id"],
        id.as_str()
    );
    let text = p.expect(&["runs", "show", &id[..12]], 0);
    assert!(text.contains(&id));
}

#[test]
fn run_tables_are_parquet_duckdb_reads() {
    let p = tagged_project();
    let run = p.json(&["run", "e", "--json", "--quiet"], 0);
    let dir = p.path().join("runs").join(run["run_id"].as_str().unwrap());
    for f in [
        "images.parquet",
        "ground_truth.parquet",
        "metrics.json",
        "run.yaml",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let q = p.expect(&["query", "latest", "--json", "SELECT count(*) AS n, count(DISTINCT variant) AS v, min(score) >= 0.01 AS floor_ok FROM outputs WHERE category <> 'rating'"], 0);
    let v: serde_json::Value = serde_json::from_str(q.trim()).unwrap();
    assert_eq!(v["v"], 2);
    assert_eq!(v["floor_ok"], true);
    let q = p.expect(
        &[
            "query",
            "latest",
            "--json",
            "SELECT count(*) AS n FROM ground_truth WHERE source = 'txt'",
        ],
        0,
    );
    assert!(q.contains("\"n\":6"), "{q}");
    let q = p.expect(
        &[
            "query",
            "latest",
            "--json",
            "SELECT count(*) AS n FROM runs",
        ],
        0,
    );
    assert!(q.contains("\"n\":1"), "{q}");
    // The key is spelled out beside each cell.
    let q = p.expect(
        &[
            "query",
            "latest",
            "--json",
            "SELECT key_json FROM cells LIMIT 1",
        ],
        0,
    );
    assert!(
        q.contains("adapter_version") && q.contains("onnx-tagger"),
        "{q}"
    );
    // Bad SQL is a clear error.
    let out = p.run(&["query", "latest", "SELECT nope FROM outputs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn predict_prints_every_score_including_ratings() {
    let p = Project::new();
    p.wd_model("wd", "");
    let img = fixtures().join("images/brick_tiny.png");
    let out = p.expect(
        &["predict", "--model", "wd", "--json", img.to_str().unwrap()],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["file"], img.to_str().unwrap());
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    let tags = v["tags"].as_object().unwrap();
    for rating in ["general", "sensitive", "questionable", "explicit"] {
        assert!(tags.contains_key(rating), "rating {rating} missing");
    }
    assert!(tags.values().all(|s| s.as_f64().unwrap() >= 0.0));
    // Cached: the second call infers nothing and prints the same.
    let again = p.expect(
        &["predict", "--model", "wd", "--json", img.to_str().unwrap()],
        0,
    );
    assert_eq!(out, again);
    let runs = p.json(&["runs", "list", "--json"], 0);
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "the second call computed nothing"
    );
    // Higher min-score keeps ratings.
    let out = p.expect(
        &[
            "predict",
            "--model",
            "wd",
            "--json",
            "--min-score",
            "0.99",
            img.to_str().unwrap(),
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["tags"].as_object().unwrap().len(), 4);
    // A broken file: exit 1, an error line, the others still printed.
    let bad = p.write("bad.png", "nope");
    let out = p.run(&[
        "predict",
        "--model",
        "wd",
        "--json",
        bad.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["error"].as_str().unwrap().contains("not an image"));
    assert!(!lines[1]["tags"].as_object().unwrap().is_empty());
}

#[test]
fn schema_for_each_kind() {
    let p = Project::new();
    for kind in ["dataset", "model", "experiment"] {
        let s = p.json(&["schema", kind], 0);
        assert_eq!(s["type"], "object");
        assert!(s["properties"].is_object());
        assert_eq!(s["additionalProperties"], false);
    }
    let all = p.json(&["schema"], 0);
    assert!(all["experiment"]["properties"]["variants"].is_object());
    let out = p.run(&["schema", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn text_output_and_quiet_modes() {
    let p = tagged_project();
    let out = p.run(&["run", "e"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("F1 micro") && stdout.contains("wd") && stdout.contains("joy"),
        "{stdout}"
    );
    assert!(stdout.contains("* best by f1_micro"), "{stdout}");
    // Not a terminal: no progress bars on stderr.
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\r'));
    let table = p.expect(&["metrics", "latest"], 0);
    assert!(table.contains("support"), "{table}");
    let plan = p.expect(&["plan", "e"], 0);
    assert!(plan.contains("8 cells: 8 cached"), "{plan}");
}

#[test]
fn bad_run_references_are_clear() {
    let p = Project::new();
    let out = p.run(&["runs", "show", "nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no runs in"));
}

#[test]
fn committed_schemas_are_current() {
    let p = Project::new();
    for kind in ["dataset", "model", "experiment", "production"] {
        let committed: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join(format!("docs/schema/{kind}.schema.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            p.json(&["schema", kind], 0),
            committed,
            "docs/schema/{kind}.schema.json is stale: run `iw-lab schema --out docs/schema`"
        );
    }
}
