//! The replicated per-node records and the store that holds them.
//!
//! Every node owns exactly one record and is its only writer. A record is versioned by
//! `(epoch, seq)` of its origin; a newer version replaces an older one and nothing else
//! ever merges, so replicas converge as soon as they hold the same versions.
//!
//! The store keeps one slot per node address. A slot index is a stable name for an address
//! for as long as the slot is in use, so the reachability graph can be a plain vector
//! graph. Each slot remembers the newest epoch heard *first-hand* for its address: from
//! that node's own record or from a message it sent. An edge in someone else's record never
//! raises it (a third party's claim must not retire a live incarnation); edges that name
//! another epoch than the slot's do not count.
//!
//! # Garbage collection and tombstones
//!
//! A slot whose address stayed unreachable for `records.gc_horizon` (the node decides, from
//! its own reachability result, see `Node`) is freed with [`RecordStore::free`]: its record
//! leaves the store and the summary, its edges leave the graph, and every edge *into* it
//! from other records is dropped (those records' adjacency still names the address, but the
//! resolved edge is gone: a freed slot that is later reused for another address can never
//! be reached through an edge meant for the old one). Freed slots go on a free list and are
//! reused (last freed first) before the slot vector grows, so the vector is as long as the
//! most addresses ever held at once, not as the addresses ever seen.
//!
//! Freeing a held record leaves a tombstone `(addr, epoch, seq)`: a record of that address
//! whose version is not newer is refused ([`Applied::Tombstoned`], counted), and a digest
//! entry it covers does not make this node ask for it. Both are answered with COLLECTED
//! ([`RecordStore::collected_in`]): a peer that still holds such a version and does not
//! reach its origin collects it too, so a node that first heard of a dead host late (it
//! joined after the host left) does not keep it for a horizon of its own. A strictly newer version (the host
//! published again, or restarted under a new epoch) replaces the tombstone and the address
//! is back. Tombstones expire `until` the time the caller gives (one more horizon), and at
//! most `max_slots` are kept (the oldest goes first). A late copy that arrives after its
//! tombstone expired is stored again, as a record whose origin nobody reaches: it is
//! reported unreachable (it never becomes reachable, since no live record has an edge to
//! that incarnation) and collected again one horizon later. That is safe: it never counts
//! as reachable, so its backends are used only where a service has no reachable backend
//! at all (the same rule as for any unreachable origin), and it costs one slot for one
//! horizon per late copy.
//!
//! Invariants (checked by [`RecordStore::check`]):
//! - at most `max_slots` slots in use, at most `max_slots` tombstones;
//! - a slot's record, if any, has the slot's address; the index maps exactly the addresses
//!   of the slots in use to their slots;
//! - a free slot holds no record, no edges and no incoming edges, and no edge resolves to
//!   a free slot; every `incoming` entry is one edge of its source; a slot's edges are its
//!   record's adjacency resolved to slots, in order (a neighbour without a slot missing);
//!   a remembered sender's slot is in use and has that sender's address;
//! - the stored version of an address never decreases while it is held, and no held
//!   record is covered by a tombstone;
//! - the summary buckets are the XOR of the held versions' hashes.
//!
//! A stored record is an `Arc` that other stores may share (simulated nodes in one
//! process keep one copy per version, [`HeldCopy`]): a held record is changed only when
//! unshared (`Arc::get_mut`); otherwise its sets are copied on write.

use crate::body_diff::BodyDiff;
use crate::id::NodeId;
use crate::services_delta::ServicesDelta;
use crate::short_list::ShortList;
use crate::slot_index::SlotIndex;
use crate::tasks::TaskSet;
use crate::time::Time;
use crate::vip::VipSet;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// One digest line: the newest version of `addr`'s record the sender holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    pub addr: SocketAddr,
    pub epoch: u64,
    pub seq: u64,
}

/// What one node says about its links and agents: shared by every copy of one version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    /// The node's active view when it wrote the record, sorted.
    pub adjacency: Vec<NodeId>,
    /// The Mesos agent addresses this node reports for, sorted.
    pub agents: Vec<IpAddr>,
}

/// One version of one node's record.
///
/// The VIP backends are versioned on their own: `services` are those of the version
/// `services_seq` (the last one that changed them; 0, before any, is the empty set).
/// They travel in full, or as `delta` from an older `services_seq` (see
/// [`crate::services_delta`]): a decoded record with a delta holds no services until the
/// store resolves it against the version it holds ([`RecordStore::apply`]); a stored one
/// always holds them and is kept in full (no delta, no base body: memory per record stays
/// one body), while the form to forward it in is handed back once, by the apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub origin: NodeId,
    pub seq: u64,
    /// Shared: a flooded record is held by many queues and stores at once.
    pub body: Arc<RecordBody>,
    /// The VIP backends as of `services_seq`. Shared: a version that only changes the
    /// adjacency keeps pointing at the same set.
    pub services: Arc<VipSet>,
    /// The running tasks' DNS records as of `services_seq` (versioned with the backends).
    pub tasks: Arc<TaskSet>,
    /// The `seq` of the version that last changed `services` (at most `seq`).
    pub services_seq: u64,
    /// How the services travel: `Some(d)` as the delta `d` (`d.seq == services_seq`),
    /// `None` in full.
    pub delta: Option<Arc<ServicesDelta>>,
    /// How the body (links and agents) travels.
    pub body_form: BodyForm,
    /// The forwarding node's stored copy of this version, handed along in memory only.
    pub held: HeldCopy,
}

/// A forwarding node's stored copy of the version a record carries, handed along in memory
/// (never encoded: a decoded record has none). Where nodes share a process (the
/// simulator), a receiver that would store exactly that copy (same version, the same
/// shared body and sets) keeps one more reference to it instead of a copy of its own: a
/// stored record is 112 bytes, one per (node, address) pair. Compares equal to any other,
/// since it only names how the version is held, not what it is.
#[derive(Clone, Default)]
pub struct HeldCopy(Option<Arc<Record>>);

impl PartialEq for HeldCopy {
    fn eq(&self, _: &HeldCopy) -> bool {
        true
    }
}

impl Eq for HeldCopy {}

impl std::fmt::Debug for HeldCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "HeldCopy(shared)"
        } else {
            "HeldCopy(none)"
        })
    }
}

/// How a record's body travels (what its sender does with it, not part of the version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyForm {
    /// In full.
    Full,
    /// As its change from version `seq` of the same epoch, whose body the sender has as
    /// `base` (the diff is computed when the record is encoded).
    From { seq: u64, base: Arc<RecordBody> },
    /// Decoded from a diff: `body` is empty until the store applies the diff to the
    /// version it starts from ([`RecordStore::apply`]).
    Unresolved(Arc<BodyDiff>),
}

impl Record {
    /// A version with `body` and no services (`services_seq` 0), sent in full.
    pub fn new(origin: NodeId, seq: u64, body: RecordBody) -> Record {
        Record {
            origin,
            seq,
            body: Arc::new(body),
            services: VipSet::shared_empty(),
            tasks: TaskSet::shared_empty(),
            services_seq: 0,
            delta: None,
            body_form: BodyForm::Full,
            held: HeldCopy::default(),
        }
    }

    /// A version listing `adjacency` and nothing else (no agents, no services).
    pub fn with_links(origin: NodeId, seq: u64, adjacency: Vec<NodeId>) -> Record {
        Record::new(
            origin,
            seq,
            RecordBody {
                adjacency,
                ..Default::default()
            },
        )
    }

    /// `(epoch, seq)`: records of one address are ordered by it.
    pub fn version(&self) -> (u64, u64) {
        (self.origin.epoch, self.seq)
    }

    /// An upper bound on this record's encoded size when that is cheap to know: when its
    /// services travel as "unchanged" (most flooded versions), the size depends only on
    /// how many addresses its body or body diff lists. `None` otherwise (the services in
    /// full or as a delta: only encoding them says how large they are).
    pub fn encoded_size_bound(&self) -> Option<usize> {
        if !self.delta.as_ref().is_some_and(|d| d.is_unchanged()) {
            return None;
        }
        let entries = match &self.body_form {
            BodyForm::Full => self.body.adjacency.len() + self.body.agents.len(),
            BodyForm::From { base, .. } => {
                self.body.adjacency.len()
                    + self.body.agents.len()
                    + base.adjacency.len()
                    + base.agents.len()
            }
            BodyForm::Unresolved(diff) => {
                diff.added.len() + diff.removed.len() + diff.agents.as_ref().map_or(0, Vec::len)
            }
        };
        Some(ENCODED_HEADER_BOUND + entries * ENCODED_ENTRY_BOUND)
    }

    /// The same version, sent in full (answers to digests and wants).
    pub fn in_full(&self) -> Record {
        Record {
            delta: None,
            body_form: BodyForm::Full,
            held: HeldCopy::default(),
            ..self.clone()
        }
    }

    /// Whether `self` (a stored copy) is what storing `record` would make: the same
    /// version with the same shared body and sets, in full.
    fn is_stored_form_of(&self, record: &Record) -> bool {
        self.origin == record.origin
            && self.seq == record.seq
            && self.services_seq == record.services_seq
            && self.delta.is_none()
            && self.body_form == BodyForm::Full
            && Arc::ptr_eq(&self.body, &record.body)
            && Arc::ptr_eq(&self.services, &record.services)
            && Arc::ptr_eq(&self.tasks, &record.tasks)
    }
}

/// A stored copy, to send in full with itself as the copy a receiver may share.
fn sent_in_full(stored: &Arc<Record>) -> Record {
    Record {
        held: HeldCopy(Some(stored.clone())),
        ..(**stored).clone()
    }
}

/// The body of a record on the wire: in full, or as a diff from an earlier version.
#[derive(Serialize)]
enum BodyOut<'a> {
    Full(&'a RecordBody),
    Diff(std::borrow::Cow<'a, BodyDiff>),
}

#[derive(Deserialize)]
enum BodyIn {
    Full(RecordBody),
    Diff(BodyDiff),
}

/// The services of a record on the wire: in full, as a delta, or (most versions) the
/// version they are still at, in two bytes.
#[derive(Serialize)]
enum ServicesOut<'a> {
    Full {
        seq: u64,
        set: &'a VipSet,
        tasks: &'a TaskSet,
    },
    Delta(&'a ServicesDelta),
    Unchanged(u64),
}

#[derive(Deserialize)]
enum ServicesIn {
    Full {
        seq: u64,
        set: VipSet,
        tasks: TaskSet,
    },
    Delta(ServicesDelta),
    Unchanged(u64),
}

#[derive(Serialize)]
struct RecordOut<'a> {
    origin: NodeId,
    seq: u64,
    body: BodyOut<'a>,
    services: ServicesOut<'a>,
}

