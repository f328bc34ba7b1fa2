//! The baseline the paper compares against: DC/OS's minuteman before it had Lashup
//! membership (December 2015 to April 2016), with the defaults of its source.
//!
//! Sources: github.com/dcos/minuteman (archived as mesosphere-backup/minuteman) and the
//! Mesos master:
//! - `src/minuteman_ct_latency_observer.erl`: conntrack reports a connection's first SYN
//!   (the backend gets one more *pending* connection and a timer of
//!   `tcp_connect_threshold`, 400 ms) and the backend's reply. A reply before the timer is
//!   a success, observed with its latency; the timer firing first is a failure, observed
//!   with the time elapsed, the threshold. Retransmitted SYNs are not new connections.
//! - `src/minuteman_ewma.erl`, `include/minuteman.hrl`: per backend a time-decayed *peak*
//!   EWMA of the observations (Finagle's `P2CBalancerPeakEwma`, decay 10 s): an observation
//!   above the stored cost replaces it, one below is averaged in with weight
//!   `1 - exp(-dt / 10 s)`. Reading the cost decays it to now and stores that (the Erlang
//!   code observes a 0 on every read). The cost compared is `ewma × (pending + 1)`; a
//!   backend whose EWMA is exactly 0 (never observed) costs `1e307 + pending`, so a cold
//!   backend loses to every backend ever observed, a dead one included.
//! - the same file: a backend is *closed* once `tcp_consecutive_failure_threshold` (5)
//!   handshakes failed in a row, until `tcp_failed_backend_backoff_period` (30 s) has
//!   passed since its last failure; a success resets the count, a failure while closed
//!   moves the last failure on. The choice: the open backends (all of them when none is
//!   open); a single candidate is taken; otherwise two distinct candidates are drawn at
//!   random and the cheaper wins, a tie going to the second drawn (a random one).
//! - `src/minuteman_config.erl`, `src/minuteman_mesos_poller.erl`: the backend list comes
//!   from the Mesos master's `/state.json`, polled every 5 s (`poll_interval`), TASK_RUNNING
//!   healthy tasks only. Nothing else ever takes a backend out of it.
//! - Mesos master, `src/master/master.cpp` (`SlaveObserver`): the master pings each agent
//!   every `--agent_ping_timeout` (default 15 secs); once `--max_agent_ping_timeouts`
//!   (default 5) pings in a row went unanswered it marks the agent unreachable and its tasks
//!   leave the running tasks. The first ping a dead agent cannot answer leaves within one
//!   ping interval after the crash, so the master drops the agent `U[0, 15 s) + 75 s` after
//!   the crash ([`master_drops_at`]). A host's list then loses those backends at its first
//!   poll at least `state_cache` (5 s, taken at its worst) after that ([`PreLashup`]).
//!
//! One simplification: with more than 10 backends the old chooser looks at 21 random
//! backends and draws its two from the open ones among them; here the two are drawn from
//! all open backends. The two differ only when fewer than 2 of 21 random backends are open.
//!
//! Invariants: a backend is closed exactly while `failures >= failure_threshold` and
//! `now - last_failure <= failure_backoff`; `pending` counts handshakes opened and not yet
//! observed; the list holds exactly the table's backends of positive weight whose host
//! this host's last poll did not see dropped, in address order; every random draw comes from the caller's
//! generator, so the same seed gives the same choices.

use crate::sim::node_index;
use minuteman_core::kernel::Destinations;
use minuteman_core::Time;
use rand::Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// The cost of a backend whose EWMA is 0 (`penalty` in `include/minuteman.hrl`).
pub const COLD_PENALTY: f64 = 1.0e307;

/// Draws of the rejection sampler before it lists the candidates explicitly.
const SAMPLE_TRIES: usize = 64;

