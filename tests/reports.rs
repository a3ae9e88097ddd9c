//! The reports API against a generated dataset (`tollgate generate`): every number a report
//! gives is checked against plain SQL written here, in a different shape (window functions,
//! EXISTS, explicit day boundaries), run through the read-only query API on the same store.

mod common;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use common::upstream::Upstream;
use common::Tollgate;
use serde_json::{json, Value};

/// A generated store served by a real tollgate.
struct Fixture {
    tg: Tollgate,
    _up: Upstream,
    _data: tempfile::TempDir,
    from: NaiveDate,
    to: NaiveDate,
}

impl Fixture {
    async fn start(events: u64, days: u32, seed: u64, toml: &str) -> Fixture {
        let data = common::generated_store(events, days, seed);
        let up = Upstream::start().await;
        let tg = Tollgate::start_on(&up.url(), toml, data.path());
        let to = Utc::now().date_naive();
        Fixture {
            tg,
            _up: up,
            _data: data,
            from: to - Duration::days(13),
            to,
        }
    }

    /// `GET /api/reports/<name>` with the fixture's range plus `params`; asserts a 200.
    async fn report(&self, name: &str, params: &[(&str, &str)]) -> Value {
        let (status, body) = self.report_status(name, params).await;
        assert_eq!(status, 200, "{name} {params:?}: {body}");
        body
    }

    async fn report_status(&self, name: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let mut q: Vec<(String, String)> = vec![
            ("from".into(), self.from.to_string()),
            ("to".into(), self.to.to_string()),
        ];
        q.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let resp = reqwest::Client::new()
            .get(self.tg.admin_url(&format!("/api/reports/{name}")))
            .query(&q)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// The range as a SQL condition on `ts` (UTC, the site's time zone here).
    fn range(&self) -> String {
        format!(
            "ts >= TIMESTAMP '{} 00:00:00' AND ts < TIMESTAMP '{} 00:00:00'",
            self.from,
            self.to + Duration::days(1)
        )
    }

    async fn sql(&self, sql: &str) -> Vec<Vec<Value>> {
        self.tg.query(sql).await
    }
}

/// Non-bot page views in the range.
fn page_views(f: &Fixture) -> String {
    format!(
        "SELECT * FROM events WHERE name = 'page_view' AND {} AND coalesce(is_bot, false) = false",
        f.range()
    )
}

/// Non-bot page views, whatever their time.
const ALL_PAGE_VIEWS: &str =
    "SELECT * FROM events WHERE name = 'page_view' AND coalesce(is_bot, false) = false";

/// The sessions that start in the range, one row each, as plain SQL over every non-bot page
/// view: the columns of the session's first page view, plus `n` (its page views, also those
/// after the range), `last_ts` and `exit` (its last page view's time and path).
fn starts(f: &Fixture) -> String {
    starts_where(&f.range())
}

/// [`starts`] for the sessions whose first page view meets `cond`.
fn starts_where(cond: &str) -> String {
    format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY session_id ORDER BY ts) AS rn, \
           count(*) OVER (PARTITION BY session_id) AS n, \
           max(ts) OVER (PARTITION BY session_id) AS last_ts, \
           last_value(path) OVER (PARTITION BY session_id ORDER BY ts \
             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS exit \
           FROM ({ALL_PAGE_VIEWS}) WHERE session_id IS NOT NULL) WHERE rn = 1 AND {cond}"
    )
}

/// Rows of a report table.
fn rows_of(t: &Value) -> Vec<Vec<Value>> {
    serde_json::from_value(t["rows"].clone()).unwrap()
}

/// Equal, with floats equal to 4 decimals.
fn same_rows(what: &str, got: &[Vec<Value>], want: &[Vec<Value>]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: row count\n got {got:?}\nwant {want:?}"
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{what}: width of {g:?} vs {w:?}");
        for (a, b) in g.iter().zip(w) {
            let ok = match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() < 1e-4,
                _ => a == b,
            };
            assert!(ok, "{what}: {g:?} != {w:?}");
        }
    }
    assert!(!got.is_empty(), "{what}: no rows to compare");
}

