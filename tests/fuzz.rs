//! Fuzzing of the parsers that take HTTP input, on stable Rust: the browser and server event
//! body (`ingest::native`), Segment requests (`ingest::segment`), CSV imports
//! (`ingest::import`) and report parameters (`reports`). The HTML scanner has its own target
//! (`tests/fuzz_html.rs`).
//!
//! Each test generates inputs from a seeded PRNG for `TOLLGATE_FUZZ_SECS` seconds (default 3,
//! which CI runs; 600 before a release): structure-aware ones (JSON with the fields the parser
//! knows, nasty strings, huge numbers, deep nesting, duplicate keys, NDJSON with blank lines,
//! multibyte characters anywhere), the same mutated byte by byte, and raw random bytes. Every
//! case runs under `catch_unwind`; a panic or a broken invariant prints the input (escaped)
//! and its seed, and the test fails.
//!
//! Replay one case with `TOLLGATE_FUZZ_CASE=<seed>`; start a run from another base seed with
//! `TOLLGATE_FUZZ_SEED=<n>` (default: the clock).
//!
//! ```text
//! TOLLGATE_FUZZ_SECS=600 cargo test --release --test fuzz report_parameters -- --nocapture
//! ```

use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};
use tollgate::event::{now_us, Event, PrivacyMode, Source};
use tollgate::ingest::{import, native, segment};
use tollgate::reports::{self, filter, ReportError, SiteTz};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// The loop

/// SplitMix64: small, seedable, and enough for input generation.
struct Rng {
    state: u64,
    /// This case is a clean one: well-formed, with the fields a parser expects and mostly
    /// valid values, so that it gets past the first checks to the code behind them. The
    /// other half of the cases are anything.
    clean: bool,
}

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut r = Rng {
            state: seed,
            clean: false,
        };
        r.clean = r.one_in(2);
        r
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }

    /// True with probability `1/n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

/// Run `case` on generated inputs until the time budget is spent. `case` returns a
/// description of the input (printed on failure) and the outcome of its checks: `Err` for a
/// broken invariant. A panic is a failure too. Returns the number of cases.
fn fuzz<F>(target: &str, mut case: F) -> u64
where
    F: FnMut(&mut Rng, &mut String) -> Result<(), String>,
{
    let secs = env_u64("TOLLGATE_FUZZ_SECS").unwrap_or(3);
    let base = env_u64("TOLLGATE_FUZZ_SEED").unwrap_or_else(|| now_us() as u64);
    let only = env_u64("TOLLGATE_FUZZ_CASE");
    install_hook();
    // Straight to stderr, past the test harness's capture: if a case aborts the process (a
    // stack overflow, say), this seed replays the run.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz {target}: base seed {base} (TOLLGATE_FUZZ_SEED={base}), {secs} s"
    );
    let started = Instant::now();
    let mut seeds = Rng::new(base);
    let mut cases = 0u64;
    let mut failures = Vec::new();
    loop {
        let seed = match only {
            Some(s) if cases == 0 => s,
            Some(_) => break,
            None if started.elapsed() >= Duration::from_secs(secs) => break,
            None => seeds.next(),
        };
        cases += 1;
        let mut input = String::new();
        IN_CASE.with(|c| c.set(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| case(&mut Rng::new(seed), &mut input)));
        IN_CASE.with(|c| c.set(false));
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(broken)) => format!("invariant broken: {broken}"),
            Err(_) => format!(
                "PANIC: {}",
                PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default()
            ),
        };
        failures.push(format!(
            "case seed {seed} (replay: TOLLGATE_FUZZ_CASE={seed})\n  {problem}\n  input: {input}"
        ));
        if failures.len() >= 5 {
            break;
        }
    }
    println!(
        "fuzz {target}: {cases} cases in {:.1} s (base seed {base}), {} failing",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "fuzz {target} found {} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    cases
}