#[derive(Deserialize)]
struct RecordIn {
    origin: NodeId,
    seq: u64,
    body: BodyIn,
    services: ServicesIn,
}

/// Bytes a record's fixed part takes encoded at most (origin, versions, tags and lengths,
/// each number a varint of at most 10 bytes), and bytes one listed address takes, with
/// room to spare (a `NodeId` with an IPv6 address takes at most 31, an agent's `IpAddr`
/// 17): see [`Record::encoded_size_bound`] and the test that checks it at the maxima.
const ENCODED_HEADER_BOUND: usize = 128;
const ENCODED_ENTRY_BOUND: usize = 64;

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let services = match &self.delta {
            Some(delta) if delta.is_unchanged() => ServicesOut::Unchanged(delta.seq),
            Some(delta) => ServicesOut::Delta(delta),
            None => ServicesOut::Full {
                seq: self.services_seq,
                set: &self.services,
                tasks: &self.tasks,
            },
        };
        let body = match &self.body_form {
            BodyForm::Full => BodyOut::Full(&self.body),
            BodyForm::From { seq, base } => BodyOut::Diff(std::borrow::Cow::Owned(
                BodyDiff::between(*seq, base, &self.body),
            )),
            BodyForm::Unresolved(diff) => BodyOut::Diff(std::borrow::Cow::Borrowed(diff)),
        };
        RecordOut {
            origin: self.origin,
            seq: self.seq,
            body,
            services,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
        let wire = RecordIn::deserialize(deserializer)?;
        let (services, tasks, services_seq, delta) = match wire.services {
            ServicesIn::Full { seq, set, tasks } => (Arc::new(set), Arc::new(tasks), seq, None),
            ServicesIn::Delta(d) => (
                VipSet::shared_empty(),
                TaskSet::shared_empty(),
                d.seq,
                Some(Arc::new(d)),
            ),
            ServicesIn::Unchanged(seq) => (
                VipSet::shared_empty(),
                TaskSet::shared_empty(),
                seq,
                Some(Arc::new(ServicesDelta::unchanged(seq))),
            ),
        };
        let (body, body_form) = match wire.body {
            BodyIn::Full(body) => (Arc::new(body), BodyForm::Full),
            BodyIn::Diff(diff) => (Arc::default(), BodyForm::Unresolved(Arc::new(diff))),
        };
        Ok(Record {
            origin: wire.origin,
            seq: wire.seq,
            body,
            services,
            tasks,
            services_seq,
            delta,
            body_form,
            held: HeldCopy::default(),
        })
    }
}

/// Result of offering a record to the store.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Stored (in full); `previous` is the origin and body of the version it replaced, and
    /// `forward` the stored version in the form to send on: its services as the delta from
    /// the services version held before, its body as the change from the version held
    /// before (in full when none of that epoch was held).
    New {
        previous: Option<(NodeId, Arc<RecordBody>)>,
        forward: Box<Record>,
        /// The slot it is stored in.
        slot: u32,
    },
    /// Not newer than what is held.
    Stale,
    /// Newer, but its body or services came as a change from a version this store does
    /// not hold (ask the sender for the record in full).
    Gap,
    /// Its services or body are inconsistent (`services_seq` after `seq`, a malformed
    /// delta, a diff that does not fit its base) or would exceed the store's backend or
    /// neighbour bound once applied.
    Invalid,
    /// The store has no room for another address, or for the backends and task endpoints
    /// the record would add (`max_stored_backends`).
    Full,
    /// A tombstone covers this version: the record was collected (a late copy).
    Tombstoned,
}

/// What is left of a collected record: its version, refused until `until`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    pub epoch: u64,
    pub seq: u64,
    pub until: Time,
}

impl Tombstone {
    /// Whether a record (or digest entry) at `version` is covered (not newer).
    pub fn covers(&self, version: (u64, u64)) -> bool {
        version <= (self.epoch, self.seq)
    }
}

/// One address the store knows, with its record if one is held (an address named by an
/// edge, or freed, has none). The record is shared: where nodes share a process (the
/// simulator) every node that stores the same version with the same body and sets keeps
/// the same copy ([`HeldCopy`]). A slot with a record finds its address in it (the
/// record's origin); one without keeps the address itself, in 16 bytes ([`SlotAddr`]; a
/// `SocketAddr` is 32): 16 bytes a slot either way, one slot per (node, address) pair.
#[derive(Clone, Debug)]
pub(crate) enum Slot {
    Known(SlotAddr),
    Held(Arc<Record>),
}

/// A slot's address: an IPv4 one inline (its address and port are all a `SocketAddrV4`
/// compares), any other boxed (an IPv6 one's flow information and scope are kept, since
/// they take part in its equality).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SlotAddr {
    V4 { ip: [u8; 4], port: u16 },
    Other(Box<SocketAddr>),
}

impl SlotAddr {
    fn new(addr: SocketAddr) -> SlotAddr {
        match addr {
            SocketAddr::V4(a) => SlotAddr::V4 {
                ip: a.ip().octets(),
                port: a.port(),
            },
            other => SlotAddr::Other(Box::new(other)),
        }
    }

    fn get(&self) -> SocketAddr {
        match self {
            SlotAddr::V4 { ip, port } => SocketAddr::from((*ip, *port)),
            SlotAddr::Other(addr) => **addr,
        }
    }
}

impl Slot {
    fn known(addr: SocketAddr) -> Slot {
        Slot::Known(SlotAddr::new(addr))
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            Slot::Known(addr) => addr.get(),
            Slot::Held(record) => record.origin.addr,
        }
    }

    pub(crate) fn record(&self) -> Option<&Record> {
        self.shared_record().map(|r| &**r)
    }

    /// The held record, as shared.
    fn shared_record(&self) -> Option<&Arc<Record>> {
        match self {
            Slot::Known(_) => None,
            Slot::Held(record) => Some(record),
        }
    }

    /// The held record, to change in place where it is not shared.
    fn record_mut(&mut self) -> Option<&mut Arc<Record>> {
        match self {
            Slot::Known(_) => None,
            Slot::Held(record) => Some(record),
        }
    }

    /// Stores `record` (of this slot's address); returns the record held before.
    fn replace_record(&mut self, record: Arc<Record>) -> Option<Arc<Record>> {
        debug_assert_eq!(record.origin.addr, self.addr());
        match std::mem::replace(self, Slot::Held(record)) {
            Slot::Known(_) => None,
            Slot::Held(before) => Some(before),
        }
    }

    /// Takes the record out, keeping the address.
    fn take_record(&mut self) -> Option<Arc<Record>> {
        let addr = self.addr();
        match std::mem::replace(self, Slot::known(addr)) {
            Slot::Known(_) => None,
            Slot::Held(record) => Some(record),
        }
    }
}

/// The graph part of a slot, kept apart from the records so that the reachability search
/// walks a small dense array.
#[derive(Clone, Debug, Default)]
pub(crate) struct Vertex {
    /// Newest epoch heard of first-hand for this address.
    pub(crate) epoch: u64,
    /// The record's adjacency resolved to target slots, each marked with whether the
    /// record names the target's newest epoch.
    pub(crate) edges: Edges,
}

/// A slot's edges in adjacency order. Inline up to five (an active view holds five): one
/// slot per (node, address) pair, and a vector's header and heap block were about 130
/// bytes of it.
pub(crate) type Edges = ShortList<Edge>;

/// One resolved edge, four bytes: the target's slot, and whether the record names the
/// epoch the store holds as the target's newest (only then does the edge count). The
/// epoch itself is in the record's adjacency; an edge that carried it was 12 bytes, six of
/// them in every slot of every node.
///
/// The mark is kept in step by the store: set from the record when the edges are
/// resolved, and set again for every edge into a slot whose epoch rises (from the
/// sources' records). Invariant: `current()` is exactly "the epoch the source's record
/// names for this neighbour equals the target's `Vertex::epoch`".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Edge(u32);

/// The bit of an [`Edge`] that marks it current; the rest is the target slot.
const CURRENT: u32 = 1 << 31;

/// Slots are numbered below this (the bit above is an edge's mark).
const MAX_SLOTS: usize = CURRENT as usize;

impl Edge {
    pub(crate) fn new(target: u32, current: bool) -> Edge {
        debug_assert!(target < CURRENT, "slot {target} out of range");
        Edge(target | if current { CURRENT } else { 0 })
    }

    /// The target's slot.
    pub(crate) fn target(self) -> u32 {
        self.0 & !CURRENT
    }

    /// Whether the record names the target's newest epoch (the edge counts).
    pub(crate) fn current(self) -> bool {
        self.0 & CURRENT != 0
    }

    /// The target's slot, if the edge counts.
    pub(crate) fn current_target(self) -> Option<u32> {
        self.current().then_some(self.target())
    }

    fn set_current(&mut self, current: bool) {
        *self = Edge::new(self.target(), current);
    }
}

/// The sources whose edges name a slot (one entry per edge). Inline up to five, as
/// [`Edges`].
type Incoming = ShortList<u32>;

/// All records this node holds, one slot per address.
///
/// Besides the records it keeps what an incremental reachability search needs: for every
/// slot the sources whose edges name it (`incoming`, one entry per such edge), and the
/// slots whose edges or epoch changed since [`RecordStore::take_touched`] last drained them.
#[derive(Clone, Debug)]
pub struct RecordStore {
    slots: Vec<Slot>,
    vertices: Vec<Vertex>,
    /// Per slot, the slots whose edges name it (one entry per edge, any epoch).
    incoming: Vec<Incoming>,
    /// Slots whose edges or epoch changed (or that are new) since the last drain; each once.
    touched: Vec<u32>,
    touched_mark: Vec<bool>,
    /// Address → slot for the slots in use (lookup only, never iterated: iteration order
    /// is the slot vector's).
    index: SlotIndex,
    /// Per fine bucket (of an address's hash), the XOR of its held versions' hashes.
    buckets: Box<[u64; SUMMARY_BUCKETS]>,
    max_slots: usize,
    /// Most (VIP, backend) pairs a stored record may hold.
    max_backends: usize,
    /// Most (VIP, backend) pairs and task endpoints all stored records hold together (the
    /// own record, slot 0, is never refused for it).
    max_stored_backends: usize,
    /// What the stored records hold now, counted as `max_stored_backends` counts.
    stored_backends: usize,
    /// Most neighbours a stored record may list.
    max_adjacency: usize,
    /// Slots not in use (freed by [`RecordStore::free`]), reused last freed first.
    free: Vec<u32>,
    /// Per slot, whether it is on the free list.
    is_free: Vec<bool>,
    /// Versions of collected records, refused until they expire. Lookup only.
    tombstones: FxHashMap<SocketAddr, Tombstone>,
    /// Tombstones in the order they were made (their expiry order); an entry whose
    /// tombstone was since replaced or removed is skipped.
    tombstone_order: VecDeque<(SocketAddr, Tombstone)>,
    /// Edges dropped because no slot could be allocated for their target.
    pub dropped_edges: u64,
    /// The slots and epochs of the last few senders asked for by
    /// [`RecordStore::sender_epoch`] (a node hears mostly from its five or six neighbours;
    /// a hit skips the index and the slot's vertex, each a cache miss into a table of every
    /// known address). An entry's slot is the address's until the slot is freed, which
    /// drops the entry; its epoch is the slot's, raised with it.
    senders: [Option<(SocketAddr, u32, u64)>; SENDER_SLOTS],
    next_sender: usize,
}

