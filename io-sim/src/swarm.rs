//! The swarm, in the style of TigerBeetle's VOPR: every seed draws its own cluster and fault
//! mix, runs a safety phase with the faults, then a liveness phase that heals everything
//! and requires the cluster to converge within a bound.
//!
//! A seed's mix (all drawn from a ChaCha generator seeded by the seed, so a seed is a run):
//! - 6 to 24 nodes, 4 to 12 tasks per node over 8 to 24 VIPs, Mesos churn 0 to 10 changes a
//!   second;
//! - the network: loss 0 to 5%, duplication 0 to 2%, reordering 0 to 5% (by up to 2 ms),
//!   latency tails (0 to 2% of packets 1 to 50 ms late), on the realistic model (TCP) or
//!   the ideal one (datagrams);
//! - timed actions during the safety phase: partitions (two halves, a minority island, a
//!   single host cut off, a one-way block) healed or not before the phase ends, crashes,
//!   restarts (state kept, or lost), agent stalls and host freezes, a Mesos agent serving
//!   garbage, garbage frames and frames under a wrong key from a peer's address, and a host
//!   restarted with the wrong cluster key (an unauthenticated peer).
//!
//! Invariants:
//! - Safety (every 100 ms of the whole run): every live node's own invariants hold
//!   ([`minuteman_core::Node::check_invariants`]: views, the record store within its
//!   bounds, the output queue within its bound); no node panics, and no host's kernel
//!   backlog passes the simulator's limit (it asserts).
//! - Liveness: after the heal (network whole and clean, every crashed or mis-keyed host
//!   restarted with the cluster key, Mesos serving good documents, churn stopped) the
//!   cluster converges within [`LIVENESS_BOUND`]: every live node reaches every other,
//!   the overlay is one component, every live node's kernel equals the rules applied to the
//!   Mesos truth and the live hosts ([`crate::world::ServiceWorld::expected`]), and every
//!   node's DNS task records are the same.
//! - Determinism: a seed's outcome (and trace hash) does not depend on the other seeds;
//!   every violation carries the command that replays its seed.

use crate::network::NetConfig;
use crate::sim::{sim_cluster_auth, ClusterConfig, Simulation};
use crate::world::WorldConfig;
use minuteman_core::auth::{ClusterKey, FrameAuth};
use minuteman_core::Time;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Cold start before the faults begin.
pub const WARMUP: Duration = Duration::from_secs(3);
/// How long the faults run.
pub const SAFETY_PHASE: Duration = Duration::from_secs(10);
/// How long after the heal the cluster has to converge.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(30);
/// How often the checks run.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// One timed fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nodes on different sides cannot reach each other (`sides[i]` for node `i`).
    Partition {
        shape: &'static str,
        sides: Vec<u32>,
    },
    /// Packets from `from` to `to` drop (not the reverse).
    OneWay {
        from: usize,
        to: usize,
    },
    /// Every partition and block removed.
    HealNetwork,
    Crash {
        node: usize,
    },
    /// A crashed node comes back: as a new incarnation, or with its state directory lost.
    Restart {
        node: usize,
        state_lost: bool,
    },
    Stall {
        node: usize,
        ms: u64,
    },
    Freeze {
        node: usize,
        ms: u64,
    },
    /// The node's Mesos agent serves garbage (or good documents again).
    MesosGarbage {
        node: usize,
        on: bool,
    },
    /// `count` frames of random bytes from `from`'s address to `to`.
    GarbageFrames {
        from: usize,
        to: usize,
        count: usize,
    },
    /// `count` well-formed frames sealed with a key the cluster does not use.
    ForgedFrames {
        from: usize,
        to: usize,
        count: usize,
    },
    /// The node restarts holding the wrong cluster key.
    WrongKey {
        node: usize,
    },
}

/// What one seed runs.
#[derive(Clone, Debug, Serialize)]
pub struct Mix {
    pub nodes: usize,
    pub tasks: usize,
    pub vips: usize,
    pub churn_per_s: f64,
    pub realistic: bool,
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub tail_probability: f64,
    pub tail_extra_ms: u64,
    /// `(at ms, action)`, in time order.
    pub actions: Vec<(u64, Action)>,
}

