//! The IPVS data plane against a real kernel.
//!
//! - the `minuteman` dummy interface over rtnetlink (any kernel: runs on the build machine
//!   too, in a throwaway network namespace);
//! - IPVS over generic netlink: requests program the kernel, dumps and `ipvsadm -Ln` read
//!   back exactly the desired state, refusals are typed;
//! - the real data plane (`spawn` with `DataPlaneKind::Ipvs`) carrying TCP (IPv4, IPv6) and
//!   UDP through VIPs to backends in namespaces, draining one (weight 0: its open
//!   connection stays, new ones avoid it), changing only what changed, adopting the kernel
//!   after a restart, restoring what someone else removed, leaving foreign services alone,
//!   and `cleanup` removing all of its own;
//! - two `minuteman agent --dataplane ipvs` in namespaces, end to end.
//!
//! The build machine's kernel has no IPVS: there the IPVS tests say so and skip.
//! `scripts/vm-ipvs-test` runs this same binary (statically linked) in a qemu VM booted
//! from Debian's kernel, which has `ip_vs`; it sets `MINUTEMAN_IN_VM=1`, which turns every
//! skip into a failure. Outside the VM each test re-runs itself in a fresh network
//! namespace (`unshare --net`), so a host's own IPVS table is never touched.

mod kernel_support;
use kernel_support::runtime;
use minuteman::dataplane::ipvs::host::Masquerade;
use minuteman::dataplane::ipvs::link::{DummyLink, LinkError};
use minuteman::dataplane::ipvs::msg::{DumpedService, Request};
use minuteman::dataplane::ipvs::socket::{IpvsError, IpvsSocket};
use minuteman::dataplane::{cleanup, spawn, DataPlaneConfig, DataPlaneHandle, DataPlaneKind};
use minuteman::lab::backend::Bound;
use minuteman::lab::net::in_netns;
use minuteman::lab::request::{ask, Target};
use minuteman::metrics::ShellMetrics;
use minuteman_core::kernel::{diff, Destinations, KernelState, Op, Service};
use minuteman_core::Protocol;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Set in the copy of the test binary that runs inside the namespace.
const INSIDE: &str = "MINUTEMAN_IPVS_NETNS";

/// One test at a time inside the VM (they share its network namespace).
static SERIAL: Mutex<()> = Mutex::new(());

