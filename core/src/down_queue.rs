//! The slots a node does not report reachable, in the order they went down, for garbage
//! collection: the next slot to become collectable is at the front.
//!
//! A slot goes down at the `now` of the call that sets it down, and a node's clock only
//! moves forward, so the times only grow along the queue (a clock that went back would
//! only make a slot collectable late, never early). Kept as two queues, the slots (4 bytes
//! each) and the runs of equal times beside them, because a cold start sets thousands of
//! slots down at the same instant on every node: an ordered set of (time, slot) was about
//! 9 bytes per (node, address) pair at the peak of a 2,600-node start.
//!
//! A slot that comes back up leaves its entry behind, stale; the owner says which entries
//! are live (`is_down(time, slot)`: the slot is down, since exactly that time).
//!
//! Invariants:
//! - the runs' counts add up to the number of slots queued, and no run is empty;
//! - the front entry, if any, is live (stale entries are dropped from the front at once),
//!   so the front time is the earliest a live slot went down;
//! - at most about half the entries are stale: past that, all stale entries are dropped.

use crate::time::Time;
use std::collections::VecDeque;

/// Stale entries tolerated before the queue is compacted, whatever its length.
const STALE_SLACK: usize = 64;

#[derive(Clone, Debug, Default)]
pub(crate) struct DownQueue {
    /// Slots in the order they went down.
    slots: VecDeque<u32>,
    /// The times they went down: (time, how many of `slots` in a row went down then).
    runs: VecDeque<(Time, u32)>,
    /// Entries made stale since the last compaction (an upper bound on the stale ones).
    stale: usize,
}

impl DownQueue {
    /// The earliest time a live slot went down.
    pub(crate) fn first(&self) -> Option<Time> {
        self.runs.front().map(|&(t, _)| t)
    }

    /// `slot` went down at `since` (the latest time yet, see the module doc).
    pub(crate) fn insert(&mut self, since: Time, slot: u32) {
        self.slots.push_back(slot);
        match self.runs.back_mut() {
            Some((t, count)) if *t == since => *count += 1,
            _ => self.runs.push_back((since, 1)),
        }
    }

    /// A queued slot is no longer down (or down since another time): `is_down` no longer
    /// holds for its entry.
    pub(crate) fn remove(&mut self, is_down: impl Fn(Time, u32) -> bool) {
        self.stale += 1;
        while let (Some(&(t, _)), Some(&slot)) = (self.runs.front(), self.slots.front()) {
            if is_down(t, slot) {
                break;
            }
            self.pop_front();
            self.stale = self.stale.saturating_sub(1);
        }
        if self.stale > STALE_SLACK && 2 * self.stale > self.slots.len() {
            self.compact(is_down);
        }
    }

    /// The live slots that went down at or before `until`, ordered by (time, slot).
    pub(crate) fn down_until(&self, until: Time, is_down: impl Fn(Time, u32) -> bool) -> Vec<u32> {
        let mut due = Vec::new();
        let mut slots = self.slots.iter();
        for &(t, count) in self.runs.iter().take_while(|&&(t, _)| t <= until) {
            let mut run: Vec<u32> = slots
                .by_ref()
                .take(count as usize)
                .copied()
                .filter(|&slot| is_down(t, slot))
                .collect();
            // A slot set down, up and down again at one instant is queued twice.
            run.sort_unstable();
            run.dedup();
            due.extend(run);
        }
        due
    }

    fn pop_front(&mut self) {
        self.slots.pop_front();
        if let Some((_, count)) = self.runs.front_mut() {
            *count -= 1;
            if *count == 0 {
                self.runs.pop_front();
            }
        }
    }

    /// Drops every stale entry (and a slot queued twice at one time, once), giving back
    /// the room they took.
    fn compact(&mut self, is_down: impl Fn(Time, u32) -> bool) {
        let (slots, runs) = (
            std::mem::take(&mut self.slots),
            std::mem::take(&mut self.runs),
        );
        let mut slots = slots.into_iter();
        for (t, count) in runs {
            let mut live: Vec<u32> = slots
                .by_ref()
                .take(count as usize)
                .filter(|&slot| is_down(t, slot))
                .collect();
            live.sort_unstable();
            live.dedup();
            for slot in live {
                self.insert(t, slot);
            }
        }
        self.stale = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn the_front_is_the_earliest_live_slot() {
        let mut since: Vec<Option<Time>> = vec![None; 5];
        let mut queue = DownQueue::default();
        for (slot, ms) in [(1, 5), (2, 5), (3, 9), (4, 9)] {
            since[slot] = Some(t(ms));
            queue.insert(t(ms), slot as u32);
        }
        assert_eq!(queue.first(), Some(t(5)));
        let up = |queue: &mut DownQueue, since: &mut Vec<Option<Time>>, slot: usize| {
            since[slot] = None;
            queue.remove(|t, s| since[s as usize] == Some(t));
        };
        up(&mut queue, &mut since, 1);
        assert_eq!(queue.first(), Some(t(5)), "slot 2 is still down since 5 ms");
        up(&mut queue, &mut since, 2);
        assert_eq!(queue.first(), Some(t(9)));
        up(&mut queue, &mut since, 4);
        assert_eq!(queue.first(), Some(t(9)), "slot 3 is still down since 9 ms");
        up(&mut queue, &mut since, 3);
        assert_eq!(queue.first(), None);
        assert_eq!(queue.len(), 0);
    }

    proptest! {
        /// Whatever goes down and up (at times that only grow), the queue gives what an
        /// ordered set of (time, slot) gives, and stays within twice the live slots plus
        /// the slack.
        #[test]
        fn the_queue_gives_what_an_ordered_set_gives(
            steps in prop::collection::vec((0u32..12, 0u64..3, any::<bool>()), 0..300)
        ) {
            let mut since: Vec<Option<Time>> = vec![None; 12];
            let (mut queue, mut set) = (DownQueue::default(), BTreeSet::new());
            let mut now = t(0);
            for (slot, advance, down) in steps {
                now = now + std::time::Duration::from_millis(advance);
                let s = slot as usize;
                match (down, since[s]) {
                    (true, None) => {
                        since[s] = Some(now);
                        queue.insert(now, slot);
                        set.insert((now, slot));
                    }
                    (false, Some(was)) => {
                        since[s] = None;
                        set.remove(&(was, slot));
                        queue.remove(|t, x| since[x as usize] == Some(t));
                    }
                    _ => {}
                }
                prop_assert_eq!(queue.first(), set.first().map(|&(t, _)| t));
                let is_down = |t, x: u32| since[x as usize] == Some(t);
                for until in [now, now - std::time::Duration::from_millis(2)] {
                    let expected: Vec<u32> =
                        set.iter().take_while(|&&(t, _)| t <= until).map(|&(_, x)| x).collect();
                    prop_assert_eq!(queue.down_until(until, is_down), expected);
                }
                prop_assert!(queue.len() <= 2 * set.len() + STALE_SLACK + 1);
                let counted: u32 = queue.runs.iter().map(|&(_, c)| c).sum();
                prop_assert_eq!(counted as usize, queue.len());
            }
        }
    }
}
