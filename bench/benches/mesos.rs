//! Mesos ingestion: parse + extract of real and synthetic `/state` documents, the
//! `SUBSCRIBE` stream, and the diff a node publishes.
//!
//! - `parse+extract minuteman-bad-state-gaal.json`: the 790 KB master `/state` of
//!   `../shared/fixtures/mesos/state/` (1102 tasks, 100 backends). Target: well under
//!   10 ms. Skipped with a message when the shared fixtures are absent.
//! - `parse+extract agent /state, 10000 tasks`: a synthetic agent state generated here
//!   (port labels, task labels, statuses with container addresses, completed tasks).
//! - `stream SUBSCRIBED 10000 tasks + extract`: the same tasks through the operator-API
//!   stream (RecordIO decode, event parse, state machine, extraction).
//! - `diff 10000 backends, 1% changed`: what a node computes to publish its change.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use minuteman_core::mesos::diff::VipSetDiff;
use minuteman_core::mesos::{self, recordio, ExtractOptions, MesosStream};
use std::fmt::Write as _;
use std::path::Path;

const TASKS: usize = 10_000;

/// One synthetic task in `/state` form: every tenth uses a task label, the others a port
/// label; a few are unhealthy, killing or staging.
fn state_task(i: usize) -> String {
    let port = 10_000 + (i % 50_000);
    let state = match i % 50 {
        0 => "TASK_KILLING",
        1 => "TASK_STAGING",
        _ => "TASK_RUNNING",
    };
    let healthy = if i % 25 == 3 { "false" } else { "true" };
    let (labels, discovery_labels) = if i.is_multiple_of(10) {
        (
            format!(
                r#"[{{"key":"VIP_PORT0","value":"tcp://10.{}.0.1:80"}}]"#,
                i % 7
            ),
            String::new(),
        )
    } else {
        (
            r#"[{"key":"HAPROXY_GROUP","value":"external"}]"#.to_string(),
            format!(
                r#","labels":{{"labels":[{{"key":"VIP_0","value":"/app-{}:80"}}]}}"#,
                i % 97
            ),
        )
    };
    format!(
        r#"{{"id":"app-{g}.task-{i}","name":"app-{g}","framework_id":"F-0000","executor_id":"","slave_id":"S-1","state":"{state}","labels":{labels},"resources":{{"cpus":0.1,"mem":32.0,"disk":0.0,"ports":"[{port}-{port}]"}},"discovery":{{"name":"app-{g}","visibility":"FRAMEWORK","ports":{{"ports":[{{"number":{port},"name":"http","protocol":"tcp"{discovery_labels}}}]}}}},"statuses":[{{"state":"TASK_STARTING","timestamp":1500000000.1,"container_status":{{"network_infos":[{{"ip_addresses":[{{"ip_address":"10.0.0.5"}}]}}]}}}},{{"state":"TASK_RUNNING","healthy":{healthy},"timestamp":1500000001.2,"container_status":{{"network_infos":[{{"ip_addresses":[{{"ip_address":"10.0.0.5"}}]}}]}}}}]}}"#,
        g = i % 97,
    )
}

