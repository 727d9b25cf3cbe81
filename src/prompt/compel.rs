//! InvokeAI's Compel syntax, read tolerantly: `word+` / `word-` (each sign ×1.1 / ×0.9, so
//! `++` = 1.21, `--` = 0.81), `(phrase)+`, `(phrase)1.25`, nesting multiplies
//! (`(a (b)1.3)1.1`: b = 1.43), bare `(phrase)` is a group at 1.0,
//! `("a", "b").blend(0.7, 0.3)` and `("a", "b").and()` (each quoted prompt with its
//! weight, as written — not normalised), `(x).swap(y)` (both sides, flagged scheduled),
//! `withLora(name, weight)`, escapes `\(` `\)` `\"` `\\`. Square brackets are text.

use super::{multiply_range, Piece, MAX_DEPTH, SCHEDULED};
use crate::metadata::Lora;

pub(crate) struct CompelOut {
    pub pieces: Vec<Piece>,
    pub loras: Vec<Lora>,
}

pub(crate) fn parse(text: &str) -> CompelOut {
    let s: Vec<char> = text.chars().collect();
    let close = match_parens(&s);
    let mut p = Parser {
        s: &s,
        close,
        out: Vec::new(),
        loras: Vec::new(),
        groups: 0,
    };
    p.seq(
        0,
        s.len(),
        Scope {
            depth: 0,
            flags: 0,
            group: None,
        },
    );
    CompelOut {
        pieces: p.out,
        loras: p.loras,
    }
}

