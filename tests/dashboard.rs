//! The dashboard and the admin token: the admin API behind a token, and the dashboard driven
//! in a real headless Chromium (Debian's `chromium`, over the DevTools protocol) against a
//! generated store.

mod common;

use common::browser::Browser;
use common::upstream::Upstream;
use common::{tollgate_cmd, Tollgate};
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// One list of what the token guards: after the configuration refusals, each step (open paths,
/// closed paths, the sign-in, the CLI's runtime file) is a few lines against the same tollgate and
/// reads best in one place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_everything_but_health_and_the_static_files() {
    // A token is required beyond loopback, and must be long enough.
    let dir = common::temp_dir();
    let config = dir.path().join("t.toml");
    for (server, says) in [
        (
            "admin = \"0.0.0.0:9080\"",
            "server.admin_token: required because",
        ),
        (
            "admin_token = \"short\"",
            "server.admin_token: must be at least 16",
        ),
    ] {
        std::fs::write(
            &config,
            format!("[server]\n{server}\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n"),
        )
        .unwrap();
        let (ok, out, err) = tollgate_cmd(&["check", "--config", config.to_str().unwrap()]);
        assert!(!ok && err.contains(says), "{out}{err}");
    }

    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_SERVER_ADMIN_TOKEN", TOKEN)]);
    let c = reqwest::Client::new();
    let get = |path: &str, auth: Option<&str>| {
        let mut r = c.get(tg.admin_url(path));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    for open in [
        "/healthz",
        "/readyz",
        "/",
        "/assets/app.js",
        "/assets/style.css",
    ] {
        assert_eq!(get(open, None).await.unwrap().status(), 200, "{open}");
    }
    let bearer = format!("Bearer {TOKEN}");
    for closed in ["/api/reports/overview", "/metrics", "/api/sinks"] {
        let r = get(closed, None).await.unwrap();
        assert_eq!(r.status(), 401, "{closed}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        assert_eq!(
            get(closed, Some("Bearer nope")).await.unwrap().status(),
            401
        );
        assert_eq!(
            get(closed, Some(&bearer)).await.unwrap().status(),
            200,
            "{closed}"
        );
    }
    let q = c
        .post(tg.admin_url("/api/query"))
        .json(&serde_json::json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(q.status(), 401);

    // The dashboard's sign-in: a wrong token is refused, the right one sets an HttpOnly,
    // SameSite=Strict cookie that then opens the API.
    let login = |token: &str| {
        c.post(tg.admin_url("/api/login"))
            .json(&serde_json::json!({ "token": token }))
            .send()
    };
    assert_eq!(login("wrong").await.unwrap().status(), 401);
    let ok = login(TOKEN).await.unwrap();
    assert_eq!(ok.status(), 200);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = c
        .get(tg.admin_url("/api/reports/pages"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The CLI finds the token in the runtime file, which only its owner can read.
    let runtime = tg.data_dir().join("tollgate.runtime.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&runtime).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (ok, out, err) = tollgate_cmd(&[
        "query",
        "--data",
        tg.data_dir().to_str().unwrap(),
        "SELECT 40 + 2 AS answer",
    ]);
    assert!(ok && out.contains("42"), "{out}{err}");
}

/// Where the screenshots go, for people to look at: `target/screenshots/` in the checkout.
fn shot(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots")
        .join(format!("{name}.png"))
}

/// The value of a report for the same parameters the dashboard uses.
async fn api(tg: &Tollgate, name: &str, params: &[(&str, &str)]) -> Value {
    let r = reqwest::Client::new()
        .get(tg.admin_url(&format!("/api/reports/{name}")))
        .query(params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

const IDLE: &str = "document.body.dataset.busy === '0'";

/// A started tollgate over a generated store, a browser on its dashboard, and the date range
/// the dashboard shows; what every step of the dashboard test below shares.
struct Dashboard {
    tg: Tollgate,
    b: Browser,
    from: String,
    to: String,
}

impl Dashboard {
    fn range(&self) -> [(&str, &str); 2] {
        [("from", self.from.as_str()), ("to", self.to.as_str())]
    }

    /// The value of a KPI tile on the page.
    async fn kpi(&self, id: &str) -> Value {
        self.b
            .eval(&format!(
                "Number(document.querySelector('#kpi-{id}').dataset.value)"
            ))
            .await
    }
}

const WAIT: Duration = Duration::from_secs(30);

/// The dashboard in one browser, step by step: each step starts from the page the one before
/// left (the Facebook filter set by clicking stays on for the funnel and attribution; the SQL
/// console's refused write is the one failed request the last step allows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium() {
    // Enough events that the top page has more than 2,048 visitors: an estimate, labelled.
    let data = common::generated_store(100_000, 14, 21);
    let up = Upstream::start().await;
    let tg = Tollgate::start_on(&up.url(), "", data.path());
    let to = chrono::Utc::now().date_naive();
    let from = (to - chrono::Duration::days(13)).to_string();
    let to = to.to_string();
    let d = Dashboard {
        tg,
        b: Browser::launch().await,
        from,
        to,
    };
    let o = overview_loads_with_the_api_numbers(&d).await;
    clicking_a_source_filters_the_page(&d, &o).await;
    let conv = the_funnel_builder(&d).await;
    the_funnel_url_is_shareable(&d, &conv).await;
    attribution(&d).await;
    api_health_labels_its_estimated_percentiles(&d).await;
    the_sql_console_runs_a_query_and_refuses_a_write(&d).await;
    a_linked_query_runs_only_when_asked(&d).await;
    nothing_overflows_at_phone_width(&d).await;

    // No script errors; the one failed request is the refused write (403), on purpose.
    let errors: Vec<String> =
        d.b.console_errors()
            .into_iter()
            .filter(|e| !(e.contains("status of 403") && e.contains("/api/query")))
            .collect();
    assert_eq!(errors, Vec::<String>::new());
}

/// It loads and shows the same non-zero numbers as the API; the API's overview is returned.
async fn overview_loads_with_the_api_numbers(d: &Dashboard) -> Value {
    let (tg, b) = (&d.tg, &d.b);
    b.goto(&tg.admin_url(&format!("/?from={}&to={}", d.from, d.to)))
        .await;
    b.wait_for(
        &format!("{IDLE} && document.querySelector('#kpi-visitors').dataset.value"),
        WAIT,
    )
    .await;
    let o = api(tg, "overview", &d.range()).await;
    assert!(o["totals"]["visitors"].as_i64().unwrap() > 100);
    assert_eq!(d.kpi("visitors").await, o["totals"]["visitors"]);
    assert_eq!(d.kpi("pageviews").await, o["totals"]["pageviews"]);
    assert_eq!(d.kpi("sessions").await, o["totals"]["sessions"]);
    let points = b
        .eval("document.querySelectorAll('.chart svg circle').length")
        .await;
    assert_eq!(points, 14, "one chart point per day");
    b.wait_for("document.querySelectorAll('table[data-table=\"acquisition.utm_source\"] tbody tr').length > 1", WAIT)
        .await;
    top_pages_label_their_estimates(d).await;
    b.screenshot(&shot("overview")).await;
    o
}

/// The top pages table shows the API's numbers, and marks the visitors column as estimated
/// when the API says they are (the page sketches that `tollgate generate` builds, past
/// 2,048 visitors a page: docs/api.md).
async fn top_pages_label_their_estimates(d: &Dashboard) {
    let (tg, b) = (&d.tg, &d.b);
    let sel = "table[data-table=\"pages.top\"]";
    b.wait_for(
        &format!("document.querySelectorAll('{sel} tbody tr').length > 1"),
        WAIT,
    )
    .await;
    let range = d.range();
    let p = api(tg, "pages", &[range[0], range[1], ("limit", "10")]).await;
    assert_eq!(
        p["top"]["estimated"],
        serde_json::json!(["visitors"]),
        "{p}"
    );
    let head = b
        .eval(&format!(
            "[...document.querySelectorAll('{sel} thead th')].map((th) => th.textContent + '|' + (th.title || ''))"
        ))
        .await;
    assert_eq!(head[0], "path|");
    assert!(
        head[1]
            .as_str()
            .unwrap()
            .starts_with("visitors ≈|visitors: estimated"),
        "{head}"
    );
    assert_eq!(head[2], "pageviews|");
    let first = b
        .eval(&format!(
            "[...document.querySelectorAll('{sel} tbody tr:first-child td')].map((td) => td.textContent)"
        ))
        .await;
    let row = &p["top"]["rows"][0];
    assert_eq!(first[0], row[0], "{first}");
    let shown: String = first[1]
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(shown, row[1].to_string(), "{first}");
}

/// Clicking a source filters the page, and the URL carries the filter.
async fn clicking_a_source_filters_the_page(d: &Dashboard, o: &Value) {
    let (tg, b, range) = (&d.tg, &d.b, d.range());
    b.click("table[data-table=\"acquisition.utm_source\"] tr[data-value=\"facebook\"]")
        .await;
    b.wait_for(
        &format!("{IDLE} && document.querySelector('#filters .chip[data-dim=\"utm_source\"][data-value=\"facebook\"]')"),
        WAIT,
    )
    .await;
    let fb = [range[0], range[1], ("utm_source", "facebook")];
    let o_fb = api(tg, "overview", &fb).await;
    b.wait_for(
        &format!(
            "{IDLE} && Number(document.querySelector('#kpi-visitors').dataset.value) === {}",
            o_fb["totals"]["visitors"]
        ),
        WAIT,
    )
    .await;
    assert!(o_fb["totals"]["visitors"].as_i64() < o["totals"]["visitors"].as_i64());
    assert_eq!(d.kpi("pageviews").await, o_fb["totals"]["pageviews"]);
    let url = b.eval("location.search").await;
    assert!(
        url.as_str().unwrap().contains("utm_source=facebook"),
        "{url}"
    );
    b.screenshot(&shot("overview-facebook")).await;
}

/// The funnel builder: product page → registered → purchased a camera, within a day, for the
/// Facebook visitors, as the API computes it. The conversion shown is returned.
async fn the_funnel_builder(d: &Dashboard) -> Value {
    let (tg, b, range) = (&d.tg, &d.b, d.range());
    b.click("button[data-tab=\"funnel\"]").await;
    b.wait_for(
        "document.querySelectorAll('.funnel-step').length === 2",
        WAIT,
    )
    .await;
    b.eval("document.querySelectorAll('.funnel-step .step-type')[0].value = 'path'")
        .await;
    b.type_text(".funnel-step:nth-child(1) .step-value", "/product/*")
        .await;
    b.eval("document.querySelectorAll('.funnel-step .step-type')[1].value = 'event'")
        .await;
    b.type_text(".funnel-step:nth-child(2) .step-value", "registered")
        .await;
    b.click("#funnel-add").await;
    b.eval("document.querySelectorAll('.funnel-step .step-type')[2].value = 'event'")
        .await;
    b.type_text(".funnel-step:nth-child(3) .step-value", "purchased")
        .await;
    b.type_text(".funnel-step:nth-child(3) .step-props", "category=cameras")
        .await;
    b.type_text("#funnel-window", "1d").await;
    b.eval("document.querySelector('#funnel-breakdown').value = 'utm_campaign'")
        .await;
    b.click("#funnel-run").await;
    b.wait_for(
        &format!("{IDLE} && document.querySelector('#funnel-conversion')"),
        WAIT,
    )
    .await;
    let steps = serde_json::json!([
        {"type": "path", "pattern": "/product/*"},
        {"type": "event", "name": "registered"},
        {"type": "event", "name": "purchased", "props": {"category": "cameras"}},
    ])
    .to_string();
    let f = api(
        tg,
        "funnel",
        &[
            range[0],
            range[1],
            ("utm_source", "facebook"),
            ("steps", &steps),
            ("window", "1d"),
        ],
    )
    .await;
    for (i, s) in f["steps"].as_array().unwrap().iter().enumerate() {
        let shown = b
            .eval(&format!(
                "Number(document.querySelector('#funnel-result tr[data-step=\"{}\"]').dataset.people)",
                i + 1
            ))
            .await;
        assert_eq!(shown, s["people"], "step {}", i + 1);
    }
    assert!(f["steps"][1]["people"].as_i64().unwrap() > 0, "{f}");
    let conv = b
        .eval("Number(document.querySelector('#funnel-conversion').dataset.value)")
        .await;
    assert_eq!(conv.as_f64(), f["steps"][2]["conversion"].as_f64());
    assert!(
        b.eval(
            "document.querySelectorAll('table[data-table=\"funnel.breakdown\"] tbody tr').length"
        )
        .await
        .as_i64()
        .unwrap()
            > 0
    );
    b.screenshot(&shot("funnel")).await;
    conv
}

/// The URL is shareable: opening it again rebuilds the same view.
async fn the_funnel_url_is_shareable(d: &Dashboard, conv: &Value) {
    let b = &d.b;
    let shared = b.eval("location.href").await;
    b.goto(shared.as_str().unwrap()).await;
    b.wait_for(
        &format!("{IDLE} && document.querySelector('#funnel-conversion')"),
        WAIT,
    )
    .await;
    assert_eq!(
        &b.eval("Number(document.querySelector('#funnel-conversion').dataset.value)")
            .await,
        conv
    );
    assert_eq!(
        b.eval("document.querySelectorAll('.funnel-step').length")
            .await,
        3
    );
}

/// Attribution, for the Facebook visitors, as the API computes it.
async fn attribution(d: &Dashboard) {
    let (tg, b, range) = (&d.tg, &d.b, d.range());
    b.click("button[data-tab=\"attribution\"]").await;
    b.type_text("#attr-event", "registered").await;
    b.click("#attr-run").await;
    b.wait_for(
        &format!("{IDLE} && document.querySelector('#attr-conversions')"),
        WAIT,
    )
    .await;
    let a = api(
        tg,
        "attribution",
        &[
            range[0],
            range[1],
            ("utm_source", "facebook"),
            ("event", "registered"),
            ("lookback", "30d"),
            ("by", "channel"),
        ],
    )
    .await;
    assert_eq!(
        b.eval("Number(document.querySelector('#attr-conversions').dataset.value)")
            .await,
        a["conversions"]
    );
    b.screenshot(&shot("attribution")).await;
}

/// The API tab without filters: its percentiles are estimates (latency buckets, which
/// `tollgate generate` builds with the page sketches: docs/api.md), and both the figures and
/// the routes table say so.
async fn api_health_labels_its_estimated_percentiles(d: &Dashboard) {
    let (tg, b) = (&d.tg, &d.b);
    b.goto(&tg.admin_url(&format!("/?from={}&to={}&tab=api", d.from, d.to)))
        .await;
    let sel = "table[data-table=\"api.routes\"]";
    b.wait_for(
        &format!("{IDLE} && document.querySelectorAll('{sel} tbody tr').length > 1"),
        WAIT,
    )
    .await;
    let a = api(tg, "api", &d.range()).await;
    let estimated = serde_json::json!(["p50_ms", "p95_ms", "p99_ms"]);
    assert_eq!(a["totals"]["estimated"], estimated, "{a}");
    assert_eq!(a["routes"]["estimated"], estimated, "{a}");
    let why = "estimated (latency buckets, within 1 %)";
    let kpis = b
        .eval("[...document.querySelectorAll('.kpi')].map((k) => k.querySelector('.label').textContent + '|' + (k.title || ''))")
        .await;
    assert_eq!(
        kpis,
        serde_json::json!([
            "Calls|",
            "Errors (5xx)|",
            "Error rate|",
            format!("p50 ≈|{why}"),
            format!("p95 ≈|{why}"),
            format!("p99 ≈|{why}")
        ])
    );
    let head = b
        .eval(&format!(
            "[...document.querySelectorAll('{sel} thead th')].map((th) => th.textContent)"
        ))
        .await;
    assert_eq!(
        head,
        serde_json::json!([
            "route",
            "method",
            "calls",
            "errors",
            "error_rate",
            "p50_ms ≈",
            "p95_ms ≈",
            "p99_ms ≈"
        ])
    );
    b.screenshot(&shot("api")).await;
}

/// The SQL console runs a query and refuses a write.
async fn the_sql_console_runs_a_query_and_refuses_a_write(d: &Dashboard) {
    let (tg, b) = (&d.tg, &d.b);
    b.click("button[data-tab=\"sql\"]").await;
    b.type_text(
        "#sql-input",
        "SELECT count(*) AS n FROM events WHERE name = 'page_view'",
    )
    .await;
    b.click("#sql-run").await;
    b.wait_for(
        &format!("{IDLE} && document.querySelector('table[data-table=\"sql.result\"] tbody td')"),
        WAIT,
    )
    .await;
    let n = tg
        .count("SELECT count(*) FROM events WHERE name = 'page_view'")
        .await;
    let shown = b
        .eval("document.querySelector('table[data-table=\"sql.result\"] tbody td').textContent.replace(/,/g, '')")
        .await;
    assert_eq!(shown.as_str().unwrap(), n.to_string());
    let total = tg.count("SELECT count(*) FROM events").await;
    b.type_text("#sql-input", "DROP TABLE events").await;
    b.click("#sql-run").await;
    let msg = b
        .wait_for(
            &format!("{IDLE} && document.querySelector('#sql-error').textContent"),
            WAIT,
        )
        .await;
    assert!(msg.as_str().unwrap().contains("read-only"), "{msg}");
    assert_eq!(tg.count("SELECT count(*) FROM events").await, total);
    b.screenshot(&shot("sql")).await;
}

/// A link that carries SQL fills the console but runs nothing until Run is clicked.
async fn a_linked_query_runs_only_when_asked(d: &Dashboard) {
    let (tg, b) = (&d.tg, &d.b);
    let console_runs = |m: &str| -> i64 {
        m.lines()
            .filter(|l| l.starts_with("tollgate_console_queries_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum()
    };
    let runs = console_runs(&tg.metrics().await);
    let linked = "SELECT 4242 AS answer";
    b.goto(&tg.admin_url(&format!("/?tab=sql&q={}", linked.replace(' ', "%20"))))
        .await;
    b.wait_for(
        &format!("{IDLE} && document.querySelector('#sql-pending')"),
        WAIT,
    )
    .await;
    assert_eq!(
        b.eval("document.querySelector('#sql-input').value").await,
        Value::from(linked)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        console_runs(&tg.metrics().await),
        runs,
        "opening the link ran its SQL"
    );
    b.click("#sql-run").await;
    let shown = b
        .wait_for(
            &format!("{IDLE} && document.querySelector('table[data-table=\"sql.result\"] tbody td') && document.querySelector('table[data-table=\"sql.result\"] tbody td').textContent"),
            WAIT,
        )
        .await;
    assert_eq!(shown.as_str().unwrap().replace(',', ""), "4242");
    assert_eq!(console_runs(&tg.metrics().await), runs + 1);
}

/// At phone width nothing overflows sideways.
async fn nothing_overflows_at_phone_width(d: &Dashboard) {
    let (tg, b) = (&d.tg, &d.b);
    b.set_viewport(375, 812).await;
    b.goto(&tg.admin_url(&format!("/?from={}&to={}&tab=overview", d.from, d.to)))
        .await;
    b.wait_for(
        &format!("{IDLE} && document.querySelector('#kpi-visitors').dataset.value"),
        WAIT,
    )
    .await;
    b.wait_for(
        "document.querySelectorAll('table[data-table=\"pages.top\"] tbody tr').length > 0",
        WAIT,
    )
    .await;
    let width = b.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_i64().unwrap() <= 375,
        "page is {width} px wide at 375"
    );
    b.screenshot(&shot("phone")).await;
}
