//! End-to-end: a real tollgate process in front of real upstreams, spoken to over HTTP, with
//! assertions on headers, cookies, bodies and rows in the store.

mod common;

use common::upstream::{self, Upstream};
use common::{end_to_end, free_port, jar_client, tollgate_cmd, Nginx, Tollgate};
use futures_util::{SinkExt, StreamExt};
use reqwest::header::HeaderMap;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().no_gzip().build().unwrap()
}

fn cookie_value(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|r| r.split(';').next().unwrap().to_string())
        })
}

/// One visitor's pages in order: the later pages carry the cookie the first one set, and what the
/// backend saw is checked over all of them, so the steps stay in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_across_pages() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let client = jar_client();

    let mut visitor_cookie = None;
    let mut request_ids = HashSet::new();
    for n in 1..=3 {
        let resp = client
            .get(tg.url(&format!("/page/{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        request_ids.insert(rid);
        if n == 1 {
            visitor_cookie = cookie_value(resp.headers(), "tg_vid");
            let set: Vec<_> = resp.headers().get_all("set-cookie").iter().collect();
            let vid = set
                .iter()
                .find(|v| v.to_str().unwrap().starts_with("tg_vid="))
                .unwrap();
            let vid = vid.to_str().unwrap();
            for attr in ["Path=/", "Max-Age=34560000", "SameSite=Lax", "HttpOnly"] {
                assert!(vid.contains(attr), "{attr} missing in {vid}");
            }
        } else {
            assert_eq!(
                cookie_value(resp.headers(), "tg_vid"),
                None,
                "visitor cookie re-issued"
            );
        }
        assert!(
            cookie_value(resp.headers(), "tg_sid").is_some(),
            "session cookie must slide"
        );
        resp.text().await.unwrap();
    }
    // `<visitor id>.<signature>`: the backend gets the id alone.
    let cookie = visitor_cookie.expect("first response sets tg_vid");
    let (visitor, signature) = cookie.split_once('.').expect("a signed visitor cookie");
    assert_eq!(signature.len(), 22, "{cookie}");
    let visitor = visitor.to_string();
    assert_eq!(request_ids.len(), 3);

    let n = tg
        .wait_count("SELECT count(*) FROM events WHERE name = 'page_view'", 3)
        .await;
    assert_eq!(n, 3);
    let rows = tg
        .query("SELECT count(DISTINCT visitor_id), count(DISTINCT session_id), min(visitor_id)::VARCHAR, count(DISTINCT request_id) FROM events WHERE name = 'page_view'")
        .await;
    assert_eq!(rows[0][0], 1);
    assert_eq!(rows[0][1], 1);
    assert_eq!(rows[0][2], visitor.as_str());
    assert_eq!(rows[0][3], 3);

    // What the backend saw.
    let seen: Vec<_> = up
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/page/"))
        .collect();
    assert_eq!(seen.len(), 3);
    let rids: HashSet<_> = seen
        .iter()
        .map(|s| s.headers["x-request-id"].clone())
        .collect();
    assert_eq!(rids.len(), 3, "X-Request-ID must differ per request");
    assert_eq!(
        rids.iter()
            .map(|h| h.to_str().unwrap().to_string())
            .collect::<HashSet<_>>(),
        request_ids
    );
    for s in &seen {
        assert_eq!(s.headers["x-visitor-id"], visitor.as_str());
        assert_eq!(s.headers["x-session-id"], seen[0].headers["x-session-id"]);
        assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(s.headers["x-forwarded-proto"], "http");
        assert_eq!(
            s.headers["host"],
            tg.proxy.to_string().as_str(),
            "Host is preserved"
        );
    }
    let stored_sessions = tg
        .query("SELECT DISTINCT session_id::VARCHAR FROM events")
        .await;
    assert_eq!(
        stored_sessions[0][0],
        seen[0].headers["x-session-id"].to_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_new_visitors_and_tampering() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let a = jar_client();
    let b = jar_client();
    let ra = a.get(tg.url("/page/a")).send().await.unwrap();
    let rb = b.get(tg.url("/page/b")).send().await.unwrap();
    let va = cookie_value(ra.headers(), "tg_vid").unwrap();
    let vb = cookie_value(rb.headers(), "tg_vid").unwrap();
    assert_ne!(va, vb, "a second client gets another visitor id");

    // A tampered visitor cookie is replaced, never trusted.
    let raw = plain_client();
    for bad in [
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
        "../../etc",
        "' OR 1=1",
        // Well formed, but not signed by this tollgate.
        "5b0e2a1c-1111-4222-8333-944445555666",
    ] {
        let resp = raw
            .get(tg.url("/page/t"))
            .header("cookie", format!("tg_vid={bad}"))
            .send()
            .await
            .unwrap();
        let new = cookie_value(resp.headers(), "tg_vid").expect("replacement cookie");
        assert!(!new.starts_with(bad), "{bad} kept");
        let id = new.split('.').next().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{new}");
    }
    // A request id is kept when well formed and replaced otherwise.
    let resp = raw
        .get(tg.url("/page/r"))
        .header("x-request-id", "client-req.42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-req.42");
    let resp = raw
        .get(tg.url("/page/r"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(rid).is_ok(), "{rid}");

    // Upstream cookies are kept intact, and tollgate's are appended.
    let resp = raw.get(tg.url("/cookies")).send().await.unwrap();
    let all: Vec<_> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(all[0], "app_session=abc; Path=/; HttpOnly");
    assert_eq!(all[1], "theme=dark; Path=/");
    assert!(all[2..].iter().any(|c| c.starts_with("tg_vid=")));
    assert!(all[2..].iter().any(|c| c.starts_with("tg_sid=")));

    let n = tg
        .wait_count("SELECT count(DISTINCT visitor_id) FROM events", 10)
        .await;
    assert_eq!(
        n, 10,
        "a, b, 5 tampered, 2 request-id probes and /cookies: 10 cookie-less visitors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_and_rules() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(
        &up.url(),
        r#"
[[capture.rules]]
name = "register"
method = "POST"
path = "/api/register"
status = "2xx"
"#,
    );
    let c = jar_client();
    let r = c
        .get(tg.url("/api/products/42?token=s3cret&ref=home"))
        .header("accept", "application/json")
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-dest", "empty")
        .header("referer", "http://shop.test/products")
        .header("user-agent", "tollgate-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(tg.url("/api/register"))
        .form(&[("email", "a@b.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A HEAD and a prefetch are not page views.
    c.head(tg.url("/page/h")).send().await.unwrap();
    c.get(tg.url("/page/p"))
        .header("sec-purpose", "prefetch")
        .send()
        .await
        .unwrap();

    tg.wait_count("SELECT count(*) FROM events", 4).await;
    let rows = tg
        .query("SELECT name, route, path, query, status, method, referrer, user_agent, ip, bytes_out > 0, duration_ms >= 0 FROM events WHERE path = '/api/products/42'")
        .await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r[0], "api_call");
    assert_eq!(r[1], "/api/products/:id");
    assert_eq!(r[3], "token=[redacted]&ref=home");
    assert_eq!(r[4], 200);
    assert_eq!(r[5], "GET");
    assert_eq!(r[6], "http://shop.test/products");
    assert_eq!(r[7], "tollgate-test/1.0");
    assert_eq!(r[8], "127.0.0.0", "the IP is truncated to /24 by default");
    assert_eq!(r[9], true);
    assert_eq!(r[10], true);

    let rows = tg
        .query("SELECT name, status FROM events WHERE path = '/api/register'")
        .await;
    assert_eq!(
        rows,
        vec![vec![serde_json::json!("register"), serde_json::json!(201)]]
    );
    let rows = tg
        .query("SELECT name FROM events WHERE path IN ('/page/h', '/page/p') ORDER BY path")
        .await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r[0] != "page_view"), "{rows:?}");
}

async fn fetch(c: &reqwest::Client, url: &str) -> (u16, HeaderMap, Vec<u8>) {
    let r = c
        .get(url)
        .header("accept-encoding", "gzip")
        .header("accept", "text/html,*/*")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

async fn assert_same(c: &reqwest::Client, direct: &str, proxied: &str) {
    let (s1, h1, b1) = fetch(c, direct).await;
    let (s2, h2, b2) = fetch(c, proxied).await;
    assert_eq!(s1, s2, "status of {proxied}");
    assert_eq!(b1.len(), b2.len(), "body length of {proxied}");
    assert!(b1 == b2, "body of {proxied} differs");
    assert_eq!(end_to_end(&h1), end_to_end(&h2), "headers of {proxied}");
    assert!(h2.contains_key("x-request-id"));
}

/// One list of what passes untouched (pages, nginx's static files, uploads, WebSocket, SSE),
/// each a few lines against the same upstreams; it reads best as one list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_exact_passthrough() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let c = plain_client();
    for path in [
        "/page/1", "/gz", "/json", "/bin", "/chunked", "/404", "/500",
    ] {
        assert_same(&c, &format!("{}{path}", up.url()), &tg.url(path)).await;
    }
    let (_, h, body) = fetch(&c, &tg.url("/gz")).await;
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(body, upstream::gzip_html(), "gzip body passes untouched");
    let (_, h, _) = fetch(&c, &tg.url("/chunked")).await;
    assert_eq!(h["transfer-encoding"], "chunked");

    // The same against nginx serving static files (sendfile, ETag, Last-Modified, ranges).
    let root = common::temp_dir();
    std::fs::write(root.path().join("index.html"), upstream::html("nginx")).unwrap();
    std::fs::write(root.path().join("data.json"), r#"{"a":1}"#).unwrap();
    std::fs::write(
        root.path().join("big.bin"),
        common::pseudo_random(upstream::BIN_SIZE, 3),
    )
    .unwrap();
    let nginx = Nginx::serve(root.path());
    let tg2 = Tollgate::start(&format!("http://{}", nginx.addr), "");
    for path in ["/index.html", "/data.json", "/big.bin", "/missing.html"] {
        assert_same(&c, &format!("http://{}{path}", nginx.addr), &tg2.url(path)).await;
    }

    // A 20 MiB upload arrives intact.
    let big = common::pseudo_random(20 * 1024 * 1024, 11);
    let want = format!("{} {:016x}", big.len(), common::fnv1a(&big));
    let r = c.post(tg.url("/upload")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), want);

    // A chunked upload (unknown length) too.
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = (0..8)
        .map(|i| Ok(common::pseudo_random(100_000, i)))
        .collect();
    let all: Vec<u8> = parts
        .iter()
        .flat_map(|p| p.as_ref().unwrap().clone())
        .collect();
    let r = c
        .post(tg.url("/upload"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        format!("{} {:016x}", all.len(), common::fnv1a(&all))
    );

    // WebSocket echo through the proxy.
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", tg.proxy))
        .await
        .expect("websocket upgrade through tollgate");
    assert_eq!(resp.status(), 101);
    for msg in ["hello", "tollgate"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(msg))
            .await
            .unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), msg);
    }
    ws.close(None).await.unwrap();

    // SSE streams: the first event arrives before the upstream has finished.
    let start = Instant::now();
    let mut r = c.get(tg.url("/sse")).send().await.unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = start.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("tick 0"));
    let mut rest = Vec::new();
    while let Some(ch) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&ch);
    }
    assert!(String::from_utf8_lossy(&rest).contains("tick 2"));
    assert!(
        first_at < Duration::from_millis(500),
        "first SSE event took {first_at:?}: buffered?"
    );
    assert!(start.elapsed() >= Duration::from_millis(550));
}

