//! Reachability: which nodes this node can reach over the adjacency graph.
//!
//! The graph is directed: node X has an edge to Y when X's newest record lists Y in its
//! active view, and the edge counts only if it names Y's newest known epoch. The reachable
//! set is what a breadth-first search from self finds. A crashed node still claims its old
//! edges, but once every live neighbour has dropped it no edge leads *to* it, so it becomes
//! unreachable.
//!
//! The search is kept up to date incrementally ([`Reachability::update`]): it keeps the tree
//! it found (each reached node's parent) and, from the slots whose edges or epoch changed
//! since the last update, repairs it. An edge that appears extends the search from its
//! target; a tree edge that disappears (or names an epoch that is no longer the newest) cuts
//! the subtree below it, whose nodes are then re-attached from any reached node with a valid
//! edge to them (the store keeps every slot's incoming edges) and searched on from there.
//! Work is proportional to the changed slots and the cut subtrees, not to the cluster. The
//! full search ([`Reachability::recompute`]) stays as the first computation and as the oracle
//! the incremental one is tested against (after any sequence of changes, both give the same
//! reachable set and report the same changes).
//!
//! Reporting has hysteresis: a node the search no longer reaches is reported unreachable
//! only once it stayed unreached for `grace`. While records propagate, the graph a node
//! holds can briefly lack a path that exists (it got X's new record before Y's); the grace
//! keeps such sub-millisecond holes from being reported as failures. A node superseded by a
//! newer incarnation is reported unreachable at once.
//!
//! While the owner's view is incomplete ([`Reachability::set_holding`]) nothing fades out:
//! a node not reached may be one whose records have not arrived yet.
//!
//! For garbage collection ([`crate::records`]) it also keeps, per slot, since when the
//! slot's address has been continuously *not reported* reachable ([`Reachability::down_since`]):
//! from its report as unreachable (after the grace), or from the slot's creation if it was
//! never reported. [`Reachability::collectable`] lists the slots whose time exceeds a
//! horizon; the owner frees them in the store and calls [`Reachability::release`]. Free
//! slots are skipped by every search and report. Nothing is collectable while holding.
//!
//! Layout: every node keeps this for every host it knows of, so the state is parallel
//! arrays indexed by store slot, 29 bytes per slot and no allocation of its own. `flags` is
//! a byte of bits: `SEEN` (the last search reached the slot), `REPORTED` (reported
//! reachable, at the epoch in `reported_epoch`), `FADING` (reported but not reached, since
//! `since`), `DOWN` (not reported, since `since`) and `CANDIDATE` (scratch within an
//! update). `FADING` needs `REPORTED` and `DOWN` its absence, so one time per slot serves
//! both. A value in `reported_epoch` or `since` means something only while its bit is set:
//! no epoch or time is reserved as a sentinel. The
//! search tree is `parent` and, downwards, intrusive sibling lists (`first_child`,
//! `next_sibling`); `NONE` (`u32::MAX`) stands for no slot in all three.
//!
//! Invariants: self is always reachable; a node is reported reachable as soon as the search
//! reaches it and unreachable exactly when it has been unreached for `grace` (or
//! superseded), not while holding; every change is reported once, as a [`Change`], in slot
//! order; a slot in use has `down_since` exactly when it is not reported reachable (and is
//! not self) and `FADING` only while reported; a free slot is unreached, unreported and
//! not down, and has no children. A slot is reported only while in use, and a slot in use
//! keeps its address, so what is kept of a reported id is its epoch: the address is the
//! store's for that slot.

use crate::down_queue::DownQueue;
use crate::id::NodeId;
use crate::records::RecordStore;
use crate::time::Time;
use std::time::Duration;

/// A change of one node's reachability.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Reachable(NodeId),
    Unreachable(NodeId),
}

/// Entries the scratch lists keep between updates (a few KiB; an update that needs more
/// grows them again).
const SCRATCH_KEPT: usize = 1024;

/// No parent: self, or a slot the search does not reach.
const NONE: u32 = u32::MAX;

// Bits of a slot's `flags`.
/// The search reached the slot at the last update.
const SEEN: u8 = 1 << 0;
/// Scratch: the slot is in `candidates` (set only within an update).
const CANDIDATE: u8 = 1 << 1;
/// The slot is reported reachable, at the epoch in `reported_epoch`.
const REPORTED: u8 = 1 << 2;
/// Reported, but the search does not reach it: unreached since `since`.
const FADING: u8 = 1 << 3;
/// In use, not reported reachable and not self: down since `since`.
const DOWN: u8 = 1 << 4;

