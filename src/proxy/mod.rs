//! The data plane: tollgate's [`ProxyHttp`] implementation.
//!
//! Each phase delegates to a named module, so this file reads like Pingora's phase chart:
//!
//! | phase                     | work                                                      |
//! |---------------------------|-----------------------------------------------------------|
//! | `early_request_filter`    | bound downstream keep-alive; arm compression for [`inject`] |
//! | `request_filter`          | [`forwarded`], then [`identity`] under [`consent`]; [`collect`] answers tollgate's own endpoints |
//! | `upstream_peer`           | [`upstream`]: a pre-resolved address                      |
//! | `upstream_request_filter` | identity and forwarded headers for the backend           |
//! | `adjust_upstream_modules` | [`inject`]: does this page get the tracker (decode gzip/br if so) |
//! | `response_filter`         | strip hop-by-hop headers, echo request id, set cookies; [`stitch`] takes the backend's user and event headers; [`inject`] fixes an injected page's headers |
//! | `response_body_filter`    | [`inject`]: insert the script tag while streaming         |
//! | `fail_to_proxy`           | 502 (unreachable) or 504 (timed out), keeping the ids     |
//! | `logging`                 | [`capture`]: one raw event, `try_send` onto the pipeline   |

pub mod capture;
pub mod collect;
pub mod consent;
pub mod forwarded;
pub mod identity;
pub mod inject;
pub mod listener;
pub mod ratelimit;
pub mod signing;
pub mod stitch;
pub mod texts;
pub mod upstream;
pub mod workers;

use crate::config::Settings;
use crate::enrich::bots::RequestSignals;
use crate::event::{now_us, Hit};
use crate::ingest::IngestSender;
use crate::metrics::{Kind, Metrics};
use crate::pipeline::EventSender;
use async_trait::async_trait;
use bytes::Bytes;
use forwarded::Forwarded;
use http::HeaderValue;
use identity::{Ids, Keys};
use inject::Outcome;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::ResponseCompressionBuilder;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};
use std::sync::Arc;
use std::time::Instant;
use texts::Texts;
use upstream::UpstreamTarget;
use uuid::Uuid;

/// Per-request state shared between the phases.
pub struct Ctx {
    start: Instant,
    ts_us: i64,
    ids: Option<Ids>,
    fwd: Option<Forwarded>,
    /// Every text the request's headers and event get ([`texts`]), once ids and fwd are known.
    texts: Option<Texts>,
    /// Answered by [`collect`]: not the site's request, so not captured as one.
    collected: bool,
    /// What the backend's `X-Tollgate-User`/`X-Tollgate-Event` headers said.
    backend: stitch::FromBackend,
    /// The request may get the tracker ([`inject::wanted`]).
    inject_wanted: bool,
    /// The page gets it: decided on the upstream header, applied in `response_filter`.
    inject_plan: Option<inject::Plan>,
    injector: Option<inject::Injector>,
}

impl Ctx {
    /// The client reached the site over HTTPS (as forwarded by a trusted proxy).
    fn secure(&self) -> bool {
        self.fwd.as_ref().is_some_and(|f| f.proto == "https")
    }
}

/// The proxy service. Each worker gets its own clone: the shared state is behind `Arc`s.
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
                    HeaderValue::from_maybe_shared(bytes::Bytes::from_static(
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

    fn fwd<'a>(&self, session: &Session, ctx: &'a mut Ctx) -> &'a Forwarded {
        ctx.fwd.get_or_insert_with(|| {
            let peer = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            forwarded::compute(peer, session.req_header(), &self.settings.trusted_proxies)
        })
    }

    fn ids<'a>(&self, session: &Session, ctx: &'a mut Ctx) -> &'a Ids {
        if ctx.ids.is_none() {
            let ip = self.fwd(session, ctx).client_ip;
            ctx.ids = Some(identity::resolve(
                session.req_header(),
                &self.settings,
                &self.keys,
                ip,
                ctx.ts_us,
            ));
        }
        ctx.ids.as_ref().expect("set above")
    }

    fn texts<'a>(&self, session: &Session, ctx: &'a mut Ctx, capture: bool) -> &'a Texts {
        if ctx.texts.is_none() {
            self.ids(session, ctx);
            let (Some(ids), Some(fwd)) = (&ctx.ids, &ctx.fwd) else {
                unreachable!("ids() sets both")
            };
            ctx.texts = Some(Texts::build(
                session.req_header(),
                ids,
                fwd,
                &self.settings,
                &self.keys.cookie,
                capture,
            ));
        }
        ctx.texts.as_ref().expect("set above")
    }
}

/// Response headers that describe one hop, never the resource.
const HOP_BY_HOP: &[&str] = &["keep-alive", "proxy-connection", "te", "trailer"];

fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return; // Connection/Upgrade carry the protocol switch itself
    }
    for name in HOP_BY_HOP {
        resp.remove_header(*name);
    }
    // The headers that Connection lists. Its values are shared slices of the response header:
    // a clone costs a counter, not a copy.
    let mut connection = resp.headers.get_all(http::header::CONNECTION).iter();
    if let Some(first) = connection.next() {
        let rest = connection.next().is_some();
        if rest {
            // Rare: several Connection headers; copy them once.
            let all: Vec<HeaderValue> = resp
                .headers
                .get_all(http::header::CONNECTION)
                .iter()
                .cloned()
                .collect();
            for v in &all {
                remove_listed(resp, v);
            }
        } else {
            let v = first.clone();
            remove_listed(resp, &v);
        }
    }
    resp.remove_header(&http::header::UPGRADE);
}

/// Remove the headers a `Connection` value lists (not `close`).
fn remove_listed(resp: &mut ResponseHeader, connection: &HeaderValue) {
    let Ok(v) = connection.to_str() else { return };
    for t in v.split(',').map(str::trim) {
        if !t.is_empty() && !t.eq_ignore_ascii_case("close") {
            resp.remove_header(t);
        }
    }
}

/// The status tollgate answers when the upstream fails: 504 when it timed out, 502 when it
/// could not be reached or broke the exchange.
fn failure_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout
        | ErrorType::TLSHandshakeTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        // Pingora calls this as soon as a request's header is parsed.
        listener::header_read();
        Ctx {
            start: Instant::now(),
            ts_us: now_us(),
            ids: None,
            fwd: None,
            collected: false,
            backend: stitch::FromBackend::default(),
            inject_wanted: false,
            inject_plan: None,
            injector: None,
            texts: None,
        }
    }

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        if self.settings.inject.enabled {
            // Off (level 0) until a request arms it: everything else passes byte for byte.
            modules.add_module(ResponseCompressionBuilder::enable(0));
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        // Pingora keeps idle client connections forever unless told otherwise.
        session.set_keepalive(Some(self.settings.keepalive_secs));
        let s = &self.settings;
        if s.inject.enabled {
            let req = session.req_header();
            ctx.inject_wanted = inject::wanted(req, s);
            // Pingora reads Accept-Encoding right after this phase: arm compression now for
            // pages that may be injected (they are fetched uncompressed).
            if ctx.inject_wanted {
                inject::downstream_compression(session, s.inject.compression_level);
                inject::hide_brotli(session.req_header_mut());
            }
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.ids(session, ctx);
        if collect::is_ours(session.req_header().uri.path(), &self.settings) {
            let ip = self.fwd(session, ctx).client_ip;
            // Not the site's request: nothing of it is captured.
            self.texts(session, ctx, false);
            let (Some(ids), Some(texts)) = (&ctx.ids, &ctx.texts) else {
                unreachable!("set above")
            };
            collect::handle(
                session,
                &self.settings,
                &self.collect,
                ids,
                texts,
                &self.names,
                ip,
            )
            .await;
            ctx.collected = true;
            return Ok(true);
        }
        self.texts(session, ctx, self.settings.capture.enabled);
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(self.upstream.peer())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        _ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // With one address, trying it again at once only delays the 502. With several
        // (`localhost` is often ::1 and 127.0.0.1), the retry goes to the next one.
        e.set_retry(self.upstream.addr_count() > 1);
        // Timeouts are counted once, in fail_to_proxy, where they become a 504.
        if !matches!(
            e.etype(),
            ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout
        ) {
            self.metrics.upstream_connect_errors.inc();
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let s = &self.settings;
        if ctx.inject_wanted {
            // A page that may be injected is asked for uncompressed: decoding the upstream's
            // gzip only to encode it again would double the work (see inject's module docs).
            let _ = req.remove_header(&http::header::ACCEPT_ENCODING);
        }
        if let Some(texts) = &ctx.texts {
            identity::add_upstream_headers(req, &s.identity, &self.names, texts);
            if let Some(f) = &ctx.fwd {
                forwarded::apply(req, f, texts.xff());
            }
        }
        if let Some(host) = &self.authority {
            req.insert_header(http::header::HOST, host.clone())?;
        }
        Ok(())
    }

    async fn adjust_upstream_modules(
        &self,
        session: &mut Session,
        resp: &ResponseHeader,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if !ctx.inject_wanted || resp.status.is_informational() {
            return Ok(());
        }
        let scheme = if ctx.secure() { "https" } else { "http" };
        let req = session.req_header();
        match inject::plan(
            resp,
            end_of_stream,
            req,
            scheme,
            &self.collect.script,
            &self.settings,
        ) {
            Ok(plan) => {
                if plan.decompress {
                    // Before Pingora's upstream module reads this header: decode gzip/br.
                    session.upstream_compression.adjust_decompression(true);
                }
                ctx.inject_plan = Some(plan);
            }
            Err(Some(reason)) => {
                self.metrics.inject(reason);
                inject::log(reason, session.req_header().uri.path());
            }
            Err(None) => {}
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        strip_hop_by_hop(resp);
        // An informational (1xx) header is not the answer: the decision waits for the final one.
        if self.settings.inject.enabled && !resp.status.is_informational() {
            match &ctx.inject_plan {
                Some(plan) => {
                    inject::apply(resp, plan);
                    ctx.injector = Some(self.collect.script.injector(plan));
                }
                // Not injected: the compression armed for a navigation stays on, since the
                // upstream was asked for an uncompressed answer; unless it must not transform.
                None => {
                    inject::strip_control(resp);
                    if inject::no_transform(resp) {
                        inject::downstream_compression(session, 0);
                    }
                }
            }
        }
        ctx.backend = stitch::take(resp, &self.settings);
        if let Some(texts) = &ctx.texts {
            identity::add_response_headers(resp, &self.names, texts);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(inj) = ctx.injector.as_mut() {
            let before = inj.outcome();
            inj.filter(body, end_of_stream);
            if let (None, Some(outcome)) = (before, inj.outcome()) {
                let rewrote = ctx.inject_plan.as_ref().is_some_and(|p| p.rewrote_csp());
                let label = match outcome {
                    Outcome::Head | Outcome::Body if rewrote => "injected_csp_nonce",
                    o => o.as_str(),
                };
                self.metrics.inject(label);
                inject::log(label, session.req_header().uri.path());
            }
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = failure_status(e);
        if code == 504 {
            self.metrics.upstream_timeouts.inc();
        }
        if code > 0 && session.response_written().is_none() {
            if self.settings.inject.enabled {
                inject::downstream_compression(session, 0);
            }
            // Built by hand rather than with respond_error(), so the client still gets its
            // request id and cookies.
            let reason = http::StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            let body = Bytes::from(format!("{code} {reason}\n"));
            if let Ok(mut resp) = ResponseHeader::build(code, Some(6)) {
                let _ = resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8");
                let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len());
                let _ = resp.insert_header(http::header::CACHE_CONTROL, "no-store");
                let texts = self.texts(session, ctx, self.settings.capture.enabled);
                identity::add_response_headers(&mut resp, &self.names, texts);
                if session
                    .write_response_header(Box::new(resp), false)
                    .await
                    .is_ok()
                {
                    let _ = session.write_response_body(Some(body), true).await;
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.collected {
            return;
        }
        let s = &self.settings;
        let req = session.req_header();
        let resp = session.response_written();
        let status = resp.map_or(0, |r| r.status.as_u16());
        let content_type = resp
            .and_then(|r| r.headers.get(http::header::CONTENT_TYPE))
            .map_or(&[][..], |v| v.as_bytes());
        let path = req.uri.path();
        let kind = capture::classify(
            &req.method,
            path,
            &req.headers,
            content_type,
            status,
            &s.capture,
        );
        self.metrics.request(kind);
        if !s.capture.enabled {
            return;
        }
        let rule = capture::match_rule_index(&s.capture.rules, &req.method, path, status);
        // An uncaptured asset is not stored, unless the backend attached events to it.
        let store_request = rule.is_some() || kind != Kind::Asset || s.capture.assets;
        if !store_request && ctx.backend.events.is_empty() {
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
            accept_language: req.headers.contains_key(http::header::ACCEPT_LANGUAGE),
            sec_ch_ua_headless: req
                .headers
                .get("sec-ch-ua")
                .is_some_and(|v| capture::contains_ci(v.as_bytes(), b"headless")),
        };
        let method = req.method.clone();
        // Whole microseconds (the resolution that means anything here), as one division:
        // a short decimal form in every text format the sinks write.
        let duration_ms = ctx.start.elapsed().as_micros() as f64 / 1000.0;
        let bytes_out = session.body_bytes_sent() as u64;
        let texts = self.texts(session, ctx, true);
        let (captured, text, request_id) =
            (texts.captured, texts.buf().clone(), texts.request_id_span());
        // Always there: texts are written with the captured fields whenever capture is on.
        let Some(c) = captured else { return };
        let ids = ctx.ids.as_ref().expect("texts() sets ids");
        // The backend's user goes with the event; backend events (rare) need it too.
        let user_id = if ctx.backend.events.is_empty() {
            ctx.backend.user_id.take()
        } else {
            ctx.backend.user_id.clone()
        };
        // Raw path, query and referrer, and the full IP: the pipeline parses campaigns and
        // geo from them, then redacts and anonymises before anything is stored.
        let hit = Hit {
            event_id: Uuid::now_v7(),
            ts_us: ctx.ts_us,
            received_at_us: now_us(),
            site: self.site,
            name,
            method,
            status: (status > 0).then_some(status),
            duration_ms,
            bytes_out,
            visitor_id: ids.visitor,
            session_id: ids.session,
            user_id,
            hints: crate::event::Hints {
                privacy: ids.mode,
                signals,
            },
            text,
            request_id,
            captured: c,
        };
        if ctx.backend.events.is_empty() {
            if store_request {
                self.events.send_hit(Box::new(hit));
            }
            return;
        }
        // Events from the backend (rare) are built from the request's own.
        let e = hit.into_event();
        for custom in stitch::events(&ctx.backend, &e, s) {
            self.events.send(Box::new(custom));
        }
        if store_request {
            self.events.send(Box::new(e));
        }
    }
}
