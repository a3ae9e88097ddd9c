//! `GET /api/reports/{name}`: the reports (`crate::reports`) as JSON; `GET /api/reports`: their
//! catalog (names, parameters, dimensions).

use super::{blocking, ApiError, Reader};
use crate::reports::{self, ReportError, SiteTz};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// What the reports need: the store and the site's time zone.
pub struct Reports {
    pub reader: Arc<Reader>,
    pub timezone: SiteTz,
}

pub fn routes(reports: Reports) -> Router {
    Router::new()
        .route("/api/reports", get(|| async { Json(reports::catalog()) }))
        .route("/api/reports/{name}", get(handle))
        .with_state(Arc::new(reports))
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid(m) => ApiError::BadRequest(m),
            ReportError::Unknown(_) => ApiError::NotFound(e.to_string()),
            ReportError::Store(e) => ApiError::Internal(e.to_string()),
            ReportError::Internal(m) => ApiError::Internal(m),
        }
    }
}

async fn handle(
    State(st): State<Arc<Reports>>,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let conn = st.reader.connection()?;
    let tz = st.timezone;
    let out = blocking(move || reports::run(&conn, &name, &pairs, tz)).await?;
    Ok(Json(out))
}
