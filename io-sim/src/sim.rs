//! The discrete-event simulator: many core nodes, one network, one clock, one RNG.
//!
//! Events sit in an [`EventQueue`] ordered by `(time, seq)`, so events at the same instant
//! run in the order they were scheduled. Every random decision (latency,
//! loss, node seeds, which nodes crash) comes from one ChaCha generator seeded from the run
//! seed, so a run is a pure function of its seed and its scripted faults.
//!
//! A crash is a kernel panic: the node falls silent, its timers and in-flight deliveries to
//! it vanish, no goodbye is sent. A restart builds a fresh core node with the next epoch.
//!
//! Two models, chosen by [`ClusterConfig`]:
//! - **realistic** (the default, [`ClusterConfig::new`]): Pingmesh latencies with a
//!   background drop rate, TCP between the cores ([`crate::tcp`]), CPU time per input
//!   with a per-host busy-until ([`crate::cpu`]; a busy, stalled or frozen process handles
//!   its inputs later, in order), kernel operations that take an `nft -f` transaction's
//!   time to apply, and optional agent stalls and host freezes ([`crate::faults`]);
//! - **ideal** ([`ClusterConfig::ideal`]): the model every run used before, kept
//!   bit for bit (same random draws, same event order, same trace hashes): LAN latencies,
//!   independent datagrams, free CPU, kernels that apply at once.
//!
//! Every host has an inbox: inputs (messages its socket delivered, timer wake-ups, Mesos
//! polls) wait there, in order, while the process is busy (CPU), stalled or frozen. The
//! inbox holds at most one timer and one poll; messages are bounded by the TCP receive
//! buffer per connection (over datagrams, by [`INBOX_LIMIT`]: beyond it they drop).
//!
//! The trace hash folds every delivered message (time, sender, receiver, kind, size) and
//! every crash and restart into one xxh3 digest (the realistic model adds stalls, freezes
//! and kernel transactions): same seed, same hash.
//!
//! For the lead's host probes: [`Simulation::probe_host`] (a SYN / SYN-ACK answered by the
//! target's kernel), the ground truth [`Simulation::is_stalled`],
//! [`Simulation::is_frozen`], [`Simulation::fault_log`], and
//! [`Simulation::on_agent_stalled_report`].
//!
//! Invariants: simulated time never goes backwards; only live nodes handle events; a
//! host's inputs are handled one at a time in arrival order, never before the previous
//! one's CPU time is spent; a host's kernel batches apply in emission order; every
//! reachability event a node emits is checked against the simulator's ground truth
//! (false positives are recorded with their time, observer, target and cause).

use crate::cpu::{CpuCosts, KernelApply};
use crate::faults::{
    attribute, FaultConfig, FaultInterval, FaultKind, FpByCause, FpCause, FreezeReport, StallReport,
};
use crate::network::{NetConfig, Network};
use crate::progress::Progress;
use crate::queue::EventQueue;
use crate::tcp::{HostKernel, Tcp, TcpEvent, TcpStats};
use crate::world::{ServiceWorld, WorldConfig};
use minuteman_core::auth::{ClusterKey, FrameAuth};
use minuteman_core::kernel::Op;
use minuteman_core::wire::{self, Envelope};
use minuteman_core::{Broadcast, Config, Event, Message, Node, NodeId, Output, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use xxhash_rust::xxh3::Xxh3;

/// The port every simulated node listens on.
pub const PEER_PORT: u16 = 61420;

/// Over datagrams (the ideal transport), the most messages a host's inbox holds while its
/// process is stalled or frozen; later ones drop.
pub const INBOX_LIMIT: usize = 100_000;

/// The most kernel operations that may wait for a running transaction on one host.
pub const KERNEL_BACKLOG_LIMIT: usize = 1_000_000;

/// The peer address of node `index`: 10.0.0.0/8, one address per node.
pub fn node_addr(index: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0A00_0001u32 + index as u32);
    SocketAddr::new(ip.into(), PEER_PORT)
}

/// The node index whose address is `ip` in a cluster of `nodes` (inverse of [`node_addr`]).
pub fn node_index(ip: IpAddr, nodes: usize) -> Option<usize> {
    let IpAddr::V4(v4) = ip else {
        return None;
    };
    let index = u32::from(v4).checked_sub(0x0A00_0001)? as usize;
    (index < nodes).then_some(index)
}

/// How a simulated cluster is built.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: usize,
    /// The first `contacts` nodes are the join seeds (the masters).
    pub contacts: usize,
    /// Nodes start at uniform random times in `[0, start_spread]`.
    pub start_spread: Duration,
    pub net: NetConfig,
    /// Encode and decode every message through the real wire codec (slower; exercises it).
    pub wire_roundtrip: bool,
    /// Applied to every node's core config (the simulator sets id, contacts and seed).
    pub tune: fn(&mut Config),
    /// CPU time of the agent process per unit of work (zero: free).
    pub cpu: CpuCosts,
    /// How long kernel operations take to apply (immediate: at once).
    pub kernel_apply: KernelApply,
    /// Agent stalls and host freezes (none by default).
    pub faults: FaultConfig,
    /// The listen backlog of the peer port: while the agent is stalled its kernel answers
    /// probes until `backlog + 1` connections wait in the accept queue, then stays silent.
    pub probe_backlog: u32,
    /// Every host's frame authentication at start (one cluster key by default).
    pub auth: FrameAuth,
    /// The last `dormant` of the `nodes` hosts do not start with the cluster: they are
    /// new hosts, with addresses never used before, that [`Simulation::start_host`]
    /// brings in later (host churn, see [`crate::membership`]). Zero: every host starts.
    pub dormant: usize,
    /// Overrides every node's `records.gc_horizon` (after `tune`) when set.
    pub gc_horizon: Option<Duration>,
    /// Every node's `records.broadcast` (set before `tune`).
    pub broadcast: Broadcast,
}

/// Which model a run uses.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    /// The model runs used before: LAN latencies, datagrams, free CPU, instant kernels.
    Ideal,
    /// Pingmesh latencies, TCP, CPU time, kernel apply latency.
    #[default]
    Realistic,
}

impl NetMode {
    pub fn name(self) -> &'static str {
        match self {
            NetMode::Ideal => "ideal",
            NetMode::Realistic => "realistic",
        }
    }
}

/// The conditions an evaluation runs under: the flags membership, services and paper
/// share (`--net`, `--agent-stalls`, `--host-freezes`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conditions {
    pub net: NetMode,
    /// Agent stalls per node per simulated minute.
    pub agent_stalls: f64,
    /// Host freezes per node per simulated minute.
    pub host_freezes: f64,
    /// How every node spreads record versions (`records.broadcast`).
    pub broadcast: Broadcast,
}

impl Conditions {
    /// The flags that replay these conditions (after the run's own flags).
    pub fn replay_args(&self) -> String {
        let mut out = format!(" --net {}", self.net.name());
        if self.agent_stalls > 0.0 {
            out += &format!(" --agent-stalls {}", self.agent_stalls);
        }
        if self.host_freezes > 0.0 {
            out += &format!(" --host-freezes {}", self.host_freezes);
        }
        if self.broadcast == Broadcast::Tree {
            out += " --broadcast tree";
        }
        out
    }
}

impl ClusterConfig {
    /// `nodes` under the realistic model (see the module documentation).
    pub fn new(nodes: usize) -> ClusterConfig {
        ClusterConfig {
            net: NetConfig::default(),
            cpu: CpuCosts::default(),
            kernel_apply: KernelApply::default(),
            ..ClusterConfig::ideal(nodes)
        }
    }

    /// `nodes` under the ideal model: exactly the runs of before the realistic model.
    pub fn ideal(nodes: usize) -> ClusterConfig {
        ClusterConfig {
            nodes,
            contacts: 3.min(nodes),
            start_spread: Duration::from_millis(100),
            net: NetConfig::ideal(),
            wire_roundtrip: false,
            tune: |_| {},
            cpu: CpuCosts::zero(),
            kernel_apply: KernelApply::immediate(),
            faults: FaultConfig::default(),
            // tokio's TcpListener default (and what the agent will ask for).
            probe_backlog: 1024,
            auth: sim_cluster_auth(),
            dormant: 0,
            gc_horizon: None,
            broadcast: Broadcast::Flood,
        }
    }

