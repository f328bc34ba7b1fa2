//! Simulated Mesos agents: the tasks each host runs, rendered as the agent's `/state`
//! document that the node polls, and the ground truth those tasks imply.
//!
//! The document has the shape of a real agent's `/state` (pid, flags.ip, frameworks,
//! executors, tasks with discovery port labels and statuses), so every poll goes through
//! the core's real Mesos parser. The truth ([`SimAgent::truth`]) is computed here, from the
//! task list and the rules of `docs/mesos-vips.md`, independently of that parser.
//!
//! Invariants: task ids are unique per agent; every live task holds its own host port.

use minuteman_core::{Backend, Protocol, Vip, VipAddr, VipSet};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// The framework every simulated task belongs to.
pub const FRAMEWORK: &str = "marathon";
const FIRST_HOST_PORT: u16 = 20_000;

/// One VIP the simulated tasks can carry.
#[derive(Clone, Debug)]
pub struct VipSpec {
    /// The label value, `10.200.0.3:80` or `/svc-3:80`.
    pub label: String,
    /// What the label means, as the core should extract it.
    pub vip: Vip,
}

/// The VIPs of a run: even indices are IP VIPs in 10.200.0.0/16, odd ones named; every
/// fifth is UDP.
pub fn vip_catalogue(count: usize, names: &[String]) -> Vec<VipSpec> {
    let mut names = names.iter();
    (0..count)
        .map(|i| {
            let protocol = if i % 5 == 4 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            let port = 80 + (i % 3) as u16;
            if i % 2 == 0 {
                let ip = Ipv4Addr::new(10, 200, (i / 250) as u8, (i % 250) as u8 + 1);
                VipSpec {
                    label: format!("{ip}:{port}"),
                    vip: Vip {
                        protocol,
                        addr: VipAddr::Ip(ip.into()),
                        port,
                    },
                }
            } else {
                let name = names.next().cloned().unwrap_or_else(|| format!("svc-{i}"));
                VipSpec {
                    label: format!("/{name}:{port}"),
                    vip: Vip {
                        protocol,
                        addr: VipAddr::Named(format!("{name}.{FRAMEWORK}")),
                        port,
                    },
                }
            }
        })
        .collect()
}

/// A task's lifecycle as the simulation drives it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    Running { healthy: bool },
    Killing,
}

/// One task on a simulated agent.
#[derive(Clone, Debug)]
pub struct SimTask {
    /// Index into the run's VIP catalogue.
    pub vip: usize,
    pub host_port: u16,
    pub state: TaskState,
}

impl SimTask {
    /// Weight 1 when running and healthy, 0 while draining.
    pub fn weight(&self) -> u32 {
        match self.state {
            TaskState::Running { healthy: true } => 1,
            TaskState::Running { healthy: false } | TaskState::Killing => 0,
        }
    }
}

/// One simulated Mesos agent.
#[derive(Clone, Debug)]
pub struct SimAgent {
    pub ip: Ipv4Addr,
    pub tasks: BTreeMap<u64, SimTask>,
    next_port: u16,
}

impl SimAgent {
    pub fn new(ip: Ipv4Addr) -> SimAgent {
        SimAgent {
            ip,
            tasks: BTreeMap::new(),
            next_port: FIRST_HOST_PORT,
        }
    }

    /// Starts a running, healthy task carrying `vip`; returns its host port.
    pub fn start(&mut self, id: u64, vip: usize) -> u16 {
        let host_port = self.next_port;
        self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_HOST_PORT);
        self.tasks.insert(
            id,
            SimTask {
                vip,
                host_port,
                state: TaskState::Running { healthy: true },
            },
        );
        host_port
    }

    /// The backend `task` is, with its current weight.
    pub fn backend(&self, task: &SimTask) -> Backend {
        Backend {
            ip: IpAddr::V4(self.ip),
            port: task.host_port,
            agent: IpAddr::V4(self.ip),
            weight: task.weight(),
        }
    }

    /// What the agent's tasks mean, by the documented rules.
    pub fn truth(&self, catalogue: &[VipSpec]) -> VipSet {
        let mut set = VipSet::new();
        for task in self.tasks.values() {
            set.insert(catalogue[task.vip].vip.clone(), self.backend(task));
        }
        set
    }

    /// The agent's `/state` document.
    pub fn render_state(&self, catalogue: &[VipSpec]) -> Vec<u8> {
        let framework_id = "sim-framework-0000";
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|(id, task)| {
                let spec = &catalogue[task.vip];
                let (state, healthy) = match task.state {
                    TaskState::Running { healthy } => ("TASK_RUNNING", healthy),
                    TaskState::Killing => ("TASK_KILLING", true),
                };
                json!({
                    "id": format!("task-{id}"),
                    // As Marathon names them: by app, every instance alike.
                    "name": format!("app-{}", task.vip),
                    "framework_id": framework_id,
                    "state": state,
                    "resources": {"ports": format!("[{0}-{0}]", task.host_port)},
                    "discovery": {
                        "name": format!("task-{id}"),
                        "visibility": "FRAMEWORK",
                        "ports": {"ports": [{
                            "number": task.host_port,
                            "protocol": spec.vip.protocol.as_str(),
                            "labels": {"labels": [{"key": "VIP_0", "value": spec.label}]},
                        }]},
                    },
                    "statuses": [{"state": state, "healthy": healthy}],
                })
            })
            .collect();
        let doc = json!({
            "id": format!("agent-{}", self.ip),
            "pid": format!("slave(1)@{}:5051", self.ip),
            "hostname": self.ip.to_string(),
            "flags": {"ip": self.ip.to_string()},
            "frameworks": [{
                "id": framework_id,
                "name": FRAMEWORK,
                "executors": [{"id": "sim-executor", "tasks": tasks}],
                "completed_executors": [],
            }],
            "completed_frameworks": [],
        });
        serde_json::to_vec(&doc).expect("a JSON value serializes")
    }
}
