//! CSV import of offline events (`tollgate import FILE.csv`, `POST /api/import`): a purchase in
//! the shop, a call-centre order, keyed to a visitor or a user.
//!
//! - Required columns: `name`, `timestamp`, and `visitor_id` or `user_id` (a row needs one of
//!   them filled).
//! - A column named like an event field (`url`, `referrer`, `session_id`, `event_id`,
//!   `message_id`) fills that field; every other column goes into `props` (numbers as numbers,
//!   `true`/`false` as booleans, empty cells left out).
//! - A mapping renames the file's columns first: `Order Date=timestamp`.
//! - `timestamp`: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` or `YYYY-MM-DD` (both UTC), or epoch
//!   milliseconds.
//! - Each bad row is reported with its line number and reason; good rows are imported, or, in
//!   strict mode, nothing is unless every row is good.
//! - Re-importing a file within `store.dedup_days` changes nothing: each row's `event_id` is
//!   its `event_id` column, or
//!   a UUIDv5 of its `message_id`, or of its content (and, for rows that are identical, of how
//!   many came before it), so the same rows always get the same ids.
//!
//! A refused file is a [`FileError`], a refused row a [`RowError`]; the draft's errors name
//! fields as a CSV file does ([`Naming::Csv`]: `"timestamp"`).

use super::draft::{DraftError, EventDraft, Field, Naming, Problem};
use super::native::Context;
use crate::event::{Event, Source};
use serde_json::{Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// Fields a column can fill directly; the others go to `props`.
const FIELDS: &[&str] = &[
    "name",
    "timestamp",
    "visitor_id",
    "user_id",
    "session_id",
    "event_id",
    "message_id",
    "url",
    "referrer",
];

/// Namespace of content-derived import ids (UUIDv5). Fixed forever.
const ROW_NAMESPACE: Uuid = Uuid::from_u128(0x3b0e_91f4_2c6d_4a8b_b7e2_5f19_d04c_a311);

/// Why an import is refused as a whole: its column mapping, or its header.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("column mapping {0:?} is not `file column=field`")]
    Mapping(String),
    #[error("cannot read the header line: {0}")]
    Header(csv::Error),
    /// A required column the header lacks, and the columns it has (after mapping).
    #[error(
        "the header has no {column:?} column (columns: {}; map one with --map 'your column={column}')",
        .columns.join(", ")
    )]
    NoColumn {
        column: &'static str,
        columns: Vec<String>,
    },
    #[error("the header has neither a \"visitor_id\" nor a \"user_id\" column")]
    NoIdentityColumn,
    #[error("column {0:?} appears twice (after mapping)")]
    TwiceColumn(String),
}

/// Why a row is refused.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("unreadable row: {0}")]
    Unreadable(csv::Error),
    /// What the draft refuses, every source alike.
    #[error("{}", .0.describe(Naming::Csv))]
    Draft(DraftError),
}

impl From<DraftError> for RowError {
    fn from(e: DraftError) -> Self {
        RowError::Draft(e)
    }
}

/// A bad row: its line in the file (1 is the header) and why, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRow {
    pub line: u64,
    pub error: String,
}

/// Bad rows listed at most (the first ones, by line); the rest are only counted, so that a file
/// of nothing but bad rows costs no more to answer than this.
pub const MAX_LISTED_BAD: usize = 1000;

/// The parsed file: good events, and bad rows.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// The first [`MAX_LISTED_BAD`] bad rows.
    pub bad: Vec<BadRow>,
    /// Every bad row.
    pub bad_total: usize,
}

/// Parse `a=b` mappings (file column `a` is field or prop `b`).
pub fn parse_map(pairs: &[String]) -> Result<HashMap<String, String>, FileError> {
    let mut m = HashMap::new();
    for p in pairs {
        match p.split_once('=') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                m.insert(from.trim().to_string(), to.trim().to_string());
            }
            _ => return Err(FileError::Mapping(p.clone())),
        }
    }
    Ok(m)
}

