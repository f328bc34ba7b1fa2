//! One shard of the simulation: a range of hosts, their event queue, and what their
//! events do. The simulator runs the shards window by window, one thread each (or one
//! after the other); see the module documentation of [`crate::sim`].
//!
//! Invariants: an event touches the state of its own host only (its core, process,
//! kernel, faults, transport endpoint, random stream and trace). What one host's event
//! does to another host travels as an event at least the network's least one-way latency
//! later (a segment, a transport answer, a probe), or as [`Mail`] that the other host's
//! shard applies at the next window boundary, in the order of `(time, source, seq)`
//! (ACKs, reachability reports about a host, an observer that stopped). Applying mail
//! schedules nothing. So a window runs the same whichever shard, or thread, runs each
//! host, and the results are the same for every partition.

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

    /// The transport moved a segment: deliver what is now in order, or retransmit.
    fn segment(&mut self, event: TcpEvent<Payload>) {
        if self.local.tcp.is_none() {
            return;
        }
        let mut out = std::mem::take(&mut self.local.segments);
        let now = self.now;
        let host = event.host();
        match event {
            TcpEvent::Arrive(seg) => {
                let (from, to) = (seg.from, seg.to);
                let receiver = host_kernel(self.r(to), now);
                if matches!(receiver, HostKernel::Down | HostKernel::NoListener) {
                    self.local.traffic.to_dead += 1;
                }
                let mut delivered = std::mem::take(&mut self.local.delivered);
                let mut refusals = std::mem::take(&mut self.local.refusals);
                let tcp = self.local.tcp.as_mut().expect("checked above");
                let end = &mut self.nodes[to - self.base].tcp;
                tcp.on_arrive(
                    now,
                    seg,
                    end,
                    receiver,
                    &mut out,
                    &mut delivered,
                    &mut refusals,
                );
                self.push_segments(host, &mut out);
                // Back before the inputs are handled: their sends reuse it.
                self.local.segments = out;
                for refusal in refusals.drain(..) {
                    self.mail(to, from, MailKind::Refused(refusal));
                }
                self.local.refusals = refusals;
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
                self.local.delivered = delivered;
            }
            TcpEvent::Retransmit(seg) => {
                let sender = host_kernel(self.r(seg.from), now);
                let tcp = self.local.tcp.as_mut().expect("checked above");
                let slot = &mut self.nodes[host - self.base];
                tcp.on_retransmit(
                    self.network,
                    &mut slot.rng,
                    now,
                    seg,
                    &mut slot.tcp,
                    sender,
                    &mut out,
                );
                self.push_segments(host, &mut out);
                self.local.segments = out;
            }
            TcpEvent::Answer(answer) => {
                match host_kernel(self.r(host), now) {
                    HostKernel::Up => {
                        let tcp = self.local.tcp.as_mut().expect("checked above");
                        let slot = &mut self.nodes[host - self.base];
                        tcp.on_answer(
                            self.network,
                            &mut slot.rng,
                            now,
                            answer,
                            &mut slot.tcp,
                            &mut out,
                        );
                    }
                    // A frozen kernel takes the answer when it thaws.
                    HostKernel::Frozen(until) => {
                        out.push((until.max(now), TcpEvent::Answer(answer)));
                    }
                    // A crashed sender hears nothing any more.
                    HostKernel::Down | HostKernel::NoListener => {
                        let tcp = self.local.tcp.as_mut().expect("checked above");
                        tcp.stats.discarded += 1;
                    }
                }
                self.push_segments(host, &mut out);
                self.local.segments = out;
            }
        }
    }

    /// Moves the transport's scheduled events (scheduled by `source`) into the queues.
    fn push_segments(&mut self, source: usize, out: &mut Vec<(Time, TcpEvent<Payload>)>) {
        for (at, event) in out.drain(..) {
            self.schedule(source, at, EventKind::Segment(event));
        }
    }

    /// An input reaches node `i`'s process: handled now if the process is free, else
    /// queued behind the others.
    pub(super) fn accept_input(&mut self, i: usize, input: Input) {
        let now = self.now;
        if self.r(i).host.inbox.is_empty() && self.is_alive(i) && self.ready_at(i) <= now {
            // Free, nothing queued: taken at once, as the inbox would hand it over (a
            // handled input never queues another on its own host).
            self.take_input(i, now, input);
            return;
        }
        self.n(i).host.inbox.push_back((now, input));
        self.pump(i);
    }

    /// When node `i`'s process can take its next input.
    fn ready_at(&self, i: usize) -> Time {
        let h = &self.r(i).host;
        h.busy_until.max(h.stalled_until).max(h.frozen_until)
    }

    /// Hands node `i`'s queued inputs to its core while the process is free.
    pub(super) fn pump(&mut self, i: usize) {
        loop {
            if !self.is_alive(i) || self.r(i).host.inbox.is_empty() {
                return;
            }
            let ready = self.ready_at(i);
            if ready > self.now {
                let slot = self.n(i);
                if !slot.host.wake_pending {
                    slot.host.wake_pending = true;
                    let boot = slot.host.boots;
                    self.schedule(i, ready, EventKind::Wake { node: i, boot });
                }
                return;
            }
            let (arrived, input) = self.n(i).host.inbox.pop_front().expect("not empty");
            self.take_input(i, arrived, input);
        }
    }

    /// Node `i`'s process takes `input`, which reached the host at `arrived`.
    fn take_input(&mut self, i: usize, arrived: Time, input: Input) {
        if self.common.traced.contains(&i) {
            let (kind, from) = match &input {
                Input::Boot => (InputKind::Boot, None),
                Input::Timer | Input::Probe { .. } => (InputKind::Timer, None),
                Input::Poll => (InputKind::Poll, None),
                Input::Message { from, .. } | Input::Frame { from, .. } => {
                    (InputKind::Message, Some(*from))
                }
            };
            let handled = self.now;
            self.local.handled.push(HandledInput {
                node: i,
                arrived,
                handled,
                kind,
                from,
            });
        }
        self.handle(i, input);
    }

    /// Node `i`'s core handles one input now; its outputs leave when the CPU time the
    /// input cost is spent.
    fn handle(&mut self, i: usize, input: Input) {
        let now = self.now;
        let per_input = self.cfg().cpu.per_input;
        let cost = match input {
            Input::Boot => per_input,
            Input::Timer => {
                let slot = self.n(i);
                slot.host.timer_queued = false;
                slot.node.as_mut().expect("alive").handle_timeout(now);
                per_input
            }
            Input::Poll => {
                self.n(i).host.poll_queued = false;
                self.poll(i)
            }
            Input::Probe { peer, answered } => {
                let core = self.n(i).node.as_mut().expect("alive");
                core.handle_host_probe(now, peer, answered);
                per_input
            }
            Input::Frame { from, frame } => {
                let core = self.n(i).node.as_mut().expect("alive");
                if core
                    .handle_frame(now, node_addr(from).ip(), &frame)
                    .is_err()
                {
                    self.local.traffic.rejected += 1;
                }
                self.local.traffic.delivered += 1;
                self.trace_event(i, 9, from as u64, i as u64, frame.len() as u64);
                per_input
            }
            Input::Message {
                from,
                envelope,
                len,
            } => {
                let to = i;
                self.n(to).tcp.consumed(from, len);
                if self.common.watch.contains(&to) || self.common.watch.contains(&from) {
                    eprintln!(
                        "{} {} -> {} {:?}",
                        now,
                        envelope.from,
                        self.r(to).id,
                        envelope.msg
                    );
                }
                let kind = envelope.msg.kind_index() as u64;
                let records = matches!(
                    envelope.msg,
                    Message::Records { .. } | Message::RecordsReply { .. }
                );
                if self.common.capture {
                    self.local.capture.push((from, to, (*envelope).clone()));
                }
                let remote = node_addr(from).ip();
                let accepted = if self.cfg().wire_roundtrip {
                    // The sender's keys are set between runs only: reading them is safe.
                    // The sender's keys: wire round trips run on one shard (see
                    // `Simulation::new`), with every host in this context.
                    let sender_auth = &self.r(from).auth;
                    let core = self.r(to).node.as_ref().expect("alive");
                    let frame = wire::encode_sealed(&envelope, &core.config().limits, sender_auth)
                        .expect("core emits frames within the limits");
                    let core = self.n(to).node.as_mut().expect("alive");
                    core.handle_frame(now, remote, &frame).is_ok()
                } else {
                    let core = self.n(to).node.as_mut().expect("alive");
                    core.handle_message(now, remote, *envelope).is_ok()
                };
                if !accepted {
                    self.local.traffic.rejected += 1;
                }
                self.local.traffic.delivered += 1;
                self.trace_event(to, 1, from as u64, to as u64, kind);
                let record_bytes = if records { len } else { 0 };
                per_input + CpuCosts::bytes(self.cfg().cpu.per_record_byte_ns, record_bytes)
            }
        };
        self.drain(i, cost);
    }

    pub(super) fn boot(&mut self, i: usize) {
        let now = self.now;
        let id = self.r(i).id;
        let auth = self.r(i).auth.clone();
        let seed = self.n(i).rng.random();
        let mut config = Config::new(id, self.common.contacts.clone(), seed, auth);
        config.records.broadcast = self.cfg().broadcast;
        // Every node learns every host: room for all of them at once.
        config.records.expected_hosts = self.cfg().nodes;
        (self.cfg().tune)(&mut config);
        if let Some(horizon) = self.cfg().gc_horizon {
            config.records.gc_horizon = horizon;
        }
        let node = Node::new(config, now)
            .unwrap_or_else(|e| panic!("the simulated cluster's config is invalid: {e}"));
        let slot = self.n(i);
        slot.node = Some(node);
        slot.timer = None;
        let host = &mut slot.host;
        host.busy_until = now;
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
        self.trace_event(i, 2, i as u64, id.epoch, 0);
        if let Some(world) = self.world.as_mut() {
            world.on_boot(i);
            let interval = world.cfg.poll_interval.as_nanos() as u64;
            let phase = Duration::from_nanos(self.n(i).rng.random_range(0..interval.max(1)));
            self.schedule(
                i,
                now + phase,
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
        let now = self.now;
        let Some(world) = self.world.as_ref() else {
            return Duration::ZERO;
        };
        let epoch = self.r(i).id.epoch;
        let interval = world.cfg.poll_interval;
        let doc = world.agent_state(i);
        let agent_ip = IpAddr::V4(world.agents[i].ip);
        self.schedule(i, now + interval, EventKind::Poll { node: i, epoch });
        self.trace_event(i, 4, i as u64, doc.len() as u64, 0);
        let parsed = crate::world::parse_agent_state(&doc);
        let core = self.nodes[i - self.base].node.as_mut().expect("alive");
        let world = self.world.as_mut().expect("checked above");
        match parsed {
            Ok((set, tasks, warnings)) => {
                world.counters.parse_warnings += warnings as u64;
                // The task records travel too, as the agent's do (for DNS).
                match core.set_local_report(now, vec![agent_ip], set.clone(), tasks) {
                    Ok(()) => world.on_polled(now, i, set),
                    Err(_) => world.counters.record_errors += 1,
                }
            }
            Err(_) => world.counters.parse_errors += 1,
        }
        self.cfg().cpu.per_input + CpuCosts::bytes(self.cfg().cpu.per_document_byte_ns, doc.len())
    }

    /// Drains node `i`'s outputs after an input that cost `cost` of CPU (before its
    /// outputs): packets into the network, events into the checks, kernel operations to
    /// the host's kernel. The process is busy until the input and its outputs are paid
    /// for; packets and operations leave then.
    fn drain(&mut self, i: usize, cost: Duration) {
        let mut outputs = std::mem::take(&mut self.local.outputs);
        {
            let Some(core) = self.n(i).node.as_mut() else {
                self.local.outputs = outputs;
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
        if !self.common.instant_hosts {
            let cpu = &self.common.cfg.cpu;
            for output in &outputs {
                match output {
                    Output::Transmit(_) => cost += cpu.per_message_sent,
                    Output::Kernel(ops) => cost += cpu.refresh(ops.len()),
                    Output::Event(_)
                    | Output::Timeout(_)
                    | Output::CloseLink(_)
                    | Output::ProbeHost(_) => {}
                }
            }
        }
        self.local.cpu_ns += cost.as_nanos() as u64;
        let now = self.now;
        let release = now + cost;
        if release > self.r(i).host.busy_until {
            self.n(i).host.busy_until = release;
        }
        for output in outputs.drain(..) {
            match output {
                Output::Transmit(t) => self.transmit(i, t.dst, t.envelope, release),
                Output::Event(e) => self.observe(i, e),
                Output::Kernel(ops) => self.kernel_ops(i, ops, release),
                Output::CloseLink(peer) => {
                    if let (Some(tcp), Some(&to)) =
                        (self.local.tcp.as_mut(), self.common.index.get(&peer))
                    {
                        tcp.close(&mut self.nodes[i - self.base].tcp, to);
                    }
                }
                Output::ProbeHost(peer) => self.host_probe(i, peer, release),
                Output::Timeout(at) => {
                    if self.common.check_each_event && self.local.invariant_violation.is_none() {
                        if let Some(core) = self.r(i).node.as_ref() {
                            if let Err(e) = core.check_invariants() {
                                self.local.invariant_violation = Some((now, e));
                            }
                        }
                    }
                    // The process sleeps until its newest deadline, as the agent's loop
                    // does (it sleeps again after every input): a deadline that moved
                    // later leaves its event behind, which finds `timer` changed and
                    // wakes nobody.
                    let at = at.max(now);
                    let slot = self.n(i);
                    if slot.timer != Some(at) {
                        slot.timer = Some(at);
                        let epoch = slot.id.epoch;
                        self.schedule(i, at, EventKind::Timer { node: i, epoch });
                    }
                }
            }
        }
        self.local.outputs = outputs;
    }

    /// Node `i` emitted `ops` at `at`: into its kernel table now (ideal), or into the
    /// host's next `nft -f` transaction.
    fn kernel_ops(&mut self, i: usize, ops: Vec<Op>, at: Time) {
        let now = self.now;
        let immediate = self.cfg().kernel_apply.is_immediate();
        let Some(world) = self.world.as_mut() else {
            return;
        };
        if immediate {
            world.on_kernel_ops(now, i, &ops);
            return;
        }
        let host = &mut self.n(i).host;
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
        let slot = self.n(i);
        let ops = std::mem::take(&mut slot.host.kernel_waiting);
        if ops.is_empty() {
            return;
        }
        slot.host.kernel_running = true;
        let boot = slot.host.boots;
        let done = at + self.cfg().kernel_apply.cost(&ops);
        self.schedule(i, done, EventKind::KernelDone { node: i, boot, ops });
    }

    fn kernel_done(&mut self, i: usize, boot: u64, ops: Vec<Op>) {
        let now = self.now;
        let slot = self.r(i);
        if slot.host.boots != boot || slot.node.is_none() {
            return;
        }
        if now < slot.host.frozen_until {
            let thaw = slot.host.frozen_until;
            self.schedule(i, thaw, EventKind::KernelDone { node: i, boot, ops });
            return;
        }
        self.trace_event(i, 8, i as u64, ops.len() as u64, 0);
        if let Some(world) = self.world.as_mut() {
            world.on_kernel_ops(now, i, &ops);
        }
        self.n(i).host.kernel_running = false;
        self.start_transaction(i, now);
    }

    fn transmit(&mut self, from: usize, dst: SocketAddr, envelope: Envelope, at: Time) {
        let now = self.now;
        let len = wire::encoded_len(&envelope) as u64;
        let traffic = &mut self.local.traffic;
        traffic.messages_sent += 1;
        traffic.bytes_sent += len;
        let kind = &mut traffic.by_kind[envelope.msg.kind_index()];
        kind.0 += 1;
        kind.1 += len;
        let Some(to) = self.common.index.get(&dst).copied() else {
            self.local.traffic.unroutable += 1;
            return;
        };
        let envelope = Box::new(envelope);
        if let Some(tcp) = self.local.tcp.as_mut() {
            let mut out = std::mem::take(&mut self.local.segments);
            let slot = &mut self.nodes[from - self.base];
            // A full send buffer refuses the message (counted by the transport).
            let _ = tcp.send(
                self.network,
                &mut slot.rng,
                (now, at),
                (from, to),
                &mut slot.tcp,
                (envelope, len as usize),
                &mut out,
            );
            self.push_segments(from, &mut out);
            self.local.segments = out;
            return;
        }
        let mut delays = std::mem::take(&mut self.local.delays);
        let sent = {
            let slot = &mut self.nodes[from - self.base];
            self.network.transmit(&mut slot.rng, from, to, &mut delays)
        };
        match sent {
            Ok(()) => {
                if let Some((&last, rest)) = delays.split_last() {
                    for &d in rest {
                        let copy = envelope.clone();
                        self.schedule(
                            from,
                            at + d,
                            EventKind::Deliver {
                                from,
                                to,
                                envelope: copy,
                            },
                        );
                    }
                    self.schedule(from, at + last, EventKind::Deliver { from, to, envelope });
                }
            }
            Err(crate::network::Drop::Lost) => self.local.traffic.lost += 1,
            Err(crate::network::Drop::Partitioned) => self.local.traffic.partitioned += 1,
        }
        self.local.delays = delays;
    }

    /// Node `i`'s shell probes `peer`'s host at `at`: a TCP connect answered by the
    /// peer's kernel. The SYN travels (drawn from the prober's stream); the target's
    /// kernel answers when it arrives ([`Ctx::probe_arrives`]); the result reaches the
    /// prober as an input after the round trip, or after [`HOST_PROBE_TIMEOUT`] without
    /// an answer.
    fn host_probe(&mut self, i: usize, peer: SocketAddr, at: Time) {
        let sent = at.max(self.now);
        let epoch = self.r(i).id.epoch;
        let to = self.common.index.get(&peer).copied();
        let there = to.and_then(|to| {
            let slot = &mut self.nodes[i - self.base];
            self.network.packet(&mut slot.rng, i, to).ok()
        });
        match (to, there) {
            (Some(to), Some(there)) => self.schedule(
                i,
                sent + there,
                EventKind::ProbeSyn {
                    prober: i,
                    epoch,
                    peer,
                    to,
                    sent,
                },
            ),
            _ => self.schedule(
                i,
                sent + HOST_PROBE_TIMEOUT,
                EventKind::ProbeResult {
                    node: i,
                    epoch,
                    peer,
                    answered: false,
                },
            ),
        }
    }

    /// A probe's SYN reaches host `to`'s kernel now: it answers (a SYN-ACK, drawn from the
    /// target's stream) unless the host is down or frozen, or its stalled agent's accept
    /// queue is full.
    fn probe_arrives(
        &mut self,
        prober: usize,
        epoch: u64,
        peer: SocketAddr,
        to: usize,
        sent: Time,
    ) {
        let now = self.now;
        let backlog = self.cfg().probe_backlog;
        let answer = 'answer: {
            if !self.is_alive(to) || self.r(to).host.frozen_until > now {
                break 'answer None;
            }
            let host = &mut self.n(to).host;
            if host.stalled_until > now {
                if host.accept_queue > backlog {
                    break 'answer None;
                }
                host.accept_queue += 1;
            }
            let slot = &mut self.nodes[to - self.base];
            self.network.packet(&mut slot.rng, to, prober).ok()
        };
        let rtt = answer.map(|back| (now - sent) + back);
        let (at, answered) = match rtt {
            Some(rtt) if rtt < HOST_PROBE_TIMEOUT => (sent + rtt, true),
            _ => (
                (sent + HOST_PROBE_TIMEOUT).max(now + self.network.min_one_way()),
                false,
            ),
        };
        self.schedule(
            to,
            at,
            EventKind::ProbeResult {
                node: prober,
                epoch,
                peer,
                answered,
            },
        );
    }

    fn observe(&mut self, observer: usize, event: Event) {
        if self.common.watch.contains(&observer) {
            eprintln!("{} {} {event:?}", self.now, self.r(observer).id);
        }
        let now = self.now;
        match event {
            Event::Unreachable(target) => {
                if let Some(t) = self.common.index.get(&target.addr).copied() {
                    let window = self.cfg().faults.attribution_window;
                    let observer_fault = attribute(&self.r(observer).host.faults, now, window).0;
                    let observer_id = self.r(observer).id;
                    self.mail(
                        observer,
                        t,
                        MailKind::Unreachable {
                            observer,
                            observer_id,
                            observer_fault,
                            target,
                            t,
                        },
                    );
                }
                let slot = self.n(observer);
                if slot.pending.remove(&target) && slot.pending.is_empty() {
                    slot.done_at = Some(now);
                }
            }
            Event::Reachable(target) => {
                if let Some(t) = self.common.index.get(&target.addr).copied() {
                    self.mail(
                        observer,
                        t,
                        MailKind::Reachable {
                            observer,
                            target,
                            t,
                        },
                    );
                }
                if self
                    .common
                    .crashed
                    .as_ref()
                    .is_some_and(|c| c.contains(&target))
                {
                    let slot = self.n(observer);
                    slot.pending.insert(target);
                    slot.done_at = None;
                }
            }
            Event::AgentStalled(_) => self.local.agent_stalled_reports += 1,
            Event::IncarnationChanged { new, .. } => {
                // The node became a newer incarnation (it had lost its state): its timers
                // and Mesos polls follow the new epoch.
                let slot = self.n(observer);
                slot.id = new;
                slot.timer = None;
                self.trace_event(observer, 10, observer as u64, new.epoch, 0);
                if let Some(world) = self.world.as_ref() {
                    let at = now + world.cfg.poll_interval;
                    let (node, epoch) = (observer, new.epoch);
                    self.schedule(observer, at, EventKind::Poll { node, epoch });
                }
            }
            Event::NeighborUp(_) | Event::NeighborDown(..) | Event::AgentResumed(_) => {}
        }
    }

    /// Applies `mail`, addressed to this shard's hosts from any shards, in `(time, source,
    /// seq)` order, the order the serial schedule produced, whatever order the senders
    /// posted it in (that order depends on how the hosts are split); leaves it empty.
    /// The keys are unique (a host numbers what it sends), so the sort is total.
    pub(super) fn apply_mail_in_order(&mut self, mail: &mut Vec<Mail>) {
        mail.sort_unstable_by_key(Mail::key);
        for m in mail.drain(..) {
            self.apply_mail(m);
        }
    }

    /// Applies one piece of mail addressed to this shard's hosts (at the window boundary;
    /// schedules nothing).
    fn apply_mail(&mut self, mail: Mail) {
        let at = mail.at;
        match mail.kind {
            MailKind::Refused(refusal) => {
                if let Some(tcp) = self.local.tcp.as_mut() {
                    tcp.on_refused(&refusal, &mut self.nodes[refusal.from - self.base].tcp);
                }
            }
            MailKind::Unreachable {
                observer,
                observer_id,
                observer_fault,
                target,
                t,
            } => {
                if self.r(t).id != target || !self.is_alive(t) {
                    return;
                }
                let window = self.cfg().faults.attribution_window;
                let host = &mut self.n(t).host;
                let (cause, fault) = attribute(&host.faults, at, window);
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
                self.local.false_positives.push(FalsePositive {
                    at,
                    observer: observer_id,
                    target,
                    cause,
                    observer_fault,
                });
            }
            MailKind::Reachable {
                observer,
                target,
                t,
            } => {
                if self.r(t).id == target && self.n(t).host.down_seen_by.remove(&observer) {
                    self.check_restored(t, at);
                }
            }
            MailKind::Stopped { observer } => {
                let hosts = self.base..self.base + self.nodes.len();
                for t in hosts {
                    if self.common.shard_of(t) == self.shard
                        && t != observer
                        && self.n(t).host.down_seen_by.remove(&observer)
                    {
                        self.check_restored(t, at);
                    }
                }
            }
        }
    }

    /// If no live node sees host `t` unreachable any more, its declared-down faults that
    /// have ended are restored at `now`.
    pub(super) fn check_restored(&mut self, t: usize, now: Time) {
        let host = &mut self.n(t).host;
        if !host.down_seen_by.is_empty() {
            return;
        }
        for f in host.faults.iter_mut().rev() {
            if f.declared_down && f.restored_at.is_none() && f.end <= now {
                f.restored_at = Some(now);
            }
        }
    }

    // ----- Stalls, freezes and their ground truth --------------------------------------

    /// Schedules node `i`'s next fault of `kind`, an exponential gap after `after`.
    pub(super) fn schedule_fault(&mut self, i: usize, kind: FaultKind, after: Time) {
        let rate = self.cfg().faults.rate_per_min(kind) / 60.0;
        let at = after + exponential(&mut self.n(i).rng, rate);
        let host = &mut self.n(i).host;
        match kind {
            FaultKind::AgentStall => host.next_stall_at = Some(at),
            FaultKind::HostFreeze => host.next_freeze_at = Some(at),
        }
        self.schedule(i, at, EventKind::FaultStart { node: i, kind });
    }

    fn fault_start(&mut self, i: usize, kind: FaultKind) {
        let now = self.now;
        let (lo, hi) = self.cfg().faults.bounds(kind);
        let (lo, hi) = (
            lo.as_secs_f64().max(1e-6).ln(),
            hi.as_secs_f64().max(1e-6).ln(),
        );
        let length = Duration::from_secs_f64(self.n(i).rng.random_range(lo..=hi.max(lo)).exp());
        let end = now + length;
        let window = self.cfg().faults.attribution_window;
        let over_crash = self
            .r(i)
            .host
            .planned_crash
            .is_some_and(|c| c >= now && c <= end + window);
        if over_crash || !self.begin_fault(i, kind, length) {
            self.schedule_fault(i, kind, now);
            return;
        }
        self.schedule_fault(i, kind, end);
    }

    /// Starts a stall or freeze of node `i` now, unless it is dead or already in one of
    /// that kind; returns whether it started.
    pub(super) fn begin_fault(&mut self, i: usize, kind: FaultKind, length: Duration) -> bool {
        let now = self.now;
        let end = now + length;
        let host = &self.r(i).host;
        let busy = match kind {
            FaultKind::AgentStall => host.stalled_until > now,
            FaultKind::HostFreeze => host.frozen_until > now,
        };
        if !self.is_alive(i) || busy {
            return false;
        }
        let host = &mut self.n(i).host;
        match kind {
            FaultKind::AgentStall => host.stalled_until = end,
            FaultKind::HostFreeze => host.frozen_until = end,
        }
        host.faults.push(FaultInterval {
            kind,
            start: now,
            end,
            declared_down: false,
            restored_at: None,
        });
        let tag = match kind {
            FaultKind::AgentStall => 6,
            FaultKind::HostFreeze => 7,
        };
        self.trace_event(i, tag, i as u64, length.as_nanos() as u64, 0);
        self.schedule(i, end, EventKind::FaultEnd { node: i, kind });
        // It no longer counts among the observers a restored host must be seen reachable
        // by again, since it cannot see anything until it runs again.
        for shard in 0..self.common.shards() {
            let seq = self.n(i).next_seq();
            self.local.mail[shard].push(Mail {
                at: now,
                source: i as u32,
                seq,
                kind: MailKind::Stopped { observer: i },
            });
        }
        true
    }

    fn fault_end(&mut self, i: usize, kind: FaultKind) {
        let now = self.now;
        if !self.is_alive(i) {
            return;
        }
        match kind {
            // The agent accepts whatever the kernel queued for it.
            FaultKind::AgentStall => self.n(i).host.accept_queue = 0,
            FaultKind::HostFreeze => {
                if self.r(i).host.down_seen_by.is_empty() {
                    self.check_restored(i, now);
                }
            }
        }
        self.pump(i);
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
