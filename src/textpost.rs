//! Text post-processing: from the tags a generative model (LLM or VLM) wrote to the tags a
//! sidecar gets. Pure, apart from reading a wordlist file once in [`TextPost::prepare`].
//!
//! A [`TextPost`] block is YAML configuration; [`TextPost::prepare`] compiles it once per
//! variant into a [`Prepared`], whose [`Prepared::apply`] takes one image's `(tag, score)`
//! pairs in model order. Stages, in order:
//!
//! 1. **replace**: each `replace` rule, in order, rewrites the raw tag (literal substring, or
//!    `/regex/` with `$1` captures); a tag left empty is dropped.
//! 2. **normalise**: [`crate::tags::normalise`] gives the tag's key (lowercase, `_` → space,
//!    kaomoji kept). Every later comparison uses keys, whatever the output spelling.
//! 3. **aliases**: an alias key becomes its canonical tag (one step, no chains).
//! 4. **ban**: banned tags are dropped (and kaomoji, with `kaomoji: drop`). Model tags equal to
//!    a trigger word are dropped here too: the trigger word is put in front in step 9.
//! 5. **wordlist**: with a wordlist, only tags on it are kept.
//! 6. **dedupe**: a repeated tag keeps its first place and the highest of its scores.
//! 7. **order**: as the model wrote them, alphabetical, or by score.
//! 8. **max_tags**: the first `max_tags` tags are kept (trigger words are not counted).
//! 9. **trigger words** go in front, written exactly as configured, with score 1.
//! 10. **rendering**: each tag is written with the configured case, underscores and kaomoji.
//!
//! Combining several variants' outputs is [`crate::ensemble`]'s job; thresholds on classifier
//! scores are [`crate::postprocess`]'s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::postprocess::Excluder;
use crate::tags::{is_kaomoji, normalise, normalise_keep_case};

/// Post-processing of a generative model's tags (a variant's `textpost:` block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TextPost {
    /// Tags never kept: a tag (compared after normalisation), or a `/regex/` matched on the
    /// normalised tag (`/^(image|photo) of/`). Applied after `aliases`.
    pub ban: Vec<String>,
    /// Rewrites applied, in order, to each raw tag before anything else. A tag left empty is
    /// dropped.
    pub replace: Vec<Replace>,
    /// `alias: canonical` pairs applied after `replace` (both sides are normalised for
    /// matching; the canonical tag is written as given here).
    pub aliases: BTreeMap<String, String>,
    /// Keep only these tags: an inline list, or the path of a file with one tag a line or
    /// comma-separated tags (relative to this config file). Trigger words are always kept.
    pub wordlist: Option<Wordlist>,
    /// Keep at most this many tags after ordering (trigger words come on top).
    pub max_tags: Option<usize>,
    /// Tags put in front of every output, in this order, written exactly as given. Never
    /// dropped by `ban`, `wordlist` or `max_tags`; a model tag equal to one is not repeated.
    pub trigger_words: Vec<String>,
    /// How multiword tags are written in the output (default `spaces`). Matching always
    /// compares normalised tags.
    pub underscores: Underscores,
    /// What to do with kaomoji such as `^_^` (default `keep`).
    pub kaomoji: Kaomoji,
    /// Output order (default `as_is`).
    pub order: Order,
    /// Drop repeated tags (default true); the first place and the highest score are kept.
    pub dedupe: bool,
    /// Write tags in lowercase (default true); otherwise the model's case is kept.
    pub lowercase: bool,
}

impl Default for TextPost {
    fn default() -> TextPost {
        TextPost {
            ban: Vec::new(),
            replace: Vec::new(),
            aliases: BTreeMap::new(),
            wordlist: None,
            max_tags: None,
            trigger_words: Vec::new(),
            underscores: Underscores::Spaces,
            kaomoji: Kaomoji::Keep,
            order: Order::AsIs,
            dedupe: true,
            lowercase: true,
        }
    }
}

