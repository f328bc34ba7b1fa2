//! Membership scenarios: join from cold, crashes, loss, partitions, restarts, determinism.

use minuteman_core::Time;
use minuteman_sim::{ClusterConfig, Conditions, MembershipRun, NetConfig, NetMode, Simulation};
use minuteman_sim_tests::{
    all_reach_all, check, check_invariants, checked_sim, replay_test, seeds,
};
use std::time::Duration;

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

/// Runs until `until`, checking every node's invariants after every event it handles;
/// returns the first time (sampled every `step`) the cluster was converged (if it was).
fn run_checked(sim: &mut Simulation, until: Time, step: Duration, replay: &str) -> Option<Time> {
    sim.check_each_event = true;
    let mut converged = None;
    while sim.now() < until {
        sim.run_until((sim.now() + step).min(until));
        if let Err(e) = sim.check_invariants() {
            panic!("invariant broken at {}: {e}\nreplay: {replay}", sim.now());
        }
        if converged.is_none() && sim.is_converged() {
            converged = Some(sim.now());
        }
    }
    converged
}

#[test]
fn forty_nodes_join_from_cold_through_three_contacts() {
    for seed in seeds(1..=5) {
        let replay = replay_test("forty_nodes_join_from_cold_through_three_contacts", seed);
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        let converged = run_checked(&mut sim, ms(10_000), Duration::from_millis(50), &replay);
        check(
            converged.is_some(),
            format!("seed {seed}: not one overlay, all reachable within 10 s"),
            &replay,
        );
        check(sim.overlay_components().len() == 1, "one overlay", &replay);
        check(all_reach_all(&sim), "all reach all", &replay);
        let asym = sim.asymmetric_links();
        check(
            asym.is_empty(),
            format!("seed {seed}: asymmetric active links {asym:?}"),
            &replay,
        );
        check(
            sim.false_positives.is_empty(),
            format!("seed {seed}: false positives {:?}", sim.false_positives),
            &replay,
        );
        check_invariants(&sim, &replay);
    }
}

#[test]
fn five_of_forty_crash_and_every_survivor_sees_them_all() {
    for seed in seeds(1..=5) {
        let run = MembershipRun {
            seed,
            ..MembershipRun::default()
        };
        let replay = run.replay_command();
        let (report, sim) = run.run();
        check(report.crashed == 5, "five crashed", &replay);
        check(
            report.undetected == 0,
            format!(
                "seed {seed}: {} survivors missed a crash",
                report.undetected
            ),
            &replay,
        );
        for (i, t) in sim.detection_times() {
            check(
                t.is_some_and(|t| t < Duration::from_secs(1)),
                format!("seed {seed}: node {i} detection {t:?}"),
                &replay,
            );
        }
        check(
            report.false_positives == 0,
            format!("seed {seed}: false positives {:?}", sim.false_positives),
            &replay,
        );
        check(all_reach_all(&sim), "survivors reach each other", &replay);
        check_invariants(&sim, &replay);
    }
}

/// On the ideal network (independent datagrams): the adaptive ping's suspicion absorbs
/// independent loss. Over TCP (the realistic default) it does not: a lost segment holds
/// every later one on its connection for a retransmission timeout (200 ms or more), far
/// past the ping deadline (4 × RTT, at least 30 ms), so links die and false positives
/// appear (see docs/simulator.md, "What the realistic model showed").
#[test]
fn one_percent_loss_with_jitter_for_ten_minutes_has_no_false_positive() {
    for seed in seeds(1..=1) {
        let replay = replay_test(
            "one_percent_loss_with_jitter_for_ten_minutes_has_no_false_positive",
            seed,
        );
        let mut cfg = ClusterConfig::ideal(40);
        cfg.net = NetConfig::ideal_lossy(0.01);
        let mut sim = checked_sim(cfg, seed);
        sim.run_until(ms(600_000));
        check(
            sim.false_positives.is_empty(),
            format!("seed {seed}: false positives {:?}", sim.false_positives),
            &replay,
        );
        check(sim.is_converged(), "still converged after 10 min", &replay);
        check(sim.traffic.lost > 1000, "the loss was real", &replay);
        // Suspicion absorbs loss: no live link was declared dead.
        let dead_links: u64 = sim
            .alive()
            .map(|i| sim.node(i).expect("alive").counters().links_dead)
            .sum();
        let suspicions: u64 = sim
            .alive()
            .map(|i| sim.node(i).expect("alive").counters().suspicions)
            .sum();
        check(
            dead_links == 0,
            format!("seed {seed}: {dead_links} false disconnects ({suspicions} suspicions)"),
            &replay,
        );
        check(suspicions > 0, "the loss did trigger suspicion", &replay);
        eprintln!("10 min at 1% loss: {suspicions} suspicions, {dead_links} links declared dead");
        check_invariants(&sim, &replay);
    }
}