/// For every unescaped `(`, the index of its `)`.
fn match_parens(s: &[char]) -> Vec<Option<usize>> {
    let mut close = vec![None; s.len()];
    let mut stack = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            '\\' => i += 1,
            '(' => stack.push(i),
            ')' => {
                if let Some(o) = stack.pop() {
                    close[o] = Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    close
}

enum Suffix {
    Weight(f64),
    Blend(Vec<f64>),
    Swap(usize, usize),
}

/// Where a span is parsed: its nesting depth, and the flags and group its pieces get (`None`
/// outside any emphasis: each emphasised part there starts a group of its own).
#[derive(Clone, Copy)]
struct Scope {
    depth: usize,
    flags: u8,
    group: Option<u32>,
}

impl Scope {
    /// The scope inside an emphasis in this one: group `g`, `flags` added.
    fn inner(self, g: u32, flags: u8) -> Scope {
        Scope {
            depth: self.depth + 1,
            flags: self.flags | flags,
            group: Some(g),
        }
    }
}

struct Parser<'a> {
    s: &'a [char],
    close: Vec<Option<usize>>,
    out: Vec<Piece>,
    loras: Vec<Lora>,
    groups: u32,
}

impl Parser<'_> {
    fn new_group(&mut self, group: Option<u32>) -> u32 {
        group.unwrap_or_else(|| {
            self.groups += 1;
            self.groups
        })
    }

    fn flush(&mut self, plain: &mut String, sc: Scope) {
        if !plain.is_empty() {
            self.out.push(Piece::new(
                std::mem::take(plain),
                1.0,
                sc.flags,
                sc.group.unwrap_or(0),
            ));
        }
    }

    fn sep(&mut self) {
        self.out.push(Piece {
            text: String::new(),
            ..Piece::brk()
        });
    }

    fn closing(&self, i: usize, to: usize) -> Option<usize> {
        self.close.get(i).copied().flatten().filter(|&m| m < to)
    }

    fn seq(&mut self, from: usize, to: usize, sc: Scope) {
        let s = self.s;
        let mut plain = String::new();
        let mut i = from;
        while i < to {
            let c = s[i];
            i = if c == '\\' && i + 1 < to && matches!(s[i + 1], '(' | ')' | '"' | '\\') {
                plain.push(s[i + 1]);
                i + 2
            } else if c == '(' {
                self.paren(i, to, sc, &mut plain)
            } else if c.is_whitespace() || matches!(c, ',' | ')' | '"' | '\\') {
                self.separator(i, to, sc, &mut plain)
            } else {
                self.word(i, to, sc, &mut plain)
            };
        }
        self.flush(&mut plain, sc);
    }

    /// The `(` at `i`: a group when it is closed (and not nested too deep), else text.
    /// Returns where parsing goes on.
    fn paren(&mut self, i: usize, to: usize, sc: Scope, plain: &mut String) -> usize {
        match self.closing(i, to) {
            Some(m) if sc.depth < MAX_DEPTH => {
                self.flush(plain, sc);
                self.group(i, m, to, sc)
            }
            _ => {
                plain.push('(');
                i + 1
            }
        }
    }

    /// A separator character at `i`; a `"` that opens a quoted prompt with a suffix
    /// (`"a"+`, `"a".blend(…)`) applies it. Returns where parsing goes on.
    fn separator(&mut self, i: usize, to: usize, sc: Scope, plain: &mut String) -> usize {
        let c = self.s[i];
        if c == '"' {
            if let Some(q) = find_quote(self.s, i + 1, to) {
                let (suffix, after) = self.suffix(q + 1, to);
                if !matches!(suffix, Suffix::Weight(w) if w == 1.0) || after > q + 1 {
                    self.flush(plain, sc);
                    return self.apply(i + 1, q, suffix, after, sc);
                }
            }
        }
        plain.push(c);
        i + 1
    }

    /// The word at `i`: `withLora(…)`, a signed word (`word++`), or text. Returns the index
    /// after it.
    fn word(&mut self, i: usize, to: usize, sc: Scope, plain: &mut String) -> usize {
        let s = self.s;
        let mut j = i;
        while j < to && !(s[j].is_whitespace() || matches!(s[j], ',' | '(' | ')' | '"' | '\\')) {
            j += 1;
        }
        let word: String = s[i..j].iter().collect();
        if word == "withLora" && j < to && s[j] == '(' {
            if let Some(after) = self.with_lora(j, to) {
                return after;
            }
        }
        let last = word.chars().last().unwrap_or(' ');
        let signs = if last == '+' || last == '-' {
            word.chars().rev().take_while(|&c| c == last).count()
        } else {
            0
        };
        let stem_len = word.chars().count() - signs;
        if signs > 0 && stem_len > 0 {
            self.flush(plain, sc);
            let stem: String = word.chars().take(stem_len).collect();
            let factor = if last == '+' { 1.1 } else { 0.9 };
            let g = self.new_group(sc.group);
            self.out
                .push(Piece::new(stem, factor_pow(factor, signs), sc.flags, g));
        } else {
            plain.push_str(&word);
        }
        j
    }

    /// `withLora(name, weight)` with its `(` at `j`: notes the LoRA and returns the index
    /// after `)`; `None` when the `(` is not closed.
    fn with_lora(&mut self, j: usize, to: usize) -> Option<usize> {
        let m = self.closing(j, to)?;
        let args: String = self.s[j + 1..m].iter().collect();
        let mut parts = args.split(',').map(|a| a.trim().trim_matches(['"', '\'']));
        let name = parts.next().unwrap_or("").to_string();
        if !name.is_empty() {
            let weight = parts
                .next()
                .and_then(|w| w.parse::<f64>().ok())
                .filter(|w| w.is_finite())
                .unwrap_or(1.0);
            self.loras.push(Lora {
                name,
                weight: Some(weight),
                ..Lora::default()
            });
        }
        Some(m + 1)
    }

    /// `(` at `i` closed at `m`, then its suffix; returns where parsing goes on.
    fn group(&mut self, i: usize, m: usize, to: usize, sc: Scope) -> usize {
        let (suffix, after) = self.suffix(m + 1, to);
        self.apply(i + 1, m, suffix, after, sc)
    }

    fn apply(&mut self, a: usize, b: usize, suffix: Suffix, after: usize, sc: Scope) -> usize {
        match suffix {
            Suffix::Weight(w) => {
                let g = self.new_group(sc.group);
                let start = self.out.len();
                self.seq(a, b, sc.inner(g, 0));
                multiply_range(&mut self.out, start, w);
            }
            Suffix::Blend(weights) => {
                let mut items = quoted_items(self.s, a, b);
                if items.is_empty() {
                    items.push((a, b));
                }
                self.sep();
                for (k, (x, y)) in items.into_iter().enumerate() {
                    if k > 0 {
                        self.sep();
                    }
                    let g = self.new_group(sc.group);
                    let start = self.out.len();
                    self.seq(x, y, sc.inner(g, 0));
                    multiply_range(&mut self.out, start, weights.get(k).copied().unwrap_or(1.0));
                }
                self.sep();
            }
            Suffix::Swap(x, y) => {
                let (x, y) = strip_quotes(self.s, x, y);
                self.sep();
                let g = self.new_group(sc.group);
                self.seq(a, b, sc.inner(g, SCHEDULED));
                self.sep();
                let g = self.new_group(sc.group);
                self.seq(x, y, sc.inner(g, SCHEDULED));
                self.sep();
            }
        }
        after
    }

    /// What follows a `)` or closing quote at `i`: `+`…, `-`…, a number, `.blend(…)`,
    /// `.and(…)`, `.swap(…)`; and where it ends.
    fn suffix(&self, i: usize, to: usize) -> (Suffix, usize) {
        let s = self.s;
        if i < to && (s[i] == '+' || s[i] == '-') {
            let c = s[i];
            let n = s[i..to].iter().take_while(|&&x| x == c).count();
            let f = if c == '+' { 1.1 } else { 0.9 };
            return (Suffix::Weight(factor_pow(f, n)), i + n);
        }
        if i < to && (s[i].is_ascii_digit() || s[i] == '.') {
            let n = s[i..to]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == '.')
                .count();
            let end = i + n;
            let terminated = end >= to || !(s[end].is_alphanumeric() || s[end] == '_');
            if let Ok(w) = s[i..end].iter().collect::<String>().parse::<f64>() {
                if terminated && w.is_finite() {
                    return (Suffix::Weight(w), end);
                }
            }
        }
        for name in [".blend(", ".and(", ".swap("] {
            let len = name.chars().count();
            if i + len <= to && s[i..i + len].iter().copied().eq(name.chars()) {
                if let Some(m) = self.closing(i + len - 1, to) {
                    let args_range = (i + len, m);
                    if name == ".swap(" {
                        return (Suffix::Swap(args_range.0, args_range.1), m + 1);
                    }
                    let args: String = s[args_range.0..args_range.1].iter().collect();
                    let weights = args
                        .split(',')
                        .filter_map(|a| a.trim().parse::<f64>().ok())
                        .filter(|w| w.is_finite())
                        .collect();
                    return (Suffix::Blend(weights), m + 1);
                }
            }
        }
        (Suffix::Weight(1.0), i)
    }
}