thread_local! {
    /// Whether this thread is running a case: its panics are recorded, not printed.
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic hook, installed once for the tests running in parallel, that records a case's
/// panic (it is reported with its input) and leaves the others to the default hook.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(Cell::get) {
                PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

/// Bytes as printable ASCII (`\n`, `\x1b`, `\xe2\x82\xac`), with runs of more than 16 equal
/// bytes as `⟨x × 40000⟩` and the whole cut at 4000 characters: readable, while the seed
/// replays the exact input.
fn escaped(b: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..].iter().take_while(|&&x| x == b[i]).count();
        if run > 16 {
            out.push_str(&format!("⟨{} × {run}⟩", [b[i]].escape_ascii()));
        } else {
            out.push_str(&b[i..i + run].escape_ascii().to_string());
        }
        i += run;
    }
    if let Some((cut, _)) = out.char_indices().nth(4000) {
        let more = out[cut..].chars().count();
        out.truncate(cut);
        out.push_str(&format!("… ({more} characters more)"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Strings that have broken parsers before.
const NASTY: &[&str] = &[
    "",
    " ",
    "  \t ",
    "\n",
    "\r\n",
    "\0",
    "\u{1b}[31mred",
    "\u{1b}]8;;http://x\u{7}link\u{1b}]8;;\u{7}",
    "\u{7f}",
    "\u{85}",
    "\u{9b}2J",
    "\u{202e}txt.exe",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "€",
    "1€",
    "€1",
    "😀",
    "e\u{301}",
    "'",
    "\"",
    "\\",
    "'; DROP TABLE events; --",
    "=HYPERLINK(\"http://x\",\"y\")",
    "+1+cmd|' /C calc'!A0",
    "@SUM(A1)",
    "%",
    "%00",
    "%ZZ",
    "%e2%82",
    "&",
    "=",
    "a=b&c",
    "(none)",
    "null",
    "true",
    "0",
    "-0",
    "-1",
    "1e309",
    "NaN",
    "inf",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999",
    "0x10",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "*",
    "?",
    "[",
    "{",
    "$.\"a\"",
    "a.b",
    "a:b",
    "$",
];

/// Characters that are more than one byte, or special, to put anywhere.
const CHARS: &[char] = &[
    '€', 'é', '😀', '\u{0}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{202e}', '\u{2028}',
    '\u{feff}', '"', '\'', '\\', '\n', '\r', '\t', ' ', ',', ';', '=', '&', '%', '+', '-', '.',
    ':', '/', '?', '#', '[', ']', '{', '}', '*',
];

/// A string: a nasty one, a mutated valid one, random characters, or a long one.
fn text(rng: &mut Rng, valid: &[&str]) -> String {
    if rng.clean && !valid.is_empty() && !rng.one_in(8) {
        return rng.pick(valid).to_string();
    }
    let mut s = match rng.below(10) {
        0..=2 => rng.pick(NASTY).to_string(),
        3..=6 if !valid.is_empty() => rng.pick(valid).to_string(),
        7 => (0..rng.below(24))
            .map(|_| match rng.below(3) {
                0 => CHARS[rng.below(CHARS.len())],
                1 => char::from_u32(rng.below(0x3000) as u32).unwrap_or('x'),
                _ => (b'a' + rng.below(26) as u8) as char,
            })
            .collect(),
        8 if rng.one_in(4) => "x".repeat(rng.below(40_000)),
        _ => format!("v{}", rng.below(1000)),
    };
    // A multibyte or special character at any position.
    if rng.one_in(4) {
        let at: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
        let i = at[rng.below(at.len())];
        s.insert(i, CHARS[rng.below(CHARS.len())]);
    }
    s
}

/// A JSON number, often one that does not fit.
fn number(rng: &mut Rng) -> String {
    const N: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "0.5",
        "1E2",
        "1e308",
        "1e309",
        "-1e309",
        "1e-400",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1790000000000.5",
        "946684799999",
        "946684800000",
    ];
    match rng.below(if rng.clean { 8 } else { 3 }) {
        0 => rng.pick(N).to_string(),
        1 => (rng.next() as i64).to_string(),
        // Epoch milliseconds around now.
        _ => (now_us() / 1000 - rng.below(40 * 365 * 86_400_000) as i64
            + rng.below(3 * 86_400_000) as i64)
            .to_string(),
    }
}

/// A JSON string literal: usually valid, sometimes with escapes serde refuses.
fn json_str(rng: &mut Rng, s: &str) -> String {
    if rng.clean {
        return serde_json::to_string(s).unwrap();
    }
    match rng.below(40) {
        0 => format!("\"{s}"), // unterminated, raw
        1 => "\"\\ud800\"".into(),
        2 => "\"\\x41\"".into(),
        3 => format!("\"{s}\u{1}\""),
        _ => serde_json::to_string(s).unwrap(),
    }
}

/// A UUID, or something like one.
fn uuid_text(rng: &mut Rng) -> String {
    let u = Uuid::from_u128((u128::from(rng.next()) << 64) | u128::from(rng.next()));
    match rng.below(if rng.clean { 16 } else { 8 }) {
        0 => u.to_string().to_uppercase(),
        1 => format!("{{{u}}}"),
        2 => format!("urn:uuid:{u}"),
        3 => u.simple().to_string(),
        4 => format!(" {u} "),
        5 => text(rng, &[]),
        _ => u.to_string(),
    }
}

/// An RFC 3339 timestamp, valid or nearly.
fn rfc3339(rng: &mut Rng) -> String {
    const T: &[&str] = &[
        "2026-11-28T12:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-06-30T23:59:60Z",
        "1999-12-31T23:59:59Z",
        "2000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "0000-01-01T00:00:00Z",
        "+99999-01-01T00:00:00Z",
        "2026-11-28T12:00:00+99:00",
        "2026-11-28T12:00:00-23:59",
        "2026-11-28 12:00:00Z",
        "2026-11-28T12:00:00",
        "2026-11-28",
        "2026-11-28T12:00:00.1234567890123Z",
    ];
    if !rng.clean && rng.one_in(2) {
        return rng.pick(T).to_string();
    }
    let ms = number(rng).parse::<i64>().unwrap_or(0);
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| rng.pick(T).to_string())
}

/// A JSON value of any kind, at most `depth` levels deep (deep ones past serde's limit too).
fn any_json(rng: &mut Rng, depth: usize, out: &mut String) {
    match rng.below(if depth == 0 { 4 } else { 7 }) {
        0 => out.push_str(if rng.one_in(2) { "null" } else { "true" }),
        1 => out.push_str(&number(rng)),
        2 | 3 => {
            let s = text(rng, &[]);
            out.push_str(&json_str(rng, &s))
        }
        4 => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                any_json(rng, depth - 1, out);
            }
            out.push(']');
        }
        5 => {
            out.push('{');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                let k = text(rng, &["a", "b", "name"]);
                out.push_str(&json_str(rng, &k));
                out.push(':');
                any_json(rng, depth - 1, out);
            }
            out.push('}');
        }
        _ if rng.one_in(8) => {
            // Past serde_json's recursion limit (128), or nearly.
            let n = 100 + rng.below(100);
            out.push_str(&"[".repeat(n));
            out.push_str(&"]".repeat(n));
        }
        _ => out.push_str("{}"),
    }
}

