//! The agent's DNS: named VIPs answered on every host from the replicated state
//! (`NAME.FRAMEWORK.l4lb.thisdcos.directory`), everything else refused or forwarded.
//!
//! - [`table`], [`answer`]: the core's (`minuteman_core::dns`), re-exported;
//! - [`server`]: the UDP and TCP listeners, the upstream relay, the counters.

pub use minuteman_core::dns::{answer, table};
pub mod server;
