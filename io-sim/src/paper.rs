//! The paper evaluation: the seed README's failure test, replayed, with the approach it
//! replaced running beside it.
//!
//! The run: `nodes` hosts, each with a Mesos agent; one VIP (`10.200.0.1:80`, TCP) whose
//! `tasks` tasks are spread at random over the agents; no task churn. The cluster boots
//! and settles for `warmup` (every node has polled its agent, every kernel holds every
//! backend); then the test starts (test time 0) and the clients of the testing node
//! (node 0, 10.0.0.1) send for `duration`. At `crash_at` (test time) a `crash_fraction` of
//! the hosts, never the testing node, kernel-panic.
//!
//! Two client groups run side by side on each client host, each with its own balancer,
//! connection table and random stream ([`crate::clients`]):
//! - *minuteman* balances with IPVS `wlc` over the host's kernel table as the core keeps
//!   it: the backends of a host leave it when membership sees that host unreachable;
//! - *baseline* is DC/OS's minuteman before Lashup ([`crate::baseline`]): two random
//!   choices by connect-latency EWMA over the backends the Mesos master lists, a backend
//!   closed after failed handshakes, and the dead hosts' backends gone from the list only
//!   once the master has dropped their agents and the host has polled that.
//!
//! Measured:
//! - the headline, `kernel_repair_ms`: per surviving host, crash → the moment its kernel
//!   holds no destination on a crashed host (p50, p99, max over the survivors). From then
//!   on no new connection from that host can reach a dead backend. The baseline's
//!   equivalent is crash → the send time of its last request to a dead backend, reported
//!   as `null` with a reason when it was still sending to them, or could still, at the end
//!   of the run (its list held dead backends, or its last such request was sent within the
//!   last [`STILL_SENDING`] of the run): the run length is never reported as a repair;
//! - `repair_ms`: crash → the send time of the last request that *failed* because it went
//!   to a dead backend, `null` when none did;
//! - false positives: live hosts whose backends left a live host's kernel at any time of
//!   the run ([`crate::world::Withdrawal`]); for the baseline, live hosts with a backend
//!   it closed;
//! - per group, requests, failures and latency (to the answer, or to giving up) before and
//!   after the crash, and per 100 ms of test time ([`Timeline`]); detection (crash → a
//!   survivor sees every crashed host unreachable), as in the membership evaluation.
//!
//! Invariants: the same seed gives the same report, timeline and trace hash; the clients
//! never feed anything back into the cores.

use crate::baseline::{master_drops_at, BaselineConfig, BaselineSetup};
use crate::clients::{ClientConfig, Clients, Env, Outcome, Request, Table};
use crate::progress::Progress;
use crate::sim::{node_addr, node_index, ClusterConfig, Conditions, Simulation};
use crate::stats::{percentile, Summary};
use crate::world::{service_of, Withdrawal, WorldConfig};
use minuteman_core::kernel::KernelState;
use minuteman_core::named::NameTable;
use minuteman_core::Time;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::Xxh3;

/// Width of one timeline bucket.
pub const BUCKET: Duration = Duration::from_millis(100);
/// The host whose clients send the requests.
pub const TESTING_NODE: usize = 0;
/// A baseline whose last request to a dead backend left this close to the end of the run
/// may not have stopped: its repair is reported as `null`.
pub const STILL_SENDING: Duration = Duration::from_secs(5);
/// The random stream of the Mesos master (the client groups use streams 1, 2, ...).
const MASTER_STREAM: u64 = 1 << 32;

/// Parameters of one paper run.
#[derive(Clone, Debug)]
pub struct PaperRun {
    pub nodes: usize,
    pub tasks: usize,
    pub crash_fraction: f64,
    /// Test time of the crash.
    pub crash_at: Duration,
    /// Test time the clients send for.
    pub duration: Duration,
    pub seed: u64,
    /// Simulated time before the test starts.
    pub warmup: Duration,
    /// Clients on every host, not only on the testing node.
    pub clients_everywhere: bool,
    pub loss: f64,
    pub clients: ClientConfig,
    pub baseline: BaselineConfig,
    /// How often the world's convergence checks run.
    pub check_every: Duration,
    /// The model (`--net`) and the stalls and freezes.
    pub conditions: Conditions,
}

