//! The wire protocol: one [`Message`] enum inside an [`Envelope`], serialized with postcard
//! behind a one-byte protocol version and authenticated by a MAC.
//!
//! Frame layout: `[WIRE_VERSION][postcard(Envelope)][tag]`, the tag being the
//! [`TAG_LEN`]-byte HMAC-SHA256 of everything before it (all zeros from an insecure node;
//! see [`crate::auth`]). [`encode_sealed`] and [`decode_sealed`] produce and check whole
//! frames; [`encode`] and [`decode`] handle the payload before the tag, for callers that
//! authenticate separately (or, like the simulator, skip the codec). Stream transports add
//! their own length prefix; the limit here applies to the frame itself.
//!
//! Invariants:
//! - [`decode`] and [`decode_sealed`] never panic, whatever the bytes; every rejection is a
//!   [`DecodeError`] or a [`FrameError`].
//! - [`decode_sealed`] checks the frame length against [`Limits::max_frame_len`] before any
//!   MAC work or allocation, and authenticates before deserializing.
//! - A decoded envelope respects every structural bound in [`Limits`] (list lengths), so the
//!   state machines never see an oversized list.
//! - `decode(encode(e)) == e` and `decode_sealed(encode_sealed(e)) == e` for every envelope
//!   within the limits, and an encoded frame never exceeds [`Limits::max_frame_len`].

use crate::auth::{self, AuthError, FrameAuth, Verified, TAG_LEN};
use crate::id::NodeId;
pub use crate::records::DigestEntry;
use crate::records::SUMMARY_BUCKETS;
use crate::records::{BodyForm, Record};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Version byte of the current frame format. Bumped on any incompatible change.
///
/// 2: frames end with a MAC tag. 4: SUMMARY names its size and may list some buckets.
/// 5: records carry their host's task records (DNS) beside the VIP backends; later, the
/// broadcast tree's IHAVE, GRAFT, PRUNE and RECORDS_REPLY were appended to [`Message`]
/// (every earlier v5 frame decodes as before; only a node with `records.broadcast = tree`
/// sends them, and an older v5 node rejects just those frames, counted).
pub const WIRE_VERSION: u8 = 5;

/// Most bytes a sealed RECORDS frame carrying one record adds around that record's body:
/// version byte, envelope sender, message and list headers, the record's origin and
/// sequence number, and the MAC tag (105 bytes at worst; the rest is headroom). A
/// body of `max_record_bytes` fits in a frame when
/// `max_record_bytes + RECORD_FRAME_OVERHEAD <= max_frame_len`.
pub const RECORD_FRAME_OVERHEAD: usize = 256;

