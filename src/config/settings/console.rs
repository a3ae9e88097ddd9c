//! `[console]`: the read-only SQL console's limits.

use super::file::ConsoleSection;
use super::Problems;
use std::time::Duration;

/// `[console]`: the read-only SQL console's limits.
#[derive(Debug, Clone)]
pub struct Console {
    /// A query running longer is interrupted.
    pub timeout: Duration,
    /// Rows an answer holds at most; it says `truncated` when there were more.
    pub max_rows: usize,
    /// Bytes of JSON an answer holds at most, counted while its rows stream.
    pub max_bytes: usize,
    /// Queries running at once; more are answered 429.
    pub max_concurrent: usize,
}

pub(super) fn validate(s: &ConsoleSection, p: &mut Problems) -> Console {
    if s.timeout_secs == 0 {
        p.report("timeout_secs", "must be at least 1 (seconds)");
    }
    p.at_least_one(&[
        ("max_rows", s.max_rows),
        ("max_bytes", s.max_bytes),
        ("max_concurrent", s.max_concurrent),
    ]);
    Console {
        timeout: Duration::from_secs(s.timeout_secs),
        max_rows: s.max_rows,
        max_bytes: s.max_bytes,
        max_concurrent: s.max_concurrent,
    }
}
