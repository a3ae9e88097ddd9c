//! Funnels: 2 to 8 ordered steps within a conversion window, counted per person.
//!
//! A person reaches step k when some step-1 event of theirs (in the range, matching the
//! filters) is followed by step 2, …, step k, in that order, all within the window of that
//! step-1 event. For each step-1 event the earliest later match of each step is taken, which
//! finds a conversion whenever one exists; each person then counts once, by the start that got
//! furthest (the earliest of those). The breakdown value and the times between steps are that
//! start's.
//!
//! DuckDB finds the people and their events; the steps are matched here, one person at a time
//! ([`Person::furthest`]), over their events in time order. Only people with a step-2 event can
//! get past step 1, so only theirs come back one by one; the others are counted in SQL.

use super::filter::{any_of, dimension, prop_path, ts_value, Filters, Scope, Sql, Window};
use super::{batches, quantile_cont, query, ratio, rows, Fetch, ReportError, Table};
use crate::store::identities;
use duckdb::arrow::array::{Array, Int32Array, Int64Array, StringArray, UInt64Array};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A funnel's steps, window and breakdown: its own parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "FunnelQuery")]
pub struct FunnelParams {
    pub steps: Vec<Step>,
    pub window: Window,
    /// A dimension or `prop.<key>`, checked when the SQL is built.
    pub breakdown: Option<String>,
}

/// `funnel`'s own parameters as the query string gives them, each value checked.
#[derive(Deserialize)]
struct FunnelQuery {
    /// Required.
    #[serde(default, deserialize_with = "steps")]
    steps: Option<Vec<Step>>,
    #[serde(default = "one_day", deserialize_with = "window")]
    window: Window,
    /// Empty is none.
    #[serde(default, deserialize_with = "breakdown")]
    breakdown: Option<String>,
}

impl TryFrom<FunnelQuery> for FunnelParams {
    type Error = ReportError;

    fn try_from(q: FunnelQuery) -> Result<Self, ReportError> {
        Ok(FunnelParams {
            steps: q
                .steps
                .ok_or_else(|| ReportError::Invalid("steps is required".into()))?,
            window: q.window,
            breakdown: q.breakdown,
        })
    }
}

fn steps<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Step>>, D::Error> {
    query::parsed(d, parse_steps).map(Some)
}

fn one_day() -> Window {
    Window::days(1)
}

fn window<'de, D: Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
    query::parsed(d, |v| Window::parse("window", v))
}

fn breakdown<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    query::parsed(d, |b| match b {
        "" => Ok(None),
        _ => breakdown_expr(b).map(|_| Some(b.to_string())),
    })
}

/// `funnel`'s answer.
#[derive(Debug, Serialize)]
pub struct Funnel {
    /// As given, e.g. `1d`.
    pub window: String,
    pub steps: Vec<StepCount>,
    /// `<breakdown>, 1. <step>, 2. <step>, …, conversion`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Table<BreakdownRow>>,
}

/// How many people reached one step.
#[derive(Debug, Serialize)]
pub struct StepCount {
    pub label: String,
    pub people: u64,
    /// From the first step.
    pub conversion: f64,
    /// From the previous step.
    pub step_conversion: f64,
    /// The median time from the previous step; `None` for the first.
    pub median_seconds: Option<f64>,
}

/// The person an event (`e`, joined with `idm`) belongs to: the user its visitor is stitched
/// to, else its own user, else its visitor. As a 128-bit key (`UHUGEINT`), which DuckDB groups,
/// joins and sorts faster than text: a user is the MD5 of their id, a visitor their UUID's
/// bits. Two keys are equal only if the people are (up to an MD5 collision, which needs both
/// ids chosen together: a user id cannot be picked to match one that exists).
pub(crate) const PERSON: &str =
    "coalesce(idm.stitched, md5_number(e.user_id), CAST(e.visitor_id AS UHUGEINT))";

/// One funnel step.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Step {
    /// A page view whose path matches a glob (`*` any characters, `?` one).
    Path { pattern: String },
    /// A custom event by name, optionally with property values.
    Event {
        name: String,
        #[serde(default)]
        props: BTreeMap<String, Value>,
    },
}

impl Step {
    pub fn label(&self) -> String {
        match self {
            Step::Path { pattern } => pattern.clone(),
            Step::Event { name, props } if props.is_empty() => name.clone(),
            Step::Event { name, props } => {
                let p: Vec<String> = props
                    .iter()
                    .map(|(k, v)| format!("{k}={}", scalar(v).unwrap_or_else(|| "(none)".into())))
                    .collect();
                format!("{name} ({})", p.join(", "))
            }
        }
    }

