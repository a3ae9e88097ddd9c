//! Reading stored events back as [`Event`]s, in `seq` order: what the sinks ship.

use super::StoreError;
use crate::event::{Event, Source};
use duckdb::Connection;
use uuid::Uuid;

/// One stored event and its `seq`.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: i64,
    pub event: Event,
}

/// The select list that turns a row of `events` back into an [`Event`], in
/// [`crate::event::COLUMNS`] order.
const SELECT: &str = "seq, event_id::VARCHAR, epoch_us(ts), epoch_us(received_at), site, name, \
    source, visitor_id::VARCHAR, session_id::VARCHAR, user_id, request_id, method, host, path, \
    route, query, status, duration_ms, bytes_out, referrer, referrer_host, channel, utm_source, \
    utm_medium, utm_campaign, utm_term, utm_content, click_id_type, click_id, user_agent, \
    browser, browser_version, os, device_type, is_bot, bot_reason, ip, country, region, city, \
    props::VARCHAR";

/// Events with `after < seq <= upto`, in `seq` order.
pub fn read_events(conn: &Connection, after: i64, upto: i64) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SELECT} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq"
    ))?;
    let rows = stmt.query_map([after, upto], |r| {
        let uuid = |i: usize| -> duckdb::Result<Option<Uuid>> {
            Ok(r.get::<_, Option<String>>(i)?
                .and_then(|s| Uuid::parse_str(&s).ok()))
        };
        Ok(Record {
            seq: r.get(0)?,
            event: Event {
                event_id: uuid(1)?.unwrap_or_default(),
                ts_us: r.get(2)?,
                received_at_us: r.get(3)?,
                site: r.get(4)?,
                name: r.get(5)?,
                source: r
                    .get::<_, Option<String>>(6)?
                    .and_then(|s| Source::parse(&s)),
                visitor_id: uuid(7)?,
                session_id: uuid(8)?,
                user_id: r.get(9)?,
                request_id: r.get(10)?,
                method: r.get(11)?,
                host: r.get(12)?,
                path: r.get(13)?,
                route: r.get(14)?,
                query: r.get(15)?,
                status: r.get::<_, Option<i32>>(16)?.map(|s| s as u16),
                duration_ms: r.get(17)?,
                bytes_out: r.get::<_, Option<i64>>(18)?.map(|b| b as u64),
                referrer: r.get(19)?,
                referrer_host: r.get(20)?,
                channel: r.get(21)?,
                utm_source: r.get(22)?,
                utm_medium: r.get(23)?,
                utm_campaign: r.get(24)?,
                utm_term: r.get(25)?,
                utm_content: r.get(26)?,
                click_id_type: r.get(27)?,
                click_id: r.get(28)?,
                user_agent: r.get(29)?,
                browser: r.get(30)?,
                browser_version: r.get(31)?,
                os: r.get(32)?,
                device_type: r.get(33)?,
                is_bot: r.get(34)?,
                bot_reason: r.get(35)?,
                ip: r.get(36)?,
                country: r.get(37)?,
                region: r.get(38)?,
                city: r.get(39)?,
                props: r.get(40)?,
                hints: Default::default(),
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::COLUMNS;
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
                    crate::store::duckdb_type(c.get).into(),
                    nullable.into(),
                )
            })
            .collect();
        assert_eq!(described, expected);
    }
}