/// Structural bounds every decoded frame must respect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted frame, version byte and tag included.
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
    /// `complete`: the sender's view is complete (it caught up with a complete peer once),
    /// so a receiver that holds everything listed may call its own view complete.
    Digest {
        entries: Vec<DigestEntry>,
        reply: bool,
        complete: bool,
    },
    /// Periodic anti-entropy: the sender's store summary in `of` buckets (bucket hashes,
    /// see [`crate::records::RecordStore::summary`]): all of them in order when `buckets`
    /// is empty, else the hashes of the listed buckets. The receiver answers the buckets
    /// that differ with a finer SUMMARY of just them (when its store is large enough to
    /// fold into more buckets) or with a [`Message::DigestPart`]; nothing if none differs.
    Summary {
        of: u16,
        buckets: Vec<u16>,
        hashes: Vec<u64>,
        complete: bool,
    },
    /// A digest restricted to `buckets` of a summary in `of` buckets: reconciled like a
    /// DIGEST, but only for the addresses in those buckets.
    DigestPart {
        of: u16,
        buckets: Vec<u16>,
        entries: Vec<DigestEntry>,
        reply: bool,
        complete: bool,
    },
    /// The sender got records of `addrs` whose services came as a delta it cannot apply
    /// (it lacks the version the delta starts from): send them in full.
    Want { addrs: Vec<SocketAddr> },
    /// The sender collected these versions (and older) of records of hosts it has not
    /// reached for a whole `gc_horizon` (its tombstones): a receiver that still holds one
    /// and does not reach it either collects it too.
    Collected { entries: Vec<DigestEntry> },
    /// Broadcast tree (Plumtree IHAVE; `records.broadcast = tree` only): the sender holds
    /// these versions and pushes them to its eager neighbours, not to the receiver. A
    /// receiver still lacking one after `records.graft_timeout` asks with GRAFT.
    Ihave { entries: Vec<DigestEntry> },
    /// Broadcast tree (GRAFT): send the records of `addrs` in full, and push new versions
    /// to the sender from now on (the link becomes eager).
    Graft { addrs: Vec<SocketAddr> },
    /// Broadcast tree (PRUNE): a version the receiver pushed reached the sender already;
    /// announce to the sender from now on instead of pushing (the link becomes lazy).
    Prune,
    /// Records sent in answer (to a digest, a WANT or a GRAFT) rather than pushed along the
    /// tree: a copy that brings nothing new prunes no link. Only sent with the tree.
    RecordsReply { records: Vec<Record> },
}

impl Message {
    /// A short stable name, for counters and traces.
    pub fn kind(&self) -> &'static str {
        Message::KIND_NAMES[self.kind_index()]
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
            Message::Summary { .. } => 11,
            Message::DigestPart { .. } => 12,
            Message::Want { .. } => 13,
            Message::Collected { .. } => 14,
            Message::Ihave { .. } => 15,
            Message::Graft { .. } => 16,
            Message::Prune => 17,
            Message::RecordsReply { .. } => 18,
        }
    }

    pub const KINDS: usize = 19;

    /// The name of each kind, by [`Message::kind_index`] (as [`Message::kind`] spells it).
    pub const KIND_NAMES: [&'static str; Message::KINDS] = [
        "join",
        "forward_join",
        "neighbor",
        "neighbor_reply",
        "disconnect",
        "shuffle",
        "shuffle_reply",
        "ping",
        "pong",
        "records",
        "digest",
        "summary",
        "digest_part",
        "want",
        "collected",
        "ihave",
        "graft",
        "prune",
        "records_reply",
    ];
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

/// Why a sealed frame was rejected: it failed authentication, or it authenticated (or the
/// node is insecure) and then failed to decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Encodes one unsealed frame (the payload before the tag): version byte, then the
/// envelope. At most `limits.max_frame_len` bytes.
pub fn encode(envelope: &Envelope, limits: &Limits) -> Result<Vec<u8>, EncodeError> {
    encode_within(envelope, limits.max_frame_len, 0)
}

/// Encodes and seals one frame: version byte, envelope, tag. At most
/// `limits.max_frame_len` bytes, tag included.
pub fn encode_sealed(
    envelope: &Envelope,
    limits: &Limits,
    auth: &FrameAuth,
) -> Result<Vec<u8>, EncodeError> {
    let mut frame = encode_within(envelope, limits.max_frame_len, TAG_LEN)?;
    auth::seal(auth, &mut frame);
    Ok(frame)
}

/// The payload of `envelope`, with capacity for `extra` more bytes, if the whole fits in
/// `max`.
fn encode_within(envelope: &Envelope, max: usize, extra: usize) -> Result<Vec<u8>, EncodeError> {
    let mut frame = vec![WIRE_VERSION];
    frame = postcard::to_extend(envelope, frame).map_err(EncodeError::Serialize)?;
    let len = frame.len().saturating_add(extra);
    if len > max {
        return Err(EncodeError::TooLarge { len, max });
    }
    frame.reserve_exact(extra);
    Ok(frame)
}

