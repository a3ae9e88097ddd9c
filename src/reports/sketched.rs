//! Top pages from the writer's page sketches (`store`'s `sketches.rs`), for the pages report
//! without filters: page views per path summed from a row per day, and visitors merged from
//! a sketch per day, for the days of the range that have them; the other days (today,
//! yesterday until 01:00, a day that a late event or a deletion reopened) are counted from the
//! events and merged in. Visitors are exact while a page's merged sketch holds at most
//! `store::sketches::EXACT_MAX` of them, and a HyperLogLog estimate (standard error about
//! 0.8 %) past that: the table then lists `visitors` in its `estimated` columns.

use super::filter::{ts_value, Filters, Sql};
use super::traffic::null_last;
use super::{typed_rows, CountsRow, ReportError};
use crate::store::{
    bucket_of, bucket_value, count_between, last_sketch_day, views_by_path, Counted, Measure,
    PathViews, Sketch, StoreError, API_CALL, FOLDED_THROUGH,
};
use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone};
use duckdb::arrow::array::{Array, BinaryArray, StringArray};
use duckdb::{params_from_iter, Connection};
use std::collections::{BTreeSet, HashMap};

/// Days of a range at most that may lack sketches: counting them from the events costs about
/// what a tenth of a month does. With more (a store whose sketches are still being built),
/// the report counts every day from the events instead.
const RAW_DAYS: usize = 2;

/// Paths whose sketches are read at most: with more candidates (many paths tied at the cut),
/// the report counts from the events instead, so that the sketches it holds stay bounded.
const NAMED_PATHS: usize = 1000;

/// The top pages, `(rows, whether visitors are estimated)`, or `None` (count them from the
/// events) when no day of the range has sketches, more than [`RAW_DAYS`] need counting from
/// the events, or more than [`NAMED_PATHS`] paths tie for the top.
pub(super) fn top_pages(conn: &Connection, f: &Filters) -> Result<Option<Ranked>, ReportError> {
    debug_assert!(f.sketchable());
    // One snapshot for every query below: the writer builds and drops days meanwhile, and a
    // day read as sketched must still be so when its rows are read (or counted from the
    // events only once).
    let _snapshot = Snapshot::begin(conn);
    let Some(Days { built, raw }) = days(conn, f, Of::PageViews)? else {
        return Ok(None);
    };
    let raw_views = raw_page_views(f, &raw);

    // The other days' page views in one pass: per path, its page views and visitors.
    let mut raw = match &raw_views {
        Some(views) => views_by_path(conn, &views.text, params_from_iter(views.params.iter()))
            .map_err(store_error)?,
        None => PathViews::new(),
    };
    let mut counts: HashMap<Option<String>, i64> =
        raw.iter().map(|(p, (n, _))| (p.clone(), *n)).collect();
    // Page views per path: the sketched days' rows, and the other days'.
    let mut sql = in_range(
        f,
        "SELECT path, sum(pageviews)::BIGINT FROM page_sketches",
        &built,
    );
    sql.push(" GROUP BY path");
    for (path, n) in typed_rows::<(Option<String>, i64)>(conn, &sql)? {
        *counts.entry(path).or_default() += n;
    }
    let mut rows: Vec<(Option<String>, i64)> = counts.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    // Every path with at least as many page views as the `limit`-th can make the cut (visitors
    // break the ties).
    if let Some(cut) = rows.get(f.limit.saturating_sub(1)).map(|r| r.1) {
        rows.retain(|r| r.1 >= cut);
    }
    if rows.is_empty() {
        return Ok(Some((Vec::new(), false)));
    }

    if rows.len() > NAMED_PATHS {
        return Ok(None);
    }

    // Visitors of those paths: their sketches (merged as they are read: a path holds one
    // merged sketch at most, of 16 KiB), and the other days' visitors.
    let mut visitors: HashMap<Option<String>, Sketch> = HashMap::new();
    let mut sketches = in_range(f, "SELECT path, visitors FROM page_sketches", &built);
    sketches.push(" AND ");
    values_in(&mut sketches, "path", &rows);
    each_sketch(conn, &sketches, 1, |keys, s| {
        merge_into(&mut visitors, keys[0].map(str::to_string), s)
    })?;
    for (path, _) in &rows {
        if let Some((_, h)) = raw.remove(path) {
            merge_into(&mut visitors, path.clone(), Sketch::of(h));
        }
    }

    Ok(Some(ranked(rows, f.limit, |p| visitors.get(p))))
}

