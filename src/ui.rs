//! Everything iw-lab prints goes through here, so `--quiet` and `--json` stay honest.
//!
//! Owns: the quiet switch, progress bars (hidden when stderr is not a terminal or when quiet),
//! notes and warnings on stderr, and results on stdout (where a closed pipe ends the program
//! quietly, like ripgrep). Commands decide *what* to print; this module decides *whether* and
//! *where*.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences notes and progress bars (results on stdout still print).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn interactive() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// A progress bar with a count, rate and ETA; hidden when not interactive.
pub fn progress(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    if interactive() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.cyan.bold} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    bar.set_prefix(label.to_string());
    bar
}

/// A byte-count progress bar for downloads; hidden when not interactive.
pub fn download_progress(len: Option<u64>, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::hidden());
    if interactive() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.cyan.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    }
    bar.set_prefix(label.to_string());
    bar
}

/// A note on stderr (suppressed by `--quiet`).
pub fn note(msg: impl AsRef<str>) {
    if !quiet() {
        eprintln!("{}", msg.as_ref());
    }
}

/// A warning on stderr (always shown).
pub fn warn(msg: impl AsRef<str>) {
    eprintln!("warning: {}", msg.as_ref());
}

/// Writes a result to stdout. A closed pipe (`iw-lab ... | head`) exits quietly with 0.
pub fn out(text: impl AsRef<str>) {
    out_raw(format!("{}\n", text.as_ref()));
}

/// Writes a result to stdout exactly as given, without adding a newline (file contents that
/// must pipe unchanged). A closed pipe exits quietly with 0.
pub fn out_raw(text: impl AsRef<str>) {
    let mut stdout = std::io::stdout().lock();
    let res = stdout
        .write_all(text.as_ref().as_bytes())
        .and_then(|_| stdout.flush());
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Writes one JSON value as a line on stdout.
pub fn json_line(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(s) => out(s),
        Err(e) => warn(format!("could not serialise output: {e}")),
    }
}
