//! The data plane of one node: what it reports for its local Mesos agent, the desired
//! kernel state built from every record, and the kernel state its operations lead to.
//!
//! Invariants:
//! - once the desired state is refreshed, `applied` equals it: every operation that changes
//!   `applied` is emitted, in order (a refresh with a full output queue waits for the next
//!   input instead of losing operations);
//! - the local set never exceeds the record bounds (a larger one is refused whole).

use super::io::Io;
use super::Output;
use crate::desired::DesiredState;
use crate::kernel::{self, KernelState};
use crate::vip::VipSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub(crate) struct DataPlane {
    /// What the own record reports for the local Mesos agent.
    pub(crate) local_agents: Vec<IpAddr>,
    pub(crate) local_services: Arc<VipSet>,
    pub(crate) desired: DesiredState,
    /// The kernel state the emitted operations lead to.
    pub(crate) applied: KernelState,
}

impl DataPlane {
    pub(crate) fn new(me: SocketAddr) -> DataPlane {
        let mut desired = DesiredState::new();
        desired.set_reachable(me, true);
        DataPlane {
            local_agents: Vec::new(),
            local_services: Arc::new(VipSet::new()),
            desired,
            applied: KernelState::default(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.desired.is_dirty() && self.applied != *self.desired.state() {
            return Err("emitted kernel ops do not lead to the desired state".into());
        }
        Ok(())
    }

    /// Declares what the kernel actually holds; emits the operations from there to the
    /// desired state.
    pub(crate) fn resync(&mut self, io: &mut Io, actual: KernelState) {
        self.applied = actual;
        self.desired.mark_all_dirty();
        let stale: Vec<_> = self.applied.services.keys().copied().collect();
        let touched = self.desired.refresh();
        let ops = kernel::diff_services(
            &self.applied,
            self.desired.state(),
            touched.iter().chain(stale.iter()),
        );
        if !ops.is_empty() && self.applied.apply_all(&ops).is_ok() {
            io.counters.kernel_ops += ops.len() as u64;
            io.emit(Output::Kernel(ops));
        }
    }

    /// Turns changes of the desired state into kernel operations. When the output queue
    /// is full the work waits for the next input, so no operation is ever lost.
    pub(crate) fn update_kernel(&mut self, io: &mut Io) {
        if !self.desired.is_dirty() || io.is_full() {
            return;
        }
        let touched = self.desired.refresh();
        let ops = kernel::diff_services(&self.applied, self.desired.state(), &touched);
        if ops.is_empty() {
            return;
        }
        if let Err(error) = self.applied.apply_all(&ops) {
            // The diff is built against `applied`, so this is a bug; recover by trusting
            // the desired state, and count it.
            debug_assert!(false, "kernel diff does not apply: {error}");
            io.counters.kernel_diff_errors += 1;
            self.applied = self.desired.state().clone();
        }
        io.counters.kernel_ops += ops.len() as u64;
        io.emit(Output::Kernel(ops));
    }
}
