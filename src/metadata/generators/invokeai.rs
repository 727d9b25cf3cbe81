//! InvokeAI, three eras: ≥3 `invokeai_metadata` JSON (core metadata; `invokeai_graph` and
//! `invokeai_workflow` beside it), 2.x `sd-metadata` JSON, 1.x `Dream` command line.

use super::util::{
    nonempty_text, num_f64, num_u32, param_text, parse_f64, parse_json_object, parse_u64, seed_of,
    text_of, Ctx,
};
use crate::metadata::{GenMeta, Lora};
use regex::Regex;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Which era the carriers are from, if InvokeAI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    V3,
    V2,
    V1,
}

pub fn detect(ctx: &Ctx) -> Option<Era> {
    if ["invokeai_metadata", "invokeai_graph", "invokeai_workflow"]
        .iter()
        .any(|k| ctx.has(k))
    {
        Some(Era::V3)
    } else if ctx.has("sd-metadata") {
        Some(Era::V2)
    } else if ctx.has("Dream") {
        Some(Era::V1)
    } else {
        None
    }
}

pub fn parse(ctx: &mut Ctx, era: Era) -> GenMeta {
    let mut m = match era {
        Era::V3 => parse_v3(ctx),
        Era::V2 => parse_v2(ctx),
        Era::V1 => {
            let text = ctx.take("Dream").unwrap_or("");
            parse_dream(text)
        }
    };
    m.generator = Some("invokeai".into());
    m
}

fn parse_v3(ctx: &mut Ctx) -> GenMeta {
    let mut m = GenMeta::default();
    let meta_text = ctx.take("invokeai_metadata");
    let graph_text = ctx.take("invokeai_graph");
    ctx.take("invokeai_workflow");
    let mut meta = meta_text.and_then(parse_json_object);
    if meta_text.is_some() && meta.is_none() {
        m.warnings
            .push("invokeai_metadata is not a JSON object".into());
    }
    if meta.is_none() {
        // Only the execution graph: its `core_metadata` node holds the same record.
        meta = graph_text
            .and_then(parse_json_object)
            .and_then(|g| core_metadata_node(&g));
    }
    let Some(Value::Object(d)) = meta else {
        return m;
    };
    m.prompt = d.get("positive_prompt").and_then(text_of);
    m.negative_prompt = d.get("negative_prompt").and_then(text_of);
    m.width = d.get("width").and_then(num_u32);
    m.height = d.get("height").and_then(num_u32);
    m.seed = d.get("seed").and_then(seed_of);
    m.cfg = d.get("cfg_scale").and_then(num_f64);
    m.steps = d.get("steps").and_then(num_u32);
    // InvokeAI's `scheduler` holds the sampler (`euler_a`, `dpmpp_2m_k`, ...).
    m.sampler = d.get("scheduler").and_then(nonempty_text);
    m.clip_skip = d.get("clip_skip").and_then(num_u32).filter(|&c| c > 0);
    m.denoise = d.get("strength").and_then(num_f64);
    match d.get("model") {
        Some(Value::Object(model)) => {
            m.model = model_name(model);
            m.model_hash = model.get("hash").and_then(nonempty_text);
        }
        Some(v) => m.model = nonempty_text(v),
        None => {}
    }
    m.vae = match d.get("vae") {
        Some(Value::Object(vae)) => model_name(vae),
        Some(v) => nonempty_text(v),
        None => None,
    };
    m.loras = Some(v3_loras(&d));
    const MAPPED: &[&str] = &[
        "positive_prompt",
        "negative_prompt",
        "width",
        "height",
        "seed",
        "cfg_scale",
        "steps",
        "scheduler",
        "clip_skip",
        "strength",
        "model",
        "vae",
        "loras",
    ];
    add_params(&mut m, &d, MAPPED, "");
    m
}

