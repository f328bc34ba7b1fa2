//! The data plane: the core's kernel operations applied to the kernel, off the node's task.
//!
//! The pump calls [`spawn`] once at start, adopts the returned state with
//! `Node::resync_kernel`, then hands every `Output::Kernel(ops)` to
//! [`DataPlaneHandle::submit`]. One worker task owns the committed state:
//! - `nftables` (module `worker`): the ops as `nft -f -` transactions (module `nft`),
//!   reading the table back (module `listing`) only at start, after a failure and on the
//!   periodic reconcile (and then only when the ruleset generation, module `genid`, moved
//!   since the kernel was last known to hold the committed state);
//! - `ipvs` (module [`ipvs`]): the ops as generic netlink requests, the VIP addresses on a
//!   dummy interface, repairs and reconciles from dumps;
//! - `none`: the ops logged, nothing touched.
//!
//! [`DataPlaneHandle::watch_committed`] tells those who follow the committed state (the
//! DNS table) of each change.
//!
//! Invariants:
//! - [`DataPlaneHandle::submit`] never blocks and never drops: ops are appended to one
//!   pending list and every op pending when the worker wakes goes into the same
//!   transaction, in submission order.
//! - Start never changes the kernel when it holds a table this agent can read: the table
//!   left by the previous run is adopted as it is, so traffic keeps flowing across a
//!   restart. Neither [`DataPlaneHandle::shutdown`] nor dropping the handle removes it;
//!   only [`cleanup`] does.
//! - When the kernel refuses a transaction and a full restore fails too, the worker reads
//!   the kernel back and sends it on `resync` for the pump to pass to
//!   `Node::resync_kernel`; likewise when the ops do not follow the committed state.

use crate::metrics::ShellMetrics;
use minuteman_core::kernel::nft::NftConfig;
use minuteman_core::kernel::{KernelState, Op};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

mod genid;
pub mod ipvs;
pub mod listing;
pub mod netlink;
pub mod nft;
mod worker;

/// Which data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPlaneKind {
    Nftables,
    Ipvs,
    None,
}

#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    pub kind: DataPlaneKind,
    pub nft: NftConfig,
    /// The `nft` binary (default `nft`, found on `PATH`). It must act on the agent's own
    /// network namespace (the reconcile reads the ruleset generation there).
    pub nft_binary: PathBuf,
    /// How often the kernel is compared with the committed state.
    pub reconcile_interval: Duration,
    /// The IPVS data plane's host side.
    pub ipvs: IpvsConfig,
}

/// The IPVS data plane's host side.
#[derive(Clone, Debug)]
pub struct IpvsConfig {
    /// The dummy interface that holds the VIP addresses (default `minuteman`).
    pub interface: String,
    /// How replies are brought back through this host (default: the iptables rule).
    pub masquerade: ipvs::host::Masquerade,
    /// The `iptables` binary (default `iptables`, found on `PATH`; `ip6tables` beside it
    /// is used for IPv6 when present).
    pub iptables: String,
}

impl Default for IpvsConfig {
    fn default() -> Self {
        IpvsConfig {
            interface: ipvs::link::DEFAULT_NAME.to_owned(),
            masquerade: ipvs::host::Masquerade::Iptables,
            iptables: "iptables".to_owned(),
        }
    }
}

/// Default of [`DataPlaneConfig::reconcile_interval`].
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

