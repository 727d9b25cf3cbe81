//! XMP sidecars for photo tools (Lightroom, darktable, digiKam, exiftool...).
//!
//! A new sidecar is a small XMP packet. An existing one is *edited in place*, never rebuilt:
//! the document is parsed only to find byte ranges, and the edits are text insertions and
//! removals at those ranges, so every byte of the user's own content — other namespaces,
//! attributes, comments, formatting — stays as it was. We add keywords to `dc:subject` and
//! `<prefix>|<tag>` hierarchical keywords to `lr:hierarchicalSubject`, and remember in
//! `iwlab:added` which `dc:subject` keywords we added, so a later pass removes exactly those
//! (and the hierarchical ones under our prefix) and nothing of the user's. Bag or Seq
//! containers are both handled; namespaces are matched by URI, not prefix.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use quick_xml::events::{BytesEnd, BytesStart, Event};
use quick_xml::Reader;

use super::{diff, Rendered, XmpOptions};
use crate::postprocess::Decided;

const NS_RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
const NS_DC: &str = "http://purl.org/dc/elements/1.1/";
const NS_LR: &str = "http://ns.adobe.com/lightroom/1.0/";
/// iw-lab's own namespace (only `iwlab:added`).
pub const NS_IW: &str = "https://iw-lab.dev/ns/xmp/1.0/";

/// Why an existing sidecar could not be merged into (it is then left untouched).
#[derive(Debug, thiserror::Error)]
#[error("cannot merge into {path}: {reason}")]
pub struct MergeError {
    pub path: String,
    pub reason: String,
}

const TEMPLATE: &str = "<?xpacket begin='\u{feff}' id='W5M0MpCehiHzreSzNTczkc9d'?>\n\
<x:xmpmeta xmlns:x='adobe:ns:meta/' x:xmptk='iw-lab'>\n\
<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\n \
<rdf:Description rdf:about=''>\n \
</rdf:Description>\n\
</rdf:RDF>\n\
</x:xmpmeta>\n\
<?xpacket end='w'?>\n";

/// One `rdf:li`: its whole byte range and its text.
#[derive(Debug, Clone)]
struct Item {
    start: usize,
    end: usize,
    text: String,
}

/// An array property (`dc:subject`, ...) of the document.
#[derive(Debug, Default, Clone)]
struct Container {
    /// The whole property element.
    start: usize,
    end: usize,
    /// Where new items go (the `</rdf:Bag>` tag), or the range of an empty `<rdf:Bag/>`.
    close_at: Option<usize>,
    empty_bag: Option<(usize, usize, String)>,
    /// The property is an empty element (`<dc:subject/>`).
    empty_property: bool,
    items: Vec<Item>,
}

/// What the parse found.
#[derive(Debug, Default)]
struct Doc {
    /// The first `rdf:Description`: end of its start tag's name-and-attributes (before `>` or
    /// `/>`), whether it is self-closing, and where its end tag starts.
    desc_attrs_end: Option<usize>,
    desc_self_closing: bool,
    desc_close: Option<usize>,
    /// Namespace URI → prefix in scope at that Description.
    scope: HashMap<String, String>,
    containers: HashMap<&'static str, Container>,
}

fn local_and_prefix(qname: &[u8]) -> (String, String) {
    let s = String::from_utf8_lossy(qname).into_owned();
    match s.split_once(':') {
        Some((p, l)) => (p.to_string(), l.to_string()),
        None => (String::new(), s),
    }
}

/// A start, empty or end tag: its name, namespace and byte range.
struct Tag {
    qname: String,
    uri: String,
    local: String,
    before: usize,
    after: usize,
    is_empty: bool,
}

/// The namespace declarations (`xmlns:p` / `xmlns`) of a start tag: prefix → URI.
fn namespace_decls(e: &BytesStart<'_>) -> HashMap<String, String> {
    let mut decls = HashMap::new();
    for a in e.attributes().flatten() {
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map(|v| v.into_owned())
            .unwrap_or_default();
        if let Some(p) = key.strip_prefix("xmlns:") {
            decls.insert(p.to_string(), value);
        } else if key == "xmlns" {
            decls.insert(String::new(), value);
        }
    }
    decls
}

