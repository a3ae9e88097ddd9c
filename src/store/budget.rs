//! DuckDB's memory and threads, lent to whoever needs them: the store holds
//! `store.idle_memory_limit` and one thread while only the writer and the sinks use it, and
//! `store.memory_limit` and `store.threads` while a report, a console query or a deletion runs
//! ([`Budget::lend`]), or while a sink's read that ran out of the smaller limit is retried.
//! Each commit holds the whole memory limit, not the threads, while it runs
//! ([`Budget::lend_memory`]); the writer's open transaction holds the idle limit and a row
//! group's worth more ([`Budget::lend_staging`]).
//!
//! DuckDB's buffer manager evicts only to stay under its limit, so under a fixed 512 MiB a
//! busy proxy's store kept every block it wrote cached and grew towards it (205 MiB after a
//! minute at 10k requests/s, still growing; BENCHMARKS.md, issue 16). The limit is DuckDB's
//! global `memory_limit`: raising it is immediate; lowering it evicts cached blocks down to
//! the new limit, or fails and leaves it as it was (DuckDB's `BufferPool::SetLimit`), so a
//! lowering never takes memory from a query that holds it. It is lowered only once nothing has
//! borrowed for [`LINGER`], so that a dashboard's reports, one after another, find the blocks
//! the first one read.
//!
//! The writer's commits gain nothing from DuckDB's worker threads, and a second thread that
//! picks up a commit's tasks costs the writer CPU in hand-offs and wake-ups (BENCHMARKS.md,
//! issue 16); reports scan in parallel. So `threads` (DuckDB's global thread count) follows the
//! same loans: one thread, the caller's own, at rest. DuckDB starts and stops its threads when
//! the setting changes, at the end of the statement that changed it.

use super::StoreError;
use duckdb::Connection;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long the larger limit stays after the last loan is returned.
pub const LINGER: Duration = Duration::from_secs(30);

/// How often a lowering is tried once it is due.
const SETTLE_EVERY: Duration = Duration::from_secs(1);

/// What the writer's open transaction may use beyond the idle limit ([`Budget::lend_staging`]):
/// a row group of events before it is written out (about 56 MiB; the writer commits at 48 MiB
/// of their text), with room to spare.
const STAGING: u64 = 96 << 20;

/// What DuckDB may use: its memory limit and its worker threads (the caller's own included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Bytes (DuckDB's `memory_limit`).
    pub memory: u64,
    /// Threads (DuckDB's `threads`), at least 1.
    pub threads: u64,
}

/// The two shares and who holds the larger one.
pub struct Budget {
    /// While something has borrowed (`store.memory_limit`, `store.threads`).
    full: Share,
    /// Otherwise (`store.idle_memory_limit`, one thread).
    idle: Share,
    linger: Duration,
    /// The nice value of the thread that opened the store, and so of DuckDB's threads
    /// (`pipeline.background_nice`): a statement that makes DuckDB start a thread runs at it.
    nice: i32,
    state: Mutex<State>,
}

struct State {
    /// A connection of the store's, to set the share on (it is the database's, not the
    /// connection's).
    conn: Connection,
    loans: usize,
    /// How many of them are the writer's open transaction's ([`Budget::lend_staging`]).
    staging: usize,
    /// What DuckDB has now.
    level: Level,
    /// When the last loan was returned; `None` before the first.
    returned: Option<Instant>,
}

/// What DuckDB has of its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// The idle share.
    Idle,
    /// The idle share and [`STAGING`] more memory: while the writer's transaction is open
    /// ([`Budget::lend_staging`]).
    Staging,
    /// The whole memory limit, the idle threads: while a commit runs ([`Budget::lend_memory`]).
    Memory,
    /// The whole share.
    Full,
}

/// A larger share, held until dropped ([`Budget::lend`], [`Budget::lend_memory`]).
#[must_use]
pub struct Loan {
    budget: Arc<Budget>,
    /// Whether the share lingers after the loan ([`LINGER`]).
    linger: bool,
    /// Whether it is the writer's open transaction's ([`Budget::lend_staging`]).
    staging: bool,
}

