//! Every tunable of the core, with documented defaults.
//!
//! Defaults target a datacenter LAN (one-way latency around 0.25 ms, tail to a few ms):
//! a dead neighbour is noticed in about 100-200 ms, and independent packet loss of a few
//! percent does not close a live link (see [`PingConfig`]).
//!
//! A config is checked once, by [`Config::validate`], and then used as it is.
//!
//! Invariants (of every config that passes [`Config::validate`]; the defaults do):
//! - Every count used as a divisor, chunk size or capacity is at least 1, and every timer
//!   interval is above zero, so no timer fires at every poll.
//! - Every duration fits the core's clock (`u64` nanoseconds), so timer arithmetic and
//!   jitter cannot overflow.
//! - Ordered pairs are ordered: `ping.timeout_floor <= ping.timeout_ceiling`,
//!   `membership.prwl <= membership.arwl`, `membership.active_min <= membership.active_max`,
//!   `membership.active_max <= 64`.
//! - What this node sends fits what an identically configured peer accepts: a SHUFFLE
//!   sample fits `limits.max_shuffle_nodes`, its adjacency fits `limits.max_adjacency`
//!   and `limits.max_record_bytes`, and a record of `limits.max_record_bytes` fits a frame.
//! - The node's own address is one peers can reach (no unspecified IP, no port 0), and so
//!   is every contact.

use crate::auth::FrameAuth;
use crate::id::NodeId;
use crate::node::MAX_NEIGHBOURS;
use crate::records::RecordBody;
use crate::wire::{Limits, RECORD_FRAME_OVERHEAD};
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The longest duration the core's clock can add (`Time` is `u64` nanoseconds).
pub const MAX_DURATION: Duration = Duration::from_nanos(u64::MAX);

/// Why a config was refused: the offending field, by its path in [`Config`], and the rule
/// it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {field} {problem}")]
pub struct ConfigError {
    /// Path of the field, as written in Rust: `ping.timeout_floor`, `limits.max_frame_len`.
    pub field: &'static str,
    pub problem: Problem,
}

/// The rule a config field breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A count used as a divisor, chunk size or capacity, or a timer interval, is zero.
    #[error("must be above zero")]
    Zero,
    /// A duration beyond the core's clock.
    #[error("must be at most {max:?}")]
    TooLong { max: Duration },
    /// Larger than another field it must not exceed.
    #[error("must not exceed {bound}")]
    Exceeds { bound: &'static str },
    /// Must be above another field.
    #[error("must be above {other}")]
    NotAbove { other: &'static str },
    /// Above a fixed limit of the core.
    #[error("must be at most {max} ({why})")]
    AboveLimit { max: u64, why: &'static str },
    /// Too small to hold what the node sends.
    #[error("must be at least {min} to hold {what}")]
    TooSmall { min: u64, what: &'static str },
    /// An address peers cannot reach: unspecified IP or port 0.
    #[error("{addr} is not an address peers can reach (unspecified IP or port 0)")]
    Unreachable { addr: SocketAddr },
}

fn error(field: &'static str, problem: Problem) -> ConfigError {
    ConfigError { field, problem }
}

fn count(field: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(error(field, Problem::Zero));
    }
    Ok(())
}

fn duration(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        return Err(error(field, Problem::TooLong { max: MAX_DURATION }));
    }
    Ok(())
}

fn interval(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    duration(field, value)?;
    if value.is_zero() {
        return Err(error(field, Problem::Zero));
    }
    Ok(())
}

fn at_least(
    field: &'static str,
    value: u64,
    min: u64,
    what: &'static str,
) -> Result<(), ConfigError> {
    if value < min {
        return Err(error(field, Problem::TooSmall { min, what }));
    }
    Ok(())
}

fn reachable(field: &'static str, addr: SocketAddr) -> Result<(), ConfigError> {
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(error(field, Problem::Unreachable { addr }));
    }
    Ok(())
}