impl Mix {
    /// The mix of `seed`.
    pub fn draw(seed: u64) -> Mix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5377_6172_6d00_0000);
        let nodes = rng.random_range(6..=24);
        let vips = rng.random_range(8..=24);
        let tasks = nodes * rng.random_range(4..=12);
        let churn_per_s = if rng.random_bool(0.7) {
            rng.random_range(0.0..10.0)
        } else {
            0.0
        };
        let mut some = |p: f64, hi: f64| {
            if rng.random_bool(p) {
                rng.random_range(0.0..hi)
            } else {
                0.0
            }
        };
        let loss = some(0.5, 0.05);
        let duplicate = some(0.3, 0.02);
        let reorder = some(0.3, 0.05);
        let tail_probability = some(0.4, 0.02);
        let tail_extra_ms = rng.random_range(1..=50);
        let realistic = rng.random_bool(0.7);
        let mut actions = Vec::new();
        let start = WARMUP.as_millis() as u64;
        let end = start + SAFETY_PHASE.as_millis() as u64;
        let count = rng.random_range(1..=8);
        let mut crashed: Vec<usize> = Vec::new();
        for _ in 0..count {
            let at = rng.random_range(start..end);
            let node = rng.random_range(0..nodes);
            let other = (node + rng.random_range(1..nodes)) % nodes;
            let action = match rng.random_range(0..10) {
                0 => {
                    let (shape, sides) = partition(&mut rng, nodes);
                    Action::Partition { shape, sides }
                }
                1 => Action::OneWay {
                    from: node,
                    to: other,
                },
                2 | 3 => {
                    // A crash is drawn only while under a third of the nodes have crashed
                    // without a drawn restart (a soft bound: actions are drawn out of time
                    // order, so a restart may come later in time than a crash drawn after it).
                    if crashed.len() >= nodes / 3 || crashed.contains(&node) {
                        continue;
                    }
                    crashed.push(node);
                    Action::Crash { node }
                }
                4 => Action::Stall {
                    node,
                    ms: log_uniform(&mut rng, 100, 3_000),
                },
                5 => Action::Freeze {
                    node,
                    ms: log_uniform(&mut rng, 50, 1_000),
                },
                6 => Action::MesosGarbage { node, on: true },
                7 => Action::GarbageFrames {
                    from: node,
                    to: other,
                    count: rng.random_range(1..=50),
                },
                8 => Action::ForgedFrames {
                    from: node,
                    to: other,
                    count: rng.random_range(1..=50),
                },
                _ => Action::WrongKey { node },
            };
            actions.push((at, action));
            // Some faults end inside the phase.
            if rng.random_bool(0.5) {
                let later = rng.random_range(at..end);
                let undo = match &actions.last().expect("pushed").1 {
                    Action::Partition { .. } | Action::OneWay { .. } => Some(Action::HealNetwork),
                    Action::Crash { node } => Some(Action::Restart {
                        node: *node,
                        state_lost: rng.random_bool(0.3),
                    }),
                    Action::MesosGarbage { node, .. } => Some(Action::MesosGarbage {
                        node: *node,
                        on: false,
                    }),
                    _ => None,
                };
                if let Some(undo) = undo {
                    if let Action::Restart { node, .. } = &undo {
                        crashed.retain(|c| c != node);
                    }
                    actions.push((later, undo));
                }
            }
        }
        actions.sort_by_key(|(at, _)| *at);
        Mix {
            nodes,
            tasks,
            vips,
            churn_per_s,
            realistic,
            loss,
            duplicate,
            reorder,
            tail_probability,
            tail_extra_ms,
            actions,
        }
    }

    fn cluster_config(&self) -> ClusterConfig {
        let mut cfg = if self.realistic {
            ClusterConfig::new(self.nodes)
        } else {
            ClusterConfig::ideal(self.nodes)
        };
        cfg.net = NetConfig {
            loss: self.loss,
            duplicate: self.duplicate,
            reorder: self.reorder,
            reorder_extra: Duration::from_millis(2),
            tail_probability: self.tail_probability,
            tail_extra: Duration::from_millis(self.tail_extra_ms),
            ..cfg.net
        };
        cfg
    }
}

