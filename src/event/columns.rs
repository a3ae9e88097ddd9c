//! The stored columns of an event, in table order: each column's name, whether it may be
//! null, its type, what it holds, and how its value is read from and written back into an
//! [`Event`]. The store's DDL, appender and read-back, the ClickHouse and PostgreSQL tables and
//! rows, the file sinks' schemas, the dead-letter JSON and the column table of
//! `docs/schema.md` derive from this one table, so a new column is one entry here (plus its
//! field on [`Event`] and a migration; a unit test then asks for `docs/schema.md` to be
//! regenerated). SQL written elsewhere names a column through the constants beside the table
//! ([`TS`], [`SEQ`], …).

use super::{Event, Source};
use uuid::Uuid;

/// One stored column.
pub struct Column {
    pub name: &'static str,
    /// False for the columns every event has (`NOT NULL` in the store).
    pub nullable: bool,
    /// Whether events from the proxy fill it: `yes`, `null`, or on what condition
    /// (`docs/schema.md`'s "filled for proxy events"; Markdown, one line).
    pub proxy: &'static str,
    /// What the column holds (`docs/schema.md`'s "meaning"; Markdown, one line).
    pub doc: &'static str,
    pub field: Field,
}

impl Column {
    pub fn kind(&self) -> Kind {
        match self.field {
            Field::Seq | Field::BigInt(_) => Kind::BigInt,
            Field::Uuid(_) => Kind::Uuid,
            Field::Timestamp(_) => Kind::Timestamp,
            Field::Text(_) => Kind::Text,
            Field::Json(_) => Kind::Json,
            Field::Int(_) => Kind::Int,
            Field::Double(_) => Kind::Double,
            Field::Bool(_) => Kind::Bool,
        }
    }
}

/// A column's type; each backend maps it to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit signed integer.
    BigInt,
    /// 32-bit signed integer.
    Int,
    Double,
    Bool,
    /// UTC microseconds since the epoch.
    Timestamp,
    Text,
    /// A JSON document, as text.
    Json,
    Uuid,
}

/// Where a column's value lives on an [`Event`]; the variant is the column's type.
pub enum Field {
    /// The `seq` the store assigned; not a field of the event.
    Seq,
    Uuid(Access<Uuid>),
    Timestamp(Access<i64>),
    Text(TextAccess),
    Json(TextAccess),
    Int(Access<i32>),
    BigInt(Access<i64>),
    Double(Access<f64>),
    Bool(Access<bool>),
}

/// Reads a value from an event, and writes one back (`None`: null).
pub struct Access<T> {
    pub get: fn(&Event) -> Option<T>,
    pub set: fn(&mut Event, Option<T>),
}

/// [`Access`] for text: read borrowed, written owned.
pub struct TextAccess {
    pub get: fn(&Event) -> Option<&str>,
    pub set: fn(&mut Event, Option<String>),
}

const fn col(
    name: &'static str,
    nullable: bool,
    proxy: &'static str,
    doc: &'static str,
    field: Field,
) -> Column {
    Column {
        name,
        nullable,
        proxy,
        doc,
        field,
    }
}

/// An optional text field, as the column of the same name or as column `$col`, with the
/// column's [`Column::proxy`] and [`Column::doc`].
macro_rules! text {
    ($name:ident, $proxy:literal, $doc:literal) => {
        text!(stringify!($name), $name, $proxy, $doc)
    };
    ($col:expr, $name:ident, $proxy:literal, $doc:literal) => {
        col(
            $col,
            true,
            $proxy,
            $doc,
            Field::Text(TextAccess {
                get: |e| e.$name.as_deref(),
                set: |e, v| e.$name = v,
            }),
        )
    };
}

/// An optional field whose type is the column's, as the column of the same name or as column
/// `$col`, with the column's [`Column::proxy`] and [`Column::doc`].
macro_rules! optional {
    ($name:ident, $kind:ident, $proxy:literal, $doc:literal) => {
        optional!(stringify!($name), $name, $kind, $proxy, $doc)
    };
    ($col:expr, $name:ident, $kind:ident, $proxy:literal, $doc:literal) => {
        col(
            $col,
            true,
            $proxy,
            $doc,
            Field::$kind(Access {
                get: |e| e.$name,
                set: |e, v| e.$name = v,
            }),
        )
    };
}

/// A field every event has, as column `$col`, with the column's [`Column::proxy`] and
/// [`Column::doc`].
macro_rules! required {
    ($col:expr, $name:ident, Text, $proxy:literal, $doc:literal) => {
        col(
            $col,
            false,
            $proxy,
            $doc,
            Field::Text(TextAccess {
                get: |e| Some(&e.$name),
                set: |e, v| e.$name = v.unwrap_or_default(),
            }),
        )
    };
    ($col:expr, $name:ident, $kind:ident, $proxy:literal, $doc:literal) => {
        col(
            $col,
            false,
            $proxy,
            $doc,
            Field::$kind(Access {
                get: |e| Some(e.$name),
                set: |e, v| e.$name = v.unwrap_or_default(),
            }),
        )
    };
}

