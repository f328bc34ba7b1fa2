//! `mesos_source::run` with `MesosSource::Subscribe` against a fake Mesos master on
//! 127.0.0.1 (raw HTTP/1.1, port 0): every connection is handed to the test, which sees the
//! request and then writes the answer step by step (a status, RecordIO records as HTTP
//! chunks, an end, or a dropped socket), so each step can wait for what it should cause.
//!
//! The `SUBSCRIBE` recordings in /work/shared/fixtures/mesos/operator-api (one JSON event
//! per line, without RecordIO framing: framed here) are read from there, never copied; the
//! tests that need them say so and pass when they are absent. The failure tests use a small
//! hand-written stream and always run.

use minuteman::mesos_source::{LocalServices, MesosConfig, MesosSource};
use minuteman_core::vip::{Protocol, Vip, VipAddr, VipSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod mesos_support;
use mesos_support::{Running, PATIENCE};
const FIXTURES: &str = "/work/shared/fixtures/mesos/operator-api";
const TOKEN: &str = "s3cret";

// ---- The fake master ----

/// What the test tells a connection to do next.
enum Step {
    /// Answer with this status and a short body, then close.
    Status(u16),
    /// The 200 head (chunked), nothing else yet.
    Head,
    /// One HTTP chunk (after the head, sent first if it was not).
    Chunk(Vec<u8>),
    /// The last chunk: the master ends the stream.
    End,
}

/// The request as the master read it.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One accepted connection. Dropping it drops the socket without ending the stream.
struct Conn {
    request: Request,
    steps: mpsc::UnboundedSender<Step>,
}

impl Conn {
    fn send(&self, step: Step) {
        self.steps.send(step).expect("the connection is gone");
    }

    /// One chunk holding these events, each framed as a RecordIO record.
    fn events<S: AsRef<str>>(&self, events: &[S]) {
        let mut chunk = Vec::new();
        for event in events {
            chunk.extend(framed(event.as_ref()));
        }
        self.send(Step::Chunk(chunk));
    }
}

struct Master {
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<Conn>,
    accepted: usize,
    task: JoinHandle<()>,
}

impl Master {
    async fn start() -> Master {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, tx.clone()));
            }
        });
        Master {
            addr,
            conns,
            accepted: 0,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// The next connection whose request has arrived.
    async fn next_conn(&mut self) -> Conn {
        let conn = tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("no connection came")
            .expect("the master stopped");
        self.accepted += 1;
        conn
    }

    /// Asserts that no new connection arrives for `quiet`.
    async fn no_conn_for(&mut self, quiet: Duration) {
        if let Ok(conn) = tokio::time::timeout(quiet, self.conns.recv()).await {
            panic!("an unexpected connection: {:?}", conn.map(|c| c.request));
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn framed(json: &str) -> Vec<u8> {
    let mut out = format!("{}\n", json.len()).into_bytes();
    out.extend(json.as_bytes());
    out
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&piece[..n]),
        }
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

async fn serve(mut stream: TcpStream, conns: mpsc::UnboundedSender<Conn>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let (tx, mut steps) = mpsc::unbounded_channel();
    if conns.send(Conn { request, steps: tx }).is_err() {
        return;
    }
    let mut head_sent = false;
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut scratch = [0u8; 512];
    loop {
        let step = tokio::select! {
            biased;
            // The client hung up (or sent something it should not): done.
            _ = stream.read(&mut scratch) => return,
            step = steps.recv() => step,
        };
        let mut out = Vec::new();
        let last = match step {
            // The test dropped the connection: cut it, no final chunk.
            None => return,
            Some(Step::Status(code)) => {
                let body = b"{\"error\":\"no\"}";
                out.extend(
                    format!(
                        "HTTP/1.1 {code} Nope\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .bytes(),
                );
                out.extend(body);
                true
            }
            Some(Step::Head) => false,
            Some(Step::Chunk(bytes)) => {
                out.extend(format!("{:x}\r\n", bytes.len()).bytes());
                out.extend(bytes);
                out.extend(b"\r\n");
                false
            }
            Some(Step::End) => {
                out.extend(b"0\r\n\r\n");
                true
            }
        };
        let is_status = out.starts_with(b"HTTP/");
        if !head_sent && !is_status {
            out.splice(0..0, head.iter().copied());
        }
        head_sent = true;
        if stream.write_all(&out).await.is_err() || last {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

// ---- Running the source ----

fn config(url: String, agent: IpAddr, timeout: Duration) -> MesosConfig {
    let mut cfg = MesosConfig::new(
        MesosSource::Subscribe {
            url,
            auth_token: Some(TOKEN.into()),
            ca_file: None,
            timeout,
        },
        agent,
    );
    cfg.poll_interval = Duration::from_millis(20);
    cfg.max_backoff = Duration::from_millis(80);
    cfg
}

/// Every backend: (VIP, backend ip, port, agent, weight).
fn backends(services: &VipSet) -> Vec<(String, IpAddr, u16, IpAddr, u32)> {
    services
        .vips
        .iter()
        .flat_map(|(vip, backends)| {
            backends
                .iter()
                .map(move |b| (vip.to_string(), b.ip, b.port, b.agent, b.weight))
        })
        .collect()
}

// ---- A hand-written stream ----

const AGENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));

fn task(id: &str, agent: &str, port: u16) -> String {
    format!(
        r#"{{"task_id":{{"value":"{id}"}},"framework_id":{{"value":"F"}},"agent_id":{{"value":"{agent}"}},"state":"TASK_RUNNING","discovery":{{"ports":{{"ports":[{{"number":{port},"protocol":"tcp","labels":{{"labels":[{{"key":"VIP_0","value":"10.1.2.3:5000"}}]}}}}]}}}}}}"#
    )
}

/// Agents S9 (10.0.0.9, this host) and S8 (10.0.0.8); `ports` are this host's tasks, and
/// one task runs on S8.
fn subscribed(ports: &[u16], heartbeat_seconds: f64) -> String {
    let mut tasks: Vec<String> = ports
        .iter()
        .map(|p| task(&format!("web.{p}"), "S9", *p))
        .collect();
    tasks.push(task("other", "S8", 31999));
    format!(
        r#"{{"type":"SUBSCRIBED","subscribed":{{"get_state":{{"get_agents":{{"agents":[
          {{"agent_info":{{"id":{{"value":"S9"}},"hostname":"10.0.0.9"}},"pid":"slave(1)@10.0.0.9:5051"}},
          {{"agent_info":{{"id":{{"value":"S8"}},"hostname":"10.0.0.8"}},"pid":"slave(1)@10.0.0.8:5051"}}]}},
          "get_frameworks":{{"frameworks":[{{"framework_info":{{"id":{{"value":"F"}},"name":"marathon"}}}}]}},
          "get_tasks":{{"tasks":[{}]}}}},"heartbeat_interval_seconds":{heartbeat_seconds}}}}}"#,
        tasks.join(",")
    )
    .replace('\n', "")
}