/// A report table equal to `want`, except in the columns it lists as `estimated`
/// (HyperLogLog sketches, `docs/api.md`): those within 3 %. It lists a column if and only if a
/// row has more than 2,048 in it (below that, sketches are exact).
fn same_table(what: &str, table: &Value, want: &[Vec<Value>]) {
    let got = rows_of(table);
    let columns: Vec<String> = serde_json::from_value(table["columns"].clone()).unwrap();
    let estimated: Vec<usize> = table
        .get("estimated")
        .map(|e| serde_json::from_value::<Vec<String>>(e.clone()).unwrap())
        .unwrap_or_default()
        .iter()
        .map(|c| columns.iter().position(|x| x == c).unwrap())
        .collect();
    let visitors = columns.iter().position(|c| c == "visitors");
    let over = visitors.is_some_and(|i| want.iter().any(|r| r[i].as_i64().unwrap() > 2_048));
    assert_eq!(
        !estimated.is_empty(),
        over,
        "{what}: estimated {estimated:?}"
    );
    let blur = |rows: &[Vec<Value>]| -> Vec<Vec<Value>> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        if estimated.contains(&i) {
                            Value::Null
                        } else {
                            v.clone()
                        }
                    })
                    .collect()
            })
            .collect()
    };
    same_rows(what, &blur(&got), &blur(want));
    for (g, w) in got.iter().zip(want) {
        for &i in &estimated {
            let (x, y) = (g[i].as_f64().unwrap(), w[i].as_f64().unwrap());
            assert!((x - y).abs() <= 0.03 * y, "{what}: {g:?} against {w:?}");
        }
    }
}

fn close(what: &str, got: &Value, want: &Value) {
    let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
    assert!((g - w).abs() < 1e-4, "{what}: got {g}, want {w}");
}

/// Each report over one generated store (starting it is the expensive part), against plain SQL
/// over the same store; the steps only read, so their order does not matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_reports_match_plain_sql() {
    let f = Fixture::start(60_000, 21, 11, "").await;
    let pv = page_views(&f);

    overview_totals_and_daily_series(&f, &pv).await;
    pages_top_entry_and_exit(&f, &pv).await;
    acquisition_by_each_sessions_first_page_view(&f).await;
    audience_by_device_browser_os_and_country(&f, &pv).await;
    filters_on_a_session_and_an_event_dimension(&f, &pv).await;
    bots_are_excluded_unless_asked_for(&f).await;
}

/// The overview: its totals, and its daily series.
async fn overview_totals_and_daily_series(f: &Fixture, pv: &str) {
    // Overview totals.
    let o = f.report("overview", &[]).await;
    let t = &o["totals"];
    let want = &f
        .sql(&format!(
            "WITH pv AS ({pv}), s AS (SELECT visitor_id, n, \
               date_diff('microsecond', ts, last_ts) AS us FROM ({starts})) \
             SELECT (SELECT count(DISTINCT visitor_id) FROM (SELECT visitor_id FROM s \
                 UNION ALL SELECT visitor_id FROM pv WHERE session_id IS NULL)), \
               (SELECT count(*) FROM s), (SELECT count(*) FROM pv), \
               (SELECT avg(CASE WHEN n = 1 THEN 1.0 ELSE 0.0 END) FROM s), \
               (SELECT avg(us) / 1000000.0 FROM s)",
            starts = starts(f)
        ))
        .await[0];
    assert_eq!(t["visitors"], want[0]);
    assert_eq!(t["sessions"], want[1]);
    assert_eq!(t["pageviews"], want[2]);
    assert!(
        want[2].as_i64().unwrap() > 10_000,
        "too little data: {want:?}"
    );
    close("bounce_rate", &t["bounce_rate"], &want[3]);
    close("avg_session_seconds", &t["avg_session_seconds"], &want[4]);
    close(
        "views_per_session",
        &t["views_per_session"],
        &json!(want[2].as_f64().unwrap() / want[1].as_f64().unwrap()),
    );

    // The daily series: one row per day of the range, by explicit day boundaries. A session
    // (and its visitor) counts on the day of its first page view; page views on theirs.
    let series = rows_of(&o["series"]);
    assert_eq!(series.len(), 14);
    let days: Vec<String> = (0..14)
        .map(|i| {
            let d = f.from + Duration::days(i);
            format!(
                "('{d}', TIMESTAMP '{d} 00:00:00', TIMESTAMP '{} 00:00:00')",
                d + Duration::days(1)
            )
        })
        .collect();
    let want = f.sql(&series_sql(pv, &starts(f), &days)).await;
    same_rows("overview.series", &series, &want);
}

