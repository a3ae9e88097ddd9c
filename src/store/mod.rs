//! The embedded DuckDB store: `<data>/tollgate.duckdb`, its schema, batch appends and
//! read-only queries.
//!
//! One process owns the file (DuckDB allows one writer process). Inside it, the pipeline's
//! writer thread owns the main [`Store`]; readers (the admin API) use [`Store::reader`], a
//! connection to the same database instance.

mod breakdowns;
mod budget;
mod chunk;
mod forget;
mod guard;
mod keys;
mod latencies;
mod persons;
mod query;
mod read;
mod rollups;
mod schema;
mod sessions;
mod sketches;

pub use breakdowns::{count_between, Counted, Measure, DEVICE_DIMS, SOURCE_DIMS};
pub use budget::{is_out_of_memory, out_of_memory, Budget, Loan, Share};
pub use forget::{forget, forget_again, ForgetReport, Subject};
pub use guard::{check_read_only, QueryError};
pub use latencies::{bucket_of, bucket_value, API_CALL};
pub use persons::identities;
pub use query::{run_query, run_query_with_timeout, value_json, Limits, QueryResult};
pub use read::{read_events, Record};
pub use schema::{duckdb_type, events_ddl};
pub use sessions::FOLDED_THROUGH;
pub(crate) use sessions::{
    hold as hold_sessions, lock_of as sessions_lock, mark as mark_sessions,
    rebuild_marked as rebuild_marked_sessions,
};
pub use sketches::{
    day_start_utc, last_day as last_sketch_day, views_by_path, visitor_halves, visitor_hash,
    PathViews, Sketch,
};

