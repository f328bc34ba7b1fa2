//! The data-plane diff: ordering examples, the "service 3 deleted services 4 and 5"
//! regression, and properties over random pairs of kernel states.
//!
//! Properties (proptest, `PROPTEST_CASES` to soak): applying `diff(a, b)` to `a` succeeds
//! and yields `b`; services equal on both sides get no op; `diff(a, a)` is empty; the op
//! count is the true minimum; ops come in the five documented phases, each in service then
//! destination order; `diff_services` over all services (listed any number of times, in
//! any order) equals `diff`, and over a subset equals `diff` filtered to that subset.

use minuteman_core::kernel::ApplyError;
use minuteman_core::kernel::{diff, diff_services, Destinations, KernelState, Op, Service};
use minuteman_core::Protocol;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tcp(addr: &str) -> Service {
    Service::new(Protocol::Tcp, addr.parse().unwrap())
}

fn sa(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

fn dests(list: &[(&str, u32)]) -> Destinations {
    list.iter().map(|&(a, w)| (sa(a), w)).collect()
}

fn state(list: &[(Service, Destinations)]) -> KernelState {
    KernelState {
        services: list
            .iter()
            .map(|(s, d)| (*s, Arc::new(d.clone())))
            .collect(),
    }
}

/// Services 1..=n at 10.0.0.i:80, each with two destinations of weight 1.
fn numbered(ids: &[u8]) -> KernelState {
    KernelState {
        services: ids
            .iter()
            .map(|&i| {
                (
                    tcp(&format!("10.0.0.{i}:80")),
                    Arc::new(dests(&[
                        (&format!("10.1.{i}.1:8080"), 1),
                        (&format!("10.1.{i}.2:8080"), 1),
                    ])),
                )
            })
            .collect(),
    }
}

#[test]
fn adding_service_3_keeps_services_4_and_5() {
    let applied = numbered(&[1, 2, 4, 5]);
    let desired = numbered(&[1, 2, 3, 4, 5]);
    let s3 = tcp("10.0.0.3:80");
    let ops = diff(&applied, &desired);
    assert_eq!(
        ops,
        vec![
            Op::AddService(s3),
            Op::AddDestination {
                service: s3,
                dest: sa("10.1.3.1:8080"),
                weight: 1
            },
            Op::AddDestination {
                service: s3,
                dest: sa("10.1.3.2:8080"),
                weight: 1
            },
        ]
    );
    assert_eq!(diff_services(&applied, &desired, [&s3]), ops);
    let mut kernel = applied.clone();
    kernel.apply_all(&ops).unwrap();
    assert_eq!(kernel, desired);
}

#[test]
fn identical_states_need_nothing() {
    let s = numbered(&[1, 2, 3]);
    assert!(diff(&s, &s).is_empty());
    assert!(diff(&KernelState::default(), &KernelState::default()).is_empty());
    assert!(diff_services(&s, &s, s.services.keys()).is_empty());
}

#[test]
fn phases_come_in_order() {
    let kept = tcp("10.0.0.1:80");
    let gone = tcp("10.0.0.2:80");
    let new = Service::new(Protocol::Udp, sa("[fd01::5]:53"));
    let untouched = tcp("10.0.0.9:80");
    let applied = state(&[
        (
            kept,
            dests(&[("10.1.0.1:80", 1), ("10.1.0.2:80", 1), ("10.1.0.3:80", 3)]),
        ),
        (gone, dests(&[("10.2.0.1:80", 1), ("10.2.0.2:80", 1)])),
        (untouched, dests(&[("10.9.0.1:80", 1)])),
    ]);
    let desired = state(&[
        (
            kept,
            // .1 drains (SetWeight 0), .2 leaves, .3 stays, .4 arrives
            dests(&[("10.1.0.1:80", 0), ("10.1.0.3:80", 3), ("10.1.0.4:80", 1)]),
        ),
        (new, dests(&[("[fd02::1]:53", 1), ("[fd02::2]:53", 0)])),
        (untouched, dests(&[("10.9.0.1:80", 1)])),
    ]);
    let ops = diff(&applied, &desired);
    assert_eq!(
        ops,
        vec![
            Op::AddService(new),
            Op::AddDestination {
                service: new,
                dest: sa("[fd02::1]:53"),
                weight: 1
            },
            Op::AddDestination {
                service: new,
                dest: sa("[fd02::2]:53"),
                weight: 0
            },
            Op::AddDestination {
                service: kept,
                dest: sa("10.1.0.4:80"),
                weight: 1
            },
            Op::SetWeight {
                service: kept,
                dest: sa("10.1.0.1:80"),
                weight: 0
            },
            Op::RemoveDestination {
                service: kept,
                dest: sa("10.1.0.2:80")
            },
            Op::RemoveService(gone),
        ]
    );
    insta::assert_json_snapshot!("phases", ops);
    let mut kernel = applied;
    kernel.apply_all(&ops).unwrap();
    assert_eq!(kernel, desired);
}

#[test]
fn phases_are_global_across_services() {
    // Two kept services: every add of either comes before every removal of either.
    let s1 = tcp("10.0.0.1:80");
    let s2 = tcp("10.0.0.2:80");
    let applied = state(&[
        (s1, dests(&[("10.1.0.1:80", 1)])),
        (s2, dests(&[("10.2.0.1:80", 1)])),
    ]);
    let desired = state(&[
        (s1, dests(&[("10.1.0.2:80", 1)])),
        (s2, dests(&[("10.2.0.2:80", 1)])),
    ]);
    let ops = diff(&applied, &desired);
    let kinds: Vec<&str> = ops
        .iter()
        .map(|op| match op {
            Op::AddDestination { .. } => "add",
            Op::RemoveDestination { .. } => "remove",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["add", "add", "remove", "remove"]);
    assert_eq!(ops[0].service(), &s1);
    assert_eq!(ops[1].service(), &s2);
}

#[test]
fn weight_change_is_one_set_weight() {
    let s = tcp("10.0.0.1:80");
    let a = state(&[(s, dests(&[("10.1.0.1:80", 1)]))]);
    let b = state(&[(s, dests(&[("10.1.0.1:80", 3)]))]);
    assert_eq!(
        diff(&a, &b),
        vec![Op::SetWeight {
            service: s,
            dest: sa("10.1.0.1:80"),
            weight: 3
        }]
    );
}

#[test]
fn removed_service_is_one_op() {
    let s = tcp("10.0.0.1:80");
    let a = state(&[(s, dests(&[("10.1.0.1:80", 1), ("10.1.0.2:80", 1)]))]);
    assert_eq!(
        diff(&a, &KernelState::default()),
        vec![Op::RemoveService(s)]
    );
}

#[test]
fn empty_service_is_created_and_kept() {
    let s = tcp("10.0.0.1:80");
    let a = state(&[(s, Destinations::new())]);
    assert_eq!(diff(&KernelState::default(), &a), vec![Op::AddService(s)]);
    assert!(diff(&a, &a).is_empty());
}

#[test]
fn diff_services_ignores_duplicates_and_strangers() {
    let applied = numbered(&[1, 2]);
    let desired = numbered(&[2, 3]);
    let s1 = tcp("10.0.0.1:80");
    let s2 = tcp("10.0.0.2:80");
    let s3 = tcp("10.0.0.3:80");
    let stranger = tcp("192.0.2.1:1");
    let ops = diff_services(&applied, &desired, [&s3, &s1, &s3, &stranger, &s2, &s1]);
    assert_eq!(ops, diff(&applied, &desired));
    assert_eq!(ops.len(), 4); // add s3 + 2 dests, remove s1
    assert!(diff_services(&applied, &desired, []).is_empty());
}

/// One change among 10,000 services: the one service's op, found by both functions.
#[test]
fn one_backend_among_many() {
    let mut applied = KernelState::default();
    for i in 0..10_000u32 {
        let [_, _, hi, lo] = i.to_be_bytes();
        let service = Service::new(
            Protocol::Tcp,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(11, 0, hi, lo)), 80),
        );
        let d = (1..=10u8)
            .map(|j| {
                (
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, j, hi, lo)), 8080),
                    1,
                )
            })
            .collect();
        applied.services.insert(service, Arc::new(d));
    }
    let mut desired = applied.clone();
    let changed = Service::new(Protocol::Tcp, sa("11.0.19.136:80")); // i = 5000
    let dest = sa("10.3.19.136:8080");
    Arc::make_mut(desired.services.get_mut(&changed).unwrap()).insert(dest, 0);
    let expected = vec![Op::SetWeight {
        service: changed,
        dest,
        weight: 0,
    }];
    assert_eq!(diff(&applied, &desired), expected);
    assert_eq!(diff_services(&applied, &desired, [&changed]), expected);
}