#[test]
fn partition_into_halves_gives_two_components_and_heals_into_one() {
    for seed in seeds(1..=3) {
        let replay = replay_test(
            "partition_into_halves_gives_two_components_and_heals_into_one",
            seed,
        );
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        sim.run_until(ms(3_000));
        check(
            sim.is_converged(),
            "converged before the partition",
            &replay,
        );
        // Contacts 0 and 1 on one side (21 nodes), 2 on the other (19 nodes).
        let sides: Vec<u32> = (0..40).map(|i| u32::from(i % 2 == 0 && i != 0)).collect();
        sim.network.partition(sides.clone());
        sim.run_until(ms(8_000));
        let components = sim.overlay_components();
        check(
            components.len() == 2,
            format!(
                "seed {seed}: {} components during the partition",
                components.len()
            ),
            &replay,
        );
        for c in &components {
            let side = sides[c[0]];
            check(
                c.iter().all(|&i| sides[i] == side)
                    && c.len() == sides.iter().filter(|s| **s == side).count(),
                format!("seed {seed}: component {c:?} is not one half"),
                &replay,
            );
        }
        // Each node reaches exactly its own half.
        for i in sim.alive() {
            let node = sim.node(i).expect("alive");
            for j in sim.alive() {
                let same = sides[i] == sides[j];
                check(
                    node.is_reachable(&sim.id(j)) == same,
                    format!("seed {seed}: node {i} reach of {j} while partitioned"),
                    &replay,
                );
            }
        }
        sim.network.heal();
        let healed_at = sim.now();
        let mut healed = None;
        while sim.now() < healed_at + Duration::from_secs(30) {
            sim.run_for(Duration::from_millis(100));
            if sim.is_converged() {
                healed = Some(sim.now() - healed_at);
                break;
            }
        }
        check(
            healed.is_some(),
            format!("seed {seed}: not one component within 30 s of healing"),
            &replay,
        );
        check_invariants(&sim, &replay);
    }
}

#[test]
fn one_way_partition_closes_the_link_and_keeps_everyone_reachable() {
    for seed in seeds(1..=3) {
        let replay = replay_test(
            "one_way_partition_closes_the_link_and_keeps_everyone_reachable",
            seed,
        );
        let mut sim = checked_sim(ClusterConfig::new(20), seed);
        sim.run_until(ms(3_000));
        let a = 5;
        let b = sim
            .node(a)
            .expect("alive")
            .active_view()
            .next()
            .and_then(|p| sim.index_of(&p.addr))
            .expect("node 5 has a neighbour");
        sim.network.block_one_way(a, b);
        sim.run_until(ms(6_000));
        let (na, nb) = (sim.node(a).expect("alive"), sim.node(b).expect("alive"));
        check(
            !na.is_active(&sim.id(b)) && !nb.is_active(&sim.id(a)),
            format!("seed {seed}: the one-way-broken link {a}->{b} is still active"),
            &replay,
        );
        check(all_reach_all(&sim), "everyone still reachable", &replay);
        check_invariants(&sim, &replay);
    }
}

