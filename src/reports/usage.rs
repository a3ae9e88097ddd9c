//! API health (what only a proxy sees: every call's status and latency) and custom events.

use super::filter::{prop_path, Filters, Sql};
use super::{batches, quantile_cont, ratio, table, CountsRow, Fetch, ReportError, Row, Table};
use duckdb::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use duckdb::Connection;
use serde::{Deserialize, Serialize};

/// `events`' own parameters: `event` and `property` together ask for a breakdown.
#[derive(Debug, Deserialize)]
#[serde(try_from = "EventsQuery")]
pub struct EventsParams {
    pub breakdown: Option<Breakdown>,
}

/// `events`' own parameters as the query string gives them.
#[derive(Deserialize)]
struct EventsQuery {
    event: Option<String>,
    property: Option<String>,
}

impl TryFrom<EventsQuery> for EventsParams {
    type Error = ReportError;

    fn try_from(q: EventsQuery) -> Result<Self, ReportError> {
        let breakdown = match (q.event, q.property) {
            (Some(event), Some(property)) => Some(Breakdown {
                path: prop_path(&property)?,
                event,
                property,
            }),
            (None, None) => None,
            _ => {
                return Err(ReportError::Invalid(
                    "give both event and property for a breakdown".into(),
                ))
            }
        };
        Ok(EventsParams { breakdown })
    }
}

/// An event broken down by a property's values.
#[derive(Debug, Clone)]
pub struct Breakdown {
    pub event: String,
    pub property: String,
    /// The property's JSON path.
    pub path: String,
}

/// `api`'s answer.
#[derive(Debug, Serialize)]
pub struct Api {
    pub totals: ApiTotals,
    /// `route, method, calls, errors, error_rate, p50_ms, p95_ms, p99_ms`.
    pub routes: Table<RouteRow>,
}

/// One route and method's calls, errors, error rate and latency percentiles.
#[derive(Debug, Serialize)]
pub struct RouteRow(
    pub Option<String>,
    pub Option<String>,
    pub i64,
    pub i64,
    pub Option<f64>,
    pub Option<f64>,
    pub Option<f64>,
    pub Option<f64>,
);

