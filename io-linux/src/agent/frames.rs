//! Length-prefixed frames on a peer connection: a 4-byte big-endian length, then that many
//! bytes (one sealed frame of the core's wire format).
//!
//! Invariants:
//! - A length over the bound ([`max_frame`] by default) is refused before anything is allocated for it, and the
//!   connection is given up (the stream cannot be resynchronised).
//! - A length of zero is a protocol error too (the core never sends an empty frame).
//! - The other end closing between two frames is the connection's end
//!   ([`ReadError::Closed`]); closing inside one (its prefix or its body) loses that frame
//!   and says so ([`ReadError::Truncated`]), so that the caller can count it.
//! - A frame is allocated only under a share of the reader's [`ByteBudget`]; one that does
//!   not fit is read past without being stored (the stream stays in step) and reported as
//!   [`Read::Skipped`].

use super::budget::{BudgetBySize, Frame};
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
    #[error("connection closed inside a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The prefix of a frame of `len` bytes.
pub fn prefix(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// What reading one frame gave.
#[derive(Debug)]
pub enum Read {
    /// A frame, holding its share of the budget.
    Frame(Frame),
    /// A frame of `len` bytes that did not fit the budget, read past and not kept.
    Skipped { len: usize },
}

/// Reads one frame; `max` bounds its length, `budget` the bytes of all frames held at once.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    budget: &BudgetBySize,
) -> Result<Read, ReadError> {
    let mut len = [0u8; 4];
    let mut filled = 0;
    while filled < len.len() {
        match r.read(&mut len[filled..]).await? {
            0 if filled == 0 => return Err(ReadError::Closed),
            0 => return Err(ReadError::Truncated),
            n => filled += n,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(ReadError::Oversized { len, max });
    }
    if len == 0 {
        return Err(ReadError::Empty);
    }
    let Some(share) = budget.try_take(len) else {
        let skipped = tokio::io::copy(&mut r.take(len as u64), &mut tokio::io::sink()).await?;
        if skipped < len as u64 {
            return Err(ReadError::Truncated);
        }
        return Ok(Read::Skipped { len });
    };
    let mut frame = vec![0u8; len];
    r.read_exact(&mut frame).await.map_err(truncated_at_eof)?;
    Ok(Read::Frame(Frame::new(frame, share)))
}

/// The other end closing the connection inside a frame: that frame is lost.
fn truncated_at_eof(e: std::io::Error) -> ReadError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ReadError::Truncated
    } else {
        ReadError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::budget::ByteBudget;

    fn one_budget(bytes: usize) -> BudgetBySize {
        BudgetBySize {
            small: ByteBudget::new(bytes),
            large: ByteBudget::new(bytes),
            small_frame: 0,
        }
    }

    fn frame(read: Result<Read, ReadError>) -> Frame {
        match read {
            Ok(Read::Frame(frame)) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused_unread() {
        let budget = one_budget(64);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&prefix(3));
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&prefix(1 << 30));
        let mut r = bytes.as_slice();
        assert_eq!(&frame(read_frame(&mut r, 16, &budget).await)[..], b"abc");
        assert!(matches!(
            read_frame(&mut r, 16, &budget).await,
            Err(ReadError::Oversized { len, max: 16 }) if len == 1 << 30
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, 16, &budget).await,
            Err(ReadError::Closed)
        ));
        let mut zero: &[u8] = &[0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut zero, 16, &budget).await,
            Err(ReadError::Empty)
        ));
    }

    /// Frames held at once are bounded by the budget; one that does not fit is read past
    /// (the next frame still parses) and fits again once the held ones are dropped.
    #[tokio::test]
    async fn a_frame_over_the_budget_is_skipped_and_the_stream_stays_in_step() {
        let budget = one_budget(8);
        let mut bytes = Vec::new();
        for body in [&b"12345"[..], b"6789", b"abc", b"defgh"] {
            bytes.extend_from_slice(&prefix(body.len()));
            bytes.extend_from_slice(body);
        }
        bytes.extend_from_slice(&prefix(4));
        bytes.extend_from_slice(b"ij");
        let mut r = bytes.as_slice();
        let first = frame(read_frame(&mut r, 16, &budget).await);
        assert!(matches!(
            read_frame(&mut r, 16, &budget).await,
            Ok(Read::Skipped { len: 4 })
        ));
        let third = frame(read_frame(&mut r, 16, &budget).await);
        assert_eq!((&first[..], &third[..]), (&b"12345"[..], &b"abc"[..]));
        drop((first, third));
        assert_eq!(&frame(read_frame(&mut r, 16, &budget).await)[..], b"defgh");
        assert!(
            matches!(
                read_frame(&mut r, 16, &budget).await,
                Err(ReadError::Truncated)
            ),
            "a truncated frame ends the stream, and says it lost a frame"
        );
    }

    /// Closing between frames is an end; closing inside a prefix, a kept frame's body or
    /// a skipped frame's body loses a frame and says so.
    #[tokio::test]
    async fn a_connection_closed_inside_a_frame_is_told_from_one_closed_between_frames() {
        let budget = one_budget(8);
        let mut whole: &[u8] = &[0, 0, 0, 2, b'o', b'k'];
        assert_eq!(&frame(read_frame(&mut whole, 16, &budget).await)[..], b"ok");
        assert!(matches!(
            read_frame(&mut whole, 16, &budget).await,
            Err(ReadError::Closed)
        ));
        for cut in [&[0u8, 0][..], &[0, 0, 0, 5, 1, 2], &[0, 0, 0, 12, 1, 2, 3]] {
            let mut r = cut;
            assert!(
                matches!(
                    read_frame(&mut r, 16, &budget).await,
                    Err(ReadError::Truncated)
                ),
                "{cut:?}"
            );
        }
    }
}
