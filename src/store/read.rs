//! Reading stored events back as [`Event`]s, in `seq` order: what the sinks ship.

use super::StoreError;
use crate::event::columns::SEQ;
use crate::event::{Event, Field, Kind, COLUMNS};
use duckdb::Connection;
use std::sync::OnceLock;
use uuid::Uuid;

/// One stored event and its `seq`.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: i64,
    pub event: Event,
}

/// The select list that turns a row of `events` back into an [`Event`], in [`COLUMNS`]
/// order: ids and JSON as text, times as epoch microseconds.
fn select_list() -> &'static str {
    static SELECT: OnceLock<String> = OnceLock::new();
    SELECT.get_or_init(|| {
        COLUMNS
            .iter()
            .map(|c| match c.kind() {
                Kind::Uuid | Kind::Json => format!("{}::VARCHAR", c.name),
                Kind::Timestamp => format!("epoch_us({})", c.name),
                _ => c.name.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Events with `after < seq <= upto`, in `seq` order.
pub fn read_events(conn: &Connection, after: i64, upto: i64) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM events WHERE {SEQ} > ? AND {SEQ} <= ? ORDER BY {SEQ}",
        select_list()
    ))?;
    let rows = stmt.query_map([after, upto], |r| {
        let mut record = Record {
            seq: 0,
            event: Event::default(),
        };
        let e = &mut record.event;
        for (i, c) in COLUMNS.iter().enumerate() {
            match &c.field {
                Field::Seq => record.seq = r.get(i)?,
                Field::Uuid(a) => (a.set)(
                    e,
                    r.get::<_, Option<String>>(i)?
                        .and_then(|s| Uuid::parse_str(&s).ok()),
                ),
                Field::Timestamp(a) | Field::BigInt(a) => (a.set)(e, r.get(i)?),
                Field::Text(a) | Field::Json(a) => (a.set)(e, r.get(i)?),
                Field::Int(a) => (a.set)(e, r.get(i)?),
                Field::Double(a) => (a.set)(e, r.get(i)?),
                Field::Bool(a) => (a.set)(e, r.get(i)?),
            }
        }
        Ok(record)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::store::Store;

    /// Every field set, with text that is long (stored out of line), short (inline), empty and
    /// not ASCII.
    fn full(n: u16) -> Event {
        let s = |v: &str| Some(format!("{v}-{n}"));
        Event {
            event_id: Uuid::now_v7(),
            ts_us: 1_764_900_000_123_456 + i64::from(n),
            received_at_us: -86_400_000_000,
            site: "shop.example".into(),
            name: "purchase — €".into(),
            source: Some(Source::Server),
            visitor_id: Some(Uuid::new_v4()),
            session_id: Some(Uuid::from_u128(u128::MAX - u128::from(n))),
            user_id: s("user"),
            request_id: s("0123456789abcdef0123456789abcdef"),
            method: Some("POST".into()),
            host: s("shop.example"),
            path: s("/checkout/ünïcode"),
            route: s("/checkout/:id"),
            query: Some(String::new()),
            status: Some(599),
            duration_ms: Some(0.125),
            bytes_out: Some(u64::from(u32::MAX) * 3),
            referrer: s("https://www.facebook.com/some/long/path?with=query"),
            referrer_host: s("facebook.com"),
            channel: s("Social"),
            utm_source: s("fb"),
            utm_medium: s("paid"),
            utm_campaign: s("black friday"),
            utm_term: s("shoes"),
            utm_content: s("a"),
            click_id_type: s("fbclid"),
            click_id: s("IwAR0"),
            user_agent: s("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            browser: s("Firefox"),
            browser_version: s("128.0"),
            os: s("Linux"),
            device_type: s("desktop"),
            is_bot: Some(n.is_multiple_of(2)),
            bot_reason: s("ua:pattern"),
            ip: s("192.0.2.0"),
            country: s("DE"),
            region: s("BE"),
            city: s("Berlin"),
            props: Some(format!(r#"{{"n":{n},"s":"x\"y","a":[1,2]}}"#)),
            hints: Default::default(),
        }
    }

    #[test]
    fn events_read_back_as_they_were_appended() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        // More rows than one DuckDB vector (2,048), full and sparse ones mixed.
        let events: Vec<Event> = (0..2500u16)
            .map(|n| {
                if n.is_multiple_of(3) {
                    Event::now(format!("sparse {n}"), "s", Source::Proxy)
                } else {
                    full(n)
                }
            })
            .collect();
        store.append(7, &events).unwrap();
        let back = read_events(store.connection(), 0, i64::MAX).unwrap();
        assert_eq!(back.len(), events.len());
        for (i, (r, e)) in back.iter().zip(&events).enumerate() {
            assert_eq!(r.seq, 7 + i as i64);
            assert_eq!(&r.event, e, "row {i}");
        }
        // The columns are the table's, in its order, with its types.
        let described: Vec<(String, String, String)> = store
            .connection()
            .prepare("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'events' ORDER BY ordinal_position")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<(String, String, String)> = COLUMNS
            .iter()
            .map(|c| {
                let nullable = if c.nullable { "YES" } else { "NO" };
                (
                    c.name.into(),
                    crate::store::duckdb_type(c.kind()).into(),
                    nullable.into(),
                )
            })
            .collect();
        assert_eq!(described, expected);
    }

    /// A store written by tollgate before its columns came from `COLUMNS` (the table as the
    /// hand-written DDL of that version made it, a row inserted as its appender wrote it)
    /// opens, reads back, and takes new rows.
    #[test]
    fn a_store_from_the_hand_written_schema_opens_reads_and_appends() {
        const OLD_DDL: &str = "CREATE TABLE events (seq BIGINT NOT NULL, event_id UUID NOT NULL, \
            ts TIMESTAMP NOT NULL, received_at TIMESTAMP NOT NULL, site VARCHAR NOT NULL, \
            name VARCHAR NOT NULL, source VARCHAR, visitor_id UUID, session_id UUID, \
            user_id VARCHAR, request_id VARCHAR, method VARCHAR, host VARCHAR, path VARCHAR, \
            route VARCHAR, query VARCHAR, status INTEGER, duration_ms DOUBLE, bytes_out BIGINT, \
            referrer VARCHAR, referrer_host VARCHAR, channel VARCHAR, utm_source VARCHAR, \
            utm_medium VARCHAR, utm_campaign VARCHAR, utm_term VARCHAR, utm_content VARCHAR, \
            click_id_type VARCHAR, click_id VARCHAR, user_agent VARCHAR, browser VARCHAR, \
            browser_version VARCHAR, os VARCHAR, device_type VARCHAR, is_bot BOOLEAN, \
            bot_reason VARCHAR, ip VARCHAR, country VARCHAR, region VARCHAR, city VARCHAR, \
            props JSON)";
        let dir = tempfile::tempdir().unwrap();
        {
            let old = Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
            old.execute_batch(&format!(
                "CREATE TABLE tollgate_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL); \
                 INSERT INTO tollgate_meta VALUES ('schema_version', '1'); {OLD_DDL}; \
                 INSERT INTO events (seq, event_id, ts, received_at, site, name, source, \
                   visitor_id, status, bytes_out, utm_source, is_bot, props) VALUES \
                   (1, '0b6a4c1e-4c8b-4c1a-9d0e-2f1e7a3b5c6d', '2026-11-20 15:30:00.123456', \
                   '2026-11-20 15:30:01', 'shop', 'purchase', 'import', \
                   '3f1e7a3b-5c6d-4c1a-9d0e-0b6a4c1e4c8b', 200, 5000000000, 'facebook', false, \
                   '{{\"amount\":12}}')"
            ))
            .unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let new = full(1);
        store.append(2, std::slice::from_ref(&new)).unwrap();
        let back = read_events(store.connection(), 0, i64::MAX).unwrap();
        assert_eq!(back.len(), 2);
        let old = &back[0].event;
        assert_eq!(
            (old.name.as_str(), old.site.as_str(), old.source),
            ("purchase", "shop", Some(Source::Import))
        );
        assert_eq!(old.ts_us, 1_795_188_600_123_456);
        assert_eq!(
            old.visitor_id.map(|v| v.to_string()).as_deref(),
            Some("3f1e7a3b-5c6d-4c1a-9d0e-0b6a4c1e4c8b")
        );
        assert_eq!(
            (old.status, old.bytes_out, old.is_bot),
            (Some(200), Some(5_000_000_000), Some(false))
        );
        assert_eq!(old.utm_source.as_deref(), Some("facebook"));
        assert_eq!(old.props.as_deref(), Some(r#"{"amount":12}"#));
        assert_eq!((back[1].seq, &back[1].event), (2, &new));
    }
}
