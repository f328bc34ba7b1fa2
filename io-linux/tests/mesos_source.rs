//! `mesos_source::run` against a local HTTP server (raw HTTP/1.1 on 127.0.0.1, port 0, so
//! every answer can be shaped: a state, garbage, a 500, a hang, an oversized or chunked
//! body) and against a state file, in real time with short intervals.
//!
//! The shared recordings in /work/shared/fixtures/mesos are read from there (never copied);
//! the test that needs them says so and passes when they are absent.

use minuteman::mesos_source::{LocalServices, MesosConfig, MesosSource};
use minuteman_core::vip::{Backend, Protocol, Vip, VipAddr, VipSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

mod mesos_support;
use mesos_support::{Running, PATIENCE};
const AGENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
const FIXTURES: &str = "/work/shared/fixtures/mesos";

/// An agent state with one running task, port `port`, labelled VIP_0 = 10.1.2.3:5000 and
/// VIP_1 = /web:80.
fn state(port: u16) -> String {
    format!(
        r#"{{
  "id": "A1-S0",
  "pid": "slave(1)@10.0.0.9:5051",
  "hostname": "10.0.0.9",
  "flags": {{"port": "5051"}},
  "frameworks": [{{
    "id": "F1-0000",
    "name": "marathon",
    "executors": [{{
      "id": "web.1",
      "tasks": [{{
        "id": "web.1",
        "name": "web",
        "state": "TASK_RUNNING",
        "framework_id": "F1-0000",
        "resources": {{"ports": "[{port}-{port}]"}},
        "discovery": {{
          "name": "web",
          "visibility": "FRAMEWORK",
          "ports": {{"ports": [{{
            "number": {port},
            "protocol": "tcp",
            "labels": {{"labels": [
              {{"key": "VIP_0", "value": "10.1.2.3:5000"}},
              {{"key": "VIP_1", "value": "/web:80"}}
            ]}}
          }}]}}
        }},
        "statuses": [{{
          "state": "TASK_RUNNING",
          "timestamp": 1.0,
          "container_status": {{"network_infos": [{{"ip_addresses": [{{"ip_address": "10.0.0.9"}}]}}]}}
        }}]
      }}]
    }}]
  }}]
}}"#
    )
}

/// The IP VIP's backends in `services` (the named VIP's address is the core's business).
fn ip_vip_backends(services: &VipSet) -> Vec<(IpAddr, u16, IpAddr, u32)> {
    let vip = Vip {
        protocol: Protocol::Tcp,
        addr: VipAddr::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        port: 5000,
    };
    services
        .vips
        .get(&vip)
        .map(|b| {
            b.iter()
                .map(|b| (b.ip, b.port, b.agent, b.weight))
                .collect()
        })
        .unwrap_or_default()
}

fn check_state(services: &LocalServices, port: u16) {
    assert_eq!(services.agents, [AGENT]);
    assert_eq!(
        ip_vip_backends(&services.services),
        [(AGENT, port, AGENT, 1)]
    );
    let named: Vec<_> = services
        .services
        .vips
        .keys()
        .filter_map(|v| match &v.addr {
            VipAddr::Named(name) => Some((name.clone(), v.port)),
            VipAddr::Ip(_) => None,
        })
        .collect();
    assert_eq!(named, [("web.marathon".to_string(), 80)]);
}

// ---- A scriptable HTTP/1.1 server ----

#[derive(Clone)]
enum Answer {
    /// 200 with this body and a Content-Length.
    Body(Vec<u8>),
    /// 200 with this body, chunked in pieces of 1 KiB, without a Content-Length.
    Chunked(Vec<u8>),
    /// This status, a short body.
    Status(u16),
    /// Read the request, never answer.
    Hang,
}

#[derive(Default)]
struct Seen {
    requests: usize,
    authorization: Option<String>,
}