impl Drop for Loan {
    fn drop(&mut self) {
        let mut st = self.budget.lock();
        st.loans -= 1;
        st.staging -= usize::from(self.staging);
        if self.linger {
            st.returned = Some(Instant::now());
        } else if st.loans == 0 && matches!(st.level, Level::Memory | Level::Staging) {
            // A commit's loan: the memory goes back at once (DuckDB evicts down to the idle
            // limit here, on the committing thread). If it cannot, the settle thread tries again.
            if set_share(&st.conn, self.budget.idle).is_ok() {
                st.level = Level::Idle;
            }
        } else if st.loans == st.staging && st.level == Level::Memory {
            // The commit of the open transaction is done; the transaction's own share stays.
            let staging = self.budget.share(Level::Staging);
            if set_share(&st.conn, staging).is_ok() {
                st.level = Level::Staging;
            }
        }
    }
}

impl Budget {
    /// A budget over `conn`'s database, which was opened with `full` as its share. With `idle`
    /// below `full` the share is lowered to it at once, and a thread lowers it again whenever
    /// nothing has borrowed for `linger`; otherwise the share stays `full`.
    pub(super) fn new(
        conn: Connection,
        full: Share,
        idle: Share,
        linger: Duration,
    ) -> Result<Arc<Budget>, StoreError> {
        let idle = Share {
            memory: idle.memory.min(full.memory),
            threads: idle.threads.clamp(1, full.threads.max(1)),
        };
        let budget = Arc::new(Budget {
            full,
            idle,
            linger,
            nice: crate::priority::current(),
            state: Mutex::new(State {
                conn,
                loans: 0,
                staging: 0,
                level: Level::Full,
                returned: None,
            }),
        });
        if budget.idle != full {
            budget.settle()?;
            let weak = Arc::downgrade(&budget);
            std::thread::Builder::new()
                .name("store-memory".into())
                .spawn(move || settle_while_open(weak))
                .map_err(|e| StoreError::Thread(e.to_string()))?;
        }
        Ok(budget)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it cannot leave the counts half-changed (each change is one
        // statement); the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole share until the loan is dropped, and for [`LINGER`] after.
    pub fn lend(self: &Arc<Self>) -> Result<Loan, StoreError> {
        let mut st = self.lock();
        if st.level != Level::Full {
            // Set at DuckDB's threads' priority: the statement starts DuckDB's worker threads,
            // which take the priority of the thread that runs it, and a report's thread runs
            // at the proxy's.
            let conn = st.conn.try_clone()?;
            let full = self.full;
            crate::priority::background(self.nice, move || set_share(&conn, full))?;
            st.level = Level::Full;
        }
        st.loans += 1;
        Ok(Loan {
            budget: self.clone(),
            linger: true,
            staging: false,
        })
    }

    /// The whole memory limit, not the threads, until the loan is dropped, when it is lowered
    /// again unless something else holds it: for a commit. A commit must not
    /// run out of memory inside DuckDB's COMMIT: DuckDB's rollback of it left the table's
    /// first column longer than the others, and the next checkpoint failed ("Corrupted
    /// in-memory column"), invalidating the database (`store::tests`,
    /// `a_commit_larger_than_the_idle_limit_leaves_the_store_sound`).
    pub fn lend_memory(self: &Arc<Self>) -> Result<Loan, StoreError> {
        let mut st = self.lock();
        if matches!(st.level, Level::Idle | Level::Staging) {
            set_share(&st.conn, self.share(Level::Memory))?;
            st.level = Level::Memory;
        }
        st.loans += 1;
        Ok(Loan {
            budget: self.clone(),
            linger: false,
            staging: false,
        })
    }

    /// The idle share and [`STAGING`] more memory until the loan is dropped, then the idle
    /// share at once unless something else holds more: for the writer's open transaction,
    /// which holds a row group of events before DuckDB writes it out. Not the whole limit:
    /// under it DuckDB kept what it wrote cached, and the process grew by 50 MiB in a minute
    /// at 10k requests/s (BENCHMARKS.md). Its commit borrows the whole limit
    /// ([`Budget::lend_memory`]).
    pub fn lend_staging(self: &Arc<Self>) -> Result<Loan, StoreError> {
        let mut st = self.lock();
        if st.level == Level::Idle {
            set_share(&st.conn, self.share(Level::Staging))?;
            st.level = Level::Staging;
        }
        st.loans += 1;
        st.staging += 1;
        Ok(Loan {
            budget: self.clone(),
            linger: false,
            staging: true,
        })
    }

    /// Run `op`; when it runs out of the idle limit, run it once more with the whole share lent
    /// (for the sinks' reads, which do not borrow up front). Not for commits: they hold the
    /// whole memory limit from the start ([`Budget::lend_memory`]).
    pub fn or_whole<T>(
        self: &Arc<Self>,
        mut op: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match op() {
            Err(e) if is_out_of_memory(&e) => match self.lend() {
                Ok(_whole) => op(),
                Err(_) => Err(e),
            },
            other => other,
        }
    }

    /// Lower the share to the idle one when nothing has borrowed for the linger time. When
    /// DuckDB cannot evict enough (a query still holds the memory) it keeps the larger share,
    /// and the next call tries again.
    pub fn settle(&self) -> Result<(), StoreError> {
        let mut st = self.lock();
        let rested = st.returned.is_none_or(|t| t.elapsed() >= self.linger);
        if st.level != Level::Idle && st.loans == 0 && rested {
            set_share(&st.conn, self.idle)?;
            st.level = Level::Idle;
        } else if st.level == Level::Full && st.loans == st.staging && rested {
            // Only the writer's open transaction is out, and under steady traffic one almost
            // always is: down to its share, not left at the whole one.
            set_share(&st.conn, self.share(Level::Staging))?;
            st.level = Level::Staging;
        }
        Ok(())
    }

    /// The share DuckDB has now.
    pub fn current(&self) -> Share {
        self.share(self.lock().level)
    }

    /// The share DuckDB has at `level`.
    fn share(&self, level: Level) -> Share {
        match level {
            Level::Idle => self.idle,
            Level::Staging => Share {
                memory: (self.idle.memory + STAGING).min(self.full.memory),
                threads: self.idle.threads,
            },
            Level::Memory => Share {
                memory: self.full.memory,
                threads: self.idle.threads,
            },
            Level::Full => self.full,
        }
    }

    /// The share DuckDB has at rest.
    pub fn idle(&self) -> Share {
        self.idle
    }
}

/// Give DuckDB `share`. The memory first: when it cannot be lowered (a query holds it), the
/// threads stay too, and the whole share is tried again later.
fn set_share(conn: &Connection, share: Share) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "SET memory_limit = '{}KiB'; SET threads = {};",
        share.memory / 1024,
        share.threads.max(1)
    ))?;
    Ok(())
}

