//! From tasks to VIP backends: the rules of `docs/mesos-vips.md`.
//!
//! Invariants:
//! - Pure and deterministic: the same [`ClusterState`] and options give the same
//!   [`Extracted`] (VIPs and warnings, in the same order).
//! - Which tasks count: `TASK_RUNNING` (weight 1; 0 if the latest status says
//!   `healthy: false`, or a health check is defined and the latest status has no result) and
//!   `TASK_KILLING` (weight 0, drain). Every other state yields no backend.
//! - A malformed label never fails the extraction: it yields no VIP and one warning that
//!   names the task. Warnings are bounded ([`MAX_WARNINGS`]); the excess is counted in a
//!   final warning.
//! - Backend address: agent IP and host port by default; container IP and container port
//!   with `network-scope` = `container`. An IP VIP only gets backends of its own address
//!   family; a named VIP keeps both families (its address is chosen later).

use super::cluster::Resolver;
use super::cluster::{AgentIpError, ClusterState};
use super::labels::{self, LabelError, VipHost};
use super::task::{PortMap, RawPort, Task, TaskPort, TaskState};
use super::task_records::task_records;
use crate::tasks::TaskSet;
use crate::vip::{Backend, Backends, Protocol, Vip, VipAddr, VipSet};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What one extraction found: the VIPs and the problems worth telling an operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    pub vips: VipSet,
    /// The running tasks by name, for DNS (see [`super::task_records`]).
    pub tasks: TaskSet,
    /// One line per problem, naming the task (malformed labels, unknown agents, ...).
    pub warnings: Vec<String>,
}

/// Options of an extraction.
#[derive(Clone, Copy, Default)]
pub struct ExtractOptions<'r> {
    /// Use this as the agent address of every task (an agent's own `/state` polled over
    /// loopback, or a pid showing 0.0.0.0).
    pub agent_ip: Option<IpAddr>,
    /// Resolves agent hostnames that are not IP literals (the core does no DNS; without a
    /// resolver such agents' tasks are skipped with a warning).
    pub resolve: Option<Resolver<'r>>,
}

impl std::fmt::Debug for ExtractOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractOptions")
            .field("agent_ip", &self.agent_ip)
            .field("resolve", &self.resolve.map(|_| "<resolver>"))
            .finish()
    }
}

impl ExtractOptions<'_> {
    /// Options overriding the agent address.
    pub fn with_agent_ip(agent_ip: IpAddr) -> ExtractOptions<'static> {
        ExtractOptions {
            agent_ip: Some(agent_ip),
            resolve: None,
        }
    }
}

/// Most warnings one extraction reports; the rest are counted in one last warning.
pub const MAX_WARNINGS: usize = 1000;

/// Bounded warning list.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    list: Vec<String>,
    suppressed: usize,
}

impl Warnings {
    pub(crate) fn push(&mut self, warning: String) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(warning);
        } else {
            self.suppressed += 1;
        }
    }

    pub(crate) fn finish(mut self) -> Vec<String> {
        if self.suppressed > 0 {
            self.list
                .push(format!("{} more warnings not shown", self.suppressed));
        }
        self.list
    }
}

/// The weight a task's backends get, or `None` if the task is not a backend.
pub fn task_weight(task: &Task) -> Option<u32> {
    match task.state {
        TaskState::Running => match task.healthy {
            Some(true) => Some(1),
            Some(false) => Some(0),
            None if task.has_health_check => Some(0),
            None => Some(1),
        },
        TaskState::Killing => Some(0),
        _ => None,
    }
}

/// Where a VIP's host comes from, before the framework name is known.
enum Target {
    Ip(IpAddr),
    Name(String),
}

/// How to build the backends of one VIP of one task.
enum Address {
    /// Agent IP : this port.
    Host(u16),
    /// Each container IP : this port.
    Container(u16),
}

struct Candidate<'t> {
    protocol: Protocol,
    target: Target,
    port: u16,
    address: Address,
    /// The label as written, for warnings.
    key: &'t str,
    value: &'t str,
}

impl Candidate<'_> {
    fn label(&self) -> String {
        format!("{}={:?}", self.key, self.value)
    }
}

fn target(host: VipHost) -> Target {
    match host {
        VipHost::Ip(ip) => Target::Ip(ip),
        VipHost::Name(name) => Target::Name(name),
    }
}

