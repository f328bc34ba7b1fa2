//! The wire protocol: one [`Message`] enum inside an [`Envelope`], serialized with postcard
//! behind a one-byte protocol version.
//!
//! Frame layout: `[WIRE_VERSION][postcard(Envelope)]`. Stream transports add their own length
//! prefix; the limit here applies to the frame itself.
//!
//! Invariants:
//! - [`decode`] never panics, whatever the bytes; every rejection is a [`DecodeError`].
//! - A decoded envelope respects every structural bound in [`Limits`] (list lengths), so the
//!   state machines never see an oversized list.
//! - `decode(encode(e)) == e` for every envelope within the limits.

use crate::id::NodeId;
pub use crate::records::DigestEntry;
use crate::records::Record;
use serde::{Deserialize, Serialize};

/// Version byte of the current frame format. Bumped on any incompatible change.
pub const WIRE_VERSION: u8 = 1;

/// Structural bounds every decoded frame must respect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted frame, version byte included.
    pub max_frame_len: usize,
    /// Most node ids in one SHUFFLE or SHUFFLE_REPLY.
    pub max_shuffle_nodes: usize,
    /// Most records in one RECORDS message.
    pub max_records_per_message: usize,
    /// Most entries in one DIGEST.
    pub max_digest_entries: usize,
    /// Most neighbours listed in one record's adjacency.
    pub max_adjacency: usize,
    /// Most (VIP, backend) pairs in one record, and most agent addresses.
    pub max_record_backends: usize,
    /// Largest encoded record body a node publishes (a RECORDS message may carry several,
    /// up to `max_frame_len`).
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_len: 4 * 1024 * 1024,
            max_shuffle_nodes: 64,
            max_records_per_message: 1024,
            max_digest_entries: 65_536,
            max_adjacency: 64,
            max_record_backends: 50_000,
            max_record_bytes: 1024 * 1024,
        }
    }
}

/// HyParView NEIGHBOR priority: high is sent by a node with an empty active view and must be
/// accepted; low may be refused by a node whose active view is full.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    High,
    Low,
}

/// Every message peers exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// HyParView JOIN: the sender asks a contact node to bring it into the overlay.
    Join,
    /// HyParView FORWARD_JOIN: a random walk announcing `joiner`.
    ForwardJoin { joiner: NodeId, ttl: u8 },
    /// HyParView NEIGHBOR: the sender asks to open an active link.
    Neighbor { priority: Priority },
    /// Answer to NEIGHBOR (and to JOIN, with `accepted: true`).
    NeighborReply { accepted: bool },
    /// HyParView DISCONNECT: the sender dropped the link; the receiver moves it to passive.
    Disconnect,
    /// HyParView SHUFFLE: a random walk carrying a sample of `origin`'s views.
    Shuffle {
        origin: NodeId,
        ttl: u8,
        nodes: Vec<NodeId>,
    },
    /// Answer to SHUFFLE, sent straight to its origin.
    ShuffleReply { nodes: Vec<NodeId> },
    /// Liveness probe on an active link; `echo` is opaque to the receiver.
    Ping { echo: u64 },
    /// Answer to PING, echoing its value.
    Pong { echo: u64 },
    /// Node records, flooded or sent in answer to a digest.
    Records { records: Vec<Record> },
    /// Anti-entropy digest; `reply` marks an answer, which is never answered with a digest.
    Digest {
        entries: Vec<DigestEntry>,
        reply: bool,
    },
}

impl Message {
    /// A short stable name, for counters and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Join => "join",
            Message::ForwardJoin { .. } => "forward_join",
            Message::Neighbor { .. } => "neighbor",
            Message::NeighborReply { .. } => "neighbor_reply",
            Message::Disconnect => "disconnect",
            Message::Shuffle { .. } => "shuffle",
            Message::ShuffleReply { .. } => "shuffle_reply",
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::Records { .. } => "records",
            Message::Digest { .. } => "digest",
        }
    }

    /// Index of the variant, for counters.
    pub fn kind_index(&self) -> usize {
        match self {
            Message::Join => 0,
            Message::ForwardJoin { .. } => 1,
            Message::Neighbor { .. } => 2,
            Message::NeighborReply { .. } => 3,
            Message::Disconnect => 4,
            Message::Shuffle { .. } => 5,
            Message::ShuffleReply { .. } => 6,
            Message::Ping { .. } => 7,
            Message::Pong { .. } => 8,
            Message::Records { .. } => 9,
            Message::Digest { .. } => 10,
        }
    }

    pub const KINDS: usize = 11;
}

/// A message and its sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub msg: Message,
}

/// Why a frame was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty frame")]
    Empty,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unknown wire version {0} (this node speaks {WIRE_VERSION})")]
    UnknownVersion(u8),
    #[error("malformed frame: {0}")]
    Malformed(postcard::Error),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("message exceeds a structural limit: {0}")]
    OverLimit(&'static str),
}

