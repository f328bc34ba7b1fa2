//! One node under hostile input: the bytes are a small config and a sequence of inputs
//! (raw frames, well-formed messages from a small universe of peers, answers to what the
//! node sent, timeouts). After every input the outputs are drained, each checked, and
//! `check_invariants` must hold.
//!
//! `cargo +nightly fuzz run node_input`

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use minuteman_core::auth::FrameAuth;
use minuteman_core::body_diff::BodyDiff;
use minuteman_core::node::InputError;
use minuteman_core::records::BodyForm;
use minuteman_core::services_delta::ServicesDelta;
use minuteman_core::wire::{self, DigestEntry, Priority};
use minuteman_core::{
    Backend, Broadcast, Config, Envelope, Message, Node, NodeId, Output, Protocol, Record, RecordBody, Time,
    Transmit, Vip, VipAddr, VipSet,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Peers 0..12; index 12 is the node itself.
const UNIVERSE: u8 = 13;
const MAX_OUTPUTS_PER_INPUT: usize = 10_000;

fn addr(i: u8) -> SocketAddr {
    match i % UNIVERSE {
        i @ 0..=5 => SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1 + i).into(), 61420),
        i @ 6..=10 => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 7000 + u16::from(i)),
        11 => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 61420),
        _ => SocketAddr::new(Ipv4Addr::new(10, 0, 0, 100).into(), 61420),
    }
}

fn id(u: &mut Unstructured) -> Result<NodeId> {
    Ok(NodeId::new(addr(u.arbitrary()?), u.int_in_range(1..=3)?))
}

fn ids(u: &mut Unstructured) -> Result<Vec<NodeId>> {
    let n = u.int_in_range(0..=8)?;
    (0..n).map(|_| id(u)).collect()
}

/// A few VIPs from a small universe (literal v4 and v6, one inside the named prefix,
/// names) with backends of either family and any weight.
fn services(u: &mut Unstructured) -> Result<VipSet> {
    let mut set = VipSet::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let addr = match u.int_in_range(0..=3)? {
            0 => VipAddr::Ip(Ipv4Addr::new(1, 2, 3, u.int_in_range(1..=3)?).into()),
            1 => VipAddr::Ip(Ipv4Addr::new(11, 0, 0, u.int_in_range(1..=3)?).into()),
            2 => VipAddr::Ip(Ipv6Addr::new(0xfd01, 0xc, 0, 0, 0, 0, 0, 1).into()),
            _ => VipAddr::Named(format!("svc-{}.marathon", u.int_in_range(0..=3)?)),
        };
        let protocol = if u.arbitrary()? {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let vip = Vip {
            protocol,
            addr,
            port: u.int_in_range(80..=82)?,
        };
        let ip = if u.arbitrary()? {
            Ipv4Addr::new(10, 1, 0, u.int_in_range(1..=3)?).into()
        } else {
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u.int_in_range(1..=3)?).into()
        };
        let weight = if u.ratio(7, 8)? {
            u.int_in_range(0..=1)?
        } else {
            u.arbitrary()?
        };
        set.insert(
            vip,
            Backend {
                ip,
                port: u.int_in_range(8000..=8002)?,
                agent: ip,
                weight,
            },
        );
    }
    Ok(set)
}

fn small_or_any(u: &mut Unstructured) -> Result<u64> {
    Ok(if u.ratio(7, 8)? {
        u.int_in_range(0..=7)?
    } else {
        u.arbitrary()?
    })
}

/// Up to `max` digest lines of arbitrary addresses, early epochs and small or any versions.
fn entries(u: &mut Unstructured, max: usize) -> Result<Vec<DigestEntry>> {
    (0..u.int_in_range(0..=max)?)
        .map(|_| {
            Ok(DigestEntry {
                addr: addr(u.arbitrary()?),
                epoch: u.int_in_range(0..=4)?,
                seq: small_or_any(u)?,
            })
        })
        .collect()
}

