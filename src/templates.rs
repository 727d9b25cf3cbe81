//! Prompt templates (`prompts/NAME.j2`, minijinja) and their versions.
//!
//! A version is the template's exact text, named by its blake3 hash (hex; any unique prefix of
//! at least 6 characters refers to it). Every version iw-lab reads is kept in
//! `prompts/.history/NAME/<hash>.j2`, with a line in `prompts/.history/NAME.jsonl`
//! (`{"hash", "seen_at", "by"}`) the first time it is seen, so a template can be compared with or
//! rolled back to any earlier text even after the file was edited. Rendering is strict: a
//! variable the context lacks is an error naming the template and the variable.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One version of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    pub name: String,
    pub text: String,
    /// blake3 of `text`, hex.
    pub hash: String,
}

impl Template {
    pub fn new(name: &str, text: String) -> Template {
        Template {
            name: name.to_string(),
            hash: blake3::hash(text.as_bytes()).to_hex().to_string(),
            text,
        }
    }

    /// `NAME@` and the first 12 characters of the hash.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, &self.hash[..12])
    }

    /// Renders with `context` (any serialisable value; its fields are the variables).
    pub fn render(&self, context: &impl Serialize) -> Result<String> {
        let mut env = minijinja::Environment::new();
        // Printing, iterating or filtering an undefined value fails (typos surface); testing one
        // (`{% if meta.prompt %}`) is allowed, as images differ in what they carry.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        let ctx = minijinja::Value::from(minijinja::value::Serde(context));
        env.render_str(&self.text, ctx)
            .map_err(|e| anyhow::anyhow!("prompt template {}: {}", self.id(), describe(&e)))
    }

    /// Checks the syntax without rendering.
    pub fn check(&self) -> Result<()> {
        let env = minijinja::Environment::new();
        env.template_from_str(&self.text)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("prompt template {}: {}", self.id(), describe(&e)))
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// One line of a template's history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Seen {
    pub hash: String,
    pub seen_at: String,
    /// What read it: `run <id>`, `prompts show`, `rollback`, ...
    pub by: String,
}

/// The prompt folder of a project and its history.
pub struct Store {
    dir: PathBuf,
}

