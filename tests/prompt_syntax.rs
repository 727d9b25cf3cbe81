//! Prompt → tags, from the user's side: hand-written prompts for every syntax rule in
//! `docs/tags.md` ("Prompts → tags").

use iw_lab::prompt::{
    attention, negative_tags, parse, parse_with_embeddings, Dialect, Parsed, PromptTag,
};

const EPS: f64 = 1e-9;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < EPS
}

fn tag<'a>(p: &'a Parsed, name: &str) -> &'a PromptTag {
    p.tag(name)
        .unwrap_or_else(|| panic!("no tag {name:?} in {:?}", p.tag_names()))
}

fn weight(p: &Parsed, name: &str) -> f64 {
    tag(p, name).weight
}

fn a1111(text: &str) -> Parsed {
    parse(text, Dialect::A1111)
}

fn runs(text: &str, dialect: Dialect) -> Vec<(String, f64)> {
    attention(text, dialect)
        .into_iter()
        .map(|r| (r.text, r.weight))
        .collect()
}

fn r(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs.iter().map(|(t, w)| (t.to_string(), *w)).collect()
}

// ---------------------------------------------------------------- A1111 attention (B1)

#[test]
fn a1111_doctests_exactly() {
    let d = Dialect::A1111;
    assert_eq!(runs("normal text", d), r(&[("normal text", 1.0)]));
    assert_eq!(
        runs("an (important) word", d),
        r(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)])
    );
    assert_eq!(runs("(unbalanced", d), r(&[("unbalanced", 1.1)]));
    assert_eq!(runs(r"\(literal\]", d), r(&[("(literal]", 1.0)]));
    assert_eq!(
        runs("(unnecessary)(parens)", d),
        r(&[("unnecessaryparens", 1.1)])
    );
    assert_eq!(
        runs("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", d),
        r(&[
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ])
    );
    assert_eq!(runs("", d), r(&[("", 1.0)]));
}

#[test]
fn a1111_doctest_prompt_as_tags() {
    let p = a1111("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).");
    // `a house on a hill` reads as a sentence; `sun` and `sky` are tags.
    assert_eq!(p.captions, vec!["a house on a hill"]);
    assert!(close(weight(&p, "sun"), 1.1));
    assert!(close(weight(&p, "sky"), 1.4641));
    let p = a1111("(((house:1.3)), [on], (hill:0.5), sun");
    assert!(close(weight(&p, "house"), 1.573));
    assert!(close(weight(&p, "on"), 1.0));
    assert!(close(weight(&p, "hill"), 0.55));
    assert!(close(weight(&p, "sun"), 1.1));
}

#[test]
fn a1111_nested_weights_multiply() {
    let p = a1111("((x)), [[y]], (((z:1.3))), (w:0.5), ((v:1.5))");
    assert!(close(weight(&p, "x"), 1.21));
    assert!(close(weight(&p, "y"), 1.0 / 1.1 / 1.1));
    assert!(close(weight(&p, "z"), 1.573));
    assert!(close(weight(&p, "w"), 0.5));
    assert!(close(weight(&p, "v"), 1.65));
    // A weight applies to every tag in its run.
    let p = a1111("(red hair, blue eyes:1.2), smile");
    assert!(close(weight(&p, "red hair"), 1.2));
    assert!(close(weight(&p, "blue eyes"), 1.2));
    assert!(close(weight(&p, "smile"), 1.0));
}

