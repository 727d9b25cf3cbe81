//! The chains behind a sampler: prompt text through conditioning nodes, the model through
//! LoRA and patch nodes, the text encoder through clip nodes, and the latent's size.

use super::graph::{Graph, Node, Src};
use super::sampler::is_image_input;
use crate::metadata::Lora;
use serde_json::Value;
use std::collections::HashSet;

/// Text inputs of encoder nodes, in the order their texts are joined when they differ
/// (`CLIPTextEncodeSDXL` `text_g`/`text_l`, Flux `clip_l`/`t5xxl`, SD3 adds `clip_g`).
const ENCODER_TEXT_KEYS: &[&str] = &[
    "text", "prompt", "Text", "text_g", "text_l", "clip_l", "clip_g", "t5xxl", "bert", "mt5xl",
];

/// One prompt found behind a conditioning input.
pub(super) struct Part {
    pub text: String,
    /// `x=…,y=…,w=…,h=…` when a `ConditioningSetArea` limits it to a region.
    pub region: Option<String>,
}

/// Everything found behind one conditioning input.
#[derive(Default)]
pub(super) struct Conditioning {
    pub parts: Vec<Part>,
    /// A `ConditioningZeroOut` was met: an empty prompt.
    pub zeroed: bool,
    /// `FluxGuidance.guidance` or `CLIPTextEncodeFlux.guidance`.
    pub guidance: Option<f64>,
    pub controlnets: Vec<String>,
    /// The first encoder node (for its clip chain).
    pub encoder: Option<usize>,
}

impl Conditioning {
    /// The prompt: one text as written, several trimmed and joined by newlines (area
    /// compositions, `ConditioningCombine`). `Some("")` for a zeroed conditioning.
    pub fn prompt(&self) -> Option<String> {
        match self.parts.as_slice() {
            [] if self.zeroed => Some(String::new()),
            [] => None,
            [one] => Some(one.text.clone()),
            many => Some(
                many.iter()
                    .map(|p| p.text.trim())
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        }
    }
}

/// Follows a conditioning input back to its encoders.
pub(super) fn conditioning<'a>(g: &Graph<'a>, v: &'a Value) -> Conditioning {
    let mut c = Conditioning::default();
    let mut seen = HashSet::new();
    walk_conditioning(g, v, None, &mut c, &mut seen, 0);
    c
}

fn walk_conditioning<'a>(
    g: &Graph<'a>,
    v: &'a Value,
    region: Option<&str>,
    c: &mut Conditioning,
    seen: &mut HashSet<(usize, u64)>,
    depth: usize,
) {
    let Some(src) = g.link(v) else { return };
    let node = src.node;
    if !seen.insert((g.position(node), src.slot)) || !g.step(depth) {
        return;
    }
    let depth = depth + 1;
    let mut follow = |v: &'a Value, region: Option<&str>, c: &mut Conditioning| {
        walk_conditioning(g, v, region, c, seen, depth)
    };
    if node.class == "ConditioningZeroOut" {
        c.zeroed = true;
        return;
    }
    if ENCODER_TEXT_KEYS.iter().any(|k| node.has(k)) {
        read_encoder(g, node, region, c);
        return;
    }
    if let Some(chosen) = g.switch_branch(node, 0) {
        return follow(chosen, region, c);
    }
    if node.class == "FluxGuidance" {
        note_guidance(g, node, c);
    }
    note_controlnet(g, node, c);
    // An area set later (nearer the sampler) replaces an earlier one, so the first met wins.
    let own_region = area(g, node);
    let region = region.or(own_region.as_deref());
    // Nodes with both a positive and a negative output: output 0 is the positive.
    if node.has("positive") && node.has("negative") {
        let key = if src.slot == 1 {
            "negative"
        } else {
            "positive"
        };
        if let Some(v) = node.input(key) {
            follow(v, region, c);
        }
        return;
    }
    if let Some(v) = node.input("conditioning") {
        return follow(v, region, c);
    }
    let links: Vec<&'a Value> = node
        .inputs()
        .filter(|(k, _)| k.starts_with("conditioning") || k.starts_with("cond"))
        .map(|(_, v)| v)
        .collect();
    if links.is_empty() {
        g.warn(format!(
            "no prompt found behind node {} ({})",
            node.id, node.class
        ));
    }
    for v in g.order_by_link(node, links) {
        follow(v, region, c);
    }
}

