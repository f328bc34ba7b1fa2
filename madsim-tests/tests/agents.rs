//! The agent's own code in simulated time: ten agents in one process (see the crate doc
//! for what runs and what madsim models). Each test runs seeds 1..=10, or the one seed
//! `MINUTEMAN_MADSIM_SEED` names; a failure prints the command that replays it.
//! Run with `scripts/madsim-test [TEST]`.

#![cfg(madsim)]

use minuteman::metrics::Why;
use minuteman_madsim_tests::{seeds, simulate, Options, StateDir};
use std::time::Duration;

const SEEDS: std::ops::RangeInclusive<u64> = 1..=10;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn cold_start_of_ten_agents_converges_and_follows_mesos_churn() {
    for seed in seeds(SEEDS) {
        simulate("cold_start", seed, Options::default(), |mut c| async move {
            c.await_convergence("cold start").await;
            c.churn_for(secs(10), 20).await;
            c.await_convergence("after 20 Mesos changes").await;
            c
        });
    }
}

#[test]
fn a_killed_agent_restarts_with_its_state_kept_and_with_it_lost() {
    for seed in seeds(SEEDS) {
        simulate("restarts", seed, Options::default(), |mut c| async move {
            c.await_convergence("cold start").await;
            // A crash: the others keep its backends (its host and tasks are up).
            c.kill(3);
            c.churn_for(secs(5), 5).await;
            c.await_convergence("agent 3 killed").await;
            c.restart(3, StateDir::Kept);
            c.await_convergence("agent 3 back, state kept").await;
            c.kill(4);
            c.run_for(secs(2)).await;
            c.restart(4, StateDir::Lost);
            c.await_convergence("agent 4 back, state lost").await;
            // SIGTERM: queued frames flushed, state written, then a start from it.
            c.stop(5).await;
            c.await_convergence("agent 5 stopped").await;
            c.restart(5, StateDir::Kept);
            c.churn_for(secs(3), 5).await;
            c.await_convergence("agent 5 back after a clean stop").await;
            // Back while its Mesos agent is down: its saved backends are all it can
            // publish, and they must be the ones everyone keeps.
            c.kill(7);
            c.mesos_down(7);
            c.restart(7, StateDir::Kept);
            c.run_for(secs(3)).await;
            c.await_convergence("agent 7 back from its state, Mesos down")
                .await;
            c.serve_truth(7);
            c.await_convergence("agent 7's Mesos back").await;
            c
        });
    }
}

#[test]
fn a_partition_with_churn_on_both_sides_heals() {
    for seed in seeds(SEEDS) {
        simulate("partition", seed, Options::default(), |mut c| async move {
            c.await_convergence("cold start").await;
            c.partition(&[0, 1, 2, 3]);
            c.churn_for(secs(15), 15).await;
            c.heal();
            c.await_convergence("partition healed").await;
            // A minority of one, cut off and back.
            let lone = c.random_host();
            c.partition(&[lone]);
            c.churn_for(secs(10), 5).await;
            c.heal();
            c.await_convergence("lone host back").await;
            c
        });
    }
}

#[test]
fn clogged_links_one_way_stall_and_recover() {
    for seed in seeds(SEEDS) {
        simulate("clogged", seed, Options::default(), |mut c| async move {
            c.await_convergence("cold start").await;
            for _ in 0..8 {
                let (a, b) = (c.random_host(), c.random_host());
                if a != b {
                    c.clog(a, b);
                }
            }
            c.churn_for(secs(15), 10).await;
            c.heal();
            c.await_convergence("links unclogged").await;
            c
        });
    }
}

#[test]
fn a_slow_a_garbage_and_a_silent_mesos_keep_the_last_good_state() {
    for seed in seeds(SEEDS) {
        simulate(
            "mesos_faults",
            seed,
            Options::default(),
            |mut c| async move {
                c.await_convergence("cold start").await;
                // Every answer takes 5 s: changes arrive late, nothing else suffers.
                c.mesos_delay(2, secs(5));
                c.churn_for(secs(10), 10).await;
                c.await_convergence("with a slow Mesos").await;
                // Garbage, then silence: the agents keep host 3's last good backends.
                c.mesos_garbage(3);
                c.run_for(secs(5)).await;
                c.await_convergence("Mesos serving garbage").await;
                c.mesos_down(3);
                c.run_for(secs(5)).await;
                c.await_convergence("Mesos down").await;
                c.serve_truth(3);
                c.churn_for(secs(5), 5).await;
                c.await_convergence("Mesos back").await;
                // Both faults were seen, counted by reason.
                let metrics = c.agent_handle(3).expect("agent 3 runs").metrics;
                for reason in ["parse", "http"] {
                    let failures = metrics
                        .mesos_poll_failures
                        .get_or_create(&Why::new(reason))
                        .get();
                    assert!(failures >= 1, "no {reason} failure counted on host 3");
                }
                c
            },
        );
    }
}

#[test]
fn a_frozen_agent_thaws_and_catches_up() {
    for seed in seeds(SEEDS) {
        simulate("frozen", seed, Options::default(), |mut c| async move {
            c.await_convergence("cold start").await;
            c.pause(6);
            c.churn_for(secs(10), 10).await;
            c.await_convergence("agent 6 frozen").await;
            c.resume(6);
            c.await_convergence("agent 6 thawed").await;
            c
        });
    }
}

/// Same seed, same run: the whole trace (every convergence time to the microsecond and
/// the frames sent) is equal; another seed gives another run.
#[test]
fn same_seed_same_run() {
    let scenario = |mut c: minuteman_madsim_tests::Cluster| async move {
        c.await_convergence("cold start").await;
        c.churn_for(secs(5), 10).await;
        c.kill(2);
        c.run_for(secs(2)).await;
        c.restart(2, StateDir::Lost);
        c.await_convergence("after a restart").await;
        c
    };
    let seed = seeds(7..=7)[0];
    let first = simulate("same_seed_same_run", seed, Options::default(), scenario);
    let again = simulate("same_seed_same_run", seed, Options::default(), scenario);
    assert_eq!(first, again, "seed {seed} ran twice differently");
    let other = simulate("same_seed_same_run", seed + 1, Options::default(), scenario);
    assert_ne!(first, other, "seeds {seed} and {} ran alike", seed + 1);
}
