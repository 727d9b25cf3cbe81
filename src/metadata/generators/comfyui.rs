//! ComfyUI: the generation settings from the executed (API) graph, or from the editor (UI)
//! graph when that is all a file has.
//!
//! Owns the graph walk only; finding the graph JSON in a file (PNG `prompt`/`workflow`, EXIF
//! `Model`/`Make`, UserComment) and filling `generator` and the pixel size is the caller's
//! (`comfy_carriers.rs`, `mod.rs`). The walk, as `docs/metadata.md` ("ComfyUI") describes it:
//! 1. pick the output node (a saver before a preview; the one fed by most samplers);
//! 2. walk back breadth-first through image and latent links; the farthest sampler is the
//!    first pass, whose seed, steps, cfg, sampler, scheduler and denoise are reported, and
//!    the samplers on the way back to the output are hires / refiner passes (`params`);
//! 3. from the first pass follow the prompt through conditioning nodes to the encoders, the
//!    model through LoRA and patch nodes to the loader, the latent to its empty-latent size,
//!    the encoder's clip to `CLIPSetLastLayer` and the text-encoder loaders;
//! 4. the VAE is reported when the decode nearest the output uses a `VAELoader`.
//!
//! A UI graph is first turned into an API graph (`ui.rs`), then walked the same way. Any
//! malformed graph (cycles, missing nodes, wrong types) gives a partial result with
//! warnings: every chain is bounded by a depth limit and the whole walk by a step budget.

mod chains;
mod graph;
mod sampler;
mod ui;

#[cfg(test)]
mod tests;

use crate::metadata::{ExtraPrompt, GenMeta};
use chains::{Conditioning, ModelChain};
use graph::{Graph, Node};
use sampler::{is_image_input, is_output_class, is_sampler, Pass, Upstream};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// The generation fields from an API graph (`{"<id>": {"class_type", "inputs"}}`), also in
/// the wrapped form `{"prompt": {...}, "workflow": {...}}` (SaveImagePlus; callers holding
/// both graphs may pass them so too: the UI links then order combined prompts the way the
/// editor connected them). `None` when the value is not an API graph. `generator` and
/// `pixel_*` are left for the caller.
pub fn from_api_graph(graph: &Value) -> Option<GenMeta> {
    let parsed: Value;
    let (prompt, workflow) = match graph.get("prompt") {
        Some(p @ Value::Object(o)) if !o.contains_key("class_type") => (p, graph.get("workflow")),
        Some(Value::String(s)) if graph.get("class_type").is_none() => {
            parsed = serde_json::from_str(s).ok()?;
            (&parsed, graph.get("workflow"))
        }
        _ => (graph, None),
    };
    let order = workflow.map(ui::link_order).unwrap_or_default();
    let g = Graph::new(prompt, order)?;
    Some(walk(&g))
}

/// The generation fields from whichever graphs a file holds: the API graph when there is one
/// (ordered by the UI graph's links when both exist), else the UI graph.
pub fn from_graphs(api: Option<&Value>, ui: Option<&Value>) -> Option<GenMeta> {
    let Some(api) = api else {
        return ui.and_then(from_ui_workflow);
    };
    let order = ui.map(ui::link_order).unwrap_or_default();
    Graph::new(api, order)
        .map(|g| walk(&g))
        .or_else(|| ui.and_then(from_ui_workflow))
}

/// The generation fields from a UI graph (`{"nodes": [...], "links": [...]}`): muted nodes
/// are dropped, bypassed ones passed through, subgraphs expanded, widget values mapped to
/// inputs. `None` when the value is not a UI graph.
pub fn from_ui_workflow(workflow: &Value) -> Option<GenMeta> {
    let converted = ui::to_api(workflow)?;
    let mut meta = match Graph::new(&converted.graph, converted.link_order) {
        Some(g) => walk(&g),
        None => GenMeta {
            warnings: vec!["the UI graph has no active node".into()],
            ..GenMeta::default()
        },
    };
    meta.warnings.splice(0..0, converted.warnings);
    Some(meta)
}

