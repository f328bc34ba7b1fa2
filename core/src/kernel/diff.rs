//! The data-plane diff: the minimal ordered list of [`Op`]s that turns the applied
//! [`KernelState`] into the desired one.
//!
//! Invariants (checked by `core/tests/kernel_diff.rs`):
//! - **Correct:** applying the ops to `applied` with [`KernelState::apply_all`] succeeds and
//!   yields exactly `desired`.
//! - **Untouched when unchanged:** a service whose destinations and weights are equal on both
//!   sides gets no op at all (the regression where adding service 3 deleted services 4 and 5).
//! - **Minimal:** one op per difference and no more. A new service is one `AddService` plus
//!   one `AddDestination` per destination (weight-0 destinations included: they exist, they
//!   just take no new connections); a gone service is one `RemoveService` (it takes its
//!   destinations with it); a kept service gets one `AddDestination`, `SetWeight` or
//!   `RemoveDestination` per destination that appeared, changed weight or disappeared. A
//!   weight change is never a remove plus an add.
//! - **Ordered so traffic is never dropped needlessly**, in five phases over all services:
//!   1. new services, each `AddService` directly followed by its `AddDestination`s;
//!   2. `AddDestination` to kept services;
//!   3. `SetWeight` on kept services;
//!   4. `RemoveDestination` from kept services;
//!   5. `RemoveService` of gone services.
//!
//!   Every capacity is added before any is taken away. Within a phase, ops follow service
//!   order, then destination order (the `Ord` of [`Service`] and [`SocketAddr`]), so the
//!   output is deterministic.
//! - **Agreement:** [`diff_services`] over every service of both states returns exactly
//!   [`diff`]; over a subset it returns the ops of that subset, in the same global order.
//! - **Cost:** [`diff`] is one merge walk over both states, O(services + destinations of
//!   services present on both sides). [`diff_services`] costs O(k log k + k log n + changed
//!   destinations) for k given services among n: it never looks at the others.

use super::{Destinations, KernelState, Op, Service};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::iter::Peekable;
use std::net::SocketAddr;

/// The minimal ordered list of operations turning `applied` into `desired` (see the module
/// documentation for the order and the guarantees).
pub fn diff(applied: &KernelState, desired: &KernelState) -> Vec<Op> {
    let mut plan = Plan::default();
    let mut a = applied.services.iter().peekable();
    let mut d = desired.services.iter().peekable();
    loop {
        match next_pair(&mut a, &mut d) {
            None => break,
            Some((service, old, new)) => {
                plan.service(service, old.map(|d| &**d), new.map(|d| &**d))
            }
        }
    }
    plan.finish()
}

/// The same as [`diff`], restricted to `services`: the ops of the listed services only, in
/// the same global order. Services listed twice count once; services absent from both
/// states are ignored. Costs O(k log k + k log n + changed destinations), never O(n).
pub fn diff_services<'a>(
    applied: &KernelState,
    desired: &KernelState,
    services: impl IntoIterator<Item = &'a Service>,
) -> Vec<Op> {
    let services: BTreeSet<&Service> = services.into_iter().collect();
    let mut plan = Plan::default();
    for service in services {
        plan.service(
            service,
            applied.services.get(service).map(|d| &**d),
            desired.services.get(service).map(|d| &**d),
        );
    }
    plan.finish()
}

/// The next element of a merge walk over two sorted maps: the smaller key with its value on
/// each side that has it.
fn next_pair<'m, K: Ord, V>(
    a: &mut Peekable<impl Iterator<Item = (&'m K, &'m V)>>,
    b: &mut Peekable<impl Iterator<Item = (&'m K, &'m V)>>,
) -> Option<(&'m K, Option<&'m V>, Option<&'m V>)> {
    let order = match (a.peek(), b.peek()) {
        (None, None) => return None,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
    };
    match order {
        Ordering::Less => a.next().map(|(k, va)| (k, Some(va), None)),
        Ordering::Greater => b.next().map(|(k, vb)| (k, None, Some(vb))),
        Ordering::Equal => match (a.next(), b.next()) {
            (Some((k, va)), Some((_, vb))) => Some((k, Some(va), Some(vb))),
            // Unreachable: both peeked `Some`; degrade to "nothing left" rather than panic.
            _ => None,
        },
    }
}

/// Ops collected by phase; [`Plan::finish`] concatenates the phases in order.
#[derive(Default)]
struct Plan {
    /// Phase 1: `AddService` of each new service, directly followed by its destinations.
    created: Vec<Op>,
    /// Phase 2: `AddDestination` to kept services.
    added: Vec<Op>,
    /// Phase 3: `SetWeight` on kept services.
    reweighted: Vec<Op>,
    /// Phase 4: `RemoveDestination` from kept services.
    removed: Vec<Op>,
    /// Phase 5: `RemoveService`.
    dropped: Vec<Op>,
}

impl Plan {
    fn service(
        &mut self,
        service: &Service,
        applied: Option<&Destinations>,
        desired: Option<&Destinations>,
    ) {
        match (applied, desired) {
            (None, None) => {}
            (None, Some(new)) => {
                self.created.reserve(1 + new.len());
                self.created.push(Op::AddService(*service));
                for (&dest, &weight) in new {
                    self.created.push(Op::AddDestination {
                        service: *service,
                        dest,
                        weight,
                    });
                }
            }
            (Some(_), None) => self.dropped.push(Op::RemoveService(*service)),
            // The equality check is a tight loop; most kept services are unchanged.
            (Some(old), Some(new)) if old != new => self.destinations(service, old, new),
            (Some(_), Some(_)) => {}
        }
    }

    fn destinations(&mut self, service: &Service, old: &Destinations, new: &Destinations) {
        let mut a = old.iter().peekable();
        let mut d = new.iter().peekable();
        while let Some((&dest, old, new)) = next_pair::<SocketAddr, u32>(&mut a, &mut d) {
            match (old, new) {
                (None, Some(&weight)) => self.added.push(Op::AddDestination {
                    service: *service,
                    dest,
                    weight,
                }),
                (Some(_), None) => self.removed.push(Op::RemoveDestination {
                    service: *service,
                    dest,
                }),
                (Some(&was), Some(&weight)) if was != weight => {
                    self.reweighted.push(Op::SetWeight {
                        service: *service,
                        dest,
                        weight,
                    })
                }
                _ => {}
            }
        }
    }

    fn finish(self) -> Vec<Op> {
        let Plan {
            mut created,
            added,
            reweighted,
            removed,
            dropped,
        } = self;
        created.reserve(added.len() + reweighted.len() + removed.len() + dropped.len());
        created.extend(added);
        created.extend(reweighted);
        created.extend(removed);
        created.extend(dropped);
        created
    }
}
