//! The Segment tracking API's messages (track, page, screen, identify, group, alias) as
//! tollgate events, following Segment's HTTP API spec.
//!
//! | Segment | tollgate |
//! |---|---|
//! | `type: track`, `event` | `name` = the event |
//! | `type: page` / `screen` | `name` = `page_view` / `screen_view` |
//! | `type: identify` / `group` / `alias` | `name` = `identify` / `group` / `alias` |
//! | `messageId` | `event_id` (UUIDv5 of site and message id): the dedup key |
//! | `userId` | `user_id` |
//! | `anonymousId` | `visitor_id` (a UUID as is; any other string as a stable UUIDv5 of it, the original kept in `props._anonymous_id`) |
//! | `properties` (track, page, screen), `traits` (identify, group) | `props` |
//! | `context.page.url` / `properties.url`, `context.page.referrer` / `properties.referrer` | `host`, `path`, `query`, `referrer` |
//! | `context.campaign` | `utm_*` (`name` is the campaign) |
//! | `context.ip`, `context.userAgent` | `ip`, `user_agent` |
//! | `groupId` (group), `previousId` (alias) | `props.group_id`, `props.previous_id`; a UUID `previousId` is also the `visitor_id`, which ties it to the user in `identities` |
//!
//! Time, as Segment defines it: `timestamp` when given; otherwise `originalTimestamp` corrected
//! for the client's clock skew (`receivedAt - (sentAt - originalTimestamp)`); otherwise
//! `receivedAt`.
//!
//! A refused message is a [`SegmentError`]: Segment's own rules (`type`, `userId`, …) have
//! their variants, and the draft's ([`DraftError`]) name fields as Segment does
//! ([`Naming::Segment`]).

use super::draft::{check_ts, ts_value, DraftError, EventDraft, Field, Naming, Problem};
use super::native;
use crate::event::{Event, Source};
use serde_json::{Map, Value};
use std::fmt;
use uuid::Uuid;

/// Largest message, as Segment limits it.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Largest batch request, as Segment limits it.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// Namespace for non-UUID anonymous ids (UUIDv5). Fixed forever.
const ANON_NAMESPACE: Uuid = Uuid::from_u128(0x8e2a_77c0_19d4_4f6b_a3c5_0b7e_6d21_f9a4);

/// A key of a Segment message that tollgate reads itself, besides the draft's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    UserId,
    AnonymousId,
    GroupId,
    PreviousId,
    Properties,
    Traits,
    Timestamp,
    OriginalTimestamp,
    SentAt,
}

impl Key {
    /// The key as Segment spells it.
    pub fn name(self) -> &'static str {
        match self {
            Key::UserId => "userId",
            Key::AnonymousId => "anonymousId",
            Key::GroupId => "groupId",
            Key::PreviousId => "previousId",
            Key::Properties => "properties",
            Key::Traits => "traits",
            Key::Timestamp => "timestamp",
            Key::OriginalTimestamp => "originalTimestamp",
            Key::SentAt => "sentAt",
        }
    }
}

impl fmt::Display for Key {
    /// Quoted, as a message names it: `"userId"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

/// Why a message is refused, or (`NoBatch`) a whole request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("a message must be a JSON object")]
    NotObject,
    #[error("\"type\" is required in a batch message")]
    NoType,
    #[error("\"type\" {0:?} is not one of track, page, screen, identify, group, alias")]
    UnknownType(String),
    #[error("\"event\" is required for a track call")]
    NoEvent,
    #[error("\"groupId\" is required for a group call")]
    NoGroupId,
    #[error("\"previousId\" is required for an alias call")]
    NoPreviousId,
    #[error("\"userId\" is required for an alias call")]
    AliasWithoutUser,
    #[error("\"userId\" or \"anonymousId\" is required")]
    NoIdentity,
    /// An id (`userId`, `anonymousId`, `groupId`, `previousId`) that is neither a string nor a
    /// number.
    #[error("{0} must be a string")]
    NotString(Key),
    /// `properties` or `traits` that is not an object.
    #[error("{0} must be a JSON object")]
    NotObjectBody(Key),
    /// A bad `timestamp`, `originalTimestamp` or `sentAt`.
    #[error("{0} {1}")]
    Time(Key, Problem),
    /// What the draft refuses, every source alike.
    #[error("{}", .0.describe(Naming::Segment))]
    Draft(DraftError),
    /// A message of a batch larger than [`MAX_MESSAGE_BYTES`]: its size.
    #[error("message is {0} bytes; the limit is {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// A `/v1/batch` request without its `batch` array: the whole request is refused.
    #[error("\"batch\" must be an array of messages")]
    NoBatch,
}

