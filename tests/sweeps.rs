//! Parameter sweeps, repeats, ensembles and judges (pairwise, scale, similarity) end to end
//! against scripted OpenAI-compatible servers: what is asked, what is cached, and what the
//! metrics say.

mod common;

use std::collections::BTreeSet;

use common::{noise_images, Project};
use iw_lab::engine::openai::mock::{MockServer, Step};
use serde_json::Value;

/// A project with three images tagged on disk and one `openai` model per server.
fn project(models: &[(&str, &MockServer)]) -> Project {
    let p = Project::new();
    let imgs = noise_images(&p.path().join("imgs"), 3, 40);
    for (i, img) in imgs.iter().enumerate() {
        let tags = ["cat, grass", "cat, sky", "dog, grass"][i];
        std::fs::write(img.with_extension("txt"), tags).unwrap();
    }
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    for (name, server) in models {
        p.write(
            &format!("models/{name}.yaml"),
            &format!(
                "kind: openai\nbase_url: {}\nmodel: {name}\nvision: false\nmax_retries: 0\nconcurrency: 2\n",
                server.base_url
            ),
        );
    }
    p.write(
        "prompts/tag.j2",
        "Tags for {{ name }}, one of {{ vocabulary | join(', ') }}.\n",
    );
    p
}

/// `iw-lab query latest SQL --json`: one object per row.
fn rows(p: &Project, sql: &str) -> Vec<Value> {
    p.expect(&["query", "latest", sql, "--json"], 0)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn variant<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == name)
        .unwrap_or_else(|| panic!("no variant {name} in {m}"))
}

fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

#[test]
fn a_sweep_runs_every_combination_and_repeats_with_distinct_seeds() {
    let vlm = MockServer::start(Step::answer("cat, grass")).unwrap();
    let p = project(&[("vlm", &vlm)]);
    let exp = |repeats: u32| {
        format!(
            "dataset: d\nvariants:\n  - model: vlm\n    prompt: tag\n    output: tags\n    params: {{temperature: [0.0, 1.0], max_tokens: 20, seed: 7}}\n    repeats: {repeats}\n"
        )
    };
    p.write("experiments/e.yaml", &exp(2));
    p.expect(&["run", "e"], 0);

    // 3 images × 2 temperatures × 2 repeats, each asked once.
    let sent = bodies(&vlm);
    assert_eq!(sent.len(), 12);
    let combos: BTreeSet<(String, u64)> = sent
        .iter()
        .map(|b| (b["temperature"].to_string(), b["seed"].as_u64().unwrap()))
        .collect();
    let want: BTreeSet<(String, u64)> = ["0.0", "1.0"]
        .iter()
        .flat_map(|t| [7, 8].map(|s| (t.to_string(), s)))
        .collect();
    assert_eq!(combos, want);
    assert!(sent.iter().all(|b| b["max_tokens"] == 20));

    let m = p.json(&["metrics", "latest", "--json"], 0);
    for name in ["vlm[temperature=0.0]", "vlm[temperature=1.0]"] {
        let v = variant(&m, name);
        // The same answer every time: perfectly stable across repeats.
        assert_eq!(v["stability"].as_f64(), Some(1.0), "{v}");
        assert_eq!(v["generation"]["outputs"], 6, "{v}");
    }
    let cells = rows(
        &p,
        "SELECT variant, repeat, count(*) AS n FROM cells GROUP BY ALL ORDER BY ALL",
    );
    assert_eq!(cells.len(), 4, "{cells:?}");
    assert!(cells.iter().all(|c| c["n"] == 3), "{cells:?}");

    // Extending the sweep to three repeats asks only for the new repeat.
    p.write("experiments/e.yaml", &exp(3));
    p.expect(&["run", "e"], 0);
    let sent = bodies(&vlm);
    assert_eq!(sent.len(), 12 + 6);
    assert!(sent[12..].iter().all(|b| b["seed"] == 9));
}

