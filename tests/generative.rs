//! Generative variants and judges end to end, against the scripted OpenAI-compatible server:
//! tags parsed and mapped onto the vocabulary, retries on 429/500, failures recorded and never
//! cached, reruns served from the cache, judge scores in `metrics --json`, invalid verdicts
//! counted, and the API key in no file under runs/.

mod common;

use common::{noise_images, Project};
use iw_lab::engine::openai::mock::{MockServer, Step};

const KEY: &str = "sk-test-5f1b0c9e2d7a4c3b8e6f";

fn project(vlm: &MockServer, judge: &MockServer) -> Project {
    let mut p = Project::new();
    let imgs = noise_images(&p.path().join("imgs"), 3, 48);
    for (i, img) in imgs.iter().enumerate() {
        let tags = ["cat, grass", "cat, sky", "dog, grass"][i];
        std::fs::write(img.with_extension("txt"), tags).unwrap();
    }
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    p.write(
        "models/vlm.yaml",
        &format!(
            "kind: openai\nbase_url: {}\nmodel: test-vlm\napi_key_env: IW_TEST_KEY\nconcurrency: 2\nmax_retries: 3\ntimeout: 5\nprices: {{input: 1.0, output: 2.0}}\n",
            vlm.base_url
        ),
    );
    p.write(
        "models/judge.yaml",
        &format!(
            "kind: openai\nbase_url: {}\nmodel: test-judge\nvision: false\n",
            judge.base_url
        ),
    );
    p.write(
        "prompts/tag_image.j2",
        "List the tags of {{ name }} ({{ folder }}). Known tags: {{ vocabulary | join(', ') }}.\n",
    );
    p.write(
        "prompts/rubric.j2",
        "Tags {{ tags_text }} for an image tagged {{ truth_text }}. Answer good or bad.\n",
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: vlm\n    prompt: tag_image\n    output: tags\n    params: {temperature: 0.2, max_tokens: 50}\n    vocabulary: {aliases: {kitty: cat}}\njudges:\n  - model: judge\n    rubric: rubric\n    choices: {good: 1.0, bad: 0.0}\ngoal: {metric: judge_score}\n",
    );
    p.env.push(("IW_TEST_KEY".into(), KEY.into()));
    p.env.push(("IW_LAB_BACKOFF_MS".into(), "10".into()));
    p
}

