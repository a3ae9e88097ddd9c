//! The configuration file as serde types: every key, its default, and its meaning.
//!
//! Values from a closed set (a files sink's `format`, `privacy.ip`, sizes such as
//! `store.memory_limit`) are read as text here and become their types in `settings`, section
//! by section: a serde enum would stop the whole file at its first bad value, and `check`
//! reports every problem at once.
//!
//! `config/tollgate.toml` documents the same keys for people; keep the two in step.

use serde::Deserialize;

/// The whole `tollgate.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Listeners, data directory and process settings.
    pub server: ServerSection,
    /// The site tollgate sits in front of.
    pub upstream: UpstreamSection,
    /// Cookies and headers that identify visitors, sessions and requests.
    pub identity: IdentitySection,
    /// What becomes an event, and how it is named.
    pub capture: CaptureSection,
    /// The queue between the proxy and the store.
    pub pipeline: PipelineSection,
    /// The site id written into every event.
    pub site: SiteSection,
    /// Consent, Do-Not-Track, cookieless mode, IP handling and redaction.
    pub privacy: PrivacySection,
    /// Device, bot, channel and geo enrichment.
    pub enrich: EnrichSection,
    /// Custom events: the browser collect endpoint.
    pub ingest: IngestSection,
    /// The tracker script injected into HTML pages (off by default).
    pub inject: InjectSection,
    /// The embedded store: retention, DuckDB's memory limit and threads.
    pub store: StoreSection,
    /// The read-only SQL console (`POST /api/query`, `tollgate query`): its limits.
    pub console: ConsoleSection,
    /// Where events are shipped: `[[sinks]]` tables, one per destination.
    pub sinks: Vec<SinkSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Days of events kept in the local store; 0 keeps them forever. An event is deleted only
    /// once every configured sink has shipped it.
    pub retention_days: u32,
    /// Seconds between retention passes.
    pub prune_interval_secs: u64,
    /// Most memory DuckDB's buffer manager holds (cached blocks of the store and the working
    /// memory of queries), as `<n>B`, `<n>KiB`, `<n>MiB` or `<n>GiB`. A query that needs more
    /// spills to `<data_dir>/tollgate.duckdb.tmp`. DuckDB's own default is 80 % of RAM.
    pub memory_limit: String,
    /// What DuckDB may keep while no report, console query or deletion runs (the writer's and
    /// the sinks' share), as a size like `memory_limit`; a larger one is `memory_limit`. A report
    /// raises the limit to `memory_limit` while it runs, and for 30 s after the last one;
    /// then the cached blocks past this are given back.
    pub idle_memory_limit: String,
    /// DuckDB's worker threads, for reports and queries (writes use one); 0: one per core.
    pub threads: usize,
    /// Write-ahead log DuckDB lets grow before it checkpoints (compresses the newest rows into
    /// the file), as a size like `memory_limit`. Larger: less writer CPU per event, more log to
    /// replay after a crash. DuckDB's own default is 16MiB.
    pub checkpoint_threshold: String,
    /// Days a sender's event key (a `messageId`, an `event_id`, a CSV row's content) is kept:
    /// a resend within them is not written twice. Events whose id tollgate minted (proxied
    /// requests, API events without a key) are not checked.
    pub dedup_days: u32,
    /// Most sender keys kept, the newest: within `dedup_days`, a flood of keyed events cannot
    /// make the keys (held in memory, about 60 bytes each) grow without bound.
    pub dedup_max_keys: usize,
}

/// `store.memory_limit` by default, in MiB. DuckDB's own default is 80 % of RAM, and its
/// buffer manager evicts only under its limit: a store being written keeps the blocks it wrote
/// cached, about 6.5 MiB per 100k events (BENCHMARKS.md, issue 16). The limit is what a
/// report-shaped query (distinct visitors per path) over 100M rows needs: it failed with an
/// out-of-memory error at 128 MiB and ran in 18 s at 512 MiB (`tests/store_memory.rs`).
/// Queries that need more than the limit spill to disk where DuckDB can, and fail where it
/// cannot (large `count(DISTINCT …)`).
pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 512;

