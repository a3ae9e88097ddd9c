//! A worker's HTTP/1.1 connections to the upstream.
//!
//! Each proxy worker is one thread running a current-thread runtime and a `LocalSet`, and owns
//! one [`Pool`]: nothing in it is shared with other workers or locked. [`Pool::send`] must be
//! called inside that `LocalSet` (connections are driven by `spawn_local`).
//!
//! - **Connect**: TCP to [`UpstreamTarget::next_addr`] within `connect_timeout` (when that
//!   fails and the host has several addresses, one more try on another), `TCP_NODELAY`, then
//!   TLS when `upstream.tls` (SNI = the configured host, ALPN `http/1.1`, roots from the system
//!   store, which honours `SSL_CERT_FILE`), also within `connect_timeout`.
//! - **Reuse**: a connection goes back to the pool when its response body has been read to the
//!   end (at once when the response has none). Idle connections are taken last-in first-out,
//!   at most `pool_size` are kept, and one idle for longer than `idle_timeout` is closed when it
//!   is next looked at. A response body dropped before its end closes its connection. After a
//!   `101 Switching Protocols` the connection belongs to the caller (`hyper::upgrade::on`).
//! - **Retry**: when a reused connection turns out to be closed before the request was written
//!   (the upstream closed it while idle), hyper hands the request back and it is sent once more
//!   on a new connection. Once any of a request has been written it is never sent again.
//! - **Timeouts**: `read_timeout` for the response header, counted from when the request is
//!   handed to the connection (so it includes writing the request body), and for each frame of
//!   the response body, counted from when the reader starts waiting for it (a slow reader
//!   downstream does not count against the upstream). `write_timeout`: any write to the
//!   upstream socket (request, or an upgraded connection's bytes) that cannot make progress for
//!   that long fails the connection (see `Stall`).

use super::upstream::UpstreamTarget;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No TCP connection within `connect_timeout`.
    #[error(
        "connecting to upstream {addr} timed out after {after:?} (upstream.connect_timeout_ms)"
    )]
    ConnectTimeout { addr: SocketAddr, after: Duration },
    /// The TCP connect failed (refused, unreachable, …).
    #[error("cannot connect to upstream {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    /// No TLS session within `connect_timeout`.
    #[error("TLS handshake with upstream {addr} timed out after {after:?} (upstream.connect_timeout_ms)")]
    TlsTimeout { addr: SocketAddr, after: Duration },
    /// The TLS handshake failed: e.g. an unknown issuer, a name mismatch, no common protocol.
    #[error("TLS handshake with upstream {addr} failed: {source}")]
    Tls { addr: SocketAddr, source: io::Error },
    /// No response header within `read_timeout` of sending the request.
    #[error("upstream sent no response header within {0:?} (upstream.read_timeout_ms)")]
    ReadTimeout(Duration),
    /// A response body frame took longer than `read_timeout`.
    #[error("upstream response body stalled for {0:?} (upstream.read_timeout_ms)")]
    BodyTimeout(Duration),
    /// Writing to the upstream made no progress for `write_timeout`.
    #[error("upstream accepted no data for {0:?} (upstream.write_timeout_ms)")]
    WriteTimeout(Duration),
    /// The exchange broke: connection closed or reset mid-way, invalid response, ….
    #[error("upstream exchange failed: {0}")]
    Exchange(#[source] hyper::Error),
}

impl Failure {
    /// The status the proxy answers with: 504 when the upstream timed out, 502 when it could
    /// not be reached or broke the exchange.
    pub fn status(&self) -> u16 {
        match self {
            Failure::ConnectTimeout { .. }
            | Failure::TlsTimeout { .. }
            | Failure::ReadTimeout(_)
            | Failure::BodyTimeout(_)
            | Failure::WriteTimeout(_) => 504,
            Failure::Connect { .. } | Failure::Tls { .. } | Failure::Exchange(_) => 502,
        }
    }

    /// No connection could be made (TCP or TLS, failed or timed out).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Failure::ConnectTimeout { .. }
                | Failure::Connect { .. }
                | Failure::TlsTimeout { .. }
                | Failure::Tls { .. }
        )
    }

    /// A hyper error, told apart when it is really our write deadline.
    fn exchange(e: hyper::Error, write_timeout: Duration) -> Failure {
        let mut cause: Option<&(dyn StdError + 'static)> = e.source();
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<io::Error>() {
                if io.get_ref().is_some_and(|i| i.is::<WriteStalled>()) {
                    return Failure::WriteTimeout(write_timeout);
                }
            }
            cause = c.source();
        }
        Failure::Exchange(e)
    }
}

