//! The services evaluation: a cluster whose hosts run Mesos tasks with VIP labels, task
//! churn, and the report of how fast every kernel follows Mesos.
//!
//! The run: the cluster boots with `tasks` tasks spread over the hosts; after `warmup`
//! (every node has polled once) the churn runs for `duration`; then a quiet tail of
//! `poll_interval + settle + 1 s` lets every kernel settle, so the last quiet check sees
//! the final state. Checks run every `check_every` (see [`crate::world`]).

use crate::faults::{FreezeReport, StallReport};
use crate::progress::Progress;
use crate::sim::{ClusterConfig, Conditions, NetMode, Simulation};
use crate::stats::Summary;
use crate::world::{Violation, WorldConfig, WorldCounters};
use minuteman_core::Time;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Parameters of one services run.
#[derive(Clone, Debug)]
pub struct ServicesRun {
    pub nodes: usize,
    pub vips: usize,
    pub tasks: usize,
    /// Task changes per second, cluster-wide.
    pub churn: f64,
    pub seed: u64,
    pub poll_interval: Duration,
    /// Simulated time of churn.
    pub duration: Duration,
    pub warmup: Duration,
    pub loss: f64,
    pub check_every: Duration,
    /// The model (`--net`) and the stalls and freezes.
    pub conditions: Conditions,
}

impl Default for ServicesRun {
    fn default() -> Self {
        ServicesRun {
            nodes: 40,
            vips: 100,
            tasks: 1000,
            churn: 5.0,
            seed: 1,
            poll_interval: Duration::from_secs(2),
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(3),
            loss: 0.0,
            check_every: Duration::from_millis(100),
            conditions: Conditions::default(),
        }
    }
}

/// What a services run reports. Field names are the JSON keys.
#[derive(Clone, Debug, Serialize)]
pub struct ServicesReport {
    pub seed: u64,
    pub nodes: usize,
    pub vips: usize,
    pub tasks: usize,
    /// Task changes made in Mesos.
    pub changes: u64,
    /// Change in Mesos → every live kernel reflects it (`None`: no change completed).
    pub propagation_ms: Option<Summary>,
    /// The origin's poll that picked the change up → every live kernel reflects it.
    pub after_poll_ms: Option<Summary>,
    pub violations: usize,
    /// The first few violations, for the replay.
    pub violation_samples: Vec<Violation>,
    pub world: WorldCounters,
    /// RECORDS bytes sent cluster-wide from the start to the end of the churn, per task
    /// change (adjacency versions in that window included; `None`: no change).
    pub records_bytes_per_change: Option<f64>,
    /// Records whose services delta started from a version the receiver lacked (each
    /// answered by a WANT and a full record), over the nodes alive at the end.
    pub delta_gaps: u64,
    /// Live hosts whose backends were withdrawn from some live host's kernel during the
    /// run (a crashed host's leaving is not one).
    pub false_positives: usize,
    /// Live incarnations some live node reported unreachable (the membership figure).
    pub unreachable_reports: usize,
    pub stalls: StallReport,
    pub freezes: FreezeReport,
    pub net: NetMode,
    pub trace_hash: String,
    pub wall_ms: f64,
}

impl ServicesRun {
    pub fn cluster_config(&self) -> ClusterConfig {
        ClusterConfig::evaluation(self.nodes, self.loss, &self.conditions)
    }

    pub fn world_config(&self) -> WorldConfig {
        WorldConfig {
            vips: self.vips,
            tasks: self.tasks,
            churn_per_s: self.churn,
            poll_interval: self.poll_interval,
            ..WorldConfig::default()
        }
    }

