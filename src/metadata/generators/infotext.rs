//! The A1111 "infotext" (`parameters` text): A1111, Forge and its forks, SD.Next, Civitai's
//! text form, Fooocus' a1111 scheme, ComfyUI save nodes.
//!
//! The reader follows A1111's own `parse_generation_parameters`: the last line is the
//! parameter line only when its regex finds at least three `key: value` pairs; the other lines
//! are stripped, and from the first one starting with `Negative prompt:` on they are the
//! negative prompt. Two extensions on top: values that start with `[` or `{` are read as one
//! balanced JSON block (`Civitai resources: [...]`, `Hashes: {...}`, `Cutoff targets: [...]`,
//! which extensions write unquoted), and a single-line "jammed" infotext gets its newlines back
//! before `Negative prompt:` and `Steps:` (Civitai's rule).

use super::util::{parse_f64, parse_u64};
use crate::metadata::{GenMeta, Lora};
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

/// An infotext split into its three parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Infotext {
    pub prompt: String,
    pub negative: String,
    /// The parameter line's pairs in order, quoted values already unquoted.
    pub params: Vec<(String, String)>,
}

impl Infotext {
    /// The first value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a text looks like an infotext at all (the A2 table's last row).
pub fn looks_like_infotext(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() {
        return false;
    }
    if t.contains("Negative prompt:") {
        return true;
    }
    // `Steps: 20` as a parameter: at a line start or after a `,`/`.` separator.
    static STEPS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:^|[\n,.])\s*Steps:\s*\d").unwrap());
    STEPS.is_match(t)
}

/// Splits an infotext into prompt, negative prompt and parameters.
pub fn parse(text: &str) -> Infotext {
    let normalized = normalize_jammed(text);
    let stripped = normalized.trim();
    let mut lines: Vec<&str> = stripped.split('\n').collect();
    let mut params = Vec::new();
    if let Some(last) = lines.last() {
        let found = scan_params(last);
        if found.len() >= 3 {
            params = found;
            lines.pop();
        }
    }
    let mut prompt = String::new();
    let mut negative = String::new();
    let mut done_with_prompt = false;
    for line in lines {
        let mut line = line.trim();
        if let Some(rest) = line.strip_prefix("Negative prompt:") {
            done_with_prompt = true;
            line = rest.trim();
        }
        let target = if done_with_prompt {
            &mut negative
        } else {
            &mut prompt
        };
        if !target.is_empty() {
            target.push('\n');
        }
        target.push_str(line);
    }
    Infotext {
        prompt,
        negative,
        params,
    }
}

/// Puts a jammed single-line infotext back on separate lines: a newline before
/// `Negative prompt:` and before `Steps: <digit>` when a `,`/`.` delimiter precedes them.
/// Left alone when a line already starts with `Steps:`. `Steps:` is not split off when the
/// text before it on its line is itself all `key: value` pairs (Fooocus' a1111 scheme starts
/// its parameter line with `Performance: …, Steps: …`).
pub fn normalize_jammed(text: &str) -> String {
    static STEPS_LINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^Steps: ?\d").unwrap());
    static NEG: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)[ \t\r]{0,7}[.,][ \t\r.,]{0,7}(Negative prompt:)").unwrap()
    });
    static STEPS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)[ \t\r]{0,7}[.,][ \t\r.,]{0,7}(Steps:)\s*\d").unwrap());
    if STEPS_LINE.is_match(text) {
        return text.to_string();
    }
    let with_neg = NEG.replace_all(text, "\n$1").into_owned();
    let mut out = String::with_capacity(with_neg.len() + 2);
    let mut last = 0;
    for caps in STEPS.captures_iter(&with_neg) {
        let (Some(m), Some(kw)) = (caps.get(0), caps.get(1)) else {
            continue;
        };
        let line_start = with_neg[..m.start()].rfind('\n').map_or(0, |i| i + 1);
        let before = &with_neg[line_start..m.start()];
        let before_is_params =
            !before.trim_start().starts_with("Negative prompt:") && is_all_params(before);
        out.push_str(&with_neg[last..m.start()]);
        if before_is_params {
            out.push_str(&with_neg[m.start()..m.end()]);
        } else {
            out.push('\n');
            out.push_str(&with_neg[kw.start()..m.end()]);
        }
        last = m.end();
    }
    out.push_str(&with_neg[last..]);
    out
}