/// How long a connection must have sat idle before a request on it keeps a copy for a second
/// try: upstreams close idle connections after their keep-alive timeout (Node's is 5 s), so a
/// connection used again within a second is not one they are closing.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// The upstream closed the connection under the request (end of file, or a reset), rather
/// than the exchange failing some other way.
fn closed_early<T>(e: &hyper::client::conn::TrySendError<T>) -> bool {
    let e = e.error();
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut cause: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
            );
        }
        cause = c.source();
    }
    false
}

/// The body of a request the proxy forwards: the client's, or none, for a request sent again.
#[derive(Debug)]
pub enum ReqBody {
    Client(Incoming),
    Empty,
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Client(b) => Pin::new(b).poll_frame(cx),
            ReqBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Client(b) => b.is_end_stream(),
            ReqBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Client(b) => b.size_hint(),
            ReqBody::Empty => SizeHint::with_exact(0),
        }
    }
}

impl Pool<ReqBody> {
    /// Forward a client's request. One that may be repeated (GET, HEAD, OPTIONS, with no body)
    /// is sent again on a new connection if the idle one it went out on turns out closed.
    pub async fn forward(
        &self,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<Pooled<ReqBody>>, Failure> {
        self.send_with(req.map(ReqBody::Client), |r| {
            let repeatable = matches!(
                *r.method(),
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            ) && r.body().is_end_stream();
            repeatable.then(|| {
                let mut copy = http::Request::new(ReqBody::Empty);
                *copy.method_mut() = r.method().clone();
                *copy.uri_mut() = r.uri().clone();
                *copy.version_mut() = r.version();
                *copy.headers_mut() = r.headers().clone();
                *copy.extensions_mut() = r.extensions().clone();
                copy
            })
        })
        .await
    }
}

/// One worker's upstream connections. Cheap to clone (an `Rc`); not `Send`.
///
/// `B` is the request body type (the downstream's [`Incoming`] by default).
pub struct Pool<B = Incoming> {
    inner: Rc<Inner<B>>,
}

impl<B> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B> {
    target: Arc<UpstreamTarget>,
    tls: Option<Tls>,
    http: Builder,
    /// Last in, first out: the back is the most recently used.
    idle: RefCell<VecDeque<Conn<B>>>,
    #[cfg(test)]
    retries: std::cell::Cell<u32>,
}

struct Tls {
    connector: TlsConnector,
    /// `None` when the configured host is not a valid TLS server name.
    name: Option<ServerName<'static>>,
}

/// A connection ready for a request, or busy with one.
struct Conn<B> {
    sender: SendRequest<B>,
    /// The read deadline, allocated once per connection and reset for each wait.
    timer: Pin<Box<Sleep>>,
    idle_since: Instant,
}

impl<B> Pool<B>
where
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    pub fn new(target: Arc<UpstreamTarget>) -> Pool<B> {
        let cfg = target.config();
        let tls = cfg.tls.then(|| Tls {
            connector: TlsConnector::from(client_config(cfg.verify_tls)),
            name: ServerName::try_from(cfg.host.clone()).ok(),
        });
        let mut http = Builder::new();
        // The proxy passes the request's header case through (hyper keeps it in an extension).
        http.preserve_header_case(true);
        Pool {
            inner: Rc::new(Inner {
                target,
                tls,
                http,
                idle: RefCell::new(VecDeque::new()),
                #[cfg(test)]
                retries: Default::default(),
            }),
        }
    }

    /// Send `req` (origin-form URI, `Host` set by the caller) to the upstream.
    ///
    /// The response body is [`Pooled`]: read it to its end to give the connection back.
    pub async fn send(&self, req: http::Request<B>) -> Result<http::Response<Pooled<B>>, Failure> {
        self.send_with(req, |_| None).await
    }

