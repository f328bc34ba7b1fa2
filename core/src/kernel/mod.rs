//! The data plane as the kernel sees it: services (protocol, address, port) with weighted
//! destinations, in the IPVS model (scheduler `wlc`, masquerade forwarding).
//!
//! Invariants: a [`KernelState`] never holds a service without its destination map (an
//! empty map is a service with no destinations); iteration is ordered.
//!
//! - [`diff`] / [`diff_services`]: the minimal ordered [`Op`] list from the applied state to
//!   the desired one (module `diff`);
//! - [`KernelState::apply`] / [`KernelState::apply_all`]: those ops with IPVS's strict
//!   semantics, for the simulated kernel (module `apply`);
//! - [`nft`]: the desired state as one nftables transaction, in full or as deltas.

use crate::vip::Protocol;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// One kernel virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Service {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

/// Destinations of one service: real server address → weight.
pub type Destinations = BTreeMap<SocketAddr, u32>;

/// The whole table: what was applied, or what is desired.
///
/// Each service's destinations are shared (`Arc`): copies of a state (the desired one, the
/// applied one, the data plane's committed one) share the maps they have in common, a
/// clone costs one pointer per service, and a change copies only the map it changes
/// (`Arc::make_mut`). Equality and the wire form are those of the maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelState {
    pub services: BTreeMap<Service, Arc<Destinations>>,
}

/// One kernel operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    AddService(Service),
    AddDestination {
        service: Service,
        dest: SocketAddr,
        weight: u32,
    },
    SetWeight {
        service: Service,
        dest: SocketAddr,
        weight: u32,
    },
    RemoveDestination {
        service: Service,
        dest: SocketAddr,
    },
    RemoveService(Service),
}

mod apply;
mod diff;
pub mod nft;

pub use apply::{ApplyError, MAX_WEIGHT};
pub use diff::{diff, diff_services};

impl Service {
    /// A service of `protocol` at `addr`.
    pub fn new(protocol: Protocol, addr: SocketAddr) -> Self {
        Service { protocol, addr }
    }
}

impl std::fmt::Display for Service {
    /// `tcp 10.0.0.1:80`, `udp [fd01:c::1]:53`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.protocol, self.addr)
    }
}

impl Op {
    /// The service this operation acts on.
    pub fn service(&self) -> &Service {
        match self {
            Op::AddService(service) | Op::RemoveService(service) => service,
            Op::AddDestination { service, .. }
            | Op::SetWeight { service, .. }
            | Op::RemoveDestination { service, .. } => service,
        }
    }
}
