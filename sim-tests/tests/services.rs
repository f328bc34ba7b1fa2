//! Service scenarios: Mesos tasks become backends in every simulated kernel, churn spreads
//! within the poll interval plus milliseconds, crashed hosts' backends leave every kernel,
//! restarts come back clean, and runs are deterministic.

use minuteman_core::Time;
use minuteman_sim::mesos_agent::TaskState;
use minuteman_sim::world::WorldConfig;
use minuteman_sim::{ClusterConfig, ServicesRun, Simulation};
use minuteman_sim_tests::{
    check, check_invariants, checked_sim, replay_test, seeds, world_violations,
};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Runs to `until`, running the world's checks every 100 ms (the nodes' invariants are
/// checked after every event: see `checked_sim`).
fn run_checked(sim: &mut Simulation, until: Time) {
    while sim.now() < until {
        sim.run_until((sim.now() + Duration::from_millis(100)).min(until));
        let now = sim.now();
        sim.world.as_mut().expect("world").check(now);
        if let Err(e) = sim.check_invariants() {
            panic!("seed {}: {e}", sim.seed);
        }
    }
}

fn run_checked_for(sim: &mut Simulation, d: Duration) {
    let until = sim.now() + d;
    run_checked(sim, until);
}

/// A 40-node cluster with `tasks` tasks over 20 VIPs and no churn, run to 4 s.
fn quiet_cluster(seed: u64, tasks: usize) -> Simulation {
    let mut sim = checked_sim(ClusterConfig::new(40), seed);
    sim.attach_world(WorldConfig {
        vips: 20,
        tasks,
        churn_per_s: 0.0,
        ..WorldConfig::default()
    });
    run_checked(&mut sim, Time::from_millis(4_000));
    sim
}

#[test]
fn churn_reaches_every_kernel_within_the_poll_plus_milliseconds() {
    for seed in seeds(1..=4) {
        let run = ServicesRun {
            seed,
            churn: 10.0,
            duration: Duration::from_secs(10),
            ..ServicesRun::default()
        };
        let (report, _) = run.run();
        let replay = run.replay_command();
        check(
            report.violations == 0,
            format!("seed {seed}: violations {:?}", report.violation_samples),
            &replay,
        );
        check(report.changes >= 50, "churn made changes", &replay);
        let w = &report.world;
        check(
            w.completed + w.superseded + w.reverted == report.changes,
            format!("seed {seed}: every change accounted for: {w:?}"),
            &replay,
        );
        check(
            w.kernel_errors == 0
                && w.parse_errors == 0
                && w.parse_warnings == 0
                && w.record_errors == 0,
            format!("seed {seed}: errors {w:?}"),
            &replay,
        );
        let after = report.after_poll_ms.expect("changes completed");
        check(
            after.p99 <= 50.0,
            format!("seed {seed}: after-poll p99 {:.1} ms > 50", after.p99),
            &replay,
        );
        let total = report.propagation_ms.expect("changes completed");
        check(
            total.max <= run.poll_interval.as_secs_f64() * 1e3 + 100.0,
            format!("seed {seed}: propagation max {:.1} ms", total.max),
            &replay,
        );
    }
}

/// Crashes `n` nodes drawn by the simulation's generator at once; returns their addresses.
fn crash_some(sim: &mut Simulation, n: usize) -> Vec<IpAddr> {
    let victims = sim.sample_nodes(n);
    sim.crash_batch(&victims);
    victims
        .iter()
        .map(|&v| minuteman_sim::node_addr(v).ip())
        .collect()
}

