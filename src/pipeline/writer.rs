//! The store writer: one thread that enriches each event as it leaves the queue, owns the write
//! connection, and commits events in groups, by size or by age, in one transaction per group.

use super::submit::{Committed, Submission};
use super::EventReceiver;
use crate::config::Pipeline;
use crate::enrich::Enricher;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::Store;
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Attempts per batch before its events are dropped (and counted).
const ATTEMPTS: u32 = 3;

/// How often the writer deletes the deduplication keys past `store.dedup_days` (and once at
/// start): often enough that each pass deletes a few minutes' keys, not a day's.
const PRUNE_KEYS_EVERY: Duration = Duration::from_secs(600);

/// What the writer last saw of the store, for `/readyz`.
#[derive(Default)]
pub struct WriterHealth {
    last_error: Mutex<Option<String>>,
    /// The highest `seq` committed so far, for the sinks.
    committed_seq: AtomicI64,
}

impl WriterHealth {
    /// The highest `seq` committed so far: every event up to it is in the store (or was
    /// deleted since).
    pub fn committed_seq(&self) -> i64 {
        self.committed_seq.load(Ordering::Acquire)
    }

    fn committed(&self, next_seq: i64) {
        self.committed_seq.store(next_seq - 1, Ordering::Release);
    }

    /// `None` when the last commit succeeded (or none was tried yet).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    fn set(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }
}

/// A running writer thread.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    pub health: Arc<WriterHealth>,
}

impl Writer {
    /// Stop after committing everything still queued, and wait for that to finish.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.handle.join().is_err() {
            warn!("store writer thread panicked during shutdown");
        }
    }
}

/// Start the writer thread. It runs until [`Writer::shutdown`] or until every sender is gone.
pub fn spawn_writer(
    store: Store,
    enricher: Enricher,
    rx: EventReceiver,
    ingest: Receiver<Submission>,
    cfg: Pipeline,
    metrics: Arc<Metrics>,
) -> std::io::Result<Writer> {
    let stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(WriterHealth::default());
    health.committed(store.next_seq().map_err(std::io::Error::other)?);
    let (s, h) = (stop.clone(), health.clone());
    let handle = std::thread::Builder::new()
        .name("tollgate-writer".into())
        .spawn(move || run(store, enricher, rx, ingest, cfg, metrics, s, h))?;
    Ok(Writer {
        stop,
        handle,
        health,
    })
}

struct State {
    store: Store,
    enricher: Enricher,
    /// Set while committing a full batch with more events queued behind it: the writer is
    /// under load, and the batch's page views may wait up to [`crate::store::FOLD_EVERY`] to
    /// be folded into `sessions` (the commit that empties the queue folds them).
    behind: bool,
    next_seq: Option<i64>,
    metrics: Arc<Metrics>,
    health: Arc<WriterHealth>,
}

