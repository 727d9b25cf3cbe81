//! A run's text metrics: the stored verdicts, failures, generation totals and outputs read
//! from the store, handed to `analysis::judges`; stability across repeats embeds captions
//! with the experiment's embedding model when it has one.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;
use serde_json::Value;

use super::super::engines::Engines;
use super::super::Staged;
use crate::analysis::agreement;
use crate::analysis::judges::{self, HumanScore, TagCell};
use crate::analysis::metrics::TextMetrics;
use crate::config::{Judge, Variant};
use crate::engine::{Context, Engine};
use crate::store::duck::Connection;
use crate::store::reads::{self, Outputs};
use crate::store::{judgments, RunDir};

/// Text metrics of every variant from the run's tables, and the judges' agreement.
pub fn summarise(
    conn: &Connection<'_>,
    run: &RunDir,
    staged: &Staged,
    ctx: &Context,
    engines: &mut Engines,
) -> Result<(BTreeMap<String, TextMetrics>, Value)> {
    let exp = &staged.exp;
    let rows = judgments::verdicts(conn, run)?;
    let failures = judgments::failure_counts(conn, run)?;
    let mut out = judges::summaries(&exp.judges, &rows, &failures);
    judges::add_generation(&mut out, &judgments::generation(conn, run)?);
    let embedder = exp
        .models()
        .into_iter()
        .find(|m| crate::engine::capabilities_of(m).embed)
        .and_then(|m| engines.get(&m, staged, ctx).ok());
    for v in exp.variants.iter().filter(|v| v.repeats > 1) {
        let outs = reads::outputs(conn, run, &v.name)?;
        if let Some(s) = stability(v, &outs, embedder.as_deref())? {
            out.entry(v.name.clone()).or_default().stability = Some(s);
        }
    }
    let mut judged: BTreeMap<&str, Outputs> = BTreeMap::new();
    for v in exp
        .variants
        .iter()
        .filter(|v| !v.captions() && exp.judges.iter().any(|j| j.variants.contains(&v.name)))
    {
        judged.insert(&v.name, reads::outputs(conn, run, &v.name)?);
    }
    let tagged = tag_cells(staged, &judged);
    let human = human_scores(&exp.judges);
    let agreement = judges::agreement(&exp.judges, &rows, &tagged, &human);
    Ok((out, agreement))
}

/// Agreement of each image's repeats, averaged over the images with two or more: pairwise
/// Jaccard of tag sets; for captions, pairwise cosine of their embeddings (or Jaccard of their
/// words without an embedding model).
fn stability(v: &Variant, outs: &Outputs, embedder: Option<&dyn Engine>) -> Result<Option<f64>> {
    let mut by_path: BTreeMap<&str, Vec<&reads::Output>> = BTreeMap::new();
    for ((p, _), o) in outs {
        by_path.entry(p.as_str()).or_default().push(o);
    }
    let mut per_image = Vec::new();
    for group in by_path.values().filter(|g| g.len() >= 2) {
        if !v.captions() {
            let sets: Vec<HashSet<String>> = group
                .iter()
                .map(|(t, _)| t.iter().map(|(x, _)| x.clone()).collect())
                .collect();
            per_image.push(agreement::mean_pairwise_jaccard(&sets));
            continue;
        }
        let caps: Vec<&str> = group.iter().filter_map(|(_, c)| c.as_deref()).collect();
        if caps.len() < 2 {
            continue;
        }
        per_image.push(match embedder {
            Some(e) => judges::mean_pairwise_cosine(&e.embed(&caps)?),
            None => {
                let sets: Vec<HashSet<String>> =
                    caps.iter().map(|c| judges::caption_words(c)).collect();
                agreement::mean_pairwise_jaccard(&sets)
            }
        });
    }
    Ok((!per_image.is_empty()).then(|| per_image.iter().sum::<f64>() / per_image.len() as f64))
}

/// The judged cells of tag-writing variants on images with ground truth.
fn tag_cells<'a>(staged: &'a Staged, judged: &'a BTreeMap<&str, Outputs>) -> Vec<TagCell<'a>> {
    let image_of = staged.index_by_path();
    let mut out = Vec::new();
    for (variant, outs) in judged {
        for ((path, repeat), (tags, _)) in outs {
            let Some(truth) = image_of.get(path.as_str()).and_then(|&i| staged.truth(i)) else {
                continue;
            };
            out.push(TagCell {
                variant,
                path,
                repeat: *repeat,
                tags: tags.iter().map(|(t, _)| t.as_str()).collect(),
                truth,
            });
        }
    }
    out
}

/// Each judge's human scores (`human:`, a CSV with `file`, `score` and optionally `variant`
/// columns). A file that cannot be read, or lacks a column, gives the judge no comparison.
fn human_scores(judges: &[Judge]) -> BTreeMap<String, Vec<HumanScore>> {
    judges
        .iter()
        .filter_map(|j| Some((j.name.clone(), read_human(j.human.as_deref()?).ok()?)))
        .collect()
}

fn read_human(path: &std::path::Path) -> Result<Vec<HumanScore>> {
    let mut rdr = csv::Reader::from_path(path)?;
    let headers = rdr.headers()?.clone();
    let col = |n: &str| headers.iter().position(|h| h.trim() == n);
    let (Some(fc), Some(sc)) = (col("file"), col("score")) else {
        anyhow::bail!("{}: needs `file` and `score` columns", path.display());
    };
    let vc = col("variant");
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec?;
        let Ok(score) = rec.get(sc).unwrap_or_default().trim().parse::<f64>() else {
            continue;
        };
        out.push(HumanScore {
            file: rec.get(fc).unwrap_or_default().to_string(),
            variant: vc.and_then(|c| rec.get(c)).map(str::to_string),
            score,
        });
    }
    Ok(out)
}
