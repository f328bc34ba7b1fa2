//! A lab cluster: the [`Net`], a backend per host (`minuteman lab-backend`, answering
//! `hI`), a Mesos state file per host, a cluster key, and one `minuteman agent` per host
//! started, stopped, killed and asked through its HTTP API on its own loopback.
//!
//! Files, all in [`ClusterSpec::dir`]: `cluster.key`, `mesos-hI.json`, `state-hI/` (the
//! agent's state directory), `agent-hI.log` (its stderr), `backend-hI.log`.
//!
//! Invariants:
//! - [`Cluster::start`] returns only once every backend answers its name from its own host.
//! - Teardown (explicit or on drop) kills every agent and backend, deletes the namespaces
//!   (with the agents' kernel tables in them), and removes the directory unless
//!   [`Cluster::keep_dir`] was called. Idempotent.
//! - Agents and backends run in a process group of their own: a Ctrl-C at the terminal
//!   reaches the program driving the lab, which tears it down, not the agents directly.

use super::backend::{HTTP_PORT, UDP_PORT};
use super::mesos::{agent_state, write_atomic, Task};
use super::net::{exec, in_netns, Net, NetSpec};
use super::request::{ask, Target};
use super::{tail, LabError};
use crate::agent::views::{MemberView, VipView};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The destinations of positive weight `vips` (a `/v1/vips` answer) give `vip`.
pub fn backends_of(vips: &[VipView], vip: &str) -> BTreeSet<SocketAddr> {
    vips.iter()
        .filter(|v| v.vip == vip)
        .flat_map(|v| &v.services)
        .flat_map(|s| &s.backends)
        .filter(|b| b.weight > 0)
        .map(|b| b.address)
        .collect()
}

/// Each agent's API, on its own namespace's loopback.
pub const API: &str = "127.0.0.1:61421";
/// How long an API request may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(3);

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub net: NetSpec,
    /// Where the key, state files and logs go; emptied first.
    pub dir: PathBuf,
    /// The `minuteman` binary the agents and backends run.
    pub exe: PathBuf,
    /// How often the agents read their Mesos state file.
    pub poll_interval: Duration,
    /// Flags every agent gets after the lab's own (`--dataplane none`, `--log-format json`).
    pub agent_flags: Vec<String>,
}

/// A running lab cluster. Torn down on drop.
pub struct Cluster {
    spec: ClusterSpec,
    net: Net,
    key: PathBuf,
    agents: Vec<Option<Child>>,
    backends: Vec<Child>,
    keep_dir: bool,
    torn_down: bool,
}

