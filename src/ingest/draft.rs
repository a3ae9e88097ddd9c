//! One typed draft for a client's event, whatever the source: the browser endpoint and the
//! native API ([`EventDraft::from_json`]), the Segment API, CSV import and a backend's event
//! header each fill an [`EventDraft`], and [`EventDraft::into_event`] turns it into an
//! [`Event`] with the same rules for all of them: text limits, timestamps, ids, URL parsing,
//! what the browser may not set.
//!
//! Errors are typed ([`DraftError`]: a [`Field`] and its [`Problem`]), and each source names
//! the field in its own words ([`Naming`]): `field "message_id"` in the native format,
//! `"messageId"` for Segment, `"timestamp"` for a CSV file.

use crate::enrich::campaign::lower_case;
use crate::event::{limits, Event, PrivacyMode, Source};
use serde_json::{Map, Value};
use std::fmt;
use uuid::Uuid;

/// Longest event name.
pub const MAX_NAME: usize = 128;
/// Longest `user_id` and `message_id`.
pub const MAX_ID: usize = 256;
/// Longest `url`, `referrer`, `user_agent` and campaign value.
pub const MAX_TEXT: usize = 4096;
/// Longest UUID text (with room for braces and spaces) and IP address.
const MAX_SHORT: usize = 64;

/// Earliest accepted timestamp: 2000-01-01T00:00:00Z.
const MIN_TS_US: i64 = 946_684_800_000_000;
/// Latest accepted timestamp, relative to now: clocks drift, but not by a day.
const MAX_AHEAD_US: i64 = 86_400_000_000;

/// Namespace of `event_id`s derived from a `message_id` (UUIDv5). Fixed forever: changing it
/// would make every retried message look new.
const MESSAGE_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_3d3a_5b1e_4c7e_9a51_7d2f_0c44_e1a9);

/// Namespace of `event_id`s derived from a browser's retry key. A different namespace from
/// [`MESSAGE_NAMESPACE`], and the visitor id in the name: a browser can neither hit a server
/// event's id nor another visitor's.
const BROWSER_NAMESPACE: Uuid = Uuid::from_u128(0x2b0e_9c41_07d6_4f55_b3a8_51c6_9e2d_7f13);

/// Event names tollgate gives proxied requests. The browser endpoint refuses them, but for the
/// tracker's own `page_view` beacon ([`BrowserRequest::beacon`]): an anonymous client cannot
/// add page views or API calls.
pub const RESERVED_NAMES: &[&str] = &crate::event::RequestKind::NAMES;

/// Most minutes a browser event's `ts` may be from now, either way, by default.
pub const DEFAULT_BROWSER_SKEW_SECS: u64 = 600;

/// The deduplication id of a message of `site`, from a client's own message id.
pub fn message_event_id(site: &str, source: Source, message_id: &str) -> Uuid {
    let name = format!("{site}\u{0}{}\u{0}{message_id}", source.as_str());
    Uuid::new_v5(&MESSAGE_NAMESPACE, name.as_bytes())
}

/// The `event_id` of a browser event that `visitor` sent with its own retry key `key` (an
/// `event_id` or `message_id` field): stable, so a retried beacon is stored once, and never
/// equal to an id of another source or another visitor.
pub fn browser_event_id(site: &str, visitor: Uuid, key: &str) -> Uuid {
    let name = format!("{site}\u{0}{visitor}\u{0}{key}");
    Uuid::new_v5(&BROWSER_NAMESPACE, name.as_bytes())
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
    /// The tracker's own beacon: a same-origin request (fetch metadata) from a visitor tollgate
    /// already identified (a valid visitor cookie, or the cookieless id). Only such a request
    /// may send a `page_view`.
    pub beacon: bool,
    /// Most microseconds a browser event's `ts` may be from now, either way.
    pub max_skew_us: i64,
}

/// A field a client can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Ts,
    EventId,
    MessageId,
    VisitorId,
    SessionId,
    UserId,
    Url,
    Referrer,
    UserAgent,
    Ip,
    Props,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
}

impl Field {
    /// The fields of tollgate's own format, by their names there.
    const NATIVE: [Field; 12] = [
        Field::Name,
        Field::Ts,
        Field::EventId,
        Field::MessageId,
        Field::VisitorId,
        Field::SessionId,
        Field::UserId,
        Field::Url,
        Field::Referrer,
        Field::UserAgent,
        Field::Ip,
        Field::Props,
    ];

