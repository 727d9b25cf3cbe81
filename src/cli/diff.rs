//! `iw-lab diff RUN[:VARIANT] RUN[:VARIANT]`: what changed between two variants of one run or
//! of two runs (images matched by content hash): tags gained and lost per image and per tag,
//! precision, recall and support per tag, the images that changed most.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::analyze::{check_threshold, check_variant, threshold_of};
use super::table::{num, Table};
use super::Env;
use crate::analysis::diff;
use crate::runner::scoring::load_variant;
use crate::store::{self, Manifest};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first side, A: a run (id, prefix, `latest`, folder), optionally `:VARIANT`
    /// (default: the run's best variant, else its first).
    pub a: String,
    /// The second side, B, the same way.
    pub b: String,
    /// Threshold for both sides (default: each variant's first threshold).
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
    /// Images listed (those that changed most).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub top: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn split(reference: &str) -> (&str, Option<&str>) {
    match reference.rsplit_once(':') {
        Some((run, v)) if !run.is_empty() && !v.is_empty() && !v.contains('/') => (run, Some(v)),
        _ => (reference, None),
    }
}

/// One side of the diff: its run, the run's manifest, the variant and its threshold.
struct Chosen {
    dir: store::RunDir,
    manifest: Manifest,
    variant: String,
    threshold: f64,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    if let Some(t) = args.threshold {
        check_threshold(t)?;
    }
    let runs_dir = env.project.runs_dir();
    let sides = [
        choose(&runs_dir, &args.a, args.threshold)?,
        choose(&runs_dir, &args.b, args.threshold)?,
    ];
    crate::store::duck::ensure(&env.fetcher)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let mut loaded = Vec::new();
    for s in &sides {
        store::tables::open_run(&conn, &s.dir)?;
        loaded.push(load_variant(
            &conn,
            s.manifest.dataset.ground_truth.as_deref(),
            &s.variant,
            false,
        )?);
    }
    let (sa, sb) = (&sides[0], &sides[1]);
    let Some(d) = diff::diff(
        (&loaded[0], &sa.manifest.run_id, sa.threshold),
        (&loaded[1], &sb.manifest.run_id, sb.threshold),
        args.top,
    ) else {
        bail!(
            "{} ({}) and {} ({}) share no images (matched by content hash)",
            args.a,
            sa.variant,
            args.b,
            sb.variant
        );
    };
    if args.json {
        ui::json_line(&d);
        return Ok(ExitCode::SUCCESS);
    }
    ui::out(render(&d, args.top));
    Ok(ExitCode::SUCCESS)
}

/// The side `RUN[:VARIANT]` names: the variant named, else the run's best, else its first.
fn choose(runs_dir: &std::path::Path, reference: &str, threshold: Option<f64>) -> Result<Chosen> {
    let (r, v) = split(reference);
    let dir = store::resolve_run(runs_dir, r)?;
    let manifest = Manifest::read(&dir.manifest_path())?;
    let variant = match v {
        Some(v) => {
            check_variant(&manifest, v)?;
            v.to_string()
        }
        None => match (&manifest.best, manifest.variants.first()) {
            (Some(b), _) => b.variant.clone(),
            (None, Some(v)) => v.name.clone(),
            (None, None) => bail!("run {} has no variants", manifest.run_id),
        },
    };
    let threshold = threshold_of(&manifest, &variant, threshold);
    Ok(Chosen {
        dir,
        manifest,
        variant,
        threshold,
    })
}

/// The diff as text: the sides and totals, the `top` tags that changed most, the images.
fn render(d: &diff::Diff, top: usize) -> String {
    let side = |s: &diff::Side| format!("{}:{} @ {}", s.run_id, s.variant, s.threshold);
    let mut out = vec![format!(
        "A = {}\nB = {}\n{} shared images ({} only in A, {} only in B); {} changed: {} tags gained, {} lost",
        side(&d.a),
        side(&d.b),
        d.shared_images,
        d.only_a,
        d.only_b,
        d.images_changed,
        d.tags_gained,
        d.tags_lost
    )];
    out.push(format!(
        "micro F1 over labelled shared images: A {} → B {}",
        num(Some(d.a.micro.f1)),
        num(Some(d.b.micro.f1))
    ));
    let t = tag_table(d, top);
    if !t.is_empty() {
        out.push(format!("\ntags that changed most\n{}", t.render()));
    }
    if !d.images.is_empty() {
        out.push("\nimages that changed most".into());
        for i in &d.images {
            let mut parts = Vec::new();
            if !i.gained.is_empty() {
                parts.push(format!("+ {}", i.gained.join(", ")));
            }
            if !i.lost.is_empty() {
                parts.push(format!("- {}", i.lost.join(", ")));
            }
            out.push(format!("  {}: {}", i.path_b, parts.join("; ")));
        }
    }
    out.join("\n")
}

/// The `top` tags that changed most.
fn tag_table(d: &diff::Diff, top: usize) -> Table {
    let mut t = Table::new(&[
        "tag",
        "gained",
        "lost",
        "ΔP",
        "ΔR",
        "support A",
        "support B",
    ]);
    for c in d.tags.iter().take(top) {
        t.row(vec![
            c.tag.clone(),
            c.gained.to_string(),
            c.lost.to_string(),
            format!("{:+.3}", c.d_precision),
            format!("{:+.3}", c.d_recall),
            c.support_a.to_string(),
            c.support_b.to_string(),
        ]);
    }
    t
}
