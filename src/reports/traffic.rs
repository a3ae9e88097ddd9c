//! Traffic reports over page views: overview, pages, acquisition, audience and realtime.
//!
//! Definitions (also in `docs/api.md`): a page view is an event named `page_view`; visitors
//! and sessions are distinct `visitor_id`s and `session_id`s among the page views; a session
//! bounces when it has exactly one page view; its duration is last minus first page view; its
//! source (channel, referrer, campaign) is its first page view's.

use super::filter::{session_dimensions, ts_value, Filters, Part, Sql};
use super::{num, query, ratio, round4, rows, table, CountRow, CountsRow, ReportError, Table};
use crate::store::{Measure, FOLDED_THROUGH};
use chrono::{Duration, NaiveDateTime};
use duckdb::Connection;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashMap};

/// `overview`'s own parameters.
#[derive(Debug, Deserialize)]
pub struct OverviewParams {
    /// `None` picks hours for ranges of 2 days or less.
    pub interval: Option<Interval>,
}

/// `interval`: `hour` or `day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    fn parse(v: &str) -> Result<Interval, ReportError> {
        match v {
            "hour" => Ok(Interval::Hour),
            "day" => Ok(Interval::Day),
            _ => Err(ReportError::Invalid(format!(
                "interval={v:?}: expected hour or day"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        query::parsed(d, Interval::parse)
    }
}

/// `acquisition`'s own parameter.
#[derive(Debug, Deserialize)]
pub struct AcquisitionParams {
    /// The session dimensions asked for, in [`session_dimensions`]' order: `dimension=` may
    /// come more than once, each a comma-separated list or `all`; default `channel`.
    #[serde(default = "channel", deserialize_with = "dimensions")]
    pub dimension: Vec<&'static str>,
}

fn channel() -> Vec<&'static str> {
    vec!["channel"]
}

fn dimensions<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    let all = session_dimensions();
    let mut cols: Vec<&'static str> = Vec::new();
    for list in Vec::<String>::deserialize(d)? {
        for d in list.split(',').map(str::trim) {
            match d {
                "all" => cols.extend(&all),
                _ => match all.iter().find(|c| **c == d) {
                    Some(c) => cols.push(c),
                    None => {
                        return Err(serde::de::Error::custom(format!(
                            "dimension={d:?}: expected all or one of {}",
                            all.join(", ")
                        )))
                    }
                },
            }
        }
    }
    cols.sort_by_key(|c| all.iter().position(|a| a == c));
    cols.dedup();
    Ok(cols)
}

/// `overview`'s answer.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// `hour` or `day`.
    pub interval: &'static str,
    pub totals: OverviewTotals,
    /// `t, visitors, sessions, pageviews` for every bucket of the range, zero-filled.
    pub series: Table<SeriesRow>,
}

/// A bucket of the overview's series: its label, visitors, sessions and page views.
#[derive(Debug, Serialize)]
pub struct SeriesRow(pub String, pub i64, pub i64, pub i64);

#[derive(Debug, Serialize)]
pub struct OverviewTotals {
    pub visitors: u64,
    pub sessions: u64,
    pub pageviews: u64,
    pub views_per_session: f64,
    pub bounce_rate: f64,
    pub avg_session_seconds: f64,
}

/// `pages`' answer.
#[derive(Debug, Serialize)]
pub struct Pages {
    /// `path, visitors, pageviews`.
    pub top: Table<CountsRow>,
    /// `path, sessions`: the first page of each session.
    pub entry: Table<CountRow>,
    /// `path, sessions`: the last page of each session.
    pub exit: Table<CountRow>,
}

/// `acquisition`'s and `audience`'s answer: a table a dimension.
#[derive(Debug, Serialize)]
pub struct Tables {
    pub tables: BTreeMap<String, Table<CountsRow>>,
}

/// `realtime`'s answer.
#[derive(Debug, Serialize)]
pub struct Realtime {
    pub visitors: u64,
    pub pageviews: u64,
    /// `path, visitors`.
    pub pages: Table<CountRow>,
}

/// Page views matching the filters, with the columns the traffic reports use.
fn page_views(f: &Filters) -> Sql {
    f.base("ts, visitor_id, session_id, path", Some("page_view"))
}

