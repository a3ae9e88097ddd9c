//! The ceiling under tollgate: a proxy that does nothing but pick the upstream, built on the
//! same Pingora as tollgate, so that `benches/proxy_wrk.sh` can tell what tollgate costs from
//! what its foundation costs.
//!
//! ```text
//! bare_proxy LAYOUT THREADS LISTEN UPSTREAM
//! ```
//!
//! Layouts:
//! - `steal`: one Pingora service, `THREADS` threads, work stealing (Pingora's default);
//! - `nosteal`: the same without work stealing (tollgate's setting until issue 16);
//! - `percore`: `THREADS` threads, each a current-thread runtime with its own `SO_REUSEPORT`
//!   listener and its own upstream pool, nothing shared (as nginx workers are). This is the
//!   layout tollgate's proxy runs in (`proxy::workers`).
//! - `hyper`: not Pingora: the same per-core layout with hyper 1.x's HTTP/1 server and client
//!   connections and a per-thread pool of upstream connections. A candidate foundation.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;

// The allocator tollgate runs with, so that the ceiling is measured on equal terms.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn conf(threads: usize, work_stealing: bool) -> ServerConf {
    ServerConf {
        threads,
        work_stealing,
        upstream_keepalive_pool_size: 128,
        ..ServerConf::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [layout, threads, listen, upstream] = &args[..] else {
        eprintln!("usage: bare_proxy steal|nosteal|percore|hyper THREADS LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let threads: usize = threads.parse().expect("THREADS is a number");
    let listen: SocketAddr = listen.parse().expect("LISTEN is ip:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM is ip:port");
    match layout.as_str() {
        "steal" | "nosteal" => {
            let mut server = Server::new_with_opt_and_conf(None, conf(threads, layout == "steal"));
            server.bootstrap();
            let mut service =
                pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
            service.add_tcp(&listen.to_string());
            server.add_service(service);
            server.run_forever();
        }
        "percore" => {
            let conf = Arc::new(conf(1, false));
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let conf = conf.clone();
                    std::thread::Builder::new()
                        .name(format!("bare-{i}"))
                        .spawn(move || percore(conf, listen, upstream))
                        .expect("spawn")
                })
                .collect();
            for h in handles {
                h.join().expect("worker");
            }
        }
        "hyper" => {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    std::thread::Builder::new()
                        .name(format!("bare-{i}"))
                        .spawn(move || hyper_core(listen, upstream))
                        .expect("spawn")
                })
                .collect();
            for h in handles {
                h.join().expect("worker");
            }
        }
        other => {
            eprintln!("unknown layout {other:?}");
            std::process::exit(2);
        }
    }
}

fn reuseport_listener(listen: SocketAddr) -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(listen).expect("bind");
    socket.listen(1024).expect("listen")
}

type Sender = hyper::client::conn::http1::SendRequest<hyper::body::Incoming>;
type Upstreams = std::rc::Rc<std::cell::RefCell<Vec<Sender>>>;

/// The upstream's response body; its connection goes back to the pool once the body is done.
struct Pooled {
    body: hyper::body::Incoming,
    back: Option<(Sender, Upstreams)>,
}

impl Pooled {
    fn release(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            pool.borrow_mut().push(sender);
        }
    }
}

impl hyper::body::Body for Pooled {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>>
    {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None) => self.release(),
            std::task::Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            std::task::Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

async fn forward(
    pool: Upstreams,
    upstream: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> std::result::Result<hyper::Response<Pooled>, hyper::Error> {
    let idle = {
        let mut p = pool.borrow_mut();
        let mut found = None;
        while let Some(s) = p.pop() {
            if s.is_ready() {
                found = Some(s);
                break;
            }
        }
        found
    };
    let mut sender = match idle {
        Some(s) => s,
        None => {
            let tcp = tokio::net::TcpStream::connect(upstream)
                .await
                .expect("connect upstream");
            let _ = tcp.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
            tokio::task::spawn_local(conn);
            sender
        }
    };
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let mut body = Pooled {
        body,
        back: Some((sender, pool)),
    };
    if hyper::body::Body::is_end_stream(&body) {
        body.release();
    }
    Ok(hyper::Response::from_parts(parts, body))
}

fn hyper_core(listen: SocketAddr, upstream: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = reuseport_listener(listen);
        let pool: Upstreams = Default::default();
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            let _ = tcp.set_nodelay(true);
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                let svc =
                    hyper::service::service_fn(move |req| forward(pool.clone(), upstream, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
}

fn percore(conf: Arc<ServerConf>, listen: SocketAddr, upstream: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = reuseport_listener(listen);
        let app = Arc::new(pingora::proxy::http_proxy(&conf, Bare { upstream }));
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            let _ = tcp.set_nodelay(true);
            let app = app.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let stream: pingora::protocols::Stream =
                    Box::new(pingora::protocols::l4::stream::Stream::from(tcp));
                let _ = pingora::apps::ServerApp::process_new(&app, stream, &shutdown).await;
            });
        }
    });
}
