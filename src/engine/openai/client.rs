//! A client for OpenAI-compatible chat-completions endpoints (Ollama, LM Studio, vLLM,
//! llama.cpp's server, hosted APIs): bounded concurrency, optional request and token rate
//! limits, a per-request timeout, and retries with exponential backoff and full jitter on 429,
//! 5xx, timeouts, transport errors and unreadable bodies, honouring `Retry-After`.
//!
//! The API key is held in memory only: it is sent as `Authorization: Bearer …` and appears in
//! no error message, debug output or record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// How to reach an endpoint and how hard to push it.
#[derive(Clone)]
pub struct ClientConfig {
    /// Up to and including the API version: `http://localhost:11434/v1`.
    pub base_url: String,
    /// The key itself (read from the model's `api_key_env` variable), or none.
    pub api_key: Option<String>,
    /// Whole-request timeout (connect, send, wait, read).
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff ceiling; doubles per retry (full jitter: a uniform draw below it).
    pub backoff_base: Duration,
    /// Backoff ceiling, and the most a `Retry-After` is honoured.
    pub backoff_max: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub requests_per_minute: Option<u32>,
    /// Prompt + completion tokens per minute, as reported by the server's `usage`.
    pub tokens_per_minute: Option<u64>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    pub fn new(base_url: &str) -> ClientConfig {
        ClientConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: None,
            timeout: Duration::from_secs(120),
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            concurrency: 4,
            requests_per_minute: None,
            tokens_per_minute: None,
        }
    }
}

/// Token counts of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The first choice's message content.
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
    /// Wall time of the successful attempt.
    pub latency_ms: f64,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// An HTTP error status (the body's first 300 characters).
    Status {
        status: u16,
        body: String,
    },
    Timeout,
    /// Connection refused or reset, a truncated body, ...
    Transport(String),
    /// A 200 whose body is not a chat completion.
    Malformed(String),
}

impl CallError {
    /// Worth another attempt: 408, 409, 429, 5xx, timeouts, transport faults, unreadable bodies.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Status { status, .. } => {
                matches!(status, 408 | 409 | 429) || (500..600).contains(status)
            }
            CallError::Timeout | CallError::Transport(_) | CallError::Malformed(_) => true,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status { status, body } => write!(f, "HTTP status {status}: {body}"),
            CallError::Timeout => write!(f, "timed out"),
            CallError::Transport(e) => write!(f, "{e}"),
            CallError::Malformed(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

/// A failed call after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: CallError,
    pub attempts: u32,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (after {} attempt(s))", self.error, self.attempts)
    }
}

/// The client; share it between threads.
pub struct Client {
    cfg: ClientConfig,
    agent: ureq::Agent,
    limiter: Limiter,
    jitter: Mutex<u64>,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Client {
        let agent = ureq::AgentBuilder::new()
            .try_proxy_from_env(true)
            .timeout(cfg.timeout)
            .user_agent(concat!("iw-lab/", env!("CARGO_PKG_VERSION")))
            .build();
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Client {
            limiter: Limiter::new(cfg.requests_per_minute, cfg.tokens_per_minute),
            cfg,
            agent,
            jitter: Mutex::new(seed | 1),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// One chat completion (`body` is the request JSON), retried as configured.
    pub fn complete(&self, body: &Value) -> Result<Completion, Failure> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.limiter.acquire();
            let start = Instant::now();
            let (result, retry_after) = self.attempt(body);
            match result {
                Ok(mut c) => {
                    self.limiter.record_tokens(
                        c.usage
                            .prompt_tokens
                            .saturating_add(c.usage.completion_tokens),
                    );
                    c.attempts = attempt;
                    c.latency_ms = start.elapsed().as_secs_f64() * 1000.0;
                    return Ok(c);
                }
                Err(e) => {
                    if !e.retryable() || attempt > self.cfg.max_retries {
                        return Err(Failure {
                            error: e,
                            attempts: attempt,
                        });
                    }
                    std::thread::sleep(self.backoff(attempt, retry_after));
                }
            }
        }
    }