#[test]
fn crashed_hosts_backends_leave_every_kernel() {
    for seed in seeds(1..=3) {
        let replay = replay_test("crashed_hosts_backends_leave_every_kernel", seed);
        let mut sim = quiet_cluster(seed, 400);
        let expected_before = sim.world.as_ref().unwrap().expected();
        for i in sim.alive().collect::<Vec<_>>() {
            let kernel = &sim.world.as_ref().unwrap().kernels[i];
            check(
                *kernel == expected_before,
                format!("seed {seed}: node {i} not converged before the crash"),
                &replay,
            );
        }
        let dead_ips = crash_some(&mut sim, 5);
        let crash_at = sim.now();
        // Within a second every survivor's kernel has dropped every dead host's backends.
        run_checked(&mut sim, crash_at + Duration::from_millis(1_000));
        let world = sim.world.as_ref().unwrap();
        for i in sim.alive() {
            for (service, dests) in &world.kernels[i].services {
                let dead = dests.keys().filter(|d| dead_ips.contains(&d.ip())).count();
                check(
                    dead == 0 || dead == dests.len(),
                    format!(
                        "seed {seed}: node {i} still sends {service:?} to {dead} dead backends"
                    ),
                    &replay,
                );
            }
        }
        run_checked(&mut sim, crash_at + Duration::from_millis(2_500));
        let v = world_violations(&sim);
        check(v.is_empty(), format!("seed {seed}: {v:?}"), &replay);
        let expected = sim.world.as_ref().unwrap().expected();
        check(
            expected != expected_before,
            "the crash changed what kernels must hold",
            &replay,
        );
        check_invariants(&sim, &replay);
    }
}

#[test]
fn a_vip_whose_backends_all_died_keeps_them() {
    let seed = seeds(1..=1)[0];
    let replay = replay_test("a_vip_whose_backends_all_died_keeps_them", seed);
    // 20 tasks over 20 VIPs: each VIP lives on one host.
    let mut sim = quiet_cluster(seed, 20);
    let world = sim.world.as_ref().unwrap();
    let (victim, vip) = (0..40)
        .find_map(|i| {
            let task = world.agents[i].tasks.values().next()?;
            let vip = task.vip;
            let elsewhere =
                (0..40).any(|j| j != i && world.agents[j].tasks.values().any(|t| t.vip == vip));
            (!elsewhere).then_some((i, vip))
        })
        .expect("some VIP lives on one host only");
    let label = world.catalogue[vip].label.clone();
    sim.crash_batch(&[victim]);
    run_checked_for(&mut sim, Duration::from_millis(2_500));
    let world = sim.world.as_ref().unwrap();
    let dead_ip = minuteman_sim::node_addr(victim).ip();
    for i in sim.alive() {
        let keeps = world.kernels[i]
            .services
            .values()
            .any(|d| !d.is_empty() && d.keys().all(|a: &SocketAddr| a.ip() == dead_ip));
        check(
            keeps,
            format!("node {i} dropped {label}, whose backends are all on a dead host"),
            &replay,
        );
    }
    let v = world_violations(&sim);
    check(v.is_empty(), format!("{v:?}"), &replay);
}

#[test]
fn a_restarted_host_comes_back_empty_and_every_kernel_follows() {
    for seed in seeds(1..=2) {
        let replay = replay_test(
            "a_restarted_host_comes_back_empty_and_every_kernel_follows",
            seed,
        );
        let mut sim = quiet_cluster(seed, 400);
        let victim = sim.sample_nodes(1)[0];
        sim.crash(victim);
        run_checked_for(&mut sim, Duration::from_millis(1_500));
        sim.restart(victim);
        run_checked_for(&mut sim, Duration::from_millis(4_000));
        let world = sim.world.as_ref().unwrap();
        check(
            world.agents[victim].tasks.is_empty(),
            "restart cleared the tasks",
            &replay,
        );
        let expected = world.expected();
        for i in sim.alive() {
            check(
                world.kernels[i] == expected,
                format!("seed {seed}: node {i} kernel differs after the restart"),
                &replay,
            );
        }
        let v = world_violations(&sim);
        check(v.is_empty(), format!("seed {seed}: {v:?}"), &replay);
        check_invariants(&sim, &replay);
    }
}

/// Every live kernel holds `dest` once, with weight 0.
fn drained_everywhere(sim: &Simulation, dest: SocketAddr, replay: &str) {
    let world = sim.world.as_ref().unwrap();
    for i in sim.alive() {
        let weights: Vec<u32> = world.kernels[i]
            .services
            .values()
            .filter_map(|d| d.get(&dest).copied())
            .collect();
        check(
            weights == vec![0],
            format!("node {i}: {dest} has weights {weights:?}, expected [0]"),
            replay,
        );
    }
}

