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
//! The trace hash folds every delivered message (time, sender, receiver, kind, size) and
//! every crash and restart into one xxh3 digest: same seed, same hash.
//!
//! Invariants: simulated time never goes backwards; only live nodes handle events; every
//! reachability event a node emits is checked against the simulator's ground truth
//! (false positives are recorded with their time, observer and target).

use crate::network::{NetConfig, Network};
use crate::queue::EventQueue;
use crate::world::{ServiceWorld, WorldConfig};
use minuteman_core::auth::{ClusterKey, FrameAuth};
use minuteman_core::wire::{self, Envelope};
use minuteman_core::{Config, Event, Node, NodeId, Output, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use xxhash_rust::xxh3::Xxh3;

/// The port every simulated node listens on.
pub const PEER_PORT: u16 = 61420;

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
    /// Every host's frame authentication at start (one cluster key by default).
    pub auth: FrameAuth,
}

impl ClusterConfig {
    pub fn new(nodes: usize) -> ClusterConfig {
        ClusterConfig {
            nodes,
            contacts: 3.min(nodes),
            start_spread: Duration::from_millis(100),
            net: NetConfig::default(),
            wire_roundtrip: false,
            tune: |_| {},
            auth: sim_cluster_auth(),
        }
    }

    /// `nodes` on the default LAN, or on a lossy one (`NetConfig::lossy`) when `loss > 0`.
    pub fn with_loss(nodes: usize, loss: f64) -> ClusterConfig {
        let mut cfg = ClusterConfig::new(nodes);
        if loss > 0.0 {
            cfg.net = NetConfig::lossy(loss);
        }
        cfg
    }
}

/// A live node saw another live node unreachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FalsePositive {
    pub at: Time,
    pub observer: NodeId,
    pub target: NodeId,
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
}

struct SimNode {
    id: NodeId,
    /// The frame authentication this host boots with (see [`Simulation::set_auth`]).
    auth: FrameAuth,
    node: Option<Node>,
    /// The earliest timer event in the heap for this incarnation.
    timer: Option<Time>,
}

