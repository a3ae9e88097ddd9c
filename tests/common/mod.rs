//! Test harness: a real tollgate process, a real upstream (axum in the test process, or nginx),
//! each on its own loopback port and temp directory.
//!
//! # Layout
//! * `process`: the one supervisor every server below runs under (temp dir, free port, spawn,
//!   wait until ready, log tail on failure, stop on drop); `deps` finds their binaries.
//! * this file: [`Tollgate`] and [`Nginx`]; `upstream`: an axum upstream in the test process.
//! * `clickhouse`, `postgres`: database servers for the sinks; `browser`: headless Chromium.
//! * `http1`: a tiny blocking HTTP/1.1 client; `html`, `mmdb`: generated test inputs.

#![allow(dead_code)]

pub mod browser;
pub mod clickhouse;
pub mod deps;
pub mod html;
pub mod http1;
pub mod mmdb;
pub mod postgres;
pub mod process;
pub mod upstream;

pub use process::{free_port, temp_dir};

use process::{port_open, temp_dir_in, Process};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// An HTTP client that keeps cookies like a browser and leaves bodies as sent.
pub fn jar_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .no_gzip()
        .build()
        .unwrap()
}

/// A running `tollgate serve`.
pub struct Tollgate {
    process: Process,
    data: PathBuf,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

impl Tollgate {
    /// Start tollgate in front of `upstream` with extra TOML configuration (sections other
    /// than `[server]`, whose keys come from flags and `TOLLGATE_SERVER_*`).
    pub fn start(upstream: &str, extra_toml: &str) -> Tollgate {
        Self::start_with_env(upstream, extra_toml, &[])
    }

    pub fn start_with_env(upstream: &str, extra_toml: &str, env: &[(&str, &str)]) -> Tollgate {
        Self::start_full(upstream, extra_toml, env, None)
    }

    /// Start on the data directory `data` (of a stopped tollgate, say) instead of a new one.
    pub fn start_on(upstream: &str, extra_toml: &str, data: &Path) -> Tollgate {
        Self::start_full(upstream, extra_toml, &[], Some(data))
    }

    /// Start, and wait until the ports in its runtime file are open.
    pub fn start_full(
        upstream: &str,
        extra_toml: &str,
        env: &[(&str, &str)],
        data: Option<&Path>,
    ) -> Tollgate {
        let mut process = Process::new("tollgate", temp_dir_in(&std::env::temp_dir(), "tollgate"));
        let config = process.dir().join("tollgate.toml");
        let toml = if extra_toml.contains("[pipeline]") {
            extra_toml.to_string()
        } else {
            format!("[pipeline]\nflush_interval_ms = 100\n{extra_toml}")
        };
        std::fs::write(&config, toml).unwrap();
        let data = data.map_or_else(|| process.dir().join("data"), Path::to_path_buf);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--upstream", upstream])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .env("TOLLGATE_SERVER_SHUTDOWN_GRACE_SECS", "0")
            .env("TOLLGATE_SERVER_THREADS", "2")
            .env("TOLLGATE_LOG", "info")
            .envs(env.iter().copied());
        // A killed tollgate leaves its runtime file behind; wait for the new one's.
        let runtime = data.join("tollgate.runtime.json");
        let _ = std::fs::remove_file(&runtime);
        process.spawn(cmd);
        let (proxy, admin) = process.wait_ready(Duration::from_secs(40), || {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&runtime).ok()?).ok()?;
            let proxy: SocketAddr = v["listen"].as_str()?.parse().ok()?;
            let admin: SocketAddr = v["admin"].as_str()?.parse().ok()?;
            port_open(proxy).then_some((proxy, admin))
        });
        Tollgate {
            process,
            data,
            proxy,
            admin,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Its own temp directory (config, log, and the data directory unless given one).
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    pub fn pid(&self) -> i32 {
        self.process.pid().expect("tollgate is not running") as i32
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
    /// Rows of a read-only query through the admin API.
    pub async fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        let resp = reqwest::Client::new()
            .post(self.admin_url("/api/query"))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "query {sql:?} failed: {body}");
        serde_json::from_value(body["rows"].clone()).unwrap()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = reqwest::get(self.admin_url("/metrics")).await.unwrap();
        r.text().await.unwrap()
    }

    /// A single number from a query.
    pub async fn count(&self, sql: &str) -> i64 {
        self.query(sql).await[0][0].as_i64().unwrap()
    }