/// The reported reachable set, indexed by store slot.
#[derive(Clone, Debug, Default)]
pub struct Reachability {
    grace: Duration,
    /// For each slot with [`REPORTED`], the epoch reported reachable (its address is the
    /// slot's: a slot is freed, and its address changed, only when not reported).
    reported_epoch: Vec<u64>,
    /// For slots with [`FADING`] (reported, not reached by the last search), since when
    /// they are not reached; for slots with [`DOWN`] (in use, not reported reachable, not
    /// self), since when they are not reported. Never both: `FADING` is only set on a
    /// reported slot, `DOWN` only on one that is not.
    since: Vec<Time>,
    /// Slots that became [`FADING`] (a slot may be listed again, or no longer fading).
    fading: Vec<u32>,
    count: usize,
    /// While set, nothing fades out: a node's view is not complete yet, and a node it does
    /// not reach may simply be one whose records have not arrived.
    holding: bool,
    /// Per slot, a set of bits: [`SEEN`] (the search's result), [`REPORTED`], [`FADING`],
    /// [`DOWN`], [`CANDIDATE`]. A value in `reported_epoch` or `since` means something
    /// only while its bit is set.
    flags: Vec<u8>,
    /// The search tree: the slot each reached slot was reached from (`NONE` for self).
    parent: Vec<u32>,
    /// The same tree downwards, as intrusive singly linked lists: each slot's first child
    /// (`NONE`: no children) and each child's next sibling (`NONE`: the last). A slot has
    /// at most as many children as edges, so appending and removing walk a few entries.
    /// Siblings are in the order a vector with push and swap_remove would hold them.
    first_child: Vec<u32>,
    next_sibling: Vec<u32>,
    /// The tree describes the store as of the last update, searched from `root`.
    built: bool,
    root: u32,
    /// Slots examined by the last update (the cost of a search, for tests and benches).
    last_work: usize,
    /// The slots with [`DOWN`], ordered by `since`: the next slot to become collectable first.
    down: DownQueue,
    /// Scratch space, kept to avoid allocating on every update.
    queue: Vec<u32>,
    candidates: Vec<u32>,
}

impl Reachability {
    pub fn new(grace: Duration) -> Reachability {
        Reachability {
            grace,
            ..Reachability::default()
        }
    }

    /// Holds (or releases) every unreachable report but supersession. Released, the nodes
    /// that stayed unreached for `grace` are reported at the next [`Reachability::expire`].
    pub fn set_holding(&mut self, holding: bool) {
        self.holding = holding;
    }

    /// When the next fading node is due to be reported unreachable.
    pub fn next_deadline(&self) -> Option<Time> {
        if self.holding {
            return None;
        }
        self.fading
            .iter()
            .filter_map(|&s| self.unreached_since(s as usize))
            .min()
            .map(|since| since + self.grace)
    }

    /// Reports as unreachable the fading nodes whose grace has run out by `now`.
    pub fn expire(&mut self, now: Time, store: &RecordStore, changes: &mut Vec<Change>) {
        if self.holding {
            return;
        }
        let grace = self.grace;
        let (flags, epochs, since) = (&mut self.flags, &self.reported_epoch, &mut self.since);
        let down = &mut self.down;
        let slots = store.slots();
        let mut expired = 0;
        self.fading.retain(|&slot| {
            let s = slot as usize;
            if flags[s] & FADING == 0 {
                return false;
            }
            if now < since[s] + grace {
                return true;
            }
            if flags[s] & REPORTED != 0 {
                flags[s] &= !REPORTED;
                let old = NodeId::new(slots[s].addr(), epochs[s]);
                changes.push(Change::Unreachable(old));
                expired += 1;
                if flags[s] & DOWN == 0 {
                    flags[s] |= DOWN;
                    since[s] = now;
                    down.insert(now, slot);
                }
            }
            flags[s] &= !FADING;
            false
        });
        self.count -= expired;
    }

    /// Since when `slot` has not been reported reachable (`None`: it is, or it is self or
    /// free).
    pub fn down_since(&self, slot: u32) -> Option<Time> {
        let i = slot as usize;
        (self.flags.get(i)? & DOWN != 0).then(|| self.since[i])
    }

    /// Since when reported slot `i` has not been reached (`None`: it is not fading).
    fn unreached_since(&self, i: usize) -> Option<Time> {
        (self.flags[i] & FADING != 0).then(|| self.since[i])
    }

    /// Whether `slot` may be collected on a peer's word now: it is not reported reachable
    /// (it has a `down_since`) and nothing is held back (the same rule as
    /// [`Reachability::collectable`] without the horizon). Call only with the search up to
    /// date.
    pub fn is_down(&self, slot: u32) -> bool {
        !self.holding && self.down_since(slot).is_some()
    }

    /// When the next slot becomes collectable for `horizon` (`None` while holding or with
    /// nothing down).
    pub fn next_collectable(&self, horizon: Duration) -> Option<Time> {
        if self.holding {
            return None;
        }
        self.down.first().map(|since| since + horizon)
    }

