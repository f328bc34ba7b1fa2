//! One Mesos task, normalised: the few facts VIP extraction needs, owned, whatever format
//! (agent or master `/state`, operator API) it came from.
//!
//! Invariants:
//! - Conversion never fails on odd values: unparsable addresses are dropped, unparsable
//!   port numbers are kept as "invalid" so extraction can warn about them, and only a task
//!   without an id is rejected.
//! - Only VIP-related labels are kept (port labels whose key starts with `VIP`/`vip`, task
//!   labels whose key starts with `VIP_PORT` in any case), so memory per task is bounded by
//!   what matters, not by what frameworks attach.
//! - "Latest status" is the status with the greatest timestamp (the last one listed among
//!   equals, or when there are no timestamps). Health comes from the latest status; the
//!   container addresses come from the latest status that carries any addresses, so a
//!   `TASK_KILLING` update without a container status keeps draining the right address.

use super::model::{self, ApiTask, Container, DiscoveryPort, NetworkInfo, StateTask, Status};
use serde_json::Number;
use std::fmt;
use std::net::IpAddr;

/// A task's state (`TASK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskState {
    Staging,
    Starting,
    Running,
    Killing,
    Finished,
    Failed,
    Killed,
    Lost,
    Error,
    Dropped,
    Gone,
    GoneByOperator,
    Unreachable,
    Unknown,
    /// Missing or unrecognised: treated as not yet running.
    Other,
}

impl TaskState {
    pub fn parse(state: &str) -> TaskState {
        match state {
            "TASK_STAGING" => TaskState::Staging,
            "TASK_STARTING" => TaskState::Starting,
            "TASK_RUNNING" => TaskState::Running,
            "TASK_KILLING" => TaskState::Killing,
            "TASK_FINISHED" => TaskState::Finished,
            "TASK_FAILED" => TaskState::Failed,
            "TASK_KILLED" => TaskState::Killed,
            "TASK_LOST" => TaskState::Lost,
            "TASK_ERROR" => TaskState::Error,
            "TASK_DROPPED" => TaskState::Dropped,
            "TASK_GONE" => TaskState::Gone,
            "TASK_GONE_BY_OPERATOR" => TaskState::GoneByOperator,
            "TASK_UNREACHABLE" => TaskState::Unreachable,
            "TASK_UNKNOWN" => TaskState::Unknown,
            _ => TaskState::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Lost => "TASK_LOST",
            TaskState::Error => "TASK_ERROR",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Unknown => "TASK_UNKNOWN",
            TaskState::Other => "other",
        }
    }

    /// Mesos' terminal states: the task is gone for good and can be forgotten.
    /// (`TASK_UNREACHABLE` is not terminal: the task may come back.)
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Lost
                | TaskState::Error
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `{key, value}` label, owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// A port number as found in the JSON: a valid integer, or something else (kept so the
/// warning can show it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawPort {
    Missing,
    Number(u64),
    Invalid,
}

impl RawPort {
    fn from_json(number: Option<&Number>) -> RawPort {
        match number {
            None => RawPort::Missing,
            Some(n) => n.as_u64().map_or(RawPort::Invalid, RawPort::Number),
        }
    }
}

/// A discovery port of a task, with its VIP labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPort {
    pub number: RawPort,
    /// As written (`tcp`, `udp`, ...); `None` when absent.
    pub protocol: Option<String>,
    /// Labels whose key starts with `VIP` or `vip`, in order.
    pub vip_labels: Vec<KeyValue>,
    /// `network-scope` = `container`.
    pub container_scope: bool,
}

/// A Docker or UCR port mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    pub host_port: u64,
    pub container_port: u64,
    /// As written; `None` means tcp.
    pub protocol: Option<String>,
}

/// The `ports` resource: ranges in order, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRanges {
    Ranges(Vec<(u64, u64)>),
    Malformed(String),
}

impl Default for PortRanges {
    fn default() -> Self {
        PortRanges::Ranges(Vec::new())
    }
}

impl fmt::Display for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRanges::Ranges(ranges) => {
                f.write_str("[")?;
                for (i, (begin, end)) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{begin}-{end}")?;
                }
                f.write_str("]")
            }
            PortRanges::Malformed(text) => write!(f, "malformed {text:?}"),
        }
    }
}

