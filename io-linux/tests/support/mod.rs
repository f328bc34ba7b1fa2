//! A cluster of hosts in network namespaces for the agent's end-to-end tests.
//!
//! Layout (S = a subnet number unique to the cluster, i = 1..=N):
//! - namespace `mmS-sw` holds a bridge; host `mmS-hI` hangs off it by a veth with
//!   `10.77.S.I/24` and `fd77:S::I/64`, runs `minuteman agent` (API on its own loopback,
//!   127.0.0.1:61421) and a backend answering its host name (`hI`) over HTTP on port 8080
//!   (IPv4 and IPv6) and over UDP on port 8081;
//! - namespace `mmS-c1` is a container behind host 1: a bridge `cbr0` in host 1 with
//!   `10.78.S.1/24`, the container at `10.78.S.2`, routed through host 1.
//!
//! Every process started here is killed and every namespace deleted on drop. Nothing leaves
//! the namespaces this module creates.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One cluster test at a time in this process: they measure timings and load the CPU.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// The agent binary under test.
pub fn agent_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_minuteman"))
}

/// Whether the root suites can run here; prints why not. With
/// `MINUTEMAN_REQUIRE_ROOT_SUITES=1` (set by `.ci/run`) a missing requirement fails instead.
pub fn root_suite_ready(test: &str, tools: &[&str]) -> bool {
    let required = std::env::var("MINUTEMAN_REQUIRE_ROOT_SUITES").is_ok_and(|v| v == "1");
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        missing.push("root".to_owned());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(format!("`{tool}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test}: skipped: needs {}", missing.join(", "));
    assert!(!required, "{why} (MINUTEMAN_REQUIRE_ROOT_SUITES=1)");
    eprintln!("{why}");
    false
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs a command; panics with its output if it fails.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command, ignoring failure.
pub fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

const BACKEND_PY: &str = r#"
import socket, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
name = sys.argv[1].encode()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(name)))
        self.end_headers()
        self.wfile.write(name)
    def log_message(self, *a):
        pass
class S6(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    request_queue_size = 1024
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 8081))
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(name, peer)
threading.Thread(target=udp, daemon=True).start()
S6(("::", 8080), H).serve_forever()
"#;

const UDP_ASK_PY: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.sendto(b"who", (host, port))
print(s.recvfrom(2048)[0].decode())
"#;

/// A task of the Mesos state file a test writes for one host.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    /// (protocol, host port, VIP label values)
    pub ports: Vec<(&'static str, u16, Vec<String>)>,
    /// A container IP (the port labels get `network-scope=container`).
    pub container_ip: Option<IpAddr>,
}

/// An agent's `/state` document holding `tasks`, all running.
pub fn agent_state(tasks: &[Task]) -> String {
    let tasks: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            let ports: Vec<serde_json::Value> = t
                .ports
                .iter()
                .map(|(proto, port, vips)| {
                    let mut labels: Vec<serde_json::Value> = vips
                        .iter()
                        .enumerate()
                        .map(|(k, v)| serde_json::json!({"key": format!("VIP_{k}"), "value": v}))
                        .collect();
                    if t.container_ip.is_some() {
                        labels.push(serde_json::json!({"key": "network-scope", "value": "container"}));
                    }
                    serde_json::json!({"number": port, "protocol": proto, "labels": {"labels": labels}})
                })
                .collect();
            let mut task = serde_json::json!({
                "id": t.id, "name": t.id, "state": "TASK_RUNNING",
                "discovery": {"ports": {"ports": ports}},
            });
            if let Some(ip) = t.container_ip {
                task["statuses"] = serde_json::json!([{"state": "TASK_RUNNING",
                    "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": ip.to_string()}]}]}}]);
            }
            task
        })
        .collect();
    serde_json::json!({"frameworks": [{"name": "marathon", "executors": [{"tasks": tasks}]}]})
        .to_string()
}

/// Options of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub hosts: usize,
    pub container: bool,
    pub poll_interval: &'static str,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            hosts: 3,
            container: false,
            poll_interval: "250ms",
        }
    }
}

/// A running cluster.
pub struct Cluster {
    pub subnet: u8,
    pub hosts: usize,
    pub dir: PathBuf,
    pub key: PathBuf,
    pub opts: ClusterOptions,
    agents: Vec<Option<Child>>,
    others: Vec<Child>,
    namespaces: Vec<String>,
}

