//! The text tokenizer of a GGUF model, rebuilt from its metadata with the `tokenizers` crate.
//!
//! Two `tokenizer.ggml.model`s: `gpt2` (byte-level BPE from `tokens` + `merges`, with the
//! pre-tokenizer named by `tokenizer.ggml.pre`) and `llama` (SentencePiece BPE: merges derived
//! from the pieces' `scores`, byte fallback, `▁` for spaces — as the Hugging Face GGUF converter
//! builds it). Control and user-defined tokens (`token_type` 3 and 4) become added tokens, so a
//! rendered chat prompt's `<|im_start|>` encodes to its one id. Anything else is an error that
//! names the model or pre-tokenizer, never a silently different tokenisation.

use std::collections::HashMap;

use anyhow::{anyhow, bail, ensure, Result};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use super::metadata::{
    f32_array, int_array, opt_bool, opt_str, opt_u32, req_str, str_array, Metadata,
};

/// `token_type` values (llama.cpp's `llama_token_type`).
const NORMAL: i64 = 1;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// End-of-turn markers that stop generation when the vocabulary has them as control tokens,
/// besides `eos`: a chat model often ends its turn with one that is not its `eos`.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

/// `tokenizer.ggml.pre` values that mean GPT-2's regex with every digit split on its own.
const GPT2_DIGITS: &[&str] = &[
    "smollm",
    "starcoder",
    "refact",
    "codeshell",
    "command-r",
    "exaone",
    "minerva",
];
/// `tokenizer.ggml.pre` values that mean Llama 3's regex.
const LLAMA3: &[&str] = &["llama3", "llama-v3", "llama-bpe", "falcon3"];
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A GGUF model's tokenizer with the ids that matter for generation.
pub(super) struct GgufTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
    add_bos: bool,
    stop_ids: Vec<u32>,
    bos_text: String,
    eos_text: String,
}

impl GgufTokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata.
    pub(super) fn from_metadata(md: &Metadata) -> Result<GgufTokenizer> {
        let model = req_str(md, "tokenizer.ggml.model")?;
        let tokens = str_array(md, "tokenizer.ggml.tokens")?;
        let types = match md.get("tokenizer.ggml.token_type") {
            Some(_) => int_array(md, "tokenizer.ggml.token_type")?,
            None => vec![NORMAL; tokens.len()],
        };
        ensure!(
            types.len() == tokens.len(),
            "`tokenizer.ggml.token_type` has {} entries for {} tokens",
            types.len(),
            tokens.len()
        );
        let mut inner = match model {
            "gpt2" => byte_level_bpe(md, &tokens)?,
            "llama" => sentencepiece_bpe(md, &tokens, &types)?,
            other => bail!("unsupported tokenizer model `{other}` (supported: gpt2, llama)"),
        };
        let added = |kind: i64| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, t)| **t == kind)
                .map(|(tok, _)| AddedToken::from(*tok, kind == CONTROL))
                .collect()
        };
        inner
            .add_special_tokens(added(CONTROL))
            .map_err(|e| anyhow!("adding the GGUF's control tokens to the tokenizer: {e}"))?;
        inner
            .add_tokens(added(USER_DEFINED))
            .map_err(|e| anyhow!("adding the GGUF's user-defined tokens to the tokenizer: {e}"))?;

        let id = |key: &str| -> Result<Option<u32>> {
            let id = opt_u32(md, key)?;
            if let Some(i) = id {
                ensure!(
                    (i as usize) < tokens.len(),
                    "`{key}` = {i} is outside the vocabulary of {}",
                    tokens.len()
                );
            }
            Ok(id)
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let mut stop_ids: Vec<u32> = eos.into_iter().collect();
        for (i, (tok, t)) in tokens.iter().zip(&types).enumerate() {
            if *t == CONTROL && END_OF_TURN.contains(tok) && !stop_ids.contains(&(i as u32)) {
                stop_ids.push(i as u32);
            }
        }
        let text = |id: Option<u32>| {
            id.map(|i| tokens[i as usize].to_string())
                .unwrap_or_default()
        };
        Ok(GgufTokenizer {
            add_bos: opt_bool(md, "tokenizer.ggml.add_bos_token")?.unwrap_or(model == "llama"),
            bos_text: text(bos),
            eos_text: text(eos),
            bos,
            stop_ids,
            inner,
        })
    }

    /// Token ids of `text`. Added tokens in the text (`<|im_start|>`) are matched as such; a
    /// BOS is put first when the model asks for one (`tokenizer.ggml.add_bos_token`) and the
    /// text does not already start with it.
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("cannot tokenise the prompt: {e}"))?
            .get_ids()
            .to_vec();
        if let Some(bos) = self.bos.filter(|_| self.add_bos) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Text of `ids`; control tokens left out unless `keep_control`.
    pub(super) fn decode(&self, ids: &[u32], keep_control: bool) -> Result<String> {
        self.inner
            .decode(ids, !keep_control)
            .map_err(|e| anyhow!("cannot decode tokens: {e}"))
    }

    /// Whether `id` ends a generation (`eos` or an end-of-turn marker).
    pub(super) fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }

    /// The text of the BOS and EOS tokens, for chat templates (empty when the model has none).
    pub(super) fn bos_eos_text(&self) -> (&str, &str) {
        (&self.bos_text, &self.eos_text)
    }

    #[cfg(test)]
    fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

