//! The cases of `docs/mesos-vips.md`, on the project's own small fixtures
//! (`tests/fixtures/mesos/`): every label form, every task state, every address rule, the
//! operator API with its hostnames, and a `SUBSCRIBE` stream checked after every event.
//! Also: malformed documents are errors and never panics, and diffs between successive
//! states rebuild the next state.

use minuteman_core::mesos::diff::{self, VipSetDiff};
use minuteman_core::mesos::recordio;
use minuteman_core::mesos::{
    self, render, Document, DocumentKind, EventKind, ExtractOptions, Extracted, InputFormat,
    MesosError, MesosStream, RecordIoError, StreamLimits,
};
use minuteman_core::vip::VipSet;
use std::net::IpAddr;
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mesos")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One line per (VIP, backend): `tcp 1.2.3.4:5000 -> 10.0.0.243:26645 agent 10.0.0.243 w1`.
fn rows(vips: &VipSet) -> Vec<String> {
    vips.vips
        .iter()
        .flat_map(|(vip, backends)| {
            backends.iter().map(move |b| {
                format!(
                    "{} {} -> {} agent {} w{}",
                    vip.protocol,
                    render::vip_address(vip),
                    render::socket(b.ip, b.port),
                    b.agent,
                    b.weight
                )
            })
        })
        .collect()
}

fn extract_with(name: &str, options: &ExtractOptions<'_>) -> (DocumentKind, Extracted) {
    let bytes = fixture(name);
    let document = Document::parse(&bytes).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    (document.kind(), document.extract(options))
}

fn check(name: &str, kind: DocumentKind, expected: &[&str], warnings: &[&str]) {
    let (got_kind, extracted) = extract_with(name, &ExtractOptions::default());
    assert_eq!(got_kind, kind, "{name}");
    assert_eq!(rows(&extracted.vips), expected, "{name}");
    assert_eq!(
        extracted.warnings.len(),
        warnings.len(),
        "{name}: {:?}",
        extracted.warnings
    );
    for (warning, want) in extracted.warnings.iter().zip(warnings) {
        assert!(warning.contains(want), "{name}: {warning:?} lacks {want:?}");
    }
    let snapshot = format!("own_{}", name.trim_end_matches(".json").replace('/', "_"));
    insta::assert_snapshot!(snapshot, render::text(&extracted));
}

const AGENT: DocumentKind = DocumentKind::AgentState;
const MASTER: DocumentKind = DocumentKind::MasterState;
const GET_STATE: DocumentKind = DocumentKind::GetState;

#[test]
fn agent_state_ip_vip_ignores_completed_work() {
    check(
        "state/agent-ip-vip.json",
        AGENT,
        &["tcp 1.2.3.4:5000 -> 10.1.0.5:26645 agent 10.1.0.5 w1"],
        &[],
    );
}

#[test]
fn agent_state_named_vips_and_flags_ip() {
    check(
        "state/agent-named.json",
        AGENT,
        &[
            "tcp merp.marathon-user:5000 -> 10.2.0.7:12049 agent 10.2.0.7 w1",
            "tcp my-web.front.marathon-user:80 -> 10.2.0.7:12049 agent 10.2.0.7 w1",
        ],
        &[],
    );
}

#[test]
fn master_state_task_labels_use_the_nth_resource_port() {
    check(
        "state/master-task-labels.json",
        MASTER,
        &[
            "tcp 4.3.2.1:1234 -> 33.0.0.1:31362 agent 33.0.0.1 w1",
            "tcp 4.3.2.1:1234 -> 33.0.0.1:31634 agent 33.0.0.1 w1",
            "tcp 4.3.2.2:1234 -> 33.0.0.1:31215 agent 33.0.0.1 w1",
            "tcp 4.3.2.2:1234 -> 33.0.0.9:31500 agent 33.0.0.9 w1",
            "udp 4.3.2.2:53 -> 33.0.0.1:31290 agent 33.0.0.1 w1",
        ],
        &[],
    );
}