    /// The one builder of the evaluations (membership, services, paper): `nodes` under
    /// `conditions`, with `loss` per packet (and 1% of packets delayed by up to 2 ms)
    /// when `loss > 0`.
    pub fn evaluation(nodes: usize, loss: f64, conditions: &Conditions) -> ClusterConfig {
        let mut cfg = match conditions.net {
            NetMode::Ideal => ClusterConfig::ideal(nodes),
            NetMode::Realistic => ClusterConfig::new(nodes),
        };
        if loss > 0.0 {
            cfg.net = match conditions.net {
                NetMode::Ideal => NetConfig::ideal_lossy(loss),
                NetMode::Realistic => NetConfig::lossy(loss),
            };
        }
        cfg.faults.agent_stalls_per_min = conditions.agent_stalls;
        cfg.faults.host_freezes_per_min = conditions.host_freezes;
        cfg.broadcast = conditions.broadcast;
        cfg
    }

    /// `nodes` on the realistic default with `loss` (kept for callers written before
    /// [`ClusterConfig::evaluation`]).
    pub fn with_loss(nodes: usize, loss: f64) -> ClusterConfig {
        ClusterConfig::evaluation(nodes, loss, &Conditions::default())
    }

    /// Whether inputs cost nothing and nothing ever defers them (the ideal host).
    fn instant_hosts(&self) -> bool {
        self.cpu == CpuCosts::zero()
            && self.faults.agent_stalls_per_min <= 0.0
            && self.faults.host_freezes_per_min <= 0.0
    }
}

/// The simulated cluster's key: fixed, so choosing it draws nothing from the run's
/// generator.
pub fn sim_cluster_key() -> ClusterKey {
    ClusterKey::new(b"minuteman simulated cluster key, 32+ bytes").expect("long enough")
}

/// One cluster key, no rotation in progress.
pub fn sim_cluster_auth() -> FrameAuth {
    FrameAuth::Keys {
        current: sim_cluster_key(),
        previous: None,
    }
}

/// How long the shell waits for a host probe's SYN-ACK before it reports no answer.
pub const HOST_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A live node saw another live node unreachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FalsePositive {
    pub at: Time,
    pub observer: NodeId,
    pub target: NodeId,
    /// What the ground truth blames (see [`crate::faults::attribute`]): the target's
    /// stall or freeze at the report or within the attribution window before it.
    pub cause: FpCause,
    /// The same rule applied to the observer: a host that was itself stalled or frozen
    /// resumes with its timers late and may report healthy peers.
    pub observer_fault: FpCause,
}

/// Traffic totals.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub partitioned: u64,
    /// Arrived at a crashed node.
    pub to_dead: u64,
    /// Addressed to no simulated node.
    pub unroutable: u64,
    /// Refused by the receiving core (bad frame, bad MAC, forged sender).
    pub rejected: u64,
    /// Datagrams that reached a frozen host (the ideal transport; TCP retransmits them).
    pub to_frozen: u64,
    /// Datagrams dropped because a stalled or frozen host's inbox was full.
    pub inbox_overflow: u64,
    /// Messages and bytes sent, by [`minuteman_core::Message::kind_index`].
    pub by_kind: [(u64, u64); minuteman_core::Message::KINDS],
}

/// One crash batch being watched: when each survivor saw every crashed node unreachable.
#[derive(Clone, Debug)]
struct Detection {
    at: Time,
    crashed: BTreeSet<NodeId>,
    /// Per node index: the crashed nodes it still sees reachable.
    pending: Vec<BTreeSet<NodeId>>,
    /// Per node index: when `pending` last became empty.
    done_at: Vec<Option<Time>>,
    /// Per node index: it was live at the crash (hosts that joined later do not count).
    observer: Vec<bool>,
}

struct SimNode {
    id: NodeId,
    /// The frame authentication this host boots with (see [`Simulation::set_auth`]).
    auth: FrameAuth,
    node: Option<Node>,
    /// The earliest timer event in the heap for this incarnation.
    timer: Option<Time>,
    host: Host,
}

/// What kind of input a host's process handled (see [`Simulation::trace_inputs`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum InputKind {
    Boot,
    Message,
    Timer,
    Poll,
}

/// One input a traced host handled: when it reached the host, when the process took it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandledInput {
    pub node: usize,
    pub arrived: Time,
    pub handled: Time,
    pub kind: InputKind,
    /// The sender of a message.
    pub from: Option<usize>,
}

/// A message on its way between hosts. Boxed: it is moved a dozen times from the
/// sender's outputs through the transport's segments, the event queue and the receiver's
/// inbox, and an envelope is 112 bytes (`memmove` was 6-7.5% of a large run's profile).
type Payload = Box<Envelope>;

/// An input waiting for the host's process.
enum Input {
    Boot,
    /// A message from host `from` (whatever it claims inside).
    Message {
        from: usize,
        envelope: Payload,
        len: usize,
    },
    /// Raw bytes from host `from`, through the frame decoder.
    Frame {
        from: usize,
        frame: Vec<u8>,
    },
    /// The answer to a host probe of `peer`.
    Probe {
        peer: SocketAddr,
        answered: bool,
    },
    Timer,
    Poll,
}

/// What the simulator knows of one host beyond its core: the process's CPU and inbox, its
/// kernel's pending transactions, its faults.
#[derive(Default)]
struct Host {
    /// The process is busy (spending CPU on earlier inputs) until then.
    busy_until: Time,
    /// Inputs waiting, with the time each arrived.
    inbox: VecDeque<(Time, Input)>,
    timer_queued: bool,
    poll_queued: bool,
    /// A `Wake` event is in the queue.
    wake_pending: bool,
    /// The agent process is stopped until then (a stall).
    stalled_until: Time,
    /// The whole host is frozen until then.
    frozen_until: Time,
    /// When the next scheduled stall / freeze starts (known ahead, for probes in flight).
    next_stall_at: Option<Time>,
    next_freeze_at: Option<Time>,
    /// Probes answered by the kernel while the agent could not accept them.
    accept_queue: u32,
    /// A kernel transaction is running.
    kernel_running: bool,
    /// Counts the agent process's boots: events of an earlier process are void.
    boots: u64,
    /// Operations emitted while a transaction runs: they go into the next one.
    kernel_waiting: Vec<Op>,
    /// Ground truth: every stall and freeze, in start order.
    faults: Vec<FaultInterval>,
    /// A crash the run has planned: no fault may overlap it.
    planned_crash: Option<Time>,
    /// Live observers that currently see this host's incarnation unreachable.
    down_seen_by: BTreeSet<usize>,
    /// The host has booted at least once (before that its kernel answers with resets).
    booted: bool,
}
enum EventKind {
    Start {
        node: usize,
    },
    /// A message from node `from` (whatever it claims inside) to node `to`.
    Deliver {
        from: usize,
        to: usize,
        envelope: Payload,
    },
    /// Raw bytes from host `from` to node `to`, through the frame decoder.
    DeliverFrame {
        from: usize,
        to: usize,
        frame: Vec<u8>,
    },
    /// The shell's answer to node `node`'s probe of `peer`'s host.
    ProbeResult {
        node: usize,
        epoch: u64,
        peer: SocketAddr,
        answered: bool,
    },
    Timer {
        node: usize,
        epoch: u64,
    },
    /// Node `node` polls its Mesos agent.
    Poll {
        node: usize,
        epoch: u64,
    },
    /// One random task change somewhere.
    Churn,
    /// The transport (TCP) moves a segment.
    Segment(TcpEvent<Payload>),
    /// Node `node`'s process may take its next input. Keyed by the process (`boot`), not
    /// the epoch: a process that becomes a newer incarnation keeps its wake-up.
    Wake {
        node: usize,
        boot: u64,
    },
    /// Node `node`'s kernel finished a transaction applying `ops` (for the process `boot`:
    /// an incarnation change inside the process does not lose the transaction).
    KernelDone {
        node: usize,
        boot: u64,
        ops: Vec<Op>,
    },
    /// Node `node` may start a stall or a freeze.
    FaultStart {
        node: usize,
        kind: FaultKind,
    },
    /// Node `node`'s stall or freeze ends.
    FaultEnd {
        node: usize,
        kind: FaultKind,
    },
}

