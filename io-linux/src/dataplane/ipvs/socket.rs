//! A blocking generic netlink socket to the kernel's IPVS family: resolves the family,
//! carries out batches of [`Request`]s and dumps the services with their destinations.
//!
//! Invariants:
//! - Every change request asks for an ACK and every one gets its own result: a batch of
//!   up to [`BATCH`] requests goes out in one `send`, and the socket is read until each
//!   request's sequence number has its ACK or error. A refusal is typed by its errno
//!   ([`IpvsError::Refused`]); nothing is retried or absorbed here.
//! - Reads time out and stale replies are skipped (module `netlink`).
//! - Errors that say the kernel cannot do IPVS at all are their own variants:
//!   [`IpvsError::FamilyMissing`], [`IpvsError::Permission`],
//!   [`IpvsError::SchedulerMissing`].

use super::msg::{
    decode_dest, decode_service, CmdAttr, DecodeError, DumpedDest, DumpedService, EncodeError,
    IpvsMessage, Request, FAMILY_NAME,
};
use crate::dataplane::netlink::{Conn, NetlinkError};
use minuteman_core::kernel::Service;
use neli::consts::genl::{CtrlAttr, CtrlCmd};
use neli::consts::nl::{GenlId, NlmF};
use neli::consts::socket::NlFamily;
use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, NlattrBuilder};
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::types::GenlBuffer;
use neli::FromBytesWithInput;
use std::collections::BTreeMap;
use std::io::{self, Cursor};

/// At most this many requests go out in one `send` (their ACKs must fit the receive
/// buffer: about 36 bytes each, or the whole request echoed back with an error).
pub const BATCH: usize = 128;

/// What went wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error("cannot open a generic netlink socket: {0}")]
    Socket(io::Error),
    #[error(
        "the kernel has no IPVS (generic netlink family \"IPVS\" not found): load the ip_vs module (modprobe ip_vs ip_vs_wlc)"
    )]
    FamilyMissing,
    #[error("the kernel refused {what}: permission denied (the agent needs CAP_NET_ADMIN)")]
    Permission { what: String },
    #[error("the kernel has no scheduler wlc: load the ip_vs_wlc module (modprobe ip_vs_wlc)")]
    SchedulerMissing,
    #[error("the kernel refused {request}: {}", io::Error::from_raw_os_error(*errno))]
    Refused { request: String, errno: i32 },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("unreadable reply from the kernel: {0}")]
    Reply(String),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("unreadable IPVS entry: {0}")]
    Decode(#[from] DecodeError),
}

impl IpvsError {
    /// The kernel refused because what was added exists already.
    pub fn is_exists(&self) -> bool {
        matches!(self, IpvsError::Refused { errno, .. } if *errno == libc::EEXIST)
    }

    /// The kernel refused because what was changed or removed does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self, IpvsError::Refused { errno, .. }
            if *errno == libc::ENOENT || *errno == libc::ESRCH)
    }

    fn from_errno(request: &Request, errno: i32) -> IpvsError {
        match errno {
            libc::EPERM | libc::EACCES => IpvsError::Permission {
                what: describe(request),
            },
            // Adding a service fails with ENOENT only when its scheduler is missing.
            libc::ENOENT if matches!(request, Request::NewService(_) | Request::SetService(_)) => {
                IpvsError::SchedulerMissing
            }
            errno => IpvsError::Refused {
                request: describe(request),
                errno,
            },
        }
    }
}

/// `new service tcp 10.0.0.1:80`, `new destination 10.1.0.1:80 of tcp 10.0.0.1:80`.
pub fn describe(request: &Request) -> String {
    match request {
        Request::NewService(s) => format!("new service {s}"),
        Request::SetService(s) => format!("set service {s}"),
        Request::DelService(s) => format!("delete service {s}"),
        Request::NewDest {
            service,
            dest,
            weight,
        } => format!("new destination {dest} weight {weight} of {service}"),
        Request::SetDest {
            service,
            dest,
            weight,
        } => format!("set destination {dest} weight {weight} of {service}"),
        Request::DelDest { service, dest } => format!("delete destination {dest} of {service}"),
        Request::DumpServices => "dump of the services".to_owned(),
        Request::DumpDests(s) => format!("dump of the destinations of {s}"),
        Request::Flush => "flush".to_owned(),
    }
}

