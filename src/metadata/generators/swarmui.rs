//! SwarmUI: `{"sui_image_params": {…}, "sui_extra_data": {…}, "sui_models": […]}` in PNG
//! `parameters`, EXIF `UserComment` (JPEG/WebP), or (legacy StableSwarmUI) EXIF `Model`.

use super::util::{
    clip_skip_of, nonempty_text, num_f64, num_u32, param_text, parse_json_object, seed_of, text_of,
    Ctx,
};
use crate::metadata::{GenMeta, Lora};
use serde_json::{Map, Value};

const KEYS: &[&str] = &["parameters", "exif:UserComment", "exif:Model"];

/// The key of the carrier holding SwarmUI's record, if any.
pub fn detect(ctx: &Ctx) -> Option<&'static str> {
    KEYS.iter().copied().find(|k| {
        ctx.value(k)
            .filter(|v| v.contains("sui_image_params"))
            .and_then(parse_json_object)
            .is_some_and(|v| v.get("sui_image_params").is_some_and(Value::is_object))
    })
}

pub fn parse(ctx: &mut Ctx, key: &str) -> GenMeta {
    let mut m = GenMeta {
        generator: Some("swarmui".into()),
        ..GenMeta::default()
    };
    let text = ctx.take(key).unwrap_or("");
    let Some(record) = parse_json_object(text) else {
        m.warnings
            .push(format!("{key}: SwarmUI JSON did not parse"));
        return m;
    };
    let empty = Map::new();
    let p = record
        .get("sui_image_params")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let models: Vec<&Value> = record
        .get("sui_models")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    read_fields(&mut m, p, &models);
    m.loras = Some(loras(p, &models));
    keep_unmapped(&mut m, p, &record);
    m
}

/// The generation fields from `sui_image_params`, the model's hash from `sui_models`.
fn read_fields(m: &mut GenMeta, p: &Map<String, Value>, models: &[&Value]) {
    m.prompt = p.get("prompt").and_then(text_of);
    m.negative_prompt = p.get("negativeprompt").and_then(text_of);
    m.model = p.get("model").and_then(nonempty_text);
    m.seed = p.get("seed").and_then(seed_of);
    m.steps = p.get("steps").and_then(num_u32);
    m.cfg = p.get("cfgscale").and_then(num_f64);
    m.width = p.get("width").and_then(num_u32);
    m.height = p.get("height").and_then(num_u32);
    m.sampler = p.get("sampler").and_then(nonempty_text);
    m.scheduler = p.get("scheduler").and_then(nonempty_text);
    m.vae = p.get("vae").and_then(nonempty_text);
    m.clip_skip = p.get("clipstopatlayer").and_then(clip_skip_of);
    m.denoise = p.get("initimagecreativity").and_then(num_f64);
    m.model_hash = listed_hash(models, "model", None);
}

/// `loras` (names) with `loraweights` (strings) and `loratencweights` beside them, and their
/// hashes from `sui_models`.
fn loras(p: &Map<String, Value>, models: &[&Value]) -> Vec<Lora> {
    let names = list_param(p, "loras");
    let weights = list_param(p, "loraweights");
    let tenc = list_param(p, "loratencweights");
    names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let name = nonempty_text(n)?;
            let hash = listed_hash(models, "loras", Some(&name));
            let weight = weights.get(i).and_then(num_f64);
            let te = tenc.get(i).and_then(num_f64);
            Some(Lora {
                name,
                weight,
                clip_weight: te.filter(|t| Some(*t) != weight),
                hash,
            })
        })
        .collect()
}

/// A list parameter, written as an array or as one comma-separated string.
fn list_param(p: &Map<String, Value>, k: &str) -> Vec<Value> {
    match p.get(k) {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) if !s.is_empty() => s
            .split(',')
            .map(|x| Value::String(x.trim().into()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The hash `sui_models` gives for the first model used as `param` (and, when `name` is
/// given, of that name, extensions aside).
fn listed_hash(models: &[&Value], param: &str, name: Option<&str>) -> Option<String> {
    models
        .iter()
        .find(|md| {
            md.get("param").and_then(Value::as_str) == Some(param)
                && name.is_none_or(|name| {
                    md.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|mn| stem(mn) == stem(name))
                })
        })
        .and_then(|md| md.get("hash"))
        .and_then(nonempty_text)
}

/// Keeps the image params not mapped to a field, then the extra data, as params.
fn keep_unmapped(m: &mut GenMeta, p: &Map<String, Value>, record: &Value) {
    const MAPPED: &[&str] = &[
        "prompt",
        "negativeprompt",
        "model",
        "seed",
        "steps",
        "cfgscale",
        "width",
        "height",
        "sampler",
        "scheduler",
        "vae",
        "clipstopatlayer",
        "initimagecreativity",
        "loras",
        "loraweights",
        "loratencweights",
    ];
    for (k, v) in p {
        if !MAPPED.contains(&k.as_str()) {
            if let Some(t) = param_text(v) {
                m.params.insert(k.clone(), t);
            }
        }
    }
    if let Some(extra) = record.get("sui_extra_data").and_then(Value::as_object) {
        for (k, v) in extra {
            if let Some(t) = param_text(v) {
                m.params.entry(k.clone()).or_insert(t);
            }
        }
    }
}

/// A model name without its extension (`Lustrijous.safetensors` → `Lustrijous`).
fn stem(name: &str) -> &str {
    for ext in [".safetensors", ".ckpt", ".pt", ".bin", ".gguf", ".sft"] {
        if let Some(s) = name.strip_suffix(ext) {
            return s;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Carrier, Carriers};

    #[test]
    fn user_comment_record() {
        let json = r#"{"sui_image_params": {"prompt": "cat", "model": "m", "seed": 1, "steps": 20, "cfgscale": 7.0, "width": 512, "height": 512, "loras": ["detail"], "loraweights": ["0.6"], "clipstopatlayer": -2, "images": 4},
            "sui_extra_data": {"date": "2025-06-27"},
            "sui_models": [{"name": "m.safetensors", "param": "model", "hash": "0x7e"}, {"name": "detail.safetensors", "param": "loras", "hash": "0x11"}]}"#;
        let c = Carriers {
            entries: vec![Carrier {
                key: "exif:UserComment".into(),
                location: "exif:ExifIFD".into(),
                value: json.into(),
            }],
            ..Carriers::default()
        };
        let mut ctx = Ctx::new(&c);
        let key = detect(&ctx).unwrap();
        let m = parse(&mut ctx, key);
        assert_eq!(m.negative_prompt, None);
        assert_eq!(m.model_hash.as_deref(), Some("0x7e"));
        assert_eq!(m.clip_skip, Some(2));
        let loras = m.loras.unwrap();
        assert_eq!(loras[0].weight, Some(0.6));
        assert_eq!(loras[0].hash.as_deref(), Some("0x11"));
        assert_eq!(m.params.get("images").map(String::as_str), Some("4"));
        assert_eq!(m.params.get("date").map(String::as_str), Some("2025-06-27"));
    }
}
