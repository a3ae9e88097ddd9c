//! The seed scenario, end to end: visitors land from a Facebook post and from Google, register
//! on the shop (which names them with `X-Tollgate-User`), buy days later in the offline shop
//! (a CSV import), and the documented recipes (docs/recipes.md, run verbatim) attribute the
//! purchases and count the registrations.
//!
//! Days pass with `TOLLGATE_CLOCK_OFFSET_SECS`: the visits happen "three days ago" and "one day
//! ago" in tollgate's clock, the import runs today.

mod common;

use common::upstream::{user_for_phone, Upstream};
use common::{tollgate_cmd, Tollgate};
use serde_json::{json, Value};

const DAY: i64 = 86_400;
const CONFIG: &str = r#"
[[capture.rules]]
name = "register"
method = "POST"
path = "/api/register"
status = "2xx"
"#;
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The SQL of the block marked `-- recipe: <name>` in docs/recipes.md.
fn recipe(name: &str) -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/recipes.md")).unwrap();
    let marker = format!("-- recipe: {name}\n");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no recipe {name}"))
        + marker.len();
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].trim().trim_end_matches(';').to_string()
}

/// A browser with its own cookie jar.
struct Browser(reqwest::Client);

impl Browser {
    fn new() -> Browser {
        Browser(
            reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap(),
        )
    }

    async fn visit(&self, tg: &Tollgate, path: &str, referrer: Option<&str>) {
        let mut r = self
            .0
            .get(tg.url(path))
            .header("accept", "text/html")
            .header("accept-language", "de-DE,de;q=0.9")
            .header("user-agent", CHROME);
        if let Some(r2) = referrer {
            r = r.header("referer", r2);
        }
        assert_eq!(r.send().await.unwrap().status(), 200, "{path}");
    }

    async fn register(&self, tg: &Tollgate, phone: &str) {
        let resp = self
            .0
            .post(tg.url("/api/register"))
            .header("user-agent", CHROME)
            .form(&[("phone", phone)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert!(
            resp.headers().get("x-tollgate-user").is_none(),
            "header leaked"
        );
    }
}

fn ts(offset_days: i64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::seconds(offset_days * DAY);
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// One story over three days and two runs of tollgate on the same data directory: each day
/// reads what the days before wrote, so the steps stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_visit_registration_and_offline_purchase() {
    let up = Upstream::start().await;
    let (a, b, c) = (Browser::new(), Browser::new(), Browser::new());

    // Three days ago.
    let offset = (-3 * DAY).to_string();
    let mut tg = Tollgate::start_full(
        &up.url(),
        CONFIG,
        &[("TOLLGATE_CLOCK_OFFSET_SECS", offset.as_str())],
        None,
    );
    let landing = "/page/home?utm_source=facebook&utm_medium=social&utm_campaign=camera-x";
    // A: from the Facebook post, looks at the camera, registers at once.
    a.visit(&tg, landing, Some("https://l.facebook.com/")).await;
    a.visit(&tg, "/page/x100", Some(&tg.url(landing))).await;
    a.register(&tg, "4915111111111").await;
    // B: from the same post, leaves without registering.
    b.visit(&tg, landing, Some("https://l.facebook.com/")).await;
    // C: from Google, registers at once.
    c.visit(&tg, "/page/home", Some("https://www.google.de/"))
        .await;
    c.register(&tg, "4915133333333").await;
    tg.wait_count("SELECT count(*) FROM events", 6).await;
    tg.terminate();

    // One day ago (two days later): B comes back directly and registers.
    let offset = (-DAY).to_string();
    let mut tg2 = Tollgate::start_full(
        &up.url(),
        CONFIG,
        &[("TOLLGATE_CLOCK_OFFSET_SECS", offset.as_str())],
        Some(&tg.data_dir()),
    );
    b.visit(&tg2, "/page/x100", None).await;
    b.register(&tg2, "4915122222222").await;
    tg2.wait_count("SELECT count(*) FROM events", 8).await;

    // Today: the offline shop's export, two days after the first visits; imported while the
    // server runs. A second import of the same file changes nothing.
    let (ua, uc) = (
        user_for_phone("4915111111111"),
        user_for_phone("4915133333333"),
    );
    let csv = format!(
        "name,timestamp,user_id,amount,store\n\
         purchase,{},{ua},1299,Berlin\n\
         purchase,{},{uc},349,Hamburg\n",
        ts(-1),
        ts(-1)
    );
    let file = tg2.dir().join("purchases.csv");
    std::fs::write(&file, csv).unwrap();
    let data = tg2.data_dir();
    let args = [
        "import",
        "--data",
        data.to_str().unwrap(),
        file.to_str().unwrap(),
    ];
    let (ok, out, err) = tollgate_cmd(&args);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("imported 2 rows: 2 written, 0 already present; 0 bad"),
        "{out}"
    );
    let (ok, out, err) = tollgate_cmd(&args);
    assert!(ok, "{out}{err}");
    assert!(out.contains("0 written, 2 already present"), "{out}");

    // Each person resolves to their user.
    let ids = tg2
        .query("SELECT user_id FROM identities ORDER BY user_id")
        .await;
    assert_eq!(ids.len(), 3, "{ids:?}");

    let rows = tg2.query(&recipe("purchases-by-first-touch")).await;
    assert_eq!(
        rows,
        vec![
            vec![
                json!("Organic Search"),
                json!("www.google.de"),
                json!("(none)"),
                json!(1),
                json!(349.0)
            ],
            vec![
                json!("Organic Social"),
                json!("facebook"),
                json!("camera-x"),
                json!(1),
                json!(1299.0)
            ],
        ],
        "{rows:?}"
    );
    let rows = tg2
        .query(&recipe("registered-within-1-day-of-facebook"))
        .await;
    assert_eq!(
        rows,
        vec![vec![json!(1)]],
        "A registered at once; B two days later"
    );

    // The other recipes run, and agree with what happened.
    let channels: Vec<Vec<Value>> = tg2.query(&recipe("channels")).await;
    assert_eq!(
        channels,
        vec![
            vec![json!("Organic Social"), json!(2)],
            vec![json!("Direct"), json!(1)],
            vec![json!("Organic Search"), json!(1)],
        ]
    );
    let pages = tg2.query(&recipe("top-pages")).await;
    assert_eq!(pages[0][0], "/page/home");
    let devices = tg2.query(&recipe("devices")).await;
    assert_eq!(
        devices,
        vec![vec![json!("desktop"), json!("Chrome"), json!(3)]]
    );
    tg2.terminate();
}