/// The size [`encode`] would produce, without allocating.
pub fn encoded_len(envelope: &Envelope) -> usize {
    1 + postcard::experimental::serialized_size(envelope).unwrap_or(0)
}

/// The size [`encode_sealed`] would produce, without allocating.
pub fn sealed_len(envelope: &Envelope) -> usize {
    encoded_len(envelope) + TAG_LEN
}

/// Decodes one unsealed frame (no tag) and checks it against `limits`.
pub fn decode(frame: &[u8], limits: &Limits) -> Result<Envelope, DecodeError> {
    let (&version, body) = frame.split_first().ok_or(DecodeError::Empty)?;
    check_len(frame, limits)?;
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

/// Authenticates and decodes one sealed frame, and says which key it verified under.
///
/// In order: the length bound ([`DecodeError::TooLarge`]), the version byte (so that a
/// peer speaking another version is reported as such, not as a bad MAC), the tag
/// ([`AuthError`]), then the payload as [`decode`] does.
pub fn decode_sealed(
    frame: &[u8],
    limits: &Limits,
    auth: &FrameAuth,
) -> Result<(Envelope, Verified), FrameError> {
    check_len(frame, limits)?;
    match frame.first() {
        Some(&version) if version != WIRE_VERSION => {
            return Err(DecodeError::UnknownVersion(version).into())
        }
        _ => {}
    }
    let opened = auth::open(auth, frame)?;
    let envelope = decode(opened.payload, limits)?;
    Ok((envelope, opened.verified))
}

fn check_len(frame: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    if frame.len() > limits.max_frame_len {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            max: limits.max_frame_len,
        });
    }
    Ok(())
}

