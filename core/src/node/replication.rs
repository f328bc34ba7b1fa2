//! Record replication: the store of every node's record, this node's own record, flooding
//! of new versions over the active views (or the broadcast tree) and digest anti-entropy.
//!
//! Each node writes only its own record, versioned `(epoch, seq)`; a newer version replaces
//! an older one (see [`crate::records`]). New versions are flooded once per version to
//! every active neighbour but the one they came from, batched for `flood_delay` per
//! neighbour; a queued copy is dropped when that neighbour sends the same version (or a
//! newer one) first, since the two copies would only cross (a quarter of all copies).
//! With `records.broadcast = tree` (see [`super::tree`]) the neighbours a link was pruned
//! to get the version's announcement instead of the version, `records.lazy_delay` later
//! (unless they showed they hold it); records
//! sent in answer (to digests, WANTs and GRAFTs) then go as RECORDS_REPLY, which prunes
//! nothing.
//! Anti-entropy repairs what floods missed: a full digest on a joiner's new links (a
//! summary between complete nodes), and every `anti_entropy_interval` a summary (at most
//! 16 bucket hashes) to a random neighbour, which answers the buckets that differ with its
//! finer summary of them (about one bucket per eight records); those that still differ
//! are answered with their digest entries (DIGEST_PART). Two stores in step exchange 128
//! bytes a second, whatever their size, not one entry per node.
//!
//! Invariants:
//! - the own record is published at most once per `publish_interval` and only when
//!   `record_changed`; while `record_changed` is set a deadline is due for it, except
//!   for a first version with nothing in it, which waits for the first link;
//! - a flood queue holds at most one version per origin (the newest) per neighbour, and
//!   queues exist only while `flush_at` is set;
//! - a RECORDS message never exceeds `max_records_per_message` records or the frame budget
//!   (unless one record alone does), and a DIGEST never exceeds `max_digest_entries`.

use super::flood_queue::FloodQueue;
use super::io::Io;
use super::tree::BroadcastTree;
use crate::config::{Broadcast, RecordsConfig};
use crate::id::NodeId;
use crate::records::{
    bucket_set, summary_size, Applied, BodyForm, DigestEntry, HeldCopy, Record, RecordBody,
    RecordStore, COARSE_SUMMARY, SUMMARY_BUCKETS,
};
use crate::services_delta::ServicesDelta;
use crate::tasks::TaskSet;
use crate::time::Time;
use crate::vip::VipSet;
use crate::wire::{Limits, Message};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What a digest covers: the whole store, or the buckets of a summary in `of` buckets.
pub(crate) enum DigestScope {
    All,
    Within { of: usize, buckets: Vec<u16> },
}

/// What offering a received record to the store did.
pub(crate) enum Offered {
    /// Stored; `record` is that version in the form to forward it in (its services
    /// resolved, and a delta and body change from the version held before); `previous` is
    /// the origin and body of the version it replaced.
    New {
        previous: Option<(NodeId, Arc<RecordBody>)>,
        record: Record,
        /// The store's slot for its address.
        slot: u32,
    },
    /// Newer, but its services delta starts from a version not held here: ask the sender
    /// for it in full. Counted.
    Gap,
    /// A tombstone covers it (this node collected that record): tell the sender, with
    /// this line. Counted.
    Collected(DigestEntry),
    /// A version already held (or an older one): counted as stale.
    Duplicate,
    /// Ignored (own, too large, invalid or no room), and counted.
    Ignored,
}

