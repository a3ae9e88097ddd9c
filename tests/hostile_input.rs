//! Hostile input at the edges, end to end: report parameters that used to panic are 400s that
//! name the parameter (and the server stays up), and what anyone can put in the store (a user
//! id, a property) cannot drive the terminal or a spreadsheet through `tollgate query`.

mod common;

use common::upstream::Upstream;
use common::Tollgate;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_report_parameters_are_400s_that_name_them() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    let steps = "%5B%7B%22type%22%3A%22path%22%2C%22pattern%22%3A%22%2F%2A%22%7D%2C\
                 %7B%22type%22%3A%22event%22%2C%22name%22%3A%22x%22%7D%5D";
    let cases = [
        (
            "funnel",
            format!("steps={steps}&window=1%E2%82%AC"),
            "window=",
        ),
        (
            "funnel",
            format!("steps={steps}&window=%E2%82%AC"),
            "window=",
        ),
        (
            "funnel",
            format!("steps={steps}&window=9223372036854775807d"),
            "window=",
        ),
        (
            "attribution",
            "event=x&lookback=1%E2%82%AC".into(),
            "lookback=",
        ),
        ("overview", "to=%2B262143-12-31".into(), "to="),
        ("overview", "to=-262144-01-01".into(), "to="),
        ("overview", "from=%2B99999-01-01".into(), "from="),
        ("overview", "from=99999-01-01".into(), "from="),
        ("overview", "from=2026-02-30".into(), "from="),
        ("pages", "limit=99999999999999999999999".into(), "limit="),
        ("pages", "limit=1%E2%82%AC".into(), "limit="),
    ];
    let client = reqwest::Client::new();
    for (name, query, says) in &cases {
        let url = tg.admin_url(&format!("/api/reports/{name}?{query}"));
        let resp = client.get(&url).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{name}?{query}: {body}");
        assert_eq!(body["kind"], "invalid", "{name}?{query}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(says), "{name}?{query}: {msg}");
    }
    // Still up, and still answering.
    let ok = client
        .get(tg.admin_url("/api/reports/overview?from=2026-11-01&to=2026-11-07"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(!tg.log().contains("panicked"), "{}", tg.log());
}

/// `tollgate query` on the data directory, as the bytes it prints.
fn query(data: &std::path::Path, format: &str, sql: &str) -> Vec<u8> {
    let data = data.to_str().unwrap();
    let out = common::tollgate_output(&["query", "--data", data, "--format", format, sql]);
    assert!(
        out.status.success(),
        "tollgate query --format {format} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The control characters in `b`, other than line feeds: none may reach the terminal.
fn controls(b: &[u8]) -> Vec<char> {
    String::from_utf8_lossy(b)
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_output_escapes_control_characters_and_neutralises_formulas() {
    let up = Upstream::start().await;
    let mut tg = Tollgate::start(&up.url(), "");
    let red = "\u{1b}[31mred\u{1b}[0m";
    let link = "=HYPERLINK(\"http://x\",\"y\")";
    let c1 = "clear\u{9b}2J\u{7}\u{7f}";
    let resp = reqwest::Client::new()
        .post(tg.admin_url("/api/events"))
        .json(&json!({
            "name": "note_taken",
            // Text fields refuse control characters; props may hold them (stored as JSON).
            "user_id": "u-1",
            "props": {"who": red, "note": link, "c1": c1, "n": -5},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sql = "SELECT props->>'who' AS user_id, props->>'note' AS note, props->>'c1' AS c1, \
               CAST(props->>'n' AS INTEGER) AS n, props->>'n' AS n_text \
               FROM events WHERE name = 'note_taken'";
    let data = tg.data_dir();

    // Through the running server's admin API (the store is locked).
    let table = query(&data, "table", sql);
    assert_eq!(controls(&table), Vec::<char>::new(), "{table:?}");
    let text = String::from_utf8(table).unwrap();
    assert!(text.contains(r"\u{1b}[31mred\u{1b}[0m"), "{text}");
    assert!(text.contains(r"clear\u{9b}2J\u{7}\u{7f}"), "{text}");
    assert!(text.contains(link), "{text}");

    let csv = query(&data, "csv", sql);
    assert_eq!(controls(&csv), Vec::<char>::new(), "{csv:?}");
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "user_id,note,c1,n,n_text\n\
         \\u{1b}[31mred\\u{1b}[0m,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",clear\\u{9b}2J\\u{7}\\u{7f},-5,-5\n"
    );

    let js = query(&data, "json", sql);
    assert_eq!(controls(&js), Vec::<char>::new(), "{js:?}");
    let back: Value = serde_json::from_slice(&js).unwrap();
    assert_eq!(
        back,
        json!([{"user_id": red, "note": link, "c1": c1, "n": -5, "n_text": "-5"}]),
        "JSON output is exact"
    );

    // And reading the file directly, with no server.
    tg.terminate();
    let table = query(&data, "table", sql);
    assert_eq!(controls(&table), Vec::<char>::new(), "{table:?}");
}
