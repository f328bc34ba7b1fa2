//! The nftables data plane against the real `nft` and kernel. Each test re-runs itself
//! inside a fresh network namespace (`unshare --net`, so the host's ruleset is never
//! touched and the namespace vanishes with the process):
//!
//! - the listing parser reads back exactly what `render_full` installed (less weight-0
//!   destinations), for examples and random states, and every reading compares equal;
//! - the real [`DataPlaneHandle`] applies deltas so that the listing matches its committed
//!   state, falls back to the full table when a delta is refused, resyncs the core when
//!   its ops do not follow, reads the kernel back when nothing applies, adopts the table
//!   after a restart without touching it, restores the table when someone flushes the
//!   ruleset, deletes an element or edits a rule, and `cleanup` removes it;
//! - the cost of one delta with 10,000 services × 10 destinations present (printed;
//!   `MINUTEMAN_SCALE_SERVICES` changes the count).
//!
//! Needs root, `nft` (Debian: nftables) and `unshare` (util-linux); without them each test
//! says why it is skipped and passes, unless `MINUTEMAN_REQUIRE_ROOT_SUITES=1`.
//! `MINUTEMAN_CAPTURE_LISTINGS=DIR` writes the listings of the examples to DIR.

mod kernel_support;
use kernel_support::runtime;
use minuteman::dataplane::listing::{self, compare, visible};
use minuteman::dataplane::nft::Nft;
use minuteman::dataplane::{
    cleanup, spawn, DataPlaneConfig, DataPlaneError, DataPlaneHandle, DataPlaneKind,
};
use minuteman::metrics::{ShellMetrics, Why};
use minuteman_core::kernel::nft::{render_delta, render_full, NftConfig};
use minuteman_core::kernel::{diff, Destinations, KernelState, Op, Service, MAX_WEIGHT};
use minuteman_core::Protocol;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Set in the copy of the test binary that runs inside the namespace.
const INSIDE: &str = "MINUTEMAN_DATAPLANE_NETNS";

/// Why the real-kernel checks cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Some("not root (a network namespace and nft need CAP_NET_ADMIN)".into());
    }
    match Command::new("unshare")
        .args(["--net", "nft", "--version"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`unshare --net nft --version` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!(
            "cannot run unshare/nft ({e}); install util-linux and nftables"
        )),
    }
}

/// Skips (with the reason) when the kernel suite cannot run, unless CI demands it by
/// setting `MINUTEMAN_REQUIRE_ROOT_SUITES=1`: then a skip is a failure.
fn skip(why: &str) {
    if std::env::var_os("MINUTEMAN_REQUIRE_ROOT_SUITES").is_some_and(|v| v == "1") {
        panic!("MINUTEMAN_REQUIRE_ROOT_SUITES=1 but the suite cannot run: {why}");
    }
    eprintln!("skipped: {why}");
}

/// True in the copy of this test that runs inside a fresh network namespace. Outside,
/// runs that copy (`unshare --net <this binary> <name> --exact`) and checks it passed, or
/// skips when the suite cannot run; then returns false.
fn inside_netns(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    if let Some(why) = unavailable() {
        skip(&why);
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .arg("--net")
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the test inside a network namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed inside its namespace"
    );
    false
}

