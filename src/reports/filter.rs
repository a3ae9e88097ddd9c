//! Report parameters: the date range, the bot switch, dimension and property filters, and the
//! SQL they become. Every value a request carries is bound as a parameter, never spliced in;
//! column names come only from [`DIMENSIONS`].
//!
//! [`parse`] sorts a request's keys: the fixed filters (`from`, `to`, `bots`, `limit`) and the
//! report's own parameters are read by serde ([`Query`]); dimension and `prop.<key>` filters
//! by hand, because they are open keys that no struct has fields for.

use super::query::{self, Query};
use super::tz::SiteTz;
use super::ReportError;
use crate::event::columns::VISIT;
use chrono::{Duration, NaiveDate, NaiveDateTime};
use duckdb::types::Value;
use serde::{Deserialize, Deserializer};

/// Where a dimension's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The event's own column.
    Event,
    /// The session's first page view: where the visit came from.
    Session,
}

/// Every dimension a report can filter or break down by: `(name, scope)`. The name is the
/// `events` column.
pub const DIMENSIONS: &[(&str, Scope)] = &[
    ("path", Scope::Event),
    ("route", Scope::Event),
    ("host", Scope::Event),
    ("name", Scope::Event),
    ("method", Scope::Event),
    ("status", Scope::Event),
    ("source", Scope::Event),
    ("channel", Scope::Session),
    ("referrer_host", Scope::Session),
    ("utm_source", Scope::Session),
    ("utm_medium", Scope::Session),
    ("utm_campaign", Scope::Session),
    ("utm_term", Scope::Session),
    ("utm_content", Scope::Session),
    ("click_id_type", Scope::Session),
    ("browser", Scope::Event),
    ("os", Scope::Event),
    ("device_type", Scope::Event),
    ("country", Scope::Event),
    ("region", Scope::Event),
    ("city", Scope::Event),
];

/// The value that stands for "no value" (SQL NULL) in filters and tables.
pub const NONE: &str = "(none)";

/// Look a dimension up by name.
pub fn dimension(name: &str) -> Option<(&'static str, Scope)> {
    DIMENSIONS.iter().copied().find(|(n, _)| *n == name)
}

fn dimension_list() -> String {
    DIMENSIONS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// SQL text and the values bound to its `?` placeholders, in order.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Value>,
}

impl Sql {
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Append a placeholder bound to `v`.
    pub fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        self.text.push('?');
        self.params.push(v.into());
        self
    }

    /// Append another fragment with its parameters.
    pub fn append(&mut self, other: &Sql) -> &mut Self {
        self.text.push_str(&other.text);
        self.params.extend(other.params.iter().cloned());
        self
    }
}

/// A timestamp literal bound as a parameter.
pub fn ts_value(t: NaiveDateTime) -> Value {
    Value::Timestamp(
        duckdb::types::TimeUnit::Microsecond,
        t.and_utc().timestamp_micros(),
    )
}

/// A JSON path for a property key: `$."key"`. Keys are restricted so that the path is exact.
pub fn prop_path(key: &str) -> Result<String, ReportError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '$' | ' ' | ':'));
    if !ok {
        return Err(ReportError::Invalid(format!(
            "property key {key:?} is not allowed (letters, digits, space and _ - . $ : only)"
        )));
    }
    Ok(format!("$.\"{key}\""))
}

/// Everything that narrows a report, parsed from its query string.
#[derive(Debug, Clone)]
pub struct Filters {
    /// First and last local date of the range (inclusive).
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The range as UTC instants, `[start, end)`.
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub tz: SiteTz,
    /// Include events flagged as bots.
    pub bots: bool,
    /// `(column, scope, values)`; values are ORed, dimensions ANDed; `None` is NULL.
    pub dims: Vec<(&'static str, Scope, Vec<Option<String>>)>,
    /// `(json path, values)` on `props`.
    pub props: Vec<(String, Vec<Option<String>>)>,
    /// Rows per table.
    pub limit: usize,
}

/// Default and largest `limit`.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// The filters every report takes besides dimensions and properties, as serde reads them; a
/// key given twice takes its last value.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Common {
    /// First local date of the range; default: 29 days before `to`.
    #[serde(deserialize_with = "from_date")]
    from: Option<NaiveDate>,
    /// Last local date of the range; default: today.
    #[serde(deserialize_with = "to_date")]
    to: Option<NaiveDate>,
    #[serde(deserialize_with = "bots")]
    bots: bool,
    #[serde(deserialize_with = "limit")]
    limit: usize,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            from: None,
            to: None,
            bots: false,
            limit: DEFAULT_LIMIT,
        }
    }
}