/// Whether a non-empty text consists only of `key: value` pairs.
fn is_all_params(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() {
        return false;
    }
    let mut pos = 0;
    let mut any = false;
    while pos < t.len() {
        match match_at(t, pos) {
            Ok((_, _, end)) => {
                pos = end.max(next_char(t, pos));
                any = true;
            }
            Err(_) => return false,
        }
    }
    any
}

fn first_key_start(t: &str, pos: usize) -> usize {
    t[pos..]
        .char_indices()
        .find(|(_, c)| !c.is_whitespace())
        .map_or(t.len(), |(i, _)| pos + i)
}

/// A1111's `re_param` findall, with balanced `[]`/`{}` values: every `key: value` pair of a
/// parameter line, quoted values unquoted.
pub fn scan_params(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < line.len() {
        match match_at(line, pos) {
            Ok((key, value, end)) => {
                out.push((key, unquote(value)));
                pos = end.max(next_char(line, pos));
            }
            Err(next) => pos = next.max(next_char(line, pos)),
        }
    }
    out
}

fn next_char(s: &str, pos: usize) -> usize {
    s[pos..]
        .chars()
        .next()
        .map_or(s.len(), |c| pos + c.len_utf8())
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_key_char(c: char) -> bool {
    is_word(c) || c == ' ' || c == '-' || c == '/'
}

/// Tries `\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)` at `start` (with the balanced
/// block extension). `Ok((key, raw value, end))`, or `Err(where the next try may start)`.
fn match_at(line: &str, start: usize) -> Result<(String, &str, usize), usize> {
    let bytes_len = line.len();
    let i = first_key_start(line, start);
    let mut chars = line[i..].char_indices();
    let Some((_, first)) = chars.next() else {
        return Err(bytes_len);
    };
    if !is_word(first) {
        return Err(i);
    }
    // The key run: the regex's `[\w \-/]+` is greedy and `:` is outside the class, so the
    // colon can only sit right after the maximal run.
    let after_first = i + first.len_utf8();
    let j = line[after_first..]
        .char_indices()
        .find(|(_, c)| !is_key_char(*c))
        .map_or(bytes_len, |(off, _)| after_first + off);
    let key_len_ok = line[i..j].chars().count() >= 2;
    if !key_len_ok || !line[j..].starts_with(':') {
        // Any later start inside this run ends at the same place and fails the same way.
        return Err(j);
    }
    let key = line[i..j].trim_end().to_string();
    let k = first_key_start(line, j + 1);
    let rest = &line[k..];
    if rest.starts_with('"') {
        if let Some(close) = quoted_end(rest) {
            let after = k + close + 1;
            if let Some(end) = comma_or_end(line, after, false) {
                return Ok((key, &line[k..after], end));
            }
        }
    } else if rest.starts_with('[') || rest.starts_with('{') {
        if let Some(close) = balanced_end(rest) {
            let after = k + close + 1;
            if let Some(end) = comma_or_end(line, after, true) {
                return Ok((key, &line[k..after], end));
            }
        }
    }
    let value_end = line[k..].find(',').map_or(bytes_len, |p| k + p);
    let end = if value_end < bytes_len {
        value_end + 1
    } else {
        bytes_len
    };
    Ok((key, &line[k..value_end], end))
}

/// After a value ending at `after`: the position past a following `,`, or the end of the
/// line. With `allow_space`, spaces may come before the comma.
fn comma_or_end(line: &str, after: usize, allow_space: bool) -> Option<usize> {
    let rest = &line[after..];
    let rest_trimmed = if allow_space {
        rest.trim_start_matches([' ', '\t'])
    } else {
        rest
    };
    if rest_trimmed.is_empty() {
        return Some(line.len());
    }
    rest_trimmed
        .starts_with(',')
        .then(|| line.len() - rest_trimmed.len() + 1)
}

/// The byte index of the closing quote of `"(?:\\.|[^\\"])+"` at the start of `s`.
fn quoted_end(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let mut inside = 0;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
                inside += 1;
            }
            '"' => return (inside > 0).then_some(i),
            _ => inside += 1,
        }
    }
    None
}