    /// The command line that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p minuteman-sim -- services --nodes {} --vips {} --tasks {} \
             --churn {} --poll-interval {}ms --duration {}ms --seed {} --loss {}{}",
            self.nodes,
            self.vips,
            self.tasks,
            self.churn,
            self.poll_interval.as_millis(),
            self.duration.as_millis(),
            self.seed,
            self.loss,
            self.conditions.replay_args()
        )
    }

    /// Runs the evaluation; also returns the simulation for further inspection.
    pub fn run(&self) -> (ServicesReport, Simulation) {
        self.run_with(None)
    }

    /// [`ServicesRun::run`], reporting progress while it runs (the same run).
    pub fn run_with(&self, progress: Option<Progress>) -> (ServicesReport, Simulation) {
        let wall = Instant::now();
        let mut sim = Simulation::new(self.cluster_config(), self.seed);
        sim.attach_world(self.world_config());
        let churn_start = Time::from_duration(self.warmup);
        let churn_end = churn_start + self.duration;
        let world = sim.world.as_ref().expect("attached");
        let tail = world.cfg.poll_interval + world.cfg.settle + Duration::from_secs(1);
        let end = churn_end + tail;
        if let Some(mut progress) = progress {
            progress.set_horizon(end);
            sim.set_progress(progress);
        }
        let records = minuteman_core::Message::KIND_NAMES
            .iter()
            .position(|k| *k == "records")
            .expect("a records kind");
        self.run_checked(&mut sim, churn_start);
        let records_before = sim.traffic.by_kind[records].1;
        sim.churn_until(churn_end);
        self.run_checked(&mut sim, churn_end);
        let records_during = sim.traffic.by_kind[records].1 - records_before;
        self.run_checked(&mut sim, end);
        sim.finish_progress();

        let world = sim.world.as_ref().expect("attached");
        let report = ServicesReport {
            seed: self.seed,
            nodes: self.nodes,
            vips: self.vips,
            tasks: self.tasks,
            changes: world.counters.changes,
            propagation_ms: Summary::of(&world.propagation),
            after_poll_ms: Summary::of(&world.after_poll),
            violations: world.violations.len(),
            violation_samples: world.violations.iter().take(5).cloned().collect(),
            world: world.counters.clone(),
            records_bytes_per_change: (world.counters.changes > 0)
                .then(|| records_during as f64 / world.counters.changes as f64),
            delta_gaps: sim
                .alive()
                .filter_map(|i| sim.node(i))
                .map(|n| n.counters().records_delta_gaps)
                .sum(),
            false_positives: world
                .withdrawals
                .iter()
                .map(|w| w.host)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            unreachable_reports: sim.false_positives.len(),
            stalls: sim.stall_report(),
            freezes: sim.freeze_report(),
            net: self.conditions.net,
            trace_hash: format!("{:016x}", sim.trace_hash()),
            wall_ms: wall.elapsed().as_secs_f64() * 1e3,
        };
        (report, sim)
    }

    fn run_checked(&self, sim: &mut Simulation, until: Time) {
        while sim.now() < until {
            let next = (sim.now() + self.check_every).min(until);
            sim.run_until(next);
            let now = sim.now();
            if let Some(world) = sim.world.as_mut() {
                world.check(now);
            }
        }
    }
}

impl ServicesReport {
    /// The human-readable report (the seed was printed first, by the caller).
    pub fn render(&self) -> String {
        let summary = |s: &Option<Summary>| {
            s.map_or("none completed".to_string(), |s| {
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    s.p50, s.p99, s.max
                )
            })
        };
        let w = &self.world;
        let mut out = String::new();
        out += &format!(
            "cluster          {} nodes, {} VIPs, {} tasks\n",
            self.nodes, self.vips, self.tasks
        );
        out += &format!(
            "changes          {} ({} completed, {} superseded, {} reverted, {} lost to crashes)\n",
            self.changes, w.completed, w.superseded, w.reverted, w.lost_to_crash
        );
        out += &format!(
            "propagation      {} (Mesos change -> every live kernel)\n",
            summary(&self.propagation_ms)
        );
        out += &format!(
            "after the poll   {} (origin's poll -> every live kernel)\n",
            summary(&self.after_poll_ms)
        );
        out += &format!("violations       {}\n", self.violations);
        for v in &self.violation_samples {
            out += &format!("  at {:.0} ms, node {}: {}\n", v.at_ms, v.node, v.what);
        }
        out += &format!(
            "polls            {} ({} parse errors, {} parser warnings, {} refused records)\n",
            w.polls, w.parse_errors, w.parse_warnings, w.record_errors
        );
        out += &format!(
            "records          {} bytes per change cluster-wide, {} delta gaps\n",
            self.records_bytes_per_change
                .map_or("-".to_string(), |b| format!("{b:.0}")),
            self.delta_gaps
        );
        out += &format!(
            "kernel ops       {} ({} failed to apply)\n",
            w.kernel_ops, w.kernel_errors
        );
        out += &format!(
            "faults           {} stalls, {} freezes; {} false positives; network {}\n",
            self.stalls.count,
            self.freezes.count,
            self.false_positives,
            self.net.name()
        );
        out += &format!("trace hash       {}\n", self.trace_hash);
        out += &format!("wall clock       {:.0} ms\n", self.wall_ms);
        out
    }
}
