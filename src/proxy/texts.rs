//! The request's texts: one buffer for every value tollgate writes into the request's and the
//! response's headers (request, visitor and session ids, `X-Forwarded-For`, the cookies), and
//! for every field capture takes from the request.
//!
//! One allocation per request, plus the shared counter `Bytes` adds when it is first sliced,
//! instead of one (or several) per value: header values are slices of it
//! (`HeaderValue::from_maybe_shared`), and the captured [`Hit`](crate::event::Hit) keeps it
//! until the writer has turned the hit into an event. Built once the request's identity and
//! forwarded addresses are known (first thing in `Worker::handle`), since everything in it
//! follows from them and the request header.

use super::forwarded::{self, Forwarded};
use super::head::{RequestHead, ResponseHead};
use super::identity::{self, Ids, Names};
use super::signing::CookieKey;
use crate::config::{Identity, Settings};
use crate::event::{limits, Captured, Span};
use bytes::Bytes;
use http::HeaderValue;
use std::io::Write;

/// The texts of one request.
pub struct Texts {
    buf: Bytes,
    request_id: Span,
    visitor_id: Option<Span>,
    session_id: Option<Span>,
    xff: Option<Span>,
    visitor_cookie: Option<Span>,
    session_cookie: Option<Span>,
    /// What capture takes from the request; `None` when capture is off.
    pub captured: Option<Captured>,
}

/// Appends texts to a buffer, each as a [`Span`].
struct Writer(Vec<u8>);

impl Writer {
    fn text(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> Span {
        let start = self.0.len();
        f(&mut self.0);
        Span::new(start, self.0.len())
    }

    /// A text that may not be there: `f` returns false when it wrote none.
    fn maybe(&mut self, f: impl FnOnce(&mut Vec<u8>) -> bool) -> Option<Span> {
        let start = self.0.len();
        f(&mut self.0).then(|| Span::new(start, self.0.len()))
    }
}

/// The request's values that capture takes, borrowed from its head; path and query already
/// cut to their limits.
struct Fields<'a> {
    /// The `Host` header; without one, the URI's host.
    host: Option<&'a [u8]>,
    uri: &'a http::Uri,
    path: &'a str,
    query: Option<&'a str>,
    referrer: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn of(req: &'a RequestHead) -> Fields<'a> {
        let header = |name| req.headers.get(name).map(HeaderValue::as_bytes);
        Fields {
            host: header(http::header::HOST),
            uri: &req.uri,
            path: limits::cap(req.uri.path(), limits::PATH).0,
            query: req
                .uri
                .query()
                .filter(|q| !q.is_empty())
                .map(|q| limits::cap(q, limits::QUERY).0),
            referrer: header(http::header::REFERER),
            user_agent: header(http::header::USER_AGENT),
        }
    }

    /// The room they take in the buffer, the client's IP included.
    fn capacity(&self) -> usize {
        let capped = |v: Option<&[u8]>, max: usize| v.map_or(0, |v| v.len().min(max));
        capped(
            self.host.or(self.uri.host().map(str::as_bytes)),
            limits::HOST,
        ) + self.path.len()
            + self.query.map_or(0, str::len)
            + capped(self.referrer, limits::REFERRER)
            + capped(self.user_agent, limits::USER_AGENT)
            + 45
    }

    /// Write them, each cut to its limit, with the client's IP from `fwd`.
    fn write(self, w: &mut Writer, fwd: &Forwarded) -> Captured {
        Captured {
            host: match self.host {
                Some(h) => Some(w.text(|b| {
                    limits::write_header_text(b, h, limits::HOST);
                })),
                None => self.uri.host().map(|h| {
                    w.text(|b| b.extend_from_slice(limits::cap(h, limits::HOST).0.as_bytes()))
                }),
            },
            path: w.text(|b| b.extend_from_slice(self.path.as_bytes())),
            query: self
                .query
                .map(|q| w.text(|b| b.extend_from_slice(q.as_bytes()))),
            referrer: self.referrer.map(|r| {
                w.text(|b| {
                    limits::write_header_text(b, r, limits::REFERRER);
                })
            }),
            // A cut UA is still over bots::MALFORMED_MIN_LEN: marked malformed, never parsed.
            user_agent: self.user_agent.map(|u| {
                w.text(|b| {
                    limits::write_header_text(b, u, limits::USER_AGENT);
                })
            }),
            ip: fwd.client_ip.map(|ip| {
                w.text(|b| {
                    let _ = write!(b, "{ip}");
                })
            }),
        }
    }
}

impl Texts {
    /// Write the texts of `req`, from its `ids` and `fwd`; with the captured fields when
    /// `capture` is set.
    pub fn build(
        req: &RequestHead,
        ids: &Ids,
        fwd: &Forwarded,
        s: &Settings,
        key: &CookieKey,
        capture: bool,
    ) -> Texts {
        let cfg = &s.identity;
        let secure = fwd.proto == "https";
        let fields = capture.then(|| Fields::of(req));

        // Exact for valid UTF-8 (invalid bytes in captured headers make it grow once).
        let mut len = ids.request_id.len() + 2 * 36 + forwarded::xff_len(fwd, req);
        if ids.mode == crate::event::PrivacyMode::Identified {
            len += identity::cookies_len(cfg);
        }
        len += fields.as_ref().map_or(0, Fields::capacity);
        let mut w = Writer(Vec::with_capacity(len));

        let request_id = w.text(|b| b.extend_from_slice(ids.request_id.as_bytes()));
        let uuid = |v: Option<uuid::Uuid>| {
            move |b: &mut Vec<u8>| {
                v.is_some_and(|v| {
                    b.extend_from_slice(v.hyphenated().encode_lower(&mut [0; 36]).as_bytes());
                    true
                })
            }
        };
        let visitor_id = w.maybe(uuid(ids.visitor));
        let session_id = w.maybe(uuid(ids.session));
        let xff = w.maybe(|b| forwarded::write_xff(fwd, req, b));
        let start = w.0.len();
        let (visitor_end, session_end) = identity::write_cookies(&mut w.0, ids, cfg, key, secure);
        let visitor_cookie = visitor_end.map(|end| Span::new(start, end));
        let session_cookie = session_end.map(|end| Span::new(visitor_end.unwrap_or(start), end));
        let captured = fields.map(|f| f.write(&mut w, fwd));

        Texts {
            buf: Bytes::from(w.0),
            request_id,
            visitor_id,
            session_id,
            xff,
            visitor_cookie,
            session_cookie,
            captured,
        }
    }

