//! Byte budgets: bounds on the bytes that wait in a queue, whatever the number of frames.
//!
//! A frame count alone does not bound memory: 1024 frames of the 4 MiB frame limit are
//! 4 GiB, and a cluster of hosts with 10,000 VIPs each sends records of hundreds of
//! kilobytes. A [`ByteBudget`] is shared by the holders of one queue; a [`Frame`] holds its
//! share of the budget until it is dropped.
//!
//! Invariants:
//! - The share is taken before the frame's buffer is allocated (the reader knows the length
//!   from the prefix), so the budget bounds allocation, not only queueing.
//! - It is given back exactly once, when the [`Frame`] is dropped, wherever that happens.
//! - Taking never waits: what does not fit is refused, and the caller drops and counts it.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A budget of bytes, cloned into every holder of one queue.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    bytes: Arc<Semaphore>,
}

impl ByteBudget {
    /// A budget of `bytes` (at most `u32::MAX`).
    pub fn new(bytes: usize) -> ByteBudget {
        ByteBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(u32::MAX as usize))),
        }
    }

    /// A share of `len` bytes, or `None` when they do not fit now.
    pub fn try_take(&self, len: usize) -> Option<Share> {
        let len = u32::try_from(len).ok()?;
        self.bytes
            .clone()
            .try_acquire_many_owned(len)
            .ok()
            .map(Share)
    }

    /// Bytes not taken.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// Two budgets by size: frames of at most `small_frame` bytes take from `small`, larger
/// ones from `large`, so that a burst of large frames cannot starve the small ones.
#[derive(Clone, Debug)]
pub struct BudgetBySize {
    pub small: ByteBudget,
    pub large: ByteBudget,
    pub small_frame: usize,
}

impl BudgetBySize {
    /// A share of `len` bytes from the budget of its size, or `None` when they do not fit.
    pub fn try_take(&self, len: usize) -> Option<Share> {
        if len <= self.small_frame {
            self.small.try_take(len)
        } else {
            self.large.try_take(len)
        }
    }
}

/// A taken share of a budget; given back when dropped.
#[derive(Debug)]
pub struct Share(#[allow(dead_code)] OwnedSemaphorePermit);

/// A frame's bytes with the share of the budget they hold.
#[derive(Debug)]
pub struct Frame {
    bytes: Vec<u8>,
    _share: Share,
}

impl Frame {
    /// `bytes` under `share` (taken for at least their length).
    pub fn new(bytes: Vec<u8>, share: Share) -> Frame {
        Frame {
            bytes,
            _share: share,
        }
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_refused_over_the_budget_and_given_back_on_drop() {
        let budget = ByteBudget::new(10);
        let a = budget.try_take(6).expect("fits");
        assert!(budget.try_take(5).is_none(), "6 + 5 > 10");
        let b = Frame::new(vec![1; 4], budget.try_take(4).expect("fits"));
        assert_eq!(budget.available(), 0);
        assert_eq!(&b[..], &[1, 1, 1, 1]);
        drop(a);
        assert_eq!(budget.available(), 6);
        drop(b);
        assert_eq!(budget.available(), 10);
        assert!(
            budget.try_take(11).is_none(),
            "larger than the whole budget"
        );
    }

    #[test]
    fn large_frames_cannot_take_the_small_frames_budget() {
        let budget = BudgetBySize {
            small: ByteBudget::new(10),
            large: ByteBudget::new(100),
            small_frame: 5,
        };
        let large: Vec<Share> = (0..10).map_while(|_| budget.try_take(30)).collect();
        assert_eq!(large.len(), 3, "three of 30 bytes fit 100");
        assert!(
            budget.try_take(4).is_some(),
            "the small budget is untouched"
        );
        assert_eq!(budget.large.available(), 10);
    }
}