/// Parse a whole CSV file into memory. Fails as a whole only when the header is unusable.
/// For files of any size, [`Rows`] gives the events a batch at a time.
pub fn parse(
    data: &[u8],
    map: &HashMap<String, String>,
    site: &str,
    now_us: i64,
) -> Result<Parsed, FileError> {
    let mut rows = Rows::new(data, map, site, now_us)?;
    let events = rows.next_batch(usize::MAX);
    Ok(Parsed {
        events,
        bad: rows.bad,
        bad_total: rows.bad_total,
    })
}

/// A CSV file read a batch of events at a time, so that importing it costs the memory of one
/// batch, not of the whole file as events (a 16 MiB file of short rows is 700,000 events, over a
/// gigabyte).
pub struct Rows<'a> {
    headers: Vec<String>,
    rdr: csv::Reader<&'a [u8]>,
    record: csv::StringRecord,
    cx: Context<'a>,
    /// How many identical rows came before, by content (their ids count them).
    identical: HashMap<Uuid, u32>,
    lines: Lines<'a>,
    /// Records read so far.
    read: u64,
    done: bool,
    /// The first [`MAX_LISTED_BAD`] bad rows so far.
    pub bad: Vec<BadRow>,
    /// Every bad row so far.
    pub bad_total: usize,
}

impl<'a> Rows<'a> {
    /// Read the header of `data`; an unusable header fails the whole file.
    pub fn new(
        data: &'a [u8],
        map: &HashMap<String, String>,
        site: &'a str,
        now_us: i64,
    ) -> Result<Self, FileError> {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(data);
        let headers: Vec<String> = rdr
            .headers()
            .map_err(FileError::Header)?
            .iter()
            .map(|h| map.get(h).cloned().unwrap_or_else(|| h.to_string()))
            .collect();
        for column in ["name", "timestamp"] {
            if !headers.iter().any(|h| h == column) {
                return Err(FileError::NoColumn {
                    column,
                    columns: headers,
                });
            }
        }
        if !headers.iter().any(|h| h == "visitor_id" || h == "user_id") {
            return Err(FileError::NoIdentityColumn);
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = headers.iter().find(|h| !seen.insert(h.as_str())) {
            return Err(FileError::TwiceColumn(dup.clone()));
        }
        Ok(Rows {
            headers,
            rdr,
            record: csv::StringRecord::new(),
            cx: Context {
                site,
                source: Source::Import,
                browser: None,
                now_us,
            },
            identical: HashMap::new(),
            lines: Lines {
                data,
                at: 0,
                line: 1,
            },
            read: 0,
            done: false,
            bad: Vec::new(),
            bad_total: 0,
        })
    }

    /// The events of the next good rows, at most `n`; empty once the file is done. Bad rows on
    /// the way go to [`Rows::bad`].
    pub fn next_batch(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::new();
        while out.len() < n && !self.done {
            let i = self.read;
            let res = self.rdr.read_record(&mut self.record);
            self.read += 1;
            let lines = &mut self.lines;
            let mut line =
                |pos: Option<&csv::Position>| pos.map_or(i + 2, |p| lines.starting_at(p.byte()));
            match res {
                Ok(false) => self.done = true,
                Err(e) => {
                    let line = line(e.position());
                    self.bad_row(line, RowError::Unreadable(e));
                }
                Ok(true) => {
                    let line = line(self.record.position());
                    match row_event(&self.headers, &self.record, &self.cx, &mut self.identical) {
                        Ok(e) => out.push(e),
                        Err(error) => self.bad_row(line, error),
                    }
                }
            }
        }
        out
    }

    fn bad_row(&mut self, line: u64, error: RowError) {
        self.bad_total += 1;
        if self.bad.len() < MAX_LISTED_BAD {
            self.bad.push(BadRow {
                line,
                error: error.to_string(),
            });
        }
    }
}

/// Line numbers of records, from their byte offsets. The csv crate's own line numbers are
/// one short after a CRLF (it counts the `\n` in the next record), miss the bare CRs that end
/// its records too, and its records' offsets come before the blank lines it skips; so this
/// counts line ends (LF, CRLF or CR, as the csv crate takes them) in the bytes, from where the
/// previous record was (records come in order).
struct Lines<'a> {
    data: &'a [u8],
    at: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line on which the record at byte `offset` starts (its first non-blank line).
    fn starting_at(&mut self, offset: u64) -> u64 {
        let d = self.data;
        let mut to = usize::try_from(offset).map_or(d.len(), |o| o.min(d.len()));
        while matches!(d.get(to), Some(b'\r' | b'\n')) {
            to += 1;
        }
        if to > self.at {
            // A CR counts unless an LF follows; `at` and `to` are never inside a CRLF.
            let ends = d[self.at..to]
                .iter()
                .enumerate()
                .filter(|&(i, &b)| {
                    b == b'\n' || (b == b'\r' && d.get(self.at + i + 1) != Some(&b'\n'))
                })
                .count();
            self.line += ends as u64;
            self.at = to;
        }
        self.line
    }
}

