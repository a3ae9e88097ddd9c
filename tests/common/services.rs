//! Real database servers for integration tests, started from the Debian packages on loopback.
//!
//! * [`ClickHouse`]: `clickhouse-server` (bookworm ships 18.16.1) with a config written into a
//!   fresh temp dir, HTTP + native TCP on free loopback ports.
//! * [`Postgres`]: the highest `/usr/lib/postgresql/*/bin` (package `postgresql`), `initdb` into a
//!   fresh temp dir, trust auth, superuser and database `tollgate`, TCP on a free loopback port.
//!
//! Everything is blocking and uses only std. A missing package is a loud panic that names the
//! Debian package and `bash .ci/deps test`: these tests never skip silently. The servers' own
//! stdout/stderr and logs go to files in their temp dir (the tail is quoted when startup fails).
//! Each server runs as a direct child of the test process so `Drop` can always kill it; as root,
//! PostgreSQL runs as the `postgres` system user (set with `CommandExt::uid/gid`, no `su` wrapper
//! in between, so the pid we hold is the postmaster's own).

#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const DEPS_HINT: &str =
    "run `bash .ci/deps test` (as root, or with sudo) to install the test servers";

// ---------------------------------------------------------------------------------------------
// small helpers
// ---------------------------------------------------------------------------------------------

/// A free loopback port: bind 127.0.0.1:0, read the port, drop the listener.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 for a free port")
        .port()
}

/// A fresh, uniquely named directory under `base`; removed by [`TempDir`]'s `Drop`.
struct TempDir(PathBuf);

impl TempDir {
    fn new(base: &Path, prefix: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        for _ in 0..100 {
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = base.join(format!("{prefix}-{}-{n}-{nanos:08x}", std::process::id()));
            match fs::create_dir(&p) {
                Ok(()) => return TempDir(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temp dir {}: {e}", p.display()),
            }
        }
        panic!("cannot create a unique temp dir under {}", base.display())
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The effective uid of this process (from /proc, so no libc needed).
fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let out = Command::new("id").arg("-u").output().expect("run `id -u`");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("parse `id -u`")
        })
}

/// uid and gid of a system user, from /etc/passwd or else `id`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    if let Ok(passwd) = fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 && f[0] == name {
                if let (Ok(u), Ok(g)) = (f[2].parse(), f[3].parse()) {
                    return Some((u, g));
                }
            }
        }
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// Send a signal by name (TERM, INT, QUIT, KILL) with the shell's `kill` builtin: std can only SIGKILL.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("/bin/sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\" 2>/dev/null",
            "sh",
            sig,
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait for a child to exit, at most `timeout`; true when it did.
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// Signal, wait up to `timeout`, then SIGKILL and reap.
fn stop_child(child: &mut Child, sig: &str, timeout: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), sig);
    if !wait_exit(child, timeout) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn append_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log {}: {e}", path.display()))
}

/// The last `n` lines of each existing file, for panic messages.
fn tails(files: &[PathBuf], n: usize) -> String {
    let mut s = String::new();
    for f in files {
        let Ok(file) = File::open(f) else { continue };
        let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        let from = lines.len().saturating_sub(n);
        s.push_str(&format!(
            "\n----- {} (last {} lines) -----\n",
            f.display(),
            lines.len() - from
        ));
        for l in &lines[from..] {
            s.push_str(l);
            s.push('\n');
        }
    }
    if s.is_empty() {
        s.push_str("\n(no log files were written)\n");
    }
    s
}

