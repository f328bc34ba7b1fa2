//! The membership evaluation: a cluster joins from cold, a fraction of it kernel-panics,
//! and the report says how fast the survivors noticed.
//!
//! Measured:
//! - `converged_ms`: first time (sampled every `check_every`) at which every node is in one
//!   overlay and every node reaches every node;
//! - detection: per survivor, crash → the moment it saw every crashed node unreachable;
//! - false positives: a live node seen unreachable by a live node, over the whole run,
//!   and by cause from ground truth (an agent stall, a host freeze, else loss or delay);
//! - the stalls and freezes (`--agent-stalls`, `--host-freezes`): how many, how many
//!   short freezes were declared down, how long restoring a declared-down host took;
//! - traffic per node per second, the transport's counters, the trace hash, wall-clock
//!   time.
//!
//! The victims of the crash are drawn at the crash among the nodes that are not stalled
//! or frozen then (with no faults: among all, as before).
//!
//! Host churn (`--churn-hosts R`, per simulated minute; `--gc-horizon`): from `crash_at`
//! on, every `60/R` seconds one live host leaves for good (a crash without restart, drawn
//! from the run's generator among the live hosts that are not contacts and not stalled
//! or frozen) and one new host joins with an address never used before (the cluster is
//! built with one dormant host per arrival). Every simulated minute (and at the end) the
//! report samples, over the live nodes, the most record slots in use, the longest slot
//! vector and the most tombstones (`churn.samples`); `records_held_max` and
//! `tombstones_max` are the values at the end. The crash batch, if any, is independent.

use crate::faults::{FpByCause, FreezeReport, StallReport};
use crate::progress::Progress;
use crate::sim::{ClusterConfig, Conditions, NetMode, Simulation};
use crate::stats::Summary;
use crate::tcp::TcpStats;
use minuteman_core::Time;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Parameters of one membership run.
#[derive(Clone, Debug)]
pub struct MembershipRun {
    pub nodes: usize,
    pub crash_fraction: f64,
    pub crash_at: Duration,
    pub duration: Duration,
    pub seed: u64,
    pub loss: f64,
    /// Convergence is sampled at this period until reached.
    pub check_every: Duration,
    /// The model (`--net`) and the stalls and freezes.
    pub conditions: Conditions,
    /// Hosts leaving for good and new hosts joining, each per simulated minute, from
    /// `crash_at` on (0: none).
    pub churn_hosts_per_min: f64,
    /// Every node's `records.gc_horizon` (`None`: the core's default).
    pub gc_horizon: Option<Duration>,
}

impl Default for MembershipRun {
    fn default() -> Self {
        MembershipRun {
            nodes: 40,
            crash_fraction: 0.125,
            crash_at: Duration::from_secs(5),
            duration: Duration::from_secs(30),
            seed: 1,
            loss: 0.0,
            check_every: Duration::from_millis(10),
            conditions: Conditions::default(),
            churn_hosts_per_min: 0.0,
            gc_horizon: None,
        }
    }
}

