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
    let mut st = Emphasis::default();
    let mut i = 0;
    while i < n {
        let c = s[i];
        match c {
            '\\' if i + 1 < n && matches!(s[i + 1], '{' | '}' | '[' | ']' | '(' | ')' | '\\') => {
                st.plain.push(s[i + 1]);
                i += 2;
            }
            '{' | '[' if st.curly.len() + st.square.len() < MAX_DEPTH => {
                st.open_bracket(c);
                i += 1;
            }
            '}' if !st.curly.is_empty() => {
                st.close_bracket(c);
                i += 1;
            }
            ']' if !st.square.is_empty() => {
                st.close_bracket(c);
                i += 1;
            }
            ':' if i + 1 < n && s[i + 1] == ':' && st.numeric.is_some() => {
                st.flush();
                st.close_numeric();
                i += 2;
            }
            ':' if i + 1 < n && s[i + 1] == ':' => {
                st.plain.push_str("::");
                i += 2;
            }
            _ => {
                if let Some((w, end)) = numeric_open(&s, i) {
                    st.open_numeric(w);
                    i = end;
                } else {
                    st.plain.push(c);
                    i += 1;
                }
            }
        }
    }
    st.finish()
}

/// The parse so far: the pieces, where each open `{`, `[` and numeric emphasis starts, the
/// group counter, and the plain text not yet made a piece.
#[derive(Default)]
struct Emphasis {
    res: Vec<Piece>,
    curly: Vec<usize>,
    square: Vec<usize>,
    /// The first piece and the weight of the open numeric emphasis.
    numeric: Option<(usize, f64)>,
    groups: u32,
    group: u32,
    plain: String,
}

impl Emphasis {
    /// Whether any emphasis is open.
    fn any_open(&self) -> bool {
        !(self.curly.is_empty() && self.square.is_empty() && self.numeric.is_none())
    }

    /// Makes the pending plain text a piece, in the open group if any.
    fn flush(&mut self) {
        if !self.plain.is_empty() {
            let group = if self.any_open() { self.group } else { 0 };
            self.res
                .push(Piece::new(std::mem::take(&mut self.plain), 1.0, 0, group));
        }
    }

    /// Starts a new group when no emphasis is open (nested emphasis stays in its group).
    fn open_group(&mut self) {
        if !self.any_open() {
            self.groups += 1;
            self.group = self.groups;
        }
    }

    /// Opens a `{` or `[`.
    fn open_bracket(&mut self, c: char) {
        self.flush();
        self.open_group();
        if c == '{' {
            self.curly.push(self.res.len());
        } else {
            self.square.push(self.res.len());
        }
    }

    /// Closes the innermost `{` (for `}`) or `[` (for `]`), weighting what it holds.
    fn close_bracket(&mut self, c: char) {
        self.flush();
        let (open, w) = if c == '}' {
            (&mut self.curly, STEP)
        } else {
            (&mut self.square, 1.0 / STEP)
        };
        if let Some(from) = open.pop() {
            multiply_range(&mut self.res, from, w);
        }
    }

    /// Closes the open numeric emphasis, if any, weighting what it holds.
    fn close_numeric(&mut self) {
        if let Some((from, w)) = self.numeric.take() {
            multiply_range(&mut self.res, from, w);
        }
    }

    /// Opens numeric emphasis of weight `w`, closing the one open (they do not nest).
    fn open_numeric(&mut self, w: f64) {
        self.flush();
        self.close_numeric();
        self.open_group();
        self.numeric = Some((self.res.len(), w));
    }

    /// Applies whatever is still open to the end of the prompt.
    fn finish(mut self) -> Vec<Piece> {
        self.flush();
        self.close_numeric();
        for from in self.curly {
            multiply_range(&mut self.res, from, STEP);
        }
        for from in self.square {
            multiply_range(&mut self.res, from, 1.0 / STEP);
        }
        self.res
    }
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
