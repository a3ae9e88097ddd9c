//! Deduplication keys: the ids of events whose sender chose them ([`Hints::keyed`]: a
//! `messageId`, an `event_id`, a CSV row's content), kept so that a resend is not written
//! twice. Events whose id tollgate minted are new by construction and never listed.
//!
//! The keys are bounded twice: by age (`store.dedup_days`) and by count (`store.dedup_max_keys`,
//! the newest kept). Within those bounds a resend is caught; a key past either is forgotten, and
//! its event, sent again, is written again.
//!
//! The writer checks keys against [`Keys`], a set in memory, and records new ones in
//! `event_keys(event_id, first_seen)` in the same transaction as their events: the table is
//! what survives a restart, and the set is loaded from it on first use. (A primary-key index in
//! DuckDB did the same work at about 9 µs a key, rewrote itself at every checkpoint, and could
//! not be evicted from DuckDB's memory: BENCHMARKS.md, issue 18.)
//!
//! [`Hints::keyed`]: crate::event::Hints::keyed

use super::{arrow_field, StoreError};
use crate::event::{Kind, EVENT_ID};
use duckdb::arrow::array::{ArrayRef, FixedSizeBinaryArray, TimestampMicrosecondArray};
use duckdb::arrow::datatypes::Schema;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::types::{TimeUnit, Value};
use duckdb::Connection;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The table's DDL. No primary key: [`Keys`] is what keeps a key from being recorded twice.
const DDL: &str = "CREATE TABLE IF NOT EXISTS event_keys (
    event_id UUID NOT NULL,
    first_seen TIMESTAMP NOT NULL
);";

/// Create `event_keys`, or bring one from schema version 1 (the ids alone, a primary key, kept
/// forever) to this shape. Its keys count as first seen `now_us`, so each is kept one more
/// horizon.
pub(super) fn migrate(conn: &Connection, now_us: i64) -> Result<(), StoreError> {
    let columns: Vec<String> = conn
        .prepare(
            "SELECT column_name FROM duckdb_columns()
             WHERE table_name = 'event_keys' AND schema_name = 'main' AND NOT internal",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if columns == [EVENT_ID] {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(&DDL.replace("event_keys", "event_keys_v2"))?;
        tx.execute(
            "INSERT INTO event_keys_v2 SELECT event_id, ? FROM event_keys",
            [timestamp(now_us)],
        )?;
        tx.execute_batch("DROP TABLE event_keys; ALTER TABLE event_keys_v2 RENAME TO event_keys;")?;
        tx.commit()?;
    }
    conn.execute_batch(DDL)?;
    Ok(())
}

/// How long and how many keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// `store.dedup_days`.
    pub horizon: Duration,
    /// `store.dedup_max_keys`.
    pub max_keys: usize,
}

/// The keys within their [`Bounds`], as the store has committed them. `None` until first
/// needed: `tollgate query` and `forget` never load them.
#[derive(Debug, Default)]
pub(super) struct Keys {
    loaded: Option<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    set: HashSet<Uuid>,
    /// The same keys, oldest first, with when each was first seen.
    order: VecDeque<(i64, Uuid)>,
}

impl Keys {
    /// Which of `ids` are not among the keys (loading them first if need be). Records nothing:
    /// see [`Keys::record`]. A key twice in `ids` is the caller's to drop.
    pub(super) fn fresh(
        &mut self,
        conn: &Connection,
        bounds: Bounds,
        ids: &[Uuid],
        now_us: i64,
    ) -> Result<HashSet<Uuid>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let loaded = match &mut self.loaded {
            Some(l) => l,
            None => self.loaded.insert(load(conn, bounds, now_us)?),
        };
        let mut fresh = HashSet::with_capacity(ids.len());
        for id in ids {
            if !loaded.set.contains(id) {
                fresh.insert(*id);
            }
        }
        Ok(fresh)
    }

    /// Keys `fresh`, first seen `now_us`, were committed: remember them, and let go of the
    /// oldest past `bounds`.
    pub(super) fn record(&mut self, fresh: &HashSet<Uuid>, bounds: Bounds, now_us: i64) {
        if let Some(loaded) = &mut self.loaded {
            for id in fresh {
                if loaded.set.insert(*id) {
                    loaded.order.push_back((now_us, *id));
                }
            }
            loaded.trim(bounds, now_us);
        }
    }

    /// Let go of the keys past `bounds`, and return the `first_seen` below which the table
    /// holds no key still kept (for [`delete_before`]).
    pub(super) fn floor(&mut self, bounds: Bounds, now_us: i64) -> i64 {
        match &mut self.loaded {
            Some(l) => {
                l.trim(bounds, now_us);
                // Every committed key since the load is in the set: with none left, none of
                // the table's is kept.
                l.order.front().map_or(now_us + 1, |&(seen, _)| seen)
            }
            None => cutoff(bounds, now_us),
        }
    }

    /// Forget what is loaded, so the next check loads the table again: after a failed commit
    /// or a panic, when the set may not match what was committed.
    pub(super) fn reset(&mut self) {
        self.loaded = None;
    }

    /// How many keys are held in memory.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.loaded.as_ref().map_or(0, |l| l.set.len())
    }
}

