//! The local Mesos agent's VIP backends, read over HTTP, from a file, or from a master's
//! operator-API event stream.
//!
//! [`run`] reads until `shutdown` fires and publishes each new good [`LocalServices`] on
//! `tx` (a `watch` channel: one slot, the latest wins); errors keep the last good state.
//!
//! - `http`: `GET` of the agent's `/state`, bounded in time and size;
//! - `file`: a state file, re-read only when it changed;
//! - `injected`: a document set by the program that embeds the agent (the madsim tests);
//! - `subscribe`: a master's `SUBSCRIBE` stream, reconnected on any trouble; `session`
//!   turns its bytes into events and this host's services, `local` picks this host's
//!   agent out of the whole cluster;
//! - `outcome`: the parse step and the closed set of failure reasons;
//! - `backoff`: the poll schedule (pure);
//! - `health`: what is worth logging.
//!
//! Invariants:
//! - Nothing is published but a good parse of a whole state; a failed poll publishes
//!   nothing, so the receivers keep the last good state (never a mass withdrawal on
//!   garbage or silence). An empty but valid state *is* published: every task is gone.
//! - A state is published only when it differs from what the channel holds (so a caller
//!   that seeds the channel with a persisted state sees no spurious change).
//! - Metrics: `mesos_polls` +1 per attempt; `mesos_poll_failures{reason}` +1 per failed
//!   attempt; `mesos_changes` +1 per publication; `mesos_warnings` + the number of
//!   extraction warnings of each good attempt.
//! - Logs: the first failure at warn with its cause, a change of failure reason at warn,
//!   repeats at debug, "Mesos recovered after N failures" at info; extraction warnings once
//!   per distinct set.
//! - Schedule: the first poll at once; then `poll_interval` after a success, and
//!   `min(max_backoff, poll_interval × 2^k)` after `k` consecutive failures of the HTTP
//!   source, each jittered ±10%. The file source does not back off: a failed file poll
//!   costs one `stat` (an unchanged file is not re-read), and backing off would only delay
//!   noticing the repaired file.
//!   The `SUBSCRIBE` source keeps these rules with a connection as its attempt (see
//!   `subscribe`: a connection that reached `SUBSCRIBED` is a success, its end a failure).
//! - `shutdown` ends [`run`] promptly, in the middle of a request, a stream or a sleep.

mod backoff;
mod file;
mod health;
mod http;
mod injected;
mod local;
mod outcome;
mod session;
mod subscribe;

use crate::metrics::{ShellMetrics, Why};
use backoff::{base_delay, jitter};
use file::FileSource;
use health::{Health, Report, WarningLog};
use http::HttpSource;
pub use injected::InjectedMesos;
use minuteman_core::mesos::StreamLimits;
use minuteman_core::tasks::TaskSet;
use minuteman_core::vip::VipSet;
use outcome::{parse, Good, PollError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use session::Session;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use subscribe::SubscribeSource;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The default time between polls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The default longest backoff after errors.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The default HTTP timeout (whole request: connect, headers and body).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The default limit on a state's size (HTTP body or file).
pub const DEFAULT_MAX_STATE_BYTES: usize = 64 << 20;
/// Polls never come closer than this, whatever the configuration says.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// At most this many extraction warnings are logged per distinct set.
const LOGGED_WARNINGS: usize = 20;

/// What this host reports: its Mesos agent address(es), their VIP backends and their
/// running tasks' DNS records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalServices {
    pub agents: Vec<IpAddr>,
    /// Shared with the node that publishes it (one copy however many hold it).
    pub services: Arc<VipSet>,
    pub tasks: Arc<TaskSet>,
}

