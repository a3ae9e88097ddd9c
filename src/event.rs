//! The analytics event: one row of the `events` table, and its schema version.
//!
//! The column list is a public contract documented in `docs/schema.md`. Change it only together
//! with [`SCHEMA_VERSION`], the store migration and the docs.

use uuid::Uuid;

pub mod columns;
pub use columns::{Column, Field, Kind, COLUMNS, EVENT_ID};

/// Version of the store's schema. Bumped on every column change of `events`, and when another
/// table changes shape so that an older tollgate could not use it (2: `event_keys` got
/// `first_seen`, for the deduplication horizon; 3: the `sessions` table, which the writer keeps;
/// 4: `pageview_hours`, kept with it; 5: `persons`, kept with them; 6: `page_sketches`, which
/// an older tollgate would leave counting late or forgotten page views; 7: `breakdown_sketches`;
/// 8: `api_latencies`, built with them).
pub const SCHEMA_VERSION: u32 = 8;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Proxy,
    Browser,
    Server,
    Segment,
    Import,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Proxy => "proxy",
            Source::Browser => "browser",
            Source::Server => "server",
            Source::Segment => "segment",
            Source::Import => "import",
        }
    }

    /// The inverse of [`Source::as_str`].
    pub fn parse(s: &str) -> Option<Source> {
        [
            Source::Proxy,
            Source::Browser,
            Source::Server,
            Source::Segment,
            Source::Import,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// How a request may be tied to a person, decided by the proxy from the privacy settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrivacyMode {
    /// Visitor and session cookies.
    #[default]
    Identified,
    /// No cookies: the visitor id is a daily-rotating salted hash (no consent yet, or
    /// `privacy.cookieless`).
    Cookieless,
    /// `Sec-GPC` or `DNT`: no identifiers at all; the visit is counted anonymously.
    Anonymous,
}

/// Facts about the request that enrichment needs but the store does not keep. They travel
/// with the event through the queue and are dropped when it is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    pub privacy: PrivacyMode,
    pub signals: RequestSignals,
    /// The `event_id` is the sender's key (an `event_id` or message id it sent, or a CSV
    /// row's content), so a resend carries the same one: the store checks it against the keys
    /// it has seen. Otherwise tollgate minted the id and it is new by construction.
    pub keyed: bool,
}

/// One analytics event. `seq` is not here: the store assigns it when the event is committed.
///
/// Enrichment fields (`browser`, `channel`, `country`, …) are `None` until the enrichment stage
/// fills them. Until then `path`, `query` and `referrer` are raw and `ip` is the full address;
/// enrichment redacts and anonymises them before the event is stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// UUIDv7; the deduplication key in every sink.
    pub event_id: Uuid,
    /// When it happened, UTC microseconds since the epoch.
    pub ts_us: i64,
    /// When tollgate received it, UTC microseconds since the epoch.
    pub received_at_us: i64,
    pub site: String,
    /// `page_view`, `api_call`, `asset`, `prefetch`, `request`, or a custom name.
    pub name: String,
    pub source: Option<Source>,
    pub visitor_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub request_id: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    /// Templated path, e.g. `/api/products/:id`.
    pub route: Option<String>,
    /// Query string with secret parameters redacted.
    pub query: Option<String>,
    pub status: Option<u16>,
    pub duration_ms: Option<f64>,
    pub bytes_out: Option<u64>,
    pub referrer: Option<String>,
    pub referrer_host: Option<String>,
    pub channel: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub click_id_type: Option<String>,
    pub click_id: Option<String>,
    pub user_agent: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub device_type: Option<String>,
    pub is_bot: Option<bool>,
    pub bot_reason: Option<String>,
    pub ip: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    /// Free-form properties as a JSON object text.
    pub props: Option<String>,
    /// Not stored: see [`Hints`].
    pub hints: Hints,
}

impl Event {
    /// A new event named `name` with a fresh UUIDv7 id, happening now.
    pub fn now(name: impl Into<String>, site: impl Into<String>, source: Source) -> Self {
        let now = now_us();
        Event {
            event_id: Uuid::now_v7(),
            ts_us: now,
            received_at_us: now,
            site: site.into(),
            name: name.into(),
            source: Some(source),
            ..Default::default()
        }
    }
}

