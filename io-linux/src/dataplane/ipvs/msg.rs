//! IPVS generic-netlink messages, without a socket: requests encoded to bytes, requests and
//! dumped entries decoded back from attributes (the kernel's replies nest the same
//! attributes as the requests, so one decoder serves both).
//!
//! The layout is the kernel's `include/uapi/linux/ip_vs.h`, family `IPVS`, version 1.
//!
//! Invariants:
//! - Every request carries exactly the attributes the kernel insists on for its command:
//!   a whole service (family, protocol, address, port, scheduler `wlc`, flags, timeout 0,
//!   netmask) for NEW/SET_SERVICE, the service key only for DEL_SERVICE and dumps, a whole
//!   destination (address, port, family, forwarding MASQ, weight, thresholds 0) for
//!   NEW/SET_DEST, the destination key for DEL_DEST.
//! - Ports travel in network order, addresses as the kernel's 16-byte `nf_inet_addr`.
//! - Weights above [`MAX_WEIGHT`] are sent as [`MAX_WEIGHT`] (the kernel refuses larger
//!   ones with `ERANGE`; weights come from peers' records).
//! - A destination of the other address family than its service has no request
//!   ([`Request::from_op`] returns `None`): IPVS mixes families only for tunnelling.
//! - Decoding never panics: a missing or malformed attribute is a [`DecodeError`].

use minuteman_core::kernel::{Op, Service, MAX_WEIGHT};
use minuteman_core::Protocol;
use neli::consts::genl::{Cmd, NlAttrType};
use neli::consts::nl::NlmF;
use neli::genl::{
    AttrTypeBuilder, GenlAttrHandle, Genlmsghdr, GenlmsghdrBuilder, Nlattr, NlattrBuilder,
};
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::types::{Buffer, GenlBuffer};
use neli::{neli_enum, ToBytes};
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The generic netlink family name of IPVS.
pub const FAMILY_NAME: &str = "IPVS";
/// The family's protocol version.
pub const FAMILY_VERSION: u8 = 1;
/// The one scheduler minuteman programs: weighted least connections.
pub const SCHEDULER: &str = "wlc";
/// `IP_VS_CONN_F_MASQ`: masquerading (NAT) forwarding.
pub const FORWARD_MASQ: u32 = 0;
/// `IP_VS_CONN_F_FWD_MASK`: the forwarding method bits of a destination's flags.
pub const FORWARD_MASK: u32 = 0x7;
/// `IP_VS_SVC_F_PERSISTENT`: the service keeps a client on one destination.
pub const SVC_F_PERSISTENT: u32 = 0x1;
/// The service flags the kernel sets itself (`IP_VS_SVC_F_HASHED`); ignored when comparing.
pub const SVC_F_HASHED: u32 = 0x2;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const IPPROTO_TCP: u16 = libc::IPPROTO_TCP as u16;
const IPPROTO_UDP: u16 = libc::IPPROTO_UDP as u16;

/// `IPVS_CMD_*`.
#[neli_enum(serialized_type = "u8")]
pub enum IpvsCmd {
    Unspec = 0,
    NewService = 1,
    SetService = 2,
    DelService = 3,
    GetService = 4,
    NewDest = 5,
    SetDest = 6,
    DelDest = 7,
    GetDest = 8,
    Flush = 17,
}
impl Cmd for IpvsCmd {}

/// `IPVS_CMD_ATTR_*`: the top-level attributes.
#[neli_enum(serialized_type = "u16")]
pub enum CmdAttr {
    Unspec = 0,
    Service = 1,
    Dest = 2,
}
impl NlAttrType for CmdAttr {}

/// `IPVS_SVC_ATTR_*`: nested in [`CmdAttr::Service`].
#[neli_enum(serialized_type = "u16")]
pub enum SvcAttr {
    Unspec = 0,
    Af = 1,
    Protocol = 2,
    Addr = 3,
    Port = 4,
    Fwmark = 5,
    SchedName = 6,
    Flags = 7,
    Timeout = 8,
    Netmask = 9,
    Stats = 10,
    PeName = 11,
    Stats64 = 12,
}
impl NlAttrType for SvcAttr {}

