//! The agent's own code under madsim: many `minuteman agent`s in one process, each on a
//! simulated host of its own, in simulated time. Built only with `--cfg madsim`
//! (`scripts/madsim-test`); a normal build compiles an empty crate.
//!
//! What runs is [`minuteman::agent::run_until`], the function `minuteman agent` runs: the
//! peer transport (madsim's TCP), the node pump, the Mesos poller, the state directory and
//! the DNS table, with the `none` data plane. Each host's Mesos agent is an
//! [`InjectedMesos`] serving the document a simulated Mesos agent
//! ([`minuteman_sim::mesos_agent::SimAgent`]) renders; the tests change its tasks (churn),
//! slow it down, make it serve garbage or go down. The HTTP API is not started (axum runs
//! on the real tokio's sockets); [`AgentHandle`] gives the same views.
//!
//! What madsim's network models: per-packet latency (1–10 ms), links and hosts clogged in
//! either direction (a clogged TCP stream stalls, nothing is lost or reordered; a connect
//! across a clogged link is refused at once). What it does not: a host that goes silent.
//! A connect to a killed agent's address is refused, as by a live kernel without a
//! listener, so a killed agent here is an agent crash on a host that stays up: its tasks
//! keep running and, by the documented rules, its backends stay in every table. Host
//! death, silence and the probes that tell it from a stall are the core simulator's part
//! (`minuteman-sim`, `sim-tests`).
//!
//! Invariants of the harness:
//! - Every decision comes from the seed: madsim's scheduler, latencies and random
//!   numbers, and the harness's own churn (a ChaCha generator seeded with the seed).
//! - Safety is checked every [`CHECK_EVERY`] while a test runs: every running agent
//!   answers within [`QUERY_TIMEOUT`], its core node's invariants hold (views, record
//!   store and output queue within their bounds), and its open connections stay within
//!   the transport's bounds.
//! - Convergence (after quiet): every running agent's committed kernel state equals the
//!   documented rules applied to the Mesos truth ([`expected_kernel`]); every running
//!   agent sees every other running, unfrozen agent as `reachable`, and every killed or
//!   frozen one (whose host is up) as `reachable` or `agent-stalled`, never written off.
//! - Each run has a thread of its own, so that thread-local state (random generators,
//!   hash keys) starts from madsim's seeded sources in every run.
//! - A failed check panics with the seed and the command that replays it.

#![cfg(madsim)]

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use minuteman::agent::api::Query;
use minuteman::agent::config::{AgentConfig, LogFormat, MesosOrigin};
use minuteman::agent::transport::TransportConfig;
use minuteman::agent::AgentHandle;
use minuteman::dataplane::ipvs::host::Masquerade;
use minuteman::dataplane::DataPlaneKind;
use minuteman::mesos_source::InjectedMesos;
use minuteman_core::auth::{ClusterKey, FrameAuth};
use minuteman_core::kernel::KernelState;
use minuteman_core::VipSet;
use minuteman_sim::mesos_agent::{vip_catalogue, SimAgent, VipSpec};
use minuteman_sim::world::{describe_difference, expected_kernel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The agents' peer port.
pub const PEER_PORT: u16 = 61420;
/// How long a running agent has to answer a question (the API's own bound).
pub const QUERY_TIMEOUT: Duration = minuteman::agent::api::ANSWER_TIMEOUT;
/// How often the safety checks run.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// The longest a test waits for convergence after quiet.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);

/// The command that replays `test` with `seed`.
pub fn replay(test: &str, seed: u64) -> String {
    format!("MINUTEMAN_MADSIM_SEED={seed} scripts/madsim-test {test}")
}

/// The seeds a test runs: `MINUTEMAN_MADSIM_SEED=S` alone when set, else `default`.
pub fn seeds(default: RangeInclusive<u64>) -> Vec<u64> {
    match std::env::var("MINUTEMAN_MADSIM_SEED") {
        Ok(s) => vec![s.trim().parse().expect("MINUTEMAN_MADSIM_SEED is a number")],
        Err(_) => default.collect(),
    }
}

/// The shape of a cluster.
#[derive(Clone, Debug)]
pub struct Options {
    pub hosts: usize,
    pub vips: usize,
    pub tasks_per_host: usize,
    pub mesos_poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            hosts: 10,
            vips: 8,
            tasks_per_host: 4,
            mesos_poll_interval: Duration::from_secs(1),
        }
    }
}

