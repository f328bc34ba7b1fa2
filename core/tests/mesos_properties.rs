//! Property tests of Mesos ingestion:
//! - diff: `apply(a, diff(a, b)) == b`, diffs are minimal, `diff(a, a)` is empty;
//! - RecordIO: any chunking of a stream yields the same records, and the decoder never holds
//!   more than the record limit; arbitrary bytes never panic it;
//! - no input panics the parser, the extraction or the stream (random bytes, random JSON
//!   trees with Mesos-ish keys, mutated fixtures);
//! - the label grammar round-trips addresses and ports and never panics.
//!
//! Case counts are modest; set `PROPTEST_CASES` to soak.

use minuteman_core::mesos::diff::{self, VipSetDiff};
use minuteman_core::mesos::labels::{self, VipHost};
use minuteman_core::mesos::recordio::{self, RecordIoDecoder};
use minuteman_core::mesos::{self, Document, ExtractOptions, MesosStream};
use minuteman_core::vip::{Backend, Protocol, Vip, VipAddr, VipSet};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ----- strategies -------------------------------------------------------------------------

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, 0u8..4).prop_map(|(a, b)| IpAddr::V4(Ipv4Addr::new(10, 0, a, b))),
        (0u16..4).prop_map(|a| IpAddr::V6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, a))),
    ]
}

fn vip() -> impl Strategy<Value = Vip> {
    let protocol = prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)];
    let addr = prop_oneof![
        ip().prop_map(VipAddr::Ip),
        "[a-c]{1,2}\\.marathon".prop_map(VipAddr::Named),
    ];
    (protocol, addr, 79u16..82).prop_map(|(protocol, addr, port)| Vip {
        protocol,
        addr,
        port,
    })
}

fn backend() -> impl Strategy<Value = Backend> {
    (ip(), 31000u16..31003, ip(), 0u32..2).prop_map(|(ip, port, agent, weight)| Backend {
        ip,
        port,
        agent,
        weight,
    })
}