impl DataPlaneConfig {
    /// `kind` with the defaults: table `minuteman` with the default marks, `nft` from
    /// `PATH`, a reconcile every 10 s.
    pub fn new(kind: DataPlaneKind) -> DataPlaneConfig {
        DataPlaneConfig {
            kind,
            nft: NftConfig::default(),
            nft_binary: PathBuf::from("nft"),
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            ipvs: IpvsConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("{binary} does not work: {stderr}")]
    Unusable { binary: String, stderr: String },
    #[error("nft refused the transaction: {stderr}")]
    Refused { stderr: String },
    #[error("cannot read the table back: {0}")]
    Listing(String),
    #[error("IPVS: {0}")]
    Ipvs(#[from] ipvs::socket::IpvsError),
    #[error("the VIP interface: {0}")]
    Link(#[from] ipvs::link::LinkError),
    #[error("the host for IPVS: {0}")]
    Host(#[from] ipvs::host::HostError),
}

/// What the handle and the worker share: the pending ops and the last committed state.
pub(crate) struct Shared {
    pending: Mutex<Vec<Op>>,
    wake: Notify,
    committed: Mutex<Arc<KernelState>>,
    /// The committed state again, for those who wait for it to change (the DNS table).
    committed_watch: watch::Sender<Arc<KernelState>>,
}

impl Shared {
    fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *lock(&self.pending))
    }

    fn publish(&self, state: Arc<KernelState>) {
        *lock(&self.committed) = state.clone();
        self.committed_watch.send_replace(state);
    }
}

/// A poisoned lock only means another thread panicked mid-update of a plain value.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The handle the pump holds. Dropping it stops the worker after its pending batch, like
/// [`DataPlaneHandle::shutdown`] without waiting.
pub struct DataPlaneHandle {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DataPlaneHandle {
    /// Queues `ops` for the next transaction; never blocks, never drops.
    pub fn submit(&self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        lock(&self.shared.pending).extend(ops);
        self.shared.wake.notify_one();
    }

    /// The state the worker last committed to the kernel (for `none`: computed). Cheap:
    /// shares the worker's copy.
    pub fn committed(&self) -> Arc<KernelState> {
        lock(&self.shared.committed).clone()
    }

    /// The committed state, and each change of it.
    pub fn watch_committed(&self) -> watch::Receiver<Arc<KernelState>> {
        self.shared.committed_watch.subscribe()
    }

    /// Waits for queued transactions to finish, then stops the worker. The table stays.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!("data-plane worker ended abnormally: {e}");
            }
        }
    }
}

impl Drop for DataPlaneHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the worker; returns the handle and what the kernel holds now (adopted state).
///
/// Must be called inside a tokio runtime. For `ipvs`, opens the IPVS family, checks
/// the sysctls, the dummy interface and the masquerade rule, and adopts the services
/// minuteman owns (module `ipvs::worker`; blocking, once). For `nftables`, checks that the binary runs and
/// lists the table (blocking: once, at start); a table that is absent is adopted as the
/// empty state (and created empty at once), one that cannot be parsed is adopted as empty
/// and replaced by the first transaction. Never flushes or rewrites a readable table.
pub fn spawn(
    cfg: DataPlaneConfig,
    metrics: ShellMetrics,
    resync: mpsc::Sender<KernelState>,
) -> Result<(DataPlaneHandle, KernelState), DataPlaneError> {
    let shared = |adopted: &KernelState| {
        metrics
            .kernel_services
            .set(i64::try_from(adopted.services.len()).unwrap_or(i64::MAX));
        Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(),
            committed: Mutex::new(Arc::new(adopted.clone())),
            committed_watch: watch::Sender::new(Arc::new(adopted.clone())),
        })
    };
    let stop = CancellationToken::new();
    let (shared, adopted, task) = match cfg.kind {
        DataPlaneKind::Ipvs => {
            let (kernel, adopted) = ipvs::worker::IpvsKernel::start(&cfg)?;
            tracing::info!(
                "IPVS data plane: adopted {} services (interface {})",
                adopted.services.len(),
                cfg.ipvs.interface
            );
            let shared = shared(&adopted);
            let worker = ipvs::worker::IpvsWorker::new(
                kernel,
                cfg,
                Arc::new(adopted.clone()),
                shared.clone(),
                metrics,
                resync,
            );
            let task = tokio::spawn(worker.run(stop.clone()));
            (shared, adopted, task)
        }
        DataPlaneKind::None | DataPlaneKind::Nftables => {
            let (nft, adopted, start) = match cfg.kind {
                DataPlaneKind::Nftables => {
                    let nft = nft::Nft::new(&cfg.nft_binary, cfg.nft.table_name());
                    let version = nft.version()?;
                    let (adopted, start) = adopt(&nft, &cfg)?;
                    tracing::info!(
                        "nftables data plane ({version}): adopted {} services from table inet {}",
                        adopted.services.len(),
                        cfg.nft.table_name()
                    );
                    (Some(nft), adopted, start)
                }
                _ => (None, KernelState::default(), worker::Start::Ready(None)),
            };
            let shared = shared(&adopted);
            let worker = worker::Worker::new(
                nft,
                cfg,
                Arc::new(adopted.clone()),
                start,
                shared.clone(),
                metrics,
                resync,
            );
            let task = tokio::spawn(worker.run(stop.clone()));
            (shared, adopted, task)
        }
    };
    Ok((
        DataPlaneHandle {
            shared,
            stop,
            task: Some(task),
        },
        adopted,
    ))
}