fn row_event(
    headers: &[String],
    rec: &csv::StringRecord,
    cx: &Context,
    identical: &mut HashMap<Uuid, u32>,
) -> Result<Event, RowError> {
    let mut draft = EventDraft::default();
    // The row's content as it has always been hashed into its id (below): changing it would
    // give a re-imported file new ids.
    let mut content = Map::new();
    let mut props = Map::new();
    for (h, v) in headers.iter().zip(rec.iter()) {
        if v.is_empty() {
            continue;
        }
        if h == "timestamp" {
            let us = parse_ts_text(v).map_err(|p| DraftError::Field(Field::Ts, p))?;
            draft.ts_us = Some(us);
            content.insert("ts".into(), Value::from(us.div_euclid(1000)));
        } else if let Some(field) = FIELDS
            .contains(&h.as_str())
            .then(|| Field::native(h))
            .flatten()
        {
            draft.set_text(field, v.to_string())?;
            content.insert(h.clone(), Value::String(v.to_string()));
        } else {
            props.insert(h.clone(), cell(v));
        }
    }
    if draft.ts_us.is_none() {
        return Err(DraftError::Field(Field::Ts, Problem::Empty).into());
    }
    if !props.is_empty() {
        content.insert("props".into(), Value::Object(props.clone()));
        draft.props = Some(props);
    }
    let has_id = draft.event_id.is_some() || draft.message_id.is_some();
    let mut e = draft.into_event(cx)?;
    if !has_id {
        // The row's content names it; the n-th identical row gets n in its name too.
        let content = Uuid::new_v5(
            &ROW_NAMESPACE,
            Value::Object(content).to_string().as_bytes(),
        );
        let n = identical.entry(content).or_insert(0);
        *n += 1;
        e.event_id = Uuid::new_v5(&content, n.to_string().as_bytes());
        e.hints.keyed = true;
    }
    Ok(e)
}

/// A cell as JSON: whole or decimal numbers, booleans, else text.
fn cell(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        if f.is_finite() && !v.starts_with(['+', '.']) {
            return Value::from(f);
        }
    }
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(v.to_string()),
    }
}

