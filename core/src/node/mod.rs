//! [`Node`]: the one state machine a shell drives.
//!
//! # The contract with a shell
//!
//! Everything the node needs from the world comes in through `handle_*` calls, each with
//! `now` (a monotonic [`Time`] that never goes backwards); everything it wants done comes
//! out of [`Node::poll_output`], which the shell drains after **every** input until it
//! yields [`Output::Timeout`]`(at)`; then it waits for the next input or for `at` and calls
//! [`Node::handle_timeout`]. The node never blocks, reads a clock or draws OS randomness.
//!
//! Inputs:
//! - [`Node::handle_frame`]`(now, remote, bytes)`: one frame as it came off a peer
//!   connection, with `remote` the IP address of the other end of that connection as the
//!   transport knows it (never what the frame says). The frame's MAC is checked against the
//!   cluster key(s) in [`Config::auth`], then the message's claimed sender must have the
//!   address `remote`: a frame that fails either is dropped, counted by cause
//!   (`decode_errors`, `forged_sender`) and returned as an [`InputError`]; it changes
//!   nothing else. On success the sender's [`NodeId`] is returned, so a shell can name an
//!   inbound connection by its peer's advertised address (the port of an inbound
//!   connection is ephemeral).
//! - [`Node::handle_message`]`(now, remote, envelope)`: the same for an already decoded
//!   message (the simulator's path).
//! - [`Node::handle_connection_lost`]`(now, peer)`: the connection to `peer` (its
//!   advertised address) closed or failed (a reset, `TCP_USER_TIMEOUT`, a write error). If
//!   `peer` is an active neighbour its link is checked at once (suspicion starts now);
//!   otherwise nothing happens.
//! - [`Node::handle_host_probe`]`(now, peer, answered)`: the result of a `ProbeHost`.
//! - [`Node::handle_timeout`]`(now)`: the last `Timeout(at)` is due.
//! - [`Node::set_local_services`], [`Node::resync_kernel`]: the local Mesos agent's VIP
//!   backends, and what the kernel really holds (at start, or after a failed apply).
//!
//! Outputs ([`Output`]):
//! - `Transmit { dst, envelope }`: send to `dst` (an advertised peer address), on the
//!   connection to it (opened on demand); [`Node::encode`] seals it into a frame;
//! - `CloseLink(peer)`: the node dropped its active link to `peer`: send what is queued for
//!   it, then close the connection (a later `Transmit` to it opens a new one);
//! - `ProbeHost(peer)`: is `peer`'s host up, whatever its agent is doing? Open a TCP
//!   connection to `peer` with a short timeout (a SYN-ACK or a reset both say yes), close it
//!   at once, and report with `handle_host_probe`. A silent peer whose host answers is
//!   `AgentStalled` and keeps its backends (see [`crate::ping`]);
//! - `Kernel(ops)`: apply these data-plane operations in order (computed when polled, so
//!   they are never dropped);
//! - `Event(..)`: something to log or export;
//! - `Timeout(at)`: nothing more until the next input or `at`.
//!
//! The node runs HyParView (active and passive views, JOIN, FORWARD_JOIN, NEIGHBOR, SHUFFLE,
//! DISCONNECT), an adaptive ping per active link ([`crate::ping`]), its own replicated
//! record (adjacency, flooded once per version, repaired by digest anti-entropy) and the
//! reachability search over all records ([`crate::reachability`]).
//!
//! Why replaying a captured frame rolls nothing back: every piece of state a message can
//! change is versioned or idempotent. Records only replace older versions of the same
//! address (`(epoch, seq)` never decreases, see [`crate::records`]); a message from an older
//! incarnation than the newest known is dropped (`stale_epoch_messages`); a replayed PONG
//! gives no RTT sample unless it echoes the newest ping sent on the link; membership
//! messages (JOIN, NEIGHBOR, SHUFFLE, DISCONNECT) only ask for links the live sender could
//! ask for again. A replay can at worst repeat such a request; it cannot bring back an old
//! record, epoch or RTT. The MAC proves that a frame comes from a holder of the cluster
//! key, and the transport's `remote` that it comes from the claimed host; a key holder can
//! still speak for any node of its own address only.
//!
//! Invariants (checked by [`Node::check_invariants`] in tests):
//! - neither view holds this node's address; active and passive are disjoint by address;
//! - `|active| <= active_max`, `|passive| <= passive_max`;
//! - the own record in the store lists exactly the active view at the end of an input,
//!   unless a new version is waiting for `publish_interval` (then a timer is due for it);
//! - the output queue never exceeds `max_queued_outputs` (excess is dropped and counted);
//!   kernel operations never enter it: they are computed when polled;
//! - the applied kernel state changes only with operations the shell received, and once
//!   the outputs are drained it equals the desired state;
//! - no message whose claimed sender differs from the transport's `remote` is handled;
//! - the same config, seed and inputs give the same outputs;
//! - the record store's invariants hold (slots in use and tombstones bounded by
//!   `records.max_records`, free slots hold nothing and no edge resolves to one; see
//!   [`crate::records`]), and once the search is up to date every slot in use but self is
//!   tracked as down exactly when it is not reported reachable;
//! - a slot is collected only from an up-to-date search, not while holding, never self
//!   and never a node reported reachable: its address was not reported reachable for
//!   `records.gc_horizon`; its origin then leaves the desired state entirely.

