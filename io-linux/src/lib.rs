//! `minuteman`, the Linux shell around `minuteman-core`: the agent daemon and the CLI.
//!
//! - [`agent`]: `minuteman agent`, the tokio shell that pumps one core node;
//! - [`dataplane`]: the kernel side (`nftables`, `ipvs`, `none`), behind one handle;
//! - [`dns`]: named VIPs served over DNS by every agent;
//! - [`mesos_source`]: the local Mesos agent's VIP backends, polled over HTTP or from a file;
//! - [`metrics`]: the Prometheus exposition;
//! - [`os`]: the socket, thread and signal calls that differ under madsim;
//! - [`lab`]: a cluster in network namespaces on one machine, for `minuteman demo` and the
//!   end-to-end tests.

pub mod agent;
pub mod dataplane;
pub mod dns;
// The namespace lab runs real processes on real sockets: not in the simulated build.
#[cfg(not(madsim))]
pub mod lab;
pub mod mesos_source;
pub mod metrics;
pub mod os;
