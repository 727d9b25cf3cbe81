//! What a generative model's text becomes: a tag list, a caption, JSON (checked against a
//! schema), a judge's choice or a score on a scale. Parsing forgives the usual wrapping (code
//! fences, "Tags:" labels, numbering, bullets, quotes, trailing punctuation) and never guesses:
//! text it cannot read is an error the runner records, never an empty answer or a zero.

use serde_json::Value;

/// Removes a surrounding Markdown code fence (with or without a language) and trims.
pub fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let body = match rest.find('\n') {
            Some(i) => &rest[i + 1..],
            None => rest,
        };
        let body = body.trim_end();
        return body.strip_suffix("```").unwrap_or(body).trim();
    }
    t
}

/// Removes a leading label such as `Tags:` or `Caption -` (case-insensitive).
fn strip_label<'a>(text: &'a str, labels: &[&str]) -> &'a str {
    let t = text.trim_start();
    for l in labels {
        if let Some(rest) = strip_prefix_ignore_ascii_case(t, l) {
            let rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix([':', '-', '=']) {
                return r.trim_start();
            }
        }
    }
    t
}

/// Strips list numbering and bullets: `1.`, `2)`, `(3)`, `-`, `*`, `•`.
fn strip_bullet(item: &str) -> &str {
    let t = item.trim();
    let t = t.trim_start_matches(['-', '*', '•', '·', '–']).trim_start();
    let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 && digits <= 3 {
        let rest = &t[digits..];
        if let Some(r) = rest.strip_prefix(['.', ')', ':']) {
            return r.trim_start();
        }
    }
    if let Some(r) = t.strip_prefix('(') {
        let d = r.chars().take_while(|c| c.is_ascii_digit()).count();
        if d > 0 {
            if let Some(r2) = r[d..].strip_prefix(')') {
                return r2.trim_start();
            }
        }
    }
    t
}

fn clean_item(item: &str) -> String {
    let t = strip_bullet(item);
    let t = t.trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c.is_whitespace());
    let t = t.trim_end_matches(['.', ',', ';', ':', '!']);
    t.trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c.is_whitespace())
        .to_string()
}

/// A tag list: a JSON array of strings, or items separated by commas, semicolons or lines.
/// Order kept, duplicates dropped (case-insensitive); an error when no tag is left.
pub fn parse_tags(text: &str) -> Result<Vec<String>, String> {
    let body = strip_label(strip_fences(text), &["tags", "keywords", "labels"]);
    let items: Vec<String> = match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(clean_item))
            .collect(),
        Ok(Value::Object(o)) => match o.get("tags") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(clean_item))
                .collect(),
            _ => return Err("a JSON object without a `tags` list".into()),
        },
        _ => body.split(['\n', ',', ';']).map(clean_item).collect(),
    };
    let mut seen = std::collections::HashSet::new();
    let tags: Vec<String> = items
        .into_iter()
        .filter(|t| !t.is_empty())
        .filter(|t| seen.insert(t.to_lowercase()))
        .collect();
    if tags.is_empty() {
        return Err(format!("no tags in the answer: {}", excerpt(text)));
    }
    Ok(tags)
}

/// A caption: fences, a `Caption:` label and surrounding quotes removed, whitespace collapsed.
pub fn parse_caption(text: &str) -> Result<String, String> {
    let body = strip_label(strip_fences(text), &["caption", "description"]);
    let body = body
        .trim()
        .trim_matches(|c| c == '"' || c == '“' || c == '”');
    let caption = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if caption.is_empty() {
        return Err("the answer is empty".into());
    }
    Ok(caption)
}

/// The first JSON object or array in the text (fences and prose around it allowed), checked
/// against `schema` when given (a subset of JSON Schema: `type`, `properties`, `required`,
/// `items`, `enum`, `minimum`, `maximum`).
pub fn parse_json(text: &str, schema: Option<&Value>) -> Result<Value, String> {
    let body = strip_fences(text);
    let value = serde_json::from_str::<Value>(body)
        .ok()
        .or_else(|| first_json(body))
        .ok_or_else(|| format!("no JSON in the answer: {}", excerpt(text)))?;
    if let Some(s) = schema {
        check(&value, s, "$")?;
    }
    Ok(value)
}

