//! Weekly retention cohorts, per person.
//!
//! A person's cohort is the week (Monday, site time zone) of their first page view in the
//! range; week n counts the people of that cohort with a page view n weeks later. Weeks after
//! the range's end are null. When the filters allow, a person's weeks are read from the
//! `sessions` table: the weeks in which one of their sessions started.

use super::filter::{Filters, Sql};
use super::funnel::{IDENTITIES, PERSON};
use super::{rows, ReportError, Table};
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
    let mut sql = Sql::default();
    sql.push("WITH ").push(IDENTITIES);
    if f.by_visit() {
        // A person's weeks are those in which one of their sessions started: one row a
        // session instead of one a page view.
        sql.push(&format!(
            ", pv AS (SELECT coalesce(idm.stitched, CAST(e.visitor_id AS VARCHAR)) AS person, \
               CAST(date_trunc('week', {local}) AS DATE) AS wk FROM (",
            local = f.local("e.first_ts", Duration::zero())
        ))
        .append(&f.sessions("visitor_id, first_ts"))
        .push(
            ") e LEFT JOIN idm ON idm.visitor_id = e.visitor_id WHERE e.visitor_id IS NOT NULL \
             GROUP BY ALL)",
        );
    } else {
        sql.push(&format!(
            ", pv AS (SELECT {PERSON} AS person, \
               CAST(date_trunc('week', {local}) AS DATE) AS wk FROM (",
            local = f.local("e.ts", Duration::zero())
        ))
        .append(&f.base("*", Some("page_view")))
        .push(&format!(
            ") e LEFT JOIN idm ON idm.visitor_id = e.visitor_id WHERE {PERSON} IS NOT NULL)"
        ));
    }
    // The people per cohort and week as a DISTINCT aggregate, which spills to disk under
    // `store.memory_limit` where `count(DISTINCT …)` per group could not (100M events).
    sql.push(
        ", first AS (SELECT person, min(wk) AS cohort FROM pv GROUP BY person) \
         SELECT strftime(cohort, '%Y-%m-%d'), n, count(*) FROM ( \
           SELECT DISTINCT person, cohort, datediff('week', cohort, wk) AS n \
           FROM pv JOIN first USING (person)) \
         GROUP BY cohort, n",
    );
    let monday = |d: NaiveDate| d - Duration::days(i64::from(d.weekday().num_days_from_monday()));
    let last_week = monday(f.to);
    let mut cohorts: BTreeMap<String, Vec<Option<i64>>> = BTreeMap::new();
    let mut width = 0;
    for r in rows(conn, &sql)? {
        let (Some(c), Some(n)) = (r[0].as_str(), r[1].as_u64()) else {
            continue;
        };
        let Ok(start) = NaiveDate::parse_from_str(c, "%Y-%m-%d") else {
            continue;
        };
        let weeks = ((last_week - start).num_days() / 7 + 1) as usize;
        width = width.max(weeks);
        let row = cohorts
            .entry(c.to_string())
            .or_insert_with(|| vec![Some(0); weeks]);
        if let Some(slot) = row.get_mut(n as usize) {
            *slot = r[2].as_i64();
        }
    }
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
    };
    Ok(Retention { cohorts: table })
}