    /// tollgate's own name: the native format's key, the CSV column, the event column.
    pub fn name(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Ts => "ts",
            Field::EventId => "event_id",
            Field::MessageId => "message_id",
            Field::VisitorId => "visitor_id",
            Field::SessionId => "session_id",
            Field::UserId => "user_id",
            Field::Url => "url",
            Field::Referrer => "referrer",
            Field::UserAgent => "user_agent",
            Field::Ip => "ip",
            Field::Props => "props",
            Field::UtmSource => "utm_source",
            Field::UtmMedium => "utm_medium",
            Field::UtmCampaign => "utm_campaign",
            Field::UtmTerm => "utm_term",
            Field::UtmContent => "utm_content",
        }
    }

    /// A field of the native format by its key.
    pub fn native(key: &str) -> Option<Field> {
        Field::NATIVE.into_iter().find(|f| f.name() == key)
    }

    /// Identity and request facts: a browser event takes them from its request, never from
    /// its body.
    pub fn from_request(self) -> bool {
        matches!(
            self,
            Field::VisitorId | Field::SessionId | Field::UserId | Field::UserAgent | Field::Ip
        )
    }

    /// The longest text the field takes, in characters.
    fn max_chars(self) -> usize {
        match self {
            Field::Name => MAX_NAME,
            Field::MessageId | Field::UserId => MAX_ID,
            Field::EventId | Field::VisitorId | Field::SessionId | Field::Ip => MAX_SHORT,
            _ => MAX_TEXT,
        }
    }
}

/// What is wrong with a field's value. Its `Display` is the end of a sentence that starts
/// with the field's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Required,
    Blank,
    NotString,
    NotObject,
    TooLong(usize),
    ControlCharacters,
    NotUuid(String),
    NotUrl(String),
    NotIp(String),
    NotRfc3339 {
        error: String,
        given: String,
    },
    NotWholeMillis(String),
    NotTime,
    /// A CSV cell in none of the time formats import takes.
    NotCsvTime(String),
    /// Epoch milliseconds beyond what microseconds can hold.
    OutOfRange,
    /// An empty CSV cell where a value is required.
    Empty,
    BeforeYear2000(i64),
    FarAhead(i64),
    /// Further from now than the browser endpoint allows, in seconds.
    NotNow {
        secs: i64,
        given: i64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Required => write!(f, "is required"),
            Problem::Blank => write!(f, "must be non-empty printable text"),
            Problem::NotString => write!(f, "must be a string"),
            Problem::NotObject => write!(f, "must be a JSON object"),
            Problem::TooLong(max) => write!(f, "is longer than {max} characters"),
            Problem::ControlCharacters => {
                write!(
                    f,
                    "contains control characters (only printable text is stored)"
                )
            }
            Problem::NotUuid(s) => write!(f, "is not a UUID: {s:?}"),
            Problem::NotUrl(s) => write!(f, "is not a URL or path: {s:?}"),
            Problem::NotIp(s) => write!(f, "is not an IP address: {s:?}"),
            Problem::NotRfc3339 { error, given } => {
                write!(f, "is not an RFC 3339 timestamp ({error}): {given:?}")
            }
            Problem::NotWholeMillis(n) => write!(f, "is not whole epoch milliseconds: {n}"),
            Problem::NotTime => write!(f, "must be an RFC 3339 string or epoch milliseconds"),
            Problem::NotCsvTime(s) => write!(
                f,
                "{s:?} is not RFC 3339, YYYY-MM-DD HH:MM:SS, YYYY-MM-DD or epoch milliseconds"
            ),
            Problem::OutOfRange => write!(f, "is out of range"),
            Problem::Empty => write!(f, "is empty"),
            Problem::BeforeYear2000(us) => write!(f, "is before the year 2000: {}", rfc3339(*us)),
            Problem::FarAhead(us) => {
                write!(f, "is more than a day in the future: {}", rfc3339(*us))
            }
            Problem::NotNow { secs, given } => write!(
                f,
                "is more than {secs} s from now: {} (leave it out; the browser endpoint takes \
                 events as they happen)",
                rfc3339(*given)
            ),
        }
    }
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(
        || format!("{us} µs"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

/// Why a draft is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftError {
    Field(Field, Problem),
    /// The item is not a JSON object.
    NotObject,
    /// A key the format does not have.
    Unknown(String),
    /// A field the browser endpoint takes from the request, not the body.
    FromRequest(Field),
    /// A name tollgate gives its own events, sent to the browser endpoint.
    Reserved(String),
    /// A server event names no one.
    NoIdentity,
}

impl DraftError {
    fn field(field: Field, problem: Problem) -> DraftError {
        DraftError::Field(field, problem)
    }

    /// The message, with fields named as `naming` names them.
    pub fn describe(&self, naming: Naming) -> String {
        match self {
            DraftError::Field(field, problem) => format!("{} {problem}", naming.subject(*field)),
            DraftError::NotObject => "an event must be a JSON object".into(),
            DraftError::Unknown(key) => format!("unknown field {key:?}"),
            DraftError::FromRequest(field) => format!(
                "{} cannot be set from the browser (it comes from the request)",
                naming.subject(*field)
            ),
            DraftError::Reserved(name) => format!(
                "event name {name:?} is reserved for the events tollgate records itself \
                 (page views come from the proxy, or from its tracker's same-origin beacon \
                 for a visitor it identified); pick another name"
            ),
            DraftError::NoIdentity => format!(
                "one of {} or {} is required",
                naming.quoted(Field::VisitorId),
                naming.quoted(Field::UserId)
            ),
        }
    }
}

impl fmt::Display for DraftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(Naming::Native))
    }
}

