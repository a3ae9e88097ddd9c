//! The tracker in HTML pages (`[inject]`, off by default): which responses get
//! `<script src="<collect_prefix>/t.js" defer>`, what their headers need, and `t.js` itself.
//!
//! The steps, in the order the proxy takes them:
//! 1. [`wanted`] looks at the request: a browser navigation (GET with `Accept: text/html`,
//!    HTTP/1.1 or later, no `Range`), not an excluded path, no GPC/DNT opt-out.
//! 2. Such a request goes upstream without `Accept-Encoding`. Decoding the upstream's gzip only
//!    to encode it again doubled the cost per page (BENCHMARKS.md); this way the page is
//!    compressed once, by tollgate, as the upstream would have.
//! 3. [`plan`] reads the upstream's header: a 200 `text/html` page that has not opted out, in
//!    identity, gzip or br (an upstream may compress anyway), whose CSP can allow the script.
//!    Only then is the body decoded ([`codec`]).
//! 4. [`apply`] fixes the headers (length, `ETag`, `Vary`, CSP).
//! 5. The [`Injector`] streams the body, and [`codec`] gzips it when the client takes gzip
//!    (only gzip: one encoder to get right, and every browser takes it).
//!
//! Requests that are not navigations never see any of this: they pass byte for byte.

pub mod codec;
mod csp;
mod scan;

pub use scan::{Injector, Outcome, MAX_TAG};

use crate::config::Settings;
use crate::proxy::capture::{contains_ci, path_matches};
use crate::proxy::consent;
use crate::proxy::head::{RequestHead, ResponseHead};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicBool, Ordering};

/// The response header an upstream sends to keep a page free of the tracker.
pub const OPT_OUT_HEADER: &str = "x-tollgate-inject";

/// `t.js`, built once from the settings.
#[derive(Clone)]
pub struct Script {
    /// The script's URL path, `<collect_prefix>/t.js`.
    pub path: String,
    pub body: Bytes,
    /// `body`, gzipped once at the best level.
    pub gzip: Bytes,
    pub etag: String,
}

impl Script {
    pub fn new(s: &Settings) -> Script {
        let config = serde_json::json!({
            "prefix": s.ingest.collect_prefix,
            "gpc": s.privacy.honor_gpc,
            "dnt": s.privacy.honor_dnt,
            "engagement": s.inject.engagement,
        });
        let body = include_str!("t.js").replacen("/*CONFIG*/ {}", &config.to_string(), 1);
        let mut h = siphasher::sip::SipHasher13::new();
        std::hash::Hasher::write(&mut h, body.as_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let _ = std::io::Write::write_all(&mut gz, body.as_bytes());
        let gzip = gz.finish().unwrap_or_default();
        Script {
            path: format!("{}/t.js", s.ingest.collect_prefix),
            etag: format!("\"{:016x}\"", std::hash::Hasher::finish(&h)),
            body: Bytes::from(body),
            gzip: Bytes::from(gzip),
        }
    }

    /// The element inserted into pages, with a nonce when the page's CSP needs one.
    fn tag(&self, nonce: Option<&str>) -> Bytes {
        match nonce {
            Some(n) => format!(
                "<script src=\"{}\" defer nonce=\"{n}\"></script>",
                self.path
            ),
            None => format!("<script src=\"{}\" defer></script>", self.path),
        }
        .into()
    }

    pub fn injector(&self, plan: &Plan) -> Injector {
        Injector::new(plan.tag.clone(), Bytes::from(self.path.clone()))
    }
}

/// Whether the answer to this request may get the tracker. Checked before the upstream is asked.
pub fn wanted(req: &RequestHead, s: &Settings) -> bool {
    s.inject.enabled
        && req.method == http::Method::GET
        // HTTP/1.0 clients cannot take the chunked body an injected page needs.
        && req.version >= http::Version::HTTP_11
        // A navigation: browsers ask for text/html only when they will render the answer, so
        // fetch(), images, scripts and styles pass untouched.
        && req
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| contains_ci(v.as_bytes(), b"text/html"))
        // fetch() of HTML (Turbo, htmx) says so, where the browser sends Sec-Fetch-Dest.
        && req.headers.get("sec-fetch-dest").is_none_or(|d| {
            let d = d.as_bytes();
            d.eq_ignore_ascii_case(b"document") || d.eq_ignore_ascii_case(b"iframe")
        })
        && !req.headers.contains_key(header::RANGE)
        && !s.inject.exclude.iter().any(|p| path_matches(p, req.uri.path()))
        && !consent::opted_out(req, &s.privacy)
}

/// What [`plan`] needs of the client's request, read before its head goes upstream.
pub struct Request {
    /// The client's `Host` (or the URI's authority).
    host: Option<HeaderValue>,
    secure: bool,
    uri: http::Uri,
}

