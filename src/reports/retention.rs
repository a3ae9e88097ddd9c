//! Weekly retention cohorts, per person.
//!
//! A person's cohort is the week (Monday, site time zone) of their first page view in the
//! range; week n counts the people of that cohort with a page view n weeks later. Weeks after
//! the range's end are null. When the filters allow, a person's weeks are read from the
//! `sessions` table: the weeks in which one of their sessions started.

use super::filter::{Filters, Sql};
use super::funnel::PERSON;
use super::{rows, ReportError, Table};
use crate::store::identities;
use chrono::{Datelike, Duration, NaiveDate};
use duckdb::Connection;
use serde::Serialize;
use std::collections::BTreeMap;

/// `retention`'s answer.
#[derive(Debug, Serialize)]
pub struct Retention {
    /// `cohort, people, week 0, week 1, …`; weeks after the range are null.
    pub cohorts: Table<CohortRow>,
}

/// A cohort: its week (`YYYY-MM-DD`, a Monday), its people (week 0's count), and the people
/// of each week since, null after the range. JSON: one array in the columns' order,
/// `[cohort, people, week 0, week 1, …]` (its width is the range's).
#[derive(Debug, Clone, PartialEq)]
pub struct CohortRow {
    pub cohort: String,
    pub people: i64,
    pub weeks: Vec<Option<i64>>,
}

impl Serialize for CohortRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut row = s.serialize_seq(Some(self.weeks.len() + 2))?;
        row.serialize_element(&self.cohort)?;
        row.serialize_element(&self.people)?;
        for w in &self.weeks {
            row.serialize_element(w)?;
        }
        row.end()
    }
}

pub fn run(conn: &Connection, f: &Filters) -> Result<Retention, ReportError> {
    let monday = |d: NaiveDate| d - Duration::days(i64::from(d.weekday().num_days_from_monday()));
    let first_week = monday(f.from);
    let weeks = ((monday(f.to) - first_week).num_days() / 7 + 1) as usize;
    let masks = Masks::of(weeks);
    // Each week as its number in the range (0: the week of `from`).
    let week = |col: &str| {
        format!(
            "CAST(datediff('week', DATE '{first_week}', \
               CAST(date_trunc('week', {local}) AS DATE)) AS INTEGER)",
            local = f.local(col, Duration::zero())
        )
    };
    // One row per person: their first week (`c`) and the weeks they came in, as bits. Then
    // the people per first week and set of weeks: a few hundred rows, whatever the traffic.
    let mut sql = Sql::default();
    sql.push("WITH ").push(&identities());
    if f.by_visit() {
        // A person's weeks are those in which one of their sessions started. Visitors first
        // (grouped by their UUID); then the visitors stitched to a user merged into one.
        sql.push(&format!(
            ", s AS (SELECT visitor_id, {} AS w FROM (",
            week("e.first_ts")
        ))
        .append(&f.sessions("visitor_id, first_ts"))
        .push(&format!(
            ") e WHERE visitor_id IS NOT NULL), \
             v AS (SELECT visitor_id, min(w) AS c{} FROM s GROUP BY visitor_id), \
             j AS (SELECT v.*, idm.stitched FROM v LEFT JOIN idm USING (visitor_id)), \
             p AS (SELECT c{} FROM j WHERE stitched IS NULL \
               UNION ALL SELECT min(c){} FROM j WHERE stitched IS NOT NULL GROUP BY stitched)",
            masks.of_weeks(),
            masks.names(),
            masks.merged(),
        ));
    } else {
        sql.push(&format!(
            ", s AS (SELECT {PERSON} AS person, {} AS w FROM (",
            week("e.ts")
        ))
        .append(&f.base("*", Some("page_view")))
        .push(&format!(
            ") e LEFT JOIN idm ON idm.visitor_id = e.visitor_id WHERE {PERSON} IS NOT NULL), \
             p AS (SELECT min(w) AS c{} FROM s GROUP BY person)",
            masks.of_weeks()
        ));
    }
    sql.push(&format!(
        " SELECT c{m}, count(*) FROM p GROUP BY c{m}",
        m = masks.names()
    ));
    // People per cohort (by its week number) and week since.
    let mut cohorts: BTreeMap<usize, Vec<Option<i64>>> = BTreeMap::new();
    for r in rows(conn, &sql)? {
        let (Some(c), Some(people)) = (r[0].as_u64(), r[masks.count + 1].as_i64()) else {
            continue;
        };
        let c = c as usize;
        let row = cohorts
            .entry(c)
            .or_insert_with(|| vec![Some(0); weeks.saturating_sub(c)]);
        for k in 0..masks.count {
            let mut bits = r[k + 1].as_u64().unwrap_or(0);
            while bits != 0 {
                let w = 64 * k + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(Some(slot)) = w.checked_sub(c).and_then(|n| row.get_mut(n)) {
                    *slot += people;
                }
            }
        }
    }
    let width = cohorts.values().map(Vec::len).max().unwrap_or(0);
    let cohorts: BTreeMap<String, Vec<Option<i64>>> = cohorts
        .into_iter()
        .map(|(c, weeks)| {
            let start = first_week + Duration::weeks(c as i64);
            (start.format("%Y-%m-%d").to_string(), weeks)
        })
        .collect();
    let mut columns = vec!["cohort".to_string(), "people".to_string()];
    columns.extend((0..width).map(|n| format!("week {n}")));
    let table = Table {
        dimension: None,
        columns,
        rows: cohorts
            .into_iter()
            .map(|(cohort, mut weeks)| {
                let people = weeks.first().copied().flatten().unwrap_or(0);
                weeks.resize(width, None);
                CohortRow {
                    cohort,
                    people,
                    weeks,
                }
            })
            .collect(),
        estimated: Vec::new(),
    };
    Ok(Retention { cohorts: table })
}

/// The weeks a person came in, as bits of `count` `UBIGINT` columns `m0`, `m1`, …: week `w`
/// is bit `w % 64` of `m{w / 64}`. One column covers 64 weeks; a range of 10 years needs 9.
struct Masks {
    count: usize,
}

impl Masks {
    fn of(weeks: usize) -> Masks {
        Masks {
            count: weeks.div_ceil(64).max(1),
        }
    }

    /// `, m0, m1, …`
    fn names(&self) -> String {
        (0..self.count).map(|k| format!(", m{k}")).collect()
    }

    /// `, bit_or(<bit of week w in column k>) AS mk, …` over rows with a week `w`.
    fn of_weeks(&self) -> String {
        (0..self.count)
            .map(|k| {
                if self.count == 1 {
                    ", bit_or(CAST(1 AS UBIGINT) << CAST(w AS UTINYINT)) AS m0".to_string()
                } else {
                    format!(
                        ", bit_or(CASE WHEN w // 64 = {k} \
                           THEN CAST(1 AS UBIGINT) << CAST(w % 64 AS UTINYINT) \
                           ELSE CAST(0 AS UBIGINT) END) AS m{k}"
                    )
                }
            })
            .collect()
    }

    /// `, bit_or(m0) AS m0, …`: the weeks of several rows together.
    fn merged(&self) -> String {
        (0..self.count)
            .map(|k| format!(", bit_or(m{k}) AS m{k}"))
            .collect()
    }
}