fn missing(what: &str, package: &str, looked: &[String]) -> ! {
    panic!(
        "\n\n==== MISSING TEST DEPENDENCY ====\n{what} not found (looked in: {}).\n\
         Install the Debian package `{package}`: {DEPS_HINT}.\n\
         These integration tests need a real server and are never skipped.\n\
         =================================\n",
        looked.join(", ")
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

// ---------------------------------------------------------------------------------------------
// a tiny blocking HTTP/1.1 client (enough for ClickHouse)
// ---------------------------------------------------------------------------------------------

/// One HTTP response: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2).min(timeout))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response"))
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// ClickHouse
// ---------------------------------------------------------------------------------------------

/// A `clickhouse-server` on loopback with its own temp data dir.
pub struct ClickHouse {
    child: Option<Child>,
    bin: PathBuf,
    /// Extra leading argument: `server` when the binary is the multi-tool `clickhouse`.
    subcommand: Option<&'static str>,
    http_port: u16,
    tcp_port: u16,
    // Last: removed after the process is gone.
    dir: TempDir,
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
        let dir = TempDir::new(&std::env::temp_dir(), "tollgate-clickhouse");
        let mut ch = ClickHouse {
            child: None,
            bin,
            subcommand,
            http_port: 0,
            tcp_port: 0,
            dir,
        };
        // A port picked free can be taken by someone else before the server binds it: retry then.
        for attempt in 1..=3 {
            ch.http_port = free_port();
            ch.tcp_port = free_port();
            while ch.tcp_port == ch.http_port {
                ch.tcp_port = free_port();
            }
            ch.write_config();
            match ch.launch() {
                Ok(()) => return ch,
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!(
                    "ClickHouse ({}) did not become ready on http://127.0.0.1:{} (timeout {:?}){log}",
                    ch.bin.display(),
                    ch.http_port,
                    READY_TIMEOUT
                ),
            }
        }
        unreachable!()
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let data = d.join("data");
        fs::create_dir_all(&data).expect("create ClickHouse data dir");
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{dir}/clickhouse-server.log</log>
        <errorlog>{dir}/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <path>{data}/</path>
    <tmp_path>{data}/tmp/</tmp_path>
    <user_files_path>{data}/user_files/</user_files_path>
    <format_schema_path>{data}/format_schemas/</format_schema_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <mlock_executable>false</mlock_executable>
</yandex>
"#,
            dir = d.display(),
            data = data.display(),
            http = self.http_port,
            tcp = self.tcp_port,
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"#;
        fs::write(d.join("config.xml"), config).expect("write ClickHouse config.xml");
        fs::write(d.join("users.xml"), users).expect("write ClickHouse users.xml");
    }

    fn log_files(&self) -> Vec<PathBuf> {
        let d = self.dir.path();
        [
            "stdout.log",
            "clickhouse-server.err.log",
            "clickhouse-server.log",
        ]
        .iter()
        .map(|f| d.join(f))
        .collect()
    }

    /// Spawn the server and wait for `/ping`; on failure the server is gone and Err holds its log tail.
    fn launch(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let out = append_log(&d.join("stdout.log"));
        let err = out.try_clone().expect("dup log fd");
        let mut cmd = Command::new(&self.bin);
        if let Some(sub) = self.subcommand {
            cmd.arg(sub);
        }
        cmd.arg(format!("--config-file={}", d.join("config.xml").display()))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}; {DEPS_HINT}", self.bin.display()));
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.http_port).into();
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                return Err(format!(
                    "\nthe server exited early ({status}){}",
                    tails(&self.log_files(), 40)
                ));
            }
            if let Ok(r) = http(addr, "GET", "/ping", b"", Duration::from_secs(2)) {
                if r.status == 200 && r.text().trim() == "Ok." {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Err(format!("\ntimed out{}", tails(&self.log_files(), 40)))
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
        self.dir.path()
    }
    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Raw HTTP request to the server (`target` is path + query string, e.g.
    /// `/?input_format_skip_unknown_fields=1`); transport errors panic, HTTP errors don't.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> HttpResponse {
        let addr: SocketAddr = ([127, 0, 0, 1], self.http_port).into();
        http(addr, method, target, body, Duration::from_secs(120))
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
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, "TERM", STOP_TIMEOUT);
        }
    }

    /// Start again on the same ports and data dir; waits for `/ping`.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!("ClickHouse did not come back up on {}{log}", self.url());
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // self.dir (TempDir) is removed after this.
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

pub const PG_USER: &str = "tollgate";
pub const PG_DB: &str = "tollgate";

/// A PostgreSQL server on loopback with its own temp cluster.
pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    psql: PathBuf,
    port: u16,
    /// (uid, gid) of the `postgres` system user when we are root, else None.
    run_as: Option<(u32, u32)>,
    // Last: removed after the process is gone.
    dir: TempDir,
}