/// The parse's state between events.
struct Parser<'t> {
    text: &'t str,
    stack: Vec<(String, HashMap<String, String>)>, // (qname, prefix→uri declared)
    doc: Doc,
    current: Option<(&'static str, Container, usize)>, // (kind, container, depth)
    li_start: Option<(usize, usize)>,
}

impl<'t> Parser<'t> {
    /// A parser of `text` that has seen nothing yet.
    fn new(text: &'t str) -> Parser<'t> {
        Parser {
            text,
            stack: Vec::new(),
            doc: Doc::default(),
            current: None,
            li_start: None,
        }
    }

    /// The tag `qname` at `before..after`, its prefix resolved with the declarations in scope.
    fn tag(&self, qname: String, before: usize, after: usize, is_empty: bool) -> Tag {
        let (prefix, local) = local_and_prefix(qname.as_bytes());
        let uri = self
            .stack
            .iter()
            .rev()
            .find_map(|(_, m)| m.get(&prefix).cloned())
            .unwrap_or_default();
        Tag {
            qname,
            uri,
            local,
            before,
            after,
            is_empty,
        }
    }

    /// A start or empty tag.
    fn start(&mut self, e: &BytesStart<'_>, is_empty: bool, before: usize, after: usize) {
        let qname = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        self.stack.push((qname.clone(), namespace_decls(e)));
        let tag = self.tag(qname, before, after, is_empty);
        let depth = self.stack.len();
        if tag.uri == NS_RDF && tag.local == "Description" && self.doc.desc_attrs_end.is_none() {
            self.description_start(&tag);
        } else {
            self.property_start(&tag, depth);
        }
        if is_empty {
            self.stack.pop();
        }
    }

    /// The first `rdf:Description`'s start tag: where its attributes end, and the namespaces
    /// in scope there.
    fn description_start(&mut self, tag: &Tag) {
        let (before, after) = (tag.before, tag.after);
        let raw = &self.text[before..after];
        let trim = if tag.is_empty {
            raw.trim_end_matches('>').trim_end_matches('/').len()
        } else {
            raw.len() - 1
        };
        self.doc.desc_attrs_end = Some(before + trim);
        self.doc.desc_self_closing = tag.is_empty;
        for (_, m) in &self.stack {
            for (p, u) in m {
                self.doc.scope.insert(u.clone(), p.clone());
            }
        }
    }

    /// Any other start tag: one of our properties, an empty container in one, or an item.
    fn property_start(&mut self, tag: &Tag, depth: usize) {
        let (before, after, is_empty) = (tag.before, tag.after, tag.is_empty);
        let (uri, local) = (tag.uri.as_str(), tag.local.as_str());
        let kind = match (uri, local) {
            (NS_DC, "subject") => Some("subject"),
            (NS_LR, "hierarchicalSubject") => Some("hierarchical"),
            (NS_IW, "added") => Some("added"),
            _ => None,
        };
        match (&mut self.current, kind) {
            (None, Some(k)) if !self.doc.containers.contains_key(k) => {
                let c = Container {
                    start: before,
                    end: after,
                    empty_property: is_empty,
                    ..Container::default()
                };
                if is_empty {
                    self.doc.containers.insert(k, c);
                } else {
                    self.current = Some((k, c, depth));
                }
            }
            (Some((_, c, _)), _)
                if uri == NS_RDF && matches!(local, "Bag" | "Seq" | "Alt") && is_empty =>
            {
                c.empty_bag = Some((before, after, tag.qname.clone()));
            }
            (Some(_), _) if uri == NS_RDF && local == "li" && !is_empty => {
                self.li_start = Some((before, after));
            }
            _ => {}
        }
    }

    /// An end tag.
    fn end(&mut self, e: &BytesEnd<'_>, before: usize, after: usize) {
        let qname = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let tag = self.tag(qname, before, after, false);
        let depth = self.stack.len();
        if tag.uri == NS_RDF
            && tag.local == "Description"
            && self.doc.desc_close.is_none()
            && self.doc.desc_attrs_end.is_some()
            && !self.doc.desc_self_closing
        {
            self.doc.desc_close = Some(before);
        }
        self.property_end(&tag, depth);
        self.stack.pop();
    }

    /// The end of an item, of a container, or of the property being read.
    fn property_end(&mut self, tag: &Tag, depth: usize) {
        let (before, after) = (tag.before, tag.after);
        let (uri, local) = (tag.uri.as_str(), tag.local.as_str());
        if let Some((kind, c, d)) = &mut self.current {
            if uri == NS_RDF && local == "li" {
                if let Some((s, content_start)) = self.li_start.take() {
                    let raw = &self.text[content_start..before];
                    let value = quick_xml::escape::unescape(raw)
                        .map(|v| v.into_owned())
                        .unwrap_or_else(|_| raw.to_string());
                    c.items.push(Item {
                        start: s,
                        end: after,
                        text: value,
                    });
                }
            } else if uri == NS_RDF && matches!(local, "Bag" | "Seq" | "Alt") {
                c.close_at = Some(before);
            } else if depth == *d {
                c.end = after;
                let kind: &'static str = kind;
                let done = std::mem::take(c);
                self.doc.containers.insert(kind, done);
                self.current = None;
            }
        }
    }

    /// The document found, if it has a Description and declares the rdf namespace.
    fn finish(self) -> Result<Doc, String> {
        let doc = self.doc;
        if doc.desc_attrs_end.is_none() {
            return Err("no rdf:Description element".into());
        }
        if !doc.scope.contains_key(NS_RDF) {
            return Err("the rdf namespace is not declared".into());
        }
        Ok(doc)
    }
}

/// Parses `text` for the byte ranges the merge edits.
fn parse(text: &str) -> Result<Doc, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut parser = Parser::new(text);
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| format!("not valid XML near byte {}: {e}", reader.error_position()))?;
        let after = reader.buffer_position() as usize;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                parser.start(e, is_empty, before, after);
            }
            Event::End(ref e) => parser.end(e, before, after),
            Event::Eof => break,
            _ => {}
        }
    }
    parser.finish()
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The indentation of the line holding byte `pos`.
fn indent_at(text: &str, pos: usize) -> String {
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..pos]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

