//! Prompt → tags: parse a generation prompt in its tool's syntax into normalised tags with
//! weights, LoRA entries, embeddings and captions. The rules are in `docs/tags.md`
//! ("Prompts → tags"); the spec is `generation-metadata.md` part B.
//!
//! The pipeline, in order:
//! 1. a prompt that is a whole JSON document becomes one caption;
//! 2. comments (A1111 only), SwarmUI-style `<...>` templates and extra networks
//!    (`<lora:...>`, `<hypernet:...>`) are taken out of the text (`extras`);
//! 3. A1111: `AND` sub-prompts with their weights, then prompt editing / alternation
//!    (`[a:b:N]`, `[a|b]`) expanded into a few variants (`a1111`);
//! 4. the dialect's attention parser turns the text into weighted runs (`a1111`,
//!    `comfy`, `novelai`, `compel`);
//! 5. runs are split on `,` / newlines / `BREAK` into tags or captions (`split`) and
//!    normalised with [`crate::tags::normalise`]; duplicates keep the highest weight.
//!
//! Nothing here panics on any input; nesting deeper than [`MAX_DEPTH`] is literal text.

mod a1111;
mod comfy;
mod compel;
mod extras;
mod novelai;
mod split;

use crate::metadata::Lora;
use serde::Serialize;
use std::collections::HashMap;

/// Bracket nesting deeper than this is kept as literal text (no recursion beyond it).
pub const MAX_DEPTH: usize = 64;

/// Which tool's prompt syntax to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// AUTOMATIC1111 and the Forge family, SD.Next, Fooocus, Civitai, Tensor.Art, ...
    A1111,
    /// ComfyUI (and SwarmUI, whose weights follow it).
    Comfyui,
    /// NovelAI `{}`/`[]`/`w::text::`.
    Novelai,
    /// InvokeAI's Compel (`word+`, `(a)1.2`, `.blend()`).
    Compel,
}

impl Dialect {
    /// The dialect of a generator id (`GenMeta::generator`); A1111 for unknown ones.
    pub fn for_generator(generator: &str) -> Dialect {
        match generator {
            "comfyui" | "swarmui" => Dialect::Comfyui,
            "novelai" => Dialect::Novelai,
            "invokeai" => Dialect::Compel,
            _ => Dialect::A1111,
        }
    }
}

/// One tag asked for by a prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptTag {
    /// Normalised with [`crate::tags::normalise`].
    pub tag: String,
    /// The product of every emphasis around it (1.0 when none), times the weight of its
    /// `AND` sub-prompt or `.blend()` entry. May be 0 or negative (NovelAI `-0.8::x::`,
    /// A1111 `(x:-1)`): see [`Parsed::positive_tags`].
    pub weight: f64,
    /// Only during part of the sampling (`[from:to:when]`, Compel `.swap()`).
    pub scheduled: bool,
    /// One of alternating options (`[a|b]`).
    pub alternating: bool,
}

impl PromptTag {
    /// Whether the prompt asks for this tag at all: weight above `min_weight` and above 0.
    pub fn is_positive(&self, min_weight: f64) -> bool {
        self.weight > 0.0 && self.weight >= min_weight
    }
}

/// What a prompt asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Parsed {
    /// In first-seen order, one entry per normalised tag.
    pub tags: Vec<PromptTag>,
    /// Extra networks (`<lora:name:w>`, `<lyco:...>`, `<hypernet:...>`, Compel
    /// `withLora(name, w)`): not tags.
    pub loras: Vec<Lora>,
    /// Textual-inversion embeddings named in the prompt (`embedding:name`, SwarmUI
    /// `<embed:name>`, and names passed to [`parse_with_embeddings`]). File extensions
    /// (`.pt`, `.safetensors`, `.bin`, `.ckpt`) are dropped.
    pub embeddings: Vec<String>,
    /// Parts written as sentences rather than tag lists (and a whole-JSON prompt).
    pub captions: Vec<String>,
    /// A1111 `AND` sub-prompt weights, one per sub-prompt; empty when there is no `AND`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub and_weights: Vec<f64>,
    /// `BREAK` markers (and SwarmUI `<break>`) seen.
    #[serde(skip_serializing_if = "is_zero")]
    pub breaks: usize,
    /// Non-literal `<...>` constructs removed from the text: SwarmUI templates
    /// (`<random:a|b>`, `<wildcard:x>`, `<setvar[x]:...>`, ...) and unknown extra-network
    /// types. Their content is not turned into tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Parsed {
    /// The tags that are positive evidence: weight > 0 and ≥ `min_weight` (NovelAI
    /// `-0.8::feet::` asks for *no* feet; use `0.0` to drop only those).
    pub fn positive_tags(&self, min_weight: f64) -> Vec<&PromptTag> {
        self.tags
            .iter()
            .filter(|t| t.is_positive(min_weight))
            .collect()
    }

    /// The entry for one (already normalised) tag.
    pub fn tag(&self, tag: &str) -> Option<&PromptTag> {
        self.tags.iter().find(|t| t.tag == tag)
    }

    /// Just the tag names, in order.
    pub fn tag_names(&self) -> Vec<&str> {
        self.tags.iter().map(|t| t.tag.as_str()).collect()
    }
}

