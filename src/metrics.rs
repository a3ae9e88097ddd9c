//! Prometheus metrics, served by the admin server at `/metrics`.
//!
//! Hot-path counters are resolved once at start-up, so recording one is a single atomic add.

use crate::event::RequestKind as Kind;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: [IntCounter; 5],
    pub events_captured: IntCounter,
    pub dropped_queue_full: IntCounter,
    pub dropped_store_error: IntCounter,
    pub dropped_enrich_error: IntCounter,
    pub events_written: IntCounter,
    pub batches_failed: IntCounter,
    pub batch_seconds: Histogram,
    pub queue_depth: IntGauge,
    pub queue_bytes: IntGauge,
    pub upstream_connect_errors: IntCounter,
    pub upstream_timeouts: IntCounter,
    inject: IntCounterVec,
    refused: IntCounterVec,
    console: IntCounterVec,
    sinks: SinkVecs,
}

/// The per-sink metric families, labelled by sink name.
struct SinkVecs {
    delivered: IntCounterVec,
    batches: IntCounterVec,
    retries: IntCounterVec,
    dead_letters: IntCounterVec,
    offset: IntGaugeVec,
    lag_events: IntGaugeVec,
    lag_seconds: GaugeVec,
    batch_seconds: HistogramVec,
}

/// One sink's metrics.
#[derive(Clone)]
pub struct SinkMetrics {
    pub delivered: IntCounter,
    pub batches: IntCounter,
    pub retries: IntCounter,
    pub dead_letters: IntCounter,
    pub offset: IntGauge,
    pub lag_events: IntGauge,
    pub lag_seconds: Gauge,
    pub batch_seconds: Histogram,
}

impl SinkVecs {
    fn new() -> Self {
        let l = &["sink"];
        let counter =
            |n: &str, h: &str| IntCounterVec::new(Opts::new(n, h), l).expect("valid metric");
        let gauge = |n: &str, h: &str| IntGaugeVec::new(Opts::new(n, h), l).expect("valid metric");
        SinkVecs {
            delivered: counter(
                "tollgate_sink_events_delivered_total",
                "Events a sink's destination acknowledged (a retried range counts again).",
            ),
            batches: counter("tollgate_sink_batches_total", "Batches a sink shipped."),
            retries: counter(
                "tollgate_sink_retries_total",
                "Failed delivery attempts that will be retried.",
            ),
            dead_letters: counter(
                "tollgate_sink_dead_letters_total",
                "Events the destination refused, moved to sink_dead_letter.",
            ),
            offset: gauge(
                "tollgate_sink_offset",
                "The seq up to which a sink has shipped everything.",
            ),
            lag_events: gauge(
                "tollgate_sink_lag_events",
                "Events committed to the store and not yet shipped.",
            ),
            lag_seconds: GaugeVec::new(
                Opts::new(
                    "tollgate_sink_lag_seconds",
                    "Age of the oldest event not yet shipped (0 when caught up).",
                ),
                l,
            )
            .expect("valid metric"),
            batch_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "tollgate_sink_batch_seconds",
                    "Time to ship one batch, retries included.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                l,
            )
            .expect("valid metric"),
        }
    }

    fn register(&self, registry: &Registry) {
        for c in [
            Box::new(self.delivered.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.batches.clone()),
            Box::new(self.retries.clone()),
            Box::new(self.dead_letters.clone()),
            Box::new(self.offset.clone()),
            Box::new(self.lag_events.clone()),
            Box::new(self.lag_seconds.clone()),
            Box::new(self.batch_seconds.clone()),
        ] {
            registry.register(c).expect("unique");
        }
    }
}