fn vocab(tokens: &[&str]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect()
}

/// GPT-2 style byte-level BPE (`tokenizer.ggml.model` = `gpt2`).
fn byte_level_bpe(md: &Metadata, tokens: &[&str]) -> Result<Tokenizer> {
    let merges = str_array(md, "tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| anyhow!("`tokenizer.ggml.merges[{i}]` is not two tokens: {m:?}"))
        })
        .collect::<Result<Merges>>()?;
    let pre = opt_str(md, "tokenizer.ggml.pre")?.unwrap_or("default");
    let (pre_tokenizer, ignore_merges) = byte_level_pre_tokenizer(pre)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| anyhow!("invalid byte-level BPE vocabulary: {e}"))?;
    let mut tk = Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(pre_tokenizer));
    tk.with_decoder(Some(ByteLevel::default()));
    Ok(tk)
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` name, and whether whole words found in the
/// vocabulary skip the merges (Llama 3).
fn byte_level_pre_tokenizer(pre: &str) -> Result<(PreTokenizerWrapper, bool)> {
    let byte_level = |use_regex| PreTokenizerWrapper::from(ByteLevel::new(false, true, use_regex));
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" => (byte_level(true), false),
        p if GPT2_DIGITS.contains(&p) => (
            Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into(),
            false,
        ),
        p if LLAMA3.contains(&p) => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_REGEX.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| anyhow!("Llama 3 pre-tokenizer: {e}"))?;
            (
                Sequence::new(vec![split.into(), byte_level(false)]).into(),
                true,
            )
        }
        other => bail!(
            "unsupported pre-tokenizer `{other}` (`tokenizer.ggml.pre`) for a gpt2 tokenizer \
             (supported: default, gpt2, {}, {})",
            GPT2_DIGITS.join(", "),
            LLAMA3.join(", ")
        ),
    })
}

/// SentencePiece BPE (`tokenizer.ggml.model` = `llama`).
fn sentencepiece_bpe(md: &Metadata, tokens: &[&str], types: &[i64]) -> Result<Tokenizer> {
    let scores = f32_array(md, "tokenizer.ggml.scores")?;
    ensure!(
        scores.len() == tokens.len(),
        "`tokenizer.ggml.scores` has {} entries for {} tokens",
        scores.len(),
        tokens.len()
    );
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab(tokens), spm_merges(tokens, &scores, types))
        .byte_fallback(true)
        .fuse_unk(true);
    let unk = opt_u32(md, "tokenizer.ggml.unknown_token_id")?
        .and_then(|i| tokens.get(i as usize))
        .or_else(|| tokens.iter().find(|t| **t == "<unk>"));
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_string());
    }
    let bpe = builder
        .build()
        .map_err(|e| anyhow!("invalid SentencePiece vocabulary: {e}"))?;
    let space_prefix = opt_bool(md, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let scheme = if space_prefix {
        PrependScheme::First
    } else {
        PrependScheme::Never
    };
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ")
            .map_err(|e| anyhow!("SentencePiece decoder: {e}"))?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    let mut tk = Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(Metaspace::new('▁', scheme, false)));
    tk.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tk)
}

/// BPE merges equivalent to SentencePiece's score-ordered merging: every split of a normal
/// piece into two pieces of the vocabulary, ranked by the whole piece's score (highest first).
fn spm_merges(tokens: &[&str], scores: &[f32], types: &[i64]) -> Merges {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut ranked: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if types[i] != NORMAL {
            continue;
        }
        for (cut, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                ranked.push((scores[i], i, li, ri));
            }
        }
    }
    // Highest score first; ties keep a stable order by the pieces' ids.
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then((a.1, a.2, a.3).cmp(&(b.1, b.2, b.3)))
    });
    ranked
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l].to_string(), tokens[r].to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file::Value;

    use super::*;

    fn strings(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
    }

    fn ints(v: &[i32]) -> Value {
        Value::Array(v.iter().map(|i| Value::I32(*i)).collect())
    }

    /// A byte-level vocabulary: the 256 byte symbols, a few merges, and ChatML's markers.
    fn byte_level_metadata(pre: &str) -> Metadata {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort();
        let mut tokens = vec!["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        tokens.extend(alphabet.iter().map(|c| c.to_string()));
        let merges = [
            "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d",
        ];
        for m in merges {
            tokens.push(m.replace(' ', ""));
        }
        let mut types = vec![1; tokens.len()];
        types[..3].fill(3);
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        Metadata::from([
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
            ("tokenizer.ggml.tokens".into(), strings(&tokens)),
            ("tokenizer.ggml.merges".into(), strings(&merges)),
            ("tokenizer.ggml.token_type".into(), ints(&types)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ])
    }

    #[test]
    fn byte_level_special_tokens_are_one_id_and_text_round_trips() {
        let tk = GgufTokenizer::from_metadata(&byte_level_metadata("smollm")).unwrap();
        let text = "<|im_start|>user\nhello world 42<|im_end|>\n";
        let ids = tk.encode(text).unwrap();
        assert_eq!(ids[0], 1, "<|im_start|> is one id");
        assert!(ids.contains(&2), "<|im_end|> is one id");
        let hello = tk.inner().token_to_id("hello").unwrap();
        let world = tk.inner().token_to_id("Ġworld").unwrap();
        assert!(ids.windows(2).any(|w| w == [hello, world]), "{ids:?}");
        // Digits are split one by one (the `smollm` pre-tokenizer).
        let four = tk.inner().token_to_id("4").unwrap();
        let two = tk.inner().token_to_id("2").unwrap();
        assert!(ids.windows(2).any(|w| w == [four, two]), "{ids:?}");
        assert_eq!(tk.decode(&ids, true).unwrap(), text);
        assert_eq!(tk.decode(&ids, false).unwrap(), "user\nhello world 42\n");
        assert!(tk.is_stop(2) && tk.is_stop(0) && !tk.is_stop(1));
        assert_eq!(tk.bos_eos_text(), ("<|im_start|>", "<|im_end|>"));
    }

    #[test]
    fn llama3_pre_tokenizer_builds() {
        let tk = GgufTokenizer::from_metadata(&byte_level_metadata("llama-bpe")).unwrap();
        let ids = tk.encode("hello world").unwrap();
        assert_eq!(tk.decode(&ids, false).unwrap(), "hello world");
    }

    #[test]
    fn unknown_models_and_pre_tokenizers_are_named() {
        let err = GgufTokenizer::from_metadata(&byte_level_metadata("mystery"))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("unsupported pre-tokenizer `mystery`"),
            "{err}"
        );
        let mut md = byte_level_metadata("gpt2");
        md.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
        let err = GgufTokenizer::from_metadata(&md).err().unwrap();
        assert!(
            err.to_string()
                .contains("unsupported tokenizer model `bert`"),
            "{err}"
        );
    }

    #[test]
    fn sentencepiece_merges_by_score_with_byte_fallback() {
        let mut tokens = vec!["<unk>", "<s>", "</s>"];
        let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
        tokens.extend(bytes.iter().map(String::as_str));
        let pieces = [
            "▁", "h", "e", "l", "o", "w", "r", "d", "ll", "he", "▁he", "▁hell", "▁hello", "or",
            "▁w", "▁wor", "▁worl", "▁world",
        ];
        tokens.extend(pieces);
        let mut types = vec![1; tokens.len()];
        types[0] = 2;
        types[1..3].fill(3);
        types[3..259].fill(6);
        let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
        let md = Metadata::from([
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            ("tokenizer.ggml.tokens".into(), strings(&tokens)),
            (
                "tokenizer.ggml.scores".into(),
                Value::Array(scores.iter().map(|s| Value::F32(*s)).collect()),
            ),
            ("tokenizer.ggml.token_type".into(), ints(&types)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
            ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ]);
        let tk = GgufTokenizer::from_metadata(&md).unwrap();
        let ids = tk.encode("hello world!").unwrap();
        let id = |t: &str| tk.inner().token_to_id(t).unwrap();
        // BOS first (SentencePiece models add it by default), `!` through its byte.
        assert_eq!(ids, [1, id("▁hello"), id("▁world"), id("<0x21>")]);
        assert_eq!(tk.decode(&ids, false).unwrap(), "hello world!");
    }
}
