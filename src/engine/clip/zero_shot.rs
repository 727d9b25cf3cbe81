//! Zero-shot tags from a CLIP or SigLIP model: every tag of a vocabulary is put in a
//! template ("a photo of {tag}"), embedded by the text tower once when the model loads, and
//! scored against each image embedding by cosine similarity, then calibrated to 0–1:
//!
//! - `sigmoid` (SigLIP's default): `σ(s·cos + b)` with the model's learned scale `s` and
//!   bias `b`, exactly how SigLIP was trained to give each text an independent probability.
//! - `neutral` (CLIP's default): `σ(s·(cos − cos_neutral))`, the two-way softmax of CLIP's
//!   own zero-shot classifier between the tag's text and a neutral text ("a photo"): the
//!   chance the tag describes the image better than nothing in particular. Multi-label, no
//!   fitted parameter.
//! - `softmax`: CLIP's zero-shot classification over the whole vocabulary, `softmax(s·cos)`;
//!   scores sum to 1, so it suits a vocabulary of mutually exclusive classes (ratings, one
//!   subject), not many independent tags.
//!
//! CLIP has no learned bias, so `sigmoid` is refused for it (σ(100·cos) is ≈ 1 for every tag).

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use super::{Clip, Family};
use crate::config::{Model, Vocabulary, ZeroShot, ZeroShotCalibration};
use crate::engine::labels::{self, Label};
use crate::engine::{Context, FileInfo, TagScore};

/// The most tags a vocabulary may have (WD's vocabulary has ≈ 10,000).
pub const MAX_TAGS: usize = 100_000;

/// A vocabulary embedded, ready to score images.
pub struct Table {
    labels: Vec<Label>,
    /// One unit vector per label, row-major.
    text: Vec<Vec<f32>>,
    neutral: Option<Vec<f32>>,
    calibration: ZeroShotCalibration,
    scale: f32,
    bias: f32,
}

/// The calibration a model uses: its file's, else its family's default.
fn calibration_of(z: &ZeroShot, family: Family) -> Result<ZeroShotCalibration> {
    let c = z.calibration.unwrap_or(match family {
        Family::Siglip => ZeroShotCalibration::Sigmoid,
        Family::Clip => ZeroShotCalibration::Neutral,
    });
    if c == ZeroShotCalibration::Sigmoid && family == Family::Clip {
        bail!("`calibration: sigmoid` needs SigLIP's learned bias; a CLIP model has none (use `neutral` or `softmax`)");
    }
    Ok(c)
}

/// The text a tag is embedded in.
pub fn prompt(template: &str, tag: &str) -> String {
    template.replace("{tag}", &tag.replace('_', " "))
}

/// The vocabulary's labels.
fn labels_of(model: &Model, z: &ZeroShot, ctx: &Context) -> Result<Vec<Label>> {
    let labels = match &z.vocabulary {
        Vocabulary::File { source, .. } => {
            let path = ctx.fetcher.resolve(source, None)?;
            labels::read_file(&path, &model.aliases)?
        }
        Vocabulary::Tags(tags) => {
            let raw: Vec<(String, Option<crate::words::Category>)> =
                tags.iter().map(|t| (t.clone(), None)).collect();
            labels::from_names(&raw, &model.aliases)
                .map_err(|e| anyhow::anyhow!("the dataset's tags: {e}"))?
        }
        Vocabulary::Dataset => bail!(
            "`vocabulary: dataset` takes the tags of an experiment's ground truth; it has none outside an experiment"
        ),
    };
    // A tag listed twice is one tag (twice, it would split a softmax's mass).
    let mut seen = std::collections::HashSet::new();
    let labels: Vec<Label> = labels
        .into_iter()
        .filter(|l| seen.insert(Arc::clone(&l.tag)))
        .collect();
    if labels.is_empty() {
        bail!("the vocabulary has no tags");
    }
    if labels.len() > MAX_TAGS {
        bail!(
            "the vocabulary has {} tags; at most {MAX_TAGS}",
            labels.len()
        );
    }
    Ok(labels)
}