/// `store.idle_memory_limit` by default, in MiB: what DuckDB may hold while only the writer and
/// the sinks use it. At 10k proxied requests/s tollgate's RSS stayed at 98-124 MiB with it,
/// flat, against 205 MiB and growing under the full limit; at 32 MiB (and the 64 MiB
/// checkpoint threshold) commits began to run out of memory (they then borrow the full limit
/// and are retried) (BENCHMARKS.md, issue 16).
pub const DEFAULT_IDLE_MEMORY_LIMIT_MIB: u64 = 48;

/// `store.threads` by default (0: one per core, DuckDB's default).
pub const DEFAULT_THREADS: usize = 0;

/// `store.checkpoint_threshold` by default, in MiB: how much write-ahead log DuckDB lets grow
/// before it checkpoints (writes the appended rows into the file, compressed). DuckDB's own
/// default is 16 MiB, which at 30k events/s is a checkpoint a second, each compressing the
/// table's last row group again: at saturation the checkpoints took about a third of the
/// writer's CPU and the queue overflowed. At 64 MiB the writer costs about a quarter less per
/// event and keeps up; the price is up to that much more log to replay after a crash and more
/// of the newest rows held uncompressed in memory (BENCHMARKS.md, issue 16).
pub const DEFAULT_CHECKPOINT_THRESHOLD_MIB: u64 = 64;

/// `store.dedup_days` by default. Segment keeps message ids for at least a day; a week also
/// covers a client that retries over a weekend and a CSV file imported twice in one week. The
/// keys are held in memory, and bounded in count too ([`DEFAULT_DEDUP_MAX_KEYS`]).
pub const DEFAULT_DEDUP_DAYS: u32 = 7;

/// `store.dedup_max_keys` by default: a week of 140k keyed events a day. At the cap the keys
/// take about 60 MiB (a hash set of 16-byte ids and a queue of them by age, at their
/// allocations' sizes for a million).
pub const DEFAULT_DEDUP_MAX_KEYS: usize = 1_000_000;

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            retention_days: 0,
            prune_interval_secs: 3600,
            memory_limit: format!("{}MiB", DEFAULT_MEMORY_LIMIT_MIB),
            idle_memory_limit: format!("{}MiB", DEFAULT_IDLE_MEMORY_LIMIT_MIB),
            threads: DEFAULT_THREADS,
            checkpoint_threshold: format!("{}MiB", DEFAULT_CHECKPOINT_THRESHOLD_MIB),
            dedup_days: DEFAULT_DEDUP_DAYS,
            dedup_max_keys: DEFAULT_DEDUP_MAX_KEYS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// Longest a console query may run, in seconds; it is interrupted then (and as soon as its
    /// client goes away).
    pub timeout_secs: u64,
    /// Most rows a query returns; the answer says `truncated` when there were more.
    pub max_rows: usize,
    /// Most bytes of JSON a query returns, counted while its rows stream; the answer says
    /// `truncated` when there were more.
    pub max_bytes: usize,
    /// Console queries running at once; more are answered 429 at once.
    pub max_concurrent: usize,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        Self {
            timeout_secs: 30,
            max_rows: 10_000,
            max_bytes: 16 * 1024 * 1024,
            max_concurrent: 2,
        }
    }
}

