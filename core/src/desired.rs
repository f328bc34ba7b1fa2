//! The desired data-plane state: every VIP's kernel services and weighted destinations,
//! from the backends every node reports and which of those nodes are reachable.
//!
//! Rules (DESIGN.md §2.6):
//! - A backend counts while the node that reports it (its *origin*) is reachable. If none
//!   of a service's backends has a reachable origin, all of them stay: a cut-off node keeps
//!   serving what it last knew rather than nothing.
//! - An IP VIP is one service; its backends of the other address family are ignored. A
//!   named VIP gets an address from [`NameTable`] and becomes up to two services, one per
//!   family of its backends.
//! - A destination reported twice (two origins, or two tasks) keeps the highest weight;
//!   weights are clamped to [`MAX_WEIGHT`] (a peer's record is not trusted).
//!
//! The state is maintained incrementally: [`DesiredState::set_origin`] and
//! [`DesiredState::set_reachable`] mark the VIPs they affect, and [`DesiredState::refresh`]
//! recomputes only those and returns the services that may have changed, so one backend
//! change costs work proportional to the reporting node's VIPs, not to the cluster's.
//!
//! Invariants: after `refresh`, `state()` equals [`DesiredState::compute_full`] over the same
//! inputs (checked by tests); `vip_services` maps every VIP with backends to exactly the
//! services it produced, and no two VIPs produce the same service (named addresses avoid
//! literal VIPs inside their prefixes); `origins` holds exactly the origins whose set is
//! not empty, with the reachability last given for them.

use crate::kernel::{Destinations, KernelState, Service, MAX_WEIGHT};
use crate::named::{in_v4_prefix, in_v6_prefix, NameTable};
use crate::services_delta::changed_vips;
use crate::vip::{Backend, Vip, VipAddr, VipSet};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

#[derive(Clone, Debug)]
struct Origin {
    services: Arc<VipSet>,
    reachable: bool,
}

/// The incrementally maintained desired state of one node.
#[derive(Clone, Debug, Default)]
pub struct DesiredState {
    origins: BTreeMap<SocketAddr, Origin>,
    /// Per VIP, the origins that report backends for it.
    vips: BTreeMap<Vip, BTreeSet<SocketAddr>>,
    /// How many VIPs (over protocols and ports) use each name.
    name_refs: BTreeMap<String, usize>,
    /// Literal VIP addresses inside the named prefixes, with their VIP counts.
    reserved4: BTreeMap<Ipv4Addr, usize>,
    reserved6: BTreeMap<Ipv6Addr, usize>,
    names: NameTable,
    names_dirty: bool,
    /// Counts the refreshes that changed `names` (a name came, went or moved).
    names_version: u64,
    vip_services: BTreeMap<Vip, Vec<Service>>,
    state: KernelState,
    dirty: BTreeSet<Vip>,
}

impl DesiredState {
    pub fn new() -> DesiredState {
        DesiredState::default()
    }

    /// The desired kernel state as of the last [`DesiredState::refresh`].
    pub fn state(&self) -> &KernelState {
        &self.state
    }

    /// The current addresses of named VIPs.
    pub fn names(&self) -> &NameTable {
        &self.names
    }

    /// Changes whenever [`DesiredState::names`] does (a shell republishes the names, for
    /// DNS, only then).
    pub fn names_version(&self) -> u64 {
        self.names_version
    }