/// The old minuteman's parameters and the Mesos master's, with their defaults.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineConfig {
    /// A handshake not answered within this is a failure (`tcp_connect_threshold`).
    #[serde(serialize_with = "crate::stats::as_millis")]
    pub connect_threshold: Duration,
    /// Consecutive failures that close a backend (`tcp_consecutive_failure_threshold`).
    pub failure_threshold: u32,
    /// A closed backend opens again this long after its last failure
    /// (`tcp_failed_backend_backoff_period`).
    #[serde(serialize_with = "crate::stats::as_millis")]
    pub failure_backoff: Duration,
    /// The EWMA's decay time (`decay` in `include/minuteman.hrl`).
    #[serde(serialize_with = "crate::stats::as_millis")]
    pub ewma_decay: Duration,
    /// Mesos master flag `--agent_ping_timeout`.
    #[serde(serialize_with = "crate::stats::as_millis")]
    pub agent_ping_timeout: Duration,
    /// Mesos master flag `--max_agent_ping_timeouts`.
    pub max_agent_ping_timeouts: u32,
    /// How often each host polls the master's `/state.json` (`poll_interval`).
    #[serde(serialize_with = "crate::stats::as_millis")]
    pub state_poll_interval: Duration,
    /// How stale the polled state can be (taken at its worst).
    #[serde(serialize_with = "crate::stats::as_millis")]
    pub state_cache: Duration,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            connect_threshold: Duration::from_millis(400),
            failure_threshold: 5,
            failure_backoff: Duration::from_secs(30),
            ewma_decay: Duration::from_secs(10),
            agent_ping_timeout: Duration::from_secs(15),
            max_agent_ping_timeouts: 5,
            state_poll_interval: Duration::from_secs(5),
            state_cache: Duration::from_secs(5),
        }
    }
}

/// When the Mesos master drops each crashed host's agent (its tasks leave the running
/// tasks): a uniform ping phase within one `agent_ping_timeout` after the crash, then
/// `max_agent_ping_timeouts` unanswered pings. `None` for hosts that never crash.
pub fn master_drops_at<R: Rng>(
    crash_at: &[Option<Time>],
    cfg: &BaselineConfig,
    rng: &mut R,
) -> Vec<Option<Time>> {
    let ping = cfg.agent_ping_timeout.as_nanos() as u64;
    crash_at
        .iter()
        .map(|c| {
            c.map(|c| {
                let phase = Duration::from_nanos(rng.random_range(0..ping.max(1)));
                c + phase + cfg.agent_ping_timeout * cfg.max_agent_ping_timeouts
            })
        })
        .collect()
}

/// Everything a baseline host needs to know besides its generator.
#[derive(Clone, Debug)]
pub struct BaselineSetup {
    pub cfg: BaselineConfig,
    /// Per host, from [`master_drops_at`].
    pub master_drops_at: Vec<Option<Time>>,
}

/// The time-decayed peak EWMA of one backend's connect latencies, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeakEwma {
    pub cost_ms: f64,
    pub stamp: Time,
}

impl PeakEwma {
    /// Records `value_ms` at `now` (`observe_internal`).
    pub fn observe(&mut self, now: Time, value_ms: f64, decay: Duration) {
        let dt = (now - self.stamp).as_secs_f64();
        let weight = (-dt / decay.as_secs_f64()).exp();
        self.cost_ms = if value_ms > self.cost_ms {
            value_ms
        } else {
            self.cost_ms * weight + value_ms * (1.0 - weight)
        };
        self.stamp = self.stamp.max(now);
    }
}

#[derive(Clone, Debug, Default)]
struct Backend {
    ewma: PeakEwma,
    pending: u32,
    failures: u32,
    last_failure: Option<Time>,
}

