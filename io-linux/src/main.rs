//! `minuteman`: the daemon and CLI of minuteman on Linux.
//!
//! This shell grows issue by issue (DESIGN.md §4): the agent (peers over TCP, Mesos over
//! HTTP, nftables / IPVS), the HTTP API and the CLI commands that read it. For now it
//! offers what the core already supports end to end: checking wire frames and inspecting
//! Mesos recordings. One module per command family.

mod mesos_cmd;
mod wire_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "minuteman",
    version,
    about = "minuteman: distributed service discovery and layer-4 load balancing",
    long_about = "minuteman runs one agent per host; tasks with a VIP label become backends of \
                  that VIP on every host. The agent itself is not built yet; see DESIGN.md. \
                  To run the simulated evaluation use `minuteman-sim`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect peer-protocol frames.
    Wire {
        #[command(subcommand)]
        command: wire_cmd::WireCommand,
    },
    /// Read Mesos state and show the VIPs it yields.
    Mesos {
        #[command(subcommand)]
        command: mesos_cmd::MesosCommand,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Wire { command } => wire_cmd::run(command),
        Command::Mesos { command } => mesos_cmd::run(command),
    }
}
