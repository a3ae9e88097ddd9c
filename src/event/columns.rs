//! The stored columns of an event, in table order: each column's name, whether it may be
//! null, its type, and how its value is read from and written back into an [`Event`]. The
//! store's DDL, appender and read-back, the ClickHouse and PostgreSQL tables and rows, the
//! file sinks' schemas and the dead-letter JSON derive from this one table, so a new column is
//! one entry here (plus its field on [`Event`], a migration and `docs/schema.md`).

use super::{Event, Source};
use uuid::Uuid;

/// One stored column.
pub struct Column {
    pub name: &'static str,
    /// False for the columns every event has (`NOT NULL` in the store).
    pub nullable: bool,
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

const fn col(name: &'static str, nullable: bool, field: Field) -> Column {
    Column {
        name,
        nullable,
        field,
    }
}

/// An optional text field, as the column of the same name or as column `$col`.
macro_rules! text {
    ($name:ident) => {
        text!(stringify!($name), $name)
    };
    ($col:expr, $name:ident) => {
        col(
            $col,
            true,
            Field::Text(TextAccess {
                get: |e| e.$name.as_deref(),
                set: |e, v| e.$name = v,
            }),
        )
    };
}

/// An optional field whose type is the column's, as the column of the same name or as column
/// `$col`.
macro_rules! optional {
    ($name:ident, $kind:ident) => {
        optional!(stringify!($name), $name, $kind)
    };
    ($col:expr, $name:ident, $kind:ident) => {
        col(
            $col,
            true,
            Field::$kind(Access {
                get: |e| e.$name,
                set: |e, v| e.$name = v,
            }),
        )
    };
}

/// A field every event has, as column `$col`.
macro_rules! required {
    ($col:expr, $name:ident, Text) => {
        col(
            $col,
            false,
            Field::Text(TextAccess {
                get: |e| Some(&e.$name),
                set: |e, v| e.$name = v.unwrap_or_default(),
            }),
        )
    };
    ($col:expr, $name:ident, $kind:ident) => {
        col(
            $col,
            false,
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

/// The `events` columns, in table order.
pub const COLUMNS: [Column; 41] = [
    col(SEQ, false, Field::Seq),
    required!(EVENT_ID, event_id, Uuid),
    required!(TS, ts_us, Timestamp),
    required!(RECEIVED_AT, received_at_us, Timestamp),
    required!(SITE, site, Text),
    required!(NAME, name, Text),
    col(
        "source",
        true,
        Field::Text(TextAccess {
            get: |e| e.source.map(Source::as_str),
            set: |e, v| e.source = v.and_then(|s| Source::parse(&s)),
        }),
    ),
    optional!(VISITOR_ID, visitor_id, Uuid),
    optional!(session_id, Uuid),
    text!(USER_ID, user_id),
    text!(request_id),
    text!(method),
    text!(host),
    text!(path),
    text!(route),
    text!(query),
    col(
        "status",
        true,
        Field::Int(Access {
            get: |e| e.status.map(i32::from),
            set: |e, v| e.status = v.and_then(|s| u16::try_from(s).ok()),
        }),
    ),
    optional!(duration_ms, Double),
    col(
        "bytes_out",
        true,
        Field::BigInt(Access {
            get: |e| e.bytes_out.and_then(|b| i64::try_from(b).ok()),
            set: |e, v| e.bytes_out = v.and_then(|b| u64::try_from(b).ok()),
        }),
    ),
    text!(referrer),
    text!(referrer_host),
    text!(channel),
    text!(utm_source),
    text!(utm_medium),
    text!(utm_campaign),
    text!(utm_term),
    text!(utm_content),
    text!(click_id_type),
    text!(click_id),
    text!(user_agent),
    text!(browser),
    text!(browser_version),
    text!(os),
    text!(device_type),
    optional!(is_bot, Bool),
    text!(bot_reason),
    text!(ip),
    text!(country),
    text!(region),
    text!(city),
    col(
        "props",
        true,
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
}