use crate::event::columns::SEQ;
use crate::event::{Event, Kind};
use chrono::NaiveDate;
use duckdb::arrow;
use duckdb::arrow::datatypes::{DataType, TimeUnit};
use duckdb::arrow::error::ArrowError;
use duckdb::{Config, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of the store inside the data directory.
pub const DB_FILE: &str = "tollgate.duckdb";

/// How DuckDB is opened; defined with the `[store]` settings it comes from.
pub use crate::config::{StoreOptions, DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_THREADS};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "failed to open store at {path}: file is locked by another process (is tollgate already running on this data directory?)"
    )]
    Locked { path: PathBuf },
    #[error("failed to open store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error("store has no events table at {path} (run `tollgate serve` once to create it)")]
    NotInitialised { path: PathBuf },
    #[error("store schema version {found} is newer than this tollgate supports ({supported}); upgrade tollgate")]
    TooNew { found: u32, supported: u32 },
    #[error("store error: {0}")]
    Db(#[from] duckdb::Error),
    #[error("store error: events as columns: {0}")]
    Arrow(#[from] ArrowError),
    #[error("store error: failed to start a thread: {0}")]
    Thread(String),
    #[error("store error: {0}")]
    Malformed(String),
}

/// An open store.
pub struct Store {
    conn: Connection,
    /// A second connection, for the staging transaction ([`Store::stage`]), so that commits on
    /// `conn` (an ingestion request's events) go past it while it stays open.
    stager: Connection,
    budget: Arc<Budget>,
    path: PathBuf,
    /// `store.dedup_days` and `store.dedup_max_keys`.
    dedup: keys::Bounds,
    /// The deduplication keys, loaded on first need.
    keys: keys::Keys,
    /// The watermark: every event up to this `seq` is folded into `sessions`,
    /// `pageview_hours` and `persons`.
    folded: i64,
    /// What was committed after it without being folded, when any of it feeds the derived
    /// tables ([`sessions::feeds_derived`]): staged events, until [`Store::fold_pending`];
    /// events committed past an open staging transaction, until it is committed too; events
    /// that only stitch visitors; or a fold failed.
    unfolded: Option<Unfolded>,
    /// Held by every transaction that folds ([`sessions::lock_of`]).
    changing: Arc<std::sync::Mutex<()>>,
    /// The open transaction that [`Store::stage`] appends to, if any.
    staged: Option<Staged>,
}

/// Events appended to a transaction that is still open ([`Store::stage`]).
struct Staged {
    /// The first `seq` appended: every event before it is committed (or lost), so the
    /// sinks and the fold go no further while the transaction is open.
    first: i64,
    /// The last `seq` appended.
    through: i64,
    /// Whether any of them feeds the derived tables ([`sessions::feeds_derived`]).
    derived: bool,
    rows: usize,
    /// The bytes of their text ([`Event::text_bytes`]).
    text: usize,
    /// More memory than the idle limit, held while the transaction is open: a row group of
    /// events (122,880) takes about 56 MiB in DuckDB before it is written out
    /// ([`Budget::lend_staging`]).
    _memory: Loan,
}

/// Events committed but not folded into `sessions` yet.
#[derive(Debug, Clone, Copy)]
struct Unfolded {
    /// The last `seq` committed.
    through: i64,
}

impl Store {
    /// Open (creating if needed) the store in `data_dir` for reading and writing, and bring its
    /// schema up to date, with the default [`StoreOptions`] but DuckDB's whole memory limit and
    /// threads kept: for one-off commands (`import`, `forget`, `generate`) and tests, not a
    /// long-running writer.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Store::open_at(data_dir, &StoreOptions::default(), Rest::Whole)
    }

    /// [`Store::open`] with `options` (`[store]`), for the server: DuckDB holds
    /// `idle_memory_limit` and one thread while nothing has borrowed the whole share
    /// ([`Budget`]).
    pub fn open_with(data_dir: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        Store::open_at(data_dir, options, Rest::Idle)
    }

    fn open_at(data_dir: &Path, options: &StoreOptions, rest: Rest) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let conn = open_conn(&path, false, options)?;
        let folded = schema::migrate(&conn)?;
        Store::locked(conn, path, options, folded, rest)
    }

    /// The store on `conn`, its configuration locked, with DuckDB's share as `rest` says once
    /// it is open.
    fn locked(
        conn: Connection,
        path: PathBuf,
        options: &StoreOptions,
        folded: i64,
        rest: Rest,
    ) -> Result<Self, StoreError> {
        lock_down(&conn)?;
        let changing = sessions::lock_of(&conn)?;
        let full = Share {
            memory: options.memory_limit,
            threads: budget::threads(&conn)?,
        };
        let idle = match rest {
            Rest::Whole => full,
            Rest::Idle => Share {
                memory: options.idle_memory_limit,
                threads: 1,
            },
        };
        let budget = Budget::new(conn.try_clone()?, full, idle, budget::LINGER)?;
        Ok(Store {
            budget,
            changing,
            stager: conn.try_clone()?,
            conn,
            path,
            dedup: keys::Bounds {
                horizon: options.dedup_horizon,
                max_keys: options.dedup_max_keys,
            },
            keys: keys::Keys::default(),
            folded,
            unfolded: None,
            staged: None,
        })
    }

    /// Open an existing store read-only, for `tollgate query` when no server holds the file.
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NotInitialised { path });
        }
        let options = StoreOptions::default();
        let conn = open_conn(&path, true, &options)?;
        // One query, with the whole share.
        Store::locked(conn, path, &options, 0, Rest::Whole)
    }

    /// Open an existing store for writing, for `tollgate forget` when no server holds it.
    pub fn open_existing(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NotInitialised { path });
        }
        Store::open(data_dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection to the same database, for readers on other threads.
    pub fn reader(&self) -> Result<Connection, StoreError> {
        Ok(self.conn.try_clone()?)
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// DuckDB's memory, for reports, queries and deletions to borrow the whole limit.
    pub fn budget(&self) -> Arc<Budget> {
        self.budget.clone()
    }

    /// The `seq` the next committed event gets: one past the highest ever used. Retention and
    /// `forget` delete events, so the highest `seq` still stored is not enough: sink offsets,
    /// the floor retention records, the sessions watermark and the staged events count too,
    /// or `seq`s would be handed out twice and a sink would skip the second owner (or the
    /// fold would).
    pub fn next_seq(&self) -> Result<i64, StoreError> {
        // The open staging transaction's events are not in `events` for this connection.
        let staged = self.staged.as_ref().map_or(0, |st| st.through);
        let max: i64 = self.conn.query_row(
            &format!(
                "SELECT greatest(
                coalesce((SELECT max({SEQ}) FROM events), 0),
                coalesce((SELECT max(greatest(shipped_seq, coalesce(pending_upto, 0)))
                          FROM sink_offsets), 0),
                coalesce((SELECT max(value::BIGINT) FROM tollgate_meta WHERE key = 'seq_floor'), 0))"
            ),
            [],
            |r| r.get(0),
        )?;
        // Nor is the sessions watermark, when `forget` deleted the events up to it: an event
        // numbered at or below it would never be folded.
        Ok(max.max(staged).max(self.folded) + 1)
    }

    /// Append `events` in one transaction, numbering them from `first_seq`, and fold their
    /// page views (and any left unfolded before) into `sessions` in it. Either all are
    /// committed or none is.
    pub fn append<E: std::borrow::Borrow<Event>>(
        &mut self,
        first_seq: i64,
        events: &[E],
    ) -> Result<(), StoreError> {
        self.commit_events(first_seq, events, |_| Ok(()))
    }

    /// The one commit of events: `first` (anything else the transaction must hold), then
    /// `events` numbered from `first_seq`, then, when they hold page views, the fold of every
    /// event past the watermark into the derived tables (`sessions` and the others); and the
    /// watermark noted after. Events that only stitch visitors to users are left to a later
    /// fold ([`Store::fold_pending`], which the writer runs when it is idle and after each
    /// staged commit): folding them in every commit cost `/v1/batch` a third of its throughput
    /// when every message carried both ids (`BENCHMARKS.md`); the reports read what is past
    /// the watermark from the events meanwhile.
    fn commit_events<E: std::borrow::Borrow<Event>>(
        &mut self,
        first_seq: i64,
        events: &[E],
        first: impl FnOnce(&Connection) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // An open staging transaction is left open: these go past it. The fold stops short of
        // its events, which are not committed yet.
        let views = sessions::has_views(events.iter().map(|e| e.borrow()));
        let derived = sessions::feeds_derived(events.iter().map(|e| e.borrow()));
        let through = first_seq + events.len() as i64 - 1;
        let fold_to = self.staged.as_ref().map_or(through, |st| st.first - 1);
        let fold = views && fold_to > self.folded;
        let lock = self.changing.clone();
        let _held = fold.then(|| sessions::hold(&lock));
        let _memory = self.budget.lend_memory()?;
        let tx = self.conn.transaction()?;
        first(&tx)?;
        append_rows(
            &tx,
            "events",
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (first_seq + i as i64, e.borrow())),
        )?;
        if fold {
            sessions::fold(&tx, self.folded, fold_to)?;
        }
        tx.commit()?;
        self.committed(through, derived, fold.then_some(fold_to));
        Ok(())
    }

    /// Note a commit up to `through`, whose events for the derived tables (`derived`: page
    /// views, stitched visitors) were folded up to `folded_to`, if a fold ran, and are
    /// otherwise left to a later one.
    fn committed(&mut self, through: i64, derived: bool, folded_to: Option<i64>) {
        if derived || self.unfolded.is_some() {
            let u = self.unfolded.get_or_insert(Unfolded { through });
            u.through = u.through.max(through);
        }
        if let Some(to) = folded_to {
            self.folded = to;
            if self.unfolded.is_some_and(|u| u.through <= to) {
                self.unfolded = None;
            }
        }
    }

    /// Whether committed page views or stitched visitors wait to be folded
    /// ([`Store::commit_staged`] leaves them to [`Store::fold_pending`]).
    pub fn has_unfolded(&self) -> bool {
        self.unfolded.is_some()
    }

    /// Fold the events committed but not folded yet (page views, stitched visitors), in a
    /// transaction of their own.
    pub fn fold_pending(&mut self) -> Result<(), StoreError> {
        // Staged events are committed first, and folded here with the rest.
        self.commit_staged()?;
        let Some(u) = self.unfolded else {
            return Ok(());
        };
        // The lock and the memory are held until the fold has committed.
        {
            let _held = sessions::hold(&self.changing);
            let _memory = self.budget.lend_memory()?;
            let tx = self.conn.transaction()?;
            sessions::fold(&tx, self.folded, u.through)?;
            tx.commit()?;
        }
        self.committed(u.through, false, Some(u.through));
        Ok(())
    }

    /// Build the page sketches (`sketches.rs`) of the latest day of `tz` that is over and has
    /// none, and if `max_work` is given, whose build costs at most that much
    /// ([`sketches::work`]: page views, and API calls at a quarter of one), in a transaction
    /// of its own. Returns the day, or `None` when every such day has them (or costs more).
    pub fn sketch_a_day(
        &mut self,
        tz: chrono_tz::Tz,
        max_work: Option<i64>,
    ) -> Result<Option<NaiveDate>, StoreError> {
        let now = chrono::DateTime::from_timestamp_micros(crate::event::now_us())
            .unwrap_or_default()
            .naive_utc();
        let last = sketches::last_day(tz, now);
        let missing = sketches::missing_days(&self.conn, tz, last)?;
        // The calls are counted (a query each) for three days at most whose page views fit,
        // latest first.
        let (mut pick, mut counted) = (None, 0);
        for (day, views) in missing {
            let fits = match max_work {
                None => true,
                Some(most) if views > most => false,
                Some(most) => {
                    counted += 1;
                    sketches::work(&self.conn, tz, day, views)? <= most
                }
            };
            if fits {
                pick = Some(day);
                break;
            }
            if counted == 3 {
                break;
            }
        }
        let Some(day) = pick else {
            return Ok(None);
        };
        let _held = sessions::hold(&self.changing);
        let _memory = self.budget.lend_memory()?;
        let tx = self.conn.transaction()?;
        sketches::build_day(&tx, tz, day)?;
        tx.commit()?;
        Ok(Some(day))
    }

    /// Rewrite `events` in time order, its `seq`s numbered again in that order over the same
    /// range: for `tollgate generate`, which writes each visitor's whole history at once, so
    /// that a generated store is laid out as a proxy's is (its events are appended as they
    /// happen), and the zonemaps of `ts` prune a range of days. Without it, every query of a
    /// day scanned the whole of a generated store (BENCHMARKS.md). A sorted copy is made, then
    /// swapped in in one transaction; the file keeps the blocks of both old copies, free, so it
    /// grows to about three times the table. Only for a store whose events are all folded and
    /// that no sink has read: the derived tables hold no `seq`, and the watermark, the highest
    /// `seq`, stays.
    pub fn order_by_time(&mut self) -> Result<(), StoreError> {
        self.fold_pending()?;
        let _loan = self.budget.lend()?;
        // Sorted first, into a table of its own, by one thread: on 100M events, numbering the
        // rows in the same statement (a window over every column) ran out of the default
        // `store.memory_limit`, and so did this sort on two threads; on one it fit, spilling
        // about 40 GB to disk (BENCHMARKS.md; a measured fit, not a bound for every size).
        // Committed, so that its `rowid`s are its rows' places (a transaction's own rows are
        // numbered from a large offset until it commits).
        let threads: i64 = self
            .conn
            .query_row("SELECT current_setting('threads')", [], |r| r.get(0))?;
        self.conn.execute_batch("SET threads = 1")?;
        let sorted = self.conn.execute_batch(
            "CREATE OR REPLACE TABLE events_sorted AS SELECT * FROM events ORDER BY ts, seq;",
        );
        let restored = self.conn.execute_batch(&format!("SET threads = {threads}"));
        let swapped = sorted
            .and(restored)
            .map_err(StoreError::from)
            .and_then(|()| {
                let tx = self.conn.transaction()?;
                tx.execute_batch(&format!(
                    "{ddl}
                     INSERT INTO events_by_time SELECT * REPLACE (
                       (SELECT min(seq) FROM events) + rowid AS seq)
                     FROM events_sorted;
                     DROP TABLE events_sorted;
                     DROP TABLE events;
                     ALTER TABLE events_by_time RENAME TO events;",
                    ddl = events_ddl("events_by_time"),
                ))?;
                tx.commit()?;
                Ok(())
            });
        if swapped.is_err() {
            // Not a second copy of the events left in the store.
            let _ = self
                .conn
                .execute_batch("DROP TABLE IF EXISTS events_sorted");
        }
        swapped?;
        self.conn.execute_batch("CHECKPOINT")?;
        Ok(())
    }

    /// [`Store::sketch_a_day`] until every day that is over has its sketches, with progress
    /// on the console: for `tollgate generate`. Returns the number of days built.
    pub fn sketch_every_day(&mut self, tz: chrono_tz::Tz) -> Result<usize, StoreError> {
        let started = std::time::Instant::now();
        let mut built = 0;
        while let Some(day) = self.sketch_a_day(tz, None)? {
            built += 1;
            if built % 10 == 0 {
                tracing::info!(built, %day, "Building the page sketches of each day.");
            }
        }
        tracing::info!(
            days = built,
            seconds = started.elapsed().as_secs_f64(),
            "The page sketches are built."
        );
        Ok(built)
    }
}