/// Per dimension of `cols` (all among `measure`'s), its top values by `measure` and visitors,
/// and whether a shown row's visitors are an estimate; or `None` (count them from the events)
/// as [`top_pages`] says, or when more than [`NAMED_PATHS`] values tie for the top of the
/// dimensions.
pub(super) fn breakdowns(
    conn: &Connection,
    f: &Filters,
    measure: Measure,
    cols: &[&str],
) -> Result<Option<Vec<Ranked>>, ReportError> {
    debug_assert!(f.sketchable());
    if !cols.iter().all(|c| measure.dims().contains(c)) {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let _snapshot = Snapshot::begin(conn);
    let Some(Days { built, raw }) = days(conn, f, Of::PageViews)? else {
        return Ok(None);
    };
    let planned = started.elapsed();
    // The other days, counted from the events and sessions, a day at a time (two at most).
    let mut raw_counts = Counted::new();
    for day in raw {
        let (start, end) = (
            f.tz.day_start_utc(day),
            f.tz.day_start_utc(day + Duration::days(1)),
        );
        let counted = count_between(conn, measure, cols, start, end).map_err(store_error)?;
        for (key, (n, hashes)) in counted {
            let (m, h) = raw_counts.entry(key).or_default();
            *m += n;
            h.extend(hashes);
        }
    }
    let counted = started.elapsed();
    // Counts per value: the sketched days' rows, and the other days'.
    let named = |sql: &mut Sql| {
        sql.push(" AND measure = ")
            .bind(measure.name().to_string())
            .push(" AND dim IN (NULL");
        for c in cols {
            sql.push(", ").bind((*c).to_string());
        }
        sql.push(")");
    };
    let mut sql = in_range(
        f,
        "SELECT dim, value, sum(n)::BIGINT FROM breakdown_sketches",
        &built,
    );
    named(&mut sql);
    sql.push(" GROUP BY dim, value");
    let mut counts: HashMap<(String, Option<String>), i64> = raw_counts
        .iter()
        .map(|(k, (n, _))| (k.clone(), *n))
        .collect();
    for (dim, value, n) in typed_rows::<(String, Option<String>, i64)>(conn, &sql)? {
        *counts.entry((dim, value)).or_default() += n;
    }
    // Per dimension, every value with at least as many as the `limit`-th (visitors break
    // the ties).
    let mut tops: Vec<Vec<(Option<String>, i64)>> = vec![Vec::new(); cols.len()];
    for ((dim, value), n) in counts {
        if let Some(i) = cols.iter().position(|c| *c == dim) {
            tops[i].push((value, n));
        }
    }
    for rows in &mut tops {
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        if let Some(cut) = rows.get(f.limit.saturating_sub(1)).map(|r| r.1) {
            rows.retain(|r| r.1 >= cut);
        }
    }
    if tops.iter().map(Vec::len).sum::<usize>() > NAMED_PATHS {
        return Ok(None);
    }

    let summed = started.elapsed();
    // Visitors of those values: their sketches, merged as they are read, and the other days'.
    let mut sketches = in_range(
        f,
        "SELECT dim, value, visitors FROM breakdown_sketches",
        &built,
    );
    named(&mut sketches);
    sketches.push(" AND (false");
    for (c, rows) in cols.iter().zip(&tops) {
        if !rows.is_empty() {
            sketches
                .push(" OR dim = ")
                .bind((*c).to_string())
                .push(" AND ");
            values_in(&mut sketches, "value", rows);
        }
    }
    sketches.push(")");
    let mut visitors: HashMap<(String, Option<String>), Sketch> = HashMap::new();
    each_sketch(conn, &sketches, 2, |keys, s| {
        let key = (
            keys[0].unwrap_or_default().to_string(),
            keys[1].map(str::to_string),
        );
        merge_into(&mut visitors, key, s)
    })?;
    for (c, rows) in cols.iter().zip(&tops) {
        for (value, _) in rows {
            let key = ((*c).to_string(), value.clone());
            if let Some((_, h)) = raw_counts.remove(&key) {
                merge_into(&mut visitors, key, Sketch::of(h));
            }
        }
    }

    let merged = started.elapsed();
    // `TOLLGATE_LOG=tollgate::reports=debug` shows where the time went.
    tracing::debug!(
        measure = measure.name(),
        days_ms = planned.as_millis() as u64,
        raw_ms = (counted - planned).as_millis() as u64,
        counts_ms = (summed - counted).as_millis() as u64,
        sketches_ms = (merged - summed).as_millis() as u64,
        "Sketched breakdowns."
    );
    let tables = cols
        .iter()
        .zip(tops)
        .map(|(c, rows)| {
            let visitors_of =
                |value: &Option<String>| visitors.get(&((*c).to_string(), value.clone()));
            ranked(rows, f.limit, visitors_of)
        })
        .collect();
    Ok(Some(tables))
}

/// The `api` report's calls without filters: `read` gets SQL whose rows are `route, method,
/// duration_ms, calls, errors` ordered by route and method, as the exact query's, but with
/// calls counted per latency bucket (`store`'s `latencies.rs`) and `duration_ms` the bucket's
/// value: summed from `api_latencies` for the days of the range that have them, and counted
/// from the events for the others. `None` (count every call from the events, exactly) as
/// [`top_pages`] says.
pub(super) fn api_calls<T>(
    conn: &Connection,
    f: &Filters,
    read: impl FnOnce(&Sql) -> Result<T, ReportError>,
) -> Result<Option<T>, ReportError> {
    debug_assert!(f.sketchable());
    let _snapshot = Snapshot::begin(conn);
    let Some(Days { built, raw }) = days(conn, f, Of::ApiCalls)? else {
        return Ok(None);
    };
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT route, method, {} AS duration_ms, sum(calls)::BIGINT, sum(errors)::BIGINT FROM (",
        bucket_value("bucket")
    ))
    .append(&in_range(
        f,
        "SELECT route, method, bucket, calls, errors FROM api_latencies",
        &built,
    ));
    if !raw.is_empty() {
        sql.push(&format!(
            " UNION ALL SELECT route, method, {} AS bucket, count(*) AS calls, \
               count(*) FILTER (status >= 500) AS errors FROM events \
             WHERE name = '{API_CALL}' AND is_bot IS NOT TRUE AND ",
            bucket_of("duration_ms")
        ));
        in_days(&mut sql, f, &raw);
        sql.push(" GROUP BY route, method, bucket");
    }
    sql.push(") GROUP BY route, method, bucket ORDER BY route, method");
    read(&sql).map(Some)
}

