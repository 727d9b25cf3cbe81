//! Config errors a person can act on: the file, line and column, the key, what was wrong,
//! what was expected, and a "did you mean" hint for misspelt keys and values.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Where in a config file an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// A config file problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Invalid { path, location: location.as_ref(), key, message, hint: hint.as_deref() })]
    Invalid {
        path: PathBuf,
        location: Option<Location>,
        /// Dotted path of the offending key (`variants[0].thresholds`), empty for the document.
        key: String,
        message: String,
        hint: Option<String>,
    },
    #[error("{0}")]
    NotFound(Box<NotFound>),
}

/// A `dataset:`/`model:`/experiment reference that names nothing.
#[derive(Debug)]
pub struct NotFound {
    pub kind: &'static str,
    pub name: String,
    pub referrer: PathBuf,
    pub location: Option<Location>,
    pub searched: Vec<PathBuf>,
    pub hint: Option<String>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}` not found (named in {}",
            self.kind,
            self.name,
            self.referrer.display()
        )?;
        if let Some(l) = &self.location {
            write!(f, ":{}:{}", l.line, l.column)?;
        }
        let mut seen = std::collections::HashSet::new();
        let searched: Vec<String> = self
            .searched
            .iter()
            .filter(|p| seen.insert(*p))
            .map(|p| p.display().to_string())
            .collect();
        write!(f, "); looked for {}", searched.join(" and "))?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

struct Invalid<'a> {
    path: &'a Path,
    location: Option<&'a Location>,
    key: &'a str,
    message: &'a str,
    hint: Option<&'a str>,
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.location {
            write!(f, ":{}:{}", l.line, l.column)?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": key `{}`: {}", self.key, self.message)?;
        }
        if let Some(h) = self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub fn invalid(
        path: &Path,
        text: Option<&str>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            location: text.and_then(|t| locate_key(t, key)),
            key: key.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: Option<String>) -> ConfigError {
        match &mut self {
            ConfigError::Invalid { hint: h, .. } => *h = hint,
            ConfigError::NotFound(nf) => nf.hint = hint,
            ConfigError::Io { .. } => {}
        }
        self
    }
}

/// Reads and parses a YAML file into `T`, turning serde errors into [`ConfigError::Invalid`].
pub fn parse_file<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(path, &text).map(|v| (v, text))
}

/// Parses YAML text (from `path`, for messages) into `T`.
pub fn parse_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            location: None,
            key: String::new(),
            message: "the file is empty; expected a YAML mapping".into(),
            hint: Some("see docs/config.md for an example of every field".into()),
        });
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let key = err.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = err.into_inner();
        let location = inner.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        });
        let raw = strip_location(&inner.to_string());
        let (message, hint) = explain(&raw);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            location,
            key,
            message,
            hint,
        }
    })
}

/// serde_yaml prefixes the key path ("variants[0]: ") and appends " at line L column C"; we
/// print both ourselves.
fn strip_location(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    };
    match msg.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_-.[]".contains(c))
                && !path.starts_with("invalid")
                && !path.starts_with("unknown") =>
        {
            rest.to_string()
        }
        _ => msg.to_string(),
    }
}

/// Rewrites serde's messages into plain words and adds a "did you mean" hint for unknown keys
/// and values.
fn explain(raw: &str) -> (String, Option<String>) {
    for (prefix, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            let Some((bad, tail)) = rest.split_once('`') else {
                break;
            };
            let expected = parse_expected(tail);
            let list = expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let message = if expected.is_empty() {
                format!("unknown {what} `{bad}`; this mapping takes no {what}s here")
            } else {
                format!("unknown {what} `{bad}`; expected one of {list}")
            };
            let hint = did_you_mean(bad, expected.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"));
            return (message, hint);
        }
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return (format!("missing required key `{name}`"), None);
    }
    (raw.replace("invalid type: ", "wrong type: "), None)
}

