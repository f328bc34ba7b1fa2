//! The local Mesos agent's VIP backends, read over HTTP or from a file.
//!
//! INTERFACE STUB: filled in by the Mesos work. [`run`] polls until `shutdown` fires and
//! publishes each new good [`LocalServices`] on `tx` (a `watch` channel: one slot, the
//! latest wins); errors keep the last good state.

use crate::metrics::ShellMetrics;
use minuteman_core::vip::VipSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What this host reports: its Mesos agent address(es) and their VIP backends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalServices {
    pub agents: Vec<IpAddr>,
    pub services: VipSet,
}

/// Where the state comes from.
#[derive(Clone, Debug)]
pub enum MesosSource {
    /// The agent's `/state` endpoint (e.g. `http://10.0.0.5:5051/state`).
    Url {
        url: String,
        /// Sent as `Authorization: token=...` when set.
        auth_token: Option<String>,
        /// A PEM file of CA certificates for `https` URLs.
        ca_file: Option<PathBuf>,
        timeout: Duration,
    },
    /// A file holding a Mesos state document, re-read when it changes.
    File { path: PathBuf },
}

#[derive(Clone, Debug)]
pub struct MesosConfig {
    pub source: MesosSource,
    pub poll_interval: Duration,
    /// The longest backoff after errors.
    pub max_backoff: Duration,
    /// The address of this host's Mesos agent: every task's agent address.
    pub agent_ip: IpAddr,
}

impl MesosConfig {
    /// Polls every 2 s, backs off up to 60 s.
    pub fn new(source: MesosSource, agent_ip: IpAddr) -> MesosConfig {
        MesosConfig {
            source,
            poll_interval: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            agent_ip,
        }
    }
}

/// Polls until `shutdown`; publishes every changed good state on `tx`.
pub async fn run(
    _cfg: MesosConfig,
    _metrics: ShellMetrics,
    _tx: watch::Sender<Option<LocalServices>>,
    shutdown: CancellationToken,
) {
    // Stub until the poller lands: publishes nothing.
    shutdown.cancelled().await
}
