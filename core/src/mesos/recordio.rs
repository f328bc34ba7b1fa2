//! Incremental RecordIO decoder: `<decimal length>\n<length bytes>` repeated, as Mesos
//! streams `SUBSCRIBE` events.
//!
//! Invariants:
//! - Chunking does not matter: feeding a stream in any split yields the same records.
//! - Bounded: the decoder holds at most one partial record (never more than
//!   `max_record_size` bytes) plus the length it is parsing (a number, not buffered bytes).
//!   A length over the limit is rejected as soon as its digits say so, before any payload
//!   is read.
//! - A non-digit where a length should be, an empty length, or a length over the limit is a
//!   typed [`RecordIoError`]; after an error the decoder stays poisoned until [`reset`], since
//!   the framing can no longer be trusted.
//! - Never panics.
//!
//! [`reset`]: RecordIoDecoder::reset

use super::error::RecordIoError;

/// Default largest record: a `SUBSCRIBED` event of a large cluster is tens of megabytes.
pub const DEFAULT_MAX_RECORD_SIZE: usize = 128 * 1024 * 1024;

/// How much of a payload's announced length is reserved up front.
const MAX_PREALLOCATION: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Reading the length; `digits` so far, `len` their value.
    Length {
        len: u64,
        digits: u32,
    },
    /// Reading `remaining` more payload bytes into the buffer.
    Payload {
        remaining: usize,
    },
    Poisoned,
}

/// The decoder.
#[derive(Debug, Clone)]
pub struct RecordIoDecoder {
    max_record_size: usize,
    phase: Phase,
    buf: Vec<u8>,
    /// Bytes consumed so far (for error messages).
    offset: u64,
}

impl Default for RecordIoDecoder {
    fn default() -> Self {
        RecordIoDecoder::new(DEFAULT_MAX_RECORD_SIZE)
    }
}

impl RecordIoDecoder {
    pub fn new(max_record_size: usize) -> RecordIoDecoder {
        RecordIoDecoder {
            max_record_size,
            phase: Phase::Length { len: 0, digits: 0 },
            buf: Vec::new(),
            offset: 0,
        }
    }

    pub fn max_record_size(&self) -> usize {
        self.max_record_size
    }

    /// Bytes of a partial record held right now (at most `max_record_size`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True between records (nothing partial held): a clean place for a stream to end.
    pub fn is_at_boundary(&self) -> bool {
        self.phase == Phase::Length { len: 0, digits: 0 }
    }

    /// Forgets any partial record and any earlier error (a new connection).
    pub fn reset(&mut self) {
        self.phase = Phase::Length { len: 0, digits: 0 };
        self.buf = Vec::new();
        self.offset = 0;
    }

    fn fail(&mut self, error: RecordIoError) -> Result<(), RecordIoError> {
        self.phase = Phase::Poisoned;
        self.buf = Vec::new();
        Err(error)
    }

