//! Resolving the generative parts of an experiment: prompt templates (with versions and
//! `@best`), parameter sweeps, repeats, vocabulary mapping, ensembles and judges.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::error::{did_you_mean, ConfigError};
use super::files::*;
use super::resolve::*;
use crate::templates::{Store, Template};

/// Default least cosine similarity for an embedding vocabulary match.
pub const DEFAULT_VOCAB_THRESHOLD: f64 = crate::words::DEFAULT_VOCAB_THRESHOLD as f64;

/// Where `NAME@best` comes from: the version of template `NAME` that scored best in the
/// project's runs. Config never reads runs itself; the caller (above the store) answers, with
/// the full hash of the best version, or `None` when no run scored one.
pub trait BestVersions {
    fn best_hash(&self, name: &str) -> Result<Option<String>, String>;
}

/// No runs to ask: `NAME@best` is refused with a clear message.
pub struct NoRuns;

impl BestVersions for NoRuns {
    fn best_hash(&self, _name: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// What resolving needs from the experiment being loaded.
pub(super) struct Ctx<'a> {
    pub project: &'a Project,
    pub path: &'a Path,
    pub text: &'a str,
    pub models: &'a mut HashMap<PathBuf, Arc<Model>>,
    pub best: &'a dyn BestVersions,
}

impl Ctx<'_> {
    /// An error at `key` of the experiment file.
    pub fn invalid(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.path, Some(self.text), key, msg)
    }

    /// Loads a model named at `key`, once per file.
    pub fn model(&mut self, name: &str, key: &str) -> Result<Arc<Model>, ConfigError> {
        let p = self
            .project
            .find_ref("model", "models", name, self.path, self.text, key)?;
        if let Some(m) = self.models.get(&p) {
            return Ok(m.clone());
        }
        let m = Arc::new(load_model(self.project, &p)?);
        self.models.insert(p, m.clone());
        Ok(m)
    }

    /// Resolves a template reference (`NAME`, `NAME@HASH`, `NAME@best`).
    pub fn template(&self, reference: &str, key: &str) -> Result<Template, ConfigError> {
        resolve_template(&self.project.root, reference, self.best).map_err(|e| self.invalid(key, e))
    }
}

/// The template store of a project (`prompts/`).
pub fn store(root: &Path) -> Store {
    Store::new(root.join("prompts"))
}

/// Resolves `NAME`, `NAME@HASH` or `NAME@best` (asking `best`) in the project's `prompts/`.
pub fn resolve_template(
    root: &Path,
    reference: &str,
    best: &dyn BestVersions,
) -> Result<Template, String> {
    let store = store(root);
    let t = match reference.split_once('@') {
        Some((name, "best")) => {
            let hash = best.best_hash(name)?.ok_or_else(|| {
                format!("`{name}@best`: no run has scored a version of prompt {name} yet")
            })?;
            store
                .resolve(&format!("{name}@{hash}"))
                .map_err(|e| format!("{e:#}"))?
        }
        _ => store.resolve(reference).map_err(|e| {
            let mut msg = format!("{e:#}");
            if reference.split_once('@').is_none() {
                let names = prompt_names(root);
                if let Some(s) = did_you_mean(reference, names.iter().map(String::as_str)) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                } else if !names.is_empty() {
                    msg.push_str(&format!("; prompts/ has: {}", names.join(", ")));
                }
            }
            msg
        })?,
    };
    t.check().map_err(|e| format!("{e:#}"))?;
    Ok(t)
}

/// Names of the templates in `prompts/`.
pub fn prompt_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("prompts"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.strip_suffix(".j2").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// One variant entry after sweeping: a name suffix and its generative settings.
pub(super) struct Point {
    pub suffix: Option<String>,
    pub gen: Option<Generation>,
    pub ensemble: Option<EnsembleSpec>,
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One entry of a list in the experiment file (a variant, a judge), with its model.
struct Entry<'e, F> {
    /// The list's key: `variants` or `judges`.
    list: &'static str,
    i: usize,
    f: &'e F,
    model: &'e Arc<Model>,
}

impl<F> Entry<'_, F> {
    /// The key of the entry's field `k` (`variants[2].prompt`).
    fn key(&self, k: &str) -> String {
        format!("{}[{}].{k}", self.list, self.i)
    }
}

