//! The nftables ruleset generation of this network namespace (`NFT_MSG_GETGEN` over
//! netlink): a number the kernel advances by one on every committed transaction, whoever
//! commits it. The reconcile uses it to skip listing a table that nothing has touched
//! since it was last known to hold the committed state (listing 10,000 services costs
//! seconds of kernel time).
//!
//! Invariants:
//! - One request, one answer, on a fresh socket with a 1 s receive timeout: never hangs,
//!   holds nothing between calls, no `unsafe`.
//! - Any unexpected answer is an error; callers treat an error as "unknown generation"
//!   (and list), never as "unchanged".

use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::time::Duration;

const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NFTA_GEN_ID: u16 = 1;

/// The current ruleset generation.
pub fn current() -> io::Result<u32> {
    let socket = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_NETFILTER)),
    )?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    // nlmsghdr (len, type, flags, seq, pid) + nfgenmsg (family, version, res_id).
    let mut request = Vec::with_capacity(20);
    request.extend_from_slice(&20u32.to_ne_bytes());
    request.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[0, 0, 0, 0]);
    (&socket).write_all(&request)?;
    let mut answer = [0u8; 4096];
    let n = (&socket).read(&mut answer)?;
    parse(answer.get(..n).unwrap_or_default())
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("NFT_MSG_GETGEN: {why}"))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The generation in one answer.
fn parse(answer: &[u8]) -> io::Result<u32> {
    let len = u32_at(answer, 0).ok_or_else(|| bad("short answer"))? as usize;
    let ty = u16_at(answer, 4).ok_or_else(|| bad("short answer"))?;
    let message = answer.get(..len).ok_or_else(|| bad("truncated answer"))?;
    if ty == NLMSG_ERROR {
        let code = u32_at(message, 16).ok_or_else(|| bad("short error"))? as i32;
        return Err(io::Error::from_raw_os_error(-code));
    }
    if ty != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return Err(bad("unexpected message type"));
    }
    // Attributes after nlmsghdr (16) and nfgenmsg (4), each aligned to 4 bytes.
    let mut at = 20;
    while let (Some(attr_len), Some(attr_ty)) = (u16_at(message, at), u16_at(message, at + 2)) {
        let attr_len = usize::from(attr_len);
        if attr_len < 4 {
            break;
        }
        if attr_ty & 0x3fff == NFTA_GEN_ID {
            let value = message
                .get(at + 4..at + 8)
                .ok_or_else(|| bad("short generation"))?;
            // Netlink attribute payloads of nftables are big-endian.
            return Ok(u32::from_be_bytes(
                value.try_into().map_err(|_| bad("short generation"))?,
            ));
        }
        at += attr_len.div_ceil(4) * 4;
    }
    Err(bad("no generation in the answer"))
}

/// The generation after `generation` (the kernel skips 0 when it wraps).
pub fn next(generation: u32) -> u32 {
    match generation.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn reads_the_generation_attribute() {
        let mut body = vec![0, 0, 0, 0]; // nfgenmsg
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        body.extend_from_slice(&7u32.to_be_bytes());
        let answer = message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN, &body);
        assert_eq!(parse(&answer).unwrap(), 7);
    }

    #[test]
    fn errors_and_garbage_are_errors() {
        let mut error = (-1i32).to_ne_bytes().to_vec(); // -EPERM
        error.extend_from_slice(&[0; 16]);
        let e = parse(&message(NLMSG_ERROR, &error)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(1));
        assert!(parse(&[]).is_err());
        assert!(parse(&message(0x0a0f, &[0, 0, 0, 0])).is_err());
        assert!(parse(&message(0x0a0f, &[0, 0, 0, 0, 2, 0, 1, 0])).is_err());
        assert!(parse(&message(0x1234, &[])).is_err());
    }

    #[test]
    fn next_skips_zero() {
        assert_eq!(next(1), 2);
        assert_eq!(next(u32::MAX), 1);
    }
}
