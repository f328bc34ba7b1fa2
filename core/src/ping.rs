//! Adaptive ping: the failure detector of one active link.
//!
//! See [`crate::config::PingConfig`] for the algorithm. The monitor is a tiny state machine
//! of its own: `on_heard` / `on_pong` in, `poll(now)` tells whether to send a ping now and
//! whether the link is dead, `next_deadline` says when to call `poll` again.
//!
//! One end of a link pings, the other listens ([`PingSide`]): the pinger pings every
//! `interval` and the listener answers, so a link carries one ping and one pong an interval,
//! not two of each. The listener pings only every `listener_interval`, for RTT samples of its
//! own, and watches the pinger's pings: nothing heard for one and a half `interval` and it
//! suspects the link at once, its silence counted from when the missing ping was due. (A
//! watch that waited for the adaptive timeout instead came too late: a listener's RTT
//! samples are few, and one retransmission inflates its timeout for half a minute.) From
//! there both ends follow the same suspicion, stall and death rules, and both ping every
//! `interval` while a link is suspect or stalled.
//!
//! Host liveness is apart from agent liveness. While a link is suspect the monitor asks for
//! kernel-level probes of the peer's host (`probe_host`, every `host_probe_interval`; the
//! shell opens a TCP connection to the peer port, which the peer's kernel answers even while
//! its agent is stopped). When every ping probe went unanswered:
//! - if the host answered since the silence began, the link is `Stalled` (the agent is late
//!   or stopped, the host and its backends are up): it stays in the active view, pings go
//!   on, and the host is probed every `host_probe_interval` for `stalled_fast_probing`,
//!   then at doubling intervals up to `stalled_probe_interval` (so that the probes of a
//!   long stall cannot fill the peer's listen backlog). It dies if the host gives no answer
//!   for `host_down_after` plus one probe interval, or after `agent_stall_bound`;
//! - otherwise the link dies once nothing was heard for `host_down_after` since the first
//!   unanswered ping, so a host that froze for less than that is never declared down.
//!
//! A host that answered during a suspicion and then stopped is down once it gave no answer
//! for `host_down_after` plus one probe interval (the stall rule): without it a crash
//! during a suspicion waited for the suspicion to become a stall, which takes twice the
//! timeout, up to seconds after a retransmission inflated the RTT window.
//!
//! Invariants: the RTT window holds at most `rtt_window` samples; the timeout always lies in
//! `[timeout_floor, timeout_ceiling]`; a link is declared dead only while nothing at all was
//! heard from the peer since the silence began (the first unanswered ping, or for a
//! listener the pinger's first missing one) and the probes of its host had two probe
//! intervals to be answered, and then only if its host gave no kernel-level answer for
//! `host_down_after` since the silence began, or for `host_down_after` plus one probe
//! interval since its last answer, or the stall outlasted `agent_stall_bound`.

use crate::config::PingConfig;
use crate::time::Time;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Answering; `outstanding` is the deadline of the last unanswered ping, if any.
    Healthy { outstanding: Option<Time> },
    /// A deadline was missed: probing.
    Suspect { probes_sent: u32, next_probe: Time },
    /// Every probe went unanswered but the peer's host answers kernel-level probes: its
    /// agent is stalled. `since`: when the silence began; `gap`: the current interval
    /// between host probes (doubling up to `stalled_probe_interval`).
    Stalled { since: Time, gap: Duration },
}

/// What the link owner must do after [`LinkMonitor::poll`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkAction {
    pub send_ping: bool,
    pub dead: bool,
    /// Ask the shell for a kernel-level probe of the peer's host.
    pub probe_host: bool,
    /// The link just became `Stalled`: the peer's agent is silent, its host is up.
    pub stalled: bool,
}

/// Which end of a link pings every interval. Both ends derive it from the same pair of
/// addresses ([`PingSide::of`]), so exactly one of them is the pinger.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PingSide {
    /// Pings every `interval`; a ping unanswered by its deadline starts a suspicion.
    Pinger,
    /// Answers the pinger's pings, pings every `listener_interval` for RTT samples, and
    /// suspects the link when the pinger's pings stop.
    Listener,
}

impl PingSide {
    /// The side of the node at `me` on its link to `peer`: the lower address pings.
    pub fn of(me: &std::net::SocketAddr, peer: &std::net::SocketAddr) -> PingSide {
        if me < peer {
            PingSide::Pinger
        } else {
            PingSide::Listener
        }
    }
}

