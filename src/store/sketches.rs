//! `page_sketches`: for each local day and page, its page views and a sketch of its distinct
//! visitors, so that the pages report over a month merges about thirty small sketches a page
//! instead of grouping millions of (page, visitor) pairs (issue 18).
//!
//! A [`Sketch`] holds its visitors' 64-bit hashes exactly while they are at most
//! [`EXACT_MAX`]; past that it is a HyperLogLog of 2^14 one-byte registers, read with Ertl's
//! improved estimator (standard error about 0.8 %, no bias correction tables). Page views
//! are exact sums.
//!
//! Days are local days of `site.timezone`. The writer builds one day at a time
//! ([`build_day`]: after a commit of staged events, or at rest), once the day is over: up to
//! yesterday from 01:00 local time on ([`last_day`]). Each day row records its UTC bounds, so
//! that a late page view (an import of last month) drops the sketches of its days when the
//! writer folds it, and a `forget` or retention pass drops those of the subject's days,
//! whatever the zone; the writer builds them again. A deletion or a late event therefore never leaves a sketch that
//! counts what is no longer stored. The reports read sketches only for the days that have
//! them and count the others from the events (`reports::traffic`).

use super::latencies::API_CALL;
use super::StoreError;
use crate::event::columns::{NAME, PAGE_VIEW, PATH, SEQ, SESSION_ID, TS, VISITOR_ID};
use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use duckdb::arrow::array::{Array, Int64Array, StringArray, UInt64Array};
use duckdb::types::Value;
use duckdb::{params, Connection};
use std::collections::{BTreeMap, HashMap};
use tracing::debug;

/// Bits of a hash that pick the register.
const PRECISION: u32 = 14;
/// Registers of a dense sketch, a byte each.
const REGISTERS: usize = 1 << PRECISION;
/// The largest register value: the leading zeros of the 50 bits left, plus one.
const MAX_RANK: u8 = (64 - PRECISION + 1) as u8;
/// Hashes a sketch keeps exactly at most: as many bytes as the dense form.
pub const EXACT_MAX: usize = REGISTERS / 8;

/// `CREATE TABLE IF NOT EXISTS` for the sketches and the days that have them.
const DDL: &str = "CREATE TABLE IF NOT EXISTS page_sketch_days (
  tz VARCHAR NOT NULL,
  day DATE NOT NULL,
  start_utc TIMESTAMP NOT NULL,
  end_utc TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS page_sketches (
  tz VARCHAR NOT NULL,
  day DATE NOT NULL,
  path VARCHAR,
  pageviews BIGINT NOT NULL,
  visitors BLOB NOT NULL
);";

/// The distinct visitors of a set of page views: exact hashes, or HyperLogLog registers.
#[derive(Debug, Clone, PartialEq)]
pub enum Sketch {
    /// Sorted, distinct hashes; at most [`EXACT_MAX`].
    Exact(Vec<u64>),
    /// [`REGISTERS`] registers.
    Dense(Box<[u8]>),
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::Exact(Vec::new())
    }
}

impl Sketch {
    /// The sketch of `hashes` (in any order, repeats allowed).
    pub fn of(mut hashes: Vec<u64>) -> Sketch {
        hashes.sort_unstable();
        hashes.dedup();
        if hashes.len() <= EXACT_MAX {
            return Sketch::Exact(hashes);
        }
        let mut r = vec![0u8; REGISTERS].into_boxed_slice();
        for h in hashes {
            add(&mut r, h);
        }
        Sketch::Dense(r)
    }

