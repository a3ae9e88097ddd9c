//! The admin plane under attack, against a real tollgate process: DNS rebinding (a foreign
//! `Host`), cross-site writes (forms and `no-cors` fetches, also from a real Chromium), the
//! session cookie, sign-in guessing, slow headers and connection floods, and compressed bodies
//! (gzip bombs, RudderStack's Python SDK, which gzips by default).

mod common;

use common::browser::Browser;
use common::upstream::Upstream;
use common::{tollgate_cmd, Tollgate};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// An answer read off the wire.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Send `request` exactly as given (it should say `Connection: close`) and read the answer.
async fn raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("no answer within 20 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Raw {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A request with `headers` (each `Name: value`) and a body.
fn request(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` MiB of zeros, gzipped a MiB at a time: the bomb never exists uncompressed.
fn zero_bomb(n: usize) -> Vec<u8> {
    let mib = vec![0u8; 1 << 20];
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    for _ in 0..n {
        e.write_all(&mib).unwrap();
    }
    e.finish().unwrap()
}

/// A process's peak resident memory, in KiB (`VmHWM`).
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Long, but mostly tables of Host headers and request targets against one tollgate: one list
/// of who is answered, which reads best whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_loopback_the_listener_address_and_admin_hosts_are_answered() {
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(
        &up.url(),
        "",
        &[("TOLLGATE_SERVER_ADMIN_HOSTS", "analytics.example.test")],
    );
    let get = |path: &'static str, host: String| {
        let addr = tg.admin;
        async move {
            raw(
                addr,
                &request("GET", path, &[&format!("Host: {host}")], b""),
            )
            .await
        }
    };
    let port = tg.admin.port();

    // A page on evil.example whose name now resolves to 127.0.0.1 (DNS rebinding): the
    // browser sends its own name as Host.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("analytics.example.test.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("0.0.0.0:{port}"),
    ] {
        for path in ["/api/reports/overview", "/readyz", "/metrics", "/"] {
            let r = get(path, host.clone()).await;
            assert_eq!(r.status, 421, "{path} with Host {host}: {}", r.head);
            assert!(r.body.contains("server.admin_hosts"), "{}", r.body);
        }
        let r = raw(
            tg.admin,
            &request(
                "POST",
                "/api/query",
                &[&format!("Host: {host}"), "Content-Type: application/json"],
                br#"{"sql": "SELECT 1"}"#,
            ),
        )
        .await;
        assert_eq!(r.status, 421, "{}", r.body);
        // Health stays open to any Host: a constant "ok" tells nobody anything.
        assert_eq!(get("/healthz", host.clone()).await.status, 200);
    }
    // An absolute request target names a host too.
    let r = raw(
        tg.admin,
        &request(
            "GET",
            &format!("http://evil.example:{port}/api/sinks"),
            &[&format!("Host: 127.0.0.1:{port}")],
            b"",
        ),
    )
    .await;
    assert_eq!(r.status, 421, "{}", r.head);

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("[::1]:{port}"),
        format!("analytics.example.test:{port}"),
        "ANALYTICS.example.test".to_string(),
    ] {
        let r = get("/api/reports/overview", host.clone()).await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    // HTTP/1.0 without a Host (an old health checker) is no browser, so no rebinding.
    let r = raw(tg.admin, b"GET /readyz HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", r.head);

    // A bad entry is named at start-up.
    let dir = common::temp_dir();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        "[server]\nadmin_hosts = [\"https://analytics.example.test:9080\"]\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n",
    )
    .unwrap();
    let (ok, out, err) = tollgate_cmd(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok && err.contains("server.admin_hosts[0]"), "{out}{err}");
}

/// Long, but mostly one table of refused requests, then the few that must still write, on one
/// tollgate without a token: the closing count of 4 holds only because the table wrote nothing,
/// so the two stay in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_and_form_content_types_are_refused() {
    let up = Upstream::start().await;
    // No admin token: the case where a form on any site could write events.
    let tg = Tollgate::start(&up.url(), "");
    let port = tg.admin.port();
    let host = format!("Host: 127.0.0.1:{port}");
    let own = format!("Origin: http://127.0.0.1:{port}");
    let event = br#"{"name": "forged", "user_id": "victim"}"#;
    let csv = b"name,timestamp,user_id\nforged,2026-11-01 10:00:00,victim\n";
    let post = |path: &'static str, headers: Vec<String>, body: &'static [u8]| {
        let addr = tg.admin;
        let host = host.clone();
        async move {
            let mut h: Vec<&str> = vec![&host];
            h.extend(headers.iter().map(String::as_str));
            raw(addr, &request("POST", path, &h, body)).await
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    for (path, headers, body, status, says) in [
        // What an HTML form on another site sends.
        (
            "/api/events",
            s(&[
                "Content-Type: text/plain",
                "Origin: https://evil.example",
                "Sec-Fetch-Site: cross-site",
                "Sec-Fetch-Mode: navigate",
            ]),
            &event[..],
            403,
            "Sec-Fetch-Site: cross-site",
        ),
        // A browser that sends Origin but no Fetch metadata.
        (
            "/api/events",
            s(&[
                "Content-Type: application/json",
                "Origin: https://evil.example",
            ]),
            &event[..],
            403,
            "Origin: https://evil.example",
        ),
        // A sibling site, and another port on this host, are not the admin's origin either.
        (
            "/api/events",
            s(&[
                "Content-Type: application/json",
                "Sec-Fetch-Site: same-site",
            ]),
            &event[..],
            403,
            "same-site",
        ),
        (
            "/api/events",
            s(&[
                "Content-Type: application/json",
                "Origin: http://127.0.0.1:3000",
            ]),
            &event[..],
            403,
            "127.0.0.1:3000",
        ),
        (
            "/api/events",
            s(&["Content-Type: application/json", "Origin: null"]),
            &event[..],
            403,
            "null",
        ),
        // Form content types, whatever the origin: 415 with the list.
        (
            "/api/events",
            s(&["Content-Type: text/plain"]),
            &event[..],
            415,
            "application/json, application/x-ndjson",
        ),
        (
            "/api/events",
            s(&["Content-Type: multipart/form-data; boundary=x"]),
            &event[..],
            415,
            "application/x-ndjson",
        ),
        (
            "/api/import",
            s(&["Content-Type: application/x-www-form-urlencoded"]),
            &csv[..],
            415,
            "text/csv",
        ),
        (
            "/api/import",
            s(&["Content-Type: text/plain"]),
            &csv[..],
            415,
            "text/csv",
        ),
        (
            "/api/import",
            s(&[
                "Content-Type: text/csv",
                "Origin: https://evil.example",
                "Sec-Fetch-Site: cross-site",
            ]),
            &csv[..],
            403,
            "cross-site",
        ),
        (
            "/api/query",
            s(&["Content-Type: text/plain"]),
            &br#"{"sql": "SELECT 1"}"#[..],
            415,
            "application/json",
        ),
        (
            "/api/forget",
            s(&["Content-Type: text/plain", "Origin: https://evil.example"]),
            &br#"{"user_id": "victim"}"#[..],
            403,
            "evil.example",
        ),
        (
            "/api/login",
            s(&["Content-Type: text/plain"]),
            &br#"{"token": "x"}"#[..],
            415,
            "application/json",
        ),
        (
            "/v1/track",
            s(&["Content-Type: text/plain", "Authorization: Basic d2stMTo="]),
            &br#"{"userId": "victim", "event": "forged"}"#[..],
            415,
            "application/json",
        ),
        // A no-cors fetch of a bare Blob has no Content-Type, but it does have an Origin.
        (
            "/api/events",
            s(&["Origin: https://evil.example", "Sec-Fetch-Mode: no-cors"]),
            &event[..],
            403,
            "evil.example",
        ),
        (
            "/api/events",
            s(&[own.as_str(), "Sec-Fetch-Mode: cors"]),
            &event[..],
            415,
            "no Content-Type",
        ),
    ] {
        let r = post(path, headers.clone(), body).await;
        assert_eq!(r.status, status, "{path} {headers:?}: {}", r.body);
        assert!(r.body.contains(says), "{path} {headers:?}: {}", r.body);
    }
    assert_eq!(
        tg.count("SELECT count(*) FROM events").await,
        0,
        "nothing forged was written"
    );

    // The admin's own pages, and clients that are not browsers, still write.
    let ok = [
        s(&[
            "Content-Type: application/json",
            own.as_str(),
            "Sec-Fetch-Site: same-origin",
        ]),
        s(&["Content-Type: application/x-ndjson; charset=utf-8"]),
        // curl --data-binary @file -H 'Content-Type:' (no type at all, no Origin).
        s(&[]),
    ];
    for headers in ok {
        let r = post("/api/events", headers.clone(), &event[..]).await;
        assert_eq!(r.status, 200, "{headers:?}: {}", r.body);
    }
    let r = post(
        "/api/import",
        s(&["Content-Type: text/csv; header=present"]),
        &csv[..],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 4);
    // GETs are not state-changing: an Origin there is no reason to refuse.
    let r = raw(
        tg.admin,
        &request(
            "GET",
            "/api/sinks",
            &[&host, "Origin: https://evil.example"],
            b"",
        ),
    )
    .await;
    assert_eq!(r.status, 200);
}

/// The `tollgate_admin` cookie of a `Set-Cookie` header, and the whole header.
fn session_cookie(resp: &reqwest::Response) -> (String, String) {
    let set = resp
        .headers()
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_string();
    let pair = set.split(';').next().unwrap().to_string();
    (pair, set)
}

/// One session's life on one tollgate: issued, misused, ended by sign-out; the later steps use
/// the two sessions the first step opened, so the steps stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_a_random_id_with_an_expiry_that_logout_ends() {
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(
        &up.url(),
        "",
        &[
            ("TOLLGATE_SERVER_ADMIN_TOKEN", TOKEN),
            ("TOLLGATE_SERVER_ADMIN_SESSION_MINS", "90"),
            ("TOLLGATE_SERVER_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    );
    let c = reqwest::Client::new();
    let login = |client: &reqwest::Client, proto: Option<&str>| {
        let mut r = client
            .post(tg.admin_url("/api/login"))
            .json(&json!({ "token": TOKEN }));
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        r.send()
    };
    let reports = |cookie: String| {
        c.get(tg.admin_url("/api/reports/pages"))
            .header("cookie", cookie)
            .send()
    };

    let first = login(&c, None).await.unwrap();
    assert_eq!(first.status(), 200);
    let (pair, set) = session_cookie(&first);
    let id = pair.strip_prefix("tollgate_admin=").unwrap().to_string();
    assert!(!set.contains(TOKEN), "the token is not the cookie: {set}");
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=5400"] {
        assert!(set.contains(part), "{part} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let (second, _) = session_cookie(&login(&c, None).await.unwrap());
    assert_ne!(pair, second, "each sign-in is a new session");
    assert_eq!(reports(pair.clone()).await.unwrap().status(), 200);

    // A cookie holding the token itself (what the old sign-in set) opens nothing.
    let r = reports(format!("tollgate_admin={TOKEN}")).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        reports("tollgate_admin=00".into()).await.unwrap().status(),
        401
    );

    // Sign-out ends the session on the server and deletes the cookie.
    let out = c
        .post(tg.admin_url("/api/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let (_, gone) = session_cookie(&out);
    assert!(gone.contains("Max-Age=0"), "{gone}");
    let r = reports(pair.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("sign in again"),
        "{body}"
    );
    assert_eq!(
        reports(second).await.unwrap().status(),
        200,
        "only that one"
    );

    // Over HTTPS (a trusted proxy says so) the cookie is Secure; an untrusted peer cannot say
    // so (127.0.0.2 is not in trusted_proxies).
    let (_, set) = session_cookie(&login(&c, Some("https")).await.unwrap());
    assert!(set.contains("Secure"), "{set}");
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let (_, set) = session_cookie(&login(&other, Some("https")).await.unwrap());
    assert!(!set.contains("Secure"), "{set}");

    // The bearer token still works for API clients, and the CLI still finds it.
    let r = c
        .get(tg.admin_url("/api/sinks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (ok, out, err) = tollgate_cmd(&[
        "query",
        "--data",
        tg.data_dir().to_str().unwrap(),
        "SELECT 40 + 2 AS answer",
    ]);
    assert!(ok && out.contains("42"), "{out}{err}");
}

/// Throttling is state: each step's 429s come from the failures the steps before it counted, on
/// the same tollgate, so the steps stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_throttled_per_client_and_overall() {
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(
        &up.url(),
        "",
        &[
            ("TOLLGATE_SERVER_ADMIN_TOKEN", TOKEN),
            ("TOLLGATE_SERVER_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    );
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(Some(ip.parse().unwrap()))
            .build()
            .unwrap()
    };
    let login = |c: &reqwest::Client, token: &str, forwarded_for: Option<String>| {
        let mut r = c
            .post(tg.admin_url("/api/login"))
            .json(&json!({ "token": token }));
        if let Some(ip) = forwarded_for {
            r = r.header("x-forwarded-for", ip);
        }
        r.send()
    };

    // One client: five wrong guesses, then 429 for anything, the right token included, so a
    // throttled client learns nothing. Wrong bearer tokens count the same.
    let guesser = from("127.0.0.3");
    for i in 0..5 {
        let r = login(&guesser, &format!("guess-{i}"), None).await.unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    for token in ["guess-6", TOKEN] {
        let r = login(&guesser, token, None).await.unwrap();
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=12).contains(&retry), "{retry}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("too many failed"),
            "{body}"
        );
    }
    let r = guesser
        .get(tg.admin_url("/api/sinks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the bearer path is throttled too");
    // Another client is not affected.
    let r = login(&from("127.0.0.4"), TOKEN, None).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = from("127.0.0.5")
        .get(tg.admin_url("/api/sinks"))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A guess spread over many addresses (behind the trusted proxy): after 60 failures
    // overall (plus the one a second that refills meanwhile), every remote client waits;
    // loopback clients (the CLI) do not.
    let proxy = reqwest::Client::new();
    let mut failures = 0;
    loop {
        let r = login(&proxy, "guess", Some(format!("198.51.100.{failures}")))
            .await
            .unwrap();
        if r.status() == 429 {
            break;
        }
        assert_eq!(r.status(), 401);
        failures += 1;
        assert!(failures <= 75, "no global limit after {failures} failures");
    }
    assert!(failures >= 60, "throttled after only {failures} failures");
    let r = login(&proxy, TOKEN, Some("203.0.113.200".into()))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "a new address, the right token: still throttled"
    );
    let r = login(&from("127.0.0.6"), TOKEN, None).await.unwrap();
    assert_eq!(r.status(), 200);
    let (ok, out, err) = tollgate_cmd(&[
        "query",
        "--data",
        tg.data_dir().to_str().unwrap(),
        "SELECT 1 AS one",
    ]);
    assert!(ok, "{out}{err}");
}

/// The steps share the process's four connection slots (the fifth client waits on the four
/// stalled ones before it), and the last step stops the process, so they stay in order in one
/// function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_connections_are_capped_and_sigterm_still_stops() {
    let up = Upstream::start().await;
    let mut tg = Tollgate::start_with_env(
        &up.url(),
        "",
        &[
            ("TOLLGATE_SERVER_ADMIN_MAX_CONNECTIONS", "4"),
            ("TOLLGATE_SERVER_ADMIN_HEADER_TIMEOUT_SECS", "2"),
        ],
    );
    let port = tg.admin.port();
    let partial =
        format!("GET /api/reports/overview HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ");

    // Headers that never finish: the connection is closed after the deadline.
    let mut slow = TcpStream::connect(tg.admin).await.unwrap();
    slow.write_all(partial.as_bytes()).await.unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), slow.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a connection with unfinished headers was still open after 8 s"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Four such connections fill the cap: a fifth client waits until the deadline frees a
    // slot, and is then served.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(tg.admin).await.unwrap();
        s.write_all(partial.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let healthz = request(
        "GET",
        "/healthz",
        &[&format!("Host: 127.0.0.1:{port}")],
        b"",
    );
    let addr = tg.admin;
    let fifth = tokio::spawn(async move { raw(addr, &healthz).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !fifth.is_finished(),
        "a fifth connection was served over the cap of 4"
    );
    let r = fifth.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );

    // An idle keep-alive connection is closed after the same deadline.
    let mut idle = TcpStream::connect(tg.admin).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), idle.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "an idle keep-alive connection stayed open");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));

    // SIGTERM with a stalled connection and an idle one open: tollgate still stops, promptly.
    let mut held = TcpStream::connect(tg.admin).await.unwrap();
    held.write_all(partial.as_bytes()).await.unwrap();
    let _idle = TcpStream::connect(tg.admin).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let status = tg.terminate();
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

/// One tollgate's store and memory across three parts: the six events decoded first, then the
/// refusals and bombs, which must add none to them (the closing count) and must not raise the
/// peak RSS measured around them; the parts share that state, so they stay in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_are_decoded_and_bombs_get_413_without_the_memory() {
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_WRITE_KEYS", "wk-1")]);
    let c = reqwest::Client::new();
    let send = |path: &str, content_type: &str, coding: &str, body: Vec<u8>| {
        c.post(tg.admin_url(path))
            .basic_auth("wk-1", Some(""))
            .header("content-type", content_type)
            .header("content-encoding", coding)
            .body(body)
            .send()
    };
    let text = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };

    // A Segment batch, gzipped as the Python SDKs send it.
    let batch = json!({"batch": [
        {"type": "track", "userId": "gz-1", "event": "Order Completed", "messageId": "gz-m1"},
        {"type": "identify", "userId": "gz-1", "anonymousId": "device-1", "messageId": "gz-m2"},
    ]});
    let (status, body) = text(
        send(
            "/v1/batch",
            "application/json",
            "gzip",
            gzip(batch.to_string().as_bytes()),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // One message, x-gzip; NDJSON as zlib deflate; a CSV file gzipped.
    let (status, body) = text(
        send(
            "/v1/track",
            "application/json",
            "x-gzip",
            gzip(br#"{"userId": "gz-2", "event": "Signed Up", "messageId": "gz-m3"}"#),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(b"{\"name\": \"deflated\", \"user_id\": \"gz-3\"}\n{\"name\": \"deflated\", \"user_id\": \"gz-4\"}\n")
        .unwrap();
    let (status, body) = text(
        send(
            "/api/events",
            "application/x-ndjson",
            "deflate",
            z.finish().unwrap(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = text(
        send(
            "/api/import",
            "text/csv",
            "gzip",
            gzip(b"name,timestamp,user_id\nimported,2026-11-01 10:00:00,gz-5\n"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        tg.query("SELECT name, coalesce(user_id, '') FROM events ORDER BY user_id, name")
            .await,
        vec![
            vec![json!("Order Completed"), json!("gz-1")],
            vec![json!("identify"), json!("gz-1")],
            vec![json!("Signed Up"), json!("gz-2")],
            vec![json!("deflated"), json!("gz-3")],
            vec![json!("deflated"), json!("gz-4")],
            vec![json!("imported"), json!("gz-5")],
        ]
    );

    // What is not decoded, and why.
    for (path, ct, coding, body, status, says) in [
        (
            "/v1/batch",
            "application/json",
            "br",
            gzip(b"{}"),
            415,
            "gzip or deflate",
        ),
        (
            "/v1/batch",
            "application/json",
            "gzip, gzip",
            gzip(b"{}"),
            415,
            "gzip or deflate",
        ),
        (
            "/api/query",
            "application/json",
            "gzip",
            gzip(br#"{"sql": "SELECT 1"}"#),
            415,
            "uncompressed",
        ),
        (
            "/v1/batch",
            "application/json",
            "gzip",
            b"{\"batch\": []}".to_vec(),
            400,
            "not valid gzip",
        ),
    ] {
        let (got, text) = text(send(path, ct, coding, body).await.unwrap()).await;
        assert_eq!(got, status, "{path} {coding}: {text}");
        assert!(text.contains(says), "{path} {coding}: {text}");
    }

    // Bombs. 1 GiB of zeros is about 1 MiB of gzip: /api/events (16 MiB) stops decoding at
    // its limit; 10 MiB of zeros is 10 KB of gzip, over the 100:1 ratio; on /v1/batch 100 MiB
    // of zeros (100 KB of gzip) stops at Segment's 500 KB.
    let before = peak_rss_kib(tg.pid());
    let gib = zero_bomb(1024);
    assert!(gib.len() < 2 << 20, "{}", gib.len());
    for (path, bomb, says) in [
        ("/api/events", gib, "16384 KB"),
        ("/api/events", zero_bomb(10), "compression ratio"),
        ("/v1/batch", zero_bomb(100), "500 KB"),
    ] {
        let (status, body) =
            text(send(path, "application/json", "gzip", bomb).await.unwrap()).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    let grew = peak_rss_kib(tg.pid()).saturating_sub(before);
    assert!(
        grew < 64 * 1024,
        "tollgate's peak RSS grew by {grew} KiB decoding bombs"
    );
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 6);
}

/// Where `.ci/deps test` installed the client SDKs (as tests/segment.rs).
fn clients_dir() -> std::path::PathBuf {
    std::env::var_os("TOLLGATE_CLIENTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tollgate/clients")
        })
}

/// RudderStack's official Python SDK, unchanged: it gzips every batch by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rudderstack_python_sdk_with_its_default_gzip() {
    let python = clients_dir().join("venv/bin/python");
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_WRITE_KEYS", "rudder-key")]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/rudder_client.py");
    let anon = uuid::Uuid::new_v4().to_string();
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", tg.admin))
        .arg("rudder-key")
        .arg(&anon)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}: run `bash .ci/deps test`", python.display()));
    assert!(
        out.status.success(),
        "rudder-sdk-python: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("gzip=True"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rows = tg
        .query("SELECT name, user_id, visitor_id::VARCHAR, props->>'revenue', source FROM events ORDER BY name")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                json!("Order Completed"),
                json!("rudder-user"),
                json!(anon),
                json!("49"),
                json!("segment")
            ],
            vec![
                json!("identify"),
                json!("rudder-user"),
                json!(anon),
                Value::Null,
                json!("segment")
            ],
        ]
    );
}

/// A real browser: a page on another origin cannot write through the admin API, and the
/// dashboard signs in with a session cookie that scripts cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_cross_site_pages_cannot_write_and_the_dashboard_signs_in() {
    let up = Upstream::start().await;
    let open = Tollgate::start(&up.url(), "");
    let b = Browser::launch().await;
    // The shop, through tollgate's proxy, as http://localhost:<port>: another site.
    b.goto(&format!("http://localhost:{}/page/1", open.proxy.port()))
        .await;
    let target = open.admin_url("/api/events");
    let fired = b
        .eval(&format!(
            "Promise.all([\
               fetch({t:?}, {{method: 'POST', mode: 'no-cors', headers: {{'content-type': 'text/plain'}}, body: '{{\"name\": \"forged\", \"user_id\": \"victim\"}}'}}).then(() => 'sent', e => String(e)),\
               fetch({t:?}, {{method: 'POST', mode: 'no-cors', body: new Blob(['{{\"name\": \"forged\", \"user_id\": \"victim\"}}'])}}).then(() => 'sent', e => String(e)),\
               fetch({t:?}, {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: '{{\"name\": \"forged\", \"user_id\": \"victim\"}}'}}).then(() => 'sent', e => 'blocked'),\
             ]).then(r => r.join(','))",
            t = target
        ))
        .await;
    assert_eq!(fired, json!("sent,sent,blocked"));
    // And an old-fashioned form post.
    b.eval(&format!(
        "(() => {{ const f = document.createElement('form'); f.method = 'POST'; f.action = {target:?}; \
         f.enctype = 'text/plain'; const i = document.createElement('input'); i.name = '{{\"name\": \"forged\", \"user_id\": \"victim\", \"x\": \"'; \
         i.value = '\"}}'; f.appendChild(i); document.body.appendChild(f); f.submit(); return true; }})()"
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        open.count("SELECT count(*) FROM events WHERE name = 'forged'")
            .await,
        0
    );
    drop(open);

    // With a token: the dashboard asks for it, signs in, and works on its session cookie.
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_SERVER_ADMIN_TOKEN", TOKEN)]);
    b.goto(&tg.admin_url("/")).await;
    b.wait_for(
        "document.querySelector('#login').open",
        Duration::from_secs(20),
    )
    .await;
    b.type_text("#login-token", TOKEN).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_for(
        "!document.querySelector('#login').open && document.body.dataset.busy === '0' && document.querySelector('#kpi-visitors') && document.querySelector('#kpi-visitors').dataset.value",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(b.eval("document.cookie").await, json!(""), "HttpOnly");
    let n = b
        .eval("fetch('/api/query', {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({sql: 'SELECT 42 AS n'})}).then(r => r.json()).then(j => j.rows[0][0])")
        .await;
    assert_eq!(n, json!(42));
    let out = b
        .eval("fetch('/api/logout', {method: 'POST'}).then(r => fetch('/api/sinks')).then(r => r.status)")
        .await;
    assert_eq!(out, json!(401), "signed out");
}
