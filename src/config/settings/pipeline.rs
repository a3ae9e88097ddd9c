//! `[pipeline]`: the queue between the proxy and the store, and the writer's batches.

use super::file::PipelineSection;
use super::Problems;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub queue_capacity: usize,
    pub queue_max_bytes: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// `bulk_wait_ms`; zero when off.
    pub bulk_wait: Duration,
    /// Nice value of the analytics threads (0-19).
    pub background_nice: i32,
}

pub(super) fn validate(s: &PipelineSection, p: &mut Problems) -> Pipeline {
    p.at_least_one(&[
        ("queue_capacity", s.queue_capacity),
        ("batch_size", s.batch_size),
        ("queue_max_bytes", s.queue_max_bytes),
    ]);
    if !(1..=60_000).contains(&s.flush_interval_ms) {
        p.report(
            "flush_interval_ms",
            format!(
                "{} is out of range (expected 1 to 60000)",
                s.flush_interval_ms
            ),
        );
    }
    if s.bulk_wait_ms > 300_000 {
        p.report(
            "bulk_wait_ms",
            format!(
                "{} is out of range (expected 0, off, to 300000)",
                s.bulk_wait_ms
            ),
        );
    }
    if !(0..=19).contains(&s.background_nice) {
        p.report(
            "background_nice",
            format!(
                "{} is out of range (expected 0, the proxy's own priority, to 19, the lowest)",
                s.background_nice
            ),
        );
    }
    Pipeline {
        queue_capacity: s.queue_capacity,
        queue_max_bytes: s.queue_max_bytes,
        batch_size: s.batch_size,
        flush_interval: Duration::from_millis(s.flush_interval_ms),
        bulk_wait: Duration::from_millis(s.bulk_wait_ms),
        background_nice: s.background_nice.clamp(0, 19),
    }
}