    /// The slots not reported reachable for at least `horizon` by `now`, oldest first
    /// (none while holding).
    pub fn collectable(&self, now: Time, horizon: Duration) -> Vec<u32> {
        // This runs at every timeout of every node: the earliest time is the queue's
        // front, one read.
        if self.holding || self.down.first().is_none_or(|first| first + horizon > now) {
            return Vec::new();
        }
        // `now - horizon` does not saturate: the first slot went down that long ago.
        self.down.down_until(now - horizon, |since, slot| {
            self.down_since(slot) == Some(since)
        })
    }

    /// `slot` was freed in the store: forget it. It must be unreached and unreported.
    pub fn release(&mut self, slot: u32) {
        let s = slot as usize;
        if s >= self.flags.len() {
            return;
        }
        debug_assert!(self.flags[s] & (SEEN | REPORTED) == 0);
        let was_down = self.down_since(slot).is_some();
        self.flags[s] &= !(DOWN | FADING);
        if was_down {
            self.forget_down();
        }
    }

    /// A slot's entry in `down` went stale (the slot is no longer down since that time).
    fn forget_down(&mut self) {
        let (flags, since) = (&self.flags, &self.since);
        self.down
            .remove(|t, slot| flags[slot as usize] & DOWN != 0 && since[slot as usize] == t);
    }

    /// Keeps `down_since` of slot `i` in step with what is reported.
    fn track_down(&mut self, now: Time, i: usize) {
        let down = self.flags[i] & REPORTED == 0 && i as u32 != self.root;
        match (down, self.down_since(i as u32)) {
            (true, None) => {
                debug_assert!(self.flags[i] & FADING == 0, "fading, so reported");
                self.flags[i] |= DOWN;
                self.since[i] = now;
                self.down.insert(now, i as u32);
            }
            (false, Some(_)) => {
                self.flags[i] &= !DOWN;
                self.forget_down();
            }
            _ => {}
        }
    }

    /// Number of nodes reported reachable, self included.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Slots the last update examined: all of them for a full search, the changed ones and
    /// what they cut or extended for an incremental one.
    pub fn last_work(&self) -> usize {
        self.last_work
    }

    /// Whether `id` (this exact incarnation) was reachable at the last computation.
    pub fn is_reachable(&self, store: &RecordStore, id: &NodeId) -> bool {
        store
            .slot_of(&id.addr)
            .and_then(|slot| self.reported_at(store, slot as usize))
            == Some(*id)
    }

    /// The incarnation of `addr` reported reachable, if any.
    pub fn reported(&self, store: &RecordStore, addr: &std::net::SocketAddr) -> Option<NodeId> {
        let slot = store.slot_of(addr)?;
        self.reported_at(store, slot as usize)
    }

    /// Whether some incarnation of the address of `slot` is reported reachable (the flag
    /// alone: no read of the slot's address).
    pub(crate) fn is_reported(&self, slot: u32) -> bool {
        self.flags
            .get(slot as usize)
            .is_some_and(|flags| flags & REPORTED != 0)
    }

    /// Every reachable node, in slot order.
    pub fn reachable<'a>(&'a self, store: &'a RecordStore) -> impl Iterator<Item = NodeId> + 'a {
        (0..self.flags.len()).filter_map(|i| self.reported_at(store, i))
    }

    /// The id reported reachable for slot `i` (of `store`, the store it was reported
    /// from), if any.
    fn reported_at(&self, store: &RecordStore, i: usize) -> Option<NodeId> {
        let flags = self.flags.get(i).copied().unwrap_or(0);
        (flags & REPORTED != 0)
            .then(|| NodeId::new(store.slots()[i].addr(), self.reported_epoch[i]))
    }