const HEARTBEAT: &str = r#"{"type":"HEARTBEAT"}"#;

/// This host's backends on VIP 10.1.2.3:5000, as (port, weight).
fn ports(services: &VipSet) -> Vec<(u16, u32)> {
    let vip = Vip {
        protocol: Protocol::Tcp,
        addr: VipAddr::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        port: 5000,
    };
    let all = backends(services);
    assert!(
        all.iter().all(|b| b.3 == AGENT && b.1 == AGENT),
        "another agent's backend: {all:?}"
    );
    services
        .vips
        .get(&vip)
        .map(|b| b.iter().map(|b| (b.port, b.weight)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_request_is_a_subscribe_post_with_the_token() {
    let mut master = Master::start().await;
    let mut running = Running::start(config(master.url(), AGENT, PATIENCE));
    let conn = master.next_conn().await;
    let request = &conn.request;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/v1");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&request.body).unwrap(),
        serde_json::json!({"type": "SUBSCRIBE"})
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("token={TOKEN}").as_str())
    );
    assert_eq!(running.metrics.mesos_polls.get(), 1);

    // Nothing before SUBSCRIBED; then this host's task only (not S8's).
    conn.send(Step::Head);
    conn.events(&[HEARTBEAT]);
    running.wait_failures("parse", 1).await;
    running.nothing_new();
    let conn = master.next_conn().await;
    conn.events(&[subscribed(&[31000], 15.0)]);
    let first = running.next().await;
    assert_eq!(first.agents, [AGENT]);
    assert_eq!(ports(&first.services), [(31000, 1)]);
    assert_eq!(running.metrics.mesos_changes.get(), 1);
    running.stop().await;
}

#[tokio::test]
async fn every_failure_keeps_the_last_good_state_and_reconnects() {
    let mut master = Master::start().await;
    let mut cfg = config(master.url(), AGENT, PATIENCE);
    cfg.max_state_bytes = 64 << 10;
    let mut running = Running::start(cfg);

    let conn = master.next_conn().await;
    conn.events(&[subscribed(&[31000], 15.0)]);
    assert_eq!(ports(&running.next().await.services), [(31000, 1)]);
    let garbage = || Step::Chunk(framed("this is not json"));
    conn.send(garbage());
    running.wait_failures("parse", 1).await;
    running.nothing_new();
    let mut expected = std::collections::BTreeMap::from([("parse", 1)]);

    // (what the master does, the failure it is, whether SUBSCRIBED comes first)
    let cases: Vec<(Step, &'static str, bool)> = vec![
        (garbage(), "parse", true),
        (garbage(), "parse", false),
        (Step::Status(503), "status", false),
        (Step::Chunk(b"999999999\n".to_vec()), "too_large", true),
        (Step::Chunk(b"12x\n".to_vec()), "parse", true),
        (Step::End, "http", true),
        (Step::End, "http", false),
    ];
    for (step, reason, after_subscribed) in cases {
        let conn = master.next_conn().await;
        if after_subscribed {
            // Same state again: a resync that changes nothing publishes nothing.
            conn.events(&[subscribed(&[31000], 15.0)]);
        }
        conn.send(step);
        let count = expected.entry(reason).or_default();
        *count += 1;
        running.wait_failures(reason, *count).await;
        running.nothing_new();
        assert_eq!(ports(&running.current()), [(31000, 1)]);
    }
    // A dropped socket mid-record: the same as a broken body.
    let conn = master.next_conn().await;
    conn.events(&[subscribed(&[31000], 15.0)]);
    conn.send(Step::Chunk(b"500\n{\"type\":".to_vec()));
    drop(conn);
    running.wait_failures("http", 3).await;
    running.nothing_new();
    assert_eq!(ports(&running.current()), [(31000, 1)]);

    // Recovery: a new state is published.
    let conn = master.next_conn().await;
    conn.events(&[subscribed(&[31000, 31001], 15.0)]);
    assert_eq!(
        ports(&running.next().await.services),
        [(31000, 1), (31001, 1)]
    );
    // Each failure counted once, under its reason.
    *expected.entry("http").or_default() += 1;
    for (reason, count) in &expected {
        assert_eq!(running.failures(reason), *count, "{reason}");
    }
    assert_eq!(running.total_failures(), 9);
    assert_eq!(running.metrics.mesos_changes.get(), 2);
    let polls = running.metrics.mesos_polls.get();
    assert!(
        polls >= master.accepted as u64 && polls <= master.accepted as u64 + 1,
        "{polls} attempts for {} connections",
        master.accepted
    );
    running.stop().await;
}

#[tokio::test]
async fn a_refused_connection_is_an_http_failure_with_backoff() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let running = Running::start(config(
        format!("http://{addr}/api/v1"),
        AGENT,
        Duration::from_secs(1),
    ));
    running.wait_failures("http", 2).await;
    running.nothing_new();
    assert!(running.rx.borrow().is_none());
    // Every 20 ms would be 20 attempts in 400 ms; the backoff (40 ms, then the 80 ms cap,
    // ±10%) allows about 5.
    let polls = running.metrics.mesos_polls.get();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let during = running.metrics.mesos_polls.get() - polls;
    assert!(during <= 8, "{during} attempts in 400 ms");
    running.stop().await;
}

