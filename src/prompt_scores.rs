//! How each version of a prompt template scored in the runs that used it.
//!
//! Owns the scan of `runs/*/run.yaml` (which variant used which `prompts/NAME.j2` version, as
//! `VariantInfo::prompt`) joined with each run's `metrics.json` (one row per variant ×
//! threshold). Does not read or write `prompts/` itself: that is `crate::templates`.
//! Called by `iw-lab prompts` (history, list, `@best`, `rollback --to best`) and by anything
//! that resolves `NAME@best` ([`best_version`]).
//!
//! Versions are compared under one goal, so that "best" means one thing: the goal (metric and
//! direction) of the newest run that used the template. `metrics.json` holds every metric, so
//! older runs with another goal are re-read under that one. Runs on different datasets are
//! compared as they stand; iw-lab does not know whether their scores are comparable.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::analysis::VariantMetrics;
use crate::config::files::Direction;
use crate::config::resolve::Goal;
use crate::store::{self, Manifest, RunDir};

/// The best score a template version reached, and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BestVersion {
    /// Full blake3 hash of the version's text.
    pub hash: String,
    /// The goal's metric (`f1_micro`, `map`, ...).
    pub metric: String,
    pub value: f64,
    pub run_id: String,
    pub variant: String,
}

/// One template version as the runs saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Run ids that had a variant using this version, oldest first.
    pub runs: Vec<String>,
    /// The best score under [`Scores::goal`], when some run scored it.
    pub best: Option<BestVersion>,
}

/// Every version of one template that some run used.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// Versions by full hash, in no particular order; see [`Scores::order`].
    pub by_hash: BTreeMap<String, Usage>,
    /// Hashes in the order the runs first used them (oldest run first).
    pub order: Vec<String>,
    /// The goal the versions are compared under (the newest using run's); None without runs.
    pub goal: Option<Goal>,
    /// Run files that could not be read, as `path: reason`; those runs are left out.
    pub skipped: Vec<String>,
}

impl Scores {
    /// The best-scoring version over all runs; ties keep the version scored first.
    pub fn best(&self) -> Option<&BestVersion> {
        let goal = self.goal?;
        self.order
            .iter()
            .filter_map(|h| self.by_hash[h].best.as_ref())
            .fold(None, |acc: Option<&BestVersion>, b| match acc {
                Some(a) if !better(goal, b.value, a.value) => Some(a),
                _ => Some(b),
            })
    }
}

/// The best-scoring version of template `name` over the runs in `project_root/runs`, or None
/// when no run scored any version of it.
///
/// Runs whose `run.yaml` or `metrics.json` cannot be read are left out, not an error
/// ([`scan`] lists them in [`Scores::skipped`]).
pub fn best_version(project_root: &Path, name: &str) -> anyhow::Result<Option<BestVersion>> {
    Ok(scan(&project_root.join("runs"), name)?.best().cloned())
}

/// Answers `NAME@best` for config loading from the project's runs.
pub struct FromRuns<'a>(pub &'a Path);

impl crate::config::generative::BestVersions for FromRuns<'_> {
    fn best_hash(&self, name: &str) -> Result<Option<String>, String> {
        best_version(self.0, name)
            .map(|b| b.map(|b| b.hash))
            .map_err(|e| format!("{e:#}"))
    }
}

/// Reads every run in `runs_dir` and collects the versions of template `name` it used.
pub fn scan(runs_dir: &Path, name: &str) -> anyhow::Result<Scores> {
    let mut scores = Scores::default();
    let mut used: Vec<(RunDir, Manifest)> = Vec::new();
    for run in store::list_runs(runs_dir) {
        match Manifest::read(&run.manifest_path()) {
            Ok(m) if uses(&m, name) => used.push((run, m)),
            Ok(_) => {}
            Err(e) => scores.skipped.push(format!("{e:#}")),
        }
    }
    // list_runs sorts oldest first (by the start time in the id, then its suffix): the last is
    // the newest.
    scores.goal = used.last().map(|(_, m)| m.goal);
    for (run, m) in &used {
        let rows = match read_metrics(run) {
            Ok(rows) => rows,
            Err(e) => {
                scores.skipped.push(e);
                Vec::new()
            }
        };
        add_run(&mut scores, name, m, &rows);
    }
    Ok(scores)
}

fn uses(m: &Manifest, name: &str) -> bool {
    m.variants
        .iter()
        .any(|v| v.prompt.as_ref().is_some_and(|p| p.name == name))
}

