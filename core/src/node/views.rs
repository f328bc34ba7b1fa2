//! HyParView membership and the links it monitors: the active view (symmetric links, each
//! watched by an adaptive ping [`LinkMonitor`]), the passive view (backups), JOIN,
//! FORWARD_JOIN, NEIGHBOR, SHUFFLE and DISCONNECT, refills and contact checks.
//!
//! The part reads the record store (epochs, neighbours' adjacency) and the reachable set,
//! but never writes them: the routing in [`super::Node`] does.
//!
//! Invariants (checked by [`Views::check`]):
//! - neither view holds this node's address; active and passive are disjoint by address;
//! - `|active| <= active_max`, `|passive| <= passive_max`;
//! - an active entry is keyed by its own address;
//! - `adjacency_changed` is set whenever the active view changed since the routing last
//!   took it, so the own record follows the active view;
//! - at most one NEIGHBOR request is outstanding.

use super::io::Io;
use super::{Event, LinkDown, Output};
use crate::config::{Config, MembershipConfig, PingConfig};
use crate::id::NodeId;
use crate::ping::{LinkMonitor, PingSide};
use crate::reachability::Reachability;
use crate::records::{Record, RecordBody, RecordStore};
use crate::time::Time;
use crate::wire::{Message, Priority};
use rand::seq::{IndexedRandom, IteratorRandom};
use rand::Rng;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct ActivePeer {
    pub(crate) id: NodeId,
    pub(crate) monitor: LinkMonitor,
}

#[derive(Clone, Debug)]
struct PassivePeer {
    id: NodeId,
    /// When a link to it last died; it is skipped for refills for a while.
    failed_at: Option<Time>,
}

#[derive(Copy, Clone, Debug)]
struct Attempt {
    addr: SocketAddr,
    deadline: Time,
}

/// The periodic timers' first deadlines, drawn by the node at start (see
/// [`super::Node::new`] for the order of draws).
pub(crate) struct ViewTimers {
    pub(crate) next_shuffle: Time,
    pub(crate) next_contact_check: Time,
    pub(crate) next_contact: usize,
}

/// The membership views of one node.
pub(crate) struct Views {
    me: NodeId,
    contacts: Vec<SocketAddr>,
    cfg: MembershipConfig,
    ping: PingConfig,
    max_shuffle_nodes: usize,
    /// Most entries per DIGEST message (anti-entropy on a new link).
    digest_chunk: usize,
    active: BTreeMap<SocketAddr, ActivePeer>,
    /// The earliest [`LinkMonitor::next_deadline`] of the active links, or `None` when
    /// not known. [`Views::poll_links`] sets it; a change to one monitor
    /// ([`Views::change_link`]) keeps it exact or forgets it; adding or removing a link
    /// forgets it. A monitor polled before its deadline does nothing (a proptest in
    /// [`crate::ping`] checks), so before this time `poll_links` has nothing to do and
    /// [`Views::poll_timeout`] need not visit the links: most inputs (a record batch, a
    /// ping answered) skip both walks.
    links_due: Option<Time>,
    passive: BTreeMap<SocketAddr, PassivePeer>,
    /// The lowest epoch of an active or passive entry (`u64::MAX` when there is none):
    /// news of an address at this epoch or below supersedes no entry, so
    /// [`Views::retire_superseded`] (after every message, for its sender) looks nothing up.
    /// Kept on every insertion and removal; raising an entry's epoch leaves it a lower
    /// bound, which is enough.
    epoch_floor: u64,
    /// An outstanding NEIGHBOR request (at most one).
    pending_neighbor: Option<Attempt>,
    /// Until when the last JOIN is outstanding.
    joining: Option<Time>,
    next_contact: usize,
    /// Whether this node is part of an overlay (see [`Views::start_join`]).
    in_overlay: bool,
    next_shuffle: Time,
    next_refill: Time,
    next_contact_check: Time,
    /// What the last SHUFFLE sent: evicted first when its reply is integrated.
    last_shuffle_sample: Vec<NodeId>,
    /// The active view changed since [`Views::take_adjacency_changed`].
    adjacency_changed: bool,
    /// A link was declared dead since [`Views::take_link_died`].
    link_died: bool,
    /// Mirrors the replication's `complete`: an incomplete node starts anti-entropy on
    /// every new link itself, whatever the address order, to catch up at once.
    pub(crate) view_complete: bool,
}