impl Postgres {
    /// The highest-version `/usr/lib/postgresql/N/bin` holding initdb, pg_ctl and postgres.
    fn find_bin_dir() -> PathBuf {
        let mut looked = Vec::new();
        if let Some(p) = std::env::var_os("TOLLGATE_PG_BIN") {
            let p = PathBuf::from(p);
            if is_executable(&p.join("postgres")) && is_executable(&p.join("initdb")) {
                return p;
            }
            looked.push(format!("$TOLLGATE_PG_BIN={}", p.display()));
        }
        looked.push("/usr/lib/postgresql/*/bin".into());
        let mut best: Option<(Vec<u32>, PathBuf)> = None;
        if let Ok(rd) = fs::read_dir("/usr/lib/postgresql") {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(ver) = name
                    .split('.')
                    .map(str::parse::<u32>)
                    .collect::<Result<Vec<_>, _>>()
                else {
                    continue;
                };
                let bin = e.path().join("bin");
                let ok = ["initdb", "pg_ctl", "postgres"]
                    .iter()
                    .all(|b| is_executable(&bin.join(b)));
                if ok && best.as_ref().is_none_or(|(v, _)| ver > *v) {
                    best = Some((ver, bin));
                }
            }
        }
        if let Some((_, bin)) = best {
            return bin;
        }
        // Not Debian's layout: initdb on PATH (e.g. another distribution).
        looked.push("$PATH/initdb".into());
        if let Some(p) = on_path("initdb") {
            let dir = p.parent().unwrap().to_path_buf();
            if is_executable(&dir.join("postgres")) {
                return dir;
            }
        }
        missing(
            "The PostgreSQL server binaries (initdb, postgres)",
            "postgresql",
            &looked,
        )
    }

    fn find_psql(bin: &Path) -> PathBuf {
        let own = bin.join("psql");
        if is_executable(&own) {
            return own;
        }
        on_path("psql").unwrap_or_else(|| {
            missing(
                "The PostgreSQL client psql",
                "postgresql-client",
                &[own.display().to_string(), "$PATH/psql".into()],
            )
        })
    }

    /// A command for a server binary, as the `postgres` user when we are root.
    fn server_cmd(&self, prog: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(prog));
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            // std drops supplementary groups (setgroups(0)) when changing uid as root.
            cmd.uid(uid)
                .gid(gid)
                .env("HOME", self.dir.path())
                .env("USER", "postgres");
        }
        cmd
    }

    /// initdb into a fresh temp dir, start on a free loopback port, create database `tollgate`.
    pub fn start() -> Postgres {
        let bin = Self::find_bin_dir();
        let psql = Self::find_psql(&bin);
        let run_as = if euid() == 0 {
            Some(lookup_user("postgres").unwrap_or_else(|| {
                panic!(
                    "running as root, but there is no `postgres` system user to run PostgreSQL as \
                     (PostgreSQL refuses to run as root; the Debian package `postgresql` creates that \
                     user): {DEPS_HINT}"
                )
            }))
        } else {
            None
        };
        // The postgres user must be able to reach the temp dir: $TMPDIR may sit under /root.
        let mut base = std::env::temp_dir();
        if run_as.is_some() && !traversable_by_others(&base) {
            base = PathBuf::from("/tmp");
        }
        let dir = TempDir::new(&base, "tollgate-postgres");
        let mut pg = Postgres {
            child: None,
            bin,
            psql,
            port: 0,
            run_as,
            dir,
        };
        let sock = pg.dir.path().join("sock");
        fs::create_dir(&sock).expect("create PostgreSQL socket dir");
        if let Some((uid, gid)) = run_as {
            for p in [pg.dir.path(), sock.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", p.display()));
            }
        }

        let initdb_log = pg.dir.path().join("initdb.log");
        let out = append_log(&initdb_log);
        let status = pg
            .server_cmd("initdb")
            .arg("-D")
            .arg(pg.data())
            .args([
                "-A",
                "trust",
                "-U",
                PG_USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .status()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", pg.bin.join("initdb").display()));
        if !status.success() {
            panic!("initdb failed ({status}){}", tails(&[initdb_log], 40));
        }

        for attempt in 1..=3 {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("already in use") => continue,
                Err(log) => panic!(
                    "PostgreSQL did not become ready on 127.0.0.1:{}{log}",
                    pg.port
                ),
            }
        }
        pg.psql_db("postgres", &format!("CREATE DATABASE {PG_DB}"));
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_files(&self) -> Vec<PathBuf> {
        vec![self.dir.path().join("postgres.log")]
    }

    fn launch(&mut self) -> Result<(), String> {
        let out = append_log(&self.dir.path().join("postgres.log"));
        let err = out.try_clone().expect("dup log fd");
        let child = self
            .server_cmd("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=100", "-c", "shared_buffers=32MB"])
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.join("postgres").display()));
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                return Err(format!(
                    "\nthe server exited early ({status}){}",
                    tails(&self.log_files(), 40)
                ));
            }
            let ok = self
                .psql_cmd("postgres")
                .arg("-c")
                .arg("SELECT 1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Err(format!(
            "\ntimed out after {READY_TIMEOUT:?}{}",
            tails(&self.log_files(), 40)
        ))
    }

    fn psql_cmd(&self, db: &str) -> Command {
        let mut cmd = Command::new(&self.psql);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            PG_USER,
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-d", db])
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null());
        cmd
    }

    fn psql_db(&self, db: &str, sql: &str) -> String {
        let mut child = self
            .psql_cmd(db)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.psql.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .expect("write SQL to psql");
        let out = child.wait_with_output().expect("wait for psql");
        if !out.status.success() {
            panic!(
                "psql failed ({}):\n{}\nSQL: {sql}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// "postgres://tollgate@127.0.0.1:PORT/tollgate"
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{PG_DB}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Run SQL (one or more statements) in database `tollgate` with
    /// `psql -X -q -A -t -v ON_ERROR_STOP=1`; returns stdout trimmed, panics with stderr on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db(PG_DB, sql)
    }

    /// Fast shutdown (SIGINT, what `pg_ctl stop -m fast` sends) and wait; port and data are kept.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, "INT", STOP_TIMEOUT);
        }
    }

    /// Start again on the same port and data dir; waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!(
                "PostgreSQL did not come back up on 127.0.0.1:{}{log}",
                self.port
            );
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Immediate shutdown (SIGQUIT): the postmaster takes its backends down with it.
            stop_child(&mut c, "QUIT", Duration::from_secs(10));
        }
    }
}

/// Whether every ancestor of `p` lets other users through (o+x), as the postgres user needs.
fn traversable_by_others(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.ancestors().all(|a| {
        fs::metadata(a)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}
