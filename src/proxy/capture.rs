//! Capture: turn a finished request into one event. Called once its response body has been
//! sent (`proxy::body`).
//!
//! Classification, route templating and rule matching live here; redaction is enrichment's job
//! ([`crate::enrich::privacy`]), off the request path. All of it is
//! string scanning with no allocation beyond the event's own fields.

use crate::config::{Capture, PathPattern, Rule};
use crate::event::RequestKind as Kind;
use http::{HeaderMap, Method};
use std::borrow::Cow;

/// Extensions that mark a static asset when the content type does not.
const ASSET_EXTENSIONS: &[&str] = &[
    "css",
    "js",
    "mjs",
    "map",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "webp",
    "avif",
    "svg",
    "ico",
    "bmp",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "eot",
    "mp4",
    "webm",
    "mp3",
    "ogg",
    "wav",
    "wasm",
    "pdf",
    "zip",
    "gz",
    "txt",
    "xml",
    "webmanifest",
];

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a [u8] {
    h.get(name).map_or(&[], |v| v.as_bytes())
}

pub fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The media type of a `Content-Type` value, lower-cased, without parameters. Borrowed unless
/// it has to be lower-cased or repaired (rare: servers send it lower-case).
fn media_type(ct: &[u8]) -> Cow<'_, str> {
    let end = ct.iter().position(|&b| b == b';').unwrap_or(ct.len());
    match String::from_utf8_lossy(&ct[..end]) {
        Cow::Borrowed(t) => {
            let t = t.trim();
            if t.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(t.to_ascii_lowercase())
            } else {
                Cow::Borrowed(t)
            }
        }
        Cow::Owned(t) => Cow::Owned(t.trim().to_ascii_lowercase()),
    }
}

fn is_api_media(mt: &str) -> bool {
    mt == "application/json"
        || mt.ends_with("+json")
        || mt == "application/xml"
        || mt == "text/xml"
        || mt.ends_with("+xml") && !mt.starts_with("image/")
        || mt == "application/grpc-web"
        || mt == "application/x-ndjson"
}

fn is_asset_media(mt: &str) -> bool {
    mt.starts_with("image/")
        || mt.starts_with("font/")
        || mt.starts_with("audio/")
        || mt.starts_with("video/")
        || mt == "text/css"
        || mt.contains("javascript")
        || mt == "application/wasm"
        || mt == "application/font-woff"
        || mt == "application/manifest+json"
}

fn extension(path: &str) -> Option<&str> {
    let last = path.rsplit('/').next()?;
    let (_, ext) = last.rsplit_once('.')?;
    Some(ext)
}

/// What classification (and the bot heuristics) need from the request's headers, read once
/// before those headers go upstream: a few flags instead of a copy of the headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// `Sec-Purpose`/`Purpose: prefetch|prerender`, or `X-Moz: prefetch`.
    prefetch: bool,
    /// `X-Requested-With: XMLHttpRequest`, or `Sec-Fetch-Dest: empty` outside a navigation.
    xhr: bool,
    /// No `Sec-Fetch-Dest`, or a document, iframe or frame.
    navigation: bool,
    /// `Accept` names `text/html`.
    accepts_html: bool,
    pub accept_language: bool,
    /// `Sec-CH-UA` names a headless browser.
    pub headless: bool,
}

impl Facts {
    pub fn of(req: &HeaderMap) -> Facts {
        let purpose = header(req, "sec-purpose");
        let purpose = if purpose.is_empty() {
            header(req, "purpose")
        } else {
            purpose
        };
        let dest = header(req, "sec-fetch-dest");
        Facts {
            prefetch: contains_ci(purpose, b"prefetch")
                || contains_ci(purpose, b"prerender")
                || header(req, "x-moz").eq_ignore_ascii_case(b"prefetch"),
            xhr: header(req, "x-requested-with").eq_ignore_ascii_case(b"xmlhttprequest")
                || (dest.eq_ignore_ascii_case(b"empty")
                    && !header(req, "sec-fetch-mode").eq_ignore_ascii_case(b"navigate")),
            navigation: dest.is_empty()
                || dest.eq_ignore_ascii_case(b"document")
                || dest.eq_ignore_ascii_case(b"iframe")
                || dest.eq_ignore_ascii_case(b"frame"),
            accepts_html: contains_ci(header(req, "accept"), b"text/html"),
            accept_language: req.contains_key(http::header::ACCEPT_LANGUAGE),
            headless: contains_ci(header(req, "sec-ch-ua"), b"headless"),
        }
    }
}

/// Classify a finished request.
///
/// - HEAD, and prefetch/prerender requests, are never page views.
/// - A path under an API prefix, a JSON/XML response, or a fetch/XHR request is an `api_call`.
/// - A static asset is recognised by content type or extension.
/// - An HTML response to a GET navigation is a `page_view`.
pub fn classify(
    method: &Method,
    path: &str,
    req: &HeaderMap,
    resp_content_type: &[u8],
    status: u16,
    cfg: &Capture,
) -> Kind {
    classify_facts(
        &Facts::of(req),
        method,
        path,
        resp_content_type,
        status,
        cfg,
    )
}

