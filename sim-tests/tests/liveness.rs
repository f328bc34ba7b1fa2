//! Host liveness apart from agent liveness, on the realistic network: a stalled agent's
//! host keeps its backends in every kernel, a short freeze withdraws nothing, a long one
//! is declared down and back in every view within a second of the thaw, and a crash is
//! still noticed in a few hundred milliseconds.

use minuteman_core::Time;
use minuteman_sim::world::WorldConfig;
use minuteman_sim::{ClusterConfig, Simulation};
use minuteman_sim_tests::{
    check, check_invariants, checked_sim, replay_test, seeds, world_violations,
};
use std::time::Duration;

/// A 40-node cluster with 400 tasks over 20 VIPs, no churn, converged and quiet at 4 s.
fn quiet_cluster(seed: u64) -> Simulation {
    let mut sim = checked_sim(ClusterConfig::new(40), seed);
    sim.attach_world(WorldConfig {
        vips: 20,
        tasks: 400,
        churn_per_s: 0.0,
        ..WorldConfig::default()
    });
    run_checked(&mut sim, Duration::from_secs(4));
    assert!(sim.is_converged(), "seed {seed}: not converged at 4 s");
    sim
}

/// Runs for `d`, running the world's checks every 50 ms.
fn run_checked(sim: &mut Simulation, d: Duration) {
    let until = sim.now() + d;
    while sim.now() < until {
        sim.run_until((sim.now() + Duration::from_millis(50)).min(until));
        let now = sim.now();
        sim.world.as_mut().expect("world").check(now);
    }
}

fn reports_about(sim: &Simulation, node: usize) -> usize {
    let id = sim.id(node);
    sim.false_positives
        .iter()
        .filter(|f| f.target == id)
        .count()
}

#[test]
fn a_stalled_agent_keeps_its_backends_in_every_kernel() {
    for seed in seeds(1..=3) {
        let replay = replay_test("a_stalled_agent_keeps_its_backends_in_every_kernel", seed);
        let mut sim = quiet_cluster(seed);
        let victim = 7;
        assert!(sim.stall_agent(victim, Duration::from_millis(2_500)));
        run_checked(&mut sim, Duration::from_secs(4));
        check(
            reports_about(&sim, victim) == 0,
            format!(
                "seed {seed}: the stalled host was declared down {:?}",
                sim.false_positives
            ),
            &replay,
        );
        check(
            world_violations(&sim).is_empty(),
            format!(
                "seed {seed}: kernels lost the stalled host's backends: {:?}",
                world_violations(&sim)
            ),
            &replay,
        );
        check(
            sim.agent_stalled_reports > 0,
            "no neighbour reported the agent stalled",
            &replay,
        );
        check_invariants(&sim, &replay);
    }
}

#[test]
fn a_short_freeze_withdraws_nothing_and_a_long_one_is_back_within_a_second() {
    for seed in seeds(1..=3) {
        let replay = replay_test(
            "a_short_freeze_withdraws_nothing_and_a_long_one_is_back_within_a_second",
            seed,
        );
        let mut sim = quiet_cluster(seed);
        let victim = 9;
        assert!(sim.freeze_host(victim, Duration::from_millis(120)));
        run_checked(&mut sim, Duration::from_secs(2));
        check(
            reports_about(&sim, victim) == 0,
            format!(
                "seed {seed}: a 120 ms freeze was declared down {:?}",
                sim.false_positives
            ),
            &replay,
        );
        check(
            world_violations(&sim).is_empty(),
            format!("{:?}", world_violations(&sim)),
            &replay,
        );

        assert!(sim.freeze_host(victim, Duration::from_millis(700)));
        run_checked(&mut sim, Duration::from_secs(3));
        let long = sim.fault_log(victim).last().expect("the freeze").clone();
        check(
            long.declared_down,
            "a 700 ms freeze was not declared down",
            &replay,
        );
        let restore = long.restored_at.map(|t| t - long.end);
        check(
            restore.is_some_and(|r| r <= Duration::from_secs(1)),
            format!("seed {seed}: back in every view {restore:?} after the thaw"),
            &replay,
        );
        // Once back, every kernel holds its backends again.
        run_checked(&mut sim, Duration::from_secs(3));
        let world = sim.world.as_ref().expect("world");
        let expected = world.expected();
        for i in sim.alive() {
            check(
                world.kernels[i] == expected,
                format!("seed {seed}: node {i}'s kernel differs after the freeze"),
                &replay,
            );
        }
        check_invariants(&sim, &replay);
    }
}

#[test]
fn a_crash_is_still_noticed_within_half_a_second() {
    for seed in seeds(1..=3) {
        let replay = replay_test("a_crash_is_still_noticed_within_half_a_second", seed);
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        sim.run_until(Time::from_millis(4_000));
        sim.crash_batch(&[3, 11, 20, 27, 33]);
        sim.run_for(Duration::from_secs(2));
        let times = sim.detection_times();
        let worst = times.iter().filter_map(|(_, t)| *t).max();
        check(
            times.iter().all(|(_, t)| t.is_some())
                && worst.is_some_and(|w| w < Duration::from_millis(500)),
            format!("seed {seed}: detection {worst:?}"),
            &replay,
        );
        check(
            sim.false_positives.is_empty(),
            format!("{:?}", sim.false_positives),
            &replay,
        );
        check_invariants(&sim, &replay);
    }
}
