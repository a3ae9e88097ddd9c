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
/// [`super::EVENT_COLUMNS`] order.
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
