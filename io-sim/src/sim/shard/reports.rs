//! What hosts report of each other, against the ground truth: a report that a host is
//! unreachable counts as a detection or a false positive, a host seen reachable again by
//! every observer has its faults restored; reports about another shard's host travel as
//! mail.
//!
//! Invariant: mail acts in `(time, source, seq)` order at a window boundary and schedules
//! nothing.

use super::*;

impl Ctx<'_> {
    pub(super) fn observe(&mut self, observer: usize, event: Event) {
        if self.common.watch.contains(&observer) {
            eprintln!("{} {} {event:?}", self.now, self.r(observer).id);
        }
        let now = self.now;
        match event {
            Event::Unreachable(target) => {
                if let Some(t) = self.common.index.get(&target.addr).copied() {
                    let window = self.cfg().faults.attribution_window;
                    let observer_fault = attribute(&self.r(observer).host.faults, now, window).0;
                    let observer_id = self.r(observer).id;
                    self.mail(
                        observer,
                        t,
                        MailKind::Unreachable {
                            observer,
                            observer_id,
                            observer_fault,
                            target,
                            t,
                        },
                    );
                }
                let slot = self.n(observer);
                if slot.pending.remove(&target) && slot.pending.is_empty() {
                    slot.done_at = Some(now);
                }
            }
            Event::Reachable(target) => {
                if let Some(t) = self.common.index.get(&target.addr).copied() {
                    self.mail(
                        observer,
                        t,
                        MailKind::Reachable {
                            observer,
                            target,
                            t,
                        },
                    );
                }
                if self
                    .common
                    .crashed
                    .as_ref()
                    .is_some_and(|c| c.contains(&target))
                {
                    let slot = self.n(observer);
                    slot.pending.insert(target);
                    slot.done_at = None;
                }
            }
            Event::AgentStalled(_) => self.local.agent_stalled_reports += 1,
            Event::IncarnationChanged { new, .. } => {
                // The node became a newer incarnation (it had lost its state): its timers
                // and Mesos polls follow the new epoch.
                let slot = self.n(observer);
                slot.id = new;
                slot.timer = None;
                self.trace_event(observer, 10, observer as u64, new.epoch, 0);
                if let Some(world) = self.world.as_ref() {
                    let at = now + world.cfg.poll_interval;
                    let (node, epoch) = (observer, new.epoch);
                    self.schedule(observer, at, EventKind::Poll { node, epoch });
                }
            }
            Event::NeighborUp(_) | Event::NeighborDown(..) | Event::AgentResumed(_) => {}
        }
    }

    /// Applies `mail`, addressed to this shard's hosts from any shards, in `(time, source,
    /// seq)` order, the order the serial schedule produced, whatever order the senders
    /// posted it in (that order depends on how the hosts are split); leaves it empty.
    /// The keys are unique (a host numbers what it sends), so the sort is total.
    pub(in crate::sim) fn apply_mail_in_order(&mut self, mail: &mut Vec<Mail>) {
        mail.sort_unstable_by_key(Mail::key);
        for m in mail.drain(..) {
            self.apply_mail(m);
        }
    }

    /// Applies one piece of mail addressed to this shard's hosts (at the window boundary;
    /// schedules nothing).
    fn apply_mail(&mut self, mail: Mail) {
        let at = mail.at;
        match mail.kind {
            MailKind::Refused(refusal) => {
                if let Some(tcp) = self.local.tcp.as_mut() {
                    tcp.on_refused(&refusal, &mut self.nodes[refusal.from - self.base].tcp);
                }
            }
            MailKind::Unreachable {
                observer,
                observer_id,
                observer_fault,
                target,
                t,
            } => {
                if self.r(t).id != target || !self.is_alive(t) {
                    return;
                }
                let window = self.cfg().faults.attribution_window;
                let host = &mut self.n(t).host;
                let (cause, fault) = attribute(&host.faults, at, window);
                // A report by an observer that was itself stalled or frozen in the
                // window says more about the observer than about this host's fault:
                // it counts as a false positive, not as this fault declared down.
                let observer_sound = observer_fault == FpCause::LossOrDelay;
                if let (Some(f), true) = (fault, observer_sound) {
                    host.faults[f].declared_down = true;
                }
                if observer_sound {
                    host.down_seen_by.insert(observer);
                }
                self.local.false_positives.push(FalsePositive {
                    at,
                    observer: observer_id,
                    target,
                    cause,
                    observer_fault,
                });
            }
            MailKind::Reachable {
                observer,
                target,
                t,
            } => {
                if self.r(t).id == target && self.n(t).host.down_seen_by.remove(&observer) {
                    self.check_restored(t, at);
                }
            }
            MailKind::Stopped { observer } => {
                let hosts = self.base..self.base + self.nodes.len();
                for t in hosts {
                    if self.common.shard_of(t) == self.shard
                        && t != observer
                        && self.n(t).host.down_seen_by.remove(&observer)
                    {
                        self.check_restored(t, at);
                    }
                }
            }
        }
    }

    /// If no live node sees host `t` unreachable any more, its declared-down faults that
    /// have ended are restored at `now`.
    pub(in crate::sim) fn check_restored(&mut self, t: usize, now: Time) {
        let host = &mut self.n(t).host;
        if !host.down_seen_by.is_empty() {
            return;
        }
        for f in host.faults.iter_mut().rev() {
            if f.declared_down && f.restored_at.is_none() && f.end <= now {
                f.restored_at = Some(now);
            }
        }
    }
}
