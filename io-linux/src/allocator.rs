//! The process's memory allocator: jemalloc, returning freed memory to the system within
//! about a second.
//!
//! Why: the agent's heap swings. A host with 10,000 VIPs decodes records of hundreds of
//! kilobytes, renders nftables transactions of megabytes and rebuilds its desired state in
//! bursts; glibc's allocator kept most of each burst as resident memory (89.6 MiB resident
//! for a 46 MiB live heap in the 10,000 VIPs x 10 backends benchmark, docs/benchmarks.md).
//! jemalloc's background thread purges dirty pages after `dirty_decay_ms`, and
//! `muzzy_decay_ms:0` releases them at once instead of keeping them lazily freed.
//!
//! Invariant: only the binary sets the global allocator (the library and its tests use the
//! system's), and the configuration is read by jemalloc at its first allocation; the
//! `_RJEM_MALLOC_CONF` environment variable (the prefixed name) still overrides it.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string pointer that jemalloc reads as its compiled-in configuration.
#[repr(transparent)]
pub struct ConfString(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable, NUL-terminated string.
unsafe impl Sync for ConfString {}

/// jemalloc's compiled-in options (`malloc_conf`, under the `_rjem_` prefix the crate
/// builds jemalloc with).
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: ConfString =
    ConfString(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());