/// `IPVS_DEST_ATTR_*`: nested in [`CmdAttr::Dest`].
#[neli_enum(serialized_type = "u16")]
pub enum DestAttr {
    Unspec = 0,
    Addr = 1,
    Port = 2,
    FwdMethod = 3,
    Weight = 4,
    UThresh = 5,
    LThresh = 6,
    ActiveConns = 7,
    InactConns = 8,
    PersistConns = 9,
    Stats = 10,
    AddrFamily = 11,
    Stats64 = 12,
    TunType = 13,
    TunPort = 14,
    TunFlags = 15,
}
impl NlAttrType for DestAttr {}

/// The generic netlink message of the IPVS family.
pub type IpvsMessage = Genlmsghdr<IpvsCmd, CmdAttr>;

/// One request to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    NewService(Service),
    /// Rewrites a service's scheduler, flags and timeout to minuteman's (an adopted
    /// service programmed otherwise), keeping its destinations and connections.
    SetService(Service),
    DelService(Service),
    NewDest {
        service: Service,
        dest: SocketAddr,
        weight: u32,
    },
    /// Sets the weight, and the forwarding method to MASQ.
    SetDest {
        service: Service,
        dest: SocketAddr,
        weight: u32,
    },
    DelDest {
        service: Service,
        dest: SocketAddr,
    },
    /// Every service (NLM_F_DUMP).
    DumpServices,
    /// Every destination of one service (NLM_F_DUMP).
    DumpDests(Service),
    /// Removes every service of the namespace: never sent by the agent (it would remove
    /// services minuteman does not own); tests use it to start from empty.
    Flush,
}

/// A service as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DumpedService {
    /// A service keyed by protocol, address and port.
    Virtual {
        service: Service,
        scheduler: String,
        /// Without [`SVC_F_HASHED`].
        flags: u32,
        timeout: u32,
    },
    /// A firewall-mark service, or one of a protocol minuteman does not program (SCTP):
    /// never minuteman's.
    Other { description: String },
}

/// A destination as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedDest {
    pub addr: SocketAddr,
    pub weight: u32,
    /// The forwarding method ([`FORWARD_MASQ`] for minuteman's).
    pub forward: u32,
}

/// Why a message or attribute could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("attribute {0} is missing")]
    Missing(&'static str),
    #[error("attribute {what} is malformed: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("unexpected command {0}")]
    Command(u8),
}

/// Building a message failed (a bug: every request here is well-formed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode an IPVS request: {0}")]
pub struct EncodeError(String);

fn encode_err(e: impl std::fmt::Display) -> EncodeError {
    EncodeError(e.to_string())
}

impl Request {
    /// The request that carries out `op`; `None` for a destination of the other address
    /// family than its service.
    pub fn from_op(op: &Op) -> Option<Request> {
        let same_family =
            |service: &Service, dest: &SocketAddr| service.addr.is_ipv4() == dest.is_ipv4();
        Some(match *op {
            Op::AddService(service) => Request::NewService(service),
            Op::RemoveService(service) => Request::DelService(service),
            Op::AddDestination {
                service,
                dest,
                weight,
            } => {
                if !same_family(&service, &dest) {
                    return None;
                }
                Request::NewDest {
                    service,
                    dest,
                    weight,
                }
            }
            Op::SetWeight {
                service,
                dest,
                weight,
            } => {
                if !same_family(&service, &dest) {
                    return None;
                }
                Request::SetDest {
                    service,
                    dest,
                    weight,
                }
            }
            Op::RemoveDestination { service, dest } => {
                if !same_family(&service, &dest) {
                    return None;
                }
                Request::DelDest { service, dest }
            }
        })
    }

    /// The generic netlink command.
    pub fn cmd(&self) -> IpvsCmd {
        match self {
            Request::NewService(_) => IpvsCmd::NewService,
            Request::SetService(_) => IpvsCmd::SetService,
            Request::DelService(_) => IpvsCmd::DelService,
            Request::NewDest { .. } => IpvsCmd::NewDest,
            Request::SetDest { .. } => IpvsCmd::SetDest,
            Request::DelDest { .. } => IpvsCmd::DelDest,
            Request::DumpServices => IpvsCmd::GetService,
            Request::DumpDests(_) => IpvsCmd::GetDest,
            Request::Flush => IpvsCmd::Flush,
        }
    }