fn sa(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

fn dests(list: &[(&str, u32)]) -> Arc<Destinations> {
    Arc::new(list.iter().map(|&(a, w)| (sa(a), w)).collect())
}

/// Every shape the rendering has: IPv4 and IPv6, TCP and UDP, one destination, several
/// with several slots, weight 0, no live destination, the other family, scaled weights.
fn example() -> KernelState {
    let s = |p, a: &str| Service::new(p, sa(a));
    KernelState {
        services: [
            (
                s(Protocol::Tcp, "10.0.0.1:80"),
                dests(&[
                    ("10.1.0.1:8080", 1),
                    ("10.1.0.2:8080", 3),
                    ("10.1.0.3:8080", 0),
                ]),
            ),
            (
                s(Protocol::Udp, "10.0.0.2:53"),
                dests(&[("10.1.0.4:5353", 1)]),
            ),
            (
                s(Protocol::Tcp, "10.0.0.3:443"),
                dests(&[("10.1.0.5:443", 0)]),
            ),
            (s(Protocol::Tcp, "10.0.0.5:22"), Arc::default()),
            (
                s(Protocol::Udp, "10.0.0.6:123"),
                dests(&[("[fd02::9]:123", 4), ("10.1.0.9:123", 2)]),
            ),
            (
                s(Protocol::Tcp, "[fd01:c::1]:80"),
                dests(&[
                    ("[fd02::1]:8080", 3),
                    ("[fd02::2]:8080", 0),
                    ("[::ffff:10.9.9.9]:8080", 1),
                ]),
            ),
            (
                s(Protocol::Udp, "[fd01:c::2]:53"),
                dests(&[("[fd02::4]:53", u32::MAX), ("[fd02::5]:53", MAX_WEIGHT)]),
            ),
            (s(Protocol::Udp, "[fd01:c::3]:53"), Arc::default()),
        ]
        .into_iter()
        .collect(),
    }
}

/// `example()` with a service changed, one removed and one added.
fn changed() -> KernelState {
    let mut s = example();
    let web = Service::new(Protocol::Tcp, sa("10.0.0.1:80"));
    if let Some(d) = s.services.get_mut(&web) {
        let d = Arc::make_mut(d);
        d.insert(sa("10.1.0.1:8080"), 0);
        d.insert(sa("10.1.0.3:8080"), 3);
        d.remove(&sa("10.1.0.2:8080"));
        d.insert(sa("10.1.0.6:8080"), 1);
    }
    s.services
        .remove(&Service::new(Protocol::Udp, sa("[fd01:c::2]:53")));
    s.services.insert(
        Service::new(Protocol::Udp, sa("10.0.0.4:123")),
        dests(&[("10.1.0.7:123", 1), ("10.1.0.8:123", 1)]),
    );
    s
}

fn configs() -> Vec<NftConfig> {
    vec![
        NftConfig::default(),
        NftConfig {
            table: "mm_test".into(),
            masquerade_mark: None,
            reject_mark: None,
        },
    ]
}

fn service_strategy() -> impl Strategy<Value = Service> {
    (any::<bool>(), any::<bool>(), 1u8..=20, 1u16..=3).prop_map(|(udp, v6, host, port)| {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd01, 0xc, 0, 0, 0, 0, 0, u16::from(host)))
        } else {
            IpAddr::V4(Ipv4Addr::new(11, 0, 0, host))
        };
        let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
        Service::new(protocol, SocketAddr::new(ip, port * 1000))
    })
}

fn state_strategy() -> impl Strategy<Value = KernelState> {
    let entry = service_strategy().prop_flat_map(|s| {
        let v6 = s.addr.is_ipv6();
        let dest = (1u8..=12, 1u16..=2).prop_map(move |(h, p)| {
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd02, 0, 0, 0, 0, 0, 0, u16::from(h)))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, h))
            };
            SocketAddr::new(ip, 8000 + p)
        });
        let weight = prop::sample::select(vec![0u32, 1, 1, 2, 3, 100, MAX_WEIGHT, u32::MAX]);
        (Just(s), btree_map(dest, weight, 0..12))
    });
    vec(entry, 0..12).prop_map(|e| KernelState {
        services: e.into_iter().map(|(s, d)| (s, Arc::new(d))).collect(),
    })
}

fn nft_for(config: &NftConfig) -> Nft {
    Nft::new(Path::new("nft"), config.table_name())
}

/// Installs `render_full(state)`, lists the table and parses it back.
fn round_trip(
    state: &KernelState,
    config: &NftConfig,
) -> Result<(String, listing::Listing), String> {
    let nft = nft_for(config);
    nft.run_blocking(&render_full(state, config))
        .map_err(|e| e.to_string())?;
    let text = nft
        .list_blocking()
        .map_err(|e| e.to_string())?
        .ok_or("no table after render_full")?;
    let parsed = listing::parse(&text).map_err(|e| format!("{e}\n{text}"))?;
    Ok((text, parsed))
}