fn check_limits(msg: &Message, limits: &Limits) -> Result<(), DecodeError> {
    match msg {
        Message::Shuffle { nodes, .. } | Message::ShuffleReply { nodes }
            if nodes.len() > limits.max_shuffle_nodes =>
        {
            Err(DecodeError::OverLimit("shuffle nodes"))
        }
        Message::Records { records } | Message::RecordsReply { records } => {
            if records.len() > limits.max_records_per_message {
                return Err(DecodeError::OverLimit("records per message"));
            }
            if records.iter().any(|r| {
                let listed = match &r.body_form {
                    BodyForm::Unresolved(diff) => diff.added.len().max(diff.removed.len()),
                    _ => r.body.adjacency.len(),
                };
                listed > limits.max_adjacency
            }) {
                return Err(DecodeError::OverLimit("record adjacency"));
            }
            if records.iter().any(|r| {
                let services = match &r.delta {
                    Some(delta) => delta.backend_count(),
                    None => r.services.backend_count(),
                };
                let agents = match &r.body_form {
                    BodyForm::Unresolved(diff) => diff.agents.as_ref().map_or(0, Vec::len),
                    _ => r.body.agents.len(),
                };
                agents > limits.max_record_backends || services > limits.max_record_backends
            }) {
                return Err(DecodeError::OverLimit("record backends"));
            }
            Ok(())
        }
        Message::Digest { entries, .. }
        | Message::DigestPart { entries, .. }
        | Message::Collected { entries }
        | Message::Ihave { entries }
            if entries.len() > limits.max_digest_entries =>
        {
            Err(DecodeError::OverLimit("digest entries"))
        }
        Message::Want { addrs } | Message::Graft { addrs }
            if addrs.len() > limits.max_digest_entries =>
        {
            Err(DecodeError::OverLimit("wanted records"))
        }
        Message::Summary {
            of,
            buckets,
            hashes,
            ..
        } if usize::from(*of) > SUMMARY_BUCKETS
            || !of.is_power_of_two()
            || buckets.len() > usize::from(*of)
            || hashes.len()
                != if buckets.is_empty() {
                    usize::from(*of)
                } else {
                    buckets.len()
                }
            || buckets.iter().any(|b| b >= of) =>
        {
            Err(DecodeError::OverLimit("summary buckets"))
        }
        Message::DigestPart { of, buckets, .. }
            if usize::from(*of) > SUMMARY_BUCKETS
                || !of.is_power_of_two()
                || buckets.len() > usize::from(*of) =>
        {
            Err(DecodeError::OverLimit("summary buckets"))
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
                records: vec![Record::new(
                    id(2, 4),
                    9,
                    RecordBody {
                        adjacency: vec![id(3, 1), id(4, 1)],
                        ..Default::default()
                    },
                )],
            },
        };
        let limits = Limits::default();
        let frame = encode(&env, &limits).unwrap();
        assert_eq!(frame.len(), encoded_len(&env));
        assert_eq!(decode(&frame, &limits).unwrap(), env);
    }

    /// One record in a RECORDS envelope.
    fn env(record: &Record) -> Envelope {
        Envelope {
            from: id(1, 3),
            msg: Message::Records {
                records: vec![record.clone()],
            },
        }
    }

    /// `record` as a peer decodes it.
    fn through_the_wire(record: &Record) -> Record {
        let limits = Limits::default();
        match decode(&encode(&env(record), &limits).unwrap(), &limits)
            .unwrap()
            .msg
        {
            Message::Records { mut records } => records.remove(0),
            other => panic!("records, not {other:?}"),
        }
    }

    /// A record whose body travels as a change from an earlier version decodes as that
    /// diff (resolved by the store), and one changed neighbour costs less than the list.
    #[test]
    fn a_body_diff_carries_only_the_change() {
        use crate::body_diff::BodyDiff;
        let base = Arc::new(RecordBody {
            adjacency: (1..=6).map(|p| id(p, 7)).collect(),
            ..Default::default()
        });
        let mut next = (*base).clone();
        next.adjacency[5] = id(9, 7);
        let full = Record::new(id(2, 4), 9, next.clone());
        let as_diff = Record {
            body_form: BodyForm::From {
                seq: 8,
                base: base.clone(),
            },
            ..full.clone()
        };
        let decoded = through_the_wire(&as_diff);
        let expected = BodyDiff::between(8, &base, &next);
        assert_eq!(decoded.body_form, BodyForm::Unresolved(Arc::new(expected)));
        assert!(decoded.body.adjacency.is_empty(), "resolved by the store");
        let (full_len, diff_len) = (encoded_len(&env(&full)), encoded_len(&env(&as_diff)));
        assert!(diff_len + 20 < full_len, "{diff_len} vs {full_len}");
    }

    /// A record with a services delta travels as the delta alone: it decodes with the
    /// delta and no services (the store resolves them), and costs the delta's bytes, not
    /// the set's.
    #[test]
    fn a_delta_record_carries_only_the_delta() {
        use crate::services_delta::ServicesDelta;
        use crate::vip::{Backend, Protocol, Vip, VipAddr, VipSet};
        let mut services = VipSet::new();
        for v in 0..200u32 {
            let ip = std::net::IpAddr::from([10, 1, (v / 256) as u8, v as u8]);
            let vip = Vip {
                protocol: Protocol::Tcp,
                addr: VipAddr::Ip(std::net::IpAddr::from([11, 0, (v / 256) as u8, v as u8])),
                port: 80,
            };
            let backend = Backend {
                ip,
                port: 8080,
                agent: ip,
                weight: 1,
            };
            services.insert(vip, backend);
        }
        let mut changed = services.clone();
        let first = changed.vips.keys().next().unwrap().clone();
        changed.vips.remove(&first);
        let delta = ServicesDelta::between(&services, &changed, 3, 9);
        let full = Record {
            services: Arc::new(changed),
            services_seq: 9,
            ..Record::new(id(2, 4), 9, RecordBody::default())
        };
        let as_delta = Record {
            delta: Some(Arc::new(delta.clone())),
            ..full.clone()
        };
        assert_eq!(through_the_wire(&full), full);
        let decoded = through_the_wire(&as_delta);
        assert_eq!(decoded.delta.as_deref(), Some(&delta));
        assert!(
            decoded.services.is_empty(),
            "resolved by the store, not the wire"
        );
        assert_eq!(decoded.services_seq, 9);
        // Unchanged services (most versions) cost a tag and their version number.
        let unchanged = Record {
            delta: Some(Arc::new(ServicesDelta::unchanged(9))),
            ..full.clone()
        };
        assert_eq!(
            through_the_wire(&unchanged).delta.as_deref(),
            Some(&ServicesDelta::unchanged(9))
        );
        let bare = Record::new(id(2, 4), 9, RecordBody::default());
        assert!(
            encoded_len(&env(&unchanged)) < encoded_len(&env(&bare)),
            "below an empty set in full"
        );
        let (full_len, delta_len) = (encoded_len(&env(&full)), encoded_len(&env(&as_delta)));
        assert!(full_len > 20 * delta_len, "{full_len} vs {delta_len}");
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

    /// A SUMMARY names its size; what it lists must fit it: a size that is no power of
    /// two or over the store's bucket count, more buckets than the size, a bucket outside
    /// it, or hashes that do not match the list are refused whole.
    #[test]
    fn malformed_summaries_are_refused() {
        let limits = Limits::default();
        let summary = |of: u16, buckets: Vec<u16>, hashes: Vec<u64>| Envelope {
            from: id(1, 1),
            msg: Message::Summary {
                of,
                buckets,
                hashes,
                complete: true,
            },
        };
        let decoded = |env: &Envelope| decode(&encode(env, &limits).unwrap(), &limits);
        for good in [
            summary(16, vec![], vec![7; 16]),
            summary(64, vec![3, 35], vec![1, 2]),
        ] {
            assert_eq!(decoded(&good), Ok(good));
        }
        for bad in [
            summary(12, vec![], vec![7; 12]),
            summary(512, vec![], vec![7; 512]),
            summary(16, vec![], vec![7; 15]),
            summary(4, vec![0, 1, 2, 3, 0], vec![1; 5]),
            summary(16, vec![16], vec![1]),
            summary(16, vec![1, 2], vec![1]),
        ] {
            assert_eq!(
                decoded(&bad),
                Err(DecodeError::OverLimit("summary buckets")),
                "{bad:?}"
            );
        }
    }

    fn keyed(byte: u8) -> FrameAuth {
        FrameAuth::key(crate::auth::ClusterKey::new([byte; 32]).unwrap())
    }

    #[test]
    fn sealed_round_trip_is_the_payload_and_a_tag() {
        let limits = Limits::default();
        let env = Envelope {
            from: id(1, 3),
            msg: Message::Ping { echo: 77 },
        };
        for auth in [keyed(1), FrameAuth::Insecure] {
            let frame = encode_sealed(&env, &limits, &auth).unwrap();
            assert_eq!(frame.len(), sealed_len(&env));
            assert_eq!(
                frame[..frame.len() - TAG_LEN],
                encode(&env, &limits).unwrap()
            );
            let (back, _) = decode_sealed(&frame, &limits, &auth).unwrap();
            assert_eq!(back, env);
        }
        let frame = encode_sealed(&env, &limits, &keyed(1)).unwrap();
        assert_eq!(
            decode_sealed(&frame, &limits, &keyed(1)).unwrap().1,
            Verified::Current
        );
        assert_eq!(
            decode_sealed(&frame, &limits, &keyed(2)),
            Err(FrameError::Auth(AuthError::BadMac))
        );
        assert_eq!(
            decode_sealed(&frame, &limits, &FrameAuth::Insecure)
                .unwrap()
                .1,
            Verified::Unchecked
        );
        // The unsealed decoder sees the tag as trailing bytes, never as part of a message.
        assert_eq!(
            decode(&frame, &limits),
            Err(DecodeError::TrailingBytes(TAG_LEN))
        );
    }

    #[test]
    fn sealed_frames_respect_the_limit_tag_included() {
        let env = Envelope {
            from: id(1, 3),
            msg: Message::Ping { echo: 77 },
        };
        let exact = Limits {
            max_frame_len: sealed_len(&env),
            ..Limits::default()
        };
        let frame = encode_sealed(&env, &exact, &keyed(1)).unwrap();
        assert!(decode_sealed(&frame, &exact, &keyed(1)).is_ok());
        let short = Limits {
            max_frame_len: sealed_len(&env) - 1,
            ..Limits::default()
        };
        assert_eq!(
            encode_sealed(&env, &short, &keyed(1)),
            Err(EncodeError::TooLarge {
                len: sealed_len(&env),
                max: sealed_len(&env) - 1
            })
        );
        // The unsealed payload alone would fit: the tag counts.
        assert!(encode(&env, &short).is_ok());
        assert_eq!(
            decode_sealed(&frame, &short, &keyed(1)),
            Err(FrameError::Decode(DecodeError::TooLarge {
                len: frame.len(),
                max: frame.len() - 1
            }))
        );
    }

    #[test]
    fn sealed_rejections_are_typed_and_ordered() {
        let limits = Limits::default();
        let auth = keyed(1);
        // Oversized garbage is refused on its length, before any MAC work.
        let huge = vec![0xee; limits.max_frame_len + 1];
        assert!(matches!(
            decode_sealed(&huge, &limits, &auth),
            Err(FrameError::Decode(DecodeError::TooLarge { .. }))
        ));
        // A version-1 frame (no tag) is an unknown version, not a bad MAC.
        assert_eq!(
            decode_sealed(&[1, 0, 0, 0], &limits, &auth),
            Err(FrameError::Decode(DecodeError::UnknownVersion(1)))
        );
        assert_eq!(
            decode_sealed(&[], &limits, &auth),
            Err(FrameError::Auth(AuthError::Truncated { len: 0 }))
        );
        assert_eq!(
            decode_sealed(&[WIRE_VERSION; TAG_LEN], &limits, &auth),
            Err(FrameError::Auth(AuthError::Truncated { len: TAG_LEN }))
        );
        let mut insecure = vec![WIRE_VERSION, 0xff];
        crate::auth::seal(&FrameAuth::Insecure, &mut insecure);
        assert_eq!(
            decode_sealed(&insecure, &limits, &auth),
            Err(FrameError::Auth(AuthError::Missing))
        );
        // Authenticated but malformed: a decode error, after the MAC passed.
        let mut garbage = vec![WIRE_VERSION, 0xff];
        crate::auth::seal(&auth, &mut garbage);
        assert!(matches!(
            decode_sealed(&garbage, &limits, &auth),
            Err(FrameError::Decode(DecodeError::Malformed(_)))
        ));
    }

    /// The worst case of every header around one record body stays within
    /// [`RECORD_FRAME_OVERHEAD`]: IPv6 sender and origin, largest port, epoch and sequence.
    #[test]
    fn record_frame_overhead_bounds_the_worst_case() {
        let worst = NodeId::new(
            std::net::SocketAddr::new(std::net::Ipv6Addr::from(u128::MAX).into(), u16::MAX),
            u64::MAX,
        );
        let body = Arc::new(RecordBody::default());
        let env = Envelope {
            from: worst,
            msg: Message::Records {
                records: vec![Record::new(worst, u64::MAX, (*body).clone())],
            },
        };
        let body_len = postcard::experimental::serialized_size(&*body).unwrap();
        let overhead = sealed_len(&env) - body_len;
        assert!(overhead <= RECORD_FRAME_OVERHEAD, "{overhead}");
        assert!(
            overhead > 100,
            "{overhead}: the bound is not loose by accident"
        );
    }
}
