//! What is taken out of a prompt before (or after) attention parsing: A1111 comments,
//! SwarmUI-style `<...>` templates, extra networks (`<lora:...>`), ComfyUI
//! `embedding:name`, and `BREAK` markers for the dialects whose parsers do not split them.

use super::{is_word_char, Dialect, Piece};
use crate::metadata::Lora;
use regex::Regex;
use std::sync::LazyLock;

/// A1111 comments (the built-in "Comments" script strips `#` to end of line). Because
/// infotexts are written *after* that script runs, a `#` that survives in one is usually
/// text that was encoded (`hatsune miku, #テスト`), so only these are comments:
/// a `#` that starts a line (after optional indentation), or one that follows whitespace
/// after other text on the line (`masterpiece  # quality tags`) — but not one that opens a
/// comma-separated item (`, #tag`) or sits inside a word (`C#`).
pub(crate) fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&line[..comment_start(line).unwrap_or(line.len())]);
    }
    out
}

fn comment_start(line: &str) -> Option<usize> {
    let mut prev_non_ws: Option<char> = None;
    let mut prev: Option<char> = None;
    for (i, c) in line.char_indices() {
        if c == '#' {
            match (prev, prev_non_ws) {
                (_, None) => return Some(i),
                (Some(p), Some(q)) if p.is_whitespace() && q != ',' => return Some(i),
                _ => {}
            }
        }
        if !c.is_whitespace() {
            prev_non_ws = Some(c);
        }
        prev = Some(c);
    }
    None
}

/// SwarmUI-style template names recognised without a `:` (`<break>`, `<refiner>`) or with
/// a `[...]` argument (`<random[1-3]:...>`, `<setvar[x]:...>`).
const TEMPLATE_NAMES: &[&str] = &[
    "alt",
    "alternate",
    "base",
    "break",
    "clear",
    "comment",
    "embed",
    "embedding",
    "extend",
    "fromto",
    "macro",
    "object",
    "param",
    "preset",
    "random",
    "refiner",
    "region",
    "repeat",
    "segment",
    "setmacro",
    "setvar",
    "trigger",
    "var",
    "video",
    "videoswap",
    "wc",
    "wildcard",
];

/// Extra-network types that become [`Lora`] entries.
const NETWORK_TYPES: &[&str] = &["lora", "lyco", "locon", "loha", "lokr", "hypernet"];

pub(crate) struct Templates {
    pub text: String,
    pub templates: Vec<String>,
    pub embeddings: Vec<String>,
    pub breaks: usize,
}

/// Removes `<name...>` template constructs (nested `<...>` inside them included): known
/// SwarmUI names, and any `<word:...>` / `<word[...]:...>` that is not an extra network
/// (those are left for [`extract_networks`]). `<break>` becomes a tag boundary,
/// `<embed:x>` / `<embedding:x>` an embedding; the rest is recorded as non-literal.
pub(crate) fn strip_templates(text: &str) -> Templates {
    let chars: Vec<char> = text.chars().collect();
    // The matching `>` of every `<`, nesting counted.
    let mut close = vec![None; chars.len()];
    let mut stack = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '<' {
            stack.push(i);
        } else if c == '>' {
            if let Some(o) = stack.pop() {
                close[o] = Some(i);
            }
        }
    }
    let mut out = Templates {
        text: String::with_capacity(text.len()),
        templates: Vec::new(),
        embeddings: Vec::new(),
        breaks: 0,
    };
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '<' {
            if let Some(end) = close[i] {
                if let Some(kind) = template_kind(&chars[i + 1..end]) {
                    let body: String = chars[i..=end].iter().collect();
                    match kind {
                        TemplateKind::Break => {
                            out.breaks += 1;
                            out.text.push('\n');
                        }
                        TemplateKind::Embedding(name) => {
                            let name = strip_extension(name.trim()).to_string();
                            if !name.is_empty() {
                                out.embeddings.push(name);
                            }
                        }
                        TemplateKind::Other => out.templates.push(body),
                    }
                    i = end + 1;
                    continue;
                }
            }
        }
        out.text.push(chars[i]);
        i += 1;
    }
    out
}

