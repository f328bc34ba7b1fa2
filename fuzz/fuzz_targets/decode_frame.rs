//! The wire decoder on arbitrary bytes: it never panics, and whatever it accepts
//! re-encodes (to the same length `encoded_len` predicts) and decodes to the same envelope.
//!
//! `cargo +nightly fuzz run decode_frame`

#![no_main]

use libfuzzer_sys::fuzz_target;
use minuteman_core::wire::{decode, encode, encoded_len, Limits};

fuzz_target!(|frame: &[u8]| {
    let limits = Limits::default();
    let Ok(envelope) = decode(frame, &limits) else {
        return;
    };
    let again = encode(&envelope, &limits).expect("a decoded envelope re-encodes");
    assert_eq!(again.len(), encoded_len(&envelope));
    assert!(
        again.len() <= frame.len(),
        "re-encoding grew the frame: {} > {}",
        again.len(),
        frame.len()
    );
    assert_eq!(decode(&again, &limits), Ok(envelope));
});
