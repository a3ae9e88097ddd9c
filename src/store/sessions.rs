//! The `sessions` table: one row per session, derived from its page views and kept up to date
//! in the same transaction that commits them, so that reports about visits read one row per
//! session instead of every page view (issue 18: on 10M events that is 1.3M rows instead of
//! 4.7M, and no per-query grouping of UUIDs).
//!
//! A row holds the session's first and last page view times, its page view count, its entry
//! and exit paths, and the [`VISIT`] columns of its first page view. Every one of those
//! merges (`min`, `max`, `sum`, first/last by time), so page views are folded into the rows
//! they belong to without reading older events: [`fold`] groups the page views of a range of
//! `seq` into one partial row per session and merges those into `sessions` with one `MERGE`.
//! The same fold keeps `pageview_hours` (`rollups.rs`) and `persons` (`persons.rs`).
//!
//! `tollgate_meta`'s `sessions_seq` is the watermark: every page view with a `seq` up to it
//! is folded. Ingested events are folded in the transaction that commits them, unless the
//! writer holds staged events with lower `seq`s (then the fold stops short of those, and the
//! ingested page views wait for them); the proxy's events the writer staged, right after their
//! commit, in a transaction of their own (`Store::commit_staged`, then
//! `Store::fold_pending`); a store opened after a crash folds
//! what is past the watermark first. Deletions (`forget`, retention) rebuild the sessions they
//! touched from the events left up to the watermark: the page views after it are folded by
//! the writer, once, and those a deletion removed are not there to fold.
//!
//! Page views without a session id (opt-out requests) have no row.
//!
//! Transactions that change `sessions` run one at a time per database ([`lock_of`]): DuckDB
//! lets one transaction delete a row that another is updating, without a conflict, so a
//! deletion's rebuild beside a fold would silently drop the fold's update (and the watermark
//! would say those page views were folded).

use super::schema::column_def;
use super::StoreError;
use crate::event::columns::{NAME, PAGE_VIEW, PATH, SEQ, SESSION_ID, TS, VISIT};
use crate::event::{Event, Kind, COLUMNS};
use duckdb::{Connection, ToSql};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use tracing::info;

/// Events per back-fill transaction when an older store is migrated.
const BACKFILL_CHUNK: i64 = 1_000_000;

/// The `tollgate_meta` key of the watermark.
const WATERMARK: &str = "sessions_seq";

/// The watermark as a SQL expression: the `seq` up to which events are folded into
/// `sessions`, `pageview_hours` and `persons`, read in the statement's own snapshot.
pub const FOLDED_THROUGH: &str =
    "(SELECT max(value::BIGINT) FROM tollgate_meta WHERE key = 'sessions_seq')";

/// The columns of `sessions` before the [`VISIT`] ones: `(name, kind, nullable)`.
const OWN: [(&str, Kind, bool); 6] = [
    (SESSION_ID, Kind::Uuid, false),
    ("first_ts", Kind::Timestamp, false),
    ("last_ts", Kind::Timestamp, false),
    ("pageviews", Kind::BigInt, false),
    ("entry_path", Kind::Text, true),
    ("exit_path", Kind::Text, true),
];

/// `CREATE TABLE IF NOT EXISTS sessions`.
fn ddl() -> String {
    let mut cols: Vec<String> = OWN
        .iter()
        .map(|(name, kind, nullable)| column_def(name, *kind, *nullable))
        .collect();
    for name in VISIT {
        let kind = COLUMNS
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.kind())
            .expect("every VISIT name is a column (a columns.rs test checks)");
        cols.push(column_def(name, kind, true));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS sessions (\n  {}\n);",
        cols.join(",\n  ")
    )
}

/// Create the `sessions` table if missing. Returns the watermark, set to the last `seq`
/// stored for a new table (or one from before the watermark existed).
pub(super) fn create(conn: &Connection) -> Result<i64, StoreError> {
    conn.execute_batch(&ddl())?;
    let found: Option<i64> = conn.query_row(
        "SELECT max(value::BIGINT) FROM tollgate_meta WHERE key = ?",
        [WATERMARK],
        |r| r.get(0),
    )?;
    match found {
        Some(w) => Ok(w),
        None => {
            let top = max_seq(conn)?;
            set_watermark(conn, top)?;
            Ok(top)
        }
    }
}

