//! minuteman-sim: a seeded discrete-event simulator that runs whole clusters of
//! minuteman core nodes over a simulated network, with crashes, restarts, partitions and
//! loss, and reports how fast the cluster heals.
//!
//! Same seed, same run, on any number of threads: every host draws from its own stream of
//! the seed, events at the same instant are ordered by who scheduled them, and hosts
//! interact only across windows of the least latency (see [`sim`]). The trace hash makes
//! that checkable.

pub mod balancer;
pub mod baseline;
pub mod clients;
pub mod cpu;
pub mod faults;
pub mod membership;
pub mod mesos_agent;
pub mod network;
pub mod paper;
pub mod paper_files;
pub mod progress;
pub mod queue;
pub mod scale;
pub mod services;
pub mod sim;
pub mod stats;
pub mod swarm;
pub mod tcp;
pub mod world;

pub use membership::{MembershipReport, MembershipRun};
pub use network::NetConfig;
pub use paper::{PaperOutcome, PaperReport, PaperRun};
pub use progress::Progress;
pub use scale::{ScaleReport, ScaleRow, ScaleRun};
pub use services::{ServicesReport, ServicesRun};
pub use sim::{
    node_addr, ClusterConfig, Conditions, FalsePositive, HandledInput, InputKind, NetMode,
    Simulation,
};