    /// Brings the reachable set up to date with what changed in `store` since the last
    /// update (incrementally once a first search was made from `self_slot`) and appends
    /// every reportable change.
    pub fn update(
        &mut self,
        now: Time,
        store: &mut RecordStore,
        self_slot: u32,
        changes: &mut Vec<Change>,
    ) {
        let touched = store.take_touched();
        if !self.built || self.root != self_slot {
            self.recompute(now, store, self_slot, changes);
            return;
        }
        self.grow(store.len());
        let vertices = store.vertices();
        let valid = |from: u32, to: u32| {
            vertices[from as usize]
                .edges
                .iter()
                .any(|e| e.current_target() == Some(to))
        };
        let mut work = touched.len();

        // Cut every tree edge that no longer holds: from a changed slot to its children,
        // and into a changed slot (its parent's edge may name an older epoch now).
        let mut cut = Vec::new();
        for &x in &touched {
            if !self.seen(x as usize) {
                continue;
            }
            cut.extend(self.children(x).filter(|&c| !valid(x, c)));
            let p = self.parent[x as usize];
            if p != NONE && !valid(p, x) {
                cut.push(x);
            }
        }
        // Everything below a cut is unreached until found again.
        let mut cut_off = Vec::new();
        for c in cut {
            if !self.seen(c as usize) {
                continue;
            }
            self.remove_child(self.parent[c as usize], c);
            let mut stack = vec![c];
            while let Some(u) = stack.pop() {
                self.flags[u as usize] &= !SEEN;
                self.parent[u as usize] = NONE;
                cut_off.push(u);
                stack.extend(self.children(u));
                self.first_child[u as usize] = NONE;
            }
        }
        work += cut_off.len();

        // Seeds: unreached slots with a valid edge from a reached one, and the new edges of
        // reached changed slots.
        self.queue.clear();
        for &u in cut_off.iter().chain(&touched) {
            if self.seen(u as usize) {
                continue;
            }
            if let Some(&v) = store
                .incoming(u)
                .iter()
                .find(|&&v| self.seen(v as usize) && valid(v, u))
            {
                self.attach(u, v);
            }
        }
        for &x in &touched {
            if !self.seen(x as usize) {
                continue;
            }
            for t in vertices[x as usize]
                .edges
                .iter()
                .filter_map(|e| e.current_target())
            {
                if !self.seen(t as usize) {
                    self.attach(t, x);
                }
            }
        }
        self.search_from_queue(store);
        work += self.queue.len();
        self.last_work = work;

        self.candidates.clear();
        let (candidates, queue, flags) = (&mut self.candidates, &self.queue, &mut self.flags);
        for &slot in touched.iter().chain(&cut_off).chain(queue) {
            let f = &mut flags[slot as usize];
            if *f & CANDIDATE == 0 {
                *f |= CANDIDATE;
                candidates.push(slot);
            }
        }
        // Reported in slot order, as the full search reports them.
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.sort_unstable();
        for &slot in &candidates {
            self.flags[slot as usize] &= !CANDIDATE;
            if !store.is_free(slot) {
                self.report(now, store, slot as usize, changes);
            }
        }
        self.candidates = candidates;
        self.expire(now, store, changes);
        self.give_back_scratch();
    }

    /// Empties the scratch lists, giving back what is beyond [`SCRATCH_KEPT`] entries: a
    /// cold start or a large cut grows them to every slot, on every node, once.
    fn give_back_scratch(&mut self) {
        for scratch in [&mut self.queue, &mut self.candidates] {
            scratch.clear();
            scratch.shrink_to(SCRATCH_KEPT);
        }
    }

    /// Searches the whole graph again from `self_slot` at `now` and appends every
    /// reportable change. The oracle of [`Reachability::update`], and its first step.
    pub fn recompute(
        &mut self,
        now: Time,
        store: &RecordStore,
        self_slot: u32,
        changes: &mut Vec<Change>,
    ) {
        let n = store.len();
        self.flags.iter_mut().for_each(|f| *f &= !SEEN);
        self.parent.clear();
        self.first_child.clear();
        self.grow(n);
        self.root = self_slot;
        self.built = true;
        self.flags[self_slot as usize] |= SEEN;
        self.queue.clear();
        self.queue.push(self_slot);
        self.search_from_queue(store);
        self.last_work = n;
        for i in 0..n {
            if !store.is_free(i as u32) {
                self.report(now, store, i, changes);
            }
        }
        self.expire(now, store, changes);
        self.give_back_scratch();
    }

    /// Reserves room for `n` slots at once (the per-slot vectors grow no further until
    /// then).
    pub fn reserve(&mut self, n: usize) {
        reserve_to(&mut self.flags, n);
        reserve_to(&mut self.parent, n);
        reserve_to(&mut self.first_child, n);
        reserve_to(&mut self.next_sibling, n);
        reserve_to(&mut self.reported_epoch, n);
        reserve_to(&mut self.since, n);
    }

    /// Sizes the per-slot vectors for `n` slots (new slots unreached).
    fn grow(&mut self, n: usize) {
        // Room for the next power of two at once: `resize` alone grows to twice the
        // capacity, which left a 1,000-slot search with room for 1,200 or more, in eight
        // arrays on every node.
        if n > self.flags.capacity() {
            let room = n.next_power_of_two();
            reserve_to(&mut self.flags, room);
            reserve_to(&mut self.parent, room);
            reserve_to(&mut self.first_child, room);
            reserve_to(&mut self.next_sibling, room);
            reserve_to(&mut self.reported_epoch, room);
            reserve_to(&mut self.since, room);
        }
        self.flags.resize(n, 0);
        self.parent.resize(n, NONE);
        self.first_child.resize(n, NONE);
        self.next_sibling.resize(n, NONE);
        self.reported_epoch.resize(n, 0);
        self.since.resize(n, Time::ZERO);
    }

