//! Finding the servers the tests need. A missing one is a loud failure that names the Debian
//! package to install: these integration tests never skip.

use std::path::{Path, PathBuf};

/// How to get every test server at once.
pub const DEPS_HINT: &str =
    "run `bash .ci/deps test` (as root, or with sudo) to install the test servers";

/// Fail the test: `what` is not installed; `looked` lists where it was looked for.
pub fn missing(what: &str, package: &str, looked: &[String]) -> ! {
    panic!(
        "\n\n==== MISSING TEST DEPENDENCY ====\n{what} not found (looked in: {}).\n\
         Install the Debian package `{package}`: {DEPS_HINT}.\n\
         These integration tests need a real server and are never skipped.\n\
         =================================\n",
        looked.join(", ")
    )
}

/// The first executable of `paths`, or a [`missing`] failure naming `package`.
pub fn find_installed(what: &str, package: &str, paths: &[&str]) -> PathBuf {
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| is_executable(p))
        .unwrap_or_else(|| {
            let looked: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            missing(what, package, &looked)
        })
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `name` in a directory of `$PATH`, when it is executable there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}