impl PortRanges {
    /// Parses the `/state` form: `"[31362-31362, 31634-31634]"` (also a bare `31362`).
    pub fn parse_state(text: &str) -> PortRanges {
        let inner = text.trim();
        let inner = inner.strip_prefix('[').unwrap_or(inner);
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        let mut ranges = Vec::new();
        for part in inner.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (begin, end) = part.split_once('-').unwrap_or((part, part));
            match (begin.trim().parse::<u64>(), end.trim().parse::<u64>()) {
                (Ok(begin), Ok(end)) if begin <= end => ranges.push((begin, end)),
                _ => return PortRanges::Malformed(text.to_string()),
            }
        }
        PortRanges::Ranges(ranges)
    }

    /// The `n`-th port (0-based) counting through the ranges in order.
    pub fn nth(&self, n: u64) -> Option<u64> {
        let PortRanges::Ranges(ranges) = self else {
            return None;
        };
        let mut n = n;
        for &(begin, end) in ranges {
            let span = end.checked_sub(begin)?;
            if n <= span {
                return begin.checked_add(n);
            }
            // n > span, so span + 1 <= n: no overflow.
            n -= span + 1;
        }
        None
    }
}

/// One task, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    /// The task's name (empty when Mesos gave none): its DNS record's name.
    pub name: String,
    pub framework_id: String,
    pub agent_id: String,
    pub state: TaskState,
    /// `healthy` of the latest status.
    pub healthy: Option<bool>,
    /// The task defines a Mesos health check.
    pub has_health_check: bool,
    /// Container addresses of the latest status that has any.
    pub ips: Vec<IpAddr>,
    pub ports: Vec<TaskPort>,
    /// Task labels whose key, upper-cased, starts with `VIP_PORT`.
    pub vip_port_labels: Vec<KeyValue>,
    pub resource_ports: PortRanges,
    pub port_mappings: Vec<PortMap>,
}

fn key_value(label: &model::Label<'_>) -> Option<KeyValue> {
    Some(KeyValue {
        key: model::text_str(&label.key)?.to_string(),
        value: model::text_str(&label.value).unwrap_or("").to_string(),
    })
}

fn is_vip_port_key(key: &str) -> bool {
    key.get(..8)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("VIP_PORT"))
}

fn task_port(port: &DiscoveryPort<'_>) -> TaskPort {
    let labels = port
        .labels
        .as_ref()
        .and_then(|l| l.labels.as_deref())
        .unwrap_or(&[]);
    let mut vip_labels = Vec::new();
    let mut container_scope = false;
    for label in labels {
        let Some(key) = model::text_str(&label.key) else {
            continue;
        };
        if key.starts_with("VIP") || key.starts_with("vip") {
            vip_labels.extend(key_value(label));
        } else if key == "network-scope" {
            container_scope = model::text_str(&label.value) == Some("container");
        }
    }
    TaskPort {
        number: RawPort::from_json(port.number.as_ref()),
        protocol: model::text_str(&port.protocol).map(str::to_string),
        vip_labels,
        container_scope,
    }
}

fn discovery_ports(discovery: Option<&model::Discovery<'_>>) -> Vec<TaskPort> {
    discovery
        .and_then(|d| d.ports.as_ref())
        .and_then(|p| p.ports.as_deref())
        .unwrap_or(&[])
        .iter()
        .map(task_port)
        .collect()
}

/// Index of the latest status among those `keep` accepts: greatest timestamp, and the
/// last one listed among equals (or when there are no timestamps). No allocation.
fn latest_index(statuses: &[Status<'_>], keep: impl Fn(&Status<'_>) -> bool) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (i, status) in statuses.iter().enumerate() {
        if !keep(status) {
            continue;
        }
        let t = status.timestamp.unwrap_or(f64::MIN);
        let newer = match best {
            None => true,
            Some((bt, _)) => t.total_cmp(&bt).is_ge(),
        };
        if newer {
            best = Some((t, i));
        }
    }
    best.map(|(_, i)| i)
}

