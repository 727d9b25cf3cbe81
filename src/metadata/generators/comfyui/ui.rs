//! Turns a UI graph (the editor's `workflow`) into the API graph the walk reads.
//!
//! What the frontend does when it queues a prompt, as far as a reader can: muted nodes (mode
//! 2) are dropped, bypassed ones (mode 4) pass their input of the output's type through,
//! `Reroute`, `PrimitiveNode` and KJNodes `GetNode`/`SetNode` are resolved away, subgraph
//! instances (a node whose `type` is the id of one of `definitions.subgraphs`) are expanded
//! with ids `<instance>:<inner>`, and the positional `widgets_values` are named, skipping the
//! `control_after_generate` entry that follows a seed. Legacy group nodes (`workflow>Name`)
//! are not expanded.

use super::graph::CONTROL_VALUES;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Nested subgraphs deeper than this are not expanded.
const MAX_NESTING: usize = 8;
/// A chain of reroutes / bypasses longer than this is a cycle.
const MAX_HOPS: usize = 64;
/// Nodes emitted at most (a subgraph used many times multiplies them).
const MAX_NODES: usize = 20_000;
/// Subgraph instances expanded at most (a subgraph may, wrongly, hold instances of itself).
const MAX_SCOPES: usize = 2_000;

/// Nodes that exist only in the editor.
const UI_ONLY: &[&str] = &[
    "Note",
    "MarkdownNote",
    "Reroute",
    "PrimitiveNode",
    "GetNode",
    "SetNode",
    "Note Plus (mtb)",
    "Label (rgthree)",
    "Bookmark (rgthree)",
    "Fast Groups Bypasser (rgthree)",
    "Fast Groups Muter (rgthree)",
    "Fast Bypasser (rgthree)",
    "Fast Muter (rgthree)",
];

