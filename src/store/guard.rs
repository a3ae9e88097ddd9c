//! The read-only SQL guard: one query, no file, network or extension access.
//!
//! Layers, so that a gap in one is caught by the next:
//! 1. DuckDB's own parser (`json_serialize_sql`) must see exactly one SELECT statement; every
//!    write, DDL, `COPY`, `ATTACH`, `INSTALL`/`LOAD`, `PRAGMA` and `SET` fails here.
//! 2. Every query node of the parsed tree must be a query: a SELECT, a set operation, a CTE or
//!    a recursive CTE. DuckDB parses `WITH x AS (DELETE … RETURNING *) SELECT …` as a SELECT
//!    whose CTE is a `DELETE_QUERY_NODE`: refused here, as is any node kind not on the list.
//! 3. The parsed tree may not name a file-reading table function (`read_csv`, `glob`, …) or a
//!    file path as a table (`FROM '/etc/passwd'`).
//! 4. [`super::run_query`] runs the query in a transaction DuckDB holds read-only, and the
//!    database itself runs with `enable_external_access = false` and a locked configuration
//!    (see `Store::open`): even a statement that slipped past the guard cannot write.

use duckdb::Connection;
use serde_json::Value;

/// Why a console query was not answered: the guard refused it, or it failed to run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query would write, or touch files, the network or extensions.
    #[error("refused: {0}")]
    Refused(String),
    /// The query is not valid SQL or failed to run.
    #[error("{0}")]
    Invalid(String),
    /// Interrupted (its deadline passed, or its client went away).
    #[error("the query was interrupted")]
    Interrupted,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Table functions a query may use. Anything else (readers, scanners, `query()`) is refused.
const ALLOWED_TABLE_FUNCTIONS: &[&str] = &[
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
    "duckdb_tables",
    "duckdb_columns",
    "duckdb_views",
    "duckdb_schemas",
    "duckdb_types",
    "duckdb_functions",
    "duckdb_keywords",
    "test_all_types",
];

/// The query node kinds a read-only query is made of. Anything else (`DELETE_QUERY_NODE`,
/// `UPDATE_QUERY_NODE`, `INSERT_QUERY_NODE`, `MERGE_QUERY_NODE`, `COPY_QUERY_NODE`,
/// `STATEMENT_NODE`, and kinds a later DuckDB adds) is refused.
const QUERY_NODES: &[&str] = &[
    "SELECT_NODE",
    "SET_OPERATION_NODE",
    "CTE_NODE",
    "RECURSIVE_CTE_NODE",
];

/// Scalar functions that touch the outside world.
const DENIED_FUNCTIONS: &[&str] = &["getenv", "current_setting", "read_text", "read_blob"];

/// Statements that are harmless but not SELECTs: `DESCRIBE events`, `SHOW TABLES`.
fn is_simple_introspection(sql: &str) -> bool {
    let s = sql.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = s.split_whitespace().collect();
    let ident = |w: &str| {
        !w.is_empty()
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !w.starts_with(|c: char| c.is_ascii_digit())
    };
    match words.as_slice() {
        [verb, t] if verb.eq_ignore_ascii_case("show") => {
            t.eq_ignore_ascii_case("tables") || ident(t)
        }
        [verb, t] if verb.eq_ignore_ascii_case("describe") => ident(t),
        _ => false,
    }
}

/// Refuse `sql` unless it is a single read-only query. The error says why.
pub fn check_read_only(conn: &Connection, sql: &str) -> Result<(), QueryError> {
    if sql.trim().trim_end_matches(';').trim().is_empty() {
        return Err(QueryError::Invalid("empty query".into()));
    }
    if is_simple_introspection(sql) {
        return Ok(());
    }
    let tree: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |r| r.get(0))
        .map_err(|e| QueryError::Internal(format!("SQL parser unavailable: {e}")))?;
    let tree: Value = serde_json::from_str(&tree)
        .map_err(|e| QueryError::Internal(format!("SQL parser output: {e}")))?;
    if tree.get("error").and_then(Value::as_bool) == Some(true) {
        let msg = tree
            .get("error_message")
            .and_then(Value::as_str)
            .unwrap_or("not a query");
        return Err(classify_parse_error(sql, msg));
    }
    let statements = tree
        .get("statements")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if statements != 1 {
        return Err(QueryError::Refused(format!(
            "send exactly one statement (got {statements})"
        )));
    }
    walk(&tree)
}

