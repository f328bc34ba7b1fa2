//! What is worth logging: the failure condition and the extraction warnings, tracked so
//! the log speaks once per change of condition instead of once per poll.
//!
//! Invariants:
//! - [`Health`] counts consecutive failures; its [`Health::failed`] says
//!   [`Report::Started`] for the first failure after a success (or at start),
//!   [`Report::Changed`] when the reason differs from the previous failure's, and
//!   [`Report::Same`] otherwise; [`Health::succeeded`] returns the streak it ends (once).
//! - [`WarningLog::is_new`] is true exactly when a set of warnings differs from the last
//!   one seen (an empty set included), so a constant problem is logged once.

use super::outcome::Reason;
use std::hash::{DefaultHasher, Hash, Hasher};

/// How a failure relates to the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// The first failure after a success or at start: log at warn.
    Started,
    /// Still failing, but for another reason: log at warn.
    Changed { previous: Reason },
    /// The same failure again: log at debug.
    Same,
}

/// The current failure streak.
#[derive(Clone, Debug, Default)]
pub(crate) struct Health {
    failing: Option<Reason>,
    streak: u64,
}

impl Health {
    pub(crate) fn failed(&mut self, reason: Reason) -> Report {
        self.streak = self.streak.saturating_add(1);
        match self.failing.replace(reason) {
            None => Report::Started,
            Some(previous) if previous != reason => Report::Changed { previous },
            Some(_) => Report::Same,
        }
    }

    /// Ends the streak; `Some(n)` if `n > 0` failures preceded this success.
    pub(crate) fn succeeded(&mut self) -> Option<u64> {
        self.failing = None;
        let streak = std::mem::take(&mut self.streak);
        (streak > 0).then_some(streak)
    }

    /// Consecutive failures so far (0 when healthy).
    pub(crate) fn streak(&self) -> u64 {
        self.streak
    }
}

/// The last set of extraction warnings logged, as a hash.
#[derive(Clone, Debug, Default)]
pub(crate) struct WarningLog {
    last: Option<u64>,
}

impl WarningLog {
    pub(crate) fn is_new(&mut self, warnings: &[String]) -> bool {
        let mut hasher = DefaultHasher::new();
        warnings.hash(&mut hasher);
        let hash = hasher.finish();
        self.last.replace(hash) != Some(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_change_of_condition() {
        let mut h = Health::default();
        assert_eq!(h.succeeded(), None);
        assert_eq!(h.failed(Reason::Http), Report::Started);
        assert_eq!(h.failed(Reason::Http), Report::Same);
        assert_eq!(h.failed(Reason::Http), Report::Same);
        assert_eq!(
            h.failed(Reason::Status),
            Report::Changed {
                previous: Reason::Http
            }
        );
        assert_eq!(h.streak(), 4);
        assert_eq!(h.succeeded(), Some(4));
        assert_eq!(h.streak(), 0);
        assert_eq!(h.succeeded(), None);
        assert_eq!(h.failed(Reason::Status), Report::Started);
    }

    #[test]
    fn warnings_are_new_once_per_distinct_set() {
        let mut w = WarningLog::default();
        let a = vec!["task a: bad label".to_string()];
        let b = vec!["task b: bad label".to_string()];
        assert!(w.is_new(&a));
        assert!(!w.is_new(&a));
        assert!(w.is_new(&b));
        assert!(w.is_new(&[]));
        assert!(!w.is_new(&[]));
        assert!(w.is_new(&a));
    }
}