#[test]
fn master_state_container_scope_and_docker_bridge() {
    check(
        "state/master-overlay.json",
        MASTER,
        &[
            "tcp 1.2.3.4:5000 -> 9.0.1.130:80 agent 10.0.1.248 w1",
            "tcp bridge.marathon:8080 -> 10.0.1.248:28027 agent 10.0.1.248 w1",
        ],
        &[],
    );
}

#[test]
fn master_state_same_port_two_protocols() {
    check(
        "state/master-tcp-udp.json",
        MASTER,
        &[
            "tcp 1.2.3.4:5000 -> 10.0.0.243:26645 agent 10.0.0.243 w1",
            "udp 1.2.3.4:5000 -> 10.0.0.243:26645 agent 10.0.0.243 w1",
        ],
        &[],
    );
}

#[test]
fn malformed_labels_are_warnings_naming_the_task() {
    check(
        "state/master-malformed.json",
        MASTER,
        &[],
        &[
            "task big-port.1: VIP label VIP_0=\"1.2.3.4:70000\": invalid port \"70000\"",
            "task invalid-port.1: VIP label VIP_0=\"invalid-port::1234\": invalid host",
            "task missing-port.1: VIP label VIP_0=\"missing-port\": no port",
            "task scheme.1: VIP label VIP_PORT0=\"sctp://1.2.3.4:80\": unknown protocol",
            "task scheme.1: VIP label VIP_PORT1=\"tcp://1.2.3.4:81\": the task has no valid port 1",
            "task sctp.1: port 26648: unknown protocol \"sctp\"",
        ],
    );
}

#[test]
fn empty_master_state() {
    check("state/master-empty.json", MASTER, &[], &[]);
}

#[test]
fn task_states_and_health_decide_the_weight() {
    check(
        "state/master-health.json",
        MASTER,
        &[
            // running, no health check
            "tcp app.marathon:80 -> 10.3.0.2:31001 agent 10.3.0.2 w1",
            // latest status healthy (an older one was not)
            "tcp app.marathon:80 -> 10.3.0.2:31002 agent 10.3.0.2 w1",
            // latest status unhealthy
            "tcp app.marathon:80 -> 10.3.0.2:31003 agent 10.3.0.2 w0",
            // health check defined, no result yet
            "tcp app.marathon:80 -> 10.3.0.2:31004 agent 10.3.0.2 w0",
            // killing
            "tcp app.marathon:80 -> 10.3.0.2:31005 agent 10.3.0.2 w0",
            // staging, starting, unreachable, finished, failed, gone: none
        ],
        &[],
    );
}

#[test]
fn ipv6_families() {
    check(
        "state/agent-ipv6.json",
        AGENT,
        &[
            "tcp 1.2.3.5:80 -> 12.0.1.4:8080 agent 10.0.0.230 w1",
            "tcp [fd01:d::1]:80 -> [fd01:b::2:8000:0:2]:80 agent 10.0.0.230 w1",
            "tcp foo.marathon:80 -> 12.0.1.4:8080 agent 10.0.0.230 w1",
            "tcp foo.marathon:80 -> [fd01::1:8000:4]:8080 agent 10.0.0.230 w1",
        ],
        &["task v4only.1: VIP label VIP_0=\"[fd01:d::2]:80\": no backend for tcp [fd01:d::2]:80"],
    );
}

#[test]
fn ucr_bridge_host_scope() {
    check(
        "state/agent-ucr-bridge.json",
        AGENT,
        &[
            "tcp foo.marathon:5000 -> 10.0.2.5:29025 agent 10.0.2.5 w1",
            "tcp foo.marathon:5000 -> 10.0.2.5:29026 agent 10.0.2.5 w1",
        ],
        &[],
    );
}

#[test]
fn get_state_vip_labels() {
    check(
        "operator-api/get-state-vip-labels.json",
        GET_STATE,
        &[
            "tcp abc.marathon:80 -> 172.17.0.3:9999 agent 172.17.0.3 w1",
            "tcp cbd.marathon:80 -> 172.17.0.3:9999 agent 172.17.0.3 w1",
            "tcp def.marathon:80 -> 172.17.0.3:9999 agent 172.17.0.3 w1",
            "tcp jkl.marathon:80 -> 172.17.0.3:10000 agent 172.17.0.3 w1",
            "tcp xyz.marathon:443 -> 172.17.0.3:10001 agent 172.17.0.3 w1",
        ],
        &[],
    );
}