/// What a membership run reports. Field names are the JSON keys.
#[derive(Clone, Debug, Serialize)]
pub struct MembershipReport {
    pub seed: u64,
    pub nodes: usize,
    pub crashed: usize,
    pub converged_ms: Option<f64>,
    /// `None` when some survivor never saw every crashed node unreachable.
    pub detection_ms: Option<Summary>,
    /// Survivors that never saw every crashed node unreachable.
    pub undetected: usize,
    pub false_positives: usize,
    /// By the target's fault: it was stalled or frozen at the report or within 1 s before.
    pub false_positives_by_cause: FpByCause,
    /// By the observer's own fault, by the same rule (a resumed host's late timers).
    pub false_positives_by_observer_fault: FpByCause,
    pub stalls: StallReport,
    pub freezes: FreezeReport,
    /// Reports from the cores that a peer's agent is stalled (0 until the core has them).
    pub agent_stalled_reports: u64,
    pub net: NetMode,
    /// Active links the survivors' adaptive ping declared dead (crashed peers' included).
    pub links_dead: u64,
    /// Suspicions the survivors' adaptive ping started.
    pub suspicions: u64,
    /// The transport's counters (`None` on the ideal network's datagrams).
    pub tcp: Option<TcpStats>,
    pub msgs_per_node_per_s: f64,
    /// Over the whole run: the cold start (every node learns every record at least once,
    /// a cost per node that grows with the cluster) and the crash repair included.
    pub bytes_per_node_per_s: f64,
    /// Per live node per second from [`SETTLED_AFTER`] past the crash to the end: the
    /// steady cost (pings, shuffles, anti-entropy) once the join and the repair are over.
    /// `None` when that window is shorter than [`SETTLED_MIN`] or hosts churn.
    pub settled_bytes_per_node_per_s: Option<f64>,
    /// Record versions each live node stored, on average (new versions it learnt of).
    pub record_versions_per_node: f64,
    /// Record copies received per version stored (1 is the least a broadcast can do; a
    /// flood over active views of size k approaches k).
    pub record_copies_per_version: f64,
    /// Simulated CPU time of the agent processes, milliseconds per node per simulated
    /// second (the model of [`crate::cpu`], not a measurement; 0 on the ideal network).
    pub cpu_ms_per_node_per_s: f64,
    /// The same, by message kind (kinds never sent left out).
    pub bytes_per_node_per_s_by_kind: std::collections::BTreeMap<String, f64>,
    pub trace_hash: String,
    pub wall_ms: f64,
    /// At the end, the most record slots in use on one live node (addresses held).
    pub records_held_max: usize,
    /// At the end, the most tombstones on one live node.
    pub tombstones_max: usize,
    /// Host churn, when the run has it.
    pub churn: Option<ChurnReport>,
}

/// How long after the crash the settled window of
/// [`MembershipReport::settled_bytes_per_node_per_s`] starts.
pub const SETTLED_AFTER: Duration = Duration::from_secs(10);
/// The shortest settled window measured.
pub const SETTLED_MIN: Duration = Duration::from_secs(5);

/// What host churn did and what the stores held over time.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnReport {
    pub hosts_per_min: f64,
    pub gc_horizon_ms: f64,
    /// When each host left for good (simulated ms).
    pub left_at_ms: Vec<f64>,
    /// Hosts that joined with new addresses.
    pub joined: usize,
    pub samples: Vec<RecordSample>,
}

/// The live nodes' stores at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct RecordSample {
    pub at_ms: f64,
    pub live: usize,
    /// The most slots in use (addresses held) on one live node.
    pub records_held_max: usize,
    /// The longest slot vector (in use and free) on one live node: its memory.
    pub record_slots_max: usize,
    pub tombstones_max: usize,
}

impl RecordSample {
    fn of(sim: &Simulation) -> RecordSample {
        let mut sample = RecordSample {
            at_ms: sim.now().as_millis_f64(),
            live: 0,
            records_held_max: 0,
            record_slots_max: 0,
            tombstones_max: 0,
        };
        for i in sim.alive() {
            let node = sim.node(i).expect("alive");
            sample.live += 1;
            sample.records_held_max = sample.records_held_max.max(node.records_held());
            sample.record_slots_max = sample.record_slots_max.max(node.record_slots());
            sample.tombstones_max = sample.tombstones_max.max(node.tombstones());
        }
        sample
    }
}

impl MembershipRun {
    pub fn cluster_config(&self) -> ClusterConfig {
        let arrivals = self.arrivals();
        let mut cfg = ClusterConfig::evaluation(self.nodes + arrivals, self.loss, &self.conditions);
        cfg.dormant = arrivals;
        cfg.gc_horizon = self.gc_horizon;
        cfg
    }

    /// The period of host churn (`None`: no churn).
    fn churn_period(&self) -> Option<Duration> {
        (self.churn_hosts_per_min > 0.0 && self.churn_hosts_per_min.is_finite())
            .then(|| Duration::from_secs_f64(60.0 / self.churn_hosts_per_min))
    }

