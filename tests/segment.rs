//! The Segment-compatible API over real HTTP against a real tollgate: auth, limits, errors,
//! batches with a bad item, dedup by messageId, and what lands in the store.

mod common;

use common::upstream::Upstream;
use common::Tollgate;
use serde_json::{json, Value};

const ANON: &str = "0b6a4c1e-4c8b-4c1a-9d0e-2f1e7a3b5c6d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_write_key_the_api_says_how_to_set_one() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let resp = reqwest::Client::new()
        .post(tg.admin_url("/v1/track"))
        .basic_auth("anything", Some(""))
        .json(&json!({"userId": "u", "event": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("TOLLGATE_WRITE_KEYS"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_calls_land_and_bad_ones_say_why() {
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_WRITE_KEYS", "wk-1, wk-2")]);
    let c = reqwest::Client::new();
    // In this order: each step counts the events the steps before it wrote.
    identify_page_and_track_are_committed_before_the_answer(&tg, &c).await;
    a_batch_keeps_its_good_items_and_drops_duplicates(&tg, &c).await;
    bad_calls_say_why_and_write_nothing(&tg, &c).await;
}

/// Single calls with the write key in Basic auth, and the rows they leave.
async fn identify_page_and_track_are_committed_before_the_answer(
    tg: &Tollgate,
    c: &reqwest::Client,
) {
    let call = |path: &str, body: Value| {
        c.post(tg.admin_url(path))
            .basic_auth("wk-2", Some(""))
            .json(&body)
            .send()
    };

    // identify, page, track: with the key in Basic auth.
    let r = call("/v1/identify", json!({"userId": "u-42", "anonymousId": ANON, "traits": {"plan": "pro"}, "messageId": "m-id"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = call("/v1/page", json!({"anonymousId": ANON, "name": "Home", "messageId": "m-page",
        "properties": {"url": "https://shop.example/?utm_source=facebook&utm_medium=social", "referrer": "https://l.facebook.com/"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = call("/v1/track", json!({"userId": "u-42", "event": "Order Completed", "messageId": "m-order",
        "properties": {"revenue": 1299}, "timestamp": "2026-11-27T10:00:00Z",
        "context": {"ip": "203.0.113.50", "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["success"].clone(), body["written"].clone()),
        (json!(true), json!(1))
    );

    // Committed before the answer.
    let rows = tg
        .query("SELECT name, source, user_id, visitor_id::VARCHAR, ts::VARCHAR, props->>'revenue', channel, device_type, ip FROM events ORDER BY seq")
        .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        rows[0][..4],
        [
            json!("identify"),
            json!("segment"),
            json!("u-42"),
            json!(ANON)
        ]
    );
    assert_eq!(
        (rows[1][0].clone(), rows[1][6].clone()),
        (json!("page_view"), json!("Organic Social"))
    );
    assert_eq!(
        rows[2][4..],
        [
            json!("2026-11-27 10:00:00"),
            json!("1299"),
            json!("Direct"),
            json!("mobile"),
            json!("203.0.113.0")
        ]
    );
    assert_eq!(
        tg.query("SELECT visitor_id::VARCHAR, user_id FROM identities")
            .await,
        vec![vec![json!(ANON), json!("u-42")]]
    );
}

/// A batch after the single calls above (five events in all once it is in).
async fn a_batch_keeps_its_good_items_and_drops_duplicates(tg: &Tollgate, c: &reqwest::Client) {
    // A batch with one bad item, the key in the body: the good ones are kept.
    let r = c
        .post(tg.admin_url("/v1/batch"))
        .json(&json!({"writeKey": "wk-1", "batch": [
            {"type": "track", "userId": "u-1", "event": "Signed Up", "messageId": "b-1"},
            {"type": "track", "userId": "u-2", "messageId": "b-2"},
            {"type": "screen", "anonymousId": "device-7", "name": "Cart", "messageId": "b-3"},
            {"type": "track", "userId": "u-42", "event": "Order Completed", "messageId": "m-order"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["written"].clone(), body["duplicates"].clone()),
        (json!(2), json!(1)),
        "{body}"
    );
    assert_eq!(body["rejected"][0]["index"], 1);
    assert!(body["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("\"event\""));
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 5);
}

/// Refused calls after the batch above: the count stays at its five events.
///
/// Long, but a table of refused calls, each with its status and reason; one list reads best whole.
async fn bad_calls_say_why_and_write_nothing(tg: &Tollgate, c: &reqwest::Client) {
    // Errors, each with its status and reason; nothing half-written.
    let big = "x".repeat(40 * 1024);
    for (path, auth, body, status, reason) in [
        (
            "/v1/track",
            Some("nope"),
            json!({"userId": "u", "event": "x"}),
            401,
            "not valid",
        ),
        (
            "/v1/track",
            None,
            json!({"userId": "u", "event": "x"}),
            401,
            "no write key",
        ),
        (
            "/v1/track",
            Some("wk-1"),
            json!({"userId": "u"}),
            400,
            "\"event\" is required",
        ),
        (
            "/v1/track",
            Some("wk-1"),
            json!({"userId": "u", "event": "x", "timestamp": "yesterday"}),
            400,
            "\"timestamp\"",
        ),
        (
            "/v1/track",
            Some("wk-1"),
            json!({"event": "x"}),
            400,
            "anonymousId",
        ),
        (
            "/v1/track",
            Some("wk-1"),
            json!({"userId": "u", "event": "x", "properties": {"blob": big}}),
            413,
            "limit",
        ),
        (
            "/v1/batch",
            Some("wk-1"),
            json!({"batch": [{"type": "track", "userId": "u"}]}),
            400,
            "message 0",
        ),
        (
            "/v1/batch",
            Some("wk-1"),
            json!({"batch": (0..20).map(|i| json!({"type": "track", "userId": "u", "event": "x", "properties": {"i": i, "blob": "y".repeat(30_000)}})).collect::<Vec<_>>()}),
            413,
            "500",
        ),
        (
            "/v1/nope",
            Some("wk-1"),
            json!({}),
            404,
            "no Segment endpoint",
        ),
    ] {
        let mut req = c.post(tg.admin_url(path)).json(&body);
        if let Some(k) = auth {
            req = req.basic_auth(k, Some(""));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{path} {reason}");
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{path}: {body}");
    }
    let r = c
        .post(tg.admin_url("/v1/track"))
        .basic_auth("wk-1", Some(""))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 5);
}

/// Where `.ci/deps test` installed Segment's official clients.
fn clients_dir() -> std::path::PathBuf {
    std::env::var_os("TOLLGATE_CLIENTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/tollgate/clients")
        })
}

/// Segment's own libraries, unchanged, pointed at tollgate with `host`.
///
/// One run of both official clients against one tollgate, then one table of the six rows they
/// wrote together; the table is the test, so it stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_segment_clients() {
    let dir = clients_dir();
    let python = dir.join("venv/bin/python");
    let node_modules = dir.join("node/node_modules");
    assert!(
        python.exists() && node_modules.join("@segment/analytics-node").exists(),
        "Segment's clients are not installed in {}: run `bash .ci/deps test` (it installs segment-analytics-python from PyPI and @segment/analytics-node from npm)",
        dir.display()
    );
    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_WRITE_KEYS", "client-key")]);
    let host = format!("http://{}", tg.admin);
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let (py_anon, node_anon) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );

    let out = std::process::Command::new(&python)
        .arg(scripts.join("segment_client.py"))
        .args([&host, "client-key", &py_anon])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new("node")
        .arg(scripts.join("segment_client.js"))
        .args([&host, "client-key", &node_anon])
        .env("NODE_PATH", &node_modules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node client: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The clients answered success only after the commit: no waiting here.
    let rows = tg
        .query("SELECT name, user_id, visitor_id::VARCHAR, props->>'revenue', props->>'plan', strftime(ts, '%Y-%m-%dT%H:%M:%S'), utm_source, source FROM events ORDER BY user_id, name")
        .await;
    let row =
        |name: &str, user: &str, anon: &str, revenue: Value, plan: Value, ts: Value, utm: Value| {
            vec![
                json!(name),
                json!(user),
                json!(anon),
                revenue,
                plan,
                ts,
                utm,
                json!("segment"),
            ]
        };
    let n = Value::Null;
    assert_eq!(
        rows,
        vec![
            row(
                "Order Completed",
                "node-user",
                &node_anon,
                json!("349"),
                n.clone(),
                json!("2026-11-21T10:00:00"),
                n.clone()
            ),
            row(
                "identify",
                "node-user",
                &node_anon,
                n.clone(),
                json!("basic"),
                rows[1][5].clone(),
                n.clone()
            ),
            row(
                "page_view",
                "node-user",
                &node_anon,
                n.clone(),
                n.clone(),
                json!("2026-11-21T09:00:00"),
                json!("newsletter")
            ),
            row(
                "Order Completed",
                "py-user",
                &py_anon,
                json!("1299"),
                n.clone(),
                json!("2026-11-20T10:00:00"),
                n.clone()
            ),
            row(
                "identify",
                "py-user",
                &py_anon,
                n.clone(),
                json!("pro"),
                rows[4][5].clone(),
                n.clone()
            ),
            row(
                "page_view",
                "py-user",
                &py_anon,
                n.clone(),
                n.clone(),
                json!("2026-11-20T09:00:00"),
                json!("facebook")
            ),
        ]
    );
    // Identify calls without a timestamp are stamped on arrival (clock-skew corrected).
    let now = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        rows[1][5].as_str().unwrap().starts_with(&now),
        "{:?}",
        rows[1][5]
    );
    assert_eq!(tg.count("SELECT count(*) FROM identities").await, 2);
}
