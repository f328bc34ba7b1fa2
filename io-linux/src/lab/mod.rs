//! A cluster of hosts in network namespaces on this machine: the stage of `minuteman demo`
//! and the harness of the end-to-end tests (`io-linux/tests/support`). Needs root and
//! iproute2 (`ip`); the agents' nftables data plane needs `nft`.
//!
//! Layout (P = a name prefix, S = a subnet number, i = 1..=N):
//! - [`net`]: namespace `P-sw` holds a bridge `br0`; host `P-hI` hangs off it by a veth
//!   (`eI` in the host, `pI` on the bridge) with `10.77.S.I/24` and `fd77:S::I/64`, and a
//!   default route on that link (for IPv4 and IPv6) so VIPs are routed like any address
//!   off the host; optionally `P-c1`, a container behind host 1 (bridge `cbr0` in host 1
//!   with `10.78.S.1/24`, the container at `10.78.S.2`, host 1 forwarding);
//! - [`backend`]: `minuteman lab-backend`, a server answering its host's name over HTTP
//!   (IPv4 and IPv6) and UDP, one per host;
//! - [`mesos`]: the Mesos agent `/state` documents the agents read from files;
//! - [`request`]: one HTTP GET (a new connection each) or one UDP question, from inside a
//!   namespace, and the tally of who answered;
//! - [`cluster`]: all of it together with one `minuteman agent` per host;
//! - [`forge`]: frames a hostile host sends to an agent (forged with the key, or garbage).
//!
//! Invariants:
//! - Nothing here touches the machine's own network namespace: every interface, address,
//!   route and process lives in a namespace named `P-…` that this module created, and
//!   every packet it sends stays inside them.
//! - Building first removes what an earlier run with the same prefix left behind (a run
//!   killed before its teardown): the processes inside those namespaces are killed and the
//!   namespaces deleted.
//! - Teardown, explicit or on drop (also while unwinding from a panic), kills every process
//!   started here and any other process inside the lab's namespaces, then deletes the
//!   namespaces. It is idempotent and never fails half-way: every step is attempted.
//! - Every failure is a [`LabError`]; a failed command is named with its stderr.

pub mod backend;
pub mod cluster;
pub mod forge;
pub mod mesos;
pub mod net;
pub mod request;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// What went wrong while building, driving or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {ns}: {source}")]
    Netns { ns: String, source: std::io::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: not within {limit:?}")]
    Timeout { what: String, limit: Duration },
    #[error("h{host}'s agent exited ({status}); the end of its log ({log}):\n{tail}")]
    AgentExited {
        host: usize,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> LabError {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}

/// `program arg arg…`, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; its output if it succeeded, else an error naming it with its
/// stderr.
pub fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let out = cmd.output().map_err(|source| LabError::Spawn {
        command: describe(cmd),
        source,
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// `ip ARGS…`, checked.
pub fn ip(args: &[&str]) -> Result<Output, LabError> {
    run(Command::new("ip").args(args))
}

/// Polls `check` every 20 ms until it says yes (then returns how long it took) or `limit`
/// passes (then `None`). An error from `check` ends the wait at once.
pub fn wait_until<E>(
    limit: Duration,
    mut check: impl FnMut() -> Result<bool, E>,
) -> Result<Option<Duration>, E> {
    let start = Instant::now();
    loop {
        if check()? {
            return Ok(Some(start.elapsed()));
        }
        if start.elapsed() > limit {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether this process runs as root (the lab creates namespaces and interfaces).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where `program` is on `PATH`, if it is.
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// What this machine lacks to run a lab needing `tools`: `root`, then each missing
/// program as `` `nft` ``.
pub fn missing_requirements(tools: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_owned());
    }
    for tool in tools {
        if find_program(tool).is_none() {
            missing.push(format!("`{tool}`"));
        }
    }
    missing
}

/// For tests that need a lab: whether they can run here; prints why not. With
/// `MINUTEMAN_REQUIRE_ROOT_SUITES=1` (set by `.ci/run`) a missing requirement panics
/// instead.
pub fn root_suite_ready(test: &str, tools: &[&str]) -> bool {
    let required = std::env::var("MINUTEMAN_REQUIRE_ROOT_SUITES").is_ok_and(|v| v == "1");
    let missing = missing_requirements(tools);
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test}: skipped: needs {}", missing.join(", "));
    assert!(!required, "{why} (MINUTEMAN_REQUIRE_ROOT_SUITES=1)");
    eprintln!("{why}");
    false
}

/// The last `lines` lines of a text file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_is_named_with_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c echo oops >&2; exit 3"), "{text}");
        assert!(text.contains("oops"), "{text}");
        let err = run(&mut Command::new("/nonexistent/program")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot run `/nonexistent/program`"));
    }

    #[test]
    fn wait_until_reports_the_time_or_none() {
        let mut n = 0;
        let took = wait_until(Duration::from_secs(5), || {
            n += 1;
            Ok::<_, ()>(n == 3)
        });
        assert!(took.unwrap().is_some());
        let never = wait_until(Duration::from_millis(30), || Ok::<_, ()>(false));
        assert_eq!(never, Ok(None));
        assert_eq!(
            wait_until(Duration::from_secs(5), || Err::<bool, _>(7)),
            Err(7)
        );
    }

    #[test]
    fn programs_are_found_on_the_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-not-a-program-here").is_none());
    }
}
