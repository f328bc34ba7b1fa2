//! Progress of a long run on stderr: one line at most about once per wall second, from
//! about two wall seconds into the run on, with the simulated time reached, the events
//! handled and how fast, e.g.
//!
//! ```text
//! [sim] t=12.4s/30s simulated, 1.2M events, 410k events/s, 3.1 s wall
//! ```
//!
//! On a terminal the line is rewritten in place (`\r`); otherwise every line is a line.
//!
//! Invariant: progress only reads the simulation's clock and counters and the wall clock;
//! it draws no random number and schedules nothing, so a run with progress has the same
//! events and the same trace hash as one without. [`crate::sim::Simulation::run_until`]
//! calls [`Progress::tick`] only every [`Progress::EVERY_EVENTS`] events, so the wall clock
//! is read rarely, and not at all when no progress is attached.

use minuteman_core::Time;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where progress lines go and when.
pub struct Progress {
    label: String,
    /// The simulated time the run ends at, when known.
    horizon: Option<Time>,
    start: Instant,
    /// Nothing is printed before this much wall time has passed.
    quiet_for: Duration,
    /// At most one line per this much wall time.
    every: Duration,
    /// Wall time and events at the last line (the rate is over the time since then).
    last: Option<(Instant, u64)>,
    /// Rewrite the line in place (a terminal).
    in_place: bool,
    out: Box<dyn Write + Send>,
    /// An in-place line is on the terminal without its newline yet.
    open_line: bool,
}

impl Progress {
    /// `run_until` looks at the wall clock once per this many events (a power of two).
    pub const EVERY_EVENTS: u64 = 4096;

    /// Progress to stderr, labelled `[label]`: from 2 s of wall time on, at most once per
    /// wall second; rewritten in place when stderr is a terminal.
    pub fn stderr(label: impl Into<String>) -> Progress {
        let in_place = std::io::stderr().is_terminal();
        Progress::to_writer(label, Box::new(std::io::stderr()), in_place)
    }

    /// Progress into any writer (tests), with the same timing as [`Progress::stderr`].
    pub fn to_writer(
        label: impl Into<String>,
        out: Box<dyn Write + Send>,
        in_place: bool,
    ) -> Progress {
        Progress {
            label: label.into(),
            horizon: None,
            start: Instant::now(),
            quiet_for: Duration::from_secs(2),
            every: Duration::from_secs(1),
            last: None,
            in_place,
            out,
            open_line: false,
        }
    }

    /// Changes when lines appear: none before `quiet_for` of wall time, then at most one
    /// per `every` (tests use zero for both).
    pub fn timing(mut self, quiet_for: Duration, every: Duration) -> Progress {
        self.quiet_for = quiet_for;
        self.every = every;
        self
    }

    /// The simulated time the run ends at (shown as `t=now/horizon`).
    pub fn set_horizon(&mut self, horizon: Time) {
        self.horizon = Some(horizon);
    }

    /// Called by the simulation now and then with its clock and its events so far; prints
    /// a line when one is due.
    pub fn tick(&mut self, now: Time, events: u64) {
        let wall = Instant::now();
        let due = match self.last {
            None => wall.duration_since(self.start) >= self.quiet_for,
            Some((at, _)) => wall.duration_since(at) >= self.every,
        };
        if due {
            self.print(wall, now, events, false);
        }
    }

    /// The run is over: if any line was printed, prints the final state as a last line
    /// (and ends the line on a terminal). Nothing when the run was short.
    pub fn finish(&mut self, now: Time, events: u64) {
        if self.last.is_some() {
            self.print(Instant::now(), now, events, true);
        }
    }

    fn print(&mut self, wall: Instant, now: Time, events: u64, last_line: bool) {
        let (since, events_before) = self.last.unwrap_or((self.start, 0));
        let secs = wall.duration_since(since).as_secs_f64();
        let rate = if secs > 0.0 {
            (events - events_before.min(events)) as f64 / secs
        } else {
            0.0
        };
        let line = self.line(now, events, rate, wall.duration_since(self.start));
        // Progress is best effort: a closed stderr must not stop the run.
        let _ = if self.in_place {
            let end = if last_line { "\n" } else { "" };
            write!(self.out, "\r{line}\x1b[K{end}")
        } else {
            writeln!(self.out, "{line}")
        };
        let _ = self.out.flush();
        self.open_line = self.in_place && !last_line;
        self.last = Some((wall, events));
    }