/// One `[[sinks]]` table: `type` says which destination it is, and so which keys it takes. A
/// key of another type (`dir` on a ClickHouse sink) is refused when the table is read.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(tag = "type")]
pub enum SinkSection {
    /// `type = "clickhouse"`: `url` is ClickHouse's HTTP interface, `http://host:8123` (user and
    /// password may be in the URL); `table` may be `database.table`.
    #[serde(rename = "clickhouse")]
    ClickHouse(TableSink),
    /// `type = "postgres"`: `url` is `postgres://user:password@host:5432/db`; `table` may be
    /// `schema.table`.
    #[serde(rename = "postgres")]
    Postgres(TableSink),
    /// `type = "files"`.
    #[serde(rename = "files")]
    Files(FilesSink),
    /// A table that could not be read (its problems are reported); it holds the place, so that
    /// the sinks after it keep their `sinks[i]` in messages.
    #[serde(skip)]
    Unreadable,
}

/// The keys every sink takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(default)]
pub struct SinkCommon {
    /// A name for offsets, metrics and `tollgate sinks`; defaults to the type. Unique.
    pub name: String,
    /// Most events per batch. Default 10000.
    pub batch_size: Option<usize>,
    /// Longest an event waits for its batch to fill, in milliseconds. Default 1000.
    pub batch_age_ms: Option<u64>,
    /// First retry delay in milliseconds; doubled on each failure, with jitter. Default 500.
    pub retry_initial_ms: Option<u64>,
    /// Longest retry delay in milliseconds. Default 30000.
    pub retry_max_ms: Option<u64>,
    /// Timeout of one delivery attempt, in seconds. Default 30.
    pub timeout_secs: Option<u64>,
}

/// A ClickHouse or PostgreSQL sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct TableSink {
    /// The database's URL (see the variants of [`SinkSection`]).
    pub url: String,
    /// The table, optionally `database.table` / `schema.table`; created when missing. Default
    /// `events`.
    pub table: String,
    /// Name, batching and retries.
    #[serde(flatten)]
    pub common: SinkCommon,
}

/// A sink that writes files.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct FilesSink {
    /// The output directory. Required.
    pub dir: String,
    /// `parquet` (zstd) or `ndjson` (gzip). Default `parquet`.
    pub format: String,
    /// Name, batching and retries.
    #[serde(flatten)]
    pub common: SinkCommon,
}

/// The values of `type` in a `[[sinks]]` table, with the keys each takes besides `type`, in
/// the order the documentation gives them. They say what a table may hold before serde reads
/// it, so that every wrong key of every sink is named at once, with the type it belongs to; a
/// test keeps them equal to the fields above.
pub const SINK_KEYS: &[(&str, &[&str])] = &[
    ("clickhouse", TABLE_SINK_KEYS),
    ("postgres", TABLE_SINK_KEYS),
    ("files", FILES_SINK_KEYS),
];

const TABLE_SINK_KEYS: &[&str] = &[
    "name",
    "url",
    "table",
    "batch_size",
    "batch_age_ms",
    "retry_initial_ms",
    "retry_max_ms",
    "timeout_secs",
];

