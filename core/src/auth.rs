//! Frame authentication: an HMAC-SHA256 tag over every frame, with the cluster key.
//!
//! A sealed frame is `[payload][tag]`, where the payload is what [`crate::wire::encode`]
//! produces (`[WIRE_VERSION][postcard(Envelope)]`) and the tag is the 32-byte
//! HMAC-SHA256 of the payload under the sender's current key. A node configured
//! [`FrameAuth::Insecure`] still appends a tag, all zeros, so there is one layout
//! everywhere; it accepts any tag. A keyed node rejects a zero tag ([`AuthError::Missing`]),
//! a frame too short to hold one ([`AuthError::Truncated`]) and a tag that verifies under
//! none of its keys ([`AuthError::BadMac`]).
//!
//! The MAC authenticates that a frame comes from a holder of the cluster key, not which
//! node sent it (every node holds the same key); the sender is still the peer the transport
//! reports. It gives no confidentiality and no replay protection.
//!
//! # Key rotation
//!
//! A node holds a `current` key, with which it seals, and optionally a `previous` key; it
//! accepts frames that verify under either. Rotating from key A to key B takes three
//! rolling restarts, each finished on every node before the next starts:
//!
//! 1. `current: A, previous: Some(B)`: B is distributed. Every node still seals with A, and
//!    every node now also accepts B.
//! 2. `current: B, previous: Some(A)`: nodes start sealing with B. Mid-roll, nodes sealing
//!    with A and nodes sealing with B both accept both keys, so they keep talking.
//! 3. `current: B, previous: None`: A is retired. Safe once no node seals with A any
//!    more: the count of frames verified by the previous key
//!    ([`crate::counters::VerifiedCounters::previous`]) stays at zero on every node.
//!
//! Skipping step 1 (going from `current: A` straight to `current: B, previous: Some(A)`)
//! partitions the cluster during the roll: a node still at `current: A` alone rejects what
//! the updated nodes seal with B. Turning authentication on in an insecure cluster is not
//! rolling-safe either: insecure nodes accept keyed frames, but keyed nodes reject the
//! zero tags of insecure ones until every node holds the key.
//!
//! Key files: [`ClusterKey::from_file_contents`] takes the file's bytes, trimmed of
//! surrounding ASCII whitespace, as the key itself (the text is not hex- or
//! base64-decoded), so `openssl rand -hex 32 > key` makes a 64-byte key with 256 bits of
//! entropy. Every node must read the same bytes.
//!
//! Invariants:
//! - [`open`] never panics, whatever the bytes, and never allocates.
//! - `open(auth, seal(auth, p)) == p` for every payload `p`; a keyed node accepts a frame
//!   only if its tag is the HMAC-SHA256 of the bytes before it under `current` or
//!   `previous` (verified in constant time by the `hmac` crate), so any change to a sealed
//!   frame is rejected.
//! - A key is never shorter than [`MIN_KEY_LEN`] bytes, and its bytes are never printed:
//!   [`ClusterKey`] keeps only the keyed HMAC state, and its `Debug` shows the length.
//! - There is no default [`FrameAuth`]: running without authentication is spelled out.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Length of the tag at the end of every sealed frame.
pub const TAG_LEN: usize = 32;

/// Shortest accepted key, in bytes (HMAC-SHA256's output length).
pub const MIN_KEY_LEN: usize = 32;

/// The tag an insecure node appends.
const ZERO_TAG: [u8; TAG_LEN] = [0; TAG_LEN];

/// A shared cluster key of at least [`MIN_KEY_LEN`] bytes.
#[derive(Clone)]
pub struct ClusterKey {
    /// HMAC state already keyed (inner and outer pads absorbed): cloned per frame, and the
    /// only form in which the key is kept. Boxed: the state is large and a config holds two.
    mac: Box<HmacSha256>,
    len: usize,
}

/// Why bytes were refused as a cluster key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("cluster key of {len} bytes is shorter than the minimum of {min}")]
    TooShort { len: usize, min: usize },
}

