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

use super::identity::{self, Ids};
use super::inject::Script;
use super::ratelimit::RateLimiter;
use super::texts::Texts;
use crate::config::Settings;
use crate::event::{now_us, PrivacyMode, Source};
use crate::ingest::{ingest_items, native, IngestSender};
use crate::metrics::Metrics;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
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

/// Answer a request under the collect prefix. Errors writing the answer are the client's
/// (it went away); there is nothing else to do about them.
pub async fn handle(
    session: &mut Session,
    s: &Settings,
    c: &Collect,
    ids: &Ids,
    texts: &Texts,
    names: &identity::Names,
    client_ip: Option<IpAddr>,
) {
    let script = &c.script;
    let req = session.req_header();
    if req.uri.path() == script.path && matches!(req.method, http::Method::GET | http::Method::HEAD)
    {
        // GET and HEAD carry no body to drain.
        let _ = serve_script(session, script).await;
        return;
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
        match read_body(session, s.ingest.collect_max_bytes).await {
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
                collect(session, s, c, ids, client_ip, &raw).await
            }
        }
    };
    if !body_read {
        session.set_keepalive(None);
    }
    let _ = respond(session, answer, texts, names).await;
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
fn is_beacon(req: &pingora::http::RequestHeader, ids: &Ids) -> bool {
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
    session: &Session,
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
    let req = session.req_header();
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
async fn read_body(session: &mut Session, max: usize) -> Result<Vec<u8>, u16> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(413);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(400),
        }
    }
}

fn error_json(msg: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": msg }).to_string())
}

/// `t.js`: cacheable for an hour, revalidated by its `ETag` (it changes with the settings and
/// the tollgate version). No cookies are set on it.
async fn serve_script(session: &mut Session, script: &Script) -> pingora::Result<()> {
    let req = session.req_header();
    let head = req.method == http::Method::HEAD;
    let fresh = req
        .headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().trim_start_matches("W/") == script.etag);
    let gzip = accepts_gzip(req);
    let status = if fresh { 304 } else { 200 };
    let mut resp = ResponseHeader::build(status, Some(7))?;
    resp.insert_header(http::header::CACHE_CONTROL, "public, max-age=3600")?;
    resp.insert_header(http::header::ETAG, &script.etag)?;
    resp.insert_header(http::header::VARY, "Accept-Encoding")?;
    if fresh {
        return session.write_response_header(Box::new(resp), true).await;
    }
    let body = if gzip {
        resp.insert_header(http::header::CONTENT_ENCODING, "gzip")?;
        script.gzip.clone()
    } else {
        script.body.clone()
    };
    resp.insert_header(http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header("x-content-type-options", "nosniff")?;
    session.write_response_header(Box::new(resp), head).await?;
    if head {
        return Ok(());
    }
    session.write_response_body(Some(body), true).await
}

/// Whether `Accept-Encoding` takes gzip (`gzip` or `*`, without `q=0`).
fn accepts_gzip(req: &pingora::http::RequestHeader) -> bool {
    req.headers
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let mut parts = t.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// Built by hand, not with `respond_error`, which would close the connection and drop the
/// identity cookies.
async fn respond(
    session: &mut Session,
    (status, body, retry_after): Answer,
    texts: &Texts,
    names: &identity::Names,
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(7))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    if let Some(secs) = retry_after {
        resp.insert_header(http::header::RETRY_AFTER, secs)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    identity::add_response_headers(&mut resp, names, texts);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}