/// Staging: the writer's path for proxy events. Events are appended to one open
/// transaction, a few thousand at a time, and committed together: a commit of at least a
/// row group of rows (122,880, DuckDB's) is written to the file compressed, straight from the
/// transaction, instead of through DuckDB's write-ahead log and again at the next checkpoint,
/// and the commit's own costs are paid once for all of them (BENCHMARKS.md, issue 16). Readers
/// see the events only once they are committed. The transaction is on a connection of its own
/// (`stager`): other commits ([`Store::append_new`]) go past it while it stays open, and
/// fold no further than the event before its first.
impl Store {
    /// Append `events`, numbered from `first_seq`, to the open staging transaction, opening
    /// one when none is. On an error the transaction is rolled back: every event staged in it
    /// is lost with it ([`Store::staged_rows`] says how many there were).
    pub fn stage<E: std::borrow::Borrow<Event>>(
        &mut self,
        first_seq: i64,
        events: &[E],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.staged.is_none() {
            let memory = self.budget.lend_staging()?;
            self.stager.execute_batch("BEGIN TRANSACTION")?;
            self.staged = Some(Staged {
                first: first_seq,
                through: first_seq - 1,
                derived: false,
                rows: 0,
                text: 0,
                _memory: memory,
            });
        }
        let rows = events
            .iter()
            .enumerate()
            .map(|(i, e)| (first_seq + i as i64, e.borrow()));
        if let Err(e) = append_rows(&self.stager, "events", rows) {
            self.abandon_staged();
            return Err(e);
        }
        if let Some(st) = self.staged.as_mut() {
            st.through = first_seq + events.len() as i64 - 1;
            st.derived |= sessions::feeds_derived(events.iter().map(|e| e.borrow()));
            st.rows += events.len();
            st.text += events
                .iter()
                .map(|e| e.borrow().text_bytes())
                .sum::<usize>();
        }
        Ok(())
    }

