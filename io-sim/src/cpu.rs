//! What work costs on a simulated host: CPU time of the agent process per input, and the
//! time the kernel takes to apply a batch of data-plane operations.
//!
//! The constants and where they come from (details in `docs/simulator.md`):
//! - `per_input` 10 µs: one wake-up and `read` of a small message on loopback TCP
//!   measured 6.5–9 µs per write + read pair on this kind of machine (2 cores, shared),
//!   plus the core's handling, under 1 µs per message in the simulator's own wall time;
//! - `per_message_sent` 5 µs: one `write` (half of the pair above) and the encoding;
//! - `per_record_byte` 1.1 ns: the README's parse + extract of the 790 KB gaal document,
//!   0.86 ms (a JSON parse: at least as slow as decoding and merging postcard records);
//! - `per_document_byte` 4.4 ns: the README's 14.6 MB synthetic agent `/state` in 64 ms
//!   (the slower of the two Mesos benchmarks; the simulated documents are synthetic too);
//! - `per_refresh` 0.43 ms: the README's "one backend changes: new record → incremental
//!   refresh → ops" at 10,000 VIPs × 10 backends (an upper bound for the smaller states
//!   simulated here);
//! - `per_kernel_op` 1.2 µs: the README's full desired state, 118 ms for 100,000
//!   destinations, per destination.
//!
//! The kernel apply ([`KernelApply`]) was measured with real `nft -f` of the core's
//! renderings in a throwaway network namespace on this machine (median of 9 runs each,
//! load average about 6 from other builds): a transaction of one changed service costs
//! 12–16 ms on a table of 100 services and 21–25 ms on one of 1,000 (nft reads the ruleset
//! back first); every further service touched adds about 0.2–0.36 ms (100 services touched
//! of 1,000: 57–65 ms; all 1,000: 372–392 ms); the number of destinations changed within
//! one service hardly matters (25 or 125 of 1,000: 21–25 ms). Hence 15 ms per transaction
//! plus 0.35 ms per service touched.

use minuteman_core::kernel::{Op, Service};
use std::collections::BTreeSet;
use std::time::Duration;

/// CPU time the agent process spends per unit of work.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuCosts {
    /// Each input handled: a message received, a timer, a poll.
    pub per_input: Duration,
    /// Each message sent.
    pub per_message_sent: Duration,
    /// Each byte of a received `Records` message, in nanoseconds.
    pub per_record_byte_ns: f64,
    /// Each byte of a Mesos document parsed, in nanoseconds.
    pub per_document_byte_ns: f64,
    /// Each desired-state refresh that emits kernel operations.
    pub per_refresh: Duration,
    /// Each kernel operation emitted.
    pub per_kernel_op: Duration,
}

impl Default for CpuCosts {
    fn default() -> Self {
        CpuCosts {
            per_input: Duration::from_micros(10),
            per_message_sent: Duration::from_micros(5),
            per_record_byte_ns: 1.1,
            per_document_byte_ns: 4.4,
            per_refresh: Duration::from_micros(430),
            per_kernel_op: Duration::from_nanos(1_200),
        }
    }
}

impl CpuCosts {
    /// Work costs nothing (the ideal model).
    pub fn zero() -> CpuCosts {
        CpuCosts {
            per_input: Duration::ZERO,
            per_message_sent: Duration::ZERO,
            per_record_byte_ns: 0.0,
            per_document_byte_ns: 0.0,
            per_refresh: Duration::ZERO,
            per_kernel_op: Duration::ZERO,
        }
    }

    pub fn bytes(ns_per_byte: f64, bytes: usize) -> Duration {
        Duration::from_nanos((ns_per_byte * bytes as f64) as u64)
    }

    /// The cost of one refresh that emitted `ops` operations.
    pub fn refresh(&self, ops: usize) -> Duration {
        self.per_refresh + self.per_kernel_op * ops as u32
    }
}

/// How long a host's kernel takes to apply operations (one `nft -f` transaction per
/// batch; batches emitted while one runs go together into the next).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelApply {
    pub per_transaction: Duration,
    pub per_service: Duration,
}

impl Default for KernelApply {
    fn default() -> Self {
        KernelApply {
            per_transaction: Duration::from_millis(15),
            per_service: Duration::from_micros(350),
        }
    }
}

impl KernelApply {
    /// Operations apply the moment they are emitted (the ideal model).
    pub fn immediate() -> KernelApply {
        KernelApply {
            per_transaction: Duration::ZERO,
            per_service: Duration::ZERO,
        }
    }

    pub fn is_immediate(&self) -> bool {
        self.per_transaction.is_zero() && self.per_service.is_zero()
    }

    /// The time one transaction applying `ops` takes.
    pub fn cost(&self, ops: &[Op]) -> Duration {
        let services: BTreeSet<&Service> = ops.iter().map(Op::service).collect();
        self.per_transaction + self.per_service * services.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minuteman_core::Protocol;
    use std::net::SocketAddr;

    #[test]
    fn a_transaction_costs_a_fixed_part_and_a_part_per_service() {
        let s = |p: u16| Service::new(Protocol::Tcp, SocketAddr::from(([10, 0, 0, 1], p)));
        let dest = SocketAddr::from(([10, 1, 0, 1], 80));
        let ops = vec![
            Op::AddService(s(1)),
            Op::AddDestination {
                service: s(1),
                dest,
                weight: 1,
            },
            Op::RemoveService(s(2)),
        ];
        let k = KernelApply::default();
        assert_eq!(k.cost(&ops), Duration::from_micros(15_700));
        assert!(KernelApply::immediate().is_immediate());
        assert_eq!(CpuCosts::default().refresh(10), Duration::from_micros(442));
        assert_eq!(
            CpuCosts::bytes(4.4, 1_000_000),
            Duration::from_micros(4_400)
        );
    }
}
