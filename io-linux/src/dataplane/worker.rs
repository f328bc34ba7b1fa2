//! The worker task: owns the committed state, turns each batch of pending ops into one
//! transaction, falls back to the full table when the delta is refused, and periodically
//! reconciles the kernel with the committed state.
//!
//! Invariants:
//! - `committed` is what the kernel held after the last transaction this worker saw
//!   succeed (or, after a failure, what it read back); it changes only here, and is
//!   published to the handle after every change. It is never re-listed on a sync.
//! - One batch = everything pending when the worker wakes = one `nft -f -` run for the
//!   delta, plus at most one full run when the delta is refused.
//! - Ops that do not follow `committed` (strict IPVS semantics refuse one) are applied
//!   leniently (each op as the state it asks for), the whole table is rewritten, and the
//!   result is sent on `resync` so the core diffs from what the kernel holds: ops are
//!   never silently lost.
//! - Every failed nft run is logged once (warn, with nft's stderr) and counted as a
//!   `failed` sync; successes count as `delta` or `full`; each run's duration is observed.
//! - Reconcile (every `reconcile_interval`, counted) lists the table and, when it differs
//!   from `committed` in anything a listing shows, rewrites it in full and counts a
//!   restore. It never changes `committed`. It skips the listing only when the ruleset
//!   generation (module `genid`) is the one at which the kernel was known to hold
//!   `committed`: no transaction of anyone has been committed since. That generation is
//!   known after a listing that compared equal, after a full table committed as the only
//!   transaction between two readings of the generation, and after a delta likewise
//!   committed on a known generation; anything else forgets it.
//! - On stop, the pending batch is applied, then the task ends; the table stays.

use super::nft::Nft;
use super::{genid, listing};
use super::{log_ops, send_resync, Batch, DataPlaneConfig, DataPlaneError, Shared};
use crate::metrics::{ShellMetrics, Why};
use minuteman_core::kernel::nft::{render_delta, render_full};
use minuteman_core::kernel::{KernelState, Op};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the worker does before its first batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The table holds the adopted state: deltas apply. With the ruleset generation at
    /// which it was listed, when known.
    Ready(Option<u32>),
    /// No table: create it (empty) at once.
    CreateTable,
    /// The table could not be read or is of another configuration: the first
    /// transaction is the full table.
    NeedsFull,
}

pub(crate) struct Worker {
    /// `None`: the `none` data plane, which computes and logs only.
    nft: Option<Nft>,
    cfg: DataPlaneConfig,
    committed: Arc<KernelState>,
    /// The kernel may not hold `committed` (unreadable at start, or a failure we could
    /// not read back): the next transaction is the full table.
    needs_full: bool,
    /// The ruleset generation at which the kernel holds `committed`, when known.
    verified: Option<u32>,
    /// Whether reading the generation failed already (logged once).
    genid_failed: bool,
    start: Start,
    shared: Arc<Shared>,
    metrics: ShellMetrics,
    resync: mpsc::Sender<KernelState>,
}

/// How a transaction went: its metric label.
const DELTA: &str = "delta";
const FULL: &str = "full";
const FAILED: &str = "failed";

impl Worker {
    pub(crate) fn new(
        nft: Option<Nft>,
        cfg: DataPlaneConfig,
        committed: Arc<KernelState>,
        start: Start,
        shared: Arc<Shared>,
        metrics: ShellMetrics,
        resync: mpsc::Sender<KernelState>,
    ) -> Worker {
        Worker {
            nft,
            cfg,
            committed,
            needs_full: start == Start::NeedsFull,
            verified: match start {
                Start::Ready(generation) => generation,
                _ => None,
            },
            genid_failed: false,
            start,
            shared,
            metrics,
            resync,
        }
    }

