//! Identity stitching and backend events from response headers, with no extra call from the
//! backend:
//!
//! - `X-Tollgate-User: <id>` ties the current visitor to the site's own user id: the request's
//!   event carries it as `user_id`, and the `identities` view maps the visitor to the user from
//!   then on (`docs/identity.md`);
//! - `X-Tollgate-Event: {"name": …, "props": {…}}` (repeatable; an array also works) becomes a
//!   custom event for the current visitor.
//!
//! Both headers are removed before the client sees the response, whether or not capture is
//! on. A malformed value is logged and counted, never passed on, and never breaks the response.

use super::head::ResponseHead;
use crate::config::Settings;
use crate::event::{Event, Source};
use crate::ingest::native;
use tracing::warn;

/// What the backend said about this request.
#[derive(Debug, Default, Clone)]
pub struct FromBackend {
    pub user_id: Option<String>,
    /// Raw JSON values of the event header, validated when the events are built.
    pub events: Vec<String>,
}

/// Take tollgate's headers out of `resp`. Returns what they said.
pub fn take(resp: &mut ResponseHead, s: &Settings) -> FromBackend {
    let id = &s.identity;
    let mut out = FromBackend::default();
    if let Some(v) = resp.headers.remove(&id.user_header) {
        match v.to_str().map(str::trim) {
            Ok(u) if !u.is_empty() && u.chars().count() <= crate::ingest::draft::MAX_ID => {
                out.user_id = Some(u.to_string());
            }
            _ => warn!(header = %id.user_header, "Ignored a malformed user id from the backend."),
        }
    }
    // The event header may repeat; remove_header drops every value but returns only one.
    out.events = resp
        .headers
        .get_all(&id.event_header)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    resp.headers.remove(&id.event_header);
    out
}

/// The custom events of `backend`, for the request whose own event is `base` (identity, UA,
/// IP and URL are taken from it). Invalid ones are logged and skipped.
pub fn events(backend: &FromBackend, base: &Event, s: &Settings) -> Vec<Event> {
    let mut out = Vec::new();
    for raw in &backend.events {
        let items = match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(serde_json::Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(error) => {
                warn!(%error, header = %s.identity.event_header, "Ignored an event header that is not JSON.");
                continue;
            }
        };
        for item in items {
            let cx = native::Context {
                site: &s.site_id,
                source: Source::Server,
                browser: Some(native::BrowserRequest {
                    visitor_id: base.visitor_id,
                    session_id: base.session_id,
                    privacy: base.hints.privacy,
                    user_agent: base.user_agent.as_deref(),
                    ip: base.ip.clone(),
                    request_id: base.request_id.as_deref(),
                    // A backend's events are server events: neither applies to them.
                    beacon: false,
                    max_skew_us: 0,
                }),
                now_us: base.ts_us,
            };
            match native::to_event(item, &cx) {
                Ok(mut e) => {
                    e.user_id = backend.user_id.clone();
                    if e.path.is_none() {
                        e.host = base.host.clone();
                        e.path = base.path.clone();
                        e.query = base.query.clone();
                    }
                    e.referrer = e.referrer.or_else(|| base.referrer.clone());
                    out.push(e);
                }
                Err(error) => {
                    warn!(%error, header = %s.identity.event_header, "Ignored an invalid event from the backend.")
                }
            }
        }
    }
    out
}
