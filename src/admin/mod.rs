//! The control plane: the admin HTTP server (axum) on its own runtime and thread, so that a
//! slow query can never starve the proxy.
//!
//! One module a concern, each with its routes and only the state it needs ([`Admin`]):
//!
//! | module | routes |
//! |---|---|
//! | `dashboard` | `GET /`, `/assets/*` |
//! | `reports` | `GET /api/reports` (the catalog), `GET /api/reports/{name}` |
//! | `query` | `POST /api/query` (the SQL console) |
//! | `ingest`, `segment` | `POST /api/events`, `POST /api/import`, Segment's `POST /v1/*` |
//! | `forget` | `POST /api/forget` |
//! | `health` | `GET /healthz`, `/readyz`, `/metrics`, `/api/sinks` |
//! | `auth` | `POST /api/login`, `/api/logout` |
//!
//! Every request passes the Host, Origin and content-type checks first (`guard.rs`); with an
//! admin token configured, all but health, the dashboard's files, sign-in and `/v1/*` need it
//! (`auth.rs`); compressed bodies are decoded for the ingestion routes (`body.rs`).
//! Connections are capped and slow headers timed out (`serve.rs`).

mod auth;
mod body;
mod dashboard;
mod error;
mod forget;
mod guard;
mod health;
mod ingest;
mod query;
mod reports;
mod segment;
mod serve;
mod session;

pub use error::ApiError;
pub use forget::Forget;
pub use guard::Security;
pub use health::Health;
pub use ingest::{Ingest, MAX_EVENTS_BODY};
pub use query::Console;
pub use reports::Reports;
pub use serve::Limits;

use axum::Router;
use duckdb::Connection;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tracing::{error, info};

/// The admin plane's parts, one per concern; each route's handlers see only their part.
pub struct Admin {
    /// `/api/query`: the SQL console.
    pub console: Console,
    /// `/api/reports/{name}`.
    pub reports: Reports,
    /// `/api/events`, `/api/import` and Segment's `/v1/*`.
    pub ingest: Ingest,
    /// `/api/forget`.
    pub forget: Forget,
    /// `/healthz`, `/readyz`, `/metrics` and `/api/sinks`.
    pub health: Health,
    /// Accepted hosts, trusted proxies, the admin token, sessions and the sign-in throttle:
    /// the checks in front of every route, and `/api/login`, `/api/logout`.
    pub security: Security,
}

/// The store, read by the console, the reports, forget and the sinks' status.
pub struct Reader {
    conn: Mutex<Connection>,
    /// Each request borrows DuckDB's whole memory limit while it runs.
    budget: Arc<crate::store::Budget>,
}

impl Reader {
    pub fn new(conn: Connection, budget: Arc<crate::store::Budget>) -> Arc<Reader> {
        Arc::new(Reader {
            conn: Mutex::new(conn),
            budget,
        })
    }

    /// A connection of its own for one request, with the whole memory limit lent to it.
    fn connection(&self) -> Result<Lent, ApiError> {
        let loan = self
            .budget
            .lend()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Lent {
            conn: self.small_connection()?,
            _loan: loan,
        })
    }

    /// A connection of its own for a small read (the sinks' status), at the limit as it is:
    /// a monitor polling it does not keep the whole limit lent.
    fn small_connection(&self) -> Result<Connection, ApiError> {
        self.conn
            .lock()
            .map_err(|_| ApiError::Internal("store connection lock poisoned".into()))?
            .try_clone()
            .map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// A request's connection and its loan of the memory limit, returned when both are dropped.
struct Lent {
    conn: Connection,
    _loan: crate::store::Loan,
}

impl std::ops::Deref for Lent {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Run `work` on a blocking thread: store calls never hold up the admin runtime. Its error
/// becomes the API error it maps to; a panic is an internal error (500, the detail logged).
async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(Into::into)
}

pub fn router(admin: Admin) -> Router {
    let security = Arc::new(admin.security);
    Router::new()
        .merge(dashboard::routes())
        .merge(auth::routes(security.clone()))
        .merge(reports::routes(admin.reports))
        .merge(query::routes(admin.console))
        .merge(ingest::routes(admin.ingest))
        .merge(forget::routes(admin.forget))
        .merge(health::routes(admin.health))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_EVENTS_BODY))
        .layer(axum::middleware::from_fn(body::decompress))
        .layer(axum::middleware::from_fn_with_state(
            security.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(security, guard::check))
}

/// A running admin server.
pub struct AdminServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Bind `addr` now (so a busy port fails start-up) and serve on a thread of its own.
    pub fn spawn(addr: SocketAddr, limits: Limits, admin: Admin) -> std::io::Result<Self> {
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
                    serve::serve(listener, router(admin), limits, async {
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
