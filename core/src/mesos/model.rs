//! Serde models of the Mesos JSON this crate reads: agent and master `/state`, the v1
//! operator API's `GET_STATE` response and `SUBSCRIBE` events.
//!
//! Invariants:
//! - Only the fields that VIP extraction needs are declared; serde skips everything else
//!   without building it, which keeps a large `/state` cheap to parse.
//! - Every field is optional (`Option`), so a missing or `null` field is never an error;
//!   a field present with the wrong JSON type is (that is a document of the wrong shape).
//! - Strings borrow from the input when they contain no escapes ([`Text`]).
//! - Numbers that end up as ports are kept as [`serde_json::Number`], so an out-of-range or
//!   fractional port is a warning at extraction, not a failed parse.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Number;
use std::borrow::Cow;

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The protobuf-JSON wrapper of ids: `{"value": "..."}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Id<'a> {
    #[serde(borrow)]
    pub value: Option<Text<'a>>,
}

/// Shorthand used by the converters: the string inside an optional `{"value": ...}`.
pub fn id_str<'s>(id: &'s Option<Id<'_>>) -> Option<&'s str> {
    id.as_ref()?.value.as_ref().map(Text::as_str)
}

/// Shorthand: the string of an optional [`Text`].
pub fn text_str<'s>(text: &'s Option<Text<'_>>) -> Option<&'s str> {
    text.as_ref().map(Text::as_str)
}

/// One `{key, value}` label.
#[derive(Debug, Clone, Deserialize)]
pub struct Label<'a> {
    #[serde(borrow)]
    pub key: Option<Text<'a>>,
    #[serde(borrow)]
    pub value: Option<Text<'a>>,
}

/// The protobuf-JSON wrapper of label lists: `{"labels": [...]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Labels<'a> {
    #[serde(borrow)]
    pub labels: Option<Vec<Label<'a>>>,
}

// ----- shared by every format -------------------------------------------------------------

/// `task.discovery`.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery<'a> {
    #[serde(borrow)]
    pub ports: Option<DiscoveryPorts<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DiscoveryPorts<'a> {
    #[serde(borrow)]
    pub ports: Option<Vec<DiscoveryPort<'a>>>,
}

/// `task.discovery.ports.ports[]`.
#[derive(Debug, Clone, Deserialize)]
pub struct DiscoveryPort<'a> {
    pub number: Option<Number>,
    #[serde(borrow)]
    pub protocol: Option<Text<'a>>,
    #[serde(borrow)]
    pub labels: Option<Labels<'a>>,
}

/// One status update of a task (`statuses[]`, or the `status` of `TASK_UPDATED`).
#[derive(Debug, Clone, Deserialize)]
pub struct Status<'a> {
    #[serde(borrow)]
    pub task_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub state: Option<Text<'a>>,
    pub healthy: Option<bool>,
    pub timestamp: Option<f64>,
    #[serde(borrow)]
    pub container_status: Option<ContainerStatus<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContainerStatus<'a> {
    #[serde(borrow)]
    pub network_infos: Option<Vec<NetworkInfo<'a>>>,
}

/// `network_infos[]`, in a container status or in a task's container info.
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkInfo<'a> {
    #[serde(borrow)]
    pub ip_addresses: Option<Vec<IpAddress<'a>>>,
    /// The pre-1.0 single address.
    #[serde(borrow)]
    pub ip_address: Option<Text<'a>>,
    #[serde(borrow)]
    pub port_mappings: Option<Vec<PortMapping<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IpAddress<'a> {
    #[serde(borrow)]
    pub ip_address: Option<Text<'a>>,
}

/// A Docker or UCR port mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct PortMapping<'a> {
    pub host_port: Option<Number>,
    pub container_port: Option<Number>,
    #[serde(borrow)]
    pub protocol: Option<Text<'a>>,
}

/// `task.container`.
#[derive(Debug, Clone, Deserialize)]
pub struct Container<'a> {
    #[serde(borrow)]
    pub docker: Option<Docker<'a>>,
    #[serde(borrow)]
    pub network_infos: Option<Vec<NetworkInfo<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Docker<'a> {
    #[serde(borrow)]
    pub port_mappings: Option<Vec<PortMapping<'a>>>,
}

// ----- agent and master /state ------------------------------------------------------------

