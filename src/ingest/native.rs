//! tollgate's own event format, shared by the browser collect endpoint and the backend's bulk
//! API, and its validation. One bad item is reported by index with a reason; the others go on.
//!
//! ```json
//! {"name": "purchase", "ts": "2026-11-28T12:00:00Z", "user_id": "u-42",
//!  "message_id": "order-1001", "props": {"value": 1299, "currency": "EUR"}}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `name` | string, 1–128 characters, required | the event name |
//! | `ts` | RFC 3339 string or epoch milliseconds | when it happened; default: now. From 2000 to one day ahead |
//! | `event_id` | UUID | the deduplication key; a retry with the same id is not counted twice |
//! | `message_id` | string, 1–256 characters | a dedup key of your own, turned into a stable `event_id` |
//!
//! From the browser (`<collect_prefix>/e`, the public port) the same format is taken with less
//! trust: `event_id` and `message_id` are only the visitor's own retry keys, turned into an
//! `event_id` in a namespace of their own (with the visitor id), so that nothing a visitor
//! sends can claim the id of a server, Segment or CSV event; the names tollgate gives proxied
//! requests ([`RESERVED_NAMES`]) are refused, but for the tracker's own `page_view` beacon;
//! and `ts` must be within a few minutes of now.
//! | `visitor_id`, `session_id` | UUID | server events only (browser events take them from the cookies) |
//! | `user_id` | string, up to 256 characters | server events only |
//! | `url` | URL or path | the page: fills `host`, `path`, `query` (and campaign parameters) |
//! | `referrer` | string | the page's referrer |
//! | `user_agent`, `ip` | string | server events only (browser events take the request's) |
//! | `props` | JSON object | anything else, stored as JSON |
//!
//! Unknown fields are refused, so a typo (`"user"` for `"user_id"`) is an error rather than a
//! silently lost value.

pub use super::draft::{
    browser_event_id, message_event_id, BrowserRequest, Context, DraftError, EventDraft,
    DEFAULT_BROWSER_SKEW_SECS, MAX_ID, MAX_NAME, MAX_TEXT, RESERVED_NAMES,
};

use crate::event::Event;
use serde_json::Value;

/// Why a body could not be split into items: a 400, but for `TooMany`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not UTF-8: {0}")]
    NotUtf8(std::str::Utf8Error),
    #[error("body is empty (expected a JSON event, an array of them, or NDJSON)")]
    Empty,
    /// Neither JSON nor NDJSON: the parser's message (empty when it had none).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// More items than the endpoint takes in one request: a 413.
    #[error("more than {0} events in one request; send them in several")]
    TooMany(usize),
}

/// Why one item of a body is refused (the others go on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// A line of NDJSON that is not JSON: the parser's message.
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// What the draft refuses, named in tollgate's own format.
    #[error("{0}")]
    Draft(DraftError),
}

/// A body as items: a JSON array, one JSON object, or NDJSON (one object per line); at most
/// `max_items` of them. A longer array is refused as soon as its item past the limit is read,
/// so that the memory one request costs stays bounded by the limit, not by the body.
pub fn split_body(
    body: &[u8],
    max_items: usize,
) -> Result<Vec<Result<Value, ItemError>>, BodyError> {
    let text = std::str::from_utf8(body).map_err(BodyError::NotUtf8)?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(BodyError::Empty);
    }
    if trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(text);
        let items = match serde::de::DeserializeSeed::deserialize(Limited(max_items), &mut de)
            .and_then(|items| de.end().map(|()| items))
        {
            Ok(items) => items,
            Err(e) if e.to_string().starts_with(TOO_MANY) => {
                return Err(BodyError::TooMany(max_items))
            }
            Err(e) => return Err(BodyError::NotJson(e.to_string())),
        };
        return Ok(items.into_iter().map(Ok).collect());
    }
    // One object, or NDJSON: try the whole body first, then line by line.
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(vec![Ok(v)]);
    }
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    if lines.clone().nth(max_items).is_some() {
        return Err(BodyError::TooMany(max_items));
    }
    let lines: Vec<&str> = lines.collect();
    if lines.len() < 2 {
        let e = serde_json::from_str::<Value>(text).err();
        return Err(BodyError::NotJson(
            e.map_or_else(String::new, |e| e.to_string()),
        ));
    }
    Ok(lines
        .into_iter()
        .map(|l| serde_json::from_str(l).map_err(|e| ItemError::NotJson(e.to_string())))
        .collect())
}

/// The error message a [`Limited`] array stops with.
const TOO_MANY: &str = "tollgate: too many items";

/// A JSON array of at most this many values.
struct Limited(usize);