impl Event {
    /// About how many bytes this event holds: the struct and the text of its fields. What the
    /// queue's byte bound counts; cheap (lengths only).
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Event>() + self.text_bytes()
    }

    /// The bytes of its fields' text (lengths only).
    pub fn text_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.site.len()
            + self.name.len()
            + [
                &self.user_id,
                &self.request_id,
                &self.method,
                &self.host,
                &self.path,
                &self.route,
                &self.query,
                &self.referrer,
                &self.referrer_host,
                &self.channel,
                &self.utm_source,
                &self.utm_medium,
                &self.utm_campaign,
                &self.utm_term,
                &self.utm_content,
                &self.click_id_type,
                &self.click_id,
                &self.user_agent,
                &self.browser,
                &self.browser_version,
                &self.os,
                &self.device_type,
                &self.bot_reason,
                &self.ip,
                &self.country,
                &self.region,
                &self.city,
                &self.props,
            ]
            .into_iter()
            .map(text)
            .sum::<usize>()
    }
}

/// A text's place in a [`Hit`]'s buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span from `start` to `end` (byte offsets).
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The request's fields for its event, as spans of the request's text buffer, each cut to its
/// [`limits`] and made valid UTF-8 as the event's `String`s would be.
#[derive(Debug, Clone, Copy)]
pub struct Captured {
    pub host: Option<Span>,
    pub path: Span,
    pub query: Option<Span>,
    pub referrer: Option<Span>,
    pub user_agent: Option<Span>,
    pub ip: Option<Span>,
}

/// What the proxy queues for a request it captured: the scalars of its event and the text it
/// took from the request, already cut to [`limits`] and made valid UTF-8, as spans of one
/// shared buffer (the request's, which also holds the header values tollgate wrote). It is
/// turned into an [`Event`] off the request path, by [`Hit::into_event`], with the same values
/// `Event` fields would have had if built on the spot.
#[derive(Debug, Clone)]
pub struct Hit {
    pub event_id: Uuid,
    pub ts_us: i64,
    pub received_at_us: i64,
    pub site: &'static str,
    pub name: &'static str,
    pub method: http::Method,
    pub status: Option<u16>,
    pub duration_ms: f64,
    pub bytes_out: u64,
    pub visitor_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub hints: Hints,
    /// The buffer the spans point into.
    pub text: bytes::Bytes,
    pub request_id: Span,
    pub captured: Captured,
}

impl Hit {
    fn str(&self, s: Span) -> &str {
        // Only UTF-8 is written into the spans; a broken span reads as empty, never panics.
        std::str::from_utf8(&self.text[s.range()]).unwrap_or("")
    }

    fn string(&self, s: Option<Span>) -> Option<String> {
        s.map(|s| self.str(s).to_string())
    }

    /// The event this hit stands for.
    pub fn into_event(self) -> Event {
        Event {
            event_id: self.event_id,
            ts_us: self.ts_us,
            received_at_us: self.received_at_us,
            site: self.site.to_string(),
            name: self.name.to_string(),
            source: Some(Source::Proxy),
            visitor_id: self.visitor_id,
            session_id: self.session_id,
            request_id: self.string(Some(self.request_id)),
            method: Some(self.method.as_str().to_string()),
            host: self.string(self.captured.host),
            path: self.string(Some(self.captured.path)),
            query: self.string(self.captured.query),
            status: self.status,
            duration_ms: Some(self.duration_ms),
            bytes_out: Some(self.bytes_out),
            referrer: self.string(self.captured.referrer),
            user_agent: self.string(self.captured.user_agent),
            ip: self.string(self.captured.ip),
            hints: self.hints,
            user_id: self.user_id,
            ..Default::default()
        }
    }

    /// [`Event::approx_bytes`] of [`Hit::into_event`], without building it: what the queue's
    /// byte bound counts for this hit.
    pub fn approx_bytes(&self) -> usize {
        let span = |s: Option<Span>| s.map_or(0, Span::len);
        let c = &self.captured;
        std::mem::size_of::<Event>()
            + self.site.len()
            + self.name.len()
            + self.user_id.as_ref().map_or(0, String::len)
            + self.method.as_str().len()
            + self.request_id.len()
            + c.path.len()
            + [c.host, c.query, c.referrer, c.user_agent, c.ip]
                .into_iter()
                .map(span)
                .sum::<usize>()
    }
}

/// Microseconds since the Unix epoch, shifted by [`CLOCK_OFFSET_ENV`] when it is set.
pub fn now_us() -> i64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    real + clock_offset_us()
}

