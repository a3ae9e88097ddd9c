//! `[store]`: retention of the local store, and how DuckDB is opened (its memory limit,
//! threads and checkpoint threshold).

use super::file::{
    StoreSection, DEFAULT_CHECKPOINT_THRESHOLD_MIB, DEFAULT_DEDUP_DAYS, DEFAULT_DEDUP_MAX_KEYS,
    DEFAULT_IDLE_MEMORY_LIMIT_MIB, DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_THREADS,
};
use super::Problems;
use std::time::Duration;

/// How the store is opened: `[store]` `memory_limit`, `idle_memory_limit`, `threads` and
/// `checkpoint_threshold` (DuckDB's), `dedup_days` and `dedup_max_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes DuckDB's buffer manager may hold.
    pub memory_limit: u64,
    /// Bytes it may hold while nothing has borrowed `memory_limit` (`store::Budget`), at
    /// most `memory_limit`.
    pub idle_memory_limit: u64,
    /// DuckDB worker threads; 0 leaves DuckDB's default, one per core.
    pub threads: usize,
    /// Bytes of write-ahead log after which DuckDB checkpoints.
    pub checkpoint_threshold: u64,
    /// How long a sender's event key is kept for deduplication.
    pub dedup_horizon: Duration,
    /// How many sender keys are kept at most, the newest.
    pub dedup_max_keys: usize,
}

impl Default for StoreOptions {
    /// The `DEFAULT_*` of each setting.
    fn default() -> Self {
        StoreOptions {
            memory_limit: DEFAULT_MEMORY_LIMIT_MIB << 20,
            idle_memory_limit: DEFAULT_IDLE_MEMORY_LIMIT_MIB << 20,
            threads: DEFAULT_THREADS,
            checkpoint_threshold: DEFAULT_CHECKPOINT_THRESHOLD_MIB << 20,
            dedup_horizon: days(DEFAULT_DEDUP_DAYS),
            dedup_max_keys: DEFAULT_DEDUP_MAX_KEYS,
        }
    }
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// Retention of the local store, and how DuckDB is opened.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `None` keeps events forever.
    pub retention: Option<Duration>,
    pub prune_interval: Duration,
    /// DuckDB's memory limit and threads.
    pub duckdb: StoreOptions,
}

pub(super) fn validate(s: &StoreSection, p: &mut Problems) -> StoreSettings {
    if s.prune_interval_secs == 0 {
        p.report("prune_interval_secs", "must be at least 1");
    }
    let memory_limit = memory_size(p, "memory_limit", &s.memory_limit);
    let idle_memory_limit = memory_size(p, "idle_memory_limit", &s.idle_memory_limit);
    let checkpoint_threshold = match parse_size(&s.checkpoint_threshold) {
        Some(b) if (MIN_CHECKPOINT_THRESHOLD..=MAX_CHECKPOINT_THRESHOLD).contains(&b) => b,
        parsed => {
            p.report(
                "checkpoint_threshold",
                match parsed {
                    Some(_) => format!(
                        "{:?} is out of range (expected 1MiB to 1GiB)",
                        s.checkpoint_threshold
                    ),
                    None => format!(
                        "{:?} is not a size (expected a number with B, KiB, MiB or GiB, e.g. \"64MiB\")",
                        s.checkpoint_threshold
                    ),
                },
            );
            DEFAULT_CHECKPOINT_THRESHOLD_MIB << 20
        }
    };
    if s.threads > 1024 {
        p.report(
            "threads",
            format!(
                "{} is too many (expected 0 for one per core, or 1 to 1024)",
                s.threads
            ),
        );
    }
    if !(1..=MAX_DEDUP_DAYS).contains(&s.dedup_days) {
        p.report(
            "dedup_days",
            format!(
                "{} is out of range (expected 1 to {MAX_DEDUP_DAYS})",
                s.dedup_days
            ),
        );
    }
    if !(MIN_DEDUP_MAX_KEYS..=MAX_DEDUP_MAX_KEYS).contains(&s.dedup_max_keys) {
        p.report(
            "dedup_max_keys",
            format!(
                "{} is out of range (expected {MIN_DEDUP_MAX_KEYS} to {MAX_DEDUP_MAX_KEYS})",
                s.dedup_max_keys
            ),
        );
    }
    StoreSettings {
        retention: (s.retention_days > 0).then(|| days(s.retention_days)),
        prune_interval: Duration::from_secs(s.prune_interval_secs.max(1)),
        duckdb: StoreOptions {
            memory_limit,
            idle_memory_limit: idle_memory_limit.min(memory_limit),
            threads: s.threads.min(1024),
            checkpoint_threshold,
            dedup_horizon: days(s.dedup_days.clamp(1, MAX_DEDUP_DAYS)),
            dedup_max_keys: s
                .dedup_max_keys
                .clamp(MIN_DEDUP_MAX_KEYS, MAX_DEDUP_MAX_KEYS),
        },
    }
}

/// A memory size of `[store]` (`memory_limit`, `idle_memory_limit`): at least
/// [`MIN_MEMORY_LIMIT`]; a problem reported under `key` otherwise.
fn memory_size(p: &mut Problems, key: &str, text: &str) -> u64 {
    match parse_size(text) {
        Some(b) if b >= MIN_MEMORY_LIMIT => b,
        Some(_) => {
            p.report(
                key,
                format!("{text:?} is too small (DuckDB needs at least 16MiB)"),
            );
            MIN_MEMORY_LIMIT
        }
        None => {
            p.report(
                key,
                format!(
                    "{text:?} is not a size (expected a number with B, KiB, MiB or GiB, e.g. \"256MiB\")"
                ),
            );
            MIN_MEMORY_LIMIT
        }
    }
}

/// Most days of `store.dedup_days`.
const MAX_DEDUP_DAYS: u32 = 366;

/// Bounds of `store.dedup_max_keys`: fewer than a thousand would forget a retried batch while
/// it is being retried; a hundred million is about 5 GiB of memory.
const MIN_DEDUP_MAX_KEYS: usize = 1_000;
const MAX_DEDUP_MAX_KEYS: usize = 100_000_000;

/// Bounds of `store.checkpoint_threshold`: below 1 MiB DuckDB checkpoints nearly every commit;
/// above 1 GiB a crash leaves minutes of log to replay.
const MIN_CHECKPOINT_THRESHOLD: u64 = 1 << 20;
const MAX_CHECKPOINT_THRESHOLD: u64 = 1 << 30;

/// DuckDB refuses to run most queries below a few MiB; below this a store is useless.
const MIN_MEMORY_LIMIT: u64 = 16 << 20;

/// `"256MiB"` → bytes. Binary units only, so that `MB` (which DuckDB reads as 10^6 and people
/// often mean as 2^20) is an error rather than a guess.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let shift = match s[digits..].trim() {
        "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("512MiB"), Some(512 << 20));
        assert_eq!(super::parse_size(" 2GiB "), Some(2 << 30));
        assert_eq!(super::parse_size("64 KiB"), Some(64 << 10));
        assert_eq!(super::parse_size("1000B"), Some(1000));
        for bad in [
            "",
            "MiB",
            "512",
            "512MB",
            "1.5GiB",
            "-1MiB",
            "99999999999999GiB",
        ] {
            assert_eq!(super::parse_size(bad), None, "{bad:?}");
        }
    }
}