pub fn overview(
    conn: &Connection,
    f: &Filters,
    interval: Option<Interval>,
) -> Result<Overview, ReportError> {
    let hourly = match interval {
        Some(i) => i == Interval::Hour,
        None => (f.to - f.from).num_days() < 2,
    };
    if hourly && (f.to - f.from).num_days() > 92 {
        return Err(ReportError::Invalid(
            "interval=hour covers at most 93 days; use interval=day".into(),
        ));
    }
    let (trunc, fmt) = if hourly {
        ("hour", "%Y-%m-%d %H:00")
    } else {
        ("day", "%Y-%m-%d")
    };
    let sql = if f.by_visit() {
        overview_by_sessions(f, trunc)
    } else {
        overview_sql(f, trunc)
    };
    let mut all = rows(conn, &sql)?;
    let at = all.iter().position(|r| r[0].is_null()).unwrap_or(0);
    let t = all.swap_remove(at);
    let (sessions, pageviews, bounces, duration) = (num(&t[2]), num(&t[3]), num(&t[4]), num(&t[5]));
    let found = all
        .into_iter()
        .filter_map(|r| {
            let t = NaiveDateTime::parse_from_str(r[0].as_str()?, "%Y-%m-%d %H:%M:%S%.f").ok()?;
            let counts = [num(&r[1]) as i64, num(&r[2]) as i64, num(&r[3]) as i64];
            Some((t.format(fmt).to_string(), counts))
        })
        .collect();
    Ok(Overview {
        interval: trunc,
        totals: OverviewTotals {
            visitors: num(&t[1]) as u64,
            sessions: sessions as u64,
            pageviews: pageviews as u64,
            views_per_session: ratio(pageviews, sessions),
            bounce_rate: ratio(bounces, sessions),
            avg_session_seconds: round4(duration),
        },
        series: Table {
            dimension: None,
            columns: ["t", "visitors", "sessions", "pageviews"]
                .map(Into::into)
                .to_vec(),
            rows: zero_filled(f, hourly, fmt, &found),
            estimated: Vec::new(),
        },
    })
}

/// `overview`'s query: a row of totals (`NULL, visitors, sessions, pageviews, bounces,
/// average session seconds`), then a row a bucket (`t, visitors, sessions, pageviews`) for
/// the buckets that have page views. `trunc` is the bucket, `hour` or `day`.
fn overview_sql(f: &Filters, trunc: &str) -> Sql {
    // One pass over the page views, to (bucket, session, visitor) groups; the totals and the
    // series are then computed from those, which are far fewer.
    let mut sql = Sql::default();
    sql.push(&format!(
        "WITH g AS MATERIALIZED (SELECT date_trunc('{trunc}', {local}) AS t, session_id, \
           visitor_id, count(*) AS n, min(ts) AS a, max(ts) AS b FROM (",
        local = f.local("ts", Duration::zero())
    ))
    .append(&page_views(f))
    .push(
        ") GROUP BY ALL), \
         s AS (SELECT sum(n) AS n, epoch_us(max(b)) - epoch_us(min(a)) AS us FROM g \
           WHERE session_id IS NOT NULL GROUP BY session_id) \
         SELECT NULL, (SELECT count(DISTINCT visitor_id) FROM g), (SELECT count(*) FROM s), \
           (SELECT coalesce(sum(n), 0) FROM g), (SELECT count(*) FILTER (n = 1) FROM s), \
           (SELECT coalesce(avg(us), 0) / 1e6 FROM s) \
         UNION ALL \
         SELECT t, count(DISTINCT visitor_id), count(DISTINCT session_id), sum(n), NULL, NULL \
           FROM g GROUP BY t",
    );
    sql
}

/// [`overview_sql`]'s answer with sessions from the `sessions` table (one row per session
/// instead of every page view), when the filters allow ([`Filters::by_visit`]). A session,
/// its visitor, bounce and duration count in the bucket of its first page view; page views in
/// the bucket they happened in. Visitors of page views without a session (opt-out requests
/// have neither) count where those happened.
fn overview_by_sessions(f: &Filters, trunc: &str) -> Sql {
    // No materialized sessions: each use scans `sessions` again, which is cheap, and the
    // distinct counts run as DISTINCT aggregates, which spill to disk under
    // `store.memory_limit` (100M events: 9M visitors) where a materialized CTE could not.
    let mut sql = Sql::default();
    sql.push(&format!(
        "WITH s AS (SELECT date_trunc('{trunc}', {local}) AS t, visitor_id, \
           pageviews, epoch_us(last_ts) - epoch_us(first_ts) AS us FROM (",
        local = f.local("first_ts", Duration::zero())
    ))
    .append(&f.sessions("first_ts, last_ts, visitor_id, pageviews"))
    .push(")), p AS MATERIALIZED (");
    page_view_buckets(&mut sql, f, trunc);
    sql.push(
        "), \
         v AS (SELECT t, visitor_id FROM s WHERE visitor_id IS NOT NULL \
           UNION ALL SELECT t, visitor_id FROM p WHERE visitor_id IS NOT NULL) \
         SELECT NULL, (SELECT count(*) FROM (SELECT DISTINCT visitor_id FROM v)), \
           (SELECT count(*) FROM s), (SELECT coalesce(sum(n), 0) FROM p), \
           (SELECT count(*) FILTER (pageviews = 1) FROM s), \
           (SELECT coalesce(avg(us), 0) / 1e6 FROM s) \
         UNION ALL \
         SELECT t, sum(a), sum(b), sum(c), NULL, NULL FROM ( \
           SELECT t, count(*) AS a, 0 AS b, 0 AS c FROM (SELECT DISTINCT t, visitor_id FROM v) \
             GROUP BY t \
           UNION ALL SELECT t, 0, count(*), 0 FROM s GROUP BY t \
           UNION ALL SELECT t, 0, 0, sum(n) FROM p GROUP BY t) \
         GROUP BY t",
    );
    sql
}