impl Row for RouteRow {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok(RouteRow(
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ApiTotals {
    pub calls: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Latency percentiles; `None` without calls.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The percentiles that are estimates (`p50_ms`, `p95_ms`, `p99_ms` when read off latency
    /// buckets); without the key they are exact.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub estimated: Vec<String>,
}

/// `events`' answer.
#[derive(Debug, Serialize)]
pub struct Events {
    /// `name, events, visitors`.
    pub events: Table<CountsRow>,
    /// `<key>, events, visitors` for one event by a property's values, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Table<CountsRow>>,
}

/// Row `i` of a text column.
fn text(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

/// The latency percentiles the `api` report gives.
const PERCENTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// Calls, errors (status ≥ 500), error rate and latency percentiles of `api_call` events,
/// in total and per route and method.
///
/// One scan counts the calls per route, method and distinct `duration_ms` (a few hundred
/// thousand groups on 10M events, spilled to disk under `store.memory_limit` if need be),
/// ordered by route and method so that each route's counts come together; the
/// percentiles are read off those counts, for each route and for all of them. They equal
/// `quantile_cont`'s, which would hold every duration in memory at once and runs out of it on
/// 100M events.
///
/// Without filters, the calls are counted per latency bucket instead, from the writer's
/// `api_latencies` for the days that have them (`sketched.rs`): the percentiles are then
/// within 1 % of those, and labelled as estimates.
pub fn api(conn: &Connection, f: &Filters) -> Result<Api, ReportError> {
    let sketched = if f.sketchable() {
        super::sketched::api_calls(conn, f, |sql| latencies(conn, sql))?
    } else {
        None
    };
    let estimated = sketched.is_some();
    let (routes, mut all) = match sketched {
        Some(counted) => counted,
        None => {
            let mut sql = Sql::default();
            sql.push(
                "SELECT route, method, duration_ms, count(*), count(*) FILTER (status >= 500) \
                 FROM (",
            )
            .append(&f.base("route, method, status, duration_ms", Some("api_call")))
            .push(") GROUP BY ALL ORDER BY route, method");
            latencies(conn, &sql)?
        }
    };
    let mut rows: Vec<RouteRow> = routes
        .into_iter()
        .map(|((route, method), mut l)| {
            let [p50, p95, p99] = l.percentiles();
            let rate = ratio(l.errors as f64, l.calls as f64);
            RouteRow(route, method, l.calls, l.errors, Some(rate), p50, p95, p99)
        })
        .collect();
    // Most calls first, then by route and method, nulls last.
    let last = |s: &Option<String>| (s.is_none(), s.clone());
    rows.sort_by(|a, b| {
        b.2.cmp(&a.2)
            .then_with(|| last(&a.0).cmp(&last(&b.0)))
            .then_with(|| last(&a.1).cmp(&last(&b.1)))
    });
    rows.truncate(f.limit);
    let [p50_ms, p95_ms, p99_ms] = all.percentiles();
    let estimated: Vec<String> = if estimated {
        ESTIMATED.map(String::from).to_vec()
    } else {
        Vec::new()
    };
    Ok(Api {
        totals: ApiTotals {
            calls: all.calls as u64,
            errors: all.errors as u64,
            error_rate: ratio(all.errors as f64, all.calls as f64),
            p50_ms,
            p95_ms,
            p99_ms,
            estimated: estimated.clone(),
        },
        routes: Table {
            dimension: Some("route".into()),
            columns: [
                "route",
                "method",
                "calls",
                "errors",
                "error_rate",
                "p50_ms",
                "p95_ms",
                "p99_ms",
            ]
            .map(String::from)
            .to_vec(),
            rows,
            estimated,
        },
    })
}

/// The columns (and totals) whose values are estimates when the calls are counted per latency
/// bucket.
const ESTIMATED: [&str; 3] = ["p50_ms", "p95_ms", "p99_ms"];

/// Each route's and method's [`Latencies`], in order, and all routes' together, from `sql`'s
/// rows: `route, method, duration_ms, calls, errors`, ordered by route and method.
fn latencies(
    conn: &Connection,
    sql: &Sql,
) -> Result<(Vec<(RouteKey, Latencies)>, Latencies), ReportError> {
    let mut routes: Vec<(RouteKey, Latencies)> = Vec::new();
    let mut all = Latencies::default();
    batches(conn, sql, Fetch::Whole, |b| {
        let cols = (
            b.column(0).as_any().downcast_ref::<StringArray>(),
            b.column(1).as_any().downcast_ref::<StringArray>(),
            b.column(2).as_any().downcast_ref::<Float64Array>(),
            b.column(3).as_any().downcast_ref::<Int64Array>(),
            b.column(4).as_any().downcast_ref::<Int64Array>(),
        );
        let (Some(route), Some(method), Some(duration), Some(calls), Some(errors)) = cols else {
            return Err(ReportError::Internal(format!(
                "api: unexpected column types {:?}",
                b.schema()
            )));
        };
        for i in 0..b.num_rows() {
            // The rows come ordered by route and method: a new key starts a new route.
            let key = (text(route, i), text(method, i));
            if routes
                .last()
                .map(|((r, m), _)| (r.as_deref(), m.as_deref()))
                != Some(key)
            {
                let owned = (key.0.map(String::from), key.1.map(String::from));
                routes.push((owned, Latencies::default()));
            }
            let counts = (
                duration.is_valid(i).then(|| duration.value(i)),
                calls.value(i),
                errors.value(i),
            );
            if let Some((_, latencies)) = routes.last_mut() {
                latencies.add(counts);
            }
            all.add(counts);
        }
        Ok(())
    })?;
    Ok((routes, all))
}

/// A route and method.
type RouteKey = (Option<String>, Option<String>);

/// Calls and errors of a route (or of all), and how many calls took each duration.
#[derive(Default)]
struct Latencies {
    calls: i64,
    errors: i64,
    /// `(duration_ms, calls)`; calls without a duration (the client left) are not in it.
    durations: Vec<(f64, i64)>,
}

impl Latencies {
    fn add(&mut self, (duration, calls, errors): (Option<f64>, i64, i64)) {
        self.calls += calls;
        self.errors += errors;
        if let Some(d) = duration {
            self.durations.push((d, calls));
        }
    }

    /// [`PERCENTILES`] of the durations, as DuckDB's `quantile_cont` ([`quantile_cont`]),
    /// rounded to the microsecond as SQL's `round(x, 3)`; `None` without durations.
    fn percentiles(&mut self) -> [Option<f64>; 3] {
        self.durations.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n: i64 = self.durations.iter().map(|d| d.1).sum();
        // The duration at position `k` (0-based) of the sorted calls.
        let at = |k: i64| {
            let mut upto = 0;
            self.durations.iter().find_map(|&(d, c)| {
                upto += c;
                (upto > k).then_some(d)
            })
        };
        PERCENTILES.map(|q| quantile_cont(n, q, at).map(|x| (x * 1000.0).round() / 1000.0))
    }
}

/// The people a custom event counts: its visitor, or its user when it has no visitor.
const VISITOR: &str = "coalesce(CAST(visitor_id AS VARCHAR), 'user:' || user_id)";

/// Custom events (everything not captured by the proxy): count and visitors per name; with
/// `event` and `property`, that event broken down by the property's values.
pub fn events(
    conn: &Connection,
    f: &Filters,
    breakdown: Option<&Breakdown>,
) -> Result<Events, ReportError> {
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT name, count(*) AS events, count(DISTINCT {VISITOR}) AS visitors FROM ("
    ))
    .append(&f.base("name, visitor_id, user_id, source", None))
    .push(&format!(
        ") WHERE source IS DISTINCT FROM 'proxy' GROUP BY name \
         ORDER BY events DESC, name LIMIT {}",
        f.limit
    ));
    let events = table(conn, &sql, Some("name"), &["name", "events", "visitors"])?;
    let breakdown = match breakdown {
        Some(b) => {
            let mut sql = Sql::default();
            sql.push(&format!(
                "SELECT json_extract_string(props, '{}') AS v, count(*) AS events, \
                   count(DISTINCT {VISITOR}) AS visitors FROM (",
                b.path
            ))
            .append(&f.base("props, visitor_id, user_id", Some(&b.event)))
            .push(&format!(
                ") GROUP BY v ORDER BY events DESC, v NULLS LAST LIMIT {}",
                f.limit
            ));
            let dim = format!("prop.{}", b.property);
            let cols = [b.property.as_str(), "events", "visitors"];
            Some(table(conn, &sql, Some(&dim), &cols)?)
        }
        None => None,
    };
    Ok(Events { events, breakdown })
}
