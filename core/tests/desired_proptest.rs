//! Property tests of the incremental desired state: whatever order origins report and
//! change reachability in, the incremental state equals the state computed from scratch,
//! equals a state built afresh from what every origin reports now and whether it is
//! reachable now (the state keeps no entry for an origin without backends, so it must be
//! told an origin's reachability when its first backends come), and the kernel
//! operations it yields lead the applied state to it.

use minuteman_core::desired::DesiredState;
use minuteman_core::kernel::{self, KernelState};
use minuteman_core::{Backend, Protocol, Vip, VipAddr, VipSet};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Step {
    Report {
        origin: u8,
        set: Vec<(u8, u8, u8, bool)>,
    },
    Reachable {
        origin: u8,
        reachable: bool,
    },
}

fn origin(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 61420)
}

/// VIP `v`: a few literal IPv4 ones (one inside the named prefix), one IPv6, a few names.
fn vip(v: u8) -> Vip {
    let addr = match v % 6 {
        0 => VipAddr::Ip(IpAddr::V4(Ipv4Addr::new(1, 2, 3, v))),
        1 => VipAddr::Ip(IpAddr::V4(Ipv4Addr::new(11, 0, 0, v))),
        2 => VipAddr::Ip(IpAddr::V6(Ipv6Addr::new(0xfd01, 0xd, 0, 0, 0, 0, 0, 1))),
        _ => VipAddr::Named(format!("svc-{}.marathon", v % 4)),
    };
    let protocol = if v.is_multiple_of(2) {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    Vip {
        protocol,
        addr,
        port: 80 + u16::from(v % 3),
    }
}

fn backend(b: u8, weight: u8, v6: bool) -> Backend {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(b % 4)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, b % 4))
    };
    Backend {
        ip,
        port: 8000 + u16::from(b % 3),
        agent: ip,
        weight: u32::from(weight % 2),
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..4, prop::collection::vec((0u8..12, 0u8..12, 0u8..2, any::<bool>()), 0..8))
            .prop_map(|(origin, set)| Step::Report { origin, set }),
        2 => (0u8..4, any::<bool>()).prop_map(|(origin, reachable)| Step::Reachable { origin, reachable }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn incremental_equals_full_and_ops_lead_there(steps in prop::collection::vec(step(), 1..30)) {
        let mut desired = DesiredState::new();
        let mut applied = KernelState::default();
        // What every origin reports now, and whether it is reachable now.
        let mut sets: BTreeMap<u8, Arc<VipSet>> = BTreeMap::new();
        let mut reachable: BTreeMap<u8, bool> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Report { origin: o, set } => {
                    let mut vips = VipSet::new();
                    for (v, b, w, v6) in set {
                        vips.insert(vip(v), backend(b, w, v6));
                    }
                    let vips = Arc::new(vips);
                    sets.insert(o, vips.clone());
                    let r = reachable.get(&o).copied().unwrap_or(false);
                    desired.set_origin(origin(o), vips, r);
                }
                Step::Reachable { origin: o, reachable: r } => {
                    reachable.insert(o, r);
                    desired.set_reachable(origin(o), r);
                }
            }
            let touched = desired.refresh();
            let ops = kernel::diff_services(&applied, desired.state(), &touched);
            applied.apply_all(&ops).expect("the ops apply");
            prop_assert_eq!(&applied, desired.state());
            prop_assert_eq!(desired.state(), &desired.compute_full());
            let mut fresh = DesiredState::new();
            for (o, set) in &sets {
                let r = reachable.get(o).copied().unwrap_or(false);
                fresh.set_origin(origin(*o), set.clone(), r);
            }
            fresh.refresh();
            prop_assert_eq!(desired.state(), fresh.state());
            // Services are never shared between VIPs.
            let mut seen = std::collections::BTreeSet::new();
            let vips: std::collections::BTreeSet<Vip> = (0..12).map(vip).collect();
            for v in &vips {
                for s in desired.services_of(v) {
                    prop_assert!(seen.insert(*s), "service {:?} produced twice", s);
                }
            }
        }
    }
}
