//! Adjacency diffs: a record version's links as the change from the version before, so
//! that a version that drops or adds one neighbour costs that neighbour, not the whole
//! active view.
//!
//! A [`BodyDiff`] leads from the body of version `base` (same epoch; version 0 is the empty
//! body) to the next one: the neighbours `added` (none of them in the base) and `removed`
//! (all of them in the base), and the agents if they changed.
//!
//! Invariants: `added` and `removed` are sorted without repeats and disjoint;
//! [`BodyDiff::apply`] of [`BodyDiff::between`]`(a, b)` to `a` gives `b` (for sorted
//! adjacencies, proptest), and `apply` refuses a diff that does not fit its base (it would
//! remove a neighbour the base lacks or add one it has).

use crate::id::NodeId;
use crate::records::RecordBody;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::net::IpAddr;

/// The change of a record's body from version `base` to the next one sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyDiff {
    pub base: u64,
    pub added: Vec<NodeId>,
    pub removed: Vec<NodeId>,
    /// The new agents, if they changed.
    pub agents: Option<Vec<IpAddr>>,
}

impl BodyDiff {
    /// The diff from `old` (version `base`) to `new`; both adjacencies sorted.
    pub fn between(base: u64, old: &RecordBody, new: &RecordBody) -> BodyDiff {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let mut a = old.adjacency.iter().peekable();
        let mut b = new.adjacency.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(&&x), None) => {
                    removed.push(x);
                    a.next();
                }
                (None, Some(&&y)) => {
                    added.push(y);
                    b.next();
                }
                (Some(&&x), Some(&&y)) => match x.cmp(&y) {
                    Ordering::Less => {
                        removed.push(x);
                        a.next();
                    }
                    Ordering::Greater => {
                        added.push(y);
                        b.next();
                    }
                    Ordering::Equal => {
                        a.next();
                        b.next();
                    }
                },
            }
        }
        BodyDiff {
            base,
            added,
            removed,
            agents: (old.agents != new.agents).then(|| new.agents.clone()),
        }
    }

    /// The body this diff leads to from `old`, or `None` if it does not fit `old` (or is
    /// not sorted, repeats or overlaps).
    pub fn apply(&self, old: &RecordBody) -> Option<RecordBody> {
        let sorted = |v: &[NodeId]| v.windows(2).all(|w| w[0] < w[1]);
        if !sorted(&self.added) || !sorted(&self.removed) {
            return None;
        }
        let mut adjacency = Vec::with_capacity(old.adjacency.len() + self.added.len());
        let mut removed = self.removed.iter().peekable();
        for &n in &old.adjacency {
            if removed.peek() == Some(&&n) {
                removed.next();
            } else {
                adjacency.push(n);
            }
        }
        if removed.next().is_some() {
            return None;
        }
        let kept = adjacency.len();
        adjacency.extend_from_slice(&self.added);
        adjacency.sort_unstable();
        adjacency.dedup();
        if adjacency.len() != kept + self.added.len() {
            return None;
        }
        Some(RecordBody {
            adjacency,
            agents: self.agents.clone().unwrap_or_else(|| old.agents.clone()),
        })
    }

    /// Neighbours listed (added and removed).
    pub fn len(&self) -> usize {
        self.added.len() + self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.agents.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(ports: &[u16], agents: u8) -> RecordBody {
        let mut adjacency: Vec<NodeId> = ports
            .iter()
            .map(|&p| NodeId::new(([10, 0, 0, 1], p).into(), 1))
            .collect();
        adjacency.sort_unstable();
        adjacency.dedup();
        RecordBody {
            adjacency,
            agents: (0..agents).map(|a| IpAddr::from([10, 1, 0, a])).collect(),
        }
    }

    proptest! {
        #[test]
        fn a_diff_rebuilds_the_new_body(
            a in prop::collection::vec(0u16..12, 0..8),
            b in prop::collection::vec(0u16..12, 0..8),
            agents_a in 0u8..3,
            agents_b in 0u8..3,
        ) {
            let (old, new) = (body(&a, agents_a), body(&b, agents_b));
            let diff = BodyDiff::between(4, &old, &new);
            prop_assert_eq!(diff.apply(&old), Some(new.clone()));
            prop_assert!(diff.len() <= old.adjacency.len() + new.adjacency.len());
            // Applied to the wrong base, a non-empty diff is refused or gives another body.
            if !diff.added.is_empty() {
                prop_assert_eq!(diff.apply(&new), None, "adds what the base has");
            }
        }
    }

    #[test]
    fn one_changed_neighbour_costs_one_entry() {
        let (old, new) = (body(&[1, 2, 3, 4, 5], 1), body(&[1, 2, 3, 4, 6], 1));
        let diff = BodyDiff::between(7, &old, &new);
        assert_eq!((diff.added.len(), diff.removed.len()), (1, 1));
        assert_eq!(diff.agents, None);
        let full = postcard::to_allocvec(&new).unwrap().len();
        let small = postcard::to_allocvec(&diff).unwrap().len();
        assert!(small * 2 < full, "{small} vs {full}");
        let broken = BodyDiff {
            removed: vec![NodeId::new(([10, 0, 0, 1], 9).into(), 1)],
            ..diff
        };
        assert_eq!(broken.apply(&old), None, "removes what the base lacks");
    }
}