    /// Poll `sql` (a count) until it reaches `want` or 15 s pass; returns the last value.
    pub async fn wait_count(&self, sql: &str, want: i64) -> i64 {
        let start = Instant::now();
        loop {
            let n = self.count(sql).await;
            if n >= want || start.elapsed() > Duration::from_secs(15) {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `sql` as CSV from `tollgate query` on the data directory (for a stopped or killed
    /// tollgate: the file is read directly).
    pub fn query_csv(&self, sql: &str) -> String {
        let data = self.data_dir();
        let (ok, out, err) = tollgate_cmd(&[
            "query",
            "--data",
            data.to_str().unwrap(),
            "--format",
            "csv",
            sql,
        ]);
        assert!(ok, "tollgate query {sql:?} failed: {err}");
        out
    }

    /// SIGKILL, and wait until the process is gone: its store lock goes with it.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Send `signal` (SIGTERM, SIGKILL, ...) without waiting.
    pub fn signal(&self, signal: i32) {
        self.process.signal(signal);
    }

    /// Send SIGTERM and wait for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        match self.process.stop(libc::SIGTERM, Duration::from_secs(30)) {
            Ok(Some(status)) => status,
            Ok(None) => panic!("tollgate was not running"),
            Err(why) => panic!("{why}"),
        }
    }
}

/// A data directory holding a store made by `tollgate generate` (`src/generate.rs`).
pub fn generated_store(events: u64, days: u32, seed: u64) -> tempfile::TempDir {
    let data = temp_dir();
    let (ok, out, err) = tollgate_cmd(&[
        "generate",
        "--data",
        data.path().to_str().unwrap(),
        "--events",
        &events.to_string(),
        "--days",
        &days.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    assert!(ok, "tollgate generate failed: {out}{err}");
    data
}

/// Run the `tollgate` binary with `args` to completion; its exit status and output as bytes.
pub fn tollgate_output<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run the tollgate binary")
}

/// Run the `tollgate` binary with `args`; returns (exit success, stdout, stderr).
pub fn tollgate_cmd(args: &[&str]) -> (bool, String, String) {
    let out = tollgate_output(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A real nginx from Debian's package serving the files in `root`, on its own port.
pub struct Nginx {
    pub addr: SocketAddr,
    process: Process,
}

impl Nginx {
    pub fn serve(root: &Path) -> Nginx {
        Self::start(root, None)
    }

    /// Serve over TLS with the given PEM certificate chain and key.
    pub fn serve_tls(root: &Path, cert: &Path, key: &Path) -> Nginx {
        Self::start(root, Some((cert, key)))
    }

    fn start(root: &Path, tls: Option<(&Path, &Path)>) -> Nginx {
        let bin = deps::find_installed(
            "nginx",
            "nginx-light",
            &["/usr/sbin/nginx", "/usr/bin/nginx"],
        );
        let dir = temp_dir_in(&std::env::temp_dir(), "nginx");
        let d = dir.path().to_path_buf();
        let mut process = Process::new("nginx", dir)
            .tail_also(d.join("error.log"))
            // SIGTERM: the master stops its workers (SIGKILL would leave them running, orphaned).
            .on_drop(libc::SIGTERM, Duration::from_secs(5));
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        std::fs::write(d.join("nginx.conf"), nginx_conf(&d, addr, root, tls)).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(&d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(["-g", "daemon off;"]);
        process.spawn(cmd);
        process.wait_ready(Duration::from_secs(10), || port_open(addr).then_some(()));
        Nginx { addr, process }
    }
}

/// One worker serving `root` on `addr`, with everything it writes under `dir`.
fn nginx_conf(dir: &Path, addr: SocketAddr, root: &Path, tls: Option<(&Path, &Path)>) -> String {
    let tls = match tls {
        Some((cert, key)) => format!(
            "ssl_certificate {}; ssl_certificate_key {};",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let ssl = if tls.is_empty() { "" } else { " ssl" };
    format!(
        r#"worker_processes 1;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  types {{ text/html html; application/json json; application/octet-stream bin; }}
  server {{
    listen {addr}{ssl};
    {tls}
    root {root};
  }}
}}
"#,
        d = dir.display(),
        root = root.display()
    )
}

/// FNV-1a, to compare large bodies without a hashing dependency.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// `n` bytes of deterministic, incompressible-looking data.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Headers that describe a hop or a moment, not the resource; and those tollgate adds.
pub const NOT_COMPARED: &[&str] = &[
    "date",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "x-request-id",
    "set-cookie",
];

/// The headers of a response that must pass a proxy unchanged.
pub fn end_to_end(
    h: &reqwest::header::HeaderMap,
) -> std::collections::BTreeMap<String, Vec<reqwest::header::HeaderValue>> {
    let mut m = std::collections::BTreeMap::<String, Vec<_>>::new();
    for (k, v) in h {
        if !NOT_COMPARED.contains(&k.as_str()) {
            m.entry(k.to_string()).or_default().push(v.clone());
        }
    }
    m
}
