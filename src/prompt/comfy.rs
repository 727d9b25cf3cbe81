//! ComfyUI weights (`comfy/sd1_clip.py`: `escape_important`, `parse_parentheses`,
//! `token_weights`), ported exactly: only parentheses; `(x)` = current × 1.1; `(x:w)`
//! *sets* the weight to `w`; `[x]` is text; escapes `\(` and `\)` only; an unbalanced `(`
//! leaves its text literal.

use super::{Piece, MAX_DEPTH};

const ESC_CLOSE: &str = "\u{0}\u{1}";
const ESC_OPEN: &str = "\u{0}\u{2}";

pub(crate) fn attention(text: &str) -> Vec<Piece> {
    let escaped = text.replace("\\)", ESC_CLOSE).replace("\\(", ESC_OPEN);
    let mut out = Vec::new();
    let mut groups = 0;
    token_weights(&escaped, 1.0, 0, None, &mut groups, &mut out);
    for p in &mut out {
        if p.text.contains('\u{0}') {
            p.text = p.text.replace(ESC_CLOSE, ")").replace(ESC_OPEN, "(");
        }
    }
    out
}

/// Splits into top-level items: text and `(...)` groups (a stray `)` drives the nesting
/// level negative, after which brackets are text until it is back at 0, as in ComfyUI).
fn parse_parentheses(s: &str) -> Vec<&str> {
    let mut result = Vec::new();
    let mut start = 0; // start of the current item
    let mut level: i64 = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => {
                if level == 0 {
                    if start < i {
                        result.push(&s[start..i]);
                    }
                    start = i;
                }
                level += 1;
            }
            ')' => {
                level -= 1;
                if level == 0 {
                    result.push(&s[start..i + 1]);
                    start = i + 1;
                }
            }
            _ => {}
        }
    }
    if start < s.len() {
        result.push(&s[start..]);
    }
    result
}

fn token_weights(
    s: &str,
    current: f64,
    depth: usize,
    group: Option<u32>,
    groups: &mut u32,
    out: &mut Vec<Piece>,
) {
    for x in parse_parentheses(s) {
        let bracketed = x.len() >= 2 && x.starts_with('(') && x.ends_with(')');
        if bracketed && depth < MAX_DEPTH {
            let mut inner = &x[1..x.len() - 1];
            let mut weight = current * 1.1;
            if let Some(xx) = inner.rfind(':') {
                if xx > 0 {
                    if let Some(w) = py_float(&inner[xx + 1..]) {
                        weight = w;
                        inner = &inner[..xx];
                    }
                }
            }
            let g = group.unwrap_or_else(|| {
                *groups += 1;
                *groups
            });
            token_weights(inner, weight, depth + 1, Some(g), groups, out);
        } else {
            out.push(Piece::new(x, current, 0, group.unwrap_or(0)));
        }
    }
}

/// Python's `float()` on a weight (surrounding whitespace allowed); non-finite values
/// (`nan`, `inf`) are refused.
fn py_float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|w| w.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Vec<(String, f64)> {
        attention(text)
            .into_iter()
            .map(|p| (p.text, p.weight))
            .collect()
    }

    fn r(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    #[test]
    fn weights_set_not_multiply() {
        assert_eq!(runs("((x:1.5))"), r(&[("x", 1.5)]));
        assert_eq!(runs("((x))"), r(&[("x", 1.1 * 1.1)]));
        assert_eq!(runs("a (b) c"), r(&[("a ", 1.0), ("b", 1.1), (" c", 1.0)]));
        assert_eq!(
            runs("(a (b:0.5) c:1.2)"),
            r(&[("a ", 1.2), ("b", 0.5), (" c", 1.2)])
        );
    }

    #[test]
    fn literals() {
        assert_eq!(runs("[x]"), r(&[("[x]", 1.0)]));
        assert_eq!(runs(r"\(x\)"), r(&[("(x)", 1.0)]));
        assert_eq!(runs("(unbalanced, x"), r(&[("(unbalanced, x", 1.0)]));
        // A stray `)` makes the rest text, as in ComfyUI.
        assert_eq!(runs("a) (b) (c)"), r(&[("a) (b) (c)", 1.0)]));
        // A weight that does not parse: ×1.1 and the colon stays.
        assert_eq!(runs("(rem:re:zero)"), r(&[("rem:re:zero", 1.1)]));
        assert_eq!(runs("(:1.5)"), r(&[(":1.5", 1.1)]));
        assert_eq!(runs("(x:nan)"), r(&[("x:nan", 1.1)]));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = "(".repeat(5000) + "x" + &")".repeat(5000);
        assert!(!attention(&deep).is_empty());
    }
}