/// One host's pre-Lashup balancer: its backend list, per-backend state and chooser.
#[derive(Clone, Debug)]
pub struct PreLashup {
    pub cfg: BaselineConfig,
    /// Per host: when this host's list loses its backends (`None`: never).
    list_drops_at: Vec<Option<Time>>,
    /// This host's poll phase (its polls are at `phase + k × state_poll_interval`).
    pub poll_phase: Duration,
    backends: BTreeMap<SocketAddr, Backend>,
    /// The backends new connections can go to, in address order.
    list: Vec<SocketAddr>,
    /// The table version and drop time the list was built for.
    synced: Option<(u64, Option<Time>)>,
    /// Backends with `failures >= failure_threshold` (closed or about to reopen).
    failing: BTreeSet<SocketAddr>,
    /// Times a backend went from open to closed.
    pub closed_count: u64,
    /// Every backend that was ever closed.
    pub ever_closed: BTreeSet<SocketAddr>,
}

impl PreLashup {
    /// A host whose poll phase is drawn from `rng`.
    pub fn new<R: Rng>(setup: &BaselineSetup, rng: &mut R) -> PreLashup {
        let interval = setup.cfg.state_poll_interval.as_nanos() as u64;
        let poll_phase = Duration::from_nanos(rng.random_range(0..interval.max(1)));
        PreLashup::with_phase(setup, poll_phase)
    }

    pub fn with_phase(setup: &BaselineSetup, poll_phase: Duration) -> PreLashup {
        let cfg = setup.cfg.clone();
        let list_drops_at = setup
            .master_drops_at
            .iter()
            .map(|d| d.map(|d| first_poll_at_or_after(d + cfg.state_cache, poll_phase, &cfg)))
            .collect();
        PreLashup {
            cfg,
            list_drops_at,
            poll_phase,
            backends: BTreeMap::new(),
            list: Vec::new(),
            synced: None,
            failing: BTreeSet::new(),
            closed_count: 0,
            ever_closed: BTreeSet::new(),
        }
    }

    /// When this host's list loses host `h`'s backends (`None`: never).
    pub fn list_drops_at(&self, h: usize) -> Option<Time> {
        self.list_drops_at.get(h).copied().flatten()
    }

    fn host_of(&self, dest: &SocketAddr) -> Option<usize> {
        node_index(dest.ip(), self.list_drops_at.len())
    }

    /// Brings the list up to date at `now` with the master's table (`version` changes
    /// whenever `destinations` may have).
    pub fn sync(&mut self, now: Time, version: u64, destinations: Option<&Destinations>) {
        // The latest drop this host has polled by now decides which hosts are out.
        let dropped_by = self
            .list_drops_at
            .iter()
            .flatten()
            .filter(|&&t| t <= now)
            .max()
            .copied();
        if self.synced == Some((version, dropped_by)) {
            return;
        }
        self.synced = Some((version, dropped_by));
        let drops = &self.list_drops_at;
        let n = drops.len();
        self.list = destinations
            .into_iter()
            .flatten()
            .filter(|&(d, &w)| {
                w > 0
                    && node_index(d.ip(), n)
                        .and_then(|h| drops[h])
                        .is_none_or(|t| t > now)
            })
            .map(|(d, _)| *d)
            .collect();
    }

    /// The backends the list holds now.
    pub fn list(&self) -> &[SocketAddr] {
        &self.list
    }

    /// Whether `dest` takes new connections at `now` (`is_open`).
    pub fn is_open(&self, now: Time, dest: &SocketAddr) -> bool {
        self.backends.get(dest).is_none_or(|b| self.open(now, b))
    }

    fn open(&self, now: Time, b: &Backend) -> bool {
        b.failures < self.cfg.failure_threshold
            || b.last_failure
                .is_none_or(|last| now - last > self.cfg.failure_backoff)
    }

    /// The cost of `dest` at `now` (`cost/1`); reading decays the stored EWMA to now.
    pub fn cost(&mut self, now: Time, dest: SocketAddr) -> f64 {
        let decay = self.cfg.ewma_decay;
        let b = self.backends.entry(dest).or_default();
        b.ewma.observe(now, 0.0, decay);
        if b.ewma.cost_ms == 0.0 {
            COLD_PENALTY + f64::from(b.pending)
        } else {
            b.ewma.cost_ms * f64::from(b.pending + 1)
        }
    }

