//! `minuteman agent`: the daemon. One tokio task owns the core node ([`pump`]); around it,
//! the peer transport ([`transport`], [`frames`]), host probes ([`probe`]), the Mesos
//! source, the data plane, the state directory ([`persist`]) and the HTTP API ([`api`]).
//!
//! Start-up order: configuration, state directory (epoch, last services), data plane (the
//! kernel's current table is adopted, never flushed), peer listener and API listener (so
//! a busy port is an error at once), then the node and the tasks. SIGTERM or SIGINT: the
//! tasks stop, queued frames are flushed, pending kernel transactions finish, the state is
//! written, and the kernel state stays in place so traffic keeps flowing while the agent
//! restarts.
//!
//! The same code runs under madsim (`--cfg madsim`, `madsim-tests/`): [`run_until`] with
//! an injected Mesos source and the `none` data plane, stopped by the node's simulated
//! ctrl-c; [`crate::os`] holds the only calls that differ. The HTTP API is left out there
//! (axum runs on the real tokio's sockets); an [`AgentHandle`] gives the embedding
//! program what the API would (the node's views, the committed kernel state, the
//! metrics, the DNS table).

pub mod api;
pub mod budget;
pub mod config;
pub mod frames;
pub mod inbox;
pub mod persist;
pub mod probe;
pub mod pump;
pub mod transport;
pub mod views;

use crate::dataplane::{self, DataPlaneConfig, IpvsConfig};
use crate::dns::server::{NameList, SharedTable, TableSources, TaskList};
use crate::dns::table::DnsTable;
use crate::mesos_source::{self, MesosConfig, MesosSource};
use crate::metrics::{ShellMetrics, Why};
use arc_swap::ArcSwap;
use config::{AgentConfig, LogFormat, MesosOrigin};
use inbox::Inbox;
use minuteman_core::config::Config;
use minuteman_core::id::NodeId;
use minuteman_core::kernel::nft::NftConfig;
use minuteman_core::node::Node;
use minuteman_core::time::Time;
use persist::SavedState;
use pump::{Published, Pump, PumpInputs};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use transport::TransportConfig;

/// Inputs the node's inbox holds before frames are dropped.
pub const INBOX_CAPACITY: usize = 8192;
/// Host probes in flight at once.
pub const MAX_PROBES: usize = 256;