const FILES_SINK_KEYS: &[&str] = &[
    "name",
    "dir",
    "format",
    "batch_size",
    "batch_age_ms",
    "retry_initial_ms",
    "retry_max_ms",
    "timeout_secs",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Proxy listener, `host:port`.
    pub listen: String,
    /// Admin listener (dashboard, API, metrics, health), `host:port`. Keep it on loopback, or
    /// set `admin_token`.
    pub admin: String,
    /// The token the dashboard and the admin API ask for (`Authorization: Bearer <token>`, or
    /// the dashboard's sign-in, which then holds a session cookie). Required when `admin` is
    /// not a loopback address; empty means no token on loopback. `/healthz`, `/readyz` and
    /// the Segment `/v1/*` endpoints (which have write keys) never need it. Also
    /// `TOLLGATE_SERVER_ADMIN_TOKEN`.
    pub admin_token: String,
    /// Host names (or IP addresses) the admin listener answers to besides loopback
    /// (`localhost`, `127.0.0.1`, `[::1]`) and the address a connection arrived on, any port:
    /// the names the dashboard is opened with and SDKs or scripts reach it by, e.g.
    /// `["analytics.example.com"]`. Any other `Host` gets a 421, so a web page cannot reach the
    /// admin API by DNS rebinding.
    #[serde(deserialize_with = "one_or_many")]
    pub admin_hosts: Vec<String>,
    /// Lifetime of a dashboard sign-in (the session cookie), in minutes.
    pub admin_session_mins: u64,
    /// Most connections the admin listener serves at once; more wait to be accepted.
    pub admin_max_connections: usize,
    /// Seconds a client gets to send a request's headers (and an idle keep-alive connection
    /// to start its next request) before the admin listener closes the connection.
    pub admin_header_timeout_secs: u64,
    /// Directory that holds `tollgate.duckdb`.
    pub data_dir: String,
    /// Proxy worker threads; 0 means one per core.
    pub threads: usize,
    /// No longer has an effect (each proxy thread is a worker of its own since issue 16); still
    /// accepted so that older config files load, with a warning when set.
    pub work_stealing: bool,
    /// Idle keep-alive timeout for client connections, in seconds.
    pub keepalive_secs: u64,
    /// Requests served on one client connection before it is closed; 0 means no limit.
    pub keepalive_requests: u32,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Clients whose `X-Forwarded-*` headers are trusted, as IPs or CIDRs. On the admin
    /// listener too: `X-Forwarded-Host` is checked as the `Host`, `X-Forwarded-Proto: https`
    /// makes the session cookie `Secure`, and `X-Forwarded-For` names the client whose failed
    /// sign-ins are counted.
    #[serde(deserialize_with = "one_or_many")]
    pub trusted_proxies: Vec<String>,
    /// Longest a client may take to send a request's header, in seconds, from its first byte
    /// (on a new connection, from the connect). Slower clients are disconnected.
    pub header_timeout_secs: u64,
    /// Client connections open at once on the proxy listener; more are closed at once.
    pub max_connections: usize,
}

/// A list of strings that may also be written as one string
/// (`TOLLGATE_SERVER_ADMIN_HOSTS=analytics.example.com`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            admin: "127.0.0.1:9080".into(),
            admin_token: String::new(),
            admin_hosts: Vec::new(),
            admin_session_mins: 720,
            admin_max_connections: 256,
            admin_header_timeout_secs: 10,
            data_dir: "./tollgate-data".into(),
            threads: 0,
            work_stealing: false,
            keepalive_secs: 60,
            keepalive_requests: 1000,
            shutdown_grace_secs: 1,
            trusted_proxies: Vec::new(),
            header_timeout_secs: 10,
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSection {
    /// The existing site, `http://host:port` or `https://host`. Required.
    pub url: String,
    /// Send the client's `Host` header upstream (true), or the upstream URL's authority (false).
    pub preserve_host: bool,
    /// TCP (and then TLS) connect timeout, in milliseconds. An upstream that does not accept in
    /// time answers 504; one that refuses, 502 at once.
    pub connect_timeout_ms: u64,
    /// Longest wait for the upstream's response header (from the request being handed to it),
    /// and for each read of its body, in milliseconds. A hung upstream answers 504.
    pub read_timeout_ms: u64,
    /// Longest wait for the upstream to accept a write, in milliseconds.
    pub write_timeout_ms: u64,
    /// How long an idle pooled upstream connection is kept, in seconds (at most `pool_size` per
    /// proxy thread).
    pub idle_timeout_secs: u64,
    /// Idle upstream connections kept in the pool.
    pub pool_size: usize,
    /// Verify the upstream's TLS certificate against the system roots.
    pub verify_tls: bool,
}