/// A whole simulated cluster.
pub struct Simulation {
    pub seed: u64,
    cfg: ClusterConfig,
    rng: ChaCha8Rng,
    now: Time,
    queue: EventQueue<EventKind>,
    nodes: Vec<SimNode>,
    /// Lookup only (never iterated).
    index: HashMap<SocketAddr, usize>,
    pub network: Network,
    trace: Xxh3,
    pub traffic: Traffic,
    pub false_positives: Vec<FalsePositive>,
    detection: Option<Detection>,
    contacts: Vec<SocketAddr>,
    delays: Vec<Duration>,
    events_handled: u64,
    /// Nodes scheduled to start that have not yet.
    not_started: usize,
    /// Nodes whose events and messages are printed to stderr (debugging aid).
    pub watch: BTreeSet<usize>,
    /// Mesos agents, kernels and their checks, when the run has services.
    pub world: Option<ServiceWorld>,
    /// Task churn runs until this time.
    churn_until: Time,
    /// The transport between the cores (`None`: datagrams, the ideal network).
    tcp: Option<Tcp<Payload>>,
    /// Whether every input is handled the moment it arrives (the ideal host).
    instant_hosts: bool,
    /// A node's outputs, collected before they are released (reused buffer).
    outputs: Vec<Output>,
    /// Reused buffer for the transport's scheduled events.
    segments: Vec<(Time, TcpEvent<Payload>)>,
    /// Reused buffer for the messages an arriving segment delivers.
    delivered: Vec<(Payload, usize)>,
    /// Reports from the cores that a peer's agent is stalled (the lead wires the event).
    pub agent_stalled_reports: u64,
    /// Hosts whose handled inputs are recorded, and the record.
    input_trace: (BTreeSet<usize>, Vec<HandledInput>),
    /// Check a node's invariants after every input it handles (tests turn this on); the
    /// first violation is kept in `invariant_violation`.
    pub check_each_event: bool,
    /// The first broken invariant seen with `check_each_event`: when, and what.
    pub invariant_violation: Option<(Time, String)>,
    /// When set, every delivered message is recorded here as (sender host, receiver,
    /// envelope): captured traffic, for replay tests.
    pub capture: Option<Vec<(usize, usize, Envelope)>>,
    /// Progress lines on stderr for long runs (see [`Simulation::set_progress`]).
    progress: Option<Progress>,
    /// CPU time charged to the hosts' processes, in nanoseconds (the model of
    /// [`crate::cpu`]; zero on the ideal network).
    cpu_ns: u64,
}

impl Simulation {
    /// Builds the cluster; nodes start during the first `start_spread`.
    pub fn new(cfg: ClusterConfig, seed: u64) -> Simulation {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let link_salt = rng.random();
        let network = Network::new(cfg.net.clone(), cfg.nodes, link_salt);
        let contacts: Vec<SocketAddr> = (0..cfg.contacts).map(node_addr).collect();
        let tcp = cfg.net.tcp.clone().map(|t| Tcp::new(t, cfg.nodes));
        let instant_hosts = cfg.instant_hosts();
        let mut sim = Simulation {
            seed,
            rng,
            now: Time::ZERO,
            queue: EventQueue::new(),
            nodes: Vec::with_capacity(cfg.nodes),
            index: HashMap::new(),
            network,
            trace: Xxh3::new(),
            traffic: Traffic::default(),
            false_positives: Vec::new(),
            detection: None,
            contacts,
            delays: Vec::new(),
            events_handled: 0,
            watch: BTreeSet::new(),
            not_started: cfg.nodes - cfg.dormant.min(cfg.nodes),
            world: None,
            churn_until: Time::ZERO,
            tcp,
            instant_hosts,
            outputs: Vec::new(),
            segments: Vec::new(),
            delivered: Vec::new(),
            agent_stalled_reports: 0,
            input_trace: (BTreeSet::new(), Vec::new()),
            check_each_event: false,
            invariant_violation: None,
            capture: None,
            progress: None,
            cpu_ns: 0,
            cfg,
        };
        for i in 0..sim.cfg.nodes {
            let addr = node_addr(i);
            sim.index.insert(addr, i);
            sim.nodes.push(SimNode {
                id: NodeId::new(addr, 1),
                auth: sim.cfg.auth.clone(),
                node: None,
                timer: None,
                host: Host::default(),
            });
            if i >= sim.cfg.nodes - sim.cfg.dormant.min(sim.cfg.nodes) {
                continue;
            }
            let spread = sim.cfg.start_spread.as_nanos() as u64;
            let at = Time::from_nanos(sim.rng.random_range(0..=spread));
            sim.schedule(at, EventKind::Start { node: i });
        }
        for kind in [FaultKind::AgentStall, FaultKind::HostFreeze] {
            if sim.cfg.faults.rate_per_min(kind) > 0.0 {
                let from = Time::from_duration(sim.cfg.faults.from);
                for i in 0..sim.cfg.nodes {
                    sim.schedule_fault(i, kind, from);
                }
            }
        }
        sim
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// Gives every host a Mesos agent (with `cfg.tasks` tasks spread at random) and a
    /// kernel table; each node polls its agent every `cfg.poll_interval`. Call before the
    /// first `run_*`.
    pub fn attach_world(&mut self, cfg: WorldConfig) {
        assert_eq!(self.now, Time::ZERO, "attach the world before running");
        let ips: Vec<Ipv4Addr> = (0..self.nodes.len())
            .map(|i| match node_addr(i).ip() {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => unreachable!("simulated nodes are IPv4"),
            })
            .collect();
        self.world = Some(ServiceWorld::new(cfg, &ips, &mut self.rng));
    }

    /// Runs random task churn (at the world's rate) from now until `until`.
    pub fn churn_until(&mut self, until: Time) {
        let Some(world) = &self.world else {
            return;
        };
        let rate = world.cfg.churn_per_s;
        let first = self.churn_until <= self.now;
        self.churn_until = until;
        if first && rate > 0.0 {
            let gap = self.exponential(rate);
            self.schedule(self.now + gap, EventKind::Churn);
        }
    }

    fn exponential(&mut self, rate: f64) -> Duration {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        Duration::from_secs_f64(-u.ln() / rate)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// How many of the first nodes are contacts (join seeds).
    pub fn contact_count(&self) -> usize {
        self.cfg.contacts
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn trace_hash(&self) -> u64 {
        self.trace.digest()
    }

    pub fn events_handled(&self) -> u64 {
        self.events_handled
    }

    /// The current incarnation of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes[i].node.as_ref()
    }

    pub fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.is_alive(i))
    }

