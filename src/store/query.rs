//! Running a guarded read-only query and turning its rows into JSON values.

use super::guard::check_read_only;
use duckdb::types::{TimeUnit, ValueRef};
use duckdb::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A query's result: column names and rows of JSON values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// True when more rows existed than the row limit allowed.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query would write, or touch files, the network or extensions.
    #[error("refused: {0}")]
    Refused(String),
    /// The query is not valid SQL or failed to run.
    #[error("{0}")]
    Invalid(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Check `sql` with the read-only guard, run it, and return at most `max_rows` rows.
pub fn run_query(conn: &Connection, sql: &str, max_rows: usize) -> Result<QueryResult, QueryError> {
    check_read_only(conn, sql)?;
    let mut stmt = conn.prepare(sql).map_err(db_error)?;
    let mut rows = stmt.query([]).map_err(db_error)?;
    let columns: Vec<String> = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    let n = columns.len();
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next().map_err(db_error)? {
        if out.len() == max_rows {
            truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(value_json(row.get_ref(i).map_err(db_error)?));
        }
        out.push(values);
    }
    Ok(QueryResult {
        columns,
        rows: out,
        truncated,
    })
}

fn db_error(e: duckdb::Error) -> QueryError {
    let msg = e.to_string();
    if msg.contains("Permission Error") || msg.contains("disabled by configuration") {
        QueryError::Refused(format!(
            "the SQL console cannot access files, the network or extensions ({msg})"
        ))
    } else {
        QueryError::Invalid(msg)
    }
}

fn micros(unit: TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1_000,
    }
}

/// A DuckDB value as JSON: timestamps as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), dates as
/// `YYYY-MM-DD`, huge integers as strings when they do not fit an i64.
pub fn value_json(v: ValueRef<'_>) -> Value {
    use ValueRef::*;
    match v {
        Null => Value::Null,
        Boolean(b) => b.into(),
        TinyInt(i) => i.into(),
        SmallInt(i) => i.into(),
        Int(i) => i.into(),
        BigInt(i) => i.into(),
        HugeInt(i) => i64::try_from(i).map_or_else(|_| Value::String(i.to_string()), Into::into),
        UTinyInt(i) => i.into(),
        USmallInt(i) => i.into(),
        UInt(i) => i.into(),
        UBigInt(i) => i.into(),
        Float(f) => serde_json::Number::from_f64(f as f64).map_or(Value::Null, Value::Number),
        Double(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        Timestamp(unit, v) => chrono::DateTime::from_timestamp_micros(micros(unit, v))
            .map_or(Value::Null, |t| {
                Value::String(t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
            }),
        Date32(d) => chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)
            .map_or(Value::Null, |d| Value::String(d.to_string())),
        Blob(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        other => Value::String(format!("{:?}", other.to_owned())),
    }
}
