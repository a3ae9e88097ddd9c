//! Every report, defined once: its URL name, what it answers, its own parameters with their
//! docs and the params struct serde reads them into, and how it runs.
//!
//! [`REPORTS`] is the one list. `GET /api/reports/{name}` runs from it, `GET /api/reports`
//! and the dashboard (which gets it embedded in its page) read it as [`catalog`], and a test
//! holds `docs/api.md` to it.

use super::attribution::AttributionParams;
use super::filter::{Filters, Scope, DIMENSIONS, NONE};
use super::funnel::FunnelParams;
use super::query::{self, Query};
use super::traffic::{AcquisitionParams, OverviewParams};
use super::usage::EventsParams;
use super::{attribution, funnel, retention, traffic, usage, ReportError};
use duckdb::Connection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
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
    /// Its own parameters, documented: the fields of `Params`, in order.
    const PARAMS: &'static [Param];
    /// Its own parameters, checked: serde reads them from the request's values of its fields'
    /// keys ([`Query`]); a bad one is named in the error.
    type Params: DeserializeOwned;
    type Answer: Serialize;
    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError>;
}

/// The params of a report without parameters of its own.
#[derive(Debug, Deserialize)]
pub struct NoParams {}

/// A report in [`REPORTS`]: its definition, and its run as JSON.
#[derive(Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub title: &'static str,
    pub doc: &'static str,
    pub params: &'static [Param],
    /// The fields of its params struct: the keys it takes.
    fields: fn() -> &'static [&'static str],
    run: fn(&Connection, &Filters, &Query) -> Result<Value, ReportError>,
}

impl Def {
    /// Run it with its own parameters' values, `own`.
    pub fn run(&self, conn: &Connection, f: &Filters, own: &Query) -> Result<Value, ReportError> {
        (self.run)(conn, f, own)
    }

    /// The own parameters' names: the keys its params struct reads (a test holds them to
    /// [`Def::params`]).
    pub fn param_names(&self) -> Vec<&'static str> {
        (self.fields)().to_vec()
    }
}

const fn def<R: Report>() -> Def {
    Def {
        name: R::NAME,
        title: R::TITLE,
        doc: R::DOC,
        params: R::PARAMS,
        fields: query::fields::<R::Params>,
        run: run_json::<R>,
    }
}

fn run_json<R: Report>(conn: &Connection, f: &Filters, own: &Query) -> Result<Value, ReportError> {
    let answer = R::run(conn, f, own.deserialize()?)?;
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
            type Params = NoParams;
            type Answer = $answer;

            fn run(conn: &Connection, f: &Filters, _: NoParams) -> Result<$answer, ReportError> {
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
    type Params = OverviewParams;
    type Answer = traffic::Overview;

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        traffic::overview(conn, f, p.interval)
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
    type Params = AcquisitionParams;
    type Answer = traffic::Tables;

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        traffic::acquisition(conn, f, &p.dimension)
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
    type Params = EventsParams;
    type Answer = usage::Events;

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        usage::events(conn, f, p.breakdown.as_ref())
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

    fn run(conn: &Connection, f: &Filters, p: Self::Params) -> Result<Self::Answer, ReportError> {
        attribution::run(conn, f, &p)
    }
}