/// The replicated records of one node.
pub(crate) struct Replication {
    me: NodeId,
    cfg: RecordsConfig,
    limits: Limits,
    pub(crate) store: RecordStore,
    pub(crate) self_slot: u32,
    own_seq: u64,
    /// The own services as last published, and the `seq` that published them.
    published_services: Arc<VipSet>,
    /// The own task records as last published (versioned with the services).
    published_tasks: Arc<TaskSet>,
    own_services_seq: u64,
    /// The own record must be published again (its content changed).
    pub(crate) record_changed: bool,
    /// When the own record was last published.
    last_publish: Option<Time>,
    /// The pending change only changes links while this node joins: it waits until then,
    /// so that the links of a join travel in one version (`Time::MAX`: a first version
    /// with nothing in it waits for the first link).
    pub(crate) coalesce_until: Option<Time>,
    /// A peer showed this node's address under an older epoch (an earlier incarnation
    /// whose record, and backends, peers still hold): the first version of this one must
    /// not wait to supersede it.
    pub(crate) older_incarnation_seen: bool,
    /// Records waiting to be flooded, with the neighbours each is for.
    flood_queue: FloodQueue,
    flush_at: Option<Time>,
    next_anti_entropy: Time,
    /// This node's view is complete: it caught up with a complete peer once (or waited out
    /// `view_complete_timeout` after its first link).
    pub(crate) complete: bool,
    /// When the view counts as complete anyway (set at the first link).
    pub(crate) complete_at: Option<Time>,
    /// When each address last got a digest line telling it that it is stale.
    stale_replies: PerPeerLimit,
    /// When each incomplete peer last got a closing summary after an exchange.
    closing_summaries: PerPeerLimit,
    /// The broadcast tree, with `records.broadcast = tree` (else versions are flooded).
    tree: Option<BroadcastTree>,
}

/// Most addresses a [`PerPeerLimit`] remembers.
const MAX_LIMITED_PEERS: usize = 256;

/// "At most once per interval per address", remembering at most [`MAX_LIMITED_PEERS`]
/// addresses (the one sent to longest ago is forgotten first).
#[derive(Default)]
struct PerPeerLimit {
    last: BTreeMap<SocketAddr, Time>,
}

