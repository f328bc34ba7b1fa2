//! The two models of the simulator: `--net ideal` must stay pinned (a change of its
//! hashes is a change made on purpose); the realistic default must be deterministic too, and its hosts must behave as
//! documented: a busy process handles its inputs one after the other, a stalled agent's
//! inputs wait (its kernel still answers probes), a frozen host answers nothing and gets
//! its data at the first retransmission after the thaw.

use minuteman_core::Time;
use minuteman_sim::cpu::CpuCosts;
use minuteman_sim::{
    ClusterConfig, Conditions, InputKind, MembershipRun, NetMode, ServicesRun, Simulation,
};
use minuteman_sim_tests::{all_reach_all, check, replay_test};
use std::time::Duration;

fn ideal() -> Conditions {
    Conditions {
        net: NetMode::Ideal,
        ..Conditions::default()
    }
}

/// Pinned trace hashes of `--net ideal`. When the realistic model was added, these were
/// the hashes of commit d647c4b (d7eeb08ac9ea5cd9, 206450c1e846f546, 8c03363c8981f762,
/// baa8f8013d366cb7), reproduced exactly. The core's behaviour changed since (host
/// probes, 50 ms pings, complete views; then periodic anti-entropy by store summaries
/// instead of full digests; then coalesced additions to the own record while joining; then
/// summaries instead of full digests on new links between complete nodes; then queued
/// flood copies dropped when the neighbour sent the version first; then, for the services
/// run only, records that carry their host's DNS task records; then a joiner's first
/// version waiting for its links instead of going out empty; then a joiner's dropped
/// links waiting with its added ones, and HIGH-priority refills below
/// `membership.active_min` links; then one pinger per link, the other end listening, and
/// a host that stops answering during a suspicion declared down; then the simulator's
/// own change to run on several threads: a random stream per host, events ordered by who
/// scheduled them, a trace per host, a 20 µs latency floor, TCP answers one delay back),
/// so they were re-pinned each time: a change here is a change
/// of behaviour, to be made on purpose and said in its commit.
#[test]
fn the_ideal_network_reproduces_the_pinned_hashes() {
    let membership = |seed, loss| {
        MembershipRun {
            seed,
            loss,
            conditions: ideal(),
            ..MembershipRun::default()
        }
        .run()
        .0
        .trace_hash
    };
    assert_eq!(membership(1, 0.0), "b5b29cc8c3368b0d");
    assert_eq!(membership(2, 0.0), "30719ad9dafb2d98");
    assert_eq!(membership(1, 0.01), "e277fa392b26f862");
    let services = ServicesRun {
        seed: 1,
        conditions: ideal(),
        ..ServicesRun::default()
    };
    assert_eq!(services.run().0.trace_hash, "f579998044159a30");
}

#[test]
fn the_realistic_model_is_deterministic_and_depends_on_the_seed() {
    let run = |seed, conditions: Conditions| {
        MembershipRun {
            seed,
            duration: Duration::from_secs(10),
            loss: 0.01,
            conditions,
            ..MembershipRun::default()
        }
        .run()
        .0
    };
    let faults = Conditions {
        agent_stalls: 2.0,
        host_freezes: 2.0,
        ..Conditions::default()
    };
    let (a, b) = (run(7, faults.clone()), run(7, faults.clone()));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.false_positives, b.false_positives);
    assert_eq!(a.stalls, b.stalls);
    assert_eq!(a.freezes, b.freezes);
    assert!(a.stalls.count > 0 && a.freezes.count > 0, "{a:?}");
    assert_ne!(run(8, faults).trace_hash, a.trace_hash);
    let plain = run(7, Conditions::default());
    assert_eq!(plain.trace_hash, run(7, Conditions::default()).trace_hash);
    assert_ne!(plain.trace_hash, a.trace_hash);
    // The ideal network is deterministic as well, and another model.
    let i = run(7, ideal());
    assert_eq!(i.trace_hash, run(7, ideal()).trace_hash);
    assert_ne!(i.trace_hash, plain.trace_hash);
}

#[test]
fn the_services_run_is_deterministic_on_the_realistic_network() {
    let run = ServicesRun {
        seed: 3,
        duration: Duration::from_secs(5),
        ..ServicesRun::default()
    };
    let (a, b) = (run.run().0, run.run().0);
    assert_eq!(a.trace_hash, b.trace_hash, "{}", run.replay_command());
    assert_eq!(a.changes, b.changes);
}

