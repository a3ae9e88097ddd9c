//! The loop each sink runs on its own thread: wait for a batch, ship it, move the offset.

use super::{state, Outcome, Range, Sink};
use crate::config::SinkSettings;
use crate::metrics::{Metrics, SinkMetrics};
use crate::pipeline::WriterHealth;
use crate::store::{read_events, Record};
use duckdb::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The running sinks.
pub struct Sinks {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Sinks {
    /// Stop every sink after its current attempt, waiting at most `wait` for them. What was
    /// not acknowledged is shipped again at the next start.
    pub fn shutdown(self, wait: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + wait;
        for h in self.handles {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                warn!("A sink did not stop in time; its batch will be shipped again at the next start.");
            }
        }
    }
}

/// Start one thread per sink. `conns` holds a store connection for each, in order; `writer`
/// tells how far the store is committed; `budget` lends DuckDB's whole memory limit to a read
/// that ran out of the idle one.
pub fn spawn(
    sinks: &[SinkSettings],
    conns: Vec<Connection>,
    budget: Arc<crate::store::Budget>,
    writer: Arc<WriterHealth>,
    metrics: &Metrics,
) -> anyhow::Result<Sinks> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (cfg, conn) in sinks.iter().zip(conns) {
        let sink = super::build(&cfg.target, cfg.timeout)?;
        let ctl = Control {
            cfg: cfg.clone(),
            conn,
            budget: budget.clone(),
            writer: writer.clone(),
            stop: stop.clone(),
            metrics: metrics.sink(&cfg.name),
        };
        let handle = std::thread::Builder::new()
            .name(format!("tollgate-sink-{}", cfg.name))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds");
                rt.block_on(run(ctl, sink));
            })?;
        handles.push(handle);
        info!(sink = %cfg.name, target = %cfg.target.describe(), "Sink started.");
    }
    Ok(Sinks { stop, handles })
}

struct Control {
    cfg: SinkSettings,
    conn: Connection,
    budget: Arc<crate::store::Budget>,
    writer: Arc<WriterHealth>,
    stop: Arc<AtomicBool>,
    metrics: SinkMetrics,
}

/// The sink was asked to stop before it finished.
struct Stopped;

