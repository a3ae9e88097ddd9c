//! Test harness: a real tollgate process, a real upstream (axum in the test process, or nginx),
//! each on its own loopback port and temp directory.

#![allow(dead_code)]

pub mod browser;
pub mod html;
pub mod mmdb;
pub mod services;
pub mod upstream;

use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `addr` accepts TCP connections.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A running `tollgate serve`.
pub struct Tollgate {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
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

    pub fn start_full(
        upstream: &str,
        extra_toml: &str,
        env: &[(&str, &str)],
        data: Option<&Path>,
    ) -> Tollgate {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tollgate.toml");
        let toml = if extra_toml.contains("[pipeline]") {
            extra_toml.to_string()
        } else {
            format!("[pipeline]\nflush_interval_ms = 100\n{extra_toml}")
        };
        std::fs::write(&config, toml).unwrap();
        let data = data.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let log = std::fs::File::create(dir.path().join("tollgate.log")).unwrap();
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
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A killed tollgate leaves its runtime file behind; wait for the new one's.
        let _ = std::fs::remove_file(data.join("tollgate.runtime.json"));
        let child = cmd.spawn().expect("spawn tollgate");
        let mut tg = Tollgate {
            child: Some(child),
            dir,
            data: data.clone(),
            proxy: "127.0.0.1:1".parse().unwrap(),
            admin: "127.0.0.1:1".parse().unwrap(),
        };
        let runtime = data.join("tollgate.runtime.json");
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&runtime) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    tg.proxy = v["listen"].as_str().unwrap().parse().unwrap();
                    tg.admin = v["admin"].as_str().unwrap().parse().unwrap();
                    break;
                }
            }
            if let Some(status) = tg.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tollgate exited early ({status}):\n{}", tg.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tollgate did not start:\n{}",
                tg.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            wait_for_port(tg.proxy, Duration::from_secs(20)),
            "proxy port never opened:\n{}",
            tg.log()
        );
        tg
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("tollgate.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
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
        let mut child = self.child.take().unwrap();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let _ = child.wait();
    }

    /// Send SIGTERM and wait for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!(
                    "tollgate did not exit within 30 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A data directory holding a store made by `tollgate generate` (`src/generate.rs`).
pub fn generated_store(events: u64, days: u32, seed: u64) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
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

/// Run the `tollgate` binary with `args`; returns (exit success, stdout, stderr).
pub fn tollgate_cmd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A real nginx from Debian's package serving the files in `root`, on its own port.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
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
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: run `bash .ci/test` (it installs nginx-light), or apt-get install nginx-light");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls = match tls {
            Some((cert, key)) => format!(
                "ssl_certificate {}; ssl_certificate_key {};",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let ssl = if tls.is_empty() { "" } else { " ssl" };
        let conf = format!(
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
    listen 127.0.0.1:{port}{ssl};
    {tls}
    root {root};
  }}
}}
"#,
            d = dir.path().display(),
            root = root.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            wait_for_port(addr, Duration::from_secs(10)),
            "nginx did not start"
        );
        Nginx {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them running, orphaned).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