    /// [`send`](Self::send), with `again` asked for a copy of the request when it goes out on a
    /// connection that sat idle for [`STALE_AFTER`] or longer: if the upstream closed that
    /// connection as the request was written (its keep-alive timeout ran out at that moment),
    /// the copy is sent once more on a new connection. Only for requests that may be repeated
    /// (an idempotent method, no body): `again` says which.
    async fn send_with(
        &self,
        req: http::Request<B>,
        again: impl Fn(&http::Request<B>) -> Option<http::Request<B>>,
    ) -> Result<http::Response<Pooled<B>>, Failure> {
        let cfg = self.inner.target.config();
        let (mut conn, mut reused) = match self.checkout() {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let mut copy = (reused && conn.idle_since.elapsed() >= STALE_AFTER)
            .then(|| again(&req))
            .flatten();
        let mut req = req;
        let resp = loop {
            conn.timer.as_mut().reset(Instant::now() + cfg.read_timeout);
            let sent = tokio::select! {
                biased;
                r = conn.sender.try_send_request(req) => r,
                () = &mut conn.timer => return Err(Failure::ReadTimeout(cfg.read_timeout)),
            };
            match sent {
                Ok(resp) => break resp,
                Err(mut e) => match (e.take_message(), copy.take()) {
                    // Closed before any of the request was written: once more, afresh.
                    (Some(back), _) if reused => {
                        debug!(error = %e.into_error(), "Idle upstream connection was closed; retrying on a new one.");
                        #[cfg(test)]
                        self.inner.retries.set(self.inner.retries.get() + 1);
                        req = back;
                    }
                    // Closed as it was written, after a long idle: the copy, afresh.
                    (None, Some(c)) if reused && closed_early(&e) => {
                        debug!(error = %e.into_error(), "Stale upstream connection closed under a request; sending it again on a new one.");
                        #[cfg(test)]
                        self.inner.retries.set(self.inner.retries.get() + 1);
                        req = c;
                    }
                    _ => return Err(Failure::exchange(e.into_error(), cfg.write_timeout)),
                },
            }
            reused = false;
            conn = self.connect().await?;
        };
        let (parts, body) = resp.into_parts();
        let mut pooled = Pooled {
            body: Some(body),
            back: None,
            waiting: false,
        };
        // After a 101 the connection is the caller's (hyper::upgrade::on), never reused.
        if parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
            pooled.back = Some((conn, self.clone()));
            if pooled.body.as_ref().is_some_and(Body::is_end_stream) {
                pooled.release();
            }
        }
        Ok(http::Response::from_parts(parts, pooled))
    }

    /// How many idle connections the pool holds now.
    pub fn idle_count(&self) -> usize {
        self.inner.idle.borrow().len()
    }

    /// The most recently used idle connection that is still open and not expired.
    fn checkout(&self) -> Option<Conn<B>> {
        let idle_timeout = self.inner.target.config().idle_timeout;
        let mut idle = self.inner.idle.borrow_mut();
        let now = Instant::now();
        while let Some(c) = idle.pop_back() {
            if now.saturating_duration_since(c.idle_since) > idle_timeout {
                // Everything below it has been idle longer still.
                idle.clear();
                return None;
            }
            if c.sender.is_ready() && !c.sender.is_closed() {
                return Some(c);
            }
            // Closed by the upstream, or not ready for another request: dropped (closed).
        }
        None
    }

    /// Take back a connection whose exchange is complete.
    fn checkin(&self, mut conn: Conn<B>) {
        let cfg = self.inner.target.config();
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.borrow_mut();
        let now = Instant::now();
        // The front has been idle longest: drop what expired, and make room when full.
        while idle
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.idle_since) > cfg.idle_timeout)
        {
            idle.pop_front();
        }
        if cfg.pool_size == 0 {
            return;
        }
        if idle.len() >= cfg.pool_size {
            idle.pop_front();
        }
        conn.idle_since = now;
        idle.push_back(conn);
    }

    /// A new connection, through TLS when configured, its HTTP/1.1 task spawned.
    async fn connect(&self) -> Result<Conn<B>, Failure> {
        let target = &self.inner.target;
        let cfg = target.config();
        let first = target.next_addr();
        let (addr, tcp) = match tcp(first, cfg.connect_timeout).await {
            Ok(s) => (first, s),
            Err(e) => {
                // One more try on another address, if the host has one. Other workers take
                // addresses from the same round-robin, so the next may be `first` again.
                let n = target.addr_count();
                let Some(other) = (1..n).map(|_| target.next_addr()).find(|a| *a != first) else {
                    return Err(e);
                };
                (other, tcp(other, cfg.connect_timeout).await?)
            }
        };
        let sender = match &self.inner.tls {
            None => self.handshake(tcp).await?,
            Some(tls) => {
                let Some(name) = tls.name.clone() else {
                    return Err(Failure::Tls {
                        addr,
                        source: io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{:?} is not a valid TLS server name", cfg.host),
                        ),
                    });
                };
                let stream =
                    tokio::time::timeout(cfg.connect_timeout, tls.connector.connect(name, tcp))
                        .await
                        .map_err(|_| Failure::TlsTimeout {
                            addr,
                            after: cfg.connect_timeout,
                        })?
                        .map_err(|source| Failure::Tls { addr, source })?;
                self.handshake(stream).await?
            }
        };
        Ok(Conn {
            sender,
            timer: Box::pin(tokio::time::sleep(cfg.read_timeout)),
            idle_since: Instant::now(),
        })
    }

    async fn handshake<S>(&self, stream: S) -> Result<SendRequest<B>, Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let write_timeout = self.inner.target.config().write_timeout;
        let io = TokioIo::new(Stall::new(stream, write_timeout));
        let (sender, conn) = self
            .inner
            .http
            .handshake(io)
            .await
            .map_err(Failure::Exchange)?;
        tokio::task::spawn_local(async move {
            // Errors reach the request or its body; this is only the connection's end.
            if let Err(error) = conn.with_upgrades().await {
                debug!(%error, "Upstream connection ended.");
            }
        });
        Ok(sender)
    }
}

