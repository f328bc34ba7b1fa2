//! The paper replay: 40 nodes, one VIP with 1000 tasks, a testing node opening a new
//! connection per request, 12.5% of the hosts kernel-panic 5 s into the test. Every
//! survivor's kernel must drop the dead backends within half a second (p99), nothing may
//! fail after the last failure on a dead backend, no live host's backends may leave a
//! kernel, and fewer requests may fail than with the pre-Lashup baseline, which keeps
//! sending to dead backends until Mesos drops their agents.

use minuteman_core::Time;
use minuteman_sim::clients::Outcome::DeadBackend;
use minuteman_sim::{PaperReport, PaperRun};
use minuteman_sim_tests::{check, seeds};
use std::time::Duration;

fn replay(run: &PaperRun) -> String {
    run.replay_command()
}

#[test]
fn every_survivor_drops_dead_backends_within_half_a_second_on_twenty_seeds() {
    let mut failing_seeds = 0;
    for seed in seeds(1..=20) {
        let run = PaperRun {
            seed,
            ..PaperRun::default()
        };
        let outcome = run.run();
        let r: &PaperReport = &outcome.report;
        let replay = replay(&run);
        check(r.crashed == 5, format!("crashed {}", r.crashed), &replay);
        check(
            r.backends_at_start == r.tasks,
            format!(
                "testing node held {} of {} backends at the start",
                r.backends_at_start, r.tasks
            ),
            &replay,
        );
        // A request sent just before the crash may still be waiting for its answer when
        // its host dies; nothing sent earlier may fail.
        let crash = Time::from_duration(run.crash_at);
        let early = outcome
            .minuteman
            .iter()
            .chain(&outcome.baseline)
            .find(|q| q.failed() && q.sent + run.clients.timeout <= crash);
        check(
            early.is_none(),
            format!("a request failed long before the crash: {early:?}"),
            &replay,
        );
        let kernel = r.kernel_repair_ms;
        check(
            r.survivors == 35
                && kernel.is_some_and(|k| k.p99 <= 500.0 && k.max <= 1000.0)
                && r.kernel_repair_reason.is_none(),
            format!(
                "kernel repair over {} survivors: {kernel:?} ({:?})",
                r.survivors, r.kernel_repair_reason
            ),
            &replay,
        );
        // The testing node's requests can only fail while its own kernel holds dead ones.
        let own = r.testing_node_kernel_repair_ms.unwrap_or(f64::INFINITY);
        check(
            r.repair_ms.is_none_or(|ms| ms <= own) && kernel.is_some_and(|k| own <= k.max),
            format!(
                "last failure {:?} ms, testing node's kernel {own:.0} ms, all {kernel:?}",
                r.repair_ms
            ),
            &replay,
        );
        check(
            r.repair_ms.is_none() == (r.requests.dead_backend == 0),
            format!(
                "repair {:?} with {} dead-backend failures: 'none failed' must mean none",
                r.repair_ms, r.requests.dead_backend
            ),
            &replay,
        );
        check(
            r.requests.failed_after_repair == 0
                && r.requests.no_backend == 0
                && r.requests.timed_out == 0,
            format!(
                "failures after the last dead-backend failure: {:?}",
                r.requests
            ),
            &replay,
        );
        check(
            r.requests.failed < r.baseline.failed,
            format!(
                "minuteman failed {} requests, the baseline {}",
                r.requests.failed, r.baseline.failed
            ),
            &replay,
        );
        check(
            r.false_positives == 0 && r.baseline.false_positives == 0,
            format!(
                "false positives: {:?}, baseline {}",
                r.false_positive_hosts, r.baseline.false_positives
            ),
            &replay,
        );
        // 60 s is too short for Mesos to drop the dead agents (75 s at the earliest): the
        // baseline has not repaired, and says why instead of reporting the run length.
        let b = &r.baseline;
        check(
            b.kernel_repair_ms.is_none()
                && b.kernel_repair_reason
                    .as_deref()
                    .is_some_and(|why| why.contains("run ended at 60 s"))
                && b.list_repair_ms.is_some_and(|s| s.min >= 75_000.0)
                && b.requests.sent_to_dead > 0,
            format!(
                "baseline: repair {:?} ({:?}), list {:?}, sent to dead {}",
                b.kernel_repair_ms,
                b.kernel_repair_reason,
                b.list_repair_ms,
                b.requests.sent_to_dead
            ),
            &replay,
        );
        check(r.violations == 0, "kernels differ from Mesos", &replay);
        if r.requests.failed > 0 {
            failing_seeds += 1;
        }
    }
    // The scenario must exercise the failure path at all: some seeds send requests to dead
    // backends before the repair (which seeds depends on where wlc's walk is at the crash).
    if seeds(1..=20).len() > 1 {
        assert!(
            failing_seeds > 0,
            "no seed sent a request to a dead backend"
        );
    }
}