/// An agent `/state` with `tasks` live tasks (one executor each) and as many completed.
fn synthetic_agent_state(tasks: usize) -> String {
    let mut json = String::from(
        r#"{"id":"S-1","pid":"slave(1)@10.0.0.5:5051","hostname":"10.0.0.5","flags":{"port":"5051","work_dir":"/var/lib/mesos"},"frameworks":[{"id":"F-0000","name":"marathon","executors":["#,
    );
    for i in 0..tasks {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(
            json,
            r#"{{"id":"e-{i}","tasks":[{}],"completed_tasks":[],"queued_tasks":[]}}"#,
            state_task(i)
        );
    }
    json.push_str(r#"],"completed_executors":["#);
    for i in 0..tasks {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(
            json,
            r#"{{"id":"old-{i}","tasks":[{}]}}"#,
            state_task(i + tasks)
        );
    }
    json.push_str(r#"]}],"completed_frameworks":[]}"#);
    json
}

/// The same workload as a `SUBSCRIBED` event.
fn synthetic_subscribed(tasks: usize) -> String {
    let mut json = String::from(
        r#"{"type":"SUBSCRIBED","subscribed":{"heartbeat_interval_seconds":15,"get_state":{"get_agents":{"agents":[{"agent_info":{"id":{"value":"S-1"},"hostname":"10.0.0.5"},"pid":"slave(1)@10.0.0.5:5051"}]},"get_frameworks":{"frameworks":[{"framework_info":{"id":{"value":"F-0000"},"name":"marathon"}}]},"get_tasks":{"tasks":["#,
    );
    for i in 0..tasks {
        if i > 0 {
            json.push(',');
        }
        let port = 10_000 + (i % 50_000);
        let _ = write!(
            json,
            r#"{{"name":"app-{g}","task_id":{{"value":"app-{g}.task-{i}"}},"framework_id":{{"value":"F-0000"}},"agent_id":{{"value":"S-1"}},"state":"TASK_RUNNING","resources":[{{"name":"ports","type":"RANGES","ranges":{{"range":[{{"begin":{port},"end":{port}}}]}}}}],"statuses":[{{"task_id":{{"value":"app-{g}.task-{i}"}},"state":"TASK_RUNNING","healthy":true,"timestamp":1500000001.2,"container_status":{{"network_infos":[{{"ip_addresses":[{{"protocol":"IPv4","ip_address":"10.0.0.5"}}]}}]}}}}],"discovery":{{"visibility":"FRAMEWORK","name":"app-{g}","ports":{{"ports":[{{"number":{port},"name":"http","protocol":"tcp","labels":{{"labels":[{{"key":"VIP_0","value":"/app-{g}:80"}}]}}}}]}}}}}}"#,
            g = i % 97,
        );
    }
    json.push_str("]}}}}");
    json
}

fn gaal(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/mesos/state/minuteman-bad-state-gaal.json");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "shared fixtures not found at {}; skipping the gaal benchmark",
            path.display()
        );
        return;
    };
    let options = ExtractOptions::default();
    let once = mesos::parse_and_extract(&bytes, &options).expect("parses");
    assert_eq!(once.vips.backend_count(), 100);
    let mut group = c.benchmark_group("mesos");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse+extract minuteman-bad-state-gaal.json", |b| {
        b.iter(|| mesos::parse_and_extract(&bytes, &options))
    });
    group.finish();
}

fn synthetic(c: &mut Criterion) {
    let options = ExtractOptions::default();
    let agent = synthetic_agent_state(TASKS);
    let once = mesos::parse_and_extract(agent.as_bytes(), &options).expect("parses");
    assert!(once.warnings.is_empty(), "{:?}", once.warnings.first());
    assert_eq!(once.vips.backend_count(), TASKS - TASKS / 50);

    let subscribed = recordio::encode(synthetic_subscribed(TASKS).as_bytes());

    let mut group = c.benchmark_group("mesos");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(agent.len() as u64));
    group.bench_function("parse+extract agent /state, 10000 tasks", |b| {
        b.iter(|| mesos::parse_and_extract(agent.as_bytes(), &options))
    });
    group.throughput(Throughput::Bytes(subscribed.len() as u64));
    group.bench_function("stream SUBSCRIBED 10000 tasks + extract", |b| {
        b.iter_batched(
            MesosStream::default,
            |mut stream| {
                stream.feed(&subscribed).expect("framing");
                minuteman_core::mesos::extract_state(stream.state(), &options)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // The diff a node publishes when 1% of its backends change weight.
    let before = once.vips;
    let mut after = before.clone();
    let changed: Vec<_> = before
        .vips
        .iter()
        .flat_map(|(vip, backends)| backends.iter().map(move |b| (vip.clone(), *b)))
        .step_by(100)
        .collect();
    for (vip, backend) in changed {
        if let Some(set) = after.vips.get_mut(&vip) {
            set.remove(&backend);
            set.insert(minuteman_core::vip::Backend {
                weight: 1 - backend.weight.min(1),
                ..backend
            });
        }
    }
    c.bench_function("mesos diff 10000 backends, 1% changed", |b| {
        b.iter(|| before.diff(&after))
    });
}

criterion_group!(benches, gaal, synthetic);
criterion_main!(benches);
