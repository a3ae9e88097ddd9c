//! The first-party collect endpoint: `POST <ingest.collect_prefix>/e` on the proxy listener
//! takes custom events from the browser (`fetch` or `navigator.sendBeacon`, which sends
//! `text/plain`). Same origin as the site, so no third-party request for blockers to drop.
//! `GET <ingest.collect_prefix>/t.js` serves the tracker ([`super::inject`]).
//!
//! Everything under the prefix is answered here and never forwarded upstream. The visitor and
//! session come from the cookies, exactly as for proxied requests; the answer comes only once
//! the events are committed.
//!
//! This is the public port: a request costs at most `ingest.collect_max_bytes` of body and
//! `ingest.collect_max_items` events, each client IP gets a token bucket
//! ([`super::ratelimit`]), and [`native`] takes less on trust from here than from the backend
//! (reserved names, timestamps, ids).

use super::body::Body;
use super::head::RequestHead;
use super::identity::{self, Ids};
use super::inject::codec;
use super::inject::Script;
use super::ratelimit::RateLimiter;
use super::texts::Texts;
use crate::config::Settings;
use crate::event::{now_us, PrivacyMode, Source};
use crate::ingest::{ingest_items, native, IngestSender};
use crate::metrics::Metrics;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use std::net::IpAddr;

/// True when `path` is tollgate's own, not the site's.
pub fn is_ours(path: &str, s: &Settings) -> bool {
    let p = &s.ingest.collect_prefix;
    path.strip_prefix(p.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What the endpoint shares across requests (and, cloned, across the proxy's workers).
#[derive(Clone)]
pub struct Collect {
    pub ingest: IngestSender,
    pub script: Script,
    /// `None` when `ingest.collect_rate` is 0.
    pub limiter: Option<std::sync::Arc<RateLimiter>>,
    pub metrics: std::sync::Arc<Metrics>,
}

/// One answer: status, JSON body, and the seconds to wait before a retry (429s).
type Answer = (u16, Bytes, Option<u64>);

/// Answer a request under the collect prefix.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    req: &RequestHead,
    body: Incoming,
    s: &Settings,
    c: &Collect,
    ids: &Ids,
    texts: &Texts,
    names: &identity::Names,
    client_ip: Option<IpAddr>,
) -> Response<Body> {
    let script = &c.script;
    if req.uri.path() == script.path && matches!(req.method, http::Method::GET | http::Method::HEAD)
    {
        // GET and HEAD carry no body to drain.
        return serve_script(req, script);
    }
    let endpoint = format!("{}/e", s.ingest.collect_prefix);
    // Whether the request body was read to its end: if not, what is left of it would be
    // taken for the next request on the connection, so the connection must close.
    let mut body_read = false;
    let answer = if req.uri.path() != endpoint {
        (404, error_json("no such tollgate endpoint"), None)
    } else if req.method != http::Method::POST {
        (405, error_json("use POST"), None)
    } else if let Err(wait) = take(c, client_ip, 1) {
        // Refused before the body is read: the cheapest answer to a flood.
        c.metrics.refused("collect_rate");
        rate_limited(wait)
    } else {
        match read_body(body, s.ingest.collect_max_bytes).await {
            Err(413) => (
                413,
                error_json(&format!(
                    "body larger than {} bytes (ingest.collect_max_bytes)",
                    s.ingest.collect_max_bytes
                )),
                None,
            ),
            Err(status) => (
                status,
                error_json("the request body could not be read"),
                None,
            ),
            Ok(raw) => {
                body_read = true;
                collect(req, s, c, ids, client_ip, &raw).await
            }
        }
    };
    respond(answer, texts, names, !body_read)
}

/// Take `n` tokens of `ip`'s bucket; `Err` is the wait until they would be there.
fn take(c: &Collect, ip: Option<IpAddr>, n: usize) -> Result<(), std::time::Duration> {
    match (&c.limiter, ip) {
        (Some(l), Some(ip)) if n > 0 => l.take(
            ip,
            u32::try_from(n).unwrap_or(u32::MAX),
            std::time::Instant::now(),
        ),
        _ => Ok(()),
    }
}

fn rate_limited(wait: std::time::Duration) -> Answer {
    let secs = wait.as_secs().max(1);
    (
        429,
        error_json(&format!(
            "too many events from this address; retry in {secs} s (ingest.collect_rate)"
        )),
        Some(secs),
    )
}

/// The tracker's own beacon: same-origin by fetch metadata, from a visitor tollgate identified
/// (a visitor cookie it issued, or the cookieless id). Only such a request may send page views.
fn is_beacon(req: &RequestHead, ids: &Ids) -> bool {
    let same_origin = req
        .headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"same-origin"));
    let known = match ids.mode {
        PrivacyMode::Identified => ids.visitor.is_some() && !ids.set_visitor,
        PrivacyMode::Cookieless => ids.visitor.is_some(),
        PrivacyMode::Anonymous => false,
    };
    same_origin && known
}

