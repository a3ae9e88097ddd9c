//! One client connection: admission (`server.max_connections` open at once), then hyper's
//! HTTP/1.1 connection with tollgate's limits:
//!
//! - the first request's header within `server.header_timeout_secs` of the accept, each later
//!   one within `server.keepalive_secs` plus that of the previous response's end (idle wait
//!   included), else the connection is closed: a client sending a byte every few seconds
//!   cannot hold it. The clock runs only while the client has the turn ([`Turns`]): a
//!   response, however long it takes to arrive and be sent, is never cut by it;
//! - at most `server.keepalive_requests` requests, then `Connection: close`;
//! - header case passes through as the client and the upstream wrote it, and no `Date` is
//!   added to a response that has none (passthrough is byte-exact);
//! - pipelined requests are answered in order;
//! - at shutdown, idle connections close at once and busy ones after their response.

use super::body::Body;
use super::turns::{Late, Turns};
use super::Worker;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// The largest request header block taken (431 beyond), as Pingora and nginx's
/// `large_client_header_buffers` allow in order of magnitude: capture cuts every field it keeps
/// far below this (`event::limits`), and a connection holds at most this much unparsed.
pub const MAX_HEADER_BYTES: usize = (1 << 20) + (64 << 10);

/// The limits of one listener, from `[server]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keepalive: Duration,
    /// 0: no limit.
    pub keepalive_requests: u32,
}

impl Limits {
    /// The limits `[server]` sets.
    pub fn new(s: &crate::config::Settings) -> Limits {
        Limits {
            max_connections: s.max_connections,
            header_timeout: s.header_timeout,
            keepalive: Duration::from_secs(s.keepalive_secs),
            keepalive_requests: s.keepalive_requests,
        }
    }
}

/// What a worker needs to serve its connections.
pub struct Listener {
    worker: Rc<Worker>,
    http: http1::Builder,
    limits: Limits,
    /// Shared by every worker: the cap is on the whole listener.
    open: Arc<AtomicUsize>,
}

/// One open connection, counted until dropped.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Listener {
    /// Connections open on every worker's listener together.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn new(worker: Rc<Worker>, limits: Limits, open: Arc<AtomicUsize>) -> Listener {
        let mut http = http1::Builder::new();
        // The header deadlines are the connection's own ([`Turns`]): one timer per connection,
        // moved rather than made anew for each request as hyper's would be.
        http.header_read_timeout(None)
            .preserve_header_case(true)
            .auto_date_header(false)
            .max_buf_size(MAX_HEADER_BYTES)
            .pipeline_flush(true);
        Listener {
            worker,
            http,
            limits,
            open,
        }
    }

    /// Serve one accepted connection until it closes.
    pub async fn serve(
        self: Rc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let metrics = self.worker.proxy().metrics().clone();
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            metrics.refused("connection_cap");
            return; // dropped: closed at once
        }
        let _open = Open(&self.open);
        let first_due = Instant::now() + self.limits.header_timeout;
        let turns = Rc::new(Turns::new(
            first_due,
            self.limits.keepalive + self.limits.header_timeout,
        ));
        let svc = {
            let worker = self.worker.clone();
            let turns = turns.clone();
            let limit = self.limits.keepalive_requests;
            hyper::service::service_fn(move |req| {
                let n = turns.started();
                let worker = worker.clone();
                let turns = turns.clone();
                async move {
                    let mut resp: http::Response<Body> = worker.handle(req, peer).await;
                    if limit > 0 && n >= limit {
                        resp.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, Infallible>(resp.map(|b| b.on_sent(turns)))
                }
            })
        };
        let conn = self
            .http
            .serve_connection(TokioIo::new(tcp), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let clock = tokio::time::sleep_until(first_due);
        tokio::pin!(clock);
        let mut draining = *shutdown.borrow();
        if draining {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                biased;
                _ = &mut conn => return,
                () = Late::new(clock.as_mut(), &turns) => {
                    // A late first header is a slow client; a connection left idle after its
                    // responses is a browser keeping it for later, closed without a count.
                    if turns.served() == 0 {
                        metrics.refused("header_timeout");
                    }
                    return;
                }
                _ = shutdown.changed(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