/// Expands variant `i` over its prompt list and parameter lists (a grid).
pub(super) fn expand(
    ctx: &mut Ctx<'_>,
    i: usize,
    v: &VariantFile,
    model: &Arc<Model>,
) -> Result<Vec<Point>, ConfigError> {
    let e = Entry {
        list: "variants",
        i,
        f: v,
        model,
    };
    if model.kind == ModelKind::Ensemble {
        return Ok(vec![ensemble_point(ctx, &e)?]);
    }
    if v.members.is_some() {
        return Err(ctx.invalid(
            &e.key("members"),
            "`members:` is for variants of `ensemble` models",
        ));
    }
    if !model.kind.generative() {
        check_tagger_variant(ctx, &e)?;
        return Ok(vec![Point {
            suffix: None,
            gen: None,
            ensemble: None,
        }]);
    }
    generative_points(ctx, &e)
}

/// The first generative setting a variant states, if any.
fn generative_key(v: &VariantFile) -> Option<&'static str> {
    let gen_keys = [
        ("prompt", v.prompt.is_some()),
        ("system", v.system.is_some()),
        ("output", v.output.is_some()),
        ("schema", v.schema.is_some()),
        ("params", !v.params.is_empty()),
        ("image", v.image.is_some()),
        ("inputs", !v.inputs.is_empty()),
        ("vocabulary", v.vocabulary.is_some()),
        ("postprocess", v.postprocess.is_some()),
    ];
    gen_keys.iter().find(|(_, set)| *set).map(|(k, _)| *k)
}

/// The one point of a variant of an ensemble model: its members and how they combine.
fn ensemble_point(ctx: &mut Ctx<'_>, e: &Entry<'_, VariantFile>) -> Result<Point, ConfigError> {
    let (v, model) = (e.f, e.model);
    if let Some(k) = generative_key(v) {
        return Err(ctx.invalid(
            &e.key(k),
            format!("`{k}:` is for variants of generative models (`openai`, `gguf`), not of the ensemble `{}`", model.name),
        ));
    }
    let ens = model.ensemble.clone().expect("resolved ensemble");
    let members = v.members.clone().unwrap_or(ens.members.clone());
    if members.len() < 2 {
        return Err(ctx.invalid(
            &e.key("members"),
            format!("the ensemble `{}` needs at least two member variants (`members:` on the model or the variant)", model.name),
        ));
    }
    let (merge_model, merge_prompt) = match ens.method {
        EnsembleMethod::Llm => {
            let (m, t) = merge_of(ctx, e, &ens)?;
            (Some(m), Some(t))
        }
        _ => (None, None),
    };
    let spec = EnsembleSpec {
        method: ens.method,
        members,
        min_votes: ens.min_votes.map(|m| m.0 as usize),
        weights: ens.weights.clone(),
        threshold: ens.threshold,
        merge_model,
        merge_prompt,
    };
    if let Err(why) = spec.combine().validate(spec.members.len()) {
        return Err(ctx.invalid(
            &e.key("members"),
            format!(
                "ensemble `{}` ({}) with {} members: {why}",
                model.name,
                model.file.display(),
                spec.members.len()
            ),
        ));
    }
    Ok(Point {
        suffix: None,
        gen: None,
        ensemble: Some(spec),
    })
}

/// The merge model (which must be an LLM) and prompt of a `method: llm` ensemble.
fn merge_of(
    ctx: &mut Ctx<'_>,
    e: &Entry<'_, VariantFile>,
    ens: &EnsembleFile,
) -> Result<(Arc<Model>, Template), ConfigError> {
    let model = e.model;
    let mk = format!("ensemble.merge_model (in {})", model.file.display());
    let m = ctx.model(ens.merge_model.as_deref().unwrap_or_default(), &mk)?;
    if !m.kind.generative() {
        return Err(ctx.invalid(
            &e.key("model"),
            format!(
                "the merge model `{}` of ensemble `{}` is not an LLM (`openai` or `gguf`)",
                m.name, model.name
            ),
        ));
    }
    let t = ctx.template(
        ens.merge_prompt.as_deref().unwrap_or_default(),
        &e.key("model"),
    )?;
    Ok((m, t))
}