fn check_round_trip(state: &KernelState, config: &NftConfig) -> Result<String, String> {
    let (text, parsed) = round_trip(state, config)?;
    if parsed.state != visible(state, config) {
        return Err(format!(
            "parsed {:#?}\nexpected {:#?}\n{text}",
            parsed.state,
            visible(state, config)
        ));
    }
    compare(&parsed, state, config).map_err(|e| format!("{e}\n{text}"))?;
    Ok(text)
}

#[test]
fn listings_parse_back_to_the_rendered_state() {
    if !inside_netns("listings_parse_back_to_the_rendered_state") {
        return;
    }
    let capture = std::env::var_os("MINUTEMAN_CAPTURE_LISTINGS").map(PathBuf::from);
    for (c, config) in configs().iter().enumerate() {
        for (name, state) in [
            ("empty", KernelState::default()),
            ("example", example()),
            ("changed", changed()),
        ] {
            let text = check_round_trip(&state, config).unwrap_or_else(|e| panic!("{e}"));
            if let Some(dir) = &capture {
                std::fs::write(dir.join(format!("{name}-config{c}.txt")), text).unwrap();
            }
        }
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config::with_cases(cases));
    runner
        .run(&(state_strategy(), 0..2usize), |(state, c)| {
            check_round_trip(&state, &configs()[c])
                .map(|_| ())
                .map_err(TestCaseError::fail)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `state` as the core desires it: without destinations of the other address family (the
/// core never asks for them, and the strict model refuses them).
fn core_like(state: &KernelState) -> KernelState {
    let mut state = state.clone();
    for (service, dests) in &mut state.services {
        Arc::make_mut(dests).retain(|d, _| d.is_ipv4() == service.addr.is_ipv4());
    }
    state
}

/// The listings `nft` printed for the examples (captured by
/// `listings_parse_back_to_the_rendered_state` with `MINUTEMAN_CAPTURE_LISTINGS`): name,
/// text, state, configuration.
fn captured() -> Vec<(&'static str, &'static str, KernelState, NftConfig)> {
    let [default, plain] = [configs()[0].clone(), configs()[1].clone()];
    vec![
        (
            "empty-config0",
            include_str!("data/listings/empty-config0.txt"),
            KernelState::default(),
            default.clone(),
        ),
        (
            "example-config0",
            include_str!("data/listings/example-config0.txt"),
            example(),
            default.clone(),
        ),
        (
            "changed-config0",
            include_str!("data/listings/changed-config0.txt"),
            changed(),
            default,
        ),
        (
            "empty-config1",
            include_str!("data/listings/empty-config1.txt"),
            KernelState::default(),
            plain.clone(),
        ),
        (
            "example-config1",
            include_str!("data/listings/example-config1.txt"),
            example(),
            plain.clone(),
        ),
        (
            "changed-config1",
            include_str!("data/listings/changed-config1.txt"),
            changed(),
            plain,
        ),
    ]
}

/// No root needed: what real nft printed parses to the state it was rendered from.
#[test]
fn captured_listings_parse_to_their_states() {
    for (name, text, state, config) in captured() {
        let parsed = listing::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.state, visible(&state, &config), "{name}");
        compare(&parsed, &state, &config).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            compare(&parsed, &KernelState::default(), &config).is_err()
                || state.services.is_empty()
        );
        let other = &configs()[usize::from(config == configs()[0])];
        assert!(
            compare(&parsed, &state, other).is_err(),
            "{name} under the other config"
        );
    }
    // What each shape reads as.
    let (_, text, _, _) = &captured()[1];
    let parsed = listing::parse(text).unwrap();
    let get = |proto, addr: &str| parsed.state.services[&Service::new(proto, sa(addr))].clone();
    assert_eq!(
        get(Protocol::Tcp, "10.0.0.1:80"),
        dests(&[("10.1.0.1:8080", 1), ("10.1.0.2:8080", 3)]),
        "slots, weight 0 left out"
    );
    assert_eq!(
        get(Protocol::Udp, "10.0.0.2:53"),
        dests(&[("10.1.0.4:5353", 1)]),
        "one slot"
    );
    assert_eq!(
        get(Protocol::Tcp, "10.0.0.3:443"),
        dests(&[]),
        "only weight 0: reject"
    );
    assert_eq!(
        get(Protocol::Udp, "10.0.0.6:123"),
        dests(&[("10.1.0.9:123", 2)]),
        "other family left out"
    );
    assert_eq!(
        get(Protocol::Udp, "[fd01:c::2]:53"),
        dests(&[("[fd02::4]:53", 682), ("[fd02::5]:53", 341)]),
        "weights past MAX_SLOTS scaled"
    );
}

/// No root needed: removing any line of a real listing is either refused by the parser
/// or seen by the comparison, never mistaken for the committed state.
#[test]
fn every_line_of_a_captured_listing_matters() {
    for (name, text, state, config) in captured() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let cut: String = lines
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, l)| format!("{l}\n"))
                .collect();
            if let Ok(parsed) = listing::parse(&cut) {
                assert!(
                    compare(&parsed, &state, &config).is_err(),
                    "{name}: without line {} (`{line}`) the listing still compares equal",
                    i + 1
                );
            }
        }
    }
}

