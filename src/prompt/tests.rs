//! Pipeline tests (the dialect parsers have their own next to them).

use super::*;

fn tags(p: &Parsed) -> Vec<(&str, f64)> {
    p.tags
        .iter()
        .map(|t| (t.tag.as_str(), (t.weight * 1e6).round() / 1e6))
        .collect()
}

#[test]
fn plain_tag_list() {
    let p = parse(
        "general, masterpiece, best quality, amazing quality, \n1girl, solo, hatsune miku, テスト",
        Dialect::A1111,
    );
    assert_eq!(
        p.tag_names(),
        vec![
            "general",
            "masterpiece",
            "best quality",
            "amazing quality",
            "1girl",
            "solo",
            "hatsune miku",
            "テスト"
        ]
    );
    assert!(p.captions.is_empty());
}

#[test]
fn json_prompt_is_a_caption() {
    let p = parse(
        "{\n\"short_description\": \"A studio shot\"}",
        Dialect::A1111,
    );
    assert!(p.tags.is_empty());
    assert_eq!(p.captions.len(), 1);
    // NovelAI braces are not JSON.
    let p = parse("{{masterpiece}}, 1girl", Dialect::Novelai);
    assert_eq!(tags(&p), vec![("masterpiece", 1.1025), ("1girl", 1.0)]);
}

#[test]
fn dedup_keeps_max_weight_and_unconditional_flags() {
    let p = parse("cat, (cat:1.3), [cat:dog:5]", Dialect::A1111);
    let cat = p.tag("cat").unwrap();
    assert_eq!(cat.weight, 1.3);
    assert!(!cat.scheduled);
    assert!(p.tag("dog").unwrap().scheduled);
}

#[test]
fn known_embeddings_move() {
    let p = parse_with_embeddings(
        "EasyNegative, (worst quality:1.4), embedding:bad_hands.pt",
        Dialect::A1111,
        &["EasyNegative.safetensors"],
    );
    assert_eq!(p.tag_names(), vec!["worst quality"]);
    assert_eq!(p.embeddings, vec!["bad_hands", "EasyNegative"]);
}

#[test]
fn positive_tags_filter() {
    let p = parse("1girl, -0.8::feet::, [[[x]]]", Dialect::Novelai);
    let pos: Vec<&str> = p
        .positive_tags(0.0)
        .iter()
        .map(|t| t.tag.as_str())
        .collect();
    assert_eq!(pos, vec!["1girl", "x"]);
    let strong: Vec<&str> = p
        .positive_tags(0.9)
        .iter()
        .map(|t| t.tag.as_str())
        .collect();
    assert_eq!(strong, vec!["1girl"]);
    assert!(!p.tag("feet").unwrap().is_positive(0.0));
}

#[test]
fn empty_and_whitespace() {
    for d in [
        Dialect::A1111,
        Dialect::Comfyui,
        Dialect::Novelai,
        Dialect::Compel,
    ] {
        assert_eq!(parse("", d), Parsed::default());
        assert_eq!(parse(" \n ,, ", d).tags.len(), 0);
        assert_eq!(attention("", d).len(), 1);
    }
}

#[test]
fn huge_inputs_are_fast_enough() {
    let started = std::time::Instant::now();
    let big = "(a, [b:c:0.5], {d}, e+, <lora:x:1>, ".repeat(20_000);
    for d in [
        Dialect::A1111,
        Dialect::Comfyui,
        Dialect::Novelai,
        Dialect::Compel,
    ] {
        let p = parse(&big, d);
        assert!(!p.tags.is_empty());
    }
    let deep = "(".repeat(50_000) + &"[".repeat(50_000) + "x";
    for d in [
        Dialect::A1111,
        Dialect::Comfyui,
        Dialect::Novelai,
        Dialect::Compel,
    ] {
        let _ = parse(&deep, d);
    }
    let angles = "<a:".repeat(50_000);
    let _ = parse(&angles, Dialect::Comfyui);
    assert!(started.elapsed().as_secs() < 60);
}
