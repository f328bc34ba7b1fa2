//! The simulator's shards and threads: a run gives the same results whichever number of
//! threads (or shards, run one after the other) carries it. The run below has everything
//! that crosses between hosts: TCP with loss (retransmissions, refusals by frozen hosts,
//! aborts), agent stalls and host freezes with their false-positive attribution, a crash
//! batch with its detection, a restart (connections reset), host probes and a cold start.

use minuteman_core::Time;
use minuteman_sim::{ClusterConfig, Conditions, Simulation};

/// Everything a run reports, as text: equal text, equal run.
fn run(shards: usize, serial: bool) -> String {
    let conditions = Conditions {
        agent_stalls: 2.0,
        host_freezes: 2.0,
        ..Conditions::default()
    };
    let mut cfg = ClusterConfig::evaluation(30, 0.02, &conditions);
    cfg.threads = shards;
    let mut sim = Simulation::new(cfg, 7);
    sim.serial = serial;
    sim.run_until(Time::from_millis(4_000));
    let victims = [4, 17, 25];
    sim.crash_batch(&victims);
    sim.run_until(Time::from_millis(5_000));
    sim.restart(4);
    sim.run_until(Time::from_millis(9_000));
    let mut out = format!("hash {:016x}\n", sim.trace_hash());
    out += &format!("events {}\n", sim.events_handled());
    out += &format!("fp {:?}\n", sim.false_positives);
    out += &format!("detection {:?}\n", sim.detection_times());
    out += &format!("traffic {:?}\n", sim.traffic);
    out += &format!("tcp {:?}\n", sim.tcp_stats());
    out += &format!("cpu {:?}\n", sim.cpu_time());
    out += &format!("stalls {:?}\n", sim.stall_report());
    out += &format!("freezes {:?}\n", sim.freeze_report());
    for i in 0..sim.len() {
        out += &format!("{i}: {:?}\n", sim.node(i).map(|n| n.reachable_count()));
    }
    out
}

#[test]
fn every_number_of_threads_and_shards_gives_the_same_run() {
    let one = run(1, false);
    assert!(
        one.contains("fp [") && !one.contains("tcp None"),
        "the run has a transport: {one}"
    );
    let stalls = one.lines().find(|l| l.starts_with("stalls")).unwrap();
    assert!(!stalls.contains("count: 0,"), "stalls happened: {stalls}");
    for (shards, serial) in [(2, false), (3, true), (3, false), (5, true)] {
        let other = run(shards, serial);
        assert!(
            one == other,
            "{shards} shards (serial: {serial}) differ from one:\n{}",
            first_difference(&one, &other)
        );
    }
}

fn first_difference(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .find(|(x, y)| x != y)
        .map(|(x, y)| format!("one:   {x}\nother: {y}"))
        .unwrap_or_else(|| "one is a prefix of the other".into())
}