    /// How many events the open staging transaction holds (0 when none is open).
    pub fn staged_rows(&self) -> usize {
        self.staged.as_ref().map_or(0, |s| s.rows)
    }

    /// The bytes of text of the events the open staging transaction holds: DuckDB holds about
    /// that plus 200 bytes an event until a row group is written out.
    pub fn staged_text(&self) -> usize {
        self.staged.as_ref().map_or(0, |s| s.text)
    }

    /// The first `seq` in the open staging transaction, if one is open: the events before it
    /// are all committed, those from it on perhaps not.
    pub fn staged_first(&self) -> Option<i64> {
        self.staged.as_ref().map(|s| s.first)
    }

    /// Commit the staging transaction, if one is open. Its events are folded by
    /// [`Store::fold_pending`], in a transaction of their own: folding in the long one would
    /// make a `forget` that committed while it was open a conflict with its update of the
    /// derived tables, and lose the events with it. On an error the staged events are lost.
    pub fn commit_staged(&mut self) -> Result<(), StoreError> {
        let Some(st) = self.staged.as_ref() else {
            return Ok(());
        };
        let (through, derived) = (st.through, st.derived);
        // Never out of memory inside DuckDB's COMMIT ([`Budget::lend_memory`]).
        let memory = self.budget.lend_memory();
        if let Err(e) = memory.and_then(|_m| Ok(self.stager.execute_batch("COMMIT")?)) {
            self.abandon_staged();
            return Err(e);
        }
        self.staged = None;
        self.committed(through, derived, None);
        Ok(())
    }

