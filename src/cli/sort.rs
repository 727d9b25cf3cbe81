//! `iw-lab sort suggest|apply|undo|evaluate`: which library folder each new image belongs
//! in, learned from the images already filed (docs/sort.md).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::table::Table;
use super::Env;
use crate::config::Model;
use crate::sorting::{self, journal, Described, Features, Suggested};
use crate::ui;

/// What every sort command shares.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The library: its sub-folders are the places images go.
    #[arg(long, value_name = "ROOT")]
    pub library: PathBuf,
    /// A tagger whose tags are features (file, or a name in models/); repeatable. Default:
    /// every promoted production config's model.
    #[arg(long, short)]
    pub model: Vec<String>,
    /// Tags scoring below this are not features.
    #[arg(long, default_value_t = 0.35)]
    pub min_score: f32,
    /// A `clip` model (file, or a name in models/): the library's images nearest a new one by
    /// its embedding vote for their folders too.
    #[arg(long, value_name = "CLIP")]
    pub similar: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum SortCommand {
    /// Suggest a library folder for each image of FOLDER, with a confidence.
    Suggest {
        folder: PathBuf,
        #[command(flatten)]
        common: Common,
        /// Folders suggested per image.
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// One JSON object per image (an `apply --plan` file; edit `folder` to correct).
        #[arg(long)]
        json: bool,
    },
    /// Move (or copy) the images of FOLDER into their folders, once confirmed.
    Apply {
        folder: PathBuf,
        #[command(flatten)]
        common: Common,
        /// Confirm every suggestion at or above --min-confidence without asking.
        #[arg(long)]
        yes: bool,
        /// Copy instead of moving.
        #[arg(long)]
        copy: bool,
        /// Leave images whose best confidence is below this where they are.
        #[arg(long, default_value_t = 0.0)]
        min_confidence: f32,
        /// Place as this file says (`sort suggest --json` output, `folder` edited).
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
    },
    /// Put back every file of the last `apply`.
    Undo {
        #[arg(long, value_name = "ROOT")]
        library: PathBuf,
    },
    /// Top-1 and top-3 accuracy on a held-out share of the library, against baselines.
    Evaluate {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 0.3)]
        test_share: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(env: &Env, cmd: SortCommand) -> Result<ExitCode> {
    crate::store::duck::ensure(&env.fetcher)?;
    let common = match &cmd {
        SortCommand::Suggest { common, .. }
        | SortCommand::Apply { common, .. }
        | SortCommand::Evaluate { common, .. } => Some(common),
        SortCommand::Undo { .. } => None,
    };
    if common.is_some_and(|c| !(0.0..=1.0).contains(&c.min_score)) {
        bail!("--min-score must be from 0 to 1");
    }
    match cmd {
        SortCommand::Suggest {
            folder,
            common,
            top,
            json,
        } => {
            let s = suggestions(env, &folder, &common, top)?;
            print(&s, json);
            Ok(ExitCode::SUCCESS)
        }
        SortCommand::Apply {
            folder,
            common,
            yes,
            copy,
            min_confidence,
            plan,
        } => {
            if !(0.0..=1.0).contains(&min_confidence) {
                bail!("--min-confidence must be from 0 to 1");
            }
            let s = match &plan {
                Some(p) => read_plan(p)?,
                None => suggestions(env, &folder, &common, 3)?,
            };
            let (folder, root) = places(&folder, &common.library)?;
            apply(&root, &folder, s, yes, copy, min_confidence)
        }
        SortCommand::Undo { library } => undo(&library),
        SortCommand::Evaluate {
            common,
            test_share,
            seed,
            json,
        } => {
            if !(0.0..1.0).contains(&test_share) || test_share == 0.0 {
                bail!("--test-share must be above 0 and below 1");
            }
            let library = describe_library(env, &common)?;
            let e = sorting::evaluate(&library, test_share, seed);
            if json {
                ui::json_line(&json!(e));
            } else {
                let mut t = Table::new(&["method", "top-1", "top-3"]);
                t.row(vec![
                    "naive Bayes + kNN".into(),
                    format!("{:.3}", e.top1),
                    format!("{:.3}", e.top3),
                ]);
                t.row(vec![
                    "most frequent folder".into(),
                    format!("{:.3}", e.baseline_frequent_top1),
                    format!("{:.3}", e.baseline_frequent_top3),
                ]);
                t.row(vec![
                    "last similar image".into(),
                    format!("{:.3}", e.baseline_last_similar_top1),
                    String::new(),
                ]);
                ui::out(t.render());
                ui::out(format!("{} held-out images", e.n));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn undo(library: &Path) -> Result<ExitCode> {
    let library = std::fs::canonicalize(library)
        .with_context(|| format!("cannot open the library {}", library.display()))?;
    let _lock = journal::lock(&library)?;
    let lines = journal::read(&library)?;
    let Some((batch, entries)) = journal::last_batch(&lines) else {
        bail!(
            "nothing to undo: {} has no placements left",
            journal::path(&library).display()
        );
    };
    let (done, left) = journal::undo(&library, &batch, &entries)?;
    for l in &left {
        ui::warn(l);
    }
    ui::out(format!(
        "undid batch {batch}: {done} files put back, {} left alone",
        left.len()
    ));
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The taggers: `--model`s, else every promoted config's model.
fn models(env: &Env, common: &Common) -> Result<Vec<Model>> {
    if !common.model.is_empty() {
        return common
            .model
            .iter()
            .map(|m| {
                let path = env.project.model_path(m)?;
                Ok(crate::config::resolve::load_model(&env.project, &path)?)
            })
            .collect();
    }
    let mut out = Vec::new();
    for alias in crate::production::promote::aliases(&env.project) {
        let loaded = crate::production::promote::load(&env.project, &alias)?;
        out.push(
            loaded
                .config
                .resolve_model(&env.project, &loaded.path, &loaded.text)?,
        );
    }
    Ok(out)
}

/// Runs `f` with the features' makers: the engine context and the taggers, loaded once.
fn with_features<T>(
    env: &Env,
    common: &Common,
    f: impl FnOnce(&Features<'_>) -> Result<T>,
) -> Result<T> {
    let ctx = env.engine_context()?;
    let models = models(env, common)?;
    let embedder = match &common.similar {
        Some(name) => Some(super::similar::embedding_model(env, name)?),
        None => None,
    };
    f(&Features {
        project: &env.project,
        ctx: &ctx,
        models: &models,
        min_score: common.min_score,
        embedder: embedder.as_ref(),
    })
}

fn describe_library(env: &Env, common: &Common) -> Result<Vec<Described>> {
    with_features(env, common, |f| {
        sorting::describe(f, sorting::scan(&env.project, &common.library)?)
    })
}

/// FOLDER and the library, absolute; refused when FOLDER holds the library (its images would
/// be "new" images and the library's own training set at once).
fn places(folder: &Path, library: &Path) -> Result<(PathBuf, PathBuf)> {
    let canon =
        |p: &Path| std::fs::canonicalize(p).with_context(|| format!("cannot open {}", p.display()));
    let (folder, library) = (canon(folder)?, canon(library)?);
    if library.starts_with(&folder) {
        bail!(
            "{} holds the library {}: sort the images of a folder outside it, or of one folder inside it",
            folder.display(),
            library.display()
        );
    }
    Ok((folder, library))
}

fn suggestions(env: &Env, folder: &Path, common: &Common, top: usize) -> Result<Vec<Suggested>> {
    let (folder, root) = places(folder, &common.library)?;
    let folder = folder.as_path();
    with_features(env, common, |f| {
        let mut library = sorting::describe(f, sorting::scan(&env.project, &root)?)?;
        // An inbox inside the library is not part of what the library teaches.
        library.retain(|d| !d.image.abs.starts_with(folder));
        let corrected = journal::corrections(&journal::read(&common.library)?);
        let model = sorting::train(&library, &corrected)?;
        let new = sorting::describe(f, sorting::scan(&env.project, folder)?)?;
        if new.is_empty() {
            bail!("{} holds no images", folder.display());
        }
        Ok(sorting::suggest(&model, &new, top))
    })
}

fn print(s: &[Suggested], json: bool) {
    if json {
        for x in s {
            ui::json_line(&json!(x));
        }
        return;
    }
    let mut t = Table::new(&["file", "folder", "confidence", "then", "because"]);
    for x in s {
        let first = x.folders.first();
        t.row(vec![
            x.file.clone(),
            first.map(|f| f.0.clone()).unwrap_or_default(),
            first.map(|f| format!("{:.3}", f.1)).unwrap_or_default(),
            x.folders
                .iter()
                .skip(1)
                .map(|(f, c)| format!("{f} {c:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            x.reasons.join(", "),
        ]);
    }
    ui::out(t.render());
}

fn read_plan(path: &Path) -> Result<Vec<Suggested>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let (Some(file), Some(hash)) = (field("file"), field("hash")) else {
            bail!(
                "{} line {}: needs `file` and `hash` (the output of `sort suggest --json`)",
                path.display(),
                i + 1
            );
        };
        let folders: Vec<(String, f32)> =
            serde_json::from_value(v.get("folders").cloned().unwrap_or_default())
                .unwrap_or_default();
        out.push(Suggested {
            file,
            hash,
            folders,
            reasons: Vec::new(),
            folder: field("folder"),
        });
    }
    Ok(out)
}

/// A library folder as given: relative, no `..`, no empty or hidden parts.
fn check_folder(folder: &str) -> Result<()> {
    let bad = folder.is_empty()
        || folder.starts_with('/')
        || folder
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == ".." || p.starts_with('.'))
        || folder.chars().any(char::is_control);
    if bad {
        bail!("{folder:?} is not a folder inside the library");
    }
    Ok(())
}

/// The folder to use for one image: confirmed by `--yes`, or asked on the terminal.
fn confirm(s: &Suggested, yes: bool, stdin: &mut impl std::io::BufRead) -> Result<Option<String>> {
    let Some(first) = s.folder.clone() else {
        return Ok(None);
    };
    if yes {
        return Ok(Some(first));
    }
    let others: Vec<String> = s
        .folders
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, (f, c))| format!("{i}={f} ({c:.2})"))
        .collect();
    eprint!(
        "{} → {first}? [y]es / [n]o / {} / or type a folder: ",
        s.file,
        others.join(" / ")
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    if stdin.read_line(&mut answer)? == 0 {
        bail!("no answer (end of input); nothing more placed");
    }
    let a = answer.trim();
    Ok(match a {
        "" | "y" | "yes" => Some(first),
        "n" | "no" => None,
        n if n
            .parse::<usize>()
            .is_ok_and(|i| i >= 1 && i < s.folders.len()) =>
        {
            Some(s.folders[n.parse::<usize>().unwrap_or(0)].0.clone())
        }
        other => Some(other.trim_matches('/').to_string()),
    })
}

fn apply(
    root: &Path,
    inbox: &Path,
    s: Vec<Suggested>,
    yes: bool,
    copy: bool,
    min_confidence: f32,
) -> Result<ExitCode> {
    if !yes && !std::io::stdin().is_terminal() {
        bail!("`sort apply` moves files only when confirmed: run it in a terminal to answer per image, or pass --yes");
    }
    let _lock = journal::lock(root)?;
    let batch = format!("{}-{}", crate::store::time_now().iso(), std::process::id());
    let mut stdin = std::io::stdin().lock();
    let (mut placed, mut failed) = (0, 0);
    for x in &s {
        let best = x.folders.first().map_or(1.0, |f| f.1);
        if yes && x.folder == x.folders.first().map(|f| f.0.clone()) && best < min_confidence {
            continue;
        }
        let Some(folder) = confirm(x, yes, &mut stdin)? else {
            continue;
        };
        match place_one(root, inbox, x, &folder, &batch, copy) {
            Ok(true) => placed += 1,
            Ok(false) => {}
            Err(e) => {
                ui::warn(format!("{e:#}; left where it is"));
                failed += 1;
            }
        }
    }
    ui::out(format!("placed {placed} images ({failed} left where they were); `iw-lab sort undo --library {}` puts them back", root.display()));
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Places one image in `folder` (journal first); `Ok(false)` when it is there already.
fn place_one(
    root: &Path,
    inbox: &Path,
    x: &Suggested,
    folder: &str,
    batch: &str,
    copy: bool,
) -> Result<bool> {
    check_folder(folder)?;
    let from = crate::dataset::names::rel_path(&x.file);
    let shown = from.display();
    // Only regular files of the inbox: a plan naming anything else, or a symlink (moving it
    // would leave a dangling link), is refused.
    let meta = std::fs::symlink_metadata(&from).with_context(|| format!("{shown}"))?;
    if !meta.is_file() {
        bail!("{shown} is not a regular file (a symlink, a folder or a device)");
    }
    if !from.starts_with(inbox) {
        bail!("{shown} is not in {}", inbox.display());
    }
    let bytes = std::fs::read(&from).with_context(|| format!("{shown}"))?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    drop(bytes);
    if hash != x.hash {
        bail!("{shown} changed since it was suggested");
    }
    let dir = root.join(crate::dataset::names::rel_path(folder));
    if from.parent() == Some(dir.as_path()) {
        return Ok(false);
    }
    let to = free_name(&dir, &from);
    let text = |p: &Path| crate::dataset::names::rel_text(p);
    let entry = journal::Entry {
        batch: batch.to_string(),
        op: if copy { "copy" } else { "move" }.into(),
        from: text(&from),
        to: text(&to),
        hash,
        folder: folder.to_string(),
        suggested: x.folders.first().map(|f| f.0.clone()),
        confidence: x.folders.first().map(|f| f.1),
        at: crate::store::time_now().iso(),
    };
    journal::append(root, &journal::Line::Placed(entry))?;
    if let Err(e) = journal::place(&from, &to, copy) {
        let failed = journal::Line::Failed {
            failed: batch.to_string(),
            to: text(&to),
        };
        journal::append(root, &failed)?;
        return Err(e);
    }
    Ok(true)
}

/// `dir/NAME`, or `dir/STEM-2.EXT`… when that exists: nothing is overwritten.
fn free_name(dir: &Path, from: &Path) -> PathBuf {
    let name = from
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let first = dir.join(&name);
    if !first.exists() {
        return first;
    }
    let stem = from
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = from
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2..)
        .map(|i| dir.join(format!("{stem}-{i}{ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}
