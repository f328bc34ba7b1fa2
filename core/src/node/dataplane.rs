//! The data plane of one node: what it reports for its local Mesos agent, the desired
//! kernel state built from every record, and the kernel state its operations lead to.
//!
//! Invariants:
//! - `applied` changes only with operations the shell receives: they are computed when the
//!   shell polls ([`DataPlane::poll_kernel`]), never queued, so a full output queue cannot
//!   drop them; once the desired state is refreshed, `applied` equals it;
//! - until the node's view is complete, no operation removes anything: the kernel holds at
//!   least the desired state, and what it holds beyond is removed once the view is
//!   complete;
//! - the local set never exceeds the record bounds (a larger one is refused whole);
//! - a service's destinations in `applied` that equal the desired ones are the same shared
//!   map, so the node holds one copy of the kernel state, not two.

use crate::counters::Counters;
use crate::desired::DesiredState;
use crate::kernel::{self, KernelState, Op, Service};
use crate::tasks::{TaskDirectory, TaskSet};
use crate::vip::VipSet;
use std::net::IpAddr;
use std::sync::Arc;

pub(crate) struct DataPlane {
    /// What the own record reports for the local Mesos agent.
    pub(crate) local_agents: Vec<IpAddr>,
    pub(crate) local_services: Arc<VipSet>,
    /// What the own record reports of the local agent's running tasks.
    pub(crate) local_tasks: Arc<TaskSet>,
    pub(crate) desired: DesiredState,
    /// Every node's task records, for DNS (reachability kept like `desired`'s).
    pub(crate) tasks: TaskDirectory,
    /// The kernel state the operations handed to the shell lead to.
    pub(crate) applied: KernelState,
    /// Services the kernel held at the last resync: compared on the next poll.
    resync_stale: Vec<Service>,
    /// The node's view is complete. Until then nothing is removed from the kernel: a
    /// restarting agent keeps serving what its kernel had while its records arrive.
    complete: bool,
    /// Removals were held back while incomplete.
    withheld: bool,
}

impl DataPlane {
    pub(crate) fn new() -> DataPlane {
        DataPlane {
            local_agents: Vec::new(),
            local_services: VipSet::shared_empty(),
            local_tasks: TaskSet::shared_empty(),
            desired: DesiredState::new(),
            tasks: TaskDirectory::new(),
            applied: KernelState::default(),
            resync_stale: Vec::new(),
            complete: false,
            withheld: false,
        }
    }

    /// The view became complete: removals held back are computed on the next poll.
    pub(crate) fn set_complete(&mut self) {
        self.complete = true;
        if std::mem::take(&mut self.withheld) {
            self.desired.mark_all_dirty();
            self.resync_stale = self.applied.services.keys().copied().collect();
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.desired.is_dirty() {
            return Ok(());
        }
        if self.complete && self.applied != *self.desired.state() {
            return Err("emitted kernel ops do not lead to the desired state".into());
        }
        // Incomplete: the kernel holds at least the desired state.
        for (service, dests) in &self.desired.state().services {
            let held = self.applied.services.get(service);
            if dests
                .iter()
                .any(|(d, w)| held.and_then(|h| h.get(d)) != Some(w))
            {
                return Err(format!(
                    "the kernel lacks desired destinations of {service:?}"
                ));
            }
        }
        Ok(())
    }

    /// Declares what the kernel actually holds; the next operations lead from there to the
    /// desired state (services the kernel holds and the desired state lacks are removed).
    pub(crate) fn resync(&mut self, actual: KernelState) {
        self.applied = actual;
        self.desired.mark_all_dirty();
        self.resync_stale = self.applied.services.keys().copied().collect();
    }

    /// Makes `applied` share the desired state's destination maps for the services `ops`
    /// touched, where they are equal (always, once the view is complete): one copy of each
    /// map instead of two.
    fn share_applied(&mut self, ops: &[Op]) {
        for op in ops {
            let service = op.service();
            let (Some(applied), Some(desired)) = (
                self.applied.services.get_mut(service),
                self.desired.state().services.get(service),
            ) else {
                continue;
            };
            if !Arc::ptr_eq(applied, desired) && applied == desired {
                *applied = desired.clone();
            }
        }
    }

    /// The operations from `applied` to the desired state, computed now; `applied`
    /// becomes the desired state. `None` when there is nothing to do. Operations are
    /// computed when the shell asks for them, so no queue can drop them.
    pub(crate) fn poll_kernel(&mut self, counters: &mut Counters) -> Option<Vec<Op>> {
        if !self.desired.is_dirty() {
            return None;
        }
        let touched = self.desired.refresh();
        let stale = std::mem::take(&mut self.resync_stale);
        let mut ops = kernel::diff_services(
            &self.applied,
            self.desired.state(),
            touched.iter().chain(stale.iter()),
        );
        if !self.complete {
            let before = ops.len();
            ops.retain(|op| !matches!(op, Op::RemoveDestination { .. } | Op::RemoveService(_)));
            if ops.len() < before {
                self.withheld = true;
                counters.kernel_removals_withheld += (before - ops.len()) as u64;
            }
        }
        if ops.is_empty() {
            return None;
        }
        if let Err(error) = self.applied.apply_all(&ops) {
            // The diff is built against `applied`, so this is a bug; recover by trusting
            // the desired state, and count it.
            debug_assert!(false, "kernel diff does not apply: {error}");
            counters.kernel_diff_errors += 1;
            self.applied = self.desired.state().clone();
        }
        self.share_applied(&ops);
        counters.kernel_ops += ops.len() as u64;
        Some(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vip::{Backend, Protocol, Vip, VipAddr};
    use std::net::SocketAddr;

    fn services(backends: &[&str]) -> Arc<VipSet> {
        let mut set = VipSet::new();
        for b in backends {
            let addr: SocketAddr = b.parse().unwrap();
            set.insert(
                Vip {
                    protocol: Protocol::Tcp,
                    addr: VipAddr::Ip("10.9.0.1".parse().unwrap()),
                    port: 80,
                },
                Backend {
                    ip: addr.ip(),
                    port: addr.port(),
                    agent: addr.ip(),
                    weight: 1,
                },
            );
        }
        Arc::new(set)
    }

    /// After a poll the applied state equals the desired one and holds the same maps, not
    /// copies: a change copies only the map it changes.
    #[test]
    fn applied_shares_the_desired_maps() {
        let me: SocketAddr = "10.0.0.1:61420".parse().unwrap();
        let mut plane = DataPlane::new();
        plane.set_complete();
        let mut counters = Counters::default();
        plane
            .desired
            .set_origin(me, services(&["10.1.0.1:8080", "10.1.0.2:8080"]), true);
        assert!(plane.poll_kernel(&mut counters).is_some());
        plane
            .desired
            .set_origin(me, services(&["10.1.0.1:8080", "10.1.0.3:8080"]), true);
        assert!(plane.poll_kernel(&mut counters).is_some());
        assert_eq!(plane.applied, *plane.desired.state());
        let (service, desired) = plane.desired.state().services.iter().next().unwrap();
        assert_eq!(desired.len(), 2);
        assert!(Arc::ptr_eq(&plane.applied.services[service], desired));
        assert_eq!(counters.kernel_diff_errors, 0);
    }
}
