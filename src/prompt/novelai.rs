//! NovelAI emphasis: `{x}` ×1.05, `[x]` ÷1.05 (nesting multiplies), parentheses are text,
//! and V4 numeric emphasis `w::text::` (`-0.8::feet::`, `1.3::1girl::`).
//!
//! Choices where NovelAI's own tokenizer is not public: an unclosed `{`/`[` applies to the
//! end of the prompt and an unmatched closer is text (as in A1111); numeric emphasis
//! multiplies with the braces around it; it does not nest — a new `w::` closes the open
//! one — and an unterminated one runs to the end; a `::` with none open is text; a
//! backslash before a bracket makes it text.

use super::{multiply_range, Piece, MAX_DEPTH};

const STEP: f64 = 1.05;

pub(crate) fn attention(text: &str) -> Vec<Piece> {
    let s: Vec<char> = text.chars().collect();
    let n = s.len();
    let mut res: Vec<Piece> = Vec::new();
    let mut curly: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    let mut numeric: Option<(usize, f64)> = None;
    let mut groups = 0u32;
    let mut group = 0u32;
    let mut plain = String::new();
    let mut i = 0;

    macro_rules! flush {
        () => {
            if !plain.is_empty() {
                let open = !(curly.is_empty() && square.is_empty() && numeric.is_none());
                res.push(Piece::new(
                    std::mem::take(&mut plain),
                    1.0,
                    0,
                    if open { group } else { 0 },
                ));
            }
        };
    }
    macro_rules! open_group {
        () => {
            if curly.is_empty() && square.is_empty() && numeric.is_none() {
                groups += 1;
                group = groups;
            }
        };
    }

    while i < n {
        let c = s[i];
        match c {
            '\\' if i + 1 < n && matches!(s[i + 1], '{' | '}' | '[' | ']' | '(' | ')' | '\\') => {
                plain.push(s[i + 1]);
                i += 2;
            }
            '{' | '[' if curly.len() + square.len() < MAX_DEPTH => {
                flush!();
                open_group!();
                if c == '{' {
                    curly.push(res.len());
                } else {
                    square.push(res.len());
                }
                i += 1;
            }
            '}' if !curly.is_empty() => {
                flush!();
                if let Some(from) = curly.pop() {
                    multiply_range(&mut res, from, STEP);
                }
                i += 1;
            }
            ']' if !square.is_empty() => {
                flush!();
                if let Some(from) = square.pop() {
                    multiply_range(&mut res, from, 1.0 / STEP);
                }
                i += 1;
            }
            ':' if i + 1 < n && s[i + 1] == ':' && numeric.is_some() => {
                flush!();
                if let Some((from, w)) = numeric.take() {
                    multiply_range(&mut res, from, w);
                }
                i += 2;
            }
            ':' if i + 1 < n && s[i + 1] == ':' => {
                plain.push_str("::");
                i += 2;
            }
            _ => {
                if let Some((w, end)) = numeric_open(&s, i) {
                    flush!();
                    if let Some((from, w0)) = numeric.take() {
                        multiply_range(&mut res, from, w0);
                    }
                    open_group!();
                    numeric = Some((res.len(), w));
                    i = end;
                } else {
                    plain.push(c);
                    i += 1;
                }
            }
        }
    }
    flush!();
    if let Some((from, w)) = numeric {
        multiply_range(&mut res, from, w);
    }
    for from in curly {
        multiply_range(&mut res, from, STEP);
    }
    for from in square {
        multiply_range(&mut res, from, 1.0 / STEP);
    }
    res
}

/// `-?(\d+(\.\d*)?|\.\d+)::` at `i`, at the start of the prompt or after whitespace,
/// `,`, a bracket, `|` or `:`: the weight and the index after `::`.
fn numeric_open(s: &[char], i: usize) -> Option<(f64, usize)> {
    if !matches!(s[i], '-' | '+' | '.' | '0'..='9') {
        return None;
    }
    if i > 0 {
        let p = s[i - 1];
        if !(p.is_whitespace() || matches!(p, ',' | '{' | '[' | '(' | '|' | ':')) {
            return None;
        }
    }
    let mut j = i;
    if s[j] == '-' || s[j] == '+' {
        j += 1;
    }
    let ds = j;
    while j < s.len() && s[j].is_ascii_digit() {
        j += 1;
    }
    let mut digits = j - ds;
    if j < s.len() && s[j] == '.' {
        j += 1;
        let fs = j;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        digits += j - fs;
    }
    if digits == 0 || j + 1 >= s.len() || s[j] != ':' || s[j + 1] != ':' {
        return None;
    }
    let num: String = s[i..j].iter().collect();
    let w = num.parse::<f64>().ok().filter(|w| w.is_finite())?;
    Some((w, j + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for p in attention(text) {
            match out.last_mut() {
                Some(last) if last.1 == p.weight => last.0.push_str(&p.text),
                _ => out.push((p.text, p.weight)),
            }
        }
        out
    }

    fn r(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    #[test]
    fn braces() {
        assert_eq!(runs("{{x}}"), r(&[("x", 1.05 * 1.05)]));
        assert_eq!(runs("[x]"), r(&[("x", 1.0 / 1.05)]));
        assert_eq!(runs("(x)"), r(&[("(x)", 1.0)]));
        assert_eq!(runs("{x"), r(&[("x", 1.05)]));
        assert_eq!(runs("x}"), r(&[("x}", 1.0)]));
        assert_eq!(runs(r"\{x\}"), r(&[("{x}", 1.0)]));
    }

    #[test]
    fn numeric_emphasis() {
        assert_eq!(
            runs("a, -0.8::feet::, b"),
            r(&[("a, ", 1.0), ("feet", -0.8), (", b", 1.0)])
        );
        assert_eq!(runs("1.3::1girl::"), r(&[("1girl", 1.3)]));
        assert_eq!(runs("1.2::a, b"), r(&[("a, b", 1.2)]));
        assert_eq!(
            runs("1.2::a, 0.5::b::, c"),
            r(&[("a, ", 1.2), ("b", 0.5), (", c", 1.0)])
        );
        assert_eq!(runs("{1.2::x::}"), r(&[("x", 1.05 * 1.2)]));
        assert_eq!(
            runs("1girl, rating:general"),
            r(&[("1girl, rating:general", 1.0)])
        );
        assert_eq!(runs("a::b"), r(&[("a::b", 1.0)]));
        assert_eq!(runs("x2::y::"), r(&[("x2::y::", 1.0)]));
    }
}