/// Small universes so that two random sets overlap.
fn vip_set() -> impl Strategy<Value = VipSet> {
    vec((vip(), btree_set(backend(), 1..4)), 0..6).prop_map(|entries| {
        let mut set = VipSet::new();
        for (vip, backends) in entries {
            for backend in backends {
                set.insert(vip.clone(), backend);
            }
        }
        set
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn diff_then_apply_gives_the_target(a in vip_set(), b in vip_set()) {
        let change = a.diff(&b);
        let mut c = a.clone();
        c.apply(&change);
        prop_assert_eq!(&c, &b);
        // No VIP is left without backends.
        prop_assert!(c.vips.values().all(|backends| !backends.is_empty()));
        // Minimal: disjoint, added only what was missing, removed only what was there.
        prop_assert!(change.added.is_disjoint(&change.removed));
        for (vip, backend) in &change.added {
            prop_assert!(!a.vips.get(vip).is_some_and(|s| s.contains(backend)));
        }
        for (vip, backend) in &change.removed {
            prop_assert!(a.vips.get(vip).is_some_and(|s| s.contains(backend)));
        }
        prop_assert!(diff::diff(&a, &a).is_empty());
        prop_assert_eq!(change.len(), change.by_vip().values().map(|c| c.added.len() + c.removed.len()).sum::<usize>());
        // Undo: the reverse diff brings a back.
        let mut d = b.clone();
        d.apply(&b.diff(&a));
        prop_assert_eq!(d, a);
    }

    #[test]
    fn recordio_any_chunking_gives_the_same_records(
        records in vec(vec(any::<u8>(), 0..300), 0..8),
        cuts in vec(0usize..4000, 0..12),
    ) {
        let mut stream = Vec::new();
        for record in &records {
            stream.extend(recordio::encode(record));
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        let max = 300;
        let mut decoder = RecordIoDecoder::new(max);
        let mut out = Vec::new();
        for pair in cuts.windows(2) {
            decoder.feed(&stream[pair[0]..pair[1]], &mut out).unwrap();
            prop_assert!(decoder.buffered() <= max);
        }
        prop_assert_eq!(out, records);
        prop_assert!(decoder.is_at_boundary());
    }

    #[test]
    fn recordio_never_panics_and_stays_bounded(
        chunks in vec(vec(prop_oneof![Just(b'\n'), b'0'..=b'9', any::<u8>()], 0..64), 0..16),
        max in 0usize..64,
    ) {
        let mut decoder = RecordIoDecoder::new(max);
        let mut out = Vec::new();
        for chunk in &chunks {
            let _ = decoder.feed(chunk, &mut out);
            prop_assert!(decoder.buffered() <= max);
        }
        prop_assert!(out.iter().all(|r| r.len() <= max));
    }

    #[test]
    fn parsing_random_bytes_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok(document) = Document::parse(&bytes) {
            let _ = document.extract(&ExtractOptions::default());
        }
        let _ = mesos::inspect(&bytes, &ExtractOptions::default());
        let mut stream = MesosStream::default();
        let _ = stream.handle_record(&bytes);
        let _ = stream.feed(&bytes);
    }

    #[test]
    fn labels_never_panic(text in ".{0,40}", framework in ".{0,20}") {
        if let Ok((host, port)) = labels::parse_vip(&text) {
            prop_assert!(port != 0);
            if let VipHost::Name(name) = host {
                if let Some(dns) = labels::named_vip(&name, &framework) {
                    prop_assert!(dns.split('.').all(|l| !l.is_empty() && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')));
                }
            }
        }
        let _ = labels::parse_task_vip(&text);
        let _ = labels::vip_port_index(&text);
    }

    #[test]
    fn labels_round_trip(address in ip(), port in 1u16..) {
        let written = match address {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("{v6}:{port}"),
        };
        prop_assert_eq!(labels::parse_vip(&written), Ok((VipHost::Ip(address), port)));
        let bracketed = format!("[{address}]:{port}");
        if address.is_ipv6() {
            prop_assert_eq!(labels::parse_vip(&bracketed), Ok((VipHost::Ip(address), port)));
        }
        let task = format!("udp://{written}");
        prop_assert_eq!(labels::parse_task_vip(&task), Ok((Protocol::Udp, VipHost::Ip(address), port)));
    }
}

// ----- random JSON with Mesos-shaped keys -------------------------------------------------

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "type",
        "frameworks",
        "slaves",
        "pid",
        "flags",
        "ip",
        "id",
        "name",
        "tasks",
        "executors",
        "state",
        "statuses",
        "labels",
        "key",
        "value",
        "discovery",
        "ports",
        "number",
        "protocol",
        "container",
        "docker",
        "port_mappings",
        "host_port",
        "container_port",
        "network_infos",
        "ip_addresses",
        "ip_address",
        "container_status",
        "healthy",
        "timestamp",
        "resources",
        "range",
        "ranges",
        "begin",
        "end",
        "get_state",
        "get_tasks",
        "launched_tasks",
        "get_agents",
        "agents",
        "agent_info",
        "hostname",
        "get_frameworks",
        "framework_info",
        "framework_id",
        "task_id",
        "agent_id",
        "slave_id",
        "health_check",
        "subscribed",
        "task_added",
        "task",
        "task_updated",
        "status",
    ])
    .prop_map(str::to_string)
}

fn leaf() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "TASK_RUNNING",
            "TASK_KILLING",
            "tcp",
            "udp",
            "VIP_0",
            "vip_PORT0",
            "1.2.3.4:80",
            "/web:80",
            "tcp://a:1",
            "slave(1)@10.0.0.1:5051",
            "10.0.0.1",
            "fd01::1",
            "localhost",
            "[1-2, 3-4]",
            "container",
            "network-scope",
            "GET_STATE",
            "SUBSCRIBED",
            "TASK_ADDED",
            "TASK_UPDATED",
            "master@1.2.3.4:5050",
            "",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn json_tree() -> impl Strategy<Value = serde_json::Value> {
    leaf().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            vec((key(), inner), 0..6)
                .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_mesos_shaped_json_never_panics(tree in json_tree()) {
        let bytes = serde_json::to_vec(&tree).unwrap();
        if let Ok(document) = Document::parse(&bytes) {
            let _ = document.extract(&ExtractOptions::default());
        }
        let mut stream = MesosStream::default();
        let _ = stream.handle_record(&bytes);
        let _ = minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default());
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..4,
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let name = [
            "state/agent-ip-vip.json",
            "state/master-health.json",
            "operator-api/get-state-vip-labels.json",
            "operator-api/stream.json",
        ][which];
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mesos").join(name);
        let mut bytes = std::fs::read(path).unwrap();
        for (index, byte) in edits {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = mesos::inspect(&bytes, &ExtractOptions::default());
        let mut stream = MesosStream::default();
        for line in bytes.split(|&b| b == b'\n') {
            let _ = stream.feed(&recordio::encode(line));
        }
        let _ = minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default());
    }
}
