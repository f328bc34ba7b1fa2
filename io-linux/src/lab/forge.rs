//! A frame forger: what a hostile host sends to an agent's peer port, for the attack tests
//! (`io-linux/tests/attack.rs`). It speaks the agent's own stream format (a 4-byte
//! big-endian length, then one sealed frame of the core's wire format, see
//! [`crate::agent::frames`] and [`minuteman_core::wire`]).
//!
//! Two attackers in one: one that holds the cluster key ([`Forger`] seals real,
//! authenticated frames claiming its own address, or another host's), and one that does not
//! (garbage, frames without a MAC or with a wrong one, oversized and empty length prefixes).
//!
//! Invariants:
//! - Every frame [`Forger`] seals verifies under the key it was given and respects the
//!   core's default [`Limits`] (it is encoded by the core's encoder, which refuses anything
//!   over them); [`Forger::records_frames`] splits records so that every frame holds at
//!   most `max_records_per_message` records and fits `max_frame_len`.
//! - [`without_mac`] and [`with_bad_mac`] change only the tag: the payload stays a valid
//!   message, so a keyed agent refuses them for their MAC alone (`missing_mac`,
//!   `bad_mac`), never for their contents; a bad tag is never all zeros.
//! - Fake hosts ([`fake_host`]) live in 10.66.0.0/16, which no lab namespace holds or
//!   routes to: a backend there answers nothing, so a client that is sent to one fails.
//! - Nothing here opens a socket: callers write the bytes, from a namespace they created.

use crate::agent::frames;
use minuteman_core::auth::{FrameAuth, TAG_LEN};
use minuteman_core::id::NodeId;
use minuteman_core::records::{Record, RecordBody};
use minuteman_core::vip::{Backend, Protocol, Vip, VipAddr, VipSet};
use minuteman_core::wire::{self, Envelope, Limits, Message, RECORD_FRAME_OVERHEAD};
use rand::{Rng, RngCore};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// The peer port fake hosts claim.
pub const FAKE_PEER_PORT: u16 = 61420;

/// Most fake hosts [`fake_host`] can name (addresses 10.66.0.1 to 10.66.255.254).
pub const MAX_FAKE_HOSTS: u32 = 256 * 254;

/// Seals frames with the cluster key, as an authenticated but hostile peer.
#[derive(Clone, Debug)]
pub struct Forger {
    auth: FrameAuth,
    from: NodeId,
    limits: Limits,
}

impl Forger {
    /// A forger sealing with `auth` and claiming to be `from` (the address the frames
    /// must come from for the agent to take them as that host's).
    pub fn new(auth: FrameAuth, from: NodeId) -> Forger {
        Forger {
            auth,
            from,
            limits: Limits::default(),
        }
    }

    /// The sender its frames claim.
    pub fn from(&self) -> NodeId {
        self.from
    }

    /// One sealed frame of `msg` from [`Forger::from`].
    ///
    /// Panics when the message is over the core's limits (a bug in the caller).
    pub fn seal(&self, msg: Message) -> Vec<u8> {
        self.seal_as(self.from, msg)
    }

    /// One sealed frame of `msg` claiming `from` as its sender, whatever address it is
    /// then sent from (a replay of another host's frame, as a key holder could forge it).
    pub fn seal_as(&self, from: NodeId, msg: Message) -> Vec<u8> {
        wire::encode_sealed(&Envelope { from, msg }, &self.limits, &self.auth)
            .expect("a forged frame within the core's limits")
    }

    /// RECORDS frames carrying `records`, in order, each within the frame limits.
    pub fn records_frames(&self, records: &[Record]) -> Vec<Vec<u8>> {
        let budget = self.limits.max_frame_len - RECORD_FRAME_OVERHEAD;
        let mut frames = Vec::new();
        let mut chunk: Vec<Record> = Vec::new();
        let mut bytes = 0;
        for record in records {
            let size = record_len(self.from, record);
            if !chunk.is_empty()
                && (chunk.len() == self.limits.max_records_per_message || bytes + size > budget)
            {
                frames.push(self.seal(Message::Records {
                    records: std::mem::take(&mut chunk),
                }));
                bytes = 0;
            }
            chunk.push(record.clone());
            bytes += size;
        }
        if !chunk.is_empty() {
            frames.push(self.seal(Message::Records { records: chunk }));
        }
        frames
    }
}

/// The encoded size of `record` alone in a RECORDS message (an upper bound of what it
/// adds to a larger one).
fn record_len(from: NodeId, record: &Record) -> usize {
    let one = Envelope {
        from,
        msg: Message::Records {
            records: vec![record.clone()],
        },
    };
    let none = Envelope {
        from,
        msg: Message::Records {
            records: Vec::new(),
        },
    };
    wire::encoded_len(&one) - wire::encoded_len(&none)
}

/// `frame` behind its length prefix, as it travels on a peer connection.
pub fn framed(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + frame.len());
    out.extend_from_slice(&frames::prefix(frame.len()));
    out.extend_from_slice(frame);
    out
}

/// A length prefix announcing a frame one byte over the agent's limit.
pub fn oversized_prefix() -> [u8; 4] {
    frames::prefix(frames::max_frame() + 1)
}

/// The same sealed frame with an all-zero tag, as an insecure node sends it.
pub fn without_mac(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    let at = out.len().saturating_sub(TAG_LEN);
    out[at..].fill(0);
    out
}