// Not `#[from]`: that would make the draft's error the source too, and a cause chain would
// print it twice.
impl From<DraftError> for SegmentError {
    fn from(e: DraftError) -> Self {
        SegmentError::Draft(e)
    }
}

/// The message types and the event name each becomes.
pub fn kind_name(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "track" => "",
        "page" => "page_view",
        "screen" => "screen_view",
        "identify" => "identify",
        "group" => "group",
        "alias" => "alias",
        _ => return None,
    })
}

/// One message as an event. `kind` is the endpoint's type (`/v1/track`) or the message's own
/// `type` (in a batch). `received_us` is when the request arrived; `sent_at` the batch's.
pub fn to_event(
    msg: &Value,
    kind: Option<&str>,
    site: &str,
    received_us: i64,
    batch_sent_at: Option<&Value>,
    batch_context: Option<&Value>,
) -> Result<Event, SegmentError> {
    let Value::Object(m) = msg else {
        return Err(SegmentError::NotObject);
    };
    let (kind, name) = kind_and_name(m, kind)?;
    let user_id = id_text(m, Key::UserId)?;
    let anon = id_text(m, Key::AnonymousId)?;
    if user_id.is_none() && anon.is_none() {
        return Err(SegmentError::NoIdentity);
    }
    let empty = Map::new();
    let context = m
        .get("context")
        .or(batch_context)
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let page = context
        .get("page")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut props = body_props(m, kind)?;
    let url = text(props.get("url"))
        .or_else(|| text(page.get("url")))
        .map(str::to_string);
    let referrer = text(props.get("referrer"))
        .or_else(|| text(page.get("referrer")))
        .map(str::to_string);
    let previous_visitor = add_kind_props(m, kind, user_id.is_some(), &mut props)?;
    let visitor_id = match (&anon, previous_visitor) {
        (_, Some(v)) => Some(v),
        (Some(a), None) => Some(anonymous_visitor(a, site, &mut props)),
        (None, None) => None,
    };

    // The same draft as every other source: the same checks and limits apply.
    let mut d = EventDraft {
        name: Some(name),
        ts_us: Some(event_time(m, received_us, batch_sent_at)?),
        visitor_id,
        user_id,
        message_id: text(m.get("messageId")).map(str::to_string),
        url,
        referrer,
        user_agent: text(context.get("userAgent")).map(str::to_string),
        ip: text(context.get("ip")).map(str::to_string),
        props: (!props.is_empty()).then_some(props),
        ..EventDraft::default()
    };
    if let Some(c) = context.get("campaign").and_then(Value::as_object) {
        set_campaign(&mut d, c)?;
    }
    let cx = native::Context {
        site,
        source: Source::Segment,
        browser: None,
        now_us: received_us,
    };
    Ok(d.into_event(&cx)?)
}

/// The message's type (the endpoint's `kind`, else its own `type`) and the event name it
/// becomes.
fn kind_and_name<'a>(
    m: &'a Map<String, Value>,
    kind: Option<&'a str>,
) -> Result<(&'a str, String), SegmentError> {
    let kind = match (kind, m.get("type").and_then(Value::as_str)) {
        (Some(k), _) => k,
        (None, Some(t)) => t,
        (None, None) => return Err(SegmentError::NoType),
    };
    let fixed = kind_name(kind).ok_or_else(|| SegmentError::UnknownType(kind.to_string()))?;
    let name = if kind == "track" {
        let ev = m.get("event").and_then(Value::as_str).unwrap_or("");
        if ev.trim().is_empty() {
            return Err(SegmentError::NoEvent);
        }
        ev.to_string()
    } else {
        fixed.to_string()
    };
    Ok((kind, name))
}

