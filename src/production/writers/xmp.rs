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

use quick_xml::events::Event;
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

fn parse(text: &str) -> Result<Doc, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<(String, HashMap<String, String>)> = Vec::new(); // (qname, prefix→uri declared)
    let resolve = |stack: &[(String, HashMap<String, String>)], prefix: &str| -> Option<String> {
        stack.iter().rev().find_map(|(_, m)| m.get(prefix).cloned())
    };
    let mut doc = Doc::default();
    let mut current: Option<(&'static str, Container, usize)> = None; // (kind, container, depth)
    let mut li_start: Option<(usize, usize)> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| format!("not valid XML near byte {}: {e}", reader.error_position()))?;
        let after = reader.buffer_position() as usize;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let qname = String::from_utf8_lossy(e.name().as_ref()).into_owned();
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
                stack.push((qname.clone(), decls));
                let (prefix, local) = local_and_prefix(qname.as_bytes());
                let uri = resolve(&stack, &prefix).unwrap_or_default();
                let depth = stack.len();
                if uri == NS_RDF && local == "Description" && doc.desc_attrs_end.is_none() {
                    let tag = &text[before..after];
                    let trim = if is_empty {
                        tag.trim_end_matches('>').trim_end_matches('/').len()
                    } else {
                        tag.len() - 1
                    };
                    doc.desc_attrs_end = Some(before + trim);
                    doc.desc_self_closing = is_empty;
                    for (_, m) in &stack {
                        for (p, u) in m {
                            doc.scope.insert(u.clone(), p.clone());
                        }
                    }
                    if is_empty {
                        stack.pop();
                    }
                    continue;
                }
                let kind = match (uri.as_str(), local.as_str()) {
                    (NS_DC, "subject") => Some("subject"),
                    (NS_LR, "hierarchicalSubject") => Some("hierarchical"),
                    (NS_IW, "added") => Some("added"),
                    _ => None,
                };
                match (&mut current, kind) {
                    (None, Some(k)) if !doc.containers.contains_key(k) => {
                        let c = Container {
                            start: before,
                            end: after,
                            empty_property: is_empty,
                            ..Container::default()
                        };
                        if is_empty {
                            doc.containers.insert(k, c);
                        } else {
                            current = Some((k, c, depth));
                        }
                    }
                    (Some((_, c, _)), _)
                        if uri == NS_RDF
                            && matches!(local.as_str(), "Bag" | "Seq" | "Alt")
                            && is_empty =>
                    {
                        c.empty_bag = Some((before, after, qname.clone()));
                    }
                    (Some(_), _) if uri == NS_RDF && local == "li" && !is_empty => {
                        li_start = Some((before, after));
                    }
                    _ => {}
                }
                if is_empty {
                    stack.pop();
                }
            }
            Event::End(ref e) => {
                let qname = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let (prefix, local) = local_and_prefix(qname.as_bytes());
                let uri = resolve(&stack, &prefix).unwrap_or_default();
                let depth = stack.len();
                if uri == NS_RDF
                    && local == "Description"
                    && doc.desc_close.is_none()
                    && doc.desc_attrs_end.is_some()
                    && !doc.desc_self_closing
                {
                    doc.desc_close = Some(before);
                }
                if let Some((kind, c, d)) = &mut current {
                    if uri == NS_RDF && local == "li" {
                        if let Some((s, content_start)) = li_start.take() {
                            let raw = &text[content_start..before];
                            let value = quick_xml::escape::unescape(raw)
                                .map(|v| v.into_owned())
                                .unwrap_or_else(|_| raw.to_string());
                            c.items.push(Item {
                                start: s,
                                end: after,
                                text: value,
                            });
                        }
                    } else if uri == NS_RDF && matches!(local.as_str(), "Bag" | "Seq" | "Alt") {
                        c.close_at = Some(before);
                    } else if depth == *d {
                        c.end = after;
                        let kind: &'static str = kind;
                        let done = std::mem::take(c);
                        doc.containers.insert(kind, done);
                        current = None;
                    }
                }
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if doc.desc_attrs_end.is_none() {
        return Err("no rdf:Description element".into());
    }
    if !doc.scope.contains_key(NS_RDF) {
        return Err("the rdf namespace is not declared".into());
    }
    Ok(doc)
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
    let norm = |t: &str| crate::tags::normalise(t).unwrap_or_default();
    let ours: Vec<String> = decided
        .iter()
        .filter(|d| opts.rating || d.category != crate::config::Category::Rating)
        .map(|d| d.tag.clone())
        .collect();
    let empty = Container::default();
    let subject = doc.containers.get("subject").unwrap_or(&empty);
    let hier = doc.containers.get("hierarchical").unwrap_or(&empty);
    let added_before = doc.containers.get("added").unwrap_or(&empty);
    let prev: HashSet<String> = added_before.items.iter().map(|i| norm(&i.text)).collect();

    // dc:subject: drop what we added last time, keep the user's, add ours that are missing.
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

    // lr:hierarchicalSubject: replace everything under our prefix.
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

    let wants = [
        Want {
            kind: "subject",
            uri: NS_DC,
            default_prefix: "dc",
            local: "subject",
            remove: remove_subject,
            add: add_subject.clone(),
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
            add: add_subject.clone(),
            drop_if_empty: true,
        },
    ];
    let mut edits = Edits(Vec::new());
    let mut new_props = String::new();
    let mut new_decls = String::new();
    let mut used_prefixes: HashSet<String> = doc.scope.values().cloned().collect();
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
    for w in &wants {
        match doc.containers.get(w.kind) {
            Some(c) if !c.empty_property => {
                let kept = c.items.len() - w.remove.len();
                if w.drop_if_empty && kept == 0 && w.add.is_empty() {
                    edits
                        .0
                        .push((line_start_if_blank(text, c.start), c.end, String::new()));
                    continue;
                }
                for (n, item) in c.items.iter().enumerate() {
                    if w.remove.contains(&n) {
                        edits.0.push((
                            line_start_if_blank(text, item.start),
                            item.end,
                            String::new(),
                        ));
                    }
                }
                if w.add.is_empty() {
                    continue;
                }
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
                    edits
                        .0
                        .push((*s, *e, format!("<{qname}>{lis}\n{bag_indent}</{qname}>")));
                } else if let Some(close) = c.close_at {
                    // After the last item (or the Bag's start), before the closing whitespace.
                    let at = text[..close].trim_end().len();
                    edits.0.push((at, at, lis));
                } else {
                    return Err(fail(format!("{} has no rdf:Bag or rdf:Seq", w.local)));
                }
            }
            existing_prop => {
                if w.add.is_empty() {
                    continue;
                }
                let prefix = match doc.scope.get(w.uri) {
                    Some(p) => p.clone(),
                    None => {
                        let mut p = w.default_prefix.to_string();
                        let mut n = 2;
                        while used_prefixes.contains(&p) {
                            p = format!("{}{n}", w.default_prefix);
                            n += 1;
                        }
                        used_prefixes.insert(p.clone());
                        new_decls.push_str(&format!(
                            "\n{desc_indent}{step}xmlns:{p}={quote}{}{quote}",
                            w.uri
                        ));
                        p
                    }
                };
                let i1 = format!("{desc_indent}{step}");
                let i2 = format!("{i1}{step}");
                let i3 = format!("{i2}{step}");
                let lis: String = w
                    .add
                    .iter()
                    .map(|t| format!("\n{i3}<{rdf}:li>{}</{rdf}:li>", escape(t)))
                    .collect();
                let prop = format!("\n{i1}<{prefix}:{l}>\n{i2}<{rdf}:Bag>{lis}\n{i2}</{rdf}:Bag>\n{i1}</{prefix}:{l}>", l = w.local);
                if let Some(c) = existing_prop {
                    // `<dc:subject/>`: replace the empty element.
                    edits
                        .0
                        .push((c.start, c.end, prop.trim_start().to_string()));
                } else {
                    new_props.push_str(&prop);
                }
            }
        }
    }
    let attrs_end = doc.desc_attrs_end.expect("checked by parse");
    if !new_decls.is_empty() {
        edits.0.push((attrs_end, attrs_end, new_decls));
    }
    if !new_props.is_empty() {
        if doc.desc_self_closing {
            // `<rdf:Description .../>` becomes an element with children.
            let close_end = text[attrs_end..]
                .find("/>")
                .map(|i| attrs_end + i + 2)
                .unwrap_or(attrs_end);
            edits.0.push((
                attrs_end,
                close_end,
                format!(">{new_props}\n{desc_indent}</{rdf}:Description>"),
            ));
        } else if let Some(close) = doc.desc_close {
            let at = text[..close].trim_end().len();
            edits.0.push((at, at, new_props));
        }
    }
    let content = edits.apply(text);
    let (added, removed) = diff(&old_keywords, &new_keywords);
    Ok(Rendered {
        path,
        unchanged: existing == Some(content.as_str()),
        content: content.into_bytes(),
        added,
        removed,
        ours: add_subject,
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
