//! Reports: what marketing and product ask, as SQL over the store, answered as JSON.
//!
//! Every report takes the same filters (`filter.rs`): a date range in the site's time zone,
//! dimension and property filters, and a switch to include bots (excluded by default).
//! `docs/api.md` documents each report's parameters, answer and definitions.
//!
//! # Layout
//! - `defs`: every report, defined once (name, docs, own parameters, typed answer): the list
//!   the API, the dashboard and the docs read.
//! - `filter`: parameters, the dimension list, and the SQL they become (values always bound).
//! - `query`: a query string as serde reads it into a params struct (repeated keys, last
//!   value wins).
//! - `tz`: the site time zone.
//! - `traffic`: overview, pages, acquisition, audience, realtime.
//! - `usage`: API health and custom events.
//! - `funnel`, `attribution`, `retention`: the people-based reports.

mod attribution;
pub mod defs;
pub mod filter;
mod funnel;
pub mod query;
mod retention;
mod sketched;
mod traffic;
pub mod tz;
mod usage;

pub use defs::{catalog, find, Def, REPORTS};
pub use tz::SiteTz;

use duckdb::types::FromSql;
use duckdb::Connection;
use filter::Sql;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A parameter is wrong; the message names it.
    #[error("{0}")]
    Invalid(String),
    #[error("unknown report {0:?} (expected one of {list})", list = names().join(", "))]
    Unknown(String),
    #[error("store: {0}")]
    Store(#[from] duckdb::Error),
    /// An answer that could not be put as JSON.
    #[error("{0}")]
    Internal(String),
}

/// The reports' URL names, in [`REPORTS`]' order.
pub fn names() -> Vec<&'static str> {
    REPORTS.iter().map(|d| d.name).collect()
}

/// A table of a report: the dimension its first column holds (so that a row can become a
/// filter), the column names, and its rows. A row is a typed struct written as a JSON array in
/// the columns' order: a tuple struct, or for tables whose width depends on the request (a
/// funnel's steps, the weeks of retention) a struct with its own `Serialize`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table<R> {
    pub dimension: Option<String>,
    pub columns: Vec<String>,
    pub rows: Vec<R>,
    /// The columns whose values are estimates (visitors merged from HyperLogLog sketches);
    /// left out when every value is exact.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub estimated: Vec<String>,
}

/// A dimension's value and one count (`path, sessions`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CountRow(pub Option<String>, pub i64);

/// A dimension's value and two counts (`path, visitors, pageviews`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CountsRow(pub Option<String>, pub i64, pub i64);

/// A typed table row, read from a query's row by position.
pub(crate) trait Row: Sized {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self>;
}

impl<A: FromSql> Row for (A,) {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok((r.get(0)?,))
    }
}

impl<A: FromSql, B: FromSql> Row for (A, B) {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok((r.get(0)?, r.get(1)?))
    }
}

impl<A: FromSql, B: FromSql, C: FromSql> Row for (A, B, C) {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    }
}

impl<A: FromSql, B: FromSql, C: FromSql, D: FromSql> Row for (A, B, C, D) {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    }
}

impl Row for CountRow {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok(CountRow(r.get(0)?, r.get(1)?))
    }
}

impl Row for CountsRow {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok(CountsRow(r.get(0)?, r.get(1)?, r.get(2)?))
    }
}

/// Run report `name` with the request's query pairs. A bad parameter is
/// [`ReportError::Invalid`], whose message names it.
pub fn run(
    conn: &Connection,
    name: &str,
    pairs: &[(String, String)],
    tz: SiteTz,
) -> Result<Value, ReportError> {
    let def = find(name).ok_or_else(|| ReportError::Unknown(name.into()))?;
    let (f, own) = filter::parse(pairs, tz, &def.param_names())?;
    let mut out = def.run(conn, &f, &own)?.with(&f);
    if let Value::Object(m) = &mut out {
        m.insert("report".into(), name.into());
    }
    Ok(out)
}

/// Merge the filter echo (`range`, `bots`, `filters`) into a report's object.
trait WithFilters {
    fn with(self, f: &filter::Filters) -> Value;
}

impl WithFilters for Value {
    fn with(mut self, f: &filter::Filters) -> Value {
        if let (Value::Object(m), Value::Object(echo)) = (&mut self, f.echo()) {
            for (k, v) in echo {
                m.entry(k).or_insert(v);
            }
        }
        self
    }
}

/// How [`batches`] fetches a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// Whole, before the first batch is handed on: the quicker way, for results of up to a
    /// few million rows.
    Whole,
    /// A batch at a time, as they are taken: the result is never held whole in memory. About
    /// 10 % slower (the 10M-event funnel), but a 100M-event funnel's result held whole took
    /// peak RSS from 0.7 to 1.0 GiB (`BENCHMARKS.md`).
    Streamed,
}

/// Run `sql` and hand each of its Arrow record batches to `each`: for results of many rows,
/// read column by column instead of value by value. The first error `each` returns ends the
/// query with it.
pub(crate) fn batches(
    conn: &Connection,
    sql: &Sql,
    fetch: Fetch,
    mut each: impl FnMut(&duckdb::arrow::record_batch::RecordBatch) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let started = std::time::Instant::now();
    let mut stmt = conn.prepare(&sql.text)?;
    let params = duckdb::params_from_iter(sql.params.iter());
    let mut rows = 0;
    let mut take = |batch: duckdb::arrow::record_batch::RecordBatch| {
        rows += batch.num_rows();
        each(&batch)
    };
    match fetch {
        Fetch::Whole => {
            for batch in stmt.query_arrow(params)? {
                take(batch)?;
            }
        }
        Fetch::Streamed => {
            for batch in stmt.stream_arrow(params)? {
                take(batch?)?;
            }
        }
    }
    tracing::debug!(
        sql = %sql.text,
        params = ?sql.params,
        rows,
        ms = started.elapsed().as_millis() as u64,
        "Report query."
    );
    Ok(())
}

/// Run `sql` and return its rows as JSON values.
pub(crate) fn rows(conn: &Connection, sql: &Sql) -> Result<Vec<Vec<Value>>, ReportError> {
    query(conn, sql, |row| {
        let n = row.as_ref().column_count();
        (0..n)
            .map(|i| Ok(crate::store::value_json(row.get_ref(i)?)))
            .collect()
    })
}

/// Run `sql` and read each row as `R`.
pub(crate) fn typed_rows<R: Row>(conn: &Connection, sql: &Sql) -> Result<Vec<R>, ReportError> {
    query(conn, sql, R::read)
}

