//! Adaptive ping: the failure detector of one active link.
//!
//! See [`crate::config::PingConfig`] for the algorithm. The monitor is a tiny state machine
//! of its own: `on_heard` / `on_pong` in, `poll(now)` tells whether to send a ping now and
//! whether the link is dead, `next_deadline` says when to call `poll` again.
//!
//! Invariants: the RTT window holds at most `rtt_window` samples; the timeout always lies in
//! `[timeout_floor, timeout_ceiling]`; a link is declared dead only after the initial deadline
//! and every suspicion probe went unanswered (nothing at all heard from the peer).

use crate::config::PingConfig;
use crate::time::Time;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Answering; `outstanding` is the deadline of the last unanswered ping, if any.
    Healthy { outstanding: Option<Time> },
    /// A deadline was missed: probing.
    Suspect { probes_sent: u32, next_probe: Time },
}

/// What the link owner must do after [`LinkMonitor::poll`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkAction {
    pub send_ping: bool,
    pub dead: bool,
}

/// Failure detector of one active link.
#[derive(Clone, Debug)]
pub struct LinkMonitor {
    rtts: VecDeque<Duration>,
    /// Largest sample in `rtts` (kept so the timeout is O(1)).
    max_rtt: Option<Duration>,
    last_heard: Time,
    next_ping: Time,
    state: State,
    /// When the last probe went out; the link dies one timeout after it.
    last_probe: Time,
    /// Send time of the newest ping, and of the newest one answered: a PONG gives an RTT
    /// sample only for a ping in between, so a duplicated or replayed PONG cannot feed an
    /// old (huge) sample into the window.
    last_ping_sent: Option<Time>,
    last_ping_answered: Option<Time>,
}

impl LinkMonitor {
    /// A monitor for a link opened at `now`; the first ping goes out at `first_ping`.
    pub fn new(now: Time, first_ping: Time) -> LinkMonitor {
        LinkMonitor {
            rtts: VecDeque::new(),
            max_rtt: None,
            last_heard: now,
            next_ping: first_ping,
            state: State::Healthy { outstanding: None },
            last_probe: now,
            last_ping_sent: None,
            last_ping_answered: None,
        }
    }

    /// A monitor whose window starts with `estimate` as its one sample (the largest RTT
    /// of the node's other links): without it a fresh link would wait for the timeout
    /// ceiling until its first answer, and a peer that dies right after linking would be
    /// noticed a second late.
    pub fn with_estimate(now: Time, first_ping: Time, estimate: Option<Duration>) -> LinkMonitor {
        let mut monitor = LinkMonitor::new(now, first_ping);
        if let Some(rtt) = estimate {
            monitor.rtts.push_back(rtt);
            monitor.max_rtt = Some(rtt);
        }
        monitor
    }

    /// Anything arrived from the peer: it is alive.
    pub fn on_heard(&mut self, now: Time) {
        self.last_heard = self.last_heard.max(now);
        self.state = State::Healthy { outstanding: None };
    }

    /// A PONG echoing `echo` (our send time, in nanoseconds) arrived.
    pub fn on_pong(&mut self, now: Time, echo: u64, cfg: &PingConfig) {
        let sent = Time::from_nanos(echo);
        let fresh = self.last_ping_sent.is_some_and(|last| sent <= last)
            && self
                .last_ping_answered
                .is_none_or(|answered| sent > answered);
        if fresh && sent <= now {
            self.last_ping_answered = Some(sent);
            let sample = now - sent;
            let evicted = if self.rtts.len() >= cfg.rtt_window.max(1) {
                self.rtts.pop_front()
            } else {
                None
            };
            self.rtts.push_back(sample);
            self.max_rtt = if evicted.is_some() && evicted == self.max_rtt {
                self.rtts.iter().max().copied()
            } else {
                Some(self.max_rtt.map_or(sample, |m| m.max(sample)))
            };
        }
        self.on_heard(now);
    }

    /// The current deadline for an answer.
    pub fn timeout(&self, cfg: &PingConfig) -> Duration {
        match self.max_rtt {
            None => cfg.timeout_ceiling,
            Some(max) => max.saturating_mul(cfg.rtt_multiplier).clamp(
                cfg.timeout_floor,
                cfg.timeout_ceiling.max(cfg.timeout_floor),
            ),
        }
    }

    /// Largest RTT in the window, if any sample yet.
    pub fn max_rtt(&self) -> Option<Duration> {
        self.max_rtt
    }

    pub fn is_suspect(&self) -> bool {
        matches!(self.state, State::Suspect { .. })
    }

    /// Starts the suspicion step now (a cascading check: someone else dropped this peer).
    pub fn suspect(&mut self, now: Time) {
        if let State::Healthy { .. } = self.state {
            self.state = State::Suspect {
                probes_sent: 0,
                next_probe: now,
            };
        }
    }

