//! When to search the adjacency graph again, and the changes a search reports.
//!
//! The search itself lives in [`crate::reachability`] (incremental: it repairs its tree from
//! the slots the store marks as changed); this part decides when it runs: at most once per
//! `recompute_interval`, and only after something that can change the graph (a record, a
//! new epoch) marked it dirty. Between searches, fading nodes whose grace ran
//! out are reported.
//!
//! Invariants: while `dirty` is set a deadline is due for the next search; every change is
//! handed to the routing exactly once, in the order the search reported it; the kept
//! scratch buffer has room for at most `KEPT_CHANGES` changes.

use crate::reachability::{Change, Reachability};
use crate::records::RecordStore;
use crate::time::Time;
use std::time::Duration;

/// How many changes' room [`Reach::recycle`] keeps between updates (a crash's few).
const KEPT_CHANGES: usize = 64;

pub(crate) struct Reach {
    pub(crate) graph: Reachability,
    /// Something changed the graph since the last search.
    pub(crate) dirty: bool,
    last_search: Option<Time>,
    recompute_interval: Duration,
    /// Scratch buffer for the changes of one update (kept to avoid allocating; at most
    /// [`KEPT_CHANGES`] entries' room between updates).
    changes: Vec<Change>,
}

impl Reach {
    pub(crate) fn new(grace: Duration, recompute_interval: Duration) -> Reach {
        Reach {
            graph: Reachability::new(grace),
            dirty: true,
            last_search: None,
            recompute_interval,
            changes: Vec::new(),
        }
    }

    /// When the next search may run (`None`: nothing changed).
    fn search_due(&self) -> Option<Time> {
        self.dirty.then(|| {
            self.last_search
                .map_or(Time::ZERO, |t| t + self.recompute_interval)
        })
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        match (self.search_due(), self.graph.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Searches if due, else reports the fading nodes whose grace ran out. Returns the
    /// changes; hand the buffer back with [`Reach::recycle`].
    pub(crate) fn update(
        &mut self,
        now: Time,
        store: &mut RecordStore,
        self_slot: u32,
    ) -> Vec<Change> {
        let mut changes = std::mem::take(&mut self.changes);
        changes.clear();
        if self.search_due().is_some_and(|at| now >= at) {
            self.dirty = false;
            self.last_search = Some(now);
            self.graph.update(now, store, self_slot, &mut changes);
        } else {
            self.graph.expire(now, store, &mut changes);
        }
        changes
    }

    /// Keeps the buffer for the next update, trimmed to [`KEPT_CHANGES`]: a cold start
    /// reports every node at once, and a buffer of that size kept by every node of a
    /// 1,000-node simulation was 5% of its memory.
    pub(crate) fn recycle(&mut self, mut changes: Vec<Change>) {
        changes.clear();
        changes.shrink_to(KEPT_CHANGES);
        self.changes = changes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cold start's buffer (a change per node) is not kept between updates.
    #[test]
    fn a_recycled_buffer_keeps_little_room() {
        let mut reach = Reach::new(Duration::ZERO, Duration::ZERO);
        reach.recycle(Vec::with_capacity(5_000));
        assert!(reach.changes.capacity() <= KEPT_CHANGES);
        reach.recycle(Vec::with_capacity(8));
        assert_eq!(reach.changes.capacity(), 8, "a small one is kept as it is");
    }
}