impl Default for UpstreamSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            preserve_host: true,
            connect_timeout_ms: 1000,
            read_timeout_ms: 60_000,
            write_timeout_ms: 60_000,
            idle_timeout_secs: 60,
            pool_size: 128,
            verify_tls: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySection {
    /// Name of the visitor cookie (UUIDv4, 400 days).
    pub visitor_cookie: String,
    /// Name of the session cookie (sliding expiry).
    pub session_cookie: String,
    /// Inactivity after which a new session starts, in minutes.
    pub session_timeout_mins: u64,
    /// Lifetime of the visitor cookie, in days (browsers cap it at 400).
    pub visitor_max_age_days: u64,
    /// `Domain` attribute for both cookies; empty means host-only.
    pub cookie_domain: String,
    /// Header carrying the request id upstream and back to the client.
    pub request_id_header: String,
    /// Header carrying the visitor id upstream.
    pub visitor_id_header: String,
    /// Header carrying the session id upstream.
    pub session_id_header: String,
    /// Optional incoming header with a frontend's own visitor UUID; empty disables it.
    pub incoming_visitor_header: String,
    /// Response header with which the backend ties the visitor to its own user id. Stripped
    /// before the client sees it.
    pub user_header: String,
    /// Response header (repeatable) with a custom event for the current visitor, as JSON
    /// (`{"name": …, "props": {…}}`). Stripped before the client sees it.
    pub event_header: String,
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            visitor_cookie: "tg_vid".into(),
            session_cookie: "tg_sid".into(),
            session_timeout_mins: 30,
            visitor_max_age_days: 400,
            cookie_domain: String::new(),
            request_id_header: "X-Request-ID".into(),
            visitor_id_header: "X-Visitor-ID".into(),
            session_id_header: "X-Session-ID".into(),
            incoming_visitor_header: String::new(),
            user_header: "X-Tollgate-User".into(),
            event_header: "X-Tollgate-Event".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Turn request capture off to run tollgate as a plain proxy (identity headers stay on).
    pub enabled: bool,
    /// Store static assets (CSS, JS, images, fonts) as `asset` events; they are always counted.
    pub assets: bool,
    /// Path prefixes whose requests are `api_call`s.
    pub api_prefixes: Vec<String>,
    /// Rules that name events; the first match wins.
    pub rules: Vec<RuleSection>,
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            enabled: true,
            assets: false,
            api_prefixes: vec!["/api/".into(), "/graphql".into()],
            rules: Vec::new(),
        }
    }
}

/// Query parameters redacted unless `privacy.redact_params` says otherwise.
pub const DEFAULT_REDACT_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "key",
    "auth",
    "authorization",
    "code",
    "state",
    "jwt",
    "session",
    "sessionid",
    "sig",
    "signature",
    "email",
    "e-mail",
    "mail",
    "phone",
    "tel",
    "mobile",
    "ssn",
    "card",
    "cc",
    "cvv",
    "iban",
];

/// `[[capture.rules]]`: a request that matches every given field becomes an event called `name`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSection {
    /// Event name to record, e.g. `register`.
    pub name: String,
    /// HTTP method, e.g. `POST`; empty matches any.
    pub method: String,
    /// Path: exact (`/api/register`), a prefix ending in `*` (`/checkout/*`), or a route with
    /// `:param` segments (`/api/orders/:id`). Empty matches any.
    pub path: String,
    /// Status: `200`, a class `2xx`, or a range `200-299`. Empty matches any.
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Events the queue between proxy and store holds; when full, new events are dropped and
    /// counted, and requests are never slowed.
    pub queue_capacity: usize,
    /// Events per store transaction at most. The default is one of DuckDB's row groups
    /// (122,880): a commit of at least that many is written to the file compressed, not
    /// through DuckDB's write-ahead log.
    pub batch_size: usize,
    /// Longest an event waits before its batch is committed, in milliseconds, under light
    /// traffic. With `bulk_wait_ms`, the loss bound on `kill -9`.
    pub flush_interval_ms: u64,
    /// Under sustained traffic, how long the writer may hold proxy events back to commit
    /// `batch_size` of them at once, in milliseconds: it waits when the rate so far would fill
    /// the batch within this time. 0 commits every `flush_interval_ms`, as under light
    /// traffic. Reports see proxy events this much later at most.
    pub bulk_wait_ms: u64,
    /// Bytes the queue holds at most (the events' text), whatever their count; when full, new
    /// events are dropped and counted, as for `queue_capacity`.
    pub queue_max_bytes: usize,
    /// Nice value (0-19) of the analytics threads: the writer, DuckDB's threads, the sinks. 0
    /// (the default) shares the CPU evenly with the proxy, so the writer keeps up even at
    /// saturation. Higher puts analytics behind the site: under contention responses come
    /// first (a lower p99), and a sustained overload fills the queue, whose overflow is dropped
    /// and counted (BENCHMARKS.md, issue 16).
    pub background_nice: i32,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_size: 122_880,
            flush_interval_ms: 1_000,
            bulk_wait_ms: 15_000,
            queue_max_bytes: 32 * 1024 * 1024,
            background_nice: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteSection {
    /// Site id stored in every event's `site` column.
    pub id: String,
    /// IANA time zone of the reports' dates and hour/day buckets, e.g. `Europe/Berlin`.
    pub timezone: String,
}

