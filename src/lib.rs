//! # tollgate
//!
//! First-party web analytics deployed as a reverse proxy. Put tollgate in front of an existing
//! site and every page view and API call becomes an event in an embedded DuckDB store, tied to
//! a first-party visitor cookie, with no client script.
//!
//! ```text
//! tollgate serve --upstream http://127.0.0.1:3000     # proxy on :8080, admin on 127.0.0.1:9080
//! tollgate query "SELECT name, count(*) FROM events GROUP BY 1"
//! ```
//!
//! Start with [`app::run`], which wires the planes together; `ARCHITECTURE.md` has the data
//! flow, and `docs/` the schema and configuration.
//!
//! # Layout
//!
//! | module | what it is |
//! |---|---|
//! | [`app`] | builds the proxy workers, pipeline and admin server; runs and shuts down |
//! | [`config`] | file, env and CLI configuration, validated into [`config::Settings`] |
//! | [`proxy`] | the data plane on hyper: [`proxy::Worker`], [`proxy::identity`], [`proxy::consent`], [`proxy::capture`], [`proxy::forwarded`], [`proxy::upstream`] |
//! | [`enrich`] | the pipeline's enrichment: campaign, channel, device, bot, geo, privacy |
//! | [`event`] | the [`event::Event`] row and its schema version |
//! | [`ingest`] | custom events from clients: JSON → events, and the durable submit path |
//! | [`pipeline`] | bounded queue and the writer thread (enrich, then group commit) |
//! | [`store`] | DuckDB schema, appends, guarded read-only queries |
//! | [`sinks`] | shipping the store to ClickHouse, PostgreSQL and files, at least once, by `seq`; retention |
//! | [`admin`] | the control plane: dashboard, reports and query API, health, metrics, auth |
//! | [`reports`] | the reports (overview, pages, funnels, attribution, …) as SQL over the store |
//! | [`metrics`] | Prometheus counters |
//! | [`priority`] | analytics threads behind the proxy's on the CPU (nice) |
//! | [`client`] | `tollgate query` and `tollgate forget`, direct or through a running server |
//! | [`demo`] | the demo shop behind `tollgate demo` |
//! | [`generate`] | the synthetic dataset behind `tollgate generate` (tests, benchmarks) |

pub mod admin;
pub mod app;
pub mod client;
pub mod config;
pub mod demo;
pub mod enrich;
pub mod event;
pub mod generate;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod priority;
pub mod proxy;
pub mod reports;
pub mod sinks;
pub mod store;
