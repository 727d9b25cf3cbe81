//! Promotion and the production pass: promote / list / rollback; `iw-lab tag` writing .txt,
//! XMP and JSON sidecars incrementally and atomically; merging into XMP written by other tools
//! without changing anything of theirs (checked with exiftool); dry runs; drift; read-only
//! folders; a pass killed mid-way.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A project with a finished run of two variants over a few fixture images.
fn project_with_run() -> (Project, String) {
    let p = Project::new();
    for (name, tags) in [
        ("brick_tiny.png", "1girl, smile, general"),
        ("camera_alpha.png", "cat, no humans, sensitive"),
        ("grass_gray.png", "grass"),
    ] {
        p.copy(
            &fixtures().join("images").join(name),
            &format!("imgs/{name}"),
        );
        p.write(&format!("imgs/{}", name.replace(".png", ".txt")), tags);
    }
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    p.wd_model("wd", "");
    p.joytag_model("joy", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n    thresholds: [0.3, 0.6]\n  - model: joy\n    thresholds: [0.5]\ngoal: {metric: f1_micro}\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 0);
    (p, run["run_id"].as_str().unwrap().to_string())
}

/// Images to tag (copies, so the experiment's images stay as they are).
fn photos(p: &Project, dir: &str, n: usize) -> PathBuf {
    let all = fixture_images();
    for i in 0..n {
        let src = &all[i % all.len()];
        let ext = src.extension().unwrap().to_string_lossy();
        p.copy(src, &format!("{dir}/img_{i:03}.{ext}"));
    }
    p.path().join(dir)
}

fn exiftool(args: &[&str]) -> serde_json::Value {
    let out = Command::new("exiftool")
        .args(args)
        .output()
        .expect("exiftool (Debian: libimage-exiftool-perl) must be installed");
    assert!(
        out.status.success(),
        "exiftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

fn as_list(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![other
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| other.to_string())],
    }
}