/// How many recent senders [`RecordStore::sender_epoch`] remembers.
const SENDER_SLOTS: usize = 8;

impl RecordStore {
    pub fn new(max_slots: usize) -> RecordStore {
        RecordStore {
            slots: Vec::new(),
            vertices: Vec::new(),
            incoming: Vec::new(),
            touched: Vec::new(),
            touched_mark: Vec::new(),
            index: SlotIndex::default(),
            buckets: Box::new([0; SUMMARY_BUCKETS]),
            max_slots: max_slots.min(MAX_SLOTS),
            max_backends: usize::MAX,
            max_stored_backends: usize::MAX,
            stored_backends: 0,
            max_adjacency: usize::MAX,
            free: Vec::new(),
            is_free: Vec::new(),
            tombstones: FxHashMap::default(),
            tombstone_order: VecDeque::new(),
            dropped_edges: 0,
            senders: [None; SENDER_SLOTS],
            next_sender: 0,
        }
    }

    /// Reserves room for `hosts` slots at once (their tables grow no further until then).
    pub fn reserve(&mut self, hosts: usize) {
        let more = hosts.saturating_sub(self.slots.len());
        self.slots.reserve_exact(more);
        self.vertices.reserve_exact(more);
        self.incoming.reserve_exact(more);
        self.touched_mark.reserve_exact(more);
        self.is_free.reserve_exact(more);
        let slots = &self.slots;
        self.index.reserve(more, |s| slots[s as usize].addr());
    }

    /// Bounds the (VIP, backend) pairs of a stored record (a delta must not grow a peer's
    /// set past what a full record may hold).
    pub fn set_max_backends(&mut self, max: usize) {
        self.max_backends = max;
    }

    /// Bounds the backends and task endpoints of all stored records together, so that the
    /// store's memory is bounded in bytes as well as in records: a record that would take
    /// the sum past `max` is refused as [`Applied::Full`] (the own record never is).
    pub fn set_max_stored_backends(&mut self, max: usize) {
        self.max_stored_backends = max;
    }

    /// The backends and task endpoints all stored records hold together.
    pub fn stored_backends(&self) -> usize {
        self.stored_backends
    }

    /// Whether replacing `old` stored backends of `addr` by `new` would pass the bound.
    fn over_stored_bound(&self, slot: Option<u32>, old: usize, new: usize) -> bool {
        let own = slot == Some(0);
        !own && new > old && self.stored_backends - old + new > self.max_stored_backends
    }

    /// Bounds the neighbours of a stored record (a diff must not grow a peer's adjacency
    /// past what a full record may list).
    pub fn set_max_adjacency(&mut self, max: usize) {
        self.max_adjacency = max;
    }

    pub(crate) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub(crate) fn vertices(&self) -> &[Vertex] {
        &self.vertices
    }

    /// The slots whose edges name `slot` (one entry per edge, whatever epoch it names).
    pub(crate) fn incoming(&self, slot: u32) -> &[u32] {
        &self.incoming[slot as usize]
    }

    /// The slots whose edges or epoch changed, or that are new, since the last call, each
    /// once, in the order they first changed.
    pub(crate) fn take_touched(&mut self) -> Vec<u32> {
        for &slot in &self.touched {
            self.touched_mark[slot as usize] = false;
        }
        std::mem::take(&mut self.touched)
    }

    fn touch(&mut self, slot: u32) {
        let mark = &mut self.touched_mark[slot as usize];
        if !*mark {
            *mark = true;
            self.touched.push(slot);
        }
    }

    /// Length of the slot vector (slots in use and free): every slot index is below it.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Slots in use (the addresses held).
    pub fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether `slot` is on the free list (holds nothing, names no address).
    pub fn is_free(&self, slot: u32) -> bool {
        self.is_free.get(slot as usize).copied().unwrap_or(false)
    }

    /// Tombstones held.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// The tombstone of `addr`, if any.
    pub fn tombstone(&self, addr: &SocketAddr) -> Option<&Tombstone> {
        self.tombstones.get(addr)
    }

    /// Every record held, in slot order (the order addresses were first heard of).
    pub fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.slots.iter().filter_map(Slot::record)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot of `addr`, if known.
    pub fn slot_of(&self, addr: &SocketAddr) -> Option<u32> {
        let slots = &self.slots;
        self.index.get(addr, |s| slots[s as usize].addr())
    }

    /// The slot of `id.addr`, created (at `id.epoch`) if there is room. First-hand: also
    /// raises the slot's epoch to `id.epoch`.
    pub fn intern(&mut self, id: NodeId) -> Option<u32> {
        let slot = self.slot_for(id)?;
        self.raise_epoch(slot, id.epoch);
        Some(slot)
    }

    /// Raises `slot`'s epoch to `epoch` (first-hand news of the address).
    fn raise_epoch(&mut self, slot: u32, epoch: u64) {
        let v = &mut self.vertices[slot as usize];
        if epoch > v.epoch {
            v.epoch = epoch;
            for (_, _, known) in self.senders.iter_mut().flatten().filter(|e| e.1 == slot) {
                *known = epoch;
            }
            self.touch(slot);
            self.mark_edges_into(slot);
        }
    }

    /// Marks every edge into `slot` current or not against its epoch, which just rose:
    /// each source's record names the epoch (the k-th edge to `slot` is the k-th entry of
    /// the record's adjacency with `slot`'s address, since edges keep adjacency order and
    /// an address resolves to one slot).
    fn mark_edges_into(&mut self, slot: u32) {
        let s = slot as usize;
        let (slots, vertices) = (&self.slots, &mut self.vertices);
        let (addr, epoch) = (slots[s].addr(), vertices[s].epoch);
        for &source in &self.incoming[s] {
            let source = source as usize;
            let Some(record) = slots[source].record() else {
                debug_assert!(false, "slot {source} has edges but no record");
                continue;
            };
            let mut named = record.body.adjacency.iter().filter(|n| n.addr == addr);
            for edge in vertices[source]
                .edges
                .iter_mut()
                .filter(|e| e.target() == slot)
            {
                let current = named.next().is_some_and(|n| n.epoch == epoch);
                edge.set_current(current);
            }
        }
    }