#[test]
fn restarted_node_with_a_new_epoch_is_reachable_from_all_within_five_seconds() {
    for seed in seeds(1..=3) {
        let replay = replay_test(
            "restarted_node_with_a_new_epoch_is_reachable_from_all_within_five_seconds",
            seed,
        );
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        sim.run_until(ms(3_000));
        let victim = 17;
        let old = sim.id(victim);
        sim.crash(victim);
        sim.run_until(ms(4_000));
        sim.restart(victim);
        let new = sim.id(victim);
        check(new.epoch > old.epoch, "restart bumps the epoch", &replay);
        let restarted_at = sim.now();
        let mut reachable_after = None;
        while sim.now() < restarted_at + Duration::from_secs(5) {
            sim.run_for(Duration::from_millis(10));
            if all_reach_all(&sim) {
                reachable_after = Some(sim.now() - restarted_at);
                break;
            }
        }
        check(
            reachable_after.is_some(),
            format!("seed {seed}: restarted node not reachable from all within 5 s"),
            &replay,
        );
        for i in sim.alive() {
            check(
                !sim.node(i).expect("alive").is_reachable(&old),
                format!("seed {seed}: node {i} still reaches the old incarnation"),
                &replay,
            );
        }
        check_invariants(&sim, &replay);
    }
}

#[test]
fn same_seed_same_trace_hash_and_other_seed_another() {
    let run = |seed| {
        let run = MembershipRun {
            seed,
            duration: Duration::from_secs(8),
            loss: 0.01,
            ..MembershipRun::default()
        };
        run.run().0.trace_hash
    };
    assert_eq!(run(7), run(7), "replay: {}", replay_test("same_seed", 7));
    assert_ne!(run(7), run(8));
}

#[test]
fn wire_round_trip_gives_the_same_run() {
    // Passing messages through the real codec must not change a single decision.
    let go = |wire_roundtrip| {
        let mut cfg = ClusterConfig::new(20);
        cfg.wire_roundtrip = wire_roundtrip;
        let mut sim = checked_sim(cfg, 3);
        sim.run_until(ms(3_000));
        sim.crash_batch(&[4, 9]);
        sim.run_until(ms(5_000));
        (sim.trace_hash(), sim.traffic.rejected)
    };
    let (hash, errors) = go(true);
    assert_eq!(errors, 0);
    assert_eq!(hash, go(false).0);
}

/// The seed sweep: 50 seeds of a 40-node cluster losing 5 nodes, each checked for zero
/// false positives and complete sub-second detection. The loss-free half runs on the
/// realistic network; the half with 1% loss on the ideal one, because over TCP 1% loss
/// stretches detection to about 3 s (head-of-line blocking inflates the ping deadlines;
/// see docs/simulator.md).
#[test]
fn seed_sweep_fifty_seeds() {
    let seeds = seeds(100..=149);
    let worker = |chunk: &[u64]| {
        for &seed in chunk {
            let lossy = seed % 2 == 0;
            let run = MembershipRun {
                seed,
                duration: Duration::from_secs(8),
                loss: if lossy { 0.01 } else { 0.0 },
                conditions: Conditions {
                    net: if lossy {
                        NetMode::Ideal
                    } else {
                        NetMode::Realistic
                    },
                    ..Conditions::default()
                },
                ..MembershipRun::default()
            };
            let (report, sim) = run.run();
            let replay = run.replay_command();
            check(
                report.converged_ms.is_some_and(|c| c < 5_000.0),
                format!("seed {seed}: converged {:?}", report.converged_ms),
                &replay,
            );
            check(
                report.false_positives == 0,
                format!("seed {seed}: false positives {:?}", sim.false_positives),
                &replay,
            );
            check(
                report.detection_ms.is_some_and(|d| d.max < 1_000.0),
                format!("seed {seed}: detection {:?}", report.detection_ms),
                &replay,
            );
            if let Err(e) = sim.check_invariants() {
                panic!("seed {seed}: {e}\nreplay: {replay}");
            }
        }
    };
    let (a, b) = seeds.split_at(seeds.len() / 2);
    std::thread::scope(|s| {
        let h = s.spawn(|| worker(a));
        worker(b);
        h.join().expect("worker panicked");
    });
}