/// A table's rows, and whether a row shown has estimated visitors.
type Ranked = (Vec<CountsRow>, bool);

/// `rows` (value, count) with their visitors, sorted by count, then visitors (both
/// descending), then value, and cut to `limit`; and whether a row shown has estimated
/// visitors.
fn ranked<'a>(
    rows: Vec<(Option<String>, i64)>,
    limit: usize,
    visitors: impl Fn(&Option<String>) -> Option<&'a Sketch>,
) -> Ranked {
    let mut estimated = false;
    let mut out: Vec<CountsRow> = rows
        .into_iter()
        .map(|(value, n)| {
            let v = visitors(&value);
            CountsRow(value, v.map_or(0, |s| s.count() as i64), n)
        })
        .collect();
    out.sort_by(|a, b| {
        b.2.cmp(&a.2)
            .then_with(|| b.1.cmp(&a.1))
            .then_with(|| null_last(a.0.as_deref(), b.0.as_deref()))
    });
    out.truncate(limit);
    for r in &out {
        estimated |= visitors(&r.0).is_some_and(Sketch::is_estimate);
    }
    (out, estimated)
}

/// `each(keys, sketch)` for every row of `sql`: `keys` text columns, then a sketch. Read as
/// Arrow batches: a month of sketches is tens of megabytes, which the row API copied more.
fn each_sketch(
    conn: &Connection,
    sql: &Sql,
    keys: usize,
    mut each: impl FnMut(&[Option<&str>], Sketch),
) -> Result<(), ReportError> {
    let bad = |what: &str| ReportError::Internal(format!("sketches: {what}"));
    let mut stmt = conn.prepare(&sql.text)?;
    for batch in stmt.query_arrow(params_from_iter(sql.params.iter()))? {
        let texts = (0..keys)
            .map(|k| batch.column(k).as_any().downcast_ref::<StringArray>())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("unexpected key types"))?;
        let blobs = batch
            .column(keys)
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(|| bad("unexpected sketch type"))?;
        let mut row = Vec::with_capacity(keys);
        for i in 0..batch.num_rows() {
            row.clear();
            row.extend(texts.iter().map(|t| (!t.is_null(i)).then(|| t.value(i))));
            let s = Sketch::decode(blobs.value(i)).map_err(|e| bad(&e.to_string()))?;
            each(&row, s);
        }
    }
    Ok(())
}

