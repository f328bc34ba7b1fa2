//! The session on hand-written streams (every rule, any chunking) and, when the shared
//! recordings are present, on every `SUBSCRIBE` fixture against an oracle: the core's
//! extraction of the whole state, keeping the backends whose agent is this host.

use super::*;
use minuteman_core::mesos::recordio::encode;
use minuteman_core::mesos::{extract_state, ExtractOptions};
use minuteman_core::vip::{Backends, VipSet};
use std::path::Path;

const ONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
const TWO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
const FIXTURES: &str = "/work/shared/fixtures/mesos/operator-api";

fn task(id: &str, agent: &str, port: u16) -> String {
    format!(
        r#"{{"task_id":{{"value":"{id}"}},"framework_id":{{"value":"F"}},"agent_id":{{"value":"{agent}"}},"state":"TASK_RUNNING","discovery":{{"ports":{{"ports":[{{"number":{port},"protocol":"tcp","labels":{{"labels":[{{"key":"VIP_0","value":"10.1.2.3:80"}}]}}}}]}}}}}}"#
    )
}

fn agent(id: &str, ip: &str) -> String {
    format!(
        r#"{{"agent_info":{{"id":{{"value":"{id}"}},"hostname":"{ip}"}},"pid":"slave(1)@{ip}:5051"}}"#
    )
}

/// SUBSCRIBED: agents S1 (10.0.0.1) and S2 (10.0.0.2), task `a` on S1, `b` on S2.
fn subscribed(heartbeat: &str) -> String {
    format!(
        r#"{{"type":"SUBSCRIBED","subscribed":{{"get_state":{{"get_agents":{{"agents":[{},{}]}},"get_frameworks":{{"frameworks":[{{"framework_info":{{"id":{{"value":"F"}},"name":"marathon"}}}}]}},"get_tasks":{{"tasks":[{},{}]}}}}{heartbeat}}}}}"#,
        agent("S1", "10.0.0.1"),
        agent("S2", "10.0.0.2"),
        task("a", "S1", 31001),
        task("b", "S2", 31002)
    )
}

fn updated(id: &str, state: &str) -> String {
    format!(
        r#"{{"type":"TASK_UPDATED","task_updated":{{"framework_id":{{"value":"F"}},"state":"{state}","status":{{"task_id":{{"value":"{id}"}},"state":"{state}"}}}}}}"#
    )
}

const HEARTBEAT: &str = r#"{"type":"HEARTBEAT"}"#;

/// (port, weight) of every backend.
fn backends(good: &Good) -> Vec<(u16, u32)> {
    good.services
        .vips
        .values()
        .flat_map(|b| b.iter().map(|b| (b.port, b.weight)))
        .collect()
}

fn feed_one(session: &mut Session, json: &str) -> Result<Fed, PollError> {
    session.feed(&encode(json.as_bytes()))
}

