//! Custom events from clients (the browser collect endpoint, the backend's bulk API), and the
//! durable path they take: unlike proxy events, a submission is acknowledged only once the
//! writer has committed it.
//!
//! The handler builds [`Event`]s (each source fills a [`draft::EventDraft`], which checks and
//! settles it the same way for all), then [`IngestSender::submit`] hands them to the
//! writer thread and waits. The writer enriches them, drops those whose `event_id` the store has
//! already seen, appends the rest in one transaction, and answers. So a 2xx means committed,
//! and a retried submission does not count twice.

pub mod draft;
pub mod import;
pub mod native;
pub mod segment;

pub use crate::pipeline::submit::{
    channel, Committed, IngestError, IngestSender, Submission, PENDING_SUBMISSIONS,
};

use crate::event::Event;

/// One rejected item of a batch, as the answer shows it.
#[derive(Debug, serde::Serialize)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// The answer to an ingestion request.
#[derive(Debug, serde::Serialize)]
pub struct IngestReport {
    /// Items that were valid (and are now committed, or were already).
    pub accepted: usize,
    /// Of those, written now.
    pub written: usize,
    /// Of those, already in the store (same `event_id`): not written again.
    pub duplicates: usize,
    /// Items refused, by index, with the reason. The others were still committed.
    pub rejected: Vec<Rejected>,
}

/// Validate every item, commit the valid ones, and answer only once they are durable. An
/// error means nothing was committed, and the whole request may be retried.
pub async fn ingest_items(
    ingest: &IngestSender,
    items: Vec<Result<serde_json::Value, native::ItemError>>,
    cx: &native::Context<'_>,
) -> Result<IngestReport, IngestError> {
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match item.and_then(|v| native::to_event(v, cx).map_err(native::ItemError::Draft)) {
            Ok(e) => events.push(e),
            Err(e) => rejected.push(Rejected {
                index,
                error: e.to_string(),
            }),
        }
    }
    let accepted = events.len();
    let c = ingest.submit(events).await?;
    Ok(IngestReport {
        accepted,
        written: c.written,
        duplicates: c.duplicates,
        rejected,
    })
}

/// The answer to a CSV import.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    /// Good rows (committed now, or already in the store).
    pub accepted: usize,
    pub written: usize,
    /// Good rows whose `event_id` the store already had (a re-import).
    pub duplicates: usize,
    /// Bad rows by line, with the reason: the first [`import::MAX_LISTED_BAD`]. In strict mode,
    /// any bad row means nothing was imported.
    pub rejected: Vec<import::BadRow>,
    /// Every bad row, listed or not.
    #[serde(default)]
    pub rejected_count: usize,
    /// Strict mode refused the file because of `rejected`.
    pub refused: bool,
}

impl ImportReport {
    /// The report of `parsed` before anything is committed, and the events to commit: none in
    /// strict mode when any row is bad.
    pub fn plan(parsed: import::Parsed, strict: bool) -> (ImportReport, Vec<Event>) {
        let refused = strict && parsed.bad_total > 0;
        let report = ImportReport {
            accepted: if refused { 0 } else { parsed.events.len() },
            rejected: parsed.bad,
            rejected_count: parsed.bad_total,
            refused,
            ..Default::default()
        };
        let events = if refused { Vec::new() } else { parsed.events };
        (report, events)
    }
}

/// Rows of an import committed per submission: the memory an import costs.
pub const IMPORT_BATCH: usize = 10_000;

/// Import a CSV file through the durable path, [`IMPORT_BATCH`] rows at a time: each batch is
/// committed before the next is parsed, and the answer comes once all are. In strict mode the
/// file is read once first, and nothing is committed if any row is bad. A failure part-way
/// leaves the batches before it committed; retrying the file is safe (row ids are stable, so
/// they count as duplicates).
pub async fn import_file(
    ingest: &IngestSender,
    data: &[u8],
    map: &std::collections::HashMap<String, String>,
    site: &str,
    now_us: i64,
    strict: bool,
) -> Result<Result<ImportReport, import::FileError>, IngestError> {
    if strict {
        let mut check = match import::Rows::new(data, map, site, now_us) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        while !check.next_batch(IMPORT_BATCH).is_empty() {}
        if check.bad_total > 0 {
            return Ok(Ok(ImportReport {
                rejected: check.bad,
                rejected_count: check.bad_total,
                refused: true,
                ..Default::default()
            }));
        }
    }
    let mut rows = match import::Rows::new(data, map, site, now_us) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let mut report = ImportReport::default();
    loop {
        let batch = rows.next_batch(IMPORT_BATCH);
        if batch.is_empty() {
            break;
        }
        report.accepted += batch.len();
        let c = ingest.submit(batch).await?;
        report.written += c.written;
        report.duplicates += c.duplicates;
    }
    report.rejected = rows.bad;
    report.rejected_count = rows.bad_total;
    Ok(Ok(report))
}
