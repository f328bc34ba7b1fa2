//! One blocking netlink connection to the kernel (generic or route family): sends encoded
//! messages, reads replies, waits for ACKs and collects dumps. The IPVS socket and the
//! dummy interface build on it.
//!
//! Invariants:
//! - A read never waits forever: the socket has a receive timeout ([`RECV_TIMEOUT`]), after
//!   which the caller gets [`NetlinkError::Timeout`].
//! - Replies are matched to requests by sequence number; replies to anything else (stale
//!   sequence numbers) are skipped.
//! - Nothing here panics on what the kernel sends: an unreadable reply is
//!   [`NetlinkError::Reply`].

use neli::consts::nl::Nlmsg;
use neli::consts::socket::{Msg, NlFamily};
use neli::nl::{NlPayload, Nlmsghdr};
use neli::socket::NlSocket;
use neli::types::Buffer;
use neli::utils::Groups;
use neli::{FromBytes, Size, ToBytes};
use std::io::{self, Cursor};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A read of the socket gives up after this long (the kernel answers at once; this guards
/// against a lost reply, it is not a wait for work).
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// The receive buffer asked of the kernel.
const RECV_BUFFER: usize = 1 << 20;
/// One read: the largest message a dump sends fits.
const READ_SIZE: usize = 64 * 1024;

/// The connection itself failed (not a refusal of one request: that is an errno).
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink I/O: {0}")]
    Io(io::Error),
    #[error("no answer from the kernel within {RECV_TIMEOUT:?}")]
    Timeout,
    #[error("unreadable netlink message: {0}")]
    Reply(String),
}

/// A reply read from the socket.
pub type Reply = Nlmsghdr<u16, Buffer>;

/// The connection. Blocking: use it from a thread that may block.
pub struct Conn {
    socket: NlSocket,
    seq: u32,
    read: Vec<u8>,
}

impl Conn {
    /// A socket of `family` in the calling thread's network namespace.
    pub fn open(family: NlFamily) -> io::Result<Conn> {
        let socket = NlSocket::connect(family, None, Groups::empty())?;
        socket.block()?;
        socket.set_recv_buffer_size(RECV_BUFFER)?;
        set_recv_timeout(&socket, RECV_TIMEOUT)?;
        Ok(Conn {
            socket,
            seq: 0,
            read: vec![0; READ_SIZE],
        })
    }

    /// A fresh sequence number for the next request.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends already-encoded messages in one write.
    pub fn send(&self, bytes: &[u8]) -> Result<(), NetlinkError> {
        let sent = self
            .socket
            .send(bytes, Msg::empty())
            .map_err(NetlinkError::Io)?;
        if sent != bytes.len() {
            return Err(NetlinkError::Io(io::Error::other(format!(
                "sent {sent} of {} bytes",
                bytes.len()
            ))));
        }
        Ok(())
    }

    /// One read: every message in it.
    pub fn read(&mut self) -> Result<Vec<Reply>, NetlinkError> {
        let (n, _) = match self.socket.recv(&mut self.read[..], Msg::empty()) {
            Ok(read) => read,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(NetlinkError::Timeout)
            }
            Err(e) => return Err(NetlinkError::Io(e)),
        };
        let mut cursor = Cursor::new(&self.read[..n]);
        let mut out = Vec::new();
        while (cursor.position() as usize) < n {
            let msg =
                Reply::from_bytes(&mut cursor).map_err(|e| NetlinkError::Reply(e.to_string()))?;
            out.push(msg);
        }
        Ok(out)
    }

    /// Encodes and sends one message (its sequence number from [`Conn::next_seq`]).
    pub fn send_msg<T, P>(&mut self, msg: &Nlmsghdr<T, P>) -> Result<(), NetlinkError>
    where
        T: neli::consts::nl::NlType,
        P: Size + ToBytes,
    {
        let mut out = Cursor::new(Vec::new());
        msg.to_bytes(&mut out)
            .map_err(|e| NetlinkError::Reply(e.to_string()))?;
        self.send(out.get_ref())
    }

    /// Waits for the ACK of request `seq`: `Ok(Ok(()))`, or the errno it was refused with.
    /// Payloads for `seq` before the ACK are returned with it.
    pub fn ack(&mut self, seq: u32) -> Result<(Vec<Reply>, Result<(), i32>), NetlinkError> {
        let mut payloads = Vec::new();
        loop {
            for reply in self.read()? {
                if *reply.nl_seq() != seq {
                    continue;
                }
                match reply.nl_payload() {
                    NlPayload::Ack(_) => return Ok((payloads, Ok(()))),
                    NlPayload::Err(e) => return Ok((payloads, Err(-*e.error()))),
                    NlPayload::Payload(_) => payloads.push(reply),
                    _ => {}
                }
            }
        }
    }

    /// Collects the answer to dump request `seq` up to its DONE: the payload messages, or
    /// the errno the dump was refused with.
    pub fn dump(&mut self, seq: u32) -> Result<Result<Vec<Reply>, i32>, NetlinkError> {
        let mut out = Vec::new();
        loop {
            for reply in self.read()? {
                if *reply.nl_seq() != seq {
                    continue;
                }
                if *reply.nl_type() == u16::from(Nlmsg::Done) {
                    return Ok(Ok(out));
                }
                match reply.nl_payload() {
                    NlPayload::Err(e) => return Ok(Err(-*e.error())),
                    NlPayload::Payload(_) => out.push(reply),
                    _ => {}
                }
            }
        }
    }
}

fn set_recv_timeout(socket: &NlSocket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(i32::try_from(timeout.subsec_micros()).unwrap_or(0)),
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
