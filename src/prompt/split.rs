//! Weighted runs → tags and captions.
//!
//! 1. Segments: runs are cut on `,` (and `，`), newlines and `BREAK` markers.
//! 2. A segment that reads as a sentence ([`is_caption`]) is a caption. Adjacent caption
//!    segments on one line are joined again with `", "`, and so is a segment ending in
//!    `.`/`!`/`?` that follows a caption (the end of its sentence).
//! 3. Otherwise it is cut at sentence punctuation (`oil painting. brushstrokes`), and, when
//!    it holds two or more top-level emphasis groups, at the whitespace between groups
//!    (`(solo) girl (flat chest:0.9)` → `solo`, `girl`, `flat chest`); one group stays in
//!    its tag (`a (b) c` → `a b c`).
//! 4. Each piece of 6 or more words is a caption; anything else is a tag, whose weight is
//!    the weight carrying the most non-space characters (ties: the higher), flagged
//!    scheduled / alternating if any of its characters is.

use super::{Piece, PromptTag, ALTERNATING, MARK, SCHEDULED};

/// Words from which a comma-free piece is a caption rather than a tag.
pub(crate) const CAPTION_WORDS: usize = 6;

pub(crate) struct SplitOut {
    pub tags: Vec<PromptTag>,
    pub captions: Vec<String>,
}

