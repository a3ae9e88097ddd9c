//! A real PostgreSQL server for the sink tests: the highest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql`), `initdb` into a fresh temp dir, trust auth, superuser and database
//! `tollgate`, TCP on a free loopback port, run by the tests' [`Process`] supervisor.
//!
//! As root, PostgreSQL runs as the `postgres` system user (set with `CommandExt::uid/gid`, no
//! `su` wrapper in between, so the pid the supervisor holds is the postmaster's own).

use super::deps::{is_executable, missing, on_path, DEPS_HINT};
use super::process::{append_log, free_port, tails, temp_dir_in, Process};
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const PG_USER: &str = "tollgate";
pub const PG_DB: &str = "tollgate";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL server on loopback with its own temp cluster.
pub struct Postgres {
    process: Process,
    bin: PathBuf,
    psql: PathBuf,
    port: u16,
    /// (uid, gid) of the `postgres` system user when we are root, else None.
    run_as: Option<(u32, u32)>,
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
        if let Some(bin) = debian_bin_dir() {
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
        cmd.current_dir(self.dir()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            // std drops supplementary groups (setgroups(0)) when changing uid as root.
            cmd.uid(uid)
                .gid(gid)
                .env("HOME", self.dir())
                .env("USER", "postgres");
        }
        cmd
    }

    /// initdb into a fresh temp dir, start on a free loopback port, create database `tollgate`.
    pub fn start() -> Postgres {
        let bin = Self::find_bin_dir();
        let psql = Self::find_psql(&bin);
        let run_as = (euid() == 0).then(postgres_user);
        // The postgres user must be able to reach the temp dir: $TMPDIR may sit under /root.
        let mut base = std::env::temp_dir();
        if run_as.is_some() && !traversable_by_others(&base) {
            base = PathBuf::from("/tmp");
        }
        let process = Process::new("postgres", temp_dir_in(&base, "postgres"))
            // Immediate shutdown (SIGQUIT): the postmaster takes its backends down with it.
            .on_drop(libc::SIGQUIT, Duration::from_secs(10));
        let mut pg = Postgres {
            process,
            bin,
            psql,
            port: 0,
            run_as,
        };
        pg.initdb();
        for attempt in 1..=3 {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("already in use") => continue,
                Err(log) => panic!(
                    "PostgreSQL did not become ready on 127.0.0.1:{}: {log}",
                    pg.port
                ),
            }
        }
        pg.psql_db("postgres", &format!("CREATE DATABASE {PG_DB}"));
        pg
    }

    /// The socket dir and a fresh cluster in `data`, owned by the user the server runs as.
    fn initdb(&self) {
        let sock = self.dir().join("sock");
        fs::create_dir(&sock).expect("create PostgreSQL socket dir");
        if let Some((uid, gid)) = self.run_as {
            for p in [self.dir(), sock.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", p.display()));
            }
        }
        let initdb_log = self.dir().join("initdb.log");
        let out = append_log(&initdb_log);
        let status = self
            .server_cmd("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-A", "trust", "-U", PG_USER, "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .status()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.join("initdb").display()));
        if !status.success() {
            panic!("initdb failed ({status}){}", tails(&[initdb_log], 40));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Spawn the postmaster and wait until psql gets in; on failure the server is gone and Err
    /// holds its log tail.
    fn launch(&mut self) -> Result<(), String> {
        let mut cmd = self.server_cmd("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=100", "-c", "shared_buffers=32MB"]);
        self.process.spawn(cmd);
        let mut probe = self.psql_cmd("postgres");
        probe
            .args(["-c", "SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.process.try_wait_ready(READY_TIMEOUT, || {
            probe.status().is_ok_and(|s| s.success()).then_some(())
        })
    }

    fn psql_cmd(&self, db: &str) -> Command {
        let mut cmd = Command::new(&self.psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", PG_USER])
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
        self.process.dir()
    }
    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Run SQL (one or more statements) in database `tollgate` with
    /// `psql -X -q -A -t -v ON_ERROR_STOP=1`; returns stdout trimmed, panics with stderr on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db(PG_DB, sql)
    }

    /// Fast shutdown (SIGINT, what `pg_ctl stop -m fast` sends) and wait; port and data are kept.
    pub fn stop(&mut self) {
        // Killed after the timeout: all a restart needs is that it is gone.
        let _ = self.process.stop(libc::SIGINT, STOP_TIMEOUT);
    }

    /// Start again on the same port and data dir; waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch() {
            panic!(
                "PostgreSQL did not come back up on 127.0.0.1:{}: {log}",
                self.port
            );
        }
    }
}

/// The highest-version `/usr/lib/postgresql/N/bin` with initdb, pg_ctl and postgres in it.
fn debian_bin_dir() -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for e in fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
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
    best.map(|(_, bin)| bin)
}

/// uid and gid of the `postgres` system user, to run the server as when we are root
/// (PostgreSQL refuses to run as root).
fn postgres_user() -> (u32, u32) {
    lookup_user("postgres").unwrap_or_else(|| {
        panic!(
            "running as root, but there is no `postgres` system user to run PostgreSQL as \
             (PostgreSQL refuses to run as root; the Debian package `postgresql` creates that \
             user): {DEPS_HINT}"
        )
    })
}

/// The effective uid of this process.
fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
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

/// Whether every ancestor of `p` lets other users through (o+x), as the postgres user needs.
fn traversable_by_others(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.ancestors().all(|a| {
        fs::metadata(a)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}