    /// Runs every body with at most `concurrency` in flight; `on_done(index, result)` is called
    /// from the worker threads as each finishes.
    pub fn complete_all(
        &self,
        bodies: &[Value],
        on_done: &(dyn Fn(usize, Result<Completion, Failure>) + Sync),
    ) {
        let next = AtomicUsize::new(0);
        let workers = self.cfg.concurrency.clamp(1, bodies.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = bodies.get(i) else { break };
                    on_done(i, self.complete(b));
                });
            }
        });
    }

    /// The wait before attempt `attempt + 1`: the server's `Retry-After` when given (capped),
    /// else a uniform draw below `base × 2^(attempt−1)` (capped).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.cfg.backoff_max);
        }
        let ceiling = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.cfg.backoff_max);
        let r = {
            let mut s = self.jitter.lock().unwrap_or_else(|e| e.into_inner());
            *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        ceiling.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn attempt(&self, body: &Value) -> (Result<Completion, CallError>, Option<Duration>) {
        let url = format!("{}/chat/completions", self.cfg.base_url);
        let mut req = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json");
        if let Some(k) = &self.cfg.api_key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        match req.send_string(&body.to_string()) {
            Ok(resp) => match read_body(resp, MAX_BODY_BYTES) {
                Ok(text) => (parse(&text), None),
                Err(e) => (Err(e), None),
            },
            Err(ureq::Error::Status(status, resp)) => {
                let retry_after = resp.header("Retry-After").and_then(parse_retry_after);
                let body: String = read_body(resp, 64 * 1024)
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                (Err(CallError::Status { status, body }), retry_after)
            }
            Err(ureq::Error::Transport(t)) => (Err(transport_error(&t)), None),
        }
    }
}

/// The largest answer body read (a chat completion is kilobytes; anything near this is a
/// broken or hostile server).
const MAX_BODY_BYTES: u64 = 64 << 20;

/// The most tokens one answer is counted for: a server's usage numbers are clamped here, so
/// absurd values neither overflow sums nor stall the token limiter forever.
pub const MAX_USAGE_TOKENS: u64 = 1 << 40;

/// A response body as text, at most `limit` bytes. Invalid UTF-8 becomes U+FFFD (the answer
/// is still read, and its JSON still parsed) instead of failing the call.
fn read_body(resp: ureq::Response, limit: u64) -> Result<String, CallError> {
    use std::io::Read;
    let mut buf = Vec::new();
    resp.into_reader()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(&e))?;
    if buf.len() as u64 > limit {
        return Err(CallError::Malformed(format!(
            "the answer is larger than {limit} bytes"
        )));
    }
    Ok(match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn io_error(e: &std::io::Error) -> CallError {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => CallError::Timeout,
        std::io::ErrorKind::UnexpectedEof => {
            CallError::Transport("the answer was cut off (truncated body)".into())
        }
        _ => CallError::Transport(format!("cannot read the answer: {e}")),
    }
}

fn transport_error(t: &ureq::Transport) -> CallError {
    use std::error::Error;
    let mut source = t.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return CallError::Timeout;
            }
        }
        source = s.source();
    }
    let text = t.to_string();
    if text.contains("timed out") {
        CallError::Timeout
    } else {
        CallError::Transport(text)
    }
}

/// `Retry-After`: delta-seconds (fractions accepted, as some servers send them) or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        // Absurd values (1e20) saturate; the caller caps the wait at `backoff_max`.
        return (s.is_finite() && s >= 0.0)
            .then(|| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A chat-completions answer → its first choice's text, finish reason and usage.
pub fn parse(text: &str) -> Result<Completion, CallError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        CallError::Malformed(format!(
            "not JSON ({e}): {}",
            text.chars().take(120).collect::<String>()
        ))
    })?;
    if let Some(err) = v.get("error") {
        return Err(CallError::Malformed(format!(
            "the server reported an error: {err}"
        )));
    }
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| CallError::Malformed("no choices in the answer".into()))?;
    let content = choice.get("message").and_then(|m| m.get("content"));
    let text = match content {
        Some(Value::String(s)) => s.clone(),
        // content parts: [{"type": "text", "text": "..."}]
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(Value::Null) | None => {
            return Err(CallError::Malformed(
                "the answer has no message content".into(),
            ))
        }
        Some(other) => {
            return Err(CallError::Malformed(format!(
                "message content is not text: {other}"
            )))
        }
    };
    let usage = v.get("usage");
    let n = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(MAX_USAGE_TOKENS)
    };
    Ok(Completion {
        text,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage: Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
        },
        attempts: 1,
        latency_ms: 0.0,
    })
}

/// Requests sent, and (when, tokens) used, within the last minute.
type Windows = (VecDeque<Instant>, VecDeque<(Instant, u64)>);