/// Start of the whitespace that precedes `pos` on its line (to remove a whole line cleanly).
fn line_start_if_blank(text: &str, pos: usize) -> usize {
    let ls = text[..pos].rfind('\n').map_or(0, |i| i);
    if text[ls..pos].trim().is_empty() {
        ls
    } else {
        pos
    }
}

struct Edits(Vec<(usize, usize, String)>);

impl Edits {
    fn apply(mut self, text: &str) -> String {
        self.0.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        let mut out = text.to_string();
        for (s, e, r) in self.0 {
            out.replace_range(s..e, &r);
        }
        out
    }
}

/// The wanted content of one array property.
struct Want {
    kind: &'static str,
    uri: &'static str,
    default_prefix: &'static str,
    local: &'static str,
    remove: HashSet<usize>,
    add: Vec<String>,
    /// Remove the whole property when it ends up empty.
    drop_if_empty: bool,
}

/// A tag in the form keywords are compared in (empty when it does not normalise).
fn normalised(t: &str) -> String {
    crate::tags::normalise(t).unwrap_or_default()
}

/// What happens to `dc:subject`: the items to remove, ours to add, and its keywords before
/// and after.
struct SubjectPlan {
    remove: HashSet<usize>,
    add: Vec<String>,
    old_keywords: Vec<String>,
    new_keywords: Vec<String>,
}