/// Where the state comes from.
#[derive(Clone)]
pub enum MesosSource {
    /// The agent's `/state` endpoint (e.g. `http://10.0.0.5:5051/state`).
    Url {
        url: String,
        /// Sent as `Authorization: token=...` when set.
        auth_token: Option<String>,
        /// A PEM file of CA certificates for `https` URLs; when set, only these are
        /// trusted.
        ca_file: Option<PathBuf>,
        /// For the whole request (connect, headers, body).
        timeout: Duration,
    },
    /// A file holding a Mesos state document, re-read when it changes.
    File { path: PathBuf },
    /// A master's operator-API endpoint (e.g. `http://leader.mesos:5050/api/v1`), followed
    /// as a `SUBSCRIBE` event stream; only the tasks of the agent at
    /// [`MesosConfig::agent_ip`] count.
    Subscribe {
        url: String,
        /// Sent as `Authorization: token=...` when set.
        auth_token: Option<String>,
        /// A PEM file of CA certificates for `https` URLs; when set, only these are
        /// trusted.
        ca_file: Option<PathBuf>,
        /// For connecting, for the answer's headers, and for `SUBSCRIBED` to arrive (no
        /// gap longer than this); afterwards the master's heartbeats set the pace.
        timeout: Duration,
    },
    /// A document set in this process ([`InjectedMesos`]), polled like an agent's
    /// `/state`.
    Injected(InjectedMesos),
}

impl MesosSource {
    /// A URL source without token or CA file, with [`DEFAULT_HTTP_TIMEOUT`].
    pub fn url(url: impl Into<String>) -> MesosSource {
        MesosSource::Url {
            url: url.into(),
            auth_token: None,
            ca_file: None,
            timeout: DEFAULT_HTTP_TIMEOUT,
        }
    }
}

