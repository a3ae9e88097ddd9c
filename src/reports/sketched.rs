//! Top pages from the writer's page sketches (`store`'s `sketches.rs`), for the pages report
//! without filters: page views per path summed from a row per day, and visitors merged from
//! a sketch per day, for the days of the range that have them; the other days (today,
//! yesterday, a day that a late event or a deletion reopened) are counted from the events
//! and merged in. Visitors are exact while a page's merged sketch holds at most
//! `store::sketches::EXACT_MAX` of them, and a HyperLogLog estimate (standard error about
//! 0.8 %) past that: the table then lists `visitors` in its `estimated` columns.

use super::filter::{ts_value, Filters, Sql};
use super::traffic::null_last;
use super::{typed_rows, CountsRow, ReportError};
use crate::store::{last_sketch_day, views_by_path, PathViews, Sketch, StoreError, FOLDED_THROUGH};
use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone};
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
pub(super) fn top_pages(
    conn: &Connection,
    f: &Filters,
) -> Result<Option<(Vec<CountsRow>, bool)>, ReportError> {
    debug_assert!(f.dims.is_empty() && f.props.is_empty() && !f.bots);
    // One snapshot for every query below: the writer builds and drops days meanwhile, and a
    // day read as sketched must still be so when its rows are read (or counted from the
    // events only once).
    let _snapshot = Snapshot::begin(conn);
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
    // past the watermark is counted from the events even if it has sketches: the fold that
    // drops them (a late event) has not run yet.
    let mut viewed = BTreeSet::new();
    let mut unfolded = BTreeSet::new();
    let (start, end) = (ts_value(f.start - Duration::hours(1)), ts_value(f.end));
    let mut hours = Sql::default();
    hours
        .push(
            "SELECT DISTINCT CAST(h AS VARCHAR), past FROM (SELECT hour_utc AS h, false AS past \
             FROM pageview_hours WHERE NOT is_bot AND hour_utc >= ",
        )
        .bind(start.clone())
        .push(" AND hour_utc < ")
        .bind(end.clone())
        .push(&format!(
            " UNION ALL SELECT date_trunc('hour', ts), true FROM events WHERE seq > {FOLDED_THROUGH} \
             AND name = 'page_view' AND is_bot IS NOT TRUE AND ts >= "
        ))
        .bind(start)
        .push(" AND ts < ")
        .bind(end)
        .push(")");
    for (hour, past) in typed_rows::<(String, bool)>(conn, &hours)? {
        if let Ok(h) = NaiveDateTime::parse_from_str(&hour, "%Y-%m-%d %H:%M:%S") {
            // An hour can straddle two local days (zones with half-hour offsets).
            for t in [h, h + Duration::minutes(59)] {
                let day = f.tz.0.from_utc_datetime(&t).date_naive();
                viewed.insert(day);
                if past {
                    unfolded.insert(day);
                }
            }
        }
    }
    for day in &unfolded {
        built.remove(day);
    }
    let now = chrono::DateTime::from_timestamp_micros(crate::event::now_us())
        .unwrap_or_default()
        .naive_utc();
    let last = last_sketch_day(f.tz.0, now);
    let raw: Vec<NaiveDate> = f
        .from
        .iter_days()
        .take_while(|d| *d <= f.to)
        .filter(|d| !built.contains(d) && (*d > last || viewed.contains(d)))
        .collect();
    if built.is_empty() || raw.len() > RAW_DAYS {
        return Ok(None);
    }
    let raw_views = raw_page_views(f, &raw);

    // The other days' page views in one pass: per path, its page views and visitors.
    let mut raw = match &raw_views {
        Some(views) => views_by_path(conn, &views.text, params_from_iter(views.params.iter()))
            .map_err(|e| match e {
                StoreError::Db(e) => ReportError::Store(e),
                e => ReportError::Internal(e.to_string()),
            })?,
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
    paths_in(&mut sketches, &rows);
    let mut stmt = conn.prepare(&sketches.text)?;
    let mut read = stmt.query(duckdb::params_from_iter(sketches.params.iter()))?;
    while let Some(r) = read.next()? {
        let path: Option<String> = r.get(0)?;
        let blob = r.get_ref(1)?;
        let s = blob
            .as_blob()
            .map_err(|e| ReportError::Internal(e.to_string()))
            .and_then(|b| Sketch::decode(b).map_err(|e| ReportError::Internal(e.to_string())))?;
        visitors.entry(path).or_default().merge(&s);
    }
    for (path, _) in &rows {
        if let Some((_, h)) = raw.remove(path) {
            visitors
                .entry(path.clone())
                .or_default()
                .merge(&Sketch::of(h));
        }
    }

    let mut estimated = false;
    let mut out: Vec<CountsRow> = rows
        .into_iter()
        .map(|(path, views)| {
            let v = visitors.get(&path);
            estimated |= v.is_some_and(Sketch::is_estimate);
            CountsRow(path, v.map_or(0, |s| s.count() as i64), views)
        })
        .collect();
    out.sort_by(|a, b| {
        b.2.cmp(&a.2)
            .then_with(|| b.1.cmp(&a.1))
            .then_with(|| null_last(a.0.as_deref(), b.0.as_deref()))
    });
    out.truncate(f.limit);
    // Only the rows shown say whether their visitors are estimates.
    let estimated = estimated
        && out
            .iter()
            .any(|r| visitors.get(&r.0).is_some_and(Sketch::is_estimate));
    Ok(Some((out, estimated)))
}

/// A snapshot for the queries of one answer: a transaction begun on `conn` (unless it is in
/// one already), rolled back when dropped (nothing was written).
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

/// The non-bot page views (`path, visitor_id`) of the local `days`, one time range per run of
/// consecutive days; `None` without days.
fn raw_page_views(f: &Filters, days: &[NaiveDate]) -> Option<Sql> {
    let first = *days.first()?;
    let mut runs = vec![(first, first)];
    for &d in &days[1..] {
        let last = runs.last_mut().expect("one run at least");
        if d == last.1 + Duration::days(1) {
            last.1 = d;
        } else {
            runs.push((d, d));
        }
    }
    let mut sql = Sql::default();
    sql.push(
        "SELECT path, visitor_id FROM events WHERE name = 'page_view' AND is_bot IS NOT TRUE AND (",
    );
    for (i, (a, b)) in runs.into_iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(ts >= ")
            .bind(ts_value(f.tz.day_start_utc(a)))
            .push(" AND ts < ")
            .bind(ts_value(f.tz.day_start_utc(b + Duration::days(1))))
            .push(")");
    }
    sql.push(")");
    Some(sql)
}

/// `(path IN (…) OR path IS NULL)` for the paths of `rows`.
fn paths_in(sql: &mut Sql, rows: &[(Option<String>, i64)]) {
    sql.push("(path IN (NULL");
    for (path, _) in rows {
        if let Some(p) = path {
            sql.push(", ").bind(p.clone());
        }
    }
    sql.push(")");
    if rows.iter().any(|(p, _)| p.is_none()) {
        sql.push(" OR path IS NULL");
    }
    sql.push(")");
}
