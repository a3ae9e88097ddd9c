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
//! | `visitor_id`, `session_id` | UUID | server events only (browser events take them from the cookies) |
//! | `user_id` | string, up to 256 characters | server events only |
//! | `url` | URL or path | the page: fills `host`, `path`, `query` (and campaign parameters) |
//! | `referrer` | string | the page's referrer |
//! | `user_agent`, `ip` | string | server events only (browser events take the request's) |
//! | `props` | JSON object | anything else, stored as JSON |
//!
//! Unknown fields are refused, so a typo (`"user"` for `"user_id"`) is an error rather than a
//! silently lost value.

use crate::event::{Event, PrivacyMode, Source};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Longest event name.
pub const MAX_NAME: usize = 128;
/// Longest `user_id` and `message_id`.
pub const MAX_ID: usize = 256;
/// Longest `url`, `referrer` and `user_agent`.
pub const MAX_TEXT: usize = 4096;

/// Namespace of `event_id`s derived from a `message_id` (UUIDv5). Fixed forever: changing it
/// would make every retried message look new.
const MESSAGE_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_3d3a_5b1e_4c7e_9a51_7d2f_0c44_e1a9);

/// The deduplication id of a message of `site`, from a client's own message id.
pub fn message_event_id(site: &str, source: Source, message_id: &str) -> Uuid {
    let name = format!("{site}\u{0}{}\u{0}{message_id}", source.as_str());
    Uuid::new_v5(&MESSAGE_NAMESPACE, name.as_bytes())
}

/// What the endpoint knows that the item does not carry.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub site: &'a str,
    pub source: Source,
    /// Browser events: identity and request facts come from here and may not be sent in the
    /// item. Server events: the item carries them.
    pub browser: Option<BrowserRequest<'a>>,
    pub now_us: i64,
}

/// The collect request a browser event arrived with.
#[derive(Debug, Clone)]
pub struct BrowserRequest<'a> {
    pub visitor_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub privacy: PrivacyMode,
    pub user_agent: Option<&'a str>,
    pub ip: Option<String>,
    pub request_id: Option<&'a str>,
}

/// A body as items: a JSON array, one JSON object, or NDJSON (one object per line).
pub fn split_body(body: &[u8]) -> Result<Vec<Result<Value, String>>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err("body is empty (expected a JSON event, an array of them, or NDJSON)".into());
    }
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => Ok(items.into_iter().map(Ok).collect()),
            Ok(_) => Err("body is not a JSON array".into()),
            Err(e) => Err(format!("body is not valid JSON: {e}")),
        };
    }
    // One object, or NDJSON: try the whole body first, then line by line.
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(vec![Ok(v)]);
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() < 2 {
        let e = serde_json::from_str::<Value>(text).err();
        return Err(format!(
            "body is not valid JSON: {}",
            e.map_or_else(String::new, |e| e.to_string())
        ));
    }
    Ok(lines
        .into_iter()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not valid JSON: {e}")))
        .collect())
}

/// Validate one item into an event.
pub fn to_event(item: &Value, cx: &Context) -> Result<Event, String> {
    let Value::Object(m) = item else {
        return Err("an event must be a JSON object".into());
    };
    let browser = cx.browser.as_ref();
    for key in m.keys() {
        let allowed = match key.as_str() {
            "name" | "ts" | "event_id" | "message_id" | "url" | "referrer" | "props" => true,
            "visitor_id" | "session_id" | "user_id" | "user_agent" | "ip" => browser.is_none(),
            _ => false,
        };
        if !allowed {
            return Err(if browser.is_some() && is_server_field(key) {
                format!("field {key:?} cannot be set from the browser (it comes from the request)")
            } else {
                format!("unknown field {key:?}")
            });
        }
    }

    let name = string(m, "name", MAX_NAME)?.ok_or("field \"name\" is required")?;
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err("field \"name\" must be non-empty printable text".into());
    }
    let mut e = Event::now(name, cx.site, cx.source);
    e.received_at_us = cx.now_us;
    e.ts_us = match m.get("ts") {
        None | Some(Value::Null) => cx.now_us,
        Some(v) => parse_ts(v, cx.now_us)?,
    };
    e.event_id = match (uuid_field(m, "event_id")?, string(m, "message_id", MAX_ID)?) {
        (Some(id), _) => id,
        (None, Some(msg)) => message_event_id(cx.site, cx.source, &msg),
        (None, None) => e.event_id,
    };
    if let Some(url) = string(m, "url", MAX_TEXT)? {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| format!("field \"url\" is not a URL or path: {url:?}"))?;
        e.host = uri.host().map(str::to_string);
        e.path = Some(uri.path().to_string()).filter(|p| !p.is_empty());
        e.query = uri.query().filter(|q| !q.is_empty()).map(str::to_string);
    }
    e.referrer = string(m, "referrer", MAX_TEXT)?.filter(|r| !r.is_empty());
    match m.get("props") {
        None | Some(Value::Null) => {}
        Some(p @ Value::Object(_)) => e.props = Some(p.to_string()),
        Some(_) => return Err("field \"props\" must be a JSON object".into()),
    }

    match browser {
        Some(b) => {
            e.visitor_id = b.visitor_id;
            e.session_id = b.session_id;
            e.hints.privacy = b.privacy;
            e.user_agent = b.user_agent.map(str::to_string);
            e.ip = b.ip.clone();
            e.request_id = b.request_id.map(str::to_string);
        }
        None => {
            e.visitor_id = uuid_field(m, "visitor_id")?;
            e.session_id = uuid_field(m, "session_id")?;
            e.user_id = string(m, "user_id", MAX_ID)?.filter(|u| !u.is_empty());
            if e.visitor_id.is_none() && e.user_id.is_none() {
                return Err("one of \"visitor_id\" or \"user_id\" is required".into());
            }
            e.user_agent = string(m, "user_agent", MAX_TEXT)?;
            e.ip = match string(m, "ip", 64)? {
                Some(ip) => Some(
                    ip.parse::<std::net::IpAddr>()
                        .map_err(|_| format!("field \"ip\" is not an IP address: {ip:?}"))?
                        .to_string(),
                ),
                None => None,
            };
        }
    }
    Ok(e)
}

