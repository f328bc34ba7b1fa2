//! What the host needs around IPVS besides the services: the sysctls and the masquerade
//! rule.
//!
//! - Sysctls (per network namespace, present once `ip_vs` is loaded):
//!   `net.ipv4.vs.conntrack=1` (IPVS connections get conntrack entries, which the
//!   masquerade needs) and `net.ipv4.vs.expire_nodest_conn=1` (a packet for a removed
//!   destination expires its connection, so a retransmitted SYN is scheduled anew).
//! - The masquerade rule the original Minuteman used, in iptables (iptables-nft or
//!   legacy, whichever `iptables` is): connections IPVS originated, direction ORIGINAL,
//!   method MASQ, are masqueraded, so replies come back through this host for IPVS to
//!   translate. nftables has no IPVS match, so iptables it is.
//!
//! Invariants:
//! - [`ensure_sysctls`] sets what is not set and fails naming each sysctl it could neither
//!   set nor find set; [`ensure_masquerade`] adds the rule only when `-C` says it is
//!   missing, so restarts never duplicate it; [`remove_masquerade`] deletes every copy.

use std::path::Path;
use std::process::Command;

/// The sysctls IPVS needs, as (`/proc/sys` path, name, value).
pub const SYSCTLS: [(&str, &str, &str); 2] = [
    (
        "/proc/sys/net/ipv4/vs/conntrack",
        "net.ipv4.vs.conntrack",
        "1",
    ),
    (
        "/proc/sys/net/ipv4/vs/expire_nodest_conn",
        "net.ipv4.vs.expire_nodest_conn",
        "1",
    ),
];

/// How connections through a VIP get their source address rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Masquerade {
    /// The iptables rule (`-m ipvs --vdir ORIGINAL --vmethod MASQ -j MASQUERADE`).
    Iptables,
    /// None: the operator's own rules route replies back through this host.
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("sysctl {name} is {found:?}, needs {want} and cannot be set ({error}); set it, e.g. `sysctl -w {name}={want}`")]
    Sysctl {
        name: &'static str,
        found: String,
        want: &'static str,
        error: String,
    },
    #[error("cannot run {binary} for the IPVS masquerade rule ({error}); install iptables or start with --ipvs-masquerade none")]
    Spawn { binary: String, error: String },
    #[error(
        "{binary} refused the IPVS masquerade rule: {stderr} (is the xt_ipvs module available?)"
    )]
    Refused { binary: String, stderr: String },
}

/// Sets the sysctls IPVS needs; returns the names of those it changed.
pub fn ensure_sysctls() -> Result<Vec<&'static str>, HostError> {
    let mut changed = Vec::new();
    for (path, name, want) in SYSCTLS {
        let found = read(path);
        if found.as_deref() == Some(want) {
            continue;
        }
        match std::fs::write(path, want) {
            Ok(()) if read(path).as_deref() == Some(want) => changed.push(name),
            result => {
                return Err(HostError::Sysctl {
                    name,
                    found: found.unwrap_or_else(|| "absent".to_owned()),
                    want,
                    error: match result {
                        Ok(()) => "it did not change".to_owned(),
                        Err(e) => e.to_string(),
                    },
                })
            }
        }
    }
    Ok(changed)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(path))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The rule, after `-t nat` and the action (`-C`, `-A`, `-D`).
const RULE: [&str; 13] = [
    "POSTROUTING",
    "-m",
    "ipvs",
    "--ipvs",
    "--vdir",
    "ORIGINAL",
    "--vmethod",
    "MASQ",
    "-m",
    "comment",
    "--comment",
    "minuteman",
    "-j",
];

fn rule(binary: &str, action: &str) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(["-w", "5", "-t", "nat", action])
        .args(RULE)
        .arg("MASQUERADE");
    cmd
}

fn run(mut cmd: Command, binary: &str) -> Result<std::process::Output, HostError> {
    cmd.output().map_err(|e| HostError::Spawn {
        binary: binary.to_owned(),
        error: e.to_string(),
    })
}

/// The iptables binaries for IPv4 and, when present, IPv6.
fn binaries(iptables: &str) -> Vec<String> {
    let v6 = iptables.replacen("iptables", "ip6tables", 1);
    let mut out = vec![iptables.to_owned()];
    if v6 != iptables
        && Command::new(&v6)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        out.push(v6);
    }
    out
}

/// Adds the masquerade rule where `-C` says it is missing (IPv4, and IPv6 when
/// `ip6tables` exists); returns whether it added any.
pub fn ensure_masquerade(iptables: &str) -> Result<bool, HostError> {
    let mut added = false;
    for binary in binaries(iptables) {
        if run(rule(&binary, "-C"), &binary)?.status.success() {
            continue;
        }
        let out = run(rule(&binary, "-A"), &binary)?;
        if !out.status.success() {
            return Err(HostError::Refused {
                binary,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        added = true;
    }
    Ok(added)
}

/// Deletes every copy of the masquerade rule; a missing binary or rule is fine.
pub fn remove_masquerade(iptables: &str) {
    for binary in binaries(iptables) {
        // Each -D removes one copy; at most a few can exist.
        for _ in 0..16 {
            match run(rule(&binary, "-D"), &binary) {
                Ok(out) if out.status.success() => continue,
                _ => break,
            }
        }
    }
}