fn has_ips(status: &Status<'_>) -> bool {
    status
        .container_status
        .as_ref()
        .and_then(|c| c.network_infos.as_deref())
        .unwrap_or(&[])
        .iter()
        .any(|info| {
            info.ip_addresses
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .filter_map(|a| model::text_str(&a.ip_address))
                .chain(model::text_str(&info.ip_address))
                .any(|ip| parse_ip(ip).is_some())
        })
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

fn network_info_ips(infos: &[NetworkInfo<'_>]) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for info in infos {
        let listed = info.ip_addresses.as_deref().unwrap_or(&[]);
        let mut any = false;
        for address in listed {
            if let Some(ip) = model::text_str(&address.ip_address).and_then(parse_ip) {
                any = true;
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        if !any {
            if let Some(ip) = model::text_str(&info.ip_address).and_then(parse_ip) {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
    }
    ips
}

/// Addresses carried by one status.
pub(crate) fn status_ips(status: &Status<'_>) -> Vec<IpAddr> {
    status
        .container_status
        .as_ref()
        .and_then(|c| c.network_infos.as_deref())
        .map(network_info_ips)
        .unwrap_or_default()
}

fn push_mappings(out: &mut Vec<PortMap>, infos: &[NetworkInfo<'_>]) {
    for info in infos {
        add_mappings(out, info.port_mappings.as_deref().unwrap_or(&[]));
    }
}

/// Most port mappings kept per task (a stream of updates cannot grow a task without end).
pub const MAX_PORT_MAPPINGS: usize = 256;

pub(crate) fn add_mappings(out: &mut Vec<PortMap>, mappings: &[model::PortMapping<'_>]) {
    for mapping in mappings {
        if out.len() >= MAX_PORT_MAPPINGS {
            return;
        }
        let host = mapping.host_port.as_ref().and_then(Number::as_u64);
        let container = mapping.container_port.as_ref().and_then(Number::as_u64);
        if let (Some(host_port), Some(container_port)) = (host, container) {
            let map = PortMap {
                host_port,
                container_port,
                protocol: model::text_str(&mapping.protocol).map(str::to_string),
            };
            if !out.contains(&map) {
                out.push(map);
            }
        }
    }
}

/// Port mappings carried by one status.
pub(crate) fn status_mappings(status: &Status<'_>, out: &mut Vec<PortMap>) {
    if let Some(infos) = status
        .container_status
        .as_ref()
        .and_then(|c| c.network_infos.as_deref())
    {
        push_mappings(out, infos);
    }
}

/// The facts shared by both task formats.
struct Common {
    state: TaskState,
    healthy: Option<bool>,
    ips: Vec<IpAddr>,
    port_mappings: Vec<PortMap>,
}

fn common(
    state: Option<&str>,
    statuses: &[Status<'_>],
    container: Option<&Container<'_>>,
) -> Common {
    let latest = latest_index(statuses, |_| true).and_then(|i| statuses.get(i));
    let state = state
        .or_else(|| latest.and_then(|s| model::text_str(&s.state)))
        .map_or(TaskState::Other, TaskState::parse);
    let ips = latest_index(statuses, has_ips)
        .and_then(|i| statuses.get(i))
        .map(status_ips)
        .unwrap_or_default();
    let mut port_mappings = Vec::new();
    if let Some(container) = container {
        if let Some(docker) = &container.docker {
            add_mappings(
                &mut port_mappings,
                docker.port_mappings.as_deref().unwrap_or(&[]),
            );
        }
        push_mappings(
            &mut port_mappings,
            container.network_infos.as_deref().unwrap_or(&[]),
        );
    }
    if let Some(status) = latest {
        status_mappings(status, &mut port_mappings);
    }
    Common {
        state,
        healthy: latest.and_then(|s| s.healthy),
        ips,
        port_mappings,
    }
}

impl Task {
    /// A task of an agent or master `/state`. `framework_id` and `agent_id` come from the
    /// enclosing framework and agent when the task itself does not say. `None` without an
    /// id.
    pub fn from_state(task: &StateTask<'_>, framework_id: &str, agent_id: &str) -> Option<Task> {
        let id = model::text_str(&task.id)?.to_string();
        let common = common(
            model::text_str(&task.state),
            task.statuses.as_deref().unwrap_or(&[]),
            task.container.as_ref(),
        );
        let vip_port_labels = task
            .labels
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter(|l| model::text_str(&l.key).is_some_and(is_vip_port_key))
            .filter_map(key_value)
            .collect();
        let resource_ports = task
            .resources
            .as_ref()
            .and_then(|r| model::text_str(&r.ports))
            .map(PortRanges::parse_state)
            .unwrap_or_default();
        Some(Task {
            id,
            name: model::text_str(&task.name).unwrap_or("").to_string(),
            framework_id: model::text_str(&task.framework_id)
                .unwrap_or(framework_id)
                .to_string(),
            agent_id: agent_id.to_string(),
            state: common.state,
            healthy: common.healthy,
            has_health_check: task.health_check.is_some(),
            ips: common.ips,
            ports: discovery_ports(task.discovery.as_ref()),
            vip_port_labels,
            resource_ports,
            port_mappings: common.port_mappings,
        })
    }

    /// A task of the operator API. Errs (naming what is missing) without its task, framework
    /// or agent id.
    pub fn from_api(task: &ApiTask<'_>) -> Result<Task, String> {
        let id = model::id_str(&task.task_id).ok_or("task without `task_id`")?;
        let framework_id = model::id_str(&task.framework_id)
            .ok_or_else(|| format!("task {id}: no `framework_id`"))?;
        let agent_id =
            model::id_str(&task.agent_id).ok_or_else(|| format!("task {id}: no `agent_id`"))?;
        let common = common(
            model::text_str(&task.state),
            task.statuses.as_deref().unwrap_or(&[]),
            task.container.as_ref(),
        );
        let vip_port_labels = task
            .labels
            .as_ref()
            .and_then(|l| l.labels.as_deref())
            .unwrap_or(&[])
            .iter()
            .filter(|l| model::text_str(&l.key).is_some_and(is_vip_port_key))
            .filter_map(key_value)
            .collect();
        Ok(Task {
            id: id.to_string(),
            name: model::text_str(&task.name).unwrap_or("").to_string(),
            framework_id: framework_id.to_string(),
            agent_id: agent_id.to_string(),
            state: common.state,
            healthy: common.healthy,
            has_health_check: task.health_check.is_some(),
            ips: common.ips,
            ports: discovery_ports(task.discovery.as_ref()),
            vip_port_labels,
            resource_ports: api_port_ranges(task.resources.as_deref().unwrap_or(&[])),
            port_mappings: common.port_mappings,
        })
    }
}

fn api_port_ranges(resources: &[model::Resource<'_>]) -> PortRanges {
    let mut ranges = Vec::new();
    for resource in resources {
        if model::text_str(&resource.name) != Some("ports") {
            continue;
        }
        let listed = resource
            .ranges
            .as_ref()
            .and_then(|r| r.range.as_deref())
            .unwrap_or(&[]);
        for range in listed {
            let begin = range.begin.as_ref().and_then(Number::as_u64);
            let end = range.end.as_ref().and_then(Number::as_u64);
            match (begin, end) {
                (Some(begin), Some(end)) if begin <= end => ranges.push((begin, end)),
                _ => {
                    return PortRanges::Malformed(format!(
                        "range {:?}-{:?}",
                        range.begin, range.end
                    ))
                }
            }
        }
    }
    PortRanges::Ranges(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_port_ranges() {
        let r = PortRanges::parse_state("[31362-31362, 31634-31634]");
        assert_eq!(r, PortRanges::Ranges(vec![(31362, 31362), (31634, 31634)]));
        assert_eq!(r.nth(0), Some(31362));
        assert_eq!(r.nth(1), Some(31634));
        assert_eq!(r.nth(2), None);
        let r = PortRanges::parse_state("[9999-10002]");
        assert_eq!(r.nth(3), Some(10002));
        assert_eq!(r.nth(4), None);
        assert_eq!(PortRanges::parse_state("[]"), PortRanges::Ranges(vec![]));
        assert!(matches!(
            PortRanges::parse_state("[a-b]"),
            PortRanges::Malformed(_)
        ));
        assert!(matches!(
            PortRanges::parse_state("[5-3]"),
            PortRanges::Malformed(_)
        ));
        let huge = PortRanges::Ranges(vec![(0, u64::MAX)]);
        assert_eq!(huge.nth(u64::MAX), Some(u64::MAX));
        assert_eq!(huge.nth(5), Some(5));
    }

    #[test]
    fn states() {
        assert_eq!(TaskState::parse("TASK_RUNNING"), TaskState::Running);
        assert_eq!(TaskState::parse("running"), TaskState::Other);
        assert!(TaskState::Killed.is_terminal());
        assert!(!TaskState::Unreachable.is_terminal());
        assert!(!TaskState::Killing.is_terminal());
    }

    #[test]
    fn vip_port_keys() {
        assert!(is_vip_port_key("VIP_PORT0"));
        assert!(is_vip_port_key("vip_port12"));
        assert!(is_vip_port_key("vip_PORT1"));
        assert!(!is_vip_port_key("VIP_0"));
        assert!(!is_vip_port_key("VIP_POR"));
        assert!(!is_vip_port_key("é_PORT0x"));
    }
}