/// The overview's series as plain SQL over the page views `pv` and the sessions `starts`
/// (rows of [`starts`]), for `days` (`(day, lo, hi)` rows): a session and its visitor count
/// on the day of its first page view, a page view on its own (and the visitor of a page view
/// without a session there too).
fn series_sql(pv: &str, starts: &str, days: &[String]) -> String {
    format!(
        "WITH pv AS ({pv}), \
           starts AS (SELECT session_id, visitor_id, ts FROM ({starts}) \
             UNION ALL SELECT NULL, visitor_id, ts FROM pv WHERE session_id IS NULL) \
         SELECT d.day, \
           (SELECT count(DISTINCT visitor_id) FROM starts WHERE ts >= d.lo AND ts < d.hi), \
           (SELECT count(session_id) FROM starts WHERE ts >= d.lo AND ts < d.hi), \
           (SELECT count(*) FROM pv WHERE ts >= d.lo AND ts < d.hi) \
         FROM (VALUES {}) d(day, lo, hi) ORDER BY d.day",
        days.join(", ")
    )
}

/// The pages report: top, entry and exit pages.
async fn pages_top_entry_and_exit(f: &Fixture, pv: &str) {
    // Pages: top, entry and exit.
    let p = f.report("pages", &[("limit", "10")]).await;
    let want = f
        .sql(&format!(
            "SELECT path, count(DISTINCT visitor_id) AS v, count(*) AS n FROM ({pv}) \
             GROUP BY path ORDER BY n DESC, v DESC, path LIMIT 10"
        ))
        .await;
    same_table("pages.top", &p["top"], &want);
    for (key, col) in [("entry", "path"), ("exit", "exit")] {
        let want = f
            .sql(&format!(
                "SELECT {col} AS p, count(*) AS n FROM ({starts}) \
                 GROUP BY p ORDER BY n DESC, p LIMIT 10",
                starts = starts(f)
            ))
            .await;
        same_rows(&format!("pages.{key}"), &rows_of(&p[key]), &want);
    }
}

/// The acquisition report, each dimension alone and all together.
async fn acquisition_by_each_sessions_first_page_view(f: &Fixture) {
    // Acquisition: by each session's first page view.
    let a = f
        .report("acquisition", &[("limit", "10"), ("dimension", "all")])
        .await;
    assert_eq!(a["tables"].as_object().unwrap().len(), 8);
    let one = f
        .report(
            "acquisition",
            &[("limit", "10"), ("dimension", "utm_source")],
        )
        .await;
    assert_eq!(one["tables"]["utm_source"], a["tables"]["utm_source"]);
    assert_eq!(one["tables"].as_object().unwrap().len(), 1);
    for dim in [
        "channel",
        "utm_source",
        "utm_campaign",
        "referrer_host",
        "click_id_type",
    ] {
        let want = f
            .sql(&format!(
                "SELECT {dim}, count(DISTINCT visitor_id) AS v, count(*) AS s FROM ({starts}) \
                 GROUP BY {dim} ORDER BY s DESC, v DESC, {dim} NULLS LAST LIMIT 10",
                starts = starts(f)
            ))
            .await;
        same_table(&format!("acquisition.{dim}"), &a["tables"][dim], &want);
    }
}

/// The audience report, one table per dimension.
async fn audience_by_device_browser_os_and_country(f: &Fixture, pv: &str) {
    // Audience.
    let au = f.report("audience", &[("limit", "10")]).await;
    for dim in ["device_type", "browser", "os", "country"] {
        let want = f
            .sql(&format!(
                "SELECT {dim}, count(DISTINCT visitor_id) AS v, count(*) AS n FROM ({pv}) \
                 GROUP BY {dim} ORDER BY n DESC, v DESC, {dim} NULLS LAST LIMIT 10"
            ))
            .await;
        same_table(&format!("audience.{dim}"), &au["tables"][dim], &want);
    }
}

/// The overview filtered by where the visit came from and by device.
async fn filters_on_a_session_and_an_event_dimension(f: &Fixture, pv: &str) {
    // Filters: a session dimension (where the visit came from) and an event dimension.
    let o = f
        .report(
            "overview",
            &[("utm_source", "facebook"), ("device_type", "mobile")],
        )
        .await;
    let want = &f
        .sql(&format!(
            "WITH pv AS ({pv}), \
               fb AS (SELECT session_id FROM ({firsts}) WHERE utm_source = 'facebook'), \
               s AS (SELECT * FROM ({starts}) WHERE utm_source = 'facebook' \
                 AND device_type = 'mobile') \
             SELECT (SELECT count(DISTINCT visitor_id) FROM s), (SELECT count(*) FROM s), \
               (SELECT count(*) FROM pv WHERE device_type = 'mobile' \
                 AND session_id IN (SELECT session_id FROM fb))",
            firsts = starts_where("true"),
            starts = starts(f)
        ))
        .await[0];
    assert_eq!(o["totals"]["visitors"], want[0]);
    assert_eq!(o["totals"]["sessions"], want[1]);
    assert_eq!(o["totals"]["pageviews"], want[2]);
    assert!(want[2].as_i64().unwrap() > 100, "{want:?}");
    assert_eq!(o["filters"]["utm_source"], json!(["facebook"]));
}

