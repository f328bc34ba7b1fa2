//! The service world around the simulated nodes: one Mesos agent and one kernel table per
//! host, task churn, and the checks that every kernel follows Mesos.
//!
//! What is measured, per task change in Mesos (start, kill, killing, health flip):
//! - propagation: change → the first moment every live node's kernel reflects it;
//! - after the poll: the origin node's poll that picked the change up → that moment.
//!
//! What is checked:
//! - *late*: a change not reflected everywhere within `poll_interval + deadline` is a
//!   violation (counted once);
//! - *quiet*: once nothing changed in Mesos for `poll_interval + settle` and no host
//!   crashed for `settle`, every live node's kernel must equal [`expected_kernel`] over the
//!   Mesos truth; each node that differs is a violation (once per quiet period).
//!
//! What is tracked for the paper evaluation:
//! - per node, since when its kernel has held no destination of positive weight on a
//!   crashed host ([`ServiceWorld::dead_free_since`]);
//! - *withdrawals*: a destination of positive weight taken out of a live node's kernel
//!   (removed, its service removed, or its weight set to 0) while its host is alive and
//!   Mesos still runs the task with positive weight behind that service: a false positive
//!   ([`ServiceWorld::withdrawals`]). A crashed host's backends leaving is not one. With
//!   task churn, a kernel applying an update older than a later change can count too.
//!
//! [`expected_kernel`] is written here from the rules in `docs/mesos-vips.md`, apart from
//! the core's desired-state code, so the check does not trust what it checks. Named VIP
//! addresses are the one shared piece ([`NameTable`]): the rule is the core's to define.
//!
//! Invariants: a change is tracked until it completes, is superseded by a newer change of
//! the same destination, or its host dies; every kernel only ever changes through
//! operations that apply cleanly (a failing operation is counted, never skipped);
//! `dead_free_since[n]` is `None` exactly while node `n`'s kernel holds a destination of
//! positive weight on a crashed host (checked after every change of that kernel and every
//! crash; after a boot, which carries no time, at the world's next poll or kernel change).

use crate::mesos_agent::{vip_catalogue, SimAgent, SimTask, TaskState, VipSpec};
use minuteman_core::kernel::{KernelState, Op, Service};
use minuteman_core::mesos;
use minuteman_core::named::NameTable;
use minuteman_core::tasks::TaskSet;
use minuteman_core::{Time, Vip, VipAddr, VipSet};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How the service world behaves.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub vips: usize,
    /// Tasks started before the run; churn keeps the count near it.
    pub tasks: usize,
    /// Task changes per second, cluster-wide (Poisson).
    pub churn_per_s: f64,
    /// How often each node polls its agent.
    pub poll_interval: Duration,
    /// A change not everywhere within `poll_interval + deadline` is a violation.
    pub deadline: Duration,
    /// Quiet time (beyond `poll_interval`) after which kernels must match exactly.
    pub settle: Duration,
    /// The names of the named VIPs, in catalogue order (the `svc-K` defaults past its end);
    /// e.g. names whose addresses collide.
    pub names: Vec<String>,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            vips: 100,
            tasks: 1000,
            churn_per_s: 5.0,
            poll_interval: Duration::from_secs(2),
            deadline: Duration::from_secs(1),
            settle: Duration::from_secs(1),
            names: Vec::new(),
        }
    }
}

/// A live host's backend taken out of a live node's kernel (a false positive).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Withdrawal {
    pub at: Time,
    /// The node whose kernel lost the destination.
    pub kernel: usize,
    /// The live host the destination is on.
    pub host: usize,
    pub dest: SocketAddr,
}

/// A convergence violation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub at_ms: f64,
    pub node: usize,
    pub what: String,
}

/// A task change in flight.
#[derive(Clone, Debug)]
struct Change {
    at: Time,
    agent: usize,
    vip: usize,
    dest: SocketAddr,
    /// The weight every kernel must show, `None`: absent.
    weight: Option<u32>,
    polled_at: Option<Time>,
    satisfied: Vec<bool>,
    late: bool,
}

