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

/// Create missing tables and record the schema version. Returns the sessions watermark
/// (`sessions.rs`), with everything before it folded.
pub(super) fn migrate(conn: &Connection) -> Result<i64, StoreError> {
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
    let found = found.and_then(|v| v.parse::<u32>().ok());
    if let Some(v) = found {
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
    }
    conn.execute_batch(&events_ddl("events"))?;
    // One row per session, kept by the writer (`sessions.rs`); built from the events once for
    // a store from before version 3.
    // Page views per hour (`rollups.rs`), kept with the sessions: counted from the events up
    // to the watermark for a store of version 3, and by the back-fill for older ones.
    // Which user each visitor is stitched to (`persons.rs`), kept with them too: found from the
    // events up to the watermark for a store of version 3 or 4.
    super::rollups::create(conn)?;
    super::persons::create(conn)?;
    // Page sketches per local day (`sketches.rs`), built by the writer once a day is over:
    // empty in a store from before version 6, and built then.
    super::sketches::create(conn)?;
    // Breakdown sketches (`breakdowns.rs`) and API latencies (`latencies.rs`) are built with
    // them: a store of version 6 or 7 has built days without them, which are built again.
    if found.is_some_and(|v| v < 8) {
        super::sketches::rebuild_all(conn)?;
    }
    let watermark = if found.is_some_and(|v| v < 3) {
        super::sessions::backfill(conn)?
    } else {
        let w = super::sessions::create(conn)?;
        if found == Some(3) {
            super::rollups::backfill(conn, w)?;
        }
        if found.is_some_and(|v| v < 5) {
            super::persons::backfill(conn, w)?;
        }
        super::sessions::catch_up(conn, w)?
    };
    // Senders' event keys, so a retried submission or a re-imported file is not counted twice.
    super::keys::migrate(conn, crate::event::now_us())?;
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
    Ok(watermark)
}

/// A column's definition in DDL: `<name> <type>`, and `NOT NULL` unless `nullable`.
pub(super) fn column_def(name: &str, kind: Kind, nullable: bool) -> String {
    let not_null = if nullable { "" } else { " NOT NULL" };
    format!("{name} {}{not_null}", duckdb_type(kind))
}

/// `CREATE TABLE IF NOT EXISTS <table>` with the `events` columns.
pub fn events_ddl(table: &str) -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("  {}", column_def(c.name, c.kind(), c.nullable)))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n{}\n);",
        cols.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BEGIN: &str = "<!-- columns:begin -->\n";
    const END: &str = "<!-- columns:end -->";

    /// `docs/schema.md`'s column table as [`COLUMNS`] describes it: each column's name, store
    /// type, whether proxy events fill it, and meaning.
    fn column_table() -> String {
        let mut table = String::from(
            "| column | type | filled for proxy events | meaning |\n|---|---|---|---|\n",
        );
        for c in &COLUMNS {
            assert!(
                ![c.proxy, c.doc].iter().any(|t| t.contains(['|', '\n'])),
                "the docs of `{}` hold a `|` or a line break, which would break the table",
                c.name
            );
            table += &format!(
                "| `{}` | {} | {} | {} |\n",
                c.name,
                duckdb_type(c.kind()),
                c.proxy,
                c.doc
            );
        }
        table
    }

    /// The column table of `docs/schema.md` (between `<!-- columns:begin -->` and
    /// `<!-- columns:end -->`) is the one [`COLUMNS`] renders. With `TOLLGATE_BLESS=1`, a table
    /// that differs is rewritten instead.
    #[test]
    fn the_schema_doc_has_the_column_table() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let start = doc
            .find(BEGIN)
            .unwrap_or_else(|| panic!("docs/schema.md has no line `{}`", BEGIN.trim_end()))
            + BEGIN.len();
        let end = start
            + doc[start..]
                .find(END)
                .unwrap_or_else(|| panic!("docs/schema.md has no `{END}` after `{BEGIN}`"));
        let table = column_table();
        if doc[start..end] == table {
            return;
        }
        if std::env::var_os("TOLLGATE_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        let found: Vec<&str> = doc[start..end].lines().collect();
        let expected: Vec<&str> = table.lines().collect();
        let difference = (0..found.len().max(expected.len()))
            .find(|&i| found.get(i) != expected.get(i))
            .map_or("in its line breaks".to_string(), |i| {
                format!(
                    "first at its line {}:\n  docs/schema.md: {}\n  columns.rs:     {}",
                    i + 1,
                    found.get(i).copied().unwrap_or("(no line)"),
                    expected.get(i).copied().unwrap_or("(no line)")
                )
            });
        panic!(
            "docs/schema.md's column table is not the one src/event/columns.rs describes, \
             {difference}\nRun `TOLLGATE_BLESS=1 cargo test --release --lib the_schema_doc` to \
             rewrite it."
        );
    }
}
