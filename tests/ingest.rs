//! End-to-end custom events: the browser collect endpoint on the proxy listener and the
//! backend's bulk API, against a real tollgate process. A 2xx must mean committed: every test
//! reads the store right after the answer, without waiting.

mod common;

use common::upstream::Upstream;
use common::{jar_client, Tollgate};
use serde_json::{json, Value};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// One store and one upstream through every step: each count includes what the requests before
/// it wrote, and the last check (no collect request is a page event) covers all of them, so the
/// steps stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_events_through_the_collect_endpoint() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let c = jar_client();
    c.get(tg.url("/page/1"))
        .header("accept", "text/html")
        .header("accept-language", "en")
        .header("user-agent", CHROME)
        .send()
        .await
        .unwrap();
    let visitor = tg
        .wait_count("SELECT count(*) FROM events WHERE name = 'page_view'", 1)
        .await;
    assert_eq!(visitor, 1);
    let vid = tg.query("SELECT visitor_id::VARCHAR FROM events").await[0][0].clone();

    // What navigator.sendBeacon sends: text/plain.
    let resp = c
        .post(tg.url("/_tollgate/e"))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("user-agent", CHROME)
        .body(r#"{"name":"click","props":{"id":"buy-x100"},"url":"http://shop.test/products/1?utm_source=fb&utm_medium=social"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["written"], 1, "{report}");
    // Committed before the answer: no waiting here.
    let rows = tg
        .query("SELECT source, visitor_id::VARCHAR, props->>'id', path, utm_source, browser, is_bot FROM events WHERE name = 'click'")
        .await;
    assert_eq!(
        rows,
        vec![vec![
            json!("browser"),
            vid.clone(),
            json!("buy-x100"),
            json!("/products/1"),
            json!("fb"),
            json!("Chrome"),
            json!(false)
        ]]
    );

    // A batch with one bad item: the good ones are kept, the bad one reported by index.
    let resp = c
        .post(tg.url("/_tollgate/e"))
        .json(&json!([{"name": "scroll"}, {"props": {}}, {"name": "form_submit", "user_id": "x"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["rejected"][0]["index"], 1);
    assert!(report["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("\"name\" is required"));
    assert_eq!(report["rejected"][1]["index"], 2);
    assert!(report["rejected"][1]["error"]
        .as_str()
        .unwrap()
        .contains("cannot be set from the browser"));
    assert_eq!(
        tg.count("SELECT count(*) FROM events WHERE name = 'scroll'")
            .await,
        1
    );
    assert_eq!(
        tg.count("SELECT count(*) FROM events WHERE name = 'form_submit'")
            .await,
        0
    );

    // Bad requests get a status and a reason; none reaches the upstream.
    for (method, path, body, status, reason) in [
        (
            "POST",
            "/_tollgate/e",
            "{oops".to_string(),
            400,
            "not valid JSON",
        ),
        ("POST", "/_tollgate/e", "[]".to_string(), 400, ""),
        ("GET", "/_tollgate/e", String::new(), 405, "POST"),
        ("POST", "/_tollgate/other", "{}".to_string(), 404, "no such"),
        (
            "POST",
            "/_tollgate/e",
            format!("{{\"name\":\"{}\"}}", "x".repeat(70_000)),
            413,
            "larger than",
        ),
    ] {
        let resp = c
            .request(method.parse().unwrap(), tg.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{method} {path}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(reason), "{method} {path}: {text}");
    }
    assert!(up.seen().iter().all(|s| !s.path.starts_with("/_tollgate")));
    // The collect requests themselves are not page events.
    assert_eq!(
        tg.count("SELECT count(*) FROM events WHERE source = 'proxy'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_events_bulk_api_dedup_and_bad_input() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let c = reqwest::Client::new();
    let post = |body: String| {
        c.post(tg.admin_url("/api/events"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    let ndjson = [
        r#"{"name":"purchase","user_id":"u-1","message_id":"order-1","ts":"2026-11-20T10:00:00Z","props":{"value":1299}}"#,
        r#"{"name":"purchase","user_id":"u-2","ts":"not a time"}"#,
        r#"{"name":"refund","user_id":"u-1","message_id":"refund-1"}"#,
    ]
    .join("\n");
    let resp = post(ndjson.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(
        (r["accepted"].clone(), r["written"].clone()),
        (json!(2), json!(2)),
        "{r}"
    );
    assert_eq!(r["rejected"][0]["index"], 1);
    assert!(r["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("RFC 3339"));
    let rows = tg
        .query("SELECT source, user_id, ts::VARCHAR, props->>'value' FROM events WHERE name = 'purchase'")
        .await;
    assert_eq!(
        rows,
        vec![vec![
            json!("server"),
            json!("u-1"),
            json!("2026-11-20 10:00:00"),
            json!("1299")
        ]]
    );

    // The same messages again: nothing new.
    let r: Value = post(ndjson).await.unwrap().json().await.unwrap();
    assert_eq!(
        (r["written"].clone(), r["duplicates"].clone()),
        (json!(0), json!(2)),
        "{r}"
    );
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 2);
    // Only the senders' keys are kept; an event without one is new each time it is sent.
    assert_eq!(tg.count("SELECT count(*) FROM event_keys").await, 2);
    for _ in 0..2 {
        let r: Value = post(r#"{"name":"note","user_id":"u-3"}"#.into())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["written"], json!(1), "{r}");
    }
    assert_eq!(tg.count("SELECT count(*) FROM event_keys").await, 2);
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 4);

    // All bad: 400 with the reasons; not JSON at all: 400.
    let resp = post(r#"[{"name":"x"}]"#.into()).await.unwrap();
    assert_eq!(resp.status(), 400);
    let r: Value = resp.json().await.unwrap();
    assert!(r["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("visitor_id"));
    let resp = post("{oops".into()).await.unwrap();
    assert_eq!(resp.status(), 400);
    let r: Value = resp.json().await.unwrap();
    assert!(
        r["error"].as_str().unwrap().contains("not valid JSON"),
        "{r}"
    );
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 4);
}

/// A 2xx means committed: SIGKILL right after the answers loses none of the acknowledged events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_a_2xx_loses_nothing() {
    let up = Upstream::start().await;
    let mut tg = Tollgate::start(&up.url(), "[pipeline]\nflush_interval_ms = 60000\n");
    let c = reqwest::Client::new();
    let mut tasks = Vec::new();
    for batch in 0..20 {
        let body: Vec<Value> = (0..100)
            .map(|i| json!({"name": "offline", "user_id": format!("u{i}"), "message_id": format!("{batch}-{i}")}))
            .collect();
        let req = c.post(tg.admin_url("/api/events")).json(&body).send();
        tasks.push(tokio::spawn(req));
    }
    let mut acknowledged = 0;
    for t in tasks {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let r: Value = resp.json().await.unwrap();
        acknowledged += r["written"].as_i64().unwrap();
    }
    assert_eq!(acknowledged, 2000);
    // No flush is due for a minute: only the commit behind each answer made them durable.
    tg.kill9();
    let out = tg.query_csv(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events WHERE name = 'offline'",
    );
    assert_eq!(out, "n,ids\n2000,2000\n");
}

/// The backend names the user and reports events in response headers; the client never sees
/// them, and the visitor's other events resolve to that user through `identities`.
///
/// One visitor's requests, then the store they left: the identity checks read the events the
/// requests before them wrote, so the steps stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_headers_stitch_visitor_to_user() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let c = jar_client();
    let page = |path: &'static str| {
        c.get(tg.url(path))
            .header("accept", "text/html")
            .header("accept-language", "en")
            .header("user-agent", CHROME)
            .send()
    };
    page("/page/1").await.unwrap();
    let resp = c
        .post(tg.url("/api/login"))
        .header("user-agent", CHROME)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for h in resp.headers().keys() {
        assert!(
            !h.as_str().starts_with("x-tollgate"),
            "{h} leaked to the client"
        );
    }
    page("/page/2").await.unwrap();

    let n = tg.wait_count("SELECT count(*) FROM events", 5).await;
    assert_eq!(
        n,
        5,
        "2 page views, the login request, 2 valid backend events: {:?}\n{}",
        tg.query("SELECT name, source, path, user_id FROM events")
            .await,
        tg.log()
    );
    let rows = tg
        .query("SELECT name, source, user_id, props->>'method', props->>'plan', path FROM events WHERE name IN ('login', 'plan_viewed') ORDER BY name")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                json!("login"),
                json!("server"),
                json!("u-42"),
                json!("password"),
                Value::Null,
                json!("/api/login")
            ],
            vec![
                json!("plan_viewed"),
                json!("server"),
                json!("u-42"),
                Value::Null,
                json!("pro"),
                json!("/api/login")
            ],
        ]
    );
    // All five share the visitor; the login request itself carries the user.
    assert_eq!(
        tg.count("SELECT count(DISTINCT visitor_id) FROM events")
            .await,
        1
    );
    assert_eq!(
        tg.query("SELECT user_id FROM events WHERE path = '/api/login' AND source = 'proxy'")
            .await,
        vec![vec![json!("u-42")]]
    );
    // The identity map, and the documented person query (docs/identity.md).
    assert_eq!(
        tg.query("SELECT user_id, events FROM identities").await,
        vec![vec![json!("u-42"), json!(3)]]
    );
    let people = tg
        .query(
            "WITH latest AS (SELECT visitor_id, arg_max(user_id, last_seen) AS user_id FROM identities GROUP BY visitor_id)
             SELECT coalesce(e.user_id, l.user_id, e.visitor_id::VARCHAR) AS person, count(*) AS page_views
             FROM events e LEFT JOIN latest l USING (visitor_id)
             WHERE e.name = 'page_view' GROUP BY 1",
        )
        .await;
    assert_eq!(people, vec![vec![json!("u-42"), json!(2)]]);

    // An opted-out browser is not stitched: no user id stored.
    let resp = reqwest::Client::new()
        .post(tg.url("/api/login"))
        .header("sec-gpc", "1")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-tollgate-user").is_none());
    tg.wait_count("SELECT count(*) FROM events", 8).await;
    assert_eq!(
        tg.count("SELECT count(*) FROM events WHERE visitor_id IS NULL AND user_id IS NOT NULL")
            .await,
        0
    );
}

/// CSV import: bad rows by line, strict mode all-or-nothing, the same through the API and on
/// a stopped server's files, and a re-import changes nothing.
///
/// One CSV imported three times into one store (strict, lenient, then by the CLI on the stopped
/// server's files): each import is checked against what the ones before it wrote, so they stay
/// in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_reports_bad_rows_and_strict_is_all_or_nothing() {
    let up = Upstream::start().await;
    let mut tg = Tollgate::start(&up.url(), "");
    let csv = "name,timestamp,user_id,amount\n\
               purchase,2026-11-01 10:00:00,u-1,10\n\
               purchase,someday,u-2,20\n\
               purchase,2026-11-02,,30\n\
               purchase,2026-11-03T09:00:00Z,u-3,40\n";
    let c = reqwest::Client::new();
    let resp = c
        .post(tg.admin_url("/api/import?strict=true"))
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["refused"], true);
    assert_eq!(r["rejected"][0]["line"], 3);
    assert!(r["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("timestamp"));
    assert_eq!(r["rejected"][1]["line"], 4);
    assert!(r["rejected"][1]["error"]
        .as_str()
        .unwrap()
        .contains("visitor_id"));
    assert_eq!(
        tg.count("SELECT count(*) FROM events").await,
        0,
        "strict: nothing"
    );

    let resp = c
        .post(tg.admin_url("/api/import?map=amount%3Dvalue"))
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            r["written"].clone(),
            r["rejected"].as_array().unwrap().len()
        ),
        (json!(2), 2)
    );
    assert_eq!(
        tg.query("SELECT user_id, props->>'value', source FROM events ORDER BY ts")
            .await,
        vec![
            vec![json!("u-1"), json!("10"), json!("import")],
            vec![json!("u-3"), json!("40"), json!("import")]
        ]
    );

    // The CLI on a stopped server's directory: same rows, nothing new; exit status 2 for the
    // bad rows, which are listed with their lines.
    tg.terminate();
    let file = tg.dir().join("offline.csv");
    std::fs::write(&file, csv).unwrap();
    let data = tg.data_dir();
    let out = common::tollgate_output(&[
        "import",
        "--data",
        data.to_str().unwrap(),
        "--map",
        "amount=value",
        file.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 written, 2 already present; 2 bad"),
        "{stdout}"
    );
    assert!(stderr.contains("offline.csv:3: \"timestamp\""), "{stderr}");
    assert!(stderr.contains("offline.csv:4:"), "{stderr}");
}