    /// New hosts the churn brings in over the run (one dormant host each).
    fn arrivals(&self) -> usize {
        match self.churn_period() {
            Some(period) if self.duration > self.crash_at => {
                let span = (self.duration - self.crash_at).as_secs_f64();
                (span / period.as_secs_f64()).floor() as usize + 1
            }
            _ => 0,
        }
    }

    /// The command line that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p minuteman-sim -- membership --nodes {} --crash-fraction {} \
             --crash-at {}ms --duration {}ms --seed {} --loss {}{}{}",
            self.nodes,
            self.crash_fraction,
            self.crash_at.as_millis(),
            self.duration.as_millis(),
            self.seed,
            self.loss,
            self.conditions.replay_args(),
            self.churn_args()
        )
    }

    fn churn_args(&self) -> String {
        let mut out = String::new();
        if self.churn_period().is_some() {
            out += &format!(" --churn-hosts {}", self.churn_hosts_per_min);
        }
        if let Some(h) = self.gc_horizon {
            out += &format!(" --gc-horizon {}ms", h.as_millis());
        }
        out
    }

    /// Runs the evaluation; also returns the simulation for further inspection.
    pub fn run(&self) -> (MembershipReport, Simulation) {
        self.run_with(None)
    }

    /// [`MembershipRun::run`], reporting progress while it runs (the same run).
    pub fn run_with(&self, progress: Option<Progress>) -> (MembershipReport, Simulation) {
        let wall = Instant::now();
        let mut sim = Simulation::new(self.cluster_config(), self.seed);
        let crash_count = ((self.nodes as f64) * self.crash_fraction).round() as usize;
        let crash_at = Time::from_duration(self.crash_at);
        let end = Time::from_duration(self.duration);
        if let Some(mut progress) = progress {
            progress.set_horizon(end);
            sim.set_progress(progress);
        }

        let mut converged_at = None;
        while sim.now() < crash_at.min(end) {
            let next = (sim.now() + self.check_every).min(crash_at.min(end));
            sim.run_until(next);
            if sim.is_converged() {
                converged_at = Some(sim.now());
                break;
            }
        }
        sim.run_until(crash_at.min(end));
        let mut crashed = 0;
        if crash_at < end && crash_count > 0 {
            let faulted = sim.faulted_now();
            let victims = sim.sample_nodes_except(crash_count.min(self.nodes), &faulted);
            crashed = victims.len();
            sim.crash_batch(&victims);
        }
        if converged_at.is_none() {
            // Not converged before the crash: keep sampling (over the survivors).
            while sim.now() < end {
                sim.run_until((sim.now() + self.check_every).min(end));
                if sim.is_converged() {
                    converged_at = Some(sim.now());
                    break;
                }
            }
        }
        let churn = self
            .churn_period()
            .map(|period| self.run_churn(&mut sim, period, end));
        let settled_from = (crash_at + SETTLED_AFTER).max(sim.now());
        let settled = (churn.is_none() && settled_from + SETTLED_MIN <= end).then(|| {
            sim.run_until(settled_from);
            (sim.traffic.bytes_sent, sim.alive().count())
        });
        sim.run_until(end);
        sim.finish_progress();
        let last = RecordSample::of(&sim);

        let times = sim.detection_times();
        let detected: Vec<Duration> = times.iter().filter_map(|(_, t)| *t).collect();
        let undetected = times.len() - detected.len();
        let detection_ms = if crashed > 0 && undetected == 0 {
            Summary::of(&detected)
        } else {
            None
        };
        let node_seconds = self.nodes as f64 * self.duration.as_secs_f64().max(1e-9);
        let report = MembershipReport {
            seed: self.seed,
            nodes: self.nodes,
            crashed,
            converged_ms: converged_at.map(Time::as_millis_f64),
            detection_ms,
            undetected,
            false_positives: sim.false_positives.len(),
            false_positives_by_cause: sim.false_positives_by_cause(),
            false_positives_by_observer_fault: sim.false_positives_by_observer_fault(),
            stalls: sim.stall_report(),
            freezes: sim.freeze_report(),
            agent_stalled_reports: sim.agent_stalled_reports,
            net: self.conditions.net,
            links_dead: sim
                .alive()
                .map(|i| sim.node(i).expect("alive").counters().links_dead)
                .sum(),
            suspicions: sim
                .alive()
                .map(|i| sim.node(i).expect("alive").counters().suspicions)
                .sum(),
            tcp: sim.tcp_stats().cloned(),
            msgs_per_node_per_s: sim.traffic.messages_sent as f64 / node_seconds,
            bytes_per_node_per_s: sim.traffic.bytes_sent as f64 / node_seconds,
            settled_bytes_per_node_per_s: settled.map(|(bytes_before, live)| {
                let seconds = end.saturating_since(settled_from).as_secs_f64();
                (sim.traffic.bytes_sent - bytes_before) as f64 / (live.max(1) as f64 * seconds)
            }),
            record_versions_per_node: {
                let (applied, live) = sim.alive().fold((0u64, 0u64), |(a, n), i| {
                    (
                        a + sim.node(i).expect("alive").counters().records_applied,
                        n + 1,
                    )
                });
                applied as f64 / live.max(1) as f64
            },
            record_copies_per_version: {
                let (applied, stale) = sim.alive().fold((0u64, 0u64), |(a, s), i| {
                    let c = sim.node(i).expect("alive").counters();
                    (a + c.records_applied, s + c.records_stale)
                });
                (applied + stale) as f64 / applied.max(1) as f64
            },
            cpu_ms_per_node_per_s: sim.cpu_time().as_secs_f64() * 1e3 / node_seconds,
            bytes_per_node_per_s_by_kind: minuteman_core::Message::KIND_NAMES
                .iter()
                .zip(sim.traffic.by_kind)
                .filter(|(_, (messages, _))| *messages > 0)
                .map(|(name, (_, bytes))| (name.to_string(), bytes as f64 / node_seconds))
                .collect(),
            trace_hash: format!("{:016x}", sim.trace_hash()),
            wall_ms: wall.elapsed().as_secs_f64() * 1e3,
            records_held_max: last.records_held_max,
            tombstones_max: last.tombstones_max,
            churn: churn.map(|(left_at_ms, joined, mut samples)| {
                samples.push(last);
                ChurnReport {
                    hosts_per_min: self.churn_hosts_per_min,
                    gc_horizon_ms: self
                        .gc_horizon
                        .unwrap_or(minuteman_core::RecordsConfig::default().gc_horizon)
                        .as_secs_f64()
                        * 1e3,
                    left_at_ms,
                    joined,
                    samples,
                }
            }),
        };
        (report, sim)
    }

    /// Host churn from now until `end`: every `period` one live host (not a contact, not
    /// stalled or frozen) leaves for good and the next dormant host starts; the stores
    /// are sampled every simulated minute. Returns when hosts left, how many joined and
    /// the samples.
    fn run_churn(
        &self,
        sim: &mut Simulation,
        period: Duration,
        end: Time,
    ) -> (Vec<f64>, usize, Vec<RecordSample>) {
        let contacts = sim.contact_count();
        let (mut left_at, mut joined, mut samples) = (Vec::new(), 0, Vec::new());
        let mut next_sample = sim.now();
        let mut next_churn = sim.now() + period;
        let dormant: Vec<usize> = (0..sim.len()).filter(|&i| !sim.has_started(i)).collect();
        let mut dormant = dormant.into_iter();
        loop {
            let next = next_sample.min(next_churn);
            if next > end {
                break;
            }
            sim.run_until(next);
            if next == next_sample {
                samples.push(RecordSample::of(sim));
                next_sample = next_sample + Duration::from_secs(60);
            }
            if next == next_churn {
                next_churn = next_churn + period;
                let mut keep: Vec<usize> = (0..sim.len())
                    .filter(|&i| i < contacts || !sim.is_alive(i))
                    .collect();
                keep.extend(sim.faulted_now());
                if let Some(&victim) = sim.sample_nodes_except(1, &keep).first() {
                    sim.crash(victim);
                    left_at.push(sim.now().as_millis_f64());
                }
                if let Some(new) = dormant.next() {
                    sim.start_host(new);
                    joined += 1;
                }
            }
        }
        (left_at, joined, samples)
    }
}