/// Reads the table at start: the state to adopt and what the worker must do first.
fn adopt(
    nft: &nft::Nft,
    cfg: &DataPlaneConfig,
) -> Result<(KernelState, worker::Start), DataPlaneError> {
    // Read before the listing: if anything commits in between, it differs afterwards.
    let generation = genid::current().ok();
    let Some(text) = nft.list_blocking()? else {
        return Ok((KernelState::default(), worker::Start::CreateTable));
    };
    match listing::parse(&text) {
        Ok(listing) => {
            // Fixed chains or marks from another configuration: the first transaction
            // rewrites the whole table (the services as adopted stay).
            let start = match listing::compare(&listing, &listing.state, &cfg.nft) {
                Ok(()) => worker::Start::Ready(generation),
                Err(why) => {
                    tracing::warn!(
                        "table inet {} differs from this configuration ({why}); the next transaction rewrites it",
                        cfg.nft.table_name()
                    );
                    worker::Start::NeedsFull
                }
            };
            Ok((listing.state, start))
        }
        Err(e) => {
            tracing::warn!(
                "cannot read table inet {} ({e}); adopting it as empty, the next transaction rewrites it",
                cfg.nft.table_name()
            );
            Ok((KernelState::default(), worker::Start::NeedsFull))
        }
    }
}

/// `minuteman cleanup`: removes everything the data plane installed (for `nftables`, the
/// table; for `ipvs`, minuteman's services, the dummy interface and the masquerade rule;
/// absent is fine). `none` installed nothing.
pub fn cleanup(cfg: &DataPlaneConfig) -> Result<(), DataPlaneError> {
    match cfg.kind {
        DataPlaneKind::None => Ok(()),
        DataPlaneKind::Ipvs => {
            let removed = ipvs::worker::cleanup(cfg)?;
            tracing::info!(
                "removed {removed} IPVS services, interface {} and the masquerade rule",
                cfg.ipvs.interface
            );
            Ok(())
        }
        DataPlaneKind::Nftables => {
            let nft = nft::Nft::new(&cfg.nft_binary, cfg.nft.table_name());
            nft.run_blocking(&nft.delete_script())
        }
    }
}

/// One batch of a worker: every op pending when it woke, and the state they lead to.
pub(crate) struct Batch {
    pub ops: Vec<Op>,
    pub target: Arc<KernelState>,
    /// Whether the ops follow the committed state (strictly, as IPVS applies them); when
    /// not, `target` has each op applied as the state it asks for.
    pub followed: bool,
}

