//! The difference between two [`VipSet`]s, as (VIP, backend) pairs added and removed: what a
//! node publishes when its Mesos state changes.
//!
//! Invariants:
//! - `a.apply(&a.diff(&b))` makes `a` equal to `b`, for every pair of sets that respect the
//!   [`VipSet`] invariant (no VIP without backends); `apply` keeps that invariant.
//! - A diff is minimal: `added` and `removed` are disjoint, `added` holds only pairs missing
//!   from the old set and `removed` only pairs present in it. A weight change is the old
//!   backend removed and the new one added (the weight is part of the backend).
//! - Everything is ordered (`BTreeSet`), so a diff iterates the same way on every node.

use crate::vip::{Backend, Vip, VipSet};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Pairs to add and to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipDiff {
    pub added: BTreeSet<(Vip, Backend)>,
    pub removed: BTreeSet<(Vip, Backend)>,
}

/// One VIP's share of a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipChange {
    pub added: BTreeSet<Backend>,
    pub removed: BTreeSet<Backend>,
}

impl VipDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// Number of pairs added plus removed.
    pub fn len(&self) -> usize {
        self.added.len() + self.removed.len()
    }

    /// The same diff grouped by VIP.
    pub fn by_vip(&self) -> BTreeMap<&Vip, VipChange> {
        let mut grouped: BTreeMap<&Vip, VipChange> = BTreeMap::new();
        for (vip, backend) in &self.added {
            grouped.entry(vip).or_default().added.insert(*backend);
        }
        for (vip, backend) in &self.removed {
            grouped.entry(vip).or_default().removed.insert(*backend);
        }
        grouped
    }
}

/// What turns `old` into `new`: one ordered merge over both sets (no lookups).
pub fn diff(old: &VipSet, new: &VipSet) -> VipDiff {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let pairs = |vip: &Vip, backends: &mut dyn Iterator<Item = &Backend>, out: &mut Vec<_>| {
        out.extend(backends.map(|b| (vip.clone(), *b)));
    };
    let mut old_vips = old.vips.iter().peekable();
    let mut new_vips = new.vips.iter().peekable();
    loop {
        match (old_vips.peek(), new_vips.peek()) {
            (None, None) => break,
            (Some(&(vip, backends)), None) => {
                pairs(vip, &mut backends.iter(), &mut removed);
                old_vips.next();
            }
            (None, Some(&(vip, backends))) => {
                pairs(vip, &mut backends.iter(), &mut added);
                new_vips.next();
            }
            (Some(&(old_vip, old_set)), Some(&(new_vip, new_set))) => match old_vip.cmp(new_vip) {
                Ordering::Less => {
                    pairs(old_vip, &mut old_set.iter(), &mut removed);
                    old_vips.next();
                }
                Ordering::Greater => {
                    pairs(new_vip, &mut new_set.iter(), &mut added);
                    new_vips.next();
                }
                Ordering::Equal => {
                    if old_set != new_set {
                        pairs(old_vip, &mut old_set.difference(new_set), &mut removed);
                        pairs(new_vip, &mut new_set.difference(old_set), &mut added);
                    }
                    old_vips.next();
                    new_vips.next();
                }
            },
        }
    }
    // Both lists are already in order, so building the sets is linear.
    VipDiff {
        added: added.into_iter().collect(),
        removed: removed.into_iter().collect(),
    }
}

/// Applies `diff` to `set`: removals first, then additions; a VIP left without backends is
/// dropped.
pub fn apply(set: &mut VipSet, diff: &VipDiff) {
    for (vip, backend) in &diff.removed {
        if let Some(backends) = set.vips.get_mut(vip) {
            backends.remove(backend);
            if backends.is_empty() {
                set.vips.remove(vip);
            }
        }
    }
    for (vip, backend) in &diff.added {
        set.insert(vip.clone(), *backend);
    }
}

/// `diff` and `apply` as methods of [`VipSet`].
pub trait VipSetDiff {
    /// What turns `self` into `other`.
    fn diff(&self, other: &VipSet) -> VipDiff;
    /// Applies a diff in place.
    fn apply(&mut self, diff: &VipDiff);
}

impl VipSetDiff for VipSet {
    fn diff(&self, other: &VipSet) -> VipDiff {
        diff(self, other)
    }

    fn apply(&mut self, diff: &VipDiff) {
        apply(self, diff)
    }
}