#[derive(Clone, Copy)]
struct Cell {
    c: char,
    weight: f64,
    flags: u8,
    group: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Sep {
    Start,
    Comma,
    Line,
}

pub(crate) fn split(pieces: &[Piece], multiplier: f64) -> SplitOut {
    let mut out = SplitOut {
        tags: Vec::new(),
        captions: Vec::new(),
    };
    let mut caption_open = false;
    let mut seg: Vec<Cell> = Vec::new();
    let mut sep = Sep::Start;
    let mut finish = |seg: &mut Vec<Cell>, sep: Sep, out: &mut SplitOut| {
        let cells = trim(seg);
        if !cells.is_empty() {
            let continues = caption_open && sep == Sep::Comma;
            caption_open = segment(cells, continues, out);
        } else if sep == Sep::Line {
            caption_open = false;
        }
        seg.clear();
    };
    for p in pieces {
        if p.brk {
            finish(&mut seg, sep, &mut out);
            sep = Sep::Line;
            continue;
        }
        for c in p.text.chars() {
            match c {
                ',' | '，' => {
                    finish(&mut seg, sep, &mut out);
                    sep = Sep::Comma;
                }
                '\n' | '\r' => {
                    finish(&mut seg, sep, &mut out);
                    sep = Sep::Line;
                }
                _ => seg.push(Cell {
                    c,
                    weight: p.weight * multiplier,
                    flags: p.flags,
                    group: p.group,
                }),
            }
        }
    }
    finish(&mut seg, sep, &mut out);
    out
}

fn trim(cells: &[Cell]) -> &[Cell] {
    let start = cells
        .iter()
        .position(|c| !c.c.is_whitespace())
        .unwrap_or(cells.len());
    let end = cells
        .iter()
        .rposition(|c| !c.c.is_whitespace())
        .map(|e| e + 1)
        .unwrap_or(start);
    &cells[start..end.max(start)]
}

fn text_of(cells: &[Cell]) -> String {
    cells.iter().map(|c| c.c).filter(|&c| c != MARK).collect()
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Handles one trimmed, non-empty segment; returns whether it ended in a caption.
fn segment(cells: &[Cell], continues: bool, out: &mut SplitOut) -> bool {
    let text = text_of(cells);
    // `..., car and couple.`: the end of the sentence a caption before it started.
    if is_caption(&text) || (continues && ends_sentence(&text)) {
        push_caption(out, collapse(&text), continues);
        return true;
    }
    let mut last_caption = false;
    let mut continues = continues;
    for sentence in split_sentences(cells) {
        let sentence = trim(sentence);
        if sentence.is_empty() {
            continue;
        }
        let chunks = if top_level_groups(sentence) >= 2 {
            split_groups(sentence)
        } else {
            vec![sentence]
        };
        for chunk in chunks {
            let chunk = trim(chunk);
            if chunk.is_empty() {
                continue;
            }
            let text = text_of(chunk);
            if text.split_whitespace().count() >= CAPTION_WORDS {
                push_caption(out, collapse(&text), continues);
                last_caption = true;
            } else if let Some(tag) = make_tag(chunk) {
                out.tags.push(tag);
                last_caption = false;
            }
            continues = last_caption;
        }
    }
    last_caption
}

fn push_caption(out: &mut SplitOut, text: String, continues: bool) {
    match out.captions.last_mut() {
        Some(last) if continues => {
            last.push_str(", ");
            last.push_str(&text);
        }
        _ => out.captions.push(text),
    }
}

/// Prepositions and conjunctions that make a 5+ word segment a phrase, not a tag
/// (`sunset beach silhouettes of palm`); shorter tags use them (`depth of field`,
/// `hair over one eye`, `mutated hands and fingers`).
const LINKING_WORDS: &[&str] = &[
    "of", "with", "in", "on", "at", "from", "behind", "under", "near", "into", "while", "and",
];

/// Whether a comma-free segment reads as a sentence (see `docs/tags.md`):
/// CJK sentence punctuation (`。！？`); the word `a`/`an` and 2+ words; `the` and 5+ words;
/// `is`/`are`/`was`/`were` and 3+ words; a preposition or conjunction ([`LINKING_WORDS`])
/// and 5+ words; sentence punctuation (`.`/`!`/`?` then space or end) with a sentence of
/// 4+ words.
pub(crate) fn is_caption(text: &str) -> bool {
    if text.contains(['。', '！', '？']) {
        return true;
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    let n = words.len();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    if n >= 2 && has(&["a", "an"]) {
        return true;
    }
    if n >= 5 && has(&["the"]) {
        return true;
    }
    if n >= 3 && has(&["is", "are", "was", "were"]) {
        return true;
    }
    if n >= 5 && has(LINKING_WORDS) {
        return true;
    }
    let sentences = sentence_texts(text);
    if sentences.len() > 1 || ends_sentence(text) {
        return sentences.iter().any(|s| s.split_whitespace().count() >= 4);
    }
    false
}

/// Whether the character at `i` ends a sentence: `.`/`!`/`?` after a letter or digit (or a
/// closing quote/bracket) and before whitespace or the end.
fn is_sentence_end(chars: &[char], i: usize) -> bool {
    matches!(chars[i], '.' | '!' | '?')
        && i > 0
        && (chars[i - 1].is_alphanumeric() || matches!(chars[i - 1], '"' | '\'' | ')'))
        && (i + 1 == chars.len() || chars[i + 1].is_whitespace())
}

fn ends_sentence(text: &str) -> bool {
    let chars: Vec<char> = text.trim_end().chars().collect();
    !chars.is_empty() && is_sentence_end(&chars, chars.len() - 1)
}

fn sentence_texts(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..chars.len() {
        if is_sentence_end(&chars, i) {
            out.push(chars[start..i].iter().collect::<String>());
            start = i + 1;
        }
    }
    let rest: String = chars[start..].iter().collect();
    if !rest.trim().is_empty() {
        out.push(rest);
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

/// The segment cut at sentence punctuation, the punctuation dropped (`sky.` → `sky`).
fn split_sentences(cells: &[Cell]) -> Vec<&[Cell]> {
    let chars: Vec<char> = cells.iter().map(|c| c.c).collect();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..chars.len() {
        if is_sentence_end(&chars, i) {
            out.push(&cells[start..i]);
            start = i + 1;
        }
    }
    out.push(&cells[start..]);
    out
}

fn top_level_groups(cells: &[Cell]) -> usize {
    let mut groups: Vec<u32> = cells
        .iter()
        .filter(|c| c.group != 0 && !c.c.is_whitespace())
        .map(|c| c.group)
        .collect();
    groups.dedup();
    groups.sort_unstable();
    groups.dedup();
    groups.len()
}

/// Cuts where the group changes next to whitespace.
fn split_groups(cells: &[Cell]) -> Vec<&[Cell]> {
    let mut out = Vec::new();
    let mut start = 0;
    for k in 1..cells.len() {
        if cells[k].group != cells[k - 1].group
            && (cells[k].c.is_whitespace() || cells[k - 1].c.is_whitespace())
        {
            out.push(&cells[start..k]);
            start = k;
        }
    }
    out.push(&cells[start..]);
    out
}

fn make_tag(cells: &[Cell]) -> Option<PromptTag> {
    let tag = crate::tags::normalise(&text_of(cells))?;
    let mut by_weight: Vec<(f64, usize)> = Vec::new();
    let mut flags = 0u8;
    for c in cells.iter().filter(|c| !c.c.is_whitespace()) {
        flags |= c.flags;
        if c.c == MARK {
            continue;
        }
        match by_weight.iter_mut().find(|(w, _)| *w == c.weight) {
            Some((_, n)) => *n += 1,
            None => by_weight.push((c.weight, 1)),
        }
    }
    let weight = by_weight
        .iter()
        .copied()
        .reduce(|a, b| {
            if b.1 > a.1 || (b.1 == a.1 && b.0 > a.0) {
                b
            } else {
                a
            }
        })
        .map(|(w, _)| w)
        .unwrap_or(1.0);
    Some(PromptTag {
        tag,
        weight,
        scheduled: flags & SCHEDULED != 0,
        alternating: flags & ALTERNATING != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions() {
        for s in [
            "photo of a duck",
            "a circle",
            "a smiling goldfish",
            "Cowboy holding a pole of road sign \"Flux.1 Dev\". 12B is handwritten",
            "Volkswagen Bus Kombi sticker. White background",
            "初音ミクのポートレート。美麗な2Dアニメイラスト。",
            "the sun sets behind the mountains",
            "the sky is blue",
            "sunset beach silhouettes of palm",
        ] {
            assert!(is_caption(s), "{s}");
        }
        for s in [
            "1girl",
            "hatsune miku",
            "looking at viewer",
            "hair over one eye",
            "the idolmaster",
            "the legend of zelda",
            "oil painting. painterly brushstrokes",
            "sky.",
            "black and white",
            "mutated hands and fingers",
            "depth of field",
            "hand on own chest",
            "rating:general",
        ] {
            assert!(!is_caption(s), "{s}");
        }
    }

    fn pieces(parts: &[(&str, f64, u32)]) -> Vec<Piece> {
        parts
            .iter()
            .map(|(t, w, g)| Piece::new(*t, *w, 0, *g))
            .collect()
    }

    #[test]
    fn tag_weight_is_the_majority() {
        let out = split(&pieces(&[("horror ", 1.0, 0), ("theme", 1.1, 1)]), 1.0);
        assert_eq!(out.tags[0].tag, "horror theme");
        assert_eq!(out.tags[0].weight, 1.0);
        let out = split(&pieces(&[("x ", 1.0, 0), ("long tag", 1.2, 1)]), 2.0);
        assert_eq!(out.tags[0].weight, 2.4);
    }

    #[test]
    fn group_split() {
        let out = split(
            &pieces(&[
                ("solo", 1.1, 1),
                (" girl ", 1.0, 0),
                ("flat chest", 0.9, 2),
                (", ", 1.0, 0),
                ("unnecessary", 1.1, 3),
                ("parens", 1.1, 4),
            ]),
            1.0,
        );
        let tags: Vec<(&str, f64)> = out
            .tags
            .iter()
            .map(|t| (t.tag.as_str(), t.weight))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("solo", 1.1),
                ("girl", 1.0),
                ("flat chest", 0.9),
                ("unnecessaryparens", 1.1)
            ]
        );
    }

    #[test]
    fn adjacent_captions_join() {
        let out = split(
            &pieces(&[(
                "A girl sits on a bench, reading a book, while the sun sets.\n1girl",
                1.0,
                0,
            )]),
            1.0,
        );
        assert_eq!(
            out.captions,
            vec!["A girl sits on a bench, reading a book, while the sun sets."]
        );
        assert_eq!(out.tags.len(), 1);
    }
}