/// Counters of the world.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorldCounters {
    pub changes: u64,
    pub completed: u64,
    pub superseded: u64,
    /// Changes that undid a change not yet spread (nothing left to propagate).
    pub reverted: u64,
    /// Changes whose host crashed before they were everywhere.
    pub lost_to_crash: u64,
    pub polls: u64,
    pub parse_errors: u64,
    /// Warnings the parser gave on the simulated documents (there should be none).
    pub parse_warnings: u64,
    pub record_errors: u64,
    pub kernel_ops: u64,
    pub kernel_errors: u64,
}

/// Agents, kernels, churn and checks.
pub struct ServiceWorld {
    pub cfg: WorldConfig,
    pub catalogue: Vec<VipSpec>,
    pub agents: Vec<SimAgent>,
    pub kernels: Vec<KernelState>,
    /// What each node last published (its last successful poll).
    last_polled: Vec<VipSet>,
    /// Hosts whose Mesos agent serves garbage now.
    garbage: Vec<bool>,
    alive: Vec<bool>,
    next_task: u64,
    pending: Vec<Change>,
    pub propagation: Vec<Duration>,
    pub after_poll: Vec<Duration>,
    pub violations: Vec<Violation>,
    pub counters: WorldCounters,
    last_change: Time,
    last_crash: Time,
    /// Nodes already reported in the current quiet period.
    quiet_reported: BTreeSet<usize>,
    /// Named VIP addresses of the current truth; `None` when it may have changed.
    names: Option<NameTable>,
    /// Bumped whenever some host's last published set changes.
    pub published_version: u64,
    /// Per node: bumped whenever its kernel table changes.
    pub kernel_versions: Vec<u64>,
    /// Per node: since when its kernel has held no destination of positive weight on a
    /// crashed host (`None`: it holds one now).
    pub dead_free_since: Vec<Option<Time>>,
    /// Every false positive, in time order.
    pub withdrawals: Vec<Withdrawal>,
    /// Lookup only: the host of each agent IP.
    host_by_ip: BTreeMap<IpAddr, usize>,
    /// The IPs of the crashed hosts (booted once, not alive now).
    dead_ips: BTreeSet<IpAddr>,
    /// A boot may have changed `dead_free_since` (refreshed at the next timed event).
    dead_free_stale: bool,
    /// Per `(host, task id)`: the first good poll of the host's agent that saw the task
    /// running and healthy since it last became so (its node published it then). A task's
    /// entry goes when the task changes in any way, and a host's with its restart.
    reported: BTreeMap<(usize, u64), Time>,
}

impl ServiceWorld {
    /// A world of `nodes` hosts (agent IPs `ips`) with `cfg.tasks` tasks spread at random.
    pub fn new(cfg: WorldConfig, ips: &[Ipv4Addr], rng: &mut ChaCha8Rng) -> ServiceWorld {
        let catalogue = vip_catalogue(cfg.vips.max(1), &cfg.names);
        let mut agents: Vec<SimAgent> = ips.iter().map(|ip| SimAgent::new(*ip)).collect();
        let mut next_task = 0;
        for t in 0..cfg.tasks {
            let agent = rng.random_range(0..agents.len());
            agents[agent].start(next_task, t % catalogue.len());
            next_task += 1;
        }
        let n = ips.len();
        ServiceWorld {
            cfg,
            catalogue,
            agents,
            kernels: vec![KernelState::default(); n],
            last_polled: vec![VipSet::new(); n],
            garbage: vec![false; n],
            alive: vec![false; n],
            next_task,
            pending: Vec::new(),
            propagation: Vec::new(),
            after_poll: Vec::new(),
            violations: Vec::new(),
            counters: WorldCounters::default(),
            last_change: Time::ZERO,
            last_crash: Time::ZERO,
            quiet_reported: BTreeSet::new(),
            names: None,
            published_version: 0,
            kernel_versions: vec![0; n],
            dead_free_since: vec![Some(Time::ZERO); n],
            withdrawals: Vec::new(),
            host_by_ip: ips
                .iter()
                .enumerate()
                .map(|(i, ip)| (IpAddr::V4(*ip), i))
                .collect(),
            dead_ips: BTreeSet::new(),
            dead_free_stale: false,
            reported: BTreeMap::new(),
        }
    }