/// The `loras` of a ≥3 record: each a model (an object or a name) with a weight.
fn v3_loras(d: &Map<String, Value>) -> Vec<Lora> {
    d.get("loras")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|l| {
                    let inner = l.get("model").or_else(|| l.get("lora"));
                    let name = match inner {
                        Some(Value::Object(o)) => model_name(o),
                        Some(v) => nonempty_text(v),
                        None => None,
                    }?;
                    Some(Lora {
                        name,
                        weight: l.get("weight").and_then(num_f64),
                        hash: inner.and_then(|i| i.get("hash")).and_then(nonempty_text),
                        ..Lora::default()
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn model_name(o: &Map<String, Value>) -> Option<String> {
    o.get("name")
        .or_else(|| o.get("model_name"))
        .and_then(nonempty_text)
}

/// The `core_metadata` node of an `invokeai_graph` (`nodes` a map or a list).
fn core_metadata_node(graph: &Value) -> Option<Value> {
    let nodes = graph.get("nodes")?;
    let is_core = |n: &&Value| n.get("type").and_then(Value::as_str) == Some("core_metadata");
    match nodes {
        Value::Object(map) => map.values().find(is_core).cloned(),
        Value::Array(list) => list.iter().find(is_core).cloned(),
        _ => None,
    }
}

fn add_params(m: &mut GenMeta, d: &Map<String, Value>, mapped: &[&str], prefix: &str) {
    for (k, v) in d {
        if mapped.contains(&k.as_str()) {
            continue;
        }
        if let Some(t) = param_text(v) {
            m.params.entry(format!("{prefix}{k}")).or_insert(t);
        }
    }
}

fn parse_v2(ctx: &mut Ctx) -> GenMeta {
    let text = ctx.take("sd-metadata").unwrap_or("");
    let dream = ctx.take("Dream");
    let Some(Value::Object(d)) = parse_json_object(text) else {
        let mut m = dream.map(parse_dream).unwrap_or_default();
        m.warnings
            .push("sd-metadata is not a JSON object; read the Dream line".into());
        return m;
    };
    let mut m = GenMeta {
        model: d.get("model_weights").and_then(nonempty_text),
        model_hash: d.get("model_hash").and_then(nonempty_text),
        ..GenMeta::default()
    };
    let empty = Map::new();
    let image = d.get("image").and_then(Value::as_object).unwrap_or(&empty);
    let raw_prompt = match image.get("prompt") {
        Some(Value::Array(parts)) => {
            let texts: Vec<String> = parts
                .iter()
                .filter_map(|p| p.get("prompt").and_then(text_of).or_else(|| text_of(p)))
                .collect();
            Some(texts.join(", "))
        }
        Some(v) => text_of(v),
        None => None,
    };
    if let Some(raw) = raw_prompt {
        let (pos, neg) = split_negative(&raw);
        m.loras = Some(with_lora_calls(&pos));
        m.prompt = Some(pos);
        m.negative_prompt = Some(neg);
    } else {
        m.loras = Some(Vec::new());
    }
    m.steps = image.get("steps").and_then(num_u32);
    m.cfg = image.get("cfg_scale").and_then(num_f64);
    m.seed = image.get("seed").and_then(seed_of);
    m.sampler = image.get("sampler").and_then(nonempty_text);
    m.width = image.get("width").and_then(num_u32);
    m.height = image.get("height").and_then(num_u32);
    let img2img = image
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t == "img2img" || t == "inpaint");
    if img2img {
        m.denoise = image.get("strength").and_then(num_f64);
    }
    add_params(&mut m, &d, &["model_weights", "model_hash", "image"], "");
    let mut mapped = vec![
        "prompt",
        "steps",
        "cfg_scale",
        "seed",
        "sampler",
        "width",
        "height",
    ];
    if img2img {
        mapped.push("strength");
    }
    add_params(&mut m, image, &mapped, "");
    m
}

/// InvokeAI 2.3's `withLora(name, weight)` prompt calls.
fn with_lora_calls(prompt: &str) -> Vec<Lora> {
    static CALL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"withLora\(\s*([^,)]+?)\s*(?:,\s*([-+]?[\d.]+)\s*)?\)").unwrap()
    });
    CALL.captures_iter(prompt)
        .map(|c| Lora {
            name: c[1].trim_matches(['"', '\'']).to_string(),
            weight: c.get(2).and_then(|w| parse_f64(w.as_str())),
            ..Lora::default()
        })
        .collect()
}

/// Splits InvokeAI 1.x/2.x prompt text into positive and negative parts: top-level `[...]`
/// segments are negative. Each part's segments are trimmed of spaces and commas and joined with
/// `, `. `\[` and `\]` stay literal.
pub fn split_negative(prompt: &str) -> (String, String) {
    let mut pos: Vec<String> = Vec::new();
    let mut neg: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut chars = prompt.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '[' => {
                if depth == 0 {
                    pos.push(std::mem::take(&mut cur));
                } else {
                    cur.push(c);
                }
                depth += 1;
            }
            ']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    neg.push(std::mem::take(&mut cur));
                } else {
                    cur.push(c);
                }
            }
            _ => cur.push(c),
        }
    }
    if depth > 0 {
        neg.push(cur);
    } else {
        pos.push(cur);
    }
    let join = |parts: Vec<String>| {
        parts
            .iter()
            .map(|p| p.trim_matches(|c: char| c == ',' || c.is_whitespace()))
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    };
    (join(pos), join(neg))
}

