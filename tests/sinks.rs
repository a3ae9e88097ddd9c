//! Shipping to real ClickHouse and PostgreSQL servers (Debian's packages, started on loopback
//! by `common::clickhouse` and `common::postgres`) and to Parquet and NDJSON files, from a real tollgate process.
//!
//! What arrived is compared with the store column by column: each destination is read back
//! into an in-memory DuckDB (ClickHouse and PostgreSQL as JSON lines, the files directly),
//! brought to one canonical shape, and `EXCEPT ALL`-ed against the store both ways.

mod common;

use common::clickhouse::ClickHouse;
use common::postgres::Postgres;
use common::upstream::Upstream;
use common::{jar_client, tollgate_cmd, Tollgate};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const UAS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];

/// `[[sinks]]` tables for every destination, shipping in batches of `batch`.
fn sinks_toml(ch: &ClickHouse, pg: &Postgres, files: &Path, batch: usize) -> String {
    format!(
        r#"
[[sinks]]
type = "clickhouse"
url = "{ch}"
batch_size = {batch}
batch_age_ms = 200
retry_initial_ms = 100
retry_max_ms = 2000

[[sinks]]
type = "postgres"
url = "{pg}"
batch_size = {batch}
batch_age_ms = 200
retry_initial_ms = 100
retry_max_ms = 2000

[[sinks]]
name = "parquet"
type = "files"
dir = "{parquet}"
batch_size = {batch}
batch_age_ms = 200

[[sinks]]
name = "ndjson"
type = "files"
dir = "{ndjson}"
format = "ndjson"
batch_size = {batch}
batch_age_ms = 200
"#,
        ch = ch.url(),
        pg = pg.url(),
        parquet = files.join("parquet").display(),
        ndjson = files.join("ndjson").display(),
    )
}

/// NDJSON lines of `n` server events numbered from `from`: names, users, visitors, URLs with
/// campaigns, referrers, user agents, IPs, properties and timestamps over the last three days.
fn event_lines(from: usize, n: usize) -> String {
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = String::with_capacity(n * 400);
    for i in from..from + n {
        let name = ["purchase", "signup", "add_to_cart", "search", "login"][i % 5];
        let mut e = serde_json::json!({
            "name": name,
            "ts": now - (i as i64 * 3 % 259_200) * 1000,
            "url": format!("https://shop.example/p/{}?utm_source=fb&utm_medium=social&utm_campaign=c{}", i % 500, i % 7),
            "referrer": if i % 2 == 0 { "https://www.google.com/" } else { "https://l.facebook.com/" },
            "user_agent": UAS[i % 4],
            "ip": format!("203.0.113.{}", i % 250),
            "visitor_id": format!("00000000-0000-4000-8000-{:012x}", i % 5000),
            // Keys in an order that PostgreSQL's jsonb keeps (by length, then bytes).
            "props": {"a": i, "bb": format!("x{}", i % 10), "ccc": i % 2 == 0},
        });
        if i % 3 == 0 {
            e["user_id"] = Value::String(format!("user-{}", i % 1000));
        }
        out.push_str(&e.to_string());
        out.push('\n');
    }
    out
}

