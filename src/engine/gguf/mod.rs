//! An in-process quantised LLM for the `gguf` model kind: a llama-family GGUF file run on the
//! CPU with candle.
//!
//! Owns: reading the file (weights through `candle_transformers`' `quantized_llama`, the
//! tokenizer and chat template from its metadata), rendering chats, and the decoding loop
//! (sampling, stop tokens and strings, the context limit). Does not own: where the file comes
//! from (`crate::fetch`), prompts, or parsing answers — callers get text.
//!
//! Each generation starts from an empty KV cache: it works on a clone of the loaded weights
//! (the tensors are shared, so the clone costs nothing), so no call sees another's cache or the
//! attention masks it built. Generations run one at a time; each already uses every core.

mod chat;
mod metadata;
mod requant;
mod tokenizer;

pub mod engine;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as Strategy};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};
use serde::Serialize;

use chat::ChatTemplate;
use metadata::{opt_str, opt_u32, req_str};
use tokenizer::GgufTokenizer;

/// Prompt tokens per forward pass while reading the prompt: bounds the attention scores'
/// memory (heads × chunk × context) without costing speed.
const PREFILL_CHUNK: usize = 512;

/// A loaded GGUF model.
pub struct Gguf {
    path: PathBuf,
    architecture: String,
    context_length: usize,
    chat_template: Option<String>,
    chat: ChatTemplate,
    tokenizer: GgufTokenizer,
    /// The weights as loaded, never run: each generation clones them.
    weights: Mutex<ModelWeights>,
}

/// How to pick tokens, and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 (or less) picks the most likely token every time.
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass (`None`, or
    /// 1 and above: all).
    pub top_p: Option<f64>,
    /// Keep only the `k` most likely tokens (`None` or 0: all).
    pub top_k: Option<usize>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Seed of the sampler: the same seed and parameters give the same text.
    pub seed: u64,
    /// Strings that end the answer; the first one found and everything after it is cut off.
    pub stop: Vec<String>,
}

impl Default for Sampling {
    /// Greedy, 256 tokens, seed 0, no stop strings.
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            max_tokens: 256,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

/// One generation's text and counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generated {
    pub text: String,
    pub prompt_tokens: usize,
    /// Tokens generated (an end-of-turn token that stopped the answer is not counted).
    pub completion_tokens: usize,
    /// `stop` (end of turn or a stop string) or `length` (`max_tokens` or the context filled).
    pub finish_reason: String,
    /// Wall time of the call, template and tokenisation included.
    pub ms: f64,
}

