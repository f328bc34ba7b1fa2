//! Reachability: which nodes this node can reach over the adjacency graph.
//!
//! The graph is directed: node X has an edge to Y when X's newest record lists Y in its
//! active view, and the edge counts only if it names Y's newest known epoch. A breadth-first
//! search from self over the record store gives the reachable set. A crashed node still
//! claims its old edges, but once every live neighbour has dropped it no edge leads *to* it,
//! so it becomes unreachable.
//!
//! Invariants: self is always reachable; the reported set is exactly the last BFS result,
//! and every change to it is reported once, as an [`Change`], in slot order.

use crate::id::NodeId;
use crate::records::RecordStore;

/// A change of one node's reachability.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Reachable(NodeId),
    Unreachable(NodeId),
}

/// The last computed reachable set, indexed by store slot.
#[derive(Clone, Debug, Default)]
pub struct Reachability {
    /// The id reported reachable for each slot, if any.
    reported: Vec<Option<NodeId>>,
    count: usize,
    /// Scratch space for the search, kept to avoid allocating on every run.
    seen: Vec<bool>,
    queue: Vec<u32>,
}

impl Reachability {
    /// Number of reachable nodes, self included.
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

    /// Every reachable node, in slot order.
    pub fn reachable(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.reported.iter().filter_map(|id| *id)
    }

    /// Recomputes from `self_slot` and appends every change to `changes`.
    pub fn recompute(&mut self, store: &RecordStore, self_slot: u32, changes: &mut Vec<Change>) {
        let slots = store.slots();
        self.seen.clear();
        self.seen.resize(slots.len(), false);
        self.queue.clear();
        self.reported.resize(slots.len(), None);
        self.seen[self_slot as usize] = true;
        self.queue.push(self_slot);
        let mut head = 0;
        while head < self.queue.len() {
            let at = self.queue[head] as usize;
            head += 1;
            for &(target, epoch) in &slots[at].edges {
                let t = target as usize;
                if !self.seen[t] && slots[t].epoch == epoch {
                    self.seen[t] = true;
                    self.queue.push(target);
                }
            }
        }
        self.count = self.queue.len();
        for (i, slot) in slots.iter().enumerate() {
            let now = self.seen[i].then(|| NodeId::new(slot.addr, slot.epoch));
            let before = self.reported[i];
            if now != before {
                if let Some(old) = before {
                    changes.push(Change::Unreachable(old));
                }
                if let Some(new) = now {
                    changes.push(Change::Reachable(new));
                }
                self.reported[i] = now;
            }
        }
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
        let mut changes = Vec::new();
        reach.recompute(&store, me, &mut changes);
        assert_eq!(reach.count(), 3);
        assert_eq!(changes.len(), 3);

        // c crashes: a drops it, b still claims it.
        publish(&mut store, a, 2, &[b]);
        changes.clear();
        reach.recompute(&store, me, &mut changes);
        assert!(changes.is_empty());
        publish(&mut store, b, 2, &[a]);
        reach.recompute(&store, me, &mut changes);
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
        let mut changes = Vec::new();
        reach.recompute(&store, me, &mut changes);
        assert!(reach.is_reachable(&store, &b));
        publish(&mut store, b2, 0, &[]);
        changes.clear();
        reach.recompute(&store, me, &mut changes);
        assert_eq!(changes, vec![Change::Unreachable(b)]);
        publish(&mut store, a, 2, &[b2]);
        changes.clear();
        reach.recompute(&store, me, &mut changes);
        assert_eq!(changes, vec![Change::Reachable(b2)]);
    }
}