/// The byte index of the bracket that closes the `[`/`{` at the start of `s`, skipping JSON
/// strings.
pub fn balanced_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => depth += 1,
            ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// A1111's `unquote`: a value wrapped in `"` is JSON-decoded; one that fails to decode is kept.
fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(v) {
            return s;
        }
    }
    v.to_string()
}

/// Which tool wrote an infotext, from its `Version` and markers (enslo's rules, with SD.Next's
/// markers first, and SD.Next's `Pipeline`/`Operations` keys and bare git-hash `Version` added).
pub fn generator_of(info: &Infotext) -> &'static str {
    // SD.Next names itself; checked before `Version`, which for SD.Next is a git hash that may
    // look like a Forge version (`f324b7c`).
    if info.get("App").is_some_and(|a| a.trim() == "SD.Next") {
        return "sdnext";
    }
    if let Some(version) = info.get("Version") {
        let v = version.split_whitespace().next().unwrap_or("");
        static V_A1111: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^v\d").unwrap());
        static V_FORGE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^f\d").unwrap());
        static V_EASY: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^f\d+\.\d+(\.\d+)?-v").unwrap());
        static V_REFORGE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^f\d+\.\d+(\.\d+)?v\d+-v").unwrap());
        if V_A1111.is_match(v) {
            return "a1111";
        }
        if v == "classic" {
            return "forge-classic";
        }
        if v.starts_with("neo") {
            return "forge-neo";
        }
        if V_FORGE.is_match(v) {
            if V_EASY.is_match(v) {
                return "easy-reforge";
            }
            if V_REFORGE.is_match(v) {
                return "reforge";
            }
            return "forge";
        }
        if v.starts_with("Fooocus") {
            return "fooocus";
        }
        if v == "ComfyUI" {
            return "comfyui";
        }
    }
    if info.get("Civitai resources").is_some() {
        return "civitai";
    }
    // SD.Next's own keys: the diffusers pipeline class and the operations run (also written
    // when `App` names a remote backend such as `huggingface.co`).
    if info.get("Pipeline").is_some() && info.get("Operations").is_some() {
        return "sdnext";
    }
    static GIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[0-9a-f]{7,40}$").unwrap());
    if info.get("Version").is_some_and(|v| GIT.is_match(v.trim())) {
        return "sdnext";
    }
    "a1111"
}

