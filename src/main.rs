//! The `tollgate` binary: parse the command line, load the configuration, start tracing, and
//! hand over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate::client::{self, Format};
use tollgate::config::{self, Overrides, PathPattern, Rule};
use tollgate::store::Subject;

// glibc malloc serialises the proxy's worker threads on its arena locks (seen in perf as
// futex waits under wrk load); mimalloc keeps per-thread heaps. See BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "First-party web analytics as a reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The site to sit in front of, e.g. http://127.0.0.1:3000
    #[arg(long, env = "TOLLGATE_UPSTREAM")]
    upstream: Option<String>,
    /// Proxy listener [default: 0.0.0.0:8080]
    #[arg(long, env = "TOLLGATE_LISTEN")]
    listen: Option<String>,
    /// Admin listener (API, metrics, health) [default: 127.0.0.1:9080]
    #[arg(long, env = "TOLLGATE_ADMIN")]
    admin: Option<String>,
    /// Data directory holding tollgate.duckdb [default: ./tollgate-data]
    #[arg(long, env = "TOLLGATE_DATA")]
    data: Option<String>,
    /// Configuration file (see config/tollgate.toml)
    #[arg(long, env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, pipeline and admin server.
    Serve(ServeArgs),
    /// Run read-only SQL over the store, whether or not a server is running on it.
    Query {
        /// Data directory [default: ./tollgate-data, or server.data_dir of --config]
        #[arg(long, env = "TOLLGATE_DATA")]
        data: Option<String>,
        /// Configuration file, for its data directory
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Most rows to print
        #[arg(long, default_value_t = 10_000)]
        max_rows: usize,
        /// The query, e.g. "SELECT name, count(*) FROM events GROUP BY 1"
        sql: String,
    },
    /// Show each sink's offset, lag, last error and dead letters.
    Sinks {
        /// Data directory [default: ./tollgate-data, or server.data_dir of --config]
        #[arg(long, env = "TOLLGATE_DATA")]
        data: Option<String>,
        /// Configuration file, for its sinks (when no server is running) and data directory
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Delete one visitor's or user's events from the store, and record the request.
    Forget {
        /// Data directory [default: ./tollgate-data, or server.data_dir of --config]
        #[arg(long, env = "TOLLGATE_DATA")]
        data: Option<String>,
        /// Configuration file, for its data directory
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
        /// The visitor id (the tg_vid cookie, X-Visitor-ID, or a cookieless id)
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        visitor: Option<String>,
        /// The user id the site sent
        #[arg(long)]
        user: Option<String>,
    },
    /// Import offline events from a CSV file (columns: name, timestamp, visitor_id or user_id,
    /// anything else into props). Exit status 0: all rows imported; 2: some rows were bad
    /// (listed) and the good ones imported; 1: nothing imported.
    Import {
        /// Data directory [default: ./tollgate-data, or server.data_dir of --config]
        #[arg(long, env = "TOLLGATE_DATA")]
        data: Option<String>,
        /// Configuration file (site id, enrichment, ingest.import_map)
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Import nothing unless every row is good
        #[arg(long)]
        strict: bool,
        /// Map a file column to a field: --map "Order Date=timestamp" (repeatable)
        #[arg(long = "map", value_name = "COLUMN=FIELD")]
        map: Vec<String>,
        /// The CSV file
        file: PathBuf,
    },
    /// Validate a configuration file and report every problem at once; also opens the geo
    /// database it names.
    Check {
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: PathBuf,
    },
    /// Write a synthetic, realistic dataset into a store (for trying the reports, tests and
    /// benchmarks): sessions, campaigns, a long tail of pages, API calls, registrations and
    /// purchases, bots. The same seed gives the same events. The server must not be running.
    Generate {
        /// Data directory [default: ./tollgate-data, or server.data_dir of --config]
        #[arg(long, env = "TOLLGATE_DATA")]
        data: Option<String>,
        /// Configuration file, for its data directory and site id
        #[arg(long, env = "TOLLGATE_CONFIG")]
        config: Option<PathBuf>,
        /// How many events
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Over how many days, ending now
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Random seed
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Start a demo shop on a loopback port with tollgate in front of it.
    Demo {
        /// Proxy listener for the demo
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Admin listener for the demo
        #[arg(long, default_value = "127.0.0.1:9080")]
        admin: String,
        /// Data directory for the demo's store
        #[arg(long, default_value = "./tollgate-demo-data")]
        data: String,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hyper=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // By default a failed log write is reported with eprintln!, which panics when stderr
        // itself fails (a full disk, a file-size limit): losing a log line must not take down
        // the thread that logged it.
        .log_internal_errors(false)
        .init();
}

fn load(path: Option<&std::path::Path>, o: Overrides) -> anyhow::Result<config::Settings> {
    config::load(path, std::env::vars(), &o).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The settings of a command that works on the data directory, not the proxy (`import`,
/// `sinks`): no upstream is needed.
fn load_offline(
    config: Option<&std::path::Path>,
    data: Option<String>,
) -> anyhow::Result<config::Settings> {
    load(
        config,
        Overrides {
            upstream: Some("http://127.0.0.1:1".into()),
            data_dir: data,
            ..Default::default()
        },
    )
}

/// The data directory of `query` and `forget`: `--data`, else the config file's, else the
/// default.
fn data_dir(data: Option<String>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match (data, config) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(c)) => {
            // Only the data directory matters here; an upstream is not needed.
            let s = load(
                Some(&c),
                Overrides {
                    upstream: Some("http://127.0.0.1:1".into()),
                    ..Default::default()
                },
            )?;
            s.data_dir
        }
        (None, None) => PathBuf::from("./tollgate-data"),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One function a subcommand; each says how the process exits.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => serve(a),
        Command::Query {
            data,
            config,
            format,
            max_rows,
            sql,
        } => query(data, config, format, max_rows, &sql),
        Command::Sinks { data, config, json } => sinks(data, config, json),
        Command::Forget {
            data,
            config,
            visitor,
            user,
        } => forget(data, config, visitor, user),
        Command::Import {
            data,
            config,
            strict,
            map,
            file,
        } => import(data, config, strict, &map, &file),
        Command::Generate {
            data,
            config,
            events,
            days,
            seed,
        } => generate(data, config, events, days, seed),
        Command::Check { config } => check(&config),
        Command::Demo {
            listen,
            admin,
            data,
        } => demo(listen, admin, data),
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = load(
        a.config.as_deref(),
        Overrides {
            upstream: a.upstream,
            listen: a.listen,
            admin: a.admin,
            data_dir: a.data,
        },
    )?;
    init_tracing();
    tollgate::app::run(settings)?;
    Ok(ExitCode::SUCCESS)
}

fn query(
    data: Option<String>,
    config: Option<PathBuf>,
    format: Format,
    max_rows: usize,
    sql: &str,
) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(data, config)?;
    let result = client::query(&data_dir, sql, max_rows)
        .with_context(|| format!("query on {} failed", data_dir.display()))?;
    print!("{}", client::render(&result, format));
    Ok(ExitCode::SUCCESS)
}

fn sinks(data: Option<String>, config: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let settings = load_offline(config.as_deref(), data)?;
    let status = client::sinks(&settings.data_dir, &settings)
        .with_context(|| format!("reading sinks on {} failed", settings.data_dir.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", client::render_sinks(&status));
    }
    Ok(ExitCode::SUCCESS)
}

fn forget(
    data: Option<String>,
    config: Option<PathBuf>,
    visitor: Option<String>,
    user: Option<String>,
) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(data, config)?;
    let subject = match (visitor, user) {
        (Some(v), _) => {
            Subject::visitor(&v).ok_or_else(|| anyhow::anyhow!("--visitor {v:?} is not a UUID"))?
        }
        (None, Some(u)) if !u.is_empty() => Subject::User(u),
        _ => anyhow::bail!("give --visitor ID or --user ID"),
    };
    let report = client::forget(&data_dir, &subject)
        .with_context(|| format!("forget on {} failed", data_dir.display()))?;
    println!(
        "deleted {} event{}; request {} recorded in forget_requests",
        report.rows_deleted,
        if report.rows_deleted == 1 { "" } else { "s" },
        report.request_id
    );
    Ok(ExitCode::SUCCESS)
}

/// Exits 0 when every row was imported, 2 when some were bad and the rest imported, 1 when
/// nothing was (the exit status `Command::Import` documents).
fn import(
    data: Option<String>,
    config: Option<PathBuf>,
    strict: bool,
    map: &[String],
    file: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let settings = load_offline(config.as_deref(), data)?;
    let csv = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let r = client::import_csv(&settings, &settings.data_dir, &csv, map, strict)
        .with_context(|| format!("import of {} failed", file.display()))?;
    for bad in &r.rejected {
        eprintln!("{}:{}: {}", file.display(), bad.line, bad.error);
    }
    // Only the first bad rows are listed; all are counted.
    let bad = r.rejected_count.max(r.rejected.len());
    if bad > r.rejected.len() {
        eprintln!("… and {} more bad rows", bad - r.rejected.len());
    }
    if r.refused {
        eprintln!(
            "nothing imported: {bad} bad row{} and --strict",
            if bad == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "imported {} rows: {} written, {} already present; {bad} bad",
        r.accepted, r.written, r.duplicates,
    );
    if r.accepted == 0 {
        return Ok(ExitCode::FAILURE);
    }
    if !r.rejected.is_empty() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(
    data: Option<String>,
    config: Option<PathBuf>,
    events: u64,
    days: u32,
    seed: u64,
) -> anyhow::Result<ExitCode> {
    if days == 0 {
        anyhow::bail!("--days must be at least 1");
    }
    let settings = load_offline(config.as_deref(), data)?;
    let mut store = tollgate::store::Store::open(&settings.data_dir).with_context(|| {
        format!(
            "failed to open the store in {}",
            settings.data_dir.display()
        )
    })?;
    let started = std::time::Instant::now();
    let spec = tollgate::generate::Spec {
        events,
        days,
        seed,
        end_us: tollgate::event::now_us(),
        site: settings.site_id.clone(),
    };
    let n = tollgate::generate::generate(&mut store, &spec).context("generate failed")?;
    // Laid out in time order, as a proxy's store is.
    store
        .order_by_time()
        .context("ordering the events by time failed")?;
    // What the writer of `tollgate serve` would build at rest, so that the store is ready.
    store
        .sketch_every_day(settings.timezone)
        .context("building the page sketches failed")?;
    println!(
        "wrote {n} events over {days} days into {} in {:.1} s",
        store.path().display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn check(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    match config::load(Some(config), std::env::vars(), &Overrides::default()) {
        // Opening the geo database and compiling the UA rules is what start-up does
        // next; a bad .mmdb should fail here, not at deploy time.
        Ok(s) => match tollgate::enrich::Enricher::new(&s) {
            Ok(_) => println!("{}: ok", config.display()),
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                return Ok(ExitCode::FAILURE);
            }
        },
        Err(e) => {
            eprint!("{}: {e}", config.display());
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn demo(listen: String, admin: String, data: String) -> anyhow::Result<ExitCode> {
    init_tracing();
    let shop =
        tollgate::demo::spawn("127.0.0.1:0".parse()?).context("failed to start the demo shop")?;
    let mut settings = load(
        None,
        Overrides {
            upstream: Some(format!("http://{shop}")),
            listen: Some(listen.clone()),
            admin: Some(admin.clone()),
            data_dir: Some(data.clone()),
        },
    )?;
    settings.capture.rules.push(Rule {
        name: "register".into(),
        method: Some(http::Method::POST),
        path: PathPattern::Exact("/api/register".into()),
        status: Some((200, 299)),
    });
    // The demo shows the injected tracker too: clicks, form submits, engagement.
    settings.inject.enabled = true;
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "tollgate".into());
    println!(
        "\nDemo camera shop:  http://{shop}/  (direct, not tracked)\n\
         Through tollgate:  http://{listen}/  (open this one)\n\
         Dashboard:         http://{admin}/\n\
         Metrics:           http://{admin}/metrics\n\
         Query the events:  {exe} query --data {data} \"SELECT name, path, status, visitor_id FROM events ORDER BY seq DESC LIMIT 20\"\n\
         Stop with Ctrl-C.\n"
    );
    tollgate::app::run(settings)?;
    Ok(ExitCode::SUCCESS)
}
