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
                    iw_lab::production::writers::xmp::keywords(
                        &std::fs::read_to_string(&path).unwrap(),
                    )
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

/// The status and errors `iw-lab tag --json` reported for `name`.
fn reported<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["images_reported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["file"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("{name} not reported: {r}"))
}

#[test]
fn two_images_with_one_sidecar_are_both_conflicts() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let img = fixtures().join("images/brick_tiny.png");
    let jpg = fixtures().join("images/retina_wide.jpg");
    p.copy(&jpg, "photos/a.jpg");
    p.copy(&img, "photos/a.png");
    p.copy(&img, "photos/B.png");
    p.copy(&jpg, "photos/b.png");
    p.copy(&img, "photos/ok.png");
    let dir = p.path().join("photos");
    let r = tag(&p, &[dir.to_str().unwrap(), "--write", "txt,xmp,json"], 1);
    assert_eq!(
        (r["failed"].as_u64(), r["tagged"].as_u64()),
        (Some(4), Some(1)),
        "{r}"
    );
    for name in ["a.jpg", "a.png", "B.png", "b.png"] {
        let rep = reported(&r, name);
        assert_eq!(rep["status"], "failed");
        let err = rep["errors"][0].as_str().unwrap();
        assert!(err.contains("two images map to one sidecar"), "{err}");
    }
    for stem in ["a", "b", "B"] {
        for ext in ["txt", "xmp", "json"] {
            assert!(!dir.join(format!("{stem}.{ext}")).exists(), "{stem}.{ext}");
        }
    }
    assert!(dir.join("ok.txt").is_file() && dir.join("ok.xmp").is_file());
    // An image added beside one tagged before: the older one's sidecar is not overwritten.
    p.copy(&jpg, "photos/ok.jpg");
    let before = std::fs::read(dir.join("ok.txt")).unwrap();
    let r = tag(
        &p,
        &[dir.join("ok.jpg").to_str().unwrap(), "--write", "txt"],
        1,
    );
    assert_eq!(r["failed"], 1);
    assert_eq!(std::fs::read(dir.join("ok.txt")).unwrap(), before);
}