    /// The slot of `id.addr`, created (at `id.epoch`) if there is room; an existing slot's
    /// epoch is left alone.
    fn slot_for(&mut self, id: NodeId) -> Option<u32> {
        if let Some(slot) = self.slot_of(&id.addr) {
            return Some(slot);
        }
        if self.in_use() >= self.max_slots {
            return None;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                let s = slot as usize;
                self.is_free[s] = false;
                self.slots[s] = Slot::known(id.addr);
                self.vertices[s].epoch = id.epoch;
                slot
            }
            None => {
                let slot = self.slots.len() as u32;
                self.slots.push(Slot::known(id.addr));
                self.vertices.push(Vertex {
                    epoch: id.epoch,
                    edges: Edges::new(),
                });
                self.incoming.push(Incoming::new());
                self.touched_mark.push(false);
                self.is_free.push(false);
                slot
            }
        };
        self.touch(slot);
        let slots = &self.slots;
        self.index
            .insert(&id.addr, slot, |s| slots[s as usize].addr());
        Some(slot)
    }

    /// The newest epoch heard of for `addr`.
    pub fn known_epoch(&self, addr: &SocketAddr) -> Option<u64> {
        self.slot_of(addr).map(|s| self.vertices[s as usize].epoch)
    }

    /// [`RecordStore::known_epoch`] for the sender of a message: the same answer, from the
    /// recent senders' slots when `addr` is one of them.
    pub fn sender_epoch(&mut self, addr: &SocketAddr) -> Option<u64> {
        if let Some(&(_, _, epoch)) = self.senders.iter().flatten().find(|e| e.0 == *addr) {
            return Some(epoch);
        }
        let slot = self.slot_of(addr)?;
        let epoch = self.vertices[slot as usize].epoch;
        self.senders[self.next_sender] = Some((*addr, slot, epoch));
        self.next_sender = (self.next_sender + 1) % SENDER_SLOTS;
        Some(epoch)
    }

    /// Whether the record held for `addr` is of `version` or newer (a copy of `version`
    /// would be [`Applied::Stale`]).
    pub fn holds_version(&self, addr: &SocketAddr, version: (u64, u64)) -> bool {
        self.holds_version_in(self.slot_of(addr), version)
    }

    /// Reads what applying `records` will read, for the effect on the cache alone: each
    /// record's slot and held version and, for a newer version, the slots of the links it
    /// adds. The lookups do not depend on each other, so the processor overlaps their
    /// misses (each is a chain of dependent reads, index bucket, slot, record, into one
    /// node's state of many in a large simulation); the pass that then handles the
    /// records one by one finds them in cache. The value only keeps the reads.
    pub fn warm<'a>(&self, records: impl Iterator<Item = &'a Record>) -> u64 {
        let mut acc = 0;
        for record in records {
            let Some(slot) = self.slot_of(&record.origin.addr) else {
                continue;
            };
            acc ^= self.vertices[slot as usize].epoch;
            let Some(held) = self.slots[slot as usize].record() else {
                continue;
            };
            if held.version() >= record.version() {
                continue;
            }
            let added = match &record.body_form {
                BodyForm::Unresolved(diff) => &diff.added[..],
                _ => &record.body.adjacency[..],
            };
            for neighbour in added {
                if held.body.adjacency.iter().any(|n| n.addr == neighbour.addr) {
                    continue;
                }
                if let Some(target) = self.slot_of(&neighbour.addr) {
                    let t = target as usize;
                    acc ^= self.vertices[t].epoch ^ self.incoming[t].len() as u64;
                }
            }
        }
        acc
    }

    /// [`RecordStore::holds_version`] at the slot [`RecordStore::slot_of`] answered.
    pub(crate) fn holds_version_in(&self, slot: Option<u32>, version: (u64, u64)) -> bool {
        slot.and_then(|s| self.slots[s as usize].record())
            .is_some_and(|held| held.version() >= version)
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&Record> {
        self.slot_of(addr)
            .and_then(|s| self.slots[s as usize].record())
    }

    /// Stores `record` if it is newer than the held version of its address, resolving a
    /// services delta against the held version first: the delta must start at the held
    /// `services_seq` of the same epoch (or at 0, the empty set, when none is held), or the
    /// record is a [`Applied::Gap`] and nothing changes. The held set is changed in place
    /// when nothing else shares it, so a delta costs in proportion to its VIPs. A version
    /// a tombstone covers is refused; a newer one replaces the tombstone.
    pub fn apply(&mut self, record: Record) -> Applied {
        let slot = self.slot_of(&record.origin.addr);
        self.apply_in(slot, record)
    }

    /// [`RecordStore::apply`] for a caller that looked up the slot of the record's address
    /// already (`slot`: what [`RecordStore::slot_of`] answered, with nothing interned or
    /// freed since): the receipt of a copy looks the address up once.
    pub(crate) fn apply_in(&mut self, slot: Option<u32>, mut record: Record) -> Applied {
        let addr = record.origin.addr;
        debug_assert_eq!(slot, self.slot_of(&addr));
        let held = slot.and_then(|s| self.slots[s as usize].record());
        if held.is_some_and(|h| h.version() >= record.version()) {
            return Applied::Stale;
        }
        if self
            .tombstones
            .get(&addr)
            .is_some_and(|tomb| tomb.covers(record.version()))
        {
            return Applied::Tombstoned;
        }
        if record.services_seq > record.seq
            || record
                .delta
                .as_ref()
                .is_some_and(|d| d.seq != record.services_seq || !d.is_well_formed())
        {
            return Applied::Invalid;
        }
        let same_epoch = held.filter(|h| h.origin.epoch == record.origin.epoch);
        // What the held record (of any epoch) counts against `max_stored_backends`.
        let old_weight = held.map_or(0, weight);
        // The body: a diff must start at the held version (0, the empty body, if none).
        let held_seq = same_epoch.map_or(0, |h| h.seq);
        let held_body = same_epoch.map_or_else(Arc::default, |h| h.body.clone());
        match &record.body_form {
            BodyForm::Full => {}
            BodyForm::From { seq, .. } if *seq != held_seq => return Applied::Gap,
            BodyForm::Unresolved(diff) if diff.base != held_seq => return Applied::Gap,
            BodyForm::From { base, .. } => {
                // Handed over in memory (the simulator): the body is already the result
                // of the diff, and the base the same version as the one held here.
                debug_assert_eq!(**base, *held_body);
            }
            BodyForm::Unresolved(diff) => match diff.apply(&held_body) {
                Some(body) => record.body = Arc::new(body),
                None => return Applied::Invalid,
            },
        }
        if record.body.adjacency.len() > self.max_adjacency {
            return Applied::Invalid;
        }
        // Sent on as the change from the version held here, which its neighbours hold too
        // when versions flow in order.
        record.body_form = match same_epoch {
            Some(_) => BodyForm::From {
                seq: held_seq,
                base: held_body,
            },
            None => BodyForm::Full,
        };
        let held_services_seq = same_epoch.map_or(0, |h| h.services_seq);
        match record.delta.clone() {
            Some(delta) if delta.base != held_services_seq => return Applied::Gap,
            Some(delta) => {
                // Backends and task endpoints share the bound.
                let count = same_epoch.map_or(0, |held| {
                    let removed: usize = delta
                        .vips
                        .iter()
                        .filter_map(|(vip, _)| held.services.vips.get(vip).map(|b| b.len()))
                        .sum();
                    let removed_tasks: usize = delta
                        .tasks
                        .iter()
                        .filter_map(|(name, _)| held.tasks.names.get(name).map(|e| e.len()))
                        .sum();
                    held.services.backend_count() - removed + held.tasks.endpoint_count()
                        - removed_tasks
                });
                let new_weight = count + delta.backend_count() + delta.endpoint_count();
                if new_weight > self.max_backends {
                    return Applied::Invalid;
                }
                if self.over_stored_bound(slot, old_weight, new_weight) {
                    return Applied::Full;
                }
                let (mut set, mut tasks) = match slot {
                    Some(slot) if same_epoch.is_some() => {
                        let held = self.slots[slot as usize].record_mut().expect("held");
                        match Arc::get_mut(held) {
                            // The held record is replaced below: its sets move to the new
                            // one (unshared, so a delta changes them in place).
                            Some(held) => (
                                std::mem::replace(&mut held.services, VipSet::shared_empty()),
                                std::mem::replace(&mut held.tasks, TaskSet::shared_empty()),
                            ),
                            // Shared with other nodes: the sets are copied on write.
                            None => (held.services.clone(), held.tasks.clone()),
                        }
                    }
                    _ => (VipSet::shared_empty(), TaskSet::shared_empty()),
                };
                if !delta.vips.is_empty() {
                    delta.apply_to(Arc::make_mut(&mut set));
                }
                if !delta.tasks.is_empty() {
                    delta.apply_tasks_to(Arc::make_mut(&mut tasks));
                }
                record.services = set;
                record.tasks = tasks;
            }
            None => {
                let new_weight = weight(&record);
                if new_weight > self.max_backends {
                    return Applied::Invalid;
                }
                if self.over_stored_bound(slot, old_weight, new_weight) {
                    return Applied::Full;
                }
                // Unchanged services: keep sharing the held sets, and forward the version
                // as "unchanged" rather than in full.
                if let Some(h) = same_epoch.filter(|h| h.services_seq == record.services_seq) {
                    record.services = h.services.clone();
                    record.tasks = h.tasks.clone();
                    record.delta = Some(Arc::new(ServicesDelta::unchanged(record.services_seq)));
                }
            }
        }
        if self.tombstones.contains_key(&addr) {
            if self.in_use() >= self.max_slots && slot.is_none() {
                return Applied::Full;
            }
            self.tombstones.remove(&addr);
        }
        let slot = match slot {
            Some(slot) => {
                self.raise_epoch(slot, record.origin.epoch);
                slot
            }
            None => match self.intern(record.origin) {
                Some(slot) => slot,
                None => return Applied::Full,
            },
        };
        self.replace_edges(slot, &record.body.adjacency);
        self.touch(slot);
        let bucket = bucket_of(&record.origin.addr);
        self.buckets[bucket] ^= version_hash(&record.origin.addr, record.version());
        // The held record's sets may have moved into the new one (a delta applied in
        // place): what it counted is `old_weight`, taken before.
        self.stored_backends = self.stored_backends - old_weight + weight(&record);
        let stored = match std::mem::take(&mut record.held).0 {
            Some(copy) if copy.is_stored_form_of(&record) => copy,
            _ => Arc::new(record.in_full()),
        };
        record.held = HeldCopy(Some(stored.clone()));
        let previous = self.slots[slot as usize].replace_record(stored);
        if let Some(p) = &previous {
            self.buckets[bucket] ^= version_hash(&p.origin.addr, p.version());
        }
        Applied::New {
            previous: previous.map(|p| (p.origin, p.body.clone())),
            forward: Box::new(record),
            slot,
        }
    }

    /// Resolves `adjacency` into `slot`'s edges and keeps `incoming` in step. Most versions
    /// change one link of five or six: a neighbour the held record lists too keeps its
    /// resolved slot (no index lookup), and only the targets that come or go have their
    /// incoming lists touched (each is a cache miss into another slot's memory).
    fn replace_edges(&mut self, slot: u32, adjacency: &[NodeId]) {
        let s = slot as usize;
        let old = std::mem::take(&mut self.vertices[s].edges);
        // The held record's adjacency lines up with its edges when every neighbour was
        // resolved and none was freed since (then the lengths agree): its slots can be
        // reused by address. Otherwise (or beyond 64 links, the width of the marks below)
        // everything is looked up.
        let held = self.slots[s].record().map(|r| r.body.clone());
        let reusable = held.filter(|body| {
            body.adjacency.len() == old.len() && old.len() <= 64 && adjacency.len() <= 64
        });
        // Bit j: old edge j is kept; bit i: new edge i is a kept one.
        let (mut kept_old, mut kept_new) = (0u64, 0u64);
        let mut edges = Edges::new();
        for &neighbour in adjacency {
            let reused = reusable.as_ref().and_then(|body| {
                body.adjacency
                    .iter()
                    .enumerate()
                    .position(|(j, id)| kept_old >> j & 1 == 0 && id.addr == neighbour.addr)
            });
            let edge = match reused {
                Some(j) => {
                    kept_old |= 1 << j;
                    kept_new |= 1 << edges.len();
                    // Named at the same epoch as before: the mark stands (it is kept in
                    // step as the target's epoch rises).
                    let before = reusable.as_ref().map(|body| body.adjacency[j].epoch);
                    Some(if before == Some(neighbour.epoch) {
                        old[j]
                    } else {
                        self.edge_to(old[j].target(), neighbour.epoch)
                    })
                }
                None => self
                    .slot_for(neighbour)
                    .map(|target| self.edge_to(target, neighbour.epoch)),
            };
            match edge {
                Some(edge) => edges.push(edge),
                None => self.dropped_edges += 1,
            }
        }
        let kept = |marks: u64, i: usize| i < 64 && marks >> i & 1 == 1;
        // Incoming lists change by the targets that went and those that came.
        for (j, target) in old.iter().map(|e| e.target()).enumerate() {
            if !kept(kept_old, j) {
                let sources = &mut self.incoming[target as usize];
                if let Some(at) = sources.iter().position(|&x| x == slot) {
                    sources.swap_remove(at);
                }
            }
        }
        for (i, target) in edges.iter().map(|e| e.target()).enumerate() {
            if !kept(kept_new, i) {
                self.incoming[target as usize].push(slot);
            }
        }
        self.vertices[s].edges = edges;
    }

    /// An edge to `target` from a record that names it at `epoch`.
    fn edge_to(&self, target: u32, epoch: u64) -> Edge {
        Edge::new(target, self.vertices[target as usize].epoch == epoch)
    }

    /// Frees `slot` (not the caller's own): its record, if any, leaves the store and
    /// becomes a tombstone kept `until`; its edges, and every edge into it, leave the
    /// graph (the sources are marked touched). The slot goes on the free list. Returns
    /// the record it held.
    ///
    /// The caller frees only a slot its reachability search does not reach (so no tree
    /// edge involves it) and tells its [`crate::reachability::Reachability`] with
    /// `release`.
    pub fn free(&mut self, slot: u32, until: Time) -> Option<Arc<Record>> {
        let s = slot as usize;
        if s >= self.slots.len() || self.is_free[s] {
            return None;
        }
        let addr = self.slots[s].addr();
        for entry in &mut self.senders {
            if entry.is_some_and(|(_, cached, _)| cached == slot) {
                *entry = None;
            }
        }
        let record = self.slots[s].take_record();
        self.stored_backends -= record.as_deref().map_or(0, weight);
        if let Some(r) = &record {
            self.buckets[bucket_of(&addr)] ^= version_hash(&addr, r.version());
            let tomb = Tombstone {
                epoch: r.origin.epoch,
                seq: r.seq,
                until,
            };
            self.tombstones.insert(addr, tomb);
            self.tombstone_order.push_back((addr, tomb));
            while self.tombstones.len() > self.max_slots {
                self.pop_oldest_tombstone();
            }
        }
        for target in std::mem::take(&mut self.vertices[s].edges)
            .iter()
            .map(|e| e.target())
        {
            let sources = &mut self.incoming[target as usize];
            if let Some(at) = sources.iter().position(|&x| x == slot) {
                sources.swap_remove(at);
            }
        }
        let mut sources = std::mem::take(&mut self.incoming[s]).to_vec();
        sources.sort_unstable();
        sources.dedup();
        for source in sources {
            self.vertices[source as usize]
                .edges
                .retain(|e| e.target() != slot);
            self.touch(source);
        }
        self.vertices[s].epoch = 0;
        let slots = &self.slots;
        self.index.remove(&addr, |s| slots[s as usize].addr());
        self.is_free[s] = true;
        self.free.push(slot);
        record
    }

    /// Drops the oldest tombstone still in force.
    fn pop_oldest_tombstone(&mut self) {
        while let Some((addr, tomb)) = self.tombstone_order.pop_front() {
            if self.tombstones.get(&addr) == Some(&tomb) {
                self.tombstones.remove(&addr);
                return;
            }
        }
    }

    /// Drops the tombstones whose time ran out by `now`; returns how many.
    pub fn expire_tombstones(&mut self, now: Time) -> usize {
        let mut expired = 0;
        while let Some(&(addr, tomb)) = self.tombstone_order.front() {
            if tomb.until > now && self.tombstones.get(&addr) == Some(&tomb) {
                break;
            }
            self.tombstone_order.pop_front();
            if tomb.until <= now && self.tombstones.get(&addr) == Some(&tomb) {
                self.tombstones.remove(&addr);
                expired += 1;
            }
        }
        expired
    }

    /// When the oldest tombstone expires.
    pub fn next_tombstone_expiry(&self) -> Option<Time> {
        self.tombstone_order
            .iter()
            .find(|(addr, tomb)| self.tombstones.get(addr) == Some(tomb))
            .map(|(_, tomb)| tomb.until)
    }

    /// Checks the invariants of the module doc; `Err` names the first one broken.
    pub fn check(&self) -> Result<(), String> {
        if self.in_use() > self.max_slots {
            return Err(format!(
                "{} slots in use, over {}",
                self.in_use(),
                self.max_slots
            ));
        }
        if self.tombstones.len() > self.max_slots {
            return Err(format!(
                "{} tombstones, over {}",
                self.tombstones.len(),
                self.max_slots
            ));
        }
        if self.index.len() != self.in_use() {
            return Err(format!(
                "index holds {} addresses, {} slots in use",
                self.index.len(),
                self.in_use()
            ));
        }
        for &(addr, slot, epoch) in self.senders.iter().flatten() {
            if self.is_free(slot) || self.slots.get(slot as usize).map(Slot::addr) != Some(addr) {
                return Err(format!(
                    "remembered sender {addr} names slot {slot}, not its own"
                ));
            }
            if self.vertices[slot as usize].epoch != epoch {
                return Err(format!(
                    "remembered sender {addr} at epoch {epoch}, its slot at {}",
                    self.vertices[slot as usize].epoch
                ));
            }
        }
        let mut buckets = [0u64; SUMMARY_BUCKETS];
        for (i, slot) in self.slots.iter().enumerate() {
            let v = &self.vertices[i];
            if self.is_free[i] {
                if slot.record().is_some() || !v.edges.is_empty() || !self.incoming[i].is_empty() {
                    return Err(format!("free slot {i} holds a record or edges"));
                }
                continue;
            }
            if self.slot_of(&slot.addr()) != Some(i as u32) {
                return Err(format!("slot {i} ({}) is not indexed", slot.addr()));
            }
            for target in v.edges.iter().map(|e| e.target()) {
                if self.is_free(target) {
                    return Err(format!("slot {i} has an edge to free slot {target}"));
                }
                let from_here = v.edges.iter().filter(|e| e.target() == target).count();
                let listed = self.incoming[target as usize]
                    .iter()
                    .filter(|&&x| x == i as u32)
                    .count();
                if from_here != listed {
                    return Err(format!("incoming of {target} disagrees with edges of {i}"));
                }
            }
            for &source in &self.incoming[i] {
                if !self.vertices[source as usize]
                    .edges
                    .iter()
                    .any(|e| e.target() == i as u32)
                {
                    return Err(format!("incoming of {i} names {source}, which has no edge"));
                }
            }
            if let Some(r) = slot.record() {
                if r.origin.addr != slot.addr() {
                    return Err(format!("slot {i} holds a record of {}", r.origin.addr));
                }
                // The edges are the record's adjacency resolved, in its order (a neighbour
                // left unresolved, or freed since, is missing), each marked current
                // exactly when the record names its target's newest epoch.
                let mut listed = r.body.adjacency.iter();
                for edge in &v.edges {
                    let target = edge.target() as usize;
                    let addr = self.slots[target].addr();
                    let Some(named) = listed.find(|n| n.addr == addr) else {
                        return Err(format!("an edge of slot {i} is not in its record"));
                    };
                    if edge.current() != (named.epoch == self.vertices[target].epoch) {
                        return Err(format!(
                            "the edge of slot {i} to {target} is marked {}, its record names \
                             epoch {} and the target's is {}",
                            edge.current(),
                            named.epoch,
                            self.vertices[target].epoch
                        ));
                    }
                }
                if self
                    .tombstones
                    .get(&slot.addr())
                    .is_some_and(|t| t.covers(r.version()))
                {
                    return Err(format!(
                        "held record of {} is under a tombstone",
                        slot.addr()
                    ));
                }
                buckets[bucket_of(&slot.addr())] ^= version_hash(&slot.addr(), r.version());
            }
        }
        if buckets != *self.buckets {
            return Err("summary buckets do not match the held versions".into());
        }
        let counted: usize = self.records().map(weight).sum();
        if counted != self.stored_backends {
            return Err(format!(
                "the records hold {counted} backends and endpoints, {} counted",
                self.stored_backends
            ));
        }
        // Only the own record may take the sum past the bound.
        let own = self
            .slots
            .first()
            .and_then(|s| s.record())
            .map_or(0, weight);
        if counted - own > self.max_stored_backends {
            return Err(format!(
                "other records hold {} backends and endpoints, over {}",
                counted - own,
                self.max_stored_backends
            ));
        }
        Ok(())
    }

    /// `{addr → version}` of every held record, in slot order.
    pub fn digest(&self) -> Vec<DigestEntry> {
        self.slots
            .iter()
            .filter_map(Slot::record)
            .map(|r| DigestEntry {
                addr: r.origin.addr,
                epoch: r.origin.epoch,
                seq: r.seq,
            })
            .collect()
    }

    /// The store's summary in `of` buckets (a power of two, at most [`SUMMARY_BUCKETS`]):
    /// per bucket the XOR of the hashes of the versions held for the addresses in it. Two
    /// stores holding the same versions have the same summary; one differing version
    /// changes its bucket (up to hash collisions, which the next digest exchange, with a
    /// new change, or a full digest on a new link, repairs).
    pub fn summary(&self, of: usize) -> Vec<u64> {
        let of = of.clamp(1, SUMMARY_BUCKETS);
        let mut folded = vec![0u64; of];
        for (i, hash) in self.buckets.iter().enumerate() {
            folded[i % of] ^= hash;
        }
        folded
    }

    /// The digest entries of the held records whose address falls in one of `buckets` of a
    /// summary in `of` buckets.
    pub fn digest_within(&self, of: usize, buckets: &[u16]) -> Vec<DigestEntry> {
        let wanted = bucket_set(of, buckets);
        self.digest()
            .into_iter()
            .filter(|e| wanted[bucket_of(&e.addr) % wanted.len()])
            .collect()
    }

    /// [`RecordStore::reconcile`] restricted to the addresses in `buckets` of a summary in
    /// `of` buckets: what the peer lacks there, and whether it holds anything newer there.
    pub fn reconcile_within(
        &self,
        theirs: &[DigestEntry],
        of: usize,
        buckets: &[u16],
    ) -> (Vec<Record>, bool) {
        let wanted = bucket_set(of, buckets);
        let inside = |addr: &SocketAddr| wanted[bucket_of(addr) % wanted.len()];
        let theirs: Vec<DigestEntry> = theirs.iter().filter(|e| inside(&e.addr)).cloned().collect();
        let (missing, newer) = self.reconcile(&theirs);
        let missing = missing
            .into_iter()
            .filter(|r| inside(&r.origin.addr))
            .collect();
        (missing, newer)
    }

    /// The tombstones (as digest lines) that cover lines of a peer's digest: versions the
    /// peer still holds of records this store collected.
    pub fn collected_in(&self, theirs: &[DigestEntry]) -> Vec<DigestEntry> {
        theirs
            .iter()
            .filter_map(|e| {
                let tomb = self.tombstones.get(&e.addr)?;
                tomb.covers((e.epoch, e.seq)).then_some(DigestEntry {
                    addr: e.addr,
                    epoch: tomb.epoch,
                    seq: tomb.seq,
                })
            })
            .collect()
    }

    /// Compares a peer's digest with this store: the records the peer lacks (held here in a
    /// newer version, or absent from the digest), and whether the peer holds anything newer.
    pub fn reconcile(&self, theirs: &[DigestEntry]) -> (Vec<Record>, bool) {
        let mut seen = vec![false; self.slots.len()];
        let mut they_have_newer = false;
        let mut missing = Vec::new();
        for entry in theirs {
            let their_version = (entry.epoch, entry.seq);
            if self
                .tombstones
                .get(&entry.addr)
                .is_some_and(|t| t.covers(their_version))
            {
                // Collected here: not something to ask for.
                continue;
            }
            match self.slot_of(&entry.addr) {
                Some(slot) => {
                    seen[slot as usize] = true;
                    match self.slots[slot as usize].shared_record() {
                        Some(r) if r.version() > their_version => missing.push(sent_in_full(r)),
                        Some(r) if r.version() < their_version => they_have_newer = true,
                        Some(_) => {}
                        None => they_have_newer = true,
                    }
                }
                None => they_have_newer = true,
            }
        }
        for (slot, s) in self.slots.iter().enumerate() {
            if let (false, Some(r)) = (seen[slot], s.shared_record()) {
                missing.push(sent_in_full(r));
            }
        }
        (missing, they_have_newer)
    }
}