proptest! {
    /// No root needed: the parser never panics on an edited real listing.
    #[test]
    fn edited_listings_never_panic(
        which in 0..6usize,
        edits in vec((any::<prop::sample::Index>(), any::<char>(), 0..3u8), 1..8),
    ) {
        let text = captured()[which].1;
        let mut chars: Vec<char> = text.chars().collect();
        for (at, c, kind) in edits {
            let len = chars.len();
            let i = at.index(len.max(1)).min(len.saturating_sub(1));
            match kind {
                0 if len > 0 => {
                    chars.remove(i);
                }
                1 => chars.insert(i.min(len), c),
                _ if len > 0 => chars[i] = c,
                _ => {}
            }
        }
        let edited: String = chars.into_iter().collect();
        let _ = listing::parse(&edited);
    }
}

/// Polls `cond` every 10 ms for up to 30 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn syncs(metrics: &ShellMetrics, reason: &'static str) -> u64 {
    metrics.kernel_syncs.get_or_create(&Why::new(reason)).get()
}

/// The table as listed now, compared with `state`.
fn assert_kernel_holds(nft: &Nft, state: &KernelState, config: &NftConfig) {
    let text = nft.list_blocking().unwrap().expect("the table exists");
    let parsed = listing::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    compare(&parsed, state, config).unwrap_or_else(|e| panic!("{e}\n{text}"));
}

fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nftables(reconcile: Duration) -> DataPlaneConfig {
    DataPlaneConfig {
        reconcile_interval: reconcile,
        ..DataPlaneConfig::new(DataPlaneKind::Nftables)
    }
}

/// Submits `diff(from, to)` and waits until the handle has committed `to`.
async fn step(handle: &DataPlaneHandle, from: &KernelState, to: &KernelState) {
    handle.submit(diff(from, to));
    wait_for(&format!("the commit of {to:?}"), || {
        *handle.committed() == *to
    })
    .await;
}

#[test]
fn the_handle_syncs_reconciles_adopts_and_cleans_up() {
    if !inside_netns("the_handle_syncs_reconciles_adopts_and_cleans_up") {
        return;
    }
    runtime().block_on(handle_scenario());
}

