//! The store writer: one thread that enriches each event as it leaves the queue, owns the write
//! connection, and commits events in groups, by size or by age, in one transaction per group.
//!
//! Proxy events are appended to an open transaction ([`Store::stage`]) a chunk of
//! [`CHUNK`] at a time, so the writer holds at most a chunk of them itself; the
//! transaction is committed when it holds `pipeline.batch_size` events (or [`STAGED_TEXT`]
//! of text), or when its oldest is
//! `pipeline.flush_interval_ms` old, unless the traffic is steady enough to fill the batch
//! within `pipeline.bulk_wait_ms` (then the writer waits for it: whole row groups are written
//! compressed, not through DuckDB's log). Ingestion submissions are committed as soon as they
//! arrive, past the open transaction (the proxy events taken so far are staged first, so
//! that `seq` keeps arrival order); the sinks are told of them once the events before them
//! are committed too.

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

/// Proxy events the writer gathers before appending them to the open transaction: two of
/// DuckDB's vectors.
const CHUNK: usize = 4096;

/// Bytes of text the open transaction holds at most before it is committed, whatever its
/// count: a row group of ordinary proxy events holds about 30 MiB (and DuckDB about 56 MiB for
/// it), but a flood of requests with long paths or user agents must not make DuckDB hold
/// 122,880 of them before writing them out.
const STAGED_TEXT: usize = 48 << 20;

/// How often the writer deletes the deduplication keys past `store.dedup_days` (and once at
/// start): often enough that each pass deletes a few minutes' keys, not a day's.
const PRUNE_KEYS_EVERY: Duration = Duration::from_secs(600);

/// How often at most the writer folds at rest what commits left unfolded: events that only
/// tie visitors to users are not folded by the commit that writes them (the reports read them
/// from past the watermark meanwhile). A fold merges into whole tables; one per ingestion
/// request, when each tied a thousand visitors, cost `/v1/batch` a third of its throughput
/// (`BENCHMARKS.md`).
const IDLE_FOLD_EVERY: Duration = Duration::from_secs(1);

/// How often the writer at rest looks for a day that is over and has no page sketches yet
/// (`store`'s `sketches.rs`); when it finds one it builds it, and then the next at once.
const SKETCH_EVERY: Duration = Duration::from_secs(1);

/// How often the writer under load looks for such a day, and builds it: a day of 160,000
/// page views and 160,000 API calls (the 10M-event benchmark store's) takes it about 0.8 s
/// (page and breakdown sketches, API latencies), so catching up on a month costs the proxy's
/// events at most a twelfth of the writer's time (once caught up, one day a day), and looking
/// costs them nothing measurable (a few small queries, a few milliseconds, every 10 s).
const SKETCH_UNDER_LOAD_EVERY: Duration = Duration::from_secs(10);

/// The most a day's build may cost for the writer to build it under load, in page views (an
/// API call counts as a quarter of one; the larger days wait until it is at rest): a build
/// takes about 4 µs a page view and 1.1 µs a call (`BENCHMARKS.md`), so this is about 1.1 s,
/// while the proxy's queue takes up to 41,000 events at 37,000 requests/s (under two thirds
/// of its default 65,536) instead of overflowing.
const SKETCH_UNDER_LOAD_MAX_WORK: i64 = 270_000;

/// What the writer last saw of the store, for `/readyz`.
#[derive(Default)]
pub struct WriterHealth {
    last_error: Mutex<Option<String>>,
    /// The end of the unbroken run of committed `seq`s, for the sinks.
    committed_seq: AtomicI64,
}

impl WriterHealth {
    /// Every event up to this `seq` is in the store (or was deleted since, or lost to a
    /// failed commit for good); an event after it may not be committed yet.
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
    timezone: chrono_tz::Tz,
) -> std::io::Result<Writer> {
    let stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(WriterHealth::default());
    health.committed(store.next_seq().map_err(std::io::Error::other)?);
    let (s, h) = (stop.clone(), health.clone());
    let handle = std::thread::Builder::new()
        .name("tollgate-writer".into())
        .spawn(move || run(store, enricher, rx, ingest, cfg, metrics, timezone, s, h))?;
    Ok(Writer {
        stop,
        handle,
        health,
    })
}