/// The same sealed frame with a wrong (and not all-zero) tag.
pub fn with_bad_mac(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    let last = out.len() - 1;
    out[last] ^= 0x5a;
    if out[out.len().saturating_sub(TAG_LEN)..]
        .iter()
        .all(|&b| b == 0)
    {
        out[last] = 1;
    }
    out
}

/// `len` random bytes: a garbage frame (its first byte, the version, is whatever comes).
pub fn garbage(rng: &mut impl RngCore, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

/// A garbage frame of a random length in `1..=max_len`, behind its prefix.
pub fn framed_garbage(rng: &mut impl RngCore, max_len: usize) -> Vec<u8> {
    let len = rng.random_range(1..=max_len);
    framed(&garbage(rng, len))
}

/// The address of fake host `i` (`i < MAX_FAKE_HOSTS`): `10.66.(i / 254).(i % 254 + 1)`.
pub fn fake_ip(i: u32) -> IpAddr {
    assert!(i < MAX_FAKE_HOSTS, "fake host {i} out of range");
    IpAddr::V4(Ipv4Addr::new(10, 66, (i / 254) as u8, (i % 254 + 1) as u8))
}

/// Fake host `i`'s advertised peer address.
pub fn fake_host(i: u32) -> SocketAddr {
    SocketAddr::new(fake_ip(i), FAKE_PEER_PORT)
}

/// A backend at fake host `i` (its port 8080, its own agent, weight 1).
pub fn fake_backend(i: u32) -> Backend {
    let ip = fake_ip(i);
    Backend {
        ip,
        port: 8080,
        agent: ip,
        weight: 1,
    }
}

/// A TCP VIP at an IP address.
pub fn tcp_vip(addr: SocketAddr) -> Vip {
    Vip {
        protocol: Protocol::Tcp,
        addr: VipAddr::Ip(addr.ip()),
        port: addr.port(),
    }
}

/// Fake host `i`'s record, version `(epoch, seq)`: no neighbours, its own address as its
/// agent, and `services` (sent in full, as changed at `seq`).
pub fn fake_record(i: u32, epoch: u64, seq: u64, services: VipSet) -> Record {
    let body = RecordBody {
        adjacency: Vec::new(),
        agents: vec![fake_ip(i)],
    };
    Record {
        services: Arc::new(services),
        services_seq: seq,
        ..Record::new(NodeId::new(fake_host(i), epoch), seq, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minuteman_core::auth::{ClusterKey, Verified};
    use rand::SeedableRng;

    fn auth() -> FrameAuth {
        FrameAuth::key(ClusterKey::new([7u8; 32]).unwrap())
    }

    fn forger() -> Forger {
        Forger::new(auth(), NodeId::new("10.77.9.4:61420".parse().unwrap(), 5))
    }

    #[test]
    fn sealed_frames_verify_and_tampered_ones_fail_for_their_mac_alone() {
        let f = forger();
        let ping = f.seal(Message::Ping { echo: 3 });
        let (env, verified) = wire::decode_sealed(&ping, &Limits::default(), &auth()).unwrap();
        assert_eq!(verified, Verified::Current);
        assert_eq!(env.from, f.from());
        let check = |frame: &[u8]| wire::decode_sealed(frame, &Limits::default(), &auth());
        assert!(matches!(
            check(&without_mac(&ping)),
            Err(wire::FrameError::Auth(
                minuteman_core::auth::AuthError::Missing
            ))
        ));
        assert!(matches!(
            check(&with_bad_mac(&ping)),
            Err(wire::FrameError::Auth(
                minuteman_core::auth::AuthError::BadMac
            ))
        ));
        // Without the tag check, both still decode: only the MAC is wrong.
        for frame in [without_mac(&ping), with_bad_mac(&ping)] {
            let (env, _) = wire::decode_sealed(&frame, &Limits::default(), &FrameAuth::Insecure)
                .expect("the payload is intact");
            assert_eq!(env.msg, Message::Ping { echo: 3 });
        }
    }

    #[test]
    fn records_are_split_into_frames_within_the_limits_and_in_order() {
        let f = forger();
        let vip = tcp_vip("10.200.9.1:80".parse().unwrap());
        let records: Vec<Record> = (0..2500)
            .map(|i| {
                let mut set = VipSet::new();
                set.insert(vip.clone(), fake_backend(i));
                fake_record(i, 1, 1, set)
            })
            .collect();
        let frames = f.records_frames(&records);
        assert_eq!(frames.len(), 3, "1024 records per frame at most");
        let mut back = Vec::new();
        for frame in &frames {
            assert!(frame.len() <= Limits::default().max_frame_len);
            let (env, _) = wire::decode_sealed(frame, &Limits::default(), &auth()).unwrap();
            match env.msg {
                Message::Records { records } => back.extend(records),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, records);
    }

    #[test]
    fn framing_and_fake_addresses() {
        assert_eq!(framed(b"abc"), [0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(
            u32::from_be_bytes(oversized_prefix()) as usize,
            frames::max_frame() + 1
        );
        assert_eq!(fake_ip(0), IpAddr::from([10, 66, 0, 1]));
        assert_eq!(fake_ip(253), IpAddr::from([10, 66, 0, 254]));
        assert_eq!(fake_ip(254), IpAddr::from([10, 66, 1, 1]));
        assert_eq!(
            fake_ip(MAX_FAKE_HOSTS - 1),
            IpAddr::from([10, 66, 255, 254])
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let g = framed_garbage(&mut rng, 10);
        let len = u32::from_be_bytes(g[..4].try_into().unwrap()) as usize;
        assert!((1..=10).contains(&len) && g.len() == 4 + len);
    }
}
