//! Generators: detect which tool wrote a file and map its carriers onto [`GenMeta`].
//!
//! Detection goes most specific first (the A2 table of the format spec; `docs/metadata.md`):
//! InvokeAI (3 eras), SwarmUI, NovelAI, Tensor.Art, Stability Matrix, Fooocus, RuinedFooocus,
//! Hugging Face spaces, EasyDiffusion, Draw Things, Civitai's on-site graphs, ComfyUI graphs,
//! then the A1111 infotext family, then C2PA-only files. Each parser marks the carriers it
//! read; the rest are reported in `raw`.

mod comfy_carriers;
pub mod comfyui;
mod fooocus;
pub mod infotext;
mod invokeai;
mod novelai;
mod others;
mod swarmui;
pub(crate) mod util;

use super::{Carriers, GenMeta, RawCarrier};
use util::{cut_chars, parse_json_lenient, parse_json_object, Ctx};

/// The longest `raw` value kept, in characters.
const RAW_MAX_CHARS: usize = 4096;

/// Maps a file's carriers onto the generation fields.
pub fn parse(carriers: &Carriers) -> GenMeta {
    let mut ctx = Ctx::new(carriers);
    let mut m = detect_and_parse(&mut ctx);
    finish(&mut m, &ctx);
    m
}

/// The carriers an infotext may sit in, in order of preference.
const INFOTEXT_KEYS: &[&str] = &[
    "parameters",
    "exif:UserComment",
    "stealth",
    "Comment",
    "jpeg:comment",
    "postprocessing",
];

/// The first carrier holding an A1111-style infotext (and not a whole JSON value).
fn infotext_carrier<'a>(ctx: &Ctx<'a>) -> Option<(usize, &'a str)> {
    ctx.all_of(INFOTEXT_KEYS)
        .filter(|(_, c)| infotext::looks_like_infotext(&c.value))
        .filter(|(_, c)| parse_json_lenient(&c.value).is_none())
        .min_by_key(|(i, c)| {
            let rank = INFOTEXT_KEYS
                .iter()
                .position(|k| *k == c.key)
                .unwrap_or(usize::MAX);
            (rank, *i)
        })
        .map(|(i, c)| (i, c.value.as_str()))
}

/// The key of a `parameters` / `UserComment` carrier holding RuinedFooocus' JSON.
fn ruined_fooocus_key(ctx: &Ctx) -> Option<&'static str> {
    ["parameters", "exif:UserComment"].into_iter().find(|k| {
        ctx.value(k)
            .and_then(parse_json_object)
            .is_some_and(|v| fooocus::is_ruined(&v))
    })
}

fn detect_and_parse(ctx: &mut Ctx) -> GenMeta {
    if let Some(era) = invokeai::detect(ctx) {
        return invokeai::parse(ctx, era);
    }
    if let Some(key) = swarmui::detect(ctx) {
        return swarmui::parse(ctx, key);
    }
    if novelai::detect(ctx) {
        return novelai::parse(ctx);
    }
    if others::detect_tensorart(ctx) {
        return others::parse_tensorart(ctx);
    }
    if others::detect_stability_matrix(ctx) {
        return others::parse_stability_matrix(ctx);
    }
    if let Some(key) = ruined_fooocus_key(ctx) {
        return fooocus::parse_ruined(ctx, key);
    }
    if fooocus::detect(ctx) {
        return fooocus::parse(ctx);
    }
    if let Some(key) = others::detect_hf_space(ctx) {
        return others::parse_hf_space(ctx, key);
    }
    if let Some(source) = others::detect_easydiffusion(ctx) {
        return others::parse_easydiffusion(ctx, source);
    }
    if let Some(key) = others::detect_drawthings(ctx) {
        return others::parse_drawthings(ctx, key);
    }
    if let Some((index, graph, meta, extra)) = comfy_carriers::find_civitai(ctx) {
        return others::parse_civitai_graph(ctx, index, &graph, meta, extra);
    }
    if let Some(graphs) = comfy_carriers::find(ctx) {
        return parse_comfyui(ctx, graphs);
    }
    if let Some((index, text)) = infotext_carrier(ctx) {
        return parse_infotext(ctx, index, text);
    }
    if ctx.has("c2pa") {
        // A C2PA manifest (ChatGPT, Gemini, ...) says the image is generated but holds no
        // parameters; the manifest summary stays in `raw`.
        return GenMeta {
            generator: Some("c2pa".into()),
            ..GenMeta::default()
        };
    }
    GenMeta::default()
}

