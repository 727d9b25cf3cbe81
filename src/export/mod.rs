//! Sidecar writers for the production pass: `.txt` (LoRA training captions), XMP (photo
//! tools) and JSON (scores and provenance).
//!
//! Each writer is pure: given the image, the sidecar's current content (if any), what iw-lab
//! wrote there last time and the decided tags, it returns the new content and the tags gained
//! and lost. `write_atomic` puts content on disk (temporary file in the same folder, fsync,
//! rename), so a sidecar is never half-written. Formats are documented in `docs/outputs.md`.

pub mod encoding;
pub mod json;
pub mod txt;
pub mod xmp;

use std::io::Write;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use json::JsonOptions;
pub use txt::TxtOptions;
pub use xmp::XmpOptions;

/// The sidecar kinds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum WriterKind {
    Txt,
    Xmp,
    Json,
}

impl WriterKind {
    pub fn name(self) -> &'static str {
        match self {
            WriterKind::Txt => "txt",
            WriterKind::Xmp => "xmp",
            WriterKind::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<WriterKind> {
        match s.trim().to_lowercase().as_str() {
            "txt" => Some(WriterKind::Txt),
            "xmp" => Some(WriterKind::Xmp),
            "json" => Some(WriterKind::Json),
            _ => None,
        }
    }
}

/// Writer settings of a production config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Writers {
    /// Sidecars written when `iw-lab tag` is not given `--write` (default: txt).
    #[serde(default = "default_write")]
    pub write: Vec<WriterKind>,
    #[serde(default)]
    pub txt: TxtOptions,
    #[serde(default)]
    pub xmp: XmpOptions,
    #[serde(default)]
    pub json: JsonOptions,
}

fn default_write() -> Vec<WriterKind> {
    vec![WriterKind::Txt]
}

impl Default for Writers {
    fn default() -> Self {
        Writers {
            write: default_write(),
            txt: TxtOptions::default(),
            xmp: XmpOptions::default(),
            json: JsonOptions::default(),
        }
    }
}

/// Extensions of image formats (read by iw-lab or by other tools): a sidecar may never be
/// named like one, or it would replace an image.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "jpe", "jfif", "webp", "gif", "bmp", "dib", "tif", "tiff", "avif",
    "heic", "heif", "jxl", "jp2", "ico", "psd", "svg", "tga", "exr", "hdr", "ppm", "pgm", "pbm",
    "pnm", "dng", "cr2", "cr3", "nef", "arw", "orf", "rw2", "raf", "srw", "pef", "raw",
];

impl Writers {
    /// Checks the writer options: the key and the problem of the first bad one. Sidecar
    /// extensions must be plain (no path separator), non-empty, distinct, and never those of
    /// an image format or of the XMP sidecar.
    pub fn check(&self) -> Result<(), (String, String)> {
        let txt = check_extension("writers.txt.extension", &self.txt.extension)?;
        let json = check_extension("writers.json.extension", &self.json.extension)?;
        if txt == json {
            return Err((
                "writers.json.extension".into(),
                format!("`.{json}` is also the .txt writer's extension: both would write one file"),
            ));
        }
        if self.xmp.prefix.contains(['\n', '\r', '\0']) {
            return Err((
                "writers.xmp.prefix".into(),
                "the prefix holds a line break or NUL".into(),
            ));
        }
        Ok(())
    }
}

/// A sidecar extension's bare form (`.txt` → `txt`, lower-cased), or why it is refused.
fn check_extension(key: &str, ext: &str) -> Result<String, (String, String)> {
    let bare = ext.trim_start_matches('.');
    let bad = |why: String| Err((key.to_string(), format!("`{ext}` {why}")));
    if bare.is_empty() {
        return bad("is empty: the sidecar would have no extension".into());
    }
    if bare.contains(['/', '\\', '\0']) || bare.split('.').any(|p| p.is_empty()) {
        return bad("is not a plain extension (a path separator, NUL or empty part)".into());
    }
    let last = bare.rsplit('.').next().unwrap_or(bare).to_lowercase();
    if IMAGE_EXTENSIONS.contains(&last.as_str()) {
        return bad(format!(
            "is an image format's extension: a sidecar named `*.{last}` would replace images"
        ));
    }
    if last == "xmp" {
        return bad("is the XMP sidecar's extension".into());
    }
    Ok(bare.to_lowercase())
}

/// A writer's result for one image.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub path: PathBuf,
    pub content: Vec<u8>,
    /// Tags the sidecar gains and loses (normalised), for `--dry-run`.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Tags iw-lab itself put there beyond what was already present (remembered so a later
    /// pass can replace them and keep the user's own).
    pub ours: Vec<String>,
    /// Whether the content is byte-identical to what is on disk.
    pub unchanged: bool,
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// An existing file's permissions are kept; a new file gets 0666 less the umask.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    stage(path, bytes)?.commit()
}

/// A sidecar written to its temporary file but not yet in place. Committing many staged
/// files together lets the first fsync carry the others' journal commit (group commit), so a
/// pass writing thousands of sidecars does not pay one journal commit per file; each file is
/// still fsynced before its rename.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

/// Writes `bytes` to a temporary file beside `path` (named `.iw-lab-<pid>-*.tmp`).
pub fn stage(path: &Path, bytes: &[u8]) -> std::io::Result<Staged> {
    stage_new(path, bytes, path.exists())
}

/// [`stage`] when the caller knows whether `path` exists (an existing file's permissions are
/// carried over).
pub fn stage_new(path: &Path, bytes: &[u8], exists: bool) -> std::io::Result<Staged> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(".iw-lab-{}-", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // A new file gets ordinary permissions: 0666 less the umask (typically 0644), as any
    // program's `open(O_CREAT)` would, not the temporary file's private 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if exists {
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = tmp.as_file().set_permissions(meta.permissions());
        }
    }
    Ok(Staged {
        tmp,
        dest: path.to_path_buf(),
    })
}

impl Staged {
    /// Flushes the temporary file to disk.
    pub fn sync(&self) -> std::io::Result<()> {
        self.tmp.as_file().sync_all()
    }

    /// fsync, then rename into place.
    pub fn commit(self) -> std::io::Result<()> {
        self.sync()?;
        self.rename()
    }

    /// Renames into place (call [`Staged::sync`] first).
    pub fn rename(self) -> std::io::Result<()> {
        self.tmp.persist(&self.dest).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }
}

/// Removes temporary files that a killed writer left in `dir` (`.iw-lab-<pid>-*.tmp` whose
/// process is gone). Returns how many were removed.
pub fn clean_stale_temps(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix(".iw-lab-")
            .filter(|_| name.ends_with(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Tags in `new` and not in `old`, and the reverse, by normalised form, in order.
pub fn diff(old: &[String], new: &[String]) -> (Vec<String>, Vec<String>) {
    let norm = |t: &String| crate::tags::normalise(t).unwrap_or_default();
    let old_n: std::collections::HashSet<String> = old.iter().map(norm).collect();
    let new_n: std::collections::HashSet<String> = new.iter().map(norm).collect();
    let added = new
        .iter()
        .filter(|t| !old_n.contains(&norm(t)))
        .cloned()
        .collect();
    let removed = old
        .iter()
        .filter(|t| !new_n.contains(&norm(t)))
        .cloned()
        .collect();
    (added, removed)
}
