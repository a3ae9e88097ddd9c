//! The ceiling under tollgate: a proxy that does nothing but pick the upstream, on the same
//! foundation as tollgate's (hyper 1.x's HTTP/1 server and client connections, one
//! current-thread runtime per core with its own `SO_REUSEPORT` listener and its own pool of
//! upstream connections), so that `benches/proxy_wrk.sh` can tell what tollgate costs from what
//! its foundation costs.
//!
//! ```text
//! bare_proxy THREADS LISTEN UPSTREAM
//! ```
//!
//! Until issue 16 it also had Pingora layouts; their figures are in BENCHMARKS.md.

use std::net::SocketAddr;

// The allocator tollgate runs with, so that the ceiling is measured on equal terms.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `hyper` as a first argument: the layout's old name, still taken.
    let args = if args.first().is_some_and(|a| a == "hyper") {
        &args[1..]
    } else {
        &args[..]
    };
    let [threads, listen, upstream] = args else {
        eprintln!("usage: bare_proxy THREADS LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let threads: usize = threads.parse().expect("THREADS is a number");
    let listen: SocketAddr = listen.parse().expect("LISTEN is ip:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM is ip:port");
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
    let (mut parts, body) = resp.into_parts();
    // The upstream's `Connection: close` is about its own connection, not the client's.
    parts.headers.remove(hyper::header::CONNECTION);
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