#[test]
fn same_seed_same_run() {
    let run = PaperRun {
        seed: 7,
        duration: Duration::from_secs(15),
        ..PaperRun::default()
    };
    let a = run.run();
    let b = run.run();
    check(
        a.report.trace_hash == b.report.trace_hash
            && a.timeline.buckets == b.timeline.buckets
            && a.report.baseline.list_repair_ms.map(|s| (s.min, s.max))
                == b.report.baseline.list_repair_ms.map(|s| (s.min, s.max)),
        "two runs of one seed differ",
        &replay(&run),
    );
    let other = PaperRun {
        seed: 8,
        ..run.clone()
    }
    .run();
    assert_ne!(a.report.trace_hash, other.report.trace_hash);
}

#[test]
fn clients_on_every_node_also_see_dead_backends_go_within_half_a_second() {
    // On seed 4 the clients' wlc walks cross a dead host's destinations before the repair
    // (on seed 3 they do not, and no request fails at all).
    let run = PaperRun {
        seed: 4,
        duration: Duration::from_secs(15),
        clients_everywhere: true,
        ..PaperRun::default()
    };
    let r = run.run().report;
    let replay = replay(&run);
    check(
        r.requests.failed > 0
            && r.kernel_repair_ms.is_some_and(|k| k.p99 <= 500.0)
            && r.requests.failed_after_repair == 0
            && r.false_positives == 0,
        format!("kernel repair {:?}, {:?}", r.kernel_repair_ms, r.requests),
        &replay,
    );
    check(
        r.requests.failed < r.baseline.failed && r.baseline.kernel_repair_ms.is_none(),
        format!(
            "failed {} vs baseline {} (baseline repair {:?})",
            r.requests.failed, r.baseline.failed, r.baseline.kernel_repair_ms
        ),
        &replay,
    );
}

#[test]
fn the_baseline_stops_sending_to_dead_backends_only_once_mesos_has_dropped_them() {
    // A run long enough for the Mesos master to drop the dead agents (75-90 s after the
    // crash, then a 5 s cache and a poll every 5 s): a smaller cluster keeps it quick.
    for seed in seeds(1..=3) {
        let run = PaperRun {
            seed,
            nodes: 10,
            tasks: 200,
            crash_fraction: 0.2,
            duration: Duration::from_secs(130),
            ..PaperRun::default()
        };
        let outcome = run.run();
        let r = &outcome.report;
        let b = &r.baseline;
        let replay = replay(&run);
        let span = b.list_repair_ms.expect("crashed hosts are dropped");
        check(
            (80_000.0..=105_000.0).contains(&span.min) && span.max <= 105_000.0,
            format!("dead backends left the list {span:?} ms after the crash"),
            &replay,
        );
        // Nothing goes to a dead backend once the list has lost them all.
        let crash_ms = run.crash_at.as_secs_f64() * 1e3;
        let late = outcome
            .baseline
            .iter()
            .find(|q| q.sent.as_millis_f64() > crash_ms + span.max && q.outcome == DeadBackend);
        check(
            late.is_none(),
            format!("sent to a dead backend after the list lost them: {late:?}"),
            &replay,
        );
        check(
            b.kernel_repair_ms.is_some_and(|ms| ms <= span.max)
                && b.kernel_repair_reason.is_none()
                && b.last_sent_to_dead_ms.is_some(),
            format!(
                "baseline repair {:?} ({:?}), list {span:?}",
                b.kernel_repair_ms, b.kernel_repair_reason
            ),
            &replay,
        );
        check(
            r.kernel_repair_ms.is_some_and(|k| k.p99 <= 500.0) && r.false_positives == 0,
            format!("minuteman kernel repair {:?}", r.kernel_repair_ms),
            &replay,
        );
    }
}
