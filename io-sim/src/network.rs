//! The simulated network: who can talk to whom, and how long each packet takes.
//!
//! Two latency models:
//! - [`Latency::Pingmesh`] (the default, realistic): a packet's one-way latency is half
//!   of a round-trip time drawn from a fit to Pingmesh's intra-datacenter measurements
//!   (Guo et al., SIGCOMM 2015): RTT p50 0.25 ms, p99 1.3 ms, p99.99 in the tens of ms
//!   (see [`PingmeshFit`] and `docs/simulator.md`), plus a background drop rate of 1e-4
//!   (Pingmesh: 1e-4 to 1e-5 within a datacenter);
//! - [`Latency::Lan`] (the `ideal` network, the model every run used before): one-way
//!   latency = `link factor × lognormal(median, sigma)`, plus, with probability
//!   `tail_probability`, an extra delay uniform in `[0, tail_extra]`. With the ideal
//!   defaults (median 250 µs, sigma 0.5, 0.1% tail up to 4 ms) the p50 is 0.25 ms, the
//!   p99 about 0.8 ms and the max a few ms. The link factor is a fixed per-pair
//!   multiplier in `[1 - link_spread, 1 + link_spread]`, derived from the run seed and
//!   the pair, so some links are consistently slower.
//!
//! Under both, no packet takes less than [`NetConfig::min_one_way`] (20 µs by default),
//! the simulator's lookahead.
//!
//! In both, every packet is independently lost with probability `loss` (on top of
//! `background_loss`), and delayed by an extra uniform `[0, reorder_extra]` with
//! probability `reorder`. Over datagrams ([`Network::transmit`], the ideal network) a
//! packet is also duplicated with probability `duplicate`, and jitter reorders packets;
//! over TCP ([`crate::tcp`], the default) the transport keeps order, retransmits what was
//! lost and drops duplicates, so `duplicate` does not apply.
//!
//! Partitions: every node sits on a side (all on side 0 when healed); packets between
//! sides are dropped. One-way blocks drop packets from `a` to `b` only.
//!
//! Invariant: every decision is drawn from the generator the caller passes (the sending
//! host's own stream in the simulator), so the same seed gives the same packets.

use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use std::collections::BTreeSet;
use std::time::Duration;

use crate::tcp::TcpConfig;

/// Which latency distribution packets follow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// `latency_median`, `latency_sigma`, `tail_probability`, `tail_extra`, `link_spread`
    /// (the ideal network's model).
    Lan,
    /// Half of a round-trip time drawn from the fit (the realistic default).
    Pingmesh(PingmeshFit),
}

/// Round-trip times fitted to Pingmesh's intra-datacenter percentiles: a lognormal body
/// (median `median`, shape `sigma`) and, with probability `tail_probability`, an outlier
/// log-uniform in `[tail_min, tail_max]`. The defaults give RTT p50 0.25 ms, p90 0.62 ms,
/// p99 1.31 ms, p99.9 2.8 ms, p99.99 34 ms, max 50 ms (checked by a unit test).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PingmeshFit {
    pub median: Duration,
    pub sigma: f64,
    pub tail_probability: f64,
    pub tail_min: Duration,
    pub tail_max: Duration,
}

impl Default for PingmeshFit {
    fn default() -> Self {
        PingmeshFit {
            median: Duration::from_micros(250),
            sigma: 0.70,
            tail_probability: 1e-3,
            tail_min: Duration::from_millis(1),
            tail_max: Duration::from_millis(50),
        }
    }
}

impl PingmeshFit {
    /// One round-trip time, in nanoseconds.
    pub fn sample_rtt_ns(&self, body: &LogNormal<f64>, rng: &mut impl Rng) -> f64 {
        if rng.random_bool(self.tail_probability.clamp(0.0, 1.0)) {
            let lo = (self.tail_min.as_nanos() as f64).max(1.0).ln();
            let hi = (self.tail_max.as_nanos() as f64).max(1.0).ln();
            rng.random_range(lo..=hi.max(lo)).exp()
        } else {
            body.sample(rng)
        }
    }

    fn body(&self) -> LogNormal<f64> {
        let median_ns = self.median.as_nanos() as f64;
        LogNormal::new(median_ns.max(1.0).ln(), self.sigma.max(0.0))
            .expect("lognormal parameters are finite")
    }
}

