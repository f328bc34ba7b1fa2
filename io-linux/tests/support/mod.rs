//! The agent's end-to-end tests on a cluster of network namespaces: a thin layer over
//! [`minuteman::lab`] (the same lab `minuteman demo` runs) that panics with the logs'
//! whereabouts instead of returning errors, plus `curl` as the tests' HTTP client.
//!
//! Layout (S = a subnet number unique to the test, i = 1..=N; see `minuteman::lab`):
//! namespaces `mmS-sw` (the bridge), `mmS-hI` (host I: `10.77.S.I/24`, `fd77:S::I/64`, its
//! agent with the API on its own 127.0.0.1:61421, a backend answering `hI` over HTTP on
//! 8080 and UDP on 8081), `mmS-c1` (a container behind host 1 at `10.78.S.2`).
//!
//! Every process started here is killed and every namespace deleted on drop; the logs are
//! kept when a test fails. Nothing leaves the namespaces this module creates.

#![allow(dead_code)]

use minuteman::lab::cluster::{Cluster as LabCluster, ClusterSpec};
use minuteman::lab::net::NetSpec;
use minuteman::lab::request::Target;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// Not every test uses both.
#[allow(unused_imports)]
pub use minuteman::lab::mesos::{agent_state, Task};
pub use minuteman::lab::root_suite_ready;

/// One cluster test at a time in this process: they measure timings and load the CPU.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// The agent binary under test.
pub fn agent_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_minuteman"))
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
    pub opts: ClusterOptions,
    lab: LabCluster,
}

impl Cluster {
    /// Builds the namespaces, starts the backends and writes empty Mesos states.
    pub fn new(subnet: u8, opts: ClusterOptions) -> Cluster {
        let spec = ClusterSpec {
            net: NetSpec {
                prefix: format!("mm{subnet}"),
                subnet,
                hosts: opts.hosts,
                container: opts.container,
            },
            dir: std::env::temp_dir().join(format!("mm-e2e-{subnet}-{}", std::process::id())),
            exe: agent_binary(),
            poll_interval: humantime::parse_duration(opts.poll_interval).expect("a duration"),
            agent_flags: vec!["--log-format".into(), "json".into()],
        };
        let lab = LabCluster::start(spec).unwrap_or_else(|e| panic!("the lab: {e}"));
        Cluster {
            subnet,
            hosts: opts.hosts,
            opts,
            lab,
        }
    }

    /// The lab underneath, for what this layer does not wrap.
    pub fn lab(&self) -> &LabCluster {
        &self.lab
    }

