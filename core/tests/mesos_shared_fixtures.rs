//! The real Mesos recordings in `../shared/fixtures/mesos/` (beside the workspace) against
//! the expected results of `docs/mesos-vips.md`.
//!
//! The recordings are not part of the project: when the folder is absent every test here
//! prints `shared fixtures not found at <path>` and passes. Operator-API event files are
//! replayed event by event with RecordIO framing added here, each record fed in two chunks,
//! and the VIP set is checked after every event.

use minuteman_core::mesos::recordio;
use minuteman_core::mesos::{
    self, render, Document, DocumentKind, ExtractOptions, Extracted, MesosStream,
};
use minuteman_core::vip::VipSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/mesos");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("shared fixtures not found at {}", dir.display());
        None
    }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
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

fn extract_file(dir: &Path, name: &str) -> (DocumentKind, Extracted) {
    let bytes = read(dir, name);
    let document = Document::parse(&bytes).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    let extracted = document.extract(&ExtractOptions::default());
    (document.kind(), extracted)
}

/// Checks a `/state` fixture's VIP rows and that it has no warnings, and snapshots it.
fn check_state(name: &str, kind: DocumentKind, expected: &[&str]) {
    let Some(dir) = shared_dir() else { return };
    let (got_kind, extracted) = extract_file(&dir.join("state"), name);
    assert_eq!(got_kind, kind, "{name}");
    assert_eq!(rows(&extracted.vips), expected, "{name}");
    assert!(
        extracted.warnings.is_empty(),
        "{name}: {:?}",
        extracted.warnings
    );
    insta::assert_snapshot!(
        format!("shared_state_{}", name.trim_end_matches(".json")),
        render::text(&extracted)
    );
}

const AGENT: DocumentKind = DocumentKind::AgentState;
const MASTER: DocumentKind = DocumentKind::MasterState;

#[test]
fn minuteman_overlay_container_scope() {
    check_state(
        "minuteman-overlay.json",
        MASTER,
        &["tcp 1.2.3.4:5000 -> 9.0.1.130:80 agent 10.0.1.248 w1"],
    );
}

#[test]
fn minuteman_two_healthcheck_free_vips() {
    check_state(
        "minuteman-two-healthcheck-free-vips-state.json",
        MASTER,
        &[
            "tcp 4.3.2.1:1234 -> 33.33.33.1:31362 agent 33.33.33.1 w1",
            "tcp 4.3.2.1:1234 -> 33.33.33.1:31634 agent 33.33.33.1 w1",
            "tcp 4.3.2.2:1234 -> 33.33.33.1:31215 agent 33.33.33.1 w1",
            "tcp 4.3.2.2:1234 -> 33.33.33.1:31290 agent 33.33.33.1 w1",
        ],
    );
}

#[test]
fn minuteman_state2_task_label() {
    check_state(
        "minuteman-state2.json",
        MASTER,
        &["tcp 1.2.3.4:5000 -> 10.10.0.109:8014 agent 10.10.0.109 w1"],
    );
}

#[test]
fn minuteman_state3_agent_and_state4_master() {
    let expected = ["tcp 1.2.3.4:5000 -> 10.0.0.243:26645 agent 10.0.0.243 w1"];
    check_state("minuteman-state3.json", AGENT, &expected);
    check_state("minuteman-state4.json", MASTER, &expected);
}

#[test]
fn minuteman_state5_tcp_and_udp() {
    check_state(
        "minuteman-state5.json",
        MASTER,
        &[
            "tcp 1.2.3.4:5000 -> 10.0.0.243:26645 agent 10.0.0.243 w1",
            "udp 1.2.3.4:5000 -> 10.0.0.243:26645 agent 10.0.0.243 w1",
        ],
    );
}

#[test]
fn minuteman_state_di() {
    check_state(
        "minuteman-state_di.json",
        MASTER,
        &["tcp 1.2.3.4:8080 -> 10.0.2.234:19426 agent 10.0.2.234 w1"],
    );
}

#[test]
fn minuteman_named_base_vips_ignores_the_killed_task() {
    check_state(
        "minuteman-named-base-vips.json",
        AGENT,
        &["tcp merp.marathon:5000 -> 10.0.0.243:12049 agent 10.0.0.243 w1"],
    );
}

