//! Admission to the proxy listener, around Pingora's HTTP/1 connection loop: a cap on the
//! client connections open at once (`server.max_connections`), a deadline for each request's
//! header (`server.header_timeout_secs`), and HTTP/1.1 pipelining served in order.
//!
//! Pingora times out each `read()` of a header, not the whole: a client sending a byte every
//! few seconds would hold its connection (and a task) forever, and a thousand such clients the
//! listener. Here the connection's task races a timer against the header: the proxy's
//! `new_ctx`, which Pingora calls as soon as a header is parsed, marks it read
//! ([`header_read`]); if the timer fires first, the connection is dropped.
//!
//! The loop itself is Pingora's (`impl ServerApp for HttpServerApp` in pingora-core 0.9.1,
//! HTTP/1 only: tollgate's listener is plain HTTP/1.1), with these three additions.

use crate::metrics::Metrics;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

tokio::task_local! {
    /// Set by [`header_read`] on the connection's task.
    static HEADER_READ: Arc<AtomicBool>;
}

/// Called by the proxy when a request's header has been read (from `new_ctx`, the first thing
/// Pingora does after parsing it). A no-op outside a [`Guarded`] connection.
pub fn header_read() {
    let _ = HEADER_READ.try_with(|f| f.store(true, Ordering::Relaxed));
}

/// The proxy app with admission control.
pub struct Guarded<SV: ProxyHttp> {
    inner: Arc<HttpProxy<SV>>,
    /// Shared by every worker's app: the cap is on the whole listener.
    open: Arc<AtomicUsize>,
    max_connections: usize,
    header_timeout: Duration,
    /// How long a kept-alive connection may idle before its next request.
    keepalive: Duration,
    metrics: Arc<Metrics>,
}

impl<SV: ProxyHttp> Guarded<SV> {
    pub fn new(
        inner: HttpProxy<SV>,
        open: Arc<AtomicUsize>,
        max_connections: usize,
        header_timeout: Duration,
        keepalive: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Guarded {
            inner: Arc::new(inner),
            open,
            max_connections,
            header_timeout,
            keepalive,
            metrics,
        }
    }
}

/// One open connection, counted until dropped.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl<SV> ServerApp for Guarded<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.metrics.refused("connection_cap");
            return None; // dropped: closed at once
        }
        let _open = Open(&self.open);
        let limit = self
            .inner
            .server_options
            .as_ref()
            .and_then(|o| o.keepalive_request_limit);
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive((!*shutdown.borrow()).then_some(60));
        session.set_keepalive_reuses_remaining(limit);
        // A new connection has no idle wait before its first header.
        let mut deadline = self.header_timeout;
        // One flag per connection, reset per request: no allocation per request.
        let read = Arc::new(AtomicBool::new(false));
        loop {
            // Requests a client pipelines are answered one after the other, in order, instead
            // of the second being dropped with the connection (Pingora's default).
            session.set_pipelining_enabled(true);
            read.store(false, Ordering::Relaxed);
            let serve = HEADER_READ.scope(
                read.clone(),
                HttpServerApp::process_new_http(&self.inner, session, shutdown),
            );
            tokio::pin!(serve);
            let timer = tokio::time::sleep(deadline);
            tokio::pin!(timer);
            let reused = tokio::select! {
                biased;
                r = &mut serve => r,
                () = &mut timer, if !read.load(Ordering::Relaxed) => {
                    // Checked again: the header may have been read since the timer was armed.
                    if read.load(Ordering::Relaxed) {
                        serve.await
                    } else {
                        self.metrics.refused("header_timeout");
                        return None;
                    }
                }
            };
            let (stream, persistent) = reused?.consume();
            session = ServerSession::new_http1(stream);
            if let Some(p) = persistent {
                p.apply_to_session(&mut session);
            }
            deadline = self.keepalive + self.header_timeout;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}