/// Node sides of one partition shape.
fn partition(rng: &mut ChaCha8Rng, nodes: usize) -> (&'static str, Vec<u32>) {
    let mut sides = vec![0u32; nodes];
    let shape = match rng.random_range(0..3) {
        0 => {
            for side in sides.iter_mut() {
                *side = u32::from(rng.random_bool(0.5));
            }
            "halves"
        }
        1 => {
            let island = rng.random_range(1..=nodes.div_ceil(3).max(1));
            for _ in 0..island {
                sides[rng.random_range(0..nodes)] = 1;
            }
            "minority"
        }
        _ => {
            sides[rng.random_range(0..nodes)] = 1;
            "one_host"
        }
    };
    (shape, sides)
}

fn log_uniform(rng: &mut ChaCha8Rng, lo_ms: u64, hi_ms: u64) -> u64 {
    let (lo, hi) = ((lo_ms as f64).ln(), (hi_ms as f64).ln());
    rng.random_range(lo..=hi).exp().round() as u64
}

/// One broken invariant.
#[derive(Clone, Debug, Serialize)]
pub struct SwarmViolation {
    pub seed: u64,
    /// `safety`, `liveness` or `panic` (a node or the simulator panicked; `at_ms` unknown).
    pub kind: &'static str,
    pub at_ms: f64,
    pub detail: String,
    pub replay: String,
}

/// What one seed did.
#[derive(Clone, Debug, Serialize)]
pub struct SeedOutcome {
    pub seed: u64,
    pub nodes: usize,
    pub actions: usize,
    /// Simulated time from the heal to convergence (`None`: not within the bound).
    pub converged_ms: Option<f64>,
    pub trace_hash: u64,
    pub violations: Vec<SwarmViolation>,
}

/// The command that replays `seed` alone.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run --release -p minuteman-sim -- swarm --seeds {seed}..{seed}")
}

/// Runs one seed.
pub fn run_seed(seed: u64) -> SeedOutcome {
    run_seed_sim(seed).0
}

/// Runs one seed; also returns the simulation, for inspection.
pub fn run_seed_sim(seed: u64) -> (SeedOutcome, Simulation) {
    run_mix(seed, &Mix::draw(seed), Heal::Everything)
}

/// What the liveness phase starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heal {
    /// The swarm's rule: every fault ends.
    Everything,
    /// Nothing is healed (a check that the liveness phase can fail).
    Nothing,
}

/// Runs `mix` with `seed`'s simulation.
pub fn run_mix(seed: u64, mix: &Mix, healing: Heal) -> (SeedOutcome, Simulation) {
    let mut sim = Simulation::new(mix.cluster_config(), seed);
    sim.attach_world(WorldConfig {
        vips: mix.vips,
        tasks: mix.tasks,
        churn_per_s: mix.churn_per_s,
        ..WorldConfig::default()
    });
    let mut violations = Vec::new();
    let safety_end = Time::from_duration(WARMUP + SAFETY_PHASE);
    if mix.churn_per_s > 0.0 {
        sim.churn_until(safety_end);
    }
    let mut actions = mix.actions.iter().peekable();
    let mut wrong_keys = Vec::new();
    let mut safe = true;
    while sim.now() < safety_end && safe {
        let step = (sim.now() + CHECK_EVERY).min(safety_end);
        while let Some((at, action)) = actions.next_if(|(at, _)| Time::from_millis(*at) <= step) {
            sim.run_until(Time::from_millis(*at));
            apply(&mut sim, action, &mut wrong_keys, seed);
        }
        sim.run_until(step);
        safe = check_safety(&sim, seed, &mut violations);
    }
    let heal_at = sim.now();
    let mut converged_ms = None;
    if safe {
        if healing == Heal::Everything {
            heal(&mut sim, &wrong_keys);
        }
        let deadline = heal_at + LIVENESS_BOUND;
        while sim.now() < deadline {
            sim.run_until((sim.now() + CHECK_EVERY).min(deadline));
            if !check_safety(&sim, seed, &mut violations) {
                break;
            }
            if converged(&sim).is_ok() {
                converged_ms = Some((sim.now() - heal_at).as_secs_f64() * 1e3);
                break;
            }
        }
        if converged_ms.is_none() && violations.is_empty() {
            let why = converged(&sim).err().unwrap_or_default();
            violations.push(SwarmViolation {
                seed,
                kind: "liveness",
                at_ms: sim.now().as_millis_f64(),
                detail: format!(
                    "not converged {} s after the heal: {why}",
                    LIVENESS_BOUND.as_secs()
                ),
                replay: replay_command(seed),
            });
        }
    }
    let outcome = SeedOutcome {
        seed,
        nodes: mix.nodes,
        actions: mix.actions.len(),
        converged_ms,
        trace_hash: sim.trace_hash(),
        violations,
    };
    (outcome, sim)
}