/// Bots in the overview, left out and asked for.
async fn bots_are_excluded_unless_asked_for(f: &Fixture) {
    // Bots are excluded unless asked for.
    let with_bots = f.report("overview", &[("bots", "include")]).await;
    let want = f
        .sql(&format!(
            "SELECT count(*) FROM events WHERE name = 'page_view' AND {}",
            f.range()
        ))
        .await[0][0]
        .clone();
    assert_eq!(with_bots["totals"]["pageviews"], want);
    let plain = f.report("overview", &[]).await;
    assert!(
        want.as_i64().unwrap() > plain["totals"]["pageviews"].as_i64().unwrap(),
        "the generated data has bots"
    );
}

/// Three reports over one generated store, against plain SQL over the same store; the steps
/// only read, so their order does not matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_health_events_and_retention_match_plain_sql() {
    let f = Fixture::start(60_000, 21, 12, "").await;
    api_health_by_route(&f).await;
    custom_events_and_a_property_breakdown(&f).await;
    weekly_retention_per_person(&f).await;
}

/// API health: calls, errors and latency by route, and in total. Without filters the calls
/// are counted per latency bucket (`api_latencies`, built with the generated days), so the
/// percentiles are estimates, labelled, within 1 % (and the rounding to a microsecond); with
/// a filter they are exact.
async fn api_health_by_route(f: &Fixture) {
    for (filter, cond) in [(None, "true"), (Some(("method", "GET")), "method = 'GET'")] {
        let calls = format!(
            "SELECT * FROM events WHERE name = 'api_call' AND {} AND {cond} \
             AND coalesce(is_bot, false) = false",
            f.range()
        );
        let mut params = vec![("limit", "10")];
        params.extend(filter);
        let api = f.report("api", &params).await;
        let estimated = ["p50_ms", "p95_ms", "p99_ms"];
        let label = filter.is_none().then(|| serde_json::json!(estimated));
        assert_eq!(api["routes"].get("estimated").cloned(), label);
        assert_eq!(api["totals"].get("estimated").cloned(), label);
        // Within 1 % when estimated (the rows' percentiles, then the totals'), else equal.
        let close = |what: &str, got: &Value, want: &Value| {
            let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
            let off = if label.is_some() {
                0.01 * w + 0.0011
            } else {
                1e-4
            };
            assert!((g - w).abs() <= off, "{what}: got {g}, want {w}");
        };
        let want = f
            .sql(&format!(
                "SELECT route, method, count(*) AS n, \
                   sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END), \
                   round(sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) / count(*), 4), \
                   round(quantile_cont(duration_ms, 0.5), 3), \
                   round(quantile_cont(duration_ms, 0.95), 3), \
                   round(quantile_cont(duration_ms, 0.99), 3) \
                 FROM ({calls}) GROUP BY route, method ORDER BY n DESC, route, method LIMIT 10"
            ))
            .await;
        let got = rows_of(&api["routes"]);
        let counts = |rows: &[Vec<Value>]| -> Vec<Vec<Value>> {
            rows.iter().map(|r| r[..5].to_vec()).collect()
        };
        same_rows("api.routes", &counts(&got), &counts(&want));
        for (g, w) in got.iter().zip(&want) {
            for i in 5..8 {
                close(&format!("api.routes {g:?}"), &g[i], &w[i]);
            }
        }
        let want = &f
            .sql(&format!(
                "SELECT count(*), count(*) FILTER (WHERE status >= 500), \
                   round(quantile_cont(duration_ms, 0.5), 3), \
                   round(quantile_cont(duration_ms, 0.95), 3), \
                   round(quantile_cont(duration_ms, 0.99), 3) FROM ({calls})"
            ))
            .await[0];
        assert_eq!(api["totals"]["calls"], want[0]);
        assert_eq!(api["totals"]["errors"], want[1]);
        close("p50", &api["totals"]["p50_ms"], &want[2]);
        close("p95", &api["totals"]["p95_ms"], &want[3]);
        close("p99", &api["totals"]["p99_ms"], &want[4]);
        assert!(
            want[1].as_i64().unwrap() > 0,
            "the generated API has errors"
        );
    }
}