#[test]
fn a1111_escapes_and_literals() {
    let p = a1111(r"artist \(style\), \[bracket\], back\\slash, lone\backslash");
    assert_eq!(
        p.tag_names(),
        vec![
            "artist (style)",
            "[bracket]",
            r"back\slash",
            "lonebackslash"
        ]
    );
    // Unmatched closers and stray colons are text.
    let p = a1111("a), b], rating:general, score:9_up");
    assert_eq!(
        p.tag_names(),
        vec!["a)", "b]", "rating:general", "score:9 up"]
    );
    for t in &p.tags {
        assert!(close(t.weight, 1.0));
    }
    // Unbalanced openers apply to the end of the prompt.
    let p = a1111("x, (y, [z");
    assert!(close(weight(&p, "x"), 1.0));
    assert!(close(weight(&p, "y"), 1.1));
    assert!(close(weight(&p, "z"), 1.0));
    // `(x:1.2.3)`: A1111 raises; here the `:` stays text and `)` is an ordinary ×1.1.
    let p = a1111("(x:1.2.3), y");
    assert!(close(weight(&p, "x:1.2.3"), 1.1));
    assert!(close(weight(&p, "y"), 1.0));
}

#[test]
fn a1111_break() {
    let p = a1111("1girl BREAK solo, BREAKfast, break");
    assert_eq!(p.tag_names(), vec!["1girl", "solo", "breakfast", "break"]);
    assert_eq!(p.breaks, 1);
    let runs = attention("a BREAK b", Dialect::A1111);
    assert!(runs[1].is_break && runs[1].text == "BREAK" && runs[1].weight == -1.0);
}

#[test]
fn runs_across_a_tag_become_one_tag() {
    // No comma: one tag; its weight is the one carrying most characters.
    let p = a1111("red (long) hair, x [y] zzz");
    assert_eq!(p.tag_names(), vec!["red long hair", "x y zzz"]);
    assert!(close(weight(&p, "red long hair"), 1.0));
    let p = a1111("very (long hair:1.2)");
    assert!(close(weight(&p, "very long hair"), 1.2));
    // Two or more emphasis groups in a comma-free run are separate tags.
    let p = a1111("(solo) girl (flat chest:0.9), (best quality) (night:1.3) sky");
    assert_eq!(
        p.tag_names(),
        vec!["solo", "girl", "flat chest", "best quality", "night", "sky"]
    );
    assert!(close(weight(&p, "flat chest"), 0.9));
    assert!(close(weight(&p, "night"), 1.3));
}

#[test]
fn duplicates_keep_the_highest_weight() {
    let p = a1111("Long_Hair, (long hair:1.3), long  hair, [long hair]");
    assert_eq!(p.tag_names(), vec!["long hair"]);
    assert!(close(weight(&p, "long hair"), 1.3));
}

// --------------------------------------------------- A1111 editing, AND, comments (B2)

#[test]
fn scheduling_both_sides_asked_for() {
    let p = a1111("1girl, [cat ears:fox ears:0.5], smile");
    assert!(!tag(&p, "1girl").scheduled && !tag(&p, "smile").scheduled);
    assert!(tag(&p, "cat ears").scheduled && tag(&p, "fox ears").scheduled);
    let p = a1111("a, [hat:10], [scarf::0.7]");
    assert!(tag(&p, "hat").scheduled);
    assert!(tag(&p, "scarf").scheduled);
    // Emphasis around an edit keeps its weight.
    let p = a1111("([cat:dog:0.5]:1.3)");
    assert!(close(weight(&p, "cat"), 1.3) && close(weight(&p, "dog"), 1.3));
}

#[test]
fn scheduling_nested() {
    // The edit joins its neighbours, as A1111's own prompts do: abe, ace, ade.
    let p = a1111("a[b:[c:d:2]:1]e");
    assert_eq!(p.tag_names(), vec!["abe", "ace", "ade"]);
    assert!(p.tags.iter().all(|t| t.scheduled));
    let p = a1111("a, [b:[c:d:2]:1], e");
    assert_eq!(p.tag_names(), vec!["a", "b", "e", "c", "d"]);
    for t in ["b", "c", "d"] {
        assert!(tag(&p, t).scheduled, "{t}");
    }
    assert!(!tag(&p, "a").scheduled && !tag(&p, "e").scheduled);
}

