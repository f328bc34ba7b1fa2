//! The IPVS worker: owns the committed state, carries out each batch of pending ops as
//! netlink requests, repairs the kernel from a dump when a request is refused, and
//! periodically reconciles the kernel with the committed state.
//!
//! Ownership: a kernel service is minuteman's when its address is inside the named-VIP
//! ranges (11.0.0.0/8, fd01:c::/64) or on the `minuteman` dummy interface (where this
//! worker puts every VIP address it serves). Nothing else is read as minuteman's, changed
//! or removed: other users of IPVS on the host (kube-proxy, keepalived) are left alone.
//!
//! Invariants:
//! - Start adopts the minuteman services the kernel holds as they are (traffic keeps
//!   flowing across a restart), after rewriting any that are programmed otherwise
//!   (another scheduler, persistence, another forwarding method) in place.
//! - A VIP address is on the dummy interface before its first service is created and
//!   taken off only after its last service is gone.
//! - `committed` is what the kernel held after the last batch: the batch's target when
//!   every request succeeded; otherwise what a dump reads after the repair (the dump's
//!   difference from the target is applied request by request first). The core gets a
//!   resync whenever `committed` is not the target it asked for.
//! - Reconcile (every `reconcile_interval`) reads the service list and the VIP addresses
//!   whole, and the destinations of a rotating window of [`RECONCILE_DEST_DUMPS`]
//!   services (IPVS dumps destinations one service at a time); when the minuteman part
//!   differs from `committed` (as IPVS can hold it: same-family destinations, weights
//!   clamped), it repairs the kernel from a full read and counts a restore. It never
//!   changes `committed`.
//! - Blocking netlink work runs on tokio's blocking pool, one call at a time.

use super::host;
use super::link::DummyLink;
use super::msg::{DumpedService, Request, FORWARD_MASQ, SCHEDULER};
use super::socket::{describe, IpvsError, IpvsSocket};
use crate::dataplane::{send_resync, Batch, DataPlaneConfig, DataPlaneError, Shared};
use crate::metrics::{ShellMetrics, Why};
use minuteman_core::kernel::{diff, Destinations, KernelState, Op, Service, MAX_WEIGHT};
use minuteman_core::named::{in_v4_prefix, in_v6_prefix};
use minuteman_core::Protocol;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// At most this many refused requests are logged one by one per batch.
const LOGGED_FAILURES: usize = 10;

/// The kernel side: the IPVS socket and the dummy interface. Blocking.
pub(crate) struct IpvsKernel {
    socket: IpvsSocket,
    link: DummyLink,
}

/// Whether `ip` is inside the named-VIP ranges.
fn in_named_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => in_v4_prefix(v4),
        IpAddr::V6(v6) => in_v6_prefix(v6),
    }
}

/// The part of `state` IPVS can hold: destinations of the service's family only, weights
/// clamped to [`MAX_WEIGHT`].
pub fn visible(state: &KernelState) -> KernelState {
    let mut out = KernelState::default();
    for (service, dests) in &state.services {
        let kept = dests
            .iter()
            .filter(|(d, _)| d.is_ipv4() == service.addr.is_ipv4())
            .map(|(d, w)| (*d, (*w).min(MAX_WEIGHT)))
            .collect();
        out.services.insert(*service, Arc::new(kept));
    }
    out
}

/// The VIP addresses `state` uses.
fn addresses(state: &KernelState) -> BTreeSet<IpAddr> {
    state.services.keys().map(|s| s.addr.ip()).collect()
}

/// Whether any service of `state` is at `ip` (either protocol, any port).
fn uses(state: &KernelState, ip: IpAddr) -> bool {
    [Protocol::Tcp, Protocol::Udp].into_iter().any(|protocol| {
        let first = Service::new(protocol, SocketAddr::new(ip, 0));
        let last = Service::new(protocol, SocketAddr::new(ip, u16::MAX));
        state.services.range(first..=last).next().is_some()
    })
}