/// How a source names the fields in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// tollgate's format: `field "message_id"`.
    Native,
    /// Segment's: `"messageId"`, `"context.ip"`.
    Segment,
    /// A CSV file's columns: `"timestamp"`; the other columns are named as in the native
    /// format.
    Csv,
}

impl Naming {
    fn subject(self, field: Field) -> String {
        match (self, field) {
            (Naming::Segment, _) | (Naming::Csv, Field::Ts) => self.quoted(field),
            _ => format!("field {}", self.quoted(field)),
        }
    }

    fn quoted(self, field: Field) -> String {
        let name = match (self, field) {
            (Naming::Csv, Field::Ts) => "timestamp",
            (Naming::Segment, f) => match f {
                Field::Name => "event",
                Field::Ts => "timestamp",
                Field::EventId | Field::MessageId => "messageId",
                Field::VisitorId => "anonymousId",
                Field::UserId => "userId",
                Field::Url => "context.page.url",
                Field::Referrer => "context.page.referrer",
                Field::UserAgent => "context.userAgent",
                Field::Ip => "context.ip",
                Field::Props => "properties",
                Field::UtmSource => "context.campaign.source",
                Field::UtmMedium => "context.campaign.medium",
                Field::UtmCampaign => "context.campaign.name",
                Field::UtmTerm => "context.campaign.term",
                Field::UtmContent => "context.campaign.content",
                other => other.name(),
            },
            (_, f) => f.name(),
        };
        format!("{name:?}")
    }
}

/// An event as a client describes it, before tollgate takes it. Text is checked and ids are
/// derived in [`EventDraft::into_event`], the same way for every source.
#[derive(Debug, Clone, Default)]
pub struct EventDraft {
    pub name: Option<String>,
    /// When it happened; `None` is now.
    pub ts_us: Option<i64>,
    pub event_id: Option<Uuid>,
    /// The client's own dedup key, turned into a stable `event_id`.
    pub message_id: Option<String>,
    pub visitor_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub url: Option<String>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub props: Option<Map<String, Value>>,
    /// Campaign values a client states itself (Segment's `context.campaign`), in
    /// [`CAMPAIGN`]'s order; `utm_source` and `utm_medium` are lower-cased by the same rule as
    /// those from a URL.
    pub campaign: [Option<String>; 5],
}

/// The campaign fields, in [`EventDraft::campaign`]'s order.
const CAMPAIGN: [Field; 5] = [
    Field::UtmSource,
    Field::UtmMedium,
    Field::UtmCampaign,
    Field::UtmTerm,
    Field::UtmContent,
];

