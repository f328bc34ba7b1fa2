//! One node's service path alone: local backends become kernel operations, an oversized set
//! is refused whole with the reason, and a resync rebuilds the kernel from what it holds.

use minuteman_core::auth::FrameAuth;
use minuteman_core::kernel::{KernelState, Op};
use minuteman_core::{
    Backend, Config, Envelope, Message, Node, NodeId, Output, Protocol, Record, RecordTooLarge,
    Time, Vip, VipAddr, VipSet,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn node() -> Node {
    let me = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 61420);
    let mut cfg = Config::new(NodeId::new(me, 1), vec![me], 7, FrameAuth::Insecure);
    cfg.limits.max_record_backends = 50;
    Node::new(cfg, Time::ZERO).expect("valid config")
}

fn set(backends: u16) -> VipSet {
    let agent = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let mut set = VipSet::new();
    for port in 0..backends {
        let vip = Vip {
            protocol: Protocol::Tcp,
            addr: VipAddr::Ip("1.2.3.4".parse().unwrap()),
            port: 80,
        };
        set.insert(
            vip,
            Backend {
                ip: agent,
                port: 20_000 + port,
                agent,
                weight: 1,
            },
        );
    }
    set
}

/// Drains the outputs; returns the kernel operations, in order.
fn kernel_ops(node: &mut Node) -> Vec<Op> {
    let mut ops = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(_) => return ops,
            Output::Kernel(batch) => ops.extend(batch),
            _ => {}
        }
    }
}

#[test]
fn local_backends_become_kernel_operations_and_a_resync_rebuilds_them() {
    let mut n = node();
    kernel_ops(&mut n);
    let agent = vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))];
    n.set_local_services(Time::from_millis(1), agent.clone(), set(3))
        .unwrap();
    let mut kernel = KernelState::default();
    kernel.apply_all(&kernel_ops(&mut n)).unwrap();
    assert_eq!(kernel.services.len(), 1);
    assert_eq!(kernel.services.values().next().unwrap().len(), 3);
    assert_eq!(&kernel, n.desired_kernel());
    n.check_invariants().unwrap();

    // The same set again changes nothing.
    n.set_local_services(Time::from_millis(2), agent, set(3))
        .unwrap();
    assert!(kernel_ops(&mut n).is_empty());

    // The kernel lost everything (a reboot of the data plane): a resync rebuilds it.
    n.resync_kernel(Time::from_millis(3), KernelState::default());
    let mut rebuilt = KernelState::default();
    rebuilt.apply_all(&kernel_ops(&mut n)).unwrap();
    assert_eq!(rebuilt, kernel);
    // The kernel holds a stray service: the resync removes it.
    let mut stray = kernel.clone();
    stray
        .apply(&Op::AddService(minuteman_core::kernel::Service::new(
            Protocol::Udp,
            "9.9.9.9:53".parse().unwrap(),
        )))
        .unwrap();
    n.resync_kernel(Time::from_millis(4), stray.clone());
    stray.apply_all(&kernel_ops(&mut n)).unwrap();
    assert_eq!(stray, kernel);
    n.check_invariants().unwrap();
}

#[test]
fn an_oversized_set_is_refused_whole_and_the_last_one_stays() {
    let mut n = node();
    let agent = vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))];
    n.set_local_services(Time::from_millis(1), agent.clone(), set(10))
        .unwrap();
    let err = n
        .set_local_services(Time::from_millis(2), agent, set(51))
        .unwrap_err();
    assert_eq!(
        err,
        RecordTooLarge::Backends {
            backends: 51,
            limit: 50
        }
    );
    assert!(err
        .to_string()
        .contains("51 backends and task endpoints exceed the record bound of 50"));
    assert_eq!(n.local_services().backend_count(), 10);
    assert_eq!(n.counters().records_too_large, 1);
}

#[test]
fn a_set_over_the_byte_bound_is_refused_with_its_size() {
    let me = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 61420);
    let mut cfg = Config::new(NodeId::new(me, 1), vec![me], 7, FrameAuth::Insecure);
    // The least Config::validate allows is a record listing active_max neighbours.
    cfg.limits.max_record_bytes = 200;
    let mut n = Node::new(cfg, Time::ZERO).expect("valid config");
    let err = n
        .set_local_services(Time::from_millis(1), vec![me.ip()], set(40))
        .unwrap_err();
    assert!(
        matches!(err, RecordTooLarge::Bytes { bytes, limit: 200 } if bytes > 200),
        "{err}"
    );
    assert!(n.local_services().is_empty());
}