/// An encoder node: the first one met is the conditioning's encoder; its text is one part.
fn read_encoder<'a>(g: &Graph<'a>, node: &Node<'a>, region: Option<&str>, c: &mut Conditioning) {
    c.encoder.get_or_insert(g.position(node));
    note_guidance(g, node, c);
    if let Some(text) = encoder_text(g, node) {
        c.parts.push(Part {
            text,
            region: region.map(str::to_string),
        });
    }
}

/// A node's `guidance` input, unless a node nearer the sampler already gave one.
fn note_guidance<'a>(g: &Graph<'a>, node: &Node<'a>, c: &mut Conditioning) {
    if let Some(gd) = node.input("guidance").and_then(|v| g.float(v, 0)) {
        c.guidance.get_or_insert(gd);
    }
}

/// The ControlNet model a node applies, once per name.
fn note_controlnet<'a>(g: &Graph<'a>, node: &Node<'a>, c: &mut Conditioning) {
    if let Some(cn) = g.input_link(node, "control_net") {
        if let Some(name) = cn.node.input("control_net_name").and_then(|v| g.name(v, 0)) {
            if !c.controlnets.contains(&name) {
                c.controlnets.push(name);
            }
        }
    }
}

/// The text of an encoder node: its distinct non-empty text inputs joined by newlines (`""`
/// when all are empty), or `None` when no text could be resolved.
fn encoder_text<'a>(g: &Graph<'a>, node: &Node<'a>) -> Option<String> {
    let keys = ENCODER_TEXT_KEYS.iter().copied().filter(|k| node.has(k));
    let mut texts: Vec<String> = Vec::new();
    let mut resolved = false;
    for k in keys {
        if let Some(t) = node.input(k).and_then(|v| g.text(v, 0)) {
            resolved = true;
            if !t.trim().is_empty() && !texts.iter().any(|x| x.trim() == t.trim()) {
                texts.push(t);
            }
        }
    }
    match texts.len() {
        // Text made at run time (read from another image, ...) is unknown, not empty.
        0 if !resolved => {
            g.warn(format!("the text of node {} is made at run time", node.id));
            None
        }
        0 => Some(String::new()),
        1 => texts.pop(),
        _ => Some(
            texts
                .iter()
                .map(|t| t.trim())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

/// The region of a `ConditioningSetArea` (pixels) or `ConditioningSetAreaPercentage`.
fn area<'a>(g: &Graph<'a>, node: &Node<'a>) -> Option<String> {
    if !node.class.starts_with("ConditioningSetArea") || node.class.ends_with("Strength") {
        return None;
    }
    let num = |k: &str| node.input(k).and_then(|v| g.float(v, 0));
    let (x, y, w, h) = (num("x")?, num("y")?, num("width")?, num("height")?);
    let mut region = format!("x={x},y={y},w={w},h={h}");
    if let Some(s) = num("strength").filter(|s| (s - 1.0).abs() > 1e-9) {
        region.push_str(&format!(",strength={}", round(s)));
    }
    Some(region)
}

/// Drops float noise (`1.2000000000000002` → `1.2`).
pub(super) fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The model behind a sampler's `model` input.
#[derive(Default)]
pub(super) struct ModelChain {
    pub name: Option<String>,
    /// In the order they are applied (nearest the checkpoint first).
    pub loras: Vec<Lora>,
    /// A LoRA whose name could not be resolved: the list is incomplete.
    pub unknown_lora: bool,
    /// `ModelSampling*.shift`.
    pub shift: Option<f64>,
    /// A loader was reached.
    pub found: bool,
}

/// Follows a `model` input through LoRA loaders, LoRA stacks, patches and switches to the
/// loader (`ckpt_name`, `unet_name`).
pub(super) fn model<'a>(g: &Graph<'a>, v: &'a Value) -> ModelChain {
    let mut m = ModelChain::default();
    walk_model(g, v, &mut m, &mut HashSet::new(), 0);
    m
}