impl Metrics {
    // Long on purpose: it is the flat list of every metric's name, help and labels, read best
    // as one list (like the /metrics page it produces); split, it would only be scattered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests_vec = IntCounterVec::new(
            Opts::new("tollgate_requests_total", "Requests proxied, by kind."),
            &["kind"],
        )
        .expect("valid metric");
        let requests = Kind::ALL.map(|k| requests_vec.with_label_values(&[k.as_str()]));
        let dropped = IntCounterVec::new(
            Opts::new(
                "tollgate_events_dropped_total",
                "Events lost before reaching the store, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "tollgate_upstream_errors_total",
                "Requests that failed at the upstream, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let inject = IntCounterVec::new(
            Opts::new(
                "tollgate_inject_total",
                "HTML pages considered for the tracker, by outcome (injected, injected_csp_nonce, skipped_*).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "tollgate_refused_total",
                "Requests and connections refused to bound their cost, by reason \
                 (connection_cap, header_timeout, collect_rate, collect_items).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let console = IntCounterVec::new(
            Opts::new(
                "tollgate_console_queries_total",
                "SQL console queries, by outcome (ok, truncated, refused, invalid, timeout, \
                 cancelled, busy).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let m = Metrics {
            events_captured: counter(
                "tollgate_events_captured_total",
                "Events queued for the store.",
            ),
            events_written: counter(
                "tollgate_events_written_total",
                "Events committed to the store.",
            ),
            batches_failed: counter(
                "tollgate_store_batches_failed_total",
                "Store transactions that failed.",
            ),
            dropped_queue_full: dropped.with_label_values(&["queue_full"]),
            dropped_store_error: dropped.with_label_values(&["store_error"]),
            dropped_enrich_error: dropped.with_label_values(&["enrich_error"]),
            upstream_connect_errors: upstream_errors.with_label_values(&["connect"]),
            upstream_timeouts: upstream_errors.with_label_values(&["timeout"]),
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "tollgate_store_batch_seconds",
                    "Time to commit one batch to the store.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )
            .expect("valid metric"),
            queue_depth: IntGauge::new(
                "tollgate_queue_depth",
                "Events waiting between the proxy and the store.",
            )
            .expect("valid metric"),
            queue_bytes: IntGauge::new(
                "tollgate_queue_bytes",
                "Bytes the events waiting between the proxy and the store hold.",
            )
            .expect("valid metric"),
            requests,
            inject,
            refused,
            console,
            sinks: SinkVecs::new(),
            registry,
        };
        m.sinks.register(&m.registry);
        for c in [
            Box::new(requests_vec) as Box<dyn prometheus::core::Collector>,
            Box::new(dropped),
            Box::new(upstream_errors),
            Box::new(m.inject.clone()),
            Box::new(m.batch_seconds.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.queue_bytes.clone()),
            Box::new(m.refused.clone()),
            Box::new(m.console.clone()),
        ] {
            m.registry.register(c).expect("unique");
        }
        m
    }

    /// Count one proxied request of `kind`.
    pub fn request(&self, kind: Kind) {
        self.requests[kind as usize].inc();
    }

    /// Count one HTML page's injection outcome.
    pub fn inject(&self, outcome: &str) {
        self.inject.with_label_values(&[outcome]).inc();
    }

    /// Count one request or connection refused for `reason` (see `tollgate_refused_total`).
    pub fn refused(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }

    /// Count one SQL console query by its outcome.
    pub fn console(&self, outcome: &str) {
        self.console.with_label_values(&[outcome]).inc();
    }

    /// The metrics of the sink called `name`.
    pub fn sink(&self, name: &str) -> SinkMetrics {
        let v = &self.sinks;
        SinkMetrics {
            delivered: v.delivered.with_label_values(&[name]),
            batches: v.batches.with_label_values(&[name]),
            retries: v.retries.with_label_values(&[name]),
            dead_letters: v.dead_letters.with_label_values(&[name]),
            offset: v.offset.with_label_values(&[name]),
            lag_events: v.lag_events.with_label_values(&[name]),
            lag_seconds: v.lag_seconds.with_label_values(&[name]),
            batch_seconds: v.batch_seconds.with_label_values(&[name]),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