    /// Host `i` booted: its kernel starts empty. A restarted host is no longer dead; the
    /// boot carries no time, so `dead_free_since` catches up at the world's next event.
    pub fn on_boot(&mut self, i: usize) {
        self.alive[i] = true;
        self.names = None;
        self.kernels[i] = KernelState::default();
        self.kernel_versions[i] += 1;
        self.last_polled[i] = VipSet::new();
        self.published_version += 1;
        let restarted = self.dead_ips.remove(&IpAddr::V4(self.agents[i].ip));
        if restarted || self.dead_free_since[i].is_none() {
            self.dead_free_stale = true;
        }
    }

    /// Host `i` kernel-panicked: its tasks die with it (its agent is frozen; a restart
    /// comes back with no tasks), and its changes in flight are dropped.
    pub fn on_crash(&mut self, now: Time, i: usize) {
        self.alive[i] = false;
        self.last_crash = now;
        self.names = None;
        self.dead_ips.insert(IpAddr::V4(self.agents[i].ip));
        self.dead_free_stale = false;
        self.refresh_dead_free_all(now);
        let before = self.pending.len();
        self.pending.retain(|c| c.agent != i);
        self.counters.lost_to_crash += (before - self.pending.len()) as u64;
        self.complete_ready(now);
    }

    /// Host `i` restarts with an empty agent.
    pub fn on_restart(&mut self, i: usize) {
        self.agents[i].tasks.clear();
        self.reported.retain(|&(host, _), _| host != i);
        self.names = None;
    }

    /// The `/state` document node `i` reads when it polls (garbage while
    /// [`ServiceWorld::set_garbage`] says so).
    pub fn agent_state(&self, i: usize) -> Vec<u8> {
        if self.garbage[i] {
            return b"{\"frameworks\": [{\"executors\": 17".to_vec();
        }
        self.agents[i].render_state(&self.catalogue)
    }

    /// Makes host `i`'s Mesos agent serve a broken document (`on`) or good ones again.
    pub fn set_garbage(&mut self, i: usize, on: bool) {
        self.garbage[i] = on;
    }

    /// Node `i` polled and published `set` at `now`.
    pub fn on_polled(&mut self, now: Time, i: usize, set: VipSet) {
        self.counters.polls += 1;
        if std::mem::take(&mut self.dead_free_stale) {
            self.refresh_dead_free_all(now);
        }
        if self.last_polled[i] != set {
            self.published_version += 1;
        }
        self.last_polled[i] = set;
        self.names = None;
        for change in &mut self.pending {
            if change.agent == i && change.polled_at.is_none() {
                change.polled_at = Some(now);
            }
        }
        for (&id, task) in &self.agents[i].tasks {
            if task.weight() > 0 {
                self.reported.entry((i, id)).or_insert(now);
            }
        }
    }