#[test]
fn a_restart_with_lost_state_supersedes_its_old_self_within_five_seconds() {
    for seed in seeds(1..=3) {
        let replay = replay_test(
            "a_restart_with_lost_state_supersedes_its_old_self_within_five_seconds",
            seed,
        );
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        sim.run_until(ms(3_000));
        // Two ordinary restarts: the cluster knows node 7 as epoch 3.
        sim.restart(7);
        sim.run_until(ms(4_000));
        sim.restart(7);
        sim.run_until(ms(5_000));
        check(
            sim.is_converged(),
            "converged before the lost-state restart",
            &replay,
        );
        sim.restart_lost_state(7);
        check(sim.id(7).epoch == 1, "booted as epoch 1", &replay);
        let mut back = None;
        while sim.now() < ms(10_000) {
            sim.run_for(Duration::from_millis(10));
            if sim.id(7).epoch > 3 && all_reach_all(&sim) && sim.is_converged() {
                back = Some(sim.now());
                break;
            }
        }
        check(
            back.is_some(),
            format!(
                "seed {seed}: node 7 is {} and not reachable by all 5 s later",
                sim.id(7)
            ),
            &replay,
        );
        let counters = sim.node(7).unwrap().counters();
        let advanced = counters.incarnations_advanced;
        check(advanced == 1, format!("advanced {advanced} times"), &replay);
        // Joining a running cluster, it caught up with a complete peer, not by waiting.
        check(
            counters.views_completed_by_peer == 1,
            format!(
                "completed by peer {}, by timeout {}",
                counters.views_completed_by_peer, counters.views_completed_by_timeout
            ),
            &replay,
        );
        check(
            sim.false_positives.is_empty(),
            format!("seed {seed}: {:?}", sim.false_positives),
            &replay,
        );
        eprintln!(
            "seed {seed}: lost state -> {} reachable by all at {:?}",
            sim.id(7),
            back
        );
        check_invariants(&sim, &replay);
    }
}

#[test]
fn two_hundred_nodes_join_without_a_false_positive() {
    // Before a node's view was complete it reported hosts unreachable on the strength of
    // records it had not finished receiving: seed 7 gave 219 false positives in the join.
    for seed in seeds(6..=8) {
        let run = MembershipRun {
            nodes: 200,
            seed,
            duration: Duration::from_secs(7),
            ..MembershipRun::default()
        };
        let replay = run.replay_command();
        let (report, sim) = run.run();
        check(
            report.false_positives == 0,
            format!(
                "seed {seed}: {:?}",
                &sim.false_positives[..sim.false_positives.len().min(5)]
            ),
            &replay,
        );
        check(report.converged_ms.is_some(), "never converged", &replay);
        check(
            report.detection_ms.is_some_and(|d| d.max < 500.0),
            format!("seed {seed}: detection {:?}", report.detection_ms),
            &replay,
        );
        let by_peer: u64 = sim
            .alive()
            .map(|i| {
                sim.node(i)
                    .expect("alive")
                    .counters()
                    .views_completed_by_peer
            })
            .sum();
        eprintln!(
            "seed {seed}: {by_peer} of {} views completed by a peer",
            sim.alive().count()
        );
    }
}

/// A join's links are published together: with additions coalesced, the 40 nodes of a
/// cold start publish fewer record versions than with every change published at once,
/// and still converge without a false positive.
#[test]
fn coalesced_additions_publish_fewer_versions_during_a_join() {
    for seed in seeds(1..=3) {
        let replay = replay_test(
            "coalesced_additions_publish_fewer_versions_during_a_join",
            seed,
        );
        let versions = |tune: fn(&mut minuteman_core::Config)| {
            let mut cfg = ClusterConfig::new(40);
            cfg.tune = tune;
            let mut sim = checked_sim(cfg, seed);
            let converged = run_checked(&mut sim, ms(10_000), Duration::from_millis(50), &replay);
            check(converged.is_some(), "converged within 10 s", &replay);
            check(
                sim.false_positives.is_empty(),
                format!("false positives {:?}", sim.false_positives),
                &replay,
            );
            sim.alive()
                .map(|i| sim.node(i).unwrap().counters().records_applied)
                .sum::<u64>()
        };
        let coalesced = versions(|_| {});
        let at_once = versions(|c| c.records.coalesce_additions = Duration::ZERO);
        check(
            coalesced * 10 < at_once * 9,
            format!(
                "seed {seed}: {coalesced} record versions applied coalesced vs {at_once} at once"
            ),
            &replay,
        );
    }
}