#[test]
fn alternation() {
    let p = a1111("[fe|]male, [cat|dog|fox] ears");
    for t in ["female", "male", "cat ears", "dog ears", "fox ears"] {
        assert!(tag(&p, t).alternating, "{t}");
        assert!(!tag(&p, t).scheduled, "{t}");
    }
}

#[test]
fn failed_editing_grammar_is_literal() {
    // `a [unbalanced`: the editing grammar fails; attention still applies.
    let p = a1111("a, [unbalanced");
    assert!(close(weight(&p, "unbalanced"), 1.0 / 1.1));
    // A `|` outside an alternation fails the whole prompt's editing.
    let p = a1111("x | y, [b:c:0.5]");
    assert!(p.tag("x | y").is_some());
    assert!(p.tag("b:c:0.5").is_some());
    assert!(p.tags.iter().all(|t| !t.scheduled));
}

#[test]
fn and_sub_prompts_with_weights() {
    let p = a1111("a cat :1.2 AND a dog");
    assert_eq!(p.and_weights, vec![1.2, 1.0]);
    assert_eq!(p.captions, vec!["a cat", "a dog"]);
    let p = a1111("cat, (fur:1.1) :1.5 AND dog :0.5 AND ANDROID, sand");
    assert_eq!(p.and_weights, vec![1.5, 0.5, 1.0]);
    assert!(close(weight(&p, "cat"), 1.5));
    assert!(close(weight(&p, "fur"), 1.65));
    assert!(close(weight(&p, "dog"), 0.5));
    assert!(p.tag("android").is_some() && p.tag("sand").is_some());
    // `and` is not `AND`.
    let p = a1111("black and white");
    assert!(p.and_weights.is_empty());
    assert_eq!(p.tag_names(), vec!["black and white"]);
}

#[test]
fn comments() {
    let p = a1111("# style block\n1girl, solo # main subject\nsmile, #テスト, C#");
    assert_eq!(
        p.tag_names(),
        vec!["1girl", "solo", "smile", "#テスト", "c#"]
    );
    // Other dialects have no comments.
    let p = parse("1girl # x", Dialect::Novelai);
    assert_eq!(p.tag_names(), vec!["1girl # x"]);
}

// ------------------------------------------------------------------- extra networks

#[test]
fn loras_are_not_tags() {
    let p = a1111(
        "1girl, <lora:my lora v2.1:-0.5>, <lora:detail.tweaker:0.8:0.5>, <lyco:ロラ:1>, \
         <lora:x:te=0.4:unet=0.9:dyn=8>, <lora:plain>, <hypernet:hn:0.6>, smile",
    );
    assert_eq!(p.tag_names(), vec!["1girl", "smile"]);
    let l: Vec<(&str, Option<f64>, Option<f64>)> = p
        .loras
        .iter()
        .map(|l| (l.name.as_str(), l.weight, l.clip_weight))
        .collect();
    assert_eq!(
        l,
        vec![
            ("my lora v2.1", Some(-0.5), None),
            ("detail.tweaker", Some(0.5), Some(0.8)),
            ("ロラ", Some(1.0), None),
            ("x", Some(0.9), Some(0.4)),
            ("plain", Some(1.0), None),
            ("hn", Some(0.6), None),
        ]
    );
}

#[test]
fn lora_inside_a_tag_leaves_the_tag() {
    let p = a1111("masterpiece <lora:NoobV065sHyperDmd:1>, best quality");
    assert_eq!(p.tag_names(), vec!["masterpiece", "best quality"]);
    assert_eq!(p.loras.len(), 1);
}

#[test]
fn comfyui_lora_tags_are_model_then_clip() {
    let p = parse("<lora:style:0.8:0.5> 1girl", Dialect::Comfyui);
    assert_eq!(
        (p.loras[0].weight, p.loras[0].clip_weight),
        (Some(0.8), Some(0.5))
    );
}