/// An A1111-family infotext.
fn parse_infotext(ctx: &mut Ctx, index: usize, text: &str) -> GenMeta {
    ctx.consume(index);
    ctx.consume_stealth_copies(text);
    let info = infotext::parse(text);
    let mut m = infotext::to_genmeta(&info);
    m.generator = Some(infotext::generator_of(&info).to_string());
    m
}

/// ComfyUI: the API graph when there is one, else the UI graph; a save node's infotext beside
/// the graph only when the graphs give nothing.
fn parse_comfyui(ctx: &mut Ctx, graphs: comfy_carriers::Graphs) -> GenMeta {
    for &i in &graphs.used {
        ctx.consume(i);
    }
    let mut warnings = graphs.warnings;
    let mut meta = graphs
        .api
        .as_ref()
        .and_then(|api| comfyui::from_graphs(Some(api), graphs.ui.as_ref()));
    if meta.is_none() {
        meta = graphs.ui.as_ref().and_then(comfyui::from_ui_workflow);
        if meta.is_some() && graphs.api.is_some() {
            warnings.push("the ComfyUI API graph gave no fields; read the UI graph".into());
        }
    }
    let mut m = match meta {
        Some(m) => m,
        None => match infotext_carrier(ctx) {
            Some((index, text)) => {
                ctx.consume(index);
                ctx.consume_stealth_copies(text);
                let mut m = infotext::to_genmeta(&infotext::parse(text));
                m.warnings.push(
                    "the ComfyUI graph gave no fields; read the infotext written beside it".into(),
                );
                m
            }
            None => GenMeta {
                warnings: vec!["the ComfyUI graph gave no generation fields".into()],
                ..GenMeta::default()
            },
        },
    };
    m.generator = Some("comfyui".into());
    m.warnings.extend(warnings);
    m
}

