//! Mesos ingestion: from Mesos' JSON (agent or master `/state`, operator-API `GET_STATE`,
//! the `SUBSCRIBE` event stream) to the [`VipSet`] of VIP backends, following
//! `docs/mesos-vips.md`. No IO: the shells fetch the bytes and hand them in.
//!
//! The pipeline, one module per step:
//! - [`model`]: serde models of the JSON (only the fields needed, borrowed where possible);
//! - [`document`]: [`Document::parse`] recognises which of the shapes a document is;
//! - [`task`] and [`cluster`]: every shape normalised into one [`ClusterState`] (agents,
//!   frameworks, live tasks);
//! - [`labels`]: the VIP label grammar and the DNS form of named VIPs;
//! - [`extract`]: the rules (which tasks count, with what weight, which address);
//! - [`recordio`] and [`stream`]: the `SUBSCRIBE` stream as a bounded state machine;
//! - [`diff`]: what changed between two VIP sets;
//! - [`render`] and [`inspect`]: reading recordings and showing the result.
//!
//! Invariants (of the whole module):
//! - Nothing here panics on any input; a document that is not JSON or has the wrong shape
//!   is a [`MesosError`] for that document only, and a malformed label is a warning.
//! - Deterministic: ordered maps throughout, so every node extracts the same set, with the
//!   same warnings, from the same bytes.

pub mod cluster;
pub mod diff;
pub mod document;
pub mod error;
pub mod extract;
pub mod inspect;
pub mod labels;
pub mod model;
pub mod recordio;
pub mod render;
pub mod stream;
pub mod task;

pub use cluster::{Agent, ClusterState};
pub use diff::{VipDiff, VipSetDiff};
pub use document::{Document, DocumentKind, Event, EventKind};
pub use error::{MesosError, RecordIoError};
pub use inspect::{inspect, InputFormat, Inspection};
pub use recordio::RecordIoDecoder;
pub use stream::{FeedOutcome, MesosStream, StreamCounters, StreamLimits};
pub use task::{Task, TaskState};

use crate::vip::VipSet;
use std::net::IpAddr;

/// What one extraction found: the VIPs and the problems worth telling an operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    pub vips: VipSet,
    /// One line per problem, naming the task (malformed labels, unknown agents, ...).
    pub warnings: Vec<String>,
}

/// Resolves an agent hostname to an address (supplied by a shell; the core does no DNS).
pub type Resolver<'r> = &'r dyn Fn(&str) -> Option<IpAddr>;

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

/// The VIPs of one document (for an event alone: of the state that event describes).
pub fn extract(document: &Document<'_>, options: &ExtractOptions<'_>) -> Extracted {
    let (state, mut warnings) = ClusterState::from_document(document);
    let extracted = extract::extract_state(&state, options);
    warnings.extend(extracted.warnings);
    Extracted {
        vips: extracted.vips,
        warnings,
    }
}

/// Parses one document and extracts its VIPs.
pub fn parse_and_extract(
    bytes: &[u8],
    options: &ExtractOptions<'_>,
) -> Result<Extracted, MesosError> {
    let document = Document::parse(bytes)?;
    Ok(extract(&document, options))
}

impl Document<'_> {
    /// The VIPs of this document; see [`extract`].
    pub fn extract(&self, options: &ExtractOptions<'_>) -> Extracted {
        extract(self, options)
    }
}
