//! The cache: runs are the cache, keyed by content. A rerun performs zero inferences; only
//! what changed is recomputed; failures are never cached; a run killed at any moment loses
//! only work in flight; two runs at once both succeed.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn project_with_images(n: usize, side: u32) -> Project {
    let p = Project::new();
    noise_images(&p.path().join("imgs"), n, side);
    p.write("datasets/d.yaml", "path: ../imgs\n");
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n    thresholds: [0.5]\n",
    );
    p
}

fn run(p: &Project, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", "e", "--json", "--quiet"];
    args.extend_from_slice(extra);
    p.json(&args, 0)
}

#[test]
fn a_rerun_performs_zero_inferences() {
    let p = project_with_images(12, 64);
    let first = run(&p, &[]);
    assert_eq!(
        (
            first["cells"].as_u64(),
            first["inferences"].as_u64(),
            first["cache_hits"].as_u64()
        ),
        (Some(12), Some(12), Some(0))
    );
    let second = run(&p, &[]);
    assert_eq!(
        (second["inferences"].as_u64(), second["cache_hits"].as_u64()),
        (Some(0), Some(12))
    );
    // Identical stored outputs.
    let q = |id: &str| {
        p.expect(
            &[
                "query",
                id,
                "--json",
                "SELECT image_hash, tag, score FROM outputs ORDER BY ALL",
            ],
            0,
        )
    };
    assert_eq!(
        q(first["run_id"].as_str().unwrap()),
        q(second["run_id"].as_str().unwrap())
    );
    // --no-cache computes everything again.
    let third = run(&p, &["--no-cache"]);
    assert_eq!(third["inferences"], 12);
    // plan agrees, and costs nothing.
    let plan = p.json(&["plan", "e", "--json"], 0);
    assert_eq!(
        (
            plan["cells"].as_u64(),
            plan["cache_hits"].as_u64(),
            plan["cache_misses"].as_u64()
        ),
        (Some(12), Some(12), Some(0))
    );
}

