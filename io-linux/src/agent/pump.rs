//! The one task that owns the core [`Node`] and pumps it: every input in (frames, closed
//! connections, probe results, the Mesos state, kernel read-backs, API queries), the
//! outputs drained until `Timeout` after each, then a sleep until that deadline.
//!
//! Invariants:
//! - Nothing else touches the node; other tasks talk to this one through bounded channels.
//! - After every input the outputs are drained to `Timeout` before the next input.
//! - Time given to the node is the tokio monotonic clock since this task's start, so it
//!   never goes backwards.
//! - Kernel operations go to the data plane, which never drops them; a new epoch and new
//!   local services go to the state directory before they matter for a restart.

use super::api::Query;
use super::inbox::Input;
use super::persist::SavedState;
use super::probe::Prober;
use super::transport::Outbound;
use super::views;
use crate::dataplane::DataPlaneHandle;
use crate::dns::server::{NameList, TaskList};
use crate::mesos_source::LocalServices;
use crate::metrics::{CoreSnapshot, ShellMetrics};
use minuteman_core::kernel::KernelState;
use minuteman_core::node::{Event, Node, Output};
use minuteman_core::time::Time;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest sleep between two wake-ups, whatever the node's deadline.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Log lines about stalled agents: at most one per this interval (with a count of the
/// ones left out), since a lossy link can flap between stalled and resumed many times.
const STALL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The channels the pump reads.
pub struct PumpInputs {
    pub inbox: mpsc::Receiver<Input>,
    pub mesos: watch::Receiver<Option<LocalServices>>,
    pub resync: mpsc::Receiver<KernelState>,
    pub queries: mpsc::Receiver<Query>,
}

/// What the pump publishes for other tasks: the state to persist, the names and the task
/// records for DNS.
pub struct Published {
    pub persist: watch::Sender<SavedState>,
    pub names: watch::Sender<Arc<NameList>>,
    pub tasks: watch::Sender<Arc<TaskList>>,
}

/// The node and everything its outputs go to.
pub struct Pump {
    pub node: Node,
    pub origin: Instant,
    pub outbound: Outbound,
    pub prober: Prober,
    pub dataplane: DataPlaneHandle,
    pub metrics: ShellMetrics,
    pub persist: watch::Sender<SavedState>,
    /// The named VIPs with their addresses, republished when they change (for DNS).
    pub names: watch::Sender<Arc<NameList>>,
    names_version: Option<u64>,
    /// The cluster's task records, republished when they change (for DNS).
    pub tasks: watch::Sender<Arc<TaskList>>,
    tasks_version: Option<u64>,
    /// Inbound connection → the advertised address of the peer that speaks on it.
    conns: HashMap<u64, SocketAddr>,
    stall_log: StallLog,
}

#[derive(Default)]
struct StallLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl StallLog {
    /// Whether to log now; counts what it suppresses.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now < t + STALL_LOG_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Pump {
    pub fn new(
        node: Node,
        origin: Instant,
        outbound: Outbound,
        prober: Prober,
        dataplane: DataPlaneHandle,
        metrics: ShellMetrics,
        published: Published,
    ) -> Pump {
        let Published {
            persist,
            names,
            tasks,
        } = published;
        Pump {
            node,
            origin,
            outbound,
            prober,
            dataplane,
            metrics,
            persist,
            names,
            names_version: None,
            tasks,
            tasks_version: None,
            conns: HashMap::new(),
            stall_log: StallLog::default(),
        }
    }

    fn now(&self) -> Time {
        Time::from_duration(self.origin.elapsed())
    }

