//! The metrics a goal can name, and which way is better.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Metrics a goal can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    F1Micro,
    F1Macro,
    F1Samples,
    PrecisionMicro,
    PrecisionMacro,
    PrecisionSamples,
    RecallMicro,
    RecallMacro,
    RecallSamples,
    Map,
    /// Mean of the judges' scores (0–1).
    JudgeScore,
    /// Mean cosine similarity of captions to their reference (embedding judges).
    CaptionSimilarity,
    /// Agreement of an image's repeats (tags: mean pairwise Jaccard; captions: similarity).
    Stability,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::F1Micro => "f1_micro",
            Metric::F1Macro => "f1_macro",
            Metric::F1Samples => "f1_samples",
            Metric::PrecisionMicro => "precision_micro",
            Metric::PrecisionMacro => "precision_macro",
            Metric::PrecisionSamples => "precision_samples",
            Metric::RecallMicro => "recall_micro",
            Metric::RecallMacro => "recall_macro",
            Metric::RecallSamples => "recall_samples",
            Metric::Map => "map",
            Metric::JudgeScore => "judge_score",
            Metric::CaptionSimilarity => "caption_similarity",
            Metric::Stability => "stability",
        }
    }

    /// The columns of the leaderboards (`iw-lab run`, the report), in order, with their
    /// headers: tag metrics (one row per variant and threshold), then text metrics (one row
    /// per variant). A new metric is a variant of [`Metric`], its name above, its column here,
    /// and its value in `analysis::metrics` (`VariantMetrics::get`).
    pub const LEADERBOARD: &'static [(Metric, &'static str)] = &[
        (Metric::F1Micro, "F1 micro"),
        (Metric::PrecisionMicro, "P micro"),
        (Metric::RecallMicro, "R micro"),
        (Metric::F1Macro, "F1 macro"),
        (Metric::F1Samples, "F1 samples"),
        (Metric::Map, "mAP"),
        (Metric::JudgeScore, "judge score"),
        (Metric::CaptionSimilarity, "similarity"),
        (Metric::Stability, "stability"),
    ];

    /// The leaderboard's columns of tag metrics (`of_text` false) or of text metrics.
    pub fn columns(of_text: bool) -> impl Iterator<Item = (Metric, &'static str)> {
        Metric::LEADERBOARD
            .iter()
            .copied()
            .filter(move |(m, _)| m.of_text() == of_text)
    }

    /// A score of generated text (judges, similarity, stability), not of tags against ground
    /// truth: the same at every threshold, and defined without ground truth.
    pub fn of_text(self) -> bool {
        matches!(
            self,
            Metric::JudgeScore | Metric::CaptionSimilarity | Metric::Stability
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Maximize,
    Minimize,
}