/// Merge `s` into the sketch of `key` in `into` (or put it there: no copy).
fn merge_into<K: std::hash::Hash + Eq>(into: &mut HashMap<K, Sketch>, key: K, s: Sketch) {
    match into.get_mut(&key) {
        Some(v) => v.merge(&s),
        None => {
            into.insert(key, s);
        }
    }
}

fn store_error(e: StoreError) -> ReportError {
    match e {
        StoreError::Db(e) => ReportError::Store(e),
        e => ReportError::Internal(e.to_string()),
    }
}

/// The days of a range: those with sketches, and those counted from the events.
struct Days {
    built: BTreeSet<NaiveDate>,
    raw: Vec<NaiveDate>,
}

/// What a report reads from the days' sketches.
#[derive(Clone, Copy)]
enum Of {
    /// Page views (page and breakdown sketches).
    PageViews,
    /// API calls (`api_latencies`).
    ApiCalls,
}

/// The range's [`Days`], or `None` (count every day from the events) when none has sketches
/// or more than [`RAW_DAYS`] of them need counting from the events. Today (and yesterday
/// until 01:00, `store::last_sketch_day`) is counted from the events, and so is a day with
/// page views (or API calls, for [`Of::ApiCalls`]) but no sketches (a late event or a deletion reopened it, or, for API
/// calls, the day had no page views, which the writer builds days of), or with page views
/// (API calls) not folded yet.
fn days(conn: &Connection, f: &Filters, of: Of) -> Result<Option<Days>, ReportError> {
    let tz = f.tz.name();
    let mut built = BTreeSet::new();
    let mut days = Sql::default();
    days.push("SELECT CAST(day AS VARCHAR) FROM page_sketch_days WHERE tz = ")
        .bind(tz.to_string());
    days.push(" AND day BETWEEN CAST(")
        .bind(f.from.to_string())
        .push(" AS DATE) AND CAST(")
        .bind(f.to.to_string())
        .push(" AS DATE)");
    for (day,) in typed_rows::<(String,)>(conn, &days)? {
        if let Ok(d) = NaiveDate::parse_from_str(&day, "%Y-%m-%d") {
            built.insert(d);
        }
    }
    // The hours with page views: folded (`pageview_hours`), and past the fold's watermark
    // (committed, not folded yet: under load for up to a staged commit). A day with page views
    // (or API calls) past the watermark is counted from the events even if it has sketches:
    // the fold that drops them (a late event) has not run yet.
    let names = match of {
        Of::PageViews => "name = 'page_view'",
        Of::ApiCalls => "name IN ('page_view', 'api_call')",
    };
    let mut viewed = BTreeSet::new();
    let mut unfolded = BTreeSet::new();
    let (start, end) = (ts_value(f.start - Duration::hours(1)), ts_value(f.end));
    let mut hours = Sql::default();
    hours
        .push(
            "SELECT DISTINCT CAST(h AS VARCHAR), past FROM (SELECT hour_utc AS h, false AS past \
             FROM pageview_hours WHERE hour_utc >= ",
        )
        .bind(start.clone())
        .push(" AND hour_utc < ")
        .bind(end.clone())
        .push(&format!(
            " UNION ALL SELECT date_trunc('hour', ts), true FROM events WHERE seq > {FOLDED_THROUGH} \
             AND {names} AND ts >= "
        ))
        .bind(start)
        .push(" AND ts < ")
        .bind(end)
        .push(")");
    let mut note = |hour: &str, past: bool, viewed: &mut BTreeSet<NaiveDate>| {
        if let Ok(h) = NaiveDateTime::parse_from_str(hour, "%Y-%m-%d %H:%M:%S") {
            // An hour can straddle two local days (zones with half-hour offsets).
            for t in [h, h + Duration::minutes(59)] {
                let day = f.tz.0.from_utc_datetime(&t).date_naive();
                viewed.insert(day);
                if past {
                    unfolded.insert(day);
                }
            }
        }
    };
    for (hour, past) in typed_rows::<(String, bool)>(conn, &hours)? {
        note(&hour, past, &mut viewed);
    }
    let now = chrono::DateTime::from_timestamp_micros(crate::event::now_us())
        .unwrap_or_default()
        .naive_utc();
    let last = last_sketch_day(f.tz.0, now);
    // The days without page views and sketches that have API calls (a store's first days
    // usually have neither: the zonemaps of `ts` answer at once).
    let quiet: Vec<NaiveDate> = match of {
        Of::PageViews => Vec::new(),
        Of::ApiCalls => f
            .from
            .iter_days()
            .take_while(|d| *d <= f.to)
            .filter(|d| *d <= last && !built.contains(d) && !viewed.contains(d))
            .collect(),
    };
    if !quiet.is_empty() {
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT DISTINCT CAST(date_trunc('hour', ts) AS VARCHAR) FROM events \
             WHERE name = '{API_CALL}' AND "
        ));
        in_days(&mut sql, f, &quiet);
        for (hour,) in typed_rows::<(String,)>(conn, &sql)? {
            note(&hour, false, &mut viewed);
        }
    }
    for day in &unfolded {
        built.remove(day);
    }
    let raw: Vec<NaiveDate> = f
        .from
        .iter_days()
        .take_while(|d| *d <= f.to)
        .filter(|d| !built.contains(d) && (*d > last || viewed.contains(d)))
        .collect();
    if built.is_empty() || raw.len() > RAW_DAYS {
        return Ok(None);
    }
    Ok(Some(Days { built, raw }))
}