impl Views {
    pub(crate) fn new(cfg: &Config, now: Time, timers: ViewTimers) -> Views {
        Views {
            me: cfg.id,
            contacts: cfg.contacts.clone(),
            cfg: cfg.membership.clone(),
            ping: cfg.ping.clone(),
            max_shuffle_nodes: cfg.limits.max_shuffle_nodes,
            digest_chunk: cfg.limits.max_digest_entries,
            active: BTreeMap::new(),
            links_due: None,
            passive: BTreeMap::new(),
            epoch_floor: u64::MAX,
            pending_neighbor: None,
            joining: None,
            next_contact: timers.next_contact,
            in_overlay: false,
            next_shuffle: timers.next_shuffle,
            next_refill: now,
            next_contact_check: timers.next_contact_check,
            last_shuffle_sample: Vec::new(),
            adjacency_changed: true,
            link_died: false,
            view_complete: false,
        }
    }

    // ----- getters -----------------------------------------------------------------------

    pub(crate) fn active_view(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.active.values().map(|p| p.id)
    }

    pub(crate) fn active_addrs(&self) -> impl Iterator<Item = &SocketAddr> + '_ {
        self.active.keys()
    }

    pub(crate) fn passive_view(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.passive.values().map(|p| p.id)
    }

    pub(crate) fn has_active_addr(&self, addr: &SocketAddr) -> bool {
        self.active.contains_key(addr)
    }

    pub(crate) fn is_active(&self, id: &NodeId) -> bool {
        self.active.get(&id.addr).is_some_and(|p| p.id == *id)
    }

    pub(crate) fn link_timeout(&self, id: &NodeId) -> Option<Duration> {
        self.active
            .get(&id.addr)
            .map(|p| p.monitor.timeout(&self.ping))
    }

    pub(crate) fn link_rtt(&self, id: &NodeId) -> Option<Duration> {
        self.active.get(&id.addr)?.monitor.robust_rtt()
    }

    /// Whether the active view changed since the last call; clears the flag.
    pub(crate) fn take_adjacency_changed(&mut self) -> bool {
        std::mem::take(&mut self.adjacency_changed)
    }

    /// Whether a link was declared dead since the last call.
    pub(crate) fn take_link_died(&mut self) -> bool {
        std::mem::take(&mut self.link_died)
    }

    /// Checks the view invariants; `Err` names the first one broken.
    pub(crate) fn check(&self) -> Result<(), String> {
        let me = self.me.addr;
        if self.active.contains_key(&me) || self.passive.contains_key(&me) {
            return Err(format!("{me} holds itself in a view"));
        }
        if self.active.len() > self.cfg.active_max {
            return Err(format!(
                "{me}: active view {} > {}",
                self.active.len(),
                self.cfg.active_max
            ));
        }
        if self.passive.len() > self.cfg.passive_max {
            return Err(format!(
                "{me}: passive view {} > {}",
                self.passive.len(),
                self.cfg.passive_max
            ));
        }
        if let Some(addr) = self.active.keys().find(|a| self.passive.contains_key(a)) {
            return Err(format!("{me}: {addr} is in both views"));
        }
        for (addr, p) in &self.active {
            if p.id.addr != *addr {
                return Err(format!("{me}: active entry {addr} holds {}", p.id));
            }
        }
        let ids = self.active.values().map(|p| p.id);
        if let Some(id) = ids
            .chain(self.passive.values().map(|p| p.id))
            .find(|id| id.epoch < self.epoch_floor)
        {
            return Err(format!(
                "{me}: {id} in a view below the epoch floor {}",
                self.epoch_floor
            ));
        }
        Ok(())
    }

    /// When the views next need [`Views::handle_timeout`] or [`Views::poll_links`].
    pub(crate) fn poll_timeout(&self) -> Time {
        let mut at = self.next_shuffle.min(self.next_contact_check).min(
            self.links_due
                .unwrap_or_else(|| self.earliest_link_deadline()),
        );
        if let Some(p) = self.pending_neighbor {
            at = at.min(p.deadline);
        }
        if let Some(deadline) = self.joining {
            at = at.min(deadline);
        }
        if self.wants_refill() {
            at = at.min(self.next_refill);
        }
        at
    }

    // ----- inputs ------------------------------------------------------------------------

    /// Anything arrived from `from`: its link (if active) is alive, and a stalled agent
    /// is back.
    pub(crate) fn on_heard(&mut self, now: Time, io: &mut Io, from: &SocketAddr) {
        self.change_link(from, |peer, _| {
            if peer.monitor.is_stalled() {
                io.emit(Output::Event(Event::AgentResumed(peer.id)));
            }
            if peer.monitor.is_stalled() || peer.monitor.is_suspect() {
                io.counters.suspicions_cleared += 1;
            }
            peer.monitor.on_heard(now);
        });
    }

    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Checks the link to `peer` now, if it is active (a lost connection).
    pub(crate) fn suspect(&mut self, now: Time, io: &mut Io, peer: &SocketAddr) {
        self.change_link(peer, |p, _| {
            if !p.monitor.is_suspect() {
                p.monitor.suspect(now);
                io.counters.suspicions += 1;
            }
        });
    }

    pub(crate) fn on_pong(&mut self, now: Time, from: &SocketAddr, echo: u64) {
        self.change_link(from, |peer, ping| peer.monitor.on_pong(now, echo, ping));
    }

    /// The views' timers (the ping monitors run in [`Views::poll_links`]).
    pub(crate) fn handle_timeout(&mut self, now: Time, io: &mut Io) {
        if let Some(p) = self.pending_neighbor {
            if now >= p.deadline {
                self.pending_neighbor = None;
                io.counters.neighbor_timeouts += 1;
                self.remove_passive(&p.addr);
                self.next_refill = now;
            }
        }
        if let Some(deadline) = self.joining {
            if now >= deadline {
                self.joining = None;
                self.in_overlay = true;
                if self.active.is_empty() {
                    self.start_join(now, io);
                }
            }
        }
        if now >= self.next_shuffle {
            self.next_shuffle = now + io.jittered(self.cfg.shuffle_interval);
            self.start_shuffle(io);
        }
    }

    /// The maintenance timers that run after record anti-entropy: refills and contact
    /// checks.
    pub(crate) fn handle_maintenance(
        &mut self,
        now: Time,
        io: &mut Io,
        store: &RecordStore,
        reach: &Reachability,
    ) {
        if self.wants_refill() && now >= self.next_refill {
            self.next_refill = now + self.cfg.refill_interval;
            self.refill(now, io);
        }
        if now >= self.next_contact_check {
            self.next_contact_check = now + io.jittered(self.cfg.contact_retry_interval);
            self.check_contacts(now, io, store, reach);
        }
    }

    /// Runs every link monitor: pings due now are sent, host probes asked for, stalled
    /// agents reported, dead links closed.
    pub(crate) fn poll_links(&mut self, now: Time, io: &mut Io, store: &RecordStore) {
        if self.links_due.is_some_and(|due| now < due) {
            return;
        }
        // An active view holds a handful of links: no allocation on the every-interval path.
        let mut dead: SmallVec<[SocketAddr; 2]> = SmallVec::new();
        let mut pings: SmallVec<[SocketAddr; 8]> = SmallVec::new();
        let mut probes: SmallVec<[SocketAddr; 2]> = SmallVec::new();
        let mut stalled: SmallVec<[NodeId; 2]> = SmallVec::new();
        for (addr, peer) in &mut self.active {
            let was_suspect = peer.monitor.is_suspect();
            let action = peer.monitor.poll(now, &self.ping);
            if !was_suspect && peer.monitor.is_suspect() {
                io.counters.suspicions += 1;
            }
            if action.send_ping {
                pings.push(*addr);
            }
            if action.probe_host {
                probes.push(*addr);
            }
            if action.stalled {
                stalled.push(peer.id);
            }
            if action.dead {
                dead.push(*addr);
            }
        }
        let echo = now.as_nanos();
        for addr in pings {
            io.send(addr, Message::Ping { echo });
        }
        for addr in probes {
            io.counters.host_probes += 1;
            io.emit(Output::ProbeHost(addr));
        }
        for id in stalled {
            io.counters.agents_stalled += 1;
            io.emit(Output::Event(Event::AgentStalled(id)));
            // A link that stopped working may leave this node without a working one: look
            // for a replacement now (at HIGH priority if so) rather than at the next round.
            self.next_refill = self.next_refill.min(now);
        }
        for addr in dead {
            self.remove_active(now, io, store, addr, LinkDown::Dead);
        }
        self.links_due = Some(self.earliest_link_deadline());
    }

    /// The earliest deadline of the active links' monitors (`Time::MAX` with none).
    fn earliest_link_deadline(&self) -> Time {
        self.active
            .values()
            .map(|p| p.monitor.next_deadline(&self.ping))
            .min()
            .unwrap_or(Time::MAX)
    }

    /// Changes the active link to `addr`, if there is one, with `change`; `links_due`
    /// stays exact (the monitor's new deadline if that is earliest, else the old one
    /// unless this monitor held it) or is forgotten.
    fn change_link(
        &mut self,
        addr: &SocketAddr,
        change: impl FnOnce(&mut ActivePeer, &PingConfig),
    ) {
        if let Some(peer) = self.active.get_mut(addr) {
            let before = peer.monitor.next_deadline(&self.ping);
            change(peer, &self.ping);
            let after = peer.monitor.next_deadline(&self.ping);
            self.links_due = match self.links_due {
                Some(due) if after <= due => Some(after),
                // Another link holds the earliest deadline.
                Some(due) if before > due => Some(due),
                // This link held it and moved it later: the earliest is not known.
                _ => None,
            };
        }
    }

    /// The shell's answer to a [`Output::ProbeHost`] of `peer`.
    pub(crate) fn on_host_probe(&mut self, now: Time, peer: &SocketAddr, answered: bool) {
        if answered {
            self.change_link(peer, |p, _| p.monitor.on_host_answer(now));
        }
    }

    /// Active neighbours whose agent is silent while their host answers.
    pub(crate) fn stalled(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.active
            .values()
            .filter(|p| p.monitor.is_stalled())
            .map(|p| p.id)
    }

    pub(crate) fn on_join(&mut self, now: Time, io: &mut Io, store: &RecordStore, joiner: NodeId) {
        if !self.in_overlay && !self.contacts.contains(&joiner.addr) {
            // A contact that has not yet found the others would start an overlay of its
            // own; the joiner retries through another contact.
            io.counters.joins_deferred += 1;
            return;
        }
        self.add_active(now, io, store, joiner);
        io.send(joiner.addr, Message::NeighborReply { accepted: true });
        let ttl = self.cfg.arwl;
        let others: Vec<SocketAddr> = self
            .active
            .keys()
            .filter(|a| **a != joiner.addr)
            .copied()
            .collect();
        for addr in others {
            io.send(addr, Message::ForwardJoin { joiner, ttl });
        }
    }

    /// FORWARD_JOIN from `from` for `joiner`, already checked to be current and not self.
    pub(crate) fn on_forward_join(
        &mut self,
        now: Time,
        io: &mut Io,
        store: &RecordStore,
        from: NodeId,
        joiner: NodeId,
        ttl: u8,
    ) {
        if ttl == 0 || self.active.len() <= 1 {
            self.accept_joiner(now, io, store, joiner);
            return;
        }
        if ttl == self.cfg.prwl {
            self.add_passive(io, store, joiner);
        }
        let next = self
            .active
            .keys()
            .filter(|a| **a != from.addr && **a != joiner.addr)
            .choose(&mut io.rng)
            .copied();
        match next {
            Some(addr) => io.send(
                addr,
                Message::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                },
            ),
            None => self.accept_joiner(now, io, store, joiner),
        }
    }

    fn accept_joiner(&mut self, now: Time, io: &mut Io, store: &RecordStore, joiner: NodeId) {
        if !self.is_active(&joiner) {
            self.add_active(now, io, store, joiner);
            io.send(
                joiner.addr,
                Message::Neighbor {
                    priority: Priority::High,
                },
            );
        }
    }

    pub(crate) fn on_neighbor(
        &mut self,
        now: Time,
        io: &mut Io,
        store: &RecordStore,
        from: NodeId,
        priority: Priority,
    ) {
        let accepted = self.is_active(&from)
            || priority == Priority::High
            || self.active.len() < self.cfg.active_max;
        if accepted {
            self.add_active(now, io, store, from);
        }
        io.send(from.addr, Message::NeighborReply { accepted });
    }

    pub(crate) fn on_neighbor_reply(
        &mut self,
        now: Time,
        io: &mut Io,
        store: &RecordStore,
        from: NodeId,
        accepted: bool,
    ) {
        let asked = self.pending_neighbor.is_some_and(|p| p.addr == from.addr)
            || self.is_joining_through(&from.addr);
        if self.pending_neighbor.is_some_and(|p| p.addr == from.addr) {
            self.pending_neighbor = None;
        }
        if !accepted {
            // Refused (its view is full): the next refill waits for `refill_interval`.
            return;
        }
        if self.is_active(&from) {
            return;
        }
        if asked || self.active.len() < self.cfg.active_max {
            self.add_active(now, io, store, from);
        } else {
            // A late answer we no longer want: close the link it opened on the other side.
            io.send(from.addr, Message::Disconnect);
        }
    }

    pub(crate) fn on_disconnect(
        &mut self,
        now: Time,
        io: &mut Io,
        store: &RecordStore,
        from: NodeId,
    ) {
        if self.is_active(&from) {
            self.remove_active(now, io, store, from.addr, LinkDown::Disconnected);
        }
    }

    pub(crate) fn on_ping(&mut self, io: &mut Io, from: NodeId, echo: u64) {
        let expected = self.is_active(&from)
            || self.pending_neighbor.is_some_and(|p| p.addr == from.addr)
            || self.is_joining_through(&from.addr);
        if expected {
            io.send(from.addr, Message::Pong { echo });
        } else {
            // The peer believes in a link this node does not have: repair the asymmetry.
            io.send(from.addr, Message::Disconnect);
        }
    }

    fn start_shuffle(&mut self, io: &mut Io) {
        let (ka, kp, ttl) = (
            self.cfg.shuffle_active,
            self.cfg.shuffle_passive,
            self.cfg.shuffle_ttl,
        );
        let Some(target) = self.active.keys().choose(&mut io.rng).copied() else {
            return;
        };
        let mut nodes = vec![self.me];
        nodes.extend(
            self.active
                .values()
                .filter(|p| p.id.addr != target)
                .map(|p| p.id)
                .choose_multiple(&mut io.rng, ka),
        );
        nodes.extend(
            self.passive
                .values()
                .map(|p| p.id)
                .choose_multiple(&mut io.rng, kp),
        );
        self.last_shuffle_sample = nodes.clone();
        let origin = self.me;
        io.send(target, Message::Shuffle { origin, ttl, nodes });
    }

    pub(crate) fn on_shuffle(
        &mut self,
        io: &mut Io,
        store: &RecordStore,
        from: NodeId,
        origin: NodeId,
        ttl: u8,
        nodes: Vec<NodeId>,
    ) {
        if origin.addr == self.me.addr {
            return;
        }
        if ttl > 0 && self.active.len() > 1 {
            let next = self
                .active
                .keys()
                .filter(|a| **a != from.addr && **a != origin.addr)
                .choose(&mut io.rng)
                .copied();
            if let Some(addr) = next {
                let ttl = ttl - 1;
                io.send(addr, Message::Shuffle { origin, ttl, nodes });
                return;
            }
        }
        let reply: Vec<NodeId> = self
            .passive
            .values()
            .map(|p| p.id)
            .choose_multiple(&mut io.rng, nodes.len());
        io.send(origin.addr, Message::ShuffleReply { nodes: reply });
        self.integrate_passive(io, store, &nodes, false);
    }

    pub(crate) fn integrate_passive(
        &mut self,
        io: &mut Io,
        store: &RecordStore,
        nodes: &[NodeId],
        is_reply: bool,
    ) {
        let max = self.cfg.passive_max.min(self.max_shuffle_nodes);
        for &id in nodes.iter().take(max) {
            if self.passive.len() >= self.cfg.passive_max
                && !self.passive.contains_key(&id.addr)
                && !self.active.contains_key(&id.addr)
                && id.addr != self.me.addr
            {
                // Make room: prefer what we sent away in the last shuffle.
                let sent = if is_reply {
                    self.last_shuffle_sample
                        .iter()
                        .find(|s| self.passive.contains_key(&s.addr))
                        .map(|s| s.addr)
                } else {
                    None
                };
                let victim = sent.or_else(|| self.passive.keys().choose(&mut io.rng).copied());
                if let Some(v) = victim {
                    self.remove_passive(&v);
                }
            }
            self.add_passive(io, store, id);
        }
    }

    /// Adds `id` to the passive view if there is room and it is not self or active.
    fn add_passive(&mut self, io: &mut Io, store: &RecordStore, id: NodeId) {
        if id.addr == self.me.addr || self.active.contains_key(&id.addr) {
            return;
        }
        if let Some(known) = store.known_epoch(&id.addr) {
            if known > id.epoch {
                return;
            }
        }
        if let Some(existing) = self.passive.get_mut(&id.addr) {
            if existing.id.epoch < id.epoch {
                *existing = PassivePeer {
                    id,
                    failed_at: None,
                };
            }
            return;
        }
        if self.passive.len() >= self.cfg.passive_max {
            let victim = self.passive.keys().choose(&mut io.rng).copied();
            if let Some(v) = victim {
                self.remove_passive(&v);
            }
        }
        self.epoch_floor = self.epoch_floor.min(id.epoch);
        self.passive.insert(
            id.addr,
            PassivePeer {
                id,
                failed_at: None,
            },
        );
    }

    /// Opens an active link to `id`, evicting a neighbour if the view is full.
    fn add_active(&mut self, now: Time, io: &mut Io, store: &RecordStore, id: NodeId) {
        if id.addr == self.me.addr || self.is_active(&id) {
            return;
        }
        if self.active.contains_key(&id.addr) {
            self.remove_active(now, io, store, id.addr, LinkDown::Superseded);
        }
        if self.active.len() >= self.cfg.active_max {
            if let Some(v) = self.eviction_victim(io, store) {
                io.send(v, Message::Disconnect);
                self.remove_active(now, io, store, v, LinkDown::Evicted);
            }
        }
        self.remove_passive(&id.addr);
        let interval = self.ping.interval;
        let first_ping = now + interval / 2 + io.random_duration(interval / 2);
        let estimate = self
            .active
            .values()
            .filter_map(|p| p.monitor.max_rtt())
            .max();
        self.links_due = None;
        self.epoch_floor = self.epoch_floor.min(id.epoch);
        self.active.insert(
            id.addr,
            ActivePeer {
                id,
                monitor: LinkMonitor::with_estimate(
                    now,
                    first_ping,
                    PingSide::of(&self.me.addr, &id.addr),
                    estimate,
                ),
            },
        );
        if self.pending_neighbor.is_some_and(|p| p.addr == id.addr) {
            self.pending_neighbor = None;
        }
        if self.is_joining_through(&id.addr) {
            self.joining = None;
        }
        io.counters.links_up += 1;
        self.in_overlay = true;
        self.adjacency_changed = true;
        io.emit(Output::Event(Event::NeighborUp(id)));
        // Anti-entropy on every new link; one side starts it, and a node still catching up
        // always does, with its whole digest. A complete node starts with its summary: two
        // complete stores in step exchange a few hundred bytes, not a line per node (the
        // peer answers differing buckets with their lines).
        if !self.view_complete {
            super::replication::send_digest(io, store, self.digest_chunk, id.addr, false, false);
        } else if self.me.addr < id.addr {
            super::replication::send_summary(io, store, id.addr, true);
        }
    }

    /// The neighbour to drop when the active view is full: one of those with the most other
    /// links according to their records (never one that would be left isolated if another
    /// choice exists), at random among equals. HyParView evicts at random; preferring
    /// well-connected peers keeps a fresh joiner from being cut off right after joining,
    /// which every other node would see as an unreachable live node.
    fn eviction_victim(&mut self, io: &mut Io, store: &RecordStore) -> Option<SocketAddr> {
        let me = self.me;
        let other_links = |peer: &NodeId| -> usize {
            store
                .get(&peer.addr)
                .filter(|r| r.origin == *peer)
                .map_or(0, |r| r.body.adjacency.iter().filter(|n| **n != me).count())
        };
        let best = self.active.values().map(|p| other_links(&p.id)).max()?;
        self.active
            .values()
            .filter(|p| other_links(&p.id) == best)
            .map(|p| p.id.addr)
            .choose(&mut io.rng)
    }

    pub(crate) fn remove_active(
        &mut self,
        now: Time,
        io: &mut Io,
        store: &RecordStore,
        addr: SocketAddr,
        reason: LinkDown,
    ) {
        let Some(peer) = self.active.remove(&addr) else {
            return;
        };
        self.links_due = None;
        self.forget_epoch(peer.id.epoch);
        let counters = &mut io.counters;
        match reason {
            LinkDown::Dead => counters.links_dead += 1,
            LinkDown::Disconnected => counters.links_disconnected += 1,
            LinkDown::Evicted => counters.links_evicted += 1,
            LinkDown::Superseded => counters.links_superseded += 1,
        }
        if reason != LinkDown::Superseded {
            self.add_passive(io, store, peer.id);
            if reason == LinkDown::Dead {
                if let Some(p) = self.passive.get_mut(&addr) {
                    p.failed_at = Some(now);
                }
                self.link_died = true;
            }
        }
        self.adjacency_changed = true;
        self.next_refill = self.next_refill.min(now);
        io.emit(Output::CloseLink(addr));
        io.emit(Output::Event(Event::NeighborDown(peer.id, reason)));
        if self.active.is_empty() && self.joining.is_none() {
            self.start_join(now, io);
        }
    }

    fn wants_refill(&self) -> bool {
        self.active.len() < self.cfg.active_max
            && self.pending_neighbor.is_none()
            && !self.passive.is_empty()
    }

    /// Asks one passive peer (not recently failed, if possible) to become a neighbour.
    fn refill(&mut self, now: Time, io: &mut Io) {
        let quarantine = self.cfg.failed_quarantine;
        let healthy = self
            .passive
            .values()
            .filter(|p| p.failed_at.is_none_or(|t| now >= t + quarantine))
            .map(|p| p.id)
            .choose(&mut io.rng);
        let candidate = healthy.or_else(|| self.passive.values().map(|p| p.id).choose(&mut io.rng));
        let Some(candidate) = candidate else {
            return;
        };
        // HIGH (must be accepted) when this node has no working link: none at all, or only
        // links whose peer stopped answering (after a freeze its peers dropped it, and
        // their DISCONNECTs may still be on their way).
        let isolated = self
            .active
            .values()
            .all(|p| p.monitor.is_suspect() || p.monitor.is_stalled());
        // Also below `active_min` links: a full peer refuses LOW, and a node with one or
        // two links is cut off if they crash together.
        let priority = if isolated || self.active.len() < self.cfg.active_min {
            Priority::High
        } else {
            Priority::Low
        };
        self.ask_neighbor(now, io, candidate.addr, priority);
    }

    fn ask_neighbor(&mut self, now: Time, io: &mut Io, addr: SocketAddr, priority: Priority) {
        self.pending_neighbor = Some(Attempt {
            addr,
            deadline: now + self.cfg.neighbor_timeout,
        });
        io.counters.neighbor_requests += 1;
        io.send(addr, Message::Neighbor { priority });
    }

    fn other_contacts(&self) -> Vec<SocketAddr> {
        let me = self.me.addr;
        self.contacts
            .iter()
            .filter(|c| **c != me)
            .copied()
            .collect()
    }

    /// Sends JOIN: a contact node to every other contact (so the contacts meet at once),
    /// any other node to the next contact, round robin.
    ///
    /// A contact answers JOINs from non-contacts only once it is in the overlay (it has a
    /// link, or no other contact answered it within `join_timeout`: it is the first).
    /// Otherwise contacts that started apart would each grow an overlay of their own,
    /// later bridged by a few nodes whose crash would split the cluster again.
    pub(crate) fn start_join(&mut self, now: Time, io: &mut Io) {
        let contacts = self.other_contacts();
        if contacts.is_empty() {
            self.in_overlay = true;
            return;
        }
        self.joining = Some(now + self.cfg.join_timeout);
        let targets = if self.contacts.contains(&self.me.addr) {
            contacts
        } else {
            self.next_contact = self.next_contact.wrapping_add(1);
            vec![contacts[self.next_contact % contacts.len()]]
        };
        for contact in targets {
            io.counters.joins_sent += 1;
            io.send(contact, Message::Join);
        }
    }

    fn is_joining_through(&self, addr: &SocketAddr) -> bool {
        self.joining.is_some() && self.contacts.contains(addr)
    }

    /// A node that cannot reach some contact may link to it directly; about three nodes of
    /// a component do so per round, which merges overlays split by a healed partition.
    fn check_contacts(
        &mut self,
        now: Time,
        io: &mut Io,
        store: &RecordStore,
        reach: &Reachability,
    ) {
        if self.pending_neighbor.is_some() || self.active.is_empty() {
            return;
        }
        let unreachable: Vec<SocketAddr> = self
            .other_contacts()
            .into_iter()
            .filter(|c| !self.active.contains_key(c) && reach.reported(store, c).is_none())
            .collect();
        let Some(&contact) = unreachable.choose(&mut io.rng) else {
            return;
        };
        let p = (3.0 / reach.count().max(1) as f64).min(1.0);
        if io.rng.random_bool(p) {
            self.ask_neighbor(now, io, contact, Priority::High);
        }
    }

    /// A record shows `origin` dropped neighbours: check at once those that are ours too.
    pub(crate) fn cascade(
        &mut self,
        now: Time,
        io: &mut Io,
        previous: Option<&(NodeId, Arc<RecordBody>)>,
        record: &Record,
    ) {
        let Some((origin, previous)) = previous else {
            return;
        };
        if *origin != record.origin {
            return;
        }
        for dropped in &previous.adjacency {
            if record.body.adjacency.contains(dropped) {
                continue;
            }
            self.change_link(&dropped.addr, |peer, _| {
                if peer.id == *dropped && !peer.monitor.is_suspect() {
                    peer.monitor.suspect(now);
                    io.counters.suspicions += 1;
                    io.counters.cascades += 1;
                }
            });
        }
    }

    /// Removes `addr`'s passive entry, if any, keeping [`Views::epoch_floor`].
    fn remove_passive(&mut self, addr: &SocketAddr) {
        if let Some(gone) = self.passive.remove(addr) {
            self.forget_epoch(gone.id.epoch);
        }
    }

    /// An entry at `epoch` left a view: the floor is found again if it was the lowest.
    fn forget_epoch(&mut self, epoch: u64) {
        if epoch <= self.epoch_floor {
            let active = self.active.values().map(|p| p.id.epoch);
            let passive = self.passive.values().map(|p| p.id.epoch);
            self.epoch_floor = active.chain(passive).min().unwrap_or(u64::MAX);
        }
    }

    /// A newer incarnation of `id.addr` exists: drop links to the older one.
    pub(crate) fn retire_superseded(
        &mut self,
        now: Time,
        io: &mut Io,
        store: &RecordStore,
        id: NodeId,
    ) {
        if id.epoch <= self.epoch_floor {
            return;
        }
        if self
            .active
            .get(&id.addr)
            .is_some_and(|p| p.id.epoch < id.epoch)
        {
            self.remove_active(now, io, store, id.addr, LinkDown::Superseded);
        }
        if self
            .passive
            .get(&id.addr)
            .is_some_and(|p| p.id.epoch < id.epoch)
        {
            self.remove_passive(&id.addr);
        }
    }

    /// This node became `new`: every link was made under the old epoch, so drop them all
    /// (the peers see the new epoch supersede the old one) and join again.
    pub(crate) fn adopt(&mut self, now: Time, io: &mut Io, store: &RecordStore, new: NodeId) {
        self.me = new;
        let links: Vec<SocketAddr> = self.active.keys().copied().collect();
        for addr in links {
            io.send(addr, Message::Disconnect);
            self.remove_active(now, io, store, addr, LinkDown::Superseded);
        }
        self.pending_neighbor = None;
        if self.joining.is_none() {
            self.start_join(now, io);
        }
    }

    /// A random active neighbour (for anti-entropy), drawn from the node's generator.
    pub(crate) fn random_active(&self, io: &mut Io) -> Option<NodeId> {
        self.active.values().choose(&mut io.rng).map(|p| p.id)
    }
}