/// [`classify`], with the request's headers already read into [`Facts`].
pub fn classify_facts(
    f: &Facts,
    method: &Method,
    path: &str,
    resp_content_type: &[u8],
    status: u16,
    cfg: &Capture,
) -> Kind {
    if f.prefetch {
        return Kind::Prefetch;
    }
    if method == Method::HEAD {
        return Kind::Request;
    }
    let mt = media_type(resp_content_type);
    if cfg
        .api_prefixes
        .iter()
        .any(|p| path.starts_with(p.as_str()))
        || is_api_media(&mt)
    {
        return Kind::ApiCall;
    }
    let is_asset_ext =
        extension(path).is_some_and(|e| ASSET_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)));
    if is_asset_media(&mt) || (is_asset_ext && mt != "text/html") {
        return Kind::Asset;
    }
    if f.xhr {
        return Kind::ApiCall;
    }
    // A failed navigation (tollgate's own 502/504 has no HTML) still counts as a page view:
    // the visitor tried to see the page.
    let html =
        mt == "text/html" || mt == "application/xhtml+xml" || (status >= 500 && f.accepts_html);
    if method == Method::GET && f.navigation && html && !(300..400).contains(&status) {
        return Kind::PageView;
    }
    Kind::Request
}

/// The name given by the first matching rule.
pub fn match_rule<'a>(
    rules: &'a [Rule],
    method: &Method,
    path: &str,
    status: u16,
) -> Option<&'a str> {
    match_rule_index(rules, method, path, status).map(|i| rules[i].name.as_str())
}

/// The index of the first matching rule.
pub fn match_rule_index(rules: &[Rule], method: &Method, path: &str, status: u16) -> Option<usize> {
    rules.iter().position(|r| {
        r.method.as_ref().is_none_or(|m| m == method)
            && r.status.is_none_or(|(lo, hi)| (lo..=hi).contains(&status))
            && path_matches(&r.path, path)
    })
}

pub fn path_matches(p: &PathPattern, path: &str) -> bool {
    match p {
        PathPattern::Any => true,
        PathPattern::Exact(e) => path == e || path.strip_suffix('/') == Some(e.as_str()),
        PathPattern::Prefix(pre) => path.starts_with(pre.as_str()),
        PathPattern::Route(segs) => {
            let mut parts = path.split('/');
            for seg in segs {
                match (seg, parts.next()) {
                    (_, None) => return false,
                    (None, Some(p)) if !p.is_empty() => {}
                    (None, Some(_)) => return false,
                    (Some(s), Some(p)) if s == p => {}
                    _ => return false,
                }
            }
            parts.next().is_none_or(str::is_empty)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn cfg() -> Capture {
        Settings::defaults("http://127.0.0.1:1").unwrap().capture
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn classification() {
        let c = cfg();
        let get = Method::GET;
        assert_eq!(
            classify(&get, "/", &h(&[]), b"text/html; charset=utf-8", 200, &c),
            Kind::PageView
        );
        assert_eq!(
            classify(&get, "/missing", &h(&[]), b"text/html", 404, &c),
            Kind::PageView
        );
        assert_eq!(
            classify(&Method::HEAD, "/", &h(&[]), b"text/html", 200, &c),
            Kind::Request
        );
        assert_eq!(
            classify(
                &get,
                "/",
                &h(&[("sec-purpose", "prefetch;prerender")]),
                b"text/html",
                200,
                &c
            ),
            Kind::Prefetch
        );
        assert_eq!(
            classify(&get, "/api/products/1", &h(&[]), b"text/html", 200, &c),
            Kind::ApiCall
        );
        assert_eq!(
            classify(&get, "/data", &h(&[]), b"application/json", 200, &c),
            Kind::ApiCall
        );
        assert_eq!(
            classify(
                &get,
                "/frag",
                &h(&[("sec-fetch-dest", "empty"), ("sec-fetch-mode", "cors")]),
                b"text/html",
                200,
                &c
            ),
            Kind::ApiCall
        );
        assert_eq!(
            classify(&get, "/app.js", &h(&[]), b"text/javascript", 200, &c),
            Kind::Asset
        );
        assert_eq!(
            classify(&get, "/logo.png", &h(&[]), b"", 200, &c),
            Kind::Asset
        );
        assert_eq!(
            classify(&get, "/old", &h(&[]), b"text/html", 301, &c),
            Kind::Request
        );
        assert_eq!(
            classify(
                &get,
                "/",
                &h(&[("accept", "text/html")]),
                b"text/plain",
                502,
                &c
            ),
            Kind::PageView
        );
        assert_eq!(
            classify(&Method::POST, "/form", &h(&[]), b"text/html", 200, &c),
            Kind::Request
        );
    }

    #[test]
    fn rules() {
        let rules = vec![
            Rule {
                name: "register".into(),
                method: Some(Method::POST),
                path: PathPattern::Exact("/api/register".into()),
                status: Some((200, 299)),
            },
            Rule {
                name: "order".into(),
                method: None,
                path: PathPattern::Route(vec![Some("".into()), Some("orders".into()), None]),
                status: None,
            },
        ];
        assert_eq!(
            match_rule(&rules, &Method::POST, "/api/register", 201),
            Some("register")
        );
        assert_eq!(
            match_rule(&rules, &Method::POST, "/api/register", 400),
            None
        );
        assert_eq!(match_rule(&rules, &Method::GET, "/api/register", 200), None);
        assert_eq!(
            match_rule(&rules, &Method::GET, "/orders/7", 200),
            Some("order")
        );
        assert_eq!(match_rule(&rules, &Method::GET, "/orders/7/x", 200), None);
        assert_eq!(match_rule(&rules, &Method::GET, "/orders/", 200), None);
    }
}
