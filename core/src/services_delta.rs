//! Backend deltas: how one node's VIP backends (and task records) changed between two
//! versions of its record, so that a change to one task among thousands travels (and is
//! applied) in proportion to the change, not to the node's backend count.
//!
//! A node's services carry their own counter, `services_seq`: the record sequence number of
//! the version that last changed them (its VIP backends or its task records). A
//! [`ServicesDelta`] leads from the services at `base` to those at `seq` by listing, for
//! every VIP whose backends changed, its new backends (an empty set: the VIP is gone), and
//! for every task name whose endpoints changed, its new endpoints (none: the name is gone).
//! `base == seq` with nothing listed says "the services did not change in this version".
//!
//! Invariants: `vips` and `tasks` are sorted by key with no key twice; `base <= seq`;
//! applying [`ServicesDelta::between`]`(old, new)` to `old` gives `new` (proptest), and
//! applying `a` then `b` equals applying [`ServicesDelta::then`]`(a, b)`.

use crate::tasks::{TaskEndpoints, TaskName, TaskSet};
use crate::vip::{Backends, Vip, VipSet};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The changes of one node's services from `services_seq == base` to `services_seq == seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesDelta {
    pub base: u64,
    pub seq: u64,
    /// Every VIP whose backends changed, with its new backends (empty: removed), by VIP.
    pub vips: Vec<(Vip, Backends)>,
    /// Every task name whose endpoints changed, with its new endpoints (empty: removed).
    pub tasks: Vec<(TaskName, TaskEndpoints)>,
}

/// One VIP that differs between two sets: the VIP, its backends before and after.
pub type ChangedVip<'a> = (&'a Vip, Option<&'a Backends>, Option<&'a Backends>);

impl ServicesDelta {
    /// "Nothing changed": the services are still those of `seq`.
    pub fn unchanged(seq: u64) -> ServicesDelta {
        ServicesDelta {
            base: seq,
            seq,
            ..ServicesDelta::default()
        }
    }

    /// Whether this says "nothing changed" (sent in two bytes).
    pub fn is_unchanged(&self) -> bool {
        self.base == self.seq && self.vips.is_empty() && self.tasks.is_empty()
    }

    /// The delta from `old` (at `base`) to `new` (at `seq`), VIP backends only (the task
    /// records are added with [`ServicesDelta::with_tasks`]).
    pub fn between(old: &VipSet, new: &VipSet, base: u64, seq: u64) -> ServicesDelta {
        ServicesDelta {
            base,
            seq,
            vips: changed(&old.vips, &new.vips),
            tasks: Vec::new(),
        }
    }

    /// This delta with the task records' change from `old` to `new`.
    pub fn with_tasks(mut self, old: &TaskSet, new: &TaskSet) -> ServicesDelta {
        self.tasks = changed(&old.names, &new.names);
        self
    }

    /// Applies the VIP changes to `set` (the services at `base`).
    pub fn apply_to(&self, set: &mut VipSet) {
        apply(&mut set.vips, &self.vips, Backends::is_empty);
    }

    /// Applies the task-record changes to `tasks` (those at `base`).
    pub fn apply_tasks_to(&self, tasks: &mut TaskSet) {
        apply(&mut tasks.names, &self.tasks, TaskEndpoints::is_empty);
    }

    /// This delta followed by `later`, as one delta; `None` if `later` does not start
    /// where this one ends.
    pub fn then(&self, later: &ServicesDelta) -> Option<ServicesDelta> {
        if later.base != self.seq {
            return None;
        }
        Some(ServicesDelta {
            base: self.base,
            seq: later.seq,
            vips: compose(&self.vips, &later.vips),
            tasks: compose(&self.tasks, &later.tasks),
        })
    }

    /// Number of (VIP, backend) pairs listed.
    pub fn backend_count(&self) -> usize {
        self.vips.iter().map(|(_, b)| b.len()).sum()
    }

    /// Number of task endpoints listed.
    pub fn endpoint_count(&self) -> usize {
        self.tasks.iter().map(|(_, e)| e.len()).sum()
    }