/// One rewrite of the raw tag text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    /// A literal substring (case-sensitive), or a `/regex/` (`/(?i)…/` ignores case).
    pub from: String,
    /// The replacement (default empty). For a regex, `$1` or `${1}` insert a capture group.
    #[serde(default)]
    pub to: String,
}

/// A wordlist: tags written inline, or a file of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, expecting = "a list of tags, or the path of a wordlist file")]
pub enum Wordlist {
    /// The tags themselves.
    Tags(Vec<String>),
    /// A file with one tag a line, or comma-separated tags; relative to the config file.
    File(String),
}

/// How multiword tags are written in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Underscores {
    /// As the model wrote them (trimmed, whitespace runs collapsed).
    Keep,
    /// `long hair` (kaomoji keep their underscores).
    Spaces,
    /// `long_hair`.
    Underscores,
}

/// What to do with kaomoji (`^_^`, `;_;`, `o_o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kaomoji {
    /// Keep them, with their underscores even when `underscores: spaces`.
    Keep,
    /// Drop them, before `max_tags` counts.
    Drop,
}

/// Output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// As the model wrote them.
    AsIs,
    /// Alphabetical by normalised tag.
    Alphabetical,
    /// Highest score first; ties keep the model's order.
    Score,
}

/// Errors in a `textpost:` block, found by [`TextPost::prepare`].
#[derive(Debug, thiserror::Error)]
pub enum TextPostError {
    #[error("`replace[{index}]`: `from` is empty")]
    EmptyReplace { index: usize },
    #[error("`replace[{index}]`: `{pattern}` is not a valid regular expression")]
    BadReplace {
        index: usize,
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("`ban` pattern `{pattern}` is not a valid regular expression: {reason}")]
    BadBan { pattern: String, reason: String },
    #[error("`aliases`: `{alias}: {canonical}` has an empty side")]
    EmptyAlias { alias: String, canonical: String },
    #[error("`trigger_words[{index}]` is empty")]
    EmptyTrigger { index: usize },
    #[error("cannot read the wordlist {}", path.display())]
    Wordlist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TextPost {
    /// Whether this block asks for nothing beyond the defaults (so it can be left out when
    /// serialising). The defaults still normalise, dedupe and lowercase.
    pub fn is_noop(&self) -> bool {
        *self == TextPost::default()
    }

    /// Compiles the rules and loads the wordlist; `base` is the folder relative wordlist
    /// paths are resolved against (the config file's).
    ///
    /// Errors ([`TextPostError`]) name the bad regex, empty rule or unreadable wordlist file.
    pub fn prepare(&self, base: &Path) -> anyhow::Result<Prepared> {
        let ban = Excluder::new(&self.ban).map_err(|e| TextPostError::BadBan {
            pattern: e.pattern,
            reason: e.reason,
        })?;
        let wordlist = match &self.wordlist {
            Some(w) => Some(w.load(base)?),
            None => None,
        };
        Ok(Prepared {
            replace: compile_replace(&self.replace)?,
            aliases: compile_aliases(&self.aliases)?,
            ban,
            wordlist,
            triggers: compile_triggers(&self.trigger_words)?,
            settings: self.clone(),
        })
    }
}

impl Wordlist {
    /// The normalised tags of this wordlist; a relative file path is resolved against `base`.
    ///
    /// Errors: [`TextPostError::Wordlist`] when the file cannot be read.
    pub fn load(&self, base: &Path) -> anyhow::Result<HashSet<String>> {
        match self {
            Wordlist::Tags(tags) => Ok(tags.iter().filter_map(|t| normalise(t)).collect()),
            Wordlist::File(file) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| TextPostError::Wordlist { path, source })?;
                Ok(crate::tags::parse_list(&text, ",").into_iter().collect())
            }
        }
    }
}

/// A compiled `replace` rule.
enum Rule {
    Literal { from: String, to: String },
    Pattern { re: regex::Regex, to: String },
}

impl Rule {
    fn apply(&self, text: String) -> String {
        match self {
            Rule::Literal { from, to } => text.replace(from.as_str(), to),
            Rule::Pattern { re, to } => re.replace_all(&text, to.as_str()).into_owned(),
        }
    }
}

