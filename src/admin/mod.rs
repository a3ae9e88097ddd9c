//! The control plane: the admin HTTP server (axum) on its own runtime and thread, so that a
//! slow query can never starve the proxy.
//!
//! Routes: the dashboard (`GET /`, `/assets/*`), `GET /api/reports/{name}`, `POST /api/query`,
//! `POST /api/forget`, `GET /api/sinks`, `POST /api/events`, `POST /api/import`, Segment's
//! `POST /v1/*`, `POST /api/login`, `POST /api/logout`, `GET /healthz`, `GET /readyz`,
//! `GET /metrics`. Every request passes the Host, Origin and content-type checks first
//! (`guard.rs`); with an admin token configured, all but health, the dashboard's files, sign-in
//! and `/v1/*` need it (`auth.rs`); compressed bodies are decoded for the ingestion routes
//! (`body.rs`). Connections are capped and slow headers timed out (`serve.rs`).

mod auth;
mod body;
mod dashboard;
mod error;
mod guard;
mod query;
mod reports;
mod segment;
mod serve;
mod session;

pub use crate::ingest::Rejected;
pub use error::ApiError;
pub use guard::Security;
pub use query::Console;
pub use serve::Limits;

use crate::event::{now_us, Source};
use crate::ingest::{native, IngestReport, IngestSender};
use crate::metrics::Metrics;
use crate::pipeline::{EventSender, WriterHealth};
use crate::store::{forget, forget_again, ForgetReport, Subject};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use duckdb::Connection;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tracing::{error, info};

/// What the admin handlers share.
pub struct AdminState {
    /// A connection to the store; each query runs on its own clone.
    pub reader: Mutex<Connection>,
    pub metrics: Arc<Metrics>,
    pub events: EventSender,
    pub health: Arc<WriterHealth>,
    /// The pipeline's flush interval: how long an event can still be in flight.
    pub flush_interval: std::time::Duration,
    /// The durable path to the writer, for ingested events.
    pub ingest: IngestSender,
    /// The site id stored in ingested events.
    pub site: String,
    /// Most items in one `POST /api/events` request.
    pub api_max_items: usize,
    /// CSV column mapping from the configuration.
    pub import_map: std::collections::HashMap<String, String>,
    /// Segment API write keys.
    pub write_keys: Vec<String>,
    /// The configured sinks, for `/api/sinks`.
    pub sinks: Vec<crate::config::SinkSettings>,
    /// `server.admin_token`; `None` leaves the admin API open (loopback only).
    pub admin_token: Option<String>,
    /// The reports' time zone.
    pub timezone: crate::reports::SiteTz,
    /// The SQL console's limits and slots.
    pub console: Console,
    /// Accepted hosts, trusted proxies, sessions and the sign-in throttle.
    pub security: Security,
}

impl AdminState {
    /// A connection of its own for one request.
    fn connection(&self) -> Result<Connection, ApiError> {
        self.reader
            .lock()
            .map_err(|_| ApiError::Internal("store connection lock poisoned".into()))?
            .try_clone()
            .map_err(|e| ApiError::Internal(e.to_string()))
    }
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/app.js", get(dashboard::app_js))
        .route("/assets/style.css", get(dashboard::style_css))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/reports/{name}", get(reports::handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/query", post(query::handle))
        .route("/api/forget", post(forget_handler))
        .route("/api/sinks", get(sinks_handler))
        .route("/api/events", post(events_handler))
        .route("/api/import", post(import_handler))
        .route("/v1/{kind}", post(segment::handle))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_EVENTS_BODY))
        .layer(axum::middleware::from_fn(body::decompress))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .with_state(state)
}

async fn readyz(State(st): State<Arc<AdminState>>) -> impl IntoResponse {
    let store = st.health.last_error().unwrap_or_else(|| "ok".into());
    Json(serde_json::json!({ "status": "ready", "store": store }))
}