/// dc:subject: drop what we added last time (`prev`), keep the user's, add ours that are
/// missing.
fn plan_subject(subject: &Container, prev: &HashSet<String>, ours: &[String]) -> SubjectPlan {
    let norm = normalised;
    let old_keywords: Vec<String> = subject.items.iter().map(|i| i.text.clone()).collect();
    let remove_subject: HashSet<usize> = subject
        .items
        .iter()
        .enumerate()
        .filter(|(_, i)| prev.contains(&norm(&i.text)))
        .map(|(n, _)| n)
        .collect();
    let mut present: HashSet<String> = subject
        .items
        .iter()
        .enumerate()
        .filter(|(n, _)| !remove_subject.contains(n))
        .map(|(_, i)| norm(&i.text))
        .collect();
    let add_subject: Vec<String> = ours
        .iter()
        .filter(|t| present.insert(norm(t)))
        .cloned()
        .collect();
    let mut new_keywords: Vec<String> = subject
        .items
        .iter()
        .enumerate()
        .filter(|(n, _)| !remove_subject.contains(n))
        .map(|(_, i)| i.text.clone())
        .collect();
    new_keywords.extend(add_subject.iter().cloned());
    SubjectPlan {
        remove: remove_subject,
        add: add_subject,
        old_keywords,
        new_keywords,
    }
}

/// lr:hierarchicalSubject: replace everything under our prefix. Returns the items to remove
/// and the keywords to add.
fn plan_hierarchical(
    hier: &Container,
    ours: &[String],
    opts: &XmpOptions,
) -> (HashSet<usize>, Vec<String>) {
    let marker = format!("{}|", opts.prefix);
    let remove_hier: HashSet<usize> = hier
        .items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.text.starts_with(&marker))
        .map(|(n, _)| n)
        .collect();
    let add_hier: Vec<String> = if opts.hierarchical {
        ours.iter().map(|t| format!("{marker}{t}")).collect()
    } else {
        Vec::new()
    };
    (remove_hier, add_hier)
}

/// The edits of one merge, and the layout new text follows.
struct Merge<'a> {
    text: &'a str,
    doc: &'a Doc,
    edits: Edits,
    /// New properties for the Description, and new declarations for its start tag.
    new_props: String,
    new_decls: String,
    used_prefixes: HashSet<String>,
    /// The prefix of the rdf namespace.
    rdf: String,
    /// The Description's indentation, and one level of indentation.
    desc_indent: String,
    step: String,
    /// New declarations follow the Description's own quoting.
    quote: char,
}

