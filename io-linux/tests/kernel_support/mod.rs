//! What the real-kernel data-plane suites (`dataplane_nft.rs`, `dataplane_ipvs.rs`) share:
//! the runtime their data planes run on, with the data plane's warnings in the test output.

#![allow(dead_code)]

/// A two-worker tokio runtime; the first call also routes `minuteman=info` logs to the
/// test's output.
pub fn runtime() -> tokio::runtime::Runtime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("minuteman=info")
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