/// An agent's or a master's `/state` (the two share their task shape), taken from the
/// top-level fields of an [`Envelope`].
#[derive(Debug, Clone, Default)]
pub struct StateDoc<'a> {
    pub id: Option<Text<'a>>,
    pub pid: Option<Text<'a>>,
    pub hostname: Option<Text<'a>>,
    pub flags: Option<Flags<'a>>,
    pub frameworks: Option<Vec<StateFramework<'a>>>,
    /// Master only.
    pub slaves: Option<Vec<Slave<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Flags<'a> {
    #[serde(borrow)]
    pub ip: Option<Text<'a>>,
}

/// `frameworks[]` of a `/state`; `completed_tasks` and `completed_executors` are not read.
#[derive(Debug, Clone, Deserialize)]
pub struct StateFramework<'a> {
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    /// Master `/state`.
    #[serde(borrow)]
    pub tasks: Option<Vec<StateTask<'a>>>,
    /// Agent `/state`.
    #[serde(borrow)]
    pub executors: Option<Vec<Executor<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Executor<'a> {
    #[serde(borrow)]
    pub tasks: Option<Vec<StateTask<'a>>>,
}

/// `slaves[]` of a master `/state`.
#[derive(Debug, Clone, Deserialize)]
pub struct Slave<'a> {
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    #[serde(borrow)]
    pub pid: Option<Text<'a>>,
    #[serde(borrow)]
    pub hostname: Option<Text<'a>>,
}

/// A task in a `/state` document.
#[derive(Debug, Clone, Deserialize)]
pub struct StateTask<'a> {
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    #[serde(borrow)]
    pub framework_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub slave_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub state: Option<Text<'a>>,
    #[serde(borrow)]
    pub statuses: Option<Vec<Status<'a>>>,
    /// `[{key, value}]` (no wrapper in `/state`).
    #[serde(borrow)]
    pub labels: Option<Vec<Label<'a>>>,
    #[serde(borrow)]
    pub discovery: Option<Discovery<'a>>,
    #[serde(borrow)]
    pub container: Option<Container<'a>>,
    #[serde(borrow)]
    pub resources: Option<StateResources<'a>>,
    pub health_check: Option<IgnoredAny>,
}

/// `resources` of a `/state` task: `ports` is a string like `"[31362-31362, 31634-31634]"`.
#[derive(Debug, Clone, Deserialize)]
pub struct StateResources<'a> {
    #[serde(borrow)]
    pub ports: Option<Text<'a>>,
}

// ----- operator API v1 --------------------------------------------------------------------

/// `get_state` of a `GET_STATE` response or of a `SUBSCRIBED` event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GetState<'a> {
    #[serde(borrow)]
    pub get_tasks: Option<GetTasks<'a>>,
    #[serde(borrow)]
    pub get_frameworks: Option<GetFrameworks<'a>>,
    #[serde(borrow)]
    pub get_agents: Option<GetAgents<'a>>,
}

/// Master responses carry `tasks`; agent responses carry `launched_tasks`. Completed,
/// pending, orphan and unreachable tasks are not read.
#[derive(Debug, Clone, Deserialize)]
pub struct GetTasks<'a> {
    #[serde(borrow)]
    pub tasks: Option<Vec<ApiTask<'a>>>,
    #[serde(borrow)]
    pub launched_tasks: Option<Vec<ApiTask<'a>>>,
}

/// `completed_frameworks` is not read.
#[derive(Debug, Clone, Deserialize)]
pub struct GetFrameworks<'a> {
    #[serde(borrow)]
    pub frameworks: Option<Vec<ApiFramework<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiFramework<'a> {
    #[serde(borrow)]
    pub framework_info: Option<FrameworkInfo<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FrameworkInfo<'a> {
    #[serde(borrow)]
    pub id: Option<Id<'a>>,
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
}

/// `recovered_agents` are bare agent infos (a master after failover).
#[derive(Debug, Clone, Deserialize)]
pub struct GetAgents<'a> {
    #[serde(borrow)]
    pub agents: Option<Vec<ApiAgent<'a>>>,
    #[serde(borrow)]
    pub recovered_agents: Option<Vec<AgentInfo<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiAgent<'a> {
    #[serde(borrow)]
    pub agent_info: Option<AgentInfo<'a>>,
    #[serde(borrow)]
    pub pid: Option<Text<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentInfo<'a> {
    #[serde(borrow)]
    pub id: Option<Id<'a>>,
    #[serde(borrow)]
    pub hostname: Option<Text<'a>>,
}