/// The message's `traits` (identify, group) or `properties` (the other types), empty when
/// absent.
fn body_props(m: &Map<String, Value>, kind: &str) -> Result<Map<String, Value>, SegmentError> {
    let body_key = if matches!(kind, "identify" | "group") {
        Key::Traits
    } else {
        Key::Properties
    };
    match m.get(body_key.name()) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(p)) => Ok(p.clone()),
        Some(_) => Err(SegmentError::NotObjectBody(body_key)),
    }
}

/// Add what the message's type carries besides its body to `props`: a page's or screen's
/// `name`, a group's `groupId`, an alias's `previousId`. Returns the visitor an alias's UUID
/// `previousId` names.
fn add_kind_props(
    m: &Map<String, Value>,
    kind: &str,
    has_user_id: bool,
    props: &mut Map<String, Value>,
) -> Result<Option<Uuid>, SegmentError> {
    if kind == "page" || kind == "screen" {
        if let Some(n) = text(m.get("name")) {
            props.insert("name".into(), Value::String(n.to_string()));
        }
    }
    if kind == "group" {
        let g = id_text(m, Key::GroupId)?.ok_or(SegmentError::NoGroupId)?;
        props.insert("group_id".into(), Value::String(g));
    }
    let mut previous_visitor = None;
    if kind == "alias" {
        let p = id_text(m, Key::PreviousId)?.ok_or(SegmentError::NoPreviousId)?;
        previous_visitor = Uuid::try_parse(&p).ok();
        props.insert("previous_id".into(), Value::String(p));
        if !has_user_id {
            return Err(SegmentError::AliasWithoutUser);
        }
    }
    Ok(previous_visitor)
}

/// The visitor an `anonymousId` names: a UUID as is, any other string as a stable UUIDv5 of
/// it, the original kept in `props._anonymous_id`.
fn anonymous_visitor(anon: &str, site: &str, props: &mut Map<String, Value>) -> Uuid {
    Uuid::try_parse(anon).unwrap_or_else(|_| {
        props.insert("_anonymous_id".into(), Value::String(anon.to_string()));
        Uuid::new_v5(&ANON_NAMESPACE, format!("{site}\u{0}{anon}").as_bytes())
    })
}

/// `context.campaign` into the draft's `utm_*` fields (`name` is the campaign).
fn set_campaign(d: &mut EventDraft, c: &Map<String, Value>) -> Result<(), SegmentError> {
    for (key, field) in [
        ("source", Field::UtmSource),
        ("medium", Field::UtmMedium),
        ("name", Field::UtmCampaign),
        ("term", Field::UtmTerm),
        ("content", Field::UtmContent),
    ] {
        if let Some(v) = text(c.get(key)) {
            d.set_text(field, v.to_string())?;
        }
    }
    Ok(())
}

/// The messages of a request to `/v1/{kind}` whose body is the JSON `body`, each as an event
/// or the reason it is refused, in order. `kind` is `batch` (a `batch` array of typed
/// messages, with an optional batch-wide `sentAt` and `context`) or a message type. Fails as a
/// whole only when a batch has no `batch` array.
pub fn request_events(
    kind: &str,
    body: &Value,
    site: &str,
    received_us: i64,
) -> Result<Vec<Result<Event, SegmentError>>, SegmentError> {
    let batch = kind == "batch";
    let (messages, sent_at, context) = if batch {
        match body.get("batch") {
            Some(Value::Array(items)) => (&items[..], body.get("sentAt"), body.get("context")),
            _ => return Err(SegmentError::NoBatch),
        }
    } else {
        (std::slice::from_ref(body), None, None)
    };
    Ok(messages
        .iter()
        .map(|msg| {
            let size = msg.to_string().len();
            if batch && size > MAX_MESSAGE_BYTES {
                return Err(SegmentError::TooLarge(size));
            }
            to_event(
                msg,
                (!batch).then_some(kind),
                site,
                received_us,
                sent_at,
                context,
            )
        })
        .collect())
}

