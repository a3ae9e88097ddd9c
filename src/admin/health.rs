//! Health and state: `GET /healthz` (the process answers), `GET /readyz` (and the store's last
//! error), `GET /metrics` (Prometheus text) and `GET /api/sinks` (each sink's offset, lag, last
//! error and dead letters).

use super::{blocking, ApiError, Reader};
use crate::config::SinkSettings;
use crate::metrics::Metrics;
use crate::pipeline::{EventSender, WriterHealth};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// What the health routes read.
pub struct Health {
    pub reader: Arc<Reader>,
    pub metrics: Arc<Metrics>,
    /// The pipeline's queue, for its depth.
    pub events: EventSender,
    pub writer: Arc<WriterHealth>,
    /// The configured sinks.
    pub sinks: Vec<SinkSettings>,
}

pub fn routes(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/sinks", get(sinks))
        .with_state(Arc::new(health))
}

async fn readyz(State(st): State<Arc<Health>>) -> impl IntoResponse {
    let store = st.writer.last_error().unwrap_or_else(|| "ok".into());
    Json(serde_json::json!({ "status": "ready", "store": store }))
}

async fn metrics(State(st): State<Arc<Health>>) -> impl IntoResponse {
    st.metrics.queue_depth.set(st.events.depth() as i64);
    st.metrics.queue_bytes.set(st.events.queued_bytes() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
}

/// `GET /api/sinks`: each sink's offset, lag, last error and dead letters.
async fn sinks(State(st): State<Arc<Health>>) -> Result<Json<serde_json::Value>, ApiError> {
    let conn = st.reader.small_connection()?;
    let sinks = st.sinks.clone();
    let status = blocking(move || crate::sinks::status(&conn, &sinks)).await?;
    Ok(Json(serde_json::json!({ "sinks": status })))
}