impl ClusterKey {
    /// A key from raw bytes, used as they are.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<ClusterKey, KeyError> {
        let bytes = bytes.as_ref();
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                len: bytes.len(),
                min: MIN_KEY_LEN,
            });
        }
        let mac = HmacSha256::new_from_slice(bytes).expect("HMAC accepts keys of any length");
        Ok(ClusterKey {
            mac: Box::new(mac),
            len: bytes.len(),
        })
    }

    /// A key from a key file: its contents with surrounding ASCII whitespace trimmed (the
    /// trailing newline of `openssl rand -hex 32 > key`, say). The text itself is the key.
    pub fn from_file_contents(contents: &[u8]) -> Result<ClusterKey, KeyError> {
        ClusterKey::new(contents.trim_ascii())
    }

    /// Length of the key in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a key has at least [`MIN_KEY_LEN`] bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = HmacSha256::clone(&self.mac);
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `payload` under this key, compared in constant time.
    fn verifies(&self, payload: &[u8], tag: &[u8]) -> bool {
        let mut mac = HmacSha256::clone(&self.mac);
        mac.update(payload);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey(<{} bytes, redacted>)", self.len)
    }
}

/// How a node authenticates frames: the setting its config holds.
#[derive(Clone, Debug)]
pub enum FrameAuth {
    /// Seal with `current`; accept frames that verify under `current` or `previous` (see the
    /// module doc for the rotation procedure).
    Keys {
        current: ClusterKey,
        previous: Option<ClusterKey>,
    },
    /// No authentication: seal with a zero tag, accept any tag. Any host that can reach the
    /// peer port can then inject membership messages and backends.
    Insecure,
}

impl FrameAuth {
    /// One key, nothing being rotated.
    pub fn key(current: ClusterKey) -> FrameAuth {
        FrameAuth::Keys {
            current,
            previous: None,
        }
    }

    pub fn is_insecure(&self) -> bool {
        matches!(self, FrameAuth::Insecure)
    }
}

/// Which key a frame verified under.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verified {
    /// The node's current key.
    Current,
    /// The node's previous key: some peer still seals with it.
    Previous,
    /// Not checked: the node is [`FrameAuth::Insecure`].
    Unchecked,
}

/// Why a frame failed authentication.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("frame of {len} bytes is too short for a version byte and a {TAG_LEN}-byte tag")]
    Truncated { len: usize },
    #[error("frame carries no MAC (an all-zero tag, as insecure nodes send)")]
    Missing,
    #[error("frame MAC verifies under no key of this node")]
    BadMac,
}

/// Appends the tag of `frame` (every byte of it so far) to `frame`.
pub fn seal(auth: &FrameAuth, frame: &mut Vec<u8>) {
    let tag = match auth {
        FrameAuth::Keys { current, .. } => current.tag(frame),
        FrameAuth::Insecure => ZERO_TAG,
    };
    frame.extend_from_slice(&tag);
}

/// A frame that passed authentication.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The bytes before the tag.
    pub payload: &'a [u8],
    pub verified: Verified,
}