/// The clock offset's variable; config owns the `TOLLGATE_*` names.
/// Per-request header facts the proxy records (it does not keep the headers themselves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestSignals {
    /// The request is an HTML navigation (a page view).
    pub page_view: bool,
    /// The request carried an `Accept-Language` header.
    pub accept_language: bool,
    /// `Sec-CH-UA` mentions HeadlessChrome.
    pub sec_ch_ua_headless: bool,
}

/// What a proxied request is: the name of its event, and the `kind` label of
/// `tollgate_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    PageView,
    ApiCall,
    Asset,
    Prefetch,
    Request,
}

impl RequestKind {
    pub const ALL: [RequestKind; 5] = [
        RequestKind::PageView,
        RequestKind::ApiCall,
        RequestKind::Asset,
        RequestKind::Prefetch,
        RequestKind::Request,
    ];

    /// The event name for this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestKind::PageView => "page_view",
            RequestKind::ApiCall => "api_call",
            RequestKind::Asset => "asset",
            RequestKind::Prefetch => "prefetch",
            RequestKind::Request => "request",
        }
    }

    /// The event names, in [`RequestKind::ALL`]'s order.
    pub const NAMES: [&'static str; 5] = {
        let mut out = [""; 5];
        let mut i = 0;
        while i < 5 {
            out[i] = RequestKind::ALL[i].as_str();
            i += 1;
        }
        out
    };
}

pub use crate::config::CLOCK_OFFSET_ENV;

fn clock_offset_us() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map_or(0, |s| s.saturating_mul(1_000_000))
    })
}

/// Longest values kept of what a client sends, in bytes. The public port is hostile: every
/// field taken from a request is cut to these at capture, before it is queued, so that one
/// request costs the pipeline a bounded amount of memory and work (`docs/security.md`).
pub mod limits {
    /// `User-Agent`. Real browsers send under 300 bytes, in-app browsers about 600; a longer
    /// one is cut and the event marked `ua:malformed` without parsing it.
    pub const USER_AGENT: usize = 1024;
    /// The path of a URL.
    pub const PATH: usize = 2048;
    /// The query string of a URL.
    pub const QUERY: usize = 4096;
    /// `Referer`, or a browser event's `referrer`.
    pub const REFERRER: usize = 2048;
    /// `Host`.
    pub const HOST: usize = 255;

    /// `s` cut to at most `max` bytes, at a character boundary, and whether it was cut.
    pub fn cap(s: &str, max: usize) -> (&str, bool) {
        if s.len() <= max {
            return (s, false);
        }
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        (&s[..end], true)
    }

    /// Header bytes as text, cut to `max` bytes first (so a megabyte header is never copied
    /// whole), invalid UTF-8 replaced.
    pub fn header_text(v: &[u8], max: usize) -> (String, bool) {
        let cut = v.len() > max;
        let bytes = if cut { &v[..max] } else { v };
        let text = String::from_utf8_lossy(bytes).into_owned();
        (text, cut)
    }

    /// [`header_text`] written at the end of `out` instead of into a new string: the same
    /// text. Returns whether it was cut.
    pub fn write_header_text(out: &mut Vec<u8>, v: &[u8], max: usize) -> bool {
        let cut = v.len() > max;
        let bytes = if cut { &v[..max] } else { v };
        // As String::from_utf8_lossy: each invalid sequence becomes one U+FFFD.
        for chunk in bytes.utf8_chunks() {
            out.extend_from_slice(chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{fffd}".as_bytes());
            }
        }
        cut
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn header_text_in_place_is_the_same_text() {
            for (v, max) in [
                (&b"abcdef"[..], 4),
                (&b"abc"[..], 4),
                (&[b'a', 0xe2, 0x82][..], 3),
                (&[0xff, b'a', 0xe2, 0x82, 0xac, 0xc3][..], 16),
                (&[0xe2, 0x82, 0xac, 0xe2, 0x82, 0xac][..], 4),
            ] {
                let mut out = b"x".to_vec();
                let cut = write_header_text(&mut out, v, max);
                assert_eq!(
                    (&out[1..], cut),
                    (header_text(v, max).0.as_bytes(), header_text(v, max).1)
                );
            }
        }

        #[test]
        fn cuts_at_character_boundaries() {
            assert_eq!(cap("abc", 3), ("abc", false));
            assert_eq!(cap("abcd", 3), ("abc", true));
            assert_eq!(cap("a€", 2), ("a", true));
            assert_eq!(header_text(b"abcdef", 4), ("abcd".to_string(), true));
            assert_eq!(header_text(&[b'a', 0xe2, 0x82], 3).0, "a\u{fffd}");
        }
    }
}