fn message(u: &mut Unstructured, now: Time) -> Result<Message> {
    let kind = u.int_in_range(0..=18)?;
    Ok(match kind {
        0 => Message::Join,
        1 => Message::ForwardJoin {
            joiner: id(u)?,
            ttl: u.int_in_range(0..=7)?,
        },
        2 => Message::Neighbor {
            priority: if u.arbitrary()? {
                Priority::High
            } else {
                Priority::Low
            },
        },
        3 => Message::NeighborReply {
            accepted: u.arbitrary()?,
        },
        4 => Message::Disconnect,
        5 => Message::Shuffle {
            origin: id(u)?,
            ttl: u.int_in_range(0..=7)?,
            nodes: ids(u)?,
        },
        6 => Message::ShuffleReply { nodes: ids(u)? },
        7 => Message::Ping {
            echo: u.arbitrary()?,
        },
        8 => Message::Pong {
            echo: if u.arbitrary()? {
                now.as_nanos()
                    .saturating_sub(u.int_in_range(0..=2_000_000_000)?)
            } else {
                u.arbitrary()?
            },
        },
        9 | 18 => {
            let n = u.int_in_range(0..=4)?;
            let records = (0..n)
                .map(|_| {
                    let seq = small_or_any(u)?;
                    let record = Record::new(
                        id(u)?,
                        seq,
                        RecordBody {
                            adjacency: ids(u)?,
                            agents: Vec::new(),
                        },
                    );
                    let services_seq = small_or_any(u)?;
                    let set = services(u)?;
                    // In full, or as a delta from an arbitrary base (often not held).
                    let delta = if u.arbitrary()? {
                        let base = small_or_any(u)?;
                        Some(Arc::new(ServicesDelta {
                            base,
                            seq: services_seq,
                            vips: set.vips.clone().into_iter().collect(),
                            tasks: Vec::new(),
                        }))
                    } else {
                        None
                    };
                    // The body in full, or as a diff from an arbitrary base.
                    let body_form = if u.arbitrary()? {
                        BodyForm::Unresolved(Arc::new(BodyDiff {
                            base: small_or_any(u)?,
                            added: ids(u)?,
                            removed: ids(u)?,
                            agents: None,
                        }))
                    } else {
                        BodyForm::Full
                    };
                    Ok(Record {
                        services: Arc::new(set),
                        services_seq,
                        delta,
                        body_form,
                        ..record
                    })
                })
                .collect::<Result<_>>()?;
            if kind == 9 {
                Message::Records { records }
            } else {
                Message::RecordsReply { records }
            }
        }
        15 => Message::Ihave {
            entries: entries(u, 4)?,
        },
        16 => Message::Graft {
            addrs: (0..u.int_in_range(0..=4)?)
                .map(|_| Ok(addr(u.arbitrary()?)))
                .collect::<Result<_>>()?,
        },
        17 => Message::Prune,
        11 => Message::Collected {
            entries: entries(u, 4)?,
        },
        12 => {
            // As a decoded frame allows them (the decoder's own target and tests cover
            // the malformed ones): a size of 2^k, at most that many buckets, below it.
            let of = 1u16 << u.int_in_range(0..=8)?;
            let buckets: Vec<u16> = (0..u.int_in_range(0..=of.min(6))?)
                .map(|_| u.int_in_range(0..=of - 1))
                .collect::<Result<_>>()?;
            let count = if buckets.is_empty() {
                of
            } else {
                buckets.len() as u16
            };
            let hashes = (0..count)
                .map(|_| {
                    // Mostly in step with nothing (0), sometimes any hash.
                    Ok(if u.arbitrary()? { 0 } else { u.arbitrary()? })
                })
                .collect::<Result<_>>()?;
            Message::Summary {
                of,
                buckets,
                hashes,
                complete: u.arbitrary()?,
            }
        }
        13 => {
            let of = 1u16 << u.int_in_range(0..=8)?;
            Message::DigestPart {
                of,
                buckets: (0..u.int_in_range(0..=of.min(6))?)
                    .map(|_| u.int_in_range(0..=of - 1))
                    .collect::<Result<_>>()?,
                entries: entries(u, 4)?,
                reply: u.arbitrary()?,
                complete: u.arbitrary()?,
            }
        }
        10 => Message::Want {
            addrs: (0..u.int_in_range(0..=4)?)
                .map(|_| Ok(addr(u.arbitrary()?)))
                .collect::<Result<_>>()?,
        },
        _ => Message::Digest {
            entries: entries(u, 8)?,
            reply: u.arbitrary()?,
            complete: u.arbitrary()?,
        },
    })
}

