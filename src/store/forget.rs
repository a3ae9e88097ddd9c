//! Erasure requests: delete one person's events and record that it was asked, so sinks can
//! repeat the deletion downstream.

use super::StoreError;
use crate::event::columns::{USER_ID, VISITOR_ID};
use duckdb::{params, Connection};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whose events to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// `visitor_id`: the cookie UUID, or a cookieless hash id.
    Visitor(Uuid),
    /// `user_id`, as the site sent it.
    User(String),
}

impl Subject {
    /// A visitor by id, given as the UUID or as the `tg_vid` cookie's whole value
    /// (`<uuid>.<signature>`, the signature not checked: forgetting needs no proof).
    pub fn visitor(text: &str) -> Option<Subject> {
        let id = text.trim().split('.').next().unwrap_or_default();
        Uuid::try_parse(id).ok().map(Subject::Visitor)
    }

    /// The subject of a `forget_requests` row: its `subject_type` and `subject`.
    pub fn from_row(subject_type: &str, subject: &str) -> Option<Subject> {
        match subject_type {
            VISITOR_ID => Uuid::parse_str(subject).ok().map(Subject::Visitor),
            USER_ID => Some(Subject::User(subject.to_string())),
            _ => None,
        }
    }

    /// The `events` column that identifies the subject.
    pub fn column(&self) -> &'static str {
        match self {
            Subject::Visitor(_) => VISITOR_ID,
            Subject::User(_) => USER_ID,
        }
    }

    /// The subject's id as text.
    pub fn value(&self) -> String {
        match self {
            Subject::Visitor(v) => v.to_string(),
            Subject::User(u) => u.clone(),
        }
    }
}

/// What a forget request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetReport {
    /// The id of the row in `forget_requests`.
    pub request_id: Uuid,
    pub rows_deleted: u64,
}

/// Delete every event of `subject` (from `events`, and the copies of refused ones in
/// `sink_dead_letter`) and record the request in `forget_requests`, in one transaction: either
/// all of it happens or none.
pub fn forget(conn: &Connection, subject: &Subject) -> Result<ForgetReport, StoreError> {
    let request_id = Uuid::now_v7();
    let col = subject.column();
    let value = subject.value();
    let lock = super::sessions::lock_of(conn)?;
    let _held = super::sessions::hold(&lock);
    conn.execute_batch("BEGIN TRANSACTION")?;
    let res = (|| -> Result<u64, StoreError> {
        let n = delete_events(conn, subject)?;
        purge_dead_letters(conn, subject)?;
        conn.execute(
            "INSERT INTO forget_requests VALUES (?, current_timestamp, ?, ?, ?)",
            params![request_id.to_string(), col, value, n as i64],
        )?;
        Ok(n as u64)
    })();
    match res {
        Ok(rows_deleted) => {
            conn.execute_batch("COMMIT")?;
            Ok(ForgetReport {
                request_id,
                rows_deleted,
            })
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Delete `subject`'s events that arrived after the request was recorded (they were already
/// in the pipeline's queue) and add them to the request's count.
pub fn forget_again(
    conn: &Connection,
    subject: &Subject,
    report: &mut ForgetReport,
) -> Result<(), StoreError> {
    let lock = super::sessions::lock_of(conn)?;
    let held = super::sessions::hold(&lock);
    conn.execute_batch("BEGIN TRANSACTION")?;
    let n = match delete_events(conn, subject) {
        Ok(n) => {
            conn.execute_batch("COMMIT")?;
            n as u64
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    };
    drop(held);
    purge_dead_letters(conn, subject)?;
    if n > 0 {
        conn.execute(
            "UPDATE forget_requests SET rows_deleted = rows_deleted + ? WHERE request_id = ?",
            params![n as i64, report.request_id.to_string()],
        )?;
        report.rows_deleted += n;
    }
    Ok(())
}

/// Delete `subject`'s events, and rebuild the sessions they were part of from the events left,
/// inside the caller's transaction; returns how many events went.
fn delete_events(conn: &Connection, subject: &Subject) -> Result<usize, StoreError> {
    let cond = format!("{} = ?", subject.column());
    super::sessions::mark(conn, &cond, &subject.value())?;
    let n = conn.execute(
        &format!("DELETE FROM events WHERE {cond}"),
        [subject.value()],
    )?;
    super::sessions::rebuild_marked(conn)?;
    Ok(n)
}

/// Delete `subject`'s events from `sink_dead_letter`, where each refused event is kept whole as
/// JSON: a forgotten person must not live on in the dead letters.
fn purge_dead_letters(conn: &Connection, subject: &Subject) -> Result<usize, StoreError> {
    Ok(conn.execute(
        &format!(
            "DELETE FROM sink_dead_letter WHERE json_extract_string(event, '$.{}') = ?",
            subject.column()
        ),
        [subject.value()],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visitor_is_its_id_or_its_whole_cookie() {
        let v = Uuid::new_v4();
        assert_eq!(Subject::visitor(&v.to_string()), Some(Subject::Visitor(v)));
        let cookie = format!("{v}.AbCdEfGhIjKlMnOpQrStUv");
        assert_eq!(Subject::visitor(&cookie), Some(Subject::Visitor(v)));
        assert_eq!(Subject::visitor("nope"), None);
    }

    #[test]
    fn forget_purges_dead_letters_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let conn = store.reader().unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for (seq, v) in [(1, a), (2, b)] {
            conn.execute(
                "INSERT INTO sink_dead_letter VALUES ('ch', ?, ?, current_timestamp, 'refused', ?)",
                params![
                    seq,
                    Uuid::new_v4().to_string(),
                    serde_json::json!({"visitor_id": v, "user_id": "u-1"}).to_string()
                ],
            )
            .unwrap();
        }
        forget(&conn, &Subject::Visitor(a)).unwrap();
        let left: Vec<String> = conn
            .prepare("SELECT json_extract_string(event, '$.visitor_id') FROM sink_dead_letter")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, vec![b.to_string()]);
        forget(&conn, &Subject::User("u-1".into())).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM sink_dead_letter", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    /// A forget while another transaction holds an update of the visitor's session succeeds,
    /// and the session is gone once both have committed: DuckDB does not count an update
    /// against a delete as a conflict (which is why the writer's folds and deletions take the
    /// sessions lock; this transaction does not).
    #[test]
    fn a_forget_beside_a_concurrent_fold_removes_the_session() {
        use crate::event::{Event, Source};
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::store::Store::open(dir.path()).unwrap();
        let visitor = Uuid::new_v4();
        let mut e = Event::now("page_view", "s", Source::Proxy);
        e.visitor_id = Some(visitor);
        e.session_id = Some(Uuid::now_v7());
        store.append(1, &[e]).unwrap();
        // Another transaction holds an update of the session's row.
        let writer = store.reader().unwrap();
        writer
            .execute_batch("BEGIN TRANSACTION; UPDATE sessions SET pageviews = pageviews + 0;")
            .unwrap();
        let conn = store.reader().unwrap();
        let forgetting = std::thread::spawn(move || {
            forget(&conn, &Subject::Visitor(visitor)).map(|r| r.rows_deleted)
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(forgetting.join().unwrap().unwrap(), 1);
        let left: i64 = store
            .connection()
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }
}