#[test]
fn kernel_operations_survive_a_full_output_queue() {
    let me = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 61420);
    let mut cfg = Config::new(NodeId::new(me, 1), vec![me], 7, FrameAuth::Insecure);
    cfg.max_queued_outputs = 2;
    let mut n = Node::new(cfg, Time::ZERO).expect("valid config");
    let agent = vec![me.ip()];
    n.set_local_services(Time::from_millis(1), agent, set(5))
        .unwrap();
    let mut kernel = KernelState::default();
    kernel.apply_all(&kernel_ops(&mut n)).unwrap();
    assert_eq!(&kernel, n.desired_kernel());

    // Pings from strangers each ask for a DISCONNECT: without a drain the queue overflows.
    for port in 1..=6 {
        let stranger = NodeId::new(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), port),
            1,
        );
        n.handle_message(
            Time::from_millis(2),
            stranger.addr.ip(),
            minuteman_core::Envelope {
                from: stranger,
                msg: minuteman_core::Message::Ping { echo: 1 },
            },
        )
        .unwrap();
    }
    assert!(n.counters().outputs_dropped > 0, "the queue never filled");

    // The data plane lost everything while the queue is full: the resync's operations must
    // still reach the shell, and lead back to the desired state.
    n.resync_kernel(Time::from_millis(3), KernelState::default());
    let mut rebuilt = KernelState::default();
    rebuilt.apply_all(&kernel_ops(&mut n)).unwrap();
    assert_eq!(rebuilt, kernel);
    assert_eq!(n.applied_kernel(), &kernel);
    n.check_invariants().unwrap();
}

/// A restarting agent: its kernel holds what the last run left; until the node's view is
/// complete nothing is removed from it (the records that justify those backends may simply
/// not have arrived yet), and once it is complete the stale state goes.
#[test]
fn a_restarting_node_removes_nothing_until_its_view_is_complete() {
    for by_peer in [false, true] {
        let me = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 61420);
        let contact = NodeId::new(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 61420),
            1,
        );
        let cfg = Config::new(
            NodeId::new(me, 1),
            vec![contact.addr],
            7,
            FrameAuth::Insecure,
        );
        let timeout = cfg.reachability.view_complete_timeout;
        let mut n = Node::new(cfg, Time::ZERO).expect("valid config");
        kernel_ops(&mut n);
        // What the kernel still holds from before the restart: another host's VIP.
        let stale =
            minuteman_core::kernel::Service::new(Protocol::Tcp, "11.0.0.7:80".parse().unwrap());
        let mut kernel = KernelState::default();
        kernel.apply(&Op::AddService(stale)).unwrap();
        kernel
            .apply(&Op::AddDestination {
                service: stale,
                dest: "10.0.0.9:31000".parse().unwrap(),
                weight: 1,
            })
            .unwrap();
        n.resync_kernel(Time::from_millis(1), kernel.clone());
        n.set_local_services(Time::from_millis(2), vec![me.ip()], set(2))
            .unwrap();
        let ops = kernel_ops(&mut n);
        assert!(!ops.is_empty(), "the local backends were not added");
        kernel.apply_all(&ops).unwrap();
        assert!(
            kernel.services.contains_key(&stale),
            "removed before the view is complete"
        );
        assert!(!n.view_complete());
        n.check_invariants().unwrap();

        // The contact answers the JOIN: the first link.
        let reply = |msg| minuteman_core::Envelope { from: contact, msg };
        let t = Time::from_millis(5);
        n.handle_message(
            t,
            contact.addr.ip(),
            reply(minuteman_core::Message::NeighborReply { accepted: true }),
        )
        .unwrap();
        kernel.apply_all(&kernel_ops(&mut n)).unwrap();
        assert!(kernel.services.contains_key(&stale));
        if by_peer {
            // A complete peer that holds nothing this node lacks: caught up.
            let digest = minuteman_core::Message::Digest {
                entries: Vec::new(),
                reply: true,
                complete: true,
            };
            n.handle_message(Time::from_millis(6), contact.addr.ip(), reply(digest))
                .unwrap();
        } else {
            n.handle_timeout(t + timeout);
        }
        assert!(n.view_complete(), "by_peer {by_peer}");
        kernel.apply_all(&kernel_ops(&mut n)).unwrap();
        assert!(
            !kernel.services.contains_key(&stale),
            "the stale service stayed"
        );
        assert_eq!(&kernel, n.desired_kernel());
        assert!(n.counters().kernel_removals_withheld > 0);
        n.check_invariants().unwrap();
    }
}

/// A node (10.0.0.1) linked to `c` (10.0.0.2) and caught up with it (its view complete),
/// with host 10.0.0.3 as epochs 1 (`h1`) and 2 (`h2`). Each message is followed by 20 ms
/// of timers (the search runs at most every 10 ms).
struct Linked {
    node: Node,
    at: u64,
    me: NodeId,
    c: NodeId,
    h1: NodeId,
    h2: NodeId,
}