impl Loaded {
    /// Drop the keys first seen before the horizon, then the oldest over `max_keys`.
    fn trim(&mut self, bounds: Bounds, now_us: i64) {
        let oldest = cutoff(bounds, now_us);
        while let Some(&(seen, id)) = self.order.front() {
            if seen >= oldest && self.order.len() <= bounds.max_keys {
                break;
            }
            self.order.pop_front();
            self.set.remove(&id);
        }
    }
}

/// The oldest `first_seen` within the horizon.
fn cutoff(bounds: Bounds, now_us: i64) -> i64 {
    now_us.saturating_sub(bounds.horizon.as_micros() as i64)
}

/// The table's keys within `bounds`, the newest `max_keys` of those within the horizon.
fn load(conn: &Connection, bounds: Bounds, now_us: i64) -> Result<Loaded, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT event_id::VARCHAR, epoch_us(first_seen) FROM event_keys
         WHERE first_seen >= ? ORDER BY first_seen DESC LIMIT ?",
    )?;
    let rows = stmt.query_map(
        duckdb::params![timestamp(cutoff(bounds, now_us)), bounds.max_keys as i64],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )?;
    let mut loaded = Loaded::default();
    for row in rows {
        let (id, seen) = row?;
        if let Ok(id) = Uuid::parse_str(&id) {
            if loaded.set.insert(id) {
                loaded.order.push_front((seen, id));
            }
        }
    }
    Ok(loaded)
}

/// Append keys `fresh`, first seen `now_us`, to `event_keys`, in the caller's transaction.
pub(super) fn append(
    conn: &Connection,
    fresh: &HashSet<Uuid>,
    now_us: i64,
) -> Result<(), StoreError> {
    if fresh.is_empty() {
        return Ok(());
    }
    let ids: ArrayRef = Arc::new(FixedSizeBinaryArray::try_from_iter(
        fresh.iter().map(|u| u.into_bytes()),
    )?);
    let seen: ArrayRef = Arc::new(TimestampMicrosecondArray::from_iter_values(
        std::iter::repeat_n(now_us, fresh.len()),
    ));
    let schema = Schema::new(vec![
        arrow_field(EVENT_ID, Kind::Uuid, false),
        arrow_field("first_seen", Kind::Timestamp, false),
    ]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![ids, seen])?;
    let mut app = conn.appender("event_keys")?;
    app.append_record_batch(batch)?;
    app.flush()?;
    Ok(())
}

/// Delete the table's keys first seen before `first_seen`; returns how many.
pub(super) fn delete_before(conn: &Connection, first_seen: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM event_keys WHERE first_seen < ?",
        [timestamp(first_seen)],
    )?)
}

fn timestamp(us: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, us)
}

#[cfg(test)]
mod tests {
    use crate::event::{now_us, Event, Source};
    use crate::store::{Store, StoreOptions, DB_FILE};
    use duckdb::Connection;

    const DAY_US: i64 = 86_400_000_000;