    /// Add `other`'s visitors to this sketch's.
    pub fn merge(&mut self, other: &Sketch) {
        match (&mut *self, other) {
            (Sketch::Exact(a), Sketch::Exact(b)) => {
                // Both sorted and distinct: their union in one pass (a month's merges of a
                // value re-sorted it each time before, a tenth of a report's time).
                let mut all = Vec::with_capacity(a.len() + b.len());
                let (mut i, mut j) = (0, 0);
                while i < a.len() && j < b.len() {
                    let (x, y) = (a[i], b[j]);
                    all.push(x.min(y));
                    i += usize::from(x <= y);
                    j += usize::from(y <= x);
                }
                all.extend_from_slice(&a[i..]);
                all.extend_from_slice(&b[j..]);
                *self = if all.len() <= EXACT_MAX {
                    Sketch::Exact(all)
                } else {
                    Sketch::of(all)
                };
            }
            (Sketch::Dense(r), Sketch::Exact(b)) => {
                for &h in b {
                    add(r, h);
                }
            }
            (Sketch::Dense(r), Sketch::Dense(s)) => {
                for (x, &y) in r.iter_mut().zip(s.iter()) {
                    *x = (*x).max(y);
                }
            }
            (Sketch::Exact(a), Sketch::Dense(s)) => {
                let mut r = s.clone();
                for &h in a.iter() {
                    add(&mut r, h);
                }
                *self = Sketch::Dense(r);
            }
        }
    }

    /// How many distinct visitors: exact, or an estimate ([`Sketch::is_estimate`]).
    pub fn count(&self) -> u64 {
        match self {
            Sketch::Exact(h) => h.len() as u64,
            Sketch::Dense(r) => estimate(r),
        }
    }

    pub fn is_estimate(&self) -> bool {
        matches!(self, Sketch::Dense(_))
    }

    /// The stored form: a tag byte (0 exact, 1 dense), then the hashes (8 bytes each, little
    /// endian) or the registers.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Sketch::Exact(h) => {
                let mut b = Vec::with_capacity(1 + 8 * h.len());
                b.push(0);
                for x in h {
                    b.extend_from_slice(&x.to_le_bytes());
                }
                b
            }
            Sketch::Dense(r) => {
                let mut b = Vec::with_capacity(1 + r.len());
                b.push(1);
                b.extend_from_slice(r);
                b
            }
        }
    }

    /// Read [`Sketch::encode`]'s form.
    pub fn decode(b: &[u8]) -> Result<Sketch, StoreError> {
        let bad = || StoreError::Malformed("a visitor sketch is malformed".into());
        match b.split_first() {
            Some((0, rest)) if rest.len() % 8 == 0 && rest.len() / 8 <= EXACT_MAX => {
                let h: Vec<u64> = rest
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                if h.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(bad());
                }
                Ok(Sketch::Exact(h))
            }
            Some((1, rest)) if rest.len() == REGISTERS && rest.iter().all(|&x| x <= MAX_RANK) => {
                Ok(Sketch::Dense(rest.into()))
            }
            _ => Err(bad()),
        }
    }
}

/// A visitor's 64-bit hash from its id's two halves (as [`visitor_halves`] reads them):
/// SplitMix64's finalizer, over both. Stored in sketches, so it must never change.
pub fn visitor_hash(hi: u64, lo: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    mix(hi ^ mix(lo))
}

/// SQL for a `visitor_id`'s two 64-bit halves, `hi, lo` (as `UBIGINT`s), for
/// [`visitor_hash`].
pub fn visitor_halves(col: &str) -> String {
    format!(
        "CAST(CAST({col} AS UHUGEINT) >> 64 AS UBIGINT) AS hi, \
         CAST(CAST({col} AS UHUGEINT) & 18446744073709551615::UHUGEINT AS UBIGINT) AS lo"
    )
}

/// Set register `h`'s top bits pick to at least the rank of the rest.
fn add(r: &mut [u8], h: u64) {
    let j = (h >> (64 - PRECISION)) as usize;
    let rank = ((h << PRECISION).leading_zeros().min(64 - PRECISION) + 1) as u8;
    if r[j] < rank {
        r[j] = rank;
    }
}

