//! The proxy's runtime layout: one worker thread per core, each a current-thread tokio runtime
//! that accepts on its own `SO_REUSEPORT` socket and serves what it accepted with its own app,
//! and so its own upstream connection pool. Nothing on the request path crosses threads, as
//! with nginx's worker processes.
//!
//! Pingora's `Server`, which tollgate used before, ran a service on one runtime for all
//! threads: a connection was accepted on one thread and served on another, and every thread
//! shared one upstream pool whose idle watchers woke whichever thread held them. The
//! cross-thread wake-ups cost more CPU per request than the proxying itself on a small machine
//! (BENCHMARKS.md, issue 16).
//!
//! Each worker runs a `LocalSet`: its connections, its upstream pool and its requests live on
//! its thread alone, so they share state with `Rc` and `Cell`, not atomics.
//!
//! Shutdown: [`Workers::shutdown`] stops the accept loops, tells every connection to close once
//! idle, lets in-flight requests finish within the grace period, then drops what is left with
//! the runtimes.

use super::listener::{Limits, Listener};
use super::{Proxy, Worker};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, warn};

/// Pending connections the kernel queues per socket (Pingora's and nginx's order of magnitude).
const BACKLOG: i32 = 4096;

/// Binds `n` sockets on `addr`, all with `SO_REUSEPORT`, so that the kernel spreads new
/// connections over them. A port of 0 becomes the one the first socket got. Returns the address
/// really bound.
pub fn bind(addr: SocketAddr, n: usize) -> std::io::Result<(SocketAddr, Vec<StdListener>)> {
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let socket = Socket::new(Domain::for_address(bound), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(BACKLOG)?;
        let listener: StdListener = socket.into();
        bound = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok((bound, listeners))
}

/// The running workers.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl Workers {
    /// Starts one worker thread per listener, each serving with its own clone of `proxy`.
    /// Shutdown waits for the connections open on all of them to close, at most `grace`.
    pub fn spawn(
        listeners: Vec<StdListener>,
        proxy: Proxy,
        limits: Limits,
        grace: Duration,
    ) -> std::io::Result<Workers> {
        let (shutdown, watch) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let watch = watch.clone();
            let open = open.clone();
            let proxy = proxy.clone();
            let limits = limits.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("tollgate-proxy-{i}"))
                .build()?;
            let handle = std::thread::Builder::new()
                .name(format!("tollgate-proxy-{i}"))
                .spawn(move || {
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&runtime, async move {
                        let worker = Worker::new(proxy);
                        let app = Rc::new(Listener::new(worker, limits, open));
                        serve(listener, app, watch, grace).await;
                    });
                    // In-flight connections past the grace period are dropped here.
                    drop(local);
                    runtime.shutdown_timeout(Duration::from_millis(100));
                })?;
            handles.push(handle);
        }
        Ok(Workers { handles, shutdown })
    }

    /// Stops accepting, drains within the grace period, and joins the threads.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for h in self.handles {
            if h.join().is_err() {
                error!("A proxy worker panicked during shutdown.");
            }
        }
    }
}

/// One worker: the accept loop, then the drain.
async fn serve(
    listener: StdListener,
    app: Rc<Listener>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(error) => {
            error!(%error, "A proxy worker cannot use its listener.");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                tokio::task::spawn_local(app.clone().serve(tcp, peer, shutdown.clone()));
            }
            Err(error) => {
                // Out of file descriptors (or memory): accept() would fail again at once.
                let pause = matches!(
                    error.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                warn!(%error, "accept() failed on the proxy listener.");
                if pause {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    drop(listener);
    // Every connection has been told to close once idle (it watches `shutdown`).
    let deadline = Instant::now() + grace;
    while app.open_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