    pub(crate) async fn run(mut self, stop: CancellationToken) {
        if self.start == Start::CreateTable {
            if let Some(nft) = self.nft.clone() {
                let script = render_full(&self.committed, &self.cfg.nft);
                if self.transaction(&nft, &script, FULL).await.is_err() {
                    self.needs_full = true;
                }
            }
        }
        let period = self
            .cfg
            .reconcile_interval
            .max(std::time::Duration::from_millis(10));
        let mut reconcile = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.shared.wake.notified() => self.sync(&stop).await,
                _ = reconcile.tick(), if self.nft.is_some() => self.reconcile().await,
            }
        }
        // Whatever was submitted before the stop.
        self.sync(&stop).await;
    }

    /// The ruleset generation, `None` when it cannot be read (logged once).
    fn generation(&mut self) -> Option<u32> {
        match genid::current() {
            Ok(generation) => Some(generation),
            Err(e) => {
                if !std::mem::replace(&mut self.genid_failed, true) {
                    tracing::warn!(
                        "cannot read the nftables ruleset generation ({e}); every reconcile lists the table"
                    );
                }
                None
            }
        }
    }

    /// One nft run, timed and counted (`label` on success, `failed` otherwise). On
    /// success the kernel holds the state about to be committed (for a delta: when it
    /// held `committed` before).
    async fn transaction(
        &mut self,
        nft: &Nft,
        script: &str,
        label: &'static str,
    ) -> Result<(), DataPlaneError> {
        let before = self.generation();
        let started = Instant::now();
        let result = nft.run(script).await;
        self.metrics
            .kernel_sync_seconds
            .observe(started.elapsed().as_secs_f64());
        let after = self.generation();
        let exact = label == FULL;
        self.verified = match (before, after, &result) {
            (Some(b), Some(a), Ok(()))
                if a == genid::next(b) && (exact || self.verified == Some(b)) =>
            {
                Some(a)
            }
            (Some(b), Some(a), Err(_)) if a == b && self.verified == Some(b) => Some(b),
            _ => None,
        };
        match &result {
            Ok(()) => {
                self.metrics
                    .kernel_syncs
                    .get_or_create(&Why::new(label))
                    .inc();
                tracing::debug!(
                    kind = label,
                    bytes = script.len(),
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "kernel sync committed"
                );
            }
            Err(e) => {
                self.metrics
                    .kernel_syncs
                    .get_or_create(&Why::new(FAILED))
                    .inc();
                tracing::warn!(
                    "{label} transaction on table inet {} failed: {e}",
                    self.cfg.nft.table_name()
                );
            }
        }
        result
    }

    fn commit(&mut self, state: Arc<KernelState>) {
        self.committed = state.clone();
        self.shared.commit(&self.metrics, state);
    }

    /// Applies everything pending as one batch.
    async fn sync(&mut self, stop: &CancellationToken) {
        let Some(Batch {
            ops,
            target,
            followed,
        }) = self.shared.next_batch(
            &self.metrics,
            &self.committed,
            "rewriting the table and resyncing the core",
        )
        else {
            return;
        };
        let Some(nft) = self.nft.clone() else {
            log_ops(&ops);
            self.metrics
                .kernel_syncs
                .get_or_create(&Why::new(DELTA))
                .inc();
            self.commit(target);
            if !followed {
                self.send_resync(stop).await;
            }
            return;
        };
        if followed && !self.needs_full {
            // The kernel holds `committed` (it is what it held after the last transaction
            // this worker saw succeed): the delta goes from there.
            let touched = ops.iter().map(Op::service);
            let delta = render_delta(&self.committed, &target, touched, &self.cfg.nft);
            // Empty when the ops only touch services nft cannot hold, or change nothing
            // it shows.
            if delta.is_empty() || self.transaction(&nft, &delta, DELTA).await.is_ok() {
                self.commit(target);
                return;
            }
        }
        let full = render_full(&target, &self.cfg.nft);
        if self.transaction(&nft, &full, FULL).await.is_ok() {
            self.needs_full = false;
            self.commit(target);
            if !followed {
                self.send_resync(stop).await;
            }
            return;
        }
        // Neither the delta nor the full table: believe the kernel.
        match read_back(&nft).await {
            Ok(state) => {
                tracing::warn!(
                    "read table inet {} back after a failed sync: {} services",
                    self.cfg.nft.table_name(),
                    state.services.len()
                );
                self.needs_full = false;
                // Read without its generation: the next reconcile lists again.
                self.verified = None;
                self.commit(Arc::new(state));
            }
            Err(e) => {
                tracing::warn!(
                    "cannot read table inet {} back after a failed sync ({e}); keeping the last committed state, the next transaction rewrites the table",
                    self.cfg.nft.table_name()
                );
                self.needs_full = true;
            }
        }
        self.send_resync(stop).await;
    }

    /// Sends the committed state to the pump. Waits for room, unless the worker is
    /// stopping (then the pump may no longer read, and the next start adopts the kernel).
    async fn send_resync(&self, stop: &CancellationToken) {
        send_resync(&self.resync, (*self.committed).clone(), stop).await;
    }

    /// Lists the table and rewrites it when it is not `committed`.
    async fn reconcile(&mut self) {
        let Some(nft) = self.nft.clone() else {
            return;
        };
        self.metrics.kernel_reconciles.inc();
        let generation = self.generation();
        if generation.is_some() && generation == self.verified {
            return;
        }
        let table = self.cfg.nft.table_name();
        let difference = match nft.list().await {
            Ok(None) => "the table is gone".to_owned(),
            Ok(Some(text)) => match listing::parse(&text) {
                Ok(found) => match listing::compare(&found, &self.committed, &self.cfg.nft) {
                    Ok(()) => {
                        self.needs_full = false;
                        self.verified = generation;
                        return;
                    }
                    Err(why) => why,
                },
                Err(e) => format!("it does not parse ({e})"),
            },
            Err(e) => {
                tracing::warn!("reconcile cannot list table inet {table}: {e}");
                return;
            }
        };
        tracing::warn!(
            "table inet {table} differs from the committed state: {difference}; restoring it"
        );
        self.metrics.kernel_restores.inc();
        let full = render_full(&self.committed, &self.cfg.nft);
        if self.transaction(&nft, &full, FULL).await.is_ok() {
            self.needs_full = false;
        }
    }
}

/// The table as the kernel holds it.
async fn read_back(nft: &Nft) -> Result<KernelState, DataPlaneError> {
    match nft.list().await? {
        None => Ok(KernelState::default()),
        Some(text) => listing::parse(&text)
            .map(|l| l.state)
            .map_err(|e| DataPlaneError::Listing(e.to_string())),
    }
}