    /// Whether a `refresh` has work to do.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.names_dirty
    }

    /// Every VIP with backends and the services it produces, in VIP order.
    pub fn vips(&self) -> impl Iterator<Item = (&Vip, &[Service])> + '_ {
        self.vip_services.iter().map(|(vip, s)| (vip, s.as_slice()))
    }

    /// The services `vip` currently produces.
    pub fn services_of(&self, vip: &Vip) -> &[Service] {
        self.vip_services.get(vip).map_or(&[], Vec::as_slice)
    }

    /// Records what `origin` reports now, and whether it is reachable now.
    pub fn set_origin(&mut self, origin: SocketAddr, services: Arc<VipSet>, reachable: bool) {
        let old = match self.origins.get(&origin) {
            Some(o) if Arc::ptr_eq(&o.services, &services) && !services.is_empty() => {
                self.set_reachable(origin, reachable);
                return;
            }
            Some(o) => o.services.clone(),
            // Nothing before, nothing now.
            None if services.is_empty() => return,
            None => VipSet::shared_empty(),
        };
        let changed: Vec<Vip> = changed_vips(&old, &services)
            .into_iter()
            .map(|(vip, _, _)| vip.clone())
            .collect();
        self.set_origin_changes(origin, services, &changed, reachable);
    }

    /// Records what `origin` reports now, knowing that only the VIPs in `changed` differ
    /// from what it reported before (a record that came as a delta): work in proportion
    /// to `changed`, not to the origin's VIPs. `reachable`: whether it is reachable now.
    pub fn set_origin_changes<'a>(
        &mut self,
        origin: SocketAddr,
        services: Arc<VipSet>,
        changed: impl IntoIterator<Item = &'a Vip>,
        reachable: bool,
    ) {
        let was_reachable = self.origins.get(&origin).map(|o| o.reachable);
        for vip in changed {
            let reported = self.vips.get(vip).is_some_and(|o| o.contains(&origin));
            match (reported, services.vips.contains_key(vip)) {
                (false, true) => self.add_vip_origin(vip, origin),
                (true, false) => self.remove_vip_origin(vip, origin),
                _ => {}
            }
            self.dirty.insert(vip.clone());
        }
        // An origin without backends is not kept: most hosts of a large cluster, and an
        // entry per host on every node would cost as much as the records.
        if services.is_empty() {
            self.origins.remove(&origin);
        } else {
            // Reachability changed too: every VIP the origin reports now is recomputed
            // (those it stopped reporting are in `changed`). The held set may be detached
            // here, so the new one is the one to go by.
            if was_reachable.is_some_and(|was| was != reachable) {
                self.dirty.extend(services.vips.keys().cloned());
            }
            self.origins.insert(
                origin,
                Origin {
                    services,
                    reachable,
                },
            );
        }
    }

    /// Whether `origin`'s entry holds exactly `services` (the same shared set; an empty
    /// set when there is no entry).
    pub fn holds(&self, origin: &SocketAddr, services: &Arc<VipSet>) -> bool {
        self.origins
            .get(origin)
            .map_or(services.is_empty(), |o| Arc::ptr_eq(&o.services, services))
    }

    /// Lets go of `origin`'s shared set so that its holder (the record store) can change it
    /// in place; then [`DesiredState::set_origin_changes`] gives the changed set, or
    /// [`DesiredState::reattach`] the unchanged one, before the next refresh.
    pub fn detach(&mut self, origin: SocketAddr) {
        if let Some(o) = self.origins.get_mut(&origin) {
            o.services = VipSet::shared_empty();
        }
    }

    /// Gives back a detached origin's set unchanged (nothing is recomputed).
    pub fn reattach(&mut self, origin: SocketAddr, services: Arc<VipSet>) {
        if let Some(o) = self.origins.get_mut(&origin) {
            o.services = services;
        }
    }

    /// Forgets `origin` entirely (its record was collected): its backends leave every VIP,
    /// even one where they were the last (the all-unreachable rule does not keep them), and
    /// a name or reserved literal it was the last to use is released.
    pub fn remove_origin(&mut self, origin: SocketAddr) {
        self.set_origin(origin, VipSet::shared_empty(), false);
    }

    /// Whether `origin` has an entry (it reports backends).
    pub fn has_origin(&self, origin: &SocketAddr) -> bool {
        self.origins.contains_key(origin)
    }

    /// Records whether `origin` is reachable (an origin without backends has no entry:
    /// [`DesiredState::set_origin`] is told again when it reports some).
    pub fn set_reachable(&mut self, origin: SocketAddr, reachable: bool) {
        let Some(o) = self.origins.get_mut(&origin) else {
            return;
        };
        if o.reachable == reachable {
            return;
        }
        o.reachable = reachable;
        self.dirty.extend(o.services.vips.keys().cloned());
    }

    /// Marks every VIP for recomputation (after the applied state was reset).
    pub fn mark_all_dirty(&mut self) {
        self.dirty.extend(self.vips.keys().cloned());
        self.names_dirty = true;
    }

    /// Recomputes the marked VIPs; returns every service that may have changed.
    pub fn refresh(&mut self) -> BTreeSet<Service> {
        if self.names_dirty {
            self.names_dirty = false;
            let reserved4: BTreeSet<Ipv4Addr> = self.reserved4.keys().copied().collect();
            let reserved6: BTreeSet<Ipv6Addr> = self.reserved6.keys().copied().collect();
            let names = NameTable::assign(
                self.name_refs.keys().map(String::as_str),
                &reserved4,
                &reserved6,
            );
            let changed: BTreeSet<String> = self
                .names
                .changed_names(&names)
                .into_iter()
                .map(str::to_owned)
                .collect();
            self.names = names;
            if !changed.is_empty() {
                self.names_version += 1;
                let moved = self.vips.keys().filter(|vip| match &vip.addr {
                    VipAddr::Named(name) => changed.contains(name),
                    VipAddr::Ip(_) => false,
                });
                self.dirty.extend(moved.cloned());
            }
        }
        let mut touched = BTreeSet::new();
        let dirty = std::mem::take(&mut self.dirty);
        // Two passes: a service can move from one VIP to another (a name pushed off an
        // address by a new literal), so every old service goes before any new one lands.
        for vip in &dirty {
            for service in self.vip_services.remove(vip).unwrap_or_default() {
                self.state.services.remove(&service);
                touched.insert(service);
            }
        }
        for vip in dirty {
            let produced = self.compute_vip(&vip);
            if produced.is_empty() {
                continue;
            }
            let mut services = Vec::with_capacity(produced.len());
            for (service, dests) in produced {
                self.state.services.insert(service, Arc::new(dests));
                touched.insert(service);
                services.push(service);
            }
            self.vip_services.insert(vip, services);
        }
        touched
    }

    /// The desired state computed from scratch, for checking the incremental path.
    pub fn compute_full(&self) -> KernelState {
        let mut copy = self.clone();
        copy.state = KernelState::default();
        copy.vip_services.clear();
        copy.names = NameTable::default();
        copy.mark_all_dirty();
        copy.refresh();
        copy.state
    }

    /// The services one VIP produces now.
    fn compute_vip(&self, vip: &Vip) -> Vec<(Service, Destinations)> {
        let Some(origins) = self.vips.get(vip) else {
            return Vec::new();
        };
        // Per family: (destinations of reachable origins, all destinations).
        let mut families: [(Destinations, Destinations); 2] = Default::default();
        for addr in origins {
            let Some(origin) = self.origins.get(addr) else {
                continue;
            };
            let Some(backends) = origin.services.vips.get(vip) else {
                continue;
            };
            for backend in backends {
                let (reachable, all) = &mut families[family(backend.ip)];
                let dest = SocketAddr::new(backend.ip, backend.port);
                merge(all, dest, backend);
                if origin.reachable {
                    merge(reachable, dest, backend);
                }
            }
        }
        let mut out = Vec::new();
        for (index, (reachable, all)) in families.into_iter().enumerate() {
            let dests = if reachable.is_empty() { all } else { reachable };
            if dests.is_empty() {
                continue;
            }
            let ip = match &vip.addr {
                VipAddr::Ip(ip) if family(*ip) == index => Some(*ip),
                VipAddr::Ip(_) => None,
                VipAddr::Named(name) if index == 0 => self.names.v4(name).map(IpAddr::V4),
                VipAddr::Named(name) => self.names.v6(name).map(IpAddr::V6),
            };
            if let Some(ip) = ip {
                let service = Service {
                    protocol: vip.protocol,
                    addr: SocketAddr::new(ip, vip.port),
                };
                out.push((service, dests));
            }
        }
        out
    }

    fn add_vip_origin(&mut self, vip: &Vip, origin: SocketAddr) {
        let origins = self.vips.entry(vip.clone()).or_default();
        if origins.insert(origin) && origins.len() == 1 {
            self.count_vip(vip, true);
        }
    }

    fn remove_vip_origin(&mut self, vip: &Vip, origin: SocketAddr) {
        let Some(origins) = self.vips.get_mut(vip) else {
            return;
        };
        if origins.remove(&origin) && origins.is_empty() {
            self.vips.remove(vip);
            self.count_vip(vip, false);
        }
    }

    /// Keeps the name and reserved-literal counts as a VIP appears or disappears.
    fn count_vip(&mut self, vip: &Vip, appears: bool) {
        let changed = match &vip.addr {
            VipAddr::Named(name) => bump(&mut self.name_refs, name.clone(), appears),
            VipAddr::Ip(IpAddr::V4(ip)) if in_v4_prefix(*ip) => {
                bump(&mut self.reserved4, *ip, appears)
            }
            VipAddr::Ip(IpAddr::V6(ip)) if in_v6_prefix(*ip) => {
                bump(&mut self.reserved6, *ip, appears)
            }
            VipAddr::Ip(_) => false,
        };
        self.names_dirty |= changed;
    }
}

