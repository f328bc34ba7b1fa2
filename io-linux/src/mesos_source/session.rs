//! One connection's worth of a master's `SUBSCRIBE` stream, without the IO: body bytes in,
//! "this host's services changed, here they are" or a failure out.
//!
//! The bytes go through the core's RecordIO decoder, each record through the core's
//! [`Document::parse`] and [`MesosStream::apply`]; this module adds what the core leaves to
//! the shell: which events are allowed when, which ones can touch this host's tasks, the
//! heartbeat interval the master announced, and the local share of the state ([`local`]).
//!
//! Invariants:
//! - [`Session::reconnect`] starts a connection: partial framing is forgotten and nothing is
//!   derived until this connection's `SUBSCRIBED` has replaced the whole state (a fresh
//!   connection resyncs; events of an old connection never mix with a new one's state).
//! - Any record that is not a well-formed operator-API event, any event before
//!   `SUBSCRIBED`, and any framing error is a failure of the connection (`parse`, or
//!   `too_large` for a record over the limit): a skipped event could leave the state wrong,
//!   and only a resync repairs it. Nothing is derived from a chunk that failed.
//! - [`Fed::derived`] is `Some` after every chunk that applied an event able to change this
//!   host's services (conservatively: `SUBSCRIBED`, framework events, task events of a local
//!   task, agent events that change which agents are local or end a wait, see below), and
//!   then equals [`local::services`] of the whole current state; `HEARTBEAT`s and other
//!   agents' tasks derive nothing.
//! - A master that took over lists the agents it has not heard from yet as *recovered*,
//!   without their tasks. While every agent at this host's address is only recovered
//!   ([`Session::is_waiting_for_agent`]), nothing is derived: an empty task list there means
//!   "unknown", not "all gone", and publishing it would withdraw every local backend on a
//!   master failover. The agent re-registering (`AGENT_ADDED`) or being removed
//!   (`AGENT_REMOVED`) ends the wait.
//! - Bounded: one partial record (at most `max_record_size` bytes) plus the records one
//!   chunk completes; the state is capped by the core's [`StreamLimits`].
//!
//! [`local`]: super::local

use super::local;
use super::outcome::{Good, PollError, Reason};
use minuteman_core::mesos::model;
use minuteman_core::mesos::{
    Document, EventKind, MesosStream, OperatorEvent, RecordIoDecoder, RecordIoError, StreamLimits,
};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

/// The heartbeat interval when `SUBSCRIBED` does not say (Mesos' default).
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// A subscribed stream silent for this many heartbeat intervals is dead.
pub(crate) const MISSED_HEARTBEATS: u32 = 3;
/// Announced intervals are clamped to this range.
const HEARTBEAT_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(300));

/// What one chunk did.
#[derive(Debug, Default)]
pub(crate) struct Fed {
    /// This chunk carried the connection's `SUBSCRIBED`.
    pub subscribed: bool,
    /// This host's services, when an event of the chunk may have changed them.
    pub derived: Option<Good>,
}

/// The stream state and the local view of it.
#[derive(Debug)]
pub(crate) struct Session {
    agent_ip: IpAddr,
    decoder: RecordIoDecoder,
    stream: MesosStream,
    heartbeat: Duration,
    /// Ids of the agents at `agent_ip` in the current state.
    local: Vec<String>,
    /// Ids of this host's agents that `SUBSCRIBED` listed only as recovered, not
    /// re-registered since.
    recovered: BTreeSet<String>,
}

impl Session {
    pub(crate) fn new(agent_ip: IpAddr, limits: StreamLimits) -> Session {
        Session {
            agent_ip,
            decoder: RecordIoDecoder::new(limits.max_record_size),
            stream: MesosStream::new(limits),
            heartbeat: DEFAULT_HEARTBEAT,
            local: Vec::new(),
            recovered: BTreeSet::new(),
        }
    }