/// Maps an infotext onto the generation fields. `generator` and `pixel_*` are left to the
/// caller; `loras` is always stated (empty when the text names none).
pub fn to_genmeta(info: &Infotext) -> GenMeta {
    let mut m = GenMeta {
        prompt: Some(info.prompt.clone()),
        negative_prompt: Some(info.negative.clone()),
        ..GenMeta::default()
    };
    let mut used: Vec<&'static str> = Vec::new();
    read_fields(info, &mut used, &mut m);
    let mut loras = named_loras(info, &mut used);
    add_civitai_resources(info, &mut m, &mut loras);
    add_hashes(info, &mut m, &mut loras);
    m.loras = Some(loras);

    for (k, v) in &info.params {
        if !used.contains(&k.as_str()) {
            m.params.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    m
}

/// The generation settings, each from the first of its keys present.
fn read_fields(info: &Infotext, used: &mut Vec<&'static str>, m: &mut GenMeta) {
    m.steps = take(info, used, "Steps")
        .and_then(parse_u64)
        .and_then(|n| u32::try_from(n).ok());
    m.sampler = take(info, used, "Sampler").map(str::to_string);
    m.scheduler = take(info, used, "Schedule type")
        .or_else(|| take(info, used, "Scheduler"))
        .or_else(|| take(info, used, "Sampler sigma"))
        .map(str::to_string);
    m.cfg = take(info, used, "CFG scale")
        .or_else(|| take(info, used, "CFG Scale"))
        .and_then(parse_f64);
    m.seed = take(info, used, "Seed").and_then(parse_u64);
    if let Some((w, h)) = info.get("Size").and_then(size_of) {
        used.push("Size");
        m.width = Some(w);
        m.height = Some(h);
    }
    m.model = take(info, used, "Model").map(str::to_string);
    m.model_hash = take(info, used, "Model hash").map(str::to_string);
    m.vae = take(info, used, "VAE").map(str::to_string);
    m.denoise = take(info, used, "Denoising strength").and_then(parse_f64);
    m.clip_skip = take(info, used, "Clip skip")
        .and_then(parse_u64)
        .and_then(|n| u32::try_from(n).ok());
}

/// LoRAs: prompt tags, then what only the parameter line names (`Lora hashes`, `Hypernet`,
/// the AddNet keys).
fn named_loras(info: &Infotext, used: &mut Vec<&'static str>) -> Vec<Lora> {
    let mut loras = prompt_networks(&info.prompt);
    if let Some(hashes) = take(info, used, "Lora hashes") {
        for (name, hash) in name_hash_pairs(hashes) {
            match loras.iter_mut().find(|l| l.name == name) {
                Some(l) => l.hash = Some(hash),
                None => loras.push(Lora {
                    name,
                    hash: Some(hash),
                    ..Lora::default()
                }),
            }
        }
    }
    if let Some(name) = take(info, used, "Hypernet") {
        if !loras.iter().any(|l| l.name == name) {
            loras.push(Lora {
                name: name.to_string(),
                weight: take(info, used, "Hypernet strength").and_then(parse_f64),
                ..Lora::default()
            });
        }
    }
    add_addnet_loras(info, &mut loras);
    loras
}

/// Civitai's `Civitai resources` JSON: the checkpoint when no model was named, and the LoRAs
/// not named yet.
fn add_civitai_resources(info: &Infotext, m: &mut GenMeta, loras: &mut Vec<Lora>) {
    let civitai = info
        .get("Civitai resources")
        .and_then(|v| serde_json::from_str::<Value>(v).ok());
    let Some(resources) = civitai.as_ref().and_then(Value::as_array) else {
        return;
    };
    for r in resources {
        let kind = r.get("type").and_then(Value::as_str).unwrap_or("");
        let name = r.get("modelName").and_then(Value::as_str).unwrap_or("");
        let version = r.get("modelVersionName").and_then(Value::as_str);
        let full = match version {
            Some(v) if !v.is_empty() && !name.is_empty() => format!("{name} {v}"),
            _ => name.to_string(),
        };
        if full.is_empty() {
            continue;
        }
        match kind.to_ascii_lowercase().as_str() {
            "checkpoint" if m.model.is_none() => m.model = Some(full),
            "lora" | "locon" | "lycoris" | "dora"
                if !loras.iter().any(|l| l.name == full || l.name == name) =>
            {
                loras.push(Lora {
                    name: full,
                    weight: r.get("weight").and_then(super::util::num_f64),
                    ..Lora::default()
                });
            }
            _ => {}
        }
    }
}

/// The `Hashes` JSON: the model's hash and the LoRAs' (`lora:<name>`) where not known yet.
fn add_hashes(info: &Infotext, m: &mut GenMeta, loras: &mut [Lora]) {
    let Some(hashes) = info
        .get("Hashes")
        .and_then(|v| serde_json::from_str::<Value>(v).ok())
    else {
        return;
    };
    if m.model_hash.is_none() {
        m.model_hash = hashes
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    for l in loras.iter_mut().filter(|l| l.hash.is_none()) {
        l.hash = hashes
            .get(format!("lora:{}", l.name))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
}

/// A key's value, noted as mapped onto a field.
fn take<'i>(
    info: &'i Infotext,
    used: &mut Vec<&'static str>,
    key: &'static str,
) -> Option<&'i str> {
    let v = info.get(key)?;
    used.push(key);
    Some(v)
}

/// `Size`'s `^(\d+)x(\d+)$`.
fn size_of(v: &str) -> Option<(u32, u32)> {
    let (w, h) = v.split_once('x')?;
    if w.is_empty() || h.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !h.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((w.parse().ok()?, h.parse().ok()?))
}

/// `name: hash, name2: hash2` (the unquoted `Lora hashes` / `TI hashes` value).
fn name_hash_pairs(v: &str) -> Vec<(String, String)> {
    v.split(',')
        .filter_map(|pair| {
            let (name, hash) = pair.rsplit_once(':')?;
            let (name, hash) = (name.trim(), hash.trim());
            (!name.is_empty() && !hash.is_empty()).then(|| (name.to_string(), hash.to_string()))
        })
        .collect()
}

/// The extra networks in a prompt: `<lora:NAME:W>`, `<lora:NAME:TE:UNET>`,
/// `<lora:NAME:te=0.5:unet=1>`, `<lyco:…>`, `<hypernet:NAME:W>`. Each name once, first
/// occurrence kept.
pub fn prompt_networks(prompt: &str) -> Vec<Lora> {
    static TAG: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"<(lora|lyco|hypernet):([^>]+)>").unwrap());
    let mut out: Vec<Lora> = Vec::new();
    for caps in TAG.captures_iter(prompt) {
        let kind = &caps[1];
        let mut args = caps[2].split(':');
        let name = args.next().unwrap_or("").trim().to_string();
        if name.is_empty() || out.iter().any(|l| l.name == name) {
            continue;
        }
        let mut positional = Vec::new();
        let (mut te, mut unet) = (None, None);
        for a in args {
            let a = a.trim();
            if let Some(v) = a.strip_prefix("te=") {
                te = parse_f64(v);
            } else if let Some(v) = a.strip_prefix("unet=") {
                unet = parse_f64(v);
            } else if a.contains('=') {
                // `dyn=`, and other named arguments: not a weight.
            } else {
                positional.push(parse_f64(a));
            }
        }
        let lora = if kind == "hypernet" {
            Lora {
                name,
                weight: Some(positional.first().copied().flatten().unwrap_or(1.0)),
                ..Lora::default()
            }
        } else {
            let te = te.or(positional.first().copied().flatten()).unwrap_or(1.0);
            let unet = unet.or(positional.get(1).copied().flatten()).unwrap_or(te);
            Lora {
                name,
                weight: Some(unet),
                clip_weight: (te != unet).then_some(te),
                ..Lora::default()
            }
        };
        out.push(lora);
    }
    out
}