/// A JSON object whose keys come from `fields` (with duplicates and strangers), each value
/// from `value` or anything. A clean one has the first `required` fields and some of the
/// others, once each, with values from `value`.
fn object(
    rng: &mut Rng,
    fields: &[&str],
    required: usize,
    value: &mut dyn FnMut(&mut Rng, &str, &mut String),
    out: &mut String,
) {
    out.push('{');
    if rng.clean {
        let mut first = true;
        for (i, key) in fields.iter().enumerate() {
            if i >= required && rng.one_in(2) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&json_str(rng, key));
            out.push(':');
            value(rng, key, out);
        }
        out.push('}');
        return;
    }
    let n = rng.below(fields.len() + 3);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let key = if rng.one_in(12) {
            text(rng, &[])
        } else {
            rng.pick(fields).to_string()
        };
        out.push_str(&json_str(rng, &key));
        out.push(':');
        if rng.one_in(10) {
            any_json(rng, 3, out);
        } else {
            value(rng, &key, out);
        }
    }
    out.push('}');
}

/// Byte-level mutations of a generated input.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(7) {
            0 if len > 0 => b[rng.below(len)] ^= 1 << rng.below(8),
            1 => {
                const INS: &[u8] = b"\xff\xc3\x00\n\r{}[]\",:\\ \xe2\x82\xac";
                b.insert(rng.below(len + 1), INS[rng.below(INS.len())]);
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                b.drain(at..end);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                let piece = b[at..end].to_vec();
                let to = rng.below(len + 1);
                b.splice(to..to, piece);
            }
            4 => b.truncate(rng.below(len + 1)),
            5 => {
                let at = rng.below(len + 1);
                b.splice(at..at, "€".bytes());
            }
            _ => {}
        }
    }
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(300)).map(|_| rng.next() as u8).collect()
}

/// Items as a body: one, an array, or NDJSON (blank lines, CRLF, a trailing newline or not),
/// sometimes mutated, sometimes raw bytes instead.
fn body(rng: &mut Rng, item: &mut dyn FnMut(&mut Rng) -> String) -> Vec<u8> {
    if !rng.clean && rng.one_in(12) {
        return random_bytes(rng);
    }
    let n = 1 + rng.below(5);
    let items: Vec<String> = (0..n).map(|_| item(rng)).collect();
    let mut out = match rng.below(3) {
        0 => items[0].clone(),
        1 => format!("[{}]", items.join(if rng.one_in(2) { "," } else { ",\n" })),
        _ => {
            let mut s = String::new();
            for it in &items {
                s.push_str(it);
                s.push_str(rng.pick(&["\n", "\r\n", "\n\n", "\n  \n"]));
            }
            if rng.one_in(2) {
                s.pop();
            }
            s
        }
    };
    if !rng.clean && rng.one_in(6) {
        out.insert_str(0, rng.pick(&[" ", "\u{feff}", "\n", "\t"]));
    }
    let mut b = out.into_bytes();
    if !rng.clean && rng.one_in(3) {
        mutate(rng, &mut b);
    }
    b
}

// ---------------------------------------------------------------------------------------------
// Invariants shared by the ingestion paths

/// One day, in microseconds: how far ahead of now an event may be.
const DAY_US: i64 = 86_400_000_000;
/// 2000-01-01T00:00:00Z.
const Y2000_US: i64 = 946_684_800_000_000;

/// What every accepted event satisfies, whatever its path in.
fn check_event(e: &Event, source: Source, now: i64) -> Result<(), String> {
    if e.name.trim().is_empty() || e.name.chars().any(char::is_control) {
        return Err(format!("accepted an event named {:?}", e.name));
    }
    if e.name.chars().count() > native::MAX_NAME {
        return Err(format!("accepted a name of {} characters", e.name.len()));
    }
    if e.source != Some(source) {
        return Err(format!("source {:?}, expected {source:?}", e.source));
    }
    if !(Y2000_US..=now + DAY_US).contains(&e.ts_us) {
        return Err(format!(
            "accepted ts_us {} outside 2000 .. now + 1 day",
            e.ts_us
        ));
    }
    if let Some(p) = &e.props {
        match serde_json::from_str::<Value>(p) {
            Ok(Value::Object(_)) => {}
            _ => return Err(format!("props are not a JSON object: {p:?}")),
        }
    }
    Ok(())
}

/// Enrichment runs on every accepted event in the writer thread, where a panic would stop
/// the pipeline: run it here too.
fn enricher() -> tollgate::enrich::Enricher {
    let s = tollgate::config::Settings::defaults("http://127.0.0.1:1").unwrap();
    tollgate::enrich::Enricher::new(&s).unwrap()
}

