//! Node identity: the advertised peer address plus an epoch.
//!
//! Invariant: a node's epoch strictly increases across restarts (the shell persists it), so
//! for one address the incarnation with the highest epoch is the live one and supersedes
//! every older one in views, records and reachability.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// One incarnation of a node.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// Where peers reach this node (IP:port); also names the Mesos agent it reports.
    pub addr: SocketAddr,
    /// Chosen at start, strictly increasing across restarts.
    pub epoch: u64,
}

impl NodeId {
    pub const fn new(addr: SocketAddr, epoch: u64) -> NodeId {
        NodeId { addr, epoch }
    }

    /// Same address, any epoch.
    pub fn same_host(&self, other: &NodeId) -> bool {
        self.addr == other.addr
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.addr, self.epoch)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
