//! The stored columns of an event, in table order: each column's name, whether it may be
//! null, and how its value is read from an [`Event`]. The store's DDL and appender and the file
//! sinks' schemas derive from this one table, so a new column is one entry here (plus its
//! field on [`Event`], a migration and `docs/schema.md`).

use super::Event;
use uuid::Uuid;

/// One stored column.
pub struct Column {
    pub name: &'static str,
    /// False for the columns every event has (`NOT NULL` in the store).
    pub nullable: bool,
    pub get: Get,
}

/// How a column's value is read from an event; the variant is the column's type.
#[derive(Clone, Copy)]
pub enum Get {
    /// The `seq` the store assigned; not a field of the event.
    Seq,
    Uuid(fn(&Event) -> Option<Uuid>),
    /// UTC microseconds since the epoch.
    Timestamp(fn(&Event) -> Option<i64>),
    Text(fn(&Event) -> Option<&str>),
    /// A JSON document, as text.
    Json(fn(&Event) -> Option<&str>),
    Int(fn(&Event) -> Option<i32>),
    BigInt(fn(&Event) -> Option<i64>),
    Double(fn(&Event) -> Option<f64>),
    Bool(fn(&Event) -> Option<bool>),
}

const fn col(name: &'static str, nullable: bool, get: Get) -> Column {
    Column {
        name,
        nullable,
        get,
    }
}

/// An optional text field.
macro_rules! text {
    ($name:ident) => {
        col(stringify!($name), true, Get::Text(|e| e.$name.as_deref()))
    };
}

/// The `events` columns, in table order.
pub const COLUMNS: [Column; 41] = [
    col("seq", false, Get::Seq),
    col("event_id", false, Get::Uuid(|e| Some(e.event_id))),
    col("ts", false, Get::Timestamp(|e| Some(e.ts_us))),
    col(
        "received_at",
        false,
        Get::Timestamp(|e| Some(e.received_at_us)),
    ),
    col("site", false, Get::Text(|e| Some(&e.site))),
    col("name", false, Get::Text(|e| Some(&e.name))),
    col("source", true, Get::Text(|e| e.source.map(|s| s.as_str()))),
    col("visitor_id", true, Get::Uuid(|e| e.visitor_id)),
    col("session_id", true, Get::Uuid(|e| e.session_id)),
    text!(user_id),
    text!(request_id),
    text!(method),
    text!(host),
    text!(path),
    text!(route),
    text!(query),
    col("status", true, Get::Int(|e| e.status.map(i32::from))),
    col("duration_ms", true, Get::Double(|e| e.duration_ms)),
    col(
        "bytes_out",
        true,
        Get::BigInt(|e| e.bytes_out.map(|b| b as i64)),
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
    col("is_bot", true, Get::Bool(|e| e.is_bot)),
    text!(bot_reason),
    text!(ip),
    text!(country),
    text!(region),
    text!(city),
    col("props", true, Get::Json(|e| e.props.as_deref())),
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
            let set = match c.get {
                Get::Seq => true,
                Get::Uuid(f) => f(&e).is_some(),
                Get::Timestamp(f) => f(&e).is_some(),
                Get::Text(f) | Get::Json(f) => f(&e).is_some(),
                Get::Int(f) => f(&e).is_some(),
                Get::BigInt(f) => f(&e).is_some(),
                Get::Double(f) => f(&e).is_some(),
                Get::Bool(f) => f(&e).is_some(),
            };
            assert!(set, "{} is NOT NULL but can be missing", c.name);
        }
    }
}
