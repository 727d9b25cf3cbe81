//! `iw-lab serve`, the studio, driven like a user drives it: the real binary on fixture trees,
//! Debian's Chromium through `chromedriver` (WebDriver, via `fantoccini`), and raw HTTP for
//! what a browser would never send (path traversal, missing tokens, foreign origins and hosts).
//!
//! The browser tests skip, saying so, only when `chromedriver` is absent; `.ci/run` installs
//! it. `IW_LAB_SCREENSHOTS=DIR` saves a screenshot of each workflow there (how `docs/` got its
//! pictures).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A running studio; killed (SIGKILL) when dropped.
struct Studio {
    child: Child,
    url: String,
    base: String,
    token: String,
}

impl Studio {
    fn start(project: &Path, args: &[&str]) -> Studio {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iw-lab"))
            .arg("serve")
            .args(args)
            .current_dir(project)
            .env("IW_LAB_PROJECT", project)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL on the first line: {first:?}"))
            .to_string();
        let base = url.split("/?").next().unwrap().to_string();
        let token = url.split("token=").nth(1).unwrap().to_string();
        Studio {
            child,
            url,
            base,
            token,
        }
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 request, exactly as given; returns (status, body).
fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn get(st: &Studio, path: &str, headers: &str) -> (u16, String) {
    raw(
        &st.addr(),
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}Connection: close\r\n\r\n",
            st.addr()
        ),
    )
}

