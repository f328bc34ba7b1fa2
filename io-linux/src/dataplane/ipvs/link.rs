//! The `minuteman` dummy interface over rtnetlink: IPVS only sees packets addressed to a
//! local address, so every VIP address is put on this interface while a service uses it.
//!
//! Invariants:
//! - [`DummyLink::ensure`] leaves the interface present and up, creating it when absent;
//!   an existing interface of that name is used as it is (a restart keeps its addresses,
//!   so traffic keeps flowing).
//! - Addresses are host routes (/32, /128; IPv6 without duplicate address detection) of
//!   scope global; only those are listed (the kernel's own IPv6 link-local address is
//!   not minuteman's). Adding one present or removing one absent succeeds (idempotent).
//! - Blocking; every kernel refusal is a typed [`LinkError`] naming the interface.

use crate::dataplane::netlink::{Conn, NetlinkError, Reply};
use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifa, IfaF, Ifla, IflaInfo, RtAddrFamily, RtScope, Rtm};
use neli::consts::socket::NlFamily;
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::rtnl::{Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, RtattrBuilder};
use neli::types::{Buffer, RtBuffer};
use neli::{FromBytesWithInput, Size, ToBytes};
use std::collections::BTreeSet;
use std::io::{self, Cursor};
use std::net::IpAddr;