fn from_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    query::parsed(d, |v| date("from", v)).map(Some)
}

fn to_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    query::parsed(d, |v| date("to", v)).map(Some)
}

fn bots<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    query::parsed(d, parse_bots)
}

fn limit<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    query::parsed(d, parse_limit)
}

/// Parse a report's query pairs into its filters and, for the report to deserialize its
/// params struct from, the values of `own_keys`, its own parameters. Any other key is an
/// error that lists what is allowed.
pub fn parse(
    pairs: &[(String, String)],
    tz: SiteTz,
    own_keys: &[&str],
) -> Result<(Filters, Query), ReportError> {
    let common_keys = query::fields::<Common>();
    let mut common = Query::default();
    let mut own = Query::default();
    // Dimension and property filters are open keys: any `prop.<key>`, and the dimensions, a
    // list (`DIMENSIONS`) the catalog serves and the SQL takes its column names from. No struct
    // has a field for each, so they are read here: every value (a filter's values are ORed),
    // `(none)` as NULL, the filters in the order they first come.
    let mut dims: Vec<(&'static str, Scope, Vec<Option<String>>)> = Vec::new();
    let mut props: Vec<(String, Vec<Option<String>>)> = Vec::new();
    for (k, v) in pairs {
        let value = || (v != NONE).then(|| v.clone());
        match k.as_str() {
            _ if common_keys.contains(&k.as_str()) => common.push(k, v),
            _ if k.starts_with("prop.") => {
                let path = prop_path(&k["prop.".len()..])?;
                match props.iter_mut().find(|(p, _)| *p == path) {
                    Some((_, vs)) => vs.push(value()),
                    None => props.push((path, vec![value()])),
                }
            }
            _ if own_keys.contains(&k.as_str()) => own.push(k, v),
            _ => match dimension(k) {
                Some((col, scope)) => match dims.iter_mut().find(|(c, _, _)| *c == col) {
                    Some((_, _, vs)) => vs.push(value()),
                    None => dims.push((col, scope, vec![value()])),
                },
                None => return Err(unknown_parameter(k, own_keys)),
            },
        }
    }
    let Common {
        from,
        to,
        bots,
        limit,
    } = common.deserialize()?;
    let (from, to) = range(from, to, &tz)?;
    Ok((
        Filters {
            from,
            to,
            start: tz.day_start_utc(from),
            end: tz.day_start_utc(to + Duration::days(1)),
            tz,
            bots,
            dims,
            props,
            limit,
        },
        own,
    ))
}

/// `bots=`: whether to include events flagged as bots.
fn parse_bots(v: &str) -> Result<bool, ReportError> {
    match v {
        "include" | "true" | "1" => Ok(true),
        "exclude" | "false" | "0" | "" => Ok(false),
        _ => Err(invalid(format!("bots={v:?}: expected include or exclude"))),
    }
}

/// `limit=`: rows per table, 1 to [`MAX_LIMIT`].
fn parse_limit(v: &str) -> Result<usize, ReportError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| invalid(format!("limit={v:?}: expected 1 to {MAX_LIMIT}")))
}

/// The error for a key that is neither a filter nor one of the report's `own_keys`: it
/// lists what is allowed.
fn unknown_parameter(k: &str, own_keys: &[&str]) -> ReportError {
    let own = if own_keys.is_empty() {
        String::new()
    } else {
        format!("; this report also takes {}", own_keys.join(", "))
    };
    invalid(format!(
        "unknown parameter {k:?}: filters are from, to, bots, limit, prop.<key> \
         and the dimensions {}{own}",
        dimension_list()
    ))
}

/// The range's first and last dates: `to` defaults to today in `tz`, `from` to 29 days
/// before `to`; at most 10 years, and not backwards.
fn range(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    tz: &SiteTz,
) -> Result<(NaiveDate, NaiveDate), ReportError> {
    let to = to.unwrap_or_else(|| tz.today());
    // `date` allows years 0000 to 9999 only, so this and the reports' own arithmetic (a year
    // of lookback or window at most) stay far from chrono's limits, where it panics.
    let from = from.unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(invalid(format!("from={from} is after to={to}")));
    }
    if (to - from).num_days() > 3660 {
        return Err(invalid(format!(
            "from={from}, to={to}: the range is longer than 10 years"
        )));
    }
    Ok((from, to))
}

