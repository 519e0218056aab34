//! What the test suites share: how a test that needs something from outside the repository
//! (PostgreSQL, `dig`, `tshark`, Kannel, a Python package) behaves when it is missing, the
//! check of a server's error answers ([`http`]) and of its OpenAPI document ([`openapi`]),
//! packet captures on lo for tshark ([`capture`]), and whether a program a test started listens
//! yet ([`listening`]).
//!
//! Under CI (`CI=true`) a missing prerequisite fails the test with a message that names it, so
//! a green run can never mean "skipped". Elsewhere the test prints one line that says what was
//! skipped and how to enable it, and returns.
//!
//! ```no_run
//! # fn test() {
//! let Some(dig) = testkit::command("dig", "apt-get install dnsutils") else { return };
//! # }
//! ```

pub mod capture;
pub mod http;
pub mod openapi;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether this run is CI's: `CI` set to `true` (or `1`), as CI services set it.
pub fn under_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// A prerequisite is missing: fail under CI, otherwise say what is skipped and how to enable it.
/// The caller returns from the test after this.
#[track_caller]
pub fn skip(what: &str, enable: &str) {
    if under_ci() {
        panic!("{what} is missing, and under CI=true a test does not skip: {enable}");
    }
    eprintln!("skipped: {what} is missing ({enable})");
}

/// The value of environment variable `var`, or [`skip`] with `enable`.
#[track_caller]
pub fn env(var: &str, enable: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            skip(&format!("environment variable {var}"), enable);
            None
        }
    }
}

/// The PostgreSQL server the tests use (`NUMPORT_TEST_POSTGRES_URL`), or [`skip`].
#[track_caller]
pub fn postgres_url() -> Option<String> {
    env(
        "NUMPORT_TEST_POSTGRES_URL",
        "set NUMPORT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test to a server that lets the user create databases",
    )
}

/// The path of `program`, found on `PATH` or in `/usr/local/sbin`, `/usr/sbin` and `/sbin` (where
/// servers such as Kannel's are installed, outside a non-root user's `PATH`), or [`skip`] with
/// `enable`.
#[track_caller]
pub fn command(program: &str, enable: &str) -> Option<PathBuf> {
    let found = find_program(program);
    if found.is_none() {
        skip(&format!("program `{program}`"), enable);
    }
    found
}

/// Whether `python3` can import `module`, or [`skip`] with `enable`.
#[track_caller]
pub fn python_module(module: &str, enable: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(&format!("Python module `{module}`"), enable);
    }
    ok
}

pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether something listens on loopback `port`, for a test waiting on a program it started.
///
/// A connect to a free port of the ephemeral range can take that same port as its own source
/// and connect to itself (TCP simultaneous open), which looks like a listener; such a socket
/// has its own address as its peer, and counts as nothing listening.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_program_every_machine_has() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-numport").is_none());
    }

    #[test]
    fn listening_sees_a_listener_and_nothing_on_a_free_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(super::listening(port));
        drop(listener);
        // A free port reads as nothing listening however often it is asked (a self-connect,
        // should one of the attempts make it, included).
        assert!((0..200).all(|_| !super::listening(port)));
    }
}
