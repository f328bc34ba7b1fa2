//! The versions waiting to be flooded, with the neighbours each is queued for.
//!
//! A new version goes to every active neighbour but the one it came from, so a burst of
//! versions (a joiner's catch-up, the repair after crashes) is queued for five or six
//! neighbours at once. Kept as a map of maps (neighbour → origin → record), a copy of
//! the record and of the origin's address was held per neighbour; here an origin's queued
//! versions are held once each, with the set of neighbours (a bit mask over the
//! neighbours seen since the last flush) that each is for. What a neighbour is sent is
//! exactly what the map of maps gave it: at most one version per origin, the newest
//! queued, in the form that chains from the version queued for it first.
//!
//! Invariants:
//! - `neighbours` holds at most [`MAX_NEIGHBOURS`] distinct addresses, and bit `i` of a
//!   mask stands for `neighbours[i]`;
//! - per origin, every entry's mask is non-zero and the masks are disjoint (a neighbour
//!   has at most one version of an origin queued); an origin is in `by_origin` only with
//!   at least one entry;
//! - [`FloodQueue::take`] yields the neighbours in address order, each with its records
//!   in origin address order.

use crate::records::{BodyForm, Record};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Most neighbours a queue tells apart between two flushes (the width of a mask).
/// `membership.active_max` is bounded by it.
pub(crate) const MAX_NEIGHBOURS: usize = 64;

/// One version queued for the neighbours in `to`.
#[derive(Clone, Debug)]
struct Queued {
    record: Record,
    to: u64,
}

/// Versions waiting to be flooded (see the module doc).
#[derive(Default, Debug)]
pub(crate) struct FloodQueue {
    neighbours: Vec<SocketAddr>,
    by_origin: BTreeMap<SocketAddr, SmallVec<[Queued; 1]>>,
}

impl FloodQueue {
    /// Nothing was queued since the last [`FloodQueue::take`] (or `clear`).
    pub(crate) fn is_empty(&self) -> bool {
        self.neighbours.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.neighbours.clear();
        self.by_origin.clear();
    }

    /// Queues `record` for each of `targets` (distinct addresses, all in `active`, the
    /// node's active neighbours). A neighbour with an older version of the origin queued
    /// gets one version instead: the newer, as its change from where the queued one
    /// started; one with this version or a newer queued keeps it.
    pub(crate) fn queue(&mut self, record: &Record, targets: &[SocketAddr], active: &[SocketAddr]) {
        let mut want = 0u64;
        for &target in targets {
            match self.bit_of(target, active) {
                Some(bit) => want |= 1 << bit,
                None => debug_assert!(false, "more active neighbours than a mask holds"),
            }
        }
        if want == 0 {
            return;
        }
        let entries = self.by_origin.entry(record.origin.addr).or_default();
        let mut fresh = want;
        for i in 0..entries.len() {
            let overlap = entries[i].to & want;
            if overlap == 0 {
                continue;
            }
            fresh &= !overlap;
            if entries[i].record.version() < record.version() {
                entries[i].to &= !overlap;
                let record = chained(&entries[i].record, record);
                entries.push(Queued {
                    record,
                    to: overlap,
                });
            }
        }
        if fresh != 0 {
            entries.push(Queued {
                record: record.clone(),
                to: fresh,
            });
        }
        entries.retain(|e| e.to != 0);
    }

    /// `peer` holds `origin`'s `version`: a copy of it, or of an older one, queued for
    /// `peer` is dropped. Returns whether one was.
    pub(crate) fn peer_holds(
        &mut self,
        peer: &SocketAddr,
        origin: &SocketAddr,
        version: (u64, u64),
    ) -> bool {
        let Some(bit) = self.neighbours.iter().position(|a| a == peer) else {
            return false;
        };
        let Some(entries) = self.by_origin.get_mut(origin) else {
            return false;
        };
        let Some(entry) = entries.iter_mut().find(|e| e.to >> bit & 1 == 1) else {
            return false;
        };
        if entry.record.version() > version {
            return false;
        }
        entry.to &= !(1 << bit);
        entries.retain(|e| e.to != 0);
        if entries.is_empty() {
            self.by_origin.remove(origin);
        }
        true
    }