#[test]
fn minuteman_docker_bridge_task_label() {
    // Not in the doc's table: the task label's port 0 is the `ports` resource's first port,
    // which is the Docker mapping's host port.
    check_state(
        "minuteman-docker.json",
        MASTER,
        &["tcp 1.2.3.4:5000 -> 10.0.2.4:28027 agent 10.0.2.4 w1"],
    );
}

#[test]
fn minuteman_bad_state_gaal_has_100_backends() {
    let Some(dir) = shared_dir() else { return };
    let (kind, extracted) = extract_file(&dir.join("state"), "minuteman-bad-state-gaal.json");
    assert_eq!(kind, MASTER);
    assert!(extracted.warnings.is_empty(), "{:?}", extracted.warnings);
    assert_eq!(extracted.vips.vips.len(), 1);
    assert_eq!(extracted.vips.backend_count(), 100);
    let rows = rows(&extracted.vips);
    assert!(rows
        .iter()
        .all(|r| r.starts_with("tcp 10.22.126.49:5000 -> 10.22.126.51:")
            && r.ends_with(" agent 10.22.126.51 w1")));
    insta::assert_snapshot!(
        "shared_state_minuteman-bad-state-gaal",
        render::text(&extracted)
    );
}

#[test]
fn minuteman_malformed_and_empty_give_no_vips() {
    let Some(dir) = shared_dir() else { return };
    for (name, warning) in [
        (
            "minuteman-missing-port.json",
            Some("\"missing-port\": no port"),
        ),
        (
            "minuteman-invalid-port.json",
            Some("invalid host \"invalid-port:\""),
        ),
        ("minuteman-empty.json", None),
    ] {
        let (_, extracted) = extract_file(&dir.join("state"), name);
        assert!(extracted.vips.is_empty(), "{name}");
        match warning {
            Some(text) => {
                assert_eq!(extracted.warnings.len(), 1, "{name}");
                let w = &extracted.warnings[0];
                assert!(w.starts_with("task catsmeow.1d28d7c0"), "{name}: {w}");
                assert!(w.contains(text), "{name}: {w}");
            }
            None => assert!(extracted.warnings.is_empty(), "{name}"),
        }
    }
}

#[test]
fn dcos_net_ipv6_literal_vip_takes_only_the_ipv6_container_address() {
    check_state(
        "dcos-net-state2_ipv6.json",
        AGENT,
        &["tcp [fd01:d::1]:80 -> [fd01:b::2:8000:0:2]:80 agent 10.0.0.230 w1"],
    );
}

#[test]
fn dcos_net_named_vip_on_ipv6_network_keeps_both_families() {
    check_state(
        "dcos-net-state_ipv6.json",
        AGENT,
        &[
            "tcp foo.marathon:80 -> 12.0.1.4:80 agent 10.0.2.74 w1",
            "tcp foo.marathon:80 -> [fd01::1:8000:4]:80 agent 10.0.2.74 w1",
        ],
    );
}

#[test]
fn dcos_net_state6_overlay_uses_the_latest_status_address() {
    check_state(
        "dcos-net-state6.json",
        AGENT,
        &["tcp 1.2.3.4:80 -> 9.0.1.130:80 agent 172.18.0.3 w1"],
    );
}

#[test]
fn dcos_net_ucr_overlay_named_host_scope() {
    check_state(
        "dcos-net-ucr-overlay-named.json",
        MASTER,
        &["tcp test.marathon:80 -> 10.0.0.40:12564 agent 10.0.0.40 w1"],
    );
}

#[test]
fn dcos_net_ucr_bridge_mode_host_port() {
    let expected = ["tcp foo.marathon:5000 -> 10.0.2.5:29025 agent 10.0.2.5 w1"];
    check_state("dcos-net-ucr-bridge-mode-net-info.json", AGENT, &expected);
    check_state(
        "dcos-net-ucr-bridge-mode-no-net-info.json",
        AGENT,
        &expected,
    );
}

