//! The agent's DNS answer on arbitrary bytes, over UDP and TCP, with and without an
//! upstream: it never panics; a reply parses, echoes the query's id, is a response, and
//! over UDP fits the largest UDP payload.
//!
//! `cargo +nightly fuzz run dns_query`

#![no_main]

use libfuzzer_sys::fuzz_target;
use minuteman_core::dns::answer::{answer, Outcome, Transport, MAX_UDP_PAYLOAD};
use minuteman_core::dns::hickory::op::{Message, MessageType};
use minuteman_core::dns::table::{DnsTable, DEFAULT_ZONE};
use minuteman_core::kernel::{KernelState, Service};
use minuteman_core::Protocol;
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
        DnsTable::build(
            DEFAULT_ZONE,
            [("web.marathon", Some(v4), Some(v6))],
            &kernel,
            1,
        )
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