/// Walks a graph from its output to the first pass.
fn walk(g: &Graph) -> GenMeta {
    let mut meta = GenMeta::default();
    let Some(output) = choose_output(g) else {
        g.warn("no output node (saver, preview) and no sampler found");
        meta.warnings = g.take_warnings();
        return meta;
    };
    let up = sampler::upstream(g, output, false);
    let chain = pass_chain(g, &up, output);
    match chain.first() {
        Some(&first) => first_pass(g, &g.nodes()[first], &mut meta),
        None => g.warn("no sampler found upstream of the output"),
    }
    later_passes(g, &chain, &mut meta);
    // Upscales after the last sampler (or anywhere, when there is none), nearest the output
    // first: the last resize decides the size.
    let after = match chain.last() {
        Some(&last) => {
            let mut tail = path_nodes(&up, Some(last), output);
            tail.reverse();
            tail
        }
        None => up.order.clone(),
    };
    put_upscale(g, &after, "", &mut meta.params);
    meta.vae = vae(g, &up);
    meta.warnings = g.take_warnings();
    meta
}

/// The output node: a saver before a preview before any node nothing reads, and among those
/// the one the most samplers feed (graphs often save a base and an upscaled image); the
/// first in graph order on a tie.
fn choose_output(g: &Graph) -> Option<usize> {
    let nodes = g.nodes();
    let takes_images = |n: &Node| {
        n.inputs()
            .any(|(k, v)| k.contains("image") && is_image_input(k) && g.link(v).is_some())
    };
    let referenced: HashSet<usize> = nodes
        .iter()
        .flat_map(|n| n.inputs().filter_map(|(_, v)| g.link(v)))
        .map(|s| g.position(s.node))
        .collect();
    let outputs: Vec<usize> = (0..nodes.len())
        .filter(|&i| is_output_class(nodes[i].class) && takes_images(&nodes[i]))
        .collect();
    let (previews, savers): (Vec<usize>, Vec<usize>) = outputs
        .into_iter()
        .partition(|&i| nodes[i].class.contains("Preview"));
    let sinks: Vec<usize> = (0..nodes.len())
        .filter(|i| !referenced.contains(i))
        .collect();
    let mut fallback = None;
    for group in [savers, previews, sinks] {
        let mut best: Option<(usize, usize)> = None;
        for i in group {
            let count = sampler::upstream(g, i, false).samplers.len();
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((i, count));
            }
        }
        match best {
            Some((i, c)) if c > 0 => return Some(i),
            Some((i, _)) => {
                fallback.get_or_insert(i);
            }
            None => {}
        }
    }
    fallback
}

/// The samplers on the way from the first pass (the farthest sampler, the last one a
/// breadth-first walk meets; on a tie the later-listed input wins) back to the output, first
/// pass first.
fn pass_chain(g: &Graph, up: &Upstream, output: usize) -> Vec<usize> {
    let Some(&first) = up.samplers.last() else {
        return Vec::new();
    };
    let mut chain = vec![first];
    let mut cur = first;
    while let Some(&next) = up.parent.get(&cur) {
        if next == output || chain.len() > up.order.len() {
            break;
        }
        if is_sampler(&g.nodes()[next]) {
            chain.push(next);
        }
        cur = next;
    }
    chain
}

/// The nodes strictly between `from` (or the farthest node, when `None`) and `to` on the
/// walk's path, nearest `from` first.
fn path_nodes(up: &Upstream, from: Option<usize>, to: usize) -> Vec<usize> {
    let Some(mut cur) = from else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some(&next) = up.parent.get(&cur) {
        if next == to || out.len() > up.order.len() {
            break;
        }
        out.push(next);
        cur = next;
    }
    out
}

