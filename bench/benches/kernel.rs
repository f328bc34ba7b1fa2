//! The data-plane diff and the nft rendering at scale: 10,000 services × 10 destinations.
//!
//! - from nothing to everything (`diff`, `render_full`, `render_delta` of that diff);
//! - ONE destination's weight changes: `diff` over everything, `diff_services` over the one
//!   service the caller knows changed, `render_delta` of the result, and the incremental
//!   path end to end (`diff_services` + `render_delta`). Target: ≤ 1 ms for one change.
//!   The change gives the service a slot count no other service has, so the delta also
//!   walks the states to learn that its new modulus chain must be created and that its
//!   old one stays (the worst case of a one-service delta).
//!
//! `cargo bench -p minuteman-bench --bench kernel`

use criterion::{criterion_group, criterion_main, Criterion};
use minuteman_core::kernel::nft::{render_delta, render_full, NftConfig};
use minuteman_core::kernel::{diff, diff_services, KernelState, Op, Service};
use minuteman_core::Protocol;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const SERVICES: u32 = 10_000;
const DESTS: u8 = 10;

/// Service i at 11.0.hi.lo:80 (tcp, or udp for every fourth), destinations 10.j.hi.lo:8080
/// for j in 1..=10 with weights 1..=3.
fn big_state() -> KernelState {
    let mut state = KernelState::default();
    for i in 0..SERVICES {
        let [_, _, hi, lo] = i.to_be_bytes();
        let protocol = if i % 4 == 3 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let service = Service::new(
            protocol,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(11, 0, hi, lo)), 80),
        );
        let dests = (1..=DESTS)
            .map(|j| {
                let dest = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, j, hi, lo)), 8080);
                (dest, u32::from(j % 3) + 1)
            })
            .collect();
        state.services.insert(service, std::sync::Arc::new(dests));
    }
    state
}

/// `state` with one destination of the middle service drained (weight 0), and that service.
fn one_change(state: &KernelState) -> (KernelState, Service) {
    let mut changed = state.clone();
    let (&service, _) = changed
        .services
        .iter()
        .nth(SERVICES as usize / 2)
        .expect("the state has services");
    if let Some(dests) = changed.services.get_mut(&service) {
        if let Some(weight) = std::sync::Arc::make_mut(dests).values_mut().nth(3) {
            *weight = 0;
        }
    }
    (changed, service)
}

fn kernel(c: &mut Criterion) {
    let empty = KernelState::default();
    let full = big_state();
    let (changed, service) = one_change(&full);
    let config = NftConfig::default();
    let all_ops = diff(&empty, &full);
    let one_ops = diff_services(&full, &changed, [&service]);
    assert_eq!(one_ops.len(), 1);
    assert_eq!(diff(&full, &changed), one_ops);

    let mut group = c.benchmark_group("kernel 10k services x 10 dests");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    group.bench_function("diff empty -> full", |b| {
        b.iter(|| diff(black_box(&empty), black_box(&full)))
    });
    group.bench_function("diff one change (all services)", |b| {
        b.iter(|| diff(black_box(&full), black_box(&changed)))
    });
    group.bench_function("diff_services one change", |b| {
        b.iter(|| diff_services(black_box(&full), black_box(&changed), [&service]))
    });
    group.bench_function("render_full", |b| {
        b.iter(|| render_full(black_box(&full), &config))
    });
    group.bench_function("render_delta empty -> full", |b| {
        b.iter(|| {
            let touched = all_ops.iter().map(Op::service);
            render_delta(black_box(&empty), black_box(&full), touched, &config)
        })
    });
    group.bench_function("render_delta one change", |b| {
        b.iter(|| {
            let touched = one_ops.iter().map(Op::service);
            render_delta(black_box(&full), black_box(&changed), touched, &config)
        })
    });
    group.bench_function(
        "one change end to end (diff_services + render_delta)",
        |b| {
            b.iter(|| {
                let ops = diff_services(black_box(&full), black_box(&changed), [&service]);
                render_delta(&full, &changed, ops.iter().map(Op::service), &config)
            })
        },
    );
    group.finish();
}

criterion_group!(benches, kernel);
criterion_main!(benches);
