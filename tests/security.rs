//! Abuse, tried as an attacker would, against a real tollgate: the SQL console cannot write and
//! is bounded in time, bytes and concurrency; a visitor cannot claim a backend event's id; the
//! public port is bounded in cost per request (field caps, floods, the browser endpoint's
//! limits, slow headers, connection cap); visitor cookies are signed; pipelined requests are
//! answered. Each test checks the store afterwards.

mod common;

use common::upstream::Upstream;
use common::{jar_client, Tollgate};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// POST `/api/query`; the status and the JSON answer.
async fn console(tg: &Tollgate, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(tg.admin_url("/api/query"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Poll the console with a trivial query until a slot is free (429 until then); fail after
/// `within`: the query holding the slot was not stopped.
async fn wait_for_a_console_slot(tg: &Tollgate, within: Duration) {
    let start = Instant::now();
    loop {
        let (status, _) = console(tg, json!({"sql": "SELECT 1"})).await;
        if status == 200 {
            return;
        }
        assert_eq!(status, 429);
        assert!(
            start.elapsed() < within,
            "the console slot was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server's metrics have `line`: `name{labels} value` exactly, or, without a value, that
/// series with any value.
async fn assert_metric(tg: &Tollgate, line: &str) {
    let m = tg.metrics().await;
    let found = if line.contains(' ') {
        m.lines().any(|l| l == line)
    } else {
        m.lines()
            .any(|l| l.strip_prefix(line).is_some_and(|v| v.starts_with(' ')))
    };
    assert!(found, "no `{line}` in:\n{m}");
}

/// POST NDJSON or JSON to `/api/events`.
async fn api_events(tg: &Tollgate, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(tg.admin_url("/api/events"))
        .header("content-type", "application/x-ndjson")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// POST to the browser endpoint with `headers`; the status, the JSON answer and the headers.
async fn collect(
    c: &reqwest::Client,
    tg: &Tollgate,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = c
        .post(tg.url("/_tollgate/e"))
        .header("content-type", "text/plain")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), h)
}

/// Peak and current resident memory of a process, in MiB (`/proc/PID/status`).
fn memory_mib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_cannot_write() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let c = jar_client();
    c.get(tg.url("/page/1")).send().await.unwrap();
    let (status, _) = api_events(
        &tg,
        r#"{"name":"purchase","user_id":"alice","message_id":"order-1001","props":{"value":1299}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let r = reqwest::Client::new()
        .post(tg.admin_url("/api/forget"))
        .json(&json!({"user_id": "someone-else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tg.wait_count("SELECT count(*) FROM events", 2).await, 2);
    let before = tg
        .query("SELECT seq, event_id::VARCHAR, user_id, name FROM events ORDER BY seq")
        .await;

    for sql in [
        "WITH x AS (DELETE FROM events RETURNING *) SELECT * FROM x",
        "WITH x AS (UPDATE events SET user_id = 'mallory' RETURNING *) SELECT count(*) FROM x",
        "WITH x AS (INSERT INTO events (seq, event_id, ts, received_at, site, name, user_id) \
         VALUES (999, uuid(), now(), now(), 'default', 'purchase', 'mallory') RETURNING *) \
         SELECT * FROM x",
        "WITH x AS (DELETE FROM forget_requests RETURNING *) SELECT * FROM x",
        "WITH a AS (SELECT 1), x AS (DELETE FROM event_keys RETURNING *) SELECT * FROM x, a",
        "SELECT * FROM (WITH x AS (DELETE FROM events RETURNING seq) SELECT * FROM x) t",
        "DELETE FROM events",
        "CREATE TEMP TABLE t AS SELECT 1",
    ] {
        let (status, body) = console(&tg, json!({ "sql": sql })).await;
        assert_eq!(status, 403, "{sql}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("read-only") || msg.contains("not allowed"),
            "{sql}: {msg}"
        );
    }
    // The CLI goes through the same path while the server runs.
    let data = tg.data_dir();
    let (ok, out, err) = common::tollgate_cmd(&[
        "query",
        "--data",
        data.to_str().unwrap(),
        "WITH x AS (DELETE FROM events RETURNING *) SELECT count(*) FROM x",
    ]);
    assert!(!ok, "the CLI ran a deleting CTE: {out}");
    assert!(
        err.contains("read-only") || err.contains("not allowed"),
        "{err}"
    );

    let after = tg
        .query("SELECT seq, event_id::VARCHAR, user_id, name FROM events ORDER BY seq")
        .await;
    assert_eq!(before, after, "the store changed");
    assert_eq!(tg.count("SELECT count(*) FROM forget_requests").await, 1);
    assert_eq!(tg.count("SELECT count(*) FROM event_keys").await, 1);
    // Reads still work, CTEs included.
    let (status, body) = console(
        &tg,
        json!({"sql": "WITH p AS (SELECT * FROM events WHERE name = 'purchase') SELECT count(*) AS n FROM p UNION ALL SELECT 2"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([[1], [2]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_queries_are_bounded_in_time_bytes_rows_and_number() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(
        &up.url(),
        "[console]\ntimeout_secs = 2\nmax_concurrent = 1\nmax_bytes = 100000\n",
    );
    let pid = tg.pid();
    // Warm up, then measure what a huge result costs the server.
    assert_eq!(console(&tg, json!({"sql": "SELECT 1"})).await.0, 200);
    let (_, rss_before) = memory_mib(pid);

    // Rows: a hundred million rows asked, five given, without reading the rest.
    let t = Instant::now();
    let (status, body) = console(
        &tg,
        json!({"sql": "SELECT * FROM range(100000000)", "max_rows": 5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().unwrap().len(), 5);
    assert_eq!(
        (&body["truncated"], &body["truncated_by"]),
        (&json!(true), &json!("rows"))
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // Bytes: a 30 MB value is not sent (nor copied out of DuckDB).
    let (status, body) = console(&tg, json!({"sql": "SELECT repeat('x', 30000000) AS x"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([]));
    assert_eq!(body["truncated_by"], json!("bytes"));
    let (status, body) = console(
        &tg,
        json!({"sql": "SELECT range, 'abcdefghij' FROM range(100000)"}),
    )
    .await;
    assert_eq!(status, 200);
    let rows = body["rows"].as_array().unwrap().len();
    assert!(rows > 1000 && rows < 100_000, "{rows} rows");
    assert!(body.to_string().len() <= 100_000, "answer over max_bytes");
    let (_, rss_after) = memory_mib(pid);
    assert!(
        rss_after < rss_before + 400,
        "RSS grew from {rss_before} to {rss_after} MiB"
    );

    // Time: a cross join is stopped at the deadline, and its slot comes back.
    let heavy = "SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000000) b";
    let t = Instant::now();
    let (status, body) = console(&tg, json!({ "sql": heavy })).await;
    assert_eq!(status, 504, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("console.timeout_secs"));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    wait_for_a_console_slot(&tg, Duration::from_secs(3)).await;

    // Number: with one slot busy, another query is told to wait.
    let admin = tg.admin_url("/api/query");
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .post(admin)
            .json(&json!({ "sql": heavy }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = console(&tg, json!({"sql": "SELECT 1"})).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("console.max_concurrent"));
    assert_eq!(slow.await.unwrap(), 504);
    assert_metric(&tg, "tollgate_console_queries_total{outcome=\"timeout\"} 2").await;
    assert_metric(&tg, "tollgate_console_queries_total{outcome=\"busy\"}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_console_query_is_interrupted() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(
        &up.url(),
        "[console]\ntimeout_secs = 120\nmax_concurrent = 1\n",
    );
    let heavy =
        json!({"sql": "SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000000) b"})
            .to_string();
    // The client gives up after a second and closes its connection.
    let mut s = TcpStream::connect(tg.admin).unwrap();
    write!(
        s,
        "POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{heavy}",
        heavy.len()
    )
    .unwrap();
    let (answer, _) = read_until_close(&mut s, Duration::from_secs(1));
    assert!(answer.is_empty(), "the cross join finished?");
    drop(s);
    // Its slot comes back long before the two-minute deadline: the query was stopped.
    wait_for_a_console_slot(&tg, Duration::from_secs(10)).await;
    assert_metric(
        &tg,
        "tollgate_console_queries_total{outcome=\"cancelled\"} 1",
    )
    .await;
}

/// The `event_id` tollgate derives from a backend's `message_id`: a public construction (UUIDv5
/// in a published namespace), exactly what an attacker computes.
fn server_event_id(source: tollgate::event::Source, message_id: &str) -> String {
    tollgate::ingest::native::message_event_id("default", source, message_id).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_cannot_suppress_backend_segment_or_import_events() {
    use tollgate::event::Source;
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_WRITE_KEYS", "wk-1")]);
    let anon = reqwest::Client::new();
    // The attacker claims the ids first, anonymously, on the public port: by event_id and by
    // message_id, for the backend's order and for a Segment message.
    for body in [
        json!({"name": "x", "event_id": server_event_id(Source::Server, "order-1001")}),
        json!({"name": "x", "message_id": "order-1001"}),
        json!({"name": "x", "event_id": server_event_id(Source::Segment, "seg-1")}),
        json!({"name": "x", "message_id": "seg-1"}),
        json!({"name": "x", "event_id": server_event_id(Source::Import, "o-77")}),
    ] {
        let (status, report, _) = collect(&anon, &tg, &body.to_string(), &[]).await;
        assert_eq!(status, 200, "{report}");
    }
    let csv = "name,user_id,timestamp,message_id\npurchase,carol,2026-11-01T10:00:00Z,o-77\n";

    // The real events still land.
    let (status, report) = api_events(
        &tg,
        r#"{"name":"purchase","user_id":"alice","message_id":"order-1001","props":{"value":1299}}"#,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["written"], &report["duplicates"]),
        (&json!(1), &json!(0))
    );
    let seg = reqwest::Client::new()
        .post(tg.admin_url("/v1/track"))
        .basic_auth("wk-1", Some(""))
        .json(&json!({"userId": "bob", "event": "Order Completed", "messageId": "seg-1"}))
        .send()
        .await
        .unwrap();
    let seg: Value = seg.json().await.unwrap();
    assert_eq!(seg["written"], json!(1), "{seg}");
    let imp = reqwest::Client::new()
        .post(tg.admin_url("/api/import"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let imp: Value = imp.json().await.unwrap();
    assert_eq!(imp["written"], json!(1), "{imp}");
    let rows = tg
        .query("SELECT user_id, source FROM events WHERE source <> 'browser' ORDER BY seq")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![json!("alice"), json!("server")],
            vec![json!("bob"), json!("segment")],
            vec![json!("carol"), json!("import")],
        ]
    );
    // And a retried backend call is still one event.
    let (_, again) = api_events(
        &tg,
        r#"{"name":"purchase","user_id":"alice","message_id":"order-1001"}"#,
    )
    .await;
    assert_eq!(again["duplicates"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_fields_are_cut_at_capture() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let c = reqwest::Client::new();
    // 200 KB: more than the test site itself takes would be answered 431 by it.
    let ua = format!("Mozilla/5.0 (X11; Linux x86_64) {}", "A".repeat(200_000));
    let path = format!("/page/{}", "p".repeat(10_000));
    let query = format!("utm_source={}", "q".repeat(10_000));
    let referrer = format!("https://example.org/{}", "r".repeat(10_000));
    let r = c
        .get(tg.url(&format!("{path}?{query}")))
        .header("user-agent", &ua)
        .header("referer", &referrer)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the site is served whatever the analytics");
    assert_eq!(tg.wait_count("SELECT count(*) FROM events", 1).await, 1);
    let row = &tg
        .query(
            "SELECT length(user_agent), length(path), length(query), length(referrer), \
             is_bot, bot_reason, length(utm_source) FROM events",
        )
        .await[0];
    let n = |i: usize| row[i].as_i64().unwrap();
    assert!(n(0) <= 1024, "user_agent {}", n(0));
    assert!(n(1) <= 2048, "path {}", n(1));
    assert!(n(2) <= 4096, "query {}", n(2));
    assert!(n(3) <= 2048, "referrer {}", n(3));
    assert_eq!((&row[4], &row[5]), (&json!(true), &json!("ua:malformed")));
    assert!(n(6) < 4096);
}

/// A flood of requests with huge, distinct user agents, while a backend posts events: each
/// acknowledged post answers within a second, the site's own page views keep being committed,
/// memory stays bounded, SIGTERM finishes, and `kill -9` loses no more than the flush interval.
///
/// Every check measures the same running flood (answer times, commits, memory, SIGTERM, then
/// `kill -9` in its middle), so the flood and its checks stay in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_huge_user_agents_does_not_stall_the_pipeline() {
    let up = Upstream::start().await;
    let mut tg = Tollgate::start(&up.url(), "[pipeline]\nflush_interval_ms = 500\n");
    let pid = tg.pid();
    let base = jar_client();
    base.get(tg.url("/page/warm")).send().await.unwrap();
    let (_, rss0) = memory_mib(pid);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for w in 0..6u64 {
        let url = tg.url("/page/flood");
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut sent = 0u64;
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && sent < 400
                && start.elapsed() < Duration::from_secs(30)
            {
                let ua = format!(
                    "Mozilla/5.0 (X11; flood {w}-{sent}) {}",
                    "B".repeat(900_000)
                );
                if c.get(&url).header("user-agent", ua).send().await.is_ok() {
                    sent += 1;
                }
            }
            sent
        }));
    }
    // Meanwhile: the backend's acknowledged events, and the site's real visitors.
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let (status, r) = api_events(
            &tg,
            &format!(r#"{{"name":"purchase","user_id":"u{i}","message_id":"flood-{i}"}}"#),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        worst = worst.max(t.elapsed());
        base.get(tg.url(&format!("/page/mark-{i}")))
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            )
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        worst < Duration::from_secs(1),
        "an acknowledged submission took {worst:?}"
    );
    // Page views of the site keep being committed during the flood (by age, not only when a
    // batch fills).
    let start = Instant::now();
    while tg
        .count("SELECT count(*) FROM events WHERE path LIKE '/page/mark-%'")
        .await
        < 19
    {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "marked page views are not committed during the flood"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // kill -9 in the middle of the flood: every acknowledged event is there, and every marked
    // page view sent more than a flush interval (0.5 s) before the kill.
    let (hwm, _) = memory_mib(pid);
    let data = tg.data_dir();
    tg.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut flooded = 0;
    for f in flooders {
        flooded += f.await.unwrap();
    }
    assert!(flooded >= 200, "only {flooded} flood requests were sent");
    println!(
        "flood: {flooded} requests with ~900 KB UAs; slowest acknowledged submission {worst:?}; \
         peak RSS {hwm} MiB (from {rss0})"
    );
    assert!(
        hwm < rss0 + 300,
        "memory grew from {rss0} to a peak of {hwm} MiB during the flood"
    );
    let csv = common::tollgate_cmd(&[
        "query",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT (SELECT count(*) FROM events WHERE name = 'purchase'), \
         (SELECT count(*) FROM events WHERE path LIKE '/page/mark-%'), \
         (SELECT count(*) FROM events WHERE path = '/page/flood' AND bot_reason = 'ua:malformed')",
    ]);
    assert!(csv.0, "{}", csv.2);
    let line = csv.1.lines().nth(1).unwrap().to_string();
    let n: Vec<i64> = line.split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(n[0], 20, "acknowledged events lost: {line}");
    assert!(n[1] >= 19, "marked page views lost: {line}");
    assert!(n[2] > 0, "no flood event stored as malformed: {line}");
}

/// SIGTERM in the middle of a flood of huge user agents: the proxy stops accepting, the writer
/// drains what the queue holds, and the process exits in a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_during_a_flood() {
    let up = Upstream::start().await;
    let mut tg = Tollgate::start(&up.url(), "");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..6 {
        let url = tg.url("/page/flood");
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let start = Instant::now();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && i < 400
                && start.elapsed() < Duration::from_secs(30)
            {
                let ua = format!("Mozilla/5.0 (flood {w}-{i}) {}", "C".repeat(900_000));
                let _ = c.get(&url).header("user-agent", ua).send().await;
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    let term = tokio::task::spawn_blocking(move || {
        let status = tg.terminate();
        (status, tg)
    });
    let (status, tg) = term.await.unwrap();
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(status.success(), "{status:?}");
    println!("SIGTERM during a flood: exited in {took:?}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    // What was queued was committed on the way out.
    let data = tg.data_dir();
    let (ok, out, err) = common::tollgate_cmd(&[
        "query",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT count(*) FROM events WHERE bot_reason = 'ua:malformed'",
    ]);
    assert!(ok, "{err}");
    let n: i64 = out.lines().nth(1).unwrap().parse().unwrap();
    assert!(n > 0, "{out}");
}

/// One client's rate bucket and one store: the rate step counts on the requests before it, and
/// the last step checks the store holds exactly what the steps before let through, so the steps
/// stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_endpoint_is_bounded_and_takes_no_forged_history() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(
        &up.url(),
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [ingest]\ncollect_max_items = 5\ncollect_rate = 5\ncollect_burst = 12\n",
    );
    let anon = reqwest::Client::new();
    // Items per request.
    let six = format!("[{}]", [r#"{"name":"click"}"#; 6].join(","));
    let (status, body, _) = collect(&anon, &tg, &six, &[]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("collect_max_items"));
    // Forged history: a campaign visit back-dated to 2001.
    let old = json!({"name": "signup", "ts": "2001-01-01T00:00:00Z", "url": "/?utm_source=forged"});
    let (status, body, _) = collect(&anon, &tg, &old.to_string(), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("from now"));
    // Reserved names, from an anonymous client (no visitor cookie, no fetch metadata).
    for name in ["page_view", "api_call", "asset", "request"] {
        let (status, body, _) =
            collect(&anon, &tg, &json!({ "name": name }).to_string(), &[]).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("reserved"));
    }
    // A visitor tollgate identified, same-origin (the tracker's beacon): its page view counts.
    let browser = jar_client();
    browser.get(tg.url("/page/1")).send().await.unwrap();
    let (status, body, _) = collect(
        &browser,
        &tg,
        r#"{"name":"page_view","url":"/app/cart"}"#,
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The same without fetch metadata (a script, not the tracker) is refused.
    let (status, _, _) = collect(&browser, &tg, r#"{"name":"page_view"}"#, &[]).await;
    assert_eq!(status, 400);
    // Rate: 12 at once, then 5 a second, per client address (here one behind a trusted
    // proxy, with a bucket of its own).
    let from = [("x-forwarded-for", "203.0.113.9")];
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..15 {
        let (status, _, h) = collect(&anon, &tg, r#"{"name":"click"}"#, &from).await;
        if status == 429 {
            retry_after = h
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
        codes.push(status);
    }
    let ok = codes.iter().filter(|c| **c == 200).count();
    assert!((12..=13).contains(&ok), "{codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        collect(&anon, &tg, r#"{"name":"click"}"#, &from).await.0,
        200
    );
    assert_metric(&tg, "tollgate_refused_total{reason=\"collect_rate\"}").await;
    assert_metric(&tg, "tollgate_refused_total{reason=\"collect_items\"} 1").await;

    // What the store holds: the clicks, the one page view the tracker sent, no forgeries.
    let rows = tg
        .query("SELECT name, count(*) FROM events WHERE source = 'browser' GROUP BY name ORDER BY name")
        .await;
    assert_eq!(rows[0][0], json!("click"));
    assert_eq!(rows[1], vec![json!("page_view"), json!(1)]);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        tg.count("SELECT count(*) FROM events WHERE utm_source = 'forged' OR ts < '2020-01-01'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_cost_bounded_memory() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let pid = tg.pid();
    assert_eq!(
        api_events(&tg, r#"{"name":"warm","user_id":"u"}"#).await.0,
        200
    );
    let (_, rss0) = memory_mib(pid);
    // 16 MiB of tiny items: NDJSON, then a JSON array.
    let nd = "{}\n".repeat(16 * 1024 * 1024 / 3 - 10);
    let (status, body) = api_events(&tg, &nd).await;
    let head: String = body.to_string().chars().take(300).collect();
    assert_eq!(status, 413, "{head}");
    assert!(
        body["error"].as_str().unwrap().contains("more than 10000"),
        "{body}"
    );
    let array = format!("[{}]", vec!["{}"; 16 * 1024 * 1024 / 3 - 10].join(","));
    let (status, _) = api_events(&tg, &array).await;
    assert_eq!(status, 413);
    let (hwm, _) = memory_mib(pid);
    println!("16 MiB /api/events bodies of tiny items: peak RSS {hwm} MiB (from {rss0})");
    assert!(
        hwm < rss0 + 200,
        "a 16 MiB body cost {} MiB (from {rss0})",
        hwm - rss0
    );
    // A 16 MiB CSV of rows that are all bad: listed up to a thousand, counted, cheaply.
    let bad_csv = format!(
        "name,timestamp,user_id\n{}",
        "x\n".repeat(8 * 1024 * 1024 - 20)
    );
    let r = reqwest::Client::new()
        .post(tg.admin_url("/api/import"))
        .header("content-type", "text/csv")
        .body(bad_csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["rejected"].as_array().unwrap().len(), 1000);
    assert_eq!(report["rejected_count"], json!(8 * 1024 * 1024 - 20));
    // A CSV of 90,000 good rows is committed in batches, not held whole as events.
    let mut good = String::from("name,timestamp,user_id\n");
    for i in 0..90_000 {
        good.push_str(&format!("n,1700000000000,u{i}\n"));
    }
    let r = reqwest::Client::new()
        .post(tg.admin_url("/api/import"))
        .header("content-type", "text/csv")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        (&report["accepted"], &report["written"]),
        (&json!(90_000), &json!(90_000))
    );
    let (hwm, _) = memory_mib(pid);
    println!("16 MiB bodies (events NDJSON and array, bad CSV) and a 90,000-row CSV: peak RSS {hwm} MiB (from {rss0})");
    assert!(
        hwm < rss0 + 250,
        "16 MiB bodies cost {} MiB (from {rss0})",
        hwm - rss0
    );
    // 10,000 items are still taken.
    let ok = (0..10_000)
        .map(|i| format!(r#"{{"name":"n","user_id":"u{i}"}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    let (status, body) = api_events(&tg, &ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["written"], json!(10_000));
}

/// One attack in order: the victim's id, the attacker's forged and tampered cookies, then the
/// store; each step uses what the one before obtained, so they stay in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_cookies_are_signed_so_a_known_id_cannot_be_taken_over() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    // The victim browses; the site sees its visitor id (and may log it).
    let victim = jar_client();
    victim.get(tg.url("/page/victim")).send().await.unwrap();
    let victim_id = up.seen_for("/page/victim")[0].headers["x-visitor-id"]
        .to_str()
        .unwrap()
        .to_string();
    // The attacker sets that id as a plain cookie and registers: the backend ties the
    // request's visitor to the attacker's account with X-Tollgate-User.
    let r = reqwest::Client::new()
        .post(tg.url("/api/register"))
        .header("cookie", format!("tg_vid={victim_id}"))
        .body("phone=555-0100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let issued: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        issued
            .iter()
            .any(|c| c.starts_with("tg_vid=") && !c.contains(&victim_id)),
        "the forged cookie was not replaced: {issued:?}"
    );
    let upstream_saw = up.seen_for("/api/register")[0].headers["x-visitor-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(
        upstream_saw, victim_id,
        "the backend was told the forged id"
    );
    // A tampered signature is replaced too; the real cookie keeps its visitor.
    let value = issued
        .iter()
        .find_map(|c| c.strip_prefix("tg_vid="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let (id, tag) = value.split_once('.').expect("id.signature");
    assert_eq!(tag.len(), 22);
    let tampered = format!("{id}.{}", "A".repeat(22));
    let r = reqwest::Client::new()
        .get(tg.url("/page/t"))
        .header("cookie", format!("tg_vid={tampered}"))
        .send()
        .await
        .unwrap();
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("tg_vid=")));
    let r = reqwest::Client::new()
        .get(tg.url("/page/ok"))
        .header("cookie", format!("tg_vid={value}"))
        .send()
        .await
        .unwrap();
    assert!(!r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("tg_vid=")));
    assert_eq!(up.seen_for("/page/ok")[0].headers["x-visitor-id"], id);

    // The store: the victim's visitor is tied to no user.
    tg.wait_count("SELECT count(*) FROM events", 4).await;
    assert_eq!(
        tg.count(&format!(
            "SELECT count(*) FROM identities WHERE visitor_id = '{victim_id}'"
        ))
        .await,
        0
    );
}

/// Write `bytes` on a raw connection.
fn raw(tg: &Tollgate) -> TcpStream {
    let s = TcpStream::connect(tg.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Read until the peer closes or `timeout` passes; what was read and whether it closed.
fn read_until_close(s: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while start.elapsed() < timeout {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => {}
        }
    }
    (out, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_connections_are_capped() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(
        &up.url(),
        "[server]\nheader_timeout_secs = 2\nmax_connections = 4\n",
    );
    // A slowloris: a byte every 300 ms, never finishing its header.
    let mut s = raw(&tg);
    s.write_all(b"GET /page/slow HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let start = Instant::now();
    let mut closed_after = None;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(300));
        if s.write_all(b"a").is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let (_, closed) = read_until_close(&mut s, Duration::from_millis(1));
        if closed {
            closed_after = Some(start.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("a slow header kept its connection for 9 s");
    assert!(
        closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}"
    );
    drop(s);
    // A header that arrives in time, even in pieces, is served.
    let mut s = raw(&tg);
    s.write_all(b"GET /page/pieces HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (resp, _) = read_until_close(&mut s, Duration::from_secs(5));
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp)
    );

    // Four connections held open (each served once, then idle in keep-alive) ...
    let mut held = Vec::new();
    for i in 0..4 {
        let mut s = raw(&tg);
        write!(s, "GET /page/held-{i} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    // ... the fifth is closed at once.
    let mut fifth = raw(&tg);
    let _ = fifth.write_all(b"GET /page/fifth HTTP/1.1\r\nHost: x\r\n\r\n");
    let (resp, closed) = read_until_close(&mut fifth, Duration::from_secs(2));
    assert!(
        closed && resp.is_empty(),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // One closed, a new one is served.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut s = raw(&tg);
    s.write_all(b"GET /page/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (resp, _) = read_until_close(&mut s, Duration::from_secs(5));
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_metric(&tg, "tollgate_refused_total{reason=\"header_timeout\"} 1").await;
    assert_metric(&tg, "tollgate_refused_total{reason=\"connection_cap\"} 1").await;
}

/// Read from `s` until `end` shows up in what was read; returns it all.
fn read_to(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(end.len()).any(|w| w == end) {
        let n = s.read(&mut buf).expect("the response in time");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// After a response, the next request's header must arrive within `keepalive_secs` plus
/// `header_timeout_secs`: an idle keep-alive connection is closed then, and so is one that
/// starts its next header and never finishes it. The clock runs only while tollgate waits for
/// a header: a response that takes longer than that to arrive and be sent is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_wait_a_bounded_time_for_the_next_header() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(
        &up.url(),
        "[server]\nheader_timeout_secs = 1\nkeepalive_secs = 1\n",
    );
    let bound = Duration::from_secs(2);

    // Idle after one response.
    let mut s = raw(&tg);
    s.write_all(b"GET /page/idle HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_to(&mut s, b"</html>\n");
    let served = Instant::now();
    let (rest, closed) = read_until_close(&mut s, Duration::from_secs(6));
    let idle = served.elapsed();
    assert!(closed && rest.is_empty(), "an idle connection was kept");
    assert!(
        idle >= bound - Duration::from_millis(300) && idle < bound + Duration::from_millis(1500),
        "idle connection closed after {idle:?}"
    );

    // A second header that never ends.
    let mut s = raw(&tg);
    s.write_all(b"GET /page/one HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_to(&mut s, b"</html>\n");
    let served = Instant::now();
    s.write_all(b"GET /page/two HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let mut closed_after = None;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(300));
        let (_, closed) = read_until_close(&mut s, Duration::from_millis(1));
        if closed || s.write_all(b"a").is_err() {
            closed_after = Some(served.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("a slow second header kept its connection for 9 s");
    assert!(
        closed_after < bound + Duration::from_millis(1500),
        "closed after {closed_after:?}"
    );

    // A response that takes 3.25 s, longer than the bound, then the next request on the same
    // connection.
    let mut s = raw(&tg);
    let start = Instant::now();
    s.write_all(b"GET /drip/14 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_to(&mut s, b"drip 13\n");
    assert!(start.elapsed() > bound, "the slow response was quick");
    assert!(resp.starts_with(b"HTTP/1.1 200"));
    s.write_all(b"GET /page/after HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_to(&mut s, b"</html>\n");
    assert!(
        String::from_utf8_lossy(&resp).contains("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let mut s = raw(&tg);
    s.write_all(
        b"GET /page/one HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /page/two HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /page/three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (resp, closed) = read_until_close(&mut s, Duration::from_secs(5));
    assert!(closed);
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    let (one, two, three) = (
        text.find("Page one").unwrap(),
        text.find("Page two").unwrap(),
        text.find("Page three").unwrap(),
    );
    assert!(one < two && two < three, "{text}");
    assert_eq!(tg.wait_count("SELECT count(*) FROM events", 3).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_never_reach_the_store() {
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_WRITE_KEYS", "wk-1")]);
    // Refused with a reason where the API validates text.
    let (status, body) = api_events(&tg, "{\"name\":\"x\",\"user_id\":\"u\\u001b[31mred\"}").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("control characters"));
    // Refused in a Segment message's context too.
    let r = reqwest::Client::new()
        .post(tg.admin_url("/v1/track"))
        .basic_auth("wk-1", Some(""))
        .json(&json!({"userId": "u", "event": "x", "context": {"userAgent": "Mozilla/5.0 \u{1b}]0;owned\u{7}"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("control characters"));
    // Escaped where it arrives unchecked: a tab in a User-Agent; escaped by JSON in props.
    let mut s = raw(&tg);
    s.write_all(
        b"GET /page/tab HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0\t(X11)\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (resp, _) = read_until_close(&mut s, Duration::from_secs(5));
    assert!(resp.starts_with(b"HTTP/1.1 200"));
    let r = reqwest::Client::new()
        .post(tg.admin_url("/v1/track"))
        .basic_auth("wk-1", Some(""))
        .json(&json!({"userId": "u", "event": "x", "properties": {"note": "a\u{1b}[2Jb"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(tg.wait_count("SELECT count(*) FROM events", 2).await, 2);
    let props = tg
        .query("SELECT props::VARCHAR FROM events WHERE name = 'x'")
        .await;
    assert_eq!(props[0][0], json!(r#"{"note":"a\u001b[2Jb"}"#));
    let bad = tg
        .count(
            "SELECT count(*) FROM events WHERE regexp_matches(concat_ws('|', name, user_id, path, \
             query, referrer, user_agent, browser, os, utm_source), '[\\x00-\\x1f\\x7f]')",
        )
        .await;
    assert_eq!(bad, 0);
    let ua = tg
        .query("SELECT user_agent FROM events WHERE path = '/page/tab'")
        .await;
    assert_eq!(ua[0][0], json!("Mozilla/5.0\u{fffd}(X11)"));
}

/// Under steady traffic the writer holds proxy events back in its open transaction (up to
/// `pipeline.bulk_wait_ms`) to commit whole row groups; `forget` has it commit them before
/// deleting again, so a visitor forgotten mid-burst does not come back when they land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_reaches_events_the_writer_still_holds() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "batch_size = 50000\nbulk_wait_ms = 300000\n");
    let c = jar_client();
    c.get(tg.url("/page/first")).send().await.unwrap();
    // Alone, it is committed at the flush interval.
    assert_eq!(tg.wait_count("SELECT count(*) FROM events", 1).await, 1);
    let visitor = tg.query("SELECT visitor_id::VARCHAR FROM events").await[0][0]
        .as_str()
        .unwrap()
        .to_string();
    // A burst of 2,000 page views, 8 at a time: at this rate a batch of 50,000 would fill
    // well within the bulk wait, so the writer holds them.
    let n = 2000;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (c, pages) = (c.clone(), tg.url("/page/"));
        tasks.push(tokio::spawn(async move {
            for i in (t..n).step_by(8) {
                let r = c.get(format!("{pages}{i}")).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        tg.count("SELECT count(*) FROM events").await,
        1,
        "the burst is held back, not committed at the flush interval"
    );
    let r = reqwest::Client::new()
        .post(tg.admin_url("/api/forget"))
        .json(&json!({ "visitor_id": visitor }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["rows_deleted"], n as u64 + 1, "{report}");
    // Nothing of theirs lands later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 0);
}