    /// Advances the monitor to `now`.
    pub fn poll(&mut self, now: Time, cfg: &PingConfig) -> LinkAction {
        let timeout = self.timeout(cfg);
        let mut action = LinkAction::default();
        if let State::Healthy {
            outstanding: Some(deadline),
        } = self.state
        {
            if now >= deadline {
                self.state = State::Suspect {
                    probes_sent: 0,
                    next_probe: now,
                };
            }
        }
        match self.state {
            State::Healthy { outstanding } => {
                if now >= self.next_ping {
                    action.send_ping = true;
                    self.next_ping = now + cfg.interval;
                    if outstanding.is_none() {
                        self.state = State::Healthy {
                            outstanding: Some(now + timeout),
                        };
                    }
                }
            }
            State::Suspect {
                probes_sent,
                next_probe,
            } => {
                let probes = cfg.suspicion_probes.max(1);
                if probes_sent < probes && now >= next_probe {
                    action.send_ping = true;
                    self.last_probe = now;
                    self.state = State::Suspect {
                        probes_sent: probes_sent + 1,
                        next_probe: now + timeout / probes,
                    };
                    self.next_ping = now + cfg.interval;
                } else if probes_sent >= probes && now >= self.last_probe + timeout {
                    action.dead = true;
                }
            }
        }
        if action.send_ping {
            self.last_ping_sent = Some(now);
        }
        action
    }

    /// When [`LinkMonitor::poll`] next has something to do.
    pub fn next_deadline(&self, cfg: &PingConfig) -> Time {
        match self.state {
            State::Healthy { outstanding } => match outstanding {
                Some(deadline) => deadline.min(self.next_ping),
                None => self.next_ping,
            },
            State::Suspect {
                probes_sent,
                next_probe,
            } => {
                if probes_sent < cfg.suspicion_probes.max(1) {
                    next_probe
                } else {
                    self.last_probe + self.timeout(cfg)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    /// The PONG to a ping sent at `sent` arrives at `now`.
    fn pong(m: &mut LinkMonitor, now: Time, sent: Time, cfg: &PingConfig) {
        m.last_ping_sent = m.last_ping_sent.max(Some(sent));
        m.on_pong(now, sent.as_nanos(), cfg);
    }

    /// Drives a monitor whose peer never answers; returns when it was declared dead.
    fn time_to_death(monitor: &mut LinkMonitor, from: Time, cfg: &PingConfig) -> Time {
        let mut now = from;
        loop {
            let action = monitor.poll(now, cfg);
            if action.dead {
                return now;
            }
            now = monitor.next_deadline(cfg);
        }
    }

    #[test]
    fn timeout_adapts_within_bounds() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0));
        assert_eq!(m.timeout(&cfg), cfg.timeout_ceiling);
        pong(&mut m, ms(1), ms(0), &cfg);
        assert_eq!(m.timeout(&cfg), cfg.timeout_floor);
        pong(&mut m, ms(1000), ms(700), &cfg);
        assert_eq!(m.timeout(&cfg), cfg.timeout_ceiling);
        // A bogus echo from the future is not a sample.
        m.on_pong(ms(1000), u64::MAX, &cfg);
        assert_eq!(m.rtts.len(), 2);
    }

    #[test]
    fn a_replayed_or_duplicated_pong_gives_no_sample() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0));
        pong(&mut m, ms(1), ms(0), &cfg);
        pong(&mut m, ms(101), ms(100), &cfg);
        assert_eq!(m.rtts.len(), 2);
        // The PONG of the ping at 0 ms again, 10 s later: no 10 s sample.
        m.on_pong(ms(10_000), 0, &cfg);
        m.on_pong(ms(10_000), ms(100).as_nanos(), &cfg);
        assert_eq!(m.rtts.len(), 2);
        assert_eq!(m.timeout(&cfg), cfg.timeout_floor);
        // A PONG for a ping never sent is no sample either.
        m.on_pong(ms(10_000), ms(5_000).as_nanos(), &cfg);
        assert_eq!(m.rtts.len(), 2);
    }

    #[test]
    fn window_is_bounded() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0));
        for i in 0..1000 {
            pong(&mut m, ms(i), ms(i), &cfg);
        }
        assert_eq!(m.rtts.len(), cfg.rtt_window);
    }

    #[test]
    fn silent_peer_dies_after_probes() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0));
        pong(&mut m, ms(1), ms(0), &cfg);
        let dead = time_to_death(&mut m, ms(1), &cfg);
        // ping at 1 ms, deadline 31, probes at 31, 38.5, 46, 53.5, dead at 83.5.
        assert!(dead > ms(60) && dead < ms(100), "dead at {dead}");
    }

    #[test]
    fn any_answer_during_suspicion_saves_the_link() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0));
        pong(&mut m, ms(1), ms(0), &cfg);
        let mut now = ms(1);
        let mut probes = 0;
        while probes < 3 {
            let a = m.poll(now, &cfg);
            assert!(!a.dead);
            if a.send_ping && m.is_suspect() {
                probes += 1;
            }
            now = m.next_deadline(&cfg);
        }
        m.on_heard(now);
        assert!(!m.is_suspect());
        assert!(!m.poll(now, &cfg).dead);
    }

    #[test]
    fn cascade_suspicion_is_faster_than_waiting() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(50));
        pong(&mut m, ms(1), ms(0), &cfg);
        m.suspect(ms(10));
        let dead = time_to_death(&mut m, ms(10), &cfg);
        assert!(dead <= ms(10) + cfg.timeout_floor * 2, "dead at {dead}");
    }
}