/// `p`, the page views per bucket for [`overview_by_sessions`]: `t, visitor_id, n`, with
/// `visitor_id` only for page views without a session (whose visitors count where they
/// happened). Without filters, and when the site's UTC offsets are whole hours, the counts come
/// from `pageview_hours` (a row per hour), plus the page views not folded into it yet (past the
/// watermark: under load, up to a second of them); else from the page views themselves.
fn page_view_buckets(sql: &mut Sql, f: &Filters, trunc: &str) {
    let local_ts = f.local("ts", Duration::zero());
    if f.dims.is_empty() && f.props.is_empty() && f.tz.whole_hours(f.start, f.end) {
        sql.push(&format!(
            "SELECT date_trunc('{trunc}', {local}) AS t, CAST(NULL AS UUID) AS visitor_id, \
               sum(pageviews)::BIGINT AS n FROM pageview_hours WHERE hour_utc >= ",
            local = f.local("hour_utc", Duration::zero())
        ))
        .bind(ts_value(f.start))
        .push(" AND hour_utc < ")
        .bind(ts_value(f.end));
        if !f.bots {
            sql.push(" AND NOT is_bot");
        }
        sql.push(&format!(
            " GROUP BY t UNION ALL SELECT date_trunc('{trunc}', {local_ts}) AS t, \
               CAST(NULL AS UUID), count(*) FROM ("
        ))
        .append(&page_views(f))
        .push(&format!(
            " AND seq > {FOLDED_THROUGH}) GROUP BY t \
             UNION ALL SELECT date_trunc('{trunc}', {local_ts}) AS t, visitor_id, 0 FROM ("
        ))
        .append(&page_views(f))
        .push(" AND session_id IS NULL AND visitor_id IS NOT NULL) GROUP BY ALL");
    } else {
        sql.push(&format!(
            "SELECT date_trunc('{trunc}', {local_ts}) AS t, \
               CASE WHEN session_id IS NULL THEN visitor_id END AS visitor_id, count(*) AS n \
             FROM ("
        ))
        .append(&page_views(f))
        .push(") GROUP BY ALL");
    }
}

/// Every bucket of the range (each hour, or each day) as `t, visitors, sessions, pageviews`:
/// the counts `found` for its key (formatted with `fmt`), or zeros.
fn zero_filled(
    f: &Filters,
    hourly: bool,
    fmt: &str,
    found: &HashMap<String, [i64; 3]>,
) -> Vec<SeriesRow> {
    let mut series = Vec::new();
    let mut day = f.from;
    while day <= f.to {
        for h in 0..if hourly { 24 } else { 1 } {
            let key = day
                .and_hms_opt(h, 0, 0)
                .unwrap_or_default()
                .format(fmt)
                .to_string();
            let [visitors, sessions, pageviews] = found.get(&key).copied().unwrap_or_default();
            series.push(SeriesRow(key, visitors, sessions, pageviews));
        }
        day += Duration::days(1);
    }
    series
}