/// Sliding one-minute windows of requests sent and tokens used.
struct Limiter {
    rpm: Option<u32>,
    tpm: Option<u64>,
    /// The window (a minute; shorter in tests).
    window: Duration,
    state: Mutex<Windows>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Limiter {
    fn new(rpm: Option<u32>, tpm: Option<u64>) -> Limiter {
        Limiter {
            rpm: rpm.filter(|r| *r > 0),
            tpm: tpm.filter(|t| *t > 0),
            window: MINUTE,
            state: Mutex::new((VecDeque::new(), VecDeque::new())),
        }
    }

    /// Waits until a request may be sent under both limits, and counts it.
    fn acquire(&self) {
        if self.rpm.is_none() && self.tpm.is_none() {
            return;
        }
        loop {
            let wait = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let w = self.window;
                while st.0.front().is_some_and(|t| now - *t >= w) {
                    st.0.pop_front();
                }
                while st.1.front().is_some_and(|(t, _)| now - *t >= w) {
                    st.1.pop_front();
                }
                let req_wait = match self.rpm {
                    Some(r) if st.0.len() >= r as usize => Some(w.saturating_sub(now - st.0[0])),
                    _ => None,
                };
                let tok_wait = match self.tpm {
                    Some(t) if st.1.iter().fold(0u64, |a, x| a.saturating_add(x.1)) >= t => {
                        Some(w.saturating_sub(now - st.1[0].0))
                    }
                    _ => None,
                };
                match req_wait.max(tok_wait) {
                    None => {
                        st.0.push_back(now);
                        return;
                    }
                    Some(w) => w,
                }
            };
            std::thread::sleep(wait.max(Duration::from_millis(1)));
        }
    }

    fn record_tokens(&self, n: u64) {
        if self.tpm.is_some() && n > 0 {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.1.push_back((Instant::now(), n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let c = parse(r#"{"choices":[{"message":{"role":"assistant","content":"a cat"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#).unwrap();
        assert_eq!(c.text, "a cat");
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            c.usage,
            Usage {
                prompt_tokens: 12,
                completion_tokens: 3
            }
        );
        let parts = parse(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a "},{"type":"text","text":"dog"}]}}]}"#).unwrap();
        assert_eq!(parts.text, "a dog");
        assert!(matches!(
            parse("{\"choices\": [}"),
            Err(CallError::Malformed(_))
        ));
        assert!(matches!(
            parse(r#"{"choices":[]}"#),
            Err(CallError::Malformed(_))
        ));
        assert!(matches!(
            parse(r#"{"error":{"message":"overloaded"}}"#),
            Err(CallError::Malformed(_))
        ));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        // a date in the past: retry now
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn what_is_retried() {
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert!(
                CallError::Status {
                    status: s,
                    body: String::new()
                }
                .retryable(),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(
                !CallError::Status {
                    status: s,
                    body: String::new()
                }
                .retryable(),
                "{s}"
            );
        }
        assert!(CallError::Timeout.retryable());
    }

    #[test]
    fn backoff_is_jittered_capped_and_follows_retry_after() {
        let mut cfg = ClientConfig::new("http://127.0.0.1:1/v1");
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_millis(1000);
        let c = Client::new(cfg);
        for attempt in 1..8u32 {
            let ceiling = Duration::from_millis((100u64 << (attempt - 1)).min(1000));
            for _ in 0..50 {
                assert!(c.backoff(attempt, None) < ceiling.max(Duration::from_nanos(1)));
            }
        }
        assert_eq!(
            c.backoff(1, Some(Duration::from_secs(3))),
            Duration::from_millis(1000)
        );
        assert_eq!(
            c.backoff(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        let mut cfg = ClientConfig::new("http://x/v1");
        cfg.api_key = Some("sk-secret-123".into());
        assert!(!format!("{cfg:?}").contains("sk-secret"));
    }

    #[test]
    fn the_limiter_holds_requests_and_tokens_per_window() {
        // a one-second window stands for the minute; the bounds leave room for a busy machine
        let window = Duration::from_secs(1);
        let mut l = Limiter::new(Some(3), None);
        l.window = window;
        let t = Instant::now();
        for _ in 0..3 {
            l.acquire();
        }
        assert!(t.elapsed() < Duration::from_millis(500));
        l.acquire(); // waits for the first to leave the window
        assert!(
            t.elapsed() >= Duration::from_millis(990),
            "{:?}",
            t.elapsed()
        );

        let mut l = Limiter::new(None, Some(100));
        l.window = window;
        let t = Instant::now();
        l.acquire();
        l.record_tokens(60);
        l.acquire(); // 60 < 100: goes
        l.record_tokens(60);
        assert!(t.elapsed() < Duration::from_millis(500));
        l.acquire(); // 120 ≥ 100: waits until the first 60 expire
        assert!(
            t.elapsed() >= Duration::from_millis(990),
            "{:?}",
            t.elapsed()
        );
    }
}