#[test]
fn a_draining_task_gets_weight_zero_on_every_kernel() {
    let seed = seeds(1..=1)[0];
    let replay = replay_test("a_draining_task_gets_weight_zero_on_every_kernel", seed);
    let mut sim = quiet_cluster(seed, 100);
    let world = sim.world.as_mut().unwrap();
    let (agent, id) = (0..40)
        .find_map(|a| world.agents[a].tasks.keys().next().map(|&t| (a, t)))
        .expect("a task");
    let ip = world.agents[agent].ip;
    let task = world.agents[agent].tasks.get_mut(&id).unwrap();
    task.state = TaskState::Killing;
    let dest = SocketAddr::new(IpAddr::V4(ip), task.host_port);
    run_checked_for(&mut sim, Duration::from_millis(2_500));
    drained_everywhere(&sim, dest, &replay);
}

#[test]
fn same_seed_same_services_run() {
    let run = ServicesRun {
        seed: 7,
        duration: Duration::from_secs(5),
        ..ServicesRun::default()
    };
    let (a, _) = run.run();
    let (b, _) = run.run();
    assert_eq!(
        a.trace_hash,
        b.trace_hash,
        "replay: {}",
        run.replay_command()
    );
    assert_eq!(a.changes, b.changes);
    let other = ServicesRun {
        seed: 8,
        ..run.clone()
    };
    assert_ne!(other.run().0.trace_hash, a.trace_hash);
}

/// Backend deltas: draining one task among a thousand on its host floods that change,
/// not the host's whole backend set. Every node gets the change, and the RECORDS bytes
/// the whole cluster sends for it stay below the size of the host's record in full (it
/// would be about that size times the copies per node without deltas).
#[test]
fn one_task_among_thousands_costs_bytes_in_proportion_to_the_change() {
    let seed = seeds(1..=1)[0];
    let replay = replay_test(
        "one_task_among_thousands_costs_bytes_in_proportion_to_the_change",
        seed,
    );
    let nodes = 10;
    let mut sim = checked_sim(ClusterConfig::new(nodes), seed);
    sim.attach_world(WorldConfig {
        vips: 200,
        tasks: 10_000,
        churn_per_s: 0.0,
        ..WorldConfig::default()
    });
    run_checked(&mut sim, Time::from_millis(6_000));
    let records = minuteman_core::Message::KIND_NAMES
        .iter()
        .position(|k| *k == "records")
        .expect("a records kind");
    let world = sim.world.as_mut().unwrap();
    let (agent, id) = (0..nodes)
        .find_map(|a| world.agents[a].tasks.keys().next().map(|&t| (a, t)))
        .expect("a task");
    let host_tasks = world.agents[agent].tasks.len();
    let ip = world.agents[agent].ip;
    let task = world.agents[agent].tasks.get_mut(&id).unwrap();
    task.state = TaskState::Killing;
    let dest = SocketAddr::new(IpAddr::V4(ip), task.host_port);
    let before = sim.traffic.by_kind[records].1;
    run_checked_for(&mut sim, Duration::from_millis(2_500));
    let sent = sim.traffic.by_kind[records].1 - before;
    let full = sim
        .node(agent)
        .and_then(|n| {
            n.records()
                .find(|r| r.origin == n.id())
                .map(|r| r.in_full())
        })
        .map(|r| postcard::experimental::serialized_size(&r).unwrap())
        .expect("the host's own record");
    println!(
        "one drained task of {host_tasks} on its host: {sent} RECORDS bytes cluster-wide, \
         the record in full is {full} bytes"
    );
    check(
        host_tasks >= 500,
        format!("the host runs {host_tasks} tasks"),
        &replay,
    );
    check(
        sent > 0 && sent < full as u64,
        format!("{sent} RECORDS bytes for one change; the full record is {full} bytes"),
        &replay,
    );
    drained_everywhere(&sim, dest, &replay);
}

