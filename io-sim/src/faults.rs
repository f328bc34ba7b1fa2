//! Scheduled faults that are not crashes: agent stalls and host freezes, their ground
//! truth, and how false positives are attributed to them.
//!
//! - An **agent stall** stops the minuteman process for a while (a GC-like pause, a
//!   `SIGSTOP`, an overloaded host): its kernel still ACKs TCP segments, which queue in the
//!   socket and are handled in order when the process resumes, and still answers host
//!   probes (until the listener's accept queue is full); its timers fire late, at resume.
//! - A **host freeze** stops the whole host (a hypervisor pause, a live migration, a
//!   stuck kernel): nothing answers, incoming segments are not ACKed (their senders
//!   retransmit on their RTO, so data arrives at the first retransmission after the thaw),
//!   its own retransmissions, timers and kernel updates happen late, at the thaw.
//!
//! Each node draws its own faults: starts form a Poisson process of `rate` per simulated
//! minute (the next start is drawn from the end of the previous fault, so one node's
//! faults of one kind never overlap), durations are log-uniform in `[min, max]` (short
//! pauses are more common than long ones; a log-uniform spreads them evenly over each
//! factor of ten). Faults start from `from` (after the cluster converged), only on a live
//! node, and never over a crash the run planned for that node.
//!
//! Attribution: a false positive (a live host reported unreachable) is blamed on a host
//! freeze if the target was frozen at the report or within `attribution_window` before
//! it, else on an agent stall by the same rule, else on loss or delay.

use minuteman_core::Time;
use serde::Serialize;
use std::time::Duration;

/// Which fault.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    AgentStall,
    HostFreeze,
}

/// How often and how long faults strike.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Agent stalls per node per simulated minute (0: none).
    pub agent_stalls_per_min: f64,
    /// Host freezes per node per simulated minute (0: none).
    pub host_freezes_per_min: f64,
    /// No fault starts before this time.
    pub from: Duration,
    pub stall_min: Duration,
    pub stall_max: Duration,
    pub freeze_min: Duration,
    pub freeze_max: Duration,
    /// A report this long after a fault ended is still blamed on it.
    pub attribution_window: Duration,
    /// A freeze shorter than this is "short" (a failure detector should ride it out).
    pub short_freeze: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            agent_stalls_per_min: 0.0,
            host_freezes_per_min: 0.0,
            from: Duration::from_secs(3),
            stall_min: Duration::from_millis(100),
            stall_max: Duration::from_secs(3),
            freeze_min: Duration::from_millis(50),
            freeze_max: Duration::from_secs(1),
            attribution_window: Duration::from_secs(1),
            short_freeze: Duration::from_millis(150),
        }
    }
}

impl FaultConfig {
    pub fn rate_per_min(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::AgentStall => self.agent_stalls_per_min,
            FaultKind::HostFreeze => self.host_freezes_per_min,
        }
    }

    pub fn bounds(&self, kind: FaultKind) -> (Duration, Duration) {
        match kind {
            FaultKind::AgentStall => (self.stall_min, self.stall_max),
            FaultKind::HostFreeze => (self.freeze_min, self.freeze_max),
        }
    }
}

/// One fault that happened (ground truth).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultInterval {
    pub kind: FaultKind,
    #[serde(serialize_with = "time_ms")]
    pub start: Time,
    /// When it ended (cut short if the node crashed during it).
    #[serde(serialize_with = "time_ms")]
    pub end: Time,
    /// Some live node reported the host unreachable during it or within the attribution
    /// window after it.
    pub declared_down: bool,
    /// For a declared-down fault: when every live node saw the host reachable again
    /// (after `end`).
    #[serde(serialize_with = "opt_time_ms")]
    pub restored_at: Option<Time>,
}

fn time_ms<S: serde::Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(t.as_millis_f64())
}

fn opt_time_ms<S: serde::Serializer>(t: &Option<Time>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.as_millis_f64()),
        None => s.serialize_none(),
    }
}

/// Why a live host was reported unreachable, from ground truth.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FpCause {
    AgentStall,
    HostFreeze,
    /// Neither: the network (loss, latency, partitions) or the detector itself.
    LossOrDelay,
}

/// The fault (if any) a report about a host at `at` is blamed on: its latest interval of
/// the preferred kind that overlaps `[at - window, at]`.
pub fn attribute(log: &[FaultInterval], at: Time, window: Duration) -> (FpCause, Option<usize>) {
    let overlaps = |f: &FaultInterval| f.start <= at && f.end + window >= at;
    for (kind, cause) in [
        (FaultKind::HostFreeze, FpCause::HostFreeze),
        (FaultKind::AgentStall, FpCause::AgentStall),
    ] {
        if let Some(i) = log.iter().rposition(|f| f.kind == kind && overlaps(f)) {
            return (cause, Some(i));
        }
    }
    (FpCause::LossOrDelay, None)
}