#[test]
fn swarm_templates_are_removed() {
    let p = parse(
        "<setvar[q]:photo, absurdres><break>\n<random:red|blue> cat, <wildcard:animals>, \
         <alternate:day, night> sky, <embed:goodstyle.safetensors> x, <o>_<o>",
        Dialect::Comfyui,
    );
    assert_eq!(p.tag_names(), vec!["cat", "sky", "x", "<o>_<o>"]);
    assert_eq!(p.templates.len(), 4);
    assert_eq!(p.embeddings, vec!["goodstyle"]);
    assert_eq!(p.breaks, 1);
}

// ----------------------------------------------------------------------- embeddings

#[test]
fn comfyui_embeddings() {
    let p = parse(
        "photo, embedding:SDA768.pt, (embedding:bad_prompt:1.2), style of embedding:x girl",
        Dialect::Comfyui,
    );
    assert_eq!(p.embeddings, vec!["SDA768", "bad_prompt", "x"]);
    assert_eq!(p.tag_names(), vec!["photo", "style of girl"]);
}

#[test]
fn known_embeddings_from_ti_hashes() {
    let neg = "EasyNegative, (worst quality:1.4), bad-hands-5";
    let p = parse_with_embeddings(neg, Dialect::A1111, &["EasyNegative", "bad-hands-5.pt"]);
    assert_eq!(p.tag_names(), vec!["worst quality"]);
    assert_eq!(p.embeddings, vec!["EasyNegative", "bad-hands-5"]);
    let p = parse(neg, Dialect::A1111);
    assert!(p.tag("easynegative").is_some());
}

// ---------------------------------------------------------------------- ComfyUI (B3)

#[test]
fn comfyui_weights_set_instead_of_multiplying() {
    let c = parse("((x:1.5)), ((y)), [z], (p (q:0.5) r:1.2)", Dialect::Comfyui);
    let a = a1111("((x:1.5)), ((y)), [z]");
    assert!(close(weight(&c, "x"), 1.5));
    assert!(close(weight(&a, "x"), 1.65));
    assert!(close(weight(&c, "y"), 1.21));
    assert!(c.tag("[z]").is_some());
    assert!(close(weight(&a, "z"), 1.0 / 1.1));
    // `p q r` is one tag: `p ` and ` r` (1.2) outweigh `q` (0.5).
    assert!(close(weight(&c, "p q r"), 1.2));
}

#[test]
fn comfyui_escapes_and_unbalanced() {
    let p = parse(r"artist \(style\), (unbalanced, x", Dialect::Comfyui);
    assert_eq!(p.tag_names(), vec!["artist (style)", "(unbalanced", "x"]);
    assert!(close(weight(&p, "(unbalanced"), 1.0));
}

// ---------------------------------------------------------------------- NovelAI (B4)

#[test]
fn novelai_braces() {
    let p = parse("{{x}}, [y], {z, (paren)", Dialect::Novelai);
    assert!(close(weight(&p, "x"), 1.1025));
    assert!(close(weight(&p, "y"), 1.0 / 1.05));
    assert!(close(weight(&p, "z"), 1.05));
    assert!(close(weight(&p, "(paren)"), 1.05));
}

#[test]
fn novelai_numeric_emphasis() {
    let p = parse(
        "1girl, solo, hatsune miku, #テスト, very aesthetic, masterpiece, no text, -0.8::feet::, rating:general",
        Dialect::Novelai,
    );
    assert!(close(weight(&p, "feet"), -0.8));
    assert!(p.tag("#テスト").is_some());
    assert!(p.tag("rating:general").is_some());
    let positive: Vec<&str> = p
        .positive_tags(0.0)
        .iter()
        .map(|t| t.tag.as_str())
        .collect();
    assert!(!positive.contains(&"feet") && positive.contains(&"1girl"));
    let p = parse("1.3::1girl::, 1.2::red hair, blue eyes", Dialect::Novelai);
    assert!(close(weight(&p, "1girl"), 1.3));
    assert!(close(weight(&p, "red hair"), 1.2));
    assert!(close(weight(&p, "blue eyes"), 1.2));
    let p = parse("{1.5::x::}, 0::y::", Dialect::Novelai);
    assert!(close(weight(&p, "x"), 1.575));
    assert!(p.positive_tags(0.0).iter().all(|t| t.tag != "y"));
}

