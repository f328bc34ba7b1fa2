//! The membership evaluation as a benchmark: 40 nodes × 30 simulated seconds (the
//! README's figure), plus the core's hot paths (reachability search, codec).
//!
//! The 1000-node run is too long for criterion's repeated sampling; measure it with
//! `cargo run --release -p minuteman-sim -- membership --nodes 1000`.

use criterion::{criterion_group, criterion_main, Criterion};
use minuteman_core::wire::{self, Envelope, Limits, Message};
use minuteman_core::{NodeId, Record, RecordBody};
use minuteman_sim::MembershipRun;
use std::time::Duration;

fn membership_40_nodes_30s(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulator");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("membership 40 nodes x 30 s", |b| {
        b.iter(|| MembershipRun::default().run().0)
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let id = |i: u32| NodeId::new(minuteman_sim::node_addr(i as usize), 1);
    let records: Vec<Record> = (0..64)
        .map(|i| {
            Record::new(
                id(i),
                7,
                RecordBody {
                    adjacency: (0..5).map(|j| id(i + j + 1)).collect(),
                    ..Default::default()
                },
            )
        })
        .collect();
    let envelope = Envelope {
        from: id(0),
        msg: Message::Records { records },
    };
    let limits = Limits::default();
    let frame = wire::encode(&envelope, &limits).expect("encodes");
    c.bench_function("encode 64 records", |b| {
        b.iter(|| wire::encode(&envelope, &limits))
    });
    c.bench_function("decode 64 records", |b| {
        b.iter(|| wire::decode(&frame, &limits))
    });
}

criterion_group!(benches, membership_40_nodes_30s, codec);
criterion_main!(benches);