pub fn pages(conn: &Connection, f: &Filters) -> Result<Pages, ReportError> {
    let columns = ["path", "visitors", "pageviews"];
    let sketched = if f.sketchable() {
        super::sketched::top_pages(conn, f)?
    } else {
        None
    };
    let top = match sketched {
        Some((rows, estimated)) => Table {
            dimension: Some("path".into()),
            columns: columns.iter().map(|c| (*c).to_string()).collect(),
            rows,
            estimated: estimated_visitors(estimated),
        },
        None if f.dims.is_empty() && f.props.is_empty() => {
            table(conn, &top_pages_of_many(f), Some("path"), &columns)?
        }
        None => table(conn, &top_pages_of_few(f), Some("path"), &columns)?,
    };
    // Entry and exit pages in one pass over the sessions: the `sessions` table when the
    // filters allow, else the sessions of the matching page views.
    let mut ends = Sql::default();
    ends.push("SELECT grouping(entry, exit) AS g, entry, exit, count(*) AS sessions FROM (");
    if f.by_visit() {
        ends.append(&f.sessions("entry_path AS entry, exit_path AS exit"));
    } else {
        ends.push("SELECT arg_min_null(path, ts) AS entry, arg_max_null(path, ts) AS exit FROM (")
            .append(&page_views(f))
            .push(") WHERE session_id IS NOT NULL GROUP BY session_id");
    }
    ends.push(") GROUP BY GROUPING SETS ((entry), (exit))");
    let (mut entry, mut exit) = (Vec::new(), Vec::new());
    let ends = super::typed_rows::<(i64, Option<String>, Option<String>, i64)>(conn, &ends)?;
    for (g, entry_path, exit_path, sessions) in ends {
        // grouping() is 1 for the column that is not grouped: 1 = by entry, 2 = by exit.
        match g {
            1 => entry.push(CountRow(entry_path, sessions)),
            2 => exit.push(CountRow(exit_path, sessions)),
            _ => {}
        }
    }
    let sorted = |mut rows: Vec<CountRow>| {
        rows.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| null_last(a.0.as_deref(), b.0.as_deref()))
        });
        rows.truncate(f.limit);
        Table {
            dimension: Some("path".into()),
            columns: vec!["path".into(), "sessions".into()],
            rows,
            estimated: Vec::new(),
        }
    };
    Ok(Pages {
        top,
        entry: sorted(entry),
        exit: sorted(exit),
    })
}

/// Top pages in one pass: page views and distinct visitors for every path (distinct pairs
/// first, which spills to disk under `store.memory_limit` where `count(DISTINCT …)` per group
/// could not on 100M events). For filtered page views, which are few.
fn top_pages_of_few(f: &Filters) -> Sql {
    let mut top = Sql::default();
    top.push(
        "SELECT path, count(visitor_id) AS visitors, sum(n)::BIGINT AS pageviews FROM ( \
           SELECT path, visitor_id, count(*) AS n FROM (",
    )
    .append(&page_views(f))
    .push(&format!(
        ") GROUP BY path, visitor_id) \
         GROUP BY path ORDER BY pageviews DESC, visitors DESC, path NULLS LAST LIMIT {}",
        f.limit
    ));
    top
}

/// Top pages in two passes, for every page view of the range. Page views per path are cheap
/// to count; distinct visitors are not (a hash of each (path, visitor) pair: ~4M on 10M
/// events). Visitors only order paths whose page view counts tie, so the second pass counts
/// them only for the paths that can make the cut: every path with at least as many page
/// views as the `limit`-th. The same answer as [`top_pages_of_few`]'s, in less time and
/// memory when there are many pages (`BENCHMARKS.md`), though in more for few page views.
fn top_pages_of_many(f: &Filters) -> Sql {
    let mut top = Sql::default();
    top.push("WITH counts AS (SELECT path, count(*) AS pageviews FROM (")
        .append(&page_views(f))
        .push(&format!(
            ") GROUP BY path), \
             top AS (SELECT path, pageviews FROM counts WHERE pageviews >= \
               (SELECT min(pageviews) FROM (SELECT pageviews FROM counts \
                 ORDER BY pageviews DESC LIMIT {limit}))) \
             SELECT t.path, count(v.visitor_id) AS visitors, t.pageviews FROM top t \
             LEFT JOIN (SELECT DISTINCT p.path, p.visitor_id FROM (",
            limit = f.limit
        ))
        .append(&page_views(f))
        .push(&format!(
            ") p SEMI JOIN top ON p.path IS NOT DISTINCT FROM top.path) v \
               ON v.path IS NOT DISTINCT FROM t.path \
             GROUP BY t.path, t.pageviews \
             ORDER BY pageviews DESC, visitors DESC, t.path NULLS LAST LIMIT {}",
            f.limit
        ));
    top
}

/// Bytes of visitor bitmaps [`breakdowns`] may hold at once: bounded here, as aggregate
/// states that DuckDB cannot spill to disk. Each of DuckDB's threads builds its own, and a
/// query held up to about [`BITMAP_OVERHEAD`] times their size in bits, so a bitmap of `b`
/// bits is counted as `threads * BITMAP_OVERHEAD * b / 8` bytes.
const BITMAP_BUDGET: u64 = 128 << 20;