impl Cluster {
    /// Builds the network, writes the key and empty Mesos states, starts the backends and
    /// waits until each answers. No agent runs yet.
    pub fn start(spec: ClusterSpec) -> Result<Cluster, LabError> {
        let dir = &spec.dir;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let key = dir.join("cluster.key");
        let secret: [u8; 32] = rand::random();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&key, format!("{hex}\n"))
            .map_err(|e| LabError::io(format!("writing {}", key.display()), e))?;
        let net = Net::build(spec.net.clone()).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(dir);
        })?;
        let hosts = net.hosts();
        let mut cluster = Cluster {
            spec,
            net,
            key,
            agents: (0..hosts).map(|_| None).collect(),
            backends: Vec::new(),
            keep_dir: false,
            torn_down: false,
        };
        // From here on, an error drops `cluster`, which tears everything down.
        for i in 1..=hosts {
            cluster.write_tasks(i, &[])?;
            let log = cluster.open_log(&cluster.backend_log(i))?;
            let mut cmd = exec(&cluster.ns(i), &cluster.spec.exe);
            cmd.args(["lab-backend", "--name", &Cluster::name(i)])
                .args(["--http", &HTTP_PORT.to_string()])
                .args(["--udp", &UDP_PORT.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0);
            cluster.backends.push(spawn(&mut cmd)?);
        }
        for i in 1..=hosts {
            let target = Target::Http {
                addr: SocketAddr::new(cluster.ip(i), HTTP_PORT),
                path: "/".into(),
            };
            let want = Cluster::name(i);
            let answered = super::wait_until(Duration::from_secs(10), || {
                Ok::<_, LabError>(
                    cluster.ask(&cluster.ns(i), &target, Duration::from_millis(500))?
                        == Ok(want.clone()),
                )
            })?;
            if answered.is_none() {
                return Err(LabError::Timeout {
                    what: format!(
                        "the backend of {want} answering (its log: {})",
                        tail(&cluster.backend_log(i), 5)
                    ),
                    limit: Duration::from_secs(10),
                });
            }
        }
        Ok(cluster)
    }

    /// Host `i`'s name: `h1`, `h2`, … (its backend answers it).
    pub fn name(i: usize) -> String {
        format!("h{i}")
    }

    pub fn net(&self) -> &Net {
        &self.net
    }

    pub fn hosts(&self) -> usize {
        self.net.hosts()
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        self.net.host(i)
    }

    /// Host `i`'s (IPv4) address, where its agent listens for peers.
    pub fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.net.ip(i))
    }

    /// Host `i`'s backend as a VIP destination (`10.77.S.I:8080`).
    pub fn backend(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ip(i), HTTP_PORT)
    }

    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    pub fn key(&self) -> &Path {
        &self.key
    }

    pub fn exe(&self) -> &Path {
        &self.spec.exe
    }

    pub fn state_file(&self, i: usize) -> PathBuf {
        self.dir().join(format!("mesos-h{i}.json"))
    }

    pub fn log_file(&self, i: usize) -> PathBuf {
        self.dir().join(format!("agent-h{i}.log"))
    }

    pub fn backend_log(&self, i: usize) -> PathBuf {
        self.dir().join(format!("backend-h{i}.log"))
    }

    fn open_log(&self, path: &Path) -> Result<std::fs::File, LabError> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| LabError::io(format!("opening {}", path.display()), e))
    }

    /// Writes host `i`'s Mesos state holding `tasks`.
    pub fn write_tasks(&self, i: usize, tasks: &[Task]) -> Result<(), LabError> {
        self.write_state_text(i, &agent_state(tasks))
    }

    /// Writes host `i`'s Mesos state file as given (atomically).
    pub fn write_state_text(&self, i: usize, text: &str) -> Result<(), LabError> {
        write_atomic(&self.state_file(i), text)
    }

    /// The arguments of host `i`'s agent: its address, state file, state directory and the
    /// cluster key; hosts 2..N join through host 1; then [`ClusterSpec::agent_flags`].
    pub fn agent_args(&self, i: usize) -> Vec<String> {
        let mut args = vec![
            "agent".to_owned(),
            "--listen".to_owned(),
            self.ip(i).to_string(),
            "--mesos-state-file".to_owned(),
            self.state_file(i).display().to_string(),
            "--mesos-poll-interval".to_owned(),
            humantime::format_duration(self.spec.poll_interval).to_string(),
            "--state-dir".to_owned(),
            self.dir().join(format!("state-h{i}")).display().to_string(),
            "--cluster-key-file".to_owned(),
            self.key.display().to_string(),
        ];
        if i != 1 {
            args.extend(["--contact".to_owned(), self.ip(1).to_string()]);
        }
        args.extend(self.spec.agent_flags.iter().cloned());
        args
    }

    /// Starts host `i`'s agent with its usual arguments plus `extra`; its stderr goes to
    /// [`Cluster::log_file`].
    pub fn start_agent(&mut self, i: usize, extra: &[&str]) -> Result<(), LabError> {
        if self.agents[i - 1].is_some() {
            return Err(LabError::Invalid(format!(
                "h{i}'s agent is already running"
            )));
        }
        let log = self.open_log(&self.log_file(i))?;
        let mut cmd = exec(&self.ns(i), &self.spec.exe);
        cmd.args(self.agent_args(i))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        self.agents[i - 1] = Some(spawn(&mut cmd)?);
        Ok(())
    }

    /// Starts every host's agent.
    pub fn start_all(&mut self) -> Result<(), LabError> {
        (1..=self.hosts()).try_for_each(|i| self.start_agent(i, &[]))
    }

    /// Host `i`'s agent's process id, while it runs.
    pub fn agent_pid(&self, i: usize) -> Option<u32> {
        self.agents[i - 1].as_ref().map(Child::id)
    }

    /// Sends `signal` (`libc::SIGSTOP`, …) to host `i`'s agent.
    pub fn signal(&self, i: usize, signal: libc::c_int) -> Result<(), LabError> {
        let pid = self
            .agent_pid(i)
            .ok_or_else(|| LabError::Invalid(format!("h{i}'s agent is not running")))?;
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(LabError::io(
                format!("signalling h{i}'s agent"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// SIGKILLs host `i`'s agent and reaps it (nothing if it is not running).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut child) = self.agents[i - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs host `i`'s agent and waits for it to exit.
    pub fn stop_agent(&mut self, i: usize) -> Result<ExitStatus, LabError> {
        self.signal(i, libc::SIGTERM)?;
        let mut child = self.agents[i - 1].take().expect("signalled, so running");
        child
            .wait()
            .map_err(|e| LabError::io(format!("waiting for h{i}'s agent"), e))
    }

    /// An error if an agent that should run has exited, with the end of its log.
    pub fn check_agents(&mut self) -> Result<(), LabError> {
        for i in 1..=self.hosts() {
            let Some(child) = self.agents[i - 1].as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                self.agents[i - 1] = None;
                return Err(LabError::AgentExited {
                    host: i,
                    status: status.to_string(),
                    log: self.log_file(i),
                    tail: tail(&self.log_file(i), 10),
                });
            }
        }
        Ok(())
    }

    /// One request from namespace `ns`.
    pub fn ask(
        &self,
        ns: &str,
        target: &Target,
        timeout: Duration,
    ) -> Result<Result<String, String>, LabError> {
        in_netns(ns, || ask(target, timeout))
    }

    /// `count` requests in a row from namespace `ns`; stops after the first failure when
    /// `stop_on_failure`.
    pub fn ask_many(
        &self,
        ns: &str,
        target: &Target,
        count: usize,
        timeout: Duration,
        stop_on_failure: bool,
    ) -> Result<Vec<Result<String, String>>, LabError> {
        in_netns(ns, || {
            let mut results = Vec::with_capacity(count);
            for _ in 0..count {
                let result = ask(target, timeout);
                let failed = result.is_err();
                results.push(result);
                if failed && stop_on_failure {
                    break;
                }
            }
            results
        })
    }

    /// The body of `GET path` on host `i`'s API, or why there is none.
    pub fn api_text(&self, i: usize, path: &str) -> Result<String, String> {
        let target = Target::Http {
            addr: API.parse().expect("an address"),
            path: path.to_owned(),
        };
        self.ask(&self.ns(i), &target, API_TIMEOUT)
            .map_err(|e| e.to_string())?
    }

    /// `GET path` on host `i`'s API, decoded.
    pub fn api<T: DeserializeOwned>(&self, i: usize, path: &str) -> Result<T, String> {
        let text = self.api_text(i, path)?;
        serde_json::from_str(&text).map_err(|e| format!("h{i}'s {path}: {e}"))
    }

    /// Host `i`'s `/v1/vips`.
    pub fn vips(&self, i: usize) -> Result<Vec<VipView>, String> {
        self.api(i, "/v1/vips")
    }

    /// Host `i`'s `/v1/members`.
    pub fn members(&self, i: usize) -> Result<Vec<MemberView>, String> {
        self.api(i, "/v1/members")
    }

    /// The destinations of positive weight host `i`'s agent gives `vip` (as `/v1/vips`
    /// names it: `10.200.0.1:80`, `web.marathon:80`); empty when the API does not answer.
    pub fn api_backends(&self, i: usize, vip: &str) -> BTreeSet<SocketAddr> {
        backends_of(&self.vips(i).unwrap_or_default(), vip)
    }

    /// `nft list table inet minuteman` in host `i`'s namespace: the kernel's table, or
    /// `None` when there is no such table.
    pub fn nft_table(&self, i: usize) -> Result<Option<String>, LabError> {
        let mut cmd = exec(&self.ns(i), "nft");
        cmd.args(["list", "table", "inet", "minuteman"]);
        match super::run(&mut cmd) {
            Ok(out) => Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned())),
            Err(LabError::Command { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether host `i`'s kernel table sends connections to `backend` (a DNAT map entry
    /// `10.77.S.3 . 8080`).
    pub fn table_holds(&self, i: usize, backend: SocketAddr) -> Result<bool, LabError> {
        let entry = format!("{} . {}", backend.ip(), backend.port());
        Ok(self.nft_table(i)?.is_some_and(|t| t.contains(&entry)))
    }

    /// Keeps the directory (logs, states) at teardown.
    pub fn keep_dir(&mut self) {
        self.keep_dir = true;
    }

    /// Kills the agents and backends, deletes the namespaces, removes the directory
    /// unless kept. Idempotent; every step is attempted, the first error returned.
    pub fn teardown(&mut self) -> Result<(), LabError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        for child in self
            .agents
            .iter_mut()
            .filter_map(Option::take)
            .chain(self.backends.drain(..))
            .collect::<Vec<_>>()
            .iter_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        let result = self.net.teardown();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(self.dir());
        }
        result
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_dir = true;
        }
        if let Err(error) = self.teardown() {
            eprintln!("lab teardown: {error}");
        }
    }
}

/// Spawns `cmd`, naming it in the error.
fn spawn(cmd: &mut Command) -> Result<Child, LabError> {
    cmd.spawn().map_err(|source| LabError::Spawn {
        command: super::describe(cmd),
        source,
    })
}
