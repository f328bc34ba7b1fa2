//! Backend deltas: how one node's VIP backends changed between two versions of its record,
//! so that a change to one task among thousands travels (and is applied) in proportion to
//! the change, not to the node's backend count.
//!
//! A node's services carry their own counter, `services_seq`: the record sequence number of
//! the version that last changed them. A [`ServicesDelta`] leads from the services at
//! `base` to those at `seq` by listing, for every VIP whose backends changed, its new
//! backends (an empty set: the VIP is gone). `base == seq` with nothing listed says "the
//! services did not change in this version".
//!
//! Invariants: `vips` is sorted by VIP with no VIP twice; `base <= seq`; applying
//! [`ServicesDelta::between`]`(old, new)` to `old` gives `new` (proptest), and applying
//! `a` then `b` equals applying [`ServicesDelta::then`]`(a, b)`.

use crate::vip::{Backends, Vip, VipSet};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The changes of one node's services from `services_seq == base` to `services_seq == seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesDelta {
    pub base: u64,
    pub seq: u64,
    /// Every VIP whose backends changed, with its new backends (empty: removed), by VIP.
    pub vips: Vec<(Vip, Backends)>,
}

/// One VIP that differs between two sets: the VIP, its backends before and after.
pub type ChangedVip<'a> = (&'a Vip, Option<&'a Backends>, Option<&'a Backends>);

impl ServicesDelta {
    /// "Nothing changed": the services are still those of `seq`.
    pub fn unchanged(seq: u64) -> ServicesDelta {
        ServicesDelta {
            base: seq,
            seq,
            vips: Vec::new(),
        }
    }

    /// The delta from `old` (at `base`) to `new` (at `seq`).
    pub fn between(old: &VipSet, new: &VipSet, base: u64, seq: u64) -> ServicesDelta {
        let vips = changed_vips(old, new)
            .into_iter()
            .map(|(vip, _, is)| (vip.clone(), is.cloned().unwrap_or_default()))
            .collect();
        ServicesDelta { base, seq, vips }
    }

    /// Applies the changes to `set` (the services at `base`).
    pub fn apply_to(&self, set: &mut VipSet) {
        for (vip, backends) in &self.vips {
            if backends.is_empty() {
                set.vips.remove(vip);
            } else {
                set.vips.insert(vip.clone(), backends.clone());
            }
        }
    }

    /// This delta followed by `later`, as one delta; `None` if `later` does not start
    /// where this one ends.
    pub fn then(&self, later: &ServicesDelta) -> Option<ServicesDelta> {
        if later.base != self.seq {
            return None;
        }
        let mut vips = Vec::with_capacity(self.vips.len() + later.vips.len());
        let mut a = self.vips.iter().peekable();
        let mut b = later.vips.iter().peekable();
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((va, _)), Some((vb, _))) => va.cmp(vb),
            };
            match order {
                Ordering::Less => vips.push(a.next().expect("peeked").clone()),
                Ordering::Greater => vips.push(b.next().expect("peeked").clone()),
                Ordering::Equal => {
                    a.next();
                    vips.push(b.next().expect("peeked").clone());
                }
            }
        }
        Some(ServicesDelta {
            base: self.base,
            seq: later.seq,
            vips,
        })
    }

    /// Number of (VIP, backend) pairs listed.
    pub fn backend_count(&self) -> usize {
        self.vips.iter().map(|(_, b)| b.len()).sum()
    }

    /// Whether `vips` is sorted without repeats and `base <= seq` (a peer's delta is
    /// checked before it is applied).
    pub fn is_well_formed(&self) -> bool {
        self.base <= self.seq && self.vips.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

/// The VIPs whose backends differ between `old` and `new`, by a merge walk of both.
pub fn changed_vips<'a>(old: &'a VipSet, new: &'a VipSet) -> Vec<ChangedVip<'a>> {
    let mut out = Vec::new();
    let mut a = old.vips.iter().peekable();
    let mut b = new.vips.iter().peekable();
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match order {
            Ordering::Less => {
                let (vip, was) = a.next().expect("peeked");
                out.push((vip, Some(was), None));
            }
            Ordering::Greater => {
                let (vip, is) = b.next().expect("peeked");
                out.push((vip, None, Some(is)));
            }
            Ordering::Equal => {
                let (vip, was) = a.next().expect("peeked");
                let (_, is) = b.next().expect("peeked");
                if was != is {
                    out.push((vip, Some(was), Some(is)));
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

    proptest! {
        /// `between` then `apply_to` rebuilds the new set; composing two deltas equals
        /// applying them in turn, and lists no more VIPs than both together.
        #[test]
        fn deltas_rebuild_and_compose(a in entries(), b in entries(), c in entries()) {
            let (a, b, c) = (set(&a), set(&b), set(&c));
            let ab = ServicesDelta::between(&a, &b, 1, 2);
            prop_assert!(ab.is_well_formed());
            let mut rebuilt = a.clone();
            ab.apply_to(&mut rebuilt);
            prop_assert_eq!(&rebuilt, &b);
            let bc = ServicesDelta::between(&b, &c, 2, 5);
            let ac = ab.then(&bc).expect("contiguous");
            prop_assert!(ac.is_well_formed());
            prop_assert_eq!((ac.base, ac.seq), (1, 5));
            prop_assert!(ac.vips.len() <= ab.vips.len() + bc.vips.len());
            let mut composed = a.clone();
            ac.apply_to(&mut composed);
            prop_assert_eq!(&composed, &c);
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
