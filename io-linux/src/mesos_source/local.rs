//! This host's share of a whole cluster's state: the tasks of the Mesos agent(s) at this
//! host's agent address, as a master's `SUBSCRIBE` stream describes every agent's tasks.
//!
//! Invariants:
//! - An agent is local when its address, by the core's own rule ([`Agent::resolve`]: its
//!   address, else an IP-literal hostname, else the address in its pid), is `agent_ip`. No
//!   DNS: an agent known only by a hostname that is not an IP literal, and without a pid, is
//!   not local (the master sends its pid once it has re-registered).
//! - [`services`] gives exactly the VIP backends that the core's extraction of the whole
//!   state gives for the backends whose agent is `agent_ip` (checked against that oracle in
//!   the session tests), but extracts only the local tasks: the cost and the warnings are
//!   those of this host's tasks, not the cluster's.
//! - Pure and deterministic: ordered maps in, ordered maps out.

use super::outcome::Good;
use minuteman_core::mesos::{extract_state, Agent, ClusterState, ExtractOptions};
use std::net::IpAddr;

/// The ids of the agents at `agent_ip`, in id order.
pub(crate) fn agents_at(state: &ClusterState, agent_ip: IpAddr) -> Vec<String> {
    state
        .agents
        .iter()
        .filter(|(_, agent)| is_at(agent, agent_ip))
        .map(|(id, _)| id.clone())
        .collect()
}

fn is_at(agent: &Agent, agent_ip: IpAddr) -> bool {
    agent.resolve(None) == Ok(agent_ip)
}

/// The VIP backends of the tasks on `agents` (ids from [`agents_at`]), every one reported
/// under `agent_ip`.
pub(crate) fn services(state: &ClusterState, agents: &[String], agent_ip: IpAddr) -> Good {
    let mut local = ClusterState::new();
    if !agents.is_empty() {
        for ((framework_id, task_id), task) in &state.tasks {
            if !agents.contains(&task.agent_id) {
                continue;
            }
            local
                .tasks
                .insert((framework_id.clone(), task_id.clone()), task.clone());
            if let Some(name) = state.frameworks.get(framework_id) {
                if !local.frameworks.contains_key(framework_id) {
                    local.frameworks.insert(framework_id.clone(), name.clone());
                }
            }
        }
        for id in agents {
            if let Some(agent) = state.agents.get(id) {
                local.agents.insert(id.clone(), agent.clone());
            }
        }
    }
    let extracted = extract_state(&local, &ExtractOptions::with_agent_ip(agent_ip));
    Good {
        services: extracted.vips,
        tasks: extracted.tasks,
        warnings: extracted.warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minuteman_core::mesos::Document;

    const ONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const TWO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    /// A `GET_STATE` with agents S1 (10.0.0.1, by hostname), S2 (a name, 10.0.0.2 in its
    /// pid) and S3 (a name, no pid); one task on each, all on VIP `/web:80`.
    fn state() -> ClusterState {
        let task = |id: &str, agent: &str, port: u16| {
            format!(
                r#"{{"task_id":{{"value":"{id}"}},"framework_id":{{"value":"F"}},"agent_id":{{"value":"{agent}"}},"state":"TASK_RUNNING","discovery":{{"ports":{{"ports":[{{"number":{port},"protocol":"tcp","labels":{{"labels":[{{"key":"VIP_0","value":"/web:80"}}]}}}}]}}}}}}"#
            )
        };
        let json = format!(
            r#"{{"type":"GET_STATE","get_state":{{
              "get_agents":{{"agents":[
                {{"agent_info":{{"id":{{"value":"S1"}},"hostname":"10.0.0.1"}},"pid":"slave(1)@10.0.0.1:5051"}},
                {{"agent_info":{{"id":{{"value":"S2"}},"hostname":"agent-2.example"}},"pid":"slave(1)@10.0.0.2:5051"}},
                {{"agent_info":{{"id":{{"value":"S3"}},"hostname":"agent-3.example"}}}}
              ]}},
              "get_frameworks":{{"frameworks":[{{"framework_info":{{"id":{{"value":"F"}},"name":"marathon"}}}}]}},
              "get_tasks":{{"tasks":[{},{},{}]}}
            }}}}"#,
            task("a", "S1", 31001),
            task("b", "S2", 31002),
            task("c", "S3", 31003)
        );
        let Document::GetState(get_state) = Document::parse(json.as_bytes()).unwrap() else {
            panic!("not a GET_STATE");
        };
        ClusterState::from_get_state(&get_state).0
    }

    fn ports(good: &Good) -> Vec<(IpAddr, u16, IpAddr)> {
        good.services
            .vips
            .values()
            .flat_map(|b| b.iter().map(|b| (b.ip, b.port, b.agent)))
            .collect()
    }

    #[test]
    fn only_the_tasks_of_the_agent_at_this_address() {
        let state = state();
        assert_eq!(agents_at(&state, ONE), ["S1"]);
        assert_eq!(
            agents_at(&state, TWO),
            ["S2"],
            "the pid when the name is no IP"
        );
        let one = services(&state, &agents_at(&state, ONE), ONE);
        assert_eq!(ports(&one), [(ONE, 31001, ONE)]);
        assert!(one.warnings.is_empty(), "{:?}", one.warnings);
        let two = services(&state, &agents_at(&state, TWO), TWO);
        assert_eq!(ports(&two), [(TWO, 31002, TWO)]);
        // The named VIP keeps its framework's name.
        let names: Vec<String> = two.services.vips.keys().map(|v| v.to_string()).collect();
        assert_eq!(names, ["tcp web.marathon:80"]);
    }

    #[test]
    fn no_agent_here_is_an_empty_set_without_warnings() {
        let state = state();
        let elsewhere: IpAddr = "10.0.0.3".parse().unwrap();
        assert!(agents_at(&state, elsewhere).is_empty());
        let none = services(&state, &[], elsewhere);
        assert!(none.services.is_empty());
        assert!(
            none.warnings.is_empty(),
            "S3's unresolved name is not ours to report"
        );
    }
}