    fn event(keyed: bool) -> Event {
        let mut e = Event::now("purchase", "shop", Source::Server);
        e.hints.keyed = keyed;
        e
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.connection().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A keyed event sent again is not written again, within one submission or across two;
    /// an event whose id tollgate minted is written without a key.
    #[test]
    fn keyed_events_are_written_once_and_minted_ones_keep_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (a, b, minted) = (event(true), event(true), event(false));
        let first = [a.clone(), a.clone(), minted.clone()];
        assert_eq!(
            store
                .append_new(1, &[&first, std::slice::from_ref(&b)])
                .unwrap(),
            [2, 1]
        );
        assert_eq!(store.append_new(4, &[&[a, b, event(false)]]).unwrap(), [1]);
        assert_eq!(count(&store, "SELECT count(*) FROM events"), 4);
        assert_eq!(count(&store, "SELECT count(*) FROM event_keys"), 2);
        let keyed_minted: i64 = store
            .connection()
            .query_row(
                "SELECT count(*) FROM event_keys WHERE event_id = ?",
                [minted.event_id.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(keyed_minted, 0);
    }

    /// Keys are pruned once they are older than the horizon: until then a resend is refused,
    /// after it the same key is new again.
    #[test]
    fn keys_last_as_long_as_the_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let e = event(true);
        assert_eq!(
            store.append_new(1, &[std::slice::from_ref(&e)]).unwrap(),
            [1]
        );
        assert_eq!(store.prune_keys(now_us() + 6 * DAY_US).unwrap(), 0);
        assert_eq!(
            store.append_new(2, &[std::slice::from_ref(&e)]).unwrap(),
            [0]
        );
        assert_eq!(store.prune_keys(now_us() + 8 * DAY_US).unwrap(), 1);
        assert_eq!(store.append_new(2, &[&[e]]).unwrap(), [1]);
    }

    /// A store from before the horizon (schema version 1: `event_keys` held ids alone) opens
    /// with its keys kept, as first seen now, and still refuses their resends.
    #[test]
    fn keys_from_before_the_horizon_are_kept_one_more_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let e = event(true);
        {
            let old = Connection::open(dir.path().join(DB_FILE)).unwrap();
            old.execute_batch(
                "CREATE TABLE tollgate_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
                 INSERT INTO tollgate_meta VALUES ('schema_version', '1');
                 CREATE TABLE event_keys (event_id UUID PRIMARY KEY);",
            )
            .unwrap();
            old.execute(
                "INSERT INTO event_keys VALUES (?)",
                [e.event_id.to_string()],
            )
            .unwrap();
        }
        let before = now_us();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.append_new(1, &[std::slice::from_ref(&e)]).unwrap(),
            [0]
        );
        let first_seen: i64 = store
            .connection()
            .query_row("SELECT epoch_us(first_seen) FROM event_keys", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(first_seen >= before, "{first_seen} < {before}");
        assert_eq!(
            count(
                &store,
                "SELECT value::INT FROM tollgate_meta WHERE key = 'schema_version'"
            ),
            i64::from(crate::event::SCHEMA_VERSION)
        );
        drop(store);
        // And opening it again changes nothing.
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.append_new(1, &[&[e]]).unwrap(), [0]);
        assert_eq!(count(&store, "SELECT count(*) FROM event_keys"), 1);
    }

    /// At most `dedup_max_keys` keys are kept, the newest: the oldest are forgotten, in memory
    /// at once, in the table at the next prune, and after a restart too.
    #[test]
    fn keys_are_bounded_in_count_the_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            dedup_max_keys: 3,
            ..StoreOptions::default()
        };
        let mut store = Store::open_with(dir.path(), &options).unwrap();
        let old: Vec<Event> = (0..2).map(|_| event(true)).collect();
        assert_eq!(store.append_new(1, &[&old]).unwrap(), [2]);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let new: Vec<Event> = (0..3).map(|_| event(true)).collect();
        assert_eq!(store.append_new(3, &[&new]).unwrap(), [3]);
        assert_eq!(store.keys.len(), 3);
        assert_eq!(store.append_new(6, &[&new]).unwrap(), [0]);
        assert_eq!(store.prune_keys(now_us()).unwrap(), 2);
        assert_eq!(count(&store, "SELECT count(*) FROM event_keys"), 3);
        drop(store);
        let mut store = Store::open_with(dir.path(), &options).unwrap();
        assert_eq!(store.append_new(6, &[&new]).unwrap(), [0]);
        assert_eq!(
            store.append_new(6, &[&old]).unwrap(),
            [2],
            "the oldest were forgotten"
        );
    }

    /// The keys survive a restart: they are loaded from the table, within the horizon.
    #[test]
    fn keys_are_loaded_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let e = event(true);
        {
            let mut store = Store::open(dir.path()).unwrap();
            assert_eq!(
                store.append_new(1, &[std::slice::from_ref(&e)]).unwrap(),
                [1]
            );
        }
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.append_new(2, &[&[e.clone(), event(false)]]).unwrap(),
            [1]
        );
        assert_eq!(store.keys.len(), 1);
    }
}
