//! The operator API's `SUBSCRIBE` stream as a state machine: RecordIO bytes (or parsed
//! events) in, the current agents, frameworks and tasks held, the VIP set extracted on
//! demand.
//!
//! Invariants:
//! - `SUBSCRIBED` replaces the whole state; every other event changes only what it names:
//!   `TASK_ADDED` adds (or replaces) a task, `TASK_UPDATED` sets its state and latest status,
//!   a terminal state forgets it, `FRAMEWORK_REMOVED` and `AGENT_REMOVED` forget the
//!   framework or agent and every task it had. `HEARTBEAT` changes nothing.
//! - A malformed or unknown event changes nothing; it is counted, and a malformed one is
//!   reported to the caller. Only broken framing (RecordIO) stops the stream.
//! - Bounded: agents, frameworks and tasks are capped by [`StreamLimits`]; a new entry over
//!   the cap is dropped and counted (updates of known entries always apply). The RecordIO
//!   decoder is bounded by the record size limit.
//! - Deterministic: the state is kept in `BTreeMap`s.

use super::cluster::ClusterState;
use super::document::{Document, EventKind, OperatorEvent};
use super::error::MesosError;
use super::model::{self, TaskUpdated};
use super::recordio::{RecordIoDecoder, DEFAULT_MAX_RECORD_SIZE};
use super::task::{self, Task, TaskState};

/// Caps on what a stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_tasks: usize,
    pub max_agents: usize,
    pub max_frameworks: usize,
    /// Largest RecordIO record (one event).
    pub max_record_size: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_tasks: 250_000,
            max_agents: 50_000,
            max_frameworks: 10_000,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
        }
    }
}

/// What the stream has seen. Counters only increase; [`MesosStream::reset`] keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Events applied, by kind (unknown ones included).
    pub subscribed: u64,
    pub task_added: u64,
    pub task_updated: u64,
    pub agent_added: u64,
    pub agent_removed: u64,
    pub framework_added: u64,
    pub framework_updated: u64,
    pub framework_removed: u64,
    pub heartbeats: u64,
    pub unknown_events: u64,
    /// Records that were not JSON or not a Mesos event, and events missing a required id.
    pub malformed_events: u64,
    /// Tasks of a `SUBSCRIBED` state that could not be read (no id) and were skipped.
    pub unreadable_tasks: u64,
    /// `TASK_UPDATED` for a task the stream does not hold.
    pub updates_for_unknown_tasks: u64,
    /// Tasks, agents, frameworks dropped because a cap was reached.
    pub tasks_over_limit: u64,
    pub agents_over_limit: u64,
    pub frameworks_over_limit: u64,
    /// Tasks forgotten because their framework or agent was removed.
    pub tasks_removed_with_owner: u64,
}

impl StreamCounters {
    fn count(&mut self, kind: EventKind) {
        let slot = match kind {
            EventKind::Subscribed => &mut self.subscribed,
            EventKind::TaskAdded => &mut self.task_added,
            EventKind::TaskUpdated => &mut self.task_updated,
            EventKind::AgentAdded => &mut self.agent_added,
            EventKind::AgentRemoved => &mut self.agent_removed,
            EventKind::FrameworkAdded => &mut self.framework_added,
            EventKind::FrameworkUpdated => &mut self.framework_updated,
            EventKind::FrameworkRemoved => &mut self.framework_removed,
            EventKind::Heartbeat => &mut self.heartbeats,
            EventKind::Unknown => &mut self.unknown_events,
        };
        *slot += 1;
    }

    /// Events applied, of every kind.
    pub fn events(&self) -> u64 {
        self.subscribed
            + self.task_added
            + self.task_updated
            + self.agent_added
            + self.agent_removed
            + self.framework_added
            + self.framework_updated
            + self.framework_removed
            + self.heartbeats
            + self.unknown_events
    }
}

/// What one [`MesosStream::feed`] did.
#[derive(Debug, Default)]
pub struct FeedOutcome {
    /// Events applied, in order.
    pub applied: Vec<EventKind>,
    /// Records rejected (not JSON, wrong shape, missing ids); the stream carried on.
    pub errors: Vec<MesosError>,
}

/// The stream state machine.
#[derive(Debug, Clone)]
pub struct MesosStream {
    state: ClusterState,
    limits: StreamLimits,
    counters: StreamCounters,
    decoder: RecordIoDecoder,
    subscribed: bool,
}