impl PerPeerLimit {
    /// Whether `addr` may be sent to at `now`; if so, it is noted as sent.
    fn allow(&mut self, now: Time, addr: SocketAddr, interval: std::time::Duration) -> bool {
        if self.last.get(&addr).is_some_and(|&t| now < t + interval) {
            return false;
        }
        if self.last.len() >= MAX_LIMITED_PEERS && !self.last.contains_key(&addr) {
            let oldest = self
                .last
                .iter()
                .min_by_key(|(addr, t)| (**t, **addr))
                .map(|(addr, _)| *addr);
            if let Some(oldest) = oldest {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(addr, now);
        true
    }
}

impl Replication {
    pub(crate) fn new(
        me: NodeId,
        cfg: RecordsConfig,
        limits: Limits,
        next_anti_entropy: Time,
    ) -> Replication {
        let mut store = RecordStore::new(cfg.max_records);
        store.reserve(cfg.expected_hosts.min(cfg.max_records));
        store.set_max_backends(limits.max_record_backends);
        store.set_max_stored_backends(cfg.max_stored_backends);
        store.set_max_adjacency(limits.max_adjacency);
        let self_slot = store
            .intern(me)
            .expect("an empty store has room for its own node");
        let tree = (cfg.broadcast == Broadcast::Tree).then(|| BroadcastTree::new(cfg.max_records));
        Replication {
            me,
            cfg,
            limits,
            store,
            self_slot,
            own_seq: 0,
            published_services: Arc::default(),
            published_tasks: Arc::default(),
            own_services_seq: 0,
            record_changed: true,
            last_publish: None,
            coalesce_until: None,
            older_incarnation_seen: false,
            flood_queue: FloodQueue::default(),
            flush_at: None,
            next_anti_entropy,
            stale_replies: PerPeerLimit::default(),
            closing_summaries: PerPeerLimit::default(),
            complete: false,
            complete_at: None,
            tree,
        }
    }

    /// `(epoch, seq)` of the own record as last published.
    pub(crate) fn own_version(&self) -> (u64, u64) {
        (self.me.epoch, self.own_seq)
    }

    /// This node became `new` (a newer epoch of the same address): its next own record
    /// starts a new sequence under it.
    pub(crate) fn adopt(&mut self, new: NodeId) {
        self.me = new;
        self.own_seq = 0;
        // Peers hold the incarnation this one replaces: its first version goes at once.
        self.older_incarnation_seen = true;
        self.published_services = Arc::default();
        self.published_tasks = Arc::default();
        self.own_services_seq = 0;
        self.store.intern(new);
        self.record_changed = true;
        self.last_publish = None;
        self.flood_queue.clear();
        self.flush_at = None;
        if let Some(tree) = &mut self.tree {
            *tree = BroadcastTree::new(self.cfg.max_records);
        }
    }

    /// `from` spoke under an epoch older than the newest known for its address (it lost
    /// its state, or it is a replay): tell it, with the digest line of its address, at
    /// most once per anti-entropy interval per address, so that a live node that lost its
    /// state learns its old epoch and supersedes it.
    pub(crate) fn tell_stale(&mut self, now: Time, io: &mut Io, from: NodeId) {
        if !self
            .stale_replies
            .allow(now, from.addr, self.cfg.anti_entropy_interval)
        {
            return;
        }
        let entry = match self.store.get(&from.addr) {
            Some(r) => DigestEntry {
                addr: from.addr,
                epoch: r.origin.epoch,
                seq: r.seq,
            },
            None => DigestEntry {
                addr: from.addr,
                epoch: self.store.known_epoch(&from.addr).unwrap_or(0),
                seq: 0,
            },
        };
        io.counters.stale_replies += 1;
        io.send(
            from.addr,
            Message::Digest {
                entries: vec![entry],
                reply: true,
                complete: false,
            },
        );
    }

    /// When the changed own record may be published (`None`: unchanged).
    pub(crate) fn publish_due(&self) -> Option<Time> {
        self.record_changed.then(|| {
            let at = self
                .last_publish
                .map_or(Time::ZERO, |t| t + self.cfg.publish_interval);
            self.coalesce_until.map_or(at, |c| at.max(c))
        })
    }

    /// The earliest of this part's deadlines.
    pub(crate) fn poll_timeout(&self) -> Time {
        let mut at = self.next_anti_entropy;
        let complete_at = self.complete_at.filter(|_| !self.complete);
        let tree = self.tree.as_ref().and_then(BroadcastTree::poll_timeout);
        for due in [self.publish_due(), self.flush_at, complete_at, tree]
            .into_iter()
            .flatten()
        {
            at = at.min(due);
        }
        at
    }

    /// Periodic anti-entropy with `peer` (a random active neighbour), when due.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Time,
        io: &mut Io,
        pick_peer: impl FnOnce(&mut Io) -> Option<NodeId>,
    ) {
        if now >= self.next_anti_entropy {
            self.next_anti_entropy = now + io.jittered(self.cfg.anti_entropy_interval);
            if let Some(peer) = pick_peer(io) {
                self.send_summary(io, peer.addr);
            }
        }
    }

    /// Broadcast tree: asks for the announced versions still missing after the graft
    /// timeout (GRAFT, which makes those links eager).
    pub(crate) fn send_grafts(
        &mut self,
        now: Time,
        io: &mut Io,
        is_active: impl Fn(&SocketAddr) -> bool,
    ) {
        let Some(tree) = &mut self.tree else { return };
        let grafts = tree.due_grafts(now, self.cfg.graft_timeout, is_active);
        for (to, addrs) in grafts {
            io.counters.tree_grafts += addrs.len() as u64;
            for chunk in addrs.chunks(self.limits.max_digest_entries.max(1)) {
                io.send(
                    to,
                    Message::Graft {
                        addrs: chunk.to_vec(),
                    },
                );
            }
        }
    }

    /// Broadcast tree: `from` announced `entries`; those newer than the versions held
    /// are awaited (and hold unreachable reports for a while).
    pub(crate) fn on_ihave(&mut self, now: Time, from: NodeId, entries: &[DigestEntry]) {
        let Some(tree) = &mut self.tree else { return };
        for entry in entries {
            tree.peer_holds(&from.addr, &entry.addr, (entry.epoch, entry.seq));
            if entry.addr == self.me.addr
                || self
                    .store
                    .holds_version(&entry.addr, (entry.epoch, entry.seq))
                || self
                    .store
                    .tombstone(&entry.addr)
                    .is_some_and(|t| t.covers((entry.epoch, entry.seq)))
            {
                continue;
            }
            tree.on_announcement(
                now,
                from.addr,
                *entry,
                self.cfg.graft_timeout,
                self.cfg.announcement_hold,
            );
        }
    }

    /// Broadcast tree: `from` asks for `addrs` in full and for pushes from now on.
    pub(crate) fn on_graft(&mut self, io: &mut Io, from: NodeId, addrs: &[SocketAddr]) {
        if let Some(tree) = &mut self.tree {
            tree.on_graft(from.addr);
        }
        self.on_want(io, from, addrs);
    }

    /// Broadcast tree: a link was declared dead. If it was eager, the nodes below it in
    /// the tree now hear only announcements; pushing on every link again (until
    /// duplicates prune them) repairs the tree here at once instead of graft by graft,
    /// and the news of the crash, which this node is about to publish, takes the shortest
    /// paths.
    pub(crate) fn on_link_died(&mut self, io: &mut Io) {
        if let Some(tree) = &mut self.tree {
            tree.unprune_all();
            io.counters.tree_unprunes += 1;
        }
    }

    /// Broadcast tree: `from` got a duplicate from this node; announce to it from now on.
    pub(crate) fn on_prune(&mut self, from: NodeId) {
        if let Some(tree) = &mut self.tree {
            tree.on_prune(from.addr);
        }
    }

    /// Broadcast tree: a copy pushed by `from` brought nothing new; prune the link (once).
    pub(crate) fn on_duplicate(&mut self, io: &mut Io, from: SocketAddr) {
        if let Some(tree) = &mut self.tree {
            if tree.on_duplicate(from) {
                io.counters.tree_prunes += 1;
                io.send(from, Message::Prune);
            }
        }
    }

    /// Broadcast tree: `origin`'s version `version` is held now.
    pub(crate) fn on_received(&mut self, origin: &SocketAddr, version: (u64, u64)) {
        if let Some(tree) = &mut self.tree {
            tree.on_received(origin, version);
        }
    }

    /// The tree's bounds hold, and nothing awaited is already held.
    pub(crate) fn check_tree(&self) -> Result<(), String> {
        match &self.tree {
            Some(tree) => tree.check(|origin, version| self.store.holds_version(origin, version)),
            None => Ok(()),
        }
    }

    /// Broadcast tree: a version announced to this node is still missing (recently):
    /// unreachable reports wait.
    pub(crate) fn holds_reports(&mut self, now: Time) -> bool {
        self.tree.as_mut().is_some_and(|t| t.holds(now))
    }

    /// Checks a received record and stores it if it is newer than the held version.
    pub(crate) fn offer(&mut self, io: &mut Io, record: Record) -> Offered {
        if record.origin.addr == self.me.addr {
            if record.origin.epoch < self.me.epoch {
                self.older_incarnation_seen = true;
            }
            io.counters.records_own_ignored += 1;
            return Offered::Ignored;
        }
        // Most copies are of a version already held (flooding brings each about 2.7
        // times): known stale before its size is worked out (a walk over the whole record).
        // The one index lookup of a receipt.
        let slot = self.store.slot_of(&record.origin.addr);
        if self.store.holds_version_in(slot, record.version()) {
            io.counters.records_stale += 1;
            return Offered::Duplicate;
        }
        // Most copies list a few addresses and say "services unchanged": far below the
        // bound without encoding them (the encoding computes the body diff).
        let max = self.limits.max_record_bytes;
        let fits = record
            .encoded_size_bound()
            .is_some_and(|bound| bound <= max)
            || postcard::experimental::serialized_size(&record).is_ok_and(|bytes| bytes <= max);
        if !fits {
            io.counters.records_rejected_size += 1;
            return Offered::Ignored;
        }
        let addr = record.origin.addr;
        match self.store.apply_in(slot, record) {
            Applied::New {
                previous,
                forward,
                slot,
            } => {
                io.counters.records_applied += 1;
                Offered::New {
                    previous,
                    record: *forward,
                    slot,
                }
            }
            Applied::Stale => {
                io.counters.records_stale += 1;
                Offered::Duplicate
            }
            Applied::Gap => {
                io.counters.records_delta_gaps += 1;
                Offered::Gap
            }
            Applied::Invalid => {
                io.counters.records_invalid += 1;
                Offered::Ignored
            }
            Applied::Full => {
                io.counters.records_rejected_full += 1;
                Offered::Ignored
            }
            Applied::Tombstoned => {
                io.counters.records_tombstoned += 1;
                match self.store.tombstone(&addr) {
                    Some(tomb) => Offered::Collected(DigestEntry {
                        addr,
                        epoch: tomb.epoch,
                        seq: tomb.seq,
                    }),
                    None => Offered::Ignored,
                }
            }
        }
    }

    /// Tells `addr` which records it still holds were collected here (nothing if none).
    pub(crate) fn send_collected(&self, io: &mut Io, addr: SocketAddr, entries: Vec<DigestEntry>) {
        for chunk in entries.chunks(self.limits.max_digest_entries.max(1)) {
            io.send(
                addr,
                Message::Collected {
                    entries: chunk.to_vec(),
                },
            );
        }
    }

    /// Answers a WANT: the held records of `addrs`, in full.
    pub(crate) fn on_want(&mut self, io: &mut Io, from: NodeId, addrs: &[SocketAddr]) {
        let records = addrs
            .iter()
            .filter_map(|addr| self.store.get(addr))
            .map(Record::in_full)
            .collect();
        self.send_records(io, from.addr, records, true);
    }

    /// Answers a digest (or, `Within` a summary's buckets, a DIGEST_PART): the records
    /// `from` lacks there, the collections it has not heard of, this node's own lines if
    /// `from` holds something newer (unless the digest was itself an answer), and a closing
    /// summary for an incomplete peer. Returns whether `from` holds anything this node
    /// lacks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_digest(
        &mut self,
        now: Time,
        io: &mut Io,
        from: NodeId,
        scope: DigestScope,
        entries: &[DigestEntry],
        reply: bool,
        peer_complete: bool,
    ) -> bool {
        let (missing, they_have_newer) = match &scope {
            DigestScope::All => self.store.reconcile(entries),
            DigestScope::Within { of, buckets } => {
                self.store.reconcile_within(entries, *of, buckets)
            }
        };
        let sent = !missing.is_empty();
        self.send_records(io, from.addr, missing, true);
        self.send_collected(io, from.addr, self.store.collected_in(entries));
        if they_have_newer && !reply {
            match scope {
                DigestScope::All => {
                    let (chunk, complete) = (self.limits.max_digest_entries, self.complete);
                    send_digest(io, &self.store, chunk, from.addr, true, complete);
                }
                DigestScope::Within { of, buckets } => {
                    self.send_digest_part(io, from.addr, of, buckets, true)
                }
            }
        }
        self.close_exchange(now, io, from, sent, peer_complete);
        they_have_newer
    }

