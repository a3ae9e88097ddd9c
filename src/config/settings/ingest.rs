//! `[ingest]`: the browser collect endpoint's path and limits, `POST /api/events`, the CSV
//! import mapping and the Segment write keys.

use super::file::IngestSection;
use super::Problems;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Ingest {
    /// Without a trailing slash, e.g. `/_tollgate`.
    pub collect_prefix: String,
    pub collect_max_bytes: usize,
    pub collect_max_items: usize,
    /// Events per second per client IP; 0 is no limit.
    pub collect_rate: u32,
    /// Events one client IP may send in a burst, above `collect_rate`.
    pub collect_burst: u32,
    /// Most a browser event's `ts` may be from now, either way.
    pub collect_max_skew: Duration,
    /// Most events in one `POST /api/events` request.
    pub api_max_items: usize,
    /// File column → field, for CSV imports.
    pub import_map: std::collections::HashMap<String, String>,
    pub write_keys: Vec<String>,
}

pub(super) fn validate(ing: &IngestSection, p: &mut Problems) -> Ingest {
    let collect_prefix = ing.collect_prefix.trim_end_matches('/').to_string();
    if !collect_prefix.starts_with('/')
        || collect_prefix.len() < 2
        || collect_prefix.contains(['?', '#', ' '])
    {
        p.report(
            "collect_prefix",
            format!(
                "{:?} must be a path below the root, e.g. /_tollgate",
                ing.collect_prefix
            ),
        );
    }
    for (i, k) in ing.write_keys.iter().enumerate() {
        if k.trim().is_empty() || k.contains(':') {
            p.item("write_keys", i)
                .here("must be non-empty and contain no `:` (it is the Basic auth user name)");
        }
    }
    p.at_least_one(&[
        ("collect_max_bytes", ing.collect_max_bytes),
        ("collect_max_items", ing.collect_max_items),
        ("api_max_items", ing.api_max_items),
    ]);
    if ing.collect_rate > 0 && ing.collect_burst == 0 {
        p.report(
            "collect_burst",
            "must be at least 1 when ingest.collect_rate is set",
        );
    }
    Ingest {
        collect_prefix,
        collect_max_bytes: ing.collect_max_bytes,
        collect_max_items: ing.collect_max_items,
        collect_rate: ing.collect_rate,
        collect_burst: ing.collect_burst,
        collect_max_skew: Duration::from_secs(ing.collect_max_skew_secs),
        api_max_items: ing.api_max_items,
        import_map: ing
            .import_map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        write_keys: ing.write_keys.clone(),
    }
}
