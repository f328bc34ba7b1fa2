//! A blocking generic netlink socket to the kernel's IPVS family: resolves the family,
//! carries out batches of [`Request`]s and dumps the services with their destinations.
//!
//! Invariants:
//! - Every change request asks for an ACK and every one gets its own result: a batch of
//!   up to [`BATCH`] requests goes out in one `send`, and the socket is read until each
//!   request's sequence number has its ACK or error. A refusal is typed by its errno
//!   ([`IpvsError::Refused`]); nothing is retried or absorbed here.
//! - A read never waits forever: the socket has a receive timeout ([`RECV_TIMEOUT`]).
//! - Replies that belong to no request in flight (stale sequence numbers) are skipped.
//! - Errors that say the kernel cannot do IPVS at all are their own variants:
//!   [`IpvsError::FamilyMissing`], [`IpvsError::Permission`],
//!   [`IpvsError::SchedulerMissing`].

use super::msg::{
    decode_dest, decode_service, CmdAttr, DecodeError, DumpedDest, DumpedService, EncodeError,
    IpvsMessage, Request, FAMILY_NAME,
};
use minuteman_core::kernel::Service;
use neli::consts::genl::{CtrlAttr, CtrlCmd};
use neli::consts::nl::{GenlId, NlmF};
use neli::consts::socket::{Msg, NlFamily};
use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, NlattrBuilder};
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::socket::NlSocket;
use neli::types::{Buffer, GenlBuffer};
use neli::utils::Groups;
use neli::{FromBytes, FromBytesWithInput, ToBytes};
use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// At most this many requests go out in one `send` (their ACKs must fit the receive
/// buffer: about 36 bytes each, or the whole request echoed back with an error).
pub const BATCH: usize = 128;
/// A read of the socket gives up after this long (the kernel answers at once; this is a
/// guard against a lost reply, not a wait for work).
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// The receive buffer asked of the kernel.
const RECV_BUFFER: usize = 1 << 20;
/// One read: the largest netlink message a dump sends fits.
const READ_SIZE: usize = 64 * 1024;

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
    #[error("netlink I/O: {0}")]
    Io(io::Error),
    #[error("no answer from the kernel within {RECV_TIMEOUT:?}")]
    Timeout,
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

    /// The error says IPVS cannot be used at all (not that one request was wrong).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            IpvsError::Socket(_)
                | IpvsError::FamilyMissing
                | IpvsError::Permission { .. }
                | IpvsError::SchedulerMissing
        )
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
    socket: NlSocket,
    family: u16,
    seq: u32,
    read: Vec<u8>,
}

impl IpvsSocket {
    /// Opens a socket in the calling thread's network namespace and resolves the family.
    pub fn open() -> Result<IpvsSocket, IpvsError> {
        let socket = NlSocket::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(IpvsError::Socket)?;
        socket.block().map_err(IpvsError::Socket)?;
        socket
            .set_recv_buffer_size(RECV_BUFFER)
            .map_err(IpvsError::Socket)?;
        set_recv_timeout(&socket, RECV_TIMEOUT).map_err(IpvsError::Socket)?;
        let mut this = IpvsSocket {
            socket,
            family: 0,
            seq: 0,
            read: vec![0; READ_SIZE],
        };
        this.family = this.resolve_family()?;
        Ok(this)
    }

