//! `iw-lab dupes TARGET`: exact and near-duplicate images by perceptual hash (or, with a
//! `clip` model, by embedding), grouped, each group with a suggested keeper. Nothing is ever deleted: `--script` prints the `mv`
//! commands that would set the others aside. `--not-duplicate A B` remembers a pair that is
//! not a duplicate (by content) so it is never shown again.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use super::target::{self, Target};
use super::Env;
use crate::imaging::perceptual;
use crate::similarity::dupes::{self, default_distance, Found, Item, NotDuplicates};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder, a dataset (file or name in datasets/), or a run.
    #[arg(required_unless_present = "not_duplicate")]
    pub target: Option<String>,
    /// Hash method: phash (default), phash16, dhash, dhash16, ahash, ahash16, blockhash,
    /// blockhash16.
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
    /// Largest distance of a near duplicate: Hamming bits for hashes (default per method;
    /// phash: 14 of 64), cosine distance for a `clip` model (default 0.05).
    #[arg(long, value_name = "N")]
    pub max_distance: Option<f64>,
    /// A `phash` or `clip` model file (or name in models/) instead of the built-in hashes.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// One JSON object: {"groups": [{"files", "keeper", "exact", "max_distance"}], "pairs", ...}.
    #[arg(long)]
    pub json: bool,
    /// Print a shell script that moves every non-keeper into `duplicates/` (nothing is run).
    #[arg(long, conflicts_with_all = ["json", "hashes"])]
    pub script: bool,
    /// Print each image's hash (with --json: {"hashes": [{"file", "hash"}]}).
    #[arg(long)]
    pub hashes: bool,
    /// Remember that these two files are not duplicates (by content), then exit.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["json", "script", "hashes"])]
    pub not_duplicate: Option<Vec<PathBuf>>,
}

/// Where the project remembers pairs that are not duplicates.
pub fn not_duplicates_file(env: &Env) -> PathBuf {
    dupes::not_duplicates_file(&env.project.state_dir())
}

/// The model of `--model NAME`: one that gives hashes or embeddings.
fn chosen_model(env: &Env, name: &str) -> Result<crate::config::Model> {
    let path = env.project.model_path(name)?;
    let m = crate::config::resolve::load_model(&env.project, &path)?;
    if !crate::engine::capabilities_of(&m).vectors {
        bail!(
            "model `{}` is a `{}` model, which gives no image hashes or embeddings; dupes needs a `phash` or `clip` model",
            m.name,
            m.kind.name()
        );
    }
    Ok(m)
}

/// The default cosine distance of near duplicates by embedding (docs/similarity.md).
pub const DEFAULT_COSINE: f64 = 0.05;

/// How near pairs are measured, for the output.
struct Measure {
    /// The hash method, or `cosine`.
    name: String,
    /// Bits of the hash (none for embeddings).
    bits: Option<u32>,
    /// The model (embeddings).
    model: Option<String>,
    max_distance: f64,
}

impl Measure {
    fn distance(&self, d: f64) -> serde_json::Value {
        if self.bits.is_some() {
            json!(d.round() as u64)
        } else {
            json!((d * 1e6).round() / 1e6)
        }
    }

