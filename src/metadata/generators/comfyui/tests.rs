//! Tests of the graph walk: small hand-made graphs for each rule, and the real graphs of the
//! fixture files (`tests/fixtures/genmeta/`) against `expected.json`.

use super::{from_api_graph, from_graphs, from_ui_workflow};
use crate::metadata::{container, GenMeta, Lora};
use serde_json::{json, Value};
use std::path::Path;

fn fixtures() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/genmeta"
    ))
}

/// The folders whose files hold ComfyUI graphs.
const GRAPH_FOLDERS: &[&str] = &[
    "comfyui/",
    "comfyui-workflow-screenshot/",
    "civitai/",
    "stability-matrix/",
    "tensorart/",
];

/// The (API, UI) graphs of a fixture file, read through the container layer.
fn graphs(file: &str) -> (Option<Value>, Option<Value>) {
    if !GRAPH_FOLDERS.iter().any(|f| file.starts_with(f)) {
        return (None, None);
    }
    let bytes = std::fs::read(fixtures().join(file)).unwrap();
    let carriers = container::read_carriers(&mut std::io::Cursor::new(bytes)).unwrap();
    let (mut api, mut ui) = (None, None);
    for c in &carriers.entries {
        let text = c.value.trim_end_matches('\0');
        let body = ["prompt:", "workflow:", "Prompt:", "Workflow:"]
            .iter()
            .find_map(|p| text.strip_prefix(p))
            .unwrap_or(text)
            .trim();
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            continue;
        };
        if v.get("nodes").is_some() {
            ui.get_or_insert(v);
        } else if let Some(p) = v.get("prompt").filter(|p| p.is_object()) {
            api.get_or_insert(p.clone());
            if let Some(w) = v.get("workflow") {
                ui.get_or_insert(w.clone());
            }
        } else if body.contains("class_type") {
            api.get_or_insert(v);
        }
    }
    (api, ui)
}

