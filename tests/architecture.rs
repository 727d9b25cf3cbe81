//! The architecture of `docs/architecture.md`, checked on the source: each top-level module
//! sits in one layer and imports only from its own layer or those below; the modules import
//! each other without loops; SQL is written only under `store/`; model kinds are matched only
//! where engines are made (`engine/`) and where config files are read (`config/`); no function
//! runs over 80 lines.
//!
//! Dependencies are read from `crate::NAME` paths in code (use lines and inline paths; comments
//! and string literals are skipped). A failure names the file, the line and the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, bottom to top. A module may import from its own layer or any layer below.
const LAYERS: &[(&str, &[&str])] = &[
    ("words", &["words"]),
    (
        "support",
        &[
            "fetch", "libs", "hashing", "panics", "ui", "atomic", "testing",
        ],
    ),
    (
        "inputs",
        &[
            "dataset",
            "imaging",
            "metadata",
            "prompt",
            "tags",
            "textpost",
            "postprocess",
            "ensemble",
            "similarity",
            "faces",
        ],
    ),
    ("config", &["config", "templates"]),
    ("plan", &["plan"]),
    ("engine", &["engine"]),
    ("store", &["store"]),
    ("analysis", &["analysis"]),
    ("runner", &["runner", "prompt_scores"]),
    (
        "products",
        &["report", "production", "studio", "people", "sorting"],
    ),
    ("cli", &["cli"]),
];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (`src/engine/onnx.rs` → `engine`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Code of a line without its comment and string literals (good enough for this source).
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut prev = ' ';
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
            break;
        }
        if c == '"' && prev != '\\' {
            in_str = !in_str;
            out.push('"');
        } else if !in_str {
            out.push(c);
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        i += 1;
    }
    out
}

/// Whether the file's text from `line` on is inside a `#[cfg(test)]` module (tests may use
/// anything).
fn test_lines(text: &str) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            // the test module runs to the end of the file in this code base
            for j in i..lines.len() {
                out.insert(j);
            }
            break;
        }
        i += 1;
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn imports() -> Vec<Import> {
    let re = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut out = Vec::new();
    for file in rust_files(&src()) {
        let from = module_of(&file);
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let tests = test_lines(&text);
        let rel = file
            .strip_prefix(src().parent().unwrap())
            .unwrap()
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            if tests.contains(&n) {
                continue;
            }
            for m in re.captures_iter(&code_of(line)) {
                let to = m[1].to_string();
                if to != from {
                    out.push(Import {
                        file: rel.clone(),
                        line: n + 1,
                        from: from.clone(),
                        to,
                    });
                }
            }
        }
    }
    out
}