fn reason(r: &str, what: &str) -> Result<(), String> {
    if r.trim().is_empty() {
        Err(format!("{what} without a reason"))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// (a) The browser and server event body

/// The fields of an event: the first 7 are a browser event's, the rest the server's own.
const NATIVE_FIELDS: &[&str] = &[
    "name",
    "ts",
    "event_id",
    "message_id",
    "url",
    "referrer",
    "props",
    "visitor_id",
    "session_id",
    "user_id",
    "user_agent",
    "ip",
];

/// A server event's fields, with what it requires first.
const SERVER_FIELDS: &[&str] = &[
    "name",
    "user_id",
    "ts",
    "event_id",
    "message_id",
    "url",
    "referrer",
    "props",
    "visitor_id",
    "session_id",
    "user_agent",
    "ip",
];

const URLS: &[&str] = &[
    "https://shop.example/p/1?utm_source=fb&utm_medium=social&gclid=x",
    "/path?q=1#frag",
    "http://[::1]:8080/",
    "http://a b/",
    "http://user:pw@host:99999/x",
    "//host/x",
    "?utm_source=%ZZ&utm_source=%e2%82",
    "*",
    "https://xn--nxasmq6b.example/%F0%9F%98%80",
    "https://l.facebook.com/",
    "https://www.google.com/search?q=x",
    "android-app://com.google.android.gm/",
];

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "curl/8.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
];

const IPS: &[&str] = &[
    "203.0.113.1",
    "::1",
    "::ffff:1.2.3.4",
    "fe80::1%eth0",
    "300.1.1.1",
    "[::1]",
    "66.249.66.1",
];

/// A value for one of the native fields: usually of the right kind.
fn native_value(rng: &mut Rng, key: &str, out: &mut String) {
    let s = match key {
        "name" => text(rng, &["purchase", "page_view", "signup", "Order Completed"]),
        "ts" if rng.one_in(2) => return out.push_str(&number(rng)),
        "ts" => rfc3339(rng),
        "event_id" | "visitor_id" | "session_id" => uuid_text(rng),
        "url" | "referrer" => text(rng, URLS),
        "user_agent" => text(rng, UAS),
        "ip" => text(rng, IPS),
        "props" if !rng.one_in(6) => {
            return object(
                rng,
                &["value", "currency", "plan", "=x", "a.b"],
                0,
                &mut |rng, _, out| any_json(rng, 4, out),
                out,
            )
        }
        "user_id" | "message_id" if rng.one_in(20) => "u".repeat(256 + rng.below(2)),
        _ => text(rng, &["u-42", "order-1001"]),
    };
    if rng.one_in(30) {
        return out.push_str(&number(rng));
    }
    out.push_str(&json_str(rng, &s));
}

fn native_item(rng: &mut Rng) -> String {
    let mut s = String::new();
    // Clean items are a browser event's (no identity fields) or a server event's (a user).
    let fields = match (rng.clean, rng.one_in(2)) {
        (false, _) => NATIVE_FIELDS,
        (true, true) => &NATIVE_FIELDS[..7],
        (true, false) => SERVER_FIELDS,
    };
    object(rng, fields, 2, &mut native_value, &mut s);
    s
}

#[test]
fn browser_event_body() {
    let mut enrich = enricher();
    let mut accepted = 0u64;
    fuzz("browser_event_body", |rng, input| {
        let body = body(rng, &mut native_item);
        *input = escaped(&body);
        let now = now_us();
        let visitor = Uuid::from_u128(u128::from(rng.next()));
        let browser = native::Context {
            site: "shop",
            source: Source::Browser,
            browser: Some(native::BrowserRequest {
                visitor_id: (!rng.one_in(4)).then_some(visitor),
                session_id: rng.one_in(2).then(Uuid::now_v7),
                privacy: [
                    PrivacyMode::Identified,
                    PrivacyMode::Cookieless,
                    PrivacyMode::Anonymous,
                ][rng.below(3)],
                user_agent: Some(rng.pick(UAS)),
                ip: Some("203.0.113.7".into()),
                request_id: Some("r-1"),
                beacon: rng.one_in(2),
                max_skew_us: 600_000_000,
            }),
            now_us: now,
        };
        let server = native::Context {
            site: "shop",
            source: Source::Server,
            browser: None,
            now_us: now,
        };
        let items = match native::split_body(&body, 10_000) {
            Ok(items) => items,
            Err(e) => return reason(&e.to_string(), "a refused body"),
        };
        let array = std::str::from_utf8(&body).is_ok_and(|t| t.trim_start().starts_with('['));
        if items.is_empty() && !array {
            return Err("a body that is not an array gave no items".into());
        }
        for (cx, source) in [(&browser, Source::Browser), (&server, Source::Server)] {
            for item in &items {
                let v = match item {
                    Ok(v) => v,
                    Err(e) => {
                        reason(&e.to_string(), "a refused item")?;
                        continue;
                    }
                };
                match native::to_event(v.clone(), cx) {
                    Err(e) => reason(&e.to_string(), "a refused event")?,
                    Ok(mut e) => {
                        check_event(&e, source, now)?;
                        if source == Source::Browser {
                            let b = cx.browser.as_ref().unwrap();
                            if e.visitor_id != b.visitor_id || e.user_id.is_some() {
                                return Err("a browser event set its own identity".into());
                            }
                            let reserved = native::RESERVED_NAMES.contains(&e.name.as_str());
                            if reserved && !(e.name == "page_view" && b.beacon) {
                                return Err(format!("the browser sent reserved {:?}", e.name));
                            }
                        } else if e.visitor_id.is_none() && e.user_id.is_none() {
                            return Err("a server event has neither visitor nor user".into());
                        }
                        enrich.enrich(&mut e);
                        accepted += 1;
                    }
                }
            }
        }
        Ok(())
    });
    println!("  {accepted} events accepted (browser and server contexts)");
}

// ---------------------------------------------------------------------------------------------
// (b) Segment requests

const SEGMENT_FIELDS: &[&str] = &[
    "type",
    "event",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "context",
    "properties",
    "traits",
    "name",
    "groupId",
    "previousId",
    "writeKey",
];

const SEGMENT_KINDS: &[&str] = &[
    "track", "page", "screen", "identify", "group", "alias", "batch",
];

fn segment_value(rng: &mut Rng, key: &str, out: &mut String) {
    let s = match key {
        "type" => text(rng, SEGMENT_KINDS),
        "event" | "name" => text(rng, &["Order Completed", "Signed Up"]),
        "userId" | "groupId" if rng.one_in(4) => return out.push_str(&number(rng)),
        "anonymousId" | "previousId" => uuid_text(rng),
        "timestamp" | "originalTimestamp" | "sentAt" | "receivedAt" if rng.one_in(3) => {
            return out.push_str(&number(rng))
        }
        "timestamp" | "originalTimestamp" | "sentAt" | "receivedAt" => rfc3339(rng),
        "context" => return segment_context(rng, out),
        "properties" | "traits" if !rng.one_in(6) => {
            return object(
                rng,
                &["url", "referrer", "revenue", "plan", "name"],
                0,
                &mut |rng, k, out| match k {
                    "url" | "referrer" => {
                        let s = text(rng, URLS);
                        out.push_str(&json_str(rng, &s))
                    }
                    _ => any_json(rng, 3, out),
                },
                out,
            )
        }
        _ => text(rng, &["u-1", "m-1", "key"]),
    };
    out.push_str(&json_str(rng, &s));
}

fn segment_context(rng: &mut Rng, out: &mut String) {
    object(
        rng,
        &["ip", "userAgent", "page", "campaign", "library"],
        0,
        &mut |rng, k, out| match k {
            "ip" => {
                let s = text(rng, IPS);
                out.push_str(&json_str(rng, &s))
            }
            "userAgent" => {
                let s = text(rng, UAS);
                out.push_str(&json_str(rng, &s))
            }
            "page" => object(
                rng,
                &["url", "referrer", "path"],
                0,
                &mut |rng, _, out| {
                    let s = text(rng, URLS);
                    out.push_str(&json_str(rng, &s))
                },
                out,
            ),
            "campaign" => object(
                rng,
                &["name", "source", "medium", "term", "content"],
                0,
                &mut |rng, _, out| {
                    let s = text(rng, &["Facebook", "camera-x", " "]);
                    out.push_str(&json_str(rng, &s))
                },
                out,
            ),
            _ => any_json(rng, 2, out),
        },
        out,
    )
}

fn segment_message(rng: &mut Rng) -> String {
    let mut s = String::new();
    object(rng, SEGMENT_FIELDS, 3, &mut segment_value, &mut s);
    s
}

/// A `/v1/batch` body: `batch`, `sentAt`, `context`, `writeKey`, in any order and number.
fn segment_batch(rng: &mut Rng) -> String {
    let mut s = String::new();
    object(
        rng,
        &["batch", "sentAt", "context", "writeKey"],
        1,
        &mut |rng, k, out| match k {
            "batch" if !rng.one_in(8) => {
                out.push('[');
                for i in 0..rng.below(6) {
                    if i > 0 {
                        out.push(',');
                    }
                    if rng.one_in(50) {
                        // Past the 32 KB a message may have.
                        out.push_str(&format!(
                            "{{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\",\"properties\":{{\"x\":\"{}\"}}}}",
                            "x".repeat(33 * 1024)
                        ));
                    } else {
                        out.push_str(&segment_message(rng));
                    }
                }
                out.push(']');
            }
            "context" => segment_context(rng, out),
            _ => segment_value(rng, k, out),
        },
        &mut s,
    );
    s
}

#[test]
fn segment_requests() {
    let mut enrich = enricher();
    let mut accepted = 0u64;
    fuzz("segment_requests", |rng, input| {
        let kind = rng.pick(SEGMENT_KINDS);
        let mut b = if rng.one_in(12) {
            random_bytes(rng)
        } else if kind == "batch" {
            segment_batch(rng).into_bytes()
        } else {
            segment_message(rng).into_bytes()
        };
        if rng.one_in(4) {
            mutate(rng, &mut b);
        }
        *input = format!("/v1/{kind} {}", escaped(&b));
        // As the handler does: the body as JSON, then its messages.
        let Ok(v) = serde_json::from_slice::<Value>(&b) else {
            return Ok(());
        };
        let now = now_us();
        let results = match segment::request_events(kind, &v, "shop", now) {
            Ok(r) => r,
            Err(e) => return reason(&e.to_string(), "a refused request"),
        };
        if kind != "batch" && results.len() != 1 {
            return Err(format!("/v1/{kind} gave {} messages", results.len()));
        }
        for r in results {
            match r {
                Err(e) => reason(&e.to_string(), "a refused message")?,
                Ok(mut e) => {
                    check_event(&e, Source::Segment, now)?;
                    if e.visitor_id.is_none() && e.user_id.is_none() {
                        return Err("a message has neither visitor nor user".into());
                    }
                    enrich.enrich(&mut e);
                    accepted += 1;
                }
            }
        }
        Ok(())
    });
    println!("  {accepted} messages accepted");
}

// ---------------------------------------------------------------------------------------------
// (c) CSV imports

const CSV_COLUMNS: &[&str] = &[
    "name",
    "timestamp",
    "visitor_id",
    "user_id",
    "session_id",
    "event_id",
    "message_id",
    "url",
    "referrer",
    "amount",
    "paid",
    "Order Date",
    "Customer",
    "props",
    "ts",
];

fn csv_cell(rng: &mut Rng, column: &str) -> String {
    let s = match column {
        "timestamp" | "Order Date" => match rng.below(if rng.clean { 2 } else { 4 }) {
            0 => number(rng),
            1 => rfc3339(rng),
            2 => text(
                rng,
                &[
                    "2026-11-20 15:30:00",
                    "2026-11-20 15:30:00.123",
                    "2026-11-20",
                    "2026-02-30",
                    "+99999-01-01",
                    "9999-12-31 23:59:59",
                ],
            ),
            _ => text(rng, &[]),
        },
        "visitor_id" | "session_id" | "event_id" => uuid_text(rng),
        "url" | "referrer" => text(rng, URLS),
        "amount" => text(rng, &["1299.5", "-5", "1e309", ".5", "+1", "NaN", "-0"]),
        "paid" => text(rng, &["true", "false", "TRUE"]),
        _ => text(rng, &["purchase", "u-1", "c-9"]),
    };
    // Quoted (with its quotes doubled) or bare, whatever it holds.
    match rng.below(4) {
        0 => format!("\"{}\"", s.replace('"', "\"\"")),
        1 if !rng.clean && rng.one_in(4) => format!("\"{s}"),
        _ => s,
    }
}

fn csv_file(rng: &mut Rng, map: &[String]) -> Vec<u8> {
    if !rng.clean && rng.one_in(12) {
        return random_bytes(rng);
    }
    let mut cols: Vec<String> = (0..1 + rng.below(8))
        .map(|_| {
            if !rng.clean && rng.one_in(8) {
                text(rng, &[])
            } else {
                rng.pick(CSV_COLUMNS).to_string()
            }
        })
        .collect();
    if rng.clean || !rng.one_in(5) {
        for c in ["name", "timestamp", rng.pick(&["visitor_id", "user_id"])] {
            if !cols.iter().any(|x| x == c) {
                cols.insert(rng.below(cols.len() + 1), c.to_string());
            }
        }
    }
    if rng.clean {
        let mut seen = std::collections::HashSet::new();
        cols.retain(|c| seen.insert(c.clone()));
    }
    // The mapped names appear in the file too.
    for m in map {
        if let Some((from, _)) = m.split_once('=') {
            if rng.one_in(2) {
                cols.push(from.trim().to_string());
            }
        }
    }
    let eol = rng.pick(&["\n", "\r\n"]);
    let mut out = String::new();
    if rng.one_in(10) {
        out.push('\u{feff}');
    }
    out.push_str(&cols.join(","));
    for _ in 0..rng.below(8) {
        out.push_str(eol);
        if rng.one_in(10) {
            out.push_str(eol);
        }
        let n = if !rng.clean && rng.one_in(8) {
            rng.below(cols.len() + 2)
        } else {
            cols.len()
        };
        let cells: Vec<String> = (0..n)
            .map(|i| csv_cell(rng, cols.get(i).map_or("", String::as_str)))
            .collect();
        out.push_str(&cells.join(","));
    }
    if rng.one_in(2) {
        out.push_str(eol);
    }
    let mut b = out.into_bytes();
    if !rng.clean && rng.one_in(4) {
        mutate(rng, &mut b);
    }
    b
}

#[test]
fn csv_imports() {
    let mut enrich = enricher();
    let (mut accepted, mut bad) = (0u64, 0u64);
    fuzz("csv_imports", |rng, input| {
        let map_args: Vec<String> = (0..rng.below(3))
            .map(|_| match rng.below(4) {
                0 => text(rng, &[]),
                _ => format!(
                    "{}={}",
                    text(rng, &["Order Date", "Customer", "When"]),
                    text(rng, &["timestamp", "user_id", "name", "plan"])
                ),
            })
            .collect();
        let data = csv_file(rng, &map_args);
        *input = format!("map {map_args:?}, file {}", escaped(&data));
        let map = match import::parse_map(&map_args) {
            Ok(m) => m,
            Err(e) => {
                reason(&e.to_string(), "a refused mapping")?;
                Default::default()
            }
        };
        let now = now_us();
        let parsed = match import::parse(&data, &map, "shop", now) {
            Ok(p) => p,
            Err(e) => return reason(&e.to_string(), "a refused file"),
        };
        // Bad rows are listed in order, each on a line of the file after the header.
        let ends = data
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && data.get(i + 1) != Some(&b'\n')))
            .count();
        let last_line = 1 + ends as u64;
        let mut previous = 1;
        bad += parsed.bad.len() as u64;
        for bad in &parsed.bad {
            reason(&bad.error, "a bad row")?;
            if bad.line <= previous || bad.line > last_line {
                return Err(format!(
                    "a bad row on line {} (after line {previous}, in {last_line} lines)",
                    bad.line
                ));
            }
            previous = bad.line;
        }
        // A re-import is the same import: same ids, same bad rows.
        let again = import::parse(&data, &map, "shop", now).map_err(|e| e.to_string())?;
        let ids = |p: &import::Parsed| p.events.iter().map(|e| e.event_id).collect::<Vec<_>>();
        if ids(&parsed) != ids(&again) || parsed.bad != again.bad {
            return Err("parsing the same file twice gave other ids or bad rows".into());
        }
        for mut e in parsed.events {
            check_event(&e, Source::Import, now)?;
            if e.visitor_id.is_none() && e.user_id.is_none() {
                return Err("a row has neither visitor nor user".into());
            }
            enrich.enrich(&mut e);
            accepted += 1;
        }
        Ok(())
    });
    println!("  {accepted} rows accepted, {bad} bad rows");
}