    /// The backend for a new connection at `now` (`None`: the list is empty).
    pub fn pick<R: Rng>(&mut self, now: Time, rng: &mut R) -> Option<SocketAddr> {
        let n = self.list.len();
        if n <= 1 {
            return self.list.first().copied();
        }
        // Only backends that failed `failure_threshold` times in a row can be closed.
        let closed = self
            .failing
            .iter()
            .filter(|d| !self.is_open(now, d) && self.list.binary_search(d).is_ok())
            .count();
        let open_count = n - closed;
        // The candidates: the open backends, or every backend when none is open.
        let only_open = open_count > 0;
        let candidates = if only_open { open_count } else { n };
        if candidates == 1 {
            return self.list.iter().find(|d| self.is_open(now, d)).copied();
        }
        let first = self.draw(now, rng, only_open, None);
        let second = self.draw(now, rng, only_open, Some(first));
        let (a, b) = (self.list[first], self.list[second]);
        let cost_a = self.cost(now, a);
        let cost_b = self.cost(now, b);
        Some(if cost_a < cost_b { a } else { b })
    }

    /// A uniformly random index of a candidate other than `except`.
    fn draw<R: Rng>(
        &self,
        now: Time,
        rng: &mut R,
        only_open: bool,
        except: Option<usize>,
    ) -> usize {
        let ok = |i: usize| Some(i) != except && (!only_open || self.is_open(now, &self.list[i]));
        for _ in 0..SAMPLE_TRIES {
            let i = rng.random_range(0..self.list.len());
            if ok(i) {
                return i;
            }
        }
        let all: Vec<usize> = (0..self.list.len()).filter(|&i| ok(i)).collect();
        all[rng.random_range(0..all.len())]
    }

    /// A connection to `dest` sent its first SYN.
    pub fn opened(&mut self, dest: SocketAddr) {
        self.backends.entry(dest).or_default().pending += 1;
    }

    /// The handshake of a connection to `dest` was observed at `now`: answered after
    /// `latency`, or (`None`) not within the connect threshold.
    pub fn observed(&mut self, now: Time, dest: SocketAddr, latency: Option<Duration>) {
        let value_ms = latency.unwrap_or(self.cfg.connect_threshold).as_secs_f64() * 1e3;
        let was_open = self.is_open(now, &dest);
        let (decay, threshold) = (self.cfg.ewma_decay, self.cfg.failure_threshold);
        let b = self.backends.entry(dest).or_default();
        b.pending = b.pending.saturating_sub(1);
        b.ewma.observe(now, value_ms, decay);
        if latency.is_some() {
            b.failures = 0;
            self.failing.remove(&dest);
            return;
        }
        b.failures += 1;
        b.last_failure = Some(now);
        if b.failures >= threshold {
            self.failing.insert(dest);
            if was_open {
                self.closed_count += 1;
                self.ever_closed.insert(dest);
            }
        }
    }

    /// The EWMA of `dest` as stored (for tests and reports).
    pub fn ewma(&self, dest: &SocketAddr) -> Option<PeakEwma> {
        self.backends.get(dest).map(|b| b.ewma)
    }

    /// Hosts of the backends that were ever closed.
    pub fn ever_closed_hosts(&self) -> BTreeSet<usize> {
        self.ever_closed
            .iter()
            .filter_map(|d| self.host_of(d))
            .collect()
    }
}