async fn handle_scenario() {
    let hour = Duration::from_secs(3600);
    let cfg = nftables(hour);
    let nft = nft_for(&cfg.nft);
    cleanup(&cfg).expect("cleanup without a table");

    // A fresh start: no table, adopted empty, the table created empty.
    let metrics = ShellMetrics::default();
    let (tx, mut resync) = mpsc::channel(4);
    let (handle, adopted) = spawn(cfg.clone(), metrics.clone(), tx).unwrap();
    assert_eq!(adopted, KernelState::default());
    wait_for("the empty table", || syncs(&metrics, "full") == 1).await;
    assert_kernel_holds(&nft, &KernelState::default(), &cfg.nft);

    // Deltas, each checked against the listing.
    let mut states = vec![KernelState::default(), example(), changed(), example()];
    let mut runner = TestRunner::deterministic();
    for _ in 0..6 {
        states.push(state_strategy().new_tree(&mut runner).unwrap().current());
    }
    states.push(KernelState::default());
    states.push(changed());
    let states: Vec<KernelState> = states.iter().map(core_like).collect();
    for pair in states.windows(2) {
        step(&handle, &pair[0], &pair[1]).await;
        assert_kernel_holds(&nft, &pair[1], &cfg.nft);
    }
    assert_eq!(syncs(&metrics, "failed"), 0);
    assert_eq!(syncs(&metrics, "full"), 1, "every change went as a delta");
    assert_eq!(
        metrics.kernel_services.get(),
        changed().services.len() as i64
    );
    let mut now = core_like(&changed());

    // A delta the kernel refuses (the verdict element it replaces was deleted behind our
    // back): the full table.
    let web = Service::new(Protocol::Tcp, sa("10.0.0.1:80"));
    sh("nft delete element inet minuteman services4 '{ tcp . 10.0.0.1 . 80 }'");
    let mut next = now.clone();
    next.services.insert(web, dests(&[("10.1.0.42:80", 2)]));
    step(&handle, &now, &next).await;
    now = next;
    assert_eq!(syncs(&metrics, "failed"), 1);
    assert_eq!(syncs(&metrics, "full"), 2);
    assert_kernel_holds(&nft, &now, &cfg.nft);

    // Ops that do not follow the committed state: applied as meant, the core resynced.
    let extra = Service::new(Protocol::Udp, sa("10.0.0.77:77"));
    handle.submit(vec![
        Op::AddService(web),
        Op::AddDestination {
            service: extra,
            dest: sa("10.1.0.77:77"),
            weight: 1,
        },
    ]);
    let sent = tokio::time::timeout(Duration::from_secs(30), resync.recv())
        .await
        .expect("a resync")
        .expect("the channel is open");
    now.services.insert(extra, dests(&[("10.1.0.77:77", 1)]));
    assert_eq!(sent, now);
    assert_eq!(*handle.committed(), now);
    assert_kernel_holds(&nft, &now, &cfg.nft);
    handle.shutdown().await;
    assert_kernel_holds(&nft, &now, &cfg.nft);

    // A restart adopts the table as it is and changes nothing.
    let metrics = ShellMetrics::default();
    let (tx, _resync) = mpsc::channel(4);
    let cfg = nftables(Duration::from_millis(100));
    let (handle, adopted) = spawn(cfg.clone(), metrics.clone(), tx).unwrap();
    assert_eq!(adopted, visible(&now, &cfg.nft));
    wait_for("two reconciles", || metrics.kernel_reconciles.get() >= 2).await;
    assert_eq!(metrics.kernel_restores.get(), 0);
    assert_eq!(syncs(&metrics, "full") + syncs(&metrics, "delta"), 0);
    let now = (*handle.committed()).clone();

    // Someone else changes the table: every reconcile that sees it restores it.
    for (restores, tamper) in [
        (1, "nft flush ruleset".to_owned()),
        (2, "nft delete table inet minuteman".to_owned()),
        (
            3,
            "nft delete element inet minuteman services4 '{ udp . 10.0.0.2 . 53 }'".to_owned(),
        ),
        (
            4,
            // web has 2 slots.
            "nft flush chain inet minuteman mod4_tcp_2 && nft add rule inet minuteman mod4_tcp_2 meta l4proto tcp dnat ip to 10.9.9.9".to_owned(),
        ),
        (5, "nft flush chain inet minuteman reject_output".to_owned()),
        (6, "nft add chain inet minuteman intruder".to_owned()),
        (
            7,
            "nft delete element inet minuteman d4_tcp '{ 10.0.0.1 . 80 . 1 }' && nft add element inet minuteman d4_tcp '{ 10.0.0.1 . 80 . 1 : 10.9.9.9 . 80 }'".to_owned(),
        ),
        (
            8,
            "nft add chain inet minuteman mod4_tcp_77 && nft add rule inet minuteman mod4_tcp_77 dnat ip to ip daddr . tcp dport . numgen random mod 77 map @d4_tcp".to_owned(),
        ),
    ] {
        sh(&tamper);
        wait_for(&tamper, || metrics.kernel_restores.get() >= restores).await;
        wait_for("the restore", || syncs(&metrics, "full") >= restores).await;
        assert_kernel_holds(&nft, &now, &cfg.nft);
    }
    handle.shutdown().await;

    // Nothing applies (every `nft -f` refused): the kernel read back and sent to the core.
    let dir = std::env::temp_dir().join(format!("minuteman-dataplane-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("nft-refusing");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -f ] && { echo 'Error: refused by the test' >&2; exit 1; }; done\nexec nft \"$@\"\n",
    )
    .unwrap();
    sh(&format!("chmod 755 {}", wrapper.display()));
    let metrics = ShellMetrics::default();
    let (tx, mut resync) = mpsc::channel(4);
    let refusing = DataPlaneConfig {
        nft_binary: wrapper.clone(),
        ..nftables(hour)
    };
    let (handle, adopted) = spawn(refusing, metrics.clone(), tx).unwrap();
    handle.submit(diff(&adopted, &KernelState::default()));
    let sent = tokio::time::timeout(Duration::from_secs(30), resync.recv())
        .await
        .expect("a resync")
        .expect("the channel is open");
    assert_eq!(sent, adopted, "the kernel kept the table");
    assert_eq!(syncs(&metrics, "failed"), 2, "the delta and the full table");
    assert_eq!(*handle.committed(), adopted);
    handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    // `none` computes only and leaves the kernel alone.
    let metrics = ShellMetrics::default();
    let (tx, _resync) = mpsc::channel(4);
    let (handle, adopted) = spawn(
        DataPlaneConfig::new(DataPlaneKind::None),
        metrics.clone(),
        tx,
    )
    .unwrap();
    assert_eq!(adopted, KernelState::default());
    step(&handle, &adopted, &core_like(&example())).await;
    handle.shutdown().await;
    assert_kernel_holds(&nft, &now, &cfg.nft);

    // A missing binary is named.
    let (tx, _resync) = mpsc::channel(4);
    let missing = DataPlaneConfig {
        nft_binary: "/nonexistent/nft".into(),
        ..nftables(hour)
    };
    match spawn(missing, ShellMetrics::default(), tx) {
        Err(e @ DataPlaneError::Spawn { .. }) => {
            assert!(e.to_string().contains("/nonexistent/nft"), "{e}")
        }
        Err(e) => panic!("expected a spawn error, got {e}"),
        Ok(_) => panic!("spawned without nft"),
    }

    // Cleanup removes the table; twice is fine.
    cleanup(&cfg).unwrap();
    assert_eq!(nft.list_blocking().unwrap(), None);
    cleanup(&cfg).unwrap();
}

/// `MINUTEMAN_SCALE_SERVICES` services (default 10,000) of 10 destinations each.
fn large_state(services: u32) -> KernelState {
    let services = (0..services)
        .map(|i| {
            let [_, a, b, c] = (0x0a64_0000u32 + i).to_be_bytes();
            let vip = Service::new(
                Protocol::Tcp,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), 80),
            );
            let dests = (0..10u8)
                .map(|d| {
                    let ip = Ipv4Addr::new(10, 200, (i % 250) as u8, d + 1);
                    (SocketAddr::new(IpAddr::V4(ip), 8080), 1 + u32::from(d % 3))
                })
                .collect();
            (vip, Arc::new(dests))
        })
        .collect();
    KernelState { services }
}