impl Default for PaperRun {
    fn default() -> Self {
        PaperRun {
            nodes: 40,
            tasks: 1000,
            crash_fraction: 0.125,
            crash_at: Duration::from_secs(5),
            duration: Duration::from_secs(60),
            seed: 1,
            warmup: Duration::from_secs(3),
            clients_everywhere: false,
            loss: 0.0,
            clients: ClientConfig::default(),
            baseline: BaselineConfig::default(),
            check_every: Duration::from_secs(1),
            conditions: Conditions::default(),
        }
    }
}

/// Requests of one group.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RequestCounts {
    pub total: usize,
    pub failed: usize,
    /// Failed, and sent after the last request that failed on a dead backend (after the
    /// crash when none did).
    pub failed_after_repair: usize,
    /// Sent after the crash to a backend on a crashed host.
    pub sent_to_dead: usize,
    /// Failed because the destination's host was dead.
    pub dead_backend: usize,
    /// Failed because the service had no usable destination.
    pub no_backend: usize,
    /// Failed because a live backend answered after the client's timeout.
    pub timed_out: usize,
    /// In flight when the client's own host crashed (not counted above).
    pub abandoned: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// One phase of the test (before or after the crash).
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub requests: usize,
    pub failed: usize,
    pub latency_ms: Option<Latency>,
}

/// Both phases.
#[derive(Clone, Debug, Serialize)]
pub struct Phases {
    pub before_crash: Phase,
    pub after_crash: Phase,
}

/// A live host whose backends were withdrawn from live kernels (a false positive).
#[derive(Clone, Debug, Serialize)]
pub struct FalsePositiveHost {
    pub host: String,
    /// Test time of the first withdrawal (negative: during the warm-up).
    pub first_ms: f64,
    /// Kernels that lost at least one of its backends.
    pub kernels: usize,
    /// Destinations withdrawn, counted per kernel.
    pub withdrawals: usize,
}

/// Withdrawals of live hosts' backends while the cluster boots from cold (before the test).
/// A node that has just joined knows some records but no reachable origin with backends
/// yet; the core then keeps every backend it knows (a cut-off node serves what it last
/// knew) and drops the unreachable origins' ones when the first reachable origin appears,
/// until their origins become reachable in turn. Not counted as false positives.
#[derive(Clone, Debug, Serialize)]
pub struct BootWithdrawals {
    pub hosts: usize,
    pub withdrawals: usize,
    /// Test time of the last one (negative: before the test started).
    pub last_ms: Option<f64>,
}

/// From the crash until the baseline hosts' lists lost the dead backends (over every
/// surviving baseline host and crashed host).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Span {
    pub min: f64,
    pub max: f64,
}

/// The baseline's side of the report.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineReport {
    /// Crash → send time of its last request to a backend on a crashed host (`null`: it
    /// was still sending to them, or could still, when the run ended; see the reason).
    pub kernel_repair_ms: Option<f64>,
    pub kernel_repair_reason: Option<String>,
    /// Test time of its last request to a backend on a crashed host.
    pub last_sent_to_dead_ms: Option<f64>,
    /// Crash → the dead backends left its hosts' lists (Mesos), milliseconds.
    pub list_repair_ms: Option<Span>,
    /// Crash → send time of the last request that failed on a dead backend (`null`:
    /// none did).
    pub repair_ms: Option<f64>,
    pub failed: usize,
    pub requests: RequestCounts,
    pub latency_ms: Option<Latency>,
    pub phases: Phases,
    /// Times a backend went from open to closed after failed handshakes.
    pub closed: u64,
    /// Live hosts with a backend it closed.
    pub false_positives: usize,
    pub config: BaselineConfig,
}