/// See [`BITMAP_BUDGET`].
const BITMAP_OVERHEAD: u64 = 4;

/// The fewest columns [`breakdowns`] counts with bitmaps: numbering the visitors costs about
/// what one column's distinct count does, so bitmaps gain only over several columns
/// (`BENCHMARKS.md`).
const BITMAP_COLUMNS: usize = 5;

/// A table per column of `from` (a subquery with `visitor_id` and `cols`): its distinct
/// visitors and `measure` (name and aggregate) per value, each sorted by `measure`, then
/// visitors (both descending), then value, and cut to the limit.
///
/// Distinct visitors are what costs: DuckDB hashes every (value, visitor) pair of every column
/// (about 0.1 s a column over the 1.25M sessions of a 10M-event store). For many columns the
/// visitors are numbered 1..n once for the query instead, and each value gets a bitmap of them
/// (`bitstring_agg`), which sets a bit per row: the same exact count, in about two fifths of
/// the time. A bitmap has a bit per row of `from`, so the columns with the fewest values get
/// bitmaps as long as they fit in [`BITMAP_BUDGET`]; the others are counted as before.
fn breakdowns(
    conn: &Connection,
    from: &Sql,
    cols: &[&str],
    measure: (&str, &str),
    limit: usize,
) -> Result<BTreeMap<String, Table<CountsRow>>, ReportError> {
    let budget = if cols.len() >= BITMAP_COLUMNS {
        BITMAP_BUDGET
    } else {
        0
    };
    breakdowns_within(conn, from, cols, measure, limit, budget)
}

/// [`breakdowns`] with bitmaps of at most `budget` bytes in all.
fn breakdowns_within(
    conn: &Connection,
    from: &Sql,
    cols: &[&str],
    measure: (&str, &str),
    limit: usize,
    budget: u64,
) -> Result<BTreeMap<String, Table<CountsRow>>, ReportError> {
    let bitmap = if budget > 0 {
        bitmap_columns(conn, from, cols, budget)?
    } else {
        None
    };
    let mut tables: Vec<Vec<CountsRow>> = vec![Vec::new(); cols.len()];
    for by_bitmap in [true, false] {
        let which: Vec<usize> = (0..cols.len())
            .filter(|&i| bitmap.as_ref().is_some_and(|(_, b)| b[i]) == by_bitmap)
            .collect();
        if which.is_empty() {
            continue;
        }
        let set: Vec<&str> = which.iter().map(|&i| cols[i]).collect();
        let visitors = match &bitmap {
            Some((bits, _)) if by_bitmap => Visitors::Bitmap(*bits),
            _ => Visitors::Distinct,
        };
        let grouped = match grouping_sets(conn, from, &set, visitors, measure)? {
            Some(grouped) => grouped,
            // Rows came in between the two queries: more visitors than bits.
            None => {
                grouping_sets(conn, from, &set, Visitors::Distinct, measure)?.unwrap_or_default()
            }
        };
        for (j, rows) in grouped.into_iter().enumerate() {
            tables[which[j]] = rows;
        }
    }
    let mut out = BTreeMap::new();
    for (i, mut rows) in tables.into_iter().enumerate() {
        rows.sort_by(|a, b| {
            (b.2, b.1)
                .cmp(&(a.2, a.1))
                .then_with(|| null_last(a.0.as_deref(), b.0.as_deref()))
        });
        rows.truncate(limit);
        let t = Table {
            dimension: Some(cols[i].into()),
            columns: vec![cols[i].into(), "visitors".into(), measure.0.into()],
            rows,
            estimated: Vec::new(),
        };
        out.insert(cols[i].into(), t);
    }
    Ok(out)
}