#[test]
fn promote_list_and_roll_back() {
    let (p, run) = project_with_run();
    let a = p.json(&["promote", &run, "wd", "--json"], 0);
    assert_eq!(a["alias"], "production");
    // The best threshold by the goal, from the run's own metrics.
    let metrics = p.json(&["metrics", &run, "--json", "--variant", "wd"], 0);
    let best = metrics["variants"]
        .as_array()
        .unwrap()
        .iter()
        .fold((f64::MIN, 0.0), |acc, v| {
            let f = v["micro"]["f1"].as_f64().unwrap();
            if f > acc.0 {
                (f, v["threshold"].as_f64().unwrap())
            } else {
                acc
            }
        })
        .1;
    assert_eq!(a["threshold"].as_f64().unwrap(), best);
    let text = std::fs::read_to_string(p.path().join("promoted/production.yaml")).unwrap();
    for needle in [
        "fingerprint:",
        "definition:",
        "preset: wd",
        "sha256:",
        &format!("run_id: {run}"),
        "f1_micro:",
        "writers:",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // It is a valid production config (schema and all).
    let schema = p.json(&["schema", "production"], 0);
    assert!(schema["properties"]["model"].is_object());

    p.json(
        &["promote", &run, "joy", "--threshold", "0.45", "--json"],
        0,
    );
    let list = p.json(&["promote", "--list", "--json"], 0);
    let h = list["aliases"][0]["history"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(list["aliases"][0]["current"], "0002");
    assert_eq!(h[1]["variant"], "joy");
    assert_eq!(h[1]["threshold"], 0.45);

    let back = p.json(&["promote", "--rollback", "--json"], 0);
    assert_eq!(back["current"]["entry"], "0001");
    let now = std::fs::read_to_string(p.path().join("promoted/production.yaml")).unwrap();
    assert_eq!(
        now,
        std::fs::read_to_string(p.path().join("promoted/history/production/0001.yaml")).unwrap()
    );
    let out = p.run(&["promote", "--rollback"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to roll back to"));
    assert_eq!(
        p.json(&["promote", "--rollback", "--to", "2", "--json"], 0)["current"]["variant"],
        "joy"
    );

    let out = p.run(&["promote", &run, "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no variant `nope`"));
}

fn tag(p: &Project, args: &[&str], code: i32) -> serde_json::Value {
    let mut a = vec!["tag", "--json"];
    a.extend_from_slice(args);
    p.json(&a, code)
}

#[test]
fn tagging_is_incremental_and_reuses_the_cache() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 8);
    let d = dir.to_str().unwrap();
    let first = tag(&p, &[d, "--write", "txt,xmp,json"], 0);
    assert_eq!(
        (first["tagged"].as_u64(), first["failed"].as_u64()),
        (Some(8), Some(0))
    );
    assert_eq!(first["written"]["txt"], 8);
    for i in 0..8 {
        let stem = dir.join(format!("img_{i:03}"));
        let txt = std::fs::read_to_string(stem.with_extension("txt")).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(stem.with_extension("json")).unwrap())
                .unwrap();
        let tags: Vec<String> = json["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        // The caption holds the non-rating tags, in the JSON's order (character tags first).
        let rating = ["general", "sensitive", "questionable", "explicit"];
        let mut expected: Vec<&String> = tags
            .iter()
            .filter(|t| !rating.contains(&t.as_str()))
            .collect();
        let chars = [
            "hatsune miku",
            "kagamine rin",
            "kagamine len",
            "saber (fate)",
            "rem (re:zero)",
            "hakurei reimu",
        ];
        expected.sort_by_key(|t| !chars.contains(&t.as_str()));
        // A tag holding the separator is written without it.
        let spelt: Vec<String> = expected.iter().map(|s| s.replace(',', "")).collect();
        assert_eq!(txt.trim_end(), spelt.join(", "));
        assert_eq!(json["provenance"]["config"], "production");
        assert_eq!(json["provenance"]["config_hash"], first["config_hash"]);
        assert!(json["scores"].as_object().unwrap().len() >= tags.len());
        let xmp = exiftool(&["-j", stem.with_extension("xmp").to_str().unwrap()]);
        let mut subject = as_list(&xmp["Subject"]);
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        subject.sort();
        want.sort();
        assert_eq!(subject, want, "exiftool reads our keywords back");
        assert!(as_list(&xmp["HierarchicalSubject"])
            .iter()
            .all(|h| h.starts_with("iw|")));
    }
    // A rerun skips everything without inference.
    let again = tag(&p, &[d, "--write", "txt,xmp,json"], 0);
    assert_eq!(
        (
            again["skipped"].as_u64(),
            again["tagged"].as_u64(),
            again["inferences"].as_u64()
        ),
        (Some(8), Some(0), Some(0))
    );
    // A deleted sidecar is written again; new images are tagged.
    std::fs::remove_file(dir.join("img_003.xmp")).unwrap();
    photos(&p, "more", 2);
    std::fs::rename(p.path().join("more/img_000.png"), dir.join("new_a.png")).ok();
    let third = tag(&p, &[d, "--write", "txt,xmp,json"], 0);
    assert!(
        third["tagged"].as_u64().unwrap() >= 1 && third["skipped"].as_u64().unwrap() >= 6,
        "{third}"
    );
    // --force re-tags everything; identical content is left untouched.
    let forced = tag(&p, &[d, "--write", "txt,xmp,json", "--force"], 0);
    assert_eq!(forced["skipped"], 0);
    assert_eq!(forced["inferences"], 0, "cached from the earlier pass");
    assert_eq!(
        forced["unchanged"].as_u64().unwrap(),
        forced["images"].as_u64().unwrap()
    );
    // Editing the promoted config (a post-processing change) re-tags without inference.
    let cfg = p.path().join("promoted/production.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("  max_tags: null", "  max_tags: 2")).unwrap();
    let capped = tag(&p, &[d, "--write", "txt"], 0);
    assert_eq!(capped["inferences"], 0);
    assert_eq!(capped["skipped"], 0);
    let txt = std::fs::read_to_string(dir.join("img_000.txt")).unwrap();
    assert!(txt.split(", ").count() <= 2, "{txt}");
}

#[test]
fn dry_run_writes_nothing_and_shows_changes() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 3);
    p.write("photos/img_000.txt", "my own tag, smile");
    let before: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let runs_before = std::fs::read_dir(p.path().join("runs")).unwrap().count();
    let r = tag(
        &p,
        &[dir.to_str().unwrap(), "--write", "txt,xmp", "--dry-run"],
        0,
    );
    assert_eq!(r["dry_run"], true);
    let after: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before.len(), after.len(), "dry run wrote files");
    assert_eq!(
        std::fs::read_dir(p.path().join("runs")).unwrap().count(),
        runs_before
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("img_000.txt")).unwrap(),
        "my own tag, smile"
    );
    let img0 = r["images_reported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["file"].as_str().unwrap().ends_with("img_000.png"))
        .unwrap()
        .clone();
    assert_eq!(img0["status"], "would-change");
    let txt = img0["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["writer"] == "txt")
        .unwrap();
    assert_eq!(txt["created"], false);
    assert!(!txt["added"].as_array().unwrap().is_empty());
    // Text output names each sidecar with its gains.
    let text = p.expect(
        &["tag", dir.to_str().unwrap(), "--write", "txt", "--dry-run"],
        0,
    );
    assert!(
        text.contains("img_001.txt (new)") && text.contains(" +"),
        "{text}"
    );
}

#[test]
fn txt_modes_keep_the_users_tags() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 1);
    p.write("photos/img_000.txt", "my own tag, Long_Hair");
    tag(&p, &[dir.to_str().unwrap(), "--write", "txt"], 0);
    let first = std::fs::read_to_string(dir.join("img_000.txt")).unwrap();
    assert!(first.starts_with("my own tag, Long_Hair, "), "{first}");
    assert_eq!(
        first.matches("long hair").count() + first.matches("Long_Hair").count(),
        1,
        "no duplicate: {first}"
    );
    // A stricter config: our tags are replaced, the user's stay.
    let cfg = p.path().join("promoted/production.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("  max_tags: null", "  max_tags: 1")).unwrap();
    tag(&p, &[dir.to_str().unwrap(), "--write", "txt"], 0);
    let second = std::fs::read_to_string(dir.join("img_000.txt")).unwrap();
    let parts: Vec<&str> = second.trim_end().split(", ").collect();
    assert_eq!(&parts[..2], ["my own tag", "Long_Hair"]);
    assert!(parts.len() <= 3, "{second}");
}