/// Custom events, and one broken down by a property.
async fn custom_events_and_a_property_breakdown(f: &Fixture) {
    // Custom events, and one broken down by a property.
    let ev = f
        .report(
            "events",
            &[("event", "purchased"), ("property", "category")],
        )
        .await;
    let custom = format!(
        "SELECT * FROM events WHERE source <> 'proxy' AND {} AND coalesce(is_bot, false) = false",
        f.range()
    );
    let want = f
        .sql(&format!(
            "SELECT name, count(*) AS n, count(DISTINCT coalesce(visitor_id::VARCHAR, 'user:' || user_id)) \
             FROM ({custom}) GROUP BY name ORDER BY n DESC, name"
        ))
        .await;
    same_rows("events.events", &rows_of(&ev["events"]), &want);
    let want = f
        .sql(&format!(
            "SELECT props->>'category' AS c, count(*) AS n, \
               count(DISTINCT coalesce(visitor_id::VARCHAR, 'user:' || user_id)) \
             FROM ({custom}) WHERE name = 'purchased' GROUP BY c ORDER BY n DESC, c"
        ))
        .await;
    same_rows("events.breakdown", &rows_of(&ev["breakdown"]), &want);
    assert_eq!(ev["breakdown"]["dimension"], "prop.category");
}

/// Weekly retention, per person (stitched through identities): a person's weeks are those in
/// which one of their sessions started.
async fn weekly_retention_per_person(f: &Fixture) {
    let r = f.report("retention", &[]).await;
    let want = f
        .sql(&format!(
            "WITH idm AS (SELECT visitor_id, min(user_id) AS u FROM identities GROUP BY visitor_id), \
             starts AS ({starts}), \
             pv AS (SELECT coalesce(idm.u, p.visitor_id::VARCHAR) AS person, \
               date_trunc('week', p.ts)::DATE AS wk FROM starts p LEFT JOIN idm USING (visitor_id)), \
             c AS (SELECT person, min(wk) AS cohort FROM pv GROUP BY person) \
             SELECT strftime(cohort, '%Y-%m-%d'), (wk - cohort) // 7 AS n, count(DISTINCT person) \
             FROM pv JOIN c USING (person) GROUP BY ALL ORDER BY 1, 2",
            starts = starts(f)
        ))
        .await;
    let grid = rows_of(&r["cohorts"]);
    let mut checked = 0;
    for w in &want {
        let row = grid
            .iter()
            .find(|g| g[0] == w[0])
            .unwrap_or_else(|| panic!("no cohort {}", w[0]));
        let n = w[1].as_u64().unwrap() as usize;
        assert_eq!(row[2 + n], w[2], "cohort {} week {n}", w[0]);
        if n == 0 {
            assert_eq!(row[1], w[2], "cohort {} size", w[0]);
        }
        checked += 1;
    }
    assert_eq!(grid.len(), want.iter().filter(|w| w[1] == 0).count());
    // One cohort per calendar week the range touches (2 when it runs Monday to Sunday, else
    // 3); each has its size, and each but the last a following week.
    let mut weeks: Vec<NaiveDate> = (0..=(f.to - f.from).num_days())
        .map(|i| {
            (f.from + Duration::days(i))
                .week(chrono::Weekday::Mon)
                .first_day()
        })
        .collect();
    weeks.dedup();
    assert_eq!(grid.len(), weeks.len(), "{want:?}");
    assert!(checked >= 2 * weeks.len() - 1, "{want:?}");
}