impl Linked {
    fn new() -> Linked {
        let addr = |i: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 61420);
        let (me, c) = (NodeId::new(addr(1), 1), NodeId::new(addr(2), 1));
        let cfg = Config::new(me, vec![c.addr], 7, FrameAuth::Insecure);
        let mut linked = Linked {
            node: Node::new(cfg, Time::ZERO).expect("valid config"),
            at: 1,
            me,
            c,
            h1: NodeId::new(addr(3), 1),
            h2: NodeId::new(addr(3), 2),
        };
        linked.deliver(c, Message::NeighborReply { accepted: true });
        let caught_up = Message::Digest {
            entries: Vec::new(),
            reply: true,
            complete: true,
        };
        linked.deliver(c, caught_up);
        assert!(linked.node.view_complete());
        linked
    }

    fn deliver(&mut self, from: NodeId, msg: Message) {
        self.at += 1;
        self.node
            .handle_message(
                Time::from_millis(self.at),
                from.addr.ip(),
                Envelope { from, msg },
            )
            .unwrap();
        kernel_ops(&mut self.node);
        self.at += 20;
        self.node.handle_timeout(Time::from_millis(self.at));
        kernel_ops(&mut self.node);
    }
}

/// A peer's COLLECTED never removes a host this node reaches: here the held record is of
/// an older incarnation (epoch 1) while the newer one (epoch 2) is reachable through a
/// neighbour's record. Found by the `node_input` fuzz target: the node checked only that
/// the held incarnation was unreachable, and freed the slot of a reachable host.
#[test]
fn a_peer_collection_never_removes_a_reachable_host() {
    use minuteman_core::wire::DigestEntry;
    let mut l = Linked::new();
    let (me, c, h1, h2) = (l.me, l.c, l.h1, l.h2);
    let records = vec![
        Record::with_links(c, 1, vec![me, h1]),
        Record::with_links(h1, 1, vec![c]),
    ];
    l.deliver(c, Message::Records { records });
    assert!(l.node.is_reachable(&h1));
    // The host restarted as epoch 2: it speaks first-hand, and the neighbour links to it;
    // its new record has not arrived yet, so the held one is still epoch 1's.
    l.deliver(h2, Message::Ping { echo: 1 });
    let records = vec![Record::with_links(c, 2, vec![me, h2])];
    l.deliver(c, Message::Records { records });
    assert!(l.node.is_reachable(&h2));
    assert_eq!(l.node.record(&h1.addr).map(|r| r.origin), Some(h1));
    // A peer says it collected epoch 1's record.
    let entries = vec![DigestEntry {
        addr: h1.addr,
        epoch: 1,
        seq: 1,
    }];
    l.deliver(c, Message::Collected { entries });
    assert_eq!(l.node.counters().records_collected_by_peer, 0);
    assert!(l.node.is_reachable(&h2), "a reachable host was collected");
    l.node.check_invariants().unwrap();
}

/// A host's agent restarted (a new epoch) and its first record lists no services yet, sent
/// as "unchanged since version 0": the VIP backends of the old incarnation leave the
/// desired state. (The delta names no VIP; the VIPs the old epoch served were once left as
/// they were, and stayed in every kernel while the host stayed reachable.)
#[test]
fn a_new_incarnation_without_services_clears_the_old_ones() {
    use minuteman_core::services_delta::ServicesDelta;
    use minuteman_core::RecordBody;
    use std::sync::Arc;
    let mut l = Linked::new();
    let (me, c, h1, h2) = (l.me, l.c, l.h1, l.h2);
    let host = h1.addr.ip();
    let mut services = VipSet::new();
    let vip = Vip {
        protocol: Protocol::Tcp,
        addr: VipAddr::Ip("1.2.3.4".parse().unwrap()),
        port: 80,
    };
    let backend = Backend {
        ip: host,
        port: 20_000,
        agent: host,
        weight: 1,
    };
    services.insert(vip, backend);
    let body = |links: Vec<NodeId>| RecordBody {
        adjacency: links,
        agents: vec![host],
    };
    let old = Record {
        services: Arc::new(services),
        services_seq: 1,
        ..Record::new(h1, 1, body(vec![c]))
    };
    let records = vec![Record::with_links(c, 1, vec![me, h1]), old];
    l.deliver(c, Message::Records { records });
    let on_host = |n: &Node| {
        n.desired_kernel()
            .services
            .values()
            .flat_map(|dests| dests.keys())
            .filter(|d| d.ip() == host)
            .count()
    };
    assert_eq!(
        on_host(&l.node),
        1,
        "the old incarnation's backend is desired"
    );
    // Epoch 2's first record: its services unchanged from nothing (version 0).
    let new = Record {
        delta: Some(Arc::new(ServicesDelta::unchanged(0))),
        ..Record::new(h2, 1, body(vec![c]))
    };
    let records = vec![Record::with_links(c, 2, vec![me, h2]), new];
    l.deliver(c, Message::Records { records });
    assert!(l.node.is_reachable(&h2));
    assert_eq!(l.node.record(&h2.addr).map(|r| r.origin), Some(h2));
    assert_eq!(
        on_host(&l.node),
        0,
        "the old incarnation's backend is still desired"
    );
    l.node.check_invariants().unwrap();
}