/// A joiner's first version carries its links: it waits for the first link (and then the
/// usual coalescing) instead of going out empty at the start, which every node had to
/// store and every link to carry (a quarter of a 40-node cold start's versions, a third
/// of a 1,000-node one's). A joiner that holds nothing still starts its links with an
/// (empty) digest, so it is sent everything at once and the cold start converges as fast.
#[test]
fn a_joiners_first_version_carries_its_links() {
    for seed in seeds(1..=3) {
        let replay = replay_test("a_joiners_first_version_carries_its_links", seed);
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        let mut converged = None;
        while converged.is_none() && sim.now() < ms(3_000) {
            sim.run_until(sim.now() + Duration::from_millis(10));
            for i in sim.alive() {
                let node = sim.node(i).expect("alive");
                let empty_first = node.records().find(|r| {
                    r.origin != node.id()
                        && r.seq == 1
                        && r.body.adjacency.is_empty()
                        && r.services.is_empty()
                });
                check(
                    empty_first.is_none(),
                    format!(
                        "seed {seed}: at {} node {i} holds an empty first version {:?}",
                        sim.now(),
                        empty_first.map(|r| r.origin)
                    ),
                    &replay,
                );
            }
            if sim.is_converged() {
                converged = Some(sim.now());
            }
        }
        check(
            converged.is_some_and(|t| t <= ms(1_000)),
            format!("seed {seed}: converged at {converged:?} (about 0.5 s expected)"),
            &replay,
        );
    }
}

/// While a node joins, its link changes (additions, and drops when a fuller neighbour
/// evicts it) wait `records.coalesce_additions` together: two versions of a joiner's own
/// record are at least that far apart. Before, a drop went out at once, right after the
/// version that added links (17% more versions in a 40-node cold start, 12% at 200).
#[test]
fn a_joiners_link_changes_wait_together() {
    for seed in seeds(1..=3) {
        let replay = replay_test("a_joiners_link_changes_wait_together", seed);
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        let window = minuteman_core::RecordsConfig::default().coalesce_additions;
        // Per node: the own version last seen and when it was first seen.
        let mut last: Vec<Option<(u64, Time)>> = vec![None; 40];
        let mut checked = 0;
        while sim.now() < ms(1_500) {
            sim.run_until(sim.now() + Duration::from_millis(1));
            for i in sim.alive() {
                let node = sim.node(i).expect("alive");
                let Some(seq) = node.record(&node.id().addr).map(|r| r.seq) else {
                    continue;
                };
                match last[i] {
                    Some((held, at)) if seq != held => {
                        if !node.view_complete() {
                            checked += 1;
                            // Sampled every millisecond: a version seen at `now` was
                            // published in the millisecond before.
                            check(
                                sim.now() + Duration::from_millis(1) - at >= window,
                                format!(
                                    "seed {seed}: node {i} published seq {seq} at {} while \
                                     joining, {:?} after seq {held}",
                                    sim.now(),
                                    sim.now() - at
                                ),
                                &replay,
                            );
                        }
                        last[i] = Some((seq, sim.now()));
                    }
                    Some(_) => {}
                    None => last[i] = Some((seq, sim.now())),
                }
            }
        }
        check(
            checked >= 5,
            format!("seed {seed}: only {checked} later versions of joiners seen"),
            &replay,
        );
    }
}

