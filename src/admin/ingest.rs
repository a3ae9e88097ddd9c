//! Server-side ingestion on the admin listener: `POST /api/events` (tollgate's own API),
//! `POST /api/import` (CSV files of offline events) and Segment's `POST /v1/*` (`segment.rs`).
//! Each answers after the commit: a 2xx means the events are durable.

use super::{segment, ApiError};
use crate::event::{now_us, Source};
use crate::ingest::{import, import_file, ingest_items, native, IngestSender};
use crate::reports::query;
use crate::reports::ReportError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest body of `POST /api/events`.
pub const MAX_EVENTS_BODY: usize = 16 * 1024 * 1024;

/// What the ingestion routes need.
pub struct Ingest {
    /// The durable path to the writer.
    pub sender: IngestSender,
    /// The site id stored in ingested events.
    pub site: String,
    /// Most items in one `POST /api/events` request.
    pub api_max_items: usize,
    /// CSV column mapping from the configuration.
    pub import_map: HashMap<String, String>,
    /// Segment API write keys.
    pub write_keys: Vec<String>,
}

pub fn routes(ingest: Ingest) -> Router {
    Router::new()
        .route("/api/events", post(events))
        .route("/api/import", post(import))
        .route("/v1/{kind}", post(segment::handle))
        .with_state(Arc::new(ingest))
}

/// `POST /api/events`: server-side events, as a JSON object, a JSON array or NDJSON.
/// 200 when at least one item was valid (rejected ones are listed), 400 when none was.
async fn events(
    State(st): State<Arc<Ingest>>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let items = native::split_body(&body, st.api_max_items).map_err(|e| match e {
        native::BodyError::TooMany(_) => ApiError::TooLarge(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    })?;
    let cx = native::Context {
        site: &st.site,
        source: Source::Server,
        browser: None,
        now_us: now_us(),
    };
    // A store that cannot take them now is a 503 to retry.
    let report = ingest_items(&st.sender, items, &cx)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok((status(report.accepted == 0), Json(report)))
}

/// The query string of `POST /api/import`: `strict` (last value wins), `map` any number of
/// times. Read by serde through [`Query`](crate::reports::query::Query), which, unlike axum's
/// `Query`, gives a `Vec` field every value of a repeated key.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct ImportParams {
    #[serde(deserialize_with = "strict")]
    strict: bool,
    /// `Column=field` pairs, added to `ingest.import_map`.
    map: Vec<String>,
}

fn strict<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    query::parsed(d, |v| match v {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ReportError::Invalid(format!(
            "strict={v:?} is not true or false"
        ))),
    })
}

impl ImportParams {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<ImportParams, ApiError> {
        let keys = query::fields::<ImportParams>();
        let mut q = query::Query::default();
        for (k, v) in &pairs {
            if !keys.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {k:?} (expected {})",
                    keys.join(", ")
                )));
            }
            q.push(k, v);
        }
        q.deserialize()
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// `POST /api/import?strict=true&map=Col%3Dfield`: a CSV file of offline events
/// (`ingest::import`). 200 when rows were imported (bad ones listed by line); 400 when none
/// was good, or in strict mode when any was bad (then nothing is imported).
async fn import(
    State(st): State<Arc<Ingest>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let params = ImportParams::from_pairs(pairs)?;
    let mut map = st.import_map.clone();
    let bad = |e: import::FileError| ApiError::BadRequest(e.to_string());
    map.extend(import::parse_map(&params.map).map_err(bad)?);
    let report = import_file(&st.sender, &body, &map, &st.site, now_us(), params.strict)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .map_err(bad)?;
    Ok((status(report.accepted == 0 || report.refused), Json(report)))
}

/// 400 when nothing was taken, else 200.
fn status(nothing_taken: bool) -> StatusCode {
    if nothing_taken {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Result<ImportParams, String> {
        let pairs = serde_urlencoded::from_str(q).map_err(|e| e.to_string())?;
        ImportParams::from_pairs(pairs).map_err(|e| e.to_string())
    }

    #[test]
    fn import_parameters() {
        assert_eq!(params("").unwrap(), ImportParams::default());
        let p = params("strict&map=Order+Id%3Devent_id&map=When%3Dtimestamp").unwrap();
        assert!(p.strict);
        assert_eq!(p.map, ["Order Id=event_id", "When=timestamp"]);
        assert!(!params("strict=0").unwrap().strict);
        assert!(params("strict=1&strict=false").map(|p| !p.strict).unwrap());
        assert!(params("strict=maybe")
            .unwrap_err()
            .contains("not true or false"));
        assert!(params("mapp=x")
            .unwrap_err()
            .contains("expected strict, map"));
    }
}
