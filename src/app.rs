//! Wires the three planes together: store and pipeline, admin server, and the Pingora proxy;
//! runs until SIGTERM or SIGINT, then drains and flushes.

use crate::admin::{AdminServer, AdminState};
use crate::config::Settings;
use crate::enrich::Enricher;
use crate::event::now_us;
use crate::metrics::Metrics;
use crate::pipeline;
use crate::proxy::consent::{day_of, Salt};
use crate::proxy::identity::Keys;
use crate::proxy::listener::Guarded;
use crate::proxy::signing::{CookieKey, KEY_FILE};
use crate::proxy::upstream::UpstreamTarget;
use crate::proxy::Proxy;
use crate::store::Store;
use anyhow::Context;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// SIGTERM and SIGINT both drain and flush; SIGQUIT is not used.
struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            warn!("Cannot install signal handlers; waiting forever.");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received, draining."),
            _ = int.recv() => info!("SIGINT received, draining."),
        }
        ShutdownSignal::GracefulTerminate
    }
}

/// Pingora binds its listener itself and cannot report an ephemeral port back, so a port of 0
/// is resolved here to a free port first.
fn concrete(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = TcpListener::bind(addr).with_context(|| format!("failed to bind {addr}"))?;
    Ok(l.local_addr()?)
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
    let store = Store::open(&settings.data_dir)?;
    info!(path = %store.path().display(), "Store open.");
    let reader = store.reader().context("failed to open a store reader")?;
    // Each sink, and retention, works on a connection of its own.
    let sink_conns = settings
        .sinks
        .iter()
        .map(|_| store.reader())
        .collect::<Result<Vec<_>, _>>()
        .context("failed to open store connections for the sinks")?;
    let retention_conn = store
        .reader()
        .context("failed to open a store connection")?;
    let (events, rx) = pipeline::channel(
        settings.pipeline.queue_capacity,
        settings.pipeline.queue_max_bytes,
        metrics.clone(),
    );
    let (ingest, ingest_rx) = crate::ingest::channel();
    let writer = pipeline::spawn_writer(
        store,
        enricher,
        rx,
        ingest_rx,
        settings.pipeline.clone(),
        metrics.clone(),
    )
    .context("failed to start the store writer")?;
    let sinks = crate::sinks::spawn(&settings.sinks, sink_conns, writer.health.clone(), &metrics)
        .context("failed to start the sinks")?;
    let stop_retention = Arc::new(AtomicBool::new(false));
    let retention = crate::sinks::spawn_retention(
        retention_conn,
        settings.store.clone(),
        settings.sinks.iter().map(|s| s.name.clone()).collect(),
        stop_retention.clone(),
    )
    .context("failed to start retention")?;
    // The salt file is written only where cookieless ids can be minted.
    let p = &settings.privacy;
    let salt_dir = (p.cookieless || p.consent.is_some()).then_some(settings.data_dir.as_path());
    let keys = Arc::new(Keys {
        salt: Salt::load(salt_dir, day_of(now_us())),
        cookie: CookieKey::load_or_create(&settings.data_dir).with_context(|| {
            format!(
                "failed to read or create the visitor cookie key {}",
                settings.data_dir.join(KEY_FILE).display()
            )
        })?,
    });

    let upstream = UpstreamTarget::resolve(settings.upstream.clone())?;
    upstream.spawn_refresh(Duration::from_secs(30));

    let admin = AdminServer::spawn(
        settings.admin,
        crate::admin::Limits::new(&settings),
        Arc::new(AdminState {
            reader: Mutex::new(reader),
            metrics: metrics.clone(),
            events: events.clone(),
            health: writer.health.clone(),
            flush_interval: settings.pipeline.flush_interval,
            ingest: ingest.clone(),
            site: settings.site_id.clone(),
            import_map: settings.ingest.import_map.clone(),
            write_keys: settings.ingest.write_keys.clone(),
            sinks: settings.sinks.clone(),
            admin_token: settings.admin_token.clone(),
            timezone: settings.timezone,
            api_max_items: settings.ingest.api_max_items,
            console: crate::admin::Console::new(settings.console.clone()),
            security: crate::admin::Security::new(&settings),
        }),
    )
    .with_context(|| format!("failed to bind the admin listener on {}", settings.admin))?;

    let listen = concrete(settings.listen)?;
    let conf = ServerConf {
        threads: settings.threads,
        // Off by default: per-thread event loops avoid cross-thread wake-ups, measured
        // faster under load here (BENCHMARKS.md).
        work_stealing: settings.work_stealing,
        grace_period_seconds: Some(settings.shutdown_grace_secs),
        graceful_shutdown_timeout_seconds: Some(5),
        upstream_keepalive_pool_size: settings.upstream.pool_size,
        // Retries only cover reused upstream connections that turned out dead.
        max_retries: 2,
        pid_file: data_path(&settings.data_dir, "tollgate.pid"),
        upgrade_sock: data_path(&settings.data_dir, "tollgate_upgrade.sock"),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut server_options = HttpServerOptions::default();
    server_options.keepalive_request_limit = Some(settings.keepalive_requests).filter(|n| *n > 0);
    let mut proxy = pingora::proxy::http_proxy(
        &server.configuration,
        Proxy::new(
            settings.clone(),
            upstream,
            events,
            ingest,
            metrics.clone(),
            keys,
        ),
    );
    proxy.server_options = Some(server_options);
    // Pingora's connection loop, with a connection cap and a header deadline around it.
    let app = Guarded::new(
        proxy,
        settings.max_connections,
        settings.header_timeout,
        Duration::from_secs(settings.keepalive_secs),
        metrics,
    );
    let mut service = Service::new("tollgate proxy".to_string(), app);
    service.add_tcp(&listen.to_string());
    server.add_service(service);

    let runtime_file = settings.data_dir.join(RUNTIME_FILE);
    let info = RuntimeInfo {
        pid: std::process::id(),
        listen,
        admin: admin.addr,
        admin_token: settings.admin_token.clone(),
    };
    write_private(&runtime_file, &serde_json::to_vec(&info)?)
        .with_context(|| format!("failed to write {}", runtime_file.display()))?;
    info!(
        %listen,
        admin = %admin.addr,
        upstream = %settings.upstream.url,
        "tollgate is serving."
    );

    server.run(RunArgs {
        shutdown_signal: Box::new(Signals),
    });

    // The proxy has stopped: flush what it captured.
    writer.shutdown();
    // Sinks stop after their current attempt; what they had not shipped goes at the next start.
    sinks.shutdown(Duration::from_secs(5));
    stop_retention.store(true, Ordering::SeqCst);
    if let Some(r) = retention {
        let _ = r.join();
    }
    admin.shutdown();
    let _ = std::fs::remove_file(&runtime_file);
    info!("tollgate stopped.");
    Ok(())
}

fn data_path(dir: &Path, name: &str) -> String {
    let p: PathBuf = dir.join(name);
    p.to_string_lossy().into_owned()
}
