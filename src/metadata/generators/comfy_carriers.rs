//! Where ComfyUI's graphs sit in a file, and which tool put them there: PNG `prompt` /
//! `workflow`; EXIF `Model` = `prompt:{…}` / `Make` = `workflow:{…}` (core SaveAnimatedWEBP
//! and friends); `ImageDescription` = `Workflow: …` / `Make` = `Prompt: …` (SaveImageExtended);
//! IFD0 `UserComment` = `{"prompt": …, "workflow": …}` (SaveImagePlus). The graph walk itself
//! is in [`super::comfyui`].

use super::util::{parse_json_lenient, parse_json_object, Ctx};
use serde_json::Value;

/// The ComfyUI graphs found, and the carriers they came from.
#[derive(Debug, Default)]
pub struct Graphs {
    /// The executed (API) graph: `{"<id>": {"class_type", "inputs"}}`.
    pub api: Option<Value>,
    /// The editor (UI) graph: `{"nodes": [...], "links": [...]}`.
    pub ui: Option<Value>,
    /// Indices of the carriers holding them.
    pub used: Vec<usize>,
    /// Graph carriers that did not parse.
    pub warnings: Vec<String>,
}

/// Whether a value is an API graph: an object with at least one `{"class_type": "…"}` node.
pub fn is_api_graph(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        o.values()
            .any(|n| n.get("class_type").is_some_and(Value::is_string))
    })
}

/// Whether a value is a UI graph.
pub fn is_ui_graph(v: &Value) -> bool {
    v.get("nodes").is_some_and(Value::is_array)
}

/// A graph given either as JSON or as a JSON string holding JSON.
fn graph_value(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => parse_json_lenient(s),
        Value::Object(_) => Some(v.clone()),
        _ => None,
    }
}

/// The EXIF text carriers ComfyUI savers write into, with a `prompt:` / `workflow:` prefix.
const EXIF_KEYS: &[&str] = &[
    "exif:Model",
    "exif:Make",
    "exif:ImageDescription",
    "exif:Software",
    "exif:Artist",
    "exif:Copyright",
    "exif:DocumentName",
];

/// Strips a case-insensitive `prompt:` / `workflow:` prefix (and the space after it).
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let t = text.trim_start_matches('\0').trim_start();
    let head = t.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| t[prefix.len()..].trim_start())
}

/// Collects the ComfyUI graphs of a file. `None` when there is none.
pub fn find(ctx: &Ctx) -> Option<Graphs> {
    fn note(g: &mut Graphs, i: usize, key: &str, v: Option<Value>, want_api: bool) {
        match v {
            Some(v) if want_api && is_api_graph(&v) => {
                if g.api.is_none() {
                    g.api = Some(v);
                }
                g.used.push(i);
            }
            Some(v) if !want_api && is_ui_graph(&v) => {
                if g.ui.is_none() {
                    g.ui = Some(v);
                }
                g.used.push(i);
            }
            Some(_) => {}
            None => g
                .warnings
                .push(format!("{key}: ComfyUI graph is not valid JSON")),
        }
    }
    let mut g = Graphs::default();
    for (i, c) in ctx.carriers.entries.iter().enumerate() {
        match c.key.as_str() {
            "prompt" => {
                let v = parse_json_lenient(&c.value);
                if v.as_ref().is_some_and(is_api_graph)
                    || v.is_none() && c.value.contains("class_type")
                {
                    note(&mut g, i, &c.key, v, true);
                }
            }
            "workflow" => {
                let v = parse_json_lenient(&c.value);
                if v.as_ref().is_some_and(is_ui_graph) || v.is_none() && c.value.contains("nodes") {
                    note(&mut g, i, &c.key, v, false);
                }
            }
            k if EXIF_KEYS.contains(&k) => {
                if let Some(rest) = strip_prefix_ci(&c.value, "prompt:") {
                    note(&mut g, i, k, parse_json_lenient(rest), true);
                } else if let Some(rest) = strip_prefix_ci(&c.value, "workflow:") {
                    note(&mut g, i, k, parse_json_lenient(rest), false);
                }
            }
            "exif:UserComment" | "Comment" | "jpeg:comment" => {
                // SaveImagePlus: {"prompt": {…}, "workflow": {…}}.
                if let Some(obj) = parse_json_object(&c.value) {
                    let api = obj.get("prompt").and_then(graph_value).filter(is_api_graph);
                    let ui = obj
                        .get("workflow")
                        .and_then(graph_value)
                        .filter(is_ui_graph);
                    if api.is_some() || ui.is_some() {
                        if g.api.is_none() {
                            g.api = api;
                        }
                        if g.ui.is_none() {
                            g.ui = ui;
                        }
                        g.used.push(i);
                    }
                }
            }
            _ => {}
        }
    }
    (g.api.is_some() || g.ui.is_some() || !g.warnings.is_empty()).then_some(g)
}