impl Default for MesosStream {
    fn default() -> Self {
        MesosStream::new(StreamLimits::default())
    }
}

impl MesosStream {
    pub fn new(limits: StreamLimits) -> MesosStream {
        MesosStream {
            state: ClusterState::new(),
            decoder: RecordIoDecoder::new(limits.max_record_size),
            limits,
            counters: StreamCounters::default(),
            subscribed: false,
        }
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    pub fn into_state(self) -> ClusterState {
        self.state
    }

    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    pub fn limits(&self) -> &StreamLimits {
        &self.limits
    }

    /// A `SUBSCRIBED` event has been applied since the start or the last reset.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    /// A new connection: forget partial framing. The state is kept (it is the last good
    /// one) until the next `SUBSCRIBED` replaces it.
    pub fn reset(&mut self) {
        self.decoder.reset();
        self.subscribed = false;
    }

    /// Consumes RecordIO bytes; applies every complete event in order. A RecordIO error is
    /// returned (the connection must be reset); a malformed event is reported in the
    /// outcome and skipped.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<FeedOutcome, MesosError> {
        let mut records = Vec::new();
        let framing = self.decoder.feed(chunk, &mut records);
        let mut outcome = FeedOutcome::default();
        for record in records {
            match self.handle_record(&record) {
                Ok(kind) => outcome.applied.push(kind),
                Err(e) => outcome.errors.push(e),
            }
        }
        framing?;
        Ok(outcome)
    }

    /// Parses and applies one event (one record's JSON).
    pub fn handle_record(&mut self, json: &[u8]) -> Result<EventKind, MesosError> {
        let parsed = Document::parse(json).and_then(|document| match document {
            Document::Event(event) => Ok(event),
            // A GET_STATE response is the same state a SUBSCRIBED event carries.
            Document::GetState(state) => Ok(OperatorEvent::Subscribed(state)),
            other => Err(MesosError::Shape(format!(
                "expected an operator-API event, got {}",
                other.kind()
            ))),
        });
        match parsed {
            Ok(event) => self.apply(&event),
            Err(e) => {
                self.counters.malformed_events += 1;
                Err(e)
            }
        }
    }

    /// Applies one parsed event.
    pub fn apply(&mut self, event: &OperatorEvent<'_>) -> Result<EventKind, MesosError> {
        let kind = event.kind();
        let result = match event {
            OperatorEvent::Subscribed(get_state) => {
                let (state, skipped) = ClusterState::from_get_state(get_state);
                self.counters.unreadable_tasks += skipped.len() as u64;
                self.replace_state(state);
                self.subscribed = true;
                Ok(())
            }
            OperatorEvent::TaskAdded(api_task) => match Task::from_api(api_task) {
                Ok(task) => {
                    self.add_task(task);
                    Ok(())
                }
                Err(reason) => Err(MesosError::Shape(format!("TASK_ADDED: {reason}"))),
            },
            OperatorEvent::TaskUpdated(update) => self.update_task(update),
            OperatorEvent::AgentAdded(agent) => match &agent.agent_info {
                Some(info) => {
                    let known = model::id_str(&info.id)
                        .is_some_and(|id| self.state.agents.contains_key(id));
                    if !known && self.state.agents.len() >= self.limits.max_agents {
                        self.counters.agents_over_limit += 1;
                        Ok(())
                    } else if self.state.upsert_agent(info, model::text_str(&agent.pid)) {
                        Ok(())
                    } else {
                        Err(MesosError::Shape("AGENT_ADDED: agent without id".into()))
                    }
                }
                None => Err(MesosError::Shape("AGENT_ADDED: no agent_info".into())),
            },
            OperatorEvent::AgentRemoved(id) => {
                self.state.agents.remove(id.as_ref());
                self.counters.tasks_removed_with_owner += self.state.remove_agent_tasks(id) as u64;
                Ok(())
            }
            OperatorEvent::FrameworkAdded(info) | OperatorEvent::FrameworkUpdated(info) => {
                let known = model::id_str(&info.id)
                    .is_some_and(|id| self.state.frameworks.contains_key(id));
                if !known && self.state.frameworks.len() >= self.limits.max_frameworks {
                    self.counters.frameworks_over_limit += 1;
                    Ok(())
                } else if self.state.upsert_framework(info) {
                    Ok(())
                } else {
                    Err(MesosError::Shape(format!(
                        "{}: framework without id",
                        kind.as_str()
                    )))
                }
            }
            OperatorEvent::FrameworkRemoved(info) => match model::id_str(&info.id) {
                Some(id) => {
                    self.state.frameworks.remove(id);
                    self.counters.tasks_removed_with_owner +=
                        self.state.remove_framework_tasks(id) as u64;
                    Ok(())
                }
                None => Err(MesosError::Shape(
                    "FRAMEWORK_REMOVED: framework without id".into(),
                )),
            },
            OperatorEvent::Heartbeat | OperatorEvent::Unknown(_) => Ok(()),
        };
        match result {
            Ok(()) => {
                self.counters.count(kind);
                Ok(kind)
            }
            Err(e) => {
                self.counters.malformed_events += 1;
                Err(e)
            }
        }
    }

