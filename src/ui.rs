//! Everything iw-lab prints goes through here, so `--quiet` and `--json` stay honest.
//!
//! Owns: the quiet switch, progress bars (hidden when stderr is not a terminal or when quiet),
//! notes and warnings on stderr, and results on stdout (where a closed pipe ends the program
//! quietly, like ripgrep). Commands decide *what* to print; this module decides *whether* and
//! *where*.
//!
//! Human-readable text is made [`visible`]: control characters and bidirectional overrides
//! taken from files (a PNG `parameters` chunk holding terminal escape sequences, say) are
//! printed as `\u{1b}` escapes, never sent to the terminal. JSON output ([`json_line`]) is
//! exact: its serialiser escapes what JSON requires and nothing else.

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

/// Whether a character would act on a terminal instead of being shown: C0 controls other than
/// line feed and tab, DEL, C1 controls, and the bidirectional embeddings, overrides and
/// isolates (which reorder what follows them).
fn acts_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character that would act on a terminal written as `\u{..}`.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(acts_on_terminal) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acts_on_terminal(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
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
    bar.set_prefix(visible(label).into_owned());
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
        eprintln!("{}", visible(msg.as_ref()));
    }
}

/// A warning on stderr (always shown).
pub fn warn(msg: impl AsRef<str>) {
    eprintln!("warning: {}", visible(msg.as_ref()));
}

/// An error line on stderr (always shown).
pub fn error_line(msg: impl AsRef<str>) {
    eprintln!("{}", visible(msg.as_ref()));
}

/// Writes a human-readable result line to stdout, made [`visible`]. A closed pipe
/// (`iw-lab ... | head`) exits quietly with 0.
pub fn out(text: impl AsRef<str>) {
    out_raw(format!("{}\n", visible(text.as_ref())));
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

/// Writes one JSON value as a line on stdout, exactly as serialised.
pub fn json_line(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(s) => out_raw(format!("{s}\n")),
        Err(e) => warn(format!("could not serialise output: {e}")),
    }
}
