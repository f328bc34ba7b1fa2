//! The `SUBSCRIBE` source: a master's operator-API event stream (`POST` of
//! `{"type":"SUBSCRIBE"}`), followed over one long HTTP response, reconnected on any
//! trouble. The bytes are the [`session`]'s business; this module owns the connection, its
//! deadlines and the reconnect schedule.
//!
//! Invariants:
//! - Every connection is a fresh resync: [`Session::reconnect`] before it, and nothing is
//!   published on it before its `SUBSCRIBED` (which replaces the whole state).
//! - A connection only ever ends in a failure, counted once in
//!   `mesos_poll_failures{reason}` with the poll sources' closed set of reasons: connect
//!   error or a broken body `http`, the master ending the stream `http`, a status other
//!   than 200 `status`, silence `timeout`, a record over the limit `too_large`, a record
//!   that is not a well-formed event (or an event before `SUBSCRIBED`) `parse`, an
//!   unreadable CA file `io`. Then the last published state stays (never a withdrawal for
//!   a lost stream), and the next connection comes after the poll sources' backoff
//!   (`min(max_backoff, poll_interval × 2^k)` after `k` consecutive failed connections,
//!   ±10%). A connection that reached `SUBSCRIBED` is a success: it ends the streak.
//! - Deadlines: connect, headers and then every gap between two chunks until `SUBSCRIBED`
//!   within `timeout`; after `SUBSCRIBED`, no gap longer than [`MISSED_HEARTBEATS`] of the
//!   heartbeat interval it announced (Mesos: 15 s). No total deadline: the stream is meant
//!   to last.
//! - Metrics: `mesos_polls` +1 per connection attempt, `mesos_changes` +1 per publication,
//!   `mesos_warnings` + the extraction warnings of each derivation of this host's services.
//! - Logs: failures once per change of condition ([`super::health`]), the first
//!   `SUBSCRIBED` and a recovery at info, every later `SUBSCRIBED` at debug, and a change of
//!   the local agents (found, none at this address, not yet re-registered with a new
//!   master) at info or warn.
//! - Bounded memory: the session's (one partial record, the core's stream limits); the
//!   HTTP client keeps no idle connection.
//! - `shutdown` ends [`drive`] promptly, in the middle of a connection or a sleep.

use super::health::{Health, WarningLog};
use super::http::{classify, client_builder};
use super::outcome::{PollError, Reason};
use super::session::{Session, MISSED_HEARTBEATS};
use super::{deliver, failed, next_delay, recovered, LocalServices, Schedule};
use crate::metrics::ShellMetrics;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Response, StatusCode};
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The request body.
pub(crate) const SUBSCRIBE_BODY: &str = r#"{"type":"SUBSCRIBE"}"#;
/// What the log lines call an attempt.
const STREAM: &str = "Mesos SUBSCRIBE stream";

/// Where and how to connect.
pub(crate) struct SubscribeSource {
    pub url: String,
    pub auth_token: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Connect and headers, and each silence before `SUBSCRIBED`.
    pub timeout: Duration,
}

/// What outlives a connection.
struct Follower<'a> {
    agent_ip: IpAddr,
    metrics: &'a ShellMetrics,
    tx: &'a watch::Sender<Option<LocalServices>>,
    health: Health,
    warned: WarningLog,
    /// Connections that reached `SUBSCRIBED`.
    subscriptions: u64,
    /// The local agents last logged, and whether the master was still waiting for them
    /// to re-register (`None` before the first `SUBSCRIBED`).
    logged_agents: Option<(Vec<String>, bool)>,
}