async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Failure::ConnectTimeout {
            addr,
            after: timeout,
        })?
        .map_err(|source| Failure::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// A response body from the upstream. Read to its end, it gives its connection back to the
/// pool; dropped before, the connection is closed. A frame that takes longer than
/// `read_timeout` ends the body with [`Failure::BodyTimeout`].
pub struct Pooled<B = Incoming> {
    /// `None` once the body failed: dropping it makes hyper close the connection.
    body: Option<Incoming>,
    /// The connection and its pool, until the connection is given back or closed.
    back: Option<(Conn<B>, Pool<B>)>,
    /// The read deadline is armed for the frame being waited for.
    waiting: bool,
}

impl<B> std::fmt::Debug for Pooled<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("body", &self.body)
            .field("pooled", &self.back.is_some())
            .finish()
    }
}

impl<B> std::fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.inner.idle.borrow().len())
            .finish()
    }
}

// No field is structurally pinned: `Incoming` is `Unpin` and the timer is boxed.
impl<B> Unpin for Pooled<B> {}

impl<B> Pooled<B>
where
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    fn release(&mut self) {
        if let Some((conn, pool)) = self.back.take() {
            pool.checkin(conn);
        }
    }
}

impl<B> Body for Pooled<B>
where
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Failure;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Failure>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if body.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.waiting = false;
                this.release();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let write_timeout = this.back.take().map_or(Duration::ZERO, |(_, p)| {
                    p.inner.target.config().write_timeout
                });
                this.body = None;
                Poll::Ready(Some(Err(Failure::exchange(e, write_timeout))))
            }
            Poll::Pending => {
                // No connection (after a 101, or given back): nothing to time.
                let Some((conn, pool)) = this.back.as_mut() else {
                    return Poll::Pending;
                };
                let read_timeout = pool.inner.target.config().read_timeout;
                if !this.waiting {
                    this.waiting = true;
                    conn.timer.as_mut().reset(Instant::now() + read_timeout);
                }
                if conn.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.back = None;
                this.body = None;
                Poll::Ready(Some(Err(Failure::BodyTimeout(read_timeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The marker inside the `io::Error` of a write that made no progress for `write_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream write made no progress within write_timeout")]
struct WriteStalled;

/// The upstream stream, with a write deadline: once a write, flush or shutdown has been
/// pending for `timeout` without the socket taking a byte, it fails with `TimedOut` (and hyper
/// closes the connection). Reads pass through: their deadlines are the pool's, per exchange.
///
/// Chosen over a deadline on the whole request so that a large upload that keeps moving is
/// never cut, and so that it also covers an upgraded connection's writes.
struct Stall<S> {
    io: S,
    timeout: Duration,
    /// Allocated once per connection; armed when a write first goes pending.
    deadline: Pin<Box<Sleep>>,
    stalled: bool,
}

impl<S> Stall<S> {
    fn new(io: S, timeout: Duration) -> Self {
        Stall {
            io,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            stalled: false,
        }
    }

    /// The write was pending: fail it once it has been for `timeout`.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.stalled {
            self.stalled = true;
            self.deadline.as_mut().reset(Instant::now() + self.timeout);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, WriteStalled)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn done<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = false;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.done(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.done(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.done(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.done(r, cx)
    }
}

/// The TLS client configuration, built once per process: the system roots are read once.
fn client_config(verify: bool) -> Arc<rustls::ClientConfig> {
    static VERIFIED: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static ANY_CERT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let cell = if verify { &VERIFIED } else { &ANY_CERT };
    cell.get_or_init(|| Arc::new(build_client_config(verify)))
        .clone()
}

fn build_client_config(verify: bool) -> rustls::ClientConfig {
    // An explicit provider: the process-wide default is ambiguous when a dependency enables
    // another one, and building must not panic over it.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let mut config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        match rustls_native_certs::load_native_certs() {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs);
                if ignored > 0 {
                    warn!(
                        added,
                        ignored, "Some system root certificates could not be parsed."
                    );
                }
            }
            Err(error) => warn!(%error, "Cannot read the system root certificates."),
        }
        if roots.is_empty() {
            warn!("No trusted root certificates: TLS connections to the upstream will fail (set SSL_CERT_FILE, or upstream.verify_tls = false).");
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// `upstream.verify_tls = false`: **dangerous**. Any certificate is accepted, whoever issued
/// it and whatever names it holds, so the connection is encrypted but not authenticated: anyone
/// on the path can impersonate the upstream. For an upstream on a private network with a
/// self-signed certificate only. The handshake signatures are still checked against the
/// presented certificate's key (that costs nothing and keeps the session itself sound).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Upstream;
    use http_body_util::{BodyExt, Empty, Full};
    use std::cell::Cell;
    use std::io::{Read as _, Write as _};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::{spawn_local, LocalSet};

    fn upstream(addr: SocketAddr, tweak: impl FnOnce(&mut Upstream)) -> Arc<UpstreamTarget> {
        let mut cfg = Upstream {
            url: format!("http://{addr}"),
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
            authority: addr.to_string(),
            preserve_host: true,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            pool_size: 8,
            verify_tls: true,
        };
        tweak(&mut cfg);
        UpstreamTarget::resolve(cfg).unwrap()
    }

    fn get(path: &str) -> http::Request<Empty<Bytes>> {
        http::Request::get(path)
            .header("host", "test")
            .body(Empty::new())
            .unwrap()
    }

    async fn text(resp: http::Response<Pooled<Empty<Bytes>>>) -> String {
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// An upstream on 127.0.0.1 (in the current `LocalSet`) that hands each connection it
    /// accepts to `conn`, with its number (1 for the first). Returns its address and the count
    /// of connections accepted.
    async fn upstream_with<F, Fut>(conn: F) -> (SocketAddr, Rc<Cell<usize>>)
    where
        F: Fn(TcpStream, usize) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Rc::new(Cell::new(0));
        let count = accepted.clone();
        spawn_local(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                count.set(count.get() + 1);
                spawn_local(conn(tcp, count.get()));
            }
        });
        (addr, accepted)
    }

    /// A hyper server on 127.0.0.1 (in the current `LocalSet`); counts accepted connections.
    /// `/slow` answers after 200 ms, `/empty` with 204, `/big` with 1 MiB.
    async fn serve() -> (SocketAddr, Rc<Cell<usize>>) {
        upstream_with(|tcp, _| async move {
            let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                let resp = match req.uri().path() {
                    "/slow" => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        http::Response::new(Full::from("slow"))
                    }
                    "/empty" => http::Response::builder()
                        .status(204)
                        .body(Full::default())
                        .unwrap(),
                    "/big" => http::Response::new(Full::from(vec![b'x'; 1 << 20])),
                    "/echo" => upgrade_echo(req),
                    // An error: hyper closes the connection without an answer.
                    "/fail" => return Err("fail"),
                    p => http::Response::new(Full::from(p.to_owned())),
                };
                Ok::<_, &str>(resp)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        })
        .await
    }

    /// 101, then echo whatever the client sends on the upgraded connection.
    fn upgrade_echo(mut req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
        let on = hyper::upgrade::on(&mut req);
        spawn_local(async move {
            let mut io = TokioIo::new(on.await.unwrap());
            let mut buf = [0u8; 64];
            loop {
                let n = io.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                io.write_all(&buf[..n]).await.unwrap();
            }
        });
        http::Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::default())
            .unwrap()
    }

    #[tokio::test]
    async fn reuses_one_connection_for_sequential_requests() {
        LocalSet::new()
            .run_until(async {
                let (addr, accepted) = serve().await;
                let pool = Pool::new(upstream(addr, |_| {}));
                for i in 0..5 {
                    let path = format!("/n{i}");
                    assert_eq!(text(pool.send(get(&path)).await.unwrap()).await, path);
                    assert_eq!(pool.idle_count(), 1);
                }
                // No body: given back at once.
                let resp = pool.send(get("/empty")).await.unwrap();
                assert_eq!(resp.status(), 204);
                assert_eq!(pool.idle_count(), 1);
                drop(resp);
                let big = pool.send(get("/big")).await.unwrap();
                assert_eq!(text(big).await.len(), 1 << 20);
                assert_eq!(accepted.get(), 1);

                // A body dropped before its end closes its connection.
                let mut big = pool.send(get("/big")).await.unwrap();
                assert_eq!(pool.idle_count(), 0);
                big.body_mut().frame().await.unwrap().unwrap();
                drop(big);
                assert_eq!(pool.idle_count(), 0);
                assert_eq!(
                    text(pool.send(get("/after")).await.unwrap()).await,
                    "/after"
                );
                assert_eq!(accepted.get(), 2);
            })
            .await;
    }

    /// A raw server on a thread: each connection answers one request, then is closed when
    /// `close` says so (the answer says keep-alive). Tells `closed` after each close.
    fn one_shot_server() -> (
        SocketAddr,
        std::sync::mpsc::Sender<()>,
        std::sync::mpsc::Receiver<usize>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
        let (closed_tx, closed_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (n, tcp) in listener.incoming().enumerate() {
                let mut tcp = tcp.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.ends_with(b"\r\n\r\n") {
                    let got = tcp.read(&mut buf).unwrap();
                    assert!(got > 0);
                    req.extend_from_slice(&buf[..got]);
                }
                let body = format!("conn{n}");
                let _ = write!(
                    tcp,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if close_rx.recv().is_err() {
                    return;
                }
                drop(tcp);
                if closed_tx.send(n).is_err() {
                    return;
                }
            }
        });
        (addr, close_tx, closed_rx)
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced() {
        LocalSet::new()
            .run_until(async {
                let (addr, close, closed) = one_shot_server();
                let pool = Pool::new(upstream(addr, |_| {}));
                assert_eq!(text(pool.send(get("/")).await.unwrap()).await, "conn0");
                assert_eq!(pool.idle_count(), 1);
                close.send(()).unwrap();
                assert_eq!(closed.recv().unwrap(), 0);
                // The worker notices the close while idle: the pool does not hand it out.
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert_eq!(text(pool.send(get("/")).await.unwrap()).await, "conn1");
                assert_eq!(pool.inner.retries.get(), 0);
            })
            .await;
    }

    #[tokio::test]
    async fn a_request_on_a_connection_found_closed_is_retried_once() {
        LocalSet::new()
            .run_until(async {
                let (addr, accepted) = serve().await;
                let pool = Pool::new(upstream(addr, |_| {}));
                // An idle connection that looks ready, whose task ends (as on the upstream's
                // close) after the request is handed to it and before it is written.
                let tcp = TcpStream::connect(addr).await.unwrap();
                let (sender, conn) = pool.inner.http.handshake(TokioIo::new(tcp)).await.unwrap();
                let (kill, killed) = tokio::sync::oneshot::channel::<()>();
                spawn_local(async move {
                    tokio::select! {
                        biased;
                        _ = killed => {}
                        _ = conn => {}
                    }
                });
                tokio::task::yield_now().await;
                assert!(sender.is_ready());
                pool.inner.idle.borrow_mut().push_back(Conn {
                    sender,
                    timer: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
                    idle_since: Instant::now(),
                });
                kill.send(()).unwrap();
                let resp = pool.send(get("/retried")).await.unwrap();
                assert_eq!(text(resp).await, "/retried");
                assert_eq!(pool.inner.retries.get(), 1);
                assert_eq!(accepted.get(), 2);
                assert_eq!(pool.idle_count(), 1);
            })
            .await;
    }

    #[tokio::test]
    async fn connect_refused_is_502_at_once() {
        LocalSet::new()
            .run_until(async {
                let addr = {
                    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    l.local_addr().unwrap()
                };
                let pool = Pool::new(upstream(addr, |_| {}));
                let start = std::time::Instant::now();
                let e = pool.send(get("/")).await.unwrap_err();
                assert!(matches!(e, Failure::Connect { .. }), "{e}");
                assert_eq!(e.status(), 502);
                assert!(e.is_connect());
                assert!(start.elapsed() < Duration::from_millis(500));
                assert!(e.to_string().contains(&addr.to_string()), "{e}");
            })
            .await;
    }

    #[tokio::test]
    async fn no_response_header_is_504_after_read_timeout() {
        LocalSet::new()
            .run_until(async {
                // Accepts, reads, never answers.
                let (addr, _) = upstream_with(|mut tcp, _| async move {
                    let mut buf = [0u8; 1024];
                    while tcp.read(&mut buf).await.unwrap_or(0) > 0 {}
                })
                .await;
                let pool = Pool::new(upstream(addr, |c| {
                    c.read_timeout = Duration::from_millis(300)
                }));
                let start = std::time::Instant::now();
                let e = pool.send(get("/")).await.unwrap_err();
                let took = start.elapsed();
                assert!(matches!(e, Failure::ReadTimeout(_)), "{e}");
                assert_eq!(e.status(), 504);
                assert!(!e.is_connect());
                assert!(
                    took >= Duration::from_millis(300) && took < Duration::from_secs(2),
                    "{took:?}"
                );
                assert_eq!(pool.idle_count(), 0);
            })
            .await;
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_after_read_timeout() {
        LocalSet::new()
            .run_until(async {
                // Promises 10 bytes, sends 5, then holds the connection.
                let (addr, _) = upstream_with(|mut tcp, _| async move {
                    let mut buf = [0u8; 1024];
                    let _ = tcp.read(&mut buf).await.unwrap();
                    tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_secs(10)).await;
                })
                .await;
                let pool = Pool::new(upstream(addr, |c| {
                    c.read_timeout = Duration::from_millis(300)
                }));
                let mut resp = pool.send(get("/")).await.unwrap();
                let first = resp.body_mut().frame().await.unwrap().unwrap();
                assert_eq!(first.into_data().unwrap(), "hello");
                let start = std::time::Instant::now();
                let e = resp.body_mut().frame().await.unwrap().unwrap_err();
                let took = start.elapsed();
                assert!(matches!(e, Failure::BodyTimeout(_)), "{e}");
                assert_eq!(e.status(), 504);
                assert!(
                    took >= Duration::from_millis(290) && took < Duration::from_secs(2),
                    "{took:?}"
                );
                assert!(resp.body_mut().frame().await.is_none());
                assert_eq!(pool.idle_count(), 0);
            })
            .await;
    }

    #[tokio::test]
    async fn a_write_that_stalls_fails_after_write_timeout() {
        LocalSet::new()
            .run_until(async {
                // Accepts and never reads: the socket buffers fill up.
                let (addr, _) = upstream_with(|tcp, _| async move {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    drop(tcp);
                })
                .await;
                let pool = Pool::new(upstream(addr, |c| {
                    c.write_timeout = Duration::from_millis(300)
                }));
                let req = http::Request::post("/")
                    .header("host", "test")
                    .body(Full::from(vec![0u8; 64 << 20]))
                    .unwrap();
                let start = std::time::Instant::now();
                let e = pool.send(req).await.unwrap_err();
                let took = start.elapsed();
                assert!(matches!(e, Failure::WriteTimeout(_)), "{e}");
                assert_eq!(e.status(), 504);
                assert!(took < Duration::from_secs(3), "{took:?}");
            })
            .await;
    }

    #[tokio::test]
    async fn a_connection_idle_too_long_is_not_reused() {
        LocalSet::new()
            .run_until(async {
                let (addr, accepted) = serve().await;
                let pool = Pool::new(upstream(addr, |c| {
                    c.idle_timeout = Duration::from_millis(100)
                }));
                text(pool.send(get("/a")).await.unwrap()).await;
                text(pool.send(get("/b")).await.unwrap()).await;
                assert_eq!(accepted.get(), 1);
                tokio::time::sleep(Duration::from_millis(250)).await;
                assert_eq!(text(pool.send(get("/c")).await.unwrap()).await, "/c");
                assert_eq!(accepted.get(), 2);
                assert_eq!(pool.idle_count(), 1);
            })
            .await;
    }

    #[tokio::test]
    async fn pool_size_bounds_idle_connections() {
        LocalSet::new()
            .run_until(async {
                let (addr, accepted) = serve().await;
                let pool = Pool::new(upstream(addr, |c| c.pool_size = 2));
                let tasks: Vec<_> = (0..4)
                    .map(|_| {
                        let pool = pool.clone();
                        spawn_local(
                            async move { text(pool.send(get("/slow")).await.unwrap()).await },
                        )
                    })
                    .collect();
                for t in tasks {
                    assert_eq!(t.await.unwrap(), "slow");
                }
                assert_eq!(accepted.get(), 4);
                assert_eq!(pool.idle_count(), 2);
                // The two kept are reused.
                for _ in 0..2 {
                    text(pool.send(get("/x")).await.unwrap()).await;
                }
                assert_eq!(accepted.get(), 4);
            })
            .await;
    }

    #[tokio::test]
    async fn an_upgrade_hands_over_the_connection() {
        LocalSet::new()
            .run_until(async {
                let (addr, accepted) = serve().await;
                let pool = Pool::new(upstream(addr, |_| {}));
                let req = http::Request::get("/echo")
                    .header("host", "test")
                    .header("connection", "upgrade")
                    .header("upgrade", "echo")
                    .body(Empty::new())
                    .unwrap();
                let mut resp = pool.send(req).await.unwrap();
                assert_eq!(resp.status(), 101);
                let mut io = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
                for word in ["ping", "pong"] {
                    io.write_all(word.as_bytes()).await.unwrap();
                    let mut buf = [0u8; 4];
                    io.read_exact(&mut buf).await.unwrap();
                    assert_eq!(&buf, word.as_bytes());
                }
                assert_eq!(pool.idle_count(), 0);
                // The pool opens another connection for the next request.
                assert_eq!(text(pool.send(get("/next")).await.unwrap()).await, "/next");
                assert_eq!(accepted.get(), 2);
            })
            .await;
    }

    #[tokio::test]
    async fn no_retry_once_the_request_was_sent() {
        LocalSet::new()
            .run_until(async {
                let (addr, accepted) = serve().await;
                let pool = Pool::new(upstream(addr, |_| {}));
                text(pool.send(get("/a")).await.unwrap()).await;
                let e = pool.send(get("/fail")).await.unwrap_err();
                assert!(matches!(e, Failure::Exchange(_)), "{e}");
                assert_eq!(e.status(), 502);
                assert!(!e.is_connect());
                assert_eq!(pool.inner.retries.get(), 0);
                assert_eq!(accepted.get(), 1);
            })
            .await;
    }

    /// Downstream hyper server → `Pool<Incoming>` → an upstream that answers with the request
    /// head it got: the header case passes through both ways, and `Pooled` is a server body.
    #[tokio::test]
    async fn proxies_with_the_header_case_of_the_client() {
        LocalSet::new()
            .run_until(async {
                let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let up_addr = up.local_addr().unwrap();
                spawn_local(async move {
                    let (mut tcp, _) = up.accept().await.unwrap();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") {
                        let n = tcp.read(&mut buf).await.unwrap();
                        assert!(n > 0);
                        head.extend_from_slice(&buf[..n]);
                    }
                    let mut resp = format!(
                        "HTTP/1.1 200 OK\r\nX-Upstream-CASE: 2\r\ncontent-length: {}\r\n\r\n",
                        head.len()
                    )
                    .into_bytes();
                    resp.extend_from_slice(&head);
                    tcp.write_all(&resp).await.unwrap();
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
                let pool: Pool = Pool::new(upstream(up_addr, |_| {}));
                let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let front_addr = front.local_addr().unwrap();
                spawn_local(async move {
                    let (tcp, _) = front.accept().await.unwrap();
                    let svc = hyper::service::service_fn(move |req| {
                        let pool = pool.clone();
                        async move { pool.send(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .preserve_header_case(true)
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
                let mut client = TcpStream::connect(front_addr).await.unwrap();
                client
                    .write_all(b"GET /case HTTP/1.1\r\nHost: test\r\nX-Custom-CASE: 1\r\n\r\n")
                    .await
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                let read = async {
                    while !got.windows(16).any(|w| w == b"X-Custom-CASE: 1") {
                        let n = client.read(&mut buf).await.unwrap();
                        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
                        got.extend_from_slice(&buf[..n]);
                    }
                };
                tokio::time::timeout(Duration::from_secs(5), read)
                    .await
                    .unwrap();
                let got = String::from_utf8_lossy(&got);
                assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
                assert!(got.contains("GET /case HTTP/1.1\r\n"), "{got}");
                // And the upstream's answer's header case comes back.
                assert!(got.contains("\r\nX-Upstream-CASE: 2\r\n"), "{got}");
            })
            .await;
    }

    /// An upstream that answers the first request on its first connection, then closes that
    /// connection as the second request arrives (its keep-alive timeout running out just then),
    /// and answers on any later connection. Returns its address and the connections accepted.
    async fn closes_under_the_second_request() -> (SocketAddr, Rc<Cell<usize>>) {
        upstream_with(|mut tcp, nth| async move {
            let mut buf = [0u8; 4096];
            for n in 0.. {
                if tcp.read(&mut buf).await.unwrap_or(0) == 0 || (nth == 1 && n == 1) {
                    return; // the second request on the first connection: closed, no answer
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if tcp.write_all(answer).await.is_err() {
                    return;
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn a_repeatable_request_on_a_stale_connection_is_sent_again() {
        LocalSet::new()
            .run_until(async {
                let (addr, accepted) = closes_under_the_second_request().await;
                let pool = Pool::new(upstream(addr, |_| {}));
                let again = |r: &http::Request<Empty<Bytes>>| Some(get(r.uri().path()));
                assert_eq!(
                    text(pool.send_with(get("/1"), again).await.unwrap()).await,
                    "ok"
                );
                tokio::time::sleep(STALE_AFTER + Duration::from_millis(100)).await;
                // The idle connection is closed as the request goes out: sent again, on a new one.
                let resp = pool.send_with(get("/2"), again).await.unwrap();
                assert_eq!(text(resp).await, "ok");
                assert_eq!(accepted.get(), 2);
                assert_eq!(pool.inner.retries.get(), 1);
            })
            .await;
    }

    #[tokio::test]
    async fn a_request_that_may_not_be_repeated_is_not() {
        LocalSet::new()
            .run_until(async {
                let (addr, accepted) = closes_under_the_second_request().await;
                let pool = Pool::new(upstream(addr, |_| {}));
                assert_eq!(text(pool.send(get("/1")).await.unwrap()).await, "ok");
                tokio::time::sleep(STALE_AFTER + Duration::from_millis(100)).await;
                // No copy (a POST, or a body): the failure is the client's answer.
                let e = pool.send(get("/2")).await.unwrap_err();
                assert_eq!(e.status(), 502, "{e}");
                assert_eq!(accepted.get(), 1);
                assert_eq!(pool.inner.retries.get(), 0);
            })
            .await;
    }
}
