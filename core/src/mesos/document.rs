//! Recognising what a Mesos JSON document is: an agent `/state`, a master `/state`, an
//! operator-API `GET_STATE` response, or one `SUBSCRIBE` event.
//!
//! Invariants:
//! - [`Document::parse`] reads the bytes once (one serde pass over [`Envelope`]) and never
//!   panics; any input that is not one of the shapes is a [`MesosError`], never a guess.
//! - Detection: a `type` field means the operator API (`GET_STATE`, or an event; an unknown
//!   event type is kept as [`OperatorEvent::Unknown`] so a stream can count and skip it); without
//!   `type`, a `slaves` list or a `master@` pid means a master `/state`, and `frameworks`,
//!   `flags` or a pid means an agent `/state`.

use super::error::MesosError;
use super::model::{
    self, ApiAgent, ApiTask, Envelope, FrameworkInfo, GetState, StateDoc, TaskUpdated, Text,
};
use std::borrow::Cow;

/// One parsed Mesos document, borrowing from its bytes.
#[derive(Debug, Clone)]
pub enum Document<'a> {
    /// An agent's `/state`: `frameworks[].executors[].tasks[]`, all on this agent.
    AgentState(StateDoc<'a>),
    /// A master's `/state`: `frameworks[].tasks[]` and `slaves[]`.
    MasterState(StateDoc<'a>),
    /// The response to `{"type":"GET_STATE"}`.
    GetState(GetState<'a>),
    /// One event of a `SUBSCRIBE` stream.
    Event(OperatorEvent<'a>),
}

/// One event of the operator API's `SUBSCRIBE` stream.
#[derive(Debug, Clone)]
pub enum OperatorEvent<'a> {
    /// The first event: the whole state.
    Subscribed(GetState<'a>),
    TaskAdded(ApiTask<'a>),
    TaskUpdated(TaskUpdated<'a>),
    AgentAdded(ApiAgent<'a>),
    /// The agent's id.
    AgentRemoved(Cow<'a, str>),
    FrameworkAdded(FrameworkInfo<'a>),
    FrameworkUpdated(FrameworkInfo<'a>),
    FrameworkRemoved(FrameworkInfo<'a>),
    Heartbeat,
    /// An event type this crate does not know; the stream ignores and counts it.
    Unknown(Cow<'a, str>),
}

/// The kind of an event, for counters and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Subscribed,
    TaskAdded,
    TaskUpdated,
    AgentAdded,
    AgentRemoved,
    FrameworkAdded,
    FrameworkUpdated,
    FrameworkRemoved,
    Heartbeat,
    Unknown,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Subscribed => "SUBSCRIBED",
            EventKind::TaskAdded => "TASK_ADDED",
            EventKind::TaskUpdated => "TASK_UPDATED",
            EventKind::AgentAdded => "AGENT_ADDED",
            EventKind::AgentRemoved => "AGENT_REMOVED",
            EventKind::FrameworkAdded => "FRAMEWORK_ADDED",
            EventKind::FrameworkUpdated => "FRAMEWORK_UPDATED",
            EventKind::FrameworkRemoved => "FRAMEWORK_REMOVED",
            EventKind::Heartbeat => "HEARTBEAT",
            EventKind::Unknown => "unknown",
        }
    }
}

impl OperatorEvent<'_> {
    pub fn kind(&self) -> EventKind {
        match self {
            OperatorEvent::Subscribed(_) => EventKind::Subscribed,
            OperatorEvent::TaskAdded(_) => EventKind::TaskAdded,
            OperatorEvent::TaskUpdated(_) => EventKind::TaskUpdated,
            OperatorEvent::AgentAdded(_) => EventKind::AgentAdded,
            OperatorEvent::AgentRemoved(_) => EventKind::AgentRemoved,
            OperatorEvent::FrameworkAdded(_) => EventKind::FrameworkAdded,
            OperatorEvent::FrameworkUpdated(_) => EventKind::FrameworkUpdated,
            OperatorEvent::FrameworkRemoved(_) => EventKind::FrameworkRemoved,
            OperatorEvent::Heartbeat => EventKind::Heartbeat,
            OperatorEvent::Unknown(_) => EventKind::Unknown,
        }
    }
}

/// What shape a document had, without its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    AgentState,
    MasterState,
    GetState,
    Event(EventKind),
}

impl std::fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocumentKind::AgentState => f.write_str("agent /state"),
            DocumentKind::MasterState => f.write_str("master /state"),
            DocumentKind::GetState => f.write_str("operator API GET_STATE"),
            DocumentKind::Event(kind) => write!(f, "operator API event {}", kind.as_str()),
        }
    }
}

fn missing(kind: &str, field: &str) -> MesosError {
    MesosError::Shape(format!("{kind} event without `{field}`"))
}

impl<'a> Document<'a> {
    /// Parses and classifies one JSON document.
    pub fn parse(bytes: &'a [u8]) -> Result<Document<'a>, MesosError> {
        let envelope: Envelope<'a> =
            serde_json::from_slice(bytes).map_err(MesosError::from_json)?;
        Document::from_envelope(envelope)
    }

    pub fn kind(&self) -> DocumentKind {
        match self {
            Document::AgentState(_) => DocumentKind::AgentState,
            Document::MasterState(_) => DocumentKind::MasterState,
            Document::GetState(_) => DocumentKind::GetState,
            Document::Event(event) => DocumentKind::Event(event.kind()),
        }
    }

    fn from_envelope(envelope: Envelope<'a>) -> Result<Document<'a>, MesosError> {
        let Envelope {
            kind,
            id,
            pid,
            hostname,
            flags,
            frameworks,
            slaves,
            get_state,
            subscribed,
            task_added,
            task_updated,
            agent_added,
            agent_removed,
            framework_added,
            framework_updated,
            framework_removed,
        } = envelope;
        if let Some(Text(kind)) = kind {
            let event = match kind.as_ref() {
                "GET_STATE" => {
                    let state = get_state.ok_or_else(|| missing("GET_STATE", "get_state"))?;
                    return Ok(Document::GetState(state));
                }
                "SUBSCRIBED" => OperatorEvent::Subscribed(
                    subscribed
                        .ok_or_else(|| missing("SUBSCRIBED", "subscribed"))?
                        .get_state
                        .unwrap_or_default(),
                ),
                "TASK_ADDED" => OperatorEvent::TaskAdded(
                    task_added
                        .and_then(|t| t.task)
                        .ok_or_else(|| missing("TASK_ADDED", "task_added.task"))?,
                ),
                "TASK_UPDATED" => OperatorEvent::TaskUpdated(
                    task_updated.ok_or_else(|| missing("TASK_UPDATED", "task_updated"))?,
                ),
                "AGENT_ADDED" => OperatorEvent::AgentAdded(
                    agent_added
                        .and_then(|a| a.agent)
                        .ok_or_else(|| missing("AGENT_ADDED", "agent_added.agent"))?,
                ),
                "AGENT_REMOVED" => OperatorEvent::AgentRemoved(
                    agent_removed
                        .and_then(|a| a.agent_id)
                        .and_then(|id| id.value)
                        .map(|t| t.0)
                        .ok_or_else(|| missing("AGENT_REMOVED", "agent_removed.agent_id"))?,
                ),
                "FRAMEWORK_ADDED" => OperatorEvent::FrameworkAdded(
                    framework_added
                        .and_then(|f| f.framework)
                        .and_then(|f| f.framework_info)
                        .ok_or_else(|| {
                            missing(
                                "FRAMEWORK_ADDED",
                                "framework_added.framework.framework_info",
                            )
                        })?,
                ),
                "FRAMEWORK_UPDATED" => OperatorEvent::FrameworkUpdated(
                    framework_updated
                        .and_then(|f| f.framework)
                        .and_then(|f| f.framework_info)
                        .ok_or_else(|| {
                            missing(
                                "FRAMEWORK_UPDATED",
                                "framework_updated.framework.framework_info",
                            )
                        })?,
                ),
                "FRAMEWORK_REMOVED" => OperatorEvent::FrameworkRemoved(
                    framework_removed
                        .and_then(|f| f.framework_info)
                        .ok_or_else(|| {
                            missing("FRAMEWORK_REMOVED", "framework_removed.framework_info")
                        })?,
                ),
                "HEARTBEAT" => OperatorEvent::Heartbeat,
                _ => OperatorEvent::Unknown(kind),
            };
            return Ok(Document::Event(event));
        }
        let is_master =
            slaves.is_some() || model::text_str(&pid).is_some_and(|pid| pid.starts_with("master@"));
        let is_agent = frameworks.is_some() || flags.is_some() || pid.is_some();
        let state = StateDoc {
            id,
            pid,
            hostname,
            flags,
            frameworks,
            slaves,
        };
        if is_master {
            Ok(Document::MasterState(state))
        } else if is_agent {
            Ok(Document::AgentState(state))
        } else {
            Err(MesosError::Shape(
                "neither a Mesos /state (no `frameworks`, `slaves` or `pid`) nor an \
                 operator-API message (no `type`)"
                    .to_string(),
            ))
        }
    }
}
