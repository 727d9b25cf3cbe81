//! The OpenAI-compatible client's concurrency: 200 calls to a local scripted server answering
//! each after 100 ms, at concurrency 8. The ideal is 200 × 100 ms / 8 = 2.5 s; the target is
//! within 1.25× of it. Prints JSON (median of 5 passes).
//!
//!   cargo bench --bench openai_concurrency

use std::time::{Duration, Instant};

use iw_lab::engine::openai::client::{Client, ClientConfig};
use iw_lab::engine::openai::mock::{MockServer, Step};

fn main() {
    let (calls, concurrency, latency) = (200usize, 8usize, Duration::from_millis(100));
    let server = MockServer::start(Step::Answer {
        text: "a caption".into(),
        delay: latency,
    })
    .expect("server");
    let mut cfg = ClientConfig::new(&server.base_url);
    cfg.concurrency = concurrency;
    let client = Client::new(cfg);
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let bodies: Vec<serde_json::Value> = (0..calls).map(|_| body.clone()).collect();
    let ideal = latency.as_secs_f64() * calls as f64 / concurrency as f64;
    let mut walls = Vec::new();
    for _ in 0..5 {
        let ok = std::sync::atomic::AtomicUsize::new(0);
        let t = Instant::now();
        client.complete_all(&bodies, &|_, r| {
            if r.is_ok() {
                ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        walls.push(t.elapsed().as_secs_f64());
        assert_eq!(ok.into_inner(), calls, "every call answered");
    }
    let mut sorted = walls.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "benchmark": "openai_concurrency",
            "calls": calls,
            "concurrency": concurrency,
            "latency_ms": latency.as_millis() as u64,
            "ideal_s": ideal,
            "wall_s": walls.iter().map(|w| (w * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "median_s": (median * 1000.0).round() / 1000.0,
            "median_over_ideal": (median / ideal * 1000.0).round() / 1000.0,
            "target_over_ideal": 1.25,
            "max_in_flight": server.max_in_flight(),
        })
    );
}