/// What a paper run reports. Field names are the JSON keys.
#[derive(Clone, Debug, Serialize)]
pub struct PaperReport {
    pub seed: u64,
    pub nodes: usize,
    pub tasks: usize,
    pub crashed: usize,
    /// Backends on the crashed hosts.
    pub crashed_backends: usize,
    /// Destinations in the testing node's kernel when the test started.
    pub backends_at_start: usize,
    pub testing_node: String,
    pub clients_everywhere: bool,
    /// `None` when some survivor never saw every crashed host unreachable.
    pub detection_ms: Option<Summary>,
    /// Over the surviving hosts: crash → the moment the host's kernel held no destination
    /// of positive weight on a crashed host (`null`: no crash, or some survivor never got
    /// there within the run; see the reason).
    pub kernel_repair_ms: Option<Summary>,
    pub kernel_repair_reason: Option<String>,
    /// Survivors over which `kernel_repair_ms` is taken.
    pub survivors: usize,
    /// The testing node's own kernel repair.
    pub testing_node_kernel_repair_ms: Option<f64>,
    /// Crash → send time of the last request that failed on a dead backend (`null`: none
    /// did).
    pub repair_ms: Option<f64>,
    pub requests: RequestCounts,
    pub latency_ms: Option<Latency>,
    pub phases: Phases,
    /// Live hosts whose backends were withdrawn from some live host's kernel during the
    /// test.
    pub false_positives: usize,
    pub false_positive_hosts: Vec<FalsePositiveHost>,
    /// The same during the warm-up, while the cluster boots (see [`BootWithdrawals`]).
    pub boot_withdrawals: BootWithdrawals,
    pub baseline: BaselineReport,
    pub clients: ClientConfig,
    /// Kernels that differed from Mesos once quiet, and late changes (see `world`).
    pub violations: usize,
    pub trace_hash: String,
    pub wall_ms: f64,
}

/// Per-bucket figures of one group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BucketStats {
    pub requests: usize,
    pub failures: usize,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// One 100 ms bucket of test time, by send time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub t_ms: f64,
    pub minuteman: BucketStats,
    pub baseline: BucketStats,
}

/// The run's timeline, per 100 ms of test time.
#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    pub crash_ms: f64,
    pub buckets: Vec<Bucket>,
}

/// A finished run: the report, the timeline and the requests of both groups.
pub struct PaperOutcome {
    pub report: PaperReport,
    pub timeline: Timeline,
    /// Every request of the minuteman groups, then of the baseline groups, in test time.
    pub minuteman: Vec<Request>,
    pub baseline: Vec<Request>,
}

impl PaperRun {
    pub fn cluster_config(&self) -> ClusterConfig {
        ClusterConfig::evaluation(self.nodes, self.loss, &self.conditions)
    }