/// Fine buckets the store keeps for summaries; a summary folds them into fewer.
pub const SUMMARY_BUCKETS: usize = 256;

/// The summary size for a store of `len` records: about eight records per bucket, a power
/// of two from 1 to [`SUMMARY_BUCKETS`].
pub fn summary_size(len: usize) -> usize {
    (len / 8).next_power_of_two().clamp(1, SUMMARY_BUCKETS)
}

/// Most buckets of a periodic summary: 128 bytes, whatever the store's size. Stores in
/// step (the common case) exchange no more; where some differ, the finer summary of just
/// those follows, then the digest entries of the finest that still differ.
pub const COARSE_SUMMARY: usize = 16;

/// An address as 18 bytes (IPv4 mapped into IPv6, then the port), the same on every node.
fn addr_bytes(addr: &SocketAddr) -> [u8; 18] {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    let mut bytes = [0u8; 18];
    bytes[..16].copy_from_slice(&ip);
    bytes[16..].copy_from_slice(&addr.port().to_be_bytes());
    bytes
}

/// The fine bucket of an address (the same on every node).
/// What a record counts against the store's `max_stored_backends`: its (VIP, backend)
/// pairs and task endpoints.
fn weight(record: &Record) -> usize {
    record.services.backend_count() + record.tasks.endpoint_count()
}