/// Frame authentication under a key no simulated host holds.
fn wrong_key() -> FrameAuth {
    FrameAuth::Keys {
        current: ClusterKey::new([0x5a; 32]).expect("32 bytes is a valid key"),
        previous: None,
    }
}

fn apply(sim: &mut Simulation, action: &Action, wrong_keys: &mut Vec<usize>, seed: u64) {
    match action {
        Action::Partition { sides, .. } => sim.network.partition(sides.clone()),
        Action::OneWay { from, to } => sim.network.block_one_way(*from, *to),
        Action::HealNetwork => sim.network.heal(),
        Action::Crash { node } => sim.crash(*node),
        Action::Restart { node, state_lost } => {
            if !sim.is_alive(*node) {
                if *state_lost {
                    sim.restart_lost_state(*node);
                } else {
                    sim.restart(*node);
                }
            }
        }
        Action::Stall { node, ms } => {
            sim.stall_agent(*node, Duration::from_millis(*ms));
        }
        Action::Freeze { node, ms } => {
            sim.freeze_host(*node, Duration::from_millis(*ms));
        }
        Action::MesosGarbage { node, on } => {
            if let Some(world) = sim.world.as_mut() {
                world.set_garbage(*node, *on);
            }
        }
        Action::GarbageFrames { from, to, count } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (*from as u64) << 32 ^ *to as u64);
            for _ in 0..*count {
                let len = rng.random_range(0..300);
                let frame: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                sim.inject_frame(*from, *to, frame);
            }
        }
        Action::ForgedFrames { from, to, count } => {
            let forger = wrong_key();
            for k in 0..*count {
                let envelope = minuteman_core::Envelope {
                    from: sim.id(*from),
                    msg: minuteman_core::Message::Ping { echo: k as u64 },
                };
                let limits = minuteman_core::Limits::default();
                if let Ok(frame) = minuteman_core::wire::encode_sealed(&envelope, &limits, &forger)
                {
                    sim.inject_frame(*from, *to, frame);
                }
            }
        }
        Action::WrongKey { node } => {
            if sim.is_alive(*node) {
                sim.set_auth(*node, wrong_key());
                sim.restart(*node);
                wrong_keys.push(*node);
            }
        }
    }
}

/// Everything back to health: the network whole and clean, the cluster key everywhere,
/// every host running, Mesos serving good documents, no more churn.
fn heal(sim: &mut Simulation, wrong_keys: &[usize]) {
    sim.network.heal();
    sim.network.config.loss = 0.0;
    sim.network.config.duplicate = 0.0;
    sim.network.config.reorder = 0.0;
    sim.network.config.tail_probability = 0.0;
    let now = sim.now();
    sim.churn_until(now);
    if let Some(world) = sim.world.as_mut() {
        for i in 0..world.agents.len() {
            world.set_garbage(i, false);
        }
    }
    for &i in wrong_keys {
        sim.set_auth(i, sim_cluster_auth());
        sim.restart(i);
    }
    for i in 0..sim.len() {
        if !sim.is_alive(i) {
            sim.restart(i);
        }
    }
}

/// The safety checks; false (with the violation recorded) when one fails.
fn check_safety(sim: &Simulation, seed: u64, violations: &mut Vec<SwarmViolation>) -> bool {
    match sim.check_invariants() {
        Ok(()) => true,
        Err(e) => {
            violations.push(SwarmViolation {
                seed,
                kind: "safety",
                at_ms: sim.now().as_millis_f64(),
                detail: e,
                replay: replay_command(seed),
            });
            false
        }
    }
}