/// The highest `seq` in `events`, 0 for none.
fn max_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        &format!("SELECT coalesce(max({SEQ}), 0) FROM events"),
        [],
        |r| r.get(0),
    )?)
}

fn set_watermark(conn: &Connection, seq: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO tollgate_meta VALUES (?, ?)",
        [WATERMARK, &seq.to_string()],
    )?;
    Ok(())
}

/// The lock that the transactions changing `sessions` in the database `conn` belongs to hold
/// from before they begin until they commit: the writer's folds, `forget` and retention. One
/// per database file in this process (no other process can open the file while tollgate
/// holds it). A fold waits for a deletion and the other way round, so each one's snapshot
/// has the other's changes.
pub(crate) fn lock_of(conn: &Connection) -> Result<Arc<Mutex<()>>, StoreError> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let file: String = conn.query_row(
        "SELECT file FROM pragma_database_list WHERE name = current_database()",
        [],
        |r| r.get(0),
    )?;
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(locks.entry(file).or_default().clone())
}

/// Hold `lock` (from [`lock_of`]); a holder that panicked left nothing half-done in it, as its
/// transaction rolled back.
pub(crate) fn hold(lock: &Mutex<()>) -> MutexGuard<'_, ()> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `events` hold a page view (`sessions` takes those with a session id,
/// `pageview_hours` every one).
pub(super) fn has_views<'a>(mut events: impl Iterator<Item = &'a Event>) -> bool {
    events.any(|e| e.name == PAGE_VIEW)
}

/// Whether `events` feed a derived table: something for [`fold`] to do. A page view does, and
/// so does an event with both a visitor and a user id (`persons`).
pub(super) fn feeds_derived<'a>(mut events: impl Iterator<Item = &'a Event>) -> bool {
    events.any(|e| e.name == PAGE_VIEW || (e.visitor_id.is_some() && e.user_id.is_some()))
}

/// Fold the events with `seq` in `(after, through]` into `sessions`, `pageview_hours` and
/// `persons`, and move the watermark to `through`, in the caller's transaction.
pub(super) fn fold(conn: &Connection, after: i64, through: i64) -> Result<(), StoreError> {
    let later = "last_ts = greatest(s.last_ts, b.last_ts), \
                 pageviews = s.pageviews + b.pageviews, \
                 exit_path = CASE WHEN b.last_ts >= s.last_ts THEN b.exit_path ELSE s.exit_path END";
    let mut earlier = String::from("first_ts = b.first_ts, entry_path = b.entry_path");
    for c in VISIT {
        earlier += &format!(", {c} = b.{c}");
    }
    // A session already stored gets its later page views added (the common case: three
    // columns); one whose stored first page view is later than the new ones (a late event)
    // gets its first-page-view columns replaced too; a new one is inserted. The partial rows
    // are merged straight from their query, with a `LIMIT` that cuts nothing (there are no
    // more sessions than events in the range) but tells DuckDB how few they can be: without
    // it, its estimate (a fifth of all events) made it build the merge's hash table on the
    // whole of `sessions` (0.2-0.6 s a fold on the 10M-event store, against 0.03 s). Staging
    // them in a temporary table instead cost the writer about a tenth of its time
    // (BENCHMARKS.md).
    conn.execute_batch(&format!(
        "MERGE INTO sessions s USING ({partials} LIMIT {most}) b \
           ON s.{SESSION_ID} = b.{SESSION_ID} \
           WHEN MATCHED AND b.first_ts >= s.first_ts THEN UPDATE SET {later} \
           WHEN MATCHED THEN UPDATE SET {earlier}, {later} \
           WHEN NOT MATCHED THEN INSERT BY NAME;",
        partials = partials(&format!("{SEQ} > {after} AND {SEQ} <= {through}")),
        most = through.saturating_sub(after).max(0),
    ))?;
    super::rollups::fold(conn, after, through)?;
    super::persons::fold(conn, after, through)?;
    super::sketches::fold(conn, after, through)?;
    set_watermark(conn, through)
}

/// Fold what is past the watermark `after` (a crash left it behind); returns the new one.
pub(super) fn catch_up(conn: &Connection, after: i64) -> Result<i64, StoreError> {
    let top = max_seq(conn)?;
    if top > after {
        info!(
            from = after,
            to = top,
            "Folding the page views past the sessions watermark."
        );
        fold(conn, after, top)?;
    }
    Ok(top.max(after))
}