    /// The condition on an event (alias `e`).
    pub fn sql(&self, sql: &mut Sql) -> Result<(), ReportError> {
        match self {
            Step::Path { pattern } => {
                sql.push("(e.name = 'page_view' AND e.path GLOB ")
                    .bind(pattern.clone())
                    .push(")");
            }
            Step::Event { name, props } => {
                sql.push("(e.name = ").bind(name.clone());
                for (k, v) in props {
                    let path = prop_path(k)?;
                    sql.push(" AND ");
                    any_of(
                        sql,
                        &format!("json_extract_string(e.props, '{path}')"),
                        &[scalar(v)],
                    );
                }
                sql.push(")");
            }
        }
        Ok(())
    }
}

/// A JSON scalar as `json_extract_string` gives it; null is `None`.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Parse `steps` (a JSON array of 2 to 8 steps).
pub fn parse_steps(s: &str) -> Result<Vec<Step>, ReportError> {
    let steps: Vec<Step> = serde_json::from_str(s).map_err(|e| {
        ReportError::Invalid(format!(
            "steps: {e} (expected a JSON array such as \
             [{{\"type\":\"path\",\"pattern\":\"/product/*\"}},{{\"type\":\"event\",\"name\":\"registered\"}}])"
        ))
    })?;
    if !(2..=8).contains(&steps.len()) {
        return Err(ReportError::Invalid(format!(
            "steps: a funnel has 2 to 8 steps (got {})",
            steps.len()
        )));
    }
    for s in &steps {
        let empty = match s {
            Step::Path { pattern } => pattern.is_empty(),
            Step::Event { name, .. } => name.is_empty(),
        };
        if empty {
            return Err(ReportError::Invalid(
                "steps: a step needs a non-empty pattern or name".into(),
            ));
        }
    }
    Ok(steps)
}

/// The breakdown expression for a step-1 event (`e`) and whether it needs the session's
/// first page view (`sa`).
pub(super) fn breakdown_expr(name: &str) -> Result<(String, Option<&'static str>), ReportError> {
    if let Some(key) = name.strip_prefix("prop.") {
        return Ok((
            format!("json_extract_string(e.props, '{}')", prop_path(key)?),
            None,
        ));
    }
    match dimension(name) {
        Some((col, Scope::Session)) => Ok((format!("sa.{col}"), Some(col))),
        Some((col, Scope::Event)) => Ok((format!("CAST(e.{col} AS VARCHAR)"), None)),
        None => Err(ReportError::Invalid(format!(
            "breakdown={name:?}: expected a dimension (see filters) or prop.<key>"
        ))),
    }
}

/// Step-1 events a funnel counts in one pass. With more, people are split into passes by a
/// hash of who they are, each pass counting its people alone, so that what DuckDB holds stays
/// bounded however large the store. The most measured in one pass is 100M generated events'
/// 19.8M product views, under the default `store.memory_limit` (512 MiB): peak RSS 686–711
/// MiB, `BENCHMARKS.md`. A breakdown's value goes with each step-1 event, so a pass with one
/// takes half as many ([`pass_starts`]): on that store one pass by `utm_source` ran out of
/// the limit, and two of 9.9M each fit (the most measured).
const PASS_STARTS: u64 = 24_000_000;

/// Step-1 events a pass may have for its rows to be fetched whole (quicker) rather than
/// streamed ([`Fetch`]): 10M events' 2M product views come whole (about 0.8M rows).
const WHOLE_STARTS: u64 = 4_000_000;

/// How many times a funnel that runs out of `store.memory_limit` is counted again, in twice
/// as many passes each time, before it answers that it ran out. Each count reads the store
/// once a pass: one that never fits reads it 15 times as often as its first count before it
/// answers 503.
const MORE_PASSES: u32 = 3;

pub fn run(conn: &Connection, f: &Filters, p: &FunnelParams) -> Result<Funnel, ReportError> {
    run_in_passes(conn, f, p, pass_starts(p), WHOLE_STARTS)
}

/// The step-1 events a pass of `p` takes at most, at first.
fn pass_starts(p: &FunnelParams) -> u64 {
    match p.breakdown {
        Some(_) => PASS_STARTS / 2,
        None => PASS_STARTS,
    }
}

