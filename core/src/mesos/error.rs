//! Errors of Mesos ingestion.
//!
//! Invariants:
//! - A [`MesosError`] is about one document, one event or one stream: the caller drops that
//!   input (keeping the last good state) and carries on; nothing here is fatal to the node.
//! - Problems inside a valid document (a malformed VIP label, an unknown agent) are never
//!   errors: they are warnings in [`super::extract::Extracted`].
//! - Every error message is self-contained and names what was wrong (serde's message, the
//!   offending length or byte, the line of a multi-event file).

use thiserror::Error;

/// Why a Mesos document, event or stream was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MesosError {
    /// The bytes are not JSON (syntax error or truncated input).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// Valid JSON whose shape is not what Mesos sends (serde's message).
    #[error("not a Mesos document: {0}")]
    Shape(String),
    /// RecordIO framing is broken; the stream must be reconnected.
    #[error("bad RecordIO framing: {0}")]
    RecordIo(#[from] RecordIoError),
    /// An error in one line of a file holding one JSON event per line.
    #[error("line {line}: {source}")]
    AtLine {
        line: usize,
        #[source]
        source: Box<MesosError>,
    },
}

impl MesosError {
    /// Classifies a serde_json error: syntax and end-of-input are "not JSON", anything else
    /// (wrong types, missing fields) is "wrong shape".
    pub(crate) fn from_json(error: serde_json::Error) -> MesosError {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                MesosError::NotJson(error.to_string())
            }
            Category::Data => MesosError::Shape(error.to_string()),
        }
    }

    pub(crate) fn at_line(self, line: usize) -> MesosError {
        MesosError::AtLine {
            line,
            source: Box::new(self),
        }
    }
}

/// Why a RecordIO stream (`<decimal length>\n<bytes>` repeated) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordIoError {
    /// A byte other than an ASCII digit where the length prefix should be.
    #[error("expected a decimal length, found byte 0x{byte:02x} at stream offset {offset}")]
    InvalidPrefix { byte: u8, offset: u64 },
    /// A newline with no digits before it.
    #[error("empty length prefix at stream offset {offset}")]
    EmptyPrefix { offset: u64 },
    /// The announced record is longer than the decoder accepts.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: u64, max: usize },
    /// A previous error poisoned the decoder; it must be reset with the connection.
    #[error("decoder stopped after an earlier error")]
    Poisoned,
}
