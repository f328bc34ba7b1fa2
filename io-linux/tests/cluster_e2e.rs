//! End-to-end: `minuteman agent` on a cluster of network namespaces with the nftables data
//! plane, real backends, real clients (`curl`, UDP), real faults (SIGKILL and a cut link,
//! SIGSTOP, `stress-ng`). Needs root, `nft`, `curl`, `ip` (and `stress-ng`, `promtool` for
//! their tests); skipped with the reason otherwise, mandatory in `.ci/run`. The cluster is
//! `minuteman::lab`'s, through `support`.
//!
//! The tests run one at a time ([`support::SERIAL`]): they measure timings.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{client_loop, Cluster, ClusterOptions, Task};

const TOOLS: &[&str] = &["nft", "curl", "ip"];

fn lock() -> std::sync::MutexGuard<'static, ()> {
    support::SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn vip4(c: &Cluster) -> String {
    format!("10.200.{}.1", c.subnet)
}

/// Host `i`'s tasks: a TCP backend of an IP VIP and of the named VIP `/web`, a UDP
/// backend, and an IPv6 backend (a container address: the host's own IPv6 address).
fn tasks(c: &Cluster, i: usize) -> Vec<Task> {
    let s = c.subnet;
    vec![
        Task {
            id: format!("web-h{i}"),
            name: "web".to_owned(),
            ports: vec![
                (
                    "tcp",
                    8080,
                    vec![format!("10.200.{s}.1:80"), "/web:80".to_owned()],
                ),
                ("udp", 8081, vec![format!("10.200.{s}.2:53")]),
            ],
            container_ip: None,
        },
        Task {
            id: format!("web6-h{i}"),
            name: "web6".to_owned(),
            ports: vec![("tcp", 8080, vec![format!("fd78:{s}::1:80")])],
            container_ip: Some(IpAddr::V6(c.ip6(i))),
        },
    ]
}

