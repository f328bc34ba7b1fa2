//! One shard of the simulation: a range of hosts, their event queue, and what their
//! events do. The simulator runs the shards window by window, one thread each (or one
//! after the other); see the module documentation of [`crate::sim`]. This module holds
//! the shard's state and the event loop; what the events do is in `process` (a host's
//! process: inputs, CPU time, outputs, kernel transactions), `transport` (segments and
//! host probes between hosts), `reports` (reports against the ground truth, and mail) and
//! `faults` (stalls and freezes).
//!
//! Invariants: an event touches the state of its own host only (its core, process,
//! kernel, faults, transport endpoint, random stream and trace). What one host's event
//! does to another host travels as an event at least the network's least one-way latency
//! later (a segment, a transport answer, a probe), or as [`Mail`] that the other host's
//! shard applies at the next window boundary, in the order of `(time, source, seq)`
//! (ACKs, reachability reports about a host, an observer that stopped). Applying mail
//! schedules nothing. So a window runs the same whichever shard, or thread, runs each
//! host, and the results are the same for every partition.

mod faults;
mod process;
mod reports;
mod transport;

use super::{
    node_addr, ClusterConfig, FalsePositive, HandledInput, InputKind, Traffic, HOST_PROBE_TIMEOUT,
    INBOX_LIMIT, KERNEL_BACKLOG_LIMIT,
};
use crate::cpu::CpuCosts;
use crate::faults::{attribute, FaultInterval, FaultKind, FpCause};
use crate::network::Network;
use crate::queue::EventQueue;
use crate::tcp::{Endpoint, HostKernel, Refusal, Tcp, TcpEvent};
use crate::world::ServiceWorld;
use minuteman_core::auth::FrameAuth;
use minuteman_core::kernel::Op;
use minuteman_core::wire::{self, Envelope};
use minuteman_core::{Config, Event, Message, Node, NodeId, Output, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use xxhash_rust::xxh3::{xxh3_64_with_seed, Xxh3};

/// A host's random generator (xoshiro256++: small and fast; each host's is seeded from
/// its own ChaCha stream of the run seed, so the streams are independent).
pub(super) type HostRng = rand_xoshiro::Xoshiro256PlusPlus;

/// The source of events and mail scheduled outside any host (the run's script).
pub(super) const GLOBAL_SOURCE: u32 = u32::MAX;

/// A message on its way between hosts. Boxed: it is moved a dozen times from the
/// sender's outputs through the transport's segments, the event queue and the receiver's
/// inbox, and an envelope is 112 bytes (`memmove` was 6-7.5% of a large run's profile).
pub(super) type Payload = Box<Envelope>;

/// One simulated host: its core (when running), what the simulator knows of its
/// process, kernel and faults, and everything of its own that its events touch.
pub(super) struct SimNode {
    pub(super) id: NodeId,
    /// The frame authentication this host boots with (see [`super::Simulation::set_auth`]).
    pub(super) auth: FrameAuth,
    pub(super) node: Option<Node>,
    /// When this incarnation's process wakes for its timer (its newest deadline; events
    /// in the heap for other instants are stale).
    pub(super) timer: Option<Time>,
    pub(super) host: Host,
    /// This host's random stream: every draw its events make (its packets' latency and
    /// loss, its node's seed, its faults). A small generator (32 bytes, beside the
    /// host's other state), seeded from the run seed's ChaCha stream `1 + index`.
    pub(super) rng: HostRng,
    /// Events and mail this host has scheduled (their `seq`).
    pub(super) seq: u64,
    /// This host's trace: what it handled, folded in order.
    pub(super) trace: u64,
    /// Its ends of the TCP connections.
    pub(super) tcp: Endpoint<Payload>,
    /// While a crash batch is watched: the crashed nodes it still sees reachable, when
    /// that set last became empty, and whether it was live at the crash.
    pub(super) pending: BTreeSet<NodeId>,
    pub(super) done_at: Option<Time>,
    pub(super) observer: bool,
}

impl SimNode {
    pub(super) fn new(index: usize, seed: u64, auth: FrameAuth) -> SimNode {
        let mut stream = ChaCha8Rng::seed_from_u64(seed);
        stream.set_stream(1 + index as u64);
        let rng = HostRng::from_rng(&mut stream);
        SimNode {
            id: NodeId::new(node_addr(index), 1),
            auth,
            node: None,
            timer: None,
            host: Host::default(),
            rng,
            seq: 0,
            trace: 0,
            tcp: Endpoint::default(),
            pending: BTreeSet::new(),
            done_at: None,
            observer: false,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(super) fn trace_event(&mut self, now: Time, tag: u8, a: u64, b: u64, c: u64) {
        self.trace = xxh3_64_with_seed(&trace_bytes(now, tag, a, b, c), self.trace);
    }
}

/// The bytes one trace entry folds.
pub(super) fn trace_bytes(now: Time, tag: u8, a: u64, b: u64, c: u64) -> [u8; 33] {
    let mut buf = [0u8; 33];
    buf[0] = tag;
    buf[1..9].copy_from_slice(&now.as_nanos().to_le_bytes());
    buf[9..17].copy_from_slice(&a.to_le_bytes());
    buf[17..25].copy_from_slice(&b.to_le_bytes());
    buf[25..33].copy_from_slice(&c.to_le_bytes());
    buf
}

/// An input waiting for the host's process.
pub(super) enum Input {
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
pub(super) struct Host {
    /// The process is busy (spending CPU on earlier inputs) until then.
    pub(super) busy_until: Time,
    /// Inputs waiting, with the time each arrived.
    pub(super) inbox: VecDeque<(Time, Input)>,
    pub(super) timer_queued: bool,
    pub(super) poll_queued: bool,
    /// A `Wake` event is in the queue.
    pub(super) wake_pending: bool,
    /// The agent process is stopped until then (a stall).
    pub(super) stalled_until: Time,
    /// The whole host is frozen until then.
    pub(super) frozen_until: Time,
    /// When the next scheduled stall / freeze starts.
    pub(super) next_stall_at: Option<Time>,
    pub(super) next_freeze_at: Option<Time>,
    /// Probes answered by the kernel while the agent could not accept them.
    pub(super) accept_queue: u32,
    /// A kernel transaction is running.
    pub(super) kernel_running: bool,
    /// Counts the agent process's boots: events of an earlier process are void.
    pub(super) boots: u64,
    /// Operations emitted while a transaction runs: they go into the next one.
    pub(super) kernel_waiting: Vec<Op>,
    /// Ground truth: every stall and freeze, in start order.
    pub(super) faults: Vec<FaultInterval>,
    /// A crash the run has planned: no fault may overlap it.
    pub(super) planned_crash: Option<Time>,
    /// Live observers that currently see this host's incarnation unreachable.
    pub(super) down_seen_by: BTreeSet<usize>,
    /// The host has booted at least once (before that its kernel answers with resets).
    pub(super) booted: bool,
}

pub(super) enum EventKind {
    Start {
        node: usize,
    },
    /// A datagram from node `from` (whatever it claims inside) to node `to`.
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
    /// Node `prober`'s host probe (a SYN to the peer port) reaches host `to`'s kernel;
    /// it was sent at `sent`.
    ProbeSyn {
        prober: usize,
        epoch: u64,
        peer: SocketAddr,
        to: usize,
        sent: Time,
    },
    /// The answer to node `node`'s probe of `peer`'s host (or its timeout).
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
    /// One random task change somewhere (a run with services: one shard).
    Churn,
    /// The transport (TCP) moves a segment or an answer.
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

impl EventKind {
    /// The host the event happens at (whose shard runs it).
    pub(super) fn host(&self) -> usize {
        match self {
            EventKind::Start { node }
            | EventKind::ProbeResult { node, .. }
            | EventKind::Timer { node, .. }
            | EventKind::Poll { node, .. }
            | EventKind::Wake { node, .. }
            | EventKind::KernelDone { node, .. }
            | EventKind::FaultStart { node, .. }
            | EventKind::FaultEnd { node, .. } => *node,
            EventKind::Deliver { to, .. }
            | EventKind::DeliverFrame { to, .. }
            | EventKind::ProbeSyn { to, .. } => *to,
            EventKind::Segment(event) => event.host(),
            EventKind::Churn => 0,
        }
    }
}

/// An effect of one host's event on another host, applied at the next window boundary.
pub(super) struct Mail {
    pub(super) at: Time,
    pub(super) source: u32,
    pub(super) seq: u64,
    pub(super) kind: MailKind,
}

pub(super) enum MailKind {
    /// The receiver refused a data segment: for its sender.
    Refused(Refusal),
    /// `observer` (incarnation `observer_id`, with its own fault state `observer_fault`
    /// then) reported `target`, an incarnation of host `t`, unreachable: for host `t`.
    Unreachable {
        observer: usize,
        observer_id: NodeId,
        observer_fault: FpCause,
        target: NodeId,
        t: usize,
    },
    /// `observer` sees `target` (of host `t`) reachable again: for host `t`.
    Reachable {
        observer: usize,
        target: NodeId,
        t: usize,
    },
    /// `observer` stopped running (stalled or frozen): for every host.
    Stopped { observer: usize },
}

impl Mail {
    pub(super) fn key(&self) -> (Time, u32, u64) {
        (self.at, self.source, self.seq)
    }
}

/// A shard's own state beside its hosts: its queue, counters, and what its hosts sent
/// to other shards during the current window.
pub(super) struct ShardLocal {
    pub(super) queue: EventQueue<EventKind>,
    pub(super) traffic: Traffic,
    pub(super) tcp: Option<Tcp>,
    pub(super) cpu_ns: u64,
    pub(super) events: u64,
    pub(super) agent_stalled_reports: u64,
    pub(super) false_positives: Vec<FalsePositive>,
    pub(super) handled: Vec<HandledInput>,
    pub(super) capture: Vec<(usize, usize, Envelope)>,
    pub(super) invariant_violation: Option<(Time, String)>,
    /// Events for other shards' hosts, by shard: `(at, source, seq, event)`.
    pub(super) outbox: Vec<Vec<(Time, u32, u64, EventKind)>>,
    /// Mail for hosts, by their shard (this shard's own included).
    pub(super) mail: Vec<Vec<Mail>>,
    /// The earliest event sent to another shard since this was last cleared.
    pub(super) sent_min: Option<Time>,
    outputs: Vec<Output>,
    segments: Vec<(Time, TcpEvent<Payload>)>,
    delivered: Vec<(Payload, usize)>,
    refusals: Vec<Refusal>,
    delays: Vec<Duration>,
}

impl ShardLocal {
    pub(super) fn new(shards: usize, tcp: Option<Tcp>) -> ShardLocal {
        ShardLocal {
            queue: EventQueue::new(),
            traffic: Traffic::default(),
            tcp,
            cpu_ns: 0,
            events: 0,
            agent_stalled_reports: 0,
            false_positives: Vec::new(),
            handled: Vec::new(),
            capture: Vec::new(),
            invariant_violation: None,
            outbox: (0..shards).map(|_| Vec::new()).collect(),
            mail: (0..shards).map(|_| Vec::new()).collect(),
            sent_min: None,
            outputs: Vec::new(),
            segments: Vec::new(),
            delivered: Vec::new(),
            refusals: Vec::new(),
            delays: Vec::new(),
        }
    }
}

/// What every shard reads and none changes while windows run.
pub(super) struct Common {
    pub(super) cfg: ClusterConfig,
    /// Lookup only (never iterated).
    pub(super) index: HashMap<SocketAddr, usize>,
    pub(super) contacts: Vec<SocketAddr>,
    /// Whether every input is handled the moment it arrives (the ideal host).
    pub(super) instant_hosts: bool,
    /// Shard `s` holds hosts `bounds[s]..bounds[s + 1]`.
    pub(super) bounds: Vec<usize>,
    /// The nodes of the crash batch being watched.
    pub(super) crashed: Option<BTreeSet<NodeId>>,
    /// Copies of the simulation's switches, taken when a run starts.
    pub(super) watch: BTreeSet<usize>,
    pub(super) traced: BTreeSet<usize>,
    pub(super) check_each_event: bool,
    pub(super) capture: bool,
}

impl Common {
    pub(super) fn shard_of(&self, host: usize) -> usize {
        // A handful of shards: a short scan.
        self.bounds[1..]
            .iter()
            .position(|&end| host < end)
            .expect("a host of the cluster")
    }

    pub(super) fn shards(&self) -> usize {
        self.bounds.len() - 1
    }
}

/// What a world run (services: one shard) lends the shard beside its hosts.
pub(super) struct Globals<'a> {
    pub(super) rng: &'a mut ChaCha8Rng,
    pub(super) seq: &'a mut u64,
    pub(super) trace: &'a mut Xxh3,
    pub(super) churn_until: Time,
}

/// One shard at work: its hosts (`nodes`, host `base` first; between runs, every host),
/// its own state, and what it shares.
pub(super) struct Ctx<'a> {
    pub(super) common: &'a Common,
    pub(super) network: &'a Network,
    pub(super) shard: usize,
    pub(super) base: usize,
    pub(super) nodes: &'a mut [SimNode],
    pub(super) local: &'a mut ShardLocal,
    pub(super) world: Option<&'a mut ServiceWorld>,
    pub(super) globals: Option<Globals<'a>>,
    /// The last instant of the window running (`None` between runs).
    pub(super) window_end: Option<Time>,
    pub(super) now: Time,
}

impl<'a> Ctx<'a> {
    /// Shard `shard` at work on `nodes` (host `base` first) at `now`, with no world and
    /// nothing of the script's (a run with services sets them).
    pub(super) fn new(
        (common, network): (&'a Common, &'a Network),
        (shard, base): (usize, usize),
        nodes: &'a mut [SimNode],
        local: &'a mut ShardLocal,
        now: Time,
    ) -> Ctx<'a> {
        Ctx {
            common,
            network,
            shard,
            base,
            nodes,
            local,
            world: None,
            globals: None,
            window_end: None,
            now,
        }
    }

    fn n(&mut self, i: usize) -> &mut SimNode {
        &mut self.nodes[i - self.base]
    }

    fn r(&self, i: usize) -> &SimNode {
        &self.nodes[i - self.base]
    }

    fn cfg(&self) -> &ClusterConfig {
        &self.common.cfg
    }

    fn is_alive(&self, i: usize) -> bool {
        self.r(i).node.is_some()
    }

    /// Host `source` schedules `kind` at `at`.
    fn schedule(&mut self, source: usize, at: Time, kind: EventKind) {
        let seq = self.n(source).next_seq();
        self.push_event(at, source as u32, seq, kind);
    }

    fn push_event(&mut self, at: Time, source: u32, seq: u64, kind: EventKind) {
        let shard = self.common.shard_of(kind.host());
        if shard == self.shard {
            self.local.queue.push(at, source, seq, kind);
            return;
        }
        if let Some(end) = self.window_end {
            assert!(
                at > end,
                "an event for another shard's host inside the window ({at} <= {end}): the lookahead is broken"
            );
        }
        self.local.sent_min = Some(self.local.sent_min.map_or(at, |m| m.min(at)));
        self.local.outbox[shard].push((at, source, seq, kind));
    }

    /// Host `source` mails `kind` to host `to` (applied at the next window boundary).
    fn mail(&mut self, source: usize, to: usize, kind: MailKind) {
        let seq = self.n(source).next_seq();
        let shard = self.common.shard_of(to);
        let at = self.now;
        self.local.mail[shard].push(Mail {
            at,
            source: source as u32,
            seq,
            kind,
        });
    }

    fn trace_event(&mut self, i: usize, tag: u8, a: u64, b: u64, c: u64) {
        let now = self.now;
        self.n(i).trace_event(now, tag, a, b, c);
    }

    /// Runs every event of this shard due at or before `end` (the window's last instant).
    pub(super) fn run_window(&mut self, end: Time) {
        self.window_end = Some(end);
        while let Some((at, kind)) = self.local.queue.pop_until(end) {
            debug_assert!(at >= self.now, "time went backwards");
            self.now = at;
            self.local.events += 1;
            self.dispatch(kind);
        }
        self.window_end = None;
    }

    fn dispatch(&mut self, kind: EventKind) {
        match kind {
            EventKind::Start { node } => self.boot(node),
            EventKind::Timer { node, epoch } => {
                let now = self.now;
                let slot = self.n(node);
                if slot.id.epoch != epoch || slot.timer != Some(now) {
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
                let slot = self.n(node);
                if slot.id.epoch != epoch || slot.node.is_none() || slot.host.poll_queued {
                    return;
                }
                slot.host.poll_queued = true;
                self.accept_input(node, Input::Poll);
            }
            EventKind::Churn => self.churn(),
            EventKind::DeliverFrame { from, to, frame } => {
                if !self.is_alive(to) {
                    self.local.traffic.to_dead += 1;
                    return;
                }
                self.accept_input(to, Input::Frame { from, frame });
            }
            EventKind::ProbeSyn {
                prober,
                epoch,
                peer,
                to,
                sent,
            } => self.probe_arrives(prober, epoch, peer, to, sent),
            EventKind::ProbeResult {
                node,
                epoch,
                peer,
                answered,
            } => {
                if self.r(node).id.epoch == epoch && self.is_alive(node) {
                    self.accept_input(node, Input::Probe { peer, answered });
                }
            }
            EventKind::Deliver { from, to, envelope } => {
                if !self.is_alive(to) {
                    self.local.traffic.to_dead += 1;
                    return;
                }
                if self.r(to).host.frozen_until > self.now {
                    self.local.traffic.to_frozen += 1;
                    return;
                }
                if self.r(to).host.inbox.len() >= INBOX_LIMIT {
                    self.local.traffic.inbox_overflow += 1;
                    return;
                }
                let len = if self.common.instant_hosts {
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
                if self.r(node).host.boots == boot {
                    self.n(node).host.wake_pending = false;
                    self.pump(node);
                }
            }
            EventKind::KernelDone { node, boot, ops } => self.kernel_done(node, boot, ops),
            EventKind::FaultStart { node, kind } => self.fault_start(node, kind),
            EventKind::FaultEnd { node, kind } => self.fault_end(node, kind),
        }
    }

    fn churn(&mut self) {
        let now = self.now;
        let Some(g) = self.globals.as_mut() else {
            panic!("task churn runs with the world, on one shard");
        };
        if now > g.churn_until {
            return;
        }
        let Some(world) = self.world.as_mut() else {
            return;
        };
        world.churn(now, g.rng);
        let rate = world.cfg.churn_per_s;
        g.trace.update(&trace_bytes(now, 5, 0, 0, 0));
        let gap = exponential(g.rng, rate);
        *g.seq += 1;
        let seq = *g.seq;
        self.push_event(now + gap, GLOBAL_SOURCE, seq, EventKind::Churn);
    }
}

/// An exponential gap at `rate` per second.
pub(super) fn exponential(rng: &mut impl Rng, rate: f64) -> Duration {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    Duration::from_secs_f64(-u.ln() / rate)
}

/// What the transport needs to know of a host's kernel now.
pub(super) fn host_kernel(slot: &SimNode, now: Time) -> HostKernel {
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
