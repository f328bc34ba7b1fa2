//! Every tunable of the core, with documented defaults.
//!
//! Defaults target a datacenter LAN (one-way latency around 0.25 ms, tail to a few ms):
//! a dead neighbour is noticed in about 100-200 ms, and independent packet loss of a few
//! percent does not close a live link (see [`PingConfig`]).

use crate::id::NodeId;
use crate::wire::Limits;
use std::net::SocketAddr;
use std::time::Duration;

/// Configuration of one [`crate::Node`].
#[derive(Clone, Debug)]
pub struct Config {
    /// This incarnation's identity.
    pub id: NodeId,
    /// Join seeds (the masters). Self is skipped if listed.
    pub contacts: Vec<SocketAddr>,
    /// Seed of the node's ChaCha generator: same seed and inputs, same outputs.
    pub seed: u64,
    pub membership: MembershipConfig,
    pub ping: PingConfig,
    pub records: RecordsConfig,
    /// Bounds on decoded frames.
    pub limits: Limits,
    pub reachability: ReachabilityConfig,
    /// Most outputs queued between two drains; beyond it outputs are dropped and counted.
    pub max_queued_outputs: usize,
}

impl Config {
    pub fn new(id: NodeId, contacts: Vec<SocketAddr>, seed: u64) -> Config {
        Config {
            id,
            contacts,
            seed,
            membership: MembershipConfig::default(),
            ping: PingConfig::default(),
            records: RecordsConfig::default(),
            limits: Limits::default(),
            reachability: ReachabilityConfig::default(),
            max_queued_outputs: 1 << 20,
        }
    }
}

/// HyParView parameters. Defaults are the paper's (Leitão et al., DSN 2007) where it gives
/// them; the timers are ours.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Active view size (monitored links). Paper: 5 (log10(n) + 1 for n = 10,000).
    pub active_max: usize,
    /// Passive view size (backups). Paper: 30.
    pub passive_max: usize,
    /// Active random walk length of FORWARD_JOIN. Paper: 6.
    pub arwl: u8,
    /// Passive random walk length: at this TTL the joiner enters the passive view. Paper: 3.
    pub prwl: u8,
    /// Active-view members sent in a SHUFFLE. Paper: 3.
    pub shuffle_active: usize,
    /// Passive-view members sent in a SHUFFLE. Paper: 4.
    pub shuffle_passive: usize,
    /// TTL of the SHUFFLE random walk.
    pub shuffle_ttl: u8,
    /// Period of SHUFFLE (jittered ±25%).
    pub shuffle_interval: Duration,
    /// How long to wait for a contact to answer JOIN before trying the next one.
    pub join_timeout: Duration,
    /// How long to wait for an answer to NEIGHBOR before trying another passive peer.
    pub neighbor_timeout: Duration,
    /// How often a node whose active view is not full asks a passive peer to link.
    pub refill_interval: Duration,
    /// How often a node that cannot reach some contact node considers linking to it
    /// directly (jittered; only about three nodes of a component act each round). This is
    /// what merges two overlays after a partition heals.
    pub contact_retry_interval: Duration,
    /// How long a passive peer whose link died is skipped when refilling the active view.
    pub failed_quarantine: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            active_max: 5,
            passive_max: 30,
            arwl: 6,
            prwl: 3,
            shuffle_active: 3,
            shuffle_passive: 4,
            shuffle_ttl: 6,
            shuffle_interval: Duration::from_secs(2),
            join_timeout: Duration::from_millis(250),
            neighbor_timeout: Duration::from_millis(300),
            refill_interval: Duration::from_millis(500),
            contact_retry_interval: Duration::from_secs(1),
            failed_quarantine: Duration::from_secs(10),
        }
    }
}

/// Adaptive ping on every active link.
///
/// Every `interval` a PING goes to each active neighbour. Its deadline is the adaptive
/// timeout: `rtt_multiplier` × the largest RTT in the last `rtt_window` samples, clamped to
/// `[timeout_floor, timeout_ceiling]`. Any message from the neighbour counts as an answer.
/// A missed deadline does not close the link: it starts a suspicion step that sends
/// `suspicion_probes` more pings, one every timeout / `suspicion_probes`, and the link is
/// declared dead only if nothing at all is heard for one timeout after the last probe.
/// A live link is therefore closed only when the ping and every probe (or every answer) are
/// lost: with independent loss p per packet that is about (2p)^(1 + probes) per ping.
#[derive(Clone, Debug)]
pub struct PingConfig {
    pub interval: Duration,
    pub rtt_window: usize,
    pub rtt_multiplier: u32,
    pub timeout_floor: Duration,
    pub timeout_ceiling: Duration,
    pub suspicion_probes: u32,
}

impl Default for PingConfig {
    fn default() -> Self {
        PingConfig {
            interval: Duration::from_millis(100),
            rtt_window: 32,
            rtt_multiplier: 4,
            timeout_floor: Duration::from_millis(30),
            timeout_ceiling: Duration::from_secs(1),
            suspicion_probes: 4,
        }
    }
}

/// The replicated per-node records.
#[derive(Clone, Debug)]
pub struct RecordsConfig {
    /// Most records (one per node address) held; records of new nodes beyond it are dropped
    /// and counted.
    pub max_records: usize,
    /// Period of anti-entropy with one random active neighbour (jittered ±25%).
    pub anti_entropy_interval: Duration,
    /// Least time between two versions of this node's own record: the first change after
    /// a quiet spell is published at once, a burst of changes (joins) in one version.
    pub publish_interval: Duration,
    /// How long a record waits to be flooded on, so that a burst travels in one message
    /// per neighbour. Adds at most this much per hop to propagation.
    pub flood_delay: Duration,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            max_records: 10_000,
            anti_entropy_interval: Duration::from_secs(1),
            publish_interval: Duration::from_millis(10),
            flood_delay: Duration::from_millis(2),
        }
    }
}

/// Reachability reporting.
#[derive(Clone, Debug)]
pub struct ReachabilityConfig {
    /// How long a node must stay unreached before it is reported unreachable; hides the
    /// sub-millisecond holes of record propagation (see [`crate::reachability`]).
    pub grace: Duration,
    /// Least time between two searches: a burst of record updates costs one search.
    pub recompute_interval: Duration,
}

impl Default for ReachabilityConfig {
    fn default() -> Self {
        ReachabilityConfig {
            grace: Duration::from_millis(20),
            recompute_interval: Duration::from_millis(10),
        }
    }
}