/// The host port of a non-container-scope discovery port: the number itself, unless it is
/// the container side of a port mapping (then that mapping's host port).
pub(crate) fn host_port(number: u64, protocol: Protocol, mappings: &[PortMap]) -> u64 {
    let matches_protocol = |m: &PortMap| match &m.protocol {
        None => protocol == Protocol::Tcp,
        Some(p) => p
            .split(',')
            .any(|p| labels::parse_protocol(p.trim()) == Ok(protocol)),
    };
    if mappings
        .iter()
        .any(|m| m.host_port == number && matches_protocol(m))
    {
        return number;
    }
    mappings
        .iter()
        .find(|m| m.container_port == number && matches_protocol(m))
        .map_or(number, |m| m.host_port)
}

fn port_candidates<'t>(
    task: &Task,
    port: &'t TaskPort,
    out: &mut Vec<Candidate<'t>>,
    warn: &mut Warnings,
) {
    if port.vip_labels.is_empty() {
        return;
    }
    let number = match port.number {
        RawPort::Number(0) => return,
        RawPort::Number(n) => n,
        RawPort::Missing | RawPort::Invalid => {
            warn.push(format!(
                "task {}: a discovery port with VIP labels has no valid number",
                task.id
            ));
            return;
        }
    };
    let protocol = match port.protocol.as_deref().map(labels::parse_protocol) {
        None => Protocol::Tcp,
        Some(Ok(protocol)) => protocol,
        Some(Err(e)) => {
            warn.push(format!("task {}: port {number}: {e}", task.id));
            return;
        }
    };
    let backend_port = if port.container_scope {
        number
    } else {
        host_port(number, protocol, &task.port_mappings)
    };
    let Ok(backend_port) = u16::try_from(backend_port) else {
        warn.push(format!(
            "task {}: port {backend_port} is out of range",
            task.id
        ));
        return;
    };
    if backend_port == 0 {
        return;
    }
    for label in &port.vip_labels {
        match labels::parse_vip(&label.value) {
            Ok((host, vip_port)) => out.push(Candidate {
                protocol,
                target: target(host),
                port: vip_port,
                address: if port.container_scope {
                    Address::Container(backend_port)
                } else {
                    Address::Host(backend_port)
                },
                key: &label.key,
                value: &label.value,
            }),
            Err(e) => warn.push(format!(
                "task {}: VIP label {}={:?}: {e}",
                task.id, label.key, label.value
            )),
        }
    }
}

fn task_label_candidates<'t>(task: &'t Task, out: &mut Vec<Candidate<'t>>, warn: &mut Warnings) {
    for label in &task.vip_port_labels {
        let Some(index) = labels::vip_port_index(&label.key) else {
            continue;
        };
        let parsed = labels::parse_task_vip(&label.value);
        let (protocol, host, vip_port) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                warn.push(format!(
                    "task {}: VIP label {}={:?}: {e}",
                    task.id, label.key, label.value
                ));
                continue;
            }
        };
        let port = task
            .resource_ports
            .nth(index)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0);
        let Some(port) = port else {
            warn.push(format!(
                "task {}: VIP label {}={:?}: the task has no valid port {index} in its \
                 `ports` resource {}",
                task.id, label.key, label.value, task.resource_ports
            ));
            continue;
        };
        out.push(Candidate {
            protocol,
            target: target(host),
            port: vip_port,
            address: Address::Host(port),
            key: &label.key,
            value: &label.value,
        });
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The address of `task`'s agent.
fn agent_ip(
    state: &ClusterState,
    task: &Task,
    options: &ExtractOptions<'_>,
) -> Result<IpAddr, AgentIpError> {
    match options.agent_ip {
        Some(ip) => Ok(ip),
        None => match state.agents.get(&task.agent_id) {
            Some(agent) => agent.resolve(options.resolve),
            None => Err(AgentIpError::UnknownAgent),
        },
    }
}

