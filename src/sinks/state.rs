//! What the store remembers of each sink: its offset, the range in flight, its last error and
//! its dead letters.

use crate::config::SinkSettings;
use crate::event::columns::{RECEIVED_AT, SEQ};
use crate::event::now_us;
use crate::store::{Record, StoreError, Subject};
use duckdb::types::{TimeUnit, Value};
use duckdb::{params, Connection};
use serde::{Deserialize, Serialize};

/// A sink's position: everything up to `shipped` is acknowledged; `pending` is the end of the
/// range it was shipping when it last stopped, if it had not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offset {
    pub shipped: i64,
    pub pending: Option<i64>,
}

fn ts_now() -> Value {
    Value::Timestamp(TimeUnit::Microsecond, now_us())
}

/// Load `sink`'s offset, creating it at 0 (ship everything stored) the first time.
pub(super) fn load(conn: &Connection, sink: &str) -> Result<Offset, StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO sink_offsets (sink, shipped_seq, updated_at) VALUES (?, 0, ?)",
        params![sink, ts_now()],
    )?;
    Ok(conn.query_row(
        "SELECT shipped_seq, pending_upto FROM sink_offsets WHERE sink = ?",
        [sink],
        |r| {
            Ok(Offset {
                shipped: r.get(0)?,
                pending: r.get(1)?,
            })
        },
    )?)
}

/// Record that `sink` is about to ship up to `upto`.
pub(super) fn begin(conn: &Connection, sink: &str, upto: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sink_offsets SET pending_upto = ?, updated_at = ? WHERE sink = ?",
        params![upto, ts_now(), sink],
    )?;
    Ok(())
}

/// Record that `sink` has shipped everything up to `upto`, and has no error.
pub(super) fn commit(conn: &Connection, sink: &str, upto: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sink_offsets SET shipped_seq = ?, pending_upto = NULL, updated_at = ?,
             last_error = NULL, last_error_at = NULL
         WHERE sink = ?",
        params![upto, ts_now(), sink],
    )?;
    Ok(())
}

/// Record `sink`'s latest error.
pub(super) fn set_error(conn: &Connection, sink: &str, error: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sink_offsets SET last_error = ?, last_error_at = ? WHERE sink = ?",
        params![error, ts_now(), sink],
    )?;
    Ok(())
}

/// Put `record` in `sink`'s dead letters, with `reason`.
pub(super) fn dead_letter(
    conn: &Connection,
    sink: &str,
    record: &Record,
    reason: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sink_dead_letter VALUES (?, ?, ?, ?, ?, ?)",
        params![
            sink,
            record.seq,
            record.event.event_id.to_string(),
            ts_now(),
            reason,
            super::record_json(record).to_string()
        ],
    )?;
    Ok(())
}

/// A `forget` request a sink has still to repeat downstream.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgetRequest {
    pub request_id: uuid::Uuid,
    pub requested_at_us: i64,
    pub subject: Subject,
}

/// The forget requests made before `before_us` that `sink` has not repeated yet, oldest first.
pub(super) fn pending_forgets(
    conn: &Connection,
    sink: &str,
    before_us: i64,
) -> Result<Vec<ForgetRequest>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT request_id::VARCHAR, epoch_us(requested_at), subject_type, subject
         FROM forget_requests f
         WHERE epoch_us(requested_at) < ?
           AND NOT EXISTS (SELECT 1 FROM sink_forgets d
                           WHERE d.sink = ? AND d.request_id = f.request_id)
         ORDER BY requested_at",
    )?;
    let rows = stmt.query_map(params![before_us, sink], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, at, kind, subject) = row?;
        if let (Ok(request_id), Some(subject)) = (
            uuid::Uuid::parse_str(&id),
            Subject::from_row(&kind, &subject),
        ) {
            out.push(ForgetRequest {
                request_id,
                requested_at_us: at,
                subject,
            });
        }
    }
    Ok(out)
}

/// Record that `sink` has repeated `request_id` downstream.
pub(super) fn forget_applied(
    conn: &Connection,
    sink: &str,
    request_id: uuid::Uuid,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sink_forgets VALUES (?, ?, ?)",
        params![sink, request_id.to_string(), ts_now()],
    )?;
    Ok(())
}

/// One sink as `tollgate sinks` and `/api/sinks` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SinkStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    /// Every event with a `seq` up to this one is shipped.
    pub offset: i64,
    /// Events stored but not shipped yet.
    pub lag_events: i64,
    /// How long the oldest unshipped event has waited since it was received, in seconds.
    pub lag_seconds: f64,
    pub last_error: Option<String>,
    /// When `last_error` happened, RFC 3339.
    pub last_error_at: Option<String>,
    pub dead_letters: i64,
}

/// The status of each of `sinks`, read from the store.
pub fn status(conn: &Connection, sinks: &[SinkSettings]) -> Result<Vec<SinkStatus>, StoreError> {
    let now = now_us();
    let mut out = Vec::with_capacity(sinks.len());
    for s in sinks {
        let (offset, last_error, last_error_at): (i64, Option<String>, Option<i64>) = conn
            .query_row(
                "SELECT shipped_seq, last_error, epoch_us(last_error_at)
                 FROM sink_offsets WHERE sink = ?",
                [&s.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .or_else(|e| match e {
                duckdb::Error::QueryReturnedNoRows => Ok((0, None, None)),
                e => Err(e),
            })?;
        let (lag_events, oldest): (i64, Option<i64>) = conn.query_row(
            &format!("SELECT count(*), epoch_us(min({RECEIVED_AT})) FROM events WHERE {SEQ} > ?"),
            [offset],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let dead_letters: i64 = conn.query_row(
            "SELECT count(*) FROM sink_dead_letter WHERE sink = ?",
            [&s.name],
            |r| r.get(0),
        )?;
        out.push(SinkStatus {
            name: s.name.clone(),
            kind: s.target.kind().to_string(),
            target: s.target.describe(),
            offset,
            lag_events,
            lag_seconds: oldest.map_or(0.0, |t| ((now - t).max(0) as f64) / 1e6),
            last_error,
            last_error_at: last_error_at
                .and_then(chrono::DateTime::from_timestamp_micros)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            dead_letters,
        });
    }
    Ok(out)
}