impl<'a> Merge<'a> {
    /// A merge into `text`, parsed as `doc`, with no edit yet.
    fn new(text: &'a str, doc: &'a Doc) -> Merge<'a> {
        let used_prefixes: HashSet<String> = doc.scope.values().cloned().collect();
        let rdf = doc
            .scope
            .get(NS_RDF)
            .cloned()
            .unwrap_or_else(|| "rdf".into());
        let desc_indent = doc
            .desc_attrs_end
            .map(|p| indent_at(text, text[..p].rfind('<').unwrap_or(p)))
            .unwrap_or_default();
        let step = if desc_indent.contains('\t') {
            "\t".to_string()
        } else {
            " ".to_string()
        };
        // New declarations follow the Description's own quoting.
        let quote = doc
            .desc_attrs_end
            .and_then(|end| {
                let start = text[..end].rfind('<')?;
                let tag = &text[start..end];
                match (tag.find("=\""), tag.find("='")) {
                    (Some(d), Some(s)) => Some(if d < s { '"' } else { '\'' }),
                    (Some(_), None) => Some('"'),
                    _ => None,
                }
            })
            .unwrap_or('\'');
        Merge {
            text,
            doc,
            edits: Edits(Vec::new()),
            new_props: String::new(),
            new_decls: String::new(),
            used_prefixes,
            rdf,
            desc_indent,
            step,
            quote,
        }
    }

    /// Brings one array property to what `w` wants.
    fn want(&mut self, w: &Want) -> Result<(), String> {
        let doc = self.doc;
        match doc.containers.get(w.kind) {
            Some(c) if !c.empty_property => self.edit_property(c, w),
            existing_prop => {
                self.write_property(existing_prop, w);
                Ok(())
            }
        }
    }

    /// Edits a property the document has, with its container: removes and adds items, or
    /// removes the whole property when `w` drops it once empty.
    fn edit_property(&mut self, c: &Container, w: &Want) -> Result<(), String> {
        let text = self.text;
        let kept = c.items.len() - w.remove.len();
        if w.drop_if_empty && kept == 0 && w.add.is_empty() {
            self.edits
                .0
                .push((line_start_if_blank(text, c.start), c.end, String::new()));
            return Ok(());
        }
        for (n, item) in c.items.iter().enumerate() {
            if w.remove.contains(&n) {
                self.edits.0.push((
                    line_start_if_blank(text, item.start),
                    item.end,
                    String::new(),
                ));
            }
        }
        if w.add.is_empty() {
            return Ok(());
        }
        let (rdf, step) = (&self.rdf, &self.step);
        let item_indent = c
            .items
            .first()
            .map(|i| indent_at(text, i.start))
            .unwrap_or_else(|| {
                let bag_at = c
                    .close_at
                    .or(c.empty_bag.as_ref().map(|b| b.0))
                    .unwrap_or(c.start);
                format!("{}{step}", indent_at(text, bag_at))
            });
        let lis: String = w
            .add
            .iter()
            .map(|t| format!("\n{item_indent}<{rdf}:li>{}</{rdf}:li>", escape(t)))
            .collect();
        if let Some((s, e, qname)) = &c.empty_bag {
            let bag_indent = indent_at(text, *s);
            self.edits
                .0
                .push((*s, *e, format!("<{qname}>{lis}\n{bag_indent}</{qname}>")));
        } else if let Some(close) = c.close_at {
            // After the last item (or the Bag's start), before the closing whitespace.
            let at = text[..close].trim_end().len();
            self.edits.0.push((at, at, lis));
        } else {
            return Err(format!("{} has no rdf:Bag or rdf:Seq", w.local));
        }
        Ok(())
    }

    /// The prefix of `w`'s namespace: the document's, else a new unused one, declared on the
    /// Description.
    fn prefix_for(&mut self, w: &Want) -> String {
        match self.doc.scope.get(w.uri) {
            Some(p) => p.clone(),
            None => {
                let mut p = w.default_prefix.to_string();
                let mut n = 2;
                while self.used_prefixes.contains(&p) {
                    p = format!("{}{n}", w.default_prefix);
                    n += 1;
                }
                self.used_prefixes.insert(p.clone());
                let (desc_indent, step, quote) = (&self.desc_indent, &self.step, self.quote);
                self.new_decls.push_str(&format!(
                    "\n{desc_indent}{step}xmlns:{p}={quote}{}{quote}",
                    w.uri
                ));
                p
            }
        }
    }

    /// Writes a whole property with `w`'s items, replacing an empty one (`existing_prop`) or
    /// as a new child of the Description.
    fn write_property(&mut self, existing_prop: Option<&Container>, w: &Want) {
        if w.add.is_empty() {
            return;
        }
        let prefix = self.prefix_for(w);
        let (rdf, desc_indent, step) = (&self.rdf, &self.desc_indent, &self.step);
        let i1 = format!("{desc_indent}{step}");
        let i2 = format!("{i1}{step}");
        let i3 = format!("{i2}{step}");
        let lis: String = w
            .add
            .iter()
            .map(|t| format!("\n{i3}<{rdf}:li>{}</{rdf}:li>", escape(t)))
            .collect();
        let prop = format!(
            "\n{i1}<{prefix}:{l}>\n{i2}<{rdf}:Bag>{lis}\n{i2}</{rdf}:Bag>\n{i1}</{prefix}:{l}>",
            l = w.local
        );
        if let Some(c) = existing_prop {
            // `<dc:subject/>`: replace the empty element.
            self.edits
                .0
                .push((c.start, c.end, prop.trim_start().to_string()));
        } else {
            self.new_props.push_str(&prop);
        }
    }

    /// Adds the new declarations and properties to the Description, and applies every edit.
    fn finish(mut self) -> String {
        let (text, doc) = (self.text, self.doc);
        let attrs_end = doc.desc_attrs_end.expect("checked by parse");
        if !self.new_decls.is_empty() {
            self.edits.0.push((attrs_end, attrs_end, self.new_decls));
        }
        let new_props = self.new_props;
        if !new_props.is_empty() {
            if doc.desc_self_closing {
                // `<rdf:Description .../>` becomes an element with children.
                let close_end = text[attrs_end..]
                    .find("/>")
                    .map(|i| attrs_end + i + 2)
                    .unwrap_or(attrs_end);
                let (desc_indent, rdf) = (&self.desc_indent, &self.rdf);
                self.edits.0.push((
                    attrs_end,
                    close_end,
                    format!(">{new_props}\n{desc_indent}</{rdf}:Description>"),
                ));
            } else if let Some(close) = doc.desc_close {
                let at = text[..close].trim_end().len();
                self.edits.0.push((at, at, new_props));
            }
        }
        self.edits.apply(text)
    }
}

