//! The proxy's runtime layout: one worker thread per core, each a current-thread tokio runtime
//! that accepts on its own `SO_REUSEPORT` socket and serves what it accepted with its own app,
//! and so its own upstream connection pool. Nothing on the request path crosses threads, as
//! with nginx's worker processes.
//!
//! Pingora's `Server` runs a service on one runtime for all threads: a connection is accepted
//! on one thread and served on another (its no-stealing runtime picks a thread at random), and
//! every thread shares one upstream pool whose idle watchers wake whichever thread holds them.
//! The cross-thread wake-ups cost more CPU per request than the proxying itself on a small
//! machine (`benches/proxy_wrk.sh`, setups n and p; BENCHMARKS.md).
//!
//! Shutdown: [`Workers::shutdown`] stops the accept loops, tells idle keep-alive connections to
//! close (the app's `cleanup`), lets in-flight requests finish within the grace period, then
//! drops what is left with the runtimes.

use pingora::apps::ServerApp;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Starts one worker thread per listener, each serving with its own app. `open` counts the
    /// connections the apps hold open (the apps increment and decrement it); shutdown waits for
    /// it to reach zero, at most `grace`.
    pub fn spawn<A>(
        listeners: Vec<StdListener>,
        apps: Vec<A>,
        open: Arc<AtomicUsize>,
        grace: Duration,
    ) -> std::io::Result<Workers>
    where
        A: ServerApp + Send + Sync + 'static,
    {
        assert_eq!(listeners.len(), apps.len(), "one app per listener");
        let (shutdown, watch) = watch::channel(false);
        let mut handles = Vec::with_capacity(listeners.len());
        for (i, (listener, app)) in listeners.into_iter().zip(apps).enumerate() {
            let watch = watch.clone();
            let open = open.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("tollgate-proxy-{i}"))
                .build()?;
            let handle = std::thread::Builder::new()
                .name(format!("tollgate-proxy-{i}"))
                .spawn(move || {
                    runtime.block_on(serve(listener, Arc::new(app), watch, open, grace));
                    // In-flight connections past the grace period are dropped here.
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
async fn serve<A: ServerApp + Send + Sync + 'static>(
    listener: StdListener,
    app: Arc<A>,
    mut shutdown: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    grace: Duration,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(error) => {
            error!(%error, "A proxy worker cannot use its listener.");
            return;
        }
    };
    let local: Option<PingoraAddr> = listener.local_addr().ok().map(Into::into);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let mut stream = Stream::from(tcp);
                // What Pingora's own listener records: the session's client and server address,
                // known here without a system call.
                let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
                let _ = digest.peer_addr.set(Some(peer.into()));
                let _ = digest.local_addr.set(local.clone());
                stream.set_socket_digest(digest);
                let app = app.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    app.process_new(Box::new(stream), &shutdown).await;
                });
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
    // Idle keep-alive connections waiting for a request close now.
    app.cleanup().await;
    let deadline = Instant::now() + grace;
    while open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
