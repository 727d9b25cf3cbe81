//! Bad config files get an error naming the file, line and column, the key, and what was
//! expected (with a "did you mean" hint), and exit code 2. Nothing is run.

mod common;

use common::*;

fn error_of(p: &Project, args: &[&str]) -> String {
    let out = p.run(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

fn project() -> Project {
    let p = Project::new();
    p.copy(&fixtures().join("images/brick_tiny.png"), "imgs/a.png");
    p.write(
        "datasets/demo.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    p.wd_model("wd", "");
    p
}

#[test]
fn unknown_key_with_location_and_hint() {
    let p = project();
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: wd\n    treshold: [0.5]\n",
    );
    let err = error_of(&p, &["run", "e"]);
    assert!(err.contains("e.yaml:4:5"), "{err}");
    assert!(err.contains("`variants[0].treshold`"), "{err}");
    assert!(
        err.contains("expected one of `model`, `name`, `thresholds`, `score_floor`"),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `thresholds`?"), "{err}");
}

#[test]
fn wrong_types_and_ranges() {
    let p = project();
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: wd\n    thresholds: [0.5, 1.5]\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("e.yaml:4:")
            && err.contains("`variants[0].thresholds[1]`")
            && err.contains("1.5 is out of range"),
        "{err}"
    );

    p.write("experiments/e.yaml", "dataset: demo\nvariants: wd\n");
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("`variants`") && err.contains("expected a sequence"),
        "{err}"
    );

    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: wd\ngoal: {metric: f1_mikro}\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("e.yaml:4:") && err.contains("did you mean `f1_micro`?"),
        "{err}"
    );

    p.write("models/wd.yaml", "kind: onnx-taggr\n");
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: wd\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("wd.yaml:1:7")
            && err.contains("`kind`")
            && err.contains("did you mean `onnx-tagger`?"),
        "{err}"
    );
}

#[test]
fn yaml_syntax_errors_have_a_location() {
    let p = project();
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: [wd\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(err.contains("e.yaml:"), "{err}");
    p.write("experiments/e.yaml", "");
    let err = error_of(&p, &["plan", "e"]);
    assert!(err.contains("e.yaml") && err.contains("empty"), "{err}");
}

#[test]
fn missing_references_suggest_names() {
    let p = project();
    p.write(
        "experiments/e.yaml",
        "dataset: demoo\nvariants:\n  - model: wd\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("dataset `demoo` not found") && err.contains("e.yaml:1:1"),
        "{err}"
    );
    assert!(err.contains("did you mean `demo`?"), "{err}");

    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: wd\n  - model: dw\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("model `dw` not found") && err.contains("e.yaml:4:5"),
        "{err}"
    );

    let err = error_of(&p, &["run", "nope"]);
    assert!(err.contains("experiment `nope` not found"), "{err}");

    p.write(
        "experiments/e.yaml",
        "dataset: demo\nground_truth: human\nvariants:\n  - model: wd\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("no ground-truth source `human`") && err.contains("(it has: txt)"),
        "{err}"
    );
}

#[test]
fn semantic_rules() {
    let p = project();
    p.write("experiments/e.yaml", "dataset: demo\nvariants: []\n");
    assert!(error_of(&p, &["plan", "e"]).contains("no variants"));

    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: wd\n    score_floor: 0.2\n    thresholds: [0.1]\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("below the score floor") && err.contains("hint:"),
        "{err}"
    );

    p.write(
        "models/x.yaml",
        "kind: onnx-tagger\nsource: missing.onnx\npreset: wd\nlabels: [a]\n",
    );
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: x\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("x.yaml:2:1")
            && err.contains("missing.onnx")
            && err.contains("does not exist"),
        "{err}"
    );

    p.write("models/x.yaml", "kind: sidecar\n");
    let err = error_of(&p, &["plan", "e"]);
    assert!(err.contains("needs `path:`"), "{err}");

    p.write("datasets/demo.yaml", "path: ../nowhere\n");
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: wd\n",
    );
    let err = error_of(&p, &["plan", "e"]);
    assert!(
        err.contains("demo.yaml:1:1") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn model_file_problems_are_clear_errors() {
    let p = project();
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: wd\n",
    );
    p.wd_model("wd", &format!("sha256: {}\n", "ab".repeat(32)));
    let err = error_of(&p, &["run", "e"]);
    assert!(
        err.contains("sha256 mismatch") && err.contains("model.onnx"),
        "{err}"
    );

    // Not an ONNX file at all.
    let junk = p.write("models/junk.onnx", "definitely not a protobuf");
    p.write(
        "models/wd.yaml",
        &format!(
            "kind: onnx-tagger\nsource: {}\npreset: wd\nlabels: [a, b]\n",
            junk.display()
        ),
    );
    let err = error_of(&p, &["run", "e"]);
    assert!(err.contains("junk.onnx"), "{err}");

    // Labels that do not fit the model's outputs.
    let m = fixtures().join("models/wd/model.onnx");
    p.write(
        "models/wd.yaml",
        &format!(
            "kind: onnx-tagger\nsource: {}\npreset: wd\nlabels: [a, b]\n",
            m.display()
        ),
    );
    let err = error_of(&p, &["run", "e"]);
    assert!(
        err.contains("2 labels") && err.contains("42 scores"),
        "{err}"
    );

    // A preset whose layout does not fit the graph.
    p.write(
        "models/wd.yaml",
        &format!(
            "kind: onnx-tagger\nsource: {}\npreset: joytag\nlabels: {}\n",
            m.display(),
            fixtures().join("models/wd/selected_tags.csv").display()
        ),
    );
    let err = error_of(&p, &["run", "e"]);
    assert!(err.contains("channels") && err.contains("layout"), "{err}");
}