/// One service as dumped, with its destinations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedEntry {
    pub service: DumpedService,
    pub dests: Vec<DumpedDest>,
}

/// The socket. Blocking: call it from a thread that may block (`spawn_blocking`).
pub struct IpvsSocket {
    conn: Conn,
    family: u16,
}

impl IpvsSocket {
    /// Opens a socket in the calling thread's network namespace and resolves the family.
    pub fn open() -> Result<IpvsSocket, IpvsError> {
        let conn = Conn::open(NlFamily::Generic).map_err(IpvsError::Socket)?;
        let mut this = IpvsSocket { conn, family: 0 };
        this.family = this.resolve_family()?;
        Ok(this)
    }

    fn resolve_family(&mut self) -> Result<u16, IpvsError> {
        let reply_err = |e: &dyn std::fmt::Display| IpvsError::Reply(e.to_string());
        let attrs = std::iter::once(
            NlattrBuilder::default()
                .nla_type(
                    AttrTypeBuilder::default()
                        .nla_type(CtrlAttr::FamilyName)
                        .build()
                        .map_err(|e| reply_err(&e))?,
                )
                .nla_payload(FAMILY_NAME)
                .build()
                .map_err(|e| reply_err(&e))?,
        )
        .collect::<GenlBuffer<_, _>>();
        let genl = GenlmsghdrBuilder::default()
            .cmd(CtrlCmd::Getfamily)
            .version(2)
            .attrs(attrs)
            .build()
            .map_err(|e| reply_err(&e))?;
        let seq = self.conn.next_seq();
        let msg = NlmsghdrBuilder::default()
            .nl_type(GenlId::Ctrl)
            .nl_flags(NlmF::REQUEST | NlmF::ACK)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(genl))
            .build()
            .map_err(|e| reply_err(&e))?;
        self.conn.send_msg(&msg)?;
        let (payloads, outcome) = self.conn.ack(seq)?;
        match outcome {
            Ok(()) => {}
            Err(libc::ENOENT) => return Err(IpvsError::FamilyMissing),
            Err(libc::EPERM | libc::EACCES) => {
                return Err(IpvsError::Permission {
                    what: "the lookup of the IPVS family".to_owned(),
                })
            }
            Err(errno) => {
                return Err(IpvsError::Netlink(NetlinkError::Io(
                    io::Error::from_raw_os_error(errno),
                )))
            }
        }
        for reply in payloads {
            if let NlPayload::Payload(body) = reply.nl_payload() {
                let genl = Genlmsghdr::<CtrlCmd, CtrlAttr>::from_bytes_with_input(
                    &mut Cursor::new(body.as_ref()),
                    body.len(),
                )
                .map_err(|e| reply_err(&e))?;
                if let Ok(id) = genl
                    .attrs()
                    .get_attr_handle()
                    .get_attr_payload_as::<u16>(CtrlAttr::FamilyId)
                {
                    return Ok(id);
                }
            }
        }
        Err(IpvsError::Reply("the family reply has no id".to_owned()))
    }

    /// Carries out `requests` in order; one result per request. A failure of the socket
    /// itself fails every request not yet answered.
    pub fn execute(&mut self, requests: &[Request]) -> Vec<Result<(), IpvsError>> {
        let mut results: Vec<Result<(), IpvsError>> = Vec::with_capacity(requests.len());
        for batch in requests.chunks(BATCH) {
            match self.execute_batch(batch) {
                Ok(batch_results) => results.extend(batch_results),
                Err(e) => {
                    let message = e.to_string();
                    results.push(Err(e));
                    while results.len() < requests.len() {
                        results.push(Err(IpvsError::Reply(format!("not sent: {message}"))));
                    }
                    return results;
                }
            }
        }
        results
    }

    fn execute_batch(
        &mut self,
        batch: &[Request],
    ) -> Result<Vec<Result<(), IpvsError>>, IpvsError> {
        let mut bytes = Vec::new();
        let mut pending = BTreeMap::new();
        for (i, request) in batch.iter().enumerate() {
            if request.is_dump() {
                return Err(IpvsError::Reply(format!(
                    "{} cannot be batched",
                    describe(request)
                )));
            }
            let seq = self.conn.next_seq();
            bytes.extend(request.encode(self.family, seq)?);
            pending.insert(seq, i);
        }
        self.conn.send(&bytes)?;
        let mut results: Vec<Option<Result<(), IpvsError>>> =
            (0..batch.len()).map(|_| None).collect();
        while !pending.is_empty() {
            for reply in self.conn.read()? {
                let (seq, errno) = match reply.nl_payload() {
                    NlPayload::Ack(ack) => (*ack.nlmsg().nl_seq(), 0),
                    NlPayload::Err(err) => (*err.nlmsg().nl_seq(), -*err.error()),
                    _ => continue,
                };
                let Some(i) = pending.remove(&seq) else {
                    continue;
                };
                results[i] = Some(if errno == 0 {
                    Ok(())
                } else {
                    Err(IpvsError::from_errno(&batch[i], errno))
                });
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(IpvsError::Reply("no answer".to_owned()))))
            .collect())
    }

    /// Runs one dump request; the IPVS messages it returns.
    fn dump_request(&mut self, request: &Request) -> Result<Vec<IpvsMessage>, IpvsError> {
        let seq = self.conn.next_seq();
        let bytes = request.encode(self.family, seq)?;
        self.conn.send(&bytes)?;
        let replies = self
            .conn
            .dump(seq)?
            .map_err(|errno| IpvsError::from_errno(request, errno))?;
        let mut out = Vec::with_capacity(replies.len());
        for reply in replies {
            if *reply.nl_type() != self.family {
                continue;
            }
            if let NlPayload::Payload(body) = reply.nl_payload() {
                let genl = super::msg::ipvs_message(body.as_ref())
                    .map_err(|e| IpvsError::Reply(e.to_string()))?;
                out.push(genl);
            }
        }
        Ok(out)
    }

    /// Every service in the kernel with its destinations.
    pub fn dump(&mut self) -> Result<Vec<DumpedEntry>, IpvsError> {
        let mut entries = Vec::new();
        for service in self.dump_services()? {
            let dests = match &service {
                DumpedService::Virtual { service, .. } => self.dump_dests(service)?,
                DumpedService::Other { .. } => Vec::new(),
            };
            entries.push(DumpedEntry { service, dests });
        }
        Ok(entries)
    }

    /// Every service in the kernel, without destinations (one dump).
    pub fn dump_services(&mut self) -> Result<Vec<DumpedService>, IpvsError> {
        let mut services = Vec::new();
        for msg in self.dump_request(&Request::DumpServices)? {
            if let Some(nested) = msg
                .attrs()
                .get_attr_handle()
                .get_attribute(CmdAttr::Service)
            {
                services.push(decode_service(nested)?);
            }
        }
        Ok(services)
    }

    /// The destinations of one service.
    pub fn dump_dests(&mut self, service: &Service) -> Result<Vec<DumpedDest>, IpvsError> {
        let mut dests = Vec::new();
        for msg in self.dump_request(&Request::DumpDests(*service))? {
            if let Some(nested) = msg.attrs().get_attr_handle().get_attribute(CmdAttr::Dest) {
                dests.push(decode_dest(nested, service.addr.is_ipv4())?);
            }
        }
        Ok(dests)
    }
}