/// Refuses generative settings on a variant of a tagger (and embedding models as variants).
fn check_tagger_variant(ctx: &Ctx<'_>, e: &Entry<'_, VariantFile>) -> Result<(), ConfigError> {
    let model = e.model;
    if let Some(k) = generative_key(e.f) {
        return Err(ctx.invalid(
            &e.key(k),
            format!(
                "`{k}:` is for variants of generative models (`openai`, `gguf`); `{}` is a `{}` model",
                model.name,
                serde_json::to_value(model.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            ),
        ));
    }
    if model.kind == ModelKind::Embedding {
        return Err(ctx.invalid(
            &e.key("model"),
            format!("`{}` is an `embedding` model: use it as a judge or under `vocabulary: {{embedding: ...}}`, not as a variant", model.name),
        ));
    }
    Ok(())
}

/// The points of a variant of a generative model: every prompt at every point of its
/// parameter grid.
fn generative_points(
    ctx: &mut Ctx<'_>,
    e: &Entry<'_, VariantFile>,
) -> Result<Vec<Point>, ConfigError> {
    let v = e.f;
    let templates = prompt_templates(ctx, e)?;
    let distinct_names = {
        let mut n: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
        n.sort();
        n.dedup();
        n.len() == templates.len()
    };
    let system = match &v.system {
        Some(r) => Some(ctx.template(r, &e.key("system"))?),
        None => None,
    };
    let output = output_of(ctx, e)?;
    let image = sends_images(
        ctx,
        &e.key("image"),
        v.image,
        e.model,
        " (a `gguf` model, or `vision: false`)",
    )?;
    let vocabulary = vocabulary_of(ctx, e)?;
    if let Some(pp) = &v.postprocess {
        if let Err(err) = pp.prepare(ctx.path.parent().unwrap_or(Path::new("."))) {
            return Err(ctx.invalid(&e.key("postprocess"), format!("{err:#}")));
        }
    }
    let grid = param_grid(ctx, e, templates.len())?;
    let mut out = Vec::new();
    for t in &templates {
        let shown = (templates.len() > 1).then(|| {
            if distinct_names {
                t.name.clone()
            } else {
                format!("{}@{}", t.name, &t.hash[..8])
            }
        });
        for p in &grid.points {
            let mut params = grid.fixed.clone();
            params.extend(p.iter().cloned());
            let (suffix, swept) = sweep_label(shown.as_deref(), t, p);
            out.push(Point {
                suffix,
                gen: Some(Generation {
                    prompt: t.clone(),
                    system: system.clone(),
                    output,
                    schema: v.schema.clone(),
                    params,
                    swept,
                    image,
                    inputs: v.inputs.clone(),
                    vocabulary: vocabulary.clone(),
                    postprocess: v.postprocess.clone(),
                    base: ctx.path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                }),
                ensemble: None,
            });
        }
    }
    Ok(out)
}

/// The variant's prompt templates (at least one).
fn prompt_templates(
    ctx: &Ctx<'_>,
    e: &Entry<'_, VariantFile>,
) -> Result<Vec<Template>, ConfigError> {
    let Some(prompts) = &e.f.prompt else {
        return Err(ctx.invalid(
            &e.key("prompt"),
            format!(
                "a variant of the generative model `{}` needs `prompt:` (a template in prompts/)",
                e.model.name
            ),
        ));
    };
    let refs = prompts.to_vec();
    if refs.is_empty() {
        return Err(ctx.invalid(&e.key("prompt"), "the prompt list is empty"));
    }
    let mut templates = Vec::new();
    for (j, r) in refs.iter().enumerate() {
        let k = if refs.len() > 1 {
            format!("variants[{}].prompt[{j}]", e.i)
        } else {
            e.key("prompt")
        };
        templates.push(ctx.template(r, &k)?);
    }
    Ok(templates)
}

/// The variant's output form (a caption by default); `schema:` needs JSON, vocabulary mapping
/// and post-processing need tags.
fn output_of(ctx: &Ctx<'_>, e: &Entry<'_, VariantFile>) -> Result<OutputKind, ConfigError> {
    let v = e.f;
    let output = v.output.unwrap_or(OutputKind::Caption);
    if v.schema.is_some() && output != OutputKind::Json {
        return Err(ctx.invalid(&e.key("schema"), "`schema:` is for `output: json`"));
    }
    if output == OutputKind::Caption && (v.vocabulary.is_some() || v.postprocess.is_some()) {
        return Err(ctx.invalid(
            &e.key(if v.vocabulary.is_some() {
                "vocabulary"
            } else {
                "postprocess"
            }),
            "vocabulary mapping and post-processing apply to tags (`output: tags` or `json`)",
        ));
    }
    Ok(output)
}

/// Whether an entry sends images: as asked at `key`, else when its model has vision. Asking
/// a model without vision is an error; `why` follows the model's name in it.
fn sends_images(
    ctx: &Ctx<'_>,
    key: &str,
    asked: Option<bool>,
    model: &Model,
    why: &str,
) -> Result<bool, ConfigError> {
    let vision = model.openai.as_ref().is_some_and(|o| o.vision);
    match asked {
        Some(true) if !vision => {
            Err(ctx.invalid(key, format!("`{}` does not take images{why}", model.name)))
        }
        Some(b) => Ok(b),
        None => Ok(vision),
    }
}

/// The variant's vocabulary mapping: its embedding model (which must be one) and threshold.
fn vocabulary_of(
    ctx: &mut Ctx<'_>,
    e: &Entry<'_, VariantFile>,
) -> Result<Option<VocabularySpec>, ConfigError> {
    let Some(vf) = &e.f.vocabulary else {
        return Ok(None);
    };
    let embedding = match &vf.embedding {
        Some(name) => {
            let m = ctx.model(name, &e.key("vocabulary.embedding"))?;
            if m.kind != ModelKind::Embedding {
                return Err(ctx.invalid(
                    &e.key("vocabulary.embedding"),
                    format!("`{}` is not an `embedding` model", m.name),
                ));
            }
            Some(m)
        }
        None => None,
    };
    let threshold = vf.threshold.unwrap_or(DEFAULT_VOCAB_THRESHOLD);
    if !(-1.0..=1.0).contains(&threshold) {
        return Err(ctx.invalid(
            &e.key("vocabulary.threshold"),
            format!("{threshold} is not a cosine similarity (−1 to 1)"),
        ));
    }
    Ok(Some(VocabularySpec {
        embedding,
        threshold,
        aliases: vf.aliases.clone(),
        keep_unmapped: vf.keep_unmapped,
    }))
}

/// A variant's parameter grid: the parameters every point shares, and each point's swept
/// values.
struct Grid {
    fixed: BTreeMap<String, Value>,
    points: Vec<Vec<(String, Value)>>,
}

/// The parameter grid: model defaults, then the variant's; lists are swept. Every value is
/// checked, and the grid (times `prompts` prompts) kept within [`MAX_SWEEP_POINTS`].
fn param_grid(
    ctx: &Ctx<'_>,
    e: &Entry<'_, VariantFile>,
    prompts: usize,
) -> Result<Grid, ConfigError> {
    let mut fixed: BTreeMap<String, Value> = e.model.params.clone();
    let mut swept: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, val) in &e.f.params {
        match val {
            Value::Array(list) if k != "stop" => {
                if list.is_empty() {
                    return Err(
                        ctx.invalid(&e.key(&format!("params.{k}")), "the sweep list is empty")
                    );
                }
                fixed.remove(k);
                swept.push((k.clone(), list.clone()));
            }
            other => {
                fixed.insert(k.clone(), other.clone());
            }
        }
    }
    for (k, val) in fixed.iter().chain(
        swept
            .iter()
            .flat_map(|(k, l)| l.iter().map(move |x| (k, x))),
    ) {
        check_param(k, val).map_err(|m| ctx.invalid(&e.key(&format!("params.{k}")), m))?;
    }
    let grid: usize = swept
        .iter()
        .fold(prompts, |n, (_, l)| n.saturating_mul(l.len()));
    if grid > MAX_SWEEP_POINTS {
        return Err(ctx.invalid(
            &e.key("params"),
            format!("the sweep expands into {grid} variants; at most {MAX_SWEEP_POINTS}"),
        ));
    }
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (k, list) in &swept {
        points = points
            .into_iter()
            .flat_map(|p| {
                list.iter().map(move |x| {
                    let mut q = p.clone();
                    q.push((k.clone(), x.clone()));
                    q
                })
            })
            .collect();
    }
    Ok(Grid { fixed, points })
}

