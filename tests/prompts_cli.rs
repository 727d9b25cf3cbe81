//! `iw-lab prompts`: versions recorded when read, scores joined from runs, `@best`, diff, and a
//! rollback that keeps the replaced text.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{json, Value};

const V1: &str = "Describe {{ file }}.\nBe brief.\n";
const V2: &str = "Describe {{ file }}.\nList every object.\n";

fn hash(text: &str) -> String {
    iw_lab::templates::Template::new("x", text.to_string()).hash
}

/// A finished run (`run.yaml` is YAML; JSON is YAML) whose variants use the given prompt
/// versions, with `metrics.json` rows (variant, threshold, micro f1).
fn write_run(p: &Project, id: &str, variants: &[(&str, Option<&str>)], rows: &[(&str, f64, f64)]) {
    let vs: Vec<Value> = variants
        .iter()
        .map(|(name, h)| {
            let mut v =
                json!({"name": name, "model": "m", "thresholds": [0.5], "score_floor": 0.0});
            if let Some(h) = h {
                v["prompt"] = json!({"name": "x", "hash": h});
            }
            v
        })
        .collect();
    let manifest = json!({
        "run_id": id, "experiment": "e", "experiment_file": "experiments/e.yaml",
        "status": "complete", "tool_version": "0", "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z", "pid": 1, "host": "elsewhere",
        "dataset": {"name": "d", "file": "datasets/d.yaml", "root": "imgs", "ground_truth": "txt"},
        "goal": {"metric": "f1_micro", "direction": "maximize"},
        "variants": vs, "models": {},
    });
    p.write(&format!("runs/{id}/run.yaml"), &manifest.to_string());
    let prf = |f: f64| json!({"precision": f, "recall": f, "f1": f});
    let rows: Vec<Value> = rows
        .iter()
        .map(|(v, t, f)| {
            json!({"variant": v, "threshold": t, "micro": prf(*f), "macro": prf(0.1),
                   "samples": prf(0.1), "map": 0.5, "images": 3, "labels": 4, "per_tag": []})
        })
        .collect();
    let doc = json!({"ground_truth": "txt", "variants": rows});
    p.write(&format!("runs/{id}/metrics.json"), &doc.to_string());
}

/// `history --json` versions by hash.
fn versions(p: &Project) -> HashMap<String, Value> {
    let h = p.json(&["prompts", "history", "x", "--json"], 0);
    assert_eq!(h["name"], "x");
    h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["hash"].as_str().unwrap().to_string(), v.clone()))
        .collect()
}

fn stderr(p: &Project, args: &[&str]) -> String {
    let out = p.run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?} should fail with 2");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn versions_scores_diff_and_rollback() {
    let p = Project::new();
    assert_eq!(
        p.json(&["prompts", "list", "--json"], 0),
        json!({"prompts": []})
    );
    let (h1, h2) = (hash(V1), hash(V2));

    // reading the current text records it
    p.write("prompts/x.j2", V1);
    let shown = p.json(&["prompts", "show", "x", "--json"], 0);
    assert_eq!(shown["hash"], h1.as_str());
    assert_eq!(shown["text"], V1);
    assert_eq!(shown["current"], true);
    assert!(shown["seen_at"].is_string(), "{shown}");
    assert_eq!(
        p.expect(&["prompts", "show", "x"], 0),
        V1,
        "text mode pipes the text as is"
    );
    assert!(p
        .path()
        .join(format!("prompts/.history/x/{h1}.j2"))
        .is_file());

    p.write("prompts/x.j2", V2);
    let v = versions(&p);
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[&h1]["current"].clone(), v[&h2]["current"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(v[&h2]["by"], "prompts history");
    assert_eq!(
        (v[&h1]["runs"].clone(), v[&h1]["best"].clone()),
        (json!(0), Value::Null)
    );

    // two runs: v1 scored 0.9 at best, v2 0.6; a variant without a prompt scores higher
    write_run(
        &p,
        "20260101-000000-e-aaaaaa",
        &[("cap1", Some(&h1)), ("cap2", Some(&h2))],
        &[("cap1", 0.3, 0.8), ("cap1", 0.5, 0.9), ("cap2", 0.5, 0.5)],
    );
    write_run(
        &p,
        "20260102-000000-e-bbbbbb",
        &[("cap", Some(&h2)), ("wd", None)],
        &[("cap", 0.5, 0.6), ("wd", 0.5, 0.99)],
    );
    let v = versions(&p);
    assert_eq!(
        v[&h1]["best"],
        json!({"hash": h1, "metric": "f1_micro", "value": 0.9,
               "run_id": "20260101-000000-e-aaaaaa", "variant": "cap1"})
    );
    assert_eq!(v[&h1]["runs"], 1);
    assert_eq!(v[&h2]["best"]["value"], 0.6);
    assert_eq!(v[&h2]["best"]["run_id"], "20260102-000000-e-bbbbbb");
    assert_eq!(v[&h2]["runs"], 2);

    let list = p.json(&["prompts", "list", "--json"], 0);
    let x = &list["prompts"][0];
    assert_eq!(
        (x["name"].clone(), x["hash"].clone()),
        (json!("x"), json!(h2))
    );
    assert_eq!(x["versions"], 2);
    assert_eq!(x["best"]["hash"], h1.as_str());
    let text = p.expect(&["prompts", "list"], 0);
    assert!(
        text.contains(&h2[..12]) && text.contains("f1_micro 0.9000"),
        "{text}"
    );

    let best = p.json(&["prompts", "show", "x@best", "--json"], 0);
    assert_eq!(
        (best["text"].clone(), best["current"].clone()),
        (json!(V1), json!(false))
    );
    let by_hash = p.json(
        &["prompts", "show", &format!("x@{}", &h1[..8]), "--json"],
        0,
    );
    assert_eq!(by_hash["text"], V1);

    let d = p.json(&["prompts", "diff", "x", "current", "best", "--json"], 0);
    assert_eq!(
        (d["a"].clone(), d["b"].clone(), d["changed"].clone()),
        (json!(h2), json!(h1), json!(true))
    );
    let want = format!(
        "--- x@{}\n+++ x@{}\n@@ -1,2 +1,2 @@\n Describe {{{{ file }}}}.\n-List every object.\n+Be brief.\n",
        &h2[..12],
        &h1[..12]
    );
    assert_eq!(d["diff"], want.as_str());
    assert_eq!(
        p.expect(&["prompts", "diff", "x", "current", "best"], 0),
        want
    );
    let same = p.json(&["prompts", "diff", "x", &h2[..6], "current", "--json"], 0);
    assert_eq!(
        (same["diff"].clone(), same["changed"].clone()),
        (json!(""), json!(false))
    );

    // rollback to the best: the file gets v1 back, v2 stays in the history
    let r = p.json(&["prompts", "rollback", "x", "--to", "best", "--json"], 0);
    assert_eq!(
        (r["from"].clone(), r["to"].clone(), r["changed"].clone()),
        (json!(h2), json!(h1), json!(true))
    );
    assert_eq!(r["best"]["value"], 0.9);
    assert_eq!(
        std::fs::read_to_string(p.path().join("prompts/x.j2")).unwrap(),
        V1
    );
    let v = versions(&p);
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[&h1]["current"].clone(), v[&h2]["current"].clone()),
        (json!(true), json!(false))
    );
    let old = p.json(
        &["prompts", "show", &format!("x@{}", &h2[..12]), "--json"],
        0,
    );
    assert_eq!(old["text"], V2);
    let again = p.json(&["prompts", "rollback", "x", "--to", "best", "--json"], 0);
    assert_eq!(again["changed"], false);
    let text = p.expect(&["prompts", "rollback", "x", "--to", &h2[..10]], 0);
    assert!(
        text.contains(&format!("{} → {}", &h1[..12], &h2[..12])),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("prompts/x.j2")).unwrap(),
        V2
    );
}