    /// Empties the queue: per neighbour (in address order), its records in origin order
    /// (a neighbour whose copies were all dropped comes with none).
    pub(crate) fn take(&mut self) -> Vec<(SocketAddr, Vec<Record>)> {
        let mut order: Vec<usize> = (0..self.neighbours.len()).collect();
        order.sort_unstable_by_key(|&i| self.neighbours[i]);
        let out = order
            .into_iter()
            .map(|bit| {
                let records = self
                    .by_origin
                    .values()
                    .flat_map(|entries| entries.iter())
                    .filter(|e| e.to >> bit & 1 == 1)
                    .map(|e| e.record.clone())
                    .collect();
                (self.neighbours[bit], records)
            })
            .collect();
        self.clear();
        out
    }

    /// The bit of `addr`, given one if it has none. When every bit is taken, those of
    /// neighbours no longer in `active` are given up first (their copies would be dropped
    /// at the flush anyway); `None` only with more active neighbours than bits.
    fn bit_of(&mut self, addr: SocketAddr, active: &[SocketAddr]) -> Option<usize> {
        if let Some(bit) = self.neighbours.iter().position(|a| *a == addr) {
            return Some(bit);
        }
        if self.neighbours.len() == MAX_NEIGHBOURS {
            self.forget_inactive(active);
        }
        if self.neighbours.len() == MAX_NEIGHBOURS {
            return None;
        }
        self.neighbours.push(addr);
        Some(self.neighbours.len() - 1)
    }

    /// Drops the neighbours not in `active`, with their queued copies, and renumbers the
    /// bits of the rest.
    fn forget_inactive(&mut self, active: &[SocketAddr]) {
        let old = std::mem::take(&mut self.neighbours);
        // For each old bit, its new bit (or none).
        let mut moved = [None; MAX_NEIGHBOURS];
        for (bit, addr) in old.into_iter().enumerate() {
            if active.contains(&addr) {
                moved[bit] = Some(self.neighbours.len());
                self.neighbours.push(addr);
            }
        }
        let renumber = |mask: u64| {
            (0..MAX_NEIGHBOURS)
                .filter(|&bit| mask >> bit & 1 == 1)
                .filter_map(|bit| moved[bit])
                .fold(0u64, |m, bit| m | 1 << bit)
        };
        self.by_origin.retain(|_, entries| {
            for e in entries.iter_mut() {
                e.to = renumber(e.to);
            }
            entries.retain(|e| e.to != 0);
            !entries.is_empty()
        });
    }
}