/// A snapshot for the queries of one answer: a transaction begun on `conn`, rolled back when
/// dropped (nothing was written). `conn` must not be in a transaction: DuckDB aborts it when a
/// `BEGIN` fails.
struct Snapshot<'a>(Option<&'a Connection>);

impl<'a> Snapshot<'a> {
    fn begin(conn: &'a Connection) -> Self {
        Snapshot(conn.execute_batch("BEGIN TRANSACTION").ok().map(|_| conn))
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.0 {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

/// `<select> WHERE` the rows of the `built` days.
fn in_range(f: &Filters, select: &str, built: &BTreeSet<NaiveDate>) -> Sql {
    let mut sql = Sql::default();
    sql.push(select)
        .push(" WHERE tz = ")
        .bind(f.tz.name().to_string());
    sql.push(" AND day IN (NULL");
    for day in built {
        sql.push(", CAST(").bind(day.to_string()).push(" AS DATE)");
    }
    sql.push(")");
    sql
}

/// The non-bot page views (`path, visitor_id`) of the local `days`; `None` without days.
fn raw_page_views(f: &Filters, days: &[NaiveDate]) -> Option<Sql> {
    if days.is_empty() {
        return None;
    }
    let mut sql = Sql::default();
    sql.push(
        "SELECT path, visitor_id FROM events WHERE name = 'page_view' AND is_bot IS NOT TRUE AND ",
    );
    in_days(&mut sql, f, days);
    Some(sql)
}

/// `(<ts in the local days>)`, one time range per run of consecutive days of `days` (sorted);
/// `(false)` without days.
fn in_days(sql: &mut Sql, f: &Filters, days: &[NaiveDate]) {
    let mut runs: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for &d in days {
        match runs.last_mut() {
            Some(last) if d == last.1 + Duration::days(1) => last.1 = d,
            _ => runs.push((d, d)),
        }
    }
    sql.push("(false");
    for (a, b) in runs {
        sql.push(" OR (ts >= ")
            .bind(ts_value(f.tz.day_start_utc(a)))
            .push(" AND ts < ")
            .bind(ts_value(f.tz.day_start_utc(b + Duration::days(1))))
            .push(")");
    }
    sql.push(")");
}

/// `(<col> IN (…) OR <col> IS NULL)` for the values of `rows`.
fn values_in(sql: &mut Sql, col: &str, rows: &[(Option<String>, i64)]) {
    sql.push(&format!("({col} IN (NULL"));
    for (path, _) in rows {
        if let Some(p) = path {
            sql.push(", ").bind(p.clone());
        }
    }
    sql.push(")");
    if rows.iter().any(|(p, _)| p.is_none()) {
        sql.push(&format!(" OR {col} IS NULL"));
    }
    sql.push(")");
}
