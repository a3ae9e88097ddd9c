//! Every report, defined once: its URL name, what it answers, its own parameters with their
//! docs, how they are parsed, and how it runs.
//!
//! [`REPORTS`] is the one list. `GET /api/reports/{name}` runs from it, `GET /api/reports`
//! and the dashboard (which gets it embedded in its page) read it as [`catalog`], and a test
//! holds `docs/api.md` to it.

use super::attribution::AttributionParams;
use super::filter::{
    prop_path, session_dimensions, Extra, Filters, Scope, Window, DIMENSIONS, NONE,
};
use super::funnel::parse_steps;
use super::funnel::FunnelParams;
use super::traffic::Interval;
use super::usage::Breakdown;
use super::{attribution, funnel, retention, traffic, usage, ReportError};
use duckdb::Connection;
use serde::Serialize;
use serde_json::Value;

/// One of a report's own parameters (the filters are every report's).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Param {
    pub name: &'static str,
    pub doc: &'static str,
}

/// A report: a type with its parameters and a typed answer.
pub trait Report {
    /// The URL name, `/api/reports/{NAME}`.
    const NAME: &'static str;
    /// Its name for people: the dashboard's tab.
    const TITLE: &'static str;
    /// What it answers, in a line.
    const DOC: &'static str;
    /// Its own parameters.
    const PARAMS: &'static [Param];
    type Params;
    type Answer: Serialize;
    /// The own parameters of a request, checked; a bad one is named in the error.
    fn params(x: &Extra) -> Result<Self::Params, ReportError>;
    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError>;
}

/// A report in [`REPORTS`]: its definition, and its run as JSON.
#[derive(Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub title: &'static str,
    pub doc: &'static str,
    pub params: &'static [Param],
    run: fn(&Connection, &Filters, &Extra) -> Result<Value, ReportError>,
}

impl Def {
    pub fn run(&self, conn: &Connection, f: &Filters, x: &Extra) -> Result<Value, ReportError> {
        (self.run)(conn, f, x)
    }

    /// The own parameters' names.
    pub fn param_names(&self) -> Vec<&'static str> {
        self.params.iter().map(|p| p.name).collect()
    }
}

const fn def<R: Report>() -> Def {
    Def {
        name: R::NAME,
        title: R::TITLE,
        doc: R::DOC,
        params: R::PARAMS,
        run: run_json::<R>,
    }
}

fn run_json<R: Report>(conn: &Connection, f: &Filters, x: &Extra) -> Result<Value, ReportError> {
    let answer = R::run(conn, f, R::params(x)?)?;
    serde_json::to_value(answer).map_err(|e| ReportError::Internal(e.to_string()))
}

/// Every report, in the dashboard's order.
pub const REPORTS: &[Def] = &[
    def::<Overview>(),
    def::<Pages>(),
    def::<Acquisition>(),
    def::<Audience>(),
    def::<Api>(),
    def::<Events>(),
    def::<Funnel>(),
    def::<Attribution>(),
    def::<Retention>(),
    def::<Realtime>(),
];

/// The report named `name`.
pub fn find(name: &str) -> Option<&'static Def> {
    REPORTS.iter().find(|d| d.name == name)
}

/// The reports, their parameters and the dimensions, as JSON: what `GET /api/reports` answers
/// and the dashboard is built from.
pub fn catalog() -> Value {
    let reports: Vec<Value> = REPORTS
        .iter()
        .map(|d| serde_json::json!({ "name": d.name, "title": d.title, "doc": d.doc, "params": d.params }))
        .collect();
    let dimensions: Vec<Value> = DIMENSIONS
        .iter()
        .map(|(name, scope)| {
            let scope = match scope {
                Scope::Event => "event",
                Scope::Session => "session",
            };
            serde_json::json!({ "name": name, "scope": scope })
        })
        .collect();
    serde_json::json!({
        "reports": reports,
        "dimensions": dimensions,
        "audience": traffic::AUDIENCE,
        "none": NONE,
    })
}

fn invalid(m: impl Into<String>) -> ReportError {
    ReportError::Invalid(m.into())
}

/// A report without parameters of its own:
/// `plain!(Type, "name", "Title", "doc", Answer, function)`.
macro_rules! plain {
    ($report:ident, $name:literal, $title:literal, $doc:literal, $answer:ty, $run:path) => {
        pub struct $report;

        impl Report for $report {
            const NAME: &'static str = $name;
            const TITLE: &'static str = $title;
            const DOC: &'static str = $doc;
            const PARAMS: &'static [Param] = &[];
            type Params = ();
            type Answer = $answer;

            fn params(_: &Extra) -> Result<(), ReportError> {
                Ok(())
            }

            fn run(conn: &Connection, f: &Filters, _: ()) -> Result<$answer, ReportError> {
                $run(conn, f)
            }
        }
    };
}

plain!(
    Pages,
    "pages",
    "Pages",
    "top pages, and the pages sessions enter and leave by",
    traffic::Pages,
    traffic::pages
);
plain!(
    Audience,
    "audience",
    "Audience",
    "visitors and page views by device type, browser, OS and country",
    traffic::Tables,
    traffic::audience
);
plain!(
    Api,
    "api",
    "API health",
    "API calls, errors and latency percentiles, in total and per route",
    usage::Api,
    usage::api
);
plain!(
    Retention,
    "retention",
    "Retention",
    "weekly cohorts of people by their first page view",
    retention::Retention,
    retention::run
);
plain!(
    Realtime,
    "realtime",
    "Realtime",
    "the last five minutes: visitors, page views and the pages viewed",
    traffic::Realtime,
    traffic::realtime
);

pub struct Overview;