fn query<T>(
    conn: &Connection,
    sql: &Sql,
    read: impl FnMut(&duckdb::Row<'_>) -> duckdb::Result<T>,
) -> Result<Vec<T>, ReportError> {
    let started = std::time::Instant::now();
    let mut stmt = conn.prepare(&sql.text)?;
    let out = stmt
        .query_map(duckdb::params_from_iter(sql.params.iter()), read)?
        .collect::<Result<Vec<T>, _>>()?;
    // `TOLLGATE_LOG=tollgate::reports=debug` shows each report query, its values and its time.
    tracing::debug!(
        sql = %sql.text,
        params = ?sql.params,
        ms = started.elapsed().as_millis() as u64,
        "Report query."
    );
    Ok(out)
}

/// Run `sql` for a table whose columns are `columns`.
pub(crate) fn table<R: Row>(
    conn: &Connection,
    sql: &Sql,
    dimension: Option<&str>,
    columns: &[&str],
) -> Result<Table<R>, ReportError> {
    Ok(Table {
        dimension: dimension.map(Into::into),
        columns: columns.iter().map(|c| (*c).to_string()).collect(),
        rows: typed_rows(conn, sql)?,
        estimated: Vec::new(),
    })
}

/// The `q` quantile of `n` sorted values, `at(k)` the `k`-th (0-based), interpolated between
/// the two nearest as DuckDB's `quantile_cont` (and `median`, its `q` = 0.5) does: position
/// `(n - 1) q`. `None` without values.
pub(crate) fn quantile_cont(n: i64, q: f64, at: impl Fn(i64) -> Option<f64>) -> Option<f64> {
    if n <= 0 {
        return None;
    }
    let rn = (n - 1) as f64 * q;
    let (lo, hi) = (at(rn.floor() as i64)?, at(rn.ceil() as i64)?);
    Some(lo + (hi - lo) * (rn - rn.floor()))
}

/// `a / b`, or 0 when `b` is 0, rounded to 4 decimals.
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        round4(a / b)
    }
}

pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A JSON number as f64 (0 for null).
pub(crate) fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_have_unique_names_and_documented_parameters() {
        let mut seen = std::collections::HashSet::new();
        for d in REPORTS {
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(!d.doc.is_empty(), "{}", d.name);
            for p in d.params {
                assert!(!p.doc.is_empty(), "{}.{}", d.name, p.name);
            }
            // The keys a report takes are its params struct's fields: each is documented.
            let documented: Vec<&str> = d.params.iter().map(|p| p.name).collect();
            assert_eq!(d.param_names(), documented, "{}", d.name);
        }
        assert!(find("funnel").is_some() && find("nope").is_none());
    }

    /// An empty store in a temporary directory.
    fn store() -> (tempfile::TempDir, crate::store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// `YYYY-MM-DD HH:MM`, UTC, in microseconds: an event's `ts_us`.
    pub(super) fn utc_us(s: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    /// Report `name` with the query string `q`.
    fn report(conn: &Connection, name: &str, q: &str) -> Result<Value, ReportError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
        run(conn, name, &pairs, SiteTz::default())
    }

    /// Every refusal of a parameter, word for word: the API answers these as 400s.
    /// Long because it is a table: one line a refusal, every one in one place.
    #[test]
    fn bad_parameters_are_worded_as_before() {
        let (_dir, store) = store();
        let conn = store.reader().unwrap();
        let dims = "path, route, host, name, method, status, source, channel, referrer_host, \
                    utm_source, utm_medium, utm_campaign, utm_term, utm_content, click_id_type, \
                    browser, os, device_type, country, region, city";
        let session = "channel, referrer_host, utm_source, utm_medium, utm_campaign, utm_term, \
                       utm_content, click_id_type";
        let steps = r#"[{"type":"path","pattern":"/"},{"type":"event","name":"x"}]"#;
        let with_steps = |q: &str| format!("steps={}&{q}", urlencode(steps));
        for (name, q, want) in [
            (
                "overview",
                "utm_src=x".to_string(),
                format!(
                    "unknown parameter \"utm_src\": filters are from, to, bots, limit, prop.<key> \
                     and the dimensions {dims}; this report also takes interval"
                ),
            ),
            (
                "pages",
                "zzz=1".into(),
                format!(
                    "unknown parameter \"zzz\": filters are from, to, bots, limit, prop.<key> \
                     and the dimensions {dims}"
                ),
            ),
            (
                "pages",
                "from=yesterday".into(),
                "from=\"yesterday\": expected a date as YYYY-MM-DD".into(),
            ),
            (
                "pages",
                "to=%2B99999-01-01".into(),
                "to=\"+99999-01-01\": expected a date as YYYY-MM-DD (a year from 0000 to 9999)"
                    .into(),
            ),
            (
                "pages",
                "from=2026-02-30".into(),
                "from=\"2026-02-30\": there is no such date".into(),
            ),
            (
                "pages",
                "from=2026-02-02&to=2026-02-01".into(),
                "from=2026-02-02 is after to=2026-02-01".into(),
            ),
            (
                "pages",
                "from=2000-01-01&to=2026-01-01".into(),
                "from=2000-01-01, to=2026-01-01: the range is longer than 10 years".into(),
            ),
            (
                "pages",
                "bots=maybe".into(),
                "bots=\"maybe\": expected include or exclude".into(),
            ),
            (
                "pages",
                "limit=0".into(),
                "limit=\"0\": expected 1 to 1000".into(),
            ),
            (
                "pages",
                "prop.a'b=x".into(),
                "property key \"a'b\" is not allowed (letters, digits, space and _ - . $ : only)"
                    .into(),
            ),
            (
                "overview",
                "interval=minute".into(),
                "interval=\"minute\": expected hour or day".into(),
            ),
            (
                "overview",
                "interval=hour&from=2026-01-01&to=2026-06-01".into(),
                "interval=hour covers at most 93 days; use interval=day".into(),
            ),
            (
                "acquisition",
                "dimension=channel,nope".into(),
                format!("dimension=\"nope\": expected all or one of {session}"),
            ),
            (
                "events",
                "event=x".into(),
                "give both event and property for a breakdown".into(),
            ),
            (
                "events",
                "event=x&property=a'b".into(),
                "property key \"a'b\" is not allowed (letters, digits, space and _ - . $ : only)"
                    .into(),
            ),
            ("funnel", "".into(), "steps is required".into()),
            (
                "funnel",
                format!("steps={}", urlencode(r#"[{"type":"path","pattern":"/"}]"#)),
                "steps: a funnel has 2 to 8 steps (got 1)".into(),
            ),
            (
                "funnel",
                format!(
                    "steps={}",
                    urlencode(r#"[{"type":"path","pattern":""},{"type":"path","pattern":"/"}]"#)
                ),
                "steps: a step needs a non-empty pattern or name".into(),
            ),
            (
                "funnel",
                with_steps("window=1w"),
                "window=\"1w\": expected minutes, hours or days such as 30m, 12h or 7d (1m to 365d)"
                    .into(),
            ),
            (
                "funnel",
                with_steps("breakdown=nope"),
                "breakdown=\"nope\": expected a dimension (see filters) or prop.<key>".into(),
            ),
            (
                "attribution",
                "".into(),
                "event (the conversion event's name) is required".into(),
            ),
            (
                "attribution",
                "event=".into(),
                "event (the conversion event's name) is required".into(),
            ),
            (
                "attribution",
                "event=x&lookback=0m".into(),
                "lookback=\"0m\": expected minutes, hours or days such as 30m, 12h or 7d (1m to \
                 365d)"
                    .into(),
            ),
            (
                "attribution",
                "event=x&by=path".into(),
                format!("by=\"path\": expected one of {session}"),
            ),
        ] {
            match report(&conn, name, &q) {
                Err(ReportError::Invalid(m)) => assert_eq!(m, want, "{name}?{q}"),
                other => panic!("{name}?{q}: {other:?}"),
            }
        }
        let e = report(&conn, "funnel", "steps=%5B1%5D")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("steps: invalid type: integer `1`, expected internally tagged enum")
                && e.ends_with("(expected a JSON array such as [{\"type\":\"path\",\"pattern\":\"/product/*\"},{\"type\":\"event\",\"name\":\"registered\"}])"),
            "{e}"
        );
    }

    /// Repeated keys: a filter's values are ORed, `dimension` adds up, and a single-valued
    /// parameter takes its last value.
    #[test]
    fn repeated_parameters_are_read_as_before() {
        let (_dir, store) = store();
        let conn = store.reader().unwrap();
        let o = report(
            &conn,
            "overview",
            "from=2026-01-01&from=2026-01-05&to=2026-01-09&utm_source=a&browser=b&utm_source=(none)\
             &bots=include&bots=exclude&interval=hour&interval=day&limit=7&prop.k=1&prop.k=2",
        )
        .unwrap();
        assert_eq!(o["range"]["from"], "2026-01-05");
        assert_eq!(o["interval"], "day");
        assert_eq!(o["bots"], false);
        assert_eq!(
            o["filters"],
            serde_json::json!({"utm_source": ["a", "(none)"], "browser": ["b"], "prop.k": ["1", "2"]})
        );
        let a = report(
            &conn,
            "acquisition",
            "dimension=utm_medium&dimension=+utm_source+,channel&dimension=channel",
        )
        .unwrap();
        let tables: Vec<&String> = a["tables"].as_object().unwrap().keys().collect();
        assert_eq!(tables, ["channel", "utm_medium", "utm_source"]);
        let at = report(
            &conn,
            "attribution",
            "event=a&event=b&by=utm_source&by=channel",
        )
        .unwrap();
        assert_eq!((&at["event"], &at["by"]), (&"b".into(), &"channel".into()));
        let (f, _) = filter::parse(
            &[("limit".into(), "5".into()), ("limit".into(), "9".into())],
            SiteTz::default(),
            &[],
        )
        .unwrap();
        assert_eq!(f.limit, 9);
    }

    /// Sessions that cross either end of the range: the audience counts the page views and
    /// visitors inside the range, as the overview does, whether it reads the `sessions` table
    /// (no filters) or the events (a property filter that every page view matches).
    #[test]
    fn audience_counts_the_page_views_in_the_range_of_sessions_crossing_its_ends() {
        use crate::event::{Event, Source};
        let (_dir, mut store) = store();
        let mut events = Vec::new();
        let mut add = |session: Option<u128>, visitor: u128, device: &str, times: &[&str]| {
            for t in times {
                let mut e = Event::now("page_view", "shop", Source::Proxy);
                e.ts_us = utc_us(t);
                e.visitor_id = Some(uuid::Uuid::from_u128(visitor));
                e.session_id = session.map(uuid::Uuid::from_u128);
                e.device_type = Some(device.into());
                e.props = Some(r#"{"k":"v"}"#.into());
                e.path = Some("/".into());
                events.push(e);
            }
        };
        // Into the range across its start: 2 of 3 page views inside.
        add(
            Some(1),
            10,
            "desktop",
            &["2026-01-04 23:50", "2026-01-05 00:10", "2026-01-05 00:20"],
        );
        // Out across its end: 1 of 2 inside.
        add(
            Some(2),
            20,
            "mobile",
            &["2026-01-06 23:55", "2026-01-07 00:05"],
        );
        // Wholly inside, wholly before, and a page view without a session.
        add(
            Some(3),
            30,
            "mobile",
            &["2026-01-05 12:00", "2026-01-05 12:05"],
        );
        add(Some(4), 40, "desktop", &["2026-01-04 10:00"]);
        add(None, 50, "tablet", &["2026-01-06 08:00"]);
        store.append(1, &events).unwrap();
        let conn = store.reader().unwrap();
        let want = serde_json::json!([["mobile", 2, 3], ["desktop", 1, 2], ["tablet", 1, 1]]);
        for q in ["", "&prop.k=v"] {
            let range = format!("from=2026-01-05&to=2026-01-06{q}");
            let a = report(&conn, "audience", &range).unwrap();
            assert_eq!(a["tables"]["device_type"]["rows"], want, "audience?{range}");
            let o = report(&conn, "overview", &range).unwrap();
            assert_eq!(o["totals"]["pageviews"], 6, "overview?{range}");
        }
    }

    /// The overview's page views per bucket, counted from `pageview_hours` without filters,
    /// equal those counted from the events (a property filter every page view matches): with
    /// page views past the watermark (committed, not folded yet) and after they are folded; by
    /// hour and by day; with and without bots; in UTC, Berlin, and Kolkata (+5:30, where the
    /// hours do not line up and the events are counted instead).
    #[test]
    fn overview_page_views_from_hourly_counts_equal_the_events() {
        use crate::event::{Event, Source};
        let (_dir, mut store) = store();
        let base = utc_us("2026-01-05 00:00");
        let events: Vec<Event> = (0..400i64)
            .map(|i| {
                let mut e = Event::now("page_view", "shop", Source::Proxy);
                // Every 7 minutes and 13 seconds over two days, from 22:00 the day before.
                e.ts_us = base - 2 * 3_600_000_000 + i * 433_000_000;
                e.visitor_id = Some(uuid::Uuid::from_u128(1 + (i % 37) as u128));
                e.session_id = (i % 9 != 0).then(|| uuid::Uuid::from_u128(100 + (i / 5) as u128));
                e.is_bot = (i % 11 == 0).then_some(true);
                e.props = Some(r#"{"k":"v"}"#.into());
                e.path = Some("/".into());
                e
            })
            .collect();
        store.stage(1, &events).unwrap();
        store.commit_staged().unwrap();
        assert!(store.has_unfolded());
        let conn = store.reader().unwrap();
        let pageviews = |tz: &str, q: &str| {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
            let o = run(&conn, "overview", &pairs, SiteTz::parse(tz).unwrap()).unwrap();
            let series: Vec<Value> = o["series"]["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[3].clone())
                .collect();
            (o["totals"]["pageviews"].clone(), series)
        };
        let mut answers = Vec::new();
        for _folded in [false, true] {
            for tz in ["UTC", "Europe/Berlin", "Asia/Kolkata"] {
                for q in [
                    "from=2026-01-05&to=2026-01-06&interval=hour",
                    "from=2026-01-04&to=2026-01-06&interval=day&bots=include",
                ] {
                    let got = pageviews(tz, q);
                    assert_eq!(got, pageviews(tz, &format!("{q}&prop.k=v")), "{tz} {q}");
                    assert!(got.0.as_i64().unwrap() > 100, "{tz} {q}: {got:?}");
                    answers.push(got);
                }
            }
            store.fold_pending().unwrap();
            assert!(!store.has_unfolded());
        }
        let (before, after) = answers.split_at(answers.len() / 2);
        assert_eq!(before, after);
    }

    /// `s` as a query string value.
    fn urlencode(s: &str) -> String {
        serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_string()
    }

    /// docs/api.md names every report, has a section for each, and mentions each one's own
    /// parameters in it.
    #[test]
    fn the_api_doc_has_every_report_and_parameter() {
        let doc = include_str!("../../docs/api.md");
        let names: Vec<String> = REPORTS.iter().map(|d| format!("`{}`", d.name)).collect();
        let intro = doc
            .split("Report names:")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .expect("docs/api.md lists the report names");
        let listed: Vec<&str> = intro
            .split(|c: char| c == ',' || c.is_whitespace() || c == '.')
            .filter(|w| w.starts_with('`'))
            .collect();
        assert_eq!(
            listed, names,
            "the names after \"Report names:\" in docs/api.md"
        );
        for d in REPORTS {
            let head = format!("### `{}`\n", d.name);
            let section = doc
                .split(&head)
                .nth(1)
                .unwrap_or_else(|| panic!("docs/api.md has no section {head:?}"));
            let section = section.split("\n#").next().unwrap_or(section);
            for p in d.params {
                assert!(
                    section.contains(&format!("`{}", p.name))
                        || section.contains(&format!("&{}=", p.name)),
                    "docs/api.md's {} section does not mention `{}`",
                    d.name,
                    p.name
                );
            }
        }
    }

    /// The `api` report's percentiles, read off counts per distinct duration, equal DuckDB's
    /// `quantile_cont` over the same calls: a route with one call, with two (interpolated),
    /// with repeated durations, with calls that have no duration (the client left), one with
    /// none at all; and in total. A range without calls has no routes and zero totals.
    #[test]
    fn api_percentiles_equal_quantile_cont() {
        use crate::event::{Event, Source};
        let (_dir, mut store) = store();
        let mut events = Vec::new();
        let mut add = |route: &str, status: u16, durations: &[Option<f64>]| {
            for d in durations {
                let mut e = Event::now("api_call", "shop", Source::Proxy);
                e.ts_us = utc_us("2026-01-05 12:00");
                e.route = Some(route.into());
                e.method = Some("GET".into());
                e.status = Some(status);
                e.duration_ms = *d;
                events.push(e);
            }
        };
        add("/one", 200, &[Some(7.5)]);
        add("/two", 200, &[Some(1.25), Some(10.0)]);
        add("/two", 503, &[Some(4.0)]);
        let repeated: Vec<_> = (0..97)
            .map(|i| Some(f64::from(i % 5) * 1.5 + 0.001))
            .collect();
        add("/repeated", 200, &repeated);
        add("/repeated", 500, &[None, Some(300.0), Some(0.5)]);
        add("/left", 200, &[None, None]);
        store.append(1, &events).unwrap();
        let conn = store.reader().unwrap();
        let want = |by: &str| {
            let sql = format!(
                "SELECT {by} count(*), count(*) FILTER (status >= 500), \
                   round(quantile_cont(duration_ms, 0.5), 3), \
                   round(quantile_cont(duration_ms, 0.95), 3), \
                   round(quantile_cont(duration_ms, 0.99), 3) \
                 FROM events WHERE name = 'api_call' {} ORDER BY 1",
                if by.is_empty() { "" } else { "GROUP BY route" }
            );
            let mut stmt = conn.prepare(&sql).unwrap();
            stmt.query_map([], |r| {
                let n = r.as_ref().column_count();
                (0..n)
                    .map(|i| Ok(crate::store::value_json(r.get_ref(i)?)))
                    .collect::<duckdb::Result<Vec<Value>>>()
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
        };
        let a = report(&conn, "api", "from=2026-01-05&to=2026-01-05").unwrap();
        let mut routes: Vec<Vec<Value>> = a["routes"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let r = r.as_array().unwrap();
                // route, calls, errors, p50, p95, p99 (not method, not the error rate).
                [0, 2, 3, 5, 6, 7].iter().map(|&i| r[i].clone()).collect()
            })
            .collect();
        routes.sort_by(|x, y| x[0].as_str().cmp(&y[0].as_str()));
        assert_eq!(routes, want("route,"));
        let t = &a["totals"];
        let total = [
            &t["calls"],
            &t["errors"],
            &t["p50_ms"],
            &t["p95_ms"],
            &t["p99_ms"],
        ];
        assert_eq!(total.map(Clone::clone).to_vec(), want("")[0]);
        assert_eq!(
            (routes[0][0].as_str(), &routes[0][3]),
            (Some("/left"), &Value::Null)
        );
        let none = report(&conn, "api", "from=2025-01-05&to=2025-01-05").unwrap();
        assert_eq!(none["routes"]["rows"], serde_json::json!([]));
        assert_eq!(none["totals"]["calls"], 0);
        assert_eq!(none["totals"]["p99_ms"], Value::Null);
    }

    /// Retention over a range of more than 64 weeks (two columns of week bits), with two
    /// visitors stitched to one user (one person), from the `sessions` table (no filters) and
    /// from the page views (a property filter every page view matches).
    #[test]
    fn retention_merges_stitched_visitors_and_counts_weeks_past_the_64th() {
        use crate::event::{Event, Source};
        let (_dir, mut store) = store();
        // Noon on Monday 2024-01-01, and a week in microseconds.
        let (monday, week_us) = (utc_us("2024-01-01 12:00"), 7 * 86_400_000_000);
        let mut events = Vec::new();
        let mut session = 0;
        let mut visit = |visitor: u128, user: Option<&str>, week: i64| {
            session += 1;
            let mut e = Event::now("page_view", "shop", Source::Proxy);
            e.ts_us = monday + week * week_us;
            e.visitor_id = Some(uuid::Uuid::from_u128(visitor));
            e.session_id = Some(uuid::Uuid::from_u128(1000 + session));
            e.user_id = user.map(Into::into);
            e.props = Some(r#"{"k":"v"}"#.into());
            e.path = Some("/".into());
            events.push(e);
        };
        // A: weeks 0, 2 and 70 (bit 6 of the second column).
        for w in [0, 2, 70] {
            visit(1, None, w);
        }
        // One person, two visitors stitched to "u1": weeks 1 and 3.
        visit(2, Some("u1"), 1);
        visit(3, Some("u1"), 3);
        // C: week 1 only.
        visit(4, None, 1);
        store.append(1, &events).unwrap();
        let conn = store.reader().unwrap();
        for q in ["", "&prop.k=v"] {
            let range = format!("from=2024-01-01&to=2025-06-30{q}");
            let r = report(&conn, "retention", &range).unwrap();
            let rows = r["cohorts"]["rows"].as_array().unwrap();
            assert_eq!(rows.len(), 2, "retention?{range}: {rows:?}");
            // 79 weeks in the range: the first cohort has 79, the second 78 and then a null.
            let mut first = vec![Value::from(0); 79];
            first[0] = 1.into();
            first[2] = 1.into();
            first[70] = 1.into();
            let mut second = vec![Value::from(0); 78];
            second[0] = 2.into();
            second[2] = 1.into();
            second.push(Value::Null);
            let row = |c: &str, people: i64, weeks: Vec<Value>| {
                let mut v = vec![Value::from(c), Value::from(people)];
                v.extend(weeks);
                Value::Array(v)
            };
            assert_eq!(rows[0], row("2024-01-01", 1, first), "retention?{range}");
            assert_eq!(rows[1], row("2024-01-08", 2, second), "retention?{range}");
        }
    }

    /// Top pages, cut to the limit by page views, then visitors, then path (null last): ties
    /// at the cut and a page view without a path are ordered and kept as that order says;
    /// alike for all page views (two passes) and for filtered ones (one pass), here a
    /// property filter that every page view matches.
    #[test]
    fn top_pages_keep_their_order_across_ties_at_the_limit() {
        use crate::event::{Event, Source};
        let (_dir, mut store) = store();
        let mut events = Vec::new();
        // (path, visitor) per page view.
        let views: &[(Option<&str>, u128)] = &[
            (Some("/a"), 1),
            (Some("/a"), 1),
            (Some("/a"), 1),
            (Some("/a"), 2),
            (Some("/a"), 2),
            (Some("/b"), 1),
            (Some("/b"), 2),
            (Some("/b"), 3),
            (Some("/c"), 4),
            (Some("/c"), 4),
            (Some("/c"), 4),
            (None, 5),
            (None, 5),
            (None, 6),
            (Some("/d"), 7),
        ];
        for (i, (path, visitor)) in views.iter().enumerate() {
            let mut e = Event::now("page_view", "shop", Source::Proxy);
            e.ts_us = utc_us("2026-01-05 12:00") + i as i64 * 60_000_000;
            e.visitor_id = Some(uuid::Uuid::from_u128(*visitor));
            e.path = path.map(Into::into);
            e.props = Some(r#"{"k":"v"}"#.into());
            events.push(e);
        }
        store.append(1, &events).unwrap();
        let conn = store.reader().unwrap();
        let all = serde_json::json!([
            ["/a", 2, 5],
            ["/b", 3, 3],
            [null, 2, 3],
            ["/c", 1, 3],
            ["/d", 1, 1]
        ]);
        // From the events, then (without filters) from the page sketches.
        for sketched in [false, true] {
            if sketched {
                assert_eq!(store.sketch_every_day(chrono_tz::Tz::UTC).unwrap(), 1);
            }
            for (limit, filter) in (1..=6).flat_map(|l| [(l, ""), (l, "&prop.k=v")]) {
                let q = format!("from=2026-01-05&to=2026-01-05&limit={limit}{filter}");
                let p = report(&conn, "pages", &q).unwrap();
                let want: Vec<Value> = all
                    .as_array()
                    .unwrap()
                    .iter()
                    .take(limit)
                    .cloned()
                    .collect();
                assert_eq!(p["top"]["rows"], Value::Array(want), "pages?{q}");
            }
        }
    }

    /// Top pages from the page sketches (`sketched.rs`) equal those from the events: before
    /// the days are sketched, after, with a day whose sketches a late event dropped, with
    /// days not over (counted from the events), after a `forget`, in zones whose days are not
    /// UTC's, and after the zone changed. Where a page's visitors pass `EXACT_MAX`, they are
    /// estimates, labelled so and within 3 %.
    /// The days of `tz` that have sketches.
    fn days(store: &crate::store::Store, tz: &str) -> i64 {
        let conn = store.reader().unwrap();
        conn.query_row(
            "SELECT count(*) FROM page_sketch_days WHERE tz = ?",
            [tz],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// A store of `events` whose days in `zone` are sketched, `check`ed (store, zone, whether
    /// sketched) before and after; with the zone and the number of days built.
    fn sketched_store(
        zone: &str,
        events: &[crate::event::Event],
        check: &dyn Fn(&crate::store::Store, &str, bool),
    ) -> (tempfile::TempDir, crate::store::Store, chrono_tz::Tz, usize) {
        let tz = SiteTz::parse(zone).unwrap().0;
        let (dir, mut store) = store();
        store.append(1, events).unwrap();
        check(&store, zone, false);
        let built = store.sketch_every_day(tz).unwrap();
        assert!((5..=7).contains(&built), "{zone}: {built} days");
        check(&store, zone, true);
        (dir, store, tz, built)
    }

    /// A retention pass that keeps a day before `now_us`, then a forget of the visitor
    /// `visitor`, each `check`ed (store, zone, sketched) before and after the writer builds
    /// the days they dropped again.
    fn prune_and_forget(
        store: &mut crate::store::Store,
        zone: &str,
        now_us: i64,
        visitor: u128,
        check: &dyn Fn(&crate::store::Store, &str, bool),
    ) {
        let tz = SiteTz::parse(zone).unwrap().0;
        let mut conn = store.reader().unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let pruned = crate::sinks::prune(&mut conn, day, &[], now_us).unwrap();
        assert!(pruned.deleted > 0);
        drop(conn);
        check(store, zone, true);
        store.sketch_every_day(tz).unwrap();
        check(store, zone, true);
        let subject = crate::store::Subject::Visitor(uuid::Uuid::from_u128(visitor));
        crate::store::forget(store.connection(), &subject).unwrap();
        check(store, zone, true);
        assert!(store.sketch_every_day(tz).unwrap() > 0);
        check(store, zone, true);
    }

    /// Report `name` with the query string `q` in `tz`; with `exact`, counted from the events
    /// alone (the built days set aside, then put back).
    fn answer_of(store: &crate::store::Store, tz: &str, name: &str, q: &str, exact: bool) -> Value {
        let conn = store.reader().unwrap();
        if exact {
            conn.execute_batch(
                "CREATE TEMP TABLE built AS SELECT * FROM page_sketch_days; \
                 DELETE FROM page_sketch_days",
            )
            .unwrap();
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
        let got = match run(&conn, name, &pairs, SiteTz::parse(tz).unwrap()) {
            Ok(g) => g,
            Err(e) => panic!("{name}?{q} exact={exact}: {e:?}"),
        };
        if exact {
            conn.execute_batch(
                "INSERT INTO page_sketch_days SELECT * FROM built; DROP TABLE built",
            )
            .unwrap();
        }
        got
    }

    #[test]
    fn top_pages_from_sketches_equal_the_events() {
        use crate::event::{Event, Source};
        let view = |ts: i64, path: &str, visitor: u128| {
            let mut e = Event::now("page_view", "shop", Source::Proxy);
            e.ts_us = ts;
            e.path = Some(path.into());
            e.visitor_id = Some(uuid::Uuid::from_u128(visitor));
            e.props = Some(r#"{"k":"v"}"#.into());
            e
        };
        // Five days, a view every 7 minutes: paths of unequal weight, visitors reused.
        let base = utc_us("2026-01-05 00:00");
        let mut events: Vec<Event> = (0..1000i64)
            .map(|i| {
                let path = format!("/p{}", (i * i) % 10);
                view(base + i * 420_000_000, &path, (i % 97) as u128 + 1)
            })
            .collect();
        // A bot's views count nowhere; a view without a visitor counts as a page view only.
        events[3].is_bot = Some(true);
        events[5].visitor_id = None;
        // A visitor of two days three apart, forgotten below: only those days lose their
        // sketches.
        events.push(view(utc_us("2026-01-05 09:00"), "/p2", 9_999));
        events.push(view(utc_us("2026-01-08 09:00"), "/p1", 9_999));
        // Today's views are never sketched: counted from the events.
        let now = crate::event::now_us();
        events.push(view(now - 1_000_000, "/p1", 5_000));
        events.push(view(now - 2_000_000, "/today", 5_001));
        let today = chrono::DateTime::from_timestamp_micros(now)
            .unwrap()
            .date_naive();
        let queries = [
            "from=2026-01-04&to=2026-01-10".to_string(),
            "from=2026-01-06&to=2026-01-07&limit=3".to_string(),
            format!("from=2026-01-04&to={today}&limit=4"),
        ];
        let top = |store: &crate::store::Store, tz: &str, q: &str, filter: &str| {
            let conn = store.reader().unwrap();
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(&format!("{q}{filter}")).unwrap();
            run(&conn, "pages", &pairs, SiteTz::parse(tz).unwrap()).unwrap()["top"].clone()
        };
        // The answer from the events: a property filter that every view passes (`prop.k=v`)
        // takes the path without sketches.
        let check = |store: &crate::store::Store, tz: &str, sketched: bool| {
            assert_eq!(days(store, tz) > 0, sketched, "{tz}");
            for q in &queries {
                let got = top(store, tz, q, "");
                let want = top(store, tz, q, "&prop.k=v");
                assert!(!want["rows"].as_array().unwrap().is_empty(), "{tz} {q}");
                assert_eq!(got, want, "{tz} pages?{q}");
                assert!(got.get("estimated").is_none(), "{tz} {q}");
            }
        };
        for zone in ["UTC", "Asia/Kolkata", "America/New_York"] {
            let (_dir, mut store, tz, built) = sketched_store(zone, &events, &check);
            // A late view: committed and not folded yet, its day is counted from the events;
            // its fold drops the day's sketches. A forget drops those of the forgotten
            // visitor's days. The answers stay those of the events throughout.
            let seq = store.next_seq().unwrap();
            store
                .stage(seq, &[view(utc_us("2026-01-07 12:00"), "/p3", 7_000)])
                .unwrap();
            store.commit_staged().unwrap();
            assert!(store.has_unfolded());
            assert_eq!(days(&store, zone), built as i64, "{zone}");
            check(&store, zone, true);
            store.fold_pending().unwrap();
            assert_eq!(days(&store, zone), built as i64 - 1, "{zone}");
            check(&store, zone, true);
            crate::store::forget(
                store.connection(),
                &crate::store::Subject::Visitor(uuid::Uuid::from_u128(9_999)),
            )
            .unwrap();
            assert_eq!(days(&store, zone), built as i64 - 3, "{zone}");
            check(&store, zone, true);
            assert_eq!(store.sketch_every_day(tz).unwrap(), 3);
            check(&store, zone, true);
        }

        let (_dir, mut store) = store();
        store.append(1, &events).unwrap();
        // A new zone's sketches replace the old zone's, which the reports no longer use.
        store.sketch_every_day(chrono_tz::Tz::UTC).unwrap();
        store.sketch_every_day(chrono_tz::Tz::Asia__Tokyo).unwrap();
        assert_eq!(days(&store, "UTC"), 0);
        check(&store, "UTC", false);
        check(&store, "Asia/Tokyo", true);

        // Past EXACT_MAX visitors a page's count is an estimate: labelled, and close.
        let many: Vec<Event> = (0..9_000i64)
            .map(|i| {
                view(
                    base + 86_400_000_000 * (i % 3) + i,
                    "/big",
                    100_000 + i as u128,
                )
            })
            .collect();
        let seq = store.next_seq().unwrap();
        store.append(seq, &many).unwrap();
        store.sketch_every_day(chrono_tz::Tz::UTC).unwrap();
        let got = top(&store, "UTC", &queries[0], "");
        assert_eq!(got["estimated"], serde_json::json!(["visitors"]));
        let row = &got["rows"][0];
        assert_eq!(row[0], "/big");
        assert_eq!(row[2], 9_000);
        let visitors = row[1].as_f64().unwrap();
        assert!((visitors - 9_000.0).abs() < 270.0, "{visitors}");

        // The sketches are what answers: views deleted behind the store's back still count.
        let conn = store.reader().unwrap();
        let before = top(&store, "UTC", &queries[0], "");
        conn.execute_batch("DELETE FROM events WHERE path = '/p0' AND ts < '2026-01-06'")
            .unwrap();
        assert_eq!(top(&store, "UTC", &queries[0], ""), before);
        assert_ne!(top(&store, "UTC", &queries[0], "&prop.k=v"), before);
    }

    /// Acquisition and audience from breakdown sketches equal the exact answers (the same
    /// report with the built days set aside, then put back): before and after
    /// the days are built, after late page views that move sessions' starts back across
    /// midnight, after a retention pass that cuts a session's first page views, after a
    /// forget, in three zones.
    #[test]
    fn breakdowns_from_sketches_equal_the_events() {
        use crate::event::{Event, Source};
        const MIN: i64 = 60_000_000;
        // A page view of session `sid` by `visitor`, with values picked by `k`.
        let view = |ts: i64, sid: Option<u128>, visitor: u128, k: usize| {
            let mut e = Event::now("page_view", "shop", Source::Proxy);
            e.ts_us = ts;
            e.path = Some(format!("/p{}", k % 3));
            e.visitor_id = Some(uuid::Uuid::from_u128(visitor));
            e.session_id = sid.map(uuid::Uuid::from_u128);
            let pick = |xs: &[&str], j: usize| Some(xs[(k / j) % xs.len()].to_string());
            e.channel = pick(&["direct", "organic", "social", "paid"], 1);
            e.utm_source = pick(&["fb", "google", "news"], 2);
            e.utm_campaign = if k.is_multiple_of(5) {
                None
            } else {
                pick(&["spring", "sale"], 3)
            };
            e.referrer_host = pick(&["a.example", "b.example"], 5);
            e.device_type = pick(&["desktop", "mobile", "tablet"], 1);
            e.browser = pick(&["Chrome", "Firefox"], 2);
            e.os = pick(&["Linux", "Android", "iOS"], 3);
            e.country = if k.is_multiple_of(7) {
                None
            } else {
                pick(&["DE", "FR", "US"], 1)
            };
            e
        };
        // Sessions of one to four page views ten minutes apart over five days, each with its
        // values (as the proxy gives every page view of a session); some cross midnight.
        let base = utc_us("2026-01-05 00:00");
        let mut events = Vec::new();
        for i in 0..400u128 {
            let start = base + (i as i64) * 17 * MIN;
            for j in 0..(1 + i % 4) {
                events.push(view(
                    start + j as i64 * 10 * MIN,
                    Some(i + 1),
                    i % 90 + 1,
                    i as usize,
                ));
            }
        }
        // Sessions that begin five minutes after midnight in each zone (UTC, India, New
        // York): a late page view ten minutes before moves each one's start, and its values,
        // to the day before (for its page views after midnight too); retention then cuts it.
        let midnights = ["2026-01-08 00:00", "2026-01-07 18:30", "2026-01-08 05:00"];
        for (i, m) in midnights.iter().enumerate() {
            for j in 0..3 {
                let ts = utc_us(m) + (5 + j * 10) * MIN;
                events.push(view(ts, Some(5_000 + i as u128), 5_000, 1));
            }
        }
        // A bot session counts nowhere; a page view without a session under its own values.
        let mut bot = view(utc_us("2026-01-06 10:00"), Some(6_000), 6_000, 2);
        bot.is_bot = Some(true);
        events.push(bot);
        events.push(view(utc_us("2026-01-06 11:00"), None, 6_001, 3));
        // A page view flagged as a bot's in a session that is not counts as the session's
        // others do, also in a session that crosses the end of a range (UTC 2026-01-08).
        for (j, min) in [50, 55, 70].into_iter().enumerate() {
            let mut e = view(
                utc_us("2026-01-08 23:00") + min * MIN,
                Some(9_000),
                9_000,
                6,
            );
            e.is_bot = Some(j == 1);
            events.push(e);
        }
        // A visitor of two days three apart, forgotten below.
        events.push(view(utc_us("2026-01-05 09:00"), Some(7_000), 7_000, 4));
        events.push(view(utc_us("2026-01-08 09:00"), Some(7_001), 7_000, 4));
        // Today's sessions are never sketched: counted from the events.
        let now = crate::event::now_us();
        events.push(view(now - 2 * MIN, Some(8_000), 8_000, 5));
        events.push(view(now - MIN, Some(8_000), 8_000, 5));
        let today = chrono::DateTime::from_timestamp_micros(now)
            .unwrap()
            .date_naive();
        let queries = [
            "acquisition?dimension=all&from=2026-01-04&to=2026-01-10".to_string(),
            "acquisition?dimension=utm_source,channel&from=2026-01-06&to=2026-01-08&limit=2"
                .to_string(),
            format!("acquisition?dimension=all&from=2026-01-04&to={today}&limit=3"),
            "audience?from=2026-01-04&to=2026-01-10".to_string(),
            "audience?from=2026-01-07&to=2026-01-08&limit=2".to_string(),
            format!("audience?from=2026-01-04&to={today}"),
        ];
        let answer = |store: &crate::store::Store, tz: &str, q: &str, exact: bool| {
            let (name, q) = q.split_once('?').unwrap();
            answer_of(store, tz, name, q, exact)["tables"].clone()
        };
        let check = |store: &crate::store::Store, tz: &str, sketched: bool| {
            assert_eq!(days(store, tz) > 0, sketched, "{tz}");
            for q in &queries {
                let got = answer(store, tz, q, false);
                let want = answer(store, tz, q, true);
                let tables = want.as_object().unwrap();
                assert!(tables.len() >= 2, "{tz} {q}");
                for t in tables.values() {
                    assert!(!t["rows"].as_array().unwrap().is_empty(), "{tz} {q}");
                }
                assert_eq!(got, want, "{tz} {q}");
            }
        };
        for zone in ["UTC", "Asia/Kolkata", "America/New_York"] {
            let (_dir, mut store, tz, _) = sketched_store(zone, &events, &check);
            // The late page views, with other values: each session now begins before
            // midnight as a social visit from a tablet, for its page views after midnight too.
            let seq = store.next_seq().unwrap();
            let late: Vec<Event> = midnights
                .iter()
                .enumerate()
                .map(|(i, m)| view(utc_us(m) - 5 * MIN, Some(5_000 + i as u128), 5_000, 2))
                .collect();
            store.append(seq, &late).unwrap();
            check(&store, zone, true);
            store.sketch_every_day(tz).unwrap();
            check(&store, zone, true);
            // Retention to 00:00 UTC: the UTC session's late page view goes, and it begins on
            // the next day again, with its old values.
            let cutoff = utc_us(midnights[0]);
            prune_and_forget(&mut store, zone, cutoff + 86_400_000_000, 7_000, &check);
        }

        // Past EXACT_MAX visitors a value's count is an estimate: labelled, and close.
        let (_dir, mut store) = store();
        let many: Vec<Event> = (0..9_000i64)
            .map(|i| {
                let mut e = view(
                    base + 86_400_000_000 * (i % 3) + i,
                    Some(100_000 + i as u128),
                    100_000 + i as u128,
                    0,
                );
                e.utm_source = Some("big".into());
                e
            })
            .collect();
        store.append(1, &many).unwrap();
        store.sketch_every_day(chrono_tz::Tz::UTC).unwrap();
        let got = answer(&store, "UTC", &queries[0], false);
        let t = &got["utm_source"];
        assert_eq!(t["estimated"], serde_json::json!(["visitors"]));
        assert_eq!(
            t["columns"],
            serde_json::json!(["utm_source", "visitors", "sessions"])
        );
        let row = &t["rows"][0];
        assert_eq!(row[0], "big");
        assert_eq!(row[2], 9_000);
        let visitors = row[1].as_f64().unwrap();
        assert!((visitors - 9_000.0).abs() < 270.0, "{visitors}");
        // The sketches are what answers: sessions deleted behind the store's back still
        // count.
        let conn = store.reader().unwrap();
        conn.execute_batch("DELETE FROM sessions WHERE first_ts < '2026-01-06'")
            .unwrap();
        assert_eq!(answer(&store, "UTC", &queries[0], false), got);
        let exact = answer(&store, "UTC", &queries[0], true);
        assert_eq!(exact["utm_source"]["rows"][0][2], 6_000);
    }

    /// The `api` report without filters, from the writer's latency buckets (`api_latencies`)
    /// and the events of the days without them, against the same report counted from the
    /// events (the built days set aside): calls, errors and error rates equal, percentiles
    /// within 1 % (and the rounding to a microsecond), labelled as estimates. Before and after
    /// the days are built; with today's calls and a day with API calls but no page views
    /// (which the writer builds no day of); after a late API call, a retention pass and a
    /// forget of a visitor whose only events on a day are API calls; in three zones.
    #[test]
    fn api_from_latency_buckets_is_within_one_percent_of_the_events() {
        use crate::event::{Event, Source};
        const MIN: i64 = 60_000_000;
        let call = |ts: i64, route: &str, method: &str, k: i64, visitor: u128| {
            let mut e = Event::now("api_call", "shop", Source::Proxy);
            e.ts_us = ts;
            e.route = Some(route.into());
            e.method = Some(method.into());
            e.status = Some(if k % 23 == 0 { 503 } else { 200 });
            // Spread over four orders of magnitude; some without (the client left), some zero.
            e.duration_ms = match k % 41 {
                0 => None,
                1 => Some(0.0),
                _ => Some(((k * 7_919) % 10_000) as f64 * 0.0731 + 0.2),
            };
            e.visitor_id = Some(uuid::Uuid::from_u128(visitor));
            e
        };
        let view = |ts: i64| {
            let mut e = Event::now("page_view", "shop", Source::Proxy);
            e.ts_us = ts;
            e.path = Some("/".into());
            e.visitor_id = Some(uuid::Uuid::from_u128(1));
            e.session_id = Some(uuid::Uuid::from_u128(ts as u128));
            e
        };
        // Five days of page views (an hour apart) and calls on four routes (7 minutes apart,
        // each route its own share, so that no two have as many calls).
        let base = utc_us("2026-01-05 00:00");
        let mut events: Vec<Event> = (0..5 * 24).map(|h| view(base + h * 60 * MIN)).collect();
        let routes = [
            ("/a", "GET"),
            ("/a", "POST"),
            ("/b", "GET"),
            ("/c/:id", "GET"),
        ];
        for k in 0..(5 * 24 * 60 / 7) {
            let (route, method) = routes[[0, 0, 0, 0, 1, 1, 1, 2, 2, 3][(k % 10) as usize]];
            events.push(call(
                base + k * 7 * MIN,
                route,
                method,
                k,
                10 + (k % 50) as u128,
            ));
        }
        // A bot's calls count nowhere.
        let mut bot = call(base + 90 * MIN, "/a", "GET", 5, 2);
        bot.is_bot = Some(true);
        bot.duration_ms = Some(90_000.0);
        events.push(bot);
        // A day with API calls and no page views.
        for k in 0..40 {
            events.push(call(
                utc_us("2026-01-03 10:00") + k * MIN,
                "/b",
                "GET",
                k,
                3,
            ));
        }
        // A visitor whose only events on 2026-01-07 are slow calls, forgotten below.
        for k in 0..30 {
            let mut e = call(utc_us("2026-01-07 12:00") + k * MIN, "/c/:id", "GET", k, 4);
            e.duration_ms = Some(5_000.0 + k as f64);
            events.push(e);
        }
        // Today's calls are never bucketed by the writer: counted from the events.
        let now = crate::event::now_us();
        events.push(view(now - 3 * MIN));
        for k in 0..20 {
            events.push(call(now - 2 * MIN + k, "/a", "GET", k, 5));
        }
        let today = chrono::DateTime::from_timestamp_micros(now)
            .unwrap()
            .date_naive();
        let queries = [
            "from=2026-01-02&to=2026-01-12".to_string(),
            "from=2026-01-06&to=2026-01-07&limit=2".to_string(),
            format!("from=2026-01-08&to={today}"),
        ];
        let answer = |store: &crate::store::Store, tz: &str, q: &str, exact: bool| {
            answer_of(store, tz, "api", q, exact)
        };
        // Within 1 % of the exact value, and half a microsecond of rounding each.
        let close = |got: &Value, want: &Value| match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) => (g - w).abs() <= 0.01 * w + 0.0011,
            _ => got == want,
        };
        // Answers from the buckets (labelled) are close, the others equal.
        let check = |store: &crate::store::Store, tz: &str, sketched: bool| {
            assert_eq!(days(store, tz) > 0, sketched, "{tz}");
            let mut bucketed = 0;
            for q in &queries {
                let got = answer(store, tz, q, false);
                let want = answer(store, tz, q, true);
                let estimated = ["p50_ms", "p95_ms", "p99_ms"];
                let label = |v: &Value| v.get("estimated").cloned();
                assert_eq!(label(&want["totals"]), None, "{tz} {q}");
                assert_eq!(label(&want["routes"]), None, "{tz} {q}");
                let (t, w) = (&got["totals"], &want["totals"]);
                assert!(w["calls"].as_i64().unwrap() > 0, "{tz} {q}");
                assert_eq!(label(&got["routes"]), label(t), "{tz} {q}");
                match label(t) {
                    Some(l) => {
                        assert_eq!(l, serde_json::json!(estimated), "{tz} {q}");
                        bucketed += 1;
                    }
                    None => assert_eq!(got, want, "{tz} {q}"),
                }
                for k in ["calls", "errors", "error_rate"] {
                    assert_eq!(t[k], w[k], "{tz} {q}: {k}");
                }
                for k in estimated {
                    assert!(
                        close(&t[k], &w[k]),
                        "{tz} {q}: {k} {} against {}",
                        t[k],
                        w[k]
                    );
                }
                let rows = |v: &Value| v["routes"]["rows"].as_array().unwrap().clone();
                let (g, w) = (rows(&got), rows(&want));
                assert_eq!(g.len(), w.len(), "{tz} {q}");
                for (g, w) in g.iter().zip(&w) {
                    let (g, w) = (g.as_array().unwrap(), w.as_array().unwrap());
                    assert_eq!(g[..5], w[..5], "{tz} {q}");
                    for i in 5..8 {
                        assert!(close(&g[i], &w[i]), "{tz} {q}: {g:?} against {w:?}");
                    }
                }
            }
            // Built days answer every query but one that a late call reopens.
            assert!(bucketed >= usize::from(sketched) * 2, "{tz}: {bucketed}");
        };
        for zone in ["UTC", "Asia/Kolkata", "America/New_York"] {
            let (_dir, mut store, tz, _) = sketched_store(zone, &events, &check);
            let buckets = |store: &crate::store::Store| -> i64 {
                let conn = store.reader().unwrap();
                conn.query_row("SELECT count(*) FROM api_latencies", [], |r| r.get(0))
                    .unwrap()
            };
            assert!(buckets(&store) > 100, "{zone}");
            // Late calls, much slower than the rest, on a built day: counted from the events
            // until a fold drops the day (the writer folds with the next page views).
            let seq = store.next_seq().unwrap();
            let mut late = call(utc_us("2026-01-06 12:03"), "/a", "GET", 2, 6);
            late.duration_ms = Some(60_000.0);
            store.append(seq, &vec![late; 200]).unwrap();
            check(&store, zone, true);
            let seq = store.next_seq().unwrap();
            store.append(seq, &[view(now - MIN)]).unwrap();
            check(&store, zone, true);
            store.sketch_every_day(tz).unwrap();
            check(&store, zone, true);
            // Retention (the events before 2026-01-06 00:00 UTC go), then the forget.
            prune_and_forget(&mut store, zone, utc_us("2026-01-07 00:00"), 4, &check);
            // The buckets are what answers: calls deleted behind the store's back still count
            // (on 2026-01-08, a built day in every zone; the exact report then differs).
            let q = &queries[0];
            let before = answer(&store, zone, q, false);
            let conn = store.reader().unwrap();
            conn.execute_batch(
                "DELETE FROM events WHERE name = 'api_call' \
                 AND ts >= '2026-01-08 06:00' AND ts < '2026-01-08 12:00'",
            )
            .unwrap();
            drop(conn);
            assert_eq!(answer(&store, zone, q, false), before, "{zone}");
            assert_ne!(
                answer(&store, zone, q, true)["totals"]["calls"],
                before["totals"]["calls"],
                "{zone}"
            );
        }
    }
}
