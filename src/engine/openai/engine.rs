//! The `openai` engine: any OpenAI-compatible chat-completions server (Ollama, LM Studio,
//! vLLM, llama.cpp's server, hosted APIs). It writes text and, when the model takes images,
//! reads one image per call as a data URL.

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::client::{Client, ClientConfig};
use crate::config::{Model, OpenaiSpec};
use crate::dataset::ImageEntry;
use crate::engine::{Answer, Call, Capabilities, Engine, EngineError, Identity};

/// The factory's entry for `openai`.
pub(crate) struct Kind;

impl crate::engine::Maker for Kind {
    fn identify(
        &self,
        model: &Model,
        _ctx: &crate::engine::Context,
        _download: bool,
    ) -> Result<Option<Identity>> {
        Ok(Some(identify(model)))
    }

    fn capabilities(&self, model: &Model) -> Capabilities {
        capabilities(model)
    }

    fn load(
        &self,
        model: &Model,
        _identity: &Identity,
        _ctx: &crate::engine::Context,
    ) -> Result<std::sync::Arc<dyn Engine>> {
        Ok(std::sync::Arc::new(OpenaiEngine::load(model)?))
    }
}

/// Identified by its settings: the server, the model name and how images are sent.
fn identify(model: &Model) -> Identity {
    let o = model.openai.as_ref().expect("resolved openai spec");
    let spec = json!({
        "base_url": o.base_url,
        "model": o.model,
        "image": o.image,
    });
    crate::engine::identity_of_spec("openai", spec)
}

/// What an `openai` model can do, known from its settings.
fn capabilities(model: &Model) -> Capabilities {
    let o = model.openai.as_ref();
    Capabilities {
        text: true,
        vision: o.is_some_and(|o| o.vision),
        parallelism: o.map_or(1, |o| o.concurrency.max(1)),
        ..Capabilities::default()
    }
}

/// A connected server.
pub struct OpenaiEngine {
    client: Client,
    spec: OpenaiSpec,
    caps: Capabilities,
}

impl OpenaiEngine {
    /// Connects to `model`'s server. The API key is read from the environment here and lives
    /// only inside the client.
    pub fn load(model: &Model) -> Result<OpenaiEngine> {
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
        if let Some(ms) = std::env::var("IW_LAB_BACKOFF_MS")
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            cfg.backoff_base = std::time::Duration::from_millis(ms);
        }
        Ok(OpenaiEngine {
            client: Client::new(cfg),
            caps: capabilities(model),
            spec,
        })
    }

    /// The request body of a call: the messages, the parameters, then the fields we own.
    fn body(&self, call: &Call, image_url: Option<&str>) -> Value {
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
        body.insert("model".into(), Value::String(self.spec.model.clone()));
        body.insert("messages".into(), Value::Array(messages));
        for (k, v) in &call.params {
            body.insert(k.clone(), v.clone());
        }
        body.insert("max_tokens".into(), Value::from(call.max_tokens()));
        body.insert("seed".into(), Value::from(call.seed));
        body.insert("stream".into(), Value::Bool(false));
        Value::Object(body)
    }
}

impl Engine for OpenaiEngine {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn kind(&self) -> &'static str {
        "openai"
    }

    fn generate(&self, call: &Call, image_url: Option<&str>) -> Result<Answer, EngineError> {
        if call.choices.is_some() {
            return Err(self.unsupported("choose among options by likelihood"));
        }
        let c = self
            .client
            .complete(&self.body(call, image_url))
            .map_err(|f| EngineError::Call(f.to_string()))?;
        Ok(Answer {
            text: c.text,
            finish: c.finish_reason.unwrap_or_default(),
            prompt_tokens: c.usage.prompt_tokens,
            completion_tokens: c.usage.completion_tokens,
            attempts: c.attempts,
            ms: c.latency_ms,
        })
    }

    fn image_url(&self, img: &ImageEntry, max_pixels: u64) -> Result<String, EngineError> {
        let bytes =
            std::fs::read(&img.abs).map_err(|e| EngineError::Input(format!("cannot read: {e}")))?;
        if crate::hashing::content_hash(&bytes) != img.hash {
            return Err(EngineError::Input(
                "file changed since it was scanned; run again".into(),
            ));
        }
        let rgb = crate::imaging::decode_rgb(&bytes, max_pixels)
            .map_err(|e| EngineError::Input(e.to_string()))?;
        let enc = super::image::encode(&rgb, &self.spec.image).map_err(EngineError::Input)?;
        Ok(enc.data_url())
    }

    fn prices(&self) -> Option<(f64, f64)> {
        self.spec.prices.map(|p| (p.input, p.output))
    }
}
