//! Counters the node keeps; shells export them (Prometheus, simulator reports).
//!
//! Invariant: counters only ever increase; they are plain data with no effect on behaviour.

use crate::wire::{DecodeError, Message};

/// Rejected frames, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeErrorCounters {
    pub empty: u64,
    pub too_large: u64,
    pub unknown_version: u64,
    pub malformed: u64,
    pub trailing_bytes: u64,
    pub over_limit: u64,
}

impl DecodeErrorCounters {
    pub fn count(&mut self, error: &DecodeError) {
        let slot = match error {
            DecodeError::Empty => &mut self.empty,
            DecodeError::TooLarge { .. } => &mut self.too_large,
            DecodeError::UnknownVersion(_) => &mut self.unknown_version,
            DecodeError::Malformed(_) => &mut self.malformed,
            DecodeError::TrailingBytes(_) => &mut self.trailing_bytes,
            DecodeError::OverLimit(_) => &mut self.over_limit,
        };
        *slot += 1;
    }

    pub fn total(&self) -> u64 {
        self.empty
            + self.too_large
            + self.unknown_version
            + self.malformed
            + self.trailing_bytes
            + self.over_limit
    }
}

/// Everything a node counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub decode_errors: DecodeErrorCounters,
    /// Messages handled, by [`Message::kind_index`].
    pub messages_in: [u64; Message::KINDS],
    /// Messages emitted, by [`Message::kind_index`].
    pub messages_out: [u64; Message::KINDS],
    /// Messages from an older incarnation of a peer, ignored.
    pub stale_epoch_messages: u64,
    /// Messages claiming to come from this node's own address, ignored.
    pub self_messages: u64,
    pub links_up: u64,
    pub links_dead: u64,
    pub links_disconnected: u64,
    pub links_evicted: u64,
    pub links_superseded: u64,
    /// Suspicion steps started by a missed deadline or a cascading check.
    pub suspicions: u64,
    /// Suspicion steps started because another node's record dropped an active neighbour.
    pub cascades: u64,
    pub joins_sent: u64,
    /// JOINs left unanswered by a contact not yet in the overlay.
    pub joins_deferred: u64,
    pub neighbor_requests: u64,
    pub neighbor_timeouts: u64,
    pub records_applied: u64,
    pub records_stale: u64,
    /// Records of new nodes refused because the store is full.
    pub records_rejected_full: u64,
    /// Records claiming to be this node's own, ignored.
    pub records_own_ignored: u64,
    /// Outputs dropped because the queue was full.
    pub outputs_dropped: u64,
    /// Local service sets refused for exceeding the record bounds.
    pub records_too_large: u64,
    /// Records received over the byte bound, ignored.
    pub records_rejected_size: u64,
    /// Kernel operations emitted.
    pub kernel_ops: u64,
    /// Kernel diffs that did not apply to the node's own applied state (a bug if ever
    /// non-zero).
    pub kernel_diff_errors: u64,
}