    /// Whether the request is a dump (answered by entries, then DONE; no ACK).
    pub fn is_dump(&self) -> bool {
        matches!(self, Request::DumpServices | Request::DumpDests(_))
    }

    /// The generic netlink message (header and attributes).
    pub fn message(&self) -> Result<IpvsMessage, EncodeError> {
        let mut attrs = GenlBuffer::new();
        match self {
            Request::NewService(service) | Request::SetService(service) => {
                attrs.push(service_attr(service, true)?);
            }
            Request::DelService(service) | Request::DumpDests(service) => {
                attrs.push(service_attr(service, false)?);
            }
            Request::NewDest {
                service,
                dest,
                weight,
            }
            | Request::SetDest {
                service,
                dest,
                weight,
            } => {
                attrs.push(service_attr(service, false)?);
                attrs.push(dest_attr(dest, Some(*weight))?);
            }
            Request::DelDest { service, dest } => {
                attrs.push(service_attr(service, false)?);
                attrs.push(dest_attr(dest, None)?);
            }
            Request::DumpServices | Request::Flush => {}
        }
        GenlmsghdrBuilder::default()
            .cmd(self.cmd())
            .version(FAMILY_VERSION)
            .attrs(attrs)
            .build()
            .map_err(encode_err)
    }

    /// The whole netlink message: to the IPVS `family`, with sequence number `seq`,
    /// flags REQUEST and ACK (REQUEST and DUMP for a dump).
    pub fn encode(&self, family: u16, seq: u32) -> Result<Vec<u8>, EncodeError> {
        let flags = if self.is_dump() {
            NlmF::REQUEST | NlmF::DUMP
        } else {
            NlmF::REQUEST | NlmF::ACK
        };
        let msg = NlmsghdrBuilder::default()
            .nl_type(family)
            .nl_flags(flags)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(self.message()?))
            .build()
            .map_err(encode_err)?;
        let mut buffer = Cursor::new(Vec::new());
        msg.to_bytes(&mut buffer).map_err(encode_err)?;
        Ok(buffer.into_inner())
    }

    /// Reads a request back from its generic netlink message (the tests' decoder, and
    /// the reading of what the kernel echoes with an error).
    pub fn decode(msg: &IpvsMessage) -> Result<Request, DecodeError> {
        let attrs = msg.attrs().get_attr_handle();
        let service = || -> Result<Service, DecodeError> {
            let nested = attrs
                .get_attribute(CmdAttr::Service)
                .ok_or(DecodeError::Missing("IPVS_CMD_ATTR_SERVICE"))?;
            match decode_service(nested)? {
                DumpedService::Virtual { service, .. } => Ok(service),
                DumpedService::Other { description } => Err(DecodeError::Malformed {
                    what: "IPVS_CMD_ATTR_SERVICE",
                    detail: description,
                }),
            }
        };
        let dest = || -> Result<DumpedDest, DecodeError> {
            let nested = attrs
                .get_attribute(CmdAttr::Dest)
                .ok_or(DecodeError::Missing("IPVS_CMD_ATTR_DEST"))?;
            decode_dest(nested, service()?.addr.is_ipv4())
        };
        Ok(match msg.cmd() {
            IpvsCmd::NewService => Request::NewService(service()?),
            IpvsCmd::SetService => Request::SetService(service()?),
            IpvsCmd::DelService => Request::DelService(service()?),
            IpvsCmd::NewDest => {
                let d = dest()?;
                Request::NewDest {
                    service: service()?,
                    dest: d.addr,
                    weight: d.weight,
                }
            }
            IpvsCmd::SetDest => {
                let d = dest()?;
                Request::SetDest {
                    service: service()?,
                    dest: d.addr,
                    weight: d.weight,
                }
            }
            IpvsCmd::DelDest => Request::DelDest {
                service: service()?,
                dest: dest()?.addr,
            },
            IpvsCmd::GetService => Request::DumpServices,
            IpvsCmd::GetDest => Request::DumpDests(service()?),
            IpvsCmd::Flush => Request::Flush,
            other => return Err(DecodeError::Command(u8::from(*other))),
        })
    }
}

