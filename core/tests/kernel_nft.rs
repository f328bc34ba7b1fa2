//! nftables rendering without a kernel: insta snapshots of full and incremental renderings
//! (IPv4 and IPv6, tcp and udp, weights 0/1/3, services and destinations added, removed
//! and re-weighted), and properties of the text (determinism, names, weights, no panic
//! and no injection on any input). `kernel_nft_kernel.rs` feeds the same text to `nft`.

use minuteman_core::kernel::nft::{
    chain_name, render_full, render_ops, representable, NftConfig, DEFAULT_TABLE,
};
use minuteman_core::kernel::{diff, Destinations, KernelState, Service};
use minuteman_core::Protocol;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

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

fn dests(list: &[(&str, u32)]) -> Destinations {
    list.iter().map(|&(a, w)| (sa(a), w)).collect()
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
    let d = s.services.get_mut(&web).unwrap();
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
fn snapshot_ops_change() {
    let (a, b) = (example(), changed());
    let ops = diff(&a, &b);
    insta::assert_snapshot!("ops_change", render_ops(&ops, &b, &NftConfig::default()));
}

#[test]
fn snapshot_ops_from_empty_and_to_empty() {
    let empty = KernelState::default();
    let config = NftConfig::default();
    let up = diff(&empty, &example());
    insta::assert_snapshot!("ops_from_empty", render_ops(&up, &example(), &config));
    let down = diff(&example(), &empty);
    insta::assert_snapshot!("ops_to_empty", render_ops(&down, &empty, &config));
}

#[test]
fn snapshot_ops_one_weight() {
    let a = example();
    let mut b = a.clone();
    let v6 = svc(Protocol::Tcp, "[fd01:c::1]:80");
    b.services
        .get_mut(&v6)
        .unwrap()
        .insert(sa("[fd02::2]:8080"), 1);
    let ops = diff(&a, &b);
    assert_eq!(ops.len(), 1);
    insta::assert_snapshot!(
        "ops_one_weight",
        render_ops(&ops, &b, &NftConfig::default())
    );
}

#[test]
fn no_ops_render_nothing() {
    assert_eq!(render_ops(&[], &example(), &NftConfig::default()), "");
}

#[test]
fn chain_names() {
    assert_eq!(
        chain_name(&svc(Protocol::Tcp, "1.2.3.4:5000")),
        "svc_tcp_1_2_3_4_5000"
    );
    assert_eq!(
        chain_name(&svc(Protocol::Udp, "[fd01:c::1]:53")),
        "svc_udp_fd01000c000000000000000000000001_53"
    );
    let longest = chain_name(&svc(
        Protocol::Udp,
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
    ));
    assert_eq!(longest.len(), 46);
    // The IPv4-mapped and the plain IPv6 spelling of "1.2.3.4" stay apart.
    assert_ne!(
        chain_name(&svc(Protocol::Tcp, "[::ffff:1.2.3.4]:80")),
        chain_name(&svc(Protocol::Tcp, "[::ffff:1:2:3:4]:80"))
    );
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
    assert!(out.contains("add rule inet minuteman svc_tcp_10_0_0_3_443 drop\n"));
    assert!(!out.contains("reject_forward"));
    let zero = NftConfig {
        masquerade_mark: Some(0),
        ..NftConfig::default()
    };
    assert!(!render_full(&example(), &zero).contains("masquerade"));
}

/// Weights whose sum exceeds numgen's u32 modulus are scaled; every live destination
/// keeps at least one value.
#[test]
fn huge_weights_are_scaled() {
    let s = svc(Protocol::Tcp, "10.0.0.1:80");
    let state = KernelState {
        services: [(
            s,
            dests(&[
                ("10.1.0.1:80", u32::MAX),
                ("10.1.0.2:80", u32::MAX),
                ("10.1.0.3:80", 1),
            ]),
        )]
        .into_iter()
        .collect(),
    };
    let out = render_full(&state, &NftConfig::default());
    let rule = out
        .lines()
        .find(|l| l.contains("numgen"))
        .expect("a dnat rule");
    let modulus: u64 = rule
        .split("mod ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|m| m.parse().ok())
        .expect("a modulus");
    assert!(modulus <= u64::from(u32::MAX), "{rule}");
    for d in ["10.1.0.1 . 80", "10.1.0.2 . 80", "10.1.0.3 . 80"] {
        assert!(rule.contains(d), "{d} missing from {rule}");
    }
}

/// A destination of the other family never reaches a DNAT rule (IPVS refuses it too).
#[test]
fn other_family_destinations_are_skipped() {
    let s = svc(Protocol::Tcp, "10.0.0.1:80");
    let state = KernelState {
        services: [(s, dests(&[("[fd02::1]:80", 5), ("10.1.0.1:80", 1)]))]
            .into_iter()
            .collect(),
    };
    let out = render_full(&state, &NftConfig::default());
    assert!(out.contains("mod 1 map { 0 : 10.1.0.1 . 80 }"), "{out}");
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
    let ops = diff(&KernelState::default(), &state);
    assert_eq!(render_ops(&ops, &state, &NftConfig::default()), "");
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
        ],
    )
        .prop_map(|(udp, addr)| {
            let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
            Service::new(protocol, addr)
        })
}