/// The name suffix (`[prompt=…,k=v]`) and swept values of grid point `p` with template `t`;
/// `shown` is how the prompt is named when several are swept.
fn sweep_label(
    shown: Option<&str>,
    t: &Template,
    p: &[(String, Value)],
) -> (Option<String>, BTreeMap<String, Value>) {
    let mut sw = BTreeMap::new();
    let mut parts = Vec::new();
    if let Some(shown) = shown {
        parts.push(format!("prompt={shown}"));
        sw.insert("prompt".to_string(), Value::String(t.id()));
    }
    for (k, x) in p {
        sw.insert(k.clone(), x.clone());
        parts.push(format!("{k}={}", show(x)));
    }
    let suffix = (!parts.is_empty()).then(|| format!("[{}]", parts.join(",")));
    (suffix, sw)
}

/// The largest `max_tokens` and `top_k` accepted (no model has a context or a vocabulary near
/// ten million).
const MAX_TOKENS_PARAM: u64 = 10_000_000;

/// The most variants one sweep may expand into.
const MAX_SWEEP_POINTS: usize = 10_000;

/// Checks the generation parameters iw-lab itself reads.
fn check_param(k: &str, v: &Value) -> Result<(), String> {
    let num = v.as_f64();
    match k {
        "temperature" => match num {
            Some(x) if (0.0..=5.0).contains(&x) => Ok(()),
            _ => Err(format!("temperature {v} must be a number from 0 to 5")),
        },
        "top_p" => match num {
            Some(x) if x > 0.0 && x <= 1.0 => Ok(()),
            _ => Err(format!("top_p {v} must be a number in (0, 1]")),
        },
        "top_k" | "max_tokens" => match v.as_u64() {
            Some(x) if (1..=MAX_TOKENS_PARAM).contains(&x) => Ok(()),
            _ => Err(format!(
                "{k} {v} must be a whole number from 1 to {MAX_TOKENS_PARAM}"
            )),
        },
        "seed" => v
            .as_u64()
            .map(drop)
            .ok_or_else(|| format!("seed {v} must be a whole number ≥ 0")),
        "stop" => match v {
            Value::String(_) => Ok(()),
            Value::Array(a) if a.iter().all(Value::is_string) => Ok(()),
            _ => Err("stop must be a string or a list of strings".into()),
        },
        _ => Ok(()),
    }
}

