//! Samplers: which nodes are samplers, the settings of one, and the samplers upstream of an
//! output in breadth-first order.
//!
//! Kinds: `KSampler`, `KSamplerAdvanced`, `SamplerCustom`, `SamplerCustomAdvanced` (its
//! settings spread over `noise`, `guider`, `sampler` and `sigmas` nodes), and any other node
//! with a seed and steps (or a sampler name, steps and cfg) as a generic sampler.

use super::graph::{Graph, Node};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};

/// The settings of one sampler node, with the links its prompt, model and latent come from.
#[derive(Default)]
pub(super) struct Pass<'a> {
    pub seed: Option<u64>,
    pub steps: Option<u32>,
    pub cfg: Option<f64>,
    pub sampler: Option<String>,
    pub scheduler: Option<String>,
    pub denoise: Option<f64>,
    pub start_step: Option<u32>,
    /// `DualCFGGuider`'s second scale.
    pub cfg_cond2_negative: Option<f64>,
    pub model: Option<&'a Value>,
    pub positive: Option<&'a Value>,
    pub negative: Option<&'a Value>,
    pub latent: Option<&'a Value>,
}

/// Whether `node` runs a sampling loop.
pub(super) fn is_sampler(node: &Node) -> bool {
    if is_output_class(node.class) {
        return false;
    }
    match node.class {
        "KSampler" | "KSamplerAdvanced" | "SamplerCustom" | "SamplerCustomAdvanced" => true,
        _ => {
            let seed = node.has("seed") || node.has("noise_seed");
            let steps = node.has("steps");
            (seed && steps) || (steps && node.has("sampler_name") && node.has("cfg"))
        }
    }
}

/// Savers and previews are never samplers, even when they repeat the settings as inputs
/// (`Save Image w/Metadata` has `steps`, `cfg`, `sampler_name`).
pub(super) fn is_output_class(class: &str) -> bool {
    class.contains("Save") || class.contains("Preview") || class.contains("VideoCombine")
}

/// Input names that carry an image or a latent (the path a picture takes).
pub(super) fn is_image_input(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.contains("vae") || n.contains("clip_vision") || n.contains("mask") {
        return false;
    }
    [
        "image",
        "latent",
        "samples",
        "pixels",
        "frames",
        "video",
        "source",
        "destination",
    ]
    .iter()
    .any(|k| n.contains(k))
}

/// Input names that carry conditioning (followed only to find reference latents).
fn is_conditioning_input(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("conditioning")
        || n.contains("positive")
        || n.contains("negative")
        || n.starts_with("cond")
        || n == "guider"
}

/// The settings of a sampler node.
pub(super) fn pass<'a>(g: &Graph<'a>, node: &Node<'a>) -> Pass<'a> {
    let d = 0;
    let uint = |name: &str| node.input(name).and_then(|v| g.uint(v, d));
    let float = |name: &str| node.input(name).and_then(|v| g.float(v, d));
    let name = |name: &str| node.input(name).and_then(|v| g.name(v, d));
    let mut p = Pass {
        seed: uint("seed").or_else(|| uint("noise_seed")),
        steps: uint("steps").and_then(|s| u32::try_from(s).ok()),
        cfg: float("cfg"),
        sampler: name("sampler_name"),
        scheduler: name("scheduler"),
        denoise: float("denoise"),
        model: node.input("model"),
        positive: node.input("positive"),
        negative: node.input("negative"),
        latent: ["latent_image", "latent", "samples", "image"]
            .iter()
            .find_map(|k| node.input(k)),
        ..Pass::default()
    };
    if node.class == "KSamplerAdvanced" {
        p.start_step = uint("start_at_step").and_then(|s| u32::try_from(s).ok());
    }
    if node.class == "SamplerCustomAdvanced" {
        if let Some(noise) = g.input_link(node, "noise") {
            p.seed = ["noise_seed", "seed"]
                .iter()
                .find_map(|k| noise.node.input(k))
                .and_then(|v| g.uint(v, d));
        }
        if let Some(guider) = g.input_link(node, "guider") {
            guide(g, guider.node, &mut p);
        }
    }
    if let Some(src) = g.input_link(node, "sampler") {
        p.sampler = sampler_name(g, src.node);
    }
    if let Some(src) = g.input_link(node, "sigmas") {
        sigmas(g, src.node, &mut p, 0);
    }
    p
}