/// Why an envelope could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("encoded frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("serialization failed: {0}")]
    Serialize(postcard::Error),
}

/// Encodes one frame: version byte, then the envelope.
pub fn encode(envelope: &Envelope, limits: &Limits) -> Result<Vec<u8>, EncodeError> {
    let mut frame = vec![WIRE_VERSION];
    frame = postcard::to_extend(envelope, frame).map_err(EncodeError::Serialize)?;
    if frame.len() > limits.max_frame_len {
        return Err(EncodeError::TooLarge {
            len: frame.len(),
            max: limits.max_frame_len,
        });
    }
    Ok(frame)
}

/// The size [`encode`] would produce, without allocating.
pub fn encoded_len(envelope: &Envelope) -> usize {
    1 + postcard::experimental::serialized_size(envelope).unwrap_or(0)
}

/// Decodes one frame and checks it against `limits`.
pub fn decode(frame: &[u8], limits: &Limits) -> Result<Envelope, DecodeError> {
    let (&version, body) = frame.split_first().ok_or(DecodeError::Empty)?;
    if frame.len() > limits.max_frame_len {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            max: limits.max_frame_len,
        });
    }
    if version != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let (envelope, rest): (Envelope, &[u8]) =
        postcard::take_from_bytes(body).map_err(DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    check_limits(&envelope.msg, limits)?;
    Ok(envelope)
}

fn check_limits(msg: &Message, limits: &Limits) -> Result<(), DecodeError> {
    match msg {
        Message::Shuffle { nodes, .. } | Message::ShuffleReply { nodes }
            if nodes.len() > limits.max_shuffle_nodes =>
        {
            Err(DecodeError::OverLimit("shuffle nodes"))
        }
        Message::Records { records } => {
            if records.len() > limits.max_records_per_message {
                return Err(DecodeError::OverLimit("records per message"));
            }
            if records
                .iter()
                .any(|r| r.body.adjacency.len() > limits.max_adjacency)
            {
                return Err(DecodeError::OverLimit("record adjacency"));
            }
            if records.iter().any(|r| {
                r.body.agents.len() > limits.max_record_backends
                    || r.body.services.backend_count() > limits.max_record_backends
            }) {
                return Err(DecodeError::OverLimit("record backends"));
            }
            Ok(())
        }
        Message::Digest { entries, .. } if entries.len() > limits.max_digest_entries => {
            Err(DecodeError::OverLimit("digest entries"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RecordBody;
    use std::sync::Arc;

    fn id(port: u16, epoch: u64) -> NodeId {
        NodeId::new(([10, 0, 0, 1], port).into(), epoch)
    }

    #[test]
    fn round_trip_and_size() {
        let env = Envelope {
            from: id(1, 3),
            msg: Message::Records {
                records: vec![Record {
                    origin: id(2, 4),
                    seq: 9,
                    body: Arc::new(RecordBody {
                        adjacency: vec![id(3, 1), id(4, 1)],
                        ..Default::default()
                    }),
                }],
            },
        };
        let limits = Limits::default();
        let frame = encode(&env, &limits).unwrap();
        assert_eq!(frame.len(), encoded_len(&env));
        assert_eq!(decode(&frame, &limits).unwrap(), env);
    }

    #[test]
    fn rejects_bad_frames() {
        let limits = Limits::default();
        assert_eq!(decode(&[], &limits), Err(DecodeError::Empty));
        assert_eq!(
            decode(&[7, 0], &limits),
            Err(DecodeError::UnknownVersion(7))
        );
        assert!(matches!(
            decode(&[WIRE_VERSION, 0xff], &limits),
            Err(DecodeError::Malformed(_))
        ));
        let small = Limits {
            max_frame_len: 4,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&[WIRE_VERSION, 0, 0, 0, 0, 0], &small),
            Err(DecodeError::TooLarge { len: 6, max: 4 })
        ));
        let env = Envelope {
            from: id(1, 1),
            msg: Message::Ping { echo: 5 },
        };
        let mut frame = encode(&env, &limits).unwrap();
        frame.push(0);
        assert_eq!(decode(&frame, &limits), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn rejects_lists_over_limits() {
        let limits = Limits {
            max_shuffle_nodes: 2,
            ..Limits::default()
        };
        let env = Envelope {
            from: id(1, 1),
            msg: Message::ShuffleReply {
                nodes: vec![id(2, 1), id(3, 1), id(4, 1)],
            },
        };
        let frame = encode(&env, &limits).unwrap();
        assert_eq!(
            decode(&frame, &limits),
            Err(DecodeError::OverLimit("shuffle nodes"))
        );
    }
}
