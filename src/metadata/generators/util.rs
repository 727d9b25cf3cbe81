//! Small helpers shared by the generator parsers: lenient JSON, lenient numbers, carrier
//! bookkeeping.

use crate::metadata::{Carrier, Carriers};
use serde_json::Value;

/// Parses JSON the way real generators write it: trailing NULs and whitespace are dropped
/// (Tensor.Art ends `generation_data` with a NUL), and bare `NaN` / `Infinity` / `-Infinity`
/// tokens outside strings (Python's `json.dumps` writes them, ComfyUI graphs hold them) become
/// `null`. `None` when the text is still not one JSON value.
pub fn parse_json_lenient(text: &str) -> Option<Value> {
    let trimmed = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if trimmed.is_empty() {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return Some(v);
    }
    let fixed = replace_non_finite(trimmed)?;
    serde_json::from_str::<Value>(&fixed).ok()
}

/// Like [`parse_json_lenient`], but only an object counts.
pub fn parse_json_object(text: &str) -> Option<Value> {
    let t = text.trim_start_matches(|c: char| c == '\0' || c.is_whitespace());
    if !t.starts_with('{') {
        return None;
    }
    parse_json_lenient(text).filter(Value::is_object)
}

/// Replaces `NaN`, `Infinity`, `-Infinity` tokens outside JSON strings with `null`. `None`
/// when there was nothing to replace (so the caller need not re-parse).
pub fn replace_non_finite(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut changed = false;
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let prev_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if prev_ok {
            if let Some(len) = non_finite_token_at(bytes, i) {
                out.push_str(&text[last..i]);
                out.push_str("null");
                i += len;
                last = i;
                changed = true;
                continue;
            }
        }
        i += 1;
    }
    if !changed {
        return None;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// The length of a `NaN` / `Infinity` / `-Infinity` token starting at `i`, when it is a whole
/// token.
fn non_finite_token_at(bytes: &[u8], i: usize) -> Option<usize> {
    ["-Infinity", "Infinity", "NaN"].iter().find_map(|token| {
        let t = token.as_bytes();
        let end = i + t.len();
        let whole = bytes[i..].starts_with(t)
            && (end == bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_'));
        whole.then_some(t.len())
    })
}

/// A JSON value as a float: numbers, and strings holding a number.
pub fn num_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => parse_f64(s),
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Parses a float from text (trimmed); `None` for NaN / infinities / junk.
pub fn parse_f64(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Parses a non-negative integer from text: `20`, `20.0`, `+20`. Negative → `None`.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    if let Ok(n) = s.parse::<i128>() {
        return u64::try_from(n).ok();
    }
    let f = parse_f64(s)?;
    (f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64).then_some(f as u64)
}

/// A JSON value as a non-negative integer (number, float with no fraction, or string).
pub fn num_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Some(u)
            } else if n.as_i64().is_some() {
                None
            } else {
                let f = n.as_f64()?;
                (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64)
                    .then_some(f as u64)
            }
        }
        Value::String(s) => parse_u64(s),
        _ => None,
    }
}

/// A JSON value as a u32.
pub fn num_u32(v: &Value) -> Option<u32> {
    num_u64(v).and_then(|n| u32::try_from(n).ok())
}

/// A seed: any non-negative integer; `-1` (random) and other negatives are `None`.
pub fn seed_of(v: &Value) -> Option<u64> {
    num_u64(v)
}

/// A clip-skip value: written positive (A1111 `2`) or negative (ComfyUI/SwarmUI `-2`).
pub fn clip_skip_of(v: &Value) -> Option<u32> {
    let f = num_f64(v)?;
    if f.fract() != 0.0 || f == 0.0 {
        return None;
    }
    u32::try_from(f.abs() as i64).ok()
}

/// A JSON value as a non-empty string: strings as is (trimmed of nothing), numbers and
/// booleans as their text.
pub fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON value as a non-empty string.
pub fn nonempty_text(v: &Value) -> Option<String> {
    text_of(v).filter(|s| !s.trim().is_empty())
}

/// A JSON value as `params` text: strings as is, everything else compact JSON. `None` for
/// `null`.
pub fn param_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Parses `W x H`, `WxH`, `(W, H)`, `W×H` into a size.
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let t = s.trim().trim_start_matches('(').trim_end_matches(')');
    let mut parts = t.split(['x', 'X', ',', '×', '*']);
    let w = parts.next()?.trim().parse::<u32>().ok()?;
    let h = parts.next()?.trim().parse::<u32>().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((w, h))
}

/// Cuts a string to at most `max` characters.
pub fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The file stem of a model path (`models/foo/bar.safetensors` → `bar.safetensors`): the
/// last path component, `\` or `/` separated.
pub fn last_path_component(s: &str) -> &str {
    s.rsplit(['/', '\\']).next().unwrap_or(s)
}

