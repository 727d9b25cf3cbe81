//! A read-only view of a ComfyUI API graph, and the resolution of one input to a value.
//!
//! An input is a literal or a link `[source_id, output_index]`; a link is resolved by looking at
//! its source node (a primitive, a seed node, a switch, a string concatenation, ...). Every
//! resolution is bounded twice: by a depth limit on each chain and by a step budget shared by
//! the whole walk, so a cyclic or enormous graph yields a partial result, never a hang.

use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

/// The longest chain of links one resolution follows.
pub(super) const MAX_DEPTH: usize = 48;
/// The node visits one walk may spend, all resolutions together.
const STEP_BUDGET: usize = 200_000;

/// Input names whose source holds a single literal (a primitive, a seed node), most telling first.
const LITERAL_KEYS: &[&str] = &[
    "value",
    "seed",
    "noise_seed",
    "int",
    "float",
    "number",
    "string",
    "text",
    "Text",
    "boolean",
    "Value",
    "INT",
    "FLOAT",
    "STRING",
    "BOOLEAN",
    "text_0",
];

/// The values the frontend writes after a seed widget (`control_after_generate`).
pub(super) const CONTROL_VALUES: &[&str] = &[
    "fixed",
    "increment",
    "decrement",
    "randomize",
    "increment-wrap",
];

/// One node of an API graph.
pub(super) struct Node<'a> {
    pub id: &'a str,
    pub class: &'a str,
    inputs: Option<&'a Map<String, Value>>,
    pub title: Option<&'a str>,
}

impl<'a> Node<'a> {
    /// The raw value of an input (literal or link).
    pub fn input(&self, name: &str) -> Option<&'a Value> {
        self.inputs.and_then(|m| m.get(name))
    }

    /// The inputs in the order the graph lists them.
    pub fn inputs(&self) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.inputs
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }

    pub fn has(&self, name: &str) -> bool {
        self.input(name).is_some()
    }
}

/// A source of a link: the node and which of its outputs.
#[derive(Clone, Copy)]
pub(super) struct Src<'g, 'a> {
    pub node: &'g Node<'a>,
    pub slot: u64,
}

/// The nodes of an API graph by id, plus the walk's budget and warnings.
pub(super) struct Graph<'a> {
    nodes: Vec<Node<'a>>,
    index: HashMap<&'a str, usize>,
    /// The editor's link ids by (source id, target id), when the UI graph is known: the order
    /// in which the person connected the inputs of a combining node.
    link_order: HashMap<(String, String), i64>,
    steps: Cell<usize>,
    /// Nodes whose value is being resolved now, to stop at a cycle.
    active: RefCell<HashSet<usize>>,
    warnings: RefCell<Vec<String>>,
}

/// A node being resolved; leaves the active set when dropped.
pub(super) struct Visit<'g> {
    active: &'g RefCell<HashSet<usize>>,
    pos: usize,
}

impl Drop for Visit<'_> {
    fn drop(&mut self) {
        self.active.borrow_mut().remove(&self.pos);
    }
}

impl<'a> Graph<'a> {
    /// The graph in `value`, or `None` when it holds no node (`{"<id>": {"class_type": ...}}`).
    /// Entries that are not nodes (Civitai's `extra`, `extraMetadata`) are skipped.
    pub fn new(value: &'a Value, link_order: HashMap<(String, String), i64>) -> Option<Self> {
        let map = value.as_object()?;
        let mut nodes = Vec::new();
        for (id, node) in map {
            let Some(class) = node.get("class_type").and_then(Value::as_str) else {
                continue;
            };
            nodes.push(Node {
                id,
                class,
                inputs: node.get("inputs").and_then(Value::as_object),
                title: node.pointer("/_meta/title").and_then(Value::as_str),
            });
        }
        if nodes.is_empty() {
            return None;
        }
        let index = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        Some(Graph {
            nodes,
            index,
            link_order,
            steps: Cell::new(STEP_BUDGET),
            active: RefCell::new(HashSet::new()),
            warnings: RefCell::new(Vec::new()),
        })
    }

