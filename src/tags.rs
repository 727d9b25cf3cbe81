//! Tag normalisation: one canonical spelling for every tag, whatever its source (ground-truth
//! sidecars, labels files, model label lists, predictions from other tools).
//!
//! Pure. The rules, in order (documented in `docs/tags.md`):
//! 1. trim surrounding whitespace (and a byte-order mark);
//! 2. unescape `\(` `\)` `\[` `\]` `\{` `\}` `\:` `\\` (prompt-style escapes);
//! 3. lowercase;
//! 4. kaomoji (`^_^`, `o_o`, `>_<`, ...) keep their underscores; elsewhere `_` becomes a space;
//! 5. runs of whitespace collapse to one space.
//!
//! So `Long_Hair`, ` long hair ` and `long_hair` are all `long hair`, `saber_\(fate\)` is
//! `saber (fate)`, and `^_^` stays `^_^`.

use std::collections::BTreeMap;

/// Kaomoji tags from the WD taggers' reference code, which keep their underscores.
pub const KAOMOJI: &[&str] = &[
    "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o",
    "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||",
];

/// Whether `tag` (lowercased) is a kaomoji: a known one, or a short face made of tiny parts
/// joined by underscores with no word in it (`;_;`, `t_t`, `-_-`).
pub fn is_kaomoji(tag: &str) -> bool {
    if KAOMOJI.contains(&tag) {
        return true;
    }
    if !tag.contains('_') || tag.chars().count() > 9 || tag.contains(' ') {
        return false;
    }
    tag.split('_').all(|part| {
        let chars: Vec<char> = part.chars().collect();
        chars.len() <= 3
            && !chars
                .windows(2)
                .any(|w| w[0].is_alphabetic() && w[1].is_alphabetic())
    }) && tag.split('_').filter(|p| !p.is_empty()).count() >= 2
}

/// Normalises one tag; `None` when nothing is left.
pub fn normalise(raw: &str) -> Option<String> {
    normalise_keep_case(raw).map(|t| t.to_lowercase())
}

/// [`normalise`] without the lowercasing step: `Saber_\(Fate\)` is `Saber (Fate)`. For output
/// text that keeps the writer's case; its lowercase is always `normalise(raw)`.
pub fn normalise_keep_case(raw: &str) -> Option<String> {
    let trimmed = raw.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return None;
    }
    let unescaped = unescape(trimmed);
    let tag = unescaped.trim();
    if is_kaomoji(&tag.to_lowercase()) {
        return Some(tag.to_string());
    }
    let spaced = tag.replace('_', " ");
    let collapsed = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    (!collapsed.is_empty()).then_some(collapsed)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if matches!(next, '(' | ')' | '[' | ']' | '{' | '}' | ':' | '\\') {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// Splits a kohya-style tag list (`tag, tag, tag`; newlines also separate) and normalises
/// each tag, dropping empties and duplicates (first occurrence wins).
pub fn parse_list(text: &str, separator: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    text.split('\n')
        .flat_map(|line| line.split(separator))
        .filter_map(normalise)
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// An alias table: normalised alias → normalised canonical tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Aliases(pub BTreeMap<String, String>);

impl Aliases {
    /// Builds a table from raw pairs, normalising both sides.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Aliases {
        Aliases(
            pairs
                .into_iter()
                .filter_map(|(a, c)| Some((normalise(a)?, normalise(c)?)))
                .collect(),
        )
    }

    /// The canonical form of a normalised tag.
    pub fn apply(&self, tag: String) -> String {
        match self.0.get(&tag) {
            Some(c) => c.clone(),
            None => tag,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_space_underscores() {
        assert_eq!(normalise("Long_Hair").as_deref(), Some("long hair"));
        assert_eq!(normalise("  long   hair ").as_deref(), Some("long hair"));
        assert_eq!(normalise("\u{feff}1girl").as_deref(), Some("1girl"));
        assert_eq!(normalise("   ").as_deref(), None);
        assert_eq!(normalise("_").as_deref(), None);
    }

    #[test]
    fn keeps_kaomoji() {
        for k in [
            "^_^", "o_O", "x_x", ">_<", "||_||", ";_;", "t_t", "-_-", "0_0",
        ] {
            assert_eq!(
                normalise(k).as_deref(),
                Some(k.to_lowercase().as_str()),
                "{k}"
            );
        }
        assert_eq!(normalise("no_humans").as_deref(), Some("no humans"));
        assert_eq!(normalise("a_b_c_d_e_f").as_deref(), Some("a b c d e f"));
        assert_eq!(normalise("1_girl").as_deref(), Some("1 girl"));
    }

    #[test]
    fn keep_case_is_normalise_before_lowercasing() {
        for raw in [
            "Long_Hair",
            " Saber_\\(Fate\\) ",
            "O_O",
            "^_^",
            "No_Humans",
            "_",
            "ÀB_c",
        ] {
            assert_eq!(
                normalise_keep_case(raw).map(|t| t.to_lowercase()),
                normalise(raw),
                "{raw}"
            );
        }
        assert_eq!(
            normalise_keep_case("Long_Hair").as_deref(),
            Some("Long Hair")
        );
        assert_eq!(normalise_keep_case("O_O").as_deref(), Some("O_O"));
    }

    #[test]
    fn unescapes() {
        assert_eq!(
            normalise(r"saber_\(fate\)").as_deref(),
            Some("saber (fate)")
        );
        assert_eq!(
            normalise(r"rem \(re\:zero\)").as_deref(),
            Some("rem (re:zero)")
        );
        assert_eq!(normalise(r"a\\b").as_deref(), Some(r"a\b"));
        assert_eq!(normalise(r"keep\n").as_deref(), Some(r"keep\n"));
    }

    #[test]
    fn parses_lists() {
        assert_eq!(
            parse_list("1girl, Long_Hair,  smile,,\nsmile, ^_^\n", ","),
            vec!["1girl", "long hair", "smile", "^_^"]
        );
    }

    proptest::proptest! {
        /// Normalising any text gives a trimmed, non-empty, idempotent tag, or nothing.
        #[test]
        fn normalises_any_text(raw in crate::testing::hostile_text()) {
            if let Some(t) = normalise(&raw) {
                proptest::prop_assert!(!t.is_empty());
                proptest::prop_assert_eq!(t.trim(), t.as_str());
                proptest::prop_assert_eq!(normalise_keep_case(&raw).map(|k| k.to_lowercase()), Some(t));
            }
            let listed = parse_list(&raw, ",");
            proptest::prop_assert!(listed.iter().all(|t| !t.is_empty() && !t.contains('\n')));
        }
    }

    #[test]
    fn aliases_normalise_both_sides() {
        let a = Aliases::from_pairs([("Redhead", "red_hair")]);
        assert_eq!(a.apply("redhead".into()), "red hair");
        assert_eq!(a.apply("blue eyes".into()), "blue eyes");
    }
}