struct Driver {
    node: Node,
    now: Time,
    deadline: Time,
    last: Vec<Transmit>,
    /// The kernel the node's operations have built.
    kernel: minuteman_core::kernel::KernelState,
}

impl Driver {
    /// Drains every output, checks each, then the invariants.
    fn settle(&mut self, what: &dyn std::fmt::Debug) {
        let me = self.node.id();
        let limits = self.node.config().limits.clone();
        self.last.clear();
        let mut n = 0;
        loop {
            match self.node.poll_output() {
                Output::Timeout(at) => {
                    self.deadline = at;
                    break;
                }
                Output::Transmit(t) => {
                    assert_ne!(t.dst, me.addr, "transmit to self after {what:?}: {t:?}");
                    // The id changes only when the node supersedes a lost incarnation.
                    assert_eq!(t.envelope.from.addr, me.addr);
                    assert!(t.envelope.from.epoch <= self.node.id().epoch);
                    let frame = self
                        .node
                        .encode(&t)
                        .unwrap_or_else(|e| panic!("unencodable output {t:?}: {e}"));
                    let auth = &self.node.config().auth;
                    let decoded = wire::decode_sealed(&frame, &limits, auth)
                        .map(|(e, _)| e)
                        .unwrap_or_else(|e| panic!("undecodable output {t:?}: {e}"));
                    // Records may travel as changes: what a peer decodes is what was sent
                    // when it encodes to the same bytes.
                    assert_eq!(
                        wire::encode(&decoded, &limits),
                        wire::encode(&t.envelope, &limits)
                    );
                    self.last.push(t);
                }
                Output::Event(_) | Output::CloseLink(_) | Output::ProbeHost(_) => {}
                Output::Kernel(ops) => {
                    // Hostile records may shape the desired state, never break the diff.
                    self.kernel
                        .apply_all(&ops)
                        .unwrap_or_else(|e| panic!("kernel ops do not apply after {what:?}: {e}"));
                    assert_eq!(&self.kernel, self.node.applied_kernel());
                }
            }
            n += 1;
            assert!(
                n < MAX_OUTPUTS_PER_INPUT,
                "unbounded outputs after {what:?}"
            );
        }
        if let Err(e) = self.node.check_invariants() {
            panic!("invariant broken after {what:?}: {e}");
        }
    }

    fn frame(&mut self, bytes: &[u8]) {
        // An honest transport: the remote is the claimed sender's host when there is one.
        let cfg = self.node.config();
        let remote = wire::decode_sealed(bytes, &cfg.limits, &cfg.auth)
            .map_or(addr(0).ip(), |(env, _)| env.from.addr.ip());
        let before = self.node.counters().decode_errors.total();
        let result = self.node.handle_frame(self.now, remote, bytes);
        let after = self.node.counters().decode_errors.total();
        assert_eq!(after, before + u64::from(result.is_err()));
        self.settle(&format_args!("frame {bytes:02x?}"));
    }