fn bucket_of(addr: &SocketAddr) -> usize {
    (xxh3_64_with_seed(&addr_bytes(addr), 0x6d6d) as usize) % SUMMARY_BUCKETS
}

/// The hash of one held version.
fn version_hash(addr: &SocketAddr, (epoch, seq): (u64, u64)) -> u64 {
    let mut bytes = [0u8; 34];
    bytes[..18].copy_from_slice(&addr_bytes(addr));
    bytes[18..26].copy_from_slice(&epoch.to_be_bytes());
    bytes[26..].copy_from_slice(&seq.to_be_bytes());
    xxh3_64_with_seed(&bytes, 0x7673)
}

/// Membership of the buckets `buckets` of a summary in `of` (clamped) buckets.
pub(crate) fn bucket_set(of: usize, buckets: &[u16]) -> Vec<bool> {
    let of = of.clamp(1, SUMMARY_BUCKETS);
    let mut set = vec![false; of];
    for &b in buckets {
        if let Some(slot) = set.get_mut(usize::from(b)) {
            *slot = true;
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(port: u16, epoch: u64) -> NodeId {
        NodeId::new(([10, 0, 0, 1], port).into(), epoch)
    }

    fn rec(origin: NodeId, seq: u64, adjacency: Vec<NodeId>) -> Record {
        Record::with_links(origin, seq, adjacency)
    }

    /// A slot is one per (node, address) pair: its address or a shared stored record
    /// (a record inline made it 144 bytes, an address beside a pointer 24), and its
    /// vertex keeps five edges inline.
    #[test]
    fn a_slot_is_an_address_or_a_pointer_and_a_vertex_holds_five_edges_inline() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        // Five edges inline, 4 bytes each (with the epoch they named, 12; padded, 16).
        assert_eq!(std::mem::size_of::<Edge>(), 4);
        assert_eq!(std::mem::size_of::<Vertex>(), 32);
        assert_eq!(std::mem::size_of::<Incoming>(), 24);
        let mut slot = Slot::known(id(1, 1).addr);
        assert!(slot.record().is_none());
        let first = Arc::new(rec(id(1, 1), 1, vec![]));
        assert!(slot.replace_record(first).is_none());
        let second = Arc::new(rec(id(1, 1), 2, vec![]));
        assert_eq!(slot.replace_record(second).map(|r| r.seq), Some(1));
        assert_eq!(slot.take_record().map(|r| r.seq), Some(2));
        assert_eq!(slot.addr(), id(1, 1).addr, "the address stays");
        assert!(slot.record().is_none());
    }

    /// A slot gives back exactly the address it was made with: IPv4 inline, IPv6 with its
    /// flow information and scope (both take part in its equality), and the index finds
    /// each.
    #[test]
    fn a_slot_keeps_its_address_exactly() {
        let v6 = |flow, scope| {
            SocketAddr::V6(std::net::SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                5000,
                flow,
                scope,
            ))
        };
        let addrs = [
            SocketAddr::from(([10, 0, 0, 1], 5000)),
            SocketAddr::from(([10, 0, 0, 1], 5001)),
            SocketAddr::from(([255, 255, 255, 255], 65535)),
            v6(0, 0),
            v6(0, 2),
            v6(7, 2),
        ];
        let mut store = RecordStore::new(100);
        for (i, &addr) in addrs.iter().enumerate() {
            assert_eq!(Slot::known(addr).addr(), addr);
            let slot = store.intern(NodeId::new(addr, 1)).unwrap();
            assert_eq!(slot, i as u32, "{addr} is a new address");
        }
        for (i, addr) in addrs.iter().enumerate() {
            assert_eq!(store.slot_of(addr), Some(i as u32));
            assert_eq!(store.slots()[i].addr(), *addr);
        }
    }

    /// A version forwarded in memory is stored as the forwarder's copy (one per version
    /// in a simulation, not one per node); a decoded one, or one whose sets differ, is
    /// stored as a copy of its own.
    #[test]
    fn a_forwarded_version_shares_the_forwarders_stored_copy() {
        let origin = id(7, 1);
        let mut first = RecordStore::new(16);
        let Applied::New { forward, slot, .. } = first.apply(rec(origin, 1, vec![id(8, 1)])) else {
            panic!("stored");
        };
        let held = first.slots()[slot as usize]
            .shared_record()
            .cloned()
            .expect("held");
        assert!(forward
            .held
            .0
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &held)));
        let mut second = RecordStore::new(16);
        let Applied::New { slot, .. } = second.apply((*forward).clone()) else {
            panic!("stored");
        };
        let shared = second.slots()[slot as usize]
            .shared_record()
            .cloned()
            .expect("held");
        assert!(
            Arc::ptr_eq(&shared, &held),
            "the forwarder's copy is shared"
        );
        // Through the wire: no copy to share.
        let bytes = postcard::to_allocvec(&*forward).expect("encodes");
        let decoded: Record = postcard::from_bytes(&bytes).expect("decodes");
        let mut third = RecordStore::new(16);
        let Applied::New { slot, .. } = third.apply(decoded) else {
            panic!("stored");
        };
        let own = third.slots()[slot as usize]
            .shared_record()
            .cloned()
            .expect("held");
        assert!(!Arc::ptr_eq(&own, &held));
        assert_eq!(*own, *held, "the same version all the same");
        // Other sets than the forwarder's: its own copy.
        let mut other = (*forward).clone();
        other.services = Arc::new(VipSet::new());
        let mut fourth = RecordStore::new(16);
        let Applied::New { slot, .. } = fourth.apply(other) else {
            panic!("stored");
        };
        let own = fourth.slots()[slot as usize]
            .shared_record()
            .cloned()
            .expect("held");
        assert!(!Arc::ptr_eq(&own, &held));
    }

    #[test]
    fn a_senders_epoch_is_the_known_epoch_also_after_its_slot_is_freed_and_reused() {
        let mut store = RecordStore::new(16);
        store.intern(id(0, 1)).unwrap();
        // More senders than are remembered, twice: hits, misses and replaced entries.
        for round in 0..2 {
            for port in 1..=12 {
                store.intern(id(port, u64::from(port) + round));
                assert_eq!(
                    store.sender_epoch(&id(port, 0).addr),
                    Some(u64::from(port) + round)
                );
                assert_eq!(
                    store.sender_epoch(&id(port, 0).addr),
                    store.known_epoch(&id(port, 0).addr)
                );
            }
        }
        assert_eq!(store.sender_epoch(&id(99, 0).addr), None);
        // A remembered sender's epoch rises, first-hand or through a record.
        assert_eq!(store.sender_epoch(&id(11, 0).addr), Some(12));
        store.intern(id(11, 20)).unwrap();
        assert_eq!(store.sender_epoch(&id(11, 0).addr), Some(20));
        let body = RecordBody {
            adjacency: vec![id(0, 1)],
            agents: vec![],
        };
        assert!(matches!(
            store.apply(Record::new(id(11, 21), 1, body)),
            Applied::New { .. }
        ));
        assert_eq!(store.sender_epoch(&id(11, 0).addr), Some(21));
        store.check().unwrap();
        // Port 12's slot is freed and goes to a new address: the old one is unknown again
        // and the new one has its own epoch.
        let slot = store.slot_of(&id(12, 0).addr).unwrap();
        store.free(slot, Time::from_millis(60_000));
        assert_eq!(store.sender_epoch(&id(12, 0).addr), None);
        assert_eq!(store.intern(id(40, 7)), Some(slot));
        assert_eq!(store.sender_epoch(&id(40, 0).addr), Some(7));
        assert_eq!(store.sender_epoch(&id(12, 0).addr), None);
        store.check().unwrap();
    }

    #[test]
    fn the_size_bound_holds_for_the_largest_addresses_in_every_body_form() {
        use std::net::{Ipv6Addr, SocketAddrV6};
        // The longest encodings: IPv6 with flow info and scope id, every number at its max.
        let wide = |i: u16| {
            let ip = Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, i);
            NodeId::new(
                SocketAddr::V6(SocketAddrV6::new(ip, u16::MAX, u32::MAX, u32::MAX)),
                u64::MAX,
            )
        };
        let agents = |n: u16| -> Vec<IpAddr> {
            (0..n)
                .map(|i| IpAddr::V6(Ipv6Addr::new(0xffff, 0, 0, 0, 0, 0, 0xffff, i)))
                .collect()
        };
        // With agents, and with links only (the tighter case for the per-address bound).
        let body = |from: u16, n: u16| RecordBody {
            adjacency: (from..from + n).map(wide).collect(),
            agents: agents(n % 7),
        };
        for n in [0, 1, 6, 40, 200] {
            let unchanged = |form: BodyForm, body: RecordBody| Record {
                services_seq: u64::MAX,
                delta: Some(Arc::new(ServicesDelta::unchanged(u64::MAX))),
                body_form: form,
                ..Record::new(wide(u16::MAX), u64::MAX, body)
            };
            let base = Arc::new(body(1000, n));
            let diff = BodyDiff::between(u64::MAX, &base, &body(0, n));
            for record in [
                unchanged(BodyForm::Full, body(0, n)),
                unchanged(
                    BodyForm::From {
                        seq: u64::MAX,
                        base: base.clone(),
                    },
                    body(0, n),
                ),
                unchanged(BodyForm::Unresolved(Arc::new(diff)), RecordBody::default()),
            ] {
                let size = postcard::experimental::serialized_size(&record).unwrap();
                let bound = record.encoded_size_bound().expect("services unchanged");
                assert!(size <= bound, "{n} addresses: {size} bytes, bound {bound}");
            }
        }
        // Services in full or as a delta are only sized by encoding them.
        assert_eq!(rec(id(1, 1), 1, vec![]).encoded_size_bound(), None);
    }

    #[test]
    fn a_reserved_store_learns_that_many_hosts_without_moving_its_tables() {
        let hosts = 300;
        let mut store = RecordStore::new(1_000);
        store.reserve(hosts);
        let before = (
            store.slots.as_ptr(),
            store.vertices.as_ptr(),
            store.incoming.as_ptr(),
        );
        for i in 0..hosts {
            let addr = SocketAddr::from(([10, 1, (i / 256) as u8, (i % 256) as u8], 61420));
            store.intern(NodeId::new(addr, 1)).expect("room");
        }
        let after = (
            store.slots.as_ptr(),
            store.vertices.as_ptr(),
            store.incoming.as_ptr(),
        );
        assert_eq!(
            before, after,
            "a table grew (copied) while learning {hosts} hosts"
        );
        assert_eq!(store.slots.len(), hosts);
    }

    #[test]
    fn newer_versions_replace_older_ones_only() {
        let mut store = RecordStore::new(16);
        assert!(matches!(
            store.apply(rec(id(1, 1), 2, vec![])),
            Applied::New { previous: None, .. }
        ));
        assert_eq!(store.apply(rec(id(1, 1), 2, vec![])), Applied::Stale);
        assert_eq!(store.apply(rec(id(1, 1), 1, vec![])), Applied::Stale);
        assert!(matches!(
            store.apply(rec(id(1, 2), 0, vec![])),
            Applied::New {
                previous: Some(_),
                ..
            }
        ));
        assert_eq!(store.apply(rec(id(1, 1), 9, vec![])), Applied::Stale);
        assert_eq!(store.known_epoch(&id(1, 0).addr), Some(2));
    }

    fn services(vips: &[u8]) -> VipSet {
        use crate::vip::{Backend, Protocol, Vip, VipAddr};
        let mut set = VipSet::new();
        for &v in vips {
            let ip = IpAddr::from([10, 0, 0, v]);
            set.insert(
                Vip {
                    protocol: Protocol::Tcp,
                    addr: VipAddr::Ip(IpAddr::from([11, 0, 0, v])),
                    port: 80,
                },
                Backend {
                    ip,
                    port: 80,
                    agent: ip,
                    weight: 1,
                },
            );
        }
        set
    }

    fn with_delta(origin: NodeId, seq: u64, delta: ServicesDelta) -> Record {
        Record {
            services_seq: delta.seq,
            delta: Some(Arc::new(delta)),
            ..rec(origin, seq, vec![])
        }
    }

    /// A delta applies only on top of the services version it starts from (0, the empty
    /// set, when nothing is held), changes an unshared set in place, and anything else is a
    /// gap or invalid and changes nothing.
    #[test]
    fn deltas_apply_on_their_base_only() {
        let origin = id(1, 1);
        let mut store = RecordStore::new(16);
        let (a, b) = (services(&[1, 2, 3]), services(&[1, 3, 4]));
        // From nothing held: a delta from base 0 builds the set.
        let first = with_delta(origin, 1, ServicesDelta::between(&VipSet::new(), &a, 0, 1));
        assert!(matches!(store.apply(first), Applied::New { .. }));
        assert_eq!(*store.get(&origin.addr).unwrap().services, a);
        let held = Arc::as_ptr(&store.get(&origin.addr).unwrap().services);
        // A delta from a version not held is a gap.
        let skipped = with_delta(origin, 3, ServicesDelta::between(&a, &b, 2, 3));
        assert_eq!(store.apply(skipped), Applied::Gap);
        assert_eq!(store.get(&origin.addr).unwrap().seq, 1);
        // Adjacency only: still the same set, forwarded as "unchanged".
        assert!(matches!(
            store.apply(with_delta(origin, 2, ServicesDelta::unchanged(1))),
            Applied::New { .. }
        ));
        // From the held version: applied in place (the store holds the only reference).
        let next = with_delta(origin, 3, ServicesDelta::between(&a, &b, 1, 3));
        assert!(matches!(store.apply(next), Applied::New { .. }));
        let stored = store.get(&origin.addr).unwrap();
        assert_eq!((*stored.services).clone(), b);
        assert_eq!(Arc::as_ptr(&stored.services), held, "changed in place");
        assert_eq!(stored.services_seq, 3);
        // A new epoch starts from the empty set again.
        let reborn = id(1, 2);
        let stale_base = with_delta(reborn, 5, ServicesDelta::between(&b, &a, 3, 4));
        assert_eq!(store.apply(stale_base), Applied::Gap);
        // Inconsistent: services newer than the record, or past the backend bound.
        let ahead = Record {
            services_seq: 9,
            ..rec(origin, 4, vec![])
        };
        assert_eq!(store.apply(ahead), Applied::Invalid);
        store.set_max_backends(3);
        let grows = with_delta(
            origin,
            4,
            ServicesDelta::between(&b, &services(&[1, 3, 4, 5]), 3, 4),
        );
        assert_eq!(store.apply(grows), Applied::Invalid);
        assert_eq!(
            *store.get(&origin.addr).unwrap().services,
            b,
            "nothing changed"
        );
    }

    /// All stored records together hold at most `max_stored_backends` backends: a record
    /// (in full or as a delta) that would pass it is refused as full and changes nothing;
    /// one that shrinks, a replacement, a collection and the own record (slot 0) always
    /// get through, and the count follows every change.
    #[test]
    fn stored_backends_are_bounded_across_records() {
        let mut store = RecordStore::new(16);
        store.set_max_stored_backends(5);
        let own = id(1, 1);
        let with = |origin: NodeId, seq: u64, vips: &[u8]| Record {
            services: Arc::new(services(vips)),
            services_seq: seq,
            ..rec(origin, seq, vec![])
        };
        // The own record is interned first, as the node does, and is never refused.
        store.intern(own);
        assert!(matches!(
            store.apply(with(own, 1, &[1, 2])),
            Applied::New { .. }
        ));
        let (a, b) = (id(2, 1), id(3, 1));
        assert!(matches!(
            store.apply(with(a, 1, &[1, 2])),
            Applied::New { .. }
        ));
        assert_eq!(store.stored_backends(), 4);
        // Two more would make 6.
        assert_eq!(store.apply(with(b, 1, &[1, 2])), Applied::Full);
        assert!(store.get(&b.addr).is_none());
        assert!(matches!(store.apply(with(b, 1, &[1])), Applied::New { .. }));
        assert_eq!(store.stored_backends(), 5);
        // A delta that grows a record past the bound is refused and changes nothing.
        let grows = with_delta(
            a,
            2,
            ServicesDelta::between(&services(&[1, 2]), &services(&[1, 2, 3]), 1, 2),
        );
        assert_eq!(store.apply(grows), Applied::Full);
        assert_eq!(*store.get(&a.addr).unwrap().services, services(&[1, 2]));
        // One that shrinks makes room, in place.
        let shrinks = with_delta(
            a,
            2,
            ServicesDelta::between(&services(&[1, 2]), &services(&[2]), 1, 2),
        );
        assert!(matches!(store.apply(shrinks), Applied::New { .. }));
        assert_eq!(store.stored_backends(), 4);
        // A new incarnation replaces the old one's count.
        assert!(matches!(
            store.apply(with(id(3, 2), 1, &[4, 5])),
            Applied::New { .. }
        ));
        assert_eq!(store.stored_backends(), 5);
        // The own record may grow past the bound; others then wait for room.
        assert!(matches!(
            store.apply(with(own, 2, &[1, 2, 3, 4])),
            Applied::New { .. }
        ));
        assert_eq!(store.stored_backends(), 7);
        store.check().unwrap();
        assert_eq!(store.apply(with(id(4, 1), 1, &[1])), Applied::Full);
        // Collecting a record gives its backends back.
        let slot = store.slot_of(&a.addr).unwrap();
        store.free(slot, Time::from_millis(60_000));
        assert_eq!(store.stored_backends(), 6);
        store.check().unwrap();
    }

    /// Task records travel with the services: a delta changes only the names it lists,
    /// in place, and task endpoints count against the backend bound.
    #[test]
    fn task_records_ride_the_services_deltas_and_share_their_bound() {
        use crate::tasks::{TaskEndpoint, TaskName, TaskSet};
        let tasks = |names: &[&str]| {
            let mut t = TaskSet::new();
            for name in names {
                t.insert(
                    TaskName {
                        task: (*name).into(),
                        framework: "marathon".into(),
                    },
                    [TaskEndpoint::Address(IpAddr::from([10, 0, 0, 1]))],
                );
            }
            t
        };
        let origin = id(1, 1);
        let mut store = RecordStore::new(16);
        let a = services(&[1, 2]);
        let first = with_delta(
            origin,
            1,
            ServicesDelta::between(&VipSet::new(), &a, 0, 1)
                .with_tasks(&TaskSet::new(), &tasks(&["web", "db"])),
        );
        assert!(matches!(store.apply(first), Applied::New { .. }));
        assert_eq!(
            *store.get(&origin.addr).unwrap().tasks,
            tasks(&["web", "db"])
        );
        let held = Arc::as_ptr(&store.get(&origin.addr).unwrap().tasks);
        // One name goes, one comes; the VIPs stay: two entries travel.
        let change = ServicesDelta::between(&a, &a, 1, 2)
            .with_tasks(&tasks(&["web", "db"]), &tasks(&["web", "cache"]));
        assert_eq!((change.vips.len(), change.tasks.len()), (0, 2));
        assert!(!change.is_unchanged());
        let Applied::New { forward, .. } = store.apply(with_delta(origin, 2, change)) else {
            panic!("not applied");
        };
        assert_eq!(
            forward.delta.as_ref().unwrap().tasks.len(),
            2,
            "sent on as the delta"
        );
        let stored = store.get(&origin.addr).unwrap();
        assert_eq!(*stored.tasks, tasks(&["web", "cache"]));
        assert_eq!(Arc::as_ptr(&stored.tasks), held, "changed in place");
        assert_eq!(*stored.services, a);
        // Two backends and two endpoints: a third endpoint passes a bound of four only if
        // a backend goes.
        store.set_max_backends(4);
        let grows = ServicesDelta::between(&a, &a, 2, 3)
            .with_tasks(&tasks(&["web", "cache"]), &tasks(&["web", "cache", "x"]));
        assert_eq!(store.apply(with_delta(origin, 3, grows)), Applied::Invalid);
        let full = Record {
            services: Arc::new(services(&[1])),
            tasks: Arc::new(tasks(&["web", "cache", "x"])),
            services_seq: 3,
            ..rec(origin, 3, vec![])
        };
        assert!(matches!(store.apply(full.clone()), Applied::New { .. }));
        // In full on the wire, tasks included.
        let bytes = postcard::to_allocvec(&full).unwrap();
        let back: Record = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.tasks, full.tasks);
    }

    /// A body diff applies only on top of the version it starts from; a stored record is
    /// sent on as its change from the version held before it.
    #[test]
    fn body_diffs_apply_on_their_base_only() {
        use crate::body_diff::BodyDiff;
        let origin = id(1, 1);
        let mut store = RecordStore::new(16);
        let v1 = rec(origin, 1, vec![id(2, 1), id(3, 1)]);
        assert!(matches!(store.apply(v1.clone()), Applied::New { .. }));
        let v2_body = RecordBody {
            adjacency: vec![id(2, 1), id(4, 1)],
            ..Default::default()
        };
        let diff = |base: u64| Record {
            body: Arc::default(),
            body_form: BodyForm::Unresolved(Arc::new(BodyDiff::between(base, &v1.body, &v2_body))),
            ..rec(origin, 2, vec![])
        };
        assert_eq!(
            store.apply(diff(5)),
            Applied::Gap,
            "starts from a version not held"
        );
        let Applied::New { forward, .. } = store.apply(diff(1)) else {
            panic!("the diff fits the held version");
        };
        let stored = store.get(&origin.addr).unwrap();
        assert_eq!(*stored.body, v2_body);
        // Kept in full; forwarded as the change from the version held before.
        assert_eq!(stored.body_form, BodyForm::Full);
        assert!(
            matches!(&forward.body_form, BodyForm::From { seq: 1, base } if **base == *v1.body)
        );
        assert_eq!(forward.body, stored.body);
        // A diff that does not fit the held body is refused and changes nothing.
        // Version 3 as a diff from version 2.
        let from_2 = |diff: BodyDiff| Record {
            body: Arc::default(),
            body_form: BodyForm::Unresolved(Arc::new(BodyDiff { base: 2, ..diff })),
            ..rec(origin, 3, vec![])
        };
        let misfit = from_2(BodyDiff {
            removed: vec![id(9, 1)],
            ..Default::default()
        });
        assert_eq!(store.apply(misfit), Applied::Invalid);
        assert_eq!(store.get(&origin.addr).unwrap().seq, 2);
        // Past the neighbour bound once applied.
        store.set_max_adjacency(2);
        let grows = from_2(BodyDiff {
            added: vec![id(5, 1)],
            ..Default::default()
        });
        assert_eq!(store.apply(grows), Applied::Invalid);
    }

    #[test]
    fn store_is_bounded() {
        let mut store = RecordStore::new(2);
        assert!(matches!(
            store.apply(rec(id(1, 1), 1, vec![id(2, 1), id(3, 1)])),
            Applied::New { .. }
        ));
        assert_eq!(store.len(), 2);
        assert_eq!(store.dropped_edges, 1);
        assert_eq!(store.apply(rec(id(3, 1), 1, vec![])), Applied::Full);
    }

    /// Equal stores have equal summaries at every size; one newer version changes exactly
    /// its bucket, and the scoped digest exchange of that bucket brings the stores level.
    #[test]
    fn summaries_find_the_buckets_that_differ_and_scoped_reconcile_repairs_them() {
        let mut a = RecordStore::new(256);
        let mut b = RecordStore::new(256);
        for port in 1..=100 {
            a.apply(rec(id(port, 1), 1, vec![]));
            b.apply(rec(id(port, 1), 1, vec![]));
        }
        for of in [1, 2, 16, 256] {
            assert_eq!(a.summary(of), b.summary(of));
        }
        assert_eq!(summary_size(a.len()), 16);
        a.apply(rec(id(42, 1), 2, vec![]));
        let (sa, sb) = (a.summary(16), b.summary(16));
        let differ: Vec<u16> = (0..16u16)
            .filter(|&i| sa[usize::from(i)] != sb[usize::from(i)])
            .collect();
        assert_eq!(differ.len(), 1);
        // b sends the entries of the differing bucket; a answers with what b lacks there.
        let part = b.digest_within(16, &differ);
        assert!(part.len() < 100 && part.iter().any(|e| e.addr == id(42, 1).addr));
        let (for_b, b_has_newer) = a.reconcile_within(&part, 16, &differ);
        assert!(!b_has_newer);
        assert_eq!(
            for_b.len(),
            1,
            "only the newer version, nothing from other buckets"
        );
        for r in for_b {
            b.apply(r);
        }
        assert_eq!(a.summary(16), b.summary(16));
        // Replacing a version and going back to the same set gives the same summary.
        let mut c = RecordStore::new(256);
        for port in (1..=100).rev() {
            c.apply(rec(id(port, 1), if port == 42 { 2 } else { 1 }, vec![]));
        }
        assert_eq!(
            c.summary(256),
            a.summary(256),
            "independent of the order of arrival"
        );
    }

    /// A freed slot's record becomes a tombstone that refuses its version and older ones
    /// and is not asked for from a digest; a newer version replaces it; the slot is reused
    /// by the next new address, and an edge that named the freed address does not resolve
    /// to the new one.
    #[test]
    fn freeing_leaves_a_tombstone_and_reuses_the_slot() {
        let mut store = RecordStore::new(16);
        let (a, b, c, d) = (id(1, 1), id(2, 1), id(3, 1), id(4, 1));
        store.apply(rec(a, 1, vec![b]));
        store.apply(rec(c, 1, vec![b]));
        store.apply(rec(b, 3, vec![a]));
        let summary_before_b = {
            let mut s = RecordStore::new(16);
            s.apply(rec(a, 1, vec![b]));
            s.apply(rec(c, 1, vec![b]));
            s.summary(256)
        };
        let slot_b = store.slot_of(&b.addr).unwrap();
        let len = store.len();
        let t = Time::from_millis(1000 * 10);
        assert_eq!(store.free(slot_b, t).map(|r| r.seq), Some(3));
        store.check().unwrap();
        assert_eq!(store.summary(256), summary_before_b, "b left the summary");
        assert_eq!(store.get(&b.addr), None);
        assert_eq!(store.tombstones(), 1);
        assert!(store
            .vertices()
            .iter()
            .all(|v| v.edges.iter().all(|e| e.target() != slot_b)));
        // Late copies are refused; a digest naming them asks for nothing.
        assert_eq!(store.apply(rec(b, 3, vec![a])), Applied::Tombstoned);
        assert_eq!(store.apply(rec(b, 2, vec![a])), Applied::Tombstoned);
        let line = |id: NodeId, seq| DigestEntry {
            addr: id.addr,
            epoch: id.epoch,
            seq,
        };
        let (_, newer) = store.reconcile(&[line(a, 1), line(c, 1), line(b, 3)]);
        assert!(!newer);
        let (_, newer) = store.reconcile(&[line(a, 1), line(c, 1), line(b, 4)]);
        assert!(newer, "a newer version is asked for");
        // A new address takes the freed slot; a's edge to b does not resolve to it.
        store.apply(rec(d, 1, vec![]));
        assert_eq!(store.slot_of(&d.addr), Some(slot_b));
        assert_eq!(store.len(), len, "the slot vector did not grow");
        assert!(store.incoming(slot_b).is_empty());
        store.check().unwrap();
        // b restarts under a new epoch: accepted, the tombstone is gone.
        assert!(matches!(
            store.apply(rec(id(2, 2), 1, vec![])),
            Applied::New { previous: None, .. }
        ));
        assert_eq!(store.tombstones(), 0);
        store.check().unwrap();
    }

    #[test]
    fn tombstones_expire_and_are_bounded() {
        let mut store = RecordStore::new(4);
        for round in 0..10u16 {
            let origin = id(100 + round, 1);
            store.apply(rec(origin, 1, vec![]));
            let slot = store.slot_of(&origin.addr).unwrap();
            store.free(slot, Time::from_millis(1000 * (u64::from(round) + 5)));
            store.check().unwrap();
            assert!(store.tombstones() <= 4);
            assert_eq!(store.len(), 1, "one slot, reused every round");
        }
        assert_eq!(
            store.next_tombstone_expiry(),
            Some(Time::from_millis(1000 * 11))
        );
        assert_eq!(store.expire_tombstones(Time::from_millis(1000 * 12)), 2);
        assert_eq!(store.tombstones(), 2);
        // Expired: a late copy is stored again (and would be collected again).
        assert!(matches!(
            store.apply(rec(id(106, 1), 1, vec![])),
            Applied::New { .. }
        ));
        assert_eq!(store.apply(rec(id(109, 1), 1, vec![])), Applied::Tombstoned);
        assert_eq!(store.expire_tombstones(Time::from_millis(1000 * 100)), 2);
        assert_eq!(store.next_tombstone_expiry(), None);
        store.check().unwrap();
    }

    #[test]
    fn reconcile_finds_both_directions() {
        let mut a = RecordStore::new(16);
        let mut b = RecordStore::new(16);
        a.apply(rec(id(1, 1), 5, vec![]));
        a.apply(rec(id(2, 1), 1, vec![]));
        b.apply(rec(id(1, 1), 3, vec![]));
        b.apply(rec(id(3, 1), 1, vec![]));
        let (for_b, b_has_newer) = a.reconcile(&b.digest());
        assert_eq!(for_b.len(), 2);
        assert!(b_has_newer);
        for r in for_b {
            b.apply(r);
        }
        let (for_a, _) = b.reconcile(&a.digest());
        for r in for_a {
            a.apply(r);
        }
        assert_eq!(a.digest().len(), 3);
        let mut da = a.digest();
        let mut db = b.digest();
        da.sort_by_key(|e| e.addr);
        db.sort_by_key(|e| e.addr);
        assert_eq!(da, db);
    }
}