#[test]
fn get_state_tcp_and_udp_healthy() {
    check(
        "operator-api/get-state-tcp-udp.json",
        GET_STATE,
        &[
            "tcp app.marathon:80 -> 172.17.0.3:6416 agent 172.17.0.3 w1",
            "udp app.marathon:80 -> 172.17.0.3:6416 agent 172.17.0.3 w1",
        ],
        &[],
    );
}

#[test]
fn get_state_unhealthy_container_scope() {
    check(
        "operator-api/get-state-unhealthy.json",
        GET_STATE,
        &["tcp foobar.marathon:80 -> 9.0.1.6:80 agent 172.17.0.4 w0"],
        &[],
    );
}

#[test]
fn get_state_hostnames() {
    check(
        "operator-api/get-state-hostnames.json",
        GET_STATE,
        &[
            "tcp local.marathon:80 -> 127.0.0.1:31001 agent 127.0.0.1 w1",
            "tcp pid.marathon:80 -> 10.5.0.2:31002 agent 10.5.0.2 w1",
        ],
        &[
            "task dns.1: no backend: agent N-S6: cannot resolve agent hostname \"agent-6.example\"",
            "task lost-agent.1: no backend: agent N-S7: unknown agent",
        ],
    );
}

#[test]
fn a_resolver_supplied_by_the_shell_resolves_names() {
    let resolve = |name: &str| -> Option<IpAddr> {
        match name {
            "agent-5.example" => "10.6.0.5".parse().ok(),
            "agent-6.example" => "10.6.0.6".parse().ok(),
            _ => None,
        }
    };
    let options = ExtractOptions {
        agent_ip: None,
        resolve: Some(&resolve),
    };
    let (_, extracted) = extract_with("operator-api/get-state-hostnames.json", &options);
    assert_eq!(
        rows(&extracted.vips),
        [
            "tcp dns.marathon:80 -> 10.6.0.6:31003 agent 10.6.0.6 w1",
            "tcp local.marathon:80 -> 127.0.0.1:31001 agent 127.0.0.1 w1",
            // the hostname comes before the pid
            "tcp pid.marathon:80 -> 10.6.0.5:31002 agent 10.6.0.5 w1",
        ]
    );
    assert_eq!(extracted.warnings.len(), 1, "{:?}", extracted.warnings);
}

#[test]
fn agent_ip_override() {
    let options = ExtractOptions::with_agent_ip("192.168.0.9".parse().unwrap());
    let (_, extracted) = extract_with("state/agent-ip-vip.json", &options);
    assert_eq!(
        rows(&extracted.vips),
        ["tcp 1.2.3.4:5000 -> 192.168.0.9:26645 agent 192.168.0.9 w1"]
    );
    // Container-scope backends keep their container address but take the agent.
    let (_, extracted) = extract_with("state/master-overlay.json", &options);
    assert_eq!(
        rows(&extracted.vips),
        [
            "tcp 1.2.3.4:5000 -> 9.0.1.130:80 agent 192.168.0.9 w1",
            "tcp bridge.marathon:8080 -> 192.168.0.9:28027 agent 192.168.0.9 w1",
        ]
    );
}

// ----- the SUBSCRIBE stream -------------------------------------------------------------------