    /// Consumes `chunk`, appending every record it completes to `out` (in order). On error,
    /// the records completed before the bad byte are already in `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), RecordIoError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            match self.phase {
                Phase::Poisoned => return Err(RecordIoError::Poisoned),
                Phase::Length { len, digits } => {
                    let (&byte, tail) = match rest.split_first() {
                        Some(split) => split,
                        None => break,
                    };
                    let offset = self.offset;
                    rest = tail;
                    self.offset += 1;
                    match byte {
                        b'0'..=b'9' => {
                            let len = len
                                .saturating_mul(10)
                                .saturating_add(u64::from(byte - b'0'));
                            if len > self.max_record_size as u64 {
                                let max = self.max_record_size;
                                return self.fail(RecordIoError::RecordTooLarge { len, max });
                            }
                            self.phase = Phase::Length {
                                len,
                                digits: digits.saturating_add(1),
                            };
                        }
                        b'\n' if digits == 0 => {
                            return self.fail(RecordIoError::EmptyPrefix { offset });
                        }
                        b'\n' => {
                            // len <= max_record_size, which is a usize.
                            let remaining = usize::try_from(len).unwrap_or(usize::MAX);
                            if remaining == 0 {
                                out.push(Vec::new());
                                self.phase = Phase::Length { len: 0, digits: 0 };
                            } else {
                                self.buf = Vec::with_capacity(remaining.min(MAX_PREALLOCATION));
                                self.phase = Phase::Payload { remaining };
                            }
                        }
                        _ => return self.fail(RecordIoError::InvalidPrefix { byte, offset }),
                    }
                }
                Phase::Payload { remaining } => {
                    let take = remaining.min(rest.len());
                    let (payload, tail) = rest.split_at(take);
                    self.buf.extend_from_slice(payload);
                    rest = tail;
                    self.offset += take as u64;
                    let remaining = remaining - take;
                    if remaining == 0 {
                        out.push(std::mem::take(&mut self.buf));
                        self.phase = Phase::Length { len: 0, digits: 0 };
                    } else {
                        self.phase = Phase::Payload { remaining };
                    }
                }
            }
        }
        if self.phase == Phase::Poisoned {
            return Err(RecordIoError::Poisoned);
        }
        Ok(())
    }
}

/// Frames `record` as RecordIO (for tests, recordings and simulators).
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut framed = record.len().to_string().into_bytes();
    framed.push(b'\n');
    framed.extend_from_slice(record);
    framed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(max: usize, input: &[u8]) -> (Vec<Vec<u8>>, Result<(), RecordIoError>) {
        let mut decoder = RecordIoDecoder::new(max);
        let mut out = Vec::new();
        let result = decoder.feed(input, &mut out);
        (out, result)
    }

    #[test]
    fn decodes_records_byte_by_byte() {
        let mut stream = encode(b"{\"type\":\"HEARTBEAT\"}");
        stream.extend(encode(b""));
        stream.extend(encode(b"abc"));
        let mut decoder = RecordIoDecoder::new(100);
        let mut out = Vec::new();
        for byte in &stream {
            decoder.feed(std::slice::from_ref(byte), &mut out).unwrap();
            assert!(decoder.buffered() <= 100);
        }
        assert_eq!(
            out,
            vec![
                b"{\"type\":\"HEARTBEAT\"}".to_vec(),
                vec![],
                b"abc".to_vec()
            ]
        );
        assert!(decoder.is_at_boundary());
    }

    #[test]
    fn rejects_bad_prefixes() {
        let (out, r) = decode_all(100, b"3\nabcx\n");
        assert_eq!(out, vec![b"abc".to_vec()]);
        assert_eq!(
            r,
            Err(RecordIoError::InvalidPrefix {
                byte: b'x',
                offset: 5
            })
        );
        let (_, r) = decode_all(100, b"\nabc");
        assert_eq!(r, Err(RecordIoError::EmptyPrefix { offset: 0 }));
        let (_, r) = decode_all(100, b"101\n");
        assert_eq!(r, Err(RecordIoError::RecordTooLarge { len: 101, max: 100 }));
        let (_, r) = decode_all(100, b"99999999999999999999999999\n");
        assert!(matches!(r, Err(RecordIoError::RecordTooLarge { .. })));
        let (_, r) = decode_all(100, b"-1\n");
        assert!(matches!(r, Err(RecordIoError::InvalidPrefix { .. })));
    }

    #[test]
    fn poisoned_until_reset() {
        let mut decoder = RecordIoDecoder::new(10);
        let mut out = Vec::new();
        assert!(decoder.feed(b"x", &mut out).is_err());
        assert_eq!(
            decoder.feed(b"1\na", &mut out),
            Err(RecordIoError::Poisoned)
        );
        decoder.reset();
        decoder.feed(b"1\na", &mut out).unwrap();
        assert_eq!(out, vec![b"a".to_vec()]);
    }
}
