//! `iw-lab scan DATASET [--json]`: index a dataset's images (content hashes and generation
//! metadata) and report what changed since the last scan: new, deleted, moved (same content,
//! new path) and modified files.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Env;
use crate::dataset::{self, Scan};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset file, or a name in datasets/.
    pub dataset: String,
    /// One JSON object with the counts and the lists of paths.
    #[arg(long)]
    pub json: bool,
    /// List every path in each change class (default: the first 20).
    #[arg(long)]
    pub all: bool,
}

/// What changed between the previous index and this scan.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Changes {
    pub new: Vec<String>,
    pub deleted: Vec<String>,
    /// (from, to): the same content found at a new path, and no longer at the old one.
    pub moved: Vec<(String, String)>,
    pub modified: Vec<String>,
    pub unchanged: usize,
}

/// Compares the previous index (path, hash) with the images found now.
pub fn changes(previous: &[(String, String)], now: &[(String, String)]) -> Changes {
    let before: HashMap<&str, &str> = previous
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    let after: HashMap<&str, &str> = now.iter().map(|(p, h)| (p.as_str(), h.as_str())).collect();
    let mut out = Changes::default();
    // Paths gone, by hash: candidates for a move.
    let mut gone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (p, h) in previous {
        if !after.contains_key(p.as_str()) {
            gone.entry(h.as_str()).or_default().push(p.as_str());
        }
    }
    for (p, h) in now {
        match before.get(p.as_str()) {
            Some(old) if *old == h.as_str() => out.unchanged += 1,
            Some(_) => out.modified.push(p.clone()),
            None => match gone
                .get_mut(h.as_str())
                .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
            {
                Some(from) => out.moved.push((from.to_string(), p.clone())),
                None => out.new.push(p.clone()),
            },
        }
    }
    out.deleted = gone.into_values().flatten().map(str::to_string).collect();
    out.deleted.sort();
    out
}

#[derive(Serialize)]
struct Report<'a> {
    dataset: &'a str,
    root: String,
    images: usize,
    hashed: usize,
    reused: usize,
    unreadable: Vec<Unreadable<'a>>,
    new: usize,
    deleted: usize,
    moved: usize,
    modified: usize,
    unchanged: usize,
    /// Images with generation metadata, by generator.
    generators: BTreeMap<String, usize>,
    changes: &'a Changes,
}

#[derive(Serialize)]
struct Unreadable<'a> {
    file: &'a str,
    reason: &'a str,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    let path = env.project.dataset_path(&args.dataset)?;
    let ds = crate::config::resolve::load_dataset(&env.project, &path)?;
    let scan: Scan = dataset::scan(&ds, &env.project.state_dir(), None)
        .with_context(|| format!("scanning {}", ds.root.display()))?;
    let now: Vec<(String, String)> = scan
        .images
        .iter()
        .map(|i| (i.rel.clone(), i.hash.clone()))
        .collect();
    let ch = changes(&scan.previous, &now);
    let mut generators = BTreeMap::new();
    for img in &scan.images {
        if let Some(m) = &img.meta {
            *generators
                .entry(m.generator.clone().unwrap_or_else(|| "unknown".into()))
                .or_insert(0) += 1;
        }
    }
    let report = Report {
        dataset: &ds.name,
        root: ds.root.display().to_string(),
        images: scan.images.len(),
        hashed: scan.hashed,
        reused: scan.reused,
        unreadable: scan
            .unreadable
            .iter()
            .map(|(f, r)| Unreadable { file: f, reason: r })
            .collect(),
        new: ch.new.len(),
        deleted: ch.deleted.len(),
        moved: ch.moved.len(),
        modified: ch.modified.len(),
        unchanged: ch.unchanged,
        generators,
        changes: &ch,
    };
    if args.json {
        ui::json_line(&report);
    } else {
        print_human(&report, &ch, scan.previous.is_empty(), args.all);
    }
    Ok(if scan.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_human(r: &Report<'_>, ch: &Changes, first: bool, all: bool) {
    let mut out = format!(
        "{}: {} images in {} ({} hashed, {} from the index)\n",
        r.dataset, r.images, r.root, r.hashed, r.reused
    );
    if first {
        out.push_str("first scan: every image is new\n");
    } else {
        out.push_str(&format!(
            "since the last scan: {} new, {} deleted, {} moved, {} modified, {} unchanged\n",
            r.new, r.deleted, r.moved, r.modified, r.unchanged
        ));
        let limit = if all { usize::MAX } else { 20 };
        let mut list = |label: &str, items: Vec<String>| {
            for (i, item) in items.iter().enumerate() {
                if i == limit {
                    out.push_str(&format!(
                        "  … {} more {label} (--all)\n",
                        items.len() - limit
                    ));
                    break;
                }
                out.push_str(&format!("  {label:<9}{item}\n"));
            }
        };
        list("new", ch.new.clone());
        list("deleted", ch.deleted.clone());
        list(
            "moved",
            ch.moved.iter().map(|(a, b)| format!("{a} → {b}")).collect(),
        );
        list("modified", ch.modified.clone());
    }
    if !r.generators.is_empty() {
        let parts: Vec<String> = r
            .generators
            .iter()
            .map(|(g, n)| format!("{g} {n}"))
            .collect();
        let total: usize = r.generators.values().sum();
        out.push_str(&format!(
            "{total} with generation metadata: {}\n",
            parts.join(", ")
        ));
    }
    for u in &r.unreadable {
        out.push_str(&format!("error: {}: {}\n", u.file, u.reason));
    }
    ui::out(out.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn classifies_new_deleted_moved_modified() {
        let before = v(&[
            ("a.png", "h1"),
            ("b.png", "h2"),
            ("c.png", "h3"),
            ("d.png", "h4"),
        ]);
        let now = v(&[
            ("a.png", "h1"),
            ("sub/b.png", "h2"),
            ("c.png", "h9"),
            ("e.png", "h5"),
        ]);
        let ch = changes(&before, &now);
        assert_eq!(ch.unchanged, 1);
        assert_eq!(
            ch.moved,
            vec![("b.png".to_string(), "sub/b.png".to_string())]
        );
        assert_eq!(ch.modified, vec!["c.png".to_string()]);
        assert_eq!(ch.new, vec!["e.png".to_string()]);
        assert_eq!(ch.deleted, vec!["d.png".to_string()]);
    }

    #[test]
    fn a_copy_of_a_kept_file_is_new_not_moved() {
        let before = v(&[("a.png", "h1")]);
        let now = v(&[("a.png", "h1"), ("copy.png", "h1")]);
        let ch = changes(&before, &now);
        assert_eq!(ch.new, vec!["copy.png".to_string()]);
        assert!(ch.moved.is_empty() && ch.deleted.is_empty());
    }
}
