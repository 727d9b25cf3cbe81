//! Cache keys: data, serialised canonically and hashed with blake3.
//!
//! A key names everything that determines an output: the cache schema version, the adapter
//! kind and version, the model fingerprint (content of its files), the preprocessing spec, the
//! image *content* hash (never its path), any per-image input the adapter reads (a predictions
//! file's hash), the rendered prompt, the parameters (e.g. the score floor), and the repeat
//! index. The spelled-out key is stored beside each output (`cells.key_json`).
//!
//! Bumping [`SCHEMA`] invalidates every cached output; the snapshot in
//! `tests::key_is_stable` must then be updated, which is the point: the test fails whenever a
//! change would silently alter keys.

use serde::Serialize;
use serde_json::Value;

/// Version of the key layout.
pub const SCHEMA: u32 = 1;

/// The fields of one cache key.
#[derive(Debug, Clone, Serialize)]
pub struct CacheKey {
    pub schema: u32,
    pub adapter: String,
    pub adapter_version: u32,
    pub model: String,
    pub spec: Value,
    pub image: String,
    pub input: Option<String>,
    pub prompt: Option<String>,
    pub params: Value,
    pub repeat: u32,
}

impl CacheKey {
    /// Canonical JSON: object keys sorted at every level, no whitespace.
    pub fn canonical(&self) -> String {
        let value = serde_json::to_value(self).expect("cache keys serialise");
        canonical_json(&value)
    }

    /// blake3 of the canonical JSON, hex.
    pub fn hash(&self) -> String {
        blake3::hash(self.canonical().as_bytes())
            .to_hex()
            .to_string()
    }
}

pub use crate::hashing::canonical_json;

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            schema: SCHEMA,
            adapter: "onnx-tagger".into(),
            adapter_version: 1,
            model: "f".repeat(64),
            spec: serde_json::json!({"preprocess": {"size": 448, "channels": "bgr"}}),
            image: "a".repeat(64),
            input: None,
            prompt: None,
            params: serde_json::json!({"score_floor": 0.01}),
            repeat: 0,
        }
    }

    #[test]
    fn key_is_stable() {
        let k = key();
        assert_eq!(
            k.canonical(),
            format!(
                r#"{{"adapter":"onnx-tagger","adapter_version":1,"image":"{}","input":null,"model":"{}","params":{{"score_floor":0.01}},"prompt":null,"repeat":0,"schema":1,"spec":{{"preprocess":{{"channels":"bgr","size":448}}}}}}"#,
                "a".repeat(64),
                "f".repeat(64)
            )
        );
        assert_eq!(
            k.hash(),
            blake3::hash(k.canonical().as_bytes()).to_hex().to_string()
        );
    }

    #[test]
    fn every_field_changes_the_key() {
        let base = key().hash();
        let mut k = key();
        k.image = "b".repeat(64);
        assert_ne!(k.hash(), base);
        let mut k = key();
        k.repeat = 1;
        assert_ne!(k.hash(), base);
        let mut k = key();
        k.params = serde_json::json!({"score_floor": 0.02});
        assert_ne!(k.hash(), base);
        let mut k = key();
        k.adapter_version = 2;
        assert_ne!(k.hash(), base);
        let mut k = key();
        k.input = Some("x".into());
        assert_ne!(k.hash(), base);
    }
}