/// Checks that ensemble members and template inputs name earlier variants.
pub(super) fn check_references(
    path: &Path,
    text: &str,
    variants: &[(usize, Variant)],
) -> Result<(), ConfigError> {
    let names: Vec<&str> = variants.iter().map(|(_, v)| v.name.as_str()).collect();
    for (pos, (i, v)) in variants.iter().enumerate() {
        let earlier = &names[..pos];
        let refs: Vec<(&str, &String)> = v
            .gen
            .iter()
            .flat_map(|g| g.inputs.iter().map(|n| ("inputs", n)))
            .chain(
                v.ensemble
                    .iter()
                    .flat_map(|e| e.members.iter().map(|n| ("members", n))),
            )
            .collect();
        for (k, n) in refs {
            if !earlier.contains(&n.as_str()) {
                let hint = if names.contains(&n.as_str()) {
                    "it must come earlier in `variants:`".to_string()
                } else {
                    match did_you_mean(n, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("variants: {}", names.join(", ")),
                    }
                };
                return Err(ConfigError::invalid(
                    path,
                    Some(text),
                    &format!("variants[{i}].{k}"),
                    format!("`{n}` is not an earlier variant of this experiment ({hint})"),
                ));
            }
        }
    }
    Ok(())
}

/// Resolves the `judges:` list.
pub(super) fn judges(
    ctx: &mut Ctx<'_>,
    files: &[JudgeFile],
    variants: &[Variant],
) -> Result<Vec<Judge>, ConfigError> {
    let mut out: Vec<Judge> = Vec::new();
    let judged_default: Vec<String> = variants
        .iter()
        .filter(|v| v.gen.is_some() || v.ensemble.is_some())
        .map(|v| v.name.clone())
        .collect();
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    for (i, j) in files.iter().enumerate() {
        let model = ctx.model(&j.model, &format!("judges[{i}].model"))?;
        let e = Entry {
            list: "judges",
            i,
            f: j,
            model: &model,
        };
        let common = Common {
            name: judge_name(ctx, &e, &out)?,
            variants: match &j.variants {
                Some(list) => {
                    check_variant_names(ctx, &e, list, &names)?;
                    list.clone()
                }
                None => judged_default.clone(),
            },
            human: human_scores(ctx, &e)?,
        };
        if let Some(b) = &j.pairwise {
            if !names.contains(&b.as_str()) {
                return Err(ctx.invalid(
                    &e.key("pairwise"),
                    format!("the experiment has no variant `{b}` to compare with"),
                ));
            }
        }
        let judge = if model.kind == ModelKind::Embedding {
            embedding_judge(ctx, &e, common)?
        } else if model.kind.generative() {
            llm_judge(ctx, &e, common)?
        } else {
            return Err(ctx.invalid(
                &e.key("model"),
                format!("`{}` cannot judge: a judge is an LLM/VLM (`openai`, `gguf`) or an `embedding` model", model.name),
            ));
        };
        out.push(judge);
    }
    Ok(out)
}