/// [`run`], with at most about `pass_starts` step-1 events a pass, whose rows are fetched
/// whole if it has at most `whole_starts`. A count that runs out of memory (DuckDB's
/// aggregates and materialized results do not all spill) starts again in twice as many
/// passes, up to [`MORE_PASSES`] times.
fn run_in_passes(
    conn: &Connection,
    f: &Filters,
    p: &FunnelParams,
    pass_starts: u64,
    whole_starts: u64,
) -> Result<Funnel, ReportError> {
    let starts = starts(conn, f, &p.steps[0])?;
    let count = count_retrying(starts, pass_starts, whole_starts, |passes, fetch| {
        count_in_passes(conn, f, p, passes, fetch)
    })?;
    Ok(answer(f, p, count))
}

/// The funnel's answer from its people counted.
fn answer(f: &Filters, p: &FunnelParams, count: Count) -> Funnel {
    let (mut total, by) = count.finish();
    let medians = total.medians();
    let first = total.people[0] as f64;
    let steps = p
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let people = total.people[i] as f64;
            let prev = if i == 0 {
                people
            } else {
                total.people[i - 1] as f64
            };
            StepCount {
                label: s.label(),
                people: people as u64,
                conversion: ratio(people, first),
                step_conversion: ratio(people, prev),
                median_seconds: if i == 0 { None } else { medians[i - 1] },
            }
        })
        .collect();
    Funnel {
        window: p.window.text.clone(),
        steps,
        breakdown: p
            .breakdown
            .as_ref()
            .map(|b| breakdown_table(b, &p.steps, by, f.limit)),
    }
}

/// `count(passes, fetch)` in as many passes as `starts` step-1 events need at
/// `pass_starts` a pass, each pass fetched whole if it has at most `whole_starts`; again in
/// twice as many passes while it runs out of memory, up to [`MORE_PASSES`] times.
fn count_retrying(
    starts: u64,
    pass_starts: u64,
    whole_starts: u64,
    mut count: impl FnMut(u64, Fetch) -> Result<Count, ReportError>,
) -> Result<Count, ReportError> {
    let mut passes = starts.div_ceil(pass_starts).max(1);
    let mut again = 0;
    loop {
        let fetch = if starts.div_ceil(passes) > whole_starts {
            Fetch::Streamed
        } else {
            Fetch::Whole
        };
        match count(passes, fetch) {
            Err(ReportError::Store(e))
                if again < MORE_PASSES && crate::store::out_of_memory(&e) =>
            {
                tracing::info!(
                    error = %e,
                    passes,
                    starts,
                    "The funnel ran out of store.memory_limit; counting it again in twice as \
                     many passes."
                );
                again += 1;
                passes *= 2;
            }
            counted => return counted,
        }
    }
}

/// Count the funnel's people in `passes` passes, each fetching its rows as `fetch` says.
fn count_in_passes(
    conn: &Connection,
    f: &Filters,
    p: &FunnelParams,
    passes: u64,
    fetch: Fetch,
) -> Result<Count, ReportError> {
    let (bd, session_col) = match &p.breakdown {
        Some(b) => breakdown_expr(b)?,
        None => ("CAST(NULL AS VARCHAR)".into(), None),
    };
    let window_us = p.window.span.num_microseconds().unwrap_or(i64::MAX);
    let mut count = Count::new(p.steps.len(), window_us);
    for pass in 0..passes {
        let mut sql = Sql::default();
        steps_sql(&mut sql, f, p, &bd, session_col, (pass, passes))?;
        people_sql(&mut sql, p.steps.len());
        batches(conn, &sql, fetch, |b| count.batch(b))?;
        count.person_done();
    }
    Ok(count)
}

/// How many step-1 events (in the range, matching the filters) the funnel starts from.
fn starts(conn: &Connection, f: &Filters, first: &Step) -> Result<u64, ReportError> {
    let mut sql = Sql::default();
    sql.push("SELECT count(*) FROM (")
        .append(&f.base("*", None))
        .push(") e WHERE ");
    first.sql(&mut sql)?;
    Ok(rows(conn, &sql)?
        .first()
        .and_then(|r| r[0].as_u64())
        .unwrap_or(0))
}

/// The people who reached each step, and (for the totals) the seconds each took from the
/// step before: added up over the passes.
struct Tally {
    people: Vec<i64>,
    /// For step `k + 2`, the seconds from step `k + 1` of each person who reached it.
    gaps: Vec<Vec<f64>>,
}