/// Scans for the first `{` or `[` that starts a complete JSON value.
fn first_json(text: &str) -> Option<Value> {
    for (i, c) in text.char_indices() {
        if c == '{' || c == '[' {
            let mut de = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
            if let Some(Ok(v)) = de.next() {
                return Some(v);
            }
        }
    }
    None
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn check(v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    match schema.get("type") {
        Some(Value::String(t)) if !type_ok(v, t) => {
            return Err(format!("{at}: expected {t}, got {v}"));
        }
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(|t| type_ok(v, t)) => {
            return Err(format!(
                "{at}: expected one of {}, got {v}",
                Value::Array(ts.clone())
            ));
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(v) {
            return Err(format!(
                "{at}: {v} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    if let Some(x) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if x < min {
                return Err(format!("{at}: {x} is below the minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if x > max {
                return Err(format!("{at}: {x} is above the maximum {max}"));
            }
        }
    }
    // `required` holds with or without `properties` (a schema may list only what it needs).
    if let (Some(obj), Some(req)) = (
        v.as_object(),
        schema.get("required").and_then(Value::as_array),
    ) {
        for k in req.iter().filter_map(Value::as_str) {
            if !obj.contains_key(k) {
                return Err(format!("{at}: missing `{k}`"));
            }
        }
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema.get("properties")) {
        if let Some(props) = props.as_object() {
            for (k, s) in props {
                if let Some(x) = obj.get(k) {
                    check(x, s, &format!("{at}.{k}"))?;
                }
            }
        }
    }
    if let (Some(arr), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, x) in arr.iter().enumerate() {
            check(x, items, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// A judge's verdict among named choices (answer-after-reasoning): a line `Verdict: X` (or
/// `Answer:`, `Final answer:`, `Rating:`) wins; otherwise the choice named last in the text
/// (whole words, case-insensitive). Returns the choice's name and score.
pub fn parse_choice(text: &str, choices: &[(String, f64)]) -> Result<(String, f64), String> {
    let body = strip_fences(text);
    let find_last = |hay: &str| -> Option<(usize, &(String, f64))> {
        let lower = hay.to_lowercase();
        choices
            .iter()
            .filter_map(|c| last_word(&lower, &c.0.to_lowercase()).map(|p| (p, c)))
            // the latest mention; on a tie (one choice inside another), the longer name
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1 .0.len().cmp(&b.1 .0.len())))
    };
    for line in body.lines().rev() {
        let l = line.trim().trim_start_matches(['*', '#', ' ']);
        for label in ["final answer", "verdict", "answer", "rating", "choice"] {
            // Compared in place (never via a lowercased copy, whose byte offsets can differ).
            let Some(rest) = strip_prefix_ignore_ascii_case(l, label) else {
                continue;
            };
            if rest.trim_start().starts_with([':', '-', '=']) {
                if let Some((_, c)) = find_last(rest) {
                    return Ok(c.clone());
                }
            }
        }
    }
    find_last(body).map(|(_, c)| c.clone()).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|c| c.0.as_str()).collect();
        format!(
            "no verdict among {} in the answer: {}",
            names.join(", "),
            excerpt(text)
        )
    })
}

/// `text` without a leading ASCII `prefix` compared case-insensitively; `None` when it does
/// not start with it (also when the prefix's length ends inside a multi-byte character).
fn strip_prefix_ignore_ascii_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The byte offset of the last whole-word occurrence of `word` in `hay` (both lower-case).
fn last_word(hay: &str, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut best = None;
    let mut from = 0;
    while let Some(i) = hay[from..].find(word) {
        let start = from + i;
        let end = start + word.len();
        let before_ok = hay[..start].chars().next_back().is_none_or(|c| !is_word(c));
        let after_ok = hay[end..].chars().next().is_none_or(|c| !is_word(c));
        if before_ok && after_ok {
            best = Some(start);
        }
        from = start + word.len().max(1);
        if from >= hay.len() {
            break;
        }
    }
    best
}

/// A score on a numeric scale: the last number in the text within [min, max] (`7/10` reads 7;
/// `Score: 4.5` reads 4.5); an error when there is none.
pub fn parse_scale(text: &str, min: f64, max: f64) -> Result<f64, String> {
    let body = strip_fences(text);
    let mut found = None;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_ascii_digit() || (c == '-' && bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let s = body[start..i].trim_end_matches('.');
            // "7/10": the denominator is not a score
            let is_denominator = start > 0 && bytes[start - 1] == b'/';
            if let Ok(x) = s.parse::<f64>() {
                if !is_denominator && x >= min && x <= max {
                    found = Some(x);
                }
            }
        } else {
            i += 1;
        }
    }
    found.ok_or_else(|| {
        format!(
            "no score in [{min}, {max}] in the answer: {}",
            excerpt(text)
        )
    })
}

fn excerpt(text: &str) -> String {
    let t: String = text.trim().chars().take(80).collect();
    if text.trim().chars().count() > 80 {
        format!("{t:?}…")
    } else {
        format!("{t:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tags_in_every_usual_wrapping() {
        let want = v(&["1girl", "red hair", "smile"]);
        for text in [
            "1girl, red hair, smile",
            "Tags: 1girl, red hair, smile.",
            "```\n1girl, red hair, smile\n```",
            "```text\n1. 1girl\n2. red hair\n3) smile\n```",
            "- 1girl\n- red hair\n* smile",
            "[\"1girl\", \"red hair\", \"smile\"]",
            "{\"tags\": [\"1girl\", \"red hair\", \"smile\"]}",
            "1girl; red hair; smile;",
            "\"1girl\", 'red hair', `smile`",
            "1girl, red hair, smile, Smile, , ",
        ] {
            assert_eq!(parse_tags(text).unwrap(), want, "{text:?}");
        }
        assert!(parse_tags("").is_err());
        assert!(parse_tags("```\n```").is_err());
        assert!(parse_tags("{\"caption\": \"x\"}").is_err());
    }

    #[test]
    fn captions() {
        assert_eq!(
            parse_caption("Caption: \"A cat  sleeping\n on a sofa.\"").unwrap(),
            "A cat sleeping on a sofa."
        );
        assert_eq!(parse_caption("```\nA dog.\n```").unwrap(), "A dog.");
        assert!(parse_caption("   ").is_err());
    }

    #[test]
    fn json_with_a_schema() {
        let schema = json!({"type": "object", "required": ["caption", "tags"],
            "properties": {"caption": {"type": "string"},
                           "tags": {"type": "array", "items": {"type": "string"}},
                           "rating": {"enum": ["safe", "nsfw"]},
                           "score": {"type": "number", "minimum": 0, "maximum": 1}}});
        let ok = "Here you go:\n```json\n{\"caption\": \"a cat\", \"tags\": [\"cat\"], \"rating\": \"safe\"}\n```";
        assert_eq!(parse_json(ok, Some(&schema)).unwrap()["tags"][0], "cat");
        let prose = "Sure! {\"caption\": \"a cat\", \"tags\": [\"cat\"]} Hope it helps.";
        assert!(parse_json(prose, Some(&schema)).is_ok());
        for (bad, why) in [
            ("{\"caption\": \"a cat\"}", "missing `tags`"),
            (
                "{\"caption\": 3, \"tags\": []}",
                "$.caption: expected string",
            ),
            (
                "{\"caption\": \"c\", \"tags\": [1]}",
                "$.tags[0]: expected string",
            ),
            (
                "{\"caption\": \"c\", \"tags\": [], \"rating\": \"meh\"}",
                "is not one of",
            ),
            (
                "{\"caption\": \"c\", \"tags\": [], \"score\": 2}",
                "above the maximum",
            ),
            ("no json here", "no JSON"),
        ] {
            let e = parse_json(bad, Some(&schema)).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn verdicts_after_reasoning() {
        let choices = vec![
            ("good".to_string(), 1.0),
            ("ok".to_string(), 0.5),
            ("bad".to_string(), 0.0),
        ];
        let c = |t: &str| parse_choice(t, &choices).map(|x| x.0);
        // the verdict line wins over choices named in the reasoning
        assert_eq!(
            c("The caption is not bad and mostly good, but misses the hat.\nVerdict: ok").unwrap(),
            "ok"
        );
        assert_eq!(c("**Final answer:** Good").unwrap(), "good");
        // otherwise the last named
        assert_eq!(c("Not good. I'd say it is bad").unwrap(), "bad");
        // whole words only: "okay" and "goodness" are not choices
        assert!(c("okay, goodness").is_err());
        assert!(c("I cannot judge this.").is_err());
        assert_eq!(parse_choice("answer: ok", &choices).unwrap().1, 0.5);
    }

    #[test]
    fn labels_next_to_multibyte_characters() {
        // Byte offsets of the labels fall inside these characters (the temp_sweep panic).
        assert_eq!(
            parse_caption("A chick 🐥 on grass").unwrap(),
            "A chick 🐥 on grass"
        );
        assert_eq!(parse_caption("Descriptio🐥n").unwrap(), "Descriptio🐥n");
        assert_eq!(parse_tags("tag🐥, é").unwrap(), v(&["tag🐥", "é"]));
        assert_eq!(parse_tags("keywor🐥d").unwrap(), v(&["keywor🐥d"]));
        let choices = vec![("good".to_string(), 1.0), ("bad".to_string(), 0.0)];
        assert_eq!(parse_choice("verdic🐥t: bad", &choices).unwrap().0, "bad");
        assert_eq!(
            parse_choice("Verdict: 🐥 good", &choices).unwrap().0,
            "good"
        );
    }

    proptest::proptest! {
        /// Any text a model can write parses to a result or an error, never a panic, and
        /// every result keeps its promises.
        #[test]
        fn parsers_take_any_text(text in crate::testing::hostile_text()) {
            if let Ok(tags) = parse_tags(&text) {
                proptest::prop_assert!(!tags.is_empty());
                proptest::prop_assert!(tags.iter().all(|t| !t.is_empty()));
                let mut seen = std::collections::HashSet::new();
                proptest::prop_assert!(tags.iter().all(|t| seen.insert(t.to_lowercase())));
            }
            if let Ok(c) = parse_caption(&text) {
                proptest::prop_assert!(!c.is_empty() && c.trim() == c);
            }
            let schema = json!({"type": "object", "required": ["tags"]});
            if let Ok(v) = parse_json(&text, Some(&schema)) {
                proptest::prop_assert!(v.get("tags").is_some());
            }
            let choices = vec![
                ("good".to_string(), 1.0),
                ("é🐥".to_string(), 0.5),
                ("bad".to_string(), 0.0),
            ];
            if let Ok((name, _)) = parse_choice(&text, &choices) {
                proptest::prop_assert!(choices.iter().any(|c| c.0 == name));
            }
            if let Ok(x) = parse_scale(&text, -5.0, 10.0) {
                proptest::prop_assert!((-5.0..=10.0).contains(&x));
            }
        }
    }

    #[test]
    fn scores_on_a_scale() {
        assert_eq!(parse_scale("Score: 7/10", 1.0, 10.0).unwrap(), 7.0);
        assert_eq!(parse_scale("I think 4.5.", 1.0, 5.0).unwrap(), 4.5);
        assert_eq!(
            parse_scale("3 of the tags are wrong, so 2", 1.0, 5.0).unwrap(),
            2.0
        );
        assert!(parse_scale("Score: 11", 1.0, 10.0).is_err());
        assert!(parse_scale("excellent", 1.0, 10.0).is_err());
    }
}
