//! The production config file kind (`promoted/<alias>.yaml`): the frozen model, its
//! post-processing, and the sidecar writers' options. Written by `iw-lab promote`, read by
//! `iw-lab tag`; the schema is `iw-lab schema production`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::files::ModelFile;
use super::{ConfigError, Model, Project};
use crate::postprocess::{Decided, PostProcess};
use crate::tags;
use crate::words::Category;

/// Where a promoted config came from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotedFrom {
    pub run_id: String,
    pub experiment: String,
    pub variant: String,
    /// The metrics of the variant at the promoted threshold (`f1_micro`, `map`, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Images those metrics were computed on.
    #[serde(default)]
    pub images: Option<u64>,
}

/// The frozen model.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotedModel {
    pub name: String,
    /// Content fingerprint of the model's files; `iw-lab tag` refuses a different one.
    pub fingerprint: String,
    pub adapter_version: u32,
    /// The model definition, as in `models/*.yaml` (local paths made absolute).
    pub definition: ModelFile,
}

/// Cache and inference parameters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub score_floor: f64,
}

/// A production config (`promoted/<alias>.yaml`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductionConfig {
    /// Format version (1).
    pub version: u32,
    pub alias: String,
    pub promoted_at: String,
    pub tool_version: String,
    pub from: PromotedFrom,
    pub model: PromotedModel,
    /// The prompt (name, hash, text) for generative models; none for taggers.
    #[serde(default)]
    pub prompt: Option<serde_json::Value>,
    pub params: Params,
    pub postprocess: PostProcess,
    #[serde(default)]
    pub writers: Writers,
}

impl ProductionConfig {
    /// blake3 of everything that shapes the sidecars: the model's fingerprint and definition,
    /// parameters, post-processing and writer options (not the choice of writers, nor where
    /// the config came from).
    pub fn hash(&self) -> String {
        let mut writers = serde_json::to_value(&self.writers).unwrap_or_default();
        if let Some(o) = writers.as_object_mut() {
            o.remove("write");
        }
        let v = serde_json::json!({
            "fingerprint": self.model.fingerprint,
            "definition": self.model.definition,
            "prompt": self.prompt,
            "params": self.params,
            "postprocess": self.postprocess,
            "writers": writers,
        });
        blake3::hash(crate::hashing::canonical_json(&v).as_bytes())
            .to_hex()
            .to_string()
    }

    /// The model, resolved as if from `models/<name>.yaml`.
    pub fn resolve_model(
        &self,
        project: &Project,
        file: &Path,
        text: &str,
    ) -> Result<Model, ConfigError> {
        let mut m = super::resolve::build_model(
            project,
            file,
            self.model.definition.clone(),
            text,
            Some("model.definition"),
        )?;
        m.name = self.model.name.clone();
        m.score_floor = self.params.score_floor;
        Ok(m)
    }
}

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

/// Where the rating tag goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RatingPlacement {
    /// Left out (default).
    Omit,
    First,
    Last,
}

/// What to do with a `.txt` that is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExistingMode {
    /// Keep the user's tags (everything iw-lab did not add last time) and add ours (default).
    Keep,
    /// Keep the whole file and append our tags that are not in it yet.
    Append,
    /// Replace the file with our tags.
    Overwrite,
}

/// `.txt` writer options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TxtOptions {
    /// Sidecar extension (default `.txt`): `img.png` → `img.txt`.
    pub extension: String,
    /// Between tags (default `", "`).
    pub separator: String,
    /// Written first, always (e.g. a LoRA's activation word).
    pub trigger_words: Vec<String>,
    /// Character tags before general ones (default true).
    pub character_first: bool,
    /// `omit` (default), `first` or `last`.
    pub rating: RatingPlacement,
    /// Write `long_hair` instead of `long hair` (kaomoji like `^_^` are never changed).
    pub underscores: bool,
    /// Write `\(` `\)` so captions can be pasted into prompts (default false).
    pub escape_parentheses: bool,
    /// `keep` (default), `append` or `overwrite`.
    pub existing: ExistingMode,
}