    /// The command line that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p minuteman-sim -- paper --seed {} --nodes {} --tasks {} \
             --crash-fraction {} --crash-at {}ms --duration {}ms --timeout {}ms --loss {}{}{}",
            self.seed,
            self.nodes,
            self.tasks,
            self.crash_fraction,
            self.crash_at.as_millis(),
            self.duration.as_millis(),
            self.clients.timeout.as_millis(),
            self.loss,
            if self.clients_everywhere {
                " --clients-everywhere"
            } else {
                ""
            },
            self.conditions.replay_args()
        )
    }

    /// Runs the evaluation.
    pub fn run(&self) -> PaperOutcome {
        self.run_with(None)
    }

    /// [`PaperRun::run`], reporting progress while it runs (the same run).
    pub fn run_with(&self, progress: Option<Progress>) -> PaperOutcome {
        let wall = Instant::now();
        let mut sim = Simulation::new(self.cluster_config(), self.seed);
        sim.attach_world(WorldConfig {
            vips: 1,
            tasks: self.tasks,
            churn_per_s: 0.0,
            ..WorldConfig::default()
        });
        let world = sim.world.as_ref().expect("attached");
        let service = service_of(&world.catalogue[0].vip, &NameTable::default())
            .expect("the paper's VIP is an IP VIP");

        let start = Time::from_duration(self.warmup);
        let crash_time = start + self.crash_at;
        let stop = start + self.duration;
        let crash_count = (self.nodes as f64 * self.crash_fraction).round() as usize;
        let victims = if self.crash_at < self.duration {
            sim.sample_nodes_except(crash_count, &[TESTING_NODE])
        } else {
            Vec::new()
        };
        let mut crash_at = vec![None; self.nodes];
        for &v in &victims {
            crash_at[v] = Some(crash_time);
            sim.plan_crash(v, crash_time);
        }
        let crashed_backends = victims
            .iter()
            .map(|&v| sim.world.as_ref().expect("attached").agents[v].tasks.len())
            .sum();

        let hosts: Vec<usize> = if self.clients_everywhere {
            (0..self.nodes).collect()
        } else {
            vec![TESTING_NODE]
        };
        let mut master_rng = ChaCha8Rng::seed_from_u64(self.seed);
        master_rng.set_stream(MASTER_STREAM);
        let setup = BaselineSetup {
            cfg: self.baseline.clone(),
            master_drops_at: master_drops_at(&crash_at, &self.baseline, &mut master_rng),
        };
        let groups = hosts
            .iter()
            .map(|&h| (h, None))
            .chain(hosts.iter().map(|&h| (h, Some(&setup))));
        let mut clients = Clients::new(self.clients.clone(), self.seed, start, stop, groups);

        // Run until every request sent before `stop` is answered or given up.
        let end = stop + self.clients.timeout;
        if let Some(mut progress) = progress {
            progress.set_horizon(end);
            sim.set_progress(progress);
        }
        let mut crashed = victims.is_empty();
        let mut next_check = Time::ZERO + self.check_every;
        let mut unfiltered = (u64::MAX, KernelState::default());
        let mut backends_at_start = None;
        loop {
            let mut t = clients.next_at().unwrap_or(end).min(next_check).min(end);
            if !crashed {
                t = t.min(crash_time);
            }
            sim.run_until(t);
            if !crashed && t == crash_time {
                sim.crash_batch(&victims);
                crashed = true;
            }
            let world = sim.world.as_mut().expect("attached");
            if t == next_check {
                world.check(t);
                next_check = t + self.check_every;
            }
            if backends_at_start.is_none() && t >= start {
                backends_at_start = Some(
                    world.kernels[TESTING_NODE]
                        .services
                        .get(&service)
                        .map_or(0, |d| d.len()),
                );
            }
            if unfiltered.0 != world.published_version {
                unfiltered = (world.published_version, world.unfiltered_kernel());
            }
            let env = Env {
                network: &sim.network,
                crash_at: &crash_at,
            };
            let world = &*world;
            let table = |g: usize| {
                if g < hosts.len() {
                    let h = hosts[g];
                    Table {
                        version: world.kernel_versions[h],
                        destinations: world.kernels[h].services.get(&service).map(|d| &**d),
                    }
                } else {
                    Table {
                        version: unfiltered.0,
                        destinations: unfiltered.1.services.get(&service).map(|d| &**d),
                    }
                }
            };
            while clients.step(t, &env, table) {}
            if t >= end {
                break;
            }
        }
        sim.finish_progress();
        for g in &clients.groups {
            if let Err(e) = g.balancer().check_invariants() {
                panic!("balancer of host {}: {e}", g.host);
            }
        }

        let split = hosts.len();
        let collect = |range: std::ops::Range<usize>| -> Vec<Request> {
            let mut all: Vec<Request> = clients.groups[range]
                .iter()
                .flat_map(|g| g.requests.iter().cloned())
                .map(|mut r| {
                    r.sent = Time::ZERO + (r.sent - start);
                    r.done = Time::ZERO + (r.done - start);
                    r
                })
                .collect();
            all.sort_by_key(|r| (r.sent, r.thread));
            all
        };
        let minuteman = collect(0..split);
        let baseline = collect(split..clients.groups.len());
        let crash = Time::from_duration(self.crash_at);
        let to_dead = |r: &Request| {
            r.sent >= crash
                && r.dest
                    .and_then(|d| node_index(d.ip(), self.nodes))
                    .is_some_and(|h| crash_at[h].is_some())
        };
        let mut ours = GroupFigures::of(&minuteman, crash, to_dead);
        let mut theirs = GroupFigures::of(&baseline, crash, to_dead);
        let abandoned =
            |groups: &[crate::clients::ClientGroup]| groups.iter().map(|g| g.abandoned).sum();
        ours.requests.abandoned = abandoned(&clients.groups[..split]);
        theirs.requests.abandoned = abandoned(&clients.groups[split..]);

        let mut trace = Xxh3::new();
        trace.update(&sim.trace_hash().to_le_bytes());
        for r in minuteman.iter().chain(&baseline) {
            hash_request(&mut trace, r);
        }
        let times = sim.detection_times();
        let detected: Vec<Duration> = times.iter().filter_map(|(_, t)| *t).collect();
        let detection_ms = if !victims.is_empty() && detected.len() == times.len() {
            Summary::of(&detected)
        } else {
            None
        };
        let world = sim.world.as_ref().expect("attached");
        let ms = |d: Duration| d.as_secs_f64() * 1e3;

        // Minuteman: every survivor's kernel.
        let survivors: Vec<usize> = (0..self.nodes).filter(|&h| crash_at[h].is_none()).collect();
        let repaired: Vec<Duration> = survivors
            .iter()
            .filter_map(|&h| world.dead_free_since[h].map(|t| t.max(crash_time) - crash_time))
            .collect();
        let (kernel_repair_ms, kernel_repair_reason) = if victims.is_empty() {
            (None, Some("no host crashed".to_string()))
        } else if repaired.len() < survivors.len() {
            let reason = format!(
                "{} of {} survivors still held a destination on a crashed host when the run ended at {:.0} s",
                survivors.len() - repaired.len(),
                survivors.len(),
                self.duration.as_secs_f64()
            );
            (None, Some(reason))
        } else {
            (Summary::of(&repaired), None)
        };
        let testing_node_kernel_repair_ms = world.dead_free_since[TESTING_NODE]
            .filter(|_| !victims.is_empty())
            .map(|t| ms(t.max(crash_time) - crash_time));

        // False positives: live hosts whose backends left a live kernel during the test.
        let (during_boot, during_test): (Vec<&Withdrawal>, Vec<&Withdrawal>) =
            world.withdrawals.iter().partition(|w| w.at < start);
        let boot_withdrawals = BootWithdrawals {
            hosts: during_boot
                .iter()
                .map(|w| w.host)
                .collect::<BTreeSet<_>>()
                .len(),
            withdrawals: during_boot.len(),
            last_ms: during_boot
                .iter()
                .map(|w| w.at.as_millis_f64() - start.as_millis_f64())
                .reduce(f64::max),
        };
        let mut by_host: BTreeMap<usize, (Time, BTreeSet<usize>, usize)> = BTreeMap::new();
        for w in during_test {
            let e = by_host.entry(w.host).or_insert((w.at, BTreeSet::new(), 0));
            e.1.insert(w.kernel);
            e.2 += 1;
        }
        let false_positive_hosts: Vec<FalsePositiveHost> = by_host
            .iter()
            .map(|(&h, (first, kernels, count))| FalsePositiveHost {
                host: node_addr(h).ip().to_string(),
                first_ms: first.as_millis_f64() - start.as_millis_f64(),
                kernels: kernels.len(),
                withdrawals: *count,
            })
            .collect();

        // The baseline: its last request to a dead backend, and whether it had stopped.
        let baseline_hosts = &clients.groups[split..];
        let list_repair: Vec<Duration> = baseline_hosts
            .iter()
            .filter(|g| crash_at[g.host].is_none())
            .filter_map(|g| g.baseline.as_ref())
            .flat_map(|b| victims.iter().filter_map(move |&v| b.list_drops_at(v)))
            .map(|t| t - crash_time)
            .collect();
        let list_repair_ms =
            list_repair
                .iter()
                .min()
                .zip(list_repair.iter().max())
                .map(|(&min, &max)| Span {
                    min: ms(min),
                    max: ms(max),
                });
        let last_dead = baseline.iter().filter(|r| to_dead(r)).map(|r| r.sent).max();
        let still_listed = list_repair.iter().any(|&d| crash_time + d > stop);
        let test_end = Time::from_duration(self.duration);
        let (baseline_kernel_repair_ms, baseline_kernel_repair_reason) = if victims.is_empty() {
            (None, Some("no host crashed".to_string()))
        } else if still_listed {
            let last = last_dead.map_or("none was sent after the crash".to_string(), |t| {
                format!("the last was sent at {:.1} s", t.as_millis_f64() / 1e3)
            });
            let span = list_repair_ms.expect("some host lists them");
            let reason = format!(
                "still sending to dead backends when the run ended at {:.0} s ({last}): they \
                 stay in its list until Mesos drops their agents, {:.1}-{:.1} s after the crash",
                self.duration.as_secs_f64(),
                span.min / 1e3,
                span.max / 1e3
            );
            (None, Some(reason))
        } else if last_dead.is_some_and(|t| t + STILL_SENDING > test_end) {
            let reason = format!(
                "its last request to a dead backend was sent at {:.1} s, within {} s of the end of the run",
                last_dead.expect("checked").as_millis_f64() / 1e3,
                STILL_SENDING.as_secs()
            );
            (None, Some(reason))
        } else {
            (
                Some(last_dead.map_or(0.0, |t| ms(t.max(crash) - crash))),
                None,
            )
        };
        let baseline_false_positives = baseline_hosts
            .iter()
            .filter_map(|g| g.baseline.as_ref())
            .flat_map(|b| b.ever_closed_hosts())
            .filter(|&h| crash_at.get(h).is_some_and(|c| c.is_none()))
            .collect::<BTreeSet<usize>>()
            .len();
        let closed = baseline_hosts
            .iter()
            .filter_map(|g| g.baseline.as_ref())
            .map(|b| b.closed_count)
            .sum();

        let timeline = Timeline::of(&minuteman, &baseline, self.duration, crash.as_millis_f64());
        let report = PaperReport {
            seed: self.seed,
            nodes: self.nodes,
            tasks: self.tasks,
            crashed: victims.len(),
            crashed_backends,
            backends_at_start: backends_at_start.unwrap_or(0),
            testing_node: node_addr(TESTING_NODE).ip().to_string(),
            clients_everywhere: self.clients_everywhere,
            detection_ms,
            kernel_repair_ms,
            kernel_repair_reason,
            survivors: survivors.len(),
            testing_node_kernel_repair_ms,
            repair_ms: ours.repair_ms,
            requests: ours.requests,
            latency_ms: ours.latency,
            phases: ours.phases,
            false_positives: false_positive_hosts.len(),
            false_positive_hosts,
            boot_withdrawals,
            baseline: BaselineReport {
                kernel_repair_ms: baseline_kernel_repair_ms,
                kernel_repair_reason: baseline_kernel_repair_reason,
                last_sent_to_dead_ms: last_dead.map(|t| t.as_millis_f64()),
                list_repair_ms,
                repair_ms: theirs.repair_ms,
                failed: theirs.requests.failed,
                requests: theirs.requests,
                latency_ms: theirs.latency,
                phases: theirs.phases,
                closed,
                false_positives: baseline_false_positives,
                config: self.baseline.clone(),
            },
            clients: self.clients.clone(),
            violations: world.violations.len(),
            trace_hash: format!("{:016x}", trace.digest()),
            wall_ms: wall.elapsed().as_secs_f64() * 1e3,
        };
        PaperOutcome {
            report,
            timeline,
            minuteman,
            baseline,
        }
    }
}