enum TemplateKind {
    Break,
    Embedding(String),
    Other,
}

/// What `<inner>` is, when it is a template.
fn template_kind(inner: &[char]) -> Option<TemplateKind> {
    let name_len = inner
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .count();
    if name_len == 0 || !inner[0].is_ascii_alphabetic() {
        return None;
    }
    let name: String = inner[..name_len].iter().collect::<String>().to_lowercase();
    let rest = &inner[name_len..];
    let known = TEMPLATE_NAMES.contains(&name.as_str());
    let (has_bracket, after) = match rest.first() {
        Some('[') => match rest.iter().position(|&c| c == ']') {
            Some(p) => (true, &rest[p + 1..]),
            None => return None,
        },
        _ => (false, rest),
    };
    match after.first() {
        None if known || has_bracket => {}
        Some(':') if !NETWORK_TYPES.contains(&name.as_str()) && (known || has_bracket) => {}
        _ => return None,
    }
    Some(match name.as_str() {
        "break" => TemplateKind::Break,
        "embed" | "embedding" if after.first() == Some(&':') => {
            TemplateKind::Embedding(after[1..].iter().collect())
        }
        _ => TemplateKind::Other,
    })
}

pub(crate) struct Networks {
    pub text: String,
    pub loras: Vec<Lora>,
    pub embeddings: Vec<String>,
    pub templates: Vec<String>,
}

static EXTRA_NETWORK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<(\w+):([^>]+)>").expect("extra-network regex") // a constant: cannot fail
});

/// A1111's extra-network syntax `<(\w+):([^>]+)>`, removed from the text whatever the type
/// (as A1111 does): `lora`/`lyco`/`hypernet` (and `locon`/`loha`/`lokr`) become [`Lora`]
/// entries, `embed`/`embedding` embeddings, anything else a template.
pub(crate) fn extract_networks(text: &str, dialect: Dialect) -> Networks {
    let mut out = Networks {
        text: String::with_capacity(text.len()),
        loras: Vec::new(),
        embeddings: Vec::new(),
        templates: Vec::new(),
    };
    let mut last = 0;
    for caps in EXTRA_NETWORK.captures_iter(text) {
        let (Some(m), Some(kind), Some(args)) = (caps.get(0), caps.get(1), caps.get(2)) else {
            continue;
        };
        out.text.push_str(&text[last..m.start()]);
        last = m.end();
        let kind = kind.as_str().to_lowercase();
        match kind.as_str() {
            "embed" | "embedding" => {
                let name = strip_extension(args.as_str().trim());
                if !name.is_empty() {
                    out.embeddings.push(name.to_string());
                }
            }
            k if NETWORK_TYPES.contains(&k) => match network(k, args.as_str(), dialect) {
                Some(lora) => out.loras.push(lora),
                None => out.templates.push(m.as_str().to_string()),
            },
            _ => out.templates.push(m.as_str().to_string()),
        }
    }
    out.text.push_str(&text[last..]);
    out
}