    /// After records sent to an incomplete peer in answer to its digest, a complete node
    /// sends its summary on the same (ordered) link: once the peer has applied them, equal
    /// summaries tell it that it caught up with a complete peer. At most once per
    /// anti-entropy interval per peer, so a peer that cannot take the records (its store
    /// is full, or it holds a tombstone) does not keep the exchange going.
    fn close_exchange(
        &mut self,
        now: Time,
        io: &mut Io,
        to: NodeId,
        sent: bool,
        peer_complete: bool,
    ) {
        let interval = self.cfg.anti_entropy_interval;
        if !sent
            || peer_complete
            || !self.complete
            || !self.closing_summaries.allow(now, to.addr, interval)
        {
            return;
        }
        self.send_summary(io, to.addr);
    }

    /// Sends this store's summary (and whether this node's view is complete) to `addr`.
    pub(crate) fn send_summary(&self, io: &mut Io, addr: SocketAddr) {
        send_summary(io, &self.store, addr, self.complete);
    }

    /// Answers a summary in `of` buckets (`buckets` lists those its `hashes` are for;
    /// empty: all of them). The buckets that differ from this store's are answered with
    /// this store's finer summary of just them when it folds into more buckets than `of`,
    /// else with their digest entries (DIGEST_PART). Returns whether any bucket differs
    /// (none: the stores hold the same versions there).
    pub(crate) fn on_summary(
        &mut self,
        io: &mut Io,
        from: NodeId,
        of: usize,
        buckets: &[u16],
        hashes: &[u64],
    ) -> bool {
        if !of.is_power_of_two() || of > SUMMARY_BUCKETS {
            // Malformed (a decoded frame never is): no answer, and no sign of being in step.
            return true;
        }
        let mine = self.store.summary(of);
        let listed: Vec<u16> = if buckets.is_empty() {
            (0..of as u16).collect()
        } else {
            buckets.to_vec()
        };
        let differ: Vec<u16> = listed
            .into_iter()
            .zip(hashes)
            .filter(|(b, theirs)| mine.get(usize::from(*b)) != Some(theirs))
            .map(|(b, _)| b)
            .collect();
        if differ.is_empty() {
            return false;
        }
        let fine = summary_size(self.store.in_use());
        if fine > of {
            // Fine bucket j folds into bucket j % of: list the fine ones under those that
            // differ (the sizes are powers of two).
            let hashes = self.store.summary(fine);
            let wanted = bucket_set(of, &differ);
            let buckets: Vec<u16> = (0..fine as u16)
                .filter(|j| wanted[usize::from(*j) % of])
                .collect();
            let hashes = buckets.iter().map(|&j| hashes[usize::from(j)]).collect();
            io.send(
                from.addr,
                Message::Summary {
                    of: fine as u16,
                    buckets,
                    hashes,
                    complete: self.complete,
                },
            );
        } else {
            self.send_digest_part(io, from.addr, of, differ, false);
        }
        true
    }