fn send(st: &Studio, method: &str, path: &str, headers: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let (code, text) = raw(
        &st.addr(),
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
            st.addr(),
            body.len()
        ),
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Headers of a request the studio's own page makes.
fn own(st: &Studio) -> String {
    format!("X-IW-Token: {}\r\nOrigin: {}\r\n", st.token, st.base)
}

/// A folder of three small images (one in a subfolder, one with a non-ASCII name).
fn three_images(dir: &Path) {
    let imgs = fixture_images();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let png: Vec<&PathBuf> = imgs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    std::fs::copy(png[0], dir.join("a.png")).unwrap();
    std::fs::copy(png[1], dir.join("sub").join("b.png")).unwrap();
    std::fs::copy(png[2], dir.join("é c.png")).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------- WebDriver ----------

struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IW_LAB_CHROMEDRIVER") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            Command::new("sh")
                .args(["-c", "command -v chromedriver"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })
}

/// Starts chromedriver, or says why the browser test is skipped.
fn driver() -> Option<Driver> {
    let Some(bin) = chromedriver() else {
        eprintln!(
            "SKIPPED: the studio's browser tests need chromedriver (Debian: apt-get install chromium chromium-driver; or set IW_LAB_CHROMEDRIVER)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Driver { child, port })
}

async fn browser(d: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("a WebDriver session")
}

/// Waits until the JavaScript expression is truthy; returns its value.
async fn until(c: &Client, expr: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap_or(Value::Null);
        let truthy =
            !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
        if truthy {
            return v;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let notice = c
                .execute(
                    "return document.getElementById('notice').textContent",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            panic!("timed out waiting for {expr} (notice: {notice})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn keys(c: &Client, text: &str) {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn shown_name(c: &Client) -> String {
    until(c, "document.getElementById('imgname').textContent").await;
    c.execute(
        "return document.getElementById('imgname').textContent",
        vec![],
    )
    .await
    .unwrap()
    .as_str()
    .unwrap()
    .split_whitespace()
    .next()
    .unwrap()
    .to_string()
}

async fn screenshot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("IW_LAB_SCREENSHOTS") {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let png = c.screenshot().await.unwrap();
        std::fs::write(Path::new(&dir).join(name), png).unwrap();
    }
}

const ENTER: char = '\u{E007}';
const CONTROL: char = '\u{E009}';
const NULL_KEY: char = '\u{E000}';

// ---------- tests ----------

#[test]
fn preparing_copies_names_and_extends_without_renumbering() {
    let p = Project::new();
    let src = p.path().join("shoot");
    three_images(&src);
    std::fs::write(src.join("notes.txt"), "not an image").unwrap();
    let st = Studio::start(p.path(), &["--tag", "shoot", "--prefix", "amy"]);
    let out = src.join("out");
    let session: Value = serde_json::from_str(&read(&out.join("iw-lab-session.json"))).unwrap();
    let names: Vec<(&str, &str)> = session["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["original"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("amy_0001.png", "a.png"),
            ("amy_0002.png", "sub/b.png"),
            ("amy_0003.png", "é c.png")
        ]
    );
    for n in ["amy_0001", "amy_0002", "amy_0003"] {
        assert_eq!(read(&out.join(format!("{n}.txt"))), "");
    }
    assert_eq!(
        std::fs::read(out.join("amy_0002.png")).unwrap(),
        std::fs::read(src.join("sub/b.png")).unwrap()
    );
    assert!(src.join("a.png").is_file(), "originals are never moved");
    st.kill();
    // A tagged copy stays; a new original gets the next number; the output folder is never input.
    std::fs::write(out.join("amy_0001.txt"), "kept").unwrap();
    std::fs::copy(src.join("a.png"), src.join("0-new.png")).unwrap();
    let st = Studio::start(p.path(), &["--tag", "shoot", "--prefix", "amy"]);
    let session: Value = serde_json::from_str(&read(&out.join("iw-lab-session.json"))).unwrap();
    let items = session["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[3]["name"], "amy_0004.png");
    assert_eq!(items[3]["original"], "0-new.png");
    assert_eq!(items[0]["name"], "amy_0001.png");
    assert_eq!(read(&out.join("amy_0001.txt")), "kept");
    assert!(!out.join("out").exists());
    st.kill();
}

#[test]
fn raw_http_cannot_leave_the_folder_or_skip_the_token() {
    let p = Project::new();
    let src = p.path().join("shoot");
    three_images(&src);
    std::fs::write(p.path().join("secret.txt"), "secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(p.path().join("secret.txt"), src.join("out-link.png")).unwrap();
    let st = Studio::start(p.path(), &["--tag", "shoot"]);
    // Reads on loopback need no token.
    assert_eq!(get(&st, "/files/0/img_0001.png", "").0, 200);
    assert_eq!(get(&st, "/", "").0, 200);
    for bad in [
        "/files/0/../../secret.txt",
        "/files/0/..%2f..%2fsecret.txt",
        "/files/0/%2e%2e/%2e%2e/secret.txt",
        "/files/0/%2E%2E%2F%2E%2E%2Fsecret.txt",
        "/files/0//etc/passwd",
        "/files/0/%2fetc%2fpasswd",
        "/files/0/..\\..\\secret.txt",
        "/thumbs/0/../../secret.txt",
        "/files/1/secret.txt",
    ] {
        let (code, body) = get(&st, bad, "");
        assert!(
            code == 403 || code == 404 || code == 400,
            "{bad}: {code} {body}"
        );
        assert!(
            !body.contains("secret\n") && body != "secret",
            "{bad}: {body}"
        );
    }
    // A symlink out of the folder is not an original: nothing of it is copied or served.
    let (code, _) = get(&st, "/files/0/out-link.png", "");
    assert_eq!(code, 404);
    for e in std::fs::read_dir(src.join("out")).unwrap() {
        assert_ne!(std::fs::read(e.unwrap().path()).unwrap(), b"secret");
    }
    // Writes need the token, the studio's own Origin, and a Host naming the studio.
    let body = json!({"tags": ["x"], "version": "absent"});
    let (code, _) = send(&st, "PUT", "/api/tag/items/0", "", &body);
    assert_eq!(code, 401);
    let (code, _) = send(
        &st,
        "PUT",
        "/api/tag/items/0",
        &format!(
            "X-IW-Token: {}\r\nOrigin: http://evil.example\r\n",
            st.token
        ),
        &body,
    );
    assert_eq!(code, 403);
    let (code, _) = send(
        &st,
        "PUT",
        "/api/tag/items/0",
        &format!("X-IW-Token: {}\r\n", st.token),
        &body,
    );
    assert_eq!(code, 403, "no Origin");
    let (code, _) = send(
        &st,
        "PUT",
        "/api/tag/items/0",
        &format!("X-IW-Token: wrong\r\nOrigin: {}\r\n", st.base),
        &body,
    );
    assert_eq!(code, 401);
    let (code, _) = raw(
        &st.addr(),
        "GET / HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 403, "a foreign Host (DNS rebinding) is refused");
    // Bad parameters: 400 with a message.
    let (code, v) = send(
        &st,
        "PUT",
        "/api/tag/items/0",
        &own(&st),
        &json!({"tags": "x"}),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("tags"), "{v}");
    let (code, v) = send(
        &st,
        "PUT",
        "/api/tag/items/0",
        &own(&st),
        &json!({"tags": ["a, b"], "version": "absent"}),
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(get(&st, "/api/tag/items/99", "").0, 404);
    assert_eq!(get(&st, "/api/tag/items/-1", "").0, 400);
    assert_eq!(get(&st, "/thumbs/0/img_0001.png?size=99999", "").0, 400);
    // A strict CSP on every answer.
    let (_, _) = get(&st, "/", "");
    let mut s = TcpStream::connect(st.addr()).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        st.addr()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.to_lowercase()
            .contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{text}"
    );
    st.kill();

    // Off loopback, every request needs the token.
    let st = Studio::start(p.path(), &["--tag", "shoot", "--host", "0.0.0.0"]);
    let port = st.addr().rsplit(':').next().unwrap().to_string();
    let addr = format!("127.0.0.1:{port}");
    let (code, _) = raw(
        &addr,
        &format!("GET /api/tag/session HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 401);
    let (code, _) = raw(
        &addr,
        &format!("GET /files/0/img_0001.png HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 401);
    let (code, _) = raw(
        &addr,
        &format!(
            "GET /api/tag/session?token={} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
            st.token
        ),
    );
    assert_eq!(code, 200);
    st.kill();
}

#[test]
fn a_stale_write_gets_409_and_edits_on_disk_are_detected() {
    let p = Project::new();
    let src = p.path().join("shoot");
    three_images(&src);
    let st = Studio::start(p.path(), &["--tag", "shoot"]);
    let v0 = serde_json::from_str::<Value>(&get(&st, "/api/tag/items/0", "").1).unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, a) = send(
        &st,
        "PUT",
        "/api/tag/items/0",
        &own(&st),
        &json!({"tags": ["one"], "version": v0}),
    );
    assert_eq!(code, 200, "{a}");
    let (code, b) = send(
        &st,
        "PUT",
        "/api/tag/items/0",
        &own(&st),
        &json!({"tags": ["two"], "version": v0}),
    );
    assert_eq!(code, 409, "{b}");
    assert_eq!(b["tags"], json!(["one"]));
    // Another program writes the file: the next write made on the old version is refused.
    std::fs::write(src.join("out/img_0001.txt"), "from another tool").unwrap();
    let (code, c) = send(
        &st,
        "PUT",
        "/api/tag/items/0",
        &own(&st),
        &json!({"tags": ["three"], "version": a["version"]}),
    );
    assert_eq!(code, 409, "{c}");
    assert_eq!(c["tags"], json!(["from another tool"]));
    assert_eq!(read(&src.join("out/img_0001.txt")), "from another tool");
    // A sidecar that is not UTF-8 is reported and never overwritten.
    std::fs::write(src.join("out/img_0002.txt"), b"caf\xe9").unwrap();
    let body = get(&st, "/api/tag/items/1", "").1;
    assert!(body.contains("not UTF-8"), "{body}");
    let (code, _) = send(
        &st,
        "PUT",
        "/api/tag/items/1",
        &own(&st),
        &json!({"tags": ["x"], "version": "absent"}),
    );
    assert_eq!(code, 409);
    assert_eq!(
        std::fs::read(src.join("out/img_0002.txt")).unwrap(),
        b"caf\xe9"
    );
    let log = read(&src.join("out/iw-lab-edits.jsonl"));
    assert_eq!(log.lines().count(), 1, "{log}");
    st.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_tagging_in_a_browser_with_clicks_and_keys_then_resume() {
    let Some(d) = driver() else { return };
    let p = Project::new();
    let src = p.path().join("shoot");
    three_images(&src);
    let out = src.join("out");
    let st = Studio::start(p.path(), &["--tag", "shoot"]);
    let c = browser(&d).await;
    c.goto(&st.url).await.unwrap();
    assert_eq!(shown_name(&c).await, "img_0001.png");
    // Image 1, by clicks: type a tag, add it with the button-less Enter, then a hostile one.
    let input = c.find(Locator::Id("taginput")).await.unwrap();
    input.send_keys("blue sky").await.unwrap();
    input.send_keys(&ENTER.to_string()).await.unwrap();
    until(&c, "document.querySelectorAll('#chips .chip').length === 1").await;
    let hostile = "<img src=x onerror=window.__pwned=1>";
    input.send_keys(hostile).await.unwrap();
    input.send_keys(&ENTER.to_string()).await.unwrap();
    until(&c, "document.querySelectorAll('#chips .chip').length === 2").await;
    click(&c, "#save").await;
    until(
        &c,
        "document.getElementById('imgname').textContent.startsWith('img_0002')",
    )
    .await;
    // The hostile tag is text: no image element was made from it, no script ran.
    let pwned = c.execute("return window.__pwned === undefined && document.querySelectorAll('#chips img, #alltags img').length === 0", vec![]).await.unwrap();
    assert_eq!(pwned, json!(true));
    let shown = until(
        &c,
        "[...document.querySelectorAll('#alltags .chip span')].map(s => s.textContent).join('|')",
    )
    .await;
    assert!(shown.as_str().unwrap().contains(hostile), "{shown}");
    // Image 2, by keyboard: `/` focuses the input, type, Enter adds; a used tag by click.
    keys(&c, "/").await;
    let focused = until(&c, "document.activeElement && document.activeElement.id").await;
    assert_eq!(focused, json!("taginput"));
    c.find(Locator::Id("taginput"))
        .await
        .unwrap()
        .send_keys(&format!("red car{ENTER}"))
        .await
        .unwrap();
    until(&c, "document.querySelectorAll('#chips .chip').length === 1").await;
    c.execute("document.activeElement.blur()", vec![])
        .await
        .unwrap();
    click(&c, "#alltags button[data-tag='blue sky']").await;
    until(&c, "document.querySelectorAll('#chips .chip').length === 2").await;
    screenshot(&c, "studio-tagging.png").await;
    keys(&c, &ENTER.to_string()).await;
    until(
        &c,
        "document.getElementById('imgname').textContent.startsWith('img_0003')",
    )
    .await;
    // Image 3: add, undo with Ctrl+Z, add again; move away and back with the arrow keys.
    let input = c.find(Locator::Id("taginput")).await.unwrap();
    input.send_keys(&format!("mistake{ENTER}")).await.unwrap();
    until(&c, "document.querySelectorAll('#chips .chip').length === 1").await;
    input.send_keys(&format!("blue{ENTER}")).await.unwrap();
    until(&c, "document.querySelectorAll('#chips .chip').length === 2").await;
    c.execute("document.activeElement.blur()", vec![])
        .await
        .unwrap();
    keys(&c, &format!("{CONTROL}z{NULL_KEY}")).await;
    until(&c, "document.querySelectorAll('#chips .chip').length === 1").await;
    assert_eq!(read(&out.join("img_0003.txt")), "mistake");
    keys(&c, "k").await;
    until(
        &c,
        "document.getElementById('imgname').textContent.startsWith('img_0002')",
    )
    .await;
    keys(&c, "j").await;
    until(
        &c,
        "document.getElementById('imgname').textContent.startsWith('img_0003')",
    )
    .await;
    c.close().await.unwrap();
    // On disk: kohya files in the order shown, the master list most used first.
    assert_eq!(
        read(&out.join("img_0001.txt")),
        format!("blue sky, {hostile}")
    );
    assert_eq!(read(&out.join("img_0002.txt")), "red car, blue sky");
    let master = read(&out.join("tags.txt"));
    let lines: Vec<&str> = master.lines().collect();
    assert_eq!(lines[0], "blue sky");
    assert_eq!(lines.len(), 4, "{master}");
    for t in [hostile, "red car", "mistake"] {
        assert!(lines.contains(&t), "{master}");
    }
    let session: Value = serde_json::from_str(&read(&out.join("iw-lab-session.json"))).unwrap();
    let done: Vec<bool> = session["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["done"].as_bool().unwrap())
        .collect();
    assert_eq!(done, vec![true, true, false]);
    // Killed and started again, it resumes at the first unfinished image.
    st.kill();
    let st = Studio::start(p.path(), &["--tag", "shoot"]);
    let c = browser(&d).await;
    c.goto(&st.url).await.unwrap();
    assert_eq!(shown_name(&c).await, "img_0003.png");
    let progress = until(&c, "document.getElementById('progress').textContent").await;
    assert_eq!(progress, json!("2 of 3 done"));
    c.close().await.unwrap();
    let log = read(&out.join("iw-lab-edits.jsonl"));
    assert!(
        log.lines().any(|l| l.contains("\"action\":\"undo\"")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_suggestion_and_two_sessions_conflicting() {
    let Some(d) = driver() else { return };
    let p = Project::new();
    let src = p.path().join("shoot");
    three_images(&src);
    p.write(
        "preds/img_0001.json",
        r#"{"tags": {"sunset": 0.93, "beach": 0.41, "dog": 0.12}}"#,
    );
    p.write(
        "models/other.yaml",
        "kind: sidecar\npath: ../preds\nscore_floor: 0.2\n",
    );
    let out = src.join("out");
    let st = Studio::start(p.path(), &["--tag", "shoot", "--suggest", "other"]);
    let a = browser(&d).await;
    a.goto(&st.url).await.unwrap();
    until(
        &a,
        "document.querySelectorAll('#pending .suggestion').length === 2",
    )
    .await;
    let first = until(
        &a,
        "document.querySelector('#pending .suggestion').dataset.tag",
    )
    .await;
    assert_eq!(first, json!("sunset"));
    screenshot(&a, "studio-suggestions.png").await;
    keys(&a, "x").await;
    until(
        &a,
        "document.querySelectorAll('#pending .suggestion').length === 1",
    )
    .await;
    keys(&a, "1").await;
    until(&a, "document.querySelectorAll('#chips .chip').length === 1").await;
    assert_eq!(read(&out.join("img_0001.txt")), "beach");
    // A second session on the same image, then an edit in each: the later one is refused
    // with the current tags shown, and nothing is lost silently.
    let b = browser(&d).await;
    b.goto(&st.url).await.unwrap();
    until(&b, "document.querySelectorAll('#chips .chip').length === 1").await;
    let ia = a.find(Locator::Id("taginput")).await.unwrap();
    ia.send_keys(&format!("from a{ENTER}")).await.unwrap();
    until(&a, "document.querySelectorAll('#chips .chip').length === 2").await;
    let ib = b.find(Locator::Id("taginput")).await.unwrap();
    ib.send_keys(&format!("from b{ENTER}")).await.unwrap();
    let notice = until(&b, "document.getElementById('notice').className === 'conflict' && document.getElementById('notice').textContent").await;
    assert!(notice.as_str().unwrap().contains("Not saved"), "{notice}");
    let shown = until(
        &b,
        "[...document.querySelectorAll('#chips .chip span')].map(s => s.textContent).join(',')",
    )
    .await;
    assert_eq!(shown, json!("beach,from a"));
    assert_eq!(read(&out.join("img_0001.txt")), "beach, from a");
    // Retrying on the current version succeeds.
    ib.send_keys(&format!("from b{ENTER}")).await.unwrap();
    until(&b, "document.querySelectorAll('#chips .chip').length === 3").await;
    assert_eq!(read(&out.join("img_0001.txt")), "beach, from a, from b");
    a.close().await.unwrap();
    b.close().await.unwrap();
    st.kill();
}

/// A dataset with `.txt` ground truth and a sidecar "model" whose predictions differ.
fn review_project() -> (Project, String) {
    let p = Project::new();
    let imgs = fixture_images();
    let png: Vec<&PathBuf> = imgs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        p.copy(png[i], &format!("data/{name}.png"));
    }
    p.write("data/a.txt", "cat, tree");
    p.write("data/b.txt", "dog");
    p.write("data/c.txt", "cat");
    p.write("preds/a.json", r#"{"tags": {"cat": 0.9, "sky": 0.8}}"#);
    p.write("preds/b.json", r#"{"tags": {"dog": 0.7}}"#);
    p.write("preds/c.json", r#"{"tags": {"cat": 0.6, "sky": 0.55}}"#);
    p.write(
        "datasets/d.yaml",
        "path: ../data\nground_truth:\n  - source: txt\n",
    );
    p.write(
        "models/side.yaml",
        "kind: sidecar\npath: ../preds\nscore_floor: 0.0\n",
    );
    p.write(
        "experiments/e.yaml",
        "dataset: d\nvariants:\n  - model: side\n    thresholds: [0.5]\n",
    );
    let run = p.json(&["run", "e", "--json", "--quiet"], 0);
    (p, run["run_id"].as_str().unwrap().to_string())
}

fn micro_f1(p: &Project, extra: &[&str]) -> f64 {
    let mut args = vec!["metrics", "latest", "--json"];
    args.extend_from_slice(extra);
    let m = p.json(&args, 0);
    m["variants"][0]["micro"]["f1"]
        .as_f64()
        .unwrap_or_else(|| panic!("{m}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_predicted_tag_in_review_changes_the_metrics() {
    let (p, _) = review_project();
    let before = micro_f1(&p, &[]);
    let st = Studio::start(p.path(), &["--run", "latest"]);
    let page: Value =
        serde_json::from_str(&get(&st, "/api/grid/page?flags=disagree", "").1).unwrap();
    assert_eq!(page["total"], 0, "one variant never disagrees: {page}");
    let page: Value =
        serde_json::from_str(&get(&st, "/api/grid/page?q=cat&sort=f1", "").1).unwrap();
    let paths: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["a.png", "c.png"], "worst F1 first: {page}");
    if let Some(d) = driver() {
        let c = browser(&d).await;
        c.goto(&st.url).await.unwrap();
        until(&c, "document.querySelectorAll('#grid .cell').length === 3").await;
        screenshot(&c, "studio-review-grid.png").await;
        click(&c, "#grid .cell[data-id='0']").await;
        until(&c, "document.querySelector('#detailpanel .chip.fp')").await;
        screenshot(&c, "studio-review-image.png").await;
        click(&c, "#detailpanel .chip.fp .accept-gt").await;
        until(
            &c,
            "document.getElementById('notice').textContent === 'ground truth saved'",
        )
        .await;
        c.close().await.unwrap();
    } else {
        let item: Value = serde_json::from_str(&get(&st, "/api/review/items/0", "").1).unwrap();
        let (code, v) = send(
            &st,
            "POST",
            "/api/review/items/0/truth",
            &own(&st),
            &json!({"add": "sky", "version": item["truth_file"]["version"]}),
        );
        assert_eq!(code, 200, "{v}");
    }
    assert_eq!(read(&p.path().join("data/a.txt")), "cat, tree, sky");
    let log_dir = p.path().join(".iw-lab/studio");
    let log: String = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| read(&e.unwrap().path()))
        .collect();
    assert!(
        log.contains("\"action\":\"accept\"") && log.contains("\"new\":[\"cat\",\"tree\",\"sky\"]"),
        "{log}"
    );
    st.kill();
    let after = micro_f1(&p, &[]);
    let snapshot = micro_f1(&p, &["--ground-truth", "snapshot"]);
    assert!(after > before, "{before} → {after}");
    assert_eq!(snapshot, before);
    let text = p.expect(&["metrics", "latest"], 0);
    assert!(text.contains("ground truth: current"), "{text}");
}

#[test]
fn browsing_a_folder_filters_sorts_and_groups_through_duckdb() {
    let p = Project::new();
    let dir = p.path().join("pics");
    three_images(&dir);
    std::fs::write(dir.join("a.txt"), "cat, dog, outdoors").unwrap();
    std::fs::write(dir.join("sub/b.txt"), "cat").unwrap();
    std::fs::write(dir.join("é c.txt"), "cat, dog").unwrap();
    std::fs::write(dir.join("broken.png"), b"not really a png").unwrap();
    let st = Studio::start(p.path(), &["pics"]);
    let page = |q: &str| -> Value {
        serde_json::from_str(&get(&st, &format!("/api/grid/page?{q}"), "").1).unwrap()
    };
    let paths = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(page("")["total"], 4);
    assert_eq!(paths(&page("q=cat+dog")), vec!["a.png", "é c.png"]);
    assert_eq!(paths(&page("q=cat+dog+-outdoors")), vec!["é c.png"]);
    assert_eq!(
        paths(&page("q=dog+outdoors&mode=any")),
        vec!["a.png", "é c.png"]
    );
    assert_eq!(paths(&page("folder=sub")), vec!["sub/b.png"]);
    assert_eq!(paths(&page("sort=tags"))[0], "a.png");
    assert_eq!(
        paths(&page("sort=shared:0")),
        vec!["a.png", "é c.png", "sub/b.png", "broken.png"]
    );
    let grouped = page("group=tag");
    assert_eq!(grouped["items"][0]["group"], "cat");
    assert_eq!(
        page("q=cat&limit=1&offset=1")["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Invalid UTF-8 in a filter is read lossily: no match, no error.
    assert_eq!(page("q=%ff%fe")["total"], 0);
    // Absurd numbers are clamped, not errors.
    let huge = page("offset=18446744073709551615&limit=99999999");
    assert_eq!(huge["items"], json!([]), "{huge}");
    assert_eq!(get(&st, "/api/grid/complete?q=%00", "").0, 400);
    let tags: Value = serde_json::from_str(&get(&st, "/api/grid/tags?q=dog", "").1).unwrap();
    assert_eq!(
        tags["tags"][0],
        json!({"tag": "cat", "key": "cat", "count": 2, "category": null})
    );
    let done: Value = serde_json::from_str(&get(&st, "/api/grid/complete?q=ou", "").1).unwrap();
    assert_eq!(done["tags"][0]["tag"], "outdoors");
    for bad in [
        "sort=sideways",
        "group=nothing",
        "mode=some",
        "flags=odd",
        "limit=x",
    ] {
        let (code, body) = get(&st, &format!("/api/grid/page?{bad}"), "");
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let export: Value =
        serde_json::from_str(&get(&st, "/api/grid/export?q=cat+-outdoors", "").1).unwrap();
    assert_eq!(export["negative"], "outdoors");
    assert_eq!(export["files"], json!(["sub/b.png", "é c.png"]));
    // The unreadable file shows a placeholder with the reason.
    let (code, body) = get(&st, "/thumbs/0/broken.png?size=128", "");
    assert_eq!(code, 422, "{body}");
    assert!(page("name=broken")["items"][0]["error"].is_string());
    // Edits to a browsed image's `.txt`, versioned.
    let item: Value = serde_json::from_str(&get(&st, "/api/browse/items/0", "").1).unwrap();
    let (code, v) = send(
        &st,
        "PUT",
        "/api/browse/items/0",
        &own(&st),
        &json!({"tags": ["cat", "bird"], "version": item["version"]}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(read(&dir.join("a.txt")), "cat, bird");
    assert_eq!(paths(&page("q=bird")), vec!["a.png"]);
    let (code, _) = send(
        &st,
        "PUT",
        "/api/browse/items/0",
        &own(&st),
        &json!({"tags": ["x"], "version": item["version"]}),
    );
    assert_eq!(code, 409);
    if let Some(d) = driver() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let c = browser(&d).await;
            c.goto(&st.url).await.unwrap();
            until(&c, "document.querySelectorAll('#grid .cell').length === 4").await;
            until(&c, "document.querySelector('#grid .placeholder')").await;
            screenshot(&c, "studio-browse.png").await;
            c.close().await.unwrap();
        });
    }
    st.kill();
}

#[test]
fn renaming_a_tag_previews_then_rewrites_sidecars_and_records_the_alias() {
    let (p, _) = review_project();
    let st = Studio::start(p.path(), &["--run", "latest"]);
    let body = json!({"from": "cat", "to": "feline"});
    let (code, preview) = send(&st, "POST", "/api/review/rename", &own(&st), &body);
    assert_eq!(code, 200, "{preview}");
    assert_eq!(preview["files"], json!(["a.txt", "c.txt"]));
    assert_eq!(
        read(&p.path().join("data/a.txt")),
        "cat, tree",
        "a preview writes nothing"
    );
    let mut confirm = body.clone();
    confirm["confirm"] = json!(true);
    let (code, done) = send(&st, "POST", "/api/review/rename", &own(&st), &confirm);
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["rewritten"], 2);
    assert_eq!(read(&p.path().join("data/a.txt")), "feline, tree");
    assert_eq!(read(&p.path().join("data/c.txt")), "feline");
    assert_eq!(read(&p.path().join("data/b.txt")), "dog");
    let aliases = read(&p.path().join("datasets/d.aliases.yaml"));
    assert_eq!(aliases.trim(), "cat: feline");
    assert!(read(&p.path().join("datasets/d.yaml")).contains("alias_file: d.aliases.yaml"));
    let page: Value = serde_json::from_str(&get(&st, "/api/grid/page?q=feline", "").1).unwrap();
    assert_eq!(page["total"], 2);
    // Merging into a tag an image already has keeps it once.
    let (code, v) = send(
        &st,
        "POST",
        "/api/review/rename",
        &own(&st),
        &json!({"from": "tree", "to": "Feline", "confirm": true}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(read(&p.path().join("data/a.txt")), "feline");
    let (code, _) = send(
        &st,
        "POST",
        "/api/review/rename",
        &own(&st),
        &json!({"from": "x", "to": "a, b"}),
    );
    assert_eq!(code, 400);
    st.kill();
    // The dataset still loads, with the alias applied to its ground truth: the model's
    // `cat` no longer matches.
    let m = p.json(&["metrics", "latest", "--json"], 0);
    assert!(
        m["ground_truth_used"].as_str().unwrap().contains("differs"),
        "{m}"
    );
}

#[test]
fn one_studio_per_session_folder() {
    let p = Project::new();
    let src = p.path().join("shoot");
    three_images(&src);
    let st = Studio::start(p.path(), &["--tag", "shoot"]);
    let second = Command::new(env!("CARGO_BIN_EXE_iw-lab"))
        .args(["serve", "--tag", "shoot"])
        .current_dir(p.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another iw-lab studio is tagging"), "{err}");
    st.kill();
    // A killed studio's lock dies with it.
    let st = Studio::start(p.path(), &["--tag", "shoot"]);
    st.kill();
}

/// Several clients editing overlapping images: every accepted edit is in the log, each file
/// ends as the last accepted write to it, and stale writes get 409.
#[test]
fn concurrent_edits_are_all_logged_and_none_lost() {
    let p = Project::new();
    let src = p.path().join("shoot");
    three_images(&src);
    let st = Studio::start(p.path(), &["--tag", "shoot"]);
    let addr = st.addr();
    let headers = own(&st);
    let results: Vec<Vec<(usize, u16, Value)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|client| {
                let (addr, headers) = (addr.clone(), headers.clone());
                s.spawn(move || {
                    let mut out = Vec::new();
                    for n in 0..40 {
                        let img = (client + n) % 3;
                        let (_, cur) = raw(
                            &addr,
                            &format!("GET /api/tag/items/{img} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
                        );
                        let cur: Value = serde_json::from_str(&cur).unwrap();
                        let body = json!({"tags": [format!("c{client} n{n}")], "version": cur["version"]}).to_string();
                        let (code, text) = raw(
                            &addr,
                            &format!(
                                "PUT /api/tag/items/{img} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
                                body.len()
                            ),
                        );
                        out.push((img, code, serde_json::from_str(&text).unwrap_or(Value::Null)));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<&(usize, u16, Value)> = results.iter().flatten().collect();
    let accepted = all.iter().filter(|r| r.1 == 200).count();
    let stale = all.iter().filter(|r| r.1 == 409).count();
    assert_eq!(accepted + stale, all.len(), "only 200 or 409");
    assert!(accepted > 0);
    let log: Vec<Value> = read(&src.join("out/iw-lab-edits.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        log.len(),
        accepted,
        "every accepted edit is logged, nothing else"
    );
    for img in 0..3 {
        let name = format!("img_{:04}.txt", img + 1);
        let last = log.iter().rev().find(|e| e["file"] == name.as_str());
        let on_disk = read(&src.join("out").join(&name));
        match last {
            Some(e) => assert_eq!(on_disk, e["new"][0].as_str().unwrap()),
            None => assert_eq!(on_disk, ""),
        }
        // The log chains: each edit was made on the version the previous one wrote.
        let chain: Vec<&Value> = log.iter().filter(|e| e["file"] == name.as_str()).collect();
        for w in chain.windows(2) {
            assert_eq!(w[0]["new_version"], w[1]["old_version"]);
        }
    }
    st.kill();
}

#[test]
fn in_a_project_the_studio_offers_its_runs_and_datasets() {
    let (p, id) = review_project();
    let st = Studio::start(p.path(), &[]);
    let info: Value = serde_json::from_str(&get(&st, "/api/info", "").1).unwrap();
    assert_eq!(info["mode"], "pick");
    let list: Value = serde_json::from_str(&get(&st, "/api/pick", "").1).unwrap();
    assert_eq!(list["runs"][0]["id"], id.as_str());
    assert_eq!(list["datasets"][0]["name"], "d");
    let (code, v) = send(&st, "POST", "/api/pick", &own(&st), &json!({"run": id}));
    assert_eq!((code, &v["mode"]), (200, &json!("review")), "{v}");
    let page: Value = serde_json::from_str(&get(&st, "/api/grid/page", "").1).unwrap();
    assert_eq!(page["total"], 3);
    let (code, v) = send(&st, "POST", "/api/pick", &own(&st), &json!({}));
    assert_eq!((code, &v["mode"]), (200, &json!("pick")));
    let (code, v) = send(
        &st,
        "POST",
        "/api/pick",
        &own(&st),
        &json!({"dataset": "d"}),
    );
    assert_eq!((code, &v["mode"]), (200, &json!("browse")), "{v}");
    let item: Value = serde_json::from_str(&get(&st, "/api/browse/items/0", "").1).unwrap();
    assert_eq!(item["tags"], json!(["cat", "tree"]));
    let (code, _) = send(&st, "POST", "/api/pick", &own(&st), &json!({"run": "nope"}));
    assert_eq!(code, 400);
    let (code, _) = send(&st, "POST", "/api/pick", "", &json!({"run": id}));
    assert_eq!(code, 401);
    st.kill();
    // A folder or run named on the command line has no picker.
    let st = Studio::start(p.path(), &["--run", "latest"]);
    assert_eq!(get(&st, "/api/pick", "").0, 404);
    st.kill();
}

#[test]
fn review_groups_by_a_tag_category_from_the_models_labels() {
    let (p, _) = review_project();
    p.wd_model("wd", "");
    p.write(
        "experiments/two.yaml",
        "dataset: d\nvariants:\n  - model: side\n    thresholds: [0.5]\n  - model: wd\n    thresholds: [0.3]\n",
    );
    p.json(&["run", "two", "--json", "--quiet"], 0);
    let st = Studio::start(p.path(), &["--run", "latest"]);
    let facets: Value = serde_json::from_str(&get(&st, "/api/grid/facets", "").1).unwrap();
    let cats: Vec<&str> = facets["category"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert!(
        cats.contains(&"rating") && cats.contains(&"general"),
        "{facets}"
    );
    // Every image has a stored rating: grouped by rating, each image's group is one of the
    // model's four ratings.
    let page: Value =
        serde_json::from_str(&get(&st, "/api/grid/page?group=category:rating&limit=10", "").1)
            .unwrap();
    let ratings = ["general", "sensitive", "questionable", "explicit"];
    for it in page["items"].as_array().unwrap() {
        let g = it["group"].as_str().unwrap_or_else(|| panic!("{page}"));
        assert!(ratings.contains(&g), "{g}");
    }
    let (code, _) = get(&st, "/api/grid/page?group=category:bogus", "");
    assert_eq!(code, 400);
    // The two variants disagree somewhere, and that is a filter.
    let dis: Value =
        serde_json::from_str(&get(&st, "/api/grid/page?flags=disagree", "").1).unwrap();
    assert!(dis["total"].as_u64().unwrap() > 0, "{dis}");
    st.kill();
}

#[test]
fn only_the_served_images_come_out_and_bad_starts_are_refused() {
    let p = Project::new();
    let dir = p.path().join("pics");
    three_images(&dir);
    std::fs::write(dir.join(".env"), "SECRET=1").unwrap();
    std::fs::write(dir.join("notes.md"), "private").unwrap();
    std::fs::write(dir.join("a.txt"), "cat").unwrap();
    let st = Studio::start(p.path(), &["pics"]);
    assert_eq!(get(&st, "/files/0/a.png", "").0, 200);
    for other in [
        "/files/0/.env",
        "/files/0/notes.md",
        "/files/0/a.txt",
        "/thumbs/0/notes.md",
    ] {
        let (code, body) = get(&st, other, "");
        assert_eq!(code, 404, "{other}: {body}");
        assert!(
            !body.contains("SECRET") && !body.contains("private"),
            "{body}"
        );
    }
    // Every bad parameter is a JSON 400.
    for bad in [
        "/api/browse/items/abc",
        "/api/browse/items/99999999999999999999999",
        "/thumbs/0/a.png?size=abc",
    ] {
        let (code, body) = get(&st, bad, "");
        assert_eq!(code, 400, "{bad}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{bad}: {body}"));
        assert!(v["error"].is_string(), "{v}");
    }
    // An unknown query parameter (a cache-buster) is ignored.
    assert_eq!(get(&st, "/api/grid/page?_=123", "").0, 200);
    st.kill();
    let refused = |args: &[&str], says: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_iw-lab"))
            .arg("serve")
            .args(args)
            .current_dir(p.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    refused(&["pics", "--token", ""], "at least 16");
    refused(&["pics", "--token", "a+b&c#d e0123456789"], "only letters");
    refused(&["--tag", "pics", "--out", "pics"], "folder of their own");
    refused(&["--tag", "pics", "--separator", " "], "--separator");
    // A `.txt` left in the output folder by something else is not adopted by a new image.
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/img_0001.txt"), "stale").unwrap();
    let st = Studio::start(p.path(), &["--tag", "pics"]);
    let first: Value = serde_json::from_str(&get(&st, "/api/tag/items/0", "").1).unwrap();
    assert_eq!(first["name"], "img_0002.png");
    assert_eq!(first["tags"], json!([]));
    assert_eq!(read(&dir.join("out/img_0001.txt")), "stale");
    st.kill();
}

#[test]
fn renames_never_chain_or_cycle_aliases() {
    let (p, _) = review_project();
    let st = Studio::start(p.path(), &["--run", "latest"]);
    let rename = |from: &str, to: &str| {
        send(
            &st,
            "POST",
            "/api/review/rename",
            &own(&st),
            &json!({"from": from, "to": to, "confirm": true}),
        )
    };
    assert_eq!(rename("tree", "plant").0, 200);
    assert_eq!(rename("plant", "shrub").0, 200);
    let (code, v) = rename("shrub", "tree");
    assert_eq!(code, 400, "{v}");
    let table: std::collections::BTreeMap<String, String> =
        serde_yaml::from_str(&read(&p.path().join("datasets/d.aliases.yaml"))).unwrap();
    assert_eq!(table["tree"], "shrub", "{table:?}");
    assert_eq!(table["plant"], "shrub", "{table:?}");
    assert_eq!(read(&p.path().join("data/a.txt")), "cat, shrub");
    st.kill();
}

#[test]
fn a_ground_truth_edit_is_undone_from_the_edit_log() {
    let (p, _) = review_project();
    let st = Studio::start(p.path(), &["--run", "latest"]);
    let item: Value = serde_json::from_str(&get(&st, "/api/review/items/0", "").1).unwrap();
    let (code, v) = send(
        &st,
        "POST",
        "/api/review/items/0/truth",
        &own(&st),
        &json!({"remove": "tree", "version": item["truth_file"]["version"]}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(read(&p.path().join("data/a.txt")), "cat");
    let (code, v) = send(
        &st,
        "POST",
        "/api/review/items/0/undo",
        &own(&st),
        &json!({}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(read(&p.path().join("data/a.txt")), "cat, tree");
    // Edited elsewhere since: the undo is refused, the file kept.
    let (_, v) = send(
        &st,
        "POST",
        "/api/review/items/0/truth",
        &own(&st),
        &json!({"add": "sky", "version": v["version"]}),
    );
    std::fs::write(p.path().join("data/a.txt"), "by hand").unwrap();
    let (code, _) = send(
        &st,
        "POST",
        "/api/review/items/0/undo",
        &own(&st),
        &json!({}),
    );
    assert_eq!(code, 409, "{v}");
    assert_eq!(read(&p.path().join("data/a.txt")), "by hand");
    // Nothing to undo on an image never edited.
    let (code, _) = send(
        &st,
        "POST",
        "/api/review/items/1/undo",
        &own(&st),
        &json!({}),
    );
    assert_eq!(code, 400);
    st.kill();
}

#[test]
fn a_promoted_config_suggests_its_final_tags_shaded_by_its_model() {
    let (p, _) = review_project();
    p.wd_model("wd", "");
    p.write(
        "experiments/w.yaml",
        "dataset: d\nvariants:\n  - model: wd\n    thresholds: [0.3]\n",
    );
    p.json(&["run", "w", "--json", "--quiet"], 0);
    p.expect(&["promote", "latest", "wd"], 0);
    let src = p.path().join("shoot");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(p.path().join("data/a.png"), src.join("x.png")).unwrap();
    let st = Studio::start(p.path(), &["--tag", "shoot", "--suggest", "production"]);
    let v: Value = serde_json::from_str(&get(&st, "/api/tag/items/0/suggest", "").1).unwrap();
    let tags = v["tags"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(!tags.is_empty(), "{v}");
    for t in tags {
        let s = t["score"].as_f64().unwrap();
        assert!(
            (0.3..=1.0).contains(&s),
            "{t}: at or above the promoted threshold"
        );
        assert!(
            !t["tag"].as_str().unwrap().contains(','),
            "{t}: could not be saved"
        );
    }
    assert!(
        tags.iter().any(|t| t["score"].as_f64().unwrap() < 1.0),
        "{v}"
    );
    st.kill();
}

/// Polls `path` until it stops answering 202 (a pass over every image is being computed).
fn settled(st: &Studio, path: &str) -> (u16, Value) {
    let start = Instant::now();
    loop {
        let (code, body) = get(st, path, &own(st));
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if code != 202 {
            return (code, v);
        }
        assert_eq!(v["state"], "computing", "{v}");
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{path} still computing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Listing ids by path.
fn ids(st: &Studio) -> std::collections::HashMap<String, i64> {
    let page: Value = serde_json::from_str(&get(st, "/api/grid/page?limit=100", "").1).unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap().to_string(),
                i["id"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn group_paths(v: &Value) -> Vec<Vec<String>> {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let mut f: Vec<String> = g["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["path"].as_str().unwrap().to_string())
                .collect();
            f.sort();
            f
        })
        .collect()
}

/// A folder with a photo, a byte copy, a half-size copy, another photo, and a broken file.
fn near_copies(dir: &Path) {
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let photo = images.join("camera_alpha.png");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::copy(&photo, dir.join("a.png")).unwrap();
    std::fs::copy(&photo, dir.join("sub/a copy \u{1F600}.png")).unwrap();
    let img = image::open(&photo).unwrap();
    img.resize_exact(
        img.width() / 2,
        img.height() / 2,
        image::imageops::FilterType::Lanczos3,
    )
    .save(dir.join("a-small.png"))
    .unwrap();
    std::fs::copy(images.join("grass_gray.png"), dir.join("b.png")).unwrap();
    std::fs::write(dir.join("broken.png"), b"not really a png").unwrap();
    // A name that is not UTF-8 (spelled with an escape in the listing).
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"sub/odd \xff name.png");
    std::fs::copy(&photo, dir.join(odd)).unwrap();
}

#[test]
fn similar_images_and_duplicate_groups_with_a_keeper_and_dismissals() {
    let p = Project::new();
    let dir = p.path().join("pics");
    near_copies(&dir);
    let st = Studio::start(p.path(), &["pics"]);
    let id = ids(&st);
    let odd = id
        .keys()
        .find(|k| k.starts_with("sub/odd"))
        .unwrap()
        .clone();
    let copy = "sub/a copy \u{1F600}.png";
    // Reads need no token on this machine, but starting a pass over every image does.
    assert_eq!(get(&st, "/api/dupes", "").0, 401);
    let (code, d) = settled(&st, "/api/dupes");
    assert_eq!(code, 200, "{d}");
    let mut want = vec![
        "a-small.png".to_string(),
        "a.png".into(),
        odd.clone(),
        copy.into(),
    ];
    want.sort();
    assert_eq!(group_paths(&d), vec![want], "{d}");
    let g = &d["groups"][0];
    assert_eq!(g["exact"], false);
    assert_eq!(g["size"], 4);
    // The keeper has the most pixels, then the shortest path; it comes first.
    assert_eq!(g["keeper"], id["a.png"], "{g}");
    assert_eq!(g["files"][0]["id"], id["a.png"], "{g}");
    assert_eq!(d["unreadable"][0]["file"], "broken.png", "{d}");
    assert_eq!(d["unreadable_total"], 1, "{d}");
    // Similar to a.png: its byte copies at 0 bits, then the half-size copy, then the other photo.
    let (code, s) = settled(&st, &format!("/api/similar/{}?k=4", id["a.png"]));
    assert_eq!(code, 200, "{s}");
    let near: Vec<&str> = s["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    let mut copies = near[..2].to_vec();
    copies.sort();
    let mut want_copies = vec![odd.as_str(), copy];
    want_copies.sort();
    assert_eq!(copies, want_copies, "{s}");
    assert_eq!(&near[2..], ["a-small.png", "b.png"], "{s}");
    assert_eq!(s["items"][0]["distance"], 0);
    assert_eq!(s["measure"]["by"], "phash");
    // Bad requests: clear errors, never a panic.
    assert_eq!(get(&st, "/api/similar/999", "").0, 404);
    assert_eq!(get(&st, "/api/similar/-1", "").0, 404);
    assert_eq!(get(&st, "/api/similar/0?k=0", "").0, 400);
    assert_eq!(get(&st, "/api/similar/0?k=99999999999999999999", "").0, 400);
    for bad in [
        "max_distance=25",
        "max_distance=4294967295",
        "max_distance=-1",
        "limit=0",
        "limit=501",
    ] {
        let (code, body) = get(&st, &format!("/api/dupes?{bad}"), "");
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let (code, body) = get(&st, &format!("/api/similar/{}", id["broken.png"]), "");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("broken.png"), "{body}");
    // A page showing another listing (or a stale one) cannot dismiss the wrong file.
    let stale = json!({"file": id["a-small.png"], "content": "0".repeat(64), "max_distance": 14});
    let (code, v) = send(&st, "POST", "/api/dupes/not-duplicate", &own(&st), &stale);
    assert_eq!(code, 409, "{v}");
    if let Some(drv) = driver() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let c = browser(&drv).await;
            c.goto(&st.url).await.unwrap();
            until(&c, "document.querySelectorAll('#grid .cell').length === 6").await;
            click(&c, &format!("#grid .cell[data-id='{}']", id["a.png"])).await;
            until(&c, "document.querySelectorAll('#similar .cell').length === 4").await;
            let first = until(&c, "document.querySelector('#similar .cell .path').textContent").await;
            assert!(first == json!(copy) || first == json!(odd), "{first}");
            screenshot(&c, "studio-similar.png").await;
            click(&c, "#detailpanel .close").await;
            click(&c, "#dupes-open").await;
            until(&c, "document.querySelectorAll('.dupe-group .cell.keeper').length === 1").await;
            screenshot(&c, "studio-duplicates.png").await;
            // "not a duplicate" on the half-size copy (the only file with that button).
            click(&c, ".dupe-group .notdupe").await;
            until(&c, "document.querySelectorAll('.dupe-group').length === 1 && document.querySelectorAll('.dupe-group .notdupe').length === 0").await;
            c.close().await.unwrap();
        });
    } else {
        let body = json!({"file": id["a-small.png"], "content": d["groups"][0]["files"].as_array().unwrap().iter().find(|f| f["path"] == "a-small.png").unwrap()["content"], "max_distance": 14});
        let (code, v) = send(&st, "POST", "/api/dupes/not-duplicate", &own(&st), &body);
        assert_eq!(code, 200, "{v}");
        assert_eq!(
            v["remembered"], 1,
            "one pair: the three byte copies are one content"
        );
    }
    // Left: the byte copies, which no dismissal separates.
    let (_, after) = settled(&st, "/api/dupes");
    let mut want = vec!["a.png".to_string(), odd.clone(), copy.into()];
    want.sort();
    assert_eq!(group_paths(&after), vec![want], "{after}");
    assert_eq!(after["groups"][0]["exact"], true, "{after}");
    assert_eq!(after["dismissed"], 1, "{after}");
    // A byte copy has nothing to leave; a foreign page cannot write.
    let same = json!({"file": id[copy], "content": after["groups"][0]["files"][1]["content"], "max_distance": 14});
    let (code, v) = send(&st, "POST", "/api/dupes/not-duplicate", &own(&st), &same);
    assert_eq!(code, 400, "{v}");
    let foreign = format!(
        "X-IW-Token: {}\r\nOrigin: http://evil.example\r\n",
        st.token
    );
    let (code, _) = send(&st, "POST", "/api/dupes/not-duplicate", &foreign, &same);
    assert_eq!(code, 403);
    st.kill();
    // The CLI reads the same list: the half-size copy stays apart there too.
    let cli = p.json(&["dupes", "pics", "--json"], 1);
    assert_eq!(cli["groups"].as_array().unwrap().len(), 1, "{cli}");
    assert_eq!(cli["groups"][0]["exact"], true, "{cli}");
}

#[test]
fn similar_images_by_a_clip_model_agree_with_the_similar_command() {
    let p = Project::new();
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    p.write(
        "models/clip-tiny.yaml",
        &format!(
            "kind: clip\nsource: {}\n",
            models.join("clip-tiny").display()
        ),
    );
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    for f in [
        "jpeg_420_baseline.jpg",
        "camera_alpha.png",
        "grass_gray.png",
        "brick_tiny.png",
    ] {
        p.copy(&images.join(f), &format!("photos/{f}"));
    }
    p.copy(
        &images.join("jpeg_420_baseline.jpg"),
        "photos/sub/copy \u{1F600}.jpg",
    );
    // A model that gives no embeddings is refused before anything is served.
    p.write("models/hashes.yaml", "kind: phash\n");
    let out = p.run(&["serve", "photos", "--similar", "hashes"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no image embeddings"),
        "{out:?}"
    );
    let st = Studio::start(p.path(), &["photos", "--similar", "clip-tiny"]);
    let id = ids(&st);
    let (code, s) = settled(
        &st,
        &format!("/api/similar/{}?k=4", id["jpeg_420_baseline.jpg"]),
    );
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["measure"]["by"], "clip-tiny");
    st.kill();
    let cli = p.json(
        &[
            "similar",
            "photos/jpeg_420_baseline.jpg",
            "--model",
            "clip-tiny",
            "--in",
            "photos",
            "--json",
        ],
        0,
    );
    let studio = s["items"].as_array().unwrap();
    let results = cli["results"].as_array().unwrap();
    assert_eq!(studio.len(), results.len(), "{s}\n{cli}");
    for (a, b) in studio.iter().zip(results) {
        assert_eq!(a["path"], b["file"], "{s}\n{cli}");
        let (x, y) = (
            a["distance"].as_f64().unwrap(),
            b["distance"].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn reviewing_a_run_shows_its_images_duplicates_and_the_run_is_not_disturbed() {
    let (p, run) = review_project();
    // b.png and c.png come from one photo (the brick, with and without transparency).
    let st = Studio::start(p.path(), &["--run", &run]);
    let id = ids(&st);
    let (code, d) = settled(&st, "/api/dupes");
    assert_eq!(code, 200, "{d}");
    let (code, s) = settled(&st, &format!("/api/similar/{}?k=2", id["a.png"]));
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["items"].as_array().unwrap().len(), 2, "{s}");
    st.kill();
    // The hashes went into a run of their own; the reviewed run is still the latest run of
    // its experiment and `latest` skips hash runs.
    let listed = String::from_utf8_lossy(&p.run(&["runs", "list"]).stdout).to_string();
    assert!(listed.contains("dupes-phash"), "{listed}");
    let again = p.json(&["metrics", "latest", "--json"], 0);
    assert_eq!(again["run_id"], run, "{again}");
}
