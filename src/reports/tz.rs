//! The site's time zone: local dates to UTC bounds, and a SQL expression that shifts `ts` to
//! local time (DuckDB is built without ICU, so the offsets are computed here with chrono-tz).

use chrono::{Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// A site time zone, `UTC` by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteTz(pub Tz);

impl Default for SiteTz {
    fn default() -> Self {
        SiteTz(Tz::UTC)
    }
}

impl SiteTz {
    /// Parse an IANA name such as `Europe/Berlin`.
    pub fn parse(name: &str) -> Result<Self, String> {
        crate::config::parse_timezone(name).map(SiteTz)
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The UTC instant of local midnight at the start of `day`. A midnight that does not exist
    /// (a DST gap) is taken an hour later.
    pub fn day_start_utc(&self, day: NaiveDate) -> NaiveDateTime {
        crate::store::day_start_utc(self.0, day)
    }

    /// Today's date in this zone (by tollgate's clock, `event::now_us`).
    pub fn today(&self) -> NaiveDate {
        chrono::DateTime::from_timestamp_micros(crate::event::now_us())
            .unwrap_or_else(Utc::now)
            .with_timezone(&self.0)
            .date_naive()
    }

    /// The offset from UTC in seconds at the UTC instant `utc`.
    fn offset_at(&self, utc: NaiveDateTime) -> i64 {
        i64::from(
            self.0
                .offset_from_utc_datetime(&utc)
                .fix()
                .local_minus_utc(),
        )
    }

    /// The offset at `start` and the changes of offset in `[start, end)` (found every 15
    /// minutes, then to the second): `(instant, new offset)`.
    fn changes(
        &self,
        start: NaiveDateTime,
        end: NaiveDateTime,
    ) -> (i64, Vec<(NaiveDateTime, i64)>) {
        let mut changes: Vec<(NaiveDateTime, i64)> = Vec::new();
        let mut t = start;
        let mut cur = self.offset_at(start);
        let first = cur;
        let step = Duration::minutes(15);
        while t < end {
            let next = (t + step).min(end);
            let off = self.offset_at(next);
            if off != cur {
                // Narrow the change down to the second.
                let (mut lo, mut hi) = (t, next);
                while hi - lo > Duration::seconds(1) {
                    let mid = lo + (hi - lo) / 2;
                    if self.offset_at(mid) == cur {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                changes.push((hi, off));
                cur = off;
            }
            t = next;
        }
        (first, changes)
    }

    /// Whether every UTC hour in `[start, end)` lies within one local hour: the offsets there
    /// are whole hours and change only on the hour. Then counts per UTC hour
    /// (`pageview_hours`) add up to local hours and days exactly.
    pub fn whole_hours(&self, start: NaiveDateTime, end: NaiveDateTime) -> bool {
        use chrono::Timelike;
        let (first, changes) = self.changes(start, end);
        first % 3600 == 0
            && changes
                .iter()
                .all(|(at, off)| off % 3600 == 0 && at.minute() == 0 && at.second() == 0)
    }

    /// A SQL expression for `col` in local time, exact for instants in `[start, end)`. Offset
    /// changes in that span become a CASE. The literals are generated here, never taken from a
    /// request.
    pub fn local_sql(&self, col: &str, start: NaiveDateTime, end: NaiveDateTime) -> String {
        let (first, changes) = self.changes(start, end);
        if changes.is_empty() {
            return if first == 0 {
                col.to_string()
            } else {
                format!("({col} + to_seconds({first}))")
            };
        }
        let mut case = String::from("CASE");
        let mut prev = first;
        for (at, off) in &changes {
            case.push_str(&format!(
                " WHEN {col} < TIMESTAMP '{}' THEN {prev}",
                at.format("%Y-%m-%d %H:%M:%S")
            ));
            prev = *off;
        }
        case.push_str(&format!(" ELSE {prev} END"));
        format!("({col} + to_seconds({case}))")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn utc_is_the_column_itself() {
        let tz = SiteTz::default();
        assert_eq!(
            tz.local_sql("ts", dt("2026-01-01 00:00:00"), dt("2026-12-31 00:00:00")),
            "ts"
        );
    }

    #[test]
    fn berlin_changes_offset_at_the_dst_instants() {
        let tz = SiteTz::parse("Europe/Berlin").unwrap();
        let sql = tz.local_sql("ts", dt("2026-01-01 00:00:00"), dt("2026-12-31 00:00:00"));
        assert_eq!(
            sql,
            "(ts + to_seconds(CASE WHEN ts < TIMESTAMP '2026-03-29 01:00:00' THEN 3600 \
             WHEN ts < TIMESTAMP '2026-10-25 01:00:00' THEN 7200 ELSE 3600 END))"
        );
        let kolkata = SiteTz::parse("Asia/Kolkata").unwrap();
        assert_eq!(
            kolkata.local_sql("ts", dt("2026-01-01 00:00:00"), dt("2026-02-01 00:00:00")),
            "(ts + to_seconds(19800))"
        );
    }

    /// Counts per UTC hour add up to local hours where offsets are whole hours that change on
    /// the hour, not in India (+5:30) or on Lord Howe Island (a half-hour DST step).
    #[test]
    fn whole_hour_zones() {
        let (a, b) = (dt("2026-01-01 00:00:00"), dt("2026-12-31 00:00:00"));
        for (name, whole) in [
            ("UTC", true),
            ("Europe/Berlin", true),
            ("America/New_York", true),
            ("Asia/Kolkata", false),
            ("Australia/Lord_Howe", false),
        ] {
            assert_eq!(
                SiteTz::parse(name).unwrap().whole_hours(a, b),
                whole,
                "{name}"
            );
        }
    }

    #[test]
    fn local_midnight_in_utc() {
        let tz = SiteTz::parse("America/New_York").unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        assert_eq!(tz.day_start_utc(d), dt("2026-07-01 04:00:00"));
        assert!(SiteTz::parse("Mars/Olympus").is_err());
    }
}
