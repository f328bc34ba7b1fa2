//! nftables rendering without a kernel: insta snapshots of full and incremental renderings
//! (IPv4 and IPv6, tcp and udp, weights 0/1/3, services and destinations added, removed
//! and re-weighted), properties of the text (determinism, names, slots, no panic and no
//! injection on any input), and a strict model of the table (module `model`) in which a
//! delta applied over the full rendering of the applied state gives exactly the full
//! rendering of the desired one. `kernel_nft_kernel.rs` feeds the same text to `nft`.

use minuteman_core::kernel::nft::{
    modulus_chain, render_delta, render_full, representable, slot_map, slots, NftConfig,
    DEFAULT_TABLE, MAX_SLOTS,
};
use minuteman_core::kernel::{diff, Destinations, KernelState, Op, Service};
use minuteman_core::Protocol;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;

mod nft_model;
use nft_model as model;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sa(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

fn svc(protocol: Protocol, addr: &str) -> Service {
    Service::new(protocol, sa(addr))
}

fn dests(list: &[(&str, u32)]) -> Arc<Destinations> {
    Arc::new(list.iter().map(|&(a, w)| (sa(a), w)).collect())
}

/// tcp and udp, IPv4 and IPv6, weights 0/1/3, one service draining entirely.
fn example() -> KernelState {
    KernelState {
        services: [
            (
                svc(Protocol::Tcp, "10.0.0.1:80"),
                dests(&[
                    ("10.1.0.1:8080", 1),
                    ("10.1.0.2:8080", 3),
                    ("10.1.0.3:8080", 0),
                ]),
            ),
            (
                svc(Protocol::Udp, "10.0.0.2:53"),
                dests(&[("10.1.0.4:5353", 1)]),
            ),
            (
                svc(Protocol::Tcp, "10.0.0.3:443"),
                dests(&[("10.1.0.5:443", 0)]),
            ),
            (
                svc(Protocol::Tcp, "[fd01:c::1]:80"),
                dests(&[
                    ("[fd02::1]:8080", 3),
                    ("[fd02::2]:8080", 0),
                    ("[fd02::3]:8080", 1),
                ]),
            ),
            (
                svc(Protocol::Udp, "[fd01:c::2]:53"),
                dests(&[("[fd02::4]:53", 1)]),
            ),
        ]
        .into_iter()
        .collect(),
    }
}

/// `example()` after: a v4 and a v6 service added, one removed, weights changed (1→0,
/// 0→3), a destination added and one removed.
fn changed() -> KernelState {
    let mut s = example();
    let web = svc(Protocol::Tcp, "10.0.0.1:80");
    let d = Arc::make_mut(s.services.get_mut(&web).unwrap());
    d.insert(sa("10.1.0.1:8080"), 0);
    d.insert(sa("10.1.0.3:8080"), 3);
    d.remove(&sa("10.1.0.2:8080"));
    d.insert(sa("10.1.0.6:8080"), 1);
    s.services.remove(&svc(Protocol::Udp, "[fd01:c::2]:53"));
    s.services.insert(
        svc(Protocol::Udp, "10.0.0.4:123"),
        dests(&[("10.1.0.7:123", 1), ("10.1.0.8:123", 1)]),
    );
    s.services.insert(
        svc(Protocol::Tcp, "[fd01:c::3]:443"),
        dests(&[("[fd02::5]:443", 1)]),
    );
    s
}

/// The delta the data plane renders for `diff(a, b)`.
fn delta(a: &KernelState, b: &KernelState, config: &NftConfig) -> String {
    let ops = diff(a, b);
    render_delta(a, b, ops.iter().map(Op::service), config)
}

#[test]
fn snapshot_full() {
    insta::assert_snapshot!("full", render_full(&example(), &NftConfig::default()));
}

#[test]
fn snapshot_full_empty() {
    insta::assert_snapshot!(
        "full_empty",
        render_full(&KernelState::default(), &NftConfig::default())
    );
}

#[test]
fn snapshot_full_without_marks() {
    // No masquerade, and services without live destinations drop instead of reject.
    let config = NftConfig {
        table: "lb".into(),
        masquerade_mark: None,
        reject_mark: None,
    };
    insta::assert_snapshot!("full_without_marks", render_full(&example(), &config));
}

#[test]
fn snapshot_delta_change() {
    let (a, b) = (example(), changed());
    insta::assert_snapshot!("delta_change", delta(&a, &b, &NftConfig::default()));
}

#[test]
fn snapshot_delta_from_empty_and_to_empty() {
    let empty = KernelState::default();
    let config = NftConfig::default();
    insta::assert_snapshot!("delta_from_empty", delta(&empty, &example(), &config));
    insta::assert_snapshot!("delta_to_empty", delta(&example(), &empty, &config));
}

#[test]
fn snapshot_delta_one_weight() {
    let a = example();
    let mut b = a.clone();
    let v6 = svc(Protocol::Tcp, "[fd01:c::1]:80");
    Arc::make_mut(b.services.get_mut(&v6).unwrap()).insert(sa("[fd02::2]:8080"), 1);
    assert_eq!(diff(&a, &b).len(), 1);
    insta::assert_snapshot!("delta_one_weight", delta(&a, &b, &NftConfig::default()));
}

/// A destination added at the end of a service of 10: one slot element and the verdict
/// element, whose modulus chain another service already has.
#[test]
fn snapshot_delta_one_destination_among_many() {
    let web = svc(Protocol::Tcp, "10.0.0.1:80");
    let api = svc(Protocol::Tcp, "10.0.0.2:80");
    let ten = |third: u8| -> Arc<Destinations> {
        Arc::new(
            (1..=10u8)
                .map(|h| (SocketAddr::from(([10, 1, third, h], 8080)), 1))
                .collect(),
        )
    };
    let a = KernelState {
        services: [(web, ten(1)), (api, ten(2))].into_iter().collect(),
    };
    let mut b = a.clone();
    Arc::make_mut(b.services.get_mut(&api).unwrap()).remove(&sa("10.1.2.10:8080"));
    let mut c = b.clone();
    Arc::make_mut(c.services.get_mut(&web).unwrap()).insert(sa("10.1.1.11:8080"), 1);
    let config = NftConfig::default();
    // api leaves mod4_tcp_10 (web keeps it) for mod4_tcp_9, which is new.
    insta::assert_snapshot!("delta_leave_shared_chain", delta(&a, &b, &config));
    // web leaves mod4_tcp_10, which nobody uses any more, for mod4_tcp_11.
    insta::assert_snapshot!("delta_last_user_leaves", delta(&b, &c, &config));
}

#[test]
fn nothing_changed_renders_nothing() {
    let config = NftConfig::default();
    let (a, b) = (example(), changed());
    assert_eq!(render_delta(&a, &b, [], &config), "");
    // Listed but equal on both sides.
    assert_eq!(render_delta(&a, &a, a.services.keys(), &config), "");
    let unknown = svc(Protocol::Udp, "192.0.2.1:1");
    assert_eq!(render_delta(&a, &b, [&unknown], &config), "");
}

#[test]
fn modulus_chain_names() {
    assert_eq!(modulus_chain(true, Protocol::Tcp, 1), "mod4_tcp_1");
    assert_eq!(modulus_chain(false, Protocol::Udp, 1024), "mod6_udp_1024");
    assert_eq!(modulus_chain(true, Protocol::Udp, u32::MAX).len(), 19);
    assert_eq!(slot_map(true, Protocol::Tcp), "d4_tcp");
    assert_eq!(slot_map(false, Protocol::Udp), "d6_udp");
}

#[test]
fn table_names_are_sanitized() {
    let named = |table: &str| {
        NftConfig {
            table: table.into(),
            ..NftConfig::default()
        }
        .table_name()
    };
    assert_eq!(named("minuteman"), "minuteman");
    assert_eq!(named(""), DEFAULT_TABLE);
    assert_eq!(named("x; flush ruleset"), "x__flush_ruleset");
    assert_eq!(named("1abc"), "t_1abc");
    assert_eq!(named("é"), "t__");
    assert_eq!(named(&"a".repeat(300)).len(), 64);
    let out = render_full(
        &example(),
        &NftConfig {
            table: "evil\nflush ruleset".into(),
            ..NftConfig::default()
        },
    );
    assert!(!out.lines().any(|l| l.starts_with("flush ruleset")));
}

#[test]
fn overlapping_marks_fall_back_to_drop() {
    let config = NftConfig {
        masquerade_mark: Some(0x3),
        reject_mark: Some(0x1),
        ..NftConfig::default()
    };
    assert_eq!(config.effective_reject_mark(), None);
    let out = render_full(&example(), &config);
    assert!(out.contains("\ttcp . 10.0.0.3 . 443 : drop,\n"), "{out}");
    assert!(!out.contains("reject_forward"));
    assert!(!out.contains("no_destination"));
    let zero = NftConfig {
        masquerade_mark: Some(0),
        ..NftConfig::default()
    };
    assert!(!render_full(&example(), &zero).contains("masquerade"));
}

/// Weights whose sum exceeds MAX_SLOTS are scaled; every live destination keeps at least
/// one slot and the proportions hold.
#[test]
fn huge_weights_are_scaled() {
    let s = svc(Protocol::Tcp, "10.0.0.1:80");
    let d = dests(&[
        ("10.1.0.1:80", u32::MAX),
        ("10.1.0.2:80", u32::MAX / 2),
        ("10.1.0.3:80", 1),
    ]);
    let got = slots(&s, &d);
    let counts: Vec<u32> = got.iter().map(|&(_, c)| c).collect();
    // 1 + (w - 1) * (1024 - 3) / (sum - 3), rounded down: 681, 341 and 1 of 1023.
    assert_eq!(counts, [681, 341, 1], "{got:?}");
    let state = KernelState {
        services: [(s, d)].into_iter().collect(),
    };
    let out = render_full(&state, &NftConfig::default());
    assert!(
        out.contains("add chain inet minuteman mod4_tcp_1023\n"),
        "{out}"
    );
    assert!(out.contains("\t10.0.0.1 . 80 . 1022 : 10.1.0.3 . 80,\n"));
    assert!(!out.contains(" . 1023 : "));
    // Weights that fit are kept exactly.
    let d = dests(&[("10.1.0.1:80", 1000), ("10.1.0.2:80", 24)]);
    assert_eq!(slots(&s, &d).iter().map(|&(_, c)| c).sum::<u32>(), 1024);
    assert_eq!(slots(&s, &d)[0].1, 1000);
}

/// A destination of the other family never gets a slot (IPVS refuses it too).
#[test]
fn other_family_destinations_are_skipped() {
    let s = svc(Protocol::Tcp, "10.0.0.1:80");
    let state = KernelState {
        services: [(s, dests(&[("[fd02::1]:80", 5), ("10.1.0.1:80", 1)]))]
            .into_iter()
            .collect(),
    };
    let out = render_full(&state, &NftConfig::default());
    assert!(
        out.contains("\t10.0.0.1 . 80 . 0 : 10.1.0.1 . 80,\n"),
        "{out}"
    );
    assert!(out.contains(": goto mod4_tcp_1,"), "{out}");
    assert!(!out.contains("fd02"));
}

#[test]
fn scoped_ipv6_services_are_left_out() {
    let scoped = Service::new(
        Protocol::Tcp,
        SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 80, 0, 2)),
    );
    assert!(!representable(&scoped));
    let state = KernelState {
        services: [(scoped, dests(&[("[fe80::2]:80", 1)]))]
            .into_iter()
            .collect(),
    };
    assert_eq!(
        render_full(&state, &NftConfig::default()),
        render_full(&KernelState::default(), &NftConfig::default())
    );
    assert_eq!(
        delta(&KernelState::default(), &state, &NftConfig::default()),
        ""
    );
}