/// One extra network's arguments (`name:te:unet:dyn`, `k=v` named).
///
/// A1111 (`extra_networks_lora.py`): `te` = 1st number (default 1.0, or `te=`), `unet` =
/// 2nd number (default `te`, or `unet=`). SwarmUI and ComfyUI prompt-LoRA nodes (the
/// ComfyUI dialect) write the model weight first: `<lora:name:model:clip>`. When the two
/// strengths are equal the entry has `weight` only; otherwise `weight` = UNet/model and
/// `clip_weight` = text encoder. A number that does not parse leaves the weight unknown.
pub(crate) fn network(kind: &str, args: &str, dialect: Dialect) -> Option<Lora> {
    let mut positional: Vec<&str> = Vec::new();
    let mut named: Vec<(&str, &str)> = Vec::new();
    for item in args.split(':') {
        let parts: Vec<&str> = item.splitn(3, '=').collect();
        if parts.len() == 2 {
            named.push((parts[0].trim(), parts[1]));
        } else {
            positional.push(item);
        }
    }
    let name = positional.first()?.trim().to_string();
    if name.is_empty() {
        return None;
    }
    let num = |s: &str| s.trim().parse::<f64>().ok().filter(|w| w.is_finite());
    let get_named = |k: &str| {
        named
            .iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| num(v))
    };
    if kind == "hypernet" {
        let w = positional.get(1).map(|s| num(s)).unwrap_or(Some(1.0));
        return Some(Lora {
            name,
            weight: w,
            ..Lora::default()
        });
    }
    let (te, unet) = if dialect == Dialect::Comfyui {
        let unet = positional.get(1).map(|s| num(s)).unwrap_or(Some(1.0));
        let unet = get_named("unet").unwrap_or(unet);
        let te = positional.get(2).map(|s| num(s)).unwrap_or(unet);
        let te = get_named("te").unwrap_or(te);
        (te, unet)
    } else {
        let te = positional.get(1).map(|s| num(s)).unwrap_or(Some(1.0));
        let te = get_named("te").unwrap_or(te);
        let unet = positional.get(2).map(|s| num(s)).unwrap_or(te);
        let unet = get_named("unet").unwrap_or(unet);
        (te, unet)
    };
    Some(Lora {
        name,
        weight: unet,
        clip_weight: if te == unet { None } else { te },
        hash: None,
    })
}

/// Drops a model-file extension from an embedding name.
pub(crate) fn strip_extension(name: &str) -> &str {
    for ext in [".safetensors", ".pt", ".bin", ".ckpt", ".pth"] {
        if name.len() > ext.len() && name.to_ascii_lowercase().ends_with(ext) {
            return &name[..name.len() - ext.len()];
        }
    }
    name
}

/// ComfyUI's `embedding:name` (a word starting with `embedding:`; the name runs to
/// whitespace or `,`) moved out of the text into `embeddings`.
pub(crate) fn take_embeddings(pieces: Vec<Piece>, embeddings: &mut Vec<String>) -> Vec<Piece> {
    const ID: &str = "embedding:";
    if !pieces.iter().any(|p| p.text.contains("embedding")) {
        return pieces;
    }
    // A1111's parser cuts `embedding:name` at the `:`; glue equal runs back together.
    let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match merged.last_mut() {
            Some(last)
                if !last.brk
                    && !p.brk
                    && last.weight == p.weight
                    && last.flags == p.flags
                    && last.group == p.group =>
            {
                last.text.push_str(&p.text)
            }
            _ => merged.push(p),
        }
    }
    let mut pieces = merged;
    for p in pieces.iter_mut().filter(|p| !p.brk) {
        if !p.text.contains(ID) {
            continue;
        }
        let mut text = String::with_capacity(p.text.len());
        let mut rest = p.text.as_str();
        while let Some(pos) = rest.find(ID) {
            let at_word_start = rest[..pos]
                .chars()
                .last()
                .map(|c| c.is_whitespace() || c == ',')
                .unwrap_or(true);
            let after = &rest[pos + ID.len()..];
            let name_len = after
                .find(|c: char| c.is_whitespace() || c == ',')
                .unwrap_or(after.len());
            let name = strip_extension(&after[..name_len]);
            if at_word_start && !name.is_empty() {
                text.push_str(&rest[..pos]);
                embeddings.push(name.to_string());
                rest = &after[name_len..];
            } else {
                text.push_str(&rest[..pos + ID.len()]);
                rest = after;
            }
        }
        text.push_str(rest);
        p.text = text;
    }
    pieces
}