    /// A new connection: wait for its `SUBSCRIBED`.
    pub(crate) fn reconnect(&mut self) {
        self.decoder.reset();
        self.stream.reset();
        self.heartbeat = DEFAULT_HEARTBEAT;
        self.recovered.clear();
    }

    /// The address whose agents are this host's.
    pub(crate) fn agent_ip(&self) -> IpAddr {
        self.agent_ip
    }

    /// This connection's `SUBSCRIBED` has arrived.
    pub(crate) fn is_subscribed(&self) -> bool {
        self.stream.is_subscribed()
    }

    /// The interval the master announced in `SUBSCRIBED`.
    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// How long a subscribed stream may stay silent.
    pub(crate) fn silence_limit(&self) -> Duration {
        self.heartbeat.saturating_mul(MISSED_HEARTBEATS)
    }

    /// The ids of the agents at this host's address, as of the last event.
    pub(crate) fn local_agents(&self) -> &[String] {
        &self.local
    }

    /// Every agent at this host's address is one the master has not heard from since it
    /// took over: it does not know their tasks, so nothing is derived.
    pub(crate) fn is_waiting_for_agent(&self) -> bool {
        !self.local.is_empty() && self.local.iter().all(|id| self.recovered.contains(id))
    }

    /// Agents and tasks the stream holds.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let state = self.stream.state();
        (state.agents.len(), state.tasks.len())
    }

    /// Consumes one chunk of the body.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Fed, PollError> {
        let mut records = Vec::new();
        let framing = self.decoder.feed(chunk, &mut records);
        let mut fed = Fed::default();
        let mut touched = false;
        for record in &records {
            touched |= self.handle(record, &mut fed)?;
        }
        framing.map_err(framing_error)?;
        if touched && self.is_subscribed() && !self.is_waiting_for_agent() {
            fed.derived = Some(local::services(
                self.stream.state(),
                &self.local,
                self.agent_ip,
            ));
        }
        Ok(fed)
    }

    /// Applies one record; true if it may have changed this host's services.
    fn handle(&mut self, record: &[u8], fed: &mut Fed) -> Result<bool, PollError> {
        let event = match Document::parse(record) {
            Ok(Document::Event(event)) => event,
            Ok(other) => {
                return Err(bad_record(format!(
                    "expected an operator-API event, got {}",
                    other.kind()
                )))
            }
            Err(e) => return Err(bad_record(e.to_string())),
        };
        let kind = event.kind();
        if kind != EventKind::Subscribed && !self.is_subscribed() {
            return Err(bad_record(format!("{} before SUBSCRIBED", kind.as_str())));
        }
        let touches = self.touches_local(&event);
        let waiting = self.is_waiting_for_agent();
        self.track_recovered(&event);
        self.stream
            .apply(&event)
            .map_err(|e| bad_record(e.to_string()))?;
        Ok(match kind {
            EventKind::Subscribed => {
                self.heartbeat = heartbeat_of(record);
                self.local = local::agents_at(self.stream.state(), self.agent_ip);
                // Only this host's recovered agents matter (a non-local one becomes local
                // only by re-registering, which ends its recovery).
                let local = &self.local;
                self.recovered.retain(|id| local.contains(id));
                fed.subscribed = true;
                true
            }
            EventKind::AgentAdded | EventKind::AgentRemoved => {
                let local = local::agents_at(self.stream.state(), self.agent_ip);
                let changed = local != self.local;
                self.local = local;
                changed || waiting != self.is_waiting_for_agent()
            }
            _ => touches,
        })
    }

    /// Keeps [`Session::recovered`] up to date with `event`.
    fn track_recovered(&mut self, event: &OperatorEvent<'_>) {
        match event {
            OperatorEvent::Subscribed(get_state) => {
                self.recovered.clear();
                let Some(agents) = &get_state.get_agents else {
                    return;
                };
                let infos = agents.recovered_agents.as_deref().unwrap_or(&[]);
                self.recovered.extend(
                    infos
                        .iter()
                        .filter_map(|info| model::id_str(&info.id).map(str::to_string)),
                );
                for agent in agents.agents.as_deref().unwrap_or(&[]) {
                    if let Some(id) = agent.agent_info.as_ref().and_then(|i| model::id_str(&i.id)) {
                        self.recovered.remove(id);
                    }
                }
            }
            OperatorEvent::AgentAdded(agent) => {
                if let Some(id) = agent.agent_info.as_ref().and_then(|i| model::id_str(&i.id)) {
                    self.recovered.remove(id);
                }
            }
            OperatorEvent::AgentRemoved(id) => {
                self.recovered.remove(id.as_ref());
            }
            _ => {}
        }
    }

    /// Whether `event`, applied to the current state, can change this host's services.
    /// Agent events are judged after they apply (by the change of the local agents).
    fn touches_local(&self, event: &OperatorEvent<'_>) -> bool {
        let is_local = |agent_id: &str| self.local.iter().any(|a| a == agent_id);
        let held_here = |framework_id: &str, task_id: &str| {
            self.stream
                .state()
                .tasks
                .get(&(framework_id.to_string(), task_id.to_string()))
                .is_some_and(|task| is_local(&task.agent_id))
        };
        match event {
            OperatorEvent::Subscribed(_)
            | OperatorEvent::FrameworkAdded(_)
            | OperatorEvent::FrameworkUpdated(_)
            | OperatorEvent::FrameworkRemoved(_) => true,
            OperatorEvent::TaskAdded(task) => {
                let ids = (
                    model::id_str(&task.framework_id),
                    model::id_str(&task.task_id),
                    model::id_str(&task.agent_id),
                );
                match ids {
                    (Some(framework), Some(id), Some(agent)) => {
                        is_local(agent) || held_here(framework, id)
                    }
                    _ => true,
                }
            }
            OperatorEvent::TaskUpdated(update) => {
                let task_id = update
                    .status
                    .as_ref()
                    .and_then(|s| model::id_str(&s.task_id));
                match (model::id_str(&update.framework_id), task_id) {
                    (Some(framework), Some(id)) => held_here(framework, id),
                    _ => true,
                }
            }
            OperatorEvent::AgentAdded(_)
            | OperatorEvent::AgentRemoved(_)
            | OperatorEvent::Heartbeat
            | OperatorEvent::Unknown(_) => false,
        }
    }
}

