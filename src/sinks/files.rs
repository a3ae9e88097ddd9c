//! Files for any warehouse: Parquet (zstd) or gzipped NDJSON, in hive partitions
//! `dt=YYYY-MM-DD/hour=HH/` by event time (UTC), named after the batch's `seq` range.
//!
//! A retry of a range writes the same names again, replacing rather than adding. Each file is
//! written under a temporary dot-name, synced, then renamed into place, so a reader never sees
//! a half-written file. The files are written by an in-memory DuckDB of the sink's own (the
//! store's instance is not allowed to touch files).

use super::{ForgetRequest, Outcome, Range, Sink};
use crate::config::FileFormat;
use crate::event::columns::{SEQ, TS};
use crate::event::{Kind, COLUMNS};
use crate::store::{append_rows, events_ddl, Record};
use async_trait::async_trait;
use duckdb::Connection;
use std::path::{Path, PathBuf};

/// The BigQuery schema file written at the top of the directory.
pub const BIGQUERY_SCHEMA_FILE: &str = "bigquery_schema.json";

pub struct Files {
    dir: PathBuf,
    format: FileFormat,
    db: Connection,
    schema_written: bool,
}

impl Files {
    pub fn new(dir: &Path, format: FileFormat) -> anyhow::Result<Self> {
        let db = Connection::open_in_memory()?;
        db.execute_batch(&events_ddl("batch"))?;
        Ok(Files {
            dir: dir.to_path_buf(),
            format,
            db,
            schema_written: false,
        })
    }