    fn send_digest_part(
        &mut self,
        io: &mut Io,
        addr: SocketAddr,
        of: usize,
        buckets: Vec<u16>,
        reply: bool,
    ) {
        let entries = self.store.digest_within(of, &buckets);
        let of = of as u16;
        let complete = self.complete;
        // An empty part still tells the peer these buckets hold nothing here.
        let mut chunks = entries
            .chunks(self.limits.max_digest_entries.max(1))
            .peekable();
        if chunks.peek().is_none() {
            io.send(
                addr,
                Message::DigestPart {
                    of,
                    buckets,
                    entries: Vec::new(),
                    reply,
                    complete,
                },
            );
            return;
        }
        for chunk in chunks {
            io.send(
                addr,
                Message::DigestPart {
                    of,
                    buckets: buckets.clone(),
                    entries: chunk.to_vec(),
                    reply,
                    complete,
                },
            );
        }
    }

    /// Whether the own record changed and the publish interval allows a new version now.
    pub(crate) fn publish_ready(&self, now: Time) -> bool {
        self.publish_due().is_some_and(|at| now >= at)
    }

    /// Publishes a new version of the own record (call when [`Replication::publish_ready`])
    /// and floods it to `neighbours`.
    pub(crate) fn publish(
        &mut self,
        now: Time,
        adjacency: Vec<NodeId>,
        agents: &[IpAddr],
        services: &Arc<VipSet>,
        tasks: &Arc<TaskSet>,
        neighbours: &[SocketAddr],
    ) {
        self.record_changed = false;
        self.coalesce_until = None;
        self.last_publish = Some(now);
        self.own_seq += 1;
        let delta = if Arc::ptr_eq(services, &self.published_services)
            && Arc::ptr_eq(tasks, &self.published_tasks)
        {
            ServicesDelta::unchanged(self.own_services_seq)
        } else {
            let mut delta = ServicesDelta::between(
                &self.published_services,
                services,
                self.own_services_seq,
                self.own_seq,
            );
            if !Arc::ptr_eq(tasks, &self.published_tasks) {
                delta = delta.with_tasks(&self.published_tasks, tasks);
            }
            self.published_services = services.clone();
            self.published_tasks = tasks.clone();
            if delta.vips.is_empty() && delta.tasks.is_empty() {
                // An equal set in a new allocation: the services version stays, so a
                // node with no services never moves past version 0 (no gap possible).
                ServicesDelta::unchanged(self.own_services_seq)
            } else {
                self.own_services_seq = self.own_seq;
                delta
            }
        };
        // The links travel as their change from the previous version of this epoch.
        let body_form = match self.store.get(&self.me.addr) {
            Some(previous) if previous.origin == self.me => BodyForm::From {
                seq: previous.seq,
                base: previous.body.clone(),
            },
            _ => BodyForm::Full,
        };
        let mut record = Record {
            origin: self.me,
            seq: self.own_seq,
            body: Arc::new(RecordBody {
                adjacency,
                agents: agents.to_vec(),
            }),
            services: services.clone(),
            tasks: tasks.clone(),
            services_seq: self.own_services_seq,
            delta: Some(Arc::new(delta)),
            body_form,
            held: HeldCopy::default(),
        };
        // Stored in full: the store keeps the published set itself (a delta would be
        // resolved against the previous one). The flooded version carries the stored copy.
        if let Applied::New { forward, .. } = self.store.apply(record.in_full()) {
            record.held = forward.held;
        }
        self.flood(now, record, None, neighbours);
    }