/// A guider node: `CFGGuider{cfg, positive, negative, model}`, `BasicGuider{conditioning,
/// model}` (no negative, no cfg), `DualCFGGuider{cfg_conds, cond1, cond2, negative, model}`.
fn guide<'a>(g: &Graph<'a>, guider: &Node<'a>, p: &mut Pass<'a>) {
    p.model = guider.input("model").or(p.model);
    p.positive = ["positive", "conditioning", "cond1"]
        .iter()
        .find_map(|k| guider.input(k));
    p.negative = guider.input("negative");
    p.cfg = ["cfg", "cfg_conds"]
        .iter()
        .find_map(|k| guider.input(k))
        .and_then(|v| g.float(v, 0));
    p.cfg_cond2_negative = guider
        .input("cfg_cond2_negative")
        .and_then(|v| g.float(v, 0));
}

/// The sampler behind a `sampler` input: `KSamplerSelect.sampler_name`, or the node's class
/// (`SamplerEulerAncestral`, `SamplerDPMPP_2M_SDE`, ...).
fn sampler_name<'a>(g: &Graph<'a>, node: &Node<'a>) -> Option<String> {
    node.input("sampler_name")
        .and_then(|v| g.name(v, 0))
        .or_else(|| Some(node.class.to_string()))
}

/// The scheduler behind a `sigmas` input: `BasicScheduler{scheduler, steps, denoise}`, or
/// the node's class (`SDTurboScheduler`, `KarrasScheduler`, ...) with its `steps`. Sigma
/// filters (`SplitSigmas`, `FlipSigmas`) pass through.
fn sigmas<'a>(g: &Graph<'a>, node: &Node<'a>, p: &mut Pass<'a>, depth: usize) {
    if !node.has("steps") && !node.has("scheduler") {
        if let Some(src) = g.input_link(node, "sigmas") {
            if g.step(depth + 1) {
                sigmas(g, src.node, p, depth + 1);
            }
        }
        return;
    }
    p.scheduler = node
        .input("scheduler")
        .and_then(|v| g.name(v, 0))
        .or_else(|| Some(node.class.to_string()));
    p.steps = node
        .input("steps")
        .and_then(|v| g.uint(v, 0))
        .and_then(|s| u32::try_from(s).ok());
    p.denoise = node.input("denoise").and_then(|v| g.float(v, 0));
    if p.model.is_none() {
        p.model = node.input("model");
    }
}

/// What a breadth-first walk back from an output found.
pub(super) struct Upstream {
    /// Sampler positions in visit order: nearest first, so the last is the farthest.
    pub samplers: Vec<usize>,
    /// Each visited node's successor towards the output (by position).
    pub parent: HashMap<usize, usize>,
    /// Every visited node in visit order.
    pub order: Vec<usize>,
}

/// Walks back from `start` through image and latent links (never model, clip or prompt
/// links), stopping at samplers when `stop_at_samplers`. From a sampler it goes on through
/// its latent input and through latents referenced by its conditioning (`ReferenceLatent`,
/// as in Flux Kontext chains), so an earlier pass that only feeds a reference is found too.
pub(super) fn upstream(g: &Graph, start: usize, stop_at_samplers: bool) -> Upstream {
    let nodes = g.nodes();
    let mut up = Upstream {
        samplers: Vec::new(),
        parent: HashMap::new(),
        order: Vec::new(),
    };
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(pos) = queue.pop_front() {
        if !g.step(0) {
            break;
        }
        up.order.push(pos);
        let node = &nodes[pos];
        let sampler = pos != start && is_sampler(node);
        if sampler {
            up.samplers.push(pos);
            if stop_at_samplers {
                continue;
            }
        }
        let mut next = Vec::new();
        if sampler {
            let p = pass(g, node);
            next.extend(p.latent.and_then(|v| g.link(v)));
            for v in [p.positive, p.negative].into_iter().flatten() {
                conditioning_images(g, v, &mut next, &mut HashSet::new(), 0);
            }
        } else {
            for (name, v) in node.inputs() {
                if is_image_input(name) {
                    next.extend(g.link(v));
                }
            }
        }
        for src in next {
            let p = g.position(src.node);
            if seen.insert(p) {
                up.parent.insert(p, pos);
                queue.push_back(p);
            }
        }
    }
    up
}

/// Image and latent sources referenced along a conditioning chain.
fn conditioning_images<'g, 'a>(
    g: &'g Graph<'a>,
    v: &'a Value,
    out: &mut Vec<super::graph::Src<'g, 'a>>,
    seen: &mut HashSet<usize>,
    depth: usize,
) {
    let Some(src) = g.link(v) else { return };
    if !seen.insert(g.position(src.node)) || !g.step(depth) {
        return;
    }
    for (name, v) in src.node.inputs() {
        if is_image_input(name) {
            out.extend(g.link(v));
        } else if is_conditioning_input(name) {
            conditioning_images(g, v, out, seen, depth + 1);
        }
    }
}