/// Whether the cluster has converged; why not otherwise.
fn converged(sim: &Simulation) -> Result<(), String> {
    if !sim.is_converged() {
        return Err(format!(
            "membership: {} overlay component(s), not every live node reaches every other",
            sim.overlay_components().len()
        ));
    }
    let world = sim.world.as_ref().expect("attached");
    let expected = world.expected();
    for i in sim.alive() {
        if world.kernels[i] != expected {
            return Err(format!(
                "node {i}'s kernel: {}",
                crate::world::describe_difference(&world.kernels[i], &expected)
            ));
        }
    }
    let mut directories = sim
        .alive()
        .filter_map(|i| sim.node(i))
        .map(|n| n.task_directory().merged());
    if let Some(first) = directories.next() {
        if directories.any(|d| d != first) {
            return Err("the nodes' DNS task records differ".into());
        }
    }
    Ok(())
}

/// What a swarm run reports. Field names are the JSON keys.
#[derive(Clone, Debug, Serialize)]
pub struct SwarmReport {
    /// Seeds run.
    pub seeds: u64,
    pub first_seed: u64,
    pub last_seed: u64,
    pub violations: Vec<SwarmViolation>,
    /// Simulated time from the heal to convergence over the seeds that converged.
    pub converged_ms: Option<crate::stats::Summary>,
    pub wall_ms: f64,
}

/// Runs seeds `first..=last`, calling `each` after every seed.
pub fn run(first: u64, last: u64, mut each: impl FnMut(&SeedOutcome)) -> SwarmReport {
    let wall = Instant::now();
    let mut violations = Vec::new();
    let mut converged = Vec::new();
    for seed in first..=last {
        // A panic inside a node or the simulator is a violation of its seed, not the end of
        // the band.
        let outcome = std::panic::catch_unwind(|| run_seed(seed)).unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".to_owned());
            SeedOutcome {
                seed,
                nodes: Mix::draw(seed).nodes,
                actions: Mix::draw(seed).actions.len(),
                converged_ms: None,
                trace_hash: 0,
                violations: vec![SwarmViolation {
                    seed,
                    kind: "panic",
                    at_ms: f64::NAN,
                    detail,
                    replay: replay_command(seed),
                }],
            }
        });
        each(&outcome);
        converged.extend(
            outcome
                .converged_ms
                .map(|ms| Duration::from_secs_f64(ms / 1e3)),
        );
        violations.extend(outcome.violations);
    }
    SwarmReport {
        seeds: last.saturating_sub(first) + 1,
        first_seed: first,
        last_seed: last,
        violations,
        converged_ms: crate::stats::Summary::of(&converged),
        wall_ms: wall.elapsed().as_secs_f64() * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition that is never healed fails the liveness phase; healed, it converges.
    #[test]
    fn an_unhealed_partition_is_a_liveness_violation() {
        let mut mix = Mix::draw(3);
        mix.actions = vec![(
            4_000,
            Action::Partition {
                shape: "halves",
                sides: (0..mix.nodes).map(|i| (i % 2) as u32).collect(),
            },
        )];
        let (healed, _) = run_mix(3, &mix, Heal::Everything);
        assert!(healed.violations.is_empty(), "{:?}", healed.violations);
        assert!(healed.converged_ms.is_some());
        let (cut, _) = run_mix(3, &mix, Heal::Nothing);
        assert_eq!(cut.violations.len(), 1);
        let v = &cut.violations[0];
        assert_eq!(v.kind, "liveness");
        assert!(v.detail.contains("membership"), "{}", v.detail);
        assert_eq!(
            v.replay,
            "cargo run --release -p minuteman-sim -- swarm --seeds 3..3"
        );
    }

    #[test]
    fn a_seed_draws_the_same_mix_and_different_seeds_differ() {
        let a = Mix::draw(7);
        assert_eq!(format!("{a:?}"), format!("{:?}", Mix::draw(7)));
        let distinct: std::collections::BTreeSet<String> =
            (1..=20).map(|s| format!("{:?}", Mix::draw(s))).collect();
        assert!(distinct.len() >= 19);
        for seed in 1..=200 {
            let mix = Mix::draw(seed);
            assert!((6..=24).contains(&mix.nodes));
            assert!(mix.actions.windows(2).all(|w| w[0].0 <= w[1].0));
        }
    }
}
