//! A scripted OpenAI-compatible server on 127.0.0.1 for tests and benchmarks: each request
//! takes the next step of a script (answer, error status with or without `Retry-After`, hang,
//! malformed JSON, truncated body), or the default step when the script is empty, and is
//! recorded (path, headers, body) for the caller to inspect.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// 200 with a chat completion whose content is `text` (`{n}` → the request number), after
    /// `delay`.
    Answer { text: String, delay: Duration },
    /// An error status, optionally with `Retry-After`.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// Waits this long, then closes without answering.
    Hang(Duration),
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 whose `Content-Length` promises more than is sent before the connection closes.
    Truncated,
    /// A status line, extra header lines (each ending in `\r\n`) and a body, sent as given:
    /// invalid UTF-8, absurd numbers, anything a broken server might send.
    Raw {
        status: u16,
        headers: String,
        body: Vec<u8>,
    },
}

impl Step {
    pub fn answer(text: &str) -> Step {
        Step::Answer {
            text: text.to_string(),
            delay: Duration::ZERO,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    /// What a request gets when the script is empty.
    default: Mutex<Step>,
    script: Mutex<VecDeque<Step>>,
    received: Mutex<Vec<Received>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stop: AtomicBool,
}

/// The running server; stops when dropped.
pub struct MockServer {
    pub base_url: String,
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
}

impl MockServer {
    /// Starts a server answering `default` whenever the script is empty.
    pub fn start(default: Step) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            default: Mutex::new(default),
            script: Mutex::default(),
            received: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let server = MockServer {
            base_url: format!("http://{addr}/v1"),
            shared: shared.clone(),
            addr,
        };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &shared);
                });
            }
        });
        Ok(server)
    }

    /// Appends steps to the script.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.shared
            .script
            .lock()
            .expect("script lock")
            .extend(steps);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("received lock").clone()
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn default_step(&self) -> Step {
        self.shared.default.lock().expect("default lock").clone()
    }

    /// Changes what requests get when the script is empty (a server going down or up).
    pub fn set_default(&self, step: Step) {
        *self.shared.default.lock().expect("default lock") = step;
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // wake the accept loop
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let n = {
        let mut r = shared.received.lock().expect("received lock");
        r.push(Received {
            path,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        });
        r.len()
    };
    let step = shared
        .script
        .lock()
        .expect("script lock")
        .pop_front()
        .unwrap_or_else(|| shared.default.lock().expect("default lock").clone());
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // waits as the step says, then leaves the in-flight count before the answer is written,
    // so the count never includes a request whose answer the client already has
    let answer = respond(&step, n);
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut stream = stream;
    if let Some(bytes) = answer {
        stream.write_all(&bytes)?;
        stream.flush()?;
    }
    Ok(())
}

fn respond(step: &Step, n: usize) -> Option<Vec<u8>> {
    let full = |status: &str, extra: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    match step {
        Step::Answer { text, delay } => {
            std::thread::sleep(*delay);
            let content = text.replace("{n}", &n.to_string());
            let body = serde_json::json!({
                "id": format!("chatcmpl-{n}"),
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            });
            Some(full("200 OK", "", &body.to_string()))
        }
        Step::Status {
            status,
            retry_after,
        } => {
            let extra = retry_after
                .as_ref()
                .map(|r| format!("Retry-After: {r}\r\n"))
                .unwrap_or_default();
            let body = format!("{{\"error\": {{\"message\": \"scripted {status}\"}}}}");
            Some(full(&format!("{status} Scripted"), &extra, &body))
        }
        Step::Hang(d) => {
            std::thread::sleep(*d);
            None
        }
        Step::Malformed => Some(full("200 OK", "", "{\"choices\": [ not json")),
        Step::Raw {
            status,
            headers,
            body,
        } => {
            let mut out = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(body);
            Some(out)
        }
        Step::Truncated => Some(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"choices\": [{\"mess"
                .as_bytes()
                .to_vec(),
        ),
    }
}