/// The fields of the first pass.
fn first_pass<'a>(g: &Graph<'a>, node: &Node<'a>, meta: &mut GenMeta) {
    let p = sampler::pass(g, node);
    meta.seed = p.seed;
    meta.steps = p.steps;
    meta.cfg = p.cfg;
    meta.sampler = p.sampler.clone();
    meta.scheduler = p.scheduler.clone();
    meta.denoise = p.denoise;
    let params = &mut meta.params;
    if let Some(c2) = p.cfg_cond2_negative {
        params.insert("cfg_cond2_negative".into(), c2.to_string());
    }

    let model = p.model.map(|v| chains::model(g, v)).unwrap_or_default();
    meta.model = model.name.clone();
    if model.found && !model.unknown_lora {
        meta.loras = Some(model.loras.clone());
    }
    if model.unknown_lora {
        g.warn("a LoRA's name is computed at run time: the LoRA list is incomplete");
    }
    if let Some(shift) = model.shift {
        params.insert("shift".into(), chains::round(shift).to_string());
    }

    let positive = p.positive.map(|v| chains::conditioning(g, v));
    if let Some(pos) = &positive {
        meta.prompt = pos.prompt();
        meta.extra_prompts = area_prompts(pos);
        if let Some(gd) = pos.guidance {
            params.insert("guidance".into(), chains::round(gd).to_string());
        }
        if !pos.controlnets.is_empty() {
            params.insert("controlnet".into(), pos.controlnets.join(", "));
        }
    }
    meta.negative_prompt = match p.negative {
        Some(v) => chains::conditioning(g, v).prompt(),
        // A guider without a negative (Flux `BasicGuider`): there is none.
        None if meta.prompt.is_some() => Some(String::new()),
        None => None,
    };
    if let Some((w, h)) = p.latent.and_then(|v| chains::latent_size(g, v, 0)) {
        meta.width = Some(w);
        meta.height = Some(h);
    }
    let encoder = positive.as_ref().and_then(|c| c.encoder);
    let clip = encoder
        .map(|e| chains::clip(g, &g.nodes()[e]))
        .unwrap_or_default();
    meta.clip_skip = clip.clip_skip.or_else(|| graph_clip_skip(g));
    if !clip.encoders.is_empty() {
        params.insert("text_encoders".into(), clip.encoders.join(", "));
    }
}

/// The `ConditioningSetArea` prompts, as extra prompts.
fn area_prompts(c: &Conditioning) -> Vec<ExtraPrompt> {
    c.parts
        .iter()
        .filter_map(|p| {
            Some(ExtraPrompt {
                kind: "area".into(),
                prompt: p.text.trim().to_string(),
                negative_prompt: None,
                region: Some(p.region.clone()?),
            })
        })
        .collect()
}

/// When the first pass's encoder has no `CLIPSetLastLayer` on its clip chain, the value all
/// `CLIPSetLastLayer` nodes of the graph agree on (a parallel branch may hold it, as in
/// `comfyui-comfyroll.png`, where enslo reports it).
fn graph_clip_skip(g: &Graph) -> Option<u32> {
    let values: HashSet<Option<u32>> = g
        .nodes()
        .iter()
        .filter(|n| n.class == "CLIPSetLastLayer")
        .map(|n| chains::clip_skip(g, n))
        .collect();
    match values.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => *one,
        _ => None,
    }
}