#[test]
fn stream_event_by_event() {
    let bytes = fixture("operator-api/stream.json");
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let a1 = "tcp a.marathon:80 -> 10.0.0.1:31000 agent 10.0.0.1";
    let a2 = "tcp a.marathon:80 -> 10.0.0.2:31002 agent 10.0.0.2";
    let k1 = "tcp broker.kafka-svc:9092 -> 10.0.0.2:31001 agent 10.0.0.2 w1";
    let k2 = "tcp broker.kafka-svc:9092 -> 10.0.0.3:31003 agent 10.0.0.3 w1";
    let c1 = "tcp 1.1.1.1:80 -> 9.0.0.5:8080 agent 10.0.0.1";
    let w = |row: &str, weight: u32| format!("{row} w{weight}");
    let expected: Vec<(EventKind, Vec<String>)> = vec![
        (EventKind::Subscribed, vec![w(a1, 1), k1.into()]),
        (EventKind::Heartbeat, vec![w(a1, 1), k1.into()]),
        // staging: not yet a backend
        (EventKind::TaskAdded, vec![w(a1, 1), k1.into()]),
        (EventKind::TaskUpdated, vec![w(a1, 1), w(a2, 1), k1.into()]),
        // TASK_KILLING drains
        (EventKind::TaskUpdated, vec![w(a1, 0), w(a2, 1), k1.into()]),
        (EventKind::TaskUpdated, vec![w(a2, 1), k1.into()]),
        // healthy: false, then healthy again
        (EventKind::TaskUpdated, vec![w(a2, 0), k1.into()]),
        (EventKind::TaskUpdated, vec![w(a2, 1), k1.into()]),
        (EventKind::TaskAdded, vec![w(a2, 1), k1.into()]),
        // the container address arrives with the RUNNING status
        (EventKind::TaskUpdated, vec![w(c1, 1), w(a2, 1), k1.into()]),
        // KILLING without a container status keeps the address, drained
        (EventKind::TaskUpdated, vec![w(c1, 0), w(a2, 1), k1.into()]),
        (EventKind::Unknown, vec![w(c1, 0), w(a2, 1), k1.into()]),
        (EventKind::AgentAdded, vec![w(c1, 0), w(a2, 1), k1.into()]),
        (
            EventKind::TaskAdded,
            vec![w(c1, 0), w(a2, 1), k1.into(), k2.into()],
        ),
        (
            EventKind::FrameworkUpdated,
            vec![w(c1, 0), w(a2, 1), k1.into(), k2.into()],
        ),
        // FRAMEWORK_REMOVED removes its tasks
        (EventKind::FrameworkRemoved, vec![w(c1, 0), w(a2, 1)]),
        // AGENT_REMOVED removes the tasks on it
        (EventKind::AgentRemoved, vec![w(c1, 0)]),
        // an update for a task never seen changes nothing
        (EventKind::TaskUpdated, vec![w(c1, 0)]),
        (EventKind::FrameworkAdded, vec![w(c1, 0)]),
    ];
    assert_eq!(lines.len(), expected.len());

    let mut stream = MesosStream::default();
    let mut previous = VipSet::new();
    let mut published = VipSet::new();
    for (i, (line, (kind, want))) in lines.iter().zip(&expected).enumerate() {
        // RecordIO framing, fed one byte at a time for the first event and whole after.
        let framed = recordio::encode(line);
        let mut applied = Vec::new();
        if i == 0 {
            for byte in &framed {
                let outcome = stream.feed(std::slice::from_ref(byte)).unwrap();
                assert!(outcome.errors.is_empty());
                applied.extend(outcome.applied);
            }
        } else {
            let outcome = stream.feed(&framed).unwrap();
            assert!(
                outcome.errors.is_empty(),
                "event {}: {:?}",
                i + 1,
                outcome.errors
            );
            applied = outcome.applied;
        }
        assert_eq!(applied, [*kind], "event {}", i + 1);
        let extracted =
            minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default());
        assert!(extracted.warnings.is_empty(), "{:?}", extracted.warnings);
        let mut got = rows(&extracted.vips);
        let mut want = want.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "after event {} ({kind:?})", i + 1);

        // What a node would publish: the diff from the previous set rebuilds this one.
        let change = previous.diff(&extracted.vips);
        published.apply(&change);
        assert_eq!(published, extracted.vips, "event {}", i + 1);
        assert_eq!(change.is_empty(), previous == extracted.vips);
        previous = extracted.vips;
    }
    let counters = stream.counters();
    assert_eq!(counters.events(), expected.len() as u64);
    assert_eq!(counters.unknown_events, 1);
    assert_eq!(counters.heartbeats, 1);
    assert_eq!(counters.updates_for_unknown_tasks, 1);
    assert_eq!(counters.tasks_removed_with_owner, 3);
    assert_eq!(counters.malformed_events, 0);
}