    pub fn nodes(&self) -> &[Node<'a>] {
        &self.nodes
    }

    pub fn position(&self, node: &Node) -> usize {
        self.index.get(node.id).copied().unwrap_or(usize::MAX)
    }

    /// Records a warning once.
    pub fn warn(&self, msg: impl Into<String>) {
        let msg = msg.into();
        let mut w = self.warnings.borrow_mut();
        if !w.contains(&msg) {
            w.push(msg);
        }
    }

    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.warnings.borrow_mut())
    }

    /// Spends one step of the budget; false (with a warning) once it is spent or `depth` is
    /// past the limit.
    pub fn step(&self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            self.warn(format!(
                "a chain of links is longer than {MAX_DEPTH} (a cycle?): stopped following it"
            ));
            return false;
        }
        let left = self.steps.get();
        if left == 0 {
            self.warn("graph too large or cyclic: stopped walking it, the result is partial");
            return false;
        }
        self.steps.set(left - 1);
        true
    }

    /// Starts resolving `node`: `None` (with a warning) when it is already being resolved
    /// further up the chain (a cycle), or the depth or budget is spent.
    pub fn enter(&self, node: &Node, depth: usize) -> Option<Visit<'_>> {
        if !self.step(depth) {
            return None;
        }
        let pos = self.position(node);
        if !self.active.borrow_mut().insert(pos) {
            self.warn(format!("the graph has a cycle through node {}", node.id));
            return None;
        }
        Some(Visit {
            active: &self.active,
            pos,
        })
    }

    /// The source of a link value, when it is one and its node exists. A list literal looks
    /// like a link, so the id must name a node.
    pub fn link(&self, v: &Value) -> Option<Src<'_, 'a>> {
        let arr = v.as_array()?;
        if arr.len() != 2 {
            return None;
        }
        let slot = arr[1].as_u64()?;
        let number;
        let id = match &arr[0] {
            Value::String(s) => s.as_str(),
            Value::Number(n) => {
                number = n.to_string();
                number.as_str()
            }
            _ => return None,
        };
        match self.index.get(id) {
            Some(&i) => Some(Src {
                node: &self.nodes[i],
                slot,
            }),
            None => {
                self.warn(format!("a link names node {id}, which is not in the graph"));
                None
            }
        }
    }

    /// The source linked to `node.name`.
    pub fn input_link(&self, node: &Node<'a>, name: &str) -> Option<Src<'_, 'a>> {
        node.input(name).and_then(|v| self.link(v))
    }

    /// Orders link inputs of a combining node: by the editor's link id when known, else in
    /// input order (the sort is stable).
    pub fn order_by_link<'v>(&self, target: &Node, mut links: Vec<&'v Value>) -> Vec<&'v Value> {
        if self.link_order.is_empty() {
            return links;
        }
        let key = |v: &Value| -> i64 {
            self.link(v)
                .and_then(|s| {
                    self.link_order
                        .get(&(s.node.id.to_string(), target.id.to_string()))
                        .copied()
                })
                .unwrap_or(i64::MAX)
        };
        links.sort_by_key(|v| key(v));
        links
    }

    /// The literal an input holds, following links to primitives, seed nodes and switches.
    pub fn literal(&self, v: &'a Value, depth: usize) -> Option<&'a Value> {
        match self.link(v) {
            None if v.is_array() && v.as_array().is_some_and(|a| a.len() == 2) => None,
            None => Some(v),
            Some(src) => self.source_literal(src, depth + 1),
        }
    }

    fn source_literal(&self, src: Src<'_, 'a>, depth: usize) -> Option<&'a Value> {
        let _visit = self.enter(src.node, depth)?;
        let node = src.node;
        if let Some(chosen) = self.switch_branch(node, depth) {
            return self.literal(chosen, depth);
        }
        // Only a node's first output is its value; a later output (a reader's STEPS, a
        // resolution node's height) is computed at run time.
        if src.slot != 0 {
            return None;
        }
        for key in LITERAL_KEYS {
            if let Some(v) = node.input(key) {
                return self.literal(v, depth);
            }
        }
        single_scalar(node)
    }

    /// For a switch node, the input it passes on (`ComfySwitchNode`: `switch` → `on_true` /
    /// `on_false`; index switches: `select` → `input<N>`).
    pub fn switch_branch(&self, node: &Node<'a>, depth: usize) -> Option<&'a Value> {
        if node.has("on_true") || node.has("on_false") {
            let flag = ["switch", "boolean", "condition", "cond", "value"]
                .iter()
                .find_map(|k| node.input(k))
                .and_then(|v| self.boolean(v, depth + 1));
            return match flag {
                Some(true) => node.input("on_true"),
                Some(false) => node.input("on_false"),
                None => node.input("on_true").or(node.input("on_false")),
            };
        }
        let select = ["select", "Input", "index"]
            .iter()
            .find_map(|k| node.input(k))
            .and_then(|v| self.uint(v, depth + 1))?;
        node.inputs()
            .find(|(k, _)| {
                let digits = k.trim_start_matches(|c: char| !c.is_ascii_digit());
                !digits.is_empty() && k.ends_with(digits) && digits.parse() == Ok(select)
            })
            .map(|(_, v)| v)
    }

    /// A non-negative integer (a seed can be the whole u64 range, so not through f64).
    pub fn uint(&self, v: &'a Value, depth: usize) -> Option<u64> {
        let v = self.literal(v, depth)?;
        match v {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            }),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn float(&self, v: &'a Value, depth: usize) -> Option<f64> {
        match self.literal(v, depth)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn boolean(&self, v: &'a Value, depth: usize) -> Option<bool> {
        match self.literal(v, depth)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "on" | "enable" | "yes" => Some(true),
                "false" | "off" | "disable" | "no" => Some(false),
                _ => None,
            },
            Value::Number(n) => n.as_f64().map(|f| f != 0.0),
            _ => None,
        }
    }

    /// A short text (a sampler or model name): a literal string, or a number written out.
    pub fn name(&self, v: &'a Value, depth: usize) -> Option<String> {
        self.text(v, depth)
    }

    /// A text, following string nodes: primitives, `StringConcatenate`, switches,
    /// `PreviewAny`, `ShowText`, and for an LLM node (`TextGenerate`, whose output is not
    /// stored) the text it was given.
    pub fn text(&self, v: &'a Value, depth: usize) -> Option<String> {
        self.text_inner(v, depth, false)
    }

    fn text_inner(&self, v: &'a Value, depth: usize, user_only: bool) -> Option<String> {
        let Some(src) = self.link(v) else {
            return match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
        };
        let _visit = self.enter(src.node, depth)?;
        let node = src.node;
        let depth = depth + 1;
        if let Some(chosen) = self.switch_branch(node, depth) {
            return self.text_inner(chosen, depth, user_only);
        }
        match node.class {
            "StringConcatenate" | "Text Concatenate" | "JoinStrings" => {
                let part = |key: &str| {
                    let v = node.input(key)?;
                    if user_only && self.is_system_text(v) {
                        return None;
                    }
                    self.text_inner(v, depth, user_only)
                };
                let delimiter = node
                    .input("delimiter")
                    .and_then(|d| self.text_inner(d, depth, false))
                    .unwrap_or_default();
                match (part("string_a"), part("string_b")) {
                    (Some(a), Some(b)) => Some(format!("{a}{delimiter}{b}")),
                    (a, b) => a.or(b),
                }
            }
            "TextGenerate" => {
                self.warn(
                    "the prompt was written at run time by an LLM node (TextGenerate), whose \
                     output is not stored: reporting the text it was given",
                );
                ["prompt", "text", "user_prompt"]
                    .iter()
                    .find_map(|k| node.input(k))
                    .and_then(|v| self.text_inner(v, depth, true))
            }
            "ShowText|pysssss" => node
                .input("text_0")
                .and_then(|v| match v {
                    Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
                    _ => self.text_inner(v, depth, user_only),
                })
                .or_else(|| {
                    node.input("text")
                        .and_then(|v| self.text_inner(v, depth, user_only))
                }),
            "PreviewAny" => node
                .input("source")
                .and_then(|v| self.text_inner(v, depth, user_only)),
            _ => {
                if src.slot != 0 {
                    return None;
                }
                for key in LITERAL_KEYS.iter().chain(&["prompt", "source"]) {
                    if let Some(v) = node.input(key) {
                        return self.text_inner(v, depth, user_only);
                    }
                }
                match single_scalar(node)? {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            }
        }
    }

    /// Whether a text input comes from a node titled as a system prompt (the instructions
    /// given to an LLM, not the user's words).
    fn is_system_text(&self, v: &Value) -> bool {
        self.link(v)
            .and_then(|s| s.node.title)
            .is_some_and(|t| t.to_ascii_lowercase().contains("system"))
    }
}

