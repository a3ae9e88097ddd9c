//! `[[sinks]]`: each table read as the type its `type` names, then validated into a
//! [`SinkSettings`].

use super::file::{FilesSink, SinkCommon, SinkSection, TableSink, SINK_KEYS};
use super::Problems;
use std::path::PathBuf;
use std::time::Duration;

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

/// Read the `[[sinks]]` array one table at a time, so that a mistake in one sink hides none
/// in the others. A table that cannot be read stays in the list as
/// [`SinkSection::Unreadable`], with its problems reported.
pub(in super::super) fn parse(value: toml::Value, p: &mut Problems) -> Vec<SinkSection> {
    let toml::Value::Array(items) = value else {
        p.here("must be a list of tables, each written [[sinks]]");
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_one(item, &mut p.index(i)))
        .collect()
}

/// One `[[sinks]]` table. Its `type` and its keys are checked here, before serde reads it, so
/// that each wrong key is named with the sink and the type it belongs to (serde's own error
/// stops at the first, and names no sink).
fn parse_one(item: toml::Value, p: &mut Problems) -> SinkSection {
    let toml::Value::Table(table) = &item else {
        p.here("must be a table, written [[sinks]]");
        return SinkSection::Unreadable;
    };
    let (kind, keys) = match table.get("type") {
        None => {
            p.report("type", format!("required (expected {})", types()));
            return SinkSection::Unreadable;
        }
        Some(v) => match SINK_KEYS.iter().find(|(t, _)| v.as_str() == Some(t)) {
            Some(&kind_keys) => kind_keys,
            None => {
                p.report(
                    "type",
                    format!("{v} is not a sink type (expected {})", types()),
                );
                return SinkSection::Unreadable;
            }
        },
    };
    let name = match table.get("name").and_then(toml::Value::as_str) {
        Some(n) if !n.is_empty() => n,
        _ => kind,
    };
    let before = p.count();
    for key in table
        .keys()
        .filter(|k| *k != "type" && !keys.contains(&k.as_str()))
    {
        let owners: Vec<String> = SINK_KEYS
            .iter()
            .filter(|(_, ks)| ks.contains(&key.as_str()))
            .map(|(t, _)| format!("{t:?}"))
            .collect();
        let belongs = if owners.is_empty() {
            String::new()
        } else {
            format!("; `{key}` is for type = {}", owners.join(" or "))
        };
        p.report(
            key,
            format!(
                "not a key of {kind} sink {name:?}{belongs} (expected one of {})",
                keys.join(", ")
            ),
        );
    }
    if p.count() > before {
        return SinkSection::Unreadable;
    }
    item.try_into().unwrap_or_else(|e: toml::de::Error| {
        p.here(e.to_string().trim_end());
        SinkSection::Unreadable
    })
}

/// `clickhouse, postgres or files`.
fn types() -> String {
    let types: Vec<&str> = SINK_KEYS.iter().map(|(t, _)| *t).collect();
    match types.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => types.join(""),
    }
}

/// Validate every sink; the names must differ (the one check that spans sinks).
pub(super) fn validate(sinks: &[SinkSection], p: &mut Problems) -> Vec<SinkSettings> {
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, s) in sinks.iter().enumerate() {
        let p = &mut p.index(i);
        let (kind, common, target) = match s {
            SinkSection::ClickHouse(t) => ("clickhouse", &t.common, table_target(t, true, p)),
            SinkSection::Postgres(t) => ("postgres", &t.common, table_target(t, false, p)),
            SinkSection::Files(f) => ("files", &f.common, files_target(f, p)),
            SinkSection::Unreadable => continue,
        };
        let name = if common.name.is_empty() {
            kind.to_string()
        } else {
            common.name.clone()
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            p.report(
                "name",
                format!("{name:?} must be letters, digits, `_` or `-`"),
            );
        } else if names.contains(&name) {
            p.report(
                "name",
                format!("{name:?} is used by another sink; give each a unique `name`"),
            );
        }
        names.push(name.clone());
        out.extend(delivery(name, target, common, p));
    }
    out
}

