//! Config files: typed, validated, resolved.
//!
//! Owns: the YAML file forms (`files`), errors with file/line/column/key and "did you mean"
//! hints (`error`), resolving names and paths across files (`resolve`), and the JSON Schemas
//! printed by `iw-lab schema`. Reads config files only; never images or models.

pub mod error;
pub mod experiment;
pub mod files;
pub mod generative;
pub mod production;
pub mod resolve;

pub use error::ConfigError;
pub use experiment::load_experiment;
pub use files::ZeroShotCalibration;
pub use files::{Category, Metric};
pub use resolve::{
    Dataset, EnsembleSpec, Experiment, FacesSpec, Generation, GroundTruth, Judge, Labels, Model,
    OpenaiSpec, Project, Variant, Verdict, Vocabulary, VocabularySpec, ZeroShot,
};

/// The config file kinds, by the folder they live in.
pub const KINDS: &[&str] = &["dataset", "model", "experiment", "production"];

/// The JSON Schema of one file kind (`dataset`, `model` or `experiment`).
pub fn schema(kind: &str) -> Option<serde_json::Value> {
    let schema = match kind {
        "dataset" => schemars::schema_for!(files::DatasetFile),
        "model" => schemars::schema_for!(files::ModelFile),
        "experiment" => schemars::schema_for!(files::ExperimentFile),
        "production" => schemars::schema_for!(production::ProductionConfig),
        _ => return None,
    };
    let mut value = serde_json::to_value(schema).ok()?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), format!("iw-lab {kind} file").into());
        obj.insert(
            "$id".into(),
            format!("https://iw-lab.dev/schema/{kind}.schema.json").into(),
        );
    }
    Some(value)
}
