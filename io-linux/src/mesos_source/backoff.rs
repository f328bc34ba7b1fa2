//! When to poll next: the interval, the backoff after errors, the jitter. Pure functions.
//!
//! Invariants:
//! - After `k` consecutive failures the base delay is `min(max_backoff, interval × 2^k)`,
//!   never less than `interval` (so `k = 0`, the healthy case, is exactly `interval`), and
//!   never overflows however large `k` grows.
//! - Jitter scales the base delay by a factor in `[0.9, 1.1]` (±10%), so agents started
//!   together drift apart instead of polling in lockstep; a jittered delay may exceed
//!   `max_backoff` by at most 10%.

use std::time::Duration;

/// The spread of the jitter: ±10% of the delay.
pub const JITTER: f64 = 0.1;

/// The delay before the next poll after `failures` consecutive failures (0 after a success).
pub fn base_delay(interval: Duration, max_backoff: Duration, failures: u32) -> Duration {
    // 2^32 × any useful interval is far past any useful cap: stop doubling there.
    let factor = 1u32 << failures.min(31);
    let backoff = interval
        .checked_mul(factor)
        .unwrap_or(Duration::MAX)
        .min(max_backoff);
    backoff.max(interval)
}

/// `delay` scaled by `1 + JITTER × unit`, with `unit` in `[-1, 1]` (clamped; NaN counts as 0).
pub fn jitter(delay: Duration, unit: f64) -> Duration {
    let unit = if unit.is_nan() {
        0.0
    } else {
        unit.clamp(-1.0, 1.0)
    };
    Duration::try_from_secs_f64(delay.as_secs_f64() * (1.0 + JITTER * unit))
        .unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_the_interval_up_to_the_cap_then_stays() {
        let interval = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        let schedule: Vec<u64> = (0..10)
            .map(|k| base_delay(interval, max, k).as_secs())
            .collect();
        assert_eq!(schedule, [2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
        assert_eq!(base_delay(interval, max, u32::MAX), max);
        assert_eq!(base_delay(interval, max, 31), max);
    }

    #[test]
    fn a_cap_below_the_interval_never_polls_faster_than_the_interval() {
        assert_eq!(base_delay(100 * MS, 50 * MS, 0), 100 * MS);
        assert_eq!(base_delay(100 * MS, 50 * MS, 5), 100 * MS);
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let d = base_delay(Duration::MAX / 2, Duration::MAX, 30);
        assert_eq!(d, Duration::MAX);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(10);
        assert_eq!(jitter(d, 0.0), d);
        let near = |a: Duration, b: Duration| (a.as_secs_f64() - b.as_secs_f64()).abs() < 1e-6;
        assert!(near(jitter(d, -1.0), Duration::from_secs(9)));
        assert!(near(jitter(d, 1.0), Duration::from_secs(11)));
        assert!(near(jitter(d, 7.0), Duration::from_secs(11)));
        assert_eq!(jitter(d, f64::NAN), d);
        assert_eq!(jitter(Duration::MAX, 1.0), Duration::MAX);
        for i in -10..=10 {
            let j = jitter(d, f64::from(i) / 10.0);
            assert!(j >= d.mul_f64(0.9 - 1e-9) && j <= d.mul_f64(1.1 + 1e-9));
        }
    }
}
