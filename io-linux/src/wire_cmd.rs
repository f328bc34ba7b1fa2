//! `minuteman wire ...`: peer-protocol frames.

use clap::Subcommand;
use minuteman_core::auth::{ClusterKey, FrameAuth, Verified};
use minuteman_core::wire::{self, Limits};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WireCommand {
    /// Decode one sealed frame (version byte, postcard message, 32-byte HMAC tag: what
    /// follows the 4-byte length prefix on a peer connection) read from FILE or stdin.
    Decode {
        /// The frame; `-` or absent reads stdin.
        file: Option<PathBuf>,
        /// Check the frame's MAC against this cluster key (the agent's key file); without
        /// it the tag is not checked, and the output says so.
        #[arg(long, value_name = "FILE")]
        cluster_key_file: Option<PathBuf>,
    },
}

pub fn run(command: WireCommand) -> ExitCode {
    match command {
        WireCommand::Decode {
            file,
            cluster_key_file,
        } => decode(file, cluster_key_file),
    }
}

fn decode(file: Option<PathBuf>, key_file: Option<PathBuf>) -> ExitCode {
    let auth = match key_file {
        None => FrameAuth::Insecure,
        Some(path) => match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| ClusterKey::from_file_contents(&b).map_err(|e| e.to_string()))
        {
            Ok(key) => FrameAuth::key(key),
            Err(e) => {
                eprintln!("error: cluster key {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let mut frame = Vec::new();
    let read = match file.as_deref() {
        Some(path) if path != Path::new("-") => std::fs::read(path).map(|bytes| frame = bytes),
        _ => std::io::stdin().read_to_end(&mut frame).map(|_| ()),
    };
    if let Err(e) = read {
        eprintln!("error: cannot read the frame: {e}");
        return ExitCode::from(2);
    }
    match wire::decode_sealed(&frame, &Limits::default(), &auth) {
        Ok((envelope, verified)) => {
            let mac = match verified {
                Verified::Current => "MAC verified",
                Verified::Previous => "MAC verified under the previous key",
                Verified::Unchecked => "MAC not checked (no --cluster-key-file)",
            };
            println!("from {} ({mac}): {:?}", envelope.from, envelope.msg);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: bad frame: {e}");
            ExitCode::FAILURE
        }
    }
}