/// Follows the stream until `shutdown`; `unit` draws the jitter, in `[-1, 1]`.
pub(super) async fn drive(
    source: SubscribeSource,
    mut session: Session,
    schedule: Schedule,
    metrics: &ShellMetrics,
    tx: &watch::Sender<Option<LocalServices>>,
    shutdown: &CancellationToken,
    mut unit: impl FnMut() -> f64,
) {
    let mut follower = Follower {
        agent_ip: session.agent_ip(),
        metrics,
        tx,
        health: Health::default(),
        warned: WarningLog::default(),
        subscriptions: 0,
        logged_agents: None,
    };
    follower.warned.is_new(&[]);
    loop {
        metrics.mesos_polls.inc();
        session.reconnect();
        let ended = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            ended = follow(&source, &mut session, &mut follower) => ended,
        };
        let error = match ended {
            Ok(never) => match never {},
            Err(error) => error,
        };
        failed(&error, &mut follower.health, metrics, STREAM);
        let delay = next_delay(schedule, follower.health.streak(), unit());
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection, followed until it fails.
async fn follow(
    source: &SubscribeSource,
    session: &mut Session,
    follower: &mut Follower<'_>,
) -> Result<Infallible, PollError> {
    let mut response = open(source).await?;
    loop {
        let limit = if session.is_subscribed() {
            session.silence_limit()
        } else {
            source.timeout
        };
        let chunk = match timeout(limit, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => {
                return Err(PollError::new(
                    Reason::Http,
                    format!("{} ended the stream", source.url),
                ))
            }
            Ok(Err(e)) => return Err(classify(&e)),
            Err(_) if session.is_subscribed() => {
                return Err(PollError::new(
                    Reason::Timeout,
                    format!(
                        "nothing from {} for {limit:?} ({MISSED_HEARTBEATS} heartbeat intervals)",
                        source.url
                    ),
                ))
            }
            Err(_) => {
                return Err(PollError::new(
                    Reason::Timeout,
                    format!("no SUBSCRIBED from {} within {limit:?}", source.url),
                ))
            }
        };
        let fed = session.feed(&chunk)?;
        if fed.subscribed {
            follower.subscribed(source, session);
        }
        if fed.subscribed || fed.derived.is_some() {
            follower.log_local_agents(session);
        }
        if let Some(good) = fed.derived {
            deliver(
                good,
                follower.agent_ip,
                &mut follower.warned,
                follower.metrics,
                follower.tx,
            );
        }
    }
}

/// The `POST`, up to a 200 answer's headers.
async fn open(source: &SubscribeSource) -> Result<Response, PollError> {
    let client = client_builder(source.auth_token.as_deref(), source.ca_file.as_deref())?
        .connect_timeout(source.timeout)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| classify(&e))?;
    let request = client
        .post(&source.url)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(SUBSCRIBE_BODY);
    let response = timeout(source.timeout, request.send())
        .await
        .map_err(|_| {
            PollError::new(
                Reason::Timeout,
                format!("{} did not answer within {:?}", source.url, source.timeout),
            )
        })?
        .map_err(|e| classify(&e))?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(PollError::new(
            Reason::Status,
            format!("{} answered {status}", source.url),
        ));
    }
    Ok(response)
}

impl Follower<'_> {
    /// This connection's `SUBSCRIBED` was applied.
    fn subscribed(&mut self, source: &SubscribeSource, session: &Session) {
        let (agents, tasks) = session.sizes();
        let heartbeat = session.heartbeat();
        self.subscriptions += 1;
        if self.subscriptions == 1 {
            info!(
                url = source.url,
                agents,
                tasks,
                ?heartbeat,
                "Mesos: subscribed"
            );
        } else {
            debug!(
                url = source.url,
                agents,
                tasks,
                ?heartbeat,
                "Mesos: subscribed again"
            );
        }
        recovered(&mut self.health, STREAM);
    }

    /// Logs the agents at this host's address when they (or their wait) changed.
    fn log_local_agents(&mut self, session: &Session) {
        let local = session.local_agents();
        let waiting = session.is_waiting_for_agent();
        let (agents, _) = session.sizes();
        if self
            .logged_agents
            .as_ref()
            .is_some_and(|(logged, was)| logged == local && *was == waiting)
        {
            return;
        }
        let agent_ip = self.agent_ip;
        if local.is_empty() {
            warn!(
                %agent_ip, agents,
                "Mesos: the master lists no agent at this host's address: no local tasks"
            );
        } else if waiting {
            warn!(
                %agent_ip, ids = ?local,
                "Mesos: the master has not heard from this host's agent since it took over; \
                 keeping the last good state until the agent re-registers"
            );
        } else {
            info!(%agent_ip, ids = ?local, "Mesos: this host's agent, as the master knows it");
        }
        self.logged_agents = Some((local.to_vec(), waiting));
    }
}