/// Widget names of the nodes the walk reads, in `widgets_values` order (without the
/// `control_after_generate` entries, which are skipped wherever they follow an integer).
/// Other nodes are named from their inputs' `widget` entries (newer frontends list them).
const WIDGETS: &[(&str, &[&str])] = &[
    (
        "KSampler",
        &[
            "seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "denoise",
        ],
    ),
    (
        "KSamplerAdvanced",
        &[
            "add_noise",
            "noise_seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "start_at_step",
            "end_at_step",
            "return_with_leftover_noise",
        ],
    ),
    ("SamplerCustom", &["add_noise", "noise_seed", "cfg"]),
    ("RandomNoise", &["noise_seed"]),
    ("KSamplerSelect", &["sampler_name"]),
    ("BasicScheduler", &["scheduler", "steps", "denoise"]),
    ("SDTurboScheduler", &["steps", "denoise"]),
    (
        "KarrasScheduler",
        &["steps", "sigma_max", "sigma_min", "rho"],
    ),
    ("ExponentialScheduler", &["steps", "sigma_max", "sigma_min"]),
    (
        "PolyexponentialScheduler",
        &["steps", "sigma_max", "sigma_min", "rho"],
    ),
    (
        "AlignYourStepsScheduler",
        &["model_type", "steps", "denoise"],
    ),
    ("BetaSamplingScheduler", &["steps", "alpha", "beta"]),
    ("CFGGuider", &["cfg"]),
    (
        "DualCFGGuider",
        &["cfg_conds", "cfg_cond2_negative", "style"],
    ),
    ("FluxGuidance", &["guidance"]),
    ("CLIPTextEncode", &["text"]),
    (
        "CLIPTextEncodeSDXL",
        &[
            "width",
            "height",
            "crop_w",
            "crop_h",
            "target_width",
            "target_height",
            "text_g",
            "text_l",
        ],
    ),
    (
        "CLIPTextEncodeSDXLRefiner",
        &["ascore", "width", "height", "text"],
    ),
    ("CLIPTextEncodeFlux", &["clip_l", "t5xxl", "guidance"]),
    (
        "CLIPTextEncodeSD3",
        &["clip_l", "clip_g", "t5xxl", "empty_padding"],
    ),
    ("CLIPTextEncodeHunyuanDiT", &["bert", "mt5xl"]),
    ("CheckpointLoaderSimple", &["ckpt_name"]),
    ("CheckpointLoader", &["config_name", "ckpt_name"]),
    ("unCLIPCheckpointLoader", &["ckpt_name"]),
    ("ImageOnlyCheckpointLoader", &["ckpt_name"]),
    ("UNETLoader", &["unet_name", "weight_dtype"]),
    ("UnetLoaderGGUF", &["unet_name"]),
    ("VAELoader", &["vae_name"]),
    ("CLIPLoader", &["clip_name", "type", "device"]),
    (
        "DualCLIPLoader",
        &["clip_name1", "clip_name2", "type", "device"],
    ),
    (
        "TripleCLIPLoader",
        &["clip_name1", "clip_name2", "clip_name3"],
    ),
    (
        "QuadrupleCLIPLoader",
        &["clip_name1", "clip_name2", "clip_name3", "clip_name4"],
    ),
    (
        "LoraLoader",
        &["lora_name", "strength_model", "strength_clip"],
    ),
    ("LoraLoaderModelOnly", &["lora_name", "strength_model"]),
    ("CLIPSetLastLayer", &["stop_at_clip_layer"]),
    ("EmptyLatentImage", &["width", "height", "batch_size"]),
    ("EmptySD3LatentImage", &["width", "height", "batch_size"]),
    (
        "EmptyHunyuanLatentVideo",
        &["width", "height", "length", "batch_size"],
    ),
    (
        "EmptyMochiLatentVideo",
        &["width", "height", "length", "batch_size"],
    ),
    (
        "EmptyLTXVLatentVideo",
        &["width", "height", "length", "batch_size"],
    ),
    (
        "EmptyCosmosLatentVideo",
        &["width", "height", "length", "batch_size"],
    ),
    (
        "StableCascade_EmptyLatentImage",
        &["width", "height", "compression", "batch_size"],
    ),
    (
        "LatentUpscale",
        &["upscale_method", "width", "height", "crop"],
    ),
    ("LatentUpscaleBy", &["upscale_method", "scale_by"]),
    ("ImageScale", &["upscale_method", "width", "height", "crop"]),
    ("ImageScaleBy", &["upscale_method", "scale_by"]),
    ("ImageScaleToTotalPixels", &["upscale_method", "megapixels"]),
    ("UpscaleModelLoader", &["model_name"]),
    (
        "ConditioningSetArea",
        &["width", "height", "x", "y", "strength"],
    ),
    (
        "ConditioningSetAreaPercentage",
        &["width", "height", "x", "y", "strength"],
    ),
    ("ConditioningSetAreaStrength", &["strength"]),
    ("ConditioningSetTimestepRange", &["start", "end"]),
    ("ConditioningAverage", &["conditioning_to_strength"]),
    ("ControlNetLoader", &["control_net_name"]),
    ("ControlNetApply", &["strength"]),
    (
        "ControlNetApplyAdvanced",
        &["strength", "start_percent", "end_percent"],
    ),
    (
        "ControlNetApplySD3",
        &["strength", "start_percent", "end_percent"],
    ),
    ("ModelSamplingSD3", &["shift"]),
    ("ModelSamplingAuraFlow", &["shift"]),
    ("ModelSamplingDiscrete", &["sampling", "zsnr"]),
    (
        "ModelSamplingFlux",
        &["max_shift", "base_shift", "width", "height"],
    ),
    ("PrimitiveString", &["value"]),
    ("PrimitiveStringMultiline", &["value"]),
    ("PrimitiveInt", &["value"]),
    ("PrimitiveFloat", &["value"]),
    ("PrimitiveBoolean", &["value"]),
    ("StringConcatenate", &["string_a", "string_b", "delimiter"]),
    ("ComfySwitchNode", &["switch"]),
    ("TextGenerate", &["prompt", "max_length"]),
    ("ShowText|pysssss", &["text_0"]),
    ("LoadImage", &["image", "upload"]),
    ("SaveImage", &["filename_prefix"]),
    ("CR Seed", &["seed"]),
    ("Seed (rgthree)", &["seed"]),
    (
        "CR LoRA Stack",
        &[
            "switch_1",
            "lora_name_1",
            "model_weight_1",
            "clip_weight_1",
            "switch_2",
            "lora_name_2",
            "model_weight_2",
            "clip_weight_2",
            "switch_3",
            "lora_name_3",
            "model_weight_3",
            "clip_weight_3",
        ],
    ),
    ("DF_Text_Box", &["Text"]),
    (
        "Power Prompt (rgthree)",
        &["prompt", "insert_lora", "insert_embedding"],
    ),
    (
        "SDXL Empty Latent Image (rgthree)",
        &["dimensions", "clip_scale", "batch_size"],
    ),
];

