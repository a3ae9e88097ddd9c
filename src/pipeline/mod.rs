//! The pipeline between the proxy and the store: a bounded queue that the hot path never waits
//! on, and a writer thread that commits events in groups.
//!
//! The queue is bounded twice: by count (`pipeline.queue_capacity`) and by the bytes of text its
//! events hold (`pipeline.queue_max_bytes`), so that a flood of large requests cannot make it
//! grow past a known size. Either bound full means the event is dropped and counted.

mod writer;

pub use writer::{spawn_writer, Writer, WriterHealth};

use crate::event::Event;
use crate::metrics::Metrics;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The proxy's handle on the queue. Cloning is cheap.
#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Box<Event>>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    metrics: Arc<Metrics>,
}

impl EventSender {
    /// Queue `event` without waiting. When the queue is full, by count or by bytes (the store is
    /// slow or broken, or a flood), the event is dropped and counted in
    /// `tollgate_events_dropped_total{reason="queue_full"}`.
    pub fn send(&self, event: Box<Event>) {
        let size = event.approx_bytes();
        // Reserve first, so that two threads cannot both squeeze past the bound.
        if self.bytes.fetch_add(size, Ordering::Relaxed) + size > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            self.metrics.dropped_queue_full.inc();
            return;
        }
        match self.tx.try_send(event) {
            Ok(()) => self.metrics.events_captured.inc(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.bytes.fetch_sub(size, Ordering::Relaxed);
                self.metrics.dropped_queue_full.inc()
            }
        }
    }

    /// Events waiting in the queue.
    pub fn depth(&self) -> usize {
        self.tx.len()
    }

    /// Bytes the waiting events hold.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// The writer's end of the queue.
pub struct EventReceiver {
    rx: Receiver<Box<Event>>,
    bytes: Arc<AtomicUsize>,
}

impl EventReceiver {
    /// The next event, if one is waiting; releases its bytes from the bound.
    pub fn try_recv(&self) -> Result<Box<Event>, TryRecvError> {
        let e = self.rx.try_recv()?;
        self.bytes.fetch_sub(e.approx_bytes(), Ordering::Relaxed);
        Ok(e)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// A bounded queue of `capacity` events and `max_bytes` bytes of their text. Events travel
/// boxed: the queue preallocates its slots, and a pointer-sized slot keeps an idle queue small.
pub fn channel(
    capacity: usize,
    max_bytes: usize,
    metrics: Arc<Metrics>,
) -> (EventSender, EventReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        EventSender {
            tx,
            bytes: bytes.clone(),
            max_bytes,
            metrics,
        },
        EventReceiver { rx, bytes },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let metrics = Arc::new(Metrics::new());
        let big = || {
            let mut e = Event::now("page_view", "t", Source::Proxy);
            e.user_agent = Some("x".repeat(1000));
            Box::new(e)
        };
        let size = big().approx_bytes();
        let (tx, rx) = channel(100, size * 3, metrics.clone());
        for _ in 0..5 {
            tx.send(big());
        }
        assert_eq!(rx.len(), 3, "only what fits in the byte bound is queued");
        assert_eq!(metrics.dropped_queue_full.get(), 2);
        assert_eq!(tx.queued_bytes(), size * 3);
        while rx.try_recv().is_ok() {}
        assert_eq!(tx.queued_bytes(), 0, "taking events releases their bytes");
        tx.send(big());
        assert_eq!(rx.len(), 1);
    }
}