fn extract_task(
    state: &ClusterState,
    task: &Task,
    options: &ExtractOptions<'_>,
    vips: &mut BTreeMap<Vip, Vec<Backend>>,
    warn: &mut Warnings,
) {
    let Some(weight) = task_weight(task) else {
        return;
    };
    let mut candidates = Vec::new();
    for port in &task.ports {
        port_candidates(task, port, &mut candidates, warn);
    }
    task_label_candidates(task, &mut candidates, warn);
    if candidates.is_empty() {
        return;
    }
    let agent = match agent_ip(state, task, options) {
        Ok(ip) => ip,
        Err(e) => {
            warn.push(format!(
                "task {}: no backend: agent {}: {e}",
                task.id, task.agent_id
            ));
            return;
        }
    };
    let framework = state.frameworks.get(&task.framework_id);
    for candidate in candidates {
        let addr = match &candidate.target {
            Target::Ip(ip) => VipAddr::Ip(*ip),
            Target::Name(host) => {
                let Some(framework) = framework else {
                    warn.push(format!(
                        "task {}: VIP label {}: framework {} is unknown, so the name cannot \
                         be formed",
                        task.id,
                        candidate.label(),
                        task.framework_id
                    ));
                    continue;
                };
                match labels::named_vip(host, framework) {
                    Some(name) => VipAddr::Named(name),
                    None => {
                        warn.push(format!(
                            "task {}: VIP label {}: {}",
                            task.id,
                            candidate.label(),
                            LabelError::InvalidHost(format!("{host} (framework {framework:?})"))
                        ));
                        continue;
                    }
                }
            }
        };
        let vip = Vip {
            protocol: candidate.protocol,
            addr,
            port: candidate.port,
        };
        let family_ok = |ip: IpAddr| match &vip.addr {
            VipAddr::Ip(vip_ip) => same_family(*vip_ip, ip),
            VipAddr::Named(_) => true,
        };
        let mut backends = Vec::new();
        match candidate.address {
            Address::Host(port) => {
                if family_ok(agent) {
                    backends.push(Backend {
                        ip: agent,
                        port,
                        agent,
                        weight,
                    });
                }
            }
            Address::Container(port) => {
                backends.extend(
                    task.ips
                        .iter()
                        .filter(|&&ip| family_ok(ip))
                        .map(|&ip| Backend {
                            ip,
                            port,
                            agent,
                            weight,
                        }),
                );
            }
        }
        if !backends.is_empty() {
            vips.entry(vip).or_default().extend(backends);
            continue;
        }
        let why = match candidate.address {
            Address::Container(_) if task.ips.is_empty() => {
                "the task's statuses carry no container address".to_string()
            }
            Address::Host(_) => {
                format!("the agent address {agent} is not of the VIP's address family")
            }
            Address::Container(_) => format!(
                "no container address of the VIP's address family in {:?}",
                task.ips
            ),
        };
        warn.push(format!(
            "task {}: VIP label {}: no backend for {vip}: {why}",
            task.id,
            candidate.label()
        ));
    }
}

/// Every VIP with its backends, from every task that counts.
pub fn extract_state(state: &ClusterState, options: &ExtractOptions<'_>) -> Extracted {
    // Backends are gathered unsorted and each VIP's set is sorted once, at its final size.
    let mut gathered = BTreeMap::new();
    let mut warn = Warnings::default();
    let mut tasks = TaskSet::new();
    for task in state.tasks.values() {
        extract_task(state, task, options, &mut gathered, &mut warn);
        // A task whose agent has no address has no record (its VIPs, if any, warned).
        let framework = state.frameworks.get(&task.framework_id);
        if let (Some(framework), Ok(agent)) = (framework, agent_ip(state, task, options)) {
            if let Some((name, endpoints)) = task_records(task, framework, agent) {
                tasks.insert(name, endpoints);
            }
        }
    }
    let vips = VipSet {
        vips: gathered
            .into_iter()
            .map(|(vip, backends)| (vip, Backends::from(backends)))
            .collect(),
    };
    Extracted {
        vips,
        tasks,
        warnings: warn.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(host: u64, container: u64, protocol: Option<&str>) -> PortMap {
        PortMap {
            host_port: host,
            container_port: container,
            protocol: protocol.map(str::to_string),
        }
    }

    #[test]
    fn host_ports() {
        let maps = [map(28027, 80, Some("tcp")), map(28028, 53, Some("udp"))];
        assert_eq!(host_port(28027, Protocol::Tcp, &maps), 28027);
        assert_eq!(host_port(80, Protocol::Tcp, &maps), 28027);
        assert_eq!(host_port(80, Protocol::Udp, &maps), 80);
        assert_eq!(host_port(53, Protocol::Udp, &maps), 28028);
        assert_eq!(host_port(9000, Protocol::Tcp, &maps), 9000);
        let both = [map(3000, 53, Some("udp,tcp"))];
        assert_eq!(host_port(53, Protocol::Tcp, &both), 3000);
        let default_tcp = [map(3000, 53, None)];
        assert_eq!(host_port(53, Protocol::Tcp, &default_tcp), 3000);
        assert_eq!(host_port(53, Protocol::Udp, &default_tcp), 53);
    }

    #[test]
    fn warnings_are_bounded() {
        let mut w = Warnings::default();
        for i in 0..MAX_WARNINGS + 5 {
            w.push(format!("w{i}"));
        }
        let list = w.finish();
        assert_eq!(list.len(), MAX_WARNINGS + 1);
        assert_eq!(list.last().unwrap(), "5 more warnings not shown");
    }
}