/// One weighted run of text from a dialect's attention parser (see [`attention`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightedRun {
    pub text: String,
    pub weight: f64,
    /// A `BREAK` marker (A1111 writes it as `["BREAK", -1]`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_break: bool,
}

/// Parses a prompt.
pub fn parse(text: &str, dialect: Dialect) -> Parsed {
    parse_with_embeddings(text, dialect, &[])
}

/// Parses a negative prompt: the same rules as [`parse`]; the tags are things the image
/// should *not* show, so callers keep them apart from the positive ones.
pub fn negative_tags(text: &str, dialect: Dialect) -> Vec<PromptTag> {
    parse(text, dialect).tags
}

/// Parses a prompt, moving tags that name a known textual-inversion embedding (e.g. the
/// keys of A1111's `TI hashes`: `EasyNegative`) from `tags` to `embeddings`. Names are
/// compared after normalisation (case, `_`/space) and without a file extension.
pub fn parse_with_embeddings(text: &str, dialect: Dialect, known_embeddings: &[&str]) -> Parsed {
    let mut out = Parsed::default();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return out;
    }
    if looks_like_json(trimmed) {
        out.captions.push(trimmed.to_string());
        return out;
    }
    let text = take_out_extras(text, dialect, &mut out);
    let acc = split_into_tags(&text, dialect, &mut out);
    out.tags = acc.tags;
    out.captions.extend(acc.captions);
    settle_embeddings(&mut out, known_embeddings);
    out
}

/// Step 2: takes comments (A1111), templates (all but NovelAI) and extra networks out of the
/// text, noting them in `out`; returns the text left.
fn take_out_extras(text: &str, dialect: Dialect, out: &mut Parsed) -> String {
    let mut text = if dialect == Dialect::A1111 {
        extras::strip_comments(text)
    } else {
        text.to_string()
    };
    if dialect != Dialect::Novelai {
        let t = extras::strip_templates(&text);
        text = t.text;
        out.templates.extend(t.templates);
        out.embeddings.extend(t.embeddings);
        out.breaks += t.breaks;
    }
    let nets = extras::extract_networks(&text, dialect);
    out.loras.extend(nets.loras);
    out.embeddings.extend(nets.embeddings);
    out.templates.extend(nets.templates);
    nets.text
}

/// Steps 3 to 5: the dialect's sub-prompts, variants and attention, split into tags and
/// captions; breaks, embeddings and Compel LoRAs are noted in `out`.
fn split_into_tags(text: &str, dialect: Dialect, out: &mut Parsed) -> Accumulator {
    let mut acc = Accumulator::default();
    match dialect {
        Dialect::A1111 => {
            let subs = a1111::split_and(text);
            if subs.len() > 1 {
                out.and_weights = subs.iter().map(|s| s.1).collect();
            }
            for (sub, weight) in subs {
                let variants = a1111::variants(&sub);
                for (i, pieces) in variants.into_iter().enumerate() {
                    if i == 0 {
                        out.breaks += count_breaks(&pieces);
                    }
                    let pieces = extras::take_embeddings(pieces, &mut out.embeddings);
                    acc.add(split::split(&pieces, weight));
                }
            }
        }
        Dialect::Comfyui | Dialect::Novelai => {
            let pieces = if dialect == Dialect::Comfyui {
                comfy::attention(text)
            } else {
                novelai::attention(text)
            };
            let pieces = extras::split_breaks(pieces);
            out.breaks += count_breaks(&pieces);
            let pieces = if dialect == Dialect::Comfyui {
                extras::take_embeddings(pieces, &mut out.embeddings)
            } else {
                pieces
            };
            acc.add(split::split(&pieces, 1.0));
        }
        Dialect::Compel => {
            let parsed = compel::parse(text);
            out.loras.extend(parsed.loras);
            let pieces = extras::split_breaks(parsed.pieces);
            out.breaks += count_breaks(&pieces);
            let pieces = extras::take_embeddings(pieces, &mut out.embeddings);
            acc.add(split::split(&pieces, 1.0));
        }
    }
    acc
}

/// Drops repeated embeddings, then moves the tags that name a known embedding to
/// `embeddings`.
fn settle_embeddings(out: &mut Parsed, known_embeddings: &[&str]) {
    let mut seen = std::collections::HashSet::new();
    out.embeddings.retain(|e| seen.insert(embedding_key(e)));
    if known_embeddings.is_empty() {
        return;
    }
    let keys: Vec<(String, &str)> = known_embeddings
        .iter()
        .map(|k| (embedding_key(k), *k))
        .filter(|(k, _)| !k.is_empty())
        .collect();
    let mut moved = Vec::new();
    out.tags.retain(|t| {
        let key = embedding_key(&t.tag);
        match keys.iter().find(|(k, _)| *k == key) {
            Some((_, name)) => {
                moved.push(extras::strip_extension(name.trim()).to_string());
                false
            }
            None => true,
        }
    });
    for name in moved {
        if seen.insert(embedding_key(&name)) {
            out.embeddings.push(name);
        }
    }
}