/// `iw-lab query latest SQL --json`: one object per row.
fn rows(p: &Project, sql: &str) -> serde_json::Value {
    let out = p.expect(&["query", "latest", sql, "--json"], 0);
    serde_json::Value::Array(
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn tags_judges_retries_failures_and_cache() {
    let vlm = MockServer::start(Step::answer(
        "```\n1. Cat\n2. kitty\n3. Grass.\n4. spaceship\n```",
    ))
    .unwrap();
    let judge =
        MockServer::start(Step::answer("The tags fit the image well.\nVerdict: good")).unwrap();
    // First image: a 429 with Retry-After, then a 500, then an answer; one image fails all
    // four attempts (500s) and is recorded; the third answers at once.
    vlm.script([
        Step::Status {
            status: 429,
            retry_after: Some("0".into()),
        },
        Step::Status {
            status: 500,
            retry_after: None,
        },
    ]);
    let p = project(&vlm, &judge);
    // Concurrency 2 makes the order of requests vary, so make failures deterministic by
    // scripting the judge instead: its second call is unparseable (an invalid verdict).
    judge.script([
        Step::answer("Verdict: good"),
        Step::answer("I cannot decide."),
    ]);
    let out = p.run(&["run", "e", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = vlm.received();
    // 3 images + 2 retries of the first requests.
    assert_eq!(received.len(), 5, "{}", received.len());
    assert!(received
        .iter()
        .all(|r| r.header("authorization") == Some(&format!("Bearer {KEY}"))));
    let body: serde_json::Value = serde_json::from_str(&received[received.len() - 1].body).unwrap();
    assert_eq!(body["model"], "test-vlm");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 50);
    // The image went as a data URL.
    let content = body["messages"][0]["content"].as_array().unwrap();
    assert!(content[1]["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/jpeg;base64,"));
    assert!(content[0]["text"]
        .as_str()
        .unwrap()
        .contains("Known tags: "));

    let m = p.json(&["metrics", "latest", "--json"], 0);
    let v = &m["variants"][0];
    assert_eq!(v["variant"], "vlm");
    // cat (exact), kitty → cat (alias), grass (exact); spaceship is unmapped and dropped.
    assert!(v["judge_score"].as_f64().is_some(), "{m}");
    let j = &v["judges"]["judge"];
    assert_eq!(
        j["valid"].as_u64().unwrap() + j["invalid"].as_u64().unwrap(),
        3,
        "{m}"
    );
    assert_eq!(j["invalid"], 1, "{m}");
    assert!(v["generation"]["cost"].as_f64().is_some(), "{m}");

    let q = rows(&p, "SELECT path, mapping FROM texts ORDER BY path");
    let text = q.to_string();
    assert!(
        text.contains("alias") && text.contains("unmapped"),
        "{text}"
    );
    let outs = rows(&p, "SELECT DISTINCT tag FROM outputs ORDER BY tag");
    assert_eq!(outs.to_string().matches("\"tag\"").count(), 2, "{outs}");

    // The key is in no file under runs/ (nor under prompts/).
    assert!(files_containing(&p.path().join("runs"), KEY).is_empty());
    assert!(files_containing(&p.path().join("prompts"), KEY).is_empty());

    // A rerun: every answered cell and verdict comes from the cache.
    let before = vlm.received().len();
    let jbefore = judge.received().len();
    p.expect(&["run", "e"], 0);
    assert_eq!(
        vlm.received().len(),
        before,
        "cached cells were asked again"
    );
    // The one invalid verdict ("I cannot decide.") was recorded but is never served from the
    // cache as an answer: it alone is asked again.
    assert_eq!(
        judge.received().len(),
        jbefore + 1,
        "valid verdicts are cached; the invalid one is asked again"
    );
}

#[test]
fn failed_calls_are_recorded_and_never_cached() {
    let vlm = MockServer::start(Step::answer("cat, grass")).unwrap();
    let judge = MockServer::start(Step::answer("good")).unwrap();
    let p = project(&vlm, &judge);
    // Every call of the first run fails: 500s past the retries, a hang past the timeout is
    // too slow for a test, so 503s and malformed bodies.
    vlm.script(
        std::iter::repeat_n(
            Step::Status {
                status: 503,
                retry_after: None,
            },
            8,
        )
        .chain(std::iter::repeat_n(Step::Malformed, 4)),
    );
    // Exit code 1: the run completed with failures.
    let out = p.run(&["run", "e"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = rows(&p, "SELECT stage, reason FROM failures");
    assert_eq!(f.as_array().map(Vec::len), Some(3), "{f}");
    assert!(f.to_string().contains("503"), "{f}");
    // The next run asks again for every image (failures are not cached) and succeeds.
    let n = vlm.received().len();
    p.expect(&["run", "e"], 0);
    assert_eq!(vlm.received().len(), n + 3);
    let f = rows(&p, "SELECT count(*) AS n FROM failures");
    assert_eq!(f[0]["n"], 0, "{f}");
}

#[test]
fn missing_key_variable_is_a_clear_error() {
    let vlm = MockServer::start(Step::answer("cat")).unwrap();
    let judge = MockServer::start(Step::answer("good")).unwrap();
    let mut p = project(&vlm, &judge);
    p.env.retain(|(k, _)| k != "IW_TEST_KEY");
    let out = p.run(&["run", "e"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("IW_TEST_KEY"), "{err}");
}

/// A panic in a model call (a test failpoint) fails that cell at stage `call`; the run
/// completes and the next run asks again.
#[test]
fn a_panic_in_a_call_fails_its_cell() {
    let vlm = MockServer::start(Step::answer("cat, grass")).unwrap();
    let judge = MockServer::start(Step::answer("Verdict: good")).unwrap();
    let mut p = project(&vlm, &judge);
    let name = std::fs::read_dir(p.path().join("imgs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .min()
        .unwrap();
    p.env
        .push(("IW_LAB_FAILPOINTS".into(), format!("llm.call={name}")));
    let out = p.run(&["run", "e", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = rows(&p, "SELECT path, stage, reason FROM failures");
    assert_eq!(f.as_array().unwrap().len(), 1, "{f}");
    assert_eq!(f[0]["stage"], "call");
    assert!(
        f[0]["reason"].as_str().unwrap().contains("panicked at"),
        "{f}"
    );
    p.env.retain(|(k, _)| k != "IW_LAB_FAILPOINTS");
    let n = vlm.received().len();
    p.expect(&["run", "e"], 0);
    assert_eq!(vlm.received().len(), n + 1);
}

/// Verdicts are committed as they arrive: after a judging run is killed with SIGKILL, the
/// rerun asks the judge again only what the killed run had not committed.
#[test]
fn a_killed_judging_run_asks_again_only_what_was_not_committed() {
    let vlm = MockServer::start(Step::answer("cat, grass")).unwrap();
    let judge = MockServer::start(Step::Answer {
        text: "Verdict: good".into(),
        delay: std::time::Duration::from_millis(120),
    })
    .unwrap();
    let mut p = project(&vlm, &judge);
    let more = noise_images(&p.path().join("imgs/more"), 27, 40);
    for img in &more {
        std::fs::write(img.with_extension("txt"), "cat").unwrap();
    }
    p.write(
        "models/judge.yaml",
        &format!(
            "kind: openai\nbase_url: {}\nmodel: test-judge\nvision: false\nconcurrency: 1\n",
            judge.base_url
        ),
    );
    // One prompt per image, so no two verdicts share a cache key.
    p.write(
        "prompts/rubric.j2",
        "Tags {{ tags_text }} for {{ file }}, tagged {{ truth_text }}. Answer good or bad.\n",
    );
    p.env.push(("IW_LAB_FLUSH_SECONDS".into(), "0.1".into()));
    let mut child = p.command(&["run", "e", "--quiet"]).spawn().unwrap();
    let start = std::time::Instant::now();
    let parts = |p: &Project| -> usize {
        walkdir::WalkDir::new(p.path().join("runs"))
            .into_iter()
            .flatten()
            .filter(|e| {
                e.path().parent().is_some_and(|d| d.ends_with("judgments"))
                    && e.file_name().to_string_lossy().ends_with(".parquet")
            })
            .count()
    };
    while parts(&p) < 3 && start.elapsed() < std::time::Duration::from_secs(60) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let asked = judge.received().len();
    let list = p.json(&["runs", "list", "--json"], 0);
    let killed = list["runs"][0]["run_id"].as_str().unwrap().to_string();
    let committed = p.expect(
        &[
            "query",
            &killed,
            "--json",
            "SELECT count(*) AS n FROM judgments WHERE valid",
        ],
        0,
    );
    let committed: u64 = serde_json::from_str::<serde_json::Value>(committed.trim()).unwrap()["n"]
        .as_u64()
        .unwrap();
    assert!(
        (3..30).contains(&committed),
        "{committed} verdicts committed"
    );
    assert!(asked as u64 >= committed);
    let again = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(
        again["counts"]["judge_cached"].as_u64(),
        Some(committed),
        "{again}"
    );
    assert_eq!(
        (judge.received().len() - asked) as u64,
        30 - committed,
        "only the verdicts not committed are asked again"
    );
}

/// Judge memory stays bounded: verdicts leave memory for disk in parts of at most 64 rows as
/// they arrive, however many there are (here 200, with the time-based flush turned off so only
/// the row bound commits them), and the run's statistics read them back from the parts.
#[test]
fn verdicts_leave_memory_in_bounded_parts() {
    let vlm = MockServer::start(Step::answer("cat, grass")).unwrap();
    let judge = MockServer::start(Step::answer("Verdict: good")).unwrap();
    let mut p = project(&vlm, &judge);
    let more = noise_images(&p.path().join("imgs/more"), 197, 24);
    for img in &more {
        std::fs::write(img.with_extension("txt"), "cat").unwrap();
    }
    // One prompt per image, so every verdict is its own call.
    p.write(
        "prompts/rubric.j2",
        "Tags {{ tags_text }} for {{ file }}, tagged {{ truth_text }}. Answer good or bad.\n",
    );
    p.env.push(("IW_LAB_FLUSH_SECONDS".into(), "3600".into()));
    let run = p.json(&["run", "e", "--json", "--quiet"], 0);
    assert_eq!(run["counts"]["judge_calls"].as_u64(), Some(200), "{run}");
    let per_part = rows(
        &p,
        "SELECT count(*) AS n FROM read_parquet('runs/*/judgments/*.parquet', filename = true) GROUP BY filename",
    );
    let sizes: Vec<u64> = per_part
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 200, "{sizes:?}");
    assert!(sizes.len() >= 4, "200 verdicts in {} parts", sizes.len());
    assert!(
        sizes.iter().all(|&n| n <= 64),
        "a part over 64 rows: {sizes:?}"
    );
    let verdicts = rows(&p, "SELECT count(*) AS n FROM judgments WHERE valid");
    assert_eq!(verdicts[0]["n"].as_u64(), Some(200));
    assert_eq!(run["best"]["value"].as_f64(), Some(1.0), "{run}");
}