#[allow(clippy::too_many_arguments)]
fn run(
    store: Store,
    enricher: Enricher,
    rx: EventReceiver,
    ingest: Receiver<Submission>,
    cfg: Pipeline,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    health: Arc<WriterHealth>,
) {
    let mut st = State {
        store,
        enricher,
        behind: false,
        next_seq: None,
        metrics,
        health,
    };
    let mut batch: Vec<Box<Event>> = Vec::with_capacity(cfg.batch_size);
    // When the writer first saw the oldest event of the pending batch.
    let mut oldest: Option<Instant> = None;
    // The writer polls the proxy's queue instead of blocking in recv(): a blocked receiver
    // must be woken by every send, a futex syscall on the proxy's hot path for each event.
    // Polling costs the queue at most one tick of latency, which the age check below accounts
    // for. Between polls it waits on the ingestion channel, whose callers are waiting for
    // their commit and so should wake it at once.
    let tick = (cfg.flush_interval / 10).clamp(Duration::from_millis(1), Duration::from_millis(50));
    let mut submissions: Vec<Submission> = Vec::new();
    // Whether the last pass left events in the queue (a flood): then the next pass starts at
    // once instead of waiting a tick.
    let mut behind = false;
    let mut prune_keys_at = Instant::now();
    loop {
        if Instant::now() >= prune_keys_at {
            st.prune_keys();
            prune_keys_at = Instant::now() + PRUNE_KEYS_EVERY;
        }
        let wait = if behind { Duration::ZERO } else { tick };
        match ingest.recv_timeout(wait) {
            Ok(s) => submissions.push(s),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        submissions.extend(ingest.try_iter());
        let stopping = stop.load(Ordering::SeqCst);
        let taken = st.take_queued(&rx, &mut batch, &mut oldest, &cfg, tick, stopping);
        behind = taken == Taken::TickOver;
        let disconnected = taken == Taken::Disconnected;
        st.metrics.queue_depth.set(rx.len() as i64);
        if !submissions.is_empty() {
            // Proxy events first, so that `seq` keeps arrival order across both paths.
            if !batch.is_empty() {
                st.commit(&mut batch);
            }
            st.commit_submissions(std::mem::take(&mut submissions));
        }
        if batch.is_empty() {
            oldest = None;
            if taken == Taken::Empty && st.store.has_unfolded() {
                // Idle: the page views left unfolded under load go into `sessions` now.
                st.fold_pending();
            }
        } else {
            let seen = *oldest.get_or_insert_with(Instant::now);
            // One more tick may pass before the next check.
            let due = seen.elapsed() + tick >= cfg.flush_interval;
            if due || stopping || disconnected {
                st.commit(&mut batch);
                oldest = None;
            }
        }
        if stopping || disconnected {
            // Submissions that raced the stop are answered too.
            st.commit_submissions(ingest.try_iter().collect());
            st.fold_pending();
            // The queue was drained above: everything it held is committed.
            st.metrics.queue_depth.set(0);
            debug!("store writer stopped");
            return;
        }
    }
}

/// How [`State::take_queued`] ended.
#[derive(PartialEq, Eq)]
enum Taken {
    /// The queue is empty.
    Empty,
    /// The queue is empty and every sender is gone.
    Disconnected,
    /// The tick ran out with events still queued.
    TickOver,
}

// Events arrive boxed from the queue; moving them out of their boxes would copy each one.
#[allow(clippy::vec_box)]
impl State {
    /// Take what is queued into `batch`, committing whenever it is full; but for no longer
    /// than a tick at a time (unless `stopping`), so that under a flood waiting submissions
    /// and the age of the batch are still seen to (and acknowledged API events are not held up
    /// behind it). `oldest` is when the pending batch's first event was seen.
    fn take_queued(
        &mut self,
        rx: &EventReceiver,
        batch: &mut Vec<Box<Event>>,
        oldest: &mut Option<Instant>,
        cfg: &Pipeline,
        tick: Duration,
        stopping: bool,
    ) -> Taken {
        let pass = Instant::now();
        loop {
            if !stopping && pass.elapsed() >= tick {
                return Taken::TickOver;
            }
            match rx.try_recv() {
                Ok(mut e) => {
                    if oldest.is_none() {
                        *oldest = Some(Instant::now());
                    }
                    if !self.enrich(&mut e) {
                        continue;
                    }
                    batch.push(e);
                    if batch.len() >= cfg.batch_size {
                        self.behind = !rx.is_empty();
                        self.commit(batch);
                        self.behind = false;
                        *oldest = None;
                    }
                }
                Err(e) if e.is_disconnected() => return Taken::Disconnected,
                Err(_) => return Taken::Empty,
            }
        }
    }

    /// Fold the page views left out of `sessions` under load. A failure is logged; they are
    /// folded with the next commit, or past the watermark at the next start.
    fn fold_pending(&mut self) {
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.store.fold_pending()));
        match res {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "Folding page views into sessions failed."),
            Err(_) => warn!("Store writer panicked folding page views into sessions."),
        }
    }

    /// Delete the deduplication keys past their horizon. A failure is logged and tried again
    /// next time: the keys only take memory meanwhile.
    fn prune_keys(&mut self) {
        match self.store.prune_keys(crate::event::now_us()) {
            Ok(0) => {}
            Ok(deleted) => debug!(deleted, "Deduplication keys past the horizon deleted."),
            Err(error) => warn!(%error, "Deleting old deduplication keys failed; will try again."),
        }
    }

    /// Enrich one event. A panic in enrichment (a bug) drops that event and counts it: storing
    /// it half-done could keep the raw query or IP that enrichment exists to remove.
    fn enrich(&mut self, e: &mut Event) -> bool {
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.enricher.enrich(e)));
        if res.is_err() {
            warn!(event_id = %e.event_id, "Enrichment panicked; event dropped.");
            self.metrics.dropped_enrich_error.inc();
        }
        res.is_ok()
    }

    /// Enrich and commit submissions in one transaction (group commit), and tell each sender
    /// what happened to its events. Not retried here: the senders are waiting, and answer
    /// their clients with a retryable error instead.
    fn commit_submissions(&mut self, subs: Vec<Submission>) {
        if subs.is_empty() {
            return;
        }
        let mut groups = Vec::with_capacity(subs.len());
        let mut replies = Vec::with_capacity(subs.len());
        for Submission { mut events, reply } in subs {
            let total = events.len();
            events.retain_mut(|e| self.enrich(e));
            replies.push((reply, total - events.len()));
            groups.push(events);
        }
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let slices: Vec<&[Event]> = groups.iter().map(Vec::as_slice).collect();
            let seq = match self.next_seq {
                Some(s) => s,
                None => self.store.next_seq()?,
            };
            let written = self.store.append_new(seq, &slices)?;
            let next = seq + written.iter().sum::<usize>() as i64;
            self.next_seq = Some(next);
            self.health.committed(next);
            Ok::<_, crate::store::StoreError>(written)
        }));
        let outcome: Result<Vec<usize>, String> = match res {
            Ok(Ok(written)) => {
                self.metrics
                    .events_written
                    .inc_by(written.iter().sum::<usize>() as u64);
                self.health.set(None);
                Ok(written)
            }
            Ok(Err(error)) => {
                self.next_seq = None;
                self.metrics.batches_failed.inc();
                warn!(%error, submissions = groups.len(), "Ingest commit failed.");
                self.health.set(Some(error.to_string()));
                Err(error.to_string())
            }
            Err(_) => {
                self.next_seq = None;
                self.store.reload_keys();
                warn!(
                    submissions = groups.len(),
                    "Store writer panicked on ingest submissions."
                );
                Err("internal error in the store writer".to_string())
            }
        };
        for (i, (reply, dropped)) in replies.into_iter().enumerate() {
            let answer = match &outcome {
                Err(e) => Err(e.clone()),
                Ok(_) if dropped > 0 => Err(format!(
                    "{dropped} events could not be enriched (an internal error); the others were committed"
                )),
                Ok(written) => Ok(Committed {
                    written: written[i],
                    duplicates: groups[i].len() - written[i],
                }),
            };
            // The sender may have gone (its client disconnected); the events are committed
            // all the same, and a retry is deduplicated.
            let _ = reply.send(answer);
        }
    }

    /// Commit `batch` (retrying briefly), then clear it. Failed events are dropped and counted:
    /// a broken store degrades analytics, never the proxy.
    fn commit(&mut self, batch: &mut Vec<Box<Event>>) {
        // A panic inside the store (a bug, or a driver surprise) must not end the writer: the
        // batch is dropped and counted, and the next one is tried.
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit_inner(batch)));
        if let Err(panic) = res {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            warn!(panic = %msg, events = batch.len(), "Store writer panicked; batch dropped.");
            self.next_seq = None;
            self.health
                .set(Some(format!("store writer panicked: {msg}")));
            self.metrics.dropped_store_error.inc_by(batch.len() as u64);
            batch.clear();
        }
    }

    fn commit_inner(&mut self, batch: &mut Vec<Box<Event>>) {
        for attempt in 1..=ATTEMPTS {
            let started = Instant::now();
            match self.try_commit(batch) {
                Ok(()) => {
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.events_written.inc_by(batch.len() as u64);
                    self.health.set(None);
                    batch.clear();
                    return;
                }
                Err(error) => {
                    self.metrics.batches_failed.inc();
                    self.next_seq = None;
                    warn!(%error, attempt, events = batch.len(), "Store commit failed.");
                    self.health.set(Some(error.to_string()));
                    if attempt < ATTEMPTS {
                        std::thread::sleep(Duration::from_millis(100 * attempt as u64));
                    }
                }
            }
        }
        self.metrics.dropped_store_error.inc_by(batch.len() as u64);
        batch.clear();
    }

    fn try_commit(&mut self, batch: &[Box<Event>]) -> Result<(), crate::store::StoreError> {
        let seq = match self.next_seq {
            Some(s) => s,
            None => self.store.next_seq()?,
        };
        if self.behind {
            self.store.append_deferring(seq, batch)?;
        } else {
            self.store.append(seq, batch)?;
        }
        self.next_seq = Some(seq + batch.len() as i64);
        self.health.committed(seq + batch.len() as i64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    fn count(store_reader: &duckdb::Connection) -> i64 {
        store_reader
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap()
    }

    /// A queue of `capacity` events, and what starts a writer on it with batches of
    /// `batch_size` and a flush interval of 100 ms (no ingestion submissions).
    fn queue(
        capacity: usize,
        batch_size: usize,
    ) -> (crate::pipeline::EventSender, impl FnOnce(Store) -> Writer) {
        queue_of(capacity, 64 << 20, batch_size)
    }

    /// [`queue`] of at most `max_bytes`.
    fn queue_of(
        capacity: usize,
        max_bytes: usize,
        batch_size: usize,
    ) -> (crate::pipeline::EventSender, impl FnOnce(Store) -> Writer) {
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = crate::pipeline::channel(capacity, max_bytes, metrics.clone());
        let cfg = Pipeline {
            queue_capacity: capacity,
            queue_max_bytes: max_bytes,
            batch_size,
            flush_interval: Duration::from_millis(100),
            background_nice: 0,
        };
        let start = move |store| {
            let settings = crate::config::Settings::defaults("http://127.0.0.1:1").unwrap();
            let enricher = Enricher::new(&settings).unwrap();
            let (_ingest_tx, ingest_rx) = crate::pipeline::submit::channel();
            spawn_writer(store, enricher, rx, ingest_rx, cfg, metrics).unwrap()
        };
        (tx, start)
    }

    /// A commit far larger than `store.idle_memory_limit` (60,000 events of about 2 KiB into a
    /// 16 MiB limit) is written whole: every commit holds the whole memory limit while it runs
    /// (`Budget::lend_memory`).
    #[test]
    fn a_commit_larger_than_the_idle_memory_limit_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::config::StoreOptions {
            memory_limit: 512 << 20,
            idle_memory_limit: 16 << 20,
            ..Default::default()
        };
        let store = Store::open_with(dir.path(), &options).unwrap();
        let budget = store.budget();
        assert_eq!(budget.current().memory, 16 << 20);
        let reader = store.reader().unwrap();
        let n = 60_000;
        let (tx, start) = queue_of(n, 1 << 30, n);
        for i in 0..n {
            tx.send(Box::new(crate::store::large_page_view(i)));
        }
        // Shutdown commits what is queued: one commit of all of them, nothing reading beside.
        let writer = start(store);
        let health = writer.health.clone();
        writer.shutdown();
        // It borrowed the whole limit for the commit, and gave it back.
        assert_eq!(budget.current().memory, 16 << 20);
        let _whole = budget.lend().unwrap();
        assert_eq!(count(&reader), n as i64, "{:?}", health.last_error());
        assert_eq!(health.last_error(), None);
    }

    /// A lone event in a batch far from full is committed by age, not held for company.
    #[test]
    fn a_partial_batch_is_committed_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = store.reader().unwrap();
        let (tx, start) = queue(16, 1000);
        let writer = start(store);
        for round in 1..=3 {
            tx.send(Box::new(Event::now("page_view", "t", Source::Proxy)));
            let start = Instant::now();
            while count(&reader) < round && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(count(&reader), round, "event {round} was not committed");
        }
        tx.send(Box::new(Event::now("page_view", "t", Source::Proxy)));
        writer.shutdown();
        assert_eq!(count(&reader), 4, "shutdown commits what is queued");
    }

    /// Under a flood the writer leaves the fold of page views into `sessions` to a later
    /// commit; once the queue is drained, every page view is in a session.
    #[test]
    fn page_views_of_a_flood_all_reach_their_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = store.reader().unwrap();
        let (tx, start) = queue(4096, 50);
        let sessions: Vec<uuid::Uuid> = (0..40).map(|_| uuid::Uuid::now_v7()).collect();
        // Queued before the writer starts, so that it finds full batches with more behind.
        for i in 0..3000 {
            let mut e = Event::now("page_view", "t", Source::Proxy);
            e.session_id = Some(sessions[i % sessions.len()]);
            e.visitor_id = Some(uuid::Uuid::from_u128(i as u128 % 40));
            tx.send(Box::new(e));
        }
        let writer = start(store);
        let folded = || -> (i64, i64) {
            reader
                .query_row(
                    "SELECT (SELECT count(*) FROM events), \
                     (SELECT coalesce(sum(pageviews), 0)::BIGINT FROM sessions)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap()
        };
        let start = Instant::now();
        while folded() != (3000, 3000) && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(folded(), (3000, 3000), "events, and page views in sessions");
        let rows: i64 = reader
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 40);
        writer.shutdown();
    }
}
