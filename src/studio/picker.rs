//! `iw-lab serve` inside a project with nothing named: a picker of the project's runs (to
//! review) and datasets (to browse). Choosing loads that mode in the running studio; the page
//! can come back to the picker.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::answer::{ApiError, ApiResult, Body};
use super::{App, Mode};
use crate::config::Project;

/// What the picker offers.
pub struct Picker {
    pub project: Project,
    pub separator: String,
}

impl Picker {
    /// The project's runs, newest first: id, experiment, status, start, dataset.
    fn runs(&self) -> Vec<Value> {
        let mut runs: Vec<Value> = crate::store::list_runs(&self.project.runs_dir())
            .into_iter()
            .filter_map(|r| {
                let m = crate::store::Manifest::read(&r.manifest_path()).ok()?;
                Some(json!({
                    "id": m.run_id, "experiment": m.experiment,
                    "status": m.effective_status().as_str(), "started_at": m.started_at,
                    "dataset": m.dataset.name, "images": m.counts.images,
                }))
            })
            .collect();
        runs.sort_by(|a, b| b["started_at"].as_str().cmp(&a["started_at"].as_str()));
        runs
    }

    /// The project's datasets: name and image folder (or why it cannot be read).
    fn datasets(&self) -> Vec<Value> {
        let Ok(dir) = std::fs::read_dir(self.project.root.join("datasets")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(
                |f| match crate::config::resolve::load_dataset(&self.project, f) {
                    Ok(d) => json!({"name": d.name, "root": d.root.display().to_string()}),
                    Err(e) => json!({
                        "name": f.file_stem().map(|s| s.to_string_lossy().to_string()),
                        "error": e.to_string(),
                    }),
                },
            )
            .collect()
    }
}

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/pick", get(list).post(pick))
}

fn picker(app: &App) -> ApiResult<&Picker> {
    app.picker
        .as_deref()
        .ok_or_else(|| ApiError::not_found("this studio was started on one folder or run"))
}

pub async fn list(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let p = picker(&app)?;
    Ok(Json(json!({
        "project": p.project.root.display().to_string(),
        "runs": p.runs(),
        "datasets": p.datasets(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickBody {
    /// Review this run.
    #[serde(default)]
    run: Option<String>,
    /// Browse this dataset's folder.
    #[serde(default)]
    dataset: Option<String>,
}

/// Loads the chosen run or dataset (or, with neither, goes back to the picker).
pub async fn pick(State(app): State<Arc<App>>, Body(b): Body<PickBody>) -> ApiResult<Json<Value>> {
    picker(&app)?;
    let app2 = app.clone();
    let mode = tokio::task::spawn_blocking(move || load(&app2, b))
        .await
        .map_err(ApiError::internal)??;
    let name = mode.name();
    app.set_mode(mode);
    Ok(Json(json!({ "mode": name })))
}

fn load(app: &App, b: PickBody) -> ApiResult<Mode> {
    let p = picker(app)?;
    let err = |e: anyhow::Error| ApiError::bad(format!("{e:#}"));
    match (b.run, b.dataset) {
        (Some(run), None) => {
            let dirs = crate::report::data::resolve(&p.project.runs_dir(), &[run]).map_err(err)?;
            let r = super::review::Review::open(&p.project, dirs).map_err(err)?;
            Ok(Mode::Review(Box::new(r)))
        }
        (None, Some(name)) => {
            let path = p
                .project
                .dataset_path(&name)
                .map_err(|e| ApiError::bad(e.to_string()))?;
            let ds = crate::config::resolve::load_dataset(&p.project, &path)
                .map_err(|e| ApiError::bad(e.to_string()))?;
            let b =
                super::browse::Browse::open(ds.root, &p.project.state_dir(), p.separator.clone())
                    .map_err(err)?;
            Ok(Mode::Browse(Box::new(b)))
        }
        (None, None) => Ok(Mode::Pick),
        _ => Err(ApiError::bad("give `run` or `dataset`, not both")),
    }
}