#[test]
fn one_delta_among_ten_thousand_services() {
    if !inside_netns("one_delta_among_ten_thousand_services") {
        return;
    }
    let count: u32 = std::env::var("MINUTEMAN_SCALE_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let config = NftConfig::default();
    let nft = nft_for(&config);
    let state = large_state(count);

    let started = Instant::now();
    let full = render_full(&state, &config);
    let render = started.elapsed();
    nft.run_blocking(&full).unwrap();
    let apply = started.elapsed() - render;
    println!(
        "initial full table, {count} services x 10 destinations: render {render:?}, nft -f {apply:?} ({} bytes)",
        full.len()
    );

    let runtime = runtime();
    let _guard = runtime.enter();
    let started = Instant::now();
    let metrics = ShellMetrics::default();
    let (tx, _resync) = mpsc::channel(4);
    let (handle, adopted) =
        spawn(nftables(Duration::from_millis(100)), metrics.clone(), tx).unwrap();
    println!(
        "start (nft list + parse of the table): {:?}",
        started.elapsed()
    );
    assert!(adopted == visible(&state, &config), "adopted state differs");

    let started = Instant::now();
    let copy = state.clone();
    println!("one clone of the state: {:?}", started.elapsed());
    drop(copy);

    // One service changed, through the handle: submit → committed.
    let mut times = Vec::new();
    let mut now = state;
    for round in 0..5u8 {
        let mut next = now.clone();
        if let Some((_, dests)) = next.services.iter_mut().nth(usize::from(round) * 997) {
            Arc::make_mut(dests).insert(sa(&format!("10.201.0.{}:8080", round + 1)), 5);
        }
        let ops = diff(&now, &next);
        let before = syncs(&metrics, "delta");
        let started = Instant::now();
        handle.submit(ops);
        while syncs(&metrics, "delta") == before {
            assert!(started.elapsed() < Duration::from_secs(30), "no commit");
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(started.elapsed());
        // The count comes just before the commit is published.
        while *handle.committed() != next {
            assert!(started.elapsed() < Duration::from_secs(30), "not published");
            std::thread::sleep(Duration::from_millis(1));
        }
        now = next;
    }
    assert_eq!(syncs(&metrics, "delta"), 5);
    assert_eq!(syncs(&metrics, "failed"), 0);
    // Nothing else touched the ruleset: reconciles every 100 ms cost no listing.
    let reconciles = metrics.kernel_reconciles.get();
    std::thread::sleep(Duration::from_secs(1));
    let during = metrics.kernel_reconciles.get() - reconciles;
    println!("reconciles in 1 s with nothing changed (100 ms interval): {during}");
    assert!(during >= 5, "{during} reconciles: they list the table");
    assert_eq!(metrics.kernel_restores.get(), 0);
    times.sort();
    println!(
        "one service changed among {count}, submit -> committed (nft -f - delta): median {:?}, min {:?}, max {:?}",
        times[2], times[0], times[4]
    );
    runtime.block_on(handle.shutdown());

    // The bare transaction, outside the handle.
    let mut bare = Vec::new();
    for round in 0..5u8 {
        let mut next = now.clone();
        if let Some((_, dests)) = next.services.iter_mut().nth(usize::from(round) * 1999 + 1) {
            Arc::make_mut(dests).insert(sa(&format!("10.202.0.{}:8080", round + 1)), 7);
        }
        let ops = diff(&now, &next);
        let delta = render_delta(&now, &next, ops.iter().map(Op::service), &config);
        let started = Instant::now();
        nft.run_blocking(&delta).unwrap();
        bare.push(started.elapsed());
        now = next;
    }
    bare.sort();
    println!(
        "bare nft -f - of that delta: median {:?}, min {:?}, max {:?}",
        bare[2], bare[0], bare[4]
    );
    let started = Instant::now();
    let text = nft.list_blocking().unwrap().unwrap();
    let list = started.elapsed();
    let started = Instant::now();
    let parsed = listing::parse(&text).unwrap();
    println!(
        "reconcile cost: nft list {list:?}, parse {:?} ({} bytes)",
        started.elapsed(),
        text.len()
    );
    compare(&parsed, &now, &config).unwrap();
    assert!(
        times[2] < Duration::from_secs(5),
        "a one-service delta took {:?}",
        times[2]
    );
}
