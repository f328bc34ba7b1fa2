//! The baseline the paper compares against: active failure detection only, the way a
//! host balanced before it had membership (the pre-Lashup approach).
//!
//! The host watches its own connections. A destination whose connection attempts fail
//! `threshold` times in a row is marked down for a backoff; when the backoff ends the
//! destination takes connections again, and the first of them is the probe: a success
//! clears the destination, a failure marks it down again with the backoff doubled (up to
//! `max_backoff`). The host learns that an attempt failed when the client gives up on it
//! (its connect timeout) and that one succeeded when the handshake completes.
//!
//! Invariant: a destination is down exactly while `now < down_until`; the consecutive
//! failure count only resets on a success.

use minuteman_core::Time;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How eagerly the baseline gives up on a destination.
#[derive(Clone, Debug, Serialize)]
pub struct HealthConfig {
    /// Consecutive failed attempts that mark a destination down.
    pub threshold: u32,
    /// The first time down; doubles with every further failure.
    #[serde(serialize_with = "crate::stats::as_millis")]
    pub initial_backoff: Duration,
    #[serde(serialize_with = "crate::stats::as_millis")]
    pub max_backoff: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            threshold: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct DestHealth {
    consecutive_failures: u32,
    backoff: Option<Duration>,
    down_until: Time,
}

/// One host's view of its destinations' health.
#[derive(Clone, Debug)]
pub struct ActiveHealth {
    cfg: HealthConfig,
    dests: BTreeMap<SocketAddr, DestHealth>,
    /// How many times a destination was marked down.
    pub marked_down: u64,
}

impl ActiveHealth {
    pub fn new(cfg: HealthConfig) -> ActiveHealth {
        ActiveHealth {
            cfg,
            dests: BTreeMap::new(),
            marked_down: 0,
        }
    }

    /// Whether new connections must avoid `dest` at `now`.
    pub fn is_down(&self, now: Time, dest: &SocketAddr) -> bool {
        self.dests.get(dest).is_some_and(|h| now < h.down_until)
    }

    /// A connection to `dest` completed its handshake.
    pub fn on_success(&mut self, dest: SocketAddr) {
        self.dests.remove(&dest);
    }

    /// A connection attempt to `dest` was given up at `now`.
    pub fn on_failure(&mut self, now: Time, dest: SocketAddr) {
        let h = self.dests.entry(dest).or_default();
        h.consecutive_failures += 1;
        if h.consecutive_failures < self.cfg.threshold || now < h.down_until {
            return;
        }
        let backoff = match h.backoff {
            None => self.cfg.initial_backoff,
            Some(b) => (b * 2).min(self.cfg.max_backoff),
        };
        h.backoff = Some(backoff);
        h.down_until = now + backoff;
        self.marked_down += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 9], 20_000))
    }

    #[test]
    fn down_after_the_threshold_then_backoff_doubles_until_a_success() {
        let mut h = ActiveHealth::new(HealthConfig::default());
        let t = Time::from_millis;
        h.on_failure(t(0), dest());
        h.on_failure(t(10), dest());
        assert!(!h.is_down(t(10), &dest()), "two failures are not enough");
        h.on_failure(t(20), dest());
        assert!(h.is_down(t(20), &dest()));
        assert!(!h.is_down(t(1_020), &dest()), "down for 1 s");
        // The probe after the backoff fails: down again, for 2 s.
        h.on_failure(t(1_500), dest());
        assert!(h.is_down(t(3_499), &dest()));
        assert!(!h.is_down(t(3_500), &dest()));
        // Late reports of attempts made before it went down do not extend it.
        h.on_failure(t(2_000), dest());
        assert!(!h.is_down(t(3_500), &dest()));
        assert_eq!(h.marked_down, 2);
        h.on_success(dest());
        h.on_failure(t(4_000), dest());
        assert!(!h.is_down(t(4_000), &dest()), "a success resets the count");
    }

    #[test]
    fn the_backoff_is_capped() {
        let cfg = HealthConfig {
            threshold: 1,
            initial_backoff: Duration::from_secs(40),
            max_backoff: Duration::from_secs(60),
        };
        let mut h = ActiveHealth::new(cfg);
        h.on_failure(Time::ZERO, dest());
        h.on_failure(Time::from_millis(40_000), dest());
        assert!(h.is_down(Time::from_millis(99_999), &dest()));
        assert!(!h.is_down(Time::from_millis(100_000), &dest()));
    }
}