/// Pulls the names out of serde's "expected one of `a`, `b`" / "expected `a` or `b`" tails.
fn parse_expected(tail: &str) -> Vec<String> {
    tail.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The closest candidate to `bad`, if any is close enough to be a likely typo.
pub fn did_you_mean<'a>(bad: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let bad_l = bad.to_lowercase();
    candidates
        .map(|c| (strsim::jaro_winkler(&bad_l, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// Best-effort location of a dotted key path (`variants[1].model`) in YAML text, for errors
/// found after parsing. Walks the lines, matching each path segment at increasing indent.
pub fn locate_key(text: &str, key: &str) -> Option<Location> {
    if key.is_empty() {
        return None;
    }
    let segments: Vec<(String, Option<usize>)> = key
        .split('.')
        .map(|seg| match seg.split_once('[') {
            Some((name, idx)) => (name.to_string(), idx.trim_end_matches(']').parse().ok()),
            None => (seg.to_string(), None),
        })
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut min_indent = 0usize;
    let mut found = None;
    for (name, index) in &segments {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let body = trimmed.trim_start_matches("- ");
            let col = line.len() - body.len();
            if indent < min_indent
                && !trimmed.is_empty()
                && !trimmed.starts_with('#')
                && found.is_some()
            {
                break;
            }
            if body.starts_with(&format!("{name}:")) {
                hit = Some((i, col));
                break;
            }
        }
        let (i, col) = hit?;
        found = Some(Location {
            line: i + 1,
            column: col + 1,
        });
        start = i + 1;
        min_indent = col + 1;
        if let Some(n) = index {
            // Skip to the n-th "- " item below this key.
            let mut count = 0;
            let mut item = None;
            for (j, line) in lines.iter().enumerate().skip(start) {
                let trimmed = line.trim_start();
                if trimmed.starts_with("- ") || trimmed == "-" {
                    if count == *n {
                        item = Some((j, line.len() - trimmed.len()));
                        break;
                    }
                    count += 1;
                }
            }
            let (j, indent) = item?;
            found = Some(Location {
                line: j + 1,
                column: indent + 1,
            });
            start = j;
            min_indent = indent;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        model: String,
        thresholds: Vec<f64>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        dataset: String,
        variants: Vec<Inner>,
    }

    #[test]
    fn unknown_key_has_location_and_hint() {
        let text = "dataset: demo\nvariants:\n  - model: m\n    threshold: [0.5]\n";
        let err = parse_str::<Outer>(Path::new("e.yaml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("e.yaml:4:5: key `variants[0].threshold`"),
            "{msg}"
        );
        assert!(msg.contains("unknown key `threshold`"), "{msg}");
        assert!(msg.contains("did you mean `thresholds`?"), "{msg}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = "dataset: demo\nvariants:\n  - model: m\n    thresholds: high\n";
        let msg = parse_str::<Outer>(Path::new("e.yaml"), text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("key `variants[0].thresholds`"), "{msg}");
        assert!(msg.contains("expected a sequence"), "{msg}");
    }

    #[test]
    fn missing_key_and_empty_file() {
        let msg = parse_str::<Outer>(Path::new("e.yaml"), "dataset: x\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing required key `variants`"), "{msg}");
        let msg = parse_str::<Outer>(Path::new("e.yaml"), "# nothing\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("empty"), "{msg}");
    }

    #[test]
    fn locates_nested_keys() {
        let text = "dataset: demo\nvariants:\n  - model: a\n  - model: b\n    thresholds: [1]\n";
        assert_eq!(
            locate_key(text, "dataset"),
            Some(Location { line: 1, column: 1 })
        );
        assert_eq!(
            locate_key(text, "variants[1].model"),
            Some(Location { line: 4, column: 5 })
        );
        assert_eq!(
            locate_key(text, "variants[1].thresholds"),
            Some(Location { line: 5, column: 5 })
        );
        assert_eq!(locate_key(text, "goal"), None);
    }
}
