//! The desired state at scale: 10,000 VIPs × 10 backends, reported by 10 nodes (each
//! node one backend of every VIP), turned into kernel operations.
//!
//! - full: every origin reports, one refresh, and the diff from an empty kernel;
//! - one backend changes, full record: one origin's new record in full (one weight
//!   flipped), compared with the old one VIP by VIP, the incremental refresh and the
//!   restricted diff (what a node does with a record that comes in full);
//! - one backend changes, as a delta: the same change as a record whose services are a
//!   one-VIP delta, applied to the store in place, then refresh and diff (what a node does
//!   with a flooded record: work in proportion to the change).
//! - the services evaluation itself (40 nodes, 30 s of churn) as a simulator figure.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use minuteman_core::desired::DesiredState;
use minuteman_core::kernel::{self, KernelState};
use minuteman_core::records::{Applied, RecordStore};
use minuteman_core::services_delta::ServicesDelta;
use minuteman_core::{Backend, NodeId, Protocol, Record, RecordBody, Vip, VipAddr, VipSet};
use minuteman_sim::ServicesRun;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const VIPS: u32 = 10_000;
const ORIGINS: u8 = 10;

fn origin(o: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, o + 1)), 61420)
}

fn vip(v: u32) -> Vip {
    let addr = if v.is_multiple_of(2) {
        VipAddr::Ip(IpAddr::V4(Ipv4Addr::from(0x0AC8_0000 + v)))
    } else {
        VipAddr::Named(format!("svc-{v}.marathon"))
    };
    Vip {
        protocol: Protocol::Tcp,
        addr,
        port: 80,
    }
}

/// What origin `o` reports: one backend of every VIP.
fn report(o: u8, vips: &[Vip]) -> VipSet {
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, o + 1));
    let mut set = VipSet::new();
    for (i, v) in vips.iter().enumerate() {
        let backend = Backend {
            ip,
            port: 20_000 + i as u16 % 40_000,
            agent: ip,
            weight: 1,
        };
        set.insert(v.clone(), backend);
    }
    set
}

fn converged(reports: &[Arc<VipSet>]) -> (DesiredState, KernelState) {
    let mut desired = DesiredState::new();
    for (o, set) in reports.iter().enumerate() {
        desired.set_origin(origin(o as u8), set.clone(), true);
    }
    let touched = desired.refresh();
    let mut applied = KernelState::default();
    let ops = kernel::diff_services(&applied, desired.state(), &touched);
    applied.apply_all(&ops).expect("ops apply");
    (desired, applied)
}

/// The converged state held the way a node holds it: every origin's record in a store
/// (origin 3's set a private copy, so that a delta changes it in place), the desired state
/// sharing the stored sets, and the kernel applied.
fn converged_store(reports: &[Arc<VipSet>]) -> (RecordStore, DesiredState, KernelState) {
    let mut store = RecordStore::new(64);
    let mut desired = DesiredState::new();
    for (o, set) in reports.iter().enumerate() {
        let id = NodeId::new(origin(o as u8), 1);
        let record = Record {
            services: Arc::new((**set).clone()),
            services_seq: 1,
            ..Record::new(id, 1, RecordBody::default())
        };
        assert!(matches!(store.apply(record), Applied::New { .. }));
        let stored = store.get(&id.addr).expect("stored");
        desired.set_origin(id.addr, stored.services.clone(), true);
    }
    let touched = desired.refresh();
    let mut applied = KernelState::default();
    let ops = kernel::diff_services(&applied, desired.state(), &touched);
    applied.apply_all(&ops).expect("ops apply");
    (store, desired, applied)
}

fn desired_10k(c: &mut Criterion) {
    let vips: Vec<Vip> = (0..VIPS).map(vip).collect();
    let reports: Vec<Arc<VipSet>> = (0..ORIGINS).map(|o| Arc::new(report(o, &vips))).collect();
    let mut group = c.benchmark_group("desired 10k VIPs x 10 backends");
    group.sample_size(10);
    group.bench_function("full: refresh + diff from empty", |b| {
        b.iter(|| {
            let (desired, applied) = converged(&reports);
            assert_eq!(applied.services.len(), VIPS as usize);
            desired
        })
    });
    // One origin flips one backend's weight, reported in full: the whole set is compared.
    let mut changed = (*reports[3]).clone();
    let first = vips[4_321].clone();
    let backend = *changed.vips[&first].iter().next().expect("a backend");
    changed.vips.get_mut(&first).expect("vip").remove(&backend);
    changed.insert(
        first.clone(),
        Backend {
            weight: 0,
            ..backend
        },
    );
    let changed = Arc::new(changed);
    let (desired, applied) = converged(&reports);
    group.sample_size(50);
    group.bench_function(
        "one backend changes, full record: set_origin + refresh + diff",
        |b| {
            b.iter_batched(
                || (desired.clone(), changed.clone()),
                |(mut desired, changed)| {
                    desired.set_origin(origin(3), changed, true);
                    let touched = desired.refresh();
                    let ops = kernel::diff_services(&applied, desired.state(), &touched);
                    assert_eq!(ops.len(), 1);
                    (ops, desired)
                },
                BatchSize::LargeInput,
            )
        },
    );
    // The same change as it arrives: a record whose services are a one-VIP delta, applied
    // to the store in place, then the desired state and the ops (what a node does).
    // Iterations alternate drain and undrain, so the state never drifts.
    group.bench_function(
        "one backend changes, as a delta: store apply + set_origin_changes + refresh + diff",
        |b| {
            let (mut store, mut desired, mut applied) = converged_store(&reports);
            let id = NodeId::new(origin(3), 1);
            let mut seq = 1;
            b.iter(|| {
                let weight = u32::from(seq % 2 == 0);
                let mut backends = reports[3].vips[&first].clone();
                backends.remove(&backend);
                backends.insert(Backend { weight, ..backend });
                let delta = ServicesDelta {
                    base: seq,
                    seq: seq + 1,
                    vips: vec![(first.clone(), backends)],
                    tasks: Vec::new(),
                };
                seq += 1;
                let record = Record {
                    services_seq: seq,
                    delta: Some(Arc::new(delta)),
                    ..Record::new(id, seq, RecordBody::default())
                };
                desired.detach(id.addr);
                let Applied::New { forward, .. } = store.apply(record) else {
                    panic!("the delta starts at the held version");
                };
                let changed = forward.delta.as_ref().expect("a delta");
                desired.set_origin_changes(
                    id.addr,
                    forward.services.clone(),
                    changed.vips.iter().map(|(vip, _)| vip),
                    true,
                );
                let touched = desired.refresh();
                let ops = kernel::diff_services(&applied, desired.state(), &touched);
                assert_eq!(ops.len(), 1);
                applied.apply_all(&ops).expect("ops apply");
            })
        },
    );
    group.finish();
}

fn services_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulator");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("services 40 nodes, 1000 tasks, 30 s churn", |b| {
        b.iter(|| ServicesRun::default().run().0)
    });
    group.finish();
}

criterion_group!(benches, desired_10k, services_run);
criterion_main!(benches);