impl Gguf {
    /// Loads a GGUF file: weights, tokenizer and chat template.
    ///
    /// Errors name the file and what is wrong with it: not GGUF, not a llama-family
    /// architecture, a tokenizer this crate cannot rebuild, a chat template that does not
    /// compile, missing tensors.
    pub fn load(path: &Path) -> Result<Gguf> {
        let file = File::open(path)
            .with_context(|| format!("cannot open GGUF model {}", path.display()))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)
            .with_context(|| format!("{} is not a readable GGUF file", path.display()))?;
        let in_file = |what: &str| format!("GGUF model {}: {what}", path.display());
        let md = &content.metadata;
        let architecture = req_str(md, "general.architecture")
            .with_context(|| in_file("metadata"))?
            .to_string();
        if architecture != "llama" {
            bail!(in_file(&format!(
                "architecture `{architecture}` is not supported (only `llama`-family models)"
            )));
        }
        let declared = opt_u32(md, "llama.context_length")
            .with_context(|| in_file("metadata"))?
            .map_or(MAX_SEQ_LEN, |n| n as usize);
        // candle precomputes rotary embeddings for MAX_SEQ_LEN positions only.
        let context_length = declared.min(MAX_SEQ_LEN);
        let tokenizer = GgufTokenizer::from_metadata(md).with_context(|| in_file("tokenizer"))?;
        let chat_template = opt_str(md, "tokenizer.chat_template")
            .with_context(|| in_file("metadata"))?
            .map(str::to_string);
        let (bos, eos) = tokenizer.bos_eos_text();
        let chat = ChatTemplate::new(chat_template.as_deref(), bos, eos)
            .with_context(|| in_file("chat template"))?;
        let weights = if requant::needed(&content) {
            let mut rewritten = requant::to_q8_0(&content, &mut reader)
                .with_context(|| in_file("requantising to Q8_0"))?;
            drop(content);
            let content = gguf_file::Content::read(&mut rewritten)
                .with_context(|| in_file("reading the requantised weights"))?;
            ModelWeights::from_gguf(content, &mut rewritten, &Device::Cpu)
        } else {
            ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)
        }
        .with_context(|| in_file("cannot load the weights"))?;
        Ok(Gguf {
            path: path.to_path_buf(),
            architecture,
            context_length,
            chat_template,
            chat,
            tokenizer,
            weights: Mutex::new(weights),
        })
    }

    /// `general.architecture` (always `llama` today).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The file's own chat template (`tokenizer.chat_template`), if it has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Most tokens a prompt and its answer can hold together: the model's
    /// `llama.context_length`, capped at what candle supports (4096).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Token ids of `text` as a prompt: control tokens written in it (`<|im_start|>`) are one
    /// id each, and a BOS comes first when the model wants one.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
    }

    /// Text of `ids`, control tokens included: `decode(encode(t)) == t` (BOS aside).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true)
    }

    /// The prompt for `messages` ((role, content) pairs; roles `system`, `user`, `assistant`)
    /// through the model's chat template (ChatML when it has none), ready for the answer.
    pub fn render_chat(&self, messages: &[(String, String)]) -> Result<String> {
        self.chat
            .render(messages)
            .with_context(|| format!("GGUF model {}", self.path.display()))
    }

    /// Answers a chat: [`Self::render_chat`], then [`Self::generate_raw`]'s loop.
    pub fn generate(&self, messages: &[(String, String)], s: &Sampling) -> Result<Generated> {
        let start = Instant::now();
        let prompt = self.render_chat(messages)?;
        self.complete(&prompt, s, start)
    }

    /// Continues `prompt` as it is, without a chat template.
    pub fn generate_raw(&self, prompt: &str, s: &Sampling) -> Result<Generated> {
        self.complete(prompt, s, Instant::now())
    }

    fn complete(&self, prompt: &str, s: &Sampling, start: Instant) -> Result<Generated> {
        let ids = self.tokenizer.encode(prompt)?;
        ensure!(!ids.is_empty(), "the prompt is empty");
        ensure!(
            ids.len() < self.context_length,
            "the prompt is {} tokens; {} holds {} (prompt and answer together)",
            ids.len(),
            self.path.display(),
            self.context_length
        );
        let (completion, finish_reason) = self
            .decode_loop(&ids, s)
            .with_context(|| format!("generation with {}", self.path.display()))?;
        Ok(Generated {
            text: completion.text,
            prompt_tokens: ids.len(),
            completion_tokens: completion.ids.len(),
            finish_reason: finish_reason.to_string(),
            ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Scores each of `choices` as the answer to a chat: the log-probability (natural log,
    /// summed over its tokens) the model gives that exact text right after the prompt. A
    /// verdict picked this way is always one of the choices, however weak the model is at
    /// following a format. The prompt is read once; each choice continues a copy of its cache.
    pub fn choose(&self, messages: &[(String, String)], choices: &[String]) -> Result<Chosen> {
        let start = Instant::now();
        ensure!(!choices.is_empty(), "no choices to score");
        let prompt = self.render_chat(messages)?;
        let prompt_ids = self.tokenizer.encode(&prompt)?;
        ensure!(!prompt_ids.is_empty(), "the prompt is empty");
        // Each choice's tokens as the tokenizer splits prompt + choice; the part shared by
        // all of them (the prompt, unless a choice merges with its last token) is read once.
        let mut full = Vec::with_capacity(choices.len());
        for c in choices {
            ensure!(!c.is_empty(), "an empty choice cannot be scored");
            full.push(self.tokenizer.encode(&format!("{prompt}{c}"))?);
        }
        let shared = full
            .iter()
            .map(|ids| common_prefix(ids, &prompt_ids))
            .min()
            .unwrap_or(0)
            .max(1);
        let longest = full.iter().map(Vec::len).max().unwrap_or(0);
        ensure!(
            longest < self.context_length,
            "the prompt and a choice are {longest} tokens; {} holds {}",
            self.path.display(),
            self.context_length
        );
        let weights = self
            .weights
            .lock()
            .map_err(|_| anyhow!("an earlier generation panicked"))?;
        let mut base = weights.clone();
        drop(weights);
        let mut pos = 0;
        let mut logits = None;
        for chunk in full[0][..shared].chunks(PREFILL_CHUNK) {
            logits = Some(forward(&mut base, chunk, pos)?);
            pos += chunk.len();
        }
        let after_prompt = logits.expect("the shared prefix is not empty");
        let mut logprobs = Vec::with_capacity(choices.len());
        let mut scored_tokens = 0;
        for ids in &full {
            let rest = &ids[shared..];
            ensure!(
                !rest.is_empty(),
                "a choice adds no token to the prompt; choices must differ from the prompt's end"
            );
            let mut model = base.clone();
            let mut logits = after_prompt.clone();
            let mut total = 0.0;
            for (k, &id) in rest.iter().enumerate() {
                total += log_softmax_at(&logits, id)?;
                if k + 1 < rest.len() {
                    logits = forward(&mut model, &[id], shared + k)?;
                }
            }
            scored_tokens += rest.len();
            logprobs.push(total);
        }
        let best = (1..logprobs.len()).fold(0, |best, i| {
            if logprobs[i] > logprobs[best] {
                i
            } else {
                best
            }
        });
        Ok(Chosen {
            best,
            logprobs,
            prompt_tokens: prompt_ids.len(),
            scored_tokens,
            ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Reads the prompt, then samples one token at a time until a stop.
    fn decode_loop<'s>(
        &self,
        prompt: &[u32],
        s: &'s Sampling,
    ) -> Result<(Completion<'s>, &'static str)> {
        let weights = self
            .weights
            .lock()
            .map_err(|_| anyhow!("an earlier generation panicked"))?;
        let mut model = weights.clone();
        let mut sampler = LogitsProcessor::from_sampling(s.seed, strategy(s));
        let mut pos = 0;
        let mut logits = None;
        for chunk in prompt.chunks(PREFILL_CHUNK) {
            logits = Some(forward(&mut model, chunk, pos)?);
            pos += chunk.len();
        }
        let mut logits = logits.expect("the prompt is not empty");
        let mut out = Completion::new(s);
        let finish = loop {
            if out.ids.len() >= s.max_tokens {
                break "length";
            }
            let next = sampler.sample(&logits)?;
            if self.tokenizer.is_stop(next) {
                break "stop";
            }
            if out.push(next, &self.tokenizer)? {
                // The text is already cut at the stop string.
                return Ok((out, "stop"));
            }
            if out.ids.len() >= s.max_tokens || pos >= self.context_length {
                break "length";
            }
            logits = forward(&mut model, &[next], pos)?;
            pos += 1;
        };
        out.text = self.tokenizer.decode(&out.ids, false)?;
        Ok((out, finish))
    }
}

/// The choices' scores from [`Gguf::choose`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chosen {
    /// Index of the most likely choice (the first, on a tie).
    pub best: usize,
    /// Per choice: natural-log probability of its text after the prompt.
    pub logprobs: Vec<f64>,
    pub prompt_tokens: usize,
    /// Choice tokens scored, all choices together.
    pub scored_tokens: usize,
    pub ms: f64,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `log softmax(logits)[id]`, in f64.
fn log_softmax_at(logits: &Tensor, id: u32) -> Result<f64> {
    let v = logits.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
    let x = *v
        .get(id as usize)
        .ok_or_else(|| anyhow!("token {id} is outside the vocabulary ({})", v.len()))?;
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = v.iter().map(|&l| (l as f64 - max).exp()).sum();
    Ok(x as f64 - max - sum.ln())
}

/// The answer so far.
struct Completion<'a> {
    ids: Vec<u32>,
    text: String,
    stop: &'a [String],
}

impl<'a> Completion<'a> {
    fn new(s: &'a Sampling) -> Self {
        Completion {
            ids: Vec::new(),
            text: String::new(),
            stop: &s.stop,
        }
    }

    /// Adds a token; true when the text now holds a stop string (the text is then cut there).
    fn push(&mut self, id: u32, tokenizer: &GgufTokenizer) -> Result<bool> {
        self.ids.push(id);
        if self.stop.is_empty() {
            return Ok(false);
        }
        self.text = tokenizer.decode(&self.ids, false)?;
        let cut = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min();
        if let Some(cut) = cut {
            self.text.truncate(cut);
            return Ok(true);
        }
        Ok(false)
    }
}

/// Logits for the position after `ids`, which start at `pos`.
fn forward(model: &mut ModelWeights, ids: &[u32], pos: usize) -> Result<Tensor> {
    let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
    Ok(model.forward(&input, pos)?.squeeze(0)?)
}

fn strategy(s: &Sampling) -> Strategy {
    let temperature = s.temperature;
    if temperature <= 0.0 {
        return Strategy::ArgMax;
    }
    let top_k = s.top_k.filter(|k| *k > 0);
    let top_p = s.top_p.filter(|p| *p < 1.0);
    match (top_k, top_p) {
        (None, None) => Strategy::All { temperature },
        (Some(k), None) => Strategy::TopK { k, temperature },
        (None, Some(p)) => Strategy::TopP { p, temperature },
        (Some(k), Some(p)) => Strategy::TopKThenTopP { k, p, temperature },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_zero_is_greedy_and_filters_combine() {
        let s = |temperature, top_k, top_p| Sampling {
            temperature,
            top_k,
            top_p,
            ..Sampling::default()
        };
        assert!(matches!(
            strategy(&s(0.0, Some(5), Some(0.5))),
            Strategy::ArgMax
        ));
        assert!(matches!(
            strategy(&s(0.7, None, Some(1.0))),
            Strategy::All { .. }
        ));
        assert!(matches!(
            strategy(&s(0.7, Some(0), None)),
            Strategy::All { .. }
        ));
        assert!(matches!(
            strategy(&s(0.7, Some(40), None)),
            Strategy::TopK { k: 40, .. }
        ));
        assert!(matches!(
            strategy(&s(0.7, Some(40), Some(0.9))),
            Strategy::TopKThenTopP { k: 40, .. }
        ));
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Gguf::load(Path::new("/nonexistent/model.gguf"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_gguf_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.gguf");
        std::fs::write(&path, b"not a model").unwrap();
        let err = Gguf::load(&path).err().unwrap();
        assert!(
            err.to_string().contains("is not a readable GGUF file"),
            "{err}"
        );
    }
}
