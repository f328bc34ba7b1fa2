//! What Mesos told us, in one shape for every source: agents (id → address), frameworks
//! (id → name) and tasks (by framework and task id).
//!
//! Invariants:
//! - Every map is a `BTreeMap`, so iteration (and so extraction and its warnings) is in a
//!   fixed order: the same input gives the same output on every node.
//! - Only live tasks are read from documents: an agent's `frameworks[].executors[].tasks[]`,
//!   a master's `frameworks[].tasks[]`, the operator API's `tasks`/`launched_tasks`.
//!   Completed frameworks, completed executors and completed tasks never enter.
//! - No DNS here: an [`Agent`] keeps the address Mesos gave (when it is an IP literal) and
//!   the hostname; names are resolved at extraction through the caller's resolver.

use super::model::{self, GetState, StateDoc};
use super::task::Task;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// Resolves an agent hostname to an address (supplied by a shell; the core does no DNS).
pub type Resolver<'r> = &'r dyn Fn(&str) -> Option<IpAddr>;

/// Where an agent is, as far as the documents say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    /// The address itself (agent `/state`: `flags.ip` or the pid; master `/state`: the pid).
    pub ip: Option<IpAddr>,
    /// The hostname (operator API: `agent_info.hostname`, the primary source there).
    pub hostname: Option<String>,
    /// Operator API: the address in the agent's pid, used when the hostname cannot be
    /// resolved.
    pub pid_ip: Option<IpAddr>,
}

/// Why an agent's address is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentIpError {
    UnknownAgent,
    Unresolved(String),
    NoAddress,
}

impl std::fmt::Display for AgentIpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentIpError::UnknownAgent => f.write_str("unknown agent"),
            AgentIpError::Unresolved(name) => write!(f, "cannot resolve agent hostname {name:?}"),
            AgentIpError::NoAddress => f.write_str("agent has no address"),
        }
    }
}

/// Parses an IP literal; `localhost` is 127.0.0.1. Unspecified addresses do not count.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
}

/// The address in a libprocess pid: `slave(1)@10.0.0.243:5051` → 10.0.0.243.
pub fn pid_ip(pid: &str) -> Option<IpAddr> {
    let (_, address) = pid.rsplit_once('@')?;
    let (host, _port) = address.rsplit_once(':')?;
    literal_ip(host)
}

impl Agent {
    /// The agent's address: its own address, else its hostname (an IP literal,
    /// `localhost`, or what `resolve` says), else the address in its pid.
    pub fn resolve(&self, resolve: Option<Resolver<'_>>) -> Result<IpAddr, AgentIpError> {
        if let Some(ip) = self.ip {
            return Ok(ip);
        }
        if let Some(hostname) = &self.hostname {
            if let Some(ip) = literal_ip(hostname).or_else(|| resolve.and_then(|r| r(hostname))) {
                return Ok(ip);
            }
        }
        if let Some(ip) = self.pid_ip {
            return Ok(ip);
        }
        match &self.hostname {
            Some(hostname) => Err(AgentIpError::Unresolved(hostname.clone())),
            None => Err(AgentIpError::NoAddress),
        }
    }
}

/// Key of a task: framework id, then task id (task ids are unique per framework).
pub type TaskKey = (String, String);

/// Agents, frameworks and tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub agents: BTreeMap<String, Agent>,
    /// Framework id → name.
    pub frameworks: BTreeMap<String, String>,
    pub tasks: BTreeMap<TaskKey, Task>,
}

impl ClusterState {
    pub fn new() -> ClusterState {
        ClusterState::default()
    }

    /// An agent's `/state`: every task runs on this agent.
    pub fn from_agent_state(doc: &StateDoc<'_>) -> (ClusterState, Vec<String>) {
        let mut state = ClusterState::new();
        let mut warnings = Vec::new();
        let agent_id = model::text_str(&doc.id).unwrap_or("").to_string();
        let ip = doc
            .flags
            .as_ref()
            .and_then(|f| model::text_str(&f.ip))
            .and_then(literal_ip)
            .or_else(|| model::text_str(&doc.pid).and_then(pid_ip));
        state.agents.insert(
            agent_id.clone(),
            Agent {
                ip,
                hostname: model::text_str(&doc.hostname).map(str::to_string),
                pid_ip: None,
            },
        );
        for framework in doc.frameworks.as_deref().unwrap_or(&[]) {
            let framework_id = model::text_str(&framework.id).unwrap_or("");
            if let Some(name) = model::text_str(&framework.name) {
                state
                    .frameworks
                    .insert(framework_id.to_string(), name.to_string());
            }
            for executor in framework.executors.as_deref().unwrap_or(&[]) {
                for task in executor.tasks.as_deref().unwrap_or(&[]) {
                    match Task::from_state(task, framework_id, &agent_id) {
                        Some(task) => state.insert_task(task),
                        None => warnings.push(format!(
                            "framework {framework_id}: skipped a task without an id"
                        )),
                    }
                }
            }
        }
        (state, warnings)
    }

