//! Shared helpers for the scenario tests in `tests/`.
//!
//! Every scenario is seeded; on failure it panics with the command (or test filter and
//! seed) that replays it.

use minuteman_sim::{ClusterConfig, Simulation};

/// Panics with `what` and the replay hint unless `ok`.
#[track_caller]
pub fn check(ok: bool, what: impl std::fmt::Display, replay: &str) {
    assert!(ok, "{what}\nreplay: {replay}");
}

/// `cargo test` filter that replays one seeded scenario.
pub fn replay_test(test: &str, seed: u64) -> String {
    format!("MINUTEMAN_SEED={seed} cargo test -p minuteman-sim-tests --release {test} -- --exact --nocapture")
}

/// Seeds for a scenario: `MINUTEMAN_SEED` alone if set, else `default`.
pub fn seeds(default: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    match std::env::var("MINUTEMAN_SEED") {
        Ok(s) => vec![s.parse().expect("MINUTEMAN_SEED is a number")],
        Err(_) => default.collect(),
    }
}

/// Every live node reaches every live node (exact incarnations).
pub fn all_reach_all(sim: &Simulation) -> bool {
    let alive: Vec<usize> = sim.alive().collect();
    alive.iter().all(|&i| {
        let node = sim.node(i).expect("alive");
        alive.iter().all(|&j| node.is_reachable(&sim.id(j)))
    })
}

/// A simulation that checks every node's invariants after every event it handles.
pub fn checked_sim(cfg: ClusterConfig, seed: u64) -> Simulation {
    let mut sim = Simulation::new(cfg, seed);
    sim.check_each_event = true;
    sim
}

/// Panics with the replay hint if any node broke an invariant after any event so far.
#[track_caller]
pub fn check_invariants(sim: &Simulation, replay: &str) {
    if let Err(e) = sim.check_invariants() {
        panic!("invariant broken: {e}\nreplay: {replay}");
    }
}

/// The world's violations so far, one line each.
pub fn world_violations(sim: &Simulation) -> Vec<String> {
    let world = sim.world.as_ref().expect("world");
    world
        .violations
        .iter()
        .map(|v| format!("{} ms node {}: {}", v.at_ms, v.node, v.what))
        .collect()
}

/// The cluster came through whole: no live node reported a live one unreachable, every
/// live node reaches every live node, and no invariant broke after any event.
#[track_caller]
pub fn check_whole(sim: &Simulation, replay: &str) {
    check(
        sim.false_positives.is_empty(),
        format!("false positives {:?}", sim.false_positives),
        replay,
    );
    check(
        all_reach_all(sim),
        "not every live node reaches every live node",
        replay,
    );
    check_invariants(sim, replay);
}