// ---------------------------------------------------------------------------------------------
// (d) Report parameters

/// Marks values a report gets, to check they never reach the SQL text.
const MARK: &str = "ZQX";

const TIME_ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/St_Johns",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Australia/Lord_Howe",
    "Africa/Casablanca",
];

fn date_text(rng: &mut Rng) -> String {
    const D: &[&str] = &[
        "2026-02-30",
        "2026-13-01",
        "2026-00-10",
        "2026-1-5",
        "99999-01-01",
        "+99999-01-01",
        "-262144-01-01",
        "+262143-12-31",
        "-0001-01-01",
        "0000-01-01",
        "0001-01-01",
        "9999-12-31",
        "9999-12-01",
        " 2026-11-28",
        "2026-11-28 ",
        "2026-11-28T00:00",
        "2026/11/28",
        "1970-01-01",
        "2000-01-01",
        "+262142-12-31",
        "-262143-01-01",
    ];
    let today = chrono::Utc::now().date_naive();
    let mut s = match rng.below(if rng.clean { 8 } else { 5 }) {
        0 => rng.pick(D).to_string(),
        1 => [chrono::NaiveDate::MAX, chrono::NaiveDate::MIN][rng.below(2)].to_string(),
        2 => format!(
            "{:04}-{:02}-{:02}",
            rng.below(10_001),
            rng.below(14),
            rng.below(33)
        ),
        3 => text(rng, &[]),
        _ => (today - chrono::Duration::days(rng.below(60) as i64)).to_string(),
    };
    if !rng.clean && rng.one_in(6) {
        let at: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
        s.insert(at[rng.below(at.len())], '€');
    }
    s
}