    /// Roll the staging transaction back (after an error, or a panic in the middle of a
    /// stage), giving its memory back; returns how many events it held.
    pub fn abandon_staged(&mut self) -> usize {
        let Some(st) = self.staged.take() else {
            return 0;
        };
        // After a failed COMMIT DuckDB has rolled back already, and this fails harmlessly.
        let _ = self.stager.execute_batch("ROLLBACK");
        st.rows
    }
}

impl Store {
    /// Append `groups` of events in one transaction (several submissions share one commit),
    /// numbering them from `first_seq`, but for the keyed ones ([`Hints::keyed`]) whose key
    /// the store saw within `store.dedup_days`, or that came earlier in these groups. Returns
    /// how many of each group were written. A key is recorded in the same transaction as its
    /// event, so a resend after a crash is checked against exactly what was committed.
    ///
    /// [`Hints::keyed`]: crate::event::Hints::keyed
    pub fn append_new(
        &mut self,
        first_seq: i64,
        groups: &[&[Event]],
    ) -> Result<Vec<usize>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let candidates: Vec<(usize, &Event)> = groups
            .iter()
            .enumerate()
            .flat_map(|(g, events)| events.iter().map(move |e| (g, e)))
            .filter(|(_, e)| !e.hints.keyed || seen.insert(e.event_id))
            .collect();
        let mut written = vec![0; groups.len()];
        if candidates.is_empty() {
            return Ok(written);
        }
        let keys: Vec<uuid::Uuid> = candidates
            .iter()
            .filter(|(_, e)| e.hints.keyed)
            .map(|(_, e)| e.event_id)
            .collect();
        let now = crate::event::now_us();
        let fresh = self.keys.fresh(&self.conn, self.dedup, &keys, now)?;
        let new: Vec<&Event> = candidates
            .into_iter()
            .filter(|(_, e)| !e.hints.keyed || fresh.contains(&e.event_id))
            .map(|(g, e)| {
                written[g] += 1;
                e
            })
            .collect();
        let committed = self.commit_events(first_seq, &new, |tx| keys::append(tx, &fresh, now));
        match committed {
            Ok(()) => self.keys.record(&fresh, self.dedup, now),
            Err(e) => {
                self.keys.reset();
                return Err(e);
            }
        }
        Ok(written)
    }

    /// Delete the deduplication keys past `store.dedup_days` and `store.dedup_max_keys`;
    /// returns how many rows of `event_keys` went.
    pub fn prune_keys(&mut self, now_us: i64) -> Result<usize, StoreError> {
        let floor = self.keys.floor(self.dedup, now_us);
        keys::delete_before(&self.conn, floor)
    }

    /// Forget the deduplication keys held in memory; the next check reads them from the store
    /// again. For the writer, after a panic left it unsure what was committed.
    pub fn reload_keys(&mut self) {
        self.keys.reset();
    }
}

/// Append `(seq, event)` rows to `table`, which has the `events` columns: written straight
/// into DuckDB's data chunks ([`chunk`]), which its appender takes 2,048 rows at a time. Row by
/// row, its C API costs a call, a type dispatch and for ids a text round trip per value (that
/// was a third of the writer's time); through Arrow arrays, two copies of every value.
pub fn append_rows<'a>(
    conn: &Connection,
    table: &str,
    rows: impl Iterator<Item = (i64, &'a Event)>,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &Event)> = rows.collect();
    chunk::append(conn, table, &rows)
}

