//! Reports: what marketing and product ask, as SQL over the store, answered as JSON.
//!
//! Every report takes the same filters (`filter.rs`): a date range in the site's time zone,
//! dimension and property filters, and a switch to include bots (excluded by default).
//! `docs/api.md` documents each report's parameters, answer and definitions.
//!
//! # Layout
//! - `defs`: every report, defined once (name, docs, own parameters, typed answer): the list
//!   the API, the dashboard and the docs read.
//! - `filter`: parameters, the dimension list, and the SQL they become (values always bound).
//! - `tz`: the site time zone.
//! - `traffic`: overview, pages, acquisition, audience, realtime.
//! - `usage`: API health and custom events.
//! - `funnel`, `attribution`, `retention`: the people-based reports.

mod attribution;
pub mod defs;
pub mod filter;
mod funnel;
mod retention;
mod traffic;
pub mod tz;
mod usage;

pub use defs::{catalog, find, Def, REPORTS};
pub use tz::SiteTz;

use duckdb::types::FromSql;
use duckdb::Connection;
use filter::Sql;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A parameter is wrong; the message names it.
    #[error("{0}")]
    Invalid(String),
    #[error("unknown report {0:?} (expected one of {list})", list = names().join(", "))]
    Unknown(String),
    #[error("store: {0}")]
    Store(#[from] duckdb::Error),
    /// An answer that could not be put as JSON.
    #[error("{0}")]
    Internal(String),
}

/// The reports' URL names, in [`REPORTS`]' order.
pub fn names() -> Vec<&'static str> {
    REPORTS.iter().map(|d| d.name).collect()
}

/// A table of a report: the dimension its first column holds (so that a row can become a
/// filter), the column names, and its rows. A row is a typed tuple struct (JSON: an array in
/// the columns' order); tables whose width depends on the request (a funnel's steps, the
/// weeks of retention) have rows of JSON values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table<R = Vec<Value>> {
    pub dimension: Option<String>,
    pub columns: Vec<String>,
    pub rows: Vec<R>,
}

/// A dimension's value and one count (`path, sessions`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CountRow(pub Option<String>, pub i64);

/// A dimension's value and two counts (`path, visitors, pageviews`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CountsRow(pub Option<String>, pub i64, pub i64);

/// A typed table row, read from a query's row by position.
pub(crate) trait Row: Sized {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self>;
}

impl<A: FromSql, B: FromSql, C: FromSql, D: FromSql> Row for (A, B, C, D) {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    }
}

impl Row for CountRow {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok(CountRow(r.get(0)?, r.get(1)?))
    }
}

impl Row for CountsRow {
    fn read(r: &duckdb::Row<'_>) -> duckdb::Result<Self> {
        Ok(CountsRow(r.get(0)?, r.get(1)?, r.get(2)?))
    }
}

/// Run report `name` with the request's query pairs. A bad parameter is
/// [`ReportError::Invalid`], whose message names it.
pub fn run(
    conn: &Connection,
    name: &str,
    pairs: &[(String, String)],
    tz: SiteTz,
) -> Result<Value, ReportError> {
    let def = find(name).ok_or_else(|| ReportError::Unknown(name.into()))?;
    let (f, x) = filter::parse(pairs, tz, &def.param_names())?;
    let mut out = def.run(conn, &f, &x)?.with(&f);
    if let Value::Object(m) = &mut out {
        m.insert("report".into(), name.into());
    }
    Ok(out)
}

/// Merge the filter echo (`range`, `bots`, `filters`) into a report's object.
trait WithFilters {
    fn with(self, f: &filter::Filters) -> Value;
}

impl WithFilters for Value {
    fn with(mut self, f: &filter::Filters) -> Value {
        if let (Value::Object(m), Value::Object(echo)) = (&mut self, f.echo()) {
            for (k, v) in echo {
                m.entry(k).or_insert(v);
            }
        }
        self
    }
}

/// Run `sql` and return its rows as JSON values.
pub(crate) fn rows(conn: &Connection, sql: &Sql) -> Result<Vec<Vec<Value>>, ReportError> {
    query(conn, sql, |row| {
        let n = row.as_ref().column_count();
        (0..n)
            .map(|i| Ok(crate::store::value_json(row.get_ref(i)?)))
            .collect()
    })
}

/// Run `sql` and read each row as `R`.
pub(crate) fn typed_rows<R: Row>(conn: &Connection, sql: &Sql) -> Result<Vec<R>, ReportError> {
    query(conn, sql, R::read)
}

fn query<T>(
    conn: &Connection,
    sql: &Sql,
    read: impl FnMut(&duckdb::Row<'_>) -> duckdb::Result<T>,
) -> Result<Vec<T>, ReportError> {
    let started = std::time::Instant::now();
    let mut stmt = conn.prepare(&sql.text)?;
    let out = stmt
        .query_map(duckdb::params_from_iter(sql.params.iter()), read)?
        .collect::<Result<Vec<T>, _>>()?;
    // `TOLLGATE_LOG=tollgate::reports=debug` shows each report query, its values and its time.
    tracing::debug!(
        sql = %sql.text,
        params = ?sql.params,
        ms = started.elapsed().as_millis() as u64,
        "Report query."
    );
    Ok(out)
}

/// Run `sql` for a table whose columns are `columns`.
pub(crate) fn table<R: Row>(
    conn: &Connection,
    sql: &Sql,
    dimension: Option<&str>,
    columns: &[&str],
) -> Result<Table<R>, ReportError> {
    Ok(Table {
        dimension: dimension.map(Into::into),
        columns: columns.iter().map(|c| (*c).to_string()).collect(),
        rows: typed_rows(conn, sql)?,
    })
}

/// `a / b`, or 0 when `b` is 0, rounded to 4 decimals.
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        round4(a / b)
    }
}

pub(crate) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A JSON number as f64 (0 for null).
pub(crate) fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_have_unique_names_and_documented_parameters() {
        let mut seen = std::collections::HashSet::new();
        for d in REPORTS {
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(!d.doc.is_empty(), "{}", d.name);
            for p in d.params {
                assert!(!p.doc.is_empty(), "{}.{}", d.name, p.name);
            }
        }
        assert!(find("funnel").is_some() && find("nope").is_none());
    }

    /// docs/api.md names every report, has a section for each, and mentions each one's own
    /// parameters in it.
    #[test]
    fn the_api_doc_has_every_report_and_parameter() {
        let doc = include_str!("../../docs/api.md");
        let names: Vec<String> = REPORTS.iter().map(|d| format!("`{}`", d.name)).collect();
        let intro = doc
            .split("Report names:")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .expect("docs/api.md lists the report names");
        let listed: Vec<&str> = intro
            .split(|c: char| c == ',' || c.is_whitespace() || c == '.')
            .filter(|w| w.starts_with('`'))
            .collect();
        assert_eq!(
            listed, names,
            "the names after \"Report names:\" in docs/api.md"
        );
        for d in REPORTS {
            let head = format!("### `{}`\n", d.name);
            let section = doc
                .split(&head)
                .nth(1)
                .unwrap_or_else(|| panic!("docs/api.md has no section {head:?}"));
            let section = section.split("\n#").next().unwrap_or(section);
            for p in d.params {
                assert!(
                    section.contains(&format!("`{}", p.name))
                        || section.contains(&format!("&{}=", p.name)),
                    "docs/api.md's {} section does not mention `{}`",
                    d.name,
                    p.name
                );
            }
        }
    }
}