// ------------------------------------------------------------------------ Compel (B4)

#[test]
fn compel_weights() {
    let p = parse(
        "grainy+, photo, compressed jpg+, noisy++, blurry--, x-shaped pupils",
        Dialect::Compel,
    );
    assert!(close(weight(&p, "grainy"), 1.1));
    assert!(close(weight(&p, "noisy"), 1.21));
    assert!(close(weight(&p, "blurry"), 0.81));
    assert!(close(weight(&p, "photo"), 1.0));
    assert!(p.tag("x-shaped pupils").is_some());
    let p = parse(
        "(picking apricots)1.25, (tree, (leaf)1.3)1.1, (sky)+, (plain)",
        Dialect::Compel,
    );
    assert!(close(weight(&p, "picking apricots"), 1.25));
    assert!(close(weight(&p, "leaf"), 1.43));
    assert!(close(weight(&p, "tree"), 1.1));
    assert!(close(weight(&p, "sky"), 1.1));
    assert!(close(weight(&p, "plain"), 1.0));
}

#[test]
fn compel_blend_and_conjunction() {
    let p = parse(
        r#"("spider man", "robot mech").blend(0.7, 0.3)"#,
        Dialect::Compel,
    );
    assert!(close(weight(&p, "spider man"), 0.7));
    assert!(close(weight(&p, "robot mech"), 0.3));
    let p = parse(r#"("1girl, solo", "night sky").and()"#, Dialect::Compel);
    assert_eq!(p.tag_names(), vec!["1girl", "solo", "night sky"]);
    let p = parse(r"a cat withLora(fluffy, 0.7), \(escaped\)", Dialect::Compel);
    assert_eq!(p.loras[0].name, "fluffy");
    assert_eq!(p.loras[0].weight, Some(0.7));
    assert_eq!(p.tag_names(), vec!["(escaped)"]);
    assert_eq!(p.captions, vec!["a cat"]);
}

// ------------------------------------------------------------- captions vs tag lists

#[test]
fn tag_lists_stay_tags() {
    let p = a1111(
        "1girl, solo, hatsune miku, long hair, masterpiece, looking at viewer, depth of field",
    );
    assert_eq!(p.tags.len(), 7);
    assert!(p.captions.is_empty());
}

#[test]
fn sentences_become_captions() {
    for text in [
        "Cowboy holding a pole of road sign \"Flux.1 Dev\". 12B is handwritten on a corner of the sign. Golden Gate bridge on the background.",
        "a bottle with a beautiful rainbow galaxy inside it on top of a wooden table",
        "photo of a duck",
        "初音ミクのポートレート。美麗な2Dアニメイラスト。白背景。",
    ] {
        let p = a1111(text);
        assert!(p.tags.is_empty(), "{text}: {:?}", p.tag_names());
        assert_eq!(p.captions.len(), 1, "{text}");
    }
    // A sentence with commas stays one caption; tags beside it stay tags.
    let p =
        a1111("masterpiece, A girl sits on a bench, reading a book, while the sun sets.\n1girl");
    assert_eq!(p.tag_names(), vec!["masterpiece", "1girl"]);
    assert_eq!(
        p.captions,
        vec!["A girl sits on a bench, reading a book, while the sun sets."]
    );
    // Short period-separated phrases are tags.
    let p = a1111("digital artwork, oil painting. painterly brushstrokes");
    assert_eq!(
        p.tag_names(),
        vec!["digital artwork", "oil painting", "painterly brushstrokes"]
    );
}

#[test]
fn json_prompt_is_one_caption() {
    let json = "{\n\"short_description\": \"A studio shot, red letters\",\n\"objects\": []\n}";
    let p = a1111(json);
    assert!(p.tags.is_empty());
    assert_eq!(p.captions, vec![json]);
}

#[test]
fn negative_prompts_parse_the_same_way() {
    let n = negative_tags("(worst quality:1.4), lowres, <lora:neg:1>", Dialect::A1111);
    let names: Vec<&str> = n.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(names, vec!["worst quality", "lowres"]);
}

#[test]
fn dialect_for_generator() {
    assert_eq!(Dialect::for_generator("swarmui"), Dialect::Comfyui);
    assert_eq!(Dialect::for_generator("novelai"), Dialect::Novelai);
    assert_eq!(Dialect::for_generator("invokeai"), Dialect::Compel);
    assert_eq!(Dialect::for_generator("forge"), Dialect::A1111);
}

// ------------------------------------------------------------------------ robustness

#[test]
fn random_strings_never_panic() {
    // The issue's alphabet plus the other syntax characters and keywords.
    let alphabet: Vec<char> = "()[]{}:|\\,<>abc 0.5-+\"#\nBREAKAND".chars().collect();
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let len = (next() % 48) as usize;
        let s: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        for d in [
            Dialect::A1111,
            Dialect::Comfyui,
            Dialect::Novelai,
            Dialect::Compel,
        ] {
            let p = parse(&s, d);
            assert!(
                p.tags
                    .iter()
                    .all(|t| !t.tag.is_empty() && t.weight.is_finite()),
                "{s:?}"
            );
            let _ = iw_lab::prompt::attention(&s, d);
        }
    }
}