    fn replace_state(&mut self, mut state: ClusterState) {
        let limits = &self.limits;
        let counters = &mut self.counters;
        truncate(
            &mut state.agents,
            limits.max_agents,
            &mut counters.agents_over_limit,
        );
        truncate(
            &mut state.frameworks,
            limits.max_frameworks,
            &mut counters.frameworks_over_limit,
        );
        truncate(
            &mut state.tasks,
            limits.max_tasks,
            &mut counters.tasks_over_limit,
        );
        self.state = state;
    }

    fn add_task(&mut self, task: Task) {
        let key = (task.framework_id.clone(), task.id.clone());
        let known = self.state.tasks.contains_key(&key);
        if !known && !task.state.is_terminal() && self.state.tasks.len() >= self.limits.max_tasks {
            self.counters.tasks_over_limit += 1;
            return;
        }
        self.state.insert_task(task);
    }

    fn update_task(&mut self, update: &TaskUpdated<'_>) -> Result<(), MesosError> {
        let framework_id = model::id_str(&update.framework_id)
            .ok_or_else(|| MesosError::Shape("TASK_UPDATED: no framework_id".into()))?;
        let status = update
            .status
            .as_ref()
            .ok_or_else(|| MesosError::Shape("TASK_UPDATED: no status".into()))?;
        let task_id = model::id_str(&status.task_id)
            .ok_or_else(|| MesosError::Shape("TASK_UPDATED: no status.task_id".into()))?;
        let state = model::text_str(&update.state)
            .or_else(|| model::text_str(&status.state))
            .map_or(TaskState::Other, TaskState::parse);
        let key = (framework_id.to_string(), task_id.to_string());
        if state.is_terminal() {
            if self.state.tasks.remove(&key).is_none() {
                self.counters.updates_for_unknown_tasks += 1;
            }
            return Ok(());
        }
        let Some(task) = self.state.tasks.get_mut(&key) else {
            self.counters.updates_for_unknown_tasks += 1;
            return Ok(());
        };
        task.state = state;
        task.healthy = status.healthy;
        let ips = task::status_ips(status);
        if !ips.is_empty() {
            task.ips = ips;
        }
        task::status_mappings(status, &mut task.port_mappings);
        Ok(())
    }
}

/// Keeps the first `max` entries (in key order), counting the rest.
fn truncate<K: Ord + Clone, V>(
    map: &mut std::collections::BTreeMap<K, V>,
    max: usize,
    dropped: &mut u64,
) {
    if map.len() > max {
        *dropped += (map.len() - max) as u64;
        if let Some(first_dropped) = map.keys().nth(max).cloned() {
            map.split_off(&first_dropped);
        }
    }
}

/// The state one document describes: a `/state` or `GET_STATE` document's whole state, or
/// for a single event the state that event alone describes. Tasks that cannot be read (no
/// id) are skipped with a warning.
pub fn cluster_state(document: &Document<'_>) -> (ClusterState, Vec<String>) {
    match document {
        Document::AgentState(state) => ClusterState::from_agent_state(state),
        Document::MasterState(state) => ClusterState::from_master_state(state),
        Document::GetState(state) => ClusterState::from_get_state(state),
        Document::Event(event) => {
            let mut stream = MesosStream::default();
            let warnings = match stream.apply(event) {
                Ok(_) => Vec::new(),
                Err(e) => vec![e.to_string()],
            };
            (stream.into_state(), warnings)
        }
    }
}
