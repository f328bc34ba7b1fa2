//! What the HTTP API shows, computed from the node by the task that owns it: VIPs with
//! their backends, members with their state, this node's own state. Plain serde structs,
//! also read back by the CLI.
//!
//! Invariants: every list is in a stable order (VIP order, record order), so two reads of
//! an unchanged node give the same bytes.

use minuteman_core::node::Node;
use minuteman_core::vip::{Vip, VipAddr};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

/// One VIP and the kernel services it became.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipView {
    pub protocol: String,
    /// `10.1.2.3:5000`, or the name of a named VIP (`web.marathon:80`).
    pub vip: String,
    /// For a named VIP, its DNS-form name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For a named VIP, the full name the agent's DNS answers
    /// (`web.marathon.l4lb.thisdcos.directory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    pub services: Vec<ServiceView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// The address clients connect to.
    pub address: SocketAddr,
    pub backends: Vec<BackendView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendView {
    pub address: SocketAddr,
    pub weight: u32,
}

/// One member of the cluster as this node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub address: SocketAddr,
    pub epoch: u64,
    /// `reachable`, `agent-stalled` or `unreachable`.
    pub state: String,
    /// Whether this node has an active link to it.
    pub linked: bool,
    /// The link's RTT (robust estimate), where linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// VIP backends it reports.
    pub backends: usize,
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// This node's own state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateView {
    pub address: SocketAddr,
    pub epoch: u64,
    /// The version of its record.
    pub seq: u64,
    pub agents: Vec<IpAddr>,
    pub view_complete: bool,
    pub active_view: Vec<SocketAddr>,
    pub passive_view: Vec<SocketAddr>,
    pub members: usize,
    pub reachable: usize,
    pub vips: usize,
    pub kernel_services: usize,
    /// The VIP backends this node reports (its Mesos agent's tasks).
    pub local: Vec<LocalVipView>,
}

/// One VIP as this host reports it: its backends on this host's Mesos agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalVipView {
    pub protocol: String,
    pub vip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub backends: Vec<BackendView>,
}

fn vip_label(vip: &Vip) -> (String, Option<String>) {
    match &vip.addr {
        VipAddr::Ip(IpAddr::V4(ip)) => (format!("{ip}:{}", vip.port), None),
        VipAddr::Ip(IpAddr::V6(ip)) => (format!("[{ip}]:{}", vip.port), None),
        VipAddr::Named(name) => (format!("{name}:{}", vip.port), Some(name.clone())),
    }
}

/// Every VIP with the services and destinations of the desired kernel state.
pub fn vips(node: &Node) -> Vec<VipView> {
    let desired = node.desired_kernel();
    node.desired()
        .vips()
        .map(|(vip, services)| {
            let (label, name) = vip_label(vip);
            VipView {
                protocol: vip.protocol.to_string(),
                vip: label,
                dns: None,
                name,
                services: services
                    .iter()
                    .map(|service| ServiceView {
                        address: service.addr,
                        backends: desired
                            .services
                            .get(service)
                            .into_iter()
                            .flat_map(|d| d.iter())
                            .map(|(address, weight)| BackendView {
                                address: *address,
                                weight: *weight,
                            })
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Every member this node holds a record of.
pub fn members(node: &Node) -> Vec<MemberView> {
    let me = node.id();
    let stalled: BTreeSet<SocketAddr> = node.stalled_neighbors().map(|id| id.addr).collect();
    node.records()
        .map(|record| {
            let id = record.origin;
            let is_self = id.addr == me.addr;
            let state = if is_self || (node.is_reachable(&id) && !stalled.contains(&id.addr)) {
                "reachable"
            } else if stalled.contains(&id.addr) {
                "agent-stalled"
            } else {
                "unreachable"
            };
            MemberView {
                address: id.addr,
                epoch: id.epoch,
                state: state.to_owned(),
                linked: node.is_active(&id),
                rtt_ms: node.link_rtt(&id).map(|d| d.as_secs_f64() * 1e3),
                backends: record.services.backend_count(),
                is_self,
            }
        })
        .collect()
}

/// This node's own record and counts.
pub fn state(node: &Node) -> StateView {
    let me = node.id();
    let record = node.record(&me.addr);
    let local = node
        .local_services()
        .vips
        .iter()
        .map(|(vip, backends)| {
            let (label, name) = vip_label(vip);
            LocalVipView {
                protocol: vip.protocol.to_string(),
                vip: label,
                name,
                backends: backends
                    .iter()
                    .map(|b| BackendView {
                        address: SocketAddr::new(b.ip, b.port),
                        weight: b.weight,
                    })
                    .collect(),
            }
        })
        .collect();
    StateView {
        address: me.addr,
        epoch: me.epoch,
        seq: record.map_or(0, |r| r.seq),
        agents: record.map(|r| r.body.agents.clone()).unwrap_or_default(),
        view_complete: node.view_complete(),
        active_view: node.active_view().map(|id| id.addr).collect(),
        passive_view: node.passive_view().map(|id| id.addr).collect(),
        members: node.records().count(),
        reachable: node.reachable_count(),
        vips: node.desired().vips().count(),
        kernel_services: node.desired_kernel().services.len(),
        local,
    }
}