/// What a neighbour with `queued` still waiting is sent once `newer` (of the same origin)
/// arrives: `newer`, with its services as one delta from where `queued`'s started and its
/// body as its change from where `queued`'s started (or in full where they do not chain).
fn chained(queued: &Record, newer: &Record) -> Record {
    let delta = match (&queued.delta, &newer.delta) {
        (Some(first), Some(then)) => first.then(then).map(Arc::new),
        _ => None,
    };
    let body_form = match (&queued.body_form, &newer.body_form) {
        (BodyForm::From { seq, base }, BodyForm::From { .. }) => BodyForm::From {
            seq: *seq,
            base: base.clone(),
        },
        _ => BodyForm::Full,
    };
    Record {
        delta,
        body_form,
        ..newer.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use crate::records::RecordBody;
    use proptest::prelude::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    /// Version `seq` of origin `o`, its body a change from version `base` when given.
    fn version(o: u8, seq: u64, base: Option<u64>) -> Record {
        let mut record = Record::new(NodeId::new(addr(100 + o), 1), seq, RecordBody::default());
        if let Some(seq) = base {
            record.body_form = BodyForm::From {
                seq,
                base: Arc::default(),
            };
        }
        record
    }

    /// What the record of a neighbour's copy says: origin, seq, and where its body chains
    /// from.
    type Shape = (SocketAddr, u64, Option<u64>);

    fn shape(r: &Record) -> Shape {
        let base = match r.body_form {
            BodyForm::From { seq, .. } => Some(seq),
            _ => None,
        };
        (r.origin.addr, r.seq, base)
    }

    /// The queue as it was: a map of maps, a copy per neighbour.
    #[derive(Default)]
    struct Model(BTreeMap<SocketAddr, BTreeMap<SocketAddr, Record>>);

    impl Model {
        fn queue(&mut self, record: &Record, targets: &[SocketAddr]) {
            for &t in targets {
                let queue = self.0.entry(t).or_default();
                match queue.get_mut(&record.origin.addr) {
                    Some(q) if q.version() < record.version() => *q = chained(q, record),
                    Some(_) => {}
                    None => {
                        queue.insert(record.origin.addr, record.clone());
                    }
                }
            }
        }

        fn peer_holds(&mut self, peer: &SocketAddr, origin: &SocketAddr, v: (u64, u64)) -> bool {
            let Some(queue) = self.0.get_mut(peer) else {
                return false;
            };
            if queue.get(origin).is_some_and(|r| r.version() <= v) {
                queue.remove(origin);
                return true;
            }
            false
        }

        fn take(&mut self) -> Vec<(SocketAddr, Vec<Shape>)> {
            std::mem::take(&mut self.0)
                .into_iter()
                .map(|(n, q)| (n, q.values().map(shape).collect()))
                .collect()
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Origin, seq, whether it chains from the one before, and the targets (bits of
        /// six neighbours).
        Queue(u8, u64, bool, u8),
        Holds(u8, u8, u64),
        Take,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..4, 1u64..6, any::<bool>(), 0u8..64).prop_map(|(o, s, c, t)| Op::Queue(o, s, c, t)),
            2 => (0u8..6, 0u8..4, 1u64..6).prop_map(|(p, o, s)| Op::Holds(p, o, s)),
            1 => Just(Op::Take),
        ]
    }

    proptest! {
        /// Every neighbour is sent what the map of maps sent it, in the same order, and
        /// the same copies are dropped.
        #[test]
        fn the_shared_queue_sends_what_a_queue_per_neighbour_sent(
            ops in prop::collection::vec(op(), 0..80)
        ) {
            let active: Vec<SocketAddr> = (1..=6).map(addr).collect();
            let (mut queue, mut model) = (FloodQueue::default(), Model::default());
            for op in ops {
                match op {
                    Op::Queue(o, seq, chains, mask) => {
                        let record = version(o, seq, chains.then(|| seq - 1));
                        let targets: Vec<SocketAddr> = (0..6)
                            .filter(|i| mask >> i & 1 == 1)
                            .map(|i| active[i])
                            .collect();
                        queue.queue(&record, &targets, &active);
                        model.queue(&record, &targets);
                        prop_assert_eq!(queue.is_empty(), model.0.is_empty());
                    }
                    Op::Holds(p, o, seq) => {
                        let (peer, origin) = (active[p as usize], addr(100 + o));
                        prop_assert_eq!(
                            queue.peer_holds(&peer, &origin, (1, seq)),
                            model.peer_holds(&peer, &origin, (1, seq))
                        );
                    }
                    Op::Take => {
                        let got: Vec<_> = queue
                            .take()
                            .into_iter()
                            .map(|(n, rs)| (n, rs.iter().map(shape).collect::<Vec<_>>()))
                            .collect();
                        prop_assert_eq!(got, model.take());
                    }
                }
            }
        }
    }

    #[test]
    fn a_full_mask_gives_up_the_neighbours_that_left_first() {
        let mut queue = FloodQueue::default();
        let gone: Vec<SocketAddr> = (0..MAX_NEIGHBOURS as u16)
            .map(|i| SocketAddr::from(([10, 1, 0, 1], 8000 + i)))
            .collect();
        queue.queue(&version(0, 1, None), &gone, &gone);
        // All 64 bits are taken by neighbours that are no longer active.
        let (a, b) = (addr(1), addr(2));
        queue.queue(&version(1, 1, None), &[a, b], &[a, b]);
        let sent = queue.take();
        assert_eq!(
            sent.iter()
                .map(|(n, rs)| (*n, rs.len()))
                .collect::<Vec<_>>(),
            vec![(a, 1), (b, 1)],
            "the copies for neighbours that left are dropped, the new ones queued"
        );
    }
}