// ---- properties ------------------------------------------------------------------------

fn service_strategy() -> impl Strategy<Value = Service> {
    (
        any::<bool>(),
        any::<bool>(),
        1u8..=4,
        prop::sample::select(vec![53u16, 80]),
    )
        .prop_map(|(udp, v6, host, port)| {
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd01, 0xc, 0, 0, 0, 0, 0, u16::from(host)))
            } else {
                IpAddr::V4(Ipv4Addr::new(11, 0, 0, host))
            };
            let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
            Service::new(protocol, SocketAddr::new(ip, port))
        })
}

fn dests_strategy(v6: bool) -> impl Strategy<Value = Destinations> {
    let dest = (1u8..=5, prop::sample::select(vec![80u16, 8080])).prop_map(move |(host, port)| {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd02, 0, 0, 0, 0, 0, 0, u16::from(host)))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, host))
        };
        SocketAddr::new(ip, port)
    });
    let weight = prop::sample::select(vec![0u32, 1, 1, 1, 2, 3, 100, u32::MAX]);
    btree_map(dest, weight, 0..6)
}

fn state_strategy() -> impl Strategy<Value = KernelState> {
    vec(
        service_strategy().prop_flat_map(|s| (Just(s), dests_strategy(s.addr.is_ipv6()))),
        0..10,
    )
    .prop_map(|entries| KernelState {
        services: entries.into_iter().map(|(s, d)| (s, Arc::new(d))).collect(),
    })
}