/// Parameters of the network model.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub latency_model: Latency,
    /// Drop probability every packet has before `loss` (Pingmesh: 1e-4 to 1e-5).
    pub background_loss: f64,
    /// The transport between the cores: TCP (in order, retransmitted) or, `None`,
    /// independent datagrams (the ideal network).
    pub tcp: Option<TcpConfig>,
    pub latency_median: Duration,
    pub latency_sigma: f64,
    pub tail_probability: f64,
    pub tail_extra: Duration,
    pub link_spread: f64,
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub reorder_extra: Duration,
    /// The least one-way latency of any packet (a floor under both models): the
    /// simulator's lookahead. Hosts are independent of each other for this long, which
    /// is what lets the simulator run them on several threads (see [`crate::sim`]).
    pub min_one_way: Duration,
}

impl Default for NetConfig {
    /// The realistic network: Pingmesh latencies, background loss, TCP.
    fn default() -> Self {
        NetConfig {
            latency_model: Latency::Pingmesh(PingmeshFit::default()),
            background_loss: 1e-4,
            tcp: Some(TcpConfig::default()),
            link_spread: 0.0,
            ..NetConfig::ideal()
        }
    }
}

impl NetConfig {
    /// The ideal network, exactly the model every run used before the realistic one:
    /// a LAN lognormal with a short tail, no background loss, datagrams.
    pub fn ideal() -> NetConfig {
        NetConfig {
            latency_model: Latency::Lan,
            background_loss: 0.0,
            tcp: None,
            latency_median: Duration::from_micros(250),
            latency_sigma: 0.5,
            tail_probability: 0.001,
            tail_extra: Duration::from_millis(4),
            link_spread: 0.2,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_extra: Duration::from_millis(2),
            min_one_way: MIN_ONE_WAY,
        }
    }

    /// The realistic network with lossy, jittery links: `loss` per packet (on top of the
    /// background loss) and 1% of packets delayed by up to 2 ms more.
    pub fn lossy(loss: f64) -> NetConfig {
        NetConfig {
            loss,
            reorder: 0.01,
            ..NetConfig::default()
        }
    }

    /// The ideal network with lossy, jittery links (the model `lossy` was before).
    pub fn ideal_lossy(loss: f64) -> NetConfig {
        NetConfig {
            loss,
            reorder: 0.01,
            ..NetConfig::ideal()
        }
    }

    /// Whether this is the ideal model (LAN latencies over datagrams).
    pub fn is_ideal(&self) -> bool {
        self.tcp.is_none() && self.latency_model == Latency::Lan
    }

    /// The drop probability of one packet: background and configured loss together.
    pub fn drop_probability(&self) -> f64 {
        let bg = self.background_loss.clamp(0.0, 1.0);
        let loss = self.loss.clamp(0.0, 1.0);
        1.0 - (1.0 - bg) * (1.0 - loss)
    }
}

/// The default floor of one-way latency: 20 µs, about the least a packet takes between
/// two hosts through a top-of-rack switch (Pingmesh's lowest intra-rack round trips are
/// about 40-50 µs). Under the Pingmesh fit about 0.4% of packets would be faster; under the
/// LAN model fewer than 0.01%.
pub const MIN_ONE_WAY: Duration = Duration::from_micros(20);

/// Why a packet was not delivered.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Drop {
    Partitioned,
    Lost,
}

/// The network state: model parameters plus the current partitions.
#[derive(Clone, Debug)]
pub struct Network {
    pub config: NetConfig,
    latency: LogNormal<f64>,
    /// The lognormal body of the Pingmesh fit (unused by the LAN model).
    rtt_body: LogNormal<f64>,
    link_salt: u64,
    side: Vec<u32>,
    one_way: BTreeSet<(usize, usize)>,
}

impl Network {
    pub fn new(config: NetConfig, nodes: usize, link_salt: u64) -> Network {
        let median_ns = config.latency_median.as_nanos() as f64;
        let latency = LogNormal::new(median_ns.max(1.0).ln(), config.latency_sigma.max(0.0))
            .expect("lognormal parameters are finite");
        let rtt_body = match config.latency_model {
            Latency::Pingmesh(fit) => fit.body(),
            Latency::Lan => latency,
        };
        Network {
            config,
            latency,
            rtt_body,
            link_salt,
            side: vec![0; nodes],
            one_way: BTreeSet::new(),
        }
    }

    /// Splits the nodes into sides: `side_of[i]` for node `i`; packets between sides drop.
    pub fn partition(&mut self, side_of: Vec<u32>) {
        assert_eq!(side_of.len(), self.side.len(), "one side per node");
        self.side = side_of;
    }