async fn metrics(State(st): State<Arc<AdminState>>) -> impl IntoResponse {
    st.metrics.queue_depth.set(st.events.depth() as i64);
    st.metrics.queue_bytes.set(st.events.queued_bytes() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    #[serde(default)]
    pub visitor_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

impl ForgetRequest {
    pub fn subject(&self) -> Result<Subject, String> {
        match (&self.visitor_id, &self.user_id) {
            (Some(v), None) => {
                Subject::visitor(v).ok_or_else(|| format!("visitor_id {v:?} is not a UUID"))
            }
            (None, Some(u)) if !u.is_empty() => Ok(Subject::User(u.clone())),
            _ => Err("give exactly one of visitor_id or user_id".into()),
        }
    }
}

/// Delete a visitor's or user's events. Events of theirs still in the pipeline's queue land
/// within one flush interval; the handler waits that long and deletes again, so the answer
/// counts them too.
async fn forget_handler(
    State(st): State<Arc<AdminState>>,
    body: Result<Json<ForgetRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ForgetReport>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let subject = req.subject().map_err(ApiError::BadRequest)?;
    let conn = st.connection()?;
    let wait = st.flush_interval + std::time::Duration::from_millis(200);
    let report = tokio::task::spawn_blocking(move || {
        let mut report = forget(&conn, &subject)?;
        std::thread::sleep(wait);
        forget_again(&conn, &subject, &mut report)?;
        Ok::<_, crate::store::StoreError>(report)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    info!(request_id = %report.request_id, rows = report.rows_deleted, "Forget request done.");
    Ok(Json(report))
}

/// `GET /api/sinks`: each sink's offset, lag, last error and dead letters.
async fn sinks_handler(
    State(st): State<Arc<AdminState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let conn = st.connection()?;
    let sinks = st.sinks.clone();
    let status = tokio::task::spawn_blocking(move || crate::sinks::status(&conn, &sinks))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(serde_json::json!({ "sinks": status })))
}

/// Largest body of `POST /api/events`.
pub const MAX_EVENTS_BODY: usize = 16 * 1024 * 1024;

/// Commit a request's items (see [`crate::ingest::ingest_items`]); a store that cannot take
/// them now is a 503 to retry.
pub async fn ingest_items(
    ingest: &IngestSender,
    items: Vec<Result<serde_json::Value, String>>,
    cx: &native::Context<'_>,
) -> Result<IngestReport, ApiError> {
    crate::ingest::ingest_items(ingest, items, cx)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// `POST /api/events`: server-side events, as a JSON object, a JSON array or NDJSON.
/// 200 when at least one item was valid (rejected ones are listed), 400 when none was.
async fn events_handler(
    State(st): State<Arc<AdminState>>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let items = native::split_body(&body, st.api_max_items).map_err(|e| match e {
        native::BodyError::TooMany(_) => ApiError::TooLarge(e.to_string()),
        native::BodyError::Invalid(m) => ApiError::BadRequest(m),
    })?;
    let cx = native::Context {
        site: &st.site,
        source: Source::Server,
        browser: None,
        now_us: now_us(),
    };
    let report = ingest_items(&st.ingest, items, &cx).await?;
    let status = if report.accepted == 0 {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Json(report)))
}

/// `POST /api/import?strict=true&map=Col%3Dfield`: a CSV file of offline events
/// (`ingest::import`). 200 when rows were imported (bad ones listed by line); 400 when none
/// was good, or in strict mode when any was bad (then nothing is imported).
async fn import_handler(
    State(st): State<Arc<AdminState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let (strict, map_args) = import_params(query.as_deref().unwrap_or(""))?;
    let mut map = st.import_map.clone();
    map.extend(crate::ingest::import::parse_map(&map_args).map_err(ApiError::BadRequest)?);
    let report = crate::ingest::import_file(&st.ingest, &body, &map, &st.site, now_us(), strict)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(ApiError::BadRequest)?;
    let status = if report.accepted == 0 || report.refused {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Json(report)))
}

/// `strict` and the `map` pairs of an import's query string.
fn import_params(query: &str) -> Result<(bool, Vec<String>), ApiError> {
    let mut strict = false;
    let mut map = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::enrich::privacy::percent_decode(v).into_owned();
        match k {
            "strict" => {
                strict = match v.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "strict={v:?} is not true or false"
                        )))
                    }
                }
            }
            "map" => map.push(v),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {k:?} (expected strict, map)"
                )))
            }
        }
    }
    Ok((strict, map))
}

/// A running admin server.
pub struct AdminServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Bind `addr` now (so a busy port fails start-up) and serve on a thread of its own.
    pub fn spawn(
        addr: SocketAddr,
        limits: Limits,
        state: Arc<AdminState>,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tollgate-admin".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("tollgate-admin-rt")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(error) => {
                        error!(%error, "Admin runtime failed to start.");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(error) => {
                            error!(%error, "Admin listener failed.");
                            return;
                        }
                    };
                    info!(%addr, "Admin server listening.");
                    serve::serve(listener, router(state), limits, async {
                        let _ = rx.await;
                    })
                    .await;
                });
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
            })?;
        Ok(AdminServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