    /// Queues `record` for every neighbour in `neighbours` except `except` and its origin.
    /// Queues are flushed `flood_delay` after their first entry, one RECORDS message per
    /// neighbour, so a burst of versions travels in a few messages; a newer version of the
    /// same origin replaces a queued older one.
    pub(crate) fn flood(
        &mut self,
        now: Time,
        record: Record,
        except: Option<SocketAddr>,
        neighbours: &[SocketAddr],
    ) {
        let mut targets: SmallVec<[SocketAddr; 8]> = SmallVec::new();
        for &addr in neighbours
            .iter()
            .filter(|a| Some(**a) != except && **a != record.origin.addr)
        {
            if let Some(tree) = self.tree.as_mut().filter(|t| t.is_lazy(&addr)) {
                let (epoch, seq) = record.version();
                let entry = DigestEntry {
                    addr: record.origin.addr,
                    epoch,
                    seq,
                };
                tree.queue_announcement(now, addr, entry, self.cfg.lazy_delay);
                continue;
            }
            targets.push(addr);
        }
        self.flood_queue.queue(&record, &targets, neighbours);
        if self.flush_at.is_none() && !self.flood_queue.is_empty() {
            self.flush_at = Some(now + self.cfg.flood_delay);
        }
    }

    /// `peer` holds `origin`'s version `version` (it just sent it): a queued copy of that
    /// version or an older one would bring it nothing, so it is dropped.
    pub(crate) fn peer_holds(
        &mut self,
        io: &mut Io,
        peer: &SocketAddr,
        origin: &SocketAddr,
        version: (u64, u64),
    ) {
        if self.flood_queue.peer_holds(peer, origin, version) {
            io.counters.floods_cancelled += 1;
        }
        if let Some(tree) = &mut self.tree {
            tree.peer_holds(peer, origin, version);
        }
    }

