//! The Segment-compatible tracking API on the admin listener: `POST /v1/track`, `/v1/page`,
//! `/v1/screen`, `/v1/identify`, `/v1/group`, `/v1/alias` and `/v1/batch`, so that Segment's
//! own server libraries can send to tollgate by pointing their `host` at it.
//!
//! Auth is Segment's: the write key as the Basic auth user name (empty password), or
//! `writeKey` in the body. Limits are Segment's: 32 KB a message, 500 KB a batch (413).
//! Messages are validated one by one: the good ones of a batch are committed, the bad ones
//! listed by index with the reason. The answer comes after the commit.

use super::{ApiError, Ingest};
use crate::event::now_us;
use crate::ingest::segment::{self, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES};
use crate::ingest::Rejected;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use serde_json::Value;
use std::sync::Arc;

/// The answer to a Segment call.
#[derive(Debug, serde::Serialize)]
pub struct SegmentReport {
    /// Segment clients look at this.
    pub success: bool,
    pub written: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

pub async fn handle(
    State(st): State<Arc<Ingest>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let received = now_us();
    let batch = kind == "batch";
    if !batch && segment::kind_name(&kind).is_none() {
        return Err(ApiError::NotFound(format!(
            "no Segment endpoint /v1/{kind} (expected track, page, screen, identify, group, alias, batch)"
        )));
    }
    let limit = if batch {
        MAX_BATCH_BYTES
    } else {
        MAX_MESSAGE_BYTES
    };
    if body.len() > limit {
        return Err(ApiError::TooLarge(format!(
            "the request is {} bytes; Segment's limit for /v1/{kind} is {} KB",
            body.len(),
            limit / 1024
        )));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    authorize(&st.write_keys, &headers, &v)?;

    let mut events = Vec::new();
    let mut rejected = Vec::new();
    for (index, res) in segment::request_events(&kind, &v, &st.site, received)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .into_iter()
        .enumerate()
    {
        match res {
            Ok(e) => events.push(e),
            Err(e) => rejected.push(Rejected {
                index,
                error: e.to_string(),
            }),
        }
    }
    if events.is_empty() {
        let why = if batch {
            rejected
                .iter()
                .map(|r| format!("message {}: {}", r.index, r.error))
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            rejected.iter().map(|r| r.error.clone()).collect()
        };
        return Err(ApiError::BadRequest(if why.is_empty() {
            "no messages".into()
        } else {
            why
        }));
    }
    let c = st
        .sender
        .submit(events)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok((
        StatusCode::OK,
        Json(SegmentReport {
            success: true,
            written: c.written,
            duplicates: c.duplicates,
            rejected,
        }),
    ))
}

/// Segment's write-key check: Basic auth user name, or `writeKey` in the body.
fn authorize(keys: &[String], headers: &HeaderMap, body: &Value) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Err(ApiError::Unauthorized(
            "no write key is configured: set ingest.write_keys in the configuration, or TOLLGATE_WRITE_KEYS=key1,key2, and send the key as the Basic auth user name".into(),
        ));
    }
    let from_header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|up| {
            up.split_once(':')
                .map_or(up.clone(), |(u, _)| u.to_string())
        });
    let given = from_header.or_else(|| {
        body.get("writeKey")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    match given {
        None => Err(ApiError::Unauthorized(
            "no write key: send it as the Basic auth user name, or as \"writeKey\" in the body"
                .into(),
        )),
        Some(k)
            if keys
                .iter()
                .any(|c| constant_time_eq(c.as_bytes(), k.as_bytes())) =>
        {
            Ok(())
        }
        Some(_) => Err(ApiError::Unauthorized("the write key is not valid".into())),
    }
}

/// Compare without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}