/// A record whose services delta starts from a version the receiver does not hold is not
/// applied: the receiver counts a gap and asks the sender (WANT) for the record in full,
/// and ends holding the same record as everyone else.
#[test]
fn a_delta_from_an_unknown_base_is_asked_for_in_full() {
    use minuteman_core::services_delta::ServicesDelta;
    use minuteman_core::{Envelope, Message, Record};
    use std::sync::Arc;
    let seed = seeds(1..=1)[0];
    let replay = replay_test("a_delta_from_an_unknown_base_is_asked_for_in_full", seed);
    let mut sim = quiet_cluster(seed, 100);
    let (to, via, origin) = (0, 1, 2);
    let origin_id = sim.id(origin);
    let held = sim
        .node(to)
        .and_then(|n| n.records().find(|r| r.origin == origin_id).cloned())
        .expect("node 0 holds node 2's record");
    let want = Message::KIND_NAMES
        .iter()
        .position(|k| *k == "want")
        .unwrap();
    let wants_before = sim.node(via).unwrap().counters().messages_in[want];
    // A version from the future whose delta starts after anything node 0 holds.
    let bogus = Record {
        seq: held.seq + 10,
        services_seq: held.seq + 10,
        delta: Some(Arc::new(ServicesDelta {
            base: held.seq + 5,
            seq: held.seq + 10,
            vips: Vec::new(),
            tasks: Vec::new(),
        })),
        ..held.clone()
    };
    let from = sim.id(via);
    sim.inject(
        via,
        to,
        Envelope {
            from,
            msg: Message::Records {
                records: vec![bogus],
            },
        },
    );
    run_checked_for(&mut sim, Duration::from_millis(500));
    let node = sim.node(to).unwrap();
    check(
        node.counters().records_delta_gaps == 1,
        format!("gaps {}", node.counters().records_delta_gaps),
        &replay,
    );
    check(
        sim.node(via).unwrap().counters().messages_in[want] > wants_before,
        "the sender got a WANT",
        &replay,
    );
    let now_held = node.records().find(|r| r.origin == origin_id).unwrap();
    let theirs = sim
        .node(via)
        .and_then(|n| n.records().find(|r| r.origin == origin_id).cloned())
        .unwrap();
    check(
        now_held.version() == theirs.version() && now_held.services == theirs.services,
        format!(
            "node 0 holds {:?}, node 1 {:?}",
            now_held.version(),
            theirs.version()
        ),
        &replay,
    );
}

/// Named VIPs whose names want the same first address (found by brute force over
/// `c0`, `c1`, …): tasks start and stop on random hosts for 4 s, so every node learns the
/// names in its own order; then, quiet, every node holds the same name table, every kernel
/// equals the rules applied to the truth (the world's quiet check), colliding names got
/// distinct addresses, and of each colliding group the smallest name kept the first choice.
#[test]
fn colliding_names_get_the_same_addresses_on_every_node() {
    use minuteman_core::named::first_choice_v4;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    let mut groups: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for k in 0..200_000 {
        let name = format!("c{k}");
        groups
            .entry(first_choice_v4(&format!("{name}.marathon")))
            .or_default()
            .push(name);
    }
    let colliding: Vec<Vec<String>> = groups
        .into_values()
        .filter(|g| g.len() >= 2)
        .take(20)
        .collect();
    assert_eq!(
        colliding.len(),
        20,
        "not enough collisions among 200,000 names"
    );
    let names: Vec<String> = colliding.iter().flatten().cloned().collect();
    for seed in seeds(1..=3) {
        let replay = replay_test("colliding_names_get_the_same_addresses_on_every_node", seed);
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        sim.attach_world(WorldConfig {
            // Every other VIP of the catalogue is named: all the colliding names, and more.
            vips: 2 * names.len() + 10,
            tasks: 600,
            churn_per_s: 20.0,
            names: names.clone(),
            ..WorldConfig::default()
        });
        sim.churn_until(Time::from_millis(4_000));
        run_checked(&mut sim, Time::from_millis(10_000));
        let violations = world_violations(&sim);
        check(
            violations.is_empty(),
            format!("seed {seed}: {violations:?}"),
            &replay,
        );
        type Row = (String, Option<Ipv4Addr>, Option<std::net::Ipv6Addr>);
        let tables: Vec<Vec<Row>> = sim
            .alive()
            .map(|i| {
                sim.node(i)
                    .expect("alive")
                    .desired()
                    .names()
                    .entries()
                    .map(|(n, v4, v6)| (n.to_owned(), v4, v6))
                    .collect()
            })
            .collect();
        check(
            tables.windows(2).all(|w| w[0] == w[1]),
            format!("seed {seed}: the nodes' name tables differ"),
            &replay,
        );
        let table: BTreeMap<&str, Option<Ipv4Addr>> = tables[0]
            .iter()
            .map(|(n, v4, _)| (n.as_str(), *v4))
            .collect();
        let mut checked = 0;
        for group in &colliding {
            let present: Vec<String> = group
                .iter()
                .map(|n| format!("{n}.marathon"))
                .filter(|n| table.contains_key(n.as_str()))
                .collect();
            if present.len() < 2 {
                continue;
            }
            checked += 1;
            let addrs: BTreeSet<Option<Ipv4Addr>> =
                present.iter().map(|n| table[n.as_str()]).collect();
            check(
                addrs.len() == present.len(),
                format!("seed {seed}: colliding names share an address: {present:?} -> {addrs:?}"),
                &replay,
            );
            let smallest = present.iter().min().expect("two or more");
            check(
                table[smallest.as_str()] == Some(first_choice_v4(smallest)),
                format!("seed {seed}: {smallest} lost its first choice"),
                &replay,
            );
        }
        check(
            checked >= 5,
            format!("seed {seed}: only {checked} colliding groups had tasks at the end"),
            &replay,
        );
        println!(
            "seed {seed}: {} names alike on {} nodes, {checked} colliding groups checked",
            table.len(),
            tables.len()
        );
    }
}

