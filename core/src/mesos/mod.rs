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
pub mod task_records;

pub use cluster::{Agent, ClusterState, Resolver};
pub use diff::{VipDiff, VipSetDiff};
pub use document::{Document, DocumentKind, EventKind, OperatorEvent};
pub use error::{MesosError, RecordIoError};
pub use extract::{extract_state, ExtractOptions, Extracted};
pub use inspect::{inspect, InputFormat, Inspection};
pub use recordio::RecordIoDecoder;
pub use stream::{FeedOutcome, MesosStream, StreamCounters, StreamLimits};
pub use task::{Task, TaskState};

/// The VIPs of one document (for an event alone: of the state that event describes).
pub fn extract(document: &Document<'_>, options: &ExtractOptions<'_>) -> Extracted {
    let (state, mut warnings) = stream::cluster_state(document);
    let extracted = extract_state(&state, options);
    warnings.extend(extracted.warnings);
    Extracted {
        vips: extracted.vips,
        tasks: extracted.tasks,
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