/// Which carriers a parser has read, so the rest can be reported in `raw`.
pub struct Ctx<'a> {
    pub carriers: &'a Carriers,
    consumed: Vec<bool>,
}

impl<'a> Ctx<'a> {
    pub fn new(carriers: &'a Carriers) -> Self {
        Ctx {
            carriers,
            consumed: vec![false; carriers.entries.len()],
        }
    }

    /// The first carrier with this key, and its index.
    pub fn find(&self, key: &str) -> Option<(usize, &'a Carrier)> {
        self.carriers
            .entries
            .iter()
            .enumerate()
            .find(|(_, c)| c.key == key)
    }

    /// The first carrier's value with this key.
    pub fn value(&self, key: &str) -> Option<&'a str> {
        self.find(key).map(|(_, c)| c.value.as_str())
    }

    /// Whether any carrier has this key.
    pub fn has(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// The first carrier's value with this key, marked as read.
    pub fn take(&mut self, key: &str) -> Option<&'a str> {
        let (i, c) = self.find(key)?;
        self.consumed[i] = true;
        Some(c.value.as_str())
    }

    /// Marks one carrier as read.
    pub fn consume(&mut self, index: usize) {
        if let Some(slot) = self.consumed.get_mut(index) {
            *slot = true;
        }
    }

    /// Marks every carrier with this key as read.
    pub fn consume_key(&mut self, key: &str) {
        for (i, c) in self.carriers.entries.iter().enumerate() {
            if c.key == key {
                self.consumed[i] = true;
            }
        }
    }

    /// Marks every `stealth` carrier whose text equals `text` (after trimming) as read: the
    /// LSB copy of a text chunk adds nothing.
    pub fn consume_stealth_copies(&mut self, text: &str) {
        let want = text.trim();
        for (i, c) in self.carriers.entries.iter().enumerate() {
            if c.key == "stealth" && c.value.trim() == want {
                self.consumed[i] = true;
            }
        }
    }

    /// Every carrier not yet read.
    pub fn unread(&self) -> impl Iterator<Item = &'a Carrier> + '_ {
        self.carriers
            .entries
            .iter()
            .zip(&self.consumed)
            .filter(|(_, used)| !**used)
            .map(|(c, _)| c)
    }

    /// The carriers whose key is one of `keys`, in file order, with their index.
    pub fn all_of<'k>(
        &'k self,
        keys: &'k [&'k str],
    ) -> impl Iterator<Item = (usize, &'a Carrier)> + 'k {
        self.carriers
            .entries
            .iter()
            .enumerate()
            .filter(move |(_, c)| keys.contains(&c.key.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_outside_strings_become_null() {
        let v = parse_json_lenient(
            r#"{"a": NaN, "b": "NaN stays", "c": [Infinity, -Infinity], "d": 1}"#,
        )
        .unwrap();
        assert!(v["a"].is_null());
        assert_eq!(v["b"], "NaN stays");
        assert!(v["c"][0].is_null() && v["c"][1].is_null());
        assert_eq!(v["d"], 1);
        // A word that merely contains the token is left alone (and stays invalid JSON).
        assert!(replace_non_finite(r#"{"a": xNaN}"#).is_none());
        assert!(replace_non_finite(r#"{"a": "say \"NaN\""}"#).is_none());
    }

    #[test]
    fn trailing_nul_is_ignored() {
        let v = parse_json_lenient("{\"seed\":\"-1\"}\0").unwrap();
        assert_eq!(v["seed"], "-1");
        assert!(parse_json_object("{\"a\":1}\0\0 ").is_some());
        assert!(parse_json_object("[1]").is_none());
        assert!(parse_json_lenient("").is_none());
    }

    #[test]
    fn numbers_from_strings_and_floats() {
        assert_eq!(
            num_u64(&serde_json::json!("6952411511246973023")),
            Some(6952411511246973023)
        );
        assert_eq!(num_u64(&serde_json::json!(20.0)), Some(20));
        assert_eq!(num_u64(&serde_json::json!(20.5)), None);
        assert_eq!(seed_of(&serde_json::json!(-1)), None);
        assert_eq!(seed_of(&serde_json::json!("-1")), None);
        assert_eq!(num_f64(&serde_json::json!("5.5")), Some(5.5));
        assert_eq!(clip_skip_of(&serde_json::json!(-2)), Some(2));
        assert_eq!(parse_size("(768, 1280)"), Some((768, 1280)));
        assert_eq!(parse_size("1024 x 1024"), Some((1024, 1024)));
        assert_eq!(parse_size("960x1280"), Some((960, 1280)));
        assert_eq!(parse_size("960x"), None);
        assert_eq!(cut_chars("テスト", 2), "テス");
    }
}
