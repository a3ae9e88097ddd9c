//! `persons`: which user each visitor is stitched to, kept with `sessions` (same watermark,
//! same transactions; `sessions.rs`), so that the reports that count people (funnels,
//! attribution, retention) read one row per stitched visitor instead of grouping every
//! event in the store that carries both ids, in every query (issue 18).
//!
//! A visitor is stitched to the least `user_id` among its events that carry one (an identify
//! call, `X-Tollgate-User`, a server event with both ids): `user_id` is that id, `person` its
//! key as the reports use it (`md5_number`, see `reports::funnel::PERSON`). Both merge (`min`),
//! so a commit's events are folded by one `MERGE` without reading older ones. A deletion
//! (forget, retention) finds the visitors it touched again from the events left up to the
//! watermark, as it rebuilds sessions. Events past the watermark are not in the table yet:
//! [`identities`] adds them.

use super::{StoreError, FOLDED_THROUGH};
use crate::event::columns::{SEQ, USER_ID, VISITOR_ID};
use duckdb::{Connection, ToSql};
use tracing::info;

/// `CREATE TABLE IF NOT EXISTS persons`.
const DDL: &str = "CREATE TABLE IF NOT EXISTS persons (
  visitor_id UUID NOT NULL,
  user_id VARCHAR NOT NULL,
  person UHUGEINT NOT NULL
);";

/// The visitors stitched to a user, as of the statement's snapshot: the CTE `idm (visitor_id,
/// stitched)`, `stitched` being the user's person key. `persons` up to the watermark, and the
/// events past it (the few a fold has not reached yet) grouped here.
pub fn identities() -> String {
    format!(
        "idm AS MATERIALIZED (\
         SELECT visitor_id, min_by(person, user_id) AS stitched FROM (\
           SELECT visitor_id, user_id, person FROM persons \
           UNION ALL SELECT {VISITOR_ID}, {USER_ID}, md5_number({USER_ID}) FROM events \
             WHERE {SEQ} > {FOLDED_THROUGH} \
               AND {VISITOR_ID} IS NOT NULL AND {USER_ID} IS NOT NULL) \
         GROUP BY visitor_id)"
    )
}

/// Create the table if missing.
pub(super) fn create(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(DDL)?;
    Ok(())
}

/// Stitch the visitors of the events with `seq` up to `through` from scratch, for a store from
/// before the table: what [`fold`] would have made of them, in an emptied table.
pub(super) fn backfill(conn: &Connection, through: i64) -> Result<(), StoreError> {
    info!("Finding which visitor is which user in the stored events (a one-time migration).");
    let started = std::time::Instant::now();
    conn.execute_batch(&format!(
        "DELETE FROM persons; INSERT INTO persons BY NAME {};",
        stitched(&format!("{SEQ} <= {through}"))
    ))?;
    info!(
        seconds = started.elapsed().as_secs(),
        "Every stored visitor's user is found."
    );
    Ok(())
}

/// Stitch the visitors of the events with `seq` in `(after, through]`, in the caller's
/// transaction.
pub(super) fn fold(conn: &Connection, after: i64, through: i64) -> Result<(), StoreError> {
    // The `LIMIT` cuts nothing (a range of n events has at most n visitors) but tells DuckDB
    // how few rows to build the merge's hash table on (see `sessions::fold`).
    conn.execute_batch(&format!(
        "MERGE INTO persons p USING ({} LIMIT {most}) b ON p.visitor_id = b.visitor_id \
         WHEN MATCHED AND b.user_id < p.user_id THEN UPDATE SET user_id = b.user_id, person = b.person \
         WHEN NOT MATCHED THEN INSERT BY NAME;",
        stitched(&format!("{SEQ} > {after} AND {SEQ} <= {through}")),
        most = through.saturating_sub(after).max(0),
    ))?;
    Ok(())
}

/// Note the visitors whose stitched events `cond` (with `value` bound) selects, before they
/// are deleted; [`restitch_marked`] then stitches them again from the events left.
pub(super) fn mark(conn: &Connection, cond: &str, value: &dyn ToSql) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "CREATE OR REPLACE TEMP TABLE persons_marked AS SELECT DISTINCT {VISITOR_ID} \
             FROM events WHERE {VISITOR_ID} IS NOT NULL AND {USER_ID} IS NOT NULL AND ({cond})"
        ),
        [value],
    )?;
    Ok(())
}

/// Stitch the visitors [`mark`] noted again, from their events left with `seq` up to
/// `watermark` (an SQL expression); a visitor with no user left goes.
pub(super) fn restitch_marked(conn: &Connection, watermark: &str) -> Result<(), StoreError> {
    let marked = "visitor_id IN (SELECT visitor_id FROM persons_marked)";
    conn.execute_batch(&format!(
        "DELETE FROM persons WHERE {marked};
         INSERT INTO persons BY NAME {};
         DROP TABLE persons_marked;",
        stitched(&format!("{marked} AND {SEQ} <= {watermark}"))
    ))?;
    Ok(())
}

/// One row per visitor among the events that `cond` selects that carry a user id: its least.
fn stitched(cond: &str) -> String {
    format!(
        "SELECT {VISITOR_ID} AS visitor_id, min({USER_ID}) AS user_id, \
         md5_number(min({USER_ID})) AS person FROM events \
         WHERE {VISITOR_ID} IS NOT NULL AND {USER_ID} IS NOT NULL AND ({cond}) \
         GROUP BY {VISITOR_ID}"
    )
}