fn bad_record(detail: String) -> PollError {
    PollError::new(Reason::Parse, format!("a SUBSCRIBE record: {detail}"))
}

fn framing_error(error: RecordIoError) -> PollError {
    let reason = match error {
        RecordIoError::RecordTooLarge { .. } => Reason::TooLarge,
        _ => Reason::Parse,
    };
    PollError::new(reason, format!("the SUBSCRIBE stream's framing: {error}"))
}

#[derive(Deserialize)]
struct HeartbeatEnvelope {
    subscribed: Option<HeartbeatField>,
}

#[derive(Deserialize)]
struct HeartbeatField {
    heartbeat_interval_seconds: Option<f64>,
}

/// `subscribed.heartbeat_interval_seconds` of a `SUBSCRIBED` record, clamped; the default
/// when absent or not a positive number. (The core's model leaves it out; serde skips the
/// rest of the record without building it.)
fn heartbeat_of(record: &[u8]) -> Duration {
    serde_json::from_slice::<HeartbeatEnvelope>(record)
        .ok()
        .and_then(|e| e.subscribed?.heartbeat_interval_seconds)
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_HEARTBEAT, |s| {
            let (min, max) = HEARTBEAT_RANGE;
            Duration::from_secs_f64(s.clamp(min.as_secs_f64(), max.as_secs_f64()))
        })
}

#[cfg(test)]
mod tests;