/// Every sidecar written by other tools keeps all of its own content: exiftool reads the same
/// values for every tag before and after, except the keywords, which only gain ours.
#[test]
fn xmp_merge_keeps_everything_of_other_tools() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let cfg = p.path().join("promoted/production.yaml");
    let original_cfg = std::fs::read_to_string(&cfg).unwrap();
    let dir = p.path().join("lib");
    let samples = [
        "exiv2-darktable.xmp",
        "exiv2-digikam.xmp",
        "exiftool.xmp",
        "lightroom-style.xmp",
    ];
    for (i, name) in samples.iter().enumerate() {
        let img = fixture_images()[i].clone();
        let ext = img.extension().unwrap().to_string_lossy().to_string();
        let stem = name.trim_end_matches(".xmp");
        p.copy(&img, &format!("lib/{stem}.{ext}"));
        // darktable and digiKam name sidecars IMG.ext.xmp; the others IMG.xmp.
        let side = if name.starts_with("exiv2") {
            format!("lib/{stem}.{ext}.xmp")
        } else {
            format!("lib/{stem}.xmp")
        };
        p.copy(&fixtures().join("xmp").join(name), &side);
    }
    let read = |f: &Path| exiftool(&["-j", "-G1", "-a", f.to_str().unwrap()]);
    let sidecars: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xmp"))
        .collect();
    assert_eq!(sidecars.len(), 4);
    let before: Vec<serde_json::Value> = sidecars.iter().map(|s| read(s)).collect();
    let pass = |expect_tagged: bool| {
        let r = tag(&p, &[dir.to_str().unwrap(), "--write", "xmp"], 0);
        assert_eq!(r["failed"], 0, "{r}");
        if expect_tagged {
            assert_eq!(
                r["written"]["xmp"], 4,
                "merged into the existing sidecars, none created: {r}"
            );
        }
    };
    pass(true);
    let count: usize = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "xmp")
        })
        .count();
    assert_eq!(count, 4, "a second sidecar was created");
    let check = |round: &str| {
        for (s, old) in sidecars.iter().zip(&before) {
            let new = read(s);
            let old_o = old.as_object().unwrap();
            for (k, v) in old_o {
                if k == "XMP-dc:Subject"
                    || k == "XMP-lr:HierarchicalSubject"
                    || k.starts_with("System:")
                    || k == "SourceFile"
                {
                    continue;
                }
                assert_eq!(&new[k], v, "{round}: {} changed {k}", s.display());
            }
            let old_subj = as_list(&old["XMP-dc:Subject"]);
            let new_subj = as_list(&new["XMP-dc:Subject"]);
            assert_eq!(
                &new_subj[..old_subj.len()],
                &old_subj[..],
                "{round}: {} user keywords changed",
                s.display()
            );
            let old_h = as_list(&old["XMP-lr:HierarchicalSubject"]);
            let new_h = as_list(&new["XMP-lr:HierarchicalSubject"]);
            assert!(
                old_h.iter().all(|h| new_h.contains(h)),
                "{round}: {} lost hierarchical keywords",
                s.display()
            );
            assert!(new_h
                .iter()
                .filter(|h| !old_h.contains(h))
                .all(|h| h.starts_with("iw|")));
            // No extra keys besides ours.
            for k in new.as_object().unwrap().keys() {
                assert!(
                    old_o.contains_key(k)
                        || k.starts_with("XMP-iwlab:")
                        || k.starts_with("System:")
                        || k == "XMP-dc:Subject"
                        || k == "XMP-lr:HierarchicalSubject",
                    "{round}: new key {k} in {}",
                    s.display()
                );
            }
        }
    };
    check("first pass");
    // A different config: our keywords are replaced, the users' stay.
    std::fs::write(
        &cfg,
        original_cfg.replace("  max_tags: null", "  max_tags: 1"),
    )
    .unwrap();
    pass(true);
    check("second pass");
    for s in &sidecars {
        let new = read(s);
        let ours: Vec<String> = as_list(&new["XMP-lr:HierarchicalSubject"])
            .into_iter()
            .filter(|h| h.starts_with("iw|"))
            .collect();
        assert!(ours.len() <= 1, "{}: {ours:?}", s.display());
    }
}

