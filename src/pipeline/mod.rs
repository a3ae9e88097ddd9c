//! The pipeline between the proxy and the store: a bounded queue that the hot path never waits
//! on, and a writer thread that commits events in groups.

mod writer;

pub use writer::{spawn_writer, Writer, WriterHealth};

use crate::event::Event;
use crate::metrics::Metrics;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::Arc;

/// The proxy's handle on the queue. Cloning is cheap.
#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Box<Event>>,
    metrics: Arc<Metrics>,
}

impl EventSender {
    /// Queue `event` without waiting. When the queue is full (the store is slow or broken) the
    /// event is dropped and counted in `tollgate_events_dropped_total{reason="queue_full"}`.
    pub fn send(&self, event: Box<Event>) {
        match self.tx.try_send(event) {
            Ok(()) => self.metrics.events_captured.inc(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.dropped_queue_full.inc()
            }
        }
    }

    /// Events waiting in the queue.
    pub fn depth(&self) -> usize {
        self.tx.len()
    }
}

/// A bounded queue of `capacity` events. Events travel boxed: the queue preallocates its
/// slots, and a pointer-sized slot keeps an idle queue small.
pub fn channel(capacity: usize, metrics: Arc<Metrics>) -> (EventSender, Receiver<Box<Event>>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (EventSender { tx, metrics }, rx)
}
