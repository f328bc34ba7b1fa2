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
        parse_replies(&self.read[..n])
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
/// An NLMSG_ERROR message echoes the request it answers: its payload is an errno and that
/// request's header (an ACK, errno 0, echoes the header alone), then for an error the
/// request's payload, whose length neli takes from the echoed header without a check (it
/// subtracts the header size from it, and the echo's padded size from the payload's).
/// Checked here first: an ACK holds a whole header; an error's echo claims at least a
/// header and no more than the message holds (found by the `ipvs_netlink` fuzz target).
fn check_error_echo(msg: &[u8]) -> Result<(), NetlinkError> {
    const HEADER: usize = 16;
    const NLMSG_ERROR: u16 = 2;
    let kind = u16::from_ne_bytes([msg[4], msg[5]]);
    if kind != NLMSG_ERROR {
        return Ok(());
    }
    let payload = &msg[HEADER..];
    let errno = payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let echoed = payload
        .get(4..8)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize);
    match (errno, echoed) {
        (Some(0), Some(_)) if payload.len() >= 4 + HEADER => Ok(()),
        (Some(errno), Some(len))
            if errno != 0 && len >= HEADER && 4 + len.next_multiple_of(4) <= payload.len() =>
        {
            Ok(())
        }
        _ => Err(NetlinkError::Reply(format!(
            "an error message whose echoed request ({echoed:?} bytes) does not fit its {} \
             bytes",
            payload.len()
        ))),
    }
}

/// The netlink messages in one read. Each header's length is checked (at least a header,
/// at most what is left) before neli reads it: neli 0.7 subtracts the header size from a
/// shorter length without a check (a panic with overflow checks on, a wrapped length
/// without), found by the `ipvs_netlink` fuzz target.
pub fn parse_replies(bytes: &[u8]) -> Result<Vec<Reply>, NetlinkError> {
    const HEADER: usize = 16;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(len) = rest
            .get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return Err(NetlinkError::Reply(format!(
                "{} trailing bytes, not a netlink header",
                rest.len()
            )));
        };
        let len = len as usize;
        if len < HEADER || len > rest.len() {
            return Err(NetlinkError::Reply(format!(
                "a netlink message of length {len} with {} bytes left",
                rest.len()
            )));
        }
        check_error_echo(&rest[..len])?;
        let msg = Reply::from_bytes(&mut Cursor::new(&rest[..len]))
            .map_err(|e| NetlinkError::Reply(e.to_string()))?;
        out.push(msg);
        // Messages are aligned to 4 bytes.
        at += len.next_multiple_of(4).min(rest.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&0x1du16.to_ne_bytes()); // type
        m.extend_from_slice(&0u16.to_ne_bytes()); // flags
        m.extend_from_slice(&7u32.to_ne_bytes()); // seq
        m.extend_from_slice(&0u32.to_ne_bytes()); // port id
        m.extend_from_slice(payload);
        m
    }

    /// Lengths shorter than a header or longer than the read are typed errors (neli alone
    /// panicked on the short ones: the `ipvs_netlink` fuzz target's first crash).
    #[test]
    fn replies_with_impossible_lengths_are_errors_not_panics() {
        for len in [0, 4, 15, 0xd1d1_d1d1] {
            let bytes = message(len, &[0; 8]);
            assert!(
                matches!(parse_replies(&bytes), Err(NetlinkError::Reply(_))),
                "length {len}"
            );
        }
        assert!(parse_replies(&[1, 2, 3]).is_err(), "a partial header");
        let mut two = message(20, &[1, 2, 3, 4]);
        two.extend(message(16, &[]));
        let replies = parse_replies(&two).unwrap();
        assert_eq!(replies.len(), 2);
        assert_eq!(*replies[0].nl_seq(), 7);
        assert!(parse_replies(&[]).unwrap().is_empty());
    }

    fn error_message(errno: i32, echoed_len: u32, echo: usize) -> Vec<u8> {
        let mut payload = errno.to_ne_bytes().to_vec();
        let mut echoed = message(echoed_len, &[]);
        echoed.resize(echo, 0);
        payload.extend(echoed);
        let mut m = message(16 + payload.len() as u32, &payload);
        m[4..6].copy_from_slice(&2u16.to_ne_bytes());
        m
    }

    /// An error message whose echoed request claims less than a header, or more than the
    /// message holds, is an error (neli subtracted without a check: the fuzz target's
    /// second crash); a well-formed one parses, an ACK (errno 0) too.
    #[test]
    fn error_echoes_that_do_not_fit_are_errors() {
        for (len, echo) in [(0, 16), (8, 16), (15, 16), (64, 16)] {
            assert!(
                parse_replies(&error_message(-17, len, echo)).is_err(),
                "echo of {len} in {echo}"
            );
        }
        for errno in [0, -17] {
            let replies = parse_replies(&error_message(errno, 16, 16)).unwrap();
            assert_eq!(replies.len(), 1);
        }
        // The kernel's ACK echoes the request's header alone, its length the request's.
        let ack = parse_replies(&error_message(0, 64, 16)).unwrap();
        assert_eq!(ack.len(), 1);
        assert!(
            parse_replies(&error_message(0, 64, 8)).is_err(),
            "half a header"
        );
    }
}