    fn message(&mut self, envelope: Envelope, forged_from: Option<IpAddr>) {
        // Through the codec, as a shell would deliver it.
        let frame = self
            .node
            .encode(&Transmit {
                dst: self.node.id().addr,
                envelope: envelope.clone(),
            })
            .expect("encodes");
        match forged_from.filter(|ip| *ip != envelope.from.addr.ip()) {
            Some(remote) => {
                // Claims another host than the connection's: refused, counted, no effect.
                let before = self.node.counters().clone();
                let result = self.node.handle_frame(self.now, remote, &frame);
                assert!(
                    matches!(result, Err(InputError::ForgedSender { .. })),
                    "{result:?}"
                );
                let after = self.node.counters();
                assert_eq!(after.forged_sender, before.forged_sender + 1);
                assert_eq!(after.messages_in, before.messages_in);
                assert_eq!(after.messages_out, before.messages_out);
            }
            None => {
                let remote = envelope.from.addr.ip();
                let result = self.node.handle_frame(self.now, remote, &frame);
                assert_eq!(result, Ok(envelope.from));
            }
        }
        self.settle(&envelope);
    }

    fn known(&self, addr: SocketAddr) -> NodeId {
        self.node
            .active_view()
            .chain(self.node.passive_view())
            .find(|id| id.addr == addr)
            .unwrap_or(NodeId::new(addr, 1))
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let me = NodeId::new(addr(12), u.int_in_range(1..=3)?);
    let contacts = (0..u.int_in_range(0..=3)?)
        .map(|_| Ok(addr(u.arbitrary()?)))
        .collect::<Result<_>>()?;
    let mut cfg = Config::new(me, contacts, u.arbitrary()?, FrameAuth::Insecure);
    cfg.membership.active_max = u.int_in_range(1..=5)?;
    cfg.membership.active_min = cfg.membership.active_min.min(cfg.membership.active_max);
    cfg.membership.passive_max = u.int_in_range(1..=8)?;
    cfg.membership.arwl = u.int_in_range(0..=6)?;
    cfg.membership.prwl = u.int_in_range(0..=3)?.min(cfg.membership.arwl);
    cfg.records.max_records = u.int_in_range(1..=16)?;
    if u.arbitrary()? {
        cfg.records.broadcast = Broadcast::Tree;
    }
    if u.ratio(1, 4)? {
        cfg.max_queued_outputs = u.int_in_range(1..=16)?;
    }
    let now = Time::from_millis(u.int_in_range(0..=10_000)?);
    let mut d = Driver {
        node: Node::new(cfg, now).expect("the fuzzer builds valid configs"),
        now,
        deadline: now,
        last: Vec::new(),
        kernel: Default::default(),
    };
    d.settle(&"start");
    while !u.is_empty() {
        match u.int_in_range(0..=7)? {
            0 => {
                d.now = d.now + Duration::from_micros(u.int_in_range(0..=2_000_000)?);
                d.node.handle_timeout(d.now);
                d.settle(&"timeout");
            }
            1 => {
                d.now = d.now.max(d.deadline);
                d.node.handle_timeout(d.now);
                d.settle(&"deadline");
            }
            2..=4 => {
                d.now = d.now + Duration::from_micros(u.int_in_range(0..=50_000)?);
                let from = id(u)?;
                let msg = message(u, d.now)?;
                // Now and then the connection is another host's than the claimed sender's.
                let forged = if u.ratio(1, 8)? {
                    Some(addr(u.arbitrary()?).ip())
                } else {
                    None
                };
                d.message(Envelope { from, msg }, forged);
            }
            5 => {
                // Cooperative peers answer what the node just sent.
                let asks = std::mem::take(&mut d.last);
                for t in asks {
                    let msg = match t.envelope.msg {
                        Message::Ping { echo } => Message::Pong { echo },
                        Message::Neighbor { .. } => Message::NeighborReply {
                            accepted: u.arbitrary()?,
                        },
                        Message::Join => Message::NeighborReply { accepted: true },
                        _ => continue,
                    };
                    let from = d.known(t.dst);
                    d.message(Envelope { from, msg }, None);
                }
            }
            6 => {
                let len = u.int_in_range(0..=64)?;
                let bytes = u.bytes(len)?.to_vec();
                d.frame(&bytes);
            }
            _ => {
                let len = u.int_in_range(0..=64)?;
                let mut bytes = vec![wire::WIRE_VERSION];
                bytes.extend_from_slice(u.bytes(len)?);
                d.frame(&bytes);
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
