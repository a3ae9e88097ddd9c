//! The data plane: a reverse proxy on hyper 1.x, one worker per core ([`workers`]), each
//! serving its own connections ([`listener`]) with its own upstream pool ([`pool`]).
//!
//! One request, in order ([`Worker::handle`]):
//!
//! | step                 | work                                                           |
//! |----------------------|----------------------------------------------------------------|
//! | read the request     | [`forwarded`], then [`identity`] under [`consent`]; the request's [`texts`] |
//! | tollgate's own paths | [`collect`] answers them; never forwarded                      |
//! | to the upstream      | hop-by-hop headers out; identity and forwarded headers in; a navigation that may be injected goes without `Accept-Encoding` ([`inject`]) |
//! | from the upstream    | hop-by-hop headers out; [`stitch`] takes the backend's user and event headers; request id and cookies in; [`inject`] plans the page |
//! | the body             | streamed ([`body`]): as is, or decoded, injected and gzipped    |
//! | upstream failure     | 502 (unreachable) or 504 (timed out), keeping the ids           |
//! | when the body is sent | [`capture`]: one raw event, `try_send` onto the pipeline       |

pub mod body;
pub mod capture;
pub mod collect;
pub mod consent;
pub mod forwarded;
pub mod head;
pub mod identity;
pub mod inject;
pub mod listener;
pub mod pool;
pub mod ratelimit;
pub mod signing;
pub mod stitch;
pub mod texts;
pub mod turns;
pub mod upstream;
pub mod workers;

use crate::config::Settings;
use crate::event::RequestKind as Kind;
use crate::event::{now_us, Hit, RequestSignals};
use crate::ingest::IngestSender;
use crate::metrics::Metrics;
use crate::pipeline::EventSender;
use body::Body;
use bytes::Bytes;
use forwarded::Forwarded;
use head::{RequestHead, ResponseHead};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use identity::{Ids, Keys};
use inject::codec::{self, Decoder, GzipEncoder};
use inject::Outcome;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use texts::Texts;
use upstream::UpstreamTarget;
use uuid::Uuid;

/// The most a page the upstream compressed may decode to before injection gives up on it (the
/// client gets a broken page rather than tollgate running out of memory on a decompression bomb).
const MAX_DECODED: usize = 64 << 20;