#[test]
fn follows_this_hosts_tasks_and_ignores_the_rest() {
    let mut s = Session::new(ONE, StreamLimits::default());
    s.reconnect();
    assert!(!s.is_subscribed());

    let fed = feed_one(&mut s, &subscribed(r#","heartbeat_interval_seconds":0.5"#)).unwrap();
    assert!(fed.subscribed);
    assert_eq!(backends(&fed.derived.unwrap()), [(31001, 1)]);
    assert_eq!(s.heartbeat(), Duration::from_millis(500));
    assert_eq!(s.silence_limit(), Duration::from_millis(1500));
    assert_eq!(s.local_agents(), ["S1"]);
    let mut other = Session::new(TWO, StreamLimits::default());
    other.reconnect();
    let fed = feed_one(&mut other, &subscribed("")).unwrap();
    assert_eq!(backends(&fed.derived.unwrap()), [(31002, 1)]);

    // Another agent's task, a heartbeat: nothing to derive.
    for json in [updated("b", "TASK_KILLING"), HEARTBEAT.to_string()] {
        let fed = feed_one(&mut s, &json).unwrap();
        assert!(!fed.subscribed);
        assert!(fed.derived.is_none(), "{json}");
    }
    // An update of an unknown task changes nothing either.
    assert!(feed_one(&mut s, &updated("zzz", "TASK_RUNNING"))
        .unwrap()
        .derived
        .is_none());

    // This host's task drains, then a new one arrives on this host, then one elsewhere.
    let fed = feed_one(&mut s, &updated("a", "TASK_KILLING")).unwrap();
    assert_eq!(backends(&fed.derived.unwrap()), [(31001, 0)]);
    let added = |id: &str, agent: &str, port: u16| {
        format!(
            r#"{{"type":"TASK_ADDED","task_added":{{"task":{}}}}}"#,
            task(id, agent, port)
        )
    };
    let fed = feed_one(&mut s, &added("c", "S1", 31003)).unwrap();
    assert_eq!(backends(&fed.derived.unwrap()), [(31001, 0), (31003, 1)]);
    assert!(feed_one(&mut s, &added("d", "S2", 31004))
        .unwrap()
        .derived
        .is_none());

    // Another agent leaving changes nothing here; this host's agent leaving empties it.
    let removed = |id: &str| {
        format!(r#"{{"type":"AGENT_REMOVED","agent_removed":{{"agent_id":{{"value":"{id}"}}}}}}"#)
    };
    assert!(feed_one(&mut s, &removed("S2")).unwrap().derived.is_none());
    let fed = feed_one(&mut s, &removed("S1")).unwrap();
    assert!(fed.derived.unwrap().services.is_empty());
    assert!(s.local_agents().is_empty());

    // It comes back under a new id: local again (its tasks left with the old id).
    let back = format!(
        r#"{{"type":"AGENT_ADDED","agent_added":{{"agent":{}}}}}"#,
        agent("S1b", "10.0.0.1")
    );
    let fed = feed_one(&mut s, &back).unwrap();
    assert!(fed.derived.unwrap().services.is_empty());
    assert_eq!(s.local_agents(), ["S1b"]);
    let fed = feed_one(&mut s, &added("e", "S1b", 31005)).unwrap();
    assert_eq!(backends(&fed.derived.unwrap()), [(31005, 1)]);
}

#[test]
fn nothing_counts_before_subscribed_and_a_reconnect_waits_for_the_next() {
    let mut s = Session::new(ONE, StreamLimits::default());
    s.reconnect();
    let err = feed_one(&mut s, HEARTBEAT).unwrap_err();
    assert_eq!(err.reason, Reason::Parse);
    assert!(
        err.detail.contains("HEARTBEAT before SUBSCRIBED"),
        "{err:?}"
    );

    s.reconnect();
    feed_one(&mut s, &subscribed("")).unwrap();
    assert_eq!(s.heartbeat(), DEFAULT_HEARTBEAT, "absent: Mesos' default");
    assert_eq!(s.silence_limit(), Duration::from_secs(45));
    s.reconnect();
    assert!(!s.is_subscribed());
    assert!(feed_one(&mut s, &updated("a", "TASK_KILLING")).is_err());
}

#[test]
fn bad_records_and_framing_fail_the_connection() {
    let limits = StreamLimits {
        max_record_size: 4096,
        ..StreamLimits::default()
    };
    let subscribed_session = || {
        let mut s = Session::new(ONE, limits.clone());
        s.reconnect();
        feed_one(&mut s, &subscribed("")).unwrap();
        s
    };
    let cases: [(&[u8], Reason); 6] = [
        (b"5\nhello", Reason::Parse),
        (b"0\n", Reason::Parse),
        (b"2\n{}", Reason::Parse),
        (b"x\n", Reason::Parse),
        (b"\n", Reason::Parse),
        (b"99999\n", Reason::TooLarge),
    ];
    for (bytes, reason) in cases {
        let err = subscribed_session().feed(bytes).unwrap_err();
        assert_eq!(
            err.reason,
            reason,
            "{:?}: {err:?}",
            String::from_utf8_lossy(bytes)
        );
    }

    // A record cut short is only incomplete, until the rest arrives and does not parse.
    let mut s = subscribed_session();
    let framed = encode(br#"{"type":"TASK_ADDED","task_added""#);
    let (head, tail) = framed.split_at(framed.len() - 1);
    assert!(s.feed(head).unwrap().derived.is_none());
    assert_eq!(s.feed(tail).unwrap_err().reason, Reason::Parse);

    // A good event before the bad one in the same chunk: still a failed chunk.
    let mut s = subscribed_session();
    let mut chunk = encode(updated("a", "TASK_KILLING").as_bytes());
    chunk.extend(b"3\nxyz");
    assert_eq!(s.feed(&chunk).unwrap_err().reason, Reason::Parse);

    // A state document is not an event.
    let mut s = Session::new(ONE, limits);
    s.reconnect();
    let err = s.feed(&encode(br#"{"frameworks":[]}"#)).unwrap_err();
    assert!(err.detail.contains("agent /state"), "{err:?}");
}

/// A master that took over: S1 (this host, 10.0.0.1) is only recovered, S2 registered.
fn subscribed_after_failover() -> String {
    format!(
        r#"{{"type":"SUBSCRIBED","subscribed":{{"get_state":{{"get_agents":{{"agents":[{}],"recovered_agents":[{{"id":{{"value":"S1"}},"hostname":"10.0.0.1"}}]}},"get_frameworks":{{"frameworks":[{{"framework_info":{{"id":{{"value":"F"}},"name":"marathon"}}}}]}},"get_tasks":{{"tasks":[{}]}}}}}}}}"#,
        agent("S2", "10.0.0.2"),
        task("b", "S2", 31002)
    )
}

#[test]
fn an_agent_the_new_master_has_not_heard_from_is_unknown_not_empty() {
    let mut s = Session::new(ONE, StreamLimits::default());
    s.reconnect();
    let fed = feed_one(&mut s, &subscribed_after_failover()).unwrap();
    assert!(fed.subscribed);
    assert!(
        fed.derived.is_none(),
        "published an empty set for an unknown agent"
    );
    assert_eq!(s.local_agents(), ["S1"]);
    assert!(s.is_waiting_for_agent());
    // Framework events and other agents' news do not end the wait.
    let framework = r#"{"type":"FRAMEWORK_UPDATED","framework_updated":{"framework":{"framework_info":{"id":{"value":"F"},"name":"marathon"}}}}"#;
    assert!(feed_one(&mut s, framework).unwrap().derived.is_none());
    // It re-registers: its (so far empty) task list is now the truth.
    let back = format!(
        r#"{{"type":"AGENT_ADDED","agent_added":{{"agent":{}}}}}"#,
        agent("S1", "10.0.0.1")
    );
    let fed = feed_one(&mut s, &back).unwrap();
    assert!(!s.is_waiting_for_agent());
    assert!(fed.derived.unwrap().services.is_empty());
    let added = format!(
        r#"{{"type":"TASK_ADDED","task_added":{{"task":{}}}}}"#,
        task("a", "S1", 31001)
    );
    assert_eq!(
        backends(&feed_one(&mut s, &added).unwrap().derived.unwrap()),
        [(31001, 1)]
    );

    // Removed instead of re-registering: Mesos says it is gone, and so are its tasks.
    let mut s = Session::new(ONE, StreamLimits::default());
    s.reconnect();
    feed_one(&mut s, &subscribed_after_failover()).unwrap();
    let removed = r#"{"type":"AGENT_REMOVED","agent_removed":{"agent_id":{"value":"S1"}}}"#;
    let fed = feed_one(&mut s, removed).unwrap();
    assert!(fed.derived.unwrap().services.is_empty());
    assert!(!s.is_waiting_for_agent());

    // The other agent's host is not waiting, and a later SUBSCRIBED that lists S1 as
    // registered ends the wait too.
    let mut other = Session::new(TWO, StreamLimits::default());
    other.reconnect();
    let fed = feed_one(&mut other, &subscribed_after_failover()).unwrap();
    assert_eq!(backends(&fed.derived.unwrap()), [(31002, 1)]);
    let mut s = Session::new(ONE, StreamLimits::default());
    s.reconnect();
    feed_one(&mut s, &subscribed_after_failover()).unwrap();
    s.reconnect();
    let fed = feed_one(&mut s, &subscribed("")).unwrap();
    assert_eq!(backends(&fed.derived.unwrap()), [(31001, 1)]);
}

#[test]
fn chunking_does_not_matter() {
    let mut stream = Vec::new();
    for json in [
        subscribed(""),
        HEARTBEAT.to_string(),
        updated("b", "TASK_KILLED"),
        updated("a", "TASK_KILLING"),
    ] {
        stream.extend(encode(json.as_bytes()));
    }
    let mut whole = Session::new(ONE, StreamLimits::default());
    whole.reconnect();
    let at_once = whole.feed(&stream).unwrap();
    assert!(at_once.subscribed);
    let at_once = at_once.derived.unwrap();
    assert_eq!(backends(&at_once), [(31001, 0)]);

    let mut bytes = Session::new(ONE, StreamLimits::default());
    bytes.reconnect();
    let mut last = None;
    for byte in &stream {
        if let Some(good) = bytes.feed(std::slice::from_ref(byte)).unwrap().derived {
            last = Some(good);
        }
    }
    assert_eq!(last.unwrap(), at_once);
    assert_eq!(bytes.stream.state(), whole.stream.state());
}

#[test]
fn heartbeat_intervals_are_read_and_clamped() {
    let of = |json: &str| heartbeat_of(json.as_bytes());
    let sub = |hb: &str| {
        format!(r#"{{"type":"SUBSCRIBED","subscribed":{{"heartbeat_interval_seconds":{hb}}}}}"#)
    };
    assert_eq!(of(&sub("15.0")), Duration::from_secs(15));
    assert_eq!(of(&sub("0.25")), Duration::from_millis(250));
    assert_eq!(of(&sub("0")), DEFAULT_HEARTBEAT);
    assert_eq!(of(&sub("-3")), DEFAULT_HEARTBEAT);
    assert_eq!(of(&sub("\"15\"")), DEFAULT_HEARTBEAT);
    assert_eq!(of(&sub("1e-9")), Duration::from_millis(10));
    assert_eq!(of(&sub("1e300")), Duration::from_secs(300));
    assert_eq!(
        of(r#"{"type":"SUBSCRIBED","subscribed":{}}"#),
        DEFAULT_HEARTBEAT
    );
}

// ---- The recordings, against an oracle ----

/// The oracle: the core's extraction of the whole state (agent addresses by the core's
/// own resolution), keeping only the backends whose agent is `ip`.
fn oracle(session: &Session, ip: IpAddr) -> VipSet {
    let all = extract_state(session.stream.state(), &ExtractOptions::default());
    VipSet {
        vips: all
            .vips
            .vips
            .into_iter()
            .filter_map(|(vip, backends)| {
                let mine: Vec<_> = backends.iter().filter(|b| b.agent == ip).copied().collect();
                (!mine.is_empty()).then(|| (vip, Backends::from(mine)))
            })
            .collect(),
    }
}

#[test]
fn every_recorded_stream_matches_the_oracle_event_by_event() {
    let names = [
        "hello-world.json",
        "recovered-agents.json",
        "operator-api.json",
        "pod-tasks.json",
    ];
    let dir = Path::new(FIXTURES);
    if !names.iter().all(|n| dir.join(n).is_file()) {
        eprintln!("skipped: the shared SUBSCRIBE recordings are not in {FIXTURES}");
        return;
    }
    let agents: [IpAddr; 3] = [
        "172.17.0.3".parse().unwrap(),
        "172.17.0.4".parse().unwrap(),
        "10.9.9.9".parse().unwrap(),
    ];
    // Proof that the comparison is not vacuous.
    let (mut non_empty, mut skipped, mut derived, mut waited) = (0, 0, 0, 0);
    for name in names {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let events: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for ip in agents {
            let mut s = Session::new(ip, StreamLimits::default());
            s.reconnect();
            let mut published: Option<VipSet> = None;
            for (i, event) in events.iter().enumerate() {
                let fed = feed_one(&mut s, event)
                    .unwrap_or_else(|e| panic!("{name} event {i} for {ip}: {e:?}"));
                if s.is_waiting_for_agent() {
                    // The oracle does not know about recovered agents: nothing to compare.
                    assert!(fed.derived.is_none(), "{name} event {i} for {ip}");
                    waited += 1;
                    continue;
                }
                match fed.derived {
                    Some(good) => {
                        derived += 1;
                        published = Some(good.services);
                    }
                    None => skipped += 1,
                }
                let expected = oracle(&s, ip);
                non_empty += usize::from(!expected.is_empty());
                assert_eq!(
                    published.as_ref(),
                    Some(&expected),
                    "{name} after event {i} for agent {ip}"
                );
            }
        }
    }
    // hello-world: 2 events with a backend on 172.17.0.4, 6 on 172.17.0.3;
    // recovered-agents: 1.
    assert!(non_empty >= 9, "only {non_empty} non-empty expectations");
    assert!(
        skipped >= 20,
        "only {skipped} events skipped: the filter filters nothing"
    );
    assert!(derived >= 10, "only {derived} derivations");
    // recovered-agents on 172.17.0.4: SUBSCRIBED and the HEARTBEAT before AGENT_ADDED.
    assert_eq!(waited, 2);
}