/// Why the agent could not start (it exits with status 1 and this message).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("the core refused the configuration: {0}")]
    Core(String),
    #[error("cannot listen for peers on {addr}: {source}")]
    PeerListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot serve the API on {addr}: {source}")]
    ApiListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("data plane: {0}")]
    DataPlane(#[from] dataplane::DataPlaneError),
    #[error(transparent)]
    DnsListen(#[from] crate::dns::server::BindError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Sets up logging in the configured format; the level comes from `RUST_LOG` (default
/// `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The data-plane configuration of `cfg`.
pub fn dataplane_config(cfg: &AgentConfig) -> DataPlaneConfig {
    DataPlaneConfig {
        kind: cfg.dataplane,
        nft: NftConfig {
            table: cfg.nft_table.clone(),
            ..NftConfig::default()
        },
        nft_binary: PathBuf::from("nft"),
        reconcile_interval: cfg.reconcile_interval,
        ipvs: IpvsConfig {
            interface: cfg.ipvs_interface.clone(),
            masquerade: cfg.ipvs_masquerade,
            ..IpvsConfig::default()
        },
    }
}

fn load_state(cfg: &AgentConfig) -> Option<SavedState> {
    match persist::load(&cfg.state_dir) {
        Ok(state) => state,
        Err(error) => {
            tracing::warn!(%error, "ignoring the saved state; starting as a fresh incarnation");
            None
        }
    }
}

/// Writes every new state handed over on `rx` (the latest wins) until the sender is gone.
async fn state_writer(dir: PathBuf, mut rx: watch::Receiver<SavedState>, metrics: ShellMetrics) {
    let mut failing = false;
    loop {
        let done = rx.changed().await.is_err();
        let state = rx.borrow_and_update().clone();
        let dir2 = dir.clone();
        let written = crate::os::blocking(move || persist::save(&dir2, &state)).await;
        match written {
            Ok(Ok(())) => {
                metrics.state_writes.get_or_create(&Why::new("ok")).inc();
                if failing {
                    tracing::info!(dir = %dir.display(), "the state directory is writable again");
                }
                failing = false;
            }
            Ok(Err(error)) => {
                metrics
                    .state_writes
                    .get_or_create(&Why::new("failed"))
                    .inc();
                if !failing {
                    tracing::warn!(dir = %dir.display(), %error, "cannot write the state; a restart would start from older state");
                }
                failing = true;
            }
            Err(_) => {}
        }
        if done {
            return;
        }
    }
}

/// What a program that embeds the agent can reach of it while it runs: what the HTTP API
/// serves, without HTTP.
#[derive(Clone)]
pub struct AgentHandle {
    /// Questions for the node's task (the API's queue; bounded).
    pub queries: mpsc::Sender<api::Query>,
    /// The kernel state the data plane committed last.
    pub committed: watch::Receiver<Arc<minuteman_core::kernel::KernelState>>,
    pub metrics: ShellMetrics,
    /// The table the DNS listeners answer from.
    pub dns: SharedTable,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(cfg: AgentConfig) -> Result<(), StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(run_until(cfg, crate::os::shutdown_signal(), |_| {}))
}

/// Runs the agent until `stop` resolves, then stops it as on SIGTERM. `started` gets the
/// agent's handle once it listens and its tasks run.
pub async fn run_until(
    cfg: AgentConfig,
    stop: impl std::future::Future<Output = ()>,
    started: impl FnOnce(AgentHandle),
) -> Result<(), StartError> {
    let metrics = ShellMetrics::default();
    let saved = load_state(&cfg);
    let epoch = persist::next_epoch(saved.as_ref().map(|s| s.epoch), persist::wall_ms());
    let me = NodeId::new(cfg.listen, epoch);

    let (resync_tx, resync_rx) = mpsc::channel(4);
    let (dataplane, adopted) =
        dataplane::spawn(dataplane_config(&cfg), metrics.clone(), resync_tx)?;

    let transport_cfg = TransportConfig::default();
    let listener = transport::bind(cfg.listen, &transport_cfg)
        .await
        .map_err(|source| StartError::PeerListen {
            addr: cfg.listen,
            source,
        })?;
    let dns_bound = crate::dns::server::bind(&cfg.dns_listen).await?;
    #[cfg(not(madsim))]
    let api_listener = tokio::net::TcpListener::bind(cfg.api_listen)
        .await
        .map_err(|source| StartError::ApiListen {
            addr: cfg.api_listen,
            source,
        })?;

    let origin = Instant::now();
    let seed: u64 = rand::random();
    let mut core_cfg = Config::new(me, cfg.contacts.clone(), seed, cfg.auth.clone());
    core_cfg.records.gc_horizon = cfg.gc_horizon;
    core_cfg.records.broadcast = cfg.broadcast;
    let mut node = Node::new(core_cfg, Time::ZERO).map_err(|e| StartError::Core(e.to_string()))?;
    node.resync_kernel(Time::ZERO, adopted.clone());
    if let Some(saved) = &saved {
        if let Err(error) =
            node.set_local_services(Time::ZERO, saved.agents.clone(), saved.services.clone())
        {
            tracing::warn!(%error, "the saved services no longer fit the record bounds");
        }
    }
    tracing::info!(
        listen = %cfg.listen, epoch, contacts = cfg.contacts.len(),
        adopted_services = adopted.services.len(),
        saved_backends = saved.as_ref().map_or(0, |s| s.services.backend_count()),
        dataplane = ?cfg.dataplane, api = %cfg.api_listen,
        insecure = matches!(cfg.auth, minuteman_core::auth::FrameAuth::Insecure),
        "minuteman agent starting"
    );

    let shutdown = CancellationToken::new();
    let (inbox, inbox_rx) = Inbox::new(INBOX_CAPACITY, metrics.clone());
    let (query_tx, query_rx) = mpsc::channel(64);
    let (mesos_tx, mesos_rx) = watch::channel(None);
    let initial = SavedState {
        epoch,
        agents: saved.as_ref().map(|s| s.agents.clone()).unwrap_or_default(),
        services: node.local_services_shared(),
    };
    let (persist_tx, persist_rx) = watch::channel(initial);
    // The new epoch is on disk before anything else happens.
    persist_tx.send_modify(|_| {});
    let writer = tokio::spawn(state_writer(
        cfg.state_dir.clone(),
        persist_rx,
        metrics.clone(),
    ));

    let mesos_cfg = MesosConfig {
        poll_interval: cfg.mesos_poll_interval,
        ..MesosConfig::new(
            match &cfg.mesos {
                MesosOrigin::Url(url) => MesosSource::Url {
                    url: url.clone(),
                    auth_token: cfg.mesos_auth_token.clone(),
                    ca_file: cfg.mesos_ca_file.clone(),
                    timeout: cfg.mesos_timeout,
                },
                MesosOrigin::File(path) => MesosSource::File { path: path.clone() },
                MesosOrigin::Injected(source) => MesosSource::Injected(source.clone()),
                MesosOrigin::Subscribe(url) => MesosSource::Subscribe {
                    url: url.clone(),
                    auth_token: cfg.mesos_auth_token.clone(),
                    ca_file: cfg.mesos_ca_file.clone(),
                    timeout: cfg.mesos_timeout,
                },
            },
            cfg.agent_ip,
        )
    };
    let mesos = tokio::spawn(mesos_source::run(
        mesos_cfg,
        metrics.clone(),
        mesos_tx,
        shutdown.clone(),
    ));
    let accept = tokio::spawn(transport::accept_loop(
        listener,
        transport_cfg.clone(),
        metrics.clone(),
        inbox.clone(),
        shutdown.clone(),
    ));
    // The DNS table: kept current from the names and the committed kernel state; read by
    // the DNS listeners and by the API's /v1/resolve.
    let dns_table: SharedTable = Arc::new(ArcSwap::from_pointee(DnsTable::empty(&cfg.dns_zone)));
    let (names_tx, names_rx) = watch::channel(Arc::new(NameList::new()));
    let (tasks_tx, tasks_rx) = watch::channel(Arc::new(TaskList::new()));
    let dns_maintainer = tokio::spawn(crate::dns::server::maintain_table(
        dns_table.clone(),
        TableSources {
            zone: cfg.dns_zone.clone(),
            tasks_zone: cfg.dns_tasks_zone.clone(),
            names: names_rx,
            tasks: tasks_rx,
            committed: dataplane.watch_committed(),
        },
        shutdown.clone(),
    ));
    if !cfg.dns_listen.is_empty() {
        tracing::info!(
            listen = ?dns_bound.local_addrs(), zone = %cfg.dns_zone,
            tasks_zone = cfg.dns_tasks_zone.as_deref().unwrap_or("(none)"),
            upstream = ?cfg.dns_upstream, "serving DNS"
        );
    }
    let dns = dns_bound.spawn(
        dns_table.clone(),
        cfg.dns_upstream,
        metrics.clone(),
        shutdown.clone(),
    );
    let handle = AgentHandle {
        queries: query_tx.clone(),
        committed: dataplane.watch_committed(),
        metrics: metrics.clone(),
        dns: dns_table.clone(),
    };
    #[cfg(not(madsim))]
    let api = tokio::spawn(api::serve(
        api_listener,
        api::router(query_tx, metrics.clone(), dns_table),
        shutdown.clone(),
    ));
    #[cfg(madsim)]
    let api = {
        drop((query_tx, dns_table));
        tokio::spawn(async {})
    };

    let pump = Pump::new(
        node,
        origin,
        transport::Outbound::new(
            cfg.listen.ip(),
            transport_cfg,
            metrics.clone(),
            inbox.clone(),
        ),
        probe::Prober::new(MAX_PROBES, metrics.clone(), inbox),
        dataplane,
        metrics.clone(),
        Published {
            persist: persist_tx,
            names: names_tx,
            tasks: tasks_tx,
        },
    );
    let inputs = PumpInputs {
        inbox: inbox_rx,
        mesos: mesos_rx,
        resync: resync_rx,
        queries: query_rx,
    };
    let pump = tokio::spawn(pump.run(inputs, shutdown.clone()));
    started(handle);

    stop.await;
    tracing::info!("stopping: flushing peers, finishing kernel transactions, saving state");
    shutdown.cancel();
    let (dataplane, writers) = pump.await.expect("the node's task does not panic");
    // Queued frames go out (up to a second: a peer that does not take them is dropped).
    let deadline = Instant::now() + std::time::Duration::from_secs(1);
    for writer in writers {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, writer).await;
    }
    dataplane.shutdown().await;
    let _ = tokio::join!(mesos, accept, api, dns_maintainer);
    for task in dns {
        let _ = task.await;
    }
    // The pump (the state's last sender) is gone: the writer saves what is left and ends.
    let _ = writer.await;
    tracing::info!("stopped; the kernel state stays in place");
    Ok(())
}