/// The seed's question: people who came from campaigns, looked at a product, registered and
/// bought a camera, each within a day of the product view; broken down by `utm_source`.
///
/// One question: the plain-SQL truth is one query, built once and shared by the totals and the
/// breakdown, so it stays with them in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funnel_with_a_one_day_window_by_utm_source_matches_plain_sql() {
    let f = Fixture::start(80_000, 21, 13, "").await;
    let spec = json!([
        {"type": "path", "pattern": "/product/*"},
        {"type": "event", "name": "registered"},
        {"type": "event", "name": "purchased", "props": {"category": "cameras"}},
    ])
    .to_string();
    let r = f
        .report(
            "funnel",
            &[
                ("steps", &spec),
                ("window", "1d"),
                ("breakdown", "utm_source"),
            ],
        )
        .await;
    // Each person's best start: the product view from which they got furthest within a day.
    let truth = format!(
        "WITH idm AS (SELECT visitor_id, min(user_id) AS u FROM identities GROUP BY visitor_id), \
         ev AS (SELECT coalesce(idm.u, e.user_id, e.visitor_id::VARCHAR) AS person, e.* \
           FROM events e LEFT JOIN idm USING (visitor_id) WHERE coalesce(e.is_bot, false) = false), \
         a AS (SELECT person, ts AS t1, session_id FROM ev WHERE name = 'page_view' \
           AND path LIKE '/product/%' AND {range} AND person IS NOT NULL), \
         b AS (SELECT person, ts FROM ev WHERE name = 'registered'), \
         c AS (SELECT person, ts FROM ev WHERE name = 'purchased' AND props->>'category' = 'cameras'), \
         lv AS (SELECT a.*, CASE \
           WHEN EXISTS (SELECT 1 FROM b JOIN c ON c.person = b.person AND c.ts >= b.ts \
             WHERE b.person = a.person AND b.ts >= a.t1 AND c.ts <= a.t1 + INTERVAL 1 DAY) THEN 3 \
           WHEN EXISTS (SELECT 1 FROM b WHERE b.person = a.person AND b.ts >= a.t1 \
             AND b.ts <= a.t1 + INTERVAL 1 DAY) THEN 2 ELSE 1 END AS lvl FROM a), \
         best AS (SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY person ORDER BY lvl DESC, t1) AS rn \
           FROM lv) WHERE rn = 1), \
         src AS (SELECT session_id, utm_source FROM ({firsts}))",
        range = f.range(),
        firsts = starts_where("true")
    );
    let want = &f
        .sql(&format!(
            "{truth} SELECT count(*), count(*) FILTER (WHERE lvl >= 2), count(*) FILTER (WHERE lvl >= 3), \
               median(date_diff('microsecond', best.t1, (SELECT min(b.ts) FROM b \
                 WHERE b.person = best.person AND b.ts >= best.t1)) / 1e6) FILTER (WHERE lvl >= 2) \
             FROM best"
        ))
        .await[0];
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps[0]["people"], want[0]);
    assert_eq!(steps[1]["people"], want[1]);
    assert_eq!(steps[2]["people"], want[2]);
    assert!(
        want[2].as_i64().unwrap() > 10,
        "too few conversions to test: {want:?}"
    );
    close("median step 2", &steps[1]["median_seconds"], &want[3]);
    close(
        "conversion",
        &steps[2]["conversion"],
        &json!(want[2].as_f64().unwrap() / want[0].as_f64().unwrap()),
    );
    let want = f
        .sql(&format!(
            "{truth} SELECT src.utm_source, count(*) AS n1, count(*) FILTER (WHERE lvl >= 2), \
               count(*) FILTER (WHERE lvl >= 3), \
               round(count(*) FILTER (WHERE lvl >= 3) / count(*), 4) \
             FROM best LEFT JOIN src USING (session_id) \
             GROUP BY src.utm_source ORDER BY n1 DESC, src.utm_source NULLS LAST"
        ))
        .await;
    same_rows("funnel.breakdown", &rows_of(&r["breakdown"]), &want);
    assert!(
        want.iter()
            .any(|w| w[0] == "facebook" && w[3].as_i64().unwrap() > 0),
        "{want:?}"
    );

    // A 1-minute window converts fewer people than a day.
    let short = f
        .report("funnel", &[("steps", &spec), ("window", "1m")])
        .await;
    assert!(short["steps"][1]["people"].as_i64() < steps[1]["people"].as_i64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_and_last_touch_attribution_match_plain_sql() {
    let f = Fixture::start(60_000, 21, 14, "").await;
    let r = f
        .report(
            "attribution",
            &[
                ("event", "registered"),
                ("by", "utm_source"),
                ("lookback", "7d"),
            ],
        )
        .await;
    let lo = f.from - Duration::days(7);
    let truth = format!(
        "WITH idm AS (SELECT visitor_id, min(user_id) AS u FROM identities GROUP BY visitor_id), \
         conv AS (SELECT coalesce(idm.u, e.user_id, e.visitor_id::VARCHAR) AS person, min(e.ts) AS tc \
           FROM events e LEFT JOIN idm USING (visitor_id) WHERE e.name = 'registered' AND {range} \
           AND coalesce(e.is_bot, false) = false GROUP BY 1 HAVING person IS NOT NULL), \
         firsts AS (SELECT * FROM (SELECT p.*, row_number() OVER (PARTITION BY session_id ORDER BY ts) AS rn \
           FROM events p WHERE name = 'page_view' AND session_id IS NOT NULL \
           AND ts >= TIMESTAMP '{lo} 00:00:00' AND ts < TIMESTAMP '{end} 00:00:00' \
           AND coalesce(is_bot, false) = false) WHERE rn = 1 AND channel IS NOT NULL), \
         touches AS (SELECT coalesce(idm.u, s.visitor_id::VARCHAR) AS person, s.ts, s.channel, \
           s.utm_source FROM firsts s LEFT JOIN idm USING (visitor_id)), \
         touch AS (SELECT c.person, t.ts, t.channel, t.utm_source FROM conv c JOIN touches t \
           ON t.person = c.person AND t.ts <= c.tc AND t.ts >= c.tc - INTERVAL 7 DAY), \
         ft AS (SELECT person, utm_source FROM (SELECT *, row_number() OVER (PARTITION BY person ORDER BY ts) AS rn \
           FROM touch) WHERE rn = 1), \
         lt AS (SELECT person, utm_source FROM (SELECT *, row_number() OVER \
           (PARTITION BY person ORDER BY channel = 'Direct', ts DESC) AS rn FROM touch) WHERE rn = 1), \
         credit AS (SELECT ft.utm_source AS v, 1 AS f, 0 AS l FROM conv LEFT JOIN ft USING (person) \
           UNION ALL SELECT lt.utm_source, 0, 1 FROM conv LEFT JOIN lt USING (person))",
        range = f.range(),
        end = f.to + Duration::days(1)
    );
    let want = f
        .sql(&format!(
            "{truth} SELECT v, sum(f) AS first_touch, sum(l) AS last_touch FROM credit \
             GROUP BY v ORDER BY last_touch DESC, first_touch DESC, v NULLS LAST"
        ))
        .await;
    same_rows("attribution", &rows_of(&r["table"]), &want);
    let conversions = f.sql(&format!("{truth} SELECT count(*) FROM conv")).await[0][0].clone();
    assert_eq!(r["conversions"], conversions);
    // First and last touch differ somewhere, or the test would not tell them apart.
    assert!(want.iter().any(|w| w[1] != w[2]), "{want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_buckets_follow_the_site_time_zone() {
    let zone = "America/New_York";
    let f = Fixture::start(30_000, 10, 15, &format!("[site]\ntimezone = \"{zone}\"\n")).await;
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    let from = f.to - Duration::days(6);
    let o = f
        .report(
            "overview",
            &[("from", &from.to_string()), ("interval", "day")],
        )
        .await;
    assert_eq!(o["range"]["timezone"], zone);
    let start = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let days: Vec<String> = (0..7)
        .map(|i| {
            let d = from + Duration::days(i);
            format!(
                "('{d}', TIMESTAMP '{}', TIMESTAMP '{}')",
                start(d),
                start(d + Duration::days(1))
            )
        })
        .collect();
    let want = f
        .sql(&series_sql(ALL_PAGE_VIEWS, &starts_where("true"), &days))
        .await;
    same_rows("overview.series in New York", &rows_of(&o["series"]), &want);
}

/// Filter values are data: quotes and SQL in them match nothing (or exactly what they say),
/// and the tables are intact afterwards. Bad parameters are 400s that say what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_values_are_data_and_bad_parameters_are_explained() {
    let f = Fixture::start(5_000, 3, 16, "").await;
    let before = f.tg.count("SELECT count(*) FROM events").await;
    let nasty = "it's \"quoted\"; DROP TABLE events; --";
    let resp = reqwest::Client::new()
        .post(f.tg.admin_url("/api/events"))
        .json(&json!({
            "name": "note_taken",
            "visitor_id": "0190b6a2-7f00-7000-8000-000000000001",
            "props": {"note": nasty},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let ev = f.report("events", &[("prop.note", nasty)]).await;
    assert_eq!(
        rows_of(&ev["events"]),
        vec![vec![json!("note_taken"), json!(1), json!(1)]]
    );
    for (k, v) in [
        ("path", "/' OR '1'='1"),
        ("utm_source", "facebook' --"),
        ("browser", "Chrome\"); DROP TABLE events; --"),
        ("prop.plan", "x' OR 1=1 --"),
    ] {
        let o = f.report("overview", &[(k, v)]).await;
        assert_eq!(o["totals"]["pageviews"], 0, "{k}={v}");
        assert_eq!(o["filters"][k], json!([v]));
    }
    let steps = json!([{"type": "path", "pattern": "/product/' OR 1=1 --"}, {"type": "event", "name": "x'; DROP TABLE events"}]).to_string();
    let fu = f.report("funnel", &[("steps", &steps)]).await;
    assert_eq!(fu["steps"][0]["people"], 0);
    let at = f
        .report("attribution", &[("event", "registered' OR '1'='1")])
        .await;
    assert_eq!(at["conversions"], 0);
    assert_eq!(f.tg.count("SELECT count(*) FROM events").await, before + 1);

    // `(none)` is the empty value: sessions without a campaign.
    let none = f.report("overview", &[("utm_source", "(none)")]).await;
    let all = f.report("overview", &[]).await;
    let some = none["totals"]["sessions"].as_i64().unwrap();
    assert!(some > 0 && some < all["totals"]["sessions"].as_i64().unwrap());

    for (name, params, status, says) in [
        ("overview", vec![("utm_src", "x")], 400, "utm_source"),
        ("overview", vec![("from", "last week")], 400, "YYYY-MM-DD"),
        ("overview", vec![("interval", "minute")], 400, "hour or day"),
        ("overview", vec![("prop.a'b", "x")], 400, "property key"),
        ("funnel", vec![("steps", "[1]")], 400, "steps"),
        (
            "funnel",
            vec![("steps", r#"[{"type":"path","pattern":"/"}]"#)],
            400,
            "2 to 8",
        ),
        (
            "funnel",
            vec![("steps", &steps), ("window", "1w")],
            400,
            "30m",
        ),
        ("attribution", vec![], 400, "event"),
        (
            "attribution",
            vec![("event", "x"), ("by", "path")],
            400,
            "utm_source",
        ),
        ("nope", vec![], 404, "overview"),
    ] {
        let (s, body) = f.report_status(name, &params).await;
        assert_eq!(s, status, "{name} {params:?}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(says), "{name} {params:?}: {msg}");
    }
}

/// `GET /api/reports` is the catalog every report runs from: each one it lists answers, and
/// its own parameters are taken (not refused as unknown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_every_report_with_its_parameters() {
    let f = Fixture::start(2_000, 2, 17, "").await;
    let catalog: Value = reqwest::get(f.tg.admin_url("/api/reports"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reports = catalog["reports"].as_array().unwrap();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "overview",
            "pages",
            "acquisition",
            "audience",
            "api",
            "events",
            "funnel",
            "attribution",
            "retention",
            "realtime"
        ]
    );
    for r in reports {
        let name = r["name"].as_str().unwrap();
        // The dashboard's tab for it.
        assert!(!r["title"].as_str().unwrap().is_empty(), "{r}");
        let (status, body) = f.report_status(name, &[]).await;
        // Funnel and attribution need a parameter of theirs, and say which.
        let wants = match name {
            "funnel" => Some("steps"),
            "attribution" => Some("event"),
            _ => None,
        };
        match wants {
            None => assert_eq!(body["report"], name, "{status}: {body}"),
            Some(p) => {
                assert_eq!(status, 400, "{name}: {body}");
                assert!(body["error"].as_str().unwrap().contains(p), "{body}");
            }
        }
        for p in r["params"].as_array().unwrap() {
            let p = p["name"].as_str().unwrap();
            let (_, body) = f.report_status(name, &[(p, "x")]).await;
            let msg = body["error"].as_str().unwrap_or("");
            assert!(!msg.contains("unknown parameter"), "{name} {p}: {msg}");
        }
    }
    let dims = catalog["dimensions"].as_array().unwrap();
    assert!(dims
        .iter()
        .any(|d| d["name"] == "utm_source" && d["scope"] == "session"));
    assert!(dims
        .iter()
        .any(|d| d["name"] == "path" && d["scope"] == "event"));
    assert_eq!(catalog["none"], "(none)");
    // The audience tab draws one table per dimension the catalog names: exactly the report's.
    let (_, audience) = f.report_status("audience", &[]).await;
    let tables: Vec<&String> = audience["tables"].as_object().unwrap().keys().collect();
    let mut listed: Vec<&str> = catalog["audience"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(tables, listed, "{audience}");
}

/// Realtime counts the last five minutes, through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_counts_visitors_of_the_last_five_minutes() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "");
    for i in 0..3 {
        let c = common::jar_client();
        for p in ["/page/1", "/page/2"] {
            c.get(tg.url(p))
                .header("accept", "text/html")
                .header("accept-language", "en-US,en;q=0.9")
                .header(
                    "user-agent",
                    format!("Mozilla/5.0 (X11; Linux x86_64; rv:13{i}.0) Gecko/20100101 Firefox/13{i}.0"),
                )
                .send()
                .await
                .unwrap();
        }
    }
    tg.wait_count("SELECT count(*) FROM events WHERE name = 'page_view'", 6)
        .await;
    let r: Value = reqwest::get(tg.admin_url("/api/reports/realtime"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = tg
        .query(
            "SELECT count(DISTINCT visitor_id), count(*) FROM events \
             WHERE name = 'page_view' AND NOT is_bot",
        )
        .await;
    assert_eq!(r["visitors"], want[0][0]);
    assert_eq!(r["pageviews"], want[0][1]);
    assert_eq!(r["visitors"], 3);
    assert_eq!(
        rows_of(&r["pages"]),
        vec![
            vec![json!("/page/1"), json!(3)],
            vec![json!("/page/2"), json!(3)]
        ]
    );
}
