//! The data plane: the core's kernel operations applied to the kernel, off the node's task.
//!
//! INTERFACE STUB: filled in by the data-plane work. The pump calls [`spawn`] once at
//! start, adopts the returned state with `Node::resync_kernel`, then hands every
//! `Output::Kernel(ops)` to [`DataPlaneHandle::submit`] (never blocks, never drops: ops are
//! coalesced into the next transaction). When the kernel refuses a transaction and a full
//! restore fails too, the worker reads the kernel back and sends it on `resync` for the
//! pump to pass to `Node::resync_kernel`.

use crate::metrics::ShellMetrics;
use minuteman_core::kernel::nft::NftConfig;
use minuteman_core::kernel::{KernelState, Op};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Which data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPlaneKind {
    Nftables,
    None,
}

#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    pub kind: DataPlaneKind,
    pub nft: NftConfig,
    /// The `nft` binary (default `nft`, found on `PATH`).
    pub nft_binary: PathBuf,
    /// How often the kernel is compared with the committed state.
    pub reconcile_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("nft refused the transaction: {stderr}")]
    Refused { stderr: String },
    #[error("cannot read the table back: {0}")]
    Listing(String),
}

/// The handle the pump holds.
pub struct DataPlaneHandle {
    _private: (),
}

impl DataPlaneHandle {
    /// Queues `ops` for the next transaction; never blocks, never drops.
    pub fn submit(&self, ops: Vec<Op>) {
        tracing::info!(ops = ops.len(), "kernel operations (stub data plane)");
    }

    /// Waits for queued transactions to finish, then stops the worker.
    pub async fn shutdown(self) {}
}

/// Starts the worker; returns the handle and what the kernel holds now (adopted state).
pub fn spawn(
    _cfg: DataPlaneConfig,
    _metrics: ShellMetrics,
    _resync: mpsc::Sender<KernelState>,
) -> Result<(DataPlaneHandle, KernelState), DataPlaneError> {
    Ok((DataPlaneHandle { _private: () }, KernelState::default()))
}

/// `minuteman cleanup`: removes everything the data plane installed.
pub fn cleanup(_cfg: &DataPlaneConfig) -> Result<(), DataPlaneError> {
    todo!("data plane")
}