/// The zero-shot part of a model's identity spec; the vocabulary file joins `files`.
pub fn spec(
    model: &Model,
    z: &ZeroShot,
    ctx: &Context,
    files: &mut Vec<FileInfo>,
) -> Result<serde_json::Value> {
    let vocabulary = match &z.vocabulary {
        Vocabulary::File { source, .. } => {
            let f = ctx
                .file("vocabulary", model, source, None, true)?
                .context("the vocabulary file")?;
            let id = f.blake3.clone();
            files.push(f);
            id
        }
        Vocabulary::Tags(tags) => {
            let text = serde_json::to_string(tags)?;
            blake3::hash(text.as_bytes()).to_hex().to_string()
        }
        Vocabulary::Dataset => "dataset".to_string(),
    };
    Ok(serde_json::json!({
        "zero_shot": {
            "vocabulary": vocabulary,
            "template": z.template,
            "calibration": z.calibration,
            "neutral_text": z.neutral_text,
            "aliases": model.aliases,
        }
    }))
}

impl Table {
    /// Embeds a model's vocabulary.
    pub fn build(clip: &Clip, model: &Model, z: &ZeroShot, ctx: &Context) -> Result<Table> {
        let calibration = calibration_of(z, clip.family())?;
        let labels = labels_of(model, z, ctx)?;
        let prompts: Vec<String> = labels.iter().map(|l| prompt(&z.template, &l.tag)).collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let text = clip.text_embeddings(&refs)?;
        let neutral = if calibration == ZeroShotCalibration::Neutral {
            clip.text_embeddings(&[z.neutral_text.as_str()])?.pop()
        } else {
            None
        };
        let (scale, bias) = clip.logit_scale_and_bias();
        Ok(Table {
            labels,
            text,
            neutral,
            calibration,
            scale,
            bias: bias.unwrap_or(0.0),
        })
    }

    /// Every tag's score for one unit image embedding.
    pub fn tags(&self, image: &[f32]) -> Vec<TagScore> {
        let cos: Vec<f32> = self.text.iter().map(|t| dot(t, image)).collect();
        let scores = calibrate(
            self.calibration,
            &cos,
            self.scale,
            self.bias,
            self.neutral.as_deref().map(|n| dot(n, image)),
        );
        self.labels
            .iter()
            .zip(scores)
            .map(|(l, score)| TagScore {
                tag: Arc::clone(&l.tag),
                score,
                category: l.category,
            })
            .collect()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Cosine similarities to scores in 0–1 (see the module docs).
pub fn calibrate(
    how: ZeroShotCalibration,
    cos: &[f32],
    scale: f32,
    bias: f32,
    neutral: Option<f32>,
) -> Vec<f32> {
    let out: Vec<f32> = match how {
        ZeroShotCalibration::Sigmoid => cos.iter().map(|c| sigmoid(scale * c + bias)).collect(),
        ZeroShotCalibration::Neutral => {
            let n = neutral.unwrap_or(0.0);
            cos.iter().map(|c| sigmoid(scale * (c - n))).collect()
        }
        ZeroShotCalibration::Softmax => {
            let max = cos.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = cos.iter().map(|c| (scale * (c - max)).exp()).collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(|x| x / sum).collect()
        }
    };
    out.into_iter()
        .map(|s| {
            if s.is_finite() {
                s.clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrations() {
        let cos = [0.3, 0.2, -0.1];
        let s = calibrate(ZeroShotCalibration::Softmax, &cos, 100.0, 0.0, None);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(s[0] > 0.99);
        let n = calibrate(ZeroShotCalibration::Neutral, &cos, 100.0, 0.0, Some(0.2));
        assert!(n[0] > 0.99 && (n[1] - 0.5).abs() < 1e-6 && n[2] < 1e-6);
        let g = calibrate(ZeroShotCalibration::Sigmoid, &cos, 10.0, -2.0, None);
        assert!((g[0] - sigmoid(1.0)).abs() < 1e-6);
        let nan = calibrate(ZeroShotCalibration::Softmax, &[f32::NAN], 100.0, 0.0, None);
        assert_eq!(nan, vec![0.0]);
    }

    #[test]
    fn prompts_read_tags_with_spaces() {
        assert_eq!(
            prompt("a photo of {tag}", "long_hair"),
            "a photo of long hair"
        );
        assert_eq!(prompt("{tag}, {tag}", "🐱"), "🐱, 🐱");
    }
}