    /// Drops every packet from `from` to `to` (not the reverse).
    pub fn block_one_way(&mut self, from: usize, to: usize) {
        self.one_way.insert((from, to));
    }

    /// Removes every partition and one-way block.
    pub fn heal(&mut self) {
        self.side.iter_mut().for_each(|s| *s = 0);
        self.one_way.clear();
    }

    pub fn can_reach(&self, from: usize, to: usize) -> bool {
        self.side[from] == self.side[to] && !self.one_way.contains(&(from, to))
    }

    /// The fixed latency multiplier of the (unordered) pair.
    fn link_factor(&self, a: usize, b: usize) -> f64 {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut key = [0u8; 24];
        key[..8].copy_from_slice(&self.link_salt.to_le_bytes());
        key[8..16].copy_from_slice(&(lo as u64).to_le_bytes());
        key[16..].copy_from_slice(&(hi as u64).to_le_bytes());
        let unit = (xxhash_rust::xxh3::xxh3_64(&key) >> 11) as f64 / (1u64 << 53) as f64;
        1.0 + self.config.link_spread * (2.0 * unit - 1.0)
    }

    fn one_latency(&self, rng: &mut impl Rng, factor: f64) -> Duration {
        let mut nanos = match &self.config.latency_model {
            Latency::Lan => {
                let mut nanos = self.latency.sample(rng) * factor;
                if rng.random_bool(self.config.tail_probability.clamp(0.0, 1.0)) {
                    nanos += rng.random_range(0.0..=self.config.tail_extra.as_nanos() as f64);
                }
                nanos
            }
            Latency::Pingmesh(fit) => fit.sample_rtt_ns(&self.rtt_body, rng) / 2.0 * factor,
        };
        if rng.random_bool(self.config.reorder.clamp(0.0, 1.0)) {
            nanos += rng.random_range(0.0..=self.config.reorder_extra.as_nanos() as f64);
        }
        Duration::from_nanos(nanos.max(1.0) as u64).max(self.config.min_one_way)
    }

    /// The least one-way latency of any packet ([`NetConfig::min_one_way`], at least 1 ns).
    pub fn min_one_way(&self) -> Duration {
        self.config.min_one_way.max(Duration::from_nanos(1))
    }

    /// The one-way latency of one packet from `from` to `to` that gets through (no loss,
    /// no partition check): for traffic the simulator models outside the core, such as
    /// the clients' TCP segments.
    pub fn latency(&self, rng: &mut impl Rng, from: usize, to: usize) -> Duration {
        self.one_latency(rng, self.link_factor(from, to))
    }

    /// Decides the fate of one packet that is never duplicated (a TCP segment, a SYN):
    /// its one-way delay, or why it dropped. Loss is background and configured loss
    /// together.
    pub fn packet(&self, rng: &mut impl Rng, from: usize, to: usize) -> Result<Duration, Drop> {
        if !self.can_reach(from, to) {
            return Err(Drop::Partitioned);
        }
        if rng.random_bool(self.config.drop_probability()) {
            return Err(Drop::Lost);
        }
        Ok(self.one_latency(rng, self.link_factor(from, to)))
    }

