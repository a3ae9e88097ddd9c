//! Whose turn it is on one client connection, for the listener's header deadline: the
//! client's, to send its next request header in time, or tollgate's, serving a request (no
//! deadline). Told by the listener when a request starts and by the response body when it has
//! been sent.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Whose turn it is on one connection: the client's, to send its next request header before
/// `due`, or tollgate's, serving a request (`due` is `None`).
pub struct Turns {
    due: Cell<Option<Instant>>,
    /// Requests started on the connection.
    served: Cell<u32>,
    /// How long the client may take for its next header once a response has been sent: the
    /// keep-alive idle wait and the header's own time.
    next: Duration,
}

impl Turns {
    /// The client's turn, its first header due by `first`; after each response it has `next`.
    pub fn new(first: Instant, next: Duration) -> Turns {
        Turns {
            due: Cell::new(Some(first)),
            served: Cell::new(0),
            next,
        }
    }

    /// Requests started on the connection.
    pub fn served(&self) -> u32 {
        self.served.get()
    }

    /// A request header has come: no deadline while it is served. Returns its number on the
    /// connection.
    pub fn started(&self) -> u32 {
        self.due.set(None);
        let n = self.served.get() + 1;
        self.served.set(n);
        n
    }

    /// The response has been sent (or given up): the client's turn again.
    pub fn sent(&self) {
        self.due.set(Some(Instant::now() + self.next));
    }
}

/// Ready when the client's turn has run out. Polled after the connection on every wake-up, so
/// it follows `due` as requests come and go, moving the connection's one timer.
pub struct Late<'a> {
    clock: Pin<&'a mut Sleep>,
    turns: &'a Turns,
}

impl<'a> Late<'a> {
    pub fn new(clock: Pin<&'a mut Sleep>, turns: &'a Turns) -> Late<'a> {
        Late { clock, turns }
    }
}

impl Future for Late<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(due) = self.turns.due.get() else {
            return Poll::Pending;
        };
        if self.clock.deadline() != due {
            self.clock.as_mut().reset(due);
        }
        self.clock.as_mut().poll(cx)
    }
}