    pub fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        self.index.get(addr).copied()
    }

    /// A random sample of `count` distinct node indices, drawn from the run's generator.
    pub fn sample_nodes(&mut self, count: usize) -> Vec<usize> {
        self.sample_nodes_except(count, &[])
    }

    /// Like [`Simulation::sample_nodes`], never picking a node in `keep`.
    pub fn sample_nodes_except(&mut self, count: usize, keep: &[usize]) -> Vec<usize> {
        let pool: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !keep.contains(i))
            .collect();
        let mut picked: Vec<usize> =
            rand::seq::index::sample(&mut self.rng, pool.len(), count.min(pool.len()))
                .into_iter()
                .map(|k| pool[k])
                .collect();
        picked.sort_unstable();
        picked
    }

    fn schedule(&mut self, at: Time, kind: EventKind) {
        self.queue.push(at, kind);
    }

    fn trace_event(&mut self, tag: u8, a: u64, b: u64, c: u64) {
        let mut buf = [0u8; 33];
        buf[0] = tag;
        buf[1..9].copy_from_slice(&self.now.as_nanos().to_le_bytes());
        buf[9..17].copy_from_slice(&a.to_le_bytes());
        buf[17..25].copy_from_slice(&b.to_le_bytes());
        buf[25..33].copy_from_slice(&c.to_le_bytes());
        self.trace.update(&buf);
    }

    /// Runs every event up to and including `until`; the clock ends at `until`.
    pub fn run_until(&mut self, until: Time) {
        while let Some((at, kind)) = self.queue.pop_until(until) {
            debug_assert!(at >= self.now, "time went backwards");
            self.now = at;
            self.events_handled += 1;
            self.dispatch(kind);
            if self.events_handled & (Progress::EVERY_EVENTS - 1) == 0 {
                if let Some(progress) = self.progress.as_mut() {
                    progress.tick(self.now, self.events_handled);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Reports progress while the simulation runs (see [`crate::progress`]); it reads the
    /// clock and the event count only, so the run and its trace hash stay the same.
    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    /// Prints the last progress line (if any was printed) and detaches the progress.
    pub fn finish_progress(&mut self) {
        if let Some(mut progress) = self.progress.take() {
            progress.finish(self.now, self.events_handled);
        }
    }

    /// CPU time the hosts' processes spent, all hosts together (the model of
    /// [`crate::cpu`]: per input, per message sent, per byte of records and documents, per
    /// refresh; zero on the ideal network).
    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu_ns)
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn dispatch(&mut self, kind: EventKind) {
        match kind {
            EventKind::Start { node } => {
                self.not_started -= 1;
                self.boot(node);
            }
            EventKind::Timer { node, epoch } => {
                let slot = &mut self.nodes[node];
                if slot.id.epoch != epoch || slot.timer != Some(self.now) {
                    return;
                }
                slot.timer = None;
                if slot.node.is_none() || slot.host.timer_queued {
                    return;
                }
                slot.host.timer_queued = true;
                self.accept_input(node, Input::Timer);
            }
            EventKind::Poll { node, epoch } => {
                let slot = &mut self.nodes[node];
                if slot.id.epoch != epoch || slot.node.is_none() || slot.host.poll_queued {
                    return;
                }
                slot.host.poll_queued = true;
                self.accept_input(node, Input::Poll);
            }
            EventKind::Churn => {
                if self.now > self.churn_until {
                    return;
                }
                if let Some(world) = self.world.as_mut() {
                    world.churn(self.now, &mut self.rng);
                    let rate = world.cfg.churn_per_s;
                    self.trace_event(5, 0, 0, 0);
                    let gap = self.exponential(rate);
                    self.schedule(self.now + gap, EventKind::Churn);
                }
            }
            EventKind::DeliverFrame { from, to, frame } => {
                if self.nodes[to].node.is_none() {
                    self.traffic.to_dead += 1;
                    return;
                }
                self.accept_input(to, Input::Frame { from, frame });
            }
            EventKind::ProbeResult {
                node,
                epoch,
                peer,
                answered,
            } => {
                if self.nodes[node].id.epoch == epoch && self.nodes[node].node.is_some() {
                    self.accept_input(node, Input::Probe { peer, answered });
                }
            }
            EventKind::Deliver { from, to, envelope } => {
                if self.nodes[to].node.is_none() {
                    self.traffic.to_dead += 1;
                    return;
                }
                if self.is_frozen(to) {
                    self.traffic.to_frozen += 1;
                    return;
                }
                if self.nodes[to].host.inbox.len() >= INBOX_LIMIT {
                    self.traffic.inbox_overflow += 1;
                    return;
                }
                let len = if self.instant_hosts {
                    0
                } else {
                    wire::encoded_len(&envelope)
                };
                self.accept_input(
                    to,
                    Input::Message {
                        from,
                        envelope,
                        len,
                    },
                );
            }
            EventKind::Segment(event) => self.segment(event),
            EventKind::Wake { node, boot } => {
                if self.nodes[node].host.boots == boot {
                    self.nodes[node].host.wake_pending = false;
                    self.pump(node);
                }
            }
            EventKind::KernelDone { node, boot, ops } => self.kernel_done(node, boot, ops),
            EventKind::FaultStart { node, kind } => self.fault_start(node, kind),
            EventKind::FaultEnd { node, kind } => self.fault_end(node, kind),
        }
    }

    /// The transport moved a segment: deliver what is now in order, or retransmit.
    fn segment(&mut self, event: TcpEvent<Payload>) {
        let Some(tcp) = self.tcp.as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut self.segments);
        match event {
            TcpEvent::Arrive(seg) => {
                let (from, to) = (seg.from, seg.to);
                let receiver = host_kernel(&self.nodes[to], self.now);
                if matches!(receiver, HostKernel::Down | HostKernel::NoListener) {
                    self.traffic.to_dead += 1;
                }
                let mut delivered = std::mem::take(&mut self.delivered);
                tcp.on_arrive(
                    &self.network,
                    &mut self.rng,
                    self.now,
                    seg,
                    receiver,
                    &mut out,
                    &mut delivered,
                );
                push_segments(&mut self.queue, &mut out);
                // Back before the inputs are handled: their sends reuse it.
                self.segments = out;
                for (envelope, len) in delivered.drain(..) {
                    self.accept_input(
                        to,
                        Input::Message {
                            from,
                            envelope,
                            len,
                        },
                    );
                }
                self.delivered = delivered;
            }
            TcpEvent::Retransmit(seg) => {
                let sender = host_kernel(&self.nodes[seg.from], self.now);
                tcp.on_retransmit(
                    &self.network,
                    &mut self.rng,
                    self.now,
                    seg,
                    sender,
                    &mut out,
                );
                push_segments(&mut self.queue, &mut out);
                self.segments = out;
            }
        }
    }

    /// An input reaches node `i`'s process: handled now if the process is free, else
    /// queued behind the others.
    fn accept_input(&mut self, i: usize, input: Input) {
        let now = self.now;
        if self.nodes[i].host.inbox.is_empty()
            && self.nodes[i].node.is_some()
            && self.ready_at(i) <= now
        {
            // Free, nothing queued: taken at once, as the inbox would hand it over (a
            // handled input never queues another on its own host).
            self.take_input(i, now, input);
            return;
        }
        self.nodes[i].host.inbox.push_back((now, input));
        self.pump(i);
    }

    /// When node `i`'s process can take its next input.
    fn ready_at(&self, i: usize) -> Time {
        let h = &self.nodes[i].host;
        h.busy_until.max(h.stalled_until).max(h.frozen_until)
    }

    /// Hands node `i`'s queued inputs to its core while the process is free.
    fn pump(&mut self, i: usize) {
        loop {
            if self.nodes[i].node.is_none() || self.nodes[i].host.inbox.is_empty() {
                return;
            }
            let ready = self.ready_at(i);
            if ready > self.now {
                let slot = &mut self.nodes[i];
                if !slot.host.wake_pending {
                    slot.host.wake_pending = true;
                    let boot = slot.host.boots;
                    self.schedule(ready, EventKind::Wake { node: i, boot });
                }
                return;
            }
            let (arrived, input) = self.nodes[i].host.inbox.pop_front().expect("not empty");
            self.take_input(i, arrived, input);
        }
    }

    /// Node `i`'s process takes `input`, which reached the host at `arrived`.
    fn take_input(&mut self, i: usize, arrived: Time, input: Input) {
        if self.input_trace.0.contains(&i) {
            let (kind, from) = match &input {
                Input::Boot => (InputKind::Boot, None),
                Input::Timer | Input::Probe { .. } => (InputKind::Timer, None),
                Input::Poll => (InputKind::Poll, None),
                Input::Message { from, .. } | Input::Frame { from, .. } => {
                    (InputKind::Message, Some(*from))
                }
            };
            self.input_trace.1.push(HandledInput {
                node: i,
                arrived,
                handled: self.now,
                kind,
                from,
            });
        }
        self.handle(i, input);
    }

    /// Node `i`'s core handles one input now; its outputs leave when the CPU time the
    /// input cost is spent.
    fn handle(&mut self, i: usize, input: Input) {
        let cost = match input {
            Input::Boot => self.cfg.cpu.per_input,
            Input::Timer => {
                self.nodes[i].host.timer_queued = false;
                let core = self.nodes[i].node.as_mut().expect("alive");
                core.handle_timeout(self.now);
                self.cfg.cpu.per_input
            }
            Input::Poll => {
                self.nodes[i].host.poll_queued = false;
                self.poll(i)
            }
            Input::Probe { peer, answered } => {
                let core = self.nodes[i].node.as_mut().expect("alive");
                core.handle_host_probe(self.now, peer, answered);
                self.cfg.cpu.per_input
            }
            Input::Frame { from, frame } => {
                let core = self.nodes[i].node.as_mut().expect("alive");
                if core
                    .handle_frame(self.now, node_addr(from).ip(), &frame)
                    .is_err()
                {
                    self.traffic.rejected += 1;
                }
                self.traffic.delivered += 1;
                self.trace_event(9, from as u64, i as u64, frame.len() as u64);
                self.cfg.cpu.per_input
            }
            Input::Message {
                from,
                envelope,
                len,
            } => {
                let to = i;
                if let Some(tcp) = self.tcp.as_mut() {
                    tcp.consumed(from, to, len);
                }
                if self.watch.contains(&to) || self.watch.contains(&from) {
                    eprintln!(
                        "{} {} -> {} {:?}",
                        self.now, envelope.from, self.nodes[to].id, envelope.msg
                    );
                }
                let kind = envelope.msg.kind_index() as u64;
                let records = matches!(
                    envelope.msg,
                    Message::Records { .. } | Message::RecordsReply { .. }
                );
                if let Some(capture) = self.capture.as_mut() {
                    capture.push((from, to, (*envelope).clone()));
                }
                let remote = node_addr(from).ip();
                let accepted = if self.cfg.wire_roundtrip {
                    let sender_auth = &self.nodes[from].auth;
                    let core = self.nodes[to].node.as_ref().expect("alive");
                    let frame = wire::encode_sealed(&envelope, &core.config().limits, sender_auth)
                        .expect("core emits frames within the limits");
                    let core = self.nodes[to].node.as_mut().expect("alive");
                    core.handle_frame(self.now, remote, &frame).is_ok()
                } else {
                    let core = self.nodes[to].node.as_mut().expect("alive");
                    core.handle_message(self.now, remote, *envelope).is_ok()
                };
                if !accepted {
                    self.traffic.rejected += 1;
                }
                self.traffic.delivered += 1;
                self.trace_event(1, from as u64, to as u64, kind);
                let record_bytes = if records { len } else { 0 };
                self.cfg.cpu.per_input
                    + CpuCosts::bytes(self.cfg.cpu.per_record_byte_ns, record_bytes)
            }
        };
        self.drain(i, cost);
    }

    /// Sends `envelope` from host `from` to node `to` outside any core (an attacker, or a
    /// replay): it arrives after one network latency and goes through `handle_message`,
    /// with `from`'s address as the transport's remote.
    pub fn inject(&mut self, from: usize, to: usize, envelope: Envelope) {
        let delay = self.network.latency(&mut self.rng, from, to);
        let envelope = Box::new(envelope);
        self.schedule(self.now + delay, EventKind::Deliver { from, to, envelope });
    }

    /// Sends raw `frame` bytes from host `from` to node `to`, through `handle_frame`.
    pub fn inject_frame(&mut self, from: usize, to: usize, frame: Vec<u8>) {
        let delay = self.network.latency(&mut self.rng, from, to);
        self.schedule(
            self.now + delay,
            EventKind::DeliverFrame { from, to, frame },
        );
    }

    /// The frame authentication node `i` uses from its next boot (restart) on.
    pub fn set_auth(&mut self, i: usize, auth: FrameAuth) {
        self.nodes[i].auth = auth;
    }

    fn boot(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let auth = self.nodes[i].auth.clone();
        let mut config = Config::new(id, self.contacts.clone(), self.rng.random(), auth);
        config.records.broadcast = self.cfg.broadcast;
        (self.cfg.tune)(&mut config);
        if let Some(horizon) = self.cfg.gc_horizon {
            config.records.gc_horizon = horizon;
        }
        let node = Node::new(config, self.now)
            .unwrap_or_else(|e| panic!("the simulated cluster's config is invalid: {e}"));
        self.nodes[i].node = Some(node);
        self.nodes[i].timer = None;
        let host = &mut self.nodes[i].host;
        host.busy_until = self.now;
        host.inbox.clear();
        host.timer_queued = false;
        host.poll_queued = false;
        host.wake_pending = false;
        host.accept_queue = 0;
        host.kernel_running = false;
        host.kernel_waiting.clear();
        host.down_seen_by.clear();
        host.booted = true;
        host.boots += 1;
        self.trace_event(2, i as u64, id.epoch, 0);
        if let Some(world) = self.world.as_mut() {
            world.on_boot(i);
            let interval = world.cfg.poll_interval.as_nanos() as u64;
            let phase = Duration::from_nanos(self.rng.random_range(0..interval.max(1)));
            self.schedule(
                self.now + phase,
                EventKind::Poll {
                    node: i,
                    epoch: id.epoch,
                },
            );
        }
        self.handle(i, Input::Boot);
    }

    /// Node `i` reads its agent's `/state`, parses it with the core's Mesos parser and
    /// publishes the result; returns the CPU time the parse took.
    fn poll(&mut self, i: usize) -> Duration {
        let Some(world) = self.world.as_ref() else {
            return Duration::ZERO;
        };
        let epoch = self.nodes[i].id.epoch;
        let interval = world.cfg.poll_interval;
        let doc = world.agent_state(i);
        let agent_ip = IpAddr::V4(world.agents[i].ip);
        self.schedule(self.now + interval, EventKind::Poll { node: i, epoch });
        self.trace_event(4, i as u64, doc.len() as u64, 0);
        let parsed = crate::world::parse_agent_state(&doc);
        let core = self.nodes[i].node.as_mut().expect("alive");
        let world = self.world.as_mut().expect("checked above");
        match parsed {
            Ok((set, tasks, warnings)) => {
                world.counters.parse_warnings += warnings as u64;
                // The task records travel too, as the agent's do (for DNS).
                match core.set_local_report(self.now, vec![agent_ip], set.clone(), tasks) {
                    Ok(()) => world.on_polled(self.now, i, set),
                    Err(_) => world.counters.record_errors += 1,
                }
            }
            Err(_) => world.counters.parse_errors += 1,
        }
        self.cfg.cpu.per_input + CpuCosts::bytes(self.cfg.cpu.per_document_byte_ns, doc.len())
    }

    /// Drains node `i`'s outputs after an input that cost `cost` of CPU (before its
    /// outputs): packets into the network, events into the checks, kernel operations to
    /// the host's kernel. The process is busy until the input and its outputs are paid
    /// for; packets and operations leave then.
    fn drain(&mut self, i: usize, cost: Duration) {
        let mut outputs = std::mem::take(&mut self.outputs);
        {
            let Some(core) = self.nodes[i].node.as_mut() else {
                self.outputs = outputs;
                return;
            };
            loop {
                let output = core.poll_output();
                let last = matches!(output, Output::Timeout(_));
                outputs.push(output);
                if last {
                    break;
                }
            }
        }
        let mut cost = cost;
        if !self.instant_hosts {
            for output in &outputs {
                match output {
                    Output::Transmit(_) => cost += self.cfg.cpu.per_message_sent,
                    Output::Kernel(ops) => cost += self.cfg.cpu.refresh(ops.len()),
                    Output::Event(_)
                    | Output::Timeout(_)
                    | Output::CloseLink(_)
                    | Output::ProbeHost(_) => {}
                }
            }
        }
        self.cpu_ns += cost.as_nanos() as u64;
        let release = self.now + cost;
        if release > self.nodes[i].host.busy_until {
            self.nodes[i].host.busy_until = release;
        }
        for output in outputs.drain(..) {
            match output {
                Output::Transmit(t) => self.transmit(i, t.dst, t.envelope, release),
                Output::Event(e) => self.observe(i, e),
                Output::Kernel(ops) => self.kernel_ops(i, ops, release),
                Output::CloseLink(peer) => {
                    if let (Some(tcp), Some(to)) = (self.tcp.as_mut(), self.index.get(&peer)) {
                        tcp.close(i, *to);
                    }
                }
                Output::ProbeHost(peer) => self.host_probe(i, peer, release),
                Output::Timeout(at) => {
                    if self.check_each_event && self.invariant_violation.is_none() {
                        if let Some(core) = self.nodes[i].node.as_ref() {
                            if let Err(e) = core.check_invariants() {
                                self.invariant_violation = Some((self.now, e));
                            }
                        }
                    }
                    let at = at.max(self.now);
                    let slot = &mut self.nodes[i];
                    if slot.timer.is_none_or(|t| at < t) {
                        slot.timer = Some(at);
                        let epoch = slot.id.epoch;
                        self.schedule(at, EventKind::Timer { node: i, epoch });
                    }
                }
            }
        }
        self.outputs = outputs;
    }

    /// Node `i` emitted `ops` at `at`: into its kernel table now (ideal), or into the
    /// host's next `nft -f` transaction.
    fn kernel_ops(&mut self, i: usize, ops: Vec<Op>, at: Time) {
        let Some(world) = self.world.as_mut() else {
            return;
        };
        if self.cfg.kernel_apply.is_immediate() {
            world.on_kernel_ops(self.now, i, &ops);
            return;
        }
        let host = &mut self.nodes[i].host;
        host.kernel_waiting.extend(ops);
        assert!(
            host.kernel_waiting.len() <= KERNEL_BACKLOG_LIMIT,
            "node {i}: over {KERNEL_BACKLOG_LIMIT} kernel operations wait for a transaction"
        );
        if !host.kernel_running {
            self.start_transaction(i, at);
        }
    }

    fn start_transaction(&mut self, i: usize, at: Time) {
        let slot = &mut self.nodes[i];
        let ops = std::mem::take(&mut slot.host.kernel_waiting);
        if ops.is_empty() {
            return;
        }
        slot.host.kernel_running = true;
        let done = at + self.cfg.kernel_apply.cost(&ops);
        let boot = slot.host.boots;
        self.schedule(done, EventKind::KernelDone { node: i, boot, ops });
    }

    fn kernel_done(&mut self, i: usize, boot: u64, ops: Vec<Op>) {
        let slot = &self.nodes[i];
        if slot.host.boots != boot || slot.node.is_none() {
            return;
        }
        if self.now < slot.host.frozen_until {
            let thaw = slot.host.frozen_until;
            self.schedule(thaw, EventKind::KernelDone { node: i, boot, ops });
            return;
        }
        self.trace_event(8, i as u64, ops.len() as u64, 0);
        if let Some(world) = self.world.as_mut() {
            world.on_kernel_ops(self.now, i, &ops);
        }
        self.nodes[i].host.kernel_running = false;
        self.start_transaction(i, self.now);
    }

    fn transmit(&mut self, from: usize, dst: SocketAddr, envelope: Envelope, at: Time) {
        let len = wire::encoded_len(&envelope) as u64;
        self.traffic.messages_sent += 1;
        self.traffic.bytes_sent += len;
        let kind = &mut self.traffic.by_kind[envelope.msg.kind_index()];
        kind.0 += 1;
        kind.1 += len;
        let Some(to) = self.index.get(&dst).copied() else {
            self.traffic.unroutable += 1;
            return;
        };
        let envelope = Box::new(envelope);
        if let Some(tcp) = self.tcp.as_mut() {
            let mut out = std::mem::take(&mut self.segments);
            // A full send buffer refuses the message (counted by the transport).
            let _ = tcp.send(
                &self.network,
                &mut self.rng,
                at,
                (from, to),
                (envelope, len as usize),
                &mut out,
            );
            push_segments(&mut self.queue, &mut out);
            self.segments = out;
            return;
        }
        let mut delays = std::mem::take(&mut self.delays);
        match self.network.transmit(&mut self.rng, from, to, &mut delays) {
            Ok(()) => {
                if let Some((&last, rest)) = delays.split_last() {
                    for &d in rest {
                        let copy = envelope.clone();
                        self.schedule(
                            at + d,
                            EventKind::Deliver {
                                from,
                                to,
                                envelope: copy,
                            },
                        );
                    }
                    self.schedule(at + last, EventKind::Deliver { from, to, envelope });
                }
            }
            Err(crate::network::Drop::Lost) => self.traffic.lost += 1,
            Err(crate::network::Drop::Partitioned) => self.traffic.partitioned += 1,
        }
        self.delays = delays;
    }

    /// Node `i`'s shell probes `peer`'s host at `at`: a TCP connect answered by the
    /// peer's kernel (see [`Simulation::probe_host`]); the result reaches the prober as an
    /// input after the round trip, or after [`HOST_PROBE_TIMEOUT`] without an answer.
    fn host_probe(&mut self, i: usize, peer: SocketAddr, at: Time) {
        let answer = match self.index.get(&peer).copied() {
            Some(to) => self.probe_host(i, to),
            None => None,
        };
        let (delay, answered) = match answer {
            Some(rtt) if rtt < HOST_PROBE_TIMEOUT => (rtt, true),
            _ => (HOST_PROBE_TIMEOUT, false),
        };
        let epoch = self.nodes[i].id.epoch;
        self.schedule(
            at.max(self.now) + delay,
            EventKind::ProbeResult {
                node: i,
                epoch,
                peer,
                answered,
            },
        );
    }

    fn observe(&mut self, observer: usize, event: Event) {
        if self.watch.contains(&observer) {
            eprintln!("{} {} {event:?}", self.now, self.nodes[observer].id);
        }
        match event {
            Event::Unreachable(target) => {
                if let Some(t) = self.index.get(&target.addr).copied() {
                    if self.nodes[t].id == target && self.is_alive(t) {
                        let window = self.cfg.faults.attribution_window;
                        let observer_fault =
                            attribute(&self.nodes[observer].host.faults, self.now, window).0;
                        let host = &mut self.nodes[t].host;
                        let (cause, fault) = attribute(&host.faults, self.now, window);
                        // A report by an observer that was itself stalled or frozen in the
                        // window says more about the observer than about this host's fault:
                        // it counts as a false positive, not as this fault declared down.
                        let observer_sound = observer_fault == FpCause::LossOrDelay;
                        if let (Some(f), true) = (fault, observer_sound) {
                            host.faults[f].declared_down = true;
                        }
                        if observer_sound {
                            host.down_seen_by.insert(observer);
                        }
                        self.false_positives.push(FalsePositive {
                            at: self.now,
                            observer: self.nodes[observer].id,
                            target,
                            cause,
                            observer_fault,
                        });
                    }
                }
                if let Some(d) = self.detection.as_mut() {
                    if d.pending[observer].remove(&target) && d.pending[observer].is_empty() {
                        d.done_at[observer] = Some(self.now);
                    }
                }
            }
            Event::Reachable(target) => {
                if let Some(t) = self.index.get(&target.addr).copied() {
                    if self.nodes[t].id == target
                        && self.nodes[t].host.down_seen_by.remove(&observer)
                    {
                        self.check_restored(t);
                    }
                }
                if let Some(d) = self.detection.as_mut() {
                    if d.crashed.contains(&target) {
                        d.pending[observer].insert(target);
                        d.done_at[observer] = None;
                    }
                }
            }
            Event::AgentStalled(target) => {
                if let Some(t) = self.index.get(&target.addr).copied() {
                    self.on_agent_stalled_report(observer, t);
                }
            }
            Event::IncarnationChanged { new, .. } => {
                // The node became a newer incarnation (it had lost its state): its timers
                // and Mesos polls follow the new epoch.
                let slot = &mut self.nodes[observer];
                slot.id = new;
                slot.timer = None;
                self.trace_event(10, observer as u64, new.epoch, 0);
                if let Some(world) = self.world.as_ref() {
                    let at = self.now + world.cfg.poll_interval;
                    let (node, epoch) = (observer, new.epoch);
                    self.schedule(at, EventKind::Poll { node, epoch });
                }
            }
            Event::NeighborUp(_) | Event::NeighborDown(..) | Event::AgentResumed(_) => {}
        }
    }

    /// If no live node sees host `t` unreachable any more, its declared-down faults that
    /// have ended are restored now.
    fn check_restored(&mut self, t: usize) {
        let now = self.now;
        let host = &mut self.nodes[t].host;
        if !host.down_seen_by.is_empty() {
            return;
        }
        for f in host.faults.iter_mut().rev() {
            if f.declared_down && f.restored_at.is_none() && f.end <= now {
                f.restored_at = Some(now);
            }
        }
    }

    /// Kernel-panics node `i`: silent from now on. A stall or freeze in progress ends
    /// with it (the evaluations never crash a node during one).
    pub fn crash(&mut self, i: usize) {
        if self.nodes[i].node.take().is_some() {
            self.nodes[i].timer = None;
            let now = self.now;
            let host = &mut self.nodes[i].host;
            host.inbox.clear();
            host.kernel_waiting.clear();
            host.kernel_running = false;
            host.down_seen_by.clear();
            host.stalled_until = host.stalled_until.min(now);
            host.frozen_until = host.frozen_until.min(now);
            for f in host.faults.iter_mut().filter(|f| f.end > now) {
                f.end = now;
            }
            self.trace_event(3, i as u64, self.nodes[i].id.epoch, 0);
            if let Some(world) = self.world.as_mut() {
                world.on_crash(self.now, i);
            }
            // A dead observer no longer counts for "every live node sees it again".
            self.forget_observer(i);
        }
    }

    /// Crashes `victims` at once and starts measuring how long each survivor takes to see
    /// all of them unreachable (see [`Simulation::detection_times`]).
    pub fn crash_batch(&mut self, victims: &[usize]) {
        let crashed: BTreeSet<NodeId> = victims.iter().map(|&v| self.nodes[v].id).collect();
        for &v in victims {
            self.crash(v);
        }
        let mut pending = vec![BTreeSet::new(); self.nodes.len()];
        let mut done_at = vec![None; self.nodes.len()];
        let mut observer = vec![false; self.nodes.len()];
        for i in self.alive().collect::<Vec<_>>() {
            observer[i] = true;
            let core = self.nodes[i].node.as_ref().expect("alive");
            pending[i] = crashed
                .iter()
                .filter(|c| core.is_reachable(c))
                .copied()
                .collect();
            if pending[i].is_empty() {
                done_at[i] = Some(self.now);
            }
        }
        self.detection = Some(Detection {
            at: self.now,
            crashed,
            pending,
            done_at,
            observer,
        });
    }

    /// For the last crash batch, per live node: time from the crash until it saw every
    /// crashed node unreachable (`None`: not yet).
    pub fn detection_times(&self) -> Vec<(usize, Option<Duration>)> {
        let Some(d) = &self.detection else {
            return Vec::new();
        };
        self.alive()
            .filter(|&i| d.observer[i])
            .map(|i| (i, d.done_at[i].map(|t| t - d.at)))
            .collect()
    }

    /// Boots dormant host `i` now (a new host joining with an address never used before);
    /// returns false if it already started.
    pub fn start_host(&mut self, i: usize) -> bool {
        if self.nodes[i].host.booted {
            return false;
        }
        self.boot(i);
        true
    }

    /// Whether host `i` has booted at least once.
    pub fn has_started(&self, i: usize) -> bool {
        self.nodes[i].host.booted
    }

    /// How many times host `i`'s agent process has booted (every restart counts, even one
    /// that reuses an epoch, as a restart with its state lost can).
    pub fn boots(&self, i: usize) -> u64 {
        self.nodes[i].host.boots
    }

    /// Restarts node `i` with its state directory lost: it boots as epoch 1 again, though
    /// the cluster knows it under a newer epoch, and must find that out and supersede it.
    pub fn restart_lost_state(&mut self, i: usize) {
        self.crash(i);
        self.nodes[i].id.epoch = 1;
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.reset_host(i);
        }
        if let Some(world) = self.world.as_mut() {
            world.on_restart(i);
        }
        self.boot(i);
    }

    /// Restarts node `i` (crashed or not) as a new incarnation with the next epoch.
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.nodes[i].id.epoch += 1;
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.reset_host(i);
        }
        if let Some(world) = self.world.as_mut() {
            world.on_restart(i);
        }
        self.boot(i);
    }

    // ----- Stalls, freezes and their ground truth --------------------------------------

    /// Schedules node `i`'s next fault of `kind`, an exponential gap after `after`.
    fn schedule_fault(&mut self, i: usize, kind: FaultKind, after: Time) {
        let rate = self.cfg.faults.rate_per_min(kind) / 60.0;
        let at = after + self.exponential(rate);
        let host = &mut self.nodes[i].host;
        match kind {
            FaultKind::AgentStall => host.next_stall_at = Some(at),
            FaultKind::HostFreeze => host.next_freeze_at = Some(at),
        }
        self.schedule(at, EventKind::FaultStart { node: i, kind });
    }

    fn fault_start(&mut self, i: usize, kind: FaultKind) {
        let (lo, hi) = self.cfg.faults.bounds(kind);
        let (lo, hi) = (
            lo.as_secs_f64().max(1e-6).ln(),
            hi.as_secs_f64().max(1e-6).ln(),
        );
        let length = Duration::from_secs_f64(self.rng.random_range(lo..=hi.max(lo)).exp());
        let end = self.now + length;
        let over_crash = self.nodes[i]
            .host
            .planned_crash
            .is_some_and(|c| c >= self.now && c <= end + self.cfg.faults.attribution_window);
        if over_crash || !self.begin_fault(i, kind, length) {
            self.schedule_fault(i, kind, self.now);
            return;
        }
        self.schedule_fault(i, kind, end);
    }

    /// Starts a stall or freeze of node `i` now, unless it is dead or already in one of
    /// that kind; returns whether it started.
    fn begin_fault(&mut self, i: usize, kind: FaultKind, length: Duration) -> bool {
        let end = self.now + length;
        let host = &self.nodes[i].host;
        let busy = match kind {
            FaultKind::AgentStall => host.stalled_until > self.now,
            FaultKind::HostFreeze => host.frozen_until > self.now,
        };
        if !self.is_alive(i) || busy {
            return false;
        }
        let host = &mut self.nodes[i].host;
        match kind {
            FaultKind::AgentStall => host.stalled_until = end,
            FaultKind::HostFreeze => host.frozen_until = end,
        }
        host.faults.push(FaultInterval {
            kind,
            start: self.now,
            end,
            declared_down: false,
            restored_at: None,
        });
        let tag = match kind {
            FaultKind::AgentStall => 6,
            FaultKind::HostFreeze => 7,
        };
        self.trace_event(tag, i as u64, length.as_nanos() as u64, 0);
        self.schedule(end, EventKind::FaultEnd { node: i, kind });
        self.forget_observer(i);
        true
    }

    /// Node `i` stopped running (stalled, frozen or crashed): it no longer counts among
    /// the observers a restored host must be seen reachable by again, since it cannot see
    /// anything until it runs again.
    fn forget_observer(&mut self, i: usize) {
        for t in 0..self.nodes.len() {
            if t != i && self.nodes[t].host.down_seen_by.remove(&i) {
                self.check_restored(t);
            }
        }
    }

    /// Stops node `i`'s agent process now for `length` (a scripted stall: its kernel still
    /// ACKs segments and answers probes). Returns false if `i` is dead or already stalled.
    pub fn stall_agent(&mut self, i: usize, length: Duration) -> bool {
        self.begin_fault(i, FaultKind::AgentStall, length)
    }

    /// Freezes host `i` now for `length` (a scripted freeze). Returns false if `i` is dead
    /// or already frozen.
    pub fn freeze_host(&mut self, i: usize, length: Duration) -> bool {
        self.begin_fault(i, FaultKind::HostFreeze, length)
    }

    /// Records every input host `i` handles from now on (see [`Simulation::handled_inputs`]).
    pub fn trace_inputs(&mut self, i: usize) {
        self.input_trace.0.insert(i);
    }

    /// The inputs the traced hosts handled, in the order they were handled.
    pub fn handled_inputs(&self) -> &[HandledInput] {
        &self.input_trace.1
    }

    fn fault_end(&mut self, i: usize, kind: FaultKind) {
        if !self.is_alive(i) {
            return;
        }
        match kind {
            // The agent accepts whatever the kernel queued for it.
            FaultKind::AgentStall => self.nodes[i].host.accept_queue = 0,
            FaultKind::HostFreeze => {
                if self.nodes[i].host.down_seen_by.is_empty() {
                    self.check_restored(i);
                }
            }
        }
        self.pump(i);
    }

    /// The run will crash node `i` at `at`: no stall or freeze of it may overlap that.
    pub fn plan_crash(&mut self, i: usize, at: Time) {
        self.nodes[i].host.planned_crash = Some(at);
    }

    /// Whether node `i`'s agent process is stalled now (ground truth).
    pub fn is_stalled(&self, i: usize) -> bool {
        self.nodes[i].host.stalled_until > self.now
    }

    /// Whether host `i` is frozen now (ground truth).
    pub fn is_frozen(&self, i: usize) -> bool {
        self.nodes[i].host.frozen_until > self.now
    }

    /// Every stall and freeze node `i` went through, in start order (ground truth; the
    /// current one ends in the future).
    pub fn fault_log(&self, i: usize) -> &[FaultInterval] {
        &self.nodes[i].host.faults
    }

    /// Nodes stalled or frozen now.
    pub fn faulted_now(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_stalled(i) || self.is_frozen(i))
            .collect()
    }

    /// Agent stalls of the run so far.
    pub fn stall_report(&self) -> StallReport {
        let logs: Vec<Vec<FaultInterval>> =
            self.nodes.iter().map(|n| n.host.faults.clone()).collect();
        StallReport::of(&logs)
    }

    /// Host freezes of the run so far.
    pub fn freeze_report(&self) -> FreezeReport {
        let logs: Vec<Vec<FaultInterval>> =
            self.nodes.iter().map(|n| n.host.faults.clone()).collect();
        FreezeReport::of(&logs, self.cfg.faults.short_freeze, self.now)
    }

    /// The false positives so far, by cause (the target's fault).
    pub fn false_positives_by_cause(&self) -> FpByCause {
        FpByCause::of(self.false_positives.iter().map(|fp| fp.cause))
    }

    /// The false positives so far, by the observer's own fault (`loss_or_delay`: the
    /// observer was neither stalled nor frozen within the window).
    pub fn false_positives_by_observer_fault(&self) -> FpByCause {
        FpByCause::of(self.false_positives.iter().map(|fp| fp.observer_fault))
    }

    /// A core on `observer` reported that `target`'s agent is stalled (its host answers
    /// probes, its agent does not). The lead wires the core's event here.
    pub fn on_agent_stalled_report(&mut self, observer: usize, target: usize) {
        let _ = (observer, target);
        self.agent_stalled_reports += 1;
    }

    /// A summary of the TCP connection `from → to` (debugging).
    pub fn tcp_link_info(&self, from: usize, to: usize) -> Option<String> {
        self.tcp.as_ref().and_then(|t| t.link_info(from, to))
    }

    /// The transport's counters (`None` over datagrams).
    pub fn tcp_stats(&self) -> Option<&TcpStats> {
        self.tcp.as_ref().map(|t| &t.stats)
    }

    /// Host `from` probes host `to` now: a TCP connect to the peer port, answered by
    /// `to`'s kernel (a SYN-ACK) even while its agent is stalled, until the listener's
    /// accept queue holds `probe_backlog + 1` connections. Returns the round-trip time of
    /// the SYN / SYN-ACK exchange, drawn from the latency model, or `None` when this
    /// attempt gets no answer: `to` crashed, frozen when the probe is sent or when it
    /// arrives, partitioned from `from` either way, the SYN or the SYN-ACK lost, or the
    /// accept queue full. Draws from the run's generator (only when called).
    ///
    /// A port without a listener would answer with a reset; every simulated host listens.
    pub fn probe_host(&mut self, from: usize, to: usize) -> Option<Duration> {
        if !self.is_alive(to) || self.is_frozen(to) {
            return None;
        }
        if !self.network.can_reach(to, from) {
            return None;
        }
        let there = self.network.packet(&mut self.rng, from, to).ok()?;
        let arrives = self.now + there;
        let host = &self.nodes[to].host;
        let frozen_then =
            arrives < host.frozen_until || host.next_freeze_at.is_some_and(|f| f <= arrives);
        if frozen_then {
            return None;
        }
        let stalled_then =
            arrives < host.stalled_until || host.next_stall_at.is_some_and(|s| s <= arrives);
        if stalled_then {
            if host.accept_queue > self.cfg.probe_backlog {
                return None;
            }
            self.nodes[to].host.accept_queue += 1;
        }
        let back = self.network.packet(&mut self.rng, to, from).ok()?;
        Some(there + back)
    }

    /// Whether every node has started, every live node is in one overlay (the live
    /// active-view graph is connected) and every live node sees exactly the live nodes as
    /// reachable.
    pub fn is_converged(&self) -> bool {
        if self.not_started > 0 {
            return false;
        }
        let alive: Vec<usize> = self.alive().collect();
        let live_ids: Vec<NodeId> = alive.iter().map(|&i| self.nodes[i].id).collect();
        for &i in &alive {
            let core = self.nodes[i].node.as_ref().expect("alive");
            if core.reachable_count() != alive.len() {
                return false;
            }
        }
        for &i in &alive {
            let core = self.nodes[i].node.as_ref().expect("alive");
            if !live_ids.iter().all(|id| core.is_reachable(id)) {
                return false;
            }
        }
        self.overlay_components().len() == 1
    }

    /// Connected components of the live active-view graph (links counted if either side
    /// holds them), each a sorted list of node indices.
    pub fn overlay_components(&self) -> Vec<Vec<usize>> {
        let n = self.nodes.len();
        let mut adjacency = vec![Vec::new(); n];
        for i in self.alive() {
            let core = self.nodes[i].node.as_ref().expect("alive");
            for peer in core.active_view() {
                if let Some(j) = self.index_of(&peer.addr) {
                    if self.nodes[j].id == peer && self.is_alive(j) {
                        adjacency[i].push(j);
                        adjacency[j].push(i);
                    }
                }
            }
        }
        let mut seen = vec![false; n];
        let mut components = Vec::new();
        for start in self.alive() {
            if seen[start] {
                continue;
            }
            seen[start] = true;
            let mut component = vec![start];
            let mut head = 0;
            while head < component.len() {
                let at = component[head];
                head += 1;
                for &next in &adjacency[at] {
                    if !seen[next] {
                        seen[next] = true;
                        component.push(next);
                    }
                }
            }
            component.sort_unstable();
            components.push(component);
        }
        components
    }

    /// Active links held by one side only, as `(holder, peer)`.
    pub fn asymmetric_links(&self) -> Vec<(NodeId, NodeId)> {
        let mut out = Vec::new();
        for i in self.alive() {
            let core = self.nodes[i].node.as_ref().expect("alive");
            for peer in core.active_view() {
                let holds_back = self
                    .index_of(&peer.addr)
                    .and_then(|j| self.node(j))
                    .is_some_and(|other| other.is_active(&self.nodes[i].id));
                if !holds_back {
                    out.push((self.nodes[i].id, peer));
                }
            }
        }
        out
    }

    /// Checks every live node's view invariants.
    pub fn check_invariants(&self) -> Result<(), String> {
        if let Some((at, e)) = &self.invariant_violation {
            return Err(format!("after an event at {at}: {e}"));
        }
        for i in self.alive() {
            self.nodes[i]
                .node
                .as_ref()
                .expect("alive")
                .check_invariants()?;
        }
        Ok(())
    }
}

/// Moves the transport's scheduled segment events into the simulation's queue.
fn push_segments(queue: &mut EventQueue<EventKind>, out: &mut Vec<(Time, TcpEvent<Payload>)>) {
    for (at, event) in out.drain(..) {
        queue.push(at, EventKind::Segment(event));
    }
}

/// What the transport needs to know of a host's kernel now.
fn host_kernel(slot: &SimNode, now: Time) -> HostKernel {
    if slot.node.is_none() && !slot.host.booted {
        HostKernel::NoListener
    } else if slot.node.is_none() {
        HostKernel::Down
    } else if slot.host.frozen_until > now {
        HostKernel::Frozen(slot.host.frozen_until)
    } else {
        HostKernel::Up
    }
}