impl<'de> serde::de::DeserializeSeed<'de> for Limited {
    type Value = Vec<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Limited {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a JSON array of at most {} events", self.0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            if out.len() == self.0 {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// Validate one item into an event (through an [`EventDraft`], as every source does).
pub fn to_event(item: Value, cx: &Context) -> Result<Event, DraftError> {
    EventDraft::from_json(item, cx.browser.is_some())?.into_event(cx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PrivacyMode, Source};
    use serde_json::json;
    use uuid::Uuid;

    fn server() -> Context<'static> {
        Context {
            site: "shop",
            source: Source::Server,
            browser: None,
            now_us: 1_800_000_000_000_000,
        }
    }

    #[test]
    fn bodies() {
        let split = |b: &[u8]| split_body(b, 100);
        assert_eq!(split(br#"{"name":"a"}"#).unwrap().len(), 1);
        assert_eq!(split(br#"[{"name":"a"},{"name":"b"}]"#).unwrap().len(), 2);
        let nd = split(b"{\"name\":\"a\"}\n\n{\"name\":\"b\"}\n{oops\n").unwrap();
        assert_eq!(nd.len(), 3);
        assert!(nd[2].is_err());
        let line = nd[2].as_ref().unwrap_err().to_string();
        assert!(
            line.starts_with("not valid JSON: key must be a string"),
            "{line}"
        );
        assert_eq!(
            split(b" \n").unwrap_err().to_string(),
            "body is empty (expected a JSON event, an array of them, or NDJSON)"
        );
        assert!(split(b"\xff")
            .unwrap_err()
            .to_string()
            .starts_with("body is not UTF-8: invalid utf-8 sequence"));
        assert!(split(b"").is_err());
        assert!(split(b"{oops")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        assert!(split(b"[1,").is_err());
        assert!(split(b"[1] x").is_err(), "trailing characters");
    }

    #[test]
    fn bodies_are_bounded_in_items() {
        let array = format!("[{}]", ["{}"; 6].join(","));
        assert_eq!(split_body(array.as_bytes(), 6).unwrap().len(), 6);
        assert_eq!(split_body(array.as_bytes(), 5), Err(BodyError::TooMany(5)));
        let nd = ["{}"; 6].join("\n");
        assert_eq!(split_body(nd.as_bytes(), 6).unwrap().len(), 6);
        assert_eq!(split_body(nd.as_bytes(), 5), Err(BodyError::TooMany(5)));
    }

    #[test]
    fn server_events() {
        let cx = server();
        let e = to_event(
            json!({"name": "purchase", "user_id": "u1", "ts": "2026-11-28T12:00:00Z",
                    "message_id": "o-1", "props": {"value": 5}, "url": "https://shop.example/p?utm_source=x"}),
            &cx,
        )
        .unwrap();
        assert_eq!(e.name, "purchase");
        assert_eq!(e.user_id.as_deref(), Some("u1"));
        assert_eq!(e.ts_us, 1_795_867_200_000_000);
        assert_eq!(e.event_id, message_event_id("shop", Source::Server, "o-1"));
        assert_eq!(
            (e.host.as_deref(), e.path.as_deref()),
            (Some("shop.example"), Some("/p"))
        );
        assert_eq!(e.query.as_deref(), Some("utm_source=x"));
        assert_eq!(e.props.as_deref(), Some(r#"{"value":5}"#));
        let id = to_event(
            json!({"name": "x", "user_id": "u", "ts": 1_700_000_000_000i64}),
            &cx,
        )
        .unwrap();
        assert_eq!(id.ts_us, 1_700_000_000_000_000);
    }

    #[test]
    fn bad_items_say_why() {
        let cx = server();
        let err = |v: Value| to_event(v, &cx).map_err(|e| e.to_string()).unwrap_err();
        assert!(err(json!({"user_id": "u"})).contains("\"name\" is required"));
        assert!(err(json!({"name": "", "user_id": "u"})).contains("non-empty"));
        assert!(err(json!({"name": "a"})).contains("visitor_id"));
        assert!(err(json!({"name": "a", "user_id": "u", "ts": "yesterday"})).contains("RFC 3339"));
        assert!(
            err(json!({"name": "a", "user_id": "u", "ts": "2999-01-01T00:00:00Z"}))
                .contains("future")
        );
        assert!(
            err(json!({"name": "a", "user_id": "u", "ts": "1970-01-01T00:00:00Z"}))
                .contains("2000")
        );
        assert!(err(json!({"name": "a", "user_id": "u", "props": [1]})).contains("object"));
        assert!(err(json!({"name": "a", "user": "u"})).contains("unknown field \"user\""));
        assert!(err(json!({"name": "a", "visitor_id": "nope"})).contains("not a UUID"));
        assert!(err(json!({"name": "a", "user_id": "u", "ip": "x"})).contains("not an IP"));
        assert!(err(json!("a")).contains("object"));
        assert!(err(json!({"name": "x".repeat(129), "user_id": "u"})).contains("longer"));
        // A blank user id is no user: else every event that sends one is one person's.
        assert!(err(json!({"name": "a", "user_id": "  "})).contains("visitor_id"));
        let v = Uuid::new_v4();
        let e = to_event(json!({"name": "a", "user_id": " ", "visitor_id": v}), &cx).unwrap();
        assert_eq!((e.user_id, e.visitor_id), (None, Some(v)));
        // A blank dedup key would make every event that sends it one event.
        for blank in ["", "  "] {
            assert_eq!(
                err(json!({"name": "a", "user_id": "u", "message_id": blank})),
                "field \"message_id\" must be non-empty printable text"
            );
        }
    }

    #[test]
    fn browser_events_take_identity_from_the_request() {
        let v = Uuid::new_v4();
        let cx = Context {
            browser: Some(BrowserRequest {
                visitor_id: Some(v),
                session_id: None,
                privacy: PrivacyMode::Identified,
                user_agent: Some("UA"),
                ip: Some("203.0.113.1".into()),
                request_id: Some("r1"),
                beacon: false,
                max_skew_us: 600_000_000,
            }),
            source: Source::Browser,
            ..server()
        };
        let e = to_event(json!({"name": "click", "props": {"id": "buy"}}), &cx).unwrap();
        assert_eq!(
            (e.visitor_id, e.user_agent.as_deref()),
            (Some(v), Some("UA"))
        );
        let err = to_event(json!({"name": "click", "user_id": "x"}), &cx)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be set from the browser"), "{err}");
    }

    /// An identified visitor's collect request, not the tracker's beacon.
    fn visitor(v: Uuid) -> BrowserRequest<'static> {
        BrowserRequest {
            visitor_id: Some(v),
            session_id: None,
            privacy: PrivacyMode::Identified,
            user_agent: None,
            ip: None,
            request_id: None,
            beacon: false,
            max_skew_us: 600_000_000,
        }
    }

    fn cx(b: &BrowserRequest<'static>) -> Context<'static> {
        Context {
            browser: Some(b.clone()),
            source: Source::Browser,
            ..server()
        }
    }

    #[test]
    fn browser_ids_never_meet_server_ids() {
        let v = Uuid::new_v4();
        let mut b = visitor(v);
        let server_id = message_event_id("shop", Source::Server, "order-1001");
        let claimed = to_event(
            json!({"name": "x", "event_id": server_id.to_string()}),
            &cx(&b),
        )
        .unwrap();
        assert_ne!(claimed.event_id, server_id);
        let by_message = to_event(json!({"name": "x", "message_id": "order-1001"}), &cx(&b));
        assert_ne!(by_message.unwrap().event_id, server_id);
        // Still a stable retry key for the same visitor, and another visitor's differs.
        let again = to_event(
            json!({"name": "y", "event_id": server_id.to_string()}),
            &cx(&b),
        );
        assert_eq!(again.unwrap().event_id, claimed.event_id);
        b.visitor_id = Some(Uuid::new_v4());
        let other = to_event(
            json!({"name": "x", "event_id": server_id.to_string()}),
            &cx(&b),
        );
        assert_ne!(other.unwrap().event_id, claimed.event_id);
    }

    #[test]
    fn the_browser_cannot_send_reserved_names_or_history() {
        let mut b = visitor(Uuid::new_v4());
        for name in RESERVED_NAMES {
            let err = to_event(json!({ "name": name }), &cx(&b))
                .unwrap_err()
                .to_string();
            assert!(err.contains("reserved"), "{err}");
        }
        b.beacon = true;
        assert!(to_event(json!({"name": "page_view"}), &cx(&b)).is_ok());
        assert!(to_event(json!({"name": "api_call"}), &cx(&b)).is_err());
        let now = server().now_us;
        let old = json!({"name": "x", "ts": (now / 1000) - 3_600_000});
        assert!(to_event(old, &cx(&b))
            .unwrap_err()
            .to_string()
            .contains("from now"));
        let near = json!({"name": "x", "ts": (now / 1000) - 60_000});
        assert!(to_event(near, &cx(&b)).is_ok());
        // The backend may back-date and name its own events.
        assert!(to_event(
            json!({"name": "page_view", "user_id": "u", "ts": (now / 1000) - 3_600_000}),
            &server()
        )
        .is_ok());
        let ctl = to_event(json!({"name": "x", "url": "/a\u{1b}[2J"}), &cx(&b))
            .unwrap_err()
            .to_string();
        assert!(ctl.contains("control characters"), "{ctl}");
    }
}