struct Server {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (a, s) = (answer.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let answer = a.lock().unwrap().clone();
                tokio::spawn(serve(stream, answer, s.clone()));
            }
        });
        Server {
            addr,
            answer,
            seen,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/state", self.addr)
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().requests
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, answer: Answer, seen: Arc<Mutex<Seen>>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    {
        let text = String::from_utf8_lossy(&request);
        let mut seen = seen.lock().unwrap();
        seen.requests += 1;
        seen.authorization = text
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("authorization")
                    .then(|| value.trim().to_string())
            })
            .or(seen.authorization.take());
    }
    let head = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}\r\n")
    };
    let mut out = Vec::new();
    match answer {
        Answer::Body(body) => {
            out.extend(head("200 OK", &format!("Content-Length: {}\r\n", body.len())).bytes());
            out.extend(body);
        }
        Answer::Chunked(body) => {
            out.extend(head("200 OK", "Transfer-Encoding: chunked\r\n").bytes());
            for piece in body.chunks(1024) {
                out.extend(format!("{:x}\r\n", piece.len()).bytes());
                out.extend(piece);
                out.extend(b"\r\n");
            }
            out.extend(b"0\r\n\r\n");
        }
        Answer::Status(code) => {
            let body = b"{\"error\": \"no\"}";
            out.extend(
                head(
                    &format!("{code} Oops"),
                    &format!("Content-Length: {}\r\n", body.len()),
                )
                .bytes(),
            );
            out.extend(body);
        }
        Answer::Hang => {
            std::future::pending::<()>().await;
        }
    }
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

// ---- Running the source ----

fn fast(source: MesosSource) -> MesosConfig {
    let mut cfg = MesosConfig::new(source, AGENT);
    cfg.poll_interval = Duration::from_millis(20);
    cfg.max_backoff = Duration::from_millis(80);
    cfg
}

fn url_source(url: String, timeout: Duration) -> MesosSource {
    MesosSource::Url {
        url,
        auth_token: Some("s3cret".into()),
        ca_file: None,
        timeout,
    }
}

#[tokio::test]
async fn http_keeps_the_last_good_state_through_every_kind_of_failure() {
    let server = Server::start(Answer::Body(state(31000).into_bytes())).await;
    let mut cfg = fast(url_source(server.url(), Duration::from_millis(300)));
    cfg.max_state_bytes = 16 << 10;
    let mut running = Running::start(cfg);

    check_state(&running.next().await, 31000);
    assert_eq!(
        server.seen.lock().unwrap().authorization.as_deref(),
        Some("token=s3cret")
    );

    let steps: [(Answer, &str); 6] = [
        (
            Answer::Body(b"<html>502 Bad Gateway</html>".to_vec()),
            "parse",
        ),
        (Answer::Body(b"{\"frameworks\": [".to_vec()), "parse"),
        (Answer::Status(500), "status"),
        (Answer::Hang, "timeout"),
        (Answer::Body(vec![b' '; 20 << 10]), "too_large"),
        (Answer::Chunked(vec![b' '; 20 << 10]), "too_large"),
    ];
    for (answer, reason) in steps {
        let before = running.failures(reason);
        server.set(answer);
        running.wait_failures(reason, before + 1).await;
        running.nothing_new();
        check_state(running.rx.borrow().as_ref().unwrap(), 31000);
    }
    assert_eq!(running.metrics.mesos_changes.get(), 1);

    // An update, chunked this time: published.
    server.set(Answer::Chunked(state(31001).into_bytes()));
    check_state(&running.next().await, 31001);
    assert_eq!(running.metrics.mesos_changes.get(), 2);

    // All tasks gone is a valid state: published, empty.
    server.set(Answer::Body(b"{\"frameworks\": []}".to_vec()));
    let empty = running.next().await;
    assert!(empty.services.is_empty());
    assert_eq!(empty.agents, [AGENT]);

    let failed = running.total_failures();
    assert!(failed >= 6);
    assert!(running.metrics.mesos_polls.get() >= failed + 3);
    assert!(server.requests() as u64 >= failed + 3);
    running.stop().await;
}