/// `metrics.json` rows; none when the run was not scored (no file).
fn read_metrics(run: &RunDir) -> Result<Vec<VariantMetrics>, String> {
    #[derive(Deserialize)]
    struct Doc {
        variants: Vec<VariantMetrics>,
    }
    let path = run.file("metrics.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    serde_json::from_str::<Doc>(&text)
        .map(|d| d.variants)
        .map_err(|e| format!("{}: not a metrics file: {e}", path.display()))
}

fn add_run(scores: &mut Scores, name: &str, m: &Manifest, rows: &[VariantMetrics]) {
    let goal = scores.goal.expect("set when a run uses the template");
    for v in &m.variants {
        let Some(p) = v.prompt.as_ref().filter(|p| p.name == name) else {
            continue;
        };
        if !scores.by_hash.contains_key(&p.hash) {
            scores.order.push(p.hash.clone());
        }
        let usage = scores.by_hash.entry(p.hash.clone()).or_default();
        if usage.runs.last() != Some(&m.run_id) {
            usage.runs.push(m.run_id.clone());
        }
        for row in rows.iter().filter(|r| r.variant == v.name) {
            let Some(value) = row.get(goal.metric).filter(|x| !x.is_nan()) else {
                continue;
            };
            if usage
                .best
                .as_ref()
                .is_none_or(|b| better(goal, value, b.value))
            {
                usage.best = Some(BestVersion {
                    hash: p.hash.clone(),
                    metric: goal.metric.name().to_string(),
                    value,
                    run_id: m.run_id.clone(),
                    variant: v.name.clone(),
                });
            }
        }
    }
}

/// Whether `a` beats `b` under `goal` (strictly: ties keep the earlier).
fn better(goal: Goal, a: f64, b: f64) -> bool {
    match goal.direction {
        Direction::Maximize => a > b,
        Direction::Minimize => a < b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal `run.yaml` (JSON is YAML) with one variant per (name, prompt hash).
    fn write_run(
        runs: &Path,
        id: &str,
        goal: (&str, &str),
        variants: &[(&str, Option<(&str, &str)>)],
        scores: &[(&str, f64, f64)],
    ) {
        let dir = runs.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let vs: Vec<_> = variants
            .iter()
            .map(|(v, p)| {
                let mut o =
                    json!({"name": v, "model": "m", "thresholds": [0.5], "score_floor": 0.0});
                if let Some((name, hash)) = p {
                    o["prompt"] = json!({"name": name, "hash": hash});
                }
                o
            })
            .collect();
        let manifest = json!({
            "run_id": id, "experiment": "e", "experiment_file": "experiments/e.yaml",
            "status": "complete", "tool_version": "0", "started_at": "2026-01-01T00:00:00Z",
            "pid": 1, "host": "h",
            "dataset": {"name": "d", "file": "datasets/d.yaml", "root": "imgs", "ground_truth": "txt"},
            "goal": {"metric": goal.0, "direction": goal.1},
            "variants": vs, "models": {},
        });
        std::fs::write(dir.join("run.yaml"), manifest.to_string()).unwrap();
        let prf = |f: f64| json!({"precision": f, "recall": f, "f1": f});
        let rows: Vec<_> = scores
            .iter()
            .map(|(v, t, f)| {
                json!({"variant": v, "threshold": t, "micro": prf(*f), "macro": prf(*f / 2.0),
                       "samples": prf(*f), "map": null, "images": 3, "labels": 4, "per_tag": []})
            })
            .collect();
        let doc = json!({"ground_truth": "txt", "variants": rows});
        std::fs::write(dir.join("metrics.json"), doc.to_string()).unwrap();
    }

    #[test]
    fn best_per_version_and_overall() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let max = ("f1_micro", "maximize");
        write_run(
            &runs,
            "20260101-000000-e-aaaaaa",
            max,
            &[
                ("a", Some(("cap", "h1"))),
                ("b", Some(("cap", "h2"))),
                ("c", None),
            ],
            &[
                ("a", 0.3, 0.6),
                ("a", 0.5, 0.7),
                ("b", 0.5, 0.65),
                ("c", 0.5, 0.99),
            ],
        );
        write_run(
            &runs,
            "20260102-000000-e-bbbbbb",
            max,
            &[("x", Some(("cap", "h2"))), ("y", Some(("other", "h1")))],
            &[("x", 0.5, 0.8), ("y", 0.5, 0.95)],
        );
        let s = scan(&runs, "cap").unwrap();
        assert_eq!(s.order, ["h1", "h2"]);
        assert_eq!(s.by_hash["h1"].runs, ["20260101-000000-e-aaaaaa"]);
        assert_eq!(s.by_hash["h2"].runs.len(), 2);
        let h1 = s.by_hash["h1"].best.as_ref().unwrap();
        assert_eq!((h1.value, h1.variant.as_str()), (0.7, "a"));
        let best = best_version(dir.path(), "cap").unwrap().unwrap();
        assert_eq!(best.hash, "h2");
        assert_eq!(best.value, 0.8);
        assert_eq!(best.run_id, "20260102-000000-e-bbbbbb");
        assert_eq!(best.metric, "f1_micro");
        assert!(best_version(dir.path(), "none").unwrap().is_none());
    }

    #[test]
    fn newest_goal_applies_to_all_runs() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        write_run(
            &runs,
            "20260101-000000-e-aaaaaa",
            ("f1_micro", "maximize"),
            &[("a", Some(("cap", "h1")))],
            &[("a", 0.5, 0.6)],
        );
        write_run(
            &runs,
            "20260102-000000-e-bbbbbb",
            ("f1_macro", "minimize"),
            &[("b", Some(("cap", "h2")))],
            &[("b", 0.5, 0.8)],
        );
        let s = scan(&runs, "cap").unwrap();
        let best = s.best().unwrap();
        // macro f1 is f / 2 in the fixture: h1 0.3, h2 0.4; minimised
        assert_eq!((best.hash.as_str(), best.value), ("h1", 0.3));
        assert_eq!(best.metric, "f1_macro");
    }

    #[test]
    fn unscored_and_broken_runs() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        write_run(
            &runs,
            "20260101-000000-e-aaaaaa",
            ("f1_micro", "maximize"),
            &[("a", Some(("cap", "h1")))],
            &[],
        );
        std::fs::create_dir_all(runs.join("broken")).unwrap();
        std::fs::write(runs.join("broken/run.yaml"), "not: [a manifest").unwrap();
        let s = scan(&runs, "cap").unwrap();
        assert_eq!(s.by_hash["h1"].runs.len(), 1);
        assert!(s.by_hash["h1"].best.is_none());
        assert!(s.best().is_none());
        assert_eq!(s.skipped.len(), 1, "{:?}", s.skipped);
        assert!(s.skipped[0].contains("broken"), "{:?}", s.skipped);
    }
}