#[test]
fn sidecars_that_are_not_utf8_are_never_rewritten_lossily() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 3);
    // A Latin-1 .txt: no declared encoding, so it is left alone, with an error.
    let latin1_txt = b"caf\xe9, my tag\n".to_vec();
    std::fs::write(dir.join("img_000.txt"), &latin1_txt).unwrap();
    // An XMP that declares ISO-8859-1: decoded, edited and written back in ISO-8859-1.
    let xmp = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n<rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n<dc:creator><rdf:Seq><rdf:li>Jos\xe9 M\xfcller</rdf:li></rdf:Seq></dc:creator>\n<dc:subject><rdf:Bag><rdf:li>caf\xe9</rdf:li></rdf:Bag></dc:subject>\n</rdf:Description>\n</rdf:RDF>\n</x:xmpmeta>\n".to_vec();
    std::fs::write(dir.join("img_001.xmp"), &xmp).unwrap();
    // An XMP in an encoding iw-lab cannot write back exactly: left alone, with an error.
    let sjis = b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>\n<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"/>\n\x82\xa0".to_vec();
    std::fs::write(dir.join("img_002.xmp"), &sjis).unwrap();
    let r = tag(&p, &[dir.to_str().unwrap(), "--write", "txt,xmp"], 1);
    assert_eq!(r["failed"], 2, "{r}");
    let e0 = reported(&r, "img_000.png")["errors"].to_string();
    assert!(
        e0.contains("img_000.txt") && e0.contains("not UTF-8"),
        "{e0}"
    );
    let e2 = reported(&r, "img_002.png")["errors"].to_string();
    assert!(
        e2.contains("img_002.xmp") && e2.contains("shift_jis"),
        "{e2}"
    );
    assert_eq!(std::fs::read(dir.join("img_000.txt")).unwrap(), latin1_txt);
    assert_eq!(std::fs::read(dir.join("img_002.xmp")).unwrap(), sjis);
    // The Latin-1 XMP: still Latin-1, the creator's bytes as they were, our keywords added.
    let written = std::fs::read(dir.join("img_001.xmp")).unwrap();
    assert!(written.starts_with(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"));
    assert!(written.windows(11).any(|w| w == b"Jos\xe9 M\xfcller"));
    assert!(
        std::str::from_utf8(&written).is_err(),
        "not rewritten as UTF-8"
    );
    // An XML parser that honours the declaration reads it back (exiftool assumes UTF-8 in XMP,
    // as the XMP specification asks, so it cannot check this file).
    let out = Command::new(python())
        .arg("-c")
        .arg(
            "import sys, json, xml.etree.ElementTree as ET\n\
             root = ET.parse(sys.argv[1]).getroot()\n\
             dc = '{http://purl.org/dc/elements/1.1/}'\n\
             li = '{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li'\n\
             get = lambda tag: [x.text for e in root.iter(dc + tag) for x in e.iter(li)]\n\
             print(json.dumps({'creator': get('creator'), 'subject': get('subject')}))",
        )
        .arg(dir.join("img_001.xmp"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        meta["creator"],
        serde_json::json!(["José Müller"]),
        "{meta}"
    );
    let subject = as_list(&meta["subject"]);
    assert!(subject.contains(&"café".to_string()), "{subject:?}");
    assert!(subject.len() > 1, "our keywords were added: {subject:?}");
}

#[test]
fn writer_names_can_never_hit_an_image() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 2);
    let cfg = p.path().join("promoted/production.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("extension: .txt"), "{text}");
    let images_before: Vec<Vec<u8>> = ["img_000.png", "img_001.png"]
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect();
    for (bad, why) in [
        (".png", "image format"),
        ("JPG", "image format"),
        (".x.webp", "image format"),
        ("../x", "not a plain extension"),
        ("a/b", "not a plain extension"),
        ("", "is empty"),
        (".xmp", "XMP"),
    ] {
        std::fs::write(
            &cfg,
            text.replace("extension: .txt", &format!("extension: '{bad}'")),
        )
        .unwrap();
        let out = p.run(&["tag", dir.to_str().unwrap(), "--write", "txt"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("production.yaml")
                && err.contains("`writers.txt.extension`")
                && err.contains(why),
            "{bad}: {err}"
        );
    }
    for (n, before) in ["img_000.png", "img_001.png"].iter().zip(&images_before) {
        assert_eq!(&std::fs::read(dir.join(n)).unwrap(), before, "{n}");
    }
    // The second guard: a file where a sidecar goes that holds an image is never replaced.
    std::fs::write(&cfg, &text).unwrap();
    std::fs::copy(
        fixtures().join("images/brick_tiny.png"),
        dir.join("img_000.txt"),
    )
    .unwrap();
    let r = tag(&p, &[dir.to_str().unwrap(), "--write", "txt"], 1);
    let err = reported(&r, "img_000.png")["errors"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("holds an image"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("img_000.txt")).unwrap(),
        std::fs::read(fixtures().join("images/brick_tiny.png")).unwrap()
    );
}

/// The process's umask, as the shell reports it.
fn umask() -> u32 {
    let out = Command::new("sh").args(["-c", "umask"]).output().unwrap();
    u32::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 8).unwrap()
}

#[test]
fn new_sidecars_get_ordinary_permissions_and_old_ones_keep_theirs() {
    use std::os::unix::fs::PermissionsExt;
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 2);
    p.write("photos/img_001.txt", "mine");
    std::fs::set_permissions(
        dir.join("img_001.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    tag(&p, &[dir.to_str().unwrap(), "--write", "txt,xmp,json"], 0);
    let mode = |n: &str| std::fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777;
    let expected = 0o666 & !umask();
    for n in ["img_000.txt", "img_000.xmp", "img_000.json", "img_001.xmp"] {
        assert_eq!(mode(n), expected, "{n}: {:o}", mode(n));
    }
    assert_eq!(
        mode("img_001.txt"),
        0o600,
        "an existing file keeps its mode"
    );
}

#[test]
fn tag_never_writes_outside_the_folders_it_was_given() {
    use std::os::unix::fs::symlink;
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let outside = photos(&p, "outside", 1);
    let elsewhere = photos(&p, "elsewhere", 1);
    let dir = photos(&p, "photos", 1);
    symlink(outside.join("img_000.png"), dir.join("linked.png")).unwrap();
    symlink(&elsewhere, dir.join("linked_folder")).unwrap();
    let r = tag(&p, &[dir.to_str().unwrap(), "--write", "txt,xmp"], 0);
    assert_eq!(r["tagged"], 2, "{r}");
    assert!(dir.join("linked.txt").is_file(), "beside the link");
    let listing = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(listing(&outside), ["img_000.png"]);
    assert_eq!(listing(&elsewhere), ["img_000.png"]);
    // A sidecar that is a link is not replaced (that would write through it or drop it).
    symlink(outside.join("img_000.png"), dir.join("img_000.xmp")).ok();
    std::fs::remove_file(dir.join("img_000.xmp")).unwrap();
    symlink("/nonexistent/target.xmp", dir.join("img_000.xmp")).unwrap();
    let r = tag(&p, &[dir.to_str().unwrap(), "--write", "xmp", "--force"], 1);
    let err = reported(&r, "img_000.png")["errors"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(std::fs::symlink_metadata(dir.join("img_000.xmp"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// Sets the promoted threshold (all categories).
fn set_threshold(p: &Project, t: f64) {
    let cfg = p.path().join("promoted/production.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let re = regex::Regex::new(r"(?m)^  threshold: .*$").unwrap();
    assert!(re.is_match(&text), "{text}");
    std::fs::write(
        &cfg,
        re.replace(&text, format!("  threshold: {t}").as_str())
            .as_ref(),
    )
    .unwrap();
}

/// After a pass killed at any moment (here: several kills, and a crash between the ownership
/// record and the renames), a pass with another threshold leaves every `.txt` exactly as a
/// clean pass would: the user's tags, then the new tags; never our old tags kept as theirs.
#[test]
fn a_killed_pass_never_makes_our_tags_the_users() {
    let (mut p, run) = project_with_run();
    p.expect(&["promote", &run, "wd", "--threshold", "0.3"], 0);
    let n = 240;
    let dir = p.path().join("many");
    let clean = p.path().join("clean");
    for d in [&dir, &clean] {
        noise_images(d, n, 160);
        for i in 0..n {
            std::fs::write(d.join(format!("noise_{i:04}.txt")), "my own tag\n").unwrap();
        }
    }
    let d = dir.to_str().unwrap();
    // A crash after ownership is recorded and before any sidecar is renamed.
    p.env
        .push(("IW_LAB_FAILPOINTS".into(), "tag.rename".into()));
    let out = p.run(&["tag", d, "--write", "txt", "--quiet"]);
    assert_ne!(out.status.code(), Some(0));
    p.env.pop();
    // Kills at varying moments.
    let changed = |dir: &Path| {
        (0..n)
            .filter(|i| {
                std::fs::read_to_string(dir.join(format!("noise_{i:04}.txt")))
                    .is_ok_and(|t| t != "my own tag\n")
            })
            .count()
    };
    for (wait, delay) in [(10, 0u64), (60, 5), (120, 30)] {
        let mut child = p
            .command(&["tag", d, "--write", "txt", "--quiet"])
            .spawn()
            .unwrap();
        let start = Instant::now();
        while changed(&dir) < wait.min(n)
            && start.elapsed() < Duration::from_secs(120)
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().ok();
        child.wait().unwrap();
    }
    // The same two passes, never interrupted, on a copy.
    let c = clean.to_str().unwrap();
    tag(&p, &[c, "--write", "txt"], 0);
    let read = |dir: &Path, i: usize| {
        std::fs::read_to_string(dir.join(format!("noise_{i:04}.txt"))).unwrap()
    };
    let at_first: Vec<String> = (0..n).map(|i| read(&clean, i)).collect();
    // Another threshold: our old tags go, the user's stay.
    set_threshold(&p, 0.6);
    tag(&p, &[d, "--write", "txt"], 0);
    tag(&p, &[c, "--write", "txt"], 0);
    let mut moved = 0;
    for (i, first) in at_first.iter().enumerate() {
        let (got, want) = (read(&dir, i), read(&clean, i));
        assert_eq!(got, want, "noise_{i:04}.txt");
        assert!(got.starts_with("my own tag"), "noise_{i:04}.txt: {got}");
        moved += usize::from(&got != first);
    }
    assert!(
        moved > n / 4,
        "the two thresholds should give different tags ({moved} differ)"
    );
}

#[test]
fn production_configs_are_checked_when_loaded() {
    let (p, run) = project_with_run();
    p.expect(&["promote", &run, "wd"], 0);
    let dir = photos(&p, "photos", 1);
    let d = dir.to_str().unwrap();
    let cfg = p.path().join("promoted/production.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // An alias becomes a file name only when it is a plain name.
    std::fs::write(p.path().join("outside.yaml"), &text).unwrap();
    for alias in ["../outside", "a/../../outside", "..\\outside"] {
        let out = p.run(&["tag", d, "--config", alias]);
        assert_eq!(out.status.code(), Some(2), "{alias}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not an alias"), "{alias}: {err}");
    }
    // A fingerprint that is short or not hex is refused, naming the file and the key.
    let re = regex::Regex::new(r"(?m)^  fingerprint: .*$").unwrap();
    for fp in ["abc", "zz", ""] {
        std::fs::write(
            &cfg,
            re.replace(&text, format!("  fingerprint: '{fp}'").as_str())
                .as_ref(),
        )
        .unwrap();
        let out = p.run(&["tag", d]);
        assert_eq!(out.status.code(), Some(2), "{fp}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("production.yaml") && err.contains("`model.fingerprint`"),
            "{fp}: {err}"
        );
    }
    // An alias inside the file is a plain name too (it names the state file).
    std::fs::write(
        &cfg,
        text.replace("alias: production", "alias: ../../escape"),
    )
    .unwrap();
    let out = p.run(&["tag", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`alias`"));
}

#[test]
fn promote_refuses_a_variant_scored_on_no_image() {
    let p = Project::new();
    p.copy(&fixtures().join("images/brick_tiny.png"), "imgs/a.png");
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 0);
    let out = p.run(&["promote", run["run_id"].as_str().unwrap(), "wd"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scored on 0 images"), "{err}");
    assert!(!p.path().join("promoted/production.yaml").exists());
}
