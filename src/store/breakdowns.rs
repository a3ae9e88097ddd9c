//! `breakdown_sketches`: for each local day, dimension and value, a count and a sketch of the
//! distinct visitors ([`Sketch`]), so that the acquisition and audience reports over a month
//! merge about thirty small sketches per value instead of grouping millions of (value,
//! visitor) pairs for every dimension (issue 18).
//!
//! Two measures are kept, each with its own dimensions:
//! - [`Measure::Sessions`] (acquisition): the sessions that begin on the day (their first page
//!   view), by the [`Measure::Sessions`] dimensions of that first page view, and their
//!   visitors;
//! - [`Measure::Pageviews`] (audience): the page views of the day, each under its session's
//!   device, browser, OS and country (a page view without a session under its own), and the
//!   visitors who made them.
//!
//! Both leave bots out, as the reports do by default. The rows of a day are built with its
//! page sketches (`sketches.rs`, whose `page_sketch_days` says which days have both) and
//! dropped with them. A day's rows also depend on sessions that began on other days (a
//! session's values are those of its first page view), so `sketches.rs` also drops every day a
//! session spans when a late page view or a deletion touches the session.

use super::sketches::{ts_text, visitor_halves, visitor_hash, Sketch};
use super::StoreError;
use crate::event::columns::{NAME, PAGE_VIEW, SESSION_ID, TS, VISIT, VISITOR_ID};
use chrono::NaiveDateTime;
use duckdb::arrow::array::{Array, Int64Array, StringArray, UInt64Array};
use duckdb::types::Value;
use duckdb::{params, Connection};
use std::collections::HashMap;

/// `CREATE TABLE IF NOT EXISTS`.
pub(super) const DDL: &str = "CREATE TABLE IF NOT EXISTS breakdown_sketches (
  tz VARCHAR NOT NULL,
  day DATE NOT NULL,
  measure VARCHAR NOT NULL,
  dim VARCHAR NOT NULL,
  value VARCHAR,
  n BIGINT NOT NULL,
  visitors BLOB NOT NULL
);";

/// Where a session came from: the dimensions of [`Measure::Sessions`] (the reports' session
/// dimensions), the [`VISIT`] columns from `channel` to `click_id_type`.
pub const SOURCE_DIMS: &[&str] = VISIT.split_at(3).1.split_at(8).0;

/// What a visit was made with, and from where: the dimensions of [`Measure::Pageviews`] (the
/// audience report's).
pub const DEVICE_DIMS: [&str; 4] = ["device_type", "browser", "os", "country"];

/// What a breakdown counts per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Sessions, by where they came from (the acquisition report).
    Sessions,
    /// Page views, by the device, browser, OS and country of their session (audience).
    Pageviews,
}

impl Measure {
    pub const ALL: [Measure; 2] = [Measure::Sessions, Measure::Pageviews];