#[test]
fn stability_measures_disagreement_between_repeats() {
    // Repeats answer differently: {cat, grass} then {cat, sky}: Jaccard 1/3 on every image.
    let vlm = MockServer::start(Step::answer("cat, grass")).unwrap();
    let p = project(&[("vlm", &vlm)]);
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: vlm\n    prompt: tag\n    output: tags\n    repeats: 2\n    params: {seed: 1}\n",
    );
    // Concurrency 1 keeps the order of requests: image by image, repeat by repeat.
    p.write(
        "models/vlm.yaml",
        &format!(
            "kind: openai\nbase_url: {}\nmodel: vlm\nvision: false\nconcurrency: 1\n",
            vlm.base_url
        ),
    );
    vlm.script((0..3).flat_map(|_| [Step::answer("cat, grass"), Step::answer("cat, sky")]));
    p.expect(&["run", "e"], 0);
    let sent = bodies(&vlm);
    assert_eq!(sent.len(), 6);
    let m = p.json(&["metrics", "latest", "--json"], 0);
    let s = variant(&m, "vlm")["stability"].as_f64().unwrap();
    assert!((s - 1.0 / 3.0).abs() < 1e-9, "stability {s}");
}

#[test]
fn ensembles_vote_intersect_unite_and_fall_back_from_a_failed_merge() {
    let a = MockServer::start(Step::answer("cat, grass")).unwrap();
    let b = MockServer::start(Step::answer("cat, sky")).unwrap();
    let c = MockServer::start(Step::answer("cat, grass, dog")).unwrap();
    let merger = MockServer::start(Step::Status {
        status: 500,
        retry_after: None,
    })
    .unwrap();
    let p = project(&[("a", &a), ("b", &b), ("c", &c), ("merger", &merger)]);
    for (name, body) in [
        ("vote", "method: vote\n  members: [a, b, c]\n  min_votes: 2"),
        ("both", "method: intersection\n  members: [a, b, c]"),
        ("any", "method: union\n  members: [a, b, c]"),
        (
            "merged",
            "method: llm\n  members: [a, b]\n  merge_model: merger\n  merge_prompt: merge",
        ),
    ] {
        p.write(
            &format!("models/{name}.yaml"),
            &format!("kind: ensemble\nensemble:\n  {body}\n"),
        );
    }
    p.write(
        "prompts/merge.j2",
        "Merge: {% for m in members %}{{ m.variant }}: {{ m.tags | join(', ') }}; {% endfor %}\n",
    );
    let member = |m: &str| format!("  - model: {m}\n    prompt: tag\n    output: tags\n");
    p.write(
        "experiments/e.yaml",
        &format!(
            "dataset: d\nvariants:\n{}{}{}  - model: vote\n  - model: both\n  - model: any\n  - model: merged\n",
            member("a"),
            member("b"),
            member("c")
        ),
    );
    // Exit 0: a failed merge falls back; it is not a failed cell.
    p.expect(&["run", "e"], 0);
    let tags = |v: &str| -> Vec<BTreeSet<String>> {
        let r = rows(
            &p,
            &format!("SELECT path, string_agg(tag, ',' ORDER BY tag) AS tags FROM outputs WHERE variant = '{v}' GROUP BY path ORDER BY path"),
        );
        assert_eq!(r.len(), 3, "{v}: {r:?}");
        r.iter()
            .map(|row| {
                row["tags"]
                    .as_str()
                    .unwrap()
                    .split(',')
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    };
    let set = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
    for row in tags("vote") {
        assert_eq!(row, set(&["cat", "grass"]));
    }
    for row in tags("both") {
        assert_eq!(row, set(&["cat"]));
    }
    for row in tags("any") {
        assert_eq!(row, set(&["cat", "dog", "grass", "sky"]));
    }
    for row in tags("merged") {
        assert_eq!(row, set(&["cat", "grass", "sky"]));
    }
    // The fallback is recorded, and the merge prompt saw the members.
    let notes = rows(&p, "SELECT note FROM texts WHERE variant = 'merged'");
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(
        notes
            .iter()
            .all(|n| n["note"].as_str().unwrap_or_default().contains("union")),
        "{notes:?}"
    );
    let merge_prompt: Value = serde_json::from_str(&merger.received()[0].body).unwrap();
    let text = merge_prompt["messages"][0]["content"].to_string();
    assert!(
        text.contains("a: cat, grass") && text.contains("b: cat, sky"),
        "{text}"
    );

    // A setting given to a method that does not use it is refused when the experiment loads,
    // naming the file.
    p.write(
        "models/vote.yaml",
        "kind: ensemble\nensemble:\n  method: vote\n  members: [a, b, c]\n  weights: [1, 2, 3]\n",
    );
    let out = p.run(&["run", "e"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("weights") && err.contains("vote.yaml"),
        "{err}"
    );
}

#[test]
fn pairwise_judges_cancel_position_bias_and_scale_judges_normalise() {
    let vlm = MockServer::start(Step::answer("cat, grass")).unwrap();
    let base = MockServer::start(Step::answer("dog")).unwrap();
    // A judge that always prefers whatever it is shown first.
    let biased = MockServer::start(Step::answer("Both are fine. Better: A")).unwrap();
    let scorer = MockServer::start(Step::answer("Reasoning... Score: 7")).unwrap();
    let p = project(&[
        ("vlm", &vlm),
        ("base", &base),
        ("biased", &biased),
        ("scorer", &scorer),
    ]);
    p.write(
        "prompts/compare.j2",
        "A: {{ a }}\nB: {{ b }}\nWhich is better, A or B?\n",
    );
    p.write("prompts/rate.j2", "Rate {{ output }} from 1 to 10.\n");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: vlm\n    prompt: tag\n    output: tags\n  - model: base\n    prompt: tag\n    output: tags\njudges:\n  - model: biased\n    rubric: compare\n    choices: {a: 1.0, b: 0.0, tie: 0.5}\n    pairwise: base\n  - model: scorer\n    rubric: rate\n    scale: {min: 1, max: 10}\n    variants: [vlm]\ngoal: {metric: judge_score}\n",
    );
    p.expect(&["run", "e"], 0);
    // Both orders for each of the 3 images; the scale judge once per image.
    let sent = bodies(&biased);
    assert_eq!(sent.len(), 6);
    let prompts: BTreeSet<String> = sent
        .iter()
        .map(|b| b["messages"][0]["content"].to_string())
        .collect();
    assert!(
        prompts.iter().any(|t| t.starts_with("\"A: cat, grass")),
        "{prompts:?}"
    );
    assert!(
        prompts.iter().any(|t| t.starts_with("\"A: dog")),
        "{prompts:?}"
    );
    assert_eq!(scorer.received().len(), 3);

    let m = p.json(&["metrics", "latest", "--json"], 0);
    let v = variant(&m, "vlm");
    let pair = &v["judges"]["biased"];
    // Wins when shown first, loses when shown second: 0.5, and never consistent.
    assert_eq!(pair["mean"].as_f64(), Some(0.5), "{v}");
    assert_eq!(pair["consistency"].as_f64(), Some(0.0), "{v}");
    assert_eq!(pair["valid"], 6, "{v}");
    // 7 on 1–10 → (7 − 1) / 9.
    let scale = v["judges"]["scorer"]["mean"].as_f64().unwrap();
    assert!((scale - 6.0 / 9.0).abs() < 1e-9, "{v}");
    let js = v["judge_score"].as_f64().unwrap();
    assert!((js - (0.5 + 6.0 / 9.0) / 2.0).abs() < 1e-9, "{v}");
    // Verdicts are cached: a rerun asks no judge again.
    p.expect(&["run", "e"], 0);
    assert_eq!(biased.received().len(), 6);
    assert_eq!(scorer.received().len(), 3);

    // Choosing by likelihood needs token probabilities: refused for a server's judge.
    p.write(
        "experiments/l.yaml",
        "dataset: d\nvariants:\n  - model: vlm\n    prompt: tag\n    output: tags\njudges:\n  - model: scorer\n    rubric: rate\n    choices: {good: 1, bad: 0}\n    choose_by: likelihood\n",
    );
    let out = p.run(&["run", "l"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("choose_by") && err.contains("gguf"), "{err}");
}

#[test]
fn cells_sharing_a_key_are_asked_once_and_cache_copies_never_overwrite_each_other() {
    let vlm = MockServer::start(Step::answer("cat, grass")).unwrap();
    let p = project(&[("vlm", &vlm)]);
    p.write("prompts/other.j2", "Other tags for {{ name }}.\n");
    let v = |name: &str, prompt: &str| {
        format!("  - model: vlm\n    name: {name}\n    prompt: {prompt}\n    output: tags\n")
    };
    p.write(
        "experiments/e.yaml",
        &format!("dataset: d\nvariants:\n{}", v("x", "tag")),
    );
    p.expect(&["run", "e"], 0);
    assert_eq!(vlm.received().len(), 3);
    // x comes from the first run's cache; y is asked; z has y's keys and copies its outputs.
    p.write(
        "experiments/e.yaml",
        &format!(
            "dataset: d\nvariants:\n{}{}{}",
            v("x", "tag"),
            v("y", "other"),
            v("z", "other")
        ),
    );
    p.expect(&["run", "e"], 0);
    assert_eq!(vlm.received().len(), 6);
    let counts = rows(
        &p,
        "SELECT variant, count(DISTINCT path) AS images, count(*) AS tags FROM outputs GROUP BY variant ORDER BY variant",
    );
    assert_eq!(counts.len(), 3, "{counts:?}");
    for c in &counts {
        assert_eq!(c["images"], 3, "{counts:?}");
        assert_eq!(c["tags"], 6, "{counts:?}");
    }
    let texts = rows(
        &p,
        "SELECT variant, count(*) AS n FROM texts GROUP BY variant ORDER BY variant",
    );
    assert!(texts.iter().all(|t| t["n"] == 3), "{texts:?}");
}

/// A tagger, a server variant, a union of the two, an LLM merge of the two, and a captioner
/// whose prompt shows the server variant's tags. With the server down, everything derived
/// from the server variant fails (naming it) and nothing of it is cached; once the server is
/// up, the next run computes all of it. A merge that falls back to the union is marked and
/// never served from the cache.
#[test]
fn work_derived_from_a_failed_input_fails_and_fallbacks_are_not_cached() {
    let server = MockServer::start(Step::Status {
        status: 503,
        retry_after: None,
    })
    .unwrap();
    let p = project(&[("vlm", &server), ("merger", &server), ("cap", &server)]);
    p.wd_model("wd", "");
    p.write(
        "models/uni.yaml",
        "kind: ensemble\nensemble:\n  method: union\n  members: [vlm, wd]\n",
    );
    p.write(
        "models/merge.yaml",
        "kind: ensemble\nensemble:\n  method: llm\n  members: [vlm, wd]\n  merge_model: merger\n  merge_prompt: merge\n",
    );
    p.write(
        "prompts/merge.j2",
        "Merge: {% for m in members %}{{ m.variant }}: {{ m.tags | join(', ') }}; {% endfor %}\n",
    );
    p.write(
        "prompts/caption.j2",
        "Describe an image tagged: {{ inputs.vlm.tags | join(', ') }}.\n",
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: vlm\n    prompt: tag\n    output: tags\n  - model: wd\n  - model: uni\n  - model: merge\n  - model: cap\n    prompt: caption\n    inputs: [vlm]\n",
    );
    let down = p.json(&["run", "e", "--json", "--quiet"], 1);
    assert_eq!(down["failures"], 12, "{down}");
    for v in ["uni", "merge", "cap"] {
        let r = rows(
            &p,
            &format!("SELECT count(*) AS n FROM cells WHERE variant = '{v}'"),
        );
        assert_eq!(r[0]["n"], 0, "{v}: nothing derived from a failed input");
        let f = rows(
            &p,
            &format!("SELECT stage, reason FROM failures WHERE variant = '{v}'"),
        );
        assert_eq!(f.len(), 3, "{v}: {f:?}");
        for row in &f {
            assert_eq!(row["stage"], "input", "{row}");
            assert!(row["reason"].as_str().unwrap().contains("`vlm`"), "{row}");
        }
    }
    // Only the three tag calls were made: nothing was asked on the strength of a failure.
    assert_eq!(server.received().len(), 3);

    server.set_default(Step::answer("cat, sky"));
    let up = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(up["failures"], 0, "{up}");
    assert_eq!(up["cache_hits"], 3, "only the tagger's cells: {up}");
    let uni = rows(
        &p,
        "SELECT count(*) FILTER (WHERE tag = 'sky') AS sky, count(DISTINCT path) AS images FROM outputs WHERE variant = 'uni'",
    );
    assert_eq!(
        (uni[0]["sky"].clone(), uni[0]["images"].clone()),
        (3.into(), 3.into())
    );
    let merged = rows(&p, "SELECT note FROM texts WHERE variant = 'merge'");
    assert_eq!(merged.len(), 3);
    assert!(merged.iter().all(|r| r["note"].is_null()), "{merged:?}");
    let captions = rows(&p, "SELECT prompt FROM texts WHERE variant = 'cap'");
    assert_eq!(captions.len(), 3);
    for c in &captions {
        assert!(
            c["prompt"].as_str().unwrap().contains("tagged: cat, sky."),
            "{c}"
        );
    }

    // The merge falls back to the union while the server is down again: scored, marked, and
    // asked again by the next run.
    p.write(
        "prompts/merge.j2",
        "Merge these: {% for m in members %}{{ m.variant }}: {{ m.tags | join(', ') }}; {% endfor %}\n",
    );
    server.set_default(Step::Status {
        status: 503,
        retry_after: None,
    });
    let fell_back = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(
        fell_back["failures"], 0,
        "a fallback is not a failure: {fell_back}"
    );
    let notes = rows(
        &p,
        "SELECT t.note, c.fallback FROM texts t JOIN cells c USING (variant, path, repeat) WHERE variant = 'merge'",
    );
    assert_eq!(notes.len(), 3);
    for n in &notes {
        assert!(
            n["note"].as_str().unwrap().starts_with("fallback: union"),
            "{n}"
        );
        assert_eq!(n["fallback"], true, "{n}");
    }
    server.set_default(Step::answer("cat, grass"));
    let asked = server.received().len();
    let again = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(
        again["inferences"], 3,
        "only the merge is asked again: {again}"
    );
    assert_eq!(server.received().len(), asked + 3);
    let merged = rows(&p, "SELECT note FROM texts WHERE variant = 'merge'");
    assert!(merged.iter().all(|r| r["note"].is_null()), "{merged:?}");
}

/// Serves `steps` in order (one request at a time), then `default`.
fn scripted(steps: &[&str], default: &str) -> MockServer {
    let s = MockServer::start(Step::answer(default)).unwrap();
    s.script(steps.iter().map(|t| Step::answer(t)));
    s
}

/// A variant with `repeats: 3` is scored as the mean of its per-repeat metrics, with their
/// standard deviation; `score_repeats: union` scores the union of the answers instead (which
/// inflates recall). Hand-computed: repeats answer `cat`, `grass`, `sky` on every image.
#[test]
fn repeats_are_scored_as_the_mean_with_their_spread_or_as_the_union_by_name() {
    let vlm = scripted(&["cat", "grass", "sky"].repeat(3), "unused");
    let p = project(&[("vlm", &vlm)]);
    p.write(
        "models/vlm.yaml",
        &format!(
            "kind: openai\nbase_url: {}\nmodel: vlm\nvision: false\nmax_retries: 0\nconcurrency: 1\n",
            vlm.base_url
        ),
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: vlm\n    name: mean\n    prompt: tag\n    output: tags\n    repeats: 3\n  - model: vlm\n    name: union\n    prompt: tag\n    output: tags\n    repeats: 3\n    score_repeats: union\ngoal: {metric: f1_micro}\n",
    );
    p.expect(&["run", "e", "--quiet"], 0);
    assert_eq!(
        vlm.received().len(),
        9,
        "both variants share the nine answers"
    );
    let m = p.json(&["metrics", "latest", "--json"], 0);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    // Per repeat: cat F1 4/9, grass 4/9, sky 2/9 (truth: cat grass, cat sky, dog grass).
    let mean = variant(&m, "mean");
    let f1s = [4.0 / 9.0, 4.0 / 9.0, 2.0 / 9.0];
    let mu = f1s.iter().sum::<f64>() / 3.0;
    let sd = (f1s.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / 2.0).sqrt();
    assert!(close(mean["micro"]["f1"].as_f64().unwrap(), mu), "{mean}");
    assert_eq!(mean["repeats"]["n"], 3);
    assert_eq!(mean["repeats"]["scored_as"], "mean");
    assert!(
        close(mean["repeats"]["sd"]["f1_micro"].as_f64().unwrap(), sd),
        "{mean}"
    );
    // The union: {cat, grass, sky} on every image: tp 5, fp 4, fn 1.
    let union = variant(&m, "union");
    assert!(
        close(union["micro"]["f1"].as_f64().unwrap(), 10.0 / 15.0),
        "{union}"
    );
    assert!(
        close(union["micro"]["recall"].as_f64().unwrap(), 5.0 / 6.0),
        "{union}"
    );
    assert_eq!(union["repeats"]["scored_as"], "union");
    // An interval over images belongs to the union (one answer set per image), not to a mean
    // of repeats: the leaderboard, and the report's, give it only to the union.
    assert!(mean.get("f1_micro_ci").is_none(), "{mean}");
    let [lo, hi] = [0, 1].map(|i| union["f1_micro_ci"][i].as_f64().unwrap());
    assert!(lo <= 10.0 / 15.0 && 10.0 / 15.0 <= hi, "{union}");
    p.expect(&["report", "latest", "--out", "r.html"], 0);
    let html = std::fs::read_to_string(p.path().join("r.html")).unwrap();
    let row = |name: &str| -> &str {
        html.split("<tr")
            .find(|r| r.contains(&format!("{name}</td>")) && r.contains("class=\"ci\""))
            .unwrap_or_else(|| panic!("no leaderboard row for {name}"))
    };
    assert!(
        row("union").contains("<td class=\"ci\">0."),
        "{}",
        row("union")
    );
    assert_eq!(
        row("mean").matches("<td class=\"ci\"></td>").count(),
        row("mean").matches("class=\"ci\"").count(),
        "{}",
        row("mean")
    );
    // The leaderboard shows the spread.
    let text = p.expect(&["metrics", "latest"], 0);
    assert!(
        text.contains(&format!("{mu:.3} ±{sd:.3}")) || text.contains("±"),
        "{text}"
    );
}

/// When variants are scored on different images (one failed on an image), the leaderboard
/// says so and the goal compares them on the images both have: here `a` wins on its own
/// numbers (it alone has the easy first image) but `b` wins where they can be compared.
#[test]
fn the_goal_compares_variants_on_the_images_they_share() {
    let a = scripted(&["cat, grass", "cat", "dog"], "unused");
    let b = MockServer::start(Step::answer("unused")).unwrap();
    b.script([
        Step::Status {
            status: 500,
            retry_after: None,
        },
        Step::answer("cat, sky"),
        Step::answer("dog, cat"),
    ]);
    let p = project(&[("a", &a), ("b", &b)]);
    for (name, s) in [("a", &a), ("b", &b)] {
        p.write(
            &format!("models/{name}.yaml"),
            &format!(
                "kind: openai\nbase_url: {}\nmodel: {name}\nvision: false\nmax_retries: 0\nconcurrency: 1\n",
                s.base_url
            ),
        );
    }
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: a\n    prompt: tag\n    output: tags\n  - model: b\n    prompt: tag\n    output: tags\ngoal: {metric: f1_micro}\n",
    );
    let out = p.run(&["run", "e"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scored on different images"), "{text}");
    assert!(text.contains("* best by f1_micro: b"), "{text}");
    let m = p.json(&["metrics", "latest", "--json"], 0);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    let (va, vb) = (variant(&m, "a"), variant(&m, "b"));
    assert_eq!(
        (va["images"].as_u64(), vb["images"].as_u64()),
        (Some(3), Some(2))
    );
    assert!(close(va["micro"]["f1"].as_f64().unwrap(), 0.8), "{va}");
    assert!(close(vb["micro"]["f1"].as_f64().unwrap(), 0.75), "{vb}");
    assert_eq!(va["shared"]["images"], 2);
    assert!(
        close(va["shared"]["value"].as_f64().unwrap(), 4.0 / 6.0),
        "{va}"
    );
    assert!(close(vb["shared"]["value"].as_f64().unwrap(), 0.75), "{vb}");
    let show = p.json(&["runs", "show", "latest", "--json"], 0);
    assert_eq!(show["best"]["variant"], "b", "{show}");
}

/// Post-processing is applied to answers, cached or not, and is not in the key: banning a tag
/// asks the tagging model nothing again. A captioner whose prompt shows those tags is keyed by
/// the prompt as rendered, so it is asked again only for the images whose prompt changed.
#[test]
fn post_processing_asks_nothing_again_and_inputs_re_ask_only_changed_prompts() {
    let vlm = MockServer::start(Step::Status {
        status: 500,
        retry_after: None,
    })
    .unwrap();
    let cap = MockServer::start(Step::answer("a caption {n}")).unwrap();
    let p = project(&[("cap", &cap)]);
    // One call at a time, so the scripted answers go to the images in order.
    p.write(
        "models/vlm.yaml",
        &format!(
            "kind: openai\nbase_url: {}\nmodel: vlm\nvision: false\nmax_retries: 0\nconcurrency: 1\n",
            vlm.base_url
        ),
    );
    vlm.script([
        Step::answer("cat, grass"),
        Step::answer("cat, sky"),
        Step::answer("dog, grass"),
    ]);
    p.write(
        "prompts/caption.j2",
        "Describe an image tagged: {{ inputs.vlm.tags | join(', ') }}.\n",
    );
    let experiment = |post: &str| {
        format!(
            "dataset: d\nvariants:\n  - model: vlm\n    prompt: tag\n    output: tags\n{post}  - model: cap\n    prompt: caption\n    inputs: [vlm]\n"
        )
    };
    p.write("experiments/e.yaml", &experiment(""));
    let first = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(first["inferences"], 6, "{first}");
    assert_eq!((vlm.received().len(), cap.received().len()), (3, 3));

    p.write(
        "experiments/e.yaml",
        &experiment("    postprocess: {ban: [grass]}\n"),
    );
    let plan = p.json(&["plan", "e", "--json"], 0);
    assert_eq!(variant(&plan, "vlm")["cache_hits"], 3, "{plan}");
    assert_eq!(variant(&plan, "cap")["pending"], 3, "{plan}");
    let second = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(vlm.received().len(), 3, "the ban asked the tagger nothing");
    assert_eq!(
        cap.received().len(),
        5,
        "only the two images that had `grass` have a new caption prompt"
    );
    assert_eq!(
        (second["inferences"].clone(), second["cache_hits"].clone()),
        (2.into(), 4.into()),
        "{second}"
    );
    let tags = rows(
        &p,
        "SELECT path, string_agg(tag, ', ' ORDER BY tag) AS tags FROM outputs WHERE variant = 'vlm' GROUP BY path ORDER BY path",
    );
    let tags: Vec<&str> = tags.iter().map(|r| r["tags"].as_str().unwrap()).collect();
    assert_eq!(tags, ["cat", "cat, sky", "dog"]);
    let prompts = rows(
        &p,
        "SELECT prompt FROM texts WHERE variant = 'cap' ORDER BY path",
    );
    let prompts: Vec<&str> = prompts
        .iter()
        .map(|r| r["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(
        prompts,
        [
            "Describe an image tagged: cat.",
            "Describe an image tagged: cat, sky.",
            "Describe an image tagged: dog."
        ]
    );
}