/// The delta depends on which services are listed, not on their order or repetition, and
/// listing every service of both states gives the same delta as listing the changed ones.
#[test]
fn render_delta_ignores_order_and_unchanged_services() {
    let (a, b) = (example(), changed());
    let config = NftConfig::default();
    let ops = diff(&a, &b);
    let listed: Vec<&Service> = ops.iter().map(Op::service).collect();
    let mut shuffled: Vec<&Service> = listed.iter().rev().copied().collect();
    shuffled.extend(listed.iter().copied());
    let expected = render_delta(&a, &b, listed, &config);
    assert_eq!(render_delta(&a, &b, shuffled, &config), expected);
    let every = a.services.keys().chain(b.services.keys());
    assert_eq!(render_delta(&a, &b, every, &config), expected);
}

// ---- properties over arbitrary (including hostile) states -----------------------------

fn any_service() -> impl Strategy<Value = Service> {
    (
        any::<bool>(),
        prop_oneof![
            any::<(u32, u16)>()
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
            any::<(u128, u16, u32, u32)>().prop_map(|(ip, port, flow, scope)| SocketAddr::V6(
                SocketAddrV6::new(Ipv6Addr::from(ip), port, flow % 2, scope % 2)
            )),
            (1u8..4, 1u16..3)
                .prop_map(|(h, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, h)), p)),
            (1u16..4, 1u16..3).prop_map(|(h, p)| SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0xfd01, 0xc, 0, 0, 0, 0, 0, h)),
                p
            )),
        ],
    )
        .prop_map(|(udp, addr)| {
            let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
            Service::new(protocol, addr)
        })
}