#[test]
fn stream_survives_a_malformed_event_but_not_broken_framing() {
    let mut stream = MesosStream::default();
    let good = fixture("operator-api/stream.json");
    let first = good.split(|&b| b == b'\n').next().unwrap();
    let mut bytes = recordio::encode(b"{\"type\":\"TASK_ADDED\"}");
    bytes.extend(recordio::encode(b"not json"));
    bytes.extend(recordio::encode(first));
    let outcome = stream.feed(&bytes).unwrap();
    assert_eq!(outcome.applied, [EventKind::Subscribed]);
    assert_eq!(outcome.errors.len(), 2);
    assert!(matches!(outcome.errors[0], MesosError::Shape(_)));
    assert!(matches!(outcome.errors[1], MesosError::NotJson(_)));
    assert_eq!(stream.counters().malformed_events, 2);
    let kept = minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default());
    assert_eq!(kept.vips.backend_count(), 2);

    // Broken framing is an error; the state is kept for the next connection.
    let err = stream.feed(b"12x").unwrap_err();
    assert!(matches!(
        err,
        MesosError::RecordIo(RecordIoError::InvalidPrefix { byte: b'x', .. })
    ));
    assert!(stream.feed(b"2\n{}").is_err(), "poisoned until reset");
    stream.reset();
    let outcome = stream
        .feed(&recordio::encode(b"{\"type\":\"HEARTBEAT\"}"))
        .unwrap();
    assert_eq!(outcome.applied, [EventKind::Heartbeat]);
    assert_eq!(
        minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default()),
        kept
    );
}

#[test]
fn stream_limits_drop_and_count() {
    let limits = StreamLimits {
        max_tasks: 1,
        max_agents: 1,
        max_frameworks: 1,
        max_record_size: 64 * 1024,
    };
    let mut stream = MesosStream::new(limits);
    let bytes = fixture("operator-api/stream.json");
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        stream.feed(&recordio::encode(line)).unwrap();
    }
    let state = stream.state();
    assert!(state.tasks.len() <= 1);
    assert!(state.agents.len() <= 1);
    assert!(state.frameworks.len() <= 1);
    let c = stream.counters();
    assert!(c.tasks_over_limit > 0 && c.agents_over_limit > 0 && c.frameworks_over_limit > 0);

    let mut small = MesosStream::new(StreamLimits {
        max_record_size: 10,
        ..StreamLimits::default()
    });
    let err = small.feed(b"11\n").unwrap_err();
    assert_eq!(
        err,
        MesosError::RecordIo(RecordIoError::RecordTooLarge { len: 11, max: 10 })
    );
}

#[test]
fn inspect_reads_event_lines_and_recordio_captures() {
    let lines = fixture("operator-api/stream.json");
    let by_lines = mesos::inspect(&lines, &ExtractOptions::default()).unwrap();
    assert_eq!(by_lines.format, InputFormat::EventLines { events: 19 });
    let mut framed = Vec::new();
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        framed.extend(recordio::encode(line));
    }
    let by_records = mesos::inspect(&framed, &ExtractOptions::default()).unwrap();
    assert_eq!(by_records.format, InputFormat::RecordIo { events: 19 });
    assert_eq!(by_lines.extracted, by_records.extracted);
    assert_eq!(
        by_lines.extracted.warnings,
        ["1 event(s) of unknown type ignored"]
    );
    assert_eq!(
        rows(&by_lines.extracted.vips),
        ["tcp 1.1.1.1:80 -> 9.0.0.5:8080 agent 10.0.0.1 w0"]
    );

    // A bad line is an error naming the line.
    let mut broken = lines.clone();
    broken.extend_from_slice(b"{\"type\":\"TASK_ADDED\"}\n");
    let err = mesos::inspect(&broken, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, MesosError::AtLine { line: 20, .. }), "{err}");
    assert!(err.to_string().starts_with("line 20: "), "{err}");
}