/// A small converged cluster on the realistic network (no loss beyond the background).
fn converged(nodes: usize, seed: u64, cfg: impl FnOnce(&mut ClusterConfig)) -> Simulation {
    let mut c = ClusterConfig::new(nodes);
    cfg(&mut c);
    let mut sim = Simulation::new(c, seed);
    sim.run_until(Time::from_millis(3_000));
    assert!(sim.is_converged(), "not converged at 3 s");
    sim
}

#[test]
fn a_busy_process_handles_its_inputs_one_after_the_other_in_arrival_order() {
    // 3 ms per input: pings alone keep the hosts busy, and inputs queue.
    let mut sim = converged(8, 1, |c| {
        c.cpu = CpuCosts {
            per_input: Duration::from_millis(3),
            ..CpuCosts::default()
        }
    });
    sim.trace_inputs(2);
    sim.run_for(Duration::from_secs(2));
    let log = sim.handled_inputs();
    assert!(log.len() > 50, "{} inputs", log.len());
    let mut waited = 0;
    for pair in log.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            b.arrived >= a.arrived,
            "out of arrival order: {a:?} then {b:?}"
        );
        assert!(
            b.handled >= a.handled + Duration::from_millis(3),
            "started before the previous input's CPU time was spent: {a:?} then {b:?}"
        );
        if b.handled > b.arrived {
            waited += 1;
        }
    }
    assert!(log.iter().all(|h| h.handled >= h.arrived));
    assert!(waited > 10, "only {waited} inputs waited for the CPU");
}

#[test]
fn a_stalled_agent_gets_its_inputs_late_in_order_and_its_kernel_answers_probes() {
    for seed in 1..=3 {
        let replay = replay_test(
            "a_stalled_agent_gets_its_inputs_late_in_order_and_its_kernel_answers_probes",
            seed,
        );
        let mut sim = converged(10, seed, |_| {});
        let victim = 4;
        sim.trace_inputs(victim);
        let start = sim.now();
        let end = start + Duration::from_millis(800);
        assert!(sim.stall_agent(victim, Duration::from_millis(800)));
        sim.run_for(Duration::from_millis(100));
        check(
            sim.is_stalled(victim) && !sim.is_frozen(victim),
            "stalled",
            &replay,
        );
        let answered = (0..20)
            .filter(|_| sim.probe_host(0, victim).is_some())
            .count();
        check(
            answered >= 18,
            format!("the kernel answered {answered} of 20 probes"),
            &replay,
        );
        let rtt = sim.probe_host(1, victim).expect("answered");
        check(rtt < Duration::from_millis(60), format!("{rtt:?}"), &replay);
        sim.run_until(end + Duration::from_millis(500));
        check(!sim.is_stalled(victim), "resumed", &replay);
        let log = sim.handled_inputs();
        check(
            log.iter().all(|h| h.handled < start || h.handled >= end),
            "nothing handled during the stall",
            &replay,
        );
        let late: Vec<_> = log
            .iter()
            .filter(|h| h.arrived >= start && h.arrived < end)
            .collect();
        check(
            late.len() > 5 && late.iter().all(|h| h.handled >= end),
            format!("{} inputs waited for the resume", late.len()),
            &replay,
        );
        check(
            late.iter().any(|h| h.kind == InputKind::Timer),
            "its timer fired late",
            &replay,
        );
        check(
            late.windows(2).all(|w| w[0].arrived <= w[1].arrived),
            "handled in arrival order",
            &replay,
        );
        let log = sim.fault_log(victim);
        check(
            log.len() == 1 && log[0].end == end,
            format!("{log:?}"),
            &replay,
        );
    }
}