/// The default name of the interface.
pub const DEFAULT_NAME: &str = "minuteman";

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open a route netlink socket: {0}")]
    Socket(io::Error),
    #[error("{what} on interface {name}: {}", io::Error::from_raw_os_error(*errno))]
    Refused {
        what: String,
        name: String,
        errno: i32,
    },
    #[error("cannot build a route netlink message: {0}")]
    Encode(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The dummy interface, by name and index.
pub struct DummyLink {
    conn: Conn,
    name: String,
    index: i32,
}

fn encode_err(e: impl std::fmt::Display) -> LinkError {
    LinkError::Encode(e.to_string())
}

/// One route attribute of type `ty` holding `payload`.
fn rtattr<T: neli::consts::rtnl::RtaType, P: Size + ToBytes>(
    ty: T,
    payload: P,
) -> Result<neli::rtnl::Rtattr<T, Buffer>, LinkError> {
    RtattrBuilder::default()
        .rta_type(ty)
        .rta_payload(payload)
        .build()
        .map_err(encode_err)
}

impl DummyLink {
    /// Finds the interface `name` or creates it (kind dummy), and sets it up.
    pub fn ensure(name: &str) -> Result<DummyLink, LinkError> {
        let conn = Conn::open(NlFamily::Route).map_err(LinkError::Socket)?;
        let mut link = DummyLink {
            conn,
            name: name.to_owned(),
            index: 0,
        };
        link.index = match link.lookup()? {
            Some(index) => index,
            None => {
                link.create()?;
                link.lookup()?.ok_or_else(|| LinkError::Refused {
                    what: "lookup after creation".to_owned(),
                    name: name.to_owned(),
                    errno: libc::ENODEV,
                })?
            }
        };
        link.set_up()?;
        Ok(link)
    }

    /// The interface `name` if it exists (neither created nor set up).
    pub fn existing(name: &str) -> Result<Option<DummyLink>, LinkError> {
        let conn = Conn::open(NlFamily::Route).map_err(LinkError::Socket)?;
        let mut link = DummyLink {
            conn,
            name: name.to_owned(),
            index: 0,
        };
        Ok(link.lookup()?.map(|index| DummyLink { index, ..link }))
    }

    /// Removes the interface `name` with its addresses; absent is fine.
    pub fn delete(name: &str) -> Result<(), LinkError> {
        let Some(mut link) = DummyLink::existing(name)? else {
            return Ok(());
        };
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(link.index)
            .build()
            .map_err(encode_err)?;
        link.request(Rtm::Dellink, NlmF::empty(), msg, "delete the interface")
            .map(|_| ())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn index(&self) -> i32 {
        self.index
    }

    /// Sends one request and waits for its ACK; the payloads that came before it.
    fn request<P: Size + ToBytes + std::fmt::Debug>(
        &mut self,
        ty: Rtm,
        flags: NlmF,
        payload: P,
        what: &str,
    ) -> Result<Vec<Reply>, LinkError> {
        let seq = self.conn.next_seq();
        let msg = NlmsghdrBuilder::default()
            .nl_type(ty)
            .nl_flags(NlmF::REQUEST | NlmF::ACK | flags)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .map_err(encode_err)?;
        self.conn.send_msg(&msg)?;
        let (payloads, outcome) = self.conn.ack(seq)?;
        outcome.map_err(|errno| LinkError::Refused {
            what: what.to_owned(),
            name: self.name.clone(),
            errno,
        })?;
        Ok(payloads)
    }

    /// The index of the interface, `None` when there is none of that name.
    fn lookup(&mut self) -> Result<Option<i32>, LinkError> {
        let mut attrs = RtBuffer::new();
        attrs.push(rtattr(Ifla::Ifname, self.name.as_str())?);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .build()
            .map_err(encode_err)?;
        let payloads = match self.request(Rtm::Getlink, NlmF::empty(), msg, "look up") {
            Ok(payloads) => payloads,
            Err(LinkError::Refused { errno, .. }) if errno == libc::ENODEV => return Ok(None),
            Err(e) => return Err(e),
        };
        for reply in payloads {
            if let NlPayload::Payload(body) = reply.nl_payload() {
                let info =
                    Ifinfomsg::from_bytes_with_input(&mut Cursor::new(body.as_ref()), body.len())
                        .map_err(|e| LinkError::Netlink(NetlinkError::Reply(e.to_string())))?;
                return Ok(Some(*info.ifi_index()));
            }
        }
        Ok(None)
    }

    fn create(&mut self) -> Result<(), LinkError> {
        let mut info = RtBuffer::<IflaInfo, Buffer>::new();
        info.push(rtattr(IflaInfo::Kind, "dummy")?);
        let mut attrs = RtBuffer::new();
        attrs.push(rtattr(Ifla::Ifname, self.name.as_str())?);
        attrs.push(rtattr(Ifla::Linkinfo, info)?);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .build()
            .map_err(encode_err)?;
        self.request(
            Rtm::Newlink,
            NlmF::CREATE | NlmF::EXCL,
            msg,
            "create the dummy interface (is the dummy module available?)",
        )
        .map(|_| ())
    }

    fn set_up(&mut self) -> Result<(), LinkError> {
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(self.index)
            .up()
            .build()
            .map_err(encode_err)?;
        self.request(Rtm::Newlink, NlmF::empty(), msg, "set up")
            .map(|_| ())
    }

    /// The addresses of scope global on the interface (the VIP addresses).
    pub fn addresses(&mut self) -> Result<BTreeSet<IpAddr>, LinkError> {
        let seq = self.conn.next_seq();
        let msg = NlmsghdrBuilder::default()
            .nl_type(Rtm::Getaddr)
            .nl_flags(NlmF::REQUEST | NlmF::DUMP)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(
                IfaddrmsgBuilder::default()
                    .ifa_family(RtAddrFamily::Unspecified)
                    .ifa_prefixlen(0)
                    .ifa_scope(RtScope::Universe)
                    .ifa_index(0)
                    .build()
                    .map_err(encode_err)?,
            ))
            .build()
            .map_err(encode_err)?;
        self.conn.send_msg(&msg)?;
        let replies = self.conn.dump(seq)?.map_err(|errno| LinkError::Refused {
            what: "list the addresses".to_owned(),
            name: self.name.clone(),
            errno,
        })?;
        let mut out = BTreeSet::new();
        for reply in replies {
            let NlPayload::Payload(body) = reply.nl_payload() else {
                continue;
            };
            let Ok(addr) =
                Ifaddrmsg::from_bytes_with_input(&mut Cursor::new(body.as_ref()), body.len())
            else {
                continue;
            };
            // Only the addresses of scope global: the kernel adds an IPv6 link-local one
            // to every interface, which is not minuteman's.
            if i64::from(*addr.ifa_index()) != i64::from(self.index)
                || *addr.ifa_scope() != RtScope::Universe
            {
                continue;
            }
            let attrs = addr.rtattrs().get_attr_handle();
            let raw = attrs
                .get_attribute(Ifa::Local)
                .or_else(|| attrs.get_attribute(Ifa::Address))
                .map(|a| a.rta_payload().as_ref().to_vec());
            match raw.as_deref() {
                Some(b) if b.len() == 4 => {
                    out.insert(IpAddr::from(<[u8; 4]>::try_from(b).expect("4 bytes")));
                }
                Some(b) if b.len() == 16 => {
                    out.insert(IpAddr::from(<[u8; 16]>::try_from(b).expect("16 bytes")));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn address_msg(&self, ip: IpAddr) -> Result<Ifaddrmsg, LinkError> {
        let (family, prefix, octets, flags): (_, u8, Vec<u8>, _) = match ip {
            IpAddr::V4(v4) => (RtAddrFamily::Inet, 32, v4.octets().to_vec(), IfaF::empty()),
            IpAddr::V6(v6) => (RtAddrFamily::Inet6, 128, v6.octets().to_vec(), IfaF::NODAD),
        };
        let mut attrs = RtBuffer::new();
        for ty in [Ifa::Local, Ifa::Address] {
            attrs.push(rtattr(ty, octets.clone())?);
        }
        IfaddrmsgBuilder::default()
            .ifa_family(family)
            .ifa_prefixlen(prefix)
            .ifa_flags(flags)
            .ifa_scope(RtScope::Universe)
            .ifa_index(u32::try_from(self.index).unwrap_or_default())
            .rtattrs(attrs)
            .build()
            .map_err(encode_err)
    }

    /// Puts `ip` on the interface (present already is fine).
    pub fn add(&mut self, ip: IpAddr) -> Result<(), LinkError> {
        let msg = self.address_msg(ip)?;
        self.request(
            Rtm::Newaddr,
            NlmF::CREATE | NlmF::REPLACE,
            msg,
            &format!("add address {ip}"),
        )
        .map(|_| ())
    }

    /// Takes `ip` off the interface (absent is fine).
    pub fn remove(&mut self, ip: IpAddr) -> Result<(), LinkError> {
        let msg = self.address_msg(ip)?;
        match self.request(
            Rtm::Deladdr,
            NlmF::empty(),
            msg,
            &format!("remove address {ip}"),
        ) {
            Err(LinkError::Refused { errno, .. })
                if errno == libc::EADDRNOTAVAIL || errno == libc::ENOENT =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }
}