    /// Whether the last search reached slot `i`.
    fn seen(&self, i: usize) -> bool {
        self.flags[i] & SEEN != 0
    }

    /// `slot` is reached over `from`'s edge: into the tree and the queue.
    fn attach(&mut self, slot: u32, from: u32) {
        self.flags[slot as usize] |= SEEN;
        self.parent[slot as usize] = from;
        self.push_child(from, slot);
        self.queue.push(slot);
    }

    /// The children of `parent` in the search tree, in order.
    fn children(&self, parent: u32) -> impl Iterator<Item = u32> + '_ {
        let first = self.first_child[parent as usize];
        std::iter::successors((first != NONE).then_some(first), |&c| {
            let next = self.next_sibling[c as usize];
            (next != NONE).then_some(next)
        })
    }

    /// Appends `child` to the children of `parent` (found at the end of the list: a slot
    /// has at most as many children as edges, five in an active view).
    fn push_child(&mut self, parent: u32, child: u32) {
        self.next_sibling[child as usize] = NONE;
        let last = self.children(parent).last();
        match last {
            None => self.first_child[parent as usize] = child,
            Some(last) => self.next_sibling[last as usize] = child,
        }
    }

    /// Removes `child` from the children of `parent`, moving the last child into its place
    /// (as `Vec::swap_remove` does, so siblings keep that order).
    fn remove_child(&mut self, parent: u32, child: u32) {
        let p = parent as usize;
        // One walk finds the siblings before `child` and before the last, and the last.
        let (mut before_child, mut before_last, mut last) = (NONE, NONE, NONE);
        let mut prev = NONE;
        for c in self.children(parent) {
            if c == child {
                before_child = prev;
            }
            (before_last, last) = (prev, c);
            prev = c;
        }
        debug_assert!(last != NONE, "{child} is not a child of {parent}");
        let link = |this: &mut Self, before: u32, to: u32| match before {
            NONE => this.first_child[p] = to,
            before => this.next_sibling[before as usize] = to,
        };
        if last == child {
            link(self, before_child, NONE);
            return;
        }
        // Unlink the last child (there are two or more), then put it where `child` is.
        self.next_sibling[before_last as usize] = NONE;
        self.next_sibling[last as usize] = self.next_sibling[child as usize];
        link(self, before_child, last);
    }

    /// Breadth-first from every queued (reached) slot over valid edges to unreached ones.
    fn search_from_queue(&mut self, store: &RecordStore) {
        let vertices = store.vertices();
        let mut head = 0;
        while head < self.queue.len() {
            let at = self.queue[head];
            head += 1;
            for target in vertices[at as usize]
                .edges
                .iter()
                .filter_map(|e| e.current_target())
            {
                if !self.seen(target as usize) {
                    self.attach(target, at);
                }
            }
        }
    }

    /// Reconciles what slot `i` is reported as with what the search found.
    fn report(&mut self, now: Time, store: &RecordStore, i: usize, changes: &mut Vec<Change>) {
        self.report_reach(now, store, i, changes);
        self.track_down(now, i);
    }

    fn report_reach(
        &mut self,
        now: Time,
        store: &RecordStore,
        i: usize,
        changes: &mut Vec<Change>,
    ) {
        // A slot in use keeps its address, so a reported id and the slot's current one
        // differ only by epoch: the address is read only for a change to report.
        let reported = self.flags[i] & REPORTED != 0;
        if !self.seen(i) && !reported {
            return;
        }
        let epoch = store.vertices()[i].epoch;
        let id = |epoch| NodeId::new(store.slots()[i].addr(), epoch);
        if self.seen(i) {
            self.flags[i] &= !FADING;
            if !reported || self.reported_epoch[i] != epoch {
                if reported {
                    changes.push(Change::Unreachable(id(self.reported_epoch[i])));
                } else {
                    self.count += 1;
                }
                changes.push(Change::Reachable(id(epoch)));
                self.flags[i] |= REPORTED;
                self.reported_epoch[i] = epoch;
            }
        } else if reported {
            let old = self.reported_epoch[i];
            if old < epoch || (self.grace.is_zero() && !self.holding) {
                changes.push(Change::Unreachable(id(old)));
                self.flags[i] &= !REPORTED;
                self.count -= 1;
                self.flags[i] &= !FADING;
            } else if self.flags[i] & FADING == 0 {
                debug_assert!(self.flags[i] & DOWN == 0, "reported, so not down");
                self.flags[i] |= FADING;
                self.since[i] = now;
                self.fading.push(i as u32);
            }
        }
    }
}

