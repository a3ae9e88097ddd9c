//! Wires the three planes together: store and pipeline, admin server, and the proxy's workers
//! (hyper, one worker per core); runs until SIGTERM or SIGINT, then drains and flushes.

use crate::admin::{self, Admin, AdminServer, Console, Forget, Health, Reader, Reports, Security};
use crate::config::Settings;
use crate::enrich::Enricher;
use crate::event::now_us;
use crate::metrics::Metrics;
use crate::pipeline;
use crate::proxy::consent::{day_of, Salt};
use crate::proxy::identity::Keys;
use crate::proxy::listener;
use crate::proxy::signing::{CookieKey, KEY_FILE};
use crate::proxy::upstream::UpstreamTarget;
use crate::proxy::workers::{self, Workers};
use crate::proxy::Proxy;
use crate::store::Store;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Name of the file in the data directory that tells other tollgate commands (`query`) where a
/// running server's admin API is.
pub const RUNTIME_FILE: &str = "tollgate.runtime.json";

/// Contents of [`RUNTIME_FILE`].
#[derive(Debug, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub pid: u32,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The admin token, for the CLI commands that go through the admin API. The file is
    /// readable by the data directory's owner only, who can read the store anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
}

/// Read the runtime file of a server on `data_dir`, if one is there.
pub fn runtime_info(data_dir: &Path) -> Option<RuntimeInfo> {
    let text = std::fs::read_to_string(data_dir.join(RUNTIME_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Write `bytes` to a new file that only its owner can read (mode 0600).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// SIGTERM and SIGINT both drain and flush; SIGQUIT is not used. The handlers are installed
/// when this is built, before the proxy accepts anything, and waited for on the main thread.
struct Signals {
    runtime: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int) = {
            let _guard = runtime.enter();
            (
                signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            )
        };
        Ok(Signals { runtime, term, int })
    }

    /// Blocks until one of them arrives.
    fn wait(mut self) {
        let (term, int) = (&mut self.term, &mut self.int);
        self.runtime.block_on(async {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received, draining."),
                _ = int.recv() => info!("SIGINT received, draining."),
            }
        });
    }
}

/// Run tollgate with `settings` until a shutdown signal. Blocks.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    // A file-size limit must make writes fail, not kill the proxy.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::new());

    let enricher = Enricher::new(&settings)?;
    // DuckDB's threads are created here, and take the priority of the thread that opens it.
    let store = crate::priority::background(settings.pipeline.background_nice, || {
        Store::open_with(&settings.data_dir, &settings.store.duckdb)
    })?;
    info!(path = %store.path().display(), "Store open.");
    let reader = store.reader().context("failed to open a store reader")?;
    let budget = store.budget();
    let (events, rx) = pipeline::channel(
        settings.pipeline.queue_capacity,
        settings.pipeline.queue_max_bytes,
        metrics.clone(),
    );
    let (ingest, ingest_rx) = crate::ingest::channel();
    let analytics = Analytics::spawn(&settings, store, enricher, rx, ingest_rx, &metrics)?;
    let keys = load_keys(&settings)?;

    let upstream = UpstreamTarget::resolve(settings.upstream.clone())?;
    upstream.spawn_refresh(Duration::from_secs(30));

    let admin = AdminServer::spawn(
        settings.admin,
        crate::admin::Limits::new(&settings),
        admin_plane(
            &settings,
            Reader::new(reader, budget),
            &metrics,
            &events,
            &analytics.writer,
            &ingest,
        ),
    )
    .with_context(|| format!("failed to bind the admin listener on {}", settings.admin))?;

    let signals = Signals::install()?;
    let proxy = Proxy::new(
        settings.clone(),
        upstream,
        events,
        ingest,
        metrics.clone(),
        keys,
    );
    let (listen, workers) = start_proxy(&settings, proxy)?;

    let runtime_file = write_runtime_file(&settings, listen, admin.addr)?;
    info!(
        %listen,
        admin = %admin.addr,
        upstream = %settings.upstream.url,
        "tollgate is serving."
    );

    signals.wait();
    workers.shutdown();
    // The proxy has stopped: flush what it captured.
    analytics.shutdown();
    admin.shutdown();
    let _ = std::fs::remove_file(&runtime_file);
    info!("tollgate stopped.");
    Ok(())
}

/// Bind the proxy listener and start one worker per thread; returns the address bound.
fn start_proxy(settings: &Settings, proxy: Proxy) -> anyhow::Result<(SocketAddr, Workers)> {
    let (listen, listeners) = workers::bind(settings.listen, settings.threads)
        .with_context(|| format!("failed to bind the proxy listener on {}", settings.listen))?;
    if settings.work_stealing {
        warn!(
            "server.work_stealing no longer has an effect: the proxy runs one worker per thread."
        );
    }
    let limits = listener::Limits::new(settings);
    let workers = Workers::spawn(
        listeners,
        proxy,
        limits,
        Duration::from_secs(settings.shutdown_grace_secs),
    )
    .context("failed to start the proxy workers")?;
    Ok((listen, workers))
}

