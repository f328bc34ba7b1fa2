//! The agent's DNS: named VIPs answered on every host from the replicated state
//! (`NAME.FRAMEWORK.l4lb.thisdcos.directory`), everything else refused or forwarded.
//!
//! - [`table`]: the names the local kernel serves, swapped in whole on every change;
//! - [`answer`]: one query in, one reply (or forward, or drop) out; pure;
//! - [`server`]: the UDP and TCP listeners, the upstream relay, the counters.

pub mod answer;
pub mod server;
pub mod table;