    /// Every running, healthy task of a live host that its node has published: `(host,
    /// task id, task, when the first good poll since it last became healthy saw it)`, in
    /// host and id order. A host whose agent serves garbage keeps its last good document's
    /// tasks (its node keeps publishing them), so its unchanged tasks stay here.
    pub fn reported_healthy(&self) -> impl Iterator<Item = (usize, u64, &SimTask, Time)> + '_ {
        self.reported.iter().filter_map(|(&(host, id), &at)| {
            let task = self.agents[host].tasks.get(&id)?;
            (self.alive[host] && task.weight() > 0).then_some((host, id, task, at))
        })
    }

    /// Node `i` emitted `ops`: apply them to its kernel and see which changes completed.
    pub fn on_kernel_ops(&mut self, now: Time, i: usize, ops: &[Op]) {
        self.counters.kernel_ops += ops.len() as u64;
        self.kernel_versions[i] += 1;
        if std::mem::take(&mut self.dead_free_stale) {
            self.refresh_dead_free_all(now);
        }
        for op in ops {
            if self.alive[i] {
                self.note_withdrawals(now, i, op);
            }
            if self.kernels[i].apply(op).is_err() {
                self.counters.kernel_errors += 1;
            }
        }
        self.refresh_dead_free(now, i);
        let names = self.names().clone();
        for change in &mut self.pending {
            if !change.satisfied[i] {
                change.satisfied[i] = reflects(
                    &self.kernels[i],
                    &self.catalogue[change.vip].vip,
                    change,
                    &names,
                );
            }
        }
        self.complete_ready(now);
    }

    /// Records the false positives `op` is about to make in node `i`'s kernel.
    fn note_withdrawals(&mut self, now: Time, i: usize, op: &Op) {
        let kernel = &self.kernels[i];
        let held = |service: &Service, dest: &SocketAddr| {
            kernel
                .services
                .get(service)
                .and_then(|d| d.get(dest))
                .is_some_and(|&w| w > 0)
        };
        let leaving: Vec<(Service, SocketAddr)> = match op {
            Op::RemoveDestination { service, dest }
            | Op::SetWeight {
                service,
                dest,
                weight: 0,
            } if held(service, dest) => vec![(*service, *dest)],
            Op::RemoveService(service) => kernel
                .services
                .get(service)
                .into_iter()
                .flat_map(|d| d.iter())
                .filter(|&(_, &w)| w > 0)
                .map(|(d, _)| (*service, *d))
                .collect(),
            _ => Vec::new(),
        };
        // Live hosts still running a task of positive weight on that port (the VIP is
        // checked below, with the names, only for those: most removals are of dead tasks).
        let live: Vec<(Service, SocketAddr, usize)> = leaving
            .into_iter()
            .filter_map(|(s, d)| {
                let host = *self.host_by_ip.get(&d.ip())?;
                let running = self.alive[host]
                    && self.agents[host]
                        .tasks
                        .values()
                        .any(|t| t.host_port == d.port() && t.weight() > 0);
                running.then_some((s, d, host))
            })
            .collect();
        if live.is_empty() {
            return;
        }
        self.names();
        let names = self.names.as_ref().expect("just computed");
        for (service, dest, host) in live {
            let running = self.agents[host].tasks.values().any(|t| {
                t.host_port == dest.port()
                    && t.weight() > 0
                    && service_of(&self.catalogue[t.vip].vip, names) == Some(service)
            });
            if running {
                self.withdrawals.push(Withdrawal {
                    at: now,
                    kernel: i,
                    host,
                    dest,
                });
            }
        }
    }

    /// Whether node `i`'s kernel holds a destination of positive weight on a crashed host.
    fn holds_dead(&self, i: usize) -> bool {
        !self.dead_ips.is_empty()
            && self.kernels[i]
                .services
                .values()
                .flat_map(|d| d.iter())
                .any(|(d, &w)| w > 0 && self.dead_ips.contains(&d.ip()))
    }

    fn refresh_dead_free(&mut self, now: Time, i: usize) {
        let holds = self.holds_dead(i);
        let slot = &mut self.dead_free_since[i];
        match (holds, *slot) {
            (true, _) => *slot = None,
            (false, None) => *slot = Some(now),
            (false, Some(_)) => {}
        }
    }

    fn refresh_dead_free_all(&mut self, now: Time) {
        for n in 0..self.kernels.len() {
            self.refresh_dead_free(now, n);
        }
    }

    /// Moves the changes every live node reflects into the statistics.
    fn complete_ready(&mut self, now: Time) {
        let alive = &self.alive;
        let mut done = Vec::new();
        self.pending.retain(|c| {
            let complete = (0..alive.len()).all(|n| !alive[n] || c.satisfied[n]);
            if complete {
                done.push((c.at, c.polled_at));
            }
            !complete
        });
        for (at, polled_at) in done {
            self.counters.completed += 1;
            self.propagation.push(now - at);
            self.after_poll.push(now - polled_at.unwrap_or(at));
        }
    }

    /// One random task change on a live host.
    pub fn churn(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        let live: Vec<usize> = (0..self.agents.len()).filter(|&i| self.alive[i]).collect();
        if live.is_empty() {
            return;
        }
        let tasks: Vec<(usize, u64)> = live
            .iter()
            .flat_map(|&a| self.agents[a].tasks.keys().map(move |&t| (a, t)))
            .collect();
        let target = self.cfg.tasks;
        let roll: f64 = rng.random();
        let kind = if tasks.is_empty() || tasks.len() * 10 < target * 9 {
            0.0
        } else if tasks.len() * 10 > target * 11 {
            0.5
        } else {
            roll
        };
        if kind < 0.3 {
            let agent = live[rng.random_range(0..live.len())];
            let vip = rng.random_range(0..self.catalogue.len());
            let id = self.next_task;
            self.next_task += 1;
            let port = self.agents[agent].start(id, vip);
            self.record_change(now, agent, vip, port, Some(1));
            return;
        }
        let (agent, id) = tasks[rng.random_range(0..tasks.len())];
        // Whatever the change, the task is reported anew by the next good poll.
        self.reported.remove(&(agent, id));
        let task = self.agents[agent].tasks[&id].clone();
        let weight = if kind < 0.6 {
            self.agents[agent].tasks.remove(&id);
            None
        } else if kind < 0.8 {
            self.set_state(agent, id, TaskState::Killing);
            Some(0)
        } else {
            let state = match task.state {
                TaskState::Running { healthy } => TaskState::Running { healthy: !healthy },
                TaskState::Killing => TaskState::Killing,
            };
            self.set_state(agent, id, state);
            Some(self.agents[agent].tasks[&id].weight())
        };
        if weight != Some(task.weight()) {
            self.record_change(now, agent, task.vip, task.host_port, weight);
        }
    }

    fn set_state(&mut self, agent: usize, id: u64, state: TaskState) {
        if let Some(task) = self.agents[agent].tasks.get_mut(&id) {
            task.state = state;
        }
    }

    fn record_change(
        &mut self,
        now: Time,
        agent: usize,
        vip: usize,
        port: u16,
        weight: Option<u32>,
    ) {
        let dest = SocketAddr::new(IpAddr::V4(self.agents[agent].ip), port);
        let before = self.pending.len();
        self.pending.retain(|c| c.dest != dest);
        self.counters.superseded += (before - self.pending.len()) as u64;
        self.counters.changes += 1;
        self.last_change = now;
        self.quiet_reported.clear();
        self.names = None;
        let mut change = Change {
            at: now,
            agent,
            vip,
            dest,
            weight,
            polled_at: None,
            satisfied: vec![false; self.agents.len()],
            late: false,
        };
        // A kernel can already show the new value (a health flip undone before it spread).
        let names = self.names().clone();
        let spec = &self.catalogue[vip].vip;
        for n in 0..self.kernels.len() {
            change.satisfied[n] =
                self.alive[n] && reflects(&self.kernels[n], spec, &change, &names);
        }
        if (0..self.kernels.len()).all(|n| !self.alive[n] || change.satisfied[n]) {
            self.counters.reverted += 1;
        } else {
            self.pending.push(change);
        }
    }

    /// The periodic checks (late changes; exact kernels once quiet).
    pub fn check(&mut self, now: Time) {
        let limit = self.cfg.poll_interval + self.cfg.deadline;
        for change in &mut self.pending {
            if !change.late && now - change.at > limit {
                change.late = true;
                let node = (0..change.satisfied.len())
                    .find(|&n| self.alive[n] && !change.satisfied[n])
                    .unwrap_or(change.agent);
                self.violations.push(Violation {
                    at_ms: now.as_millis_f64(),
                    node,
                    what: format!(
                        "change of {} on {} (weight {:?}) not everywhere after {} ms",
                        self.catalogue[change.vip].label,
                        change.dest,
                        change.weight,
                        (now - change.at).as_millis()
                    ),
                });
            }
        }
        if !self.is_quiet(now) {
            return;
        }
        let expected = self.expected();
        for n in 0..self.kernels.len() {
            if self.alive[n] && self.kernels[n] != expected && self.quiet_reported.insert(n) {
                self.violations.push(Violation {
                    at_ms: now.as_millis_f64(),
                    node: n,
                    what: describe_difference(&self.kernels[n], &expected),
                });
            }
        }
    }

    /// Whether Mesos and the hosts have been still long enough for kernels to be exact.
    pub fn is_quiet(&self, now: Time) -> bool {
        now - self.last_change >= self.cfg.poll_interval + self.cfg.settle
            && now - self.last_crash >= self.cfg.settle
    }

    /// Changes still in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// What every live kernel must hold: from the live hosts' tasks, and for VIPs whose
    /// every backend is on dead hosts, those backends (as last published).
    pub fn expected(&self) -> KernelState {
        let live: Vec<VipSet> = (0..self.agents.len())
            .filter(|&i| self.alive[i])
            .map(|i| self.agents[i].truth(&self.catalogue))
            .collect();
        let dead: Vec<&VipSet> = (0..self.agents.len())
            .filter(|&i| !self.alive[i])
            .map(|i| &self.last_polled[i])
            .collect();
        expected_kernel(&live, &dead)
    }

    /// The kernel a node would hold if every record counted, reachable or not: every
    /// host's last published backends, dead hosts' included. This is the table of a host
    /// without membership (the paper's baseline), by the same documented rules.
    pub fn unfiltered_kernel(&self) -> KernelState {
        expected_kernel(&self.last_polled, &[])
    }

    fn names(&mut self) -> &NameTable {
        if self.names.is_none() {
            self.names = Some(self.compute_names());
        }
        self.names.get_or_insert_with(NameTable::default)
    }

    fn compute_names(&self) -> NameTable {
        let mut names = BTreeSet::new();
        for (i, agent) in self.agents.iter().enumerate() {
            if self.alive[i] {
                for task in agent.tasks.values() {
                    if let VipAddr::Named(n) = &self.catalogue[task.vip].vip.addr {
                        names.insert(n.as_str());
                    }
                }
            } else {
                names.extend(
                    self.last_polled[i]
                        .vips
                        .keys()
                        .filter_map(|v| match &v.addr {
                            VipAddr::Named(n) => Some(n.as_str()),
                            VipAddr::Ip(_) => None,
                        }),
                );
            }
        }
        // The simulated literals are in 10.200.0.0/16: nothing is reserved.
        NameTable::assign(names, &BTreeSet::new(), &BTreeSet::new())
    }
}