/// The proxy's shared part. Each worker gets its own clone: the shared state is behind `Arc`s.
#[derive(Clone)]
pub struct Proxy {
    settings: Arc<Settings>,
    upstream: Arc<UpstreamTarget>,
    events: EventSender,
    metrics: Arc<Metrics>,
    keys: Arc<Keys>,
    collect: collect::Collect,
    names: identity::Names,
    /// `Host` for the upstream when `preserve_host` is off.
    authority: Option<HeaderValue>,
    /// The site id and the capture rules' names, for the events: static text, leaked once per
    /// proxy, so that a captured hit carries them without a copy or a shared counter.
    site: &'static str,
    rule_names: Vec<&'static str>,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl Proxy {
    pub fn new(
        settings: Arc<Settings>,
        upstream: Arc<UpstreamTarget>,
        events: EventSender,
        ingest: IngestSender,
        metrics: Arc<Metrics>,
        keys: Arc<Keys>,
    ) -> Self {
        let i = &settings.ingest;
        let u = &settings.upstream;
        Proxy {
            names: identity::Names::new(&settings.identity),
            authority: (!u.preserve_host)
                .then(|| {
                    HeaderValue::from_maybe_shared(Bytes::from_static(
                        leak(&u.authority).as_bytes(),
                    ))
                    .ok()
                })
                .flatten(),
            site: leak(&settings.site_id),
            rule_names: settings
                .capture
                .rules
                .iter()
                .map(|r| leak(&r.name))
                .collect(),
            collect: collect::Collect {
                ingest,
                script: inject::Script::new(&settings),
                limiter: (i.collect_rate > 0).then(|| {
                    Arc::new(ratelimit::RateLimiter::new(i.collect_rate, i.collect_burst))
                }),
                metrics: metrics.clone(),
            },
            settings,
            upstream,
            events,
            metrics,
            keys,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// One worker's proxy: the shared part and the worker's own upstream connections.
pub struct Worker {
    proxy: Proxy,
    pool: pool::Pool<pool::ReqBody>,
}

/// Request headers that describe one hop, never the resource (RFC 9110, 7.6.1).
const HOP_BY_HOP: [HeaderName; 4] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
];

/// Remove the hop-by-hop headers, and those that `Connection` lists. Kept for a protocol
/// switch (`upgrade`): `Connection` and `Upgrade` carry it.
fn strip_hop_by_hop(h: &mut http::HeaderMap, upgrade: bool) {
    if upgrade {
        return;
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
    // The headers that `Connection` lists. Usually one value (browsers send
    // `Connection: keep-alive`), taken out as is; several are copied first (rare).
    match h.get_all(header::CONNECTION).iter().count() {
        0 => {}
        1 => {
            if let Some(v) = h.remove(header::CONNECTION) {
                remove_listed(h, &v);
            }
        }
        _ => {
            let all: Vec<HeaderValue> = h.get_all(header::CONNECTION).iter().cloned().collect();
            h.remove(header::CONNECTION);
            for v in &all {
                remove_listed(h, v);
            }
        }
    }
    h.remove(header::UPGRADE);
}

/// Remove the headers a `Connection` value lists (not `close`).
fn remove_listed(h: &mut http::HeaderMap, connection: &HeaderValue) {
    let Ok(v) = connection.to_str() else { return };
    for t in v.split(',').map(str::trim) {
        if !t.is_empty() && !t.eq_ignore_ascii_case("close") {
            h.remove(t);
        }
    }
}

/// A request that asks to switch protocols (WebSocket): `Connection: upgrade` and `Upgrade`.
fn is_upgrade(h: &http::HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// What the request's capture needs once its response has been sent.
pub struct Capture {
    worker: Rc<Worker>,
    start: Instant,
    ts_us: i64,
    method: Method,
    uri: Uri,
    facts: capture::Facts,
    ids: Ids,
    texts: Texts,
    backend: stitch::FromBackend,
    status: u16,
    content_type: Option<HeaderValue>,
}

impl Capture {
    /// The response has been sent (or abandoned) after `bytes_out` bytes of body.
    fn done(self, bytes_out: u64) {
        let w = self.worker.clone();
        w.proxy.log(self, bytes_out);
    }
}

impl Worker {
    pub fn new(proxy: Proxy) -> Rc<Worker> {
        let pool = pool::Pool::new(proxy.upstream.clone());
        Rc::new(Worker { proxy, pool })
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Answer one request from `peer`.
    pub async fn handle(
        self: Rc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let start = Instant::now();
        let ts_us = now_us();
        let p = &self.proxy;
        let s = &*p.settings;
        let (mut head, body) = req.into_parts();
        let fwd = forwarded::compute(Some(peer.ip()), &head, &s.trusted_proxies);
        let ids = identity::resolve(&head, s, &p.keys, fwd.client_ip, ts_us);

        if collect::is_ours(head.uri.path(), s) {
            // Not the site's request: nothing of it is captured.
            let texts = Texts::build(&head, &ids, &fwd, s, &p.keys.cookie, false);
            return collect::handle(
                &head,
                body,
                s,
                &p.collect,
                &ids,
                &texts,
                &p.names,
                fwd.client_ip,
            )
            .await;
        }
        let texts = Texts::build(&head, &ids, &fwd, s, &p.keys.cookie, s.capture.enabled);
        let inject_wanted = s.inject.enabled && inject::wanted(&head, s);
        let gzip_ok = inject_wanted
            && s.inject.compression_level > 0
            && codec::accepts_gzip(&head.headers)
            && head.method != Method::HEAD;
        let facts = capture::Facts::of(&head.headers);
        let upgrade = is_upgrade(&head.headers);
        // The client's side of a protocol switch, taken before the head goes upstream.
        let down_upgrade = upgrade
            .then(|| head.extensions.remove::<hyper::upgrade::OnUpgrade>())
            .flatten();
        let method = head.method.clone();
        let uri = head.uri.clone();
        let inject_req = inject_wanted.then(|| inject::Request::of(&head, &fwd));

        self.upstream_head(&mut head, &fwd, &texts, inject_wanted, upgrade);
        let capture = Capture {
            worker: self.clone(),
            start,
            ts_us,
            method,
            uri,
            facts,
            ids,
            texts,
            backend: stitch::FromBackend::default(),
            status: 0,
            content_type: None,
        };
        let resp = match self.pool.forward(Request::from_parts(head, body)).await {
            Ok(r) => r,
            Err(failure) => return self.upstream_failed(&failure, capture),
        };
        let (rhead, rbody) = resp.into_parts();
        if rhead.status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(down) = down_upgrade {
                return self.switch_protocols(rhead, rbody, down, capture);
            }
        }
        self.respond(rhead, rbody, inject_req.as_ref(), gzip_ok, capture)
    }

    /// The upstream could not be reached or did not answer in time: counted, then
    /// tollgate's own 502 or 504 ([`Worker::failure`]).
    fn upstream_failed(&self, failure: &pool::Failure, capture: Capture) -> Response<Body> {
        let m = &self.proxy.metrics;
        if failure.is_connect() {
            m.upstream_connect_errors.inc();
        }
        let code = failure.status();
        if code == 504 {
            m.upstream_timeouts.inc();
        }
        tracing::debug!(%failure, "The upstream failed.");
        self.failure(code, capture)
    }

    /// The upstream agreed to switch protocols (WebSocket): its 101 goes to the client, and a
    /// task copies bytes both ways once both sides have upgraded.
    fn switch_protocols(
        &self,
        rhead: ResponseHead,
        rbody: pool::Pooled<pool::ReqBody>,
        down: hyper::upgrade::OnUpgrade,
        mut capture: Capture,
    ) -> Response<Body> {
        let mut r = Response::from_parts(rhead, rbody);
        let up = hyper::upgrade::on(&mut r);
        let (mut rhead, _) = r.into_parts();
        tokio::task::spawn_local(async move {
            if let (Ok(down), Ok(up)) = (down.await, up.await) {
                let mut down = hyper_util::rt::TokioIo::new(down);
                let mut up = hyper_util::rt::TokioIo::new(up);
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
        capture
            .texts
            .add_response_headers(&mut rhead, &self.proxy.names);
        capture.status = 101;
        Response::from_parts(rhead, Body::empty()).with_done(capture)
    }

    /// The upstream's answer as the client gets it: hop-by-hop headers out, the body as is or
    /// injected ([`Worker::page`]), the backend's headers taken, request id and cookies in.
    fn respond(
        &self,
        mut rhead: ResponseHead,
        rbody: pool::Pooled<pool::ReqBody>,
        inject_req: Option<&inject::Request>,
        gzip_ok: bool,
        mut capture: Capture,
    ) -> Response<Body> {
        let p = &self.proxy;
        let s = &*p.settings;
        strip_hop_by_hop(&mut rhead.headers, false);
        let out = match inject_req {
            Some(req) if !rhead.status.is_informational() => {
                self.page(req, &mut rhead, rbody, gzip_ok)
            }
            _ => {
                if s.inject.enabled {
                    inject::strip_control(&mut rhead);
                }
                Body::upstream(rbody)
            }
        };
        capture.backend = stitch::take(&mut rhead, s);
        capture.texts.add_response_headers(&mut rhead, &p.names);
        capture.status = rhead.status.as_u16();
        capture.content_type = rhead.headers.get(header::CONTENT_TYPE).cloned();
        Response::from_parts(rhead, out).with_done(capture)
    }

    /// The request head as the upstream gets it.
    fn upstream_head(
        &self,
        head: &mut RequestHead,
        fwd: &Forwarded,
        texts: &Texts,
        inject: bool,
        upgrade: bool,
    ) {
        let p = &self.proxy;
        let s = &*p.settings;
        strip_hop_by_hop(&mut head.headers, upgrade);
        if inject {
            // A page that may be injected is asked for uncompressed: decoding the upstream's
            // gzip only to encode it again would double the work (see inject's module docs).
            head.headers.remove(header::ACCEPT_ENCODING);
        }
        texts.add_upstream_headers(head, &s.identity, &p.names);
        forwarded::apply(head, fwd, texts.xff());
        if let Some(host) = &p.authority {
            head.headers.insert(header::HOST, host.clone());
        }
        // Origin form, and HTTP/1.1 so that the upstream connection is kept alive.
        if head.uri.scheme().is_some() || head.uri.authority().is_some() {
            if let Some(pq) = head.uri.path_and_query() {
                if let Ok(u) = Uri::try_from(pq.as_str()) {
                    head.uri = u;
                }
            }
        }
        head.version = Version::HTTP_11;
    }

    /// A navigation's answer: injected when [`inject::plan`] says so; gzipped for the client
    /// when the upstream's answer was asked for uncompressed, as it was.
    fn page(
        &self,
        req: &inject::Request,
        rhead: &mut ResponseHead,
        upstream: pool::Pooled<pool::ReqBody>,
        gzip_ok: bool,
    ) -> Body {
        let p = &self.proxy;
        let s = &*p.settings;
        let end = hyper::body::Body::is_end_stream(&upstream);
        match inject::plan(rhead, end, req, &p.collect.script, s) {
            Ok(plan) => {
                let decoder = match plan.decompress {
                    Some(coding) => {
                        rhead.headers.remove(header::CONTENT_ENCODING);
                        Some(Decoder::new(coding, MAX_DECODED))
                    }
                    None => None,
                };
                inject::apply(rhead, &plan);
                let encoder = gzip_ok.then(|| {
                    rhead
                        .headers
                        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    GzipEncoder::new(s.inject.compression_level)
                });
                let metrics = p.metrics.clone();
                let rewrote = plan.rewrote_csp();
                let path = req.path().to_owned();
                let on_outcome = Box::new(move |outcome: Outcome| {
                    let label = match outcome {
                        Outcome::Head | Outcome::Body if rewrote => "injected_csp_nonce",
                        o => o.as_str(),
                    };
                    metrics.inject(label);
                    inject::log(label, &path);
                });
                let injector = p.collect.script.injector(&plan);
                Body::rewrite(body::Rewrite::new(
                    upstream, decoder, injector, encoder, on_outcome,
                ))
            }
            Err(skip) => {
                if let Some(reason) = skip {
                    p.metrics.inject(reason);
                    inject::log(reason, req.path());
                }
                inject::strip_control(rhead);
                // Not injected, but asked for uncompressed: encoded here as the upstream would
                // have, unless the answer must not be transformed or is already encoded.
                let compress = gzip_ok
                    && !end
                    && inject::compressible(rhead)
                    && !inject::no_transform(rhead)
                    && !rhead.headers.contains_key(header::CONTENT_ENCODING)
                    && !matches!(rhead.status.as_u16(), 204 | 206 | 304)
                    && !rhead.status.is_informational();
                if !compress {
                    return Body::upstream(upstream);
                }
                rhead.headers.remove(header::CONTENT_LENGTH);
                rhead.headers.remove(header::ACCEPT_RANGES);
                rhead
                    .headers
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                inject::vary_accept_encoding(rhead);
                Body::gzip(upstream, GzipEncoder::new(s.inject.compression_level))
            }
        }
    }

    /// tollgate's own 502 or 504, with the request id and cookies.
    fn failure(&self, code: u16, mut capture: Capture) -> Response<Body> {
        let reason = StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let text = format!("{code} {reason}\n");
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let (mut rhead, ()) = resp.into_parts();
        capture
            .texts
            .add_response_headers(&mut rhead, &self.proxy.names);
        capture.status = code;
        Response::from_parts(rhead, Body::full(text)).with_done(capture)
    }
}

/// Attach the capture to a response's body.
trait WithDone {
    fn with_done(self, c: Capture) -> Response<Body>;
}

impl WithDone for Response<Body> {
    fn with_done(self, c: Capture) -> Response<Body> {
        self.map(|b| b.on_done(c))
    }
}

impl Proxy {
    /// The capture of a request whose response has been sent: classify, then one raw event
    /// onto the pipeline (never waits).
    fn log(&self, mut c: Capture, bytes_out: u64) {
        let s = &*self.settings;
        let status = c.status;
        let content_type = c.content_type.as_ref().map_or(&[][..], |v| v.as_bytes());
        let path = c.uri.path();
        let kind =
            capture::classify_facts(&c.facts, &c.method, path, content_type, status, &s.capture);
        self.metrics.request(kind);
        if !s.capture.enabled {
            return;
        }
        let rule = capture::match_rule_index(&s.capture.rules, &c.method, path, status);
        // An uncaptured asset is not stored, unless the backend attached events to it.
        let store_request = rule.is_some() || kind != Kind::Asset || s.capture.assets;
        if !store_request && c.backend.events.is_empty() {
            return;
        }
        // Every value taken from the request was cut to its limit when the request's texts
        // were written, before anything is queued.
        let name = match rule {
            Some(i) => self.rule_names[i],
            None => kind.as_str(),
        };
        let signals = RequestSignals {
            page_view: kind == Kind::PageView,
            accept_language: c.facts.accept_language,
            sec_ch_ua_headless: c.facts.headless,
        };
        // Whole microseconds (the resolution that means anything here), as one division:
        // a short decimal form in every text format the sinks write.
        let duration_ms = c.start.elapsed().as_micros() as f64 / 1000.0;
        // Always there: texts are written with the captured fields whenever capture is on.
        let Some(captured) = c.texts.captured else {
            return;
        };
        let ids = &c.ids;
        // The backend's user goes with the event; backend events (rare) need it too.
        let user_id = if c.backend.events.is_empty() {
            c.backend.user_id.take()
        } else {
            c.backend.user_id.clone()
        };
        // Raw path, query and referrer, and the full IP: the pipeline parses campaigns and
        // geo from them, then redacts and anonymises before anything is stored.
        let hit = Hit {
            event_id: Uuid::now_v7(),
            ts_us: c.ts_us,
            received_at_us: now_us(),
            site: self.site,
            name,
            method: c.method.clone(),
            status: (status > 0).then_some(status),
            duration_ms,
            bytes_out,
            visitor_id: ids.visitor,
            session_id: ids.session,
            user_id,
            hints: crate::event::Hints {
                privacy: ids.mode,
                signals,
                // Proxy events' ids are minted: never checked against the store's keys.
                keyed: false,
            },
            text: c.texts.buf().clone(),
            request_id: c.texts.request_id_span(),
            captured,
        };
        if c.backend.events.is_empty() {
            if store_request {
                self.events.send_hit(Box::new(hit));
            }
            return;
        }
        // Events from the backend (rare) are built from the request's own.
        let e = hit.into_event();
        for custom in stitch::events(&c.backend, &e, s) {
            self.events.send(Box::new(custom));
        }
        if store_request {
            self.events.send(Box::new(e));
        }
    }
}
