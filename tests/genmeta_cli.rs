//! Generation metadata through the commands: `inspect`, `scan`, and prompts as ground truth.

mod common;

use common::*;
use std::path::Path;

const FIELDS: &[&str] = &[
    "file",
    "generator",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "sampler",
    "scheduler",
    "cfg",
    "width",
    "height",
    "model",
    "model_hash",
    "loras",
    "vae",
    "clip_skip",
    "denoise",
    "pixel_width",
    "pixel_height",
];

fn genmeta(rel: &str) -> std::path::PathBuf {
    fixtures().join("genmeta").join(rel)
}

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

/// A copy of a PNG with a `tEXt` chunk `key` = `text` inserted after IHDR.
fn png_with_text(src: &Path, dest: &Path, key: &str, text: &str) {
    let bytes = std::fs::read(src).unwrap();
    let ihdr_end = 8 + 4 + 4 + 13 + 4;
    let mut data = key.as_bytes().to_vec();
    data.push(0);
    data.extend(text.as_bytes());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut typed = b"tEXt".to_vec();
    typed.extend(&data);
    chunk.extend(&typed);
    chunk.extend(crc32(&typed).to_be_bytes());
    let mut out = bytes[..ihdr_end].to_vec();
    out.extend(chunk);
    out.extend(&bytes[ihdr_end..]);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(dest, out).unwrap();
}