fn is_server_field(key: &str) -> bool {
    matches!(
        key,
        "visitor_id" | "session_id" | "user_id" | "user_agent" | "ip"
    )
}

fn string(m: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("field {key:?} is longer than {max} characters")),
        Some(_) => Err(format!("field {key:?} must be a string")),
    }
}

fn uuid_field(m: &Map<String, Value>, key: &str) -> Result<Option<Uuid>, String> {
    match string(m, key, 64)? {
        None => Ok(None),
        Some(s) => Uuid::try_parse(s.trim())
            .map(Some)
            .map_err(|_| format!("field {key:?} is not a UUID: {s:?}")),
    }
}

/// Earliest accepted timestamp: 2000-01-01T00:00:00Z.
const MIN_TS_US: i64 = 946_684_800_000_000;
/// Latest accepted timestamp, relative to now: clocks drift, but not by a day.
const MAX_AHEAD_US: i64 = 86_400_000_000;

/// An RFC 3339 string or epoch milliseconds, within [2000, now + 1 day].
pub fn parse_ts(v: &Value, now_us: i64) -> Result<i64, String> {
    let us = match v {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map_err(|e| format!("field \"ts\" is not an RFC 3339 timestamp ({e}): {s:?}"))?
            .timestamp_micros(),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| format!("field \"ts\" is not whole epoch milliseconds: {n}"))?,
        _ => return Err("field \"ts\" must be an RFC 3339 string or epoch milliseconds".into()),
    };
    if us < MIN_TS_US {
        return Err(format!("field \"ts\" is before the year 2000: {v}"));
    }
    if us > now_us + MAX_AHEAD_US {
        return Err(format!(
            "field \"ts\" is more than a day in the future: {v}"
        ));
    }
    Ok(us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(split_body(br#"{"name":"a"}"#).unwrap().len(), 1);
        assert_eq!(
            split_body(br#"[{"name":"a"},{"name":"b"}]"#).unwrap().len(),
            2
        );
        let nd = split_body(b"{\"name\":\"a\"}\n\n{\"name\":\"b\"}\n{oops\n").unwrap();
        assert_eq!(nd.len(), 3);
        assert!(nd[2].is_err());
        assert!(split_body(b"").is_err());
        assert!(split_body(b"{oops").unwrap_err().contains("not valid JSON"));
        assert!(split_body(b"[1,").is_err());
    }

    #[test]
    fn server_events() {
        let cx = server();
        let e = to_event(
            &json!({"name": "purchase", "user_id": "u1", "ts": "2026-11-28T12:00:00Z",
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
            &json!({"name": "x", "user_id": "u", "ts": 1_700_000_000_000i64}),
            &cx,
        )
        .unwrap();
        assert_eq!(id.ts_us, 1_700_000_000_000_000);
    }

    #[test]
    fn bad_items_say_why() {
        let cx = server();
        let err = |v: Value| to_event(&v, &cx).unwrap_err();
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
            }),
            source: Source::Browser,
            ..server()
        };
        let e = to_event(&json!({"name": "click", "props": {"id": "buy"}}), &cx).unwrap();
        assert_eq!(
            (e.visitor_id, e.user_agent.as_deref()),
            (Some(v), Some("UA"))
        );
        let err = to_event(&json!({"name": "click", "user_id": "x"}), &cx).unwrap_err();
        assert!(err.contains("cannot be set from the browser"), "{err}");
    }
}
