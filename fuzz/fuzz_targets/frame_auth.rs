//! Frame authentication under hostile input. The first byte picks the mode:
//!
//! - Raw: the rest, as a whole frame, goes to `decode_sealed` on a keyed node (current and
//!   previous key) and on an insecure one. Nothing panics; whatever a keyed node accepts
//!   carries the tag `seal` would put on its payload, and decodes the same on an insecure
//!   node.
//! - Mutated: a valid frame, built from fuzzer-chosen fields and sealed with either key,
//!   then edited by fuzzer-chosen operations. The keyed node accepts it only if the edits
//!   left it unchanged, and then decodes the original envelope.
//!
//! `cargo +nightly fuzz run frame_auth`

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use minuteman_core::auth::{seal, ClusterKey, FrameAuth, Verified, TAG_LEN};
use minuteman_core::wire::{decode_sealed, encode_sealed, DigestEntry, Limits};
use minuteman_core::{Envelope, Message, NodeId};
use std::net::{Ipv4Addr, SocketAddr};

fn key(byte: u8) -> ClusterKey {
    ClusterKey::new([byte; 48]).expect("48 bytes is long enough")
}

fn node() -> FrameAuth {
    FrameAuth::Keys {
        current: key(0xc1),
        previous: Some(key(0x9e)),
    }
}

fn id(u: &mut Unstructured) -> Result<NodeId> {
    let ip = Ipv4Addr::from(u.arbitrary::<u32>()?);
    Ok(NodeId::new(
        SocketAddr::new(ip.into(), u.arbitrary()?),
        u.arbitrary()?,
    ))
}

fn envelope(u: &mut Unstructured) -> Result<Envelope> {
    let from = id(u)?;
    let msg = match u.int_in_range(0..=5)? {
        0 => Message::Join,
        1 => Message::Ping {
            echo: u.arbitrary()?,
        },
        2 => Message::ForwardJoin {
            joiner: id(u)?,
            ttl: u.arbitrary()?,
        },
        3 => Message::ShuffleReply {
            nodes: (0..u.int_in_range(0..=8)?)
                .map(|_| id(u))
                .collect::<Result<_>>()?,
        },
        4 => Message::Digest {
            entries: (0..u.int_in_range(0..=8)?)
                .map(|_| {
                    Ok(DigestEntry {
                        addr: id(u)?.addr,
                        epoch: u.arbitrary()?,
                        seq: u.arbitrary()?,
                    })
                })
                .collect::<Result<_>>()?,
            reply: u.arbitrary()?,
            complete: u.arbitrary()?,
        },
        _ => Message::NeighborReply {
            accepted: u.arbitrary()?,
        },
    };
    Ok(Envelope { from, msg })
}

fn raw(frame: &[u8]) {
    let limits = Limits::default();
    let keyed = node();
    let accepted = decode_sealed(frame, &limits, &keyed);
    let insecure = decode_sealed(frame, &limits, &FrameAuth::Insecure);
    if let Ok((envelope, verified)) = accepted {
        // Only possible for a frame carrying a genuine tag: the fuzzer found one.
        let payload = &frame[..frame.len() - TAG_LEN];
        let signer = match verified {
            Verified::Current => key(0xc1),
            Verified::Previous => key(0x9e),
            Verified::Unchecked => panic!("a keyed node reported an unchecked frame"),
        };
        let mut again = payload.to_vec();
        seal(&FrameAuth::key(signer), &mut again);
        assert_eq!(again, frame);
        assert_eq!(insecure.map(|(e, _)| e), Ok(envelope));
    }
}

fn mutated(u: &mut Unstructured) -> Result<()> {
    let limits = Limits::default();
    let keyed = node();
    let original = envelope(u)?;
    let sealer = if u.arbitrary()? {
        FrameAuth::key(key(0xc1))
    } else {
        FrameAuth::key(key(0x9e))
    };
    let frame = encode_sealed(&original, &limits, &sealer).expect("small envelopes encode");
    let mut bad = frame.clone();
    for _ in 0..u.int_in_range(1..=4)? {
        if bad.is_empty() {
            break;
        }
        let i = u.choose_index(bad.len())?;
        match u.int_in_range(0..=4)? {
            0 => bad[i] = u.arbitrary()?,
            1 => bad[i] ^= 1 << u.int_in_range(0..=7)?,
            2 => bad.insert(i, u.arbitrary()?),
            3 => {
                bad.remove(i);
            }
            _ => bad.truncate(i),
        }
    }
    match decode_sealed(&bad, &limits, &keyed) {
        Ok((envelope, _)) => {
            assert_eq!(bad, frame, "a changed frame was accepted");
            assert_eq!(envelope, original);
        }
        Err(e) => assert_ne!(bad, frame, "the unchanged frame was rejected: {e}"),
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest);
    } else {
        let _ = mutated(&mut Unstructured::new(rest));
    }
});
