//! What every part of a node shares: the one random generator, the bounded output queue and
//! the counters.
//!
//! Invariants:
//! - one ChaCha generator per node, seeded from the config, drawn from in input order: the
//!   same seed and inputs give the same draws, so the parts must call it in a fixed order;
//! - the queue never holds more than `max_queued` outputs; what exceeds it is dropped and
//!   counted in `outputs_dropped` (kernel operations never go through this path);
//! - every message is sent with this node's own id as its sender.

use super::{Output, Transmit};
use crate::counters::Counters;
use crate::id::NodeId;
use crate::wire::{Envelope, Message};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// The node's shared plumbing, lent to each part by the routing in [`super::Node`].
pub(crate) struct Io {
    /// This incarnation: the sender of every message.
    pub(crate) me: NodeId,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) max_queued: usize,
    pub(crate) counters: Counters,
}

impl Io {
    pub(crate) fn new(me: NodeId, seed: u64, max_queued: usize) -> Io {
        Io {
            me,
            rng: ChaCha8Rng::seed_from_u64(seed),
            outputs: VecDeque::new(),
            max_queued,
            counters: Counters::default(),
        }
    }

    pub(crate) fn send(&mut self, dst: SocketAddr, msg: Message) {
        self.counters.messages_out[msg.kind_index()] += 1;
        let envelope = Envelope { from: self.me, msg };
        self.emit(Output::Transmit(Transmit { dst, envelope }));
    }

    pub(crate) fn emit(&mut self, output: Output) {
        if self.outputs.len() >= self.max_queued {
            self.counters.outputs_dropped += 1;
            return;
        }
        self.outputs.push_back(output);
    }

    /// Gives back what a burst grew the (empty) output queue to beyond a small reserve, so
    /// that a node's memory is not its largest burst's: one answer to a joiner's digest
    /// can queue hundreds of messages.
    pub(crate) fn release_spare_capacity(&mut self) {
        const RESERVE: usize = 32;
        if self.outputs.is_empty() && self.outputs.capacity() > 4 * RESERVE {
            self.outputs.shrink_to(RESERVE);
        }
    }

    pub(crate) fn random_duration(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.random_range(0..nanos))
    }

    /// `d` scaled by a random factor in [0.75, 1.25).
    pub(crate) fn jittered(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.rng.random_range(0.75..1.25))
    }
}