fn compile_replace(rules: &[Replace]) -> Result<Vec<Rule>, TextPostError> {
    let compile = |(index, r): (usize, &Replace)| {
        if r.from.is_empty() {
            return Err(TextPostError::EmptyReplace { index });
        }
        let to = r.to.clone();
        match regex_body(&r.from) {
            Some(p) => regex::Regex::new(p)
                .map(|re| Rule::Pattern { re, to })
                .map_err(|source| TextPostError::BadReplace {
                    index,
                    pattern: r.from.clone(),
                    source,
                }),
            None => Ok(Rule::Literal {
                from: r.from.clone(),
                to,
            }),
        }
    };
    rules.iter().enumerate().map(compile).collect()
}

/// The pattern inside `/…/`, or `None` for a literal (the same form as `ban`).
fn regex_body(s: &str) -> Option<&str> {
    s.strip_prefix('/').and_then(|p| p.strip_suffix('/'))
}

/// Alias key → (canonical key, canonical as written).
fn compile_aliases(
    aliases: &BTreeMap<String, String>,
) -> Result<HashMap<String, (String, String)>, TextPostError> {
    aliases
        .iter()
        .map(
            |(alias, canonical)| match (normalise(alias), normalise(canonical)) {
                (Some(a), Some(c)) => Ok((a, (c, canonical.trim().to_string()))),
                _ => Err(TextPostError::EmptyAlias {
                    alias: alias.clone(),
                    canonical: canonical.clone(),
                }),
            },
        )
        .collect()
}

/// Trigger words, trimmed and deduplicated (by key), with their keys.
fn compile_triggers(words: &[String]) -> Result<Vec<(String, String)>, TextPostError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (index, w) in words.iter().enumerate() {
        let key = normalise(w).ok_or(TextPostError::EmptyTrigger { index })?;
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, w.trim().to_string()));
        }
    }
    Ok(out)
}

/// A [`TextPost`] ready to apply: regexes compiled, wordlist loaded. Built once per variant.
pub struct Prepared {
    replace: Vec<Rule>,
    aliases: HashMap<String, (String, String)>,
    ban: Excluder,
    wordlist: Option<HashSet<String>>,
    /// (key, as written) in output order.
    triggers: Vec<(String, String)>,
    settings: TextPost,
}

/// A tag on its way through the stages.
struct Item {
    /// The normalised tag: what every comparison uses.
    key: String,
    /// The text the output is rendered from (after `replace`, or the alias's canonical tag).
    source: String,
    score: f32,
}

impl Prepared {
    /// Post-processes one image's `(tag, score)` pairs, given in model order, into the final
    /// list (stages in the module doc). Trigger words have score 1.
    pub fn apply(&self, tags: Vec<(String, f32)>) -> Vec<(String, f32)> {
        let mut items: Vec<Item> = tags
            .into_iter()
            .filter_map(|(raw, score)| self.item(raw, score))
            .filter(|i| self.keeps(&i.key))
            .collect();
        if self.settings.dedupe {
            items = dedupe(items);
        }
        self.sort(&mut items);
        if let Some(n) = self.settings.max_tags {
            items.truncate(n);
        }
        let triggers = self.triggers.iter().map(|(_, w)| (w.clone(), 1.0));
        triggers
            .chain(items.iter().map(|i| (self.render(i), i.score)))
            .collect()
    }

    /// Stages 1–3: replace, normalise, aliases. `None` when the tag is left empty.
    fn item(&self, raw: String, score: f32) -> Option<Item> {
        let source = self.replace.iter().fold(raw, |text, rule| rule.apply(text));
        let key = normalise(&source)?;
        Some(match self.aliases.get(&key) {
            Some((key, canonical)) => Item {
                key: key.clone(),
                source: canonical.clone(),
                score,
            },
            None => Item { key, source, score },
        })
    }

    /// Stages 4–5: ban (kaomoji and trigger words included) and wordlist.
    fn keeps(&self, key: &str) -> bool {
        let banned = self.ban.excludes(key)
            || (self.settings.kaomoji == Kaomoji::Drop && is_kaomoji(key))
            || self.triggers.iter().any(|(k, _)| k == key);
        let listed = self.wordlist.as_ref().is_none_or(|w| w.contains(key));
        !banned && listed
    }

