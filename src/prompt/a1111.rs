//! AUTOMATIC1111 syntax: `AND` composition, prompt editing / alternation (the Lark grammar
//! of `modules/prompt_parser.py`, re-implemented as a bounded recursive descent) and
//! `parse_prompt_attention`, reproduced token for token.

use super::{is_word_char, multiply_range, Piece, ALTERNATING, MARK, MAX_DEPTH, SCHEDULED};

/// At most this many variants of one sub-prompt are evaluated (each picks one branch of
/// every `[a:b:N]` / `[a|b]`; together they cover every branch unless there are more).
const MAX_VARIANTS: usize = 64;
/// ... and at most this many characters over all variants.
const VARIANT_CHAR_BUDGET: usize = 4_000_000;

/// One input character with the flags of the prompt-editing branch it came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ch {
    pub c: char,
    pub flags: u8,
}

/// Splits on `\bAND\b` (case-sensitive) and reads each sub-prompt's trailing `:weight`
/// (A1111's `re_weight`, applied to every sub-prompt, even a lone one).
pub(crate) fn split_and(text: &str) -> Vec<(String, f64)> {
    let chars: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 3 <= chars.len() {
        if chars[i] == 'A'
            && chars[i + 1] == 'N'
            && chars[i + 2] == 'D'
            && (i == 0 || !is_word_char(chars[i - 1]))
            && (i + 3 == chars.len() || !is_word_char(chars[i + 3]))
        {
            parts.push(chars[start..i].iter().collect::<String>());
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(chars[start..].iter().collect::<String>());
    parts.into_iter().map(|p| sub_prompt_weight(&p)).collect()
}

/// `^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$`
fn sub_prompt_weight(sub: &str) -> (String, f64) {
    let t = sub.trim_end();
    let num_start = t
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
        .last()
        .map(|(i, _)| i);
    if let Some(ns) = num_start {
        let num = &t[ns..];
        // `\d+\.?` or `\d*\.\d+`: at least one digit, at most one dot.
        let valid = num.contains(|c: char| c.is_ascii_digit()) && num.matches('.').count() <= 1;
        if valid {
            let mut before = &t[..ns];
            let mut signed = String::new();
            if let Some(rest) = before.strip_suffix(['+', '-']) {
                signed.push_str(&before[rest.len()..]);
                before = rest;
            }
            let before_ws = before.trim_end();
            if let Some(text) = before_ws.strip_suffix(':') {
                signed.push_str(num);
                if let Ok(w) = signed.parse::<f64>() {
                    if w.is_finite() {
                        return (text.trim_end().to_string(), w);
                    }
                }
            }
        }
    }
    (sub.to_string(), 1.0)
}

/// The prompt-editing tree.
#[derive(Debug, Clone)]
enum Node {
    /// `src[start..end]`, verbatim (emphasis brackets included).
    Text(usize, usize),
    /// `[from:to:when]`; `from` is empty for `[to:when]`, and `None` when `when <= 0` (it is
    /// never shown then).
    Sched {
        from: Option<Vec<Node>>,
        to: Vec<Node>,
    },
    /// `[a|b|c]`.
    Alt(Vec<Vec<Node>>),
}

struct SchedParser<'a> {
    s: &'a [char],
}

impl SchedParser<'_> {
    /// `start: (prompt | /[][():]/+)*`; `None` when the grammar fails (a `|` outside an
    /// alternation, a trailing lone `\`): then the prompt is used literally.
    fn start(&self) -> Option<Vec<Node>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.s.len() {
            let (nodes, j) = self.prompt(i, 0);
            out.extend(nodes);
            i = j;
            if i >= self.s.len() {
                break;
            }
            match self.s[i] {
                '[' | ']' | '(' | ')' | ':' => {
                    out.push(Node::Text(i, i + 1));
                    i += 1;
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// `prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*`: consumes as
    /// much as it can from `i`; returns the nodes and where it stopped.
    fn prompt(&self, mut i: usize, depth: usize) -> (Vec<Node>, usize) {
        let s = self.s;
        let mut out = Vec::new();
        let mut text_start = i;
        while i < s.len() {
            match s[i] {
                '\\' => {
                    // plain: `\\.` (`.` is not a newline)
                    if i + 1 < s.len() && s[i + 1] != '\n' {
                        i += 2;
                    } else {
                        break;
                    }
                }
                '(' | '[' => {
                    if depth >= MAX_DEPTH {
                        break;
                    }
                    match self.bracket(i, depth + 1) {
                        Some((nodes, j)) => {
                            if text_start < i {
                                out.push(Node::Text(text_start, i));
                            }
                            out.extend(nodes);
                            i = j;
                            text_start = i;
                        }
                        None => break,
                    }
                }
                ']' | ')' | ':' | '|' => break,
                _ => i += 1,
            }
        }
        if text_start < i {
            out.push(Node::Text(text_start, i));
        }
        (out, i)
    }

    /// `emphasized`, `scheduled` or `alternate` starting at `s[i]` (`(` or `[`).
    fn bracket(&self, i: usize, depth: usize) -> Option<(Vec<Node>, usize)> {
        let s = self.s;
        let (p1, k) = self.prompt(i + 1, depth);
        let c = *s.get(k)?;
        if s[i] == '(' {
            return match c {
                ')' => {
                    let mut v = vec![Node::Text(i, i + 1)];
                    v.extend(p1);
                    v.push(Node::Text(k, k + 1));
                    Some((v, k + 1))
                }
                ':' => {
                    let (p2, m) = self.prompt(k + 1, depth);
                    if s.get(m) == Some(&')') {
                        let mut v = vec![Node::Text(i, i + 1)];
                        v.extend(p1);
                        v.push(Node::Text(k, k + 1));
                        v.extend(p2);
                        v.push(Node::Text(m, m + 1));
                        Some((v, m + 1))
                    } else {
                        None
                    }
                }
                _ => None,
            };
        }
        match c {
            ']' => {
                let mut v = vec![Node::Text(i, i + 1)];
                v.extend(p1);
                v.push(Node::Text(k, k + 1));
                Some((v, k + 1))
            }
            '|' => {
                let mut options = vec![p1];
                let mut k = k;
                loop {
                    let (p, m) = self.prompt(k + 1, depth);
                    options.push(p);
                    match s.get(m)? {
                        '|' => k = m,
                        ']' => return Some((vec![Node::Alt(options)], m + 1)),
                        _ => return None,
                    }
                }
            }
            ':' => {
                // `[to:when]`
                if let Some((when, end)) = self.number_close(k + 1) {
                    let from = (when > 0.0).then(Vec::new);
                    return Some((vec![Node::Sched { from, to: p1 }], end));
                }
                // `[from:to:when]`
                let (p2, m) = self.prompt(k + 1, depth);
                if s.get(m) == Some(&':') {
                    if let Some((when, end)) = self.number_close(m + 1) {
                        let from = (when > 0.0).then_some(p1);
                        return Some((vec![Node::Sched { from, to: p2 }], end));
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// `[WHITESPACE] SIGNED_NUMBER [WHITESPACE] "]"` from `i`; the number and the index
    /// after `]`.
    fn number_close(&self, mut i: usize) -> Option<(f64, usize)> {
        let s = self.s;
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        let start = i;
        if i < s.len() && (s[i] == '+' || s[i] == '-') {
            i += 1;
        }
        let int_start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let mut digits = i - int_start;
        if i < s.len() && s[i] == '.' {
            i += 1;
            let frac = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            digits += i - frac;
        }
        if digits == 0 {
            return None;
        }
        if i < s.len() && (s[i] == 'e' || s[i] == 'E') {
            let mut j = i + 1;
            if j < s.len() && (s[j] == '+' || s[j] == '-') {
                j += 1;
            }
            let ds = j;
            while j < s.len() && s[j].is_ascii_digit() {
                j += 1;
            }
            if j > ds {
                i = j;
            }
        }
        let num: String = s[start..i].iter().collect();
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        if s.get(i) != Some(&']') {
            return None;
        }
        let when = num.parse::<f64>().ok()?;
        Some((when, i + 1))
    }
}

const COUNT_CAP: usize = 1 << 20;

fn count_seq(nodes: &[Node]) -> usize {
    nodes.iter().map(count_node).max().unwrap_or(1).max(1)
}

fn count_node(node: &Node) -> usize {
    match node {
        Node::Text(..) => 1,
        Node::Sched { from, to } => {
            let f = from.as_deref().map(count_seq).unwrap_or(0);
            f.saturating_add(count_seq(to)).min(COUNT_CAP)
        }
        Node::Alt(options) => options
            .iter()
            .map(|o| count_seq(o))
            .fold(0usize, |a, b| a.saturating_add(b))
            .min(COUNT_CAP),
    }
}

/// Renders one variant. An empty branch leaves a [`MARK`] so that the text around it
/// (`[fe|]male` → `male`) is flagged too.
fn render(nodes: &[Node], v: usize, flags: u8, src: &[char], out: &mut Vec<Ch>) {
    let before = out.len();
    render_seq(nodes, v, flags, src, out);
    if out.len() == before && flags != 0 {
        out.push(Ch { c: MARK, flags });
    }
}

fn render_seq(nodes: &[Node], v: usize, flags: u8, src: &[char], out: &mut Vec<Ch>) {
    for node in nodes {
        match node {
            Node::Text(a, b) => out.extend(src[*a..*b].iter().map(|&c| Ch { c, flags })),
            Node::Sched { from, to } => {
                let nf = from.as_deref().map(count_seq).unwrap_or(0);
                let total = nf.saturating_add(count_seq(to)).max(1);
                let r = v % total;
                match from {
                    Some(f) if r < nf => render(f, r, flags | SCHEDULED, src, out),
                    _ => render(to, r - nf.min(r), flags | SCHEDULED, src, out),
                }
            }
            Node::Alt(options) => {
                let counts: Vec<usize> = options.iter().map(|o| count_seq(o)).collect();
                let total = counts
                    .iter()
                    .fold(0usize, |a, b| a.saturating_add(*b))
                    .max(1);
                let mut r = v % total;
                for (o, n) in options.iter().zip(&counts) {
                    if r < *n {
                        render(o, r, flags | ALTERNATING, src, out);
                        break;
                    }
                    r -= n;
                }
            }
        }
    }
}

/// The attention runs of every prompt-editing variant of one sub-prompt (one variant when
/// it has no `[a:b:N]` / `[a|b]`, or when the grammar fails and the text is literal).
pub(crate) fn variants(text: &str) -> Vec<Vec<Piece>> {
    let chars: Vec<char> = text.chars().collect();
    let parser = SchedParser { s: &chars };
    let plain = || -> Vec<Ch> { chars.iter().map(|&c| Ch { c, flags: 0 }).collect() };
    let Some(nodes) = parser.start() else {
        return vec![attention(&plain())];
    };
    let n = count_seq(&nodes)
        .min(MAX_VARIANTS)
        .min((VARIANT_CHAR_BUDGET / chars.len().max(1)).max(1));
    if n <= 1 && !nodes.iter().any(|n| !matches!(n, Node::Text(..))) {
        return vec![attention(&plain())];
    }
    (0..n)
        .map(|v| {
            let mut out = Vec::with_capacity(chars.len());
            render_seq(&nodes, v, 0, &chars, &mut out);
            attention(&out)
        })
        .collect()
}

/// [`attention`] on plain text.
pub(crate) fn attention_str(text: &str) -> Vec<Piece> {
    let chars: Vec<Ch> = text.chars().map(|c| Ch { c, flags: 0 }).collect();
    attention(&chars)
}

/// `parse_prompt_attention`, token for token (see the B1 spec). Differences, for inputs
/// A1111 rejects or that only matter inside it: a weight that `float()` refuses
/// (`(x:1.2.3)`) makes the `:` literal text and the `)` an ordinary ×1.1 close; brackets
/// nested deeper than [`MAX_DEPTH`] are literal; `BREAK` markers are never multiplied.
pub(crate) fn attention(input: &[Ch]) -> Vec<Piece> {
    let mut st = Emphasis::default();
    let mut i = 0;
    while i < input.len() {
        i = match input[i].c {
            '\\' => st.backslash(input, i),
            '(' | '[' => {
                st.open(input, i);
                i + 1
            }
            ':' => st.weight(input, i),
            ')' | ']' => {
                st.close(input, i);
                i + 1
            }
            _ => st.plain(input, i),
        };
    }
    st.finish()
}

/// The parse so far: the pieces, where each open `(` and `[` starts, and the group counter.
#[derive(Default)]
struct Emphasis {
    res: Vec<Piece>,
    round: Vec<usize>,
    square: Vec<usize>,
    groups: u32,
    group: u32,
}

impl Emphasis {
    /// Whether a bracket is open.
    fn any_open(&self) -> bool {
        !(self.round.is_empty() && self.square.is_empty())
    }

    /// The group of text added now (0 outside brackets).
    fn text_group(&self) -> u32 {
        if self.any_open() {
            self.group
        } else {
            0
        }
    }

    /// Adds characters as literal text.
    fn literal(&mut self, chars: &[Ch]) {
        let g = self.text_group();
        push_chars(&mut self.res, chars, g);
    }

    /// A `\` at `i`: a bracket or backslash after it is text; a lone one is an empty piece
    /// (keeping its flags). Returns the index after it.
    fn backslash(&mut self, input: &[Ch], i: usize) -> usize {
        if i + 1 < input.len() && matches!(input[i + 1].c, '(' | ')' | '[' | ']' | '\\') {
            self.literal(&input[i + 1..i + 2]);
            i + 2
        } else {
            let g = self.text_group();
            self.res.push(Piece::new("", 1.0, input[i].flags, g));
            i + 1
        }
    }

    /// Opens the `(` or `[` at `i` (a new group when none is open); text when nested too
    /// deep.
    fn open(&mut self, input: &[Ch], i: usize) {
        if self.round.len() + self.square.len() >= MAX_DEPTH {
            self.literal(&input[i..i + 1]);
            return;
        }
        if !self.any_open() {
            self.groups += 1;
            self.group = self.groups;
        }
        if input[i].c == '(' {
            self.round.push(self.res.len());
        } else {
            self.square.push(self.res.len());
        }
    }

    /// The `:` at `i`: `:1.2)` closes the innermost `(` with that weight; otherwise text.
    /// Returns the index after what was read.
    fn weight(&mut self, input: &[Ch], i: usize) -> usize {
        match weight_close(input, i) {
            Some((weight, end)) => {
                if self.round.is_empty() {
                    // No open `(`: the whole `:1.2)` token is text.
                    self.literal(&input[i..end]);
                    end
                } else if let Some(w) = weight {
                    let from = self.round.pop().unwrap_or(0);
                    multiply_range(&mut self.res, from, w);
                    end
                } else {
                    self.literal(&input[i..i + 1]);
                    i + 1
                }
            }
            None => {
                self.literal(&input[i..i + 1]);
                i + 1
            }
        }
    }

    /// The `)` (×1.1) or `]` (÷1.1) at `i` closes the innermost bracket of its kind; an
    /// unmatched one is text.
    fn close(&mut self, input: &[Ch], i: usize) {
        let (open, w) = if input[i].c == ')' {
            (&mut self.round, 1.1)
        } else {
            (&mut self.square, 1.0 / 1.1)
        };
        match open.pop() {
            Some(from) => multiply_range(&mut self.res, from, w),
            None => self.literal(&input[i..i + 1]),
        }
    }

    /// The text from `start` to the next special character; returns the index there.
    fn plain(&mut self, input: &[Ch], start: usize) -> usize {
        let mut i = start;
        while i < input.len() && !matches!(input[i].c, '\\' | '(' | ')' | '[' | ']' | ':') {
            i += 1;
        }
        let g = self.text_group();
        push_plain(&mut self.res, &input[start..i], g);
        i
    }

    /// Applies the brackets still open to the end of the text.
    fn finish(mut self) -> Vec<Piece> {
        for from in self.round {
            multiply_range(&mut self.res, from, 1.1);
        }
        for from in self.square {
            multiply_range(&mut self.res, from, 1.0 / 1.1);
        }
        self.res
    }
}

/// `:\s*([+-]?[.\d]+)\s*\)` at `i`: the parsed weight (`None` when `float()` would fail)
/// and the index after `)`.
fn weight_close(input: &[Ch], i: usize) -> Option<(Option<f64>, usize)> {
    let n = input.len();
    let mut j = i + 1;
    while j < n && input[j].c.is_whitespace() {
        j += 1;
    }
    let mut num = String::new();
    if j < n && (input[j].c == '+' || input[j].c == '-') {
        num.push(input[j].c);
        j += 1;
    }
    let digits_start = j;
    while j < n {
        let c = input[j].c;
        if c == '.' || c.is_ascii_digit() {
            num.push(c);
        } else if ('\u{ff10}'..='\u{ff19}').contains(&c) {
            // Fullwidth digits: `\d` matches them and Python's float() accepts them.
            num.push(char::from(b'0' + (c as u32 - 0xff10) as u8));
        } else {
            break;
        }
        j += 1;
    }
    if j == digits_start {
        return None;
    }
    while j < n && input[j].c.is_whitespace() {
        j += 1;
    }
    if j < n && input[j].c == ')' {
        let w = num.parse::<f64>().ok().filter(|w| w.is_finite());
        Some((w, j + 1))
    } else {
        None
    }
}

/// Appends characters, one piece per run of equal flags.
fn push_chars(res: &mut Vec<Piece>, chars: &[Ch], group: u32) {
    let mut start = 0;
    for k in 1..=chars.len() {
        if k == chars.len() || chars[k].flags != chars[start].flags {
            let text: String = chars[start..k].iter().map(|c| c.c).collect();
            res.push(Piece::new(text, 1.0, chars[start].flags, group));
            start = k;
        }
    }
}

/// A plain-text token, split on `\s*\bBREAK\b\s*` (each part appended, even when empty,
/// as A1111 does).
fn push_plain(res: &mut Vec<Piece>, chars: &[Ch], group: u32) {
    let n = chars.len();
    let mut part_start = 0;
    let mut i = 0;
    while i + 5 <= n {
        let is_break = chars[i..i + 5].iter().map(|c| c.c).eq("BREAK".chars())
            && (i == 0 || !is_word_char(chars[i - 1].c))
            && (i + 5 == n || !is_word_char(chars[i + 5].c));
        if is_break {
            let mut a = i;
            while a > part_start && chars[a - 1].c.is_whitespace() {
                a -= 1;
            }
            let mut b = i + 5;
            while b < n && chars[b].c.is_whitespace() {
                b += 1;
            }
            push_part(res, &chars[part_start..a], group);
            res.push(Piece::brk());
            part_start = b;
            i = b;
        } else {
            i += 1;
        }
    }
    push_part(res, &chars[part_start..], group);
}

fn push_part(res: &mut Vec<Piece>, chars: &[Ch], group: u32) {
    if chars.is_empty() {
        res.push(Piece::new("", 1.0, 0, group));
    } else {
        push_chars(res, chars, group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for p in attention_str(text) {
            let w = if p.brk { -1.0 } else { p.weight };
            match out.last_mut() {
                Some(last) if last.1 == w => last.0.push_str(&p.text),
                _ => out.push((p.text, w)),
            }
        }
        out
    }

    fn r(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    #[test]
    fn doctests() {
        assert_eq!(runs("normal text"), r(&[("normal text", 1.0)]));
        assert_eq!(
            runs("an (important) word"),
            r(&[("an ", 1.0), ("important", 1.1), (" word", 1.0)])
        );
        assert_eq!(runs("(unbalanced"), r(&[("unbalanced", 1.1)]));
        assert_eq!(runs(r"\(literal\]"), r(&[("(literal]", 1.0)]));
        assert_eq!(
            runs("(unnecessary)(parens)"),
            r(&[("unnecessaryparens", 1.1)])
        );
        assert_eq!(
            runs("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
            r(&[
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ])
        );
    }

    #[test]
    fn weight_close_edge_cases() {
        assert_eq!(runs("x:1.2)"), r(&[("x:1.2)", 1.0)]));
        assert_eq!(runs("(x: 1.5 )"), r(&[("x", 1.5)]));
        assert_eq!(runs("(x:-1)"), r(&[("x", -1.0)]));
        // float("1.2.3") raises in A1111; here the `:` is text and `)` closes ×1.1.
        assert_eq!(runs("(x:1.2.3)"), r(&[("x:1.2.3", 1.1)]));
        assert_eq!(runs("(x:.)"), r(&[("x:.", 1.1)]));
        assert_eq!(runs("(x:１.５)"), r(&[("x", 1.5)]));
        assert_eq!(runs("a:b"), r(&[("a:b", 1.0)]));
    }

    #[test]
    fn breaks_are_whole_words() {
        let p = attention_str("a BREAK b BREAKFAST cBREAK");
        let texts: Vec<(&str, bool)> = p.iter().map(|p| (p.text.as_str(), p.brk)).collect();
        assert_eq!(
            texts,
            vec![("a", false), ("BREAK", true), ("b BREAKFAST cBREAK", false)]
        );
        assert!(attention_str("a break b").iter().all(|p| !p.brk));
    }

    #[test]
    fn and_weights() {
        assert_eq!(
            split_and("a cat :1.2 AND a dog"),
            vec![("a cat".to_string(), 1.2), (" a dog".to_string(), 1.0)]
        );
        assert_eq!(
            split_and("ANDROID, hAND"),
            vec![("ANDROID, hAND".to_string(), 1.0)]
        );
        assert_eq!(split_and("x:-0.5"), vec![("x".to_string(), -0.5)]);
        assert_eq!(split_and("x:1.2.3"), vec![("x:1.2.3".to_string(), 1.0)]);
        assert_eq!(split_and("(x:1.2)"), vec![("(x:1.2)".to_string(), 1.0)]);
        assert_eq!(split_and("x:.5"), vec![("x".to_string(), 0.5)]);
        assert_eq!(split_and("x:5."), vec![("x".to_string(), 5.0)]);
    }

    fn variant_texts(text: &str) -> Vec<String> {
        variants(text)
            .into_iter()
            .map(|v| v.into_iter().map(|p| p.text.replace(MARK, "")).collect())
            .collect()
    }

    #[test]
    fn scheduling_variants() {
        assert_eq!(variant_texts("a[b:[c:d:2]:1]e"), vec!["abe", "ace", "ade"]);
        assert_eq!(variant_texts("[fe|]male"), vec!["female", "male"]);
        assert_eq!(variant_texts("a [b:3] c"), vec!["a  c", "a b c"]);
        assert_eq!(variant_texts("a [b::3] c"), vec!["a b c", "a  c"]);
        assert_eq!(variant_texts("[a|b] [c|d]"), vec!["a c", "b d"]);
        // `when` <= 0: `from` is never shown.
        assert_eq!(variant_texts("[a:b:0]"), vec!["b"]);
        // Grammar failures: literal.
        assert_eq!(variant_texts("a [unbalanced"), vec!["a unbalanced"]);
        assert_eq!(variant_texts("a | b [c:d:1]"), vec!["a | b c:d:1"]);
        // Emphasis around an edit keeps its weight in both branches.
        let v = variants("([cat:dog:0.5]:1.3)");
        assert_eq!(v.len(), 2);
        assert!(v
            .iter()
            .all(|p| p[0].weight == 1.3 && p[0].flags == SCHEDULED));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = "[".repeat(10_000) + "x" + &"]".repeat(10_000);
        let v = variants(&deep);
        assert!(!v.is_empty());
        let deep = "(".repeat(10_000) + "x";
        assert!(!variants(&deep).is_empty());
        let alts = format!("[{}]", vec!["a"; 5000].join("|"));
        assert!(variants(&alts).len() <= MAX_VARIANTS);
    }
}