/// Two states sharing much: `b` keeps a random part of `a` and overlays a random state.
fn pair_strategy() -> impl Strategy<Value = (KernelState, KernelState)> {
    (state_strategy(), state_strategy(), vec(any::<bool>(), 10)).prop_map(|(a, c, keep)| {
        let mut b = KernelState::default();
        for (i, (s, d)) in a.services.iter().enumerate() {
            if keep[i % keep.len()] {
                b.services.insert(*s, d.clone());
            }
        }
        b.services.extend(c.services);
        (a, b)
    })
}

/// The fewest ops that can turn `a` into `b`.
fn minimum(a: &KernelState, b: &KernelState) -> usize {
    let all: BTreeSet<&Service> = a.services.keys().chain(b.services.keys()).collect();
    all.into_iter()
        .map(|s| match (a.services.get(s), b.services.get(s)) {
            (None, Some(d)) => 1 + d.len(),
            (Some(_), None) => 1,
            (Some(x), Some(y)) => {
                let keys: BTreeSet<&SocketAddr> = x.keys().chain(y.keys()).collect();
                keys.into_iter().filter(|k| x.get(*k) != y.get(*k)).count()
            }
            (None, None) => 0,
        })
        .sum()
}

/// (phase, service, rank within the service, destination): must be strictly increasing.
fn sort_key(a: &KernelState, op: &Op) -> (u8, Service, u8, Option<SocketAddr>) {
    let new = !a.services.contains_key(op.service());
    match *op {
        Op::AddService(s) => (1, s, 0, None),
        Op::AddDestination { service, dest, .. } if new => (1, service, 1, Some(dest)),
        Op::AddDestination { service, dest, .. } => (2, service, 0, Some(dest)),
        Op::SetWeight { service, dest, .. } => (3, service, 0, Some(dest)),
        Op::RemoveDestination { service, dest } => (4, service, 0, Some(dest)),
        Op::RemoveService(s) => (5, s, 0, None),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn diff_applies_to_the_desired_state((a, b) in pair_strategy()) {
        let ops = diff(&a, &b);
        let mut kernel = a.clone();
        prop_assert_eq!(kernel.apply_all(&ops), Ok(()));
        prop_assert_eq!(&kernel, &b);
    }

    #[test]
    fn equal_services_are_never_touched((a, b) in pair_strategy()) {
        let ops = diff(&a, &b);
        for op in &ops {
            let s = op.service();
            prop_assert!(a.services.get(s) != b.services.get(s), "{op:?} touches an equal service");
        }
    }

    #[test]
    fn diff_with_itself_is_empty(a in state_strategy()) {
        prop_assert!(diff(&a, &a).is_empty());
        prop_assert!(diff_services(&a, &a, a.services.keys()).is_empty());
    }

    #[test]
    fn op_count_is_minimal((a, b) in pair_strategy()) {
        prop_assert_eq!(diff(&a, &b).len(), minimum(&a, &b));
    }

    #[test]
    fn ops_follow_the_phases((a, b) in pair_strategy()) {
        let ops = diff(&a, &b);
        let keys: Vec<_> = ops.iter().map(|op| sort_key(&a, op)).collect();
        for pair in keys.windows(2) {
            prop_assert!(pair[0] < pair[1], "out of order: {:?} then {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn diff_services_over_all_equals_diff(
        (a, b) in pair_strategy(),
        extra in vec(service_strategy(), 0..4),
        reverse in any::<bool>(),
    ) {
        let mut all: Vec<&Service> = a.services.keys().chain(b.services.keys()).collect();
        all.extend(extra.iter()); // services in neither state, or listed twice
        if reverse {
            all.reverse();
        }
        prop_assert_eq!(diff_services(&a, &b, all), diff(&a, &b));
    }

    #[test]
    fn diff_services_over_a_subset_is_diff_filtered(
        (a, b) in pair_strategy(),
        subset in vec(service_strategy(), 0..6),
    ) {
        let wanted: BTreeSet<&Service> = subset.iter().collect();
        let expected: Vec<Op> = diff(&a, &b)
            .into_iter()
            .filter(|op| wanted.contains(op.service()))
            .collect();
        prop_assert_eq!(diff_services(&a, &b, &subset), expected);
    }

    /// Applying ops out of the kernel's expectations fails with a typed error, never a panic,
    /// and a refused op changes nothing.
    #[test]
    fn refused_ops_change_nothing((a, b) in pair_strategy(), c in state_strategy()) {
        // ops meant for a, applied to an unrelated state c
        for op in diff(&a, &b) {
            let before = c.clone();
            let mut kernel = c.clone();
            if let Err(e) = kernel.apply(&op) {
                prop_assert_eq!(&kernel, &before);
                let _: &ApplyError = &e;
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
