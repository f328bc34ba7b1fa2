//! Any bytes as a SUBSCRIBE RecordIO stream, fed in chunks the input chooses: the decoder
//! and the stream state machine never panic and stay within their bounds.
//!
//! `cargo +nightly fuzz run mesos_stream`

#![no_main]

use libfuzzer_sys::fuzz_target;
use minuteman_core::mesos::{ExtractOptions, MesosStream, StreamLimits};

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (cuts, bytes) = input;
    let mut stream = MesosStream::new(StreamLimits::default());
    let mut rest = bytes.as_slice();
    for cut in cuts {
        if rest.is_empty() {
            break;
        }
        let n = (usize::from(cut) % rest.len()).max(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if stream.feed(chunk).is_err() {
            return;
        }
        let _ = minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default());
    }
    let _ = stream.feed(rest);
    let _ = minuteman_core::mesos::extract_state(stream.state(), &ExtractOptions::default());
});