#[test]
fn a_frozen_host_answers_nothing_and_gets_its_data_at_the_first_retransmission_after_the_thaw() {
    for seed in 1..=3 {
        let replay = replay_test(
            "a_frozen_host_answers_nothing_and_gets_its_data_at_the_first_retransmission_after_the_thaw",
            seed,
        );
        let mut sim = converged(10, seed, |_| {});
        let victim = 6;
        sim.trace_inputs(victim);
        let before = sim.tcp_stats().expect("TCP").clone();
        let start = sim.now();
        let end = start + Duration::from_millis(400);
        assert!(sim.freeze_host(victim, Duration::from_millis(400)));
        sim.run_for(Duration::from_millis(50));
        check(sim.is_frozen(victim), "frozen", &replay);
        check(
            (0..20).all(|_| sim.probe_host(0, victim).is_none()),
            "a frozen host answers no probe",
            &replay,
        );
        sim.run_until(end + Duration::from_millis(1_000));
        let stats = sim.tcp_stats().expect("TCP");
        check(
            stats.not_acked_frozen > before.not_acked_frozen
                && stats.retransmissions > before.retransmissions,
            format!("segments to the frozen host were retransmitted: {stats:?}"),
            &replay,
        );
        let log = sim.handled_inputs();
        check(
            log.iter().all(|h| h.handled < start || h.handled >= end),
            "nothing handled while frozen",
            &replay,
        );
        // Nothing reached the host's socket while frozen; peers' messages came again with
        // their retransmissions, the first ones a retransmission timeout (>= 200 ms) after
        // they were first sent, so no earlier than ~200 ms into the freeze.
        let messages: Vec<_> = log
            .iter()
            .filter(|h| h.kind == InputKind::Message && h.handled >= start)
            .collect();
        check(
            messages
                .iter()
                .all(|h| h.arrived >= end || h.arrived < start),
            "no message reached the frozen host",
            &replay,
        );
        let first = messages.first().expect("messages after the thaw");
        check(
            first.arrived >= end,
            format!("first message after the thaw {first:?}"),
            &replay,
        );
        check(
            sim.probe_host(0, victim).is_some(),
            "answers again",
            &replay,
        );
        check(all_reach_all(&sim), "all reach all after the thaw", &replay);
    }
}

#[test]
fn probes_to_a_stalled_agent_go_unanswered_once_the_accept_queue_is_full() {
    let mut sim = converged(5, 2, |c| c.probe_backlog = 3);
    assert!(sim.stall_agent(1, Duration::from_secs(1)));
    let answers: Vec<bool> = (0..8).map(|_| sim.probe_host(0, 1).is_some()).collect();
    assert_eq!(answers.iter().filter(|a| **a).count(), 4, "{answers:?}");
    assert!(answers[4..].iter().all(|a| !a));
    sim.run_for(Duration::from_millis(1_100));
    assert!(sim.probe_host(0, 1).is_some(), "accepted after the resume");
    // A crashed or partitioned host answers nothing.
    sim.crash(3);
    assert!((0..10).all(|_| sim.probe_host(0, 3).is_none()));
    sim.network.partition(vec![0, 1, 0, 0, 0]);
    assert!((0..10).all(|_| sim.probe_host(0, 1).is_none()));
}

#[test]
fn false_positives_during_faults_are_blamed_on_them() {
    // Long freezes on a small cluster: the cores, which have no host probes yet, declare
    // frozen hosts down; the report blames the freezes.
    let run = MembershipRun {
        nodes: 12,
        crash_fraction: 0.0,
        duration: Duration::from_secs(60),
        seed: 3,
        conditions: Conditions {
            host_freezes: 3.0,
            ..Conditions::default()
        },
        ..MembershipRun::default()
    };
    let (r, sim) = run.run();
    let replay = run.replay_command();
    check(r.freezes.count > 10, format!("{:?}", r.freezes), &replay);
    check(
        r.false_positives_by_cause.host_freeze > 0 && r.freezes.declared_down > 0,
        format!("{:?} {:?}", r.false_positives_by_cause, r.freezes),
        &replay,
    );
    let by = &r.false_positives_by_cause;
    check(
        by.agent_stall + by.host_freeze + by.loss_or_delay == r.false_positives,
        "every false positive has one cause",
        &replay,
    );
    check(
        r.freezes.restore_ms_max.is_some(),
        "restores measured",
        &replay,
    );
    for fp in &sim.false_positives {
        let t = sim.index_of(&fp.target.addr).expect("a node");
        if fp.cause == minuteman_sim::faults::FpCause::HostFreeze {
            let near = sim
                .fault_log(t)
                .iter()
                .any(|f| f.start <= fp.at && f.end + Duration::from_secs(1) >= fp.at);
            check(near, format!("{fp:?} blamed on a freeze"), &replay);
        }
    }
}