/// Counts `key` up or down; true when it appeared or disappeared.
fn bump<K: Ord>(counts: &mut BTreeMap<K, usize>, key: K, up: bool) -> bool {
    if up {
        let count = counts.entry(key).or_insert(0);
        *count += 1;
        *count == 1
    } else {
        match counts.get_mut(&key) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                counts.remove(&key);
                true
            }
            None => false,
        }
    }
}

fn family(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 0,
        IpAddr::V6(_) => 1,
    }
}

/// Adds one backend; weights are clamped to what IPVS accepts (records come from peers).
fn merge(dests: &mut Destinations, dest: SocketAddr, backend: &Backend) {
    let incoming = backend.weight.min(MAX_WEIGHT);
    let weight = dests.entry(dest).or_insert(incoming);
    *weight = (*weight).max(incoming);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vip::Protocol;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn origin(i: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 61420)
    }

    fn vip(addr: &str, port: u16) -> Vip {
        let addr = match addr.parse() {
            Ok(ip) => VipAddr::Ip(ip),
            Err(_) => VipAddr::Named(addr.to_owned()),
        };
        Vip {
            protocol: Protocol::Tcp,
            addr,
            port,
        }
    }

    fn backend(agent: &str, port: u16, weight: u32) -> Backend {
        Backend {
            ip: ip(agent),
            port,
            agent: ip(agent),
            weight,
        }
    }

    fn set(entries: &[(Vip, Backend)]) -> Arc<VipSet> {
        let mut s = VipSet::new();
        for (v, b) in entries {
            s.insert(v.clone(), *b);
        }
        Arc::new(s)
    }

    fn dests(state: &KernelState, addr: &str) -> Vec<(SocketAddr, u32)> {
        let service = Service {
            protocol: Protocol::Tcp,
            addr: addr.parse().unwrap(),
        };
        state.services[&service]
            .iter()
            .map(|(d, w)| (*d, *w))
            .collect()
    }

    #[test]
    fn unreachable_origins_drop_out_unless_all_are() {
        let mut d = DesiredState::new();
        let v = vip("1.2.3.4", 80);
        d.set_origin(
            origin(1),
            set(&[(v.clone(), backend("10.0.0.1", 8000, 1))]),
            false,
        );
        d.set_origin(
            origin(2),
            set(&[(v.clone(), backend("10.0.0.2", 8000, 1))]),
            false,
        );
        d.refresh();
        // Neither origin is reachable yet: keep both.
        assert_eq!(dests(d.state(), "1.2.3.4:80").len(), 2);
        d.set_reachable(origin(1), true);
        let touched = d.refresh();
        assert_eq!(touched.len(), 1);
        assert_eq!(
            dests(d.state(), "1.2.3.4:80"),
            vec![("10.0.0.1:8000".parse().unwrap(), 1)]
        );
        d.set_reachable(origin(2), true);
        d.refresh();
        assert_eq!(dests(d.state(), "1.2.3.4:80").len(), 2);
        assert_eq!(d.state(), &d.compute_full());
    }

    /// A collected origin leaves even a service where every origin is unreachable (the
    /// keep-them-all rule must not keep a dead host's backends forever), and a named VIP
    /// it was the last to use gives its address back.
    #[test]
    fn a_removed_origin_leaves_entirely_and_releases_its_names() {
        let mut d = DesiredState::new();
        let v = vip("1.2.3.4", 80);
        let named = vip("web.marathon", 80);
        d.set_origin(
            origin(1),
            set(&[
                (v.clone(), backend("10.0.0.1", 8000, 1)),
                (named.clone(), backend("10.0.0.1", 8001, 1)),
            ]),
            false,
        );
        d.set_origin(
            origin(2),
            set(&[(v.clone(), backend("10.0.0.2", 8000, 1))]),
            false,
        );
        d.set_reachable(origin(1), false);
        d.set_reachable(origin(2), false);
        d.refresh();
        assert_eq!(
            dests(d.state(), "1.2.3.4:80").len(),
            2,
            "all unreachable: all kept"
        );
        assert!(d.names().v4("web.marathon").is_some());
        d.remove_origin(origin(1));
        d.refresh();
        assert!(!d.has_origin(&origin(1)));
        assert_eq!(
            dests(d.state(), "1.2.3.4:80"),
            vec![("10.0.0.2:8000".parse().unwrap(), 1)]
        );
        assert!(d.services_of(&named).is_empty());
        assert!(d.names().v4("web.marathon").is_none(), "name released");
        assert_eq!(d.state().services.len(), 1);
        assert_eq!(d.state(), &d.compute_full());
        d.remove_origin(origin(2));
        d.refresh();
        assert!(d.state().services.is_empty());
    }

    #[test]
    fn drain_weight_and_duplicates_keep_the_highest_weight() {
        let mut d = DesiredState::new();
        let v = vip("1.2.3.4", 80);
        d.set_origin(
            origin(1),
            set(&[
                (v.clone(), backend("10.0.0.1", 8000, 0)),
                (v.clone(), backend("10.0.0.1", 8001, 0)),
            ]),
            false,
        );
        d.set_origin(
            origin(2),
            set(&[(v.clone(), backend("10.0.0.1", 8000, 1))]),
            false,
        );
        d.refresh();
        assert_eq!(
            dests(d.state(), "1.2.3.4:80"),
            vec![
                ("10.0.0.1:8000".parse().unwrap(), 1),
                ("10.0.0.1:8001".parse().unwrap(), 0)
            ]
        );
    }

    #[test]
    fn named_vips_split_by_family_and_avoid_literals() {
        let mut d = DesiredState::new();
        let named = vip("web.marathon", 80);
        d.set_origin(
            origin(1),
            set(&[
                (named.clone(), backend("10.0.0.1", 8000, 1)),
                (named.clone(), backend("fd00::1", 8000, 1)),
            ]),
            false,
        );
        d.refresh();
        let services = d.services_of(&named).to_vec();
        assert_eq!(services.len(), 2);
        let v4 = d.names().v4("web.marathon").unwrap();
        assert_eq!(services[0].addr, SocketAddr::new(IpAddr::V4(v4), 80));
        assert!(services[1].addr.is_ipv6());
        // A literal VIP lands on the named address: the name moves, nothing is shared.
        let literal = vip(&v4.to_string(), 80);
        d.set_origin(
            origin(2),
            set(&[(literal.clone(), backend("10.0.0.2", 9000, 1))]),
            false,
        );
        d.refresh();
        let moved = d.services_of(&named)[0];
        assert_ne!(moved.addr.ip(), IpAddr::V4(v4));
        assert_eq!(d.services_of(&literal)[0].addr.ip(), IpAddr::V4(v4));
        assert_eq!(d.state().services.len(), 3);
        assert_eq!(d.state(), &d.compute_full());
    }

    #[test]
    fn an_ip_vip_ignores_backends_of_the_other_family() {
        let mut d = DesiredState::new();
        let v = vip("1.2.3.4", 80);
        d.set_origin(
            origin(1),
            set(&[(v.clone(), backend("fd00::1", 80, 1))]),
            false,
        );
        d.refresh();
        assert!(d.state().services.is_empty());
    }

    /// An origin without backends has no entry (most hosts of a large cluster; an entry
    /// each was 15% of a 1,000-node simulation's memory), and one that was reachable while
    /// it had none counts as reachable once it reports some.
    #[test]
    fn an_origin_without_backends_has_no_entry() {
        let mut d = DesiredState::new();
        let v = vip("1.2.3.4", 80);
        d.set_origin(origin(1), set(&[]), true);
        d.set_reachable(origin(1), true);
        d.set_reachable(origin(2), false);
        assert!(!d.has_origin(&origin(1)) && !d.has_origin(&origin(2)));
        d.set_origin(
            origin(1),
            set(&[(v.clone(), backend("10.0.0.1", 8000, 1))]),
            true,
        );
        d.set_origin(
            origin(2),
            set(&[(v.clone(), backend("10.0.0.2", 8000, 1))]),
            false,
        );
        d.refresh();
        assert_eq!(
            dests(d.state(), "1.2.3.4:80"),
            vec![("10.0.0.1:8000".parse().unwrap(), 1)],
            "only the reachable origin's backend"
        );
        d.set_origin(origin(1), set(&[]), true);
        d.refresh();
        assert!(!d.has_origin(&origin(1)), "emptied: the entry goes");
        assert_eq!(dests(d.state(), "1.2.3.4:80").len(), 1);
        assert_eq!(d.state(), &d.compute_full());
    }

    /// A delta that arrives with a change of reachability, while the held set is
    /// detached: every VIP the origin reports is recomputed, not only the changed ones.
    #[test]
    fn a_detached_origin_that_becomes_reachable_is_recomputed_whole() {
        let mut d = DesiredState::new();
        let (a, b) = (vip("1.2.3.4", 80), vip("1.2.3.5", 80));
        let both = |host: &str, weight: u32| {
            set(&[
                (a.clone(), backend(host, 8000, weight)),
                (b.clone(), backend(host, 8000, 1)),
            ])
        };
        d.set_origin(origin(1), both("10.0.0.1", 1), false);
        d.set_origin(origin(2), both("10.0.0.2", 1), true);
        d.refresh();
        assert_eq!(
            dests(d.state(), "1.2.3.5:80").len(),
            1,
            "only the reachable one"
        );
        d.detach(origin(1));
        d.set_origin_changes(origin(1), both("10.0.0.1", 0), [&a], true);
        d.refresh();
        assert_eq!(dests(d.state(), "1.2.3.5:80").len(), 2, "B recomputed too");
        assert_eq!(d.state(), &d.compute_full());
    }

    #[test]
    fn removing_the_last_backend_removes_the_service() {
        let mut d = DesiredState::new();
        let v = vip("1.2.3.4", 80);
        d.set_origin(
            origin(1),
            set(&[(v.clone(), backend("10.0.0.1", 8000, 1))]),
            false,
        );
        d.refresh();
        d.set_origin(origin(1), set(&[]), false);
        let touched = d.refresh();
        assert_eq!(touched.len(), 1);
        assert!(d.state().services.is_empty());
        assert!(!d.is_dirty());
    }
}