/// Ertl's improved raw estimator ("New cardinality estimation algorithms for HyperLogLog
/// sketches", 2017, algorithm 6): unbiased enough over the whole range that neither linear
/// counting nor bias tables are needed.
fn estimate(r: &[u8]) -> u64 {
    let m = REGISTERS as f64;
    let q = usize::from(MAX_RANK) - 1;
    let mut c = vec![0f64; q + 2];
    for &x in r {
        c[usize::from(x)] += 1.0;
    }
    let mut z = m * tau(1.0 - c[q + 1] / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + c[k]);
    }
    z += m * sigma(c[0] / m);
    let alpha = 1.0 / (2.0 * std::f64::consts::LN_2);
    (alpha * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

/// The UTC instants at which `day` begins and ends in `tz` ([`day_start_utc`]).
fn day_bounds(tz: Tz, day: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
    (
        day_start_utc(tz, day),
        day_start_utc(tz, day + Duration::days(1)),
    )
}

/// The UTC instant of local midnight at the start of `day` in `tz`. A midnight that does not
/// exist (a DST gap) is taken an hour later.
pub fn day_start_utc(tz: Tz, day: NaiveDate) -> NaiveDateTime {
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    let local = tz.from_local_datetime(&midnight).earliest().or_else(|| {
        tz.from_local_datetime(&(midnight + Duration::hours(1)))
            .earliest()
    });
    match local {
        Some(t) => t.naive_utc(),
        None => midnight,
    }
}

/// Create the tables if missing.
pub(super) fn create(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(DDL)?;
    conn.execute_batch(super::breakdowns::DDL)?;
    conn.execute_batch(super::latencies::DDL)?;
    Ok(())
}

/// The tables with rows per day, which `page_sketch_days` says are built.
const PER_DAY: [&str; 3] = ["page_sketches", "breakdown_sketches", "api_latencies"];

/// Forget every built day (a store from before version 7 has no breakdown sketches, one from
/// before version 8 no API latencies): the writer builds them all again.
pub(super) fn rebuild_all(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("DELETE FROM page_sketch_days")?;
    for table in PER_DAY {
        conn.execute_batch(&format!("DELETE FROM {table}"))?;
    }
    Ok(())
}

/// The last day of `tz` whose sketches may be built at `now` (UTC): yesterday from 01:00 local
/// time on, the day before yesterday until then. By then the writer has committed and folded
/// the day's events (it is seconds behind the proxy at most); an event of the day that comes
/// later still (a stalled writer, an import) drops the day when it is folded, as any late
/// event does, and it is built again.
pub fn last_day(tz: Tz, now: NaiveDateTime) -> NaiveDate {
    let local = tz.from_utc_datetime(&now);
    let settled = local.time() >= chrono::NaiveTime::from_hms_opt(1, 0, 0).expect("01:00");
    local.date_naive() - Duration::days(if settled { 1 } else { 2 })
}

/// The days of `tz` up to `last` that have page views folded into `pageview_hours` but no
/// sketches, latest first, with their page views (an hour that straddles two local days
/// counts in both: an upper bound). Bots' count too: a page view flagged as a bot's in a
/// session that is not counts in the audience breakdown.
pub(super) fn missing_days(
    conn: &Connection,
    tz: Tz,
    last: NaiveDate,
) -> Result<Vec<(NaiveDate, i64)>, StoreError> {
    let mut days: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT CAST(hour_utc AS VARCHAR), sum(pageviews)::BIGINT FROM pageview_hours \
         GROUP BY hour_utc",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (hour, views) = row?;
        let hour = NaiveDateTime::parse_from_str(&hour, "%Y-%m-%d %H:%M:%S")
            .map_err(|e| StoreError::Malformed(format!("pageview_hours: {e}")))?;
        // An hour can straddle two local days (zones with half-hour offsets).
        let days_of =
            [hour, hour + Duration::minutes(59)].map(|t| tz.from_utc_datetime(&t).date_naive());
        for (i, day) in days_of.into_iter().enumerate() {
            if day <= last && (i == 0 || day != days_of[0]) {
                *days.entry(day).or_default() += views;
            }
        }
    }
    let mut stmt =
        conn.prepare("SELECT CAST(day AS VARCHAR) FROM page_sketch_days WHERE tz = ?")?;
    for day in stmt.query_map([tz.name()], |r| r.get::<_, String>(0))? {
        if let Ok(d) = NaiveDate::parse_from_str(&day?, "%Y-%m-%d") {
            days.remove(&d);
        }
    }
    Ok(days.into_iter().rev().collect())
}