struct State {
    store: Store,
    enricher: Enricher,
    /// The site's time zone, whose days the page sketches are built for.
    timezone: chrono_tz::Tz,
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
    timezone: chrono_tz::Tz,
    stop: Arc<AtomicBool>,
    health: Arc<WriterHealth>,
) {
    let mut st = State {
        store,
        enricher,
        timezone,
        next_seq: None,
        metrics,
        health,
    };
    let chunk = cfg.batch_size.min(CHUNK);
    let mut batch: Vec<Box<Event>> = Vec::with_capacity(chunk);
    // When the writer first saw the oldest event not committed yet (staged or in `batch`).
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
    // When the writer may next fold at rest (`IDLE_FOLD_EVERY`).
    let mut idle_fold_at = Instant::now();
    // When the writer may next build a day's page sketches (`SKETCH_EVERY`).
    let mut sketch_at = Instant::now();
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
        let until = if stopping {
            Until::Empty
        } else {
            Until::Tick(tick)
        };
        let taken = st.take_queued(&rx, &mut batch, &mut oldest, &cfg, chunk, until);
        behind = taken == Taken::TickOver;
        let disconnected = taken == Taken::Disconnected;
        st.metrics.queue_depth.set(rx.len() as i64);
        if !submissions.is_empty() {
            if submissions.iter().any(|s| s.events.is_empty()) {
                // A flush (`forget`): what is still queued goes in too, even under a flood,
                // and everything staged is committed.
                let queued = Until::Count(rx.len());
                st.take_queued(&rx, &mut batch, &mut oldest, &cfg, chunk, queued);
                st.commit(&mut batch);
                oldest = None;
            } else {
                // Proxy events first, so that `seq` keeps arrival order across both paths;
                // but only staged: the submissions are committed past the open transaction,
                // which a site's browser and server events would otherwise cut short.
                st.stage(&mut batch);
            }
            st.commit_submissions(std::mem::take(&mut submissions));
        }
        let pending = batch.len() + st.store.staged_rows();
        if pending == 0 {
            oldest = None;
            if taken == Taken::Empty && st.store.has_unfolded() && Instant::now() >= idle_fold_at {
                // At rest: what commits left unfolded (events that only stitch visitors, a
                // fold that failed) goes into the derived tables now.
                st.fold_pending();
                idle_fold_at = Instant::now() + IDLE_FOLD_EVERY;
            }
        } else {
            let seen = *oldest.get_or_insert_with(Instant::now);
            // One more tick may pass before the next check.
            let age = seen.elapsed() + tick;
            if stopping || disconnected || due(age, pending, &cfg) {
                st.commit(&mut batch);
                oldest = None;
            }
        }
        if !stopping && !disconnected && Instant::now() >= sketch_at {
            let at_rest = taken == Taken::Empty && batch.is_empty() && st.store.staged_rows() == 0;
            let built = st.sketch_a_day(at_rest);
            sketch_at = Instant::now()
                + match (built, at_rest) {
                    (true, true) => Duration::ZERO,
                    (false, true) => SKETCH_EVERY,
                    (_, false) => SKETCH_UNDER_LOAD_EVERY,
                };
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

/// Whether `pending` events, the oldest `age` old, are due to be committed: at the flush
/// interval, unless the rate since the oldest would fill a batch within the bulk wait (then at
/// the bulk wait, or when the batch is full).
fn due(age: Duration, pending: usize, cfg: &Pipeline) -> bool {
    if age < cfg.flush_interval {
        return false;
    }
    if age >= cfg.bulk_wait {
        return true;
    }
    // Seconds the batch would take to fill at the rate since the oldest (f64: no overflow).
    let fill = age.as_secs_f64() * cfg.batch_size as f64 / pending.max(1) as f64;
    fill > cfg.bulk_wait.as_secs_f64()
}

/// How long [`State::take_queued`] takes events.
#[derive(Clone, Copy)]
enum Until {
    /// A tick: under a flood the writer still sees to submissions and ages.
    Tick(Duration),
    /// The queue is empty: when stopping.
    Empty,
    /// This many are taken: what was queued when a flush came.
    Count(usize),
}

/// How [`State::take_queued`] ended.
#[derive(PartialEq, Eq)]
enum Taken {
    /// The queue is empty.
    Empty,
    /// The queue is empty and every sender is gone.
    Disconnected,
    /// The tick (or the count) ran out with events perhaps still queued.
    TickOver,
}

// Events arrive boxed from the queue; moving them out of their boxes would copy each one.
#[allow(clippy::vec_box)]
impl State {
    /// Take what is queued into `batch`, staging it whenever it holds `chunk` events and
    /// committing whenever `pipeline.batch_size` are staged, for as long as `until` says: a
    /// tick at a time, so that under a flood waiting submissions and the age of the batch are
    /// still seen to (and acknowledged API events are not held up behind it); everything when
    /// stopping; a count for a flush. `oldest` is when the first event not committed yet was
    /// seen.
    fn take_queued(
        &mut self,
        rx: &EventReceiver,
        batch: &mut Vec<Box<Event>>,
        oldest: &mut Option<Instant>,
        cfg: &Pipeline,
        chunk: usize,
        until: Until,
    ) -> Taken {
        let pass = Instant::now();
        let mut taken = 0;
        loop {
            match until {
                Until::Tick(tick) if pass.elapsed() >= tick => return Taken::TickOver,
                Until::Count(n) if taken >= n => return Taken::TickOver,
                _ => {}
            }
            match rx.try_recv() {
                Ok(e) => {
                    taken += 1;
                    self.take(e, batch, oldest, cfg, chunk);
                }
                Err(e) if e.is_disconnected() => return Taken::Disconnected,
                Err(_) => return Taken::Empty,
            }
        }
    }

    /// Enrich one event into `batch`, staging the batch when it holds a chunk and committing
    /// when the open transaction is full.
    fn take(
        &mut self,
        mut e: Box<Event>,
        batch: &mut Vec<Box<Event>>,
        oldest: &mut Option<Instant>,
        cfg: &Pipeline,
        chunk: usize,
    ) {
        if oldest.is_none() {
            *oldest = Some(Instant::now());
        }
        if !self.enrich(&mut e) {
            return;
        }
        batch.push(e);
        let full = batch.len() + self.store.staged_rows() >= cfg.batch_size
            || self.store.staged_text() >= STAGED_TEXT;
        if full {
            self.commit(batch);
            *oldest = None;
        } else if batch.len() >= chunk {
            self.stage(batch);
        }
    }

    /// Fold the events left out of the derived tables (`sessions`, `pageview_hours`,
    /// `persons`) under load. A failure is logged; they are folded with the next commit, or
    /// past the watermark at the next start.
    fn fold_pending(&mut self) {
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.store.fold_pending()));
        match res {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(%error, "Folding events into sessions, page view hours and persons failed.")
            }
            Err(_) => warn!(
                "Store writer panicked folding events into sessions, page view hours and persons."
            ),
        }
    }

    /// Build the page sketches of one day that is over and has none. Returns whether it
    /// built one. A failure is logged; the day is tried again later, and the reports count
    /// it from the events meanwhile.
    fn sketch_a_day(&mut self, at_rest: bool) -> bool {
        let tz = self.timezone;
        let most = (!at_rest).then_some(SKETCH_UNDER_LOAD_MAX_WORK);
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.store.sketch_a_day(tz, most)
        }));
        match res {
            Ok(Ok(day)) => day.is_some(),
            Ok(Err(error)) => {
                warn!(%error, "Building a day's page sketches failed; will try again.");
                false
            }
            Err(_) => {
                warn!("Store writer panicked building a day's page sketches.");
                false
            }
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
            let seq = self.next_seq()?;
            let written = self.store.append_new(seq, &slices)?;
            let next = seq + written.iter().sum::<usize>() as i64;
            self.next_seq = Some(next);
            self.durable();
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

    /// Append `batch` to the open transaction, numbered on from the last event, and clear
    /// it. On a failure the transaction is lost with every event in it: dropped and counted,
    /// as a broken store degrades analytics, never the proxy.
    fn stage(&mut self, batch: &mut Vec<Box<Event>>) {
        if batch.is_empty() {
            return;
        }
        let before = self.store.staged_rows();
        // A panic inside the store (a bug, or a driver surprise) must not end the writer.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let seq = self.next_seq()?;
            self.store.stage(seq, batch)?;
            self.next_seq = Some(seq + batch.len() as i64);
            Ok::<_, crate::store::StoreError>(())
        }));
        let n = batch.len();
        batch.clear();
        if let Err(error) = caught(res) {
            self.lost(before + n, &error);
        }
    }

    /// Stage what `batch` holds, commit the open transaction, and fold its page views into
    /// `sessions`.
    fn commit(&mut self, batch: &mut Vec<Box<Event>>) {
        self.stage(batch);
        let rows = self.store.staged_rows();
        if rows == 0 {
            return;
        }
        let started = Instant::now();
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.store.commit_staged()));
        match caught(res) {
            Ok(()) => {
                self.metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.events_written.inc_by(rows as u64);
                self.health.set(None);
                self.durable();
                self.fold_pending();
            }
            Err(error) => self.lost(rows, &error),
        }
    }

    /// The `seq` the next event gets: after a failure, read from the store again, but never
    /// at or below what the sinks were told is committed (a lost event's `seq` may be handed
    /// out again only while no sink can have moved past it).
    fn next_seq(&mut self) -> Result<i64, crate::store::StoreError> {
        if let Some(s) = self.next_seq {
            return Ok(s);
        }
        let s = self.store.next_seq()?.max(self.health.committed_seq() + 1);
        self.next_seq = Some(s);
        Ok(s)
    }

    /// Tell the sinks how far every event is committed: up to the open staging transaction's
    /// first, or everything numbered so far (read from the store after a failure).
    fn durable(&mut self) {
        let next = match self.store.staged_first() {
            Some(first) => Ok(first),
            None => self.next_seq(),
        };
        match next {
            Ok(next) => self.health.committed(next),
            Err(error) => warn!(%error, "Reading the next seq failed; the sinks wait."),
        }
    }

    /// `events` proxy events are lost to a failed stage or commit: the open transaction is
    /// rolled back (a failed stage or commit has done so already; a panic has not), the events
    /// counted, and the store's next `seq` read again. What was committed past them is shipped
    /// on.
    fn lost(&mut self, events: usize, error: &str) {
        warn!(%error, events, "Store commit failed; its events are dropped.");
        self.store.abandon_staged();
        self.next_seq = None;
        self.durable();
        self.metrics.batches_failed.inc();
        self.metrics.dropped_store_error.inc_by(events as u64);
        self.health.set(Some(error.to_string()));
    }
}

