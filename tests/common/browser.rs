//! A real headless Chromium (Debian's `/usr/bin/chromium`) driven over the DevTools protocol,
//! for the dashboard tests: navigate, click with real mouse events, type, evaluate, screenshot.
#![allow(dead_code)]

use super::deps::find_installed;
use super::http1;
use super::process::{temp_dir_in, Process};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Browser {
    /// Chromium, with its profile and log; killed when the browser is dropped.
    _process: Process,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    /// Page load events seen so far.
    loads: Arc<AtomicU64>,
    /// Console errors and uncaught exceptions of the page.
    errors: Arc<Mutex<Vec<String>>>,
}

impl Browser {
    /// Start Chromium with a fresh profile and attach to its page. A missing Chromium fails
    /// the test: it is installed by `bash .ci/deps test`.
    pub async fn launch() -> Browser {
        let (process, port) = start_chromium();
        let ws_url = page_target(port);
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("connect to the page's DevTools socket");
        let (mut sink, mut stream) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let loads = Arc::new(AtomicU64::new(0));
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let (p, l, e) = (pending.clone(), loads.clone(), errors.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                        let _ = tx.send(v);
                    }
                    continue;
                }
                on_page_event(&v, &l, &e);
            }
        });
        let b = Browser {
            _process: process,
            out,
            pending,
            next_id: AtomicU64::new(1),
            loads,
            errors,
        };
        b.call("Page.enable", json!({})).await;
        b.call("Runtime.enable", json!({})).await;
        b.call("Log.enable", json!({})).await;
        b
    }

    /// Send a DevTools command and return its `result`; an error answer fails the test.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.out
            .send(Message::Text(msg.into()))
            .expect("DevTools socket closed");
        let answer = tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("DevTools {method} did not answer within 20 s"))
            .unwrap_or_else(|_| panic!("DevTools socket closed during {method}"));
        if let Some(err) = answer.get("error") {
            panic!("DevTools {method} failed: {err}");
        }
        answer["result"].clone()
    }

    /// Emulate a window of this size (a phone when narrower than 600 px).
    pub async fn set_viewport(&self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
    }

    /// Navigate and wait for the page's load event.
    pub async fn goto(&self, url: &str) {
        let before = self.loads.load(Ordering::SeqCst);
        let r = self.call("Page.navigate", json!({ "url": url })).await;
        if let Some(e) = r["errorText"].as_str() {
            panic!("navigation to {url} failed: {e}");
        }
        let start = Instant::now();
        while self.loads.load(Ordering::SeqCst) == before {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{url} did not finish loading within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Evaluate `js` in the page (awaiting a promise) and return its value; a thrown
    /// exception fails the test with its text.
    pub async fn eval(&self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(d) = r.get("exceptionDetails") {
            panic!(
                "JS {js:?} threw: {}",
                d["exception"]["description"]
                    .as_str()
                    .unwrap_or(&d.to_string())
            );
        }
        r["result"]["value"].clone()
    }

    /// Poll `condition` every 50 ms until it is truthy; returns its value.
    pub async fn wait_for(&self, condition: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(condition).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {condition:?} (last value {v}); page errors: {:?}",
                    self.console_errors()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A real mouse click in the middle of the first element matching `selector`.
    pub async fn click(&self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let rect = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        let (Some(x), Some(y)) = (rect[0].as_f64(), rect[1].as_f64()) else {
            panic!("nothing matches {selector:?} to click");
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Replace the value of the input matching `selector` by typing `text`.
    pub async fn type_text(&self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let found = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return false; \
                 e.focus(); e.select ? e.select() : null; e.value = ''; return true; }})()"
            ))
            .await;
        assert_eq!(
            found,
            json!(true),
            "nothing matches {selector:?} to type into"
        );
        self.call("Input.insertText", json!({ "text": text })).await;
        self.eval(&format!(
            "document.querySelector({sel}).dispatchEvent(new Event('change', {{bubbles: true}}))"
        ))
        .await;
    }

    /// A PNG of the whole page, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// Console errors and uncaught exceptions so far.
    pub fn console_errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

/// Chromium, headless on a fresh profile, and the DevTools port it opened.
fn start_chromium() -> (Process, u16) {
    let bin = find_installed("Chromium", "chromium", &[CHROMIUM]);
    let mut process = Process::new("chromium", temp_dir_in(&std::env::temp_dir(), "chromium"));
    let profile = process.dir().join("profile");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        // This machine has no outside network: no background traffic at all.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--remote-debugging-port=0",
        "--window-size=1280,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("about:blank");
    process.spawn(cmd);
    let port_file = profile.join("DevToolsActivePort");
    let port: u16 = process.wait_ready(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&port_file).ok()?;
        text.lines().next()?.trim().parse().ok()
    });
    (process, port)
}

/// Count the page's load events, and keep its console errors and uncaught exceptions.
fn on_page_event(v: &Value, loads: &AtomicU64, errors: &Mutex<Vec<String>>) {
    match v["method"].as_str() {
        Some("Page.loadEventFired") => {
            loads.fetch_add(1, Ordering::SeqCst);
        }
        Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
            let args: Vec<String> = v["params"]["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a["value"].as_str().map_or(a.to_string(), str::to_string))
                .collect();
            errors
                .lock()
                .unwrap()
                .push(format!("console.error: {}", args.join(" ")));
        }
        Some("Runtime.exceptionThrown") => {
            let d = &v["params"]["exceptionDetails"];
            let text = d["exception"]["description"]
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("exception");
            errors.lock().unwrap().push(format!("uncaught: {text}"));
        }
        Some("Log.entryAdded") if v["params"]["entry"]["level"] == "error" => {
            let entry = &v["params"]["entry"];
            errors.lock().unwrap().push(format!(
                "log: {} {}",
                entry["text"].as_str().unwrap_or(""),
                entry["url"].as_str().unwrap_or("")
            ));
        }
        _ => {}
    }
}

/// The DevTools WebSocket URL of the browser's first page, from `/json/list`.
fn page_target(port: u16) -> String {
    let start = Instant::now();
    loop {
        let answer = http1::get(([127, 0, 0, 1], port).into(), "/json/list");
        let body = answer.expect("the DevTools endpoint answers").text();
        let targets: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        if let Some(url) = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        {
            return url.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromium has no page target: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