/// POST NDJSON `lines` to `url` (`/api/events`); returns the answer.
async fn post_ndjson(url: String, lines: String) -> Value {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// POST `n` events from `from` in NDJSON batches of 5,000; returns how many were written.
async fn ingest(tg: &Tollgate, from: usize, n: usize) -> i64 {
    let mut written = 0;
    for start in (from..from + n).step_by(5_000) {
        let len = 5_000.min(from + n - start);
        let r = post_ndjson(tg.admin_url("/api/events"), event_lines(start, len)).await;
        written += r["written"].as_i64().unwrap_or_else(|| panic!("{r}"));
    }
    written
}

async fn sinks_status(tg: &Tollgate) -> Vec<Value> {
    let v: Value = reqwest::get(tg.admin_url("/api/sinks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["sinks"].as_array().unwrap().clone()
}

/// Wait until every sink has shipped everything committed.
async fn wait_shipped(tg: &Tollgate, timeout: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let s = sinks_status(tg).await;
        if s.iter().all(|s| s["lag_events"] == 0) {
            return s;
        }
        assert!(
            start.elapsed() < timeout,
            "sinks did not catch up in {timeout:?}: {s:#?}\n{}",
            tg.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A DuckDB to compare in, with the store (of a stopped tollgate) attached as `store`.
fn comparer(data: &Path) -> duckdb::Connection {
    let db = duckdb::Connection::open_in_memory().unwrap();
    db.execute_batch(&format!(
        "ATTACH '{}' AS store (READ_ONLY);",
        data.join("tollgate.duckdb").display()
    ))
    .unwrap();
    db
}

/// Every column in one canonical shape, whatever the source's types: ids as text, times as
/// epoch microseconds, booleans as 0/1, JSON minified. `duration_ms` (whole microseconds, so
/// three decimals) is compared to nine decimals: ClickHouse parses floats from text fast
/// rather than correctly rounded, and can land one ulp away (1.402 → 1.4020000000000001).
fn canon(rel: &str) -> String {
    format!(
        "SELECT seq::BIGINT AS seq, event_id::VARCHAR AS event_id, ts_us::BIGINT AS ts_us,
            received_at_us::BIGINT AS received_at_us, site, name, source,
            visitor_id::VARCHAR AS visitor_id, session_id::VARCHAR AS session_id, user_id,
            request_id, method, host, path, route, query, status::BIGINT AS status,
            round(duration_ms::DOUBLE, 9) AS duration_ms, bytes_out::BIGINT AS bytes_out, referrer,
            referrer_host, channel, utm_source, utm_medium, utm_campaign, utm_term, utm_content,
            click_id_type, click_id, user_agent, browser, browser_version, os, device_type,
            CASE lower(is_bot::VARCHAR) WHEN 'true' THEN 1 WHEN '1' THEN 1
                 WHEN 'false' THEN 0 WHEN '0' THEN 0 END AS is_bot,
            bot_reason, ip, country, region, city, json(props)::VARCHAR AS props
         FROM {rel}"
    )
}

/// A `read_json` column spec for JSON lines with the canonical columns (times as `_us`).
fn json_columns() -> String {
    use tollgate::event::Kind;
    let cols: Vec<String> = tollgate::event::COLUMNS
        .iter()
        .map(|c| {
            let (name, t) = match c.kind() {
                Kind::Timestamp => (format!("{}_us", c.name), "BIGINT"),
                Kind::BigInt | Kind::Int => (c.name.to_string(), "BIGINT"),
                Kind::Double => (c.name.to_string(), "DOUBLE"),
                _ => (c.name.to_string(), "VARCHAR"),
            };
            format!("'{name}': '{t}'")
        })
        .collect();
    format!("{{{}}}", cols.join(", "))
}

const STORE_REL: &str = "(SELECT * EXCLUDE (ts, received_at), epoch_us(ts) AS ts_us,
    epoch_us(received_at) AS received_at_us FROM store.events)";

/// Rows of `rel` that differ from the store, both ways (0 when equal).
fn differences(db: &duckdb::Connection, rel: &str) -> i64 {
    let q = |a: &str, b: &str| -> i64 {
        db.query_row(
            &format!(
                "SELECT count(*) FROM ({} EXCEPT ALL {})",
                canon(a),
                canon(b)
            ),
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let n = q(STORE_REL, rel) + q(rel, STORE_REL);
    if n > 0 {
        // Show which columns differ, for the first few events that do.
        let sql = format!(
            "WITH a AS ({}), b AS ({}),
                  d AS (SELECT * FROM a EXCEPT ALL SELECT * FROM b)
             SELECT to_json(d)::VARCHAR, to_json(b)::VARCHAR
             FROM d LEFT JOIN b USING (event_id) LIMIT 3",
            canon(STORE_REL),
            canon(rel)
        );
        let mut stmt = db.prepare(&sql).unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .unwrap();
        for row in rows {
            let (store, other) = row.unwrap();
            eprintln!("store: {store}\nother: {}\n", other.unwrap_or_default());
        }
    }
    n
}

/// ClickHouse's table, deduplicated (`FINAL`), as JSON lines in `file`; returns the row count.
fn export_clickhouse(ch: &ClickHouse, file: &Path) -> usize {
    let text = ch.query(
        "SELECT seq, toString(event_id) AS event_id, ts_us, received_at_us, site, name, source,
                toString(visitor_id) AS visitor_id, toString(session_id) AS session_id, user_id,
                request_id, method, host, path, route, query, status, duration_ms, bytes_out,
                referrer, referrer_host, channel, utm_source, utm_medium, utm_campaign, utm_term,
                utm_content, click_id_type, click_id, user_agent, browser, browser_version, os,
                device_type, is_bot, bot_reason, ip, country, region, city, props
         FROM events FINAL
         SETTINGS output_format_json_quote_64bit_integers = 0
         FORMAT JSONEachRow",
    );
    std::fs::write(file, &text).unwrap();
    text.lines().count()
}

/// PostgreSQL's table as JSON lines in `file`; returns the row count.
fn export_postgres(pg: &Postgres, file: &Path) -> usize {
    let text = pg.psql(
        "SELECT row_to_json(x) FROM (
           SELECT seq, event_id::text AS event_id,
                  (extract(epoch FROM ts) * 1000000)::bigint AS ts_us,
                  (extract(epoch FROM received_at) * 1000000)::bigint AS received_at_us,
                  site, name, source, visitor_id::text AS visitor_id,
                  session_id::text AS session_id, user_id, request_id, method, host, path, route,
                  query, status, duration_ms, bytes_out, referrer, referrer_host, channel,
                  utm_source, utm_medium, utm_campaign, utm_term, utm_content, click_id_type,
                  click_id, user_agent, browser, browser_version, os, device_type, is_bot,
                  bot_reason, ip, country, region, city, props::text AS props
           FROM events) x",
    );
    std::fs::write(file, &text).unwrap();
    text.lines().filter(|l| !l.is_empty()).count()
}

fn json_rel(file: &Path) -> String {
    format!(
        "read_json('{}', format = 'newline_delimited', columns = {})",
        file.display(),
        json_columns()
    )
}

fn parquet_rel(dir: &Path) -> String {
    format!(
        "(SELECT * EXCLUDE (ts, received_at), epoch_us(ts) AS ts_us,
             epoch_us(received_at) AS received_at_us
          FROM read_parquet('{}/**/*.parquet', hive_partitioning = false))",
        dir.display()
    )
}

fn ndjson_rel(dir: &Path) -> String {
    let mut cols = json_columns();
    cols = cols
        .replace("'ts_us': 'BIGINT'", "'ts': 'VARCHAR'")
        .replace("'received_at_us': 'BIGINT'", "'received_at': 'VARCHAR'");
    format!(
        "(SELECT * EXCLUDE (ts, received_at),
             epoch_us(strptime(ts, '%Y-%m-%dT%H:%M:%S.%fZ')) AS ts_us,
             epoch_us(strptime(received_at, '%Y-%m-%dT%H:%M:%S.%fZ')) AS received_at_us
          FROM read_json('{}/**/*.ndjson.gz', format = 'newline_delimited',
                         hive_partitioning = false, columns = {cols}))",
        dir.display()
    )
}

fn count(db: &duckdb::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Everything every sink received, checked against the store: `want` distinct events, each
/// exactly once (ClickHouse after `FINAL`; files with no duplicates at all), equal column by
/// column.
fn check_destinations(data: &Path, ch: &ClickHouse, pg: &Postgres, files: &Path, want: i64) {
    let scratch = common::temp_dir();
    let db = comparer(data);
    assert_eq!(count(&db, "SELECT count(*) FROM store.events"), want);

    let ch_file = scratch.path().join("clickhouse.ndjson");
    assert_eq!(
        export_clickhouse(ch, &ch_file) as i64,
        want,
        "ClickHouse rows (FINAL)"
    );
    let uniq: i64 = ch
        .query("SELECT uniqExact(event_id) FROM events")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(uniq, want, "distinct event_ids in ClickHouse");
    assert_eq!(
        differences(&db, &json_rel(&ch_file)),
        0,
        "ClickHouse differs from the store"
    );

    let pg_file = scratch.path().join("postgres.ndjson");
    assert_eq!(
        export_postgres(pg, &pg_file) as i64,
        want,
        "PostgreSQL rows"
    );
    assert_eq!(
        differences(&db, &json_rel(&pg_file)),
        0,
        "PostgreSQL differs from the store"
    );

    for (label, rel) in [
        ("Parquet", parquet_rel(&files.join("parquet"))),
        ("NDJSON", ndjson_rel(&files.join("ndjson"))),
    ] {
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM {rel}")),
            want,
            "{label} rows"
        );
        assert_eq!(
            count(&db, &format!("SELECT count(DISTINCT event_id) FROM {rel}")),
            want,
            "{label} distinct event_ids"
        );
        assert_eq!(differences(&db, &rel), 0, "{label} differs from the store");
    }
}

/// 99,000 API events and 1,000 proxied requests reach all four sinks exactly, with every
/// column equal to the store's; `tollgate sinks`, `/api/sinks` and the metrics report them.
///
/// One delivery run: the sinks' status, the CLI on the running and then the stopped server, and
/// the files all report the same 100,000 events, so the checks stay with the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_of_100k_events_to_every_sink() {
    let ch = ClickHouse::start();
    let pg = Postgres::start();
    let files = common::temp_dir();
    let up = Upstream::start().await;
    let mut tg = Tollgate::start(&up.url(), &sinks_toml(&ch, &pg, files.path(), 10_000));

    let c = jar_client();
    for i in 0..1_000 {
        let r = c
            .get(tg.url(&format!(
                "/page/{}?utm_source=newsletter&utm_medium=email&gclid=g{i}",
                i % 40
            )))
            .header("accept", "text/html")
            .header("accept-language", "de")
            .header("referer", "https://www.bing.com/")
            .header("user-agent", UAS[i % 4])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    assert_eq!(ingest(&tg, 0, 99_000).await, 99_000);
    tg.wait_count("SELECT count(*) FROM events", 100_000).await;
    let status = wait_shipped(&tg, Duration::from_secs(300)).await;
    assert_eq!(status.len(), 4);
    for s in &status {
        assert_eq!(s["lag_events"], 0, "{s}");
        assert_eq!(s["dead_letters"], 0, "{s}");
        assert!(s["last_error"].is_null(), "{s}");
        assert!(s["offset"].as_i64().unwrap() >= 100_000, "{s}");
    }
    let metrics = tg.metrics().await;
    for sink in ["clickhouse", "postgres", "parquet", "ndjson"] {
        assert!(
            metrics.contains(&format!(
                "tollgate_sink_events_delivered_total{{sink=\"{sink}\"}} 100000"
            )),
            "{sink} delivered count missing from:\n{metrics}"
        );
        assert!(metrics.contains(&format!("tollgate_sink_lag_events{{sink=\"{sink}\"}} 0")));
    }
    assert!(
        !tg.log().contains("Sink attempt failed"),
        "no attempt may fail with every destination up:\n{}",
        tg.log()
    );
    // The CLI through the running server.
    let data = tg.data_dir();
    let (ok, out, err) = tollgate_cmd(&["sinks", "--data", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("clickhouse (clickhouse)") && out.contains("lag 0 events"),
        "{out}"
    );
    tg.terminate();

    // The CLI on the stopped server's files reads the sinks from the configuration.
    let config = tg.dir().join("tollgate.toml");
    let (ok, out, err) = tollgate_cmd(&[
        "sinks",
        "--json",
        "--data",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4, "{out}");
    assert!(
        v.as_array().unwrap().iter().all(|s| s["lag_events"] == 0),
        "{out}"
    );

    // Hive partitions and the BigQuery schema.
    let parquet = files.path().join("parquet");
    assert!(parquet.join("bigquery_schema.json").exists());
    let partitions = std::fs::read_dir(&parquet)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("dt="))
        .count();
    assert!(
        partitions >= 3,
        "three days of events give at least 3 dt= partitions"
    );

    check_destinations(&data, &ch, &pg, files.path(), 100_000);
}

fn offsets(data: &Path) -> Vec<(String, i64)> {
    let db = comparer(data);
    let mut stmt = db
        .prepare("SELECT sink, shipped_seq FROM store.sink_offsets ORDER BY sink")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// ClickHouse, then PostgreSQL, is down for 30 s while events keep coming; afterwards every
/// event is there once, and the sink reported the outage meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_outages_lose_nothing() {
    let mut ch = ClickHouse::start();
    let mut pg = Postgres::start();
    let files = common::temp_dir();
    let mut tg = Tollgate::start(
        "http://127.0.0.1:1",
        &sinks_toml(&ch, &pg, files.path(), 1_000),
    );

    // Under load: 1,000 events every 250 ms throughout.
    let mut sent = 0usize;
    let send = |from: usize| {
        let url = tg.admin_url("/api/events");
        async move {
            let r = post_ndjson(url, event_lines(from, 1_000)).await;
            assert_eq!(r["written"], 1_000, "{r}");
        }
    };
    let phase = |secs: u64| Instant::now() + Duration::from_secs(secs);

    // 5 s of normal shipping.
    let until = phase(5);
    while Instant::now() < until {
        send(sent).await;
        sent += 1_000;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (label, which) in [("ClickHouse", 0), ("PostgreSQL", 1)] {
        if which == 0 {
            ch.stop();
        } else {
            pg.stop();
        }
        let until = phase(30);
        let mut saw_error = false;
        while Instant::now() < until {
            send(sent).await;
            sent += 1_000;
            let s = sinks_status(&tg).await;
            saw_error |=
                s[which]["last_error"].is_string() && s[which]["lag_events"].as_i64() > Some(0);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(saw_error, "{label} outage was never reported by /api/sinks");
        if which == 0 {
            ch.restart();
        } else {
            pg.restart();
        }
    }
    let status = wait_shipped(&tg, Duration::from_secs(120)).await;
    assert!(status.iter().all(|s| s["dead_letters"] == 0), "{status:?}");
    let log = tg.log();
    assert!(
        log.contains("Sink attempt failed"),
        "outages were not logged"
    );
    let data = tg.data_dir();
    tg.terminate();
    check_destinations(&data, &ch, &pg, files.path(), sent as i64);
}

/// `kill -9` in the middle of shipping, then a restart on the same data directory: shipping
/// resumes from the committed offsets, and every destination ends with exactly the events of
/// the store (the files with no duplicate, since a resent range rewrites the same files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_shipping_resumes_exactly() {
    let ch = ClickHouse::start();
    let pg = Postgres::start();
    let files = common::temp_dir();
    let data_dir = common::temp_dir();
    let data = data_dir.path().join("data");
    // Events first, with no sinks: a backlog to ship.
    let mut tg = Tollgate::start_on("http://127.0.0.1:1", "", &data);
    assert_eq!(ingest(&tg, 0, 60_000).await, 60_000);
    tg.terminate();

    // Small batches, so that the kill lands mid-way.
    let toml = sinks_toml(&ch, &pg, files.path(), 500);
    let mut tg = Tollgate::start_on("http://127.0.0.1:1", &toml, &data);
    let start = Instant::now();
    loop {
        // The table appears with the first batch.
        let r = ch.request("POST", "/", b"SELECT count() FROM events");
        let n: i64 = if r.status == 200 {
            r.text().trim().parse().unwrap()
        } else {
            0
        };
        if n >= 5_000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "shipping never started:\n{}",
            tg.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    tg.kill9();
    drop(tg);
    let before = offsets(&data);
    assert!(
        before.iter().any(|(_, o)| *o < 60_000),
        "the kill came after shipping had finished: {before:?}"
    );

    let mut tg = Tollgate::start_on("http://127.0.0.1:1", &toml, &data);
    wait_shipped(&tg, Duration::from_secs(180)).await;
    tg.terminate();
    for (sink, offset) in offsets(&data) {
        let was = before
            .iter()
            .find(|(s, _)| *s == sink)
            .map_or(0, |(_, o)| *o);
        assert!(
            offset >= was && offset == 60_000,
            "{sink}: {was} then {offset}"
        );
    }
    check_destinations(&data, &ch, &pg, files.path(), 60_000);
}

/// Events a destination's schema refuses go to the dead letters with the reason, and the
/// events after them are shipped.
///
/// One run of 2,000 events through both refusing sinks: the dead letters checked, and then
/// forgotten, are the ones this run produced, so the steps stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_go_to_dead_letter_and_the_rest_flow() {
    let ch = ClickHouse::start();
    let pg = Postgres::start();
    // The warehouse team's own tables: ClickHouse wants user ids to be UUIDs, and PostgreSQL
    // refuses "poison" paths.
    ch.query(&tollgate_ch_ddl().replace("user_id Nullable(String)", "user_id Nullable(UUID)"));
    pg.psql(&format!(
        "{}; ALTER TABLE events ADD CONSTRAINT no_poison CHECK (path NOT LIKE '%poison%');",
        tollgate_pg_ddl()
    ));
    let files = common::temp_dir();
    let mut tg = Tollgate::start(
        "http://127.0.0.1:1",
        &sinks_toml(&ch, &pg, files.path(), 1_000),
    );

    // 2,000 events with a uuid user id, among them three with a plain one (refused by
    // ClickHouse) and two with a poison path (refused by PostgreSQL).
    let mut lines = String::new();
    for i in 0..2_000 {
        let (user, path) = match i {
            100 | 900 | 1999 => ("alice".to_string(), "/ok".to_string()),
            500 | 1500 => (uuid(i), "/poison".to_string()),
            _ => (uuid(i), format!("/p/{i}")),
        };
        lines.push_str(
            &serde_json::json!({"name": "purchase", "user_id": user, "url": format!("https://shop.example{path}")})
                .to_string(),
        );
        lines.push('\n');
    }
    let r = post_ndjson(tg.admin_url("/api/events"), lines).await;
    assert_eq!(r["written"], 2_000, "{r}");
    let status = wait_shipped(&tg, Duration::from_secs(120)).await;
    let by_name = |n: &str| status.iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(by_name("clickhouse")["dead_letters"], 3);
    assert_eq!(by_name("postgres")["dead_letters"], 2);
    assert_eq!(by_name("parquet")["dead_letters"], 0);

    let ch_rows: i64 = ch
        .query("SELECT count() FROM events FINAL")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ch_rows, 1_997);
    assert_eq!(pg.psql("SELECT count(*) FROM events"), "1998");
    // The last event (seq 2000) was refused, the one before it shipped: nothing stalled.
    assert_eq!(ch.query("SELECT max(seq) FROM events").trim(), "1999");
    assert_eq!(pg.psql("SELECT max(seq) FROM events"), "2000");

    let dead = tg
        .query(
            "SELECT sink, seq, reason, event->>'user_id' AS user_id, event->>'path' AS path
             FROM sink_dead_letter ORDER BY sink, seq",
        )
        .await;
    let sinks: Vec<(&str, i64)> = dead
        .iter()
        .map(|r| (r[0].as_str().unwrap(), r[1].as_i64().unwrap()))
        .collect();
    assert_eq!(
        sinks,
        vec![
            ("clickhouse", 101),
            ("clickhouse", 901),
            ("clickhouse", 2000),
            ("postgres", 501),
            ("postgres", 1501)
        ]
    );
    for r in &dead {
        let reason = r[2].as_str().unwrap();
        if r[0] == "clickhouse" {
            assert!(
                reason.contains("ClickHouse answered") && reason.contains("Code:"),
                "{reason}"
            );
            assert_eq!(r[3], "alice");
        } else {
            assert!(
                reason.contains("no_poison") && reason.contains("23514"),
                "{reason}"
            );
            assert_eq!(r[4], "/poison");
        }
    }
    // Forgetting a person removes their refused events from the dead letters too.
    let r = reqwest::Client::new()
        .post(tg.admin_url("/api/forget"))
        .json(&serde_json::json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let left = tg
        .query("SELECT sink, seq FROM sink_dead_letter ORDER BY sink, seq")
        .await;
    assert_eq!(
        left,
        vec![
            vec![serde_json::json!("postgres"), serde_json::json!(501)],
            vec![serde_json::json!("postgres"), serde_json::json!(1501)],
        ]
    );
    tg.terminate();
}

fn uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

fn tollgate_ch_ddl() -> String {
    tollgate::sinks::clickhouse_ddl("events")
}

fn tollgate_pg_ddl() -> String {
    tollgate::sinks::postgres_ddl("events")
}

/// `docs/warehouses.md` shows the tables exactly as tollgate creates them.
#[test]
fn documented_tables_are_the_real_ones() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/warehouses.md"),
    )
    .unwrap();
    for ddl in [tollgate_ch_ddl(), tollgate_pg_ddl()] {
        assert!(doc.contains(&ddl), "docs/warehouses.md lacks:\n{ddl}");
    }
}

/// Retention deletes old events only once every sink has shipped them.
///
/// One data directory through a sink outage, its recovery and a restart: each step depends on
/// the seqs and pruning the one before left, so the steps stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_waits_for_every_sink() {
    let mut ch = ClickHouse::start();
    ch.stop();
    let files = common::temp_dir();
    let toml = format!(
        r#"
[store]
retention_days = 2
prune_interval_secs = 1

[[sinks]]
type = "clickhouse"
url = "{}"
batch_age_ms = 100
retry_initial_ms = 100
retry_max_ms = 500

[[sinks]]
type = "files"
dir = "{}"
batch_age_ms = 100
"#,
        ch.url(),
        files.path().display()
    );
    let mut tg = Tollgate::start("http://127.0.0.1:1", &toml);
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    let mut lines = String::new();
    for i in 0..300 {
        // 100 events from today, then 100 three days old and 100 five days old: the old ones
        // have the highest seqs, so pruning removes the highest seq there is.
        let ts = now - [0, 3 * day, 5 * day][i / 100] - i as i64;
        lines.push_str(
            &serde_json::json!({"name": "old_or_new", "ts": ts, "user_id": "u"}).to_string(),
        );
        lines.push('\n');
    }
    let r = post_ndjson(tg.admin_url("/api/events"), lines).await;
    assert_eq!(r["written"], 300, "{r}");

    // The files sink ships everything; ClickHouse is down, so nothing may be pruned.
    let start = Instant::now();
    loop {
        let s = sinks_status(&tg).await;
        let files_done = s
            .iter()
            .any(|s| s["name"] == "files" && s["lag_events"] == 0);
        if files_done && start.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 300);

    // ClickHouse comes back, ships, and then the 200 old events go.
    ch.restart();
    wait_shipped(&tg, Duration::from_secs(60)).await;
    let start = Instant::now();
    while tg.count("SELECT count(*) FROM events").await != 100 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "old events were not pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        tg.count(
            "SELECT count(*) FROM events WHERE ts > (SELECT max(ts) FROM events) - INTERVAL 1 DAY"
        )
        .await,
        100
    );
    let ch_rows: i64 = ch
        .query("SELECT count() FROM events FINAL")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ch_rows, 300, "everything was shipped before it was pruned");
    // New events after a restart get new seqs, never ones a sink has already passed.
    let data = tg.data_dir();
    tg.terminate();
    let tg = Tollgate::start_on("http://127.0.0.1:1", &toml, &data);
    let line = serde_json::json!({"name": "after_restart", "user_id": "u"}).to_string();
    let r = post_ndjson(tg.admin_url("/api/events"), line).await;
    assert_eq!(r["written"], 1);
    assert_eq!(
        tg.count("SELECT seq FROM events WHERE name = 'after_restart'")
            .await,
        301
    );
    wait_shipped(&tg, Duration::from_secs(30)).await;
    let ch_rows: i64 = ch
        .query("SELECT count() FROM events FINAL")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ch_rows, 301);
}