/// Failure detector of one active link.
#[derive(Clone, Debug)]
pub struct LinkMonitor {
    side: PingSide,
    rtts: VecDeque<Duration>,
    /// Largest sample in `rtts` (kept so the timeout is O(1)).
    max_rtt: Option<Duration>,
    /// The largest sample once the top eighth of the window is set aside.
    robust_rtt: Option<Duration>,
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
    /// Send time of the oldest ping not answered yet (anything heard clears it).
    silent_since: Option<Time>,
    /// When the peer's host last answered a kernel-level probe.
    host_answered: Option<Time>,
    /// When the first host probe since the last answer was asked for: the host is judged
    /// silent only after probes had `2 × host_probe_interval` to be answered, so a node
    /// that was itself stopped (its process stalled, its host frozen) does not condemn its
    /// peers for the silence it slept through.
    probing_since: Option<Time>,
    next_host_probe: Time,
}

impl LinkMonitor {
    /// A monitor for a link opened at `now`; the first ping goes out at `first_ping`.
    pub fn new(now: Time, first_ping: Time, side: PingSide) -> LinkMonitor {
        LinkMonitor {
            side,
            rtts: VecDeque::new(),
            max_rtt: None,
            robust_rtt: None,
            last_heard: now,
            next_ping: first_ping,
            state: State::Healthy { outstanding: None },
            last_probe: now,
            last_ping_sent: None,
            last_ping_answered: None,
            silent_since: None,
            host_answered: None,
            probing_since: None,
            next_host_probe: now,
        }
    }

    /// A monitor whose window starts with `estimate` as its one sample (the largest RTT
    /// of the node's other links): without it a fresh link would wait for the timeout
    /// ceiling until its first answer, and a peer that dies right after linking would be
    /// noticed a second late.
    pub fn with_estimate(
        now: Time,
        first_ping: Time,
        side: PingSide,
        estimate: Option<Duration>,
    ) -> LinkMonitor {
        let mut monitor = LinkMonitor::new(now, first_ping, side);
        if let Some(rtt) = estimate {
            monitor.rtts.push_back(rtt);
            monitor.max_rtt = Some(rtt);
            monitor.robust_rtt = Some(rtt);
        }
        monitor
    }

    /// Anything arrived from the peer: it is alive.
    pub fn on_heard(&mut self, now: Time) {
        self.last_heard = self.last_heard.max(now);
        self.state = State::Healthy { outstanding: None };
        self.silent_since = None;
        // A probe still unanswered belongs to this episode: the next silence asks afresh.
        self.probing_since = None;
    }

    /// The peer's host answered a kernel-level probe (a SYN-ACK or a reset).
    pub fn on_host_answer(&mut self, now: Time) {
        self.host_answered = Some(self.host_answered.map_or(now, |t| t.max(now)));
        self.probing_since = None;
    }

    /// When the probes asked for since the last answer had long enough to be answered.
    fn probes_due(&self, cfg: &PingConfig) -> Time {
        self.probing_since
            .map_or(self.next_host_probe, |t| t + cfg.host_probe_interval * 2)
    }

    /// Whether the peer's agent is silent while its host answers.
    pub fn is_stalled(&self) -> bool {
        matches!(self.state, State::Stalled { .. })
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
            let evicted = if self.rtts.len() >= cfg.rtt_window {
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
            // The largest RTT once the top eighth is dropped: an order statistic, found
            // in linear time (this runs on every pong).
            let mut rtts: SmallVec<[Duration; 32]> = self.rtts.iter().copied().collect();
            let keep = rtts.len() - rtts.len() / 8;
            self.robust_rtt = match keep.checked_sub(1) {
                Some(at) if at < rtts.len() => Some(*rtts.select_nth_unstable(at).1),
                _ => None,
            };
        }
        self.on_heard(now);
    }

    /// The current deadline for an answer: `rtt_multiplier` × the window's RTT after
    /// dropping its top eighth (over TCP a lost segment delays the answers behind it by a
    /// retransmission timeout, 200 ms or more; those samples say nothing about the path).
    pub fn timeout(&self, cfg: &PingConfig) -> Duration {
        match self.robust_rtt {
            None => cfg.timeout_ceiling,
            Some(max) => max.saturating_mul(cfg.rtt_multiplier).clamp(
                cfg.timeout_floor,
                cfg.timeout_ceiling.max(cfg.timeout_floor),
            ),
        }
    }