fn hash_request(trace: &mut Xxh3, r: &Request) {
    trace.update(&r.sent.as_nanos().to_le_bytes());
    trace.update(&r.done.as_nanos().to_le_bytes());
    trace.update(&r.thread.to_le_bytes());
    trace.update(&[r.outcome as u8, r.syns as u8]);
    if let Some(d) = r.dest {
        trace.update(d.to_string().as_bytes());
    }
}

/// The figures of one group's requests (in test time; `crash` is the crash's test time).
struct GroupFigures {
    /// Crash → send time of the last request that failed on a dead backend.
    repair_ms: Option<f64>,
    requests: RequestCounts,
    latency: Option<Latency>,
    phases: Phases,
}

impl GroupFigures {
    fn of(requests: &[Request], crash: Time, to_dead: impl Fn(&Request) -> bool) -> GroupFigures {
        let last_dead = requests
            .iter()
            .filter(|r| r.outcome == Outcome::DeadBackend)
            .map(|r| r.sent)
            .max();
        let repaired_at = last_dead.map_or(crash, |t| t.max(crash));
        let repair_ms = last_dead.map(|_| (repaired_at - crash).as_secs_f64() * 1e3);
        let count = |o: Outcome| requests.iter().filter(|r| r.outcome == o).count();
        let counts = RequestCounts {
            total: requests.len(),
            failed: requests.iter().filter(|r| r.failed()).count(),
            failed_after_repair: requests
                .iter()
                .filter(|r| r.failed() && r.sent > repaired_at)
                .count(),
            sent_to_dead: requests.iter().filter(|r| to_dead(r)).count(),
            dead_backend: count(Outcome::DeadBackend),
            no_backend: count(Outcome::NoBackend),
            timed_out: count(Outcome::TimedOut),
            abandoned: 0,
        };
        let (before, after): (Vec<&Request>, Vec<&Request>) =
            requests.iter().partition(|r| r.sent < crash);
        GroupFigures {
            repair_ms,
            requests: counts,
            latency: latency_of(requests.iter()),
            phases: Phases {
                before_crash: Phase::of(&before),
                after_crash: Phase::of(&after),
            },
        }
    }
}