impl Default for TxtOptions {
    fn default() -> Self {
        TxtOptions {
            extension: ".txt".into(),
            separator: ", ".into(),
            trigger_words: Vec::new(),
            character_first: true,
            rating: RatingPlacement::Omit,
            underscores: false,
            escape_parentheses: false,
            existing: ExistingMode::Keep,
        }
    }
}

impl TxtOptions {
    /// The sidecar of `image`.
    pub fn path(&self, image: &Path) -> std::path::PathBuf {
        image.with_extension(self.extension.trim_start_matches('.'))
    }

    /// How one tag is spelt in the file. A tag holding the separator loses it (a caption item
    /// is one tag): `hello, "world"` is written `hello "world"`.
    pub fn spell(&self, tag: &str) -> String {
        let sep = self.separator.trim();
        let sep = if sep.is_empty() { "," } else { sep };
        let tag = if tag.contains(sep) {
            tag.replace(sep, " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            tag.to_string()
        };
        let tag = tag.as_str();
        let mut t = if self.underscores && !tags::is_kaomoji(tag) {
            tag.replace(' ', "_")
        } else {
            tag.to_string()
        };
        if self.escape_parentheses {
            t = t.replace('(', "\\(").replace(')', "\\)");
        }
        t
    }

    /// Our tags in file order.
    pub fn ordered(&self, decided: &[Decided]) -> Vec<String> {
        let mut out: Vec<String> = self
            .trigger_words
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let rating = decided.iter().find(|d| d.category == Category::Rating);
        if let (RatingPlacement::First, Some(r)) = (self.rating, rating) {
            out.push(self.spell(&r.tag));
        }
        let body = decided.iter().filter(|d| d.category != Category::Rating);
        let (chars, rest): (Vec<&Decided>, Vec<&Decided>) =
            body.partition(|d| self.character_first && d.category == Category::Character);
        out.extend(chars.into_iter().chain(rest).map(|d| self.spell(&d.tag)));
        if let (RatingPlacement::Last, Some(r)) = (self.rating, rating) {
            out.push(self.spell(&r.tag));
        }
        let mut seen = HashSet::new();
        out.retain(|t| seen.insert(tags::normalise(t).unwrap_or_default()));
        out
    }
}

/// Sidecar naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum XmpNaming {
    /// `IMG_0001.xmp` (Lightroom, Capture One; default).
    Stem,
    /// `IMG_0001.JPG.xmp` (darktable, digiKam).
    Full,
}

/// XMP writer options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct XmpOptions {
    /// Name of a new sidecar: `stem` (default) or `full`. An existing sidecar under either name
    /// is merged into instead.
    pub naming: XmpNaming,
    /// Hierarchical keywords are written as `<prefix>|<tag>` (default `iw`).
    pub prefix: String,
    /// Also write `lr:hierarchicalSubject` (default true).
    pub hierarchical: bool,
    /// Include the rating tag among the keywords (default false).
    pub rating: bool,
}

impl Default for XmpOptions {
    fn default() -> Self {
        XmpOptions {
            naming: XmpNaming::Stem,
            prefix: "iw".into(),
            hierarchical: true,
            rating: false,
        }
    }
}

impl XmpOptions {
    /// The sidecar of `image`: an existing one under either naming, else the configured name.
    pub fn path(&self, image: &Path) -> PathBuf {
        self.path_with(image, |p| p.exists())
    }

    /// [`Self::path`] with a given existence test (the production pass lists folders once).
    pub fn path_with(&self, image: &Path, exists: impl Fn(&Path) -> bool) -> PathBuf {
        let stem = image.with_extension("xmp");
        let mut full = image.as_os_str().to_owned();
        full.push(".xmp");
        let full = PathBuf::from(full);
        let (preferred, other) = match self.naming {
            XmpNaming::Stem => (stem, full),
            XmpNaming::Full => (full, stem),
        };
        if !exists(&preferred) && exists(&other) {
            other
        } else {
            preferred
        }
    }
}

/// JSON writer options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JsonOptions {
    /// Sidecar extension (default `.json`): `img.png` → `img.json`.
    pub extension: String,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            extension: ".json".into(),
        }
    }
}

impl JsonOptions {
    pub fn path(&self, image: &Path) -> std::path::PathBuf {
        image.with_extension(self.extension.trim_start_matches('.'))
    }
}
