//! What a language model is asked and what it answers, whatever serves it: a system message,
//! a user message, an optional image, generation parameters and a seed in; the text, token
//! counts and timing out.

use std::collections::BTreeMap;

use serde_json::Value;

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
    /// Pick one of these by likelihood instead of generating (engines that can `choose`):
    /// the answer's text is the chosen one.
    pub choices: Option<Vec<String>>,
}

impl Call {
    /// The `max_tokens` parameter, or [`DEFAULT_MAX_TOKENS`].
    pub fn max_tokens(&self) -> u64 {
        self.params
            .get("max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_TOKENS)
    }

    /// The `stop` parameter: one string or a list of them.
    pub fn stop(&self) -> Vec<String> {
        match self.params.get("stop") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
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

impl Answer {
    /// Cost under `prices` (per million input and output tokens).
    pub fn cost(&self, prices: Option<(f64, f64)>) -> Option<f64> {
        prices
            .map(|(i, o)| (self.prompt_tokens as f64 * i + self.completion_tokens as f64 * o) / 1e6)
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