/// Makes `v`'s capacity exactly `room` (at least its length).
fn reserve_to<T>(v: &mut Vec<T>, room: usize) {
    if room > v.capacity() {
        v.reserve_exact(room - v.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Record, RecordBody};

    fn id(port: u16, epoch: u64) -> NodeId {
        NodeId::new(([10, 0, 0, 1], port).into(), epoch)
    }

    /// Growing by batches of slots (a cold start's) leaves room for the next power of two,
    /// in every array: `Vec`'s own doubling went 300, 601, then 1,202 for 1,000 slots.
    #[test]
    fn per_slot_arrays_grow_to_the_next_power_of_two() {
        let mut reach = Reachability::new(Duration::ZERO);
        for n in [300, 601, 1_000] {
            reach.grow(n);
        }
        assert_eq!(reach.flags.capacity(), 1_024);
        assert_eq!(reach.since.capacity(), 1_024);
        assert_eq!(reach.reported_epoch.len(), 1_000);
    }

    fn publish(store: &mut RecordStore, origin: NodeId, seq: u64, adjacency: &[NodeId]) {
        store.apply(Record::new(
            origin,
            seq,
            RecordBody {
                adjacency: adjacency.to_vec(),
                ..Default::default()
            },
        ));
    }

    #[test]
    fn crashed_node_becomes_unreachable_when_all_in_edges_drop() {
        let (a, b, c) = (id(1, 1), id(2, 1), id(3, 1));
        let mut store = RecordStore::new(16);
        publish(&mut store, a, 1, &[b, c]);
        publish(&mut store, b, 1, &[a, c]);
        publish(&mut store, c, 1, &[a, b]);
        let me = store.slot_of(&a.addr).unwrap();
        let mut reach = Reachability::default();
        let t = Time::ZERO;
        let mut changes = Vec::new();
        reach.recompute(t, &store, me, &mut changes);
        assert_eq!(reach.count(), 3);
        assert_eq!(changes.len(), 3);

        // c crashes: a drops it, b still claims it.
        publish(&mut store, a, 2, &[b]);
        changes.clear();
        reach.recompute(t, &store, me, &mut changes);
        assert!(changes.is_empty());
        publish(&mut store, b, 2, &[a]);
        reach.recompute(t, &store, me, &mut changes);
        assert_eq!(changes, vec![Change::Unreachable(c)]);
        assert!(!reach.is_reachable(&store, &c));
    }

    #[test]
    fn edges_to_an_old_epoch_do_not_count() {
        let (a, b, b2) = (id(1, 1), id(2, 1), id(2, 2));
        let mut store = RecordStore::new(16);
        publish(&mut store, a, 1, &[b]);
        let me = store.slot_of(&a.addr).unwrap();
        let mut reach = Reachability::default();
        let t = Time::ZERO;
        let mut changes = Vec::new();
        reach.recompute(t, &store, me, &mut changes);
        assert!(reach.is_reachable(&store, &b));
        publish(&mut store, b2, 0, &[]);
        changes.clear();
        reach.recompute(t, &store, me, &mut changes);
        assert_eq!(changes, vec![Change::Unreachable(b)]);
        publish(&mut store, a, 2, &[b2]);
        changes.clear();
        reach.recompute(t, &store, me, &mut changes);
        assert_eq!(changes, vec![Change::Reachable(b2)]);
    }

    #[test]
    fn grace_hides_short_holes_and_reports_lasting_ones() {
        let (a, b) = (id(1, 1), id(2, 1));
        let mut store = RecordStore::new(16);
        publish(&mut store, a, 1, &[b]);
        let me = store.slot_of(&a.addr).unwrap();
        let mut reach = Reachability::new(Duration::from_millis(20));
        let mut changes = Vec::new();
        reach.recompute(Time::ZERO, &store, me, &mut changes);
        assert_eq!(changes, vec![Change::Reachable(a), Change::Reachable(b)]);
        changes.clear();

        // A hole that closes within the grace is never reported.
        publish(&mut store, a, 2, &[]);
        reach.recompute(Time::from_millis(1), &store, me, &mut changes);
        assert!(changes.is_empty());
        assert!(reach.is_reachable(&store, &b));
        assert_eq!(reach.next_deadline(), Some(Time::from_millis(21)));
        publish(&mut store, a, 3, &[b]);
        reach.recompute(Time::from_millis(5), &store, me, &mut changes);
        reach.expire(Time::from_millis(30), &store, &mut changes);
        assert!(changes.is_empty());
        assert_eq!(reach.next_deadline(), None);

        // A lasting one is reported when the grace runs out, not before.
        publish(&mut store, a, 4, &[]);
        reach.recompute(Time::from_millis(40), &store, me, &mut changes);
        reach.expire(Time::from_millis(59), &store, &mut changes);
        assert!(changes.is_empty());
        reach.expire(Time::from_millis(60), &store, &mut changes);
        assert_eq!(changes, vec![Change::Unreachable(b)]);
        assert_eq!(reach.count(), 1);
    }
}

#[cfg(test)]
mod incremental_tests {
    use super::*;
    use crate::records::{Record, RecordBody};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    const NODES: u16 = 10;

    fn id(node: u16, epoch: u64) -> NodeId {
        NodeId::new(([10, 0, 0, 1], 1 + node).into(), epoch)
    }

    /// One change to the store: a node publishes an adjacency (naming epochs 1..=3 of its
    /// neighbours), or a node is heard of first-hand under a newer epoch.
    #[derive(Clone, Debug)]
    enum Step {
        Publish {
            node: u16,
            epoch: u64,
            adjacency: Vec<(u16, u64)>,
        },
        Epoch {
            node: u16,
            epoch: u64,
        },
        /// Collect `node`'s slot if the incremental search has it down (as the node does
        /// after a horizon; here at once): the store frees it, the next new address reuses
        /// it.
        Collect {
            node: u16,
        },
        Update,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0..NODES, 1..=3u64, prop::collection::vec((0..NODES, 1..=3u64), 0..5))
                .prop_map(|(node, epoch, adjacency)| Step::Publish { node, epoch, adjacency }),
            1 => (0..NODES, 1..=3u64).prop_map(|(node, epoch)| Step::Epoch { node, epoch }),
            2 => (1..NODES).prop_map(|node| Step::Collect { node }),
            2 => Just(Step::Update),
        ]
    }

    impl Reachability {
        /// The slots the last search reached.
        fn seen_slots(&self) -> Vec<usize> {
            (0..self.flags.len()).filter(|&i| self.seen(i)).collect()
        }

        /// Every slot's `down_since`.
        fn down_slots(&self) -> Vec<Option<Time>> {
            (0..self.flags.len() as u32)
                .map(|s| self.down_since(s))
                .collect()
        }
    }

    /// Applies `steps`, updating incrementally at every `Update` (and at the end) and
    /// comparing with a full search of the same store: same changes, same reported set.
    fn check(steps: &[Step], grace: Duration) -> Result<(), TestCaseError> {
        check_counting(steps, grace).map(|_| ())
    }

    /// [`check`], returning how many slots were collected and how many of them reused.
    fn check_counting(steps: &[Step], grace: Duration) -> Result<(usize, usize), TestCaseError> {
        let (mut collected, mut reused) = (0, 0);
        let mut store = RecordStore::new(64);
        let me = store.intern(id(0, 1)).unwrap();
        let mut incremental = Reachability::new(grace);
        let mut full = Reachability::new(grace);
        let mut seq = 0;
        let mut now = Time::ZERO;
        let last = [Step::Update];
        for step in steps.iter().chain(&last) {
            let before = (store.len(), store.in_use());
            match step {
                Step::Publish {
                    node,
                    epoch,
                    adjacency,
                } => {
                    seq += 1;
                    store.apply(Record::new(
                        id(*node, *epoch),
                        seq,
                        RecordBody {
                            adjacency: adjacency.iter().map(|&(n, e)| id(n, e)).collect(),
                            ..Default::default()
                        },
                    ));
                    // New addresses that took a freed slot rather than a new one.
                    let added = store.in_use().saturating_sub(before.1);
                    reused += added - (store.len() - before.0).min(added);
                }
                Step::Epoch { node, epoch } => {
                    store.intern(id(*node, *epoch));
                }
                Step::Collect { node } => {
                    // Only from an up-to-date search, as the node does.
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    incremental.update(now, &mut store, me, &mut a);
                    full.recompute(now, &store, me, &mut b);
                    prop_assert_eq!(&a, &b);
                    let Some(slot) = store.slot_of(&id(*node, 0).addr) else {
                        continue;
                    };
                    let down = incremental.down_since(slot).is_some();
                    prop_assert_eq!(down, full.down_since(slot).is_some());
                    let listed = incremental.collectable(now, Duration::ZERO).contains(&slot);
                    prop_assert_eq!(down, listed);
                    if down {
                        store.free(slot, now + Duration::from_secs(60));
                        incremental.release(slot);
                        full.release(slot);
                        collected += 1;
                    }
                }
                Step::Update => {
                    now = now + Duration::from_millis(7);
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    incremental.update(now, &mut store, me, &mut a);
                    full.recompute(now, &store, me, &mut b);
                    prop_assert_eq!(&a, &b, "changes differ at {:?}", now);
                    let reached: Vec<NodeId> = incremental.reachable(&store).collect();
                    let expected: Vec<NodeId> = full.reachable(&store).collect();
                    prop_assert_eq!(reached, expected);
                    prop_assert_eq!(incremental.count(), full.count());
                    prop_assert_eq!(incremental.seen_slots(), full.seen_slots());
                    prop_assert_eq!(incremental.down_slots(), full.down_slots());
                    if let Err(e) = store.check() {
                        return Err(TestCaseError::fail(e));
                    }
                    for &f in &incremental.flags {
                        prop_assert!(f & FADING == 0 || f & REPORTED != 0);
                        prop_assert!(f & DOWN == 0 || f & REPORTED == 0);
                    }
                    for slot in 0..store.len() as u32 {
                        if store.is_free(slot) {
                            prop_assert!(!incremental.seen(slot as usize));
                            prop_assert!(incremental.down_since(slot).is_none());
                            prop_assert_eq!(incremental.children(slot).count(), 0);
                        }
                    }
                }
            }
        }
        Ok((collected, reused))
    }

    proptest! {
        /// The children lists hold what vectors with push and swap_remove would, in the
        /// same order.
        #[test]
        fn children_lists_keep_vector_order(ops in prop::collection::vec((0..3u32, 3..40u32, any::<bool>()), 0..200)) {
            let mut reach = Reachability::default();
            reach.grow(40);
            let mut model: Vec<Vec<u32>> = vec![Vec::new(); 3];
            let mut parent_of: Vec<Option<u32>> = vec![None; 40];
            for (parent, child, remove) in ops {
                match parent_of[child as usize] {
                    Some(p) if remove => {
                        let at = model[p as usize].iter().position(|&c| c == child).unwrap();
                        model[p as usize].swap_remove(at);
                        reach.remove_child(p, child);
                        parent_of[child as usize] = None;
                    }
                    None if !remove => {
                        model[parent as usize].push(child);
                        reach.push_child(parent, child);
                        parent_of[child as usize] = Some(parent);
                    }
                    _ => {}
                }
                for p in 0..3u32 {
                    prop_assert_eq!(reach.children(p).collect::<Vec<_>>(), model[p as usize].clone());
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn incremental_equals_full_search(steps in prop::collection::vec(step(), 0..60)) {
            check(&steps, Duration::ZERO)?;
        }

        #[test]
        fn incremental_equals_full_search_with_grace(steps in prop::collection::vec(step(), 0..60)) {
            check(&steps, Duration::from_millis(20))?;
        }
    }

    /// The strategy reaches collection and reuse of slots (not a vacuous oracle).
    #[test]
    fn strategies_collect_and_reuse_slots() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut collected, mut reused) = (0, 0);
        for _ in 0..256 {
            let steps = prop::collection::vec(step(), 0..60)
                .new_tree(&mut runner)
                .expect("strategy")
                .current();
            let (c, r) = check_counting(&steps, Duration::ZERO).expect("oracle holds");
            collected += c;
            reused += r;
        }
        assert!(collected > 100, "collected {collected}");
        assert!(reused > 20, "reused {reused}");
    }

    /// A chain self → 1 → 2 → … → n−1: one new edge at the far end costs a handful of
    /// slots, not the chain; cutting the chain in the middle costs the part cut off.
    #[test]
    fn an_update_costs_the_change_not_the_graph() {
        let n = 2000u16;
        let node = |i: u16| NodeId::new(([10, 1, (i >> 8) as u8, i as u8], 7).into(), 1);
        let mut store = RecordStore::new(4096);
        let me = store.intern(node(0)).unwrap();
        for i in 0..n - 1 {
            store.apply(Record::new(
                node(i),
                1,
                RecordBody {
                    adjacency: vec![node(i + 1)],
                    ..Default::default()
                },
            ));
        }
        let mut reach = Reachability::default();
        let mut changes = Vec::new();
        reach.update(Time::ZERO, &mut store, me, &mut changes);
        assert_eq!(reach.count(), usize::from(n));
        assert_eq!(
            reach.last_work(),
            usize::from(n),
            "the first search is full"
        );

        let tail = node(n);
        store.apply(Record::new(
            node(n - 1),
            2,
            RecordBody {
                adjacency: vec![tail],
                ..Default::default()
            },
        ));
        changes.clear();
        reach.update(Time::ZERO, &mut store, me, &mut changes);
        assert_eq!(changes, vec![Change::Reachable(tail)]);
        assert!(reach.last_work() <= 4, "work {}", reach.last_work());

        // Cut after node 1500: the 501 nodes below become unreachable, nothing else is visited.
        store.apply(Record::new(node(1500), 2, RecordBody::default()));
        changes.clear();
        reach.update(Time::ZERO, &mut store, me, &mut changes);
        assert_eq!(changes.len(), 500);
        assert_eq!(reach.count(), 1501);
        assert!(reach.last_work() <= 502, "work {}", reach.last_work());
    }
}