/// The bits a visitor bitmap needs over `from` (its rows, at least its visitors), and which of
/// `cols` get bitmaps within `budget` bytes (as [`BITMAP_BUDGET`] counts them): those with the
/// fewest values first. None when `from` has no rows.
fn bitmap_columns(
    conn: &Connection,
    from: &Sql,
    cols: &[&str],
    budget: u64,
) -> Result<Option<(u64, Vec<bool>)>, ReportError> {
    let mut sql = Sql::default();
    // Estimates of each column's values are enough for a budget: DuckDB's are within a few
    // percent, and cost two thirds of exact ones.
    sql.push("SELECT current_setting('threads'), count(*)");
    for c in cols {
        sql.push(&format!(", approx_count_distinct({c})"));
    }
    sql.push(" FROM (").append(from).push(")");
    let counts: Vec<u64> = rows(conn, &sql)?
        .pop()
        .unwrap_or_default()
        .iter()
        .map(|v| num(v) as u64)
        .collect();
    let threads = counts.first().copied().unwrap_or(1).max(1);
    let bits = counts.get(1).copied().unwrap_or(0);
    if bits == 0 || bits > i32::MAX as u64 {
        return Ok(None);
    }
    // A quarter more than the estimate, and NULL: a value of its own.
    let values = |i: usize| counts.get(2 + i).map_or(u64::MAX, |v| v + v / 4 + 2);
    let per_value = (bits / 8 + 64).saturating_mul(threads * BITMAP_OVERHEAD);
    let mut order: Vec<usize> = (0..cols.len()).collect();
    order.sort_by_key(|&i| values(i));
    let mut spent = 0u64;
    let mut bitmap = vec![false; cols.len()];
    for i in order {
        let cost = values(i).saturating_mul(per_value);
        if spent.saturating_add(cost) <= budget {
            bitmap[i] = true;
            spent = spent.saturating_add(cost);
        }
    }
    Ok(Some((bits, bitmap)))
}

/// How [`grouping_sets`] counts distinct visitors.
#[derive(Clone, Copy)]
enum Visitors {
    /// `count(DISTINCT visitor_id)`.
    Distinct,
    /// A bitmap of the visitors numbered 1..=n (n at least their number).
    Bitmap(u64),
}