fn attr<T: NlAttrType, P: neli::Size + ToBytes>(
    ty: T,
    payload: P,
) -> Result<Nlattr<T, Buffer>, EncodeError> {
    NlattrBuilder::default()
        .nla_type(
            AttrTypeBuilder::default()
                .nla_type(ty)
                .build()
                .map_err(encode_err)?,
        )
        .nla_payload(payload)
        .build()
        .map_err(encode_err)
}

/// The kernel's `union nf_inet_addr`: 16 bytes, an IPv4 address in the first four.
fn inet_addr(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

fn family(ip: IpAddr) -> u16 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

/// `IPVS_CMD_ATTR_SERVICE`: the key (family, protocol, address, port), and with `full`
/// the parameters NEW/SET_SERVICE require.
fn service_attr(service: &Service, full: bool) -> Result<Nlattr<CmdAttr, Buffer>, EncodeError> {
    let ip = service.addr.ip();
    let protocol = match service.protocol {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    };
    let mut nested = attr(CmdAttr::Service, Buffer::new())?
        .nest(&attr(SvcAttr::Af, family(ip))?)
        .map_err(encode_err)?
        .nest(&attr(SvcAttr::Protocol, protocol)?)
        .map_err(encode_err)?
        .nest(&attr(SvcAttr::Addr, inet_addr(ip))?)
        .map_err(encode_err)?
        .nest(&attr(SvcAttr::Port, service.addr.port().to_be_bytes())?)
        .map_err(encode_err)?;
    if full {
        // struct ip_vs_flags { flags, mask }: no flag set, all of them decided.
        let mut flags = [0u8; 8];
        flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
        // The persistence netmask: all ones (IPv4, network order) or a prefix length.
        let netmask: u32 = if ip.is_ipv4() { u32::MAX } else { 128 };
        nested = nested
            .nest(&attr(SvcAttr::SchedName, SCHEDULER)?)
            .map_err(encode_err)?
            .nest(&attr(SvcAttr::Flags, flags)?)
            .map_err(encode_err)?
            .nest(&attr(SvcAttr::Timeout, 0u32)?)
            .map_err(encode_err)?
            .nest(&attr(SvcAttr::Netmask, netmask)?)
            .map_err(encode_err)?;
    }
    Ok(nested)
}

/// `IPVS_CMD_ATTR_DEST`: the key (address, port), and with a weight the parameters
/// NEW/SET_DEST require.
fn dest_attr(
    dest: &SocketAddr,
    weight: Option<u32>,
) -> Result<Nlattr<CmdAttr, Buffer>, EncodeError> {
    let mut nested = attr(CmdAttr::Dest, Buffer::new())?
        .nest(&attr(DestAttr::Addr, inet_addr(dest.ip()))?)
        .map_err(encode_err)?
        .nest(&attr(DestAttr::Port, dest.port().to_be_bytes())?)
        .map_err(encode_err)?
        .nest(&attr(DestAttr::AddrFamily, family(dest.ip()))?)
        .map_err(encode_err)?;
    if let Some(weight) = weight {
        nested = nested
            .nest(&attr(DestAttr::FwdMethod, FORWARD_MASQ)?)
            .map_err(encode_err)?
            .nest(&attr(DestAttr::Weight, weight.min(MAX_WEIGHT))?)
            .map_err(encode_err)?
            .nest(&attr(DestAttr::UThresh, 0u32)?)
            .map_err(encode_err)?
            .nest(&attr(DestAttr::LThresh, 0u32)?)
            .map_err(encode_err)?;
    }
    Ok(nested)
}

fn bytes<'a, T: NlAttrType>(
    handle: &'a GenlAttrHandle<'a, T>,
    ty: T,
    what: &'static str,
) -> Result<&'a [u8], DecodeError> {
    handle
        .get_attribute(ty)
        .map(|a| a.nla_payload().as_ref())
        .ok_or(DecodeError::Missing(what))
}

fn fixed<const N: usize>(raw: &[u8], what: &'static str) -> Result<[u8; N], DecodeError> {
    raw.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DecodeError::Malformed {
            what,
            detail: format!("{} bytes, expected at least {N}", raw.len()),
        })
}

fn u16_ne(raw: &[u8], what: &'static str) -> Result<u16, DecodeError> {
    fixed::<2>(raw, what).map(u16::from_ne_bytes)
}