impl Cluster {
    pub fn sw(&self) -> String {
        format!("mm{}-sw", self.subnet)
    }
    pub fn ns(&self, i: usize) -> String {
        format!("mm{}-h{i}", self.subnet)
    }
    pub fn container(&self) -> String {
        format!("mm{}-c1", self.subnet)
    }
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, i as u8)
    }
    pub fn ip6(&self, i: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd77, self.subnet as u16, 0, 0, 0, 0, 0, i as u16)
    }
    pub fn state_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("mesos-h{i}.json"))
    }
    pub fn log_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("agent-h{i}.log"))
    }

    /// Builds the namespaces, starts the backends and writes empty Mesos states.
    pub fn new(subnet: u8, opts: ClusterOptions) -> Cluster {
        let dir = std::env::temp_dir().join(format!("mm-e2e-{subnet}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("cluster.key");
        std::fs::write(&key, format!("{:064x}\n", 0x5eed_u128 * subnet as u128 + 1)).unwrap();
        std::fs::write(dir.join("backend.py"), BACKEND_PY).unwrap();
        std::fs::write(dir.join("udp_ask.py"), UDP_ASK_PY).unwrap();
        let mut c = Cluster {
            subnet,
            hosts: opts.hosts,
            dir,
            key,
            agents: (0..opts.hosts).map(|_| None).collect(),
            others: Vec::new(),
            namespaces: Vec::new(),
            opts,
        };
        c.teardown_namespaces();
        let sw = c.sw();
        c.add_ns(&sw);
        run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        for i in 1..=c.hosts {
            let ns = c.ns(i);
            c.add_ns(&ns);
            let (a, b) = (format!("e{i}"), format!("p{i}"));
            run(&[
                "ip", "link", "add", &a, "netns", &ns, "type", "veth", "peer", "name", &b, "netns",
                &sw,
            ]);
            run(&["ip", "-n", &sw, "link", "set", &b, "master", "br0", "up"]);
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", c.ip(i)),
                "dev",
                &a,
            ]);
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/64", c.ip6(i)),
                "dev",
                &a,
                "nodad",
            ]);
            run(&["ip", "-n", &ns, "link", "set", &a, "up"]);
            // VIPs are routed like any address off the host (a real host's default route);
            // the kernel table rewrites them before the packet leaves.
            run(&["ip", "-n", &ns, "route", "add", "default", "dev", &a]);
            run(&["ip", "-n", &ns, "-6", "route", "add", "default", "dev", &a]);
            c.write_tasks(i, &[]);
            let backend = Command::new("ip")
                .args(["netns", "exec", &ns, "python3"])
                .arg(c.dir.join("backend.py"))
                .arg(format!("h{i}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            c.others.push(backend);
        }
        if c.opts.container {
            let (host, ctr) = (c.ns(1), c.container());
            c.add_ns(&ctr);
            run(&["ip", "-n", &host, "link", "add", "cbr0", "type", "bridge"]);
            run(&[
                "ip",
                "-n",
                &host,
                "addr",
                "add",
                &format!("10.78.{subnet}.1/24"),
                "dev",
                "cbr0",
            ]);
            run(&["ip", "-n", &host, "link", "set", "cbr0", "up"]);
            run(&[
                "ip", "link", "add", "c0", "netns", &ctr, "type", "veth", "peer", "name", "cv0",
                "netns", &host,
            ]);
            run(&[
                "ip", "-n", &host, "link", "set", "cv0", "master", "cbr0", "up",
            ]);
            run(&[
                "ip",
                "-n",
                &ctr,
                "addr",
                "add",
                &format!("10.78.{subnet}.2/24"),
                "dev",
                "c0",
            ]);
            run(&["ip", "-n", &ctr, "link", "set", "c0", "up"]);
            run(&[
                "ip",
                "-n",
                &ctr,
                "route",
                "add",
                "default",
                "via",
                &format!("10.78.{subnet}.1"),
            ]);
            run(&[
                "ip",
                "netns",
                "exec",
                &host,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
        }
        // Wait for the backends to listen.
        for i in 1..=c.hosts {
            let url = format!("http://{}:8080/", c.ip(i));
            c.wait_until(Duration::from_secs(10), &format!("backend h{i}"), |c| {
                c.curl(&c.ns(i), &url).ok() == Some(format!("h{i}"))
            });
        }
        c
    }

    fn add_ns(&mut self, ns: &str) {
        run(&["ip", "netns", "add", ns]);
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        self.namespaces.push(ns.to_owned());
    }

    fn teardown_namespaces(&self) {
        for i in 1..=self.hosts {
            run_quiet(&["ip", "netns", "del", &self.ns(i)]);
        }
        run_quiet(&["ip", "netns", "del", &self.container()]);
        run_quiet(&["ip", "netns", "del", &self.sw()]);
    }

    /// Writes host `i`'s Mesos state (atomically: a temporary file, then rename).
    pub fn write_tasks(&self, i: usize, tasks: &[Task]) {
        self.write_state_text(i, &agent_state(tasks));
    }

    pub fn write_state_text(&self, i: usize, text: &str) {
        let tmp = self.dir.join(format!(".mesos-h{i}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.state_file(i)).unwrap();
    }

    /// The arguments of host `i`'s agent.
    pub fn agent_args(&self, i: usize) -> Vec<String> {
        let mut args = vec![
            "agent".to_owned(),
            "--listen".to_owned(),
            self.ip(i).to_string(),
            "--mesos-state-file".to_owned(),
            self.state_file(i).display().to_string(),
            "--mesos-poll-interval".to_owned(),
            self.opts.poll_interval.to_owned(),
            "--state-dir".to_owned(),
            self.dir.join(format!("state-h{i}")).display().to_string(),
            "--cluster-key-file".to_owned(),
            self.key.display().to_string(),
            "--log-format".to_owned(),
            "json".to_owned(),
        ];
        if i != 1 {
            args.extend(["--contact".to_owned(), self.ip(1).to_string()]);
        }
        args
    }

    /// Starts host `i`'s agent with its usual arguments plus `extra`.
    pub fn start_agent(&mut self, i: usize, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(i))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i)])
            .arg(agent_binary())
            .args(self.agent_args(i))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agents[i - 1] = Some(child);
    }

    pub fn start_all(&mut self) {
        for i in 1..=self.hosts {
            self.start_agent(i, &[]);
        }
    }

    pub fn agent_pid(&self, i: usize) -> u32 {
        self.agents[i - 1].as_ref().expect("agent running").id()
    }

    pub fn signal(&self, i: usize, sig: &str) {
        run(&["kill", &format!("-{sig}"), &self.agent_pid(i).to_string()]);
    }

    /// SIGKILLs host `i`'s agent.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut child) = self.agents[i - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs host `i`'s agent and waits for it; returns its exit status.
    pub fn stop_agent(&mut self, i: usize) -> std::process::ExitStatus {
        let mut child = self.agents[i - 1].take().expect("agent running");
        run(&["kill", "-TERM", &child.id().to_string()]);
        child.wait().unwrap()
    }

    /// Cuts (or restores) host `i`'s link to the switch.
    pub fn set_link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        run(&[
            "ip",
            "-n",
            &self.sw(),
            "link",
            "set",
            &format!("p{i}"),
            state,
        ]);
    }

    /// `ip netns exec NS args...`
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        exec(ns, args)
    }

    /// One HTTP GET from `ns` with a new connection; the body, or why it failed.
    pub fn curl(&self, ns: &str, url: &str) -> Result<String, String> {
        curl(ns, url)
    }

    /// One UDP request from `ns`; the answer.
    pub fn udp_ask(&self, ns: &str, host: &str, port: u16) -> Result<String, String> {
        let script = self.dir.join("udp_ask.py");
        let out = self.exec(
            ns,
            &[
                "python3",
                &script.display().to_string(),
                host,
                &port.to_string(),
            ],
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// GET `path` on host `i`'s API.
    pub fn api(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let body = self
            .curl(&self.ns(i), &format!("http://127.0.0.1:61421{path}"))
            .ok()?;
        serde_json::from_str(&body).ok()
    }

    /// The raw `/metrics` text of host `i`.
    pub fn metrics(&self, i: usize) -> String {
        self.curl(&self.ns(i), "http://127.0.0.1:61421/metrics")
            .unwrap_or_default()
    }

    /// The sum of the samples of `name` (with any labels) in host `i`'s metrics.
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        metric_sum(&self.metrics(i), name)
    }

    /// The backends host `i`'s kernel table sends `service` (`10.200.0.1:80`, `tcp`) to,
    /// read from `nft list table` (the kernel, not the agent).
    pub fn nft_table(&self, i: usize) -> String {
        let out = self.exec(&self.ns(i), &["nft", "list", "table", "inet", "minuteman"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Host `i`'s view of the members' states, by address.
    pub fn member_states(&self, i: usize) -> Vec<(String, String)> {
        self.api(i, "/v1/members")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|m| {
                (
                    m["address"].as_str().unwrap_or("").to_owned(),
                    m["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Polls `check` every 50 ms until it holds or `limit` passes (then panics, naming
    /// `what`). Returns how long it took.
    pub fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Cluster) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if check(self) {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                panic!(
                    "{what}: not within {limit:?}; logs in {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent logs, for a failing test's message.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_file(i)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self
            .agents
            .iter_mut()
            .flatten()
            .chain(self.others.iter_mut())
        {
            // A stopped agent must be continued to die promptly.
            run_quiet(&["kill", "-CONT", &child.id().to_string()]);
            let _ = child.kill();
            let _ = child.wait();
        }
        self.teardown_namespaces();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `ip netns exec NS args...`
pub fn exec(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap()
}

/// One HTTP GET from `ns` on a new connection, 1 s at most; the body, or why it failed.
pub fn curl(ns: &str, url: &str) -> Result<String, String> {
    let out = exec(
        ns,
        &[
            "curl",
            "-sS",
            "-g",
            "--max-time",
            "1",
            "-H",
            "Connection: close",
            url,
        ],
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Sum of the samples of metric `name` (any labels) in a Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let metric = key.split('{').next()?;
            (metric == name)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// One request of a client loop: when it was sent, when it ended, and its result.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub sent: Instant,
    pub done: Instant,
    pub result: Result<String, String>,
}

/// A client in `ns` sending one new-connection request to `url` every `gap` until `stop`.
pub fn client_loop(
    ns: String,
    url: String,
    gap: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Attempt>> {
    std::thread::spawn(move || {
        let mut attempts = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let sent = Instant::now();
            let result = curl(&ns, &url);
            attempts.push(Attempt {
                sent,
                done: Instant::now(),
                result,
            });
            std::thread::sleep(gap);
        }
        attempts
    })
}