impl Tally {
    fn new(steps: usize) -> Tally {
        Tally {
            people: vec![0; steps],
            gaps: vec![Vec::new(); steps - 1],
        }
    }

    /// Add `people` who got as far as step `level` (1 is the first).
    fn reached(&mut self, level: usize, people: i64) {
        for sum in &mut self.people[..level] {
            *sum += people;
        }
    }

    /// The median of each step's seconds, as DuckDB's `median` (the mean of the two middle
    /// values of an even count); `None` when nobody reached the step.
    fn medians(&mut self) -> Vec<Option<f64>> {
        self.gaps
            .iter_mut()
            .map(|g| {
                g.sort_by(f64::total_cmp);
                quantile_cont(g.len() as i64, 0.5, |k| g.get(k as usize).copied())
            })
            .collect()
    }
}

/// A funnel counted from [`people_sql`]'s rows, batch by batch, over every pass.
struct Count {
    steps: usize,
    window_us: i64,
    total: Tally,
    /// Each breakdown value (the first is `NULL`), and its people per step.
    values: Vec<(Option<String>, Tally)>,
    index: HashMap<String, usize>,
    /// The person whose events are being read (their key), and those events.
    key: Option<(u64, u64)>,
    person: Person,
}

impl Count {
    fn new(steps: usize, window_us: i64) -> Count {
        Count {
            steps,
            window_us,
            total: Tally::new(steps),
            values: vec![(None, Tally::new(steps))],
            index: HashMap::new(),
            key: None,
            person: Person::new(steps),
        }
    }

    /// Read one Arrow batch of [`people_sql`]'s rows.
    fn batch(&mut self, b: &RecordBatch) -> Result<(), ReportError> {
        let cols = (
            b.column(0).as_any().downcast_ref::<Int32Array>(),
            b.column(1).as_any().downcast_ref::<UInt64Array>(),
            b.column(2).as_any().downcast_ref::<UInt64Array>(),
            b.column(3).as_any().downcast_ref::<Int64Array>(),
            b.column(4).as_any().downcast_ref::<Int32Array>(),
            b.column(5).as_any().downcast_ref::<StringArray>(),
            b.column(6).as_any().downcast_ref::<Int64Array>(),
        );
        let (Some(kind), Some(hi), Some(lo), Some(ts), Some(steps), Some(bd), Some(n)) = cols
        else {
            let schema = b.schema();
            return Err(ReportError::Internal(format!(
                "funnel: unexpected column types {schema:?}"
            )));
        };
        for i in 0..b.num_rows() {
            let value = bd.is_valid(i).then(|| bd.value(i));
            if kind.value(i) == 0 {
                let v = self.value(value);
                self.add(v, 1, n.value(i), None);
                continue;
            }
            let key = (hi.value(i), lo.value(i));
            if self.key != Some(key) {
                self.person_done();
                self.key = Some(key);
            }
            if kind.value(i) == 1 {
                let v = self.value(value);
                self.person.starts.push((ts.value(i), v));
            } else {
                self.person.step(ts.value(i), steps.value(i) as u32);
            }
        }
        Ok(())
    }

    /// Count the person read so far, if any, by their furthest start.
    fn person_done(&mut self) {
        if self.key.take().is_none() {
            return;
        }
        if let Some(r) = self.person.furthest(self.window_us) {
            self.add(r.value, r.level, 1, Some(&r.times));
        }
        self.person.clear();
    }

    /// The index of a breakdown value in `values`.
    fn value(&mut self, v: Option<&str>) -> usize {
        let Some(v) = v else { return 0 };
        if let Some(&i) = self.index.get(v) {
            return i;
        }
        self.values
            .push((Some(v.to_string()), Tally::new(self.steps)));
        self.index.insert(v.to_string(), self.values.len() - 1);
        self.values.len() - 1
    }

    /// Add `people` with breakdown value `v` who got as far as step `level`; with the times
    /// of their steps (µs) when it is one person who moved on.
    fn add(&mut self, v: usize, level: usize, people: i64, times: Option<&[i64]>) {
        self.total.reached(level, people);
        if let Some(t) = times {
            for k in 1..level {
                self.total.gaps[k - 1].push((t[k] - t[k - 1]) as f64 / 1e6);
            }
        }
        self.values[v].1.reached(level, people);
    }