/// Whether `name` can name a template (`prompts/NAME.j2`): letters, digits, `_`, `-`, `.`,
/// not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Store {
    /// `dir` is the project's `prompts/`.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.j2"))
    }

    fn history_dir(&self, name: &str) -> PathBuf {
        self.dir.join(".history").join(name)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join(".history").join(format!("{name}.jsonl"))
    }

    /// The current text of `prompts/NAME.j2`.
    pub fn current(&self, name: &str) -> Result<Template> {
        if !valid_name(name) {
            bail!("`{name}` is not a prompt name (letters, digits, `_`, `-`, `.`)");
        }
        let path = self.file(name);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read prompt template {} (prompts are `prompts/NAME.j2`)",
                path.display()
            )
        })?;
        Ok(Template::new(name, text))
    }

    /// `NAME` (the current file) or `NAME@HASH` (a version from the history; a unique prefix
    /// of at least 6 characters).
    pub fn resolve(&self, reference: &str) -> Result<Template> {
        let Some((name, hash)) = reference.split_once('@') else {
            return self.current(reference);
        };
        if !valid_name(name) {
            bail!("`{name}` is not a prompt name");
        }
        if hash.len() < 6 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "`{hash}` is not a version of {name}: give at least 6 hex characters of its hash"
            );
        }
        let hash = hash.to_ascii_lowercase();
        let mut found: Vec<Template> = Vec::new();
        if let Ok(cur) = self.current(name) {
            if cur.hash.starts_with(&hash) {
                found.push(cur);
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.history_dir(name)) {
            for e in rd.flatten() {
                let file = e.file_name().to_string_lossy().to_string();
                let Some(h) = file.strip_suffix(".j2") else {
                    continue;
                };
                if h.starts_with(&hash) && !found.iter().any(|t| t.hash == h) {
                    let text = std::fs::read_to_string(e.path())?;
                    let t = Template::new(name, text);
                    if t.hash != h {
                        bail!(
                            "{} does not hash to its name: the history was edited",
                            e.path().display()
                        );
                    }
                    found.push(t);
                }
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => bail!("prompt {name} has no version {hash} (see `iw-lab prompts history {name}`)"),
            n => bail!("{hash} matches {n} versions of {name}; give more characters"),
        }
    }

    /// Keeps `t` in the history (once per version) and notes who read it.
    pub fn record(&self, t: &Template, by: &str, now: &str) -> Result<()> {
        let dir = self.history_dir(&t.name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{}.j2", t.hash));
        if path.exists() {
            return Ok(());
        }
        crate::atomic::write(&path, t.text.as_bytes())?;
        let line = serde_json::to_string(&Seen {
            hash: t.hash.clone(),
            seen_at: now.to_string(),
            by: by.to_string(),
        })?;
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(&t.name))?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    /// The versions seen, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<Seen>> {
        let path = self.log(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(Vec::new());
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).with_context(|| {
                    format!("{} line {}: not a history entry", path.display(), i + 1)
                })
            })
            .collect()
    }

    /// Writes version `hash` back to `prompts/NAME.j2`; the text it replaces stays in history.
    pub fn rollback(&self, name: &str, hash: &str, now: &str) -> Result<Template> {
        let target = self.resolve(&format!("{name}@{hash}"))?;
        // a file that exists but cannot be read (not UTF-8, no permission) is an error, not
        // an absent template: overwriting it would lose text the history does not hold
        if self.file(name).exists() {
            let cur = self.current(name)?;
            self.record(&cur, "rollback (replaced)", now)?;
        }
        crate::atomic::write(&self.file(name), target.text.as_bytes())?;
        Ok(target)
    }

    /// The hashes whose text is kept in `prompts/.history/NAME/`, sorted (the history log
    /// normally names the same ones; this is what is on disk).
    pub fn kept(&self, name: &str) -> Vec<String> {
        let mut hashes: Vec<String> = std::fs::read_dir(self.history_dir(name))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let file = e.file_name().to_string_lossy().into_owned();
                        file.strip_suffix(".j2").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        hashes.sort();
        hashes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollback_refuses_to_overwrite_an_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::write(dir.path().join("p.j2"), "kept").unwrap();
        let v1 = store.current("p").unwrap();
        store.record(&v1, "test", "2026-11-23T10:00:00Z").unwrap();
        std::fs::write(dir.path().join("p.j2"), b"not utf-8 \xff").unwrap();
        assert!(store.rollback("p", &v1.hash, "now").is_err());
        assert_eq!(
            std::fs::read(dir.path().join("p.j2")).unwrap(),
            b"not utf-8 \xff"
        );
    }

    #[test]
    fn renders_strictly() {
        let t = Template::new(
            "caption",
            "Describe {{ file }}.{% if tags %} Tags: {{ tags | join(', ') }}.{% endif %}".into(),
        );
        let out = t
            .render(&json!({"file": "a.png", "tags": ["cat", "sofa"]}))
            .unwrap();
        assert_eq!(out, "Describe a.png. Tags: cat, sofa.");
        let e = t.render(&json!({"tags": []})).unwrap_err().to_string();
        assert!(e.contains("caption@") && e.contains("undefined"), "{e}");
        assert!(Template::new("bad", "{% if %}".into()).check().is_err());
    }

    #[test]
    fn versions_history_and_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::write(dir.path().join("p.j2"), "first {{ x }}").unwrap();
        let v1 = store.current("p").unwrap();
        store.record(&v1, "run r1", "2026-11-23T10:00:00Z").unwrap();
        store.record(&v1, "run r2", "2026-11-23T10:05:00Z").unwrap();
        std::fs::write(dir.path().join("p.j2"), "second {{ x }}").unwrap();
        let v2 = store.current("p").unwrap();
        store.record(&v2, "run r3", "2026-11-23T11:00:00Z").unwrap();
        let h = store.history("p").unwrap();
        assert_eq!(h.len(), 2, "one line per version");
        assert_eq!(h[0].hash, v1.hash);
        assert_eq!(h[0].by, "run r1");
        // by hash prefix, from the history
        assert_eq!(
            store.resolve(&format!("p@{}", &v1.hash[..8])).unwrap().text,
            "first {{ x }}"
        );
        assert!(store
            .resolve("p@12")
            .unwrap_err()
            .to_string()
            .contains("at least 6"));
        assert!(store
            .resolve("p@ffffff")
            .unwrap_err()
            .to_string()
            .contains("no version"));
        // rollback: the file gets v1 back, v2 stays reachable
        let back = store
            .rollback("p", &v1.hash[..10], "2026-11-23T12:00:00Z")
            .unwrap();
        assert_eq!(back.hash, v1.hash);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("p.j2")).unwrap(),
            "first {{ x }}"
        );
        assert_eq!(
            store
                .resolve(&format!("p@{}", &v2.hash[..12]))
                .unwrap()
                .text,
            "second {{ x }}"
        );
        assert_eq!(store.kept("p"), {
            let mut v = vec![v1.hash.clone(), v2.hash.clone()];
            v.sort();
            v
        });
        assert!(store.current("../etc").is_err());
        assert!(store
            .current("missing")
            .unwrap_err()
            .to_string()
            .contains("missing.j2"));
    }
}