/// A `YYYY-MM-DD` date. The year is unsigned, so at most four digits: chrono would take
/// `+99999-01-01` or `-262143-01-01`, and date arithmetic near those limits panics.
fn date(k: &str, v: &str) -> Result<NaiveDate, ReportError> {
    use chrono::format::ParseErrorKind;
    if v.trim_start().starts_with(['+', '-']) {
        return Err(invalid(format!(
            "{k}={v:?}: expected a date as YYYY-MM-DD (a year from 0000 to 9999)"
        )));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|e| {
        invalid(match e.kind() {
            ParseErrorKind::OutOfRange | ParseErrorKind::Impossible => {
                format!("{k}={v:?}: there is no such date")
            }
            _ => format!("{k}={v:?}: expected a date as YYYY-MM-DD"),
        })
    })
}

fn invalid(m: String) -> ReportError {
    ReportError::Invalid(m)
}

/// `(expr = ? OR expr = ? OR expr IS NULL)` for one filter's values.
pub fn any_of(sql: &mut Sql, expr: &str, values: &[Option<String>]) {
    sql.push("(");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        match v {
            Some(v) => {
                sql.push(&format!("CAST({expr} AS VARCHAR) = "));
                sql.bind(v.clone());
            }
            None => {
                sql.push(&format!("{expr} IS NULL"));
            }
        }
    }
    sql.push(")");
}

impl Filters {
    /// The local-time expression of `col` for this range (widened by `extra` at the end).
    pub fn local(&self, col: &str, extra: Duration) -> String {
        self.tz.local_sql(col, self.start, self.end + extra)
    }

    pub fn has_session_filters(&self) -> bool {
        self.dims.iter().any(|(_, s, _)| *s == Scope::Session)
    }

    /// `ts` within the range and, unless bots are included, no bots.
    pub fn range_sql(&self, sql: &mut Sql) {
        sql.push("ts >= ").bind(ts_value(self.start));
        sql.push(" AND ts < ").bind(ts_value(self.end));
        self.bots_sql(sql);
    }

    pub fn bots_sql(&self, sql: &mut Sql) {
        if !self.bots {
            sql.push(" AND is_bot IS NOT TRUE");
        }
    }

    /// The event-level conditions (after `range_sql`): event dimensions, properties, and the
    /// sessions that session dimensions select.
    pub fn event_sql(&self, sql: &mut Sql) {
        for (col, scope, values) in &self.dims {
            if *scope == Scope::Event {
                sql.push(" AND ");
                any_of(sql, col, values);
            }
        }
        for (path, values) in &self.props {
            sql.push(" AND ");
            let expr = format!("json_extract_string(props, '{}')", path.replace('\'', "''"));
            any_of(sql, &expr, values);
        }
        if self.has_session_filters() {
            let cols: Vec<&str> = self
                .dims
                .iter()
                .filter(|(_, s, _)| *s == Scope::Session)
                .map(|(c, _, _)| *c)
                .collect();
            sql.push(" AND session_id IN (SELECT session_id FROM (");
            self.sessions_sql(sql, &cols);
            sql.push(") WHERE true");
            for (col, scope, values) in &self.dims {
                if *scope == Scope::Session {
                    sql.push(" AND ");
                    any_of(sql, col, values);
                }
            }
            sql.push(")");
        }
    }

    /// Whether the `sessions` table can answer these filters: every dimension is one that a
    /// session takes from its first page view ([`VISIT`]), and there is no property filter.
    pub fn by_visit(&self) -> bool {
        self.props.is_empty() && self.dims.iter().all(|(c, _, _)| VISIT.contains(c))
    }

    /// `SELECT <cols> FROM sessions WHERE <range, bots, filters>`: the sessions whose first
    /// page view is in the range and matches the filters. Only when [`Filters::by_visit`].
    pub fn sessions(&self, cols: &str) -> Sql {
        self.sessions_of(cols, Part::Starting)
    }