    /// A master's `/state`: agents from `slaves[]`.
    pub fn from_master_state(doc: &StateDoc<'_>) -> (ClusterState, Vec<String>) {
        let mut state = ClusterState::new();
        let mut warnings = Vec::new();
        for slave in doc.slaves.as_deref().unwrap_or(&[]) {
            let Some(id) = model::text_str(&slave.id) else {
                continue;
            };
            state.agents.insert(
                id.to_string(),
                Agent {
                    ip: model::text_str(&slave.pid).and_then(pid_ip),
                    hostname: model::text_str(&slave.hostname).map(str::to_string),
                    pid_ip: None,
                },
            );
        }
        for framework in doc.frameworks.as_deref().unwrap_or(&[]) {
            let framework_id = model::text_str(&framework.id).unwrap_or("");
            if let Some(name) = model::text_str(&framework.name) {
                state
                    .frameworks
                    .insert(framework_id.to_string(), name.to_string());
            }
            for task in framework.tasks.as_deref().unwrap_or(&[]) {
                let agent_id = model::text_str(&task.slave_id).unwrap_or("");
                match Task::from_state(task, framework_id, agent_id) {
                    Some(task) => state.insert_task(task),
                    None => warnings.push(format!(
                        "framework {framework_id}: skipped a task without an id"
                    )),
                }
            }
        }
        (state, warnings)
    }

    /// An operator-API `GET_STATE` (or the state inside `SUBSCRIBED`).
    pub fn from_get_state(doc: &GetState<'_>) -> (ClusterState, Vec<String>) {
        let mut state = ClusterState::new();
        let mut warnings = Vec::new();
        if let Some(agents) = &doc.get_agents {
            for info in agents.recovered_agents.as_deref().unwrap_or(&[]) {
                state.upsert_agent(info, None);
            }
            for agent in agents.agents.as_deref().unwrap_or(&[]) {
                if let Some(info) = &agent.agent_info {
                    state.upsert_agent(info, model::text_str(&agent.pid));
                }
            }
        }
        if let Some(frameworks) = &doc.get_frameworks {
            for framework in frameworks.frameworks.as_deref().unwrap_or(&[]) {
                if let Some(info) = &framework.framework_info {
                    state.upsert_framework(info);
                }
            }
        }
        if let Some(tasks) = &doc.get_tasks {
            let lists = [tasks.tasks.as_deref(), tasks.launched_tasks.as_deref()];
            for task in lists.into_iter().flatten().flatten() {
                match Task::from_api(task) {
                    Ok(task) => state.insert_task(task),
                    Err(reason) => warnings.push(format!("skipped a task: {reason}")),
                }
            }
        }
        (state, warnings)
    }

    /// Adds or replaces an agent from its operator-API info; `false` if it has no id.
    pub fn upsert_agent(&mut self, info: &model::AgentInfo<'_>, pid: Option<&str>) -> bool {
        let Some(id) = model::id_str(&info.id) else {
            return false;
        };
        self.agents.insert(
            id.to_string(),
            Agent {
                ip: None,
                hostname: model::text_str(&info.hostname).map(str::to_string),
                pid_ip: pid.and_then(pid_ip),
            },
        );
        true
    }

    /// Adds or renames a framework; `false` if it has no id.
    pub fn upsert_framework(&mut self, info: &model::FrameworkInfo<'_>) -> bool {
        let Some(id) = model::id_str(&info.id) else {
            return false;
        };
        let name = model::text_str(&info.name).unwrap_or("").to_string();
        self.frameworks.insert(id.to_string(), name);
        true
    }

    /// Adds or replaces a task, unless it is terminal (then any previous copy is removed).
    pub fn insert_task(&mut self, task: Task) {
        let key = (task.framework_id.clone(), task.id.clone());
        if task.state.is_terminal() {
            self.tasks.remove(&key);
        } else {
            self.tasks.insert(key, task);
        }
    }

    /// Removes every task of a framework; returns how many.
    pub fn remove_framework_tasks(&mut self, framework_id: &str) -> usize {
        let before = self.tasks.len();
        self.tasks.retain(|(fw, _), _| fw != framework_id);
        before - self.tasks.len()
    }

    /// Removes every task on an agent; returns how many.
    pub fn remove_agent_tasks(&mut self, agent_id: &str) -> usize {
        let before = self.tasks.len();
        self.tasks.retain(|_, task| task.agent_id != agent_id);
        before - self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_and_literals() {
        assert_eq!(
            pid_ip("slave(1)@10.0.0.243:5051"),
            Some("10.0.0.243".parse().unwrap())
        );
        assert_eq!(
            pid_ip("slave(1)@[fd01::1]:5051"),
            Some("fd01::1".parse().unwrap())
        );
        assert_eq!(pid_ip("slave(1)@0.0.0.0:5051"), None);
        assert_eq!(pid_ip("garbage"), None);
        assert_eq!(literal_ip("localhost"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(literal_ip("agent-1.example"), None);
    }

    #[test]
    fn agent_resolution_order() {
        let resolver = |name: &str| (name == "a1").then(|| "10.9.9.9".parse().unwrap());
        let agent = Agent {
            ip: None,
            hostname: Some("a1".into()),
            pid_ip: Some("10.1.1.1".parse().unwrap()),
        };
        assert_eq!(
            agent.resolve(Some(&resolver)),
            Ok("10.9.9.9".parse().unwrap())
        );
        assert_eq!(agent.resolve(None), Ok("10.1.1.1".parse().unwrap()));
        let agent = Agent {
            pid_ip: None,
            ..agent
        };
        assert_eq!(
            agent.resolve(None),
            Err(AgentIpError::Unresolved("a1".into()))
        );
    }
}