/// What a run observed, in order: equal for equal seeds (the determinism check).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub events: Vec<String>,
}

/// How a restarted agent finds its state directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateDir {
    Kept,
    Lost,
}

struct Host {
    node: NodeHandle,
    addr: SocketAddr,
    mesos: InjectedMesos,
    agent: SimAgent,
    /// The truth of the last good document served (garbage leaves it).
    served: VipSet,
    /// The agent process exists (not killed or stopped).
    running: bool,
    /// The agent's node is paused (frozen).
    paused: bool,
}

/// A cluster of agents on simulated hosts `10.0.0.1`, `10.0.0.2`, …
pub struct Cluster {
    test: &'static str,
    seed: u64,
    handle: Handle,
    net: Arc<NetSim>,
    hosts: Vec<Host>,
    /// The handle of each running agent, replaced when it restarts.
    agents: Arc<Mutex<BTreeMap<usize, AgentHandle>>>,
    catalogue: Vec<VipSpec>,
    rng: ChaCha8Rng,
    next_task: u64,
    state_root: PathBuf,
    clogged: BTreeSet<(usize, usize)>,
    started: Instant,
    trace: Trace,
}

/// Runs `scenario` on a fresh cluster in a madsim runtime seeded with `seed`; returns
/// what it observed. Any panic (a failed check, or an agent's) names the replay command.
pub fn simulate<F, Fut>(test: &'static str, seed: u64, opts: Options, scenario: F) -> Trace
where
    F: FnOnce(Cluster) -> Fut + Send + 'static,
    Fut: Future<Output = Cluster> + 'static,
{
    if std::env::var_os("RUST_LOG").is_some() {
        minuteman::agent::init_logging(LogFormat::Human);
    }
    let run = move || {
        let mut runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
        runtime.set_time_limit(Duration::from_secs(3600));
        catch_unwind(AssertUnwindSafe(|| {
            runtime.block_on(async move {
                let cluster = Cluster::start(test, seed, opts).await;
                scenario(cluster).await.finish()
            })
        }))
    };
    let outcome = std::thread::scope(|s| s.spawn(run).join().expect("the run's thread"));
    match outcome {
        Ok(trace) => trace,
        Err(panic) => {
            eprintln!(
                "madsim test {test} failed with seed {seed}; replay: {}",
                replay(test, seed)
            );
            resume_unwind(panic)
        }
    }
}

fn agent_config(
    addr: SocketAddr,
    contacts: Vec<SocketAddr>,
    mesos: InjectedMesos,
    state_dir: PathBuf,
    opts: &Options,
) -> AgentConfig {
    AgentConfig {
        listen: addr,
        contacts,
        agent_ip: addr.ip(),
        mesos: MesosOrigin::Injected(mesos),
        mesos_poll_interval: opts.mesos_poll_interval,
        mesos_timeout: Duration::from_secs(10),
        mesos_auth_token: None,
        mesos_ca_file: None,
        dataplane: DataPlaneKind::None,
        nft_table: "minuteman".into(),
        ipvs_interface: "minuteman0".into(),
        ipvs_masquerade: Masquerade::None,
        dns_listen: Vec::new(),
        dns_zone: minuteman::dns::table::DEFAULT_ZONE.into(),
        dns_tasks_zone: Some(minuteman::dns::table::DEFAULT_TASKS_ZONE.into()),
        dns_upstream: None,
        reconcile_interval: Duration::from_secs(60),
        gc_horizon: Duration::from_secs(600),
        broadcast: minuteman_core::Broadcast::Flood,
        // Not bound under madsim (see the module doc).
        api_listen: SocketAddr::new(addr.ip(), 61421),
        state_dir,
        auth: FrameAuth::Keys {
            current: ClusterKey::new([0x5a; 32]).expect("a 32-byte key"),
            previous: None,
        },
        log_format: LogFormat::Human,
    }
}

impl Cluster {
    async fn start(test: &'static str, seed: u64, opts: Options) -> Cluster {
        let handle = Handle::current();
        let net = NetSim::current();
        let catalogue = vip_catalogue(opts.vips, &[]);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let state_root = std::env::temp_dir().join(format!(
            "minuteman-madsim-{}-{test}-{seed}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&state_root);
        let agents: Arc<Mutex<BTreeMap<usize, AgentHandle>>> = Arc::default();
        let addr = |i: usize| {
            let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1);
            SocketAddr::new(ip.into(), PEER_PORT)
        };
        let mut next_task = 0;
        let mut hosts = Vec::new();
        for i in 0..opts.hosts {
            let mut agent = SimAgent::new(match addr(i).ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => unreachable!("IPv4 hosts"),
            });
            for _ in 0..opts.tasks_per_host {
                next_task += 1;
                agent.start(next_task, rng.random_range(0..opts.vips));
            }
            let mesos = InjectedMesos::new();
            mesos.serve(agent.render_state(&catalogue));
            // Three contacts, as a deployment would list a few well-known hosts.
            let contacts = (0..opts.hosts.min(4))
                .filter(|&j| j != i)
                .take(3)
                .map(addr)
                .collect();
            let cfg = agent_config(
                addr(i),
                contacts,
                mesos.clone(),
                state_root.join(format!("host{i}")),
                &opts,
            );
            let registry = agents.clone();
            let node = handle
                .create_node()
                .name(format!("host{i}"))
                .ip(addr(i).ip())
                .init(move || run_agent(i, cfg.clone(), registry.clone()))
                .build();
            hosts.push(Host {
                node,
                addr: addr(i),
                mesos,
                served: agent.truth(&catalogue),
                agent,
                running: true,
                paused: false,
            });
        }
        Cluster {
            test,
            seed,
            handle,
            net,
            hosts,
            agents,
            catalogue,
            rng,
            next_task,
            state_root,
            clogged: BTreeSet::new(),
            started: Instant::now(),
            trace: Trace::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Simulated time since the cluster started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "{what}\n(at {:.3} s simulated; seed {}; replay: {})",
            self.elapsed().as_secs_f64(),
            self.seed,
            replay(self.test, self.seed)
        )
    }

    fn note(&mut self, event: String) {
        let at = self.elapsed().as_micros();
        self.trace.events.push(format!("{at} us: {event}"));
    }

    fn agent(&self, i: usize) -> Option<AgentHandle> {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&i)
            .cloned()
    }

    /// Asks host `i`'s agent; `None` if it has no running agent yet. A running, unfrozen
    /// agent that does not answer in time fails the test.
    async fn ask<T>(&self, i: usize, query: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
        let agent = self.agent(i)?;
        let (tx, rx) = oneshot::channel();
        let asked = async {
            agent.queries.send(query(tx)).await.ok()?;
            rx.await.ok()
        };
        match tokio::time::timeout(QUERY_TIMEOUT, asked).await {
            Ok(answer) => answer,
            Err(_) => self.fail(format!(
                "host {i}'s agent did not answer within {QUERY_TIMEOUT:?}"
            )),
        }
    }

    fn checked(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.hosts.len()).filter(|&i| self.hosts[i].running && !self.hosts[i].paused)
    }

    /// The safety checks (see the module doc); fails the test on a violation.
    pub async fn check_safety(&self) {
        let transport = TransportConfig::default();
        let max_connections = (transport.max_inbound + transport.max_peers) as i64;
        for i in self.checked() {
            if let Some(Err(why)) = self.ask(i, Query::Invariants).await {
                self.fail(format!("host {i}'s node broke an invariant: {why}"));
            }
            if let Some(agent) = self.agent(i) {
                let open = agent.metrics.open_connections.get();
                if !(0..=max_connections).contains(&open) {
                    self.fail(format!(
                        "host {i} has {open} open connections (bound {max_connections})"
                    ));
                }
            }
        }
    }

    /// What every running agent's kernel should hold: the documented rules applied to
    /// every host's Mesos truth (a killed agent's host stays up; see the module doc).
    pub fn expected(&self) -> KernelState {
        let truth: Vec<VipSet> = self.hosts.iter().map(|h| h.served.clone()).collect();
        expected_kernel(&truth, &[])
    }

    /// Why the cluster has not converged, if it has not.
    pub async fn converged(&self) -> Result<(), String> {
        let expected = self.expected();
        if expected.services.is_empty() {
            return Err("nothing to compare: the Mesos truth has no VIP".into());
        }
        for i in self.checked() {
            let Some(agent) = self.agent(i) else {
                return Err(format!("host {i}'s agent has not started yet"));
            };
            let committed = agent.committed.borrow().clone();
            if *committed != expected {
                return Err(format!(
                    "host {i}: {}",
                    describe_difference(&committed, &expected)
                ));
            }
            let Some(members) = self.ask(i, Query::Members).await else {
                return Err(format!("host {i}'s agent has not started yet"));
            };
            let states: BTreeMap<SocketAddr, &str> = members
                .iter()
                .map(|m| {
                    let state = if m.is_self {
                        "reachable"
                    } else {
                        m.state.as_str()
                    };
                    (m.address, state)
                })
                .collect();
            for (j, host) in self.hosts.iter().enumerate() {
                let state = states.get(&host.addr).copied();
                let fine = if host.running && !host.paused {
                    state == Some("reachable")
                } else {
                    // The agent is gone or frozen, its host is up: never written off.
                    matches!(state, Some("reachable" | "agent-stalled"))
                };
                if !fine {
                    return Err(format!("host {i} sees host {j} as {state:?}"));
                }
            }
            if let Some(stranger) = states
                .keys()
                .find(|a| !self.hosts.iter().any(|h| h.addr == **a))
            {
                return Err(format!(
                    "host {i} knows a host that is not in the cluster: {stranger}"
                ));
            }
        }
        Ok(())
    }

    /// Runs the safety checks every [`CHECK_EVERY`] until the cluster converges; fails if
    /// it has not within [`CONVERGENCE_BOUND`]. Returns how long it took.
    pub async fn await_convergence(&mut self, label: &str) -> Duration {
        let since = Instant::now();
        loop {
            self.check_safety().await;
            let why = match self.converged().await {
                Ok(()) => {
                    let took = since.elapsed();
                    let frames = self.frames_sent();
                    self.note(format!(
                        "{label}: converged in {} us, {frames} frames sent so far",
                        took.as_micros()
                    ));
                    println!(
                        "seed {}: {label}: converged in {:.3} s",
                        self.seed,
                        took.as_secs_f64()
                    );
                    return took;
                }
                Err(why) => why,
            };
            if since.elapsed() > CONVERGENCE_BOUND {
                self.fail(format!(
                    "{label}: not converged within {CONVERGENCE_BOUND:?}: {why}"
                ));
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    /// Lets `duration` pass with the safety checks running.
    pub async fn run_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.check_safety().await;
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    /// Lets `duration` pass with `changes` Mesos changes spread over it, the safety
    /// checks running.
    pub async fn churn_for(&mut self, duration: Duration, changes: usize) {
        let step = duration / (changes.max(1) as u32);
        for _ in 0..changes {
            self.churn_once();
            self.run_for(step).await;
        }
    }

    /// One Mesos change on a random host whose agent runs and is not frozen (a change
    /// elsewhere could not reach the others before the agent is back): a task starts or
    /// stops.
    pub fn churn_once(&mut self) {
        let candidates: Vec<usize> = self.checked().collect();
        if candidates.is_empty() {
            return;
        }
        let i = candidates[self.rng.random_range(0..candidates.len())];
        let vips = self.catalogue.len();
        let host = &mut self.hosts[i];
        if host.agent.tasks.is_empty() || self.rng.random_bool(0.5) {
            self.next_task += 1;
            host.agent
                .start(self.next_task, self.rng.random_range(0..vips));
        } else {
            let ids: Vec<u64> = host.agent.tasks.keys().copied().collect();
            let id = ids[self.rng.random_range(0..ids.len())];
            host.agent.tasks.remove(&id);
        }
        self.serve_truth(i);
    }

    /// Host `i`'s Mesos agent serves its tasks as they are.
    pub fn serve_truth(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        host.mesos.serve(host.agent.render_state(&self.catalogue));
        host.served = host.agent.truth(&self.catalogue);
    }

    /// Host `i`'s Mesos agent answers garbage (the agent must keep its last good state).
    pub fn mesos_garbage(&mut self, i: usize) {
        self.note(format!("host {i}: Mesos serves garbage"));
        self.hosts[i]
            .mesos
            .serve(&b"{\"frameworks\": [{\"tasks\": 17"[..]);
    }

    /// Host `i`'s Mesos agent stops answering.
    pub fn mesos_down(&mut self, i: usize) {
        self.note(format!("host {i}: Mesos down"));
        self.hosts[i].mesos.go_down();
    }

    /// Every answer of host `i`'s Mesos agent takes `delay`.
    pub fn mesos_delay(&mut self, i: usize, delay: Duration) {
        self.note(format!("host {i}: Mesos answers in {delay:?}"));
        self.hosts[i].mesos.set_delay(delay);
    }

    /// Kills host `i`'s agent (a crash: no shutdown, nothing flushed).
    pub fn kill(&mut self, i: usize) {
        self.note(format!("host {i}: agent killed"));
        self.handle.kill(self.hosts[i].node.id());
        self.forget(i);
    }

    /// Stops host `i`'s agent as SIGTERM would, and waits until it has exited.
    pub async fn stop(&mut self, i: usize) {
        self.note(format!("host {i}: agent stopped"));
        let id = self.hosts[i].node.id();
        self.handle.send_ctrl_c(id);
        let since = Instant::now();
        while !self.handle.is_exit(id) {
            if since.elapsed() > Duration::from_secs(10) {
                self.fail(format!("host {i}'s agent did not stop within 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.forget(i);
    }

    fn forget(&mut self, i: usize) {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&i);
        self.hosts[i].running = false;
        self.hosts[i].paused = false;
    }

    /// Starts host `i`'s agent again (killing it first if it runs), with its state
    /// directory kept or lost.
    pub fn restart(&mut self, i: usize, state: StateDir) {
        self.note(format!("host {i}: agent restarted, state {state:?}"));
        self.forget(i);
        if state == StateDir::Lost {
            let _ = std::fs::remove_dir_all(self.state_root.join(format!("host{i}")));
        }
        // A kill first, also of an agent that exited: madsim's restart alone does not
        // release the node's ports, which tasks left over from the exit may hold.
        self.handle.kill(self.hosts[i].node.id());
        self.handle.restart(self.hosts[i].node.id());
        self.hosts[i].running = true;
    }

    /// Freezes host `i`'s agent (none of its tasks runs) until [`Cluster::resume`].
    pub fn pause(&mut self, i: usize) {
        self.note(format!("host {i}: agent frozen"));
        self.handle.pause(self.hosts[i].node.id());
        self.hosts[i].paused = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.note(format!("host {i}: agent thawed"));
        self.handle.resume(self.hosts[i].node.id());
        self.hosts[i].paused = false;
    }

    /// Clogs the link from `a` to `b` (one way).
    pub fn clog(&mut self, a: usize, b: usize) {
        self.net
            .clog_link(self.hosts[a].node.id(), self.hosts[b].node.id());
        self.clogged.insert((a, b));
    }

    /// Cuts `side` off from every other host, both ways.
    pub fn partition(&mut self, side: &[usize]) {
        self.note(format!("partition {side:?} from the rest"));
        for a in side.iter().copied() {
            for b in (0..self.hosts.len()).filter(|b| !side.contains(b)) {
                self.clog(a, b);
                self.clog(b, a);
            }
        }
    }

    /// Unclogs every link clogged by this harness.
    pub fn heal(&mut self) {
        self.note("network healed".into());
        for (a, b) in std::mem::take(&mut self.clogged) {
            self.net
                .unclog_link(self.hosts[a].node.id(), self.hosts[b].node.id());
        }
    }

    /// A random host index.
    pub fn random_host(&mut self) -> usize {
        self.rng.random_range(0..self.hosts.len())
    }

    /// Frames sent by the running agents since they last started.
    pub fn frames_sent(&self) -> u64 {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|a| a.metrics.frames_sent.get())
            .sum()
    }

    /// Host `i`'s running agent (its views, committed kernel state and metrics).
    pub fn agent_handle(&self, i: usize) -> Option<AgentHandle> {
        self.agent(i)
    }

    fn finish(mut self) -> Trace {
        let frames = self.frames_sent();
        self.note(format!("end: {frames} frames sent"));
        let _ = std::fs::remove_dir_all(&self.state_root);
        self.trace
    }
}

async fn run_agent(i: usize, cfg: AgentConfig, agents: Arc<Mutex<BTreeMap<usize, AgentHandle>>>) {
    let started = minuteman::agent::run_until(cfg, minuteman::os::shutdown_signal(), |h| {
        agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(i, h);
    })
    .await;
    if let Err(error) = started {
        panic!("host {i}'s agent did not start: {error}");
    }
}