impl EventDraft {
    /// Set a text field from a string: ids are parsed, other text is kept for
    /// [`EventDraft::into_event`] to check. `Ts` and `Props` are not text.
    pub fn set_text(&mut self, field: Field, value: String) -> Result<(), DraftError> {
        let uuid = |v: String| {
            check_text(field, &v)?;
            Uuid::try_parse(v.trim())
                .map(Some)
                .map_err(|_| DraftError::field(field, Problem::NotUuid(v)))
        };
        let slot = match field {
            Field::EventId => return uuid(value).map(|u| self.event_id = u),
            Field::VisitorId => return uuid(value).map(|u| self.visitor_id = u),
            Field::SessionId => return uuid(value).map(|u| self.session_id = u),
            Field::Ts => return Err(DraftError::field(field, Problem::NotTime)),
            Field::Props => return Err(DraftError::field(field, Problem::NotObject)),
            Field::Name => &mut self.name,
            Field::MessageId => &mut self.message_id,
            Field::UserId => &mut self.user_id,
            Field::Url => &mut self.url,
            Field::Referrer => &mut self.referrer,
            Field::UserAgent => &mut self.user_agent,
            Field::Ip => &mut self.ip,
            Field::UtmSource => &mut self.campaign[0],
            Field::UtmMedium => &mut self.campaign[1],
            Field::UtmCampaign => &mut self.campaign[2],
            Field::UtmTerm => &mut self.campaign[3],
            Field::UtmContent => &mut self.campaign[4],
        };
        *slot = Some(value);
        Ok(())
    }

    /// An item of tollgate's own format (module docs of `native`). From the browser
    /// (`browser`), identity and request fields are refused: they come from the request.
    /// Unknown keys are refused, so that a typo is an error rather than a lost value.
    pub fn from_json(item: Value, browser: bool) -> Result<EventDraft, DraftError> {
        let Value::Object(m) = item else {
            return Err(DraftError::NotObject);
        };
        for key in m.keys() {
            match Field::native(key) {
                Some(f) if browser && f.from_request() => return Err(DraftError::FromRequest(f)),
                Some(_) => {}
                None => return Err(DraftError::Unknown(key.clone())),
            }
        }
        let mut d = EventDraft::default();
        for (key, v) in m {
            let Some(field) = Field::native(&key) else {
                continue;
            };
            match (field, v) {
                (_, Value::Null) => {}
                (Field::Ts, v) => {
                    d.ts_us = Some(ts_value(&v).map_err(|p| DraftError::field(field, p))?)
                }
                (Field::Props, Value::Object(p)) => d.props = Some(p),
                (Field::Props, _) => return Err(DraftError::field(field, Problem::NotObject)),
                (_, Value::String(s)) => d.set_text(field, s)?,
                (_, _) => return Err(DraftError::field(field, Problem::NotString)),
            }
        }
        Ok(d)
    }

    /// The event: every text checked, the time and the id settled, the browser's limits
    /// applied. `cx` says what the endpoint knows that the draft does not.
    pub fn into_event(mut self, cx: &Context) -> Result<Event, DraftError> {
        let name = checked_name(self.name.take())?;
        // The browser endpoint is the public port: less is taken from it on trust.
        let browser = cx.browser.as_ref();
        let from_browser = browser.filter(|_| cx.source == Source::Browser);
        if let Some(b) = from_browser {
            if RESERVED_NAMES.contains(&name.as_str()) && !(name == "page_view" && b.beacon) {
                return Err(DraftError::Reserved(name));
            }
        }
        let mut e = Event::now(name, cx.site, cx.source);
        e.received_at_us = cx.now_us;
        e.ts_us = match (self.ts_us, from_browser) {
            (None, _) => cx.now_us,
            (Some(us), Some(b)) => browser_ts(us, cx.now_us, b.max_skew_us)?,
            (Some(us), None) => {
                check_ts(us, cx.now_us).map_err(|p| DraftError::field(Field::Ts, p))?
            }
        };
        let message = checked(Field::MessageId, self.message_id.take())?;
        // A blank key would make every event that sends it one event.
        if message.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(DraftError::field(Field::MessageId, Problem::Blank));
        }
        if let Some(id) = event_id(cx, from_browser, self.event_id, message) {
            e.event_id = id;
            e.hints.keyed = true;
        }
        if let Some(url) = checked(Field::Url, self.url.take())? {
            set_url(&mut e, url)?;
        }
        e.referrer = checked(Field::Referrer, self.referrer.take())?
            .filter(|r| !r.is_empty())
            .map(|r| capped(&r, limits::REFERRER));
        e.props = self.props.take().map(|p| Value::Object(p).to_string());
        set_campaign(&mut e, std::mem::take(&mut self.campaign))?;
        match browser {
            Some(b) => self.browser_identity(&mut e, b)?,
            None => self.stated_identity(&mut e)?,
        }
        Ok(e)
    }

    /// A browser event's identity and request fields, which come from the request: the draft
    /// may not state any of them.
    fn browser_identity(&self, e: &mut Event, b: &BrowserRequest) -> Result<(), DraftError> {
        let sent = [
            (Field::VisitorId, self.visitor_id.is_some()),
            (Field::SessionId, self.session_id.is_some()),
            (Field::UserId, self.user_id.is_some()),
            (Field::UserAgent, self.user_agent.is_some()),
            (Field::Ip, self.ip.is_some()),
        ];
        if let Some((f, _)) = sent.into_iter().find(|(_, set)| *set) {
            return Err(DraftError::FromRequest(f));
        }
        e.visitor_id = b.visitor_id;
        e.session_id = b.session_id;
        e.hints.privacy = b.privacy;
        e.user_agent = b.user_agent.map(|u| capped(u, limits::USER_AGENT));
        e.ip = b.ip.clone();
        e.request_id = b.request_id.map(str::to_string);
        Ok(())
    }

    /// A server-side event's identity and request fields, as the draft states them: a visitor
    /// or a user is required.
    fn stated_identity(self, e: &mut Event) -> Result<(), DraftError> {
        e.visitor_id = self.visitor_id;
        e.session_id = self.session_id;
        e.user_id = checked(Field::UserId, self.user_id)?.filter(|u| !u.trim().is_empty());
        if e.visitor_id.is_none() && e.user_id.is_none() {
            return Err(DraftError::NoIdentity);
        }
        e.user_agent =
            checked(Field::UserAgent, self.user_agent)?.map(|u| capped(&u, limits::USER_AGENT));
        e.ip = match checked(Field::Ip, self.ip)? {
            Some(ip) => Some(
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| DraftError::field(Field::Ip, Problem::NotIp(ip)))?
                    .to_string(),
            ),
            None => None,
        };
        Ok(())
    }
}

