//! Reports: what marketing and product ask, as SQL over the store, answered as JSON.
//!
//! Every report takes the same filters (`filter.rs`): a date range in the site's time zone,
//! dimension and property filters, and a switch to include bots (excluded by default).
//! `docs/api.md` documents each report's parameters, answer and definitions.
//!
//! # Layout
//! - `filter`: parameters, the dimension list, and the SQL they become (values always bound).
//! - `tz`: the site time zone.
//! - `traffic`: overview, pages, acquisition, audience, realtime.
//! - `usage`: API health and custom events.
//! - `funnel`, `attribution`, `retention`: the people-based reports.

mod attribution;
pub mod filter;
mod funnel;
mod retention;
mod traffic;
pub mod tz;
mod usage;

pub use tz::SiteTz;

use duckdb::Connection;
use filter::Sql;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A parameter is wrong; the message names it.
    #[error("{0}")]
    Invalid(String),
    #[error("unknown report {0:?} (expected one of {list})", list = NAMES.join(", "))]
    Unknown(String),
    #[error("store: {0}")]
    Store(#[from] duckdb::Error),
}

/// The reports, by URL name.
pub const NAMES: &[&str] = &[
    "overview",
    "pages",
    "acquisition",
    "audience",
    "api",
    "events",
    "funnel",
    "attribution",
    "retention",
    "realtime",
];

/// A table of a report: the dimension its first column holds (so that a row can become a
/// filter), the column names, and rows of JSON values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table {
    pub dimension: Option<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A report's own parameters, besides the filters (`filter.rs`); `None` for no such report.
pub fn own_params(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "overview" => &["interval"],
        "acquisition" => &["dimension"],
        "events" => &["event", "property"],
        "funnel" => &["steps", "window", "breakdown"],
        "attribution" => &["event", "lookback", "by"],
        "pages" | "audience" | "realtime" | "api" | "retention" => &[],
        _ => return None,
    })
}

/// Run report `name` with the request's query pairs. A bad parameter is
/// [`ReportError::Invalid`], whose message names it.
pub fn run(
    conn: &Connection,
    name: &str,
    pairs: &[(String, String)],
    tz: SiteTz,
) -> Result<Value, ReportError> {
    let own = own_params(name).ok_or_else(|| ReportError::Unknown(name.into()))?;
    let (f, x) = filter::parse(pairs, tz, own)?;
    let out = match name {
        "overview" => traffic::overview(conn, &f, x.get("interval").map(String::as_str))?,
        "pages" => traffic::pages(conn, &f)?,
        "acquisition" => {
            let dims: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| k == "dimension")
                .map(|(_, v)| v.clone())
                .collect();
            traffic::acquisition(conn, &f, &dims)?
        }
        "audience" => traffic::audience(conn, &f)?,
        "realtime" => traffic::realtime(conn, &f)?,
        "api" => usage::api(conn, &f)?,
        "events" => usage::events(conn, &f, &x)?,
        "funnel" => funnel::run(conn, &f, &x)?,
        "attribution" => attribution::run(conn, &f, &x)?,
        "retention" => retention::run(conn, &f)?,
        _ => return Err(ReportError::Unknown(name.into())),
    };
    let mut out = out.with(&f);
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
    let started = std::time::Instant::now();
    let mut stmt = conn.prepare(&sql.text)?;
    let mut rows = stmt.query(duckdb::params_from_iter(sql.params.iter()))?;
    let n = rows.as_ref().map_or(0, |s| s.column_count());
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(crate::store::value_json(row.get_ref(i)?));
        }
        out.push(values);
    }
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
pub(crate) fn table(
    conn: &Connection,
    sql: &Sql,
    dimension: Option<&str>,
    columns: &[&str],
) -> Result<Table, ReportError> {
    Ok(Table {
        dimension: dimension.map(Into::into),
        columns: columns.iter().map(|c| (*c).to_string()).collect(),
        rows: rows(conn, sql)?,
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
    fn every_report_has_its_parameters_listed() {
        for n in NAMES {
            assert!(own_params(n).is_some(), "{n}");
        }
        assert!(own_params("nope").is_none());
    }
}