/// Renders the XMP sidecar of `image`: merges into `existing` (XMP text) or starts a new one.
/// `decided` are the tags to record.
pub fn render(
    image: &Path,
    existing: Option<&str>,
    decided: &[Decided],
    opts: &XmpOptions,
) -> Result<Rendered, MergeError> {
    let path = opts.path(image);
    let text = existing.unwrap_or(TEMPLATE);
    let fail = |reason: String| MergeError {
        path: path.display().to_string(),
        reason,
    };
    let doc = parse(text).map_err(fail)?;
    let ours: Vec<String> = decided
        .iter()
        .filter(|d| opts.rating || d.category != crate::config::Category::Rating)
        .map(|d| d.tag.clone())
        .collect();
    let empty = Container::default();
    let subject = doc.containers.get("subject").unwrap_or(&empty);
    let hier = doc.containers.get("hierarchical").unwrap_or(&empty);
    let added_before = doc.containers.get("added").unwrap_or(&empty);
    let prev: HashSet<String> = added_before
        .items
        .iter()
        .map(|i| normalised(&i.text))
        .collect();
    let plan = plan_subject(subject, &prev, &ours);
    let (remove_hier, add_hier) = plan_hierarchical(hier, &ours, opts);

    let wants = [
        Want {
            kind: "subject",
            uri: NS_DC,
            default_prefix: "dc",
            local: "subject",
            remove: plan.remove,
            add: plan.add.clone(),
            drop_if_empty: false,
        },
        Want {
            kind: "hierarchical",
            uri: NS_LR,
            default_prefix: "lr",
            local: "hierarchicalSubject",
            remove: remove_hier,
            add: add_hier,
            drop_if_empty: false,
        },
        Want {
            kind: "added",
            uri: NS_IW,
            default_prefix: "iwlab",
            local: "added",
            remove: (0..added_before.items.len()).collect(),
            add: plan.add.clone(),
            drop_if_empty: true,
        },
    ];
    let mut merge = Merge::new(text, &doc);
    for w in &wants {
        merge.want(w).map_err(fail)?;
    }
    let content = merge.finish();
    let (added, removed) = diff(&plan.old_keywords, &plan.new_keywords);
    Ok(Rendered {
        path,
        unchanged: existing == Some(content.as_str()),
        content: content.into_bytes(),
        added,
        removed,
        ours: plan.add,
    })
}