impl Phase {
    fn of(requests: &[&Request]) -> Phase {
        Phase {
            requests: requests.len(),
            failed: requests.iter().filter(|r| r.failed()).count(),
            latency_ms: latency_of(requests.iter().copied()),
        }
    }
}

fn latency_of<'a>(requests: impl Iterator<Item = &'a Request>) -> Option<Latency> {
    let mut ms: Vec<f64> = requests.map(|r| r.latency().as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    Some(Latency {
        p50: percentile(&ms, 50.0)?,
        p99: percentile(&ms, 99.0)?,
    })
}

impl BucketStats {
    fn of(requests: &[&Request]) -> BucketStats {
        let latency = latency_of(requests.iter().copied());
        BucketStats {
            requests: requests.len(),
            failures: requests.iter().filter(|r| r.failed()).count(),
            latency_p50_ms: latency.map(|l| l.p50),
            latency_p99_ms: latency.map(|l| l.p99),
        }
    }
}

impl Timeline {
    /// Buckets `[0, duration)` of test time by send time.
    pub fn of(
        minuteman: &[Request],
        baseline: &[Request],
        duration: Duration,
        crash_ms: f64,
    ) -> Timeline {
        let count = duration.as_nanos().div_ceil(BUCKET.as_nanos()) as usize;
        fn split(requests: &[Request], count: usize) -> Vec<Vec<&Request>> {
            let mut by_bucket = vec![Vec::new(); count];
            for r in requests {
                let b = (r.sent.as_nanos() as u128 / BUCKET.as_nanos()) as usize;
                if let Some(slot) = by_bucket.get_mut(b) {
                    slot.push(r);
                }
            }
            by_bucket
        }
        let ours = split(minuteman, count);
        let theirs = split(baseline, count);
        let buckets = (0..count)
            .map(|b| Bucket {
                t_ms: (b as u128 * BUCKET.as_millis()) as f64,
                minuteman: BucketStats::of(&ours[b]),
                baseline: BucketStats::of(&theirs[b]),
            })
            .collect();
        Timeline { crash_ms, buckets }
    }

    /// The timeline as CSV, one row per bucket; an empty bucket has empty latencies.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "t_ms,requests,failures,latency_p50_ms,latency_p99_ms,\
             baseline_requests,baseline_failures,baseline_latency_p50_ms,baseline_latency_p99_ms\n",
        );
        let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
        for b in &self.buckets {
            out += &format!(
                "{},{},{},{},{},{},{},{},{}\n",
                b.t_ms,
                b.minuteman.requests,
                b.minuteman.failures,
                ms(b.minuteman.latency_p50_ms),
                ms(b.minuteman.latency_p99_ms),
                b.baseline.requests,
                b.baseline.failures,
                ms(b.baseline.latency_p50_ms),
                ms(b.baseline.latency_p99_ms),
            );
        }
        out
    }
}