#[tokio::test]
async fn silence_ends_the_connection_but_heartbeats_keep_it() {
    let mut master = Master::start().await;
    let timeout = Duration::from_millis(300);
    let mut running = Running::start(config(master.url(), AGENT, timeout));

    // No answer at all, then a head without SUBSCRIBED: both time out.
    let silent = master.next_conn().await;
    running.wait_failures("timeout", 1).await;
    drop(silent);
    let headed = master.next_conn().await;
    headed.send(Step::Head);
    running.wait_failures("timeout", 2).await;
    drop(headed);

    // Subscribed with a 0.2 s heartbeat: alive as long as heartbeats come (1.5 s here, far
    // past the 0.6 s limit), dead 3 intervals after they stop.
    let conn = master.next_conn().await;
    conn.events(&[subscribed(&[31000], 0.2)]);
    assert_eq!(ports(&running.next().await.services), [(31000, 1)]);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.events(&[HEARTBEAT]);
    }
    let last_heartbeat = Instant::now();
    assert_eq!(
        running.failures("timeout"),
        2,
        "a heartbeat stream timed out"
    );
    master.no_conn_for(Duration::from_millis(50)).await;
    running.wait_failures("timeout", 3).await;
    assert!(
        last_heartbeat.elapsed() >= Duration::from_millis(500),
        "timed out {:?} after the last heartbeat",
        last_heartbeat.elapsed()
    );
    assert_eq!(running.total_failures(), 3);
    running.nothing_new();
    assert_eq!(ports(&running.current()), [(31000, 1)]);
    let conn = master.next_conn().await;
    running.stop().await;
    drop(conn);
}