#[test]
fn every_state_fixture_parses() {
    let Some(dir) = shared_dir() else { return };
    let mut names: Vec<_> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 19);
    for path in names {
        let bytes = std::fs::read(&path).unwrap();
        mesos::parse_and_extract(&bytes, &ExtractOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

// ----- operator API -------------------------------------------------------------------------

fn check_get_state(name: &str, expected: &[&str]) {
    let Some(dir) = shared_dir() else { return };
    let (kind, extracted) = extract_file(&dir.join("operator-api"), name);
    assert_eq!(kind, DocumentKind::GetState, "{name}");
    assert_eq!(rows(&extracted.vips), expected, "{name}");
    assert!(
        extracted.warnings.is_empty(),
        "{name}: {:?}",
        extracted.warnings
    );
    insta::assert_snapshot!(
        format!("shared_api_{}", name.trim_end_matches(".json")),
        render::text(&extracted)
    );
}

#[test]
fn api_vip_labels() {
    check_get_state(
        "vip-labels.json",
        &[
            "tcp abc.marathon:80 -> 172.17.0.3:9999 agent 172.17.0.3 w1",
            "tcp cbd.marathon:80 -> 172.17.0.3:9999 agent 172.17.0.3 w1",
            "tcp def.marathon:80 -> 172.17.0.3:9999 agent 172.17.0.3 w1",
            "tcp jkl.marathon:80 -> 172.17.0.3:10000 agent 172.17.0.3 w1",
            "tcp xyz.marathon:443 -> 172.17.0.3:10001 agent 172.17.0.3 w1",
        ],
    );
}

#[test]
fn api_tcp_and_udp() {
    check_get_state(
        "tcp-and-udp.json",
        &[
            "tcp app.marathon:80 -> 172.17.0.3:6416 agent 172.17.0.3 w1",
            "udp app.marathon:80 -> 172.17.0.3:6416 agent 172.17.0.3 w1",
        ],
    );
}

#[test]
fn api_unhealthy_is_drained() {
    check_get_state(
        "unhealthy.json",
        &["tcp foobar.marathon:80 -> 9.0.1.6:80 agent 172.17.0.4 w0"],
    );
}

#[test]
fn api_dns_hostname_localhost() {
    let Some(dir) = shared_dir() else { return };
    let bytes = read(&dir.join("operator-api"), "dns-hostname.json");
    let document = Document::parse(&bytes).unwrap();
    assert_eq!(document.kind(), DocumentKind::GetState);
    let (state, warnings) = minuteman_core::mesos::stream::cluster_state(&document);
    assert!(warnings.is_empty(), "{warnings:?}");
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(state.tasks.len(), 1);
    for task in state.tasks.values() {
        let agent = state.agents.get(&task.agent_id).expect("the task's agent");
        assert_eq!(agent.hostname.as_deref(), Some("localhost"));
        assert_eq!(agent.resolve(None), Ok(localhost), "agent IP");
        assert_eq!(task.ips, vec![localhost], "task IP");
    }
    let extracted = document.extract(&ExtractOptions::default());
    assert!(extracted.vips.is_empty());
    assert!(extracted.warnings.is_empty());
}

/// Replays a one-event-per-line file through a stream, framing each event as RecordIO and
/// feeding it in two chunks; returns the VIP rows after each event.
fn replay(dir: &Path, name: &str) -> (MesosStream, Vec<Vec<String>>) {
    let bytes = read(&dir.join("operator-api"), name);
    let mut stream = MesosStream::default();
    let mut after = Vec::new();
    let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    for (i, line) in lines.enumerate() {
        let framed = recordio::encode(line);
        let (first, second) = framed.split_at(framed.len() / 3);
        let a = stream.feed(first).unwrap();
        assert!(
            a.applied.is_empty() && a.errors.is_empty(),
            "{name}:{}",
            i + 1
        );
        let b = stream.feed(second).unwrap();
        assert!(b.errors.is_empty(), "{name}:{}: {:?}", i + 1, b.errors);
        assert_eq!(b.applied.len(), 1, "{name}:{}", i + 1);
        let extracted =
            minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default());
        assert!(
            extracted.warnings.is_empty(),
            "{name}:{}: {:?}",
            i + 1,
            extracted.warnings
        );
        after.push(rows(&extracted.vips));
    }
    (stream, after)
}

#[test]
fn stream_hello_world() {
    let Some(dir) = shared_dir() else { return };
    let (stream, after) = replay(&dir, "hello-world.json");
    let first = "tcp api.hello-world.marathon:80 -> 172.17.0.4:21872 agent 172.17.0.4";
    let second = "tcp api.hello-world.marathon:80 -> 172.17.0.3:12964 agent 172.17.0.3";
    let expected: Vec<Vec<String>> = [
        vec![format!("{first} w1")],  // SUBSCRIBED: running, healthy
        vec![format!("{first} w0")],  // TASK_KILLING: drain
        vec![],                       // TASK_KILLED
        vec![],                       // TASK_ADDED (staging)
        vec![],                       // hello-0-server finished
        vec![],                       // TASK_STARTING
        vec![format!("{second} w1")], // TASK_RUNNING
        vec![format!("{second} w1")], // FRAMEWORK_UPDATED hello-world
        vec![format!("{second} w1")], // world-1-server killed
        vec![format!("{second} w1")], // world-0-server killed
        vec![format!("{second} w1")], // FRAMEWORK_REMOVED hello-world
        vec![format!("{second} w0")], // TASK_KILLING
        vec![],                       // TASK_KILLED
    ]
    .into_iter()
    .collect();
    assert_eq!(after, expected);
    // FRAMEWORK_REMOVED forgot the hello-world framework and left none of its tasks.
    let state = stream.state();
    let hello = "52b1358f-044b-4382-8b05-d972166ff18f-0002";
    assert!(!state.frameworks.contains_key(hello));
    assert!(state.tasks.keys().all(|(fw, _)| fw != hello));
    assert_eq!(stream.counters().framework_removed, 1);
}

#[test]
fn stream_recovered_agents() {
    let Some(dir) = shared_dir() else { return };
    let (stream, after) = replay(&dir, "recovered-agents.json");
    let web = "tcp web.marathon:10080 -> 172.17.0.4:16424 agent 172.17.0.4 w1".to_string();
    let mut expected = vec![Vec::<String>::new(); 8];
    expected.push(vec![web]);
    assert_eq!(after, expected);
    assert_eq!(stream.counters().heartbeats, 1);
    assert_eq!(stream.counters().agent_added, 1);
}

#[test]
fn stream_operator_api_has_no_vips_but_tracks_every_task() {
    let Some(dir) = shared_dir() else { return };
    let (stream, after) = replay(&dir, "operator-api.json");
    assert_eq!(after.len(), 38);
    assert!(after.iter().all(Vec::is_empty));
    let state = stream.state();
    assert_eq!(state.tasks.len(), 12);
    assert!(state
        .tasks
        .values()
        .all(|t| t.state == mesos::TaskState::Running));
    let ipv6 = state
        .tasks
        .values()
        .find(|t| t.id.starts_with("docker-on-ipv6."))
        .unwrap();
    let want: Vec<IpAddr> = vec![
        "172.19.0.2".parse().unwrap(),
        "fd01:b::2:8000:0:2".parse().unwrap(),
    ];
    assert_eq!(ipv6.ips, want);
    let bridge = state
        .tasks
        .values()
        .find(|t| t.id.starts_with("docker-on-bridge."))
        .unwrap();
    assert_eq!(bridge.port_mappings.len(), 1);
    assert_eq!(bridge.port_mappings[0].host_port, 20560);
}

#[test]
fn stream_pod_tasks() {
    let Some(dir) = shared_dir() else { return };
    let (stream, after) = replay(&dir, "pod-tasks.json");
    assert_eq!(after.len(), 8);
    assert!(after.iter().all(Vec::is_empty));
    // bar finished; foo is still running.
    let ids: Vec<&str> = stream
        .state()
        .tasks
        .values()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["app.instance-caff1565-d0db-11e8-aa23-70b3d5800002.foo"]
    );
}

