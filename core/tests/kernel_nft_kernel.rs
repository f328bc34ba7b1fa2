//! The nft renderings against the real `nft` and kernel, each run inside a throwaway
//! network namespace (`unshare --net`: it vanishes with the process, and the host's own
//! ruleset is never touched).
//!
//! - Every rendering is accepted by `nft -c -f` and then applied for real.
//! - `render_full` is idempotent: applied twice, or over an earlier version of the table,
//!   the kernel holds the same as after one run on an empty ruleset.
//! - `render_delta(a, b, services of diff(a, b))` applied over `render_full(a)` leaves the
//!   kernel holding exactly what `render_full(b)` alone does (compared as `nft -j list
//!   table` output without handles, order-insensitive), for examples and random pairs; so
//!   does the delta that lists every service of both states.
//!
//! Needs root, `nft` (Debian: nftables) and `unshare` (util-linux); without them each test
//! says why it is skipped and passes.

use minuteman_core::kernel::nft::{render_delta, render_full, NftConfig};
use minuteman_core::kernel::{diff, Destinations, KernelState, Op, Service, MAX_WEIGHT};
use minuteman_core::Protocol;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

macro_rules! require_kernel {
    () => {
        if let Some(why) = unavailable() {
            skip(&why);
            return;
        }
    };
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Run the scripts one after the other (`nft -c -f` then `nft -f` each) in one fresh
/// network namespace, and return `nft -j list table inet <table>` at the end.
fn run(table: &str, scripts: &[&str]) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!(
        "minuteman-kernel-nft-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut shell = String::from("set -e\n");
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        let path = dir.join(format!("{i}.nft"));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(script.as_bytes()))
            .map_err(|e| e.to_string())?;
        let p = path.display();
        shell.push_str(&format!(
            "echo '# script {i}' >&2\nnft -c -f {p}\nnft -f {p}\n"
        ));
        files.push(path);
    }
    shell.push_str(&format!("nft -j list table inet {table}\n"));
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &shell])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if !out.status.success() {
        let mut msg = String::from_utf8_lossy(&out.stderr).into_owned();
        for (i, s) in scripts.iter().enumerate() {
            msg.push_str(&format!("\n--- script {i} ---\n{s}"));
        }
        return Err(msg);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nft -j` output as a sorted list of objects, without handles or metainfo, with every
/// set-element list sorted: equal iff the kernel holds the same table.
fn canonical(json: &str) -> Vec<String> {
    fn scrub(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("handle");
                for (key, inner) in map.iter_mut() {
                    scrub(inner);
                    if key == "elem" {
                        if let Value::Array(items) = inner {
                            items.sort_by_key(|i| i.to_string());
                        }
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    let mut root: Value = serde_json::from_str(json).expect("nft -j prints JSON");
    let mut items: Vec<String> = root["nftables"]
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.get("metainfo").is_none())
        .map(|mut i| {
            scrub(&mut i);
            i.to_string()
        })
        .collect();
    items.sort();
    items
}

fn sa(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

fn dests(list: &[(&str, u32)]) -> Arc<Destinations> {
    Arc::new(list.iter().map(|&(a, w)| (sa(a), w)).collect())
}

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
        ]
        .into_iter()
        .collect(),
    }
}

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

/// The delta the data plane renders for `diff(a, b)`.
fn delta(a: &KernelState, b: &KernelState, config: &NftConfig) -> String {
    let ops = diff(a, b);
    render_delta(a, b, ops.iter().map(Op::service), config)
}

/// The kernel after `render_full(a)` then the delta from `a` to `b` (of the changed
/// services, and of every service) equals the kernel after `render_full(b)` alone, which
/// equals `render_full(b)` applied twice or over `a`.
fn check_pair(a: &KernelState, b: &KernelState, config: &NftConfig) -> Result<(), String> {
    let table = config.table_name();
    let full_a = render_full(a, config);
    let full_b = render_full(b, config);
    let fresh = canonical(&run(&table, &[&full_b])?);
    let every = a.services.keys().chain(b.services.keys());
    for delta in [delta(a, b, config), render_delta(a, b, every, config)] {
        let incremental = canonical(&run(&table, &[&full_a, &delta])?);
        if incremental != fresh {
            return Err(format!(
                "incremental differs from full\nfull:        {fresh:#?}\nincremental: {incremental:#?}\ndelta:\n{delta}"
            ));
        }
    }
    let over = canonical(&run(&table, &[&full_a, &full_b, &full_b])?);
    if over != fresh {
        return Err(format!(
            "full over an earlier table differs\nfresh: {fresh:#?}\nover:  {over:#?}"
        ));
    }
    Ok(())
}

#[test]
fn renderings_are_accepted_and_idempotent() {
    require_kernel!();
    for config in configs() {
        for state in [KernelState::default(), example(), changed()] {
            let full = render_full(&state, &config);
            let once = run(&config.table_name(), &[&full]).unwrap_or_else(|e| panic!("{e}"));
            let twice =
                run(&config.table_name(), &[&full, &full]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(canonical(&once), canonical(&twice));
        }
    }
}

#[test]
fn incremental_equals_full_on_examples() {
    require_kernel!();
    let empty = KernelState::default();
    for config in configs() {
        for (a, b) in [
            (example(), changed()),
            (changed(), example()),
            (empty.clone(), example()),
            (example(), empty.clone()),
        ] {
            check_pair(&a, &b, &config).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

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

fn state_strategy() -> impl Strategy<Value = KernelState> {
    let entry = service_strategy().prop_flat_map(|s| {
        let v6 = s.addr.is_ipv6();
        let dest = (1u8..=5, prop::sample::select(vec![80u16, 8080])).prop_map(move |(h, p)| {
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd02, 0, 0, 0, 0, 0, 0, u16::from(h)))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, h))
            };
            SocketAddr::new(ip, p)
        });
        let weight = prop::sample::select(vec![0u32, 1, 1, 2, 3, MAX_WEIGHT, u32::MAX]);
        (Just(s), btree_map(dest, weight, 0..5))
    });
    vec(entry, 0..8).prop_map(|e| KernelState {
        services: e.into_iter().map(|(s, d)| (s, Arc::new(d))).collect(),
    })
}

proptest! {
    // Each case starts a few namespaces and nft processes: keep the default count small.
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    #[test]
    fn incremental_equals_full_on_random_pairs(
        a in state_strategy(),
        c in state_strategy(),
        keep in vec(any::<bool>(), 8),
    ) {
        if unavailable().is_some() {
            return Ok(());
        }
        // b keeps part of a and overlays c, so services are kept, changed, added, removed.
        let mut b = KernelState::default();
        for (i, (s, d)) in a.services.iter().enumerate() {
            if keep[i % keep.len()] {
                b.services.insert(*s, d.clone());
            }
        }
        b.services.extend(c.services);
        if let Err(e) = check_pair(&a, &b, &NftConfig::default()) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// Namespaces for the traffic test: this one is the host (output path), `$B` holds the
/// backends, `$C` a client behind the host (prerouting path). Addresses are from the
/// benchmarking range 198.18.0.0/15 and the private fd18::/16, and never leave the
/// namespaces.
const TOPOLOGY: &str = r#"
set -e
ip link set lo up
unshare --net sleep 60 & B=$!
unshare --net sleep 60 & C=$!
trap 'kill $B $C $S 2>/dev/null || true' EXIT
sleep 0.3
ip link add vb0 type veth peer name vb1; ip link set vb1 netns $B
ip link add vc0 type veth peer name vc1; ip link set vc1 netns $C
ip addr add 198.18.1.1/24 dev vb0; ip -6 addr add fd18:1::1/64 dev vb0 nodad; ip link set vb0 up
ip addr add 198.18.2.1/24 dev vc0; ip -6 addr add fd18:2::1/64 dev vc0 nodad; ip link set vc0 up
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.ipv6.conf.all.forwarding=1
nsenter -t $B -n sh -c 'ip link set lo up; ip addr add 198.18.1.2/24 dev vb1; ip -6 addr add fd18:1::2/64 dev vb1 nodad; ip link set vb1 up; ip route add default via 198.18.1.1; ip -6 route add default via fd18:1::1'
nsenter -t $C -n sh -c 'ip link set lo up; ip addr add 198.18.2.2/24 dev vc1; ip -6 addr add fd18:2::2/64 dev vc1 nodad; ip link set vc1 up; ip route add default via 198.18.2.1; ip -6 route add default via fd18:2::1'
ip route add 198.18.0.0/24 dev vb0
ip -6 route add fd18::/64 dev vb0
nft -f "$DIR/full.nft"
nsenter -t $B -n python3 "$DIR/server.py" & S=$!
sleep 0.5
python3 "$DIR/client.py" output 198.18.0.1 198.18.0.2
nsenter -t $C -n python3 "$DIR/client.py" prerouting 198.18.0.1 198.18.0.2
python3 "$DIR/client.py" output6 fd18::1 fd18::2
nsenter -t $C -n python3 "$DIR/client.py" prerouting6 fd18::1 fd18::2
python3 "$DIR/client.py" udp 198.18.0.3
nsenter -t $C -n python3 "$DIR/client.py" udp-prerouting 198.18.0.3
nft -f "$DIR/ops.nft"
python3 "$DIR/client.py" drained 198.18.0.1 198.18.0.2
python3 "$DIR/client.py" drained6 fd18::1 fd18::2
"#;

/// TCP on 8080 and 8081 (IPv4 and IPv6), UDP on 5353 and 5354; each answers
/// `PORT@PEER`, the peer being the address the connection came from.
const SERVER: &str = r#"
import socket, threading, time
def serve(family, addr, port):
    s = socket.socket(family); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(128)
    while True:
        c, peer = s.accept(); c.sendall(b"%d@%s" % (port, peer[0].encode())); c.close()
def serve_udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(64); s.sendto(b"%d@%s" % (port, peer[0].encode()), peer)
for p in (8080, 8081):
    threading.Thread(target=serve, args=(socket.AF_INET, "198.18.1.2", p), daemon=True).start()
    threading.Thread(target=serve, args=(socket.AF_INET6, "fd18:1::2", p), daemon=True).start()
for p in (5353, 5354):
    threading.Thread(target=serve_udp, args=("198.18.1.2", p), daemon=True).start()
time.sleep(30)
"#;

/// `client.py LABEL VIP [EMPTY]`: 200 new TCP connections to VIP port 80 (or, without
/// EMPTY, 200 UDP exchanges from fresh sockets with VIP port 53), counted by answer; then
/// one connection to EMPTY port 80, timed. Prints e.g. `output refused 0.00
/// 8080@198.18.1.1=49 8081@198.18.1.1=151`.
const CLIENT: &str = r#"
import socket, sys, time
label, vip = sys.argv[1], sys.argv[2]
empty = sys.argv[3] if len(sys.argv) > 3 else None
family = socket.AF_INET6 if ":" in vip else socket.AF_INET
hits = {}
for _ in range(200):
    if empty:
        c = socket.socket(family); c.settimeout(2); c.connect((vip, 80))
        reply = c.recv(64).decode(); c.close()
    else:
        c = socket.socket(family, socket.SOCK_DGRAM); c.settimeout(2); c.sendto(b"x", (vip, 53))
        reply = c.recv(64).decode(); c.close()
    hits[reply] = hits.get(reply, 0) + 1
t = time.time()
result = "none"
if empty:
    try:
        c = socket.socket(family); c.settimeout(3); c.connect((empty, 80)); c.close(); result = "connected"
    except ConnectionRefusedError:
        result = "refused"
    except Exception as e:
        result = type(e).__name__
print(label, result, "%.2f" % (time.time() - t), " ".join("%s=%d" % kv for kv in sorted(hits.items())))
"#;

/// Real traffic through the rendered table, from the host itself (output) and from a
/// client behind it (prerouting), every connection masqueraded (the backend sees the
/// host): weights 1:3 split new TCP connections about 1:3, over IPv4 and IPv6; weights
/// 1:1 split UDP flows; a service without live destinations refuses at once; after the
/// incremental delta drains one destination (which moves the services to new modulus
/// chains and deletes the old ones), every new connection goes to the other.
#[test]
fn traffic_follows_the_rendered_table() {
    require_kernel!();
    if Command::new("python3").arg("--version").output().is_err() {
        skip("no python3 for the client and server");
        return;
    }
    let web = Service::new(Protocol::Tcp, sa("198.18.0.1:80"));
    let empty = Service::new(Protocol::Tcp, sa("198.18.0.2:80"));
    let dns = Service::new(Protocol::Udp, sa("198.18.0.3:53"));
    let web6 = Service::new(Protocol::Tcp, sa("[fd18::1]:80"));
    let empty6 = Service::new(Protocol::Tcp, sa("[fd18::2]:80"));
    let a = KernelState {
        services: [
            (
                web,
                dests(&[("198.18.1.2:8080", 1), ("198.18.1.2:8081", 3)]),
            ),
            (empty, dests(&[("198.18.1.2:8080", 0)])),
            (
                dns,
                dests(&[("198.18.1.2:5353", 1), ("198.18.1.2:5354", 1)]),
            ),
            (
                web6,
                dests(&[("[fd18:1::2]:8080", 1), ("[fd18:1::2]:8081", 3)]),
            ),
            (empty6, Arc::default()),
        ]
        .into_iter()
        .collect(),
    };
    let mut b = a.clone();
    b.services
        .get_mut(&web)
        .map(|d| Arc::make_mut(d).insert(sa("198.18.1.2:8081"), 0));
    b.services
        .get_mut(&web6)
        .map(|d| Arc::make_mut(d).insert(sa("[fd18:1::2]:8081"), 0));
    let config = NftConfig::default();
    let ops = delta(&a, &b, &config);
    assert!(
        ops.contains("delete chain inet minuteman mod4_tcp_4"),
        "{ops}"
    );
    let dir = std::env::temp_dir().join(format!("minuteman-kernel-traffic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("full.nft", render_full(&a, &config)),
        ("ops.nft", ops),
        ("server.py", SERVER.to_owned()),
        ("client.py", CLIENT.to_owned()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let out = Command::new("timeout")
        .args(["90", "unshare", "--net", "sh", "-c", TOPOLOGY])
        .env("DIR", &dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the topology");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(' ').collect()).collect();
    let labels: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    assert_eq!(
        labels,
        [
            "output",
            "prerouting",
            "output6",
            "prerouting6",
            "udp",
            "udp-prerouting",
            "drained",
            "drained6"
        ],
        "{stdout}"
    );
    // Only the host's own address on the backends' link ever reaches them: masqueraded.
    let count = |line: &[&str], port: &str| -> u32 {
        let host = if line[0].ends_with('6') {
            "fd18:1::1"
        } else {
            "198.18.1.1"
        };
        line.iter()
            .find_map(|f| f.strip_prefix(&format!("{port}@{host}=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    for line in &lines {
        let (low, high) = if line[0].starts_with("udp") {
            ("5353", "5354")
        } else {
            ("8080", "8081")
        };
        assert_eq!(count(line, low) + count(line, high), 200, "{stdout}");
        if line[0].starts_with("udp") {
            // 1:1 of 200: expect 100 each; allow a wide margin for chance (p < 1e-6).
            assert!((60..=140).contains(&count(line, low)), "{stdout}");
            continue;
        }
        assert_eq!(line[1], "refused", "{stdout}");
        let seconds: f64 = line[2].parse().unwrap_or(f64::MAX);
        assert!(seconds < 1.0, "refusal took {seconds}s: {stdout}");
        if line[0].starts_with("drained") {
            assert_eq!(
                count(line, high),
                0,
                "drained destination got traffic: {stdout}"
            );
        } else {
            // 1:3 of 200: expect 50 on 8080; allow a wide margin for chance (p < 1e-6).
            assert!((20..=85).contains(&count(line, low)), "{stdout}");
        }
    }
}