    fn ext(&self) -> &'static str {
        match self.format {
            FileFormat::Parquet => "parquet",
            FileFormat::Ndjson => "ndjson.gz",
        }
    }

    /// The columns as written: ids and `props` as strings, which every warehouse loads;
    /// timestamps as UTC instants in Parquet and RFC 3339 text in NDJSON.
    fn select(&self) -> String {
        let ts = |c: &str| match self.format {
            FileFormat::Parquet => format!("{c}::TIMESTAMPTZ AS {c}"),
            FileFormat::Ndjson => format!("strftime({c}, '%Y-%m-%dT%H:%M:%S.%fZ') AS {c}"),
        };
        COLUMNS
            .iter()
            .map(|c| match c.kind() {
                Kind::Timestamp => ts(c.name),
                Kind::Uuid | Kind::Json => format!("{0}::VARCHAR AS {0}", c.name),
                _ => c.name.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn write(&mut self, range: Range, records: &[Record]) -> anyhow::Result<()> {
        if !self.schema_written {
            std::fs::create_dir_all(&self.dir)?;
            let schema = serde_json::to_vec_pretty(&bigquery_schema())?;
            replace_file(&self.dir.join(BIGQUERY_SCHEMA_FILE), |tmp| {
                Ok(std::fs::write(tmp, &schema)?)
            })?;
            self.schema_written = true;
        }
        self.db.execute_batch("DELETE FROM batch")?;
        append_rows(&self.db, "batch", records.iter().map(|r| (r.seq, &r.event)))?;
        let hours: Vec<(String, i32)> = {
            let mut stmt = self.db.prepare(&format!(
                "SELECT DISTINCT strftime({TS}, '%Y-%m-%d'), hour({TS})::INTEGER FROM batch ORDER BY 1, 2",
            ))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let name = format!(
            "events-{:020}-{:020}.{}",
            range.after + 1,
            range.upto,
            self.ext()
        );
        let options = match self.format {
            FileFormat::Parquet => "FORMAT parquet, COMPRESSION zstd",
            FileFormat::Ndjson => "FORMAT json, COMPRESSION gzip",
        };
        let select = self.select();
        for (dt, hour) in hours {
            let part = self.dir.join(format!("dt={dt}/hour={hour:02}"));
            std::fs::create_dir_all(&part)?;
            replace_file(&part.join(&name), |tmp| {
                let path = tmp.to_string_lossy().replace('\'', "''");
                self.db.execute_batch(&format!(
                    "COPY (SELECT {select} FROM batch
                           WHERE strftime({TS}, '%Y-%m-%d') = '{dt}' AND hour({TS}) = {hour}
                           ORDER BY {SEQ})
                     TO '{path}' ({options})"
                ))?;
                Ok(())
            })?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for Files {
    async fn send(&mut self, range: Range, records: &[Record]) -> Outcome {
        // Nothing in an event can make a file unwritable, so nothing is rejected: every
        // failure (a full disk, permissions) is worth retrying.
        match self.write(range, records) {
            Ok(()) => Outcome::Delivered,
            Err(e) => Outcome::Retry(format!("writing files in {}: {e:#}", self.dir.display())),
        }
    }

    /// Files already written are not rewritten: the request is recorded beside them, in
    /// `_forget/<request_id>.json`, for whoever loads the files to apply.
    async fn forget(&mut self, request: &ForgetRequest) -> Outcome {
        let dir = self.dir.join(FORGET_DIR);
        let body = serde_json::json!({
            "request_id": request.request_id,
            "requested_at": chrono::DateTime::from_timestamp_micros(request.requested_at_us)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
            "subject_type": request.subject.column(),
            "subject": request.subject.value(),
        });
        let res = std::fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                replace_file(&dir.join(format!("{}.json", request.request_id)), |tmp| {
                    Ok(std::fs::write(tmp, body.to_string())?)
                })
            });
        match res {
            Ok(()) => Outcome::Delivered,
            Err(e) => Outcome::Retry(format!(
                "recording a forget request in {}: {e:#}",
                dir.display()
            )),
        }
    }
}

/// Where the files sink records forget requests, under its directory.
pub const FORGET_DIR: &str = "_forget";

/// Write `path` through `write` into a temporary name beside it, sync it, rename it into
/// place and sync the directory.
fn replace_file(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&tmp);
    write(&tmp)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The BigQuery JSON schema of the files (`bq load --schema bigquery_schema.json`).
pub fn bigquery_schema() -> serde_json::Value {
    let fields: Vec<serde_json::Value> = COLUMNS
        .iter()
        .map(|c| {
            let bq = match c.kind() {
                Kind::BigInt | Kind::Int => "INTEGER",
                Kind::Double => "FLOAT",
                Kind::Bool => "BOOLEAN",
                Kind::Timestamp => "TIMESTAMP",
                Kind::Uuid | Kind::Text | Kind::Json => "STRING",
            };
            let mode = if c.nullable { "NULLABLE" } else { "REQUIRED" };
            serde_json::json!({"name": c.name, "type": bq, "mode": mode})
        })
        .collect();
    serde_json::Value::Array(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Source};

    fn record(seq: i64, ts_us: i64) -> Record {
        let mut e = Event::now("page_view", "shop", Source::Proxy);
        e.ts_us = ts_us;
        e.path = Some("/it's".into());
        e.props = Some(r#"{"a":1}"#.into());
        Record { seq, event: e }
    }

    /// Writes land in hour partitions by event time, under range names, with nothing left
    /// under temporary names; a retry of the range replaces the files.
    #[tokio::test]
    async fn partitions_names_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        for format in [FileFormat::Parquet, FileFormat::Ndjson] {
            let out = dir.path().join(format!("{format:?}"));
            let mut f = Files::new(&out, format).unwrap();
            // 2026-11-28 09:59:59.5 and 10:00:00 UTC.
            let a = 1_764_323_999_500_000;
            let recs = vec![record(1, a), record(3, a + 500_000)];
            let range = Range { after: 0, upto: 3 };
            assert_eq!(f.send(range, &recs).await, Outcome::Delivered);
            assert_eq!(f.send(range, &recs).await, Outcome::Delivered);
            let ext = f.ext();
            let mut files: Vec<String> = walk(&out);
            files.sort();
            assert_eq!(
                files,
                vec![
                    BIGQUERY_SCHEMA_FILE.to_string(),
                    format!("dt=2025-11-28/hour=09/events-00000000000000000001-00000000000000000003.{ext}"),
                    format!("dt=2025-11-28/hour=10/events-00000000000000000001-00000000000000000003.{ext}"),
                ]
            );
            let n: i64 =
                f.db.query_row(
                    &format!(
                        "SELECT count(*) FROM read_{}('{}/**/*.{ext}')",
                        if format == FileFormat::Parquet {
                            "parquet"
                        } else {
                            "json"
                        },
                        out.display()
                    ),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 2);
        }
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        out
    }
}