impl MembershipReport {
    /// The human-readable report (the seed was printed first, by the caller).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let ms = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.1} ms"));
        out += &format!("nodes            {}\n", self.nodes);
        out += &format!("crashed          {}\n", self.crashed);
        out += &format!("converged        {}\n", ms(self.converged_ms));
        match &self.detection_ms {
            Some(d) => {
                out += &format!(
                    "detection        p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (crash -> survivor sees all crashed nodes unreachable)\n",
                    d.p50, d.p99, d.max
                )
            }
            None if self.crashed == 0 => out += "detection        no crash\n",
            None => {
                out += &format!(
                    "detection        INCOMPLETE: {} survivors never saw every crashed node unreachable\n",
                    self.undetected
                )
            }
        }
        let by = &self.false_positives_by_cause;
        let ob = &self.false_positives_by_observer_fault;
        out += &format!(
            "false positives  {} (target: {} agent stall, {} host freeze, {} loss or delay; observer: {} stalled, {} frozen)\n",
            self.false_positives,
            by.agent_stall,
            by.host_freeze,
            by.loss_or_delay,
            ob.agent_stall,
            ob.host_freeze
        );
        out += &format!(
            "stalls           {} ({} declared down); agent-stalled reports {}\n",
            self.stalls.count, self.stalls.declared_down, self.agent_stalled_reports
        );
        let f = &self.freezes;
        out += &format!(
            "freezes          {} ({} short, {} of them declared down; {} declared down in all, restore max {}{})\n",
            f.count,
            f.short,
            f.short_declared_down,
            f.declared_down,
            f.restore_ms_max
                .map_or("-".to_string(), |ms| format!("{ms:.0} ms")),
            if f.unrestored > 0 {
                format!(", {} never restored", f.unrestored)
            } else {
                String::new()
            }
        );
        out += &format!(
            "links            {} declared dead, {} suspicions (survivors' adaptive ping)\n",
            self.links_dead, self.suspicions
        );
        out += &format!("network          {}", self.net.name());
        match &self.tcp {
            Some(t) => {
                out += &format!(
                    " (TCP: {} segments, {} retransmitted, {} connections opened, {} aborted by the user timeout)\n",
                    t.segments, t.retransmissions, t.connections_opened, t.aborts
                )
            }
            None => out += " (datagrams)\n",
        }
        out += &format!(
            "traffic          {:.1} msgs/node/s, {:.0} bytes/node/s",
            self.msgs_per_node_per_s, self.bytes_per_node_per_s
        );
        match self.settled_bytes_per_node_per_s {
            Some(b) => out += &format!(" ({b:.0} once settled)\n"),
            None => out += "\n",
        }
        out += &format!(
            "records          {:.1} versions stored per node, {:.2} copies received per version\n",
            self.record_versions_per_node, self.record_copies_per_version
        );
        out += &format!(
            "cpu              {:.2} ms/node/s (simulated)\n",
            self.cpu_ms_per_node_per_s
        );
        let mut kinds: Vec<_> = self.bytes_per_node_per_s_by_kind.iter().collect();
        kinds.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(kind, bytes)| format!("{kind} {bytes:.0}"))
            .collect();
        out += &format!("  by kind        {}\n", kinds.join(", "));
        out += &format!(
            "records          {} held at most per node, {} tombstones at most (at the end)\n",
            self.records_held_max, self.tombstones_max
        );
        if let Some(c) = &self.churn {
            out += &format!(
                "churn            {}/min: {} left, {} joined; horizon {:.0} ms\n",
                c.hosts_per_min,
                c.left_at_ms.len(),
                c.joined,
                c.gc_horizon_ms
            );
            for s in &c.samples {
                out += &format!(
                    "  at {:>8.0} ms  live {:>3}  held max {:>3}  slots max {:>3}  tombstones max {:>3}\n",
                    s.at_ms, s.live, s.records_held_max, s.record_slots_max, s.tombstones_max
                );
            }
        }
        out += &format!("trace hash       {}\n", self.trace_hash);
        out += &format!("wall clock       {:.0} ms\n", self.wall_ms);
        out
    }
}