#[test]
fn pathological_inputs_finish() {
    let deep = format!("{}x{}", "(".repeat(100_000), ")".repeat(100_000));
    for d in [
        Dialect::A1111,
        Dialect::Comfyui,
        Dialect::Novelai,
        Dialect::Compel,
    ] {
        let p = parse(&deep, d);
        assert!(p.tag("x").is_some() || !p.tags.is_empty() || !p.captions.is_empty());
    }
    let nested_edits = "[a:".repeat(5_000) + "b" + &":1]".repeat(5_000);
    let _ = a1111(&nested_edits);
    let long = "tag, (weighted:1.2), [x:y:0.5], ".repeat(30_000);
    let p = a1111(&long);
    assert_eq!(p.tags.len(), 4);
}

/// The rows of the examples table in `docs/tags.md` not covered above.
#[test]
fn docs_table_examples() {
    let p = a1111("professional photo of young woman, long legs, wearing a bikini top");
    assert_eq!(p.tag_names(), vec!["long legs"]);
    assert_eq!(
        p.captions,
        vec!["professional photo of young woman", "wearing a bikini top"]
    );
    let p = parse(r"[z], \(x\)", Dialect::Comfyui);
    assert_eq!(p.tag_names(), vec!["[z]", "(x)"]);
    let p = parse("<random:red|blue> cat", Dialect::Comfyui);
    assert_eq!(p.tag_names(), vec!["cat"]);
    assert_eq!(p.templates, vec!["<random:red|blue>"]);
    let p = a1111("cat, fur :1.5 AND dog :0.5");
    assert_eq!(p.and_weights, vec![1.5, 0.5]);
    assert!(close(weight(&p, "fur"), 1.5) && close(weight(&p, "dog"), 0.5));
    let p = a1111("<lora:x:0.8:0.5>");
    assert_eq!(
        (p.loras[0].weight, p.loras[0].clip_weight),
        (Some(0.5), Some(0.8))
    );
    let p = parse("photo, (embedding:bad_prompt:1.2)", Dialect::Comfyui);
    assert_eq!(p.tag_names(), vec!["photo"]);
    assert_eq!(p.embeddings, vec!["bad_prompt"]);
    let p = a1111("a), rating:general");
    assert_eq!(p.tag_names(), vec!["a)", "rating:general"]);
    let p = a1111("1girl, solo, hatsune miku, long hair");
    assert_eq!(p.tags.len(), 4);
}
