//! An experiment file resolved: its dataset, its variants (taggers, generative points,
//! ensembles) named and checked, its thresholds, ground truth and judges. The entry point of
//! config loading ([`load_experiment`]); it joins the model resolution (`resolve`) and the
//! generative parts (`generative`), which never import each other's way back.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{did_you_mean, parse_file, ConfigError};
use super::files::*;
use super::resolve::*;

/// Loads an experiment and everything it names.
pub fn load_experiment(
    project: &Project,
    path: &Path,
    best: &dyn super::generative::BestVersions,
) -> Result<Experiment, ConfigError> {
    let (f, text): (ExperimentFile, String) = parse_file(path)?;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dataset_path =
        project.find_ref("dataset", "datasets", &f.dataset, &path, &text, "dataset")?;
    let dataset = load_dataset(project, &dataset_path)?;
    let mut models: HashMap<PathBuf, Arc<Model>> = HashMap::new();
    let mut ctx = super::generative::Ctx {
        project,
        path: &path,
        text: &text,
        models: &mut models,
        best,
    };
    let ground_truth = ground_truth_of(&ctx, f.ground_truth.as_ref(), &dataset)?;
    if f.variants.is_empty() {
        return Err(ctx.invalid(
            "variants",
            "the experiment has no variants; add at least one `- model: NAME`",
        ));
    }
    let mut unnamed = Vec::new();
    for (i, v) in f.variants.iter().enumerate() {
        unnamed.extend(variant_points(&mut ctx, i, v)?);
    }
    let named = name_variants(&ctx, unnamed)?;
    super::generative::check_references(&path, &text, &named)?;
    let variants: Vec<Variant> = named.into_iter().map(|(_, v)| v).collect();
    let judges = super::generative::judges(&mut ctx, &f.judges, &variants)?;
    let goal = f.goal.map_or_else(Goal::default, |g| Goal {
        metric: g.metric,
        direction: g.direction.unwrap_or(Direction::Maximize),
    });
    Ok(Experiment {
        name: stem(&path),
        file: path,
        dataset,
        ground_truth,
        variants,
        goal,
        limit: f.limit.map(|l| l.0 as usize),
        judges,
    })
}

/// The ground-truth source scored against: the one named (which the dataset must have), or
/// the dataset's first.
fn ground_truth_of(
    ctx: &super::generative::Ctx<'_>,
    name: Option<&String>,
    dataset: &Dataset,
) -> Result<Option<String>, ConfigError> {
    let Some(name) = name else {
        return Ok(dataset.ground_truth.first().map(|g| g.name.clone()));
    };
    if !dataset.ground_truth.iter().any(|g| &g.name == name) {
        let names: Vec<&str> = dataset
            .ground_truth
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        return Err(ctx
            .invalid(
                "ground_truth",
                format!(
                    "dataset `{}` has no ground-truth source `{name}` (it has: {})",
                    dataset.name,
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ),
            )
            .with_hint(
                did_you_mean(name, names.iter().copied()).map(|s| format!("did you mean `{s}`?")),
            ));
    }
    Ok(Some(name.clone()))
}

/// A variant (one point of an entry's sweep) before it is named.
struct Unnamed {
    /// The entry's name (or its model's) with the point's suffix.
    base: String,
    /// Whether `base` is the entry's own name, which must be unique.
    explicit: bool,
    /// The entry's index in `variants`.
    entry: usize,
    variant: Variant,
}

