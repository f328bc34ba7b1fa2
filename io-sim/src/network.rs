//! The simulated network: who can talk to whom, and how long each packet takes.
//!
//! Model (defaults describe a datacenter LAN):
//! - one-way latency of a packet = `link factor × lognormal(median, sigma)`, plus, with
//!   probability `tail_probability`, an extra delay uniform in `[0, tail_extra]`. With the
//!   defaults (median 250 µs, sigma 0.5, 0.1% tail up to 4 ms) the p50 is 0.25 ms, the p99
//!   about 0.8 ms and the max a few ms;
//! - the link factor is a fixed per-pair multiplier in `[1 - link_spread, 1 + link_spread]`,
//!   derived from the run seed and the pair, so some links are consistently slower;
//! - every packet is independently lost with probability `loss`, duplicated with
//!   probability `duplicate` (the copy gets its own latency), and delayed by an extra
//!   uniform `[0, reorder_extra]` with probability `reorder`, which reorders it past later
//!   packets; jitter alone already reorders packets whose latencies overlap;
//! - partitions: every node sits on a side (all on side 0 when healed); packets between
//!   sides are dropped. One-way blocks drop packets from `a` to `b` only.
//!
//! Invariant: every decision is drawn from the simulation's single ChaCha generator, in
//! event order, so the same seed gives the same packets.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use std::collections::BTreeSet;
use std::time::Duration;

/// Parameters of the network model.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub latency_median: Duration,
    pub latency_sigma: f64,
    pub tail_probability: f64,
    pub tail_extra: Duration,
    pub link_spread: f64,
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub reorder_extra: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_median: Duration::from_micros(250),
            latency_sigma: 0.5,
            tail_probability: 0.001,
            tail_extra: Duration::from_millis(4),
            link_spread: 0.2,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_extra: Duration::from_millis(2),
        }
    }
}

impl NetConfig {
    /// A LAN with lossy, jittery links: `loss` per packet and 1% of packets delayed by up
    /// to 2 ms more.
    pub fn lossy(loss: f64) -> NetConfig {
        NetConfig {
            loss,
            reorder: 0.01,
            ..NetConfig::default()
        }
    }
}

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
    link_salt: u64,
    side: Vec<u32>,
    one_way: BTreeSet<(usize, usize)>,
}

impl Network {
    pub fn new(config: NetConfig, nodes: usize, link_salt: u64) -> Network {
        let median_ns = config.latency_median.as_nanos() as f64;
        let latency = LogNormal::new(median_ns.max(1.0).ln(), config.latency_sigma.max(0.0))
            .expect("lognormal parameters are finite");
        Network {
            config,
            latency,
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

    fn one_latency(&self, rng: &mut ChaCha8Rng, factor: f64) -> Duration {
        let mut nanos = self.latency.sample(rng) * factor;
        if rng.random_bool(self.config.tail_probability.clamp(0.0, 1.0)) {
            nanos += rng.random_range(0.0..=self.config.tail_extra.as_nanos() as f64);
        }
        if rng.random_bool(self.config.reorder.clamp(0.0, 1.0)) {
            nanos += rng.random_range(0.0..=self.config.reorder_extra.as_nanos() as f64);
        }
        Duration::from_nanos(nanos.max(1.0) as u64)
    }

    /// The one-way latency of one packet from `from` to `to` that gets through (no loss,
    /// no partition check): for traffic the simulator models outside the core, such as
    /// the clients' TCP segments.
    pub fn latency(&self, rng: &mut ChaCha8Rng, from: usize, to: usize) -> Duration {
        self.one_latency(rng, self.link_factor(from, to))
    }

    /// Decides the fate of one packet: the delays of its delivered copies (one, or two if
    /// duplicated), or why it dropped.
    pub fn transmit(
        &self,
        rng: &mut ChaCha8Rng,
        from: usize,
        to: usize,
        delays: &mut Vec<Duration>,
    ) -> Result<(), Drop> {
        delays.clear();
        if !self.can_reach(from, to) {
            return Err(Drop::Partitioned);
        }
        if rng.random_bool(self.config.loss.clamp(0.0, 1.0)) {
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

    #[test]
    fn default_latency_is_a_lan() {
        let net = Network::new(NetConfig::default(), 2, 7);
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
        let mut net = Network::new(NetConfig::lossy(0.5), 3, 7);
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
}