impl Report for Overview {
    const NAME: &'static str = "overview";
    const TITLE: &'static str = "Overview";
    const DOC: &'static str =
        "visitors, sessions, page views, bounce rate and time, in total and over time";
    const PARAMS: &'static [Param] = &[Param {
        name: "interval",
        doc: "hour or day (default: hour for ranges of 2 days or less)",
    }];
    type Params = Option<Interval>;
    type Answer = traffic::Overview;

    fn params(x: &Extra) -> Result<Option<Interval>, ReportError> {
        match x.get("interval") {
            None => Ok(None),
            Some("hour") => Ok(Some(Interval::Hour)),
            Some("day") => Ok(Some(Interval::Day)),
            Some(other) => Err(invalid(format!("interval={other:?}: expected hour or day"))),
        }
    }

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        traffic::overview(conn, f, p)
    }
}

pub struct Acquisition;

impl Report for Acquisition {
    const NAME: &'static str = "acquisition";
    const TITLE: &'static str = "Acquisition";
    const DOC: &'static str = "visitors and sessions by where each session came from";
    const PARAMS: &'static [Param] = &[Param {
        name: "dimension",
        doc: "session dimensions, repeated or comma-separated, or all (default: channel)",
    }];
    /// The session dimensions asked for, in the list's order.
    type Params = Vec<&'static str>;
    type Answer = traffic::Tables;

    fn params(x: &Extra) -> Result<Vec<&'static str>, ReportError> {
        let all = session_dimensions();
        let mut cols: Vec<&'static str> = Vec::new();
        for d in x.all("dimension").flat_map(|d| d.split(',')).map(str::trim) {
            match d {
                "all" => cols.extend(&all),
                _ => match all.iter().find(|c| **c == d) {
                    Some(c) => cols.push(c),
                    None => {
                        return Err(invalid(format!(
                            "dimension={d:?}: expected all or one of {}",
                            all.join(", ")
                        )))
                    }
                },
            }
        }
        if cols.is_empty() {
            cols.push("channel");
        }
        cols.sort_by_key(|c| all.iter().position(|a| a == c));
        cols.dedup();
        Ok(cols)
    }

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        traffic::acquisition(conn, f, &p)
    }
}

pub struct Events;

impl Report for Events {
    const NAME: &'static str = "events";
    const TITLE: &'static str = "Events";
    const DOC: &'static str =
        "custom events: count and visitors per name, or one event by a property";
    const PARAMS: &'static [Param] = &[
        Param {
            name: "event",
            doc: "with property: the event to break down",
        },
        Param {
            name: "property",
            doc: "with event: the property key to break it down by",
        },
    ];
    type Params = Option<Breakdown>;
    type Answer = usage::Events;

    fn params(x: &Extra) -> Result<Option<Breakdown>, ReportError> {
        match (x.get("event"), x.get("property")) {
            (Some(event), Some(key)) => Ok(Some(Breakdown {
                path: prop_path(key)?,
                event: event.to_string(),
                property: key.to_string(),
            })),
            (None, None) => Ok(None),
            _ => Err(invalid("give both event and property for a breakdown")),
        }
    }

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        usage::events(conn, f, p.as_ref())
    }
}

pub struct Funnel;

impl Report for Funnel {
    const NAME: &'static str = "funnel";
    const TITLE: &'static str = "Funnels";
    const DOC: &'static str = "people through 2 to 8 ordered steps within a conversion window";
    const PARAMS: &'static [Param] = &[
        Param {
            name: "steps",
            doc: "a JSON array of 2 to 8 steps (path patterns or events), required",
        },
        Param {
            name: "window",
            doc: "the conversion window from the first step: 30m, 12h, 1d … (default 1d)",
        },
        Param {
            name: "breakdown",
            doc: "a dimension or prop.<key>",
        },
    ];
    type Params = FunnelParams;
    type Answer = funnel::Funnel;

    fn params(x: &Extra) -> Result<FunnelParams, ReportError> {
        let steps = parse_steps(x.get("steps").ok_or_else(|| invalid("steps is required"))?)?;
        let window = Window::parse(x, "window", "1d")?;
        let breakdown = x.get("breakdown").filter(|b| !b.is_empty());
        if let Some(b) = breakdown {
            funnel::breakdown_expr(b)?;
        }
        Ok(FunnelParams {
            steps,
            window,
            breakdown: breakdown.map(str::to_string),
        })
    }

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        funnel::run(conn, f, &p)
    }
}

pub struct Attribution;

impl Report for Attribution {
    const NAME: &'static str = "attribution";
    const TITLE: &'static str = "Attribution";
    const DOC: &'static str = "first- and last-touch credit for a conversion event";
    const PARAMS: &'static [Param] = &[
        Param {
            name: "event",
            doc: "the conversion event's name, required",
        },
        Param {
            name: "lookback",
            doc: "how far before a conversion touches count: 30m, 12h, 7d … (default 30d)",
        },
        Param {
            name: "by",
            doc: "what takes the credit: channel (default) or another session dimension",
        },
    ];
    type Params = AttributionParams;
    type Answer = attribution::Attribution;

    fn params(x: &Extra) -> Result<AttributionParams, ReportError> {
        let event = x
            .get("event")
            .filter(|e| !e.is_empty())
            .ok_or_else(|| invalid("event (the conversion event's name) is required"))?;
        let lookback = Window::parse(x, "lookback", "30d")?;
        let by = x.get("by").unwrap_or("channel");
        let by = attribution::BY.iter().find(|b| **b == by).ok_or_else(|| {
            invalid(format!(
                "by={by:?}: expected one of {}",
                attribution::BY.join(", ")
            ))
        })?;
        Ok(AttributionParams {
            event: event.to_string(),
            lookback,
            by,
        })
    }

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        attribution::run(conn, f, &p)
    }
}
