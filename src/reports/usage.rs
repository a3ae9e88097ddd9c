//! API health (what only a proxy sees: every call's status and latency) and custom events.

use super::filter::{prop_path, Filters, Sql};
use super::{num, ratio, rows, table, CountsRow, ReportError, Row, Table};
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

#[derive(Debug, Serialize)]
pub struct ApiTotals {
    pub calls: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Latency percentiles; `None` without calls.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
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

/// Calls, errors (status ≥ 500), error rate and latency percentiles of `api_call` events,
/// in total and per route and method.
pub fn api(conn: &Connection, f: &Filters) -> Result<Api, ReportError> {
    let calls = f.base("route, method, status, duration_ms", Some("api_call"));
    let metrics = "count(*) AS calls, count(*) FILTER (status >= 500) AS errors, \
                   quantile_cont(duration_ms, [0.5, 0.95, 0.99]) AS q";
    let mut totals = Sql::default();
    totals
        .push(&format!(
            "SELECT calls, errors, round(q[1], 3), round(q[2], 3), round(q[3], 3) \
             FROM (SELECT {metrics} FROM ("
        ))
        .append(&calls)
        .push("))");
    let t = rows(conn, &totals)?.pop().unwrap_or_default();
    let mut routes = Sql::default();
    routes
        .push(&format!(
            "SELECT route, method, calls, errors, round(errors / calls, 4), \
               round(q[1], 3), round(q[2], 3), round(q[3], 3) \
             FROM (SELECT route, method, {metrics} FROM ("
        ))
        .append(&calls)
        .push(&format!(
            ") GROUP BY route, method) ORDER BY calls DESC, route NULLS LAST, method NULLS LAST \
             LIMIT {}",
            f.limit
        ));
    Ok(Api {
        totals: ApiTotals {
            calls: num(&t[0]) as u64,
            errors: num(&t[1]) as u64,
            error_rate: ratio(num(&t[1]), num(&t[0])),
            p50_ms: t[2].as_f64(),
            p95_ms: t[3].as_f64(),
            p99_ms: t[4].as_f64(),
        },
        routes: table(
            conn,
            &routes,
            Some("route"),
            &[
                "route",
                "method",
                "calls",
                "errors",
                "error_rate",
                "p50_ms",
                "p95_ms",
                "p99_ms",
            ],
        )?,
    })
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