fn window_text(rng: &mut Rng) -> String {
    if rng.clean && !rng.one_in(4) {
        return rng
            .pick(&["1m", "30m", "12h", "1d", "7d", "90d", "365d"])
            .to_string();
    }
    let n = match rng.below(4) {
        0 => number(rng),
        1 => rng.below(400).to_string(),
        2 => rng
            .pick(&["", "-1", "+1", " 1", "1.5", "€", "0"])
            .to_string(),
        _ => (rng.next() as i64).to_string(),
    };
    let unit = rng.pick(&["m", "h", "d", "w", "€", "", "M", "dd", " d", "😀"]);
    let mut s = format!("{n}{unit}");
    if rng.one_in(5) {
        let at: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
        s.insert_str(at[rng.below(at.len())], rng.pick(&["€", "1€", "é"]));
    }
    s
}

const PROP_KEYS: &[&str] = &["plan", "a.b", "$x", "a b", "n:1", "é", "a'b", "a\"b", ""];

fn steps_json(rng: &mut Rng) -> String {
    if rng.clean && !rng.one_in(4) {
        let steps: Vec<Value> = (0..2 + rng.below(3))
            .map(|_| {
                if rng.one_in(2) {
                    serde_json::json!({"type": "path", "pattern": rng.pick(&["/product/*", "/page/?", "/*", "/"])})
                } else if rng.one_in(2) {
                    serde_json::json!({"type": "event", "name": rng.pick(&["registered", "purchase", "page_view"])})
                } else {
                    serde_json::json!({"type": "event", "name": "purchase", "props": {rng.pick(PROP_KEYS): rng.pick(&["pro", "1"])}})
                }
            })
            .collect();
        return Value::from(steps).to_string();
    }
    let mut s = String::from("[");
    for i in 0..rng.below(10) {
        if i > 0 {
            s.push(',');
        }
        object(
            rng,
            &["type", "pattern", "name", "props"],
            1,
            &mut |rng, k, out| match k {
                "type" => {
                    let t = text(rng, &["path", "event", "page"]);
                    out.push_str(&json_str(rng, &t))
                }
                "props" => object(
                    rng,
                    PROP_KEYS,
                    0,
                    &mut |rng, _, out| any_json(rng, 2, out),
                    out,
                ),
                _ => {
                    let t = text(rng, &["/product/*", "/p/?", "[", "**", "registered", "x'"]);
                    out.push_str(&json_str(rng, &t))
                }
            },
            &mut s,
        );
    }
    s.push(']');
    if rng.one_in(5) {
        let mut b = s.into_bytes();
        mutate(rng, &mut b);
        return String::from_utf8_lossy(&b).into_owned();
    }
    s
}

