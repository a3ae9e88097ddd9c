//! Traffic reports over page views: overview, pages, acquisition, audience and realtime.
//!
//! Definitions (also in `docs/api.md`): a page view is an event named `page_view`; visitors
//! and sessions are distinct `visitor_id`s and `session_id`s among the page views; a session
//! bounces when it has exactly one page view; its duration is last minus first page view; its
//! source (channel, referrer, campaign) is its first page view's.

use super::filter::{session_dimensions, ts_value, Filters, Part, Sql};
use super::{num, query, ratio, round4, rows, table, CountRow, CountsRow, ReportError, Table};
use crate::store::FOLDED_THROUGH;
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
    let top = if f.dims.is_empty() && f.props.is_empty() {
        top_pages_of_many(f)
    } else {
        top_pages_of_few(f)
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
        }
    };
    Ok(Pages {
        top: table(conn, &top, Some("path"), &["path", "visitors", "pageviews"])?,
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

/// One GROUPING SETS query over `from` (a subquery), split into a table per column, each
/// sorted by its metrics (descending) and value, and cut to the limit.
fn breakdowns(
    conn: &Connection,
    from: &Sql,
    cols: &[&str],
    metrics: [(&str, &str); 2],
    limit: usize,
) -> Result<BTreeMap<String, Table<CountsRow>>, ReportError> {
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT grouping({list}) AS g, {list}, {m0} AS {n0}, {m1} AS {n1} FROM (",
        list = cols.join(", "),
        m0 = metrics[0].1,
        n0 = metrics[0].0,
        m1 = metrics[1].1,
        n1 = metrics[1].0,
    ))
    .append(from)
    .push(&format!(
        ") GROUP BY GROUPING SETS ({})",
        cols.iter()
            .map(|c| format!("({c})"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let n = cols.len();
    let mut tables: Vec<Vec<CountsRow>> = vec![Vec::new(); n];
    for r in rows(conn, &sql)? {
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
            columns: vec![cols[i].into(), metrics[0].0.into(), metrics[1].0.into()],
            rows,
        };
        out.insert(cols[i].into(), t);
    }
    Ok(out)
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
    let tables = breakdowns(
        conn,
        &filtered_sessions(f, cols),
        cols,
        [
            ("visitors", "count(DISTINCT visitor_id)"),
            ("sessions", "count(*)"),
        ],
        f.limit,
    )?;
    Ok(Tables { tables })
}

/// The dimensions `audience` breaks page views down by, one table each, in the dashboard's
/// order (the catalog lists them).
pub const AUDIENCE: [&str; 4] = ["device_type", "browser", "os", "country"];

/// Visitors and page views in the range by device, browser, OS and country. When the
/// filters allow, from the `sessions` table: a session's page views count under its first
/// page view's values (which its other page views share, as they come from the same browser
/// and address). A session wholly in the range adds its page view count; one that crosses
/// an end of the range adds its page views inside it, counted from the events (few sessions
/// cross midnight); page views without a session are added from the events.
pub fn audience(conn: &Connection, f: &Filters) -> Result<Tables, ReportError> {
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
        f.range_sql(&mut from);
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
    let tables = breakdowns(
        conn,
        &from,
        &AUDIENCE,
        [
            ("visitors", "count(DISTINCT visitor_id)"),
            ("pageviews", views),
        ],
        f.limit,
    )?;
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