/// What a node extracts from its agent's `/state` document, through the core's parser.
/// Warnings (malformed labels) are returned with the set: the simulated tasks have none.
pub fn parse_agent_state(doc: &[u8]) -> Result<(VipSet, TaskSet, usize), String> {
    let extracted = mesos::parse_and_extract(doc, &mesos::ExtractOptions::default())
        .map_err(|e| e.to_string())?;
    Ok((extracted.vips, extracted.tasks, extracted.warnings.len()))
}

/// Whether `kernel` shows `change`'s destination with its weight (or without it).
fn reflects(kernel: &KernelState, vip: &Vip, change: &Change, names: &NameTable) -> bool {
    let shown = service_of(vip, names)
        .and_then(|s| kernel.services.get(&s))
        .and_then(|d| d.get(&change.dest))
        .copied();
    shown == change.weight
}

/// The kernel service of a VIP whose backends are IPv4 (all simulated tasks are).
pub fn service_of(vip: &Vip, names: &NameTable) -> Option<Service> {
    let ip = match &vip.addr {
        VipAddr::Ip(ip) => *ip,
        VipAddr::Named(name) => IpAddr::V4(names.v4(name)?),
    };
    Some(Service {
        protocol: vip.protocol,
        addr: SocketAddr::new(ip, vip.port),
    })
}

