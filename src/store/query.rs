//! Running a guarded read-only query and turning its rows into JSON values.

use super::guard::{check_read_only, QueryError};
use duckdb::types::{TimeUnit, ValueRef};
use duckdb::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A query's result: column names and rows of JSON values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// True when the query had more to give than the limits allowed.
    pub truncated: bool,
    /// Which limit cut it: `rows` or `bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_by: Option<String>,
}

/// How much one query may return. Both are counted while the rows stream from DuckDB, so a
/// query over a hundred million rows with a small limit reads no more than it returns.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    /// Bytes of the rows as JSON.
    pub max_bytes: usize,
}

/// Check `sql` with the read-only guard, then run it in a transaction DuckDB itself holds read
/// only, and return what fits in `limits`.
///
/// The connection should be one of its own: [`duckdb::Connection::interrupt_handle`] of it
/// stops the query from another thread.
pub fn run_query(conn: &Connection, sql: &str, limits: Limits) -> Result<QueryResult, QueryError> {
    check_read_only(conn, sql)?;
    // The guard is one layer; this is the one that holds by construction: whatever the
    // statement turns out to be, DuckDB refuses to write in a read-only transaction.
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")
        .map_err(|e| QueryError::Internal(format!("cannot start a read-only transaction: {e}")))?;
    let res = read_rows(conn, sql, limits);
    // Nothing to keep: the transaction only read.
    let _ = conn.execute_batch("ROLLBACK");
    res
}

/// [`run_query`], interrupted when `timeout` passes (for callers without a runtime: the CLI).
pub fn run_query_with_timeout(
    conn: &Connection,
    sql: &str,
    limits: Limits,
    timeout: std::time::Duration,
) -> Result<QueryResult, QueryError> {
    let interrupt = conn.interrupt_handle();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
            interrupt.interrupt();
        }
    });
    let res = run_query(conn, sql, limits);
    let _ = done.send(());
    let _ = watchdog.join();
    res
}

fn read_rows(conn: &Connection, sql: &str, limits: Limits) -> Result<QueryResult, QueryError> {
    let mut stmt = conn.prepare(sql).map_err(db_error)?;
    // A streaming execution: rows are produced as they are fetched, not all up front.
    drop(stmt.stream_arrow([]).map_err(db_error)?);
    let mut rows = stmt.raw_query();
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
    let mut truncated_by = None;
    // `{"columns":[…],"rows":[…],"truncated":…,"truncated_by":"bytes"}` around the rows:
    // counted against the byte limit too, so the whole answer stays under it.
    let mut bytes = serde_json::to_vec(&columns).map_or(0, |v| v.len()) + 80;
    'rows: while let Some(row) = rows.next().map_err(db_error)? {
        if out.len() == limits.max_rows {
            truncated_by = Some("rows");
            break;
        }
        // `[`, `]` and the comma after the row.
        bytes += 3;
        let mut values = Vec::with_capacity(n);
        for (i, null) in null_typed.iter().enumerate() {
            let value = if *null {
                Value::Null
            } else {
                let v = row.get_ref(i).map_err(db_error)?;
                // A huge text is refused before it is copied.
                if let ValueRef::Text(t) | ValueRef::Blob(t) = v {
                    if bytes + t.len() > limits.max_bytes {
                        truncated_by = Some("bytes");
                        break 'rows;
                    }
                }
                value_json(v)
            };
            bytes += json_len(&value) + 1;
            if bytes > limits.max_bytes {
                truncated_by = Some("bytes");
                break 'rows;
            }
            values.push(value);
        }
        out.push(values);
    }
    Ok(QueryResult {
        columns,
        rows: out,
        truncated: truncated_by.is_some(),
        truncated_by: truncated_by.map(str::to_string),
    })
}

/// Bytes of `v` as JSON, without building the text.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn db_error(e: duckdb::Error) -> QueryError {
    let msg = e.to_string();
    if msg.contains("Permission Error") || msg.contains("disabled by configuration") {
        QueryError::Refused(format!(
            "the SQL console cannot access files, the network or extensions ({msg})"
        ))
    } else if msg.contains("read-only mode") {
        QueryError::Refused(format!("the SQL console is read-only ({msg})"))
    } else if msg.contains("INTERRUPT") || msg.contains("Interrupted") {
        QueryError::Interrupted
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

    const LIMITS: Limits = Limits {
        max_rows: 10,
        max_bytes: 1 << 20,
    };

    #[test]
    fn limits_cut_while_streaming() {
        let conn = Connection::open_in_memory().unwrap();
        let r = run_query(&conn, "SELECT * FROM range(100000000)", LIMITS).unwrap();
        assert_eq!(r.rows.len(), 10);
        assert_eq!(r.truncated_by.as_deref(), Some("rows"));
        let small = Limits {
            max_rows: 1000,
            max_bytes: 10_000,
        };
        let r = run_query(&conn, "SELECT repeat('x', 1000000) AS x", small).unwrap();
        assert!(r.rows.is_empty());
        assert_eq!(r.truncated_by.as_deref(), Some("bytes"));
        let r = run_query(
            &conn,
            "SELECT range AS n, 'abcdefgh' AS t FROM range(5000)",
            small,
        )
        .unwrap();
        assert!(r.truncated && !r.rows.is_empty() && r.rows.len() < 5000);
        let r = run_query(&conn, "SELECT 1 AS one", small).unwrap();
        assert!(!r.truncated && r.truncated_by.is_none());
    }

    #[test]
    fn every_kind_of_value_becomes_json() {
        let conn = Connection::open_in_memory().unwrap();
        let r = run_query(
            &conn,
            "SELECT NULL AS n, [1, 2] AS l, {'a': 1} AS s, 1.5::DECIMAL(10,2) AS d, \
             INTERVAL 3 DAY AS i, 'x' AS t",
            LIMITS,
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
