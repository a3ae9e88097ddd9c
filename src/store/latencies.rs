//! `api_latencies`: for each local day, API route and method, how many calls fell in each
//! latency bucket and how many of them were errors, so that the `api` report over a month sums
//! a few thousand rows instead of grouping millions of calls by their exact duration
//! (issue 18).
//!
//! Buckets are logarithmic, as DDSketch's: bucket `i` holds the durations in
//! (γ^(i-1), γ^i] milliseconds, γ = 1.01 / 0.99, and is read as 2γ^i / (γ + 1), which is within
//! 1 % of every duration in it ([`bucket_of`], [`bucket_value`]). Percentiles read off the
//! buckets are therefore within 1 % of the exact ones (interpolated between two ranks, as
//! `quantile_cont` does, each within 1 %). A duration under a microsecond counts as one
//! microsecond; a call without a duration (the client left) is in bucket `NULL`.
//!
//! The rows of a day leave bots out, as the report does by default, and are built and dropped
//! with the day's page sketches (`sketches.rs`, whose `page_sketch_days` says which days have
//! them): a late API call drops the days of its hours when the writer folds it, and a
//! deletion (forget, retention) those of the calls it deletes ([`mark`]).

use super::sketches::drop_hours;
use super::StoreError;
use crate::event::columns::{NAME, TS};
use chrono::NaiveDateTime;
use duckdb::types::{ToSql, Value};
use duckdb::{params, Connection};

/// `CREATE TABLE IF NOT EXISTS`.
pub(super) const DDL: &str = "CREATE TABLE IF NOT EXISTS api_latencies (
  tz VARCHAR NOT NULL,
  day DATE NOT NULL,
  route VARCHAR,
  method VARCHAR,
  bucket SMALLINT,
  calls BIGINT NOT NULL,
  errors BIGINT NOT NULL
);";

/// The name of the events it counts.
pub const API_CALL: &str = "api_call";

/// γ, the ratio of a bucket's upper bound to its lower one, as SQL.
const GAMMA: &str = "(1.01 / 0.99)";

/// SQL for the bucket of the duration (milliseconds) `col`: `NULL` for a call without one.
pub fn bucket_of(col: &str) -> String {
    // Not `greatest`, which takes a missing duration for the other value.
    format!(
        "CAST(ceil(ln(CASE WHEN {col} < 0.001 THEN 0.001 ELSE {col} END) / ln{GAMMA}) AS SMALLINT)"
    )
}

/// SQL for the duration (milliseconds) that bucket `col` stands for: within 1 % of each one in
/// it.
pub fn bucket_value(col: &str) -> String {
    format!("2 * pow({GAMMA}, {col}) / ({GAMMA} + 1)")
}

/// Append the rows of the day `date` (a `DATE` value) in `tz`, between the UTC times `start`
/// and `end`, in the caller's transaction. Returns the number of rows.
pub(super) fn build_day(
    conn: &Connection,
    tz: &str,
    date: &Value,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        &format!(
            "INSERT INTO api_latencies SELECT ?1, ?2, route, method, {} AS b, count(*), \
               count(*) FILTER (status >= 500) FROM events \
             WHERE {TS} >= CAST(?3 AS TIMESTAMP) AND {TS} < CAST(?4 AS TIMESTAMP) \
               AND {NAME} = '{API_CALL}' AND is_bot IS NOT TRUE \
             GROUP BY route, method, b",
            bucket_of("duration_ms")
        ),
        params![
            tz,
            date.clone(),
            super::sketches::ts_text(start),
            super::sketches::ts_text(end)
        ],
    )?)
}

/// The API calls between the UTC times `start` and `end`, bots' too.
pub(super) fn calls_between(
    conn: &Connection,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        &format!(
            "SELECT count(*) FROM events WHERE {TS} >= CAST(?1 AS TIMESTAMP) \
             AND {TS} < CAST(?2 AS TIMESTAMP) AND {NAME} = '{API_CALL}'"
        ),
        params![
            super::sketches::ts_text(start),
            super::sketches::ts_text(end)
        ],
        |r| r.get(0),
    )?)
}

/// Drop the built days of the API calls that `cond` (with `value` bound) selects, before they
/// are deleted, in the caller's transaction.
pub(super) fn mark(conn: &Connection, cond: &str, value: &dyn ToSql) -> Result<(), StoreError> {
    super::rollups::mark_hours(conn, "api_hours_marked", API_CALL, cond, value)?;
    drop_hours(conn, "api_hours_marked")?;
    conn.execute_batch("DROP TABLE api_hours_marked")?;
    Ok(())
}