/// The fields both sides of the table read, borrowed from either side of the report.
struct GroupView<'a> {
    repair_ms: Option<f64>,
    requests: &'a RequestCounts,
    phases: &'a Phases,
    false_positives: usize,
}

fn latency_cell(l: &Option<Latency>) -> String {
    l.map_or("-".to_string(), |l| {
        format!("{:.1} / {:.1} ms", l.p50, l.p99)
    })
}

/// Milliseconds below 10 s, seconds above.
fn duration_cell(ms: f64) -> String {
    if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

impl PaperReport {
    /// The human-readable report (the seed was printed first, by the caller).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out += &format!(
            "cluster          {} nodes, {} tasks behind one VIP, clients on {}\n",
            self.nodes,
            self.tasks,
            if self.clients_everywhere {
                "every node".to_string()
            } else {
                format!(
                    "the testing node {} ({} threads, one new connection per request, {:.0} req/s each)",
                    self.testing_node,
                    self.clients.threads,
                    1.0 / self.clients.interval.as_secs_f64()
                )
            }
        );
        out += &format!(
            "crash            {} nodes ({} backends) kernel-panic; testing node held {} backends at the start\n",
            self.crashed, self.crashed_backends, self.backends_at_start
        );
        out += &match &self.detection_ms {
            Some(d) => format!(
                "detection        p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (crash -> survivor sees every crashed node unreachable)\n",
                d.p50, d.p99, d.max
            ),
            None if self.crashed == 0 => "detection        no crash\n".to_string(),
            None => "detection        INCOMPLETE: some survivor never saw every crashed node unreachable\n".to_string(),
        };
        out += &match (&self.kernel_repair_ms, &self.kernel_repair_reason) {
            (Some(k), _) => format!(
                "kernel repair    p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} survivors (crash -> its kernel holds no destination on a crashed host); testing node {}\n",
                k.p50,
                k.p99,
                k.max,
                self.survivors,
                self.testing_node_kernel_repair_ms
                    .map_or("-".to_string(), |ms| format!("{ms:.1} ms"))
            ),
            (None, reason) => format!(
                "kernel repair    none: {}\n",
                reason.as_deref().unwrap_or("unknown")
            ),
        };
        let b = &self.baseline;
        out += &match (&b.kernel_repair_ms, &b.kernel_repair_reason) {
            (Some(ms), _) => format!(
                "baseline repair  {} (crash -> its last request to a dead backend)\n",
                duration_cell(*ms)
            ),
            (None, reason) => format!(
                "baseline repair  none: {}\n",
                reason.as_deref().unwrap_or("unknown")
            ),
        };
        out += &format!(
            "{:<24}{:>22}{:>30}\n",
            "", "minuteman", "baseline (pre-Lashup)"
        );
        let row = |name: &str, ours: String, theirs: String| {
            format!("{name:<24}{ours:>22}{theirs:>30}\n")
        };
        let (ours, theirs) = if self.crashed == 0 {
            ("no crash".to_string(), "no crash".to_string())
        } else {
            (
                self.kernel_repair_ms
                    .map_or("not within the run".to_string(), |k| {
                        format!("p99 {}", duration_cell(k.p99))
                    }),
                b.kernel_repair_ms
                    .map_or("not within the run".to_string(), duration_cell),
            )
        };
        out += &row("no request to dead by", ours, theirs);
        // The rows that read the same fields on both sides.
        type Cell = fn(&GroupView) -> String;
        let rows: [(&str, Cell); 10] = [
            ("last failed request", |g| {
                g.repair_ms.map_or("none failed".to_string(), duration_cell)
            }),
            ("sent to dead backends", |g| {
                g.requests.sent_to_dead.to_string()
            }),
            ("requests before crash", |g| {
                g.phases.before_crash.requests.to_string()
            }),
            ("failures before crash", |g| {
                g.phases.before_crash.failed.to_string()
            }),
            ("requests after crash", |g| {
                g.phases.after_crash.requests.to_string()
            }),
            ("failures after crash", |g| {
                g.phases.after_crash.failed.to_string()
            }),
            ("failed after last fail", |g| {
                g.requests.failed_after_repair.to_string()
            }),
            ("latency p50/p99 before", |g| {
                latency_cell(&g.phases.before_crash.latency_ms)
            }),
            ("latency p50/p99 after", |g| {
                latency_cell(&g.phases.after_crash.latency_ms)
            }),
            ("false positives", |g| g.false_positives.to_string()),
        ];
        let ours = GroupView {
            repair_ms: self.repair_ms,
            requests: &self.requests,
            phases: &self.phases,
            false_positives: self.false_positives,
        };
        let theirs = GroupView {
            repair_ms: b.repair_ms,
            requests: &b.requests,
            phases: &b.phases,
            false_positives: b.false_positives,
        };
        for (name, cell) in rows {
            out += &row(name, cell(&ours), cell(&theirs));
        }
        for fp in &self.false_positive_hosts {
            out += &format!(
                "false positive   {}: {} backends withdrawn from {} kernels, first at {:.0} ms\n",
                fp.host, fp.withdrawals, fp.kernels, fp.first_ms
            );
        }
        out += &format!(
            "clients          give up after {} ms; SYN retransmitted after {} ms, doubling\n",
            self.clients.timeout.as_millis(),
            self.clients.syn_rto.as_millis()
        );
        let c = &b.config;
        out += &format!(
            "baseline         DC/OS minuteman before Lashup: two random choices by connect-latency EWMA ({} s decay); \
             a backend closed after {} handshakes in a row unanswered within {} ms, until {} s after the last ({} times); \
             Mesos drops a dead agent after {} x {} s of pings, hosts poll it every {} s (+{} s cache)\n",
            c.ewma_decay.as_secs_f64(),
            c.failure_threshold,
            c.connect_threshold.as_millis(),
            c.failure_backoff.as_secs_f64(),
            b.closed,
            c.max_agent_ping_timeouts,
            c.agent_ping_timeout.as_secs_f64(),
            c.state_poll_interval.as_secs_f64(),
            c.state_cache.as_secs_f64()
        );
        out += &format!("violations       {}\n", self.violations);
        out += &format!("trace hash       {}\n", self.trace_hash);
        out += &format!("wall clock       {:.0} ms\n", self.wall_ms);
        out
    }
}