/// One partial row per session, over the page views among the events that `cond` selects.
/// The first page view is found by its `seq` (`arg_min(seq, ts)`), and its path and [`VISIT`]
/// columns are read by joining that one event back: every column from the same page view
/// when two share a time, without carrying eighteen columns through the aggregation as one
/// struct (`arg_min_null(struct_pack(…), ts)`, five times the cost of the rest of the
/// aggregate; the store bench's commit of 5,000 first visits took 15 % less CPU,
/// `BENCHMARKS.md`).
fn partials(cond: &str) -> String {
    let mut sql = format!(
        "SELECT p.{SESSION_ID}, p.first_ts, p.last_ts, p.pageviews, e.{PATH} AS entry_path, \
         p.exit_path"
    );
    for c in VISIT {
        sql += &format!(", e.{c}");
    }
    sql += &format!(
        " FROM (SELECT {SESSION_ID}, min({TS}) AS first_ts, max({TS}) AS last_ts, \
         count(*) AS pageviews, arg_max_null({PATH}, {TS}) AS exit_path, \
         arg_min({SEQ}, {TS}) AS first_seq \
         FROM events WHERE {NAME} = '{PAGE_VIEW}' AND {SESSION_ID} IS NOT NULL AND ({cond}) \
         GROUP BY {SESSION_ID}) p JOIN events e ON e.{SEQ} = p.first_seq"
    );
    sql
}

/// Note the sessions of the events that `cond` (with `value` bound) selects, before they are
/// deleted; [`rebuild_marked`] then rebuilds those sessions from the events left.
pub(crate) fn mark(conn: &Connection, cond: &str, value: &dyn ToSql) -> Result<(), StoreError> {
    super::rollups::mark(conn, cond, value)?;
    super::persons::mark(conn, cond, value)?;
    // After `rollups::mark`: it reads the hours that one noted.
    super::sketches::mark(conn)?;
    super::latencies::mark(conn, cond, value)?;
    conn.execute(
        &format!(
            "CREATE OR REPLACE TEMP TABLE session_marked AS SELECT DISTINCT {SESSION_ID} \
             FROM events WHERE {SESSION_ID} IS NOT NULL AND ({cond})"
        ),
        [value],
    )?;
    super::sketches::mark_sessions(conn)?;
    Ok(())
}

/// Rebuild the sessions [`mark`] noted from the events that are left up to the watermark (a
/// session with no page view left goes).
pub(crate) fn rebuild_marked(conn: &Connection) -> Result<(), StoreError> {
    super::rollups::recount_marked(conn, FOLDED_THROUGH)?;
    super::persons::restitch_marked(conn, FOLDED_THROUGH)?;
    let marked = format!("{SESSION_ID} IN (SELECT {SESSION_ID} FROM session_marked)");
    let folded = format!("{marked} AND {SEQ} <= {FOLDED_THROUGH}");
    conn.execute_batch(&format!(
        "DELETE FROM sessions WHERE {marked};
         INSERT INTO sessions BY NAME {partials};
         DROP TABLE session_marked;",
        partials = partials(&folded),
    ))?;
    Ok(())
}