/// The threads behind the proxy: the store writer, the sinks and retention.
struct Analytics {
    writer: pipeline::Writer,
    sinks: crate::sinks::Sinks,
    retention: Option<std::thread::JoinHandle<()>>,
    stop_retention: Arc<AtomicBool>,
}

impl Analytics {
    /// Start the writer on `store`, the sinks and retention. Each sink, and retention, works on
    /// a connection of its own. The threads start from a thread at
    /// `pipeline.background_nice`, and keep it.
    fn spawn(
        settings: &Settings,
        store: Store,
        enricher: Enricher,
        rx: pipeline::EventReceiver,
        ingest_rx: crossbeam_channel::Receiver<crate::ingest::Submission>,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Analytics> {
        let sink_conns = settings
            .sinks
            .iter()
            .map(|_| store.reader())
            .collect::<Result<Vec<_>, _>>()
            .context("failed to open store connections for the sinks")?;
        let retention_conn = store
            .reader()
            .context("failed to open a store connection")?;
        let budget = store.budget();
        let stop_retention = Arc::new(AtomicBool::new(false));
        crate::priority::background(settings.pipeline.background_nice, || {
            let writer = pipeline::spawn_writer(
                store,
                enricher,
                rx,
                ingest_rx,
                settings.pipeline.clone(),
                metrics.clone(),
                settings.timezone,
            )
            .context("failed to start the store writer")?;
            let sinks = crate::sinks::spawn(
                &settings.sinks,
                sink_conns,
                budget.clone(),
                writer.health.clone(),
                metrics,
            )
            .context("failed to start the sinks")?;
            let retention = crate::sinks::spawn_retention(
                retention_conn,
                budget,
                settings.store.clone(),
                settings.sinks.iter().map(|s| s.name.clone()).collect(),
                stop_retention.clone(),
            )
            .context("failed to start retention")?;
            anyhow::Ok(Analytics {
                writer,
                sinks,
                retention,
                stop_retention,
            })
        })
    }

    /// Commit what is queued, then stop the sinks and retention. Sinks stop after their
    /// current attempt; what they had not shipped goes at the next start.
    fn shutdown(self) {
        self.writer.shutdown();
        self.sinks.shutdown(Duration::from_secs(5));
        self.stop_retention.store(true, Ordering::SeqCst);
        if let Some(r) = self.retention {
            let _ = r.join();
        }
    }
}

/// The visitor-id keys: the daily salt and the cookie key, read from the data directory or
/// created there.
fn load_keys(settings: &Settings) -> anyhow::Result<Arc<Keys>> {
    // The salt file is written only where cookieless ids can be minted.
    let p = &settings.privacy;
    let salt_dir = (p.cookieless || p.consent.is_some()).then_some(settings.data_dir.as_path());
    Ok(Arc::new(Keys {
        salt: Salt::load(salt_dir, day_of(now_us())),
        cookie: CookieKey::load_or_create(&settings.data_dir).with_context(|| {
            format!(
                "failed to read or create the visitor cookie key {}",
                settings.data_dir.join(KEY_FILE).display()
            )
        })?,
    }))
}

/// Write [`RUNTIME_FILE`] for the CLI commands that look for a running server; returns its
/// path, for removal at shutdown.
fn write_runtime_file(
    settings: &Settings,
    listen: SocketAddr,
    admin: SocketAddr,
) -> anyhow::Result<std::path::PathBuf> {
    let runtime_file = settings.data_dir.join(RUNTIME_FILE);
    let info = RuntimeInfo {
        pid: std::process::id(),
        listen,
        admin,
        admin_token: settings.admin_token.clone(),
    };
    write_private(&runtime_file, &serde_json::to_vec(&info)?)
        .with_context(|| format!("failed to write {}", runtime_file.display()))?;
    Ok(runtime_file)
}

/// The admin plane's parts, each with only what its routes need.
fn admin_plane(
    settings: &Settings,
    reader: Arc<Reader>,
    metrics: &Arc<Metrics>,
    events: &pipeline::EventSender,
    writer: &pipeline::Writer,
    ingest: &crate::ingest::IngestSender,
) -> Admin {
    Admin {
        console: Console::new(reader.clone(), metrics.clone(), settings.console.clone()),
        reports: Reports {
            reader: reader.clone(),
            timezone: crate::reports::SiteTz(settings.timezone),
        },
        ingest: admin::Ingest {
            sender: ingest.clone(),
            site: settings.site_id.clone(),
            api_max_items: settings.ingest.api_max_items,
            import_map: settings.ingest.import_map.clone(),
            write_keys: settings.ingest.write_keys.clone(),
        },
        forget: Forget {
            reader: reader.clone(),
            flush_interval: settings.pipeline.flush_interval,
            writer: ingest.clone(),
        },
        health: Health {
            reader,
            metrics: metrics.clone(),
            events: events.clone(),
            writer: writer.health.clone(),
            sinks: settings.sinks.clone(),
        },
        security: Security::new(settings),
    }
}