    fn describe(&self, d: f64) -> String {
        match self.bits {
            Some(bits) => format!("{} ≤ {d} of {bits} bits", self.name),
            None => format!("cosine distance ≤ {d}"),
        }
    }
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    if let Some(pair) = &args.not_duplicate {
        return remember(env, &pair[0], &pair[1]);
    }
    let model = match &args.model {
        Some(name) => {
            let m = chosen_model(env, name)?;
            let caps = crate::engine::capabilities_of(&m);
            if caps.embed {
                if let Some(method) = &args.method {
                    bail!(
                        "--method {method} is a hash method; model `{}` compares embeddings",
                        m.name
                    );
                }
                return run_embedded(env, &args, &m);
            }
            Some(m)
        }
        None => None,
    };
    let method_name = args.method.as_deref().unwrap_or("phash");
    let Some(method) = perceptual::method(method_name) else {
        let names: Vec<&str> = perceptual::METHODS.iter().map(|m| m.name).collect();
        bail!(
            "unknown --method `{}`; choose one of {}",
            method_name,
            names.join(", ")
        );
    };
    let max_distance = match args.max_distance {
        Some(d) if d.fract() != 0.0 || d < 0.0 => {
            bail!("--max-distance {d}: a hash distance is a whole number of bits")
        }
        Some(d) if d > f64::from(method.bits()) => bail!(
            "--max-distance {d} is more than the {} bits of a {} hash",
            method.bits(),
            method.name
        ),
        Some(d) => d as u32,
        None => default_distance(method.name),
    };
    let target = target::resolve(env, args.target.as_deref().unwrap_or("."))?;
    let model =
        model.unwrap_or_else(|| crate::config::resolve::builtin_phash(&env.project, method.name));
    let ctx = env.engine_context()?;
    let label = format!("dupes-{}", model.name);
    let vectors =
        crate::runner::vectors::vectors_cached(&env.project, &model, &target.images, &ctx, &label)?;
    let (items, paths, mut unreadable) = items_of(&target, &vectors, method);
    unreadable.splice(0..0, target.unreadable.iter().cloned());
    let not_dupes = load_not_duplicates(env)?;
    if args.hashes {
        print_hashes(&args, method, &items, &unreadable);
    } else {
        let found = dupes::find(&items, max_distance, &not_dupes);
        let measure = Measure {
            name: method.name.to_string(),
            bits: Some(method.bits()),
            model: args.model.clone(),
            max_distance: f64::from(max_distance),
        };
        print_found(
            &args,
            &measure,
            &target,
            &items,
            &paths,
            &found,
            &unreadable,
        )?;
    }
    Ok(if unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn load_not_duplicates(env: &Env) -> Result<NotDuplicates> {
    let not_dupes = NotDuplicates::load(&not_duplicates_file(env))
        .with_context(|| format!("reading {}", not_duplicates_file(env).display()))?;
    if not_dupes.skipped > 0 {
        ui::warn(format!(
            "{}: {} unreadable line(s) skipped",
            not_duplicates_file(env).display(),
            not_dupes.skipped
        ));
    }
    Ok(not_dupes)
}

#[allow(clippy::too_many_arguments)]
fn print_found(
    args: &Args,
    measure: &Measure,
    target: &Target,
    items: &[Item],
    paths: &[PathBuf],
    found: &Found,
    unreadable: &[(String, String)],
) -> Result<()> {
    if args.script {
        print_script(target, items, paths, found)?;
    } else if args.json {
        ui::json_line(&to_json(measure, items, found, unreadable));
    } else {
        print_text(measure, items, found, unreadable);
    }
    Ok(())
}

/// `dupes --model M` with a `clip` model: near pairs by cosine distance of embeddings.
fn run_embedded(env: &Env, args: &Args, model: &crate::config::Model) -> Result<ExitCode> {
    if args.hashes {
        bail!(
            "--hashes prints perceptual hashes; model `{}` gives embeddings",
            model.name
        );
    }
    let max_distance = args.max_distance.unwrap_or(DEFAULT_COSINE);
    if !(0.0..=2.0).contains(&max_distance) {
        bail!("--max-distance {max_distance}: a cosine distance is from 0 to 2");
    }
    let target = target::resolve(env, args.target.as_deref().unwrap_or("."))?;
    let ctx = env.engine_context()?;
    let set = super::similar::embed_target(env, model, &target, &ctx)?;
    let plain = crate::runner::vectors::for_vectors(model);
    let fingerprint = crate::engine::identify(&plain, &ctx, true)?
        .context("model identity")?
        .fingerprint;
    let row_pairs =
        super::similar::near_rows(env, &fingerprint, &target.root, &set, max_distance as f32)?;
    let (mut items, mut paths) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for (_, members) in &set.rows {
        for &i in members {
            let img = &target.images[i];
            if !seen.insert(std::fs::canonicalize(&img.abs).unwrap_or(img.abs.clone())) {
                continue;
            }
            items.push(Item::of(img, Vec::new()));
            paths.push(img.abs.clone());
        }
    }
    let row_of: std::collections::HashMap<&str, usize> = set
        .rows
        .iter()
        .enumerate()
        .map(|(r, (h, _))| (h.as_str(), r))
        .collect();
    let not_dupes = load_not_duplicates(env)?;
    let found = dupes::find_with(&items, &not_dupes, |firsts| {
        let mut slot = vec![usize::MAX; set.rows.len()];
        for (x, &i) in firsts.iter().enumerate() {
            slot[row_of[items[i].content.as_str()]] = x;
        }
        row_pairs
            .iter()
            .map(|&(a, b, d)| (slot[a], slot[b], d))
            .filter(|&(a, b, _)| a != usize::MAX && b != usize::MAX)
            .collect()
    });
    let measure = Measure {
        name: "cosine".into(),
        bits: None,
        model: Some(model.name.clone()),
        max_distance,
    };
    print_found(args, &measure, &target, &items, &paths, &found, &set.failed)?;
    Ok(if set.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The images that have a hash of `method`, with their paths; the rest with why not.
#[allow(clippy::type_complexity)]
fn items_of(
    target: &Target,
    vectors: &crate::runner::vectors::Vectors,
    method: perceptual::Method,
) -> (Vec<Item>, Vec<PathBuf>, Vec<(String, String)>) {
    let (mut items, mut paths, mut unreadable) = (Vec::new(), Vec::new(), Vec::new());
    // A file reached twice (through a link) is one file, not a duplicate of itself.
    let mut seen = std::collections::HashSet::new();
    for (img, v) in target.images.iter().zip(&vectors.per_image) {
        if !seen.insert(std::fs::canonicalize(&img.abs).unwrap_or(img.abs.clone())) {
            continue;
        }
        let hex = match v {
            Ok(v) => v.hash(method.name).map(str::to_string),
            Err(e) => {
                unreadable.push((img.rel.clone(), e.clone()));
                continue;
            }
        };
        let Some(words) = hex.as_deref().and_then(perceptual::parse_hex) else {
            unreadable.push((img.rel.clone(), format!("no {} hash stored", method.name)));
            continue;
        };
        items.push(Item::of(img, words));
        paths.push(img.abs.clone());
    }
    (items, paths, unreadable)
}

fn remember(env: &Env, a: &Path, b: &Path) -> Result<ExitCode> {
    let hash = |p: &Path| -> Result<String> {
        let bytes = target::read_regular(p)?;
        Ok(crate::hashing::content_hash(&bytes))
    };
    let (ha, hb) = (hash(a)?, hash(b)?);
    if ha == hb {
        bail!(
            "{} and {} have the same bytes: they are duplicates whatever their names",
            a.display(),
            b.display()
        );
    }
    let file = not_duplicates_file(env);
    let (ta, tb) = (a.display().to_string(), b.display().to_string());
    NotDuplicates::remember(
        &file,
        (&ha, &ta),
        (&hb, &tb),
        &crate::store::time_now().iso(),
    )
    .with_context(|| format!("writing {}", file.display()))?;
    ui::note(format!(
        "remembered: {ta} and {tb} are not duplicates ({})",
        file.display()
    ));
    Ok(ExitCode::SUCCESS)
}

fn to_json(
    measure: &Measure,
    items: &[Item],
    found: &Found,
    unreadable: &[(String, String)],
) -> serde_json::Value {
    let groups: Vec<_> = found
        .groups
        .iter()
        .map(|g| {
            json!({
                "files": g.items.iter().map(|&i| &items[i].file).collect::<Vec<_>>(),
                "keeper": items[g.keeper].file,
                "exact": g.exact,
                "max_distance": measure.distance(g.max_distance),
            })
        })
        .collect();
    let pairs: Vec<_> = found
        .pairs
        .iter()
        .map(|p| json!({"a": items[p.a].file, "b": items[p.b].file, "distance": measure.distance(p.distance), "exact": p.exact}))
        .collect();
    json!({
        "method": measure.name,
        "bits": measure.bits,
        "model": measure.model,
        "max_distance": measure.distance(measure.max_distance),
        "images": items.len(),
        "groups": groups,
        "pairs": pairs,
        "pairs_complete": found.complete,
        "dismissed": found.dismissed,
        "unreadable": unreadable.iter().map(|(f, e)| json!({"file": f, "error": e})).collect::<Vec<_>>(),
    })
}

fn print_hashes(
    args: &Args,
    method: perceptual::Method,
    items: &[Item],
    unreadable: &[(String, String)],
) {
    if args.json {
        let hashes: Vec<_> = items
            .iter()
            .map(|it| {
                let bits: Vec<bool> = it
                    .hash
                    .iter()
                    .flat_map(|w| (0..64).rev().map(move |i| w >> i & 1 == 1))
                    .take(method.bits() as usize)
                    .collect();
                json!({"file": it.file, "hash": perceptual::to_hex(&bits)})
            })
            .collect();
        let bad: Vec<_> = unreadable
            .iter()
            .map(|(f, e)| json!({"file": f, "error": e}))
            .collect();
        ui::json_line(&json!({"method": method.name, "hashes": hashes, "unreadable": bad}));
        return;
    }
    for it in items {
        let hex: String = it.hash.iter().map(|w| format!("{w:016x}")).collect();
        ui::out(format!(
            "{}  {}",
            &hex[..(method.bits() / 4) as usize],
            it.file
        ));
    }
    for (f, e) in unreadable {
        ui::warn(format!("{f}: {e}"));
    }
}

fn describe(it: &Item) -> String {
    format!(
        "{}{}{}",
        it.format.as_deref().unwrap_or("?"),
        if it.pixels > 0 {
            format!(", {} px", it.pixels)
        } else {
            String::new()
        },
        if it.has_meta {
            ", has generation metadata"
        } else {
            ""
        }
    )
}

fn print_text(measure: &Measure, items: &[Item], found: &Found, unreadable: &[(String, String)]) {
    let exact = found.groups.iter().filter(|g| g.exact).count();
    let mut lines = vec![format!(
        "{} group(s) among {} images: {} exact (same bytes), {} near ({}){}",
        found.groups.len(),
        items.len(),
        exact,
        found.groups.len() - exact,
        measure.describe(measure.max_distance),
        if found.dismissed > 0 {
            format!("; {} pair(s) marked not duplicates", found.dismissed)
        } else {
            String::new()
        }
    )];
    for exact_pass in [true, false] {
        for g in found.groups.iter().filter(|g| g.exact == exact_pass) {
            lines.push(String::new());
            lines.push(if g.exact {
                "exact duplicates (same bytes):".to_string()
            } else {
                match measure.bits {
                    Some(_) => format!("near duplicates (up to {} bits apart):", g.max_distance),
                    None => format!(
                        "near duplicates (cosine distance up to {:.4}):",
                        g.max_distance
                    ),
                }
            });
            for &i in &g.items {
                let mark = if i == g.keeper { "keep" } else { "    " };
                lines.push(format!(
                    "  {mark}  {}  ({})",
                    items[i].file,
                    describe(&items[i])
                ));
            }
        }
    }
    ui::out(lines.join("\n"));
    for (f, e) in unreadable {
        ui::warn(format!("{f}: {e}"));
    }
}

/// A word for a POSIX shell: single-quoted bytes (`'` written as `'\''`).
pub(super) fn sh_quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

pub(super) fn os_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt as _;
    p.as_os_str().as_bytes().to_vec()
}

/// Whether moving `rel` (the file at `abs`) moves something inside the folder: its folder,
/// with links resolved, is where `rel` says it is (not reached through a link elsewhere).
fn movable(root: &Path, abs: &Path, rel: &Path) -> bool {
    let parent = abs.parent().and_then(|p| std::fs::canonicalize(p).ok());
    let expected = root.join(rel.parent().unwrap_or(Path::new("")));
    parent.is_some_and(|p| p == expected)
}

/// A script that moves every file but each group's keeper into `duplicates/` (keeping its
/// sub-folders), never overwriting (`mv -n`).
fn print_script(target: &Target, items: &[Item], paths: &[PathBuf], found: &Found) -> Result<()> {
    let mut out: Vec<u8> = Vec::new();
    out.extend_from_slice(b"#!/bin/sh\n# Written by iw-lab dupes: moves all but the suggested keeper of each group into\n# duplicates/ (nothing is deleted; mv -n never overwrites; a file already gone is skipped).\n# Review before running.\ncd -- ");
    out.extend(sh_quote(&os_bytes(&target.root)));
    out.extend_from_slice(b" || exit 1\n");
    let root = std::fs::canonicalize(&target.root).unwrap_or(target.root.clone());
    for g in &found.groups {
        out.extend_from_slice(
            format!(
                "# keep {}\n",
                items[g.keeper].file.replace(['\n', '\r'], "?")
            )
            .as_bytes(),
        );
        for &i in g.items.iter().filter(|&&i| i != g.keeper) {
            let rel = paths[i].strip_prefix(&target.root).unwrap_or(&paths[i]);
            if !movable(&root, &paths[i], rel) {
                out.extend_from_slice(b"# not moved (reached through a link out of the folder): ");
                out.extend_from_slice(items[i].file.replace(['\n', '\r'], "?").as_bytes());
                out.push(b'\n');
                continue;
            }
            let dest = Path::new("duplicates").join(rel);
            let dir = dest.parent().unwrap_or(Path::new("duplicates"));
            let (src, dest, dir) = (
                sh_quote(&os_bytes(rel)),
                sh_quote(&os_bytes(&dest)),
                sh_quote(&os_bytes(dir)),
            );
            let line: [&[u8]; 9] = [
                b"if [ -e ",
                &src,
                b" ] || [ -L ",
                &src,
                b" ]; then mkdir -p -- ",
                &dir,
                b" && mv -n -- ",
                &src,
                b" ",
            ];
            for part in line {
                out.extend_from_slice(part);
            }
            out.extend_from_slice(&dest);
            out.extend_from_slice(b"; fi\n");
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}