/// A parameter value for `key`, usually of the right kind, sometimes marked.
fn report_value(rng: &mut Rng, key: &str) -> String {
    let dims: Vec<&str> = filter::DIMENSIONS.iter().map(|(n, _)| *n).collect();
    let v = match key {
        "from" | "to" => date_text(rng),
        "window" | "lookback" => window_text(rng),
        "limit" => text(
            rng,
            &[
                "1",
                "50",
                "1000",
                "1001",
                "0",
                "-1",
                "+5",
                "99999999999999999999",
                "18446744073709551615",
                "5€",
            ],
        ),
        "bots" => text(rng, &["include", "exclude", "true", "1"]),
        "interval" => text(rng, &["hour", "day", "minute"]),
        "steps" => steps_json(rng),
        "dimension" => {
            let d: Vec<String> = (0..1 + rng.below(3))
                .map(|_| {
                    text(
                        rng,
                        &["all", "channel", "utm_source", "referrer_host", "path"],
                    )
                })
                .collect();
            d.join(rng.pick(&[",", ", ", ",,"]))
        }
        "breakdown" => {
            if rng.one_in(3) {
                format!("prop.{}", text(rng, PROP_KEYS))
            } else {
                text(rng, &dims)
            }
        }
        "property" => text(rng, PROP_KEYS),
        "by" => text(rng, &["channel", "utm_source", "utm_campaign", "path"]),
        "event" => text(rng, &["page_view", "registered", "purchase"]),
        _ => text(rng, &["Chrome", "/product/1", "(none)", "facebook"]),
    };
    // Filter values are data: marked ones must never reach the SQL text.
    if rng.one_in(3) && !matches!(key, "from" | "to" | "limit" | "bots") {
        format!("{MARK}{v}")
    } else {
        v
    }
}

