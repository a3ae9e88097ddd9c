//! The read-only SQL guard: one SELECT, no file, network or extension access.
//!
//! Three layers, so that a gap in one is caught by the next:
//! 1. DuckDB's own parser (`json_serialize_sql`) must see exactly one SELECT statement; every
//!    write, DDL, `COPY`, `ATTACH`, `INSTALL`/`LOAD`, `PRAGMA` and `SET` fails here.
//! 2. The parsed tree may not name a file-reading table function (`read_csv`, `glob`, …) or a
//!    file path as a table (`FROM '/etc/passwd'`).
//! 3. The database itself runs with `enable_external_access = false` and a locked
//!    configuration (see `Store::open`).

use super::query::QueryError;
use duckdb::Connection;
use serde_json::Value;

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
    fn first_keywords() {
        assert_eq!(first_keyword("  (select 1)"), "select");
        assert_eq!(first_keyword("DROP TABLE x"), "DROP");
    }
}
