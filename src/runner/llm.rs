//! One interface over the language models a run prompts: an OpenAI-compatible server or a
//! local GGUF model. A call is a system message, a user message, an optional image, and
//! generation parameters; the answer carries the text, token counts and timing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use crate::config::files::ModelKind;
use crate::config::{Model, OpenaiSpec};
use crate::dataset::ImageEntry;
use crate::engine::gguf::{Gguf, Sampling};
use crate::engine::openai::client::{Client, ClientConfig};
use crate::engine::{Context, Identity};

/// Default `max_tokens` when neither the model nor the variant sets one.
pub const DEFAULT_MAX_TOKENS: u64 = 256;

/// One request.
#[derive(Debug, Clone)]
pub struct Call {
    pub system: Option<String>,
    pub user: String,
    /// The image to send (a vision model), decoded and encoded by the worker.
    pub image: Option<usize>,
    pub params: BTreeMap<String, Value>,
    /// The seed of this repeat.
    pub seed: u64,
    /// Pick one of these by likelihood instead of generating (local `gguf` models): the
    /// answer's text is the chosen one.
    pub choices: Option<Vec<String>>,
}

/// One answer.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub text: String,
    pub finish: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub attempts: u32,
    pub ms: f64,
}

/// A loaded language model.
pub enum Llm {
    Openai {
        client: Box<Client>,
        spec: Box<OpenaiSpec>,
    },
    Gguf(Arc<Gguf>),
}

impl Llm {
    /// Connects to or loads `model`. The API key is read from the environment here and lives
    /// only inside the client.
    pub fn load(model: &Model, identity: &Identity, _ctx: &Context) -> Result<Llm> {
        match model.kind {
            ModelKind::Openai => {
                let spec = model.openai.clone().expect("resolved openai model");
                let mut cfg = ClientConfig::new(&spec.base_url);
                if let Some(var) = &spec.api_key_env {
                    cfg.api_key = Some(std::env::var(var).with_context(|| {
                        format!(
                            "model `{}` reads its API key from the environment variable {var}, which is not set",
                            model.name
                        )
                    })?);
                }
                cfg.timeout = std::time::Duration::try_from_secs_f64(spec.timeout_s)
                    .unwrap_or(std::time::Duration::from_secs(86_400));
                cfg.max_retries = spec.max_retries;
                cfg.concurrency = spec.concurrency;
                cfg.requests_per_minute = spec.requests_per_minute;
                cfg.tokens_per_minute = spec.tokens_per_minute;
                if let Ok(ms) = std::env::var("IW_LAB_BACKOFF_MS") {
                    if let Ok(ms) = ms.parse::<u64>() {
                        cfg.backoff_base = std::time::Duration::from_millis(ms);
                    }
                }
                Ok(Llm::Openai {
                    client: Box::new(Client::new(cfg)),
                    spec: Box::new(spec),
                })
            }
            ModelKind::Gguf => {
                let file = identity
                    .files
                    .first()
                    .context("gguf model without a file")?;
                let g = Gguf::load(&file.path)
                    .with_context(|| format!("loading model `{}`", model.name))?;
                Ok(Llm::Gguf(Arc::new(g)))
            }
            other => anyhow::bail!("model `{}` ({other:?}) is not a language model", model.name),
        }
    }

    /// Calls in flight at once.
    pub fn parallelism(&self) -> usize {
        match self {
            Llm::Openai { spec, .. } => spec.concurrency.max(1),
            Llm::Gguf(_) => 1,
        }
    }

    /// Prices per million tokens, when known.
    pub fn prices(&self) -> Option<(f64, f64)> {
        match self {
            Llm::Openai { spec, .. } => spec.prices.map(|p| (p.input, p.output)),
            Llm::Gguf(_) => None,
        }
    }