/// Make a CA and a certificate for `localhost` signed by it, with the openssl CLI.
///
/// Long, but one openssl command after another, each reading the files the one before wrote.
fn test_pki(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is not installed: run `bash .ci/test` (it installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tollgate test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
        "-days",
        "2",
        "-subj",
        "/CN=some other CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_sni_and_verification() {
    let pki = common::temp_dir();
    test_pki(pki.path());
    let root = common::temp_dir();
    std::fs::write(root.path().join("index.html"), upstream::html("tls")).unwrap();
    let nginx = Nginx::serve_tls(
        root.path(),
        &pki.path().join("srv.pem"),
        &pki.path().join("srv.key"),
    );
    let url = format!("https://localhost:{}", nginx.addr.port());
    let c = plain_client();

    // The system trust store (rustls-native-certs honours SSL_CERT_FILE) holds our CA: the
    // certificate verifies against the SNI name `localhost`.
    let ca = pki.path().join("ca.pem");
    let tg = Tollgate::start_with_env(&url, "", &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    let r = c.get(tg.url("/index.html")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", tg.log());
    assert_eq!(r.text().await.unwrap(), upstream::html("tls"));

    // Trusting only another CA, the certificate is unknown: 502, never an unverified
    // connection.
    let other = pki.path().join("other.pem");
    let tg2 = Tollgate::start_with_env(&url, "", &[("SSL_CERT_FILE", other.to_str().unwrap())]);
    let r = c.get(tg2.url("/index.html")).send().await.unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstreams() {
    // Nothing listens on this port.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let tg = Tollgate::start(&dead, "");
    let c = plain_client();
    let start = Instant::now();
    let r = c
        .get(tg.url("/page/x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), 502);
    assert!(took < Duration::from_secs(1), "502 took {took:?}");
    assert!(r.headers().contains_key("x-request-id"));

    let up = Upstream::start().await;
    let tg2 = Tollgate::start(&up.url(), "[upstream]\nread_timeout_ms = 700\n");
    let start = Instant::now();
    let r = c
        .get(tg2.url("/hang"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), 504);
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "504 after {took:?}"
    );

    assert_eq!(
        tg.wait_count("SELECT count(*) FROM events WHERE status = 502", 1)
            .await,
        1
    );
    assert_eq!(
        tg2.wait_count("SELECT count(*) FROM events WHERE status = 504", 1)
            .await,
        1
    );
    let rows = tg.query("SELECT name, path FROM events").await;
    assert_eq!(rows[0][0], "page_view");
    assert_eq!(rows[0][1], "/page/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_loss_under_load_and_on_sigterm() {
    let up = Upstream::start().await;
    let mut tg = Tollgate::start(&up.url(), "");
    let c = plain_client();
    const N: usize = 10_000;
    const CONCURRENCY: usize = 32;
    let url = tg.url("/page/load");
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in (w..N).step_by(CONCURRENCY) {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                ok += 1;
            }
            ok
        }));
    }
    let mut served = 0;
    for t in tasks {
        served += t.await.unwrap();
    }
    assert_eq!(served, N);
    // SIGTERM right away: whatever is still queued must be flushed before exit.
    let status = tg.terminate();
    assert!(status.success(), "exit status {status}:\n{}", tg.log());
    let out = tg.query_csv(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS ids, max(seq) - min(seq) + 1 AS span FROM events",
    );
    assert_eq!(out, format!("n,ids,span\n{N},{N},{N}\n"));
}

/// SIGTERM while a response is streaming: the proxy workers stop accepting, close idle
/// keep-alive connections at once, and let the response finish within the grace period; its
/// event is then flushed before exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_responses_finish() {
    let up = Upstream::start().await;
    // (The harness starts tollgate with a grace of 0, which cuts the stream: that is its job.)
    let mut tg = Tollgate::start_with_env(
        &up.url(),
        "",
        &[("TOLLGATE_SERVER_SHUTDOWN_GRACE_SECS", "5")],
    );
    // A kept-alive connection with nothing in flight: it must not hold the exit up.
    let idle = plain_client();
    idle.get(tg.url("/page/idle"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let c = plain_client();
    let mut resp = c.get(tg.url("/sse")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp
        .chunk()
        .await
        .unwrap()
        .expect("the first tick")
        .to_vec();
    let signalled = Instant::now();
    tg.signal(libc::SIGTERM);
    // The upstream sends the other two ticks 300 ms apart, after the signal.
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => panic!("the stream was cut: {e:?}\n{}", tg.log()),
        }
    }
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "data: tick 0\n\ndata: tick 1\n\ndata: tick 2\n\n"
    );
    let status = tg.terminate();
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}:\n{}", tg.log());
    // Well inside the 5 s grace: only the streaming response was waited for.
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
    let out = tg.query_csv("SELECT path FROM events ORDER BY seq");
    assert_eq!(out, "path\n/page/idle\n/sse\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_store_never_breaks_the_site() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(
        &up.url(),
        "[pipeline]\nflush_interval_ms = 50\nqueue_capacity = 100\n",
    );
    let c = plain_client();
    for _ in 0..20 {
        c.get(tg.url("/page/before"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    assert_eq!(tg.wait_count("SELECT count(*) FROM events", 20).await, 20);

    // Make the store unwritable: no file of this process may grow any more (RLIMIT_FSIZE
    // applies to root too). Every WAL append now fails.
    let lim = libc::rlimit {
        rlim_cur: 1,
        rlim_max: libc::RLIM_INFINITY,
    };
    let rc = unsafe { libc::prlimit(tg.pid(), libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit failed: {}", std::io::Error::last_os_error());

    for i in 0..600 {
        let (path, want) = match i % 3 {
            0 => ("/page/after", 200),
            1 => ("/404", 404),
            _ => ("/api/products/7", 200),
        };
        let r = c.get(tg.url(path)).send().await.unwrap();
        assert_eq!(r.status(), want, "request {i} to {path}");
        r.bytes().await.unwrap();
    }
    // Analytics degrade visibly: failed batches and dropped events are counted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = c
        .get(tg.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("tollgate_store_batches_failed_total") > 0.0,
        "{metrics}"
    );
    let dropped = value("tollgate_events_dropped_total{reason=\"queue_full\"}")
        + value("tollgate_events_dropped_total{reason=\"store_error\"}");
    assert!(dropped > 0.0, "{metrics}");
    let ready: serde_json::Value = c
        .get(tg.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(ready["store"], "ok", "{ready}");
}

/// Long, but mostly a table of refused statements, then the few that must work: one list of what
/// the SQL endpoint allows, which reads best whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_sql() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let c = plain_client();
    c.get(tg.url("/page/1")).send().await.unwrap();
    tg.wait_count("SELECT count(*) FROM events", 1).await;

    let refused = [
        ("DROP TABLE events", "DROP"),
        ("COPY events TO '/tmp/x.csv'", "COPY"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("ATTACH '/tmp/other.duckdb' AS o", "ATTACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("DELETE FROM events", "DELETE"),
        ("UPDATE events SET name = 'x'", "UPDATE"),
        ("INSERT INTO events SELECT * FROM events", "INSERT"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("SET enable_external_access = true", "SET"),
        ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
        ("SELECT 1; DROP TABLE events", "one statement"),
        ("SELECT * FROM glob('/*')", "glob"),
        ("SELECT getenv('HOME')", "getenv"),
        ("SELECT * FROM query('DROP TABLE events')", "query"),
    ];
    for (sql, mention) in refused {
        let r = c
            .post(tg.admin_url("/api/query"))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 403, "{sql}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.starts_with("refused:"), "{sql}: {msg}");
        assert!(
            msg.contains(mention),
            "{sql}: {msg} should mention {mention}"
        );
    }
    assert!(
        !std::path::Path::new("/tmp/x.csv").exists()
            || std::fs::metadata("/tmp/x.csv")
                .unwrap()
                .modified()
                .unwrap()
                .elapsed()
                .unwrap()
                > Duration::from_secs(60)
    );

    // A syntax error is a 400 that says where.
    let r = c
        .post(tg.admin_url("/api/query"))
        .json(&serde_json::json!({ "sql": "SELEC 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // SELECTs work, through the API and through the CLI while the server holds the file.
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 1);
    let rows = tg
        .query("WITH p AS (SELECT path FROM events) SELECT path FROM p")
        .await;
    assert_eq!(rows[0][0], "/page/1");
    let (ok, out, err) = tollgate_cmd(&[
        "query",
        "--data",
        tg.data_dir().to_str().unwrap(),
        "--format",
        "json",
        "SELECT name, path FROM events",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["path"], "/page/1");
    let (ok, _, err) = tollgate_cmd(&[
        "query",
        "--data",
        tg.data_dir().to_str().unwrap(),
        "DROP TABLE events",
    ]);
    assert!(!ok);
    assert!(err.contains("refused"), "{err}");
    assert_eq!(
        tg.count("SELECT count(*) FROM events").await,
        1,
        "events survived"
    );
}

#[test]
fn config_errors_are_all_reported() {
    let dir = common::temp_dir();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        r#"
[server]
listen = "localhost"

[upstream]
url = "localhost:3000"

[[capture.rules]]
name = "register"
status = "7xx"
"#,
    )
    .unwrap();
    let (ok, out, err) = tollgate_cmd(&["check", "--config", p.to_str().unwrap()]);
    assert!(!ok, "check must fail: {out}");
    for key in ["server.listen", "upstream.url", "capture.rules[0].status"] {
        assert!(err.contains(key), "{key} not named in:\n{err}");
    }
    assert!(err.contains("3 configuration problems"), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[upstream]\nurl = \"http://127.0.0.1:3000\"\n").unwrap();
    let (ok, out, err) = tollgate_cmd(&["check", "--config", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("ok"));

    // The documented example config is valid as shipped.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tollgate.toml");
    let (ok, _, err) = tollgate_cmd(&["check", "--config", shipped]);
    assert!(ok, "config/tollgate.toml: {err}");
}

/// Each of `pid`'s threads: its id, name and nice value (field 19 of its stat).
fn thread_nice(pid: i32) -> Vec<(i32, String, i64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        let tid = dir.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // The fields after the parenthesised name start with the state, field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = rest.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((tid, comm.trim().to_string(), nice));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_threads_can_run_behind_the_proxy() {
    let up = Upstream::start().await;
    let c = plain_client();
    // Default: everything at the process's own priority.
    let tg = Tollgate::start(&up.url(), "");
    assert_eq!(c.get(tg.url("/page/1")).send().await.unwrap().status(), 200);
    let threads = thread_nice(tg.pid());
    assert!(threads.iter().all(|(_, _, n)| *n == 0), "{threads:?}");
    drop(tg);

    let tg = Tollgate::start(
        &up.url(),
        "[pipeline]\nbackground_nice = 10\n[store]\nthreads = 2\n",
    );
    assert_eq!(c.get(tg.url("/page/1")).send().await.unwrap().status(), 200);
    // At rest DuckDB has one thread, its caller's; a query borrows the whole share, and DuckDB
    // starts its worker thread then.
    assert_eq!(
        tg.wait_count("SELECT count(*) FROM events WHERE path = '/page/1'", 1)
            .await,
        1
    );
    let threads = thread_nice(tg.pid());
    let nice_of = |name: &dyn Fn(i32, &str) -> bool| -> Vec<i64> {
        threads
            .iter()
            .filter(|(tid, n, _)| name(*tid, n))
            .map(|(_, _, v)| *v)
            .collect()
    };
    assert_eq!(nice_of(&|_, n| n == "tollgate-writer"), [10], "{threads:?}");
    let proxy = nice_of(&|_, n| n.starts_with("tollgate-proxy"));
    assert!(
        !proxy.is_empty() && proxy.iter().all(|n| *n == 0),
        "{threads:?}"
    );
    // DuckDB's worker threads carry the process's name, as the main thread does: all but the
    // main thread (whose id is the pid) run behind the proxy.
    let duckdb = nice_of(&|tid, n| n == "tollgate" && tid != tg.pid());
    assert!(
        !duckdb.is_empty() && duckdb.iter().all(|n| *n == 10),
        "DuckDB's threads: {threads:?}"
    );
}
