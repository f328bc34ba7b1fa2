//! `minuteman mesos ...`: Mesos state, read from files (the agent will poll it over HTTP).
//!
//! `inspect` reads a recording of any shape the core understands and prints the VIPs it
//! yields, as a table or as JSON (see [`JsonOutput`] for the exact shape).

use clap::Subcommand;
use minuteman_core::mesos::{self, render, ExtractOptions, InputFormat, Inspection};
use minuteman_core::vip::{VipAddr, VipSet};
use serde::Serialize;
use std::io::Read;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum MesosCommand {
    /// Show the VIPs and backends a saved Mesos document or event stream yields.
    ///
    /// FILE may be an agent /state, a master /state (or /state.json), an operator-API
    /// GET_STATE response, a single operator-API event, a file of operator-API events one
    /// JSON object per line (replayed in order, as the SUBSCRIBE stream would be), or a
    /// RecordIO-framed SUBSCRIBE capture. Malformed VIP labels are reported as warnings;
    /// a file that cannot be read or parsed is an error (exit status 2 or 1).
    Inspect {
        /// The recording; `-` reads stdin.
        file: PathBuf,
        /// Use IP as the agent address of every task, instead of the address the document
        /// gives (flags.ip or the pid for /state, agent_info.hostname for the operator
        /// API). Useful for an agent's own /state that shows 0.0.0.0 or a hostname.
        #[arg(long, value_name = "IP")]
        agent_ip: Option<IpAddr>,
        /// Resolve agent hostnames that are not IP addresses with the system resolver.
        /// Off by default: without it such agents' tasks are reported as warnings.
        #[arg(long)]
        resolve: bool,
        /// Print JSON instead of a table:
        /// {"vips":[{"protocol","vip" or "name","port","backends":[{"agent","ip","port",
        /// "weight"}]}],"warnings":[...]}.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: MesosCommand) -> ExitCode {
    match command {
        MesosCommand::Inspect {
            file,
            agent_ip,
            resolve,
            json,
        } => inspect(&file, agent_ip, resolve, json),
    }
}

fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}

fn system_resolve(host: &str) -> Option<IpAddr> {
    (host, 0)
        .to_socket_addrs()
        .ok()?
        .map(|addr| addr.ip())
        .min_by_key(|ip| (ip.is_ipv6(), *ip))
}

fn inspect(path: &Path, agent_ip: Option<IpAddr>, resolve: bool, json: bool) -> ExitCode {
    let bytes = match read_input(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let resolver = system_resolve;
    let options = ExtractOptions {
        agent_ip,
        resolve: resolve.then_some(&resolver as &dyn Fn(&str) -> Option<IpAddr>),
    };
    let inspection = match mesos::inspect(&bytes, &options) {
        Ok(inspection) => inspection,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string(&JsonOutput::new(&inspection)) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot render JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", table(path, &inspection));
    }
    ExitCode::SUCCESS
}

/// The table output: what was read, the VIP table, the warnings.
pub fn table(path: &Path, inspection: &Inspection) -> String {
    let mut out = format!("{}: {}\n", path.display(), inspection.format);
    if let (InputFormat::EventLines { .. } | InputFormat::RecordIo { .. }, Some(c)) =
        (&inspection.format, &inspection.counters)
    {
        out.push_str(&format!(
            "events: {} SUBSCRIBED, {} TASK_ADDED, {} TASK_UPDATED, {} AGENT_ADDED, \
             {} AGENT_REMOVED, {} FRAMEWORK_ADDED/UPDATED, {} FRAMEWORK_REMOVED, {} HEARTBEAT, \
             {} unknown\n",
            c.subscribed,
            c.task_added,
            c.task_updated,
            c.agent_added,
            c.agent_removed,
            c.framework_added + c.framework_updated,
            c.framework_removed,
            c.heartbeats,
            c.unknown_events,
        ));
    }
    out.push('\n');
    out.push_str(&render::text(&inspection.extracted));
    out
}

/// `--json`: `{"vips":[...],"warnings":[...]}`.
#[derive(Serialize)]
pub struct JsonOutput {
    pub vips: Vec<JsonVip>,
    pub warnings: Vec<String>,
}

/// One VIP: `vip` (`1.2.3.4:5000`, `[fd01:d::1]:80`) for an IP VIP, `name`
/// (`merp.marathon`) for a named one.
#[derive(Serialize)]
pub struct JsonVip {
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub backends: Vec<JsonBackend>,
}

#[derive(Serialize)]
pub struct JsonBackend {
    pub agent: String,
    pub ip: String,
    pub port: u16,
    pub weight: u32,
}

impl JsonOutput {
    pub fn new(inspection: &Inspection) -> JsonOutput {
        JsonOutput {
            vips: json_vips(&inspection.extracted.vips),
            warnings: inspection.extracted.warnings.clone(),
        }
    }
}

/// VIPs in `VipSet` order (protocol, address or name, port), backends in order.
fn json_vips(vips: &VipSet) -> Vec<JsonVip> {
    vips.vips
        .iter()
        .map(|(vip, backends)| {
            let (address, name) = match &vip.addr {
                VipAddr::Ip(_) => (Some(render::vip_address(vip)), None),
                VipAddr::Named(name) => (None, Some(name.clone())),
            };
            JsonVip {
                protocol: vip.protocol.as_str(),
                vip: address,
                name,
                port: vip.port,
                backends: backends
                    .iter()
                    .map(|b| JsonBackend {
                        agent: b.agent.to_string(),
                        ip: b.ip.to_string(),
                        port: b.port,
                        weight: b.weight,
                    })
                    .collect(),
            }
        })
        .collect()
}