/// The VIP addresses that `ops` (from `from` to `target`) bring in and take out: only the
/// addresses of services added or removed are looked at, so one change costs nothing in
/// proportion to the table.
fn address_changes(
    from: &KernelState,
    target: &KernelState,
    ops: &[Op],
) -> (BTreeSet<IpAddr>, BTreeSet<IpAddr>) {
    let mut added = BTreeSet::new();
    let mut removed = BTreeSet::new();
    for op in ops {
        let ip = op.service().addr.ip();
        match op {
            Op::AddService(_) if !uses(from, ip) && uses(target, ip) => {
                added.insert(ip);
            }
            Op::RemoveService(_) if uses(from, ip) && !uses(target, ip) => {
                removed.insert(ip);
            }
            _ => {}
        }
    }
    (added, removed)
}

/// What a dump found: minuteman's services as a state, and the requests that rewrite the
/// ones programmed otherwise.
struct Reading {
    state: KernelState,
    fixes: Vec<Request>,
}

impl IpvsKernel {
    /// Opens IPVS, checks the host (sysctls, dummy interface, masquerade rule) and reads
    /// what the kernel holds.
    pub(crate) fn start(
        cfg: &DataPlaneConfig,
    ) -> Result<(IpvsKernel, KernelState), DataPlaneError> {
        let socket = IpvsSocket::open()?;
        let changed = host::ensure_sysctls()?;
        for name in changed {
            tracing::info!("set {name}=1 for IPVS");
        }
        let link = DummyLink::ensure(&cfg.ipvs.interface)?;
        match cfg.ipvs.masquerade {
            host::Masquerade::Iptables => {
                if host::ensure_masquerade(&cfg.ipvs.iptables)? {
                    tracing::info!("added the IPVS masquerade rule ({})", cfg.ipvs.iptables);
                }
            }
            host::Masquerade::None => {
                tracing::info!("no IPVS masquerade rule (--ipvs-masquerade none)");
            }
        }
        let mut kernel = IpvsKernel { socket, link };
        let reading = kernel.read()?;
        if !reading.fixes.is_empty() {
            tracing::warn!(
                "{} IPVS entries of minuteman's are programmed otherwise; rewriting them to scheduler {SCHEDULER}, no persistence, masquerading",
                reading.fixes.len()
            );
            for (request, result) in reading
                .fixes
                .iter()
                .zip(kernel.socket.execute(&reading.fixes))
            {
                if let Err(e) = result {
                    tracing::warn!("cannot rewrite ({}): {e}", describe(request));
                }
            }
        }
        let adopted = kernel.read()?.state;
        Ok((kernel, adopted))
    }

    /// Dumps the kernel: minuteman's services, and the fixes for those programmed
    /// otherwise (the state shows them as they will be after the fixes).
    fn read(&mut self) -> Result<Reading, DataPlaneError> {
        let on_link = self.link.addresses()?;
        let mut reading = Reading {
            state: KernelState::default(),
            fixes: Vec::new(),
        };
        for entry in self.socket.dump()? {
            let DumpedService::Virtual {
                service,
                scheduler,
                flags,
                timeout,
            } = entry.service
            else {
                continue;
            };
            let ip = service.addr.ip();
            if !in_named_range(ip) && !on_link.contains(&ip) {
                continue;
            }
            if scheduler != SCHEDULER || flags != 0 || timeout != 0 {
                reading.fixes.push(Request::SetService(service));
            }
            let mut dests = Destinations::new();
            for dest in entry.dests {
                if dest.forward != FORWARD_MASQ {
                    reading.fixes.push(Request::SetDest {
                        service,
                        dest: dest.addr,
                        weight: dest.weight,
                    });
                }
                dests.insert(dest.addr, dest.weight);
            }
            reading.state.services.insert(service, Arc::new(dests));
        }
        Ok(reading)
    }

    /// Carries out `ops` (which lead from `from` to `target`): addresses first, then the
    /// requests, then the addresses no longer used. Returns the refused requests.
    fn apply(
        &mut self,
        from: &KernelState,
        target: &KernelState,
        ops: &[Op],
    ) -> Vec<(Request, IpvsError)> {
        let (added, removed) = address_changes(from, target, ops);
        for ip in &added {
            if let Err(e) = self.link.add(*ip) {
                tracing::warn!("cannot add VIP address {ip}: {e}");
            }
        }
        let requests: Vec<Request> = ops.iter().filter_map(Request::from_op).collect();
        let results = self.socket.execute(&requests);
        let failed = requests
            .into_iter()
            .zip(results)
            .filter_map(|(r, result)| result.err().map(|e| (r, e)))
            .collect();
        for ip in &removed {
            if let Err(e) = self.link.remove(*ip) {
                tracing::warn!("cannot remove VIP address {ip}: {e}");
            }
        }
        failed
    }