async fn collect(
    req: &RequestHead,
    s: &Settings,
    c: &Collect,
    ids: &Ids,
    client_ip: Option<IpAddr>,
    raw: &[u8],
) -> Answer {
    let items = match native::split_body(raw, s.ingest.collect_max_items) {
        Ok(items) => items,
        Err(e @ native::BodyError::TooMany(_)) => {
            c.metrics.refused("collect_items");
            return (
                413,
                error_json(&format!("{e} (ingest.collect_max_items)")),
                None,
            );
        }
        Err(e) => return (400, error_json(&e.to_string()), None),
    };
    // The first token was taken before the body was read.
    if let Err(wait) = take(c, client_ip, items.len().saturating_sub(1)) {
        c.metrics.refused("collect_rate");
        return rate_limited(wait);
    }
    let ua = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let cx = native::Context {
        site: &s.site_id,
        source: Source::Browser,
        browser: Some(native::BrowserRequest {
            visitor_id: ids.visitor,
            session_id: ids.session,
            privacy: ids.mode,
            user_agent: ua,
            ip: client_ip.map(|ip| ip.to_string()),
            request_id: Some(ids.request_id.as_str()),
            beacon: is_beacon(req, ids),
            max_skew_us: s.ingest.collect_max_skew.as_micros() as i64,
        }),
        now_us: now_us(),
    };
    match ingest_items(&c.ingest, items, &cx).await {
        Ok(report) => {
            let status = if report.accepted == 0 { 400 } else { 200 };
            let json = serde_json::to_vec(&report).unwrap_or_default();
            (status, Bytes::from(json), None)
        }
        Err(e) => (503, error_json(&e.to_string()), None),
    }
}

/// The whole body, or the status to answer when it is larger than `max`.
async fn read_body(mut body: Incoming, max: usize) -> Result<Vec<u8>, u16> {
    use http_body_util::BodyExt;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(400) };
        if let Ok(chunk) = frame.into_data() {
            if out.len() + chunk.len() > max {
                return Err(413);
            }
            out.extend_from_slice(&chunk);
        }
    }
    Ok(out)
}

fn error_json(msg: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": msg }).to_string())
}

/// `t.js`: cacheable for an hour, revalidated by its `ETag` (it changes with the settings and
/// the tollgate version). No cookies are set on it.
fn serve_script(req: &RequestHead, script: &Script) -> Response<Body> {
    let head = req.method == http::Method::HEAD;
    let fresh = req
        .headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().trim_start_matches("W/") == script.etag);
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    if let Ok(etag) = HeaderValue::from_str(&script.etag) {
        h.insert(header::ETAG, etag);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if fresh {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return resp;
    }
    let body = if codec::accepts_gzip(&req.headers) {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        script.gzip.clone()
    } else {
        script.body.clone()
    };
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if !head {
        *resp.body_mut() = Body::full(body);
    }
    resp
}

/// The answer, with the request id and the identity cookies. `close` when the request's body
/// was left unread.
fn respond(
    (status, body, retry_after): Answer,
    texts: &Texts,
    names: &identity::Names,
    close: bool,
) -> Response<Body> {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let (mut head, ()) = resp.into_parts();
    texts.add_response_headers(&mut head, names);
    Response::from_parts(head, Body::full(body))
}
