//! Civitai on-site graphs, Stability Matrix, Tensor.Art, Hugging Face Gradio spaces,
//! EasyDiffusion, Draw Things, C2PA-only files.

use super::comfy_carriers::{self, lone_sampler_seed};
use super::comfyui;
use super::infotext;
use super::util::{
    clip_skip_of, last_path_component, nonempty_text, num_f64, num_u32, param_text,
    parse_json_lenient, parse_json_object, parse_size, seed_of, text_of, Ctx,
};
use crate::metadata::{GenMeta, Lora};
use serde_json::{Map, Value};

/// Whether a graph walk found a sampler (so its sampling fields mean something).
fn has_sampler(m: &GenMeta) -> bool {
    m.seed.is_some() || m.steps.is_some() || m.sampler.is_some()
}

/// Adds every key of `d` not in `mapped` to `params`, as text.
fn rest_to_params(m: &mut GenMeta, d: &Map<String, Value>, mapped: &[&str]) {
    for (k, v) in d {
        if !mapped.contains(&k.as_str()) {
            if let Some(t) = param_text(v) {
                m.params.entry(k.clone()).or_insert(t);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Civitai on-site (ComfyUI graph + extraMetadata)

/// Civitai's on-site graph: walk it, then let `extraMetadata` win for every field it states.
/// A graph with no sampler (the upscale-only workflow) contributes nothing: its fields would
/// describe the upscaler, not the generation.
pub fn parse_civitai_graph(
    ctx: &mut Ctx,
    index: usize,
    graph: &Value,
    extra_meta: Option<Value>,
    extra: Option<Value>,
) -> GenMeta {
    ctx.consume(index);
    let walked = comfyui::from_api_graph(graph).filter(has_sampler);
    let mut m = walked.unwrap_or_default();
    m.generator = Some("civitai".into());
    match extra_meta {
        Some(Value::Object(d)) => {
            if let Some(v) = d.get("prompt").and_then(text_of) {
                m.prompt = Some(v);
            }
            if let Some(v) = d.get("negativePrompt").and_then(text_of) {
                m.negative_prompt = Some(v);
            }
            if let Some(v) = d.get("cfgScale").and_then(num_f64) {
                m.cfg = Some(v);
            }
            if let Some(v) = d.get("sampler").and_then(nonempty_text) {
                m.sampler = Some(v);
            }
            if let Some(v) = d.get("clipSkip").and_then(clip_skip_of) {
                m.clip_skip = Some(v);
            }
            if let Some(v) = d.get("steps").and_then(num_u32) {
                m.steps = Some(v);
            }
            if let Some(v) = d.get("seed").and_then(seed_of) {
                m.seed = Some(v);
            }
            if let Some(v) = d.get("width").and_then(num_u32) {
                m.width = Some(v);
            }
            if let Some(v) = d.get("height").and_then(num_u32) {
                m.height = Some(v);
            }
            if let Some(v) = d.get("baseModel").and_then(nonempty_text) {
                m.model = Some(v);
            }
            if let Some(v) = d.get("denoise").and_then(num_f64) {
                m.denoise = Some(v);
            }
            rest_to_params(
                &mut m,
                &d,
                &[
                    "prompt",
                    "negativePrompt",
                    "cfgScale",
                    "sampler",
                    "clipSkip",
                    "steps",
                    "seed",
                    "width",
                    "height",
                    "baseModel",
                    "denoise",
                ],
            );
        }
        _ => m
            .warnings
            .push("Civitai extraMetadata is not a JSON object".into()),
    }
    if let Some(airs) = extra.as_ref().and_then(|e| e.get("airs")) {
        if let Some(t) = param_text(airs) {
            m.params.entry("airs".into()).or_insert(t);
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Stability Matrix

pub fn detect_stability_matrix(ctx: &Ctx) -> bool {
    ctx.has("parameters-json") || ctx.has("smproj")
}

/// Stability Matrix: prompts, seed, steps, CFG, model and hash from `parameters-json` (or its
/// `parameters` infotext copy); sampler, scheduler, clip skip, size, VAE and LoRAs from the
/// ComfyUI graph it ran (`parameters-json` fuses sampler and scheduler into a display name such
/// as `Euler Ancestral Karras` and has no clip skip), falling back to the `smproj` project.
pub fn parse_stability_matrix(ctx: &mut Ctx) -> GenMeta {
    let pj = ctx.take("parameters-json");
    let sm = ctx.take("smproj").and_then(parse_json_object);
    let infotext_text = ctx.take("parameters");
    let graphs = comfy_carriers::find(ctx);
    let mut walked = None;
    if let Some(g) = &graphs {
        for &i in &g.used {
            ctx.consume(i);
        }
        walked = g
            .api
            .as_ref()
            .and_then(comfyui::from_api_graph)
            .filter(has_sampler);
    }
    let mut m = match pj.and_then(parse_json_object) {
        Some(Value::Object(d)) => from_parameters_json(&d),
        _ => {
            let mut m = GenMeta::default();
            if pj.is_some() {
                m.warnings
                    .push("parameters-json is not a JSON object".into());
            }
            if let Some(text) = infotext_text {
                m = infotext::to_genmeta(&infotext::parse(text));
            }
            m
        }
    };
    m.generator = Some("stability-matrix".into());
    match walked {
        Some(w) => take_from_graph(&mut m, w),
        None => take_from_project(&mut m, sm.as_ref()),
    }
    if m.loras.is_none() {
        m.loras = Some(Vec::new());
    }
    if let Some(g) = graphs {
        m.warnings.extend(g.warnings);
    }
    m
}

/// The fields Stability Matrix's `parameters-json` states.
fn from_parameters_json(d: &Map<String, Value>) -> GenMeta {
    let mut m = GenMeta {
        prompt: d.get("PositivePrompt").and_then(text_of),
        negative_prompt: d.get("NegativePrompt").and_then(text_of),
        steps: d.get("Steps").and_then(num_u32),
        cfg: d.get("CfgScale").and_then(num_f64),
        seed: d.get("Seed").and_then(seed_of),
        width: d.get("Width").and_then(num_u32).filter(|&w| w > 0),
        height: d.get("Height").and_then(num_u32).filter(|&h| h > 0),
        model: d.get("ModelName").and_then(nonempty_text),
        model_hash: d.get("ModelHash").and_then(nonempty_text),
        sampler: d.get("Sampler").and_then(nonempty_text),
        loras: Some(Vec::new()),
        ..GenMeta::default()
    };
    rest_to_params(
        &mut m,
        d,
        &[
            "PositivePrompt",
            "NegativePrompt",
            "Steps",
            "CfgScale",
            "Seed",
            "Width",
            "Height",
            "ModelName",
            "ModelHash",
            "Sampler",
        ],
    );
    m
}

/// The fields the walked ComfyUI graph knows better: sampler, scheduler, clip skip, size, VAE,
/// LoRAs, extra prompts.
fn take_from_graph(m: &mut GenMeta, w: GenMeta) {
    if w.sampler.is_some() {
        m.sampler = w.sampler;
    }
    if w.scheduler.is_some() {
        m.scheduler = w.scheduler;
    }
    if w.clip_skip.is_some() {
        m.clip_skip = w.clip_skip;
    }
    if w.width.is_some() && w.height.is_some() {
        m.width = w.width;
        m.height = w.height;
    }
    if w.vae.is_some() {
        m.vae = w.vae;
    }
    if w.loras.is_some() {
        m.loras = w.loras;
    }
    m.extra_prompts = w.extra_prompts;
}

/// Without a graph: sampler, scheduler and clip skip from the `smproj` project.
fn take_from_project(m: &mut GenMeta, sm: Option<&Value>) {
    let project_sampler = |field: &str| {
        sm.and_then(|p| p.pointer(&format!("/State/Sampler/{field}/Name")))
            .and_then(nonempty_text)
    };
    if let Some(s) = project_sampler("SelectedSampler") {
        m.sampler = Some(s);
    }
    if let Some(s) = project_sampler("SelectedScheduler") {
        m.scheduler = Some(s);
    }
    let model = sm.and_then(|p| p.pointer("/State/Model"));
    let enabled = model
        .and_then(|md| md.get("IsClipSkipEnabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if enabled {
        m.clip_skip = model
            .and_then(|md| md.get("ClipSkip"))
            .and_then(clip_skip_of);
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor.Art

pub fn detect_tensorart(ctx: &Ctx) -> bool {
    ctx.has("generation_data")
}

/// Tensor.Art: `generation_data` JSON (with its trailing NUL) for everything except the seed,
/// which it writes as `"-1"`; the real seed is only in the ComfyUI graph it ran.
pub fn parse_tensorart(ctx: &mut Ctx) -> GenMeta {
    let text = ctx.take("generation_data").unwrap_or("");
    let mut m = GenMeta {
        generator: Some("tensorart".into()),
        ..GenMeta::default()
    };
    let graphs = comfy_carriers::find(ctx);
    let Some(Value::Object(d)) = parse_json_object(text) else {
        m.warnings
            .push("generation_data is not a JSON object".into());
        return m;
    };
    m.prompt = d.get("prompt").and_then(text_of);
    m.negative_prompt = d.get("negativePrompt").and_then(text_of);
    m.width = d.get("width").and_then(num_u32);
    m.height = d.get("height").and_then(num_u32);
    m.steps = d.get("steps").and_then(num_u32);
    m.cfg = d.get("cfgScale").and_then(num_f64);
    m.seed = d.get("seed").and_then(seed_of);
    m.clip_skip = d.get("clipSkip").and_then(clip_skip_of);
    m.sampler = d.get("ksamplerName").and_then(nonempty_text);
    m.scheduler = d.get("schedule").and_then(nonempty_text);
    m.vae = d
        .get("sdVae")
        .and_then(nonempty_text)
        .filter(|v| !matches!(v.as_str(), "Automatic" | "None" | "none"));
    if let Some(base) = d.get("baseModel") {
        m.model = base.get("modelFileName").and_then(nonempty_text);
        m.model_hash = base.get("hash").and_then(nonempty_text);
    }
    let loras = tensorart_loras(&d);
    m.loras = Some(loras);
    if let Some(ensd) = d.get("etaNoiseSeedDelta").and_then(param_text) {
        m.params.insert("ENSD".into(), ensd);
    }
    rest_to_params(
        &mut m,
        &d,
        &[
            "prompt",
            "negativePrompt",
            "width",
            "height",
            "steps",
            "cfgScale",
            "seed",
            "clipSkip",
            "ksamplerName",
            "schedule",
            "sdVae",
            "baseModel",
            "models",
            "loras",
            "loraModels",
            "etaNoiseSeedDelta",
        ],
    );
    if let Some(g) = graphs {
        if m.seed.is_none() {
            if let Some(api) = &g.api {
                m.seed = comfyui::from_api_graph(api)
                    .and_then(|w| w.seed)
                    .or_else(|| lone_sampler_seed(api));
            }
        }
        for &i in &g.used {
            ctx.consume(i);
        }
        m.warnings.extend(g.warnings);
    }
    m
}

/// The LoRAs of `models`, `loras` and `loraModels` (entries of another type left out).
fn tensorart_loras(d: &Map<String, Value>) -> Vec<Lora> {
    ["models", "loras", "loraModels"]
        .iter()
        .filter_map(|k| d.get(*k).and_then(Value::as_array))
        .flatten()
        .filter(|l| {
            l.get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t.to_ascii_uppercase().contains("LORA"))
        })
        .filter_map(|l| {
            Some(Lora {
                name: l
                    .get("modelFileName")
                    .or_else(|| l.get("name"))
                    .or_else(|| l.get("label"))
                    .and_then(nonempty_text)?,
                weight: l.get("weight").and_then(num_f64),
                hash: l.get("hash").and_then(nonempty_text),
                ..Lora::default()
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Hugging Face Gradio space (Animagine style)

/// The key of a `parameters`-like carrier holding the space's JSON, if any.
pub fn detect_hf_space(ctx: &Ctx) -> Option<&'static str> {
    ["parameters", "exif:UserComment"].into_iter().find(|k| {
        ctx.value(k)
            .and_then(parse_json_object)
            .is_some_and(|v| v.get("resolution").is_some() && v.get("Model").is_some())
    })
}

pub fn parse_hf_space(ctx: &mut Ctx, key: &str) -> GenMeta {
    let text = ctx.take(key).unwrap_or("");
    let mut m = GenMeta {
        generator: Some("hf-space".into()),
        ..GenMeta::default()
    };
    let Some(Value::Object(d)) = parse_json_object(text) else {
        return m;
    };
    m.prompt = d.get("prompt").and_then(text_of);
    m.negative_prompt = d.get("negative_prompt").and_then(text_of);
    if let Some((w, h)) = d
        .get("resolution")
        .and_then(Value::as_str)
        .and_then(parse_size)
    {
        m.width = Some(w);
        m.height = Some(h);
    }
    m.cfg = d.get("guidance_scale").and_then(num_f64);
    m.steps = d.get("num_inference_steps").and_then(num_u32);
    m.seed = d.get("seed").and_then(seed_of);
    m.sampler = d.get("sampler").and_then(nonempty_text);
    m.model = d.get("Model").and_then(nonempty_text);
    m.model_hash = d.get("Model hash").and_then(nonempty_text);
    m.clip_skip = d.get("clip_skip").and_then(clip_skip_of);
    m.loras = Some(Vec::new());
    rest_to_params(
        &mut m,
        &d,
        &[
            "prompt",
            "negative_prompt",
            "resolution",
            "guidance_scale",
            "num_inference_steps",
            "seed",
            "sampler",
            "Model",
            "Model hash",
            "clip_skip",
        ],
    );
    ctx.consume_stealth_copies(text);
    m
}

// ---------------------------------------------------------------------------------------------
// EasyDiffusion

/// EasyDiffusion's key, normalised: lower case, spaces as `_`, no `use_` prefix. Both its key
/// sets (`use_stable_diffusion_model` and `Stable Diffusion model`) meet here.
fn ed_key(k: &str) -> String {
    let lower = k.trim().to_ascii_lowercase().replace(' ', "_");
    lower
        .strip_prefix("use_")
        .map(str::to_string)
        .unwrap_or(lower)
}

/// Where EasyDiffusion's record is: one PNG text chunk per key, or one JSON object in
/// `UserComment` / `parameters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdSource {
    Chunks,
    Json(&'static str),
}

pub fn detect_easydiffusion(ctx: &Ctx) -> Option<EdSource> {
    if ctx.has("use_stable_diffusion_model") || ctx.has("Stable Diffusion model") {
        return Some(EdSource::Chunks);
    }
    ["exif:UserComment", "parameters"]
        .into_iter()
        .find_map(|k| {
            let v = ctx.value(k).and_then(parse_json_object)?;
            (v.get("use_stable_diffusion_model").is_some()
                || v.get("Stable Diffusion model").is_some())
            .then_some(EdSource::Json(k))
        })
}

pub fn parse_easydiffusion(ctx: &mut Ctx, source: EdSource) -> GenMeta {
    let record = ed_record(ctx, source);
    let mut by: Map<String, Value> = Map::new();
    for (k, v) in &record {
        by.entry(ed_key(k)).or_insert_with(|| v.clone());
    }
    let get = |names: &[&str]| ed_get(&by, names);
    let mut m = GenMeta {
        generator: Some("easydiffusion".into()),
        prompt: get(&["prompt"]).and_then(text_of),
        negative_prompt: get(&["negative_prompt"]).and_then(text_of),
        seed: get(&["seed"]).and_then(seed_of),
        model: get(&["stable_diffusion_model"])
            .and_then(nonempty_text)
            .map(|p| last_path_component(&p).to_string()),
        vae: get(&["vae_model"])
            .and_then(nonempty_text)
            .map(|p| last_path_component(&p).to_string()),
        sampler: get(&["sampler_name", "sampler"]).and_then(nonempty_text),
        scheduler: get(&["scheduler_name", "scheduler"]).and_then(nonempty_text),
        width: get(&["width"]).and_then(num_u32),
        height: get(&["height"]).and_then(num_u32),
        steps: get(&["num_inference_steps", "steps"]).and_then(num_u32),
        cfg: get(&["guidance_scale"]).and_then(num_f64),
        denoise: get(&["prompt_strength"]).and_then(num_f64),
        clip_skip: ed_clip_skip(get(&["clip_skip"])),
        ..GenMeta::default()
    };
    m.loras = Some(ed_loras(&by));
    ed_rest_to_params(&mut m, &record);
    m
}

/// EasyDiffusion's record as it was written (keys not yet normalised).
fn ed_record(ctx: &mut Ctx, source: EdSource) -> Map<String, Value> {
    let mut record: Map<String, Value> = Map::new();
    match source {
        EdSource::Chunks => {
            let keys: Vec<(usize, String, String)> = ctx
                .carriers
                .entries
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.key.contains(':') && !NOT_ED.contains(&c.key.as_str()))
                .map(|(i, c)| (i, c.key.clone(), c.value.clone()))
                .collect();
            for (i, k, v) in keys {
                ctx.consume(i);
                record.entry(k).or_insert(Value::String(v));
            }
        }
        EdSource::Json(key) => {
            if let Some(Value::Object(d)) = ctx.take(key).and_then(parse_json_object) {
                record = d;
            }
        }
    }
    record
}

/// `clip_skip` is a checkbox: true skips one layer (A1111's clip skip 2).
fn ed_clip_skip(v: Option<&Value>) -> Option<u32> {
    match v {
        Some(Value::Bool(true)) => Some(2),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(2),
        Some(Value::Bool(false)) => None,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => None,
        Some(v) => clip_skip_of(v),
        None => None,
    }
}

/// The value of the first of `names` in the record with normalised keys.
fn ed_get<'a>(by: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| by.get(*n))
}

/// The LoRA and hypernetwork models with their strengths, from the record with normalised
/// keys.
fn ed_loras(by: &Map<String, Value>) -> Vec<Lora> {
    let get = |names: &[&str]| ed_get(by, names);
    let mut loras = Vec::new();
    for (model_key, weight_key) in [
        ("lora_model", &["lora_alpha", "lora_strength"][..]),
        ("hypernetwork_model", &["hypernetwork_strength"][..]),
    ] {
        let names = listish(get(&[model_key]));
        let weights = listish(get(weight_key));
        for (i, n) in names.iter().enumerate() {
            let Some(name) = nonempty_text(n) else {
                continue;
            };
            loras.push(Lora {
                name: last_path_component(&name).to_string(),
                weight: weights.get(i).and_then(num_f64),
                ..Lora::default()
            });
        }
    }
    loras
}

/// Adds the record's keys not mapped to a field to `params`, under their written names.
fn ed_rest_to_params(m: &mut GenMeta, record: &Map<String, Value>) {
    const MAPPED: &[&str] = &[
        "prompt",
        "negative_prompt",
        "seed",
        "stable_diffusion_model",
        "vae_model",
        "sampler_name",
        "sampler",
        "scheduler_name",
        "scheduler",
        "width",
        "height",
        "num_inference_steps",
        "steps",
        "guidance_scale",
        "prompt_strength",
        "clip_skip",
        "lora_model",
        "lora_alpha",
        "lora_strength",
        "hypernetwork_model",
        "hypernetwork_strength",
    ];
    for (k, v) in record {
        if !MAPPED.contains(&ed_key(k).as_str()) {
            if let Some(t) = param_text(v) {
                m.params.entry(k.clone()).or_insert(t);
            }
        }
    }
}

/// PNG keys that are never part of EasyDiffusion's per-key record.
const NOT_ED: &[&str] = &["xmp", "stealth", "c2pa", "XML:com.adobe.xmp", "Software"];

/// A value that may be one item, a list, or a comma-separated string of items.
fn listish(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.starts_with('[') {
                if let Some(Value::Array(a)) = parse_json_lenient(t) {
                    return a;
                }
            }
            t.split(',')
                .map(|x| Value::String(x.trim().to_string()))
                .filter(|x| x.as_str().is_some_and(|s| !s.is_empty()))
                .collect()
        }
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Draw Things

const XMP_KEYS: &[&str] = &["xmp", "XML:com.adobe.xmp"];

/// The XMP carrier key if its `CreatorTool` is Draw Things.
pub fn detect_drawthings(ctx: &Ctx) -> Option<&'static str> {
    XMP_KEYS.iter().copied().find(|k| {
        ctx.value(k).is_some_and(|x| {
            xmp_field(x, "xmp:CreatorTool").is_some_and(|t| t.starts_with("Draw Things"))
        })
    })
}

/// The text of an XMP property, written as an attribute (`name="…"`), a simple element
/// (`<name>…</name>`), or a language alternative (`<name><rdf:Alt><rdf:li …>…</rdf:li>`).
/// XML entities are decoded.
pub fn xmp_field(xmp: &str, name: &str) -> Option<String> {
    let decode = |s: &str| {
        quick_xml::escape::unescape(s)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| s.to_string())
    };
    let attr = format!("{name}=\"");
    if let Some(p) = xmp.find(&attr) {
        let rest = &xmp[p + attr.len()..];
        let end = rest.find('"')?;
        return Some(decode(&rest[..end]));
    }
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let p = xmp.find(&open)?;
    let after_open = &xmp[p + open.len()..];
    let gt = after_open.find('>')?;
    if after_open[..gt].ends_with('/') {
        return None;
    }
    let body_start = &after_open[gt + 1..];
    let body = &body_start[..body_start.find(&close)?];
    if let Some(li) = body.find("<rdf:li") {
        let li_body = &body[li..];
        let gt = li_body.find('>')?;
        let inner = &li_body[gt + 1..];
        let end = inner.find("</rdf:li>")?;
        return Some(decode(&inner[..end]));
    }
    Some(decode(body.trim()))
}

pub fn parse_drawthings(ctx: &mut Ctx, key: &str) -> GenMeta {
    let xmp = ctx.take(key).unwrap_or("");
    let mut m = GenMeta {
        generator: Some("drawthings".into()),
        ..GenMeta::default()
    };
    let json = xmp_field(xmp, "exif:UserComment").and_then(|t| parse_json_object(&t));
    let Some(Value::Object(d)) = json else {
        // No JSON: the A1111-like `dc:description` is what is left.
        if let Some(desc) = xmp_field(xmp, "dc:description") {
            let gen = m.generator.take();
            m = infotext::to_genmeta(&infotext::parse(&desc));
            m.generator = gen;
        }
        m.warnings
            .push("Draw Things XMP has no JSON UserComment".into());
        return m;
    };
    m.prompt = d.get("c").and_then(text_of);
    m.negative_prompt = d.get("uc").and_then(text_of);
    m.seed = d.get("seed").and_then(seed_of);
    m.steps = d.get("steps").and_then(num_u32);
    m.cfg = d.get("scale").and_then(num_f64);
    m.sampler = d.get("sampler").and_then(nonempty_text);
    m.denoise = d.get("strength").and_then(num_f64);
    m.model = d.get("model").and_then(nonempty_text);
    if let Some((w, h)) = d.get("size").and_then(Value::as_str).and_then(parse_size) {
        m.width = Some(w);
        m.height = Some(h);
    }
    m.loras = Some(
        d.get("lora")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|x| {
                        Some(Lora {
                            name: x
                                .get("file")
                                .or_else(|| x.get("model"))
                                .and_then(nonempty_text)?,
                            weight: x.get("weight").and_then(num_f64),
                            ..Lora::default()
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
    );
    rest_to_params(
        &mut m,
        &d,
        &[
            "c", "uc", "seed", "steps", "scale", "sampler", "strength", "model", "size", "lora",
        ],
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Carriers;

    #[test]
    fn tensorart_trailing_nul_and_graph_seed() {
        let c = Carriers::from_pairs(&[
            ("generation_data", "{\"prompt\":\"p\",\"negativePrompt\":\"n\",\"width\":1024,\"height\":1024,\"steps\":25,\"cfgScale\":7,\"seed\":\"-1\",\"clipSkip\":2,\"baseModel\":{\"modelFileName\":\"WAI\",\"hash\":\"A5F5\"},\"sdVae\":\"Automatic\",\"etaNoiseSeedDelta\":31337,\"ksamplerName\":\"euler_ancestral\",\"schedule\":\"karras\",\"guidance\":3.5}\0"),
            ("prompt", r#"{"11002": {"class_type": "KSampler", "inputs": {"seed": 3036459311, "steps": 25}}}"#),
        ]);
        let mut ctx = Ctx::new(&c);
        assert!(detect_tensorart(&ctx));
        let m = parse_tensorart(&mut ctx);
        assert_eq!(m.seed, Some(3036459311));
        assert_eq!(m.model.as_deref(), Some("WAI"));
        assert_eq!(m.vae, None);
        assert_eq!(m.clip_skip, Some(2));
        assert_eq!(m.params.get("ENSD").map(String::as_str), Some("31337"));
        assert_eq!(m.params.get("guidance").map(String::as_str), Some("3.5"));
        assert_eq!(m.loras, Some(vec![]));
        assert_eq!(ctx.unread().count(), 0);
    }

    #[test]
    fn stability_matrix_without_a_walkable_graph_uses_the_project() {
        let c = Carriers::from_pairs(&[
            (
                "parameters-json",
                r#"{"PositivePrompt":"p\r\n","NegativePrompt":"n","Steps":20,"Sampler":"Euler Ancestral Karras","CfgScale":5,"Seed":395309383,"Height":1024,"Width":1024,"ModelHash":"A5F5","ModelName":"wai.safetensors","FrameCount":0}"#,
            ),
            (
                "smproj",
                r#"{"State":{"Model":{"ClipSkip":2,"IsClipSkipEnabled":true},"Sampler":{"SelectedSampler":{"Name":"euler_ancestral"},"SelectedScheduler":{"Name":"karras"}}}}"#,
            ),
        ]);
        let mut ctx = Ctx::new(&c);
        let m = parse_stability_matrix(&mut ctx);
        assert_eq!(m.generator.as_deref(), Some("stability-matrix"));
        assert_eq!(m.sampler.as_deref(), Some("euler_ancestral"));
        assert_eq!(m.scheduler.as_deref(), Some("karras"));
        assert_eq!(m.clip_skip, Some(2));
        assert_eq!(m.model_hash.as_deref(), Some("A5F5"));
        assert_eq!(m.prompt.as_deref(), Some("p\r\n"));
    }

    #[test]
    fn easydiffusion_both_key_sets() {
        let c = Carriers::from_pairs(&[
            ("prompt", "a cat"),
            ("negative_prompt", "dog"),
            ("seed", "42"),
            (
                "use_stable_diffusion_model",
                "C:\\models\\sd\\v1-5.safetensors",
            ),
            ("clip_skip", "True"),
            ("num_inference_steps", "25"),
            ("guidance_scale", "7.5"),
            ("use_lora_model", "a,b"),
            ("lora_alpha", "0.5,0.7"),
            ("tiling", "None"),
        ]);
        let mut ctx = Ctx::new(&c);
        let src = detect_easydiffusion(&ctx).unwrap();
        let m = parse_easydiffusion(&mut ctx, src);
        assert_eq!(m.model.as_deref(), Some("v1-5.safetensors"));
        assert_eq!(m.clip_skip, Some(2));
        assert_eq!(m.steps, Some(25));
        let loras = m.loras.unwrap();
        assert_eq!(loras[1].name, "b");
        assert_eq!(loras[1].weight, Some(0.7));
        assert_eq!(m.params.get("tiling").map(String::as_str), Some("None"));

        let c = Carriers::from_pairs(&[(
            "exif:UserComment",
            r#"{"Prompt": "cat", "Negative Prompt": "dog", "Seed": 7, "Stable Diffusion model": "sd/x.ckpt", "Steps": 30, "Guidance Scale": 7}"#,
        )]);
        let mut ctx = Ctx::new(&c);
        let src = detect_easydiffusion(&ctx).unwrap();
        assert_eq!(src, EdSource::Json("exif:UserComment"));
        let m = parse_easydiffusion(&mut ctx, src);
        assert_eq!(m.prompt.as_deref(), Some("cat"));
        assert_eq!(m.negative_prompt.as_deref(), Some("dog"));
        assert_eq!(m.model.as_deref(), Some("x.ckpt"));
        assert_eq!(m.steps, Some(30));
        assert_eq!(m.cfg, Some(7.0));
    }

    #[test]
    fn drawthings_xmp() {
        let xmp = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmp:CreatorTool="Draw Things"><dc:description><rdf:Alt><rdf:li xml:lang="x-default">a cat</rdf:li></rdf:Alt></dc:description><exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">{&quot;c&quot;:&quot;a cat &amp; dog&quot;,&quot;uc&quot;:&quot;ugly&quot;,&quot;seed&quot;:7,&quot;steps&quot;:20,&quot;scale&quot;:4.5,&quot;size&quot;:&quot;960x1280&quot;,&quot;model&quot;:&quot;flux.ckpt&quot;,&quot;lora&quot;:[{&quot;file&quot;:&quot;x.ckpt&quot;,&quot;weight&quot;:0.6}],&quot;shift&quot;:3}</rdf:li></rdf:Alt></exif:UserComment></rdf:Description></rdf:RDF></x:xmpmeta>"#;
        let c = Carriers::from_pairs(&[("xmp", xmp)]);
        let mut ctx = Ctx::new(&c);
        let key = detect_drawthings(&ctx).unwrap();
        let m = parse_drawthings(&mut ctx, key);
        assert_eq!(m.prompt.as_deref(), Some("a cat & dog"));
        assert_eq!((m.width, m.height), (Some(960), Some(1280)));
        assert_eq!(m.loras.unwrap()[0].weight, Some(0.6));
        assert_eq!(m.params.get("shift").map(String::as_str), Some("3"));
    }

    #[test]
    fn hf_space_json() {
        let c = Carriers::from_pairs(&[(
            "parameters",
            r#"{"prompt": "p", "negative_prompt": "n", "resolution": "1024 x 1024", "guidance_scale": 5.5, "num_inference_steps": 24, "seed": 443800072, "sampler": "DPM++ 2M Karras", "Model": "WAI", "Model hash": "BDB5", "use_upscaler": null}"#,
        )]);
        let mut ctx = Ctx::new(&c);
        let key = detect_hf_space(&ctx).unwrap();
        let m = parse_hf_space(&mut ctx, key);
        assert_eq!(m.width, Some(1024));
        assert_eq!(m.model_hash.as_deref(), Some("BDB5"));
        assert_eq!(m.loras, Some(vec![]));
        assert!(!m.params.contains_key("use_upscaler"));
    }
}