    /// Its name: the `measure` column, and the column the reports show.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Sessions => "sessions",
            Measure::Pageviews => "pageviews",
        }
    }

    /// The dimensions it is kept for (columns of `sessions`, taken from a session's first page
    /// view).
    pub fn dims(self) -> &'static [&'static str] {
        match self {
            Measure::Sessions => SOURCE_DIMS,
            Measure::Pageviews => &DEVICE_DIMS,
        }
    }

    /// `visitor_id` and `dims` (as text) of the non-bot rows it counts between the UTC times
    /// `?1` and `?2`: one row a session or a page view.
    fn rows(self, dims: &[&str]) -> String {
        let each = |prefix: &str| {
            dims.iter()
                .map(|d| format!("CAST({prefix}{d} AS VARCHAR) AS {d}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let range =
            |col: &str| format!("{col} >= CAST(?1 AS TIMESTAMP) AND {col} < CAST(?2 AS TIMESTAMP)");
        match self {
            Measure::Sessions => format!(
                "SELECT {VISITOR_ID}, {} FROM sessions WHERE {} AND is_bot IS NOT TRUE",
                each(""),
                range("first_ts"),
            ),
            // A page view in a session counts under the session's values (its visitor and
            // bot flag too, as the exact report reads them from `sessions`); one without a
            // session under its own.
            Measure::Pageviews => format!(
                "SELECT s.{VISITOR_ID}, {} FROM events e JOIN (SELECT * FROM sessions \
                   WHERE last_ts >= CAST(?1 AS TIMESTAMP) AND first_ts < CAST(?2 AS TIMESTAMP) \
                   AND is_bot IS NOT TRUE) s ON e.{SESSION_ID} = s.{SESSION_ID} \
                 WHERE {} AND e.{NAME} = '{PAGE_VIEW}' \
                 UNION ALL SELECT {VISITOR_ID}, {} FROM events WHERE {} \
                   AND {NAME} = '{PAGE_VIEW}' AND {SESSION_ID} IS NULL AND is_bot IS NOT TRUE",
                each("s."),
                range(&format!("e.{TS}")),
                each(""),
                range(TS),
            ),
        }
    }
}

/// Per dimension and value, the count and the visitors' hashes ([`visitor_hash`]; a row
/// without a visitor is counted only).
pub type Counted = HashMap<(String, Option<String>), (i64, Vec<u64>)>;

/// [`Counted`] of `measure` for those of its dimensions that `dims` names, between the UTC
/// times `start` and `end`, in one pass: the building of a day (every dimension), and the
/// days a report counts from the events (those it shows).
pub fn count_between(
    conn: &Connection,
    measure: Measure,
    dims: &[&str],
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> Result<Counted, StoreError> {
    // Only the measure's own names reach the SQL.
    let dims: Vec<&str> = measure
        .dims()
        .iter()
        .copied()
        .filter(|d| dims.contains(d))
        .collect();
    if dims.is_empty() {
        return Ok(Counted::new());
    }
    // Grouped by visitor and values in SQL (a session or page view a row before), and split
    // by dimension here: a row's values are looked up per dimension without allocating,
    // which an UNPIVOT (a row per dimension, its name and value as new strings) did not
    // allow (two fifths of a report's time on two days of sessions).
    let mut stmt = conn.prepare(&format!(
        "SELECT {}, {}, count(*)::BIGINT AS n FROM ({}) GROUP BY ALL",
        visitor_halves(VISITOR_ID),
        dims.join(", "),
        measure.rows(&dims),
    ))?;
    let mut values: Vec<HashMap<String, (i64, Vec<u64>)>> = vec![HashMap::new(); dims.len()];
    let mut nulls: Vec<(i64, Vec<u64>)> = vec![Default::default(); dims.len()];
    let bad = || {
        StoreError::Malformed(format!(
            "{} breakdown: unexpected column types",
            measure.name()
        ))
    };
    for batch in stmt.query_arrow(params![ts_text(start), ts_text(end)])? {
        let column = |i: usize| batch.column(i).as_any();
        let (Some(hi), Some(lo), Some(n)) = (
            column(0).downcast_ref::<UInt64Array>(),
            column(1).downcast_ref::<UInt64Array>(),
            column(2 + dims.len()).downcast_ref::<Int64Array>(),
        ) else {
            return Err(bad());
        };
        let texts = (0..dims.len())
            .map(|d| column(2 + d).downcast_ref::<StringArray>().ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            let hash = (!hi.is_null(i)).then(|| visitor_hash(hi.value(i), lo.value(i)));
            for (d, text) in texts.iter().enumerate() {
                let (count, hashes) = if text.is_null(i) {
                    &mut nulls[d]
                } else {
                    let v = text.value(i);
                    if !values[d].contains_key(v) {
                        values[d].insert(v.to_string(), Default::default());
                    }
                    values[d].get_mut(v).expect("inserted")
                };
                *count += n.value(i);
                hashes.extend(hash);
            }
        }
    }
    let mut out = Counted::new();
    for (dim, (map, null)) in dims.iter().zip(values.into_iter().zip(nulls)) {
        for (v, counted) in map {
            out.insert(((*dim).to_string(), Some(v)), counted);
        }
        if null.0 > 0 {
            out.insert(((*dim).to_string(), None), null);
        }
    }
    Ok(out)
}

/// Append the rows of the day `date` (a `DATE` value) in `tz`, between the UTC times `start`
/// and `end`, for every measure, in the caller's transaction. Returns the number of rows.
pub(super) fn build_day(
    conn: &Connection,
    tz: &str,
    date: &Value,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> Result<usize, StoreError> {
    let counted: Vec<(Measure, Counted)> = Measure::ALL
        .into_iter()
        .map(|m| count_between(conn, m, m.dims(), start, end).map(|c| (m, c)))
        .collect::<Result<_, _>>()?;
    let mut app = conn.appender("breakdown_sketches")?;
    let mut rows = 0;
    for (measure, counted) in counted {
        for ((dim, value), (n, hashes)) in counted {
            app.append_row(params![
                tz,
                date.clone(),
                measure.name(),
                dim,
                value,
                n,
                Sketch::of(hashes).encode()
            ])?;
            rows += 1;
        }
    }
    app.flush()?;
    Ok(rows)
}
