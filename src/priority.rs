//! Analytics behind the site on the CPU, when `pipeline.background_nice` says so: the writer,
//! DuckDB's own threads and the sinks run at that nice value, the proxy at the process's own.
//! When the two compete for the cores, the kernel then runs the proxy's threads first, so a
//! commit or a checkpoint delays the queue rather than a response; with idle CPU nothing
//! changes.
//!
//! On Linux the nice value belongs to each thread, and a new thread starts with its creator's.

/// Set the calling thread's nice value to `nice` if that lowers its priority. Best effort:
/// where the scheduler refuses, the thread keeps its priority.
pub fn lower(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: get/setpriority have no memory effects; `who` 0 is the calling thread on Linux.
    unsafe {
        if nice > libc::getpriority(libc::PRIO_PROCESS, 0) {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        }
    }
}

/// The calling thread's nice value (0 where there is none).
pub fn current() -> i32 {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority has no memory effects; `who` 0 is the calling thread on Linux.
    unsafe {
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Run `f` on a short-lived thread at `nice`, so that the threads it creates (DuckDB's, when
/// `f` opens the store) start at that priority too.
pub fn background<T: Send>(nice: i32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        match s
            .spawn(|| {
                lower(nice);
                f()
            })
            .join()
        {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