/// What building `day` in `tz` costs, in page views: its `views`, and its API calls at a
/// quarter of one (a build takes about 4 µs a page view and 1.1 µs a call).
pub(super) fn work(
    conn: &Connection,
    tz: Tz,
    day: NaiveDate,
    views: i64,
) -> Result<i64, StoreError> {
    let (start, end) = day_bounds(tz, day);
    let calls = super::latencies::calls_between(conn, start, end)?;
    Ok(views + calls / 4)
}

/// Build the sketches of `day` in `tz` from its stored page views (bots left out), replacing
/// any, in the caller's transaction. Returns the number of pages.
pub(super) fn build_day(conn: &Connection, tz: Tz, day: NaiveDate) -> Result<usize, StoreError> {
    let started = std::time::Instant::now();
    let (start, end) = day_bounds(tz, day);
    let (start_s, end_s, day_s) = (ts_text(start), ts_text(end), day.to_string());
    let views = format!(
        "SELECT {PATH}, {VISITOR_ID} FROM events \
         WHERE {TS} >= CAST(?1 AS TIMESTAMP) AND {TS} < CAST(?2 AS TIMESTAMP) \
         AND {NAME} = '{PAGE_VIEW}' AND is_bot IS NOT TRUE"
    );
    let pages = views_by_path(conn, &views, params![start_s, end_s])?;
    drop_day(conn, tz, &day_s)?;
    // An appender: a prepared INSERT a page took 0.6 ms each (2 s a day of 2,800 pages).
    let date = Value::Date32((day - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days() as i32);
    let mut app = conn.appender("page_sketches")?;
    let n = pages.len();
    for (path, (views, hashes)) in pages {
        app.append_row(params![
            tz.name(),
            date.clone(),
            path,
            views,
            Sketch::of(hashes).encode()
        ])?;
    }
    app.flush()?;
    drop(app);
    let breakdowns = super::breakdowns::build_day(conn, tz.name(), &date, start, end)?;
    let api = super::latencies::build_day(conn, tz.name(), &date, start, end)?;
    conn.execute(
        "INSERT INTO page_sketch_days VALUES (?, CAST(? AS DATE), CAST(? AS TIMESTAMP), \
         CAST(? AS TIMESTAMP))",
        params![tz.name(), day_s, start_s, end_s],
    )?;
    debug!(%day, pages = n, breakdowns, api, ms = started.elapsed().as_millis() as u64, "Page sketches built.");
    Ok(n)
}

/// Per path, its page views and its visitors' hashes ([`visitor_hash`]; a view without a
/// visitor counts as a page view only).
pub type PathViews = HashMap<Option<String>, (i64, Vec<u64>)>;

/// [`PathViews`] of the page views (`path, visitor_id`) that the query `views` selects, with
/// `params` bound, in one pass: the building of a day, and the days a report counts from the
/// events.
pub fn views_by_path(
    conn: &Connection,
    views: &str,
    params: impl duckdb::Params,
) -> Result<PathViews, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT path, {}, count(*) AS n FROM ({views}) GROUP BY ALL",
        visitor_halves(VISITOR_ID)
    ))?;
    let mut pages = PathViews::new();
    for batch in stmt.query_arrow(params)? {
        let (Some(path), Some(hi), Some(lo), Some(n)) = (
            batch.column(0).as_any().downcast_ref::<StringArray>(),
            batch.column(1).as_any().downcast_ref::<UInt64Array>(),
            batch.column(2).as_any().downcast_ref::<UInt64Array>(),
            batch.column(3).as_any().downcast_ref::<Int64Array>(),
        ) else {
            return Err(StoreError::Malformed(
                "page views by path: unexpected column types".into(),
            ));
        };
        for i in 0..batch.num_rows() {
            let p = (!path.is_null(i)).then(|| path.value(i).to_string());
            let (views, hashes) = pages.entry(p).or_default();
            *views += n.value(i);
            if !hi.is_null(i) {
                hashes.push(visitor_hash(hi.value(i), lo.value(i)));
            }
        }
    }
    Ok(pages)
}

