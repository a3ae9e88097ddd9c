//! `[store]`: retention of the local store, and how DuckDB is opened (its memory limit,
//! threads and checkpoint threshold).

use super::file::{
    StoreSection, DEFAULT_CHECKPOINT_THRESHOLD_MIB, DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_THREADS,
};
use super::Problems;
use std::time::Duration;

/// How DuckDB is opened: `[store]` `memory_limit`, `threads` and `checkpoint_threshold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes DuckDB's buffer manager may hold.
    pub memory_limit: u64,
    /// DuckDB worker threads; 0 leaves DuckDB's default, one per core.
    pub threads: usize,
    /// Bytes of write-ahead log after which DuckDB checkpoints.
    pub checkpoint_threshold: u64,
}

impl Default for StoreOptions {
    /// [`DEFAULT_MEMORY_LIMIT_MIB`] and [`DEFAULT_THREADS`].
    fn default() -> Self {
        StoreOptions {
            memory_limit: DEFAULT_MEMORY_LIMIT_MIB << 20,
            threads: DEFAULT_THREADS,
            checkpoint_threshold: DEFAULT_CHECKPOINT_THRESHOLD_MIB << 20,
        }
    }
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
    let memory_limit = match parse_size(&s.memory_limit) {
        Some(b) if b >= MIN_MEMORY_LIMIT => b,
        Some(_) => {
            p.report(
                "memory_limit",
                format!(
                    "{:?} is too small (DuckDB needs at least 16MiB)",
                    s.memory_limit
                ),
            );
            MIN_MEMORY_LIMIT
        }
        None => {
            p.report(
                "memory_limit",
                format!(
                    "{:?} is not a size (expected a number with B, KiB, MiB or GiB, e.g. \"256MiB\")",
                    s.memory_limit
                ),
            );
            MIN_MEMORY_LIMIT
        }
    };
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
    StoreSettings {
        retention: (s.retention_days > 0)
            .then(|| Duration::from_secs(u64::from(s.retention_days) * 86_400)),
        prune_interval: Duration::from_secs(s.prune_interval_secs.max(1)),
        duckdb: StoreOptions {
            memory_limit,
            threads: s.threads.min(1024),
            checkpoint_threshold,
        },
    }
}

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
