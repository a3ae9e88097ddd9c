//! Shipping events to warehouses, at least once.
//!
//! Each configured sink runs on a thread of its own with its own store connection. It tails
//! `events` by `seq`: it notes the range it is about to ship (`pending_upto`), reads it,
//! hands it to its [`Sink`], and only once the sink has acknowledged the whole range moves
//! its offset (`shipped_seq`) past it, in the store. A crash in between resends exactly that
//! range, and the destination drops the duplicates by `event_id` (ReplacingMergeTree,
//! `ON CONFLICT DO NOTHING`, file names derived from the range).
//!
//! A sink answers each attempt with an [`Outcome`]. `Retry` (the destination is down, slow or
//! misconfigured) is retried with exponential backoff and jitter, forever: nothing is skipped.
//! `Reject` (the destination refused the data itself) splits the batch in halves until the
//! refused events are alone; each of those goes to `sink_dead_letter` with the reason, and
//! the rest flow on.
//!
//! `forget` requests (`forget_requests`) are repeated downstream by each sink once they are a
//! few seconds old, after the batches read before them were delivered; `sink_forgets` records
//! which each sink has done.

mod clickhouse;
mod files;
mod postgres;
mod retention;
mod runner;
mod state;

pub use clickhouse::create_table as clickhouse_ddl;
pub use files::{bigquery_schema, BIGQUERY_SCHEMA_FILE};
pub use postgres::create_table as postgres_ddl;
pub use retention::{prune, spawn_retention, PruneReport};
pub use runner::{spawn, Sinks};
pub use state::{status, ForgetRequest, SinkStatus};

use crate::event::{Field, COLUMNS};
use crate::store::Record;
use async_trait::async_trait;

/// What a destination said to one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every event of the batch is durable downstream.
    Delivered,
    /// Nothing can be said about the events: try the same batch again later.
    Retry(String),
    /// The destination refuses the data of this batch (a value its schema does not take).
    /// Retrying it unchanged would fail the same way.
    Reject(String),
}

/// The `seq` range a batch covers: `after < seq <= upto`. Events may be missing from it
/// (deleted by `forget`), so it is carried beside the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub after: i64,
    pub upto: i64,
}

/// A destination.
#[async_trait]
pub trait Sink: Send {
    /// Deliver `records`, all of `range`. Must be idempotent: the same range may be sent again
    /// after a crash or a retry, and must not leave duplicates that survive deduplication by
    /// `event_id`.
    async fn send(&mut self, range: Range, records: &[Record]) -> Outcome;

    /// Repeat a `forget` request downstream: delete the subject's events there (or, for
    /// files, which are not rewritten, record the request beside them). Must be idempotent.
    async fn forget(&mut self, request: &ForgetRequest) -> Outcome;
}

/// Build the sink for `target`.
pub(crate) fn build(
    target: &crate::config::SinkTarget,
    timeout: std::time::Duration,
) -> anyhow::Result<Box<dyn Sink>> {
    use crate::config::SinkTarget;
    Ok(match target {
        SinkTarget::ClickHouse { url, table } => {
            Box::new(clickhouse::ClickHouse::new(url, table, timeout)?)
        }
        SinkTarget::Postgres { url, table } => {
            Box::new(postgres::Postgres::new(url, table, timeout)?)
        }
        SinkTarget::Files { dir, format } => Box::new(files::Files::new(dir, *format)?),
    })
}

/// One record as a JSON object with the store's column names: the dead-letter payload.
pub(crate) fn record_json(r: &Record) -> serde_json::Value {
    use serde_json::json;
    let e = &r.event;
    let ts = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
    };
    let object = COLUMNS
        .iter()
        .map(|c| {
            let value = match &c.field {
                Field::Seq => json!(r.seq),
                Field::Uuid(a) => json!((a.get)(e)),
                Field::Timestamp(a) => json!((a.get)(e).and_then(ts)),
                Field::Text(a) | Field::Json(a) => json!((a.get)(e)),
                Field::Int(a) => json!((a.get)(e)),
                Field::BigInt(a) => json!((a.get)(e)),
                Field::Double(a) => json!((a.get)(e)),
                Field::Bool(a) => json!((a.get)(e)),
            };
            (c.name.to_string(), value)
        })
        .collect();
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Source};

    #[test]
    fn the_dead_letter_payload_has_every_column_with_its_value() {
        let r = Record {
            seq: 9,
            event: Event {
                ts_us: 1_000_001,
                user_id: Some("u1".into()),
                status: Some(404),
                bytes_out: Some(12),
                is_bot: Some(true),
                props: Some(r#"{"a":1}"#.into()),
                ..Event::now("signup", "shop", Source::Server)
            },
        };
        let v = record_json(&r);
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        keys.sort_unstable();
        names.sort_unstable();
        assert_eq!(keys, names);
        assert_eq!(v["seq"], 9);
        assert_eq!(v["event_id"], r.event.event_id.to_string());
        assert_eq!(v["ts"], "1970-01-01T00:00:01.000001Z");
        assert_eq!(v["name"], "signup");
        assert_eq!(v["source"], "server");
        assert_eq!(v["user_id"], "u1");
        assert_eq!(v["status"], 404);
        assert_eq!(v["bytes_out"], 12);
        assert_eq!(v["is_bot"], true);
        assert_eq!(v["props"], r#"{"a":1}"#);
        assert!(v["visitor_id"].is_null() && v["duration_ms"].is_null());
    }
}