    /// Whether `vips` and `tasks` are sorted without repeats and `base <= seq` (a peer's
    /// delta is checked before it is applied).
    pub fn is_well_formed(&self) -> bool {
        self.base <= self.seq
            && self.vips.windows(2).all(|w| w[0].0 < w[1].0)
            && self.tasks.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

/// Every key whose value differs between `old` and `new`, with its new value (the default,
/// empty, value when it is gone).
fn changed<K: Ord + Clone, V: PartialEq + Clone + Default>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> Vec<(K, V)> {
    merge_walk(old, new)
        .into_iter()
        .map(|(key, _, is)| (key.clone(), is.cloned().unwrap_or_default()))
        .collect()
}

fn apply<K: Ord + Clone, V: Clone>(
    map: &mut BTreeMap<K, V>,
    changes: &[(K, V)],
    is_empty: impl Fn(&V) -> bool,
) {
    for (key, value) in changes {
        if is_empty(value) {
            map.remove(key);
        } else {
            map.insert(key.clone(), value.clone());
        }
    }
}

/// Two sorted change lists as one: a key in both takes its later value.
fn compose<K: Ord + Clone, V: Clone>(earlier: &[(K, V)], later: &[(K, V)]) -> Vec<(K, V)> {
    let mut out = Vec::with_capacity(earlier.len() + later.len());
    let mut a = earlier.iter().peekable();
    let mut b = later.iter().peekable();
    while let Some(order) = next_order(a.peek().map(|(k, _)| k), b.peek().map(|(k, _)| k)) {
        match order {
            Ordering::Less => out.push(a.next().expect("peeked").clone()),
            Ordering::Greater => out.push(b.next().expect("peeked").clone()),
            Ordering::Equal => {
                a.next();
                out.push(b.next().expect("peeked").clone());
            }
        }
    }
    out
}

/// Which side a merge walk of two sorted sequences takes next, from their next keys
/// (`Less`: the first, `Greater`: the second, `Equal`: both); `None` when both are done.
fn next_order<K: Ord>(a: Option<&K>, b: Option<&K>) -> Option<Ordering> {
    match (a, b) {
        (None, None) => None,
        (Some(_), None) => Some(Ordering::Less),
        (None, Some(_)) => Some(Ordering::Greater),
        (Some(a), Some(b)) => Some(a.cmp(b)),
    }
}

/// The VIPs whose backends differ between `old` and `new`, by a merge walk of both.
pub fn changed_vips<'a>(old: &'a VipSet, new: &'a VipSet) -> Vec<ChangedVip<'a>> {
    merge_walk(&old.vips, &new.vips)
}

/// The keys whose values differ between two maps, with the value before and after.
#[allow(clippy::type_complexity)]
fn merge_walk<'a, K: Ord, V: PartialEq>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> Vec<(&'a K, Option<&'a V>, Option<&'a V>)> {
    let mut out = Vec::new();
    let mut a = old.iter().peekable();
    let mut b = new.iter().peekable();
    while let Some(order) = next_order(a.peek().map(|(k, _)| *k), b.peek().map(|(k, _)| *k)) {
        match order {
            Ordering::Less => {
                let (key, was) = a.next().expect("peeked");
                out.push((key, Some(was), None));
            }
            Ordering::Greater => {
                let (key, is) = b.next().expect("peeked");
                out.push((key, None, Some(is)));
            }
            Ordering::Equal => {
                let (key, was) = a.next().expect("peeked");
                let (_, is) = b.next().expect("peeked");
                if was != is {
                    out.push((key, Some(was), Some(is)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vip::{Backend, Protocol, VipAddr};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn set(entries: &[(u8, u8)]) -> VipSet {
        let mut s = VipSet::new();
        for &(vip, backend) in entries {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, backend));
            s.insert(
                Vip {
                    protocol: Protocol::Tcp,
                    addr: VipAddr::Ip(IpAddr::V4(Ipv4Addr::new(11, 0, 0, vip))),
                    port: 80,
                },
                Backend {
                    ip,
                    port: 8080,
                    agent: ip,
                    weight: 1,
                },
            );
        }
        s
    }

    fn entries() -> impl Strategy<Value = Vec<(u8, u8)>> {
        prop::collection::vec((0u8..12, 0u8..6), 0..40)
    }

    /// Task records: name `t<task>`, one address per entry.
    fn tasks(entries: &[(u8, u8)]) -> TaskSet {
        let mut t = TaskSet::new();
        for &(task, host) in entries {
            t.insert(
                TaskName {
                    task: format!("t{task}"),
                    framework: "marathon".into(),
                },
                [crate::tasks::TaskEndpoint::Address(IpAddr::V4(
                    Ipv4Addr::new(10, 0, 0, host),
                ))],
            );
        }
        t
    }

    proptest! {
        /// `between` then `apply_to` rebuilds the new set; composing two deltas equals
        /// applying them in turn, and lists no more VIPs than both together.
        #[test]
        fn deltas_rebuild_and_compose(
            a in entries(), b in entries(), c in entries(),
            ta in entries(), tb in entries(), tc in entries(),
        ) {
            let (a, b, c) = (set(&a), set(&b), set(&c));
            let (ta, tb, tc) = (tasks(&ta), tasks(&tb), tasks(&tc));
            let ab = ServicesDelta::between(&a, &b, 1, 2).with_tasks(&ta, &tb);
            prop_assert!(ab.is_well_formed());
            let mut rebuilt = a.clone();
            ab.apply_to(&mut rebuilt);
            prop_assert_eq!(&rebuilt, &b);
            let mut rebuilt_tasks = ta.clone();
            ab.apply_tasks_to(&mut rebuilt_tasks);
            prop_assert_eq!(&rebuilt_tasks, &tb);
            let bc = ServicesDelta::between(&b, &c, 2, 5).with_tasks(&tb, &tc);
            let ac = ab.then(&bc).expect("contiguous");
            prop_assert!(ac.is_well_formed());
            prop_assert_eq!((ac.base, ac.seq), (1, 5));
            prop_assert!(ac.vips.len() <= ab.vips.len() + bc.vips.len());
            prop_assert!(ac.tasks.len() <= ab.tasks.len() + bc.tasks.len());
            let mut composed = a.clone();
            ac.apply_to(&mut composed);
            prop_assert_eq!(&composed, &c);
            let mut composed_tasks = ta.clone();
            ac.apply_tasks_to(&mut composed_tasks);
            prop_assert_eq!(&composed_tasks, &tc);
            prop_assert!(bc.then(&ab).is_none(), "not contiguous");
        }
    }

    #[test]
    fn one_changed_vip_costs_one_entry() {
        let old = set(&(0..100).map(|v| (v, 1)).collect::<Vec<_>>());
        let mut new = old.clone();
        new.insert(set(&[(7, 2)]).vips.into_keys().next().unwrap(), {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
            Backend {
                ip,
                port: 8080,
                agent: ip,
                weight: 1,
            }
        });
        let d = ServicesDelta::between(&old, &new, 3, 4);
        assert_eq!(d.vips.len(), 1);
        assert_eq!(d.backend_count(), 2);
        assert!(ServicesDelta::between(&old, &old, 4, 4).vips.is_empty());
        assert_eq!(
            ServicesDelta::unchanged(4),
            ServicesDelta::between(&old, &old, 4, 4)
        );
    }
}