    /// The family's id in this kernel.
    pub fn family(&self) -> u16 {
        self.family
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn resolve_family(&mut self) -> Result<u16, IpvsError> {
        let attrs = std::iter::once(
            NlattrBuilder::default()
                .nla_type(
                    AttrTypeBuilder::default()
                        .nla_type(CtrlAttr::FamilyName)
                        .build()
                        .map_err(|e| IpvsError::Reply(e.to_string()))?,
                )
                .nla_payload(FAMILY_NAME)
                .build()
                .map_err(|e| IpvsError::Reply(e.to_string()))?,
        )
        .collect::<GenlBuffer<_, _>>();
        let genl = GenlmsghdrBuilder::default()
            .cmd(CtrlCmd::Getfamily)
            .version(2)
            .attrs(attrs)
            .build()
            .map_err(|e| IpvsError::Reply(e.to_string()))?;
        let seq = self.next_seq();
        let msg = NlmsghdrBuilder::default()
            .nl_type(GenlId::Ctrl)
            .nl_flags(NlmF::REQUEST | NlmF::ACK)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(genl))
            .build()
            .map_err(|e| IpvsError::Reply(e.to_string()))?;
        let mut out = Cursor::new(Vec::new());
        msg.to_bytes(&mut out)
            .map_err(|e| IpvsError::Reply(e.to_string()))?;
        self.send(out.get_ref())?;
        let mut family = None;
        loop {
            for reply in self.read_messages()? {
                if *reply.nl_seq() != seq {
                    continue;
                }
                match reply.nl_payload() {
                    NlPayload::Payload(body) => {
                        let genl = Genlmsghdr::<CtrlCmd, CtrlAttr>::from_bytes_with_input(
                            &mut Cursor::new(body.as_ref()),
                            body.len(),
                        )
                        .map_err(|e| IpvsError::Reply(e.to_string()))?;
                        family = genl
                            .attrs()
                            .get_attr_handle()
                            .get_attr_payload_as::<u16>(CtrlAttr::FamilyId)
                            .ok();
                    }
                    NlPayload::Ack(_) => {
                        return family.ok_or_else(|| {
                            IpvsError::Reply("the family reply has no id".to_owned())
                        });
                    }
                    NlPayload::Err(e) => {
                        return Err(match -*e.error() {
                            libc::ENOENT => IpvsError::FamilyMissing,
                            libc::EPERM | libc::EACCES => IpvsError::Permission {
                                what: "the lookup of the IPVS family".to_owned(),
                            },
                            errno => IpvsError::Io(io::Error::from_raw_os_error(errno)),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    fn send(&self, bytes: &[u8]) -> Result<(), IpvsError> {
        let sent = self
            .socket
            .send(bytes, Msg::empty())
            .map_err(IpvsError::Io)?;
        if sent != bytes.len() {
            return Err(IpvsError::Io(io::Error::other(format!(
                "sent {sent} of {} bytes",
                bytes.len()
            ))));
        }
        Ok(())
    }

    /// One read: every netlink message in it.
    fn read_messages(&mut self) -> Result<Vec<Nlmsghdr<u16, Buffer>>, IpvsError> {
        let (n, _) = match self.socket.recv(&mut self.read[..], Msg::empty()) {
            Ok(read) => read,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(IpvsError::Timeout)
            }
            Err(e) => return Err(IpvsError::Io(e)),
        };
        let mut cursor = Cursor::new(&self.read[..n]);
        let mut out = Vec::new();
        while (cursor.position() as usize) < n {
            let msg = Nlmsghdr::<u16, Buffer>::from_bytes(&mut cursor)
                .map_err(|e| IpvsError::Reply(e.to_string()))?;
            out.push(msg);
        }
        Ok(out)
    }

    /// Carries out `requests` in order; one result per request. Dumps are refused here
    /// (use [`IpvsSocket::dump`]). A failure of the socket itself fails every request
    /// not yet answered.
    pub fn execute(&mut self, requests: &[Request]) -> Vec<Result<(), IpvsError>> {
        let mut results: Vec<Result<(), IpvsError>> = Vec::with_capacity(requests.len());
        for batch in requests.chunks(BATCH) {
            match self.execute_batch(batch) {
                Ok(batch_results) => results.extend(batch_results),
                Err(e) => {
                    let message = e.to_string();
                    results.push(Err(e));
                    while results.len() < requests.len() {
                        results.push(Err(IpvsError::Io(io::Error::other(message.clone()))));
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
            let seq = self.next_seq();
            bytes.extend(request.encode(self.family, seq)?);
            pending.insert(seq, i);
        }
        self.send(&bytes)?;
        let mut results: Vec<Option<Result<(), IpvsError>>> =
            (0..batch.len()).map(|_| None).collect();
        while !pending.is_empty() {
            for reply in self.read_messages()? {
                let (seq, outcome) = match reply.nl_payload() {
                    NlPayload::Ack(ack) => (*ack.nlmsg().nl_seq(), 0),
                    NlPayload::Err(err) => (*err.nlmsg().nl_seq(), -*err.error()),
                    _ => continue,
                };
                let Some(i) = pending.remove(&seq) else {
                    continue;
                };
                results[i] = Some(if outcome == 0 {
                    Ok(())
                } else {
                    Err(IpvsError::from_errno(&batch[i], outcome))
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
        let seq = self.next_seq();
        let bytes = request.encode(self.family, seq)?;
        self.send(&bytes)?;
        let mut out = Vec::new();
        loop {
            for reply in self.read_messages()? {
                if *reply.nl_seq() != seq {
                    continue;
                }
                match reply.nl_payload() {
                    NlPayload::Payload(body) if *reply.nl_type() == self.family => {
                        let genl = IpvsMessage::from_bytes_with_input(
                            &mut Cursor::new(body.as_ref()),
                            body.len(),
                        )
                        .map_err(|e| IpvsError::Reply(e.to_string()))?;
                        out.push(genl);
                    }
                    NlPayload::Err(err) => {
                        return Err(IpvsError::from_errno(request, -*err.error()))
                    }
                    // NLMSG_DONE ends the dump (with or without an extended ACK).
                    NlPayload::Empty | NlPayload::DumpExtAck(_) => return Ok(out),
                    NlPayload::Payload(_)
                        if *reply.nl_type() == u16::from(neli::consts::nl::Nlmsg::Done) =>
                    {
                        return Ok(out)
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every service in the kernel with its destinations.
    pub fn dump(&mut self) -> Result<Vec<DumpedEntry>, IpvsError> {
        let mut entries = Vec::new();
        for msg in self.dump_request(&Request::DumpServices)? {
            let Some(nested) = msg
                .attrs()
                .get_attr_handle()
                .get_attribute(CmdAttr::Service)
                .cloned()
            else {
                continue;
            };
            let service = decode_service(&nested)?;
            let dests = match &service {
                DumpedService::Virtual { service, .. } => self.dump_dests(service)?,
                DumpedService::Other { .. } => Vec::new(),
            };
            entries.push(DumpedEntry { service, dests });
        }
        Ok(entries)
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

fn set_recv_timeout(socket: &NlSocket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: setsockopt reads `size_of::<timeval>()` bytes from a valid timeval.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
