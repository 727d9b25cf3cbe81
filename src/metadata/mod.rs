//! Generation metadata: the prompt and settings that AI image generators embed in their files.
//!
//! Two layers, both pure (no I/O beyond the one reader they are given):
//! - [`container`] sniffs the file type from magic bytes and collects every text *carrier* —
//!   PNG `tEXt`/`zTXt`/`iTXt` (anywhere, also after `IDAT`), `eXIf`, JPEG APP1 EXIF/XMP and
//!   `COM`, WebP `EXIF`/`XMP ` chunks, EXIF `UserComment` in any charset, and the "stealth"
//!   payloads hidden in pixel LSBs — reading only the bytes it needs;
//! - [`generators`] detects which tool wrote the file and maps its carriers onto [`GenMeta`].
//!
//! The formats and their pitfalls are in `docs/metadata.md`. Malformed input yields a partial
//! result with warnings, or an error with a reason: never a panic, never unbounded memory.

pub mod container;
pub mod generators;

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The file type, decided by magic bytes (never by the extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    Png,
    Jpeg,
    Webp,
    Gif,
    Bmp,
    Tiff,
    /// Empty or unrecognised bytes.
    Unknown,
}

impl Container {
    pub fn as_str(self) -> &'static str {
        match self {
            Container::Png => "png",
            Container::Jpeg => "jpeg",
            Container::Webp => "webp",
            Container::Gif => "gif",
            Container::Bmp => "bmp",
            Container::Tiff => "tiff",
            Container::Unknown => "unknown",
        }
    }
}

/// One piece of text found in a file.
///
/// `key` names it the way its generator does: the PNG keyword for text chunks (`parameters`,
/// `prompt`, `workflow`, `Comment`, ...); `exif:<TagName>` for EXIF tags (`exif:UserComment`,
/// `exif:Make`, `exif:Model`, `exif:ImageDescription`, `exif:Software`, `exif:Artist`,
/// `exif:DocumentName`, `exif:MakerNote`); `xmp` for an XMP packet; `jpeg:comment` for a JPEG
/// `COM` segment; `stealth` for an LSB payload; `c2pa` for a C2PA manifest (its value a
/// summary). `location` says where it was: `png:tEXt`, `png:zTXt (after IDAT)`, `png:iTXt`,
/// `exif:IFD0`, `exif:ExifIFD`, `jpeg:APP1`, `webp:XMP`, `stealth:alpha:stealth_pngcomp`, ...
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Carrier {
    pub key: String,
    pub location: String,
    pub value: String,
}

/// Everything the container layer found in one file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Carriers {
    pub container: Option<Container>,
    /// The image's real size (IHDR, SOFn, VP8X/VP8/VP8L), when the header could be read.
    pub pixel_width: Option<u32>,
    pub pixel_height: Option<u32>,
    /// In file order; duplicates kept.
    pub entries: Vec<Carrier>,
    /// Problems that left the result partial (truncated chunk, bad zlib, ...), with the reason.
    pub warnings: Vec<String>,
    /// Bytes actually read from the file (the reader skips pixel data by length).
    pub bytes_read: u64,
}

impl Carriers {
    /// The first carrier with this key.
    pub fn get(&self, key: &str) -> Option<&Carrier> {
        self.entries.iter().find(|c| c.key == key)
    }

    /// Carriers from (key, value) pairs, as PNG `tEXt` chunks would give them (for tests and
    /// callers that have the text already).
    pub fn from_pairs(list: &[(&str, &str)]) -> Carriers {
        Carriers {
            entries: list
                .iter()
                .map(|(k, v)| Carrier {
                    key: k.to_string(),
                    location: "png:tEXt".into(),
                    value: v.to_string(),
                })
                .collect(),
            ..Carriers::default()
        }
    }

    /// The first carrier's value with this key.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(|c| c.value.as_str())
    }
}

/// A LoRA (or LyCORIS / hypernetwork) applied to the generation.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Lora {
    pub name: String,
    /// Model (UNet) strength; the single weight when only one is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Text-encoder strength, when given separately.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_weight: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// A further positive prompt beside the main one: a NovelAI V4 character prompt, a ComfyUI
/// area (regional) prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ExtraPrompt {
    /// `character` or `area`.
    pub kind: String,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Where it applies, as the generator states it (`x=0.3,y=0.5`, `x=0,y=0,w=704,h=384`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A carrier that was not mapped onto the fields: its key and where it was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawCarrier {
    pub key: String,
    pub location: String,
    /// Its text, cut to 4,096 characters.
    pub value: String,
}

/// The generation metadata of one file. Field names are the `iw-lab inspect --json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct GenMeta {
    /// `a1111`, `forge`, `reforge`, `easy-reforge`, `forge-classic`, `forge-neo`, `sdnext`,
    /// `comfyui`, `invokeai`, `novelai`, `fooocus`, `ruined-fooocus`, `swarmui`, `civitai`,
    /// `stability-matrix`, `tensorart`, `hf-space`, `easydiffusion`, `drawthings`, `c2pa`;
    /// `None` when the file carries no generation metadata.
    pub generator: Option<String>,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub seed: Option<u64>,
    pub steps: Option<u32>,
    pub sampler: Option<String>,
    pub scheduler: Option<String>,
    pub cfg: Option<f64>,
    /// The generation size the metadata states (the pixel size when it states none).
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub model: Option<String>,
    pub model_hash: Option<String>,
    /// `None` when the format cannot say; empty when it says "none".
    pub loras: Option<Vec<Lora>>,
    pub vae: Option<String>,
    pub clip_skip: Option<u32>,
    pub denoise: Option<f64>,
    /// The file's real size.
    pub pixel_width: Option<u32>,
    pub pixel_height: Option<u32>,
    /// Character / area prompts beside the main prompt.
    #[serde(default)]
    pub extra_prompts: Vec<ExtraPrompt>,
    /// Every other named setting the generator wrote (`Hires upscale`, `ENSD`, `Version`,
    /// `guidance`, ...), as text.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Carriers not mapped onto the fields above.
    #[serde(default)]
    pub raw: Vec<RawCarrier>,
    /// Why the result is partial, when it is.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Malformed(String),
}

/// Reads the generation metadata of one file.
pub fn read_path(path: &Path) -> Result<GenMeta, MetaError> {
    // Unbuffered: the reader asks for headers and metadata only and seeks over pixel data, so a
    // read-ahead buffer would fetch most of the file for nothing.
    let mut file = std::fs::File::open(path)?;
    let carriers = container::read_carriers(&mut file)?;
    Ok(generators::parse(&carriers))
}

/// Reads the generation metadata of an in-memory file.
pub fn read_bytes(bytes: &[u8]) -> Result<GenMeta, MetaError> {
    let carriers = container::read_carriers(&mut std::io::Cursor::new(bytes))?;
    Ok(generators::parse(&carriers))
}

/// [`read_bytes`], decoding pixels (stealth payloads) only of images of at most `max_pixels`.
pub fn read_bytes_limited(bytes: &[u8], max_pixels: u64) -> Result<GenMeta, MetaError> {
    let carriers = container::read_carriers_limited(&mut std::io::Cursor::new(bytes), max_pixels)?;
    Ok(generators::parse(&carriers))
}