    /// The window's RTT after dropping its top eighth (the base of [`Self::timeout`]).
    pub fn robust_rtt(&self) -> Option<Duration> {
        self.robust_rtt
    }

    /// Largest RTT in the window, if any sample yet.
    pub fn max_rtt(&self) -> Option<Duration> {
        self.max_rtt
    }

    pub fn is_suspect(&self) -> bool {
        matches!(self.state, State::Suspect { .. })
    }

    /// Starts the suspicion step now (a cascading check: someone else dropped this peer,
    /// or its connection was lost).
    pub fn suspect(&mut self, now: Time) {
        if let State::Healthy { .. } = self.state {
            self.enter_suspect(now);
        }
    }

    fn enter_suspect(&mut self, now: Time) {
        self.state = State::Suspect {
            probes_sent: 0,
            next_probe: now,
        };
        self.silent_since.get_or_insert(now);
        self.next_host_probe = now;
    }

    /// Advances the monitor to `now`.
    pub fn poll(&mut self, now: Time, cfg: &PingConfig) -> LinkAction {
        let timeout = self.timeout(cfg);
        let mut action = LinkAction::default();
        if let State::Healthy { outstanding } = self.state {
            if outstanding.is_some_and(|deadline| now >= deadline) {
                self.enter_suspect(now);
            } else if self.side == PingSide::Listener && now >= self.watch_deadline(cfg) {
                // The pinger's pings stopped: the silence began when the missing one was
                // due (never before the last thing heard).
                let due = self.last_heard + cfg.interval;
                self.silent_since = Some(self.silent_since.map_or(due, |t| t.min(due)));
                self.enter_suspect(now);
            }
        }
        match self.state {
            State::Healthy { outstanding } => {
                if now >= self.next_ping {
                    action.send_ping = true;
                    self.next_ping = now + self.healthy_interval(cfg);
                    if outstanding.is_none() {
                        self.state = State::Healthy {
                            outstanding: Some(now + timeout),
                        };
                        self.silent_since.get_or_insert(now);
                    }
                }
            }
            State::Suspect {
                probes_sent,
                next_probe,
            } => {
                if now >= self.next_host_probe {
                    action.probe_host = true;
                    self.probing_since.get_or_insert(now);
                    self.next_host_probe = now + cfg.host_probe_interval;
                }
                let probes = cfg.suspicion_probes;
                if probes_sent < probes && now >= next_probe {
                    action.send_ping = true;
                    self.last_probe = now;
                    self.state = State::Suspect {
                        probes_sent: probes_sent + 1,
                        next_probe: now + timeout / probes,
                    };
                    self.next_ping = now + cfg.interval;
                } else {
                    let since = self.silent_since.unwrap_or(self.last_probe);
                    let host_up = self.host_answered.is_some_and(|t| t >= since);
                    let probed = self.probing_since.is_some() && now >= self.probes_due(cfg);
                    if !host_up && now >= since + cfg.host_down_after && probed {
                        // Neither the agent nor the host's kernel answered since the
                        // silence began: the host is down or cut off.
                        action.dead = true;
                    } else if host_up
                        && probed
                        && self.host_silent(now, cfg.host_probe_interval, cfg)
                    {
                        // The host answered after the silence began, then stopped: it went
                        // down during the suspicion (the stall rule, at its first gap).
                        action.dead = true;
                    } else if host_up && probes_sent >= probes && now >= self.last_probe + timeout {
                        let gap = cfg.host_probe_interval;
                        self.state = State::Stalled { since, gap };
                        action.stalled = true;
                    }
                }
            }
            State::Stalled { since, gap } => {
                if now >= self.next_ping {
                    action.send_ping = true;
                    self.next_ping = now + cfg.interval;
                }
                if now >= self.next_host_probe {
                    action.probe_host = true;
                    // The last probe went unanswered: the host may be frozen or gone,
                    // so look again soon rather than after a long gap.
                    let unanswered = self.probing_since.is_some();
                    self.probing_since.get_or_insert(now);
                    let gap = if unanswered {
                        cfg.host_probe_interval
                    } else {
                        gap
                    };
                    self.next_host_probe = now + gap;
                    // Fast while the stall is young (most are a retransmission or a short
                    // pause, and a crash then must still be noticed quickly) or while the
                    // host does not answer, then spaced out so that a long stall cannot
                    // fill the peer's listen backlog.
                    let gap = if unanswered || now < since + cfg.stalled_fast_probing {
                        cfg.host_probe_interval
                    } else {
                        (gap * 2).min(cfg.stalled_probe_interval)
                    };
                    self.state = State::Stalled { since, gap };
                }
                let probed = self.probing_since.is_some() && now >= self.probes_due(cfg);
                if (self.host_silent(now, gap, cfg) && probed)
                    || now >= since + cfg.agent_stall_bound
                {
                    action.dead = true;
                }
            }
        }
        if action.send_ping {
            self.last_ping_sent = Some(now);
        }
        action
    }

