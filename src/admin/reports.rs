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
            ReportError::Store(e) => out_of_memory(&e)
                .map(ApiError::Unavailable)
                .unwrap_or_else(|| ApiError::Internal(e.to_string())),
            ReportError::Internal(m) => ApiError::Internal(m),
        }
    }
}

/// The answer to a report that ran out of `store.memory_limit` (DuckDB's "Out of Memory
/// Error"), or `None` for any other error: a limit the operator set, said as such.
fn out_of_memory(e: &duckdb::Error) -> Option<String> {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    crate::store::out_of_memory(e).then(|| {
        format!(
            "this report needs more memory than store.memory_limit allows ({first}); \
             raise store.memory_limit, or ask for a shorter range or fewer tables"
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A report that needs more memory than `store.memory_limit` is a 503 that says so and
    /// what to do, not an internal error.
    #[test]
    fn running_out_of_the_memory_limit_is_explained() {
        let config = duckdb::Config::default().max_memory("8MiB").unwrap();
        let conn = duckdb::Connection::open_in_memory_with_flags(config).unwrap();
        let e = conn
            .query_row("SELECT list(i) FROM range(20000000) t(i)", [], |_| Ok(()))
            .unwrap_err();
        match ApiError::from(ReportError::Store(e)) {
            ApiError::Unavailable(m) => {
                assert!(m.contains("store.memory_limit"), "{m}");
                assert!(m.contains("Out of Memory"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }
}