fn norm(s: &str) -> String {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// Fields the graph cannot give for these files, which the caller takes from another carrier
/// (Civitai `extraMetadata`, Tensor.Art `generation_data`, Stability Matrix
/// `parameters-json`), or which `tests/genmeta.rs` excuses in `COMFYUI_DIFFERENCES`.
const NOT_FROM_GRAPH: &[(&str, &str)] = &[
    ("civitai/civitai-upscale.jpg", "*"),
    ("tensorart/tensorart.png", "model"),
    ("tensorart/tensorart.png", "negative_prompt"),
    ("tensorart/tensorart.png", "denoise"),
    ("stability-matrix/stability-matrix.png", "denoise"),
    // Stability Matrix drops `#` comments before queueing; `parameters-json` keeps them.
    ("stability-matrix/stability-matrix.png", "prompt"),
    ("comfyui/night_evening_day_morning.png", "prompt"),
];

/// The differences between the walk and `expected.json` for one fixture, as
/// `field: expected != got`. Sizes the walk leaves unknown are the pixel size (the caller
/// fills it in).
fn differences(exp: &Value, got: &GenMeta) -> Vec<String> {
    let file = exp["file"].as_str().unwrap();
    let skip = |field: &str| {
        NOT_FROM_GRAPH
            .iter()
            .any(|(f, k)| *f == file && (*k == field || *k == "*"))
    };
    let got_json = serde_json::to_value(got).unwrap();
    let mut out = Vec::new();
    for field in ["prompt", "negative_prompt"] {
        let e = exp[field].as_str().map(norm);
        let g = got_json[field].as_str().map(norm);
        if e != g && !skip(field) {
            out.push(format!("{field}: {e:?} != {g:?}"));
        }
    }
    for field in ["sampler", "scheduler", "model", "vae"] {
        if exp[field] != got_json[field] && !skip(field) {
            out.push(format!("{field}: {} != {}", exp[field], got_json[field]));
        }
    }
    for field in [
        "seed",
        "steps",
        "cfg",
        "width",
        "height",
        "clip_skip",
        "denoise",
    ] {
        let mut g = got_json[field].clone();
        if g.is_null() && (field == "width" || field == "height") {
            g = exp[format!("pixel_{field}").as_str()].clone();
        }
        let same = match (exp[field].as_f64(), g.as_f64()) {
            (Some(_), Some(_)) if field == "seed" => exp[field].as_u64() == g.as_u64(),
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            _ => exp[field].is_null() && g.is_null(),
        };
        if !same && !skip(field) {
            out.push(format!("{field}: {} != {}", exp[field], g));
        }
    }
    let loras_same = match (exp["loras"].as_array(), got.loras.as_ref()) {
        (Some(e), Some(g)) => {
            e.len() == g.len()
                && e.iter().zip(g).all(|(e, g)| {
                    e["name"] == g.name.as_str()
                        && e["weight"].as_f64() == g.weight
                        && e["clip_weight"].as_f64() == g.clip_weight
                })
        }
        (None, None) => true,
        _ => false,
    };
    if !loras_same && !skip("loras") {
        out.push(format!("loras: {} != {:?}", exp["loras"], got.loras));
    }
    out
}

/// Every fixture holding a ComfyUI graph gives the expected values, except the fields other
/// carriers decide and the excused derived ones.
#[test]
fn fixtures_match_expected() {
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    let mut walked = 0;
    for exp in &expected {
        let file = exp["file"].as_str().unwrap();
        let (api, ui) = graphs(file);
        if api.is_none() && ui.is_none() {
            continue;
        }
        walked += 1;
        let got = from_graphs(api.as_ref(), ui.as_ref()).unwrap();
        for d in differences(exp, &got) {
            failures.push(format!("{file}: {d}"));
        }
    }
    assert!(walked >= 30, "only {walked} fixtures have a graph");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Where a file holds both graphs, walking the UI graph gives what walking the API graph
/// gives: the converter names widgets, drops muted nodes and expands subgraphs as the
/// frontend does when it queues.
#[test]
fn ui_graph_agrees_with_api_graph() {
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    for exp in &expected {
        let file = exp["file"].as_str().unwrap();
        let (Some(api), Some(ui)) = graphs(file) else {
            continue;
        };
        // Legacy group nodes (`workflow>Base`) are not expanded.
        if [
            "comfyui/comfyui-group-nodes.png",
            "comfyui/sdxl_edit_model.png",
        ]
        .contains(&file)
        {
            continue;
        }
        let a = from_graphs(Some(&api), Some(&ui)).unwrap();
        let u = from_ui_workflow(&ui).unwrap();
        let (mut a, mut u) = (
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(u).unwrap(),
        );
        for v in [&mut a, &mut u] {
            v.as_object_mut().unwrap().remove("warnings");
        }
        if a != u {
            failures.push(format!("{file}:\n api {a}\n ui  {u}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- hand-made API graphs -----------------------------------------------------------------

/// A txt2img graph around a sampler node `"3"` (given), with checkpoint `"4"`, latent
/// `"5"`, prompts `"6"`/`"7"`, decode `"8"` and saver `"9"`; `extra` adds or replaces nodes.
fn txt2img(sampler: Value, extra: Value) -> Value {
    let mut g = json!({
        "3": sampler,
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
    });
    for (k, v) in extra.as_object().unwrap() {
        g[k] = v.clone();
    }
    g
}

fn ksampler(model: &str) -> Value {
    json!({"class_type": "KSampler", "inputs": {
        "seed": 42, "steps": 20, "cfg": 6.5, "sampler_name": "euler", "scheduler": "karras",
        "denoise": 1.0, "model": [model, 0], "positive": ["6", 0], "negative": ["7", 0],
        "latent_image": ["5", 0]}})
}

#[test]
fn ksampler_fields() {
    let m = from_api_graph(&txt2img(ksampler("4"), json!({}))).unwrap();
    assert_eq!(m.prompt.as_deref(), Some("a cat"));
    assert_eq!(m.negative_prompt.as_deref(), Some("blurry"));
    assert_eq!((m.seed, m.steps, m.cfg), (Some(42), Some(20), Some(6.5)));
    assert_eq!(m.sampler.as_deref(), Some("euler"));
    assert_eq!(m.scheduler.as_deref(), Some("karras"));
    assert_eq!(
        (m.width, m.height, m.denoise),
        (Some(832), Some(1216), Some(1.0))
    );
    assert_eq!(m.model.as_deref(), Some("base.safetensors"));
    assert_eq!(m.loras, Some(vec![]));
    assert_eq!((m.vae, m.clip_skip), (None, None));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn links_to_primitives_resolve() {
    let mut s = ksampler("4");
    s["inputs"]["seed"] = json!(["10", 0]);
    s["inputs"]["steps"] = json!(["11", 0]);
    s["inputs"]["cfg"] = json!(["12", 0]);
    let g = txt2img(
        s,
        json!({
            "10": {"class_type": "CR Seed", "inputs": {"seed": 18446744073709551615u64}},
            "11": {"class_type": "PrimitiveInt", "inputs": {"value": 28}},
            "12": {"class_type": "Float Literal (custom)", "inputs": {"float_value": 4.5}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["13", 0], "clip": ["4", 1]}},
            "13": {"class_type": "StringConcatenate",
                   "inputs": {"string_a": ["14", 0], "string_b": "night", "delimiter": ", "}},
            "14": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a cat"}},
        }),
    );
    let m = from_api_graph(&g).unwrap();
    assert_eq!(m.seed, Some(u64::MAX));
    assert_eq!((m.steps, m.cfg), (Some(28), Some(4.5)));
    assert_eq!(m.prompt.as_deref(), Some("a cat, night"));
}

#[test]
fn ksampler_advanced_with_refiner() {
    let base = json!({"class_type": "KSamplerAdvanced", "inputs": {
        "add_noise": "enable", "noise_seed": 7, "steps": 25, "cfg": 8.0, "sampler_name": "euler",
        "scheduler": "normal", "start_at_step": 0, "end_at_step": 20,
        "return_with_leftover_noise": "enable", "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}});
    let g = txt2img(
        base,
        json!({
            "11": {"class_type": "KSamplerAdvanced", "inputs": {
                "add_noise": "disable", "noise_seed": 0, "steps": 25, "cfg": 8.0,
                "sampler_name": "euler", "scheduler": "normal", "start_at_step": 20,
                "end_at_step": 10000, "return_with_leftover_noise": "disable",
                "model": ["12", 0], "positive": ["6", 0], "negative": ["7", 0],
                "latent_image": ["3", 0]}},
            "12": {"class_type": "CheckpointLoaderSimple",
                   "inputs": {"ckpt_name": "refiner.safetensors"}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["12", 2]}},
        }),
    );
    let m = from_api_graph(&g).unwrap();
    assert_eq!((m.seed, m.steps, m.denoise), (Some(7), Some(25), None));
    assert_eq!(m.model.as_deref(), Some("base.safetensors"));
    let p = &m.params;
    assert_eq!(p["passes"], "2");
    assert_eq!(p["refiner_model"], "refiner.safetensors");
    assert_eq!(p["refiner_start_step"], "20");
    assert!(!p.contains_key("refiner_prompt"), "same prompt");
}

#[test]
fn sampler_custom_reads_sampler_and_sigmas_nodes() {
    let s = json!({"class_type": "SamplerCustom", "inputs": {
        "add_noise": true, "noise_seed": 5, "cfg": 1.0, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "sampler": ["10", 0], "sigmas": ["11", 0],
        "latent_image": ["5", 0]}});
    let g = txt2img(
        s,
        json!({
            "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
            "11": {"class_type": "SDTurboScheduler", "inputs": {"steps": 1, "model": ["4", 0]}},
        }),
    );
    let m = from_api_graph(&g).unwrap();
    assert_eq!((m.seed, m.steps, m.cfg), (Some(5), Some(1), Some(1.0)));
    assert_eq!(m.sampler.as_deref(), Some("euler_ancestral"));
    assert_eq!(m.scheduler.as_deref(), Some("SDTurboScheduler"));
    assert_eq!(m.denoise, None);
}

#[test]
fn sampler_custom_advanced_with_guiders() {
    let s = json!({"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["10", 0], "guider": ["11", 0], "sampler": ["12", 0], "sigmas": ["13", 0],
        "latent_image": ["5", 0]}});
    let extra = json!({
        "10": {"class_type": "RandomNoise", "inputs": {"noise_seed": 99}},
        "11": {"class_type": "CFGGuider", "inputs": {
            "cfg": 3.5, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0]}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
        "13": {"class_type": "BasicScheduler",
               "inputs": {"scheduler": "beta", "steps": 30, "denoise": 0.9, "model": ["4", 0]}},
    });
    let m = from_api_graph(&txt2img(s.clone(), extra.clone())).unwrap();
    assert_eq!((m.seed, m.steps), (Some(99), Some(30)));
    assert_eq!((m.cfg, m.denoise), (Some(3.5), Some(0.9)));
    assert_eq!(m.sampler.as_deref(), Some("dpmpp_2m"));
    assert_eq!(m.scheduler.as_deref(), Some("beta"));
    assert_eq!(m.negative_prompt.as_deref(), Some("blurry"));
    assert_eq!(m.model.as_deref(), Some("base.safetensors"));

    // Flux: BasicGuider has no cfg and no negative; FluxGuidance is recorded.
    let mut flux = txt2img(s, extra);
    flux["11"] = json!({"class_type": "BasicGuider",
                        "inputs": {"model": ["4", 0], "conditioning": ["14", 0]}});
    flux["14"] = json!({"class_type": "FluxGuidance",
                        "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}});
    let m = from_api_graph(&flux).unwrap();
    assert_eq!(m.cfg, None);
    assert_eq!(m.prompt.as_deref(), Some("a cat"));
    assert_eq!(m.negative_prompt.as_deref(), Some(""));
    assert_eq!(m.params["guidance"], "3.5");
}

#[test]
fn unknown_node_with_seed_and_steps_is_a_sampler() {
    let s = json!({"class_type": "MySampler (custom)", "inputs": {
        "seed": 3, "steps": 12, "cfg": 2.0, "sampler_name": "lcm", "model": ["4", 0],
        "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}});
    let m = from_api_graph(&txt2img(s, json!({}))).unwrap();
    assert_eq!((m.seed, m.steps), (Some(3), Some(12)));
    assert_eq!(m.sampler.as_deref(), Some("lcm"));
    assert_eq!(m.prompt.as_deref(), Some("a cat"));
}

fn lora(name: &str, weight: f64, clip_weight: Option<f64>) -> Lora {
    Lora {
        name: name.into(),
        weight: Some(weight),
        clip_weight,
        hash: None,
    }
}

#[test]
fn lora_chains_in_application_order() {
    let g = txt2img(
        ksampler("12"),
        json!({
            "10": {"class_type": "LoraLoader", "inputs": {
                "lora_name": "first.safetensors", "strength_model": 0.8, "strength_clip": 0.5,
                "model": ["4", 0], "clip": ["4", 1]}},
            "11": {"class_type": "LoraLoaderModelOnly", "inputs": {
                "lora_name": "second.safetensors", "strength_model": 1.2, "model": ["10", 0]}},
            "12": {"class_type": "ModelSamplingDiscrete",
                   "inputs": {"sampling": "eps", "zsnr": false, "model": ["11", 0]}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["13", 0]}},
            "13": {"class_type": "CLIPSetLastLayer",
                   "inputs": {"stop_at_clip_layer": -2, "clip": ["10", 1]}},
        }),
    );
    let m = from_api_graph(&g).unwrap();
    assert_eq!(
        m.loras,
        Some(vec![
            lora("first.safetensors", 0.8, Some(0.5)),
            lora("second.safetensors", 1.2, None)
        ])
    );
    assert_eq!(m.model.as_deref(), Some("base.safetensors"));
    assert_eq!(m.clip_skip, Some(2));
}

#[test]
fn lora_stacks_skip_switched_off_slots() {
    let g = txt2img(
        ksampler("10"),
        json!({
            "10": {"class_type": "CR Apply LoRA Stack",
                   "inputs": {"model": ["12", 0], "clip": ["4", 1], "lora_stack": ["11", 0]}},
            "11": {"class_type": "CR LoRA Stack", "inputs": {
                "switch_1": "On", "lora_name_1": "a.safetensors", "model_weight_1": 0.7,
                "clip_weight_1": 0.6, "switch_2": "Off", "lora_name_2": "b.safetensors",
                "model_weight_2": 1.0, "clip_weight_2": 1.0, "switch_3": "On",
                "lora_name_3": "None", "model_weight_3": 1.0, "clip_weight_3": 1.0}},
            "12": {"class_type": "Power Lora Loader (rgthree)", "inputs": {
                "PowerLoraLoaderHeaderWidget": {"type": "PowerLoraLoaderHeaderWidget"},
                "lora_1": {"on": true, "lora": "c.safetensors", "strength": 0.9,
                           "strengthTwo": 0.4},
                "lora_2": {"on": false, "lora": "d.safetensors", "strength": 1.0},
                "➕ Add Lora": "", "model": ["4", 0], "clip": ["4", 1]}},
        }),
    );
    let m = from_api_graph(&g).unwrap();
    assert_eq!(
        m.loras,
        Some(vec![
            lora("c.safetensors", 0.9, Some(0.4)),
            lora("a.safetensors", 0.7, Some(0.6))
        ])
    );
}

#[test]
fn controlnet_apply_advanced_maps_outputs() {
    let mut s = ksampler("4");
    s["inputs"]["positive"] = json!(["10", 0]);
    s["inputs"]["negative"] = json!(["10", 1]);
    let g = txt2img(
        s,
        json!({
            "10": {"class_type": "ControlNetApplyAdvanced", "inputs": {
                "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0,
                "positive": ["6", 0], "negative": ["7", 0], "control_net": ["11", 0],
                "image": ["12", 0]}},
            "11": {"class_type": "ControlNetLoader",
                   "inputs": {"control_net_name": "canny.safetensors"}},
            "12": {"class_type": "LoadImage", "inputs": {"image": "pose.png"}},
        }),
    );
    let m = from_api_graph(&g).unwrap();
    assert_eq!(m.prompt.as_deref(), Some("a cat"));
    assert_eq!(m.negative_prompt.as_deref(), Some("blurry"));
    assert_eq!(m.params["controlnet"], "canny.safetensors");
}

#[test]
fn conditioning_zero_out_is_an_empty_negative() {
    let mut s = ksampler("4");
    s["inputs"]["negative"] = json!(["10", 0]);
    let zero = json!({"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}});
    let m = from_api_graph(&txt2img(s, json!({ "10": zero }))).unwrap();
    assert_eq!(m.negative_prompt.as_deref(), Some(""));
}

#[test]
fn area_prompts_are_joined_and_listed() {
    let mut s = ksampler("4");
    s["inputs"]["positive"] = json!(["10", 0]);
    let extra = json!({
        "10": {"class_type": "ConditioningCombine",
               "inputs": {"conditioning_1": ["11", 0], "conditioning_2": ["6", 0]}},
        "11": {"class_type": "ConditioningSetArea", "inputs": {
            "width": 704, "height": 384, "x": 0, "y": 64, "strength": 1.2,
            "conditioning": ["12", 0]}},
        "12": {"class_type": "CLIPTextEncode",
               "inputs": {"text": " night sky\n", "clip": ["4", 1]}},
    });
    let g = txt2img(s, extra);
    let m = from_api_graph(&g).unwrap();
    assert_eq!(m.prompt.as_deref(), Some("night sky\na cat"));
    assert_eq!(m.extra_prompts.len(), 1);
    let area = &m.extra_prompts[0];
    assert_eq!(
        (area.kind.as_str(), area.prompt.as_str()),
        ("area", "night sky")
    );
    assert_eq!(
        area.region.as_deref(),
        Some("x=0,y=64,w=704,h=384,strength=1.2")
    );
    // With the UI graph, the order is the one the inputs were connected in.
    let ui = json!({"nodes": [], "links": [[1, 6, 0, 10, 1, "CONDITIONING"],
                                            [2, 11, 0, 10, 0, "CONDITIONING"]]});
    let m = from_api_graph(&json!({"prompt": g, "workflow": ui})).unwrap();
    assert_eq!(m.prompt.as_deref(), Some("a cat\nnight sky"));
}

#[test]
fn output_choice_prefers_savers_and_longer_chains() {
    // A preview of the base pass and a saver of the upscaled pass.
    let g = txt2img(
        ksampler("4"),
        json!({
            "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
            "20": {"class_type": "LatentUpscaleBy",
                   "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5,
                              "samples": ["3", 0]}},
            "21": {"class_type": "KSampler", "inputs": {
                "seed": 43, "steps": 10, "cfg": 5.0, "sampler_name": "dpmpp_2m",
                "scheduler": "normal", "denoise": 0.45, "model": ["4", 0],
                "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["20", 0]}},
            "22": {"class_type": "VAEDecode", "inputs": {"samples": ["21", 0], "vae": ["23", 0]}},
            "23": {"class_type": "VAELoader", "inputs": {"vae_name": "vae.safetensors"}},
            "24": {"class_type": "Image Save", "inputs": {"images": ["22", 0]}},
        }),
    );
    let m = from_api_graph(&g).unwrap();
    assert_eq!(m.seed, Some(42), "the first pass");
    assert_eq!(
        m.vae.as_deref(),
        Some("vae.safetensors"),
        "the saved image's decode"
    );
    let p = &m.params;
    assert_eq!(
        (p["hires_steps"].as_str(), p["hires_denoise"].as_str()),
        ("10", "0.45")
    );
    assert_eq!(p["hires_upscale"], "x1.5");
    assert_eq!(p["hires_upscaler"], "nearest-exact");
}

#[test]
fn cyclic_graph_gives_a_partial_result() {
    let mut s = ksampler("10");
    s["inputs"]["latent_image"] = json!(["11", 0]);
    s["inputs"]["positive"] = json!(["12", 0]);
    let g = txt2img(
        s,
        json!({
            // A model loop, a latent loop through the sampler itself, a conditioning loop and
            // a text loop.
            "10": {"class_type": "LoraLoader", "inputs": {
                "lora_name": "x.safetensors", "strength_model": 1.0, "strength_clip": 1.0,
                "model": ["10", 0], "clip": ["4", 1]}},
            "11": {"class_type": "LatentUpscaleBy",
                   "inputs": {"upscale_method": "bilinear", "scale_by": 2.0, "samples": ["3", 0]}},
            "12": {"class_type": "ConditioningCombine",
                   "inputs": {"conditioning_1": ["13", 0], "conditioning_2": ["6", 0]}},
            "13": {"class_type": "ConditioningConcat",
                   "inputs": {"conditioning_to": ["12", 0], "conditioning_from": ["13", 0]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": ["14", 0], "clip": ["4", 1]}},
            "14": {"class_type": "StringConcatenate",
                   "inputs": {"string_a": ["15", 0], "string_b": "x", "delimiter": ""}},
            "15": {"class_type": "StringConcatenate",
                   "inputs": {"string_a": ["14", 0], "string_b": "y", "delimiter": ""}},
        }),
    );
    let m = from_api_graph(&g).unwrap();
    assert_eq!(m.seed, Some(42));
    assert_eq!(m.prompt.as_deref(), Some("a cat"));
    assert_eq!(m.model, None);
    assert!(!m.warnings.is_empty());
}

#[test]
fn missing_nodes_give_a_partial_result() {
    let mut s = ksampler("40");
    s["inputs"]["negative"] = json!(["41", 0]);
    s["inputs"]["steps"] = json!(["42", 0]);
    let mut g = txt2img(s, json!({}));
    g.as_object_mut().unwrap().remove("5");
    g["6"]["inputs"] = json!("not an object");
    let m = from_api_graph(&g).unwrap();
    assert_eq!((m.seed, m.steps, m.width), (Some(42), None, None));
    assert_eq!(
        (m.prompt.as_deref(), m.negative_prompt.as_deref()),
        (None, None)
    );
    assert_eq!((m.model.as_deref(), m.loras.as_ref()), (None, None));
    assert!(
        m.warnings.iter().any(|w| w.contains("41")),
        "{:?}",
        m.warnings
    );
}

#[test]
fn wrong_shapes_are_not_graphs() {
    for v in [
        json!(null),
        json!([1, 2]),
        json!({"a": 1}),
        json!({"1": {"inputs": {}}}),
    ] {
        assert!(from_api_graph(&v).is_none(), "{v}");
    }
    assert!(from_ui_workflow(&json!({"links": []})).is_none());
    // A graph of odd values does not panic.
    let odd = json!({"1": {"class_type": "KSampler", "inputs": {"seed": -1, "steps": "x",
        "cfg": [1, 2, 3], "positive": ["1", 0], "latent_image": ["1", 99]}}});
    let m = from_api_graph(&odd).unwrap();
    assert_eq!((m.seed, m.steps), (None, None));
    // The wrapped form, with the graph as a JSON string too.
    let g = txt2img(ksampler("4"), json!({}));
    let wrapped = json!({"prompt": g.to_string(), "workflow": null});
    assert_eq!(from_api_graph(&wrapped).unwrap().seed, Some(42));
}

// ---- UI graphs ----------------------------------------------------------------------------

/// A UI node: `inputs` as (name, type, link), `outputs` as types.
fn ui_node(
    id: i64,
    ty: &str,
    mode: i64,
    inputs: &[(&str, &str, Option<i64>)],
    outputs: &[&str],
    widgets: Value,
) -> Value {
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|(n, t, l)| json!({"name": n, "type": t, "link": l}))
        .collect();
    let outputs: Vec<Value> = outputs
        .iter()
        .map(|t| json!({"name": t, "type": t, "links": []}))
        .collect();
    json!({"id": id, "type": ty, "mode": mode, "inputs": inputs, "outputs": outputs,
           "widgets_values": widgets})
}

fn ui_link(id: i64, from: i64, from_slot: i64, to: i64, to_slot: i64, ty: &str) -> Value {
    json!([id, from, from_slot, to, to_slot, ty])
}

/// A UI txt2img graph: checkpoint 4 → LoRA 10 (in `lora_mode`) → KSampler 3 → decode 8 →
/// save 9, plus a muted second saver 11 and a note.
fn ui_graph(lora_mode: i64) -> Value {
    let (m, c, cond) = ("MODEL", "CLIP", "CONDITIONING");
    let ksampler_inputs = [
        ("model", m, Some(5)),
        ("positive", cond, Some(6)),
        ("negative", cond, Some(7)),
        ("latent_image", "LATENT", Some(8)),
    ];
    json!({
        "nodes": [
            ui_node(4, "CheckpointLoaderSimple", 0, &[], &[m, c, "VAE"], json!(["base.ckpt"])),
            ui_node(10, "LoraLoader", lora_mode, &[("model", m, Some(1)), ("clip", c, Some(2))],
                    &[m, c], json!(["style.safetensors", 0.7, 0.3])),
            ui_node(6, "CLIPTextEncode", 0, &[("clip", c, Some(3))], &[cond],
                    json!(["a cat /* hidden */"])),
            ui_node(7, "CLIPTextEncode", 0, &[("clip", c, Some(4))], &[cond], json!(["blurry"])),
            ui_node(5, "EmptyLatentImage", 0, &[], &["LATENT"], json!([512, 768, 1])),
            ui_node(3, "KSampler", 0, &ksampler_inputs, &["LATENT"],
                    json!([123, "randomize", 30, 7.5, "dpmpp_2m", "karras", 1])),
            ui_node(8, "VAEDecode", 0, &[("samples", "LATENT", Some(9)), ("vae", "VAE", Some(10))],
                    &["IMAGE"], json!([])),
            ui_node(9, "SaveImage", 0, &[("images", "IMAGE", Some(11))], &[], json!(["out"])),
            ui_node(11, "SaveImage", 2, &[("images", "IMAGE", Some(12))], &[], json!(["muted"])),
            ui_node(12, "Note", 0, &[], &[], json!(["just a note"])),
        ],
        "links": [
            ui_link(1, 4, 0, 10, 0, m), ui_link(2, 4, 1, 10, 1, c), ui_link(3, 10, 1, 6, 0, c),
            ui_link(4, 10, 1, 7, 0, c), ui_link(5, 10, 0, 3, 0, m), ui_link(6, 6, 0, 3, 1, cond),
            ui_link(7, 7, 0, 3, 2, cond), ui_link(8, 5, 0, 3, 3, "LATENT"),
            ui_link(9, 3, 0, 8, 0, "LATENT"), ui_link(10, 4, 2, 8, 1, "VAE"),
            ui_link(11, 8, 0, 9, 0, "IMAGE"), ui_link(12, 8, 0, 11, 0, "IMAGE"),
        ],
    })
}

#[test]
fn ui_graph_widgets_and_control_after_generate() {
    let m = from_ui_workflow(&ui_graph(0)).unwrap();
    assert_eq!((m.seed, m.steps, m.cfg), (Some(123), Some(30), Some(7.5)));
    assert_eq!(m.sampler.as_deref(), Some("dpmpp_2m"));
    assert_eq!(m.scheduler.as_deref(), Some("karras"));
    assert_eq!((m.width, m.height), (Some(512), Some(768)));
    assert_eq!(
        m.prompt.as_deref(),
        Some("a cat "),
        "comments are stripped as when queued"
    );
    assert_eq!(m.model.as_deref(), Some("base.ckpt"));
    assert_eq!(
        m.loras,
        Some(vec![lora("style.safetensors", 0.7, Some(0.3))])
    );
}

#[test]
fn ui_graph_bypassed_and_muted_nodes() {
    // Bypassed: the LoRA passes model and clip through.
    let m = from_ui_workflow(&ui_graph(4)).unwrap();
    assert_eq!(m.loras, Some(vec![]));
    assert_eq!(m.model.as_deref(), Some("base.ckpt"));
    assert_eq!(m.prompt.as_deref(), Some("a cat "));
    // Muted: its outputs feed nothing, so the sampler has no model.
    let m = from_ui_workflow(&ui_graph(2)).unwrap();
    assert_eq!((m.model.as_deref(), m.loras.as_ref()), (None, None));
    assert_eq!(m.seed, Some(123));
}

#[test]
fn ui_graph_subgraph_is_expanded() {
    // Node 30 instantiates a subgraph holding a KSampler whose seed is a promoted widget and
    // whose model, prompts and latent come from outside.
    let sub = "0c5d7e8a-1111-2222-3333-444455556666";
    let mut g = ui_graph(0);
    let nodes = g["nodes"].as_array_mut().unwrap();
    nodes.retain(|n| n["id"] != 3);
    nodes.push(json!({
        "id": 30, "type": sub, "mode": 0,
        "inputs": [
            {"name": "model", "type": "MODEL", "link": 5},
            {"name": "positive", "type": "CONDITIONING", "link": 6},
            {"name": "negative", "type": "CONDITIONING", "link": 7},
            {"name": "latent_image", "type": "LATENT", "link": 8},
            {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": null},
        ],
        "outputs": [{"name": "LATENT", "type": "LATENT", "links": [9]}],
        "widgets_values": [777],
    }));
    for link in g["links"].as_array_mut().unwrap() {
        for end in [1, 3] {
            if link[end] == 3 {
                link[end] = json!(30);
            }
        }
    }
    let inner = |id: i64, from: i64, from_slot: i64, to: i64, to_slot: i64| {
        json!({"id": id, "origin_id": from, "origin_slot": from_slot, "target_id": to,
               "target_slot": to_slot, "type": "*"})
    };
    let sampler_inputs = [
        ("model", "MODEL", Some(1)),
        ("positive", "CONDITIONING", Some(2)),
        ("negative", "CONDITIONING", Some(3)),
        ("latent_image", "LATENT", Some(4)),
        ("seed", "INT", Some(5)),
    ];
    let stale = json!([1, "fixed", 12, 4.0, "euler", "simple", 1]);
    g["definitions"] = json!({"subgraphs": [{
        "id": sub,
        "inputs": [{"name": "model"}, {"name": "positive"}, {"name": "negative"},
                   {"name": "latent_image"}, {"name": "seed"}],
        "outputs": [{"name": "LATENT"}],
        "nodes": [ui_node(1, "KSampler", 0, &sampler_inputs, &["LATENT"], stale)],
        "links": [inner(1, -10, 0, 1, 0), inner(2, -10, 1, 1, 1), inner(3, -10, 2, 1, 2),
                  inner(4, -10, 3, 1, 3), inner(5, -10, 4, 1, 4), inner(6, 1, 0, -20, 0)],
    }]});
    let m = from_ui_workflow(&g).unwrap();
    assert_eq!((m.seed, m.steps, m.cfg), (Some(777), Some(12), Some(4.0)));
    assert_eq!(m.prompt.as_deref(), Some("a cat "));
    assert_eq!(
        (m.width, m.model.as_deref()),
        (Some(512), Some("base.ckpt"))
    );
}

#[test]
fn ui_graph_with_cyclic_reroutes_stops() {
    let g = json!({
        "nodes": [
            ui_node(1, "Reroute", 0, &[("", "*", Some(2))], &["*"], json!([])),
            ui_node(2, "Reroute", 0, &[("", "*", Some(1))], &["*"], json!([])),
            ui_node(3, "SaveImage", 0, &[("images", "IMAGE", Some(3))], &[], json!(["x"])),
        ],
        "links": [ui_link(1, 2, 0, 1, 0, "*"), ui_link(2, 1, 0, 2, 0, "*"),
                  ui_link(3, 1, 0, 3, 0, "IMAGE")],
    });
    let m = from_ui_workflow(&g).unwrap();
    assert!(
        m.warnings.iter().any(|w| w.contains("cycle")),
        "{:?}",
        m.warnings
    );
}

#[test]
fn ui_graph_with_self_containing_subgraph_stops() {
    let sub = "11111111-2222-3333-4444-555555555555";
    let inst = |id: i64| json!({"id": id, "type": sub, "mode": 0, "inputs": [], "outputs": []});
    let g = json!({
        "nodes": [inst(1)],
        "links": [],
        "definitions": {"subgraphs": [{
            "id": sub, "inputs": [], "outputs": [],
            "nodes": (1..=10).map(inst).collect::<Vec<_>>(), "links": [],
        }]},
    });
    let m = from_ui_workflow(&g).unwrap();
    assert!(
        m.warnings.iter().any(|w| w.contains("not expanded")),
        "{:?}",
        m.warnings
    );
}