    /// Sends the queued floods if they are due; queues of neighbours that are gone are
    /// dropped.
    pub(crate) fn maybe_flush(
        &mut self,
        now: Time,
        io: &mut Io,
        is_active: impl Fn(&SocketAddr) -> bool,
    ) {
        let flush = self.flush_at.is_some_and(|at| now >= at);
        if flush {
            self.flush_at = None;
            for (addr, records) in self.flood_queue.take() {
                if !is_active(&addr) {
                    continue;
                }
                self.send_records(io, addr, records, false);
            }
        }
        if let Some(tree) = self
            .tree
            .as_mut()
            .filter(|t| flush || t.announcements_due(now))
        {
            tree.retain(&is_active);
            for (addr, entries) in tree.take_announcements(now) {
                for chunk in entries.chunks(self.limits.max_digest_entries.max(1)) {
                    io.send(
                        addr,
                        Message::Ihave {
                            entries: chunk.to_vec(),
                        },
                    );
                }
            }
        }
    }

    /// Sends `records` in as few RECORDS messages as the count and frame bounds allow;
    /// with the tree, records sent in `reply` (not pushed) go as RECORDS_REPLY.
    fn send_records(&mut self, io: &mut Io, addr: SocketAddr, records: Vec<Record>, reply: bool) {
        let message = |records| match reply && self.tree.is_some() {
            true => Message::RecordsReply { records },
            false => Message::Records { records },
        };
        let max_count = self.limits.max_records_per_message;
        // Room for the version byte, the envelope and the message and length headers.
        let budget = self.limits.max_frame_len.saturating_sub(256);
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for record in records {
            // An upper bound where one is cheap (most flooded versions; measuring
            // computes the body diff): a batch never exceeds the budget, and one near it
            // may split a little early. The budget is megabytes, so floods never come
            // near it.
            let bytes = record.encoded_size_bound().unwrap_or_else(|| {
                postcard::experimental::serialized_size(&record).unwrap_or(usize::MAX)
            });
            if !batch.is_empty() && (batch.len() >= max_count || batch_bytes + bytes > budget) {
                let records = std::mem::take(&mut batch);
                io.send(addr, message(records));
                batch_bytes = 0;
            }
            batch_bytes += bytes;
            batch.push(record);
        }
        if !batch.is_empty() {
            io.send(addr, message(batch));
        }
    }
}

/// Sends `store`'s summary to `addr` in at most [`COARSE_SUMMARY`] buckets, with whether
/// the sender's view is `complete`.
pub(crate) fn send_summary(io: &mut Io, store: &RecordStore, addr: SocketAddr, complete: bool) {
    let of = summary_size(store.in_use()).min(COARSE_SUMMARY);
    io.send(
        addr,
        Message::Summary {
            of: of as u16,
            buckets: Vec::new(),
            hashes: store.summary(of),
            complete,
        },
    );
}

/// Sends this store's digest to `addr`, in chunks of at most `chunk` entries.
pub(crate) fn send_digest(
    io: &mut Io,
    store: &RecordStore,
    chunk: usize,
    addr: SocketAddr,
    reply: bool,
    complete: bool,
) {
    let entries = store.digest();
    // An empty store still sends one (empty) digest: it is what asks the peer for
    // everything (a joiner's first version waits for its links, so it may hold nothing).
    let chunks = entries
        .chunks(chunk)
        .chain(entries.is_empty().then_some(&[][..]));
    for entries in chunks {
        io.send(
            addr,
            Message::Digest {
                entries: entries.to_vec(),
                reply,
                complete,
            },
        );
    }
}