/// The weighted runs a dialect's attention parser produces, adjacent equal weights merged —
/// for A1111 exactly `modules/prompt_parser.py: parse_prompt_attention` (no scheduling,
/// extra networks or `AND` handling: pass one sub-prompt's text).
pub fn attention(text: &str, dialect: Dialect) -> Vec<WeightedRun> {
    let pieces = match dialect {
        Dialect::A1111 => a1111::attention_str(text),
        Dialect::Comfyui => extras::split_breaks(comfy::attention(text)),
        Dialect::Novelai => extras::split_breaks(novelai::attention(text)),
        Dialect::Compel => extras::split_breaks(compel::parse(text).pieces),
    };
    let mut runs: Vec<WeightedRun> = Vec::new();
    for p in pieces {
        let weight = if p.brk { -1.0 } else { p.weight };
        if let Some(last) = runs.last_mut() {
            if last.weight == weight && last.is_break == p.brk && !p.brk {
                last.text.push_str(&p.text);
                continue;
            }
        }
        runs.push(WeightedRun {
            text: p.text,
            weight,
            is_break: p.brk,
        });
    }
    if runs.is_empty() {
        runs.push(WeightedRun {
            text: String::new(),
            weight: 1.0,
            is_break: false,
        });
    }
    runs
}

/// A prompt that is a whole JSON document (structured-prompt models such as FIBO).
fn looks_like_json(trimmed: &str) -> bool {
    if !trimmed.starts_with('{') {
        return false;
    }
    if trimmed.ends_with('}')
        && serde_json::from_str::<serde_json::Value>(trimmed)
            .map(|v| v.is_object())
            .unwrap_or(false)
    {
        return true;
    }
    // A truncated or slightly broken document still opens like one: `{` then `"key"`.
    trimmed[1..].trim_start().starts_with('"')
}

fn count_breaks(pieces: &[Piece]) -> usize {
    pieces.iter().filter(|p| p.brk && p.text == "BREAK").count()
}

fn embedding_key(name: &str) -> String {
    let stripped = extras::strip_extension(name.trim());
    crate::tags::normalise(stripped).unwrap_or_default()
}

/// Stands for an empty prompt-editing branch in a rendered variant (`[fe|]male`, `[x::5]`):
/// carries the branch's flags to the text around it, never part of a tag's text.
pub(crate) const MARK: char = '\u{FDD0}';

/// Flags on text: which prompt-editing construct it came from.
pub(crate) const SCHEDULED: u8 = 1;
pub(crate) const ALTERNATING: u8 = 2;

/// A run of text from an attention parser.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    pub text: String,
    pub weight: f64,
    pub flags: u8,
    /// The outermost emphasis group the text is in (0: none); used to split a
    /// comma-free run like `(a) (b:1.2) c` into tags.
    pub group: u32,
    /// A `BREAK` marker (a tag boundary).
    pub brk: bool,
}

impl Piece {
    pub fn new(text: impl Into<String>, weight: f64, flags: u8, group: u32) -> Piece {
        Piece {
            text: text.into(),
            weight,
            flags,
            group,
            brk: false,
        }
    }

    pub fn brk() -> Piece {
        Piece {
            text: "BREAK".into(),
            weight: -1.0,
            flags: 0,
            group: 0,
            brk: true,
        }
    }
}

/// Multiplies the weights of `pieces[from..]` (not `BREAK` markers).
pub(crate) fn multiply_range(pieces: &mut [Piece], from: usize, factor: f64) {
    if let Some(slice) = pieces.get_mut(from..) {
        for p in slice.iter_mut().filter(|p| !p.brk) {
            p.weight *= factor;
        }
    }
}

/// Whether `c` is a regex `\w` character.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Tags and captions gathered over sub-prompts and variants, deduplicated.
#[derive(Default)]
struct Accumulator {
    tags: Vec<PromptTag>,
    index: HashMap<String, usize>,
    captions: Vec<String>,
    caption_set: std::collections::HashSet<String>,
}

impl Accumulator {
    fn add(&mut self, part: split::SplitOut) {
        for t in part.tags {
            match self.index.get(&t.tag) {
                Some(&i) => {
                    let e = &mut self.tags[i];
                    if t.weight > e.weight {
                        e.weight = t.weight;
                    }
                    // Asked for unconditionally once = unconditional.
                    e.scheduled &= t.scheduled;
                    e.alternating &= t.alternating;
                }
                None => {
                    self.index.insert(t.tag.clone(), self.tags.len());
                    self.tags.push(t);
                }
            }
        }
        for c in part.captions {
            if self.caption_set.insert(c.clone()) {
                self.captions.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests;
