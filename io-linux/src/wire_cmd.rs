//! `minuteman wire ...`: peer-protocol frames.

use clap::Subcommand;
use minuteman_core::wire::{self, Limits};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WireCommand {
    /// Decode one frame (version byte + postcard message) read from FILE or stdin.
    Decode {
        /// The frame; `-` or absent reads stdin.
        file: Option<PathBuf>,
    },
}

pub fn run(command: WireCommand) -> ExitCode {
    match command {
        WireCommand::Decode { file } => decode(file),
    }
}

fn decode(file: Option<PathBuf>) -> ExitCode {
    let mut frame = Vec::new();
    let read = match file.as_deref() {
        Some(path) if path != Path::new("-") => std::fs::read(path).map(|bytes| frame = bytes),
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
