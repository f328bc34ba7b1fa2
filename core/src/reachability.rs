//! Reachability: which nodes this node can reach over the adjacency graph.
//!
//! The graph is directed: node X has an edge to Y when X's newest record lists Y in its
//! active view, and the edge counts only if it names Y's newest known epoch. A breadth-first
//! search from self over the record store gives the reachable set. A crashed node still
//! claims its old edges, but once every live neighbour has dropped it no edge leads *to* it,
//! so it becomes unreachable.
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
//! Invariants: self is always reachable; a node is reported reachable as soon as the search
//! reaches it and unreachable exactly when it has been unreached for `grace` (or
//! superseded), not while holding; every change is reported once, as a [`Change`], in slot
//! order.

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

/// The reported reachable set, indexed by store slot.
#[derive(Clone, Debug, Default)]
pub struct Reachability {
    grace: Duration,
    /// The id reported reachable for each slot, if any.
    reported: Vec<Option<NodeId>>,
    /// For reported slots the last search did not reach: since when.
    unreached_since: Vec<Option<Time>>,
    /// Slots with `unreached_since` set.
    fading: Vec<u32>,
    count: usize,
    /// While set, nothing fades out: a node's view is not complete yet, and a node it does
    /// not reach may simply be one whose records have not arrived.
    holding: bool,
    /// Scratch space for the search, kept to avoid allocating on every run.
    seen: Vec<bool>,
    queue: Vec<u32>,
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
            .filter_map(|&s| self.unreached_since[s as usize])
            .min()
            .map(|since| since + self.grace)
    }

    /// Reports as unreachable the fading nodes whose grace has run out by `now`.
    pub fn expire(&mut self, now: Time, changes: &mut Vec<Change>) {
        if self.holding {
            return;
        }
        let grace = self.grace;
        let (reported, since) = (&mut self.reported, &mut self.unreached_since);
        let mut expired = 0;
        self.fading.retain(|&slot| {
            let s = slot as usize;
            match since[s] {
                Some(t) if now >= t + grace => {
                    if let Some(old) = reported[s].take() {
                        changes.push(Change::Unreachable(old));
                        expired += 1;
                    }
                    since[s] = None;
                    false
                }
                Some(_) => true,
                None => false,
            }
        });
        self.count -= expired;
    }

    /// Number of nodes reported reachable, self included.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether `id` (this exact incarnation) was reachable at the last computation.
    pub fn is_reachable(&self, store: &RecordStore, id: &NodeId) -> bool {
        store
            .slot_of(&id.addr)
            .and_then(|slot| self.reported.get(slot as usize).copied().flatten())
            == Some(*id)
    }

    /// The incarnation of `addr` reported reachable, if any.
    pub fn reported(&self, store: &RecordStore, addr: &std::net::SocketAddr) -> Option<NodeId> {
        let slot = store.slot_of(addr)?;
        self.reported.get(slot as usize).copied().flatten()
    }

    /// Every reachable node, in slot order.
    pub fn reachable(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.reported.iter().filter_map(|id| *id)
    }

    /// Searches again from `self_slot` at `now` and appends every reportable change.
    pub fn recompute(
        &mut self,
        now: Time,
        store: &RecordStore,
        self_slot: u32,
        changes: &mut Vec<Change>,
    ) {
        let slots = store.slots();
        let vertices = store.vertices();
        self.seen.clear();
        self.seen.resize(slots.len(), false);
        self.queue.clear();
        self.reported.resize(slots.len(), None);
        self.unreached_since.resize(slots.len(), None);
        self.seen[self_slot as usize] = true;
        self.queue.push(self_slot);
        let mut head = 0;
        while head < self.queue.len() {
            let at = self.queue[head] as usize;
            head += 1;
            for &(target, epoch) in &vertices[at].edges {
                let t = target as usize;
                if !self.seen[t] && vertices[t].epoch == epoch {
                    self.seen[t] = true;
                    self.queue.push(target);
                }
            }
        }
        for (i, (slot, vertex)) in slots.iter().zip(vertices).enumerate() {
            let before = self.reported[i];
            if !self.seen[i] && before.is_none() {
                continue;
            }
            let current = NodeId::new(slot.addr, vertex.epoch);
            if self.seen[i] {
                self.unreached_since[i] = None;
                if before != Some(current) {
                    if let Some(old) = before {
                        changes.push(Change::Unreachable(old));
                    }
                    changes.push(Change::Reachable(current));
                    self.reported[i] = Some(current);
                }
            } else if let Some(old) = before {
                if old.epoch < vertex.epoch || (self.grace.is_zero() && !self.holding) {
                    changes.push(Change::Unreachable(old));
                    self.reported[i] = None;
                    self.unreached_since[i] = None;
                } else if self.unreached_since[i].is_none() {
                    self.unreached_since[i] = Some(now);
                    self.fading.push(i as u32);
                }
            }
        }
        self.count = self.reported.iter().filter(|r| r.is_some()).count();
        self.expire(now, changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Record, RecordBody};
    use std::sync::Arc;

    fn id(port: u16, epoch: u64) -> NodeId {
        NodeId::new(([10, 0, 0, 1], port).into(), epoch)
    }

    fn publish(store: &mut RecordStore, origin: NodeId, seq: u64, adjacency: &[NodeId]) {
        store.apply(Record {
            origin,
            seq,
            body: Arc::new(RecordBody {
                adjacency: adjacency.to_vec(),
                ..Default::default()
            }),
        });
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
        reach.expire(Time::from_millis(30), &mut changes);
        assert!(changes.is_empty());
        assert_eq!(reach.next_deadline(), None);

        // A lasting one is reported when the grace runs out, not before.
        publish(&mut store, a, 4, &[]);
        reach.recompute(Time::from_millis(40), &store, me, &mut changes);
        reach.expire(Time::from_millis(59), &mut changes);
        assert!(changes.is_empty());
        reach.expire(Time::from_millis(60), &mut changes);
        assert_eq!(changes, vec![Change::Unreachable(b)]);
        assert_eq!(reach.count(), 1);
    }
}
