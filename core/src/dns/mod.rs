//! DNS for named VIPs, sans-IO: the table of names the local kernel serves, and one query
//! in, one reply (or forward, or drop) out. The agent's listeners (`io-linux/src/dns`)
//! and the fuzz target call the same code.
//!
//! - [`table`]: the names the local kernel serves, built whole on every change;
//! - [`answer`]: the reply to one query; never panics, whatever the bytes.

pub mod answer;
pub mod table;

/// The DNS codec the answers are written with (hickory-proto), for the shells.
pub use hickory_proto as hickory;