/// InvokeAI 1.x / dream.py: `"prompt [negative]" -s 50 -S 2980747362 -W 512 -H 768 -C 5 -A
/// k_lms -G 0.9 -U 4 0.95`.
pub fn parse_dream(text: &str) -> GenMeta {
    let t = text.trim();
    let (raw_prompt, rest) = if let Some(body) = t.strip_prefix('"') {
        // The quoted prompt; `\"` inside is an escaped quote.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            }
        }
        match end {
            Some(e) => (body[..e].replace("\\\"", "\""), &body[e + 1..]),
            None => (body.to_string(), ""),
        }
    } else {
        static FLAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s-{1,2}[A-Za-z]").unwrap());
        match FLAG.find(t) {
            Some(f) => (t[..f.start()].to_string(), &t[f.start()..]),
            None => (t.to_string(), ""),
        }
    };
    let (pos, neg) = split_negative(&raw_prompt);
    let mut m = GenMeta {
        loras: Some(with_lora_calls(&pos)),
        prompt: Some(pos),
        negative_prompt: Some(neg),
        ..GenMeta::default()
    };
    let is_flag = |s: &str| {
        let body = s.trim_start_matches('-');
        s.starts_with('-') && body.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    };
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let mut i = 0;
    while i < tokens.len() {
        let flag = tokens[i];
        i += 1;
        if !is_flag(flag) {
            continue;
        }
        let start = i;
        while i < tokens.len() && !is_flag(tokens[i]) {
            i += 1;
        }
        let value = tokens[start..i].join(" ");
        let first = tokens
            .get(start)
            .copied()
            .filter(|_| start < i)
            .unwrap_or("");
        match flag {
            "-s" | "--steps" => m.steps = parse_u64(first).and_then(|n| u32::try_from(n).ok()),
            "-S" | "--seed" => m.seed = parse_u64(first),
            "-W" | "--width" => m.width = parse_u64(first).and_then(|n| u32::try_from(n).ok()),
            "-H" | "--height" => m.height = parse_u64(first).and_then(|n| u32::try_from(n).ok()),
            "-C" | "--cfg_scale" => m.cfg = parse_f64(first),
            "-A" | "--sampler" => m.sampler = Some(first.to_string()).filter(|s| !s.is_empty()),
            "-f" | "--strength" => m.denoise = parse_f64(first),
            "-m" | "--model" => m.model = Some(first.to_string()).filter(|s| !s.is_empty()),
            _ => {
                m.params.insert(flag.to_string(), value);
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Carrier, Carriers};

    #[test]
    fn dream_line() {
        let m = parse_dream(
            r#""a woman, (skin), low contrast [rendering, glowing eyes, skinny]" -s 50 -S 2980747362 -W 512 -H 768 -C 5 -A k_lms -G 0.9 -cf 0.75 -U 4 0.95"#,
        );
        assert_eq!(m.prompt.as_deref(), Some("a woman, (skin), low contrast"));
        assert_eq!(
            m.negative_prompt.as_deref(),
            Some("rendering, glowing eyes, skinny")
        );
        assert_eq!(m.steps, Some(50));
        assert_eq!(m.seed, Some(2980747362));
        assert_eq!((m.width, m.height), (Some(512), Some(768)));
        assert_eq!(m.cfg, Some(5.0));
        assert_eq!(m.sampler.as_deref(), Some("k_lms"));
        assert_eq!(m.params.get("-U").map(String::as_str), Some("4 0.95"));
        assert_eq!(m.params.get("-G").map(String::as_str), Some("0.9"));
        assert_eq!(m.loras, Some(vec![]));
    }

    #[test]
    fn split_several_negative_segments() {
        let (p, n) = split_negative("p1a, p1b, [n1a, n1b], p2a, p2b, [n2a, n2b], p3a");
        assert_eq!(p, "p1a, p1b, p2a, p2b, p3a");
        assert_eq!(n, "n1a, n1b, n2a, n2b");
        let (p, n) = split_negative(r"a \[literal\], [neg [nested]] b, [open");
        assert_eq!(p, r"a \[literal\], b");
        assert_eq!(n, "neg [nested], open");
    }

    #[test]
    fn v3_old_and_new_model_shapes() {
        let old = r#"{"positive_prompt":"p","negative_prompt":"n","width":1024,"height":1024,"seed":3293022630,"cfg_scale":8.0,"steps":35,"scheduler":"euler","model":{"model_name":"juggernautXL","base_model":"sdxl"},"vae":{"model_name":"VAEFix"},"loras":[{"lora":{"model_name":"detail"},"weight":0.6}]}"#;
        let c = Carriers {
            entries: vec![Carrier {
                key: "invokeai_metadata".into(),
                location: "png:tEXt".into(),
                value: old.into(),
            }],
            ..Carriers::default()
        };
        let mut ctx = Ctx::new(&c);
        assert_eq!(detect(&ctx), Some(Era::V3));
        let m = parse(&mut ctx, Era::V3);
        assert_eq!(m.model.as_deref(), Some("juggernautXL"));
        assert_eq!(m.vae.as_deref(), Some("VAEFix"));
        assert_eq!(m.sampler.as_deref(), Some("euler"));
        assert_eq!(m.scheduler, None);
        let loras = m.loras.unwrap();
        assert_eq!(loras[0].name, "detail");
        assert_eq!(loras[0].weight, Some(0.6));
    }
}