fn u(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The largest encoded body of a record listing `neighbours` nodes and nothing else: what
/// this node publishes when it reports no services.
fn adjacency_record_bytes(neighbours: usize) -> u64 {
    let worst = NodeId::new(
        SocketAddr::new(Ipv6Addr::from(u128::MAX).into(), u16::MAX),
        u64::MAX,
    );
    let per_node = postcard::experimental::serialized_size(&worst).map_or(u64::MAX, u);
    let empty = postcard::experimental::serialized_size(&RecordBody::default()).map_or(u64::MAX, u);
    // The empty body has a one-byte list length; a long list's takes up to ten.
    empty
        .saturating_add(9)
        .saturating_add(per_node.saturating_mul(u(neighbours)))
}

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
    /// How frames are authenticated: the cluster key(s), or an explicit `Insecure`.
    pub auth: FrameAuth,
}

impl Config {
    /// A config with every default; `auth` is required: there is no silent insecure mode.
    pub fn new(id: NodeId, contacts: Vec<SocketAddr>, seed: u64, auth: FrameAuth) -> Config {
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
            auth,
        }
    }

    /// Checks every rule of the module doc; the first broken one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        reachable("id.addr", self.id.addr)?;
        for &contact in &self.contacts {
            reachable("contacts", contact)?;
        }
        self.membership.validate()?;
        self.ping.validate()?;
        self.records.validate()?;
        self.reachability.validate()?;
        self.validate_limits()?;
        count("max_queued_outputs", u(self.max_queued_outputs))
    }

    /// The frame bounds, against what this node itself sends (peers are assumed to share
    /// the same limits).
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let (l, m) = (&self.limits, &self.membership);
        count(
            "limits.max_records_per_message",
            u(l.max_records_per_message),
        )?;
        count("limits.max_digest_entries", u(l.max_digest_entries))?;
        at_least(
            "limits.max_shuffle_nodes",
            u(l.max_shuffle_nodes),
            u(m.shuffle_active)
                .saturating_add(u(m.shuffle_passive))
                .saturating_add(1),
            "a SHUFFLE: the sender, membership.shuffle_active and membership.shuffle_passive",
        )?;
        at_least(
            "records.max_stored_backends",
            u(self.records.max_stored_backends),
            u(l.max_record_backends),
            "one record of limits.max_record_backends",
        )?;
        at_least(
            "limits.max_adjacency",
            u(l.max_adjacency),
            u(m.active_max),
            "a record listing membership.active_max neighbours",
        )?;
        at_least(
            "limits.max_record_bytes",
            u(l.max_record_bytes),
            adjacency_record_bytes(m.active_max),
            "a record listing membership.active_max neighbours",
        )?;
        at_least(
            "limits.max_frame_len",
            u(l.max_frame_len),
            u(l.max_record_bytes).saturating_add(u(RECORD_FRAME_OVERHEAD)),
            "a record of limits.max_record_bytes and its frame headers",
        )
    }
}

/// HyParView parameters. Defaults are the paper's (Leitão et al., DSN 2007) where it gives
/// them; the timers are ours.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Active view size (monitored links). Paper: 5 (log10(n) + 1 for n = 10,000). At
    /// most 64.
    pub active_max: usize,
    /// Below this many active links a refill asks with HIGH priority, which a full peer
    /// must accept (it evicts one of its best-connected neighbours). HyParView asks with
    /// HIGH only when the view is empty, and every full peer refuses a LOW request, so a
    /// node could keep one or two links for many seconds: if those neighbours crashed
    /// together, nobody would list it and every node would report it down until its new
    /// links went out. At most `active_max`; 0 or 1 is the paper's rule.
    pub active_min: usize,
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