#[test]
fn every_module_has_a_layer() {
    let mut missing = BTreeSet::new();
    for file in rust_files(&src()) {
        let m = module_of(&file);
        if m != "lib" && m != "main" && layer_of(&m).is_none() {
            missing.insert(m);
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a layer (add them to LAYERS and docs/architecture.md): {missing:?}"
    );
}

#[test]
fn lower_layers_never_import_upper_ones() {
    let mut broken = Vec::new();
    for i in imports() {
        let (Some(a), Some(b)) = (layer_of(&i.from), layer_of(&i.to)) else {
            continue;
        };
        if b > a {
            broken.push(format!(
                "{}:{}: `{}` ({}) imports `{}` ({}): a layer imports only from itself and the layers below",
                i.file, i.line, i.from, LAYERS[a].0, i.to, LAYERS[b].0
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn modules_import_each_other_without_loops() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut at: BTreeMap<(String, String), String> = BTreeMap::new();
    for i in imports() {
        at.entry((i.from.clone(), i.to.clone()))
            .or_insert(format!("{}:{}", i.file, i.line));
        graph.entry(i.from).or_default().insert(i.to);
    }
    // Depth-first search for a cycle.
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let i = stack.iter().position(|x| x == m).unwrap();
                    let mut cycle = stack[i..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if !state.contains_key(n.as_str()) {
            if let Some(cycle) = visit(n, &graph, &mut state, &mut Vec::new()) {
                let places: Vec<String> = cycle
                    .windows(2)
                    .map(|w| {
                        format!(
                            "{} → {} at {}",
                            w[0],
                            w[1],
                            at[&(w[0].clone(), w[1].clone())]
                        )
                    })
                    .collect();
                panic!("an import loop: {}", places.join("; "));
            }
        }
    }
}

#[test]
fn sql_is_written_only_in_the_store() {
    let re = regex::Regex::new(
        r#""[^"]*\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (OR REPLACE )?(TEMP )?(TABLE|VIEW)|DROP (TABLE|VIEW)|COPY \(|read_parquet|SET \w+ ?=|PRAGMA|ATTACH)\b"#,
    )
    .unwrap();
    let mut found = Vec::new();
    for file in rust_files(&src()) {
        let rel = file.strip_prefix(src()).unwrap().display().to_string();
        if rel.starts_with("store/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let tests = test_lines(&text);
        for (n, line) in text.lines().enumerate() {
            if !tests.contains(&n) && re.is_match(line) {
                found.push(format!("src/{rel}:{}: SQL outside store/", n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn model_kinds_are_matched_only_where_engines_are_made() {
    let re = regex::Regex::new(r"ModelKind::[A-Z]").unwrap();
    let allowed = ["engine/", "config/", "words/"];
    let mut found = Vec::new();
    for file in rust_files(&src()) {
        let rel = file.strip_prefix(src()).unwrap().display().to_string();
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let tests = test_lines(&text);
        for (n, line) in text.lines().enumerate() {
            if !tests.contains(&n) && re.is_match(&code_of(line)) {
                found.push(format!(
                    "src/{rel}:{}: a model kind matched outside engine/: ask the engine's capabilities instead",
                    n + 1
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// A file's module path (`src/engine/gguf/mod.rs` → `engine::gguf`).
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Inside every module, its submodules import each other without loops too (a loop hides
/// two things that should be one, or a third thing both need). Paths are read from
/// `crate::…` and `super::…`; an import of an ancestor or a descendant is not an edge. The
/// generation-metadata readers may keep their internal PNG ↔ stealth pair.
#[test]
fn submodules_import_each_other_without_loops() {
    let files = rust_files(&src());
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(f)).collect();
    let re = regex::Regex::new(r"\b(crate|super)((?:::(?:super|[a-z_][a-z0-9_]*))+)").unwrap();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut at: BTreeMap<(Vec<String>, Vec<String>), String> = BTreeMap::new();
    for file in &files {
        let from = module_path(file);
        if from.len() < 2 || from[0] == "metadata" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let tests = test_lines(&text);
        for (n, line) in text.lines().enumerate() {
            if tests.contains(&n) {
                continue;
            }
            for m in re.captures_iter(&code_of(line)) {
                let mut parts: Vec<String> = m[2].split("::").skip(1).map(str::to_string).collect();
                let target = if &m[1] == "crate" {
                    parts
                } else {
                    let mut base = from[..from.len() - 1].to_vec();
                    while parts.first().is_some_and(|p| p == "super") {
                        base.pop();
                        parts.remove(0);
                    }
                    base.extend(parts);
                    base
                };
                let Some(to) = (1..=target.len())
                    .rev()
                    .map(|k| target[..k].to_vec())
                    .find(|t| known.contains(t))
                else {
                    continue;
                };
                if to.starts_with(&from) || from.starts_with(&to) {
                    continue;
                }
                at.entry((from.clone(), to.clone())).or_insert(format!(
                    "src/{}:{}",
                    file.strip_prefix(src()).unwrap().display(),
                    n + 1
                ));
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Any path back from an edge's target to its source is a loop.
    for ((a, b), place) in &at {
        let mut seen = BTreeSet::new();
        let mut todo = vec![b.clone()];
        while let Some(n) = todo.pop() {
            if &n == a {
                panic!(
                    "an import loop between `{}` and `{}`: `{}` imports `{}` at {place}, and a path leads back",
                    a.join("::"),
                    b.join("::"),
                    a.join("::"),
                    b.join("::")
                );
            }
            if seen.insert(n.clone()) {
                todo.extend(graph.get(&n).into_iter().flatten().cloned());
            }
        }
    }
}

/// Functions are short enough to read in one sitting: none runs over 80 lines, from its `fn`
/// line to the closing brace at its indentation (tests included; data tables are `const`s, not
/// functions).
#[test]
fn functions_fit_in_one_sitting() {
    const MAX: usize = 80;
    let re = regex::Regex::new(
        r#"^(\s*)(pub(\([a-z:]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"C(-unwind)?"\s+)?fn\s+(\w+)"#,
    )
    .unwrap();
    let mut long = Vec::new();
    for file in rust_files(&src()) {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(m) = re.captures(line) else {
                continue;
            };
            if line.trim_end().ends_with(';') {
                continue; // a declaration without a body
            }
            let Some(open) = (i..lines.len()).find(|&j| lines[j].contains('{')) else {
                continue;
            };
            let l = lines[open];
            if l.trim_end().ends_with('}') && l.matches('{').count() == l.matches('}').count() {
                continue; // a one-line body
            }
            let close = format!("{}}}", &m[1]);
            let Some(end) = (open + 1..lines.len()).find(|&k| lines[k].trim_end() == close) else {
                continue;
            };
            let n = end - i + 1;
            if n > MAX {
                long.push(format!(
                    "src/{}:{}: `{}` runs {n} lines (at most {MAX}): split it along its steps",
                    file.strip_prefix(src()).unwrap().display(),
                    i + 1,
                    &m[9]
                ));
            }
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}
