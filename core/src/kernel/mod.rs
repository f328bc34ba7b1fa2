//! The data plane as the kernel sees it: services (protocol, address, port) with weighted
//! destinations, in the IPVS model (scheduler `wlc`, masquerade forwarding).
//!
//! Invariants: a [`KernelState`] never holds a service without its destination map (an
//! empty map is a service with no destinations); iteration is ordered.

use crate::vip::Protocol;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One kernel virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Service {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

/// Destinations of one service: real server address → weight.
pub type Destinations = BTreeMap<SocketAddr, u32>;

/// The whole table: what was applied, or what is desired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelState {
    pub services: BTreeMap<Service, Destinations>,
}

/// One kernel operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    AddService(Service),
    AddDestination { service: Service, dest: SocketAddr, weight: u32 },
    SetWeight { service: Service, dest: SocketAddr, weight: u32 },
    RemoveDestination { service: Service, dest: SocketAddr },
    RemoveService(Service),
}