    /// Runs one call. `image_url` is the data URL of the image when the call sends one.
    pub fn call(&self, call: &Call, image_url: Option<&str>) -> Result<Answer, String> {
        let max_tokens = call
            .params
            .get("max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_TOKENS);
        let stop: Vec<String> = match call.params.get("stop") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        match self {
            Llm::Openai { .. } if call.choices.is_some() => {
                Err("choosing by likelihood needs a local `gguf` model".into())
            }
            Llm::Openai { client, spec } => {
                let mut messages = Vec::new();
                if let Some(s) = &call.system {
                    messages.push(json!({"role": "system", "content": s}));
                }
                let content = match image_url {
                    Some(url) => json!([
                        {"type": "text", "text": call.user},
                        {"type": "image_url", "image_url": {"url": url}},
                    ]),
                    None => Value::String(call.user.clone()),
                };
                messages.push(json!({"role": "user", "content": content}));
                let mut body = serde_json::Map::new();
                body.insert("model".into(), Value::String(spec.model.clone()));
                body.insert("messages".into(), Value::Array(messages));
                for (k, v) in &call.params {
                    body.insert(k.clone(), v.clone());
                }
                body.insert("max_tokens".into(), Value::from(max_tokens));
                body.insert("seed".into(), Value::from(call.seed));
                body.insert("stream".into(), Value::Bool(false));
                let c = client
                    .complete(&Value::Object(body))
                    .map_err(|f| f.to_string())?;
                Ok(Answer {
                    text: c.text,
                    finish: c.finish_reason.unwrap_or_default(),
                    prompt_tokens: c.usage.prompt_tokens,
                    completion_tokens: c.usage.completion_tokens,
                    attempts: c.attempts,
                    ms: c.latency_ms,
                })
            }
            Llm::Gguf(g) => {
                let t = Instant::now();
                let mut messages = Vec::new();
                if let Some(s) = &call.system {
                    messages.push(("system".to_string(), s.clone()));
                }
                messages.push(("user".to_string(), call.user.clone()));
                if let Some(choices) = &call.choices {
                    let c = g.choose(&messages, choices).map_err(|e| format!("{e:#}"))?;
                    let scores: Vec<String> = choices
                        .iter()
                        .zip(&c.logprobs)
                        .map(|(name, lp)| format!("{name} {lp:.4}"))
                        .collect();
                    return Ok(Answer {
                        text: choices[c.best].clone(),
                        finish: format!("likelihood: {}", scores.join(", ")),
                        prompt_tokens: c.prompt_tokens as u64,
                        completion_tokens: 0,
                        attempts: 1,
                        ms: t.elapsed().as_secs_f64() * 1000.0,
                    });
                }
                let s = Sampling {
                    temperature: call
                        .params
                        .get("temperature")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0),
                    top_p: call.params.get("top_p").and_then(Value::as_f64),
                    top_k: call
                        .params
                        .get("top_k")
                        .and_then(Value::as_u64)
                        .map(|k| k as usize),
                    max_tokens: max_tokens as usize,
                    seed: call.seed,
                    stop,
                };
                let out = g.generate(&messages, &s).map_err(|e| format!("{e:#}"))?;
                Ok(Answer {
                    text: out.text,
                    finish: out.finish_reason,
                    prompt_tokens: out.prompt_tokens as u64,
                    completion_tokens: out.completion_tokens as u64,
                    attempts: 1,
                    ms: t.elapsed().as_secs_f64() * 1000.0,
                })
            }
        }
    }

    /// Reads, checks and encodes an image for a vision call.
    pub fn image_url(&self, img: &ImageEntry, max_pixels: u64) -> Result<String, String> {
        let Llm::Openai { spec, .. } = self else {
            return Err("this model does not take images".into());
        };
        let bytes = std::fs::read(&img.abs).map_err(|e| format!("cannot read: {e}"))?;
        if crate::hashing::content_hash(&bytes) != img.hash {
            return Err("file changed since it was scanned; run again".into());
        }
        let rgb = crate::imaging::decode_rgb(&bytes, max_pixels).map_err(|e| e.to_string())?;
        let enc = crate::engine::openai::image::encode(&rgb, &spec.image)?;
        Ok(enc.data_url())
    }
}

/// The seed of repeat `repeat`: the `seed` parameter (default 0) plus the repeat index.
pub fn seed_of(params: &BTreeMap<String, Value>, repeat: u32) -> u64 {
    params
        .get("seed")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .wrapping_add(repeat as u64)
}