    /// Makes the kernel hold `target`: dumps it, applies the difference request by request
    /// (refusals logged), puts the addresses right, and returns what a dump reads then.
    fn repair(&mut self, target: &KernelState) -> Result<KernelState, DataPlaneError> {
        let reading = self.read()?;
        let mut requests = reading.fixes;
        let ops = diff(&reading.state, &visible(target));
        requests.extend(ops.iter().filter_map(Request::from_op));
        let want = addresses(target);
        let have = self.link.addresses()?;
        for ip in want.difference(&have) {
            if let Err(e) = self.link.add(*ip) {
                tracing::warn!("cannot add VIP address {ip}: {e}");
            }
        }
        let results = self.socket.execute(&requests);
        for (request, result) in requests.iter().zip(results) {
            if let Err(e) = result {
                tracing::warn!("repair: {e} ({})", describe(request));
            }
        }
        for ip in have.difference(&want) {
            if let Err(e) = self.link.remove(*ip) {
                tracing::warn!("cannot remove VIP address {ip}: {e}");
            }
        }
        Ok(self.read()?.state)
    }

    /// Whether the kernel's minuteman part, and the VIP addresses, are `committed`; the
    /// first difference when not. Reads every service (one dump) but the destinations of
    /// at most [`RECONCILE_DEST_DUMPS`] services, the ones after `cursor` in order
    /// (wrapping), and returns where to go on next time: a dump per service is what a
    /// full read costs (4.7 s for 10,000 services in the test VM).
    fn compare(
        &mut self,
        committed: &KernelState,
        cursor: Option<Service>,
    ) -> Result<(Option<String>, Option<Service>), DataPlaneError> {
        let on_link = self.link.addresses()?;
        let want = visible(committed);
        let mut found = BTreeSet::new();
        for dumped in self.socket.dump_services()? {
            let DumpedService::Virtual {
                service,
                scheduler,
                flags,
                timeout,
            } = dumped
            else {
                continue;
            };
            if !in_named_range(service.addr.ip()) && !on_link.contains(&service.addr.ip()) {
                continue;
            }
            if scheduler != SCHEDULER || flags != 0 || timeout != 0 {
                return Ok((Some(format!("{service} is programmed otherwise")), cursor));
            }
            found.insert(service);
        }
        let wanted: BTreeSet<Service> = want.services.keys().copied().collect();
        if found != wanted {
            let missing = wanted.difference(&found).count();
            let extra = found.difference(&wanted).count();
            return Ok((
                Some(format!("{missing} services missing, {extra} not committed")),
                cursor,
            ));
        }
        let want_addrs = addresses(committed);
        if on_link != want_addrs {
            return Ok((
                Some(format!(
                    "the VIP addresses on {} differ ({} present, {} wanted)",
                    self.link.name(),
                    on_link.len(),
                    want_addrs.len()
                )),
                cursor,
            ));
        }
        let after = want
            .services
            .iter()
            .filter(|(s, _)| cursor.is_none_or(|c| **s > c));
        let window: Vec<(&Service, &Arc<Destinations>)> = after
            .chain(want.services.iter())
            .take(RECONCILE_DEST_DUMPS.min(want.services.len()))
            .collect();
        let mut next = cursor;
        for (service, dests) in window {
            let kernel: Destinations = self
                .socket
                .dump_dests(service)?
                .into_iter()
                .map(|d| (d.addr, d.weight))
                .collect();
            if kernel != **dests {
                return Ok((Some(format!("the destinations of {service} differ")), next));
            }
            next = Some(*service);
        }
        Ok((None, next))
    }
}