    /// Runs until `shutdown`; then closes the peer connections after flushing them and
    /// hands back the data plane (for its own shutdown) and the writers still flushing.
    pub async fn run(
        mut self,
        mut inputs: PumpInputs,
        shutdown: CancellationToken,
    ) -> (DataPlaneHandle, Vec<tokio::task::JoinHandle<()>>) {
        let mut deadline = self.drain();
        self.publish_names();
        let mut mesos_open = true;
        loop {
            let wake = self.origin
                + Duration::from_nanos(deadline.as_nanos()).min(self.origin.elapsed() + MAX_SLEEP);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(input) = inputs.inbox.recv() => self.handle_input(input),
                Some(actual) = inputs.resync.recv() => {
                    tracing::warn!(services = actual.services.len(), "the kernel disagreed with what was applied; continuing from what it holds");
                    let now = self.now();
                    self.node.resync_kernel(now, actual);
                }
                changed = inputs.mesos.changed(), if mesos_open => {
                    if changed.is_err() {
                        mesos_open = false;
                    } else {
                        let update = inputs.mesos.borrow_and_update().clone();
                        if let Some(update) = update {
                            self.set_local_services(update);
                        }
                    }
                }
                Some(query) = inputs.queries.recv() => self.answer(query),
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
            }
            deadline = self.drain();
            self.publish_names();
        }
        let writers = self.outbound.close_all();
        (self.dataplane, writers)
    }

    /// Hands the named VIPs and the task records to the DNS table when they changed since
    /// the last time.
    fn publish_names(&mut self) {
        let tasks_version = self.node.task_directory().version();
        if self.tasks_version != Some(tasks_version) {
            self.tasks_version = Some(tasks_version);
            let merged = self.node.task_directory().merged();
            self.tasks.send_replace(Arc::new(merged));
        }
        let version = self.node.desired().names_version();
        if self.names_version == Some(version) {
            return;
        }
        self.names_version = Some(version);
        let list: NameList = self
            .node
            .desired()
            .names()
            .entries()
            .map(|(name, v4, v6)| (name.to_owned(), v4, v6))
            .collect();
        self.names.send_replace(Arc::new(list));
    }

    fn handle_input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Frame {
                conn,
                remote,
                bytes,
            } => match self.node.handle_frame(now, remote, &bytes) {
                Ok(from) => {
                    if self.conns.len() < 65_536 || self.conns.contains_key(&conn) {
                        self.conns.entry(conn).or_insert(from.addr);
                    }
                }
                Err(error) => {
                    tracing::debug!(%remote, %error, "frame refused");
                }
            },
            Input::InboundClosed { conn } => {
                if let Some(peer) = self.conns.remove(&conn) {
                    self.node.handle_connection_lost(now, peer);
                }
            }
            Input::ConnectionLost(peer) => self.node.handle_connection_lost(now, peer),
            Input::HostProbe { peer, answered } => self.node.handle_host_probe(now, peer, answered),
        }
    }

    fn set_local_services(&mut self, update: LocalServices) {
        let now = self.now();
        let backends = update.services.backend_count();
        let vips = update.services.vips.len();
        let tasks = update.tasks.names.len();
        match self
            .node
            .set_local_report(now, update.agents, update.services, update.tasks)
        {
            Ok(()) => {
                tracing::info!(backends, vips, tasks, "local services updated");
                self.save();
            }
            Err(error) => {
                self.metrics.mesos_rejected.inc();
                tracing::warn!(%error, "local services refused; the last accepted set stays published");
            }
        }
    }

    /// Hands the current epoch and local services to the state writer.
    fn save(&self) {
        let state = SavedState {
            epoch: self.node.id().epoch,
            agents: self
                .node
                .record(&self.node.id().addr)
                .map(|r| r.body.agents.clone())
                .unwrap_or_default(),
            services: self.node.local_services_shared(),
        };
        self.persist.send_if_modified(|old| {
            let changed = *old != state;
            *old = state;
            changed
        });
    }

    fn answer(&mut self, query: Query) {
        // A requester that gave up is no loss.
        match query {
            Query::Vips(tx) => {
                let _ = tx.send(views::vips(&self.node));
            }
            Query::Members(tx) => {
                let _ = tx.send(views::members(&self.node));
            }
            Query::State(tx) => {
                let _ = tx.send(views::state(&self.node));
            }
            Query::Core(tx) => {
                let _ = tx.send(self.snapshot());
            }
            Query::Invariants(tx) => {
                let _ = tx.send(self.node.check_invariants());
            }
        }
    }

    fn snapshot(&self) -> CoreSnapshot {
        let n = &self.node;
        CoreSnapshot {
            counters: n.counters().clone(),
            active_view: n.active_view().count(),
            passive_view: n.passive_view().count(),
            reachable: n.reachable_count(),
            known: n.records().count(),
            stalled_neighbors: n.stalled_neighbors().count(),
            desired_services: n.desired_kernel().services.len(),
            local_backends: n.local_services().backend_count(),
            epoch: n.id().epoch,
            view_complete: n.view_complete(),
        }
    }

    /// Drains the node's outputs; returns its next deadline.
    fn drain(&mut self) -> Time {
        loop {
            match self.node.poll_output() {
                Output::Transmit(transmit) => match self.node.encode(&transmit) {
                    Ok(frame) => {
                        let kind = transmit.envelope.msg.kind();
                        self.metrics
                            .message_bytes_out
                            .get_or_create(&crate::metrics::Kind { kind })
                            .inc_by(frame.len() as u64);
                        self.outbound.send(transmit.dst, frame);
                    }
                    Err(error) => {
                        tracing::warn!(dst = %transmit.dst, %error, "cannot encode a message");
                        self.metrics
                            .send_drops
                            .get_or_create(&crate::metrics::Why::new("encode"))
                            .inc();
                    }
                },
                Output::CloseLink(peer) => self.outbound.close(peer),
                Output::ProbeHost(peer) => self.prober.probe(peer),
                Output::Kernel(ops) => self.dataplane.submit(ops),
                Output::Event(event) => self.log_event(event),
                Output::Timeout(at) => return at,
            }
        }
    }

    fn log_event(&mut self, event: Event) {
        match event {
            Event::NeighborUp(id) => {
                tracing::info!(peer = %id.addr, epoch = id.epoch, "neighbour up")
            }
            Event::NeighborDown(id, why) => {
                tracing::info!(peer = %id.addr, epoch = id.epoch, reason = ?why, "neighbour down")
            }
            Event::Reachable(id) => {
                tracing::info!(node = %id.addr, epoch = id.epoch, "node reachable")
            }
            Event::Unreachable(id) => {
                tracing::warn!(node = %id.addr, epoch = id.epoch, "node unreachable: its backends leave the kernel")
            }
            Event::AgentStalled(id) => {
                if let Some(suppressed) = self.stall_log.admit(Instant::now()) {
                    tracing::warn!(peer = %id.addr, suppressed, "agent silent but its host answers: its backends stay");
                }
            }
            Event::AgentResumed(id) => {
                if let Some(suppressed) = self.stall_log.admit(Instant::now()) {
                    tracing::info!(peer = %id.addr, suppressed, "agent answers again");
                }
            }
            Event::IncarnationChanged { old, new } => {
                tracing::warn!(
                    old = old.epoch,
                    new = new.epoch,
                    "this node's address was seen at a newer version; now a newer incarnation"
                );
                self.save();
            }
        }
    }
}