/// When the message happened, per Segment's rules (module docs).
fn event_time(
    m: &Map<String, Value>,
    received_us: i64,
    batch_sent_at: Option<&Value>,
) -> Result<i64, SegmentError> {
    let parse = |k: Key, v: &Value| {
        ts_value(v)
            .and_then(|us| check_ts(us, received_us))
            .map_err(|problem| SegmentError::Time(k, problem))
    };
    let given = |k: Key| m.get(k.name()).filter(|v| !v.is_null());
    if let Some(v) = given(Key::Timestamp) {
        return parse(Key::Timestamp, v);
    }
    let original = match given(Key::OriginalTimestamp) {
        Some(v) => Some(parse(Key::OriginalTimestamp, v)?),
        None => None,
    };
    let sent = match given(Key::SentAt).or(batch_sent_at) {
        Some(v) => Some(parse(Key::SentAt, v)?),
        None => None,
    };
    Ok(match (original, sent) {
        (Some(o), Some(s)) => received_us - (s - o),
        (Some(o), None) => o,
        _ => received_us,
    })
}

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The id at `key` of `m`: Segment ids may be strings or numbers.
fn id_text(m: &Map<String, Value>, key: Key) -> Result<Option<String>, SegmentError> {
    match m.get(key.name()) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(SegmentError::NotString(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000_000_000;

    #[test]
    fn track_with_context_and_skew() {
        let m = json!({
            "userId": "u-1", "anonymousId": "0b6a4c1e-4c8b-4c1a-9d0e-2f1e7a3b5c6d",
            "event": "Order Completed", "messageId": "m-1",
            "properties": {"revenue": 1299},
            "originalTimestamp": "2027-01-15T08:00:00Z", "sentAt": "2027-01-15T08:00:10Z",
            "context": {"ip": "203.0.113.9", "userAgent": "analytics-python/2",
                        "campaign": {"name": "camera-x", "source": "Facebook", "medium": "Social"},
                        "page": {"url": "https://shop.example/p/1?a=1", "referrer": "https://l.facebook.com/"}}
        });
        let e = to_event(&m, Some("track"), "shop", NOW, None, None).unwrap();
        assert_eq!(e.name, "Order Completed");
        assert_eq!(e.source, Some(Source::Segment));
        assert_eq!(e.user_id.as_deref(), Some("u-1"));
        assert_eq!(
            e.visitor_id.unwrap().to_string(),
            "0b6a4c1e-4c8b-4c1a-9d0e-2f1e7a3b5c6d"
        );
        // Clock skew: sent 10 s after it happened, so it happened 10 s before receipt.
        assert_eq!(e.ts_us, NOW - 10_000_000);
        assert_eq!(
            e.event_id,
            native::message_event_id("shop", Source::Segment, "m-1")
        );
        assert_eq!(
            (e.utm_source.as_deref(), e.utm_campaign.as_deref()),
            (Some("facebook"), Some("camera-x"))
        );
        assert_eq!(
            (e.path.as_deref(), e.referrer.as_deref()),
            (Some("/p/1"), Some("https://l.facebook.com/"))
        );
        assert_eq!(e.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(e.props.as_deref(), Some(r#"{"revenue":1299}"#));
    }

    #[test]
    fn other_types() {
        let e = to_event(
            &json!({"type": "identify", "userId": "u", "traits": {"plan": "pro"}}),
            None,
            "s",
            NOW,
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            (e.name.as_str(), e.props.as_deref()),
            ("identify", Some(r#"{"plan":"pro"}"#))
        );
        let e = to_event(
            &json!({"type": "page", "anonymousId": "abc", "name": "Home"}),
            None,
            "s",
            NOW,
            None,
            None,
        )
        .unwrap();
        assert_eq!(e.name, "page_view");
        assert!(e
            .props
            .as_deref()
            .unwrap()
            .contains("\"_anonymous_id\":\"abc\""));
        let again = to_event(
            &json!({"type": "page", "anonymousId": "abc"}),
            None,
            "s",
            NOW,
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            e.visitor_id, again.visitor_id,
            "a non-UUID anonymousId maps stably"
        );
        let v = "0b6a4c1e-4c8b-4c1a-9d0e-2f1e7a3b5c6d";
        let e = to_event(
            &json!({"type": "alias", "userId": "u", "previousId": v}),
            None,
            "s",
            NOW,
            None,
            None,
        )
        .unwrap();
        assert_eq!(e.visitor_id.unwrap().to_string(), v);
        let e = to_event(
            &json!({"type": "group", "userId": "u", "groupId": 7}),
            None,
            "s",
            NOW,
            None,
            None,
        )
        .unwrap();
        assert_eq!(e.props.as_deref(), Some(r#"{"group_id":"7"}"#));
    }

    #[test]
    fn requests_become_events_or_reasons_in_order() {
        let body = json!({"sentAt": "2027-01-15T08:00:10Z", "context": {"ip": "203.0.113.9"},
            "batch": [{"type": "track", "userId": "u", "event": "a",
                       "originalTimestamp": "2027-01-15T08:00:00Z"},
                      {"type": "track", "userId": "u"}]});
        let r = request_events("batch", &body, "s", NOW).unwrap();
        assert_eq!(r.len(), 2);
        let e = r[0].as_ref().unwrap();
        assert_eq!(
            (e.ts_us, e.ip.as_deref()),
            (NOW - 10_000_000, Some("203.0.113.9"))
        );
        assert_eq!(r[1].as_ref().unwrap_err(), &SegmentError::NoEvent);
        assert!(r[1].as_ref().unwrap_err().to_string().contains("\"event\""));
        let one = request_events("identify", &json!({"userId": "u"}), "s", NOW).unwrap();
        assert_eq!(one[0].as_ref().unwrap().name, "identify");
        assert!(request_events("batch", &json!({"batch": {}}), "s", NOW).is_err());
    }

    #[test]
    fn bad_messages_say_why() {
        let err = |m: Value, k: Option<&str>| {
            to_event(&m, k, "s", NOW, None, None)
                .unwrap_err()
                .to_string()
        };
        assert!(err(json!({"userId": "u"}), Some("track")).contains("\"event\""));
        assert!(err(json!({"event": "x"}), Some("track")).contains("anonymousId"));
        assert!(err(json!({"userId": "u", "event": "x"}), None).contains("\"type\""));
        assert!(err(json!({"type": "nope", "userId": "u"}), None).contains("not one of"));
        assert!(err(
            json!({"userId": "u", "event": "x", "timestamp": "soon"}),
            Some("track")
        )
        .contains("\"timestamp\""));
        assert!(err(
            json!({"userId": "u", "event": "x", "properties": 1}),
            Some("track")
        )
        .contains("properties"));
        assert!(err(json!({"userId": "u"}), Some("alias")).contains("previousId"));
    }

    /// Every refusal, word for word: clients and their logs read these.
    /// Long because it is a table: one line a refusal, every one in one place.
    #[test]
    fn refusals_are_worded_as_before() {
        let err = |m: Value, k: Option<&str>| to_event(&m, k, "s", NOW, None, None).unwrap_err();
        let track = Some("track");
        for (m, kind, want) in [
            (json!(1), track, "a message must be a JSON object"),
            (
                json!({"userId": "u", "event": "x"}),
                None,
                "\"type\" is required in a batch message",
            ),
            (
                json!({"type": "nope", "userId": "u"}),
                None,
                "\"type\" \"nope\" is not one of track, page, screen, identify, group, alias",
            ),
            (
                json!({"userId": "u", "event": " "}),
                track,
                "\"event\" is required for a track call",
            ),
            (
                json!({"userId": true, "event": "x"}),
                track,
                "\"userId\" must be a string",
            ),
            (
                json!({"anonymousId": [], "event": "x"}),
                track,
                "\"anonymousId\" must be a string",
            ),
            (
                json!({"event": "x", "userId": " "}),
                track,
                "\"userId\" or \"anonymousId\" is required",
            ),
            (
                json!({"userId": "u", "event": "x", "properties": 1}),
                track,
                "\"properties\" must be a JSON object",
            ),
            (
                json!({"userId": "u", "traits": "x"}),
                Some("identify"),
                "\"traits\" must be a JSON object",
            ),
            (
                json!({"userId": "u"}),
                Some("group"),
                "\"groupId\" is required for a group call",
            ),
            (
                json!({"userId": "u", "groupId": {}}),
                Some("group"),
                "\"groupId\" must be a string",
            ),
            (
                json!({"userId": "u"}),
                Some("alias"),
                "\"previousId\" is required for an alias call",
            ),
            (
                json!({"anonymousId": "a", "previousId": "p"}),
                Some("alias"),
                "\"userId\" is required for an alias call",
            ),
            (
                json!({"userId": "u", "event": "x", "timestamp": "soon"}),
                track,
                "\"timestamp\" is not an RFC 3339 timestamp (premature end of input): \"soon\"",
            ),
            (
                json!({"userId": "u", "event": "x", "originalTimestamp": true}),
                track,
                "\"originalTimestamp\" must be an RFC 3339 string or epoch milliseconds",
            ),
            (
                json!({"userId": "u", "event": "x", "originalTimestamp": 0}),
                track,
                "\"originalTimestamp\" is before the year 2000: 1970-01-01T00:00:00Z",
            ),
            (
                json!({"userId": "u", "event": "x", "sentAt": 1.5}),
                track,
                "\"sentAt\" is not whole epoch milliseconds: 1.5",
            ),
            (
                json!({"userId": "u", "event": "x", "context": {"campaign": {"name": "c\u{7}"}}}),
                track,
                "\"context.campaign.name\" contains control characters (only printable text is stored)",
            ),
            (
                json!({"userId": "u", "event": "x", "context": {"page": {"url": "http://a b"}}}),
                track,
                "\"context.page.url\" is not a URL or path: \"http://a b\"",
            ),
        ] {
            assert_eq!(err(m.clone(), kind).to_string(), want, "{m}");
        }
        let req = |body: Value| request_events("batch", &body, "s", NOW);
        assert_eq!(
            req(json!({"batch": {}})).unwrap_err().to_string(),
            "\"batch\" must be an array of messages"
        );
        let big = json!({"batch": [{"type": "track", "userId": "u", "event": "x".repeat(MAX_MESSAGE_BYTES)}]});
        let size = big["batch"][0].to_string().len();
        assert_eq!(
            req(big).unwrap()[0].as_ref().unwrap_err().to_string(),
            format!("message is {size} bytes; the limit is 32768")
        );
    }

    /// Segment's messages go through the same draft as every other source, and its errors
    /// name Segment's fields.
    #[test]
    fn errors_name_segment_fields_and_campaigns_are_checked_too() {
        let err = |m: Value| {
            to_event(&m, Some("track"), "s", NOW, None, None)
                .unwrap_err()
                .to_string()
        };
        let long = "u".repeat(257);
        assert_eq!(
            err(json!({"userId": long, "event": "x"})),
            "\"userId\" is longer than 256 characters"
        );
        assert_eq!(
            err(json!({"userId": "u", "event": "x", "messageId": "m\u{7}"})),
            "\"messageId\" contains control characters (only printable text is stored)"
        );
        assert_eq!(
            err(json!({"userId": "u", "event": "x", "context": {"ip": "nope"}})),
            "\"context.ip\" is not an IP address: \"nope\""
        );
        let ctl = json!({"userId": "u", "event": "x", "context": {"campaign": {"source": "fb\u{1b}[2J"}}});
        assert!(err(ctl).starts_with("\"context.campaign.source\" contains control"));
        // Source and medium are lower-cased per character, as those from a URL are.
        let sigma = json!({"userId": "u", "event": "x", "context": {"campaign": {"source": " ΟΔΟΣ ", "medium": "CPC"}}});
        let e = to_event(&sigma, Some("track"), "s", NOW, None, None).unwrap();
        assert_eq!(
            (e.utm_source.as_deref(), e.utm_medium.as_deref()),
            (Some("οδοσ"), Some("cpc"))
        );
    }
}