    /// How often this end pings a healthy link.
    fn healthy_interval(&self, cfg: &PingConfig) -> Duration {
        match self.side {
            PingSide::Pinger => cfg.interval,
            PingSide::Listener => cfg.listener_interval,
        }
    }

    /// A listener suspects the link when nothing was heard by this time: the pinger's next
    /// ping was due `interval` after the last thing heard, and may be half an interval
    /// late.
    fn watch_deadline(&self, cfg: &PingConfig) -> Time {
        self.last_heard + cfg.interval + cfg.interval / 2
    }

    /// When [`LinkMonitor::poll`] next has something to do.
    pub fn next_deadline(&self, cfg: &PingConfig) -> Time {
        match self.state {
            State::Healthy { outstanding } => {
                let at = outstanding.map_or(self.next_ping, |d| d.min(self.next_ping));
                match self.side {
                    PingSide::Pinger => at,
                    PingSide::Listener => at.min(self.watch_deadline(cfg)),
                }
            }
            State::Suspect {
                probes_sent,
                next_probe,
            } => {
                let since = self.silent_since.unwrap_or(self.last_probe);
                let decide = if self.host_answered.is_some_and(|t| t >= since) {
                    let host_silent = self
                        .host_silent_at(cfg.host_probe_interval, cfg)
                        .max(self.probes_due(cfg));
                    if probes_sent < cfg.suspicion_probes {
                        next_probe.min(host_silent)
                    } else {
                        (self.last_probe + self.timeout(cfg)).min(host_silent)
                    }
                } else {
                    let down = (since + cfg.host_down_after).max(self.probes_due(cfg));
                    if probes_sent < cfg.suspicion_probes {
                        next_probe.min(down)
                    } else {
                        down
                    }
                };
                decide.min(self.next_host_probe)
            }
            State::Stalled { since, gap } => {
                let host_silent = self.host_silent_at(gap, cfg).max(self.probes_due(cfg));
                self.next_ping
                    .min(self.next_host_probe)
                    .min(host_silent)
                    .min(since + cfg.agent_stall_bound)
            }
        }
    }

    /// When the host will have given no answer for `host_down_after` plus one probe `gap`
    /// since its last (the probes are spaced out as a stall goes on, so an answer may be
    /// that far apart); `Time::ZERO` if it never answered.
    fn host_silent_at(&self, gap: Duration, cfg: &PingConfig) -> Time {
        self.host_answered
            .map_or(Time::ZERO, |t| t + cfg.host_down_after + gap)
    }

    /// Whether the host has been silent that long by `now` (see [`Self::host_silent_at`]).
    fn host_silent(&self, now: Time, gap: Duration, cfg: &PingConfig) -> bool {
        now >= self.host_silent_at(gap, cfg)
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
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
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
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
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
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
        for i in 0..1000 {
            pong(&mut m, ms(i), ms(i), &cfg);
        }
        assert_eq!(m.rtts.len(), cfg.rtt_window);
    }