/// The documented rules, applied from scratch: live hosts' backends; a VIP with none of
/// those keeps the dead hosts' backends; IPv4 only (the simulated tasks' family); a
/// destination reported twice keeps its highest weight.
pub fn expected_kernel(live: &[VipSet], dead: &[&VipSet]) -> KernelState {
    let mut live_backends: BTreeMap<&Vip, BTreeMap<SocketAddr, u32>> = BTreeMap::new();
    let mut dead_backends: BTreeMap<&Vip, BTreeMap<SocketAddr, u32>> = BTreeMap::new();
    let sources = live
        .iter()
        .map(|s| (s, true))
        .chain(dead.iter().map(|s| (*s, false)));
    for (set, is_live) in sources {
        for (vip, backends) in &set.vips {
            let into = if is_live {
                &mut live_backends
            } else {
                &mut dead_backends
            };
            let dests = into.entry(vip).or_default();
            for b in backends {
                let w = dests
                    .entry(SocketAddr::new(b.ip, b.port))
                    .or_insert(b.weight);
                *w = (*w).max(b.weight);
            }
        }
    }
    let mut names = BTreeSet::new();
    for vip in live_backends.keys().chain(dead_backends.keys()) {
        if let VipAddr::Named(n) = &vip.addr {
            names.insert(n.as_str());
        }
    }
    let names = NameTable::assign(names, &BTreeSet::new(), &BTreeSet::new());
    let mut state = KernelState::default();
    for (vip, dests) in dead_backends {
        if !live_backends.contains_key(vip) {
            live_backends.insert(vip, dests);
        }
    }
    for (vip, dests) in live_backends {
        if let Some(service) = service_of(vip, &names) {
            state.services.insert(service, std::sync::Arc::new(dests));
        }
    }
    state
}

