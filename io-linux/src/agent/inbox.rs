//! The node's inbox: what the network tasks hand to the task that owns the node.
//!
//! Invariants:
//! - The inbox is bounded. Frames are offered without waiting and dropped (and counted by
//!   kind) when it is full, as a congested network would drop them; notices that a
//!   connection ended or a probe finished are awaited, so they are never lost (their
//!   senders are ending tasks, and there is at most one per connection or probe).

use super::budget::Frame;
use crate::metrics::{ShellMetrics, Why};
use std::net::{IpAddr, SocketAddr};
use tokio::sync::mpsc;

/// An input for the node.
#[derive(Debug)]
pub enum Input {
    /// One frame read from inbound connection `conn`, whose other end is `remote`. It holds
    /// its share of the inbound byte budget until the node has handled it.
    Frame {
        conn: u64,
        remote: IpAddr,
        bytes: Frame,
    },
    /// Inbound connection `conn` ended.
    InboundClosed { conn: u64 },
    /// The outbound connection to this advertised peer address failed or could not open.
    ConnectionLost(SocketAddr),
    /// A host probe's result.
    HostProbe { peer: SocketAddr, answered: bool },
}

/// The sending side, cloned into every network task.
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: mpsc::Sender<Input>,
    metrics: ShellMetrics,
}

impl Inbox {
    /// A bounded inbox of `capacity` inputs.
    pub fn new(capacity: usize, metrics: ShellMetrics) -> (Inbox, mpsc::Receiver<Input>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Inbox { tx, metrics }, rx)
    }

    /// Offers a frame; drops and counts it when the inbox is full.
    pub fn frame(&self, conn: u64, remote: IpAddr, bytes: Frame) {
        if self
            .tx
            .try_send(Input::Frame {
                conn,
                remote,
                bytes,
            })
            .is_err()
        {
            self.metrics
                .inbox_drops
                .get_or_create(&Why::new("frame"))
                .inc();
        }
    }

    /// Delivers a notice (connection ended, probe result), waiting for room.
    pub async fn notice(&self, input: Input) {
        // Fails only when the node's task has stopped: nothing left to tell.
        let _ = self.tx.send(input).await;
    }
}
