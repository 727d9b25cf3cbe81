//! Fooocus (JSON `fooocus` scheme or infotext `a1111` scheme) and RuinedFooocus (JSON).

use super::infotext;
use super::util::{
    clip_skip_of, nonempty_text, num_f64, num_u32, param_text, parse_f64, parse_json_object,
    parse_size, seed_of, text_of, Ctx,
};
use crate::metadata::{GenMeta, Lora};
use serde_json::{Map, Value};

/// The carriers that may hold Fooocus' record: PNG `parameters`, or the IFD0 `UserComment` of
/// its JPEG/WebP.
const TEXT_KEYS: &[&str] = &["parameters", "exif:UserComment"];

/// Whether the carriers are Fooocus' (not RuinedFooocus).
pub fn detect(ctx: &Ctx) -> bool {
    if ctx.has("fooocus_scheme") {
        return true;
    }
    let maker = ctx.value("exif:MakerNote").map(str::trim);
    let software = ctx.value("exif:Software").unwrap_or("");
    if software.starts_with("Fooocus") && matches!(maker, Some("fooocus" | "a1111")) {
        return true;
    }
    TEXT_KEYS.iter().any(|k| {
        ctx.value(k)
            .and_then(parse_json_object)
            .is_some_and(|v| is_fooocus_json(&v))
    })
}

fn is_fooocus_json(v: &Value) -> bool {
    let version = v.get("version").and_then(Value::as_str).unwrap_or("");
    v.get("prompt").is_some()
        && v.get("base_model").is_some()
        && (version.starts_with("Fooocus")
            || v.get("metadata_scheme").is_some()
            || v.get("full_prompt").is_some())
}

/// Whether a JSON text is RuinedFooocus' record.
pub fn is_ruined(v: &Value) -> bool {
    v.get("software").and_then(Value::as_str) == Some("RuinedFooocus")
}

pub fn parse(ctx: &mut Ctx) -> GenMeta {
    ctx.take("fooocus_scheme");
    if ctx
        .value("exif:Software")
        .is_some_and(|s| s.starts_with("Fooocus"))
    {
        ctx.take("exif:Software");
        ctx.take("exif:MakerNote");
    }
    let text = TEXT_KEYS.iter().find_map(|k| ctx.take(k)).unwrap_or("");
    let mut m = match parse_json_object(text) {
        Some(Value::Object(d)) => from_json(&d),
        _ if infotext::looks_like_infotext(text) => {
            let info = infotext::parse(text);
            infotext::to_genmeta(&info)
        }
        _ => GenMeta {
            warnings: vec!["Fooocus metadata is neither JSON nor an infotext".into()],
            ..GenMeta::default()
        },
    };
    ctx.consume_stealth_copies(text);
    m.generator = Some("fooocus".into());
    m
}

fn from_json(d: &Map<String, Value>) -> GenMeta {
    let mut m = GenMeta {
        prompt: d.get("prompt").and_then(text_of),
        negative_prompt: d.get("negative_prompt").and_then(text_of),
        steps: d.get("steps").and_then(num_u32),
        cfg: d.get("guidance_scale").and_then(num_f64),
        sampler: d.get("sampler").and_then(nonempty_text),
        scheduler: d.get("scheduler").and_then(nonempty_text),
        seed: d.get("seed").and_then(seed_of),
        model: d.get("base_model").and_then(nonempty_text),
        model_hash: d.get("base_model_hash").and_then(nonempty_text),
        vae: d.get("vae").and_then(nonempty_text),
        clip_skip: d.get("clip_skip").and_then(clip_skip_of),
        ..GenMeta::default()
    };
    if let Some((w, h)) = d
        .get("resolution")
        .and_then(Value::as_str)
        .and_then(parse_size)
    {
        m.width = Some(w);
        m.height = Some(h);
    }
    let mut loras: Vec<Lora> = d
        .get("loras")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(fooocus_lora).collect())
        .unwrap_or_default();
    for (k, v) in d {
        if k.starts_with("lora_combined_") {
            if let Some(l) = fooocus_lora(v) {
                loras.push(l);
            }
        }
    }
    m.loras = Some(loras);
    const MAPPED: &[&str] = &[
        "prompt",
        "negative_prompt",
        "steps",
        "guidance_scale",
        "sampler",
        "scheduler",
        "seed",
        "base_model",
        "base_model_hash",
        "vae",
        "clip_skip",
        "resolution",
        "loras",
    ];
    for (k, v) in d {
        if MAPPED.contains(&k.as_str()) || k.starts_with("lora_combined_") {
            continue;
        }
        if let Some(t) = param_text(v) {
            m.params.insert(k.clone(), t);
        }
    }
    m
}

/// One Fooocus LoRA: `[name, weight, hash?]`, or `"name : weight"` / `"name : hash : weight"`.
fn fooocus_lora(v: &Value) -> Option<Lora> {
    match v {
        Value::Array(parts) => {
            let name = parts.first().and_then(nonempty_text)?;
            if name == "None" {
                return None;
            }
            Some(Lora {
                name,
                weight: parts.get(1).and_then(num_f64),
                hash: parts.get(2).and_then(nonempty_text),
                ..Lora::default()
            })
        }
        Value::String(s) => {
            let parts: Vec<&str> = s.split(" : ").map(str::trim).collect();
            let name = parts.first().filter(|n| !n.is_empty() && **n != "None")?;
            let weight = parts
                .last()
                .filter(|_| parts.len() > 1)
                .and_then(|w| parse_f64(w));
            let hash = (parts.len() > 2).then(|| parts[1].to_string());
            Some(Lora {
                name: name.to_string(),
                weight,
                hash,
                ..Lora::default()
            })
        }
        _ => None,
    }
}