impl Shared {
    /// Takes everything pending (counted in `kernel_ops`) with the state it leads to from
    /// `committed`; `None` when nothing is pending. Ops that do not follow `committed` are
    /// logged with what the worker does about them (`remedy`).
    fn next_batch(
        &self,
        metrics: &ShellMetrics,
        committed: &KernelState,
        remedy: &str,
    ) -> Option<Batch> {
        let ops = self.take();
        if ops.is_empty() {
            return None;
        }
        metrics.kernel_ops.inc_by(ops.len() as u64);
        let mut target = committed.clone();
        let followed = match target.apply_all(&ops) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "{} kernel ops do not follow the committed state ({e}); applying them leniently, {remedy}",
                    ops.len()
                );
                target = committed.clone();
                apply_leniently(&mut target, &ops);
                false
            }
        };
        Some(Batch {
            ops,
            target: Arc::new(target),
            followed,
        })
    }
}

/// Sends `state` to the pump for `Node::resync_kernel`. Waits for room, unless the worker
/// is stopping (then the pump may no longer read, and the next start adopts the kernel).
pub(crate) async fn send_resync(
    resync: &mpsc::Sender<KernelState>,
    state: KernelState,
    stop: &CancellationToken,
) {
    match resync.try_send(state) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(state)) => {
            tokio::select! {
                _ = resync.send(state) => {}
                () = stop.cancelled() => {}
            }
        }
    }
}

impl Shared {
    /// Makes `state` the committed one for the handle, and its size the gauge's.
    fn commit(&self, metrics: &ShellMetrics, state: Arc<KernelState>) {
        metrics
            .kernel_services
            .set(i64::try_from(state.services.len()).unwrap_or(i64::MAX));
        self.publish(state);
    }
}

/// At most this many ops are logged one by one per batch by the `none` data plane.
const LOGGED_OPS: usize = 1000;

/// Each op as the state it asks for, whatever the state holds: a service added or kept,
/// a destination set to its weight (created with its service when missing), removals of
/// what is absent ignored. A destination of the other address family is kept as asked
/// (the rendering leaves it out): refusing it would make the core ask again after every
/// resync.
pub(crate) fn apply_leniently(state: &mut KernelState, ops: &[Op]) {
    for op in ops {
        match *op {
            Op::AddService(service) => {
                state.services.entry(service).or_default();
            }
            Op::AddDestination {
                service,
                dest,
                weight,
            }
            | Op::SetWeight {
                service,
                dest,
                weight,
            } => {
                Arc::make_mut(state.services.entry(service).or_default()).insert(dest, weight);
            }
            Op::RemoveDestination { service, dest } => {
                if let Some(dests) = state.services.get_mut(&service) {
                    Arc::make_mut(dests).remove(&dest);
                }
            }
            Op::RemoveService(service) => {
                state.services.remove(&service);
            }
        }
    }
}

/// The `none` data plane's output: every op at info (up to [`LOGGED_OPS`] per batch).
pub(crate) fn log_ops(ops: &[Op]) {
    for op in ops.iter().take(LOGGED_OPS) {
        tracing::info!(?op, "kernel op (data plane none)");
    }
    if ops.len() > LOGGED_OPS {
        tracing::info!(
            "... and {} more kernel ops (data plane none)",
            ops.len() - LOGGED_OPS
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minuteman_core::kernel::Service;
    use minuteman_core::Protocol;

    #[test]
    fn lenient_application_reaches_what_the_ops_ask() {
        let s = Service::new(Protocol::Tcp, "10.0.0.1:80".parse().unwrap());
        let d = "10.1.0.1:80".parse().unwrap();
        let v6 = "[fd00::1]:80".parse().unwrap();
        let mut state = KernelState::default();
        apply_leniently(
            &mut state,
            &[
                Op::SetWeight {
                    service: s,
                    dest: d,
                    weight: 3,
                },
                Op::AddService(s),
                Op::AddDestination {
                    service: s,
                    dest: v6,
                    weight: 1,
                },
                Op::RemoveDestination {
                    service: s,
                    dest: v6,
                },
                Op::RemoveService(Service::new(Protocol::Udp, s.addr)),
            ],
        );
        assert_eq!(state.services.len(), 1);
        assert_eq!(state.services[&s].get(&d), Some(&3));
        assert_eq!(state.services[&s].len(), 1, "{state:?}");
    }
}