fn factor_pow(f: f64, n: usize) -> f64 {
    (0..n.min(64)).fold(1.0, |w, _| w * f)
}

/// The next unescaped `"` in `s[from..to]`.
fn find_quote(s: &[char], from: usize, to: usize) -> Option<usize> {
    let mut i = from;
    while i < to {
        match s[i] {
            '\\' => i += 2,
            '"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The insides of the `"..."` strings in `s[a..b]`.
fn quoted_items(s: &[char], a: usize, b: usize) -> Vec<(usize, usize)> {
    let mut items = Vec::new();
    let mut i = a;
    while i < b {
        if s[i] == '\\' {
            i += 2;
            continue;
        }
        if s[i] == '"' {
            match find_quote(s, i + 1, b) {
                Some(q) => {
                    items.push((i + 1, q));
                    i = q + 1;
                    continue;
                }
                None => break,
            }
        }
        i += 1;
    }
    items
}

fn strip_quotes(s: &[char], mut a: usize, mut b: usize) -> (usize, usize) {
    while a < b && s[a].is_whitespace() {
        a += 1;
    }
    while b > a && s[b - 1].is_whitespace() {
        b -= 1;
    }
    if b >= a + 2 && s[a] == '"' && s[b - 1] == '"' {
        (a + 1, b - 1)
    } else {
        (a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Vec<(String, f64)> {
        parse(text)
            .pieces
            .into_iter()
            .filter(|p| !p.brk)
            .map(|p| (p.text, (p.weight * 1e9).round() / 1e9))
            .collect()
    }

    fn r(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    #[test]
    fn plus_minus() {
        assert_eq!(
            runs("grainy+, noisy++, x-shaped, blurry--"),
            r(&[
                ("grainy", 1.1),
                (", ", 1.0),
                ("noisy", 1.21),
                (", x-shaped, ", 1.0),
                ("blurry", 0.81)
            ])
        );
        assert_eq!(runs("a - b"), r(&[("a - b", 1.0)]));
    }

    #[test]
    fn groups() {
        assert_eq!(runs("(a cat)1.25"), r(&[("a cat", 1.25)]));
        assert_eq!(runs("(a cat)+"), r(&[("a cat", 1.1)]));
        assert_eq!(runs("(a cat)"), r(&[("a cat", 1.0)]));
        assert_eq!(runs("(a (b)1.3)1.1"), r(&[("a ", 1.1), ("b", 1.43)]));
        assert_eq!(
            runs("(picking apricots+)++"),
            r(&[("picking ", 1.21), ("apricots", 1.331)])
        );
        assert_eq!(runs(r"\(x\)"), r(&[("(x)", 1.0)]));
        assert_eq!(runs("(unbalanced"), r(&[("(unbalanced", 1.0)]));
    }

    #[test]
    fn blend_and_swap() {
        assert_eq!(
            runs(r#"("spider man", "robot mech").blend(0.7, 0.3)"#),
            r(&[("spider man", 0.7), ("robot mech", 0.3)])
        );
        assert_eq!(runs(r#"("a", "b").and()"#), r(&[("a", 1.0), ("b", 1.0)]));
        let p = parse("a (cat).swap(dog)").pieces;
        assert!(p.iter().any(|p| p.text == "cat" && p.flags == SCHEDULED));
        assert!(p.iter().any(|p| p.text == "dog" && p.flags == SCHEDULED));
    }

    #[test]
    fn with_lora() {
        let out = parse("a cat withLora(my_lora, 0.6)");
        assert_eq!(out.loras.len(), 1);
        assert_eq!(out.loras[0].name, "my_lora");
        assert_eq!(out.loras[0].weight, Some(0.6));
    }
}
