//! `minuteman`: the daemon and CLI of minuteman on Linux.
//!
//! This shell grows issue by issue (DESIGN.md §4): the agent (peers over TCP, Mesos over
//! HTTP, nftables / IPVS), the HTTP API and the CLI commands that read it. For now it
//! offers the one thing the core already supports end to end: checking wire frames.

use clap::{Parser, Subcommand};
use minuteman_core::wire::{self, Limits};
use std::io::Read;
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
        command: WireCommand,
    },
}

#[derive(Subcommand)]
enum WireCommand {
    /// Decode one frame (version byte + postcard message) read from FILE or stdin.
    Decode {
        /// The frame; `-` or absent reads stdin.
        file: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Wire {
            command: WireCommand::Decode { file },
        } => decode(file),
    }
}

fn decode(file: Option<std::path::PathBuf>) -> ExitCode {
    let mut frame = Vec::new();
    let read = match file.as_deref() {
        Some(path) if path != std::path::Path::new("-") => {
            std::fs::read(path).map(|bytes| frame = bytes)
        }
        _ => std::io::stdin().read_to_end(&mut frame).map(|_| ()),
    };
    if let Err(e) = read {
        eprintln!("error: cannot read the frame: {e}");
        return ExitCode::from(2);
    }
    match wire::decode(&frame, &Limits::default()) {
        Ok(envelope) => {
            println!("from {}: {:?}", envelope.from, envelope.msg);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: bad frame: {e}");
            ExitCode::FAILURE
        }
    }
}