    #[test]
    fn silent_peer_with_a_silent_host_dies_host_down_after_its_first_unanswered_ping() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
        pong(&mut m, ms(1), ms(0), &cfg);
        // The ping the first poll sends (at 1 ms) is the first that goes unanswered.
        let dead = time_to_death(&mut m, ms(1), &cfg);
        assert_eq!(dead, ms(1) + cfg.host_down_after, "dead at {dead}");
    }

    /// Drives a monitor whose peer's agent is silent while its host answers every probe
    /// `host_rtt` after it is asked; returns the first action flagged `stalled`, and the
    /// monitor's state after `until`.
    fn drive_stalled(
        m: &mut LinkMonitor,
        from: Time,
        until: Time,
        cfg: &PingConfig,
    ) -> Option<Time> {
        let mut now = from;
        let mut stalled_at = None;
        let mut pending: Vec<Time> = Vec::new();
        while now < until {
            let a = m.poll(now, cfg);
            assert!(!a.dead, "a peer whose host answers died at {now}");
            if a.stalled {
                stalled_at.get_or_insert(now);
            }
            if a.probe_host {
                pending.push(now + Duration::from_micros(300));
            }
            let next = m
                .next_deadline(cfg)
                .min(pending.first().copied().unwrap_or(Time::MAX));
            now = next.max(now + Duration::from_nanos(1));
            while pending.first().is_some_and(|&t| t <= now) {
                let t = pending.remove(0);
                m.on_host_answer(t);
            }
        }
        stalled_at
    }

    #[test]
    fn a_silent_agent_on_a_live_host_is_stalled_not_dead_until_the_bound() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
        pong(&mut m, ms(1), ms(0), &cfg);
        let stalled = drive_stalled(&mut m, ms(1), ms(5_000), &cfg);
        assert!(
            stalled.is_some_and(|t| t < ms(200)),
            "stalled at {stalled:?}"
        );
        assert!(m.is_stalled());
        // The agent answers again: healthy.
        m.on_heard(ms(5_000));
        assert!(!m.is_stalled() && !m.is_suspect());
        // A stall that outlasts the bound is given up on, host or not.
        let short = PingConfig {
            agent_stall_bound: Duration::from_secs(2),
            ..PingConfig::default()
        };
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
        pong(&mut m, ms(1), ms(0), &short);
        drive_stalled(&mut m, ms(1), ms(1_500), &short);
        assert!(m.is_stalled());
        let dead = time_to_death(&mut m, ms(1_500), &short);
        assert!(dead <= ms(50) + short.agent_stall_bound, "dead at {dead}");
    }

    #[test]
    fn a_stalled_peer_whose_host_goes_silent_dies_soon_after() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
        pong(&mut m, ms(1), ms(0), &cfg);
        drive_stalled(&mut m, ms(1), ms(600), &cfg);
        assert!(m.is_stalled());
        let last_answer = m.host_answered.unwrap();
        // The host crashes: no more answers.
        let dead = time_to_death(&mut m, ms(600), &cfg);
        assert!(
            dead <= last_answer + cfg.host_down_after + cfg.host_probe_interval * 2,
            "last answer {last_answer}, dead at {dead}"
        );
    }

    #[test]
    fn a_monitor_that_slept_asks_before_it_condemns() {
        // This node's own process was stopped for 2 s: when it runs again the peer has been
        // "silent" for 2 s, but its host must get the chance to answer a probe first.
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
        pong(&mut m, ms(1), ms(0), &cfg);
        m.poll(ms(50), &cfg); // a ping goes out, then the process stops
        let a = m.poll(ms(2_050), &cfg);
        assert!(!a.dead, "declared dead without asking its host");
        assert!(a.probe_host);
        m.on_host_answer(ms(2_051));
        assert!(drive_stalled(&mut m, ms(2_051), ms(2_500), &cfg).is_some() || m.is_stalled());
    }

    #[test]
    fn a_freeze_shorter_than_host_down_after_is_never_fatal() {
        let cfg = PingConfig::default();
        for freeze_ms in [60, 100, 149, 170] {
            let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
            assert!(m.poll(ms(0), &cfg).send_ping);
            pong(&mut m, ms(1), ms(0), &cfg);
            // The peer froze at 40 ms: the ping at 50 ms is answered at thaw.
            let thaw = ms(40 + freeze_ms);
            let mut now = ms(1);
            while now < thaw {
                assert!(
                    !m.poll(now, &cfg).dead,
                    "{freeze_ms} ms freeze fatal at {now}"
                );
                now = m.next_deadline(&cfg).min(thaw);
            }
            m.on_heard(thaw);
            assert!(!m.poll(thaw, &cfg).dead);
        }
    }

    #[test]
    fn any_answer_during_suspicion_saves_the_link() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
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
    fn the_lower_address_pings_and_the_other_listens() {
        let a: std::net::SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: std::net::SocketAddr = "10.0.0.2:5000".parse().unwrap();
        assert_eq!(PingSide::of(&a, &b), PingSide::Pinger);
        assert_eq!(PingSide::of(&b, &a), PingSide::Listener);
    }

    /// A listener opened at 0 whose first ping (at 30 ms) was answered in 1 ms: its
    /// timeout is the floor.
    fn answered_listener(cfg: &PingConfig) -> LinkMonitor {
        let mut m = LinkMonitor::new(ms(0), ms(30), PingSide::Listener);
        assert!(m.poll(ms(30), cfg).send_ping);
        pong(&mut m, ms(31), ms(30), cfg);
        m
    }

    /// A listener whose pinger's pings arrive every `interval`, each up to `late` behind
    /// its beat, from 0 to `until`: the times the listener pings, and whether it ever
    /// suspected the link.
    fn listen(late: impl Fn(u64) -> u64, until: u64, cfg: &PingConfig) -> (Vec<Time>, bool) {
        let mut m = LinkMonitor::new(ms(0), ms(30), PingSide::Listener);
        let beat = cfg.interval.as_millis() as u64;
        let mut heard = (1..).map(|k| ms(k * beat + late(k)));
        let mut next_heard = heard.next().unwrap();
        let (mut pings, mut suspected) = (Vec::new(), false);
        let mut now = ms(0);
        while now < ms(until) {
            let a = m.poll(now, cfg);
            assert!(!a.dead, "a listener whose pinger pings died at {now}");
            suspected |= m.is_suspect();
            if a.send_ping {
                pings.push(now);
                // Answered 1 ms later: an RTT sample.
                pong(&mut m, now + Duration::from_millis(1), now, cfg);
            }
            let next = m.next_deadline(cfg).max(now + Duration::from_nanos(1));
            if next_heard <= next {
                now = next_heard;
                m.on_heard(now);
                next_heard = heard.next().unwrap();
            } else {
                now = next;
            }
        }
        (pings, suspected)
    }

    #[test]
    fn a_listener_pings_once_a_listener_interval_while_the_pinger_pings() {
        let cfg = PingConfig::default();
        let (pings, suspected) = listen(|_| 0, 10_000, &cfg);
        assert!(!suspected);
        // The first ping at 30 ms, then one a second: 10 in 10 s, where a pinger sends 200.
        assert_eq!(pings.len(), 10, "pinged at {pings:?}");
        for pair in pings.windows(2) {
            assert_eq!(pair[1] - pair[0], cfg.listener_interval);
        }
        // Pings up to half an interval later than an interval after the one before raise
        // no suspicion; a later one does.
        let (_, suspected) = listen(|k| (k * 7) % 32, 10_000, &cfg);
        assert!(
            !suspected,
            "a ping late within half an interval was suspected"
        );
        let (_, suspected) = listen(|k| if k == 50 { 26 } else { 0 }, 10_000, &cfg);
        assert!(
            suspected,
            "a ping later than half an interval was not suspected"
        );
    }

    #[test]
    fn a_listener_suspects_a_missing_ping_and_counts_the_silence_from_when_it_was_due() {
        let cfg = PingConfig::default();
        let mut m = answered_listener(&cfg);
        // The pinger's last ping arrives at 100 ms; the next, due at 150, never comes.
        m.on_heard(ms(100));
        // It may be half an interval late.
        assert!(!m.poll(ms(174), &cfg).send_ping);
        assert!(!m.is_suspect());
        assert_eq!(m.next_deadline(&cfg), ms(175));
        let a = m.poll(ms(175), &cfg);
        assert!(m.is_suspect() && a.send_ping && a.probe_host);
        let dead = time_to_death(&mut m, ms(175), &cfg);
        assert_eq!(dead, ms(150) + cfg.host_down_after, "dead at {dead}");
    }

    #[test]
    fn a_listener_never_condemns_a_pinger_frozen_for_less_than_host_down_after() {
        let cfg = PingConfig::default();
        for freeze_ms in [60, 100, 149, 170, 179] {
            let mut m = answered_listener(&cfg);
            // Pings heard every 50 ms up to 100 ms; the pinger's host freezes right after
            // and its overdue ping arrives at the thaw.
            for k in 1..=2 {
                m.on_heard(ms(k * 50));
            }
            let thaw = ms(100 + freeze_ms);
            let mut now = ms(100);
            while now < thaw {
                assert!(
                    !m.poll(now, &cfg).dead,
                    "{freeze_ms} ms freeze fatal at {now}"
                );
                now = m.next_deadline(&cfg).min(thaw);
            }
            assert!(
                m.is_suspect() || freeze_ms < 80,
                "{freeze_ms} ms: no suspicion"
            );
            m.on_heard(thaw);
            assert!(!m.poll(thaw, &cfg).dead);
            assert!(!m.is_suspect());
        }
    }

    #[test]
    fn a_host_that_answers_during_a_suspicion_then_goes_down_is_declared_down() {
        // A large RTT sample (a retransmission) makes the timeout long, so the suspicion
        // would take seconds to become a stall; the host answers the first probe, then
        // crashes.
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(0), PingSide::Pinger);
        pong(&mut m, ms(250), ms(0), &cfg);
        assert_eq!(m.timeout(&cfg), cfg.timeout_ceiling);
        m.suspect(ms(300));
        assert!(m.poll(ms(300), &cfg).probe_host);
        m.on_host_answer(ms(301));
        let dead = time_to_death(&mut m, ms(301), &cfg);
        let bound = ms(301) + cfg.host_down_after + cfg.host_probe_interval;
        assert_eq!(dead, bound, "dead at {dead}");
        assert!(!m.is_stalled());
    }

    #[test]
    fn cascade_suspicion_starts_probing_at_once() {
        let cfg = PingConfig::default();
        let mut m = LinkMonitor::new(ms(0), ms(50), PingSide::Pinger);
        pong(&mut m, ms(1), ms(0), &cfg);
        m.suspect(ms(10));
        let a = m.poll(ms(10), &cfg);
        assert!(a.send_ping && a.probe_host);
        let dead = time_to_death(&mut m, ms(10), &cfg);
        assert_eq!(dead, ms(10) + cfg.host_down_after, "dead at {dead}");
        // Never before the host had two probe intervals to answer.
        assert!(dead >= ms(10) + cfg.host_probe_interval * 2);
    }

    /// An input to a monitor, with the milliseconds since the previous one.
    #[derive(Clone, Debug)]
    enum Input {
        Poll,
        Heard,
        /// A PONG to the newest ping, if one was sent.
        Pong,
        Suspect,
        HostAnswer,
    }

    fn input() -> impl proptest::strategy::Strategy<Value = (u64, Input)> {
        use proptest::prelude::*;
        let kind = prop_oneof![
            8 => Just(Input::Poll),
            1 => Just(Input::Heard),
            1 => Just(Input::Pong),
            1 => Just(Input::Suspect),
            2 => Just(Input::HostAnswer),
        ];
        // Mostly steps shorter than a probe interval, so that suspicions run their course
        // into stalls; now and then a long silence.
        (prop_oneof![9 => 0u64..60, 1 => 0u64..2_000], kind)
    }

    proptest::proptest! {
        /// What `Views` relies on to skip its links between deadlines: polled at any time
        /// before [`LinkMonitor::next_deadline`], a monitor does nothing and stays as it
        /// was, in every state random inputs lead it to (both sides of a link).
        #[test]
        fn a_poll_before_the_deadline_does_nothing(
            pinger in proptest::prelude::any::<bool>(),
            inputs in proptest::collection::vec(input(), 1..200),
            probe in 0.0f64..1.0,
        ) {
            let cfg = PingConfig::default();
            let side = if pinger { PingSide::Pinger } else { PingSide::Listener };
            let mut m = LinkMonitor::new(ms(0), ms(25), side);
            let mut now = ms(0);
            for (gap, input) in inputs {
                now = now + Duration::from_millis(gap);
                match input {
                    Input::Poll => {
                        m.poll(now, &cfg);
                    }
                    Input::Heard => m.on_heard(now),
                    Input::Pong => {
                        if let Some(sent) = m.last_ping_sent {
                            m.on_pong(now, sent.as_nanos(), &cfg);
                        }
                    }
                    Input::Suspect => m.suspect(now),
                    Input::HostAnswer => m.on_host_answer(now),
                }
                let due = m.next_deadline(&cfg);
                if due <= now {
                    continue;
                }
                // A time in [now, due): its start, a random point, and the last instant.
                let span = (due - now).as_nanos() as f64;
                for at in [now, now + Duration::from_nanos((span * probe) as u64), due - Duration::from_nanos(1)] {
                    let mut polled = m.clone();
                    let action = polled.poll(at, &cfg);
                    proptest::prop_assert_eq!(action, LinkAction::default(), "at {} (due {})", at, due);
                    proptest::prop_assert_eq!(format!("{polled:?}"), format!("{m:?}"), "at {}", at);
                }
            }
        }
    }
}
