//! Garbage collection of dead hosts (`records.gc_horizon`): a long churn run stays
//! bounded, a late copy of a collected record is refused, a collected host that restarts
//! under a new epoch comes back.

use minuteman_core::{Message, Time};
use minuteman_sim::{ClusterConfig, Conditions, MembershipRun, NetMode};
use minuteman_sim_tests::{
    all_reach_all, check, check_invariants, checked_sim, replay_test, seeds,
};
use std::time::Duration;

const HORIZON: Duration = Duration::from_secs(60);

/// One host leaves for good and one new host joins per simulated minute for 30 minutes
/// (30 horizons). At the end every live node holds at most the live hosts plus the hosts
/// that left within the last horizon and ten seconds (a node that joined after a host left
/// got its record from a peer, and learns from a peer's COLLECTED that it is gone), plus
/// one slot of slack for a record in flight; tombstones, kept one horizon longer, at most
/// the hosts that left within two horizons; and the store's memory is flat: the slot
/// vector at the end is no longer than the longest seen at any sample after the first ten
/// minutes plus one, and no longer than the live hosts plus five.
#[test]
fn churn_for_thirty_horizons_keeps_every_store_bounded() {
    for seed in seeds(1..=1) {
        let run = MembershipRun {
            nodes: 16,
            crash_fraction: 0.0,
            crash_at: Duration::from_secs(10),
            duration: Duration::from_secs(30 * 60 + 10),
            seed,
            churn_hosts_per_min: 1.0,
            gc_horizon: Some(HORIZON),
            conditions: Conditions {
                net: NetMode::Ideal,
                ..Conditions::default()
            },
            ..MembershipRun::default()
        };
        let replay = run.replay_command();
        let (report, sim) = run.run();
        let churn = report.churn.as_ref().expect("a churn run");
        check(churn.left_at_ms.len() >= 29, "hosts left", &replay);
        check(churn.joined >= 29, "hosts joined", &replay);
        check(
            report.false_positives == 0,
            format!("false positives {}", report.false_positives),
            &replay,
        );
        let end = sim.now().as_millis_f64();
        // Records: a host is collected one horizon after every node stopped reaching it
        // (a node that heard of it later learns of the collection from a peer), plus
        // detection and a few anti-entropy rounds. Tombstones live one horizon more.
        let left_within = |window_ms: f64| {
            churn
                .left_at_ms
                .iter()
                .filter(|&&t| t > end - window_ms)
                .count()
        };
        let window = HORIZON.as_secs_f64() * 1e3 + 10_000.0;
        let recent = left_within(window);
        let tomb_window = 2.0 * HORIZON.as_secs_f64() * 1e3 + 10_000.0;
        let live = sim.alive().count();
        let bound = live + recent + 1;
        let tomb_bound = left_within(tomb_window) + 1;
        let (mut collected, mut by_peer) = (0, 0);
        for i in sim.alive() {
            let node = sim.node(i).expect("alive");
            collected += node.counters().records_collected;
            by_peer += node.counters().records_collected_by_peer;
            let dead: Vec<String> = node
                .records()
                .filter(|r| {
                    sim.index_of(&r.origin.addr)
                        .is_none_or(|j| !sim.is_alive(j))
                })
                .map(|r| r.origin.addr.to_string())
                .collect();
            check(
                node.records_held() <= bound && node.tombstones() <= tomb_bound,
                format!(
                    "node {i} holds {} slots and {} tombstones, over {bound} \
                     ({live} live + {recent} left within {window} ms + 1) or {tomb_bound}; \
                     dead records {dead:?}",
                    node.records_held(),
                    node.tombstones()
                ),
                &replay,
            );
        }
        check(collected > 0, "nothing was ever collected", &replay);
        println!("collected {collected} records, {by_peer} of them on a peer's word");
        check(
            by_peer > 0,
            "no late joiner learned of a collection from a peer",
            &replay,
        );
        let later: Vec<_> = churn
            .samples
            .iter()
            .filter(|s| s.at_ms >= 10.0 * 60e3)
            .collect();
        let mid = later[..later.len() / 2]
            .iter()
            .map(|s| s.record_slots_max)
            .max()
            .unwrap_or(0);
        let last = churn.samples.last().expect("samples").record_slots_max;
        check(
            last <= mid + 1 && last <= live + 5,
            format!("slot vector grew: {mid} by the midpoint, {last} at the end"),
            &replay,
        );
        check(
            report.records_held_max <= bound,
            format!("records_held_max {}", report.records_held_max),
            &replay,
        );
        check_invariants(&sim, &replay);
    }
}

/// A host crashes and is collected everywhere; a replayed RECORDS frame carrying its old
/// record is refused (counted) and brings nothing back; then the host restarts under a
/// new epoch and every node takes it back.
#[test]
fn a_late_copy_is_refused_and_a_restart_comes_back() {
    for seed in seeds(1..=2) {
        let replay = replay_test("a_late_copy_is_refused_and_a_restart_comes_back", seed);
        let mut cfg = ClusterConfig::ideal(8);
        cfg.gc_horizon = Some(Duration::from_secs(5));
        let mut sim = checked_sim(cfg, seed);
        sim.capture = Some(Vec::new());
        sim.run_until(Time::from_millis(3_000));
        check(all_reach_all(&sim), "converged", &replay);
        let victim = 7;
        let victim_id = sim.id(victim);
        let addr = victim_id.addr;
        // A RECORDS message carrying the victim's record, flooded by a host that stays.
        let (from, to, late) = sim
            .capture
            .take()
            .expect("capturing")
            .into_iter()
            .filter(|(from, to, e)| {
                *from != victim
                    && *to != victim
                    && matches!(&e.msg, Message::Records { records }
                        if records.iter().any(|r| r.origin.addr == addr))
            })
            .last()
            .expect("the victim's record was flooded");
        sim.crash(victim);
        sim.run_until(Time::from_millis(3_000 + 5_000 + 2_000));
        for i in sim.alive() {
            let node = sim.node(i).expect("alive");
            check(
                node.record(&addr).is_none() && node.counters().records_collected >= 1,
                format!("node {i} still holds {addr} one horizon after its crash"),
                &replay,
            );
        }
        let refused = sim.node(to).expect("alive").counters().records_tombstoned;
        sim.inject(from, to, late);
        sim.run_for(Duration::from_millis(100));
        let node = sim.node(to).expect("alive");
        check(
            node.counters().records_tombstoned > refused,
            "the late copy was not counted as refused",
            &replay,
        );
        for i in sim.alive() {
            check(
                sim.node(i).expect("alive").record(&addr).is_none(),
                format!("node {i} took the late copy of {addr} back"),
                &replay,
            );
        }
        // Within the tombstone's life, the host restarts under a new epoch.
        sim.restart(victim);
        sim.run_for(Duration::from_secs(2));
        check(
            all_reach_all(&sim),
            "the restarted host is reachable",
            &replay,
        );
        for i in sim.alive() {
            let held = sim.node(i).expect("alive").record(&addr).map(|r| r.origin);
            check(
                held == Some(sim.id(victim)) && held != Some(victim_id),
                format!("node {i} holds {held:?} for the restarted host"),
                &replay,
            );
        }
        check_invariants(&sim, &replay);
    }
}