/// At most this many services have their destinations read per reconcile (a full pass
/// over 10,000 services takes 20 reconciles, 200 s at the default interval; a difference
/// in the service list or the addresses is seen at the next one).
pub const RECONCILE_DEST_DUMPS: usize = 500;

/// Removes everything minuteman installed for IPVS: its services, the dummy interface
/// with its addresses, the masquerade rule.
pub(crate) fn cleanup(cfg: &DataPlaneConfig) -> Result<usize, DataPlaneError> {
    let mut removed = 0;
    match IpvsSocket::open() {
        Ok(mut socket) => {
            let on_link = match DummyLink::existing(&cfg.ipvs.interface)? {
                Some(mut link) => link.addresses()?,
                None => BTreeSet::new(),
            };
            let mut requests = Vec::new();
            for entry in socket.dump()? {
                if let DumpedService::Virtual { service, .. } = entry.service {
                    let ip = service.addr.ip();
                    if in_named_range(ip) || on_link.contains(&ip) {
                        requests.push(Request::DelService(service));
                    }
                }
            }
            for (request, result) in requests.iter().zip(socket.execute(&requests)) {
                match result {
                    Ok(()) => removed += 1,
                    Err(e) => tracing::warn!("cleanup: {e} ({})", describe(request)),
                }
            }
        }
        Err(IpvsError::FamilyMissing) => {}
        Err(e) => return Err(e.into()),
    }
    DummyLink::delete(&cfg.ipvs.interface)?;
    if cfg.ipvs.masquerade == host::Masquerade::Iptables {
        host::remove_masquerade(&cfg.ipvs.iptables);
    }
    Ok(removed)
}

/// How a batch went: its metric label.
const DELTA: &str = "delta";
const FULL: &str = "full";
const FAILED: &str = "failed";

pub(crate) struct IpvsWorker {
    kernel: Option<IpvsKernel>,
    cfg: DataPlaneConfig,
    committed: Arc<KernelState>,
    shared: Arc<Shared>,
    metrics: ShellMetrics,
    resync: mpsc::Sender<KernelState>,
    /// Where the next reconcile goes on reading destinations.
    cursor: Option<Service>,
}

impl IpvsWorker {
    pub(crate) fn new(
        kernel: IpvsKernel,
        cfg: DataPlaneConfig,
        committed: Arc<KernelState>,
        shared: Arc<Shared>,
        metrics: ShellMetrics,
        resync: mpsc::Sender<KernelState>,
    ) -> IpvsWorker {
        IpvsWorker {
            kernel: Some(kernel),
            cfg,
            committed,
            shared,
            metrics,
            resync,
            cursor: None,
        }
    }