#[test]
fn versions_only_runs_know_are_listed() {
    let p = Project::new();
    p.write("prompts/x.j2", V2);
    let h1 = hash(V1);
    // v1's text is kept but the log lost its line; a third version's text is gone entirely
    p.write(&format!("prompts/.history/x/{h1}.j2"), V1);
    let lost = "0".repeat(64);
    write_run(
        &p,
        "20260101-000000-e-aaaaaa",
        &[("a", Some(&h1)), ("b", Some(&lost))],
        &[("a", 0.5, 0.4), ("b", 0.5, 0.7)],
    );
    let v = versions(&p);
    assert_eq!(v.len(), 3);
    assert_eq!(
        (v[&h1]["seen_at"].clone(), v[&h1]["kept"].clone()),
        (Value::Null, json!(true))
    );
    assert_eq!(v[&h1]["best"]["value"], 0.4);
    assert_eq!(v[&lost]["kept"], false);
    let e = stderr(&p, &["prompts", "rollback", "x", "--to", "best"]);
    assert!(e.contains("has no text kept"), "{e}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("prompts/x.j2")).unwrap(),
        V2
    );
}

#[test]
fn errors_name_the_problem() {
    let p = Project::new();
    p.write("prompts/caption.j2", "Describe {{ file }}.\n");
    let e = stderr(&p, &["prompts", "show", "captoin"]);
    assert!(e.contains("no prompt template `captoin`"), "{e}");
    assert!(
        e.contains("it has: caption") && e.contains("did you mean `caption`?"),
        "{e}"
    );
    let e = stderr(&p, &["prompts", "show", "caption@zzzzzz"]);
    assert!(
        e.contains("give `current`, `best`, or at least 6 hex"),
        "{e}"
    );
    let e = stderr(&p, &["prompts", "show", "caption@ffffff"]);
    assert!(e.contains("has no version ffffff"), "{e}");
    let e = stderr(&p, &["prompts", "rollback", "caption", "--to", "best"]);
    assert!(e.contains("no best version: no run used it"), "{e}");
    let e = stderr(&p, &["prompts", "history", "../caption"]);
    assert!(e.contains("no prompt template"), "{e}");

    // two kept versions whose hashes share 6 hex characters: the prefix is ambiguous
    let mut seen: HashMap<String, String> = HashMap::new();
    let (a, b) = (0..200_000)
        .find_map(|i| {
            let text = format!("version {i}\n");
            let h = hash(&text);
            seen.insert(h[..6].to_string(), text.clone())
                .map(|other| (other, text))
        })
        .expect("a 24-bit prefix collision within 200k hashes");
    for t in [&a, &b] {
        p.write(&format!("prompts/.history/caption/{}.j2", hash(t)), t);
    }
    let prefix = &hash(&a)[..6];
    let e = stderr(&p, &["prompts", "show", &format!("caption@{prefix}")]);
    assert!(e.contains("matches 2 versions"), "{e}");
    let full = p.json(
        &[
            "prompts",
            "show",
            &format!("caption@{}", hash(&a)),
            "--json",
        ],
        0,
    );
    assert_eq!(full["text"], a.as_str());
}
