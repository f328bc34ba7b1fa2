//! Property tests of frame authentication on arbitrary bytes and random keys.
//!
//! - `open(seal(x)) == x` under any key pair, and it reports the key that sealed.
//! - Any change to a sealed frame (byte edits, insertions, removals, truncation, extension)
//!   is rejected by a keyed node; only the unchanged frame is accepted.
//! - A frame is accepted exactly when the sealing key is the receiver's current or previous.
//!
//! Set `PROPTEST_CASES` to soak.

use minuteman_core::auth::{
    open, seal, AuthError, ClusterKey, FrameAuth, Verified, MIN_KEY_LEN, TAG_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

/// Key bytes: the shortest allowed, one block (64), and longer than a block (hashed first).
fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), MIN_KEY_LEN..=MIN_KEY_LEN),
        vec(any::<u8>(), 64..=64),
        vec(any::<u8>(), MIN_KEY_LEN..200),
    ]
}

fn key(bytes: &[u8]) -> ClusterKey {
    ClusterKey::new(bytes).expect("long enough")
}

fn auth(current: &[u8], previous: Option<&[u8]>) -> FrameAuth {
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

#[derive(Clone, Debug)]
enum Edit {
    Xor(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Truncate(prop::sample::Index),
    Extend(Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, x)| Edit::Xor(i, x)),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Remove),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
        1 => vec(any::<u8>(), 1..40).prop_map(Edit::Extend),
    ]
}

fn apply(frame: &mut Vec<u8>, edit: &Edit) {
    match edit {
        Edit::Xor(i, x) => {
            let i = i.index(frame.len());
            frame[i] ^= x;
        }
        Edit::Insert(i, b) => frame.insert(i.index(frame.len() + 1), *b),
        Edit::Remove(i) => {
            frame.remove(i.index(frame.len()));
        }
        Edit::Truncate(i) => frame.truncate(i.index(frame.len())),
        Edit::Extend(tail) => frame.extend_from_slice(tail),
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn open_undoes_seal(
        payload in vec(any::<u8>(), 1..600),
        current in key_bytes(),
        previous in proptest::option::of(key_bytes()),
    ) {
        let node = auth(&current, previous.as_deref());
        let frame = sealed(&node, &payload);
        prop_assert_eq!(frame.len(), payload.len() + TAG_LEN);
        let opened = open(&node, &frame).expect("own frame verifies");
        prop_assert_eq!(opened.payload, &payload[..]);
        prop_assert_eq!(opened.verified, Verified::Current);
        // Sealed by a peer whose current key is this node's previous one.
        if let Some(previous) = &previous {
            let peer = sealed(&auth(previous, None), &payload);
            let opened = open(&node, &peer).expect("previous key verifies");
            prop_assert_eq!(opened.payload, &payload[..]);
            prop_assert_eq!(opened.verified, Verified::Previous);
        }
        let opened = open(&FrameAuth::Insecure, &frame).expect("insecure accepts");
        prop_assert_eq!(opened.payload, &payload[..]);
    }

    #[test]
    fn any_mutation_is_rejected(
        payload in vec(any::<u8>(), 1..300),
        current in key_bytes(),
        previous in proptest::option::of(key_bytes()),
        edits in vec(edit(), 1..5),
    ) {
        let node = auth(&current, previous.as_deref());
        let frame = sealed(&node, &payload);
        let mut bad = frame.clone();
        for e in &edits {
            if bad.is_empty() {
                break;
            }
            apply(&mut bad, e);
        }
        match open(&node, &bad) {
            Ok(opened) => {
                // Only the untouched frame (edits that cancelled out) may pass.
                prop_assert_eq!(&bad, &frame);
                prop_assert_eq!(opened.payload, &payload[..]);
            }
            Err(AuthError::Truncated { len }) => {
                prop_assert_eq!(len, bad.len());
                prop_assert!(len <= TAG_LEN);
            }
            Err(e) => {
                prop_assert_ne!(&bad, &frame, "unchanged frame rejected: {}", e);
            }
        }
    }

    #[test]
    fn accepted_iff_the_sealing_key_is_held(
        payload in vec(any::<u8>(), 1..64),
        k in prop::array::uniform3(key_bytes()),
        sealer in 0..3usize,
        current in 0..3usize,
        previous in proptest::option::of(0..3usize),
    ) {
        let node = auth(&k[current], previous.map(|p| &k[p][..]));
        let frame = sealed(&auth(&k[sealer], None), &payload);
        let held = k[sealer] == k[current] || previous.is_some_and(|p| k[sealer] == k[p]);
        match open(&node, &frame) {
            Ok(_) => prop_assert!(held),
            Err(e) => {
                prop_assert!(!held, "held key rejected: {}", e);
                prop_assert_eq!(e, AuthError::BadMac);
            }
        }
    }
}

/// The mutation strategy reaches every way a frame can fail (and sometimes cancels out),
/// so `any_mutation_is_rejected` is not passing on one easy case.
#[test]
fn mutations_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (vec(any::<u8>(), 1..300), key_bytes(), vec(edit(), 1..5));
    let (mut bad_mac, mut truncated, mut payload_edits, mut tag_edits) = (0, 0, 0, 0);
    for _ in 0..2000 {
        let (payload, k, edits) = strategy.new_tree(&mut runner).unwrap().current();
        let node = auth(&k, None);
        let frame = sealed(&node, &payload);
        let mut bad = frame.clone();
        for e in &edits {
            if bad.is_empty() {
                break;
            }
            apply(&mut bad, e);
        }
        match open(&node, &bad) {
            Err(AuthError::BadMac) => bad_mac += 1,
            Err(AuthError::Truncated { .. }) => truncated += 1,
            _ => {}
        }
        let n = payload.len().min(bad.len());
        if bad.len() == frame.len() {
            if frame[..n] != bad[..n] {
                payload_edits += 1;
            } else if frame != bad {
                tag_edits += 1;
            }
        }
    }
    assert!(bad_mac > 1000, "{bad_mac}");
    assert!(truncated > 50, "{truncated}");
    assert!(payload_edits > 200, "{payload_edits}");
    assert!(tag_edits > 20, "{tag_edits}");
}
