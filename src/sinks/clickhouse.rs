//! ClickHouse over HTTP: `INSERT … FORMAT JSONEachRow` into a ReplacingMergeTree that
//! collapses duplicate `event_id`s.
//!
//! Works with ClickHouse 18.16 (Debian's package, which the tests run) and current releases,
//! so the table uses no `DateTime64`, `Map`, `JSON` or `LowCardinality` columns: `ts` and
//! `received_at` are `DateTime('UTC')` (seconds), and `ts_us` / `received_at_us` keep the
//! exact microseconds.

use super::{ForgetRequest, Outcome, Range, Sink};
use crate::store::Record;
use crate::store::Subject;
use async_trait::async_trait;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// The table tollgate creates when it is missing; `docs/warehouses.md` shows it too.
pub fn create_table(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    seq Int64,
    event_id UUID,
    ts DateTime('UTC'),
    ts_us Int64,
    received_at DateTime('UTC'),
    received_at_us Int64,
    site String,
    name String,
    source Nullable(String),
    visitor_id Nullable(UUID),
    session_id Nullable(UUID),
    user_id Nullable(String),
    request_id Nullable(String),
    method Nullable(String),
    host Nullable(String),
    path Nullable(String),
    route Nullable(String),
    query Nullable(String),
    status Nullable(Int32),
    duration_ms Nullable(Float64),
    bytes_out Nullable(Int64),
    referrer Nullable(String),
    referrer_host Nullable(String),
    channel Nullable(String),
    utm_source Nullable(String),
    utm_medium Nullable(String),
    utm_campaign Nullable(String),
    utm_term Nullable(String),
    utm_content Nullable(String),
    click_id_type Nullable(String),
    click_id Nullable(String),
    user_agent Nullable(String),
    browser Nullable(String),
    browser_version Nullable(String),
    os Nullable(String),
    device_type Nullable(String),
    is_bot Nullable(UInt8),
    bot_reason Nullable(String),
    ip Nullable(String),
    country Nullable(String),
    region Nullable(String),
    city Nullable(String),
    props Nullable(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (site, toDate(ts), name, event_id)"
    )
}

/// ClickHouse error codes that mean "this data does not fit the table": the batch is split
/// and the refused events go to the dead letters. Every other error is retried.
const DATA_ERRORS: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    376, // CANNOT_PARSE_UUID
    469, // VIOLATED_CONSTRAINT
];

/// Errors after which the table may be missing: it is created again before the retry.
const MISSING_TABLE: &[u32] = &[60, 81]; // UNKNOWN_TABLE, UNKNOWN_DATABASE

pub struct ClickHouse {
    client: reqwest::Client,
    /// The URL without user and password.
    base: reqwest::Url,
    auth: Option<(String, Option<String>)>,
    table: String,
    ready: bool,
}

impl ClickHouse {
    pub fn new(url: &str, table: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut base = reqwest::Url::parse(url)?;
        let auth = (!base.username().is_empty())
            .then(|| (decode(base.username()), base.password().map(decode)));
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // ClickHouse closes idle HTTP connections after keep_alive_timeout (3 s by
            // default); reusing one it has closed fails the batch with a broken pipe.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()?;
        Ok(ClickHouse {
            client,
            base,
            auth,
            table: table.to_string(),
            ready: false,
        })
    }

    /// POST `body`, with `query` (and settings) in the URL when given; without, the body is
    /// the query. `Err` carries ClickHouse's error code, when it gave one, and a message.
    async fn post(&self, query: Option<&str>, body: Vec<u8>) -> Result<(), (Option<u32>, String)> {
        let mut url = self.base.clone();
        if let Some(query) = query {
            url.query_pairs_mut()
                .append_pair("query", query)
                // Tables made by hand may leave out columns nobody needs.
                .append_pair("input_format_skip_unknown_fields", "1");
        }
        let mut req = self.client.post(url).body(body);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, password.as_ref());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| (None, format!("ClickHouse unreachable: {}", error_chain(&e))))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let header_code = resp
            .headers()
            .get("x-clickhouse-exception-code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = resp.text().await.unwrap_or_default();
        let code = header_code.or_else(|| exception_code(&text));
        let first_line = text.lines().next().unwrap_or("").trim();
        Err((code, format!("ClickHouse answered {status}: {first_line}")))
    }
}

#[async_trait]
impl Sink for ClickHouse {
    async fn send(&mut self, _range: Range, records: &[Record]) -> Outcome {
        if records.is_empty() {
            return Outcome::Delivered;
        }
        if !self.ready {
            if let Err((_, e)) = self
                .post(None, create_table(&self.table).into_bytes())
                .await
            {
                return Outcome::Retry(format!("creating table {}: {e}", self.table));
            }
            self.ready = true;
        }
        let mut body = Vec::with_capacity(records.len() * 700);
        for r in records {
            if let Err(e) = serde_json::to_writer(&mut body, &Row::from(r)) {
                return Outcome::Reject(format!("cannot encode the event: {e}"));
            }
            body.push(b'\n');
        }
        let query = format!("INSERT INTO {} FORMAT JSONEachRow", self.table);
        match self.post(Some(&query), body).await {
            Ok(()) => Outcome::Delivered,
            Err((Some(code), e)) if DATA_ERRORS.contains(&code) => Outcome::Reject(e),
            Err((Some(code), e)) if MISSING_TABLE.contains(&code) => {
                self.ready = false;
                Outcome::Retry(e)
            }
            Err((_, e)) => Outcome::Retry(e),
        }
    }