    /// Decides the fate of one datagram (the ideal network's transport): the delays of its
    /// delivered copies (one, or two if duplicated), or why it dropped.
    pub fn transmit(
        &self,
        rng: &mut impl Rng,
        from: usize,
        to: usize,
        delays: &mut Vec<Duration>,
    ) -> Result<(), Drop> {
        delays.clear();
        if !self.can_reach(from, to) {
            return Err(Drop::Partitioned);
        }
        let loss = if self.config.background_loss > 0.0 {
            self.config.drop_probability()
        } else {
            self.config.loss.clamp(0.0, 1.0)
        };
        if rng.random_bool(loss) {
            return Err(Drop::Lost);
        }
        let factor = self.link_factor(from, to);
        delays.push(self.one_latency(rng, factor));
        if rng.random_bool(self.config.duplicate.clamp(0.0, 1.0)) {
            delays.push(self.one_latency(rng, factor));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn no_packet_is_faster_than_the_floor_under_either_model() {
        for (config, binds) in [
            (NetConfig::default(), true),
            (NetConfig::lossy(0.01), true),
            // The LAN body puts about 2e-7 of its packets below 20 µs: none in this sample.
            (NetConfig::ideal(), false),
        ] {
            let floor = config.min_one_way;
            assert_eq!(floor, MIN_ONE_WAY);
            let net = Network::new(config, 2, 7);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let mut fastest = Duration::MAX;
            for _ in 0..200_000 {
                if let Ok(d) = net.packet(&mut rng, 0, 1) {
                    fastest = fastest.min(d);
                }
                fastest = fastest.min(net.latency(&mut rng, 1, 0));
            }
            assert!(fastest >= floor, "{fastest:?}");
            if binds {
                assert_eq!(fastest, floor, "the Pingmesh fit puts about 0.4% below it");
            }
        }
    }

    #[test]
    fn ideal_latency_is_a_lan() {
        let net = Network::new(NetConfig::ideal(), 2, 7);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut all = Vec::new();
        let mut delays = Vec::new();
        for _ in 0..100_000 {
            net.transmit(&mut rng, 0, 1, &mut delays).unwrap();
            all.extend_from_slice(&delays);
        }
        all.sort();
        let p50 = all[all.len() / 2];
        let p99 = all[all.len() * 99 / 100];
        let max = *all.last().unwrap();
        assert!(
            p50 > Duration::from_micros(180) && p50 < Duration::from_micros(330),
            "{p50:?}"
        );
        assert!(p99 < Duration::from_micros(1200), "{p99:?}");
        assert!(
            max > Duration::from_millis(1) && max < Duration::from_millis(8),
            "{max:?}"
        );
    }

    #[test]
    fn partitions_and_loss_drop() {
        let mut net = Network::new(NetConfig::ideal_lossy(0.5), 3, 7);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut delays = Vec::new();
        let lost = (0..10_000)
            .filter(|_| net.transmit(&mut rng, 0, 1, &mut delays) == Err(Drop::Lost))
            .count();
        assert!((4_500..5_500).contains(&lost), "{lost}");
        net.partition(vec![0, 0, 1]);
        assert_eq!(
            net.transmit(&mut rng, 0, 2, &mut delays),
            Err(Drop::Partitioned)
        );
        net.heal();
        net.block_one_way(0, 2);
        assert_eq!(
            net.transmit(&mut rng, 0, 2, &mut delays),
            Err(Drop::Partitioned)
        );
        assert!(net.can_reach(2, 0));
    }

    /// Nearest-rank percentile of sorted nanoseconds, in milliseconds.
    fn pct_ms(sorted: &[u64], p: f64) -> f64 {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e6
    }

    #[test]
    fn the_pingmesh_fit_has_the_published_percentiles() {
        // Round trips as two one-way halves would mix two samples: check the fitted RTT
        // itself (2 x the one-way latency of one packet on a link of factor 1).
        let net = Network::new(NetConfig::default(), 2, 7);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut rtt: Vec<u64> = (0..2_000_000)
            .map(|_| {
                2 * net
                    .packet(&mut rng, 0, 1)
                    .map_or(0, |d| d.as_nanos() as u64)
            })
            .filter(|&n| n > 0)
            .collect();
        rtt.sort_unstable();
        let (p50, p99) = (pct_ms(&rtt, 50.0), pct_ms(&rtt, 99.0));
        let (p999, p9999) = (pct_ms(&rtt, 99.9), pct_ms(&rtt, 99.99));
        let max = *rtt.last().unwrap() as f64 / 1e6;
        assert!((0.23..0.27).contains(&p50), "p50 {p50}");
        assert!((1.2..1.4).contains(&p99), "p99 {p99}");
        assert!((2.0..4.0).contains(&p999), "p99.9 {p999}");
        assert!((20.0..45.0).contains(&p9999), "p99.99 {p9999}");
        assert!(max <= 50.0 + 1e-6 && max > 45.0, "max {max}");
    }

    #[test]
    fn background_loss_adds_to_the_configured_loss() {
        let net = Network::new(NetConfig::lossy(0.01), 2, 7);
        assert!((net.config.drop_probability() - 0.010099).abs() < 1e-9);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let lost = (0..200_000)
            .filter(|_| net.packet(&mut rng, 0, 1) == Err(Drop::Lost))
            .count();
        assert!((1_800..2_250).contains(&lost), "{lost}");
        // The ideal network has no background loss.
        let ideal = Network::new(NetConfig::ideal(), 2, 7);
        assert!(ideal.config.is_ideal());
        assert_eq!(ideal.config.drop_probability(), 0.0);
    }
}
