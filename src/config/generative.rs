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
    fn invalid(&self, key: &str, msg: impl Into<String>) -> ConfigError {
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

/// Expands variant `i` over its prompt list and parameter lists (a grid).
pub(super) fn expand(
    ctx: &mut Ctx<'_>,
    i: usize,
    v: &VariantFile,
    model: &Arc<Model>,
) -> Result<Vec<Point>, ConfigError> {
    let key = |k: &str| format!("variants[{i}].{k}");
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
    if model.kind == ModelKind::Ensemble {
        if let Some((k, _)) = gen_keys.iter().find(|(_, set)| *set) {
            return Err(ctx.invalid(
                &key(k),
                format!("`{k}:` is for variants of generative models (`openai`, `gguf`), not of the ensemble `{}`", model.name),
            ));
        }
        let e = model.ensemble.clone().expect("resolved ensemble");
        let members = v.members.clone().unwrap_or(e.members.clone());
        if members.len() < 2 {
            return Err(ctx.invalid(
                &key("members"),
                format!("the ensemble `{}` needs at least two member variants (`members:` on the model or the variant)", model.name),
            ));
        }
        let (merge_model, merge_prompt) = match e.method {
            EnsembleMethod::Llm => {
                let mk = format!("ensemble.merge_model (in {})", model.file.display());
                let m = ctx.model(e.merge_model.as_deref().unwrap_or_default(), &mk)?;
                if !m.kind.generative() {
                    return Err(ctx.invalid(
                        &key("model"),
                        format!("the merge model `{}` of ensemble `{}` is not an LLM (`openai` or `gguf`)", m.name, model.name),
                    ));
                }
                let t =
                    ctx.template(e.merge_prompt.as_deref().unwrap_or_default(), &key("model"))?;
                (Some(m), Some(t))
            }
            _ => (None, None),
        };
        let spec = EnsembleSpec {
            method: e.method,
            members,
            min_votes: e.min_votes.map(|m| m.0 as usize),
            weights: e.weights.clone(),
            threshold: e.threshold,
            merge_model,
            merge_prompt,
        };
        if let Err(why) = spec.combine().validate(spec.members.len()) {
            return Err(ctx.invalid(
                &key("members"),
                format!(
                    "ensemble `{}` ({}) with {} members: {why}",
                    model.name,
                    model.file.display(),
                    spec.members.len()
                ),
            ));
        }
        return Ok(vec![Point {
            suffix: None,
            gen: None,
            ensemble: Some(spec),
        }]);
    }
    if v.members.is_some() {
        return Err(ctx.invalid(
            &key("members"),
            "`members:` is for variants of `ensemble` models",
        ));
    }
    if !model.kind.generative() {
        if let Some((k, _)) = gen_keys.iter().find(|(_, set)| *set) {
            return Err(ctx.invalid(
                &key(k),
                format!(
                    "`{k}:` is for variants of generative models (`openai`, `gguf`); `{}` is a `{}` model",
                    model.name,
                    serde_json::to_value(model.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
                ),
            ));
        }
        if model.kind == ModelKind::Embedding {
            return Err(ctx.invalid(
                &key("model"),
                format!("`{}` is an `embedding` model: use it as a judge or under `vocabulary: {{embedding: ...}}`, not as a variant", model.name),
            ));
        }
        return Ok(vec![Point {
            suffix: None,
            gen: None,
            ensemble: None,
        }]);
    }
    let Some(prompts) = &v.prompt else {
        return Err(ctx.invalid(
            &key("prompt"),
            format!(
                "a variant of the generative model `{}` needs `prompt:` (a template in prompts/)",
                model.name
            ),
        ));
    };
    let refs = prompts.to_vec();
    if refs.is_empty() {
        return Err(ctx.invalid(&key("prompt"), "the prompt list is empty"));
    }
    let mut templates = Vec::new();
    for (j, r) in refs.iter().enumerate() {
        let k = if refs.len() > 1 {
            format!("variants[{i}].prompt[{j}]")
        } else {
            key("prompt")
        };
        templates.push(ctx.template(r, &k)?);
    }
    let distinct_names = {
        let mut n: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
        n.sort();
        n.dedup();
        n.len() == templates.len()
    };
    let system = match &v.system {
        Some(r) => Some(ctx.template(r, &key("system"))?),
        None => None,
    };
    let output = v.output.unwrap_or(OutputKind::Caption);
    if v.schema.is_some() && output != OutputKind::Json {
        return Err(ctx.invalid(&key("schema"), "`schema:` is for `output: json`"));
    }
    if output == OutputKind::Caption && (v.vocabulary.is_some() || v.postprocess.is_some()) {
        return Err(ctx.invalid(
            &key(if v.vocabulary.is_some() {
                "vocabulary"
            } else {
                "postprocess"
            }),
            "vocabulary mapping and post-processing apply to tags (`output: tags` or `json`)",
        ));
    }
    let vision = model.openai.as_ref().is_some_and(|o| o.vision);
    let image = match v.image {
        Some(true) if !vision => {
            return Err(ctx.invalid(
                &key("image"),
                format!(
                    "`{}` does not take images (a `gguf` model, or `vision: false`)",
                    model.name
                ),
            ))
        }
        Some(b) => b,
        None => vision,
    };
    let vocabulary = match &v.vocabulary {
        None => None,
        Some(vf) => {
            let embedding = match &vf.embedding {
                Some(name) => {
                    let m = ctx.model(name, &key("vocabulary.embedding"))?;
                    if m.kind != ModelKind::Embedding {
                        return Err(ctx.invalid(
                            &key("vocabulary.embedding"),
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
                    &key("vocabulary.threshold"),
                    format!("{threshold} is not a cosine similarity (−1 to 1)"),
                ));
            }
            Some(VocabularySpec {
                embedding,
                threshold,
                aliases: vf.aliases.clone(),
                keep_unmapped: vf.keep_unmapped,
            })
        }
    };
    if let Some(pp) = &v.postprocess {
        if let Err(e) = pp.prepare(ctx.path.parent().unwrap_or(Path::new("."))) {
            return Err(ctx.invalid(&key("postprocess"), format!("{e:#}")));
        }
    }
    // The parameter grid: model defaults, then the variant's; lists are swept.
    let mut fixed: BTreeMap<String, Value> = model.params.clone();
    let mut swept: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, val) in &v.params {
        match val {
            Value::Array(list) if k != "stop" => {
                if list.is_empty() {
                    return Err(
                        ctx.invalid(&key(&format!("params.{k}")), "the sweep list is empty")
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
        check_param(k, val).map_err(|m| ctx.invalid(&key(&format!("params.{k}")), m))?;
    }
    let grid: usize = swept
        .iter()
        .fold(templates.len(), |n, (_, l)| n.saturating_mul(l.len()));
    if grid > MAX_SWEEP_POINTS {
        return Err(ctx.invalid(
            &key("params"),
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
    let mut out = Vec::new();
    for t in &templates {
        for p in &points {
            let mut params = fixed.clone();
            let mut sw = BTreeMap::new();
            let mut parts = Vec::new();
            if templates.len() > 1 {
                let shown = if distinct_names {
                    t.name.clone()
                } else {
                    format!("{}@{}", t.name, &t.hash[..8])
                };
                parts.push(format!("prompt={shown}"));
                sw.insert("prompt".to_string(), Value::String(t.id()));
            }
            for (k, x) in p {
                params.insert(k.clone(), x.clone());
                sw.insert(k.clone(), x.clone());
                parts.push(format!("{k}={}", show(x)));
            }
            out.push(Point {
                suffix: (!parts.is_empty()).then(|| format!("[{}]", parts.join(","))),
                gen: Some(Generation {
                    prompt: t.clone(),
                    system: system.clone(),
                    output,
                    schema: v.schema.clone(),
                    params,
                    swept: sw,
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
        let key = |k: &str| format!("judges[{i}].{k}");
        let model = ctx.model(&j.model, &key("model"))?;
        let base = j.name.clone().unwrap_or_else(|| model.name.clone());
        let mut name = base.clone();
        let mut n = 1;
        while out.iter().any(|o| o.name == name) {
            if j.name.is_some() {
                return Err(ctx.invalid(&key("name"), format!("two judges are named `{base}`")));
            }
            n += 1;
            name = format!("{base}#{n}");
        }
        let variants_judged = match &j.variants {
            Some(list) => {
                for v in list {
                    if !names.contains(&v.as_str()) {
                        return Err(ctx.invalid(
                            &key("variants"),
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
                list.clone()
            }
            None => judged_default.clone(),
        };
        let human = match &j.human {
            Some(h) => {
                let p = ctx.path.parent().unwrap_or(Path::new(".")).join(h);
                let p = if p.is_file() {
                    p
                } else {
                    ctx.project.root.join(h)
                };
                if !p.is_file() {
                    return Err(ctx.invalid(
                        &key("human"),
                        format!("human scores file {h} does not exist"),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        if let Some(b) = &j.pairwise {
            if !names.contains(&b.as_str()) {
                return Err(ctx.invalid(
                    &key("pairwise"),
                    format!("the experiment has no variant `{b}` to compare with"),
                ));
            }
        }
        let judge = if model.kind == ModelKind::Embedding {
            for (k, set) in [
                ("rubric", j.rubric.is_some()),
                ("choices", j.choices.is_some()),
                ("scale", j.scale.is_some()),
                ("pairwise", j.pairwise.is_some()),
                ("image", j.image.is_some()),
                ("choose_by", j.choose_by.is_some()),
            ] {
                if set {
                    return Err(ctx.invalid(&key(k), format!("`{k}:` is for LLM judges; `{}` is an embedding model (it scores caption similarity)", model.name)));
                }
            }
            Judge {
                name,
                model,
                rubric: None,
                verdict: Verdict::Similarity,
                image: false,
                params: BTreeMap::new(),
                variants: variants_judged,
                pairwise: None,
                reference: j.reference.unwrap_or(Reference::Truth),
                human,
                likelihood: false,
            }
        } else if model.kind.generative() {
            let Some(r) = &j.rubric else {
                return Err(ctx.invalid(
                    &key("rubric"),
                    "an LLM judge needs `rubric:` (a template in prompts/)",
                ));
            };
            let rubric = ctx.template(r, &key("rubric"))?;
            let verdict = match (&j.choices, &j.scale) {
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
                        return Err(ctx.invalid(&key("scale"), format!("scale max {} must be above min {}", s.max, s.min)));
                    }
                    Verdict::Scale { min: s.min, max: s.max }
                }
                (Some(_), Some(_)) => return Err(ctx.invalid(&key("scale"), "give `choices:` or `scale:`, not both")),
                (None, None) => return Err(ctx.invalid(&key("choices"), "an LLM judge needs `choices:` ({good: 1.0, bad: 0.0}) or `scale:` ({min: 1, max: 10})")),
            };
            if j.pairwise.is_some() {
                let Verdict::Choices(c) = &verdict else {
                    return Err(ctx.invalid(&key("choices"), "a pairwise judge names the better output: `choices: {a: 1.0, b: 0.0, tie: 0.5}`"));
                };
                let lower: Vec<String> = c.iter().map(|(k, _)| k.to_lowercase()).collect();
                if !lower.contains(&"a".to_string()) || !lower.contains(&"b".to_string()) {
                    return Err(ctx.invalid(&key("choices"), "a pairwise judge's choices must include `a` and `b` (and may include `tie`)"));
                }
            }
            let vision = model.openai.as_ref().is_some_and(|o| o.vision);
            let image = match j.image {
                Some(true) if !vision => {
                    return Err(ctx.invalid(
                        &key("image"),
                        format!("`{}` does not take images", model.name),
                    ))
                }
                Some(b) => b,
                None => vision,
            };
            let mut params = model.params.clone();
            params
                .entry("temperature".into())
                .or_insert(Value::from(0.0));
            for (k, v) in &j.params {
                check_param(k, v).map_err(|m| ctx.invalid(&key(&format!("params.{k}")), m))?;
                params.insert(k.clone(), v.clone());
            }
            if j.reference.is_some() {
                return Err(ctx.invalid(&key("reference"), "`reference:` is for embedding judges"));
            }
            let likelihood = j.choose_by == Some(ChooseBy::Likelihood);
            if likelihood {
                if model.kind != ModelKind::Gguf {
                    return Err(ctx.invalid(
                        &key("choose_by"),
                        format!("`choose_by: likelihood` needs a local `gguf` model, which gives every token's probability; `{}` is not one", model.name),
                    ));
                }
                if !matches!(verdict, Verdict::Choices(_)) {
                    return Err(ctx.invalid(
                        &key("choose_by"),
                        "`choose_by: likelihood` picks among `choices:`; a `scale:` judge answers in text",
                    ));
                }
            }
            Judge {
                name,
                model,
                rubric: Some(rubric),
                verdict,
                image,
                params,
                variants: variants_judged,
                pairwise: j.pairwise.clone(),
                reference: Reference::Truth,
                human,
                likelihood,
            }
        } else {
            return Err(ctx.invalid(
                &key("model"),
                format!("`{}` cannot judge: a judge is an LLM/VLM (`openai`, `gguf`) or an `embedding` model", model.name),
            ));
        };
        out.push(judge);
    }
    Ok(out)
}