/// A task in the operator API.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiTask<'a> {
    #[serde(borrow)]
    pub task_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    #[serde(borrow)]
    pub framework_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub agent_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub state: Option<Text<'a>>,
    #[serde(borrow)]
    pub statuses: Option<Vec<Status<'a>>>,
    /// `{"labels": [...]}` in the operator API.
    #[serde(borrow)]
    pub labels: Option<Labels<'a>>,
    #[serde(borrow)]
    pub discovery: Option<Discovery<'a>>,
    #[serde(borrow)]
    pub container: Option<Container<'a>>,
    #[serde(borrow)]
    pub resources: Option<Vec<Resource<'a>>>,
    pub health_check: Option<IgnoredAny>,
}

/// One resource of an operator-API task; only `ports` ranges are read.
#[derive(Debug, Clone, Deserialize)]
pub struct Resource<'a> {
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    pub ranges: Option<Ranges>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ranges {
    pub range: Option<Vec<Range>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    pub begin: Option<Number>,
    pub end: Option<Number>,
}

// ----- SUBSCRIBE events -------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub struct Subscribed<'a> {
    #[serde(borrow)]
    pub get_state: Option<GetState<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TaskAdded<'a> {
    #[serde(borrow)]
    pub task: Option<ApiTask<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TaskUpdated<'a> {
    #[serde(borrow)]
    pub framework_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub status: Option<Status<'a>>,
    /// The task's state after the update (more reliable than `status.state`).
    #[serde(borrow)]
    pub state: Option<Text<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentAdded<'a> {
    #[serde(borrow)]
    pub agent: Option<ApiAgent<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentRemoved<'a> {
    #[serde(borrow)]
    pub agent_id: Option<Id<'a>>,
}

/// `FRAMEWORK_ADDED` and `FRAMEWORK_UPDATED`.
#[derive(Debug, Clone, Deserialize)]
pub struct FrameworkChanged<'a> {
    #[serde(borrow)]
    pub framework: Option<ApiFramework<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FrameworkRemoved<'a> {
    #[serde(borrow)]
    pub framework_info: Option<FrameworkInfo<'a>>,
}

/// Every top-level field of every shape, parsed in one pass; [`super::Document::parse`]
/// decides which shape it was.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Option<Text<'a>>,
    // `/state` fields, listed here rather than flattened: `#[serde(flatten)]` would buffer
    // every unknown field (a master's completed tasks) instead of skipping it.
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    #[serde(borrow)]
    pub pid: Option<Text<'a>>,
    #[serde(borrow)]
    pub hostname: Option<Text<'a>>,
    #[serde(borrow)]
    pub flags: Option<Flags<'a>>,
    #[serde(borrow)]
    pub frameworks: Option<Vec<StateFramework<'a>>>,
    #[serde(borrow)]
    pub slaves: Option<Vec<Slave<'a>>>,
    #[serde(borrow)]
    pub get_state: Option<GetState<'a>>,
    #[serde(borrow)]
    pub subscribed: Option<Subscribed<'a>>,
    #[serde(borrow)]
    pub task_added: Option<TaskAdded<'a>>,
    #[serde(borrow)]
    pub task_updated: Option<TaskUpdated<'a>>,
    #[serde(borrow)]
    pub agent_added: Option<AgentAdded<'a>>,
    #[serde(borrow)]
    pub agent_removed: Option<AgentRemoved<'a>>,
    #[serde(borrow)]
    pub framework_added: Option<FrameworkChanged<'a>>,
    #[serde(borrow)]
    pub framework_updated: Option<FrameworkChanged<'a>>,
    #[serde(borrow)]
    pub framework_removed: Option<FrameworkRemoved<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_borrow_unless_escaped() {
        let plain: Id<'_> = serde_json::from_str(r#"{"value":"abc"}"#).unwrap();
        assert!(matches!(plain.value, Some(Text(Cow::Borrowed("abc")))));
        let escaped: Id<'_> = serde_json::from_str(r#"{"value":"a\/c"}"#).unwrap();
        assert!(matches!(escaped.value, Some(Text(Cow::Owned(ref s))) if s == "a/c"));
    }
}