impl Default for SiteSection {
    fn default() -> Self {
        Self {
            id: "default".into(),
            timezone: "UTC".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySection {
    /// What is stored of the client IP: `keep`, `truncate` (to `ipv4_prefix`/`ipv6_prefix`
    /// bits) or `drop`. Geo lookup always sees the full address first.
    pub ip: String,
    /// Bits of an IPv4 address kept by `ip = "truncate"`.
    pub ipv4_prefix: u8,
    /// Bits of an IPv6 address kept by `ip = "truncate"`.
    pub ipv6_prefix: u8,
    /// Treat `Sec-GPC: 1` as an opt-out: no cookies, no identifiers, no IP; the visit is still
    /// counted anonymously.
    pub honor_gpc: bool,
    /// Treat `DNT: 1` the same way.
    pub honor_dnt: bool,
    /// Run cookieless until this cookie is present: `name` (any value) or `name=value`.
    /// Empty: no consent gating.
    pub consent_cookie: String,
    /// Never set cookies: every visitor is a daily-rotating salted hash of IP, UA and site.
    pub cookieless: bool,
    /// Query parameter names whose values are stored as `[redacted]` (case-insensitive).
    pub redact_params: Vec<String>,
    /// Also redact values that look like e-mail addresses or phone numbers, wherever they
    /// appear in paths, query strings and referrers.
    pub redact_values: bool,
}

impl Default for PrivacySection {
    fn default() -> Self {
        Self {
            ip: "truncate".into(),
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            honor_gpc: true,
            honor_dnt: true,
            consent_cookie: String::new(),
            cookieless: false,
            redact_params: DEFAULT_REDACT_PARAMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            redact_values: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichSection {
    /// A MaxMind (GeoLite2/GeoIP2) or DB-IP `.mmdb`, City or Country edition, for `country`,
    /// `region` and `city`. Empty: no geo.
    pub geo_db: String,
    /// Networks whose requests are bots (monitoring, your own crawlers), as IPs or CIDRs.
    pub bot_networks: Vec<String>,
    /// Domains that are this site, besides the request's own host: a referrer on one of them
    /// (or a subdomain) is internal navigation, not a traffic source.
    pub site_domains: Vec<String>,
    /// Distinct user agents whose parse is cached.
    pub ua_cache_size: usize,
}

impl Default for EnrichSection {
    fn default() -> Self {
        Self {
            geo_db: String::new(),
            bot_networks: Vec::new(),
            site_domains: Vec::new(),
            ua_cache_size: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectSection {
    /// Insert `<script src="<collect_prefix>/t.js" defer>` into HTML pages, so the browser
    /// reports single-page-app navigations, clicks, form submits and engagement.
    pub enabled: bool,
    /// Paths never injected: exact (`/checkout`), prefix (`/admin/*`) or route
    /// (`/orders/:id`). An upstream can also opt a page out with `X-Tollgate-Inject: off`.
    pub exclude_paths: Vec<String>,
    /// The tracker also sends scroll depth and engaged time per page (`engagement` events).
    pub engagement: bool,
    /// gzip level for encoding injected pages, 1-9. 1, as nginx's default, is zlib-ng's fast
    /// path (pages about 30 % larger than nginx's level 1); 2 matches nginx's size at about
    /// 10 % less throughput, 5 costs about 40 % of it (BENCHMARKS.md). Only gzip: every
    /// browser takes it.
    pub compression_level: u32,
}

impl Default for InjectSection {
    fn default() -> Self {
        Self {
            enabled: false,
            exclude_paths: Vec::new(),
            engagement: true,
            compression_level: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Path prefix of tollgate's own endpoints on the proxy listener; `<prefix>/e` takes browser
    /// events. Requests under it are answered by tollgate and never reach the upstream.
    pub collect_prefix: String,
    /// Largest body `<prefix>/e` accepts, in bytes (`navigator.sendBeacon` allows 64 KiB).
    pub collect_max_bytes: usize,
    /// Most events in one `<prefix>/e` request (the tracker sends one).
    pub collect_max_items: usize,
    /// Events per second one client IP may send to `<prefix>/e`, on average; 0 means no limit.
    /// More are answered 429.
    pub collect_rate: u32,
    /// Events one client IP may send to `<prefix>/e` in a burst, above `collect_rate`.
    pub collect_burst: u32,
    /// Most seconds a browser event's `ts` may be from now, either way.
    pub collect_max_skew_secs: u64,
    /// Most events in one `POST /api/events` request.
    pub api_max_items: usize,
    /// CSV import column mapping: file column → field (`"Order Date" = "timestamp"`).
    /// `tollgate import --map` adds to it and wins.
    pub import_map: std::collections::BTreeMap<String, String>,
    /// Segment API write keys (`/v1/*` on the admin listener). Also `TOLLGATE_WRITE_KEYS`
    /// (comma-separated). None: the Segment API answers 401 and says how to set one.
    pub write_keys: Vec<String>,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            collect_prefix: "/_tollgate".into(),
            collect_max_bytes: 64 * 1024,
            collect_max_items: 25,
            collect_rate: 20,
            collect_burst: 100,
            collect_max_skew_secs: 600,
            api_max_items: 10_000,
            import_map: Default::default(),
            write_keys: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`SINK_KEYS`] names exactly the keys each sink type's struct takes.
    #[test]
    fn sink_keys_match_the_sink_types() {
        let common = SinkCommon {
            name: "n".into(),
            batch_size: Some(1),
            batch_age_ms: Some(1),
            retry_initial_ms: Some(1),
            retry_max_ms: Some(1),
            timeout_secs: Some(1),
        };
        let table = TableSink {
            url: "u".into(),
            table: "t".into(),
            common: common.clone(),
        };
        let files = FilesSink {
            dir: "d".into(),
            format: "f".into(),
            common,
        };
        let all = [
            SinkSection::ClickHouse(table.clone()),
            SinkSection::Postgres(table),
            SinkSection::Files(files),
        ];
        assert_eq!(all.len(), SINK_KEYS.len());
        for sink in all {
            let value = toml::Value::try_from(&sink).unwrap();
            let kind = value["type"].as_str().unwrap().to_string();
            let mut keys: Vec<&str> = value
                .as_table()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "type")
                .collect();
            let (_, want) = SINK_KEYS.iter().find(|(t, _)| *t == kind).unwrap();
            let mut want = want.to_vec();
            keys.sort();
            want.sort();
            assert_eq!(keys, want, "{kind}");
            let back: SinkSection = value.try_into().unwrap();
            assert!(!matches!(back, SinkSection::Unreadable));
        }
    }
}