/// `tollgate forget` is repeated downstream: ClickHouse and PostgreSQL delete the subject's
/// events, the files sink records the request beside its files; nobody else's events go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_is_repeated_downstream() {
    let ch = ClickHouse::start();
    let pg = Postgres::start();
    let files = common::temp_dir();
    let tg = Tollgate::start(
        "http://127.0.0.1:1",
        &sinks_toml(&ch, &pg, files.path(), 1_000),
    );
    let (a, b) = (uuid(0xa), uuid(0xb));
    let mut lines = String::new();
    for i in 0..200 {
        let e = if i % 2 == 0 {
            serde_json::json!({"name": "view", "visitor_id": a, "user_id": "o'brien"})
        } else {
            serde_json::json!({"name": "view", "visitor_id": b})
        };
        lines.push_str(&e.to_string());
        lines.push('\n');
    }
    let r = post_ndjson(tg.admin_url("/api/events"), lines).await;
    assert_eq!(r["written"], 200, "{r}");
    wait_shipped(&tg, Duration::from_secs(60)).await;
    let ch_count = |who: &str| -> i64 {
        ch.query(&format!(
            "SELECT count() FROM events WHERE visitor_id = toUUID('{who}')"
        ))
        .trim()
        .parse()
        .unwrap()
    };
    let pg_count = |who: &str| {
        pg.psql(&format!(
            "SELECT count(*) FROM events WHERE visitor_id = '{who}'"
        ))
    };
    assert_eq!((ch_count(&a), ch_count(&b)), (100, 100));

    // By user id, with a quote in it, through the running server.
    let data = tg.data_dir();
    let (ok, out, err) = tollgate_cmd(&[
        "forget",
        "--data",
        data.to_str().unwrap(),
        "--user",
        "o'brien",
    ]);
    assert!(ok, "{out}{err}");
    let start = Instant::now();
    while ch_count(&a) != 0 || pg_count(&a) != "0" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "forget was not repeated downstream: ClickHouse {}, PostgreSQL {}\n{}",
            ch_count(&a),
            pg_count(&a),
            tg.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ch_count(&b), 100);
    assert_eq!(pg_count(&b), "100");
    // Each sink records the request once, after it has repeated it.
    let start = Instant::now();
    while tg.count("SELECT count(*) FROM sink_forgets").await != 4 {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", tg.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for dir in ["parquet", "ndjson"] {
        let recorded: Vec<Value> = std::fs::read_dir(files.path().join(dir).join("_forget"))
            .unwrap()
            .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
            .collect();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0]["subject_type"], "user_id");
        assert_eq!(recorded[0]["subject"], "o'brien");
    }
    let once = tg
        .count("SELECT count(DISTINCT sink) FROM sink_forgets")
        .await;
    assert_eq!(once, 4, "each sink records the request once");
}

