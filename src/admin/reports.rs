//! `GET /api/reports/{name}`: the reports (`crate::reports`) as JSON.

use super::{AdminState, ApiError};
use crate::reports::{self, ReportError};
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use std::sync::Arc;

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid(m) => ApiError::BadRequest(m),
            ReportError::Unknown(_) => ApiError::NotFound(e.to_string()),
            ReportError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

pub async fn handle(
    State(st): State<Arc<AdminState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("query string: {e}")))?;
    let conn = st.connection()?;
    let tz = st.timezone;
    let out = tokio::task::spawn_blocking(move || reports::run(&conn, &name, &pairs, tz))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(out))
}