impl MembershipConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        count("membership.active_max", u(self.active_max))?;
        if self.active_max > MAX_NEIGHBOURS {
            return Err(error(
                "membership.active_max",
                Problem::AboveLimit {
                    max: u(MAX_NEIGHBOURS),
                    why: "the flood queue tells apart 64 neighbours",
                },
            ));
        }
        count("membership.passive_max", u(self.passive_max))?;
        if self.active_min > self.active_max {
            return Err(error(
                "membership.active_min",
                Problem::Exceeds {
                    bound: "membership.active_max",
                },
            ));
        }
        if self.prwl > self.arwl {
            // The walk starts at arwl and counts down: a larger prwl is never reached.
            return Err(error(
                "membership.prwl",
                Problem::Exceeds {
                    bound: "membership.arwl",
                },
            ));
        }
        interval("membership.shuffle_interval", self.shuffle_interval)?;
        // Zero would restart the join at every poll while no contact answers.
        interval("membership.join_timeout", self.join_timeout)?;
        // Zero would time out (and drop from the passive view) every peer asked.
        interval("membership.neighbor_timeout", self.neighbor_timeout)?;
        interval("membership.refill_interval", self.refill_interval)?;
        interval(
            "membership.contact_retry_interval",
            self.contact_retry_interval,
        )?;
        duration("membership.failed_quarantine", self.failed_quarantine)
    }
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            active_max: 5,
            active_min: 3,
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
/// One end of each link (the lower address) is its pinger: every `interval` it sends a PING,
/// whose deadline is the adaptive timeout: `rtt_multiplier` × the largest RTT in the last
/// `rtt_window` samples once the top eighth is set aside, clamped to
/// `[timeout_floor, timeout_ceiling]`. The other end answers, pings only every
/// `listener_interval` (for RTT samples of its own), and expects the pinger's next PING an
/// `interval` after the last thing it heard, at most half an interval late. Any message from the
/// neighbour counts as an answer. A missed deadline does not close the link: it starts a
/// suspicion step that sends `suspicion_probes` more pings, one every timeout /
/// `suspicion_probes`, and probes the peer's host; the link is declared dead only when
/// neither the agent nor its host answered for `host_down_after` since the silence began
/// (see [`crate::ping`]).
#[derive(Clone, Debug)]
pub struct PingConfig {
    /// How often the pinging end of a healthy link pings (and both ends of a suspect or
    /// stalled one).
    pub interval: Duration,
    /// How often the listening end of a healthy link pings, for RTT samples of its own.
    pub listener_interval: Duration,
    pub rtt_window: usize,
    pub rtt_multiplier: u32,
    pub timeout_floor: Duration,
    pub timeout_ceiling: Duration,
    pub suspicion_probes: u32,
    /// Silence (from the first unanswered ping) after which a peer whose host gave no
    /// kernel-level answer either is declared down. A host frozen for less is never
    /// declared down; a crash is noticed between this and this + `interval` after it.
    pub host_down_after: Duration,
    /// How often a suspect peer's host is probed (a TCP connect to its peer port).
    pub host_probe_interval: Duration,
    /// The longest interval between host probes of a stalled peer: the interval starts at
    /// `host_probe_interval` and doubles up to this, since each probe sits in the stopped
    /// agent's listen backlog (a 3 s stall costs each neighbour about 9 probes). A stalled
    /// peer whose host gives no answer for `host_down_after` plus one interval is down.
    pub stalled_probe_interval: Duration,
    /// How long a stalled peer's host is still probed every `host_probe_interval`.
    pub stalled_fast_probing: Duration,
    /// A stalled peer is declared down (its backends withdrawn) after this long without
    /// its agent, even though its host answers.
    pub agent_stall_bound: Duration,
}