/// One GROUPING SETS query over `from`: for each of `cols`, its values with their visitors
/// and `measure`, unsorted. None if a bitmap was too small: `from` had more visitors than it
/// had rows when they were counted (the statements see the store as each begins).
fn grouping_sets(
    conn: &Connection,
    from: &Sql,
    cols: &[&str],
    visitors: Visitors,
    measure: (&str, &str),
) -> Result<Option<Vec<Vec<CountsRow>>>, ReportError> {
    let list = cols.join(", ");
    let sets = cols
        .iter()
        .map(|c| format!("({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    let (m, name) = (measure.1, measure.0);
    let mut sql = Sql::default();
    // The most visitors the answer may have counted (`top`); 0 where it is not checked.
    let bits = match visitors {
        Visitors::Distinct => {
            sql.push(&format!(
                "SELECT grouping({list}) AS g, {list}, count(DISTINCT visitor_id) AS visitors, \
                 {m} AS {name}, 0 AS top FROM ("
            ))
            .append(from)
            .push(&format!(") GROUP BY GROUPING SETS ({sets})"));
            0
        }
        Visitors::Bitmap(n) => {
            // `top` is how many visitors there are: more than `n` if rows came in after
            // `n` was counted (then those past it are left out, and the answer thrown away).
            sql.push("WITH f AS (").append(from).push(&format!(
                "), k AS (SELECT visitor_id, (row_number() OVER ())::INTEGER AS vk FROM \
                       (SELECT DISTINCT visitor_id FROM f WHERE visitor_id IS NOT NULL)) \
                     SELECT grouping({list}) AS g, {list}, \
                       coalesce(bit_count(bitstring_agg(vk, 1, {n})), 0) AS visitors, \
                       {m} AS {name}, (SELECT count(*) FROM k) AS top \
                     FROM f LEFT JOIN (SELECT * FROM k WHERE vk <= {n}) USING (visitor_id) \
                     GROUP BY GROUPING SETS ({sets})"
            ));
            n
        }
    };
    let n = cols.len();
    let mut tables: Vec<Vec<CountsRow>> = vec![Vec::new(); n];
    for r in rows(conn, &sql)? {
        if num(&r[3 + n]) as u64 > bits {
            return Ok(None);
        }
        let g = r[0].as_u64().unwrap_or(0);
        // grouping() has a 0 bit for the grouped column, the leftmost column highest.
        let Some(i) = (0..n).find(|i| g == ((1u64 << n) - 1) ^ (1 << (n - 1 - i))) else {
            continue;
        };
        // The dimensions grouped here are text columns.
        let value = r[1 + i].as_str().map(str::to_string);
        tables[i].push(CountsRow(
            value,
            num(&r[1 + n]) as i64,
            num(&r[2 + n]) as i64,
        ));
    }
    Ok(Some(tables))
}

/// Order two dimension values as SQL's `ORDER BY v NULLS LAST` does for strings.
pub(super) fn null_last(a: Option<&str>, b: Option<&str>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// Sessions (by their first page view) that match the filters: from the `sessions` table
/// when the filters allow, else built from the page views.
fn filtered_sessions(f: &Filters, cols: &[&str]) -> Sql {
    if f.by_visit() {
        return f.sessions(&format!("visitor_id, {}", cols.join(", ")));
    }
    let mut sql = Sql::default();
    sql.push("SELECT * FROM (");
    f.sessions_sql(&mut sql, cols);
    sql.push(") WHERE true");
    if !f.dims.is_empty() || !f.props.is_empty() {
        sql.push(" AND session_id IN (SELECT session_id FROM (")
            .append(&page_views(f))
            .push("))");
    }
    sql
}

/// Sessions and visitors by where each session came from, a table for each of `cols` (session
/// dimensions, from [`super::defs::Acquisition`]). Each table is a count of distinct visitors
/// over every session, so asking for one at a time keeps the answer fast on large stores.
pub fn acquisition(conn: &Connection, f: &Filters, cols: &[&str]) -> Result<Tables, ReportError> {
    if let Some(tables) = sketched(conn, f, Measure::Sessions, cols)? {
        return Ok(Tables { tables });
    }
    let tables = breakdowns(
        conn,
        &filtered_sessions(f, cols),
        cols,
        ("sessions", "count(*)"),
        f.limit,
    )?;
    Ok(Tables { tables })
}

/// The dimensions `audience` breaks page views down by, one table each, in the dashboard's
/// order (the catalog lists them).
pub const AUDIENCE: [&str; 4] = crate::store::DEVICE_DIMS;

/// `acquisition`'s or `audience`'s tables from the writer's breakdown sketches (`sketched.rs`)
/// when there are no filters and they can answer.
fn sketched(
    conn: &Connection,
    f: &Filters,
    measure: Measure,
    cols: &[&str],
) -> Result<Option<BTreeMap<String, Table<CountsRow>>>, ReportError> {
    if !f.sketchable() {
        return Ok(None);
    }
    let Some(tables) = super::sketched::breakdowns(conn, f, measure, cols)? else {
        return Ok(None);
    };
    let tables = cols
        .iter()
        .zip(tables)
        .map(|(c, (rows, estimated))| {
            let t = Table {
                dimension: Some((*c).into()),
                columns: vec![(*c).into(), "visitors".into(), measure.name().into()],
                rows,
                estimated: estimated_visitors(estimated),
            };
            ((*c).to_string(), t)
        })
        .collect();
    Ok(Some(tables))
}

/// A table's `estimated` columns: `visitors` if they are.
fn estimated_visitors(estimated: bool) -> Vec<String> {
    if estimated {
        vec!["visitors".into()]
    } else {
        Vec::new()
    }
}

/// Visitors and page views in the range by device, browser, OS and country. When the
/// filters allow, from the `sessions` table: a session's page views count under its first
/// page view's values (which its other page views share, as they come from the same browser
/// and address), and its bot flag. A session wholly in the range adds its page view count; one that crosses
/// an end of the range adds its page views inside it, counted from the events (few sessions
/// cross midnight); page views without a session are added from the events.
pub fn audience(conn: &Connection, f: &Filters) -> Result<Tables, ReportError> {
    if let Some(tables) = sketched(conn, f, Measure::Pageviews, &AUDIENCE)? {
        return Ok(Tables { tables });
    }
    let cols = AUDIENCE.join(", ");
    let (from, views) = if f.by_visit() {
        let mut from = Sql::default();
        from.push("WITH c AS MATERIALIZED (")
            .append(&f.sessions_of(&format!("session_id, visitor_id, {cols}"), Part::Crossing))
            .push(") ")
            .append(&f.sessions_of(&format!("visitor_id, {cols}, pageviews"), Part::Within))
            .push(&format!(
                " UNION ALL SELECT visitor_id, {cols}, n FROM c JOIN (SELECT session_id, \
                   count(*) AS n FROM events WHERE "
            ));
        // Every page view of a session counts as its first does, also for bots (`c` has the
        // sessions the filters select): as those within the range count their `pageviews`.
        from.push("ts >= ")
            .bind(ts_value(f.start))
            .push(" AND ts < ")
            .bind(ts_value(f.end));
        from.push(
            " AND name = 'page_view' AND session_id IN (SELECT session_id FROM c) \
               GROUP BY session_id) USING (session_id)",
        )
        .push(&format!(" UNION ALL SELECT visitor_id, {cols}, 1 FROM ("))
        .append(&f.base(
            &format!("visitor_id, {cols}, session_id"),
            Some("page_view"),
        ))
        .push(" AND session_id IS NULL)");
        (from, "sum(pageviews)::BIGINT")
    } else {
        let from = f.base(&format!("visitor_id, {cols}"), Some("page_view"));
        (from, "count(*)")
    };
    let tables = breakdowns(conn, &from, &AUDIENCE, ("pageviews", views), f.limit)?;
    Ok(Tables { tables })
}

/// The last five minutes: visitors (any event), page views, and the pages being viewed.
pub fn realtime(conn: &Connection, f: &Filters) -> Result<Realtime, ReportError> {
    let now = chrono::DateTime::from_timestamp_micros(crate::event::now_us())
        .unwrap_or_default()
        .naive_utc();
    let mut f = f.clone();
    f.start = now - Duration::minutes(5);
    // Clocks of other machines (server events) may run a little ahead.
    f.end = now + Duration::hours(1);
    let mut sql = Sql::default();
    sql.push("SELECT count(DISTINCT visitor_id), count(*) FILTER (name = 'page_view') FROM (")
        .append(&f.base("visitor_id, name", None))
        .push(")");
    let t = rows(conn, &sql)?.pop().unwrap_or_default();
    let mut pages = Sql::default();
    pages
        .push("SELECT path, count(DISTINCT visitor_id) AS visitors FROM (")
        .append(&page_views(&f))
        .push(&format!(
            ") GROUP BY path ORDER BY visitors DESC, path NULLS LAST LIMIT {}",
            f.limit
        ));
    Ok(Realtime {
        visitors: num(&t[0]) as u64,
        pageviews: num(&t[1]) as u64,
        pages: table(conn, &pages, Some("path"), &["path", "visitors"])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Visitors counted with bitmaps are `count(DISTINCT visitor_id)`, whichever columns get
    /// bitmaps: none, all, or only the one with the fewest values (a budget that fits it
    /// alone). A value whose rows have no visitor has 0, as a NULL value has its own row.
    /// The breakdown sketches of sessions are kept for every session dimension, so that
    /// `acquisition?dimension=all` can read them.
    #[test]
    fn breakdown_sketches_have_every_session_dimension() {
        assert_eq!(crate::store::SOURCE_DIMS, session_dimensions().as_slice());
    }

    #[test]
    fn visitors_by_bitmap_are_the_distinct_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let conn = store.reader().unwrap();
        conn.execute_batch(
            "CREATE TEMP TABLE s AS SELECT \
               CASE WHEN i % 11 = 0 THEN NULL ELSE i % 37 END AS v, \
               CASE WHEN i % 11 = 0 THEN 'nobody' WHEN i % 5 = 0 THEN NULL \
                 ELSE 'c' || (i % 3) END AS a, \
               'b' || (i % 17) AS b \
             FROM range(1000) r(i);",
        )
        .unwrap();
        let mut from = Sql::default();
        from.push(
            "SELECT CAST(printf('00000000-0000-0000-0000-%012d', v) AS UUID) AS visitor_id, a, b \
             FROM s",
        );
        let run = |budget: u64| {
            let t = breakdowns_within(&conn, &from, &["a", "b"], ("n", "count(*)"), 100, budget)
                .unwrap();
            serde_json::to_value(&t).unwrap()
        };
        let exact = run(0);
        // a: 4 values and NULL, budgeted as 4 + 1 + 2 = 7 of (1000 / 8 + 64) bytes, times
        // the overhead, for each thread; b: 17 and NULL, as 23.
        conn.execute_batch("SET threads = 3").unwrap();
        let only_a_fits = 7 * 189 * 3 * BITMAP_OVERHEAD;
        let (bits, only_a) = bitmap_columns(&conn, &from, &["a", "b"], only_a_fits)
            .unwrap()
            .unwrap();
        assert_eq!((bits, only_a), (1000, vec![true, false]));
        let (_, none) = bitmap_columns(&conn, &from, &["a", "b"], only_a_fits - 1)
            .unwrap()
            .unwrap();
        assert_eq!(none, vec![false, false]);
        assert_eq!(run(only_a_fits), exact, "bitmaps for a only");
        assert_eq!(run(u64::MAX), exact, "bitmaps for both");
        let a = &exact["a"]["rows"];
        assert_eq!(a.as_array().unwrap().len(), 5, "{a}");
        let nobody = a
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == "nobody")
            .unwrap();
        assert_eq!(nobody[1], 0, "{a}");
        assert!(a[0][1].as_i64().unwrap() > 1, "{a}");
        // Bitmaps too small for the 37 visitors (rows came in after they were counted): none.
        let answered = |bits: u64| {
            grouping_sets(
                &conn,
                &from,
                &["a"],
                Visitors::Bitmap(bits),
                ("n", "count(*)"),
            )
            .unwrap()
            .is_some()
        };
        assert!(!answered(36));
        assert!(answered(37));
    }
}