#[test]
fn inspect_json_has_exactly_the_documented_fields() {
    let p = Project::new();
    for rel in [
        "a1111/sd-webui.png",
        "comfyui/comfyui.png",
        "no-metadata/gimp.jpg",
    ] {
        p.copy(&genmeta(rel), &format!("imgs/{}", rel.replace('/', "_")));
    }
    let out = p.expect(&["inspect", "--json", "imgs"], 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    for obj in &lines {
        let o = obj.as_object().unwrap();
        for f in FIELDS {
            assert!(o.contains_key(*f), "missing {f} in {obj}");
        }
    }
    let by_file = |name: &str| {
        lines
            .iter()
            .find(|o| o["file"].as_str().unwrap().ends_with(name))
            .unwrap()
            .clone()
    };
    let a = by_file("a1111_sd-webui.png");
    assert_eq!(a["generator"], "a1111");
    assert_eq!(a["seed"], 3782896554u64);
    assert_eq!(a["model"], "waiIllustriousSDXL_v160");
    let c = by_file("comfyui_comfyui.png");
    assert_eq!(c["generator"], "comfyui");
    assert_eq!(c["seed"], 422847914351919u64);
    let g = by_file("no-metadata_gimp.jpg");
    assert!(g["generator"].is_null() && g["prompt"].is_null());
    assert_eq!(g["pixel_width"], 1024);

    // Human-readable form names the generator and the prompt.
    let text = p.expect(&["inspect", "imgs/a1111_sd-webui.png"], 0);
    assert!(
        text.contains("a1111") && text.contains("hatsune miku"),
        "{text}"
    );

    // A missing file: a clear error naming it, the others still printed, exit 1.
    let out = p.run(&[
        "inspect",
        "--json",
        "imgs/a1111_sd-webui.png",
        "imgs/nope.png",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.png"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn inspect_never_fails_on_truncated_or_garbage_files() {
    let p = Project::new();
    let full = std::fs::read(genmeta("comfyui/comfyui.png")).unwrap();
    for (i, cut) in [0usize, 7, 8, 33, 100, 5000, full.len() / 2]
        .iter()
        .enumerate()
    {
        p.write(&format!("bad/cut{i}.png"), "");
        std::fs::write(p.path().join(format!("bad/cut{i}.png")), &full[..*cut]).unwrap();
    }
    std::fs::write(
        p.path().join("bad/garbage.jpg"),
        b"\xff\xd8\xff\xe1\xff\xffExif\0\0MM",
    )
    .unwrap();
    let out = p.run(&["inspect", "--json", "bad"]);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "crashed: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scan_reports_new_deleted_moved_and_modified() {
    let p = Project::new();
    p.copy(&genmeta("a1111/sd-webui.png"), "imgs/a.png");
    p.copy(&genmeta("comfyui/comfyui.png"), "imgs/b.png");
    p.copy(&genmeta("no-metadata/gimp.jpg"), "imgs/c.jpg");
    p.copy(&fixtures().join("images/brick_tiny.png"), "imgs/d.png");
    p.write("datasets/d.yaml", "path: ../imgs\n");
    let first = p.json(&["scan", "d", "--json"], 0);
    assert_eq!(first["images"], 4);
    assert_eq!(first["new"], 4);
    assert_eq!(first["generators"]["a1111"], 1);
    assert_eq!(first["generators"]["comfyui"], 1);

    // Move a, delete c, modify d, add e.
    std::fs::create_dir_all(p.path().join("imgs/sub")).unwrap();
    std::fs::rename(p.path().join("imgs/a.png"), p.path().join("imgs/sub/a.png")).unwrap();
    std::fs::remove_file(p.path().join("imgs/c.jpg")).unwrap();
    p.copy(&fixtures().join("images/camera_alpha.png"), "imgs/d.png");
    p.copy(&genmeta("forge/forge.png"), "imgs/e.png");
    let second = p.json(&["scan", "d", "--json"], 0);
    let ch = &second["changes"];
    assert_eq!(ch["moved"], serde_json::json!([["a.png", "sub/a.png"]]));
    assert_eq!(ch["deleted"], serde_json::json!(["c.jpg"]));
    assert_eq!(ch["modified"], serde_json::json!(["d.png"]));
    assert_eq!(ch["new"], serde_json::json!(["e.png"]));
    assert_eq!(second["unchanged"], 1);
    assert_eq!(second["generators"]["forge"], 1);

    // Nothing changed since: all unchanged (hashes reused from the index).
    let text = p.expect(&["scan", "d"], 0);
    assert!(
        text.contains("0 new, 0 deleted, 0 moved, 0 modified, 4 unchanged"),
        "{text}"
    );
    // The human form lists the moves.
    std::fs::rename(
        p.path().join("imgs/e.png"),
        p.path().join("imgs/sub/e2.png"),
    )
    .unwrap();
    let text = p.expect(&["scan", "d"], 0);
    assert!(
        text.contains("0 new, 0 deleted, 1 moved, 0 modified, 3 unchanged"),
        "{text}"
    );
    assert!(text.contains("e.png → sub/e2.png"), "{text}");
}

#[test]
fn prompt_tags_are_ground_truth_and_negative_tags_a_false_positive_rate() {
    let p = Project::new();
    let src = fixtures().join("images/brick_tiny.png");
    png_with_text(
        &src,
        &p.path().join("imgs/one.png"),
        "parameters",
        "1girl, solo, (smile:1.2), [long hair], outdoors, <lora:detail tweaker:0.5>\n\
         Negative prompt: lowres, (sky:1.3), smile\n\
         Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, Model: toy",
    );
    png_with_text(
        &fixtures().join("images/camera_alpha.png"),
        &p.path().join("imgs/two.png"),
        "parameters",
        "sky, (cloud:0.05), 1girl\nSteps: 10, Sampler: DPM++ 2M, Seed: 7, Size: 64x64",
    );
    p.copy(&fixtures().join("images/grass_gray.png"), "imgs/three.png");
    p.write(
        "datasets/d.yaml",
        "path: ../imgs\nground_truth:\n  - source: prompt\n    negative: true\n",
    );
    p.wd_model("wd", "");
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: wd\n    thresholds: [0.5]\n",
    );
    let run = p.json(&["run", "e", "--json"], 0);
    let id = run["run_id"].as_str().unwrap().to_string();

    let rows = p.expect(
        &[
            "query",
            &id,
            "--json",
            "SELECT path, source, string_agg(tag, ',' ORDER BY tag) AS tags FROM ground_truth GROUP BY ALL ORDER BY path, source",
        ],
        0,
    );
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let get = |path: &str, source: &str| {
        rows.iter()
            .find(|r| r["path"] == path && r["source"] == source)
            .map(|r| r["tags"].as_str().unwrap().to_string())
    };
    // Weighted and de-emphasised tags count; the LoRA is not a tag; weight 0.05 < min_weight.
    assert_eq!(
        get("one.png", "prompt").as_deref(),
        Some("1girl,long hair,outdoors,smile,solo")
    );
    assert_eq!(get("two.png", "prompt").as_deref(), Some("1girl,sky"));
    // A negative tag that the prompt also asks for is not a must-not tag.
    assert_eq!(
        get("one.png", "prompt.negative").as_deref(),
        Some("lowres,sky")
    );
    assert_eq!(get("three.png", "prompt"), None, "no metadata: unlabelled");

    // Generation metadata is stored with each image, so runs can group by it.
    let meta = p.expect(
        &[
            "query",
            &id,
            "--json",
            "SELECT i.path, generator, sampler, seed, gen_width, l.lora, l.weight FROM images i LEFT JOIN image_loras l USING (path) ORDER BY i.path",
        ],
        0,
    );
    let meta: Vec<serde_json::Value> = meta
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(meta[0]["path"], "one.png");
    assert_eq!(meta[0]["generator"], "a1111");
    assert_eq!(meta[0]["sampler"], "Euler a");
    assert_eq!(meta[0]["seed"], 42);
    assert_eq!(meta[0]["gen_width"], 64);
    assert_eq!(meta[0]["lora"], "detail tweaker");
    assert_eq!(meta[0]["weight"], 0.5);
    assert!(meta[1]["generator"].is_null(), "three.png has no metadata");

    // The false-positive rate on negative tags, checked against the stored scores.
    let m = p.json(&["metrics", &id, "--json"], 0);
    let v = &m["variants"][0];
    assert_eq!(v["images"], 2, "only images with a prompt are scored");
    let neg = &v["negative"];
    assert_eq!(neg["pairs"], 2);
    let predicted = p.json(
        &[
            "query",
            &id,
            "--json",
            "SELECT count(*) AS n FROM outputs WHERE path = 'one.png' AND tag IN ('lowres', 'sky') AND score >= 0.5",
        ],
        0,
    );
    assert_eq!(neg["predicted"], predicted["n"]);
    let rate = neg["fp_rate"].as_f64().unwrap();
    assert!((rate - predicted["n"].as_f64().unwrap() / 2.0).abs() < 1e-12);
}

/// Text from files never drives the terminal: a `parameters` chunk holding escape sequences
/// (a colour change, a window-title change, a right-to-left override) is printed as visible
/// escapes by `inspect`, while `--json` keeps the exact text.
#[test]
fn terminal_escapes_from_files_are_shown_not_obeyed() {
    let p = Project::new();
    let img = p.path().join("evil.png");
    let params = "\u{1b}[31mred\u{1b}[0m girl, \u{1b}]0;pwned\u{7}\u{202e}gnp.exe, \u{9b}2J\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 8x8, Model: m";
    png_with_text(
        &fixtures().join("images/brick_tiny.png"),
        &img,
        "parameters",
        params,
    );
    let text = p.expect(&["inspect", img.to_str().unwrap()], 0);
    for raw in ['\u{1b}', '\u{7}', '\u{202e}', '\u{9b}'] {
        assert!(
            !text.contains(raw),
            "{raw:?} reached the terminal: {text:?}"
        );
    }
    assert!(text.contains("\\u{1b}[31mred\\u{1b}[0m girl"), "{text}");
    assert!(text.contains("\\u{202e}gnp.exe"), "{text}");
    let json = p.json(&["inspect", "--json", img.to_str().unwrap()], 0);
    assert_eq!(
        json["prompt"],
        "\u{1b}[31mred\u{1b}[0m girl, \u{1b}]0;pwned\u{7}\u{202e}gnp.exe, \u{9b}2J"
    );
}