fn walk_model<'a>(
    g: &Graph<'a>,
    v: &'a Value,
    m: &mut ModelChain,
    seen: &mut HashSet<usize>,
    depth: usize,
) {
    let Some(src) = g.link(v) else { return };
    let node = src.node;
    if !seen.insert(g.position(node)) || !g.step(depth) {
        return;
    }
    let depth = depth + 1;
    if let Some(name) = ["ckpt_name", "unet_name"]
        .iter()
        .find_map(|k| node.input(k))
    {
        m.found = true;
        m.name = g.name(name, 0);
        return;
    }
    if let Some(chosen) = g.switch_branch(node, 0) {
        return walk_model(g, chosen, m, seen, depth);
    }
    // The upstream LoRAs apply first, so walk on before adding this node's.
    if let Some(next) = node.input("model").or_else(|| {
        node.inputs()
            .find(|(k, v)| k.contains("model") && g.link(v).is_some())
            .map(|(_, v)| v)
    }) {
        walk_model(g, next, m, seen, depth);
    }
    if m.shift.is_none() && node.class.starts_with("ModelSampling") {
        m.shift = node.input("shift").and_then(|v| g.float(v, 0));
    }
    node_loras(g, node, m);
    if let Some(stack) = g.input_link(node, "lora_stack") {
        lora_stack(g, stack, m, seen, depth);
    }
}

/// The LoRAs a loader node applies itself: `LoraLoader(lora_name, strength_model,
/// strength_clip)`, `LoraLoaderModelOnly`, rgthree Power Lora Loader (`lora_N: {on, lora,
/// strength, strengthTwo}`).
fn node_loras<'a>(g: &Graph<'a>, node: &Node<'a>, m: &mut ModelChain) {
    let num = |k: &str| node.input(k).and_then(|v| g.float(v, 0));
    if let Some(v) = node.input("lora_name") {
        let weight = [
            "strength_model",
            "strength",
            "lora_strength",
            "model_weight",
        ]
        .iter()
        .find_map(|k| num(k));
        let clip_weight = ["strength_clip", "clip_strength", "clip_weight"]
            .iter()
            .find_map(|k| num(k));
        push_lora(m, g.name(v, 0), weight, clip_weight);
    }
    for (_, v) in node.inputs() {
        let Some(obj) = v.as_object().filter(|o| o.contains_key("lora")) else {
            continue;
        };
        if obj.get("on").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let f = |k: &str| obj.get(k).and_then(Value::as_f64);
        let name = obj.get("lora").and_then(Value::as_str).map(str::to_string);
        push_lora(m, name, f("strength"), f("strengthTwo"));
    }
}

/// Comfyroll `CR LoRA Stack` (`switch_N` On/Off, `lora_name_N`, `model_weight_N`,
/// `clip_weight_N`), itself possibly chained to another stack.
fn lora_stack<'a>(
    g: &Graph<'a>,
    src: Src<'_, 'a>,
    m: &mut ModelChain,
    seen: &mut HashSet<usize>,
    depth: usize,
) {
    let node = src.node;
    if !seen.insert(g.position(node)) || !g.step(depth) {
        return;
    }
    if let Some(prev) = g.input_link(node, "lora_stack") {
        lora_stack(g, prev, m, seen, depth + 1);
    }
    for n in 1..=50 {
        let Some(name) = node.input(&format!("lora_name_{n}")) else {
            break;
        };
        let on = node
            .input(&format!("switch_{n}"))
            .and_then(|v| g.boolean(v, 0))
            .unwrap_or(true);
        if !on {
            continue;
        }
        let num = |k: String| node.input(&k).and_then(|v| g.float(v, 0));
        push_lora(
            m,
            g.name(name, 0),
            num(format!("model_weight_{n}")),
            num(format!("clip_weight_{n}")),
        );
    }
}

fn push_lora(m: &mut ModelChain, name: Option<String>, weight: Option<f64>, clip: Option<f64>) {
    let Some(name) = name else {
        m.unknown_lora = true;
        return;
    };
    let off = weight == Some(0.0) && clip.unwrap_or(0.0) == 0.0;
    if name.is_empty() || name == "None" || off {
        return;
    }
    m.loras.push(Lora {
        name,
        weight,
        clip_weight: clip,
        hash: None,
    });
}

/// The text-encoder chain behind an encoder node's `clip` input.
#[derive(Default)]
pub(super) struct ClipChain {
    /// `CLIPSetLastLayer.stop_at_clip_layer` negated (-2 ⇒ 2).
    pub clip_skip: Option<u32>,
    /// `CLIPLoader.clip_name`, `DualCLIPLoader.clip_name1/2`, ...
    pub encoders: Vec<String>,
}

