//! `iw-lab report RUN [RUN...]`: one HTML file with the leaderboard, charts, image grid and
//! diff view of one run or a comparison of runs (docs/report.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use super::analyze::{check_confidence, check_threshold};
use super::Env;
use crate::report::{self, ThumbMode};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs: id, unique prefix, `latest`, or a run folder. Several runs are compared on one
    /// page (images matched by path and content hash; variants named `RUN:VARIANT`).
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Ground truth to score against: the dataset's as it is now (`current`, after studio
    /// edits) or the run's own copy from when it ran (`snapshot`).
    #[arg(long, value_enum, default_value = "current", value_name = "WHICH")]
    pub ground_truth: crate::runner::truth::Choice,
    /// The HTML file to write (default: reports/<first run id>.html).
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Page title.
    #[arg(long)]
    pub title: Option<String>,
    /// One threshold for every variant's grid, tag statistics, groups and intervals (default:
    /// each variant's experiment threshold that scores best under the run's goal).
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
    /// Bootstrap resamples (over images) for the intervals; 0 = none.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub bootstrap: usize,
    /// Seed of the bootstrap's draws.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95, value_name = "C")]
    pub confidence: f64,
    /// Thumbnails inside the HTML file (embed), in a folder beside it (folder: NAME_files/),
    /// none, or auto: embed up to 2,000 images, folder beyond.
    #[arg(long, value_enum, default_value_t = ThumbMode::Auto)]
    pub thumbs: ThumbMode,
    /// Longest side of a thumbnail, in pixels.
    #[arg(long, default_value_t = crate::imaging::thumbs::DEFAULT_SIZE, value_name = "PX")]
    pub thumb_size: u32,
    /// Image cards per page of the grid.
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub page_size: usize,
    /// Leave out the duplicates section (it hashes every image once; later reports reuse the
    /// hashes).
    #[arg(long)]
    pub no_dupes: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    if let Some(t) = args.threshold {
        check_threshold(t)?;
    }
    check_confidence(args.confidence)?;
    if !(16..=1024).contains(&args.thumb_size) {
        bail!(
            "thumbnail size {} is out of range; expected 16 to 1024 pixels",
            args.thumb_size
        );
    }
    if args.page_size == 0 {
        bail!("page size must be at least 1");
    }
    let dirs = report::data::resolve(&env.project.runs_dir(), &args.runs)?;
    let out = args.out.clone().unwrap_or_else(|| {
        env.project
            .root
            .join("reports")
            .join(format!("{}.html", dirs[0].id))
    });
    if out.is_dir() {
        bail!(
            "{} is a folder; --out takes the HTML file to write",
            out.display()
        );
    }
    crate::store::duck::ensure(&env.fetcher)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    let opts = report::Options {
        out,
        title: args.title.clone(),
        threshold: args.threshold,
        bootstrap: args.bootstrap,
        seed: args.seed,
        confidence: args.confidence,
        thumbs: args.thumbs,
        thumb_size: args.thumb_size,
        page_size: args.page_size,
        thumb_cache: env.project.state_dir().join("thumbs"),
        project: env.project.clone(),
        ground_truth: args.ground_truth,
        dupes: (!args.no_dupes).then(|| env.fetcher.clone()),
    };
    let summary = report::build(&conn, dirs, &opts)?;
    if env.verbose {
        let steps: Vec<String> = summary
            .steps
            .iter()
            .map(|(k, s)| format!("{k} {s:.3} s"))
            .collect();
        ui::note(format!("timings: {}", steps.join(", ")));
    }
    if args.json {
        ui::json_line(&summary);
    } else {
        ui::out(format!(
            "wrote {} ({:.1} MB): {} variant(s), {} image(s), {} thumbnail(s){} in {:.2} s",
            summary.out.display(),
            summary.bytes as f64 / 1e6,
            summary.variants,
            summary.images,
            summary.thumbnails,
            if summary.thumbnails_missing > 0 {
                format!(", {} missing", summary.thumbnails_missing)
            } else {
                String::new()
            },
            summary.seconds
        ));
    }
    Ok(ExitCode::SUCCESS)
}