mod dataplane;
mod flood_queue;
mod io;
mod reach;
pub(crate) use flood_queue::MAX_NEIGHBOURS;
mod replication;
mod tree;
mod views;

use crate::config::{Config, ConfigError};
use crate::counters::Counters;
use crate::desired::DesiredState;
use crate::id::NodeId;
use crate::kernel::{KernelState, Op};
use crate::reachability::Change;
use crate::records::{DigestEntry, Record, RecordBody};
use crate::tasks::{TaskDirectory, TaskSet};
use crate::time::Time;
use crate::vip::VipSet;
use crate::wire::{self, EncodeError, Envelope, FrameError, Message};
use dataplane::DataPlane;
use io::Io;
use rand::Rng;
use reach::Reach;
use replication::{DigestScope, Offered, Replication};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use views::{ViewTimers, Views};

/// What the shell must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `envelope` to `dst`.
    Transmit(Transmit),
    /// The active link to this peer was dropped: flush what is queued for it, then close
    /// the connection.
    CloseLink(SocketAddr),
    /// Check whether this peer's host is up, below its agent: open a TCP connection to
    /// the address with a short timeout (a SYN-ACK or a reset both prove its kernel is up),
    /// close it at once, and report with [`Node::handle_host_probe`].
    ProbeHost(SocketAddr),
    /// Apply these kernel operations, in order. They are computed when polled (never
    /// queued, so never dropped) and the node counts them as applied once returned; a
    /// shell that fails to apply them reads the kernel back and calls
    /// [`Node::resync_kernel`].
    Kernel(Vec<Op>),
    /// Something happened that the shell may log or act on.
    Event(Event),
    /// Nothing more to do until `at` (or the next input): call `handle_timeout` then.
    Timeout(Time),
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub envelope: Envelope,
}

/// Why [`Node::set_local_services`] refused a set.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordTooLarge {
    #[error("{backends} backends and task endpoints exceed the record bound of {limit}")]
    Backends { backends: usize, limit: usize },
    #[error("the record would take {bytes} bytes, over the bound of {limit}")]
    Bytes { bytes: usize, limit: usize },
}

/// Why an input was refused. The node changed nothing else, and counted the cause.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The frame did not decode or authenticate.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The message claims a sender on another host than the one it came from.
    #[error("message claims to come from {claimed} but arrived from {remote}")]
    ForgedSender { claimed: SocketAddr, remote: IpAddr },
}

/// Why an active link went away.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LinkDown {
    /// The adaptive ping declared the neighbour dead.
    Dead,
    /// The neighbour sent DISCONNECT.
    Disconnected,
    /// Evicted to make room for a new neighbour.
    Evicted,
    /// A newer incarnation of the neighbour spoke.
    Superseded,
}

/// Notable changes, in the order they happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    NeighborUp(NodeId),
    NeighborDown(NodeId, LinkDown),
    Reachable(NodeId),
    Unreachable(NodeId),
    /// An active neighbour's agent stopped answering while its host still answers
    /// kernel-level probes: its backends stay (until `ping.agent_stall_bound`).
    AgentStalled(NodeId),
    /// A stalled neighbour's agent answers again.
    AgentResumed(NodeId),
    /// This node saw its own address with a newer version than its own (its state was
    /// lost or rolled back) and became a newer incarnation: the shell must persist the new
    /// epoch before the next restart.
    IncarnationChanged {
        old: NodeId,
        new: NodeId,
    },
}

/// One minuteman node's core: the routing between its parts.
///
/// - [`views::Views`]: HyParView views and the ping monitor of every active link;
/// - [`replication::Replication`]: the record store, the own record, floods, anti-entropy;
/// - [`reach::Reach`]: when the reachability search runs and what it reports;
/// - [`dataplane::DataPlane`]: local services, the desired kernel state, applied ops;
/// - [`io::Io`]: the shared generator, output queue and counters.
///
/// Each part owns its state and its next deadline; [`Node::poll_output`] returns the
/// soonest of them.
pub struct Node {
    cfg: Config,
    io: Io,
    views: Views,
    replication: Replication,
    reach: Reach,
    data: DataPlane,
}

impl Node {
    /// A node starting at `now`; it immediately tries to join through its contacts. The
    /// config is checked first ([`Config::validate`]); an invalid one names its field.
    pub fn new(cfg: Config, now: Time) -> Result<Node, ConfigError> {
        cfg.validate()?;
        let me = cfg.id;
        let mut io = Io::new(me, cfg.seed, cfg.max_queued_outputs);
        // The order of these draws is part of the node's determinism.
        let next_shuffle = now + io.jittered(cfg.membership.shuffle_interval);
        let next_anti_entropy = now + io.jittered(cfg.records.anti_entropy_interval);
        let next_contact_check = now + io.jittered(cfg.membership.contact_retry_interval);
        let next_contact = io.rng.random_range(0..cfg.contacts.len().max(1));
        let timers = ViewTimers {
            next_shuffle,
            next_contact_check,
            next_contact,
        };
        let views = Views::new(&cfg, now, timers);
        let replication = Replication::new(
            me,
            cfg.records.clone(),
            cfg.limits.clone(),
            next_anti_entropy,
        );
        let mut reach = Reach::new(cfg.reachability.grace, cfg.reachability.recompute_interval);
        reach
            .graph
            .reserve(cfg.records.expected_hosts.min(cfg.records.max_records));
        let mut node = Node {
            io,
            views,
            replication,
            reach,
            data: DataPlane::new(),
            cfg,
        };
        if node.cfg.contacts.iter().all(|c| *c == me.addr) {
            // Alone: there is nothing to catch up with.
            node.set_complete();
        }
        node.views.start_join(now, &mut node.io);
        node.after_input(now);
        Ok(node)
    }