/// The event's name: required, checked, not blank.
fn checked_name(name: Option<String>) -> Result<String, DraftError> {
    let name = name.ok_or(DraftError::field(Field::Name, Problem::Required))?;
    check_text(Field::Name, &name)?;
    if name.trim().is_empty() {
        return Err(DraftError::field(Field::Name, Problem::Blank));
    }
    Ok(name)
}

/// The event id the draft's keys settle on (`id` its `event_id`, `message` its message id),
/// or `None` for the event's own random one.
fn event_id(
    cx: &Context,
    from_browser: Option<&BrowserRequest>,
    id: Option<Uuid>,
    message: Option<String>,
) -> Option<Uuid> {
    match (from_browser, id, message) {
        // A browser's key is its own: derived into the browser namespace, with the visitor.
        (Some(b), id, msg) => match (b.visitor_id, id.map(|u| u.to_string()).or(msg)) {
            (Some(v), Some(key)) => Some(browser_event_id(cx.site, v, &key)),
            // No visitor (opted out): no key can be tied to anyone, so none is trusted.
            _ => None,
        },
        (None, Some(id), _) => Some(id),
        (None, None, Some(msg)) => Some(message_event_id(cx.site, cx.source, &msg)),
        (None, None, None) => None,
    }
}

/// The event's host, path and query, from the URL the draft gives.
fn set_url(e: &mut Event, url: String) -> Result<(), DraftError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| DraftError::field(Field::Url, Problem::NotUrl(url.clone())))?;
    e.host = uri.host().map(|h| capped(h, limits::HOST));
    e.path = Some(capped(uri.path(), limits::PATH)).filter(|p| !p.is_empty());
    e.query = uri
        .query()
        .filter(|q| !q.is_empty())
        .map(|q| capped(q, limits::QUERY));
    Ok(())
}

/// The event's `utm_*` fields from the draft's `campaign` (in [`CAMPAIGN`]'s order): trimmed,
/// empty ones dropped, source and medium lower-cased.
fn set_campaign(e: &mut Event, campaign: [Option<String>; 5]) -> Result<(), DraftError> {
    let slots = [
        &mut e.utm_source,
        &mut e.utm_medium,
        &mut e.utm_campaign,
        &mut e.utm_term,
        &mut e.utm_content,
    ];
    for ((slot, field), value) in slots.into_iter().zip(CAMPAIGN).zip(campaign) {
        let lower = matches!(field, Field::UtmSource | Field::UtmMedium);
        *slot = checked(field, value)?
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| if lower { lower_case(&v) } else { v });
    }
    Ok(())
}