/// Splits text pieces on whole-word, case-sensitive `BREAK` (with the whitespace around
/// it) into `BREAK` markers — for the dialects whose parser does not (A1111's does).
pub(crate) fn split_breaks(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        if p.brk || !p.text.contains("BREAK") {
            out.push(p);
            continue;
        }
        let chars: Vec<char> = p.text.chars().collect();
        let n = chars.len();
        let mut start = 0;
        let mut i = 0;
        while i + 5 <= n {
            let hit = chars[i..i + 5].iter().copied().eq("BREAK".chars())
                && (i == 0 || !is_word_char(chars[i - 1]))
                && (i + 5 == n || !is_word_char(chars[i + 5]));
            if hit {
                let part: String = chars[start..i].iter().collect();
                out.push(Piece {
                    text: part,
                    ..p.clone()
                });
                out.push(Piece::brk());
                i += 5;
                start = i;
            } else {
                i += 1;
            }
        }
        let part: String = chars[start..].iter().collect();
        out.push(Piece { text: part, ..p });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments() {
        assert_eq!(strip_comments("a, b # note\nc"), "a, b \nc");
        assert_eq!(strip_comments("# whole line\na"), "\na");
        assert_eq!(strip_comments("  # indented\na"), "  \na");
        assert_eq!(
            strip_comments("hatsune miku, #テスト"),
            "hatsune miku, #テスト"
        );
        assert_eq!(strip_comments("C#, F#"), "C#, F#");
        assert_eq!(strip_comments("a,# x"), "a,# x");
    }

    #[test]
    fn loras() {
        let n = extract_networks(
            "a <lora:my lora v2.1:-0.5> b <lyco:x:0.8:0.5>",
            Dialect::A1111,
        );
        assert_eq!(n.text, "a  b ");
        assert_eq!(n.loras[0].name, "my lora v2.1");
        assert_eq!(n.loras[0].weight, Some(-0.5));
        assert_eq!(n.loras[0].clip_weight, None);
        assert_eq!(n.loras[1].weight, Some(0.5));
        assert_eq!(n.loras[1].clip_weight, Some(0.8));
        let n = extract_networks("<lora:x:te=0.5>", Dialect::A1111);
        assert_eq!(
            (n.loras[0].weight, n.loras[0].clip_weight),
            (Some(0.5), None)
        );
        let n = extract_networks("<lora:x:1:unet=0.3:dyn=16>", Dialect::A1111);
        assert_eq!(
            (n.loras[0].weight, n.loras[0].clip_weight),
            (Some(0.3), Some(1.0))
        );
        let n = extract_networks("<lora:x>", Dialect::A1111);
        assert_eq!(
            (n.loras[0].weight, n.loras[0].clip_weight),
            (Some(1.0), None)
        );
        let n = extract_networks("<lora: :1>", Dialect::A1111);
        assert!(n.loras.is_empty() && n.templates == vec!["<lora: :1>"] && n.text.is_empty());
        let n = extract_networks("<lora:x:0.8:0.5>", Dialect::Comfyui);
        assert_eq!(
            (n.loras[0].weight, n.loras[0].clip_weight),
            (Some(0.8), Some(0.5))
        );
        let n = extract_networks("<hypernet:h:0.7> <foo:bar>", Dialect::A1111);
        assert_eq!(n.loras[0].weight, Some(0.7));
        assert_eq!(n.templates, vec!["<foo:bar>"]);
        let n = extract_networks("<lora:ロラ:abc>", Dialect::A1111);
        assert_eq!(
            (n.loras[0].name.as_str(), n.loras[0].weight),
            ("ロラ", None)
        );
    }

    #[test]
    fn templates() {
        let t =
            strip_templates("a <random:red|blue> b <break> c <setvar[x]:y> <o>_<o> <embed:foo.pt>");
        assert_eq!(t.text, "a  b \n c  <o>_<o> ");
        assert_eq!(t.templates, vec!["<random:red|blue>", "<setvar[x]:y>"]);
        assert_eq!(t.embeddings, vec!["foo"]);
        assert_eq!(t.breaks, 1);
        let t = strip_templates("<random:<lora:a:1>|b> x <lora:c:1>");
        assert_eq!(t.text, " x <lora:c:1>");
        assert_eq!(t.templates, vec!["<random:<lora:a:1>|b>"]);
    }

    #[test]
    fn embeddings() {
        let mut e = Vec::new();
        let p = take_embeddings(
            vec![Piece::new(
                "style of embedding:SDA768.pt girl, xembedding:no",
                1.0,
                0,
                0,
            )],
            &mut e,
        );
        assert_eq!(e, vec!["SDA768"]);
        assert_eq!(p[0].text, "style of  girl, xembedding:no");
    }
}