fn in_vm() -> bool {
    std::env::var_os("MINUTEMAN_IN_VM").is_some_and(|v| v == "1")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips with the reason; inside the VM a skip is a failure.
fn skip(why: &str) {
    assert!(!in_vm(), "MINUTEMAN_IN_VM=1 but the test cannot run: {why}");
    eprintln!("skipped: {why}");
}

/// Whether this kernel has IPVS (the family resolves).
fn ipvs_missing() -> Option<String> {
    match IpvsSocket::open() {
        Ok(_) => None,
        Err(IpvsError::FamilyMissing) => Some(
            "this kernel has no IPVS (module ip_vs); scripts/vm-ipvs-test runs these tests in a VM whose kernel has it"
                .to_owned(),
        ),
        Err(e) => Some(format!("IPVS cannot be opened: {e}")),
    }
}

/// True where the test body should run: inside the VM (one test at a time), or in the
/// copy re-run in a fresh network namespace. Elsewhere runs that copy and checks it
/// passed, or skips; then returns false.
fn enter(name: &str, needs_ipvs: bool) -> Option<std::sync::MutexGuard<'static, ()>> {
    if std::env::var_os(INSIDE).is_some() {
        return Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()));
    }
    if !is_root() {
        skip("not root (network namespaces, interfaces and IPVS need CAP_NET_ADMIN)");
        return None;
    }
    if needs_ipvs {
        if let Some(why) = ipvs_missing() {
            skip(&why);
            return None;
        }
    }
    if in_vm() {
        return Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()));
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = match Command::new("unshare")
        .arg("--net")
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            skip(&format!("cannot run unshare ({e}); install util-linux"));
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed inside its namespace"
    );
    None
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cmd}`: {e}"));
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn svc(p: Protocol, a: &str) -> Service {
    Service::new(p, sa(a))
}

fn state(entries: &[(Service, &[(&str, u32)])]) -> KernelState {
    KernelState {
        services: entries
            .iter()
            .map(|(s, d)| {
                let dests: Destinations = d.iter().map(|&(a, w)| (sa(a), w)).collect();
                (*s, Arc::new(dests))
            })
            .collect(),
    }
}

/// The minuteman part of a dump, as a state.
fn dumped(socket: &mut IpvsSocket) -> KernelState {
    let mut out = KernelState::default();
    for entry in socket.dump().expect("a dump") {
        if let DumpedService::Virtual { service, .. } = entry.service {
            let dests = entry.dests.iter().map(|d| (d.addr, d.weight)).collect();
            out.services.insert(service, Arc::new(dests));
        }
    }
    out
}

/// `ipvsadm -Ln` parsed: every service with its masqueraded destinations and weights.
/// Every service but the foreign one at 10.99.0.1 must use the scheduler wlc.
fn ipvsadm() -> (String, KernelState) {
    let text = sh("ipvsadm -Ln");
    let mut out = KernelState::default();
    let mut current = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [proto @ ("TCP" | "UDP"), addr, sched, ..] => {
                if !addr.starts_with("10.99.0.1:") {
                    assert_eq!(*sched, "wlc", "{line}");
                }
                let protocol = if *proto == "TCP" {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                let service = Service::new(protocol, sa(addr));
                out.services.insert(service, Arc::new(Destinations::new()));
                current = Some(service);
            }
            ["->", addr, forward, weight, ..] if *addr != "RemoteAddress:Port" => {
                assert_eq!(*forward, "Masq", "{line}");
                let service = current.expect("a destination after its service");
                Arc::make_mut(out.services.get_mut(&service).unwrap())
                    .insert(sa(addr), weight.parse().unwrap());
            }
            _ => {}
        }
    }
    (text, out)
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dummy_interface_holds_vip_addresses() {
    let Some(_serial) = enter("dummy_interface_holds_vip_addresses", false) else {
        return;
    };
    let name = "mmtestdummy";
    let _ = DummyLink::delete(name);
    assert!(DummyLink::existing(name).unwrap().is_none());
    let mut link = match DummyLink::ensure(name) {
        Ok(link) => link,
        Err(LinkError::Refused { errno, .. }) if errno == libc::EOPNOTSUPP => {
            return skip(
                "this kernel has no dummy interfaces (module dummy); the VM test has them",
            );
        }
        Err(e) => panic!("{e}"),
    };
    let shown = sh(&format!("ip -d link show {name}"));
    assert!(shown.contains("dummy") && shown.contains("UP"), "{shown}");
    let v4: IpAddr = "10.200.0.1".parse().unwrap();
    let v6: IpAddr = "fd01:c::1".parse().unwrap();
    for ip in [v4, v6, v4] {
        link.add(ip).unwrap();
    }
    assert_eq!(link.addresses().unwrap(), BTreeSet::from([v4, v6]));
    let shown = sh(&format!("ip addr show dev {name}"));
    assert!(
        shown.contains("10.200.0.1/32") && shown.contains("fd01:c::1/128"),
        "{shown}"
    );
    // Ensuring again keeps the interface and its addresses (a restart).
    let mut again = DummyLink::ensure(name).unwrap();
    assert_eq!(again.index(), link.index());
    assert_eq!(again.addresses().unwrap().len(), 2);
    again.remove(v4).unwrap();
    again.remove(v4).unwrap();
    assert_eq!(again.addresses().unwrap(), BTreeSet::from([v6]));
    DummyLink::delete(name).unwrap();
    DummyLink::delete(name).unwrap();
    assert!(DummyLink::existing(name).unwrap().is_none());
}

#[test]
fn requests_program_ipvs_and_dumps_read_it_back() {
    let Some(_serial) = enter("requests_program_ipvs_and_dumps_read_it_back", true) else {
        return;
    };
    let mut socket = IpvsSocket::open().unwrap();
    socket
        .execute(&[Request::Flush])
        .into_iter()
        .for_each(|r| r.unwrap());
    let tcp4 = svc(Protocol::Tcp, "11.0.0.1:80");
    let udp4 = svc(Protocol::Udp, "11.0.0.1:53");
    let tcp6 = svc(Protocol::Tcp, "[fd01:c::1]:443");
    let want = state(&[
        (
            tcp4,
            &[
                ("10.1.0.1:8080", 1),
                ("10.1.0.2:8080", 3),
                ("10.1.0.3:8080", 0),
            ],
        ),
        (udp4, &[("10.1.0.1:8053", 1)]),
        (tcp6, &[("[fd00::1]:8443", 2), ("[fd00::2]:8443", 1)]),
        (svc(Protocol::Udp, "11.0.0.2:9"), &[]),
    ]);
    let ops = diff(&KernelState::default(), &want);
    let requests: Vec<Request> = ops.iter().filter_map(Request::from_op).collect();
    assert_eq!(requests.len(), ops.len());
    for (request, result) in requests.iter().zip(socket.execute(&requests)) {
        result.unwrap_or_else(|e| panic!("{request:?}: {e}"));
    }
    assert_eq!(dumped(&mut socket), want);
    let (text, shown) = ipvsadm();
    println!("ipvsadm -Ln after programming the desired state:\n{text}");
    assert_eq!(shown, want, "ipvsadm -Ln disagrees with the desired state");

    // One change touches one destination.
    let mut changed = want.clone();
    Arc::make_mut(changed.services.get_mut(&tcp4).unwrap()).insert(sa("10.1.0.2:8080"), 0);
    let ops = diff(&want, &changed);
    assert_eq!(ops.len(), 1, "{ops:?}");
    let requests: Vec<Request> = ops.iter().filter_map(Request::from_op).collect();
    socket
        .execute(&requests)
        .into_iter()
        .for_each(|r| r.unwrap());
    assert_eq!(dumped(&mut socket), changed);

    // Refusals are typed by what they mean.
    let again = socket.execute(&[Request::NewService(tcp4)]);
    assert!(
        again[0].as_ref().is_err_and(IpvsError::is_exists),
        "{again:?}"
    );
    let absent = socket.execute(&[
        Request::DelService(svc(Protocol::Tcp, "11.9.9.9:1")),
        Request::DelDest {
            service: tcp4,
            dest: sa("10.9.9.9:1"),
        },
    ]);
    assert!(
        absent
            .iter()
            .all(|r| r.as_ref().is_err_and(IpvsError::is_missing)),
        "{absent:?}"
    );
    // A batch larger than one send: every request gets its own answer.
    let many: Vec<Request> = (0..300u16)
        .map(|i| Request::NewDest {
            service: udp4,
            dest: SocketAddr::new("10.2.0.1".parse().unwrap(), 1000 + i),
            weight: 1,
        })
        .collect();
    let results = socket.execute(&many);
    assert_eq!(results.len(), 300);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(socket.dump_dests(&udp4).unwrap().len(), 301);
    socket
        .execute(&[Request::Flush])
        .into_iter()
        .for_each(|r| r.unwrap());
}

/// A backend namespace `ns` reachable from here over a veth: `10.66.N.2`, `fd66:N::2`.
struct BackendNet {
    ns: String,
}

impl BackendNet {
    fn new(n: u8) -> BackendNet {
        let ns = format!("mmipvs-b{n}");
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &format!("vh{n}")])
            .output();
        sh(&format!(
            "ip netns add {ns} && ip link add vh{n} type veth peer name vb{n} && \
             ip link set vb{n} netns {ns} && \
             ip addr add 10.66.{n}.1/24 dev vh{n} && ip addr add fd66:{n}::1/64 dev vh{n} nodad && \
             ip link set vh{n} up && ip link set lo up && \
             ip -n {ns} addr add 10.66.{n}.2/24 dev vb{n} && ip -n {ns} addr add fd66:{n}::2/64 dev vb{n} nodad && \
             ip -n {ns} link set vb{n} up && ip -n {ns} link set lo up && \
             ip -n {ns} route add default via 10.66.{n}.1 && ip -n {ns} -6 route add default via fd66:{n}::1"
        ));
        BackendNet { ns }
    }

    /// HTTP on 8080 and UDP on 8081 answering `name` (the lab's backend), plus a held
    /// TCP service on 9090: greets with `name` and the source address it sees, then
    /// echoes lines.
    fn serve(&self, name: &str) {
        let bound = in_netns(&self.ns, || Bound::new(Some(8080), Some(8081)))
            .unwrap()
            .unwrap();
        let label = name.to_owned();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(bound.serve(label));
        });
        let held = in_netns(&self.ns, || TcpListener::bind("[::]:9090"))
            .unwrap()
            .unwrap();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for stream in held.incoming().flatten() {
                let label = label.clone();
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let peer = stream.peer_addr().map(|a| a.ip().to_canonical());
                    let peer = peer.map_or_else(|e| format!("? ({e})"), |ip| ip.to_string());
                    if writeln!(writer, "{label} {peer}").is_err() {
                        return;
                    }
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        if writeln!(writer, "{label} {line}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
}

impl Drop for BackendNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A connection held open through a VIP: who answered, the source address the backend
/// saw, and an echo on demand.
struct Held {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    backend: String,
    seen_from: String,
}

impl Held {
    fn open(addr: SocketAddr) -> Held {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).unwrap();
        let (backend, seen_from) = greeting.trim().split_once(' ').unwrap();
        Held {
            backend: backend.to_owned(),
            seen_from: seen_from.to_owned(),
            reader,
            writer,
        }
    }

    fn echo(&mut self, text: &str) -> String {
        writeln!(self.writer, "{text}").unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }
}

/// Who answers `count` requests (each a new connection or socket) to `target`.
fn tally(target: &Target, count: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..count {
        let who = ask(target, Duration::from_secs(2)).unwrap_or_else(|e| format!("error: {e}"));
        *out.entry(who).or_default() += 1;
    }
    out
}

struct Plane {
    handle: Option<DataPlaneHandle>,
    metrics: ShellMetrics,
    _resync: mpsc::Receiver<KernelState>,
    adopted: KernelState,
}

fn plane_config() -> DataPlaneConfig {
    let mut cfg = DataPlaneConfig::new(DataPlaneKind::Ipvs);
    cfg.reconcile_interval = Duration::from_millis(300);
    cfg.ipvs.masquerade = Masquerade::Iptables;
    cfg
}

fn start_plane(rt: &tokio::runtime::Runtime) -> Plane {
    let metrics = ShellMetrics::default();
    let (tx, rx) = mpsc::channel(4);
    let (handle, adopted) = rt
        .block_on(async { spawn(plane_config(), metrics.clone(), tx) })
        .expect("the IPVS data plane starts");
    Plane {
        handle: Some(handle),
        metrics,
        _resync: rx,
        adopted,
    }
}

impl Plane {
    fn handle(&self) -> &DataPlaneHandle {
        self.handle.as_ref().unwrap()
    }

    fn submit_until(&self, ops: Vec<Op>, want: &KernelState) {
        self.handle().submit(ops);
        wait_for("the committed state", Duration::from_secs(10), || {
            *self.handle().committed() == *want
        });
    }

    fn stop(mut self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.handle.take().unwrap().shutdown());
    }
}

#[test]
fn the_data_plane_carries_tcp_and_udp_through_vips_drains_and_restores() {
    let Some(_serial) = enter(
        "the_data_plane_carries_tcp_and_udp_through_vips_drains_and_restores",
        true,
    ) else {
        return;
    };
    assert!(
        Command::new("iptables")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "iptables is needed for the masquerade rule"
    );
    let mut socket = IpvsSocket::open().unwrap();
    socket
        .execute(&[Request::Flush])
        .into_iter()
        .for_each(|r| r.unwrap());
    sh("sysctl -w net.ipv4.ip_forward=1 >/dev/null; sysctl -w net.ipv6.conf.all.forwarding=1 >/dev/null");
    let b1 = BackendNet::new(1);
    let b2 = BackendNet::new(2);
    b1.serve("b1");
    b2.serve("b2");
    // A service of someone else's (not in minuteman's ranges, not on its interface).
    sh("ipvsadm -A -t 10.99.0.1:80 -s rr && ipvsadm -a -t 10.99.0.1:80 -r 10.66.1.2:8080 -m");

    let rt = runtime();
    let plane = start_plane(&rt);
    assert_eq!(
        plane.adopted,
        KernelState::default(),
        "nothing of minuteman's yet"
    );
    for sysctl in ["net/ipv4/vs/conntrack", "net/ipv4/vs/expire_nodest_conn"] {
        let value = std::fs::read_to_string(format!("/proc/sys/{sysctl}")).unwrap();
        assert_eq!(value.trim(), "1", "{sysctl}");
    }
    let rule = "iptables -w 5 -t nat -C POSTROUTING -m ipvs --ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment minuteman -j MASQUERADE";
    sh(rule);

    let web4 = svc(Protocol::Tcp, "10.200.0.1:80");
    let held4 = svc(Protocol::Tcp, "10.200.0.1:9090");
    let dns4 = svc(Protocol::Udp, "10.200.0.1:53");
    let web6 = svc(Protocol::Tcp, "[fd01:c::10]:80");
    let want = state(&[
        (web4, &[("10.66.1.2:8080", 1), ("10.66.2.2:8080", 1)]),
        (held4, &[("10.66.1.2:9090", 1), ("10.66.2.2:9090", 1)]),
        (dns4, &[("10.66.1.2:8081", 1), ("10.66.2.2:8081", 1)]),
        (web6, &[("[fd66:1::2]:8080", 1), ("[fd66:2::2]:8080", 1)]),
    ]);
    plane.submit_until(diff(&KernelState::default(), &want), &want);
    assert_eq!(
        dumped(&mut socket).services.len(),
        5,
        "ours and the foreign one"
    );
    let (text, shown) = ipvsadm();
    println!("ipvsadm -Ln with the desired state committed:\n{text}");
    let mut expected = want.clone();
    expected.services.insert(
        svc(Protocol::Tcp, "10.99.0.1:80"),
        Arc::new(Destinations::from([(sa("10.66.1.2:8080"), 1)])),
    );
    assert_eq!(
        shown, expected,
        "ipvsadm -Ln disagrees with the desired state"
    );
    let on_link = sh("ip addr show dev minuteman");
    assert!(
        on_link.contains("10.200.0.1/32") && on_link.contains("fd01:c::10/128"),
        "{on_link}"
    );

    // Traffic: TCP over IPv4 and IPv6, UDP, each spread over both backends.
    for (target, what) in [
        (
            Target::Http {
                addr: web4.addr,
                path: "/".into(),
            },
            "TCP/IPv4",
        ),
        (
            Target::Http {
                addr: web6.addr,
                path: "/".into(),
            },
            "TCP/IPv6",
        ),
        (Target::Udp(dns4.addr), "UDP/IPv4"),
    ] {
        let seen = tally(&target, 20);
        println!("{what} through {target:?}: {seen:?}");
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            ["b1", "b2"],
            "{what}: {seen:?}"
        );
    }

    // Drain: the backend of a held connection gets weight 0. The connection stays; new
    // ones avoid it.
    let mut held = Held::open(held4.addr);
    let drained = held.backend.clone();
    // Masqueraded: the backend sees this host's address on its link, not the VIP.
    let n = &drained[1..];
    assert_eq!(
        held.seen_from,
        format!("10.66.{n}.1"),
        "the masquerade rule"
    );
    let other = if drained == "b1" { "b2" } else { "b1" };
    let drained_addr = if drained == "b1" {
        "10.66.1.2:9090"
    } else {
        "10.66.2.2:9090"
    };
    let mut draining = want.clone();
    Arc::make_mut(draining.services.get_mut(&held4).unwrap()).insert(sa(drained_addr), 0);
    let ops = diff(&want, &draining);
    assert_eq!(ops.len(), 1);
    plane.submit_until(ops, &draining);
    assert_eq!(held.echo("still there"), format!("{drained} still there"));
    for _ in 0..10 {
        let fresh = Held::open(held4.addr);
        assert_eq!(
            fresh.backend, other,
            "a new connection went to the drained backend"
        );
    }
    assert_eq!(
        held.echo("after new ones"),
        format!("{drained} after new ones")
    );

    // A later change touches only what changed: one destination of the UDP service; the
    // other services' entries (and the held connection) are as they were.
    let before = dumped(&mut socket);
    let mut later = draining.clone();
    Arc::make_mut(later.services.get_mut(&dns4).unwrap()).remove(&sa("10.66.2.2:8081"));
    plane.submit_until(diff(&draining, &later), &later);
    let after = dumped(&mut socket);
    for (service, dests) in &before.services {
        if *service != dns4 {
            assert_eq!(
                after.services.get(service),
                Some(dests),
                "{service} changed"
            );
        }
    }
    assert_eq!(after.services[&dns4].len(), 1);
    assert_eq!(
        tally(&Target::Udp(dns4.addr), 10)
            .keys()
            .collect::<Vec<_>>(),
        ["b1"]
    );
    assert_eq!(
        held.echo("after the change"),
        format!("{drained} after the change")
    );

    // Someone removes a destination: the reconcile puts it back.
    sh("ipvsadm -d -t 10.200.0.1:80 -r 10.66.2.2:8080");
    wait_for(
        "the reconcile to restore IPVS",
        Duration::from_secs(10),
        || dumped(&mut socket).services.get(&web4) == later.services.get(&web4),
    );
    assert!(plane.metrics.kernel_restores.get() >= 1);

    // A restart adopts the kernel as it is; the held connection never notices.
    plane.stop(&rt);
    let plane = start_plane(&rt);
    assert_eq!(
        plane.adopted, later,
        "the restart adopts what the kernel holds"
    );
    assert_eq!(
        held.echo("after the restart"),
        format!("{drained} after the restart")
    );
    plane.stop(&rt);

    // Cleanup removes minuteman's services, its interface and the rule; the foreign
    // service stays.
    cleanup(&plane_config()).unwrap();
    let left = dumped(&mut socket);
    assert_eq!(
        left.services.keys().copied().collect::<Vec<_>>(),
        [svc(Protocol::Tcp, "10.99.0.1:80")],
        "cleanup keeps only the foreign service"
    );
    assert!(DummyLink::existing("minuteman").unwrap().is_none());
    assert!(
        !Command::new("sh")
            .args(["-c", rule])
            .status()
            .unwrap()
            .success(),
        "the rule is gone"
    );
    socket
        .execute(&[Request::Flush])
        .into_iter()
        .for_each(|r| r.unwrap());
    drop((b1, b2));
}

/// `count` TCP services of 10 destinations each, every VIP its own address (as named VIPs
/// are), weights 1 to 3.
fn large_state(count: u32) -> KernelState {
    let services = (0..count)
        .map(|i| {
            let [_, a, b, c] = (0x0b64_0000u32 + i).to_be_bytes();
            let vip = Service::new(
                Protocol::Tcp,
                SocketAddr::new(IpAddr::from([11, a, b, c]), 80),
            );
            let dests = (0..10u8)
                .map(|d| {
                    let ip = IpAddr::from([10, 200, (i % 250) as u8, d + 1]);
                    (SocketAddr::new(ip, 8080), 1 + u32::from(d % 3))
                })
                .collect();
            (vip, Arc::new(dests))
        })
        .collect();
    KernelState { services }
}

fn syncs(metrics: &ShellMetrics, label: &'static str) -> u64 {
    metrics
        .kernel_syncs
        .get_or_create(&minuteman::metrics::Why::new(label))
        .get()
}

/// The figures of docs/benchmarks.md's IPVS section: 10,000 services x 10 destinations
/// from empty, one change with them present, a dump of them (what a reconcile reads).
/// `MINUTEMAN_SCALE_SERVICES` changes the count.
#[test]
fn ten_thousand_services_from_empty_and_one_change() {
    let Some(_serial) = enter("ten_thousand_services_from_empty_and_one_change", true) else {
        return;
    };
    let count: u32 = std::env::var("MINUTEMAN_SCALE_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut socket = IpvsSocket::open().unwrap();
    socket
        .execute(&[Request::Flush])
        .into_iter()
        .for_each(|r| r.unwrap());
    let _ = DummyLink::delete("minuteman");
    let state = large_state(count);
    let ops = diff(&KernelState::default(), &state);

    let rt = runtime();
    let mut cfg = plane_config();
    cfg.ipvs.masquerade = Masquerade::None;
    cfg.reconcile_interval = Duration::from_secs(3600);
    let metrics = ShellMetrics::default();
    let (tx, _resync) = mpsc::channel(4);
    let (handle, _) = rt
        .block_on(async { spawn(cfg.clone(), metrics.clone(), tx) })
        .unwrap();
    let started = Instant::now();
    let op_count = ops.len();
    handle.submit(ops);
    wait_for(
        "the whole state committed",
        Duration::from_secs(1800),
        || *handle.committed() == state,
    );
    let load = started.elapsed();
    println!(
        "IPVS from empty: {count} services x 10 destinations ({op_count} requests, {count} VIP addresses): {load:?}"
    );
    assert_eq!(syncs(&metrics, "delta"), 1);

    let started = Instant::now();
    let seen = dumped(&mut socket);
    println!(
        "IPVS dump of {count} services with their destinations (a reconcile's read): {:?}",
        started.elapsed()
    );
    assert_eq!(seen, state);

    let mut times = Vec::new();
    let mut now = state;
    for round in 0..7u8 {
        let mut next = now.clone();
        let at = (usize::from(round) * 997) % next.services.len();
        if let Some((_, dests)) = next.services.iter_mut().nth(at) {
            Arc::make_mut(dests).insert(sa(&format!("10.201.0.{}:8080", round + 1)), 5);
        }
        let ops = diff(&now, &next);
        assert_eq!(ops.len(), 1);
        let before = syncs(&metrics, "delta");
        let started = Instant::now();
        handle.submit(ops);
        while syncs(&metrics, "delta") == before {
            assert!(started.elapsed() < Duration::from_secs(30), "no commit");
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(started.elapsed());
        wait_for("published", Duration::from_secs(30), || {
            *handle.committed() == next
        });
        now = next;
    }
    times.sort();
    println!(
        "IPVS one destination added among {count} services, submit -> committed: median {:?}, min {:?}, max {:?}",
        times[3], times[0], times[6]
    );
    assert_eq!(syncs(&metrics, "failed"), 0);
    rt.block_on(handle.shutdown());
    cleanup(&cfg).unwrap();
    assert!(dumped(&mut socket).services.is_empty());
}

/// Two agents with `--dataplane ipvs` in namespaces, each with a Mesos state file of one
/// task carrying a VIP: from either host the VIP reaches both hosts' backends, over TCP
/// (the explicit VIP and the named one) and UDP.
#[test]
fn two_agents_balance_a_vip_through_ipvs() {
    use minuteman::lab::cluster::{Cluster, ClusterSpec};
    use minuteman::lab::mesos::Task;
    use minuteman::lab::net::NetSpec;
    let Some(_serial) = enter("two_agents_balance_a_vip_through_ipvs", true) else {
        return;
    };
    let exe = std::env::var_os("MINUTEMAN_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_minuteman").into());
    let spec = ClusterSpec {
        net: NetSpec {
            prefix: "mmipvs".into(),
            subnet: 91,
            hosts: 2,
            container: false,
        },
        dir: std::env::temp_dir().join(format!("mm-ipvs-e2e-{}", std::process::id())),
        exe,
        poll_interval: Duration::from_millis(250),
        agent_flags: vec!["--dataplane".into(), "ipvs".into()],
    };
    let mut cluster = Cluster::start(spec).unwrap_or_else(|e| panic!("the lab: {e}"));
    for i in 1..=2 {
        let task = Task {
            id: format!("web-{i}"),
            name: "web".into(),
            ports: vec![
                ("tcp", 8080, vec!["10.200.0.1:80".into(), "/web:80".into()]),
                ("udp", 8081, vec!["10.200.0.2:53".into()]),
            ],
            container_ip: None,
        };
        cluster.write_tasks(i, &[task]).unwrap();
    }
    cluster.start_all().unwrap();
    let web = Target::Http {
        addr: sa("10.200.0.1:80"),
        path: "/".into(),
    };
    let dns = Target::Udp(sa("10.200.0.2:53"));
    for i in 1..=2 {
        let ns = cluster.ns(i);
        let start = Instant::now();
        let (spread, last) = loop {
            cluster.check_agents().unwrap_or_else(|e| panic!("{e}"));
            let results = cluster
                .ask_many(&ns, &web, 20, Duration::from_secs(1), false)
                .unwrap();
            let mut last = BTreeMap::new();
            for r in &results {
                *last
                    .entry(r.clone().unwrap_or_else(|e| format!("error: {e}")))
                    .or_insert(0) += 1;
            }
            if last.keys().collect::<Vec<_>>() == ["h1", "h2"] {
                break (start.elapsed(), last);
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "from h{i}, http://10.200.0.1/ never reached both hosts: {last:?}\nagent log: {}",
                minuteman::lab::tail(&cluster.log_file(i), 20)
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        println!("from h{i}: http://10.200.0.1/ answered by {last:?} ({spread:?} after start)");
        let results = cluster
            .ask_many(&ns, &dns, 20, Duration::from_secs(1), false)
            .unwrap();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for r in results {
            *names
                .entry(r.unwrap_or_else(|e| format!("error: {e}")))
                .or_insert(0) += 1;
        }
        println!("from h{i}: udp://10.200.0.2:53 answered by {names:?}");
        assert_eq!(
            names.keys().collect::<Vec<_>>(),
            ["h1", "h2"],
            "UDP from h{i}"
        );
        // The named VIP, at the address the agent gave it.
        let vips = cluster.vips(i).unwrap();
        let named = vips
            .iter()
            .find(|v| v.name.is_some() && v.protocol == "tcp")
            .unwrap_or_else(|| panic!("no named VIP in {vips:?}"));
        let addr = named.services[0].address;
        let target = Target::Http {
            addr,
            path: "/".into(),
        };
        let results = cluster
            .ask_many(&ns, &target, 20, Duration::from_secs(1), false)
            .unwrap();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        println!(
            "from h{i}: the named VIP {} at {addr}: {ok}/20 answered",
            named.vip
        );
        assert_eq!(ok, 20, "the named VIP from h{i}: {results:?}");
        let table = cluster
            .net()
            .exec(&ns, "ipvsadm")
            .arg("-Ln")
            .output()
            .unwrap();
        println!(
            "h{i} ipvsadm -Ln:\n{}",
            String::from_utf8_lossy(&table.stdout)
        );
    }
    cluster.teardown().unwrap();
}