    /// An `ALTER TABLE … DELETE` mutation. ClickHouse runs it in the background; it is
    /// acknowledged once scheduled. `ifNull`: on 18.16 a condition that is NULL deletes too.
    async fn forget(&mut self, request: &ForgetRequest) -> Outcome {
        let condition = match &request.subject {
            Subject::Visitor(v) => format!("ifNull(visitor_id = toUUID('{v}'), 0)"),
            Subject::User(u) => format!("ifNull(user_id = '{}', 0)", quote(u)),
        };
        let sql = format!("ALTER TABLE {} DELETE WHERE {condition}", self.table);
        match self.post(None, sql.into_bytes()).await {
            Ok(()) => Outcome::Delivered,
            // Nothing was ever shipped there: nothing to delete.
            Err((Some(code), _)) if MISSING_TABLE.contains(&code) => Outcome::Delivered,
            Err((_, e)) => Outcome::Retry(e),
        }
    }
}

/// `s` inside a single-quoted ClickHouse string literal.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// One JSONEachRow line.
#[derive(Serialize)]
struct Row<'a> {
    seq: i64,
    event_id: &'a Uuid,
    ts: String,
    ts_us: i64,
    received_at: String,
    received_at_us: i64,
    site: &'a str,
    name: &'a str,
    source: Option<&'static str>,
    visitor_id: &'a Option<Uuid>,
    session_id: &'a Option<Uuid>,
    user_id: &'a Option<String>,
    request_id: &'a Option<String>,
    method: &'a Option<String>,
    host: &'a Option<String>,
    path: &'a Option<String>,
    route: &'a Option<String>,
    query: &'a Option<String>,
    status: Option<u16>,
    duration_ms: Option<f64>,
    bytes_out: Option<u64>,
    referrer: &'a Option<String>,
    referrer_host: &'a Option<String>,
    channel: &'a Option<String>,
    utm_source: &'a Option<String>,
    utm_medium: &'a Option<String>,
    utm_campaign: &'a Option<String>,
    utm_term: &'a Option<String>,
    utm_content: &'a Option<String>,
    click_id_type: &'a Option<String>,
    click_id: &'a Option<String>,
    user_agent: &'a Option<String>,
    browser: &'a Option<String>,
    browser_version: &'a Option<String>,
    os: &'a Option<String>,
    device_type: &'a Option<String>,
    is_bot: Option<u8>,
    bot_reason: &'a Option<String>,
    ip: &'a Option<String>,
    country: &'a Option<String>,
    region: &'a Option<String>,
    city: &'a Option<String>,
    props: &'a Option<String>,
}

/// `YYYY-MM-DD hh:mm:ss` in UTC, which every ClickHouse version parses into a `DateTime`.
fn datetime(us: i64) -> String {
    chrono::DateTime::from_timestamp(us.div_euclid(1_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "1970-01-01 00:00:00".into())
}

impl<'a> From<&'a Record> for Row<'a> {
    fn from(r: &'a Record) -> Self {
        let e = &r.event;
        Row {
            seq: r.seq,
            event_id: &e.event_id,
            ts: datetime(e.ts_us),
            ts_us: e.ts_us,
            received_at: datetime(e.received_at_us),
            received_at_us: e.received_at_us,
            site: &e.site,
            name: &e.name,
            source: e.source.map(|s| s.as_str()),
            visitor_id: &e.visitor_id,
            session_id: &e.session_id,
            user_id: &e.user_id,
            request_id: &e.request_id,
            method: &e.method,
            host: &e.host,
            path: &e.path,
            route: &e.route,
            query: &e.query,
            status: e.status,
            duration_ms: e.duration_ms,
            bytes_out: e.bytes_out,
            referrer: &e.referrer,
            referrer_host: &e.referrer_host,
            channel: &e.channel,
            utm_source: &e.utm_source,
            utm_medium: &e.utm_medium,
            utm_campaign: &e.utm_campaign,
            utm_term: &e.utm_term,
            utm_content: &e.utm_content,
            click_id_type: &e.click_id_type,
            click_id: &e.click_id,
            user_agent: &e.user_agent,
            browser: &e.browser,
            browser_version: &e.browser_version,
            os: &e.os,
            device_type: &e.device_type,
            is_bot: e.is_bot.map(u8::from),
            bot_reason: &e.bot_reason,
            ip: &e.ip,
            country: &e.country,
            region: &e.region,
            city: &e.city,
            props: &e.props,
        }
    }
}

/// The `Code: N` of a ClickHouse exception text.
fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Percent-decode a URL's user or password (where `+` is a plus, not a space).
fn decode(s: &str) -> String {
    crate::enrich::privacy::percent_decode(&s.replace('+', "%2B")).into_owned()
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_codes_are_read_from_the_text() {
        assert_eq!(
            exception_code("Code: 376, e.displayText() = DB::Exception: Cannot parse uuid"),
            Some(376)
        );
        assert_eq!(
            exception_code("Code: 60. DB::Exception: Table x doesn't exist"),
            Some(60)
        );
        assert_eq!(exception_code("nothing"), None);
    }

    #[test]
    fn datetimes_are_utc_seconds() {
        assert_eq!(datetime(1_764_348_000_123_456), "2025-11-28 16:40:00");
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
    }
}
