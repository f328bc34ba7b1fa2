//! The agent's DNS answer on arbitrary bytes (a table with a named VIP and task records),
//! over UDP and TCP, with and without an upstream: it never panics; a reply parses, echoes the query's id, is a response, and
//! over UDP fits the largest UDP payload.
//!
//! `cargo +nightly fuzz run dns_query`

#![no_main]

use libfuzzer_sys::fuzz_target;
use minuteman_core::dns::answer::{answer, Outcome, Transport, MAX_UDP_PAYLOAD};
use minuteman_core::dns::hickory::op::{Message, MessageType};
use minuteman_core::dns::table::{DnsTable, DEFAULT_ZONE};
use minuteman_core::kernel::{KernelState, Service};
use minuteman_core::tasks::{TaskEndpoint, TaskName};
use minuteman_core::Protocol;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

fn table() -> &'static DnsTable {
    static TABLE: OnceLock<DnsTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let v4 = Ipv4Addr::new(11, 1, 2, 3);
        let v6: Ipv6Addr = "fd01:c::7".parse().unwrap();
        let mut kernel = KernelState::default();
        for ip in [IpAddr::V4(v4), IpAddr::V6(v6)] {
            kernel.services.insert(
                Service::new(Protocol::Tcp, SocketAddr::new(ip, 80)),
                Arc::default(),
            );
        }
        // And task records: two instances of `web`, with a TCP and a UDP port.
        let mut tasks = BTreeMap::new();
        let (a, b) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V6(v6));
        tasks.insert(
            TaskName {
                task: "web".into(),
                framework: "marathon".into(),
            },
            vec![
                TaskEndpoint::Address(a),
                TaskEndpoint::Address(b),
                TaskEndpoint::Port {
                    protocol: Protocol::Tcp,
                    ip: a,
                    port: 31000,
                },
                TaskEndpoint::Port {
                    protocol: Protocol::Udp,
                    ip: b,
                    port: 53,
                },
            ],
        );
        DnsTable::build(
            DEFAULT_ZONE,
            [("web.marathon", Some(v4), Some(v6))],
            &kernel,
            1,
        )
        .with_tasks("mesos", &tasks)
    })
}

fuzz_target!(|query: &[u8]| {
    for (transport, forwarding) in [
        (Transport::Udp, false),
        (Transport::Udp, true),
        (Transport::Tcp, false),
    ] {
        if let Outcome::Reply { bytes, .. } = answer(query, table(), transport, forwarding) {
            let reply = Message::from_vec(&bytes).expect("a reply parses");
            assert_eq!(reply.metadata.id, u16::from_be_bytes([query[0], query[1]]));
            assert_eq!(reply.metadata.message_type, MessageType::Response);
            if transport == Transport::Udp {
                assert!(bytes.len() <= usize::from(MAX_UDP_PAYLOAD));
            }
        }
    }
});