    /// Stage 7. Both sorts are stable, so ties keep the model's order.
    fn sort(&self, items: &mut [Item]) {
        match self.settings.order {
            Order::AsIs => {}
            Order::Alphabetical => items.sort_by(|a, b| a.key.cmp(&b.key)),
            Order::Score => items.sort_by(|a, b| b.score.total_cmp(&a.score)),
        }
    }

    /// Stage 10: the output text of one tag.
    fn render(&self, item: &Item) -> String {
        let text = match self.settings.underscores {
            Underscores::Keep => item.source.split_whitespace().collect::<Vec<_>>().join(" "),
            Underscores::Spaces => self.spaced(item),
            Underscores::Underscores => self.spaced(item).replace(' ', "_"),
        };
        if self.settings.lowercase {
            text.to_lowercase()
        } else {
            text
        }
    }

    /// The normalised spelling, keeping case unless lowercasing (kaomoji keep underscores).
    fn spaced(&self, item: &Item) -> String {
        if self.settings.lowercase {
            return item.key.clone();
        }
        normalise_keep_case(&item.source).unwrap_or_else(|| item.key.clone())
    }
}

/// Stage 6: the first occurrence keeps its place and takes the highest score.
fn dedupe(items: Vec<Item>) -> Vec<Item> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Item> = Vec::with_capacity(items.len());
    for item in items {
        match seen.get(&item.key) {
            Some(&i) => out[i].score = out[i].score.max(item.score),
            None => {
                seen.insert(item.key.clone(), out.len());
                out.push(item);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[(&str, f32)]) -> Vec<(String, f32)> {
        list.iter().map(|(t, s)| (t.to_string(), *s)).collect()
    }

    fn run(tp: &TextPost, list: &[(&str, f32)]) -> Vec<(String, f32)> {
        tp.prepare(Path::new(".")).unwrap().apply(tags(list))
    }

    fn names(out: &[(String, f32)]) -> Vec<&str> {
        out.iter().map(|(t, _)| t.as_str()).collect()
    }

    fn parse(yaml: &str) -> TextPost {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_normalise_and_dedupe() {
        let tp = TextPost::default();
        assert!(tp.is_noop());
        let out = run(
            &tp,
            &[
                ("Long_Hair", 0.5),
                (" smile ", 0.7),
                ("long hair", 0.9),
                ("", 1.0),
                ("^_^", 0.3),
            ],
        );
        assert_eq!(
            out,
            tags(&[("long hair", 0.9), ("smile", 0.7), ("^_^", 0.3)])
        );
    }

    #[test]
    fn empty_input_gives_only_trigger_words() {
        assert!(run(&TextPost::default(), &[]).is_empty());
        let tp = TextPost {
            trigger_words: vec!["ohwx".into()],
            ..TextPost::default()
        };
        assert_eq!(run(&tp, &[]), tags(&[("ohwx", 1.0)]));
    }

    #[test]
    fn yaml_defaults_and_unknown_fields() {
        assert_eq!(parse("{}"), TextPost::default());
        let tp = parse(
            "order: score\nunderscores: underscores\nkaomoji: drop\nmax_tags: 3\n\
             replace: [{from: '/^a (.*)$/', to: '$1'}, {from: ' photo'}]\n\
             wordlist: [cat, dog]\n",
        );
        assert_eq!(tp.order, Order::Score);
        assert_eq!(tp.underscores, Underscores::Underscores);
        assert_eq!(tp.kaomoji, Kaomoji::Drop);
        assert_eq!(tp.replace[1].to, "");
        assert_eq!(
            tp.wordlist,
            Some(Wordlist::Tags(vec!["cat".into(), "dog".into()]))
        );
        assert!(!tp.is_noop());
        assert_eq!(
            parse("wordlist: tags.txt").wordlist,
            Some(Wordlist::File("tags.txt".into()))
        );
        assert!(serde_yaml::from_str::<TextPost>("max_tag: 3").is_err());
        assert!(serde_yaml::from_str::<TextPost>("order: random").is_err());
        let round: TextPost = serde_yaml::from_str(&serde_yaml::to_string(&tp).unwrap()).unwrap();
        assert_eq!(round, tp);
    }

    #[test]
    fn replace_literal_then_regex_with_captures() {
        let tp = parse(
            "replace:\n\
             - {from: 'Tag: ', to: ''}\n\
             - {from: '/^(\\w+) colou?red (\\w+)$/', to: '$1 $2'}\n\
             - {from: '/(?i)^a photo of /'}\n",
        );
        let out = run(
            &tp,
            &[
                ("Tag: red colored dress", 0.9),
                ("A Photo of cat", 0.8),
                ("blue coloured sky", 0.7),
                ("tag: kept", 0.6),
            ],
        );
        assert_eq!(names(&out), ["red dress", "cat", "blue sky", "tag: kept"]);
    }

    #[test]
    fn replace_to_empty_drops_the_tag() {
        let tp = parse("replace: [{from: '/^(none|n/a)$/'}, {from: '...'}]");
        let out = run(
            &tp,
            &[("none", 0.9), ("...", 0.8), ("n/a", 0.5), ("cat", 0.1)],
        );
        assert_eq!(names(&out), ["cat"]);
    }

    #[test]
    fn replace_runs_before_normalisation() {
        // `_` is still there for the rule to see.
        let tp = parse("replace: [{from: '_(cat)', to: ' (animal)'}]");
        assert_eq!(
            names(&run(&tp, &[("black_(cat)", 1.0)])),
            ["black (animal)"]
        );
    }

    #[test]
    fn aliases_after_replace_and_before_ban() {
        let tp = parse(
            "replace: [{from: '/s$/'}]\n\
             aliases: {Kitten: Cat, Puppy: dog}\n\
             ban: [dog]\n",
        );
        let out = run(&tp, &[("kittens", 0.9), ("puppies", 0.8), ("puppys", 0.7)]);
        // `puppies` → `puppie` (no alias); `puppys` → `puppy` → `dog` → banned.
        assert_eq!(names(&out), ["cat", "puppie"]);
    }

    #[test]
    fn aliases_merge_with_dedupe() {
        let tp = parse("aliases: {redhead: red hair}");
        let out = run(&tp, &[("red_hair", 0.4), ("smile", 0.5), ("Redhead", 0.8)]);
        assert_eq!(out, tags(&[("red hair", 0.8), ("smile", 0.5)]));
    }

    #[test]
    fn ban_literal_and_regex_on_normalised_tags() {
        let tp = parse("ban: [Simple_Background, '/^(no|bad) /', '/\\d+ ?girls?/']");
        let out = run(
            &tp,
            &[
                ("simple background", 0.9),
                ("no_humans", 0.8),
                ("1girl", 0.7),
                ("2 girls", 0.7),
                ("bad hands", 0.6),
                ("nobody", 0.5),
            ],
        );
        assert_eq!(names(&out), ["nobody"]);
    }

    #[test]
    fn wordlist_inline_keeps_only_listed_tags() {
        let tp = parse("wordlist: [Long_Hair, smile]\ntrigger_words: [ohwx]");
        let out = run(&tp, &[("long hair", 0.9), ("hat", 0.8), ("SMILE", 0.7)]);
        assert_eq!(names(&out), ["ohwx", "long hair", "smile"]);
    }

    #[test]
    fn wordlist_file_lines_or_commas_relative_to_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("words.txt"),
            "\u{feff}long_hair\r\nsmile, hat\n\n",
        )
        .unwrap();
        let w = Wordlist::File("words.txt".into());
        let set = w.load(dir.path()).unwrap();
        let expected: HashSet<String> = ["long hair", "smile", "hat"].map(String::from).into();
        assert_eq!(set, expected);
        let abs = Wordlist::File(dir.path().join("words.txt").display().to_string());
        assert_eq!(abs.load(Path::new("/elsewhere")).unwrap(), expected);
        let tp = TextPost {
            wordlist: Some(w),
            ..TextPost::default()
        };
        let out = tp
            .prepare(dir.path())
            .unwrap()
            .apply(tags(&[("cat", 1.0), ("hat", 0.5)]));
        assert_eq!(names(&out), ["hat"]);
    }

    #[test]
    fn missing_wordlist_names_the_file() {
        let tp = parse("wordlist: missing-words.txt");
        let err = tp.prepare(Path::new("/nonexistent/dir")).err().unwrap();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent/dir/missing-words.txt"), "{msg}");
    }

    #[test]
    fn empty_wordlist_keeps_nothing_but_trigger_words() {
        let tp = parse("wordlist: []\ntrigger_words: [ohwx]");
        assert_eq!(names(&run(&tp, &[("cat", 1.0)])), ["ohwx"]);
    }

    #[test]
    fn bad_rules_are_named() {
        let cases = [
            ("replace: [{from: '/(/'}]", "`replace[0]`: `/(/`"),
            (
                "replace: [{from: a}, {from: ''}]",
                "`replace[1]`: `from` is empty",
            ),
            ("ban: [ok, '/[z-a]/']", "`ban` pattern `/[z-a]/`"),
            ("aliases: {cat: '  '}", "`aliases`: `cat:   `"),
            ("trigger_words: [a, '_']", "`trigger_words[1]` is empty"),
        ];
        for (yaml, expected) in cases {
            let err = parse(yaml).prepare(Path::new(".")).err().unwrap();
            assert!(err.to_string().contains(expected), "{yaml}: {err}");
        }
    }

    #[test]
    fn dedupe_off_keeps_repeats() {
        let tp = parse("dedupe: false");
        let out = run(&tp, &[("cat", 0.2), ("Cat", 0.9)]);
        assert_eq!(out, tags(&[("cat", 0.2), ("cat", 0.9)]));
    }

    #[test]
    fn orders() {
        let input = [("b", 0.5), ("c", 0.9), ("a", 0.5), ("d", 0.1)];
        assert_eq!(
            names(&run(&TextPost::default(), &input)),
            ["b", "c", "a", "d"]
        );
        let alpha = parse("order: alphabetical");
        assert_eq!(names(&run(&alpha, &input)), ["a", "b", "c", "d"]);
        // Ties (`b`, `a`) keep the model's order.
        let score = parse("order: score");
        assert_eq!(names(&run(&score, &input)), ["c", "b", "a", "d"]);
    }

    #[test]
    fn max_tags_after_order_without_counting_trigger_words() {
        let tp = parse("order: score\nmax_tags: 2\ntrigger_words: [ohwx, style x]");
        let out = run(&tp, &[("a", 0.1), ("b", 0.9), ("c", 0.5)]);
        assert_eq!(
            out,
            tags(&[("ohwx", 1.0), ("style x", 1.0), ("b", 0.9), ("c", 0.5)])
        );
    }

    #[test]
    fn max_tags_zero_keeps_only_trigger_words() {
        assert!(run(&parse("max_tags: 0"), &[("a", 1.0)]).is_empty());
        let tp = parse("max_tags: 0\ntrigger_words: [ohwx]");
        assert_eq!(names(&run(&tp, &[("a", 1.0)])), ["ohwx"]);
    }

    #[test]
    fn trigger_words_already_present_are_not_repeated_nor_counted() {
        let tp = parse(
            "trigger_words: [My_LoRA, ohwx, my lora]\nmax_tags: 1\n\
             ban: [ohwx]\nwordlist: [cat]\nunderscores: spaces",
        );
        let out = run(
            &tp,
            &[("my lora", 0.3), ("OHWX", 0.9), ("cat", 0.8), ("dog", 0.7)],
        );
        // Written as configured (underscores and case kept), deduplicated, never banned.
        assert_eq!(out, tags(&[("My_LoRA", 1.0), ("ohwx", 1.0), ("cat", 0.8)]));
    }

    #[test]
    fn underscores_rendering() {
        let input = [
            ("Long_Hair", 0.9),
            ("blue  eyes", 0.8),
            ("^_^", 0.7),
            (";_;", 0.6),
        ];
        let keep = parse("underscores: keep");
        assert_eq!(
            names(&run(&keep, &input)),
            ["long_hair", "blue eyes", "^_^", ";_;"]
        );
        let spaces = parse("underscores: spaces");
        assert_eq!(
            names(&run(&spaces, &input)),
            ["long hair", "blue eyes", "^_^", ";_;"]
        );
        let under = parse("underscores: underscores");
        assert_eq!(
            names(&run(&under, &input)),
            ["long_hair", "blue_eyes", "^_^", ";_;"]
        );
    }

    #[test]
    fn kaomoji_drop_before_max_tags() {
        let tp = parse("kaomoji: drop\nmax_tags: 2");
        let out = run(
            &tp,
            &[("^_^", 0.9), ("smile", 0.8), ("o_O", 0.7), ("cat", 0.6)],
        );
        assert_eq!(names(&out), ["smile", "cat"]);
    }

    #[test]
    fn lowercase_off_keeps_the_writers_case() {
        let tp = parse("lowercase: false");
        let input = [
            ("Hatsune_Miku", 0.9),
            ("hatsune miku", 0.8),
            ("O_O", 0.7),
            (r"Saber_\(Fate\)", 0.6),
        ];
        // Duplicates still compare in lowercase; the first spelling wins.
        assert_eq!(
            names(&run(&tp, &input)),
            ["Hatsune Miku", "O_O", "Saber (Fate)"]
        );
        let under =
            parse("lowercase: false\nunderscores: underscores\naliases: {miku: Hatsune_Miku}");
        assert_eq!(names(&run(&under, &[("Miku", 1.0)])), ["Hatsune_Miku"]);
        let keep = parse("lowercase: false\nunderscores: keep");
        assert_eq!(
            names(&run(&keep, &[(" Hatsune_Miku ", 1.0)])),
            ["Hatsune_Miku"]
        );
    }

    proptest::proptest! {
        /// Any tags a model writes go through every stage without a panic; what comes out is
        /// non-empty, deduplicated and capped.
        #[test]
        fn any_text_through_every_stage(
            raw in proptest::collection::vec(crate::testing::hostile_text(), 0..12),
            under in 0..3usize,
        ) {
            let yaml = format!(
                "replace: [{{from: '/(?i)^tag: /'}}, {{from: '🐥', to: ''}}]\n\
                 aliases: {{é: e}}\nban: ['/^\\W+$/']\nmax_tags: 5\ntrigger_words: [ohwx]\n\
                 underscores: {}\nlowercase: false\n",
                ["keep", "spaces", "underscores"][under]
            );
            let tp = parse(&yaml);
            let input: Vec<(String, f32)> = raw.into_iter().map(|t| (t, 0.5)).collect();
            let out = tp.prepare(Path::new(".")).unwrap().apply(input);
            proptest::prop_assert!(out.len() <= 6);
            proptest::prop_assert_eq!(out[0].0.as_str(), "ohwx");
            let mut seen = HashSet::new();
            for (t, _) in &out {
                proptest::prop_assert!(!t.is_empty());
                proptest::prop_assert!(seen.insert(normalise(t).unwrap_or_default()));
            }
        }
    }

    #[test]
    fn all_stages_together() {
        let tp = parse(
            "replace: [{from: '/^tag: /'}]\n\
             aliases: {kitty: cat}\n\
             ban: ['/^text/']\n\
             order: score\n\
             max_tags: 2\n\
             trigger_words: [ohwx]\n\
             underscores: underscores\n",
        );
        let out = run(
            &tp,
            &[
                ("tag: Kitty", 0.6),
                ("text_overlay", 0.99),
                ("sitting on chair", 0.7),
                ("cat", 0.65),
                ("window", 0.2),
            ],
        );
        assert_eq!(
            out,
            tags(&[("ohwx", 1.0), ("sitting_on_chair", 0.7), ("cat", 0.65)])
        );
    }
}
