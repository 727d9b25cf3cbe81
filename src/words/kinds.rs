//! The kinds of things iw-lab names in its config files and tables: model kinds,
//! ground-truth sources, outputs, ensembles, judge settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kinds of ground-truth source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GroundTruthKind {
    /// Kohya-style `tag, tag, tag` text file beside each image (`IMG.txt`).
    Txt,
    /// `{"tags": [...]}` or `{"tags": {"tag": score}}` JSON file beside each image.
    Json,
    /// One labels file (CSV with `file` and `tags` columns, or JSON Lines).
    Labels,
    /// The tags of the generation prompt embedded in each AI image (docs/tags.md).
    Prompt,
}

/// Model kinds: the YAML `kind:`, which picks the engine (`engine::maker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Multi-label or classifier ONNX model run with ONNX Runtime.
    OnnxTagger,
    /// Predictions made by another tool, read from files.
    Sidecar,
    /// Any OpenAI-compatible chat-completions server (Ollama, LM Studio, vLLM, llama.cpp
    /// server, hosted APIs).
    Openai,
    /// A local quantised LLM (llama-family GGUF) run in-process.
    Gguf,
    /// A sentence-embedding model (BERT family, e.g. all-MiniLM-L6-v2): maps free text onto a
    /// tag vocabulary and scores caption similarity.
    Embedding,
    /// Combines other variants' outputs.
    Ensemble,
    /// Perceptual hashes (pHash, dHash, aHash, blockhash) of each image: no model file.
    Phash,
    /// A CLIP or SigLIP model (image and text towers) run in-process: image embeddings for
    /// similarity and text search, and zero-shot tags.
    Clip,
    /// A face detector (YuNet), with an optional recogniser (SFace): count tags, face regions,
    /// and the enrolled people each image shows.
    Faces,
}

impl ModelKind {
    /// The word of the YAML `kind:` (as serde spells it).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::OnnxTagger => "onnx-tagger",
            ModelKind::Sidecar => "sidecar",
            ModelKind::Openai => "openai",
            ModelKind::Gguf => "gguf",
            ModelKind::Embedding => "embedding",
            ModelKind::Ensemble => "ensemble",
            ModelKind::Phash => "phash",
            ModelKind::Clip => "clip",
            ModelKind::Faces => "faces",
        }
    }

    /// Kinds whose variants are prompted (LLMs and VLMs).
    pub fn generative(self) -> bool {
        matches!(self, ModelKind::Openai | ModelKind::Gguf)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnsembleMethod {
    Union,
    Intersection,
    Vote,
    Weighted,
    Llm,
}

/// Sidecar prediction formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SidecarFormat {
    Auto,
    Txt,
    Json,
}

/// How the repeats of a variant are scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreRepeats {
    /// The mean of the per-repeat metrics, with their standard deviation.
    #[default]
    Mean,
    /// The union of the repeats' answers (a tag's highest score over the repeats).
    Union,
}

/// What a generative model returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Caption,
    Tags,
    Json,
}

/// How a judge with `choices` reaches its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChooseBy {
    /// Generate an answer (reasoning allowed) and parse the last choice it names.
    Text,
    /// Score each choice's log-probability after the rubric; take the most likely.
    Likelihood,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    Truth,
    Prompt,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_kind_names_are_the_yaml_words() {
        for k in [
            ModelKind::OnnxTagger,
            ModelKind::Sidecar,
            ModelKind::Openai,
            ModelKind::Gguf,
            ModelKind::Embedding,
            ModelKind::Ensemble,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
        }
    }
}