#[test]
fn a_single_event_document() {
    let bytes = fixture("operator-api/stream.json");
    let first = bytes.split(|&b| b == b'\n').next().unwrap();
    let document = Document::parse(first).unwrap();
    assert_eq!(document.kind(), DocumentKind::Event(EventKind::Subscribed));
    let extracted = document.extract(&ExtractOptions::default());
    assert_eq!(extracted.vips.backend_count(), 2);
    let unknown =
        Document::parse(br#"{"type":"GET_HEALTH","get_health":{"healthy":true}}"#).unwrap();
    assert_eq!(unknown.kind(), DocumentKind::Event(EventKind::Unknown));
    let inspection = mesos::inspect(
        br#"{"type":"GET_HEALTH","get_health":{"healthy":true}}"#,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert!(inspection.extracted.vips.is_empty());
    assert_eq!(
        inspection.extracted.warnings,
        ["unknown event type \"GET_HEALTH\" ignored"]
    );
}

// ----- malformed documents --------------------------------------------------------------------

#[test]
fn malformed_documents_are_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "not JSON"),
        (b"not json", "not JSON"),
        (b"{\"frameworks\": [", "not JSON"),
        (b"[1, 2, 3]", "not a Mesos document"),
        (b"\"text\"", "not a Mesos document"),
        (b"{}", "not a Mesos document"),
        (b"{\"unrelated\": true}", "not a Mesos document"),
        (b"{\"frameworks\": 5}", "not a Mesos document"),
        (
            b"{\"frameworks\": [{\"tasks\": [{\"id\": 7}]}]}",
            "not a Mesos document",
        ),
        (
            b"{\"type\": \"GET_STATE\"}",
            "GET_STATE event without `get_state`",
        ),
        (b"{\"type\": \"TASK_UPDATED\"}", "without `task_updated`"),
        (b"{\"type\": 12}", "not a Mesos document"),
    ];
    for (bytes, message) in cases {
        let err = Document::parse(bytes).unwrap_err();
        assert!(
            err.to_string().contains(message),
            "{:?}: {err}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn missing_optional_fields_are_fine() {
    let minimal = br#"{"frameworks":[{"executors":[{"tasks":[{"id":"t"},{"id":"u","state":"TASK_RUNNING","discovery":{"ports":{"ports":[{"labels":{"labels":[{"key":"VIP_0","value":"1.2.3.4:80"},{"key":"VIP_1"}]}}]}}}]}]}]}"#;
    let extracted = mesos::parse_and_extract(minimal, &ExtractOptions::default()).unwrap();
    assert!(extracted.vips.is_empty());
    assert_eq!(extracted.warnings.len(), 1, "{:?}", extracted.warnings);
    assert!(extracted.warnings[0].contains("no valid number"));
    let nulls = br#"{"slaves":null,"frameworks":[{"tasks":null,"name":null}],"pid":null}"#;
    assert!(mesos::parse_and_extract(nulls, &ExtractOptions::default()).is_ok());
}

#[test]
fn every_truncation_of_every_fixture_is_an_error_not_a_panic() {
    for name in [
        "state/agent-ip-vip.json",
        "state/master-overlay.json",
        "operator-api/get-state-vip-labels.json",
    ] {
        let bytes = fixture(name);
        // Cut anywhere before the closing brace (the trailing newline is not content).
        let body = bytes.iter().rposition(|&b| b == b'}').unwrap();
        for end in (0..body).step_by(7).chain([body]) {
            let result = mesos::parse_and_extract(&bytes[..end], &ExtractOptions::default());
            assert!(result.is_err(), "{name} cut at {end} parsed");
        }
        assert!(mesos::parse_and_extract(&bytes, &ExtractOptions::default()).is_ok());
    }
}

#[test]
fn diff_of_two_fixtures() {
    let a = mesos::parse_and_extract(&fixture("state/master-tcp-udp.json"), &Default::default())
        .unwrap()
        .vips;
    let b = mesos::parse_and_extract(&fixture("state/agent-ip-vip.json"), &Default::default())
        .unwrap()
        .vips;
    let change = diff::diff(&a, &b);
    assert_eq!(change.removed.len(), 2);
    assert_eq!(change.added.len(), 1);
    let grouped = change.by_vip();
    assert_eq!(grouped.len(), 2);
    let mut c = a.clone();
    diff::apply(&mut c, &change);
    assert_eq!(c, b);
    assert!(a.diff(&a).is_empty());
}