    /// [`Filters::sessions`] for the sessions whose page views fall in the range as `part`
    /// says.
    pub fn sessions_of(&self, cols: &str, part: Part) -> Sql {
        debug_assert!(self.by_visit());
        let (start, end) = (ts_value(self.start), ts_value(self.end));
        let mut sql = Sql::default();
        sql.push(&format!("SELECT {cols} FROM sessions WHERE "));
        match part {
            Part::Starting | Part::Within => {
                let last = if part == Part::Within {
                    "last_ts"
                } else {
                    "first_ts"
                };
                sql.push("first_ts >= ").bind(start);
                sql.push(&format!(" AND {last} < ")).bind(end);
            }
            Part::Crossing => {
                sql.push("last_ts >= ").bind(start.clone());
                sql.push(" AND first_ts < ").bind(end.clone());
                sql.push(" AND (first_ts < ").bind(start);
                sql.push(" OR last_ts >= ").bind(end).push(")");
            }
        }
        self.bots_sql(&mut sql);
        for (col, _, values) in &self.dims {
            sql.push(" AND ");
            any_of(&mut sql, col, values);
        }
        sql
    }

    /// No filter but the range, and bots left out: what the writer's sketches count
    /// (`sketched.rs`), so that they can answer.
    pub fn sketchable(&self) -> bool {
        self.dims.is_empty() && self.props.is_empty() && !self.bots
    }

    /// `SELECT <cols> FROM events WHERE <range, bots, filters>`, optionally only `name = ?`.
    pub fn base(&self, cols: &str, name: Option<&str>) -> Sql {
        let mut sql = Sql::default();
        sql.push(&format!("SELECT {cols} FROM events WHERE "));
        self.range_sql(&mut sql);
        if let Some(n) = name {
            sql.push(" AND name = ").bind(n.to_string());
        }
        self.event_sql(&mut sql);
        sql
    }

    /// One row per session with page views in the range (no other filters), from the
    /// `sessions` table: `session_id`, `visitor_id`, `first_ts` (its first page view), and
    /// `cols` ([`VISIT`] columns) of that first page view. Unless bots are included, sessions
    /// whose first page view is a bot's are left out.
    pub fn sessions_sql(&self, sql: &mut Sql, cols: &[&str]) {
        debug_assert!(cols.iter().all(|c| VISIT.contains(c)));
        sql.push("SELECT session_id, visitor_id, first_ts");
        for col in cols {
            sql.push(&format!(", {col}"));
        }
        sql.push(" FROM sessions WHERE last_ts >= ")
            .bind(ts_value(self.start));
        sql.push(" AND first_ts < ").bind(ts_value(self.end));
        self.bots_sql(sql);
    }

    /// The range, the time zone and the filters, echoed in every answer.
    pub fn echo(&self) -> serde_json::Value {
        let mut f = serde_json::Map::new();
        for (col, _, values) in &self.dims {
            f.insert((*col).into(), values_json(values));
        }
        for (path, values) in &self.props {
            let key = path.trim_start_matches("$.\"").trim_end_matches('"');
            f.insert(format!("prop.{key}"), values_json(values));
        }
        serde_json::json!({
            "range": {"from": self.from.to_string(), "to": self.to.to_string(), "timezone": self.tz.name()},
            "bots": self.bots,
            "filters": f,
        })
    }
}

fn values_json(values: &[Option<String>]) -> serde_json::Value {
    values
        .iter()
        .map(|v| v.clone().unwrap_or_else(|| NONE.into()))
        .collect::<Vec<_>>()
        .into()
}

/// Which sessions [`Filters::sessions_of`] selects, by where their page views fall against
/// the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The first page view is in the range (where reports count a session).
    Starting,
    /// Every page view is in the range.
    Within,
    /// Some page views are in the range and some before or after it.
    Crossing,
}

/// A duration parameter (`30m`, `12h`, `7d`) as given and as parsed.
#[derive(Debug, Clone)]
pub struct Window {
    pub text: String,
    pub span: Duration,
}

impl Window {
    /// `text`, the value of parameter `key` (which the error names).
    pub fn parse(key: &str, text: &str) -> Result<Window, ReportError> {
        Ok(Window {
            span: parse_window(key, text)?,
            text: text.to_string(),
        })
    }

    /// `n` days, written `{n}d`.
    pub fn days(n: i64) -> Window {
        Window {
            text: format!("{n}d"),
            span: Duration::days(n),
        }
    }
}

/// The dimensions that describe where a session came from.
pub fn session_dimensions() -> Vec<&'static str> {
    DIMENSIONS
        .iter()
        .filter(|(_, s)| *s == Scope::Session)
        .map(|(c, _)| *c)
        .collect()
}

