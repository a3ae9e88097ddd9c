//! Validating `[store]` (retention, DuckDB's memory, threads and checkpoints) and the
//! `[[sinks]]` tables.

use super::file::{
    SinkSection, StoreSection, DEFAULT_CHECKPOINT_THRESHOLD_MIB, DEFAULT_MEMORY_LIMIT_MIB,
    DEFAULT_THREADS,
};
use std::path::PathBuf;
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

/// One validated sink.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub name: String,
    pub target: SinkTarget,
    pub batch_size: usize,
    pub batch_age: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkTarget {
    ClickHouse { url: String, table: String },
    Postgres { url: String, table: String },
    Files { dir: PathBuf, format: FileFormat },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Ndjson,
}

impl SinkTarget {
    /// `clickhouse`, `postgres` or `files`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkTarget::ClickHouse { .. } => "clickhouse",
            SinkTarget::Postgres { .. } => "postgres",
            SinkTarget::Files { .. } => "files",
        }
    }

    /// Where events go, for people: the URL without its password, or the directory.
    pub fn describe(&self) -> String {
        match self {
            SinkTarget::ClickHouse { url, table } | SinkTarget::Postgres { url, table } => {
                format!("{} table {table}", without_password(url))
            }
            SinkTarget::Files { dir, format } => format!(
                "{} ({})",
                dir.display(),
                match format {
                    FileFormat::Parquet => "parquet",
                    FileFormat::Ndjson => "ndjson",
                }
            ),
        }
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.split_once('@') {
        Some((a, h)) if !a.contains('/') => (a, h),
        _ => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

pub(super) fn validate_store(
    s: &StoreSection,
    err: &mut impl FnMut(&str, String),
) -> StoreSettings {
    if s.prune_interval_secs == 0 {
        err("store.prune_interval_secs", "must be at least 1".into());
    }
    let memory_limit = match parse_size(&s.memory_limit) {
        Some(b) if b >= MIN_MEMORY_LIMIT => b,
        Some(_) => {
            err(
                "store.memory_limit",
                format!(
                    "{:?} is too small (DuckDB needs at least 16MiB)",
                    s.memory_limit
                ),
            );
            MIN_MEMORY_LIMIT
        }
        None => {
            err(
                "store.memory_limit",
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
            err(
                "store.checkpoint_threshold",
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
        err(
            "store.threads",
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

pub(super) fn validate_sinks(
    sinks: &[SinkSection],
    err: &mut impl FnMut(&str, String),
) -> Vec<SinkSettings> {
    let mut out: Vec<SinkSettings> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, s) in sinks.iter().enumerate() {
        let key = |k: &str| format!("sinks[{i}].{k}");
        let table = || {
            let t = if s.table.is_empty() {
                "events"
            } else {
                s.table.as_str()
            };
            valid_table(t).then(|| t.to_string())
        };
        let target = match s.kind.as_str() {
            "clickhouse" | "postgres" => {
                let ch = s.kind == "clickhouse";
                let schemes: &[&str] = if ch {
                    &["http://", "https://"]
                } else {
                    &["postgres://", "postgresql://"]
                };
                if !schemes.iter().any(|p| s.url.starts_with(p)) {
                    err(
                        &key("url"),
                        format!(
                            "{:?} must start with {} (e.g. {})",
                            without_password(&s.url),
                            schemes.join(" or "),
                            if ch {
                                "http://127.0.0.1:8123"
                            } else {
                                "postgres://tollgate@127.0.0.1/analytics"
                            }
                        ),
                    );
                }
                if !s.dir.is_empty() || !s.format.is_empty() {
                    err(
                        &key("dir"),
                        "`dir` and `format` are for `type = \"files\"`".into(),
                    );
                }
                match table() {
                    None => {
                        err(
                            &key("table"),
                            format!(
                                "{:?} must be a plain name or `schema.name` (letters, digits, _)",
                                s.table
                            ),
                        );
                        None
                    }
                    Some(table) if ch => Some(SinkTarget::ClickHouse {
                        url: s.url.trim_end_matches('/').to_string(),
                        table,
                    }),
                    Some(table) => Some(SinkTarget::Postgres {
                        url: s.url.clone(),
                        table,
                    }),
                }
            }
            "files" => {
                if s.dir.trim().is_empty() {
                    err(&key("dir"), "required for `type = \"files\"`".into());
                }
                if !s.url.is_empty() || !s.table.is_empty() {
                    err(
                        &key("url"),
                        "`url` and `table` are not used by `type = \"files\"`".into(),
                    );
                }
                let format = match s.format.as_str() {
                    "" | "parquet" => Some(FileFormat::Parquet),
                    "ndjson" => Some(FileFormat::Ndjson),
                    other => {
                        err(
                            &key("format"),
                            format!("{other:?} is not a format (expected parquet or ndjson)"),
                        );
                        None
                    }
                };
                format.map(|format| SinkTarget::Files {
                    dir: PathBuf::from(s.dir.trim()),
                    format,
                })
            }
            other => {
                err(
                    &key("type"),
                    format!(
                        "{other:?} is not a sink type (expected clickhouse, postgres or files)"
                    ),
                );
                None
            }
        };
        let name = if s.name.is_empty() {
            s.kind.clone()
        } else {
            s.name.clone()
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            err(
                &key("name"),
                format!("{name:?} must be letters, digits, `_` or `-`"),
            );
        } else if names.contains(&name) {
            err(
                &key("name"),
                format!("{name:?} is used by another sink; give each a unique `name`"),
            );
        }
        names.push(name.clone());
        let batch_size = s.batch_size.unwrap_or(10_000);
        if !(1..=1_000_000).contains(&batch_size) {
            err(&key("batch_size"), "must be between 1 and 1000000".into());
        }
        let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d));
        let retry_initial = ms(s.retry_initial_ms, 500);
        let retry_max = ms(s.retry_max_ms, 30_000);
        if retry_initial.is_zero() || retry_max < retry_initial {
            err(
                &key("retry_max_ms"),
                "retry_initial_ms must be at least 1 and retry_max_ms at least retry_initial_ms"
                    .into(),
            );
        }
        let timeout = Duration::from_secs(s.timeout_secs.unwrap_or(30));
        if timeout.is_zero() {
            err(&key("timeout_secs"), "must be at least 1".into());
        }
        if let Some(target) = target {
            out.push(SinkSettings {
                name,
                target,
                batch_size,
                batch_age: ms(s.batch_age_ms, 1_000),
                retry_initial,
                retry_max,
                timeout,
            });
        }
    }
    out
}

fn valid_table(t: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.as_bytes()[0].is_ascii_digit()
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| part(p))
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

    use super::*;

    fn check(sinks: &[SinkSection]) -> (Vec<SinkSettings>, Vec<String>) {
        let mut errors = Vec::new();
        let out = validate_sinks(sinks, &mut |k: &str, m: String| {
            errors.push(format!("{k}: {m}"))
        });
        (out, errors)
    }

    #[test]
    fn defaults_and_names() {
        let (out, errors) = check(&[
            SinkSection {
                kind: "clickhouse".into(),
                url: "http://127.0.0.1:8123/".into(),
                ..Default::default()
            },
            SinkSection {
                kind: "files".into(),
                dir: "/tmp/x".into(),
                format: "ndjson".into(),
                ..Default::default()
            },
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out[0].name, "clickhouse");
        assert_eq!(
            out[0].target,
            SinkTarget::ClickHouse {
                url: "http://127.0.0.1:8123".into(),
                table: "events".into()
            }
        );
        assert_eq!(out[0].batch_size, 10_000);
        assert_eq!(out[1].name, "files");
    }

    #[test]
    fn every_mistake_is_named() {
        let (_, errors) = check(&[
            SinkSection {
                kind: "clickhouse".into(),
                url: "127.0.0.1:8123".into(),
                table: "events; DROP".into(),
                ..Default::default()
            },
            SinkSection {
                kind: "kafka".into(),
                ..Default::default()
            },
            SinkSection {
                kind: "files".into(),
                format: "csv".into(),
                ..Default::default()
            },
            SinkSection {
                kind: "postgres".into(),
                name: "clickhouse".into(),
                url: "postgres://u:secret@h/db".into(),
                ..Default::default()
            },
        ]);
        let all = errors.join("\n");
        for want in [
            "sinks[0].url",
            "sinks[0].table",
            "sinks[1].type",
            "sinks[2].dir: required",
            "sinks[2].format",
            "sinks[3].name",
        ] {
            assert!(all.contains(want), "missing {want} in:\n{all}");
        }
        assert!(!all.contains("secret"));
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            without_password("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(without_password("http://h:8123"), "http://h:8123");
    }
}