impl PingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        interval("ping.interval", self.interval)?;
        interval("ping.listener_interval", self.listener_interval)?;
        count("ping.rtt_window", u(self.rtt_window))?;
        // Zero would pin every timeout to the floor, whatever the RTT.
        count("ping.rtt_multiplier", u64::from(self.rtt_multiplier))?;
        // Zero would let a link be declared dead in the poll that suspects it.
        interval("ping.timeout_floor", self.timeout_floor)?;
        duration("ping.timeout_ceiling", self.timeout_ceiling)?;
        if self.timeout_floor > self.timeout_ceiling {
            return Err(error(
                "ping.timeout_floor",
                Problem::Exceeds {
                    bound: "ping.timeout_ceiling",
                },
            ));
        }
        // Divides the timeout into probe intervals.
        count("ping.suspicion_probes", u64::from(self.suspicion_probes))?;
        duration("ping.host_down_after", self.host_down_after)?;
        interval("ping.host_probe_interval", self.host_probe_interval)?;
        interval("ping.stalled_probe_interval", self.stalled_probe_interval)?;
        duration("ping.stalled_fast_probing", self.stalled_fast_probing)?;
        duration("ping.agent_stall_bound", self.agent_stall_bound)
    }
}

impl Default for PingConfig {
    fn default() -> Self {
        PingConfig {
            interval: Duration::from_millis(50),
            listener_interval: Duration::from_secs(1),
            rtt_window: 32,
            rtt_multiplier: 4,
            timeout_floor: Duration::from_millis(30),
            timeout_ceiling: Duration::from_secs(1),
            suspicion_probes: 4,
            host_down_after: Duration::from_millis(180),
            host_probe_interval: Duration::from_millis(50),
            stalled_probe_interval: Duration::from_millis(500),
            stalled_fast_probing: Duration::from_secs(1),
            agent_stall_bound: Duration::from_secs(180),
        }
    }
}

/// The replicated per-node records.
#[derive(Clone, Debug)]
pub struct RecordsConfig {
    /// Most records (one per node address) held; records of new nodes beyond it are dropped
    /// and counted.
    pub max_records: usize,
    /// Most (VIP, backend) pairs and task endpoints all held records carry together: with
    /// `max_records` it bounds the store in bytes (a decoded backend takes about 40), so a
    /// peer holding the cluster key cannot fill memory with large records. A record that
    /// would pass it is dropped and counted like one beyond `max_records` (the own record
    /// never is). Default 2,000,000 (about 80 MiB of backends).
    pub max_stored_backends: usize,
    /// Period of anti-entropy with one random active neighbour (jittered ±25%).
    pub anti_entropy_interval: Duration,
    /// Least time between two versions of this node's own record: the first change after
    /// a quiet spell is published at once, a burst of changes (joins) in one version.
    pub publish_interval: Duration,
    /// How long a record waits to be flooded on, so that a burst travels in one message
    /// per neighbour. Adds at most this much per hop to propagation.
    pub flood_delay: Duration,
    /// While this node joins (its view incomplete), how long a change of the own record
    /// that only changes its links (neighbours added or dropped) waits before it is
    /// published, so that the links of one join travel in one version. A change of
    /// services, and any change once the view is complete (a thawed or restarted host
    /// coming back, or a crashed neighbour dropped, must not wait), is published at once.
    /// A first version with nothing in it (no links, services, tasks or agents) waits for
    /// the first link and then this long, unless a peer shows an older incarnation of this
    /// node's address. (The name is from when only additions waited.)
    pub coalesce_additions: Duration,
    /// How long a node's origin must stay unreachable (as this node reports it, after
    /// `reachability.grace`) before this node removes its record: the slot is freed, the
    /// origin's backends leave the desired state and a tombstone refuses late copies of
    /// that version for a further horizon (see [`crate::records`]). Must be above zero;
    /// far longer than any outage a host comes back from with the same record, since a
    /// collected host that returns before publishing again stays without backends until
    /// its next version. Default 10 minutes.
    pub gc_horizon: Duration,
    /// How new versions spread over the active views (see [`Broadcast`]). Default
    /// [`Broadcast::Flood`].
    pub broadcast: Broadcast,
    /// Room to reserve at the start for this many hosts' records and reachability (at
    /// most `max_records`; 0, the default: grow as hosts are learned). Changes nothing
    /// but allocation: a node that knows the cluster's size spares the copies of arrays
    /// that double as it learns it (the simulator, which runs thousands of nodes in one
    /// process, sets it).
    pub expected_hosts: usize,
    /// With [`Broadcast::Tree`]: how long announcements wait before they go to the lazy
    /// links, so that one IHAVE message carries a burst of versions, a newer version of an
    /// origin replaces the older one queued, and a neighbour that shows it holds a version
    /// (it sent it, or announced it) is not told of it. Default 10 ms (50 ms saves more
    /// bytes but delays the versions whose eager path is broken, and so detection).
    pub lazy_delay: Duration,
    /// With [`Broadcast::Tree`]: how long a version announced to this node may stay
    /// missing before it asks the announcer for it (GRAFT). Default 15 ms.
    pub graft_timeout: Duration,
    /// With [`Broadcast::Tree`]: how long a version announced to this node and still
    /// missing holds back every unreachable report (its links may be what reaches a node
    /// this node no longer reaches). Default 100 ms.
    pub announcement_hold: Duration,
}

