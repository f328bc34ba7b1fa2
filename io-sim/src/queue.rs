//! The event queue of a discrete-event loop: items ordered by `(time, seq)`.
//!
//! Invariant: `seq` grows with every push, so items due at the same instant come out in
//! the order they were pushed; the order never depends on the items themselves.

use minuteman_core::Time;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

struct Scheduled<T> {
    at: Time,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Scheduled<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Scheduled<T> {}
impl<T> PartialOrd for Scheduled<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Scheduled<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A min-queue of items by due time, first-in first-out among equal times.
pub struct EventQueue<T> {
    seq: u64,
    heap: BinaryHeap<Reverse<Scheduled<T>>>,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue {
            seq: 0,
            heap: BinaryHeap::new(),
        }
    }
}

impl<T> EventQueue<T> {
    pub fn new() -> EventQueue<T> {
        EventQueue::default()
    }

    pub fn push(&mut self, at: Time, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            item,
        }));
    }

    /// When the next item is due.
    pub fn next_at(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse(s)| s.at)
    }

    /// The next item, if it is due at or before `until`.
    pub fn pop_until(&mut self, until: Time) -> Option<(Time, T)> {
        if self.next_at()? > until {
            return None;
        }
        self.heap.pop().map(|Reverse(s)| (s.at, s.item))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_time_then_by_push_order() {
        let mut q = EventQueue::new();
        q.push(Time::from_millis(2), "c");
        q.push(Time::from_millis(1), "a");
        q.push(Time::from_millis(1), "b");
        assert_eq!(q.pop_until(Time::ZERO), None);
        let order: Vec<&str> = std::iter::from_fn(|| q.pop_until(Time::MAX))
            .map(|(_, s)| s)
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
    }
}