/// A report's query pairs, or a raw query string decoded as the handler decodes it.
fn report_pairs(rng: &mut Rng, name: &str) -> (String, Vec<(String, String)>) {
    let own = reports::find(name)
        .map(|d| d.param_names())
        .unwrap_or_default();
    let dims: Vec<&str> = filter::DIMENSIONS.iter().map(|(n, _)| *n).collect();
    let mut pairs = Vec::new();
    for _ in 0..rng.below(7) {
        let key = match rng.below(10) {
            0..=2 if !own.is_empty() => rng.pick(&own).to_string(),
            3 => rng.pick(&["from", "to"]).to_string(),
            4 => rng.pick(&["limit", "bots"]).to_string(),
            5 => format!("prop.{}", text(rng, PROP_KEYS)),
            6 if !rng.clean => text(rng, &[]),
            7 => rng
                .pick(&["steps", "window", "lookback", "interval", "dimension", "by"])
                .to_string(),
            _ => rng.pick(&dims).to_string(),
        };
        let value = report_value(
            rng,
            key.strip_prefix("prop.").map_or(key.as_str(), |_| "prop"),
        );
        pairs.push((key, value));
    }
    // The funnel needs its steps, and attribution its event, to get anywhere.
    if name == "funnel" && !rng.one_in(4) {
        pairs.push(("steps".into(), steps_json(rng)));
    }
    if name == "attribution" && !rng.one_in(4) {
        pairs.push(("event".into(), report_value(rng, "event")));
    }
    let mut query = serde_urlencoded::to_string(&pairs).unwrap();
    if !rng.clean && rng.one_in(4) {
        // What else can arrive: raw bytes, stray separators, broken percent escapes.
        let mut b = query.into_bytes();
        mutate(rng, &mut b);
        if rng.one_in(3) {
            let at = rng.below(b.len() + 1);
            let junk: Vec<u8> = random_bytes(rng).iter().take(12).copied().collect();
            let enc: String = junk.iter().map(|x| format!("%{x:02X}")).collect();
            b.splice(at..at, enc.into_bytes());
        }
        query = String::from_utf8_lossy(&b).into_owned();
    }
    let decoded = serde_urlencoded::from_str::<Vec<(String, String)>>(&query).unwrap_or(pairs);
    (query, decoded)
}

/// The report names, and some that are not.
fn report_name(rng: &mut Rng) -> String {
    if rng.one_in(30) {
        text(rng, &["Overview", "overview "])
    } else {
        rng.pick(&reports::names()).to_string()
    }
}

/// What parsing checks: the range is sane and every value is bound, never spliced.
fn check_filters(pairs: &[(String, String)], tz: SiteTz, own: &[&str]) -> Result<(), String> {
    let (f, _) = match filter::parse(pairs, tz, own) {
        Ok(ok) => ok,
        Err(e) => return reason(&e.to_string(), "a refused parameter"),
    };
    if f.from > f.to || f.start >= f.end || !(1..=filter::MAX_LIMIT).contains(&f.limit) {
        return Err(format!(
            "accepted from {} to {} ({} .. {}), limit {}",
            f.from, f.to, f.start, f.end, f.limit
        ));
    }
    let sql = f.base("*", Some("page_view"));
    // (A mutated query string can move a mark into a key, and keys name columns and paths.)
    let marks = pairs.iter().filter(|(_, v)| v.contains(MARK)).count();
    let in_keys = pairs.iter().any(|(k, _)| k.contains(MARK));
    if sql.text.contains(MARK) && !in_keys {
        return Err(format!(
            "a value reached the SQL text ({marks} marked): {}",
            sql.text
        ));
    }
    let holes = sql.text.matches('?').count();
    if holes != sql.params.len() {
        return Err(format!(
            "{holes} placeholders for {} values: {}",
            sql.params.len(),
            sql.text
        ));
    }
    Ok(())
}

#[test]
fn report_parameters() {
    // A small generated store, so that the reports' SQL runs over rows too.
    let dir = tempfile::tempdir().unwrap();
    let mut store = tollgate::store::Store::open(dir.path()).unwrap();
    let spec = tollgate::generate::Spec {
        events: 3_000,
        days: 3,
        seed: 7,
        end_us: now_us(),
        site: "shop".into(),
    };
    tollgate::generate::generate(&mut store, &spec).unwrap();
    let conn = store.reader().unwrap();
    let (mut ran, mut answered) = (0u64, 0u64);
    let cases = fuzz("report_parameters", |rng, input| {
        let name = report_name(rng);
        let tz = SiteTz::parse(rng.pick(TIME_ZONES)).unwrap();
        let (query, pairs) = report_pairs(rng, &name);
        let window = window_text(rng);
        *input = format!(
            "GET /api/reports/{name}?{} (tz {}; window {window:?})",
            escaped(query.as_bytes()),
            tz.name()
        );
        if let Err(e) = filter::parse_window("window", &window) {
            reason(&e.to_string(), "a refused window")?;
        }
        let own = reports::find(&name).map(|d| d.param_names());
        check_filters(&pairs, tz, own.as_deref().unwrap_or(&[]))?;
        // The whole report, 1 case in 4 (the SQL is the slow part).
        if !rng.one_in(4) {
            return Ok(());
        }
        ran += 1;
        match reports::run(&conn, &name, &pairs, tz) {
            Ok(v) if v["report"] == name.as_str() => {
                answered += 1;
                Ok(())
            }
            Ok(v) => Err(format!("the answer is not the report's: {v}")),
            Err(ReportError::Unknown(_)) if own.is_none() => Ok(()),
            Err(ReportError::Invalid(m)) => {
                reason(&m, "an invalid parameter")?;
                // The message names a parameter the request had, or one it lacked.
                let named = pairs.iter().any(|(k, _)| m.contains(k.as_str()))
                    || own.as_deref().unwrap_or(&[]).iter().any(|k| m.contains(k))
                    || ["from", "to", "property key"].iter().any(|k| m.contains(k));
                if named {
                    Ok(())
                } else {
                    Err(format!("the error names no parameter: {m}"))
                }
            }
            // Anything else is a 500 for what is a bad request at most.
            Err(e) => Err(format!("report error other than a bad parameter: {e}")),
        }
    });
    println!("  of which {ran} reports run against the store, {answered} answered (200)");
    assert!(cases > 0);
}
