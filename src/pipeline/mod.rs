//! The pipeline between the proxy and the store: a bounded queue that the hot path never waits
//! on, and a writer thread that commits events in groups.
//!
//! The queue is bounded twice: by count (`pipeline.queue_capacity`) and by the bytes of text its
//! events hold (`pipeline.queue_max_bytes`), so that a flood of large requests cannot make it
//! grow past a known size. Either bound full means the event is dropped and counted.

pub mod submit;
mod writer;

pub use writer::{spawn_writer, Writer, WriterHealth};

use crate::event::{Event, Hit};
use crate::metrics::Metrics;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What travels through the queue: an event, or a proxy [`Hit`], which becomes one when it is
/// taken out ([`EventReceiver::try_recv`]), on the writer's thread rather than the request's.
enum Queued {
    Event(Box<Event>),
    Hit(Box<Hit>),
}

/// The proxy's handle on the queue. Cloning is cheap.
#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Queued>,
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
        self.queue(Queued::Event(event), size);
    }

    /// Queue the proxy's `hit` as [`EventSender::send`] does its event, counting the bytes of
    /// the event it will become.
    pub fn send_hit(&self, hit: Box<Hit>) {
        let size = hit.approx_bytes();
        self.queue(Queued::Hit(hit), size);
    }

    fn queue(&self, item: Queued, size: usize) {
        // Reserve first, so that two threads cannot both squeeze past the bound.
        if self.bytes.fetch_add(size, Ordering::Relaxed) + size > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            self.metrics.dropped_queue_full.inc();
            return;
        }
        match self.tx.try_send(item) {
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
    rx: Receiver<Queued>,
    bytes: Arc<AtomicUsize>,
}

impl EventReceiver {
    /// The next event, if one is waiting; releases its bytes from the bound. A hit is turned
    /// into its event here.
    pub fn try_recv(&self) -> Result<Box<Event>, TryRecvError> {
        let e = match self.rx.try_recv()? {
            Queued::Event(e) => {
                self.bytes.fetch_sub(e.approx_bytes(), Ordering::Relaxed);
                e
            }
            Queued::Hit(h) => {
                self.bytes.fetch_sub(h.approx_bytes(), Ordering::Relaxed);
                Box::new(h.into_event())
            }
        };
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
/// boxed: the queue preallocates its slots, and a slot of two words keeps an idle queue small.
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

    #[test]
    fn a_hit_is_counted_as_the_event_it_becomes() {
        use crate::event::{Captured, Hit, Span};
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = channel(100, 1 << 20, metrics);
        let text = bytes::Bytes::from_static(b"r-1shop.test/p?q=1https://ref/UA 1.0203.0.113.9");
        let hit = Hit {
            event_id: uuid::Uuid::now_v7(),
            ts_us: 1,
            received_at_us: 2,
            site: "t",
            name: "page_view",
            method: http::Method::GET,
            status: Some(200),
            duration_ms: 1.5,
            bytes_out: 2048,
            visitor_id: Some(uuid::Uuid::new_v4()),
            session_id: None,
            user_id: Some("u1".into()),
            hints: Default::default(),
            text,
            request_id: Span::new(0, 3),
            captured: Captured {
                host: Some(Span::new(3, 12)),
                path: Span::new(12, 14),
                query: Some(Span::new(15, 18)),
                referrer: Some(Span::new(18, 30)),
                user_agent: Some(Span::new(30, 36)),
                ip: Some(Span::new(36, 47)),
            },
        };
        let want = hit.clone().into_event();
        assert_eq!(
            (
                want.request_id.as_deref(),
                want.host.as_deref(),
                want.path.as_deref()
            ),
            (Some("r-1"), Some("shop.test"), Some("/p"))
        );
        assert_eq!(
            (
                want.query.as_deref(),
                want.referrer.as_deref(),
                want.user_agent.as_deref()
            ),
            (Some("q=1"), Some("https://ref/"), Some("UA 1.0"))
        );
        assert_eq!(want.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(hit.approx_bytes(), want.approx_bytes());
        tx.send_hit(Box::new(hit));
        assert_eq!(tx.queued_bytes(), want.approx_bytes());
        assert_eq!(*rx.try_recv().unwrap(), want);
        assert_eq!(tx.queued_bytes(), 0);
    }
}