/// Shows the token as `<redacted>`: configurations get logged.
impl std::fmt::Debug for MesosSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MesosSource::Url {
                url,
                auth_token,
                ca_file,
                timeout,
            } => f
                .debug_struct("Url")
                .field("url", url)
                .field("auth_token", &auth_token.as_ref().map(|_| "<redacted>"))
                .field("ca_file", ca_file)
                .field("timeout", timeout)
                .finish(),
            MesosSource::File { path } => f.debug_struct("File").field("path", path).finish(),
            MesosSource::Injected(source) => source.fmt(f),
            MesosSource::Subscribe {
                url,
                auth_token,
                ca_file,
                timeout,
            } => f
                .debug_struct("Subscribe")
                .field("url", url)
                .field("auth_token", &auth_token.as_ref().map(|_| "<redacted>"))
                .field("ca_file", ca_file)
                .field("timeout", timeout)
                .finish(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MesosConfig {
    pub source: MesosSource,
    /// Time between polls while healthy (at least [`MIN_POLL_INTERVAL`]); for the
    /// `SUBSCRIBE` source, the base of the reconnect backoff.
    pub poll_interval: Duration,
    /// The longest backoff after errors.
    pub max_backoff: Duration,
    /// The address of this host's Mesos agent: every task's agent address (with a
    /// master's `SUBSCRIBE` stream, also which agent's tasks are this host's).
    pub agent_ip: IpAddr,
    /// The largest state accepted (HTTP body, file, or one `SUBSCRIBE` record); larger is
    /// a `too_large` failure.
    pub max_state_bytes: usize,
}

impl MesosConfig {
    /// Polls every [`DEFAULT_POLL_INTERVAL`], backs off up to [`DEFAULT_MAX_BACKOFF`],
    /// accepts states up to [`DEFAULT_MAX_STATE_BYTES`].
    pub fn new(source: MesosSource, agent_ip: IpAddr) -> MesosConfig {
        MesosConfig {
            source,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_backoff: DEFAULT_MAX_BACKOFF,
            agent_ip,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
        }
    }
}

/// Polls until `shutdown`; publishes every changed good state on `tx`.
pub async fn run(
    cfg: MesosConfig,
    metrics: ShellMetrics,
    tx: watch::Sender<Option<LocalServices>>,
    shutdown: CancellationToken,
) {
    let schedule = Schedule {
        interval: cfg.poll_interval.max(MIN_POLL_INTERVAL),
        max_backoff: cfg.max_backoff,
    };
    // Not the thread-local generator: the future must stay `Send`.
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let unit = move || rng.random_range(-1.0..=1.0);
    // The poll loop, alike for every source that answers one state per request.
    macro_rules! poll {
        ($source:expr) => {
            drive(
                $source,
                schedule,
                cfg.agent_ip,
                &metrics,
                &tx,
                &shutdown,
                unit,
            )
            .await
        };
    }
    match cfg.source {
        MesosSource::Url {
            url,
            auth_token,
            ca_file,
            timeout,
        } => {
            let source = Http {
                inner: HttpSource::new(url, auth_token, ca_file, timeout, cfg.max_state_bytes),
                agent_ip: cfg.agent_ip,
            };
            info!(url = source.inner.url(), agent_ip = %cfg.agent_ip, "Mesos source: polling");
            poll!(source);
        }
        MesosSource::File { path } => {
            let source = FileSource::new(path, cfg.agent_ip, cfg.max_state_bytes);
            info!(path = %source.path().display(), agent_ip = %cfg.agent_ip, "Mesos source: watching a state file");
            poll!(source);
        }
        MesosSource::Injected(source) => {
            info!(agent_ip = %cfg.agent_ip, "Mesos source: polling an injected document");
            let source = Injected {
                inner: source,
                agent_ip: cfg.agent_ip,
            };
            poll!(source);
        }
        MesosSource::Subscribe {
            url,
            auth_token,
            ca_file,
            timeout,
        } => {
            let limits = StreamLimits {
                max_record_size: cfg.max_state_bytes,
                ..StreamLimits::default()
            };
            info!(url, agent_ip = %cfg.agent_ip, "Mesos source: following a master's SUBSCRIBE stream");
            let source = SubscribeSource {
                url,
                auth_token,
                ca_file,
                timeout,
            };
            subscribe::drive(
                source,
                Session::new(cfg.agent_ip, limits),
                schedule,
                &metrics,
                &tx,
                &shutdown,
                unit,
            )
            .await;
        }
    }
    debug!("Mesos source: stopped");
}

#[derive(Clone, Copy, Debug)]
struct Schedule {
    interval: Duration,
    max_backoff: Duration,
}

/// One way to read the state.
trait Source {
    /// Whether consecutive failures stretch the delay between polls.
    const BACKS_OFF: bool;
    async fn poll(&mut self) -> Result<Good, PollError>;
}

struct Http {
    inner: HttpSource,
    agent_ip: IpAddr,
}

impl Source for Http {
    const BACKS_OFF: bool = true;
    async fn poll(&mut self) -> Result<Good, PollError> {
        let bytes = self.inner.fetch().await?;
        parse(&bytes, self.agent_ip)
    }
}

struct Injected {
    inner: InjectedMesos,
    agent_ip: IpAddr,
}

impl Source for Injected {
    const BACKS_OFF: bool = true;
    async fn poll(&mut self) -> Result<Good, PollError> {
        self.inner.poll(self.agent_ip).await
    }
}

impl Source for FileSource {
    const BACKS_OFF: bool = false;
    async fn poll(&mut self) -> Result<Good, PollError> {
        FileSource::poll(self).await
    }
}

/// The poll loop; `unit` draws the jitter, in `[-1, 1]`.
async fn drive<S: Source>(
    mut source: S,
    schedule: Schedule,
    agent_ip: IpAddr,
    metrics: &ShellMetrics,
    tx: &watch::Sender<Option<LocalServices>>,
    shutdown: &CancellationToken,
    mut unit: impl FnMut() -> f64,
) {
    let mut health = Health::default();
    let mut warned = WarningLog::default();
    warned.is_new(&[]);
    loop {
        metrics.mesos_polls.inc();
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            result = source.poll() => result,
        };
        match result {
            Ok(good) => {
                recovered(&mut health, POLL);
                deliver(good, agent_ip, &mut warned, metrics, tx);
            }
            Err(error) => failed(&error, &mut health, metrics, POLL),
        }
        let failures = if S::BACKS_OFF { health.streak() } else { 0 };
        let delay = next_delay(schedule, failures, unit());
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// What the poll sources' log lines call an attempt.
const POLL: &str = "Mesos poll";

/// A success: logs the end of a failure streak, if there was one.
fn recovered(health: &mut Health, what: &str) {
    if let Some(failures) = health.succeeded() {
        info!(failures, "{what} recovered after {failures} failures");
    }
}

/// A failed attempt: counted by reason, logged once per change of condition.
fn failed(error: &PollError, health: &mut Health, metrics: &ShellMetrics, what: &str) {
    let reason = error.reason.as_str();
    metrics
        .mesos_poll_failures
        .get_or_create(&Why::new(reason))
        .inc();
    let detail = &error.detail;
    match health.failed(error.reason) {
        Report::Started => warn!(
            reason,
            "{what} failed, keeping the last good state: {detail}"
        ),
        Report::Changed { previous } => warn!(
            reason,
            previous = previous.as_str(),
            failures = health.streak(),
            "{what} still failing, now for another reason: {detail}"
        ),
        Report::Same => debug!(
            reason,
            failures = health.streak(),
            "{what} failed again: {detail}"
        ),
    }
}

/// A good state: its warnings counted (logged when they change), published if it differs
/// from what the channel holds.
fn deliver(
    good: Good,
    agent_ip: IpAddr,
    warned: &mut WarningLog,
    metrics: &ShellMetrics,
    tx: &watch::Sender<Option<LocalServices>>,
) {
    record_warnings(&good.warnings, warned, metrics);
    let next = LocalServices {
        agents: vec![agent_ip],
        services: Arc::new({
            let mut services = good.services;
            services.shrink_to_fit();
            services
        }),
        tasks: Arc::new({
            let mut tasks = good.tasks;
            tasks.shrink_to_fit();
            tasks
        }),
    };
    let (vips, backends) = sizes(&next.services);
    if publish(tx, next) {
        metrics.mesos_changes.inc();
        info!(vips, backends, "Mesos: local services changed");
    }
}

/// The delay before the next attempt after `failures` consecutive failures, jittered by
/// `unit` in `[-1, 1]`.
fn next_delay(schedule: Schedule, failures: u64, unit: f64) -> Duration {
    let failures = u32::try_from(failures).unwrap_or(u32::MAX);
    jitter(
        base_delay(schedule.interval, schedule.max_backoff, failures),
        unit,
    )
}

fn record_warnings(warnings: &[String], warned: &mut WarningLog, metrics: &ShellMetrics) {
    metrics.mesos_warnings.inc_by(warnings.len() as u64);
    if !warned.is_new(warnings) {
        return;
    }
    if warnings.is_empty() {
        info!("Mesos: the state has no more warnings");
        return;
    }
    warn!(
        count = warnings.len(),
        "Mesos: the state has problems (logged once until they change)"
    );
    for warning in warnings.iter().take(LOGGED_WARNINGS) {
        warn!("Mesos: {warning}");
    }
    if warnings.len() > LOGGED_WARNINGS {
        warn!("Mesos: and {} more", warnings.len() - LOGGED_WARNINGS);
    }
}

fn sizes(services: &VipSet) -> (usize, usize) {
    let backends = services.vips.values().map(|b| b.len()).sum();
    (services.vips.len(), backends)
}

/// Puts `next` in the channel if it differs from what is there; true if it did.
fn publish(tx: &watch::Sender<Option<LocalServices>>, next: LocalServices) -> bool {
    tx.send_if_modified(|slot| {
        if slot.as_ref() == Some(&next) {
            false
        } else {
            *slot = Some(next);
            true
        }
    })
}

#[cfg(test)]
mod tests;