    /// The totals, and the people per step of each breakdown value that has any.
    fn finish(self) -> (Tally, BTreeMap<Option<String>, Tally>) {
        let by = self.values.into_iter().filter(|(_, t)| t.people[0] > 0);
        (self.total, by.collect())
    }
}

/// One person's events, as [`people_sql`] gives them: in time order.
struct Person {
    /// Step-1 events: the time (µs) and the breakdown value's index.
    starts: Vec<(i64, usize)>,
    /// For step `k + 2`, the times of the events that match it.
    steps: Vec<Vec<i64>>,
}

/// How far a person got from one start.
struct Reach {
    /// Steps reached within the window, the first included.
    level: usize,
    /// The start's breakdown value.
    value: usize,
    /// The start's time and the time of each step reached after it (µs).
    times: [i64; 8],
}

impl Person {
    fn new(steps: usize) -> Person {
        Person {
            starts: Vec::new(),
            steps: vec![Vec::new(); steps - 1],
        }
    }

    /// A later event at `ts`, matching step `k` when bit `k - 2` of `steps` is set.
    fn step(&mut self, ts: i64, steps: u32) {
        for (k, times) in self.steps.iter_mut().enumerate() {
            if steps & (1 << k) != 0 {
                times.push(ts);
            }
        }
    }

    fn clear(&mut self) {
        self.starts.clear();
        self.steps.iter_mut().for_each(Vec::clear);
    }

    /// The start that gets furthest within `window_us` (the earliest of those). From each
    /// start, each step's earliest event at or after the step before (at the same time
    /// counts): the earliest match leaves the most room for the steps after it.
    fn furthest(&self, window_us: i64) -> Option<Reach> {
        let mut best: Option<Reach> = None;
        for &(t1, value) in &self.starts {
            let mut r = Reach {
                level: 1,
                value,
                times: [t1; 8],
            };
            for (k, times) in self.steps.iter().enumerate() {
                let at = times.partition_point(|&t| t < r.times[k]);
                match times.get(at) {
                    Some(&t) if t - t1 <= window_us => {
                        r.times[k + 1] = t;
                        r.level += 1;
                    }
                    _ => break,
                }
            }
            if best.as_ref().is_none_or(|b| r.level > b.level) {
                let all = r.level == self.steps.len() + 1;
                best = Some(r);
                if all {
                    break;
                }
            }
        }
        best
    }
}

/// `WITH idm, [sa,] s1, later`: the step-1 events (in the range, matching the filters) with
/// their person and breakdown value `bd`, and the events of any later step (`p2` … `pn`: which
/// steps each matches), up to the end of the range plus the window.
fn steps_sql(
    sql: &mut Sql,
    f: &Filters,
    p: &FunnelParams,
    bd: &str,
    session_col: Option<&str>,
    (pass, passes): (u64, u64),
) -> Result<(), ReportError> {
    let steps = &p.steps;
    // This pass's people (all of them in a single pass).
    let mine = if passes > 1 {
        format!(" AND hash({PERSON}) % {passes} = {pass}")
    } else {
        String::new()
    };
    sql.push("WITH ").push(&identities());
    if let Some(col) = session_col {
        sql.push(", sa AS (");
        f.sessions_sql(sql, &[col]);
        sql.push(")");
    }
    // Step 1: in the range and matching the filters.
    sql.push(&format!(
        ", s1 AS (SELECT {PERSON} AS person, e.ts AS t1, {bd} AS bd FROM ("
    ))
    .append(&f.base("*", None))
    .push(") e LEFT JOIN idm ON idm.visitor_id = e.visitor_id");
    if session_col.is_some() {
        sql.push(" LEFT JOIN sa ON sa.session_id = e.session_id");
    }
    sql.push(" WHERE ");
    steps[0].sql(sql)?;
    sql.push(&format!(" AND {PERSON} IS NOT NULL{mine})"));
    // Later steps: any event of the person up to the end of the range plus the window, from
    // one scan of the events that match any of them.
    sql.push(&format!(
        ", later AS MATERIALIZED (SELECT {PERSON} AS person, e.ts"
    ));
    for (i, step) in steps.iter().enumerate().skip(1) {
        sql.push(", ");
        step.sql(sql)?;
        sql.push(&format!(" AS p{}", i + 1));
    }
    sql.push(" FROM events e LEFT JOIN idm ON idm.visitor_id = e.visitor_id WHERE e.ts >= ")
        .bind(ts_value(f.start))
        .push(" AND e.ts < ")
        .bind(ts_value(f.end + p.window.span));
    if !f.bots {
        sql.push(" AND e.is_bot IS NOT TRUE");
    }
    sql.push(" AND (");
    for (i, step) in steps.iter().enumerate().skip(1) {
        if i > 1 {
            sql.push(" OR ");
        }
        step.sql(sql)?;
    }
    sql.push(&format!(") AND {PERSON} IS NOT NULL{mine})"));
    Ok(())
}

