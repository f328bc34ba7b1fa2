//! What the Mesos source tests share: a running source with its metrics and channel, and
//! waits bounded by [`PATIENCE`] (a test that waits longer fails with what it waited for).

#![allow(dead_code)]

use minuteman::mesos_source::{run, LocalServices, MesosConfig};
use minuteman::metrics::{ShellMetrics, Why};
use minuteman_core::vip::VipSet;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest any wait of these tests lasts.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Every `mesos_poll_failures` reason.
const REASONS: [&str; 6] = ["http", "status", "timeout", "too_large", "parse", "io"];

/// Logs to the test's output with `RUST_LOG=debug cargo test ... -- --nocapture`.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// One running Mesos source.
pub struct Running {
    pub metrics: ShellMetrics,
    pub rx: watch::Receiver<Option<LocalServices>>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    pub fn start(cfg: MesosConfig) -> Running {
        Running::start_with(cfg, None)
    }

    /// Starts with `seed` in the channel, as the agent does with its saved services.
    pub fn start_with(cfg: MesosConfig, seed: Option<LocalServices>) -> Running {
        logs();
        let metrics = ShellMetrics::default();
        let (tx, rx) = watch::channel(seed);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(cfg, metrics.clone(), tx, shutdown.clone()));
        Running {
            metrics,
            rx,
            shutdown,
            task,
        }
    }

    pub fn failures(&self, reason: &'static str) -> u64 {
        self.metrics
            .mesos_poll_failures
            .get_or_create(&Why::new(reason))
            .get()
    }

    pub fn total_failures(&self) -> u64 {
        REASONS.iter().map(|r| self.failures(r)).sum()
    }

    /// Waits until `reason` has been counted at least `at_least` times.
    pub async fn wait_failures(&self, reason: &'static str, at_least: u64) {
        let start = Instant::now();
        while self.failures(reason) < at_least {
            assert!(
                start.elapsed() < PATIENCE,
                "no {reason} failure counted (have {})",
                self.failures(reason)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The next publication.
    pub async fn next(&mut self) -> LocalServices {
        tokio::time::timeout(PATIENCE, self.rx.changed())
            .await
            .expect("nothing published")
            .expect("sender gone");
        self.rx.borrow_and_update().clone().expect("None published")
    }

    /// Waits for three polls in a row without a failure.
    pub async fn settle(&self) {
        let start = Instant::now();
        loop {
            let (polls, failed) = (self.metrics.mesos_polls.get(), self.total_failures());
            while self.metrics.mesos_polls.get() < polls + 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if self.total_failures() == failed {
                return;
            }
            assert!(start.elapsed() < PATIENCE, "the polls keep failing");
        }
    }

    pub fn nothing_new(&self) {
        assert!(
            !self.rx.has_changed().unwrap(),
            "published: {:?}",
            *self.rx.borrow()
        );
    }

    /// The services published last.
    pub fn current(&self) -> VipSet {
        VipSet::clone(
            &self
                .rx
                .borrow()
                .as_ref()
                .expect("nothing published")
                .services,
        )
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("run did not stop")
            .unwrap();
    }
}