fn any_state() -> impl Strategy<Value = KernelState> {
    let dest = prop_oneof![
        any::<(u32, u16)>()
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        any::<(u128, u16)>()
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ];
    let weight = prop_oneof![0u32..4, any::<u32>()];
    btree_map(any_service(), btree_map(dest, weight, 0..5), 0..8)
        .prop_map(|services| KernelState { services })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn chain_names_are_unique_and_short(services in vec(any_service(), 0..40)) {
        let services: BTreeSet<Service> =
            services.into_iter().filter(representable).collect();
        let names: BTreeSet<String> = services.iter().map(chain_name).collect();
        prop_assert_eq!(names.len(), services.len());
        for n in &names {
            prop_assert!(n.len() <= 46 && n.is_ascii(), "{}", n);
        }
    }

    #[test]
    fn renderings_are_total_and_deterministic(
        a in any_state(),
        b in any_state(),
        table in ".{0,80}",
        masq in any::<Option<u32>>(),
        reject in any::<Option<u32>>(),
    ) {
        let config = NftConfig { table, masquerade_mark: masq, reject_mark: reject };
        let full = render_full(&b, &config);
        prop_assert_eq!(&full, &render_full(&b, &config));
        let ops = diff(&a, &b);
        let delta = render_ops(&ops, &b, &config);
        prop_assert_eq!(&delta, &render_ops(&ops, &b, &config));
        let table = config.table_name();
        for line in full.lines().chain(delta.lines()) {
            // every line is a command on our table or part of an element list
            let ours = line.contains(&format!(" inet {table} "))
                || line.ends_with(&format!(" inet {table}"))
                || line.starts_with('\t')
                || line == "}";
            prop_assert!(ours, "stray line {:?}", line);
        }
        for (service, _) in b.services.iter().filter(|(s, _)| representable(s)) {
            let chain = chain_name(service);
            let add_chain = format!("add chain inet {table} {chain}\n");
            prop_assert_eq!(full.matches(add_chain.as_str()).count(), 1);
        }
    }
}

/// The delta depends on which services the ops name and which they create, not on the
/// order or repetition of the ops.
#[test]
fn render_ops_ignores_op_order() {
    let (a, b) = (example(), changed());
    let ops = diff(&a, &b);
    let mut shuffled: Vec<_> = ops.iter().rev().cloned().collect();
    shuffled.extend(ops.iter().cloned());
    let config = NftConfig::default();
    assert_eq!(
        render_ops(&shuffled, &b, &config),
        render_ops(&ops, &b, &config)
    );
}