/// Build `sessions` from every stored event, for a store written before it existed: in
/// transactions of [`BACKFILL_CHUNK`] events, with progress on the console. Starts over from
/// an empty table, so an interrupted back-fill is simply run again at the next start.
pub(super) fn backfill(conn: &Connection) -> Result<i64, StoreError> {
    conn.execute_batch(
        "DROP TABLE IF EXISTS sessions; DELETE FROM pageview_hours; DELETE FROM persons;",
    )?;
    conn.execute("DELETE FROM tollgate_meta WHERE key = ?", [WATERMARK])?;
    create(conn)?;
    let (lo, hi, n): (Option<i64>, Option<i64>, i64) = conn.query_row(
        &format!("SELECT min({SEQ}), max({SEQ}), count(*) FROM events"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(0);
    };
    info!(
        events = n,
        "Building the sessions table from the stored events (a one-time migration)."
    );
    let started = std::time::Instant::now();
    let mut from = lo;
    while from <= hi {
        let to = from.saturating_add(BACKFILL_CHUNK).min(hi + 1);
        conn.execute_batch("BEGIN TRANSACTION")?;
        match fold(conn, from - 1, to - 1) {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        let done = (to - lo) as f64 / (hi + 1 - lo) as f64;
        info!(
            percent = format!("{:.0}", done * 100.0),
            seconds = started.elapsed().as_secs(),
            "Building the sessions table."
        );
        from = to;
    }
    let sessions: i64 = conn.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))?;
    info!(
        sessions,
        seconds = started.elapsed().as_secs(),
        "The sessions table is built."
    );
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use crate::event::{Event, Source};
    use crate::store::{Store, Subject};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    const MIN_US: i64 = 60_000_000;
    const T0: i64 = 1_780_000_000_000_000;

    /// A session as the raw events say: `(visitor, first us, last us, page views, entry,
    /// exit, utm_source of the first page view)`.
    type Row = (
        String,
        i64,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
    );

    /// A small known workload: 40 sessions of 1 to 5 page views (with API calls between them,
    /// and page views of opt-out requests, which have no session), in an order that is not
    /// time order, so that a session's first page view often arrives after its later ones.
    fn workload() -> Vec<Event> {
        let mut out = Vec::new();
        for s in 0..40u128 {
            let (visitor, session) = (Uuid::from_u128(1000 + s % 30), Uuid::from_u128(s + 1));
            let start = T0 + (s as i64) * 7 * MIN_US;
            for k in 0..(1 + s % 5) as i64 {
                let mut e = Event::now("page_view", "shop", Source::Proxy);
                e.ts_us = start + k * 3 * MIN_US + (s as i64 % 3) * 1_000;
                e.visitor_id = Some(visitor);
                e.session_id = Some(session);
                e.path = Some(format!("/p/{}", (s as i64 * 7 + k * 3) % 11));
                e.utm_source = (k == 0 && s % 4 == 0).then(|| "facebook".to_string());
                out.push(e);
                let mut call = Event::now("api_call", "shop", Source::Proxy);
                call.ts_us = e_ts(&out) - 5;
                call.visitor_id = Some(visitor);
                call.session_id = Some(session);
                out.push(call);
            }
        }
        for k in 0..5 {
            let mut e = Event::now("page_view", "shop", Source::Proxy);
            e.ts_us = T0 + k * MIN_US;
            out.push(e);
        }
        // A fixed shuffle: reverse every block of 7.
        out.chunks(7)
            .rev()
            .flat_map(|c| c.iter().rev().cloned())
            .collect()
    }

    fn e_ts(out: &[Event]) -> i64 {
        out.last().map_or(0, |e| e.ts_us)
    }

    /// The sessions of `events` computed here, from the raw events.
    fn expected(events: &[Event]) -> BTreeMap<String, Row> {
        let mut by: BTreeMap<Uuid, Vec<&Event>> = BTreeMap::new();
        for e in events.iter().filter(|e| e.name == "page_view") {
            if let Some(s) = e.session_id {
                by.entry(s).or_default().push(e);
            }
        }
        by.into_iter()
            .map(|(s, mut views)| {
                views.sort_by_key(|e| e.ts_us);
                let (first, last) = (views[0], views[views.len() - 1]);
                let row = (
                    first.visitor_id.unwrap().to_string(),
                    first.ts_us,
                    last.ts_us,
                    views.len() as i64,
                    first.path.clone(),
                    last.path.clone(),
                    first.utm_source.clone(),
                );
                (s.to_string(), row)
            })
            .collect()
    }

    /// `store` made a store of schema `version`, from before `table` existed, and opened again
    /// from `dir` (which migrates it).
    fn reopened_as(store: Store, dir: &std::path::Path, table: &str, version: u32) -> Store {
        store
            .connection()
            .execute_batch(&format!(
                "DROP TABLE {table}; \
                 UPDATE tollgate_meta SET value = '{version}' WHERE key = 'schema_version'"
            ))
            .unwrap();
        drop(store);
        Store::open(dir).unwrap()
    }

    /// The rows of `sql` on `store`, as `(key, value)` pairs by `row`.
    fn keyed<K: Ord, V>(
        store: &Store,
        sql: &str,
        row: impl FnMut(&duckdb::Row<'_>) -> duckdb::Result<(K, V)>,
    ) -> BTreeMap<K, V> {
        let mut st = store.connection().prepare(sql).unwrap();
        st.query_map([], row).unwrap().map(Result::unwrap).collect()
    }

    fn stored(store: &Store) -> BTreeMap<String, Row> {
        keyed(
            store,
            "SELECT session_id::VARCHAR, visitor_id::VARCHAR, epoch_us(first_ts), \
             epoch_us(last_ts), pageviews, entry_path, exit_path, utm_source FROM sessions",
            |r| {
                let row = (
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                );
                Ok((r.get(0)?, row))
            },
        )
    }

    /// Sessions written over several commits, through both append paths and out of time
    /// order, have the entry and exit page, duration, page views and bounce that the raw
    /// events give.
    #[test]
    fn sessions_match_the_raw_events_however_the_commits_fall() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let events = workload();
        let mut seq = 1;
        for (i, chunk) in events.chunks(13).enumerate() {
            if i % 2 == 0 {
                store.append(seq, chunk).unwrap();
            } else {
                assert_eq!(store.append_new(seq, &[chunk]).unwrap(), [chunk.len()]);
            }
            seq += chunk.len() as i64;
        }
        let want = expected(&events);
        assert_eq!(want.len(), 40);
        assert_eq!(stored(&store), want);
        // Bounces and durations, as the reports read them.
        let (bounces, seconds): (i64, f64) = store
            .connection()
            .query_row(
                "SELECT count(*) FILTER (pageviews = 1), \
                 sum(epoch_us(last_ts) - epoch_us(first_ts)) / 1e6 FROM sessions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(bounces, want.values().filter(|r| r.3 == 1).count() as i64);
        let total: i64 = want.values().map(|r| r.2 - r.1).sum();
        assert_eq!(seconds, total as f64 / 1e6);

        // Forgetting a visitor rebuilds or removes the sessions that held its page views.
        let gone = Uuid::from_u128(1000 + 3);
        crate::store::forget(store.connection(), &Subject::Visitor(gone)).unwrap();
        let left: Vec<Event> = events
            .into_iter()
            .filter(|e| e.visitor_id != Some(gone))
            .collect();
        let want = expected(&left);
        assert_eq!(want.len(), 38);
        assert_eq!(stored(&store), want);

        // A store from before the table (schema version 2) gets it built at the next start.
        let store = reopened_as(store, dir.path(), "sessions", 2);
        assert_eq!(stored(&store), want);
    }

    /// Page views committed but not folded yet (staged ones, between their commit and their
    /// fold) are folded by the next fold, or, after a crash, when the store opens again; a
    /// visitor forgotten meanwhile is not folded back in.
    #[test]
    fn unfolded_page_views_are_folded_later_or_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let events = workload();
        let (head, tail) = events.split_at(events.len() / 2);
        store.stage(1, head).unwrap();
        store.commit_staged().unwrap();
        assert!(store.has_unfolded());
        assert!(
            stored(&store).is_empty(),
            "folded in the staging transaction"
        );
        store.fold_pending().unwrap();
        assert!(!store.has_unfolded());
        assert_eq!(stored(&store), expected(head));

        // Forget a visitor whose page views are committed but not folded yet.
        let gone = Uuid::from_u128(1000 + 7);
        store.stage(1 + head.len() as i64, tail).unwrap();
        store.commit_staged().unwrap();
        crate::store::forget(store.connection(), &Subject::Visitor(gone)).unwrap();
        let left: Vec<Event> = events
            .iter()
            .filter(|e| e.visitor_id != Some(gone))
            .cloned()
            .collect();
        // A crash before the fold: the store opened again folds what is past the watermark.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.has_unfolded());
        assert_eq!(stored(&store), expected(&left));
    }

    /// Two first page views at the same time: the session takes its entry page and every
    /// visit column from one of them, never some from each.
    #[test]
    fn a_session_takes_its_first_page_view_whole_when_two_share_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut a = view(1, 0, None);
        a.utm_source = Some("facebook".into());
        a.country = Some("DE".into());
        let mut b = view(1, 0, None);
        b.path = Some("/b".into());
        b.country = Some("FR".into());
        let seq = store.next_seq().unwrap();
        store.append(seq, &[a, b, view(1, 5, None)]).unwrap();
        let got: (String, Option<String>, String, i64) = store
            .connection()
            .query_row(
                "SELECT entry_path, utm_source, country, pageviews FROM sessions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        let from_a = (
            "/0".to_string(),
            Some("facebook".to_string()),
            "DE".to_string(),
            3,
        );
        let from_b = ("/b".to_string(), None, "FR".to_string(), 3);
        assert!(got == from_a || got == from_b, "{got:?}");
    }

    /// A page view of session `s` at `T0 + min` minutes, by `user` if given.
    fn view(s: u128, min: i64, user: Option<&str>) -> Event {
        let mut e = Event::now("page_view", "shop", Source::Proxy);
        e.ts_us = T0 + min * MIN_US;
        e.visitor_id = Some(Uuid::from_u128(7));
        e.session_id = Some(Uuid::from_u128(s));
        e.user_id = user.map(str::to_string);
        e.path = Some(format!("/{min}"));
        e
    }

    /// Whether `h` is still running after a moment: it waits for a lock.
    fn waits<T>(h: &std::thread::JoinHandle<T>) -> bool {
        std::thread::sleep(std::time::Duration::from_millis(300));
        !h.is_finished()
    }

    /// A user forgotten while the writer folds a later page view of a session they were part
    /// of (they signed in mid-session): the forget waits for the fold's commit, and the
    /// session keeps the page views left, the folded one included. Without the wait, DuckDB
    /// let the forget's rebuild replace the row the fold was updating, and the page view was
    /// lost from the session for good (the watermark had passed it).
    #[test]
    fn a_forget_waits_for_a_fold_in_progress_and_keeps_its_page_views() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut before = vec![view(1, 0, None), view(1, 1, Some("u"))];
        let mut store = store;
        store.append(1, &before).unwrap();

        // The writer's fold of a third page view, as `Store::append` does it, not committed.
        let lock = store.changing.clone();
        let held = super::hold(&lock);
        let late = view(1, 2, None);
        let tx = store.conn.unchecked_transaction().unwrap();
        crate::store::append_rows(&tx, "events", [(3, &late)].into_iter()).unwrap();
        super::fold(&tx, 2, 3).unwrap();

        let conn = store.reader().unwrap();
        let forget = std::thread::spawn(move || {
            crate::store::forget(&conn, &Subject::User("u".into())).map(|r| r.rows_deleted)
        });
        assert!(waits(&forget), "the forget ran beside a fold in progress");
        tx.commit().unwrap();
        drop(held);
        assert_eq!(forget.join().unwrap().unwrap(), 1);
        before.retain(|e| e.user_id.is_none());
        before.push(late);
        assert_eq!(stored(&store), expected(&before));
        assert_eq!(stored(&store)[&Uuid::from_u128(1).to_string()].3, 2);
    }

    /// The writer's fold waits for a deletion in progress (a forget or a retention pass holds
    /// the lock), and folds once it is done.
    #[test]
    fn a_fold_waits_for_a_deletion_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let lock = super::lock_of(&store.reader().unwrap()).unwrap();
        let held = super::hold(&lock);
        let fold = std::thread::spawn(move || {
            store.append(1, &[view(2, 0, None)]).unwrap();
            store
        });
        assert!(waits(&fold), "the fold ran beside a deletion in progress");
        drop(held);
        let store = fold.join().unwrap();
        assert_eq!(stored(&store).len(), 1);
    }

    #[test]
    fn the_watermark_expression_reads_the_watermark() {
        assert!(super::FOLDED_THROUGH.contains(&format!("'{}'", super::WATERMARK)));
        assert!(crate::store::identities().contains(super::FOLDED_THROUGH));
    }

    /// Page views per hour, site and bot flag as the raw events say.
    fn expected_hours(events: &[Event]) -> BTreeMap<(i64, String, bool), i64> {
        let mut out = BTreeMap::new();
        for e in events.iter().filter(|e| e.name == "page_view") {
            let hour = e.ts_us - e.ts_us.rem_euclid(3_600_000_000);
            let key = (hour, e.site.clone(), e.is_bot.unwrap_or(false));
            *out.entry(key).or_insert(0) += 1;
        }
        out
    }

    fn stored_hours(store: &Store) -> BTreeMap<(i64, String, bool), i64> {
        keyed(
            store,
            "SELECT epoch_us(hour_utc), site, is_bot, pageviews FROM pageview_hours",
            |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)),
        )
    }

    /// Write `events` from `seq` 1 in commits of 11, through every append path in turn (staged
    /// and committed, in one transaction, as a submission), and fold them; returns the next
    /// `seq`.
    fn written_every_way(store: &mut Store, events: &[Event]) -> i64 {
        let mut seq = 1;
        for (i, chunk) in events.chunks(11).enumerate() {
            match i % 3 {
                0 => store.append(seq, chunk).unwrap(),
                1 => {
                    store.stage(seq, chunk).unwrap();
                    store.commit_staged().unwrap();
                }
                _ => assert_eq!(store.append_new(seq, &[chunk]).unwrap(), [chunk.len()]),
            }
            seq += chunk.len() as i64;
        }
        store.fold_pending().unwrap();
        seq
    }

    /// `pageview_hours` equals the raw events' count per hour exactly: written over several
    /// commits through every append path (staged or not), out of time order; after a late
    /// event (an import of last month's purchase page) and a bot's page view; after a forget;
    /// and when a store of schema version 3 is opened and gets the table built.
    #[test]
    fn page_views_per_hour_match_the_raw_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut events = workload();
        let seq = written_every_way(&mut store, &events);
        assert!(expected_hours(&events).len() >= 4);
        assert_eq!(stored_hours(&store), expected_hours(&events));

        // A late page view, 30 days back, and a bot's, in one imported submission.
        let mut late = view(99, -30 * 24 * 60, None);
        late.path = Some("/thanks".into());
        let mut bot = view(98, 5, None);
        bot.is_bot = Some(true);
        let extra = vec![late, bot];
        store.append_new(seq, &[&extra]).unwrap();
        events.extend(extra);
        let hours = stored_hours(&store);
        assert_eq!(hours, expected_hours(&events));
        let month_ago = T0 - 30 * 24 * 60 * MIN_US;
        let month_ago = month_ago - month_ago.rem_euclid(3_600_000_000);
        assert_eq!(hours[&(month_ago, "shop".to_string(), false)], 1);

        // A forgotten visitor's page views are counted out of their hours.
        let gone = Uuid::from_u128(1000 + 5);
        crate::store::forget(store.connection(), &Subject::Visitor(gone)).unwrap();
        events.retain(|e| e.visitor_id != Some(gone));
        assert_eq!(stored_hours(&store), expected_hours(&events));

        // A store of version 3 gets the table built when it opens.
        let store = reopened_as(store, dir.path(), "pageview_hours", 3);
        assert_eq!(stored_hours(&store), expected_hours(&events));
    }

    /// Events that stitch visitors of [`workload`] to users: every third visitor gets an
    /// identify call, every sixth a second one with a lesser user id (the one it keeps), and
    /// one user acts without a visitor.
    fn identities() -> Vec<Event> {
        let mut out = Vec::new();
        for v in (0..30u128).filter(|v| v % 3 == 0) {
            let mut e = Event::now("identify", "shop", Source::Server);
            e.ts_us = T0 + v as i64 * MIN_US;
            e.visitor_id = Some(Uuid::from_u128(1000 + v));
            e.user_id = Some(format!("u{}", v % 7));
            out.push(e.clone());
            if v % 6 == 0 {
                e.name = "registered".into();
                e.ts_us += 30 * MIN_US;
                e.user_id = Some(format!("a{v}"));
                out.push(e);
            }
        }
        let mut e = Event::now("purchased", "shop", Source::Server);
        e.ts_us = T0;
        e.user_id = Some("u1".into());
        out.push(e);
        out
    }

    /// Each visitor's least user id, as the raw events say.
    fn expected_persons(events: &[Event]) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for e in events {
            if let (Some(v), Some(u)) = (e.visitor_id, &e.user_id) {
                let least = out.entry(v.to_string()).or_insert_with(|| u.clone());
                if u < least {
                    *least = u.clone();
                }
            }
        }
        out
    }

    /// `persons` (checking that each row's key is its user's, and that no visitor has two
    /// rows), and what the reports read: [`crate::store::identities`], which adds the events
    /// past the watermark.
    fn stored_persons(store: &Store) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let (wrong, twice): (i64, i64) = store
            .connection()
            .query_row(
                "SELECT count(*) FILTER (person <> md5_number(user_id)), \
                 count(*) - count(DISTINCT visitor_id) FROM persons",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(wrong, 0, "a person key that is not its user's");
        assert_eq!(twice, 0, "a visitor with two rows");
        let table = keyed(
            store,
            "SELECT visitor_id::VARCHAR, user_id FROM persons",
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        let read = keyed(
            store,
            &format!(
                "WITH {}, u AS (SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL) \
                 SELECT idm.visitor_id::VARCHAR, u.user_id FROM idm \
                 JOIN u ON md5_number(u.user_id) = idm.stitched",
                crate::store::identities()
            ),
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        (table, read)
    }

    /// `persons` holds each visitor's least user id as the raw events say: written over
    /// several commits through every append path, with commits that hold no page view (folded
    /// later); what the reports read includes events not folded yet; a lesser id arriving
    /// later; after a forget of a user (its visitors fall back to the users left); and when a
    /// store of version 4 is opened.
    #[test]
    fn persons_match_the_raw_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut events = workload();
        let ids = identities();
        let mut seq = written_every_way(&mut store, &events);
        // Identities alone, no page view among them: read at once, folded later.
        let (first, second) = ids.split_at(ids.len() / 2);
        store.append_new(seq, &[first]).unwrap();
        seq += first.len() as i64;
        events.extend(first.iter().cloned());
        let want = expected_persons(&events);
        assert!(want.len() >= 3);
        let (table, read) = stored_persons(&store);
        assert!(table.is_empty(), "folded with no page view");
        assert_eq!(read, want);
        assert!(store.has_unfolded());
        store.fold_pending().unwrap();
        assert_eq!(stored_persons(&store), (want.clone(), want));

        // Staged and committed, not folded: the reports see them already.
        store.stage(seq, second).unwrap();
        store.commit_staged().unwrap();
        seq += second.len() as i64;
        events.extend(second.iter().cloned());
        let want = expected_persons(&events);
        assert_eq!(want.len(), 10);
        assert!(want.values().any(|u| u.starts_with('a')));
        let (table, read) = stored_persons(&store);
        assert_ne!(table, want, "folded before fold_pending");
        assert_eq!(read, want);
        store.fold_pending().unwrap();
        assert_eq!(stored_persons(&store), (want.clone(), want));

        // Later, a lesser id for a visitor folded already, and a greater one for another
        // (which changes nothing): read from past the watermark first, then folded into their
        // rows.
        let mut later = Vec::new();
        for (v, user) in [(15u128, "0v15"), (18, "zz")] {
            let mut e = Event::now("identify", "shop", Source::Server);
            e.ts_us = T0 + 90 * MIN_US;
            e.visitor_id = Some(Uuid::from_u128(1000 + v));
            e.user_id = Some(user.into());
            later.push(e);
        }
        store.stage(seq, &later).unwrap();
        store.commit_staged().unwrap();
        events.extend(later);
        let want = expected_persons(&events);
        assert_eq!(want[&Uuid::from_u128(1015).to_string()], "0v15");
        assert_eq!(want[&Uuid::from_u128(1018).to_string()], "a18");
        let (table, read) = stored_persons(&store);
        assert_ne!(table, want, "folded before fold_pending");
        assert_eq!(read, want);
        store.fold_pending().unwrap();
        assert_eq!(stored_persons(&store), (want.clone(), want));

        // A forgotten user: their visitors keep the users their other events name, or none.
        crate::store::forget(store.connection(), &Subject::User("a0".into())).unwrap();
        crate::store::forget(store.connection(), &Subject::User("u3".into())).unwrap();
        events.retain(|e| !matches!(e.user_id.as_deref(), Some("a0" | "u3")));
        let want = expected_persons(&events);
        assert_eq!(want.len(), 9);
        assert_eq!(stored_persons(&store), (want.clone(), want.clone()));

        // A store of version 4 gets the table built when it opens.
        let store = reopened_as(store, dir.path(), "persons", 4);
        assert_eq!(stored_persons(&store), (want.clone(), want));
    }
}