fn u32_ne(raw: &[u8], what: &'static str) -> Result<u32, DecodeError> {
    fixed::<4>(raw, what).map(u32::from_ne_bytes)
}

fn ip_of(raw: &[u8], af: u16, what: &'static str) -> Result<IpAddr, DecodeError> {
    match af {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::from(fixed::<4>(raw, what)?))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(fixed::<16>(raw, what)?))),
        other => Err(DecodeError::Malformed {
            what,
            detail: format!("address family {other}"),
        }),
    }
}

fn nested_err(what: &'static str) -> impl Fn(neli::err::DeError) -> DecodeError {
    move |e| DecodeError::Malformed {
        what,
        detail: e.to_string(),
    }
}

/// The IPVS generic netlink message in the payload of one netlink reply.
pub fn ipvs_message(body: &[u8]) -> Result<IpvsMessage, neli::err::DeError> {
    use neli::FromBytesWithInput;
    IpvsMessage::from_bytes_with_input(&mut Cursor::new(body), body.len())
}

/// Reads an `IPVS_CMD_ATTR_SERVICE` attribute (of a request or of a dump reply).
pub fn decode_service(nested: &Nlattr<CmdAttr, Buffer>) -> Result<DumpedService, DecodeError> {
    let svc = nested
        .get_attr_handle::<SvcAttr>()
        .map_err(nested_err("IPVS_CMD_ATTR_SERVICE"))?;
    let af = u16_ne(
        bytes(&svc, SvcAttr::Af, "IPVS_SVC_ATTR_AF")?,
        "IPVS_SVC_ATTR_AF",
    )?;
    if let Some(mark) = svc.get_attribute(SvcAttr::Fwmark) {
        let mark = u32_ne(mark.nla_payload().as_ref(), "IPVS_SVC_ATTR_FWMARK")?;
        if mark != 0 {
            return Ok(DumpedService::Other {
                description: format!("fwmark {mark} (family {af})"),
            });
        }
    }
    let proto = u16_ne(
        bytes(&svc, SvcAttr::Protocol, "IPVS_SVC_ATTR_PROTOCOL")?,
        "IPVS_SVC_ATTR_PROTOCOL",
    )?;
    let ip = ip_of(
        bytes(&svc, SvcAttr::Addr, "IPVS_SVC_ATTR_ADDR")?,
        af,
        "IPVS_SVC_ATTR_ADDR",
    )?;
    let port = u16::from_be_bytes(fixed::<2>(
        bytes(&svc, SvcAttr::Port, "IPVS_SVC_ATTR_PORT")?,
        "IPVS_SVC_ATTR_PORT",
    )?);
    let addr = SocketAddr::new(ip, port);
    let protocol = match proto {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        other => {
            return Ok(DumpedService::Other {
                description: format!("protocol {other} {addr}"),
            })
        }
    };
    let scheduler = match svc.get_attribute(SvcAttr::SchedName) {
        Some(a) => {
            let raw = a.nla_payload().as_ref();
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        }
        None => String::new(),
    };
    let flags = match svc.get_attribute(SvcAttr::Flags) {
        Some(a) => u32_ne(a.nla_payload().as_ref(), "IPVS_SVC_ATTR_FLAGS")? & !SVC_F_HASHED,
        None => 0,
    };
    let timeout = match svc.get_attribute(SvcAttr::Timeout) {
        Some(a) => u32_ne(a.nla_payload().as_ref(), "IPVS_SVC_ATTR_TIMEOUT")?,
        None => 0,
    };
    Ok(DumpedService::Virtual {
        service: Service::new(protocol, addr),
        scheduler,
        flags,
        timeout,
    })
}

