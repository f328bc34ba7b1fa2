//! What one poll yields: a good state (the VIPs and the extraction's warnings) or an error
//! with a reason from a closed set, and the parse step shared by every source.
//!
//! Invariants:
//! - [`Reason`] is the closed set of `mesos_poll_failures` label values; a new failure mode
//!   maps onto one of them, never onto a new string.
//! - [`parse`] accepts only documents that describe a whole state (agent or master
//!   `/state`, `GET_STATE`, `SUBSCRIBED`): a lone operator-API event, though valid Mesos,
//!   would read as "no tasks" and withdraw everything, so it is a `parse` error. An empty
//!   but valid state is good: every task is gone.

use minuteman_core::mesos::{self, Document, DocumentKind, EventKind, ExtractOptions};
use minuteman_core::tasks::TaskSet;
use minuteman_core::vip::VipSet;
use std::net::IpAddr;

/// Why a poll failed: the `reason` label of `mesos_poll_failures`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// No HTTP exchange: connection refused or reset, DNS, TLS, a bad URL or client setup;
    /// for the `SUBSCRIBE` stream also a body broken off, or ended by the master.
    Http,
    /// An HTTP answer whose status is not 200.
    Status,
    /// No complete answer within the timeout; a `SUBSCRIBE` stream silent past its limit.
    Timeout,
    /// The body or file (or one `SUBSCRIBE` record) is larger than the limit.
    TooLarge,
    /// Not JSON, or JSON that is not a whole Mesos state; a `SUBSCRIBE` record that is not
    /// a well-formed event, an event before `SUBSCRIBED`, or broken RecordIO framing.
    Parse,
    /// The file (or the CA file) is missing or unreadable.
    Io,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Http => "http",
            Reason::Status => "status",
            Reason::Timeout => "timeout",
            Reason::TooLarge => "too_large",
            Reason::Parse => "parse",
            Reason::Io => "io",
        }
    }
}

/// A failed poll: the reason and a message for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PollError {
    pub reason: Reason,
    pub detail: String,
}

impl PollError {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> PollError {
        PollError {
            reason,
            detail: detail.into(),
        }
    }
}

/// A good poll: this host's VIP backends and what was wrong inside the document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Good {
    pub services: VipSet,
    pub tasks: TaskSet,
    pub warnings: Vec<String>,
}

/// Parses one document, every task's agent address being `agent_ip`.
pub(crate) fn parse(bytes: &[u8], agent_ip: IpAddr) -> Result<Good, PollError> {
    let document =
        Document::parse(bytes).map_err(|e| PollError::new(Reason::Parse, e.to_string()))?;
    if let DocumentKind::Event(kind) = document.kind() {
        if kind != EventKind::Subscribed {
            return Err(PollError::new(
                Reason::Parse,
                format!(
                    "an operator-API {} event, not a whole Mesos state",
                    kind.as_str()
                ),
            ));
        }
    }
    let extracted = mesos::extract(&document, &ExtractOptions::with_agent_ip(agent_ip));
    Ok(Good {
        services: extracted.vips,
        tasks: extracted.tasks,
        warnings: extracted.warnings,
    })
}

/// An error and its sources, one line: `a: b: c`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));

    #[test]
    fn garbage_and_wrong_shapes_are_parse_errors() {
        for bytes in [
            &b""[..],
            b"not json",
            b"{\"frameworks\": [",
            b"[]",
            b"{}",
            b"{\"type\":\"HEARTBEAT\"}",
            b"{\"type\":\"TASK_ADDED\",\"task_added\":{\"task\":{\"task_id\":{\"value\":\"t\"}}}}",
        ] {
            let err = parse(bytes, AGENT).unwrap_err();
            assert_eq!(
                err.reason,
                Reason::Parse,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn an_empty_state_is_good_and_empty() {
        let good = parse(b"{\"frameworks\": []}", AGENT).unwrap();
        assert!(good.services.is_empty());
        assert!(good.warnings.is_empty());
        let good = parse(
            b"{\"type\":\"SUBSCRIBED\",\"subscribed\":{\"get_state\":{}}}",
            AGENT,
        )
        .unwrap();
        assert!(good.services.is_empty());
    }

    #[test]
    fn reasons_are_the_documented_label_values() {
        let all = [
            Reason::Http,
            Reason::Status,
            Reason::Timeout,
            Reason::TooLarge,
            Reason::Parse,
            Reason::Io,
        ];
        let names: Vec<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            ["http", "status", "timeout", "too_large", "parse", "io"]
        );
    }
}
