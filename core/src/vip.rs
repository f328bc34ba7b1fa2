//! VIPs and their backends: the vocabulary shared by Mesos ingestion, the replicated
//! records, the desired data-plane state and the CLI.
//!
//! Invariants: every ordering here is total and derived from the fields in declaration
//! order, so a [`VipSet`] iterates the same way on every node (protocol, then address with
//! IP VIPs before named ones, then port; backends by ip, port, agent, weight).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// Layer-4 protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a VIP lives: a literal address, or a name that every node maps to the same
/// address (see `named`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VipAddr {
    Ip(IpAddr),
    /// Fully qualified below the cluster domain: label host and framework, each turned
    /// into DNS labels, e.g. `api.hello-world.marathon`.
    Named(String),
}

/// One VIP: protocol, address or name, port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Vip {
    pub protocol: Protocol,
    pub addr: VipAddr,
    pub port: u16,
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            VipAddr::Ip(IpAddr::V4(ip)) => write!(f, "{} {}:{}", self.protocol, ip, self.port),
            VipAddr::Ip(IpAddr::V6(ip)) => write!(f, "{} [{}]:{}", self.protocol, ip, self.port),
            VipAddr::Named(name) => write!(f, "{} {}:{}", self.protocol, name, self.port),
        }
    }
}

/// One backend of a VIP: where connections go, which Mesos agent runs it, and its weight
/// (1 normal, 0 drain: open connections finish, no new ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub ip: IpAddr,
    pub port: u16,
    pub agent: IpAddr,
    pub weight: u32,
}

/// Every VIP with its backends, as extracted from one Mesos document or as reported in one
/// node's record. A VIP with no backends is not stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipSet {
    pub vips: BTreeMap<Vip, BTreeSet<Backend>>,
}

impl VipSet {
    pub fn new() -> VipSet {
        VipSet::default()
    }

    /// Adds one backend to `vip`.
    pub fn insert(&mut self, vip: Vip, backend: Backend) {
        self.vips.entry(vip).or_default().insert(backend);
    }

    pub fn is_empty(&self) -> bool {
        self.vips.is_empty()
    }

    /// Number of (VIP, backend) pairs.
    pub fn backend_count(&self) -> usize {
        self.vips.values().map(BTreeSet::len).sum()
    }
}
