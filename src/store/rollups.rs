//! `pageview_hours`: page views per UTC hour, site and bot flag, kept with `sessions` (same
//! watermark, same transactions; `sessions.rs`), so that the overview counts a month of page
//! views from ~720 rows instead of scanning millions of events (issue 18).
//!
//! Counts are exact. A commit's page views are added by one `MERGE` of their counts per hour;
//! a deletion (forget, retention) recounts the hours it touched from the events left up to the
//! watermark, as it rebuilds sessions. A late event (an import from last month) adds to the
//! hour it happened in.

use super::StoreError;
use crate::event::columns::{NAME, PAGE_VIEW, SEQ, SITE, TS};
use duckdb::{Connection, ToSql};
use tracing::info;

/// `CREATE TABLE IF NOT EXISTS pageview_hours`.
const DDL: &str = "CREATE TABLE IF NOT EXISTS pageview_hours (
  hour_utc TIMESTAMP NOT NULL,
  site VARCHAR NOT NULL,
  is_bot BOOLEAN NOT NULL,
  pageviews BIGINT NOT NULL
);";

/// Create the table if missing.
pub(super) fn create(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(DDL)?;
    Ok(())
}

/// Count the page views with `seq` up to `through` from scratch, for a store from before the
/// table: what [`fold`] would have added up to there, into an emptied table.
pub(super) fn backfill(conn: &Connection, through: i64) -> Result<(), StoreError> {
    info!("Counting the stored page views per hour (a one-time migration).");
    let started = std::time::Instant::now();
    conn.execute_batch(&format!(
        "DELETE FROM pageview_hours; INSERT INTO pageview_hours BY NAME {};",
        counts(&format!("{SEQ} <= {through}"))
    ))?;
    info!(
        seconds = started.elapsed().as_secs(),
        "The page views per hour are counted."
    );
    Ok(())
}

/// Add the page views with `seq` in `(after, through]`, in the caller's transaction.
pub(super) fn fold(conn: &Connection, after: i64, through: i64) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "MERGE INTO pageview_hours h USING ({}) b \
           ON h.hour_utc = b.hour_utc AND h.site = b.site AND h.is_bot = b.is_bot \
         WHEN MATCHED THEN UPDATE SET pageviews = h.pageviews + b.pageviews \
         WHEN NOT MATCHED THEN INSERT BY NAME;",
        counts(&format!("{SEQ} > {after} AND {SEQ} <= {through}"))
    ))?;
    Ok(())
}

/// Note the hours of the page views that `cond` (with `value` bound) selects, before they are
/// deleted; [`recount_marked`] then counts those hours again.
pub(super) fn mark(conn: &Connection, cond: &str, value: &dyn ToSql) -> Result<(), StoreError> {
    mark_hours(conn, "hours_marked", PAGE_VIEW, cond, value)
}

/// Note in the temporary table `table` (`hour_utc`) the UTC hours of the events named `name`
/// that `cond` (with `value` bound) selects.
pub(super) fn mark_hours(
    conn: &Connection,
    table: &str,
    name: &str,
    cond: &str,
    value: &dyn ToSql,
) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "CREATE OR REPLACE TEMP TABLE {table} AS SELECT DISTINCT \
             date_trunc('hour', {TS}) AS hour_utc FROM events \
             WHERE {NAME} = '{name}' AND ({cond})"
        ),
        [value],
    )?;
    Ok(())
}

/// Count the hours [`mark`] noted again from the page views left with `seq` up to
/// `watermark` (an SQL expression).
pub(super) fn recount_marked(conn: &Connection, watermark: &str) -> Result<(), StoreError> {
    let marked = "hour_utc IN (SELECT hour_utc FROM hours_marked)";
    conn.execute_batch(&format!(
        "DELETE FROM pageview_hours WHERE {marked};
         INSERT INTO pageview_hours BY NAME {};
         DROP TABLE hours_marked;",
        counts(&format!(
            "date_trunc('hour', {TS}) IN (SELECT hour_utc FROM hours_marked) AND {SEQ} <= {watermark}"
        ))
    ))?;
    Ok(())
}

/// Page views per hour, site and bot flag among the events that `cond` selects.
fn counts(cond: &str) -> String {
    format!(
        "SELECT date_trunc('hour', {TS}) AS hour_utc, {SITE} AS site, \
         coalesce(is_bot, false) AS is_bot, \
         count(*) AS pageviews FROM events WHERE {NAME} = '{PAGE_VIEW}' AND ({cond}) \
         GROUP BY ALL"
    )
}