#[tokio::test]
async fn shutdown_mid_stream_returns_promptly() {
    let mut master = Master::start().await;
    let mut running = Running::start(config(master.url(), AGENT, PATIENCE));
    let conn = master.next_conn().await;
    conn.events(&[subscribed(&[31000], 15.0)]);
    running.next().await;
    let stopping = Instant::now();
    running.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(1));
    drop(conn);
}

// ---- The recordings ----

/// The events of a recording, one per line; `None` (with a message) when absent.
fn recording(name: &str) -> Option<Vec<String>> {
    let path = Path::new(FIXTURES).join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Err(e) => {
            eprintln!(
                "skipped: the shared SUBSCRIBE recording {} is not readable ({e})",
                path.display()
            );
            None
        }
    }
}

const API: &str = "tcp api.hello-world.marathon:80";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// docs/mesos-vips.md: `hello-world` yields `/api.hello-world:80` (framework marathon). On
/// 172.17.0.4 its first task runs (port 21872), drains (TASK_KILLING, weight 0) and dies;
/// on 172.17.0.3 a new one starts (port 12964), runs, drains and dies. Each host sees its
/// own and never the other's.
#[tokio::test]
async fn hello_world_as_each_agent_sees_it() {
    let Some(events) = recording("hello-world.json") else {
        return;
    };
    assert_eq!(events.len(), 13);

    let four = ip("172.17.0.4");
    let mut master = Master::start().await;
    let mut running = Running::start(config(master.url(), four, PATIENCE));
    let conn = master.next_conn().await;
    conn.events(&events[..1]);
    assert_eq!(
        backends(&running.next().await.services),
        [(API.into(), four, 21872, four, 1)]
    );
    conn.events(&events[1..2]);
    assert_eq!(
        backends(&running.next().await.services),
        [(API.into(), four, 21872, four, 0)]
    );
    conn.events(&events[2..]);
    assert!(running.next().await.services.is_empty());
    // The rest concerns 172.17.0.3 only: once the stream is read to its end, nothing more
    // was published.
    conn.send(Step::End);
    running.wait_failures("http", 1).await;
    running.nothing_new();
    assert_eq!(running.metrics.mesos_changes.get(), 3);
    assert_eq!(running.total_failures(), 1);
    running.stop().await;
    drop(conn);

    // A fresh master: the first one may hold the first source's reconnection.
    let three = ip("172.17.0.3");
    let mut master = Master::start().await;
    let mut running = Running::start(config(master.url(), three, PATIENCE));
    let conn = master.next_conn().await;
    conn.events(&events[..1]);
    assert!(
        running.next().await.services.is_empty(),
        "172.17.0.4's task leaked"
    );
    conn.events(&events[1..7]);
    assert_eq!(
        backends(&running.next().await.services),
        [(API.into(), three, 12964, three, 1)]
    );
    conn.events(&events[7..12]);
    assert_eq!(
        backends(&running.next().await.services),
        [(API.into(), three, 12964, three, 0)]
    );
    conn.events(&events[12..]);
    assert!(running.next().await.services.is_empty());
    assert_eq!(running.metrics.mesos_changes.get(), 4);
    assert_eq!(running.total_failures(), 0);
    running.stop().await;
}