    /// The text of one line.
    pub fn line(&self, now: Time, events: u64, rate: f64, wall: Duration) -> String {
        let t = now.as_millis_f64() / 1e3;
        let horizon = self.horizon.map_or(String::new(), |h| {
            format!("/{}", seconds(h.as_millis_f64() / 1e3))
        });
        format!(
            "[{}] t={t:.1}s{horizon} simulated, {} events, {} events/s, {:.1} s wall",
            self.label,
            si(events as f64),
            si(rate),
            wall.as_secs_f64()
        )
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A run that ends without `finish` (a panic) still ends the rewritten line.
        if self.open_line {
            let _ = writeln!(self.out);
        }
    }
}

/// `30s`, `12.5s`.
fn seconds(s: f64) -> String {
    if (s - s.round()).abs() < 1e-9 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

/// A count with at most one decimal and a k / M / G suffix: 950, 41.2k, 410k, 1.2M.
pub fn si(v: f64) -> String {
    let v = v.max(0.0);
    for (scale, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if v >= scale {
            let x = v / scale;
            return if x < 100.0 {
                format!("{x:.1}{suffix}")
            } else {
                format!("{x:.0}{suffix}")
            };
        }
    }
    format!("{v:.0}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn counts_read_as_the_issue_writes_them() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(41_234.0), "41.2k");
        assert_eq!(si(410_000.0), "410k");
        assert_eq!(si(1_234_567.0), "1.2M");
        let mut p = Progress::to_writer("sim", Box::new(Shared::default()), false);
        p.set_horizon(Time::from_duration(Duration::from_secs(30)));
        let line = p.line(
            Time::from_duration(Duration::from_millis(12_400)),
            1_200_000,
            410_000.0,
            Duration::from_millis(3_100),
        );
        assert_eq!(
            line,
            "[sim] t=12.4s/30s simulated, 1.2M events, 410k events/s, 3.1 s wall"
        );
    }

    #[test]
    fn nothing_before_the_quiet_time_and_a_last_line_only_after_a_line() {
        let buf = Shared::default();
        let mut p = Progress::to_writer("sim", Box::new(buf.clone()), false);
        p.tick(Time::ZERO, 10);
        p.finish(Time::ZERO, 10);
        drop(p);
        assert!(
            buf.0.lock().unwrap().is_empty(),
            "a short run prints nothing"
        );

        let buf = Shared::default();
        let mut p = Progress::to_writer("sim", Box::new(buf.clone()), true)
            .timing(Duration::ZERO, Duration::from_secs(3600));
        p.tick(Time::ZERO, 10);
        p.tick(Time::ZERO, 20); // within `every`: no second line
        p.finish(Time::from_duration(Duration::from_secs(1)), 30);
        drop(p);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\r').count(), 2, "{text:?}");
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text:?}"
        );
        assert!(text.contains("t=1.0s simulated, 30 events"), "{text:?}");
    }

    #[test]
    fn a_run_with_progress_is_the_same_run() {
        let run = crate::MembershipRun {
            nodes: 12,
            duration: Duration::from_secs(6),
            ..crate::MembershipRun::default()
        };
        let buf = Shared::default();
        let progress = Progress::to_writer("sim", Box::new(buf.clone()), false)
            .timing(Duration::ZERO, Duration::ZERO);
        let (with, sim) = run.run_with(Some(progress));
        let (without, _) = run.run();
        assert_eq!(with.trace_hash, without.trace_hash);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let expected = sim.events_handled() / Progress::EVERY_EVENTS + 1;
        assert_eq!(lines.len() as u64, expected, "{text}");
        assert!(lines[0].starts_with("[sim] t="), "{text}");
        assert!(
            lines.last().unwrap().contains("t=6.0s/6s simulated"),
            "{text}"
        );
    }
}