#[test]
fn absurd_numbers_are_refused_at_load() {
    let p = project();
    p.write("prompts/describe.j2", "Describe the image.\n");
    p.write(
        "experiments/e.yaml",
        "dataset: demo\nvariants:\n  - model: llm\n    prompt: describe\n",
    );
    let base = "kind: openai\nbase_url: http://127.0.0.1:9/v1\nmodel: m\n";
    for (extra, key, problem) in [
        ("timeout: .inf", "`timeout`", "at most 86400"),
        ("timeout: 1e30", "`timeout`", "at most 86400"),
        ("timeout: -1", "`timeout`", "above 0"),
        ("timeout: .nan", "`timeout`", "above 0"),
        ("timeout: 0", "`timeout`", "above 0"),
        ("max_retries: 4000000000", "`max_retries`", "too large"),
        ("concurrency: 100000000", "`concurrency`", "too large"),
        (
            "image: {max_side: 99999999}",
            "`image.max_side`",
            "too large",
        ),
        ("prices: {input: .inf, output: 1}", "`prices.input`", "≥ 0"),
        ("prices: {input: 1, output: -2}", "`prices.output`", "≥ 0"),
        (
            "params: {max_tokens: 1e300}",
            "`variants[0].params.max_tokens`",
            "whole number",
        ),
        (
            "params: {temperature: .inf}",
            "`variants[0].params.temperature`",
            "from 0 to 5",
        ),
    ] {
        p.write("models/llm.yaml", &format!("{base}{extra}\n"));
        let err = error_of(&p, &["plan", "e"]);
        assert!(
            err.contains("llm.yaml") || err.contains("e.yaml"),
            "{extra}: {err}"
        );
        assert!(err.contains(key) && err.contains(problem), "{extra}: {err}");
    }
    for (extra, key, problem) in [
        ("batch_size: 1000000000", "`batch_size`", "too large"),
        (
            "preprocess: {size: 4294967297}",
            "`preprocess.size`",
            "too large",
        ),
        (
            "preprocess: {jpeg_quality: 0}",
            "`preprocess.jpeg_quality`",
            "1–100",
        ),
        (
            "preprocess: {std: [1, 0, 1]}",
            "`preprocess.std`",
            "other than 0",
        ),
        ("preprocess: {scale: .nan}", "`preprocess.scale`", "finite"),
    ] {
        p.wd_model("wd", extra);
        p.write(
            "experiments/t.yaml",
            "dataset: demo\nvariants:\n  - model: wd\n",
        );
        let err = error_of(&p, &["plan", "t"]);
        assert!(err.contains("wd.yaml"), "{extra}: {err}");
        assert!(err.contains(key) && err.contains(problem), "{extra}: {err}");
    }
    p.wd_model("wd", "");
    p.write(
        "experiments/t.yaml",
        "dataset: demo\nvariants:\n  - model: wd\n    repeats: 1000000000\n",
    );
    let err = error_of(&p, &["plan", "t"]);
    assert!(
        err.contains("`variants[0].repeats`") && err.contains("at most 1000"),
        "{err}"
    );
    p.write(
        "datasets/demo.yaml",
        "path: ../imgs\nmax_pixels: 0\nground_truth:\n  - source: txt\n",
    );
    let err = error_of(&p, &["plan", "t"]);
    assert!(
        err.contains("demo.yaml") && err.contains("`max_pixels`"),
        "{err}"
    );
}