impl Request {
    pub fn of(req: &RequestHead, fwd: &crate::proxy::forwarded::Forwarded) -> Request {
        Request {
            host: req.headers.get(header::HOST).cloned().or_else(|| {
                req.uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
            secure: fwd.proto == "https",
            uri: req.uri.clone(),
        }
    }

    pub fn path(&self) -> &str {
        self.uri.path()
    }
}

/// CSP headers to replace, each with its full new list of values.
type CspRewrites = Vec<(HeaderName, Vec<HeaderValue>)>;

/// What to do to one page, decided from the upstream's response header.
pub struct Plan {
    tag: Bytes,
    csp: CspRewrites,
    /// The upstream body is gzip or br and must be decoded first.
    pub decompress: Option<codec::Coding>,
}

impl Plan {
    /// Whether the page's CSP was rewritten for the tracker.
    pub fn rewrote_csp(&self) -> bool {
        !self.csp.is_empty()
    }
}

/// Why a response is not injected, for the log and `tollgate_inject_total`.
pub type Skip = Option<&'static str>;

/// Decide whether this upstream response gets the tracker. `Err(None)` means it is not an
/// HTML page at all; `Err(Some(reason))` is a page left alone on purpose.
pub fn plan(
    resp: &ResponseHead,
    end_of_stream: bool,
    req: &Request,
    script: &Script,
    s: &Settings,
) -> Result<Plan, Skip> {
    let h = &resp.headers;
    let ct = h
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    check_page(resp, ct, end_of_stream)?;
    let decompress = decoding(h)?;
    let has_csp = h.contains_key(header::CONTENT_SECURITY_POLICY)
        || h.contains_key(header::CONTENT_SECURITY_POLICY_REPORT_ONLY);
    if !has_csp {
        return Ok(Plan {
            tag: script.tag(None),
            csp: Vec::new(),
            decompress,
        });
    }
    let (csp, nonce) = adapt_csp(h, req, s)?;
    let tag = script.tag((!csp.is_empty()).then_some(nonce.as_str()));
    Ok(Plan {
        tag,
        csp,
        decompress,
    })
}

/// Whether the response, whose `Content-Type` is `ct`, is a whole 200 HTML page that may be
/// injected: [`plan`]'s answer when it is not.
fn check_page(resp: &ResponseHead, ct: &[u8], end_of_stream: bool) -> Result<(), Skip> {
    let h = &resp.headers;
    let media = ct.split(|&b| b == b';').next().unwrap_or_default();
    if resp.status != http::StatusCode::OK
        || end_of_stream
        || !media.trim_ascii().eq_ignore_ascii_case(b"text/html")
        || h.contains_key(header::CONTENT_RANGE)
    {
        return Err(None);
    }
    if h.get_all(OPT_OUT_HEADER)
        .iter()
        .any(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"off"))
    {
        return Err(Some("skipped_opt_out"));
    }
    if no_transform(resp) {
        return Err(Some("skipped_no_transform"));
    }
    if contains_ci(ct, b"utf-16") || contains_ci(ct, b"utf-32") {
        return Err(Some("skipped_charset"));
    }
    Ok(())
}

/// How the page's body must be decoded before injection, from its `Content-Encoding`; an
/// encoding tollgate cannot decode skips the page.
fn decoding(h: &http::HeaderMap) -> Result<Option<codec::Coding>, Skip> {
    let encoding = h
        .get(header::CONTENT_ENCODING)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    match encoding.trim_ascii() {
        b"" => Ok(None),
        e if e.eq_ignore_ascii_case(b"identity") => Ok(None),
        e if e.eq_ignore_ascii_case(b"gzip") || e.eq_ignore_ascii_case(b"x-gzip") => {
            Ok(Some(codec::Coding::Gzip))
        }
        e if e.eq_ignore_ascii_case(b"br") => Ok(Some(codec::Coding::Br)),
        _ => Err(Some("skipped_encoding")),
    }
}

/// The CSP headers to replace so that the page's policies allow the tracker, with the nonce
/// they were given (used only when a header changed). A policy that cannot be made to allow
/// it, or a host that cannot go into one, skips the page.
fn adapt_csp(
    h: &http::HeaderMap,
    req: &Request,
    s: &Settings,
) -> Result<(CspRewrites, String), Skip> {
    let scheme = if req.secure { "https" } else { "http" };
    let host = req
        .host
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The host goes into the policy: only a plain host[:port] or [v6]:port, never a header
    // that could smuggle directives in.
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return Err(Some("skipped_csp"));
    }
    let endpoint = format!("{scheme}://{host}{}/e", s.ingest.collect_prefix);
    let origin = csp::Origin {
        scheme,
        host,
        endpoint: &endpoint,
    };
    let nonce = new_nonce();
    let mut rewrites = Vec::new();
    for (name, enforced) in [
        (header::CONTENT_SECURITY_POLICY, true),
        (header::CONTENT_SECURITY_POLICY_REPORT_ONLY, false),
    ] {
        if let Some(values) = adapt_csp_header(h, &name, enforced, &nonce, &origin)? {
            rewrites.push((name, values));
        }
    }
    Ok((rewrites, nonce))
}