#[test]
fn get_state_documents_also_work_as_the_first_stream_record() {
    let Some(dir) = shared_dir() else { return };
    for name in [
        "vip-labels.json",
        "tcp-and-udp.json",
        "unhealthy.json",
        "dns-hostname.json",
    ] {
        let bytes = read(&dir.join("operator-api"), name);
        let mut stream = MesosStream::default();
        let outcome = stream.feed(&recordio::encode(&bytes)).unwrap();
        assert!(outcome.errors.is_empty(), "{name}: {:?}", outcome.errors);
        let direct = mesos::parse_and_extract(&bytes, &ExtractOptions::default()).unwrap();
        assert_eq!(
            minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default()),
            direct,
            "{name}"
        );
    }
}

#[test]
fn inspect_detects_every_shape() {
    let Some(dir) = shared_dir() else { return };
    let cases = [
        ("state/minuteman-state3.json", "agent /state"),
        ("state/minuteman-state4.json", "master /state"),
        ("operator-api/vip-labels.json", "operator API GET_STATE"),
        (
            "operator-api/hello-world.json",
            "operator API event stream, one event per line (13 events)",
        ),
    ];
    for (name, format) in cases {
        let inspection = mesos::inspect(&read(&dir, name), &ExtractOptions::default()).unwrap();
        assert_eq!(inspection.format.to_string(), format, "{name}");
    }
}