/// The Arrow field for a store column of `kind`: ids as 16-byte `arrow.uuid`s (Arrow's
/// canonical UUID extension type, which DuckDB reads as its UUID), times as microseconds.
fn arrow_field(name: &str, kind: Kind, nullable: bool) -> arrow::datatypes::Field {
    let ty = match kind {
        Kind::BigInt => DataType::Int64,
        Kind::Int => DataType::Int32,
        Kind::Double => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::Text | Kind::Json => DataType::Utf8,
        Kind::Uuid => DataType::FixedSizeBinary(16),
    };
    let field = arrow::datatypes::Field::new(name, ty, nullable);
    match kind {
        Kind::Uuid => field.with_metadata(HashMap::from([(
            "ARROW:extension:name".to_string(),
            "arrow.uuid".to_string(),
        )])),
        _ => field,
    }
}

/// DuckDB's share while nothing has borrowed the whole one ([`Budget`]).
#[derive(Clone, Copy)]
enum Rest {
    /// The whole share, always: one-off commands.
    Whole,
    /// `store.idle_memory_limit` and one thread: the server.
    Idle,
}

fn open_conn(
    path: &Path,
    read_only: bool,
    options: &StoreOptions,
) -> Result<Connection, StoreError> {
    trim_heap_periodically();
    let mut config = Config::default()
        // Queries may not read or write files, attach databases or load extensions: the
        // read-only SQL console relies on this as its last line of defence. (Spilling to the
        // temp directory is DuckDB's own and still works.)
        .enable_external_access(false)
        .and_then(|c| c.enable_autoload_extension(false))
        .and_then(|c| c.max_memory(&format!("{}KiB", options.memory_limit / 1024)))
        .and_then(|c| {
            c.with(
                "checkpoint_threshold",
                format!("{}KiB", options.checkpoint_threshold / 1024),
            )
        })
        // After a checkpoint DuckDB appends to a new row group, and its vacuum merged the small
        // groups at the table's end again at each checkpoint that could double them: each row
        // decompressed and compressed again about log2(122,880 / rows between checkpoints)
        // times, 12-15 % of the writer's CPU (BENCHMARKS.md). Row groups stay the size a
        // checkpoint leaves (~77k events at the default `checkpoint_threshold`); fully
        // deleted ones (retention, forget) are still dropped, partly deleted ones not merged.
        .and_then(|c| c.with("max_vacuum_tasks", "0"))
        .and_then(|c| match options.threads {
            0 => Ok(c),
            n => c.threads(n as i64),
        })
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    if read_only {
        config = config
            .access_mode(duckdb::AccessMode::ReadOnly)
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Connection::open_with_flags(path, config).map_err(|source| {
        let msg = source.to_string();
        if msg.contains("lock") {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        } else {
            StoreError::Open {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// DuckDB allocates with the C library's malloc (tollgate's own Rust code uses mimalloc), and
/// most of what it allocates is 256 KiB blocks. glibc serves those from mmap at first, then
/// (its threshold adapts upward each time such a block is freed) from per-thread arenas,
/// whose free memory fragments and is rarely given back: measured here, a store taking 10k
/// events/s grew by 40-50 MiB of freed-but-kept heap within a minute. Fixing the threshold
/// (every block its own mapping, given back when freed) bounded that, but every block was then
/// a fresh mapping to fault in: reports ran 10-20 % slower. So blocks stay in the arenas, and a
/// thread hands the arenas' free pages back to the OS (`malloc_trim`) every [`TRIM_EVERY`].
/// Process-wide, started once.
fn trim_heap_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("heap-trim".into())
                .spawn(|| loop {
                    std::thread::sleep(TRIM_EVERY);
                    // SAFETY: malloc_trim takes the arenas' locks itself and only returns
                    // free pages to the OS.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the heap trimming thread");
            }
        });
    }
}

/// How often freed C heap goes back to the OS ([`trim_heap_periodically`]). Every 2 s let a
/// run of reports on 10M events peak 30 MiB higher (presumably freed hash tables waiting in
/// arenas while the next report allocated its own); at 250 ms the proxy's CPU per request under
/// load was the same as with the fixed threshold (BENCHMARKS.md).
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Make the configuration immutable, so that no query can turn file access back on.
fn lock_down(conn: &Connection) -> Result<(), StoreError> {
    // The memory limit and the threads stay changeable: tollgate lends the larger share to
    // reports ([`budget`]). The SQL console cannot change them (its guard lets only queries
    // through).
    conn.execute_batch(
        "SET allowed_configs = ['memory_limit', 'threads']; SET lock_configuration = true;",
    )?;
    Ok(())
}

/// A page view of about 2 KiB (a long path and user id), numbered `i`: for tests of commits
/// larger than the idle memory limit.
#[cfg(test)]
pub(crate) fn large_page_view(i: usize) -> Event {
    let mut e = Event::now("page_view", "t", crate::event::Source::Proxy);
    e.path = Some(format!("/{i}/{}", "p".repeat(1000)));
    e.user_id = Some(format!("{i}-{}", "u".repeat(1000)));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    /// The row groups of `events`, as DuckDB's storage lists them.
    fn row_groups(store: &Store) -> i64 {
        store
            .connection()
            .query_row(
                "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('events')",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// A commit that needs more than the idle memory limit (60,000 events of about 2 KiB into
    /// 16 MiB) with nothing in its transaction but the append is written whole, and the store
    /// stays sound: its next checkpoint succeeds. (When such a commit ran out of memory inside
    /// DuckDB's COMMIT, DuckDB's rollback left the first column longer than the others, and
    /// the next checkpoint failed with "Corrupted in-memory column", invalidating the
    /// database. Commits now hold the whole memory limit.)
    #[test]
    fn a_commit_larger_than_the_idle_limit_leaves_the_store_sound() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            memory_limit: 512 << 20,
            idle_memory_limit: 16 << 20,
            ..Default::default()
        };
        let mut store = Store::open_with(dir.path(), &options).unwrap();
        let events: Vec<Event> = (0..60_000).map(large_page_view).collect();
        store.stage(1, &events).unwrap();
        store.commit_staged().unwrap();
        store.connection().execute_batch("CHECKPOINT").unwrap();
        let n: i64 = store
            .connection()
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 60_000);
        // The memory is given back as the commit ends (no linger for commits), and the
        // threads were never raised.
        assert_eq!(store.budget().current(), store.budget().idle());
    }

    /// The server's store runs DuckDB on one thread at rest and lends `store.threads` to
    /// readers; the one-off commands' store keeps every thread.
    #[test]
    fn the_server_store_rests_on_one_thread() {
        let threads = |store: &Store| -> i64 {
            store
                .connection()
                .query_row("SELECT current_setting('threads')", [], |r| r.get(0))
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            threads: 3,
            ..Default::default()
        };
        let server = Store::open_with(&dir.path().join("a"), &options).unwrap();
        assert_eq!(threads(&server), 1);
        let loan = server.budget().lend().unwrap();
        assert_eq!(threads(&server), 3);
        drop(loan);
        let cli = Store::open(&dir.path().join("b")).unwrap();
        let default: i64 = Connection::open_in_memory()
            .unwrap()
            .query_row("SELECT current_setting('threads')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(threads(&cli), default, "DuckDB's default, one per core");
    }

    /// After a checkpoint DuckDB starts a new row group; with its vacuum on, every later
    /// checkpoint merged the small groups at the end of the table once they could double, so
    /// each row was decompressed and compressed again about log2(122,880 / rows between
    /// checkpoints) times. Rows once checkpointed stay where they are.
    #[test]
    fn checkpointed_rows_are_not_rewritten_by_later_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut seq = store.next_seq().unwrap();
        for _ in 0..6 {
            let events: Vec<Event> = (0..3_000)
                .map(|_| Event::now("page_view", "shop", Source::Proxy))
                .collect();
            store.append(seq, &events).unwrap();
            seq += events.len() as i64;
            store.connection().execute_batch("CHECKPOINT").unwrap();
        }
        assert_eq!(row_groups(&store), 6);
        let rows: i64 = store
            .connection()
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 18_000);
        // A group whose rows are all deleted (retention's cut) still goes.
        store
            .connection()
            .execute_batch("DELETE FROM events WHERE seq < 3000 + (SELECT min(seq) FROM events)")
            .unwrap();
        store.connection().execute_batch("CHECKPOINT").unwrap();
        assert_eq!(row_groups(&store), 5);
    }

    /// The size of the store's write-ahead log.
    fn wal_bytes(store: &Store) -> u64 {
        let mut wal = store.path().as_os_str().to_owned();
        wal.push(".wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// Staged events are unseen by readers until committed. A staging transaction of a whole
    /// row group (122,880 events) is written to the file, not to the write-ahead log: its log
    /// is smaller than that of a sixth as many events committed below a row group.
    #[test]
    fn a_staged_row_group_is_written_past_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let stage = |n: usize, at: &str| -> u64 {
            let mut store = Store::open(&dir.path().join(at)).unwrap();
            let reader = store.reader().unwrap();
            let count = || -> i64 {
                reader
                    .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                    .unwrap()
            };
            let before = wal_bytes(&store);
            let events: Vec<Event> = (0..4096)
                .map(|i| {
                    let mut e = Event::now("page_view", "shop", Source::Proxy);
                    e.path = Some(format!("/product/{i}"));
                    e.user_agent = Some(format!("Mozilla/5.0 (X11; Linux x86_64) test/{i}"));
                    e
                })
                .collect();
            let mut seq = 1;
            while (seq as usize) <= n {
                let k = events.len().min(n + 1 - seq as usize);
                store.stage(seq, &events[..k]).unwrap();
                seq += k as i64;
            }
            assert_eq!(store.staged_rows(), n);
            assert_eq!(count(), 0, "staged events are not committed yet");
            store.commit_staged().unwrap();
            assert_eq!(count(), n as i64);
            assert_eq!(store.staged_rows(), 0);
            wal_bytes(&store) - before
        };
        let small = stage(20_000, "small");
        let whole = stage(122_880, "whole");
        assert!(
            whole < small,
            "122,880 events logged {whole} bytes, 20,000 events {small}"
        );
    }

    /// Events committed past an open staging transaction (an ingestion request's): `next_seq`
    /// numbers past the staged ones, the fold stops short of those until they are committed
    /// and then folds both, and a crash before that loses only the staged ones: the store
    /// opened again folds what was committed.
    #[test]
    fn events_committed_past_an_open_staging_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let session = uuid::Uuid::now_v7();
        let view = |path: &str, minute: i64| {
            let mut e = Event::now("page_view", "shop", Source::Proxy);
            e.ts_us = 1_767_600_000_000_000 + minute * 60_000_000;
            e.session_id = Some(session);
            e.path = Some(path.into());
            e
        };
        // (events, page views in `sessions`, entry and exit page)
        let seen = |store: &Store| -> (i64, i64, Option<String>, Option<String>) {
            store
                .connection()
                .query_row(
                    "SELECT (SELECT count(*) FROM events), \
                       (SELECT coalesce(sum(pageviews), 0)::BIGINT FROM sessions), \
                       (SELECT any_value(entry_path) FROM sessions), \
                       (SELECT any_value(exit_path) FROM sessions)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap()
        };
        store.stage(1, &[view("/a", 0), view("/b", 1)]).unwrap();
        assert_eq!(store.next_seq().unwrap(), 3);
        store.append(3, &[view("/c", 2)]).unwrap();
        assert_eq!(store.next_seq().unwrap(), 4);
        assert_eq!(store.staged_rows(), 2, "still staged");
        assert_eq!(
            seen(&store),
            (1, 0, None, None),
            "nothing folded past seq 0"
        );
        store.commit_staged().unwrap();
        store.fold_pending().unwrap();
        let s = |p: &str| Some(p.to_string());
        assert_eq!(seen(&store), (3, 3, s("/a"), s("/c")));
        // A crash with events staged and one committed past them.
        store.stage(4, &[view("/d", 3)]).unwrap();
        store.append(5, &[view("/e", 4)]).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(seen(&store), (4, 4, s("/a"), s("/e")));
        assert_eq!(store.next_seq().unwrap(), 6);
    }

    /// After `forget` deleted the events with the highest `seq`s, the store opened again
    /// numbers new events past the sessions watermark: one numbered at or below it would
    /// never be folded into `sessions`.
    #[test]
    fn new_events_are_numbered_past_the_sessions_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let view = |visitor: uuid::Uuid| {
            let mut e = Event::now("page_view", "shop", Source::Proxy);
            e.visitor_id = Some(visitor);
            e.session_id = Some(visitor);
            e
        };
        store.append(1, &[view(a), view(a), view(b)]).unwrap();
        let forgotten = forget::forget(store.connection(), &forget::Subject::Visitor(b)).unwrap();
        assert_eq!(forgotten.rows_deleted, 1);
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        let seq = store.next_seq().unwrap();
        assert_eq!(seq, 4, "past the watermark (3)");
        store.append(seq, &[view(a)]).unwrap();
        let folded: i64 = store
            .connection()
            .query_row("SELECT sum(pageviews)::BIGINT FROM sessions", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(folded, 3, "visitor a's three page views");
    }

    /// A staging transaction rolled back after DuckDB wrote a row group of it to the file
    /// (what a failed append does) leaves the store sound: nothing of it is visible, the next
    /// checkpoint succeeds, and the next transaction commits.
    #[test]
    fn a_staging_transaction_rolled_back_after_a_row_group_leaves_the_store_sound() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let events: Vec<Event> = (0..4096)
            .map(|i| {
                let mut e = Event::now("page_view", "shop", Source::Proxy);
                e.path = Some(format!("/product/{i}"));
                e
            })
            .collect();
        let mut seq = 1;
        // 32 chunks: 131,072 events, a whole row group written out before the rollback.
        for _ in 0..32 {
            store.stage(seq, &events).unwrap();
            seq += events.len() as i64;
        }
        assert_eq!(store.abandon_staged(), 131_072);
        store.connection().execute_batch("CHECKPOINT").unwrap();
        let count = |store: &Store| -> i64 {
            store
                .connection()
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&store), 0);
        store.stage(1, &events).unwrap();
        store.commit_staged().unwrap();
        store.connection().execute_batch("CHECKPOINT").unwrap();
        assert_eq!(count(&store), 4096);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(count(&store), 4096, "after reopening");
    }
}
