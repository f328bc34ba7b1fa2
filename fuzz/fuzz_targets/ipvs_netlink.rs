//! The IPVS netlink layer on arbitrary input: a read of arbitrary bytes (what a kernel, or
//! something posing as one, could answer) goes through the agent's own parsing (netlink
//! messages, their IPVS payloads, every service and destination nested in them) to typed
//! errors or values, never a panic; any operation of the core survives encoding and
//! decoding as its request.
//!
//! `cargo +nightly fuzz run ipvs_netlink`

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use minuteman::dataplane::ipvs::msg::{
    decode_dest, decode_service, ipvs_message, CmdAttr, IpvsMessage, Request,
};
use minuteman::dataplane::netlink::parse_replies;
use minuteman_core::kernel::{Op, Service, MAX_WEIGHT};
use minuteman_core::Protocol;
use neli::nl::{NlPayload, Nlmsghdr};
use neli::FromBytes;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn addr(u: &mut Unstructured<'_>) -> Result<SocketAddr> {
    let ip = if u.arbitrary()? {
        IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?))
    } else {
        IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?))
    };
    Ok(SocketAddr::new(ip, u.arbitrary()?))
}

fn op(u: &mut Unstructured<'_>) -> Result<Op> {
    let protocol = if u.arbitrary()? {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let service = Service::new(protocol, addr(u)?);
    Ok(match u.int_in_range(0..=4)? {
        0 => Op::AddService(service),
        1 => Op::RemoveService(service),
        2 => Op::AddDestination {
            service,
            dest: addr(u)?,
            weight: u.arbitrary()?,
        },
        3 => Op::SetWeight {
            service,
            dest: addr(u)?,
            weight: u.arbitrary()?,
        },
        _ => Op::RemoveDestination {
            service,
            dest: addr(u)?,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // A request of the core round-trips.
    if let Ok(op) = op(&mut u) {
        if let Some(request) = Request::from_op(&op) {
            let bytes = request.encode(0x1d, 7).expect("a request encodes");
            let msg = Nlmsghdr::<u16, IpvsMessage>::from_bytes(&mut Cursor::new(&bytes[..]))
                .expect("its own encoding parses");
            let payload = msg.get_payload().expect("a request has a payload");
            // Weights travel clamped to what IPVS takes.
            let clamped = match op {
                Op::AddDestination {
                    service,
                    dest,
                    weight,
                } => Op::AddDestination {
                    service,
                    dest,
                    weight: weight.min(MAX_WEIGHT),
                },
                Op::SetWeight {
                    service,
                    dest,
                    weight,
                } => Op::SetWeight {
                    service,
                    dest,
                    weight: weight.min(MAX_WEIGHT),
                },
                other => other,
            };
            assert_eq!(
                Some(Request::decode(payload).expect("decodes")),
                Request::from_op(&clamped)
            );
        }
    }
    // Whatever is left, as a read from the kernel, through the agent's own parsing.
    let rest = u.take_rest();
    let Ok(replies) = parse_replies(rest) else {
        return;
    };
    for reply in replies {
        let NlPayload::Payload(body) = reply.nl_payload() else {
            continue;
        };
        let Ok(payload) = ipvs_message(body.as_ref()) else {
            continue;
        };
        let _ = Request::decode(&payload);
        let attrs = payload.attrs().get_attr_handle();
        if let Some(service) = attrs.get_attribute(CmdAttr::Service) {
            let _ = decode_service(service);
        }
        if let Some(dest) = attrs.get_attribute(CmdAttr::Dest) {
            let _ = decode_dest(dest, true);
            let _ = decode_dest(dest, false);
        }
    }
});