/// How a node spreads new record versions to its active neighbours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Broadcast {
    /// Every version to every active neighbour but the one it came from (about `d/2`
    /// copies per version and node with active views of `d`).
    #[default]
    Flood,
    /// Plumtree (Leitão, Pereira, Rodrigues, SRDS 2007): versions are pushed along a tree
    /// of eager links and announced (IHAVE) on the others; a link that brings a duplicate
    /// is pruned to lazy, a missed announcement grafts it back. About one copy per version
    /// and node once the tree has formed (see `crate::node::tree`).
    Tree,
}

impl RecordsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // The store's first slot is the node's own record.
        count("records.max_records", u(self.max_records))?;
        interval("records.anti_entropy_interval", self.anti_entropy_interval)?;
        duration("records.publish_interval", self.publish_interval)?;
        duration("records.flood_delay", self.flood_delay)?;
        duration("records.coalesce_additions", self.coalesce_additions)?;
        // Zero would collect a node the moment it is reported unreachable, and twice the
        // horizon (the tombstone's life) must fit the clock too.
        interval("records.gc_horizon", self.gc_horizon)?;
        duration("records.gc_horizon", self.gc_horizon.saturating_mul(2))?;
        duration("records.lazy_delay", self.lazy_delay)?;
        interval("records.graft_timeout", self.graft_timeout)?;
        duration("records.announcement_hold", self.announcement_hold)
    }
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            max_records: 10_000,
            max_stored_backends: 2_000_000,
            anti_entropy_interval: Duration::from_secs(1),
            publish_interval: Duration::from_millis(10),
            flood_delay: Duration::from_millis(2),
            coalesce_additions: Duration::from_millis(200),
            gc_horizon: Duration::from_secs(600),
            broadcast: Broadcast::Flood,
            expected_hosts: 0,
            lazy_delay: Duration::from_millis(10),
            graft_timeout: Duration::from_millis(15),
            announcement_hold: Duration::from_millis(100),
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
    /// A node reports nodes unreachable (and withdraws kernel state) only once its view is
    /// complete: it caught up with a complete peer in an anti-entropy exchange, or this
    /// long passed since its first link (a whole cluster starting cold has no complete
    /// peer yet).
    pub view_complete_timeout: Duration,
}

impl ReachabilityConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        duration("reachability.grace", self.grace)?;
        duration(
            "reachability.view_complete_timeout",
            self.view_complete_timeout,
        )?;
        // Zero would run a full search on every record update.
        interval("reachability.recompute_interval", self.recompute_interval)
    }
}