/// Makes a folder unwritable for this process (chmod, or for root `chattr +i`); undone on drop.
struct ReadOnly(PathBuf, bool);

impl ReadOnly {
    fn new(dir: &Path) -> ReadOnly {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = dir.join(".probe");
        if std::fs::write(&probe, b"x").is_ok() {
            let _ = std::fs::remove_file(&probe);
            let ok = Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok && std::fs::write(&probe, b"x").is_err(),
                "cannot make {} read-only here",
                dir.display()
            );
            return ReadOnly(dir.to_path_buf(), true);
        }
        ReadOnly(dir.to_path_buf(), false)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn a_read_only_folder_fails_per_file_and_the_pass_goes_on() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 3);
    photos(&p, "photos/locked", 2);
    let _guard = ReadOnly::new(&dir.join("locked"));
    let r = tag(&p, &[dir.to_str().unwrap()], 1);
    assert_eq!(
        (r["tagged"].as_u64(), r["failed"].as_u64()),
        (Some(3), Some(2))
    );
    let failed: Vec<&serde_json::Value> = r["images_reported"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    for f in failed {
        let err = f["errors"][0].as_str().unwrap();
        assert!(
            err.contains("cannot write") && err.contains("locked"),
            "{err}"
        );
    }
    // The images themselves are never touched.
    let locked = std::fs::read_dir(dir.join("locked")).unwrap().count();
    assert_eq!(locked, 2);
}

