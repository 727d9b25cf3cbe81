//! The `gguf` engine: a local GGUF model behind the one engine trait. It writes text, and
//! chooses among named options by their likelihood (what a judge with `choose_by: likelihood`
//! asks).

use std::time::Instant;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{Gguf, Sampling};
use crate::config::Model;
use crate::engine::{Answer, Call, Capabilities, Context, Engine, EngineError, Identity};

/// The factory's entry for `gguf`.
pub(crate) struct Kind;

impl crate::engine::Maker for Kind {
    fn identify(&self, model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
        identify(model, ctx, download)
    }

    fn capabilities(&self, _model: &Model) -> Capabilities {
        capabilities()
    }

    fn load(
        &self,
        model: &Model,
        identity: &Identity,
        _ctx: &Context,
    ) -> Result<std::sync::Arc<dyn Engine>> {
        Ok(std::sync::Arc::new(GgufEngine::load(model, identity)?))
    }
}

/// Identified by its file's content.
fn identify(model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
    let source = model.source_parsed.as_ref().expect("resolved gguf source");
    let Some(file) = ctx.file("model", model, source, model.sha256.as_deref(), download)? else {
        return Ok(None);
    };
    Ok(Some(Identity {
        kind: "gguf",
        version: 1,
        fingerprint: file.blake3.clone(),
        spec: serde_json::json!({}),
        files: vec![file],
    }))
}

/// What a `gguf` model can do: one call at a time, each on every core.
fn capabilities() -> Capabilities {
    Capabilities {
        text: true,
        choose: true,
        ..Capabilities::default()
    }
}

/// A loaded GGUF model.
pub struct GgufEngine(Gguf);

impl GgufEngine {
    /// Loads the model file of `identity`.
    pub fn load(model: &Model, identity: &Identity) -> Result<GgufEngine> {
        let file = identity
            .files
            .first()
            .context("gguf model without a file")?;
        let g =
            Gguf::load(&file.path).with_context(|| format!("loading model `{}`", model.name))?;
        Ok(GgufEngine(g))
    }

    /// The chat of a call: its system message, then its user message.
    fn messages(call: &Call) -> Vec<(String, String)> {
        let mut messages = Vec::new();
        if let Some(s) = &call.system {
            messages.push(("system".to_string(), s.clone()));
        }
        messages.push(("user".to_string(), call.user.clone()));
        messages
    }

    /// Picks the most likely of `choices`; the finish reason lists every choice's
    /// log-probability.
    fn choose(&self, call: &Call, choices: &[String]) -> Result<Answer, EngineError> {
        let t = Instant::now();
        let c = self
            .0
            .choose(&Self::messages(call), choices)
            .map_err(|e| EngineError::Model(format!("{e:#}")))?;
        let scores: Vec<String> = choices
            .iter()
            .zip(&c.logprobs)
            .map(|(name, lp)| format!("{name} {lp:.4}"))
            .collect();
        Ok(Answer {
            text: choices[c.best].clone(),
            finish: format!("likelihood: {}", scores.join(", ")),
            prompt_tokens: c.prompt_tokens as u64,
            completion_tokens: 0,
            attempts: 1,
            ms: t.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

impl Engine for GgufEngine {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    fn kind(&self) -> &'static str {
        "gguf"
    }

    fn generate(&self, call: &Call, image_url: Option<&str>) -> Result<Answer, EngineError> {
        if image_url.is_some() {
            return Err(self.unsupported("read images"));
        }
        if let Some(choices) = &call.choices {
            return self.choose(call, choices);
        }
        let t = Instant::now();
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
            max_tokens: call.max_tokens() as usize,
            seed: call.seed,
            stop: call.stop(),
        };
        let out = self
            .0
            .generate(&Self::messages(call), &s)
            .map_err(|e| EngineError::Model(format!("{e:#}")))?;
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