/// Params for the passes after the first: `hires_*` for a pass behind an upscale,
/// `refiner_*` for one with another model, else `pass<N>_*`.
fn later_passes(g: &Graph, chain: &[usize], meta: &mut GenMeta) {
    if chain.len() < 2 {
        return;
    }
    let nodes = g.nodes();
    let base_model = meta.model.clone();
    let mut used = HashSet::new();
    meta.params.insert("passes".into(), chain.len().to_string());
    for (k, pair) in chain.windows(2).enumerate() {
        let (before, node) = (pair[0], &nodes[pair[1]]);
        let p = sampler::pass(g, node);
        let model = p.model.map(|v| chains::model(g, v)).unwrap_or_default();
        let between = between_samplers(g, before, pair[1]);
        let upscaled = between
            .iter()
            .any(|&i| chains::upscale(g, &nodes[i]).is_some());
        let other_model = model.name.is_some() && model.name != base_model;
        let prefix = if upscaled && used.insert("hires") {
            "hires".to_string()
        } else if other_model && used.insert("refiner") {
            "refiner".to_string()
        } else {
            format!("pass{}", k + 2)
        };
        put_pass(g, &p, &model, other_model, &prefix, meta);
        put_upscale(g, &between, &format!("{prefix}_"), &mut meta.params);
    }
}

/// The nodes on the latent path from sampler `later` back to sampler `earlier`.
fn between_samplers(g: &Graph, earlier: usize, later: usize) -> Vec<usize> {
    let up = sampler::upstream(g, later, true);
    let mut out = path_nodes(&up, Some(earlier), later);
    out.reverse();
    out.retain(|&i| i != later);
    out
}

fn put_pass(
    g: &Graph,
    p: &Pass,
    model: &ModelChain,
    other_model: bool,
    prefix: &str,
    meta: &mut GenMeta,
) {
    let prompt = p
        .positive
        .map(|v| chains::conditioning(g, v))
        .and_then(|c| c.prompt());
    let params = &mut meta.params;
    let mut put = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            params.insert(format!("{prefix}_{key}"), v);
        }
    };
    put("seed", p.seed.map(|s| s.to_string()));
    put("steps", p.steps.map(|s| s.to_string()));
    put("cfg", p.cfg.map(|c| chains::round(c).to_string()));
    put("sampler", p.sampler.clone());
    put("scheduler", p.scheduler.clone());
    put("denoise", p.denoise.map(|d| chains::round(d).to_string()));
    put(
        "start_step",
        p.start_step.filter(|s| *s > 0).map(|s| s.to_string()),
    );
    put("model", model.name.clone().filter(|_| other_model));
    put("prompt", prompt.filter(|t| Some(t) != meta.prompt.as_ref()));
}

/// `<prefix>upscale` (size or factor) and `<prefix>upscaler` (model, else method) from the
/// upscale nodes among `nodes`; an upscale model wins over a resize method.
fn put_upscale(g: &Graph, nodes: &[usize], prefix: &str, params: &mut BTreeMap<String, String>) {
    let mut size = None;
    let mut method = None;
    let mut model = None;
    for &i in nodes {
        let node = &g.nodes()[i];
        let Some((s, m)) = chains::upscale(g, node) else {
            continue;
        };
        size = size.or(s);
        if node.has("upscale_model") {
            model = model.or(m);
        } else {
            method = method.or(m);
        }
    }
    if let Some(s) = size {
        params.insert(format!("{prefix}upscale"), s);
    }
    if let Some(m) = model.or(method) {
        params.insert(format!("{prefix}upscaler"), m);
    }
}

/// The VAE of the decode nearest the output, when a `VAELoader` gives it (a checkpoint's
/// own VAE is not reported).
fn vae(g: &Graph, up: &Upstream) -> Option<String> {
    let decode = up
        .order
        .iter()
        .map(|&i| &g.nodes()[i])
        .find(|n| n.class.starts_with("VAEDecode"))?;
    let mut next = decode.input("vae");
    let mut seen = HashSet::new();
    while let Some(src) = next.and_then(|v| g.link(v)) {
        let node = src.node;
        if !seen.insert(g.position(node)) || !g.step(seen.len()) {
            return None;
        }
        if let Some(name) = node.input("vae_name") {
            return g.name(name, 0);
        }
        if node.has("ckpt_name") {
            return None;
        }
        next = g.switch_branch(node, 0).or_else(|| node.input("vae"));
    }
    None
}
