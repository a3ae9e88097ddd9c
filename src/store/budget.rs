//! DuckDB's memory, lent to whoever needs it: the store holds `store.idle_memory_limit` while
//! only the writer and the sinks use it, and `store.memory_limit` while a report, a console
//! query or a deletion runs ([`Budget::lend`]), or while a commit or a sink's read that ran
//! out of the smaller one is retried.
//!
//! DuckDB's buffer manager evicts only to stay under its limit, so under a fixed 512 MiB a
//! busy proxy's store kept every block it wrote cached and grew towards it (205 MiB after a
//! minute at 10k requests/s, still growing; BENCHMARKS.md, issue 16). The limit is DuckDB's
//! global `memory_limit`: raising it is immediate; lowering it evicts cached blocks down to
//! the new limit, or fails and leaves it as it was (DuckDB's `BufferPool::SetLimit`), so a
//! lowering never takes memory from a query that holds it. It is lowered only once nothing has
//! borrowed for [`LINGER`], so that a dashboard's reports, one after another, find the blocks
//! the first one read.

use super::StoreError;
use duckdb::Connection;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long the larger limit stays after the last loan is returned.
pub const LINGER: Duration = Duration::from_secs(30);

/// How often a lowering is tried once it is due.
const SETTLE_EVERY: Duration = Duration::from_secs(1);

/// The two limits and who holds the larger one.
pub struct Budget {
    /// Bytes while something has borrowed (`store.memory_limit`).
    full: u64,
    /// Bytes otherwise (`store.idle_memory_limit`).
    idle: u64,
    linger: Duration,
    /// The nice value of the thread that opened the store, and so of DuckDB's threads
    /// (`pipeline.background_nice`): a statement that makes DuckDB start a thread runs at it.
    nice: i32,
    state: Mutex<State>,
}

struct State {
    /// A connection of the store's, to set the limit on (it is the database's, not the
    /// connection's).
    conn: Connection,
    loans: usize,
    /// The limit is `full` now.
    raised: bool,
    /// When the last loan was returned; `None` before the first.
    returned: Option<Instant>,
}

/// The larger limit, held until dropped ([`Budget::lend`]).
#[must_use]
pub struct Loan(Arc<Budget>);

impl Drop for Loan {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.loans -= 1;
        st.returned = Some(Instant::now());
    }
}

impl Budget {
    /// A budget over `conn`'s database, which was opened with `full` as its limit. With `idle`
    /// below `full` the limit is lowered to it at once, and a thread lowers it again whenever
    /// nothing has borrowed for `linger`; otherwise the limit stays `full`.
    pub(super) fn new(
        conn: Connection,
        full: u64,
        idle: u64,
        linger: Duration,
    ) -> Result<Arc<Budget>, StoreError> {
        let budget = Arc::new(Budget {
            full,
            idle: idle.min(full),
            linger,
            nice: crate::priority::current(),
            state: Mutex::new(State {
                conn,
                loans: 0,
                raised: true,
                returned: None,
            }),
        });
        if budget.idle < full {
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

    /// The larger limit until the loan is dropped.
    pub fn lend(self: &Arc<Self>) -> Result<Loan, StoreError> {
        let mut st = self.lock();
        if !st.raised {
            // Set at DuckDB's threads' priority: the statement may start one of its threads
            // (seen after `SET memory_limit`), which takes the priority of the thread that
            // runs it, and a report's thread runs at the proxy's.
            let conn = st.conn.try_clone()?;
            let full = self.full;
            crate::priority::background(self.nice, move || set_limit(&conn, full))?;
            st.raised = true;
        }
        st.loans += 1;
        Ok(Loan(self.clone()))
    }

    /// Run `op`; when it runs out of the idle limit, run it once more with the whole limit lent
    /// (for commits and the sinks' reads, which do not borrow up front).
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

    /// Lower the limit to the idle one when nothing has borrowed for the linger time. When
    /// DuckDB cannot evict enough (a query still holds the memory) it keeps the larger limit,
    /// and the next call tries again.
    pub fn settle(&self) -> Result<(), StoreError> {
        let mut st = self.lock();
        let rested = st.returned.is_none_or(|t| t.elapsed() >= self.linger);
        if st.raised && st.loans == 0 && rested {
            set_limit(&st.conn, self.idle)?;
            st.raised = false;
        }
        Ok(())
    }

    /// The limit DuckDB has now, in bytes.
    pub fn current(&self) -> u64 {
        if self.lock().raised {
            self.full
        } else {
            self.idle
        }
    }
}

fn set_limit(conn: &Connection, bytes: u64) -> Result<(), StoreError> {
    conn.execute_batch(&format!("SET memory_limit = '{}KiB'", bytes / 1024))?;
    Ok(())
}

/// Lower the limit whenever due, until the store is closed.
fn settle_while_open(budget: Weak<Budget>) {
    loop {
        std::thread::sleep(SETTLE_EVERY);
        let Some(b) = budget.upgrade() else { return };
        if let Err(error) = b.settle() {
            tracing::debug!(%error, "DuckDB's memory limit stays raised for now.");
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

    /// The limit is the idle one at rest, the full one while lent, and the idle one again
    /// once the loans are returned and the linger time has passed; not before.
    #[test]
    fn the_limit_is_lent_and_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store_conn(dir.path());
        let observer = conn.try_clone().unwrap();
        let b = Budget::new(conn, 256 << 20, 32 << 20, Duration::from_millis(200)).unwrap();
        assert_eq!(limit(&observer), "32.0 MiB");
        let (one, two) = (b.lend().unwrap(), b.lend().unwrap());
        assert_eq!(limit(&observer), "256.0 MiB");
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
        std::thread::sleep(Duration::from_millis(250));
        b.settle().unwrap();
        assert_eq!(limit(&observer), "32.0 MiB");
        assert_eq!(b.current(), 32 << 20);
    }

    /// A query needing more than the idle limit fails under it and answers with a loan; the
    /// memory it cached is given back when the limit is lowered again.
    #[test]
    fn a_loan_lets_a_large_query_run_and_the_memory_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store_conn(dir.path());
        let q = conn.try_clone().unwrap();
        let b = Budget::new(conn, 256 << 20, 16 << 20, Duration::ZERO).unwrap();
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