/// What every judge has, whatever its model.
struct Common {
    name: String,
    /// The variants it judges.
    variants: Vec<String>,
    /// Its human scores file.
    human: Option<PathBuf>,
}

/// A judge's name: its own (which must be unique), or its model's with #2, #3... after the
/// judges resolved so far.
fn judge_name(
    ctx: &Ctx<'_>,
    e: &Entry<'_, JudgeFile>,
    earlier: &[Judge],
) -> Result<String, ConfigError> {
    let base = e.f.name.clone().unwrap_or_else(|| e.model.name.clone());
    let mut name = base.clone();
    let mut n = 1;
    while earlier.iter().any(|o| o.name == name) {
        if e.f.name.is_some() {
            return Err(ctx.invalid(&e.key("name"), format!("two judges are named `{base}`")));
        }
        n += 1;
        name = format!("{base}#{n}");
    }
    Ok(name)
}

/// Checks that the variants a judge lists are the experiment's.
fn check_variant_names(
    ctx: &Ctx<'_>,
    e: &Entry<'_, JudgeFile>,
    list: &[String],
    names: &[&str],
) -> Result<(), ConfigError> {
    for v in list {
        if !names.contains(&v.as_str()) {
            return Err(ctx.invalid(
                &e.key("variants"),
                format!(
                    "the experiment has no variant `{v}` ({})",
                    match did_you_mean(v, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("it has: {}", names.join(", ")),
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// A judge's human scores file (which must exist), relative to the experiment file or else
/// to the project.
fn human_scores(ctx: &Ctx<'_>, e: &Entry<'_, JudgeFile>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(h) = &e.f.human else {
        return Ok(None);
    };
    let p = ctx.path.parent().unwrap_or(Path::new(".")).join(h);
    let p = if p.is_file() {
        p
    } else {
        ctx.project.root.join(h)
    };
    if !p.is_file() {
        return Err(ctx.invalid(
            &e.key("human"),
            format!("human scores file {h} does not exist"),
        ));
    }
    Ok(Some(p))
}

/// An embedding judge: scores caption similarity, so the LLM judges' settings are refused.
fn embedding_judge(
    ctx: &Ctx<'_>,
    e: &Entry<'_, JudgeFile>,
    common: Common,
) -> Result<Judge, ConfigError> {
    let j = e.f;
    for (k, set) in [
        ("rubric", j.rubric.is_some()),
        ("choices", j.choices.is_some()),
        ("scale", j.scale.is_some()),
        ("pairwise", j.pairwise.is_some()),
        ("image", j.image.is_some()),
        ("choose_by", j.choose_by.is_some()),
    ] {
        if set {
            return Err(ctx.invalid(&e.key(k), format!("`{k}:` is for LLM judges; `{}` is an embedding model (it scores caption similarity)", e.model.name)));
        }
    }
    Ok(Judge {
        name: common.name,
        model: e.model.clone(),
        rubric: None,
        verdict: Verdict::Similarity,
        image: false,
        params: BTreeMap::new(),
        variants: common.variants,
        pairwise: None,
        reference: j.reference.unwrap_or(Reference::Truth),
        human: common.human,
        likelihood: false,
    })
}

/// An LLM judge: its rubric, verdict, images and parameters.
fn llm_judge(
    ctx: &Ctx<'_>,
    e: &Entry<'_, JudgeFile>,
    common: Common,
) -> Result<Judge, ConfigError> {
    let j = e.f;
    let Some(r) = &j.rubric else {
        return Err(ctx.invalid(
            &e.key("rubric"),
            "an LLM judge needs `rubric:` (a template in prompts/)",
        ));
    };
    let rubric = ctx.template(r, &e.key("rubric"))?;
    let verdict = verdict_of(ctx, e)?;
    if j.pairwise.is_some() {
        check_pairwise_choices(ctx, e, &verdict)?;
    }
    let image = sends_images(ctx, &e.key("image"), j.image, e.model, "")?;
    let mut params = e.model.params.clone();
    params
        .entry("temperature".into())
        .or_insert(Value::from(0.0));
    for (k, v) in &j.params {
        check_param(k, v).map_err(|m| ctx.invalid(&e.key(&format!("params.{k}")), m))?;
        params.insert(k.clone(), v.clone());
    }
    if j.reference.is_some() {
        return Err(ctx.invalid(&e.key("reference"), "`reference:` is for embedding judges"));
    }
    let likelihood = j.choose_by == Some(ChooseBy::Likelihood);
    if likelihood {
        check_likelihood(ctx, e, &verdict)?;
    }
    Ok(Judge {
        name: common.name,
        model: e.model.clone(),
        rubric: Some(rubric),
        verdict,
        image,
        params,
        variants: common.variants,
        pairwise: j.pairwise.clone(),
        reference: Reference::Truth,
        human: common.human,
        likelihood,
    })
}

/// How an LLM judge's answer becomes a score: `choices:` (at least two, finite) or `scale:`.
fn verdict_of(ctx: &Ctx<'_>, e: &Entry<'_, JudgeFile>) -> Result<Verdict, ConfigError> {
    let key = |k: &str| e.key(k);
    Ok(match (&e.f.choices, &e.f.scale) {
        (Some(c), None) if c.values().any(|v| !v.is_finite()) => {
            return Err(ctx.invalid(&key("choices"), "choice scores must be finite numbers"));
        }
        (Some(c), None) => {
            if c.len() < 2 {
                return Err(ctx.invalid(&key("choices"), "give at least two choices"));
            }
            Verdict::Choices(c.iter().map(|(k, v)| (k.clone(), *v)).collect())
        }
        (None, Some(s)) => {
            if !(s.min.is_finite() && s.max.is_finite() && s.max > s.min) {
                return Err(ctx.invalid(
                    &key("scale"),
                    format!("scale max {} must be above min {}", s.max, s.min),
                ));
            }
            Verdict::Scale {
                min: s.min,
                max: s.max,
            }
        }
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(&key("scale"), "give `choices:` or `scale:`, not both"))
        }
        (None, None) => return Err(ctx.invalid(
            &key("choices"),
            "an LLM judge needs `choices:` ({good: 1.0, bad: 0.0}) or `scale:` ({min: 1, max: 10})",
        )),
    })
}

/// A pairwise judge names the better output: its choices must include `a` and `b`.
fn check_pairwise_choices(
    ctx: &Ctx<'_>,
    e: &Entry<'_, JudgeFile>,
    verdict: &Verdict,
) -> Result<(), ConfigError> {
    let Verdict::Choices(c) = verdict else {
        return Err(ctx.invalid(
            &e.key("choices"),
            "a pairwise judge names the better output: `choices: {a: 1.0, b: 0.0, tie: 0.5}`",
        ));
    };
    let lower: Vec<String> = c.iter().map(|(k, _)| k.to_lowercase()).collect();
    if !lower.contains(&"a".to_string()) || !lower.contains(&"b".to_string()) {
        return Err(ctx.invalid(
            &e.key("choices"),
            "a pairwise judge's choices must include `a` and `b` (and may include `tie`)",
        ));
    }
    Ok(())
}

/// `choose_by: likelihood` needs a local `gguf` model and `choices:`.
fn check_likelihood(
    ctx: &Ctx<'_>,
    e: &Entry<'_, JudgeFile>,
    verdict: &Verdict,
) -> Result<(), ConfigError> {
    if e.model.kind != ModelKind::Gguf {
        return Err(ctx.invalid(
            &e.key("choose_by"),
            format!("`choose_by: likelihood` needs a local `gguf` model, which gives every token's probability; `{}` is not one", e.model.name),
        ));
    }
    if !matches!(verdict, Verdict::Choices(_)) {
        return Err(ctx.invalid(
            &e.key("choose_by"),
            "`choose_by: likelihood` picks among `choices:`; a `scale:` judge answers in text",
        ));
    }
    Ok(())
}
