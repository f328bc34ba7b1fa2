//! Running the `nft` binary: one transaction (`nft -f -`, the script on stdin) and the
//! table read back (`nft list table inet <table>`), from async code (the worker) and
//! blocking code (start and `minuteman cleanup`).
//!
//! Invariants:
//! - A script is one `nft -f -` run, so the kernel applies it as one transaction: all of
//!   it or, when nft refuses any line, none of it.
//! - Nothing here holds state: what the kernel holds is the worker's business.
//! - Every failure is a typed [`DataPlaneError`] carrying nft's stderr (its first 4 KiB);
//!   a missing binary names it. A run that outlives [`TIMEOUT`] is killed and reported as refused.
//! - A table that does not exist lists as `None`, not as an error.

use super::DataPlaneError;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Longest one nft run may take (a full table of 10,000 services × 10 destinations takes
/// about 10 s on a loaded 2-core machine).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach nft for one table.
#[derive(Clone, Debug)]
pub struct Nft {
    binary: PathBuf,
    table: String,
}

impl Nft {
    /// `binary` run for the table `table` (already sanitized).
    pub fn new(binary: &Path, table: String) -> Nft {
        Nft {
            binary: binary.to_owned(),
            table,
        }
    }

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    fn spawn_error(&self, source: std::io::Error) -> DataPlaneError {
        DataPlaneError::Spawn {
            binary: self.name(),
            source,
        }
    }

    /// `nft --version`: whether the binary runs at all.
    pub fn version(&self) -> Result<String, DataPlaneError> {
        let out = std::process::Command::new(&self.binary)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            return Err(DataPlaneError::Unusable {
                binary: self.name(),
                stderr: stderr(&out),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `script` as one transaction.
    pub async fn run(&self, script: &str) -> Result<(), DataPlaneError> {
        let mut child = tokio::process::Command::new(&self.binary)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let mut stdin = child.stdin.take();
        let write = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A write error means nft exited early: its status and stderr say why.
                let _ = stdin.write_all(script.as_bytes()).await;
            }
            drop(stdin);
        };
        let wait = async {
            let (_, out) = tokio::join!(write, child.wait_with_output());
            out
        };
        let out = match tokio::time::timeout(TIMEOUT, wait).await {
            Ok(out) => out.map_err(|e| self.spawn_error(e))?,
            Err(_) => {
                return Err(DataPlaneError::Refused {
                    stderr: format!("nft did not finish within {TIMEOUT:?}"),
                })
            }
        };
        refused(&out)
    }

    /// Runs `script` as one transaction, blocking.
    pub fn run_blocking(&self, script: &str) -> Result<(), DataPlaneError> {
        let mut child = std::process::Command::new(&self.binary)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let stdin = child.stdin.take();
        let out = std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    use std::io::Write as _;
                    let _ = stdin.write_all(script.as_bytes());
                }
            });
            child.wait_with_output()
        })
        .map_err(|e| self.spawn_error(e))?;
        refused(&out)
    }

    fn list_command(&self) -> [&str; 4] {
        ["list", "table", "inet", &self.table]
    }

    /// `nft list table inet <table>`: its text, `None` when the table does not exist.
    pub async fn list(&self) -> Result<Option<String>, DataPlaneError> {
        let child = tokio::process::Command::new(&self.binary)
            .args(self.list_command())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(TIMEOUT, child).await {
            Ok(out) => listed(&out.map_err(|e| self.spawn_error(e))?),
            Err(_) => Err(DataPlaneError::Listing(format!(
                "nft list did not finish within {TIMEOUT:?}"
            ))),
        }
    }

    /// `nft list table inet <table>`, blocking.
    pub fn list_blocking(&self) -> Result<Option<String>, DataPlaneError> {
        let out = std::process::Command::new(&self.binary)
            .args(self.list_command())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        listed(&out)
    }

    /// The transaction that removes the table, and succeeds when there is none.
    pub fn delete_script(&self) -> String {
        format!("add table inet {0}\ndelete table inet {0}\n", self.table)
    }
}

/// Longest stderr kept in an error (a refused full table can print an error per line).
const MAX_STDERR: usize = 4096;

fn stderr(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim();
    if text.len() <= MAX_STDERR {
        return text.to_owned();
    }
    let mut cut = MAX_STDERR;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} ... ({} more bytes)", &text[..cut], text.len() - cut)
}

fn refused(out: &Output) -> Result<(), DataPlaneError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(DataPlaneError::Refused {
            stderr: format!("{} ({})", stderr(out), out.status),
        })
    }
}

fn listed(out: &Output) -> Result<Option<String>, DataPlaneError> {
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let err = stderr(out);
    // nft: "Error: No such file or directory" (ENOENT) for a table that does not exist.
    if err.contains("No such file or directory") {
        return Ok(None);
    }
    Err(DataPlaneError::Listing(format!("{err} ({})", out.status)))
}
