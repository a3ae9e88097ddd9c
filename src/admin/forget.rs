//! `POST /api/forget {"visitor_id": …}` or `{"user_id": …}`: delete a person's events from the
//! store, and queue the deletion for every sink.

use super::{blocking, ApiError, Reader};
use crate::ingest::IngestSender;
use crate::store::{forget, forget_again, ForgetReport, StoreError, Subject};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// What `/api/forget` needs.
pub struct Forget {
    pub reader: Arc<Reader>,
    /// The pipeline's flush interval: how long an event can still be in flight.
    pub flush_interval: Duration,
    /// The writer, to commit the events it holds before the second deletion.
    pub writer: IngestSender,
}

pub fn routes(forget: Forget) -> Router {
    Router::new()
        .route("/api/forget", post(handle))
        .with_state(Arc::new(forget))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    #[serde(default)]
    pub visitor_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

impl ForgetRequest {
    pub fn subject(&self) -> Result<Subject, String> {
        match (&self.visitor_id, &self.user_id) {
            (Some(v), None) => {
                Subject::visitor(v).ok_or_else(|| format!("visitor_id {v:?} is not a UUID"))
            }
            (None, Some(u)) if !u.is_empty() => Ok(Subject::User(u.clone())),
            _ => Err("give exactly one of visitor_id or user_id".into()),
        }
    }
}

/// Delete a visitor's or user's events. Events of theirs still in flight (a response not
/// finished yet, the pipeline's queue, the writer's open transaction) are not in the store
/// yet: the handler waits a flush interval for the in-flight ones to be queued, has the
/// writer commit everything it holds, and deletes again, so the answer counts them too.
async fn handle(
    State(st): State<Arc<Forget>>,
    body: Result<Json<ForgetRequest>, JsonRejection>,
) -> Result<Json<ForgetReport>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let subject = req.subject().map_err(ApiError::BadRequest)?;
    let conn = st.reader.connection()?;
    let (mut report, conn, subject) = blocking(move || {
        let report = forget(&conn, &subject)?;
        Ok::<_, StoreError>((report, conn, subject))
    })
    .await?;
    tokio::time::sleep(st.flush_interval + Duration::from_millis(200)).await;
    st.writer.flush().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "{e}; the events stored so far are deleted (request {}), but later ones may not be: send the request again",
            report.request_id
        ))
    })?;
    let report = blocking(move || {
        forget_again(&conn, &subject, &mut report)?;
        Ok::<_, StoreError>(report)
    })
    .await?;
    info!(request_id = %report.request_id, rows = report.rows_deleted, "Forget request done.");
    Ok(Json(report))
}
