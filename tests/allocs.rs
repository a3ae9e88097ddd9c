//! Heap allocations per proxied request, counted by the allocator (issue 16: at most 3 in
//! tollgate's own code).
//!
//! One proxy thread (a current-thread runtime with a `LocalSet`, as each of tollgate's workers
//! is) counts every allocation it makes; the client, the upstream (a real nginx) and the test
//! thread draining the event queue do not. The same keep-alive client sends the same requests
//! through two proxies: a bare one, hyper's HTTP/1 server forwarding through tollgate's own
//! upstream pool with nothing else (the foundation's allocations), and tollgate's worker with
//! default settings, capture on. What tollgate adds is the difference.
//!
//! ```text
//! cargo test --release --locked --test allocs -- --nocapture
//! ```
//!
//! prints `allocs per request: tollgate X.XX, bare Y.YY, own Z.ZZ` for a returning visitor (the
//! common case: a signed visitor cookie and a session cookie), then the same for a new visitor.

mod common;

use common::Nginx;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate::config::Settings;
use tollgate::event::now_us;
use tollgate::metrics::Metrics;
use tollgate::proxy::consent::{day_of, Salt};
use tollgate::proxy::identity::Keys;
use tollgate::proxy::listener::{Limits, Listener};
use tollgate::proxy::pool::Pool;
use tollgate::proxy::signing::CookieKey;
use tollgate::proxy::upstream::UpstreamTarget;
use tollgate::proxy::{Proxy, Worker};

/// Counts allocations (and reallocations, which may move) made on threads that opted in.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // try_with: the flag may be gone while a thread is being torn down.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        if TRACING.load(Ordering::Relaxed) {
            trace();
        }
    }
}

/// `ALLOCS_TRACE=1`: print where each counted allocation of one tollgate request comes from.
static TRACING: AtomicBool = AtomicBool::new(false);
static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

fn trace() {
    if IN_TRACE.with(|t| t.replace(true)) {
        return;
    }
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    // The frames worth reading: those in tollgate's and its dependencies' code, not std's.
    let lines: Vec<&str> = bt.lines().map(str::trim).collect();
    let frames: Vec<String> = lines
        .windows(2)
        .filter(|w| {
            w[1].starts_with("at ") && !w[1].contains("/rustc/") && !w[1].contains("allocs.rs")
        })
        .map(|w| {
            let f = w[0].split_once(": ").map_or(w[0], |(_, f)| f);
            let at = w[1].rsplit('/').take(2).collect::<Vec<_>>();
            format!("{f} ({}/{})", at.get(1).unwrap_or(&""), at[0])
        })
        .take(
            std::env::var("ALLOCS_DEPTH")
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(5),
        )
        .collect();
    TRACES.lock().unwrap().push(frames.join("\n    "));
    IN_TRACE.with(|t| t.set(false));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Requests per measurement, after the warm-up.
const N: u64 = 2000;
const WARM_UP: usize = 200;
/// The goal of issue 16 for the returning visitor: at most 3 allocations of tollgate's own.
const GOAL: f64 = 3.0;
/// What tollgate allocates today for the returning visitor, which the test holds it to (a
/// ratchet: lower it with every cut). The 3: the request's text buffer (2: the buffer, and the
/// counter that lets header values share it) and the queued hit (1), as `ALLOCS_TRACE=1` shows.
/// The fourth, until 2026-12-05, was hyper's header deadline, which boxed a new timer for each
/// request; the listener now moves one timer per connection. On Pingora it was 24, 21 of them
/// inside Pingora's header code.
const CEILING: f64 = 3.5;

/// Run `serve` for each connection accepted on a fresh loopback port, on one counted thread
/// (a current-thread runtime with a `LocalSet`); returns the address.
fn spawn_proxy<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::Builder::new()
        .name("proxy".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            COUNTED.with(|c| c.set(true));
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, peer) = listener.accept().await.unwrap();
                    let _ = tcp.set_nodelay(true);
                    tokio::task::spawn_local(serve(tcp, peer));
                }
            });
        })
        .unwrap();
    addr
}