/// Fills what every generator shares: pixel size, size fallback, `raw`, container warnings.
fn finish(m: &mut GenMeta, ctx: &Ctx) {
    let c = ctx.carriers;
    m.pixel_width = c.pixel_width;
    m.pixel_height = c.pixel_height;
    if m.width.is_none() && m.height.is_none() {
        m.width = c.pixel_width;
        m.height = c.pixel_height;
    }
    m.raw = ctx
        .unread()
        .map(|c| RawCarrier {
            key: c.key.clone(),
            location: c.location.clone(),
            value: cut_chars(&c.value, RAW_MAX_CHARS),
        })
        .collect();
    if !c.warnings.is_empty() {
        let mut all = c.warnings.clone();
        all.append(&mut m.warnings);
        m.warnings = all;
    }
    // A generator-less result says nothing about LoRAs.
    if m.generator.is_none() {
        m.loras = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carriers(list: &[(&str, &str)]) -> Carriers {
        Carriers {
            pixel_width: Some(64),
            pixel_height: Some(32),
            ..Carriers::from_pairs(list)
        }
    }

    #[test]
    fn nothing_at_all() {
        let m = parse(&carriers(&[]));
        assert_eq!(m.generator, None);
        assert_eq!((m.width, m.height), (Some(64), Some(32)));
        assert_eq!((m.pixel_width, m.pixel_height), (Some(64), Some(32)));
        assert_eq!(m.loras, None);
    }

    #[test]
    fn noise_carriers_go_to_raw() {
        let long = "x".repeat(5000);
        let m = parse(&carriers(&[
            ("date:create", "2023-04-22"),
            ("jpeg:comment", &long),
        ]));
        assert_eq!(m.generator, None);
        assert_eq!(m.raw.len(), 2);
        assert_eq!(m.raw[1].value.chars().count(), 4096);
    }

    #[test]
    fn infotext_with_stealth_copy_and_size() {
        let text = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler, Seed: 5, Size: 512x768, Version: v1.10.1";
        let m = parse(&carriers(&[
            ("parameters", text),
            ("stealth", text),
            ("date:create", "x"),
        ]));
        assert_eq!(m.generator.as_deref(), Some("a1111"));
        assert_eq!((m.width, m.height), (Some(512), Some(768)));
        assert_eq!((m.pixel_width, m.pixel_height), (Some(64), Some(32)));
        assert_eq!(m.raw.len(), 1);
        assert_eq!(m.raw[0].key, "date:create");
        assert_eq!(m.params.get("Version").map(String::as_str), Some("v1.10.1"));
    }

    #[test]
    fn sdnext_json_prompt_is_still_an_infotext() {
        let text = "{\n  \"a\": 1\n}\nNegative prompt: \nSteps: 50, Size: 1024x1024, Seed: 1, CFG scale: 5, App: SD.Next";
        let mut c = carriers(&[("exif:UserComment", text)]);
        c.entries[0].location = "exif:ExifIFD".into();
        let m = parse(&c);
        assert_eq!(m.generator.as_deref(), Some("sdnext"));
        assert_eq!(m.prompt.as_deref(), Some("{\n\"a\": 1\n}"));
    }

    #[test]
    fn c2pa_only() {
        let m = parse(&carriers(&[("c2pa", "claim_generator: ChatGPT")]));
        assert_eq!(m.generator.as_deref(), Some("c2pa"));
        assert_eq!(m.prompt, None);
        assert_eq!(m.loras, None);
        assert_eq!(m.raw.len(), 1);
    }

    #[test]
    fn detection_order() {
        let sui = r#"{"sui_image_params": {"prompt": "p", "seed": 1}}"#;
        let m = parse(&carriers(&[
            ("parameters", sui),
            (
                "prompt",
                r#"{"1": {"class_type": "KSampler", "inputs": {}}}"#,
            ),
        ]));
        assert_eq!(m.generator.as_deref(), Some("swarmui"));
        // The graph SwarmUI ran is not read, so it stays in `raw`.
        assert_eq!(m.raw.len(), 1);

        let m = parse(&carriers(&[
            ("invokeai_metadata", "{}"),
            ("parameters", "a\nSteps: 1, Seed: 1, Sampler: x"),
        ]));
        assert_eq!(m.generator.as_deref(), Some("invokeai"));

        let m = parse(&carriers(&[(
            "parameters",
            r#"{"Prompt": "p", "software": "RuinedFooocus", "seed": 3}"#,
        )]));
        assert_eq!(m.generator.as_deref(), Some("ruined-fooocus"));
        assert_eq!(m.seed, Some(3));

        let m = parse(&carriers(&[("workflow", r#"{"nodes": [], "links": []}"#)]));
        assert_eq!(m.generator.as_deref(), Some("comfyui"));
        assert_eq!(m.raw.len(), 0);
    }

    #[test]
    fn civitai_upscale_graph_takes_extra_metadata() {
        let uc = r#"{"23":{"class_type":"UpscaleModelLoader","inputs":{"model_name":"urn:air:other:upscaler:civitai:147759@164821"}},"24":{"class_type":"ImageScale","inputs":{"width":1536,"height":1536,"image":["23",0]}},"12":{"class_type":"SaveImage","inputs":{"images":["24",0]}},"extra":{"airs":["urn:air:x"]},"extraMetadata":"{\"prompt\":\"p\",\"negativePrompt\":\"n\",\"cfgScale\":5,\"sampler\":\"Euler a\",\"clipSkip\":2,\"steps\":25,\"baseModel\":\"Illustrious\",\"width\":1024,\"height\":1024,\"seed\":1311178179,\"resources\":[{\"modelVersionId\":2514310,\"strength\":1}]}"}"#;
        let mut c = carriers(&[
            ("exif:UserComment", uc),
            ("exif:Software", "341bbc4f"),
            ("exif:Artist", "ai"),
        ]);
        c.pixel_width = Some(1536);
        c.pixel_height = Some(1536);
        let m = parse(&c);
        assert_eq!(m.generator.as_deref(), Some("civitai"));
        assert_eq!(m.model.as_deref(), Some("Illustrious"));
        assert_eq!((m.width, m.height), (Some(1024), Some(1024)));
        assert_eq!(m.seed, Some(1311178179));
        assert_eq!(m.clip_skip, Some(2));
        assert_eq!(m.loras, None);
        assert_eq!(m.scheduler, None);
        assert!(m.params.contains_key("resources"));
        assert!(m.params.contains_key("airs"));
    }

    #[test]
    fn never_panics_on_junk() {
        let junk = [
            "",
            "{",
            "[",
            "null",
            "NaN",
            "{\"a\":",
            "\0\0\0",
            "prompt:{",
            "Workflow: [1,2",
            "Steps: ",
            "Negative prompt:",
            "{\"sui_image_params\": 5}",
            "{\"Comment\": 5, \"Software\": \"NovelAI\"}",
        ];
        let keys = [
            "parameters",
            "prompt",
            "workflow",
            "exif:UserComment",
            "exif:Model",
            "exif:Make",
            "exif:ImageDescription",
            "stealth",
            "Comment",
            "Software",
            "Source",
            "Description",
            "invokeai_metadata",
            "sd-metadata",
            "Dream",
            "generation_data",
            "parameters-json",
            "smproj",
            "fooocus_scheme",
            "use_stable_diffusion_model",
            "xmp",
            "c2pa",
            "exif:MakerNote",
        ];
        for k in keys {
            for v in junk {
                let _ = parse(&carriers(&[(k, v)]));
                let _ = parse(&carriers(&[
                    (k, v),
                    ("Software", "NovelAI"),
                    ("fooocus_scheme", "fooocus"),
                ]));
            }
        }
    }
}