/// A node below `membership.active_min` links asks for more with HIGH priority, which a
/// full peer must accept. With HyParView's rule (HIGH only when the view is empty) every
/// full peer refuses, and 200 nodes with 2% loss kept a node or two on two links for
/// seconds (seeds 1 and 4): one such node, whose two neighbours crashed together, was
/// reported down by 174 live nodes (CI's lossy band, seed 4, with a joiner's drops
/// coalesced).
#[test]
fn no_node_stays_below_the_minimum_of_links() {
    for seed in [1, 4] {
        let run = MembershipRun {
            nodes: 200,
            seed,
            loss: 0.02,
            crash_fraction: 0.0,
            duration: Duration::from_secs(5),
            ..MembershipRun::default()
        };
        let replay = run.replay_command();
        let (_, sim) = run.run();
        // The default `active_min` (a literal here: the test must not follow the default).
        let min = 3;
        for i in sim.alive() {
            let links = sim.node(i).expect("alive").active_view().count();
            check(
                links >= min,
                format!("seed {seed}: node {i} has {links} links at 5 s (minimum {min})"),
                &replay,
            );
        }
    }
}

/// Two neighbours that got a version at about the same time do not both send it to each
/// other: a queued copy is dropped when that neighbour sends the version first. Over a
/// 40-node cold start and crash, a version reaches a node about 2.6 times (3.6 before).
#[test]
fn crossing_flood_copies_are_cancelled() {
    for seed in seeds(1..=2) {
        let run = MembershipRun {
            nodes: 40,
            seed,
            duration: Duration::from_secs(10),
            ..MembershipRun::default()
        };
        let replay = run.replay_command();
        let (report, sim) = run.run();
        let cancelled: u64 = sim
            .alive()
            .filter_map(|i| sim.node(i))
            .map(|n| n.counters().floods_cancelled)
            .sum();
        check(cancelled > 0, "no flood copy was cancelled", &replay);
        check(
            report.record_copies_per_version < 3.0,
            format!(
                "seed {seed}: {:.2} copies per version",
                report.record_copies_per_version
            ),
            &replay,
        );
        check(report.false_positives == 0, "false positives", &replay);
    }
}

/// Anti-entropy costs the same whatever the store's size: 150 nodes in step exchange
/// summaries of 16 buckets (128 bytes; a store of 150 records folds into 32: 163 bytes per
/// node per second on the wire, 321 with 32-bucket summaries), and what
/// floods lost is still repaired, through the finer summary of the buckets that differ and
/// then their digest entries. The floods lose 5% of their datagrams for 3 s.
#[test]
fn summaries_stay_coarse_in_step_and_still_repair_lost_floods() {
    let kind = |name: &str| {
        minuteman_core::Message::KIND_NAMES
            .iter()
            .position(|k| *k == name)
            .expect("a message kind")
    };
    let (summary, digest_part) = (kind("summary"), kind("digest_part"));
    for seed in seeds(1..=1) {
        let replay = replay_test(
            "summaries_stay_coarse_in_step_and_still_repair_lost_floods",
            seed,
        );
        let conditions = Conditions {
            net: NetMode::Ideal,
            ..Conditions::default()
        };
        let nodes = 150;
        let mut sim = checked_sim(ClusterConfig::evaluation(nodes, 0.05, &conditions), seed);
        run_checked(&mut sim, ms(3_000), Duration::from_millis(200), &replay);
        sim.network.config.loss = 0.0;
        let converged = run_checked(&mut sim, ms(7_000), Duration::from_millis(200), &replay);
        check(
            converged.is_some(),
            "converged once the loss stopped",
            &replay,
        );
        // Every node holds the same version of every record.
        let versions = |i: usize| -> Vec<(std::net::SocketAddr, (u64, u64))> {
            let mut v: Vec<_> = sim
                .node(i)
                .expect("alive")
                .records()
                .map(|r| (r.origin.addr, r.version()))
                .collect();
            v.sort();
            v
        };
        let first = versions(0);
        check(
            first.len() == nodes,
            format!("{} records", first.len()),
            &replay,
        );
        for i in sim.alive() {
            check(
                versions(i) == first,
                format!("seed {seed}: node {i} holds other versions than node 0"),
                &replay,
            );
        }
        check(
            sim.traffic.by_kind[digest_part].0 > 0,
            "no digest part: the losses were not repaired by summaries",
            &replay,
        );
        // In step: one coarse summary per node per anti-entropy interval (1 s).
        let before = sim.traffic.by_kind[summary];
        run_checked(&mut sim, ms(10_000), Duration::from_millis(500), &replay);
        let after = sim.traffic.by_kind[summary];
        let per_node_s = (after.1 - before.1) as f64 / (nodes as f64 * 3.0);
        check(
            per_node_s < 200.0,
            format!("seed {seed}: summaries cost {per_node_s:.0} bytes per node per second"),
            &replay,
        );
    }
}

