//! The OpenAI-compatible client against a scripted server on 127.0.0.1: answers, 429 with
//! `Retry-After`, 500s, timeouts, malformed JSON, truncated bodies, non-retryable errors, the
//! concurrency bound, and the API key sent only as a header.

use std::time::{Duration, Instant};

use iw_lab::engine::openai::client::{CallError, Client, ClientConfig};
use iw_lab::engine::openai::mock::{MockServer, Step};
use serde_json::json;

fn client(server: &MockServer) -> Client {
    let mut cfg = ClientConfig::new(&server.base_url);
    cfg.api_key = Some("sk-test-not-a-real-key".into());
    cfg.timeout = Duration::from_millis(800);
    cfg.max_retries = 3;
    cfg.backoff_base = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_secs(5);
    Client::new(cfg)
}

fn body() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "describe"}]})
}

#[test]
fn an_answer_and_what_was_sent() {
    let s = MockServer::start(Step::answer("a cat on a sofa")).unwrap();
    let c = client(&s).complete(&body()).unwrap();
    assert_eq!(c.text, "a cat on a sofa");
    assert_eq!(c.attempts, 1);
    assert_eq!((c.usage.prompt_tokens, c.usage.completion_tokens), (10, 5));
    let r = s.received();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].path, "/v1/chat/completions");
    assert_eq!(
        r[0].header("authorization"),
        Some("Bearer sk-test-not-a-real-key")
    );
    let sent: serde_json::Value = serde_json::from_str(&r[0].body).unwrap();
    assert_eq!(sent, body());
}

#[test]
fn retry_after_is_honoured() {
    let s = MockServer::start(Step::answer("ok")).unwrap();
    s.script([Step::Status {
        status: 429,
        retry_after: Some("1".into()),
    }]);
    let t = Instant::now();
    let c = client(&s).complete(&body()).unwrap();
    assert_eq!(c.attempts, 2);
    // backoff alone would be under 20 ms; the server asked for one second
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn server_errors_timeouts_and_bad_bodies_are_retried() {
    for (name, step) in [
        (
            "500",
            Step::Status {
                status: 500,
                retry_after: None,
            },
        ),
        (
            "503",
            Step::Status {
                status: 503,
                retry_after: None,
            },
        ),
        ("timeout", Step::Hang(Duration::from_secs(2))),
        ("malformed", Step::Malformed),
        ("truncated", Step::Truncated),
    ] {
        let s = MockServer::start(Step::answer("fine")).unwrap();
        s.script([step.clone(), step]);
        let c = client(&s)
            .complete(&body())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.text, "fine", "{name}");
        assert_eq!(c.attempts, 3, "{name}");
        assert_eq!(s.received().len(), 3, "{name}");
    }
}

#[test]
fn failures_after_the_retries_and_errors_not_worth_retrying() {
    let s = MockServer::start(Step::Status {
        status: 500,
        retry_after: None,
    })
    .unwrap();
    let f = client(&s).complete(&body()).unwrap_err();
    assert_eq!(f.attempts, 4, "1 + 3 retries");
    assert!(matches!(f.error, CallError::Status { status: 500, .. }));
    assert_eq!(s.received().len(), 4);

    let s = MockServer::start(Step::Status {
        status: 401,
        retry_after: None,
    })
    .unwrap();
    let f = client(&s).complete(&body()).unwrap_err();
    assert_eq!(f.attempts, 1);
    assert!(matches!(f.error, CallError::Status { status: 401, .. }));
    // the key is not in the error
    assert!(!f.to_string().contains("sk-test"), "{f}");

    let s = MockServer::start(Step::Hang(Duration::from_secs(3))).unwrap();
    let f = client(&s).complete(&body()).unwrap_err();
    assert_eq!(f.error, CallError::Timeout);
}

#[test]
fn concurrency_is_bounded() {
    let s = MockServer::start(Step::Answer {
        text: "answer {n}".into(),
        delay: Duration::from_millis(150),
    })
    .unwrap();
    let mut cfg = ClientConfig::new(&s.base_url);
    cfg.concurrency = 4;
    let c = Client::new(cfg);
    let bodies: Vec<serde_json::Value> = (0..12).map(|_| body()).collect();
    let done = std::sync::Mutex::new(Vec::new());
    c.complete_all(&bodies, &|i, r| {
        done.lock().unwrap().push((i, r.unwrap().text))
    });
    let mut done = done.into_inner().unwrap();
    done.sort();
    assert_eq!(done.len(), 12);
    assert_eq!(
        done.iter().map(|d| d.0).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    assert!(s.max_in_flight() <= 4, "{}", s.max_in_flight());
    assert!(s.max_in_flight() >= 2, "requests ran in parallel");
}

/// A chat completion body whose content and usage are given as raw JSON text.
fn raw_answer(content_json: &[u8], usage: &str) -> Vec<u8> {
    let mut b = br#"{"choices":[{"message":{"role":"assistant","content":"#.to_vec();
    b.extend_from_slice(content_json);
    b.extend_from_slice(format!(r#"}},"finish_reason":"stop"}}],"usage":{usage}}}"#).as_bytes());
    b
}

#[test]
fn invalid_utf8_from_the_server_is_read_not_refused() {
    let s = MockServer::start(Step::answer("unused")).unwrap();
    s.script([Step::Raw {
        status: 200,
        headers: String::new(),
        body: raw_answer(b"\"caf\xe9 \xf0\x9f\x90 ok\"", r#"{"prompt_tokens":3}"#),
    }]);
    let c = client(&s).complete(&body()).unwrap();
    assert_eq!(c.attempts, 1);
    assert_eq!(c.text, "caf\u{fffd} \u{fffd} ok");
}

#[test]
fn absurd_numbers_from_the_server_never_panic() {
    // Retry-After far beyond any sane wait, negative, or not a number: the wait is capped at
    // the backoff ceiling (or the usual backoff), and the call goes on.
    for retry_after in ["1e20", "-5", "NaN", "inf", "99999999999999999999999"] {
        let s = MockServer::start(Step::answer("fine")).unwrap();
        s.script([Step::Status {
            status: 429,
            retry_after: Some(retry_after.into()),
        }]);
        let mut cfg = ClientConfig::new(&s.base_url);
        cfg.backoff_base = Duration::from_millis(10);
        cfg.backoff_max = Duration::from_millis(300);
        let t = Instant::now();
        let c = Client::new(cfg).complete(&body()).unwrap();
        assert_eq!((c.text.as_str(), c.attempts), ("fine", 2), "{retry_after}");
        assert!(t.elapsed() < Duration::from_secs(5), "{retry_after}");
    }
    // Token counts that overflow any sum, under a token limit that adds them up.
    let s = MockServer::start(Step::answer("unused")).unwrap();
    let usage =
        r#"{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615}"#;
    let huge = Step::Raw {
        status: 200,
        headers: String::new(),
        body: raw_answer(br#""a""#, usage),
    };
    let negative = Step::Raw {
        status: 200,
        headers: String::new(),
        body: raw_answer(
            br#""b""#,
            r#"{"prompt_tokens":-7,"completion_tokens":1e300}"#,
        ),
    };
    s.script([huge.clone(), huge, negative]);
    let mut cfg = ClientConfig::new(&s.base_url);
    cfg.tokens_per_minute = Some(u64::MAX);
    let c = Client::new(cfg);
    for want in ["a", "a", "b"] {
        let a = c.complete(&body()).unwrap();
        assert_eq!(a.text, want);
        assert!(a.usage.prompt_tokens <= iw_lab::engine::openai::client::MAX_USAGE_TOKENS);
    }
}