    /// The buffer the spans point into (cheap to clone: a shared counter).
    pub fn buf(&self) -> &Bytes {
        &self.buf
    }

    /// `None` only for text that is no header value, which tollgate never writes (the old
    /// code's `insert_header` would have refused it the same way).
    fn value(&self, s: Span) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(self.buf.slice(s.range())).ok()
    }

    pub fn request_id(&self) -> Option<HeaderValue> {
        self.value(self.request_id)
    }

    pub fn request_id_span(&self) -> Span {
        self.request_id
    }

    pub fn visitor_id(&self) -> Option<HeaderValue> {
        self.visitor_id.and_then(|s| self.value(s))
    }

    pub fn session_id(&self) -> Option<HeaderValue> {
        self.session_id.and_then(|s| self.value(s))
    }

    /// `X-Forwarded-For`; `None` when it is to be removed.
    pub fn xff(&self) -> Option<HeaderValue> {
        self.xff.and_then(|s| self.value(s))
    }

    pub fn visitor_cookie(&self) -> Option<HeaderValue> {
        self.visitor_cookie.and_then(|s| self.value(s))
    }

    pub fn session_cookie(&self) -> Option<HeaderValue> {
        self.session_cookie.and_then(|s| self.value(s))
    }
}

/// The headers tollgate adds, with these texts as values.
impl Texts {
    /// Headers the upstream gets, so the backend can tie its own records to this visitor.
    /// Identity headers the client sent itself are removed when tollgate has no value for them,
    /// so they cannot be spoofed.
    pub fn add_upstream_headers(&self, req: &mut RequestHead, cfg: &Identity, names: &Names) {
        if let Some(v) = self.request_id() {
            let _ = req.headers.insert(names.request_id.clone(), v);
        }
        match self.visitor_id() {
            Some(v) => {
                let _ = req.headers.insert(names.visitor_id.clone(), v);
            }
            None => {
                req.headers.remove(&cfg.visitor_id_header);
            }
        }
        match self.session_id() {
            Some(v) => {
                let _ = req.headers.insert(names.session_id.clone(), v);
            }
            None => {
                req.headers.remove(&cfg.session_id_header);
            }
        }
    }

    /// Echo the request id and, for identified requests, append tollgate's cookies
    /// ([`identity::write_cookies`]) after any `Set-Cookie` of the upstream. Opted-out and
    /// cookieless requests get no cookie.
    pub fn add_response_headers(&self, resp: &mut ResponseHead, names: &Names) {
        if let Some(v) = self.request_id() {
            let _ = resp.headers.insert(names.request_id.clone(), v);
        }
        for cookie in [self.visitor_cookie(), self.session_cookie()]
            .into_iter()
            .flatten()
        {
            let _ = resp.headers.append(http::header::SET_COOKIE, cookie);
        }
    }
}
