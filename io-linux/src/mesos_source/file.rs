//! The file source: a Mesos state document on disk, re-read when it changes.
//!
//! What a poll does: one `stat`. The file is read only when its stamp (device, inode,
//! length, mtime, ctime) differs from the last read's, or when the last read was *racy*:
//! the file had been modified less than [`RACY`] before we read it, so a rewrite within the
//! same timestamp tick (coarse-grained filesystems) could leave the stamp unchanged. Once a
//! read happens [`RACY`] after the last modification, any later write must move the mtime,
//! and the stamp alone is trusted (git's "racily clean" rule). A read is parsed only when
//! its content hash differs from the last parsed content; otherwise the last result is
//! reused.
//!
//! Invariants:
//! - A poll of an unchanged file returns the same result as the previous poll (good or a
//!   `parse`/`too_large` failure) without reading it.
//! - Never holds more than `limit` bytes (plus one) of the file: larger is `too_large`,
//!   checked on the stamp before reading and again while reading (the file may grow).
//! - A missing or unreadable file is an `io` failure and forgets the stamp, so the file is
//!   read as soon as it is back.
//! - The blocking filesystem calls run on tokio's blocking pool; dropping the poll future
//!   (shutdown) abandons the call without waiting for it.

use super::outcome::{parse, Good, PollError, Reason};
use std::fs::Metadata;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long after a modification a read is still suspect: generous against 1 s and 2 s
/// timestamp granularities.
pub(crate) const RACY: Duration = Duration::from_secs(3);

/// What `stat` says about the file, compared between polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The last read.
#[derive(Clone, Debug)]
struct Seen {
    stamp: Stamp,
    /// The read may have missed a same-tick rewrite: read again next time.
    racy: bool,
    hash: u64,
    result: Result<Good, PollError>,
}

#[derive(Clone, Debug)]
pub(crate) struct FileSource {
    path: PathBuf,
    agent_ip: IpAddr,
    limit: usize,
    seen: Option<Seen>,
    /// Reads and parses done (for tests: proof that unchanged files are not re-read).
    pub(crate) reads: u64,
    pub(crate) parses: u64,
}

impl FileSource {
    pub(crate) fn new(path: PathBuf, agent_ip: IpAddr, limit: usize) -> FileSource {
        FileSource {
            path,
            agent_ip,
            limit,
            seen: None,
            reads: 0,
            parses: 0,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// One poll: the state of the file as it is now.
    pub(crate) async fn poll(&mut self) -> Result<Good, PollError> {
        let path = self.path.clone();
        let limit = self.limit;
        let previous = self.seen.as_ref().map(|s| (s.stamp, s.racy));
        let read = crate::os::blocking(move || read_if_changed(&path, limit, previous))
            .await
            .map_err(|e| PollError::new(Reason::Io, format!("file reader failed: {e}")))?;
        match read {
            Err(e) => {
                self.seen = None;
                Err(e)
            }
            Ok(FileRead::Unchanged) => match &self.seen {
                Some(seen) => seen.result.clone(),
                None => Err(PollError::new(Reason::Io, "internal: no previous read")),
            },
            Ok(FileRead::Bytes { stamp, racy, bytes }) => {
                self.reads += 1;
                let hash = hash(&bytes);
                let result = match self.seen.take() {
                    Some(seen) if seen.hash == hash => seen.result,
                    _ => {
                        self.parses += 1;
                        parse(&bytes, self.agent_ip).map_err(|mut e| {
                            e.detail = format!("{}: {}", self.path.display(), e.detail);
                            e
                        })
                    }
                };
                self.seen = Some(Seen {
                    stamp,
                    racy,
                    hash,
                    result: result.clone(),
                });
                result
            }
        }
    }
}

enum FileRead {
    Unchanged,
    Bytes {
        stamp: Stamp,
        racy: bool,
        bytes: Vec<u8>,
    },
}

fn io_error(path: &Path, e: &std::io::Error) -> PollError {
    let what = if e.kind() == std::io::ErrorKind::NotFound {
        "missing".to_string()
    } else {
        format!("unreadable: {e}")
    };
    PollError::new(Reason::Io, format!("{} {what}", path.display()))
}

fn too_large(path: &Path, limit: usize) -> PollError {
    PollError::new(
        Reason::TooLarge,
        format!(
            "{} is larger than the limit of {limit} bytes",
            path.display()
        ),
    )
}

/// Whether a read at `now` of a file last modified at `mtime` may miss a same-tick rewrite.
pub(crate) fn is_racy(mtime: Option<SystemTime>, now: SystemTime) -> bool {
    match mtime {
        // In the future (clock skew) or within RACY: suspect.
        Some(mtime) => match now.duration_since(mtime) {
            Ok(age) => age < RACY,
            Err(_) => true,
        },
        None => true,
    }
}

fn read_if_changed(
    path: &Path,
    limit: usize,
    previous: Option<(Stamp, bool)>,
) -> Result<FileRead, PollError> {
    let now = SystemTime::now();
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, &e))?;
    if !meta.is_file() {
        return Err(PollError::new(
            Reason::Io,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let stamp = Stamp::of(&meta);
    if previous == Some((stamp, false)) {
        return Ok(FileRead::Unchanged);
    }
    if meta.len() > limit as u64 {
        return Err(too_large(path, limit));
    }
    let racy = is_racy(meta.modified().ok(), now);
    let file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    if bytes.len() > limit {
        return Err(too_large(path, limit));
    }
    Ok(FileRead::Bytes { stamp, racy, bytes })
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_or_future_modifications_are_racy() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(is_racy(Some(now), now));
        assert!(is_racy(Some(now - Duration::from_secs(2)), now));
        assert!(is_racy(Some(now + Duration::from_secs(5)), now));
        assert!(is_racy(None, now));
        assert!(!is_racy(Some(now - RACY), now));
        assert!(!is_racy(Some(now - Duration::from_secs(3600)), now));
    }
}
