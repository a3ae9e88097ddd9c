//! The admin listener's accept loop: at most `server.admin_max_connections` connections at a
//! time, a deadline for every request's headers, and a bounded drain on stop.
//!
//! `axum::serve` has neither limit, so a client that opens connections and never finishes its
//! headers would hold each one forever. Here a connection over the cap waits in the kernel's
//! accept queue until one closes, and hyper closes any connection whose headers (or, on an idle
//! keep-alive connection, whose next request) take longer than `server.admin_header_timeout_secs`.

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// The connection a request arrived on, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// The admin listener's connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `server.admin_max_connections`.
    pub max_connections: usize,
    /// `server.admin_header_timeout_secs`.
    pub header_timeout: Duration,
    /// How long requests in flight get to finish once the server is told to stop.
    pub drain: Duration,
}

impl Limits {
    pub fn new(settings: &crate::config::Settings) -> Self {
        Limits {
            max_connections: settings.admin_max_connections,
            header_timeout: settings.admin_header_timeout,
            drain: Duration::from_secs(5),
        }
    }
}

/// Serve `router` on `listener` until `stop` resolves; then stop accepting, let requests in
/// flight finish (idle keep-alive connections close at once) for up to `limits.drain`, and
/// return.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(stop);
    loop {
        // A free slot first: over the cap, new connections wait in the accept queue.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!(%error, "Admin listener failed to accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let conn = Conn { peer, local };
        let inner = TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(conn);
            req.extensions_mut().insert(ConnectInfo(peer));
            inner.call(req)
        });
        let served = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = served.await {
                debug!(%error, %peer, "Admin connection ended with an error.");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain) => {
            warn!(drain = ?limits.drain, "Admin requests still running at shutdown; dropping them.");
        }
    }
}