/// DuckDB's thread count now (its default is one per core).
pub(super) fn threads(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT current_setting('threads')", [], |r| r.get(0))?;
    Ok(n.max(1) as u64)
}

/// Lower the limit whenever due, until the store is closed.
fn settle_while_open(budget: Weak<Budget>) {
    loop {
        std::thread::sleep(SETTLE_EVERY);
        let Some(b) = budget.upgrade() else { return };
        if let Err(error) = b.settle() {
            tracing::debug!(%error, "DuckDB's memory limit and threads stay raised for now.");
        }
    }
}

/// Whether `e` is DuckDB running out of its memory limit.
pub fn is_out_of_memory(e: &StoreError) -> bool {
    match e {
        StoreError::Db(e) => out_of_memory(e),
        _ => false,
    }
}

/// Whether `e` is DuckDB running out of its memory limit: its "Out of Memory Error", or the
/// same exception wrapped by a commit ("TransactionContext Error: Failed to commit: failed to
/// pin block …", whose advice names `memory_limit`).
pub fn out_of_memory(e: &duckdb::Error) -> bool {
    let text = e.to_string();
    text.starts_with("Out of Memory Error") || text.contains("SET memory_limit=")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(conn: &Connection) -> String {
        conn.query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
            .unwrap()
    }

    fn share(memory: u64, threads: u64) -> Share {
        Share { memory, threads }
    }

    /// A connection to a new store file in `dir`, opened and locked as the store's are, at a
    /// 256 MiB limit.
    fn store_conn(dir: &std::path::Path) -> Connection {
        let options = crate::config::StoreOptions {
            memory_limit: 256 << 20,
            ..Default::default()
        };
        let conn = super::super::open_conn(&dir.join("t.duckdb"), false, &options).unwrap();
        conn.execute_batch(
            "CREATE TABLE t AS SELECT i, 'value number ' || i AS s FROM range(3000000) r(i); \
             CHECKPOINT;",
        )
        .unwrap();
        super::super::lock_down(&conn).unwrap();
        conn
    }

    /// The share is the idle one at rest, the full one while lent, and the idle one again
    /// once the loans are returned and the linger time has passed; not before.
    #[test]
    fn the_share_is_lent_and_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store_conn(dir.path());
        let observer = conn.try_clone().unwrap();
        let b = Budget::new(
            conn,
            share(256 << 20, 3),
            share(32 << 20, 1),
            Duration::from_millis(200),
        )
        .unwrap();
        assert_eq!(limit(&observer), "32.0 MiB");
        assert_eq!(threads(&observer).unwrap(), 1);
        let (one, two) = (b.lend().unwrap(), b.lend().unwrap());
        assert_eq!(limit(&observer), "256.0 MiB");
        assert_eq!(threads(&observer).unwrap(), 3);
        drop(one);
        b.settle().unwrap();
        assert_eq!(limit(&observer), "256.0 MiB", "one loan is still out");
        drop(two);
        b.settle().unwrap();
        assert_eq!(
            limit(&observer),
            "256.0 MiB",
            "lowered before the linger time"
        );
        assert_eq!(threads(&observer).unwrap(), 3);
        std::thread::sleep(Duration::from_millis(250));
        b.settle().unwrap();
        assert_eq!(limit(&observer), "32.0 MiB");
        assert_eq!(threads(&observer).unwrap(), 1);
        assert_eq!(b.current(), share(32 << 20, 1));
    }

    /// A query needing more than the idle limit fails under it and answers with a loan; the
    /// memory it cached is given back when the limit is lowered again.
    /// A server's budget (512 MiB and 2 threads; 48 MiB and 1 at rest) on a store in `dir`,
    /// and a connection to watch it with.
    fn writer_budget(dir: &std::path::Path, linger: Duration) -> (Arc<Budget>, Connection) {
        let conn = store_conn(dir);
        let observer = conn.try_clone().unwrap();
        let full = share(512 << 20, 2);
        let b = Budget::new(conn, full, share(48 << 20, 1), linger).unwrap();
        (b, observer)
    }

    /// The writer's open transaction gets the idle limit and a row group's worth more, its
    /// commit the whole limit; both go back to the idle share at once, not after a linger.
    #[test]
    fn staging_borrows_a_row_group_more_and_gives_it_back_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (b, observer) = writer_budget(dir.path(), Duration::from_secs(3600));
        let staging = b.lend_staging().unwrap();
        assert_eq!(limit(&observer), "144.0 MiB");
        assert_eq!(threads(&observer).unwrap(), 1);
        let commit = b.lend_memory().unwrap();
        assert_eq!(limit(&observer), "512.0 MiB");
        drop(commit);
        assert_eq!(
            limit(&observer),
            "144.0 MiB",
            "the transaction is still open"
        );
        drop(staging);
        assert_eq!(limit(&observer), "48.0 MiB");
        // Never more than the whole limit.
        let other = tempfile::tempdir().unwrap();
        let small = Budget::new(
            store_conn(other.path()),
            share(64 << 20, 1),
            share(16 << 20, 1),
            Duration::ZERO,
        )
        .unwrap();
        let _staging = small.lend_staging().unwrap();
        assert_eq!(small.current().memory, 64 << 20);
    }

    /// A report's whole share, lent while the writer's transaction is open, settles back to
    /// the transaction's share, not to the idle one and not never.
    #[test]
    fn the_whole_share_settles_to_the_staging_one_while_a_transaction_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let (b, observer) = writer_budget(dir.path(), Duration::ZERO);
        let staging = b.lend_staging().unwrap();
        drop(b.lend().unwrap());
        assert_eq!(limit(&observer), "512.0 MiB");
        assert_eq!(threads(&observer).unwrap(), 2);
        b.settle().unwrap();
        assert_eq!(limit(&observer), "144.0 MiB");
        assert_eq!(threads(&observer).unwrap(), 1);
        drop(staging);
        assert_eq!(limit(&observer), "48.0 MiB");
    }

    #[test]
    fn a_loan_lets_a_large_query_run_and_the_memory_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store_conn(dir.path());
        let q = conn.try_clone().unwrap();
        let b = Budget::new(
            conn,
            share(256 << 20, 2),
            share(16 << 20, 1),
            Duration::ZERO,
        )
        .unwrap();
        let big = "SELECT count(*) FROM (SELECT DISTINCT s FROM t)";
        let err = q.query_row(big, [], |r| r.get::<_, i64>(0)).unwrap_err();
        assert!(out_of_memory(&err), "{err}");
        let loan = b.lend().unwrap();
        assert_eq!(
            q.query_row(big, [], |r| r.get::<_, i64>(0)).unwrap(),
            3_000_000
        );
        drop(loan);
        b.settle().unwrap();
        let used: i64 = q
            .query_row(
                "SELECT sum(memory_usage_bytes) FROM duckdb_memory()",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(used <= 16 << 20, "{used} bytes still held");
    }
}