/// Delete the sketches of `day` in `tz`, and any of another zone (`site.timezone` changed:
/// the reports read only the current zone's).
fn drop_day(conn: &Connection, tz: Tz, day: &str) -> Result<(), StoreError> {
    for table in std::iter::once("page_sketch_days").chain(PER_DAY) {
        conn.execute(
            &format!("DELETE FROM {table} WHERE tz <> ?1 OR day = CAST(?2 AS DATE) AND tz = ?1"),
            params![tz.name(), day],
        )?;
    }
    Ok(())
}

pub(super) fn ts_text(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Drop the sketches of the days that the page views and API calls with `seq` in
/// `(after, through]` change (a late event), in the caller's transaction, after `sessions` has
/// them and before the fold moves the watermark past them:
/// - the days their hours overlap (an hour that straddles two local days drops both; bots'
///   too, see [`missing_days`]);
/// - the days the page views' sessions span: a page view before a session's first one changes
///   the values every page view of the session counts under (breakdown sketches), and the day
///   the session begins.
///
/// Only an event older than the end of the latest built day can change one (a page view's
/// session then begins at it or later, after every built day), so that is checked first, on
/// the batch alone (a range of `seq`, which zonemaps find): for the events of the present, a
/// fold costs two small queries here.
pub(super) fn fold(conn: &Connection, after: i64, through: i64) -> Result<(), StoreError> {
    let end: Option<String> = conn.query_row(
        "SELECT CAST(max(end_utc) AS VARCHAR) FROM page_sketch_days",
        [],
        |r| r.get(0),
    )?;
    let Some(end) = end else {
        return Ok(());
    };
    let late = format!(
        "{SEQ} > {after} AND {SEQ} <= {through} AND {NAME} IN ('{PAGE_VIEW}', '{API_CALL}') \
         AND {TS} < CAST('{end}' AS TIMESTAMP)"
    );
    let any: bool = conn.query_row(
        &format!("SELECT EXISTS (SELECT 1 FROM events WHERE {late})"),
        [],
        |r| r.get(0),
    )?;
    if !any {
        return Ok(());
    }
    drop_days(
        conn,
        &format!(
            "EXISTS (SELECT 1 FROM (SELECT DISTINCT date_trunc('hour', {TS}) AS h FROM events \
             WHERE {late}) v \
             WHERE d.end_utc > v.h AND d.start_utc < v.h + INTERVAL 1 HOUR)"
        ),
    )?;
    drop_days(
        conn,
        &spans(&format!(
            "SELECT {SESSION_ID} FROM events WHERE {late} AND {NAME} = '{PAGE_VIEW}' \
             AND {SESSION_ID} IS NOT NULL LIMIT {}",
            through - after
        )),
    )
}

/// Drop the sketches of the days of the page views about to be deleted (forget, retention):
/// the hours `rollups::mark` noted in `hours_marked`, which it must have run first.
pub(super) fn mark(conn: &Connection) -> Result<(), StoreError> {
    drop_hours(conn, "hours_marked")
}

/// Drop the sketches of every built day that an hour (`hour_utc`) of the table `hours`
/// overlaps.
pub(super) fn drop_hours(conn: &Connection, hours: &str) -> Result<(), StoreError> {
    drop_days(
        conn,
        &format!(
            "EXISTS (SELECT 1 FROM {hours} v \
             WHERE d.end_utc > v.hour_utc AND d.start_utc < v.hour_utc + INTERVAL 1 HOUR)"
        ),
    )
}

/// Drop the sketches of every day that the sessions in `session_marked` span (about to be
/// rebuilt from what a deletion leaves: a session that loses its first page view begins
/// later, with other values).
pub(super) fn mark_sessions(conn: &Connection) -> Result<(), StoreError> {
    drop_days(conn, &spans("SELECT session_id FROM session_marked"))
}

/// A condition on a day `d`: it overlaps a session among those whose ids `ids` selects.
fn spans(ids: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM sessions s WHERE s.{SESSION_ID} IN ({ids}) \
         AND d.end_utc > s.first_ts AND d.start_utc <= s.last_ts)"
    )
}