enum EventKind {
    Start {
        node: usize,
    },
    /// A message from node `from` (whatever it claims inside) to node `to`.
    Deliver {
        from: usize,
        to: usize,
        envelope: Envelope,
    },
    /// Raw bytes from host `from` to node `to`, through the frame decoder.
    DeliverFrame {
        from: usize,
        to: usize,
        frame: Vec<u8>,
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
    /// Check a node's invariants after every input it handles (tests turn this on); the
    /// first violation is kept in `invariant_violation`.
    pub check_each_event: bool,
    /// The first broken invariant seen with `check_each_event`: when, and what.
    pub invariant_violation: Option<(Time, String)>,
    /// When set, every delivered message is recorded here as (sender host, receiver,
    /// envelope): captured traffic, for replay tests.
    pub capture: Option<Vec<(usize, usize, Envelope)>>,
}

impl Simulation {
    /// Builds the cluster; nodes start during the first `start_spread`.
    pub fn new(cfg: ClusterConfig, seed: u64) -> Simulation {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let link_salt = rng.random();
        let network = Network::new(cfg.net.clone(), cfg.nodes, link_salt);
        let contacts: Vec<SocketAddr> = (0..cfg.contacts).map(node_addr).collect();
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
            not_started: cfg.nodes,
            world: None,
            churn_until: Time::ZERO,
            check_each_event: false,
            invariant_violation: None,
            capture: None,
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
            });
            let spread = sim.cfg.start_spread.as_nanos() as u64;
            let at = Time::from_nanos(sim.rng.random_range(0..=spread));
            sim.schedule(at, EventKind::Start { node: i });
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
        }
        self.now = self.now.max(until);
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
                let Some(core) = slot.node.as_mut() else {
                    return;
                };
                core.handle_timeout(self.now);
                self.drain(node);
            }
            EventKind::Poll { node, epoch } => self.poll(node, epoch),
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
            EventKind::Deliver { from, to, envelope } => {
                let slot = &mut self.nodes[to];
                let Some(core) = slot.node.as_mut() else {
                    self.traffic.to_dead += 1;
                    return;
                };
                if self.watch.contains(&to) || self.watch.contains(&from) {
                    eprintln!(
                        "{} {} -> {} {:?}",
                        self.now, envelope.from, slot.id, envelope.msg
                    );
                }
                let kind = envelope.msg.kind_index() as u64;
                if let Some(capture) = self.capture.as_mut() {
                    capture.push((from, to, envelope.clone()));
                }
                let remote = node_addr(from).ip();
                let accepted = if self.cfg.wire_roundtrip {
                    let limits = core.config().limits.clone();
                    let sender_auth = &self.nodes[from].auth;
                    let frame = wire::encode_sealed(&envelope, &limits, sender_auth)
                        .expect("core emits frames within the limits");
                    let core = self.nodes[to].node.as_mut().expect("alive");
                    core.handle_frame(self.now, remote, &frame).is_ok()
                } else {
                    core.handle_message(self.now, remote, envelope).is_ok()
                };
                if !accepted {
                    self.traffic.rejected += 1;
                }
                self.traffic.delivered += 1;
                self.trace_event(1, from as u64, to as u64, kind);
                self.drain(to);
            }
            EventKind::DeliverFrame { from, to, frame } => {
                let Some(core) = self.nodes[to].node.as_mut() else {
                    self.traffic.to_dead += 1;
                    return;
                };
                if core
                    .handle_frame(self.now, node_addr(from).ip(), &frame)
                    .is_err()
                {
                    self.traffic.rejected += 1;
                }
                self.traffic.delivered += 1;
                self.trace_event(6, from as u64, to as u64, frame.len() as u64);
                self.drain(to);
            }
        }
    }

    /// Sends `envelope` from host `from` to node `to` outside any core (an attacker, or a
    /// replay): it arrives after one network latency and goes through `handle_message`,
    /// with `from`'s address as the transport's remote.
    pub fn inject(&mut self, from: usize, to: usize, envelope: Envelope) {
        let delay = self.network.latency(&mut self.rng, from, to);
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
        (self.cfg.tune)(&mut config);
        let node = Node::new(config, self.now)
            .unwrap_or_else(|e| panic!("the simulated cluster's config is invalid: {e}"));
        self.nodes[i].node = Some(node);
        self.nodes[i].timer = None;
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
        self.drain(i);
    }

    /// Node `i` reads its agent's `/state`, parses it with the core's Mesos parser and
    /// publishes the result.
    fn poll(&mut self, i: usize, epoch: u64) {
        if self.nodes[i].id.epoch != epoch || !self.is_alive(i) {
            return;
        }
        let Some(world) = self.world.as_ref() else {
            return;
        };
        let interval = world.cfg.poll_interval;
        let doc = world.agent_state(i);
        let agent_ip = IpAddr::V4(world.agents[i].ip);
        self.schedule(self.now + interval, EventKind::Poll { node: i, epoch });
        self.trace_event(4, i as u64, doc.len() as u64, 0);
        let parsed = crate::world::parse_agent_state(&doc);
        let core = self.nodes[i].node.as_mut().expect("alive");
        let world = self.world.as_mut().expect("checked above");
        match parsed {
            Ok((set, warnings)) => {
                world.counters.parse_warnings += warnings as u64;
                match core.set_local_services(self.now, vec![agent_ip], set.clone()) {
                    Ok(()) => world.on_polled(self.now, i, set),
                    Err(_) => world.counters.record_errors += 1,
                }
            }
            Err(_) => world.counters.parse_errors += 1,
        }
        self.drain(i);
    }

    /// Drains node `i`'s outputs: packets into the network, events into the checks.
    fn drain(&mut self, i: usize) {
        loop {
            let Some(core) = self.nodes[i].node.as_mut() else {
                return;
            };
            match core.poll_output() {
                Output::Transmit(t) => self.transmit(i, t.dst, t.envelope),
                // Simulated links have no connection to close.
                Output::CloseLink(_) => {}
                Output::Event(e) => self.observe(i, e),
                Output::Kernel(ops) => {
                    if let Some(world) = self.world.as_mut() {
                        world.on_kernel_ops(self.now, i, &ops);
                    }
                }
                Output::Timeout(at) => {
                    if self.check_each_event && self.invariant_violation.is_none() {
                        if let Err(e) = core.check_invariants() {
                            self.invariant_violation = Some((self.now, e));
                        }
                    }
                    let at = at.max(self.now);
                    let slot = &mut self.nodes[i];
                    if slot.timer.is_none_or(|t| at < t) {
                        slot.timer = Some(at);
                        let epoch = slot.id.epoch;
                        self.schedule(at, EventKind::Timer { node: i, epoch });
                    }
                    return;
                }
            }
        }
    }

    fn transmit(&mut self, from: usize, dst: SocketAddr, envelope: Envelope) {
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
        let mut delays = std::mem::take(&mut self.delays);
        match self.network.transmit(&mut self.rng, from, to, &mut delays) {
            Ok(()) => {
                if let Some((&last, rest)) = delays.split_last() {
                    for &d in rest {
                        let copy = envelope.clone();
                        self.schedule(
                            self.now + d,
                            EventKind::Deliver {
                                from,
                                to,
                                envelope: copy,
                            },
                        );
                    }
                    self.schedule(self.now + last, EventKind::Deliver { from, to, envelope });
                }
            }
            Err(crate::network::Drop::Lost) => self.traffic.lost += 1,
            Err(crate::network::Drop::Partitioned) => self.traffic.partitioned += 1,
        }
        self.delays = delays;
    }

    fn observe(&mut self, observer: usize, event: Event) {
        if self.watch.contains(&observer) {
            eprintln!("{} {} {event:?}", self.now, self.nodes[observer].id);
        }
        match event {
            Event::Unreachable(target) => {
                if let Some(t) = self.index.get(&target.addr).copied() {
                    if self.nodes[t].id == target && self.is_alive(t) {
                        self.false_positives.push(FalsePositive {
                            at: self.now,
                            observer: self.nodes[observer].id,
                            target,
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
                if let Some(d) = self.detection.as_mut() {
                    if d.crashed.contains(&target) {
                        d.pending[observer].insert(target);
                        d.done_at[observer] = None;
                    }
                }
            }
            Event::IncarnationChanged { new, .. } => {
                // The node became a newer incarnation (it had lost its state): its timers
                // and Mesos polls follow the new epoch.
                let slot = &mut self.nodes[observer];
                slot.id = new;
                slot.timer = None;
                self.trace_event(7, observer as u64, new.epoch, 0);
                if let Some(world) = self.world.as_ref() {
                    let at = self.now + world.cfg.poll_interval;
                    let (node, epoch) = (observer, new.epoch);
                    self.schedule(at, EventKind::Poll { node, epoch });
                }
            }
            Event::NeighborUp(_) | Event::NeighborDown(..) => {}
        }
    }

    /// Kernel-panics node `i`: silent from now on.
    pub fn crash(&mut self, i: usize) {
        if self.nodes[i].node.take().is_some() {
            self.nodes[i].timer = None;
            self.trace_event(3, i as u64, self.nodes[i].id.epoch, 0);
            if let Some(world) = self.world.as_mut() {
                world.on_crash(self.now, i);
            }
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
        for i in self.alive().collect::<Vec<_>>() {
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
        });
    }

    /// For the last crash batch, per live node: time from the crash until it saw every
    /// crashed node unreachable (`None`: not yet).
    pub fn detection_times(&self) -> Vec<(usize, Option<Duration>)> {
        let Some(d) = &self.detection else {
            return Vec::new();
        };
        self.alive()
            .map(|i| (i, d.done_at[i].map(|t| t - d.at)))
            .collect()
    }

    /// Restarts node `i` (crashed or not) as a new incarnation with the next epoch.
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.nodes[i].id.epoch += 1;
        if let Some(world) = self.world.as_mut() {
            world.on_restart(i);
        }
        self.boot(i);
    }

    /// Restarts node `i` with its state directory lost: it boots as epoch 1 again, though
    /// the cluster knows it under a newer epoch, and must find that out and supersede it.
    pub fn restart_lost_state(&mut self, i: usize) {
        self.crash(i);
        self.nodes[i].id.epoch = 1;
        if let Some(world) = self.world.as_mut() {
            world.on_restart(i);
        }
        self.boot(i);
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

    /// Checks every live node's invariants now, and reports the first violation seen
    /// after any event when `check_each_event` is on.
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