/// Reads an `IPVS_CMD_ATTR_DEST` attribute; `v4_service` gives the family when the
/// destination carries none (kernels before 3.18).
pub fn decode_dest(
    nested: &Nlattr<CmdAttr, Buffer>,
    v4_service: bool,
) -> Result<DumpedDest, DecodeError> {
    let dest = nested
        .get_attr_handle::<DestAttr>()
        .map_err(nested_err("IPVS_CMD_ATTR_DEST"))?;
    let af = match dest.get_attribute(DestAttr::AddrFamily) {
        Some(a) => u16_ne(a.nla_payload().as_ref(), "IPVS_DEST_ATTR_ADDR_FAMILY")?,
        None if v4_service => AF_INET,
        None => AF_INET6,
    };
    let ip = ip_of(
        bytes(&dest, DestAttr::Addr, "IPVS_DEST_ATTR_ADDR")?,
        af,
        "IPVS_DEST_ATTR_ADDR",
    )?;
    let port = u16::from_be_bytes(fixed::<2>(
        bytes(&dest, DestAttr::Port, "IPVS_DEST_ATTR_PORT")?,
        "IPVS_DEST_ATTR_PORT",
    )?);
    let weight = match dest.get_attribute(DestAttr::Weight) {
        Some(a) => u32_ne(a.nla_payload().as_ref(), "IPVS_DEST_ATTR_WEIGHT")?,
        None => 0,
    };
    let forward = match dest.get_attribute(DestAttr::FwdMethod) {
        Some(a) => u32_ne(a.nla_payload().as_ref(), "IPVS_DEST_ATTR_FWD_METHOD")? & FORWARD_MASK,
        None => FORWARD_MASQ,
    };
    Ok(DumpedDest {
        addr: SocketAddr::new(ip, port),
        weight,
        forward,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use neli::nl::Nlmsghdr;
    use neli::FromBytes;
    use std::fmt::Write;

    const FAMILY: u16 = 0x23;

    fn svc(proto: Protocol, addr: &str) -> Service {
        Service::new(proto, addr.parse().unwrap())
    }

    /// One request of every kind, IPv4 and IPv6, TCP and UDP.
    fn requests() -> Vec<(&'static str, Request)> {
        let tcp4 = svc(Protocol::Tcp, "10.1.2.3:5000");
        let udp6 = svc(Protocol::Udp, "[fd01:c::7]:53");
        vec![
            ("new_service_tcp4", Request::NewService(tcp4)),
            ("new_service_udp6", Request::NewService(udp6)),
            ("set_service_tcp4", Request::SetService(tcp4)),
            ("del_service_udp6", Request::DelService(udp6)),
            (
                "new_dest_tcp4",
                Request::NewDest {
                    service: tcp4,
                    dest: "10.0.1.5:31000".parse().unwrap(),
                    weight: 1,
                },
            ),
            (
                "set_dest_udp6_drain",
                Request::SetDest {
                    service: udp6,
                    dest: "[fd77:1::5]:8053".parse().unwrap(),
                    weight: 0,
                },
            ),
            (
                "del_dest_tcp4",
                Request::DelDest {
                    service: tcp4,
                    dest: "10.0.1.5:31000".parse().unwrap(),
                },
            ),
            ("dump_services", Request::DumpServices),
            ("dump_dests_tcp4", Request::DumpDests(tcp4)),
            ("flush", Request::Flush),
        ]
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn attr_name(level: usize, parent: u16, ty: u16) -> String {
        let name = match (level, parent) {
            (0, _) => format!("{:?}", CmdAttr::from(ty)),
            (1, 1) => format!("{:?}", SvcAttr::from(ty)),
            (1, 2) => format!("{:?}", DestAttr::from(ty)),
            _ => "?".to_owned(),
        };
        format!("{name} ({ty})")
    }

    /// Walks netlink attributes byte by byte (independently of neli), one line each.
    fn walk_attrs(b: &[u8], level: usize, parent: u16, out: &mut String) {
        let mut at = 0;
        while at + 4 <= b.len() {
            let len = usize::from(u16_at(b, at));
            let raw_type = u16_at(b, at + 2);
            let ty = raw_type & 0x3fff;
            let nested = raw_type & 0x8000 != 0;
            assert!(
                len >= 4 && at + len <= b.len(),
                "attribute overruns at {at}"
            );
            let payload = &b[at + 4..at + len];
            let pad = "  ".repeat(level + 1);
            if level == 0 {
                writeln!(
                    out,
                    "{pad}{} nested={nested} len={len}",
                    attr_name(level, parent, ty)
                )
                .unwrap();
                walk_attrs(payload, level + 1, ty, out);
            } else {
                let hex: Vec<String> = payload.iter().map(|x| format!("{x:02x}")).collect();
                writeln!(
                    out,
                    "{pad}{}: {}",
                    attr_name(level, parent, ty),
                    hex.join(" ")
                )
                .unwrap();
            }
            at += (len + 3) & !3;
        }
        assert_eq!(at, b.len(), "attributes do not fill their parent exactly");
    }

    fn annotate(bytes: &[u8]) -> String {
        let mut out = String::new();
        let len = u32_at(bytes, 0) as usize;
        assert_eq!(len, bytes.len(), "nlmsg_len is the whole message");
        writeln!(
            out,
            "nlmsghdr len={len} type={:#06x} flags={:#06x} seq={} pid={}",
            u16_at(bytes, 4),
            u16_at(bytes, 6),
            u32_at(bytes, 8),
            u32_at(bytes, 12)
        )
        .unwrap();
        writeln!(
            out,
            "genlmsghdr cmd={:?} ({}) version={}",
            IpvsCmd::from(bytes[16]),
            bytes[16],
            bytes[17]
        )
        .unwrap();
        walk_attrs(&bytes[20..], 0, 0, &mut out);
        out
    }

    #[test]
    fn every_request_encodes_to_its_snapshot_and_decodes_back() {
        for (name, request) in requests() {
            let bytes = request.encode(FAMILY, 7).unwrap();
            // Decoded back by neli into the request it came from.
            let msg =
                Nlmsghdr::<u16, IpvsMessage>::from_bytes(&mut Cursor::new(&bytes[..])).unwrap();
            assert_eq!(*msg.nl_type(), FAMILY);
            assert_eq!(*msg.nl_seq(), 7);
            let flags = *msg.nl_flags();
            assert!(flags.contains(NlmF::REQUEST));
            assert_eq!(flags.contains(NlmF::DUMP), request.is_dump(), "{name}");
            assert_eq!(flags.contains(NlmF::ACK), !request.is_dump(), "{name}");
            let NlPayload::Payload(genl) = msg.nl_payload() else {
                panic!("{name}: no payload");
            };
            assert_eq!(Request::decode(genl).unwrap(), request, "{name}");
            insta::assert_snapshot!(format!("ipvs_{name}"), annotate(&bytes));
        }
    }

    fn arb_addr() -> impl proptest::strategy::Strategy<Value = SocketAddr> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    fn arb_op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let service = (any::<bool>(), arb_addr()).prop_map(|(tcp, addr)| {
            Service::new(if tcp { Protocol::Tcp } else { Protocol::Udp }, addr)
        });
        (service, arb_addr(), any::<u32>(), 0..5u8).prop_map(|(service, dest, weight, kind)| {
            match kind {
                0 => Op::AddService(service),
                1 => Op::RemoveService(service),
                2 => Op::AddDestination {
                    service,
                    dest,
                    weight,
                },
                3 => Op::SetWeight {
                    service,
                    dest,
                    weight,
                },
                _ => Op::RemoveDestination { service, dest },
            }
        })
    }

    proptest::proptest! {
        /// Any op of the core: its request (when IPVS can hold it) survives encoding and
        /// decoding, and says what the op says (weights clamped).
        #[test]
        fn any_op_round_trips_through_its_netlink_message(op in arb_op(), seq in proptest::prelude::any::<u32>()) {
            let Some(request) = Request::from_op(&op) else {
                let (Op::AddDestination { service, dest, .. }
                | Op::SetWeight { service, dest, .. }
                | Op::RemoveDestination { service, dest }) = op else {
                    panic!("only destinations of the other family have no request: {op:?}");
                };
                proptest::prop_assert_ne!(service.addr.is_ipv4(), dest.is_ipv4());
                return Ok(());
            };
            let bytes = request.encode(FAMILY, seq).unwrap();
            let msg = Nlmsghdr::<u16, IpvsMessage>::from_bytes(&mut Cursor::new(&bytes[..])).unwrap();
            proptest::prop_assert_eq!(*msg.nl_seq(), seq);
            let NlPayload::Payload(genl) = msg.nl_payload() else {
                panic!("no payload");
            };
            let decoded = Request::decode(genl).unwrap();
            let clamp = |w: u32| w.min(MAX_WEIGHT);
            let expected = match request {
                Request::NewDest { service, dest, weight } => Request::NewDest { service, dest, weight: clamp(weight) },
                Request::SetDest { service, dest, weight } => Request::SetDest { service, dest, weight: clamp(weight) },
                other => other,
            };
            proptest::prop_assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn full_entries_carry_what_the_kernel_insists_on() {
        let v4 = svc(Protocol::Tcp, "10.1.2.3:80");
        let msg = Request::NewService(v4).message().unwrap();
        let attrs = msg.attrs().get_attr_handle();
        let nested = attrs.get_attribute(CmdAttr::Service).unwrap();
        let svc_attrs = nested.get_attr_handle::<SvcAttr>().unwrap();
        for required in [
            SvcAttr::Af,
            SvcAttr::Protocol,
            SvcAttr::Addr,
            SvcAttr::Port,
            SvcAttr::SchedName,
            SvcAttr::Flags,
            SvcAttr::Timeout,
            SvcAttr::Netmask,
        ] {
            assert!(svc_attrs.get_attribute(required).is_some(), "{required:?}");
        }
        // Port in network order, scheduler NUL-terminated.
        assert_eq!(
            svc_attrs
                .get_attribute(SvcAttr::Port)
                .unwrap()
                .nla_payload()
                .as_ref(),
            &[0, 80]
        );
        assert_eq!(
            svc_attrs
                .get_attribute(SvcAttr::SchedName)
                .unwrap()
                .nla_payload()
                .as_ref(),
            b"wlc\0"
        );
        // A delete carries the key only.
        let msg = Request::DelService(v4).message().unwrap();
        let attrs = msg.attrs().get_attr_handle();
        let nested = attrs.get_attribute(CmdAttr::Service).unwrap();
        assert!(nested
            .get_attr_handle::<SvcAttr>()
            .unwrap()
            .get_attribute(SvcAttr::SchedName)
            .is_none());
    }

    #[test]
    fn weights_are_clamped_and_foreign_families_have_no_request() {
        let service = svc(Protocol::Tcp, "10.1.2.3:80");
        let op = Op::AddDestination {
            service,
            dest: "10.0.0.9:80".parse().unwrap(),
            weight: u32::MAX,
        };
        let request = Request::from_op(&op).unwrap();
        let msg = request.message().unwrap();
        let Request::NewDest { weight, .. } = Request::decode(&msg).unwrap() else {
            panic!("not a new destination");
        };
        assert_eq!(weight, MAX_WEIGHT);
        let v6 = Op::AddDestination {
            service,
            dest: "[fd00::9]:80".parse().unwrap(),
            weight: 1,
        };
        assert_eq!(Request::from_op(&v6), None);
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        // A service attribute with a truncated address.
        let bad = attr(CmdAttr::Service, Buffer::new())
            .unwrap()
            .nest(&attr(SvcAttr::Af, AF_INET6).unwrap())
            .unwrap()
            .nest(&attr(SvcAttr::Protocol, IPPROTO_TCP).unwrap())
            .unwrap()
            .nest(&attr(SvcAttr::Addr, [1u8, 2, 3]).unwrap())
            .unwrap()
            .nest(&attr(SvcAttr::Port, [0u8, 80]).unwrap())
            .unwrap();
        assert!(matches!(
            decode_service(&bad),
            Err(DecodeError::Malformed { .. })
        ));
        // No port at all.
        let bad = attr(CmdAttr::Dest, Buffer::new())
            .unwrap()
            .nest(&attr(DestAttr::Addr, [10u8, 0, 0, 1]).unwrap())
            .unwrap();
        assert_eq!(
            decode_dest(&bad, true),
            Err(DecodeError::Missing("IPVS_DEST_ATTR_PORT"))
        );
        // A firewall-mark service is reported, never taken for a virtual service.
        let mark = attr(CmdAttr::Service, Buffer::new())
            .unwrap()
            .nest(&attr(SvcAttr::Af, AF_INET).unwrap())
            .unwrap()
            .nest(&attr(SvcAttr::Fwmark, 7u32).unwrap())
            .unwrap();
        assert!(matches!(
            decode_service(&mark),
            Ok(DumpedService::Other { .. })
        ));
    }
}
