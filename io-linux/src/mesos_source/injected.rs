//! The injected source: a Mesos agent living in the same process, for programs that embed
//! the agent (the madsim tests in `madsim-tests/`). It stands where the HTTP source stands:
//! the document it holds is what the agent's `/state` would answer, and it goes through
//! the same parse, poll loop, backoff and publication as an HTTP body.
//!
//! Invariants:
//! - A poll answers what the handle held when the poll began, after the handle's delay (a
//!   slow Mesos); with no document it fails as `http` (nothing answered), so the agent
//!   keeps its last good state, as with a Mesos agent that is down.
//! - Clones share one document: the embedding program changes it, every poll after sees
//!   the change.

use super::outcome::{parse, Good, PollError, Reason};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A handle on an in-process Mesos agent's `/state` document.
#[derive(Clone, Default)]
pub struct InjectedMesos {
    inner: Arc<Mutex<Answer>>,
}

#[derive(Default)]
struct Answer {
    document: Option<Arc<[u8]>>,
    delay: Duration,
}

impl InjectedMesos {
    /// A Mesos agent that does not answer yet.
    pub fn new() -> InjectedMesos {
        InjectedMesos::default()
    }

    /// From now on, polls answer `document` (any bytes: garbage is a `parse` failure).
    pub fn serve(&self, document: impl Into<Vec<u8>>) {
        self.with(|a| a.document = Some(document.into().into()));
    }

    /// From now on, polls fail as if the Mesos agent were down.
    pub fn go_down(&self) {
        self.with(|a| a.document = None);
    }

    /// Every answer from now on takes `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.with(|a| a.delay = delay);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Answer) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// One poll: the document held now, after the delay, parsed for `agent_ip`.
    pub(crate) async fn poll(&self, agent_ip: IpAddr) -> Result<Good, PollError> {
        let (document, delay) = self.with(|a| (a.document.clone(), a.delay));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match document {
            Some(bytes) => parse(&bytes, agent_ip),
            None => Err(PollError::new(
                Reason::Http,
                "the injected Mesos agent is down",
            )),
        }
    }
}

/// Handles are equal when they share their document.
impl PartialEq for InjectedMesos {
    fn eq(&self, other: &InjectedMesos) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for InjectedMesos {}

impl std::fmt::Debug for InjectedMesos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (bytes, delay) = self.with(|a| (a.document.as_ref().map(|d| d.len()), a.delay));
        f.debug_struct("InjectedMesos")
            .field("document_bytes", &bytes)
            .field("delay", &delay)
            .finish()
    }
}