impl Control {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleep `d`, waking early to stop. Returns `Err` when stopping.
    async fn nap(&self, d: Duration) -> Result<(), Stopped> {
        let end = Instant::now() + d;
        loop {
            if self.stopping() {
                return Err(Stopped);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(left.min(Duration::from_millis(50))).await;
        }
    }

    /// Note a failure: log it, keep it in the store for `tollgate sinks`, then back off.
    async fn failed(&self, backoff: &mut Backoff, error: &str) -> Result<(), Stopped> {
        let delay = backoff.next();
        warn!(sink = %self.cfg.name, %error, retry_in_ms = delay.as_millis() as u64, "Sink attempt failed.");
        self.metrics.retries.inc();
        if let Err(e) = state::set_error(&self.conn, &self.cfg.name, error) {
            warn!(sink = %self.cfg.name, error = %e, "Cannot record the sink's error in the store.");
        }
        self.nap(delay).await
    }

    /// Repeat a store operation until it succeeds (or the sink stops).
    async fn store_op<T>(
        &self,
        backoff: &mut Backoff,
        what: &str,
        mut op: impl FnMut(&Connection) -> Result<T, crate::store::StoreError>,
    ) -> Result<T, Stopped> {
        loop {
            // Out of the idle memory limit (the writer or other sinks hold it): again at once,
            // with the whole limit.
            let e = match self.budget.or_whole(|| op(&self.conn)) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            self.failed(backoff, &format!("{what}: {e}")).await?;
        }
    }
}

async fn run(ctl: Control, mut sink: Box<dyn Sink>) {
    let _ = ship(&ctl, sink.as_mut()).await;
    info!(sink = %ctl.cfg.name, "Sink stopped.");
}

async fn ship(ctl: &Control, sink: &mut dyn Sink) -> Result<(), Stopped> {
    let name = ctl.cfg.name.as_str();
    let mut backoff = Backoff::new(ctl.cfg.retry_initial, ctl.cfg.retry_max);
    let mut offset = ctl
        .store_op(&mut backoff, "reading the sink offset", |c| {
            state::load(c, name)
        })
        .await?;
    ctl.metrics.offset.set(offset.shipped);
    // When this sink first saw the events it is waiting to batch.
    let mut waiting_since: Option<Instant> = None;
    let mut forgets_checked = Instant::now() - FORGET_CHECK;
    loop {
        // Between batches: repeat forget requests downstream. Every batch read before the
        // request (which may still hold the subject's events) has been delivered by now.
        if offset.pending.is_none() && forgets_checked.elapsed() >= FORGET_CHECK {
            replay_forgets(ctl, sink, &mut backoff).await?;
            forgets_checked = Instant::now();
        }
        let upto = match offset.pending {
            Some(p) => p,
            None => {
                let head = ctl.writer.committed_seq();
                let lag = head - offset.shipped;
                ctl.metrics.lag_events.set(lag.max(0));
                if lag <= 0 {
                    waiting_since = None;
                    ctl.metrics.lag_seconds.set(0.0);
                    ctl.nap(Duration::from_millis(50)).await?;
                    continue;
                }
                let since = *waiting_since.get_or_insert_with(Instant::now);
                let waited = since.elapsed();
                if lag < ctl.cfg.batch_size as i64 && waited < ctl.cfg.batch_age {
                    ctl.nap((ctl.cfg.batch_age - waited).min(Duration::from_millis(50)))
                        .await?;
                    continue;
                }
                let upto = head.min(offset.shipped + ctl.cfg.batch_size as i64);
                ctl.store_op(&mut backoff, "recording the batch", |c| {
                    state::begin(c, name, upto)
                })
                .await?;
                offset.pending = Some(upto);
                upto
            }
        };
        let range = Range {
            after: offset.shipped,
            upto,
        };
        let records = ctl
            .store_op(&mut backoff, "reading the batch", |c| {
                read_events(c, range.after, range.upto)
            })
            .await?;
        let started = Instant::now();
        deliver(ctl, sink, &mut backoff, range, &records).await?;
        // The lag as of the new offset, set before the offset is committed: `/api/sinks`
        // reads the lag from the store as soon as it is, and the gauge agreed only at the next
        // turn of this loop (a test that read both back to back once saw them differ). While
        // the commit is retried, the gauge is ahead by this batch.
        ctl.metrics
            .lag_events
            .set((ctl.writer.committed_seq() - range.upto).max(0));
        ctl.store_op(&mut backoff, "moving the offset", |c| {
            state::commit(c, name, range.upto)
        })
        .await?;
        ctl.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        ctl.metrics.batches.inc();
        ctl.metrics.offset.set(range.upto);
        offset = state::Offset {
            shipped: range.upto,
            pending: None,
        };
        waiting_since = None;
    }
}

/// How often a sink looks for forget requests to repeat.
const FORGET_CHECK: Duration = Duration::from_secs(1);

/// A forget request is repeated downstream once it is this old: by then the admin API has
/// deleted the events that were still in flight when it was made (it deletes again after one
/// flush interval), so none of them can be shipped after the repeat.
const FORGET_SETTLE: Duration = Duration::from_secs(5);

async fn replay_forgets(
    ctl: &Control,
    sink: &mut dyn Sink,
    backoff: &mut Backoff,
) -> Result<(), Stopped> {
    let name = ctl.cfg.name.as_str();
    let before = crate::event::now_us() - FORGET_SETTLE.as_micros() as i64;
    let pending = ctl
        .store_op(backoff, "reading forget requests", |c| {
            state::pending_forgets(c, name, before)
        })
        .await?;
    for request in pending {
        loop {
            match sink.forget(&request).await {
                Outcome::Delivered => break,
                Outcome::Retry(e) | Outcome::Reject(e) => {
                    ctl.failed(
                        backoff,
                        &format!("repeating forget {}: {e}", request.request_id),
                    )
                    .await?
                }
            }
        }
        ctl.store_op(backoff, "recording a forget", |c| {
            state::forget_applied(c, name, request.request_id)
        })
        .await?;
        backoff.reset();
        info!(sink = name, request_id = %request.request_id, "Forget request repeated downstream.");
    }
    Ok(())
}

/// Deliver `records` (all of `range`), retrying what may succeed later and splitting what is
/// refused until each refused event is alone; those go to the dead letters.
async fn deliver(
    ctl: &Control,
    sink: &mut dyn Sink,
    backoff: &mut Backoff,
    range: Range,
    records: &[Record],
) -> Result<(), Stopped> {
    let name = ctl.cfg.name.as_str();
    // A stack of (range, index range) pieces; the first piece is on top.
    let mut todo = vec![(range, 0..records.len())];
    while let Some((range, idx)) = todo.pop() {
        let piece = &records[idx.clone()];
        loop {
            if ctl.stopping() {
                return Err(Stopped);
            }
            if let Some(first) = piece.first() {
                let age = crate::event::now_us() - first.event.received_at_us;
                ctl.metrics.lag_seconds.set((age.max(0) as f64) / 1e6);
            }
            match sink.send(range, piece).await {
                Outcome::Delivered => {
                    backoff.reset();
                    ctl.metrics.delivered.inc_by(piece.len() as u64);
                    break;
                }
                Outcome::Retry(error) => ctl.failed(backoff, &error).await?,
                Outcome::Reject(reason) if piece.len() <= 1 => {
                    if let Some(r) = piece.first() {
                        warn!(sink = name, seq = r.seq, event_id = %r.event.event_id, %reason,
                              "Event refused by the sink; moved to the dead letters.");
                        ctl.store_op(backoff, "writing a dead letter", |c| {
                            state::dead_letter(c, name, r, &reason)
                        })
                        .await?;
                        ctl.metrics.dead_letters.inc();
                    }
                    break;
                }
                Outcome::Reject(_) => {
                    let mid = piece.len() / 2;
                    let split = piece[mid - 1].seq;
                    let start = idx.start;
                    todo.push((
                        Range {
                            after: split,
                            upto: range.upto,
                        },
                        start + mid..idx.end,
                    ));
                    todo.push((
                        Range {
                            after: range.after,
                            upto: split,
                        },
                        start..start + mid,
                    ));
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Exponential backoff with jitter: each delay is drawn from [d/2, d], and d doubles up to
/// the maximum.
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    fn next(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = d / 2;
        let r = getrandom::u64().unwrap_or(0) % (half.as_micros() as u64 + 1);
        half + Duration::from_micros(r)
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..10 {
            let d = b.next();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(Duration::from_millis(1000));
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
