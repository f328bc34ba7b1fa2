//! From a running task to its DNS records, in the style of Mesos-DNS.
//!
//! Rules:
//! - Only `TASK_RUNNING` tasks have records (health does not matter, as in Mesos-DNS: a
//!   task's name says where it is, the VIPs decide where traffic goes).
//! - The name is the task's name and its framework's name, each turned into DNS labels
//!   (`/web.group` on `marathon` → `web.group.marathon`); a task without a usable name or
//!   framework name has no record.
//! - The address is the task's container address(es) when its latest status carries any,
//!   else its agent's address.
//! - The ports are its discovery ports, each with its protocol (`tcp` when absent), at the
//!   container address and container port with `network-scope` = `container`, else at the
//!   agent address and host port (a port mapping's host side); without discovery ports,
//!   every port of its `ports` resource, as `tcp` and `udp` both, at the agent address
//!   (Mesos-DNS does the same). Unparsable ports are skipped: the VIP extraction already
//!   warns about the ones that matter.
//! - At most [`MAX_TASK_ENDPOINTS`] endpoints per task, so a task holding a range of
//!   thousands of ports costs a bounded share of its host's record.

use super::extract::host_port;
use super::labels;
use super::task::{RawPort, Task, TaskState};
use crate::tasks::{TaskEndpoint, TaskName};
use crate::vip::Protocol;
use std::net::IpAddr;

/// Most endpoints (addresses and ports) one task contributes.
pub const MAX_TASK_ENDPOINTS: usize = 64;

/// The name and endpoints of `task` (on framework `framework`, agent `agent`), or `None`
/// if it has no records.
pub fn task_records(
    task: &Task,
    framework: &str,
    agent: IpAddr,
) -> Option<(TaskName, Vec<TaskEndpoint>)> {
    if task.state != TaskState::Running {
        return None;
    }
    let name = TaskName {
        task: labels::dns_labels(&task.name)?,
        framework: labels::dns_labels(framework)?,
    };
    let mut endpoints = Vec::new();
    let mut push = |endpoint: TaskEndpoint| {
        if endpoints.len() < MAX_TASK_ENDPOINTS && !endpoints.contains(&endpoint) {
            endpoints.push(endpoint);
        }
    };
    let addresses: &[IpAddr] = if task.ips.is_empty() {
        std::slice::from_ref(&agent)
    } else {
        &task.ips
    };
    for &ip in addresses {
        push(TaskEndpoint::Address(ip));
    }
    let mut any_discovery = false;
    for port in &task.ports {
        let RawPort::Number(number) = port.number else {
            continue;
        };
        let protocol = match port.protocol.as_deref().map(labels::parse_protocol) {
            None => Protocol::Tcp,
            Some(Ok(protocol)) => protocol,
            Some(Err(_)) => continue,
        };
        any_discovery = true;
        if port.container_scope {
            let Some(port) = u16::try_from(number).ok().filter(|&p| p != 0) else {
                continue;
            };
            for &ip in &task.ips {
                push(TaskEndpoint::Port { protocol, ip, port });
            }
        } else {
            let host = host_port(number, protocol, &task.port_mappings);
            if let Some(port) = u16::try_from(host).ok().filter(|&p| p != 0) {
                push(TaskEndpoint::Port {
                    protocol,
                    ip: agent,
                    port,
                });
            }
        }
    }
    if !any_discovery {
        let mut n = 0;
        while let Some(number) = task.resource_ports.nth(n) {
            n += 1;
            if n as usize > MAX_TASK_ENDPOINTS {
                break;
            }
            let Some(port) = u16::try_from(number).ok().filter(|&p| p != 0) else {
                continue;
            };
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                push(TaskEndpoint::Port {
                    protocol,
                    ip: agent,
                    port,
                });
            }
        }
    }
    Some((name, endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesos::task::{PortMap, PortRanges, TaskPort};

    const AGENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));

    fn task(name: &str) -> Task {
        Task {
            id: format!("{name}.1234"),
            name: name.into(),
            framework_id: "fw".into(),
            agent_id: "agent".into(),
            state: TaskState::Running,
            healthy: None,
            has_health_check: false,
            ips: Vec::new(),
            ports: Vec::new(),
            vip_port_labels: Vec::new(),
            resource_ports: PortRanges::default(),
            port_mappings: Vec::new(),
        }
    }

    fn port(number: u64, protocol: Option<&str>, container_scope: bool) -> TaskPort {
        TaskPort {
            number: RawPort::Number(number),
            protocol: protocol.map(str::to_string),
            vip_labels: Vec::new(),
            container_scope,
        }
    }

    fn tcp(ip: IpAddr, port: u16) -> TaskEndpoint {
        TaskEndpoint::Port {
            protocol: Protocol::Tcp,
            ip,
            port,
        }
    }

    #[test]
    fn only_running_tasks_with_a_name_have_records() {
        let mut t = task("/Web_App.group");
        let (name, endpoints) = task_records(&t, "Marathon", AGENT).unwrap();
        assert_eq!(name.to_string(), "web-app.group.marathon");
        assert_eq!(endpoints, [TaskEndpoint::Address(AGENT)]);
        for state in [TaskState::Staging, TaskState::Killing, TaskState::Finished] {
            t.state = state;
            assert_eq!(task_records(&t, "marathon", AGENT), None, "{state}");
        }
        assert_eq!(task_records(&task("%%"), "marathon", AGENT), None);
        assert_eq!(task_records(&task("web"), "", AGENT), None);
    }

    #[test]
    fn host_ports_are_at_the_agent_and_container_ports_at_the_container() {
        let container: IpAddr = "9.0.1.6".parse().unwrap();
        let mut t = task("web");
        t.ips = vec![container];
        t.ports = vec![
            port(80, None, true),
            port(53, Some("udp"), false),
            port(8080, Some("tcp"), false),
            port(1, Some("sctp"), false),
            port(0, None, false),
        ];
        t.port_mappings = vec![PortMap {
            host_port: 31000,
            container_port: 8080,
            protocol: None,
        }];
        let (_, endpoints) = task_records(&t, "marathon", AGENT).unwrap();
        assert_eq!(
            endpoints,
            [
                TaskEndpoint::Address(container),
                tcp(container, 80),
                TaskEndpoint::Port {
                    protocol: Protocol::Udp,
                    ip: AGENT,
                    port: 53
                },
                tcp(AGENT, 31000),
            ]
        );
    }

    #[test]
    fn resource_ports_count_as_both_protocols_and_are_bounded() {
        let mut t = task("web");
        t.resource_ports = PortRanges::parse_state("[31362-31362, 31634-31634]");
        let (_, endpoints) = task_records(&t, "marathon", AGENT).unwrap();
        assert_eq!(endpoints.len(), 5);
        assert!(endpoints.contains(&tcp(AGENT, 31634)));
        t.resource_ports = PortRanges::parse_state("[1-65535]");
        let (_, endpoints) = task_records(&t, "marathon", AGENT).unwrap();
        assert_eq!(endpoints.len(), MAX_TASK_ENDPOINTS);
    }
}
