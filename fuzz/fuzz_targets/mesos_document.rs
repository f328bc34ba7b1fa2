//! Any bytes as a Mesos document (agent/master `/state`, GET_STATE, one event): parsing
//! and extraction return a result or a typed error, never panic; what is extracted keeps
//! the VipSet invariant (no VIP without backends).
//!
//! `cargo +nightly fuzz run mesos_document`

#![no_main]

use libfuzzer_sys::fuzz_target;
use minuteman_core::mesos::{self, ExtractOptions};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(extracted) = mesos::parse_and_extract(bytes, &ExtractOptions::default()) {
        assert!(extracted.vips.vips.values().all(|b| !b.is_empty()));
    }
});