/// A CSV timestamp as microseconds (the range is checked with every other source's, in
/// [`EventDraft::into_event`]).
fn parse_ts_text(v: &str) -> Result<i64, Problem> {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    if let Ok(ms) = v.parse::<i64>() {
        ms.checked_mul(1000).ok_or(Problem::OutOfRange)
    } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        Ok(t.timestamp_micros())
    } else if let Ok(t) = NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f") {
        Ok(t.and_utc().timestamp_micros())
    } else if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        Ok(d.and_time(NaiveTime::MIN).and_utc().timestamp_micros())
    } else {
        Err(Problem::NotCsvTime(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::native;

    const NOW: i64 = 1_800_000_000_000_000;

    fn run(csv: &str, map: &[&str]) -> Parsed {
        let map = parse_map(&map.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        parse(csv.as_bytes(), &map, "shop", NOW).unwrap()
    }

    #[test]
    fn rows_fields_and_props() {
        let p = run(
            "name,timestamp,user_id,amount,store,paid\n\
             purchase,2026-11-20 15:30:00,u-1,1299.5,Berlin,true\n\
             purchase,2026-11-21,u-2,12,,false\n",
            &[],
        );
        assert!(p.bad.is_empty(), "{:?}", p.bad);
        assert_eq!(p.events.len(), 2);
        let e = &p.events[0];
        assert_eq!(
            (e.name.as_str(), e.source),
            ("purchase", Some(Source::Import))
        );
        assert_eq!(e.user_id.as_deref(), Some("u-1"));
        assert_eq!(e.ts_us, 1_795_188_600_000_000);
        assert_eq!(
            e.props.as_deref(),
            Some(r#"{"amount":1299.5,"paid":true,"store":"Berlin"}"#)
        );
        assert_eq!(
            p.events[1].props.as_deref(),
            Some(r#"{"amount":12,"paid":false}"#)
        );
    }

    #[test]
    fn bad_rows_have_lines_and_reasons() {
        let p = run(
            "name,timestamp,visitor_id\n\
             a,2026-11-20,not-a-uuid\n\
             ,2026-11-20,0b6a4c1e-4c8b-4c1a-9d0e-2f1e7a3b5c6d\n\
             c,yesterday,0b6a4c1e-4c8b-4c1a-9d0e-2f1e7a3b5c6d\n\
             d,2026-11-20\n\
             e,2026-11-20,0b6a4c1e-4c8b-4c1a-9d0e-2f1e7a3b5c6d\n",
            &[],
        );
        assert_eq!(p.events.len(), 1);
        let lines: Vec<u64> = p.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5]);
        assert!(p.bad[0].error.contains("not a UUID"));
        assert!(p.bad[1].error.contains("\"name\" is required"));
        assert!(p.bad[2].error.contains("\"timestamp\""));
        assert!(p.bad[3].error.contains("unreadable"), "{}", p.bad[3].error);
    }

    /// Excel writes CRLF; people leave blank lines; a quoted cell can span lines. The line of
    /// a bad row is where it starts in the file, whatever came before it.
    #[test]
    fn bad_rows_have_their_own_line_in_any_file() {
        let lines = |csv: &str| {
            let p = parse(csv.as_bytes(), &HashMap::new(), "s", NOW).unwrap();
            p.bad.iter().map(|b| b.line).collect::<Vec<_>>()
        };
        assert_eq!(lines("name,timestamp,user_id\r\na,b\r\n"), vec![2]);
        assert_eq!(
            lines("name,timestamp,user_id\r\na,2026-11-20,u\r\n\r\nb,x,u\r\nc\r\n"),
            vec![4, 5]
        );
        assert_eq!(
            lines("name,timestamp,user_id\n\"a\nb\",2026-11-20,u\n,2026-11-20,u\n"),
            vec![2, 4]
        );
        assert_eq!(lines("\u{feff}name,timestamp,user_id\n\n\na,b\n"), vec![4]);
        // A bare CR ends a record (and a line) too, as old Mac files have it.
        assert_eq!(lines("name,timestamp,user_id\ra,b\rc\n"), vec![2, 3]);
    }

    #[test]
    fn headers_and_mapping() {
        let err = |csv: &str| {
            parse(csv.as_bytes(), &HashMap::new(), "s", NOW)
                .unwrap_err()
                .to_string()
        };
        assert!(err("name,user_id\n").contains("\"timestamp\""));
        assert!(err("name,timestamp\n").contains("visitor_id"));
        let p = run(
            "Event,When,Customer,Total\nbuy,2026-11-20T10:00:00Z,c-9,5\n",
            &["Event=name", "When=timestamp", "Customer=user_id"],
        );
        assert_eq!(p.events[0].user_id.as_deref(), Some("c-9"));
        assert_eq!(p.events[0].props.as_deref(), Some(r#"{"Total":5}"#));
        assert!(parse_map(&["nope".into()]).is_err());
    }

    /// Every refusal, word for word: the CLI and `/api/import` show these.
    #[test]
    fn refusals_are_worded_as_before() {
        assert_eq!(
            parse_map(&["nope".into()]).unwrap_err().to_string(),
            "column mapping \"nope\" is not `file column=field`"
        );
        let file = |csv: &[u8], map: &[&str]| {
            let map = parse_map(&map.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            parse(csv, &map, "s", NOW).unwrap_err().to_string()
        };
        assert_eq!(
            file(b"name,user_id\n", &[]),
            "the header has no \"timestamp\" column (columns: name, user_id; map one with \
             --map 'your column=timestamp')"
        );
        assert_eq!(
            file(b"name,timestamp\n", &[]),
            "the header has neither a \"visitor_id\" nor a \"user_id\" column"
        );
        assert_eq!(
            file(b"n,name,timestamp,user_id\n", &["n=name"]),
            "column \"name\" appears twice (after mapping)"
        );
        assert!(file(b"name,\xff,timestamp\n", &[]).starts_with("cannot read the header line: "));
        let p = run(
            "name,timestamp,user_id,visitor_id\n\
             a,yesterday,u,\n\
             a,9999999999999999,u,\n\
             a,,u,\n\
             a,0,u,\n\
             a,2026-11-20,u,nope\n\
             ,2026-11-20,u,\n\
             a,2026-11-20\n",
            &[],
        );
        let errors: Vec<&str> = p.bad.iter().map(|b| b.error.as_str()).collect();
        assert_eq!(
            errors[..6],
            [
                "\"timestamp\" \"yesterday\" is not RFC 3339, YYYY-MM-DD HH:MM:SS, YYYY-MM-DD or \
                 epoch milliseconds",
                "\"timestamp\" is out of range",
                "\"timestamp\" is empty",
                "\"timestamp\" is before the year 2000: 1970-01-01T00:00:00Z",
                "field \"visitor_id\" is not a UUID: \"nope\"",
                "field \"name\" is required",
            ]
        );
        assert!(errors[6].starts_with("unreadable row: "), "{}", errors[6]);
    }

    #[test]
    fn ids_are_stable_across_imports() {
        let csv = "name,timestamp,user_id\nbuy,2026-11-20,u\nbuy,2026-11-20,u\nbuy,2026-11-21,u\n";
        let a = run(csv, &[]);
        let b = run(csv, &[]);
        let ids = |p: &Parsed| p.events.iter().map(|e| e.event_id).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        let set: std::collections::HashSet<_> = ids(&a).into_iter().collect();
        assert_eq!(set.len(), 3, "identical rows stay distinct");
        let m = run(
            "name,timestamp,user_id,message_id\nbuy,2026-11-20,u,o-1\n",
            &[],
        );
        assert_eq!(
            m.events[0].event_id,
            native::message_event_id("shop", Source::Import, "o-1")
        );
    }

    /// A row's id is a UUIDv5 of its content as it has always been written (`ts` in epoch
    /// milliseconds, the field columns as text, the rest in `props`), so a file imported
    /// before keeps its ids; the time itself is kept to the microsecond.
    #[test]
    fn row_ids_hash_the_content_as_before_and_times_keep_microseconds() {
        let p = run(
            "name,timestamp,user_id,amount\npurchase,2026-11-20 15:30:00.123456,u-1,12\n",
            &[],
        );
        let e = &p.events[0];
        assert_eq!(e.ts_us, 1_795_188_600_123_456);
        let content =
            r#"{"name":"purchase","props":{"amount":12},"ts":1795188600123,"user_id":"u-1"}"#;
        let content = Uuid::new_v5(&ROW_NAMESPACE, content.as_bytes());
        assert_eq!(e.event_id, Uuid::new_v5(&content, b"1"));
    }
}