/// One line per task endpoint: `web.marathon A 10.0.0.1`, `web.marathon tcp 10.0.0.1:80`.
fn task_rows(extracted: &Extracted) -> Vec<String> {
    use minuteman_core::tasks::TaskEndpoint;
    let mut rows = Vec::new();
    for (name, endpoints) in &extracted.tasks.names {
        for endpoint in endpoints.iter() {
            rows.push(match *endpoint {
                TaskEndpoint::Address(ip) => format!("{name} address {ip}"),
                TaskEndpoint::Port { protocol, ip, port } => {
                    format!("{name} {protocol} {}", render::socket(ip, port))
                }
            });
        }
    }
    rows
}

/// The task records (DNS) of fixtures of every shape: host ports from discovery, from the
/// `ports` resource, container scope over IPv4 and IPv6, a bridge port mapping, a killed
/// task left out, the operator API's task names.
#[test]
fn task_records_of_the_fixtures() {
    let Some(dir) = shared_dir() else { return };
    let cases: &[(&str, &[&str])] = &[
        // The killed task with `1.2.3.4:5000` has no record.
        (
            "state/minuteman-named-base-vips.json",
            &[
                "catsmeow.marathon address 10.0.0.243",
                "catsmeow.marathon tcp 10.0.0.243:12049",
            ],
        ),
        // No discovery ports: the `ports` resource, as tcp and udp.
        (
            "state/minuteman-two-healthcheck-free-vips-state.json",
            &[
                "greg.marathon address 33.33.33.1",
                "greg.marathon tcp 33.33.33.1:31215",
                "greg.marathon tcp 33.33.33.1:31290",
                "greg.marathon udp 33.33.33.1:31215",
                "greg.marathon udp 33.33.33.1:31290",
                "tyler.marathon address 33.33.33.1",
                "tyler.marathon tcp 33.33.33.1:31362",
                "tyler.marathon tcp 33.33.33.1:31634",
                "tyler.marathon udp 33.33.33.1:31362",
                "tyler.marathon udp 33.33.33.1:31634",
            ],
        ),
        (
            "state/minuteman-overlay.json",
            &[
                "http-1.marathon address 9.0.1.130",
                "http-1.marathon tcp 9.0.1.130:80",
            ],
        ),
        (
            "state/dcos-net-state_ipv6.json",
            &[
                "foo.marathon address 12.0.1.4",
                "foo.marathon address fd01::1:8000:4",
                "foo.marathon tcp 12.0.1.4:80",
                "foo.marathon tcp [fd01::1:8000:4]:80",
            ],
        ),
        // Bridge mode: the container's address, the port mapped on the agent.
        (
            "state/dcos-net-ucr-bridge-mode-net-info.json",
            &[
                "foo.marathon address 172.31.254.2",
                "foo.marathon tcp 10.0.2.5:29025",
            ],
        ),
        (
            "operator-api/vip-labels.json",
            &[
                "app.marathon address 172.17.0.3",
                "app.marathon tcp 172.17.0.3:9999",
                "app.marathon tcp 172.17.0.3:10000",
                "app.marathon tcp 172.17.0.3:10001",
                "app.marathon tcp 172.17.0.3:10002",
            ],
        ),
        // Unhealthy still has its records (DNS says where a task is, not whether to use
        // it); container scope.
        (
            "operator-api/unhealthy.json",
            &[
                "app.marathon address 9.0.1.6",
                "app.marathon tcp 9.0.1.6:80",
            ],
        ),
    ];
    for (name, expected) in cases {
        let (_, extracted) = extract_file(&dir, name);
        assert_eq!(task_rows(&extracted), *expected, "{name}");
    }
}
