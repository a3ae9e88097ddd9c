//! The tests' one process supervisor: every server a test starts (tollgate, nginx, ClickHouse,
//! PostgreSQL, Chromium) runs as a [`Process`] in its own temp dir, on ports from [`free_ports`],
//! with its output in a log file whose tail is quoted when it fails to start or stop.
//!
//! A [`Process`] is a direct child of the test process, so `Drop` can always stop it and reap
//! it: no test leaves a server behind, and none needs `pkill`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How many lines of each log file a failure quotes.
const TAIL_LINES: usize = 60;
/// How often [`Process::wait_ready`] probes and checks that the process still runs.
const POLL: Duration = Duration::from_millis(25);

/// `n` distinct free loopback ports: all bound at once (so they differ), then released.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// A fresh directory under `$TMPDIR`, removed when dropped.
pub fn temp_dir() -> TempDir {
    temp_dir_in(&std::env::temp_dir(), "test")
}

/// A fresh directory under `base` named after `what`, removed when dropped.
pub fn temp_dir_in(base: &Path, what: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tollgate-{what}-"))
        .tempdir_in(base)
        .unwrap_or_else(|e| panic!("cannot create a temp dir under {}: {e}", base.display()))
}

/// Whether `addr` accepts a TCP connection now.
pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// The last `n` lines of each existing file, for panic messages.
pub fn tails(files: &[PathBuf], n: usize) -> String {
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

/// A file opened for appending, so that a restarted server adds to its old log.
pub fn append_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log {}: {e}", path.display()))
}

/// A server process under supervision, with its temp dir and its log files.
///
/// Created stopped with [`Process::new`]; [`spawn`](Process::spawn) starts it (again, after a
/// [`stop`](Process::stop)) with stdout and stderr appended to `NAME.log` in its dir.
pub struct Process {
    name: String,
    child: Option<Child>,
    /// Files quoted on failure: `NAME.log` first, then what the server writes itself.
    logs: Vec<PathBuf>,
    /// How `Drop` stops a running process: this signal, then SIGKILL after the grace.
    drop_signal: (i32, Duration),
    // Last: removed after the process is gone.
    dir: TempDir,
}

impl Process {
    /// A stopped process called `name` (used in messages and for its log file) living in `dir`.
    pub fn new(name: &str, dir: TempDir) -> Process {
        let log = dir.path().join(format!("{name}.log"));
        Process {
            name: name.to_string(),
            child: None,
            logs: vec![log],
            drop_signal: (libc::SIGKILL, Duration::ZERO),
            dir,
        }
    }

    /// Also quote `file` (a log the server writes itself) when it fails.
    pub fn tail_also(mut self, file: PathBuf) -> Process {
        self.logs.push(file);
        self
    }

    /// Stop with `signal` (then SIGKILL after `grace`) when dropped, instead of SIGKILL: for a
    /// server that must take its own children down (nginx's workers, PostgreSQL's backends).
    pub fn on_drop(mut self, signal: i32, grace: Duration) -> Process {
        self.drop_signal = (signal, grace);
        self
    }

    /// The process's own directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The output that `spawn` collects: stdout and stderr of every run.
    pub fn log_path(&self) -> &Path {
        &self.logs[0]
    }

    /// The whole of [`log_path`](Self::log_path), or "" when nothing was written.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last lines of every log file, for failure messages.
    pub fn log_tail(&self) -> String {
        tails(&self.logs, TAIL_LINES)
    }

    /// Start `cmd` with stdin closed and stdout and stderr appended to the log.
    pub fn spawn(&mut self, mut cmd: Command) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let out = append_log(self.log_path());
        let err = out.try_clone().expect("dup the log's file descriptor");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} ({:?}): {e}", self.name, cmd.get_program()));
        self.child = Some(child);
    }

    /// The pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Poll `probe` until it gives a value, for at most `timeout`. Err (with the log tail) when
    /// the process exits first or time runs out; it is then stopped and reaped.
    pub fn try_wait_ready<T>(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T, String> {
        let start = Instant::now();
        loop {
            let child = self
                .child
                .as_mut()
                .expect("wait_ready on a process never spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("exited early ({status}){}", self.log_tail()));
            }
            if let Some(v) = probe() {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                self.kill9();
                return Err(format!("not ready after {timeout:?}{}", self.log_tail()));
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`try_wait_ready`](Self::try_wait_ready), panicking with the log tail on failure.
    pub fn wait_ready<T>(&mut self, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
        self.try_wait_ready(timeout, probe)
            .unwrap_or_else(|why| panic!("{} did not start: {why}", self.name))
    }

    /// Send `signal` to the process, if it runs.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own unreaped child: the pid cannot have been reused.
            unsafe {
                libc::kill(pid as i32, signal);
            }
        }
    }

    /// Send `signal` and wait up to `grace` for the exit. Err (with the log tail) when it had
    /// to be SIGKILLed after all; Ok(None) when it was not running.
    pub fn stop(&mut self, signal: i32, grace: Duration) -> Result<Option<ExitStatus>, String> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Some(status));
        }
        // SAFETY: as in `signal`.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "{} did not exit within {grace:?} of signal {signal}: SIGKILLed{}",
            self.name,
            self.log_tail()
        ))
    }

    /// SIGKILL, and wait until the process is gone (its locks and ports go with it).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let (signal, grace) = self.drop_signal;
        let _ = self.stop(signal, grace);
    }
}