    /// Runs `f` on the kernel on the blocking pool.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut IpvsKernel) -> R + Send + 'static,
    ) -> R {
        let mut kernel = self
            .kernel
            .take()
            .expect("the kernel is put back after every call");
        let (kernel, result) = crate::os::blocking(move || {
            let result = f(&mut kernel);
            (kernel, result)
        })
        .await
        .expect("IPVS netlink calls do not panic");
        self.kernel = Some(kernel);
        result
    }

    pub(crate) async fn run(mut self, stop: CancellationToken) {
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
                _ = reconcile.tick() => self.reconcile().await,
            }
        }
        self.sync(&stop).await;
    }

    fn commit(&mut self, state: Arc<KernelState>) {
        self.committed = state.clone();
        self.shared.commit(&self.metrics, state);
    }

    fn count(&self, label: &'static str) {
        self.metrics
            .kernel_syncs
            .get_or_create(&Why::new(label))
            .inc();
    }

    async fn sync(&mut self, stop: &CancellationToken) {
        let Some(Batch {
            ops,
            target,
            followed,
        }) = self.shared.next_batch(
            &self.metrics,
            &self.committed,
            "repairing IPVS from a dump and resyncing the core",
        )
        else {
            return;
        };
        let started = Instant::now();
        if followed {
            let from = self.committed.clone();
            let goal = target.clone();
            let failed = self.blocking(move |k| k.apply(&from, &goal, &ops)).await;
            if failed.is_empty() {
                self.metrics
                    .kernel_sync_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.count(DELTA);
                self.commit(target);
                return;
            }
            self.count(FAILED);
            for (request, e) in failed.iter().take(LOGGED_FAILURES) {
                tracing::warn!("IPVS refused {}: {e}", describe(request));
            }
            if failed.len() > LOGGED_FAILURES {
                tracing::warn!(
                    "... and {} more refused requests",
                    failed.len() - LOGGED_FAILURES
                );
            }
        }
        let goal = target.clone();
        match self.blocking(move |k| k.repair(&goal)).await {
            Ok(actual) => {
                self.metrics
                    .kernel_sync_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.count(FULL);
                let exact = visible(&actual) == visible(&target);
                // Keep the other-family destinations the core asked for (IPVS cannot
                // hold them; the state still lists them, as the nft plane's does).
                self.commit(if exact { target } else { Arc::new(actual) });
                if !exact || !followed {
                    self.send_resync(stop).await;
                }
            }
            Err(e) => {
                self.count(FAILED);
                tracing::warn!("cannot repair IPVS ({e}); keeping the last committed state");
                self.send_resync(stop).await;
            }
        }
    }

    async fn send_resync(&self, stop: &CancellationToken) {
        send_resync(&self.resync, (*self.committed).clone(), stop).await;
    }

    async fn reconcile(&mut self) {
        self.metrics.kernel_reconciles.inc();
        let committed = self.committed.clone();
        let cursor = self.cursor;
        let difference = match self.blocking(move |k| k.compare(&committed, cursor)).await {
            Ok((None, next)) => {
                self.cursor = next;
                return;
            }
            Ok((Some(why), next)) => {
                self.cursor = next;
                why
            }
            Err(e) => {
                tracing::warn!("reconcile cannot read IPVS: {e}");
                return;
            }
        };
        tracing::warn!("IPVS differs from the committed state: {difference}; restoring it");
        self.metrics.kernel_restores.inc();
        let committed = self.committed.clone();
        if let Err(e) = self.blocking(move |k| k.repair(&committed)).await {
            tracing::warn!("cannot restore IPVS: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(services: &[(Protocol, &str)]) -> KernelState {
        KernelState {
            services: services
                .iter()
                .map(|(p, a)| (Service::new(*p, a.parse().unwrap()), Arc::default()))
                .collect(),
        }
    }

    #[test]
    fn address_changes_follow_the_first_and_last_service_of_an_address() {
        let from = state(&[
            (Protocol::Tcp, "10.0.0.1:80"),
            (Protocol::Udp, "10.0.0.2:53"),
        ]);
        let target = state(&[
            (Protocol::Tcp, "10.0.0.1:80"),
            (Protocol::Udp, "10.0.0.1:53"),
            (Protocol::Tcp, "10.0.0.3:80"),
        ]);
        let ops = diff(&from, &target);
        let (added, removed) = address_changes(&from, &target, &ops);
        // 10.0.0.1 gains a UDP service but was in use already.
        assert_eq!(added, BTreeSet::from(["10.0.0.3".parse().unwrap()]));
        assert_eq!(removed, BTreeSet::from(["10.0.0.2".parse().unwrap()]));
        // The same as comparing the whole address sets.
        let all_added: BTreeSet<IpAddr> = addresses(&target)
            .difference(&addresses(&from))
            .copied()
            .collect();
        let all_removed: BTreeSet<IpAddr> = addresses(&from)
            .difference(&addresses(&target))
            .copied()
            .collect();
        assert_eq!((added, removed), (all_added, all_removed));
    }

    #[test]
    fn visible_keeps_what_ipvs_can_hold() {
        let service = Service::new(Protocol::Tcp, "10.0.0.1:80".parse().unwrap());
        let dests: Destinations = [
            ("10.1.0.1:80".parse().unwrap(), u32::MAX),
            ("[fd00::1]:80".parse().unwrap(), 1),
        ]
        .into_iter()
        .collect();
        let state = KernelState {
            services: [(service, Arc::new(dests))].into_iter().collect(),
        };
        let shown = visible(&state);
        assert_eq!(
            *shown.services[&service],
            Destinations::from([("10.1.0.1:80".parse().unwrap(), MAX_WEIGHT)])
        );
    }
}
