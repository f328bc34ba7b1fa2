//! One DNS query in, one decision out: the reply's bytes, a forward to the upstream, or a
//! drop. Pure (no sockets, no clock): the server (module `server`) and the fuzz target
//! call the same function.
//!
//! Invariants:
//! - Nothing here panics, whatever the bytes: a query that cannot be parsed but has a
//!   header gets FORMERR with its id; one shorter than a header, or a response (a
//!   reflection attempt), is dropped. Every outcome has its [`Outcome::label`], which
//!   the server counts.
//! - Inside its zones (named VIPs, and task records when enabled) the server is
//!   authoritative: A/AAAA/SRV (and ANY) from the table, TTL [`TTL`], an SRV answer
//!   carrying its targets' addresses in the additional section; a known name without the
//!   asked type is NODATA, an unknown one NXDOMAIN, both with the zone's SOA (negative
//!   TTL [`TTL`]). Outside the zones: REFUSED, or [`Outcome::Forward`] when an upstream
//!   is configured.
//! - A reply never exceeds the size the client can take (512 bytes, or its EDNS payload
//!   size, at most [`MAX_UDP_PAYLOAD`]; 65,535 over TCP): a larger one is sent truncated
//!   (TC set, no records) so the client retries over TCP.

use super::table::{DnsTable, Entry};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// The TTL of every answer and of negative answers: short, so a name follows its VIP.
pub const TTL: u32 = 5;
/// The largest UDP reply, whatever the client's EDNS says (RFC 9715's safe size).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The largest query read (over TCP the length prefix allows 65,535).
pub const MAX_QUERY: usize = 4096;

/// How the query came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back.
    Reply { bytes: Vec<u8>, label: &'static str },
    /// Outside the zone with an upstream configured: relay the query.
    Forward,
    /// Send nothing.
    Drop { label: &'static str },
}

impl Outcome {
    /// The counter label: `answer`, `nodata`, `nxdomain`, `refused`, `formerr`, `notimp`,
    /// `truncated`, `forward`, `dropped_short`, `dropped_response`, `dropped_oversized`,
    /// `servfail`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Reply { label, .. } | Outcome::Drop { label } => label,
            Outcome::Forward => "forward",
        }
    }
}

/// The reply to `query` from `table` (`forwarding`: whether names outside the zone go to
/// an upstream).
pub fn answer(query: &[u8], table: &DnsTable, transport: Transport, forwarding: bool) -> Outcome {
    if query.len() < 12 {
        return Outcome::Drop {
            label: "dropped_short",
        };
    }
    if query.len() > MAX_QUERY {
        return Outcome::Drop {
            label: "dropped_oversized",
        };
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    // QR is the top bit of the third byte: never answer a response.
    if query[2] & 0x80 != 0 {
        return Outcome::Drop {
            label: "dropped_response",
        };
    }
    let request = match Message::from_vec(query) {
        Ok(request) => request,
        Err(_) => return error(id, OpCode::Query, ResponseCode::FormErr, "formerr"),
    };
    let op = request.metadata.op_code;
    if op != OpCode::Query {
        return error(id, op, ResponseCode::NotImp, "notimp");
    }
    let [question] = request.queries.as_slice() else {
        return error(id, op, ResponseCode::FormErr, "formerr");
    };
    let qname = question.name().to_lowercase().to_ascii();
    let qname = qname.trim_end_matches('.');
    let Some(zone) = table.zone_of(qname) else {
        return if forwarding {
            Outcome::Forward
        } else {
            error(id, op, ResponseCode::Refused, "refused")
        };
    };

    let mut reply = Message::response(id, op);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = false;
    reply.add_query(question.clone());
    let max_payload = match (transport, &request.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(edns)) => usize::from(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        (Transport::Udp, None) => 512,
    };
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        reply.set_edns(edns);
    }
    let class_ok = matches!(question.query_class(), DNSClass::IN | DNSClass::ANY);
    let name = question.name().clone();
    let found = if class_ok { table.lookup(qname) } else { None };
    let qtype = question.query_type();
    let label = match found {
        Some(entry) => {
            let any = qtype == RecordType::ANY;
            if any || qtype == RecordType::A || qtype == RecordType::AAAA {
                add_addresses(&mut reply, &name, entry, qtype, false);
            }
            if any || qtype == RecordType::SRV {
                let mut targets = std::collections::BTreeSet::new();
                for srv in &entry.srv {
                    // A target that is not a valid name is left out (never a failed reply).
                    let Ok(target) = Name::from_ascii(format!("{}.", srv.target)) else {
                        continue;
                    };
                    let rdata = RData::SRV(SRV::new(0, 1, srv.port, target.clone()));
                    reply.add_answer(Record::from_rdata(name.clone(), TTL, rdata));
                    // Each target's addresses once, however many of its ports are listed.
                    if let Some(addresses) = table.lookup(&srv.target) {
                        if targets.insert(srv.target.as_str()) {
                            add_addresses(&mut reply, &target, addresses, RecordType::ANY, true);
                        }
                    }
                }
            }
            if reply.answers.is_empty() {
                reply.add_authority(soa(zone, table.serial()));
                "nodata"
            } else {
                "answer"
            }
        }
        None if class_ok && qname == zone => {
            if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                reply.add_answer(soa(zone, table.serial()));
                "answer"
            } else {
                reply.add_authority(soa(zone, table.serial()));
                "nodata"
            }
        }
        None if !class_ok => return error(id, op, ResponseCode::Refused, "refused"),
        None => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            reply.add_authority(soa(zone, table.serial()));
            "nxdomain"
        }
    };
    let Ok(bytes) = reply.to_vec() else {
        return error(id, op, ResponseCode::ServFail, "servfail");
    };
    if bytes.len() > max_payload {
        let mut cut = reply.truncate();
        cut.add_query(question.clone());
        return match cut.to_vec() {
            Ok(bytes) => Outcome::Reply {
                bytes,
                label: "truncated",
            },
            Err(_) => error(id, op, ResponseCode::ServFail, "servfail"),
        };
    }
    Outcome::Reply { bytes, label }
}