/// The backend hosts of `vip` (its `vip` field in `/v1/vips`) on host `i`.
fn api_backends(c: &Cluster, i: usize, vip: &str) -> BTreeSet<String> {
    let Some(vips) = c.api(i, "/v1/vips") else {
        return BTreeSet::new();
    };
    vips.as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["vip"] == vip)
        .flat_map(|v| v["services"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["backends"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["weight"].as_u64() != Some(0))
        .filter_map(|b| b["address"].as_str().map(str::to_owned))
        .collect()
}

/// Whether host `i`'s kernel table sends connections to `backend` (`10.77.S.3 . 8080`).
fn in_table(c: &Cluster, i: usize, backend: &str) -> bool {
    c.nft_table(i).contains(backend)
}

fn start_cluster(subnet: u8, opts: ClusterOptions) -> Cluster {
    let mut c = Cluster::new(subnet, opts);
    for i in 1..=c.hosts {
        c.write_tasks(i, &tasks(&c, i));
    }
    c.start_all();
    let vip = format!("{}:80", vip4(&c));
    let want = c.hosts;
    c.wait_until(
        Duration::from_secs(15),
        "every host holds every backend",
        |c| (1..=c.hosts).all(|i| api_backends(c, i, &vip).len() == want),
    );
    c
}

/// Names of the hosts that answered `tries` requests to `url` from `ns`; panics on a
/// failed request.
fn spread(c: &Cluster, ns: &str, url: &str, tries: usize) -> BTreeSet<String> {
    (0..tries)
        .map(|_| {
            c.curl(ns, url)
                .unwrap_or_else(|e| panic!("{ns} -> {url}: {e}; logs in {}", c.dir().display()))
        })
        .collect()
}

fn all_hosts(c: &Cluster) -> BTreeSet<String> {
    (1..=c.hosts).map(|i| format!("h{i}")).collect()
}

#[test]
fn a_vip_reaches_every_backend_from_every_host_a_container_over_udp_and_ipv6() {
    let _serial = lock();
    if !support::root_suite_ready("cluster_e2e", TOOLS) {
        return;
    }
    let mut c = start_cluster(
        61,
        ClusterOptions {
            container: true,
            ..ClusterOptions::default()
        },
    );
    let everyone = all_hosts(&c);
    let vip = vip4(&c);
    let s = c.subnet;

    // TCP to the IP VIP, from every host (its own backend included) and from a container
    // behind host 1 (forwarded, masqueraded back).
    for i in 1..=c.hosts {
        let seen = spread(&c, &c.ns(i), &format!("http://{vip}/"), 40);
        assert_eq!(seen, everyone, "from h{i}");
    }
    let seen = spread(&c, &c.container(), &format!("http://{vip}/"), 40);
    assert_eq!(seen, everyone, "from the container behind h1");

    // The named VIP, at the address the agent gave it.
    let vips = c.api(1, "/v1/vips").expect("the API answers");
    let named = vips
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web.marathon")
        .expect("the named VIP is listed");
    let named_addr = named["services"][0]["address"].as_str().unwrap().to_owned();
    for i in 1..=c.hosts {
        let other = c.api(i, "/v1/vips").unwrap();
        assert!(
            other.to_string().contains(&named_addr),
            "h{i} gives web.marathon the same address"
        );
    }
    let seen = spread(&c, &c.ns(2), &format!("http://{named_addr}/"), 40);
    assert_eq!(seen, everyone, "named VIP {named_addr}");

    // UDP.
    for i in 1..=c.hosts {
        let seen: BTreeSet<String> = (0..40)
            .map(|_| {
                c.udp_ask(&c.ns(i), &format!("10.200.{s}.2"), 53)
                    .expect("UDP answer")
            })
            .collect();
        assert_eq!(seen, everyone, "UDP from h{i}");
    }

    // IPv6.
    for i in 1..=c.hosts {
        let seen = spread(&c, &c.ns(i), &format!("http://[fd78:{s}::1]:80/"), 40);
        assert_eq!(seen, everyone, "IPv6 from h{i}");
    }

    // A task removed from a state file leaves every host's kernel within the poll interval
    // (250 ms) + 1 s.
    c.write_tasks(3, &[]);
    let gone = format!("10.77.{s}.3 . 8080");
    let took = c.wait_until(
        Duration::from_millis(1250),
        "h3's task leaves every table",
        |c| (1..=c.hosts).all(|i| !in_table(c, i, &gone)),
    );
    support::report_line(&format!(
        "task removal: out of every host's table {} ms after the state file changed",
        took.as_millis()
    ));
    assert_eq!(
        spread(&c, &c.ns(1), &format!("http://{vip}/"), 20),
        ["h1", "h2"].map(str::to_owned).into(),
    );

    // Garbage in a state file: the last good state stays, the failure is counted.
    let failures_before = c.metric(2, "minuteman_mesos_poll_failures_total");
    c.write_state_text(2, "{ this is not json");
    c.wait_until(Duration::from_secs(3), "h2 counts the garbage", |c| {
        c.metric(2, "minuteman_mesos_poll_failures_total") > failures_before
    });
    std::thread::sleep(Duration::from_millis(500));
    let h2 = format!("10.77.{s}.2 . 8080");
    for i in 1..=c.hosts {
        assert!(
            in_table(&c, i, &h2),
            "h2's backends stay in h{i}'s table after garbage"
        );
    }

    // promtool accepts the metrics.
    if support::root_suite_ready("cluster_e2e (promtool)", &["promtool"]) {
        // The exposition ends with a newline (curl's output was trimmed).
        let text = c.metrics(1) + "\n";
        let path = c.dir().join("metrics.txt");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("promtool check metrics < {}", path.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A peer without the cluster key cannot join or publish backends.
    let intruder_key = c.dir().join("wrong.key");
    std::fs::write(&intruder_key, format!("{:064x}", 0xbad_u64)).unwrap();
    let intruder_state = c.dir().join("intruder.json");
    std::fs::write(
        &intruder_state,
        support::agent_state(&[Task {
            id: "evil".into(),
            name: "evil".into(),
            ports: vec![("tcp", 8080, vec![format!("10.200.{s}.9:80")])],
            container_ip: None,
        }]),
    )
    .unwrap();
    let rejected_before = c.metric(1, "minuteman_frames_rejected_total");
    let intruder = std::process::Command::new("ip")
        .args(["netns", "exec", &c.ns(3)])
        .arg(support::agent_binary())
        .args([
            "agent",
            "--listen",
            &format!("10.77.{s}.3:61499"),
            "--contact",
            &c.ip(1).to_string(),
        ])
        .args(["--cluster-key-file", &intruder_key.display().to_string()])
        .args(["--mesos-state-file", &intruder_state.display().to_string()])
        .args(["--api-listen", "127.0.0.1:61499", "--dataplane", "none"])
        .args([
            "--state-dir",
            &c.dir().join("intruder").display().to_string(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut intruder = scopeguard(intruder);
    c.wait_until(
        Duration::from_secs(5),
        "h1 rejects the intruder's frames",
        |c| c.metric(1, "minuteman_frames_rejected_total") > rejected_before,
    );
    std::thread::sleep(Duration::from_secs(2));
    for i in 1..=c.hosts {
        let members = c.member_states(i);
        assert!(
            !members.iter().any(|(addr, _)| addr.ends_with(":61499")),
            "h{i} lists the intruder: {members:?}"
        );
        assert!(
            api_backends(&c, i, &format!("10.200.{s}.9:80")).is_empty(),
            "h{i} took the intruder's VIP"
        );
    }
    let _ = intruder.0.kill();

    // SIGTERM: a clean exit, and the kernel state stays (traffic keeps flowing).
    let status = c.stop_agent(1);
    assert!(
        status.success(),
        "SIGTERM exit: {status:?}\n{}",
        c.log_tail(1, 20)
    );
    assert_eq!(
        spread(&c, &c.ns(1), &format!("http://{vip}/"), 20),
        ["h1", "h2"].map(str::to_owned).into(),
        "traffic flows while the agent is down"
    );
    // Restarted, it adopts the table and serves its last known VIPs at once.
    c.start_agent(1, &[]);
    c.wait_until(Duration::from_secs(5), "h1's agent is back", |c| {
        c.api(1, "/v1/state").is_some()
    });
    let local = c.api(1, "/v1/state").unwrap()["local"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(local > 0, "h1 reports its saved services at once");
}

struct Guard(std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
fn scopeguard(child: std::process::Child) -> Guard {
    Guard(child)
}

/// Clients on the other hosts, one new connection every 20 ms to the VIP.
fn clients(
    c: &Cluster,
    from: &[usize],
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<support::Attempt>>> {
    from.iter()
        .map(|&i| {
            client_loop(
                c.ns(i),
                format!("http://{}/", vip4(c)),
                Duration::from_millis(20),
                stop.clone(),
            )
        })
        .collect()
}

#[test]
fn a_killed_host_leaves_every_table_within_a_second_and_rejoins_within_five() {
    let _serial = lock();
    if !support::root_suite_ready("cluster_e2e", TOOLS) {
        return;
    }
    let mut c = start_cluster(62, ClusterOptions::default());
    let s = c.subnet;
    std::thread::sleep(Duration::from_secs(2));
    let stop = Arc::new(AtomicBool::new(false));
    let loops = clients(&c, &[1, 2], &stop);
    std::thread::sleep(Duration::from_secs(1));

    let dead = format!("10.77.{s}.3 . 8080");
    let kill_at = Instant::now();
    c.kill_agent(3);
    c.set_link(3, false);
    let withdrawn = c.wait_until(
        Duration::from_secs(3),
        "h3 leaves h1's and h2's tables",
        |c| !in_table(c, 1, &dead) && !in_table(c, 2, &dead),
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let attempts: Vec<support::Attempt> =
        loops.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let failed: Vec<&support::Attempt> = attempts.iter().filter(|a| a.result.is_err()).collect();
    let last_failed_sent = failed
        .iter()
        .map(|a| a.sent.saturating_duration_since(kill_at))
        .max();
    let last_failed_done = failed
        .iter()
        .map(|a| a.done.saturating_duration_since(kill_at))
        .max();
    support::report_line(&format!(
        "failover: h3's backend out of both tables {} ms after the kill; {} of {} requests failed; \
         last failed request sent {:?} and ended {:?} after the kill",
        withdrawn.as_millis(),
        failed.len(),
        attempts.len(),
        last_failed_sent,
        last_failed_done
    ));
    assert!(
        withdrawn <= Duration::from_secs(1),
        "withdrawal took {withdrawn:?}"
    );
    // Only requests sent before the tables dropped h3 may fail: one sent to h3 before its
    // link was cut ends when the client gives up (1 s later), whatever minuteman does, so
    // when a failure ends says nothing; when it was sent does.
    assert!(
        failed.iter().all(|a| a.sent <= kill_at + withdrawn),
        "a request sent after h3 left both tables ({} ms) failed: {:?}",
        withdrawn.as_millis(),
        failed
            .iter()
            .map(|a| (a.sent.saturating_duration_since(kill_at), &a.result))
            .collect::<Vec<_>>()
    );
    // A request in flight when the link was cut may fail; none may fail before the kill.
    assert!(
        failed.iter().all(|a| a.done >= kill_at),
        "a request failed before the kill"
    );

    // The host comes back: it rejoins and serves again within 5 s.
    c.set_link(3, true);
    let restart = Instant::now();
    c.start_agent(3, &[]);
    let back = format!("10.77.{s}.3:8080");
    c.wait_until(
        Duration::from_secs(5),
        "h3 rejoins and is a backend everywhere again",
        |c| {
            (1..=2).all(|i| api_backends(c, i, &format!("{}:80", vip4(c))).contains(&back))
                && in_table(c, 1, &dead)
                && in_table(c, 2, &dead)
        },
    );
    support::report_line(&format!(
        "restart: h3 back in every table {} ms after its agent started",
        restart.elapsed().as_millis()
    ));
    // The cut link left h1's neighbour entry for h3 failed for up to a second: wait until
    // h1 reaches h3's server directly before counting on the VIP.
    let direct = format!("http://{}:8080/", c.ip(3));
    c.wait_until(Duration::from_secs(5), "h1 reaches h3 directly", |c| {
        c.curl(&c.ns(1), &direct).is_ok()
    });
    let seen = spread(&c, &c.ns(1), &format!("http://{}/", vip4(&c)), 40);
    assert!(seen.contains("h3"), "h3 serves again: {seen:?}");
}

#[test]
fn a_stopped_agent_keeps_its_backends_everywhere() {
    let _serial = lock();
    if !support::root_suite_ready("cluster_e2e", TOOLS) {
        return;
    }
    let c = start_cluster(63, ClusterOptions::default());
    let s = c.subnet;
    std::thread::sleep(Duration::from_secs(2));
    let stop = Arc::new(AtomicBool::new(false));
    let loops = clients(&c, &[1, 2], &stop);
    let h3 = format!("10.77.{s}.3 . 8080");
    c.signal(3, "STOP");
    let stopped = Instant::now();
    let mut checks = 0;
    while stopped.elapsed() < Duration::from_secs(3) {
        for i in 1..=2 {
            assert!(
                in_table(&c, i, &h3),
                "h3's backend left h{i}'s table {:?} into the stall",
                stopped.elapsed()
            );
        }
        checks += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    c.signal(3, "CONT");
    std::thread::sleep(Duration::from_secs(2));
    for i in 1..=2 {
        assert!(
            in_table(&c, i, &h3),
            "h3's backend left h{i}'s table after the stall"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let attempts: Vec<support::Attempt> =
        loops.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let failed: Vec<_> = attempts.iter().filter(|a| a.result.is_err()).collect();
    support::report_line(&format!(
        "stall: {} requests, {} failed, table checked {checks} times",
        attempts.len(),
        failed.len()
    ));
    assert!(
        failed.is_empty(),
        "requests failed during a 3 s agent stop: {failed:?}"
    );
    for i in 1..=c.hosts {
        let unreachable = std::fs::read_to_string(c.log_file(i))
            .unwrap()
            .matches("node unreachable")
            .count();
        assert_eq!(
            unreachable,
            0,
            "h{i} declared a node unreachable:\n{}",
            c.log_tail(i, 30)
        );
    }
}

#[test]
fn cpu_stress_never_makes_a_live_host_unreachable() {
    let _serial = lock();
    if !support::root_suite_ready("cluster_e2e (stress)", &["nft", "curl", "ip", "stress-ng"]) {
        return;
    }
    let c = start_cluster(64, ClusterOptions::default());
    let seconds = std::env::var("MINUTEMAN_STRESS_SECONDS").unwrap_or_else(|_| "60".into());
    let out = std::process::Command::new("stress-ng")
        .args(["--cpu", "2", "--timeout", &format!("{seconds}s"), "--quiet"])
        .status()
        .unwrap();
    assert!(out.success(), "stress-ng failed");
    for i in 1..=c.hosts {
        let log = std::fs::read_to_string(c.log_file(i)).unwrap();
        assert_eq!(
            log.matches("node unreachable").count(),
            0,
            "h{i} declared a live node unreachable under CPU stress:\n{}",
            c.log_tail(i, 30)
        );
        let states = c.member_states(i);
        assert!(
            states.iter().all(|(_, s)| s == "reachable"),
            "h{i}: {states:?}"
        );
    }
    support::report_line(&format!(
        "stress: {seconds} s of stress-ng --cpu 2, no host declared unreachable"
    ));
}

/// Removes the namespaces' `resolv.conf` files (`/etc/netns/NS/`) when dropped.
struct NetnsResolvConf(Vec<std::path::PathBuf>);

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `dig @127.0.0.1 NAME TYPE +short` in `ns`: the answers, one per line.
fn dig(c: &Cluster, ns: &str, name: &str, ty: &str) -> Vec<String> {
    let out = c.exec(
        ns,
        &[
            "dig",
            "@127.0.0.1",
            "+time=1",
            "+tries=2",
            name,
            ty,
            "+short",
        ],
    );
    assert!(
        out.status.success(),
        "dig in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every agent serves DNS on its host's 127.0.0.1:53; each host's resolver points there
/// (`/etc/netns/NS/resolv.conf`, which `ip netns exec` puts in place). The named VIP has
/// the same address on every host, `curl` by name reaches every backend, the name keeps
/// working when a host dies, and a garbage datagram is counted without harm.
#[test]
fn dns_names_a_vip_alike_on_every_host_and_through_a_failover() {
    let _serial = lock();
    if !support::root_suite_ready("cluster_e2e", &["nft", "curl", "ip", "dig", "bash"]) {
        return;
    }
    let s: u8 = 66;
    let mut c = Cluster::new(s, ClusterOptions::default());
    let mut resolv = NetnsResolvConf(Vec::new());
    for i in 1..=c.hosts {
        c.write_tasks(i, &tasks(&c, i));
        let dir = std::path::PathBuf::from("/etc/netns").join(c.ns(i));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        resolv.0.push(dir);
        c.start_agent(i, &["--dns-listen", "127.0.0.1:53"]);
    }
    let name = "web.marathon.l4lb.thisdcos.directory";
    let want = c.hosts;
    let vip = format!("{}:80", vip4(&c));
    c.wait_until(
        Duration::from_secs(15),
        "every host holds every backend and answers the name",
        |c| {
            (1..=c.hosts).all(|i| {
                api_backends(c, i, &vip).len() == want && dig(c, &c.ns(i), name, "A").len() == 1
            })
        },
    );
    let answers: BTreeSet<Vec<String>> = (1..=c.hosts)
        .map(|i| dig(&c, &c.ns(i), name, "A"))
        .collect();
    assert_eq!(answers.len(), 1, "hosts disagree: {answers:?}");
    let address = answers.into_iter().next().unwrap().remove(0);
    assert!(address.starts_with("11."), "a named-VIP address: {address}");
    // The API and `minuteman resolve` say the same.
    let resolved = c
        .api(1, "/v1/resolve?name=web.marathon")
        .expect("/v1/resolve");
    assert_eq!(resolved["ipv4"][0], address.as_str());
    let out = c.exec(
        &c.ns(1),
        &[
            support::agent_binary().to_str().unwrap(),
            "resolve",
            "web.marathon",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&address),
        "minuteman resolve: {out:?}"
    );
    // Unknown names inside the zone: NXDOMAIN; the name over TCP too.
    let out = c.exec(
        &c.ns(2),
        &[
            "dig",
            "@127.0.0.1",
            "+time=1",
            "nope.marathon.l4lb.thisdcos.directory",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("status: NXDOMAIN"),
        "{out:?}"
    );
    let out = c.exec(&c.ns(2), &["dig", "@127.0.0.1", "+tcp", "+short", name]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), address);

    // HTTP by name, through each host's resolver.
    let url = format!("http://{name}/");
    for i in 1..=c.hosts {
        assert_eq!(
            spread(&c, &c.ns(i), &url, 20),
            all_hosts(&c),
            "curl by name from h{i}"
        );
    }
    support::report_line(&format!(
        "dns: {name} is {address} on all {} hosts; curl by name reached every backend from every host",
        c.hosts
    ));

    // Task records, Mesos-DNS style: every host answers for every host's `web` instance.
    let agents: Vec<String> = (1..=c.hosts).map(|i| format!("10.77.{s}.{i}")).collect();
    let srv_rows = |c: &Cluster, i: usize, proto: &str| {
        let mut rows = dig(c, &c.ns(i), &format!("_web._{proto}.marathon.mesos"), "SRV");
        rows.sort();
        rows
    };
    let want_srv = |port: u16, hosts: &[usize]| -> Vec<String> {
        let mut rows: Vec<String> = hosts
            .iter()
            .map(|i| format!("0 1 {port} 10-77-{s}-{i}.web.marathon.mesos."))
            .collect();
        rows.sort();
        rows
    };
    let everyone: Vec<usize> = (1..=c.hosts).collect();
    c.wait_until(
        Duration::from_secs(10),
        "every host answers every web instance",
        |c| (1..=c.hosts).all(|i| srv_rows(c, i, "tcp") == want_srv(8080, &everyone)),
    );
    for i in 1..=c.hosts {
        let mut a = dig(&c, &c.ns(i), "web.marathon.mesos", "A");
        a.sort();
        assert_eq!(a, agents, "A web.marathon.mesos from h{i}");
        assert_eq!(srv_rows(&c, i, "udp"), want_srv(8081, &everyone), "h{i}");
        // The SRV target names the one address its port is at.
        assert_eq!(
            dig(
                &c,
                &c.ns(i),
                &format!("10-77-{s}-2.web.marathon.mesos"),
                "A"
            ),
            [format!("10.77.{s}.2")]
        );
        // The IPv6 task's container address.
        assert_eq!(
            dig(&c, &c.ns(i), "web6.marathon.mesos", "AAAA").len(),
            c.hosts,
            "AAAA web6.marathon.mesos from h{i}"
        );
    }
    // A task name reaches its instances over HTTP (each host's `web` listens on 8080).
    let by_task = spread(&c, &c.ns(1), "http://web.marathon.mesos:8080/", 20);
    assert!(!by_task.is_empty(), "curl web.marathon.mesos:8080");
    let out = c.exec(
        &c.ns(1),
        &["dig", "@127.0.0.1", "+time=1", "nope.marathon.mesos"],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("status: NXDOMAIN"),
        "{out:?}"
    );
    support::report_line(&format!(
        "dns: web.marathon.mesos A and _web._tcp/_udp SRV list all {} instances on every host",
        c.hosts
    ));

    // A host dies: the name still answers and still reaches the live backends.
    c.kill_agent(3);
    c.set_link(3, false);
    let dead = format!("10.77.{s}.3 . 8080");
    c.wait_until(Duration::from_secs(3), "h3 leaves h1's table", |c| {
        !in_table(c, 1, &dead)
    });
    // Its task records leave every survivor's answers.
    c.wait_until(
        Duration::from_secs(3),
        "h3's task records leave the survivors",
        |c| (1..=2).all(|i| srv_rows(c, i, "tcp") == want_srv(8080, &[1, 2])),
    );
    for i in 1..=2 {
        assert_eq!(
            dig(&c, &c.ns(i), name, "A"),
            std::slice::from_ref(&address),
            "h{i} after the failover"
        );
        let seen = spread(&c, &c.ns(i), &url, 20);
        assert_eq!(
            seen,
            BTreeSet::from(["h1".to_owned(), "h2".to_owned()]),
            "curl by name from h{i}"
        );
    }

    // Garbage and a truncated query: answered FORMERR or dropped, counted, the agent lives.
    let before = c.metric(1, "minuteman_dns_queries_total");
    c.exec(&c.ns(1), &["bash", "-c", "printf 'not-dns' > /dev/udp/127.0.0.1/53; printf '\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x03www' > /dev/udp/127.0.0.1/53"]);
    c.wait_until(Duration::from_secs(3), "the bad queries counted", |c| {
        c.metric(1, "minuteman_dns_queries_total") >= before + 2.0
    });
    let text = c.metrics(1);
    for reason in ["dropped_short", "formerr"] {
        assert!(
            text.contains(&format!(
                "minuteman_dns_queries_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted"
        );
    }
    assert_eq!(dig(&c, &c.ns(1), name, "A"), [address]);
    support::report_line("dns: garbage and a truncated query counted (dropped_short, formerr); the agent kept answering");
}

/// `--broadcast tree` on six hosts: the backends still reach every host, the tree forms
/// (pushed duplicates prune links, so versions travel as announcements on them), and a
/// killed host still leaves every table quickly.
#[test]
fn the_broadcast_tree_spreads_every_backend_and_drops_a_killed_host() {
    let _serial = lock();
    if !support::root_suite_ready("cluster_e2e", TOOLS) {
        return;
    }
    let s: u8 = 67;
    let mut c = Cluster::new(
        s,
        ClusterOptions {
            hosts: 6,
            ..ClusterOptions::default()
        },
    );
    for i in 1..=c.hosts {
        c.write_tasks(i, &tasks(&c, i));
        c.start_agent(i, &["--broadcast", "tree"]);
    }
    let vip = format!("{}:80", vip4(&c));
    let started = Instant::now();
    c.wait_until(
        Duration::from_secs(15),
        "every host holds every backend",
        |c| (1..=c.hosts).all(|i| api_backends(c, i, &vip).len() == 6),
    );
    let spread_in = started.elapsed();
    let prunes: f64 = (1..=6)
        .map(|i| c.metric(i, "minuteman_tree_prunes_total"))
        .sum();
    support::report_line(&format!(
        "tree: every backend on 6 hosts {} ms after the first start; {prunes} prunes",
        spread_in.as_millis()
    ));
    assert!(prunes > 0.0, "no link was pruned: no tree formed");

    let dead = format!("10.77.{s}.6 . 8080");
    c.kill_agent(6);
    c.set_link(6, false);
    let withdrawn = c.wait_until(Duration::from_secs(5), "h6 leaves every other table", |c| {
        (1..=5).all(|i| !in_table(c, i, &dead))
    });
    support::report_line(&format!(
        "tree: h6's backend out of five tables {} ms after the kill",
        withdrawn.as_millis()
    ));
    assert!(
        withdrawn <= Duration::from_secs(2),
        "withdrawal took {withdrawn:?}"
    );
}
