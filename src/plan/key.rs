//! Cache keys: data, serialised canonically and hashed with blake3. Every cached thing is keyed
//! here, by one type under one schema version: a variant's cell (tagger scores, a prompted
//! model's raw answer, an ensemble's tags), a prediction of `iw-lab predict` and `iw-lab tag`
//! (a tagger's cell), and a judge's verdict.
//!
//! A key names everything that determines what is cached: the cache schema version, the
//! engine kind and version, the model fingerprint (content of its files, or a server's
//! settings), the engine's spec (preprocessing, ensemble settings, verdict form), the image
//! *content* hash (never its path), any per-image input the engine reads (a predictions
//! file's hash, an ensemble's member outputs), the hash of the prompt as rendered, the
//! parameters (the score floor, generation parameters), and the repeat index. What is applied
//! to a cached thing afterwards (thresholds, post-processing, vocabulary mapping) is not in
//! it. The spelled-out key is stored beside each cell (`cells.key_json`).
//!
//! Bumping [`SCHEMA`] invalidates every cached output; the snapshot in
//! `tests::key_is_stable` must then be updated, which is the point: the test fails whenever a
//! change would silently alter keys.

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{EnsembleSpec, Generation, Judge};
use crate::words::Identity;

/// Version of the key layout.
pub const SCHEMA: u32 = 1;

/// The fields of one cache key.
#[derive(Debug, Clone, Serialize)]
pub struct CacheKey {
    pub schema: u32,
    /// The engine kind (the field keeps its first name so existing keys stay valid).
    pub adapter: String,
    pub adapter_version: u32,
    pub model: String,
    pub spec: Value,
    /// The image content hash; empty when the engine never sees the image (a text judge).
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

    /// A key of `identity`'s engine with its spec and no per-image parts yet.
    fn of(identity: &Identity, spec: Value, image: &str, params: Value, repeat: u32) -> CacheKey {
        CacheKey {
            schema: SCHEMA,
            adapter: identity.kind.to_string(),
            adapter_version: identity.version,
            model: identity.fingerprint.clone(),
            spec,
            image: image.to_string(),
            input: None,
            prompt: None,
            params,
            repeat,
        }
    }
}

pub use crate::hashing::canonical_json;

/// blake3 of a text, hex (the form prompts and member outputs enter keys in).
pub fn digest(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// The key of a tagger's cell (an image model or a sidecar): its scores for one image.
pub fn tagger(
    identity: &Identity,
    image_hash: &str,
    input: Option<&str>,
    floor: f64,
    repeat: u32,
) -> CacheKey {
    let mut k = CacheKey::of(
        identity,
        identity.spec.clone(),
        image_hash,
        json!({ "score_floor": floor }),
        repeat,
    );
    k.input = input.map(str::to_string);
    k
}

/// The key of a model's vector (perceptual hashes or embedding) of one image: kept apart
/// from the same model's tags, which a zero-shot CLIP model also gives.
pub fn vector(identity: &Identity, image_hash: &str) -> CacheKey {
    CacheKey::of(
        identity,
        identity.spec.clone(),
        image_hash,
        json!({ "output": "vector" }),
        0,
    )
}

/// The identity of a rendered prompt: blake3 of the system message (when there is one), a
/// NUL, and the user message.
pub fn prompt_id(system: Option<&str>, user: &str) -> String {
    match system {
        Some(sys) => digest(&format!("{sys}\u{0}{user}")),
        None => digest(user),
    }
}

/// The key of a prompted model's answer for one image and repeat: the model, what is asked
/// (the prompt as rendered, `prompt`, from [`prompt_id`]), the parameters and the output form.
/// What becomes of the answer afterwards (vocabulary mapping, bans, the tag limit) is not in
/// the key: the raw answer is what is cached.
pub fn prompted(
    identity: &Identity,
    g: &Generation,
    image_hash: &str,
    prompt: &str,
    repeat: u32,
) -> CacheKey {
    let params = json!({
        "params": g.params,
        "output": g.output,
        "schema": g.schema,
        "system": g.system.as_ref().map(|t| &t.hash),
        "image": g.image,
    });
    let mut k = CacheKey::of(identity, identity.spec.clone(), image_hash, params, repeat);
    k.prompt = Some(prompt.to_string());
    k
}

/// The identity of an ensemble's inputs for one image: blake3 of its members' outputs, in
/// member order (`null` for a member that failed on it).
pub fn members_id(members: &[Option<Vec<(String, f32)>>]) -> String {
    digest(&serde_json::to_string(members).expect("member outputs serialise"))
}

/// The key of an ensemble's tags for one image and repeat: its settings, its members'
/// outputs (`members`, from [`members_id`]), and for an `llm` merge the merge model and
/// prompt.
pub fn ensemble(
    identity: &Identity,
    e: &EnsembleSpec,
    merge: Option<&Identity>,
    image_hash: &str,
    members: &str,
    repeat: u32,
) -> CacheKey {
    let spec = serde_json::to_value(e).unwrap_or_default();
    let params = json!({ "merge_model": merge.map(|i| &i.fingerprint) });
    let mut k = CacheKey::of(identity, spec, image_hash, params, repeat);
    k.input = Some(format!("members:{members}"));
    k.prompt = e.merge_prompt.as_ref().map(|t| t.hash.clone());
    k
}

/// The key of one verdict: the judge model, the verdict form, what was asked (the rendered
/// rubric, or a similarity judge's output and reference), the image when it was sent, the
/// parameters and the side (pairwise judges ask both orders).
pub fn verdict(
    identity: &Identity,
    judge: &Judge,
    asked: &Value,
    image: Option<&str>,
    side: &str,
) -> CacheKey {
    let mut spec = json!({ "verdict": judge.verdict });
    if judge.likelihood {
        spec["choose_by"] = json!("likelihood");
    }
    let params = json!({ "params": judge.params, "side": side });
    let mut k = CacheKey::of(identity, spec, image.unwrap_or(""), params, 0);
    k.prompt = Some(digest(&canonical_json(asked)));
    k
}

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
