//! `iw-lab report`: the HTML file of a fixture run, loaded in a real browser (Debian's
//! `chromium`, headless). The test reads the DOM the page's script built: the number of image
//! cards, a known tag's colour class, the diff view's counts against `iw-lab diff --json`,
//! user text (a prompt and a tag holding markup) rendered as text, no console message and no
//! script error. Without a browser the browser tests fail with install instructions
//! (`IW_LAB_SKIP_BROWSER=1` skips them, for machines that cannot install one; CI installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The fixture: 7 images (noise PNGs; one with A1111 parameters whose prompt holds a
/// `<script>`), kohya `.txt` ground truth (one image unlabelled), two sidecar taggers (one
/// predicting a tag spelled as markup; one with a malformed prediction file: a failure).
fn setup() -> (Project, String) {
    let p = Project::new();
    let images = p.path().join("data/images");
    let files = noise_images(&images, 6, 48);
    // a.png first in path order: the known tags live there
    std::fs::rename(&files[0], images.join("a.png")).unwrap();
    for (i, f) in files.iter().enumerate().skip(1) {
        std::fs::rename(f, images.join(format!("img{i}.png"))).unwrap();
    }
    let status = Command::new(python())
        .arg("-c")
        .arg(
            "import sys\nfrom PIL import Image, PngImagePlugin\n\
             info = PngImagePlugin.PngInfo()\n\
             info.add_text('parameters', '<script>document.title=\"pwned\"</script> 1girl, solo\\n\
             Negative prompt: <b>worst</b>\\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, Model: anyv3')\n\
             Image.new('RGB', (64, 64), (200, 30, 30)).save(sys.argv[1], pnginfo=info)\n",
        )
        .arg(images.join("gen.png"))
        .status()
        .unwrap();
    assert!(status.success());
    let truth = [
        ("a", "cat, dog, tree"),
        ("img1", "cat"),
        ("img2", "dog, tree"),
        ("img3", "tree"),
        ("img4", ""),
        ("gen", "1girl, solo"),
    ];
    for (stem, tags) in truth {
        p.write(&format!("data/images/{stem}.txt"), tags);
    }
    // img5 has no .txt: unlabelled
    let a = [
        ("a", r#"{"cat": 0.9, "bird": 0.7, "dog": 0.2}"#),
        ("img1", r#"{"cat": 0.8}"#),
        ("img2", r#"{"dog": 0.6, "cat": 0.55}"#),
        ("img3", r#"{"tree": 0.3}"#),
        ("img4", r#"{"bird": 0.9}"#),
        ("img5", r#"{"cat": 0.99}"#),
        (
            "gen",
            r#"{"1girl": 0.95, "<img src=x onerror=alert(1)>": 0.8}"#,
        ),
    ];
    let b = [
        ("a", r#"{"cat": 0.6, "dog": 0.7, "tree": 0.4}"#),
        ("img1", r#"{"cat": 0.4}"#),
        ("img2", r#"{"dog": 0.9, "tree": 0.9}"#),
        ("img3", "{not json"),
        ("img4", r#"{}"#),
        ("img5", r#"{"dog": 0.7}"#),
        ("gen", r#"{"1girl": 0.9, "solo": 0.8}"#),
    ];
    for (stem, j) in a {
        p.write(
            &format!("data/preds_a/{stem}.json"),
            &format!("{{\"tags\": {j}}}"),
        );
    }
    for (stem, j) in b {
        let text = if j.starts_with("{not") {
            j.to_string()
        } else {
            format!("{{\"tags\": {j}}}")
        };
        p.write(&format!("data/preds_b/{stem}.json"), &text);
    }
    p.write(
        "datasets/d.yaml",
        "path: ../data/images\nground_truth:\n  - source: txt\n",
    );
    p.write(
        "models/side-a.yaml",
        "kind: sidecar\npath: ../data/preds_a\nscore_floor: 0.0\n",
    );
    p.write(
        "models/side-b.yaml",
        "kind: sidecar\npath: ../data/preds_b\nscore_floor: 0.0\n",
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: side-a\n    thresholds: [0.5]\n  - model: side-b\n    thresholds: [0.5]\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 1);
    let id = run["run_id"].as_str().unwrap().to_string();
    (p, id)
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IW_LAB_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The DOM after the page's scripts ran, and the browser's console lines.
fn render(html: &Path) -> Option<(String, Vec<String>)> {
    render_at(html, "")
}

/// The same, with a URL fragment (the grid's state: `#images?tag=cat&errors=1`).
fn render_at(html: &Path, fragment: &str) -> Option<(String, Vec<String>)> {
    let Some(browser) = chromium() else {
        if std::env::var_os("IW_LAB_SKIP_BROWSER").is_some() {
            eprintln!("no browser; skipped (IW_LAB_SKIP_BROWSER)");
            return None;
        }
        panic!(
            "the report tests need a headless Chromium: `apt-get install chromium` (Debian), or set \
             IW_LAB_CHROMIUM to its path; IW_LAB_SKIP_BROWSER=1 skips them"
        );
    };
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}{fragment}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {out:?}");
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    Some((String::from_utf8(out.stdout).unwrap(), console))
}

/// The text of every element `<span class="CLASS"...>TEXT</span>` in `dom`.
fn spans(dom: &str, class: &str) -> Vec<String> {
    let open = format!("<span class=\"{class}\"");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(gt) = rest.find('>') else { break };
        let Some(end) = rest[gt..].find("</span>") else {
            break;
        };
        out.push(rest[gt + 1..gt + end].to_string());
        rest = &rest[gt + end..];
    }
    out
}

/// The first card's HTML (the cards are in path order, so `a.png`).
fn first_card(dom: &str) -> &str {
    let i = dom.find("<div class=\"card\"").expect("a card");
    let rest = &dom[i + 10..];
    let j = rest.find("<div class=\"card\"").unwrap_or(rest.len());
    &dom[i..i + 10 + j]
}

fn report(p: &Project, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    all.push("--json");
    p.json(&all, 0)
}

#[test]
fn report_renders_in_a_browser() {
    let (p, id) = setup();
    let summary = report(
        &p,
        &[
            &id,
            "--out",
            "reports/r.html",
            "--page-size",
            "5",
            "--bootstrap",
            "50",
        ],
    );
    assert_eq!(summary["images"], 7);
    assert_eq!(summary["variants"], 2);
    assert_eq!(summary["thumbnails"], 7);
    let html_path = p.path().join("reports/r.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    // the file is self-contained: no external script, style or image
    assert!(!html.contains("src=\"http"), "external resource");
    assert!(!html.contains("<link"), "external stylesheet");
    // user text never appears as markup in the file itself
    assert!(
        !html.contains("<script>document.title"),
        "raw prompt in the page"
    );
    assert!(!html.contains("<img src=x"), "raw tag in the page");
    assert!(
        !html.contains("<b>worst</b>"),
        "raw negative prompt in the page"
    );

    let Some((dom, console)) = render(&html_path) else {
        return;
    };
    assert!(console.is_empty(), "console output: {console:#?}");
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page script did not finish"
    );
    assert!(!dom.contains("data-errors=\""), "script errors: {dom}");
    assert!(dom.contains("data-render-ms="));
    // page size 5 of 7 images
    assert_eq!(dom.matches("<div class=\"card\"").count(), 5);
    assert!(dom.contains("Showing 1–5 of 7 images."));
    // a.png under side-a at 0.5 (best variant first: the cards list variants by rank, so
    // look for the classes by tag text across the card)
    let card = first_card(&dom);
    assert!(card.contains("a.png"), "{card}");
    let tp = spans(card, "tag tp");
    let fp = spans(card, "tag fp");
    let missed = spans(card, "tag fn");
    assert!(tp.contains(&"cat".to_string()), "tp {tp:?}");
    assert!(fp.contains(&"bird".to_string()), "fp {fp:?}");
    assert!(missed.contains(&"tree".to_string()), "missed {missed:?}");
    // side-a misses dog (0.2), side-b finds it (0.7): one of each
    assert!(missed.contains(&"dog".to_string()) && tp.contains(&"dog".to_string()));
    // markup in user text is text, not elements, and did not run
    assert!(!dom.contains("<title>pwned"), "the prompt's script ran");
    assert!(!dom.contains("<img src=\"x\""), "the tag became an element");
}

#[test]
fn report_diff_matches_the_cli_and_prompts_render_as_text() {
    let (p, id) = setup();
    report(&p, &[&id, "--out", "reports/r.html", "--bootstrap", "0"]);
    let html_path = p.path().join("reports/r.html");
    let Some((dom, console)) = render(&html_path) else {
        return;
    };
    assert!(console.is_empty(), "console output: {console:#?}");
    assert_eq!(dom.matches("<div class=\"card\"").count(), 7);
    // the generated image's prompt, as text, inside the card's details
    assert!(
        dom.contains("&lt;script&gt;document.title=\"pwned\"&lt;/script&gt; 1girl, solo"),
        "prompt not rendered as text"
    );
    assert!(dom.contains("&lt;b&gt;worst&lt;/b&gt;"));
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(dom.contains("Euler a"), "generation settings");
    // the failure (side-b's malformed prediction file) is on img3's card
    assert!(dom.contains("failed (side-b, "), "failure line");
    // the diff view's default pair: the best variant (A) and the second (B)
    let summary = dom
        .split("<p class=\"diff-summary\">")
        .nth(1)
        .and_then(|s| s.split("</p>").next())
        .expect("diff summary")
        .to_string();
    let (b, rest) = summary.split_once(" vs ").unwrap();
    let (a, _) = rest.split_once(':').unwrap();
    let d = p.json(
        &[
            "diff",
            &format!("{id}:{a}"),
            &format!("{id}:{b}"),
            "--json",
            "--threshold",
            "0.5",
        ],
        0,
    );
    let expected = format!(
        "{b} vs {a}: {} images both scored, {} changed; {} tags gained, {} lost.",
        d["shared_images"], d["images_changed"], d["tags_gained"], d["tags_lost"]
    );
    assert_eq!(summary, expected);
}

#[test]
fn report_compares_runs_and_writes_thumbnails_beside() {
    let (p, id) = setup();
    // a second run of one variant only, with a different threshold
    p.write(
        "experiments/f.yaml",
        "dataset: d\nvariants:\n  - model: side-a\n    thresholds: [0.3]\n",
    );
    let run2 = p.json(&["run", "f", "--json", "--quiet"], 0);
    let id2 = run2["run_id"].as_str().unwrap().to_string();
    let s = report(
        &p,
        &[&id, &id2, "--out", "reports/two.html", "--thumbs", "folder"],
    );
    assert_eq!(s["variants"], 3);
    assert_eq!(s["images"], 7, "images matched across runs");
    let files = p.path().join("reports/two_files");
    let jpgs = std::fs::read_dir(&files).unwrap().count();
    assert_eq!(jpgs, 7);
    let html = std::fs::read_to_string(p.path().join("reports/two.html")).unwrap();
    let label2 = id2.rsplit('-').next().unwrap();
    assert!(
        html.contains(&format!("{label2}:side-a")),
        "variant named RUN:VARIANT"
    );
    assert!(
        html.contains("\"t\":\"two_files/"),
        "thumbnail paths relative to the page"
    );
    let Some((dom, console)) = render(&p.path().join("reports/two.html")) else {
        return;
    };
    assert!(console.is_empty(), "console output: {console:#?}");
    assert!(dom.contains("src=\"two_files/"));
    assert_eq!(dom.matches("<div class=\"card\"").count(), 7);
}

#[test]
fn report_thumbnails_are_cached_and_changed_files_get_none() {
    let (p, id) = setup();
    report(&p, &[&id, "--out", "reports/a.html", "--bootstrap", "0"]);
    let cache = p.path().join(".iw-lab/thumbs/224");
    let cached = walk(&cache);
    assert_eq!(cached, 7, "one cached thumbnail per image");
    // a file changed after the run: no thumbnail (never a picture other than the one scored)
    std::fs::write(p.path().join("data/images/img1.png"), b"changed").unwrap();
    std::fs::remove_dir_all(p.path().join(".iw-lab/thumbs")).unwrap();
    let s = report(&p, &[&id, "--out", "reports/b.html", "--bootstrap", "0"]);
    assert_eq!(s["thumbnails"], 6);
    assert_eq!(s["thumbnails_missing"], 1);
    let html = std::fs::read_to_string(p.path().join("reports/b.html")).unwrap();
    assert!(html.contains("has changed since the run"));
}

fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walk(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn report_bad_input_is_a_clear_error() {
    let (p, id) = setup();
    let out = p.run(&["report", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope"), "{err}");
    let out = p.run(&["report", &id, "--threshold", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("threshold 1.5 is out of range"));
    let out = p.run(&["report", &id, &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("named twice"));
    // default output: reports/<run id>.html
    p.expect(&["report", &id, "--quiet"], 0);
    assert!(p.path().join(format!("reports/{id}.html")).is_file());
}

#[test]
fn runs_cache_thumbnails_of_the_images_they_decode() {
    let p = Project::new();
    noise_images(&p.path().join("data/images"), 3, 64);
    p.write("datasets/d.yaml", "path: ../data/images\n");
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n",
    );
    p.expect(&["run", "e", "--quiet"], 0);
    let cache = p.path().join(".iw-lab/thumbs/224");
    assert_eq!(
        walk(&cache),
        3,
        "the run cached one thumbnail per decoded image"
    );
    // the report then reads them; the same bytes as a report would make
    let cached: Vec<Vec<u8>> = files(&cache)
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    std::fs::remove_dir_all(p.path().join(".iw-lab/thumbs")).unwrap();
    let s = report(
        &p,
        &["latest", "--out", "reports/r.html", "--bootstrap", "0"],
    );
    assert_eq!(s["thumbnails"], 3);
    let made: Vec<Vec<u8>> = files(&cache)
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(cached, made);
    // opted out
    std::fs::remove_dir_all(p.path().join(".iw-lab/thumbs")).unwrap();
    let mut c = p.command(&["run", "e", "--quiet", "--no-cache"]);
    c.env("IW_LAB_NO_THUMBS", "1");
    assert!(c.status().unwrap().success());
    assert!(!cache.exists());
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn report_of_a_run_without_ground_truth_or_metrics_file() {
    let (p, id) = setup();
    // the same images, a dataset without ground truth
    p.write("datasets/bare.yaml", "path: ../data/images\n");
    p.write(
        "experiments/bare.yaml",
        "dataset: bare\nvariants:\n  - model: side-a\n",
    );
    let bare = p.json(&["run", "bare", "--json", "--quiet"], 0);
    let bare_id = bare["run_id"].as_str().unwrap().to_string();
    let s = report(&p, &[&bare_id, "--out", "reports/bare.html"]);
    assert_eq!(s["images"], 7);
    let html = std::fs::read_to_string(p.path().join("reports/bare.html")).unwrap();
    assert!(html.contains("not scored (no ground truth)"));
    // a run whose metrics.json is gone (say, interrupted before scoring): recomputed from the
    // tables, the same leaderboard
    let before = report(&p, &[&id, "--out", "reports/with.html", "--bootstrap", "0"]);
    assert_eq!(before["variants"], 2);
    let with = std::fs::read_to_string(p.path().join("reports/with.html")).unwrap();
    let run_dir = p.path().join("runs").join(&id);
    std::fs::remove_file(run_dir.join("metrics.json")).unwrap();
    report(
        &p,
        &[&id, "--out", "reports/without.html", "--bootstrap", "0"],
    );
    let without = std::fs::read_to_string(p.path().join("reports/without.html")).unwrap();
    // the shown numbers (4 decimals); the raw sort keys may differ in the last bits, as
    // DuckDB's parallel sums do from one query to the next
    let board = |h: &str| {
        let i = h.find("id=\"leaderboard-table\"").unwrap();
        let j = h[i..].find("</table>").unwrap();
        let t = &h[i..i + j];
        let mut out = String::new();
        for (k, part) in t.split(" data-v=\"").enumerate() {
            out.push_str(if k == 0 {
                part
            } else {
                &part[part.find('"').unwrap() + 1..]
            });
        }
        out
    };
    assert_eq!(board(&with), board(&without));
    let Some((dom, console)) = render(&p.path().join("reports/bare.html")) else {
        return;
    };
    assert!(console.is_empty(), "console output: {console:#?}");
    assert!(!dom.contains("data-errors=\""));
    assert_eq!(dom.matches("<div class=\"card\"").count(), 7);
    // no ground truth: every predicted tag is "predicted", none true or false positive
    let grid = &dom[dom.find("id=\"grid\"").unwrap()..dom.find("id=\"pager-bottom\"").unwrap()];
    assert!(grid.contains("class=\"tag pr\""));
    assert!(!grid.contains("class=\"tag tp") && !grid.contains("class=\"tag fp"));
    assert!(!grid.contains("class=\"tag fn"));
}

#[test]
fn report_filters_from_the_url() {
    let (p, id) = setup();
    report(&p, &[&id, "--out", "reports/r.html", "--bootstrap", "0"]);
    let page = p.path().join("reports/r.html");
    let cards = |fragment: &str| -> Vec<String> {
        let (dom, console) = render_at(&page, fragment).expect("a browser");
        assert!(
            console.is_empty(),
            "{fragment}: console output: {console:#?}"
        );
        assert!(!dom.contains("data-errors=\""), "{fragment}: script errors");
        dom.split("<div class=\"name\" title=\"")
            .skip(1)
            .map(|s| s[..s.find('\n').unwrap()].to_string())
            .collect()
    };
    if chromium().is_none() && std::env::var_os("IW_LAB_SKIP_BROWSER").is_some() {
        return;
    }
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // the fixture (setup): `cat` is in the ground truth of a and img1, predicted by side-a on
    // img2 (0.55) and img5 (0.99), missed by side-b on img1
    assert_eq!(
        cards("#images?tag=cat"),
        names(&["a.png", "img1.png", "img2.png", "img5.png"])
    );
    // a false positive or a miss under a shown variant: all but the unlabelled img5
    assert_eq!(
        cards("#images?errors=1"),
        names(&["a.png", "gen.png", "img1.png", "img2.png", "img3.png", "img4.png"])
    );
    // side-b only: it misses tree on a and cat on img1 (0.4); gets gen, img2 and img4 right;
    // img3 failed (no result), img5 is unlabelled
    assert_eq!(
        cards("#images?errors=1&variants=side-b"),
        names(&["a.png", "img1.png"])
    );
    assert_eq!(cards("#images?failed=1"), names(&["img3.png"]));
    assert_eq!(cards("#images?file=gen"), names(&["gen.png"]));
    // the predicted sets differ on every image both variants scored; img3 has one result
    assert_eq!(
        cards("#images?disagree=1"),
        names(&["a.png", "gen.png", "img1.png", "img2.png", "img4.png", "img5.png"])
    );
    // worst F1 first under the best shown variant; the unlabelled image last
    let sorted = cards("#images?sort=f1");
    assert_eq!(
        sorted.last().map(String::as_str),
        Some("img5.png"),
        "{sorted:?}"
    );
    // page 2 of 3 at page size 3
    report(
        &p,
        &[
            &id,
            "--out",
            "reports/p.html",
            "--bootstrap",
            "0",
            "--page-size",
            "3",
        ],
    );
    let (dom, _) = render_at(&p.path().join("reports/p.html"), "#images?page=2").unwrap();
    assert!(dom.contains("Showing 4–6 of 7 images."), "page 2");
}

#[test]
fn report_shows_captions_and_judge_verdicts() {
    use iw_lab::engine::openai::mock::{MockServer, Step};
    // A captioning variant judged by two LLMs: one always answers a choice, the other never
    // does (every verdict invalid: counted, not scored).
    let writer = MockServer::start(Step::answer("A <b>cat</b> on the grass.")).unwrap();
    let fair = MockServer::start(Step::answer("Reasoning first. Verdict: good")).unwrap();
    let mute = MockServer::start(Step::answer("I would rather not say.")).unwrap();
    let p = Project::new();
    let imgs = noise_images(&p.path().join("imgs"), 3, 40);
    for (img, tags) in imgs.iter().zip(["cat, grass", "cat, sky", "dog, grass"]) {
        std::fs::write(img.with_extension("txt"), tags).unwrap();
    }
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: txt\n",
    );
    for (name, server) in [("writer", &writer), ("fair", &fair), ("mute", &mute)] {
        p.write(
            &format!("models/{name}.yaml"),
            &format!(
                "kind: openai\nbase_url: {}\nmodel: {name}\nvision: false\nmax_retries: 0\n",
                server.base_url
            ),
        );
    }
    p.write("prompts/cap.j2", "Describe {{ name }}.\n");
    p.write("prompts/rate.j2", "Rate: {{ caption }}\n");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: writer\n    prompt: cap\n    output: caption\n\
         judges:\n  - model: fair\n    rubric: rate\n    choices: {good: 1.0, bad: 0.0}\n\
         \x20 - model: mute\n    rubric: rate\n    choices: {good: 1.0, bad: 0.0}\n\
         goal: {metric: judge_score}\n",
    );
    p.expect(&["run", "e"], 0);
    let s = report(&p, &["latest", "--out", "reports/j.html"]);
    assert_eq!(s["variants"], 1);
    let html_path = p.path().join("reports/j.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    // the judges' table: fair 3 valid, mute 3 invalid; the judge score is fair's alone
    let i = html.find("id=\"judges-table\"").expect("a judges table");
    let table = &html[i..i + html[i..].find("</table>").unwrap()];
    assert!(
        table.contains(">judge fair<") && table.contains(">judge mute<"),
        "{table}"
    );
    assert!(
        table.contains(">3 / 0<") && table.contains(">0 / 3<"),
        "{table}"
    );
    assert!(table.contains("<td data-v=\"1\">1.0000</td>"), "{table}");
    // no tag analyses of a caption variant
    assert!(html.contains("writes captions, not tags"));
    assert!(!html.contains("id=\"mistakes\"") && !html.contains("id=\"paired\""));
    assert!(
        !html.contains("<b>cat</b>"),
        "raw caption markup in the page"
    );

    let Some((dom, console)) = render(&html_path) else {
        return;
    };
    assert!(console.is_empty(), "console output: {console:#?}");
    assert!(!dom.contains("data-errors=\""), "script errors: {dom}");
    let card = first_card(&dom);
    assert!(
        card.contains("<div class=\"gentext\">A &lt;b&gt;cat&lt;/b&gt; on the grass.</div>"),
        "{card}"
    );
    assert_eq!(spans(card, "verdict"), ["fair: good 1.00"], "{card}");
    assert_eq!(spans(card, "verdict invalid"), ["mute: invalid"], "{card}");
    assert!(!card.contains("no result"), "{card}");
}

/// One decoding gate for everything: an image over the dataset's `max_pixels` (a small PNG of
/// 5000×5000 pixels) is refused by the run and gets no thumbnail in the report, from its
/// header alone. Peak memory of the report stays far below what decoding it would take.
#[test]
fn report_thumbnails_obey_the_pixel_limit() {
    let mut p = Project::new();
    let images = p.path().join("data/images");
    noise_images(&images, 2, 64);
    image::RgbImage::from_pixel(5000, 5000, image::Rgb([20, 120, 220]))
        .save(images.join("huge.png"))
        .unwrap();
    assert!(std::fs::metadata(images.join("huge.png")).unwrap().len() < 1_000_000);
    p.write(
        "datasets/d.yaml",
        "path: ../data/images\nmax_pixels: 1000000\n",
    );
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n",
    );
    p.env.push(("IW_LAB_NO_THUMBS".into(), "1".into()));
    let run = p.json(&["run", "e", "--json", "--quiet"], 1);
    assert_eq!(run["failures"], 1);
    let id = run["run_id"].as_str().unwrap();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_iw-lab"))
        .args([
            "report",
            id,
            "--out",
            "reports/r.html",
            "--bootstrap",
            "0",
            "--json",
        ])
        .current_dir(p.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (s["thumbnails"].as_u64(), s["thumbnails_missing"].as_u64()),
        (Some(2), Some(1))
    );
    let html = std::fs::read_to_string(p.path().join("reports/r.html")).unwrap();
    assert!(html.contains("exceeds the limit of 1000000 pixels"));
    // Decoding 25 megapixels would take 75 MB for the pixels alone.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kb: u64 = stderr.lines().last().unwrap().trim().parse().unwrap();
    assert!(kb < 200_000, "peak RSS {kb} kB");
}

#[test]
fn report_shows_duplicate_groups_with_thumbnails() {
    let p = Project::new();
    let photo = image::open(fixtures().join("images/retina_wide.jpg"))
        .unwrap()
        .to_rgb8();
    let dir = p.path().join("imgs");
    std::fs::create_dir_all(&dir).unwrap();
    photo.save(dir.join("big.png")).unwrap();
    std::fs::copy(dir.join("big.png"), dir.join("copy.png")).unwrap();
    image::imageops::resize(
        &photo,
        photo.width() / 2,
        photo.height() / 2,
        image::imageops::FilterType::Triangle,
    )
    .save(dir.join("half.jpg"))
    .unwrap();
    p.copy(&fixtures().join("images/horse_cmyk.jpg"), "imgs/horse.jpg");
    p.write("datasets/d.yaml", "path: ../imgs\n");
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\ngoal: {metric: f1_micro, direction: maximize}\n",
    );
    let run = p.json(&["run", "e", "--json"], 0);
    let id = run["run_id"].as_str().unwrap().to_string();
    report(&p, &[&id, "--out", "reports/d.html"]);
    let html_path = p.path().join("reports/d.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("\"dupes\":[{"),
        "no duplicate groups in the data"
    );
    // --no-dupes leaves the section out.
    report(&p, &[&id, "--out", "reports/n.html", "--no-dupes"]);
    let plain = std::fs::read_to_string(p.path().join("reports/n.html")).unwrap();
    assert!(plain.contains("\"dupes\":null"));
    let Some((dom, console)) = render(&html_path) else {
        return;
    };
    assert!(console.is_empty(), "console output: {console:#?}");
    assert!(!dom.contains("data-errors=\""), "script errors: {dom}");
    let list = dom.split("id=\"dupes-list\"").nth(1).unwrap();
    let list = list.split("</section>").next().unwrap();
    assert_eq!(list.matches("class=\"dupe-group\"").count(), 1, "{list}");
    assert_eq!(list.matches("<img").count(), 3, "{list}");
    assert_eq!(list.matches("dupe keeper").count(), 1);
    assert!(
        list.contains("keep · big.png") || list.contains("keep · copy.png"),
        "{list}"
    );
    assert!(!list.contains("horse.jpg"));
}