#[test]
fn model_drift_is_refused_unless_allowed() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 2);
    // Point the frozen definition at a different model file (same shape).
    let other = tempfile::tempdir().unwrap();
    let status = Command::new(python())
        .arg(repo().join("tests/reference/make_tagger_model.py"))
        .args([
            "--preset",
            "wd",
            "--seed",
            "5",
            "--out",
            other.path().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let cfg = p.path().join("promoted/production.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let original = fixtures()
        .join("models/wd/model.onnx")
        .display()
        .to_string();
    let drifted: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("sha256:"))
        .map(|l| {
            l.replace(
                &original,
                &other.path().join("model.onnx").display().to_string(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, drifted).unwrap();
    let out = p.run(&["tag", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("differs from the one promoted") && err.contains("--allow-drift"),
        "{err}"
    );
    assert!(!dir.join("img_000.txt").exists());
    let r = tag(&p, &[dir.to_str().unwrap(), "--allow-drift"], 0);
    assert_eq!(r["tagged"], 2);
}

#[test]
fn a_killed_pass_leaves_whole_sidecars_and_a_rerun_finishes() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = p.path().join("many");
    noise_images(&dir, 300, 256);
    let d = dir.to_str().unwrap();
    let mut child = p
        .command(&["tag", d, "--write", "txt,xmp,json", "--quiet"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let count = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "xmp")
            })
            .count()
    };
    while count() < 20
        && start.elapsed() < Duration::from_secs(120)
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = child.try_wait().unwrap().is_none();
    child.kill().ok();
    child.wait().unwrap();
    assert!(killed, "the pass finished before it could be killed");
    // Whatever is there is whole: every sidecar parses.
    let check_all = || {
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with(".iw-lab-") {
                continue; // a killed writer's temporary file: never a sidecar, cleaned by the next pass
            }
            match path.extension().and_then(|x| x.to_str()) {
                Some("json") => {
                    serde_json::from_str::<serde_json::Value>(
                        &std::fs::read_to_string(&path).unwrap(),
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                    n += 1;
                }
                Some("xmp") => {
                    iw_lab::export::xmp::keywords(&std::fs::read_to_string(&path).unwrap())
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                Some("txt") => assert!(
                    std::fs::read_to_string(&path).unwrap().ends_with('\n'),
                    "{name} is cut short"
                ),
                _ => {}
            }
        }
        n
    };
    let partial = check_all();
    assert!(partial < 300);
    let r = tag(&p, &[d, "--write", "txt,xmp,json"], 0);
    assert_eq!(r["failed"], 0);
    assert_eq!(
        r["tagged"].as_u64().unwrap()
            + r["skipped"].as_u64().unwrap()
            + r["unchanged"].as_u64().unwrap(),
        300
    );
    assert_eq!(check_all(), 300);
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".iw-lab-")
        })
        .count();
    assert_eq!(
        leftovers, 0,
        "the rerun did not clean the killed pass's temporary files"
    );
    let again = tag(&p, &[d, "--write", "txt,xmp,json"], 0);
    assert_eq!(again["skipped"], 300);
}

#[test]
fn foreign_json_is_never_overwritten() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 2);
    p.write("photos/img_000.json", "{\"caption\": \"mine\"}");
    let r = tag(&p, &[dir.to_str().unwrap(), "--write", "json,txt"], 1);
    assert_eq!(r["failed"], 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("img_000.json")).unwrap(),
        "{\"caption\": \"mine\"}"
    );
    let img = r["images_reported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["status"] == "failed")
        .unwrap()
        .clone();
    assert!(img["errors"][0]
        .as_str()
        .unwrap()
        .contains("not written by iw-lab"));
}