#[test]
fn only_what_changed_is_recomputed() {
    let p = project_with_images(10, 64);
    run(&p, &[]);
    // Renaming or moving an image keeps its content hash: still cached.
    std::fs::rename(
        p.path().join("imgs/noise_0000.png"),
        p.path().join("imgs/renamed.png"),
    )
    .unwrap();
    std::fs::create_dir_all(p.path().join("imgs/sub")).unwrap();
    std::fs::rename(
        p.path().join("imgs/noise_0001.png"),
        p.path().join("imgs/sub/moved.png"),
    )
    .unwrap();
    assert_eq!(run(&p, &[])["inferences"], 0);
    // New images: only they are computed.
    noise_images(&p.path().join("more"), 13, 64);
    for i in 10..13 {
        std::fs::rename(
            p.path().join(format!("more/noise_{i:04}.png")),
            p.path().join(format!("imgs/new_{i}.png")),
        )
        .unwrap();
    }
    let r = run(&p, &[]);
    assert_eq!(
        (
            r["cells"].as_u64(),
            r["inferences"].as_u64(),
            r["cache_hits"].as_u64()
        ),
        (Some(13), Some(3), Some(10))
    );
    // A different threshold is post-processing: nothing to compute.
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n    thresholds: [0.2, 0.9]\n",
    );
    assert_eq!(run(&p, &[])["inferences"], 0);
    // Two variants of one model share each inference.
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n  - model: wd\n    name: again\n",
    );
    let r = run(&p, &[]);
    assert_eq!(
        (
            r["cells"].as_u64(),
            r["inferences"].as_u64(),
            r["cache_hits"].as_u64()
        ),
        (Some(26), Some(0), Some(26))
    );
    // A different score floor changes what is stored: everything is computed.
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n    score_floor: 0.2\n    thresholds: [0.5]\n",
    );
    assert_eq!(run(&p, &[])["inferences"], 13);
    // Editing an image's bytes changes its key.
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3]));
    img.save(p.path().join("imgs/renamed.png")).unwrap();
    let r = run(&p, &[]);
    assert_eq!(r["inferences"], 1);
    // A different model file (same config name) invalidates its cells.
    let other = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(python())
        .arg(repo().join("tests/reference/make_tagger_model.py"))
        .args([
            "--preset",
            "wd",
            "--seed",
            "9",
            "--out",
            other.path().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    p.write(
        "models/wd.yaml",
        &format!(
            "kind: onnx-tagger\nsource: {}\npreset: wd\nlabels: {}\n",
            other.path().join("model.onnx").display(),
            other.path().join("selected_tags.csv").display()
        ),
    );
    assert_eq!(run(&p, &[])["inferences"], 13);
}

#[test]
fn failures_are_never_cached() {
    let p = project_with_images(3, 32);
    std::fs::write(
        p.path().join("imgs/broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let first = p.json(&["run", "e", "--json", "--quiet"], 1);
    assert_eq!(
        (first["inferences"].as_u64(), first["failures"].as_u64()),
        (Some(4), Some(1))
    );
    let second = p.json(&["run", "e", "--json", "--quiet"], 1);
    // The three good cells are cached; the failed one is attempted again.
    assert_eq!(
        (
            second["cache_hits"].as_u64(),
            second["inferences"].as_u64(),
            second["failures"].as_u64()
        ),
        (Some(3), Some(1), Some(1))
    );
    // Fixed: it is computed once, then cached.
    std::fs::copy(
        fixtures().join("images/brick_tiny.png"),
        p.path().join("imgs/broken.png"),
    )
    .unwrap();
    let third = run(&p, &[]);
    assert_eq!(
        (third["inferences"].as_u64(), third["failures"].as_u64()),
        (Some(1), Some(0))
    );
}

fn parts(p: &Project) -> usize {
    let Ok(runs) = std::fs::read_dir(p.path().join("runs")) else {
        return 0;
    };
    runs.filter_map(|r| r.ok())
        .filter_map(|r| std::fs::read_dir(r.path().join("cells")).ok())
        .flat_map(|d| d.filter_map(|e| e.ok()))
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

/// Kills runs with SIGKILL at various moments, then checks that a rerun completes with
/// every cell whole and that every interrupted cell's work was either kept or redone.
#[test]
fn killed_runs_lose_only_work_in_flight() {
    let n = 400;
    let mut p = project_with_images(n, 256);
    // Commit small parts often, so kills land between, inside and after commits.
    p.env.push(("IW_LAB_FLUSH_SECONDS".into(), "0.1".into()));
    let mut killed = 0;
    for delay_ms in [0u64, 150, 700] {
        let before = parts(&p);
        let mut child = p.command(&["run", "e", "--quiet"]).spawn().unwrap();
        // Wait for some committed work (or a head start), then kill at a varying moment.
        let start = Instant::now();
        while parts(&p) == before && start.elapsed() < Duration::from_secs(60) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        killed >= 2,
        "runs finished before they could be killed; use more images"
    );
    let list = p.json(&["runs", "list", "--json"], 0);
    let interrupted = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "interrupted")
        .count();
    assert_eq!(interrupted, killed);

    let last = run(&p, &[]);
    let hits = last["cache_hits"].as_u64().unwrap();
    assert_eq!(last["cells"].as_u64().unwrap(), n as u64);
    assert_eq!(hits + last["inferences"].as_u64().unwrap(), n as u64);
    assert!(hits > 0, "committed work from killed runs was not reused");
    // Every cell of the final run is whole: its outputs are all there.
    let id = last["run_id"].as_str().unwrap();
    let check = p.expect(
        &[
            "query",
            id,
            "--json",
            "SELECT count(*) AS cells, count(DISTINCT image_hash) AS images,
                    count(*) FILTER (WHERE n_tags <> (SELECT count(*) FROM outputs o WHERE o.cache_key = c.cache_key AND o.variant = c.variant AND o.path = c.path)) AS broken
             FROM cells c",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(check.trim()).unwrap();
    assert_eq!(
        (
            v["cells"].as_u64(),
            v["images"].as_u64(),
            v["broken"].as_u64()
        ),
        (Some(n as u64), Some(n as u64), Some(0)),
        "{v}"
    );
    // And the next run has nothing left to do.
    assert_eq!(run(&p, &[])["inferences"], 0);
}

#[test]
fn two_runs_at_once_both_succeed() {
    let p = project_with_images(60, 128);
    let spawn = || {
        p.command(&["run", "e", "--json", "--quiet"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["cells"], 60);
        assert_eq!(
            v["cache_hits"].as_u64().unwrap() + v["inferences"].as_u64().unwrap(),
            60
        );
        assert_eq!(v["status"], "complete");
    }
    assert_eq!(run(&p, &[])["inferences"], 0);
}

#[test]
fn duplicate_files_share_one_inference_but_are_scored_apart() {
    let p = Project::new();
    let src = fixtures().join("images/brick_tiny.png");
    p.copy(&src, "imgs/a.png");
    p.copy(&src, "imgs/copy/a.png");
    p.write("imgs/a.txt", "cat");
    p.write("imgs/copy/a.txt", "dog");
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n",
    );
    let r = run(&p, &[]);
    assert_eq!(
        (
            r["cells"].as_u64(),
            r["inferences"].as_u64(),
            r["counts"]["shared"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let m = p.json(&["metrics", "latest", "--json"], 0);
    assert_eq!(m["variants"][0]["images"], 2);
    let support: u64 = m["variants"][0]["per_tag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["support"].as_u64().unwrap())
        .sum();
    assert_eq!(support, 2, "both files' ground truth counts");
    let again = run(&p, &[]);
    assert_eq!(again["cache_hits"], 2);
    // Each file has its own output rows, in the cached copy too.
    let q = p.expect(
        &["query", "latest", "--json", "SELECT count(*) AS n, count(DISTINCT tag) AS t, count(DISTINCT path) AS f FROM outputs"],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(q.trim()).unwrap();
    assert_eq!(v["n"].as_u64().unwrap(), 2 * v["t"].as_u64().unwrap());
    assert_eq!(v["f"], 2);
}

/// A panic inside an adapter or a worker (made here by a test failpoint) fails only its own
/// cell, recorded with its stage and message: the run completes, writes its tables, exits 1,
/// and the next run computes that cell again.
#[test]
fn a_panic_fails_its_cell_never_the_run() {
    let mut p = Project::new();
    noise_images(&p.path().join("imgs"), 6, 32);
    p.write("datasets/d.yaml", "path: ../imgs\n");
    p.wd_model("wd", "batch_size: 1\n");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n",
    );
    p.env.push((
        "IW_LAB_FAILPOINTS".into(),
        "engine.infer=noise_0002,engine.prepare=noise_0004,scan.read=noise_0005".into(),
    ));
    let out = p.run(&["run", "e", "--json", "--quiet"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["failures"], 3, "{run}");
    let show = p.json(&["runs", "show", "latest", "--json"], 0);
    assert_eq!(show["status"], "complete", "{show}");
    let failed = show["failed"].as_array().unwrap();
    let stage_of = |file: &str| -> (String, String) {
        let f = failed
            .iter()
            .find(|f| f["file"] == file)
            .unwrap_or_else(|| panic!("{file} not failed: {show}"));
        (
            f["stage"].as_str().unwrap().to_string(),
            f["reason"].as_str().unwrap().to_string(),
        )
    };
    let (stage, reason) = stage_of("noise_0002.png");
    assert_eq!(stage, "infer");
    assert!(
        reason.contains("panicked at") && reason.contains("failpoint engine.infer"),
        "{reason}"
    );
    let (stage, reason) = stage_of("noise_0004.png");
    assert_eq!(stage, "prepare");
    assert!(reason.contains("failpoint engine.prepare"), "{reason}");
    let (stage, reason) = stage_of("noise_0005.png");
    assert_eq!(stage, "read");
    assert!(reason.contains("failpoint scan.read"), "{reason}");
    let cells = p.expect(
        &[
            "query",
            "latest",
            "--json",
            "SELECT count(*) AS n FROM cells",
        ],
        0,
    );
    assert!(cells.contains("\"n\":3"), "{cells}");
    // Nothing of the panics was cached: without them, the next run computes those cells.
    p.env.clear();
    let again = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(
        (again["cache_hits"].as_u64(), again["inferences"].as_u64()),
        (Some(3), Some(3))
    );
}