fn any_dests() -> impl Strategy<Value = Destinations> {
    let dest = prop_oneof![
        any::<(u32, u16)>()
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        any::<(u128, u16)>()
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        (1u8..6).prop_map(|h| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, h)), 80)),
        (1u16..6).prop_map(|h| SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd02, 0, 0, 0, 0, 0, 0, h)),
            80
        )),
    ];
    let weight = prop_oneof![4 => 0u32..4, 1 => any::<u32>()];
    btree_map(dest, weight, 0..6)
}

fn any_state() -> impl Strategy<Value = KernelState> {
    btree_map(any_service(), any_dests(), 0..8).prop_map(|services| KernelState {
        services: services
            .into_iter()
            .map(|(s, d)| (s, Arc::new(d)))
            .collect(),
    })
}

/// `a` partly kept, partly changed, with `c` laid over it: services kept, changed, added
/// and removed, with slot counts shared between services often.
fn pair() -> impl Strategy<Value = (KernelState, KernelState)> {
    (any_state(), any_state(), vec(0u8..3, 8)).prop_map(|(a, c, fate)| {
        let mut b = KernelState::default();
        for (i, (s, d)) in a.services.iter().enumerate() {
            match fate[i % fate.len()] {
                0 => {}
                1 => {
                    b.services.insert(*s, d.clone());
                }
                _ => {
                    let mut d = d.clone();
                    if let Some(w) = Arc::make_mut(&mut d).values_mut().next() {
                        *w = (*w + 1) % 4;
                    }
                    b.services.insert(*s, d);
                }
            }
        }
        b.services.extend(c.services);
        (a, b)
    })
}