/// A reply with no records and `code`.
fn error(id: u16, op: OpCode, code: ResponseCode, label: &'static str) -> Outcome {
    let mut reply = Message::error_msg(id, op, code);
    reply.metadata.message_type = MessageType::Response;
    match reply.to_vec() {
        Ok(bytes) => Outcome::Reply { bytes, label },
        Err(_) => Outcome::Drop { label },
    }
}

/// The A/AAAA records of `entry` for `qtype` (A, AAAA or ANY), as answers or, for an SRV
/// target, as additional records.
fn add_addresses(
    reply: &mut Message,
    name: &Name,
    entry: &Entry,
    qtype: RecordType,
    additional: bool,
) {
    let mut records = Vec::new();
    if matches!(qtype, RecordType::A | RecordType::ANY) {
        records.extend(entry.v4.iter().map(|&ip| RData::A(A(ip))));
    }
    if matches!(qtype, RecordType::AAAA | RecordType::ANY) {
        records.extend(entry.v6.iter().map(|&ip| RData::AAAA(AAAA(ip))));
    }
    for rdata in records {
        let record = Record::from_rdata(name.clone(), TTL, rdata);
        if additional {
            reply.add_additional(record);
        } else {
            reply.add_answer(record);
        }
    }
}

/// The zone's SOA record (negative answers are cached for [`TTL`]).
fn soa(zone: &str, serial: u32) -> Record {
    let zone = Name::from_ascii(format!("{zone}.")).unwrap_or_else(|_| Name::root());
    let host = |label: &str| zone.prepend_label(label).unwrap_or_else(|_| zone.clone());
    Record::from_rdata(
        zone.clone(),
        TTL,
        RData::SOA(SOA::new(
            host("ns"),
            host("hostmaster"),
            serial,
            60,
            30,
            86_400,
            TTL,
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::table::DEFAULT_ZONE;
    use crate::kernel::{KernelState, Service};
    use crate::Protocol;
    use hickory_proto::op::Query;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::sync::Arc;

    const WEB4: Ipv4Addr = Ipv4Addr::new(11, 1, 2, 3);

    fn table() -> DnsTable {
        let v6: Ipv6Addr = "fd01:c::7".parse().unwrap();
        let mut kernel = KernelState::default();
        for ip in [
            IpAddr::V4(WEB4),
            IpAddr::V6(v6),
            IpAddr::V4(Ipv4Addr::new(11, 0, 0, 9)),
        ] {
            kernel.services.insert(
                Service::new(Protocol::Tcp, SocketAddr::new(ip, 80)),
                Arc::default(),
            );
        }
        DnsTable::build(
            DEFAULT_ZONE,
            [
                ("web.marathon", Some(WEB4), Some(v6)),
                ("v4only.marathon", Some(Ipv4Addr::new(11, 0, 0, 9)), None),
            ],
            &kernel,
            3,
        )
    }

    fn query(name: &str, ty: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    fn reply(outcome: Outcome) -> (Message, &'static str) {
        match outcome {
            Outcome::Reply { bytes, label } => (Message::from_vec(&bytes).unwrap(), label),
            other => panic!("no reply: {other:?}"),
        }
    }

    /// The VIP table with a tasks zone: `web.marathon` runs twice (10.0.0.1 with a TCP
    /// port, 10.0.0.2 with a UDP port).
    fn tasks_table() -> DnsTable {
        use crate::tasks::{TaskEndpoint, TaskName};
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let mut tasks = std::collections::BTreeMap::new();
        tasks.insert(
            TaskName {
                task: "web".into(),
                framework: "marathon".into(),
            },
            vec![
                TaskEndpoint::Address(ip1),
                TaskEndpoint::Address(ip2),
                TaskEndpoint::Port {
                    protocol: Protocol::Tcp,
                    ip: ip1,
                    port: 31000,
                },
                TaskEndpoint::Port {
                    protocol: Protocol::Tcp,
                    ip: ip1,
                    port: 31001,
                },
                TaskEndpoint::Port {
                    protocol: Protocol::Udp,
                    ip: ip2,
                    port: 53,
                },
            ],
        );
        table().with_tasks(".Mesos.", &tasks)
    }

    #[test]
    fn task_records_answer_addresses_and_srv_with_their_targets() {
        let t = tasks_table();
        let ask = |name: &str, ty| reply(answer(&query(name, ty, true), &t, Transport::Udp, false));
        let (m, label) = ask("WEB.marathon.mesos.", RecordType::A);
        assert_eq!(label, "answer");
        let ips: Vec<_> = m.answers.iter().map(|r| r.data.clone()).collect();
        assert_eq!(
            ips,
            [
                RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
                RData::A(A(Ipv4Addr::new(10, 0, 0, 2)))
            ]
        );
        let (m, label) = ask("_web._tcp.marathon.mesos.", RecordType::SRV);
        assert_eq!(label, "answer");
        assert_eq!(m.answers.len(), 2, "two ports at one address");
        let RData::SRV(srv) = &m.answers[0].data else {
            panic!("not SRV: {:?}", m.answers[0]);
        };
        assert_eq!(srv.port, 31000);
        assert_eq!(srv.target.to_ascii(), "10-0-0-1.web.marathon.mesos.");
        assert_eq!(
            m.additionals
                .iter()
                .map(|r| (r.name.to_ascii(), r.data.clone()))
                .collect::<Vec<_>>(),
            [(
                "10-0-0-1.web.marathon.mesos.".to_string(),
                RData::A(A(Ipv4Addr::new(10, 0, 0, 1)))
            )],
            "the target's address once"
        );
        let (m, _) = ask("_web._udp.marathon.mesos.", RecordType::SRV);
        assert_eq!(m.answers.len(), 1);
        // The target answers its one address.
        let (m, _) = ask("10-0-0-2.web.marathon.mesos.", RecordType::A);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(10, 0, 0, 2))));
        // No SRV at the address name, no address at the SRV name: NODATA.
        let (_, label) = ask("web.marathon.mesos.", RecordType::SRV);
        assert_eq!(label, "nodata");
        let (m, label) = ask("db.marathon.mesos.", RecordType::A);
        assert_eq!(label, "nxdomain");
        assert_eq!(m.authorities[0].name.to_ascii(), "mesos.");
        let (m, label) = ask("mesos.", RecordType::SOA);
        assert_eq!(label, "answer");
        assert_eq!(m.answers[0].name.to_ascii(), "mesos.");
        // The VIP zone still answers from the same table.
        let (_, label) = ask("web.marathon.l4lb.thisdcos.directory.", RecordType::A);
        assert_eq!(label, "answer");
        // A table without a tasks zone refuses it.
        let (m, _) = reply(answer(
            &query("web.marathon.mesos.", RecordType::A, false),
            &table(),
            Transport::Udp,
            false,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn names_in_the_zone_are_answered_authoritatively() {
        let t = table();
        let (m, label) = reply(answer(
            &query(
                "WEB.marathon.l4lb.thisdcos.directory.",
                RecordType::A,
                false,
            ),
            &t,
            Transport::Udp,
            false,
        ));
        assert_eq!(label, "answer");
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, RData::A(A(WEB4)));
        assert_eq!(m.answers[0].ttl, TTL);
        let (m, _) = reply(answer(
            &query(
                "web.marathon.l4lb.thisdcos.directory.",
                RecordType::AAAA,
                true,
            ),
            &t,
            Transport::Udp,
            false,
        ));
        assert_eq!(
            m.answers[0].data,
            RData::AAAA(AAAA("fd01:c::7".parse().unwrap()))
        );
        assert!(m.edns.is_some());
        let (m, _) = reply(answer(
            &query(
                "web.marathon.l4lb.thisdcos.directory.",
                RecordType::ANY,
                false,
            ),
            &t,
            Transport::Tcp,
            false,
        ));
        assert_eq!(m.answers.len(), 2);
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let t = table();
        let (m, label) = reply(answer(
            &query(
                "v4only.marathon.l4lb.thisdcos.directory.",
                RecordType::AAAA,
                false,
            ),
            &t,
            Transport::Udp,
            false,
        ));
        assert_eq!(
            (label, m.metadata.response_code),
            ("nodata", ResponseCode::NoError)
        );
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        let (m, label) = reply(answer(
            &query(
                "nope.marathon.l4lb.thisdcos.directory.",
                RecordType::A,
                false,
            ),
            &t,
            Transport::Udp,
            false,
        ));
        assert_eq!(
            (label, m.metadata.response_code),
            ("nxdomain", ResponseCode::NXDomain)
        );
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        let (m, label) = reply(answer(
            &query(
                "web.marathon.l4lb.thisdcos.directory.",
                RecordType::MX,
                false,
            ),
            &t,
            Transport::Udp,
            false,
        ));
        assert_eq!(label, "nodata");
        assert!(m.answers.is_empty());
        let (m, label) = reply(answer(
            &query("l4lb.thisdcos.directory.", RecordType::SOA, false),
            &t,
            Transport::Udp,
            false,
        ));
        assert_eq!((label, m.answers.len()), ("answer", 1));
    }

    #[test]
    fn names_outside_are_refused_or_forwarded() {
        let t = table();
        let q = query("example.com.", RecordType::A, false);
        let (m, label) = reply(answer(&q, &t, Transport::Udp, false));
        assert_eq!(
            (label, m.metadata.response_code),
            ("refused", ResponseCode::Refused)
        );
        assert_eq!(answer(&q, &t, Transport::Udp, true), Outcome::Forward);
        // A name that only ends like the zone is outside it.
        let q = query("xl4lb.thisdcos.directory.", RecordType::A, false);
        assert_eq!(answer(&q, &t, Transport::Udp, true), Outcome::Forward);
    }

    #[test]
    fn bad_queries_get_errors_or_are_dropped() {
        let t = table();
        assert_eq!(
            answer(&[0; 5], &t, Transport::Udp, false).label(),
            "dropped_short"
        );
        assert_eq!(
            answer(&vec![0; MAX_QUERY + 1], &t, Transport::Tcp, false).label(),
            "dropped_oversized"
        );
        // A header claiming one question, and nothing after it.
        let mut truncated = query(
            "web.marathon.l4lb.thisdcos.directory.",
            RecordType::A,
            false,
        );
        truncated.truncate(15);
        let (m, label) = reply(answer(&truncated, &t, Transport::Udp, false));
        assert_eq!(
            (label, m.metadata.response_code, m.metadata.id),
            ("formerr", ResponseCode::FormErr, 0x1234)
        );
        // A response is never answered.
        let mut response = query(
            "web.marathon.l4lb.thisdcos.directory.",
            RecordType::A,
            false,
        );
        response[2] |= 0x80;
        assert_eq!(
            answer(&response, &t, Transport::Udp, false).label(),
            "dropped_response"
        );
        // Two questions.
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("a.l4lb.thisdcos.directory.").unwrap(),
            RecordType::A,
        ));
        m.add_query(Query::query(
            Name::from_ascii("b.l4lb.thisdcos.directory.").unwrap(),
            RecordType::A,
        ));
        let (m, label) = reply(answer(&m.to_vec().unwrap(), &t, Transport::Udp, false));
        assert_eq!(
            (label, m.metadata.response_code),
            ("formerr", ResponseCode::FormErr)
        );
        // Another opcode.
        let mut update = query(
            "web.marathon.l4lb.thisdcos.directory.",
            RecordType::A,
            false,
        );
        update[2] = (update[2] & 0x87) | (5 << 3);
        let (m, label) = reply(answer(&update, &t, Transport::Udp, false));
        assert_eq!(
            (label, m.metadata.response_code),
            ("notimp", ResponseCode::NotImp)
        );
        // Another class inside the zone.
        let mut m = Message::new(8, MessageType::Query, OpCode::Query);
        let mut q = Query::query(
            Name::from_ascii("web.marathon.l4lb.thisdcos.directory.").unwrap(),
            RecordType::A,
        );
        q.set_query_class(DNSClass::CH);
        m.add_query(q);
        let (m, label) = reply(answer(&m.to_vec().unwrap(), &t, Transport::Udp, false));
        assert_eq!(
            (label, m.metadata.response_code),
            ("refused", ResponseCode::Refused)
        );
    }

    proptest::proptest! {
        /// Whatever the bytes: no panic, and a reply (if any) parses and echoes the id.
        #[test]
        fn any_bytes_get_a_well_formed_reply_or_none(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let t = table();
            for transport in [Transport::Udp, Transport::Tcp] {
                if let Outcome::Reply { bytes: out, .. } = answer(&bytes, &t, transport, false) {
                    let m = Message::from_vec(&out).unwrap();
                    proptest::prop_assert_eq!(m.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
                    proptest::prop_assert_eq!(m.metadata.message_type, MessageType::Response);
                    proptest::prop_assert!(transport == Transport::Tcp || out.len() <= usize::from(MAX_UDP_PAYLOAD));
                }
            }
        }
    }
}