/// A store call run under `catch_unwind`: its value, or what its error or panic said.
fn caught<T>(res: std::thread::Result<Result<T, crate::store::StoreError>>) -> Result<T, String> {
    match res {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("store writer panicked: {msg}"))
        }
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

    /// A writer with the default enrichment, in UTC.
    fn spawn(
        store: Store,
        rx: EventReceiver,
        ingest_rx: Receiver<Submission>,
        cfg: Pipeline,
        metrics: Arc<Metrics>,
    ) -> Writer {
        let settings = crate::config::Settings::defaults("http://127.0.0.1:1").unwrap();
        let enricher = Enricher::new(&settings).unwrap();
        spawn_writer(
            store,
            enricher,
            rx,
            ingest_rx,
            cfg,
            metrics,
            chrono_tz::Tz::UTC,
        )
        .unwrap()
    }

    /// A queue of `capacity` events, and what starts a writer on it with batches of
    /// `batch_size` and a flush interval of 100 ms (no ingestion submissions, no bulk wait).
    fn queue(
        capacity: usize,
        batch_size: usize,
    ) -> (crate::pipeline::EventSender, impl FnOnce(Store) -> Writer) {
        let (tx, _, start) = queue_of(capacity, 64 << 20, batch_size, Duration::ZERO);
        (tx, start)
    }

    /// [`queue`] of at most `max_bytes`, with a bulk wait.
    fn queue_of(
        capacity: usize,
        max_bytes: usize,
        batch_size: usize,
        bulk_wait: Duration,
    ) -> (
        crate::pipeline::EventSender,
        crate::pipeline::submit::IngestSender,
        impl FnOnce(Store) -> Writer,
    ) {
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = crate::pipeline::channel(capacity, max_bytes, metrics.clone());
        let (ingest_tx, ingest_rx) = crate::pipeline::submit::channel();
        let cfg = Pipeline {
            queue_capacity: capacity,
            queue_max_bytes: max_bytes,
            batch_size,
            flush_interval: Duration::from_millis(100),
            bulk_wait,
            background_nice: 0,
        };
        let start = move |store| spawn(store, rx, ingest_rx, cfg, metrics);
        (tx, ingest_tx, start)
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
        let (tx, _, start) = queue_of(n, 1 << 30, n, Duration::ZERO);
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

    /// At rest the writer builds the page sketches of the days that are over, one after the
    /// other, and not of the days that are not.
    #[test]
    fn the_writer_sketches_the_days_that_are_over_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = store.reader().unwrap();
        let (tx, start) = queue(16, 1000);
        let writer = start(store);
        let day = 86_400_000_000;
        for ago in [0, 1, 3, 4, 5] {
            let mut e = Event::now("page_view", "t", Source::Proxy);
            e.ts_us -= ago * day;
            e.path = Some(format!("/{ago}"));
            e.user_agent = Some(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/120.0 Safari/537.36"
                    .into(),
            );
            tx.send(Box::new(e));
        }
        let sketched = || -> i64 {
            reader
                .query_row("SELECT count(*) FROM page_sketch_days", [], |r| r.get(0))
                .unwrap()
        };
        // Today is not over; yesterday is from 01:00 on (in UTC, the writer's zone here).
        let over = || {
            let now = chrono::DateTime::from_timestamp_micros(crate::event::now_us())
                .unwrap()
                .naive_utc();
            let last = crate::store::last_sketch_day(chrono_tz::Tz::UTC, now);
            let today = now.date();
            [0, 1, 3, 4, 5]
                .into_iter()
                .filter(|ago| today - chrono::Duration::days(*ago) <= last)
                .count() as i64
        };
        let want = over();
        let started = Instant::now();
        while sketched() < want && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(1500));
        // (Unless 01:00 passed meanwhile.)
        let want = [want, over()];
        assert!(want.contains(&sketched()), "{} built, {want:?}", sketched());
        let paths: i64 = reader
            .query_row("SELECT count(DISTINCT path) FROM page_sketches", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(want.contains(&paths), "{paths} paths, {want:?}");
        writer.shutdown();
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

    /// Pending events are due at the flush interval, unless the rate so far fills a batch
    /// within the bulk wait; at the bulk wait always.
    #[test]
    fn the_bulk_wait_holds_only_steady_traffic() {
        let cfg = Pipeline {
            queue_capacity: 1,
            queue_max_bytes: 1,
            batch_size: 122_880,
            flush_interval: Duration::from_secs(1),
            bulk_wait: Duration::from_secs(15),
            background_nice: 0,
        };
        let s = Duration::from_secs;
        assert!(
            !due(Duration::from_millis(900), 1, &cfg),
            "before the interval"
        );
        assert!(due(s(1), 5_000, &cfg), "5k/s fills a batch in 24.6 s");
        assert!(!due(s(1), 10_000, &cfg), "10k/s fills it in 12.3 s");
        assert!(!due(s(12), 120_000, &cfg));
        assert!(due(s(15), 120_000, &cfg), "the bulk wait is the longest");
        let off = Pipeline {
            bulk_wait: Duration::ZERO,
            ..cfg
        };
        assert!(
            due(s(1), 100_000, &off),
            "no bulk wait: at the flush interval"
        );
    }

    /// Under steady traffic the events go into one open transaction, chunk by chunk, unseen
    /// by readers past the flush interval, and are committed together when the batch is full.
    #[test]
    fn steady_traffic_is_committed_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = store.reader().unwrap();
        let (tx, _, start) = queue_of(20_000, 64 << 20, 10_000, Duration::from_secs(60));
        let writer = start(store);
        let burst = |i: usize| {
            for _ in 0..1000 {
                let mut e = Event::now("page_view", "t", Source::Proxy);
                e.path = Some(format!("/{i}"));
                tx.send(Box::new(e));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (0..6).for_each(burst);
        // 6,000 events over 300 ms, three times the flush interval: held back.
        assert_eq!(count(&reader), 0);
        (6..10).for_each(burst);
        let start = Instant::now();
        while count(&reader) < 10_000 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(count(&reader), 10_000, "the full batch is committed");
        let seqs: (i64, i64) = reader
            .query_row("SELECT min(seq), max(seq) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(seqs, (1, 10_000));
        writer.shutdown();
    }

    /// A submission (an ingestion request, waiting for its commit) is committed past the open
    /// transaction, which stays open: a site's browser and server events do not cut the
    /// proxy's row groups short. The sinks' head stays below the open transaction's events,
    /// and the submission's page view reaches `sessions` once those are committed too.
    #[test]
    fn a_submission_is_committed_past_the_open_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = store.reader().unwrap();
        let (tx, ingest, start) = queue_of(20_000, 64 << 20, 10_000, Duration::from_secs(60));
        let writer = start(store);
        let health = writer.health.clone();
        let session = Some(uuid::Uuid::now_v7());
        let burst = |n: usize| {
            for _ in 0..n {
                let mut e = Event::now("page_view", "t", Source::Proxy);
                e.session_id = session;
                tx.send(Box::new(e));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (0..6).for_each(|_| burst(1000));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut view = Event::now("page_view", "t", Source::Server);
        view.session_id = session;
        let events = vec![Event::now("purchased", "t", Source::Server), view];
        let committed = rt.block_on(ingest.submit(events)).unwrap();
        assert_eq!(committed.written, 2);
        // Only the submission is committed; the 6,000 proxy events before it are not, so the
        // sinks may not ship past them.
        assert_eq!(count(&reader), 2, "the proxy's events stay staged");
        assert_eq!(health.committed_seq(), 0, "the sinks' head");
        let folded = || -> i64 {
            reader
                .query_row(
                    "SELECT coalesce(sum(pageviews), 0)::BIGINT FROM sessions",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(folded(), 0, "no page view folded past the open transaction");
        (6..10).for_each(|_| burst(1000));
        let start = Instant::now();
        while folded() < 10_001 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(count(&reader), 10_002, "the full batch is committed");
        assert_eq!(folded(), 10_001, "every page view, the submission's too");
        let seqs: (i64, i64, i64) = reader
            .query_row(
                "SELECT min(seq), max(seq), count(DISTINCT seq) FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(seqs, (1, 10_002, 10_002));
        assert_eq!(health.committed_seq(), 10_002);
        writer.shutdown();
    }

    /// A writer's state on a new store, as [`run`] starts it.
    fn state(dir: &std::path::Path) -> State {
        let store = Store::open(dir).unwrap();
        let settings = crate::config::Settings::defaults("http://127.0.0.1:1").unwrap();
        let health = Arc::new(WriterHealth::default());
        health.committed(store.next_seq().unwrap());
        State {
            store,
            enricher: Enricher::new(&settings).unwrap(),
            timezone: chrono_tz::Tz::UTC,
            next_seq: None,
            metrics: Arc::new(Metrics::new()),
            health,
        }
    }

    /// `n` proxy page views, boxed as the queue hands them over.
    #[allow(clippy::vec_box)]
    fn views(n: usize) -> Vec<Box<Event>> {
        (0..n)
            .map(|_| Box::new(Event::now("page_view", "t", Source::Proxy)))
            .collect()
    }

    /// Staged events lost to a failed commit are not reported to the sinks as committed: the
    /// sinks' head stays below them, and the events after them may take their `seq`s without
    /// a sink having moved past those (it would never ship the new owners).
    #[test]
    fn lost_staged_events_do_not_move_the_sinks_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        st.stage(&mut views(100));
        // What `commit` does when the COMMIT fails.
        st.store.abandon_staged();
        st.lost(100, "a failed commit");
        assert_eq!(st.health.committed_seq(), 0, "the sinks' head");
        st.commit(&mut views(50));
        let seqs: (i64, i64) = st
            .store
            .connection()
            .query_row("SELECT min(seq), max(seq) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(st.health.committed_seq(), seqs.1);
        assert!(seqs.0 > st.health.committed_seq() - 50, "{seqs:?}");
    }

    /// After a failed submission (which leaves the writer to read its next `seq` from the
    /// store again), the commit of the staged events still tells the sinks.
    #[test]
    fn a_commit_after_a_failed_submission_moves_the_sinks_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        st.stage(&mut views(10));
        // What a failed submission leaves.
        st.next_seq = None;
        st.commit(&mut Vec::new());
        assert_eq!(st.health.committed_seq(), 10, "the sinks' head");
    }

    /// A flood of large events (about 2 KiB of text each) is committed once the open
    /// transaction holds [`STAGED_TEXT`] of text, not held back until the batch is full.
    #[test]
    fn the_open_transaction_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = store.reader().unwrap();
        let n = 30_000;
        let (tx, _, start) = queue_of(n, 1 << 30, 100_000, Duration::from_secs(60));
        for i in 0..n {
            tx.send(Box::new(crate::store::large_page_view(i)));
        }
        let writer = start(store);
        let start = Instant::now();
        while count(&reader) == 0 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = count(&reader);
        // Enrichment adds text (the route repeats the path): at most as much again.
        let text = crate::store::large_page_view(0).text_bytes();
        assert!(
            (STAGED_TEXT / (2 * text)..n - 1000).contains(&(first as usize)),
            "committed {first} of {n} events of {text} bytes"
        );
        writer.shutdown();
        assert_eq!(count(&reader), n as i64);
    }

    /// A flush (what `forget` sends) commits every event queued before it, even when there
    /// are more than the writer takes in a tick: 50,000 queued, and the flush already waiting
    /// when the writer starts.
    #[test]
    fn a_flush_commits_everything_queued_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = store.reader().unwrap();
        let metrics = Arc::new(Metrics::new());
        let n = 50_000;
        let (tx, rx) = crate::pipeline::channel(n, 1 << 30, metrics.clone());
        for _ in 0..n {
            tx.send(Box::new(Event::now("page_view", "t", Source::Proxy)));
        }
        let (ingest, ingest_rx) = crate::pipeline::submit::channel();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let flushed = rt.spawn(async move { ingest.flush().await });
        std::thread::sleep(Duration::from_millis(100));
        let cfg = Pipeline {
            queue_capacity: n,
            queue_max_bytes: 1 << 30,
            batch_size: 122_880,
            flush_interval: Duration::from_millis(100),
            bulk_wait: Duration::from_secs(60),
            background_nice: 0,
        };
        let writer = spawn(store, rx, ingest_rx, cfg, metrics);
        rt.block_on(flushed).unwrap().unwrap();
        assert_eq!(
            count(&reader),
            n as i64,
            "committed when the flush was answered"
        );
        writer.shutdown();
    }
}