/// Civitai's on-site graph: a JSON object holding API-graph nodes plus `extraMetadata` (a JSON
/// string of the real parameters) and `extra`. Returns the carrier index, the graph without
/// those two keys, and the parsed `extraMetadata` / `extra`.
pub fn find_civitai(ctx: &Ctx) -> Option<(usize, Value, Option<Value>, Option<Value>)> {
    ctx.carriers.entries.iter().enumerate().find_map(|(i, c)| {
        if !matches!(c.key.as_str(), "exif:UserComment" | "prompt" | "parameters") {
            return None;
        }
        if !c.value.contains("extraMetadata") {
            return None;
        }
        let Value::Object(mut obj) = parse_json_object(&c.value)? else {
            return None;
        };
        let extra_meta = obj.remove("extraMetadata");
        let extra = obj.remove("extra");
        let graph = Value::Object(obj);
        if !is_api_graph(&graph) || extra_meta.is_none() {
            return None;
        }
        let extra_meta = extra_meta.as_ref().and_then(graph_value);
        Some((i, graph, extra_meta, extra))
    })
}

/// The seed of the only sampler node of an API graph whose seed is a literal: a fallback when
/// the graph walk gives none (Tensor.Art keeps its real seed only there).
pub fn lone_sampler_seed(graph: &Value) -> Option<u64> {
    let nodes = graph.as_object()?;
    let seeds: Vec<u64> = nodes
        .values()
        .filter(|n| {
            n.get("class_type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains("Sampler") || t.contains("RandomNoise"))
        })
        .filter_map(|n| {
            let inputs = n.get("inputs")?;
            inputs
                .get("seed")
                .or_else(|| inputs.get("noise_seed"))
                .and_then(super::util::seed_of)
        })
        .collect();
    match seeds.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Carriers;

    const API: &str = r#"{"3": {"class_type": "KSampler", "inputs": {"seed": 5, "cfg": NaN}}}"#;

    #[test]
    fn png_prompt_with_nan_and_workflow() {
        let c = Carriers::from_pairs(&[
            ("prompt", API),
            ("workflow", r#"{"nodes": [], "links": []}"#),
        ]);
        let g = find(&Ctx::new(&c)).unwrap();
        assert!(g.api.is_some() && g.ui.is_some());
        assert_eq!(g.used, vec![0, 1]);
        assert!(g.api.unwrap()["3"]["inputs"]["cfg"].is_null());
    }

    #[test]
    fn exif_prefixes() {
        let c = Carriers::from_pairs(&[
            ("exif:Model", &format!("prompt:{API}")),
            ("exif:Make", r#"workflow:{"nodes": []}"#),
        ]);
        let g = find(&Ctx::new(&c)).unwrap();
        assert!(g.api.is_some() && g.ui.is_some());
        let c = Carriers::from_pairs(&[
            ("exif:ImageDescription", r#"Workflow: {"nodes": []}"#),
            ("exif:Make", &format!("Prompt: {API}")),
        ]);
        let g = find(&Ctx::new(&c)).unwrap();
        assert!(g.api.is_some() && g.ui.is_some());
    }

    #[test]
    fn save_image_plus_user_comment() {
        let c = Carriers::from_pairs(&[(
            "exif:UserComment",
            &format!(r#"{{"prompt": {API}, "workflow": {{"nodes": []}}}}"#),
        )]);
        let g = find(&Ctx::new(&c)).unwrap();
        assert!(g.api.is_some() && g.ui.is_some());
    }

    #[test]
    fn civitai_graph_and_lone_seed() {
        let c = Carriers::from_pairs(&[(
            "exif:UserComment",
            r#"{"12": {"class_type": "SaveImage", "inputs": {}}, "extra": {"airs": []}, "extraMetadata": "{\"seed\": 9}"}"#,
        )]);
        let (i, graph, meta, extra) = find_civitai(&Ctx::new(&c)).unwrap();
        assert_eq!(i, 0);
        assert!(graph.get("extra").is_none());
        assert_eq!(meta.unwrap()["seed"], 9);
        assert!(extra.is_some());
        assert_eq!(
            lone_sampler_seed(&parse_json_lenient(API).unwrap()),
            Some(5)
        );
    }

    #[test]
    fn no_graph_no_result() {
        let c = Carriers::from_pairs(&[("prompt", "a cat"), ("exif:Make", "Canon")]);
        assert!(find(&Ctx::new(&c)).is_none());
    }
}