/// Checks the tag at the end of `frame` and returns the bytes before it.
///
/// Callers bound `frame.len()` before calling: the MAC costs time linear in the length.
pub fn open<'a>(auth: &FrameAuth, frame: &'a [u8]) -> Result<Opened<'a>, AuthError> {
    if frame.len() < 1 + TAG_LEN {
        return Err(AuthError::Truncated { len: frame.len() });
    }
    let (payload, tag) = frame.split_at(frame.len() - TAG_LEN);
    let verified = match auth {
        FrameAuth::Insecure => Verified::Unchecked,
        FrameAuth::Keys { .. } if tag == ZERO_TAG => return Err(AuthError::Missing),
        FrameAuth::Keys { current, previous } => {
            if current.verifies(payload, tag) {
                Verified::Current
            } else if previous.as_ref().is_some_and(|k| k.verifies(payload, tag)) {
                Verified::Previous
            } else {
                return Err(AuthError::BadMac);
            }
        }
    };
    Ok(Opened { payload, verified })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ClusterKey {
        ClusterKey::new([byte; MIN_KEY_LEN]).unwrap()
    }

    fn keys(current: u8, previous: Option<u8>) -> FrameAuth {
        FrameAuth::Keys {
            current: key(current),
            previous: previous.map(key),
        }
    }

    fn sealed(auth: &FrameAuth, payload: &[u8]) -> Vec<u8> {
        let mut frame = payload.to_vec();
        seal(auth, &mut frame);
        frame
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 4231 test cases 6 and 7 (the ones whose key is long enough for a cluster key:
    /// 131 bytes, larger than the block size): the tag `seal` appends is HMAC-SHA256.
    #[test]
    fn tag_is_hmac_sha256_rfc4231() {
        let auth = FrameAuth::key(ClusterKey::new([0xaa; 131]).unwrap());
        let data = b"Test Using Larger Than Block-Size Key - Hash Key First";
        let frame = sealed(&auth, data);
        assert_eq!(
            frame[data.len()..],
            hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")[..]
        );
        assert_eq!(open(&auth, &frame).unwrap().payload, data);

        // RFC 4231 test case 7: same key, a payload longer than one block.
        let data: &[u8] = b"This is a test using a larger than block-size key and a larger \
than block-size data. The key needs to be hashed before being used by the HMAC algorithm.";
        let frame = sealed(&auth, data);
        assert_eq!(
            frame[data.len()..],
            hex("9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2")[..]
        );
    }

    #[test]
    fn round_trip_reports_the_current_key() {
        let auth = keys(1, Some(2));
        let frame = sealed(&auth, b"\x02hello");
        assert_eq!(frame.len(), 6 + TAG_LEN);
        let opened = open(&auth, &frame).unwrap();
        assert_eq!(opened.payload, b"\x02hello");
        assert_eq!(opened.verified, Verified::Current);
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let auth = keys(1, Some(2));
        let frame = sealed(&auth, b"\x02a payload of some length");
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(open(&auth, &bad), Err(AuthError::BadMac), "bit {bit}");
        }
    }

    #[test]
    fn truncation_is_rejected() {
        let auth = keys(1, None);
        let frame = sealed(&auth, b"\x02abc");
        for cut in 0..=TAG_LEN {
            assert_eq!(
                open(&auth, &frame[..cut]),
                Err(AuthError::Truncated { len: cut })
            );
        }
        // Long enough to hold a tag, but no longer the sealed frame.
        for cut in TAG_LEN + 1..frame.len() {
            assert_eq!(open(&auth, &frame[..cut]), Err(AuthError::BadMac), "{cut}");
        }
        // Insecure nodes still need room for a tag and a version byte.
        assert_eq!(
            open(&FrameAuth::Insecure, &[0; TAG_LEN]),
            Err(AuthError::Truncated { len: TAG_LEN })
        );
    }

    #[test]
    fn wrong_key_is_rejected() {
        let frame = sealed(&keys(1, None), b"\x02abc");
        assert_eq!(open(&keys(2, None), &frame), Err(AuthError::BadMac));
        assert_eq!(open(&keys(2, Some(3)), &frame), Err(AuthError::BadMac));
    }

    #[test]
    fn zero_tag_is_missing_on_a_keyed_node() {
        let frame = sealed(&FrameAuth::Insecure, b"\x02abc");
        assert_eq!(frame[4..], ZERO_TAG);
        assert_eq!(open(&keys(1, Some(2)), &frame), Err(AuthError::Missing));
    }

    #[test]
    fn insecure_accepts_any_tag() {
        let insecure = FrameAuth::Insecure;
        for frame in [
            sealed(&insecure, b"\x02abc"),
            sealed(&keys(1, None), b"\x02abc"),
            [b"\x02abc".as_slice(), &[0x5a; TAG_LEN]].concat(),
        ] {
            let opened = open(&insecure, &frame).unwrap();
            assert_eq!(opened.payload, b"\x02abc");
            assert_eq!(opened.verified, Verified::Unchecked);
        }
    }

    /// The three steps of the module doc, A = 1 and B = 2: at every point of every roll,
    /// any two nodes accept each other's frames; skipping step 1 does not.
    #[test]
    fn rotation() {
        let (a, b) = (1, 2);
        let before = keys(a, None);
        let step1 = keys(a, Some(b));
        let step2 = keys(b, Some(a));
        let after = keys(b, None);
        let payload = b"\x02ping";
        for (old, new) in [(&before, &step1), (&step1, &step2), (&step2, &after)] {
            for (x, y) in [(old, new), (new, old), (old, old), (new, new)] {
                assert!(open(y, &sealed(x, payload)).is_ok(), "{x:?} -> {y:?}");
            }
        }
        // Sealed with the old current key: verifies on a node holding it as previous.
        assert_eq!(
            open(&step2, &sealed(&step1, payload)).unwrap().verified,
            Verified::Previous
        );
        // Sealed with the new current key: verifies on an old node only if that node
        // holds the new key as previous.
        assert_eq!(
            open(&step1, &sealed(&step2, payload)).unwrap().verified,
            Verified::Previous
        );
        assert_eq!(
            open(&before, &sealed(&step2, payload)),
            Err(AuthError::BadMac)
        );
        // Once A is retired, a straggler still sealing with A is rejected.
        assert_eq!(
            open(&after, &sealed(&before, payload)),
            Err(AuthError::BadMac)
        );
    }

    #[test]
    fn key_length_and_trimming() {
        assert_eq!(
            ClusterKey::new([7; MIN_KEY_LEN - 1]).unwrap_err(),
            KeyError::TooShort {
                len: MIN_KEY_LEN - 1,
                min: MIN_KEY_LEN
            }
        );
        assert_eq!(
            ClusterKey::new([7; MIN_KEY_LEN]).unwrap().len(),
            MIN_KEY_LEN
        );
        assert_eq!(
            ClusterKey::from_file_contents(b"").unwrap_err(),
            KeyError::TooShort {
                len: 0,
                min: MIN_KEY_LEN
            }
        );
        // 31 bytes of text padded to 40 with whitespace is still too short.
        let short = format!(" \t{}\r\n\n", "a".repeat(31));
        assert_eq!(
            ClusterKey::from_file_contents(short.as_bytes()).unwrap_err(),
            KeyError::TooShort {
                len: 31,
                min: MIN_KEY_LEN
            }
        );
        // `openssl rand -hex 32 > key`: 64 hex digits and a newline; the trimmed text is
        // the key, so a file with other surrounding whitespace is the same key.
        let text = "3f1c9a0e5b7d2468ace0135798bdf02468ace0135798bdf0123456789abcdef0";
        let file = ClusterKey::from_file_contents(format!("{text}\n").as_bytes()).unwrap();
        assert_eq!(file.len(), 64);
        let spaced = ClusterKey::from_file_contents(format!("\r\n {text}\t\n").as_bytes());
        let raw = ClusterKey::new(text).unwrap();
        let frame = sealed(&FrameAuth::key(file), b"\x02abc");
        assert!(open(&FrameAuth::key(spaced.unwrap()), &frame).is_ok());
        assert!(open(&FrameAuth::key(raw), &frame).is_ok());
        // Inner whitespace is part of the key.
        let inner = ClusterKey::from_file_contents(format!("{text} x").as_bytes()).unwrap();
        assert_eq!(open(&FrameAuth::key(inner), &frame), Err(AuthError::BadMac));
    }

    #[test]
    fn debug_hides_the_key() {
        let text = "secret-key-material-that-must-not-leak-0123456789";
        let key = ClusterKey::new(text).unwrap();
        let auth = FrameAuth::Keys {
            current: key.clone(),
            previous: Some(key.clone()),
        };
        for shown in [
            format!("{key:?}"),
            format!("{auth:?}"),
            format!("{auth:#?}"),
        ] {
            assert!(!shown.contains("secret"), "{shown}");
            assert!(!shown.contains("0123"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }
}
