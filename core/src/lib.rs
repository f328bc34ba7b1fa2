//! minuteman-core: every decision minuteman makes, as pure, deterministic state machines.
//!
//! No sockets, clocks, threads or OS randomness: inputs carry `now`, randomness comes from a
//! ChaCha generator seeded from the config, and outputs are drained with
//! [`Node::poll_output`] until it yields [`Output::Timeout`]. See `DESIGN.md`.

pub mod auth;
pub mod body_diff;
pub mod config;
pub mod counters;
pub mod desired;
pub mod dns;
mod down_queue;
pub mod id;
pub mod kernel;
pub mod mesos;
pub mod named;
pub mod node;
pub mod ping;
pub mod reachability;
pub mod records;
pub mod services_delta;
mod short_list;
mod slot_index;
pub mod tasks;
pub mod time;
pub mod vip;
pub mod wire;

pub use auth::{ClusterKey, FrameAuth};
pub use config::{
    Broadcast, Config, ConfigError, MembershipConfig, PingConfig, ReachabilityConfig, RecordsConfig,
};
pub use counters::Counters;
pub use id::NodeId;
pub use node::{Event, InputError, LinkDown, Node, Output, RecordTooLarge, Transmit};
pub use records::{Record, RecordBody};
pub use time::Time;
pub use vip::{Backend, Backends, Protocol, Vip, VipAddr, VipSet};
pub use wire::{DecodeError, Envelope, Limits, Message};