/// The values of the CSP header `name` adapted to allow the tracker, or `None` when none of
/// them had to change. `enforced` is false for `Content-Security-Policy-Report-Only`.
fn adapt_csp_header(
    h: &http::HeaderMap,
    name: &HeaderName,
    enforced: bool,
    nonce: &str,
    origin: &csp::Origin,
) -> Result<Option<Vec<HeaderValue>>, Skip> {
    let mut values = Vec::new();
    let mut changed = false;
    for v in h.get_all(name) {
        let Ok(policy) = v.to_str() else {
            return Err(Some("skipped_csp"));
        };
        match csp::adapt(policy, nonce, origin) {
            csp::Verdict::Allowed => values.push(v.clone()),
            csp::Verdict::Rewritten(p) => {
                let Ok(p) = HeaderValue::from_str(&p) else {
                    return Err(Some("skipped_csp"));
                };
                values.push(p);
                changed = true;
            }
            // A report-only policy blocks nothing: it is never a reason to skip the page.
            _ if !enforced => values.push(v.clone()),
            _ => return Err(Some("skipped_csp")),
        }
    }
    Ok(changed.then_some(values))
}

/// Fix the headers of a page that gets the tracker.
pub fn apply(resp: &mut ResponseHead, plan: &Plan) {
    let _ = resp.headers.remove(OPT_OUT_HEADER);
    // The length changes, byte ranges no longer line up, and the body streams.
    let _ = resp.headers.remove(&header::CONTENT_LENGTH);
    let _ = resp.headers.remove(&header::ACCEPT_RANGES);
    if !resp.headers.contains_key(header::TRANSFER_ENCODING) {
        let _ = resp.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    // Same resource, different bytes: the validator becomes weak (as nginx's gzip does).
    if let Some(etag) = resp.headers.get(header::ETAG).cloned() {
        let e = etag.as_bytes();
        if e.starts_with(b"\"") {
            if let Ok(weak) = HeaderValue::from_bytes(&[b"W/", e].concat()) {
                let _ = resp.headers.insert(header::ETAG, weak);
            }
        } else if !e.starts_with(b"W/") {
            let _ = resp.headers.remove(&header::ETAG);
        }
    }
    vary_accept_encoding(resp);
    if !plan.csp.is_empty() {
        // The nonce is this response's alone: a 304 would pair the cached page with the
        // upstream's policy again, so the page is not revalidated.
        let _ = resp.headers.remove(&header::ETAG);
        let _ = resp.headers.remove(&header::LAST_MODIFIED);
    }
    for (name, values) in &plan.csp {
        let _ = resp.headers.remove(name);
        for v in values {
            let _ = resp.headers.append(name.clone(), v.clone());
        }
    }
}

/// Add `Vary: Accept-Encoding` unless the response already varies on it (or on everything).
pub fn vary_accept_encoding(resp: &mut ResponseHead) {
    let varies = resp.headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            t.trim_ascii() == b"*" || t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if !varies {
        resp.headers
            .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// Whether the response's type is text that gzip shrinks (HTML, CSS, scripts, JSON, XML, SVG),
/// not media that is compressed already.
pub fn compressible(resp: &ResponseHead) -> bool {
    let ct = resp
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let media = ct
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let m = media.to_ascii_lowercase();
    m.starts_with(b"text/")
        || m.ends_with(b"+json")
        || m.ends_with(b"+xml")
        || matches!(
            &m[..],
            b"application/json"
                | b"application/javascript"
                | b"application/xml"
                | b"application/wasm"
                | b"image/svg+xml"
        )
}

/// `Cache-Control: no-transform`: a proxy must not change the body, its encoding included.
pub fn no_transform(resp: &ResponseHead) -> bool {
    resp.headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .any(|v| contains_ci(v.as_bytes(), b"no-transform"))
}

/// Remove the opt-out header from a response tollgate did not inject.
pub fn strip_control(resp: &mut ResponseHead) {
    if resp.headers.contains_key(OPT_OUT_HEADER) {
        let _ = resp.headers.remove(OPT_OUT_HEADER);
    }
}

/// Log what happened to one page: at debug level, except the first time a page is left alone
/// because of its CSP, or gets a CSP allowance, which is logged at info.
pub fn log(outcome: &str, path: &str) {
    static CSP_NOTED: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
    let first = match outcome {
        "injected_csp_nonce" => Some(0),
        "skipped_csp" => Some(1),
        "skipped_meta_csp" => Some(2),
        _ => None,
    }
    .is_some_and(|i| !CSP_NOTED[i].swap(true, Ordering::Relaxed));
    let what = match outcome {
        "injected_csp_nonce" => "injected; the page's Content-Security-Policy got a nonce for the script and the collect endpoint for its beacons",
        "skipped_csp" => "not injected: the page's Content-Security-Policy relies on 'unsafe-inline', which a nonce would disable",
        "skipped_meta_csp" => "not injected: the page sets a Content-Security-Policy in a <meta> tag",
        other => other,
    };
    if first {
        tracing::info!(
            target: "tollgate::inject",
            path,
            "{what} (further pages: debug log and tollgate_inject_total)"
        );
    } else {
        tracing::debug!(target: "tollgate::inject", path, outcome, "{what}");
    }
}

fn new_nonce() -> String {
    use base64::Engine;
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        // Without the OS generator, fall back to the hasher's random keys: still unguessable
        // by the page's visitors.
        let h =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        raw[..8].copy_from_slice(&h.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut s = Settings::defaults("http://127.0.0.1:1").unwrap();
        s.inject.enabled = true;
        s
    }

    #[test]
    fn the_tracker_is_small() {
        use std::io::Read;
        let script = Script::new(&settings());
        let size = script.gzip.len();
        assert!(size <= 3 * 1024, "t.js is {size} bytes gzipped");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&script.gzip[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, script.body);
        let text = std::str::from_utf8(&script.body).unwrap();
        assert!(text.contains("\"prefix\":\"/_tollgate\""), "{text}");
        assert!(!text.contains("/*CONFIG*/"));
    }

    fn page(headers: &[(&str, &str)]) -> ResponseHead {
        let mut all = vec![("content-type", "text/html; charset=utf-8")];
        all.extend_from_slice(headers);
        crate::proxy::head::response(200, &all)
    }

    fn judge(resp: &ResponseHead) -> Result<Plan, Skip> {
        let s = settings();
        let req = crate::proxy::head::request("GET", "/", &[("host", "shop.example")]);
        let fwd = crate::proxy::forwarded::compute(
            "127.0.0.1".parse().ok(),
            &crate::proxy::head::request(
                "GET",
                "/",
                &[("host", "shop.example"), ("x-forwarded-proto", "https")],
            ),
            &["0.0.0.0/0".parse().unwrap()],
        );
        plan(resp, false, &Request::of(&req, &fwd), &Script::new(&s), &s)
    }

    #[test]
    fn which_pages_get_the_tracker() {
        assert!(judge(&page(&[])).is_ok());
        assert!(judge(&page(&[("content-encoding", "gzip")]))
            .unwrap()
            .decompress
            .is_some());
        assert!(judge(&page(&[("content-encoding", "br")]))
            .unwrap()
            .decompress
            .is_some());
        for (headers, why) in [
            (&[("x-tollgate-inject", "off")][..], "skipped_opt_out"),
            (
                &[("cache-control", "public, no-transform")],
                "skipped_no_transform",
            ),
            (&[("content-encoding", "zstd")], "skipped_encoding"),
            (
                &[("content-security-policy", "script-src 'unsafe-inline'")],
                "skipped_csp",
            ),
        ] {
            assert_eq!(judge(&page(headers)).err(), Some(Some(why)), "{headers:?}");
        }
        let mut json = page(&[]);
        json.headers
            .insert("content-type", HeaderValue::from_static("application/json"));
        assert_eq!(judge(&json).err(), Some(None));
        let mut partial = page(&[]);
        partial.status = http::StatusCode::PARTIAL_CONTENT;
        assert_eq!(judge(&partial).err(), Some(None));
    }

    #[test]
    fn headers_of_an_injected_page() {
        let mut resp = page(&[
            ("content-length", "123"),
            ("etag", "\"abc\""),
            ("accept-ranges", "bytes"),
            ("content-security-policy", "default-src 'none'"),
        ]);
        let plan = judge(&resp).unwrap();
        assert!(plan.rewrote_csp());
        let tag = std::str::from_utf8(&plan.tag).unwrap().to_string();
        apply(&mut resp, &plan);
        let h = &resp.headers;
        assert!(h.get("content-length").is_none() && h.get("accept-ranges").is_none());
        assert_eq!(h["transfer-encoding"], "chunked");
        assert_eq!(h["vary"], "Accept-Encoding");
        assert!(
            h.get("etag").is_none(),
            "a page with a fresh nonce is not revalidated"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        let nonce = tag
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches("\"></script>");
        assert!(
            csp.contains(&format!("script-src 'nonce-{nonce}'")),
            "{csp} / {tag}"
        );
        assert!(
            csp.contains("connect-src https://shop.example/_tollgate/e"),
            "{csp}"
        );
    }
}
