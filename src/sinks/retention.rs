//! Retention: delete local events older than `store.retention_days`, but only those every
//! configured sink has shipped.

use crate::config::StoreSettings;
use crate::event::columns::{SEQ, TS};
use crate::event::now_us;
use crate::store::StoreError;
use duckdb::types::{TimeUnit, Value};
use duckdb::{params, Connection};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Events deleted.
    pub deleted: u64,
    /// Events past retention kept because a sink has not shipped them yet.
    pub held_for_sinks: u64,
}

/// Delete events whose `ts` is before `now - retention` and whose `seq` every sink in `sinks` has
/// shipped, in one transaction. Records the highest deleted `seq`
/// so that it is never handed out again.
pub fn prune(
    conn: &mut Connection,
    retention: Duration,
    sinks: &[String],
    now_us: i64,
) -> Result<PruneReport, StoreError> {
    let cutoff = Value::Timestamp(TimeUnit::Microsecond, now_us - retention.as_micros() as i64);
    // Sessions are rebuilt below: no fold may run beside it.
    let lock = crate::store::sessions_lock(conn)?;
    let _held = crate::store::hold_sessions(&lock);
    let tx = conn.transaction()?;
    // A configured sink with no offset yet has shipped nothing.
    let mut floor = i64::MAX;
    for s in sinks {
        let shipped: Option<i64> = tx
            .query_row(
                "SELECT shipped_seq FROM sink_offsets WHERE sink = ?",
                [s],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                duckdb::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        floor = floor.min(shipped.unwrap_or(0));
    }
    let (due, max_due): (i64, Option<i64>) = tx.query_row(
        &format!("SELECT count(*), max({SEQ}) FROM events WHERE {TS} < ? AND {SEQ} <= ?"),
        params![cutoff.clone(), floor],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let old: i64 = tx.query_row(
        &format!("SELECT count(*) FROM events WHERE {TS} < ?"),
        params![cutoff.clone()],
        |r| r.get(0),
    )?;
    if due > 0 {
        // Their deduplication keys are left to their own horizon (`store.dedup_days`).
        // The sessions that lose page views are rebuilt from what is left (the retention
        // cutoff can fall inside a session).
        let cond = format!("{TS} < ? AND {SEQ} <= {floor}");
        crate::store::mark_sessions(&tx, &cond, &cutoff)?;
        tx.execute(
            &format!("DELETE FROM events WHERE {TS} < ? AND {SEQ} <= ?"),
            params![cutoff, floor],
        )?;
        crate::store::rebuild_marked_sessions(&tx)?;
        if let Some(m) = max_due {
            tx.execute(
                "INSERT OR REPLACE INTO tollgate_meta
                 SELECT 'seq_floor', greatest(?, coalesce(
                     (SELECT max(value::BIGINT) FROM tollgate_meta WHERE key = 'seq_floor'), 0))::VARCHAR",
                [m],
            )?;
        }
    }
    tx.commit()?;
    Ok(PruneReport {
        deleted: due as u64,
        held_for_sinks: (old - due) as u64,
    })
}

/// A thread that prunes at start-up and then every `prune_interval`, until `stop`.
pub fn spawn_retention(
    mut conn: Connection,
    budget: std::sync::Arc<crate::store::Budget>,
    store: StoreSettings,
    sinks: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    let Some(retention) = store.retention else {
        return Ok(None);
    };
    std::thread::Builder::new()
        .name("tollgate-retention".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    // A pass may rebuild many sessions: it borrows the whole memory limit.
                    let pass = budget
                        .lend()
                        .and_then(|_whole| prune(&mut conn, retention, &sinks, now_us()));
                    match pass {
                        Ok(r) if r.deleted > 0 || r.held_for_sinks > 0 => info!(
                            deleted = r.deleted,
                            held_for_sinks = r.held_for_sinks,
                            "Retention pass."
                        ),
                        Ok(_) => {}
                        Err(error) => warn!(%error, "Retention pass failed; will try again."),
                    }
                    next = Instant::now() + store.prune_interval;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Source};
    use crate::store::Store;

    /// A session the cutoff falls inside keeps a row rebuilt from its page views left; a
    /// session wholly before the cutoff loses its row.
    #[test]
    fn pruning_rebuilds_the_sessions_it_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let now = now_us();
        let hour = 3_600_000_000;
        let (cut, gone) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        // `cut`: page views 50, 49 and 47 hours ago and one an hour ago; `gone`: 60 hours ago.
        let views: Vec<Event> = [(cut, 50), (cut, 49), (cut, 47), (cut, 1), (gone, 60)]
            .into_iter()
            .enumerate()
            .map(|(i, (session, hours_ago))| {
                let mut e = Event::now("page_view", "s", Source::Proxy);
                e.ts_us = now - hours_ago * hour;
                e.session_id = Some(session);
                e.visitor_id = Some(uuid::Uuid::from_u128(7));
                e.path = Some(format!("/{i}"));
                e
            })
            .collect();
        store.append(1, &views).unwrap();
        let mut conn = store.reader().unwrap();
        let r = prune(&mut conn, Duration::from_secs(48 * 3600), &[], now).unwrap();
        assert_eq!(r.deleted, 3);
        let rows: Vec<(String, i64, i64, String, String)> = conn
            .prepare(
                "SELECT session_id::VARCHAR, epoch_us(first_ts), pageviews, entry_path, \
                 exit_path FROM sessions",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            [(
                cut.to_string(),
                now - 47 * hour,
                2,
                "/2".into(),
                "/3".into()
            )]
        );
    }
}