/// A duration such as `30m`, `12h` or `7d`, from 1 minute to 365 days.
pub fn parse_window(key: &str, s: &str) -> Result<Duration, ReportError> {
    // The unit is the last character, not the last byte (`1€`), and the number may be too
    // large for a duration (chrono's constructors panic then; the `try_` ones do not).
    let mut chars = s.chars();
    let unit = chars.next_back();
    let n: i64 = chars.as_str().parse().map_err(|_| bad_window(key, s))?;
    let d = match unit {
        Some('m') => Duration::try_minutes(n),
        Some('h') => Duration::try_hours(n),
        Some('d') => Duration::try_days(n),
        _ => None,
    };
    match d {
        Some(d) if d >= Duration::minutes(1) && d <= Duration::days(365) => Ok(d),
        _ => Err(bad_window(key, s)),
    }
}

fn bad_window(key: &str, s: &str) -> ReportError {
    invalid(format!(
        "{key}={s:?}: expected minutes, hours or days such as 30m, 12h or 7d (1m to 365d)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dimension is an `events` column by name (the SQL takes the name as the column), of
    /// text or, as `status` is, an integer: filters and tables read it as text.
    #[test]
    fn every_dimension_is_an_events_column() {
        use crate::event::columns::{Kind, COLUMNS};
        for (name, _) in DIMENSIONS {
            let column = COLUMNS.iter().find(|c| c.name == *name);
            let kind = column.map(|c| c.kind());
            assert!(
                matches!(kind, Some(Kind::Text | Kind::Int)),
                "{name}: {kind:?}"
            );
        }
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn filters_bind_values_and_name_columns_from_the_list() {
        let (f, _) = parse(
            &pairs("from=2026-11-01&to=2026-11-07&utm_source=x'%3B+DROP+TABLE+events--&browser=Chrome&browser=(none)&prop.plan=pro"),
            SiteTz::default(),
            &[],
        )
        .unwrap();
        let sql = f.base("*", Some("page_view"));
        assert!(!sql.text.contains("DROP"), "{}", sql.text);
        assert!(sql
            .text
            .contains("CAST(browser AS VARCHAR) = ? OR browser IS NULL"));
        assert!(sql
            .params
            .contains(&Value::Text("x'; DROP TABLE events--".into())));
        assert_eq!(f.end - f.start, Duration::days(7));
    }

    /// Values that used to panic (a 500): each is now an error that names its parameter.
    #[test]
    fn malformed_values_are_errors_that_name_the_parameter() {
        let max = NaiveDate::MAX.to_string();
        let min = NaiveDate::MIN.to_string();
        for (k, v) in [
            ("to", max.as_str()),
            ("to", min.as_str()),
            ("from", min.as_str()),
            ("from", "+99999-01-01"),
            ("from", "-0001-01-01"),
            ("from", "2026-02-30"),
            ("from", "99999-01-01"),
            ("limit", "99999999999999999999999"),
            ("limit", "-1"),
        ] {
            let q = [(k.to_string(), v.to_string())];
            let e = parse(&q, SiteTz::default(), &[]).unwrap_err();
            assert!(e.to_string().contains(&format!("{k}=")), "{k}={v}: {e}");
        }
        let e = parse(&pairs("from=2026-02-30"), SiteTz::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("no such date"), "{e}");
        for s in [
            "1€",
            "€",
            "€d",
            "1d€",
            "9223372036854775807d",
            "9223372036854775807m",
            "-9223372036854775808h",
            "",
            "d",
        ] {
            let e = parse_window("window", s).unwrap_err();
            assert!(e.to_string().contains("window="), "{s:?}: {e}");
        }
    }

    #[test]
    fn four_digit_years_are_all_accepted() {
        // And every such range leaves room for a year of lookback or window on either side.
        let (f, _) = parse(
            &pairs("from=9999-12-01&to=9999-12-31"),
            SiteTz::default(),
            &[],
        )
        .unwrap();
        assert!(f.end > f.start);
        let (f, _) = parse(&pairs("to=0001-01-01"), SiteTz::default(), &[]).unwrap();
        assert_eq!(f.from, NaiveDate::from_ymd_opt(0, 12, 3).unwrap());
    }

    #[test]
    fn bad_parameters_say_what_is_allowed() {
        let e = parse(&pairs("utm_src=x"), SiteTz::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("utm_source"), "{e}");
        let e = parse(&pairs("from=yesterday"), SiteTz::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
        let e = parse(&pairs("prop.a'b=1"), SiteTz::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("not allowed"), "{e}");
        assert!(parse_window("window", "1d").is_ok());
        assert!(parse_window("window", "0m").is_err());
        assert!(parse_window("window", "1w").is_err());
    }
}
