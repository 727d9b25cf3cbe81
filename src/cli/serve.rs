//! `iw-lab serve`: the studio. `--tag FOLDER` hand-tags a training set, `--run RUN…` reviews
//! runs against ground truth, `FOLDER` browses a folder; with none of them, a picker of the
//! project's runs and datasets.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use super::Env;
use crate::engine::Context;
use crate::studio::{self, session, Listen, Mode};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder to browse (thumbnails, generation metadata, `.txt` tags, search).
    #[arg(conflicts_with_all = ["tag", "run"])]
    pub folder: Option<PathBuf>,
    /// Hand-tag the images of FOLDER: copies named PREFIX_0001.ext with a `.txt` each.
    #[arg(long, value_name = "FOLDER", conflicts_with = "run")]
    pub tag: Option<PathBuf>,
    /// Review these runs (id, unique prefix, `latest`, or a run folder) against ground truth.
    #[arg(long, value_name = "RUN", num_args = 1..)]
    pub run: Vec<String>,
    /// Where the tagged copies go (default: FOLDER/out, never scanned as input).
    #[arg(long, value_name = "DIR", requires = "tag")]
    pub out: Option<PathBuf>,
    /// Name of the copies: PREFIX_0001.png.
    #[arg(long, default_value = "img", value_name = "NAME")]
    pub prefix: String,
    /// Digits of the sequence number.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub width: usize,
    /// Between tags in the `.txt` files.
    #[arg(long, default_value = ", ", value_name = "TEXT")]
    pub separator: String,
    /// Move the originals instead of copying them.
    #[arg(long = "move", requires = "tag")]
    pub move_files: bool,
    /// Suggest tags from this model (a file or a name in models/) or promoted config
    /// (`production` or another alias).
    #[arg(long, value_name = "MODEL", requires = "tag")]
    pub suggest: Option<String>,
    /// Measure "similar images" with this `clip` model (a file or a name in models/) instead
    /// of perceptual hashes. The duplicates view always uses pHash.
    #[arg(long, value_name = "MODEL", conflicts_with = "tag")]
    pub similar: Option<String>,
    /// Address to listen on; anything but loopback needs the token for every request.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub host: IpAddr,
    /// Port (default: a free one).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub port: u16,
    /// The access token (default: a random one, printed in the URL).
    #[arg(
        long,
        env = "IW_LAB_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Open the studio in a browser.
    #[arg(long)]
    pub open: bool,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    check(&args)?;
    let listen = Listen {
        host: args.host,
        port: args.port,
        token: args.token.clone(),
        open: args.open,
    };
    let thumbs = env.project.state_dir().join("thumbs");
    let similar = studio::similar::Setup {
        project: env.project.clone(),
        ctx: Context::new(env.fetcher.clone()),
        model: match &args.similar {
            Some(name) => Some(super::similar::embedding_model(env, name)?),
            None => None,
        },
    };
    let mut picker = None;
    let mode = if let Some(folder) = &args.tag {
        tag_mode(env, &args, folder)?
    } else if let Some(folder) = &args.folder {
        crate::store::duck::ensure(&env.fetcher)?;
        let root = std::fs::canonicalize(folder)
            .with_context(|| format!("cannot open {}", folder.display()))?;
        if !root.is_dir() {
            bail!("{} is not a folder", root.display());
        }
        let b =
            studio::browse::Browse::open(root, &env.project.state_dir(), args.separator.clone())?;
        Mode::Browse(Box::new(b))
    } else if args.run.is_empty() {
        crate::store::duck::ensure(&env.fetcher)?;
        let has_runs = !crate::store::list_runs(&env.project.runs_dir()).is_empty();
        let has_datasets = std::fs::read_dir(env.project.root.join("datasets"))
            .is_ok_and(|mut d| d.next().is_some());
        if !has_runs && !has_datasets {
            bail!(
                "nothing to serve: {} has no runs or datasets\nhint: `iw-lab serve --tag FOLDER` hand-tags a folder; `iw-lab serve FOLDER` browses one",
                env.project.root.display()
            );
        }
        picker = Some(studio::picker::Picker {
            project: env.project.clone(),
            separator: args.separator.clone(),
        });
        Mode::Pick
    } else {
        crate::store::duck::ensure(&env.fetcher)?;
        let dirs = crate::report::data::resolve(&env.project.runs_dir(), &args.run)?;
        Mode::Review(Box::new(studio::review::Review::open(&env.project, dirs)?))
    };
    studio::serve(mode, listen, thumbs, picker, similar)?;
    Ok(ExitCode::SUCCESS)
}

fn check(args: &Args) -> Result<()> {
    if args.prefix.is_empty()
        || args
            .prefix
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control() || c == '\0')
    {
        bail!(
            "--prefix {:?} must be a non-empty name without slashes",
            args.prefix
        );
    }
    if !(1..=12).contains(&args.width) {
        bail!(
            "--width {} is out of range; give 1 to 12 digits",
            args.width
        );
    }
    if args.separator.trim().is_empty() {
        bail!("--separator must hold something besides blanks (`, ` by default): tags may hold spaces");
    }
    if let Some(t) = &args.token {
        if let Err(e) = studio::guard::check_token(t) {
            bail!("--token (or IW_LAB_TOKEN): {e}");
        }
    }
    if args.separator.chars().any(|c| c.is_control()) {
        bail!("--separator may not hold control characters");
    }
    Ok(())
}