/// The first poll (`phase + k × state_poll_interval`, k ≥ 0) at or after `t`.
fn first_poll_at_or_after(t: Time, phase: Duration, cfg: &BaselineConfig) -> Time {
    let first = Time::ZERO + phase;
    if t <= first {
        return first;
    }
    let interval = cfg.state_poll_interval.as_nanos().max(1);
    let polls = (t - first).as_nanos().div_ceil(interval);
    first + Duration::from_nanos((polls * interval) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::node_addr;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn dest(host: usize, i: u16) -> SocketAddr {
        SocketAddr::new(node_addr(host).ip(), 20_000 + i)
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn setup(hosts: usize) -> BaselineSetup {
        BaselineSetup {
            cfg: BaselineConfig::default(),
            master_drops_at: vec![None; hosts],
        }
    }

    fn table(dests: &[SocketAddr]) -> Destinations {
        dests.iter().map(|&d| (d, 1)).collect()
    }

    #[test]
    fn the_ewma_jumps_to_a_peak_and_decays_towards_lower_values() {
        let decay = Duration::from_secs(10);
        let mut e = PeakEwma::default();
        e.observe(at(1_000), 2.0, decay);
        assert_eq!(e.cost_ms, 2.0, "the first observation is the cost");
        e.observe(at(1_000), 400.0, decay);
        assert_eq!(e.cost_ms, 400.0, "a higher observation replaces it at once");
        // A lower one 10 s later: weight e^-1 on the old cost.
        e.observe(at(11_000), 1.0, decay);
        let expected = 400.0 * (-1.0f64).exp() + 1.0 * (1.0 - (-1.0f64).exp());
        assert!((e.cost_ms - expected).abs() < 1e-9, "{}", e.cost_ms);
        // The same instant: weight 1 on the old cost, the low value changes nothing.
        let before = e.cost_ms;
        e.observe(at(11_000), 0.5, decay);
        assert_eq!(e.cost_ms, before);
    }

    #[test]
    fn two_choices_send_to_the_lower_cost_and_a_cold_backend_loses_to_any_observed() {
        let (fast, slow, cold) = (dest(1, 0), dest(2, 0), dest(3, 0));
        let mut b = PreLashup::with_phase(&setup(4), Duration::ZERO);
        b.sync(at(0), 1, Some(&table(&[fast, slow])));
        for (d, ms) in [(fast, 1), (slow, 50)] {
            b.opened(d);
            b.observed(at(10), d, Some(Duration::from_millis(ms)));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(b.pick(at(20), &mut rng), Some(fast));
        }
        // A never-observed backend costs the penalty: even a backend that failed wins.
        b.sync(at(20), 2, Some(&table(&[slow, cold])));
        b.opened(slow);
        b.observed(at(30), slow, None);
        for _ in 0..20 {
            assert_eq!(b.pick(at(40), &mut rng), Some(slow));
        }
        assert_eq!(b.cost(at(40), cold), COLD_PENALTY);
        // Pending connections multiply the cost.
        let before = b.cost(at(40), fast);
        b.opened(fast);
        assert!((b.cost(at(40), fast) - 2.0 * before).abs() < 1e-12);
    }

    #[test]
    fn ties_go_either_way() {
        let (x, y) = (dest(1, 0), dest(1, 1));
        let mut b = PreLashup::with_phase(&setup(2), Duration::ZERO);
        b.sync(at(0), 1, Some(&table(&[x, y])));
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let picks: Vec<SocketAddr> = (0..64).filter_map(|_| b.pick(at(0), &mut rng)).collect();
        assert!(picks.contains(&x) && picks.contains(&y), "{picks:?}");
    }

    #[test]
    fn consecutive_failures_close_a_backend_until_the_backoff_after_the_last() {
        let (dead, live) = (dest(1, 0), dest(2, 0));
        let mut b = PreLashup::with_phase(&setup(3), Duration::ZERO);
        b.sync(at(0), 1, Some(&table(&[dead, live])));
        for k in 0..4 {
            b.opened(dead);
            b.observed(at(1_000 * k), dead, None);
        }
        assert!(b.is_open(at(3_000), &dead), "four failures are not enough");
        // A success resets the count.
        b.opened(dead);
        b.observed(at(3_500), dead, Some(Duration::from_millis(1)));
        for k in 0..5 {
            b.opened(dead);
            b.observed(at(4_000 + 1_000 * k), dead, None);
        }
        assert!(
            !b.is_open(at(8_000), &dead),
            "closed after the fifth in a row"
        );
        assert_eq!((b.closed_count, b.ever_closed.len()), (1, 1));
        // Closed: every pick goes to the open backend.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20 {
            assert_eq!(b.pick(at(20_000), &mut rng), Some(live));
        }
        // Open again once 30 s passed since the last failure (8 s).
        assert!(!b.is_open(at(38_000), &dead));
        assert!(b.is_open(at(38_001), &dead));
        // The probe fails: closed again right away, for another 30 s.
        b.opened(dead);
        b.observed(at(40_000), dead, None);
        assert!(!b.is_open(at(70_000), &dead));
        assert!(b.is_open(at(70_001), &dead));
        assert_eq!(b.closed_count, 2);
    }

    #[test]
    fn with_every_backend_closed_it_falls_back_to_all_of_them() {
        let (x, y) = (dest(1, 0), dest(2, 0));
        let mut b = PreLashup::with_phase(&setup(3), Duration::ZERO);
        b.sync(at(0), 1, Some(&table(&[x, y])));
        for d in [x, y] {
            for _ in 0..5 {
                b.opened(d);
                b.observed(at(100), d, None);
            }
        }
        assert!(!b.is_open(at(200), &x) && !b.is_open(at(200), &y));
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let picks: BTreeSet<SocketAddr> =
            (0..64).filter_map(|_| b.pick(at(200), &mut rng)).collect();
        assert_eq!(picks, [x, y].into());
        b.sync(at(200), 2, None);
        assert_eq!(
            b.pick(at(200), &mut rng),
            None,
            "an empty list picks nothing"
        );
    }

    #[test]
    fn the_master_drops_a_dead_agent_75_to_90_s_after_the_crash_and_hosts_follow_their_polls() {
        let cfg = BaselineConfig::default();
        let crash = at(5_000);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let crash_at = vec![None, Some(crash), Some(crash), Some(crash)];
        let mut drops = Vec::new();
        for _ in 0..50 {
            let d = master_drops_at(&crash_at, &cfg, &mut rng);
            assert_eq!(d[0], None, "a live agent is never dropped");
            drops.extend(d.into_iter().flatten());
        }
        let after: Vec<Duration> = drops.iter().map(|&d| d - crash).collect();
        assert!(after
            .iter()
            .all(|a| (Duration::from_secs(75)..Duration::from_secs(90)).contains(a)));
        assert!(after.iter().any(|a| *a < Duration::from_secs(80)));
        assert!(after.iter().any(|a| *a > Duration::from_secs(85)));

        // A host polling at 2 s + 5 k s, with the master dropping host 1 at 85.5 s: the
        // 5 s cache makes it 90.5 s, and the next poll is at 92 s.
        let setup = BaselineSetup {
            cfg,
            master_drops_at: vec![None, Some(at(85_500))],
        };
        let mut b = PreLashup::with_phase(&setup, Duration::from_secs(2));
        assert_eq!(b.list_drops_at(1), Some(at(92_000)));
        assert_eq!(b.list_drops_at(0), None);
        let t = table(&[dest(0, 0), dest(1, 0)]);
        b.sync(at(91_999), 1, Some(&t));
        assert_eq!(b.list(), [dest(0, 0), dest(1, 0)]);
        b.sync(at(92_000), 1, Some(&t));
        assert_eq!(
            b.list(),
            [dest(0, 0)],
            "the table did not change, the poll did"
        );
        // A poll exactly at the drop plus the cache sees it.
        let mut exact = PreLashup::with_phase(&setup, Duration::from_millis(500));
        assert_eq!(exact.list_drops_at(1), Some(at(90_500)));
        exact.sync(at(90_500), 1, Some(&t));
        assert_eq!(exact.list(), [dest(0, 0)]);
    }

    #[test]
    fn weight_zero_backends_are_not_listed() {
        let mut b = PreLashup::with_phase(&setup(2), Duration::ZERO);
        let t: Destinations = [(dest(0, 0), 0), (dest(1, 0), 1)].into();
        b.sync(at(0), 1, Some(&t));
        assert_eq!(b.list(), [dest(1, 0)]);
    }
}
