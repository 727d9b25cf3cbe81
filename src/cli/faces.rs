//! `iw-lab faces ...`: enrol people, forget them, list them; cluster the unknown faces of a
//! run, name, merge and split clusters (docs/faces.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::table::Table;
use super::Env;
use crate::faces::cluster::Params;
use crate::people::{self, clusters};
use crate::ui;

#[derive(Debug, clap::Subcommand)]
pub enum FacesCommand {
    /// Enrol people from a folder per person (PEOPLE/Amy H/*.jpg): the best face of each new
    /// photo goes into the project's gallery.
    Enroll {
        /// The folder holding one folder per person.
        folder: PathBuf,
        /// A `faces` model with a recogniser (file, or a name in models/).
        #[arg(long, short, default_value = "faces")]
        model: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a person (any case) from the gallery.
    Forget { name: String },
    /// The enrolled people and their photo counts.
    People {
        #[arg(long)]
        json: bool,
    },
    /// Group a run's unrecognised faces with those clustered before (ids stay stable).
    Cluster {
        /// Run id, unique prefix, `latest`, or a run folder.
        run: String,
        /// Cosine distance within which two faces are neighbours.
        #[arg(long, default_value_t = Params::default().max_distance)]
        max_distance: f32,
        /// Faces (itself included) within the distance that make a core face.
        #[arg(long, default_value_t = Params::default().min_faces)]
        min_faces: usize,
        #[arg(long)]
        json: bool,
    },
    /// The current clusters.
    Clusters {
        #[arg(long)]
        json: bool,
    },
    /// Enrol a cluster's faces as a person.
    Name { cluster: u32, name: String },
    /// Move every face of cluster B into cluster A.
    Merge { a: u32, b: u32 },
    /// Split a cluster by clustering its faces again with a tighter distance.
    Split {
        cluster: u32,
        #[arg(long, default_value_t = 0.35)]
        max_distance: f32,
    },
}

pub fn run(env: &Env, cmd: FacesCommand) -> Result<ExitCode> {
    crate::store::duck::ensure(&env.fetcher)?;
    match cmd {
        FacesCommand::Enroll {
            folder,
            model,
            json,
        } => enroll(env, &folder, &model, json),
        FacesCommand::Forget { name } => {
            let (shown, n) = people::forget(&env.project, &name)?;
            ui::out(format!("forgot {shown} ({n} photos)"));
            Ok(ExitCode::SUCCESS)
        }
        FacesCommand::People { json } => {
            let list = people::list(&env.project)?;
            print_people(&list, json);
            Ok(ExitCode::SUCCESS)
        }
        FacesCommand::Cluster {
            run,
            max_distance,
            min_faces,
            json,
        } => {
            if !(max_distance.is_finite() && (0.0..=2.0).contains(&max_distance))
                || min_faces == 0
                || min_faces > 10_000
            {
                bail!("--max-distance must be 0–2 and --min-faces 1–10000");
            }
            let run = crate::store::resolve_run(&env.project.runs_dir(), &run)?;
            let s = clusters::cluster(
                &env.project,
                &run,
                &Params {
                    max_distance,
                    min_faces,
                },
            )?;
            print_summary(&s, json);
            Ok(ExitCode::SUCCESS)
        }
        FacesCommand::Clusters { json } => {
            print_summary(&clusters::list(&env.project)?, json);
            Ok(ExitCode::SUCCESS)
        }
        FacesCommand::Name { cluster, name } => {
            let (shown, n) = clusters::name(&env.project, cluster, &name)?;
            ui::out(format!("cluster {cluster} is {shown}: {n} faces enrolled"));
            Ok(ExitCode::SUCCESS)
        }
        FacesCommand::Merge { a, b } => {
            let n = clusters::merge(&env.project, a, b)?;
            ui::out(format!("merged cluster {b} into {a} ({n} faces)"));
            Ok(ExitCode::SUCCESS)
        }
        FacesCommand::Split {
            cluster,
            max_distance,
        } => {
            if !(max_distance.is_finite() && (0.0..=2.0).contains(&max_distance)) {
                bail!("--max-distance must be 0–2");
            }
            let parts = clusters::split(&env.project, cluster, max_distance)?;
            let shown: Vec<String> = parts
                .iter()
                .map(|(id, n)| format!("{id} ({n} faces)"))
                .collect();
            ui::out(format!(
                "cluster {cluster} split into: {}",
                shown.join(", ")
            ));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn enroll(env: &Env, folder: &std::path::Path, model: &str, json: bool) -> Result<ExitCode> {
    let path = env.project.model_path(model)?;
    let model = crate::config::resolve::load_model(&env.project, &path)?;
    let ctx = crate::engine::Context::new(env.fetcher.clone());
    let done = people::enroll(&env.project, &ctx, &model, folder)?;
    for w in &done.warnings {
        ui::warn(w);
    }
    if json {
        ui::json_line(&json!(done));
    } else {
        ui::out(format!(
            "enrolled {} photos ({} already in the gallery, {} warnings)",
            done.added.len(),
            done.known,
            done.warnings.len()
        ));
        print_people(&done.people, false);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_people(list: &[(String, usize)], json: bool) {
    if json {
        ui::json_line(&json!(list
            .iter()
            .map(|(n, c)| json!({"name": n, "photos": c}))
            .collect::<Vec<_>>()));
        return;
    }
    let mut t = Table::new(&["person", "photos"]);
    for (n, c) in list {
        t.row(vec![n.clone(), c.to_string()]);
    }
    ui::out(t.render());
}

fn print_summary(s: &clusters::Summary, json: bool) {
    if json {
        ui::json_line(&json!(s));
        return;
    }
    let mut t = Table::new(&["cluster", "faces", "name", "examples"]);
    for c in &s.clusters {
        t.row(vec![
            c.id.to_string(),
            c.faces.to_string(),
            c.name.clone().unwrap_or_default(),
            c.examples.join(", "),
        ]);
    }
    ui::out(t.render());
    ui::out(format!(
        "{} clusters, {} faces unclustered, {} new faces (max distance {}, min faces {})",
        s.clusters.len(),
        s.unclustered,
        s.new_faces,
        s.params.max_distance,
        s.params.min_faces
    ));
}
