//! The IPVS data plane: the core's kernel operations as generic netlink requests to the
//! kernel's `IPVS` family (module `msg` encodes and decodes them, module `socket` talks to
//! the kernel).
//!
//! Invariants: see each module.

pub mod host;
pub mod link;
pub mod msg;
pub mod socket;
pub(crate) mod worker;