/// A ClickHouse (`clickhouse`) or PostgreSQL sink's URL and table.
fn table_target(s: &TableSink, clickhouse: bool, p: &mut Problems) -> Option<SinkTarget> {
    let schemes: &[&str] = if clickhouse {
        &["http://", "https://"]
    } else {
        &["postgres://", "postgresql://"]
    };
    if !schemes.iter().any(|scheme| s.url.starts_with(scheme)) {
        p.report(
            "url",
            format!(
                "{:?} must start with {} (e.g. {})",
                without_password(&s.url),
                schemes.join(" or "),
                if clickhouse {
                    "http://127.0.0.1:8123"
                } else {
                    "postgres://tollgate@127.0.0.1/analytics"
                }
            ),
        );
    }
    let table = if s.table.is_empty() {
        "events"
    } else {
        s.table.as_str()
    };
    if !valid_table(table) {
        p.report(
            "table",
            format!(
                "{:?} must be a plain name or `schema.name` (letters, digits, _)",
                s.table
            ),
        );
        return None;
    }
    let table = table.to_string();
    Some(if clickhouse {
        SinkTarget::ClickHouse {
            url: s.url.trim_end_matches('/').to_string(),
            table,
        }
    } else {
        SinkTarget::Postgres {
            url: s.url.clone(),
            table,
        }
    })
}

/// A files sink's directory and format.
fn files_target(s: &FilesSink, p: &mut Problems) -> Option<SinkTarget> {
    if s.dir.trim().is_empty() {
        p.report("dir", "required for `type = \"files\"`");
    }
    let format = match s.format.as_str() {
        "" | "parquet" => FileFormat::Parquet,
        "ndjson" => FileFormat::Ndjson,
        other => {
            p.report(
                "format",
                format!("{other:?} is not a format (expected parquet or ndjson)"),
            );
            return None;
        }
    };
    Some(SinkTarget::Files {
        dir: PathBuf::from(s.dir.trim()),
        format,
    })
}

/// The sink's batching, retries and timeout, checked; its settings when it has a `target`.
fn delivery(
    name: String,
    target: Option<SinkTarget>,
    c: &SinkCommon,
    p: &mut Problems,
) -> Option<SinkSettings> {
    let batch_size = c.batch_size.unwrap_or(10_000);
    if !(1..=1_000_000).contains(&batch_size) {
        p.report("batch_size", "must be between 1 and 1000000");
    }
    let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d));
    let retry_initial = ms(c.retry_initial_ms, 500);
    let retry_max = ms(c.retry_max_ms, 30_000);
    if retry_initial.is_zero() || retry_max < retry_initial {
        p.report(
            "retry_max_ms",
            "retry_initial_ms must be at least 1 and retry_max_ms at least retry_initial_ms",
        );
    }
    let timeout = Duration::from_secs(c.timeout_secs.unwrap_or(30));
    if timeout.is_zero() {
        p.report("timeout_secs", "must be at least 1");
    }
    Some(SinkSettings {
        name,
        target: target?,
        batch_size,
        batch_age: ms(c.batch_age_ms, 1_000),
        retry_initial,
        retry_max,
        timeout,
    })
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
    use super::*;

    /// `[[sinks]]` tables, read and validated as `load` does.
    fn check(text: &str) -> (Vec<SinkSettings>, Vec<String>) {
        let mut errors = Vec::new();
        let mut file: toml::Table = text.parse().unwrap();
        let mut top = Problems::new(&mut errors);
        let mut p = top.under("sinks");
        let sinks = parse(file.remove("sinks").unwrap(), &mut p);
        let out = validate(&sinks, &mut p);
        (out, errors)
    }

    #[test]
    fn defaults_and_names() {
        let (out, errors) = check(
            r#"
[[sinks]]
type = "clickhouse"
url = "http://127.0.0.1:8123/"

[[sinks]]
type = "files"
dir = "/tmp/x"
format = "ndjson"
"#,
        );
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
        let (_, errors) = check(
            r#"
[[sinks]]
type = "clickhouse"
url = "127.0.0.1:8123"
table = "events; DROP"

[[sinks]]
type = "kafka"

[[sinks]]
type = "files"
format = "csv"

[[sinks]]
type = "postgres"
name = "clickhouse"
url = "postgres://u:secret@h/db"
"#,
        );
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