/// `, c SELECT kind, hi, lo, ts, steps, bd, n`: the rows [`Count`] reads.
/// - Kind 0: people with no step-2 event, who cannot get past step 1, counted (`n`) per
///   breakdown value of their earliest start (`bd`).
/// - Kind 1: a step-1 event of someone who has one: its time (`ts`, µs) and `bd`.
/// - Kind 2: a later event of theirs: `ts`, and `steps` with bit `k - 2` set for each step `k`
///   it matches.
///
/// Kinds 1 and 2 come ordered by person (`hi`, `lo`: the two halves of their key) and time,
/// which is a sort DuckDB can spill to disk.
fn people_sql(sql: &mut Sql, n: usize) {
    const HI: &str = "CAST(person >> 64 AS UBIGINT)";
    const LO: &str = "CAST(person & 18446744073709551615::UHUGEINT AS UBIGINT)";
    let bits: Vec<String> = (2..=n)
        .map(|k| format!("(p{k} IS TRUE)::INTEGER * {}", 1 << (k - 2)))
        .collect();
    sql.push(&format!(
        ", c AS MATERIALIZED (SELECT *, person IN (SELECT person FROM later WHERE p2) AS moves \
           FROM s1) \
         SELECT 0 AS kind, CAST(NULL AS UBIGINT) AS hi, CAST(NULL AS UBIGINT) AS lo, \
           CAST(NULL AS BIGINT) AS ts, CAST(NULL AS INTEGER) AS steps, bd, count(*) AS n \
         FROM (SELECT arg_min_null(bd, t1) AS bd FROM c WHERE NOT moves GROUP BY person) \
         GROUP BY bd \
         UNION ALL SELECT 1, {HI}, {LO}, epoch_us(t1), 0, bd, NULL FROM c WHERE moves \
         UNION ALL SELECT 2, {HI}, {LO}, epoch_us(ts), {bits}, NULL, NULL FROM later \
           WHERE person IN (SELECT person FROM c WHERE moves) \
         ORDER BY hi, lo, ts",
        bits = bits.join(" + ")
    ));
}

/// A breakdown row: the value, the people who reached each step, and the conversion from the
/// first step to the last. JSON: one array in the columns' order, `[value, people…,
/// conversion]`, like every table row (its width is the funnel's).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakdownRow {
    pub value: Option<String>,
    pub people: Vec<i64>,
    pub conversion: f64,
}

impl Serialize for BreakdownRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut row = s.serialize_seq(Some(self.people.len() + 2))?;
        row.serialize_element(&self.value)?;
        for p in &self.people {
            row.serialize_element(p)?;
        }
        row.serialize_element(&self.conversion)?;
        row.end()
    }
}

