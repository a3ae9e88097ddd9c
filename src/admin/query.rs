//! `POST /api/query`: the read-only SQL console, bounded in time, size and concurrency.
//!
//! - The guard and a read-only transaction ([`crate::store::run_query`]) make it unable to
//!   write.
//! - Each query runs on a connection of its own, in a blocking thread, and holds one of
//!   `console.max_concurrent` slots until it has really stopped; with none free the answer is
//!   429 at once.
//! - It is interrupted (`duckdb_interrupt`) when `console.timeout_secs` passes (504), or when
//!   its client goes away (the handler's future is dropped).
//! - Rows and bytes are limited while they stream (`console.max_rows`, `console.max_bytes`).

use super::{ApiError, Reader};
use crate::metrics::Metrics;
use crate::store::{run_query, Limits, QueryError, QueryResult};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use duckdb::InterruptHandle;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The console: the store, its limits and its free slots.
pub struct Console {
    reader: Arc<Reader>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    limits: crate::config::Console,
}

impl Console {
    pub fn new(reader: Arc<Reader>, metrics: Arc<Metrics>, limits: crate::config::Console) -> Self {
        Console {
            reader,
            metrics,
            slots: Arc::new(Semaphore::new(limits.max_concurrent)),
            limits,
        }
    }
}

pub fn routes(console: Console) -> Router {
    Router::new()
        .route("/api/query", post(handle))
        .with_state(Arc::new(console))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub sql: String,
    /// Fewer rows than `console.max_rows`; more are not given.
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// Interrupts the query when dropped before [`Cancel::disarm`]: the handler's future is
/// dropped when the client goes away.
struct Cancel(Option<(Arc<InterruptHandle>, Arc<Metrics>)>);

impl Cancel {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if let Some((h, metrics)) = self.0.take() {
            h.interrupt();
            metrics.console("cancelled");
        }
    }
}

async fn handle(
    State(c): State<Arc<Console>>,
    body: Result<Json<QueryRequest>, JsonRejection>,
) -> Result<Json<QueryResult>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Ok(slot) = c.slots.clone().try_acquire_owned() else {
        c.metrics.console("busy");
        return Err(ApiError::TooMany(format!(
            "{} console queries are running already (console.max_concurrent); retry when one \
             has finished",
            c.limits.max_concurrent
        )));
    };
    let conn = c.reader.connection()?;
    let interrupt = conn.interrupt_handle();
    let cancel = Cancel(Some((interrupt.clone(), c.metrics.clone())));
    let limits = Limits {
        max_rows: req
            .max_rows
            .unwrap_or(c.limits.max_rows)
            .min(c.limits.max_rows),
        max_bytes: c.limits.max_bytes,
    };
    let task = tokio::task::spawn_blocking(move || {
        // The slot is held until the query has really stopped, not just until its answer.
        let _slot = slot;
        run_query(&conn, &req.sql, limits)
    });
    let outcome = tokio::time::timeout(c.limits.timeout, task).await;
    cancel.disarm();
    let res = match outcome {
        Ok(joined) => joined.map_err(|e| ApiError::Internal(e.to_string()))?,
        Err(_) => {
            interrupt.interrupt();
            c.metrics.console("timeout");
            return Err(ApiError::Timeout(format!(
                "the query ran longer than {} s and was stopped (console.timeout_secs); \
                 narrow it (a date range, a LIMIT) or raise the limit",
                c.limits.timeout.as_secs()
            )));
        }
    };
    c.metrics.console(match &res {
        Ok(r) if r.truncated => "truncated",
        Ok(_) => "ok",
        Err(QueryError::Refused(_)) => "refused",
        // Interrupted without a deadline or a client gone: shutdown.
        Err(QueryError::Interrupted) => "cancelled",
        Err(_) => "invalid",
    });
    Ok(Json(res?))
}