pub(super) fn clip<'a>(g: &Graph<'a>, encoder: &Node<'a>) -> ClipChain {
    let mut c = ClipChain::default();
    let start = encoder.input("clip").or_else(|| {
        encoder
            .inputs()
            .find(|(k, v)| k.contains("clip") && g.link(v).is_some())
            .map(|(_, v)| v)
    });
    let mut seen = HashSet::new();
    let mut next = start;
    let mut depth = 0;
    while let Some(src) = next.and_then(|v| g.link(v)) {
        let node = src.node;
        if !seen.insert(g.position(node)) || !g.step(depth) {
            break;
        }
        depth += 1;
        if node.class == "CLIPSetLastLayer" && c.clip_skip.is_none() {
            c.clip_skip = clip_skip(g, node);
        }
        let names: Vec<String> = node
            .inputs()
            .filter(|(k, _)| k.starts_with("clip_name"))
            .filter_map(|(_, v)| g.name(v, 0))
            .collect();
        if !names.is_empty() || node.has("ckpt_name") {
            c.encoders = names;
            break;
        }
        next = g.switch_branch(node, 0).or_else(|| {
            node.input("clip").or_else(|| {
                node.inputs()
                    .find(|(k, v)| k.contains("clip") && g.link(v).is_some())
                    .map(|(_, v)| v)
            })
        });
    }
    c
}

pub(super) fn clip_skip<'a>(g: &Graph<'a>, node: &Node<'a>) -> Option<u32> {
    let stop = node
        .input("stop_at_clip_layer")
        .and_then(|v| g.float(v, 0))?;
    (stop <= -1.0).then(|| (-stop) as u32)
}

/// The size of a latent: an empty latent's `width`/`height` (or rgthree's `dimensions`
/// string), scaled by upscale nodes on the way. `None` for img2img (the latent comes from a
/// loaded image) or sizes computed at run time.
pub(super) fn latent_size<'a>(g: &Graph<'a>, v: &'a Value, depth: usize) -> Option<(u32, u32)> {
    let src = g.link(v)?;
    let node = src.node;
    if !g.step(depth) {
        return None;
    }
    let depth = depth + 1;
    if let Some(dim) = node.input("dimensions").and_then(|v| g.text(v, 0)) {
        return parse_dimensions(&dim);
    }
    let num = |k: &str| node.input(k).and_then(|v| g.float(v, 0));
    if let (Some(w), Some(h)) = (num("width"), num("height")) {
        if w >= 1.0 && h >= 1.0 {
            return Some((w.round() as u32, h.round() as u32));
        }
    }
    if node.class.starts_with("LoadImage") {
        return None;
    }
    if node.has("width") && node.has("height") && node.class.starts_with("Empty") {
        return None;
    }
    let next = node
        .inputs()
        .find(|(k, v)| is_image_input(k) && g.link(v).is_some())
        .map(|(_, v)| v)?;
    let (w, h) = latent_size(g, next, depth)?;
    match num("scale_by") {
        Some(s) if s > 0.0 => Some(((w as f64 * s).round() as u32, (h as f64 * s).round() as u32)),
        _ => Some((w, h)),
    }
}

/// `"1216 x 832 (landscape)"` → (1216, 832).
fn parse_dimensions(s: &str) -> Option<(u32, u32)> {
    let (w, rest) = s.split_once(['x', '×'])?;
    let h: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((w.trim().parse().ok()?, h.parse().ok()?))
}

/// How an upscale node resizes: (size or factor, method or model).
pub(super) fn upscale<'a>(
    g: &Graph<'a>,
    node: &Node<'a>,
) -> Option<(Option<String>, Option<String>)> {
    let class = node.class;
    let is_upscale = class.contains("Upscale") || class.starts_with("ImageScale");
    if !is_upscale || class.contains("Loader") {
        return None;
    }
    let num = |k: &str| node.input(k).and_then(|v| g.float(v, 0));
    let size = match (
        num("width"),
        num("height"),
        num("scale_by"),
        num("megapixels"),
    ) {
        (Some(w), Some(h), _, _) if w >= 1.0 && h >= 1.0 => Some(format!("{w}x{h}")),
        (_, _, Some(s), _) => Some(format!("x{}", round(s))),
        (_, _, _, Some(mp)) => Some(format!("{} MP", round(mp))),
        _ => None,
    };
    let method = g
        .input_link(node, "upscale_model")
        .and_then(|m| m.node.input("model_name"))
        .and_then(|v| g.name(v, 0))
        .or_else(|| node.input("upscale_method").and_then(|v| g.name(v, 0)));
    Some((size, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions() {
        assert_eq!(
            parse_dimensions("1216 x 832 (landscape)"),
            Some((1216, 832))
        );
        assert_eq!(
            parse_dimensions("1024 x 1024  (square)"),
            Some((1024, 1024))
        );
        assert_eq!(parse_dimensions("custom"), None);
    }
}
