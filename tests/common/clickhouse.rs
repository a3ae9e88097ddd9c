//! A real ClickHouse server for the sink tests: Debian's `clickhouse-server` (bookworm ships
//! 18.16.1) with a config written into a fresh temp dir, HTTP and native TCP on free loopback
//! ports, run by the tests' [`Process`] supervisor.

use super::deps::{is_executable, missing, on_path};
use super::http1::{self, HttpResponse};
use super::process::{free_ports, temp_dir_in, Process};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A `clickhouse-server` on loopback with its own temp data dir.
pub struct ClickHouse {
    process: Process,
    bin: PathBuf,
    /// Extra leading argument: `server` when the binary is the multi-tool `clickhouse`.
    subcommand: Option<&'static str>,
    http_port: u16,
    tcp_port: u16,
}

impl ClickHouse {
    fn find_binary() -> (PathBuf, Option<&'static str>) {
        let mut looked = Vec::new();
        if let Some(p) = std::env::var_os("TOLLGATE_CLICKHOUSE_SERVER") {
            let p = PathBuf::from(p);
            if is_executable(&p) {
                let multi = p.file_name().is_some_and(|n| n == "clickhouse");
                return (p, multi.then_some("server"));
            }
            looked.push(format!("$TOLLGATE_CLICKHOUSE_SERVER={}", p.display()));
        }
        // Debian's package installs /usr/sbin/clickhouse-server; upstream's /usr/bin/clickhouse[-server].
        for p in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
            looked.push(p.to_string());
            if is_executable(Path::new(p)) {
                return (PathBuf::from(p), None);
            }
        }
        looked.push("$PATH/clickhouse-server".into());
        if let Some(p) = on_path("clickhouse-server") {
            return (p, None);
        }
        looked.push("/usr/bin/clickhouse".into());
        if is_executable(Path::new("/usr/bin/clickhouse")) {
            return (PathBuf::from("/usr/bin/clickhouse"), Some("server"));
        }
        missing(
            "The ClickHouse server binary (clickhouse-server)",
            "clickhouse-server",
            &looked,
        )
    }

    /// Start a fresh server: temp data dir, free loopback ports, waits for `GET /ping` = "Ok.".
    pub fn start() -> ClickHouse {
        let (bin, subcommand) = Self::find_binary();
        let dir = temp_dir_in(&std::env::temp_dir(), "clickhouse");
        let logs = [ERROR_LOG, SERVER_LOG].map(|f| dir.path().join(f));
        let [errors, server] = logs;
        let mut ch = ClickHouse {
            process: Process::new("clickhouse", dir)
                .tail_also(errors)
                .tail_also(server),
            bin,
            subcommand,
            http_port: 0,
            tcp_port: 0,
        };
        // A port picked free can be taken by someone else before the server binds it: retry then.
        for attempt in 1..=3 {
            let ports = free_ports(2);
            (ch.http_port, ch.tcp_port) = (ports[0], ports[1]);
            ch.write_config();
            match ch.launch() {
                Ok(()) => return ch,
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!(
                    "ClickHouse ({}) did not become ready on http://127.0.0.1:{}: {log}",
                    ch.bin.display(),
                    ch.http_port,
                ),
            }
        }
        unreachable!()
    }

    /// `config.xml` and `users.xml` from `tests/fixtures/clickhouse/`, shared with
    /// `benches/lib.sh` (`start_clickhouse`).
    fn write_config(&self) {
        let d = self.process.dir();
        fs::create_dir_all(d.join("data")).expect("create ClickHouse data dir");
        let config = CONFIG_XML
            .replace("@DIR@", &d.display().to_string())
            .replace("@HTTP_PORT@", &self.http_port.to_string())
            .replace("@TCP_PORT@", &self.tcp_port.to_string())
            .replace("@LOG_LEVEL@", "information");
        fs::write(d.join("config.xml"), config).expect("write ClickHouse config.xml");
        fs::write(d.join("users.xml"), USERS_XML).expect("write ClickHouse users.xml");
    }

    /// Spawn the server and wait for `/ping`; on failure the server is gone and Err holds its log tail.
    fn launch(&mut self) -> Result<(), String> {
        let d = self.process.dir();
        let mut cmd = Command::new(&self.bin);
        if let Some(sub) = self.subcommand {
            cmd.arg(sub);
        }
        cmd.arg(format!("--config-file={}", d.join("config.xml").display()))
            .current_dir(d);
        self.process.spawn(cmd);
        let addr = self.addr();
        self.process.try_wait_ready(READY_TIMEOUT, || {
            let r = http1::request(addr, "GET", "/ping", b"", Duration::from_secs(2)).ok()?;
            (r.status == 200 && r.text().trim() == "Ok.").then_some(())
        })
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.http_port).into()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
    pub fn http_port(&self) -> u16 {
        self.http_port
    }
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Raw HTTP request to the server (`target` is path + query string, e.g.
    /// `/?input_format_skip_unknown_fields=1`); transport errors panic, HTTP errors don't.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> HttpResponse {
        http1::request(self.addr(), method, target, body, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("ClickHouse HTTP {method} {} {target}: {e}", self.url()))
    }

    /// Run SQL (POST body to `/`); panics with the server's error text unless HTTP 200. Returns the body.
    pub fn query(&self, sql: &str) -> String {
        let r = self.request("POST", "/", sql.as_bytes());
        if r.status != 200 {
            panic!(
                "ClickHouse query failed with HTTP {}:\n{}\nquery: {sql}",
                r.status,
                r.text().trim_end()
            );
        }
        r.text()
    }

    /// SIGTERM and wait for exit; ports and data dir are kept for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        // Killed after the timeout: all a restart needs is that it is gone.
        let _ = self.process.stop(libc::SIGTERM, STOP_TIMEOUT);
    }

    /// Start again on the same ports and data dir; waits for `/ping`.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!("ClickHouse did not come back up on {}: {log}", self.url());
        }
    }
}

/// The server's own logs (its stdout and stderr go to `clickhouse.log`).
const SERVER_LOG: &str = "clickhouse-server.log";
const ERROR_LOG: &str = "clickhouse-server.err.log";

const CONFIG_XML: &str = include_str!("../fixtures/clickhouse/config.xml");
const USERS_XML: &str = include_str!("../fixtures/clickhouse/users.xml");