/// False positives by cause.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FpByCause {
    pub agent_stall: usize,
    pub host_freeze: usize,
    pub loss_or_delay: usize,
}

impl FpByCause {
    pub fn of(causes: impl Iterator<Item = FpCause>) -> FpByCause {
        let mut by = FpByCause::default();
        for cause in causes {
            match cause {
                FpCause::AgentStall => by.agent_stall += 1,
                FpCause::HostFreeze => by.host_freeze += 1,
                FpCause::LossOrDelay => by.loss_or_delay += 1,
            }
        }
        by
    }
}

/// Agent stalls of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StallReport {
    pub count: usize,
    /// Stalls during or after which some node reported the host unreachable.
    pub declared_down: usize,
}

/// Host freezes of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FreezeReport {
    pub count: usize,
    /// Freezes shorter than 150 ms.
    pub short: usize,
    /// Short freezes during or after which some node reported the host unreachable.
    pub short_declared_down: usize,
    /// All freezes during or after which some node reported the host unreachable.
    pub declared_down: usize,
    /// Over the declared-down freezes: the longest time from the thaw until every live
    /// node saw the host reachable again (`None`: none was declared down). A freeze not
    /// restored by the end of the run counts until the end, and is counted in
    /// `unrestored`.
    pub restore_ms_max: Option<f64>,
    pub unrestored: usize,
}

impl StallReport {
    pub fn of(logs: &[Vec<FaultInterval>]) -> StallReport {
        let stalls = logs
            .iter()
            .flatten()
            .filter(|f| f.kind == FaultKind::AgentStall);
        let mut r = StallReport::default();
        for f in stalls {
            r.count += 1;
            r.declared_down += usize::from(f.declared_down);
        }
        r
    }
}

impl FreezeReport {
    pub fn of(logs: &[Vec<FaultInterval>], short: Duration, end: Time) -> FreezeReport {
        let mut r = FreezeReport::default();
        let freezes = logs
            .iter()
            .flatten()
            .filter(|f| f.kind == FaultKind::HostFreeze);
        for f in freezes {
            r.count += 1;
            let is_short = f.end - f.start < short;
            r.short += usize::from(is_short);
            if !f.declared_down {
                continue;
            }
            r.declared_down += 1;
            r.short_declared_down += usize::from(is_short);
            let restored = f.restored_at.unwrap_or_else(|| {
                r.unrestored += 1;
                end.max(f.end)
            });
            let ms = (restored - f.end).as_secs_f64() * 1e3;
            r.restore_ms_max = Some(r.restore_ms_max.map_or(ms, |m: f64| m.max(ms)));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(kind: FaultKind, start: u64, end: u64) -> FaultInterval {
        FaultInterval {
            kind,
            start: Time::from_millis(start),
            end: Time::from_millis(end),
            declared_down: false,
            restored_at: None,
        }
    }

    #[test]
    fn reports_are_blamed_on_a_freeze_first_then_a_stall_within_the_window() {
        let log = vec![
            interval(FaultKind::AgentStall, 1_000, 2_000),
            interval(FaultKind::HostFreeze, 1_500, 1_600),
        ];
        let w = Duration::from_secs(1);
        let at = |ms| Time::from_millis(ms);
        assert_eq!(attribute(&log, at(900), w).0, FpCause::LossOrDelay);
        assert_eq!(attribute(&log, at(1_200), w).0, FpCause::AgentStall);
        assert_eq!(
            attribute(&log, at(2_500), w),
            (FpCause::HostFreeze, Some(1))
        );
        assert_eq!(
            attribute(&log, at(2_900), w),
            (FpCause::AgentStall, Some(0))
        );
        assert_eq!(attribute(&log, at(3_001), w).0, FpCause::LossOrDelay);
    }

    #[test]
    fn the_freeze_report_counts_short_ones_and_the_slowest_restore() {
        let mut a = interval(FaultKind::HostFreeze, 1_000, 1_100);
        a.declared_down = true;
        a.restored_at = Some(Time::from_millis(1_400));
        let b = interval(FaultKind::HostFreeze, 5_000, 5_900);
        let mut c = interval(FaultKind::HostFreeze, 7_000, 7_500);
        c.declared_down = true;
        c.restored_at = Some(Time::from_millis(8_000));
        let logs = vec![vec![a, b], vec![c, interval(FaultKind::AgentStall, 1, 2)]];
        let r = FreezeReport::of(&logs, Duration::from_millis(150), Time::from_millis(9_000));
        assert_eq!(
            r,
            FreezeReport {
                count: 3,
                short: 1,
                short_declared_down: 1,
                declared_down: 2,
                restore_ms_max: Some(500.0),
                unrestored: 0,
            }
        );
        assert_eq!(StallReport::of(&logs).count, 1);
    }
}
