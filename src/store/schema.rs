//! The store's DDL and migrations. `docs/schema.md` documents every column.

use super::StoreError;
use crate::event::columns::{TS, USER_ID, VISITOR_ID};
use crate::event::{Kind, COLUMNS, SCHEMA_VERSION};
use duckdb::Connection;

/// The store's type for a column of [`COLUMNS`].
pub fn duckdb_type(kind: Kind) -> &'static str {
    match kind {
        Kind::BigInt => "BIGINT",
        Kind::Uuid => "UUID",
        Kind::Timestamp => "TIMESTAMP",
        Kind::Text => "VARCHAR",
        Kind::Json => "JSON",
        Kind::Int => "INTEGER",
        Kind::Double => "DOUBLE",
        Kind::Bool => "BOOLEAN",
    }
}

/// Create missing tables and record the schema version.
pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS tollgate_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);",
    )?;
    let found: Option<String> = conn
        .query_row(
            "SELECT value FROM tollgate_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ok();
    if let Some(v) = found.and_then(|v| v.parse::<u32>().ok()) {
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
    }
    conn.execute_batch(&events_ddl("events"))?;
    // Ids of events that came through the ingestion APIs, so a retried submission or a
    // re-imported file is not counted twice. Proxy events are unique by construction.
    conn.execute_batch("CREATE TABLE IF NOT EXISTS event_keys (event_id UUID PRIMARY KEY);")?;
    // Which visitor is which user, as far as events say: from `X-Tollgate-User`, identify
    // calls, and server events that carry both. A view, so it never disagrees with the events
    // (and `forget` removes a person from it too).
    conn.execute_batch(&format!(
        "CREATE OR REPLACE VIEW identities AS
         SELECT {VISITOR_ID}, {USER_ID}, min({TS}) AS first_seen, max({TS}) AS last_seen,
                count(*) AS events
         FROM events
         WHERE {VISITOR_ID} IS NOT NULL AND {USER_ID} IS NOT NULL
         GROUP BY {VISITOR_ID}, {USER_ID};"
    ))?;
    // `tollgate forget` requests, kept so that sinks can repeat each deletion downstream.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS forget_requests (
            request_id UUID NOT NULL,
            requested_at TIMESTAMP NOT NULL,
            subject_type VARCHAR NOT NULL,
            subject VARCHAR NOT NULL,
            rows_deleted BIGINT NOT NULL
        );",
    )?;
    // Sinks: how far each has shipped (`shipped_seq`), the range it is shipping now
    // (`pending_upto`, so that a retry after a crash resends exactly the same range), the
    // forget requests each has repeated downstream, and the events each refused for good.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS sink_offsets (
            sink VARCHAR PRIMARY KEY,
            shipped_seq BIGINT NOT NULL,
            pending_upto BIGINT,
            updated_at TIMESTAMP NOT NULL,
            last_error VARCHAR,
            last_error_at TIMESTAMP
        );
        CREATE TABLE IF NOT EXISTS sink_forgets (
            sink VARCHAR NOT NULL,
            request_id UUID NOT NULL,
            applied_at TIMESTAMP NOT NULL
        );
        CREATE TABLE IF NOT EXISTS sink_dead_letter (
            sink VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            event_id UUID NOT NULL,
            failed_at TIMESTAMP NOT NULL,
            reason VARCHAR NOT NULL,
            event JSON NOT NULL
        );",
    )?;
    conn.execute(
        "INSERT OR REPLACE INTO tollgate_meta VALUES ('schema_version', ?)",
        [SCHEMA_VERSION.to_string()],
    )?;
    Ok(())
}

/// `CREATE TABLE IF NOT EXISTS <table>` with the `events` columns.
pub fn events_ddl(table: &str) -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            let not_null = if c.nullable { "" } else { " NOT NULL" };
            format!("  {} {}{not_null}", c.name, duckdb_type(c.kind()))
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n{}\n);",
        cols.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/schema.md`'s column table documents every column of [`COLUMNS`], in table order,
    /// with its store type, and no other. A row may name several columns (`a`, `b`) or a run
    /// of them (`a` … `b`).
    #[test]
    fn the_schema_doc_lists_every_column_with_its_type() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema.md"),
        )
        .unwrap();
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        let position = |n: &str| {
            names
                .iter()
                .position(|c| *c == n)
                .unwrap_or_else(|| panic!("docs/schema.md documents `{n}`, which is no column"))
        };
        let mut documented = Vec::new();
        for row in doc
            .lines()
            .skip_while(|l| !l.starts_with("| column | type |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
        {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (first, ty) = (cells[1], cells[2]);
            let quoted: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
            let run: Vec<usize> = if first.contains('…') {
                (position(quoted[0])..=position(quoted[1])).collect()
            } else {
                quoted.iter().map(|n| position(n)).collect()
            };
            for i in run {
                assert_eq!(
                    ty,
                    duckdb_type(COLUMNS[i].kind()),
                    "the type docs/schema.md gives `{}`",
                    names[i]
                );
                documented.push(names[i]);
            }
        }
        assert_eq!(
            documented, names,
            "docs/schema.md's columns, in table order"
        );
    }
}
