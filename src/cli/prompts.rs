//! `iw-lab prompts list | show | history | diff | rollback`: the versions of `prompts/NAME.j2`.
//!
//! Files and versions come from `crate::templates::Store`, scores from
//! `crate::prompt_scores`. Reading a template's current text records it in `prompts/.history`
//! (as every reader of prompts does), so a text once listed or shown can later be compared
//! with and restored. A version is named by `current`, `best` (the best score under the goal of
//! the newest run that used the template) or a hash prefix of at least 6 hex characters.

mod line_diff;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use super::table::{num, Table};
use super::Env;
use crate::prompt_scores::{self, BestVersion, Scores};
use crate::templates::{self, Store, Template};
use crate::ui;

#[derive(Debug, clap::Subcommand)]
pub enum PromptsCommand {
    /// Every template in prompts/: current version, versions kept, best score.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A version's text, as is (for piping).
    Show {
        /// NAME (the current file), NAME@HASH (at least 6 hex characters), NAME@best.
        reference: String,
        #[arg(long)]
        json: bool,
    },
    /// Every version seen, the runs that used it and its best score.
    History {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Unified diff between two versions (each `current`, `best` or a hash prefix).
    Diff {
        name: String,
        a: String,
        b: String,
        #[arg(long)]
        json: bool,
    },
    /// Rewrites prompts/NAME.j2 to an earlier version; the replaced text stays in the history.
    Rollback {
        name: String,
        /// `best` or a hash prefix.
        #[arg(long, value_name = "best|HASH")]
        to: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(env: &Env, cmd: PromptsCommand) -> Result<ExitCode> {
    use PromptsCommand::*;
    let p = |by| Prompts::new(env, by);
    match cmd {
        List { json } => list(&p("prompts list"), json),
        Show { reference, json } => show(&p("prompts show"), &reference, json),
        History { name, json } => history(&p("prompts history"), &name, json),
        Diff { name, a, b, json } => diff(&p("prompts diff"), &name, &a, &b, json),
        Rollback { name, to, json } => rollback(&p("prompts rollback"), &name, &to, json),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// The project's prompts and runs, for one command (`by` is what the history notes).
struct Prompts {
    store: Store,
    runs_dir: PathBuf,
    by: &'static str,
    now: String,
}

impl Prompts {
    fn new(env: &Env, by: &'static str) -> Prompts {
        Prompts {
            store: Store::new(env.project.root.join("prompts")),
            runs_dir: env.project.runs_dir(),
            by,
            now: crate::store::time_now().iso(),
        }
    }

    /// Names of `prompts/*.j2`, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.store.dir())
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| {
                        let file = e.file_name().to_string_lossy().into_owned();
                        file.strip_suffix(".j2").map(str::to_string)
                    })
                    .filter(|n| templates::valid_name(n))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Errors unless `name` has a file or a history.
    fn check_name(&self, name: &str) -> Result<()> {
        if templates::valid_name(name)
            && (self.file(name).is_file() || !self.store.kept(name).is_empty())
        {
            return Ok(());
        }
        let names = self.names();
        let dir = self.store.dir().display();
        let mut msg = if names.is_empty() {
            format!("no prompt template `{name}`: {dir} has none")
        } else {
            format!(
                "no prompt template `{name}` in {dir} (it has: {})",
                names.join(", ")
            )
        };
        match crate::config::error::did_you_mean(name, names.iter().map(String::as_str)) {
            Some(s) => msg.push_str(&format!("\nhint: did you mean `{s}`?")),
            None => msg.push_str("\nhint: a template is a file prompts/NAME.j2"),
        }
        bail!(msg)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.store.dir().join(format!("{name}.j2"))
    }

    /// The current text, recorded in the history; None when the file is gone.
    fn current(&self, name: &str) -> Result<Option<Template>> {
        if !self.file(name).exists() {
            return Ok(None);
        }
        let t = self.store.current(name)?;
        self.store.record(&t, self.by, &self.now)?;
        Ok(Some(t))
    }

    /// The runs' scores of `name`'s versions; unreadable runs are warned about and skipped.
    fn scores(&self, name: &str) -> Result<Scores> {
        let scores = prompt_scores::scan(&self.runs_dir, name)?;
        for s in &scores.skipped {
            ui::warn(format!("skipped: {s}"));
        }
        Ok(scores)
    }

    /// A version by `current`, `best` or hash prefix, with its score when it is `best`.
    fn version(&self, name: &str, spec: &str) -> Result<(Template, Option<BestVersion>)> {
        match spec {
            "current" => {
                let t = self.current(name)?;
                let t = t.with_context(|| format!("{} is gone", self.file(name).display()))?;
                Ok((t, None))
            }
            "best" => self.best(name).map(|(t, b)| (t, Some(b))),
            hash if hash.len() >= 6 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok((self.store.resolve(&format!("{name}@{hash}"))?, None))
            }
            other => bail!(
                "`{other}` is not a version of {name}: give `current`, `best`, or at least 6 hex \
                 characters of a hash\nhint: `iw-lab prompts history {name}` lists the versions"
            ),
        }
    }

    fn best(&self, name: &str) -> Result<(Template, BestVersion)> {
        let scores = self.scores(name)?;
        let Some(b) = scores.best().cloned() else {
            let runs: BTreeSet<&String> = scores.by_hash.values().flat_map(|u| &u.runs).collect();
            let why = match runs.len() {
                0 => "no run used it".to_string(),
                n => format!("{n} run(s) used it, none has scores in metrics.json"),
            };
            bail!(
                "prompt {name} has no best version: {why}\nhint: score a run whose variants use \
                 prompts/{name}.j2 (a dataset with ground truth), or name a version by hash"
            );
        };
        let t = self
            .store
            .resolve(&format!("{name}@{}", b.hash))
            .with_context(|| {
                format!(
                    "the best version of {name} ({} = {} in run {}, variant {}) has no text kept",
                    b.metric, b.value, b.run_id, b.variant
                )
            })?;
        Ok((t, b))
    }
}

/// One version in `prompts history` (and counted by `prompts list`).
#[derive(Debug, Serialize)]
struct VersionRow {
    hash: String,
    /// When the history log first saw it; None when only runs or files know it.
    seen_at: Option<String>,
    by: Option<String>,
    current: bool,
    /// Its text is in `prompts/.history/NAME/` (or is the current file).
    kept: bool,
    runs: usize,
    best: Option<BestVersion>,
}

/// The history log's versions in order, then versions only runs used, then texts only on disk.
fn versions(
    p: &Prompts,
    name: &str,
    cur: Option<&Template>,
    scores: &Scores,
) -> Result<Vec<VersionRow>> {
    let kept = p.store.kept(name);
    let cur_hash = cur.map(|t| t.hash.as_str());
    let mut rows: Vec<VersionRow> = Vec::new();
    let mut add = |hash: &str, seen: Option<&templates::Seen>| {
        if rows.iter().any(|r| r.hash == hash) {
            return;
        }
        let usage = scores.by_hash.get(hash);
        rows.push(VersionRow {
            hash: hash.to_string(),
            seen_at: seen.map(|s| s.seen_at.clone()),
            by: seen.map(|s| s.by.clone()),
            current: cur_hash == Some(hash),
            kept: cur_hash == Some(hash) || kept.iter().any(|k| k == hash),
            runs: usage.map_or(0, |u| u.runs.len()),
            best: usage.and_then(|u| u.best.clone()),
        });
    };
    for seen in p.store.history(name)? {
        add(&seen.hash, Some(&seen));
    }
    for hash in scores.order.iter().chain(&kept) {
        add(hash, None);
    }
    Ok(rows)
}

fn short(hash: &str) -> &str {
    &hash[..12.min(hash.len())]
}

fn best_text(b: Option<&BestVersion>) -> String {
    b.map_or_else(String::new, |b| {
        format!(
            "{} {} ({} {})",
            b.metric,
            num(Some(b.value)),
            b.run_id,
            b.variant
        )
    })
}

fn list(p: &Prompts, as_json: bool) -> Result<()> {
    let mut items = Vec::new();
    for name in p.names() {
        let cur = match p.current(&name) {
            Ok(Some(cur)) => cur,
            Ok(None) => continue,
            Err(e) => {
                ui::warn(format!("{e:#}"));
                continue;
            }
        };
        let scores = p.scores(&name)?;
        let rows = versions(p, &name, Some(&cur), &scores)?;
        let last_seen = rows.iter().filter_map(|r| r.seen_at.clone()).max();
        items.push((
            name,
            cur.hash,
            rows.len(),
            last_seen,
            scores.best().cloned(),
        ));
    }
    if as_json {
        let items: Vec<_> = items
            .iter()
            .map(|(name, hash, n, last, best)| {
                json!({"name": name, "hash": hash, "versions": n, "last_seen": last, "best": best})
            })
            .collect();
        ui::json_line(&json!({ "prompts": items }));
        return Ok(());
    }
    if items.is_empty() {
        ui::out(format!(
            "no prompt templates in {}",
            p.store.dir().display()
        ));
        return Ok(());
    }
    let mut t = Table::new(&["name", "hash", "versions", "last seen", "best"]);
    for (name, hash, n, last, best) in &items {
        let last = last.clone().unwrap_or_default();
        t.row(vec![
            name.clone(),
            short(hash).into(),
            n.to_string(),
            last,
            best_text(best.as_ref()),
        ]);
    }
    ui::out(t.render());
    Ok(())
}

fn show(p: &Prompts, reference: &str, as_json: bool) -> Result<()> {
    let (name, spec) = reference.split_once('@').unwrap_or((reference, "current"));
    p.check_name(name)?;
    let (t, _) = p.version(name, spec)?;
    if !as_json {
        ui::out_raw(&t.text);
        return Ok(());
    }
    let current = p.current(name)?.is_some_and(|c| c.hash == t.hash);
    let seen_at = p
        .store
        .history(name)?
        .into_iter()
        .find(|s| s.hash == t.hash)
        .map(|s| s.seen_at);
    ui::json_line(&json!({
        "name": name, "hash": t.hash, "text": t.text, "current": current, "seen_at": seen_at,
    }));
    Ok(())
}

fn history(p: &Prompts, name: &str, as_json: bool) -> Result<()> {
    p.check_name(name)?;
    let cur = p.current(name)?;
    let scores = p.scores(name)?;
    let rows = versions(p, name, cur.as_ref(), &scores)?;
    if as_json {
        ui::json_line(&json!({ "name": name, "versions": rows }));
        return Ok(());
    }
    let mut t = Table::new(&["hash", "seen at", "by", "current", "runs", "best"]);
    for r in &rows {
        let hash = if r.kept {
            short(&r.hash).to_string()
        } else {
            format!("{} (text lost)", short(&r.hash))
        };
        t.row(vec![
            hash,
            r.seen_at.clone().unwrap_or_else(|| "-".into()),
            r.by.clone().unwrap_or_else(|| "-".into()),
            if r.current { "*".into() } else { String::new() },
            r.runs.to_string(),
            best_text(r.best.as_ref()),
        ]);
    }
    ui::out(t.render());
    if let Some(goal) = scores.goal {
        ui::note(format!(
            "best: {} ({}), the goal of the newest run using {name}",
            goal.metric.name(),
            if matches!(goal.direction, crate::config::files::Direction::Maximize) {
                "maximize"
            } else {
                "minimize"
            }
        ));
    }
    Ok(())
}

fn diff(p: &Prompts, name: &str, a: &str, b: &str, as_json: bool) -> Result<()> {
    p.check_name(name)?;
    let (ta, _) = p.version(name, a)?;
    let (tb, _) = p.version(name, b)?;
    let text = line_diff::unified(&ta.text, &tb.text, &ta.id(), &tb.id(), 3);
    let changed = ta.hash != tb.hash;
    if as_json {
        ui::json_line(
            &json!({"name": name, "a": ta.hash, "b": tb.hash, "diff": text, "changed": changed}),
        );
    } else if changed {
        ui::out_raw(text);
    } else {
        ui::note(format!(
            "{a} and {b} are the same version of {name} ({})",
            ta.id()
        ));
    }
    Ok(())
}

fn rollback(p: &Prompts, name: &str, to: &str, as_json: bool) -> Result<()> {
    p.check_name(name)?;
    // not `p.current`: `Store::rollback` records the replaced text as `rollback (replaced)`
    let before = match p.file(name).exists() {
        true => Some(p.store.current(name)?),
        false => None,
    };
    let (target, best) = p.version(name, to)?;
    let changed = before.as_ref().is_none_or(|b| b.hash != target.hash);
    if changed {
        p.store.rollback(name, &target.hash, &p.now)?;
    }
    let from = before.as_ref().map(|b| b.hash.clone());
    if as_json {
        ui::json_line(
            &json!({"name": name, "from": from, "to": target.hash, "changed": changed, "best": best}),
        );
        return Ok(());
    }
    let file = p.file(name);
    let why = best.map_or_else(String::new, |b| format!(" (best: {})", best_text(Some(&b))));
    if !changed {
        ui::out(format!(
            "{} is already {}{why}; nothing written",
            file.display(),
            short(&target.hash)
        ));
        return Ok(());
    }
    let from = from.as_deref().map_or("(missing)", short);
    ui::out(format!(
        "{}: {from} → {}{why}",
        file.display(),
        short(&target.hash)
    ));
    if before.is_some() {
        ui::note(format!(
            "the replaced text stays in the history: iw-lab prompts show {name}@{from}"
        ));
    }
    Ok(())
}
