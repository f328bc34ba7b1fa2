//! Length-prefixed frames on a peer connection: a 4-byte big-endian length, then that many
//! bytes (one sealed frame of the core's wire format).
//!
//! Invariants:
//! - A length over the bound ([`max_frame`] by default) is refused before anything is allocated for it, and the
//!   connection is given up (the stream cannot be resynchronised).
//! - A length of zero is a protocol error too (the core never sends an empty frame).

use minuteman_core::wire::Limits;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest frame accepted: the core's frame limit (4 MiB by default).
pub fn max_frame() -> usize {
    Limits::default().max_frame_len
}

/// Why a connection's frame stream ended.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {len} bytes announced, over the limit of {max}")]
    Oversized { len: usize, max: usize },
    #[error("empty frame announced")]
    Empty,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The prefix of a frame of `len` bytes.
pub fn prefix(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// Reads one frame; `max` bounds its length.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(ReadError::Oversized { len, max });
    }
    if len == 0 {
        return Err(ReadError::Empty);
    }
    let mut frame = vec![0u8; len];
    r.read_exact(&mut frame).await?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused_unread() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&prefix(3));
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&prefix(1 << 30));
        let mut r = bytes.as_slice();
        assert_eq!(read_frame(&mut r, 16).await.unwrap(), b"abc");
        assert!(matches!(
            read_frame(&mut r, 16).await,
            Err(ReadError::Oversized { len, max: 16 }) if len == 1 << 30
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, 16).await,
            Err(ReadError::Closed)
        ));
        let mut zero: &[u8] = &[0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut zero, 16).await,
            Err(ReadError::Empty)
        ));
    }
}