/// The DNS task records: after the first polls every node's merged directory equals the
/// running tasks of all the agents; after five hosts crash, every survivor answers each
/// name a live host runs with exactly the live instances, and keeps a dead host's records
/// only for names no live host runs (the rule the VIP backends follow).
#[test]
fn task_records_reach_every_node_and_leave_with_a_dead_host() {
    use minuteman_core::tasks::{TaskEndpoint, TaskName};
    use minuteman_sim::world::parse_agent_state;
    use std::collections::BTreeMap;
    type Directory = BTreeMap<TaskName, Vec<TaskEndpoint>>;
    /// What the agents of `hosts` run, by name.
    fn truth(sim: &Simulation, hosts: &[usize]) -> Directory {
        let world = sim.world.as_ref().expect("world");
        let mut all = Directory::new();
        for &i in hosts {
            let (_, tasks, _) = parse_agent_state(&world.agent_state(i)).expect("parses");
            for (name, endpoints) in tasks.names {
                all.entry(name)
                    .or_default()
                    .extend(endpoints.iter().copied());
            }
        }
        for endpoints in all.values_mut() {
            endpoints.sort_unstable();
            endpoints.dedup();
        }
        all
    }
    for seed in seeds(1..=2) {
        let replay = replay_test(
            "task_records_reach_every_node_and_leave_with_a_dead_host",
            seed,
        );
        let mut sim = quiet_cluster(seed, 400);
        let alive: Vec<usize> = sim.alive().collect();
        let before = truth(&sim, &alive);
        check(
            before.len() >= 10,
            format!("seed {seed}: only {} task names", before.len()),
            &replay,
        );
        for &i in &alive {
            let merged = sim.node(i).expect("alive").task_directory().merged();
            check(
                merged == before,
                format!("seed {seed}: node {i}'s task records differ from the agents'"),
                &replay,
            );
        }
        let dead_ips = crash_some(&mut sim, 5);
        run_checked_for(&mut sim, Duration::from_millis(2_500));
        let survivors: Vec<usize> = sim.alive().collect();
        let after = truth(&sim, &survivors);
        let mut kept_for_the_dead = 0;
        for &i in &survivors {
            let merged = sim.node(i).expect("alive").task_directory().merged();
            for (name, endpoints) in &merged {
                match after.get(name) {
                    Some(live) => check(
                        endpoints == live,
                        format!(
                            "seed {seed}: node {i}: {name} answers {endpoints:?}, live {live:?}"
                        ),
                        &replay,
                    ),
                    None => {
                        kept_for_the_dead += 1;
                        let ips = endpoints.iter().map(|e| match *e {
                            TaskEndpoint::Address(ip) | TaskEndpoint::Port { ip, .. } => ip,
                        });
                        check(
                            ips.clone().all(|ip| dead_ips.contains(&ip)),
                            format!("seed {seed}: node {i}: {name} is no live host's, yet {endpoints:?}"),
                            &replay,
                        );
                    }
                }
            }
            check(
                after.keys().all(|name| merged.contains_key(name)),
                format!("seed {seed}: node {i} lost a live name"),
                &replay,
            );
        }
        println!(
            "seed {seed}: {} names, {kept_for_the_dead} kept for dead hosts only",
            after.len()
        );
        check_invariants(&sim, &replay);
    }
}
