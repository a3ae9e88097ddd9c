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
    // A column of DuckDB's NULL type (`SELECT NULL`) cannot be read as a value at all.
    let null_typed: Vec<bool> = (0..n)
        .map(|i| {
            rows.as_ref()
                .is_some_and(|s| s.column_type(i) == duckdb::arrow::datatypes::DataType::Null)
        })
        .collect();
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next().map_err(db_error)? {
        if out.len() == max_rows {
            truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(n);
        for (i, null) in null_typed.iter().enumerate() {
            values.push(if *null {
                Value::Null
            } else {
                value_json(row.get_ref(i).map_err(db_error)?)
            });
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
        other => owned_json(other.to_owned()),
    }
}

/// The nested and rarer types (lists, structs, maps, decimals, intervals, …) as JSON.
fn owned_json(v: duckdb::types::Value) -> Value {
    use duckdb::types::Value as V;
    match v {
        V::Null => Value::Null,
        V::Decimal(d) => d
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        V::List(items) | V::Array(items) => items.into_iter().map(owned_json).collect(),
        V::Struct(fields) => Value::Object(
            fields
                .keys()
                .cloned()
                .zip(fields.values().cloned().map(owned_json))
                .collect(),
        ),
        V::Map(m) => m
            .keys()
            .cloned()
            .zip(m.values().cloned())
            .map(|(k, v)| Value::Array(vec![owned_json(k), owned_json(v)]))
            .collect(),
        V::Union(v) => owned_json(*v),
        scalar @ (V::Boolean(_)
        | V::TinyInt(_)
        | V::SmallInt(_)
        | V::Int(_)
        | V::BigInt(_)
        | V::HugeInt(_)
        | V::UTinyInt(_)
        | V::USmallInt(_)
        | V::UInt(_)
        | V::UBigInt(_)
        | V::Float(_)
        | V::Double(_)
        | V::Timestamp(..)
        | V::Date32(_)
        | V::Blob(_)) => value_json(ValueRef::from(&scalar)),
        V::Enum(s) | V::Text(s) => Value::String(s),
        V::Interval {
            months,
            days,
            nanos,
        } => Value::String(format!(
            "{months} months {days} days {:.6} seconds",
            nanos as f64 / 1e9
        )),
        V::Time64(unit, t) => {
            let us = micros(unit, t);
            Value::String(format!(
                "{:02}:{:02}:{:02}.{:06}",
                us / 3_600_000_000,
                us / 60_000_000 % 60,
                us / 1_000_000 % 60,
                us % 1_000_000
            ))
        }
        other => Value::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_value_becomes_json() {
        let conn = Connection::open_in_memory().unwrap();
        let r = run_query(
            &conn,
            "SELECT NULL AS n, [1, 2] AS l, {'a': 1} AS s, 1.5::DECIMAL(10,2) AS d, \
             INTERVAL 3 DAY AS i, 'x' AS t",
            10,
        )
        .unwrap();
        assert_eq!(
            r.rows[0],
            vec![
                Value::Null,
                serde_json::json!([1, 2]),
                serde_json::json!({"a": 1}),
                serde_json::json!(1.5),
                Value::String("0 months 3 days 0.000000 seconds".into()),
                Value::String("x".into()),
            ]
        );
    }
}
