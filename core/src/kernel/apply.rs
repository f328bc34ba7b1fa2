//! Applying [`Op`]s to a [`KernelState`] with the kernel's strict semantics: the model of
//! IPVS that the simulated kernel uses.
//!
//! Invariants:
//! - An op either succeeds and changes the state exactly as it says, or fails with a typed
//!   [`ApplyError`] and changes nothing. Nothing panics.
//! - Strict like IPVS: adding what exists (`EEXIST`) and touching what does not (`ESRCH`,
//!   `ENOENT`) are errors, never silently absorbed. Also like IPVS with masquerade
//!   forwarding: a destination must be of the service's address family (IPVS mixes families
//!   only for tunnelling). Setting a weight to its current value succeeds.
//! - Any `u32` weight is accepted. Real IPVS refuses weights above [`MAX_WEIGHT`]
//!   (`ERANGE`), but weights come from peers' records: a hostile peer must not be able to
//!   make a correct diff fail here. Clamping belongs to whoever builds the desired state,
//!   or to the IPVS shell; the nft rendering scales any weights.
//! - `RemoveService` removes the service with all its destinations.
//! - [`KernelState::apply_all`] applies in order and stops at the first error; the ops
//!   before it stay applied, as with IPVS, where each op is its own netlink request.

use super::{KernelState, Op, Service};
use std::net::SocketAddr;
use std::sync::Arc;

/// Why the kernel refused an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("service {0} already exists")]
    ServiceExists(Service),
    #[error("no service {0}")]
    NoSuchService(Service),
    #[error("destination {dest} of service {service} already exists")]
    DestinationExists { service: Service, dest: SocketAddr },
    #[error("no destination {dest} in service {service}")]
    NoSuchDestination { service: Service, dest: SocketAddr },
    #[error("destination {dest} is not of the address family of service {service}")]
    FamilyMismatch { service: Service, dest: SocketAddr },
}

/// The largest weight IPVS accepts (its weight is a signed `int`); not enforced by
/// [`KernelState::apply`].
pub const MAX_WEIGHT: u32 = i32::MAX as u32;

impl KernelState {
    /// Apply one operation, or refuse it with the error the kernel would give and leave the
    /// state unchanged.
    pub fn apply(&mut self, op: &Op) -> Result<(), ApplyError> {
        match *op {
            Op::AddService(service) => {
                if self.services.contains_key(&service) {
                    return Err(ApplyError::ServiceExists(service));
                }
                self.services.insert(service, Default::default());
            }
            Op::RemoveService(service) => {
                if self.services.remove(&service).is_none() {
                    return Err(ApplyError::NoSuchService(service));
                }
            }
            Op::AddDestination {
                service,
                dest,
                weight,
            } => {
                let dests = self
                    .services
                    .get_mut(&service)
                    .ok_or(ApplyError::NoSuchService(service))?;
                check_family(service, dest)?;
                if dests.contains_key(&dest) {
                    return Err(ApplyError::DestinationExists { service, dest });
                }
                Arc::make_mut(dests).insert(dest, weight);
            }
            Op::SetWeight {
                service,
                dest,
                weight,
            } => {
                let dests = self
                    .services
                    .get_mut(&service)
                    .ok_or(ApplyError::NoSuchService(service))?;
                check_family(service, dest)?;
                let slot = Arc::make_mut(dests)
                    .get_mut(&dest)
                    .ok_or(ApplyError::NoSuchDestination { service, dest })?;
                *slot = weight;
            }
            Op::RemoveDestination { service, dest } => {
                let dests = self
                    .services
                    .get_mut(&service)
                    .ok_or(ApplyError::NoSuchService(service))?;
                if Arc::make_mut(dests).remove(&dest).is_none() {
                    return Err(ApplyError::NoSuchDestination { service, dest });
                }
            }
        }
        Ok(())
    }

    /// Apply `ops` in order, stopping at the first refused one (whose error is returned;
    /// the ops before it stay applied).
    pub fn apply_all(&mut self, ops: &[Op]) -> Result<(), ApplyError> {
        ops.iter().try_for_each(|op| self.apply(op))
    }
}

fn check_family(service: Service, dest: SocketAddr) -> Result<(), ApplyError> {
    if service.addr.is_ipv4() != dest.is_ipv4() {
        return Err(ApplyError::FamilyMismatch { service, dest });
    }
    Ok(())
}