/// The keywords (`dc:subject`) and hierarchical keywords of an XMP document, for tests and
/// `--dry-run` displays.
pub fn keywords(text: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let doc = parse(text)?;
    let get = |k: &str| {
        doc.containers
            .get(k)
            .map(|c| c.items.iter().map(|i| i.text.clone()).collect())
            .unwrap_or_default()
    };
    Ok((get("subject"), get("hierarchical")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Category;

    fn d(tags: &[&str]) -> Vec<Decided> {
        tags.iter()
            .map(|t| Decided {
                tag: t.to_string(),
                score: 0.9,
                category: if *t == "general" {
                    Category::Rating
                } else {
                    Category::General
                },
            })
            .collect()
    }

    fn text(r: &Rendered) -> String {
        String::from_utf8(r.content.clone()).unwrap()
    }

    #[test]
    fn new_sidecar() {
        let r = render(
            Path::new("/p/a.jpg"),
            None,
            &d(&["cat", "a & b", "general"]),
            &XmpOptions::default(),
        )
        .unwrap();
        assert_eq!(r.path, Path::new("/p/a.xmp"));
        let t = text(&r);
        assert!(t.contains("<rdf:li>a &amp; b</rdf:li>"), "{t}");
        let (k, h) = keywords(&t).unwrap();
        assert_eq!(k, ["cat", "a & b"]);
        assert_eq!(h, ["iw|cat", "iw|a & b"]);
    }

    #[test]
    fn merge_keeps_user_content_and_replaces_ours() {
        let user = "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n  <rdf:Description rdf:about=\"\" xmlns:d=\"http://purl.org/dc/elements/1.1/\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\" xmp:Rating=\"3\">\n   <d:subject>\n    <rdf:Seq>\n     <rdf:li>Holiday</rdf:li>\n     <rdf:li>cat</rdf:li>\n    </rdf:Seq>\n   </d:subject>\n  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n";
        let first = render(
            Path::new("/p/a.jpg"),
            Some(user),
            &d(&["cat", "dog"]),
            &XmpOptions::default(),
        )
        .unwrap();
        let t1 = text(&first);
        // Everything up to the Description's attributes is untouched (declarations are appended
        // there), and the user's Seq keeps its items and its kind.
        let attrs = user.find("xmp:Rating=\"3\"").unwrap() + "xmp:Rating=\"3\"".len();
        assert!(t1.starts_with(&user[..attrs]), "user prefix changed:\n{t1}");
        assert!(t1.contains("<rdf:Seq>\n     <rdf:li>Holiday</rdf:li>\n     <rdf:li>cat</rdf:li>\n     <rdf:li>dog</rdf:li>\n    </rdf:Seq>"), "{t1}");
        assert!(
            t1.ends_with("  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"),
            "{t1}"
        );
        let (k, h) = keywords(&t1).unwrap();
        assert_eq!(k, ["Holiday", "cat", "dog"]);
        assert_eq!(h, ["iw|cat", "iw|dog"]);
        assert_eq!(first.ours, ["dog"]);
        // A second pass with different tags: only ours change.
        let second = render(
            Path::new("/p/a.jpg"),
            Some(&t1),
            &d(&["bird"]),
            &XmpOptions::default(),
        )
        .unwrap();
        let t2 = text(&second);
        let (k, h) = keywords(&t2).unwrap();
        assert_eq!(k, ["Holiday", "cat", "bird"]);
        assert_eq!(h, ["iw|bird"]);
        assert_eq!(
            (second.added.clone(), second.removed.clone()),
            (vec!["bird".to_string()], vec!["dog".to_string()])
        );
        // Same tags again: byte-identical.
        let third = render(
            Path::new("/p/a.jpg"),
            Some(&t2),
            &d(&["bird"]),
            &XmpOptions::default(),
        )
        .unwrap();
        assert!(third.unchanged, "{}", text(&third));
    }

    #[test]
    fn self_closing_description_and_bad_xml() {
        let user = "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description rdf:about='' xmlns:tiff='http://ns.adobe.com/tiff/1.0/' tiff:Make='X'/></rdf:RDF>";
        let r = render(
            Path::new("a.jpg"),
            Some(user),
            &d(&["cat"]),
            &XmpOptions::default(),
        )
        .unwrap();
        let t = text(&r);
        assert!(t.contains("tiff:Make='X'"));
        assert_eq!(keywords(&t).unwrap().0, ["cat"]);
        assert!(render(
            Path::new("a.jpg"),
            Some("<rdf:RDF><oops"),
            &d(&["cat"]),
            &XmpOptions::default()
        )
        .is_err());
        assert!(render(
            Path::new("a.jpg"),
            Some("<a/>"),
            &d(&["cat"]),
            &XmpOptions::default()
        )
        .is_err());
    }
}
