//! `tollgate query` and `tollgate forget` over a data directory, whether or not a server holds
//! it.
//!
//! DuckDB lets one process open a file, so when a server is running on the directory the
//! command goes through its admin API (found in the runtime file); otherwise the file is
//! opened here. Both paths run the same code: the guard for queries, one transaction for
//! forget.

use crate::app::{runtime_info, RuntimeInfo};
use crate::config::Settings;
use crate::enrich::Enricher;
use crate::event::now_us;
use crate::ingest::{import, ImportReport};
use crate::sinks::{status as sink_status, SinkStatus};
use crate::store::{
    forget as forget_in, run_query_with_timeout, ForgetReport, Limits, QueryError, QueryResult,
    Store, StoreError, Subject,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server on this data directory refused the request: {0}")]
    Server(String),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Import(#[from] import::FileError),
    #[error("the store is locked by a running tollgate, but its admin API at {addr} did not answer: {reason}")]
    Admin { addr: SocketAddr, reason: String },
}

/// Run `sql` against the store in `data_dir`. Through a running server, its `[console]`
/// limits apply; on the file itself, the default ones (`console.timeout_secs`, `max_bytes`).
pub fn query(data_dir: &Path, sql: &str, max_rows: usize) -> Result<QueryResult, ClientError> {
    match Store::open_read_only(data_dir) {
        Ok(store) => {
            let c = crate::config::ConsoleSection::default();
            let limits = Limits {
                max_rows,
                max_bytes: c.max_bytes,
            };
            let timeout = Duration::from_secs(c.timeout_secs);
            Ok(run_query_with_timeout(
                store.connection(),
                sql,
                limits,
                timeout,
            )?)
        }
        Err(StoreError::Locked { path }) => match runtime_info(data_dir) {
            Some(info) => query_admin(&info, sql, max_rows),
            None => Err(StoreError::Locked { path }.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Import a CSV file of offline events into the store in `data_dir` (`ingest::import`).
pub fn import_csv(
    settings: &Settings,
    data_dir: &Path,
    csv: &[u8],
    map_args: &[String],
    strict: bool,
) -> Result<ImportReport, ClientError> {
    let extra = import::parse_map(map_args)?;
    match Store::open(data_dir) {
        Ok(mut store) => {
            let mut map = settings.ingest.import_map.clone();
            map.extend(extra);
            let parsed = import::parse(csv, &map, &settings.site_id, now_us())?;
            let (mut report, mut events) = ImportReport::plan(parsed, strict);
            if report.refused {
                return Ok(report);
            }
            let mut enricher =
                Enricher::new(settings).map_err(|e| ClientError::Input(e.to_string()))?;
            for e in &mut events {
                enricher.enrich(e);
            }
            let seq = store.next_seq()?;
            let written = store.append_new(seq, &[&events])?[0];
            report.written = written;
            report.duplicates = events.len() - written;
            Ok(report)
        }
        Err(StoreError::Locked { path }) => match runtime_info(data_dir) {
            Some(info) => {
                let mut query = String::from(if strict {
                    "strict=true"
                } else {
                    "strict=false"
                });
                for m in map_args {
                    query.push_str("&map=");
                    query.push_str(&encode_component(m));
                }
                let path = format!("/api/import?{query}");
                let (status, text) =
                    post_body(&info, &path, "text/csv", csv).map_err(|e| ClientError::Admin {
                        addr: info.admin,
                        reason: e.to_string(),
                    })?;
                match serde_json::from_str::<ImportReport>(&text) {
                    Ok(r) if status == 200 || status == 400 => Ok(r),
                    _ => Err(ClientError::Server(format!(
                        "HTTP {status}: {}",
                        error_text(&text)
                    ))),
                }
            }
            None => Err(StoreError::Locked { path }.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Percent-encode everything but unreserved characters.
fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Delete `subject`'s events from the store in `data_dir` and record the request.
pub fn forget(data_dir: &Path, subject: &Subject) -> Result<ForgetReport, ClientError> {
    match Store::open_existing(data_dir) {
        Ok(store) => Ok(forget_in(store.connection(), subject)?),
        Err(StoreError::Locked { path }) => match runtime_info(data_dir) {
            Some(info) => forget_admin(&info, subject),
            None => Err(StoreError::Locked { path }.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// The status of the sinks on `data_dir`: from the running server's `/api/sinks` (its own
/// configuration), or, with no server, from the store and the sinks in `settings`.
pub fn sinks(data_dir: &Path, settings: &Settings) -> Result<Vec<SinkStatus>, ClientError> {
    match Store::open_read_only(data_dir) {
        Ok(store) => Ok(sink_status(store.connection(), &settings.sinks)?),
        Err(StoreError::Locked { path }) => match runtime_info(data_dir) {
            Some(info) => {
                let addr = info.admin;
                let admin = |reason: String| ClientError::Admin { addr, reason };
                let (status, text) = request(&info, "GET", "/api/sinks", "text/plain", b"")
                    .map_err(|e| admin(e.to_string()))?;
                if status != 200 {
                    return Err(ClientError::Server(format!(
                        "HTTP {status}: {}",
                        error_text(&text)
                    )));
                }
                #[derive(serde::Deserialize)]
                struct Answer {
                    sinks: Vec<SinkStatus>,
                }
                serde_json::from_str::<Answer>(&text)
                    .map(|a| a.sinks)
                    .map_err(|e| admin(format!("unreadable answer: {e}")))
            }
            None => Err(StoreError::Locked { path }.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// POST the request to a running server's `/api/forget`.
pub fn forget_admin(info: &RuntimeInfo, subject: &Subject) -> Result<ForgetReport, ClientError> {
    let body = match subject {
        Subject::Visitor(v) => serde_json::json!({ "visitor_id": v }),
        Subject::User(u) => serde_json::json!({ "user_id": u }),
    }
    .to_string();
    match post_json(info, "/api/forget", &body)? {
        Ok(report) => Ok(report),
        Err((status, msg)) => Err(ClientError::Server(format!("HTTP {status}: {msg}"))),
    }
}

/// POST `body` to the admin API: the decoded answer of a 200, or the status and error message
/// of anything else.
fn post_json<T: serde::de::DeserializeOwned>(
    info: &RuntimeInfo,
    path: &str,
    body: &str,
) -> Result<Result<T, (u16, String)>, ClientError> {
    let addr = info.admin;
    let (status, text) = post(info, path, body).map_err(|e| ClientError::Admin {
        addr,
        reason: e.to_string(),
    })?;
    if status != 200 {
        return Ok(Err((status, error_text(&text))));
    }
    serde_json::from_str(&text)
        .map(Ok)
        .map_err(|e| ClientError::Admin {
            addr,
            reason: format!("unreadable answer: {e}"),
        })
}

fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}

/// POST the query to a running server's `/api/query`.
pub fn query_admin(
    info: &RuntimeInfo,
    sql: &str,
    max_rows: usize,
) -> Result<QueryResult, ClientError> {
    let body = serde_json::json!({ "sql": sql, "max_rows": max_rows }).to_string();
    let (status, msg) = match post_json(info, "/api/query", &body)? {
        Ok(result) => return Ok(result),
        Err(e) => e,
    };
    Err(match status {
        400 => QueryError::Invalid(msg).into(),
        403 => QueryError::Refused(msg.trim_start_matches("refused: ").to_string()).into(),
        _ => ClientError::Server(format!("HTTP {status}: {msg}")),
    })
}

/// A minimal HTTP/1.1 POST over loopback: enough for the admin API, without an HTTP client
/// dependency in the binary.
fn post(info: &RuntimeInfo, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    post_body(info, path, "application/json", body.as_bytes())
}

fn post_body(
    info: &RuntimeInfo,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    request(info, "POST", path, content_type, body)
}

fn request(
    info: &RuntimeInfo,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let addr = reachable(info.admin);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let auth = info
        .admin_token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A listener on all interfaces (`0.0.0.0`, `::`) is reached, and named in `Host`, by its
/// loopback address: the admin listener answers to loopback, not to `0.0.0.0`.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// `tollgate sinks` for people.
pub fn render_sinks(sinks: &[SinkStatus]) -> String {
    if sinks.is_empty() {
        return "No sinks configured (add [[sinks]] tables to the configuration).\n".into();
    }
    let mut out = String::new();
    for s in sinks {
        out.push_str(&format!(
            "{} ({}): {}\n  offset {}  lag {} events, {:.1} s  dead letters {}\n",
            s.name, s.kind, s.target, s.offset, s.lag_events, s.lag_seconds, s.dead_letters
        ));
        // A warehouse's error can quote the data it refused.
        if let Some(e) = &s.last_error {
            out.push_str(&format!(
                "  last error ({}): {}\n",
                s.last_error_at.as_deref().unwrap_or("?"),
                for_terminal(e)
            ));
        }
    }
    out
}

/// Output formats of `tollgate query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `\u{1b}` for a character that must not reach a terminal or a spreadsheet raw.
fn escaped(c: char) -> String {
    format!("\\u{{{:x}}}", c as u32)
}

/// Text for a terminal: every control character (C0, DEL, C1) and every bidirectional
/// control in a visible form (`\n`, `\t`, `\r`, else `\u{1b}`), so that stored text (a path,
/// a property, a user id: anyone can send those) can neither drive the terminal with escape
/// sequences nor reorder or hide what is shown.
pub fn for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    let bidi = |c: char| matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(|c| c.is_control() || bidi(c)) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || bidi(c) => out.push_str(&escaped(c)),
            c => out.push(c),
        }
    }
    out.into()
}

/// Whether `s` is a plain number such as `-5`, `+1.5` or `2e10` (which a spreadsheet reads
/// as that number, not as a formula).
fn is_number(s: &str) -> bool {
    let b = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let digits = |b: &[u8]| b.iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(b);
    let mut i = int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        frac = digits(&b[i + 1..]);
        i += 1 + frac;
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let exp = &b[i + 1..];
        let exp = exp
            .strip_prefix(b"+")
            .or(exp.strip_prefix(b"-"))
            .unwrap_or(exp);
        let n = digits(exp);
        return n > 0 && n == exp.len();
    }
    i == b.len()
}

/// A CSV field for a spreadsheet. A text cell that starts with `=`, `+`, `-`, `@`, a tab or
/// a carriage return gets a leading `'` (OWASP's advice on CSV injection), unless it is a
/// plain number: otherwise `=HYPERLINK(…)` in a property would be a live formula where the
/// file is opened. Control characters other than tab, line feed and carriage return (which
/// CSV quotes) are escaped as `\u{1b}`. Numbers, booleans and JSON values are left as they
/// are; `--format json` is the exact form of every value.
fn csv_field(text: &str, is_text: bool) -> String {
    let mut s: String = text
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c.to_string(),
            c if c.is_control() => escaped(c),
            c => c.to_string(),
        })
        .collect();
    if is_text && s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_number(&s) {
        s.insert(0, '\'');
    }
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// JSON as serde writes it, with DEL and the C1 controls escaped too (serde escapes only
/// the C0 ones): outside strings JSON text is ASCII, so this changes only strings.
fn json_for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Render a result for people (`table`), spreadsheets (`csv`) or programs (`json`: an array of
/// objects). None of them passes a control character through raw: the table shows them
/// escaped (`for_terminal`), CSV escapes them and neutralises formulas (`csv_field`), JSON
/// uses `\u` escapes.
pub fn render(r: &QueryResult, format: Format) -> String {
    match format {
        Format::Json => render_json(r),
        Format::Csv => render_csv(r),
        Format::Table => render_table(r),
    }
}

/// An array of objects, one a row, keyed by column name.
fn render_json(r: &QueryResult) -> String {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = r
        .rows
        .iter()
        .map(|row| r.columns.iter().cloned().zip(row.iter().cloned()).collect())
        .collect();
    let mut s = json_for_terminal(&serde_json::to_string_pretty(&rows).unwrap_or_default());
    s.push('\n');
    s
}

/// A header line, then a line a row.
fn render_csv(r: &QueryResult) -> String {
    let mut out = String::new();
    let header: Vec<String> = r.columns.iter().map(|c| csv_field(c, true)).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in &r.rows {
        let cells: Vec<String> = row
            .iter()
            .map(|v| csv_field(&cell(v), v.is_string()))
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Aligned columns (each at most 60 characters wide), a rule under the header, and the row
/// count.
fn render_table(r: &QueryResult) -> String {
    let columns: Vec<String> = r
        .columns
        .iter()
        .map(|c| for_terminal(c).into_owned())
        .collect();
    let cells: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| for_terminal(&cell(v)).into_owned())
                .collect()
        })
        .collect();
    let mut width: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count().min(60));
        }
    }
    let fmt_row = |row: &[String]| {
        row.iter()
            .zip(&width)
            .map(|(c, w)| {
                let c: String = c.chars().take(60).collect();
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = fmt_row(&columns);
    out.push('\n');
    out.push_str(
        &width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    out.push('\n');
    for row in &cells {
        out.push_str(&fmt_row(row));
        out.push('\n');
    }
    let n = r.rows.len();
    out.push_str(&format!(
        "({n} row{}{})\n",
        if n == 1 { "" } else { "s" },
        if r.truncated { ", truncated" } else { "" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_all_interfaces_is_reached_on_loopback() {
        let r = |a: &str| reachable(a.parse().unwrap()).to_string();
        assert_eq!(r("0.0.0.0:9080"), "127.0.0.1:9080");
        assert_eq!(r("[::]:9080"), "[::1]:9080");
        assert_eq!(r("10.0.0.5:9080"), "10.0.0.5:9080");
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"zz\r\n").is_none());
    }

    #[test]
    fn csv_quotes() {
        let r = QueryResult {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![serde_json::json!("x,y"), serde_json::Value::Null]],
            truncated: false,
            truncated_by: None,
        };
        assert_eq!(render(&r, Format::Csv), "a,b\n\"x,y\",\n");
    }

    fn result(columns: &[&str], rows: Vec<Vec<serde_json::Value>>) -> QueryResult {
        QueryResult {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
            truncated: false,
            truncated_by: None,
        }
    }

    #[test]
    fn tables_show_control_characters_escaped() {
        use serde_json::json;
        let r = result(
            &["user\u{1b}[2J"],
            vec![
                vec![json!("\u{1b}[31mred\u{7}")],
                vec![json!("a\nb\tc\rd\u{7f}e\u{9b}f")],
                vec![json!("abc\u{202e}fed")],
                vec![json!("plain €")],
            ],
        );
        let out = render(&r, Format::Table);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.starts_with("user\\u{1b}[2J\n"), "{out}");
        assert!(out.contains("\\u{1b}[31mred\\u{7}\n"), "{out}");
        assert!(out.contains("a\\nb\\tc\\rd\\u{7f}e\\u{9b}f"), "{out}");
        assert!(out.contains("abc\\u{202e}fed"), "{out}");
        assert!(out.contains("plain €"), "{out}");
    }

    #[test]
    fn csv_neutralises_formulas_in_text_cells_only() {
        use serde_json::json;
        let r = result(
            &["=col", "n"],
            vec![
                vec![json!("=HYPERLINK(\"http://x\",\"y\")"), json!(-5)],
                vec![json!("+1+cmd|' /C calc'!A0"), json!("-5")],
                vec![json!("@SUM(A1)"), json!("-1.5e3")],
                vec![json!("\tx"), json!("- 5")],
                vec![json!("\u{1b}[31mred"), json!(1.5)],
            ],
        );
        assert_eq!(
            render(&r, Format::Csv),
            "'=col,n\n\
             \"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-5\n\
             '+1+cmd|' /C calc'!A0,-5\n\
             '@SUM(A1),-1.5e3\n\
             '\tx,'- 5\n\
             \\u{1b}[31mred,1.5\n"
        );
    }

    #[test]
    fn a_sinks_last_error_is_shown_escaped() {
        let s = SinkStatus {
            name: "ch".into(),
            kind: "clickhouse".into(),
            target: "http://127.0.0.1:8123".into(),
            offset: 1,
            lag_events: 0,
            lag_seconds: 0.0,
            last_error: Some("Cannot parse \"\u{1b}]0;pwned\u{7}\"".into()),
            last_error_at: Some("2026-11-28T12:00:00Z".into()),
            dead_letters: 0,
        };
        let out = render_sinks(&[s]);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(
            out.contains(r#"Cannot parse "\u{1b}]0;pwned\u{7}""#),
            "{out}"
        );
    }

    #[test]
    fn numbers_are_told_from_formulas() {
        for n in ["-5", "+5", "5", "-1.5", ".5", "-5.", "1e10", "-2E-3"] {
            assert!(is_number(n), "{n}");
        }
        for f in [
            "-", "+", "-.", "-5+1", "=5", "-1e", "1e+", "-inf", "-NaN", "- 5", "",
        ] {
            assert!(!is_number(f), "{f}");
        }
    }

    #[test]
    fn json_escapes_del_and_c1_too() {
        let r = result(
            &["v"],
            vec![vec![serde_json::json!("\u{1b}[31m\u{7f}\u{9b}2J")]],
        );
        let out = render(&r, Format::Json);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains(r#""\u001b[31m\u007f\u009b2J""#), "{out}");
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back[0]["v"], "\u{1b}[31m\u{7f}\u{9b}2J");
    }
}