impl Default for ReachabilityConfig {
    fn default() -> Self {
        ReachabilityConfig {
            grace: Duration::from_millis(20),
            recompute_interval: Duration::from_millis(10),
            view_complete_timeout: Duration::from_secs(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config() -> Config {
        let me = NodeId::new(([10, 0, 0, 1], 61420).into(), 1);
        Config::new(
            me,
            vec![([10, 0, 0, 2], 61420).into(), me.addr],
            7,
            FrameAuth::Insecure,
        )
    }

    fn field_of(change: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut cfg = config();
        change(&mut cfg);
        cfg.validate()
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(config().validate(), Ok(()));
        let v6 = NodeId::new("[fd00::1]:61420".parse().unwrap(), u64::MAX);
        assert_eq!(
            Config::new(v6, Vec::new(), 0, FrameAuth::Insecure).validate(),
            Ok(())
        );
    }

    /// Every rule, one broken at a time on an otherwise default config: the error names
    /// the field and the rule.
    #[test]
    fn each_rule_names_its_field() {
        type Change = fn(&mut Config);
        let zero: &[(&str, Change)] = &[
            ("membership.active_max", |c| c.membership.active_max = 0),
            ("membership.passive_max", |c| c.membership.passive_max = 0),
            ("membership.shuffle_interval", |c| {
                c.membership.shuffle_interval = Duration::ZERO
            }),
            ("membership.join_timeout", |c| {
                c.membership.join_timeout = Duration::ZERO
            }),
            ("membership.neighbor_timeout", |c| {
                c.membership.neighbor_timeout = Duration::ZERO
            }),
            ("membership.refill_interval", |c| {
                c.membership.refill_interval = Duration::ZERO
            }),
            ("membership.contact_retry_interval", |c| {
                c.membership.contact_retry_interval = Duration::ZERO
            }),
            ("ping.interval", |c| c.ping.interval = Duration::ZERO),
            ("ping.listener_interval", |c| {
                c.ping.listener_interval = Duration::ZERO
            }),
            ("ping.rtt_window", |c| c.ping.rtt_window = 0),
            ("ping.rtt_multiplier", |c| c.ping.rtt_multiplier = 0),
            ("ping.timeout_floor", |c| {
                c.ping.timeout_floor = Duration::ZERO
            }),
            ("ping.suspicion_probes", |c| c.ping.suspicion_probes = 0),
            ("records.max_records", |c| c.records.max_records = 0),
            ("records.anti_entropy_interval", |c| {
                c.records.anti_entropy_interval = Duration::ZERO
            }),
            ("records.gc_horizon", |c| {
                c.records.gc_horizon = Duration::ZERO
            }),
            ("records.graft_timeout", |c| {
                c.records.graft_timeout = Duration::ZERO
            }),
            ("reachability.recompute_interval", |c| {
                c.reachability.recompute_interval = Duration::ZERO
            }),
            ("limits.max_records_per_message", |c| {
                c.limits.max_records_per_message = 0
            }),
            ("limits.max_digest_entries", |c| {
                c.limits.max_digest_entries = 0
            }),
            ("max_queued_outputs", |c| c.max_queued_outputs = 0),
        ];
        for (field, change) in zero {
            assert_eq!(
                field_of(change),
                Err(error(field, Problem::Zero)),
                "{field}"
            );
        }

        let too_long: &[(&str, Change)] = &[
            ("membership.shuffle_interval", |c| {
                c.membership.shuffle_interval = Duration::MAX
            }),
            ("membership.failed_quarantine", |c| {
                c.membership.failed_quarantine = Duration::MAX
            }),
            ("ping.timeout_ceiling", |c| {
                c.ping.timeout_ceiling = Duration::MAX
            }),
            ("records.publish_interval", |c| {
                c.records.publish_interval = MAX_DURATION + Duration::from_nanos(1)
            }),
            ("records.flood_delay", |c| {
                c.records.flood_delay = Duration::MAX
            }),
            ("records.coalesce_additions", |c| {
                c.records.coalesce_additions = Duration::MAX
            }),
            ("reachability.grace", |c| {
                c.reachability.grace = Duration::MAX
            }),
            ("records.graft_timeout", |c| {
                c.records.graft_timeout = Duration::MAX
            }),
            ("records.announcement_hold", |c| {
                c.records.announcement_hold = Duration::MAX
            }),
            // The tombstone lives a second horizon: twice it must fit the clock.
            ("records.gc_horizon", |c| {
                c.records.gc_horizon = MAX_DURATION / 2 + Duration::from_secs(1)
            }),
        ];
        for (field, change) in too_long {
            assert_eq!(
                field_of(change),
                Err(error(field, Problem::TooLong { max: MAX_DURATION })),
                "{field}"
            );
        }
        // The clock's whole range is fine.
        assert_eq!(
            field_of(|c| c.membership.failed_quarantine = MAX_DURATION),
            Ok(())
        );

        assert_eq!(
            field_of(|c| c.ping.timeout_floor = c.ping.timeout_ceiling + Duration::from_nanos(1)),
            Err(error(
                "ping.timeout_floor",
                Problem::Exceeds {
                    bound: "ping.timeout_ceiling"
                }
            ))
        );
        assert_eq!(
            field_of(|c| c.ping.timeout_floor = c.ping.timeout_ceiling),
            Ok(())
        );
        assert_eq!(
            field_of(|c| c.membership.prwl = c.membership.arwl + 1),
            Err(error(
                "membership.prwl",
                Problem::Exceeds {
                    bound: "membership.arwl"
                }
            ))
        );
        assert_eq!(field_of(|c| c.membership.prwl = c.membership.arwl), Ok(()));
        assert_eq!(
            field_of(|c| c.membership.active_min = c.membership.active_max + 1),
            Err(error(
                "membership.active_min",
                Problem::Exceeds {
                    bound: "membership.active_max"
                }
            ))
        );
        assert_eq!(
            field_of(|c| c.membership.active_min = c.membership.active_max),
            Ok(())
        );
        assert_eq!(
            field_of(|c| c.membership.active_max = MAX_NEIGHBOURS + 1),
            Err(error(
                "membership.active_max",
                Problem::AboveLimit {
                    max: 64,
                    why: "the flood queue tells apart 64 neighbours"
                }
            ))
        );
    }

    #[test]
    fn limits_must_hold_what_the_node_sends() {
        let too_small = |r: Result<(), ConfigError>| match r {
            Err(ConfigError {
                field,
                problem: Problem::TooSmall { min, .. },
            }) => (field, min),
            other => panic!("{other:?}"),
        };
        // SHUFFLE: the sender plus 3 active and 4 passive by default.
        assert_eq!(
            too_small(field_of(|c| c.limits.max_shuffle_nodes = 7)),
            ("limits.max_shuffle_nodes", 8)
        );
        assert_eq!(field_of(|c| c.limits.max_shuffle_nodes = 8), Ok(()));
        // The store must hold at least one record at its largest.
        assert_eq!(
            too_small(field_of(|c| c.records.max_stored_backends = 10)),
            ("records.max_stored_backends", 50_000)
        );
        assert_eq!(
            too_small(field_of(|c| c.limits.max_adjacency = 4)),
            ("limits.max_adjacency", 5)
        );
        // A record listing active_max neighbours, at their largest.
        let (field, min) = too_small(field_of(|c| c.limits.max_record_bytes = 10));
        assert_eq!(field, "limits.max_record_bytes");
        assert_eq!(min, adjacency_record_bytes(5));
        assert_eq!(
            field_of(|c| c.limits.max_record_bytes = min as usize),
            Ok(())
        );
        // The bound is real: an own record with five worst-case neighbours fits it.
        let worst = NodeId::new(
            SocketAddr::new(Ipv6Addr::from(u128::MAX).into(), u16::MAX),
            u64::MAX,
        );
        let body = RecordBody {
            adjacency: vec![worst; 5],
            ..Default::default()
        };
        let bytes = postcard::experimental::serialized_size(&body).unwrap();
        assert!(u(bytes) <= min && min - u(bytes) <= 9, "{bytes} vs {min}");
        // A record of max_record_bytes must fit a frame.
        assert_eq!(
            too_small(field_of(
                |c| c.limits.max_frame_len = c.limits.max_record_bytes
            )),
            (
                "limits.max_frame_len",
                u(1024 * 1024 + RECORD_FRAME_OVERHEAD)
            )
        );
        assert_eq!(
            field_of(|c| {
                c.limits.max_frame_len = c.limits.max_record_bytes + RECORD_FRAME_OVERHEAD
            }),
            Ok(())
        );
    }

    #[test]
    fn addresses_must_be_reachable() {
        let unspecified = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 61420);
        assert_eq!(
            field_of(|c| c.id.addr = unspecified),
            Err(error("id.addr", Problem::Unreachable { addr: unspecified }))
        );
        let v6 = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 61420);
        assert_eq!(
            field_of(|c| c.id.addr = v6),
            Err(error("id.addr", Problem::Unreachable { addr: v6 }))
        );
        let port0 = SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).into(), 0);
        assert_eq!(
            field_of(|c| c.id.addr = port0),
            Err(error("id.addr", Problem::Unreachable { addr: port0 }))
        );
        assert_eq!(
            field_of(|c| c.contacts.push(unspecified)),
            Err(error(
                "contacts",
                Problem::Unreachable { addr: unspecified }
            ))
        );
    }

    #[test]
    fn the_message_names_field_and_rule() {
        let e = field_of(|c| c.ping.timeout_floor = Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: ping.timeout_floor must not exceed ping.timeout_ceiling"
        );
        let e = field_of(|c| c.limits.max_shuffle_nodes = 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: limits.max_shuffle_nodes must be at least 8 to hold a SHUFFLE: \
             the sender, membership.shuffle_active and membership.shuffle_passive"
        );
    }

    /// The edges of what validates run: every duration at the clock's limit (a longer
    /// shuffle interval panics the jitter of `Node::new` for about 2 seeds in 5) and every
    /// count at its minimum.
    #[test]
    fn extremes_that_validate_run() {
        use crate::{Node, Output, Time};
        for seed in 0..20 {
            let mut c = config();
            c.seed = seed;
            let m = &mut c.membership;
            for d in [
                &mut m.shuffle_interval,
                &mut m.join_timeout,
                &mut m.neighbor_timeout,
                &mut m.refill_interval,
                &mut m.contact_retry_interval,
                &mut m.failed_quarantine,
                &mut c.ping.interval,
                &mut c.ping.listener_interval,
                &mut c.ping.timeout_floor,
                &mut c.ping.timeout_ceiling,
                &mut c.records.anti_entropy_interval,
                &mut c.records.publish_interval,
                &mut c.records.flood_delay,
                &mut c.records.coalesce_additions,
                &mut c.reachability.grace,
                &mut c.reachability.recompute_interval,
            ] {
                *d = MAX_DURATION;
            }
            (m.active_max, m.passive_max, m.arwl, m.prwl) = (1, 1, 0, 0);
            m.active_min = 0;
            (m.shuffle_active, m.shuffle_passive) = (0, 0);
            c.ping.rtt_window = 1;
            c.ping.rtt_multiplier = 1;
            c.ping.suspicion_probes = 1;
            c.records.max_records = 1;
            c.limits.max_records_per_message = 1;
            c.limits.max_digest_entries = 1;
            c.limits.max_shuffle_nodes = 1;
            c.limits.max_adjacency = 1;
            c.limits.max_record_bytes = adjacency_record_bytes(1) as usize;
            c.limits.max_frame_len = c.limits.max_record_bytes + RECORD_FRAME_OVERHEAD;
            c.max_queued_outputs = 1;
            assert_eq!(c.validate(), Ok(()));
            let mut node = Node::new(c, Time::ZERO).expect("validated");
            let mut now = Time::ZERO;
            for _ in 0..8 {
                let at = loop {
                    if let Output::Timeout(at) = node.poll_output() {
                        break at;
                    }
                };
                now = now.max(at);
                node.handle_timeout(now);
            }
        }
    }
}