/// An API graph made from a UI graph.
pub(super) struct Converted {
    pub graph: Value,
    /// The editor's link ids by (source id, target id).
    pub link_order: HashMap<(String, String), i64>,
    pub warnings: Vec<String>,
}

/// The editor's link ids by (source id, target id), from a UI graph's top-level links.
pub(super) fn link_order(workflow: &Value) -> HashMap<(String, String), i64> {
    let mut order = HashMap::new();
    for (id, l) in workflow
        .get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(parse_link)
    {
        let e = order.entry((l.from, l.to)).or_insert(id);
        *e = (*e).min(id);
    }
    order
}

/// The API graph of a UI graph; `None` when `workflow` has no `nodes` list.
pub(super) fn to_api(workflow: &Value) -> Option<Converted> {
    let nodes = workflow.get("nodes")?.as_array()?;
    let subgraphs = workflow
        .pointer("/definitions/subgraphs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d.get("id")?.as_str()?, d)))
        .collect();
    let mut c = Converter {
        scopes: Vec::new(),
        children: HashMap::new(),
        subgraphs,
        out: Map::new(),
        link_order: HashMap::new(),
        warnings: Vec::new(),
    };
    c.scopes.push(Scope::new(
        String::new(),
        nodes,
        workflow.get("links"),
        None,
    ));
    c.expand(0, 0);
    Some(Converted {
        graph: Value::Object(c.out),
        link_order: c.link_order,
        warnings: c.warnings,
    })
}

struct Link {
    from: String,
    from_slot: u64,
    to: String,
    to_slot: u64,
}

/// `[id, from, from_slot, to, to_slot, type]`, or inside subgraphs `{id, origin_id,
/// origin_slot, target_id, target_slot, type}`.
fn parse_link(v: &Value) -> Option<(i64, Link)> {
    if let Some(a) = v.as_array() {
        return Some((
            a.first()?.as_i64()?,
            Link {
                from: id_of(a.get(1)?)?,
                from_slot: a.get(2)?.as_u64()?,
                to: id_of(a.get(3)?)?,
                to_slot: a.get(4)?.as_u64()?,
            },
        ));
    }
    Some((
        v.get("id")?.as_i64()?,
        Link {
            from: id_of(v.get("origin_id")?)?,
            from_slot: v.get("origin_slot")?.as_u64()?,
            to: id_of(v.get("target_id")?)?,
            to_slot: v.get("target_slot")?.as_u64()?,
        },
    ))
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The nodes and links of the top-level graph or of one subgraph instance.
struct Scope<'a> {
    /// Prepended to node ids: `""`, `"30:"`, `"30:5:"`.
    prefix: String,
    nodes: Vec<&'a Value>,
    by_id: HashMap<String, &'a Value>,
    links: HashMap<i64, Link>,
    /// The scope holding the instance node this scope expands, and that node.
    parent: Option<(usize, &'a Value)>,
}

impl<'a> Scope<'a> {
    fn new(
        prefix: String,
        nodes: &'a [Value],
        links: Option<&'a Value>,
        parent: Option<(usize, &'a Value)>,
    ) -> Self {
        let by_id = nodes
            .iter()
            .filter_map(|n| Some((id_of(n.get("id")?)?, n)))
            .collect();
        let links = links
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(parse_link)
            .collect();
        Scope {
            prefix,
            nodes: nodes.iter().collect(),
            by_id,
            links,
            parent,
        }
    }
}

struct Converter<'a> {
    scopes: Vec<Scope<'a>>,
    /// The scope of each expanded subgraph instance, by (parent scope, instance id).
    children: HashMap<(usize, String), usize>,
    subgraphs: HashMap<&'a str, &'a Value>,
    out: Map<String, Value>,
    link_order: HashMap<(String, String), i64>,
    warnings: Vec<String>,
}

fn node_type(n: &Value) -> &str {
    n.get("type").and_then(Value::as_str).unwrap_or("")
}

fn mode(n: &Value) -> i64 {
    n.get("mode").and_then(Value::as_i64).unwrap_or(0)
}

fn inputs(n: &Value) -> &[Value] {
    n.get("inputs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

impl<'a> Converter<'a> {
    fn warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    /// Emits every active node of a scope, expanding subgraph instances.
    fn expand(&mut self, scope: usize, nesting: usize) {
        let nodes = self.scopes[scope].nodes.clone();
        for node in nodes {
            if self.out.len() >= MAX_NODES {
                self.warn(format!("UI graph has more than {MAX_NODES} nodes: cut"));
                return;
            }
            let ty = node_type(node);
            if mode(node) == 2 || mode(node) == 4 || UI_ONLY.contains(&ty) {
                continue;
            }
            if self.subgraphs.contains_key(ty) {
                if let Some(child) = self.child(scope, node, nesting) {
                    self.expand(child, nesting + 1);
                }
            } else if ty.starts_with("workflow>") || ty.starts_with("workflow/") {
                self.warn(format!("group node {ty} is not expanded"));
            } else {
                self.emit(scope, node);
            }
        }
    }

    /// The scope of a subgraph instance, made on first use.
    fn child(&mut self, scope: usize, node: &'a Value, nesting: usize) -> Option<usize> {
        let id = id_of(node.get("id")?)?;
        if let Some(&c) = self.children.get(&(scope, id.clone())) {
            return Some(c);
        }
        if nesting >= MAX_NESTING || self.scopes.len() >= MAX_SCOPES {
            self.warn(format!(
                "subgraphs nested deeper than {MAX_NESTING} or used more than {MAX_SCOPES} \
                 times: not expanded"
            ));
            return None;
        }
        let def = *self.subgraphs.get(node_type(node))?;
        let nodes = def.get("nodes").and_then(Value::as_array)?;
        let prefix = format!("{}{id}:", self.scopes[scope].prefix);
        let child = Scope::new(prefix, nodes, def.get("links"), Some((scope, node)));
        self.scopes.push(child);
        let c = self.scopes.len() - 1;
        self.children.insert((scope, id), c);
        Some(c)
    }

    /// Emits one node as `{class_type, inputs, _meta}`.
    fn emit(&mut self, scope: usize, node: &'a Value) {
        let Some(id) = node.get("id").and_then(id_of) else {
            return;
        };
        let api_id = format!("{}{id}", self.scopes[scope].prefix);
        let ty = node_type(node);
        let mut map: Map<String, Value> = widget_values(node).into_iter().collect();
        for input in inputs(node) {
            let Some(name) = input.get("name").and_then(Value::as_str) else {
                continue;
            };
            let Some(link) = input.get("link").and_then(Value::as_i64) else {
                continue;
            };
            match self.resolve_link(scope, link, 0) {
                Some(v) => {
                    if let Some(src) = v.as_array().and_then(|a| a.first()).and_then(Value::as_str)
                    {
                        let e = self
                            .link_order
                            .entry((src.to_string(), api_id.clone()))
                            .or_insert(link);
                        *e = (*e).min(link);
                    }
                    map.insert(name.to_string(), v);
                }
                None => {
                    map.remove(name);
                }
            }
        }
        let title = node.get("title").and_then(Value::as_str).unwrap_or(ty);
        self.out.insert(
            api_id,
            json!({"class_type": ty, "inputs": map, "_meta": {"title": title}}),
        );
    }

    fn resolve_link(&mut self, scope: usize, link: i64, hops: usize) -> Option<Value> {
        let Some(l) = self.scopes[scope].links.get(&link) else {
            self.warn(format!("link {link} is not in the UI graph"));
            return None;
        };
        let (from, slot) = (l.from.clone(), l.from_slot);
        self.resolve_source(scope, &from, slot, hops + 1)
    }

    /// What an input linked to output `slot` of node `from` receives: an API link, a
    /// literal (a primitive, a subgraph's widget), or nothing (a muted source).
    fn resolve_source(
        &mut self,
        scope: usize,
        from: &str,
        slot: u64,
        hops: usize,
    ) -> Option<Value> {
        if hops > MAX_HOPS {
            self.warn("the UI graph's links form a cycle".into());
            return None;
        }
        if from == "-10" {
            return self.subgraph_input(scope, slot, hops);
        }
        let Some(&node) = self.scopes[scope].by_id.get(from) else {
            self.warn(format!(
                "a link names node {from}, which is not in the UI graph"
            ));
            return None;
        };
        let ty = node_type(node);
        if mode(node) == 2 {
            return None;
        }
        if mode(node) == 4 {
            let link = bypass_input(node, slot)?;
            return self.resolve_link(scope, link, hops);
        }
        match ty {
            "Reroute" => {
                let link = inputs(node).first()?.get("link")?.as_i64()?;
                self.resolve_link(scope, link, hops)
            }
            "PrimitiveNode" => node.pointer("/widgets_values/0").cloned(),
            "GetNode" => {
                let name = node.pointer("/widgets_values/0")?.clone();
                let set = self.scopes[scope].nodes.iter().copied().find(|n| {
                    node_type(n) == "SetNode" && n.pointer("/widgets_values/0") == Some(&name)
                })?;
                let link = inputs(set).first()?.get("link")?.as_i64()?;
                self.resolve_link(scope, link, hops)
            }
            _ if self.subgraphs.contains_key(ty) => {
                let child = self.child(scope, node, 0)?;
                let inner = self.scopes[child]
                    .links
                    .values()
                    .find(|l| l.to == "-20" && l.to_slot == slot)?;
                let (from, from_slot) = (inner.from.clone(), inner.from_slot);
                self.resolve_source(child, &from, from_slot, hops + 1)
            }
            _ => Some(json!([
                format!("{}{from}", self.scopes[scope].prefix),
                slot
            ])),
        }
    }

    /// Subgraph input `slot`: what the instance node's input of that index receives.
    fn subgraph_input(&mut self, scope: usize, slot: u64, hops: usize) -> Option<Value> {
        let (parent, inst) = self.scopes[scope].parent?;
        let slot = usize::try_from(slot).ok()?;
        // Match the instance's input by the subgraph input's name, else by index.
        let name = self.subgraphs.get(node_type(inst)).and_then(|d| {
            d.get("inputs")?
                .as_array()?
                .get(slot)?
                .get("name")?
                .as_str()
        });
        let input = name
            .and_then(|n| {
                inputs(inst)
                    .iter()
                    .find(|i| i.get("name").and_then(Value::as_str) == Some(n))
            })
            .or_else(|| inputs(inst).get(slot))?;
        if let Some(link) = input.get("link").and_then(Value::as_i64) {
            return self.resolve_link(parent, link, hops);
        }
        let name = input.get("name")?.as_str()?;
        widget_values(inst)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The link a bypassed node passes to its output `slot`: the input of the same type, the
/// same-index one first.
fn bypass_input(node: &Value, slot: u64) -> Option<i64> {
    let ty = node
        .get("outputs")?
        .as_array()?
        .get(usize::try_from(slot).ok()?)?
        .get("type")?
        .as_str()?;
    let ins = inputs(node);
    let linked = |i: &Value| {
        (i.get("type").and_then(Value::as_str) == Some(ty))
            .then(|| i.get("link").and_then(Value::as_i64))
            .flatten()
    };
    ins.get(usize::try_from(slot).ok()?)
        .and_then(linked)
        .or_else(|| ins.iter().find_map(linked))
}

/// A node's widget values by name.
fn widget_values(node: &Value) -> Vec<(String, Value)> {
    let ty = node_type(node);
    match node.get("widgets_values") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(Value::Array(values)) if ty == "Power Lora Loader (rgthree)" => values
            .iter()
            .filter(|v| v.get("lora").is_some())
            .enumerate()
            .map(|(i, v)| (format!("lora_{}", i + 1), v.clone()))
            .collect(),
        Some(Value::Array(values)) => {
            let known = WIDGETS.iter().find(|(t, _)| *t == ty);
            let names: Vec<String> = match known {
                Some((_, names)) => names.iter().map(|s| s.to_string()).collect(),
                None => inputs(node)
                    .iter()
                    .filter_map(|i| {
                        let w = i.get("widget")?;
                        w.get("name")
                            .or(i.get("name"))?
                            .as_str()
                            .map(str::to_string)
                    })
                    .collect(),
            };
            let mut named = name_values(&names, values, known.is_some());
            for (name, v) in &mut named {
                if let (true, Value::String(s)) = (DYNAMIC_PROMPTS.contains(&name.as_str()), &v) {
                    *v = Value::String(strip_block_comments(s));
                }
            }
            named
        }
        _ => Vec::new(),
    }
}

/// Prompt widgets the frontend preprocesses before queueing (`dynamicPrompts`).
const DYNAMIC_PROMPTS: &[&str] = &[
    "text", "text_g", "text_l", "clip_l", "clip_g", "t5xxl", "prompt", "Text",
];

/// Removes `/* ... */` comments, as the frontend does to prompt widgets before queueing (an
/// unclosed one runs to the end). `//` line comments and `{a|b}` choices are left alone: no
/// sample shows what the frontend does with them.
fn strip_block_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = match rest[start + 2..].find("*/") {
            Some(end) => &rest[start + 2 + end + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Pairs names with positional values; an integer followed by a `control_after_generate`
/// value (`randomize`, `fixed`, ...) takes that value with it. In the oldest graphs the
/// control was a boolean after the seed; that is skipped only for `known` nodes, whose
/// widget after the seed is never a boolean.
fn name_values(names: &[String], values: &[Value], known: bool) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut i = 0;
    for name in names {
        let Some(v) = values.get(i) else { break };
        i += 1;
        out.push((name.clone(), v.clone()));
        let is_int = v.as_i64().is_some() || v.as_u64().is_some();
        let control = match values.get(i) {
            Some(Value::String(s)) => CONTROL_VALUES.contains(&s.as_str()),
            Some(Value::Bool(_)) => known && name.contains("seed"),
            _ => false,
        };
        if is_int && control {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_after_generate_shifts_later_widgets() {
        let names: Vec<String> = ["seed", "steps", "cfg"].map(String::from).to_vec();
        let values = [json!(5), json!("randomize"), json!(20), json!(7.5)];
        let got = name_values(&names, &values, false);
        assert_eq!(got[1], ("steps".into(), json!(20)));
        assert_eq!(got[2], ("cfg".into(), json!(7.5)));
        // Without the control entry nothing shifts.
        let got = name_values(&names, &[json!(5), json!(20), json!(7.5)], false);
        assert_eq!(got[2], ("cfg".into(), json!(7.5)));
        // The oldest graphs stored a boolean; for unknown nodes it may be a real widget.
        let values = [json!(5), json!(true), json!(20), json!(7.5)];
        assert_eq!(
            name_values(&names, &values, true)[1],
            ("steps".into(), json!(20))
        );
        assert_eq!(
            name_values(&names, &values, false)[1],
            ("steps".into(), json!(true))
        );
    }

    #[test]
    fn block_comments_are_stripped() {
        assert_eq!(strip_block_comments("a, /* b */c /* d"), "a, c ");
        assert_eq!(strip_block_comments("no comment"), "no comment");
    }

    #[test]
    fn links_in_both_shapes() {
        let (id, l) = parse_link(&json!([7, 3, 1, 9, 0, "LATENT"])).unwrap();
        assert_eq!(
            (id, l.from.as_str(), l.from_slot, l.to.as_str()),
            (7, "3", 1, "9")
        );
        let (id, l) = parse_link(&json!({"id": 8, "origin_id": -10, "origin_slot": 2,
            "target_id": 4, "target_slot": 0, "type": "INT"}))
        .unwrap();
        assert_eq!(
            (id, l.from.as_str(), l.from_slot, l.to.as_str()),
            (8, "-10", 2, "4")
        );
        assert!(parse_link(&json!(null)).is_none());
    }
}