/// Drop every built day `d` (of any zone) that `cond` holds for, and its sketches.
fn drop_days(conn: &Connection, cond: &str) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(&format!(
        "DELETE FROM page_sketch_days d WHERE {cond} RETURNING tz, CAST(day AS VARCHAR)"
    ))?;
    let dropped = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (tz, day) in dropped {
        for table in PER_DAY {
            conn.execute(
                &format!("DELETE FROM {table} WHERE tz = ? AND day = CAST(? AS DATE)"),
                params![tz, day],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct, well-spread hashes, the same every run.
    fn hashes(from: u64, n: u64) -> Vec<u64> {
        (from..from + n).map(|i| visitor_hash(i, !i)).collect()
    }

    #[test]
    fn small_sets_are_exact_and_merge_exactly() {
        let mut a = Sketch::of(hashes(0, 1500));
        assert_eq!(a.count(), 1500);
        assert!(!a.is_estimate());
        // 1,000 shared, 500 new: still under EXACT_MAX.
        a.merge(&Sketch::of(hashes(500, 1500)));
        assert_eq!(a.count(), 2000);
        assert!(!a.is_estimate());
        // Past EXACT_MAX it becomes an estimate.
        a.merge(&Sketch::of(hashes(2000, 100)));
        assert!(a.is_estimate());
        let n = a.count() as f64;
        assert!((n - 2100.0).abs() / 2100.0 < 0.03, "{n}");
    }

    #[test]
    fn estimates_stay_within_three_percent_across_the_range() {
        for n in [3_000u64, 20_000, 45_000, 80_000, 300_000, 2_000_000] {
            let s = Sketch::of(hashes(7, n));
            assert!(s.is_estimate());
            let e = s.count() as f64;
            let err = (e - n as f64).abs() / n as f64;
            assert!(err < 0.03, "n = {n}: estimate {e}, error {err}");
        }
    }

    #[test]
    fn merging_is_a_union_whatever_the_order_and_forms() {
        let large = vec![hashes(0, 40_000), hashes(30_000, 20_000), hashes(100, 50)];
        // Small sets that overlap: an exact union; and one that grows past EXACT_MAX.
        let small = vec![hashes(0, 1_000), hashes(500, 1_000), hashes(1_400, 100)];
        let growing = vec![hashes(0, 1_500), hashes(1_000, 1_500)];
        for parts in [large, small, growing] {
            let whole = Sketch::of(parts.concat());
            let mut forward = Sketch::default();
            for p in &parts {
                forward.merge(&Sketch::of(p.clone()));
            }
            let mut backward = Sketch::default();
            for p in parts.iter().rev() {
                backward.merge(&Sketch::of(p.clone()));
            }
            assert_eq!(forward, whole);
            assert_eq!(backward, whole);
        }
        assert_eq!(Sketch::of(hashes(0, 1_000)).count(), 1_000);
        let mut u = Sketch::of(hashes(0, 1_000));
        u.merge(&Sketch::of(hashes(500, 1_000)));
        assert_eq!(u, Sketch::of(hashes(0, 1_500)));
    }

    /// Stored sketches hold hashes of `visitor_halves`: the UUID as the 128-bit number its
    /// bytes spell. If a DuckDB upgrade cast UUIDs to numbers otherwise, new hashes would
    /// not match stored ones and every visitor would count twice: this fails first.
    #[test]
    fn visitor_halves_are_the_uuid_as_a_number() {
        let conn = Connection::open_in_memory().unwrap();
        for id in [
            "0123456789abcdef fedcba9876543210",
            "ffffffffffffffff 0000000000000001",
            "8000000000000000 8000000000000000",
        ] {
            let (hi, lo) = id.split_once(' ').unwrap();
            let uuid = uuid::Uuid::parse_str(&format!("{hi}{lo}")).unwrap();
            let got: (u64, u64) = conn
                .query_row(
                    &format!("SELECT {} FROM (SELECT ?::UUID AS v)", visitor_halves("v")),
                    [uuid.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let want = uuid.as_u64_pair();
            assert_eq!(got, want, "{uuid}");
        }
    }

    /// Yesterday may be built from 01:00 local time on, the day before yesterday until then,
    /// in the site's zone.
    #[test]
    fn yesterday_is_over_at_one_in_the_morning_local_time() {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        for (tz, now, last) in [
            (Tz::UTC, "2026-03-10 00:59", "2026-03-08"),
            (Tz::UTC, "2026-03-10 01:00", "2026-03-09"),
            (Tz::UTC, "2026-03-10 23:59", "2026-03-09"),
            // 19:29 and 19:30 UTC are 00:59 and 01:00 of the next day in India (+5:30).
            (kolkata, "2026-03-10 19:29", "2026-03-09"),
            (kolkata, "2026-03-10 19:30", "2026-03-10"),
        ] {
            assert_eq!(last_day(tz, at(now)), day(last), "{tz} {now}");
        }
    }

    /// Under load the writer builds only days that cost at most so much (page views, and API
    /// calls at a quarter of one): the larger wait, and the smaller ones are built meanwhile.
    #[test]
    fn a_day_that_costs_more_than_allowed_waits() {
        use crate::event::{Event, Source};
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::store::Store::open(dir.path()).unwrap();
        let day = 86_400_000_000;
        let start = (crate::event::now_us() / day - 5) * day;
        // Five page views five days ago (work 5); two four days ago, with sixteen API calls
        // (work 2 + 4); both over, UTC.
        let mut events: Vec<Event> = [0, 1, 2, 3, 4, day, day + 1]
            .into_iter()
            .map(|t| {
                let mut e = Event::now("page_view", "s", Source::Proxy);
                e.ts_us = start + 3_600_000_000 + t;
                e.path = Some("/".into());
                e
            })
            .collect();
        for t in 0..16 {
            let mut e = Event::now("api_call", "s", Source::Proxy);
            e.ts_us = start + day + 7_200_000_000 + t;
            events.push(e);
        }
        store.append(1, &events).unwrap();
        let tz = Tz::UTC;
        let day_of = |t: i64| {
            chrono::DateTime::from_timestamp_micros(t)
                .unwrap()
                .date_naive()
        };
        // The latest day that costs little enough; then none does.
        assert_eq!(
            store.sketch_a_day(tz, Some(5)).unwrap(),
            Some(day_of(start))
        );
        assert_eq!(store.sketch_a_day(tz, Some(5)).unwrap(), None);
        assert_eq!(
            store.sketch_a_day(tz, Some(6)).unwrap(),
            Some(day_of(start + day))
        );
        assert_eq!(store.sketch_a_day(tz, None).unwrap(), None);
    }

    #[test]
    fn sketches_round_trip_and_bad_bytes_are_refused() {
        for s in [
            Sketch::of(hashes(0, 10)),
            Sketch::of(hashes(0, 10_000)),
            Sketch::default(),
        ] {
            assert_eq!(Sketch::decode(&s.encode()).unwrap(), s);
        }
        assert!(Sketch::decode(&[]).is_err());
        assert!(Sketch::decode(&[2, 0]).is_err());
        assert!(Sketch::decode(&[0, 1, 2]).is_err());
        let mut dense = Sketch::of(hashes(0, 10_000)).encode();
        dense[5] = 200;
        assert!(Sketch::decode(&dense).is_err());
    }
}