/// Resolves variant entry `i`: its model, thresholds and repeats, swept into its points.
fn variant_points(
    ctx: &mut super::generative::Ctx<'_>,
    i: usize,
    v: &VariantFile,
) -> Result<Vec<Unnamed>, ConfigError> {
    let key = format!("variants[{i}].model");
    let model = ctx.model(&v.model, &key)?;
    if model.kind == ModelKind::Phash {
        return Err(ctx.invalid(
            &key,
            format!(
                "model `{}` is a `phash` model: it gives image hashes, not tags, so it cannot be a variant; use `iw-lab dupes`",
                model.name
            ),
        ));
    }
    if model.kind == ModelKind::Clip && model.zero_shot.is_none() {
        return Err(ctx.invalid(
            &key,
            format!(
                "model `{}` is a `clip` model without `zero_shot:`: it gives embeddings, not tags, so it cannot be a variant; add `zero_shot: {{vocabulary: FILE}}` to tag with it, or use `iw-lab similar`/`search`",
                model.name
            ),
        ));
    }
    let generative = model.kind.generative() || model.kind == ModelKind::Ensemble;
    let score_floor = v.score_floor.map_or(model.score_floor, |p| p.0);
    let thresholds = thresholds_of(ctx, i, v, score_floor, generative)?;
    if let Some(r) = v.repeats.filter(|r| r.0 > limits::REPEATS) {
        return Err(ctx.invalid(
            &format!("variants[{i}].repeats"),
            format!("{} repeats is too many; at most {}", r.0, limits::REPEATS),
        ));
    }
    let repeats = v.repeats.map_or(1, |r| r.0 as u32);
    let points = super::generative::expand(ctx, i, v, &model)?;
    Ok(points
        .into_iter()
        .map(|point| {
            let base = v.name.clone().unwrap_or_else(|| model.name.clone());
            let base = match &point.suffix {
                Some(s) => format!("{base}{s}"),
                None => base,
            };
            Unnamed {
                base,
                explicit: v.name.is_some() && point.suffix.is_none(),
                entry: i,
                variant: Variant {
                    name: String::new(),
                    model: model.clone(),
                    thresholds: thresholds.clone(),
                    score_floor,
                    repeats,
                    score_repeats: v.score_repeats.unwrap_or_default(),
                    gen: point.gen,
                    ensemble: point.ensemble,
                },
            }
        })
        .collect())
}

/// Variant entry `i`'s thresholds (the default when it names none): a non-empty list of
/// numbers above 0 and, for taggers, not below the score floor.
fn thresholds_of(
    ctx: &super::generative::Ctx<'_>,
    i: usize,
    v: &VariantFile,
    score_floor: f64,
    generative: bool,
) -> Result<Vec<f64>, ConfigError> {
    let thresholds: Vec<f64> = match &v.thresholds {
        Some(ts) if ts.is_empty() => {
            return Err(ctx.invalid(
                &format!("variants[{i}].thresholds"),
                "the threshold list is empty",
            ));
        }
        Some(ts) => ts.iter().map(|t| t.0).collect(),
        None => vec![DEFAULT_THRESHOLD],
    };
    for (j, t) in thresholds.iter().enumerate() {
        if *t <= 0.0 || (*t < score_floor && !generative) {
            return Err(ctx.invalid(
                &format!("variants[{i}].thresholds[{j}]"),
                format!("threshold {t} is below the score floor {score_floor}: scores under the floor are not stored"),
            )
            .with_hint(Some("lower `score_floor` on the variant or model, or raise the threshold".into())));
        }
    }
    Ok(thresholds)
}

/// Unique names: explicit names must be unique; defaults get #2, #3... Returns each variant
/// with its entry's index.
fn name_variants(
    ctx: &super::generative::Ctx<'_>,
    unnamed: Vec<Unnamed>,
) -> Result<Vec<(usize, Variant)>, ConfigError> {
    let mut name_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut named = Vec::new();
    let mut used = std::collections::HashSet::new();
    for Unnamed {
        base,
        explicit,
        entry: i,
        variant: mut v,
    } in unnamed
    {
        let n = name_counts.entry(base.clone()).or_insert(0);
        *n += 1;
        let name = if *n == 1 {
            base.clone()
        } else {
            format!("{base}#{n}")
        };
        if explicit && *n > 1 {
            return Err(ctx.invalid(
                &format!("variants[{i}].name"),
                format!("two variants are named `{base}`"),
            ));
        }
        if !used.insert(name.clone()) {
            return Err(ctx.invalid(
                &format!("variants[{i}].name"),
                format!("variant name `{name}` is used twice"),
            ));
        }
        v.name = name;
        named.push((i, v));
    }
    Ok(named)
}