// The columns that SQL outside [`COLUMNS`] names (queries, views, indexes, sort keys).

/// The store's ingest order, which sinks and retention go by.
pub const SEQ: &str = "seq";
/// The column every sink deduplicates on.
pub const EVENT_ID: &str = "event_id";
pub const TS: &str = "ts";
pub const RECEIVED_AT: &str = "received_at";
pub const SITE: &str = "site";
pub const NAME: &str = "name";
pub const VISITOR_ID: &str = "visitor_id";
pub const USER_ID: &str = "user_id";
pub const SESSION_ID: &str = "session_id";
pub const PATH: &str = "path";

/// The name of a page view event, the unit of sessions and traffic reports.
pub const PAGE_VIEW: &str = "page_view";

/// The columns a session (the store's `sessions` table) takes from its first page view: who
/// made the visit, with what, from where, and where it came from. Reports can answer a filter
/// on any of them from `sessions` instead of from every page view.
pub const VISIT: [&str; 17] = [
    SITE,
    VISITOR_ID,
    "is_bot",
    "channel",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "click_id_type",
    "browser",
    "os",
    "device_type",
    "country",
    "region",
    "city",
];

/// The `events` columns, in table order.
pub const COLUMNS: [Column; 41] = [
    col(
        SEQ,
        false,
        "yes",
        "local ingest order, gap-free, assigned at commit; sinks tail the store by it",
        Field::Seq,
    ),
    required!(
        EVENT_ID,
        event_id,
        Uuid,
        "yes",
        "UUIDv7; the deduplication key in every sink"
    ),
    required!(TS, ts_us, Timestamp, "yes", "when the request arrived"),
    required!(
        RECEIVED_AT,
        received_at_us,
        Timestamp,
        "yes",
        "when tollgate recorded the event"
    ),
    required!(SITE, site, Text, "yes", "`site.id` from the configuration"),
    required!(
        NAME,
        name,
        Text,
        "yes",
        "`page_view`, `api_call`, `asset`, `prefetch`, `request`, or a rule's name (see below)"
    ),
    col(
        "source",
        true,
        "yes",
        "`proxy`; for custom events (`docs/events.md`) `browser` (collect endpoint), `server` \
         (`/api/events`), `segment` (`/v1/*`) or `import` (`/api/import`)",
        Field::Text(TextAccess {
            get: |e| e.source.map(Source::as_str),
            set: |e, v| e.source = v.and_then(|s| Source::parse(&s)),
        }),
    ),
    optional!(
        VISITOR_ID,
        visitor_id,
        Uuid,
        "yes",
        "the `tg_vid` cookie (or the configured identity header); a daily-rotating UUIDv8 hash \
         in cookieless mode; null for opt-out requests (`docs/privacy.md`)"
    ),
    optional!(
        session_id,
        Uuid,
        "yes",
        "the `tg_sid` cookie; formed in the pipeline for cookieless visitors; null for opt-out \
         requests. A landing with new campaign parameters or a new click id starts a new session"
    ),
    text!(
        USER_ID,
        user_id,
        "from `X-Tollgate-User`",
        "the site's own user id: from the backend's `X-Tollgate-User` response header, or a \
         server event's `user_id` (`docs/identity.md`); null for opt-out requests"
    ),
    text!(
        request_id,
        "yes",
        "`X-Request-ID` as sent upstream and echoed to the client"
    ),
    text!(method, "yes", "HTTP method"),
    text!(host, "yes", "`Host` header"),
    text!(
        path,
        "yes",
        "URL path, without the query; segments holding an e-mail address or phone number \
         stored as `[email]`/`[phone]`"
    ),
    text!(
        route,
        "yes",
        "templated (redacted) path: numeric, UUID, hex and long token segments become `:id` \
         (`/api/products/:id`)"
    ),
    text!(
        query,
        "yes",
        "query string; values of `privacy.redact_params` stored as `[redacted]`, \
         e-mail/phone-like values as `[email]`/`[phone]`"
    ),
    col(
        "status",
        true,
        "yes",
        "response status; tollgate's own 502/504 when the upstream failed; null if the client \
         left before a response",
        Field::Int(Access {
            get: |e| e.status.map(i32::from),
            set: |e, v| e.status = v.and_then(|s| u16::try_from(s).ok()),
        }),
    ),
    optional!(
        duration_ms,
        Double,
        "yes",
        "from request start to the end of the response, in milliseconds to the microsecond"
    ),
    col(
        "bytes_out",
        true,
        "yes",
        "response body bytes sent to the client",
        Field::BigInt(Access {
            get: |e| e.bytes_out.and_then(|b| i64::try_from(b).ok()),
            set: |e, v| e.bytes_out = v.and_then(|b| u64::try_from(b).ok()),
        }),
    ),
    text!(
        referrer,
        "yes",
        "`Referer` header, redacted like `path` and `query`, without its `#fragment`"
    ),
    text!(
        referrer_host,
        "yes",
        "referrer host, lower-cased, without port (`android-app://` referrers give the app \
         package)"
    ),
    text!(
        channel,
        "yes",
        "GA4 default channel group (below); null for navigation inside the site"
    ),
    text!(
        utm_source,
        "yes",
        "campaign source: `utm_source`, percent-decoded, trimmed and lower-cased; implied by \
         some click ids (a lone `gclid` is `google`)"
    ),
    text!(
        utm_medium,
        "yes",
        "campaign medium: `utm_medium`, percent-decoded, trimmed and lower-cased; implied by \
         some click ids (a lone `gclid` is `cpc`)"
    ),
    text!(
        utm_campaign,
        "yes",
        "campaign name: `utm_campaign`, percent-decoded and trimmed"
    ),
    text!(
        utm_term,
        "yes",
        "campaign term: `utm_term`, percent-decoded and trimmed"
    ),
    text!(
        utm_content,
        "yes",
        "campaign content: `utm_content`, percent-decoded and trimmed"
    ),
    text!(
        click_id_type,
        "yes",
        "the ad click id the URL carried: `gclid`, `gbraid`, `wbraid`, `dclid`, `msclkid`, \
         `ttclid`, `li_fat_id`, `twclid` or `fbclid` (of several, the first in this order)"
    ),
    text!(click_id, "yes", "that click id's value"),
    text!(
        user_agent,
        "yes",
        "`User-Agent` header; null for opt-out requests"
    ),
    text!(
        browser,
        "yes",
        "browser family, from uap-core's rules (`Chrome`, `Mobile Safari`, `curl`)"
    ),
    text!(
        browser_version,
        "yes",
        "browser version, `major.minor`, from uap-core's rules"
    ),
    text!(
        os,
        "yes",
        "OS family, from uap-core's rules (`Windows`, `iOS`, `Android`)"
    ),
    text!(
        device_type,
        "yes",
        "`desktop`, `mobile`, `tablet`, `tv`, `console`, `bot` or `other`, from the user agent"
    ),
    optional!(
        is_bot,
        Bool,
        "yes",
        "the request is a bot by any signal below; bot rows are stored so they can be audited, \
         and reports exclude them"
    ),
    text!(
        bot_reason,
        "yes",
        "the first signal that fired (below); null for humans"
    ),
    text!(
        ip,
        "yes",
        "client IP (the socket peer, or `X-Forwarded-For` of a trusted proxy) as `privacy.ip` \
         says: truncated to /24 or /48 by default, full, or null; null for opt-out requests"
    ),
    text!(
        country,
        "with `enrich.geo_db`",
        "ISO 3166-1 alpha-2 country code; kept for opt-out rows, which lose `region` and `city`"
    ),
    text!(
        region,
        "with `enrich.geo_db`",
        "first subdivision's English name; null for opt-out rows"
    ),
    text!(
        city,
        "with `enrich.geo_db`",
        "city's English name; null for opt-out rows"
    ),
    col(
        "props",
        true,
        "null",
        "custom event properties (`props` of a custom event)",
        Field::Json(TextAccess {
            get: |e| e.props.as_deref(),
            set: |e, v| e.props = v,
        }),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_not_null_columns_are_always_set() {
        let mut names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len());
        let e = Event::default();
        for c in COLUMNS.iter().filter(|c| !c.nullable) {
            let set = match &c.field {
                Field::Seq => true,
                Field::Uuid(a) => (a.get)(&e).is_some(),
                Field::Timestamp(a) | Field::BigInt(a) => (a.get)(&e).is_some(),
                Field::Text(a) | Field::Json(a) => (a.get)(&e).is_some(),
                Field::Int(a) => (a.get)(&e).is_some(),
                Field::Double(a) => (a.get)(&e).is_some(),
                Field::Bool(a) => (a.get)(&e).is_some(),
            };
            assert!(set, "{} is NOT NULL but can be missing", c.name);
        }
    }

    /// Every name the SQL elsewhere uses as a column constant is a column.
    #[test]
    fn named_columns_exist() {
        for name in VISIT
            .iter()
            .chain(&[SEQ, EVENT_ID, TS, RECEIVED_AT, SESSION_ID, PATH])
        {
            assert!(COLUMNS.iter().any(|c| c.name == *name), "{name}");
        }
    }
}