/// A dropped connection is followed by a reconnect whose SUBSCRIBED resyncs: the task
/// started on 172.17.0.3 during the first connection is not in the recording's SUBSCRIBED,
/// so after the second SUBSCRIBED it is gone. Until then, the last good state stays.
#[tokio::test]
async fn a_reconnect_resyncs_from_subscribed() {
    let Some(events) = recording("hello-world.json") else {
        return;
    };
    let three = ip("172.17.0.3");
    let mut master = Master::start().await;
    let mut running = Running::start(config(master.url(), three, PATIENCE));
    let conn = master.next_conn().await;
    conn.events(&events[..1]);
    assert!(running.next().await.services.is_empty());
    conn.events(&events[1..7]);
    let running_task = [(API.to_string(), three, 12964, three, 1)];
    assert_eq!(backends(&running.next().await.services), running_task);

    drop(conn);
    running.wait_failures("http", 1).await;
    let conn = master.next_conn().await;
    running.nothing_new();
    assert_eq!(backends(&running.current()), running_task);
    // Events of the old connection make no sense before this one's SUBSCRIBED...
    conn.events(&events[7..8]);
    running.wait_failures("parse", 1).await;
    running.nothing_new();
    // ...which replaces everything.
    let conn = master.next_conn().await;
    conn.events(&events[..1]);
    assert!(running.next().await.services.is_empty());
    assert_eq!(running.metrics.mesos_changes.get(), 3);
    assert!(running.metrics.mesos_polls.get() >= 3);
    running.stop().await;
    drop(conn);
}

/// recovered-agents: a master that took over lists the agent only as recovered (no
/// tasks known) in SUBSCRIBED; it re-registers (AGENT_ADDED) and then runs `/web:10080` on
/// host port 16424. The services the agent saved before stay until the agent has
/// re-registered: the new master's empty list for it means "unknown", not "all gone".
#[tokio::test]
async fn recovered_agents_as_the_agent_sees_it() {
    let Some(events) = recording("recovered-agents.json") else {
        return;
    };
    assert_eq!(events.len(), 9);
    let four = ip("172.17.0.4");
    let mut saved = VipSet::new();
    saved.insert(
        Vip {
            protocol: Protocol::Tcp,
            addr: VipAddr::Named("web.marathon".into()),
            port: 10080,
        },
        minuteman_core::vip::Backend {
            ip: four,
            port: 16000,
            agent: four,
            weight: 1,
        },
    );
    let seed = LocalServices {
        agents: vec![four],
        services: saved.into(),
        tasks: Default::default(),
    };
    let mut master = Master::start().await;
    let mut running = Running::start_with(config(master.url(), four, PATIENCE), Some(seed));
    let conn = master.next_conn().await;
    // SUBSCRIBED and a HEARTBEAT: nothing to publish. (Were the empty set published, it
    // would show here on any machine that runs the source within a second.)
    conn.events(&events[..1]);
    conn.events(&events[1..2]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.nothing_new();
    // Then one event per chunk, as a master sends them (the reader may see them merged):
    // the re-registered agent's list, empty at first, then its running task.
    for event in &events[2..] {
        conn.events(&[event]);
    }
    let start = Instant::now();
    loop {
        let now = running.next().await;
        if !now.services.is_empty() {
            assert_eq!(
                backends(&now.services),
                [("tcp web.marathon:10080".into(), four, 16424, four, 1)]
            );
            break;
        }
        assert!(start.elapsed() < PATIENCE);
    }
    assert_eq!(running.total_failures(), 0);
    running.stop().await;
    drop(conn);
}