/// The baseline: hyper's server, forwarding through tollgate's upstream pool (with tollgate's
/// upstream timeouts), and nothing else.
fn spawn_bare(upstream: Arc<UpstreamTarget>) -> SocketAddr {
    spawn_proxy(move |tcp, _| {
        thread_local! {
            static POOL: std::cell::OnceCell<Pool> = const { std::cell::OnceCell::new() };
        }
        let pool = POOL.with(|p| p.get_or_init(|| Pool::new(upstream.clone())).clone());
        async move {
            let svc = hyper::service::service_fn(move |req| {
                let pool = pool.clone();
                async move {
                    // The upstream's `Connection: close` (nginx's keepalive_requests) is about
                    // its own connection, not the client's.
                    let mut resp = pool.send(req).await?;
                    resp.headers_mut().remove(http::header::CONNECTION);
                    Ok::<_, tollgate::proxy::pool::Failure>(resp)
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.preserve_header_case(true).auto_date_header(false);
            let _ = http
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        }
    })
}

/// Tollgate's worker, as `serve` runs it on each proxy thread.
fn spawn_tollgate(proxy: Proxy) -> SocketAddr {
    let limits = Limits::new(proxy.settings());
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    std::mem::forget(_tx);
    let open = Arc::new(AtomicUsize::new(0));
    spawn_proxy(move |tcp, peer| {
        thread_local! {
            static LISTENER: std::cell::OnceCell<Rc<Listener>> = const { std::cell::OnceCell::new() };
        }
        let l = LISTENER.with(|l| {
            l.get_or_init(|| {
                Rc::new(Listener::new(
                    Worker::new(proxy.clone()),
                    limits.clone(),
                    open.clone(),
                ))
            })
            .clone()
        });
        l.serve(tcp, peer, shutdown.clone())
    })
}

/// A keep-alive HTTP/1.1 client, just enough for this test.
struct Client {
    conn: TcpStream,
    buf: Vec<u8>,
}

/// One response: its header block (lower-cased names) and body.
struct Response {
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let v = l.strip_prefix("set-cookie: ")?;
            let pair = v.split(';').next()?;
            pair.starts_with(&format!("{name}="))
                .then(|| pair.to_string())
        })
    }
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let conn = TcpStream::connect(addr).unwrap();
        conn.set_nodelay(true).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            conn,
            buf: Vec::new(),
        }
    }

    /// GET the page as a browser navigating to it would, with `cookie` if given.
    fn get(&mut self, cookie: Option<&str>) -> Response {
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        let req = format!(
            "GET /page.html HTTP/1.1\r\nHost: shop.test\r\n\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
             Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
             Accept-Language: en-GB,en;q=0.5\r\nReferer: http://shop.test/\r\n{cookie}\r\n"
        );
        self.conn.write_all(req.as_bytes()).unwrap();
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill();
        };
        let head = String::from_utf8(self.buf[..end].to_vec())
            .unwrap()
            .lines()
            .map(|l| match l.split_once(':') {
                Some((k, v)) => format!("{}: {}\n", k.to_ascii_lowercase(), v.trim()),
                None => format!("{l}\n"),
            })
            .collect::<String>();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a content-length")
            .parse()
            .unwrap();
        while self.buf.len() < end + len {
            self.fill();
        }
        let body = self.buf[end..end + len].to_vec();
        self.buf.drain(..end + len);
        Response { head, body }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        let n = self.conn.read(&mut chunk).unwrap();
        assert!(n > 0, "the proxy closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

/// Allocations per request on the proxy thread for `N` requests with `cookie`, after a
/// warm-up on the same connection. `settle` is called after each batch, until the proxy has
/// finished with the last request (its capture runs once the response body has been sent).
fn measure(proxy: SocketAddr, cookie: Option<&str>, page: &[u8], settle: &dyn Fn(u64)) -> f64 {
    let mut c = Client::connect(proxy);
    for _ in 0..WARM_UP {
        assert_eq!(c.get(cookie).body, page);
    }
    settle(WARM_UP as u64);
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..N {
        let r = c.get(cookie);
        assert_eq!(r.body, page, "passthrough is byte-exact");
    }
    settle(N);
    let after = ALLOCS.load(Ordering::Relaxed);
    (after - before) as f64 / N as f64
}

/// One measurement in one process: the allocation counter is global, so tollgate and the bare
/// proxy are measured one after the other here and subtracted, and the optional trace reuses
/// both; split up, the numbers could no longer be compared.
#[test]
fn allocations_per_proxied_request() {
    let root = common::temp_dir();
    // A 2 KiB HTML page.
    let mut page = b"<!doctype html><html><head><title>Shop</title></head><body>\n".to_vec();
    while page.len() < 2048 - 16 {
        page.extend_from_slice(b"<p>Lorem ipsum dolor sit amet.</p>\n");
    }
    page.extend_from_slice(b"</body></html>\n");
    std::fs::write(root.path().join("page.html"), &page).unwrap();
    let nginx = Nginx::serve(root.path());

    // The baseline.
    let quiet = |_: u64| std::thread::sleep(Duration::from_millis(100));

    // Tollgate as `serve` builds it: default settings, capture on, the real queue (drained
    // here instead of by the store writer).
    let data = common::temp_dir();
    let mut settings = Settings::defaults(&format!("http://{}", nginx.addr)).unwrap();
    settings.data_dir = data.path().to_path_buf();
    // One connection for all the requests measured: no `Connection: close` after 1,000.
    settings.keepalive_requests = 0;
    assert!(settings.capture.enabled);
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::new());
    let (events, rx) = tollgate::pipeline::channel(
        settings.pipeline.queue_capacity,
        settings.pipeline.queue_max_bytes,
        metrics.clone(),
    );
    let (ingest, _ingest_rx) = tollgate::ingest::channel();
    let keys = Arc::new(Keys {
        salt: Salt::load(None, day_of(now_us())),
        cookie: CookieKey::ephemeral(),
    });
    let upstream = UpstreamTarget::resolve(settings.upstream.clone()).unwrap();
    let bare = spawn_bare(upstream.clone());
    let tollgate = spawn_tollgate(Proxy::new(
        settings.clone(),
        upstream,
        events,
        ingest,
        metrics.clone(),
        keys,
    ));
    // Wait until the proxy has captured `n` more events, checking each is the page view.
    let captured = std::sync::Mutex::new(Vec::new());
    let drain = |n: u64| {
        let mut got = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got < n {
            match rx.try_recv() {
                Ok(e) => {
                    assert_eq!(e.name, "page_view");
                    assert_eq!(e.path.as_deref(), Some("/page.html"));
                    assert_eq!(e.status, Some(200));
                    assert!(e.visitor_id.is_some() && e.session_id.is_some());
                    captured.lock().unwrap().push(e.visitor_id);
                    got += 1;
                }
                Err(_) => {
                    assert!(std::time::Instant::now() < deadline, "events not captured");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        // The counters of the last request come after its event was sent.
        std::thread::sleep(Duration::from_millis(20));
    };

    // A returning visitor: the cookies tollgate gave on a first visit.
    let first = Client::connect(tollgate).get(None);
    let cookie = format!(
        "{}; {}",
        first.set_cookie("tg_vid").expect("a visitor cookie"),
        first.set_cookie("tg_sid").expect("a session cookie")
    );
    drain(1);
    let visitor = captured.lock().unwrap()[0];

    let own_returning = {
        let tg = measure(tollgate, Some(&cookie), &page, &drain);
        let bare = measure(bare, Some(&cookie), &page, &quiet);
        println!(
            "allocs per request: tollgate {tg:.2}, bare {bare:.2}, own {:.2}",
            tg - bare
        );
        tg - bare
    };
    assert!(
        captured.lock().unwrap().iter().all(|v| *v == visitor),
        "the returning visitor keeps its id"
    );
    {
        let tg = measure(tollgate, None, &page, &drain);
        let bare = measure(bare, None, &page, &quiet);
        println!(
            "allocs per request (new visitor): tollgate {tg:.2}, bare {bare:.2}, own {:.2}",
            tg - bare
        );
    }
    // ALLOCS_TRACE=1 (or =bare): where the allocations of one returning visitor's request
    // through tollgate (or the bare proxy) come from.
    if let Some(which) = std::env::var_os("ALLOCS_TRACE") {
        let (proxy, settle): (SocketAddr, &dyn Fn(u64)) = if which == "bare" {
            (bare, &quiet)
        } else {
            (tollgate, &drain)
        };
        let mut c = Client::connect(proxy);
        c.get(Some(&cookie));
        settle(1);
        TRACING.store(true, Ordering::SeqCst);
        c.get(Some(&cookie));
        settle(1);
        TRACING.store(false, Ordering::SeqCst);
        for (i, t) in TRACES.lock().unwrap().iter().enumerate() {
            println!("alloc {i}:\n    {t}");
        }
    }
    assert_eq!(
        metrics.dropped_queue_full.get(),
        0,
        "every request was captured"
    );
    if own_returning > GOAL {
        println!("issue 16's goal of {GOAL} own allocations per request is not met");
    }
    assert!(
        own_returning <= CEILING,
        "tollgate's own allocations per proxied request: {own_returning:.2}, more than the \
         {CEILING} it made before (see CEILING)"
    );
}