    pub fn sw(&self) -> String {
        self.lab.net().switch()
    }
    pub fn ns(&self, i: usize) -> String {
        self.lab.ns(i)
    }
    pub fn container(&self) -> String {
        self.lab.net().container()
    }
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.lab.net().ip(i)
    }
    pub fn ip6(&self, i: usize) -> Ipv6Addr {
        self.lab.net().ip6(i)
    }
    pub fn state_file(&self, i: usize) -> PathBuf {
        self.lab.state_file(i)
    }
    pub fn log_file(&self, i: usize) -> PathBuf {
        self.lab.log_file(i)
    }
    pub fn dir(&self) -> &Path {
        self.lab.dir()
    }

    fn fail(&self, what: &str, error: impl std::fmt::Display) -> ! {
        panic!("{what}: {error}; logs in {}", self.dir().display())
    }

    /// Writes host `i`'s Mesos state (atomically: a temporary file, then rename).
    pub fn write_tasks(&self, i: usize, tasks: &[Task]) {
        self.lab
            .write_tasks(i, tasks)
            .unwrap_or_else(|e| self.fail("writing a state file", e));
    }

    pub fn write_state_text(&self, i: usize, text: &str) {
        self.lab
            .write_state_text(i, text)
            .unwrap_or_else(|e| self.fail("writing a state file", e));
    }

    /// The arguments of host `i`'s agent.
    pub fn agent_args(&self, i: usize) -> Vec<String> {
        self.lab.agent_args(i)
    }

    /// Starts host `i`'s agent with its usual arguments plus `extra`.
    pub fn start_agent(&mut self, i: usize, extra: &[&str]) {
        if let Err(e) = self.lab.start_agent(i, extra) {
            self.fail(&format!("starting h{i}'s agent"), e);
        }
    }

    pub fn start_all(&mut self) {
        for i in 1..=self.hosts {
            self.start_agent(i, &[]);
        }
    }

    pub fn agent_pid(&self, i: usize) -> u32 {
        self.lab.agent_pid(i).expect("agent running")
    }

    /// Sends `sig` (`STOP`, `CONT`, `TERM`, …, as `kill -SIG` takes it) to host `i`'s agent.
    pub fn signal(&self, i: usize, sig: &str) {
        run(&["kill", &format!("-{sig}"), &self.agent_pid(i).to_string()]);
    }

    /// SIGKILLs host `i`'s agent.
    pub fn kill_agent(&mut self, i: usize) {
        self.lab.kill_agent(i);
    }

    /// SIGTERMs host `i`'s agent and waits for it; returns its exit status.
    pub fn stop_agent(&mut self, i: usize) -> std::process::ExitStatus {
        match self.lab.stop_agent(i) {
            Ok(status) => status,
            Err(e) => self.fail(&format!("stopping h{i}'s agent"), e),
        }
    }

    /// Cuts (or restores) host `i`'s link to the switch.
    pub fn set_link(&self, i: usize, up: bool) {
        if let Err(e) = self.lab.net().set_link(i, up) {
            self.fail(&format!("setting h{i}'s link"), e);
        }
    }

    /// `ip netns exec NS args...`
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        exec(ns, args)
    }

    /// One HTTP GET from `ns` with a new connection; the body, or why it failed.
    pub fn curl(&self, ns: &str, url: &str) -> Result<String, String> {
        curl(ns, url)
    }

    /// One UDP request from `ns`, 1 s at most; the answer.
    pub fn udp_ask(&self, ns: &str, host: &str, port: u16) -> Result<String, String> {
        let ip = host.parse().map_err(|_| format!("{host}: not an IP"))?;
        let target = Target::Udp(SocketAddr::new(ip, port));
        self.lab
            .ask(ns, &target, Duration::from_secs(1))
            .unwrap_or_else(|e| self.fail("a UDP request", e))
    }

    /// GET `path` on host `i`'s API.
    pub fn api(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        self.lab.api(i, path).ok()
    }

    /// The raw `/metrics` text of host `i`.
    pub fn metrics(&self, i: usize) -> String {
        self.lab.api_text(i, "/metrics").unwrap_or_default()
    }

    /// The sum of the samples of `name` (with any labels) in host `i`'s metrics.
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        metric_sum(&self.metrics(i), name)
    }

    /// `nft list table inet minuteman` in host `i`'s namespace (the kernel, not the
    /// agent); empty when there is no table.
    pub fn nft_table(&self, i: usize) -> String {
        match self.lab.nft_table(i) {
            Ok(table) => table.unwrap_or_default(),
            Err(e) => self.fail(&format!("listing h{i}'s table"), e),
        }
    }

    /// Host `i`'s view of the members' states, by address.
    pub fn member_states(&self, i: usize) -> Vec<(String, String)> {
        self.lab
            .members(i)
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.address.to_string(), m.state))
            .collect()
    }

    /// Polls `check` every 20 ms until it holds or `limit` passes (then panics, naming
    /// `what`). Returns how long it took.
    pub fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Cluster) -> bool,
    ) -> Duration {
        match minuteman::lab::wait_until(limit, || Ok::<_, ()>(check(self))) {
            Ok(Some(took)) => took,
            _ => self.fail(what, format_args!("not within {limit:?}")),
        }
    }

    /// The agent logs, for a failing test's message.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        minuteman::lab::tail(&self.log_file(i), lines)
    }
}

/// Runs a command; panics with its output if it fails.
pub fn run(args: &[&str]) -> Output {
    minuteman::lab::run(Command::new(args[0]).args(&args[1..])).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip netns exec NS args...`
pub fn exec(ns: &str, args: &[&str]) -> Output {
    minuteman::lab::net::exec(ns, args[0])
        .args(&args[1..])
        .output()
        .unwrap()
}

/// One HTTP GET from `ns` on a new connection, 1 s at most; the body, or why it failed.
/// Where the end-to-end tests write their measured figures, so `.ci/run` can show them
/// (cargo captures a passing test's output).
pub fn report_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-report.txt")
}

/// Appends one line of figures to [`report_path`] and prints it.
pub fn report_line(line: &str) {
    use std::io::Write;
    eprintln!("{line}");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report_path())
    {
        let _ = writeln!(f, "{line}");
    }
}

pub fn curl(ns: &str, url: &str) -> Result<String, String> {
    let out = exec(
        ns,
        &[
            "curl",
            "-sS",
            "-g",
            // A client that gives up on a silent backend after 0.5 s and on the whole
            // request after 1 s: a request to a dead host fails by then.
            "--connect-timeout",
            "0.5",
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