/// `s` cut to `max` bytes, owned.
fn capped(s: &str, max: usize) -> String {
    limits::cap(s, max).0.to_string()
}

/// Text within the field's length, and without control characters (they would reach
/// terminals and spreadsheets that read the store). Props are JSON, escaped when stored.
fn check_text(field: Field, s: &str) -> Result<(), DraftError> {
    let max = field.max_chars();
    if s.chars().count() > max {
        return Err(DraftError::field(field, Problem::TooLong(max)));
    }
    if s.chars().any(char::is_control) {
        return Err(DraftError::field(field, Problem::ControlCharacters));
    }
    Ok(())
}

fn checked(field: Field, v: Option<String>) -> Result<Option<String>, DraftError> {
    if let Some(s) = &v {
        check_text(field, s)?;
    }
    Ok(v)
}

/// A time within [2000, now + 1 day].
pub fn check_ts(us: i64, now_us: i64) -> Result<i64, Problem> {
    if us < MIN_TS_US {
        return Err(Problem::BeforeYear2000(us));
    }
    if us > now_us.saturating_add(MAX_AHEAD_US) {
        return Err(Problem::FarAhead(us));
    }
    Ok(us)
}

/// A browser event's time: within `max_skew_us` of now. A browser has no business
/// back-dating events (the tracker sends none), so forged history is refused.
fn browser_ts(us: i64, now_us: i64, max_skew_us: i64) -> Result<i64, DraftError> {
    if us.saturating_sub(now_us).saturating_abs() > max_skew_us {
        return Err(DraftError::field(
            Field::Ts,
            Problem::NotNow {
                secs: max_skew_us / 1_000_000,
                given: us,
            },
        ));
    }
    Ok(us)
}

/// An RFC 3339 string or epoch milliseconds, as microseconds (the range is checked later).
pub fn ts_value(v: &Value) -> Result<i64, Problem> {
    match v {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.timestamp_micros())
            .map_err(|e| Problem::NotRfc3339 {
                error: e.to_string(),
                given: s.clone(),
            }),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| Problem::NotWholeMillis(n.to_string())),
        _ => Err(Problem::NotTime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_names_the_field_its_own_way() {
        let e = DraftError::Field(Field::MessageId, Problem::TooLong(256));
        assert_eq!(
            e.describe(Naming::Native),
            "field \"message_id\" is longer than 256 characters"
        );
        assert_eq!(
            e.describe(Naming::Segment),
            "\"messageId\" is longer than 256 characters"
        );
        let ts = DraftError::Field(Field::Ts, Problem::BeforeYear2000(0));
        assert_eq!(
            ts.describe(Naming::Csv),
            "\"timestamp\" is before the year 2000: 1970-01-01T00:00:00Z"
        );
        assert_eq!(
            DraftError::NoIdentity.describe(Naming::Native),
            "one of \"visitor_id\" or \"user_id\" is required"
        );
    }

    #[test]
    fn times_are_checked_once_for_every_source() {
        let now = 1_800_000_000_000_000;
        assert_eq!(check_ts(MIN_TS_US, now), Ok(MIN_TS_US));
        assert!(matches!(
            check_ts(MIN_TS_US - 1, now),
            Err(Problem::BeforeYear2000(_))
        ));
        assert!(matches!(
            check_ts(now + MAX_AHEAD_US + 1, now),
            Err(Problem::FarAhead(_))
        ));
        assert_eq!(
            ts_value(&Value::from(1_700_000_000_000i64)),
            Ok(1_700_000_000_000_000)
        );
        assert!(matches!(
            ts_value(&Value::from(1.5)),
            Err(Problem::NotWholeMillis(_))
        ));
        assert!(matches!(
            ts_value(&Value::Bool(true)),
            Err(Problem::NotTime)
        ));
    }

    #[test]
    fn text_and_ids_are_checked_when_set() {
        let mut d = EventDraft::default();
        assert!(d.set_text(Field::VisitorId, "nope".into()).is_err());
        assert!(
            d.set_text(Field::Name, "x".repeat(129)).is_ok(),
            "checked later"
        );
        assert_eq!(
            check_text(Field::Name, &"x".repeat(129)),
            Err(DraftError::Field(Field::Name, Problem::TooLong(MAX_NAME)))
        );
        assert_eq!(
            check_text(Field::Url, "/a\u{1b}"),
            Err(DraftError::Field(Field::Url, Problem::ControlCharacters))
        );
    }
}
