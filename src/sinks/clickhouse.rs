//! ClickHouse over HTTP: `INSERT … FORMAT JSONEachRow` into a ReplacingMergeTree that
//! collapses duplicate `event_id`s.
//!
//! Works with ClickHouse 18.16 (Debian's package, which the tests run) and current releases,
//! so the table uses no `DateTime64`, `Map`, `JSON` or `LowCardinality` columns: `ts` and
//! `received_at` are `DateTime('UTC')` (seconds), and `ts_us` / `received_at_us` keep the
//! exact microseconds.

use super::{ForgetRequest, Outcome, Range, Sink};
use crate::event::columns::{NAME, SITE, TS};
use crate::event::{Field, Kind, COLUMNS, EVENT_ID};
use crate::store::Record;
use crate::store::Subject;
use async_trait::async_trait;
use std::time::Duration;

/// ClickHouse's type for a column; a timestamp is two columns (see [`create_table`]).
fn ch_type(kind: Kind) -> &'static str {
    match kind {
        Kind::BigInt => "Int64",
        Kind::Int => "Int32",
        Kind::Double => "Float64",
        Kind::Bool => "UInt8",
        Kind::Timestamp => "DateTime('UTC')",
        Kind::Text | Kind::Json => "String",
        Kind::Uuid => "UUID",
    }
}

/// The table tollgate creates when it is missing; `docs/warehouses.md` shows it too. Each
/// timestamp column is a `DateTime` of whole seconds, which every version has, and a
/// `<name>_us` column with the exact microseconds.
pub fn create_table(table: &str) -> String {
    let nullable = |nullable: bool, ty: &str| {
        if nullable {
            format!("Nullable({ty})")
        } else {
            ty.to_string()
        }
    };
    let mut columns = Vec::with_capacity(COLUMNS.len() + 2);
    for c in &COLUMNS {
        columns.push(format!(
            "    {} {}",
            c.name,
            nullable(c.nullable, ch_type(c.kind()))
        ));
        if c.kind() == Kind::Timestamp {
            columns.push(format!(
                "    {}_us {}",
                c.name,
                nullable(c.nullable, "Int64")
            ));
        }
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
{}
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM({TS})
ORDER BY ({SITE}, toDate({TS}), {NAME}, {EVENT_ID})",
        columns.join(",\n")
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
            if let Err(e) = write_row(&mut body, r) {
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
        let column = request.subject.column();
        let condition = match &request.subject {
            Subject::Visitor(v) => format!("ifNull({column} = toUUID('{v}'), 0)"),
            Subject::User(u) => format!("ifNull({column} = '{}', 0)", quote(u)),
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

/// One event as a JSONEachRow line (without its newline), keyed by column name.
fn write_row(out: &mut Vec<u8>, r: &Record) -> serde_json::Result<()> {
    let e = &r.event;
    let key = |out: &mut Vec<u8>, name: &str, suffix: &str| {
        out.extend_from_slice(b"\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
        out.extend_from_slice(b"\":");
    };
    out.push(b'{');
    for (i, c) in COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        key(out, c.name, "");
        match &c.field {
            Field::Seq => serde_json::to_writer(&mut *out, &r.seq)?,
            Field::Uuid(a) => serde_json::to_writer(&mut *out, &(a.get)(e))?,
            Field::Timestamp(a) => {
                let us = (a.get)(e);
                serde_json::to_writer(&mut *out, &us.map(datetime))?;
                out.push(b',');
                key(out, c.name, "_us");
                serde_json::to_writer(&mut *out, &us)?;
            }
            Field::Text(a) | Field::Json(a) => serde_json::to_writer(&mut *out, &(a.get)(e))?,
            Field::Int(a) => serde_json::to_writer(&mut *out, &(a.get)(e))?,
            Field::BigInt(a) => serde_json::to_writer(&mut *out, &(a.get)(e))?,
            Field::Double(a) => serde_json::to_writer(&mut *out, &(a.get)(e))?,
            Field::Bool(a) => serde_json::to_writer(&mut *out, &(a.get)(e).map(u8::from))?,
        }
    }
    out.push(b'}');
    Ok(())
}

/// `YYYY-MM-DD hh:mm:ss` in UTC, which every ClickHouse version parses into a `DateTime`.
fn datetime(us: i64) -> String {
    chrono::DateTime::from_timestamp(us.div_euclid(1_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "1970-01-01 00:00:00".into())
}

/// The `Code: N` of a ClickHouse exception text.
fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Percent-decode a URL's user or password (where `+` is a plus, not a space).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
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

    #[test]
    fn url_credentials_are_percent_decoded_and_plus_is_a_plus() {
        assert_eq!(decode("p%40ss+w%C3%B6rd%2F"), "p@ss+wörd/");
        assert_eq!(decode("plain"), "plain");
    }
}