#[tokio::test]
async fn http_connection_refused_and_a_bad_ca_file_are_failures() {
    // A port nobody listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let running = Running::start(fast(url_source(
        format!("http://{addr}/state"),
        Duration::from_secs(1),
    )));
    running.wait_failures("http", 2).await;
    running.nothing_new();
    // Backing off: every 20 ms would be 20 polls in 400 ms; the backoff (40 ms, then the
    // 80 ms cap, ±10%) allows about 5.
    let polls = running.metrics.mesos_polls.get();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let during = running.metrics.mesos_polls.get() - polls;
    assert!(during <= 8, "{during} polls in 400 ms");
    running.stop().await;

    // A CA file that is missing (io), then one that holds no certificate (http).
    let dir = TempDir::new("ca");
    let ca = dir.0.join("ca.pem");
    let server = Server::start(Answer::Body(state(31000).into_bytes())).await;
    let running = Running::start(fast(MesosSource::Url {
        url: server.url(),
        auth_token: None,
        ca_file: Some(ca.clone()),
        timeout: Duration::from_secs(1),
    }));
    running.wait_failures("io", 1).await;
    std::fs::write(&ca, "not a certificate\n").unwrap();
    running.wait_failures("http", 1).await;
    running.nothing_new();
    running.stop().await;
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn shutdown_mid_request_returns_promptly() {
    let server = Server::start(Answer::Hang).await;
    let running = Running::start(fast(url_source(server.url(), Duration::from_secs(60))));
    let start = Instant::now();
    while server.requests() == 0 {
        assert!(start.elapsed() < PATIENCE, "no request arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopping = Instant::now();
    running.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn http_serves_the_shared_fixtures() {
    let dir = Path::new(FIXTURES).join("state");
    let names = [
        "minuteman-state2.json",
        "minuteman-invalid-port.json",
        "minuteman-empty.json",
    ];
    if !names.iter().all(|n| dir.join(n).is_file()) {
        eprintln!("skipped: the shared Mesos fixtures are not in {FIXTURES}");
        return;
    }
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let agent = IpAddr::V4(Ipv4Addr::new(10, 10, 0, 109));
    let server = Server::start(Answer::Body(read(names[0]))).await;
    let mut cfg = fast(MesosSource::url(server.url()));
    cfg.agent_ip = agent;
    let mut running = Running::start(cfg);

    // docs/mesos-vips.md: tcp 1.2.3.4:5000 → 10.10.0.109:8014.
    let first = running.next().await;
    let vip = Vip {
        protocol: Protocol::Tcp,
        addr: VipAddr::Ip(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4))),
        port: 5000,
    };
    let backends: Vec<Backend> = first.services.vips[&vip].iter().copied().collect();
    assert_eq!(
        backends,
        [Backend {
            ip: agent,
            port: 8014,
            agent,
            weight: 1
        }]
    );
    assert_eq!(first.services.vips.len(), 1);

    // Malformed labels: no VIP, warnings counted, not a failed poll.
    server.set(Answer::Body(read(names[1])));
    let second = running.next().await;
    assert!(second.services.is_empty());
    assert!(running.metrics.mesos_warnings.get() > 0);
    // Its task runs all the same: it keeps its DNS record.
    assert!(!second.tasks.is_empty(), "{second:?}");

    // A valid empty state: the task record goes once, then nothing new; nothing failed.
    server.set(Answer::Body(read(names[2])));
    let third = running.next().await;
    assert!(
        third.services.is_empty() && third.tasks.is_empty(),
        "{third:?}"
    );
    running.settle().await;
    running.nothing_new();
    assert_eq!(running.total_failures(), 0);
    running.stop().await;
}

// ---- The file source ----

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "minuteman-mesos-it-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes through a temporary file and a rename, as a careful writer would.
fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn file_write_change_corrupt_remove_restore() {
    let dir = TempDir::new("file");
    let path = dir.0.join("state.json");
    let mut running = Running::start(fast(MesosSource::File { path: path.clone() }));

    running.wait_failures("io", 1).await;
    running.nothing_new();

    std::fs::write(&path, state(31000)).unwrap();
    check_state(&running.next().await, 31000);

    // Rewritten in place, same length, at once.
    std::fs::write(&path, state(31001)).unwrap();
    check_state(&running.next().await, 31001);

    // Replaced by rename.
    replace(&path, state(31002).as_bytes());
    check_state(&running.next().await, 31002);

    let before = running.failures("parse");
    std::fs::write(&path, b"{\"frameworks\": [{\"executors\": [").unwrap();
    running.wait_failures("parse", before + 2).await;
    running.nothing_new();

    let before = running.failures("io");
    std::fs::remove_file(&path).unwrap();
    running.wait_failures("io", before + 2).await;
    running.nothing_new();
    check_state(running.rx.borrow().as_ref().unwrap(), 31002);

    // Restored: the same state as before the trouble is no change; a new one is.
    replace(&path, state(31002).as_bytes());
    running.settle().await;
    running.nothing_new();
    replace(&path, state(31003).as_bytes());
    check_state(&running.next().await, 31003);
    assert_eq!(running.metrics.mesos_changes.get(), 4);
    running.stop().await;
}