/// Ingested events committed while the writer holds proxy events in its open transaction
/// (steady traffic: here 1,500 page views, with a batch of 2,000 and a bulk wait of 10 s) are
/// committed past it, but not shipped past it: a sink that moved its offset beyond the open
/// transaction's events would never ship them. Once the batch is full and committed, every
/// event of both paths reaches the NDJSON sink exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_events_are_not_shipped_past_the_proxys_open_transaction() {
    let files = common::temp_dir();
    let ndjson = files.path().join("ndjson");
    let up = Upstream::start().await;
    let toml = format!(
        r#"[pipeline]
flush_interval_ms = 200
batch_size = 2000
bulk_wait_ms = 10000

[[sinks]]
name = "ndjson"
type = "files"
dir = "{}"
format = "ndjson"
batch_age_ms = 100
"#,
        ndjson.display()
    );
    let mut tg = Tollgate::start(&up.url(), &toml);
    let views = |from: usize, n: usize| {
        let tasks: Vec<_> = (0..10)
            .map(|t| {
                let (c, urls) = (
                    jar_client(),
                    (from..from + n)
                        .filter(|i| i % 10 == t)
                        .map(|i| tg.url(&format!("/page/{i}")))
                        .collect::<Vec<_>>(),
                );
                tokio::spawn(async move {
                    for url in urls {
                        let r = c.get(url).header("accept", "text/html").send().await;
                        assert!(r.unwrap().status().is_success());
                    }
                })
            })
            .collect();
        async move {
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    views(0, 1_500).await;
    assert_eq!(ingest(&tg, 0, 500).await, 500);
    let proxy = "SELECT count(*) FROM events WHERE source = 'proxy'";
    assert_eq!(tg.count("SELECT count(*) FROM events").await, 500);
    assert_eq!(tg.count(proxy).await, 0, "the page views are held back");
    // Several sink batches' time: the sink waits for the held-back events.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let s = sinks_status(&tg).await;
    assert_eq!(s[0]["offset"], 0, "nothing shipped past them: {s:?}");
    views(1_500, 500).await;
    tg.wait_count(proxy, 2_000).await;
    let s = wait_shipped(&tg, Duration::from_secs(60)).await;
    assert_eq!(s[0]["dead_letters"], 0, "{s:?}");
    let data = tg.data_dir();
    tg.terminate();
    let db = comparer(&data);
    let shipped = ndjson_rel(&ndjson);
    for what in ["count(*)", "count(DISTINCT event_id)"] {
        let n = count(&db, &format!("SELECT {what} FROM {shipped}"));
        assert_eq!(n, 2_500, "{what} of the shipped events");
    }
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM (SELECT event_id FROM {shipped} \
                 EXCEPT SELECT event_id::VARCHAR FROM store.events)"
            )
        ),
        0,
        "every shipped event is a stored one"
    );
}
