//! The state directory: this node's epoch and its last reported services, kept across
//! restarts so a restarted agent is a newer incarnation at once and serves its last known
//! VIPs before Mesos answers.
//!
//! File `state.bin`: the magic `MMST`, a format version byte, the xxh3-64 of the body
//! (little-endian), then the body in postcard.
//!
//! Invariants:
//! - Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of
//!   the directory. A crash leaves the old file or the new one, never a mix.
//! - Loading never fails the agent: a missing file is a fresh start; an unreadable,
//!   truncated or corrupt one (bad magic, version or checksum, undecodable body) is a
//!   warning and a fresh start.
//! - The epoch chosen at start is above every epoch saved before, and at least the wall
//!   clock in milliseconds, so it grows across restarts even when the directory was lost.

use minuteman_core::vip::VipSet;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 4] = b"MMST";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 8;
/// The file in the state directory.
pub const FILE_NAME: &str = "state.bin";

/// What survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    pub epoch: u64,
    pub agents: Vec<IpAddr>,
    /// Shared with the node (serialized as the set itself).
    pub services: Arc<VipSet>,
}

/// Why a saved state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a minuteman state file (bad magic or version)")]
    Format { path: PathBuf },
    #[error("{path} is corrupt (checksum mismatch)")]
    Checksum { path: PathBuf },
    #[error("{path} does not decode: {message}")]
    Decode { path: PathBuf, message: String },
}

/// The state file of `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Encodes `state` as the file's bytes.
pub fn encode(state: &SavedState) -> Vec<u8> {
    let body = postcard::to_allocvec(state).expect("a SavedState always serializes");
    let mut bytes = Vec::with_capacity(HEADER + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.push(VERSION);
    bytes.extend_from_slice(&xxh3_64(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// Decodes the file's bytes (`path` only names it in errors).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<SavedState, LoadError> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(LoadError::Format {
            path: path.to_owned(),
        });
    }
    let sum = u64::from_le_bytes(bytes[5..HEADER].try_into().expect("8 bytes"));
    let body = &bytes[HEADER..];
    if xxh3_64(body) != sum {
        return Err(LoadError::Checksum {
            path: path.to_owned(),
        });
    }
    postcard::from_bytes(body).map_err(|e| LoadError::Decode {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Loads the saved state of `dir`: `Ok(None)` when there is none.
pub fn load(dir: &Path) -> Result<Option<SavedState>, LoadError> {
    let path = path_in(dir);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::Io { path, source }),
    }
}

/// Writes `state` atomically into `dir` (created if missing).
pub fn save(dir: &Path, state: &SavedState) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = path_in(dir);
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode(state))?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The epoch of this start: above `saved`, and at least `wall_ms`.
pub fn next_epoch(saved: Option<u64>, wall_ms: u64) -> u64 {
    saved.map_or(0, |e| e.saturating_add(1)).max(wall_ms)
}

/// Milliseconds since the Unix epoch by the wall clock (0 if it is before 1970).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minuteman_core::vip::{Backend, Protocol, Vip, VipAddr};

    fn sample() -> SavedState {
        let mut services = VipSet::new();
        services.insert(
            Vip {
                protocol: Protocol::Tcp,
                addr: VipAddr::Named("web.marathon".into()),
                port: 80,
            },
            Backend {
                ip: "10.0.0.5".parse().unwrap(),
                port: 31000,
                agent: "10.0.0.5".parse().unwrap(),
                weight: 1,
            },
        );
        SavedState {
            epoch: 7,
            agents: vec!["10.0.0.5".parse().unwrap()],
            services: Arc::new(services),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mm-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn saves_and_loads_back() {
        let dir = temp_dir("roundtrip");
        assert!(load(&dir).unwrap().is_none());
        save(&dir, &sample()).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(sample()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_corruption_is_an_error_not_a_panic() {
        let path = Path::new("state.bin");
        let good = encode(&sample());
        for cut in 0..good.len() {
            assert!(decode(path, &good[..cut]).is_err(), "truncated at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(path, &bad).is_err(), "bit flipped at {i}");
        }
        assert!(matches!(
            decode(path, b"MMST\x09rest of it"),
            Err(LoadError::Format { .. })
        ));
    }

    #[test]
    fn epochs_grow_across_restarts_and_lost_state() {
        assert_eq!(next_epoch(Some(10), 5), 11);
        assert_eq!(next_epoch(Some(10), 50), 50);
        assert_eq!(next_epoch(None, 50), 50);
        assert_eq!(next_epoch(Some(u64::MAX), 0), u64::MAX);
    }
}
