//! `minuteman`: the daemon and CLI of minuteman on Linux.
//!
//! This shell grows issue by issue (DESIGN.md §4): the agent (peers over TCP, Mesos over
//! HTTP, nftables / IPVS), the HTTP API and the CLI commands that read it. For now it
//! offers what the core already supports end to end: checking wire frames and inspecting
//! Mesos recordings. One module per command family.

mod allocator;
mod client_cmd;
mod demo;
mod mesos_cmd;
mod wire_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "minuteman",
    version,
    about = "minuteman: distributed service discovery and layer-4 load balancing",
    long_about = "minuteman runs one agent per host; tasks with a VIP label become backends of \
                  that VIP on every host, balanced by the kernel. Start it with `minuteman \
                  agent` (see `minuteman agent --help`), look at it with `minuteman status`, \
                  `vips` and `members`. To run the simulated evaluation use `minuteman-sim`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent on this host (peers over TCP, Mesos polling, the kernel data plane,
    /// the HTTP API). Every option can also come from a MINUTEMAN_* variable or --config.
    Agent(Box<minuteman::agent::config::AgentArgs>),
    /// Remove everything the agent installed in the kernel: its nftables table; with IPVS,
    /// its services (those at the dummy interface's addresses or in the named-VIP ranges),
    /// the dummy interface and the masquerade rule. What is absent is skipped.
    Cleanup(CleanupArgs),
    /// Show the VIPs the local agent balances, with their backends.
    Vips(client_cmd::ClientArgs),
    /// Show the cluster's members as the local agent sees them.
    Members(client_cmd::ClientArgs),
    /// Show the local agent's own state.
    Status(client_cmd::ClientArgs),
    /// Show the records the local agent's DNS gives a name: a named VIP (`web.marathon`, or
    /// the full `web.marathon.l4lb.thisdcos.directory`) or a task (`web.marathon.mesos`,
    /// `_web._tcp.marathon.mesos` for its SRV records); exits 1 when it has none.
    Resolve {
        /// The name.
        name: String,
        #[command(flatten)]
        client: client_cmd::ClientArgs,
    },
    /// Show minuteman at work on a throwaway cluster on this machine (needs root, iproute2
    /// and nftables).
    #[command(
        long_about = "Show minuteman at work on a throwaway cluster on this machine.

Builds N hosts as network namespaces (mmdemo-h1 …) on a bridge, with a tiny server per \
host answering its name and one task per host carrying the VIP 10.200.0.1:80, the named \
VIP /web:80 and the UDP VIP 10.200.0.2:53; starts `minuteman agent` in each, then \
narrates: the members, requests spread over the backends, the named VIP, the last host \
failing (agent killed, link cut) with the time until its backend leaves host 1's API and \
kernel table, and its return. Then, unless --once, it keeps the cluster running with a \
tally every few seconds until Ctrl-C.

Needs root (it creates namespaces and interfaces), iproute2 (`ip`) and nftables (`nft`, \
not needed with --dataplane none). Nothing outside the mmdemo-* namespaces is touched: \
on exit, Ctrl-C or error they are deleted with everything in them, agents and kernel \
tables included. Logs go to a temporary directory, printed at start."
    )]
    Demo(demo::DemoArgs),
    /// Inspect peer-protocol frames.
    Wire {
        #[command(subcommand)]
        command: wire_cmd::WireCommand,
    },
    /// Read Mesos state and show the VIPs it yields.
    Mesos {
        #[command(subcommand)]
        command: mesos_cmd::MesosCommand,
    },
    /// The lab's backend (for `minuteman demo` and the tests): answers NAME to every HTTP
    /// request and every UDP datagram, on IPv4 and IPv6.
    #[command(hide = true)]
    LabBackend {
        /// What to answer.
        #[arg(long)]
        name: String,
        /// The HTTP port.
        #[arg(long)]
        http: Option<u16>,
        /// The UDP port.
        #[arg(long)]
        udp: Option<u16>,
    },
}

fn agent(args: minuteman::agent::config::AgentArgs) -> ExitCode {
    use minuteman::agent::{self, config::AgentConfig};
    let cfg = match AgentConfig::resolve(args) {
        Ok(cfg) => cfg,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    agent::init_logging(cfg.log_format);
    match agent::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the agent cannot start");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct CleanupArgs {
    /// Which data plane to clean up; both when not given.
    #[arg(long, env = "MINUTEMAN_DATAPLANE", value_enum)]
    dataplane: Option<minuteman::agent::config::DataPlaneArg>,
    /// The nftables table the agent used.
    #[arg(long, env = "MINUTEMAN_NFT_TABLE", default_value = "minuteman")]
    nft_table: String,
    /// The dummy interface the IPVS data plane used.
    #[arg(long, env = "MINUTEMAN_IPVS_INTERFACE", default_value = "minuteman")]
    ipvs_interface: String,
    /// Whether the IPVS data plane added the masquerade rule (`iptables`) or not (`none`).
    #[arg(
        long,
        env = "MINUTEMAN_IPVS_MASQUERADE",
        value_enum,
        default_value = "iptables"
    )]
    ipvs_masquerade: minuteman::agent::config::MasqueradeArg,
}

fn cleanup(args: CleanupArgs) -> ExitCode {
    use minuteman::agent::config::DataPlaneArg;
    use minuteman::dataplane::{self, DataPlaneConfig, DataPlaneKind, IpvsConfig};
    minuteman::agent::init_logging(minuteman::agent::config::LogFormat::Human);
    let kinds = match args.dataplane {
        Some(DataPlaneArg::None) => vec![],
        Some(kind) => vec![DataPlaneKind::from(kind)],
        None => vec![DataPlaneKind::Nftables, DataPlaneKind::Ipvs],
    };
    let mut failed = false;
    for kind in kinds {
        let mut cfg = DataPlaneConfig::new(kind);
        cfg.nft.table = args.nft_table.clone();
        cfg.ipvs = IpvsConfig {
            interface: args.ipvs_interface.clone(),
            masquerade: args.ipvs_masquerade.into(),
            ..IpvsConfig::default()
        };
        match (dataplane::cleanup(&cfg), kind) {
            (Ok(()), DataPlaneKind::Nftables) => {
                println!("removed table inet {}", cfg.nft.table_name());
            }
            (Ok(()), _) => println!(
                "removed the IPVS services, interface {} and the masquerade rule",
                cfg.ipvs.interface
            ),
            // Without nft on the host, no table can have been installed.
            (Err(error @ dataplane::DataPlaneError::Spawn { .. }), _)
                if args.dataplane.is_none() =>
            {
                println!("skipped nftables: {error}");
            }
            (Err(error), _) => {
                eprintln!("error: {error}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Agent(args) => agent(*args),
        Command::Cleanup(args) => cleanup(args),
        Command::Demo(args) => demo::run(args),
        Command::Vips(args) => client_cmd::vips(args),
        Command::Members(args) => client_cmd::members(args),
        Command::Status(args) => client_cmd::status(args),
        Command::Resolve { name, client } => client_cmd::resolve(&name, client),
        Command::Wire { command } => wire_cmd::run(command),
        Command::Mesos { command } => mesos_cmd::run(command),
        Command::LabBackend { name, http, udp } => {
            match minuteman::lab::backend::run(name, http, udp) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: lab backend: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
