//! Agent stalls and host freezes: when they start and end, and the intervals kept as
//! their ground truth.
//!
//! Invariant: a host has at most one fault of each kind at a time, and a scheduled one
//! never overlaps the host's planned crash.

use super::*;

impl Ctx<'_> {
    /// Schedules node `i`'s next fault of `kind`, an exponential gap after `after`.
    pub(in crate::sim) fn schedule_fault(&mut self, i: usize, kind: FaultKind, after: Time) {
        let rate = self.cfg().faults.rate_per_min(kind) / 60.0;
        let at = after + exponential(&mut self.n(i).rng, rate);
        let host = &mut self.n(i).host;
        match kind {
            FaultKind::AgentStall => host.next_stall_at = Some(at),
            FaultKind::HostFreeze => host.next_freeze_at = Some(at),
        }
        self.schedule(i, at, EventKind::FaultStart { node: i, kind });
    }

    pub(super) fn fault_start(&mut self, i: usize, kind: FaultKind) {
        let now = self.now;
        let (lo, hi) = self.cfg().faults.bounds(kind);
        let (lo, hi) = (
            lo.as_secs_f64().max(1e-6).ln(),
            hi.as_secs_f64().max(1e-6).ln(),
        );
        let length = Duration::from_secs_f64(self.n(i).rng.random_range(lo..=hi.max(lo)).exp());
        let end = now + length;
        let window = self.cfg().faults.attribution_window;
        let over_crash = self
            .r(i)
            .host
            .planned_crash
            .is_some_and(|c| c >= now && c <= end + window);
        if over_crash || !self.begin_fault(i, kind, length) {
            self.schedule_fault(i, kind, now);
            return;
        }
        self.schedule_fault(i, kind, end);
    }

    /// Starts a stall or freeze of node `i` now, unless it is dead or already in one of
    /// that kind; returns whether it started.
    pub(in crate::sim) fn begin_fault(
        &mut self,
        i: usize,
        kind: FaultKind,
        length: Duration,
    ) -> bool {
        let now = self.now;
        let end = now + length;
        let host = &self.r(i).host;
        let busy = match kind {
            FaultKind::AgentStall => host.stalled_until > now,
            FaultKind::HostFreeze => host.frozen_until > now,
        };
        if !self.is_alive(i) || busy {
            return false;
        }
        let host = &mut self.n(i).host;
        match kind {
            FaultKind::AgentStall => host.stalled_until = end,
            FaultKind::HostFreeze => host.frozen_until = end,
        }
        host.faults.push(FaultInterval {
            kind,
            start: now,
            end,
            declared_down: false,
            restored_at: None,
        });
        let tag = match kind {
            FaultKind::AgentStall => 6,
            FaultKind::HostFreeze => 7,
        };
        self.trace_event(i, tag, i as u64, length.as_nanos() as u64, 0);
        self.schedule(i, end, EventKind::FaultEnd { node: i, kind });
        // It no longer counts among the observers a restored host must be seen reachable
        // by again, since it cannot see anything until it runs again.
        for shard in 0..self.common.shards() {
            let seq = self.n(i).next_seq();
            self.local.mail[shard].push(Mail {
                at: now,
                source: i as u32,
                seq,
                kind: MailKind::Stopped { observer: i },
            });
        }
        true
    }

    pub(super) fn fault_end(&mut self, i: usize, kind: FaultKind) {
        let now = self.now;
        if !self.is_alive(i) {
            return;
        }
        match kind {
            // The agent accepts whatever the kernel queued for it.
            FaultKind::AgentStall => self.n(i).host.accept_queue = 0,
            FaultKind::HostFreeze => {
                if self.r(i).host.down_seen_by.is_empty() {
                    self.check_restored(i, now);
                }
            }
        }
        self.pump(i);
    }
}
