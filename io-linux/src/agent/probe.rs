//! Host probes: is a peer's host up, whatever its agent is doing? A TCP connect to the
//! peer port with a short timeout: a SYN-ACK (the listener's kernel queued the connection,
//! even if the agent is stopped) or a reset (no listener, but a live kernel) both say yes;
//! silence says no. The connection is closed at once.
//!
//! Invariants:
//! - At most `max_in_flight` probes run at once; a probe that finds no slot is not sent
//!   and is counted `dropped` (the node asks again on its next probe interval).
//! - Every probe that runs reports exactly one result to the node.

use super::inbox::{Inbox, Input};
use crate::metrics::{ShellMetrics, Why};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::timeout;

/// How long a probe waits for an answer (the simulator's `HOST_PROBE_TIMEOUT`).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

pub struct Prober {
    slots: Arc<Semaphore>,
    metrics: ShellMetrics,
    inbox: Inbox,
}

impl Prober {
    pub fn new(max_in_flight: usize, metrics: ShellMetrics, inbox: Inbox) -> Prober {
        Prober {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            metrics,
            inbox,
        }
    }

    /// Starts a probe of `peer`'s host; its result reaches the inbox.
    pub fn probe(&self, peer: SocketAddr) {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.metrics
                .host_probes
                .get_or_create(&Why::new("dropped"))
                .inc();
            return;
        };
        let (metrics, inbox) = (self.metrics.clone(), self.inbox.clone());
        tokio::spawn(async move {
            let answered = probe_once(peer, PROBE_TIMEOUT).await;
            drop(permit);
            let result = if answered { "answered" } else { "silent" };
            metrics.host_probes.get_or_create(&Why::new(result)).inc();
            inbox.notice(Input::HostProbe { peer, answered }).await;
        });
    }
}

/// One probe: true if the host's kernel answered within `wait`.
pub async fn probe_once(peer: SocketAddr, wait: Duration) -> bool {
    match timeout(wait, TcpStream::connect(peer)).await {
        Ok(Ok(stream)) => {
            // Close at once: a reset, so nothing lingers in either kernel.
            crate::os::close_with_reset(stream);
            true
        }
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_and_a_closed_port_both_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        assert!(probe_once(open, Duration::from_secs(1)).await);
        drop(listener);
        // Nothing listens there now: the kernel answers with a reset.
        assert!(probe_once(open, Duration::from_secs(1)).await);
    }
}