/// Additional Networks: `AddNet Module N: LoRA, AddNet Model N: name(hash), AddNet Weight A N:
/// 0.8, AddNet Weight B N: 0.8` (A = UNet, B = text encoder).
fn add_addnet_loras(info: &Infotext, loras: &mut Vec<Lora>) {
    for n in 1..=32 {
        let Some(model) = info.get(&format!("AddNet Model {n}")) else {
            continue;
        };
        let module = info.get(&format!("AddNet Module {n}")).unwrap_or("LoRA");
        if !module.eq_ignore_ascii_case("lora") {
            continue;
        }
        let (name, hash) = match model.rsplit_once('(') {
            Some((name, rest)) if rest.ends_with(')') => (
                name.trim().to_string(),
                Some(rest.trim_end_matches(')').to_string()),
            ),
            _ => (model.trim().to_string(), None),
        };
        if name.is_empty() || loras.iter().any(|l| l.name == name) {
            continue;
        }
        let weight = info
            .get(&format!("AddNet Weight A {n}"))
            .or_else(|| info.get(&format!("AddNet Weight {n}")))
            .and_then(parse_f64);
        let clip = info
            .get(&format!("AddNet Weight B {n}"))
            .and_then(parse_f64);
        loras.push(Lora {
            name,
            weight,
            clip_weight: clip.filter(|c| Some(*c) != weight),
            hash,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Infotext {
        parse(text)
    }

    #[test]
    fn basic_three_parts() {
        let i = p("a cat\nNegative prompt: a dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768");
        assert_eq!(i.prompt, "a cat");
        assert_eq!(i.negative, "a dog");
        let m = to_genmeta(&i);
        assert_eq!(m.steps, Some(20));
        assert_eq!(m.sampler.as_deref(), Some("Euler a"));
        assert_eq!(m.cfg, Some(7.0));
        assert_eq!((m.width, m.height), (Some(512), Some(768)));
        assert_eq!(m.loras, Some(vec![]));
        assert!(!m.params.contains_key("Size"));
    }

    #[test]
    fn no_prompt_only_parameters() {
        let i = p("Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 5");
        assert_eq!(i.prompt, "");
        assert_eq!(i.negative, "");
        assert_eq!(i.get("Seed"), Some("5"));
    }

    #[test]
    fn only_negative_prompt() {
        let i = p("Negative prompt: ugly, blurry\nSteps: 20, Sampler: Euler, CFG scale: 7");
        assert_eq!(i.prompt, "");
        assert_eq!(i.negative, "ugly, blurry");
    }

    #[test]
    fn empty_negative_prompt_line() {
        let i = p("a photo\nNegative prompt: \nSteps: 50, Size: 1024x1024, Seed: 1, CFG scale: 3.5, App: SD.Next");
        assert_eq!(i.prompt, "a photo");
        assert_eq!(i.negative, "");
        assert_eq!(generator_of(&i), "sdnext");
    }

    #[test]
    fn negative_prompt_inside_a_line_stays_in_the_prompt() {
        let i = p("a sign that reads Negative prompt: none\nNegative prompt: text\nSteps: 20, Sampler: Euler, Seed: 3");
        assert_eq!(i.prompt, "a sign that reads Negative prompt: none");
        assert_eq!(i.negative, "text");
    }

    #[test]
    fn blank_lines_survive_and_lines_are_stripped() {
        let i = p("a, \nb\n\nNegative prompt: c, \n\nSteps: 20, Sampler: X, Seed: 1");
        assert_eq!(i.prompt, "a,\nb\n");
        assert_eq!(i.negative, "c,\n");
    }

    #[test]
    fn fewer_than_three_pairs_is_not_a_parameter_line() {
        let i = p("a cat\nStyle: anime, Mood: calm");
        assert_eq!(i.prompt, "a cat\nStyle: anime, Mood: calm");
        assert!(i.params.is_empty());
    }

    #[test]
    fn quoted_values_with_escapes() {
        let i = p(r#"x
Steps: 20, ADetailer prompt: "a \"quoted\" face, smile\nsecond line", Lora hashes: "a: 111, b: 222", Seed: 1"#);
        assert_eq!(
            i.get("ADetailer prompt"),
            Some("a \"quoted\" face, smile\nsecond line")
        );
        assert_eq!(i.get("Lora hashes"), Some("a: 111, b: 222"));
        assert_eq!(i.get("Seed"), Some("1"));
    }

    #[test]
    fn unquoted_bracketed_list_is_kept_whole() {
        let i = p(r#"x
Steps: 20, Cutoff targets: ["white", "black", "green"], Cutoff padding: _</w>, Seed: 3"#);
        assert_eq!(
            i.get("Cutoff targets"),
            Some(r#"["white", "black", "green"]"#)
        );
        assert_eq!(i.get("Cutoff padding"), Some("_</w>"));
        assert_eq!(i.get("Seed"), Some("3"));
    }

    #[test]
    fn civitai_resources_json_and_created_date() {
        let i = p(r#"girl
Negative prompt: bad
Steps: 25, Sampler: Euler a, CFG scale: 5, Seed: 1311178179, Size: 1024x1024, Clip skip: 2, Created Date: 2026-01-04T01:27:21.2717070Z, Civitai resources: [{"type":"checkpoint","modelVersionId":2514310,"modelName":"WAI-illustrious-SDXL","modelVersionName":"v16.0"},{"type":"lora","weight":0.8,"modelName":"Detail","modelVersionName":"v1"}], Civitai metadata: {}"#);
        assert_eq!(i.get("Created Date"), Some("2026-01-04T01:27:21.2717070Z"));
        assert_eq!(i.get("Civitai metadata"), Some("{}"));
        assert_eq!(generator_of(&i), "civitai");
        let m = to_genmeta(&i);
        assert_eq!(m.model.as_deref(), Some("WAI-illustrious-SDXL v16.0"));
        assert_eq!(m.clip_skip, Some(2));
        let loras = m.loras.unwrap();
        assert_eq!(loras.len(), 1);
        assert_eq!(loras[0].name, "Detail v1");
        assert_eq!(loras[0].weight, Some(0.8));
    }

    #[test]
    fn hashes_json_object() {
        let i = p(r#"x
Steps: 20, Sampler: euler, Seed: 1, Hashes: {"model": "abc123", "lora:foo": "def"}, Version: ComfyUI"#);
        assert_eq!(generator_of(&i), "comfyui");
        let mut i2 = i.clone();
        i2.prompt = "<lora:foo:0.5>".into();
        let m = to_genmeta(&i2);
        assert_eq!(m.model_hash.as_deref(), Some("abc123"));
        assert_eq!(m.loras.unwrap()[0].hash.as_deref(), Some("def"));
    }

    #[test]
    fn jammed_single_line() {
        let i = p("masterpiece, 1girl. Negative prompt: lowres, bad hands. Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Hires steps: 10");
        assert_eq!(i.prompt, "masterpiece, 1girl");
        assert_eq!(i.negative, "lowres, bad hands");
        assert_eq!(i.get("Seed"), Some("42"));
        assert_eq!(i.get("Hires steps"), Some("10"));
        // Without a negative prompt.
        let i = p("a cat, Steps: 20, Sampler: Euler, Seed: 1");
        assert_eq!(i.prompt, "a cat");
        assert_eq!(i.get("Steps"), Some("20"));
    }

    #[test]
    fn parameter_line_not_starting_with_steps_is_not_split() {
        let i = p("a cat\nNegative prompt: dog\nPerformance: Speed, Steps: 30, Sampler: dpmpp, Seed: 1, Version: Fooocus v2.5.0");
        assert_eq!(i.prompt, "a cat");
        assert_eq!(i.negative, "dog");
        assert_eq!(i.get("Performance"), Some("Speed"));
        assert_eq!(generator_of(&i), "fooocus");
    }

    #[test]
    fn size_and_lora_hashes() {
        let i = p("1girl, \n<lora:NoobV065sHyperDmd:1> masterpiece <lora:two:0.5:0.8> <lyco:three:te=0.3:unet=0.7>\nNegative prompt: bad\nSteps: 4, Size: 1024x1536, Lora hashes: \"NoobV065sHyperDmd: 45b5bd0819cf, other: 0123456789ab\", Seed: 2");
        let m = to_genmeta(&i);
        assert_eq!((m.width, m.height), (Some(1024), Some(1536)));
        let loras = m.loras.unwrap();
        assert_eq!(loras.len(), 4);
        assert_eq!(loras[0].name, "NoobV065sHyperDmd");
        assert_eq!(loras[0].weight, Some(1.0));
        assert_eq!(loras[0].clip_weight, None);
        assert_eq!(loras[0].hash.as_deref(), Some("45b5bd0819cf"));
        assert_eq!(loras[1].weight, Some(0.8));
        assert_eq!(loras[1].clip_weight, Some(0.5));
        assert_eq!(loras[2].weight, Some(0.7));
        assert_eq!(loras[2].clip_weight, Some(0.3));
        assert_eq!(loras[3].name, "other");
        assert_eq!(loras[3].weight, None);
        assert!(!m.params.contains_key("Lora hashes"));
    }

    #[test]
    fn version_tells_the_family_apart() {
        let g = |v: &str| generator_of(&p(&format!("x\nSteps: 1, Seed: 1, Version: {v}")));
        assert_eq!(g("v1.10.1"), "a1111");
        assert_eq!(g("f2.0.1v1.10.1-previous-669-gdfdcbab6"), "forge");
        assert_eq!(g("f0.0.17v1.8.0rc-1.7.0"), "forge");
        assert_eq!(g("f1.3.0-v1.10.1RC-latest-1038-g19395bf9"), "easy-reforge");
        assert_eq!(g("f1.7.0v2-v1.10.1RC-latest-2215-g4c1a9a14"), "reforge");
        assert_eq!(g("classic"), "forge-classic");
        assert_eq!(g("neo"), "forge-neo");
        assert_eq!(g("ComfyUI"), "comfyui");
        assert_eq!(g("Fooocus v2.5.5"), "fooocus");
        assert_eq!(g("0a083c2"), "sdnext");
        // SD.Next's git hash that looks like a Forge version.
        assert_eq!(
            generator_of(&p("x\nSteps: 1, Seed: 1, App: SD.Next, Version: f324b7c")),
            "sdnext"
        );
        assert_eq!(
            generator_of(&p("x\nSteps: 1, App: huggingface.co, Pipeline: BriaFiboEditPipeline, Operations: img2img")),
            "sdnext"
        );
        assert_eq!(
            generator_of(&p("x\nSteps: 1, Seed: 1, Sampler: Euler")),
            "a1111"
        );
        // `ADetailer version` is not `Version`.
        assert_eq!(
            generator_of(&p("x\nSteps: 1, ADetailer version: 24.4.2, App: SD.Next")),
            "sdnext"
        );
    }

    #[test]
    fn scheduler_sources_and_seed() {
        let m = to_genmeta(&p(
            "x\nSteps: 20, Sampler: DDIM, Seed: -1, Sampler sigma: exponential",
        ));
        assert_eq!(m.scheduler.as_deref(), Some("exponential"));
        assert_eq!(m.seed, None);
        let m = to_genmeta(&p(
            "x\nSteps: 20, Schedule type: Karras, Seed: 18446744073709551615, Sampler sigma: beta",
        ));
        assert_eq!(m.scheduler.as_deref(), Some("Karras"));
        assert_eq!(m.seed, Some(u64::MAX));
        assert_eq!(
            m.params.get("Sampler sigma").map(String::as_str),
            Some("beta")
        );
    }

    #[test]
    fn template_lines_join_the_negative_prompt_like_a1111() {
        let i = p("a\nNegative prompt: \nTemplate: a\nSteps: 1, Size: 1024x1024, Seed: 1");
        assert_eq!(i.negative, "Template: a");
    }

    #[test]
    fn looks_like() {
        assert!(looks_like_infotext("a\nSteps: 20, Seed: 1"));
        assert!(looks_like_infotext("Negative prompt: x"));
        assert!(!looks_like_infotext("GIMPで再保存しただけ"));
        assert!(!looks_like_infotext("Hires steps"));
    }

    #[test]
    fn never_panics_on_odd_text() {
        for t in [
            "",
            ":",
            "\"",
            "a: \"",
            "ab: [",
            "ab: {\"",
            "ab: \"\\",
            "テスト: 値, キー: \"x\", 三: [1,",
            "Steps: 20, ,,, : , Seed:",
            "Negative prompt:",
            "\n\n\n",
        ] {
            let i = parse(t);
            let _ = to_genmeta(&i);
            let _ = generator_of(&i);
        }
    }
}