fn tag_mode(env: &Env, args: &Args, folder: &Path) -> Result<Mode> {
    let source = std::fs::canonicalize(folder)
        .with_context(|| format!("cannot open {}", folder.display()))?;
    if !source.is_dir() {
        bail!("{} is not a folder", source.display());
    }
    let out = match &args.out {
        Some(o) => {
            std::fs::create_dir_all(o).with_context(|| format!("cannot create {}", o.display()))?;
            std::fs::canonicalize(o)?
        }
        None => source.join("out"),
    };
    if out == source {
        bail!(
            "--out {} is the folder being tagged; the copies need a folder of their own (default: FOLDER/out)",
            out.display()
        );
    }
    let settings = session::Settings {
        source,
        prefix: args.prefix.clone(),
        width: args.width,
        separator: args.separator.clone(),
        moved: args.move_files,
        suggest: args.suggest.clone(),
    };
    let lock = session::lock(&out)?;
    let resumed = session::load(&out)?.is_some();
    let (s, report) = session::prepare(&settings, &out)?;
    for (file, why) in &report.problems {
        ui::warn(format!("{file}: {why}"));
    }
    let at = s.first_unfinished();
    ui::note(format!(
        "{} images in {} ({} new){}; {} of {} done",
        report.total,
        out.display(),
        report.added,
        match (resumed, at) {
            (true, Some(i)) => format!(", resuming at {}", s.items[i].name),
            _ => String::new(),
        },
        s.done(),
        s.items.len()
    ));
    let suggester = match &args.suggest {
        Some(name) => Some(suggester(env, name)?),
        None => None,
    };
    let t = studio::tagging::Tagging::new(out, s, suggester, Some(lock));
    t.write_master()
        .map_err(|e| anyhow::anyhow!("{}", e.body["error"]))?;
    Ok(Mode::Tag(Box::new(t)))
}

/// Suggestions from a model file (its tags above its score floor, ratings left out) or a
/// promoted config (its final tags, scored by its model).
fn suggester(env: &Env, name: &str) -> Result<Arc<studio::tagging::Suggester>> {
    let project = env.project.clone();
    let ctx = env.engine_context()?;
    let promoted = crate::production::promote::load(&env.project, name);
    if let (Ok(loaded), Err(_)) = (promoted, env.project.model_path(name)) {
        let model = loaded
            .config
            .resolve_model(&env.project, &loaded.path, &loaded.text)?;
        return Ok(Arc::new(move |file: &Path| {
            let req = crate::production::Request {
                paths: vec![file.to_path_buf()],
                write: None,
                dry_run: true,
                force: true,
                allow_drift: true,
            };
            let mut tags = Vec::new();
            let mut errors = Vec::new();
            crate::production::tag(&project, &loaded, &ctx, &req, |r| {
                tags = r.tags.clone();
                errors = r.errors.clone();
            })
            .map_err(|e| format!("{e:#}"))?;
            if tags.is_empty() && !errors.is_empty() {
                return Err(errors.join("; "));
            }
            // The config's final tags, shaded by its model's scores (cached by content).
            let scores = model_scores(&project, &model, file, &ctx);
            Ok(tags
                .into_iter()
                .map(|t| {
                    let s = crate::tags::normalise(&t)
                        .and_then(|k| scores.get(&k).copied())
                        .unwrap_or(1.0);
                    (t, s)
                })
                .collect())
        }));
    }
    let path = env.project.model_path(name)?;
    let model = crate::config::resolve::load_model(&env.project, &path)?;
    Ok(Arc::new(move |file: &Path| {
        let r = crate::runner::predict::predict(&project, &model, &[file.to_path_buf()], &ctx)
            .map_err(|e| format!("{e:#}"))?;
        let Some(r) = r.into_iter().next() else {
            return Ok(Vec::new());
        };
        if let Some(e) = r.error {
            return Err(e);
        }
        let floor = model.score_floor as f32;
        let mut tags: Vec<(String, f32)> = r
            .tags
            .into_iter()
            .filter(|(_, s, c)| *s >= floor && *c != crate::config::Category::Rating)
            .map(|(t, s, _)| (t, s))
            .collect();
        tags.sort_by(|a, b| b.1.total_cmp(&a.1));
        tags.truncate(40);
        Ok(tags)
    }))
}

/// A model's scores for one file by normalised tag (empty when it cannot be run).
fn model_scores(
    project: &crate::config::Project,
    model: &crate::config::Model,
    file: &Path,
    ctx: &Context,
) -> std::collections::HashMap<String, f32> {
    crate::runner::predict::predict(project, model, &[file.to_path_buf()], ctx)
        .ok()
        .and_then(|r| r.into_iter().next())
        .map(|r| {
            r.tags
                .into_iter()
                .filter_map(|(t, s, _)| crate::tags::normalise(&t).map(|k| (k, s)))
                .collect()
        })
        .unwrap_or_default()
}