/// A short account of how `actual` differs from `expected`.
pub fn describe_difference(actual: &KernelState, expected: &KernelState) -> String {
    let all: BTreeSet<&Service> = actual
        .services
        .keys()
        .chain(expected.services.keys())
        .collect();
    let differing: Vec<String> = all
        .into_iter()
        .filter(|s| actual.services.get(s) != expected.services.get(s))
        .take(3)
        .map(|s| {
            format!(
                "{} {}: has {:?}, expected {:?}",
                s.protocol,
                s.addr,
                actual.services.get(s).map(|d| d.len()),
                expected.services.get(s).map(|d| d.len())
            )
        })
        .collect();
    format!("kernel differs from Mesos: {}", differing.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Three hosts with tasks behind one IP VIP; every host booted.
    fn world() -> (ServiceWorld, Service) {
        let cfg = WorldConfig {
            vips: 1,
            tasks: 30,
            churn_per_s: 0.0,
            ..WorldConfig::default()
        };
        let ips: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let mut w = ServiceWorld::new(cfg, &ips, &mut ChaCha8Rng::seed_from_u64(1));
        for i in 0..3 {
            w.on_boot(i);
            assert!(!w.agents[i].tasks.is_empty(), "host {i} has tasks");
        }
        let service = service_of(&w.catalogue[0].vip, &NameTable::default()).unwrap();
        (w, service)
    }

    fn dests(w: &ServiceWorld, host: usize) -> Vec<SocketAddr> {
        let ip = IpAddr::V4(w.agents[host].ip);
        w.agents[host]
            .tasks
            .values()
            .map(|t| SocketAddr::new(ip, t.host_port))
            .collect()
    }

    fn add_all(w: &mut ServiceWorld, node: usize, service: Service) {
        let mut ops = vec![Op::AddService(service)];
        for h in 0..3 {
            for dest in dests(w, h) {
                ops.push(Op::AddDestination {
                    service,
                    dest,
                    weight: 1,
                });
            }
        }
        w.on_kernel_ops(Time::from_millis(1), node, &ops);
    }

    #[test]
    fn a_kernel_is_dead_free_from_the_change_that_drops_the_last_dead_destination() {
        let (mut w, service) = world();
        add_all(&mut w, 0, service);
        assert_eq!(
            w.dead_free_since[0],
            Some(Time::ZERO),
            "nothing is dead yet"
        );
        w.on_crash(Time::from_millis(100), 2);
        assert_eq!(w.dead_free_since[0], None);
        assert_eq!(
            w.dead_free_since[1],
            Some(Time::ZERO),
            "an empty kernel holds none"
        );
        let dead = dests(&w, 2);
        let (last, first) = dead.split_last().unwrap();
        let remove = |d: &SocketAddr| Op::RemoveDestination { service, dest: *d };
        let ops: Vec<Op> = first.iter().map(remove).collect();
        w.on_kernel_ops(Time::from_millis(200), 0, &ops);
        assert_eq!(w.dead_free_since[0], None, "one is left");
        w.on_kernel_ops(Time::from_millis(300), 0, &[remove(last)]);
        assert_eq!(w.dead_free_since[0], Some(Time::from_millis(300)));
        assert!(
            w.withdrawals.is_empty(),
            "a dead host's backends leaving is right"
        );
    }

    #[test]
    fn a_weight_zero_destination_does_not_count_as_held() {
        let (mut w, service) = world();
        add_all(&mut w, 0, service);
        w.on_crash(Time::from_millis(100), 2);
        let ops: Vec<Op> = dests(&w, 2)
            .into_iter()
            .map(|dest| Op::SetWeight {
                service,
                dest,
                weight: 0,
            })
            .collect();
        w.on_kernel_ops(Time::from_millis(150), 0, &ops);
        assert_eq!(w.dead_free_since[0], Some(Time::from_millis(150)));
    }

    #[test]
    fn a_live_hosts_backend_leaving_a_live_kernel_is_a_false_positive() {
        let (mut w, service) = world();
        add_all(&mut w, 0, service);
        add_all(&mut w, 1, service);
        let live = dests(&w, 1);
        w.on_kernel_ops(
            Time::from_millis(10),
            0,
            &[Op::RemoveDestination {
                service,
                dest: live[0],
            }],
        );
        assert_eq!(
            w.withdrawals,
            [Withdrawal {
                at: Time::from_millis(10),
                kernel: 0,
                host: 1,
                dest: live[0],
            }]
        );
        // Weight 0 withdraws too; removing the whole service withdraws every live backend
        // it still held with positive weight.
        w.on_kernel_ops(
            Time::from_millis(20),
            1,
            &[Op::SetWeight {
                service,
                dest: live[0],
                weight: 0,
            }],
        );
        assert_eq!(w.withdrawals.len(), 2);
        w.on_crash(Time::from_millis(30), 2);
        w.on_kernel_ops(Time::from_millis(40), 1, &[Op::RemoveService(service)]);
        let live_held = dests(&w, 0).len() + live.len() - 1;
        assert_eq!(
            w.withdrawals.len(),
            2 + live_held,
            "host 2's are not counted"
        );
        assert!(w.withdrawals[2..]
            .iter()
            .all(|x| x.kernel == 1 && x.host != 2 && x.at == Time::from_millis(40)));
    }

    #[test]
    fn a_killed_task_leaving_is_not_a_false_positive() {
        let (mut w, service) = world();
        add_all(&mut w, 0, service);
        let dest = dests(&w, 1)[0];
        let id = *w.agents[1]
            .tasks
            .iter()
            .find(|(_, t)| t.host_port == dest.port())
            .unwrap()
            .0;
        w.agents[1].tasks.remove(&id);
        w.on_kernel_ops(
            Time::from_millis(10),
            0,
            &[Op::RemoveDestination { service, dest }],
        );
        assert!(w.withdrawals.is_empty());
    }
}