/// New links between nodes whose views are complete start with store summaries, not full
/// digests: after five of forty nodes crash in a settled cluster, the survivors open
/// replacement links and send no DIGEST at all (a full digest is one line per node).
#[test]
fn new_links_between_complete_nodes_send_summaries_not_digests() {
    let digest = minuteman_core::Message::KIND_NAMES
        .iter()
        .position(|k| *k == "digest")
        .expect("a digest kind");
    for seed in seeds(1..=3) {
        let replay = replay_test(
            "new_links_between_complete_nodes_send_summaries_not_digests",
            seed,
        );
        let mut sim = checked_sim(ClusterConfig::new(40), seed);
        run_checked(&mut sim, ms(5_000), Duration::from_millis(100), &replay);
        check(
            sim.alive()
                .all(|i| sim.node(i).is_some_and(|n| n.view_complete())),
            "every view complete before the crash",
            &replay,
        );
        let totals = |sim: &Simulation| {
            sim.alive()
                .filter_map(|i| sim.node(i))
                .map(|n| (n.counters().links_up, n.counters().messages_out[digest]))
                .fold((0, 0), |(l, d), (a, b)| (l + a, d + b))
        };
        let victims = sim.sample_nodes(5);
        sim.crash_batch(&victims);
        let before = totals(&sim);
        run_checked(&mut sim, ms(8_000), Duration::from_millis(100), &replay);
        let after = totals(&sim);
        check(
            after.0 > before.0,
            format!("seed {seed}: no new link after the crash"),
            &replay,
        );
        check(
            after.1 == before.1,
            format!(
                "seed {seed}: {} full digests on {} new links between complete nodes",
                after.1 - before.1,
                after.0 - before.0
            ),
            &replay,
        );
        check(all_reach_all(&sim), "survivors reach each other", &replay);
    }
}

/// One end of each link pings every interval and the other listens: a settled 40-node
/// cluster sends about 21 pings a link a second (20 from the pinger, one from the listener
/// for its RTT samples), where both ends pinging sent about 41; every ping is answered.
#[test]
fn each_link_carries_one_ping_an_interval() {
    use minuteman_core::Message;
    let kind = Message::Ping { echo: 0 }.kind_index();
    let pong = Message::Pong { echo: 0 }.kind_index();
    for seed in seeds(1..=2) {
        let replay = replay_test("each_link_carries_one_ping_an_interval", seed);
        let mut sim = Simulation::new(ClusterConfig::new(40), seed);
        let links = |sim: &Simulation| -> usize {
            let ends: usize = sim
                .alive()
                .filter_map(|i| sim.node(i))
                .map(|n| n.active_view().count())
                .sum();
            ends / 2
        };
        sim.run_until(ms(10_000));
        let (pings, pongs) = (sim.traffic.by_kind[kind].0, sim.traffic.by_kind[pong].0);
        let before = links(&sim);
        sim.run_until(ms(20_000));
        let after = links(&sim);
        let mean = (before + after) as f64 / 2.0;
        let per_link = |n: u64| n as f64 / mean / 10.0;
        let ping_rate = per_link(sim.traffic.by_kind[kind].0 - pings);
        let pong_rate = per_link(sim.traffic.by_kind[pong].0 - pongs);
        check(
            (19.0..=23.0).contains(&ping_rate),
            format!(
                "seed {seed}: {ping_rate:.1} pings a link a second over {before}..{after} links"
            ),
            &replay,
        );
        check(
            (pong_rate - ping_rate).abs() < 0.5,
            format!("seed {seed}: {ping_rate:.1} pings but {pong_rate:.1} pongs a link a second"),
            &replay,
        );
    }
}