/// The value of a node whose only input is one literal (a custom primitive).
fn single_scalar<'a>(node: &Node<'a>) -> Option<&'a Value> {
    let mut inputs = node.inputs();
    match (inputs.next(), inputs.next()) {
        (Some((_, v)), None) if !v.is_array() && !v.is_object() => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph(v: &Value) -> Graph<'_> {
        Graph::new(v, HashMap::new()).unwrap()
    }

    #[test]
    fn not_a_graph() {
        assert!(Graph::new(&json!({"a": 1}), HashMap::new()).is_none());
        assert!(Graph::new(&json!([1, 2]), HashMap::new()).is_none());
    }

    #[test]
    fn literals_through_primitives_and_switches() {
        let v = json!({
            "1": {"class_type": "CR Seed", "inputs": {"seed": 42}},
            "2": {"class_type": "PrimitiveBoolean", "inputs": {"value": false}},
            "3": {"class_type": "ComfySwitchNode",
                  "inputs": {"switch": ["2", 0], "on_true": ["4", 0], "on_false": ["1", 0]}},
            "4": {"class_type": "PrimitiveInt", "inputs": {"value": 7}},
            "5": {"class_type": "Reader", "inputs": {"image": "a.png", "steps": 3}},
        });
        let g = graph(&v);
        assert_eq!(g.uint(&json!(["1", 0]), 0), Some(42));
        assert_eq!(g.uint(&json!(["3", 0]), 0), Some(42));
        assert_eq!(
            g.uint(&json!(["5", 3]), 0),
            None,
            "a later output is computed"
        );
        assert_eq!(g.uint(&json!(["9", 0]), 0), None, "missing node");
        assert_eq!(g.uint(&json!(18446744073709551615u64), 0), Some(u64::MAX));
    }

    #[test]
    fn text_through_concatenation_and_llm() {
        let v = json!({
            "1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "sys"},
                  "_meta": {"title": "System Prompt"}},
            "2": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a cat"}},
            "3": {"class_type": "StringConcatenate",
                  "inputs": {"string_a": ["1", 0], "string_b": ["2", 0], "delimiter": " | "}},
            "4": {"class_type": "TextGenerate", "inputs": {"prompt": ["3", 0]}},
        });
        let g = graph(&v);
        assert_eq!(g.text(&json!(["3", 0]), 0).as_deref(), Some("sys | a cat"));
        assert_eq!(g.text(&json!(["4", 0]), 0).as_deref(), Some("a cat"));
        assert_eq!(g.take_warnings().len(), 1);
    }

    #[test]
    fn cyclic_text_stops() {
        let v = json!({
            "1": {"class_type": "StringConcatenate",
                  "inputs": {"string_a": ["2", 0], "string_b": ["2", 0], "delimiter": ""}},
            "2": {"class_type": "StringConcatenate",
                  "inputs": {"string_a": ["1", 0], "string_b": ["1", 0], "delimiter": ""}},
        });
        let g = graph(&v);
        assert_eq!(g.text(&json!(["1", 0]), 0), None);
        assert!(!g.take_warnings().is_empty());
    }
}