fn any_config() -> impl Strategy<Value = NftConfig> {
    (
        ".{0,80}",
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<bool>(),
    )
        .prop_map(|(table, masq, reject, default)| {
            if default {
                NftConfig::default()
            } else {
                NftConfig {
                    table,
                    masquerade_mark: masq,
                    reject_mark: reject,
                }
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn slots_are_bounded_proportional_and_idempotent(
        service in any_service(),
        d in any_dests(),
    ) {
        let got = slots(&service, &d);
        let live: Vec<(SocketAddr, u32)> = d
            .iter()
            .filter(|(a, &w)| w > 0 && a.is_ipv4() == service.addr.is_ipv4())
            .map(|(a, &w)| (*a, w))
            .collect();
        prop_assert_eq!(
            got.iter().map(|&(a, _)| a).collect::<Vec<_>>(),
            live.iter().map(|&(a, _)| a).collect::<Vec<_>>()
        );
        let total: u64 = got.iter().map(|&(_, c)| u64::from(c)).sum();
        let sum: u64 = live.iter().map(|&(_, w)| u64::from(w)).sum();
        prop_assert!(total <= u64::from(MAX_SLOTS).max(live.len() as u64));
        if sum <= u64::from(MAX_SLOTS) {
            prop_assert_eq!(&got, &live);
        }
        for (&(_, c), &(_, w)) in got.iter().zip(&live) {
            prop_assert!(c >= 1 && c <= w);
        }
        // A heavier destination never gets fewer slots.
        for (x, y) in got.iter().zip(&live).flat_map(|p| got.iter().zip(&live).map(move |q| (p, q))) {
            if (x.1).1 >= (y.1).1 {
                prop_assert!((x.0).1 >= (y.0).1);
            }
        }
        let again: Destinations = got.iter().copied().collect();
        prop_assert_eq!(slots(&service, &again), got);
    }

    #[test]
    fn renderings_are_total_and_deterministic(
        (a, b) in pair(),
        config in any_config(),
    ) {
        let full = render_full(&b, &config);
        prop_assert_eq!(&full, &render_full(&b, &config));
        let d = delta(&a, &b, &config);
        prop_assert_eq!(&d, &delta(&a, &b, &config));
        let table = config.table_name();
        for line in full.lines().chain(d.lines()) {
            // every line is a command on our table or part of an element list
            let ours = line.contains(&format!(" inet {table} "))
                || line.ends_with(&format!(" inet {table}"))
                || line.starts_with('\t')
                || line == "}";
            prop_assert!(ours, "stray line {:?}", line);
        }
        // One modulus chain per slot count in use, one verdict element per service.
        let mut moduli = BTreeSet::new();
        for (service, dests) in b.services.iter().filter(|(s, _)| representable(s)) {
            let total: u32 = slots(service, dests).iter().map(|&(_, c)| c).sum();
            if total > 0 {
                moduli.insert(modulus_chain(service.addr.is_ipv4(), service.protocol, total));
            }
        }
        let chains: BTreeSet<String> = full
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("add chain inet {table} mod")))
            .map(|rest| format!("mod{rest}"))
            .collect();
        prop_assert_eq!(chains, moduli);
        let verdicts = full.lines().filter(|l| l.contains(" : goto ") || l.ends_with(" : drop,")).count();
        prop_assert_eq!(verdicts, b.services.keys().filter(|s| representable(s)).count());
    }

    /// Strictly modelled (every deleted element, flushed or deleted chain must exist, no
    /// element added twice, no chain deleted while an element goes to it, every goto
    /// target exists): full(a) then the delta holds exactly full(b), for the changed
    /// services and for every service listed.
    #[test]
    fn delta_over_full_equals_full_in_the_model(
        (a, b) in pair(),
        config in any_config(),
    ) {
        let fresh = model::Ruleset::after(&[&render_full(&b, &config)])
            .map_err(TestCaseError::fail)?;
        for d in [
            delta(&a, &b, &config),
            render_delta(&a, &b, a.services.keys().chain(b.services.keys()), &config),
        ] {
            let incremental = model::Ruleset::after(&[&render_full(&a, &config), &d])
                .map_err(|e| TestCaseError::fail(format!("{e}\ndelta:\n{d}")))?;
            prop_assert!(incremental == fresh, "delta:\n{}", d);
        }
        let over = model::Ruleset::after(&[&render_full(&a, &config), &render_full(&b, &config)])
            .map_err(TestCaseError::fail)?;
        prop_assert!(over == fresh);
    }
}

/// The model refuses what nft refuses: a delta over a table that does not hold `applied`.
#[test]
fn the_model_is_strict() {
    let config = NftConfig::default();
    let (a, b) = (example(), changed());
    let d = delta(&a, &b, &config);
    // Over the empty table the deletions fail.
    assert!(model::Ruleset::after(&[&render_full(&KernelState::default(), &config), &d]).is_err());
    // Over b already, the additions exist.
    assert!(model::Ruleset::after(&[&render_full(&b, &config), &d]).is_err());
    // A chain in use cannot go.
    let full = render_full(&a, &config);
    assert!(model::Ruleset::after(&[&full, "delete chain inet minuteman mod4_tcp_4\n"]).is_err());
    assert!(model::Ruleset::after(&[&full, "delete chain inet minuteman mod4_tcp_9\n"]).is_err());
    assert!(model::Ruleset::after(&[&full]).is_ok());
}
