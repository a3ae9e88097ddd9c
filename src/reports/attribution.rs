//! First- and last-touch attribution of a conversion event, per person.
//!
//! The people are those with the conversion event in the range (matching the filters); each
//! counts once, at their first conversion. Their touches are the sessions they started within
//! the lookback window before it: a session's first page view with a channel (navigation
//! inside the site has none). First touch credits the earliest; last touch credits the latest
//! that is not Direct, or the latest Direct one when there is no other, as GA does. People
//! with no touch are credited to `(none)`.

use super::filter::{session_dimensions, Filters, Sql, Window};
use super::funnel::PERSON;
use super::{query, typed_rows, CountsRow, ReportError, Row, Table};
use crate::store::identities;
use duckdb::Connection;
use serde::{Deserialize, Deserializer, Serialize};

/// The conversion event, the lookback and what takes the credit: its own parameters.
#[derive(Debug, Clone)]
pub struct AttributionParams {
    pub event: String,
    pub lookback: Window,
    /// What takes the credit: one of the session dimensions (where a visit came from).
    pub by: &'static str,
}

/// `attribution`'s own parameters as the query string gives them, each value checked.
#[derive(Deserialize)]
struct AttributionQuery {
    /// Required, not empty.
    event: Option<String>,
    #[serde(default = "thirty_days", deserialize_with = "lookback")]
    lookback: Window,
    #[serde(default = "channel")]
    by: By,
}

/// `by`: one of the session dimensions. (Not a `&'static str` field: serde's derive takes a `&str` field as
/// borrowed from the input.)
struct By(&'static str);

impl<'de> Deserialize<'de> for By {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        query::parsed(d, |by| {
            let all = session_dimensions();
            let by = all.iter().copied().find(|b| *b == by).ok_or_else(|| {
                ReportError::Invalid(format!("by={by:?}: expected one of {}", all.join(", ")))
            })?;
            Ok(By(by))
        })
    }
}

// What `#[serde(try_from = "AttributionQuery")]` would write, but for the `&'static str`
// field, which the derive would take as borrowed from the input (see `By`).
impl<'de> Deserialize<'de> for AttributionParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let q = AttributionQuery::deserialize(d)?;
        let event = q.event.filter(|e| !e.is_empty()).ok_or_else(|| {
            serde::de::Error::custom("event (the conversion event's name) is required")
        })?;
        Ok(AttributionParams {
            event,
            lookback: q.lookback,
            by: q.by.0,
        })
    }
}

fn thirty_days() -> Window {
    Window::days(30)
}

fn lookback<'de, D: Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
    query::parsed(d, |v| Window::parse("lookback", v))
}

fn channel() -> By {
    By("channel")
}

/// `attribution`'s answer.
#[derive(Debug, Serialize)]
pub struct Attribution {
    pub event: String,
    /// As given, e.g. `30d`.
    pub lookback: String,
    pub by: &'static str,
    /// People with the conversion event.
    pub conversions: u64,
    /// `<by>, first_touch, last_touch`.
    pub table: Table<CountsRow>,
}

pub fn run(
    conn: &Connection,
    f: &Filters,
    p: &AttributionParams,
) -> Result<Attribution, ReportError> {
    let (event, by) = (p.event.as_str(), p.by);
    let lookback = p.lookback.span;
    let lookback_us = lookback.num_microseconds().unwrap_or(i64::MAX);

    let mut sql = Sql::default();
    sql.push("WITH ").push(&identities());
    sql.push(&format!(
        ", ce AS MATERIALIZED (SELECT e.visitor_id, {PERSON} AS person, e.ts FROM ("
    ))
    .append(&f.base("*", Some(event)))
    .push(&format!(
        ") e LEFT JOIN idm ON idm.visitor_id = e.visitor_id WHERE {PERSON} IS NOT NULL), \
         conv AS (SELECT person, min(ts) AS tc FROM ce GROUP BY 1), \
         cv AS (SELECT visitor_id FROM ce WHERE visitor_id IS NOT NULL \
           UNION SELECT visitor_id FROM idm WHERE stitched IN (SELECT person FROM conv))"
    ));
    // Sessions from the lookback before the range to its end, of the converters' visitors
    // only (their own, and those stitched to the same user): a touch is a session of the
    // person, and a person's sessions are their visitors'.
    let mut wide = f.clone();
    wide.start = f.start - lookback;
    sql.push(", sa AS (");
    let cols: &[&str] = if by == "channel" {
        &["channel"]
    } else {
        &["channel", by]
    };
    wide.sessions_sql(&mut sql, cols);
    sql.push(&format!(
        " AND visitor_id IN (SELECT visitor_id FROM cv)), \
         touch AS (SELECT coalesce(idm.stitched, CAST(s.visitor_id AS UHUGEINT)) AS person, \
           s.first_ts AS ts, s.channel, s.{by} AS v FROM sa s \
           LEFT JOIN idm ON idm.visitor_id = s.visitor_id WHERE s.channel IS NOT NULL), \
         t AS (SELECT c.person, t.ts, t.channel, t.v FROM conv c JOIN touch t \
           ON t.person = c.person AND t.ts <= c.tc \
           AND epoch_us(c.tc) - epoch_us(t.ts) <= {lookback_us}), \
         credit AS (SELECT person, arg_min_null(v, ts) AS first_v, \
           CASE WHEN count(*) FILTER (channel <> 'Direct') > 0 \
             THEN arg_max_null(v, ts) FILTER (channel <> 'Direct') \
             ELSE arg_max_null(v, ts) END AS last_v \
           FROM t GROUP BY person), \
         c AS (SELECT conv.person, credit.first_v, credit.last_v FROM conv \
           LEFT JOIN credit USING (person))"
    ));
    // Every converter has one first touch (`(none)` without one): the conversions are the
    // first touches of all values, summed before the limit.
    sql.push(&format!(
        " SELECT v, count(*) FILTER (kind = 'first') AS first_touch, \
           count(*) FILTER (kind = 'last') AS last_touch, \
           sum(count(*) FILTER (kind = 'first')) OVER () AS conversions FROM ( \
           SELECT first_v AS v, 'first' AS kind FROM c UNION ALL \
           SELECT last_v AS v, 'last' AS kind FROM c) \
         GROUP BY v ORDER BY last_touch DESC, first_touch DESC, v NULLS LAST LIMIT {}",
        f.limit
    ));
    let rows: Vec<Credited> = typed_rows(conn, &sql)?;
    let conversions = rows.first().map_or(0, |r| r.1);
    Ok(Attribution {
        event: event.to_string(),
        lookback: p.lookback.text.clone(),
        by,
        conversions,
        table: Table {
            dimension: Some(by.into()),
            columns: [by, "first_touch", "last_touch"].map(String::from).to_vec(),
            rows: rows.into_iter().map(|r| r.0).collect(),
            estimated: Vec::new(),
        },
    })
}

/// A value's first and last touches, and the conversions of all values.
struct Credited(CountsRow, u64);

impl Row for Credited {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        let conversions: i128 = r.get(3)?;
        Ok(Credited(CountsRow::read(r)?, conversions as u64))
    }
}