/// RuinedFooocus' `parameters` JSON.
pub fn parse_ruined(ctx: &mut Ctx, key: &str) -> GenMeta {
    let text = ctx.take(key).unwrap_or("");
    let Some(Value::Object(d)) = parse_json_object(text) else {
        return GenMeta {
            generator: Some("ruined-fooocus".into()),
            ..GenMeta::default()
        };
    };
    let mut m = GenMeta {
        generator: Some("ruined-fooocus".into()),
        prompt: d.get("Prompt").and_then(text_of),
        negative_prompt: d.get("Negative").and_then(text_of),
        steps: d.get("steps").and_then(num_u32),
        cfg: d.get("cfg").and_then(num_f64),
        width: d.get("width").and_then(num_u32),
        height: d.get("height").and_then(num_u32),
        seed: d.get("seed").and_then(seed_of),
        sampler: d.get("sampler_name").and_then(nonempty_text),
        scheduler: d.get("scheduler").and_then(nonempty_text),
        model: d.get("base_model_name").and_then(nonempty_text),
        model_hash: d.get("base_model_hash").and_then(nonempty_text),
        denoise: d.get("denoise").and_then(num_f64),
        clip_skip: d.get("clip_skip").and_then(clip_skip_of),
        ..GenMeta::default()
    };
    m.loras = Some(
        d.get("loras")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(ruined_lora).collect())
            .unwrap_or_default(),
    );
    const MAPPED: &[&str] = &[
        "Prompt",
        "Negative",
        "steps",
        "cfg",
        "width",
        "height",
        "seed",
        "sampler_name",
        "scheduler",
        "base_model_name",
        "base_model_hash",
        "denoise",
        "clip_skip",
        "loras",
    ];
    for (k, v) in &d {
        if !MAPPED.contains(&k.as_str()) {
            if let Some(t) = param_text(v) {
                m.params.insert(k.clone(), t);
            }
        }
    }
    ctx.consume_stealth_copies(text);
    m
}

/// One RuinedFooocus LoRA: `[name, weight]`, `{"name", "weight"}` or `"weight:name"`-less text.
fn ruined_lora(v: &Value) -> Option<Lora> {
    match v {
        Value::Object(o) => Some(Lora {
            name: o
                .get("name")
                .or_else(|| o.get("lora"))
                .and_then(nonempty_text)?,
            weight: o.get("weight").and_then(num_f64),
            hash: o.get("hash").and_then(nonempty_text),
            ..Lora::default()
        }),
        other => fooocus_lora(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Carriers;

    #[test]
    fn json_scheme_with_big_seed_and_loras() {
        let c = Carriers::from_pairs(&[
            (
                "parameters",
                r#"{"prompt": "fish", "negative_prompt": "", "base_model": "juggernautXL_v8Rundiffusion", "base_model_hash": "aeb7e9e689", "resolution": "(768, 1280)", "seed": "6952411511246973023", "guidance_scale": 4, "steps": 30, "clip_skip": 2, "loras": [["add-detail", 0.5, "abcd"]], "lora_combined_2": "sd_xl_offset : 0.1", "styles": "['Fooocus V2']", "version": "Fooocus v2.4.3"}"#,
            ),
            ("fooocus_scheme", "fooocus"),
        ]);
        let mut ctx = Ctx::new(&c);
        assert!(detect(&ctx));
        let m = parse(&mut ctx);
        assert_eq!(m.generator.as_deref(), Some("fooocus"));
        assert_eq!(m.seed, Some(6952411511246973023));
        assert_eq!((m.width, m.height), (Some(768), Some(1280)));
        assert_eq!(m.negative_prompt.as_deref(), Some(""));
        let loras = m.loras.unwrap();
        assert_eq!(loras.len(), 2);
        assert_eq!(loras[0].hash.as_deref(), Some("abcd"));
        assert_eq!(loras[1].name, "sd_xl_offset");
        assert_eq!(loras[1].weight, Some(0.1));
        assert_eq!(
            m.params.get("styles").map(String::as_str),
            Some("['Fooocus V2']")
        );
        assert_eq!(ctx.unread().count(), 0);
    }

    #[test]
    fn a1111_scheme() {
        let c = Carriers::from_pairs(&[
            ("parameters", "fish\nNegative prompt: ugly\nPerformance: Speed, Steps: 30, Sampler: dpmpp_2m_sde_gpu, Seed: 5, Version: Fooocus v2.5.0"),
            ("fooocus_scheme", "a1111"),
        ]);
        let mut ctx = Ctx::new(&c);
        let m = parse(&mut ctx);
        assert_eq!(m.prompt.as_deref(), Some("fish"));
        assert_eq!(m.steps, Some(30));
        assert_eq!(
            m.params.get("Performance").map(String::as_str),
            Some("Speed")
        );
    }
}
