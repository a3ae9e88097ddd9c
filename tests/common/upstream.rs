//! A real HTTP upstream for the tests (axum on a loopback port) that records what it saw.

use super::{fnv1a, pseudo_random};
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// The user id `/api/register` answers with in `X-Tollgate-User` for a `phone=` form field.
pub fn user_for_phone(phone: &str) -> String {
    format!("phone-{:016x}", super::fnv1a(phone.as_bytes()))
}

pub const BIN_SIZE: usize = 5 * 1024 * 1024;

pub fn html(n: &str) -> String {
    format!("<!doctype html><html><head><title>Page {n}</title></head><body><h1>Page {n}</h1></body></html>\n")
}

pub fn gzip_html() -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(html("gzip").repeat(50).as_bytes()).unwrap();
    e.finish().unwrap()
}

/// A body of `n` pieces, `gap` apart, the first at once.
fn ticks(
    n: u32,
    gap: Duration,
    piece: fn(u32) -> String,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(0u32, move |i| async move {
        if i == n {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        Some((Ok(Bytes::from(piece(i))), i + 1))
    })
}

async fn record(State(seen): State<Arc<Mutex<Vec<Seen>>>>, req: Request, next: Next) -> Response {
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        headers: req.headers().clone(),
    });
    next.run(req).await
}

/// Every route the tests use. Long, but a table: one `.route` per path, each a few lines.
fn router(seen: Arc<Mutex<Vec<Seen>>>) -> Router {
    Router::new()
        .route(
            "/page/{n}",
            get(|Path(n): Path<String>| async move {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    html(&n),
                )
            }),
        )
        .route(
            "/gz",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CONTENT_ENCODING, "gzip"),
                        (header::VARY, "Accept-Encoding"),
                    ],
                    gzip_html(),
                )
            }),
        )
        .route(
            "/json",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::ETAG, "\"v1\""),
                    ],
                    r#"{"ok":true,"items":[1,2,3]}"#,
                )
            }),
        )
        .route(
            "/bin",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    pseudo_random(BIN_SIZE, 7),
                )
            }),
        )
        .route(
            "/chunked",
            get(|| async {
                let chunks = ["first chunk\n", "second chunk\n", "third chunk\n"]
                    .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c.as_bytes())));
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }),
        )
        .route(
            "/sse",
            get(|| async {
                let s = ticks(3, Duration::from_millis(300), |i| {
                    format!("data: tick {i}\n\n")
                });
                (
                    [
                        (header::CONTENT_TYPE, "text/event-stream"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    Body::from_stream(s),
                )
            }),
        )
        .route(
            "/404",
            get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    [(header::CONTENT_TYPE, "text/html")],
                    html("missing"),
                )
            }),
        )
        .route(
            "/500",
            get(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain")],
                    "boom\n",
                )
            }),
        )
        .route(
            "/cookies",
            get(|| async {
                let mut h = HeaderMap::new();
                h.append(
                    header::SET_COOKIE,
                    "app_session=abc; Path=/; HttpOnly".parse().unwrap(),
                );
                h.append(header::SET_COOKIE, "theme=dark; Path=/".parse().unwrap());
                h.insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
                (h, html("cookies"))
            }),
        )
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("{} {:016x}", body.len(), fnv1a(&body)) }),
        )
        .route(
            "/api/products/{id}",
            get(|Path(id): Path<u32>| async move {
                axum::Json(serde_json::json!({ "id": id, "name": format!("Product {id}") }))
            }),
        )
        .route(
            "/api/register",
            post(|body: String| async move {
                // The shop names a new customer by a hash of their phone number, as a shop
                // that must not hand out phone numbers would.
                let mut h = axum::http::HeaderMap::new();
                if let Some(phone) = body.split('&').find_map(|p| p.strip_prefix("phone=")) {
                    h.insert("x-tollgate-user", user_for_phone(phone).parse().unwrap());
                }
                (
                    StatusCode::CREATED,
                    h,
                    axum::Json(serde_json::json!({ "ok": true })),
                )
            }),
        )
        .route(
            // A backend that stitches: it names the user and reports events in headers.
            "/api/login",
            post(|| async {
                let mut h = axum::http::HeaderMap::new();
                h.insert("x-tollgate-user", "u-42".parse().unwrap());
                h.append(
                    "x-tollgate-event",
                    r#"{"name":"login","props":{"method":"password"}}"#.parse().unwrap(),
                );
                h.append(
                    "x-tollgate-event",
                    r#"[{"name":"plan_viewed","props":{"plan":"pro"}},{"props":{}}]"#
                        .parse()
                        .unwrap(),
                );
                h.append("x-tollgate-event", "not json".parse().unwrap());
                (h, axum::Json(serde_json::json!({ "ok": true })))
            }),
        )
        // `n` chunks of text, 250 ms apart: a response that takes its time.
        .route(
            "/drip/{n}",
            get(|Path(n): Path<u32>| async move {
                let s = ticks(n, Duration::from_millis(250), |i| format!("drip {i}\n"));
                ([(header::CONTENT_TYPE, "text/plain")], Body::from_stream(s))
            }),
        )
        .route(
            "/hang",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }),
        )
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(msg)) = socket.recv().await {
                        if matches!(msg, Message::Close(_)) {
                            break;
                        }
                        let echo = matches!(msg, Message::Text(_) | Message::Binary(_));
                        if echo && socket.send(msg).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        )
        // Uploads of any size: the tests send 20 MiB.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(seen.clone(), record))
        .with_state(seen)
}

impl Upstream {
    /// Start on a free loopback port, on the current tokio runtime.
    pub async fn start() -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(seen.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Upstream { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Everything seen for `path`.
    pub fn seen_for(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}
