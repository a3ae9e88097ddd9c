//! Compressed request bodies (`Content-Encoding: gzip`, `x-gzip` or `deflate`) on the
//! ingestion routes: `/api/events`, `/api/import` and Segment's `/v1/*`. RudderStack's and
//! Segment's Python SDKs gzip their batches.
//!
//! The route's size limit applies to the decompressed body, and the output may be at most
//! [`MAX_RATIO`] times the compressed input, so a gzip bomb is a 413 after at most the limit
//! has been allocated, never more. Decompression streams into a buffer grown only up to that
//! bound. Other routes, and other codings, are a 415.

use super::ApiError;
use crate::ingest::segment::{MAX_BATCH_BYTES, MAX_MESSAGE_BYTES};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use std::io::Read;

/// Most a body may grow when decompressed: JSON and CSV rarely compress better than 20:1.
pub const MAX_RATIO: usize = 100;

/// A content coding tollgate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's `deflate` is zlib-wrapped; raw deflate, which some clients send, is accepted too.
    Deflate,
}

impl Coding {
    pub fn parse(name: &str) -> Option<Coding> {
        match name.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is larger than {limit} bytes when decompressed")]
    TooLarge { limit: usize },
    #[error(
        "the body expands more than {ratio}:1 when decompressed ({compressed} bytes \
         compressed); that is the compression ratio limit",
        ratio = MAX_RATIO
    )]
    Ratio { compressed: usize },
    #[error("the body is not valid {coding}: {reason}")]
    Corrupt {
        coding: &'static str,
        reason: String,
    },
}

/// Decompress `raw` into at most `limit` bytes, and at most [`MAX_RATIO`] times its size.
pub fn decode(coding: Coding, raw: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let by_ratio = raw.len().saturating_mul(MAX_RATIO);
    let cap = limit.min(by_ratio);
    let mut reader: Box<dyn Read + '_> = match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        // A zlib stream starts with a header whose check bits make it a multiple of 31.
        Coding::Deflate
            if raw.len() >= 2
                && raw[0] & 0x0f == 8
                && ((u16::from(raw[0]) << 8) | u16::from(raw[1])) % 31 == 0 =>
        {
            Box::new(flate2::read::ZlibDecoder::new(raw))
        }
        Coding::Deflate => Box::new(flate2::read::DeflateDecoder::new(raw)),
    };
    let mut out: Vec<u8> = Vec::with_capacity(raw.len().saturating_mul(4).min(cap));
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| DecodeError::Corrupt {
            coding: coding.name(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > cap {
            return Err(if cap == limit {
                DecodeError::TooLarge { limit }
            } else {
                DecodeError::Ratio {
                    compressed: raw.len(),
                }
            });
        }
        if out.len() + n > out.capacity() {
            // Grow by doubling, but never past the cap.
            let want = (out.capacity() * 2).max(out.len() + n).min(cap);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// The largest decompressed body of a route that takes compressed bodies.
fn limit(path: &str) -> Option<usize> {
    match path {
        "/api/events" | "/api/import" => Some(super::MAX_EVENTS_BODY),
        "/v1/batch" => Some(MAX_BATCH_BYTES),
        p if p.starts_with("/v1/") => Some(MAX_MESSAGE_BYTES),
        _ => None,
    }
}

/// Middleware: replace a compressed body with its decompressed bytes (and drop
/// `Content-Encoding`), so that handlers and their limits see the real body.
pub async fn decompress(req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_ENCODING) else {
        return Ok(next.run(req).await);
    };
    let name = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
    if name.is_empty() || name.eq_ignore_ascii_case("identity") {
        return Ok(next.run(req).await);
    }
    let path = req.uri().path().to_string();
    let Some(limit) = limit(&path) else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{path} does not take compressed bodies (Content-Encoding: {name}); send it \
             uncompressed"
        )));
    };
    let Some(coding) = Coding::parse(&name) else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {name:?} is not supported: expected gzip or deflate"
        )));
    };
    let too_large = || {
        ApiError::TooLarge(format!(
            "the request body is larger than {} KB, the limit of {path}, which applies after \
             decompression",
            limit / 1024
        ))
    };
    let (mut parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut raw = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("failed to read the body: {e}")))?;
        if raw.len() + chunk.len() > limit {
            return Err(too_large());
        }
        raw.extend_from_slice(&chunk);
    }
    let decoded = tokio::task::spawn_blocking(move || decode(coding, &raw, limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            DecodeError::TooLarge { .. } => too_large(),
            DecodeError::Ratio { .. } => ApiError::TooLarge(e.to_string()),
            DecodeError::Corrupt { .. } => ApiError::BadRequest(e.to_string()),
        })?;
    parts.headers.remove(header::CONTENT_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(decoded.len()));
    Ok(next
        .run(Request::from_parts(parts, Body::from(decoded)))
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn codings_round_trip() {
        let text = br#"{"batch":[{"type":"track","event":"x","userId":"u"}]}"#.repeat(3);
        assert_eq!(decode(Coding::Gzip, &gzip(&text), 1 << 20).unwrap(), text);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&text).unwrap();
        assert_eq!(
            decode(Coding::Deflate, &z.finish().unwrap(), 1 << 20).unwrap(),
            text
        );
        let mut d = DeflateEncoder::new(Vec::new(), Compression::default());
        d.write_all(&text).unwrap();
        assert_eq!(
            decode(Coding::Deflate, &d.finish().unwrap(), 1 << 20).unwrap(),
            text
        );
        assert_eq!(Coding::parse("X-GZIP"), Some(Coding::Gzip));
        assert_eq!(Coding::parse("br"), None);
    }

    #[test]
    fn limits_ratio_and_garbage() {
        let zeros = gzip(&vec![0u8; 10 << 20]);
        // 10 MiB of zeros is ~10 KB of gzip: the ratio cap stops it at 100 times that.
        let e = decode(Coding::Gzip, &zeros, 16 << 20).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Ratio {
                compressed: zeros.len()
            }
        );
        let e = decode(Coding::Gzip, &zeros, 4096).unwrap_err();
        assert_eq!(e, DecodeError::TooLarge { limit: 4096 });
        let e = decode(Coding::Gzip, b"{\"not\": \"gzip\"}", 4096).unwrap_err();
        assert!(matches!(e, DecodeError::Corrupt { .. }), "{e}");
        let g = gzip(b"{\"a\": 1}");
        let e = decode(Coding::Gzip, &g[..g.len() - 4], 4096).unwrap_err();
        assert!(matches!(e, DecodeError::Corrupt { .. }), "truncated: {e}");
    }
}
