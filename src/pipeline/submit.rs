//! The durable path into the writer, for events a client is waiting on (the ingestion
//! endpoints): unlike the proxy's queue, a submission is answered only once the writer has
//! committed it, or refused at once when the writer is too far behind.

use crate::event::Event;
use crossbeam_channel::{Receiver, Sender, TrySendError};

/// What a committed submission did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Committed {
    /// Events written now.
    pub written: usize,
    /// Events whose `event_id` was already in the store (or twice in the submission): not
    /// written again.
    pub duplicates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the store writer is busy with {0} pending submissions; retry shortly")]
    Busy(usize),
    #[error("tollgate is shutting down; retry against another instance or later")]
    ShuttingDown,
    #[error("the store could not commit the events: {0}")]
    Store(String),
}

/// One submission on its way to the writer.
pub struct Submission {
    pub events: Vec<Event>,
    pub reply: tokio::sync::oneshot::Sender<Result<Committed, String>>,
}

/// The handlers' handle on the writer. Cloning is cheap.
#[derive(Clone)]
pub struct IngestSender {
    tx: Sender<Submission>,
}

/// How long [`IngestSender::flush`] waits for the writer: a commit of a row group takes about
/// a second; only a writer that stopped takes this long.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Submissions waiting for the writer at most; more are answered "busy" (HTTP 503) at once.
pub const PENDING_SUBMISSIONS: usize = 1024;

pub fn channel() -> (IngestSender, Receiver<Submission>) {
    let (tx, rx) = crossbeam_channel::bounded(PENDING_SUBMISSIONS);
    (IngestSender { tx }, rx)
}

impl IngestSender {
    /// Wait until the writer has committed every event it holds, the proxy's it has taken
    /// from the queue included (they may wait for `pipeline.bulk_wait_ms` otherwise): for
    /// `forget`, which must see them to delete them.
    pub async fn flush(&self) -> Result<(), IngestError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Submission {
            events: Vec::new(),
            reply,
        })?;
        // A flush that raced the writer's stop is never answered: its reply waits in the
        // channel's buffer while the handlers still hold senders.
        match tokio::time::timeout(FLUSH_WAIT, answer).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(IngestError::Store(e)),
            Ok(Err(_)) | Err(_) => Err(IngestError::ShuttingDown),
        }
    }

    /// Hand `events` to the writer and wait until they are committed (or refused).
    pub async fn submit(&self, events: Vec<Event>) -> Result<Committed, IngestError> {
        if events.is_empty() {
            return Ok(Committed::default());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Submission { events, reply })?;
        match answer.await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(IngestError::Store(e)),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }

    /// Queue `s` for the writer, or refuse it at once: too many wait, or the writer is gone.
    fn send(&self, s: Submission) -> Result<(), IngestError> {
        self.tx.try_send(s).map_err(|e| match e {
            TrySendError::Full(_) => IngestError::Busy(self.tx.len()),
            TrySendError::Disconnected(_) => IngestError::ShuttingDown,
        })
    }
}