/// The breakdown's values as a table: value, people per step, conversion; the most people
/// first, cut to `limit`.
fn breakdown_table(
    b: &str,
    steps: &[Step],
    values: BTreeMap<Option<String>, Tally>,
    limit: usize,
) -> Table<BreakdownRow> {
    let mut by: Vec<BreakdownRow> = values
        .into_iter()
        .map(|(value, t)| {
            let (first, last) = (t.people.first(), t.people.last());
            let conversion = ratio(
                last.copied().unwrap_or(0) as f64,
                first.copied().unwrap_or(0) as f64,
            );
            BreakdownRow {
                value,
                people: t.people,
                conversion,
            }
        })
        .collect();
    by.sort_by(|a, b| {
        let first = |r: &BreakdownRow| r.people.first().copied().unwrap_or(0);
        first(b)
            .cmp(&first(a))
            .then_with(|| super::traffic::null_last(a.value.as_deref(), b.value.as_deref()))
    });
    by.truncate(limit);
    let mut columns: Vec<String> = vec![b.to_string()];
    columns.extend(
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {}", i + 1, s.label())),
    );
    columns.push("conversion".into());
    Table {
        dimension: Some(b.to_string()),
        columns,
        rows: by,
        estimated: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of 40k generated events (about 2,500 step-1 events), and a 3-step funnel over
    /// its last 14 days by `utm_source`.
    fn shop() -> (
        tempfile::TempDir,
        crate::store::Store,
        Filters,
        FunnelParams,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::store::Store::open(dir.path()).unwrap();
        let end = super::super::tests::utc_us("2026-01-20 12:00");
        let spec = crate::generate::Spec {
            events: 40_000,
            days: 14,
            seed: 3,
            end_us: end,
            site: "shop".into(),
        };
        crate::generate::generate(&mut store, &spec).unwrap();
        let steps = r#"[{"type":"path","pattern":"/product/*"},{"type":"path","pattern":"/register"},{"type":"event","name":"registered"}]"#;
        let pairs: Vec<(String, String)> = [
            ("from", "2026-01-07"),
            ("to", "2026-01-20"),
            ("steps", steps),
            ("window", "1d"),
            ("breakdown", "utm_source"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let names = super::super::find("funnel").unwrap().param_names();
        let (f, own) = super::super::filter::parse(&pairs, Default::default(), &names).unwrap();
        let p: FunnelParams = own.deserialize().unwrap();
        (dir, store, f, p)
    }

    /// A funnel counted in several passes of people answers exactly as in one: people per
    /// step, the median times between steps, and the breakdown; and so with its rows
    /// streamed. On [`shop`]'s store, in 1 pass, then 3, then 40, then streamed in 1 and in 3.
    #[test]
    fn passes_of_people_add_up_to_one_pass() {
        let (_dir, store, f, p) = shop();
        let conn = store.reader().unwrap();
        let answer = |pass_starts, whole_starts| {
            let funnel = run_in_passes(&conn, &f, &p, pass_starts, whole_starts).unwrap();
            serde_json::to_value(funnel).unwrap()
        };
        let one = answer(u64::MAX, u64::MAX);
        let starts = starts(&conn, &f, &p.steps[0]).unwrap();
        assert!(starts > 1_000, "{starts} step-1 events");
        assert!(one["steps"][2]["people"].as_u64().unwrap() > 10, "{one}");
        assert!(
            one["breakdown"]["rows"].as_array().unwrap().len() > 2,
            "{one}"
        );
        for passes in [3, 40] {
            let per_pass = starts.div_ceil(passes);
            assert_eq!(answer(per_pass, u64::MAX), one, "{passes} passes");
        }
        // The rows streamed rather than fetched whole: the same answer.
        assert_eq!(answer(u64::MAX, 0), one, "streamed");
        assert_eq!(answer(starts.div_ceil(3), 0), one, "3 passes, streamed");
    }

    /// DuckDB's own "Out of Memory Error", from a connection of 8 MiB.
    fn out_of_memory() -> ReportError {
        let config = duckdb::Config::default().max_memory("8MiB").unwrap();
        let conn = duckdb::Connection::open_in_memory_with_flags(config).unwrap();
        let e = conn
            .query_row("SELECT list(i) FROM range(20000000) t(i)", [], |_| Ok(()))
            .unwrap_err();
        assert!(crate::store::out_of_memory(&e), "{e}");
        ReportError::Store(e)
    }

    /// A count that runs out of `store.memory_limit` starts again in twice as many passes and
    /// answers as one pass does (here the counts in 1 and 2 passes run out, the one in 4
    /// fits); after [`MORE_PASSES`] times it answers that it ran out, and any other error is
    /// not tried again. A breakdown starts at half the step-1 events a pass. (A real funnel
    /// that needs it, the 10M-event store by `utm_source` under 64 MiB, is in
    /// `BENCHMARKS.md`: too large for a test.)
    #[test]
    fn a_funnel_out_of_memory_is_counted_again_in_more_passes() {
        let (_dir, store, f, p) = shop();
        let conn = store.reader().unwrap();
        assert_eq!(
            pass_starts(&p),
            PASS_STARTS / 2,
            "a breakdown halves a pass"
        );
        let mut plain = p.clone();
        plain.breakdown = None;
        assert_eq!(pass_starts(&plain), PASS_STARTS);

        let one = run_in_passes(&conn, &f, &p, u64::MAX, u64::MAX).unwrap();
        let one = serde_json::to_value(one).unwrap();
        let starts = starts(&conn, &f, &p.steps[0]).unwrap();

        let mut tried = Vec::new();
        let count = count_retrying(starts, u64::MAX, u64::MAX, |passes, fetch| {
            tried.push(passes);
            match passes {
                ..4 => Err(out_of_memory()),
                _ => count_in_passes(&conn, &f, &p, passes, fetch),
            }
        })
        .unwrap();
        assert_eq!(tried, [1, 2, 4]);
        assert_eq!(serde_json::to_value(answer(&f, &p, count)).unwrap(), one);

        let mut tried = Vec::new();
        let e = count_retrying(starts, u64::MAX, u64::MAX, |passes, _| {
            tried.push(passes);
            Err(out_of_memory())
        })
        .err()
        .unwrap();
        assert_eq!(tried, [1, 2, 4, 8]);
        assert!(
            matches!(&e, ReportError::Store(e) if crate::store::out_of_memory(e)),
            "{e}"
        );

        let mut tried = Vec::new();
        let e = count_retrying(starts, u64::MAX, u64::MAX, |passes, _| {
            tried.push(passes);
            Err(ReportError::Internal("not memory".into()))
        })
        .err()
        .unwrap();
        assert_eq!(tried, [1]);
        assert!(matches!(e, ReportError::Internal(_)), "{e}");
    }

    /// A person's furthest start: each step's earliest event at or after the step before
    /// (the same time counts, and one event may be two steps), within the window of the start
    /// (its very end included); among the starts that get furthest, the earliest.
    #[test]
    fn a_person_counts_by_the_start_that_gets_furthest() {
        const S: i64 = 1_000_000;
        let person = |starts: &[(i64, usize)], steps: &[(i64, u32)]| {
            let mut p = Person::new(4);
            p.starts.extend_from_slice(starts);
            for &(ts, bits) in steps {
                p.step(ts, bits);
            }
            p
        };
        let reach = |p: &Person, window: i64| {
            let r = p.furthest(window).unwrap();
            (r.level, r.value, r.times[..r.level].to_vec())
        };
        // Step 2 at 10 s, step 3 at 10 s (the same event), step 4 at 70 s.
        let p = person(&[(0, 1)], &[(10 * S, 0b011), (70 * S, 0b100)]);
        assert_eq!(reach(&p, 70 * S), (4, 1, vec![0, 10 * S, 10 * S, 70 * S]));
        assert_eq!(reach(&p, 70 * S - 1), (3, 1, vec![0, 10 * S, 10 * S]));
        // Steps out of order do not count: step 3 before step 2 is not a match.
        let p = person(&[(0, 1)], &[(5 * S, 0b010), (10 * S, 0b001)]);
        assert_eq!(reach(&p, 100 * S), (2, 1, vec![0, 10 * S]));
        // Step 2 at the start's own time counts.
        let p = person(&[(3 * S, 1)], &[(3 * S, 0b001)]);
        assert_eq!(reach(&p, S), (2, 1, vec![3 * S, 3 * S]));
        // Two starts: the first gets to step 2 only (step 3 is past its window), the second,
        // later one to step 3; the second counts. A third, as far as the second, does not.
        let p = person(
            &[(0, 1), (50 * S, 2), (55 * S, 3)],
            &[(60 * S, 0b001), (100 * S, 0b010)],
        );
        assert_eq!(reach(&p, 60 * S), (3, 2, vec![50 * S, 60 * S, 100 * S]));
        // Nobody moves: the earliest start.
        let p = person(&[(7 * S, 4), (9 * S, 5)], &[(S, 0b001)]);
        assert_eq!(reach(&p, 60 * S), (1, 4, vec![7 * S]));
        assert!(person(&[], &[(S, 0b001)]).furthest(S).is_none());
    }

    #[test]
    fn steps_are_validated() {
        assert!(parse_steps(r#"[{"type":"path","pattern":"/a"}]"#).is_err());
        assert!(
            parse_steps(r#"[{"type":"page","pattern":"/a"},{"type":"event","name":"x"}]"#).is_err()
        );
        let s = parse_steps(
            r#"[{"type":"path","pattern":"/a*"},{"type":"event","name":"buy","props":{"cat":"cameras","n":2}}]"#,
        )
        .unwrap();
        assert_eq!(s[1].label(), "buy (cat=cameras, n=2)");
        let mut sql = Sql::default();
        s[1].sql(&mut sql).unwrap();
        assert_eq!(sql.params.len(), 3);
    }
}