    // ----- getters -----------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.io.counters
    }

    pub fn active_view(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.views.active_view()
    }

    pub fn passive_view(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.views.passive_view()
    }

    pub fn is_active(&self, id: &NodeId) -> bool {
        self.views.is_active(id)
    }

    /// Whether this exact incarnation is reachable over the adjacency graph.
    pub fn is_reachable(&self, id: &NodeId) -> bool {
        self.reach.graph.is_reachable(&self.replication.store, id)
    }

    /// Reachable nodes, self included.
    pub fn reachable(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.reach.graph.reachable(&self.replication.store)
    }

    pub fn reachable_count(&self) -> usize {
        self.reach.graph.count()
    }

    pub fn record(&self, addr: &SocketAddr) -> Option<&Record> {
        self.replication.store.get(addr)
    }

    /// Addresses this node holds a slot for (records and the nodes they name).
    pub fn records_held(&self) -> usize {
        self.replication.store.in_use()
    }

    /// Length of the store's slot vector (in use and free): what its memory grows with.
    pub fn record_slots(&self) -> usize {
        self.replication.store.len()
    }

    /// Tombstones of collected records this node keeps.
    pub fn tombstones(&self) -> usize {
        self.replication.store.tombstones()
    }

    /// The adaptive ping timeout of the link to `id`, if it is active.
    pub fn link_timeout(&self, id: &NodeId) -> Option<Duration> {
        self.views.link_timeout(id)
    }

    /// The robust RTT of the link to `id` (the top eighth of samples dropped), if it is
    /// active and has samples.
    pub fn link_rtt(&self, id: &NodeId) -> Option<Duration> {
        self.views.link_rtt(id)
    }

    /// Every record this node holds (its own included), in the order first heard of.
    pub fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.replication.store.records()
    }

    /// The same set, shared (no copy).
    pub fn local_services_shared(&self) -> Arc<VipSet> {
        self.data.local_services.clone()
    }

    /// What this node currently reports for its local agent(s).
    pub fn local_services(&self) -> &VipSet {
        &self.data.local_services
    }

    /// The task records this node currently reports for its local agent(s).
    pub fn local_tasks(&self) -> &Arc<TaskSet> {
        &self.data.local_tasks
    }

    /// Every node's task records, merged by name (for DNS), and the version that changes
    /// whenever they may have.
    pub fn task_directory(&self) -> &TaskDirectory {
        &self.data.tasks
    }

    /// The desired kernel state (VIP services and destinations) as of the last input.
    pub fn desired_kernel(&self) -> &KernelState {
        self.data.desired.state()
    }

    /// The kernel state the emitted operations lead to.
    pub fn applied_kernel(&self) -> &KernelState {
        &self.data.applied
    }

    /// The desired state machine (named VIP addresses, services per VIP).
    pub fn desired(&self) -> &DesiredState {
        &self.data.desired
    }

    /// Checks every part's invariants; `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        let me = self.cfg.id.addr;
        self.views.check()?;
        let own = self
            .replication
            .store
            .get(&me)
            .map(|r| r.body.adjacency.clone());
        let active: Vec<NodeId> = self.active_view().collect();
        if !self.replication.record_changed && own.as_ref() != Some(&active) {
            return Err(format!(
                "{me}: own record {own:?} != active view {active:?}"
            ));
        }
        if self.io.outputs.len() > self.cfg.max_queued_outputs {
            return Err(format!("{me}: output queue over its bound"));
        }
        self.replication
            .check_tree()
            .map_err(|e| format!("{me}: broadcast tree: {e}"))?;
        let store = &self.replication.store;
        store.check().map_err(|e| format!("{me}: records: {e}"))?;
        for (slot, s) in store.slots().iter().enumerate() {
            let slot = slot as u32;
            if store.is_free(slot) {
                if self.reach.graph.down_since(slot).is_some() {
                    return Err(format!("{me}: free slot {slot} is tracked as down"));
                }
                continue;
            }
            // A search pending: new slots are not reported yet.
            if slot == self.replication.self_slot || self.reach.dirty {
                continue;
            }
            let reported = self.reach.graph.reported(store, &s.addr()).is_some();
            if reported == self.reach.graph.down_since(slot).is_some() {
                return Err(format!(
                    "{me}: slot {slot} ({}) down tracking disagrees with its report",
                    s.addr()
                ));
            }
        }
        self.data.check().map_err(|e| format!("{me}: {e}"))
    }

    // ----- inputs ------------------------------------------------------------------------

    /// Sets what this node reports for its local Mesos agent(s): the agent addresses and
    /// their VIP backends, published in the own record. A set beyond the record bounds
    /// (`limits.max_record_backends`, `limits.max_record_bytes`) is refused whole, with
    /// the reason; the last accepted set stays published.
    pub fn set_local_services(
        &mut self,
        now: Time,
        agents: Vec<IpAddr>,
        services: impl Into<Arc<VipSet>>,
    ) -> Result<(), RecordTooLarge> {
        let tasks = self.data.local_tasks.clone();
        self.set_local_report(now, agents, services, tasks)
    }

    /// Sets what this node reports for its local Mesos agent(s): the agent addresses, their
    /// VIP backends and their running tasks' DNS records, published in the own record in
    /// one version. Bounds as for [`Node::set_local_services`], task endpoints counting
    /// with the backends.
    pub fn set_local_report(
        &mut self,
        now: Time,
        mut agents: Vec<IpAddr>,
        services: impl Into<Arc<VipSet>>,
        tasks: impl Into<Arc<TaskSet>>,
    ) -> Result<(), RecordTooLarge> {
        // Shared, not copied: a shell may keep the same set (its last Mesos state).
        let mut services: Arc<VipSet> = services.into();
        let mut tasks: Arc<TaskSet> = tasks.into();
        agents.sort_unstable();
        agents.dedup();
        if agents == self.data.local_agents
            && *services == *self.data.local_services
            && *tasks == *self.data.local_tasks
        {
            return Ok(());
        }
        let limits = &self.cfg.limits;
        let backends = (services.backend_count() + tasks.endpoint_count()).max(agents.len());
        if backends > limits.max_record_backends {
            self.io.counters.records_too_large += 1;
            return Err(RecordTooLarge::Backends {
                backends,
                limit: limits.max_record_backends,
            });
        }
        // Kept for as long as it is published: no spare capacity (sets built by `insert`).
        // A set shared with the caller was shrunk by it (the agent's Mesos source does).
        if let Some(set) = Arc::get_mut(&mut services) {
            set.shrink_to_fit();
        }
        if let Some(set) = Arc::get_mut(&mut tasks) {
            set.shrink_to_fit();
        }
        let body = RecordBody {
            adjacency: self.active_view().collect(),
            agents,
        };
        let full = Record {
            services: services.clone(),
            tasks: tasks.clone(),
            ..Record::new(self.cfg.id, 0, body)
        };
        let bytes = postcard::experimental::serialized_size(&full).unwrap_or(usize::MAX);
        if bytes > limits.max_record_bytes {
            self.io.counters.records_too_large += 1;
            return Err(RecordTooLarge::Bytes {
                bytes,
                limit: limits.max_record_bytes,
            });
        }
        self.data.local_agents = full.body.agents.clone();
        self.data.local_services = services;
        self.data.local_tasks = tasks;
        // This node is always reachable from itself.
        self.data
            .desired
            .set_origin(self.cfg.id.addr, self.data.local_services.clone(), true);
        self.data
            .tasks
            .set_origin(self.cfg.id.addr, self.data.local_tasks.clone(), true);
        self.replication.record_changed = true;
        self.after_input(now);
        Ok(())
    }

    /// Declares what the kernel actually holds (read back after a failed apply, or at
    /// start); the next operations lead from there to the desired state.
    pub fn resync_kernel(&mut self, now: Time, actual: KernelState) {
        self.data.resync(actual);
        self.after_input(now);
    }

    /// Authenticates, decodes and handles one frame that arrived on a connection from
    /// `remote` (see the module doc). Returns the sender; a bad frame is counted and
    /// returned, and changes nothing else.
    pub fn handle_frame(
        &mut self,
        now: Time,
        remote: IpAddr,
        frame: &[u8],
    ) -> Result<NodeId, InputError> {
        match wire::decode_sealed(frame, &self.cfg.limits, &self.cfg.auth) {
            Ok((envelope, verified)) => {
                self.io.counters.frames_verified.count(verified);
                self.io.counters.bytes_in[envelope.msg.kind_index()] += frame.len() as u64;
                let from = envelope.from;
                self.handle_message(now, remote, envelope)?;
                Ok(from)
            }
            Err(error) => {
                self.io.counters.decode_errors.count_frame(&error);
                Err(error.into())
            }
        }
    }

    /// Seals a message this node emitted into a frame for the wire.
    pub fn encode(&self, transmit: &Transmit) -> Result<Vec<u8>, EncodeError> {
        wire::encode_sealed(&transmit.envelope, &self.cfg.limits, &self.cfg.auth)
    }

    /// Handles one decoded message that arrived from `remote`.
    pub fn handle_message(
        &mut self,
        now: Time,
        remote: IpAddr,
        envelope: Envelope,
    ) -> Result<(), InputError> {
        let claimed = envelope.from.addr;
        if claimed.ip().to_canonical() != remote.to_canonical() {
            self.io.counters.forged_sender += 1;
            return Err(InputError::ForgedSender { claimed, remote });
        }
        self.dispatch(now, envelope);
        Ok(())
    }

    /// The result of an [`Output::ProbeHost`]: whether `peer`'s host answered (a SYN-ACK
    /// or a reset) within the shell's connect timeout.
    pub fn handle_host_probe(&mut self, now: Time, peer: SocketAddr, answered: bool) {
        if answered {
            self.io.counters.host_probes_answered += 1;
        }
        self.views.on_host_probe(now, &peer, answered);
        self.after_input(now);
    }

    /// Active neighbours whose agent is stalled while their host answers (shown as
    /// `agent-stalled`; their backends stay).
    pub fn stalled_neighbors(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.views.stalled()
    }

    /// The connection to `peer` closed or failed: an active link to it is checked now.
    pub fn handle_connection_lost(&mut self, now: Time, peer: SocketAddr) {
        self.io.counters.connections_lost += 1;
        self.views.suspect(now, &mut self.io, &peer);
        self.after_input(now);
    }

    fn dispatch(&mut self, now: Time, envelope: Envelope) {
        let Envelope { from, msg } = envelope;
        self.io.counters.messages_in[msg.kind_index()] += 1;
        if from.addr == self.cfg.id.addr {
            self.io.counters.self_messages += 1;
            return;
        }
        if !self.accept_sender(now, from) {
            self.io.counters.stale_epoch_messages += 1;
            self.replication.tell_stale(now, &mut self.io, from);
            return;
        }
        self.views.on_heard(now, &mut self.io, &from.addr);
        let (io, store) = (&mut self.io, &self.replication.store);
        match msg {
            Message::Join => self.views.on_join(now, io, store, from),
            Message::ForwardJoin { joiner, ttl } => {
                if joiner.addr != self.cfg.id.addr && self.accept_sender(now, joiner) {
                    let (io, store) = (&mut self.io, &self.replication.store);
                    self.views
                        .on_forward_join(now, io, store, from, joiner, ttl);
                }
            }
            Message::Neighbor { priority } => {
                self.views.on_neighbor(now, io, store, from, priority)
            }
            Message::NeighborReply { accepted } => {
                self.views.on_neighbor_reply(now, io, store, from, accepted)
            }
            Message::Disconnect => self.views.on_disconnect(now, io, store, from),
            Message::Shuffle { origin, ttl, nodes } => {
                self.views.on_shuffle(io, store, from, origin, ttl, nodes)
            }
            Message::ShuffleReply { nodes } => {
                self.views.integrate_passive(io, store, &nodes, true)
            }
            Message::Ping { echo } => self.views.on_ping(io, from, echo),
            Message::Pong { echo } => self.views.on_pong(now, &from.addr, echo),
            Message::Records { records } => self.on_records(now, from, records, true),
            Message::RecordsReply { records } => self.on_records(now, from, records, false),
            Message::Want { addrs } => self.replication.on_want(io, from, &addrs),
            Message::Ihave { entries } => self.replication.on_ihave(now, from, &entries),
            Message::Graft { addrs } => self.replication.on_graft(io, from, &addrs),
            // Only an active link is pruned: the lazy set names neighbours, and a sender
            // that is none cannot grow it.
            Message::Prune if self.views.has_active_addr(&from.addr) => {
                self.replication.on_prune(from)
            }
            Message::Prune => {}
            Message::Collected { entries } => self.on_collected(now, &entries),
            Message::Summary {
                of,
                buckets,
                hashes,
                complete,
            } => {
                let differ =
                    self.replication
                        .on_summary(io, from, usize::from(of), &buckets, &hashes);
                // Equal whole summaries: this node holds exactly what the peer holds.
                self.caught_up_with(complete, !differ && buckets.is_empty());
            }
            Message::DigestPart {
                of,
                buckets,
                entries,
                reply,
                complete,
            } => {
                let scope = DigestScope::Within {
                    of: usize::from(of),
                    buckets,
                };
                self.on_digest(now, from, scope, &entries, reply, complete)
            }
            Message::Digest {
                entries,
                reply,
                complete,
            } => self.on_digest(now, from, DigestScope::All, &entries, reply, complete),
        }
        self.after_input(now);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        let (io, store) = (&mut self.io, &self.replication.store);
        self.views.poll_links(now, io, store);
        self.views.handle_timeout(now, io);
        let views = &self.views;
        self.replication
            .handle_timeout(now, &mut self.io, |io| views.random_active(io));
        self.replication
            .send_grafts(now, &mut self.io, |a| views.has_active_addr(a));
        self.views.handle_maintenance(
            now,
            &mut self.io,
            &self.replication.store,
            &self.reach.graph,
        );
        self.after_input(now);
    }

    /// The next thing for the shell to do; `Timeout` when nothing is queued. Kernel
    /// operations come after the queued outputs of the same input and are computed here,
    /// from the desired state, so they can never be dropped.
    pub fn poll_output(&mut self) -> Output {
        if let Some(output) = self.io.outputs.pop_front() {
            return output;
        }
        self.io.release_spare_capacity();
        if let Some(ops) = self.data.poll_kernel(&mut self.io.counters) {
            return Output::Kernel(ops);
        }
        Output::Timeout(self.next_deadline())
    }

    // ----- routing -----------------------------------------------------------------------

    /// Whether a message from `from` is current. A newer incarnation retires the old one.
    fn accept_sender(&mut self, now: Time, from: NodeId) -> bool {
        let store = &mut self.replication.store;
        if let Some(known) = store.sender_epoch(&from.addr) {
            if known > from.epoch {
                return false;
            }
            if known < from.epoch {
                store.intern(from);
                self.reach.dirty = true;
            }
        }
        self.views
            .retire_superseded(now, &mut self.io, &self.replication.store, from);
        true
    }

    /// This node's address is held elsewhere at `seen_epoch` or later (a lost or rolled
    /// back state directory): become the incarnation after it at once, drop every link
    /// (peers know this node under the old epoch) and join again.
    fn advance_incarnation(&mut self, now: Time, seen_epoch: u64) {
        let old = self.cfg.id;
        let Some(epoch) = seen_epoch.max(old.epoch).checked_add(1) else {
            // No epoch left to supersede it with (a forged u64::MAX): stay as we are.
            return;
        };
        let new = NodeId::new(old.addr, epoch);
        self.io.counters.incarnations_advanced += 1;
        self.cfg.id = new;
        self.io.me = new;
        self.replication.adopt(new);
        self.views
            .adopt(now, &mut self.io, &self.replication.store, new);
        self.reach.dirty = true;
        self.io
            .emit(Output::Event(Event::IncarnationChanged { old, new }));
    }

    /// Records from `from`, `pushed` (flooded or along the tree) or sent in answer.
    fn on_records(&mut self, now: Time, from: NodeId, records: Vec<Record>, pushed: bool) {
        let mut fresh = Vec::new();
        let me = self.cfg.id.addr;
        if let Some(own) = records
            .iter()
            .filter(|r| r.origin.addr == me)
            .map(Record::version)
            .max()
        {
            if own > self.replication.own_version() {
                self.advance_incarnation(now, own.0);
            }
        }
        if records.len() > 1 {
            std::hint::black_box(self.replication.store.warm(records.iter()));
        }
        let (mut wanted, mut collected) = (Vec::new(), Vec::new());
        for record in records {
            let addr = record.origin.addr;
            self.replication
                .peer_holds(&mut self.io, &from.addr, &addr, record.version());
            // A delta that changes the services is applied in place when the store's set
            // is not shared: the desired state lets go of it first.
            let in_place = record.delta.as_ref().is_some_and(|d| !d.vips.is_empty());
            if in_place {
                self.data.desired.detach(addr);
            }
            let tasks_in_place = record.delta.as_ref().is_some_and(|d| !d.tasks.is_empty());
            if tasks_in_place {
                self.data.tasks.detach(addr);
            }
            match self.replication.offer(&mut self.io, record) {
                Offered::New {
                    previous,
                    record,
                    slot,
                } => {
                    self.replication
                        .on_received(&record.origin.addr, record.version());
                    // A delta names every VIP that changed since the version held before,
                    // of the same incarnation; otherwise (a full record, a first one, a new
                    // epoch whose delta starts from nothing) the sets are compared.
                    let same_epoch = previous
                        .as_ref()
                        .is_some_and(|(origin, _)| *origin == record.origin);
                    let reachable = self.reports_reachable_at(slot);
                    match record.delta.as_ref().filter(|_| same_epoch) {
                        // Most versions only change links: their services and tasks are
                        // the held ones, which the desired state and the task directory
                        // already hold (two map lookups per copy saved, 9% of a 1000-node
                        // cold start).
                        Some(delta) if delta.is_unchanged() => {
                            debug_assert!(self.data.desired.holds(&addr, &record.services));
                            debug_assert!(self.data.tasks.holds(&addr, &record.tasks));
                        }
                        Some(delta) => {
                            self.data.desired.set_origin_changes(
                                addr,
                                record.services.clone(),
                                delta.vips.iter().map(|(vip, _)| vip),
                                reachable,
                            );
                            self.data
                                .tasks
                                .set_origin(addr, record.tasks.clone(), reachable);
                        }
                        None => {
                            self.data
                                .desired
                                .set_origin(addr, record.services.clone(), reachable);
                            self.data
                                .tasks
                                .set_origin(addr, record.tasks.clone(), reachable);
                        }
                    }
                    self.reach.dirty = true;
                    self.views
                        .cascade(now, &mut self.io, previous.as_ref(), &record);
                    self.views.retire_superseded(
                        now,
                        &mut self.io,
                        &self.replication.store,
                        record.origin,
                    );
                    fresh.push(record);
                }
                offered => {
                    if in_place || tasks_in_place {
                        if let Some(held) = self.replication.store.get(&addr) {
                            if in_place {
                                self.data.desired.reattach(addr, held.services.clone());
                            }
                            if tasks_in_place {
                                let reachable = self.reports_reachable(&addr);
                                self.data
                                    .tasks
                                    .set_origin(addr, held.tasks.clone(), reachable);
                            }
                        }
                    }
                    match offered {
                        Offered::Duplicate if pushed && self.views.has_active_addr(&from.addr) => {
                            self.replication.on_duplicate(&mut self.io, from.addr)
                        }
                        Offered::Gap if !wanted.contains(&addr) => wanted.push(addr),
                        Offered::Collected(line) => collected.push(line),
                        _ => {}
                    }
                }
            }
        }
        // In messages a peer accepts (a WANT is bounded like a digest).
        for addrs in wanted.chunks(self.cfg.limits.max_digest_entries.max(1)) {
            let addrs = addrs.to_vec();
            self.io.send(from.addr, Message::Want { addrs });
        }
        self.replication
            .send_collected(&mut self.io, from.addr, collected);
        if fresh.is_empty() {
            return;
        }
        let neighbours: Vec<SocketAddr> = self.views.active_addrs().copied().collect();
        for record in fresh {
            self.replication
                .flood(now, record, Some(from.addr), &neighbours);
        }
    }

    /// A digest or digest part: a newer version of this node's own address makes it the
    /// next incarnation; otherwise the exchange is answered, and a complete peer that holds
    /// nothing this node lacks (in those buckets; the rest is equal) means it caught up.
    fn on_digest(
        &mut self,
        now: Time,
        from: NodeId,
        scope: DigestScope,
        entries: &[DigestEntry],
        reply: bool,
        peer_complete: bool,
    ) {
        if let Some(epoch) = self.newer_own_epoch(entries) {
            self.advance_incarnation(now, epoch);
            return;
        }
        let me = self.cfg.id;
        if entries
            .iter()
            .any(|e| e.addr == me.addr && e.epoch < me.epoch)
        {
            self.replication.older_incarnation_seen = true;
        }
        let io = &mut self.io;
        let newer = self
            .replication
            .on_digest(now, io, from, scope, entries, reply, peer_complete);
        self.caught_up_with(peer_complete, !newer);
    }

    /// The epoch under which a peer's digest lists this node's address at a newer version
    /// than its own record (it lost its state, or a newer incarnation exists).
    fn newer_own_epoch(&self, entries: &[DigestEntry]) -> Option<u64> {
        let me = self.cfg.id.addr;
        entries
            .iter()
            .find(|e| e.addr == me)
            .map(|e| (e.epoch, e.seq))
            .filter(|&v| v > self.replication.own_version())
            .map(|(epoch, _)| epoch)
    }

    /// An anti-entropy exchange with a peer whose view is `peer_complete` found nothing
    /// this node lacks (`nothing_lacking`): then this node has caught up.
    fn caught_up_with(&mut self, peer_complete: bool, nothing_lacking: bool) {
        if peer_complete && nothing_lacking && !self.replication.complete {
            self.io.counters.views_completed_by_peer += 1;
            self.set_complete();
        }
    }

    /// The view is complete: unreachability is reported from now on, and the data plane
    /// may remove what it held back.
    fn set_complete(&mut self) {
        self.replication.complete = true;
        self.views.view_complete = true;
        self.data.set_complete();
    }

    /// Whether this node's view is complete (see [`crate::ReachabilityConfig`]): until
    /// then it reports no node unreachable and removes nothing from the kernel.
    pub fn view_complete(&self) -> bool {
        self.replication.complete
    }

    /// Finishes every input: probes due now, own record, reachability, kernel operations.
    fn after_input(&mut self, now: Time) {
        if !self.replication.complete {
            if self.replication.complete_at.is_none() && self.views.active_len() > 0 {
                self.replication.complete_at =
                    Some(now + self.cfg.reachability.view_complete_timeout);
            }
            if self.replication.complete_at.is_some_and(|at| now >= at) {
                self.io.counters.views_completed_by_timeout += 1;
                self.set_complete();
            }
        }
        // Unreachability is reported only from a complete view, and by a node with at least
        // one link: one with none (cut off, or frozen and dropped by everyone) cannot tell
        // who else is up. Set here, once per input, before the search reports anything.
        let isolated = self.views.active_len() == 0;
        // With the broadcast tree, also while a version announced to this node is missing
        // (recently): its links may be what reaches a node this node no longer reaches.
        let behind = self.replication.holds_reports(now);
        self.reach
            .graph
            .set_holding(!self.replication.complete || isolated || behind);
        self.views
            .poll_links(now, &mut self.io, &self.replication.store);
        if self.views.take_adjacency_changed() {
            self.replication.record_changed = true;
        }
        if self.views.take_link_died() {
            self.replication.on_link_died(&mut self.io);
        }
        if self.replication.record_changed {
            let own = self.replication.store.get(&self.cfg.id.addr);
            // Only while this node joins (its view incomplete): a link added later may be
            // a thawed or restarted host coming back, and a link dropped later may be the
            // news of a crash, neither of which may wait. A joiner's links change as
            // HyParView settles (added, and dropped when a fuller neighbour evicts it);
            // they all wait, so that they travel in one version.
            let joining = !self.replication.complete;
            let links_only = joining
                && match own {
                    Some(r) => {
                        r.origin == self.cfg.id
                            && Arc::ptr_eq(&r.services, &self.data.local_services)
                            && Arc::ptr_eq(&r.tasks, &self.data.local_tasks)
                            && r.body.agents == self.data.local_agents
                    }
                    // The first version of this incarnation: with nothing to say but
                    // links, it waits for them too (one version, not an empty one and
                    // then the links), unless peers still hold an older incarnation,
                    // whose backends it must replace at once.
                    None => {
                        !self.replication.older_incarnation_seen
                            && self.data.local_services.is_empty()
                            && self.data.local_tasks.is_empty()
                            && self.data.local_agents.is_empty()
                    }
                };
            // A first version with nothing in it (no links yet, no services) says nothing
            // a peer could use: it waits for the first link, which starts the wait above.
            let unlinked_first = own.is_none() && self.views.active_len() == 0;
            let coalesce = self.cfg.records.coalesce_additions;
            self.replication.coalesce_until = match (links_only, self.replication.coalesce_until) {
                (true, _) if unlinked_first => Some(Time::MAX),
                (true, Some(at)) if at != Time::MAX => Some(at),
                (true, _) => Some(now + coalesce),
                (false, _) => None,
            };
        }
        if self.replication.publish_ready(now) {
            let neighbours: Vec<SocketAddr> = self.views.active_addrs().copied().collect();
            self.replication.publish(
                now,
                self.views.active_view().collect(),
                &self.data.local_agents,
                &self.data.local_services,
                &self.data.local_tasks,
                &neighbours,
            );
            self.reach.dirty = true;
        }
        let views = &self.views;
        self.replication
            .maybe_flush(now, &mut self.io, |a| views.has_active_addr(a));
        let mut changes =
            self.reach
                .update(now, &mut self.replication.store, self.replication.self_slot);
        let me = self.cfg.id.addr;
        for change in &changes {
            let (Change::Reachable(id) | Change::Unreachable(id)) = *change;
            if id.addr != me {
                let reachable = self.reports_reachable(&id.addr);
                self.data.desired.set_reachable(id.addr, reachable);
                self.data.tasks.set_reachable(id.addr, reachable);
            }
        }
        for change in changes.drain(..) {
            let event = match change {
                Change::Reachable(id) if id.addr != me => Event::Reachable(id),
                Change::Unreachable(id) if id.addr != me => Event::Unreachable(id),
                _ => continue,
            };
            self.io.emit(Output::Event(event));
        }
        self.reach.recycle(changes);
        self.collect(now);
    }

    /// Whether `addr` counts as reachable for the desired state and the task directory:
    /// this node itself, or a node the last search reported reachable.
    fn reports_reachable(&self, addr: &SocketAddr) -> bool {
        self.replication
            .store
            .slot_of(addr)
            .is_some_and(|slot| self.reports_reachable_at(slot))
    }

    /// [`Node::reports_reachable`] for the address of `slot`.
    fn reports_reachable_at(&self, slot: u32) -> bool {
        slot == self.replication.self_slot || self.reach.graph.is_reported(slot)
    }

    /// Garbage collection (see [`crate::records`]): frees the slots whose address this
    /// node has not reported reachable for `records.gc_horizon`, with a tombstone kept one
    /// more horizon, and drops their origins from the desired state. Only from an
    /// up-to-date search (none pending) and never while holding (an incomplete or isolated
    /// view); never self, never a reported-reachable node.
    fn collect(&mut self, now: Time) {
        let horizon = self.cfg.records.gc_horizon;
        let store = &mut self.replication.store;
        store.expire_tombstones(now);
        if self.reach.dirty {
            return;
        }
        for slot in self.reach.graph.collectable(now, horizon) {
            self.collect_slot(now, slot);
        }
    }

    /// Frees `slot` (never the own one): a tombstone for one horizon, its origin out of the
    /// desired state, a new search.
    fn collect_slot(&mut self, now: Time, slot: u32) {
        if slot == self.replication.self_slot {
            return;
        }
        let store = &mut self.replication.store;
        let addr = store.slots()[slot as usize].addr();
        store.free(slot, now + self.cfg.records.gc_horizon);
        self.reach.graph.release(slot);
        self.data.desired.remove_origin(addr);
        self.data.tasks.remove_origin(addr);
        self.io.counters.records_collected += 1;
        self.reach.dirty = true;
    }

    /// A peer collected these records: collect those held here in that version or older
    /// whose origin this node does not reach either. A late joiner learns so that a host
    /// is gone instead of counting a horizon of its own from when it first heard of it.
    ///
    /// Only from an up-to-date search (a pending one may be about to reach it, and peers
    /// say it again on the next exchange), and only for a slot this node reports down (not
    /// just this incarnation: a newer one of the same address may be reachable).
    fn on_collected(&mut self, now: Time, entries: &[DigestEntry]) {
        if self.reach.dirty {
            return;
        }
        for entry in entries {
            let store = &self.replication.store;
            let Some(held) = store.get(&entry.addr) else {
                continue;
            };
            let slot = store.slot_of(&entry.addr).expect("held");
            let covered = held.version() <= (entry.epoch, entry.seq);
            if !covered || slot == self.replication.self_slot || !self.reach.graph.is_down(slot) {
                continue;
            }
            self.io.counters.records_collected_by_peer += 1;
            self.collect_slot(now, slot);
        }
    }

    fn next_deadline(&self) -> Time {
        let mut at = self
            .views
            .poll_timeout()
            .min(self.replication.poll_timeout());
        if let Some(due) = self.reach.poll_timeout() {
            at = at.min(due);
        }
        let horizon = self.cfg.records.gc_horizon;
        // While a search is pending, collection waits for it (its deadline comes first).
        let gc = [
            self.reach
                .graph
                .next_collectable(horizon)
                .filter(|_| !self.reach.dirty),
            self.replication.store.next_tombstone_expiry(),
        ];
        for due in gc.into_iter().flatten() {
            at = at.min(due);
        }
        at
    }
}