/// Turn the serializer's complaint into a clear refusal or a syntax error.
fn classify_parse_error(sql: &str, msg: &str) -> QueryError {
    if msg.contains("Only SELECT statements") {
        let first = first_keyword(sql).to_ascii_uppercase();
        if matches!(
            first.as_str(),
            "SELECT" | "WITH" | "FROM" | "VALUES" | "TABLE"
        ) {
            // The first statement reads, so a later one is the write.
            return QueryError::Refused(
                "send exactly one statement: a later statement in this query is not a SELECT"
                    .into(),
            );
        }
        let what = if first.is_empty() {
            "this statement".to_string()
        } else {
            format!("{first} statements")
        };
        QueryError::Refused(format!(
            "{what} are not allowed: the SQL console is read-only (only SELECT queries run)"
        ))
    } else {
        QueryError::Invalid(msg.to_string())
    }
}

fn first_keyword(sql: &str) -> &str {
    let s = sql.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
    let end = s
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(s.len());
    &s[..end]
}

fn walk(v: &Value) -> Result<(), QueryError> {
    match v {
        Value::Object(map) => {
            if let Some(kind) = map.get("type").and_then(Value::as_str) {
                if kind.ends_with("_NODE") && !QUERY_NODES.contains(&kind) {
                    let what = kind
                        .trim_end_matches("_NODE")
                        .trim_end_matches("_QUERY")
                        .replace('_', " ");
                    return Err(QueryError::Refused(format!(
                        "{what} statements are not allowed, not even inside a WITH clause: the \
                         SQL console is read-only (only SELECT queries run)"
                    )));
                }
            }
            if map.get("type").and_then(Value::as_str) == Some("TABLE_FUNCTION") {
                let name = map
                    .get("function")
                    .and_then(|f| f.get("function_name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !ALLOWED_TABLE_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(QueryError::Refused(format!(
                        "table function {name}() is not allowed: the SQL console cannot read files or other databases"
                    )));
                }
            }
            if map.get("type").and_then(Value::as_str) == Some("BASE_TABLE") {
                let t = map.get("table_name").and_then(Value::as_str).unwrap_or("");
                if t.contains(['/', '.', '\\', ':']) || !map_str(map, "catalog_name").is_empty() {
                    return Err(QueryError::Refused(format!(
                        "{t:?} is not allowed: the SQL console reads only tollgate's tables, not files or other databases"
                    )));
                }
            }
            if let Some(name) = map.get("function_name").and_then(Value::as_str) {
                let lower = name.to_ascii_lowercase();
                if DENIED_FUNCTIONS.contains(&lower.as_str())
                    || lower.starts_with("read_")
                    || lower.contains("_scan")
                {
                    return Err(QueryError::Refused(format!(
                        "function {name}() is not allowed in the read-only SQL console"
                    )));
                }
            }
            map.values().try_for_each(walk)
        }
        Value::Array(items) => items.iter().try_for_each(walk),
        _ => Ok(()),
    }
}

fn map_str<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspection_shortcuts() {
        assert!(is_simple_introspection("DESCRIBE events"));
        assert!(is_simple_introspection("show tables;"));
        assert!(!is_simple_introspection("describe events; drop table x"));
        assert!(!is_simple_introspection("DESCRIBE '/etc/passwd'"));
    }

    #[test]
    fn only_query_nodes_pass() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE events (seq BIGINT, user_id VARCHAR)")
            .unwrap();
        for sql in [
            "WITH x AS (DELETE FROM events RETURNING *) SELECT * FROM x",
            "WITH x AS (UPDATE events SET user_id = 'm' RETURNING *) SELECT * FROM x",
            "WITH x AS (INSERT INTO events VALUES (1, 'm') RETURNING *) SELECT * FROM x",
            "SELECT * FROM (WITH x AS (DELETE FROM events RETURNING seq) SELECT * FROM x)",
            "SELECT 1 UNION ALL (WITH x AS (DELETE FROM events RETURNING seq) SELECT seq FROM x)",
        ] {
            let e = check_read_only(&conn, sql).unwrap_err();
            assert!(
                matches!(&e, QueryError::Refused(m) if m.contains("read-only")),
                "{sql}: {e}"
            );
        }
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS n) SELECT n FROM a UNION SELECT 2",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
            "SELECT * FROM events WHERE seq IN (SELECT seq FROM events)",
        ] {
            check_read_only(&conn, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn first_keywords() {
        assert_eq!(first_keyword("  (select 1)"), "select");
        assert_eq!(first_keyword("DROP TABLE x"), "DROP");
    }
}
